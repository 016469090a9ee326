//! The web console (`control-plane/ui/`): its files are compiled into the binary and served at
//! `/` and `/ui/...` by every role that serves the admin API. No CDN, no network at runtime and
//! no build step: plain ES modules and a vendored copy of uPlot. The files hold no data; the
//! console reads everything through `/api` with the caller's own credentials, so it has exactly
//! the admin API's roles.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

struct Asset {
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

macro_rules! assets {
    ($($path:literal => $ct:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            body: include_bytes!(concat!("../../ui/", $path)),
            content_type: $ct,
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file of `control-plane/ui/` (a test checks none is missing).
const ASSETS: &[Asset] = assets! {
    "index.html" => HTML,
    "app.css" => CSS,
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "limits.js" => JS,
    "content.js" => JS,
    "tools.js" => JS,
    "pages/audit.js" => JS,
    "pages/fleet.js" => JS,
    "pages/jobs.js" => JS,
    "pages/keys.js" => JS,
    "pages/logs.js" => JS,
    "pages/mcp.js" => JS,
    "pages/me.js" => JS,
    "pages/overview.js" => JS,
    "pages/pricing.js" => JS,
    "pages/providers.js" => JS,
    "pages/settings.js" => JS,
    "pages/spend.js" => JS,
    "pages/teams.js" => JS,
    "vendor/uPlot.iife.min.js" => JS,
    "vendor/uPlot.min.css" => CSS,
    "vendor/uPlot.LICENSE" => TEXT,
};

/// Scripts, styles, fonts and API calls from this origin only; no inline script or style
/// attribute (styles the code sets go through the CSSOM); never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `/` (the console) and `/ui/{path}` (its files).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((i, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            "no such console file\n",
        )
            .into_response();
    };
    let etag = etag(i);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidated on every load (cheap: a 304), so an upgraded gateway serves its new console.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// The quoted SHA-256 prefix of asset `i`, computed once.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    })[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let resp = routes::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    /// Every file of the console's directory is compiled in (none forgotten, none stale).
    #[test]
    fn every_console_file_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap();
                    on_disk.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        served.sort();
        assert_eq!(served, on_disk);
        for a in ASSETS {
            let ext = a.path.rsplit('.').next().unwrap();
            let want = match ext {
                "js" => JS,
                "css" => CSS,
                "html" => HTML,
                _ => TEXT,
            };
            assert_eq!(a.content_type, want, "{}", a.path);
        }
    }

    /// The console loads nothing from another origin: no absolute URL in a `src`/`href`, no
    /// `import` from elsewhere, no inline script in the page.
    #[test]
    fn the_console_needs_no_network_beyond_the_gateway() {
        for a in ASSETS.iter().filter(|a| !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for bad in [
                "src=\"http",
                "href=\"http",
                "from \"http",
                "import(\"http",
                "url(http",
                "//cdn",
            ] {
                assert!(!text.contains(bad), "{} contains {bad}", a.path);
            }
        }
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!index.contains("<script>") && !index.contains("style=\""));
        for src in index.split("src=\"").skip(1) {
            assert!(src.starts_with("/ui/"), "{src}");
        }
    }

    #[tokio::test]
    async fn files_come_with_their_type_security_headers_and_revalidation() {
        let (status, headers, body) = call("/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], HTML);
        assert!(String::from_utf8(body).unwrap().contains("/ui/app.js"));
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

        let (status, headers, body) = call("/ui/pages/logs.js", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], JS);
        assert!(!body.is_empty());
        let tag = headers[header::ETAG].to_str().unwrap().to_owned();
        let (status, headers, body) = call("/ui/pages/logs.js", Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG], tag.as_str());
        let (status, _, _) = call("/ui/pages/logs.js", Some("\"other\"")).await;
        assert_eq!(status, StatusCode::OK);

        for missing in [
            "/ui/nope.js",
            "/ui/../Cargo.toml",
            "/ui/%2e%2e/Cargo.toml",
            "/ui/",
        ] {
            let (status, _, _) = call(missing, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        }
    }
}

//! A reverse proxy that does no work: the comparison point for the gateway's CPU per request in
//! `scripts/bench.sh`.
//!
//! ```text
//! plain-proxy --upstream http://127.0.0.1:8093 [--listen 127.0.0.1:8094] [--threads N]
//! ```
//!
//! Every request is forwarded to the upstream with its method, path and query, headers (`Host`
//! included, so a SigV4 signature made for the upstream stays valid) and body, over a pool of
//! keep-alive connections (hyper-util's client); the response — status, headers and body — is
//! streamed back frame by frame as it arrives. Only hop-by-hop headers are dropped. No parsing,
//! no logging, no buffering: what is left is the cost of HTTP/1.1 in and out through hyper and
//! Tokio, the same stack the gateway is built on. Like the gateway, it runs a multi-threaded
//! Tokio runtime with one worker per core unless `--threads` says otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    name = "plain-proxy",
    about = "A do-nothing HTTP/1.1 reverse proxy (benchmark baseline)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8094")]
    listen: SocketAddr,
    /// Upstream base URL, `http://HOST:PORT`.
    #[arg(long)]
    upstream: String,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

type ProxyBody = Either<Incoming, Full<Bytes>>;

struct Upstream {
    scheme: Scheme,
    authority: Authority,
    client: Client<HttpConnector, Incoming>,
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn forward(
    up: Arc<Upstream>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(up.scheme.clone());
    uri.authority = Some(up.authority.clone());
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = match Uri::from_parts(uri) {
        Ok(u) => u,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    match up.client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Err(e) => Ok(error(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))),
    }
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "plain-proxy: {message}\n"
    )))));
    *resp.status_mut() = status;
    resp
}

async fn run(args: Args) -> Result<(), String> {
    let base: Uri = args
        .upstream
        .parse()
        .map_err(|e| format!("--upstream: {e}"))?;
    let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned())
    else {
        return Err("--upstream must be http://HOST:PORT".into());
    };
    if scheme != Scheme::HTTP {
        return Err("--upstream must be http://".into());
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let upstream = Arc::new(Upstream {
        scheme,
        authority,
        client,
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "plain-proxy listening on http://{local} -> {}",
        args.upstream
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("plain-proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let upstream = Arc::clone(&upstream);
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(Arc::clone(&upstream), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("plain-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plain-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `tollgate login`: gets the user's personal virtual key from a gateway with single sign-on,
//! for Claude Code's `apiKeyHelper` (which runs it and reads the key from stdout, again after a
//! 401).
//!
//! * A key stored by an earlier run (`$XDG_CONFIG_HOME/tollgate/keys/<host>_<port>.key`, else
//!   `~/.config/tollgate/keys/...`, mode 0600 in a 0700 directory) is printed if the gateway
//!   still accepts it (`GET /v1/models` with `x-api-key`: anything but 401/403 counts as
//!   accepted, so a gateway that is down does not start a browser sign-in).
//! * Otherwise (or with `--force`) it runs the gateway's device-style sign-in: `POST
//!   /auth/cli/start`, the browser opens the approval page (`--no-browser`: the URL and code are
//!   printed on stderr instead), the person signs in and approves, and `POST /auth/cli/token`
//!   is polled until it gives the key, which is stored.
//!
//! stdout carries the key and nothing else (`--print-key`); everything else goes to stderr.
//! Failure exits with 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The gateway's URL (its public URL, as in ANTHROPIC_BASE_URL).
    #[arg(
        long,
        env = "TOLLGATE_GATEWAY",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,

    /// Print the key, and only the key, on stdout (Claude Code's apiKeyHelper).
    #[arg(long)]
    print_key: bool,

    /// Do not open a browser: print the sign-in URL and code on stderr.
    #[arg(long)]
    no_browser: bool,

    /// Sign in again even if the stored key still works.
    #[arg(long)]
    force: bool,
}

/// What the gateway's `POST /auth/cli/start` answers.
#[derive(Deserialize)]
struct Start {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    interval: u64,
    expires_in: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    key: String,
    user_name: String,
}

#[derive(Deserialize)]
struct OauthError {
    error: String,
}

/// Runs `tollgate login`.
pub async fn run(args: LoginArgs) -> ExitCode {
    match login(&args).await {
        Ok(key) => {
            if args.print_key {
                println!("{key}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate login: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn login(args: &LoginArgs) -> anyhow::Result<String> {
    let gateway = gateway_url(&args.gateway)?;
    let path = key_path(&gateway)?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .context("cannot build the HTTP client")?;
    if !args.force
        && let Some(key) = read_key(&path)?
    {
        match check_key(&http, &gateway, &key).await {
            KeyCheck::Accepted => return Ok(key),
            KeyCheck::Unknown(why) => {
                eprintln!(
                    "tollgate login: could not check the stored key ({why}); using it anyway"
                );
                return Ok(key);
            }
            KeyCheck::Refused => {
                eprintln!(
                    "tollgate login: the gateway no longer accepts the stored key; signing in again"
                );
            }
        }
    }
    let (key, user) = device_flow(&http, &gateway, args.no_browser).await?;
    write_key(&path, &key)?;
    eprintln!(
        "tollgate login: signed in as {user}; the key is stored in {}",
        path.display()
    );
    if !args.print_key {
        eprintln!(
            "Claude Code: put {{\"apiKeyHelper\": \"tollgate login --print-key --gateway {gateway}\", \
             \"env\": {{\"ANTHROPIC_BASE_URL\": \"{gateway}\"}}}} in ~/.claude/settings.json"
        );
    }
    Ok(key)
}

/// The gateway URL without a trailing slash; http(s) only.
fn gateway_url(raw: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(raw.trim())
        .with_context(|| format!("--gateway {raw:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("--gateway must be an http:// or https:// URL, such as https://gateway.example.com");
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

/// `<config dir>/tollgate/keys/<host>_<port>.key`.
fn key_path(gateway: &str) -> anyhow::Result<PathBuf> {
    let dir = config_dir().ok_or_else(|| {
        anyhow!("cannot find a configuration directory: set XDG_CONFIG_HOME or HOME")
    })?;
    key_file(&dir, gateway)
}

/// Percent-encodes a form value (device codes are base64url, but do not rely on it).
fn form_urlencoded_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn key_file(dir: &Path, gateway: &str) -> anyhow::Result<PathBuf> {
    let url = reqwest::Url::parse(gateway)?;
    let host: String = url
        .host_str()
        .unwrap_or("gateway")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let port = url.port_or_known_default().unwrap_or(0);
    Ok(dir
        .join("tollgate")
        .join("keys")
        .join(format!("{host}_{port}.key")))
}

fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config"))
}

fn read_key(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|k| !k.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the key readable by this user only: a 0700 directory, a 0600 file written next to
/// the old one and renamed over it.
fn write_key(path: &Path, key: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("the key path has no directory")?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        use std::io::Write as _;
        let mut f = options.open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

enum KeyCheck {
    Accepted,
    Refused,
    Unknown(String),
}

async fn check_key(http: &reqwest::Client, gateway: &str, key: &str) -> KeyCheck {
    match http
        .get(format!("{gateway}/v1/models"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
    {
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => KeyCheck::Refused,
        Ok(r) if r.status().is_success() => KeyCheck::Accepted,
        Ok(r) => KeyCheck::Unknown(format!("the gateway answered {}", r.status())),
        Err(e) => KeyCheck::Unknown(e.to_string()),
    }
}

/// The device-style sign-in; returns (key, user name).
async fn device_flow(
    http: &reqwest::Client,
    gateway: &str,
    no_browser: bool,
) -> anyhow::Result<(String, String)> {
    let resp = http
        .post(format!("{gateway}/auth/cli/start"))
        .send()
        .await
        .with_context(|| format!("cannot reach {gateway}"))?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading the gateway's answer")?;
    if !status.is_success() {
        bail!(
            "the gateway refused to start a sign-in ({status}): {}",
            describe(&body)
        );
    }
    let start: Start = serde_json::from_slice(&body)
        .context("the gateway's answer to /auth/cli/start is not what tollgate expects")?;
    eprintln!(
        "tollgate login: to sign in, open\n\n    {}\n\nand check that the page shows the code {} (or open {} and type it).",
        start.verification_uri_complete, start.user_code, start.verification_uri
    );
    if !no_browser && let Err(e) = open_browser(&start.verification_uri_complete) {
        eprintln!("tollgate login: could not open a browser ({e}); open the URL above yourself");
    }
    let deadline = Instant::now() + Duration::from_secs(start.expires_in.max(1));
    let mut interval = Duration::from_secs(start.interval.clamp(1, 60));
    let mut network_errors = 0;
    loop {
        if Instant::now() >= deadline {
            bail!("the sign-in was not approved in time; run tollgate login again");
        }
        tokio::time::sleep(interval).await;
        let resp = match http
            .post(format!("{gateway}/auth/cli/token"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!(
                "device_code={}",
                form_urlencoded_value(&start.device_code)
            ))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                network_errors += 1;
                if network_errors >= 5 {
                    return Err(e).context("cannot reach the gateway");
                }
                continue;
            }
        };
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_slice(&body)
                .context("the gateway's answer to /auth/cli/token is not what tollgate expects")?;
            return Ok((answer.key, answer.user_name));
        }
        let error = serde_json::from_slice::<OauthError>(&body).ok();
        match error.as_ref().map(|e| e.error.as_str()) {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some("access_denied") => bail!("the sign-in was denied in the browser"),
            Some("expired_token") => bail!("the sign-in expired; run tollgate login again"),
            _ => bail!("the gateway answered {status}: {}", describe(&body)),
        }
    }
}

/// A short description of an error answer (its `error_description` or `error.message`).
fn describe(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v.get("error_description")
        .or_else(|| v.get("error").and_then(|e| e.get("message")))
        .or_else(|| v.get("error"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

fn open_browser(url: &str) -> std::io::Result<()> {
    let mut cmd = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    cmd.arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_named_after_host_and_port() {
        let dir = Path::new("/cfg");
        let url = gateway_url("https://gw.example.com/").unwrap();
        assert_eq!(url, "https://gw.example.com");
        assert_eq!(
            key_file(dir, &url).unwrap(),
            Path::new("/cfg/tollgate/keys/gw.example.com_443.key")
        );
        assert_eq!(
            key_file(dir, "http://127.0.0.1:8080").unwrap(),
            Path::new("/cfg/tollgate/keys/127.0.0.1_8080.key")
        );
        assert_eq!(
            key_file(dir, "http://[::1]:9").unwrap(),
            Path::new("/cfg/tollgate/keys/___1__9.key")
        );
        assert_eq!(form_urlencoded_value("a+b/c=_-"), "a%2Bb%2Fc%3D_-");
        assert!(gateway_url("ftp://x").is_err());
        assert!(gateway_url("not a url").is_err());
    }

    #[test]
    fn keys_are_written_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/h_80.key");
        write_key(&path, "sk-tg-1").unwrap();
        assert_eq!(read_key(&path).unwrap().as_deref(), Some("sk-tg-1"));
        write_key(&path, "sk-tg-2").unwrap();
        assert_eq!(read_key(&path).unwrap().as_deref(), Some("sk-tg-2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o700);
        }
        assert_eq!(read_key(&dir.path().join("missing")).unwrap(), None);
    }

    #[test]
    fn error_answers_are_described() {
        assert_eq!(
            describe(br#"{"error":"x","error_description":"why"}"#),
            "why"
        );
        assert_eq!(
            describe(br#"{"error":{"type":"not_found","message":"no route"}}"#),
            "no route"
        );
        assert_eq!(describe(b"plain"), "plain");
    }
}

//! `tollgate login`: gets the user's personal virtual key from a gateway with single sign-on,
//! for Claude Code's `apiKeyHelper` (which runs it and reads the key from stdout, again after a
//! 401).
//!
//! * A key stored by an earlier run (or by `tollgate launch`: the OS keyring, else the 0600
//!   file fallback, see [`crate::cli::keystore`]) is printed if the gateway still accepts it (`GET /v1/models` with `x-api-key`: anything but 401/403 counts as
//!   accepted, so a gateway that is down does not start a browser sign-in).
//! * Otherwise (or with `--force`) it runs the gateway's device-style sign-in: `POST
//!   /auth/cli/start`, the browser opens the approval page (`--no-browser`: the URL and code are
//!   printed on stderr instead), the person signs in and approves, and `POST /auth/cli/token`
//!   is polled until it gives the key, which is stored.
//!
//! stdout carries the key and nothing else (`--print-key`); everything else goes to stderr.
//! Failure exits with 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::config::{DEFAULT_GATEWAY, gateway_url};
use crate::cli::keystore::KeyStore;
use crate::cli::render::terminal_safe as safe;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The gateway's URL (its public URL, as in ANTHROPIC_BASE_URL).
    #[arg(long, env = "TOLLGATE_GATEWAY", default_value = DEFAULT_GATEWAY)]
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
            eprintln!(
                "tollgate login: {}",
                crate::cli::render::escape_line(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

async fn login(args: &LoginArgs) -> anyhow::Result<String> {
    let gateway = gateway_url(&args.gateway)?;
    let store = KeyStore::from_env()?;
    let http = http_client()?;
    if !args.force
        && let Some((key, _)) = store.load(&gateway)?
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
    let key = sign_in(&store, &gateway, args.no_browser).await?;
    if !args.print_key {
        eprintln!(
            "Claude Code: run `tollgate launch`, or put {{\"apiKeyHelper\": \"tollgate login --print-key --gateway {gateway}\", \
             \"env\": {{\"ANTHROPIC_BASE_URL\": \"{gateway}\"}}}} in ~/.claude/settings.json"
        );
    }
    Ok(key)
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .context("cannot build the HTTP client")
}

/// The device-style sign-in at `gateway` (a URL checked by `gateway_url`); stores the key in
/// `store` and returns it. Messages go to stderr.
pub async fn sign_in(store: &KeyStore, gateway: &str, no_browser: bool) -> anyhow::Result<String> {
    let http = http_client()?;
    let (key, user) = device_flow(&http, gateway, no_browser).await?;
    let place = store.save(gateway, &key)?;
    eprintln!(
        "tollgate login: signed in as {}; the key is stored in {place}",
        safe(&user)
    );
    Ok(key)
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
        safe(&start.verification_uri_complete),
        safe(&start.user_code),
        safe(&start.verification_uri)
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
    let text = v
        .get("error_description")
        .or_else(|| v.get("error").and_then(|e| e.get("message")))
        .or_else(|| v.get("error"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    safe(&text).into_owned()
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
    fn login_defaults_to_the_same_gateway_as_launch() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            login: LoginArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["login"]).unwrap();
        if std::env::var_os("TOLLGATE_GATEWAY").is_none() {
            assert_eq!(cli.login.gateway, "http://localhost:8080");
            assert_eq!(cli.login.gateway, DEFAULT_GATEWAY);
        }
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_urlencoded_value("a+b/c=_-"), "a%2Bb%2Fc%3D_-");
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
        assert_eq!(
            describe(br#"{"error":"x","error_description":"a\u001b]52;c;eA==\u0007b"}"#),
            "a\\u{1b}]52;c;eA==\\u{7}b"
        );
    }
}

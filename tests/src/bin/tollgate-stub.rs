//! A stand-in for the `tollgate` binary, used only by the harness's own tests.
//!
//! It speaks the same CLI (`--listen`, `--data-dir`, `--admin-token` and the `TOLLGATE_*`
//! variables), serves `GET /health`, writes one line to stdout and one to stderr, and records
//! its arguments and the `TOLLGATE_*`/`AWS_*` variables it saw in `<data-dir>/stub-env.txt`.
//! Misbehaviour for failure-path tests: `--exit-at-startup` (prints to stderr, exits 3) and
//! `--never-ready` (listens, but `/health` answers 503).

use std::process::ExitCode;

use axum::http::StatusCode;
use axum::routing::get;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str, env: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| std::env::var(env).ok())
    };
    if args.iter().any(|a| a == "--exit-at-startup") {
        eprintln!("tollgate-stub: refusing to start (--exit-at-startup)");
        return ExitCode::from(3);
    }
    let listen =
        value_of("--listen", "TOLLGATE_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let data_dir = value_of("--data-dir", "TOLLGATE_DATA_DIR").unwrap_or_else(|| ".".to_owned());
    let mut seen: Vec<String> = args.iter().map(|a| format!("arg {a}")).collect();
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TOLLGATE_") || k.starts_with("AWS_"))
        .collect();
    vars.sort();
    seen.extend(vars.iter().map(|(k, v)| format!("env {k}={v}")));
    if let Err(e) = std::fs::write(
        std::path::Path::new(&data_dir).join("stub-env.txt"),
        seen.join("\n"),
    ) {
        eprintln!("tollgate-stub: cannot write to data dir {data_dir}: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate-stub: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = !args.iter().any(|a| a == "--never-ready");
    println!("tollgate-stub listening on {listen}");
    eprintln!("tollgate-stub log line on stderr");
    let app = axum::Router::new().route(
        "/health",
        get(move || async move {
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

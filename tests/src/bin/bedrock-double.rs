//! Serves the Bedrock double standalone, for benchmarks and manual runs.
//!
//! ```text
//! bedrock-double [--listen 127.0.0.1:8093] [--credentials AKID:SECRET[:SESSION_TOKEN]]...
//!                [--api-key KEY]... [--region us-east-1] [--threads N] [--max-recorded N]
//! ```
//! `--threads` defaults to the number of CPUs; `--max-recorded` bounds the request log
//! (default 10000, `0` disables recording, useful for long benchmarks).
//! Without `--credentials` it accepts the documentation key `AKIDEXAMPLE` /
//! `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`. Recorded requests: `GET /_double/requests`.

use std::net::SocketAddr;
use std::process::ExitCode;

use tollgate_tests::{
    BedrockDouble, BedrockDoubleConfig, EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY,
};

const USAGE: &str = "usage: bedrock-double [--listen ADDR] [--credentials AKID:SECRET[:TOKEN]]... \
                     [--api-key KEY]... [--region REGION] [--threads N] [--max-recorded N]";

fn parse_args(
    args: impl Iterator<Item = String>,
) -> Result<(SocketAddr, BedrockDoubleConfig), String> {
    let mut listen: SocketAddr = "127.0.0.1:8093".parse().map_err(|e| format!("{e}"))?;
    let mut config = BedrockDoubleConfig::new();
    let mut args = args;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--credentials" => {
                let v = value()?;
                let mut parts = v.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(akid), Some(secret), None) if !akid.is_empty() && !secret.is_empty() => {
                        config = config.with_key(akid, secret);
                    }
                    (Some(akid), Some(secret), Some(token))
                        if !akid.is_empty() && !secret.is_empty() =>
                    {
                        config = config.with_temporary_key(akid, secret, token);
                    }
                    _ => {
                        return Err(format!(
                            "--credentials expects AKID:SECRET[:TOKEN]\n{USAGE}"
                        ));
                    }
                }
            }
            "--api-key" => config = config.with_api_key(&value()?),
            "--region" => config = config.with_region(&value()?),
            "--threads" => {
                config = config
                    .with_worker_threads(value()?.parse().map_err(|e| format!("--threads: {e}"))?);
            }
            "--max-recorded" => {
                config = config.with_max_recorded(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-recorded: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if config.worker_threads.is_none() {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        config = config.with_worker_threads(cpus);
    }
    if config.credentials.is_empty() && config.api_keys.is_empty() {
        config = config.with_key(EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY);
    }
    Ok((listen, config))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (listen, config) = match parse_args(std::env::args().skip(1)) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let keys: Vec<String> = config.credentials.keys().cloned().collect();
    let double = match BedrockDouble::start_on(config, listen) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bedrock-double: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "bedrock-double listening on {} (access keys: {})",
        double.base_url(),
        keys.join(", ")
    );
    let _ = tokio::signal::ctrl_c().await;
    double.shutdown();
    ExitCode::SUCCESS
}

//! End to end with real clients: the official Anthropic Python SDK and Claude Code itself, each
//! talking to the real `tollgate` binary configured by the README walkthrough, with the strict
//! Bedrock double (SigV4 verified on every request) behind it.
//!
//! `scripts/test.sh` installs both clients and sets `TOLLGATE_TEST_PYTHON` (a venv with
//! `anthropic`) and `TOLLGATE_TEST_CLAUDE` (the `claude` executable from npm).

mod common;

use std::process::Command;

use common::setup;
use serde_json::Value;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through scripts/test.sh, which installs the real clients")
    })
}

#[tokio::test]
async fn anthropic_python_sdk_works_through_tollgate() {
    let python = required_env("TOLLGATE_TEST_PYTHON");
    let s = setup().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/anthropic_sdk_check.py"
    );
    let base = s.gw.url("/anthropic");
    let vk = s.vk.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python).args([script, &base, &vk]).output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");
    assert_eq!(v["create"]["text"], "Hello from the Bedrock double.", "{v}");
    assert_eq!(v["create"]["stop_reason"], "end_turn");
    assert!(v["create"]["input_tokens"].as_u64().unwrap_or(0) > 0);
    assert!(
        v["stream"]["chunks"].as_u64().unwrap_or(0) >= 2,
        "streamed in pieces: {v}"
    );
    assert_eq!(v["stream"]["text"], "Hello from the Bedrock double.");
    assert_eq!(v["tool"]["stop_reason"], "tool_use");
    assert_eq!(v["tool"]["name"], "Read");
    assert_eq!(v["throttle"]["status"], 429);
    assert_eq!(v["throttle"]["type"], "rate_limit_error");
    assert_eq!(v["bad_key"]["status"], 401);
    assert!(v["count_tokens"].as_u64().unwrap_or(0) > 0);
    let signed_ok = s
        .double
        .requests()
        .iter()
        .filter(|r| r.verdict.status == 200)
        .count();
    assert!(
        signed_ok >= 4,
        "the double accepted the gateway's signatures"
    );
}

#[tokio::test]
async fn claude_code_runs_through_tollgate_to_bedrock() {
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let s = setup().await;
    let home = tempfile::tempdir().expect("home");
    let base = s.gw.url("/anthropic");
    let vk = s.vk.clone();
    let home_path = home.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(claude)
            .args(["-p", "say hi"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home_path)
            .env("TERM", "dumb")
            .env("ANTHROPIC_BASE_URL", &base)
            .env("ANTHROPIC_AUTH_TOKEN", &vk)
            .env("ANTHROPIC_MODEL", "sonnet")
            .env(
                "ANTHROPIC_DEFAULT_SONNET_MODEL",
                "bedrock/global.anthropic.claude-sonnet-4-6",
            )
            .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", "claude-haiku-4-5")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .output()
    })
    .await
    .expect("join")
    .expect("run claude");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "claude -p failed ({}):\nstdout: {stdout}\nstderr: {stderr}\ngateway:\n{}",
        out.status,
        s.gw.output()
    );
    assert!(
        stdout.contains("Hello from the Bedrock double."),
        "stdout: {stdout}"
    );
    let requests = s.double.requests();
    let streamed: Vec<_> = requests
        .iter()
        .filter(|r| r.operation.as_deref() == Some("InvokeModelWithResponseStream"))
        .collect();
    assert!(
        !streamed.is_empty(),
        "Claude Code's streaming call reached Bedrock: {requests:?}"
    );
    for r in &streamed {
        assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
        assert_eq!(
            r.model_id.as_deref(),
            Some("global.anthropic.claude-sonnet-4-6")
        );
        let body = r.body.as_ref().expect("json body");
        // Claude Code's own fields reach Bedrock; its tools and system blocks are intact.
        assert!(
            body["tools"].as_array().is_some_and(|t| !t.is_empty()),
            "tools forwarded"
        );
        assert!(
            body["system"].as_array().is_some_and(|s| !s.is_empty()),
            "system forwarded"
        );
        assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    }
}

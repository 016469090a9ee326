//! End to end with real clients: the official Anthropic Python SDK and Claude Code itself, each
//! talking to the real `tollgate` binary configured by the README walkthrough, with the strict
//! Bedrock double (SigV4 verified on every request) or the Anthropic double behind it.
//!
//! Claude Code runs in two releases that behave differently: 2.1.331 (pinned) and 2.1.197 (what
//! npm installs on Node 20), which sends a turn's thinking blocks back only when
//! `message_start.message.model` equals the model it asked for.
//!
//! Claude Code also runs in Bedrock mode (`CLAUDE_CODE_USE_BEDROCK=1` against the gateway's
//! `/bedrock` routes), where the gateway answers in Bedrock's binary event stream whichever
//! provider served.
//!
//! `scripts/test.sh` installs the clients and sets `TOLLGATE_TEST_PYTHON` (a venv with
//! `anthropic`), `TOLLGATE_TEST_CLAUDE` (Claude Code 2.1.331 from npm) and
//! `TOLLGATE_TEST_CLAUDE_2_1_197`.

mod common;

use std::process::{Command, Output};

use common::{admin, output, required_env, run_claude, setup, wait_for_config};
use serde_json::{Value, json};
use tollgate_tests::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig};
use tollgate_tests::bedrock_double::script::{THINKING_TEXT, id_suffix};
use tollgate_tests::eventstream;
use tollgate_tests::harness::{TollgateOptions, TollgateProcess};

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
    let mut python = Command::new(python);
    python.args([script, &base, &vk]);
    let out = output(python, "run python").await;
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

/// Both Claude Code releases: (version, executable).
fn claude_releases() -> Vec<(&'static str, String)> {
    vec![
        ("2.1.331", required_env("TOLLGATE_TEST_CLAUDE")),
        ("2.1.197", required_env("TOLLGATE_TEST_CLAUDE_2_1_197")),
    ]
}

/// The README's Claude Code settings, pointed at `base` with the virtual key `vk`.
fn readme_env(base: &str, vk: &str) -> Vec<(String, String)> {
    common::readme_claude_env()
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "ANTHROPIC_BASE_URL" => base.to_owned(),
                "ANTHROPIC_AUTH_TOKEN" => vk.to_owned(),
                _ => v.as_str().expect("string settings").to_owned(),
            };
            (k, v)
        })
        .collect()
}

fn assert_ran(out: &Output, version: &str, gw: &TollgateProcess) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "claude {version} -p failed ({}):\nstdout: {stdout}\nstderr: {}\ngateway:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        gw.output()
    );
    stdout
}

/// The README's settings work on the first request with either release: Claude Code's default
/// (Opus, under a name that changes per release) goes to the Bedrock id the README chose.
#[tokio::test]
async fn claude_code_with_the_readme_settings_works_on_the_first_request() {
    let s = setup().await;
    let work = tempfile::tempdir().expect("work dir");
    for (version, claude) in claude_releases() {
        s.double.clear_requests();
        let env = readme_env(&s.gw.url("/anthropic"), &s.vk);
        let out = run_claude(&claude, work.path(), env, "say hi", &[]).await;
        let stdout = assert_ran(&out, version, &s.gw);
        assert!(
            stdout.contains("Hello from the Bedrock double."),
            "{version} stdout: {stdout}"
        );
        let expected = common::claude_code_first_model(
            &common::readme_claude_env(),
            common::builtin_opus(version),
        );
        let requests = s.double.requests();
        let streamed: Vec<_> = requests
            .iter()
            .filter(|r| r.operation.as_deref() == Some("InvokeModelWithResponseStream"))
            .collect();
        let first = streamed.first().unwrap_or_else(|| {
            panic!("{version}: Claude Code's streaming call reached Bedrock: {requests:?}")
        });
        assert_eq!(
            first.model_id.as_deref(),
            expected.strip_prefix("bedrock/"),
            "{version}: the first request uses the model the README maps"
        );
        for r in &streamed {
            assert_eq!(r.verdict.status, 200, "{version}: {:?}", r.verdict);
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
}

/// The assistant turn of `messages` that called the tool: its thinking block's signature.
fn thinking_signature_before_tool_result(body: &Value) -> Option<(String, String)> {
    let messages = body["messages"].as_array()?;
    let result_at = messages.iter().position(|m| {
        m["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
    })?;
    let assistant = messages[..result_at]
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")?;
    assistant["content"].as_array()?.iter().find_map(|b| {
        (b["type"] == "thinking").then(|| {
            (
                b["thinking"].as_str().unwrap_or_default().to_owned(),
                b["signature"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// Each message's role and block types, for failure messages.
fn shape(body: &Value) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let blocks: Vec<&str> = m["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["type"].as_str())
                .collect();
            format!("{}{blocks:?}", m["role"].as_str().unwrap_or("?"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `tool_result` of the request, as text.
fn tool_result_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect()
}

const NOTE: &str = "tollgate-note-7f3a: the tool really ran";

/// A tool loop with thinking through Bedrock: the first answer is a signed thinking block and a
/// `Read` of a file in the working directory; Claude Code runs the tool and sends the second
/// request with the `tool_result` and the assistant turn, thinking block and signature
/// unchanged. (2.1.197 drops the block unless `message.model` is the name it asked for.)
#[tokio::test]
async fn claude_code_keeps_thinking_blocks_across_a_tool_loop_through_bedrock() {
    let s = setup().await;
    let work = tempfile::tempdir().expect("work dir");
    let note = work.path().join("note.txt");
    std::fs::write(&note, NOTE).expect("note");
    for (version, claude) in claude_releases() {
        s.double.clear_requests();
        let env = readme_env(&s.gw.url("/anthropic"), &s.vk);
        let prompt = format!(
            "[double:thinking] [double:read:{}] Read the note.",
            note.display()
        );
        let out = run_claude(&claude, work.path(), env, &prompt, &[]).await;
        let stdout = assert_ran(&out, version, &s.gw);
        let streamed: Vec<_> = s
            .double
            .requests()
            .into_iter()
            .filter(|r| r.operation.as_deref() == Some("InvokeModelWithResponseStream"))
            .collect();
        let first = streamed
            .iter()
            .find(|r| r.verdict.scenario.as_deref() == Some("tool,thinking"))
            .unwrap_or_else(|| panic!("{version}: the scripted first turn: {streamed:?}"));
        let second = streamed
            .iter()
            .find(|r| {
                r.body
                    .as_ref()
                    .is_some_and(|b| tool_result_text(b).contains(NOTE))
            })
            .unwrap_or_else(|| {
                panic!("{version}: no request carried the tool result: {streamed:?}\n{stdout}")
            });
        let body = second.body.as_ref().expect("json");
        let (thinking, signature) =
            thinking_signature_before_tool_result(body).unwrap_or_else(|| {
                panic!(
                    "{version}: the assistant turn lost its thinking block: {}",
                    shape(body)
                )
            });
        assert_eq!(thinking, THINKING_TEXT, "{version}");
        assert_eq!(
            signature,
            tollgate_tests::thinking::sign(
                tollgate_tests::thinking::Platform::Bedrock,
                &id_suffix(first.seq),
                THINKING_TEXT
            ),
            "{version}: the signature comes back unchanged"
        );
        assert_eq!(
            second.verdict.status, 200,
            "{version}: {:?}",
            second.verdict
        );
        assert!(
            stdout.contains("Hello from the Bedrock double."),
            "{version} stdout: {stdout}"
        );
    }
}

const UPSTREAM_KEY: &str = "sk-ant-api03-e2e-clients-upstream-key-0001";

/// The same loop through the Anthropic provider, where a key alias rewrites Claude Code's
/// default model (`claude-opus-4-8` / `claude-opus-5-5` -> `claude-opus-4-6`): the answers name
/// the requested model, so the thinking block comes back.
#[tokio::test]
async fn claude_code_keeps_thinking_blocks_across_a_tool_loop_through_an_anthropic_alias() {
    let double = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY))
        .expect("anthropic double");
    let gw = TollgateProcess::spawn_with(TollgateOptions {
        envs: vec![("ANTHROPIC_UPSTREAM_KEY".into(), UPSTREAM_KEY.into())],
        ..TollgateOptions::default()
    })
    .await
    .expect("tollgate starts");
    let http = reqwest::Client::new();
    let (st, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/providers",
        json!({"provider": "anthropic"}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = admin(
        &http,
        &gw,
        "PUT",
        "/api/providers/anthropic",
        json!({"network_config": {"base_url": double.base_url()}}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/providers/anthropic/keys",
        json!({"name": "ant", "models": ["*"], "value": "env.ANTHROPIC_UPSTREAM_KEY",
               "aliases": {"claude-opus-4-8": "claude-opus-4-6", "claude-opus-5-5": "claude-opus-4-6"}}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/virtual-keys",
        json!({"name": "e2e-clients", "provider": "anthropic"}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let vk = b["value"].as_str().expect("virtual key").to_owned();
    wait_for_config(&http, &gw, &vk).await;

    let work = tempfile::tempdir().expect("work dir");
    let note = work.path().join("note.txt");
    std::fs::write(&note, NOTE).expect("note");
    for (version, claude) in claude_releases() {
        double.clear_requests();
        // No model settings: Claude Code asks for its own default, which the alias rewrites.
        let env = vec![
            ("ANTHROPIC_BASE_URL".to_owned(), gw.url("/anthropic")),
            ("ANTHROPIC_AUTH_TOKEN".to_owned(), vk.clone()),
        ];
        let prompt = format!(
            "[double:thinking] [double:read:{}] Read the note.",
            note.display()
        );
        let out = run_claude(&claude, work.path(), env, &prompt, &[]).await;
        let stdout = assert_ran(&out, version, &gw);
        let requests: Vec<_> = double
            .requests()
            .into_iter()
            .filter(|r| r.operation.as_deref() == Some("Messages"))
            .collect();
        let first = requests
            .iter()
            .find(|r| r.verdict.scenario.as_deref() == Some("tool,thinking"))
            .unwrap_or_else(|| panic!("{version}: the scripted first turn: {requests:?}"));
        let first_body = first.json().expect("json");
        assert_eq!(
            first_body["model"], "claude-opus-4-6",
            "{version}: the alias rewrote it"
        );
        let sent_signature: String = String::from_utf8_lossy(&first.response_body)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find_map(|e| e["delta"]["signature"].as_str().map(str::to_owned))
            .expect("the double sent a signature");
        let second = requests
            .iter()
            .find_map(|r| r.json().filter(|b| tool_result_text(b).contains(NOTE)))
            .unwrap_or_else(|| {
                panic!("{version}: no request carried the tool result: {requests:?}\n{stdout}")
            });
        let (thinking, signature) =
            thinking_signature_before_tool_result(&second).unwrap_or_else(|| {
                panic!(
                    "{version}: the assistant turn lost its thinking block: {}",
                    shape(&second)
                )
            });
        assert_eq!(
            thinking,
            tollgate_tests::anthropic_double::THINKING_TEXT,
            "{version}"
        );
        assert_eq!(signature, sent_signature, "{version}");
        assert!(
            stdout.contains("Hello from the Anthropic double."),
            "{version} stdout: {stdout}"
        );
    }
}

/// Claude Code itself on an exhausted budget: it stops at once with the gateway's message
/// (429 with `x-should-retry: false`), instead of retrying in a loop; nothing reaches Bedrock.
#[tokio::test]
async fn claude_code_stops_cleanly_on_an_exhausted_budget() {
    let s = setup().await;
    // The example: a budget of $0.000001 covers no request.
    let b = s
        .virtual_key(json!({"name": "tiny", "monthly_budget": 0.000001, "provider": "bedrock"}))
        .await;
    let tiny = b["value"].as_str().expect("value").to_owned();
    let work = tempfile::tempdir().expect("work dir");
    let refused = || {
        s.gw.output()
            .lines()
            .filter(|l| l.contains("budget_exhausted") && l.contains("request refused"))
            .count()
    };
    for (version, claude) in claude_releases() {
        s.double.clear_requests();
        let before = refused();
        let env = readme_env(&s.gw.url("/anthropic"), &tiny);
        let out = run_claude(&claude, work.path(), env, "say hi", &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{version}: {stdout}");
        assert!(
            format!("{stdout}{stderr}").contains("is used up"),
            "{version}: the gateway's message is shown:\nstdout: {stdout}\nstderr: {stderr}"
        );
        // No retry loop: Claude Code retries a retryable error up to 10 times.
        let attempts = refused() - before;
        assert!(
            (1..=2).contains(&attempts),
            "{version}: {attempts} refused attempts\n{}",
            s.gw.output()
        );
        let invoked = s
            .double
            .requests()
            .iter()
            .filter(|r| r.operation.as_deref() != Some("CountTokens"))
            .count();
        assert_eq!(invoked, 0, "{version}: nothing was sent to Bedrock");
    }
}

/// Claude Code with gateway model discovery (`CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`)
/// asks the gateway for its models at start (`GET /anthropic/v1/models?limit=1000` with the
/// virtual key as its bearer token) and gets the key's list; the session then runs as usual.
#[tokio::test]
async fn claude_code_discovers_the_gateways_models() {
    let s = setup().await;
    let work = tempfile::tempdir().expect("work dir");
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let served = || {
        s.gw.output()
            .lines()
            .filter(|l| l.contains("model list served"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(served().is_empty());
    let mut env = readme_env(&s.gw.url("/anthropic"), &s.vk);
    env.push((
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY".to_owned(),
        "1".to_owned(),
    ));
    let out = run_claude(&claude, work.path(), env, "say hi", &[]).await;
    let stdout = assert_ran(&out, "2.1.331", &s.gw);
    assert!(
        stdout.contains("Hello from the Bedrock double."),
        "{stdout}"
    );
    let lines = served();
    assert_eq!(lines.len(), 1, "one list at start: {lines:?}");
    assert!(
        !lines[0].contains("models=0"),
        "the key's models were listed: {}",
        lines[0]
    );
}

/// The walkthrough's gateway with the Anthropic double as a second provider, a virtual key that
/// falls back to it (`anthropic/claude-sonnet-4-6`), the Bedrock double failing every request
/// with `fault`, and a work directory holding a note for Claude Code's Read tool.
async fn failing_bedrock_with_fallback(
    fault: &str,
) -> (
    common::Setup,
    tollgate_tests::anthropic_double::AnthropicDouble,
    String,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let s = setup().await;
    let anthropic = s.add_anthropic(UPSTREAM_KEY).await;
    let b = s
        .virtual_key(
            json!({"name": "resilient", "providers": ["bedrock", "anthropic"],
            "fallbacks": ["anthropic/claude-sonnet-4-6"]}),
        )
        .await;
    let vk = b["value"].as_str().expect("value").to_owned();
    s.double.set_fault(Some(fault));
    let work = tempfile::tempdir().expect("work dir");
    let note = work.path().join("note.txt");
    std::fs::write(&note, NOTE).expect("note");
    (s, anthropic, vk, work, note)
}

/// Claude Code completes a tool-using session while Bedrock throttles every request: the
/// virtual key's fallback (`anthropic/claude-sonnet-4-6`) answers each turn, the tool runs, and
/// the session never sees the throttling.
#[tokio::test]
async fn claude_code_completes_a_tool_session_on_the_fallback_while_bedrock_throttles() {
    let (s, anthropic, vk, work, note) = failing_bedrock_with_fallback("throttle").await;
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let env = readme_env(&s.gw.url("/anthropic"), &vk);
    let prompt = format!("[double:read:{}] Read the note.", note.display());
    let out = run_claude(&claude, work.path(), env, &prompt, &[]).await;
    let stdout = assert_ran(&out, "2.1.331", &s.gw);
    assert!(
        stdout.contains("Hello from the Anthropic double."),
        "the fallback answered the last turn: {stdout}"
    );
    let throttled = s
        .double
        .requests()
        .iter()
        .filter(|r| r.verdict.status == 429)
        .count();
    let answered: Vec<_> = anthropic
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_deref() == Some("Messages"))
        .collect();
    let tool_result = answered
        .iter()
        .filter_map(|r| r.json())
        .any(|b| tool_result_text(&b).contains(NOTE));
    assert!(
        tool_result,
        "the tool ran and its result reached the fallback: {answered:?}"
    );
    assert!(
        throttled >= 2,
        "Bedrock was tried first on each turn ({throttled} throttled)"
    );
    assert!(
        answered.iter().all(|r| r.verdict.status == 200),
        "{answered:?}"
    );
    let fell_back =
        s.gw.output()
            .lines()
            .filter(|l| l.contains("trying the next fallback"))
            .count();
    assert_eq!(fell_back, throttled, "one fallback per throttled attempt");
}

/// Claude Code in Bedrock mode, as the README's "Claude Code in Bedrock mode" section sets it up:
/// the gateway's `/bedrock` base URL, no SigV4 (`CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`), the virtual
/// key as the Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`, sent as `Authorization: Bearer`).
fn bedrock_mode_env(gw: &TollgateProcess, vk: &str) -> Vec<(String, String)> {
    [
        ("CLAUDE_CODE_USE_BEDROCK", "1"),
        ("ANTHROPIC_BEDROCK_BASE_URL", &gw.url("/bedrock")),
        ("CLAUDE_CODE_SKIP_BEDROCK_AUTH", "1"),
        ("AWS_BEARER_TOKEN_BEDROCK", vk),
        ("AWS_REGION", "us-east-1"),
        ("ANTHROPIC_MODEL", BEDROCK_MODE_MODEL),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The model the Bedrock-mode sessions use (`ANTHROPIC_MODEL`): a priced Bedrock id (Claude
/// Code's built-in `us.anthropic.claude-opus-5-5` is newer than the price table, and the
/// walkthrough's key has a budget), with the `:` Claude Code keeps literal in the path.
const BEDROCK_MODE_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// `POST /bedrock/model/{id}/invoke-with-response-stream` straight from the test: the answer's
/// content type, headers, and its frames through the tests' own strict decoder (lengths, both
/// CRCs, headers).
async fn bedrock_mode_stream(
    http: &reqwest::Client,
    gw: &TollgateProcess,
    vk: &str,
    model_segment: &str,
) -> (reqwest::header::HeaderMap, Vec<eventstream::Frame>) {
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = http
        .post(gw.url(&format!(
            "/bedrock/model/{model_segment}/invoke-with-response-stream"
        )))
        .bearer_auth(vk)
        .json(&body)
        .send()
        .await
        .expect("stream call");
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    let headers = resp.headers().clone();
    assert_eq!(
        headers["content-type"], "application/vnd.amazon.eventstream",
        "never text/event-stream on the Bedrock-format routes"
    );
    let bytes = resp.bytes().await.expect("body");
    let frames = eventstream::decode_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
    (headers, frames)
}

/// The text of the `text_delta` events of a decoded stream.
fn streamed_text(frames: &[eventstream::Frame]) -> String {
    frames
        .iter()
        .filter_map(eventstream::Frame::chunk_event)
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// Claude Code itself in Bedrock mode, through the gateway to the Bedrock double: `claude -p`
/// with a tool (the double asks for a `Read` of a file, Claude Code runs it and sends the
/// result). Claude Code's requests carry the virtual key as `Authorization: Bearer`; the model
/// id travels in the path; every call reaching the double is signed by the gateway.
#[tokio::test]
async fn claude_code_in_bedrock_mode_completes_a_tool_session_through_the_gateway() {
    let s = setup().await;
    let work = tempfile::tempdir().expect("work dir");
    let note = work.path().join("note.txt");
    std::fs::write(&note, NOTE).expect("note");
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let prompt = format!("[double:read:{}] Read the note.", note.display());
    let out = run_claude(
        &claude,
        work.path(),
        bedrock_mode_env(&s.gw, &s.vk),
        &prompt,
        &[],
    )
    .await;
    let stdout = assert_ran(&out, "2.1.331", &s.gw);
    assert!(
        stdout.contains("Hello from the Bedrock double."),
        "{stdout}"
    );
    let streamed: Vec<_> = s
        .double
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_deref() == Some("InvokeModelWithResponseStream"))
        .collect();
    assert!(
        streamed.len() >= 2,
        "the tool turn and the answer: {streamed:?}"
    );
    for r in &streamed {
        assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
        assert_eq!(r.model_id.as_deref(), Some(BEDROCK_MODE_MODEL));
        let body = r.body.as_ref().expect("json body");
        assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
        assert!(body.get("model").is_none() && body.get("stream").is_none());
    }
    let tool_result = streamed
        .iter()
        .filter_map(|r| r.body.as_ref())
        .any(|b| tool_result_text(b).contains(NOTE));
    assert!(tool_result, "the tool ran and its result went back");
    // One usage record per turn, under the virtual key, on the Bedrock-format route.
    let usage_lines =
        s.gw.output()
            .lines()
            .filter(|l| l.contains("tollgate::usage") && l.contains(BEDROCK_MODE_MODEL))
            .count();
    assert!(usage_lines >= 2, "{}", s.gw.output());

    // The same route from the test, decoded strictly: Bedrock's chunk frames.
    let (headers, frames) = bedrock_mode_stream(&s.http, &s.gw, &s.vk, BEDROCK_MODE_MODEL).await;
    assert_eq!(headers["x-tollgate-provider"], "bedrock");
    assert!(
        frames.iter().all(|f| f.chunk_event().is_some()),
        "{frames:?}"
    );
    assert_eq!(streamed_text(&frames), "Hello from the Bedrock double.");
    let first = frames[0].chunk_event().expect("chunk");
    assert_eq!(first["type"], "message_start");
    assert_eq!(first["message"]["model"], BEDROCK_MODE_MODEL);
}

/// Bedrock fails every request; the virtual key's fallback (`anthropic/claude-sonnet-4-6`)
/// serves, and its SSE answer reaches Claude Code in Bedrock mode re-encoded as Bedrock's event
/// stream: the session completes, tool and all.
#[tokio::test]
async fn claude_code_in_bedrock_mode_gets_the_anthropic_fallback_as_an_event_stream() {
    let (s, anthropic, vk, work, note) = failing_bedrock_with_fallback("unavailable").await;
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let prompt = format!("[double:read:{}] Read the note.", note.display());
    let out = run_claude(
        &claude,
        work.path(),
        bedrock_mode_env(&s.gw, &vk),
        &prompt,
        &[],
    )
    .await;
    let stdout = assert_ran(&out, "2.1.331", &s.gw);
    assert!(
        stdout.contains("Hello from the Anthropic double."),
        "the fallback answered the last turn: {stdout}"
    );
    let failed: Vec<_> = s
        .double
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_deref() == Some("InvokeModelWithResponseStream"))
        .collect();
    assert!(
        failed.len() >= 2,
        "Bedrock was tried first on each turn: {failed:?}"
    );
    assert!(failed.iter().all(|r| r.verdict.status >= 500), "{failed:?}");
    let answered: Vec<_> = anthropic
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_deref() == Some("Messages"))
        .collect();
    assert!(
        answered.iter().all(|r| r.verdict.status == 200),
        "{answered:?}"
    );
    let tool_result = answered
        .iter()
        .filter_map(|r| r.json())
        .any(|b| tool_result_text(&b).contains(NOTE));
    assert!(tool_result, "the tool ran: {answered:?}");

    // The re-encoded stream, decoded strictly.
    let (headers, frames) = bedrock_mode_stream(&s.http, &s.gw, &vk, BEDROCK_MODE_MODEL).await;
    assert_eq!(headers["x-tollgate-provider"], "anthropic");
    assert_eq!(headers["x-tollgate-fallback-index"], "1");
    assert!(
        frames.iter().all(|f| f.chunk_event().is_some()),
        "{frames:?}"
    );
    assert_eq!(streamed_text(&frames), "Hello from the Anthropic double.");
    let types: Vec<String> = frames
        .iter()
        .filter_map(eventstream::Frame::chunk_event)
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
}

/// The walkthrough's switch to `vertex/claude-sonnet-4-6` (`/model` in a session, `--model` or
/// `ANTHROPIC_MODEL` for `-p`): Claude Code completes a tool session on Claude through Vertex
/// AI, the gateway holding the service account and the double checking the token on every call.
#[tokio::test]
async fn claude_code_completes_a_tool_session_on_vertex() {
    let s = setup().await;
    let vertex = s.add_vertex("service-account.json").await;
    let vk = s
        .virtual_key(json!({"name": "vertex-session", "providers": ["bedrock", "vertex"]}))
        .await["value"]
        .as_str()
        .expect("value")
        .to_owned();
    let work = tempfile::tempdir().expect("work dir");
    let note = work.path().join("note.txt");
    std::fs::write(&note, NOTE).expect("note");
    for (version, claude) in claude_releases() {
        let mut env = readme_env(&s.gw.url("/anthropic"), &vk);
        env.retain(|(k, _)| k != "ANTHROPIC_MODEL");
        env.push((
            "ANTHROPIC_MODEL".to_owned(),
            "vertex/claude-sonnet-4-6".to_owned(),
        ));
        let prompt = format!("[double:read:{}] Read the note.", note.display());
        let out = run_claude(&claude, work.path(), env, &prompt, &[]).await;
        let stdout = assert_ran(&out, version, &s.gw);
        assert!(
            stdout.contains("Hello from the Anthropic double."),
            "{version} stdout: {stdout}"
        );
        let calls = vertex.predictions();
        assert!(
            calls.iter().all(|c| c.status == 200),
            "{version}: {calls:?}"
        );
        let carried = calls.iter().any(|c| {
            c.path
                .ends_with("/models/claude-sonnet-4-6:streamRawPredict")
                && c.json()
                    .is_some_and(|b| tool_result_text(&b).contains(NOTE))
        });
        assert!(
            carried,
            "{version}: the tool result went back through Vertex"
        );
    }
    assert_eq!(vertex.tokens_issued(), 1, "one token for both sessions");
}

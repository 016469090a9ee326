//! End to end: the real `tollgate` binary, started as a user would, in front of the strict
//! Bedrock double (which verifies every SigV4 signature). The setup is the README walkthrough,
//! with the same request bodies; the only addition is pointing the provider at the double.

mod common;

use std::time::Duration;

use common::{AKID, SECRET, admin, message, setup, setup_with, sse_events};
use serde_json::{Value, json};
use tollgate_tests::harness::assert_not_in_output;

#[tokio::test]
async fn walkthrough_non_streaming_message_is_signed_and_translated() {
    let s = setup().await;
    let resp = s
        .post(&message(
            "bedrock/global.anthropic.claude-sonnet-4-6",
            "Hello",
            false,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    // The headers name what served the request; the body reports the name the client asked for.
    assert_eq!(resp.headers()["x-tollgate-provider"], "bedrock");
    assert_eq!(
        resp.headers()["x-tollgate-model"],
        "global.anthropic.claude-sonnet-4-6"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "bedrock/global.anthropic.claude-sonnet-4-6");
    assert_eq!(body["content"][0]["text"], "Hello from the Bedrock double.");
    let r = s.last_request();
    assert_eq!(r.verdict.status, 200, "double verdict: {:?}", r.verdict);
    assert_eq!(r.path, "/model/global.anthropic.claude-sonnet-4-6/invoke");
    assert_eq!(r.access_key_id.as_deref(), Some(AKID));
    assert_eq!(r.region.as_deref(), Some("us-east-1"));
    let sent = r.body.expect("json body");
    assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
    assert!(
        sent.get("model").is_none() && sent.get("stream").is_none(),
        "{sent}"
    );
    assert_eq!(sent["max_tokens"], 256);
}

#[tokio::test]
async fn aliases_and_percent_encoded_model_ids_reach_bedrock() {
    let s = setup().await;
    let resp = s.post(&message("claude-haiku-4-5", "hi", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.last_request().model_id.as_deref(),
        Some("global.anthropic.claude-haiku-4-5-20251001-v1:0")
    );
    let resp = s
        .post(&message(
            "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
            "hi",
            false,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let r = s.last_request();
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
    );
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
}

#[tokio::test]
async fn streaming_relays_every_event_and_keeps_the_client_alive_with_pings() {
    let s = setup().await;
    let mut body = message(
        "bedrock/global.anthropic.claude-sonnet-4-6",
        "[double:slow:700] stream please",
        true,
    );
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .header(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14,claude-code-20250219",
        )
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.expect("body");
    let events = sse_events(&text);
    let names: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.as_str())
        .filter(|e| *e != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    let start = events
        .iter()
        .find(|(e, _)| e == "message_start")
        .expect("start");
    assert_eq!(
        start.1["message"]["model"], "bedrock/global.anthropic.claude-sonnet-4-6",
        "message_start reports the requested model name"
    );
    assert!(names.contains(&"content_block_delta"));
    assert!(
        events.iter().any(|(e, _)| e == "ping"),
        "no ping during 700 ms gaps: {text}"
    );
    for (e, d) in &events {
        assert_eq!(
            d["type"].as_str(),
            Some(e.as_str()),
            "data.type equals the event name"
        );
        assert!(d.get("amazon-bedrock-invocationMetrics").is_none());
    }
    let r = s.last_request();
    assert_eq!(
        r.operation.as_deref(),
        Some("InvokeModelWithResponseStream")
    );
    let sent = r.body.expect("json");
    // Supported betas move into the body; ones Bedrock rejects are not forwarded.
    assert_eq!(
        sent["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14"])
    );
}

#[tokio::test]
async fn tool_use_and_thinking_pass_through() {
    let s = setup().await;
    let resp = s
        .post(&message("claude-sonnet-4-6", "[double:tool]", false))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["stop_reason"], "tool_use");
    assert!(
        body["content"]
            .as_array()
            .expect("content")
            .iter()
            .any(|b| b["type"] == "tool_use")
    );

    let mut req = message("claude-sonnet-4-6", "[double:thinking]", true);
    req["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    // A prior assistant turn with a thinking block Bedrock signed must reach Bedrock
    // byte-identical.
    let signature = tollgate_tests::thinking::sign(
        tollgate_tests::thinking::Platform::Bedrock,
        "earlier",
        "Let me think.",
    );
    req["messages"] = json!([
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": signature},
            {"type": "text", "text": "Answer."}]},
        {"role": "user", "content": [{"type": "text", "text": "[double:thinking]", "cache_control": {"type": "ephemeral"}}]}
    ]);
    let text = s.post(&req).await.text().await.expect("body");
    let events = sse_events(&text);
    assert!(
        events
            .iter()
            .any(|(_, d)| d["delta"]["type"] == "thinking_delta"),
        "{text}"
    );
    assert!(
        events
            .iter()
            .any(|(_, d)| d["delta"]["type"] == "signature_delta")
    );
    let sent = s.last_request().body.expect("json");
    assert_eq!(sent["messages"], req["messages"]);
    assert_eq!(sent["thinking"], req["thinking"]);
}

/// A beta Bedrock does not take leaves no body field behind: `extended-cache-ttl` is never
/// forwarded, so `cache_control.ttl` goes on models before Claude 4.5 (the double rejects it
/// there, as Bedrock does) and stays where Bedrock takes it natively. Each distinct dropped beta
/// is logged once at info.
#[tokio::test]
async fn dropped_betas_take_their_body_fields_along() {
    let s = setup().await;
    let send = |model: &str| {
        let mut body = message(model, "hi", true);
        body["system"] = json!([{"type": "text", "text": "You are terse.",
                                 "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
        s.http
            .post(s.gw.url("/anthropic/v1/messages"))
            .header("x-api-key", &s.vk)
            .header(
                "anthropic-beta",
                "claude-code-20250219,extended-cache-ttl-2025-04-11,interleaved-thinking-2025-05-14",
            )
            .json(&body)
            .send()
    };
    for _ in 0..2 {
        let resp = send("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0")
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.expect("body");
        assert!(text.contains("event: message_stop"), "{text}");
        let sent = s.last_request().body.expect("json");
        assert_eq!(
            sent["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(
            sent["anthropic_beta"],
            json!(["interleaved-thinking-2025-05-14"])
        );
    }
    let resp = send("bedrock/global.anthropic.claude-sonnet-4-6")
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let _ = resp.text().await;
    let sent = s.last_request().body.expect("json");
    assert_eq!(
        sent["system"][0]["cache_control"],
        json!({"type": "ephemeral", "ttl": "1h"})
    );
    let log = s.gw.output();
    for beta in ["claude-code-20250219", "extended-cache-ttl-2025-04-11"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("INFO") && l.contains("not accepted by Bedrock") && l.contains(beta)
            })
            .collect();
        assert_eq!(lines.len(), 1, "{beta} logged once at info:\n{log}");
    }
    assert!(
        log.lines().any(|l| l.contains("extended-cache-ttl-2025-04-11")
            && l.contains("cache_control.ttl")),
        "{log}"
    );
}

#[tokio::test]
async fn bedrock_errors_map_to_anthropic_errors() {
    let s = setup().await;
    for (trigger, status, kind) in [
        ("[double:throttle]", 429, "rate_limit_error"),
        ("[double:validation]", 400, "invalid_request_error"),
        ("[double:unavailable]", 529, "overloaded_error"),
    ] {
        let resp = s.post(&message("claude-sonnet-4-6", trigger, true)).await;
        assert_eq!(resp.status().as_u16(), status, "{trigger}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["type"], "error", "{trigger}");
        assert_eq!(body["error"]["type"], kind, "{trigger}");
        assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty());
    }
}

#[tokio::test]
async fn mid_stream_failures_end_with_an_sse_error_event() {
    let s = setup().await;
    let text = s
        .post(&message(
            "claude-sonnet-4-6",
            "[double:midstream-throttle]",
            true,
        ))
        .await
        .text()
        .await
        .expect("body");
    let events = sse_events(&text);
    assert_eq!(
        events.first().map(|(e, _)| e.as_str()),
        Some("message_start")
    );
    let (last, data) = events.last().expect("events");
    assert_eq!(last, "error", "{text}");
    assert_eq!(data["error"]["type"], "rate_limit_error");
    // The exception is logged at warn like an HTTP error, not only in the usage line.
    let log = s.gw.output();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("upstream ended the stream with an error")
            && l.contains("rate_limit_error")
            && l.contains("429")),
        "{log}"
    );

    let text = s
        .post(&message("claude-sonnet-4-6", "[double:truncate]", true))
        .await
        .text()
        .await
        .expect("body");
    let events = sse_events(&text);
    let (last, data) = events.last().expect("events");
    assert_eq!(
        last, "error",
        "a truncated stream must not look complete: {text}"
    );
    assert_eq!(data["error"]["type"], "api_error");
}

/// Claude Code's default model is a bare Claude name (`claude-opus-4-8` in 2.1.197); when no
/// alias maps it, Bedrock would answer "The provided model identifier is invalid". The gateway
/// answers itself, naming the setting or alias to add, and sends nothing upstream.
#[tokio::test]
async fn a_bare_claude_name_without_alias_names_the_alias_to_add() {
    let s = setup().await;
    let before = s.double.requests().len();
    for stream in [false, true] {
        let resp = s.post(&message("claude-opus-4-8", "hi", stream)).await;
        assert_eq!(resp.status(), 404);
        assert!(resp.headers().contains_key("request-id"));
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        for part in [
            r#"model "claude-opus-4-8" has no alias on provider "bedrock""#,
            "set ANTHROPIC_DEFAULT_OPUS_MODEL to bedrock/<model id>",
            r#"add "claude-opus-4-8": "#,
        ] {
            assert!(message.contains(part), "{message}");
        }
    }
    assert_eq!(s.double.requests().len(), before, "nothing went to Bedrock");
    // Aliased bare names and Bedrock ids still go through.
    let resp = s.post(&message("claude-sonnet-4-6", "hi", false)).await;
    assert_eq!(resp.status(), 200);
    let resp = s
        .post(&message("global.anthropic.claude-opus-4-6-v1", "hi", false))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.last_request().model_id.as_deref(),
        Some("global.anthropic.claude-opus-4-6-v1")
    );
}

#[tokio::test]
async fn bad_input_gets_anthropic_shaped_errors() {
    let s = setup_with(&["--max-body-bytes", "4096"]).await;
    let url = s.gw.url("/anthropic/v1/messages");
    let call = |body: reqwest::Body, key: Option<&str>| {
        let mut r = s
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };
    let check = |status: u16, kind: &'static str| {
        move |resp: reqwest::Response| async move {
            let got = resp.status().as_u16();
            let v: Value = resp.json().await.expect("json error body");
            assert_eq!(got, status, "{v}");
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{v}");
            v
        }
    };
    let ok_body = message("claude-sonnet-4-6", "hi", false).to_string();
    // Missing key, unknown key: 401, and the unknown key's answer does not reveal anything.
    check(401, "authentication_error")(call(ok_body.clone().into(), None).await.expect("call"))
        .await;
    let unknown = check(401, "authentication_error")(
        call(ok_body.clone().into(), Some("sk-tg-not-a-real-key"))
            .await
            .expect("call"),
    )
    .await;
    assert_eq!(unknown["error"]["message"], "invalid virtual key");
    // Malformed JSON, missing model, unknown model, unknown provider.
    check(400, "invalid_request_error")(call("{not json".into(), Some(&s.vk)).await.expect("call"))
        .await;
    check(400, "invalid_request_error")(
        call(
            json!({"max_tokens": 1, "messages": []}).to_string().into(),
            Some(&s.vk),
        )
        .await
        .expect("call"),
    )
    .await;
    check(404, "not_found_error")(
        call(
            message("vertex/claude-x", "hi", false).to_string().into(),
            Some(&s.vk),
        )
        .await
        .expect("call"),
    )
    .await;
    check(404, "not_found_error")(
        call(
            message("anthropic/claude-x", "hi", false)
                .to_string()
                .into(),
            Some(&s.vk),
        )
        .await
        .expect("call"),
    )
    .await;
    // Over the body cap.
    let big = message("claude-sonnet-4-6", &"x".repeat(10_000), false).to_string();
    check(413, "request_too_large")(call(big.into(), Some(&s.vk)).await.expect("call")).await;
    // The gateway still serves after all of that.
    assert_eq!(
        s.post(&message("claude-sonnet-4-6", "hi", false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unreachable_and_slow_upstreams_get_502_and_504() {
    let s = setup().await;
    // Slow: the provider's request timeout is 5 s (set in setup); the double never answers.
    let resp = s
        .post(&message("claude-sonnet-4-6", "[double:hang]", false))
        .await;
    assert_eq!(resp.status(), 504);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "timeout_error");
    // Unreachable: point the provider at a closed port.
    let closed = tollgate_tests::harness::free_port().expect("port");
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/providers/bedrock",
        json!({"network_config": {"base_url": format!("http://127.0.0.1:{closed}")}}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let mut last = 0;
    for _ in 0..50 {
        let resp = s.post(&message("claude-sonnet-4-6", "hi", false)).await;
        last = resp.status().as_u16();
        if last == 502 {
            let v: Value = resp.json().await.expect("json");
            assert_eq!(v["error"]["type"], "api_error");
            // A stable message with the request id; the OS error and the address stay in the log.
            let id = v["request_id"].as_str().expect("request id");
            assert_eq!(
                v["error"]["message"],
                format!(
                    "could not connect to provider \"bedrock\" (request id {id}; the gateway \
                     log has the details)"
                ),
                "{v}"
            );
            let log = s.gw.stderr();
            assert!(
                log.lines().any(|l| l.contains(id)
                    && l.contains("request failed")
                    && l.to_lowercase().contains("connection refused")),
                "the detail is logged with the request id: {log}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, 502);
}

#[tokio::test]
async fn warm_up_count_tokens_and_secrets_stay_out_of_logs_and_responses() {
    let s = setup().await;
    for path in ["/", "/api/hello"] {
        let r = s.http.head(s.gw.url(path)).send().await.expect("head");
        assert_eq!(r.status(), 200, "HEAD {path}");
    }
    let r = s
        .http
        .post(s.gw.url("/anthropic/v1/messages/count_tokens?beta=true"))
        .header("x-api-key", &s.vk)
        .json(&json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "count these words"}]}))
        .send()
        .await
        .expect("count");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert!(v["input_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    let req = s.last_request();
    assert_eq!(req.operation.as_deref(), Some("CountTokens"));
    assert_eq!(req.model_id.as_deref(), Some("anthropic.claude-sonnet-4-6"));

    // Admin responses never show the virtual key or credentials.
    for path in [
        "/api/providers/bedrock/keys",
        "/api/virtual-keys",
        "/api/providers",
    ] {
        let body = s
            .http
            .get(s.gw.url(path))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(!body.contains(&s.vk), "{path} leaks the virtual key");
        assert!(!body.contains(SECRET), "{path} leaks the AWS secret");
    }
    assert_not_in_output(&s.gw, &s.vk).expect("virtual key not logged");
    assert_not_in_output(&s.gw, SECRET).expect("AWS secret not logged");
    assert_not_in_output(&s.gw, "Signature=").expect("signatures not logged");
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback_without_an_admin_token() {
    let out = std::process::Command::new(tollgate_tests::harness::tollgate_binary())
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env(
            "TOLLGATE_DATA_DIR",
            std::env::temp_dir().join("tollgate-refuse-test"),
        )
        .output()
        .expect("run tollgate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TOLLGATE_ADMIN_TOKEN"), "{stderr}");
}

/// The curl commands of the README section whose heading starts with `heading`: each starts with
/// `curl -s ` and may continue over several lines until its quotes close.
fn readme_curl_commands(heading: &str) -> Vec<String> {
    let readme = common::readme();
    let section = readme
        .split(&format!("\n## {heading}"))
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("a README section {heading}"));
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in section.lines() {
        if current.is_empty() && !line.starts_with("curl -s ") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if current.matches('\'').count().is_multiple_of(2) {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

/// The README's quick-start curl commands, run with `sh` exactly as written there (only the
/// address is changed), must configure a working gateway.
#[tokio::test]
async fn readme_curl_commands_work_as_pasted() {
    let mut commands = readme_curl_commands("Quick start");
    assert_eq!(
        commands.len(),
        4,
        "the README shows three set-up curl commands and the model list: {commands:?}"
    );
    let list_models = commands.pop().expect("the model list");
    let double = tollgate_tests::bedrock_double::BedrockDouble::start(
        tollgate_tests::bedrock_double::BedrockDoubleConfig::new().with_key(AKID, SECRET),
    )
    .expect("double");
    let gw = tollgate_tests::harness::TollgateProcess::spawn(
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    )
    .await
    .expect("tollgate");
    let addr = gw.addr().to_string();
    let mut last = String::new();
    for cmd in &commands {
        let cmd = cmd.replace("localhost:8080", &addr);
        let out = tokio::process::Command::new("sh")
            .args(["-c", &format!("{} -w '\\n%{{http_code}}'", cmd.trim_end())])
            .output()
            .await
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.trim_end().ends_with("201"), "`{cmd}` answered: {text}");
        last = text;
    }
    let vk_json = last.trim_end().trim_end_matches("201").trim();
    let vk: Value = serde_json::from_str(vk_json).expect("virtual key JSON");
    let vk = vk["value"].as_str().expect("value").to_owned();
    let http = reqwest::Client::new();
    let (s, b) = admin(
        &http,
        &gw,
        "PUT",
        "/api/providers/bedrock",
        json!({"network_config": {"base_url": double.base_url()}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    common::wait_for_config(&http, &gw, &vk).await;
    let resp = http
        .post(gw.url("/anthropic/v1/messages"))
        .header("authorization", format!("Bearer {vk}"))
        .json(&message("claude-sonnet-4-6", "hi", false))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    // The model list of the new key: the two aliases, bare and with their provider.
    let cmd = list_models
        .replace("localhost:8080", &addr)
        .replace("sk-tg-...", &vk);
    let out = tokio::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .await
        .expect("sh");
    let list: Value = serde_json::from_slice(&out.stdout).expect("model list JSON");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "claude-haiku-4-5",
            "claude-sonnet-4-6",
            "bedrock/claude-haiku-4-5",
            "bedrock/claude-sonnet-4-6"
        ],
        "{list}"
    );

    // The first request of a Claude Code session with the README's settings succeeds, for each
    // captured release: the captured body and betas, with the model the settings make Claude
    // Code ask for (e2e_clients checks that resolution against the real releases). With a
    // gateway model name neither release sends the `system` messages of the capture (they come
    // with its first-party default name), so those are left out.
    let env = common::readme_claude_env();
    for (version, mut body, betas) in common::claude_code_captures() {
        let model = common::claude_code_first_model(&env, common::builtin_opus(&version));
        assert!(
            model.starts_with("bedrock/"),
            "{version}: the README sends the first request to a Bedrock id, not {model}"
        );
        body["model"] = json!(model);
        if let Some(messages) = body["messages"].as_array_mut() {
            messages.retain(|m| m["role"] != "system");
        }
        let resp = http
            .post(gw.url("/anthropic/v1/messages?beta=true"))
            .header("authorization", format!("Bearer {vk}"))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", &betas)
            .json(&body)
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), 200, "{version}: {}", gw.output());
        let text = resp.text().await.expect("stream");
        let events = sse_events(&text);
        assert_eq!(events[0].1["message"]["model"], json!(model), "{version}");
        assert_eq!(
            events.last().map(|(e, _)| e.as_str()),
            Some("message_stop"),
            "{version}: {text}"
        );
        let r = double.requests().pop().expect("request");
        assert_eq!(r.verdict.status, 200, "{version}: {:?}", r.verdict);
        assert_eq!(
            r.model_id.as_deref(),
            model.strip_prefix("bedrock/"),
            "{version}"
        );
    }
}

/// All-in-one keeps one usage record per request in its SQLite store, and a graceful stop
/// loses none of them. Each row carries its cost at the Bedrock scope it was served through:
/// the `global.` profile at the base rate, the `us.` geographic profile 10 % above it.
#[tokio::test]
async fn all_in_one_stores_one_usage_row_per_request_across_a_stop() {
    use sqlx::Connection;
    let mut s = setup().await;
    for i in 0..20 {
        let stream = i % 2 == 0;
        let model = if i < 16 {
            "claude-sonnet-4-6"
        } else {
            "bedrock/us.anthropic.claude-sonnet-4-6"
        };
        let resp = s.post(&message(model, "hi", stream)).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
    }
    // Every request the double answered (the 20 above and setup's warm-up calls) succeeded.
    let answered = s
        .double
        .requests()
        .iter()
        .filter(|r| r.verdict.status == 200)
        .count() as i64;
    assert!(answered >= 21);
    assert!(s.gw.terminate(Duration::from_secs(15)), "stops on SIGTERM");
    let db = s.gw.data_dir().join("tollgate.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the all-in-one store");
    let (ok, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT request_id) FROM usage_records WHERE status = 200",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(ok, answered, "one usage row per successful request");
    assert_eq!(distinct, ok);

    // Sonnet 4.6 per million tokens: $3 input, $15 output, $3.75 / $6 cache writes (5 minutes /
    // 1 hour), $0.30 cache reads; in n$ per token, and 10 % more through `us.`.
    type Row = (String, i64, i64, i64, i64, i64, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT model_resolved, input_tokens, output_tokens, cache_read_input_tokens, \
         cache_write_input_tokens, cache_write_1h_input_tokens, cost_nano_usd \
         FROM usage_records WHERE status = 200",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    let mut geo = 0;
    for (model, input, output, read, write, write_1h, cost) in &rows {
        let premium = match model.as_str() {
            "global.anthropic.claude-sonnet-4-6" => 100,
            "us.anthropic.claude-sonnet-4-6" => {
                geo += 1;
                110
            }
            other => panic!("unexpected model {other}"),
        };
        let base = input * 3_000
            + output * 15_000
            + (write - write_1h) * 3_750
            + write_1h * 6_000
            + read * 300;
        assert_eq!(*cost, Some(base * premium / 100), "{model}");
    }
    assert_eq!(geo, 4);
    // The 20 answers (the rest are setup's count-tokens calls: no token used, cost 0).
    assert_eq!(rows.iter().filter(|r| r.2 > 0).count(), 20, "{rows:?}");
}

/// A client that goes away mid-stream, while the upstream is silent, is noticed at once: the
/// upstream request ends and a usage row with status 499 (`client_closed`) is written when the
/// response body is dropped, long before the upstream stream would have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_is_recorded_as_499() {
    use sqlx::Connection;
    let s = setup().await;
    let mut resp = s
        .post(&message(
            "claude-sonnet-4-6",
            "[double:slow:1000] stream please",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("message_start") {
        let chunk = resp.chunk().await.expect("read").expect("more events");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let dropped_at = std::time::Instant::now();
    // The double would keep streaming for several more seconds (1 s between events); the gateway
    // must notice the client is gone while it waits, end the upstream call and write the record
    // (usage is stored in batches of at most 1 s). The store is read while the gateway runs.
    let db = s.gw.data_dir().join("tollgate.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .expect("open the all-in-one store");
    let mut rows: Vec<(i64, String, bool)> = Vec::new();
    while rows.is_empty() && dropped_at.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // (Setup's warm-up calls may have failed before the provider pointed at the double;
        // they are not streams.)
        rows = sqlx::query_as(
            "SELECT status, error_class, stream FROM usage_records WHERE status <> 200 AND stream",
        )
        .fetch_all(&mut conn)
        .await
        .expect("rows");
    }
    assert_eq!(rows, vec![(499, "client_closed".to_owned(), true)]);
}

/// A minimal HTTP CONNECT proxy on loopback; returns its address and the targets it tunnelled.
async fn connect_proxy() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut parts = head.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                log.lock().unwrap().push(target.to_owned());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

/// `HTTP_PROXY` / `HTTPS_PROXY` send provider traffic through a CONNECT tunnel (the signature
/// still verifies end to end); `NO_PROXY` exempts hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_honour_the_proxy_environment() {
    let (proxy, seen) = connect_proxy().await;
    let proxy_url = format!("http://{proxy}");
    let s = common::setup_with_env(
        &[],
        &[("HTTP_PROXY", &proxy_url), ("HTTPS_PROXY", &proxy_url)],
    )
    .await;
    let resp = s.post(&message("claude-sonnet-4-6", "hi", false)).await;
    assert_eq!(resp.status(), 200);
    let double_addr = s.double.base_url().trim_start_matches("http://").to_owned();
    // (Before the test points the provider at the double, a warm-up call may have gone to the
    // real AWS endpoint, through the proxy too; only the double's tunnel matters here.)
    let tunnels = seen.lock().unwrap().clone();
    assert!(
        tunnels.contains(&double_addr),
        "the upstream connection went through the proxy to the double: {tunnels:?}"
    );
    assert_eq!(s.last_request().verdict.status, 200, "signature verified");

    // Only `HTTP_PROXY` this time: a warm-up call to the real (https) AWS endpoint does not use
    // it, so any tunnel seen would be one to the double, which `NO_PROXY` exempts.
    let (proxy, seen) = connect_proxy().await;
    let proxy_url = format!("http://{proxy}");
    let s = common::setup_with_env(
        &[],
        &[
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    )
    .await;
    let resp = s.post(&message("claude-sonnet-4-6", "hi", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        seen.lock().unwrap().is_empty(),
        "NO_PROXY hosts are reached directly"
    );
}

/// Unknown paths are 404s that say what is served (a base URL ending in `/v1`, model listing),
/// logged at info with the path; a model id that tries to forge a log line is a 400 and the log
/// stays one line per event; refused unauthenticated requests are not usage rows.
#[tokio::test]
async fn unknown_paths_forged_model_ids_and_refusals_are_explained_not_logged_as_usage() {
    use sqlx::Connection;
    let mut s = setup().await;
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/v1/messages?beta=true"))
        .header("x-api-key", &s.vk)
        .json(&message("claude-sonnet-4-6", "hi", false))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    let text = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("no route for POST /anthropic/v1/v1/messages: ")
            && text.contains("POST /anthropic/v1/messages")
            && text.contains("ANTHROPIC_BASE_URL"),
        "{text}"
    );
    let resp = s
        .http
        .get(s.gw.url("/v1/models?limit=1000"))
        .header("x-api-key", &s.vk)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200, "model discovery is served");
    let v: Value = resp.json().await.expect("json");
    assert!(v["data"].is_array(), "{v}");
    // Admin paths keep the admin API's error shape.
    let resp = s
        .http
        .get(s.gw.url("/api/no-such-thing"))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]["type"].is_string() && v.get("type").is_none(),
        "{v}"
    );

    let forged = "claude\n2026-01-01T00:00:00.000000Z  INFO tollgate::usage: forged line";
    let resp = s.post(&message(forged, "hi", false)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let text = v["error"]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("model: character '\\n'"), "{text}");

    for _ in 0..5 {
        let resp = s
            .http
            .post(s.gw.url("/anthropic/v1/messages"))
            .header("x-api-key", "sk-tg-not-a-real-key")
            .json(&message("claude-sonnet-4-6", "hi", false))
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(
        s.post(&message("claude-sonnet-4-6", "hi", false))
            .await
            .status(),
        200
    );

    let log = s.gw.stderr();
    assert!(
        log.lines().any(|l| l.contains("INFO")
            && l.contains("no route for this request")
            && l.contains("/anthropic/v1/v1/messages")),
        "404s are logged at info with the path: {log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01")) && !log.contains("forged line"),
        "no forged log line: {log}"
    );

    // The store has usage rows for the authenticated requests (the 400 included), none for the
    // 401s and 404s.
    assert!(s.gw.terminate(Duration::from_secs(15)), "stops on SIGTERM");
    let db = s.gw.data_dir().join("tollgate.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the all-in-one store");
    let counts: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM usage_records GROUP BY status ORDER BY status",
    )
    .fetch_all(&mut conn)
    .await
    .expect("count");
    assert!(
        counts
            .iter()
            .all(|(status, _)| *status != 401 && *status != 404),
        "{counts:?}"
    );
    let invalid_model: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM usage_records WHERE error_class = 'invalid_model'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(invalid_model, 1, "{counts:?}");
}

/// The README's Governance section, run with `sh` as written (the address changed, and each
/// `<... id>` placeholder replaced by the id an earlier command of the section created): every
/// command succeeds, and the models it describes are what the API then shows.
#[tokio::test]
async fn readme_governance_commands_work_as_pasted() {
    let gw = tollgate_tests::harness::TollgateProcess::spawn(&[], &[])
        .await
        .expect("tollgate");
    let http = reqwest::Client::new();
    let (st, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/providers",
        json!({"provider": "bedrock"}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let commands = readme_curl_commands("Governance");
    assert!(commands.len() >= 8, "{commands:?}");
    let addr = gw.addr().to_string();
    // Ids created so far, by the path they were created on, and the first key's budget.
    let mut ids: std::collections::HashMap<&str, String> = Default::default();
    let mut budget_id: Option<String> = None;
    for cmd in &commands {
        let mut cmd = cmd.replace("localhost:8080", &addr);
        for (placeholder, path) in [
            ("<customer id>", "/api/customers"),
            ("<team id>", "/api/teams"),
        ] {
            if let Some(id) = ids.get(path) {
                cmd = cmd.replace(placeholder, id);
            }
        }
        for path in ["/api/virtual-keys", "/api/pricing"] {
            if let Some(id) = ids.get(path) {
                cmd = cmd.replace(&format!("{path}/<id>"), &format!("{path}/{id}"));
            }
        }
        if let Some(id) = &budget_id {
            cmd = cmd.replace("<budget id>", id);
        }
        assert!(!cmd.contains('<'), "a placeholder is left: {cmd}");
        let out = tokio::process::Command::new("sh")
            .args(["-c", &format!("{} -w '\\n%{{http_code}}'", cmd.trim_end())])
            .output()
            .await
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", &text));
        assert!(
            ["200", "201", "204"].contains(&code),
            "`{cmd}` answered: {text}"
        );
        if code == "201" {
            let created: Value = serde_json::from_str(body).expect("JSON");
            let path = [
                "/api/customers",
                "/api/teams",
                "/api/virtual-keys",
                "/api/pricing",
            ]
            .into_iter()
            .find(|p| cmd.contains(&format!("{p} ")))
            .expect("a create");
            // The first key or override made is the one later commands change.
            ids.entry(path)
                .or_insert_with(|| created["id"].as_str().expect("id").to_owned());
            if path == "/api/virtual-keys" && budget_id.is_none() {
                budget_id = created["budgets"][0]["id"].as_str().map(str::to_owned);
            }
        }
    }
    let (st, keys) = admin(&http, &gw, "GET", "/api/virtual-keys", json!(null)).await;
    assert_eq!(st, 200);
    let ci = keys["virtual_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci-bot")
        .expect("ci-bot");
    assert_eq!(ci["team_id"], json!(ids["/api/teams"]));
    assert_eq!(ci["max_concurrent"], 4);
    assert_eq!(
        ci["provider_configs"][0]["allowed_models"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, pricing) = admin(&http, &gw, "GET", "/api/pricing", json!(null)).await;
    assert_eq!(
        pricing["overrides"].as_array().unwrap().len(),
        1,
        "one replaced, one deleted"
    );
}

/// A stream already running when its budget runs out completes; the next request is refused
/// while it runs (its worst case is reserved), and admitted again once it has settled at its
/// actual, much smaller, cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_completes_when_its_budget_runs_out() {
    let s = setup().await;
    // Room for one reservation of these requests (about $0.0103: a prompt bound of ~1,075
    // tokens at $6 per million plus 256 output tokens at $15), not two.
    let b = s
        .virtual_key(json!({"name": "small", "monthly_budget": 0.015, "provider": "bedrock"}))
        .await;
    let small = b["value"].as_str().expect("value").to_owned();
    let usage_path = format!("/api/virtual-keys/{}/usage", b["id"].as_str().expect("id"));
    let in_flight = || async {
        let (st, usage) = admin(&s.http, &s.gw, "GET", &usage_path, Value::Null).await;
        assert_eq!(st, 200, "{usage}");
        usage["in_flight"].as_u64().expect("in_flight")
    };
    let post = |body: Value| {
        s.http
            .post(s.gw.url("/anthropic/v1/messages"))
            .bearer_auth(&small)
            .json(&body)
            .send()
    };
    let mut stream = post(message("claude-sonnet-4-6", "[double:slow:500] go", true))
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains("message_start") {
        let chunk = stream.chunk().await.expect("read").expect("more");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let refused = post(message("claude-sonnet-4-6", "hi", false))
        .await
        .expect("call");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-should-retry"], "false");
    // The usage endpoint shows the stream in flight (all-in-one reports twice a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut seen_in_flight = 0;
    while seen_in_flight == 0 && std::time::Instant::now() < deadline {
        seen_in_flight = in_flight().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen_in_flight, 1, "the stream is in flight");
    while let Some(chunk) = stream.chunk().await.expect("read") {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: message_stop"), "{seen}");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while in_flight().await != 0 {
        assert!(std::time::Instant::now() < deadline, "still in flight");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = post(message("claude-sonnet-4-6", "hi", false))
        .await
        .expect("call");
    assert_eq!(
        again.status(),
        200,
        "{}",
        again.text().await.unwrap_or_default()
    );
}

/// The README's fallback commands, as pasted: a key whose requests fall back to Anthropic, and
/// a request with its own list; with Bedrock throttling every request, the answer comes from
/// the last entry.
#[tokio::test]
async fn readme_fallback_commands_work_as_pasted() {
    const UPSTREAM_KEY: &str = "sk-ant-api03-readme-fallbacks";
    let bedrock = tollgate_tests::bedrock_double::BedrockDouble::start(
        tollgate_tests::bedrock_double::BedrockDoubleConfig::new().with_key(AKID, SECRET),
    )
    .expect("double");
    bedrock.set_fault(Some("throttle"));
    let anthropic = tollgate_tests::anthropic_double::AnthropicDouble::start(
        tollgate_tests::anthropic_double::AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY),
    )
    .expect("anthropic double");
    let gw = tollgate_tests::harness::TollgateProcess::spawn(
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    )
    .await
    .expect("tollgate");
    let http = reqwest::Client::new();
    for (path, body) in [
        (
            "/api/providers",
            json!({"provider": "bedrock", "network_config": {"base_url": bedrock.base_url()}}),
        ),
        (
            "/api/providers/bedrock/keys",
            json!({"name": "bedrock-key", "models": ["*"],
                   "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                       "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}}),
        ),
        (
            "/api/providers",
            json!({"provider": "anthropic", "network_config": {"base_url": anthropic.base_url()}}),
        ),
        (
            "/api/providers/anthropic/keys",
            json!({"name": "ant", "models": ["*"], "value": UPSTREAM_KEY}),
        ),
    ] {
        let (st, b) = admin(&http, &gw, "POST", path, body).await;
        assert_eq!(st, 201, "{path}: {b}");
    }
    let commands = readme_curl_commands("Fallbacks");
    assert_eq!(commands.len(), 3, "{commands:?}");
    let addr = gw.addr().to_string();
    let run = |cmd: String| async move {
        let out = tokio::process::Command::new("sh")
            .args(["-c", &cmd])
            .output()
            .await
            .expect("sh");
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| {
            panic!("`{cmd}` answered: {}", String::from_utf8_lossy(&out.stdout))
        })
    };
    let key = run(commands[0].replace("localhost:8080", &addr)).await;
    assert_eq!(
        key["fallbacks"],
        json!(["anthropic/claude-sonnet-4-6"]),
        "{key}"
    );
    let vk = key["value"].as_str().expect("value").to_owned();
    // The key is known once its model list answers (Bedrock refuses everything here).
    let mut known = false;
    for _ in 0..100 {
        let r = http
            .get(gw.url("/v1/models"))
            .header("x-api-key", &vk)
            .send()
            .await
            .expect("models");
        if r.status() == 200 {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(known, "{}", gw.output());
    let answer = run(commands[1]
        .replace("localhost:8080", &addr)
        .replace("sk-tg-...", &vk))
    .await;
    assert_eq!(
        answer["content"][0]["text"], "Hello from the Anthropic double.",
        "{answer}"
    );
    assert_eq!(
        answer["model"], "bedrock/global.anthropic.claude-sonnet-4-6",
        "the name asked for"
    );
    let throttled: Vec<_> = bedrock
        .requests()
        .into_iter()
        .filter_map(|r| (r.verdict.status == 429).then_some(r.model_id))
        .collect();
    assert_eq!(
        throttled,
        [
            Some("global.anthropic.claude-sonnet-4-6".to_owned()),
            Some("us.anthropic.claude-sonnet-4-6".to_owned())
        ]
    );
    // The retry settings, as pasted (the PUT replaces the whole network block).
    let updated = run(commands[2].replace("localhost:8080", &addr)).await;
    let network = &updated["network_config"];
    assert_eq!(
        (
            &network["max_retries"],
            &network["retry_backoff_initial"],
            &network["retry_backoff_max"],
            &network["response_header_timeout_in_seconds"]
        ),
        (&json!(2), &json!(500), &json!(5000), &json!(30)),
        "{updated}"
    );
}

/// The README's load-balancing commands, as pasted: keys by weight within Bedrock, the virtual
/// key's provider weights across Bedrock and Anthropic, and a session that stays on one key.
#[tokio::test]
async fn readme_load_balancing_commands_work_as_pasted() {
    const UPSTREAM_KEY: &str = "sk-ant-api03-readme-balancing";
    let bedrock = tollgate_tests::bedrock_double::BedrockDouble::start(
        tollgate_tests::bedrock_double::BedrockDoubleConfig::new().with_key(AKID, SECRET),
    )
    .expect("double");
    let anthropic = tollgate_tests::anthropic_double::AnthropicDouble::start(
        tollgate_tests::anthropic_double::AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY),
    )
    .expect("anthropic double");
    let gw = tollgate_tests::harness::TollgateProcess::spawn(
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("ANTHROPIC_API_KEY", UPSTREAM_KEY),
        ],
    )
    .await
    .expect("tollgate");
    let http = reqwest::Client::new();
    for body in [
        json!({"provider": "bedrock", "network_config": {"base_url": bedrock.base_url()}}),
        json!({"provider": "anthropic", "network_config": {"base_url": anthropic.base_url()}}),
    ] {
        let (st, b) = admin(&http, &gw, "POST", "/api/providers", body).await;
        assert_eq!(st, 201, "{b}");
    }
    let commands = readme_curl_commands("Load balancing");
    assert_eq!(commands.len(), 4, "{commands:?}");
    let addr = gw.addr().to_string();
    let mut created = Vec::new();
    for cmd in &commands {
        let out = tokio::process::Command::new("sh")
            .args(["-c", &cmd.replace("localhost:8080", &addr)])
            .output()
            .await
            .expect("sh");
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("`{cmd}`: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(v.get("error").is_none(), "`{cmd}`: {v}");
        created.push(v);
    }
    let vk = created[3]["value"].as_str().expect("value").to_owned();
    let send = |session: String| {
        let http = http.clone();
        let url = gw.url("/anthropic/v1/messages");
        let vk = vk.clone();
        async move {
            let r = http
                .post(url)
                .header("x-api-key", vk)
                .header("x-claude-code-session-id", session)
                .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let key = r
                .headers()
                .get("x-tollgate-provider-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (status, key)
        }
    };
    // The key is known once it answers.
    let mut first = (0, String::new());
    for _ in 0..100 {
        first = send("warm-up".into()).await;
        if first.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.0, 200, "{}", gw.output());
    // A session's requests all go to one key.
    for _ in 0..5 {
        assert_eq!(send("warm-up".into()).await, first);
    }
    // 200 sessions: Bedrock about 80 %, split 3 to 1 between its regions; Anthropic about 20 %.
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..200 {
        let (status, key) = send(format!("session-{i}")).await;
        assert_eq!(status, 200);
        *counts.entry(key).or_default() += 1;
    }
    let share = |k: &str| f64::from(counts.get(k).copied().unwrap_or(0)) / 200.0;
    // Bounds at four standard deviations of the binomial shares (the hashes of these session
    // ids are fixed, so the counts are the same on every run).
    assert!((0.46..0.74).contains(&share("us-east-1")), "{counts:?}");
    assert!((0.09..0.31).contains(&share("us-west-2")), "{counts:?}");
    assert!((0.09..0.31).contains(&share("anthropic-key")), "{counts:?}");
}

/// All-in-one serves `/metrics` too: the config version and every provider key's health, which
/// turns to ejected after five throttled requests in a row (and each final 429 says when to
/// retry).
#[tokio::test]
async fn all_in_one_metrics_show_an_ejected_key() {
    let s = setup().await;
    let metrics = || async {
        s.http
            .get(s.gw.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let text = metrics().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("tollgate_config_version ") && !l.ends_with(" 0")),
        "{text}"
    );
    let ejected = |text: &str, value: &str| {
        text.lines().any(|l| {
            l.starts_with("tollgate_provider_key_ejected{provider=\"bedrock\",key_id=")
                && l.ends_with(value)
        })
    };
    assert!(ejected(&text, "} 0"), "{text}");
    s.double.set_fault(Some("throttle"));
    for _ in 0..5 {
        let resp = s.post(&message("claude-sonnet-4-6", "hi", false)).await;
        assert_eq!(resp.status(), 429);
        assert!(resp.headers().contains_key("retry-after"));
    }
    let text = metrics().await;
    assert!(ejected(&text, "} 1"), "{text}");
    assert!(
        text.contains("tollgate_provider_key_ejections_total{provider=\"bedrock\""),
        "{text}"
    );
    // Each throttled request is one 429 of its configured model, and an upstream error; the
    // control plane's figures are on the same page.
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
    };
    assert_eq!(
        line("tollgate_requests_total{provider=\"bedrock\",model=\"global.anthropic.claude-sonnet-4-6\",status=\"429\"}"),
        Some("tollgate_requests_total{provider=\"bedrock\",model=\"global.anthropic.claude-sonnet-4-6\",status=\"429\"} 5".to_owned()),
        "{text}"
    );
    assert!(
        line("tollgate_upstream_errors_total{provider=\"bedrock\",class=\"rate_limited\"} ")
            .is_some(),
        "{text}"
    );
    assert!(
        line("tollgate_config_published_version ").is_some(),
        "{text}"
    );
}

/// A conversation with thinking and tool use survives moving between platforms whose doubles,
/// like the real services, refuse thinking blocks the other one signed: Bedrock, then the
/// Anthropic API (a fallback while Bedrock throttles), then Bedrock again. Each time the serving
/// platform refuses the other's blocks, the gateway sends the request again without them (and,
/// when the final turn is a tool call whose thinking had to go, with thinking off for that
/// request); the client sees one answer per turn.
#[tokio::test]
async fn a_thinking_conversation_survives_bedrock_to_anthropic_and_back() {
    let s = setup().await;
    let anthropic = s.add_anthropic("sk-ant-api03-thinking-switch").await;
    let key = s
        .virtual_key(
            json!({"name": "switch", "providers": ["bedrock", "anthropic"],
               "fallbacks": ["anthropic/claude-sonnet-4-6"]}),
        )
        .await;
    let vk = key["value"].as_str().expect("value").to_owned();
    let (bedrock, gw, http) = (&s.double, &s.gw, &s.http);
    // Claude Code's shape: thinking on, and the clear-thinking edit (which needs thinking on)
    // with its beta.
    let turn = |messages: &Value| {
        json!({"model": "claude-sonnet-4-6", "max_tokens": 2048,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "messages": messages})
    };
    let send = |body: Value| {
        let http = http.clone();
        let url = gw.url("/anthropic/v1/messages");
        let vk = vk.clone();
        async move {
            let r = http
                .post(url)
                .header("x-api-key", vk)
                .header("anthropic-beta", "context-management-2025-06-27")
                .json(&body)
                .send()
                .await
                .expect("send");
            let provider = r
                .headers()
                .get("x-tollgate-provider")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (
                r.status().as_u16(),
                provider,
                r.json::<Value>().await.expect("json"),
            )
        }
    };
    let mut messages =
        json!([{"role": "user", "content": "[double:thinking] What is in the repo?"}]);
    // 1. Bedrock answers with a thinking block it signed.
    let (status, provider, answer) = send(turn(&messages)).await;
    assert_eq!((status, provider.as_str()), (200, "bedrock"), "{answer}");
    assert_eq!(answer["content"][0]["type"], "thinking", "{answer}");
    messages.as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": answer["content"]}),
        json!({"role": "user", "content": "[double:thinking] [double:tool] Read the README."}),
    ]);

    // 2. Bedrock throttles: the fallback, the Anthropic API, refuses Bedrock's block; the
    //    request goes again without it (thinking stays on: the final turn is no tool call) and
    //    the answer is a tool call with a thinking block the Anthropic API signed.
    bedrock.set_fault(Some("throttle"));
    let (status, provider, answer) = send(turn(&messages)).await;
    assert_eq!((status, provider.as_str()), (200, "anthropic"), "{answer}");
    let types: Vec<&str> = answer["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert_eq!(types, ["thinking", "tool_use"], "{answer}");
    let tries = anthropic.requests();
    assert_eq!(tries.len(), 2, "refused once, then served");
    assert_eq!(tries[0].verdict.status, 400);
    assert!(
        tries[0]
            .verdict
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Invalid `signature` in `thinking` block")),
        "{:?}",
        tries[0].verdict
    );
    let resent: Value = serde_json::from_slice(&tries[1].body).expect("json");
    assert_eq!(
        resent["messages"][1]["content"].as_array().map(Vec::len),
        Some(1),
        "{resent}"
    );
    assert_eq!(
        resent["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    let tool_id = answer["content"][1]["id"].clone();
    messages.as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": answer["content"]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "# README"}]}),
    ]);

    // 3. Bedrock is back: it refuses the Anthropic API's block in the final tool-call turn; the
    //    request goes again without thinking blocks and with thinking (and the clear-thinking
    //    edit that needs it) off, and Bedrock answers.
    bedrock.set_fault(None);
    bedrock.clear_requests();
    let (status, provider, answer) = send(turn(&messages)).await;
    assert_eq!((status, provider.as_str()), (200, "bedrock"), "{answer}");
    let tries = bedrock.requests();
    assert_eq!(tries.len(), 2, "refused once, then served: {tries:?}");
    assert_eq!(
        tries[0].verdict.message.as_deref(),
        Some("messages.3.content.0: Invalid signature in thinking block")
    );
    let resent = tries[1].body.clone().expect("json body");
    assert!(resent.get("thinking").is_none(), "{resent}");
    assert!(resent.get("context_management").is_none(), "{resent}");
    assert_eq!(resent["messages"][3]["content"][0]["type"], "tool_use");
    assert_eq!(tries[1].verdict.status, 200);
}

/// The README's curl commands for Vertex AI and OpenAI-compatible providers, run with `sh`
/// exactly as written there (only the address is changed), are accepted by the admin API, and
/// the providers they create reach the data plane.
#[tokio::test]
async fn readme_provider_commands_work_as_pasted() {
    let commands = readme_curl_commands("Other providers");
    assert_eq!(
        commands.len(),
        6,
        "Vertex, OpenAI and a local server, a provider and a key each: {commands:?}"
    );
    let gw = tollgate_tests::harness::TollgateProcess::spawn(&[], &[])
        .await
        .expect("tollgate");
    let addr = gw.addr().to_string();
    for cmd in &commands {
        let cmd = cmd.replace("localhost:8080", &addr);
        let out = tokio::process::Command::new("sh")
            .args(["-c", &format!("{} -w '\\n%{{http_code}}'", cmd.trim_end())])
            .output()
            .await
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.trim_end().ends_with("201"), "`{cmd}` answered: {text}");
    }
    let http = reqwest::Client::new();
    let (s, b) = admin(&http, &gw, "GET", "/api/providers", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let names: Vec<&str> = b["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["vertex", "openai", "ollama"] {
        assert!(names.contains(&name), "{name}: {b}");
    }
    // The data plane applied the snapshot holding them (version 7: six changes after the
    // first), and refused none.
    let mut ready = Value::Null;
    for _ in 0..100 {
        let (_, r) = admin(&http, &gw, "GET", "/ready", json!({})).await;
        ready = r;
        if ready["config_version"] == 7 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ready["config_version"], 7, "{ready}");
    assert!(
        !gw.output().contains("snapshot rejected"),
        "{}",
        gw.output()
    );
}

/// `tollgate audit verify` on the all-in-one's SQLite store: intact after admin changes (exit
/// 0, the head hash printed), and naming the row someone edited in the database (exit 1).
#[tokio::test]
async fn audit_verify_names_the_row_edited_in_the_database() {
    let gw = tollgate_tests::harness::TollgateProcess::spawn(&[], &[])
        .await
        .expect("tollgate");
    let http = reqwest::Client::new();
    for name in ["audit-a", "audit-b", "audit-c"] {
        let (s, b) = admin(
            &http,
            &gw,
            "POST",
            "/api/virtual-keys",
            json!({"name": name}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let verify = || {
        std::process::Command::new(tollgate_tests::harness::tollgate_binary())
            .args(["audit", "verify", "--data-dir"])
            .arg(gw.data_dir())
            .output()
            .expect("tollgate audit verify")
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("audit log intact: 3 chained rows"),
        "{text}"
    );

    let db = gw.data_dir().join("tollgate.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the store");
    let second: i64 = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 1")
        .fetch_one(&pool)
        .await
        .expect("a row");
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE id = ?")
        .bind(second)
        .execute(&pool)
        .await
        .expect("edit");
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(&format!("audit log broken at row {second}:")),
        "{text}"
    );
}

/// The same on PostgreSQL, the production store: `tollgate audit verify --database-url` passes
/// after admin changes and names the row edited in the database.
#[tokio::test]
async fn audit_verify_names_the_row_edited_in_postgres() {
    let db = tollgate_tests::postgres::TestDatabase::create("tollgate_audit_verify").await;
    let gw = tollgate_tests::harness::TollgateProcess::spawn(
        &[],
        &[("TOLLGATE_DATABASE_URL", db.url.as_str())],
    )
    .await
    .expect("tollgate");
    let http = reqwest::Client::new();
    for name in ["audit-a", "audit-b", "audit-c", "audit-d"] {
        let (s, b) = admin(
            &http,
            &gw,
            "POST",
            "/api/virtual-keys",
            json!({"name": name}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let verify = || {
        std::process::Command::new(tollgate_tests::harness::tollgate_binary())
            .args(["audit", "verify", "--database-url", &db.url])
            .output()
            .expect("tollgate audit verify")
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("audit log intact: "), "{text}");

    let pool = sqlx::PgPool::connect(&db.url).await.expect("the store");
    let third: i64 = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 2")
        .fetch_one(&pool)
        .await
        .expect("a row");
    sqlx::query("UPDATE audit_log SET target = 'virtual-keys/nothing-to-see' WHERE id = $1")
        .bind(third)
        .execute(&pool)
        .await
        .expect("edit");
    pool.close().await;
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(&format!("audit log broken at row {third}:")),
        "{text}"
    );
    drop(gw);
}

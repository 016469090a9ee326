//! The Anthropic API double over real HTTP: authentication, headers, body rules, JSON and SSE
//! answers, scripted errors and the request log.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use tollgate_tests::anthropic_double::{
    AnthropicDouble, AnthropicDoubleConfig, CALL_MESSAGE, DEFAULT_REPLY, PROMPT_TOO_LONG_MESSAGE,
    RATE_LIMIT_RETRY_AFTER,
};

const KEY: &str = "sk-ant-api03-double-test-key-0000";

fn start() -> AnthropicDouble {
    AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(KEY)).expect("double")
}

fn body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

async fn call(
    double: &AnthropicDouble,
    path: &str,
    key: Option<&str>,
    version: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", double.base_url()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    if let Some(v) = version {
        req = req.header("anthropic-version", v);
    }
    req.send().await.expect("reaches the double")
}

async fn ok_call(double: &AnthropicDouble, path: &str, body: &Value) -> reqwest::Response {
    call(
        double,
        path,
        Some(KEY),
        Some("2023-06-01"),
        serde_json::to_vec(body).expect("json"),
    )
    .await
}

async fn expect_error(resp: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let request_id = resp
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("request-id header");
    let v: Value = resp.json().await.expect("json error");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert_eq!(v["request_id"], request_id.as_str(), "{v}");
    assert!(request_id.starts_with("req_"));
    v
}

#[tokio::test]
async fn messages_answer_json_and_record_the_exact_request() {
    let double = start();
    let raw = br#"{"model":"claude-sonnet-4-5","max_tokens":64,  "messages":[{"role":"user","content":"caf\u00e9 hi"}]}"#;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages?beta=true", double.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "a-1,b-2")
        .header("anthropic-beta", "c-3")
        .body(raw.to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = resp.bytes().await.expect("bytes");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"][0]["text"], DEFAULT_REPLY);
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0);
    let r = double.last_request().expect("recorded");
    assert_eq!(&r.body[..], &raw[..], "raw body bytes are recorded");
    assert_eq!(r.response_body, bytes, "the answer bytes are recorded");
    assert_eq!(r.header_all("anthropic-beta"), ["a-1,b-2", "c-3"]);
    assert_eq!(r.path, "/v1/messages?beta=true");
    assert!(r.authenticated);
    assert_eq!(r.operation.as_deref(), Some("Messages"));
    // max_tokens is honoured.
    let mut small = body("hi", false);
    small["max_tokens"] = json!(2);
    let v: Value = ok_call(&double, "/v1/messages", &small)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["stop_reason"], "max_tokens", "{v}");
}

#[tokio::test]
async fn authentication_and_version_are_checked_first() {
    let double = start();
    let b = serde_json::to_vec(&body("hi", false)).expect("json");
    let v = expect_error(
        call(&double, "/v1/messages", None, Some("2023-06-01"), b.clone()).await,
        401,
        "authentication_error",
    )
    .await;
    assert_eq!(v["error"]["message"], "x-api-key header is required");
    let v = expect_error(
        call(
            &double,
            "/v1/messages",
            Some("sk-tg-virtual"),
            Some("2023-06-01"),
            b.clone(),
        )
        .await,
        401,
        "authentication_error",
    )
    .await;
    assert_eq!(v["error"]["message"], "invalid x-api-key");
    // A bad key is reported even when the body is garbage.
    expect_error(
        call(&double, "/v1/messages", Some("nope"), None, b"{".to_vec()).await,
        401,
        "authentication_error",
    )
    .await;
    let v = expect_error(
        call(&double, "/v1/messages", Some(KEY), None, b.clone()).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert_eq!(
        v["error"]["message"],
        "anthropic-version: header is required"
    );
    expect_error(
        call(&double, "/v1/messages", Some(KEY), Some("2099-01-01"), b).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(double.requests().iter().all(|r| r.verdict.status != 200));
}

#[tokio::test]
async fn bodies_are_validated_like_the_api() {
    let double = start();
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "model: Field required",
        ),
        (
            json!({"model": "anthropic/claude-opus-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
            "model: anthropic/claude-opus-4-5",
        ),
        (
            json!({"model": "claude-opus-4-5", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ),
        (
            json!({"model": "claude-opus-4-5", "max_tokens": "1", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "max_tokens: Input should be a valid integer",
        ),
        (
            json!({"model": "claude-opus-4-5", "max_tokens": 1, "messages": []}),
            400,
            "invalid_request_error",
            "messages: at least one message is required",
        ),
        (
            json!({"model": "claude-opus-4-5", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            400,
            "invalid_request_error",
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({"model": "claude-opus-4-5", "max_tokens": 1, "messages": [{"role": "user"}]}),
            400,
            "invalid_request_error",
            "messages.0.content: Field required",
        ),
        (
            json!({"model": "claude-opus-4-5", "max_tokens": 1, "anthropic_version": "bedrock-2023-05-31",
                   "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "anthropic_version: Extra inputs are not permitted",
        ),
        (
            json!({"model": "claude-opus-4-5", "max_tokens": 1, "stream": "yes",
                   "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "stream: Input should be a valid boolean",
        ),
    ];
    for (b, status, kind, message) in cases {
        let v = expect_error(ok_call(&double, "/v1/messages", &b).await, status, kind).await;
        assert_eq!(v["error"]["message"], message, "{b}");
    }
    expect_error(
        call(
            &double,
            "/v1/messages",
            Some(KEY),
            Some("2023-06-01"),
            b"not json".to_vec(),
        )
        .await,
        400,
        "invalid_request_error",
    )
    .await;
    // count_tokens takes no max_tokens.
    let v = expect_error(
        ok_call(&double, "/v1/messages/count_tokens", &body("x", false)).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("Extra inputs are not permitted"),
        "{v}"
    );
    // Unknown route.
    expect_error(
        ok_call(&double, "/v1/complete", &body("x", false)).await,
        404,
        "not_found_error",
    )
    .await;
}

#[tokio::test]
async fn streams_are_real_sse_sent_event_by_event() {
    let double = start();
    let resp = ok_call(&double, "/v1/messages", &body("[double:slow:150] hi", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let started = Instant::now();
    let mut chunks = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunks.push((started.elapsed(), chunk.expect("chunk")));
    }
    let all: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.to_vec()).collect();
    let text = String::from_utf8(all.clone()).expect("utf-8");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.get(1), Some(&"content_block_start"));
    assert_eq!(names.get(2), Some(&"ping"));
    assert!(text.contains("data: {\"type\": \"ping\"}\n\n"), "{text}");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(chunks.len() >= names.len(), "one chunk per event");
    let (first, last) = (chunks[0].0, chunks[chunks.len() - 1].0);
    assert!(
        last - first >= Duration::from_millis(150 * 5),
        "events arrive over time: {first:?}..{last:?}"
    );
    let r = double.last_request().expect("recorded");
    assert_eq!(
        &r.response_body[..],
        &all[..],
        "recorded bytes = sent bytes"
    );
    assert!(r.stream);
    // The text deltas make up the reply.
    let text_out: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text_out, DEFAULT_REPLY);
}

#[tokio::test]
async fn scripted_errors_have_anthropics_exact_shape() {
    let double = start();
    let resp = ok_call(&double, "/v1/messages", &body("[double:overloaded]", true)).await;
    assert_eq!(resp.status(), 529);
    let rid = resp.headers()["request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let text = resp.text().await.expect("text");
    assert_eq!(
        text,
        format!(
            r#"{{"type":"error","error":{{"type":"overloaded_error","message":"Overloaded"}},"request_id":"{rid}"}}"#
        )
    );
    let v = expect_error(
        ok_call(
            &double,
            "/v1/messages",
            &body("[double:prompt-too-long]", false),
        )
        .await,
        400,
        "invalid_request_error",
    )
    .await;
    assert_eq!(v["error"]["message"], PROMPT_TOO_LONG_MESSAGE);
    let resp = ok_call(&double, "/v1/messages", &body("[double:rate-limit]", false)).await;
    assert_eq!(resp.headers()["retry-after"], RATE_LIMIT_RETRY_AFTER);
    expect_error(resp, 429, "rate_limit_error").await;
    expect_error(
        ok_call(
            &double,
            "/v1/messages",
            &body("[double:error:permission_error]", false),
        )
        .await,
        403,
        "permission_error",
    )
    .await;
    // Mid-stream: 200, some events, then an error event and the end.
    let text = ok_call(
        &double,
        "/v1/messages",
        &body("[double:midstream-overloaded]", true),
    )
    .await
    .text()
    .await
    .expect("text");
    assert!(
        text.ends_with(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        ),
        "{text}"
    );
    assert!(!text.contains("message_stop"));
    let r = double.last_request().expect("recorded");
    assert_eq!(r.verdict.error_type.as_deref(), Some("overloaded_error"));
    // A proxy's HTML 502.
    let resp = ok_call(&double, "/v1/messages", &body("[double:html-502]", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html");
    // count_tokens: counts, and fault triggers apply.
    let resp = ok_call(
        &double,
        "/v1/messages/count_tokens",
        &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "count these words"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, json!({"input_tokens": 5}));
    expect_error(
        ok_call(
            &double,
            "/v1/messages/count_tokens",
            &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "[double:overloaded]"}]}),
        )
        .await,
        529,
        "overloaded_error",
    )
    .await;
}

#[tokio::test]
async fn tool_use_replies_in_both_forms() {
    let double = start();
    let v: Value = ok_call(&double, "/v1/messages", &body("[double:tool]", false))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["input"], json!({"file_path": "/tmp/x"}));
    let text = ok_call(&double, "/v1/messages", &body("[double:tool]", true))
        .await
        .text()
        .await
        .expect("text");
    let json: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["delta"]["partial_json"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("tool json"),
        json!({"file_path": "/tmp/x"})
    );
}

#[tokio::test]
async fn thinking_and_read_triggers_stream_a_signed_thinking_block_then_the_tool_call() {
    let double = start();
    let mut req = body("[double:thinking] [double:read:/tmp/notes.txt]", true);
    req["thinking"] = json!({"type": "adaptive"});
    let text = ok_call(&double, "/v1/messages", &req)
        .await
        .text()
        .await
        .expect("text");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .collect();
    assert_eq!(starts[0]["content_block"]["type"], "thinking", "{text}");
    assert_eq!(starts[1]["content_block"]["type"], "tool_use", "{text}");
    assert!(events.iter().any(|e| {
        e["delta"]["type"] == "signature_delta"
            && e["index"] == 0
            && e["delta"]["signature"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
    }));
    let json: String = events
        .iter()
        .filter(|e| e["index"] == 1)
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("tool json"),
        json!({"file_path": "/tmp/notes.txt"})
    );
    // Without `thinking` in the request there is no thinking block.
    let v: Value = ok_call(
        &double,
        "/v1/messages",
        &body("[double:thinking] [double:read:/tmp/notes.txt]", false),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["content"][0]["type"], "tool_use", "{v}");
}

/// Claude Code sends `system` messages inside `messages` with the mid-conversation-system beta;
/// without the beta the role is invalid.
#[tokio::test]
async fn system_messages_need_the_mid_conversation_system_beta() {
    let double = start();
    let mut req = body("hi", false);
    req["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Be brief."}
    ]);
    let resp = ok_call(&double, "/v1/messages", &req).await;
    let v = expect_error(resp, 400, "invalid_request_error").await;
    assert_eq!(
        v["error"]["message"],
        "messages.1.role: Input should be 'user' or 'assistant'"
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", double.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219, mid-conversation-system-2026-04-07",
        )
        .json(&req)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn call_trigger_calls_the_named_tool_only_when_the_request_offers_it() {
    let double = start();
    let mut req = body("[double:call:mcp__tollgate__everything__echo] go", false);
    req["tools"] = json!([{"name": "mcp__tollgate__everything__echo", "description": "Echo",
        "input_schema": {"type": "object", "properties": {"message": {"type": "string"}}}}]);
    let v: Value = ok_call(&double, "/v1/messages", &req)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    assert_eq!(v["content"][0]["name"], "mcp__tollgate__everything__echo");
    assert_eq!(v["content"][0]["input"], json!({"message": CALL_MESSAGE}));
    // Streamed: the same block, its input in pieces.
    req["stream"] = json!(true);
    let text = ok_call(&double, "/v1/messages", &req)
        .await
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#""name":"mcp__tollgate__everything__echo""#),
        "{text}"
    );
    // A tool the request does not offer is not called.
    req["tools"] = json!([{"name": "other", "input_schema": {"type": "object"}}]);
    req["stream"] = json!(false);
    let v: Value = ok_call(&double, "/v1/messages", &req)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert_eq!(
        v["content"][0]["text"],
        "The tool mcp__tollgate__everything__echo was not offered."
    );
}

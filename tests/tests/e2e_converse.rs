//! End to end: Bedrock models that are not Anthropic's (Llama, Nova) through the real binary and
//! the strict Bedrock double. An Anthropic Messages request for such a model must reach Bedrock as
//! a valid, SigV4-signed Converse / ConverseStream call (the double refuses InvokeModel with an
//! Anthropic body for these models, so the gateway's choice of API is tested), and come back as
//! a valid Anthropic answer or SSE stream, with usage and its cost.
//!
//! Llama and Nova carry no shipped price (`proto/pricing.json` cites no AWS page for them), and
//! the walkthrough's virtual key has a budget, which refuses unpriced models: each test adds the
//! pricing overrides an operator would (test prices, not AWS's).

mod common;

use std::time::Duration;

use common::{AKID, Setup, admin, message, setup, sse_events};
use serde_json::{Value, json};
use tollgate_tests::bedrock_double::script::{DEFAULT_REPLY, THROTTLE_MESSAGE};

const LLAMA: &str = "bedrock/meta.llama3-3-70b-instruct-v1:0";
const NOVA: &str = "bedrock/us.amazon.nova-pro-v1:0";
/// The test price of both models, USD per million tokens (720 n$ per token), for every kind.
const TEST_PRICE: f64 = 0.72;

/// The walkthrough setup with test prices for the Llama and Nova models, once applied.
async fn converse_setup() -> Setup {
    let s = setup().await;
    for pattern in ["meta.llama3-3-70b-instruct*", "amazon.nova-pro*"] {
        let (st, b) = admin(
            &s.http,
            &s.gw,
            "POST",
            "/api/pricing",
            json!({"provider": "bedrock", "models": [pattern], "input": TEST_PRICE,
                   "output": TEST_PRICE, "cache_write_5m": TEST_PRICE, "cache_write_1h": TEST_PRICE,
                   "cache_read": TEST_PRICE, "source": "e2e test price"}),
        )
        .await;
        assert_eq!(st, 201, "pricing override: {b}");
    }
    // A price change applies from the next config version: until then the budget refuses.
    for _ in 0..100 {
        let resp = s.post(&message(NOVA, "warm", false)).await;
        if resp.status() == 200 {
            let _ = resp.bytes().await;
            s.double.clear_requests();
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pricing overrides never applied:\n{}", s.gw.output());
}

/// The `request completed` usage line of `request_id`, as `name=value` pairs.
fn usage_line(s: &Setup, request_id: &str) -> Vec<(String, String)> {
    for _ in 0..100 {
        let log = s.gw.output();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("request completed") && l.contains(request_id))
        {
            return line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no usage line for {request_id}:\n{}", s.gw.output());
}

fn field(line: &[(String, String)], name: &str) -> i64 {
    line.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line:?}"))
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["request-id"]
        .to_str()
        .expect("request id")
        .to_owned()
}

#[tokio::test]
async fn llama_is_reached_through_converse_and_answers_in_anthropic_shapes() {
    let s = converse_setup().await;

    // Non-streaming.
    let resp = s.post(&message(LLAMA, "Hello", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "bedrock");
    assert_eq!(
        resp.headers()["x-tollgate-model"],
        "meta.llama3-3-70b-instruct-v1:0"
    );
    let id = request_id(&resp);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], LLAMA, "the requested name");
    assert_eq!(
        body["id"].as_str(),
        id.strip_prefix("req_")
            .map(|r| format!("msg_{r}"))
            .as_deref()
    );
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": DEFAULT_REPLY}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    let input = body["usage"]["input_tokens"]
        .as_i64()
        .expect("input tokens");
    let output = body["usage"]["output_tokens"]
        .as_i64()
        .expect("output tokens");
    assert!(input > 0 && output > 0, "{body}");
    let r = s.last_request();
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    assert_eq!(r.path, "/model/meta.llama3-3-70b-instruct-v1%3A0/converse");
    assert_eq!(r.operation.as_deref(), Some("Converse"));
    assert_eq!(r.access_key_id.as_deref(), Some(AKID), "SigV4 verified");
    assert_eq!(r.region.as_deref(), Some("us-east-1"));
    assert_eq!(r.header("accept"), Some("application/json"));
    let sent = r.body.expect("json body");
    assert_eq!(
        sent,
        json!({"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
               "inferenceConfig": {"maxTokens": 256}})
    );
    // Usage and cost: 720 n$ per token of either kind at the test price.
    let line = usage_line(&s, &id);
    assert_eq!(field(&line, "input_tokens"), input);
    assert_eq!(field(&line, "output_tokens"), output);
    assert_eq!(field(&line, "cost_nano_usd"), (input + output) * 720);

    // Streaming, with silences the gateway covers with pings.
    let resp = s
        .post(&message(LLAMA, "[double:slow:300] Hello", true))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let id = request_id(&resp);
    let text = resp.text().await.expect("body");
    let events = sse_events(&text);
    assert!(events.iter().any(|(e, _)| e == "ping"), "{text}");
    let names: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.as_str())
        .filter(|e| *e != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"],
        "{text}"
    );
    let (_, start) = events
        .iter()
        .find(|(e, _)| e == "message_start")
        .expect("message_start");
    assert_eq!(start["message"]["model"], LLAMA);
    let block = events
        .iter()
        .find(|(e, _)| e == "content_block_start")
        .expect("block start");
    assert_eq!(block.1["content_block"]["type"], "text");
    let streamed: String = events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(streamed, DEFAULT_REPLY);
    let delta = events
        .iter()
        .find(|(e, _)| e == "message_delta")
        .expect("message_delta");
    assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
    let output = delta.1["usage"]["output_tokens"].as_i64().expect("output");
    let input = delta.1["usage"]["input_tokens"].as_i64().expect("input");
    assert!(input > 0 && output > 0);
    let r = s.last_request();
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    assert_eq!(r.operation.as_deref(), Some("ConverseStream"));
    assert_eq!(
        r.path,
        "/model/meta.llama3-3-70b-instruct-v1%3A0/converse-stream"
    );
    assert_eq!(
        r.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    let line = usage_line(&s, &id);
    assert_eq!(field(&line, "output_tokens"), output);
    assert_eq!(field(&line, "cost_nano_usd"), (input + output) * 720);
}

#[tokio::test]
async fn a_tool_call_round_trip_reaches_llama_as_tool_use_and_tool_result() {
    let s = converse_setup().await;
    let tools = json!([{"name": "Read", "description": "Read a file",
                        "input_schema": {"type": "object",
                                         "properties": {"file_path": {"type": "string"}}}}]);
    let mut first = message(LLAMA, "Read it [double:tool]", true);
    first["tools"] = tools.clone();
    let text = s.post(&first).await.text().await.expect("body");
    let events = sse_events(&text);
    let start = events
        .iter()
        .find(|(e, d)| e == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    let tool_id = start.1["content_block"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(start.1["content_block"]["name"], "Read");
    let input: String = events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    let input: Value = serde_json::from_str(&input).expect("tool input JSON");
    assert_eq!(input, json!({"file_path": "/tmp/x"}));
    let delta = events
        .iter()
        .find(|(e, _)| e == "message_delta")
        .expect("message_delta");
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    let sent = s.last_request().body.expect("body");
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"], "Read",
        "{sent}"
    );

    // The client runs the tool and sends its result back (non-streaming this time).
    let second = json!({
        "model": LLAMA, "max_tokens": 256, "tools": tools,
        "messages": [
            {"role": "user", "content": "Read it [double:tool]"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": tool_id, "name": "Read", "input": input}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_id, "content": "file contents"}]},
        ]
    });
    let resp = s.post(&second).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["content"][0]["text"], DEFAULT_REPLY, "{body}");
    let r = s.last_request();
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    let sent = r.body.expect("body");
    assert_eq!(
        sent["messages"][1]["content"][0]["toolUse"],
        json!({"toolUseId": tool_id, "name": "Read", "input": {"file_path": "/tmp/x"}})
    );
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"],
        json!({"toolUseId": tool_id, "content": [{"text": "file contents"}]})
    );
}

#[tokio::test]
async fn nova_gets_cache_points_and_llama_none() {
    let s = converse_setup().await;
    let cached = |model: &str, text: &str| {
        json!({"model": model, "max_tokens": 64,
               "system": [{"type": "text", "text": "You are terse.",
                           "cache_control": {"type": "ephemeral"}}],
               "messages": [{"role": "user", "content": [
                   {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]}]})
    };
    let resp = s.post(&cached(NOVA, "hi [double:cache:10:20]")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["usage"]["cache_read_input_tokens"], 10, "{body}");
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 20, "{body}");
    let r = s.last_request();
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    assert_eq!(r.model_id.as_deref(), Some("us.amazon.nova-pro-v1:0"));
    let sent = r.body.expect("body");
    assert_eq!(
        sent["system"],
        json!([{"text": "You are terse."}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"cachePoint": {"type": "default"}})
    );

    let resp = s.post(&cached(LLAMA, "hi")).await;
    assert_eq!(resp.status(), 200, "Llama refuses cache points");
    let r = s.last_request();
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    let sent = r.body.expect("body");
    assert!(!sent.to_string().contains("cachePoint"), "{sent}");
    assert_eq!(sent["system"], json!([{"text": "You are terse."}]));
}

#[tokio::test]
async fn throttling_is_a_429_and_a_fallback_serves() {
    let s = converse_setup().await;
    let resp = s.post(&message(LLAMA, "[double:throttle]", false)).await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["message"], THROTTLE_MESSAGE);
    assert_eq!(
        s.last_request().verdict.error_type.as_deref(),
        Some("ThrottlingException")
    );

    // Bedrock throttles Llama only; the request's fallback, Nova, answers.
    s.double.clear_requests();
    let mut body = message(LLAMA, "[double:throttle-on:llama] hi", true);
    body["fallbacks"] = json!([NOVA]);
    let resp = s.post(&body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-fallback-index"], "1");
    assert_eq!(
        resp.headers()["x-tollgate-model"],
        "us.amazon.nova-pro-v1:0"
    );
    let text = resp.text().await.expect("body");
    let events = sse_events(&text);
    assert_eq!(
        events
            .iter()
            .find(|(e, _)| e == "message_start")
            .map(|(_, d)| d["message"]["model"].clone()),
        Some(json!(LLAMA)),
        "the requested name, whatever served"
    );
    assert_eq!(events.last().map(|(e, _)| e.as_str()), Some("message_stop"));
    let seen: Vec<(Option<String>, u16)> = s
        .double
        .requests()
        .into_iter()
        .map(|r| (r.model_id, r.verdict.status))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("meta.llama3-3-70b-instruct-v1:0".to_owned()), 429),
            (Some("us.amazon.nova-pro-v1:0".to_owned()), 200),
        ]
    );

    // A mid-stream exception ends the stream with an SSE error event.
    let text = s
        .post(&message(LLAMA, "[double:midstream-throttle]", true))
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
}

#[tokio::test]
async fn claude_stays_on_invoke_model_and_llama_count_tokens_is_bedrocks_answer() {
    let s = converse_setup().await;
    let resp = s
        .post(&message(
            "bedrock/us.anthropic.claude-sonnet-4-6",
            "hi",
            false,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let r = s.last_request();
    assert_eq!(r.path, "/model/us.anthropic.claude-sonnet-4-6/invoke");
    assert_eq!(
        r.body.expect("body")["anthropic_version"],
        "bedrock-2023-05-31"
    );

    // CountTokens with a converse input, on the foundation-model id; Bedrock counts tokens for
    // Claude only, and its refusal reaches the client as a 400.
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages/count_tokens"))
        .bearer_auth(&s.vk)
        .json(
            &json!({"model": "bedrock/us.meta.llama3-3-70b-instruct-v1:0",
                      "messages": [{"role": "user", "content": "count me"}]}),
        )
        .send()
        .await
        .expect("count tokens");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("doesn't support counting tokens")),
        "{body}"
    );
    let r = s.last_request();
    assert_eq!(r.operation.as_deref(), Some("CountTokens"));
    assert_eq!(
        r.model_id.as_deref(),
        Some("meta.llama3-3-70b-instruct-v1:0")
    );
    assert_eq!(
        r.body.expect("body"),
        json!({"input": {"converse": {
            "messages": [{"role": "user", "content": [{"text": "count me"}]}]}}})
    );
}

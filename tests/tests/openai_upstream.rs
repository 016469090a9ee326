//! OpenAI-compatible upstreams (`ProviderKind::OpenAi`) end to end through the data plane in
//! process: Anthropic Messages requests routed to `openai/<model>` reach the strict OpenAI double
//! as valid Chat Completions bodies, and come back as valid Anthropic Messages and SSE streams.
//!
//! | test | behaviour |
//! |---|---|
//! | `a_message_goes_as_chat_completions_and_comes_back_as_a_message` | non-stream: body, headers, answer, usage record |
//! | `a_stream_comes_back_as_anthropic_sse_with_its_usage` | stream: event order, text, usage from the usage chunk |
//! | `tool_use_works_both_ways` | the double calls a tool (streamed and not); the `tool_result` goes back as a `tool` message answering the call; two parallel calls |
//! | `upstream_errors_are_mapped_to_anthropic_errors` | 401, 429 with `retry-after`, context length, mid-stream error event |
//! | `a_failing_openai_upstream_falls_back_to_another_provider` | a 500 falls back to the Anthropic provider |
//! | `count_tokens_is_answered_501_without_an_upstream_call` | the count_tokens decision |
//! | `a_key_without_a_value_sends_no_authorization` | local servers (vLLM, Ollama) |
//! | `an_openai_price_override_prices_the_usage` | unpriced by default, priced by an operator's override |
//! | `the_double_lists_models_and_refuses_like_openai` | the double itself: `/v1/models`, OpenAI's error envelope |

mod in_process;

use in_process::{
    Gateway, assemble, events, openai_double, openai_gateway, openai_provider, provider, snapshot,
};
use serde_json::{Value, json};
use tollgate_proto::config::v1 as pb;
use tollgate_proto::usage::v1::UsageRecord;
use tollgate_tests::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig};
use tollgate_tests::openai_double::{
    self, DEFAULT_REPLY, OpenAiDouble, OpenAiDoubleConfig, RATE_LIMIT_RETRY_AFTER,
};

const UPSTREAM_KEY: &str = "sk-proj-openai-double-key-0001";
const MODEL: &str = "openai/gpt-4.1";

/// Claude Code's `Read` tool, as it declares it.
fn read_tool() -> Value {
    json!({
        "name": "Read",
        "description": "Reads a file from the local filesystem.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The absolute path to the file to read"},
                "offset": {"type": "number"},
                "limit": {"type": "number"}
            },
            "required": ["file_path"],
            "additionalProperties": false
        },
        "cache_control": {"type": "ephemeral"}
    })
}

/// A Claude Code-shaped request: system blocks with `cache_control`, adaptive thinking, tools.
fn request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.331;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "thinking": {"type": "adaptive"},
        "metadata": {"user_id": "user_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef_account__session_0f0e"},
        "tools": [read_tool()],
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    })
}

/// Posts [`request`]`(prompt, stream)` to the gateway's Messages route.
async fn ask(gw: &Gateway, prompt: &str, stream: bool) -> reqwest::Response {
    gw.post("/anthropic/v1/messages", &request(prompt, stream))
        .await
}

/// The Anthropic error `resp` carries, checked for its status and `error.type`.
async fn anthropic_error(resp: reqwest::Response, status: u16, error_type: &str) -> Value {
    assert_eq!(resp.status(), status);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["type"], error_type, "{err}");
    err
}

/// Checks that `err`'s message starts with `prefix`.
fn assert_message_starts(err: &Value, prefix: &str) {
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(prefix)),
        "{err}"
    );
}

/// The next usage record, checked for its status and error class.
async fn usage_is(gw: &mut Gateway, status: u32, error_class: &str) -> UsageRecord {
    let record = gw.usage().await;
    assert_eq!(
        (record.status, record.error_class.as_str()),
        (status, error_class)
    );
    record
}

#[tokio::test]
async fn a_message_goes_as_chat_completions_and_comes_back_as_a_message() {
    let (double, mut gw) = openai_gateway(UPSTREAM_KEY).await;
    let resp = ask(&gw, "say hi", false).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-tollgate-provider"], "openai");
    assert_eq!(h["x-tollgate-model"], "gpt-4.1");
    assert_eq!(h["content-type"], "application/json");
    assert!(h.contains_key("request-id"));
    let message: Value = resp.json().await.expect("json");
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], MODEL, "the name the client asked for");
    assert!(
        message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")),
        "{message}"
    );
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": DEFAULT_REPLY}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    let input_tokens = message["usage"]["input_tokens"].as_u64().expect("input");
    assert!(input_tokens > 0, "{message}");
    assert!(message["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0);

    let [r] = &double.completions()[..] else {
        panic!("one request: {:?}", double.requests());
    };
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(
        r.header("anthropic-version"),
        None,
        "no client header goes upstream"
    );
    assert_eq!(r.header("x-api-key"), None);
    let body = r.json().expect("json body");
    assert_eq!(body["model"], "gpt-4.1", "the routed upstream model");
    // A base_url override: a compatible server, which may only know `max_tokens`.
    assert_eq!(body["max_tokens"], 32000);
    assert!(body.get("max_completion_tokens").is_none());
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "x-anthropic-billing-header: cc_version=2.1.331;\nYou are Claude Code."})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "say hi"})
    );
    assert_eq!(body["tools"][0]["function"]["name"], "Read");
    for dropped in ["thinking", "metadata", "user", "stream", "stream_options"] {
        assert!(body.get(dropped).is_none(), "{dropped}: {body}");
    }

    let record = usage_is(&mut gw, 200, "").await;
    assert_eq!(record.provider, "openai");
    assert_eq!(record.model_requested, MODEL);
    assert_eq!(record.model_resolved, "gpt-4.1");
    assert_eq!(record.input_tokens, input_tokens);
    assert!(record.output_tokens > 0);
    assert!(!record.stream);
    assert_eq!(
        record.cost_nano_usd, None,
        "OpenAI models ship unpriced: never $0"
    );
}

#[tokio::test]
async fn a_stream_comes_back_as_anthropic_sse_with_its_usage() {
    let (double, mut gw) = openai_gateway(UPSTREAM_KEY).await;
    let resp = gw
        .post(
            "/v1/messages?beta=true",
            &request("[double:cached] say hi", true),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(resp.headers()["x-tollgate-provider"], "openai");
    let body = resp.bytes().await.expect("body");
    let events = events(&body);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count()
            >= 2,
        "streamed in pieces: {names:?}"
    );
    let start = &events[0].data["message"];
    assert_eq!(start["model"], MODEL);
    assert_eq!(start["role"], "assistant");
    let (blocks, delta) = assemble(&events);
    assert_eq!(blocks, vec![json!({"type": "text", "text": DEFAULT_REPLY})]);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    let usage = &delta["usage"];
    let (input, cached) = (
        usage["input_tokens"].as_u64().expect("input"),
        usage["cache_read_input_tokens"]
            .as_u64()
            .expect("cache read"),
    );
    assert!(input > 0 && cached > 0, "{usage}");

    let r = double.last_request().expect("a request");
    assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
    assert!(r.stream);
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    let sent = r.json().expect("json");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    // The double's answer was chunked and ended with `[DONE]`.
    assert!(r.response_body.ends_with(b"data: [DONE]\n\n"));

    let record = usage_is(&mut gw, 200, "").await;
    assert!(record.stream);
    assert_eq!(record.input_tokens, input);
    assert_eq!(record.cache_read_input_tokens, cached);
    assert!(record.output_tokens > 0);
}

/// The request after a tool call: the assistant turn that called, and the results.
fn follow_up(first: &Value, calls: &[(String, Value)], results: &[&str]) -> Value {
    let mut next = first.clone();
    next["stream"] = json!(false);
    let tool_uses: Vec<Value> = calls
        .iter()
        .map(|(id, input)| json!({"type": "tool_use", "id": id, "name": "Read", "input": input}))
        .collect();
    let mut user: Vec<Value> = calls
        .iter()
        .zip(results)
        .map(|((id, _), text)| {
            json!({"type": "tool_result", "tool_use_id": id,
                   "content": [{"type": "text", "text": text}]})
        })
        .collect();
    user.push(json!({"type": "text", "text": "<system-reminder>keep going</system-reminder>"}));
    let messages = next["messages"].as_array_mut().expect("messages");
    messages.push(json!({"role": "assistant", "content": tool_uses}));
    messages.push(json!({"role": "user", "content": user}));
    next
}

#[tokio::test]
async fn tool_use_works_both_ways() {
    let (double, gw) = openai_gateway(UPSTREAM_KEY).await;

    // Streamed: the double asks to read a file.
    let first = request("[double:read:/work/note.txt] Read the note.", true);
    let resp = gw.post("/anthropic/v1/messages", &first).await;
    assert_eq!(resp.status(), 200);
    let events = events(&resp.bytes().await.expect("body"));
    let (blocks, delta) = assemble(&events);
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let [call] = &blocks[..] else {
        panic!("one tool call: {blocks:?}")
    };
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "Read");
    assert_eq!(call["input"], json!({"file_path": "/work/note.txt"}));
    let id = call["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("call_"), "the upstream's id is kept: {id}");

    // The result goes back as a `tool` message answering that call; the double checks it.
    let second = follow_up(
        &first,
        &[(id.clone(), call["input"].clone())],
        &["NOTE-7f3a"],
    );
    let resp = gw.post("/anthropic/v1/messages", &second).await;
    assert_eq!(resp.status(), 200, "{:?}", double.last_request());
    let message: Value = resp.json().await.expect("json");
    assert_eq!(message["content"][0]["text"], DEFAULT_REPLY);
    let sent = double
        .last_request()
        .expect("request")
        .json()
        .expect("json");
    let messages = sent["messages"].as_array().expect("messages");
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "user"],
        "{sent}"
    );
    assert_eq!(messages[2]["tool_calls"][0]["id"], id.as_str());
    assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "Read");
    let arguments: Value = serde_json::from_str(
        messages[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .expect("arguments are a string"),
    )
    .expect("arguments are JSON");
    assert_eq!(arguments, json!({"file_path": "/work/note.txt"}));
    assert_eq!(messages[3]["tool_call_id"], id.as_str());
    assert!(
        messages[3]["content"].to_string().contains("NOTE-7f3a"),
        "{sent}"
    );

    // Not streamed, two calls in parallel, both answered.
    let first = request("[double:parallel] Read it twice.", false);
    let resp = gw.post("/anthropic/v1/messages", &first).await;
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.expect("json");
    assert_eq!(message["stop_reason"], "tool_use");
    let calls: Vec<(String, Value)> = message["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|b| {
            assert_eq!(b["type"], "tool_use", "{message}");
            assert_eq!(b["name"], "Read");
            (b["id"].as_str().expect("id").to_owned(), b["input"].clone())
        })
        .collect();
    assert_eq!(calls.len(), 2, "{message}");
    assert_ne!(calls[0].0, calls[1].0);
    assert_eq!(calls[0].1, json!({"file_path": "/tmp/x"}));
    let second = follow_up(&first, &calls, &["one", "two"]);
    let resp = gw.post("/anthropic/v1/messages", &second).await;
    assert_eq!(resp.status(), 200, "{:?}", double.last_request());

    // A result that answers nothing is refused by the double as OpenAI refuses it: proof that
    // the double would catch a gateway sending results the wrong way.
    let mut orphan = request("hi", false);
    orphan["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_none", "content": "x"}]}
    ]);
    let resp = gw.post("/anthropic/v1/messages", &orphan).await;
    let err = anthropic_error(resp, 400, "invalid_request_error").await;
    assert_eq!(
        err["error"]["message"],
        openai_double::TOOL_WITHOUT_CALL_MESSAGE
    );
}

#[tokio::test]
async fn upstream_errors_are_mapped_to_anthropic_errors() {
    let double = openai_double(UPSTREAM_KEY);
    let mut gw = Gateway::start(&snapshot(
        vec![
            openai_provider("openai", &double, Some(UPSTREAM_KEY)),
            openai_provider("wrongkey", &double, Some("sk-proj-not-the-key-9z9z")),
        ],
        &[],
    ))
    .await;

    // 401: the key refused.
    let mut bad = request("hi", false);
    bad["model"] = json!("wrongkey/gpt-4.1");
    let resp = gw.post("/anthropic/v1/messages", &bad).await;
    let err = anthropic_error(resp, 401, "authentication_error").await;
    assert_eq!(err["type"], "error");
    assert_message_starts(&err, "Incorrect API key provided");
    assert!(err["request_id"].is_string());
    assert_eq!(
        double.last_request().expect("r").verdict.code.as_deref(),
        Some("invalid_api_key")
    );
    usage_is(&mut gw, 401, "upstream_error").await;

    // 429 with the upstream's retry-after.
    let resp = ask(&gw, "[double:rate-limit] hi", false).await;
    assert_eq!(resp.headers()["retry-after"], RATE_LIMIT_RETRY_AFTER);
    let err = anthropic_error(resp, 429, "rate_limit_error").await;
    assert_eq!(err["error"]["message"], openai_double::RATE_LIMIT_MESSAGE);
    gw.usage().await;

    // The context-length error is worded so Claude Code compacts.
    let resp = ask(&gw, "[double:context-length] hi", true).await;
    let err = anthropic_error(resp, 400, "invalid_request_error").await;
    assert_message_starts(&err, "prompt is too long: ");
    gw.usage().await;

    // A stream that fails midway ends with an Anthropic error event, after what came before.
    let resp = ask(&gw, "[double:midstream] hi", true).await;
    assert_eq!(resp.status(), 200);
    let events = events(&resp.bytes().await.expect("body"));
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert!(names.contains(&"content_block_delta"), "{names:?}");
    let last = events.last().expect("events");
    assert_eq!(last.name, "error", "{names:?}");
    assert_eq!(last.data["error"]["type"], "api_error");
    assert_eq!(
        last.data["error"]["message"],
        openai_double::SERVER_ERROR_MESSAGE
    );
    usage_is(&mut gw, 500, "upstream_stream_exception").await;

    // A model the upstream does not know is its 404, named as the client asked.
    let mut unknown = request("hi", false);
    unknown["model"] = json!("openai/gpt-unknown");
    let resp = gw.post("/anthropic/v1/messages", &unknown).await;
    anthropic_error(resp, 404, "not_found_error").await;
}

#[tokio::test]
async fn a_failing_openai_upstream_falls_back_to_another_provider() {
    const ANTHROPIC_KEY: &str = "sk-ant-api03-openai-fallback-0001";
    let double = openai_double(UPSTREAM_KEY);
    let anthropic =
        AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(ANTHROPIC_KEY))
            .expect("anthropic double");
    let mut gw = Gateway::start(&snapshot(
        vec![
            openai_provider("openai", &double, Some(UPSTREAM_KEY)),
            provider(
                "anthropic",
                pb::ProviderKind::Anthropic,
                anthropic.base_url(),
                Some(ANTHROPIC_KEY),
            ),
        ],
        &["anthropic/claude-sonnet-4-6"],
    ))
    .await;
    for stream in [false, true] {
        let resp = ask(&gw, "[double:status:500] hi", stream).await;
        assert_eq!(resp.status(), 200, "stream {stream}");
        assert_eq!(resp.headers()["x-tollgate-fallback-index"], "1");
        assert_eq!(resp.headers()["x-tollgate-provider"], "anthropic");
        let body = resp.bytes().await.expect("body");
        let text = if stream {
            assemble(&events(&body)).0[0]["text"].clone()
        } else {
            serde_json::from_slice::<Value>(&body).expect("json")["content"][0]["text"].clone()
        };
        assert_eq!(
            text,
            tollgate_tests::anthropic_double::DEFAULT_REPLY,
            "stream {stream}"
        );
        let record = gw.usage().await;
        assert_eq!(record.status, 200);
        assert_eq!(record.fallback_index, 1);
        let attempt = record.attempts.first().expect("the failed attempt");
        assert_eq!(
            (
                attempt.provider.as_str(),
                attempt.class.as_str(),
                attempt.status
            ),
            ("openai", "server_error", 500)
        );
    }
}

#[tokio::test]
async fn count_tokens_is_answered_501_without_an_upstream_call() {
    let (double, mut gw) = openai_gateway(UPSTREAM_KEY).await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "count me"}]});
    let resp = gw.post("/v1/messages/count_tokens?beta=true", &body).await;
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let err = anthropic_error(resp, 501, "api_error").await;
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("count_tokens is not available")),
        "{err}"
    );
    assert!(double.requests().is_empty(), "no upstream call");
    let record = usage_is(&mut gw, 501, "not_supported").await;
    assert!(record.attempts.is_empty(), "not retried elsewhere");
}

#[tokio::test]
async fn a_key_without_a_value_sends_no_authorization() {
    let local = OpenAiDouble::start(OpenAiDoubleConfig::new().with_models(&["qwen3-coder:30b"]))
        .expect("local double");
    let gw = Gateway::start(&snapshot(
        vec![openai_provider("ollama", &local, None)],
        &[],
    ))
    .await;
    let mut body = request("say hi", true);
    body["model"] = json!("ollama/qwen3-coder:30b");
    let resp = gw.post("/anthropic/v1/messages", &body).await;
    assert_eq!(resp.status(), 200);
    let (blocks, _) = assemble(&events(&resp.bytes().await.expect("body")));
    assert_eq!(blocks, vec![json!({"type": "text", "text": DEFAULT_REPLY})]);
    let r = local.last_request().expect("request");
    assert_eq!(r.verdict.status, 200);
    assert_eq!(r.header("authorization"), None, "{:?}", r.headers);
    assert_eq!(r.json().expect("json")["model"], "qwen3-coder:30b");
}

/// Nothing ships for OpenAI models, but an operator's override (`/api/pricing`, provider
/// `openai`) prices them: cached prompt tokens at the cached-input rate.
#[tokio::test]
async fn an_openai_price_override_prices_the_usage() {
    let double = openai_double(UPSTREAM_KEY);
    let mut snap = snapshot(
        vec![openai_provider("openai", &double, Some(UPSTREAM_KEY))],
        &[],
    );
    // $2 / $8 per million tokens, cached input $0.50: nano-dollars per token.
    snap.price_overrides = vec![pb::PriceOverride {
        id: "po-gpt-4-1".into(),
        provider: "openai".into(),
        models: vec!["gpt-4.1*".into()],
        rates: Some(pb::Rates {
            input: 2_000,
            output: 8_000,
            cache_read: 500,
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut gw = Gateway::start(&snap).await;
    let resp = ask(&gw, "[double:cached] say hi", true).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    let r = gw.usage().await;
    assert!(r.cache_read_input_tokens > 0 && r.input_tokens > 0, "{r:?}");
    assert_eq!(
        r.cost_nano_usd,
        Some(r.input_tokens * 2_000 + r.output_tokens * 8_000 + r.cache_read_input_tokens * 500)
    );
}

/// The double's model list and its refusals, in OpenAI's envelope.
#[tokio::test]
async fn the_double_lists_models_and_refuses_like_openai() {
    let double = openai_double(UPSTREAM_KEY);
    let http = reqwest::Client::new();
    let models: Value = http
        .get(format!("{}/models", double.api_url()))
        .bearer_auth(UPSTREAM_KEY)
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    assert_eq!(models["object"], "list");
    assert!(
        models["data"].as_array().is_some_and(|d| d
            .iter()
            .any(|m| m["id"] == "gpt-4.1" && m["object"] == "model")),
        "{models}"
    );
    let resp = http
        .post(format!("{}/chat/completions", double.api_url()))
        .bearer_auth("sk-wrong-key-abcd")
        .json(&json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(
        err,
        json!({"error": {
            "message": "Incorrect API key provided: sk-...abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
    );
    let resp = http
        .post(format!("{}/chat/completions", double.api_url()))
        .bearer_auth(UPSTREAM_KEY)
        .json(
            &json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}],
                      "top_k": 5}),
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(
        err["error"]["message"],
        "Unrecognized request argument supplied: top_k"
    );
}

//! `openai::chat_ingress`: OpenAI Chat Completions clients -> Anthropic Messages, and Anthropic
//! answers -> OpenAI's format.
//!
//! Request bodies under `testdata/openai/request-*.json` (all but `request-multiturn-thinking`)
//! were captured as the official OpenAI Python SDK (openai 3.63.0) sent them to a local server;
//! each `*.anthropic.json` next to them is the expected translation, written by hand. The
//! Anthropic answers (`anthropic-*`) follow the shapes of the Anthropic Python SDK's streaming
//! fixtures (`basic_response.txt`, `tool_use_response.txt`) with our own content.

mod support;

use serde_json::{Value, json};
use support::{read, read_json};
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::openai::chat_ingress::{
    ChatError, ChatStream, RequestOptions, Translated, effort_budget, error_body,
    error_from_anthropic, request, response,
};

const OPTS: RequestOptions = RequestOptions {
    default_max_tokens: 4096,
};
const CREATED: u64 = 1_767_225_600;

fn translate(body: &[u8]) -> Translated {
    request(body, &OPTS).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn body_json(t: &Translated) -> Value {
    serde_json::from_slice(&t.body).unwrap()
}

fn refused(body: Value) -> String {
    match request(body.to_string().as_bytes(), &OPTS) {
        Ok(t) => panic!("accepted: {}", String::from_utf8_lossy(&t.body)),
        Err(e) => {
            assert_eq!(e.status(), 400);
            e.to_string()
        }
    }
}

fn with(extra: Value) -> Value {
    let mut base =
        json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

// === Requests: golden ===

#[test]
fn sdk_requests_translate_to_the_expected_anthropic_bodies() {
    // (fixture, stream, include_usage, dropped)
    let cases: [(&str, bool, bool, &[&str]); 6] = [
        ("request-system-image", false, false, &[]),
        ("request-tools-roundtrip", false, false, &[]),
        (
            "request-stream-usage",
            true,
            true,
            &["seed", "presence_penalty"],
        ),
        ("request-json-schema", false, false, &[]),
        (
            "request-reasoning-effort",
            false,
            false,
            &["store", "metadata"],
        ),
        (
            "request-multiturn-thinking",
            false,
            false,
            &[
                "messages[1].name",
                "messages[2].reasoning_content",
                "reasoning_effort",
                "verbosity",
            ],
        ),
    ];
    for (name, stream, include_usage, dropped) in cases {
        let t = translate(&read(&format!("openai/{name}.json")));
        let expected = read_json(&format!("openai/{name}.anthropic.json"));
        assert_eq!(body_json(&t), expected, "{name}");
        assert_eq!(t.model, expected["model"], "{name}");
        assert_eq!(t.stream, stream, "{name}");
        assert_eq!(t.include_usage, include_usage, "{name}");
        assert_eq!(t.dropped, dropped, "{name}");
        assert!(t.betas.is_empty(), "{name}: structured outputs are GA");
        // The model leads the body, max_tokens next (readers of logged bodies).
        let text = String::from_utf8(t.body.clone()).unwrap();
        assert!(text.starts_with(r#"{"model":"#), "{name}: {text}");
    }
}

#[test]
fn model_is_kept_byte_for_byte() {
    let body = br#"{"model":"bedrock/us.anthropic.claude-opus-5-5:0 \u00e9","messages":[{"role":"user","content":"x"}]}"#;
    let t = translate(body);
    assert_eq!(t.model, "bedrock/us.anthropic.claude-opus-5-5:0 é");
    assert_eq!(
        body_json(&t)["model"],
        "bedrock/us.anthropic.claude-opus-5-5:0 é"
    );
}

// === Requests: messages ===

#[test]
fn system_messages_are_hoisted_in_order_from_anywhere() {
    let t = translate(
        with(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "first"},
            {"role": "assistant", "content": "b"},
            {"role": "developer", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "third"}], "cache_control": {"type": "ephemeral"}},
            {"role": "user", "content": "c"},
            {"role": "system", "content": ""},
        ]}))
        .to_string()
        .as_bytes(),
    );
    let body = body_json(&t);
    assert_eq!(
        body["system"],
        json!([
            {"type": "text", "text": "first"},
            {"type": "text", "text": "second"},
            {"type": "text", "text": "third", "cache_control": {"type": "ephemeral"}},
        ])
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            {"role": "user", "content": [{"type": "text", "text": "c"}]},
        ])
    );
}

#[test]
fn consecutive_turns_merge_and_tool_results_lead_their_turn() {
    let t = translate(
        with(json!({"messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":[1,2]}"}}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "refusal": "really no"},
            {"role": "user", "content": "before the result"},
            {"role": "tool", "tool_call_id": "c1", "content": ""},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "r2"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]},
        ]}))
        .to_string()
        .as_bytes(),
    );
    assert_eq!(
        body_json(&t)["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": [1, 2]}},
                {"type": "text", "text": "no"},
                {"type": "text", "text": "really no"},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "c1"},
                {"type": "tool_result", "tool_use_id": "c2", "content": [
                    {"type": "text", "text": "r2"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
                ]},
                {"type": "text", "text": "before the result"},
            ]},
        ])
    );
}

#[test]
fn unsigned_reasoning_is_dropped_and_named() {
    let t = translate(
        with(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_details": [
                {"type": "reasoning.summary", "summary": "s"},
                {"type": "reasoning.text", "text": "no signature"},
            ]},
        ]}))
        .to_string()
        .as_bytes(),
    );
    assert_eq!(
        body_json(&t)["messages"][1],
        json!({"role": "assistant", "content": [{"type": "text", "text": "a"}]})
    );
    assert_eq!(
        t.dropped,
        [
            "messages[1].reasoning_details[0]",
            "messages[1].reasoning_details (reasoning without signature)"
        ]
    );
}

// === Requests: parameters ===

#[test]
fn parameter_mapping() {
    let cases = [
        // (extra fields, expected members of the Anthropic body)
        (
            json!({"max_tokens": 7, "max_completion_tokens": 9}),
            json!({"max_tokens": 9}),
        ),
        (json!({"max_tokens": 7}), json!({"max_tokens": 7})),
        (json!({"stop": "END"}), json!({"stop_sequences": ["END"]})),
        (
            json!({"stop": ["", " \n", "x"]}),
            json!({"stop_sequences": ["x"]}),
        ),
        (json!({"temperature": 1}), json!({"temperature": 1})),
        (
            json!({"tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": false}),
            json!({"tool_choice": {"type": "none"}}),
        ),
        (
            json!({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}),
            json!({"tool_choice": {"type": "any"}}),
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": false}),
            json!({"tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
        ),
        (
            json!({"metadata": {"user_id": "anthropic-user"}, "user": "openai-user"}),
            json!({"metadata": {"user_id": "anthropic-user"}}),
        ),
        (
            json!({"reasoning_effort": "high", "max_tokens": 20000}),
            json!({"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16384}}),
        ),
        (
            json!({"reasoning_effort": "minimal", "temperature": 1}),
            json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        ),
        (
            json!({"reasoning_effort": "none", "temperature": 0.5}),
            json!({"max_tokens": 4096, "temperature": 0.5}),
        ),
        (
            json!({"response_format": {"type": "text"}, "cache_control": {"type": "ephemeral"}}),
            json!({"cache_control": {"type": "ephemeral"}}),
        ),
        (
            json!({"output_config": {"effort": "low"}, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}),
            json!({"output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}}}),
        ),
    ];
    for (extra, expected) in cases {
        let body = body_json(&translate(with(extra.clone()).to_string().as_bytes()));
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&body[k], v, "{extra}: {k}");
        }
        if extra.get("reasoning_effort") == Some(&json!("none")) {
            assert!(body.get("thinking").is_none());
        }
        if extra.get("tools").is_none() {
            assert!(body.get("tool_choice").is_none(), "{extra}");
        }
    }
    assert_eq!(effort_budget("medium"), Some(Some(8192)));
    assert_eq!(effort_budget("none"), Some(None));
    assert_eq!(effort_budget("max"), None);
}

#[test]
fn tool_choice_without_tools_is_dropped() {
    let t = translate(with(json!({"tool_choice": "auto"})).to_string().as_bytes());
    assert!(body_json(&t).get("tool_choice").is_none());
    assert_eq!(t.dropped, ["tool_choice"]);
}

// === Requests: refusals ===

#[test]
fn every_refusal_names_its_path() {
    let cases = [
        (json!({"messages": []}), "messages: must not be empty"),
        (json!({"model": 5}), "model: must be a string"),
        (json!({"messages": "hi"}), "messages: must be an array"),
        (json!({"messages": [5]}), "messages[0]: must be an object"),
        (
            json!({"messages": [{"content": "x"}]}),
            "messages[0].role: field required",
        ),
        (
            json!({"messages": [{"role": "bot", "content": "x"}]}),
            "messages[0].role: unknown role",
        ),
        (
            json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "messages[0].role: \"function\" messages are deprecated",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
            "messages[0].content[0].type: audio input is not supported",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "messages[0].content[0].image_url.url: must be an http(s) URL or a base64 data URL",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]}),
            "messages[0].content[0].image_url.url: a data URL must have the form",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}),
            "messages[0].content[0].file.file_id: OpenAI file ids are not supported",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}}]}]}),
            "messages[0].content[0].file.file_data: only PDF files are supported",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]}),
            "messages[0].content[0].type: \"image_url\" parts are not supported here",
        ),
        (
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}, {"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}]}),
            "messages[1].tool_calls[0].function.arguments: not valid JSON",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments: must encode a JSON object",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id: field required",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": "a", "reasoning_details": [{"type": "reasoning.encrypted"}]}]}),
            "messages[0].reasoning_details[0].data: field required",
        ),
        (json!({"temperature": 1.5}), "temperature: 1.5 is above 1"),
        (
            json!({"temperature": -0.1}),
            "temperature: must be a number between 0 and 1",
        ),
        (json!({"n": 2}), "n: only 1 is supported"),
        (json!({"logprobs": true}), "logprobs: not supported"),
        (json!({"top_logprobs": 3}), "top_logprobs: not supported"),
        (
            json!({"modalities": ["text", "audio"]}),
            "modalities[1]: only \"text\"",
        ),
        (
            json!({"audio": {"voice": "alloy", "format": "mp3"}}),
            "audio: not supported",
        ),
        (
            json!({"functions": [{"name": "f"}]}),
            "functions: deprecated",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format.type: \"json_object\" is not supported by Claude models: send {\"type\":\"json_schema\"",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}}),
            "response_format.json_schema.schema: field required",
        ),
        (
            json!({"reasoning_effort": "max"}),
            "reasoning_effort: unknown value \"max\"",
        ),
        (
            json!({"reasoning_effort": "low", "temperature": 0.7}),
            "temperature: must be 1 or unset when reasoning is on",
        ),
        (
            json!({"thinking": {"type": "adaptive"}, "temperature": 0}),
            "temperature: must be 1 or unset when reasoning is on",
        ),
        (
            json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            "tools[0].type: \"custom\" tools are not supported",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": ""}}]}),
            "tools[0].function.name: must be a non-empty string",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            "tool_choice: unknown value \"sometimes\"",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "allowed_tools"}}),
            "tool_choice.type: only \"function\"",
        ),
        (json!({"stop": [1]}), "stop[0]: must be a string"),
        (
            json!({"max_tokens": -1}),
            "max_tokens: must be a non-negative integer",
        ),
        (json!({"stream": "yes"}), "stream: must be a boolean"),
    ];
    for (extra, expected) in cases {
        let message = refused(with(extra.clone()));
        assert!(
            message.starts_with(expected),
            "{extra}\n  got:      {message}\n  expected: {expected}…"
        );
    }
    // Missing fields.
    assert_eq!(
        refused(json!({"messages": [{"role": "user", "content": "x"}]})),
        "model: field required"
    );
    assert_eq!(refused(json!({"model": "m"})), "messages: field required");
}

#[test]
fn malformed_bodies_are_refused() {
    for body in [
        &b"{"[..],
        b"[1]",
        b"",
        b"null",
        br#"{"model":"a","model":"b","messages":[]}"#,
    ] {
        let err = request(body, &OPTS).unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }
    let err = request(br#"{"model":"a","model":"b"}"#, &OPTS).unwrap_err();
    assert!(
        matches!(err, ChatError::DuplicateKey(ref k) if k == "model"),
        "{err:?}"
    );
    let v: Value = serde_json::from_slice(&err.to_openai()).unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "model: duplicate key", "type": "invalid_request_error", "param": "model", "code": null}})
    );
}

#[test]
fn refusals_become_openai_errors_with_the_param() {
    let err = request(with(json!({"n": 3})).to_string().as_bytes(), &OPTS).unwrap_err();
    let v: Value = serde_json::from_slice(&err.to_openai()).unwrap();
    assert_eq!(v["error"]["param"], "n");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("n: only 1")
    );
}

#[test]
fn truncated_and_mangled_requests_never_panic() {
    for name in [
        "request-system-image",
        "request-tools-roundtrip",
        "request-multiturn-thinking",
        "request-reasoning-effort",
    ] {
        let body = read(&format!("openai/{name}.json"));
        for cut in 0..body.len() {
            let _ = request(&body[..cut], &OPTS);
        }
        // Every value replaced by a wrong type, one at a time.
        let v: Value = serde_json::from_slice(&body).unwrap();
        for (path, _) in leaves(&v, String::new()) {
            for junk in [
                json!(null),
                json!(7),
                json!("s"),
                json!([]),
                json!({}),
                json!([{}]),
            ] {
                let mut m = v.clone();
                *m.pointer_mut(&path).unwrap() = junk;
                let _ = request(m.to_string().as_bytes(), &OPTS);
            }
        }
    }
}

fn leaves(v: &Value, at: String) -> Vec<(String, Value)> {
    let mut out = vec![(at.clone(), v.clone())];
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                out.extend(leaves(c, format!("{at}/{k}")));
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                out.extend(leaves(c, format!("{at}/{i}")));
            }
        }
        _ => {}
    }
    out.retain(|(p, _)| !p.is_empty());
    out
}

// === Responses ===

#[test]
fn anthropic_messages_become_chat_completions() {
    for (name, model) in [
        ("anthropic-message-thinking-tools", "claude-sonnet-4-6"),
        ("anthropic-message-text", "haiku"),
    ] {
        let out = response(&read(&format!("openai/{name}.json")), model, CREATED).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            got,
            read_json(&format!("openai/{name}.openai.json")),
            "{name}"
        );
    }
}

#[test]
fn finish_reasons_and_empty_content() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let msg = json!({"id": "msg_1", "content": [], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 2}});
        let got: Value =
            serde_json::from_slice(&response(msg.to_string().as_bytes(), "m", 1).unwrap()).unwrap();
        assert_eq!(got["choices"][0]["finish_reason"], finish, "{stop}");
        assert_eq!(got["choices"][0]["message"]["content"], Value::Null);
        assert!(got["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(got["usage"]["total_tokens"], 3);
    }
}

#[test]
fn a_round_trip_gives_claude_back_its_signed_thinking() {
    // What a client sends back after a thinking + tool answer is what Claude produced.
    let answer = read("openai/anthropic-message-thinking-tools.json");
    let completion: Value =
        serde_json::from_slice(&response(&answer, "claude-sonnet-4-6", CREATED).unwrap()).unwrap();
    let mut assistant = completion["choices"][0]["message"].clone();
    assistant["content"] = json!(null);
    let next = with(json!({"messages": [{"role": "user", "content": "q"}, assistant]}));
    let t = translate(next.to_string().as_bytes());
    let original: Value = serde_json::from_slice(&answer).unwrap();
    let expected: Vec<Value> = original["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| !matches!(b["type"].as_str(), Some("text" | "server_tool_use")))
        .cloned()
        .collect();
    // The client cleared its content: only reasoning and tool calls go back, in Claude's order.
    assert_eq!(
        body_json(&t)["messages"][1]["content"],
        Value::Array(expected)
    );
    assert_eq!(t.dropped, ["messages[1].reasoning_content"]);
}

#[test]
fn answers_that_are_not_messages_are_refused() {
    for body in [
        &b"not json"[..],
        b"{}",
        br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#,
    ] {
        let err = response(body, "m", 1).unwrap_err();
        assert_eq!(err.status(), 502);
    }
    let body = read("openai/anthropic-message-thinking-tools.json");
    for cut in 0..body.len() {
        let _ = response(&body[..cut], "m", 1);
    }
}

// === Streams ===

/// The output of a stream as items: each `data:` payload parsed (`"[DONE]"` kept as a string),
/// comments as `": <text>"`. Also checks the framing (`\n\n` after every item).
fn items(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|frame| {
            assert!(!frame.contains('\n'), "one line per event: {frame:?}");
            if let Some(comment) = frame.strip_prefix(": ") {
                Value::String(format!(": {comment}"))
            } else {
                let data = frame.strip_prefix("data: ").expect("data line");
                if data == "[DONE]" {
                    Value::String(data.into())
                } else {
                    serde_json::from_str(data).unwrap()
                }
            }
        })
        .collect()
}

fn run(input: &[u8], model: &str, include_usage: bool, split: usize) -> (Vec<u8>, bool) {
    let mut s = ChatStream::new(model, CREATED, include_usage);
    let mut out = Vec::new();
    for piece in input.chunks(split.max(1)) {
        out.extend_from_slice(&s.push(piece));
    }
    out.extend_from_slice(&s.finish());
    (out, s.ended())
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>, usage: bool) -> Value {
    let mut c = json!({
        "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    if usage {
        c["usage"] = Value::Null;
    }
    c
}

#[test]
fn text_stream_with_usage() {
    let input = read("openai/anthropic-stream-text.sse");
    let id = "chatcmpl-msg_01Basic";
    let c = |delta, finish| chunk(id, "haiku", delta, finish, true);
    let expected = vec![
        c(json!({"role": "assistant", "content": ""}), None),
        json!(": ping"),
        c(json!({"content": "Hello"}), None),
        c(json!({"content": " there"}), None),
        c(json!({"content": "! é日🦀"}), None),
        c(json!({}), Some("stop")),
        json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": "haiku", "choices": [],
               "usage": {"prompt_tokens": 16, "completion_tokens": 6, "total_tokens": 22, "prompt_tokens_details": {"cached_tokens": 5}}}),
        json!("[DONE]"),
    ];
    let (whole, ended) = run(&input, "haiku", true, input.len());
    assert!(ended);
    assert_eq!(items(&whole), expected);
    for split in [1, 2, 3, 7, 64] {
        assert_eq!(run(&input, "haiku", true, split).0, whole, "split {split}");
    }
}

#[test]
fn thinking_and_tool_stream() {
    let input = read("openai/anthropic-stream-thinking-tools.sse");
    let c = |delta, finish| chunk("chatcmpl-msg_01Tool", "sonnet", delta, finish, false);
    let fmt = "anthropic-claude-v1";
    let expected = vec![
        c(json!({"role": "assistant", "content": ""}), None),
        c(
            json!({"reasoning_content": "Need the weather.", "reasoning_details": [
            {"type": "reasoning.text", "text": "Need the weather.", "format": fmt, "index": 0}]}),
            None,
        ),
        c(
            json!({"reasoning_details": [
            {"type": "reasoning.text", "text": "", "signature": "EqQBCgIYAhIM1gsig", "format": fmt, "index": 0}]}),
            None,
        ),
        c(
            json!({"reasoning_details": [
            {"type": "reasoning.encrypted", "data": "EmwKAhgBEgyRedacted", "format": fmt, "index": 1}]}),
            None,
        ),
        c(json!({"content": "Checking Paris."}), None),
        c(
            json!({"tool_calls": [{"index": 0, "id": "toolu_01NRLabs", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        ),
        c(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"locati"}}]}),
            None,
        ),
        c(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "on\": \"Paris\"}"}}]}),
            None,
        ),
        c(
            json!({"tool_calls": [{"index": 1, "id": "toolu_02Time", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            None,
        ),
        c(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            None,
        ),
        c(json!({}), Some("tool_calls")),
        json!("[DONE]"),
    ];
    let (whole, ended) = run(&input, "sonnet", false, input.len());
    assert!(ended);
    assert_eq!(items(&whole), expected);
    assert_eq!(run(&input, "sonnet", false, 1).0, whole, "bytewise");
}

#[test]
fn events_without_event_lines_and_with_crlf_give_the_same_output() {
    for name in [
        "anthropic-stream-text.sse",
        "anthropic-stream-thinking-tools.sse",
    ] {
        let input = read(&format!("openai/{name}"));
        let text = String::from_utf8(input.clone()).unwrap();
        let bare: String = text
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("event:"))
            .collect();
        let crlf = text.replace('\n', "\r\n");
        let (expected, _) = run(&input, "m", true, input.len());
        assert_eq!(
            run(bare.as_bytes(), "m", true, 1).0,
            expected,
            "{name} bare"
        );
        assert_eq!(
            run(crlf.as_bytes(), "m", true, 5).0,
            expected,
            "{name} crlf"
        );
    }
}

#[test]
fn an_error_event_ends_the_stream_without_done() {
    let input = read("openai/anthropic-stream-error.sse");
    let c = |delta| chunk("chatcmpl-msg_01Basic", "haiku", delta, None, false);
    let expected = vec![
        c(json!({"role": "assistant", "content": ""})),
        json!(": ping"),
        c(json!({"content": "Hello"})),
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": null}}),
    ];
    for split in [input.len(), 1] {
        let (out, ended) = run(&input, "haiku", false, split);
        assert!(ended);
        assert_eq!(items(&out), expected, "split {split}");
    }
}

#[test]
fn a_stream_cut_short_ends_with_an_error() {
    let input = read("openai/anthropic-stream-text.sse");
    let cut = String::from_utf8(input).unwrap();
    let cut = &cut[..cut.find("event: message_delta").unwrap()];
    let mut s = ChatStream::new("haiku", CREATED, true);
    let body = s.push(cut.as_bytes());
    assert!(!s.ended());
    let got = items(&body);
    assert_eq!(got.len(), 5, "role, ping and three deltas: {got:?}");
    let tail = items(&s.finish());
    assert!(s.ended());
    assert_eq!(
        tail,
        vec![
            json!({"error": {"message": "the upstream stream ended before the answer was complete", "type": "server_error", "param": null, "code": null}})
        ]
    );
    assert!(s.finish().is_empty());
    assert!(s.push(b"event: message_stop\ndata: {}\n\n").is_empty());
}

#[test]
fn garbage_streams_never_panic() {
    let input = read("openai/anthropic-stream-thinking-tools.sse");
    for cut in (0..input.len()).step_by(7) {
        let mut s = ChatStream::new("m", 0, true);
        let _ = s.push(&input[..cut]);
        let _ = s.finish();
    }
    let mut s = ChatStream::new("m", 0, true);
    for junk in [
        &b"data: {\"type\":\"content_block_delta\",\"index\":9,\"delta\":{\"type\":\"text_delta\"}}\n\n"[..],
        b"data: [1,2]\n\n",
        b"event: content_block_start\ndata: {\"index\":\"x\"}\n\n",
        b"data: \xff\xfe\n\n",
        b"event: message_delta\ndata: {\"delta\":7}\n\n",
    ] {
        let _ = s.push(junk);
    }
    assert!(!s.ended());
}

// === Errors ===

#[test]
fn openai_error_shapes() {
    let cases = [
        (
            ErrorKind::InvalidRequest,
            "invalid_request_error",
            Value::Null,
        ),
        (
            ErrorKind::Authentication,
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        (
            ErrorKind::Billing,
            "insufficient_quota",
            json!("insufficient_quota"),
        ),
        (
            ErrorKind::Permission,
            "invalid_request_error",
            json!("permission_denied"),
        ),
        (
            ErrorKind::NotFound,
            "invalid_request_error",
            json!("model_not_found"),
        ),
        (
            ErrorKind::RequestTooLarge,
            "invalid_request_error",
            json!("request_too_large"),
        ),
        (
            ErrorKind::RateLimit,
            "requests",
            json!("rate_limit_exceeded"),
        ),
        (ErrorKind::Api, "server_error", Value::Null),
        (ErrorKind::Timeout, "server_error", Value::Null),
        (ErrorKind::Overloaded, "server_error", Value::Null),
    ];
    for (kind, ty, code) in cases {
        let got: Value = serde_json::from_slice(&error_body(kind, "m \"q\"\n")).unwrap();
        assert_eq!(
            got,
            json!({"error": {"message": "m \"q\"\n", "type": ty, "param": null, "code": code}}),
            "{kind}"
        );
    }
}

#[test]
fn anthropic_errors_become_openai_errors() {
    let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}"#;
    let got: Value = serde_json::from_slice(&error_from_anthropic(429, body)).unwrap();
    assert_eq!(
        got,
        json!({"error": {"message": "Number of request tokens has exceeded your per-minute rate limit", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    );
    // The envelope's type wins over the status; an unparsable body gets a generic message.
    let got: Value = serde_json::from_slice(&error_from_anthropic(
        500,
        br#"{"error":{"type":"authentication_error","message":"bad key"}}"#,
    ))
    .unwrap();
    assert_eq!(got["error"]["code"], "invalid_api_key");
    for (status, ty) in [(502, "server_error"), (404, "invalid_request_error")] {
        let got: Value = serde_json::from_slice(&error_from_anthropic(status, b"<html>")).unwrap();
        assert_eq!(got["error"]["type"], ty);
        assert_eq!(
            got["error"]["message"],
            format!("HTTP {status} without an error message")
        );
    }
}

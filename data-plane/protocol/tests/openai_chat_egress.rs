//! `openai::chat_egress`: Anthropic Messages (Claude Code) -> an OpenAI-compatible upstream,
//! golden against `testdata/openai/egress-*`.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{parse_sse, read, read_json};
use tollgate_protocol::anthropic::{ErrorKind, Usage};
use tollgate_protocol::bedrock::RequestBody;
use tollgate_protocol::openai::chat_egress::{
    self, ChatToAnthropic, EgressError, MaxTokensField, RequestOptions, StreamError,
};

const MODEL: &str = "claude-haiku-4-5";

// === Requests ===

fn options(v: &Value) -> RequestOptions {
    RequestOptions {
        max_tokens_field: match v["max_tokens_field"].as_str().unwrap() {
            "max_tokens" => MaxTokensField::MaxTokens,
            "max_completion_tokens" => MaxTokensField::MaxCompletionTokens,
            other => panic!("unknown max_tokens_field {other}"),
        },
        stream: v["stream"].as_bool().unwrap(),
    }
}

fn translate(
    body: &Value,
    model: &str,
    opts: &RequestOptions,
) -> Result<(Value, Vec<String>), EgressError> {
    let bytes = serde_json::to_vec(body).unwrap();
    let parsed = RequestBody::parse(&bytes).unwrap();
    let out = chat_egress::request(&parsed, model, opts)?;
    Ok((serde_json::from_slice(&out.body).unwrap(), out.dropped))
}

fn check_request_golden(name: &str) {
    let case = read_json(&format!("openai/{name}"));
    let (body, dropped) = translate(
        &case["request"],
        case["upstream_model"].as_str().unwrap(),
        &options(&case["options"]),
    )
    .unwrap();
    assert_eq!(body, case["expected"]["body"], "{name}: body");
    let expected_dropped: Vec<String> =
        serde_json::from_value(case["expected"]["dropped"].clone()).unwrap();
    assert_eq!(dropped, expected_dropped, "{name}: dropped");
}

#[test]
fn request_claude_code_turn() {
    check_request_golden("egress-request-claude-code.json");
}

#[test]
fn request_other_fields() {
    check_request_golden("egress-request-features.json");
}

#[test]
fn request_keeps_field_order_fixed_and_tool_input_bytes() {
    // Members in another order give the same body; the key order of a tool input is kept.
    let a = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"z": 1, "a": [true, null]}}]}
    ], "temperature": 1});
    let b =
        json!({"temperature": 1, "messages": a["messages"].clone(), "max_tokens": 5, "model": "m"});
    let opts = RequestOptions::default();
    let (ta, _) = translate(&a, "up", &opts).unwrap();
    let bytes_a = serde_json::to_vec(&ta).unwrap();
    let (tb, _) = translate(&b, "up", &opts).unwrap();
    assert_eq!(bytes_a, serde_json::to_vec(&tb).unwrap());
    assert_eq!(
        String::from_utf8(bytes_a).unwrap(),
        r#"{"model":"up","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"z\":1,\"a\":[true,null]}"}}]}],"max_tokens":5,"temperature":1}"#
    );
}

#[test]
fn request_tool_choice_variants() {
    let cases = [
        (json!({"type": "auto"}), json!("auto"), None),
        (json!({"type": "none"}), json!("none"), None),
        (
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": false}),
            json!({"type": "function", "function": {"name": "f"}}),
            None,
        ),
        (
            json!({"type": "auto", "disable_parallel_tool_use": true}),
            json!("auto"),
            Some(false),
        ),
    ];
    for (choice, expected, parallel) in cases {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": choice});
        let (out, _) = translate(&body, "up", &RequestOptions::default()).unwrap();
        assert_eq!(out["tool_choice"], expected, "{choice}");
        assert_eq!(
            out.get("parallel_tool_calls").and_then(Value::as_bool),
            parallel
        );
    }
    // Without tools left, tool_choice goes too (OpenAI refuses one without tools).
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "bash_20250124", "name": "bash"}], "tool_choice": {"type": "any"}});
    let (out, dropped) = translate(&body, "up", &RequestOptions::default()).unwrap();
    assert_eq!(
        out,
        json!({"model": "up", "messages": [{"role": "user", "content": "hi"}]})
    );
    assert_eq!(dropped, ["tool type bash_20250124", "tool_choice"]);
}

#[test]
fn request_errors_name_the_path() {
    let opts = RequestOptions::default();
    let cases = [
        (json!({"model": "m"}), "messages: field required"),
        (
            json!({"model": "m", "messages": {}}),
            "messages: must be an array",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role: must be \"user\", \"assistant\" or \"system\"",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user"}]}),
            "messages[0].content: field required",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
            "messages[0].content[0].type: must be a string",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_011"}}]}]}),
            "messages[1].content[0].source: an image source of type \"file\" cannot be sent to an OpenAI-compatible upstream",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]}),
            "messages[0].content[0].source: a document source of type \"url\" cannot be sent to an OpenAI-compatible upstream",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}]}]}),
            "messages[0].content[0].content[0].source.data: must be a string",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "content": [
                {"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]}),
            "messages[0].content[0].input: must be an object",
        ),
        (
            json!({"model": "m", "messages": [], "system": [{"type": "image"}]}),
            "system[0].type: must be \"text\" in a system prompt",
        ),
        (
            json!({"model": "m", "messages": [], "max_tokens": -1}),
            "max_tokens: must be a non-negative integer",
        ),
        (
            json!({"model": "m", "messages": [], "stop_sequences": [1]}),
            "stop_sequences: must be an array of strings",
        ),
        (
            json!({"model": "m", "messages": [], "tools": [{"description": "no name"}]}),
            "tools[0].name: must be a string",
        ),
        (
            json!({"model": "m", "messages": [], "tool_choice": {"type": "sometimes"}}),
            "tool_choice.type: must be \"auto\", \"any\", \"tool\" or \"none\"",
        ),
    ];
    for (body, message) in cases {
        let err = translate(&body, "up", &opts).unwrap_err();
        assert_eq!(err.to_string(), message, "{body}");
        let api = err.to_api_error();
        assert_eq!((api.kind, api.status), (ErrorKind::InvalidRequest, 400));
    }
}

// === Non-streaming answers ===

fn check_message_golden(name: &str) {
    let case = read_json(&format!("openai/{name}"));
    let input = serde_json::to_vec(&case["input"]).unwrap();
    let out = chat_egress::message(&input, case["model"].as_str().unwrap()).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out, case["expected"], "{name}");
}

#[test]
fn message_text() {
    check_message_golden("egress-response-text.json");
}

#[test]
fn message_tool_calls() {
    check_message_golden("egress-response-tool-calls.json");
}

#[test]
fn message_vllm_reasoning_and_bad_arguments() {
    check_message_golden("egress-response-vllm-reasoning.json");
}

#[test]
fn message_refusal_and_content_filter() {
    let body = json!({"id": "c1", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": null, "refusal": "I can't help with that."}, "finish_reason": "content_filter"}]});
    let out: Value = serde_json::from_slice(
        &chat_egress::message(&serde_json::to_vec(&body).unwrap(), "claude").unwrap(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"id": "msg_c1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "I can't help with that."}],
            "stop_reason": "refusal", "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
    );
}

#[test]
fn message_errors() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"nope",
            "invalid Chat Completions response: not JSON: expected ident at line 1 column 2",
        ),
        (
            b"[]",
            "invalid Chat Completions response: not a JSON object",
        ),
        (
            br#"{"id":"x","choices":[]}"#,
            "invalid Chat Completions response: `choices` is missing or empty",
        ),
        (
            br#"{"id":"x"}"#,
            "invalid Chat Completions response: `choices` is missing or empty",
        ),
        (
            br#"{"error":{"message":"boom","type":"server_error"}}"#,
            "invalid Chat Completions response: the upstream answered with an error: boom",
        ),
    ];
    for (body, message) in cases {
        let err = chat_egress::message(body, "m").unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.to_api_error().kind, ErrorKind::Api);
    }
}

// === Streams ===

/// Feeds `input` in the given chunk sizes, then finishes; the output bytes and the first error.
fn run_stream(
    input: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
) -> (Vec<u8>, Option<StreamError>, ChatToAnthropic) {
    let mut t = ChatToAnthropic::new(MODEL);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        match t.push(head) {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e), t),
        }
    }
    match t.finish() {
        Ok(b) => out.extend_from_slice(&b),
        Err(e) => return (out, Some(e), t),
    }
    (out, None, t)
}

/// The output as `{event, data}` objects (every data must be JSON whose `type` is the name).
fn events(out: &[u8]) -> Vec<Value> {
    parse_sse(out)
        .into_iter()
        .map(|(name, data)| {
            let name = name.expect("every event is named");
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["type"], name.as_str());
            json!({"event": name, "data": data})
        })
        .collect()
}

fn check_stream_golden(name: &str) {
    let input = read(&format!("openai/{name}.sse"));
    let expected = read_json(&format!("openai/{name}.expected.json"));
    let (whole, err, t) = run_stream(&input, &mut std::iter::empty());
    assert_eq!(err, None, "{name}");
    assert_eq!(Value::Array(events(&whole)), expected["events"], "{name}");
    assert!(t.ended(), "{name}");
    let usage: Option<Usage> = serde_json::from_value(expected["usage"].clone()).unwrap();
    assert_eq!(t.usage(), usage, "{name}");

    // Any split gives the same bytes.
    let (bytewise, err, _) = run_stream(&input, &mut std::iter::repeat(1));
    assert_eq!(err, None);
    assert_eq!(bytewise, whole, "{name}: byte by byte");
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let sizes: Vec<usize> = (0..input.len()).map(|_| rng.random_range(1..=64)).collect();
        let (split, err, _) = run_stream(&input, &mut sizes.into_iter());
        assert_eq!(err, None);
        assert_eq!(split, whole, "{name}: seed {seed}");
    }
}

#[test]
fn stream_text_with_usage() {
    check_stream_golden("egress-stream-text");
}

#[test]
fn stream_parallel_tool_calls() {
    check_stream_golden("egress-stream-parallel-tools");
}

#[test]
fn stream_ollama_without_usage() {
    check_stream_golden("egress-stream-ollama");
}

#[test]
fn stream_crlf_comments_choices_null() {
    check_stream_golden("egress-stream-crlf-comments");
}

#[test]
fn stream_midstream_error() {
    check_stream_golden("egress-stream-error");
    let mut t = ChatToAnthropic::new(MODEL);
    t.push(&read("openai/egress-stream-error.sse")).unwrap();
    let err = t.terminal_error().unwrap();
    assert_eq!((err.kind, err.status), (ErrorKind::Api, 500));
}

fn chunk(delta: Value, finish: Value, usage: Value) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage})
    )
}

#[test]
fn stream_holds_message_delta_until_usage() {
    let mut t = ChatToAnthropic::new(MODEL);
    let first = t
        .push(chunk(json!({"content": "hi"}), Value::Null, Value::Null).as_bytes())
        .unwrap();
    assert_eq!(events(&first).len(), 3);
    let at_finish = t
        .push(chunk(json!({}), json!("stop"), Value::Null).as_bytes())
        .unwrap();
    // Only the block is closed: the usage chunk comes after the finish_reason one.
    assert_eq!(
        events(&at_finish),
        [
            json!({"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}})
        ]
    );
    assert!(!t.ended());
    let usage = t
        .push(
            br#"data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}

"#,
        )
        .unwrap();
    let usage = events(&usage);
    assert_eq!(usage.len(), 2);
    assert_eq!(
        usage[0]["data"]["usage"],
        json!({"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 2})
    );
    assert!(t.ended());
    // [DONE] after the end adds nothing.
    assert!(t.push(b"data: [DONE]\n\n").unwrap().is_empty());
    assert!(t.finish().unwrap().is_empty());
}

#[test]
fn stream_finish_closes_after_finish_reason_without_done() {
    let mut t = ChatToAnthropic::new(MODEL);
    t.push(chunk(json!({"content": "hi"}), json!("stop"), Value::Null).as_bytes())
        .unwrap();
    let tail = events(&t.finish().unwrap());
    let names: Vec<&str> = tail.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["message_delta", "message_stop"]);
    assert_eq!(tail[0]["data"]["delta"]["stop_reason"], "end_turn");
}

#[test]
fn stream_done_without_final_blank_line() {
    // No finish_reason, and the stream ends right after `data: [DONE]`: still complete.
    let input = format!(
        "{}data: [DONE]",
        chunk(json!({"content": "hi"}), Value::Null, Value::Null)
    );
    let (out, err, t) = run_stream(input.as_bytes(), &mut std::iter::repeat(3));
    assert_eq!(err, None);
    assert!(t.ended());
    let names: Vec<String> = events(&out)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn stream_truncated() {
    let mut t = ChatToAnthropic::new(MODEL);
    t.push(chunk(json!({"content": "hi"}), Value::Null, Value::Null).as_bytes())
        .unwrap();
    assert_eq!(t.finish(), Err(StreamError::Truncated));
    assert!(t.ended());
    assert_eq!(
        StreamError::Truncated.to_api_error().to_json(),
        br#"{"type":"error","error":{"type":"api_error","message":"Chat Completions stream ended before finish_reason or [DONE]"}}"#
    );
    // Nothing at all is truncated too.
    assert_eq!(
        ChatToAnthropic::new(MODEL).finish(),
        Err(StreamError::Truncated)
    );
}

#[test]
fn stream_invalid_chunk_keeps_earlier_output() {
    let input = format!(
        "{}data: {{not json\n\n",
        chunk(json!({"content": "hi"}), Value::Null, Value::Null)
    );
    // Whole: the output of the first chunk comes back, the error with the next call.
    let mut t = ChatToAnthropic::new(MODEL);
    let out = t.push(input.as_bytes()).unwrap();
    assert_eq!(events(&out).len(), 3);
    assert!(t.ended());
    let err = t.finish().unwrap_err();
    assert!(
        matches!(err, StreamError::InvalidChunk(ref m) if m.starts_with("not JSON")),
        "{err}"
    );
    // Byte by byte: the same bytes, the same error.
    let (bytewise, err2, _) = run_stream(input.as_bytes(), &mut std::iter::repeat(1));
    assert_eq!(bytewise, out);
    assert_eq!(err2, Some(err));
}

#[test]
fn stream_interleaved_tool_call_is_refused() {
    let mut t = ChatToAnthropic::new(MODEL);
    let call = |i: u64, id: Option<&str>, args: &str| {
        let mut c = json!({"index": i, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["function"]["name"] = json!("f");
        }
        chunk(json!({"tool_calls": [c]}), Value::Null, Value::Null)
    };
    t.push(call(0, Some("a"), "{").as_bytes()).unwrap();
    t.push(call(1, Some("b"), "{").as_bytes()).unwrap();
    let err = t.push(call(0, None, "}").as_bytes()).unwrap_err();
    assert_eq!(
        err,
        StreamError::InvalidChunk(
            "tool call 0 continues after another content block started".into()
        )
    );
}

#[test]
fn stream_repeated_index_with_new_id_is_a_new_call() {
    // Some servers number every call 0; a new id still means a new call.
    let input = [
        chunk(json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}]}), Value::Null, Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}), json!("tool_calls"), Value::Null),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let (out, err, _) = run_stream(input.as_bytes(), &mut std::iter::empty());
    assert_eq!(err, None);
    let starts: Vec<Value> = events(&out)
        .into_iter()
        .filter(|e| e["event"] == "content_block_start")
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(
        starts,
        [
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "a", "name": "f", "input": {}}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "b", "name": "g", "input": {}}}),
        ]
    );
}

// === Errors ===

#[test]
fn upstream_errors() {
    let cases = read_json("openai/egress-errors.json");
    for case in cases.as_array().unwrap() {
        let status = u16::try_from(case["status"].as_u64().unwrap()).unwrap();
        let err = chat_egress::error(status, case["body"].as_str().unwrap().as_bytes());
        let got = json!({"type": err.kind.as_str(), "status": err.status, "message": err.message});
        assert_eq!(got, case["expected"], "{}", case["comment"]);
    }
}

#[test]
fn long_error_messages_are_cut() {
    let long = "é".repeat(3000);
    let body = serde_json::to_vec(&json!({"error": {"message": long}})).unwrap();
    let err = chat_egress::error(400, &body);
    assert_eq!(
        err.message.len(),
        chat_egress::MAX_ERROR_MESSAGE + "…".len()
    );
    assert!(err.message.ends_with('…'));
    assert!(long.starts_with(err.message.trim_end_matches('…')));
}

//! `bedrock::converse`: Anthropic requests -> Converse bodies, Converse replies -> Anthropic
//! Messages, ConverseStream event streams -> Anthropic SSE; golden against `testdata/converse/`.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{read, read_json};
use tollgate_protocol::anthropic::{ErrorKind, Usage};
use tollgate_protocol::bedrock::RequestBody;
use tollgate_protocol::bedrock::converse::{
    self, ConverseError, ConverseStream, RequestOptions, StreamError,
};
use tollgate_protocol::eventstream::{DecodeError, Header, Message, encode};

const MODEL: &str = "llama-3-3-70b";
const ID: &str = "msg_bdrk_01";

// === Requests ===

fn translate(
    body: &Value,
    options: &RequestOptions,
) -> Result<(Value, Vec<String>), ConverseError> {
    let bytes = serde_json::to_vec(body).unwrap();
    let parsed = RequestBody::parse(&bytes).unwrap();
    let t = converse::request_with(&parsed, options)?;
    Ok((serde_json::from_slice(&t.body).unwrap(), t.dropped))
}

fn translate_ok(body: Value) -> Value {
    translate(&body, &RequestOptions::default()).unwrap().0
}

fn check_request_golden(expected_file: &str) {
    let raw = read("converse/request-full.anthropic.json");
    let parsed = RequestBody::parse(&raw).unwrap();
    let expected = read_json(expected_file);
    let options = RequestOptions {
        cache_points: expected["options"]["cache_points"].as_bool().unwrap(),
        thinking: expected["options"]["thinking"].as_bool().unwrap(),
    };
    let t = converse::request_with(&parsed, &options).unwrap();
    let body: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        body,
        expected["body"],
        "{}",
        String::from_utf8_lossy(&t.body)
    );
    let dropped: Vec<String> = serde_json::from_value(expected["dropped"].clone()).unwrap();
    assert_eq!(t.dropped, dropped);
    // Top-level members in a fixed order.
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort_by_key(|k| {
        [
            "messages",
            "system",
            "inferenceConfig",
            "toolConfig",
            "additionalModelRequestFields",
        ]
        .iter()
        .position(|o| o == k)
    });
    assert_eq!(keys, sorted);
}

#[test]
fn full_request_with_cache_points_and_thinking_matches_golden() {
    check_request_golden("converse/request-full.converse-caching.json");
}

#[test]
fn full_request_with_default_options_matches_golden() {
    check_request_golden("converse/request-full.converse-default.json");
    // `request` is `request_with` the default options.
    let raw = read("converse/request-full.anthropic.json");
    let parsed = RequestBody::parse(&raw).unwrap();
    assert_eq!(
        converse::request(&parsed).unwrap(),
        converse::request_with(&parsed, &RequestOptions::default()).unwrap()
    );
}

#[test]
fn nested_json_is_copied_byte_for_byte() {
    // Tool input and schema keep their spelling (number formats, key order, escapes).
    let raw = br#"{"model":"m","max_tokens":5,"tools":[{"name":"t","input_schema":{"type":"object","z":1.50,"a":"\u00e9"}}],
        "messages":[{"role":"assistant","content":[{"type":"tool_use","id":"i","name":"t","input":{"b":1e3,"a":[]}}]}]}"#;
    let parsed = RequestBody::parse(raw).unwrap();
    let body = String::from_utf8(converse::request(&parsed).unwrap().body).unwrap();
    assert_eq!(
        body,
        r#"{"messages":[{"role":"assistant","content":[{"toolUse":{"toolUseId":"i","name":"t","input":{"b":1e3,"a":[]}}}]}],"inferenceConfig":{"maxTokens":5},"toolConfig":{"tools":[{"toolSpec":{"name":"t","inputSchema":{"json":{"type":"object","z":1.50,"a":"\u00e9"}}}}]}}"#
    );
}

#[test]
fn tool_choice_variants() {
    let tools = json!([{"name": "t", "input_schema": {"type": "object"}}]);
    let spec = json!([{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object"}}}}]);
    let user = json!([{"role": "user", "content": "hi"}]);
    for (choice, expected) in [
        (json!({"type": "auto"}), json!({"auto": {}})),
        (json!({"type": "any"}), json!({"any": {}})),
        (
            json!({"type": "tool", "name": "t"}),
            json!({"tool": {"name": "t"}}),
        ),
    ] {
        let body = translate_ok(
            json!({"model": "m", "tools": tools, "tool_choice": choice, "messages": user}),
        );
        assert_eq!(
            body["toolConfig"],
            json!({"tools": spec, "toolChoice": expected})
        );
    }
    // No tool_choice: tools without toolChoice.
    let body = translate_ok(json!({"model": "m", "tools": tools, "messages": user}));
    assert_eq!(body["toolConfig"], json!({"tools": spec}));

    // `none` without tool blocks in the conversation: no toolConfig at all.
    let body = translate_ok(
        json!({"model": "m", "tools": tools, "tool_choice": {"type": "none"}, "messages": user}),
    );
    assert_eq!(
        body,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    );

    // `none` with tool blocks: Converse needs the toolConfig, kept without toolChoice.
    let history = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "t", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "ok"}]}
    ]);
    let body = translate_ok(
        json!({"model": "m", "tools": tools, "tool_choice": {"type": "none"}, "messages": history}),
    );
    assert_eq!(body["toolConfig"], json!({"tools": spec}));
}

#[test]
fn tool_blocks_without_tools_get_placeholder_specs() {
    let body = translate_ok(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "a", "name": "read", "input": {}},
            {"type": "tool_use", "id": "b", "name": "wr\"ite", "input": {}},
            {"type": "tool_use", "id": "c", "name": "read", "input": {}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "a"},
            {"type": "tool_result", "tool_use_id": "b", "content": []},
            {"type": "tool_result", "tool_use_id": "c", "content": ""}
        ]}
    ]}));
    let placeholder = |name: &str| json!({"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object", "properties": {}}}}});
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [placeholder("read"), placeholder("wr\"ite")]})
    );
    assert_eq!(
        body["messages"][2]["content"],
        json!([
            {"toolResult": {"toolUseId": "a", "content": []}},
            {"toolResult": {"toolUseId": "b", "content": []}},
            {"toolResult": {"toolUseId": "c", "content": []}}
        ])
    );
}

#[test]
fn turns_are_merged_and_empty_turns_left_out() {
    let body = translate_ok(json!({"model": "m", "system": "", "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
        {"role": "assistant", "content": [{"type": "text", "text": ""}]},
        {"role": "assistant", "content": "e"}
    ]}));
    assert_eq!(
        body,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "a"}, {"text": "b"}, {"text": "c"}]},
                {"role": "assistant", "content": [{"text": "d"}, {"text": "e"}]}
            ],
            "system": [{"text": "sys"}]
        })
    );
}

#[test]
fn document_names_are_unique() {
    let doc = |title: Option<&str>| {
        let mut d = json!({"type": "document", "source": {"type": "base64", "media_type": "text/csv", "data": "YSxi"}});
        if let Some(t) = title {
            d["title"] = json!(t);
        }
        d
    };
    let body = translate_ok(
        json!({"model": "m", "messages": [{"role": "user", "content": [
            doc(Some("data.csv")), doc(Some("data csv")), doc(Some("data.csv")), doc(Some("***")), doc(None),
            doc(Some("document-5"))
        ]}]}),
    );
    let names: Vec<&str> = body["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["document"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "data-csv",
            "data csv",
            "data-csv (2)",
            "---",
            "document-5",
            "document-5 (2)"
        ]
    );
    assert_eq!(
        body["messages"][0]["content"][0]["document"]["format"],
        "csv"
    );
}

#[test]
fn requests_converse_cannot_carry_are_refused() {
    let cases = [
        (
            json!({"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="}}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"role": "user", "content": [{"type": "document", "source": {"type": "content", "content": []}}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "search_result"}]}]}),
            "messages[0].content[0].content[0]",
        ),
    ];
    for (message, path) in cases {
        let err = translate(
            &json!({"model": "m", "messages": [message]}),
            &RequestOptions::default(),
        )
        .unwrap_err();
        match &err {
            ConverseError::Unsupported { path: p, .. } => assert_eq!(p, path, "{err}"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
        assert_eq!(err.to_api_error().kind, ErrorKind::InvalidRequest);
    }

    let err = translate(
        &json!({"model": "m", "tools": [{"type": "web_search_20250305", "name": "web_search"}], "messages": []}),
        &RequestOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ConverseError::Unsupported {
            path: "tools[0]".into(),
            what: "the `web_search_20250305` tool".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "tools[0]: the `web_search_20250305` tool is not supported by Bedrock Converse models"
    );
}

#[test]
fn malformed_requests_are_invalid() {
    let cases = [
        (json!({"model": "m"}), "messages"),
        (json!({"model": "m", "messages": {}}), "messages"),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": "yes"}]}]}),
            "messages[0].content[0].is_error",
        ),
        (
            json!({"model": "m", "max_tokens": -1, "messages": []}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "temperature": "hot", "messages": []}),
            "temperature",
        ),
        (
            json!({"model": "m", "stop_sequences": [1], "messages": []}),
            "stop_sequences",
        ),
        (
            json!({"model": "m", "system": [{"type": "image"}], "messages": []}),
            "system[0]",
        ),
        (
            json!({"model": "m", "tool_choice": {"type": "tool"}, "messages": []}),
            "tool_choice.name",
        ),
        (
            json!({"model": "m", "tools": [{"name": "t"}], "messages": []}),
            "tools[0].input_schema",
        ),
    ];
    for (body, path) in cases {
        match translate(&body, &RequestOptions::default()) {
            Err(ConverseError::InvalidRequest { path: p, .. }) => assert_eq!(p, path, "{body}"),
            other => panic!("{body}: expected InvalidRequest, got {other:?}"),
        }
    }
}

#[test]
fn null_members_count_as_absent() {
    let body = translate_ok(
        json!({"model": "m", "temperature": null, "metadata": null, "system": null,
        "tools": null, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(
        body,
        json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})
    );
}

// === Responses ===

fn check_response(name: &str) {
    let reply = read(&format!("converse/{name}.converse.json"));
    let out = converse::message(&reply, MODEL, ID).unwrap();
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(got, read_json(&format!("converse/{name}.anthropic.json")));
    // Member order of an Anthropic Message.
    let keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "type",
            "role",
            "model",
            "content",
            "stop_reason",
            "stop_sequence",
            "usage"
        ]
    );
}

#[test]
fn text_reply_matches_golden() {
    check_response("response-text");
}

#[test]
fn published_tool_use_reply_matches_golden() {
    check_response("response-tool-use");
}

#[test]
fn reasoning_reply_with_cache_usage_matches_golden() {
    check_response("response-reasoning");
    let out = converse::message(
        &read("converse/response-reasoning.converse.json"),
        MODEL,
        ID,
    )
    .unwrap();
    assert_eq!(
        tollgate_protocol::anthropic::usage_from_message(&out),
        Some(Usage {
            input_tokens: 12,
            output_tokens: 85,
            cache_read_input_tokens: 1024,
            cache_creation_input_tokens: 1024,
            cache_creation_1h_input_tokens: 0,
        })
    );
}

#[test]
fn reply_stop_reasons_and_sequence() {
    let reply = |reason: &str, extra: Value| {
        let mut r = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": reason, "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}});
        if !extra.is_null() {
            r["additionalModelResponseFields"] = extra;
        }
        let out = converse::message(&serde_json::to_vec(&r).unwrap(), MODEL, ID).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        (v["stop_reason"].clone(), v["stop_sequence"].clone())
    };
    assert_eq!(
        reply("guardrail_intervened", Value::Null),
        (json!("refusal"), Value::Null)
    );
    assert_eq!(
        reply("content_filtered", Value::Null),
        (json!("refusal"), Value::Null)
    );
    assert_eq!(
        reply("malformed_tool_use", Value::Null),
        (json!("end_turn"), Value::Null)
    );
    assert_eq!(
        reply("model_context_window_exceeded", Value::Null),
        (json!("model_context_window_exceeded"), Value::Null)
    );
    assert_eq!(
        reply("stop_sequence", Value::Null),
        (json!("stop_sequence"), Value::Null)
    );
    assert_eq!(
        reply("stop_sequence", json!({"stop_sequence": "\n\nHuman:"})),
        (json!("stop_sequence"), json!("\n\nHuman:"))
    );
}

#[test]
fn invalid_replies_are_errors() {
    for body in [
        &b""[..],
        b"not json",
        b"[]",
        br#"{"stopReason":"end_turn"}"#,
        br#"{"output":{}}"#,
        br#"{"output":{"message":{"content":[5]}}}"#,
        br#"{"output":{"message":{"content":[{"text":5}]}}}"#,
        br#"{"output":{"message":{"content":[{"toolUse":{"name":"x"}}]}}}"#,
        br#"{"output":{"message":{"content":[{"reasoningContent":{"reasoningText":{"text":1}}}]}}}"#,
    ] {
        let err = converse::message(body, MODEL, ID).unwrap_err();
        assert!(matches!(err, ConverseError::InvalidResponse(_)), "{err:?}");
        assert_eq!(err.to_api_error().kind, ErrorKind::Api);
    }
}

// === Streams ===

fn frame(kind: &str, name: &str, payload: &[u8]) -> Message {
    let headers = match kind {
        "event" => vec![
            Header::string(":event-type", name),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        "exception" => vec![
            Header::string(":exception-type", name),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "exception"),
        ],
        other => panic!("frame kind {other}"),
    };
    Message::new(headers, payload.to_vec())
}

fn event(name: &str, payload: Value) -> Vec<u8> {
    encode(&frame(
        "event",
        name,
        &serde_json::to_vec(&payload).unwrap(),
    ))
    .unwrap()
    .to_vec()
}

/// The encoded frames of `testdata/converse/<name>.frames.json`, one `Vec` per frame.
fn frames(name: &str) -> Vec<Vec<u8>> {
    read_json(&format!("converse/{name}.frames.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let payload = serde_json::to_vec(&f["payload"]).unwrap();
            let msg = frame(
                f["type"].as_str().unwrap(),
                f["name"].as_str().unwrap(),
                &payload,
            );
            encode(&msg).unwrap().to_vec()
        })
        .collect()
}

/// Feeds `bytes` in chunks of the given sizes; returns all output and the first error (from
/// `push`, or from `finish` when every push succeeded).
fn run(
    bytes: &[u8],
    sizes: impl IntoIterator<Item = usize>,
) -> (Vec<u8>, Option<StreamError>, ConverseStream) {
    let mut s = ConverseStream::new(MODEL, ID);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.into_iter();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        match s.push(head) {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e), s),
        }
    }
    match s.finish() {
        Ok(b) => {
            out.extend_from_slice(&b);
            (out, None, s)
        }
        Err(e) => (out, Some(e), s),
    }
}

fn run_whole(bytes: &[u8]) -> (Vec<u8>, Option<StreamError>, ConverseStream) {
    run(bytes, [bytes.len()])
}

fn check_stream(name: &str) -> ConverseStream {
    let bytes = frames(name).concat();
    let (out, err, s) = run_whole(&bytes);
    assert_eq!(err, None);
    let expected = read(&format!("converse/{name}.sse"));
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        String::from_utf8(expected).unwrap(),
        "{name}"
    );
    assert!(s.ended());
    // Every event's data parses and carries its own name as `type`.
    for (event, data) in support::parse_sse(&out) {
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(Some(v["type"].as_str().unwrap()), event.as_deref());
    }
    s
}

#[test]
fn text_stream_matches_golden() {
    let s = check_stream("stream-text");
    assert_eq!(
        s.usage(),
        Some(Usage {
            input_tokens: 47,
            output_tokens: 20,
            ..Usage::default()
        })
    );
    assert!(s.terminal_error().is_none());
}

#[test]
fn tool_use_stream_matches_golden() {
    let s = check_stream("stream-tool-use");
    assert_eq!(
        s.usage().map(|u| (u.input_tokens, u.output_tokens)),
        Some((365, 52))
    );
}

#[test]
fn reasoning_stream_matches_golden() {
    let s = check_stream("stream-reasoning");
    assert_eq!(
        s.usage(),
        Some(Usage {
            input_tokens: 10,
            output_tokens: 30,
            cache_read_input_tokens: 2048,
            cache_creation_input_tokens: 12,
            cache_creation_1h_input_tokens: 0,
        })
    );
}

#[test]
fn exception_mid_stream_ends_it_with_a_mapped_error() {
    let s = check_stream("stream-throttled");
    assert_eq!(s.usage(), None);
    let err = s.terminal_error().unwrap();
    assert_eq!(err.kind, ErrorKind::RateLimit);
    assert_eq!(err.status, 429);
}

#[test]
fn any_split_gives_the_same_output() {
    for name in [
        "stream-text",
        "stream-tool-use",
        "stream-reasoning",
        "stream-throttled",
    ] {
        let bytes = frames(name).concat();
        let (whole, err, _) = run_whole(&bytes);
        assert_eq!(err, None);
        let (bytewise, err, _) = run(&bytes, std::iter::repeat(1));
        assert_eq!(err, None);
        assert_eq!(bytewise, whole, "{name} bytewise");
        for seed in 0..25u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let sizes: Vec<usize> = (0..bytes.len()).map(|_| rng.random_range(1..=64)).collect();
            let (split, err, _) = run(&bytes, sizes);
            assert_eq!(err, None);
            assert_eq!(split, whole, "{name} seed {seed}");
        }
        // Every two-piece split.
        for cut in 1..bytes.len() {
            let (split, err, _) = run(&bytes, [cut]);
            assert_eq!(err, None);
            assert_eq!(split, whole, "{name} cut at {cut}");
        }
    }
}

#[test]
fn truncated_streams_are_errors() {
    let frames = frames("stream-text");
    let bytes = frames.concat();
    let boundaries: Vec<usize> = frames
        .iter()
        .scan(0, |acc, f| {
            *acc += f.len();
            Some(*acc)
        })
        .collect();
    let stop_end = boundaries[5]; // end of the messageStop frame
    let (whole, _, _) = run_whole(&bytes);
    for cut in 0..bytes.len() {
        let (out, err, s) = run_whole(&bytes[..cut]);
        if boundaries.contains(&cut) || cut == 0 {
            if cut >= stop_end {
                // messageStop seen, metadata missing: the answer is closed without usage.
                assert_eq!(err, None, "cut {cut}");
                assert!(s.ended());
                assert_eq!(s.usage(), None);
            } else {
                assert_eq!(err, Some(StreamError::Truncated), "cut {cut}");
            }
        } else {
            assert!(
                matches!(
                    err,
                    Some(StreamError::Decode(DecodeError::Truncated { .. }))
                ),
                "cut {cut}: {err:?}"
            );
            // What was relayed is a prefix of the complete output.
            assert!(whole.starts_with(&out), "cut {cut}");
        }
    }
}

#[test]
fn stream_without_metadata_is_closed_by_finish() {
    let frames = frames("stream-text");
    let bytes = frames[..6].concat();
    let (out, err, s) = run_whole(&bytes);
    assert_eq!(err, None);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with(
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    ), "{text}");
    assert!(s.ended());
    assert_eq!(s.usage(), None);
}

#[test]
fn every_corrupted_byte_is_an_error_not_a_panic() {
    let bytes = frames("stream-tool-use").concat();
    let (whole, _, _) = run_whole(&bytes);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x20;
        let (out, err, _) = run_whole(&bad);
        assert!(
            matches!(err, Some(StreamError::Decode(_))),
            "byte {i}: {err:?}"
        );
        assert!(whole.starts_with(&out), "byte {i}");
    }
}

#[test]
fn error_after_good_frames_in_one_chunk_comes_on_the_next_call() {
    let frames = frames("stream-text");
    let mut corrupt = frames[2].clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1; // message CRC
    let chunk = [frames[0].clone(), frames[1].clone(), corrupt].concat();
    let mut s = ConverseStream::new(MODEL, ID);
    let out = s.push(&chunk).unwrap();
    let expected_prefix: String = String::from_utf8(read("converse/stream-text.sse"))
        .unwrap()
        .split_inclusive("\n\n")
        .take(3)
        .collect();
    assert_eq!(String::from_utf8(out.to_vec()).unwrap(), expected_prefix);
    let err = s.push(&frames[3]).unwrap_err();
    assert!(
        matches!(err, StreamError::Decode(DecodeError::MessageCrc { .. })),
        "{err:?}"
    );
    assert_eq!(s.finish().unwrap_err(), err);
    assert_eq!(err.to_api_error().kind, ErrorKind::Api);
}

fn error_frame(kind: &str, message: &str) -> String {
    format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"{message}\"}}}}\n\n"
    )
}

#[test]
fn exceptions_map_to_anthropic_errors() {
    for (name, payload, kind, message) in [
        (
            "modelStreamErrorException",
            r#"{"message":"Model failed","originalStatusCode":500,"originalMessage":"x"}"#,
            "api_error",
            "Model failed",
        ),
        (
            "validationException",
            r#"{"message":"Input is too long"}"#,
            "invalid_request_error",
            "Input is too long",
        ),
        (
            "serviceUnavailableException",
            r#"{"Message":"Unavailable"}"#,
            "overloaded_error",
            "Unavailable",
        ),
        (
            "internalServerException",
            r#"{}"#,
            "api_error",
            "internalServerException",
        ),
        (
            "somethingNewException",
            r#"{"message":"new"}"#,
            "api_error",
            "new",
        ),
    ] {
        let bytes = encode(&frame("exception", name, payload.as_bytes())).unwrap();
        let mut s = ConverseStream::new(MODEL, ID);
        let out = s.push(&bytes).unwrap();
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            error_frame(kind, message),
            "{name}"
        );
        assert!(s.ended());
        assert_eq!(s.terminal_error().unwrap().kind.as_str(), kind);
        // Later input is ignored; finishing is fine.
        assert!(
            s.push(&event("messageStart", json!({"role": "assistant"})))
                .unwrap()
                .is_empty()
        );
        assert!(s.finish().unwrap().is_empty());
    }

    // Unmodeled errors: `:message-type: error` with code and message headers.
    let msg = Message::new(
        vec![
            Header::string(":message-type", "error"),
            Header::string(":error-code", "ThrottlingException"),
            Header::string(":error-message", "Slow down"),
        ],
        Vec::new(),
    );
    let mut s = ConverseStream::new(MODEL, ID);
    let out = s.push(&encode(&msg).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(out.to_vec()).unwrap(),
        error_frame("rate_limit_error", "Slow down")
    );
}

#[test]
fn protocol_violations_are_errors() {
    let missing_type = Message::new(
        vec![Header::string(":event-type", "messageStart")],
        b"{}".to_vec(),
    );
    let missing_event = Message::new(
        vec![Header::string(":message-type", "event")],
        b"{}".to_vec(),
    );
    let unknown = Message::new(
        vec![Header::string(":message-type", "surprise")],
        b"{}".to_vec(),
    );
    let cases: Vec<(Vec<u8>, StreamError)> = vec![
        (
            encode(&missing_type).unwrap().to_vec(),
            StreamError::MissingHeader(":message-type"),
        ),
        (
            encode(&missing_event).unwrap().to_vec(),
            StreamError::MissingHeader(":event-type"),
        ),
        (
            encode(&unknown).unwrap().to_vec(),
            StreamError::UnknownMessageType("surprise".into()),
        ),
        (
            encode(&frame("event", "contentBlockDelta", b"not json"))
                .unwrap()
                .to_vec(),
            StreamError::InvalidEvent {
                event: "contentBlockDelta".into(),
                reason: "<serde error>".into(),
            },
        ),
        (
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}}),
            ),
            StreamError::InvalidEvent {
                event: "contentBlockDelta".into(),
                reason: "toolUse delta for block 0, which did not start as toolUse".into(),
            },
        ),
        (
            event("contentBlockDelta", json!({"delta": {"text": "x"}})),
            StreamError::InvalidEvent {
                event: "contentBlockDelta".into(),
                reason: "no contentBlockIndex".into(),
            },
        ),
        (
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "!!"}}}),
            ),
            StreamError::InvalidEvent {
                event: "contentBlockDelta".into(),
                reason: "redactedContent is not base64: <base64 error>".into(),
            },
        ),
    ];
    for (bytes, expected) in cases {
        let mut s = ConverseStream::new(MODEL, ID);
        let err = s.push(&bytes).unwrap_err();
        match (&err, &expected) {
            // The wording of serde's and base64's messages is theirs: compare up to it.
            (
                StreamError::InvalidEvent { event, reason },
                StreamError::InvalidEvent {
                    event: e,
                    reason: r,
                },
            ) if r.contains('<') => {
                assert_eq!(event, e);
                let prefix = &r[..r.find('<').unwrap()];
                assert!(
                    reason.starts_with(prefix) && reason.len() > prefix.len(),
                    "{reason}"
                );
            }
            _ => assert_eq!(err, expected),
        }
        assert!(s.push(&bytes).is_err());
        // Poisoned: the same error again.
        assert_eq!(s.push(b"").unwrap_err(), err);
        assert_eq!(s.finish().unwrap_err(), err);
    }
}

#[test]
fn interleaved_or_unannounced_blocks_stay_well_nested() {
    // No messageStart, a text block never stopped before the next one, a stop for a block that
    // is not open, a signature without reasoning text, metadata before messageStop.
    let bytes = [
        event("contentBlockDelta", json!({"contentBlockIndex": 3, "delta": {"text": "a"}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 7, "delta": {"text": "b"}})),
        event("contentBlockStop", json!({"contentBlockIndex": 3})),
        event("contentBlockDelta", json!({"contentBlockIndex": 7, "delta": {"reasoningContent": {"signature": "sig"}}})),
        event("metadata", json!({"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}})),
        event("someFutureEvent", json!({"x": 1})),
        event("messageStop", json!({"stopReason": "stop_sequence", "additionalModelResponseFields": {"stop_sequence": "END"}})),
    ]
    .concat();
    let (out, err, s) = run_whole(&bytes);
    assert_eq!(err, None);
    let events: Vec<(String, Value)> = support::parse_sse(&out)
        .into_iter()
        .map(|(e, d)| (e.unwrap(), serde_json::from_str(&d).unwrap()))
        .collect();
    let expected = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": ID, "type": "message", "role": "assistant", "model": MODEL, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "b"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "signature_delta", "signature": "sig"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"}, "usage": {"input_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 2}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let expected: Vec<(String, Value)> = expected
        .into_iter()
        .map(|(e, v)| (e.to_owned(), v))
        .collect();
    assert_eq!(events, expected);
    assert!(s.ended());
    assert_eq!(s.usage().map(|u| u.output_tokens), Some(2));
}

#[test]
fn random_payloads_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let names = [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ];
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"contentBlockIndex\"",
        "\"delta\"",
        "\"start\"",
        "\"toolUse\"",
        "\"text\"",
        "\"reasoningContent\"",
        "\"redactedContent\"",
        "\"signature\"",
        "\"input\"",
        "\"usage\"",
        "\"inputTokens\"",
        "0",
        "1",
        "-1",
        "\"x\"",
        "null",
        "true",
        "1e400",
        "\"QUJD\"",
    ];
    for _ in 0..3000 {
        let mut bytes = Vec::new();
        for _ in 0..rng.random_range(1..6) {
            let payload: String = (0..rng.random_range(0..14))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let name = names[rng.random_range(0..names.len())];
            bytes.extend_from_slice(&encode(&frame("event", name, payload.as_bytes())).unwrap());
        }
        let _ = run_whole(&bytes);
        let _ = converse::message(&bytes, MODEL, ID);
    }
}

//! `StreamTranslator`: Bedrock event-stream messages -> Anthropic SSE, golden against the
//! recorded vectors.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};
use support::{decode_whole, parse_sse, read, read_json};
use tollgate_protocol::anthropic::{ErrorKind, Usage};
use tollgate_protocol::bedrock::{StreamError, StreamTranslator};
use tollgate_protocol::eventstream::{Header, Message};

fn messages(name: &str) -> Vec<Message> {
    let decoded = decode_whole(&read(&format!("eventstream/{name}")));
    assert_eq!(decoded.error, None);
    decoded.messages
}

fn translate_all(t: &mut StreamTranslator, msgs: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.extend_from_slice(&t.on_message(m).unwrap());
    }
    out
}

/// The decoded JSON bytes a chunk carries.
fn chunk_bytes(msg: &Message) -> Vec<u8> {
    let payload: Value = serde_json::from_slice(&msg.payload).unwrap();
    BASE64.decode(payload["bytes"].as_str().unwrap()).unwrap()
}

fn chunk(event_json: &[u8]) -> Message {
    let payload = format!(
        r#"{{"bytes":"{}","p":"abcdefgh"}}"#,
        BASE64.encode(event_json)
    );
    Message::new(
        vec![
            Header::string(":event-type", "chunk"),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        payload.into_bytes(),
    )
}

fn exception(name: &str, payload: &str) -> Message {
    Message::new(
        vec![
            Header::string(":exception-type", name),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "exception"),
        ],
        payload.as_bytes().to_vec(),
    )
}

fn error_frame(kind: &str, message: &str) -> String {
    format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"{message}\"}}}}\n\n"
    )
}

#[test]
fn thinking_tool_stream_translates_to_the_golden_sse_sequence() {
    let msgs = messages("invoke-stream-thinking-tool.bin");
    let mut t = StreamTranslator::new();
    let mut out = Vec::new();
    for m in &msgs {
        let sse = t.on_message(m).unwrap();
        // One complete frame per chunk.
        assert!(sse.starts_with(b"event: ") && sse.ends_with(b"\n\n"));
        out.extend_from_slice(&sse);
    }

    let mut expected = read_json("eventstream/invoke-stream-thinking-tool.events.json");
    let expected = expected.as_array_mut().unwrap();
    let metrics = expected.last_mut().unwrap().as_object_mut().unwrap();
    assert!(metrics.remove("amazon-bedrock-invocationMetrics").is_some());

    let events = parse_sse(&out);
    assert_eq!(events.len(), expected.len());
    for (i, ((name, data), want)) in events.iter().zip(expected.iter()).enumerate() {
        assert_eq!(name.as_deref(), want["type"].as_str(), "event {i} name");
        let got: Value = serde_json::from_str(data).unwrap();
        assert_eq!(&got, want, "event {i} data");
        if i + 1 < msgs.len() {
            // Forwarded verbatim, not re-serialized.
            assert_eq!(
                data.as_bytes(),
                &chunk_bytes(&msgs[i])[..],
                "event {i} bytes"
            );
        }
    }
    // The metrics member is stripped; what is left is exactly message_stop.
    assert!(out.ends_with(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    assert!(!String::from_utf8_lossy(&out).contains("invocationMetrics"));

    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: 25,
            output_tokens: 42,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_creation_1h_input_tokens: 0
        })
    );
    assert!(t.saw_stop());
    assert!(t.is_done());
    assert_eq!(t.terminal_error(), None);
    assert_eq!(t.finish(), Ok(()));
}

#[test]
fn midstream_throttling_ends_with_a_rate_limit_error_event() {
    let msgs = messages("invoke-stream-midstream-throttling.bin");
    let expected = read_json("eventstream/invoke-stream-midstream-throttling.expected.json");
    let mut t = StreamTranslator::new();
    let out = translate_all(&mut t, &msgs);
    let text = String::from_utf8(out.clone()).unwrap();
    let want_tail = error_frame("rate_limit_error", expected["message"].as_str().unwrap());
    assert!(text.ends_with(&want_tail), "got:\n{text}");

    let events = parse_sse(&out);
    let before = expected["events_before_exception"].as_array().unwrap();
    assert_eq!(events.len(), before.len() + 1);
    for ((name, data), want) in events.iter().zip(before) {
        assert_eq!(name.as_deref(), want["type"].as_str());
        assert_eq!(&serde_json::from_str::<Value>(data).unwrap(), want);
    }

    let err = t.terminal_error().unwrap();
    assert_eq!(err.kind, ErrorKind::RateLimit);
    assert_eq!(err.status, 429);
    assert_eq!(
        err.message,
        "Too many requests, please wait before trying again."
    );
    assert!(!t.saw_stop());
    assert!(t.is_done());
    assert_eq!(
        t.finish(),
        Ok(()),
        "an exception is a proper end, not truncation"
    );
    // Usage known so far comes from message_start.
    assert_eq!(
        t.usage().map(|u| (u.input_tokens, u.output_tokens)),
        Some((25, 1))
    );
}

#[test]
fn stream_that_stops_early_fails_finish() {
    let msgs = messages("invoke-stream-thinking-tool.bin");
    for cut in 0..msgs.len() {
        let mut t = StreamTranslator::new();
        translate_all(&mut t, &msgs[..cut]);
        assert_eq!(
            t.finish(),
            Err(StreamError::Truncated),
            "cut after {cut} messages"
        );
        assert!(!t.is_done());
    }
    let err = StreamError::Truncated.to_api_error();
    assert_eq!(err.kind, ErrorKind::Api);
    assert_eq!(err.status, 500);
    assert_eq!(err.message, "Bedrock stream ended before message_stop");
}

#[test]
fn exceptions_map_by_type() {
    let table = [
        ("throttlingException", ErrorKind::RateLimit, 429),
        ("serviceUnavailableException", ErrorKind::Overloaded, 529),
        ("modelTimeoutException", ErrorKind::Timeout, 504),
        ("validationException", ErrorKind::InvalidRequest, 400),
        ("internalServerException", ErrorKind::Api, 500),
        ("modelStreamErrorException", ErrorKind::Api, 500),
        ("somethingNewException", ErrorKind::Api, 500),
    ];
    for (name, kind, status) in table {
        let mut t = StreamTranslator::new();
        let out = t
            .on_message(&exception(name, r#"{"message":"boom \"x\""}"#))
            .unwrap();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(text, error_frame(kind.as_str(), r#"boom \"x\""#), "{name}");
        let err = t.terminal_error().unwrap();
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (kind, status, "boom \"x\"")
        );
    }
}

#[test]
fn model_stream_error_payload_with_extra_fields() {
    let mut t = StreamTranslator::new();
    let msg = exception(
        "modelStreamErrorException",
        r#"{"message":"Model failed","originalStatusCode":529,"originalMessage":"Overloaded"}"#,
    );
    let out = t.on_message(&msg).unwrap();
    assert_eq!(
        &out[..],
        error_frame("api_error", "Model failed").as_bytes()
    );
}

#[test]
fn exception_without_message_uses_its_type() {
    let mut t = StreamTranslator::new();
    let out = t
        .on_message(&exception("throttlingException", "not json"))
        .unwrap();
    assert_eq!(
        &out[..],
        error_frame("rate_limit_error", "throttlingException").as_bytes()
    );
}

#[test]
fn error_message_type_uses_error_headers() {
    let msg = Message::new(
        vec![
            Header::string(":message-type", "error"),
            Header::string(":error-code", "ThrottlingException"),
            Header::string(":error-message", "Rate exceeded"),
        ],
        Bytes::new(),
    );
    let mut t = StreamTranslator::new();
    let out = t.on_message(&msg).unwrap();
    assert_eq!(
        &out[..],
        error_frame("rate_limit_error", "Rate exceeded").as_bytes()
    );
    assert_eq!(t.finish(), Ok(()));

    let msg = Message::new(
        vec![
            Header::string(":message-type", "error"),
            Header::string(":error-code", "Weird"),
        ],
        Bytes::new(),
    );
    let mut t = StreamTranslator::new();
    let out = t.on_message(&msg).unwrap();
    assert_eq!(&out[..], error_frame("api_error", "Weird").as_bytes());
}

#[test]
fn nothing_is_emitted_after_a_terminal_error() {
    let mut t = StreamTranslator::new();
    assert!(
        !t.on_message(&exception("throttlingException", "{}"))
            .unwrap()
            .is_empty()
    );
    let stop = chunk(br#"{"type":"message_stop"}"#);
    assert!(t.on_message(&stop).unwrap().is_empty());
    assert!(
        t.on_message(&exception("validationException", "{}"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.terminal_error().unwrap().kind, ErrorKind::RateLimit);
    assert!(!t.saw_stop());
}

#[test]
fn anthropic_error_event_inside_a_chunk_is_forwarded_and_terminal() {
    let event = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let mut t = StreamTranslator::new();
    let out = t.on_message(&chunk(event)).unwrap();
    assert_eq!(
        &out[..],
        [&b"event: error\ndata: "[..], event, b"\n\n"].concat()
    );
    let err = t.terminal_error().unwrap();
    assert_eq!((err.kind, err.status), (ErrorKind::Overloaded, 529));
    assert_eq!(t.finish(), Ok(()));
}

#[test]
fn payload_padding_unknown_keys_and_escaped_base64_are_accepted() {
    let event = br#"{"type":"ping"}"#;
    let b64 = BASE64.encode(event).replace('/', "\\/");
    let payload = format!(r#"{{"p":"xyz","bytes":"{b64}","future":[1,2]}}"#);
    let mut msg = chunk(b"{}");
    msg.payload = Bytes::from(payload);
    let mut t = StreamTranslator::new();
    assert_eq!(
        &t.on_message(&msg).unwrap()[..],
        b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );

    // A base64 string that really contains '/', escaped as JSON allows.
    let event = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"???>>>"}}"#;
    let b64 = BASE64.encode(event);
    assert!(b64.contains('/'));
    let mut msg = chunk(b"{}");
    msg.payload = Bytes::from(format!(r#"{{"bytes":"{}"}}"#, b64.replace('/', "\\/")));
    let out = t.on_message(&msg).unwrap();
    assert_eq!(
        &out[..],
        [&b"event: content_block_delta\ndata: "[..], event, b"\n\n"].concat()
    );
}

#[test]
fn unknown_event_types_are_ignored() {
    let mut msg = chunk(br#"{"type":"message_stop"}"#);
    msg.headers[0] = Header::string(":event-type", "somethingNew");
    let mut t = StreamTranslator::new();
    assert!(t.on_message(&msg).unwrap().is_empty());
    assert!(!t.saw_stop());
}

#[test]
fn malformed_messages_are_errors() {
    let mut t = StreamTranslator::new();
    let no_type = Message::new(vec![Header::string(":event-type", "chunk")], Bytes::new());
    assert_eq!(
        t.on_message(&no_type),
        Err(StreamError::MissingHeader(":message-type"))
    );
    let no_event = Message::new(vec![Header::string(":message-type", "event")], Bytes::new());
    assert_eq!(
        t.on_message(&no_event),
        Err(StreamError::MissingHeader(":event-type"))
    );
    let odd = Message::new(vec![Header::string(":message-type", "weird")], Bytes::new());
    assert_eq!(
        t.on_message(&odd),
        Err(StreamError::UnknownMessageType("weird".into()))
    );

    let invalid_payloads: [&[u8]; 6] = [
        b"not json",
        br#"{"p":"only padding"}"#,
        br#"{"bytes":"***"}"#,
        br#"{"bytes":"WzEsMl0="}"#,             // [1,2]
        br#"{"bytes":"eyJpbmRleCI6MH0="}"#,     // {"index":0}
        br#"{"bytes":"eyJ0eXBlIjoiYVxuYiJ9"}"#, // {"type":"a\nb"}
    ];
    for payload in invalid_payloads {
        let mut msg = chunk(b"{}");
        msg.payload = Bytes::copy_from_slice(payload);
        let err = t.on_message(&msg).unwrap_err();
        assert!(
            matches!(err, StreamError::InvalidChunk(_)),
            "{}: {err:?}",
            String::from_utf8_lossy(payload)
        );
        assert_eq!(err.to_api_error().kind, ErrorKind::Api);
    }
}

#[test]
fn invocation_metrics_are_the_usage_fallback() {
    // message_delta without usage: output tokens come from the metrics, not the provisional 1.
    let events = [
        json!({"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"output_tokens":1}}}),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn"}}),
        json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{
            "inputTokenCount":10,"outputTokenCount":77,"invocationLatency":5,"firstByteLatency":2,
            "cacheReadInputTokenCount":300,"cacheWriteInputTokenCount":40}}),
    ];
    let mut t = StreamTranslator::new();
    for e in &events {
        t.on_message(&chunk(&serde_json::to_vec(e).unwrap()))
            .unwrap();
    }
    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: 10,
            output_tokens: 77,
            cache_read_input_tokens: 300,
            cache_creation_input_tokens: 40,
            cache_creation_1h_input_tokens: 0
        })
    );

    // Anthropic usage wins over the metrics when present (delta is cumulative and final).
    let events = [
        json!({"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}),
        json!({"type":"message_delta","usage":{"output_tokens":20}}),
        json!({"type":"message_delta","usage":{"output_tokens":30,"input_tokens":12}}),
        json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":99,"outputTokenCount":99}}),
    ];
    let mut t = StreamTranslator::new();
    let mut out = Vec::new();
    for e in &events {
        out.extend_from_slice(
            &t.on_message(&chunk(&serde_json::to_vec(e).unwrap()))
                .unwrap(),
        );
    }
    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: 12,
            output_tokens: 30,
            cache_read_input_tokens: 5,
            cache_creation_input_tokens: 0,
            cache_creation_1h_input_tokens: 0
        })
    );
    assert!(out.ends_with(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[test]
fn metrics_are_stripped_but_other_members_keep_their_bytes() {
    let event = br#"{"type": "message_stop",  "amazon-bedrock-invocationMetrics": {"inputTokenCount": 1}, "extra" : { "k" : [1, 2.50] }}"#;
    let mut t = StreamTranslator::new();
    let out = t.on_message(&chunk(event)).unwrap();
    assert_eq!(
        &out[..],
        b"event: message_stop\ndata: {\"type\":\"message_stop\",\"extra\":{ \"k\" : [1, 2.50] }}\n\n"
    );
    assert!(t.saw_stop());
}

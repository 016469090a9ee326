//! `bedrock::ingress`: Bedrock-format requests (Claude Code in Bedrock mode) -> Anthropic, and
//! Anthropic answers -> Bedrock's format. Golden against Claude Code 2.1.331's own Bedrock-mode
//! body (`testdata/claude-code/bedrock-mode-stream-body.json`, captured as sent to
//! `…/model/us.anthropic.claude-opus-5-5/invoke-with-response-stream`) and the AWS-produced
//! event-stream vectors.

mod support;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::{decode_bytewise, decode_whole, read};
use tollgate_protocol::anthropic::{ApiError, ErrorKind};
use tollgate_protocol::bedrock::ingress::{
    BedrockError, IngressError, SseToEventStream, bedrock_exception, chunk_frame,
    count_tokens_answer, count_tokens_request, decode_model_segment, invoke_request,
    is_bedrock_model_id, is_system_profile_id,
};
use tollgate_protocol::bedrock::{
    RequestBody, StreamTranslator, count_tokens_body, invoke_body_for, model_path_segment,
};
use tollgate_protocol::eventstream::Message;

const CLAUDE_CODE_BODY: &str = "claude-code/bedrock-mode-stream-body.json";

fn keys(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

fn raw_members(body: &[u8]) -> BTreeMap<String, &RawValue> {
    serde_json::from_slice(body).unwrap()
}

// === Model id in the path ===

#[test]
fn model_segments_decode_as_claude_code_and_aws_sdks_encode_them() {
    let arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123";
    for (raw, id) in [
        (
            "us.anthropic.claude-opus-5-5",
            "us.anthropic.claude-opus-5-5",
        ),
        (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
        // Claude Code: `:` literal, `/` as %2F (anthropics/claude-code#56595).
        (
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile%2Fabc123",
            arn,
        ),
        // AWS SDKs: `:` as %3A too; lower-case hex is the same.
        (
            "arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2fabc123",
            arn,
        ),
        // The gateway's provider/model form, as Claude Code sends ANTHROPIC_MODEL=bedrock/…
        (
            "bedrock%2Fglobal.anthropic.claude-sonnet-4-6",
            "bedrock/global.anthropic.claude-sonnet-4-6",
        ),
        // A path is not a form: `+` stays.
        ("a+b", "a+b"),
    ] {
        assert_eq!(decode_model_segment(raw).unwrap(), id, "{raw}");
    }
    for id in [arn, "us.anthropic.claude-opus-5-5", "bedrock/x:y@z"] {
        assert_eq!(
            decode_model_segment(&model_path_segment(id)).unwrap(),
            id,
            "the gateway's own encoding round-trips"
        );
    }
}

#[test]
fn malformed_model_segments_are_refused() {
    for raw in ["", "%", "abc%2", "%zz", "%2G", "%FF", "a%C3"] {
        let err = decode_model_segment(raw).unwrap_err();
        assert!(
            matches!(err, IngressError::ModelSegment(_)),
            "{raw}: {err:?}"
        );
        assert!(
            err.to_string().starts_with("model id in the path: "),
            "{err}"
        );
    }
}

#[test]
fn bedrock_id_shapes() {
    for id in [
        "us.anthropic.claude-opus-5-5",
        "global.anthropic.claude-sonnet-4-6",
        "us-gov.anthropic.claude-3-haiku-20240307-v1:0",
    ] {
        assert!(is_system_profile_id(id), "{id}");
        assert!(is_bedrock_model_id(id), "{id}");
    }
    for id in [
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws-us-gov:bedrock:us-gov-west-1:1:inference-profile/us-gov.anthropic.x",
    ] {
        assert!(!is_system_profile_id(id), "{id}");
        assert!(is_bedrock_model_id(id), "{id}");
    }
    for id in [
        "claude-opus-5-5",
        "bedrock/us.anthropic.claude-opus-5-5",
        "xx.anthropic.claude-sonnet-4-6",
        "us.meta.llama3",
    ] {
        assert!(!is_bedrock_model_id(id), "{id}");
    }
}

// === Request bodies ===

#[test]
fn claude_codes_bedrock_body_becomes_the_anthropic_request_byte_for_byte() {
    let body = read(CLAUDE_CODE_BODY);
    let model = "us.anthropic.claude-opus-5-5";
    let req = invoke_request(&body, model, true).unwrap();

    let original = keys(&body);
    assert!(original.contains(&"anthropic_version".to_owned()));
    let mut expected = vec!["model".to_owned()];
    expected.extend(
        original
            .iter()
            .filter(|k| *k != "anthropic_version" && *k != "anthropic_beta")
            .cloned(),
    );
    expected.push("stream".to_owned());
    assert_eq!(keys(&req.body), expected);

    let before = raw_members(&body);
    let after = raw_members(&req.body);
    for (k, v) in &after {
        match k.as_str() {
            "model" => assert_eq!(v.get(), format!("\"{model}\"")),
            "stream" => assert_eq!(v.get(), "true"),
            _ => assert_eq!(v.get(), before[k].get(), "{k} is byte-identical"),
        }
    }
    assert_eq!(
        req.betas,
        [
            "interleaved-thinking-2025-05-14",
            "tool-search-tool-2025-10-19",
            "thinking-token-count-2026-05-13"
        ]
    );

    // Not streaming: no `stream` member at all.
    let unary = invoke_request(&body, model, false).unwrap();
    assert!(!keys(&unary.body).contains(&"stream".to_owned()));
}

/// What the gateway sends Bedrock after the round trip is what Claude Code sent, apart from the
/// betas Bedrock does not take for the model's family.
#[test]
fn the_round_trip_back_to_bedrock_restores_claude_codes_body() {
    let body = read(CLAUDE_CODE_BODY);
    let model = "us.anthropic.claude-sonnet-4-6";
    let req = invoke_request(&body, model, true).unwrap();
    let parsed = RequestBody::parse(&req.body).unwrap();
    assert_eq!(parsed.model, model);
    assert!(parsed.stream);
    let betas: Vec<&str> = req.betas.iter().map(String::as_str).collect();
    let back = invoke_body_for(&parsed, &betas, model).unwrap();
    assert!(back.stream);
    let before = raw_members(&body);
    let after = raw_members(&back.body);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        if k != "anthropic_beta" {
            assert_eq!(v.get(), after[k].get(), "{k}");
        }
    }
    let sent: Vec<String> = serde_json::from_str(after["anthropic_beta"].get()).unwrap();
    for beta in &sent {
        assert!(req.betas.contains(beta), "{beta} came from the client");
    }
    assert!(sent.contains(&"interleaved-thinking-2025-05-14".to_owned()));
}

#[test]
fn path_decides_model_and_stream_over_the_body() {
    let body =
        br#"{"model":"other","stream":false,"max_tokens":5,"anthropic_beta":null,"messages":[]}"#;
    let req = invoke_request(body, "us.anthropic.claude-opus-5-5", true).unwrap();
    assert_eq!(
        req.body,
        br#"{"model":"us.anthropic.claude-opus-5-5","max_tokens":5,"messages":[],"stream":true}"#
    );
    assert!(req.betas.is_empty());
    // The model is escaped as a JSON string.
    let req = invoke_request(b"{}", "a\"b", false).unwrap();
    assert_eq!(req.body, br#"{"model":"a\"b"}"#);
}

#[test]
fn bad_invoke_bodies_are_refused_with_a_message() {
    for (body, needle) in [
        (&b"not json"[..], "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (br#"{"a":1,"a":2}"#, "duplicate field `a`"),
        (
            br#"{"anthropic_beta":"x"}"#,
            "anthropic_beta: must be an array of strings",
        ),
        (
            br#"{"anthropic_beta":[1]}"#,
            "anthropic_beta: must be an array of strings",
        ),
    ] {
        let err = invoke_request(body, "m", false).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "{}: {err}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn count_tokens_bodies_unwrap_the_invoke_body() {
    // The gateway's own Anthropic -> Bedrock CountTokens translation, then back.
    let anthropic = br#"{"model":"claude-sonnet-4-6","max_tokens":9,"messages":[{"role":"user","content":"hi \u00e9"}],"system":"s"}"#;
    let bedrock = count_tokens_body(anthropic, &["token-counting-2024-11-01"]).unwrap();
    let req = count_tokens_request(&bedrock, "anthropic.claude-sonnet-4-6").unwrap();
    assert_eq!(
        req.body,
        br#"{"model":"anthropic.claude-sonnet-4-6","max_tokens":9,"messages":[{"role":"user","content":"hi \u00e9"}],"system":"s"}"#
    );

    // As Claude Code builds it: {anthropic_version, ...request} as the base64 body.
    let inner = br#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"x"}],"max_tokens":1}"#;
    let body = json!({"input": {"invokeModel": {"body": BASE64.encode(inner)}}}).to_string();
    let req = count_tokens_request(body.as_bytes(), "m").unwrap();
    assert_eq!(
        req.body,
        br#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1}"#
    );

    for (body, needle) in [
        (json!({}), "input: field required"),
        (json!({"input": {}}), "input.invokeModel: field required"),
        (
            json!({"input": {"converse": {"messages": []}}}),
            "input.converse is not served",
        ),
        (
            json!({"input": {"invokeModel": {}}}),
            "input.invokeModel.body: field required",
        ),
        (
            json!({"input": {"invokeModel": {"body": "%%%"}}}),
            "must be base64",
        ),
        (
            json!({"input": {"invokeModel": {"body": BASE64.encode("[]")}}}),
            "must be a JSON object",
        ),
    ] {
        let err = count_tokens_request(body.to_string().as_bytes(), "m").unwrap_err();
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }
}

#[test]
fn count_tokens_answers_take_bedrocks_shape() {
    assert_eq!(
        count_tokens_answer(br#"{"input_tokens":1234}"#).unwrap(),
        br#"{"inputTokens":1234}"#
    );
    assert_eq!(count_tokens_answer(br#"{"input_tokens":"12"}"#), None);
    assert_eq!(count_tokens_answer(b"{}"), None);
    assert_eq!(count_tokens_answer(b"oops"), None);
}

// === Errors ===

#[test]
fn every_anthropic_error_kind_has_a_bedrock_exception() {
    let table: Vec<(ErrorKind, u16, &str)> = ErrorKind::ALL
        .into_iter()
        .map(|k| {
            let (status, name) = bedrock_exception(k);
            (k, status, name)
        })
        .collect();
    assert_eq!(
        table,
        [
            (ErrorKind::InvalidRequest, 400, "ValidationException"),
            (
                ErrorKind::Authentication,
                400,
                "UnrecognizedClientException"
            ),
            (ErrorKind::Billing, 400, "AccessDeniedException"),
            (ErrorKind::Permission, 400, "AccessDeniedException"),
            (ErrorKind::NotFound, 404, "ResourceNotFoundException"),
            (ErrorKind::RequestTooLarge, 400, "ValidationException"),
            (ErrorKind::RateLimit, 429, "ThrottlingException"),
            (ErrorKind::Api, 500, "InternalServerException"),
            (ErrorKind::Timeout, 408, "ModelTimeoutException"),
            (ErrorKind::Overloaded, 503, "ServiceUnavailableException"),
        ]
    );
    // Mapped back the other way (what the gateway does with Bedrock's errors), every exception
    // gives the kind it came from, except the ones Bedrock lacks a kind for.
    for kind in ErrorKind::ALL {
        let (status, name) = bedrock_exception(kind);
        let back = tollgate_protocol::bedrock::map_error(status, Some(name), b"{}").kind;
        let expected = match kind {
            ErrorKind::RequestTooLarge => ErrorKind::InvalidRequest,
            ErrorKind::Billing => ErrorKind::Permission,
            k => k,
        };
        assert_eq!(back, expected, "{name}");
    }
}

#[test]
fn anthropic_error_bodies_become_bedrock_errors() {
    // The gateway's own envelope (with its request id) and an upstream one.
    let budget = br#"{"type":"error","error":{"type":"rate_limit_error","message":"budget \"x\" is used up"},"request_id":"req_tg_1"}"#;
    let err = BedrockError::from_anthropic(429, budget);
    assert_eq!(
        err,
        BedrockError {
            status: 429,
            error_type: "ThrottlingException",
            message: "budget \"x\" is used up".into(),
        }
    );
    assert_eq!(err.to_json(), br#"{"message":"budget \"x\" is used up"}"#);

    // The type decides, not the status (the gateway's 502 api_error is Bedrock's 500).
    let api = ApiError {
        kind: ErrorKind::Api,
        status: 502,
        message: "could not connect to provider \"bedrock\"".into(),
    };
    let err = BedrockError::from_anthropic(502, &api.to_json());
    assert_eq!(
        (err.status, err.error_type),
        (500, "InternalServerException")
    );
    assert_eq!(err.message, api.message);

    // No envelope: the status decides, with a message naming it.
    let err = BedrockError::from_anthropic(401, b"<html>nope</html>");
    assert_eq!(
        (err.status, err.error_type, err.message.as_str()),
        (
            400,
            "UnrecognizedClientException",
            "HTTP 401 without an error message"
        )
    );
    let err = BedrockError::from_anthropic(
        529,
        br#"{"type":"error","error":{"type":"brand_new_error"}}"#,
    );
    assert_eq!(
        (err.status, err.error_type),
        (503, "ServiceUnavailableException")
    );
}

#[test]
fn exception_frames_carry_the_stream_member_name() {
    for (kind, member) in [
        (ErrorKind::RateLimit, "throttlingException"),
        (ErrorKind::Overloaded, "serviceUnavailableException"),
        (ErrorKind::Timeout, "modelTimeoutException"),
        (ErrorKind::Api, "internalServerException"),
        (ErrorKind::InvalidRequest, "validationException"),
        (ErrorKind::Authentication, "validationException"),
    ] {
        let err = BedrockError::new(kind, "m\u{e9}");
        let decoded = decode_whole(&err.exception_frame());
        assert_eq!(decoded.error, None);
        let [msg] = decoded.messages.as_slice() else {
            panic!("one frame: {decoded:?}")
        };
        assert_eq!(msg.header_str(":message-type"), Some("exception"));
        assert_eq!(msg.header_str(":exception-type"), Some(member));
        assert_eq!(msg.header_str(":content-type"), Some("application/json"));
        assert_eq!(&msg.payload[..], "{\"message\":\"m\u{e9}\"}".as_bytes());
        // The gateway's own Bedrock stream translation reads it back as the same kind.
        let mut t = StreamTranslator::new();
        t.on_message(msg).unwrap();
        let expected = match kind {
            ErrorKind::Authentication => ErrorKind::InvalidRequest,
            k => k,
        };
        assert_eq!(t.terminal_error().map(|e| e.kind), Some(expected));
    }
}

// === Streams ===

fn chunk_json(msg: &Message) -> Vec<u8> {
    assert_eq!(msg.header_str(":message-type"), Some("event"));
    assert_eq!(msg.header_str(":event-type"), Some("chunk"));
    assert_eq!(msg.header_str(":content-type"), Some("application/json"));
    let payload: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(payload.as_object().unwrap().len(), 1, "only `bytes`");
    BASE64.decode(payload["bytes"].as_str().unwrap()).unwrap()
}

#[test]
fn a_chunk_frame_is_bedrocks() {
    let event =
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
    let frame = chunk_frame(event);
    let decoded = decode_bytewise(&frame);
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.messages.len(), 1);
    assert_eq!(chunk_json(&decoded.messages[0]), event);
    // Framing: total length, headers length, prelude CRC, message CRC.
    let total = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(total, frame.len());
    let crc = u32::from_be_bytes(frame[frame.len() - 4..].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(&frame[..frame.len() - 4]));
}

/// The AWS-produced Bedrock stream, translated to SSE by the gateway (as the providers relay it)
/// and re-encoded: every chunk carries the event Bedrock sent, byte for byte (less the
/// Bedrock-only metrics the SSE relay removes), whatever the SSE chunking.
#[test]
fn bedrock_streams_survive_the_sse_round_trip_event_for_event() {
    let bedrock = decode_whole(&read("eventstream/invoke-stream-thinking-tool.bin"));
    assert_eq!(bedrock.error, None);
    let mut translator = StreamTranslator::new();
    let mut sse = Vec::new();
    let mut expected = Vec::new();
    for msg in &bedrock.messages {
        let out = translator.on_message(msg).unwrap();
        sse.extend_from_slice(&out);
        for (_, data) in support::parse_sse(&out) {
            expected.push(data.into_bytes());
        }
    }
    assert!(expected.len() >= 5, "{}", expected.len());
    let original: Vec<Vec<u8>> = bedrock
        .messages
        .iter()
        .map(|m| {
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            BASE64.decode(payload["bytes"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(original.len(), expected.len());
    for (orig, relayed) in original.iter().zip(&expected) {
        if !orig
            .windows(b"invocationMetrics".len())
            .any(|w| w == b"invocationMetrics")
        {
            assert_eq!(orig, relayed, "events without metrics are relayed verbatim");
        }
    }

    for split in [sse.len(), 1, 7, 64] {
        let mut conv = SseToEventStream::new();
        let mut frames = Vec::new();
        for piece in sse.chunks(split) {
            frames.extend_from_slice(&conv.push(piece));
        }
        let decoded = decode_whole(&frames);
        assert_eq!(decoded.error, None);
        let events: Vec<Vec<u8>> = decoded.messages.iter().map(chunk_json).collect();
        assert_eq!(events, expected, "split {split}");
        assert!(!conv.ended());
    }
}

/// Output is produced as events complete: nothing before the blank line that ends an event,
/// that event's frame at once after it.
#[test]
fn frames_go_out_as_each_event_completes() {
    let mut conv = SseToEventStream::new();
    assert!(
        conv.push(b"event: message_start\ndata: {\"type\":\"message_st")
            .is_empty()
    );
    assert!(
        conv.push(b"art\",\"message\":{\"model\":\"m\"}}\n")
            .is_empty()
    );
    let out = conv.push(b"\n: comment\n\nevent: ping\n");
    let decoded = decode_whole(&out);
    assert_eq!(decoded.messages.len(), 1);
    assert_eq!(
        chunk_json(&decoded.messages[0]),
        br#"{"type":"message_start","message":{"model":"m"}}"#
    );
    let out = conv.push(b"data: {\"type\": \"ping\"}\n\n");
    assert_eq!(
        chunk_json(&decode_whole(&out).messages[0]),
        br#"{"type": "ping"}"#
    );
}

#[test]
fn message_start_reports_the_requested_model_when_asked() {
    let sse = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"bedrock/us.anthropic.claude-opus-5-5\",\"content\":[]}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let mut conv = SseToEventStream::reporting_model("us.anthropic.claude-opus-5-5");
    let decoded = decode_whole(&conv.push(sse));
    let events: Vec<Vec<u8>> = decoded.messages.iter().map(chunk_json).collect();
    assert_eq!(
        events,
        [
            br#"{"type":"message_start","message":{"id":"m1","model":"us.anthropic.claude-opus-5-5","content":[]}}"#.to_vec(),
            br#"{"type":"message_stop"}"#.to_vec(),
        ]
    );
}

#[test]
fn an_error_event_becomes_an_exception_frame_and_ends_the_stream() {
    let mut conv = SseToEventStream::new();
    let start = conv.push(b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n");
    assert_eq!(decode_whole(&start).messages.len(), 1);
    let err = ApiError::new(ErrorKind::Overloaded, "Overloaded");
    let mut tail = err.to_sse().to_vec();
    tail.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    let out = conv.push(&tail);
    let decoded = decode_whole(&out);
    assert_eq!(decoded.error, None);
    let [msg] = decoded.messages.as_slice() else {
        panic!("only the exception: {decoded:?}")
    };
    assert_eq!(msg.header_str(":message-type"), Some("exception"));
    assert_eq!(
        msg.header_str(":exception-type"),
        Some("serviceUnavailableException")
    );
    assert_eq!(&msg.payload[..], br#"{"message":"Overloaded"}"#);
    assert!(conv.ended());
    assert!(conv.push(b"event: ping\ndata: {}\n\n").is_empty());
}

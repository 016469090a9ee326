//! The requested model name put back into answers: non-streaming bodies, Bedrock
//! `message_start` chunks (against the recorded AWS vector) and Anthropic SSE streams split
//! anywhere. Every byte other than the model's value must come through unchanged.

mod support;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::{decode_whole, parse_sse, read};
use tollgate_protocol::anthropic::Usage;
use tollgate_protocol::bedrock::StreamTranslator;
use tollgate_protocol::response_model::{
    MAX_HELD_BYTES, MessageAnswer, SseModelRewriter, read_message, set_message_model,
    set_message_start_model,
};

const REQUESTED: &str = "bedrock/global.anthropic.claude-sonnet-4-6";

/// One read of a non-streaming answer gives its usage and, when asked, the renamed body.
#[test]
fn a_message_is_read_once_for_its_usage_and_its_name() {
    let body = br#"{"id":"msg_1","model":"global.anthropic.claude-sonnet-4-6","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":12,"output_tokens":3,"cache_read_input_tokens":null}}"#;
    let usage = Usage {
        input_tokens: 12,
        output_tokens: 3,
        ..Usage::default()
    };
    let answer = read_message(body, Some("claude-sonnet-4-6"));
    assert_eq!(answer.usage, Some(usage));
    let renamed = answer.body.expect("renamed");
    assert_eq!(
        String::from_utf8_lossy(&renamed),
        String::from_utf8_lossy(body)
            .replace("global.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6")
    );
    // No name to set: the usage only. The same name: nothing to copy.
    assert_eq!(
        read_message(body, None),
        MessageAnswer {
            body: None,
            usage: Some(usage)
        }
    );
    assert_eq!(
        read_message(body, Some("global.anthropic.claude-sonnet-4-6")).body,
        None
    );
    // Not a Message object: nothing.
    for junk in [&b"[1]"[..], b"{\"model\":", b""] {
        assert_eq!(read_message(junk, Some("x")), MessageAnswer::default());
    }
    assert_eq!(
        read_message(br#"{"model":"a","usage":null}"#, Some("b")).usage,
        None
    );
}

#[test]
fn message_body_gets_the_requested_name_and_nothing_else_changes() {
    let body = br#"{"id":"msg_1" ,"type":"message","role":"assistant", "model" : "claude-sonnet-4-6","content":[{"type":"thinking","thinking":"\u00e9","signature":"EqQB+/sig=="}],"stop_reason":"end_turn","usage":{"input_tokens":1.0e1}}"#;
    let out = set_message_model(body, REQUESTED).expect("rewritten");
    let want = br#"{"id":"msg_1" ,"type":"message","role":"assistant", "model" : "bedrock/global.anthropic.claude-sonnet-4-6","content":[{"type":"thinking","thinking":"\u00e9","signature":"EqQB+/sig=="}],"stop_reason":"end_turn","usage":{"input_tokens":1.0e1}}"#;
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
    // Names needing escapes are written as valid JSON.
    let odd = set_message_model(br#"{"model":"x"}"#, "a\"b\\c").expect("rewritten");
    assert_eq!(&odd[..], br#"{"model":"a\"b\\c"}"#);
}

#[test]
fn nothing_is_copied_when_there_is_nothing_to_change() {
    assert_eq!(
        set_message_model(br#"{"model":"claude-x","content":[]}"#, "claude-x"),
        None
    );
    // Escaped spelling of the same name: the value already matches.
    assert_eq!(
        set_message_model(br#"{"model":"claude\u002dx"}"#, "claude-x"),
        None
    );
    for not_a_message in [
        &b"not json"[..],
        b"[1]",
        br#"{"content":[]}"#,
        br#"{"model":7}"#,
        br#"{"model":"a","model":"b"}"#,
    ] {
        assert_eq!(set_message_model(not_a_message, "m"), None);
    }
    assert_eq!(set_message_start_model(br#"{"type":"ping"}"#, "m"), None);
    assert_eq!(
        set_message_start_model(br#"{"type":"message_start","message":"x"}"#, "m"),
        None
    );
}

#[test]
fn message_start_event_gets_the_requested_name_in_place() {
    let event = br#"{"type":"message_start","message":{"id":"msg_bdrk_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"usage":{"input_tokens":25,"output_tokens":1}},"model":"outer-is-not-touched"}"#;
    let out = set_message_start_model(event, REQUESTED).expect("rewritten");
    let want = format!(
        r#"{{"type":"message_start","message":{{"id":"msg_bdrk_1","type":"message","role":"assistant","model":"{REQUESTED}","content":[],"usage":{{"input_tokens":25,"output_tokens":1}}}},"model":"outer-is-not-touched"}}"#
    );
    assert_eq!(String::from_utf8_lossy(&out), want);
}

/// The recorded Bedrock stream, translated with and without the requested name: only the
/// `message_start` data differs, by exactly the model's value.
#[test]
fn bedrock_stream_reports_the_requested_name_in_message_start_only() {
    let decoded = decode_whole(&read("eventstream/invoke-stream-thinking-tool.bin"));
    assert_eq!(decoded.error, None);
    let mut plain = StreamTranslator::new();
    let mut named = StreamTranslator::reporting_model(REQUESTED);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for m in &decoded.messages {
        a.extend_from_slice(&plain.on_message(m).expect("plain"));
        b.extend_from_slice(&named.on_message(m).expect("named"));
    }
    let (a, b) = (parse_sse(&a), parse_sse(&b));
    assert_eq!(a.len(), b.len());
    assert_eq!(a[0].0.as_deref(), Some("message_start"));
    let upstream_name = serde_json::from_str::<Value>(&a[0].1).expect("json")["message"]["model"]
        .as_str()
        .expect("upstream model")
        .to_owned();
    assert_ne!(upstream_name, REQUESTED);
    assert_eq!(
        b[0].1,
        a[0].1.replacen(
            &format!("\"{upstream_name}\""),
            &format!("\"{REQUESTED}\""),
            1
        )
    );
    assert_eq!(&a[1..], &b[1..], "later events are untouched");
    assert_eq!(plain.usage(), named.usage());
}

/// An Anthropic stream as the API sends it (CRLF and LF mixed in, a ping and a comment before
/// the message, a `message_start` with the upstream's name, then the rest).
fn anthropic_stream(model: &str) -> Vec<u8> {
    format!(
        ": keep-alive\r\n\r\nevent: ping\ndata: {{\"type\": \"ping\"}}\n\n\
         event: message_start\r\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{model}\",\"content\":[],\"stop_reason\":null,\"usage\":{{\"input_tokens\":3,\"output_tokens\":1}}}}}}\r\n\r\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"signature_delta\",\"signature\":\"EqQB\\u002b/sig==\"}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    )
    .into_bytes()
}

fn rewrite_in_chunks(input: &[u8], sizes: &mut impl FnMut() -> usize) -> (Vec<u8>, usize) {
    let mut r = SseModelRewriter::new(REQUESTED);
    let mut out = Vec::new();
    let mut rest = input;
    let mut passed_through = 0;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        let chunk = Bytes::copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        let was_done = r.is_done();
        let emitted = r.push(&chunk);
        if was_done {
            assert_eq!(
                emitted, chunk,
                "after message_start chunks pass as they are"
            );
            passed_through += 1;
        }
        out.extend_from_slice(&emitted);
    }
    out.extend_from_slice(&r.finish());
    (out, passed_through)
}

#[test]
fn anthropic_stream_is_rewritten_wherever_it_is_split() {
    let input = anthropic_stream("claude-opus-4-6");
    let upstream_start = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-opus-4-6\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n";
    let ours = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{REQUESTED}\",\"content\":[],\"stop_reason\":null,\"usage\":{{\"input_tokens\":3,\"output_tokens\":1}}}}}}\n\n"
    );
    let want = String::from_utf8(input.clone())
        .expect("utf8")
        .replacen(upstream_start, &ours, 1);
    assert_ne!(want.as_bytes(), &input[..]);

    let (whole, _) = rewrite_in_chunks(&input, &mut || usize::MAX);
    assert_eq!(String::from_utf8_lossy(&whole), want);
    let (bytewise, passed) = rewrite_in_chunks(&input, &mut || 1);
    assert_eq!(String::from_utf8_lossy(&bytewise), want);
    assert!(passed > 100, "bytes after message_start are not held");
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let (out, _) = rewrite_in_chunks(&input, &mut || rng.random_range(1..40));
        assert_eq!(String::from_utf8_lossy(&out), want);
    }
}

#[test]
fn anthropic_stream_with_the_requested_name_or_an_unexpected_start_is_unchanged() {
    let same = anthropic_stream(REQUESTED);
    assert_eq!(rewrite_in_chunks(&same, &mut || 5).0, same);
    let other = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\nevent: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"x\"}}\n\n";
    assert_eq!(rewrite_in_chunks(other, &mut || 3).0, other);
}

#[test]
fn a_start_that_never_completes_is_released_at_the_cap() {
    let mut r = SseModelRewriter::new(REQUESTED);
    let mut out = Vec::new();
    let line = Bytes::from(vec![b'x'; 1024]);
    let head = Bytes::from_static(b"event: message_start\ndata: ");
    out.extend_from_slice(&r.push(&head));
    while !r.is_done() {
        out.extend_from_slice(&r.push(&line));
        assert!(out.len() <= MAX_HELD_BYTES + 2048);
    }
    assert!(out.len() > MAX_HELD_BYTES, "held bytes are released");
    assert_eq!(r.push(&line), line);
}

//! The SSE parser (WHATWG rules, arbitrary splits) and usage extraction from Anthropic
//! responses and streams.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::read_json;
use tollgate_protocol::anthropic::{PartialUsage, Usage, UsageTracker, usage_from_message};
use tollgate_protocol::sse::{self, PING, SseEvent, SseParser};

fn ev(event: Option<&str>, data: &str) -> SseEvent {
    SseEvent {
        event: event.map(str::to_owned),
        data: data.to_owned(),
    }
}

fn parse_in_chunks(input: &[u8], sizes: &[usize]) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        p.push(&rest[..n]);
        rest = &rest[n..];
        out.extend(std::iter::from_fn(|| p.next_event()));
    }
    p.push(b"");
    out.extend(std::iter::from_fn(|| p.next_event()));
    out
}

/// Exercises every rule: BOM, comments, CRLF / CR / LF, multi-line data, one stripped space,
/// field without colon, unknown fields, events without data, empty event name, multi-byte UTF-8,
/// and an unterminated final event.
const GOLDEN: &[u8] = b"\xEF\xBB\xBF: keep-alive comment\r\n\
event: message_start\r\n\
data: {\"type\":\"message_start\"}\r\n\
\r\n\
event: ping\rdata: {\"type\": \"ping\"}\r\r\
:another comment\n\
data:no-space\n\
data:  two spaces\n\
data\n\
id: 7\n\
retry: 1000\n\
unknown: x\n\
\n\
event: lonely\n\
\n\
event:\n\
data: caf\xC3\xA9 \xF0\x9F\xA6\x80 a:b\n\
\n\
event: content_block_delta\n\
data: {\"text\":\"x\"}\n\
\n\
event: unterminated\n\
data: dropped";

fn golden_events() -> Vec<SseEvent> {
    vec![
        ev(Some("message_start"), r#"{"type":"message_start"}"#),
        ev(Some("ping"), r#"{"type": "ping"}"#),
        ev(None, "no-space\n two spaces\n"),
        ev(None, "café 🦀 a:b"),
        ev(Some("content_block_delta"), r#"{"text":"x"}"#),
    ]
}

#[test]
fn golden_stream_parses_per_whatwg() {
    assert_eq!(parse_in_chunks(GOLDEN, &[GOLDEN.len()]), golden_events());
}

#[test]
fn every_two_way_split_gives_the_same_events() {
    for cut in 0..=GOLDEN.len() {
        let mut p = SseParser::new();
        p.push(&GOLDEN[..cut]);
        let mut got: Vec<SseEvent> = std::iter::from_fn(|| p.next_event()).collect();
        p.push(&GOLDEN[cut..]);
        got.extend(std::iter::from_fn(|| p.next_event()));
        assert_eq!(got, golden_events(), "split at {cut}");
    }
}

#[test]
fn byte_at_a_time_and_random_splits_give_the_same_events() {
    assert_eq!(parse_in_chunks(GOLDEN, &[1]), golden_events());
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let sizes: Vec<usize> = (0..64).map(|_| rng.random_range(1..=9)).collect();
        assert_eq!(
            parse_in_chunks(GOLDEN, &sizes),
            golden_events(),
            "seed {seed}"
        );
    }
}

#[test]
fn cr_at_chunk_end_followed_by_lf_is_one_line_break() {
    // "\r" | "\n" across pushes must not produce an extra blank line (which would dispatch early).
    let mut p = SseParser::new();
    p.push(b"data: a\r");
    p.push(b"\ndata: b\r");
    p.push(b"\n\r");
    p.push(b"\n");
    assert_eq!(p.next_event(), Some(ev(None, "a\nb")));
    assert_eq!(p.next_event(), None);
    assert_eq!(p.buffered_len(), 0);
}

#[test]
fn unterminated_event_is_not_dispatched() {
    let mut p = SseParser::new();
    p.push(b"event: x\ndata: y\n");
    assert_eq!(p.next_event(), None);
    p.push(b"\n");
    assert_eq!(p.next_event(), Some(ev(Some("x"), "y")));
    // A bare "data:" dispatches an empty string.
    p.push(b"data:\n\n");
    assert_eq!(p.next_event(), Some(ev(None, "")));
}

#[test]
fn bom_only_stripped_at_stream_start() {
    let mut p = SseParser::new();
    p.push(b"\xEF\xBB");
    p.push(b"\xBFdata: 1\n\n\xEF\xBB\xBFdata: 2\n\n");
    assert_eq!(p.next_event(), Some(ev(None, "1")));
    // Later BOMs are part of the field name: "\u{feff}data" is an unknown field.
    assert_eq!(p.next_event(), None);
}

#[test]
fn writer_output_round_trips_through_the_parser() {
    let frames = [
        sse::event("message_start", br#"{"type":"message_start"}"#),
        bytes::Bytes::from_static(PING),
        sse::event("content_block_delta", b"{\n \"a\": 1\r\n}"),
        sse::event("message_stop", b""),
    ];
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    assert_eq!(
        parse_in_chunks(&stream, &[3]),
        vec![
            ev(Some("message_start"), r#"{"type":"message_start"}"#),
            ev(Some("ping"), r#"{"type": "ping"}"#),
            ev(Some("content_block_delta"), "{\n \"a\": 1\n}"),
            ev(Some("message_stop"), ""),
        ]
    );
    assert_eq!(PING, b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
}

#[test]
fn long_line_pushed_bytewise_is_handled() {
    // Linear scanning: a 200 KB data line fed one byte at a time.
    let mut input = b"data: ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 200_000));
    input.extend_from_slice(b"\n\n");
    let mut p = SseParser::new();
    for b in &input {
        p.push(std::slice::from_ref(b));
    }
    assert_eq!(p.next_event().unwrap().data.len(), 200_000);
}

#[test]
fn usage_from_a_message_body() {
    let body = br#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"usage: none"}],
        "usage":{"input_tokens":12,"output_tokens":34,"cache_read_input_tokens":56,
        "cache_creation_input_tokens":null,"cache_creation":{"ephemeral_5m_input_tokens":0},
        "service_tier":"standard"}}"#;
    let usage = usage_from_message(body).unwrap();
    assert_eq!(
        usage,
        Usage {
            input_tokens: 12,
            output_tokens: 34,
            cache_read_input_tokens: 56,
            cache_creation_input_tokens: 0,
            cache_creation_1h_input_tokens: 0
        }
    );
    assert_eq!(usage.total_input_tokens(), 68);
    assert_eq!(usage_from_message(br#"{"type":"message"}"#), None);
    assert_eq!(usage_from_message(br#"{"usage":null}"#), None);
    assert_eq!(usage_from_message(b"<html>"), None);
    assert_eq!(
        usage_from_message(br#"{"usage":{"input_tokens":-1}}"#),
        None
    );
}

/// The recorded Bedrock events, re-encoded as an Anthropic upstream would send them.
fn anthropic_stream_from_vector() -> Vec<u8> {
    let events = read_json("eventstream/invoke-stream-thinking-tool.events.json");
    let mut out = Vec::new();
    for (i, e) in events.as_array().unwrap().iter().enumerate() {
        out.extend_from_slice(&sse::event(
            e["type"].as_str().unwrap(),
            e.to_string().as_bytes(),
        ));
        if i == 3 {
            out.extend_from_slice(PING);
        }
    }
    out
}

#[test]
fn usage_tracker_follows_an_anthropic_sse_stream() {
    let stream = anthropic_stream_from_vector();
    for sizes in [&[stream.len()][..], &[1], &[17, 3, 250]] {
        let mut parser = SseParser::new();
        let mut tracker = UsageTracker::new();
        let mut rest = &stream[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            i += 1;
            parser.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(event) = parser.next_event() {
                tracker.observe_sse(&event);
            }
        }
        assert!(tracker.saw_final_usage());
        assert_eq!(
            tracker.usage(),
            Some(Usage {
                input_tokens: 25,
                output_tokens: 42,
                cache_read_input_tokens: 0,
                cache_creation_input_tokens: 0,
                cache_creation_1h_input_tokens: 0
            })
        );
    }
}

#[test]
fn usage_tracker_rules() {
    let mut t = UsageTracker::new();
    assert_eq!(t.usage(), None);
    t.observe(br#"{"type":"ping"}"#);
    t.observe(b"garbage");
    assert_eq!(t.usage(), None);

    t.observe(br#"{"type":"message_start","message":{"usage":{"input_tokens":100,"cache_creation_input_tokens":7,"cache_read_input_tokens":3,"output_tokens":1}}}"#);
    assert_eq!(t.usage().unwrap().output_tokens, 1);
    assert!(!t.saw_final_usage());
    // Fallback output beats the provisional message_start count, but not input counts.
    t.set_fallback(PartialUsage {
        input_tokens: Some(999),
        output_tokens: Some(50),
        cache_read_input_tokens: None,
        cache_creation_input_tokens: Some(999),
    });
    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: 100,
            output_tokens: 50,
            cache_read_input_tokens: 3,
            cache_creation_input_tokens: 7,
            cache_creation_1h_input_tokens: 0
        })
    );
    // Deltas are cumulative: the last value wins, fields absent from a delta are kept.
    t.observe(br#"{"type":"message_delta","delta":{},"usage":{"output_tokens":60}}"#);
    t.observe_typed("message_delta", br#"{"type":"message_delta","usage":{"output_tokens":80,"input_tokens":120,"cache_read_input_tokens":null}}"#);
    t.observe(br#"{"type":"message_delta","usage":{"cache_read_input_tokens":4}}"#);
    // Types without usage are skipped, even if they carry a usage-shaped member.
    t.observe_typed(
        "content_block_delta",
        br#"{"usage":{"output_tokens":1000000}}"#,
    );
    t.observe(br#"{"type":"message_stop","usage":{"output_tokens":1000000}}"#);
    assert!(t.saw_final_usage());
    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: 120,
            output_tokens: 80,
            cache_read_input_tokens: 4,
            cache_creation_input_tokens: 7,
            cache_creation_1h_input_tokens: 0
        })
    );
}

#[test]
fn usage_tracker_with_only_a_fallback() {
    let mut t = UsageTracker::new();
    t.set_fallback(PartialUsage {
        output_tokens: Some(9),
        ..PartialUsage::default()
    });
    assert_eq!(
        t.usage(),
        Some(Usage {
            output_tokens: 9,
            ..Usage::default()
        })
    );
}

/// Cache writes are priced by TTL: the 1-hour part is read from `cache_creation`, never more
/// than the total; without a split every write is a 5-minute one.
#[test]
fn cache_writes_split_by_ttl() {
    let read = |usage: &str| {
        let body = format!(r#"{{"type":"message","usage":{usage}}}"#);
        let u = usage_from_message(body.as_bytes()).expect("usage");
        (
            u.cache_creation_input_tokens,
            u.cache_creation_1h_input_tokens,
        )
    };
    // Anthropic's shape: the total and its split.
    assert_eq!(
        read(
            r#"{"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200}}"#
        ),
        (300, 200)
    );
    // No split: all 5-minute.
    assert_eq!(read(r#"{"cache_creation_input_tokens":300}"#), (300, 0));
    // A split without the total: the total is its sum.
    assert_eq!(
        read(r#"{"cache_creation":{"ephemeral_5m_input_tokens":5,"ephemeral_1h_input_tokens":7}}"#),
        (12, 7)
    );
    // A 1-hour part larger than the total is cut to it; nulls read as 0.
    assert_eq!(
        read(
            r#"{"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":50}}"#
        ),
        (10, 10)
    );
    assert_eq!(
        read(r#"{"cache_creation_input_tokens":10,"cache_creation":null}"#),
        (10, 0)
    );

    // In a stream the split comes with message_start; a delta's split replaces it.
    let mut t = UsageTracker::new();
    t.observe(br#"{"type":"message_start","message":{"usage":{"input_tokens":1,"cache_creation_input_tokens":40,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":30}}}}"#);
    let u = t.usage().unwrap();
    assert_eq!(
        (
            u.cache_creation_input_tokens,
            u.cache_creation_1h_input_tokens
        ),
        (40, 30)
    );
    t.observe(br#"{"type":"message_delta","usage":{"output_tokens":5}}"#);
    let u = t.usage().unwrap();
    assert_eq!(
        (
            u.cache_creation_input_tokens,
            u.cache_creation_1h_input_tokens
        ),
        (40, 30)
    );
    t.observe(br#"{"type":"message_delta","usage":{"output_tokens":6,"cache_creation_input_tokens":44,"cache_creation":{"ephemeral_5m_input_tokens":4,"ephemeral_1h_input_tokens":40}}}"#);
    let u = t.usage().unwrap();
    assert_eq!(
        (
            u.cache_creation_input_tokens,
            u.cache_creation_1h_input_tokens
        ),
        (44, 40)
    );
}

//! Event-stream framing against the recorded vectors in `testdata/eventstream/` (produced with
//! AWS's Python decoder) and protocols.md Appendix A2.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::{decode_bytewise, decode_random, decode_whole, hex, read, read_json};
use tollgate_protocol::eventstream::{DecodeError, Decoder, Header, HeaderValue, Message, encode};

const VECTORS: &[&str] = &[
    "invoke-stream-thinking-tool.bin",
    "invoke-stream-midstream-throttling.bin",
    "bad-message-crc.bin",
    "bad-prelude-crc.bin",
    "truncated.bin",
];

fn vector(name: &str) -> Vec<u8> {
    read(&format!("eventstream/{name}"))
}

/// The JSON event carried base64-encoded in a Bedrock chunk message.
fn chunk_event(msg: &Message) -> Value {
    let payload: Value = serde_json::from_slice(&msg.payload).unwrap();
    let decoded = BASE64.decode(payload["bytes"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&decoded).unwrap()
}

fn assert_chunk_headers(msg: &Message) {
    assert_eq!(
        msg.headers,
        vec![
            Header::string(":event-type", "chunk"),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ]
    );
}

#[test]
fn every_vector_decodes_identically_whole_bytewise_and_in_random_splits() {
    for name in VECTORS {
        let bytes = vector(name);
        let whole = decode_whole(&bytes);
        assert_eq!(
            decode_bytewise(&bytes),
            whole,
            "{name}: byte-at-a-time differs"
        );
        for seed in 0..300 {
            let max = [2, 7, 64, 600, 5000][seed as usize % 5];
            assert_eq!(
                decode_random(&bytes, seed, max),
                whole,
                "{name}: seed {seed} differs"
            );
        }
    }
}

#[test]
fn thinking_tool_stream_carries_the_expected_events() {
    let decoded = decode_whole(&vector("invoke-stream-thinking-tool.bin"));
    assert_eq!(decoded.error, None);
    let expected = read_json("eventstream/invoke-stream-thinking-tool.events.json");
    let expected = expected.as_array().unwrap();
    assert_eq!(decoded.messages.len(), expected.len());
    assert_eq!(decoded.messages.len(), 15);
    for (msg, want) in decoded.messages.iter().zip(expected) {
        assert_chunk_headers(msg);
        assert_eq!(msg.header_str(":event-type"), Some("chunk"));
        assert_eq!(&chunk_event(msg), want);
    }
}

#[test]
fn several_frames_in_one_push_are_all_returned() {
    let bytes = vector("invoke-stream-thinking-tool.bin");
    let mut decoder = Decoder::new();
    decoder.push(&bytes);
    let mut n = 0;
    while let Some(_msg) = decoder.next_message().unwrap() {
        n += 1;
    }
    assert_eq!(n, 15);
    assert_eq!(decoder.buffered_len(), 0);
    decoder.finish().unwrap();
}

#[test]
fn throttling_stream_yields_events_then_the_exception() {
    let decoded = decode_whole(&vector("invoke-stream-midstream-throttling.bin"));
    assert_eq!(decoded.error, None);
    let expected = read_json("eventstream/invoke-stream-midstream-throttling.expected.json");
    let before = expected["events_before_exception"].as_array().unwrap();
    let (exception, events) = decoded.messages.split_last().unwrap();
    assert_eq!(events.len(), before.len());
    for (msg, want) in events.iter().zip(before) {
        assert_chunk_headers(msg);
        assert_eq!(&chunk_event(msg), want);
    }
    assert_eq!(exception.header_str(":message-type"), Some("exception"));
    assert_eq!(
        exception.header_str(":exception-type"),
        expected["exception_type"].as_str()
    );
    let payload: Value = serde_json::from_slice(&exception.payload).unwrap();
    assert_eq!(payload["message"], expected["message"]);
}

#[test]
fn bad_message_crc_is_rejected_with_both_values() {
    let bytes = vector("bad-message-crc.bin");
    let want = DecodeError::MessageCrc {
        expected: 0xa10b076a,
        actual: 0xa10b0795,
    };
    let decoded = decode_whole(&bytes);
    assert!(decoded.messages.is_empty());
    assert_eq!(decoded.error, Some(want.clone()));
    assert_eq!(decode_bytewise(&bytes).error, Some(want.clone()));
    assert!(want.to_string().contains("0xa10b076a") && want.to_string().contains("0xa10b0795"));
}

#[test]
fn bad_prelude_crc_is_rejected_before_the_body_arrives() {
    let bytes = vector("bad-prelude-crc.bin");
    let want = DecodeError::PreludeCrc {
        expected: 0x4b4b71ab,
        actual: 0x4bb471ab,
    };
    assert_eq!(decode_whole(&bytes).error, Some(want.clone()));
    // Only the 12-byte prelude: the corrupt length is never trusted.
    let mut decoder = Decoder::new();
    decoder.push(&bytes[..11]);
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.push(&bytes[11..12]);
    assert_eq!(decoder.next_message(), Err(want));
}

#[test]
fn truncated_stream_is_rejected_by_finish() {
    let bytes = vector("truncated.bin");
    let mut decoder = Decoder::new();
    decoder.push(&bytes);
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(
        decoder.finish(),
        Err(DecodeError::Truncated {
            buffered: 520,
            expected: Some(527)
        })
    );
    assert_eq!(
        decode_bytewise(&bytes).error,
        Some(DecodeError::Truncated {
            buffered: 520,
            expected: Some(527)
        })
    );
}

#[test]
fn crt_vector_from_appendix_a2() {
    let bytes = hex(
        "00 00 00 1D 00 00 00 00 FD 52 8C 5A 7B 27 66 6F 6F 27 3A 27 62 61 72 27 7D C3 65 39 36",
    );
    assert_eq!(crc32fast::hash(&bytes[..8]), 0xFD528C5A);
    assert_eq!(crc32fast::hash(&bytes[..bytes.len() - 4]), 0xC3653936);
    let decoded = decode_whole(&bytes);
    assert_eq!(decoded.error, None);
    assert_eq!(
        decoded.messages,
        vec![Message::new(vec![], &b"{'foo':'bar'}"[..])]
    );
    assert_eq!(&encode(&decoded.messages[0]).unwrap()[..], &bytes[..]);
}

#[test]
fn bedrock_chunk_vector_from_appendix_a2() {
    let bytes = hex(concat!(
        "000000e20000004bd638d3ce0b3a6576656e742d747970650700056368756e6b0d3a636f6e74656e742d7479",
        "70650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b",
        "226279746573223a2265794a306558426c496a6f695932397564475675644639696247396a6131396b5a5778",
        "3059534973496d6c755a475634496a6f774c434a6b5a5778305953493665794a306558426c496a6f69644756",
        "346446396b5a57783059534973496e526c654851694f694a4961534a3966513d3d222c2270223a2261626364",
        "227d528ecb0b",
    ));
    assert_eq!(bytes.len(), 226);
    let decoded = decode_whole(&bytes);
    assert_eq!(decoded.error, None);
    let msg = &decoded.messages[0];
    assert_chunk_headers(msg);
    assert_eq!(
        chunk_event(msg),
        serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})
    );
    assert_eq!(&encode(msg).unwrap()[..], &bytes[..]);
}

fn all_header_types() -> Vec<Header> {
    vec![
        Header::new("bool-true", HeaderValue::Bool(true)),
        Header::new("bool-false", HeaderValue::Bool(false)),
        Header::new("byte", HeaderValue::Byte(-128)),
        Header::new("int16", HeaderValue::Int16(i16::MIN)),
        Header::new("int32", HeaderValue::Int32(-123_456_789)),
        Header::new("int64", HeaderValue::Int64(i64::MAX)),
        Header::new(
            "bytes",
            HeaderValue::ByteArray(Bytes::from_static(&[0, 1, 254, 255])),
        ),
        Header::new("empty-bytes", HeaderValue::ByteArray(Bytes::new())),
        Header::string("string", "héllo 🦀"),
        Header::string("empty-string", ""),
        Header::new("timestamp", HeaderValue::Timestamp(1_764_000_000_123)),
        Header::new("uuid", HeaderValue::Uuid(*b"0123456789abcdef")),
        Header::string(":message-type", "event"),
        Header::string("x".repeat(255), "longest name"),
    ]
}

#[test]
fn encode_decode_round_trip_for_all_header_types() {
    let msg = Message::new(all_header_types(), &b"\x00payload\xff"[..]);
    let wire = encode(&msg).unwrap();
    let types: Vec<u8> = msg.headers.iter().map(|h| h.value.wire_type()).collect();
    assert_eq!(types, [0, 1, 2, 3, 4, 5, 6, 6, 7, 7, 8, 9, 7, 7]);
    let decoded = decode_whole(&wire);
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.messages, vec![msg.clone()]);
    assert_eq!(decoded.messages[0].header_str("string"), Some("héllo 🦀"));
    assert_eq!(
        decoded.messages[0].header_str("int64"),
        None,
        "not a string header"
    );
    assert_eq!(
        decoded.messages[0].header("int64"),
        Some(&HeaderValue::Int64(i64::MAX))
    );
    assert_eq!(decoded.messages[0].header_str("absent"), None);

    // Exact bytes of a few values (big-endian, length-prefixed).
    let one = |h: Header| encode(&Message::new(vec![h], Bytes::new())).unwrap()[12..].to_vec();
    assert_eq!(
        one(Header::new("a", HeaderValue::Int16(0x0102)))[..5],
        [1, b'a', 3, 1, 2]
    );
    assert_eq!(
        one(Header::string("a", "xy"))[..7],
        [1, b'a', 7, 0, 2, b'x', b'y']
    );
    assert_eq!(
        one(Header::new("a", HeaderValue::Bool(false)))[..3],
        [1, b'a', 1]
    );

    // Many messages back to back, split randomly.
    let stream: Vec<u8> = (0..20)
        .flat_map(|i| {
            let m = Message::new(all_header_types(), vec![b'p'; i * 37]);
            encode(&m).unwrap().to_vec()
        })
        .collect();
    let whole = decode_whole(&stream);
    assert_eq!(whole.messages.len(), 20);
    assert_eq!(whole.error, None);
    for seed in 0..50 {
        assert_eq!(decode_random(&stream, seed, 300), whole);
    }
}

#[test]
fn max_message_len_is_configurable() {
    let bytes = vector("invoke-stream-thinking-tool.bin");
    let mut decoder = Decoder::with_max_message_len(500);
    decoder.push(&bytes);
    assert_eq!(
        decoder.next_message(),
        Err(DecodeError::MessageTooLarge {
            total_len: 527,
            max: 500
        })
    );
    let mut decoder = Decoder::with_max_message_len(527);
    decoder.push(&bytes);
    assert!(decoder.next_message().unwrap().is_some());
}

#[test]
fn corrupted_streams_never_panic_and_never_yield_a_corrupted_message() {
    let good = vector("invoke-stream-thinking-tool.bin");
    let reference = decode_whole(&good).messages;
    for seed in 0..2000 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut bytes = good.clone();
        let flips = rng.random_range(1..4);
        for _ in 0..flips {
            let i = rng.random_range(0..bytes.len());
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        let decoded = decode_random(&bytes, seed, 400);
        // Every message returned before the error is one of the originals, in order.
        assert_eq!(
            decoded.messages[..],
            reference[..decoded.messages.len()],
            "seed {seed}"
        );
        assert!(
            decoded.error.is_some(),
            "seed {seed}: corruption went unnoticed"
        );
    }
}

//! Helpers shared by the integration tests: test-vector loading and chunked decoding.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tollgate_protocol::eventstream::{DecodeError, Decoder, Message};

/// The repository's `testdata/` directory.
pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");

/// Reads `testdata/<rel>`.
pub fn read(rel: &str) -> Vec<u8> {
    let path = format!("{TESTDATA}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Reads and parses `testdata/<rel>` as JSON.
pub fn read_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("parsing {rel}: {e}"))
}

/// Decodes a whitespace-separated or contiguous hex string.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Outcome of decoding a whole byte stream: the messages, then the terminal error if any
/// (including the `finish()` error).
#[derive(Debug, PartialEq)]
pub struct Decoded {
    pub messages: Vec<Message>,
    pub error: Option<DecodeError>,
}

/// Feeds `bytes` to a fresh decoder in the given chunk sizes, draining after every push.
pub fn decode_chunks(bytes: &[u8], sizes: impl IntoIterator<Item = usize>) -> Decoded {
    let mut decoder = Decoder::new();
    let mut messages = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.into_iter();
    loop {
        if !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            let (head, tail) = rest.split_at(n);
            decoder.push(head);
            rest = tail;
        }
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        messages,
                        error: Some(e),
                    };
                }
            }
        }
        if rest.is_empty() {
            return Decoded {
                messages,
                error: decoder.finish().err(),
            };
        }
    }
}

/// Decodes in one push.
pub fn decode_whole(bytes: &[u8]) -> Decoded {
    decode_chunks(bytes, [bytes.len()])
}

/// Decodes one byte per push.
pub fn decode_bytewise(bytes: &[u8]) -> Decoded {
    decode_chunks(bytes, std::iter::repeat(1))
}

/// Decodes with random chunk sizes from a seeded generator (1..=max).
pub fn decode_random(bytes: &[u8], seed: u64, max: usize) -> Decoded {
    let mut rng = StdRng::seed_from_u64(seed);
    let sizes: Vec<usize> = (0..bytes.len())
        .map(|_| rng.random_range(1..=max))
        .collect();
    decode_chunks(bytes, sizes)
}

/// Splits SSE bytes into `(event name, data)` pairs with the crate's parser.
pub fn parse_sse(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let mut parser = tollgate_protocol::sse::SseParser::new();
    parser.push(bytes);
    std::iter::from_fn(|| parser.next_event())
        .map(|e| (e.event, e.data))
        .collect()
}

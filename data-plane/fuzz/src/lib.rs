//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! | target | what it feeds | what it checks |
//! |---|---|---|
//! | `eventstream` | raw bytes as a Bedrock event stream, whole, byte by byte, in input-derived splits, and again with every frame's CRCs repaired | no panic; every split decodes alike; a yielded message's CRCs check and it re-encodes to its input bytes; the decoder buffers less than one message; `StreamTranslator` output is SSE whose data is JSON |
//! | `request_body` | `BETAS\nBODY`: an `anthropic-beta` header value, then a request body | `RequestBody::parse` accepts only JSON objects; the Bedrock invoke and count-tokens bodies and `set_model` output are JSON with every other member byte-identical; betas are allowlisted |
//! | `sse` | raw bytes as an SSE stream, whole, byte by byte, in splits | no panic; every split parses alike; only the unterminated line is buffered; `sse::event` of a parsed event parses back to it |
//! | `format_pairs` | a mode byte, then a request body, an answer, an Anthropic SSE stream or an upstream stream | no panic; the OpenAI ingresses, the OpenAI egress, Converse and Vertex translations give JSON objects (the ingresses keep `model`); every stream translation gives the same output whole and in splits, and OpenAI `data:` lines are JSON |
//! | `snapshot` | raw bytes as the data plane's cache file and as a protobuf `Snapshot` | no panic; what decodes survives encode/decode; a flipped payload byte fails the checksum; `Runtime::compile` keeps one provider per name and one entry per enabled key |
//!
//! Seeds come from `testdata/` through `seeds.py`.

/// Chunk lengths in `1..=max` derived from `data` (a CRC seeds an xorshift), so that each input
/// is also tried with its own split pattern while the run stays deterministic.
pub fn splits(data: &[u8], max: usize) -> Vec<usize> {
    let mut state = u64::from(crc32fast::hash(data)) | 1 << 40;
    let mut out = Vec::new();
    let mut left = data.len();
    while left > 0 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state as usize % max.max(1)) + 1;
        let n = n.min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// `data` cut into chunks of the given lengths.
pub fn chunks<'a>(data: &'a [u8], lens: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &n in lens {
        out.push(&data[at..at + n]);
        at += n;
    }
    out
}

/// The top-level members of a JSON object with their raw bytes, in order, duplicates kept;
/// `None` if `json` is not an object.
pub fn members(json: &[u8]) -> Option<Vec<(String, Box<serde_json::value::RawValue>)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, Box<serde_json::value::RawValue>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let out = (&mut de).deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(out)
}

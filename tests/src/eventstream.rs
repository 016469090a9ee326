//! A small AWS event-stream *encoder* (`application/vnd.amazon.eventstream`), owned by the doubles.
//!
//! Frame layout (all integers big-endian):
//! `total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32`,
//! where `prelude_crc = crc32(bytes[0..8])` and `message_crc = crc32(everything before it)`
//! (IEEE polynomial, `crc32fast`). A header is `name_len u8 | name | type u8 | value`.
//!
//! The encoder is independent of the gateway's decoder on purpose, and is pinned to the
//! hand-checked vectors of the protocol reference (Appendix A2) by the tests below.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// Fixed per-frame overhead: prelude (8) + prelude CRC (4) + message CRC (4).
pub const FRAME_OVERHEAD: usize = 16;

/// An event-stream header value (type byte in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// `[0]` / `[1]`
    Bool(bool),
    /// `[2]`
    Byte(i8),
    /// `[3]`
    Int16(i16),
    /// `[4]`
    Int32(i32),
    /// `[5]`
    Int64(i64),
    /// `[6]` u16 length + bytes
    ByteArray(Vec<u8>),
    /// `[7]` u16 length + UTF-8
    String(String),
    /// `[8]` milliseconds since the epoch
    Timestamp(i64),
    /// `[9]`
    Uuid([u8; 16]),
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::String(s.to_owned())
    }
}

/// Encodes one frame.
///
/// # Panics
/// On a header name outside 1..=255 bytes or a string/bytes value over `u16::MAX` bytes
/// (the double never produces either).
pub fn encode_message(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Bytes {
    let mut hdr = BytesMut::new();
    for (name, value) in headers {
        let name_len = u8::try_from(name.len()).expect("header name fits in u8");
        assert!(name_len > 0, "header name must not be empty");
        hdr.put_u8(name_len);
        hdr.put_slice(name.as_bytes());
        match value {
            HeaderValue::Bool(true) => hdr.put_u8(0),
            HeaderValue::Bool(false) => hdr.put_u8(1),
            HeaderValue::Byte(v) => {
                hdr.put_u8(2);
                hdr.put_i8(*v);
            }
            HeaderValue::Int16(v) => {
                hdr.put_u8(3);
                hdr.put_i16(*v);
            }
            HeaderValue::Int32(v) => {
                hdr.put_u8(4);
                hdr.put_i32(*v);
            }
            HeaderValue::Int64(v) => {
                hdr.put_u8(5);
                hdr.put_i64(*v);
            }
            HeaderValue::ByteArray(v) => {
                hdr.put_u8(6);
                hdr.put_u16(u16::try_from(v.len()).expect("byte array header fits in u16"));
                hdr.put_slice(v);
            }
            HeaderValue::String(v) => {
                hdr.put_u8(7);
                hdr.put_u16(u16::try_from(v.len()).expect("string header fits in u16"));
                hdr.put_slice(v.as_bytes());
            }
            HeaderValue::Timestamp(v) => {
                hdr.put_u8(8);
                hdr.put_i64(*v);
            }
            HeaderValue::Uuid(v) => {
                hdr.put_u8(9);
                hdr.put_slice(v);
            }
        }
    }
    let total = FRAME_OVERHEAD + hdr.len() + payload.len();
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(u32::try_from(total).expect("frame fits in u32"));
    out.put_u32(u32::try_from(hdr.len()).expect("headers fit in u32"));
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.put_u32(prelude_crc);
    out.put_slice(&hdr);
    out.put_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.put_u32(message_crc);
    out.freeze()
}

/// A Bedrock `InvokeModelWithResponseStream` chunk: headers `:event-type`=`chunk`,
/// `:content-type`=`application/json`, `:message-type`=`event` (the order Bedrock uses) and
/// payload `{"bytes":"<base64 of event_json>","p":"<padding>"}`.
pub fn bedrock_chunk(event_json: &[u8], padding: &str) -> Bytes {
    let payload = serde_json::json!({
        "bytes": base64::engine::general_purpose::STANDARD.encode(event_json),
        "p": padding,
    });
    let payload = serde_json::to_vec(&payload).expect("JSON object serialises");
    encode_message(
        &[
            (":event-type", "chunk".into()),
            (":content-type", "application/json".into()),
            (":message-type", "event".into()),
        ],
        &payload,
    )
}

/// A modeled stream exception: `:exception-type`=`<camelCase member>`, `:content-type`,
/// `:message-type`=`exception`, payload `{"message": …}` (plus `extra` fields, if an object).
pub fn bedrock_exception(
    exception_type: &str,
    message: &str,
    extra: Option<&serde_json::Value>,
) -> Bytes {
    let mut payload = serde_json::json!({ "message": message });
    if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (extra, payload.as_object_mut()) {
        obj.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let payload = serde_json::to_vec(&payload).expect("JSON object serialises");
    encode_message(
        &[
            (":exception-type", exception_type.into()),
            (":content-type", "application/json".into()),
            (":message-type", "exception".into()),
        ],
        &payload,
    )
}

/// Length-obfuscation padding like Bedrock's `p` field: letters and digits, length varies with `seed`.
pub fn padding(seed: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let len = 4 + (seed * 7) % 29;
    (0..len)
        .map(|i| ALPHABET[(seed + i * 13) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_vector_no_headers() {
        // protocols.md Appendix A2 / smithy-rs frame.rs `read_message_no_headers`.
        let frame = encode_message(&[], b"{'foo':'bar'}");
        assert_eq!(
            hex::encode(&frame),
            "0000001d00000000fd528c5a7b27666f6f273a27626172277dc3653936"
        );
    }

    #[test]
    fn bedrock_chunk_vector() {
        // protocols.md Appendix A2: 226-byte chunk decoded by botocore's EventStreamBuffer.
        let event = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        let frame = bedrock_chunk(event, "abcd");
        assert_eq!(frame.len(), 226);
        assert_eq!(
            hex::encode(&frame),
            "000000e20000004bd638d3ce0b3a6576656e742d747970650700056368756e6b0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226279746573223a2265794a306558426c496a6f695932397564475675644639696247396a6131396b5a57783059534973496d6c755a475634496a6f774c434a6b5a5778305953493665794a306558426c496a6f69644756346446396b5a57783059534973496e526c654851694f694a4961534a3966513d3d222c2270223a2261626364227d528ecb0b"
        );
    }

    #[test]
    fn every_header_type_encodes_with_its_type_byte() {
        let frame = encode_message(
            &[
                ("t", HeaderValue::Bool(true)),
                ("f", HeaderValue::Bool(false)),
                ("b", HeaderValue::Byte(-1)),
                ("s", HeaderValue::Int16(0x0102)),
                ("i", HeaderValue::Int32(0x01020304)),
                ("l", HeaderValue::Int64(1)),
                ("a", HeaderValue::ByteArray(vec![0xAA])),
                ("z", HeaderValue::String("x".into())),
                ("m", HeaderValue::Timestamp(2)),
                ("u", HeaderValue::Uuid([7; 16])),
            ],
            b"",
        );
        let headers_len = u32::from_be_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
        let expected_headers = [
            "017400",
            "016601",
            "016202ff",
            "0173030102",
            "01690401020304",
            "016c050000000000000001",
            "0161060001aa",
            "017a07000178",
            "016d080000000000000002",
            "01750907070707070707070707070707070707",
        ]
        .concat();
        assert_eq!(hex::encode(&frame[12..12 + headers_len]), expected_headers);
        assert_eq!(frame.len(), FRAME_OVERHEAD + headers_len);
    }

    #[test]
    fn padding_varies_and_is_alphanumeric() {
        let a = padding(1);
        let b = padding(2);
        assert_ne!(a.len(), b.len());
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

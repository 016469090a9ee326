//! A small AWS event-stream *encoder* (`application/vnd.amazon.eventstream`), owned by the doubles,
//! and a strict *decoder* ([`decode_all`]) for checking what the gateway sends Bedrock-format
//! clients.
//!
//! Frame layout (all integers big-endian):
//! `total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32`,
//! where `prelude_crc = crc32(bytes[0..8])` and `message_crc = crc32(everything before it)`
//! (IEEE polynomial, `crc32fast`). A header is `name_len u8 | name | type u8 | value`.
//!
//! Both are independent of the gateway's codec on purpose, and are pinned to the hand-checked
//! vectors of the protocol reference (Appendix A2) by the tests below.

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

/// A Bedrock `ConverseStream` event: headers `:event-type`=`event_type`,
/// `:content-type`=`application/json`, `:message-type`=`event` (Bedrock's order), and the event
/// struct's JSON as the payload (no base64 wrapper; Bedrock adds a `p` padding member).
pub fn converse_event(event_type: &str, payload_json: &[u8]) -> Bytes {
    encode_message(
        &[
            (":event-type", event_type.into()),
            (":content-type", "application/json".into()),
            (":message-type", "event".into()),
        ],
        payload_json,
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

/// One decoded frame: its headers in order and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// The event JSON a Bedrock `chunk` frame carries (its payload's `bytes`, base64-decoded);
    /// `None` for any other frame.
    pub fn chunk_event(&self) -> Option<serde_json::Value> {
        if self.header(":message-type") != Some("event")
            || self.header(":event-type") != Some("chunk")
        {
            return None;
        }
        let payload: serde_json::Value = serde_json::from_slice(&self.payload).ok()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload["bytes"].as_str()?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Decodes a whole event stream strictly: every frame's lengths must be consistent (at least 16
/// bytes, headers inside the frame), both CRCs must match, every header must be well formed
/// with a known type and non-empty name, and nothing may follow the last frame. The error names
/// the frame and the problem.
pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let n = frames.len();
        let err = |what: &str| format!("frame {n}: {what}");
        if bytes.len() < FRAME_OVERHEAD {
            return Err(err("truncated prelude"));
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let total = be32(0) as usize;
        let headers_len = be32(4) as usize;
        if crc32fast::hash(&bytes[..8]) != be32(8) {
            return Err(err("prelude CRC mismatch"));
        }
        if total < FRAME_OVERHEAD || headers_len > total - FRAME_OVERHEAD {
            return Err(err("inconsistent lengths"));
        }
        if bytes.len() < total {
            return Err(err("truncated frame"));
        }
        if crc32fast::hash(&bytes[..total - 4]) != be32(total - 4) {
            return Err(err("message CRC mismatch"));
        }
        let headers = decode_headers(&bytes[12..12 + headers_len]).map_err(|e| err(&e))?;
        frames.push(Frame {
            headers,
            payload: bytes[12 + headers_len..total - 4].to_vec(),
        });
        bytes = &bytes[total..];
    }
    Ok(frames)
}

fn decode_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("header runs past the headers".into());
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let name_len = take(&mut b, 1)?[0] as usize;
        if name_len == 0 {
            return Err("empty header name".into());
        }
        let name = String::from_utf8(take(&mut b, name_len)?.to_vec())
            .map_err(|_| "header name is not UTF-8".to_owned())?;
        let fixed = |b: &mut &[u8], n: usize| -> Result<i64, String> {
            let raw = take(b, n)?;
            Ok(raw.iter().fold(0i64, |acc, &x| (acc << 8) | i64::from(x)))
        };
        let value = match take(&mut b, 1)?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(take(&mut b, 1)?[0] as i8),
            3 => HeaderValue::Int16(fixed(&mut b, 2)? as i16),
            4 => HeaderValue::Int32(fixed(&mut b, 4)? as i32),
            5 => HeaderValue::Int64(fixed(&mut b, 8)?),
            t @ (6 | 7) => {
                let len = fixed(&mut b, 2)? as usize;
                let raw = take(&mut b, len)?.to_vec();
                if t == 6 {
                    HeaderValue::ByteArray(raw)
                } else {
                    HeaderValue::String(
                        String::from_utf8(raw).map_err(|_| format!("header {name}: not UTF-8"))?,
                    )
                }
            }
            8 => HeaderValue::Timestamp(fixed(&mut b, 8)?),
            9 => HeaderValue::Uuid(
                take(&mut b, 16)?
                    .try_into()
                    .map_err(|_| "uuid".to_owned())?,
            ),
            t => return Err(format!("header {name}: unknown type {t}")),
        };
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoder_reads_the_reference_vectors_and_refuses_corruption() {
        let event = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        let mut stream = bedrock_chunk(event, "abcd").to_vec();
        stream.extend_from_slice(&bedrock_exception("throttlingException", "slow", None));
        let frames = decode_all(&stream).expect("valid");
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0].chunk_event(),
            Some(serde_json::from_slice(event).unwrap())
        );
        assert_eq!(
            frames[1].header(":exception-type"),
            Some("throttlingException")
        );
        assert_eq!(frames[1].payload, br#"{"message":"slow"}"#);
        assert_eq!(
            decode_all(
                &hex::decode("0000001d00000000fd528c5a7b27666f6f273a27626172277dc3653936").unwrap()
            ),
            Ok(vec![Frame {
                headers: vec![],
                payload: b"{'foo':'bar'}".to_vec()
            }])
        );
        for (at, what) in [
            (9, "prelude CRC"),
            (20, "message CRC"),
            (stream.len() - 1, "message CRC"),
        ] {
            let mut bad = stream.clone();
            bad[at] ^= 1;
            let e = decode_all(&bad).unwrap_err();
            assert!(e.contains(what), "{at}: {e}");
        }
        assert!(
            decode_all(&stream[..stream.len() - 3])
                .unwrap_err()
                .contains("truncated")
        );
    }

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

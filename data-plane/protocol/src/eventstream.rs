//! AWS event-stream binary framing (`application/vnd.amazon.eventstream`), as used by Bedrock's
//! `InvokeModelWithResponseStream`.
//!
//! Wire layout of one message (all integers big-endian):
//!
//! ```text
//! offset size  field
//! 0      4     total_length    whole message, including both CRCs
//! 4      4     headers_length
//! 8      4     prelude_crc     CRC32 of bytes [0, 8)
//! 12     H     headers
//! 12+H   P     payload         P = total_length - H - 16
//! end-4  4     message_crc     CRC32 of bytes [0, total_length - 4)
//! ```
//!
//! CRC32 is the IEEE (zlib) polynomial. A header is `name_len: u8 (1..=255)`, `name` (UTF-8),
//! `type: u8`, then a type-dependent value (see [`HeaderValue`]).
//!
//! [`Decoder`] is incremental: feed it whatever the transport delivers with [`Decoder::push`] and
//! pull complete messages with [`Decoder::next_message`]. It validates the prelude CRC before it
//! trusts any length, bounds the message size, then validates the message CRC and the header
//! encoding. [`encode`] is the inverse, used by test doubles.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the headers: total length, headers length, prelude CRC.
pub const PRELUDE_LEN: usize = 12;
/// Fixed per-message overhead: the prelude plus the trailing message CRC.
pub const MIN_MESSAGE_LEN: usize = 16;
/// Default upper bound for one message (the AWS CRT limit, 24 MiB).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 24 * 1024 * 1024;
/// Largest header value (string or byte array) [`encode`] writes: the AWS CRT limit, `i16::MAX`.
/// The decoder accepts anything the `u16` length prefix can express.
pub const MAX_ENCODED_HEADER_VALUE_LEN: usize = i16::MAX as usize;
/// Longest header name (its length prefix is one byte).
pub const MAX_HEADER_NAME_LEN: usize = u8::MAX as usize;

// === HeaderValue ===

/// A typed header value. The wire type byte is given for each variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (`true`) and 1 (`false`); no value bytes.
    Bool(bool),
    /// Type 2: one signed byte.
    Byte(i8),
    /// Type 3: `i16`.
    Int16(i16),
    /// Type 4: `i32`.
    Int32(i32),
    /// Type 5: `i64`.
    Int64(i64),
    /// Type 6: `u16` length, then that many bytes.
    ByteArray(Bytes),
    /// Type 7: `u16` length, then that many bytes of UTF-8.
    String(String),
    /// Type 8: `i64` milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9: 16 raw bytes.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The wire type byte for this value.
    pub fn wire_type(&self) -> u8 {
        match self {
            HeaderValue::Bool(true) => 0,
            HeaderValue::Bool(false) => 1,
            HeaderValue::Byte(_) => 2,
            HeaderValue::Int16(_) => 3,
            HeaderValue::Int32(_) => 4,
            HeaderValue::Int64(_) => 5,
            HeaderValue::ByteArray(_) => 6,
            HeaderValue::String(_) => 7,
            HeaderValue::Timestamp(_) => 8,
            HeaderValue::Uuid(_) => 9,
        }
    }

    /// The string, if this is a [`HeaderValue::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One message header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header name, 1 to 255 bytes of UTF-8 (e.g. `:message-type`).
    pub name: String,
    /// Typed value.
    pub value: HeaderValue,
}

impl Header {
    /// Creates a header.
    pub fn new(name: impl Into<String>, value: HeaderValue) -> Self {
        Header {
            name: name.into(),
            value,
        }
    }

    /// Creates a string-typed header, the kind Bedrock uses for `:message-type` and friends.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header::new(name, HeaderValue::String(value.into()))
    }
}

/// One decoded event-stream message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    /// Headers in wire order (names may repeat; lookups return the first match).
    pub headers: Vec<Header>,
    /// The payload bytes (for Bedrock: JSON).
    pub payload: Bytes,
}

impl Message {
    /// Creates a message.
    pub fn new(headers: Vec<Header>, payload: impl Into<Bytes>) -> Self {
        Message {
            headers,
            payload: payload.into(),
        }
    }

    /// The value of the first header named `name` (case-sensitive, as on the wire).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// The value of the first header named `name` if it is string-typed.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }
}

// === Errors ===

/// Why a stream of event-stream bytes was rejected. Every error is fatal for the stream: framing
/// cannot be resynchronised after a bad length or CRC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The CRC over the first 8 bytes does not match the one in the prelude.
    #[error(
        "event-stream prelude CRC mismatch: frame carries {expected:#010x}, computed {actual:#010x}"
    )]
    PreludeCrc {
        /// CRC carried in the frame.
        expected: u32,
        /// CRC computed over the received bytes.
        actual: u32,
    },
    /// The CRC over the whole message does not match the trailing one.
    #[error(
        "event-stream message CRC mismatch: frame carries {expected:#010x}, computed {actual:#010x}"
    )]
    MessageCrc {
        /// CRC carried in the frame.
        expected: u32,
        /// CRC computed over the received bytes.
        actual: u32,
    },
    /// `total_length` is below the 16-byte fixed overhead.
    #[error("event-stream message length {total_len} is below the {MIN_MESSAGE_LEN}-byte minimum")]
    MessageTooShort {
        /// The declared total length.
        total_len: u32,
    },
    /// `total_length` exceeds the decoder's limit.
    #[error("event-stream message length {total_len} exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The declared total length.
        total_len: u32,
        /// The configured limit.
        max: usize,
    },
    /// `headers_length` does not fit inside the message.
    #[error(
        "event-stream headers length {headers_len} does not fit in a message of {total_len} bytes"
    )]
    HeadersTooLong {
        /// The declared headers length.
        headers_len: u32,
        /// The declared total length.
        total_len: u32,
    },
    /// The headers section is malformed.
    #[error("invalid event-stream header at offset {offset} of the headers section: {reason}")]
    InvalidHeader {
        /// Offset of the offending header within the headers section.
        offset: usize,
        /// What is wrong with it.
        reason: HeaderError,
    },
    /// The stream ended inside a message.
    #[error("event stream truncated: {buffered} bytes of an incomplete message are buffered{}",
        match .expected { Some(n) => format!(" (message declares {n} bytes)"), None => String::new() })]
    Truncated {
        /// How many bytes were left over.
        buffered: usize,
        /// The declared length of the incomplete message, if its prelude was complete.
        expected: Option<usize>,
    },
}

/// What is wrong with a header (see [`DecodeError::InvalidHeader`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A header name of length zero.
    #[error("empty header name")]
    EmptyName,
    /// The header runs past the end of the headers section.
    #[error("header runs past the end of the headers section")]
    Truncated,
    /// The header name is not UTF-8.
    #[error("header name is not valid UTF-8")]
    NameNotUtf8,
    /// A string value is not UTF-8.
    #[error("string value of header `{0}` is not valid UTF-8")]
    ValueNotUtf8(String),
    /// An unknown value type byte.
    #[error("header `{name}` has unknown value type {value_type}")]
    UnknownType {
        /// Header name.
        name: String,
        /// The type byte.
        value_type: u8,
    },
}

/// Why [`encode`] could not encode a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A header name is empty or longer than 255 bytes.
    #[error("header name length {len} is outside 1..={MAX_HEADER_NAME_LEN}")]
    HeaderNameLength {
        /// Length of the offending name.
        len: usize,
    },
    /// A string or byte-array value is longer than [`MAX_ENCODED_HEADER_VALUE_LEN`].
    #[error("value of header `{name}` is {len} bytes, above {MAX_ENCODED_HEADER_VALUE_LEN}")]
    HeaderValueTooLong {
        /// Header name.
        name: String,
        /// Value length.
        len: usize,
    },
    /// The message does not fit the `u32` length fields.
    #[error("message of {len} bytes does not fit the u32 length fields")]
    MessageTooLarge {
        /// Encoded length.
        len: usize,
    },
}

// === Decoder ===

/// Incremental event-stream decoder.
///
/// Bytes are appended to an internal buffer; a message is parsed only once all of its bytes are
/// present, so arbitrarily split or coalesced transport chunks are handled without rescanning.
/// After an error the decoder is poisoned and keeps returning that error.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_message_len: usize,
    /// `(total_len, headers_len)` of the message at the front of `buf`, once its prelude is
    /// complete and validated.
    pending: Option<(usize, usize)>,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default message size limit ([`DEFAULT_MAX_MESSAGE_LEN`]).
    pub fn new() -> Self {
        Decoder::with_max_message_len(DEFAULT_MAX_MESSAGE_LEN)
    }

    /// A decoder that rejects messages whose declared total length exceeds `max` bytes.
    pub fn with_max_message_len(max: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max_message_len: max,
            pending: None,
            failed: None,
        }
    }

    /// Appends received bytes. Cheap; parsing happens in [`Decoder::next_message`].
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Number of buffered bytes not yet returned as messages.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are needed, or the error that
    /// makes the stream unusable.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.decode_next() {
            Ok(msg) => Ok(msg),
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf = BytesMut::new();
                Err(err)
            }
        }
    }

    /// Call at end of stream, after [`Decoder::next_message`] returned `Ok(None)`: fails with
    /// [`DecodeError::Truncated`] if bytes of an incomplete message remain (or with the earlier
    /// error if the decoder is poisoned).
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated {
                buffered: self.buf.len(),
                expected: self.pending.map(|(total, _)| total),
            })
        }
    }

    fn decode_next(&mut self) -> Result<Option<Message>, DecodeError> {
        let (total_len, headers_len) = match self.pending {
            Some(p) => p,
            None => match self.read_prelude()? {
                Some(p) => {
                    self.pending = Some(p);
                    // Make room for the rest of the frame in one allocation.
                    self.buf.reserve(p.0.saturating_sub(self.buf.len()));
                    p
                }
                None => return Ok(None),
            },
        };
        if self.buf.len() < total_len {
            return Ok(None);
        }
        self.pending = None;
        let frame = self.buf.split_to(total_len).freeze();
        decode_frame(frame, headers_len).map(Some)
    }

    /// Validates the prelude at the front of the buffer; `None` if fewer than 12 bytes.
    fn read_prelude(&self) -> Result<Option<(usize, usize)>, DecodeError> {
        let Some(prelude) = self.buf.get(..PRELUDE_LEN) else {
            return Ok(None);
        };
        let mut p = prelude;
        let total = p.get_u32();
        let headers = p.get_u32();
        let expected = p.get_u32();
        let actual = crc32fast::hash(&prelude[..8]);
        if expected != actual {
            return Err(DecodeError::PreludeCrc { expected, actual });
        }
        let total_len = total as usize;
        if total_len < MIN_MESSAGE_LEN {
            return Err(DecodeError::MessageTooShort { total_len: total });
        }
        if total_len > self.max_message_len {
            return Err(DecodeError::MessageTooLarge {
                total_len: total,
                max: self.max_message_len,
            });
        }
        let headers_len = headers as usize;
        if headers_len > total_len - MIN_MESSAGE_LEN {
            return Err(DecodeError::HeadersTooLong {
                headers_len: headers,
                total_len: total,
            });
        }
        Ok(Some((total_len, headers_len)))
    }
}

/// Decodes one complete frame whose prelude was already validated.
fn decode_frame(frame: Bytes, headers_len: usize) -> Result<Message, DecodeError> {
    let crc_at = frame.len() - 4;
    let (body, mut crc) = frame.split_at(crc_at);
    let expected = crc.get_u32();
    let actual = crc32fast::hash(body);
    if expected != actual {
        return Err(DecodeError::MessageCrc { expected, actual });
    }
    let headers_end = PRELUDE_LEN + headers_len;
    let headers = decode_headers(&frame[PRELUDE_LEN..headers_end])?;
    let payload = frame.slice(headers_end..crc_at);
    Ok(Message { headers, payload })
}

fn decode_headers(section: &[u8]) -> Result<Vec<Header>, DecodeError> {
    let mut headers = Vec::new();
    let mut rest = section;
    while !rest.is_empty() {
        let offset = section.len() - rest.len();
        let header = decode_header(&mut rest)
            .map_err(|reason| DecodeError::InvalidHeader { offset, reason })?;
        headers.push(header);
    }
    Ok(headers)
}

/// Takes `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], HeaderError> {
    let (head, tail) = rest.split_at_checked(n).ok_or(HeaderError::Truncated)?;
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], HeaderError> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or(HeaderError::Truncated)?;
    *rest = tail;
    Ok(*head)
}

fn decode_header(rest: &mut &[u8]) -> Result<Header, HeaderError> {
    let [name_len] = take_array::<1>(rest)?;
    if name_len == 0 {
        return Err(HeaderError::EmptyName);
    }
    let name = take(rest, usize::from(name_len))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| HeaderError::NameNotUtf8)?
        .to_owned();
    let [value_type] = take_array::<1>(rest)?;
    let value = match value_type {
        0 => HeaderValue::Bool(true),
        1 => HeaderValue::Bool(false),
        2 => HeaderValue::Byte(i8::from_be_bytes(take_array(rest)?)),
        3 => HeaderValue::Int16(i16::from_be_bytes(take_array(rest)?)),
        4 => HeaderValue::Int32(i32::from_be_bytes(take_array(rest)?)),
        5 => HeaderValue::Int64(i64::from_be_bytes(take_array(rest)?)),
        6 | 7 => {
            let len = u16::from_be_bytes(take_array(rest)?);
            let bytes = take(rest, usize::from(len))?;
            if value_type == 6 {
                HeaderValue::ByteArray(Bytes::copy_from_slice(bytes))
            } else {
                match std::str::from_utf8(bytes) {
                    Ok(s) => HeaderValue::String(s.to_owned()),
                    Err(_) => return Err(HeaderError::ValueNotUtf8(name)),
                }
            }
        }
        8 => HeaderValue::Timestamp(i64::from_be_bytes(take_array(rest)?)),
        9 => HeaderValue::Uuid(take_array(rest)?),
        other => {
            return Err(HeaderError::UnknownType {
                name,
                value_type: other,
            });
        }
    };
    Ok(Header { name, value })
}

// === Encoder ===

/// Encodes one message, computing both CRCs.
pub fn encode(message: &Message) -> Result<Bytes, EncodeError> {
    let mut headers = Vec::new();
    for header in &message.headers {
        encode_header(&mut headers, header)?;
    }
    let total = MIN_MESSAGE_LEN + headers.len() + message.payload.len();
    let too_large = || EncodeError::MessageTooLarge { len: total };
    let total_u32 = u32::try_from(total).map_err(|_| too_large())?;
    let headers_u32 = u32::try_from(headers.len()).map_err(|_| too_large())?;

    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total_u32);
    out.put_u32(headers_u32);
    let prelude_crc = crc32fast::hash(&out);
    out.put_u32(prelude_crc);
    out.put_slice(&headers);
    out.put_slice(&message.payload);
    let message_crc = crc32fast::hash(&out);
    out.put_u32(message_crc);
    Ok(out.freeze())
}

fn encode_header(out: &mut Vec<u8>, header: &Header) -> Result<(), EncodeError> {
    let name_len = u8::try_from(header.name.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or(EncodeError::HeaderNameLength {
            len: header.name.len(),
        })?;
    out.push(name_len);
    out.extend_from_slice(header.name.as_bytes());
    out.push(header.value.wire_type());
    match &header.value {
        HeaderValue::Bool(_) => {}
        HeaderValue::Byte(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Int16(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Int32(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Int64(v) | HeaderValue::Timestamp(v) => {
            out.extend_from_slice(&v.to_be_bytes())
        }
        HeaderValue::ByteArray(bytes) => put_len_prefixed(out, &header.name, bytes)?,
        HeaderValue::String(s) => put_len_prefixed(out, &header.name, s.as_bytes())?,
        HeaderValue::Uuid(v) => out.extend_from_slice(v),
    }
    Ok(())
}

fn put_len_prefixed(out: &mut Vec<u8>, name: &str, bytes: &[u8]) -> Result<(), EncodeError> {
    let too_long = || EncodeError::HeaderValueTooLong {
        name: name.to_owned(),
        len: bytes.len(),
    };
    if bytes.len() > MAX_ENCODED_HEADER_VALUE_LEN {
        return Err(too_long());
    }
    let len = u16::try_from(bytes.len()).map_err(|_| too_long())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
        let total = (16 + headers.len() + payload.len()) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<Message>, DecodeError> {
        let mut d = Decoder::new();
        d.push(bytes);
        d.next_message()
    }

    #[test]
    fn header_errors_are_reported_with_offsets() {
        // Empty name.
        let err = decode_one(&frame(&[0, 7], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 0,
                reason: HeaderError::EmptyName
            }
        );
        // Unknown type after a valid bool header (1 + 1 + 1 = 3 bytes).
        let err = decode_one(&frame(&[1, b'a', 0, 1, b'b', 10], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 3,
                reason: HeaderError::UnknownType {
                    name: "b".into(),
                    value_type: 10
                }
            }
        );
        // String length runs past the section.
        let err = decode_one(&frame(&[1, b'a', 7, 0, 5, b'x'], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 0,
                reason: HeaderError::Truncated
            }
        );
        // Name runs past the section.
        let err = decode_one(&frame(&[9, b'a'], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 0,
                reason: HeaderError::Truncated
            }
        );
        // Fixed-width value runs past the section.
        let err = decode_one(&frame(&[1, b'a', 5, 0, 0, 0], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 0,
                reason: HeaderError::Truncated
            }
        );
        // Invalid UTF-8.
        let err = decode_one(&frame(&[1, 0xff, 0], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 0,
                reason: HeaderError::NameNotUtf8
            }
        );
        let err = decode_one(&frame(&[1, b'a', 7, 0, 1, 0xff], b"")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidHeader {
                offset: 0,
                reason: HeaderError::ValueNotUtf8("a".into())
            }
        );
    }

    #[test]
    fn length_sanity_checks() {
        let prelude = |total: u32, headers: u32| {
            let mut p = Vec::new();
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&headers.to_be_bytes());
            p.extend_from_slice(&crc32fast::hash(&p).to_be_bytes());
            p
        };
        assert_eq!(
            decode_one(&prelude(15, 0)).unwrap_err(),
            DecodeError::MessageTooShort { total_len: 15 }
        );
        assert_eq!(
            decode_one(&prelude(32, 17)).unwrap_err(),
            DecodeError::HeadersTooLong {
                headers_len: 17,
                total_len: 32
            }
        );
        // Rejected from the prelude alone, before the body arrives.
        let mut d = Decoder::with_max_message_len(1024);
        d.push(&prelude(1025, 0));
        assert_eq!(
            d.next_message().unwrap_err(),
            DecodeError::MessageTooLarge {
                total_len: 1025,
                max: 1024
            }
        );
        // A frame of exactly the limit is fine.
        let ok = frame(&[], &[b'x'; 1008]);
        assert_eq!(ok.len(), 1024);
        let mut d = Decoder::with_max_message_len(1024);
        d.push(&ok);
        assert_eq!(d.next_message().unwrap().unwrap().payload.len(), 1008);
        // Headers exactly filling the room is fine.
        let exact = frame(&[1, b'a', 0], b"");
        assert_eq!(decode_one(&exact).unwrap().unwrap().headers.len(), 1);
    }

    #[test]
    fn decoder_is_poisoned_after_an_error() {
        let mut bad = frame(&[], b"payload");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut d = Decoder::new();
        d.push(&bad);
        let err = d.next_message().unwrap_err();
        assert!(matches!(err, DecodeError::MessageCrc { .. }));
        d.push(&frame(&[], b"ok"));
        assert_eq!(d.next_message().unwrap_err(), err);
        assert_eq!(d.finish().unwrap_err(), err);
    }

    #[test]
    fn finish_reports_partial_prelude_and_partial_body() {
        let f = frame(&[], b"hello");
        let mut d = Decoder::new();
        d.push(&f[..5]);
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(
            d.finish().unwrap_err(),
            DecodeError::Truncated {
                buffered: 5,
                expected: None
            }
        );
        d.push(&f[5..20]);
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(
            d.finish().unwrap_err(),
            DecodeError::Truncated {
                buffered: 20,
                expected: Some(f.len())
            }
        );
        d.push(&f[20..]);
        assert!(d.next_message().unwrap().is_some());
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn encode_rejects_bad_headers() {
        let long = "x".repeat(256);
        let msg = Message::new(
            vec![Header::new(long, HeaderValue::Bool(true))],
            Bytes::new(),
        );
        assert_eq!(
            encode(&msg).unwrap_err(),
            EncodeError::HeaderNameLength { len: 256 }
        );
        let msg = Message::new(vec![Header::new("", HeaderValue::Bool(true))], Bytes::new());
        assert_eq!(
            encode(&msg).unwrap_err(),
            EncodeError::HeaderNameLength { len: 0 }
        );
        let value = "v".repeat(MAX_ENCODED_HEADER_VALUE_LEN + 1);
        let msg = Message::new(vec![Header::string("n", value)], Bytes::new());
        assert_eq!(
            encode(&msg).unwrap_err(),
            EncodeError::HeaderValueTooLong {
                name: "n".into(),
                len: 32768
            }
        );
        let value = "v".repeat(MAX_ENCODED_HEADER_VALUE_LEN);
        let msg = Message::new(vec![Header::string("n", value)], Bytes::new());
        assert_eq!(decode_one(&encode(&msg).unwrap()).unwrap().unwrap(), msg);
    }

    #[test]
    fn error_messages_name_crc_values() {
        let err = DecodeError::PreludeCrc {
            expected: 0x4b4b71ab,
            actual: 0x4bb471ab,
        };
        assert_eq!(
            err.to_string(),
            "event-stream prelude CRC mismatch: frame carries 0x4b4b71ab, computed 0x4bb471ab"
        );
        let err = DecodeError::Truncated {
            buffered: 520,
            expected: Some(527),
        };
        assert_eq!(
            err.to_string(),
            "event stream truncated: 520 bytes of an incomplete message are buffered (message declares 527 bytes)"
        );
    }
}

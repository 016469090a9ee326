//! The model name an Anthropic answer reports: rewritten to the name the client asked for.
//!
//! A gateway routes a client's model name (`bedrock/global.anthropic.claude-sonnet-4-6`, an
//! alias such as `claude-opus-4-8`) to an upstream model id, and the upstream answers with its
//! own name in `message.model`. Claude Code (2.1.197 at least) sends a turn's `thinking` and
//! `redacted_thinking` blocks back only when `message_start.message.model` equals the model
//! string it asked for, so every tool loop would lose its thinking blocks. These functions put
//! the requested name back, touching nothing else:
//!
//! | answer | function | what changes |
//! |---|---|---|
//! | non-streaming Message body | [`set_message_model`] ([`read_message`] also reads its usage in the same pass) | the value of the top-level `model` |
//! | one `message_start` event's JSON (Bedrock chunks) | [`set_message_start_model`] | the value of `message.model` |
//! | an Anthropic SSE byte stream | [`SseModelRewriter`] | `message.model` of the first `message_start` event; every later byte is passed through as received |
//!
//! Every function splices the new string in place of the old value: all other bytes (member
//! order, whitespace, escapes, numbers) stay as the upstream sent them, and nothing is copied
//! when the name already matches.

use bytes::{Bytes, BytesMut};

use crate::anthropic::Usage;
use crate::json;
use crate::sse::{self, SseParser};

/// Largest prefix of a stream [`SseModelRewriter`] holds while it waits for the end of the
/// first `message_start` event (Anthropic's is well under 1 KiB). Beyond it the stream is
/// relayed unchanged.
pub const MAX_HELD_BYTES: usize = 64 * 1024;

/// Replaces the value of the top-level `model` of a Message body with `model`. `None` when
/// nothing needs to change: the body is not a JSON object, has no string `model`, or already
/// names `model`.
pub fn set_message_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    read_message(body, Some(model)).body
}

/// A non-streaming Message answer, read once (the body's top level is scanned a single time).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MessageAnswer {
    /// The body with its `model` set to the requested name; `None` when it is to be sent as it
    /// came (no name to set, the name already matches, or the body is not a Message object).
    pub body: Option<Vec<u8>>,
    /// Its `usage`, when it has one.
    pub usage: Option<Usage>,
}

/// Reads a non-streaming Message body: its usage, and (when `model` is given) the body with the
/// top-level `model` replaced by it, as [`set_message_model`] does.
pub fn read_message(body: &[u8], model: Option<&str>) -> MessageAnswer {
    // Only the two members are kept (borrowed); the rest is skipped, not collected.
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow, default)]
        model: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    let Ok(top) = serde_json::from_slice::<Top<'_>>(body) else {
        return MessageAnswer::default();
    };
    MessageAnswer {
        usage: top.usage.and_then(crate::anthropic::usage_from_raw),
        body: model.and_then(|m| splice_model(body, top.model?, m)),
    }
}

/// Replaces `message.model` in the JSON of a `message_start` event with `model`. `None` when
/// nothing needs to change (not an object, no `message` object with a string `model`, or the
/// name already matches).
pub fn set_message_start_model(event: &[u8], model: &str) -> Option<Vec<u8>> {
    // Only the members on the way to `message.model` are kept (borrowed); the rest is skipped.
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        message: Message<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        model: &'a serde_json::value::RawValue,
    }
    let event_json: Event<'_> = serde_json::from_slice(event).ok()?;
    splice_model(event, event_json.message.model, model)
}

/// `outer` with the raw value `old` (a slice of `outer`) replaced by `model` as a JSON string;
/// `None` if `old` is not a string or already equals `model`.
fn splice_model(outer: &[u8], old: &serde_json::value::RawValue, model: &str) -> Option<Vec<u8>> {
    let current: String = json::decode(old)?;
    if current == model {
        return None;
    }
    let raw = old.get().as_bytes();
    // `old` borrows from `outer`: its position is the distance between the two pointers.
    let start = (raw.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(raw.len())?;
    let (head, tail) = (outer.get(..start)?, outer.get(end..)?);
    let mut out = Vec::with_capacity(outer.len() + model.len());
    out.extend_from_slice(head);
    json::write_str(&mut out, model);
    out.extend_from_slice(tail);
    Some(out)
}

/// Rewrites `message.model` of the first `message_start` event of an Anthropic SSE stream,
/// chunk by chunk.
///
/// Until that event is complete the rewriter holds the bytes received (at most
/// [`MAX_HELD_BYTES`]); `ping` events and comments before it are released as they complete.
/// Once the event is complete it is emitted (rewritten when its name differs), and from then on
/// every chunk is returned as it came, without copying. If the first event is anything else,
/// or the prefix grows past the cap, the held bytes are released unchanged and the rewriter
/// steps aside. A stream that ends while bytes are held ends inside an unterminated event,
/// which SSE clients discard; [`SseModelRewriter::finish`] returns those bytes anyway.
#[derive(Debug)]
pub struct SseModelRewriter {
    model: String,
    held: BytesMut,
    done: bool,
}

impl SseModelRewriter {
    /// A rewriter reporting `model` in the stream's `message_start`.
    pub fn new(model: impl Into<String>) -> Self {
        SseModelRewriter {
            model: model.into(),
            held: BytesMut::new(),
            done: false,
        }
    }

    /// Whether the first `message_start` was handled (or skipped): chunks now pass through.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes the next chunk of the upstream stream; returns the bytes to send on now (possibly
    /// empty while the first event is incomplete).
    pub fn push(&mut self, chunk: &Bytes) -> Bytes {
        if self.done {
            return chunk.clone();
        }
        self.held.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.held) {
            let event = self.held.split_to(end);
            let mut parser = SseParser::new();
            parser.push(&event);
            match parser.next_event() {
                // A comment-only block or a keep-alive before the message: pass it on.
                None => out.extend_from_slice(&event),
                Some(e) if e.event.as_deref() == Some("ping") => out.extend_from_slice(&event),
                Some(e) => {
                    match (e.event.as_deref() == Some("message_start"))
                        .then(|| set_message_start_model(e.data.as_bytes(), &self.model))
                        .flatten()
                    {
                        Some(data) => out.extend_from_slice(&sse::event("message_start", &data)),
                        None => out.extend_from_slice(&event),
                    }
                    self.done = true;
                    break;
                }
            }
        }
        if self.done || self.held.len() > MAX_HELD_BYTES {
            self.done = true;
            out.extend_from_slice(&self.held.split());
        }
        out.freeze()
    }

    /// The upstream ended: the bytes still held, if any.
    pub fn finish(&mut self) -> Bytes {
        self.done = true;
        self.held.split().freeze()
    }
}

/// The length of the first complete event in `buf` (up to and including the blank line that
/// ends it), if there is one. Lines end with `\n`, `\r\n` or `\r`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        let len = match buf[i] {
            b'\n' => 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => 2,
            // A `\r` at the end of the buffer may be the first half of `\r\n`: wait for more.
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            return Some(i + len);
        }
        i += len;
        line_start = i;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_end_finds_the_blank_line_with_any_terminator() {
        assert_eq!(event_end(b"event: a\ndata: {}\n\nrest"), Some(19));
        assert_eq!(event_end(b"event: a\r\ndata: {}\r\n\r\n"), Some(22));
        assert_eq!(event_end(b"event: a\rdata: {}\r\rnext"), Some(19));
        // A final `\r` may be half of `\r\n`: the event is complete only with the next byte.
        assert_eq!(event_end(b"event: a\rdata: {}\r\r"), None);
        assert_eq!(event_end(b"event: a\ndata: {}\n"), None);
        assert_eq!(event_end(b"event: a\ndata: {}\r\n\r"), None);
        assert_eq!(event_end(b"\n"), Some(1));
    }
}

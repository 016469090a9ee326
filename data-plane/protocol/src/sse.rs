//! Server-sent events as the Anthropic Messages API uses them: writer helpers and an incremental
//! parser that follows the WHATWG event-stream rules
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>).

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The keep-alive event Anthropic sends, byte for byte. Bedrock streams carry none, so the data
/// plane synthesizes it during gaps (Claude Code aborts a stream silent for 300 s).
pub const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Formats one event: `event: NAME\ndata: DATA\n\n`.
///
/// `name` must not contain line breaks (callers pass fixed names or validated event types). If
/// `data` contains line breaks (e.g. pretty-printed JSON) each line becomes its own `data:` line,
/// which a conforming parser joins back with `\n`, so the frame can never be split or ended early.
pub fn event(name: &str, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(name.len() + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    let mut rest = data;
    loop {
        out.put_slice(b"data: ");
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                out.put_slice(rest);
                out.put_u8(b'\n');
                break;
            }
            Some(i) => {
                out.put_slice(&rest[..i]);
                out.put_u8(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, `None` when absent or empty (WHATWG default type `message`).
    pub event: Option<String>,
    /// All `data:` lines of the event joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser.
///
/// [`SseParser::push`] accepts arbitrary chunks (split anywhere, including inside a UTF-8
/// sequence or between `\r` and `\n`); complete events are queued and taken with
/// [`SseParser::next_event`]. Only the incomplete last line is buffered and scanning resumes where
/// it stopped, so total work is linear in the input. Per WHATWG, lines starting with `:` are
/// comments, `\n`, `\r\n` and `\r` all end a line, one space after the colon is stripped, a
/// leading byte-order mark is ignored, fields other than `event` and `data` are ignored (`id` and
/// `retry` are irrelevant to a proxy), events without data are not dispatched, and an event not
/// terminated by a blank line when the stream ends is discarded.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The incomplete current line.
    line: BytesMut,
    /// How much of `line` is known to contain no line terminator.
    scanned: usize,
    /// The previous chunk ended in `\r`; a `\n` at the start of the next one belongs to it.
    skip_lf: bool,
    /// Whether the first line was seen (for the byte-order mark).
    started: bool,
    event_type: String,
    data: String,
    ready: VecDeque<SseEvent>,
}

impl SseParser {
    /// A new parser at the start of a stream.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds received bytes, parsing every complete line they finish.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            if bytes.first() == Some(&b'\n') {
                bytes = &bytes[1..];
            }
        }
        self.line.extend_from_slice(bytes);
        loop {
            let found = self.line[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            let Some(pos) = found else {
                self.scanned = self.line.len();
                return;
            };
            let end = self.scanned + pos;
            let line = self.line.split_to(end).freeze();
            let terminator = self.line.get_u8();
            if terminator == b'\r' {
                match self.line.first() {
                    Some(b'\n') => self.line.advance(1),
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.scanned = 0;
            self.process_line(&line);
        }
    }

    /// Takes the next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// Bytes of an unterminated line currently buffered.
    pub fn buffered_len(&self) -> usize {
        self.line.len()
    }

    fn process_line(&mut self, mut line: &[u8]) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event_type = std::mem::take(&mut self.event_type);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        if data.ends_with('\n') {
            data.pop();
        }
        let event = (!event_type.is_empty()).then_some(event_type);
        self.ready.push_back(SseEvent { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        p.push(input);
        std::iter::from_fn(|| p.next_event()).collect()
    }

    #[test]
    fn event_formats_one_frame() {
        assert_eq!(
            &event("message_stop", br#"{"type":"message_stop"}"#)[..],
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
    }

    #[test]
    fn event_splits_multiline_data_losslessly() {
        let data = b"{\n  \"a\": 1,\r\n  \"b\": 2\r}";
        let frame = event("x", data);
        assert_eq!(
            &frame[..],
            b"event: x\ndata: {\ndata:   \"a\": 1,\ndata:   \"b\": 2\ndata: }\n\n"
        );
        let events = parse_all(&frame);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "{\n  \"a\": 1,\n  \"b\": 2\n}");
        let v: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "b": 2}));
    }

    #[test]
    fn ping_parses_as_ping() {
        assert_eq!(
            parse_all(PING),
            vec![SseEvent {
                event: Some("ping".into()),
                data: r#"{"type": "ping"}"#.into()
            }]
        );
    }
}

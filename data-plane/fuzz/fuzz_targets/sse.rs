//! The SSE parser (and the Anthropic usage watch that reads its events) on arbitrary bytes.
//!
//! Each input is parsed whole, one byte at a time and in chunks derived from the input; all three
//! must yield the same events, only the unterminated last line may stay buffered, and
//! `sse::event` of every event must parse back to that event.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{chunks, splits};
use tollgate_protocol::anthropic::{UsageTracker, usage_from_message};
use tollgate_protocol::sse::{self, SseEvent, SseParser};

fn parse(data: &[u8], lens: &[usize]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut fed = 0;
    let mut line_start = 0;
    for chunk in chunks(data, lens) {
        parser.push(chunk);
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n' || b == b'\r') {
            line_start = fed + i + 1;
        }
        fed += chunk.len();
        // Linear and bounded: exactly the bytes after the last line terminator are buffered.
        assert_eq!(parser.buffered_len(), fed - line_start, "after {fed} bytes");
        events.extend(std::iter::from_fn(|| parser.next_event()));
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data, &[data.len()]);
    assert_eq!(parse(data, &vec![1; data.len()]), whole, "byte by byte");
    assert_eq!(
        parse(data, &splits(data, 61)),
        whole,
        "input-derived splits"
    );

    let mut usage = UsageTracker::new();
    for event in &whole {
        assert!(!event.data.contains('\r'));
        usage.observe_sse(event);
        let _ = usage_from_message(event.data.as_bytes());

        // The writer's frame of this event parses back to it.
        let name = event.event.as_deref().unwrap_or("message");
        assert!(!name.contains(['\n', '\r']));
        let frame = sse::event(name, event.data.as_bytes());
        let mut parser = SseParser::new();
        parser.push(&frame);
        let back = parser.next_event().expect("a written frame parses");
        assert_eq!(back.event.as_deref(), Some(name));
        assert_eq!(back.data, event.data);
        assert_eq!(parser.next_event(), None);
        assert_eq!(parser.buffered_len(), 0);
    }
    let _ = usage.usage();
});

//! Content logging on the request path: what a request's [`Draft`](crate::server::Draft) keeps
//! of its bodies when its virtual key records them (`VirtualKey::content_max_bytes`), and the
//! `Content` it adds to the usage record. Keys without it pay one `None` check per request and
//! per streamed chunk.
//!
//! * The request: the body as the Anthropic route received it (a format ingress's translation),
//!   kept as a slice of the request's own buffer when the body is within the cap (no copy until
//!   the record is finished), else as a copy of its head, so a large request's buffer is not
//!   held for the length of a stream.
//! * The answer: every byte the Anthropic relay sends (a unary answer, a stream's events and its
//!   closing error event, an error envelope), up to the cap; the gateway's pings are left out.
//! * At the end: each body's credentials masked, then the body cut at a character boundary
//!   ([`tollgate_proto::content::finish_body`]; [`MASK_LOOKAHEAD`] bytes past the cap are kept
//!   until then, so a key that straddles the cap is masked whole), with the whole sizes, so a cut
//!   body is known to be cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tollgate_proto::content::{MASK_LOOKAHEAD, finish_body};
use tollgate_proto::usage::v1::Content;

/// Default bound of recorded bodies held in memory on their way to the control plane: 256 MiB.
pub const DEFAULT_MAX_HELD_BYTES: usize = 256 * 1024 * 1024;

/// The bound of recorded bodies a data plane holds in memory on their way to the control plane
/// (the usage queue, the reporter's batches and spool, the all-in-one's ingest). Every recorded
/// body's bytes carry a guard that gives its size back when the last reference to them is
/// dropped, wherever that happens; a record whose bodies would pass the bound is delivered
/// without them (its usage kept), counted and logged.
#[derive(Debug)]
pub struct ContentBudget {
    max: usize,
    held: AtomicUsize,
    dropped: AtomicU64,
}

impl ContentBudget {
    pub fn new(max: usize) -> Arc<ContentBudget> {
        Arc::new(ContentBudget {
            max,
            held: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Bytes of recorded bodies held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Records delivered without their bodies because the bound was reached.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `content` with its bodies counted against the bound, or `None` (counted and logged)
    /// when they would pass it.
    pub fn admit(self: &Arc<Self>, request_id: &str, content: Content) -> Option<Content> {
        let len = content.request.len() + content.response.len();
        let admitted = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + len <= self.max).then_some(held + len)
            })
            .is_ok();
        if !admitted {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                request_id,
                bytes = len,
                held = self.held(),
                max = self.max,
                content_dropped_total = n,
                "recorded bodies dropped: the data plane holds its limit of them; the usage record goes without"
            );
            return None;
        }
        Some(Content {
            request: self.guarded(content.request),
            response: self.guarded(content.response),
            ..content
        })
    }

    fn guarded(self: &Arc<Self>, bytes: Bytes) -> Bytes {
        if bytes.is_empty() {
            return bytes;
        }
        Bytes::from_owner(Held {
            bytes,
            budget: Arc::clone(self),
        })
    }
}

/// A recorded body's bytes and the budget they count against, given back on drop.
struct Held {
    bytes: Bytes,
    budget: Arc<ContentBudget>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .held
            .fetch_sub(self.bytes.len(), Ordering::AcqRel);
    }
}

/// The bodies of one request, as far as the cap keeps them.
#[derive(Debug)]
pub struct Capture {
    max: usize,
    request: Bytes,
    request_bytes: u64,
    response: Vec<u8>,
    response_bytes: u64,
}

impl Capture {
    /// Starts a capture of at most `max` bytes per body with the request's body.
    pub fn new(max: u32, request: &Bytes) -> Box<Capture> {
        let max = max as usize;
        let keep = max + MASK_LOOKAHEAD;
        Box::new(Capture {
            max,
            request: if request.len() <= keep {
                request.clone()
            } else {
                Bytes::copy_from_slice(&request[..keep])
            },
            request_bytes: request.len() as u64,
            response: Vec::new(),
            response_bytes: 0,
        })
    }

    /// Bytes sent to the client.
    pub fn response(&mut self, chunk: &[u8]) {
        self.response_bytes += chunk.len() as u64;
        // As for the request: the lookahead past the cap is kept for the masking.
        let room = (self.max + MASK_LOOKAHEAD).saturating_sub(self.response.len());
        if room > 0 {
            self.response
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    /// The record's `Content`: both bodies with their credentials masked, cut to the cap.
    pub fn finish(self) -> Content {
        let request = finish_body(self.request.to_vec(), self.request_bytes, self.max);
        let response = finish_body(self.response, self.response_bytes, self.max);
        Content {
            request: Bytes::from(request),
            request_bytes: self.request_bytes,
            response: Bytes::from(response),
            response_bytes: self.response_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies count against the budget until the last reference to them is dropped (a clone,
    /// as a resent batch holds, keeps them counted); past the bound a record loses its bodies.
    #[test]
    fn the_budget_bounds_the_bodies_held_until_they_are_dropped() {
        let budget = ContentBudget::new(100);
        let body = |n: usize| Content {
            request: Bytes::from(vec![b'q'; n]),
            request_bytes: n as u64,
            response: Bytes::from(vec![b'a'; n]),
            response_bytes: n as u64,
        };
        let first = budget.admit("r1", body(30)).expect("60 of 100");
        assert_eq!(budget.held(), 60);
        assert!(budget.admit("r2", body(30)).is_none(), "120 would pass 100");
        assert_eq!(budget.dropped_total(), 1);
        let copy = first.clone();
        drop(first);
        assert_eq!(budget.held(), 60, "a clone still holds them");
        assert_eq!(copy.request, Bytes::from(vec![b'q'; 30]));
        drop(copy);
        assert_eq!(budget.held(), 0);
        assert!(budget.admit("r3", body(50)).is_some(), "room again");
        assert_eq!(budget.held(), 0, "dropped at once");
    }

    #[test]
    fn bodies_are_cut_at_the_cap_on_a_character_boundary_with_their_whole_sizes() {
        let request = Bytes::from("ééééé"); // 10 bytes
        let mut c = Capture::new(5, &request);
        c.response(b"ab");
        c.response("cé".as_bytes());
        c.response(b"never kept");
        let content = c.finish();
        assert_eq!(content.request, Bytes::from("éé"));
        assert_eq!(content.request_bytes, 10);
        assert_eq!(content.response, Bytes::from("abcé"));
        assert_eq!(content.response_bytes, 2 + 3 + 10);
    }

    /// A request far larger than the cap is not held: its head is copied.
    #[test]
    fn a_large_request_is_copied_not_held() {
        let request = Bytes::from(vec![b'x'; 1 << 20]);
        let c = Capture::new(16, &request);
        assert_eq!(c.request.len(), 16 + MASK_LOOKAHEAD);
        assert_ne!(c.request.as_ptr(), request.as_ptr(), "a copy, not a slice");
        let small = Bytes::from_static(b"{}");
        let c = Capture::new(16, &small);
        assert_eq!(
            c.request.as_ptr(),
            small.as_ptr(),
            "within the cap: the buffer itself"
        );
        assert_eq!(c.finish().request, small);
    }

    #[test]
    fn bodies_under_the_cap_are_kept_whole_and_credentials_masked() {
        let request = Bytes::from(r#"{"messages":[{"content":"use AKIAIOSFODNN7EXAMPLE"}]}"#);
        let mut c = Capture::new(1024, &request);
        c.response(b"event: message_start\n");
        c.response(b"data: {}\n\n");
        let content = c.finish();
        assert_eq!(
            content.request,
            Bytes::from(r#"{"messages":[{"content":"use ********************"}]}"#)
        );
        assert_eq!(content.request_bytes, request.len() as u64);
        assert_eq!(
            content.response,
            Bytes::from("event: message_start\ndata: {}\n\n")
        );
        assert_eq!(content.response_bytes, 31);
    }
}

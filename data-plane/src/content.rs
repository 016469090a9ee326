//! Content logging on the request path: what a request's [`Draft`](crate::server::Draft) keeps
//! of its bodies when its virtual key records them (`VirtualKey::content_max_bytes`), and the
//! `Content` it adds to the usage record. Keys without it pay one `None` check per request and
//! per streamed chunk.
//!
//! * The request: the body as the Anthropic route received it (a format ingress's translation),
//!   kept as a slice of the request's own buffer (no copy until the record is finished).
//! * The answer: every byte the Anthropic relay sends (a unary answer, a stream's events and its
//!   closing error event, an error envelope), up to the cap; the gateway's pings are left out.
//! * At the end: each body cut at a character boundary and its credentials masked
//!   ([`tollgate_proto::content`]), with the whole sizes, so a cut body is known to be cut.

use bytes::Bytes;
use tollgate_proto::content::{cut, mask_secrets};
use tollgate_proto::usage::v1::Content;

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
        Box::new(Capture {
            max,
            // One byte more than kept, so the cut can tell where a character ends.
            request: request.slice(..request.len().min(max.saturating_add(1))),
            request_bytes: request.len() as u64,
            response: Vec::new(),
            response_bytes: 0,
        })
    }

    /// Bytes sent to the client.
    pub fn response(&mut self, chunk: &[u8]) {
        self.response_bytes += chunk.len() as u64;
        // As for the request: one byte beyond the cap is kept for the cut.
        let room = (self.max + 1).saturating_sub(self.response.len());
        if room > 0 {
            self.response
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    /// The record's `Content`: both bodies cut to the cap, credentials masked.
    pub fn finish(self) -> Content {
        let mut request = self.request.to_vec();
        request.truncate(cut(&request, self.max));
        mask_secrets(&mut request);
        let mut response = self.response;
        response.truncate(cut(&response, self.max));
        mask_secrets(&mut response);
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

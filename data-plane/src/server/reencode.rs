//! The response body of a route that answers in another format than Anthropic's (the
//! Bedrock-format and OpenAI-format ingresses): the inference API's Anthropic SSE answer (the
//! providers' relay), re-encoded as each event completes.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use http_body::Frame;

/// An incremental re-encoding of Anthropic SSE: `push` takes bytes split anywhere and returns
/// the output of the events they complete; `finish` the output once the answer has ended.
pub(crate) trait Reencode: Send + Unpin + 'static {
    fn push(&mut self, chunk: &[u8]) -> Bytes;
    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
}

/// The client's body: it reads the relay body only when the client asks for more, like the
/// relay itself, so backpressure and the client going away reach the upstream unchanged, and
/// nothing is buffered beyond the event being completed. After the re-encoding has ended its
/// output (an error event), the rest of the relay body is still read, without output, so the
/// relay records how the stream ended.
pub(crate) struct ReencodedBody<C: Reencode> {
    inner: Body,
    conv: C,
    finished: bool,
}

impl<C: Reencode> ReencodedBody<C> {
    pub(crate) fn new(inner: Body, conv: C) -> ReencodedBody<C> {
        ReencodedBody {
            inner,
            conv,
            finished: false,
        }
    }
}

impl<C: Reencode> http_body::Body for ReencodedBody<C> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let out = this.conv.push(&data);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.finished = true;
                    let tail = this.conv.finish();
                    return Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))));
                }
            }
        }
    }
}

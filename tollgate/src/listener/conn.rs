//! One connection's timing: what its service knows ([`ConnShared`]: requests started,
//! request bodies being read, responses finished) and the IO wrapper ([`TimedIo`]) that turns
//! it into the deadline of the wait in progress whenever hyper waits for bytes.
//!
//! | wait | when (HTTP/1.1) | when (HTTP/2) | deadline |
//! |---|---|---|---|
//! | [`Wait::Handshake`] | — | fewer than 24 bytes (the preface) received | accept + handshake timeout |
//! | [`Wait::HeaderRead`] | no request in progress, and the first request or bytes of the next head received | — | first byte (accept, for the first request) + header timeout |
//! | [`Wait::BodyRead`] | a request in progress whose body is not read to its end | — | end of head + body timeout |
//! | [`Wait::Idle`] | no request in progress, nothing of the next received | no call in progress | end of the last response + idle timeout |
//! | [`Wait::Send`] | a write the client's socket does not take (the client stopped reading) | the same | first refused write + send timeout |
//! | none | a request in progress, its body read (handler working, response being sent) | a call in progress | — |
//!
//! The send wait is timed apart from the others, on its own timer (made at the first refused
//! write, so a connection whose writes never block has none): a client reading its stream, even
//! slowly, makes writes progress and never meets it, while one that pipelines requests and never
//! reads its answers cannot keep the connection (hyper reads no further while its answers wait).
//!
//! "Request in progress" runs from hyper handing the request to the service until the
//! response body is finished or dropped; "body read" from then until the request body returned
//! its end, failed, or was dropped (an empty body never counts).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;
use tower::util::Oneshot;

use super::ListenerStats;

/// The waits a connection can time out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    HeaderRead = 0,
    BodyRead = 1,
    Idle = 2,
    Handshake = 3,
    Send = 4,
}

impl Wait {
    pub const ALL: [Wait; 5] = [
        Wait::HeaderRead,
        Wait::BodyRead,
        Wait::Idle,
        Wait::Handshake,
        Wait::Send,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Wait::HeaderRead => "header_read",
            Wait::BodyRead => "body_read",
            Wait::Idle => "idle",
            Wait::Handshake => "handshake",
            Wait::Send => "send",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Wait::HeaderRead => "request head not received in time",
            Wait::BodyRead => "request body not received in time",
            Wait::Idle => "connection idle",
            Wait::Handshake => "HTTP/2 preface not received in time",
            Wait::Send => "the client took no response bytes in time",
        }
    }
}

/// The protocol of a connection and its timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    Http1 {
        header_read: Duration,
        body_read: Duration,
        idle: Duration,
        send: Duration,
    },
    H2 {
        handshake: Duration,
        idle: Duration,
        send: Duration,
    },
}

impl Mode {
    fn send(self) -> Duration {
        match self {
            Mode::Http1 { send, .. } | Mode::H2 { send, .. } => send,
        }
    }
}

/// The HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) is 24 bytes.
const H2_PREFACE_LEN: usize = 24;

/// What the service side of a connection tells its IO side.
#[derive(Debug, Default)]
pub(super) struct ConnShared {
    /// Requests handed to the service.
    started: AtomicU64,
    /// Requests whose response body finished or was dropped (or whose future was dropped).
    finished: AtomicU64,
    /// Request bodies not yet read to their end (nor dropped).
    bodies_open: AtomicUsize,
}

/// The wait a [`TimedIo`] is timing: what, for which request counts, and until when.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wait: Wait,
    started: u64,
    finished: u64,
    deadline: Instant,
}

/// The IO of one connection, timing the waits for the client's bytes (see the module
/// documentation). Writes pass through.
pub(super) struct TimedIo<T> {
    inner: T,
    mode: Mode,
    shared: Arc<ConnShared>,
    stats: Arc<ListenerStats>,
    peer: SocketAddr,
    /// One timer for the connection's life. It may be armed earlier than the current deadline
    /// (then it wakes the connection once, and is moved on), never later.
    sleep: Pin<Box<Sleep>>,
    timing: Option<Timing>,
    /// HTTP/1.1: the value of `started` when bytes of a next head were last read.
    head_for: Option<u64>,
    /// HTTP/2: preface bytes still to come.
    preface_left: usize,
    /// Set once a wait ran out; the connection only sees EOF or errors after that.
    expired: Option<Wait>,
    /// While writes are refused: when the send wait runs out. Cleared by a write that goes
    /// through.
    send_deadline: Option<Instant>,
    /// The send wait's timer, made at the first refused write.
    send_sleep: Option<Pin<Box<Sleep>>>,
}

impl<T> TimedIo<T> {
    /// The error every write gets once the send timeout has closed the connection.
    fn send_expired(&self) -> Option<io::Error> {
        matches!(self.expired, Some(Wait::Send))
            .then(|| io::Error::new(io::ErrorKind::TimedOut, Wait::Send.message()))
    }

    pub(super) fn new(
        inner: T,
        mode: Mode,
        accepted_at: Instant,
        peer: SocketAddr,
        shared: &Arc<ConnShared>,
        stats: &Arc<ListenerStats>,
    ) -> Self {
        // The first wait runs from the accept: the first request's head, or the handshake.
        let (wait, timeout, preface_left) = match mode {
            Mode::Http1 { header_read, .. } => (Wait::HeaderRead, header_read, 0),
            Mode::H2 { handshake, .. } => (Wait::Handshake, handshake, H2_PREFACE_LEN),
        };
        let deadline = accepted_at + timeout;
        TimedIo {
            inner,
            mode,
            shared: Arc::clone(shared),
            stats: Arc::clone(stats),
            peer,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timing: Some(Timing {
                wait,
                started: 0,
                finished: 0,
                deadline,
            }),
            head_for: None,
            preface_left,
            expired: None,
            send_deadline: None,
            send_sleep: None,
        }
    }

    fn timeout(&self, wait: Wait) -> Duration {
        match (self.mode, wait) {
            (Mode::Http1 { header_read, .. }, Wait::HeaderRead) => header_read,
            (Mode::Http1 { body_read, .. }, Wait::BodyRead) => body_read,
            (Mode::Http1 { idle, .. } | Mode::H2 { idle, .. }, Wait::Idle) => idle,
            (mode, Wait::Send) => mode.send(),
            (Mode::H2 { handshake, .. }, _) => handshake,
            // Not produced for HTTP/1.1.
            (Mode::Http1 { header_read, .. }, Wait::Handshake) => header_read,
        }
    }

    /// Bytes arrived.
    fn on_bytes(&mut self, n: usize) {
        match self.mode {
            Mode::H2 { .. } => self.preface_left = self.preface_left.saturating_sub(n),
            Mode::Http1 { .. } => {
                // Bytes that are no body's are the head of the next request.
                if self.shared.bodies_open.load(Ordering::Acquire) == 0 {
                    self.head_for = Some(self.shared.started.load(Ordering::Acquire));
                }
            }
        }
    }

    /// What the connection is waiting for now; `None` while a request is being handled.
    fn current_wait(&self, started: u64, finished: u64) -> Option<Wait> {
        let in_progress = started != finished;
        match self.mode {
            Mode::H2 { .. } if self.preface_left > 0 => Some(Wait::Handshake),
            Mode::H2 { .. } => (!in_progress).then_some(Wait::Idle),
            Mode::Http1 { .. } if in_progress => {
                (self.shared.bodies_open.load(Ordering::Acquire) > 0).then_some(Wait::BodyRead)
            }
            Mode::Http1 { .. } if started == 0 || self.head_for == Some(started) => {
                Some(Wait::HeaderRead)
            }
            Mode::Http1 { .. } => Some(Wait::Idle),
        }
    }

    /// Arms the timer for the current wait (its waker is the connection task's); `Some` when
    /// the wait's deadline has passed.
    fn arm(&mut self, cx: &mut Context<'_>) -> Option<Wait> {
        let started = self.shared.started.load(Ordering::Acquire);
        let finished = self.shared.finished.load(Ordering::Acquire);
        let Some(wait) = self.current_wait(started, finished) else {
            self.timing = None;
            return None;
        };
        let deadline = match self.timing {
            Some(t) if t.wait == wait && t.started == started && t.finished == finished => {
                t.deadline
            }
            // A new wait starts now.
            _ => {
                let deadline = Instant::now() + self.timeout(wait);
                self.timing = Some(Timing {
                    wait,
                    started,
                    finished,
                    deadline,
                });
                deadline
            }
        };
        loop {
            if self.sleep.deadline() > deadline {
                self.sleep.as_mut().reset(deadline);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return None,
                Poll::Ready(()) if self.sleep.deadline() >= deadline => return Some(wait),
                // Armed for an earlier wait: move it on.
                Poll::Ready(()) => self.sleep.as_mut().reset(deadline),
            }
        }
    }

    /// A write was refused (the client's socket is full): times the send wait on its own timer;
    /// `true` when it has run out.
    fn write_refused(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = *self
            .send_deadline
            .get_or_insert_with(|| Instant::now() + self.mode.send());
        let sleep = self
            .send_sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }

    /// The outcome of a write (or flush) to the client's socket, with the send wait applied.
    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending if self.write_refused(cx) => {
                let _ = self.expire(Wait::Send);
                Poll::Ready(Err(self.send_expired().expect("just expired")))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.send_deadline = None;
                ready
            }
        }
    }

    fn expire(&mut self, wait: Wait) -> Poll<io::Result<()>> {
        self.expired = Some(wait);
        self.stats.count_timeout(wait);
        tracing::debug!(
            listener = self.stats.name,
            peer = %self.peer,
            timeout = wait.label(),
            "closing a connection: {}",
            wait.message()
        );
        Self::expired_result(wait)
    }

    fn expired_result(wait: Wait) -> Poll<io::Result<()>> {
        match wait {
            // EOF: hyper closes an idle connection quietly.
            Wait::Idle => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, wait.message()))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(wait) = this.expired {
            return Self::expired_result(wait);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.on_bytes(n);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.arm(cx) {
                Some(wait) => this.expire(wait),
                None => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.send_expired() {
            return Poll::Ready(Err(e));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.send_expired() {
            return Poll::Ready(Err(e));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        // A TLS stream's flush waits for the socket too.
        let flushed = this.on_write(cx, flushed);
        // hyper flushes each response's end, and may then wait without reading again (its last
        // read already waits for the socket): the idle wait that starts now is armed here.
        if flushed.is_ready() && this.expired.is_none() && this.arm(cx).is_some() {
            // Passed already: have the connection read, and see the timeout there.
            cx.waker().wake_by_ref();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The hyper service of one connection: counts requests in [`ConnShared`], adds the
/// connection's info (`info`) to each request's extensions, and calls `inner`.
pub(super) struct ConnService<S, X> {
    inner: S,
    shared: Arc<ConnShared>,
    info: X,
}

impl<S, X> ConnService<S, X> {
    pub(super) fn new(inner: S, shared: Arc<ConnShared>, info: X) -> Self {
        ConnService {
            inner,
            shared,
            info,
        }
    }
}

impl<S, X, B> hyper::service::Service<Request<Incoming>> for ConnService<S, X>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>, Error = Infallible> + Clone,
    X: Clone + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<B>>;
    type Error = Infallible;
    type Future = InProgress<Oneshot<S, Request<RequestBody>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.shared.started.fetch_add(1, Ordering::Release);
        let finished = Finished(Arc::clone(&self.shared));
        req.extensions_mut().insert(self.info.clone());
        let req = req.map(|body| RequestBody::new(body, &self.shared));
        InProgress {
            inner: self.inner.clone().oneshot(req),
            finished: Some(finished),
        }
    }
}

/// Marks a request finished when dropped (with its response body, or with its future).
struct Finished(Arc<ConnShared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Release);
    }
}

pin_project! {
    /// The response future of a request in progress.
    pub(super) struct InProgress<F> {
        #[pin]
        inner: F,
        finished: Option<Finished>,
    }
}

impl<F, B> Future for InProgress<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let finished = this.finished.take();
        Poll::Ready(Ok(response.map(|inner| ResponseBody {
            inner,
            _finished: finished,
        })))
    }
}

pin_project! {
    /// A response body; the request is in progress until it is finished or dropped.
    pub(super) struct ResponseBody<B> {
        #[pin]
        inner: B,
        _finished: Option<Finished>,
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body; counted in [`ConnShared::bodies_open`] until it returns its end, fails, or is
/// dropped. Handlers get it boxed in `axum::body::Body` (as with `axum::serve`).
pub struct RequestBody {
    inner: Incoming,
    open: Option<Arc<ConnShared>>,
}

impl RequestBody {
    fn new(inner: Incoming, shared: &Arc<ConnShared>) -> Self {
        let open = (!inner.is_end_stream()).then(|| {
            shared.bodies_open.fetch_add(1, Ordering::Release);
            Arc::clone(shared)
        });
        RequestBody { inner, open }
    }

    fn close(&mut self) {
        if let Some(shared) = self.open.take() {
            shared.bodies_open.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.close();
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => this.close(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.close(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

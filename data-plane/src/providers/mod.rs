//! Upstream calls: the I/O around the pure translations of `tollgate-protocol`.
//!
//! Each provider module turns a routed [`Call`] into one upstream request, relays the answer
//! (streams event by event) and completes the request's usage record: [`bedrock`] (InvokeModel,
//! SigV4), [`anthropic`] (pass-through), [`vertex`] (Anthropic models on Vertex AI, answers
//! relayed by `anthropic`), [`openai`] (OpenAI-compatible Chat Completions, translated both
//! ways).

pub mod anthropic;
pub mod bedrock;
pub mod openai;
pub mod vertex;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use http_body::Frame;
use tokio::time::Sleep;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::sse;

use crate::DataPlane;
use crate::error::ProxyError;
use crate::logsafe::{log_safe, log_safe_opt};
use crate::runtime::{Provider, ProviderKey, ProviderKind, Runtime};
use crate::server::Draft;

/// Which inference operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Messages,
    CountTokens,
}

/// A routed request, ready to go upstream. It borrows the body's parsed top level.
#[derive(Debug)]
pub struct Call<'a> {
    pub op: Operation,
    /// Keeps the runtime the request was routed with alive until it ends.
    pub runtime: Arc<Runtime>,
    pub provider: Arc<Provider>,
    pub key_index: usize,
    pub upstream_model: String,
    pub via_alias: bool,
    /// The body's top level (the `model` the client sent included), parsed once.
    pub parsed: &'a tollgate_protocol::bedrock::RequestBody<'a>,
    pub stream: bool,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When this attempt was routed (just before it is sent): the total timeout of a
    /// non-streaming call counts from here.
    pub started: Instant,
}

impl Call<'_> {
    /// How long the upstream has to send the response head: the response-header timeout for a
    /// stream, the total timeout for a non-streaming call (whose head comes with its answer).
    pub fn head_timeout(&self) -> Duration {
        if self.stream {
            self.provider.response_header_timeout
        } else {
            self.provider.request_timeout
        }
    }

    /// What is left of a non-streaming call's total timeout, for reading its body.
    pub fn body_timeout(&self) -> Duration {
        self.provider
            .request_timeout
            .saturating_sub(self.started.elapsed())
    }

    pub fn key(&self) -> &ProviderKey {
        &self.provider.keys[self.key_index]
    }

    /// `anthropic-beta` values, split on commas and trimmed, across all header lines.
    pub fn betas(&self) -> Vec<&str> {
        self.headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect()
    }
}

/// An upstream answer whose body has not been read.
pub(crate) type UpstreamResponse = http::Response<crate::upstream::UpstreamBody>;

/// What one attempt at a provider got: an answer (any status, its body not read yet, so the
/// caller can still try elsewhere) or none (the gateway's own error: unreachable, timed out,
/// or the call could not be built).
pub type Outcome = Result<UpstreamResponse, ProxyError>;

/// Why an attempt may be tried elsewhere: its outcome's class, when another provider or key
/// could succeed where this one did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    /// 429: throttled.
    RateLimited,
    /// 529: overloaded.
    Overloaded,
    /// Another 5xx.
    ServerError,
    /// No connection, or it broke before an answer.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// 401 or 403: the upstream refused this key's credential (the client was authenticated by
    /// its virtual key; another key or provider may be allowed).
    KeyRejected,
}

impl Retryable {
    /// The outcome's class when it is worth trying elsewhere; `None` for answers (successes,
    /// and errors of the request itself, which any provider would refuse) and for the
    /// gateway's own refusals.
    pub fn of(outcome: &Outcome) -> Option<Retryable> {
        match outcome {
            Ok(resp) => match resp.status().as_u16() {
                401 | 403 => Some(Retryable::KeyRejected),
                429 => Some(Retryable::RateLimited),
                529 => Some(Retryable::Overloaded),
                500..=599 => Some(Retryable::ServerError),
                _ => None,
            },
            Err(e) => match e.class {
                crate::upstream::UNREACHABLE_CLASS => Some(Retryable::Unreachable),
                crate::upstream::TIMEOUT_CLASS => Some(Retryable::Timeout),
                _ => None,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Retryable::RateLimited => "rate_limited",
            Retryable::Overloaded => "overloaded",
            Retryable::ServerError => "server_error",
            Retryable::Unreachable => "unreachable",
            Retryable::Timeout => "timeout",
            Retryable::KeyRejected => "key_rejected",
        }
    }
}

/// How long an upstream answer asks its client to wait before trying again: `retry-after-ms`
/// (Anthropic), else `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Sends the call to its provider: one attempt (Bedrock retries once itself with fresh
/// credentials when cached ones are rejected).
pub(crate) async fn send(c: &Call<'_>, request_id: &str) -> Outcome {
    match c.provider.kind {
        ProviderKind::Bedrock => bedrock::send(c, request_id).await,
        ProviderKind::Anthropic => anthropic::send(c).await,
        ProviderKind::Vertex => vertex::send(c, request_id).await,
        ProviderKind::OpenAi => openai::send(c, request_id).await,
    }
}

/// The client's response to an attempt's outcome: the answer relayed (translated, streams
/// event by event) or the error. The usage record is completed here for unary answers and
/// errors, and by the stream's [`RelayBody`] for streams.
pub(crate) async fn respond(
    dp: Arc<DataPlane>,
    c: Call<'_>,
    draft: Draft,
    outcome: Outcome,
) -> Response {
    let upstream = match outcome {
        Ok(upstream) => upstream,
        Err(e) => return fail(&dp, draft, e),
    };
    match c.provider.kind {
        ProviderKind::Bedrock => bedrock::respond(dp, c, draft, upstream).await,
        // Vertex answers in Anthropic's format.
        ProviderKind::Anthropic | ProviderKind::Vertex => {
            anthropic::respond(dp, c, draft, upstream).await
        }
        ProviderKind::OpenAi => openai::respond(dp, c, draft, upstream).await,
    }
}

/// The Anthropic SSE response fed by an upstream stream in another format (see [`RelayBody`]),
/// translated by `translation` (Bedrock InvokeModel's or Converse's events, Chat Completions
/// chunks), with pings during silence.
pub(crate) fn translated_stream<T: StreamTranslation>(
    dp: Arc<DataPlane>,
    c: &Call<'_>,
    draft: Draft,
    upstream: UpstreamResponse,
    translation: T,
) -> Response {
    let request_id = draft.record.request_id.clone();
    let body = RelayBody::new(
        Arc::clone(&dp),
        upstream.into_body(),
        translation,
        draft,
        c.provider.stream_idle_timeout,
        Some(dp.config.sse_ping_interval),
    );
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    name_served_by(h, c);
    resp
}

/// A successful non-streaming answer, already translated to Anthropic's Message JSON: the usage
/// record finished (status 200; the time to first token is the whole answer's), the JSON with
/// the request id and the headers naming what served it.
pub(crate) fn message_answer(
    dp: &DataPlane,
    c: &Call<'_>,
    mut draft: Draft,
    message: Bytes,
) -> Response {
    draft.record.time_to_first_token_ms =
        u32::try_from(draft.started.elapsed().as_millis()).unwrap_or(u32::MAX);
    let request_id = draft.record.request_id.clone();
    draft.capture_response(&message);
    draft.finish(dp, 200, "");
    let mut resp = Response::new(Body::from(message));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    name_served_by(h, c);
    resp
}

/// Response header naming the provider that served the request (its configured name).
pub const PROVIDER_HEADER: &str = "x-tollgate-provider";
/// Response header naming the upstream model id that served the request (after aliases).
pub const MODEL_HEADER: &str = "x-tollgate-model";

/// Response header naming the provider key that served the request (its configured name).
pub const PROVIDER_KEY_HEADER: &str = "x-tollgate-provider-key";

/// Names the provider, its key and the upstream model that served the call in the response
/// headers; the body's `message.model` reports the name the client asked for instead.
pub(crate) fn name_served_by(headers: &mut HeaderMap, c: &Call<'_>) {
    if let Ok(v) = http::HeaderValue::from_str(&c.provider.name) {
        headers.insert(PROVIDER_HEADER, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&c.key().name) {
        headers.insert(PROVIDER_KEY_HEADER, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&c.upstream_model) {
        headers.insert(MODEL_HEADER, v);
    }
}

/// Ends a request with an error response and its usage record. The error's internal detail is
/// logged here and never reaches the client.
pub(crate) fn fail(dp: &DataPlane, draft: Draft, err: ProxyError) -> Response {
    if err.class == openai::NOT_SUPPORTED_CLASS {
        // The documented answer to an operation the upstream cannot do (count_tokens on an
        // OpenAI-compatible API), which clients ask for routinely: not a failure to warn about.
        tracing::debug!(
            request_id = %draft.record.request_id,
            provider = %draft.record.provider,
            status = err.status.as_u16(),
            error_class = err.class,
            "operation not supported by the provider"
        );
    } else {
        tracing::warn!(
            request_id = %draft.record.request_id,
            provider = %draft.record.provider,
            status = err.status.as_u16(),
            error_class = err.class,
            message = %log_safe(&err.message),
            detail = log_safe_opt(err.detail.as_deref()),
            "request failed"
        );
    }
    let status = err.status.as_u16();
    let class = err.class;
    let mut draft = draft;
    draft.capture_proxy_error(&err);
    let resp = err.into_response_with(&draft.record.request_id);
    draft.finish(dp, status, class);
    resp
}

/// The gateway's own configuration keeps a provider call from being made (500 `api_error`,
/// class `gateway_config`).
pub(crate) fn config_error(message: impl Into<std::borrow::Cow<'static, str>>) -> ProxyError {
    ProxyError::new(ErrorKind::Api, "gateway_config", message)
}

/// A provider setting that cannot be produced now: an `env.NAME` reference that this data
/// plane's allowlist refuses or whose variable is unset, or a value that is not a valid header.
/// The client learns which setting (`what`) and gets the request id; the variable's name and the
/// rule go to the log only, since a virtual key's holder need not learn how the gateway is
/// configured.
pub(crate) fn setting_unavailable(what: &str, cause: impl std::fmt::Display) -> ProxyError {
    config_error(format!(
        "this provider's {what} cannot be used on this data plane"
    ))
    .with_detail(cause.to_string())
}

/// Largest non-streaming upstream response accepted.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// What a provider's stream translation makes of one upstream chunk.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// Bytes for the client (may be empty).
    pub out: Bytes,
    /// The stream ends after `out`.
    pub end: Option<End>,
}

/// How a relayed stream ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The upstream ended the stream with its own error (a Bedrock exception frame, an
    /// Anthropic `error` event), already relayed to the client as an SSE `error` event. Logged
    /// at warn like an HTTP error; recorded with `status` and `upstream_stream_exception`.
    Upstream {
        status: u16,
        error_type: &'static str,
        message: String,
    },
    /// The gateway ends the stream with an Anthropic `error` event.
    Error {
        kind: ErrorKind,
        status: u16,
        class: &'static str,
        message: String,
        /// Logged, not sent (see [`ProxyError::detail`]).
        detail: Option<String>,
    },
}

impl End {
    /// The upstream sent something the gateway cannot relay: a 502 `api_error` event.
    pub(crate) fn bad_gateway(class: &'static str, message: String) -> End {
        End::Error {
            kind: ErrorKind::Api,
            status: 502,
            class,
            message,
            detail: None,
        }
    }
}

/// A provider's stream translation, driven by [`RelayBody`]. Pure: no I/O, no timers.
pub(crate) trait StreamTranslation: Send + Unpin + 'static {
    /// Translates one chunk of the upstream body.
    fn on_chunk(&mut self, chunk: &Bytes) -> Step;
    /// The upstream body ended: the last bytes for the client (usually none); an error means
    /// it ended too early.
    fn on_end(&mut self) -> Result<Bytes, String>;
    /// Token counts seen so far.
    fn usage(&self) -> Option<tollgate_protocol::anthropic::Usage>;
}

/// The client's response body of a stream: it reads the upstream body as the client's connection
/// asks for more, translates each chunk at once, and writes it out. No task, no queue: a slow
/// client slows the upstream read (TCP backpressure) instead of growing a buffer, and a client
/// that goes away drops this body, which ends the upstream request and records status 499.
///
/// It also sends `ping` events after `ping` of silence (when set) and ends the stream with an
/// error event when the upstream is silent for `idle`.
pub(crate) struct RelayBody<T: StreamTranslation, B = crate::upstream::UpstreamBody> {
    upstream: B,
    translation: T,
    dp: Arc<DataPlane>,
    /// `None` once the usage record is written.
    draft: Option<Draft>,
    /// An error event to send before ending.
    queued: Option<Bytes>,
    ending: Option<(u16, &'static str)>,
    /// Silence from the upstream that ends the stream.
    idle: Deadline,
    /// Silence towards the client after which a `ping` goes out.
    ping: Option<Deadline>,
}

impl<T: StreamTranslation, B> RelayBody<T, B> {
    pub(crate) fn new(
        dp: Arc<DataPlane>,
        upstream: B,
        translation: T,
        draft: Draft,
        idle: Duration,
        ping: Option<Duration>,
    ) -> Self {
        RelayBody {
            upstream,
            translation,
            dp,
            draft: Some(draft),
            queued: None,
            ending: None,
            idle: Deadline::new(idle),
            ping: ping.map(Deadline::new),
        }
    }

    fn end_with(&mut self, end: End) {
        match end {
            End::Upstream {
                status,
                error_type,
                message,
            } => {
                if let Some(draft) = &self.draft {
                    tracing::warn!(
                        request_id = %draft.record.request_id,
                        provider = %draft.record.provider,
                        status,
                        error_type,
                        message = %log_safe(&message),
                        "upstream ended the stream with an error"
                    );
                }
                self.ending = Some((status, "upstream_stream_exception"));
            }
            End::Error {
                kind,
                status,
                class,
                message,
                detail,
            } => {
                if let Some(draft) = &self.draft {
                    tracing::warn!(
                        request_id = %draft.record.request_id,
                        provider = %draft.record.provider,
                        status,
                        error_class = class,
                        message = %log_safe(&message),
                        detail = log_safe_opt(detail.as_deref()),
                        "stream ended with an error event"
                    );
                }
                let event = tollgate_protocol::anthropic::ApiError {
                    kind,
                    status,
                    message,
                };
                self.queued = Some(event.to_sse());
                self.ending = Some((status, class));
            }
        }
    }

    fn finish(&mut self, status: u16, class: &'static str) {
        if let Some(mut draft) = self.draft.take() {
            if let Some(u) = self.translation.usage() {
                draft.set_usage(&u);
            }
            draft.finish(&self.dp, status, class);
        }
    }

    /// Hands `out` to the client. Only upstream output counts as the first output (time to first
    /// token); the gateway's own `ping` events do not.
    fn sent(
        &mut self,
        out: Bytes,
        upstream: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(ping) = &mut self.ping {
            ping.touch();
        }
        if upstream && let Some(draft) = &mut self.draft {
            draft.mark_first_output();
            draft.capture_response(&out);
        }
        Poll::Ready(Some(Ok(Frame::data(out))))
    }
}

/// A silence timeout: `period` after the last activity. Activity only records the time; the
/// timer is re-armed when it fires early, so a busy stream does not touch the timer wheel for
/// every chunk.
struct Deadline {
    period: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(period: Duration) -> Deadline {
        let last = Instant::now();
        Deadline {
            period,
            last,
            timer: Box::pin(tokio::time::sleep_until((last + period).into())),
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Whether `period` has passed since the last activity; if not, the task is woken when it
    /// may have.
    fn passed(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.period;
            if Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due.into());
        }
    }
}

impl<T, B> http_body::Body for RelayBody<T, B>
where
    T: StreamTranslation,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.queued.take() {
                if let Some(draft) = &mut this.draft {
                    draft.capture_response(&event);
                }
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if let Some((status, class)) = this.ending.take() {
                this.finish(status, class);
            }
            if this.draft.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    this.idle.touch();
                    let step = this.translation.on_chunk(&chunk);
                    if let Some(end) = step.end {
                        this.end_with(end);
                    }
                    if !step.out.is_empty() {
                        return this.sent(step.out, true);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // The read error (OS, TLS) is the log's; the client gets a stable message.
                    this.end_with(End::Error {
                        kind: ErrorKind::Api,
                        status: 502,
                        class: "upstream_read",
                        message: "lost the connection to the provider mid-stream".into(),
                        detail: Some(e.to_string()),
                    });
                }
                Poll::Ready(None) => match this.translation.on_end() {
                    Ok(tail) => {
                        this.ending = Some((200, ""));
                        if !tail.is_empty() {
                            return this.sent(tail, true);
                        }
                    }
                    Err(e) => this.end_with(End::bad_gateway(
                        "upstream_truncated",
                        format!("upstream stream ended early: {e}"),
                    )),
                },
                Poll::Pending => {
                    if this.idle.passed(cx) {
                        let message = format!(
                            "upstream stream was silent for {} s",
                            this.idle.period.as_secs()
                        );
                        this.end_with(End::Error {
                            kind: ErrorKind::Timeout,
                            status: 504,
                            class: "upstream_idle_timeout",
                            message,
                            detail: None,
                        });
                        continue;
                    }
                    if let Some(ping) = &mut this.ping
                        && ping.passed(cx)
                    {
                        return this.sent(Bytes::from_static(sse::PING), false);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: StreamTranslation, B> Drop for RelayBody<T, B> {
    fn drop(&mut self) {
        // The client's connection dropped the body before its end: the client went away.
        self.finish(499, "client_closed");
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;
    use crate::DataPlaneConfig;
    use crate::usage::UsageSink;

    /// While the upstream is silent the client gets the gateway's pings; the time to first token
    /// is that of the first upstream output, not of a ping.
    #[tokio::test]
    async fn pings_cover_silence_but_do_not_count_as_the_first_token() {
        let (sink, mut usage) = UsageSink::channel(4);
        let dp = DataPlane::new(DataPlaneConfig::default(), sink);
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let mut body = RelayBody::new(
            dp,
            StreamBody::new(ReceiverStream::new(rx)),
            anthropic::SseWatch::default(),
            Draft::new("req_relay_test".into()),
            Duration::from_secs(30),
            Some(Duration::from_millis(50)),
        );
        let first = body.frame().await.expect("a frame").expect("infallible");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(sse::PING)));

        let silence = Duration::from_millis(300);
        tokio::time::sleep(silence).await;
        let event = Bytes::from_static(b"event: message_start\ndata: {}\n\n");
        tx.send(Ok(Frame::data(event.clone()))).await.expect("send");
        drop(tx);
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            data.push(frame.expect("infallible").into_data().expect("data"));
        }
        assert_eq!(data.last(), Some(&event), "{data:?}");
        assert!(
            data.iter().all(|d| *d == event || *d == sse::PING),
            "{data:?}"
        );

        let record = usage.recv().await.expect("the usage record");
        assert_eq!((record.status, record.error_class.as_str()), (200, ""));
        assert!(
            u128::from(record.time_to_first_token_ms) >= silence.as_millis(),
            "time to first token {} ms counts a ping",
            record.time_to_first_token_ms
        );
    }

    /// A stream that ends while the model rewrite still holds bytes (inside its first event)
    /// relays them as they came, instead of dropping them.
    #[tokio::test]
    async fn bytes_held_by_the_model_rewrite_go_out_when_the_stream_ends() {
        let dp = DataPlane::new(DataPlaneConfig::default(), UsageSink::log_only());
        let partial = Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_st");
        let upstream = StreamBody::new(futures::stream::iter([Ok::<_, std::io::Error>(
            Frame::data(partial.clone()),
        )]));
        let watch = anthropic::SseWatch::renaming("claude-sonnet-4-6");
        let body = RelayBody::new(
            dp,
            upstream,
            watch,
            Draft::new("req_relay_held".into()),
            Duration::from_secs(30),
            None,
        );
        let out = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(out, partial);
    }
}

//! The attempts of one request, from the first routing to the response.
//!
//! The first attempt goes to the model asked for, on a key outlier detection has not ejected.
//! While an attempt's outcome is [`Retryable`] (429, 529, 5xx, no connection, a timeout, or
//! 401/403: the key's credential refused), the next one goes, in this order, to:
//!
//! 1. another key that serves the same entry (another account or region), at once;
//! 2. the same entry again after a jittered exponential backoff (or the upstream's longer
//!    `retry-after`), while its provider's `max_retries` allows and the backoff ends before
//!    the request's deadline;
//! 3. the next entries of the fallback list;
//! 4. as a last resort, ejected keys of the current and later entries.
//!
//! Keys an attempt failed on are left out for the rest of that entry (until a retry after
//! backoff); keys whose credential was refused, for the rest of the request. Nothing has
//! reached the client before the attempt that answers, so the client sees one response. Each
//! attempt is routed and admitted on its own; the given-up attempt's admission is taken back.
//! No retry or fallback starts after the deadline: the first attempt's provider's total timeout,
//! counted from when the request arrived. The usage record names what served and keeps the
//! attempts given up; every outcome is recorded on its key's health ([`crate::health`]). An
//! answer that is a 400 refusing thinking blocks another platform signed ends the run with
//! [`Ran::Unverifiable`] instead: the caller sends the request again without them
//! (`server::without_thinking`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tollgate_proto::usage::v1::Attempt;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::bedrock::RequestBody;

use super::{Draft, refuse};
use crate::DataPlane;
use crate::admission::{self, Estimate};
use crate::error::ProxyError;
use crate::health::{self, Verdict};
use crate::logsafe::log_safe;
use crate::metrics::RouteLabels;
use crate::providers::{self, Call, Operation, Outcome, Retryable};
use crate::routing::{self, Exclude, Pick, RouteError};
use crate::runtime::{KeyCredential, Runtime, VirtualKey};

/// Response header: which entry of the fallback list served (sent when it is not the first).
pub const FALLBACK_INDEX_HEADER: &str = "x-tollgate-fallback-index";

/// Request headers that name the client's session, looked for in this order: Claude Code's,
/// the gateway's own for other clients, and Bifrost's. A session's requests go to the same
/// provider key while it can serve ([`Pick::Sticky`]).
pub const SESSION_HEADERS: [&str; 3] = [
    "x-claude-code-session-id",
    "x-tollgate-session-id",
    "x-bf-session-id",
];

/// The session the request names, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    SESSION_HEADERS.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    })
}

/// What stays the same across a request's attempts.
pub(super) struct Job<'a> {
    pub rt: Arc<Runtime>,
    pub vk: &'a VirtualKey,
    pub op: Operation,
    /// The body's top level (without the gateway's `fallbacks` field).
    pub parsed: &'a RequestBody<'a>,
    /// The body sent upstream.
    pub body: Bytes,
    pub fallbacks: &'a [String],
    pub pick: Pick,
    /// The entry of the first attempt (0: the model asked for; a later one when the request is
    /// sent again without thinking blocks the platform of that entry refused).
    pub start: usize,
    /// Whether a refusal of the body's thinking blocks may end the run with
    /// [`Ran::Unverifiable`] (once per request).
    pub may_strip: bool,
}

/// How a run of attempts ended.
pub(super) enum Ran {
    Answered(Response),
    /// An upstream refused thinking blocks it could not verify (signed by another platform).
    Unverifiable(Box<Unverifiable>),
}

/// A request to send again, from `entry`, with `stripped` as its body.
pub(super) struct Unverifiable {
    pub rt: Arc<Runtime>,
    pub draft: Draft,
    pub headers: HeaderMap,
    pub entry: usize,
    pub stripped: tollgate_protocol::thinking::Stripped,
}

impl<'a> Job<'a> {
    /// The model of an entry: 0 the one asked for, then the fallbacks.
    fn model(&self, entry: usize) -> &'a str {
        match entry {
            0 => &self.parsed.model,
            i => &self.fallbacks[i - 1],
        }
    }

    /// Whether `entry`'s model routes when ejected keys count (routing only, no admission).
    fn routes_with_ejected(&self, entry: usize) -> bool {
        routing::route_excluding(
            &self.rt,
            self.vk,
            self.model(entry),
            Exclude::default(),
            self.pick,
        )
        .is_ok()
    }

    /// Routing `entry`'s model to a key `exclude` allows, and admission. The draft names the
    /// route even when admission refuses it.
    fn route(
        &self,
        entry: usize,
        exclude: Exclude<'_>,
        draft: &mut Draft,
    ) -> Result<Call<'a>, Refusal> {
        let stream = self.parsed.stream && self.op == Operation::Messages;
        draft.record.model_requested.clone_from(&self.parsed.model);
        draft.record.stream = stream;
        let route =
            routing::route_excluding(&self.rt, self.vk, self.model(entry), exclude, self.pick)
                .map_err(Refusal::Route)?;
        draft.record.provider = route.provider.name.to_string();
        draft.record.model_resolved = route.upstream_model.to_owned();
        draft.record.provider_key_id = route.key.id.to_string();
        draft.labels = Some(RouteLabels {
            provider: Arc::clone(&route.provider.name),
            model: route.provider.model_labels.label(route.upstream_model),
        });
        draft.price = match &route.key.credential {
            // Vertex's regional endpoints cost more than its global one.
            KeyCredential::Vertex(auth) => auth
                .region
                .resolve()
                .ok()
                .and_then(|region| self.rt.pricing.price_vertex(route.upstream_model, &region)),
            _ => self
                .rt
                .pricing
                .price(route.provider.kind.as_str(), route.upstream_model),
        };
        // Budgets, rate limits, concurrency: this node's counters, no I/O.
        let admitted = admission::admit(
            &self.rt,
            &self.vk.id,
            &route.provider.name,
            self.op,
            draft.price,
            Estimate::of_request(self.body.len(), self.parsed.max_tokens()),
            draft.record.started_at_unix_ms,
        );
        draft.reservation = match admitted {
            Ok(reservation) => Some(reservation),
            Err(refused) => {
                draft.limit_refusal = Some(refused.metric);
                return Err(Refusal::Limits(refused.error));
            }
        };
        Ok(Call {
            op: self.op,
            provider: Arc::clone(route.provider),
            key_index: route.key_index,
            upstream_model: route.upstream_model.to_owned(),
            via_alias: route.via_alias,
            runtime: Arc::clone(&self.rt),
            parsed: self.parsed,
            stream,
            headers: HeaderMap::new(),
            body: self.body.clone(),
            started: Instant::now(),
        })
    }
}

/// Why an entry could not be tried.
enum Refusal {
    Route(RouteError),
    Limits(ProxyError),
}

impl Refusal {
    /// No key left to serve the entry.
    fn is_no_key(&self) -> bool {
        matches!(self, Refusal::Route(RouteError::NoKey { .. }))
    }

    fn into_error(self) -> ProxyError {
        match self {
            Refusal::Limits(e) => e,
            Refusal::Route(e) => {
                let (kind, class) = match e {
                    RouteError::ProviderNotAllowed(_) => {
                        (ErrorKind::Permission, "provider_not_allowed")
                    }
                    RouteError::ModelNotAllowed { .. } => {
                        (ErrorKind::Permission, "model_not_allowed")
                    }
                    RouteError::NoKey { .. }
                    | RouteError::UnknownModel(_)
                    | RouteError::UnknownProvider(_)
                    | RouteError::NoAlias { .. } => (ErrorKind::NotFound, "unknown_model"),
                };
                ProxyError::new(kind, class, e.to_string())
            }
        }
    }
}

/// How the next attempt relates to the failed one (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    OtherKey,
    Retry,
    Fallback,
    LastResort,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::OtherKey => "attempt failed; trying another key",
            Step::Retry => "attempt failed; retrying after backoff",
            Step::Fallback => "attempt failed; trying the next fallback",
            Step::LastResort => "attempt failed; trying an ejected key as the last resort",
        }
    }
}

/// Where a request's attempts stand.
struct Progress {
    /// The entry being tried (0: the model asked for).
    entry: usize,
    /// Keys left out of this entry: those its attempts failed on since its last backoff, and
    /// the rejected ones.
    spent: Vec<Arc<str>>,
    /// Keys whose credential an upstream refused: out for the whole request.
    rejected: Vec<Arc<str>>,
    /// Retries after backoff of this entry.
    retries: u32,
    /// No retry or fallback starts after this.
    deadline: Instant,
}

impl Progress {
    /// The attempt on `key` failed; `rejected`: its credential was refused.
    fn failed(&mut self, key: Arc<str>, rejected: bool) {
        if rejected {
            self.rejected.push(Arc::clone(&key));
        }
        self.spent.push(key);
    }

    /// Only the rejected keys stay out: after a backoff, or on another entry.
    fn forget_failures(&mut self) {
        self.spent.clone_from(&self.rejected);
    }

    /// The attempts go on with entry `i` (a later one), its retries not spent yet.
    fn move_to(&mut self, i: usize) {
        self.entry = i;
        self.retries = 0;
        self.forget_failures();
    }
}

/// Runs the request's attempts and answers (see the module docs).
pub(super) async fn run(
    dp: Arc<DataPlane>,
    job: Job<'_>,
    headers: HeaderMap,
    mut draft: Draft,
) -> Ran {
    let now = health::now_ms();
    let healthy = Exclude {
        keys: &[],
        ejected_at: Some(now),
    };
    // The model asked for. When only ejection leaves it without a key: a fallback's healthy
    // key or, failing that, an ejected one. Any other refusal (not found, not allowed, limits)
    // is the answer: those never fall back.
    let start = job.start;
    let (entry, mut call) = match job.route(start, healthy, &mut draft) {
        Ok(call) => (start, call),
        Err(e) if e.is_no_key() && job.routes_with_ejected(start) => {
            let found = (start + 1..=job.fallbacks.len())
                .find_map(|i| try_entry(&job, i, healthy, &mut draft).map(|c| (i, c)))
                .or_else(|| {
                    try_entry(&job, start, Exclude::default(), &mut draft).map(|c| (start, c))
                });
            match found {
                Some(found) => found,
                None => return Ran::Answered(refuse(&dp, draft, e.into_error())),
            }
        }
        Err(e) => return Ran::Answered(refuse(&dp, draft, e.into_error())),
    };
    call.headers = headers;
    let mut progress = Progress {
        entry,
        spent: Vec::new(),
        rejected: Vec::new(),
        retries: 0,
        deadline: draft.started + call.provider.request_timeout,
    };
    call.key().health.claim(now);
    if let Some(trace) = &mut draft.trace {
        trace.start_attempt(&call, entry);
    }
    let mut outcome = providers::send(&call, &draft.record.request_id).await;
    let mut upstream_wait = None;
    loop {
        let class = Retryable::of(&outcome);
        record_health(&call, &outcome, class, &draft.record.request_id);
        let Some(class) = class else { break };
        upstream_wait = outcome
            .as_ref()
            .ok()
            .and_then(|r| providers::retry_after(r.headers()));
        let status = outcome.as_ref().map_or(0, |r| r.status().as_u16());
        let attempt = attempt(&draft, &call, class.as_str(), status);
        progress.failed(Arc::clone(&call.key().id), class == Retryable::KeyRejected);
        let routed = (
            draft.record.provider.clone(),
            draft.record.model_resolved.clone(),
            draft.record.provider_key_id.clone(),
            draft.price,
            draft.labels.clone(),
        );
        let admitted = draft.reservation.take();
        // The attempt's span ends when it failed, not after the next one is found (a backoff).
        let failed_at = draft.trace.as_ref().map(|_| std::time::SystemTime::now());
        let next = next_attempt(&job, &mut progress, &call, upstream_wait, &mut draft).await;
        let Some((step, mut next)) = next else {
            // Nothing left to try: the failed attempt's outcome is the answer.
            (
                draft.record.provider,
                draft.record.model_resolved,
                draft.record.provider_key_id,
                draft.price,
                draft.labels,
            ) = routed;
            draft.reservation = admitted;
            break;
        };
        // The failed attempt is taken back; the next one was admitted on its own.
        if let Some(r) = admitted {
            r.cancel();
        }
        if let Some(trace) = &mut draft.trace {
            trace.attempt_failed(status, class.as_str(), failed_at);
        }
        tracing::info!(
            request_id = %draft.record.request_id,
            provider = %log_safe(&attempt.provider),
            class = %attempt.class,
            status = attempt.status,
            next_model = %log_safe(&draft.record.model_resolved),
            next_key = %log_safe(&draft.record.provider_key_id),
            "{}",
            step.describe()
        );
        draft.record.attempts.push(attempt);
        next.headers = std::mem::take(&mut call.headers);
        call = next;
        call.key().health.claim(health::now_ms());
        if let Some(trace) = &mut draft.trace {
            trace.start_attempt(&call, progress.entry);
        }
        outcome = providers::send(&call, &draft.record.request_id).await;
    }
    // A 400 may be the platform refusing thinking blocks another platform signed: then the
    // request goes again without them (once), from this entry.
    if job.may_strip
        && let Ok(resp) = &outcome
        && resp.status() == StatusCode::BAD_REQUEST
        && let Ok(Some(stripped)) = tollgate_protocol::thinking::without_thinking(job.parsed)
    {
        // Boxed: a cold path, kept out of the size of every request's future.
        let (refused, read) = Box::pin(read_refusal(&call, outcome)).await;
        if refused {
            let attempt = attempt(&draft, &call, "thinking_unverifiable", 400);
            draft.record.attempts.push(attempt);
            if let Some(trace) = &mut draft.trace {
                trace.attempt_failed(400, "thinking_unverifiable", None);
            }
            if let Some(r) = draft.reservation.take() {
                r.cancel();
            }
            return Ran::Unverifiable(Box::new(Unverifiable {
                rt: Arc::clone(&job.rt),
                draft,
                headers: std::mem::take(&mut call.headers),
                entry: progress.entry,
                stripped,
            }));
        }
        outcome = read;
    }
    let entry = progress.entry;
    let retry_policy = call.provider.retry;
    draft.record.fallback_index = u32::try_from(entry).unwrap_or(u32::MAX);
    let mut resp = providers::respond(dp, call, draft, outcome).await;
    if entry > 0 {
        resp.headers_mut()
            .insert(FALLBACK_INDEX_HEADER, HeaderValue::from(entry));
    }
    // A 429 the client finally gets says when to come back, so its own retries pace right.
    if resp.status() == StatusCode::TOO_MANY_REQUESTS
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        let wait = upstream_wait.unwrap_or_else(|| retry_policy.backoff(progress.retries, 1.0));
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    Ran::Answered(resp)
}

/// Longest error body read to see whether it refuses thinking blocks.
const MAX_REFUSAL_BODY: usize = 1024 * 1024;

/// Reads a 400's body to see whether it refuses the request's thinking blocks. Returns whether
/// it does, and the outcome to answer with otherwise (the same answer, its body already read;
/// or the error reading it).
async fn read_refusal(call: &Call<'_>, outcome: Outcome) -> (bool, Outcome) {
    let Ok(resp) = outcome else {
        return (false, outcome);
    };
    let (parts, body) = resp.into_parts();
    match crate::upstream::read_body(
        &call.provider.name,
        http::Response::new(body),
        call.body_timeout(),
        MAX_REFUSAL_BODY,
    )
    .await
    {
        Ok(bytes) => (
            tollgate_protocol::thinking::is_signature_rejection(&bytes),
            Ok(http::Response::from_parts(
                parts,
                crate::upstream::UpstreamBody::Read(http_body_util::Full::new(bytes)),
            )),
        ),
        Err(e) => (false, Err(e)),
    }
}

/// Routes `entry` with `exclude`, logging why a fallback is skipped. The draft's routing is
/// left as the candidate set it when it fails: the caller puts back what it needs.
fn try_entry<'a>(
    job: &Job<'a>,
    entry: usize,
    exclude: Exclude<'_>,
    draft: &mut Draft,
) -> Option<Call<'a>> {
    match job.route(entry, exclude, draft) {
        Ok(call) => Some(call),
        // No key left of the entry being tried: not worth a log line.
        Err(_) if entry == 0 => None,
        Err(e) => {
            // A fallback without a healthy key may still be tried as the last resort.
            let no_key = e.is_no_key();
            let e = e.into_error();
            if no_key {
                tracing::debug!(
                    request_id = %draft.record.request_id,
                    fallback = %log_safe(job.model(entry)),
                    message = %log_safe(&e.message),
                    "fallback has no key left to try"
                );
            } else {
                tracing::info!(
                    request_id = %draft.record.request_id,
                    fallback = %log_safe(job.model(entry)),
                    error_class = e.class,
                    message = %log_safe(&e.message),
                    "fallback skipped"
                );
            }
            None
        }
    }
}

/// The next attempt after `failed`'s, in the order of the module docs, or `None`.
async fn next_attempt<'a>(
    job: &Job<'a>,
    progress: &mut Progress,
    failed: &Call<'_>,
    upstream_wait: Option<Duration>,
    draft: &mut Draft,
) -> Option<(Step, Call<'a>)> {
    let entry = progress.entry;
    let now = health::now_ms();
    // 1. Another healthy key for the same entry.
    let same = Exclude {
        keys: &progress.spent,
        ejected_at: Some(now),
    };
    if let Some(c) = try_entry(job, entry, same, draft) {
        return Some((Step::OtherKey, c));
    }
    // 2. The same entry after a backoff, when it ends before the deadline.
    let policy = failed.provider.retry;
    if progress.retries < policy.max_retries {
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        let wait = policy
            .backoff(progress.retries, jitter)
            .max(upstream_wait.unwrap_or_default());
        if Instant::now() + wait < progress.deadline {
            tokio::time::sleep(wait).await;
            progress.retries += 1;
            progress.forget_failures();
            let now = health::now_ms();
            let retry = |ejected_at| Exclude {
                keys: &progress.rejected,
                ejected_at,
            };
            if let Some(c) = try_entry(job, entry, retry(Some(now)), draft)
                .or_else(|| try_entry(job, entry, retry(None), draft))
            {
                return Some((Step::Retry, c));
            }
        }
    }
    if Instant::now() >= progress.deadline {
        return None;
    }
    // 3. The later entries, on healthy keys.
    let later = Exclude {
        keys: &progress.rejected,
        ejected_at: Some(now),
    };
    for i in entry + 1..=job.fallbacks.len() {
        if let Some(c) = try_entry(job, i, later, draft) {
            progress.move_to(i);
            return Some((Step::Fallback, c));
        }
    }
    // 4. Ejected keys, as the last resort.
    for i in entry..=job.fallbacks.len() {
        let keys = if i == entry {
            &progress.spent
        } else {
            &progress.rejected
        };
        let exclude = Exclude {
            keys,
            ejected_at: None,
        };
        if let Some(c) = try_entry(job, i, exclude, draft) {
            if i != entry {
                progress.move_to(i);
            }
            return Some((Step::LastResort, c));
        }
    }
    None
}

/// What the usage record keeps of an attempt given up: the route the draft names, `class`,
/// `status` (0: no answer) and its latency.
fn attempt(draft: &Draft, call: &Call<'_>, class: &str, status: u16) -> Attempt {
    Attempt {
        provider: draft.record.provider.clone(),
        model: draft.record.model_resolved.clone(),
        provider_key_id: draft.record.provider_key_id.clone(),
        class: class.to_owned(),
        status: u32::from(status),
        latency_ms: u32::try_from(call.started.elapsed().as_millis()).unwrap_or(u32::MAX),
    }
}

/// Records an attempt's outcome on its key's health: a failure for every [`Retryable`] class,
/// a success for any other answer, nothing for the gateway's own errors (no upstream answered).
/// An ejection is logged at warn.
fn record_health(call: &Call<'_>, outcome: &Outcome, class: Option<Retryable>, request_id: &str) {
    let verdict = match (outcome, class) {
        (_, Some(_)) => Verdict::Failure,
        (Ok(_), None) => Verdict::Success,
        (Err(_), None) => return,
    };
    let key = call.key();
    if let Some(cooldown) = key.health.record(verdict, health::now_ms()) {
        tracing::warn!(
            request_id,
            provider = %call.provider.name,
            provider_key = %key.name,
            cooldown_s = cooldown.as_secs(),
            "provider key ejected after failing repeatedly: other keys serve until it is probed back"
        );
    }
}

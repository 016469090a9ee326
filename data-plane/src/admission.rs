//! Admission by budgets, rate limits and concurrency (request flow, after routing): what a
//! request is estimated to cost and use, the [`crate::limits::Engine`] check that reserves it,
//! and the Anthropic-shaped refusal a client gets when a limit says no. No I/O: the engine
//! counts on this node.
//!
//! **Estimates.** The prompt is bounded by the body's size: at most one token per
//! [`BODY_BYTES_PER_TOKEN`] bytes, plus [`PROMPT_OVERHEAD_TOKENS`] for what the provider adds
//! (the tool-use system prompt). The output by the request's `max_tokens`. The cost reserved is
//! [`ModelPrice::upper_bound`] of those counts (every prompt token at the dearest input rate), so
//! a settled cost exceeds its reservation only if the prompt holds more tokens than the bound.
//! A count-tokens call is free and uses no token: it counts as a request and a slot only.
//!
//! **Refusals.** Rate limits and concurrency: 429 `rate_limit_error` with `retry-after` (the
//! window's end; 1 s for concurrency). A refusal by this node's allowance while the limit may
//! have room on other data planes ([`Refusal::temporary`]): 429 `allowance_moving` with
//! `retry-after: 1` (the control plane moves allowance to where it is refused). Exhausted budgets: 429 with `x-should-retry: false`, so
//! Claude Code stops instead of retrying (its retries would be refused until the window resets,
//! which the message says). A model without a price on a key with a budget: 403
//! `permission_error`. Every message names the level (the key, its provider config, its team or
//! customer, by name) and what was exhausted.

use tollgate_proto::pricing::{Cost, ModelPrice};
use tollgate_proto::usage::refusal;
use tollgate_protocol::anthropic::ErrorKind;

use crate::error::ProxyError;
use crate::limits::{Exhausted, LevelId, Refusal, Reservation};
use crate::metrics::LimitRefusal;
use crate::providers::Operation;
use crate::runtime::Runtime;

/// The fewest body bytes one prompt token takes (JSON text: a token is at least one character of
/// a string, and the body adds quotes, keys and punctuation around every string).
pub const BODY_BYTES_PER_TOKEN: u64 = 2;
/// Tokens a provider may add to the prompt (Anthropic's tool-use system prompt is a few hundred).
pub const PROMPT_OVERHEAD_TOKENS: u64 = 1_000;

/// What a request may use at most: prompt and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Estimate {
    /// The estimate of a Messages request of `body_len` bytes with `max_tokens`.
    pub fn of_request(body_len: usize, max_tokens: Option<u64>) -> Estimate {
        Estimate {
            input_tokens: (body_len as u64).div_ceil(BODY_BYTES_PER_TOKEN) + PROMPT_OVERHEAD_TOKENS,
            output_tokens: max_tokens.unwrap_or(0),
        }
    }

    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A refusal by the limits: the client's error, and the labels the metrics count it under.
#[derive(Debug)]
pub struct Refused {
    pub error: ProxyError,
    pub metric: LimitRefusal,
}

/// Checks the request against every level of its key's chain and reserves its estimate there.
pub fn admit(
    rt: &Runtime,
    virtual_key_id: &str,
    provider: &str,
    op: Operation,
    price: Option<ModelPrice>,
    estimate: Estimate,
    now_unix_ms: i64,
) -> Result<Reservation, Refused> {
    let (cost, tokens) = match op {
        Operation::CountTokens => (Some(Cost(0)), 0),
        Operation::Messages => (
            price.map(|p| p.upper_bound(estimate.input_tokens, estimate.output_tokens)),
            estimate.tokens(),
        ),
    };
    rt.limits
        .admit(virtual_key_id, provider, cost, tokens, now_unix_ms)
        .map_err(|r| Refused {
            error: refused(&r, now_unix_ms),
            metric: LimitRefusal::of(&r),
        })
}

/// The level, as its owner knows it.
fn level(r: &Refusal) -> String {
    match &r.level {
        LevelId::ProviderConfig { .. } => {
            format!(
                "this virtual key's settings for provider {:?}",
                r.level_name
            )
        }
        LevelId::VirtualKey(_) => format!("virtual key {:?}", r.level_name),
        LevelId::Team(_) => format!("team {:?}", r.level_name),
        LevelId::Customer(_) => format!("customer {:?}", r.level_name),
    }
}

pub(crate) fn rfc3339(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix ms {unix_ms}"))
}

/// The client's error for a refusal.
pub fn refused(r: &Refusal, now_unix_ms: i64) -> ProxyError {
    let level = level(r);
    if r.temporary {
        let what = match &r.exhausted {
            Exhausted::Budget { period, .. } => format!("budget per {period}"),
            Exhausted::Requests { period, .. } => format!("request limit per {period}"),
            Exhausted::Tokens { period, .. } => format!("token limit per {period}"),
            Exhausted::Concurrency { .. } => "concurrency limit".to_owned(),
            Exhausted::Unpriced { .. } => "budget".to_owned(),
        };
        let mut e = ProxyError::new(
            ErrorKind::RateLimit,
            refusal::ALLOWANCE_MOVING,
            format!(
                "the {what} of {level} has room elsewhere in the gateway's fleet but not on this \
                 node yet; it is being moved here, retry in a second"
            ),
        );
        e.retry_after = Some(1);
        return e;
    }
    let resets = r
        .resets_at_unix_ms()
        .map(|at| format!("; it resets at {}", rfc3339(at)))
        .unwrap_or_default();
    let mut e = match &r.exhausted {
        Exhausted::Budget {
            period,
            limit_nano_usd,
            ..
        } => {
            let mut e = ProxyError::new(
                ErrorKind::RateLimit,
                refusal::BUDGET_EXHAUSTED,
                format!(
                    "the budget of {level} (${:.2} per {period}) is used up{resets}",
                    *limit_nano_usd as f64 / 1e9
                ),
            );
            e.no_retry = true;
            e
        }
        Exhausted::Requests { period, limit, .. } => ProxyError::new(
            ErrorKind::RateLimit,
            refusal::RATE_LIMITED,
            format!(
                "{level} may send {limit} requests per {period}; that limit is reached{resets}"
            ),
        ),
        Exhausted::Tokens { period, limit, .. } => ProxyError::new(
            ErrorKind::RateLimit,
            refusal::RATE_LIMITED,
            format!("{level} may use {limit} tokens per {period}; that limit is reached{resets}"),
        ),
        Exhausted::Concurrency { limit } => ProxyError::new(
            ErrorKind::RateLimit,
            refusal::CONCURRENCY_LIMITED,
            format!("{level} may have {limit} requests in flight; that many are running"),
        ),
        Exhausted::Unpriced { .. } => {
            let mut e = ProxyError::new(
                ErrorKind::Permission,
                refusal::UNPRICED_MODEL,
                format!(
                    "this model has no price, and {level} has a budget: keys with a budget can only \
                     use priced models (an administrator can add a price at /api/pricing)"
                ),
            );
            e.no_retry = true;
            e
        }
    };
    e.retry_after = match r.exhausted {
        Exhausted::Concurrency { .. } => Some(1),
        _ => r.retry_after_secs(now_unix_ms),
    };
    e
}

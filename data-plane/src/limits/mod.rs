//! Budgets, rate limits and concurrency: the pure enforcement engine (no I/O, no async; time
//! comes in as unix milliseconds, from a [`Clock`] or the caller).
//!
//! | file | role |
//! |---|---|
//! | `tollgate_proto::window` | which window `[start, end)` holds an instant, per period, calendar-aligned or anchored (shared with the control plane) |
//! | `cell.rs` | the counters: one lock-guarded window counter or one atomic per cell |
//! | `engine.rs` | [`Engine`]: snapshot → chains of levels per virtual key, [`Engine::admit`], [`Reservation`], [`Engine::report`] |
//! | `wire.rs` | counters, levels, reports and grants to and from their `config.v1` messages (pure) |
//!
//! **Levels.** A request belongs to a chain: the virtual key's provider config for the provider
//! it was routed to (if it has one with limits) → the virtual key → its team (if any) → the
//! customer (the key's own, or its team's). Each level may have a concurrency limit
//! (`max_concurrent`), a request and a token rate limit (calendar-aligned windows) and any
//! number of budgets (nano-USD per window, calendar-aligned or anchored).
//!
//! **Admission** ([`Engine::admit`], before the upstream call) checks every level in that
//! order and charges all of them or none: a level that refuses rolls back what the levels
//! before it took. The rule everywhere is `used + reserved + max(amount, 1) <= allowance`
//! (`<=`: a limit of 10 requests admits 10; `max(amount, 1)`: a request always needs room, so
//! a budget used exactly up refuses even a request estimated at 0). Requests count +1 at
//! admission; tokens and cost reserve the caller's estimates. Between a partial charge and its
//! rollback another request may see the transient reservation and be refused: the engine may
//! refuse slightly early under contention, it never admits beyond a limit.
//!
//! **Reservations.** An admitted request holds a [`Reservation`] until it ends:
//! [`Reservation::settle`] replaces the estimates by the actual cost and tokens (higher or
//! lower; an actual cost of `None` keeps the estimate charged) and releases the concurrency
//! slots. Dropping it unsettled (every early exit) releases the slots and settles cost 0 and 0
//! tokens; the request count stays. A request settles into the windows it was admitted in: if
//! one has rolled over since, the new window is not charged (the old one is over).
//!
//! **Unpriced models.** A request whose cost cannot be estimated (`None`) on a chain with any
//! budget is refused ([`Exhausted::Unpriced`]): keys with a budget can only use priced models.
//! Without budgets it is admitted.
//!
//! **Admin resets.** A budget's `reset_at_unix_ms` in the current window sets that window's
//! settled spend to 0 when the engine first sees it (at or after the instant). Spend this node
//! settled between the instant and the snapshot's arrival is forgotten with it; reservations in
//! flight stay and settle normally.
//!
//! **Allowances** (for several data planes sharing limits). Every counter compares this node's
//! use with its allowance: this node's [`Share`] of the limit (the whole limit in a fleet of
//! one; set in the [`FleetState`] the data plane compiles every engine with), unless
//! [`Engine::grant`] gave another amount for that window (the control plane rebalances
//! allowances from what the nodes report: ARCHITECTURE.md, "Limits"). [`Engine::report`]
//! says what each counter holds in its current window (used and reserved, its allowance, and
//! what it refused for want of allowance; every counter in use, or those that changed since
//! they were last listed) and how many requests are in flight at each level. When a counter's allowance is used up
//! but is smaller than the limit, the control plane is unreachable
//! ([`FleetState::set_control_plane_reachable`]) and the key is `fail_open`, the request is
//! admitted up to the limit itself (this node's use counted against it); otherwise refused.
//!
//! **Config changes.** Counters live in cells keyed by [`CellKey`]: the level's id, and for
//! window counters the kind, the budget id and the window definition (period, calendar-aligned,
//! anchor when not aligned). [`Engine::compile_after`] reuses the previous engine's cells by key:
//! editing another key, raising or lowering a limit, renaming a level or moving a key to another
//! team keeps the counts; a changed window definition (period, alignment, anchor; an admin reset
//! that moves the anchor) or budget id starts a fresh counter. Reservations hold `Arc`s to their
//! cells, so requests in flight across a swap settle into the counters they charged. Counters no
//! level uses any more are dropped with the last engine and reservation holding them.
//! Requests in flight are counted at every virtual key, team and customer (and at provider
//! configs with a concurrency limit), so a limit set later starts from the real count.
//!
//! Not the engine's business: inactive and expired keys (the runtime refuses them first).
//! The engine must be compiled from the same snapshot as the runtime; keys it does not know
//! have no limits.

mod cell;
mod engine;
pub mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub use cell::CellUsage;
pub use engine::{BudgetView, Engine, FleetState, Reservation, Share};
pub use tollgate_proto::window::{Period, Window, WindowSpec};

/// Where time comes from.
pub trait Clock: Send + Sync {
    fn now_unix_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(unix_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(unix_ms))
    }

    pub fn set(&self, unix_ms: i64) {
        self.0.store(unix_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A level of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LevelId {
    /// A virtual key's config for one provider.
    ProviderConfig {
        virtual_key_id: Arc<str>,
        provider: Arc<str>,
    },
    VirtualKey(Arc<str>),
    Team(Arc<str>),
    Customer(Arc<str>),
}

impl fmt::Display for LevelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelId::ProviderConfig {
                virtual_key_id,
                provider,
            } => write!(
                f,
                "provider config `{provider}` of virtual key `{virtual_key_id}`"
            ),
            LevelId::VirtualKey(id) => write!(f, "virtual key `{id}`"),
            LevelId::Team(id) => write!(f, "team `{id}`"),
            LevelId::Customer(id) => write!(f, "customer `{id}`"),
        }
    }
}

/// Which counter of a level.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterId {
    Concurrency,
    Requests(WindowSpec),
    Tokens(WindowSpec),
    /// A budget by its id.
    Budget(Arc<str>, WindowSpec),
}

/// The stable identity of a counter: what survives a config change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellKey {
    pub level: LevelId,
    pub counter: CounterId,
}

/// What this node holds of one window counter in its current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterHolding {
    pub cell: CellKey,
    pub window: Window,
    pub limit: u64,
    /// Used and reserved here (requests, tokens or nano-USD, after the counter's kind).
    pub used: u64,
    /// Refused here for want of allowance while the limit had room (demand).
    pub wanted: u64,
    /// What this node may admit in the window: its grant, else its fleet share.
    pub allowance: u64,
}

/// [`Engine::report`]: what this node holds of its limits, for the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UseReport {
    /// Every counter in use (otherwise only those that changed since last listed).
    pub full: bool,
    pub counters: Vec<CounterHolding>,
    /// Levels with requests in flight here, and how many.
    pub in_flight: Vec<(LevelId, u32)>,
}

/// What refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    Budget {
        budget_id: Arc<str>,
        period: Period,
        limit_nano_usd: u64,
        resets_at_unix_ms: i64,
    },
    Requests {
        period: Period,
        limit: u64,
        resets_at_unix_ms: i64,
    },
    Tokens {
        period: Period,
        limit: u64,
        resets_at_unix_ms: i64,
    },
    Concurrency {
        limit: u32,
    },
    /// The model has no price and the level has a budget (`budget_id`, its first).
    Unpriced {
        budget_id: Arc<str>,
    },
}

/// A request refused by the engine: which level, what was exhausted, and when it resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub level: LevelId,
    /// The level's name (for a provider config: the provider).
    pub level_name: Arc<str>,
    pub exhausted: Exhausted,
    /// Refused by this node's allowance while the limit may have room on other nodes (no
    /// grant said the fleet is exhausted): allowance is being moved here, retry shortly.
    pub temporary: bool,
}

impl Refusal {
    /// When the exhausted window ends (`None`: concurrency and unpriced refusals, which time
    /// does not lift).
    pub fn resets_at_unix_ms(&self) -> Option<i64> {
        match self.exhausted {
            Exhausted::Budget {
                resets_at_unix_ms, ..
            }
            | Exhausted::Requests {
                resets_at_unix_ms, ..
            }
            | Exhausted::Tokens {
                resets_at_unix_ms, ..
            } => Some(resets_at_unix_ms),
            Exhausted::Concurrency { .. } | Exhausted::Unpriced { .. } => None,
        }
    }

    /// Whole seconds until the window resets, rounded up (for `retry-after`).
    pub fn retry_after_secs(&self, now_unix_ms: i64) -> Option<u64> {
        let ms = self.resets_at_unix_ms()?.saturating_sub(now_unix_ms).max(0);
        Some(u64::try_from(ms).unwrap_or(0).div_ceil(1000))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = &self.level;
        match &self.exhausted {
            Exhausted::Budget {
                budget_id,
                period,
                limit_nano_usd,
                ..
            } => write!(
                f,
                "budget `{budget_id}` ({period}, ${:.6}) of {level} is used up",
                *limit_nano_usd as f64 / 1e9
            )?,
            Exhausted::Requests { period, limit, .. } => {
                write!(f, "request limit of {level} reached ({limit} per {period})")?
            }
            Exhausted::Tokens { period, limit, .. } => {
                write!(f, "token limit of {level} reached ({limit} per {period})")?
            }
            Exhausted::Concurrency { limit } => {
                write!(f, "{level} has {limit} requests in flight, its limit")?
            }
            Exhausted::Unpriced { budget_id } => write!(
                f,
                "model has no price; keys with a budget can only use priced models (budget \
                 `{budget_id}` of {level})"
            )?,
        }
        if let Some(at) = self.resets_at_unix_ms() {
            let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                });
            match ts {
                Some(ts) => write!(f, "; it resets at {ts}")?,
                None => write!(f, "; it resets at unix ms {at}")?,
            }
        }
        Ok(())
    }
}

/// A snapshot whose limits cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error("{level}: {what} without a reset period")]
    MissingPeriod { level: String, what: &'static str },
    #[error("{level}: budget id `{budget}` appears twice")]
    DuplicateBudget { level: String, budget: String },
    #[error("{key}: two configs for provider `{provider}`")]
    DuplicateProviderConfig { key: String, provider: String },
    #[error("{key} names team `{team}`, which the snapshot lacks")]
    UnknownTeam { key: String, team: String },
    #[error("{owner} names customer `{customer}`, which the snapshot lacks")]
    UnknownCustomer { owner: String, customer: String },
    #[error("{0} has both a team and a customer")]
    TeamAndCustomer(String),
    #[error("{0} appears twice")]
    Duplicate(String),
}

//! The counters behind every limit: one cell per (level, counter, window definition), shared
//! through `Arc` by every engine compiled since it first appeared and by the reservations that
//! hold it. Each cell is its own short lock (window counters) or one atomic (concurrency), so
//! requests of different keys never contend, and requests of one team only on the team's cells.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::CellKey;
use tollgate_proto::window::{Window, WindowSpec};

/// How a window counter is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Charge {
    /// Counted at admission and kept (requests: +1 that settling does not change).
    Count,
    /// Reserved at admission, replaced by the actual amount at settlement (tokens, cost).
    Reserve,
}

/// Why a window counter refused, with the window that did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full {
    pub window: Window,
    /// Refused by this node's allowance, below the limit, while the fleet may have room
    /// elsewhere (no grant said it is exhausted): a temporary refusal.
    pub temporary: bool,
}

/// A successful charge: the window it went into, and whether only fail-open let it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Charged {
    pub window_start: i64,
    pub fail_open: bool,
}

/// What one admission asks of a window counter.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub now: i64,
    pub amount: u64,
    pub charge: Charge,
    /// The configured limit.
    pub limit: u64,
    /// This node's allowance when none was granted for the window (its fleet share of `limit`).
    pub allowance: u64,
    /// The budget's admin reset instant (0: none).
    pub reset_at: i64,
    /// The key is fail-open and the control plane is unreachable.
    pub fail_open: bool,
}

#[derive(Debug)]
pub(super) struct WindowCell {
    pub key: CellKey,
    pub spec: WindowSpec,
    state: Mutex<WindowState>,
}

#[derive(Debug)]
struct WindowState {
    /// The window the counters below belong to; `None` before first use.
    window: Option<Window>,
    /// Settled amounts (and request counts) of this window on this node.
    used: u64,
    /// Estimates of admitted requests not settled yet.
    reserved: u64,
    /// Allowances granted by window start (current and future windows only).
    grants: Vec<Granted>,
    /// Amounts refused in this window for want of allowance (reported as demand).
    wanted: u64,
    /// Something changed since the last report that listed this counter.
    changed: bool,
    /// The last admin reset applied (unix ms).
    reset_applied: i64,
}

/// An allowance the control plane granted for one window.
#[derive(Debug, Clone, Copy)]
struct Granted {
    window_start: i64,
    amount: u64,
    /// The fleet has nothing left in that window.
    fleet_exhausted: bool,
}

/// [`WindowCell::holdings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Holding {
    pub window: Window,
    pub used: u64,
    pub wanted: u64,
    pub allowance: u64,
}

/// A cell's figures for its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellUsage {
    pub window: Window,
    pub used: u64,
    pub reserved: u64,
    /// The granted allowance of this window, if any (otherwise the allowance is the limit).
    pub granted: Option<u64>,
}

impl WindowCell {
    pub fn new(key: CellKey, spec: WindowSpec) -> WindowCell {
        WindowCell {
            key,
            spec,
            state: Mutex::new(WindowState {
                window: None,
                used: 0,
                reserved: 0,
                grants: Vec::new(),
                wanted: 0,
                changed: false,
                reset_applied: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        // A panic while holding this lock leaves consistent numbers behind (every update is a
        // single assignment), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits `ask.amount` into the window holding `ask.now` if
    /// `used + reserved + max(amount, 1) <= allowance` (see the module docs), and charges it.
    pub fn try_charge(&self, ask: &Ask) -> Result<Charged, Full> {
        let mut st = self.lock();
        let window = st.roll(&self.spec, ask.now);
        st.changed = true;
        if ask.reset_at > st.reset_applied
            && ask.now >= ask.reset_at
            && window.contains(ask.reset_at)
        {
            st.used = 0;
            st.reset_applied = ask.reset_at;
        }
        let granted = st.granted(window.start_unix_ms);
        let allowance = granted.map_or(ask.allowance, |g| g.amount.min(ask.limit));
        let need = st
            .used
            .saturating_add(st.reserved)
            .saturating_add(ask.amount.max(1));
        let fail_open = if need <= allowance {
            false
        } else if ask.fail_open && allowance < ask.limit && need <= ask.limit {
            true
        } else {
            // Refused by the allowance alone while the limit has room: demand to report, and
            // temporary unless the fleet is known to be exhausted.
            let below_limit = allowance < ask.limit && need <= ask.limit;
            if below_limit {
                st.wanted = st.wanted.saturating_add(ask.amount.max(1));
            }
            return Err(Full {
                window,
                temporary: below_limit && !granted.is_some_and(|g| g.fleet_exhausted),
            });
        };
        match ask.charge {
            Charge::Count => st.used = st.used.saturating_add(ask.amount),
            Charge::Reserve => st.reserved = st.reserved.saturating_add(ask.amount),
        }
        Ok(Charged {
            window_start: window.start_unix_ms,
            fail_open,
        })
    }

    /// Takes back a charge of an admission refused further down the chain.
    pub fn undo(&self, window_start: i64, amount: u64, charge: Charge) {
        let mut st = self.lock();
        if st.window.map(|w| w.start_unix_ms) != Some(window_start) {
            return;
        }
        st.changed = true;
        match charge {
            Charge::Count => st.used = st.used.saturating_sub(amount),
            Charge::Reserve => st.reserved = st.reserved.saturating_sub(amount),
        }
    }

    /// Replaces a reservation made in the window starting at `window_start` by the actual
    /// amount. When that window has rolled over, its estimate is already gone from the
    /// counters and nothing changes (the window is over).
    pub fn settle(&self, window_start: i64, reserved: u64, actual: u64) {
        let mut st = self.lock();
        if st.window.map(|w| w.start_unix_ms) == Some(window_start) {
            st.reserved = st.reserved.saturating_sub(reserved);
            st.used = st.used.saturating_add(actual);
            st.changed = true;
        }
    }

    /// Sets this node's allowance for the window starting at `window_start` (the current or a
    /// later one; grants for windows already over are ignored). An allowance above the limit
    /// counts as the limit. `fleet_exhausted`: the fleet has nothing left in that window, so
    /// refusals there are final.
    pub fn grant(&self, window_start: i64, amount: u64, fleet_exhausted: bool) {
        let mut st = self.lock();
        if st.window.is_some_and(|w| window_start < w.start_unix_ms) {
            return;
        }
        let new = Granted {
            window_start,
            amount,
            fleet_exhausted,
        };
        st.changed = true;
        match st
            .grants
            .iter_mut()
            .find(|g| g.window_start == window_start)
        {
            Some(g) => *g = new,
            None => st.grants.push(new),
        }
    }

    /// What this node holds in the window holding `now` (used and reserved, refused for want
    /// of allowance, and the allowance: the window's grant, else `default`; at most `limit`),
    /// and in every later window it has a grant for (a control plane whose clock is ahead may
    /// grant for a window this node has not reached), pushed onto `out`. Nothing for a window
    /// with neither use nor a grant (the control plane counts such a node at its fleet share),
    /// and nothing at all when `changed_only` and nothing changed since the last call that
    /// listed the cell.
    pub fn holdings(
        &self,
        now: i64,
        default: u64,
        limit: u64,
        changed_only: bool,
        out: &mut Vec<Holding>,
    ) {
        let mut st = self.lock();
        if changed_only && !st.changed {
            return;
        }
        let before = out.len();
        let window = self.spec.window_at(now);
        let granted = st.granted(window.start_unix_ms).map(|g| g.amount);
        let (used, wanted) = match st.window {
            Some(w) if w == window => (st.used.saturating_add(st.reserved), st.wanted),
            _ => (0, 0),
        };
        if used > 0 || wanted > 0 || granted.is_some() {
            out.push(Holding {
                window,
                used,
                wanted,
                allowance: granted.unwrap_or(default).min(limit),
            });
        }
        for g in st
            .grants
            .iter()
            .filter(|g| g.window_start > window.start_unix_ms)
        {
            out.push(Holding {
                window: self.spec.window_at(g.window_start),
                used: 0,
                wanted: 0,
                allowance: g.amount.min(limit),
            });
        }
        if out.len() > before {
            st.changed = false;
        }
    }

    /// The figures of the window holding `now` (zeros for a window not started yet here).
    pub fn usage(&self, now: i64) -> CellUsage {
        let st = self.lock();
        let window = self.spec.window_at(now);
        let granted = st.granted(window.start_unix_ms).map(|g| g.amount);
        match st.window {
            Some(w) if w == window || now < w.start_unix_ms => CellUsage {
                window: w,
                used: st.used,
                reserved: st.reserved,
                granted,
            },
            _ => CellUsage {
                window,
                used: 0,
                reserved: 0,
                granted,
            },
        }
    }
}

impl WindowState {
    /// Makes the window holding `now` current (counters start at zero in a new window) and
    /// returns it. Time going backwards never reopens an earlier window: such instants count
    /// in the current one.
    fn roll(&mut self, spec: &WindowSpec, now: i64) -> Window {
        if let Some(w) = self.window
            && (w.contains(now) || now < w.start_unix_ms)
        {
            return w;
        }
        let w = spec.window_at(now);
        self.window = Some(w);
        self.used = 0;
        self.reserved = 0;
        self.wanted = 0;
        self.grants.retain(|g| g.window_start >= w.start_unix_ms);
        w
    }

    fn granted(&self, window_start: i64) -> Option<Granted> {
        self.grants
            .iter()
            .find(|g| g.window_start == window_start)
            .copied()
    }
}

/// Requests in flight at one level.
#[derive(Debug, Default)]
pub(super) struct ConcurrencyCell {
    in_flight: AtomicU32,
}

impl ConcurrencyCell {
    /// Takes a slot if fewer than `max` are taken.
    pub fn try_acquire(&self, max: u32) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

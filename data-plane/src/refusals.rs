//! Requests refused before a virtual key was established (no or a bad key, no configuration
//! yet, no such route). They are not usage: they write no usage record and take no spool space,
//! so a flood of them cannot push real usage out of the data plane's bounded queue and spool.
//! Instead each one is counted here (atomics, shown as `tollgate_requests_refused_total{reason}`
//! by [`crate::metrics`]) and logged at `debug`, and a `warn` line sums them up at most once per
//! [`WARN_EVERY`].
//!
//! | reason | refusals |
//! |---|---|
//! | `auth` | 401: no virtual key, or one that is unknown, inactive, expired or deleted |
//! | `not_ready` | 503: no configuration received yet |
//! | `no_route` | 404: a path the inference API does not serve |
//! | `other` | any other refusal before the key was checked |
//!
//! A body over the cap is read (and refused with 413) only after the key was checked, so it is
//! usage of that key, not a refusal counted here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two `warn` lines about refused requests.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Most `info` lines about requests for unknown paths per [`INFO_WINDOW`]; the rest of a window's
/// are logged at `debug` (and still counted), so a scan of paths cannot flood the log.
pub const INFO_BURST: u64 = 20;

/// The window of [`INFO_BURST`].
pub const INFO_WINDOW: Duration = Duration::from_secs(10);

/// The reasons counted, in the order of the metric's lines.
pub const REASONS: [&str; 4] = ["auth", "not_ready", "no_route", "other"];

/// Counters of refused unauthenticated requests. Lock-free; one per data plane.
#[derive(Debug)]
pub struct Refusals {
    counts: [AtomicU64; REASONS.len()],
    epoch: Instant,
    /// Milliseconds since `epoch` before which no `warn` line is written.
    next_warn_ms: AtomicU64,
    /// The total at the last `warn` line.
    warned_total: AtomicU64,
    /// Milliseconds since `epoch` at which the current [`INFO_WINDOW`] started.
    info_window_ms: AtomicU64,
    /// `info` lines taken in the current window.
    info_taken: AtomicU64,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            counts: Default::default(),
            epoch: Instant::now(),
            next_warn_ms: AtomicU64::new(0),
            warned_total: AtomicU64::new(0),
            info_window_ms: AtomicU64::new(0),
            info_taken: AtomicU64::new(0),
        }
    }
}

/// The [`REASONS`] slot of an error class (`ProxyError::class`, or `no_route`).
fn slot(class: &str) -> usize {
    match class {
        "auth" => 0,
        "not_ready" => 1,
        "no_route" => 2,
        _ => 3,
    }
}

impl Refusals {
    /// Counts one refusal of `class`; at most once per [`WARN_EVERY`], logs a `warn` line with
    /// the number refused since the last one.
    pub fn count(&self, class: &str) {
        self.counts[slot(class)].fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let due = self.next_warn_ms.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_warn_ms
                .compare_exchange(
                    due,
                    now.saturating_add(WARN_EVERY.as_millis() as u64),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let total = self.total();
            let since = total - self.warned_total.swap(total, Ordering::Relaxed);
            tracing::warn!(
                refused = since,
                refused_total = total,
                auth = self.get("auth"),
                not_ready = self.get("not_ready"),
                no_route = self.get("no_route"),
                metric = %crate::metrics::REFUSED.exposed(),
                "requests refused before a virtual key was established (no usage record is \
                 written for them; this line repeats at most once a minute, see the metric)"
            );
        }
    }

    /// Whether a refusal worth an `info` line (an unknown path) may have one: at most
    /// [`INFO_BURST`] per [`INFO_WINDOW`]; `false` means log it at `debug`.
    pub fn info_line_allowed(&self) -> bool {
        self.info_line_allowed_at(self.now_ms())
    }

    fn info_line_allowed_at(&self, now_ms: u64) -> bool {
        let start = self.info_window_ms.load(Ordering::Relaxed);
        if now_ms >= start.saturating_add(INFO_WINDOW.as_millis() as u64)
            && self
                .info_window_ms
                .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.info_taken.store(0, Ordering::Relaxed);
        }
        self.info_taken.fetch_add(1, Ordering::Relaxed) < INFO_BURST
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Refusals of one reason of [`REASONS`] so far (0 for any other name).
    pub fn get(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }

    /// All refusals so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let r = Refusals::default();
        for _ in 0..3 {
            r.count("auth");
        }
        r.count("not_ready");
        r.count("something_else");
        assert_eq!((r.get("auth"), r.get("not_ready"), r.total()), (3, 1, 5));
        assert_eq!((r.get("other"), r.get("no_route")), (1, 0));
    }

    #[test]
    fn info_lines_are_limited_per_window() {
        let r = Refusals::default();
        let window = INFO_WINDOW.as_millis() as u64;
        let allowed = |at: u64, n: u64| (0..n).filter(|_| r.info_line_allowed_at(at)).count();
        assert_eq!(allowed(5, INFO_BURST + 30), INFO_BURST as usize);
        assert_eq!(allowed(window - 1, 5), 0, "same window");
        assert_eq!(allowed(window + 5, INFO_BURST + 1), INFO_BURST as usize);
        assert_eq!(allowed(3 * window, 1), 1, "a quiet window starts afresh");
    }
}

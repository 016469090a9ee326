//! Outlier detection per provider key: a key whose attempts keep failing is ejected for a
//! cooldown, then probed back with one request.
//!
//! * Every attempt's outcome is recorded on its key ([`KeyHealth::record`]): a failure (429,
//!   529, another 5xx, no connection, a timeout, and 401/403: the key itself rejected) or a
//!   success (any other answer: the upstream works, even if it refused the request).
//! * [`EJECT_AFTER`] failures in a row eject the key for [`BASE_EJECTION`] times the number of
//!   ejections in a row, at most [`MAX_EJECTION`]. Routing leaves ejected keys out while
//!   another key can serve ([`crate::routing`]); with none left they are still used, since an
//!   answer from a doubtful key beats none.
//! * Once the cooldown is over, one request at a time is let through as a probe
//!   ([`KeyHealth::claim`]). Its success puts the key back in service (and resets the
//!   multiplier); its failure ejects it again, for longer. A probe whose outcome never comes
//!   (its client left) frees the slot after [`PROBE_TIMEOUT`].
//!
//! State is per data plane and in memory, kept across config changes for a key whose
//! credential did not change ([`crate::runtime`]). It is lock-free: routing reads two atomics
//! per candidate key.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tollgate_proto::config::v1 as pb;

use crate::runtime::Runtime;

/// Failures in a row that eject a key.
pub const EJECT_AFTER: u32 = 5;
/// The first ejection's cooldown; the n-th in a row lasts n times this.
pub const BASE_EJECTION: Duration = Duration::from_secs(30);
/// Longest cooldown.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);
/// How long a probe holds the slot before another request may probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Milliseconds on this process's clock (monotonic, from the first use), at least 1.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What an attempt's outcome says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
}

/// Where a key stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    InService,
    /// Ejected, with this many milliseconds of cooldown left.
    Ejected {
        remaining_ms: u64,
    },
    /// Cooldown over: the next request may probe it.
    Probe,
    /// Cooldown over and a probe in flight.
    Probing,
}

/// One provider key's recent outcomes (see the module docs).
#[derive(Debug, Default)]
pub struct KeyHealth {
    consecutive_failures: AtomicU32,
    /// Until when (process ms) the key is ejected; at or before now (0 included): not ejected,
    /// unless `ejections_in_row` says its cooldown just ended and it awaits a probe.
    ejected_until: AtomicU64,
    /// Ejections without a success between them: the cooldown's multiplier; nonzero while the
    /// key is out of service (ejected or awaiting a probe's success).
    ejections_in_row: AtomicU32,
    ejections_total: AtomicU64,
    /// When the current probe went out (process ms); 0: none.
    probe_started: AtomicU64,
}

impl KeyHealth {
    /// Where the key stands at `now` (process ms, [`now_ms`]).
    pub fn state(&self, now: u64) -> State {
        if self.ejections_in_row.load(Ordering::Acquire) == 0 {
            return State::InService;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        if until > now {
            return State::Ejected {
                remaining_ms: until - now,
            };
        }
        let probe = self.probe_started.load(Ordering::Acquire);
        if probe != 0 && now < probe.saturating_add(millis(PROBE_TIMEOUT)) {
            State::Probing
        } else {
            State::Probe
        }
    }

    /// Whether routing may pick the key at `now` while other keys can serve: in service, or
    /// its cooldown over and no probe in flight.
    pub fn available(&self, now: u64) -> bool {
        matches!(self.state(now), State::InService | State::Probe)
    }

    /// Called when a request is about to use the key: if its cooldown is over, this request
    /// becomes the probe. Returns whether it did.
    pub fn claim(&self, now: u64) -> bool {
        if self.state(now) != State::Probe {
            return false;
        }
        let seen = self.probe_started.load(Ordering::Acquire);
        self.probe_started
            .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records an attempt's outcome at `now`. Returns the cooldown when this failure ejected
    /// the key (to log it).
    pub fn record(&self, verdict: Verdict, now: u64) -> Option<Duration> {
        match verdict {
            Verdict::Success => {
                self.consecutive_failures.store(0, Ordering::Release);
                if self.ejections_in_row.load(Ordering::Acquire) != 0 {
                    self.probe_started.store(0, Ordering::Release);
                    self.ejected_until.store(0, Ordering::Release);
                    self.ejections_in_row.store(0, Ordering::Release);
                }
                None
            }
            Verdict::Failure => match self.state(now) {
                // A request that started before the ejection: it tells nothing new.
                State::Ejected { .. } => None,
                // The probe (or a request racing it) failed: out again, for longer.
                State::Probe | State::Probing => Some(self.eject(now)),
                State::InService => {
                    let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                    (failures >= EJECT_AFTER).then(|| self.eject(now))
                }
            },
        }
    }

    fn eject(&self, now: u64) -> Duration {
        let n = self.ejections_in_row.fetch_add(1, Ordering::AcqRel) + 1;
        let cooldown = BASE_EJECTION.saturating_mul(n).min(MAX_EJECTION);
        self.consecutive_failures.store(0, Ordering::Release);
        self.probe_started.store(0, Ordering::Release);
        self.ejected_until
            .store(now.saturating_add(millis(cooldown)), Ordering::Release);
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        cooldown
    }

    /// Failures since the last success (0 while ejected: the count restarts).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Ejections since the process started.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }
}

/// The keys of `rt` out of service at `now` (ejected, or awaiting a probe's success), ordered
/// by provider and key name: what a data plane reports for the fleet view.
pub fn out_of_service(rt: &Runtime, now: u64) -> Vec<pb::EjectedKey> {
    let mut out: Vec<pb::EjectedKey> = rt
        .providers
        .values()
        .flat_map(|p| p.keys.iter().map(move |k| (p, k)))
        .filter_map(|(p, k)| {
            let remaining = match k.health.state(now) {
                State::InService => return None,
                State::Ejected { remaining_ms } => remaining_ms,
                State::Probe | State::Probing => 0,
            };
            Some(pb::EjectedKey {
                provider: p.name.to_string(),
                key_id: k.id.to_string(),
                key_name: k.name.to_string(),
                cooldown_remaining_ms: remaining,
                ejections_total: k.health.ejections_total(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.provider, &a.key_name).cmp(&(&b.provider, &b.key_name)));
    out
}

/// Whether two reports name the same keys with the same ejections (cooldowns count down;
/// that alone is no change worth sending).
pub fn same_ejections(a: &[pb::EjectedKey], b: &[pb::EjectedKey]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.key_id == y.key_id
                && x.ejections_total == y.ejections_total
                && (x.cooldown_remaining_ms == 0) == (y.cooldown_remaining_ms == 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn five_failures_in_a_row_eject_and_a_success_in_between_resets_the_count() {
        let h = KeyHealth::default();
        let t = 10 * S;
        for _ in 0..EJECT_AFTER - 1 {
            assert_eq!(h.record(Verdict::Failure, t), None);
        }
        h.record(Verdict::Success, t);
        for _ in 0..EJECT_AFTER - 1 {
            assert_eq!(h.record(Verdict::Failure, t), None);
        }
        assert_eq!(h.state(t), State::InService);
        assert_eq!(h.record(Verdict::Failure, t), Some(BASE_EJECTION));
        assert_eq!(
            h.state(t + S),
            State::Ejected {
                remaining_ms: 29 * S
            }
        );
        assert!(!h.available(t + S));
        assert_eq!(h.ejections_total(), 1);
        // Late failures of requests sent before the ejection do not extend it.
        assert_eq!(h.record(Verdict::Failure, t + 2 * S), None);
        assert_eq!(
            h.state(t + 2 * S),
            State::Ejected {
                remaining_ms: 28 * S
            }
        );
    }

    #[test]
    fn one_probe_at_a_time_after_the_cooldown_and_its_outcome_decides() {
        let h = KeyHealth::default();
        let t = 10 * S;
        for _ in 0..EJECT_AFTER {
            h.record(Verdict::Failure, t);
        }
        let after = t + millis(BASE_EJECTION);
        assert_eq!(h.state(after), State::Probe);
        assert!(h.available(after));
        assert!(h.claim(after), "the first request probes");
        assert_eq!(h.state(after + 1), State::Probing);
        assert!(!h.available(after + 1));
        assert!(!h.claim(after + 1), "only one probe at a time");
        // The probe fails: out again for twice as long.
        assert_eq!(
            h.record(Verdict::Failure, after + 2),
            Some(BASE_EJECTION * 2)
        );
        let again = after + 2 + millis(BASE_EJECTION * 2);
        assert_eq!(h.state(again - 1), State::Ejected { remaining_ms: 1 });
        assert!(h.claim(again));
        // The probe succeeds: back in service, the multiplier reset.
        h.record(Verdict::Success, again + 5);
        assert_eq!(h.state(again + 5), State::InService);
        for _ in 0..EJECT_AFTER - 1 {
            h.record(Verdict::Failure, again + 6);
        }
        assert_eq!(h.record(Verdict::Failure, again + 6), Some(BASE_EJECTION));
        assert_eq!(h.ejections_total(), 3);
    }

    #[test]
    fn a_probe_that_never_reports_frees_the_slot_and_cooldowns_are_capped() {
        let h = KeyHealth::default();
        let mut t = S;
        for _ in 0..EJECT_AFTER {
            h.record(Verdict::Failure, t);
        }
        t += millis(BASE_EJECTION);
        assert!(h.claim(t));
        assert_eq!(h.state(t + millis(PROBE_TIMEOUT) - 1), State::Probing);
        assert_eq!(h.state(t + millis(PROBE_TIMEOUT)), State::Probe);
        // Ejection after ejection, the cooldown stops growing at MAX_EJECTION.
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            t += millis(last) + millis(PROBE_TIMEOUT);
            assert!(h.claim(t));
            last = h.record(Verdict::Failure, t).expect("the probe failed");
        }
        assert_eq!(last, MAX_EJECTION);
    }

    fn runtime() -> Runtime {
        let key = |id: &str, name: &str| pb::ProviderKey {
            id: id.into(),
            name: name.into(),
            models: vec!["*".into()],
            weight: 1.0,
            value: Some(pb::ValueRef {
                source: Some(pb::value_ref::Source::Literal("sk-ant".into())),
            }),
            enabled: true,
            ..Default::default()
        };
        Runtime::compile(&pb::Snapshot {
            version: 1,
            providers: vec![pb::Provider {
                name: "anthropic".into(),
                kind: pb::ProviderKind::Anthropic as i32,
                keys: vec![key("k\"1", "eu"), key("k2", "us")],
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("valid")
    }

    /// The fleet report lists exactly the keys out of service (the metrics, every key:
    /// `metrics::tests`).
    #[test]
    fn reports_name_the_ejected_keys() {
        let rt = runtime();
        let now = 5 * S;
        assert!(out_of_service(&rt, now).is_empty());
        let k1 = &rt.provider("anthropic").expect("provider").keys[0];
        for _ in 0..EJECT_AFTER {
            k1.health.record(Verdict::Failure, now);
        }
        let report = out_of_service(&rt, now + S);
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(
            (
                report[0].key_id.as_str(),
                report[0].cooldown_remaining_ms,
                report[0].ejections_total
            ),
            ("k\"1", 29 * S, 1)
        );
        // Counting down is no change; the cooldown ending (probe due) is.
        let later = out_of_service(&rt, now + 2 * S);
        assert!(same_ejections(&report, &later));
        let due = out_of_service(&rt, now + millis(BASE_EJECTION));
        assert_eq!(due[0].cooldown_remaining_ms, 0);
        assert!(!same_ejections(&report, &due));
        assert!(!same_ejections(&report, &[]));
    }
}

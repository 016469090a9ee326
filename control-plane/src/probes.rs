//! Provider-key probes in flight: the admin API's "test this key"
//! (`POST /api/providers/{provider}/keys/{key_id}/test`) handed to a data plane and its answer
//! handed back.
//!
//! Only data planes talk to providers (they hold the signing, the `env.NAME` values and the
//! proxies), so the control plane asks one. Every data plane connected to this replica is a
//! [`ProbeTarget`]: its Watch stream attaches one ([`crate::grpc`]) and sends it the
//! `ConfigUpdate.probe` requests queued for it, and feeds the `WatchRequest.probe_result`s it
//! reads back through [`ProbeTarget::answer`]. All-in-one attaches its in-process data plane the
//! same way (`tollgate/src/roles.rs`).
//!
//! [`Probes::run`] picks a target (the one whose applied config version is highest, then the
//! most recently connected), gives the request a fresh id and waits on a oneshot for the answer
//! from that same target, at most the given timeout. Bounded everywhere: at most
//! [`MAX_IN_FLIGHT`] probes wait at once per replica (more are refused as busy), each target
//! queues at most [`TARGET_QUEUE`], and a waiter that gives up (timeout, or the admin request
//! dropped) removes its entry, so a late answer is ignored. A target that goes away fails the
//! probes it was given at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tollgate_proto::config::v1::{ProbeRequest, ProbeResult};

/// Probes waiting for an answer at once, per control-plane replica.
pub const MAX_IN_FLIGHT: usize = 8;
/// Probe requests queued per data plane, not yet on its stream.
pub const TARGET_QUEUE: usize = 4;
/// How long the admin API waits for a data plane's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a probe got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "no data plane is connected to this control plane: a key can only be tested by a data \
         plane (start one with --control-plane pointing here)"
    )]
    NoDataPlane,
    #[error("too many key tests are running; try again in a moment")]
    Busy,
    #[error("data plane {0:?} did not answer the key test within {1} ms")]
    TimedOut(String, u64),
    #[error("data plane {0:?} disconnected before answering the key test")]
    Disconnected(String),
}

/// The probes of one control-plane replica (see the module docs).
#[derive(Debug)]
pub struct Probes {
    state: Mutex<State>,
    next_id: AtomicU64,
    running: Semaphore,
    /// How long the admin API waits for an answer, in milliseconds.
    timeout_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    targets: Vec<Target>,
    pending: HashMap<u64, Pending>,
    next_token: u64,
}

#[derive(Debug)]
struct Target {
    token: u64,
    node_id: String,
    tx: mpsc::Sender<ProbeRequest>,
}

#[derive(Debug)]
struct Pending {
    token: u64,
    tx: oneshot::Sender<ProbeResult>,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            running: Semaphore::new(MAX_IN_FLIGHT),
            timeout_ms: AtomicU64::new(
                u64::try_from(PROBE_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
            ),
        }
    }
}

impl Probes {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a data plane that can run probes; it receives them from the returned target
    /// until it drops it.
    pub fn attach(self: &Arc<Self>, node_id: &str) -> ProbeTarget {
        let (tx, rx) = mpsc::channel(TARGET_QUEUE);
        let mut state = self.state();
        state.next_token += 1;
        let token = state.next_token;
        state.targets.push(Target {
            token,
            node_id: node_id.to_owned(),
            tx,
        });
        ProbeTarget {
            answers: ProbeAnswers {
                probes: Arc::clone(self),
                token,
            },
            node_id: node_id.to_owned(),
            rx,
        }
    }

    /// How long the admin API waits for an answer ([`PROBE_TIMEOUT`] unless set).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms.store(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Whether any data plane can take a probe now.
    pub fn has_targets(&self) -> bool {
        !self.state().targets.is_empty()
    }

    /// Sends `req` (its `probe_id` is set here) to one target, preferring the highest
    /// `applied_version(node_id)`, and waits up to `timeout` for its answer. Returns the node
    /// that answered and its result.
    pub async fn run(
        &self,
        mut req: ProbeRequest,
        applied_version: impl Fn(&str) -> u64,
        timeout: Duration,
    ) -> Result<(String, ProbeResult), ProbeError> {
        let _permit = self.running.try_acquire().map_err(|_| ProbeError::Busy)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.probe_id = id;
        let (tx, rx) = oneshot::channel();
        let node_id = {
            let mut state = self.state();
            if state.targets.is_empty() {
                return Err(ProbeError::NoDataPlane);
            }
            let mut order: Vec<usize> = (0..state.targets.len()).collect();
            order.sort_by_key(|&i| {
                let t = &state.targets[i];
                std::cmp::Reverse((applied_version(&t.node_id), t.token))
            });
            let Some(i) = order
                .into_iter()
                .find(|&i| state.targets[i].tx.try_send(req.clone()).is_ok())
            else {
                return Err(ProbeError::Busy);
            };
            let token = state.targets[i].token;
            let node_id = state.targets[i].node_id.clone();
            // Under the same lock as the send: the answer cannot arrive before the entry.
            state.pending.insert(id, Pending { token, tx });
            node_id
        };
        let _waiting = Waiting { probes: self, id };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => Ok((node_id, result)),
            Ok(Err(_)) => Err(ProbeError::Disconnected(node_id)),
            Err(_) => Err(ProbeError::TimedOut(
                node_id,
                u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }

    /// Hands `result` to its waiter if target `token` was given that probe.
    fn complete(&self, token: u64, result: ProbeResult) -> bool {
        let mut state = self.state();
        match state.pending.get(&result.probe_id) {
            Some(p) if p.token == token => {}
            _ => return false,
        }
        let Some(pending) = state.pending.remove(&result.probe_id) else {
            return false;
        };
        pending.tx.send(result).is_ok()
    }

    /// Fails a probe target `token` was given but could not pass on.
    fn abandon(&self, token: u64, probe_id: u64) {
        let mut state = self.state();
        if state
            .pending
            .get(&probe_id)
            .is_some_and(|p| p.token == token)
        {
            state.pending.remove(&probe_id);
        }
    }

    fn detach(&self, token: u64) {
        let mut state = self.state();
        state.targets.retain(|t| t.token != token);
        // Dropping their senders wakes their waiters with `Disconnected`.
        state.pending.retain(|_, p| p.token != token);
    }
}

/// Removes a waiter's entry however it ends (answer, timeout, admin request dropped).
struct Waiting<'a> {
    probes: &'a Probes,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.probes.state().pending.remove(&self.id);
    }
}

/// A data plane's end: the probes queued for it and where its answers go. Dropping it detaches
/// the data plane and fails the probes it has not answered.
#[derive(Debug)]
pub struct ProbeTarget {
    answers: ProbeAnswers,
    node_id: String,
    rx: mpsc::Receiver<ProbeRequest>,
}

impl ProbeTarget {
    /// The next probe to run (`None` never happens while the target is attached).
    pub async fn next(&mut self) -> Option<ProbeRequest> {
        self.rx.recv().await
    }

    /// Where to send answers from other tasks.
    pub fn answers(&self) -> ProbeAnswers {
        self.answers.clone()
    }

    /// Hands over an answer; `false` when nobody waits for it (unknown id, another node's
    /// probe, or the waiter gave up).
    pub fn answer(&self, result: ProbeResult) -> bool {
        self.answers.answer(result)
    }

    /// Fails a probe this target received but could not pass on to its data plane.
    pub fn abandon(&self, probe_id: u64) {
        self.answers.probes.abandon(self.answers.token, probe_id);
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}

impl Drop for ProbeTarget {
    fn drop(&mut self) {
        self.answers.probes.detach(self.answers.token);
    }
}

/// Hands a target's answers over (cloneable, for the tasks that run its probes).
#[derive(Debug, Clone)]
pub struct ProbeAnswers {
    probes: Arc<Probes>,
    token: u64,
}

impl ProbeAnswers {
    /// See [`ProbeTarget::answer`].
    pub fn answer(&self, result: ProbeResult) -> bool {
        self.probes.complete(self.token, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ProbeRequest {
        ProbeRequest {
            provider: "anthropic".into(),
            key_id: "k1".into(),
            model: "claude-haiku-4-5".into(),
            config_version: 3,
            ..ProbeRequest::default()
        }
    }

    fn ok(probe_id: u64) -> ProbeResult {
        ProbeResult {
            probe_id,
            ok: true,
            status: 200,
            ..ProbeResult::default()
        }
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn no_target_is_no_data_plane() {
        let probes = Arc::new(Probes::default());
        assert!(!probes.has_targets());
        let got = probes.run(request(), |_| 0, WAIT).await;
        assert_eq!(got, Err(ProbeError::NoDataPlane));
    }

    #[tokio::test]
    async fn the_answer_of_the_target_that_got_the_probe_is_returned() {
        let probes = Arc::new(Probes::default());
        let mut old = probes.attach("dp-old");
        let mut new = probes.attach("dp-new");
        let versions = |node: &str| if node == "dp-new" { 5 } else { 4 };
        let run = {
            let probes = probes.clone();
            tokio::spawn(async move { probes.run(request(), versions, WAIT).await })
        };
        let req = new.next().await.unwrap();
        assert_eq!((req.key_id.as_str(), req.config_version), ("k1", 3));
        assert!(old.rx.try_recv().is_err(), "only the newest config gets it");
        // Another node cannot answer for it; an unknown id is ignored.
        assert!(!old.answer(ok(req.probe_id)));
        assert!(!new.answer(ok(req.probe_id + 100)));
        assert!(new.answer(ok(req.probe_id)));
        let (node, result) = run.await.unwrap().unwrap();
        assert_eq!(node, "dp-new");
        assert!(result.ok);
        assert!(!new.answer(ok(req.probe_id)), "answered once");
        drop(old);
    }

    #[tokio::test]
    async fn a_silent_target_times_out_and_a_late_answer_is_ignored() {
        let probes = Arc::new(Probes::default());
        let mut target = probes.attach("dp-1");
        let got = probes
            .run(request(), |_| 0, Duration::from_millis(50))
            .await;
        assert_eq!(got, Err(ProbeError::TimedOut("dp-1".into(), 50)));
        let req = target.next().await.unwrap();
        assert!(!target.answer(ok(req.probe_id)));
        assert!(probes.state().pending.is_empty());
    }

    #[tokio::test]
    async fn a_target_that_goes_away_fails_its_probes_at_once() {
        let probes = Arc::new(Probes::default());
        let mut target = probes.attach("dp-1");
        let run = {
            let probes = probes.clone();
            tokio::spawn(async move { probes.run(request(), |_| 0, WAIT).await })
        };
        let _req = target.next().await.unwrap();
        drop(target);
        let got = tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .expect("no waiting for the timeout")
            .unwrap();
        assert_eq!(got, Err(ProbeError::Disconnected("dp-1".into())));
        assert!(!probes.has_targets());
    }

    #[tokio::test]
    async fn probes_in_flight_and_queues_are_bounded() {
        let probes = Arc::new(Probes::default());
        let _target = probes.attach("dp-1");
        let mut waiting = Vec::new();
        for _ in 0..TARGET_QUEUE {
            let probes = probes.clone();
            waiting.push(tokio::spawn(async move {
                probes.run(request(), |_| 0, WAIT).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The target's queue is full (nobody reads it).
        let got = probes.run(request(), |_| 0, WAIT).await;
        assert_eq!(got, Err(ProbeError::Busy));
        // A second target takes more, up to the replica's limit.
        let _other = probes.attach("dp-2");
        for _ in TARGET_QUEUE..MAX_IN_FLIGHT {
            let probes = probes.clone();
            waiting.push(tokio::spawn(async move {
                probes.run(request(), |_| 0, WAIT).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(probes.state().pending.len(), MAX_IN_FLIGHT);
        let got = probes.run(request(), |_| 0, WAIT).await;
        assert_eq!(got, Err(ProbeError::Busy));
        for w in waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn an_abandoned_probe_fails_at_once() {
        let probes = Arc::new(Probes::default());
        let mut target = probes.attach("dp-1");
        let run = {
            let probes = probes.clone();
            tokio::spawn(async move { probes.run(request(), |_| 0, WAIT).await })
        };
        let req = target.next().await.unwrap();
        target.abandon(req.probe_id);
        let got = tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Err(ProbeError::Disconnected("dp-1".into())));
    }
}

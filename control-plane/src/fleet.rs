//! The fleet registry: which data planes are watching this control plane and how far their
//! config is.
//!
//! A data plane registers when its `ConfigService.Watch` stream opens with a `Hello`, and every
//! `Ack` it sends updates its entry (applied version, last NACK reason). The registry is
//! **in memory and per replica**: it starts empty when the control plane starts and is refilled
//! as data planes reconnect (they re-register on every new stream). With several control-plane
//! replicas behind a load balancer, each one lists the nodes connected to it.
//!
//! Entries of disconnected nodes are kept (so the fleet view shows nodes that went away) until
//! they have been gone for [`FORGET_AFTER`]. A node is *lagging* when the version it applied is
//! older than the published one, or when it has not been seen for more than [`LAG_AFTER`]. An
//! open stream counts as seeing the node (the transport's keepalive detects dead peers), so a
//! connected node's `last_seen` is the time of the query.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tollgate_proto::config::v1::{Ack, Hello, KeyHealthReport};

use crate::allowances::Member;
use tollgate_proto::logsafe::log_safe;

/// A node not seen for longer than this counts as lagging.
pub const LAG_AFTER: Duration = Duration::from_secs(30);
/// Disconnected nodes are forgotten after this long.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long a data plane that went away keeps its share of every limit before the others get
/// it (see [`Fleet::share_of`]).
pub const SHARE_LEASE: Duration = Duration::from_secs(60);

/// Longest node id, build version, address and error text kept (longer input is cut).
const MAX_TEXT: usize = 512;

/// One data plane as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: String,
    /// Where it serves inference (from its `Hello`), else the address its stream came from.
    pub address: String,
    pub build_version: String,
    /// The config version it last reported as applied (its `Hello.have_version` until it ACKs).
    pub applied_version: u64,
    /// The newest version sent to it on its current (or last) stream.
    pub sent_version: u64,
    /// The reason of its last NACK; cleared when it applies that version or a newer one.
    pub last_error: Option<String>,
    /// The version that NACK was about.
    pub last_error_version: Option<u64>,
    /// Whether a Watch stream from it is open.
    pub connected: bool,
    /// When it was last heard from (now, while connected).
    pub last_seen: OffsetDateTime,
    /// When its current (or last) stream opened.
    pub connected_since: OffsetDateTime,
    /// Applied version older than the published one, or not seen for more than [`LAG_AFTER`].
    pub lagging: bool,
    /// The provider keys its outlier detection has out of service, as it last reported them.
    pub ejected_keys: Vec<EjectedKeyStatus>,
}

/// A provider key a data plane has out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EjectedKeyStatus {
    pub provider: String,
    pub key_id: String,
    pub key_name: String,
    /// When its cooldown ends (then one request probes it); `None`: being probed now.
    pub until: Option<OffsetDateTime>,
    /// Its ejections on that data plane since it started.
    pub ejections_total: u64,
}

/// Most ejected keys kept per node (a report is clipped to it).
const MAX_EJECTED_KEYS: usize = 256;

#[derive(Debug)]
struct Node {
    address: String,
    build_version: String,
    applied_version: u64,
    sent_version: u64,
    last_error: Option<(u64, String)>,
    connected: bool,
    last_seen: OffsetDateTime,
    connected_since: OffsetDateTime,
    /// Which stream owns the entry: a node that reconnects before its old stream is noticed as
    /// closed must not be marked disconnected by the old one.
    session: u64,
    ejected_keys: Vec<EjectedKeyStatus>,
}

/// The registry. Cheap to share (`Arc`), safe to use from any task.
#[derive(Debug, Default)]
pub struct Fleet {
    nodes: Mutex<HashMap<String, Node>>,
    sessions: AtomicU64,
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    fn nodes(&self) -> MutexGuard<'_, HashMap<String, Node>> {
        // A panic while holding the lock cannot leave an entry half-written in a way that
        // matters here; keep serving.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or re-registers) the node of a `Hello`. The returned guard marks the node
    /// disconnected when dropped (stream ended, task cancelled or panicked).
    pub(crate) fn register(
        self: &Arc<Self>,
        hello: &Hello,
        peer: Option<SocketAddr>,
    ) -> NodeSession {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let node_id = clip(&hello.node_id);
        let address = if hello.address.trim().is_empty() {
            peer.map(|p| p.to_string()).unwrap_or_default()
        } else {
            clip(&hello.address)
        };
        let now = OffsetDateTime::now_utc();
        let mut nodes = self.nodes();
        forget_old(&mut nodes, now);
        let last_error = nodes.get(&node_id).and_then(|n| n.last_error.clone());
        nodes.insert(
            node_id.clone(),
            Node {
                address,
                build_version: clip(&hello.build_version),
                applied_version: hello.have_version,
                sent_version: 0,
                last_error: last_error.filter(|(v, _)| *v > hello.have_version),
                connected: true,
                last_seen: now,
                connected_since: now,
                session,
                ejected_keys: Vec::new(),
            },
        );
        NodeSession {
            fleet: self.clone(),
            node_id,
            session,
        }
    }

    /// Runs `f` on the node's entry if `s` still owns it; returns whether it did.
    fn with_node(&self, s: &NodeSession, f: impl FnOnce(&mut Node)) -> bool {
        let mut nodes = self.nodes();
        match nodes.get_mut(&s.node_id).filter(|n| n.session == s.session) {
            Some(node) => {
                f(node);
                true
            }
            None => false,
        }
    }

    /// The nodes, ordered by id. `published` is the version currently published.
    pub fn list(&self, published: u64) -> Vec<NodeStatus> {
        self.list_at(published, OffsetDateTime::now_utc())
    }

    fn list_at(&self, published: u64, now: OffsetDateTime) -> Vec<NodeStatus> {
        let mut nodes = self.nodes();
        forget_old(&mut nodes, now);
        let mut out: Vec<NodeStatus> = nodes
            .iter()
            .map(|(id, n)| {
                let last_seen = if n.connected { now } else { n.last_seen };
                let unseen = now - last_seen > LAG_AFTER;
                NodeStatus {
                    node_id: id.clone(),
                    address: n.address.clone(),
                    build_version: n.build_version.clone(),
                    applied_version: n.applied_version,
                    sent_version: n.sent_version,
                    last_error: n.last_error.as_ref().map(|(_, e)| e.clone()),
                    last_error_version: n.last_error.as_ref().map(|(v, _)| *v),
                    connected: n.connected,
                    last_seen,
                    connected_since: n.connected_since,
                    lagging: n.applied_version < published || unseen,
                    ejected_keys: n.ejected_keys.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }
}

impl Fleet {
    /// The share of every limit that node `node_id` may admit: its slot among the fleet's
    /// members (connected nodes, and nodes gone for less than [`SHARE_LEASE`], whose share is
    /// kept for them: one that lost only its link to the control plane may still be admitting),
    /// ordered by id, and their number. `(0, 1)` for a node that is not a member.
    pub(crate) fn share_of(&self, node_id: &str) -> (u32, u32) {
        self.members()
            .into_iter()
            .find(|m| m.node_id == node_id)
            .map_or((0, 1), |m| (m.slot, m.of))
    }

    /// The fleet's members (connected nodes, and nodes gone for less than [`SHARE_LEASE`]),
    /// ordered by id, each with its slot.
    pub fn members(&self) -> Vec<Member> {
        let now = OffsetDateTime::now_utc();
        let nodes = self.nodes();
        let mut members: Vec<(&str, bool)> = nodes
            .iter()
            .filter(|(_, n)| n.connected || now - n.last_seen <= SHARE_LEASE)
            .map(|(id, n)| (id.as_str(), n.connected))
            .collect();
        members.sort_unstable();
        let of = u32::try_from(members.len()).unwrap_or(u32::MAX);
        members
            .into_iter()
            .enumerate()
            .map(|(slot, (id, connected))| Member {
                node_id: id.to_owned(),
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                of,
                connected,
            })
            .collect()
    }
}

fn forget_old(nodes: &mut HashMap<String, Node>, now: OffsetDateTime) {
    nodes.retain(|_, n| n.connected || now - n.last_seen <= FORGET_AFTER);
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// One open Watch stream of a node. Dropping it marks the node disconnected (unless the node has
/// re-registered on a newer stream since).
#[derive(Debug)]
pub(crate) struct NodeSession {
    fleet: Arc<Fleet>,
    node_id: String,
    session: u64,
}

impl NodeSession {
    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// A snapshot of `version` was handed to the stream.
    pub(crate) fn sent(&self, version: u64) {
        self.fleet.with_node(self, |n| n.sent_version = version);
    }

    /// The node reported the provider keys it has out of service (the whole list).
    pub(crate) fn key_health(&self, report: &KeyHealthReport) {
        let now = OffsetDateTime::now_utc();
        let keys = report
            .ejected
            .iter()
            .take(MAX_EJECTED_KEYS)
            .map(|k| EjectedKeyStatus {
                provider: clip(&k.provider),
                key_id: clip(&k.key_id),
                key_name: clip(&k.key_name),
                until: (k.cooldown_remaining_ms > 0)
                    .then(|| now + Duration::from_millis(k.cooldown_remaining_ms.min(86_400_000))),
                ejections_total: k.ejections_total,
            })
            .collect();
        self.fleet.with_node(self, |n| {
            n.last_seen = now;
            n.ejected_keys = keys;
        });
    }

    /// The node answered with an ACK or NACK.
    pub(crate) fn acked(&self, ack: &Ack) {
        self.fleet.with_node(self, |n| {
            n.last_seen = OffsetDateTime::now_utc();
            if ack.applied {
                n.applied_version = n.applied_version.max(ack.version);
                if n.last_error
                    .as_ref()
                    .is_some_and(|(v, _)| *v <= n.applied_version)
                {
                    n.last_error = None;
                }
            } else {
                let reason = if ack.error.trim().is_empty() {
                    "rejected without a reason".to_owned()
                } else {
                    clip(&ack.error)
                };
                n.last_error = Some((ack.version, reason));
            }
        });
    }
}

impl Drop for NodeSession {
    fn drop(&mut self) {
        let now = OffsetDateTime::now_utc();
        if self.fleet.with_node(self, |n| {
            n.connected = false;
            n.last_seen = now;
        }) {
            tracing::info!(node_id = %log_safe(&self.node_id), "data plane disconnected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str, have: u64) -> Hello {
        Hello {
            node_id: id.into(),
            build_version: "0.1.0".into(),
            have_version: have,
            address: String::new(),
        }
    }

    #[test]
    fn acks_nacks_and_lag() {
        let fleet = Arc::new(Fleet::new());
        let peer: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let s = fleet.register(&hello("b", 3), Some(peer));
        let _a = fleet.register(&hello("a", 5), None);
        let list = fleet.list(5);
        assert_eq!(list[0].node_id, "a");
        assert!(!list[0].lagging);
        assert_eq!(list[1].address, "10.0.0.7:5000", "peer address as fallback");
        assert!(list[1].lagging && list[1].applied_version == 3);

        s.sent(5);
        s.acked(&Ack {
            version: 5,
            applied: false,
            error: "bad alias".into(),
        });
        let b = &fleet.list(5)[1];
        assert_eq!(b.sent_version, 5);
        assert_eq!(b.last_error.as_deref(), Some("bad alias"));
        assert_eq!(b.last_error_version, Some(5));
        assert!(b.lagging);

        s.acked(&Ack {
            version: 6,
            applied: true,
            error: String::new(),
        });
        let b = &fleet.list(6)[1];
        assert_eq!(b.applied_version, 6);
        assert_eq!(b.last_error, None, "cleared by applying a newer version");
        assert!(!b.lagging);

        // Not seen for more than 30 s: lagging even though up to date.
        drop(s);
        let later = OffsetDateTime::now_utc() + Duration::from_secs(31);
        let b = &fleet.list_at(6, later)[1];
        assert!(!b.connected && b.lagging);
        // Forgotten after a day.
        let much_later = OffsetDateTime::now_utc() + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(fleet.list_at(6, much_later).len(), 1);
    }

    #[test]
    fn an_old_stream_does_not_disconnect_a_reconnected_node() {
        let fleet = Arc::new(Fleet::new());
        let old = fleet.register(&hello("n", 1), None);
        let new = fleet.register(&hello("n", 1), None);
        drop(old);
        assert!(fleet.list(1)[0].connected);
        drop(new);
        assert!(!fleet.list(1)[0].connected);
    }
}

//! Allowances: the control plane's half of fleet-wide limits.
//!
//! Every data plane admits against its allowance of each counter (budget, request or token
//! rate limit) in each window: its fleet share (`FleetShare`) until this module grants it
//! another amount. Data planes report, about twice a second on their Watch stream, what they
//! hold of every counter in use (used and reserved, their allowance, and what they refused for
//! want of allowance) and which grants they have applied (`LimitsReport.grant_seq`).
//! [`Allowances::rebalance`] runs every [`REBALANCE_EVERY`] and moves allowance to where it is
//! used, through `Grants` that the Watch streams deliver.
//!
//! **The invariant.** For each counter and window, with `hold(n) = max(allowance n reported,
//! used n reported, every grant sent to n since the report)`, the sum of holds over the
//! fleet's members never exceeds the limit through a grant of ours. `hold(n)` bounds what node
//! `n` can end up using in the window (a node admits only while `used + reserved + ask <=
//! allowance`, so after applying an allowance its use stays at most the larger of the two), so
//! the fleet admits at most the limit. Hence the order: an allowance is lowered by a grant and
//! counts at its old amount until the node reports having applied it; only then can the
//! difference be granted to another node. Raising is immediate, from what no hold claims.
//!
//! **Targets.** Of what the fleet has not used (`limit - sum of used`), each member is aimed
//! at its used amount plus a part in proportion to its recent demand (the growth of its used
//! and wanted amounts, smoothed over rounds), and a floor of [`IDLE_FLOOR_PPM`] of it shared
//! equally, so an idle node can still admit a first request. Without any demand, the parts are
//! equal (the fleet shares).
//!
//! State is in memory and per replica, like the fleet registry: after a restart it is rebuilt
//! from the next reports (which carry each node's allowance, so nothing granted is forgotten).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prost::Message;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::share::share_of_limit;

/// How often allowances are rebalanced.
pub const REBALANCE_EVERY: Duration = Duration::from_millis(500);
/// Part of the unused capacity of a counter shared equally among members whatever their
/// demand, in millionths.
pub const IDLE_FLOOR_PPM: u64 = 100_000;
/// In-flight figures older than this no longer count.
const FRESH_MS: i64 = 5_000;
/// Grant messages kept for a node whose stream has not taken them (older ones are dropped:
/// the node's next report says what it has).
const MAX_OUTBOX: usize = 8;
/// Most entries of one report round kept (a larger round is cut).
const MAX_ROUND: usize = 1_000_000;
const SCALE: u128 = 1_000_000;

/// A member of the fleet, as [`crate::fleet::Fleet::members`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: String,
    pub slot: u32,
    pub of: u32,
    /// Whether its stream is open (only connected members are sent grants).
    pub connected: bool,
}

/// A level of the hierarchy as the reports name it: `(LevelKind, id, provider)`.
pub type LevelKey = (i32, String, String);

/// The registry of allowances. Cheap to share behind an `Arc`, safe from any task.
#[derive(Debug)]
pub struct Allowances {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The last grant sequence number handed out.
    seq: u64,
    nodes: HashMap<String, NodeState>,
    /// By encoded `CounterRef` and window start.
    counters: HashMap<(Vec<u8>, i64), CounterState>,
    /// The members of the last round (a change unsettles every counter).
    last_members: Vec<Member>,
}

#[derive(Debug, Default)]
struct NodeState {
    acked_seq: u64,
    reported_at_ms: i64,
    round: Vec<pb::CounterUse>,
    round_in_flight: Vec<pb::LevelInFlight>,
    in_flight: HashMap<LevelKey, u32>,
    outbox: VecDeque<pb::Grants>,
}

#[derive(Debug)]
struct CounterState {
    counter: pb::CounterRef,
    window_start: i64,
    window_end: i64,
    limit: u64,
    nodes: HashMap<String, NodeCounter>,
    /// Nothing to do until a report or the fleet changes (no demand, nothing pending, every
    /// member at its target): rounds skip it.
    settled: bool,
}

#[derive(Debug, Default)]
struct NodeCounter {
    used: u64,
    wanted: u64,
    /// As last reported (grants up to the node's acknowledged sequence); `None`: its share.
    allowance: Option<u64>,
    /// Grants sent since (sequence, amount), oldest first.
    pending: Vec<(u64, u64)>,
    /// `used + wanted` at the previous round, and the smoothed growth per round (x 1024).
    last_demand: u64,
    rate: u64,
    /// The last grant queued for it said the fleet is exhausted.
    told_exhausted: bool,
}

impl Allowances {
    /// A registry whose grant sequence numbers start above `seq_base` (the control plane
    /// passes its start time in microseconds, so numbers keep growing across its restarts and
    /// a node's report of an older process's grant never acknowledges a newer one).
    pub fn new(seq_base: u64) -> Allowances {
        Allowances {
            state: Mutex::new(State {
                seq: seq_base,
                nodes: HashMap::new(),
                counters: HashMap::new(),
                last_members: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the figures consistent enough to go on with.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one report message of `node_id`. Counters of a round that lists what changed are
    /// taken as they come; a full round (every counter in use) replaces, at its final message,
    /// everything the node reported before: counters it no longer lists hold nothing and are at
    /// its share. A round's final message acknowledges its grants and replaces the node's
    /// requests in flight.
    pub fn report(&self, node_id: &str, msg: pb::LimitsReport, now_ms: i64) {
        let mut st = self.state();
        let st = &mut *st;
        let node = st.nodes.entry(node_id.to_owned()).or_default();
        node.reported_at_ms = now_ms;
        if node.round_in_flight.len() + msg.in_flight.len() <= MAX_ROUND {
            node.round_in_flight.extend(msg.in_flight);
        }
        let changes = if msg.full {
            if node.round.len() + msg.counters.len() <= MAX_ROUND {
                node.round.extend(msg.counters);
            }
            Vec::new()
        } else {
            msg.counters
        };
        let newly_acked = msg.r#final && msg.grant_seq > node.acked_seq;
        if msg.r#final {
            node.acked_seq = node.acked_seq.max(msg.grant_seq);
            node.in_flight = std::mem::take(&mut node.round_in_flight)
                .into_iter()
                .filter(|f| f.in_flight > 0)
                .map(|f| ((f.level, f.id, f.provider), f.in_flight))
                .collect();
        }
        let acked = node.acked_seq;
        let full_round = if msg.r#final {
            // A full round's counters; a partial full round before a delta's final is dropped
            // (the data plane follows an incomplete round with a full one).
            let round = std::mem::take(&mut node.round);
            msg.full.then_some(round)
        } else {
            None
        };
        let mut entries: Vec<((Vec<u8>, i64), pb::CounterUse)> = full_round
            .into_iter()
            .flatten()
            .chain(changes)
            .filter(|u| {
                u.counter.is_some()
                    && u.window_end_unix_ms > now_ms
                    && u.window_end_unix_ms > u.window_start_unix_ms
            })
            .map(|u| {
                let key = (
                    u.counter
                        .as_ref()
                        .map(Message::encode_to_vec)
                        .unwrap_or_default(),
                    u.window_start_unix_ms,
                );
                (key, u)
            })
            .collect();
        if msg.full && msg.r#final {
            // What the round does not list, the node holds nothing of.
            let listed: std::collections::HashSet<&(Vec<u8>, i64)> =
                entries.iter().map(|(k, _)| k).collect();
            for (key, c) in st.counters.iter_mut() {
                if listed.contains(key) {
                    continue;
                }
                if let Some(nc) = c.nodes.get_mut(node_id)
                    && (nc.used, nc.wanted, nc.allowance) != (0, 0, None)
                {
                    nc.used = 0;
                    nc.wanted = 0;
                    nc.allowance = None;
                    c.settled = false;
                }
            }
        }
        for (key, u) in entries.drain(..) {
            let c = st.counters.entry(key).or_insert_with(|| CounterState {
                counter: u.counter.clone().unwrap_or_default(),
                window_start: u.window_start_unix_ms,
                window_end: u.window_end_unix_ms,
                limit: u.limit,
                nodes: HashMap::new(),
                settled: false,
            });
            let nc = c.nodes.entry(node_id.to_owned()).or_default();
            let figures = (u.used, u.wanted, Some(u.allowance));
            if (nc.used, nc.wanted, nc.allowance) != figures || c.limit != u.limit {
                (nc.used, nc.wanted, nc.allowance) = figures;
                c.limit = u.limit;
                c.settled = false;
            }
        }
        // Grants are numbered upwards, so only a higher acknowledgement clears any.
        if newly_acked {
            for c in st.counters.values_mut() {
                if let Some(nc) = c.nodes.get_mut(node_id)
                    && nc.pending.first().is_some_and(|(seq, _)| *seq <= acked)
                {
                    nc.pending.retain(|(seq, _)| *seq > acked);
                    c.settled = false;
                }
            }
        }
    }

    /// Requests in flight at a level over every node that reported in the last few seconds.
    pub fn in_flight(&self, level: &LevelKey, now_ms: i64) -> u64 {
        self.state()
            .nodes
            .values()
            .filter(|n| now_ms - n.reported_at_ms <= FRESH_MS)
            .filter_map(|n| n.in_flight.get(level))
            .map(|n| u64::from(*n))
            .sum()
    }

    /// The grant messages waiting for `node_id`, oldest first.
    pub fn take_grants(&self, node_id: &str) -> Vec<pb::Grants> {
        self.state()
            .nodes
            .get_mut(node_id)
            .map(|n| n.outbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// One round: forgets windows that are over and nodes that left the fleet, then moves
    /// allowance towards each counter's targets (module docs), queueing grants for connected
    /// members. Returns how many grants were queued.
    pub fn rebalance(&self, members: &[Member], now_ms: i64) -> usize {
        let mut st = self.state();
        let st = &mut *st;
        st.counters.retain(|_, c| c.window_end > now_ms);
        st.nodes.retain(|id, n| {
            members.iter().any(|m| m.node_id == *id) || now_ms - n.reported_at_ms <= FRESH_MS
        });
        if members.is_empty() {
            return 0;
        }
        if st.last_members != members {
            st.last_members = members.to_vec();
            for c in st.counters.values_mut() {
                c.nodes
                    .retain(|id, _| members.iter().any(|m| m.node_id == *id));
                c.settled = false;
            }
        }
        // One message per node this round, numbered when its first grant comes.
        let mut out: HashMap<&str, pb::Grants> = HashMap::new();
        let mut queued = 0;
        for c in st.counters.values_mut().filter(|c| !c.settled) {
            for (member, amount, exhausted) in plan(c, members) {
                let msg = out.entry(member.node_id.as_str()).or_insert_with(|| {
                    st.seq += 1;
                    pb::Grants {
                        seq: st.seq,
                        grants: Vec::new(),
                    }
                });
                let nc = c.nodes.entry(member.node_id.clone()).or_default();
                nc.pending.push((msg.seq, amount));
                nc.told_exhausted = exhausted;
                msg.grants.push(pb::Grant {
                    counter: Some(c.counter.clone()),
                    window_start_unix_ms: c.window_start,
                    amount,
                    fleet_exhausted: exhausted,
                });
                queued += 1;
            }
        }
        for (node_id, msg) in out {
            let node = st.nodes.entry(node_id.to_owned()).or_default();
            node.outbox.push_back(msg);
            while node.outbox.len() > MAX_OUTBOX {
                node.outbox.pop_front();
            }
        }
        queued
    }
}

/// One member's figures for one counter.
struct Figures {
    used: u64,
    /// What it has once every grant sent has been applied.
    effective: u64,
    hold: u64,
    rate: u64,
}

/// The grants that move one counter towards its targets: `(member, amount, fleet exhausted)`.
/// Updates the demand figures of the counter's nodes.
fn plan<'m>(c: &mut CounterState, members: &'m [Member]) -> Vec<(&'m Member, u64, bool)> {
    let limit = c.limit;
    let mut figures: Vec<Figures> = Vec::with_capacity(members.len());
    let mut defaulted = true;
    for m in members {
        let share = share_of_limit(limit, m.slot, m.of);
        let nc = c.nodes.entry(m.node_id.clone()).or_default();
        let demand = nc.used.saturating_add(nc.wanted);
        let growth = demand.saturating_sub(nc.last_demand);
        nc.last_demand = demand;
        nc.rate = (nc.rate + growth.saturating_mul(1024)) / 2;
        let allowance = nc.allowance.unwrap_or(share);
        let pending_max = nc.pending.iter().map(|(_, a)| *a).max().unwrap_or(0);
        let effective = nc.pending.last().map_or(allowance, |(_, a)| *a);
        defaulted &= effective == share;
        figures.push(Figures {
            used: nc.used,
            effective,
            hold: allowance.max(nc.used).max(pending_max),
            rate: nc.rate,
        });
    }
    let total_rate: u128 = figures.iter().map(|f| u128::from(f.rate)).sum();
    let nothing_pending = c.nodes.values().all(|nc| nc.pending.is_empty());
    if total_rate == 0 && defaulted {
        // Nobody wants more than the shares they hold.
        c.settled = nothing_pending;
        return Vec::new();
    }
    let n = figures.len() as u128;
    let used: u64 = figures.iter().map(|f| f.used).fold(0, u64::saturating_add);
    let remaining = u128::from(limit.saturating_sub(used));
    // Parts of the remaining capacity, in proportion to demand plus an equal floor.
    let parts: Vec<u128> = figures
        .iter()
        .map(|f| {
            if total_rate == 0 {
                1
            } else {
                u128::from(f.rate) * (SCALE - u128::from(IDLE_FLOOR_PPM)) * n
                    + u128::from(IDLE_FLOOR_PPM) * total_rate
            }
        })
        .collect();
    let total_parts: u128 = parts.iter().sum();
    let mut targets: Vec<u64> = figures
        .iter()
        .zip(&parts)
        .map(|(f, p)| {
            let extra = remaining * p / total_parts;
            f.used
                .saturating_add(u64::try_from(extra).unwrap_or(u64::MAX))
        })
        .collect();
    let given: u128 = figures
        .iter()
        .zip(&targets)
        .map(|(f, t)| u128::from(t - f.used))
        .sum();
    if let Some(i) = (0..parts.len()).max_by_key(|i| (parts[*i], std::cmp::Reverse(*i))) {
        let rest = u64::try_from(remaining - given).unwrap_or(0);
        targets[i] = targets[i].saturating_add(rest);
    }
    let exhausted = remaining == 0;
    // Changes smaller than this are not worth a message (unless the fleet is exhausted: then
    // every node must learn that its refusals are final).
    let step = (limit / 1_000).max(1);
    let mut grants = Vec::new();
    // Lower first: those count at their old amount until applied.
    for (i, m) in members.iter().enumerate() {
        let f = &figures[i];
        if targets[i] < f.effective
            && (f.effective - targets[i] >= step || exhausted)
            && m.connected
        {
            grants.push((m, targets[i], exhausted));
        }
    }
    let held: u64 = figures.iter().map(|f| f.hold).fold(0, u64::saturating_add);
    let mut free = limit.saturating_sub(held);
    // Then raise, the most wanted first, from what no hold claims.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(figures[*i].rate));
    for i in order {
        let f = &figures[i];
        if targets[i] <= f.effective || !members[i].connected {
            continue;
        }
        let amount = targets[i].min(f.hold.saturating_add(free));
        if amount <= f.effective || (amount - f.effective < step && amount < targets[i]) {
            continue;
        }
        free -= amount.saturating_sub(f.hold);
        grants.push((&members[i], amount, exhausted));
    }
    if exhausted {
        // Tell nodes already at their target that nothing is left, once.
        for (i, m) in members.iter().enumerate() {
            let f = &figures[i];
            if m.connected
                && targets[i] == f.effective
                && !grants.iter().any(|(g, _, _)| g.node_id == m.node_id)
                && c.nodes.get(&m.node_id).is_some_and(|nc| !nc.told_exhausted)
            {
                grants.push((m, targets[i], true));
            }
        }
    }
    c.settled = grants.is_empty() && total_rate == 0 && nothing_pending;
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: (i64, i64) = (60_000, 120_000);
    const NOW: i64 = 61_000;

    fn counter() -> pb::CounterRef {
        pb::CounterRef {
            level: pb::LevelKind::VirtualKey as i32,
            id: "vk".into(),
            counter: pb::CounterKind::Requests as i32,
            period: pb::ResetPeriod::Minute as i32,
            calendar_aligned: true,
            ..pb::CounterRef::default()
        }
    }

    fn members(n: u32) -> Vec<Member> {
        (0..n)
            .map(|slot| Member {
                node_id: format!("n{slot}"),
                slot,
                of: n,
                connected: true,
            })
            .collect()
    }

    /// A data plane as the allowances see it: one counter, grants applied in order.
    #[derive(Debug, Clone)]
    struct Node {
        id: String,
        share: u64,
        grant: Option<(u64, bool)>,
        used: u64,
        wanted: u64,
        seq: u64,
        /// Grant messages on their way, oldest first.
        inbox: VecDeque<pb::Grants>,
    }

    impl Node {
        fn new(m: &Member, limit: u64) -> Node {
            Node {
                id: m.node_id.clone(),
                share: share_of_limit(limit, m.slot, m.of),
                grant: None,
                used: 0,
                wanted: 0,
                seq: 0,
                inbox: VecDeque::new(),
            }
        }

        fn allowance(&self) -> u64 {
            self.grant.map_or(self.share, |(a, _)| a)
        }

        /// Admits up to `n` requests the way the engine does; returns how many.
        fn admit(&mut self, n: u64) -> u64 {
            let mut admitted = 0;
            for _ in 0..n {
                if self.used < self.allowance() {
                    self.used += 1;
                    admitted += 1;
                } else {
                    self.wanted += 1;
                }
            }
            admitted
        }

        fn deliver_one(&mut self) {
            if let Some(g) = self.inbox.pop_front() {
                for grant in &g.grants {
                    self.grant = Some((grant.amount, grant.fleet_exhausted));
                }
                self.seq = self.seq.max(g.seq);
            }
        }

        fn report(&self, limit: u64) -> pb::LimitsReport {
            let listed = self.used > 0 || self.wanted > 0 || self.grant.is_some();
            pb::LimitsReport {
                grant_seq: self.seq,
                counters: if listed {
                    vec![pb::CounterUse {
                        counter: Some(counter()),
                        window_start_unix_ms: WINDOW.0,
                        window_end_unix_ms: WINDOW.1,
                        limit,
                        used: self.used,
                        allowance: self.allowance(),
                        wanted: self.wanted,
                    }]
                } else {
                    Vec::new()
                },
                in_flight: Vec::new(),
                r#final: true,
                full: true,
            }
        }
    }

    /// A tiny deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn round(a: &Allowances, nodes: &mut [Node], ms: &[Member], limit: u64) {
        for n in nodes.iter_mut() {
            a.report(&n.id, n.report(limit), NOW);
        }
        a.rebalance(ms, NOW);
        for n in nodes.iter_mut() {
            n.inbox.extend(a.take_grants(&n.id));
            while !n.inbox.is_empty() {
                n.deliver_one();
            }
        }
    }

    #[test]
    fn a_busy_node_gets_what_idle_ones_do_not_use() {
        const LIMIT: u64 = 60;
        let ms = members(3);
        let mut nodes: Vec<Node> = ms.iter().map(|m| Node::new(m, LIMIT)).collect();
        let a = Allowances::new(0);
        let mut admitted = 0;
        for _ in 0..20 {
            admitted += nodes[0].admit(5);
            round(&a, &mut nodes, &ms, LIMIT);
            let used: u64 = nodes.iter().map(|n| n.used).sum();
            assert!(used <= LIMIT);
        }
        assert!(
            admitted >= 57,
            "the busy node got {admitted} of 60 (its equal share is 20)"
        );
        assert!(
            nodes[0].grant.is_some_and(|(_, exhausted)| exhausted),
            "once nothing is left, refusals are final: {:?}",
            nodes[0].grant
        );
        assert!(
            nodes.iter().all(|n| n.grant.is_some_and(|(_, e)| e)),
            "every node learns it"
        );
    }

    #[test]
    fn without_demand_nothing_is_granted() {
        let ms = members(3);
        let mut nodes: Vec<Node> = ms.iter().map(|m| Node::new(m, 60)).collect();
        let a = Allowances::new(0);
        round(&a, &mut nodes, &ms, 60);
        nodes[1].admit(3);
        // Demand shows up after one round (growth), then allowance moves.
        round(&a, &mut nodes, &ms, 60);
        round(&a, &mut nodes, &ms, 60);
        assert!(nodes[1].allowance() > 20, "{:?}", nodes[1]);
        assert!(nodes[0].allowance() < 20 && nodes[2].allowance() < 20);
        let total: u64 = nodes.iter().map(Node::allowance).sum();
        assert!(
            total <= 60,
            "allowances add up to at most the limit: {total}"
        );
    }

    /// The invariant under random demand, delivery delays and lost messages: the fleet never
    /// uses more than the limit, and moves allowance to the nodes that want it.
    #[test]
    fn the_fleet_never_admits_beyond_the_limit() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let limit = 1 + rng.below(500);
            let n = 1 + rng.below(5) as u32;
            let ms = members(n);
            let mut nodes: Vec<Node> = ms.iter().map(|m| Node::new(m, limit)).collect();
            let a = Allowances::new(rng.below(1_000));
            for _ in 0..60 {
                for node in nodes.iter_mut() {
                    // Skewed demand: some nodes want a lot, some nothing.
                    let want = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(3),
                        _ => rng.below(limit / 4 + 2),
                    };
                    node.admit(want);
                    // Grants arrive late or not at all; reports get lost.
                    if rng.below(3) > 0 {
                        node.deliver_one();
                    }
                    if rng.below(5) == 0 {
                        node.inbox.pop_front();
                    }
                    if rng.below(4) > 0 {
                        // A round that lists what changed (here: everything listed) or all.
                        let mut report = node.report(limit);
                        report.full = rng.below(2) == 0;
                        a.report(&node.id, report, NOW);
                    }
                }
                a.rebalance(&ms, NOW);
                for node in nodes.iter_mut() {
                    node.inbox.extend(a.take_grants(&node.id));
                }
                let used: u64 = nodes.iter().map(|n| n.used).sum();
                assert!(
                    used <= limit,
                    "seed {seed}: {used} used of {limit} over {n} nodes: {nodes:?}"
                );
            }
        }
    }

    #[test]
    fn a_disconnected_member_keeps_what_it_holds() {
        let mut ms = members(2);
        ms[1].connected = false;
        let mut nodes: Vec<Node> = ms.iter().map(|m| Node::new(m, 10)).collect();
        let a = Allowances::new(0);
        for _ in 0..10 {
            nodes[0].admit(5);
            round(&a, &mut nodes, &ms, 10);
        }
        assert_eq!(
            nodes[0].used, 5,
            "the other half stays with the absent node"
        );
        assert!(a.take_grants("n1").is_empty());
    }

    #[test]
    fn a_report_of_an_earlier_process_acknowledges_nothing_newer() {
        let ms = members(2);
        let mut nodes: Vec<Node> = ms.iter().map(|m| Node::new(m, 10)).collect();
        let a = Allowances::new(1_000);
        nodes[0].admit(5);
        nodes[0].seq = 999; // applied grants of an older control plane
        a.report("n0", nodes[0].report(10), NOW);
        a.report("n1", nodes[1].report(10), NOW);
        a.rebalance(&ms, NOW);
        a.report("n0", nodes[0].report(10), NOW);
        // Demand seen: n1 must be lowered before n0 can be raised.
        nodes[0].wanted = 10;
        a.report("n0", nodes[0].report(10), NOW);
        a.rebalance(&ms, NOW);
        let to_n1 = a.take_grants("n1");
        assert_eq!(to_n1.len(), 1, "n1 lowered");
        let lowered = to_n1[0].grants[0].amount;
        assert!(lowered < 5);
        // n1 reports without having applied it (an old sequence number): n0 gets nothing yet.
        a.report("n1", nodes[1].report(10), NOW);
        a.rebalance(&ms, NOW);
        assert!(
            a.take_grants("n0")
                .iter()
                .flat_map(|g| &g.grants)
                .all(|g| g.amount <= 5),
            "n1's old allowance still counts"
        );
        // Applied and reported: n0 may have the rest.
        nodes[1].inbox.extend(to_n1);
        nodes[1].deliver_one();
        a.report("n1", nodes[1].report(10), NOW);
        nodes[0].wanted = 20;
        a.report("n0", nodes[0].report(10), NOW);
        a.rebalance(&ms, NOW);
        let raised = a.take_grants("n0");
        assert_eq!(raised.last().unwrap().grants[0].amount, 10 - lowered);
    }

    #[test]
    fn in_flight_sums_fresh_reports() {
        let a = Allowances::new(0);
        let level: LevelKey = (pb::LevelKind::Team as i32, "t".into(), String::new());
        for (node, n, at) in [("a", 2, NOW), ("b", 3, NOW - 1_000), ("c", 7, NOW - 10_000)] {
            a.report(
                node,
                pb::LimitsReport {
                    in_flight: vec![pb::LevelInFlight {
                        level: level.0,
                        id: level.1.clone(),
                        provider: String::new(),
                        in_flight: n,
                    }],
                    r#final: true,
                    ..pb::LimitsReport::default()
                },
                at,
            );
        }
        assert_eq!(a.in_flight(&level, NOW), 5, "c's report is stale");
        // A round without the level: none in flight there any more.
        a.report(
            "a",
            pb::LimitsReport {
                r#final: true,
                ..pb::LimitsReport::default()
            },
            NOW,
        );
        assert_eq!(a.in_flight(&level, NOW), 3);
        // Split rounds count once complete.
        let part = |n, last| pb::LimitsReport {
            in_flight: vec![pb::LevelInFlight {
                level: level.0,
                id: format!("t{n}"),
                provider: String::new(),
                in_flight: n,
            }],
            r#final: last,
            ..pb::LimitsReport::default()
        };
        a.report("a", part(1, false), NOW);
        assert_eq!(a.in_flight(&(level.0, "t1".into(), String::new()), NOW), 0);
        a.report("a", part(2, true), NOW);
        assert_eq!(a.in_flight(&(level.0, "t1".into(), String::new()), NOW), 1);
        assert_eq!(a.in_flight(&(level.0, "t2".into(), String::new()), NOW), 2);
    }
}

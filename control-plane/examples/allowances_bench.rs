//! What rebalancing allowances costs the control plane: three data planes report 50,000
//! counters in use each (10,000 keys with five counters), then rounds of `rebalance` with one
//! data plane busy on 1,000 of those keys.
//!
//! `cargo run --release -p tollgate-control-plane --example allowances_bench`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tollgate_control_plane::allowances::{Allowances, Member};
use tollgate_proto::config::v1 as pb;

const KEYS: u64 = 10_000;
const COUNTERS_PER_KEY: u64 = 5;
const NODES: u32 = 3;
const NOW: i64 = 1_780_000_000_000;

fn counter(key: u64, n: u64) -> pb::CounterRef {
    pb::CounterRef {
        level: pb::LevelKind::VirtualKey as i32,
        id: format!("vk-{key}"),
        counter: pb::CounterKind::Budget as i32,
        budget_id: format!("b-{n}"),
        period: pb::ResetPeriod::Month as i32,
        calendar_aligned: true,
        ..pb::CounterRef::default()
    }
}

/// A data plane's allowances as its grants set them (by key id and budget id).
type Held = HashMap<(String, String), u64>;

fn report(node: u32, busy: bool, round: u64, held: &Held, grant_seq: u64) -> pb::LimitsReport {
    let counters = (0..KEYS)
        .flat_map(|k| (0..COUNTERS_PER_KEY).map(move |n| (k, n)))
        .map(|(k, n)| {
            let c = counter(k, n);
            let allowance = held
                .get(&(c.id.clone(), c.budget_id.clone()))
                .copied()
                .unwrap_or(333_333_333);
            pb::CounterUse {
                counter: Some(c),
                window_start_unix_ms: NOW - 1_000_000,
                window_end_unix_ms: NOW + 1_000_000_000,
                limit: 1_000_000_000,
                used: if busy && node == 0 && k < 1_000 {
                    1_000_000 * round
                } else {
                    1_000
                },
                allowance,
                wanted: 0,
            }
        })
        .collect();
    pb::LimitsReport {
        grant_seq,
        counters,
        in_flight: Vec::new(),
        r#final: true,
        full: true,
    }
}

/// Applies the grants waiting for a node; returns the last sequence number.
fn apply(a: &Allowances, node: &str, held: &mut Held, seq: u64) -> u64 {
    let mut last = seq;
    for g in a.take_grants(node) {
        for grant in g.grants {
            let c = grant.counter.expect("counter");
            held.insert((c.id, c.budget_id), grant.amount);
        }
        last = g.seq;
    }
    last
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let members: Vec<Member> = (0..NODES)
        .map(|slot| Member {
            node_id: format!("dp-{slot}"),
            slot,
            of: NODES,
            connected: true,
        })
        .collect();
    let a = Allowances::new(0);
    let mut held: Vec<Held> = (0..NODES).map(|_| Held::new()).collect();
    let mut seqs = vec![0; NODES as usize];
    let mut ingest = Vec::new();
    let mut rebalance = Vec::new();
    let mut steady = Vec::new();
    let mut granted = 0;
    // Six rounds with one data plane busy on 1,000 keys, then 60 in which nothing changes:
    // demand decays, allowances go back to even, the counters settle and rounds skip them.
    for round in 1..=66u64 {
        let busy_round = round.min(6);
        let reports: Vec<_> = (0..NODES)
            .map(|n| report(n, true, busy_round, &held[n as usize], seqs[n as usize]))
            .collect();
        let start = Instant::now();
        for (n, r) in reports.into_iter().enumerate() {
            a.report(&format!("dp-{n}"), r, NOW);
        }
        if round <= 6 {
            ingest.push(start.elapsed() / NODES);
        }
        let start = Instant::now();
        let queued = a.rebalance(&members, NOW);
        if round <= 6 {
            rebalance.push(start.elapsed());
        } else {
            steady.push((start.elapsed(), queued));
        }
        granted += queued;
        for (n, m) in members.iter().enumerate() {
            seqs[n] = apply(&a, &m.node_id, &mut held[n], seqs[n]);
        }
    }
    ingest.sort();
    rebalance.sort();
    println!(
        "{} counters over {NODES} data planes; one busy on {} of them",
        KEYS * COUNTERS_PER_KEY,
        1_000 * COUNTERS_PER_KEY
    );
    println!(
        "ingest one full report: median {:.1} ms (min {:.1})",
        ms(ingest[3]),
        ms(ingest[0])
    );
    println!(
        "rebalance round while one is busy: median {:.1} ms (min {:.1}); {granted} grants in all",
        ms(rebalance[3]),
        ms(rebalance[0])
    );
    let (last, queued) = steady[steady.len() - 1];
    println!(
        "rebalance round once nothing changes (the last of 60): {:.2} ms, {queued} grants",
        ms(last)
    );
}

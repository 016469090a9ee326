//! Cost of the limits engine (`tollgate_data_plane::limits`): compiling a large snapshot, and
//! one admit + settle per request, single-threaded and on two threads.
//!
//! 10,000 virtual keys, each with two budgets (1d, 1M), a request and a token rate limit and
//! max_concurrent, and a `bedrock` provider config with its own budget and concurrency limit;
//! in 100 teams (a budget and a request limit each) under 10 customers (a budget and
//! max_concurrent each). Every request checks 11 counters over 4 levels. Limits are high enough
//! that nothing is refused.
//!
//! `cargo run --release -p tollgate-data-plane --example limits_bench`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_data_plane::limits::{Clock, Engine, SystemClock};
use tollgate_proto::config::v1 as pb;
use tollgate_proto::pricing::Cost;

const KEYS: usize = 10_000;
const TEAMS: usize = 100;
const CUSTOMERS: usize = 10;
const REQUESTS: usize = 2_000_000;
const HIGH: u64 = u64::MAX / 4;

fn budget(id: &str, reset: pb::ResetPeriod, calendar_aligned: bool) -> pb::Budget {
    pb::Budget {
        id: id.into(),
        max_limit_nano_usd: HIGH,
        reset: reset as i32,
        calendar_aligned,
        anchor_unix_ms: 1_767_225_600_000,
        reset_at_unix_ms: 0,
    }
}

fn snapshot() -> pb::Snapshot {
    let customers = (0..CUSTOMERS)
        .map(|c| pb::Customer {
            id: format!("cust-{c}"),
            name: format!("Customer {c}"),
            limits: Some(pb::Limits {
                budgets: vec![budget("monthly", pb::ResetPeriod::Month, true)],
                max_concurrent: 1_000_000,
                ..Default::default()
            }),
        })
        .collect();
    let teams = (0..TEAMS)
        .map(|t| pb::Team {
            id: format!("team-{t}"),
            name: format!("Team {t}"),
            customer_id: format!("cust-{}", t % CUSTOMERS),
            limits: Some(pb::Limits {
                budgets: vec![budget("daily", pb::ResetPeriod::Day, true)],
                rate_limit: Some(pb::RateLimit {
                    request_max_limit: HIGH,
                    request_reset: pb::ResetPeriod::Minute as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .collect();
    let virtual_keys = (0..KEYS)
        .map(|k| pb::VirtualKey {
            id: format!("vk-{k}"),
            name: format!("key {k}"),
            key_sha256: vec![0; 32].into(),
            active: true,
            team_id: format!("team-{}", k % TEAMS),
            limits: Some(pb::Limits {
                budgets: vec![
                    budget("daily", pb::ResetPeriod::Day, false),
                    budget("monthly", pb::ResetPeriod::Month, true),
                ],
                rate_limit: Some(pb::RateLimit {
                    request_max_limit: HIGH,
                    request_reset: pb::ResetPeriod::Minute as i32,
                    token_max_limit: HIGH,
                    token_reset: pb::ResetPeriod::Hour as i32,
                }),
                max_concurrent: 1_000,
            }),
            provider_configs: vec![pb::ProviderConfig {
                provider: "bedrock".into(),
                limits: Some(pb::Limits {
                    budgets: vec![budget("bedrock-daily", pb::ResetPeriod::Day, true)],
                    max_concurrent: 1_000,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    pb::Snapshot {
        version: 1,
        virtual_keys,
        teams,
        customers,
        ..Default::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Admits and settles `n` requests over the keys `ids` (walked with a stride so that
/// consecutive requests hit different keys); returns the time taken.
fn run(engine: &Engine, ids: &[String], n: usize, offset: usize) -> Duration {
    let clock = SystemClock;
    let start = Instant::now();
    for i in 0..n {
        let id = &ids[(offset + i * 7_919) % ids.len()];
        let r = engine
            .admit(id, "bedrock", Some(Cost(3_000)), 1_200, clock.now_unix_ms())
            .expect("limits are high");
        black_box(&r);
        r.settle(Some(2_700), 1_100);
    }
    start.elapsed()
}

fn main() {
    let snapshot = snapshot();
    let ids: Vec<String> = (0..KEYS).map(|k| format!("vk-{k}")).collect();

    let mut compile = Vec::new();
    let mut engine = Engine::compile(&snapshot).expect("compiles");
    for _ in 0..5 {
        let start = Instant::now();
        let fresh = Engine::compile(&snapshot).expect("compiles");
        compile.push(start.elapsed());
        black_box(fresh);
    }
    let mut after = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let next = Engine::compile_after(&snapshot, Some(&engine)).expect("compiles");
        after.push(start.elapsed());
        engine = next;
    }
    compile.sort();
    after.sort();
    let cells = engine.cell_keys().count();
    println!(
        "snapshot: {KEYS} keys, {TEAMS} teams, {CUSTOMERS} customers; {cells} counters; 11 counters per request over 4 levels"
    );
    println!(
        "compile: median {:.1} ms (min {:.1}); compile_after (carrying counters over): median {:.1} ms (min {:.1})",
        ms(compile[2]),
        ms(compile[0]),
        ms(after[2]),
        ms(after[0])
    );

    // Warm-up: every cell's first window.
    run(&engine, &ids, KEYS * 2, 0);

    let single = run(&engine, &ids, REQUESTS, 1);
    println!(
        "1 thread:  {:.0} ns per admit+settle ({REQUESTS} requests over {KEYS} keys)",
        single.as_nanos() as f64 / REQUESTS as f64
    );

    // The limits report a data plane sends twice a second, with every counter in use (the
    // warm-up used them all) and its translation into messages.
    let clock = SystemClock;
    let mut reports = Vec::new();
    let mut entries = 0;
    let mut messages = 0;
    let mut bytes = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let report = engine.report(clock.now_unix_ms(), true);
        let wire = tollgate_data_plane::limits::wire::report_to_pb(&report, 1);
        reports.push(start.elapsed());
        entries = report.counters.len();
        messages = wire.len();
        bytes = wire.iter().map(prost::Message::encoded_len).sum::<usize>();
    }
    reports.sort();
    println!(
        "full report: {entries} counters in use -> {messages} messages, {} KB: median {:.1} ms (min {:.1})",
        bytes / 1024,
        ms(reports[2]),
        ms(reports[0])
    );
    // The rounds in between list what changed: here 1,000 requests' counters since the last.
    let mut deltas = Vec::new();
    for round in 0..5 {
        run(&engine, &ids, 1_000, round * 1_000);
        let start = Instant::now();
        let report = engine.report(clock.now_unix_ms(), false);
        let wire = tollgate_data_plane::limits::wire::report_to_pb(&report, 1);
        deltas.push(start.elapsed());
        entries = report.counters.len();
        bytes = wire.iter().map(prost::Message::encoded_len).sum::<usize>();
    }
    deltas.sort();
    println!(
        "report of what changed after 1,000 requests: {entries} counters, {} KB: median {:.2} ms (min {:.2})",
        bytes / 1024,
        ms(deltas[2]),
        ms(deltas[0])
    );

    let engine = Arc::new(engine);
    let ids = Arc::new(ids);
    for (label, shared_key) in [("2 threads", false), ("2 threads, one key", true)] {
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (engine, ids) = (Arc::clone(&engine), Arc::clone(&ids));
                std::thread::spawn(move || {
                    if shared_key {
                        run(&engine, &ids[..1], REQUESTS, 0)
                    } else {
                        run(&engine, &ids, REQUESTS, t * 5_000)
                    }
                })
            })
            .collect();
        let per_thread: Vec<Duration> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let wall = start.elapsed();
        let slowest = per_thread.iter().max().copied().unwrap_or_default();
        println!(
            "{label}: {:.0} ns per admit+settle per thread, {:.2} M requests/s in all",
            slowest.as_nanos() as f64 / REQUESTS as f64,
            (2 * REQUESTS) as f64 / wall.as_secs_f64() / 1e6
        );
    }
}

//! What failing over costs, and how often a failing key is still tried once outlier detection
//! has seen it fail. The data plane's router in process (no listener) in front of a loopback
//! Anthropic upstream that answers one model with a message, throttles another (429), and
//! refuses one key on every request (503).
//!
//! 1. **Time to fail over.** Requests one at a time: straight to the answering model, then to
//!    the throttled one with the answering one as their fallback. The difference of the medians
//!    is the time to fail over: the throttled attempt's round trip, taking its admission back,
//!    and routing and admitting the fallback.
//! 2. **Requests that still reach a failing key, under load.** Two keys of equal weight, one of
//!    them refused; 16 requests at a time for 35 s (one 30 s cooldown and its probe). Every
//!    request is answered by the good key (after another-key failover when it went to the bad
//!    one first); the figures are the requests whose first attempt went to the bad key, per
//!    phase.
//!
//! `cargo run --release -p tollgate-data-plane --example failover_bench`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_data_plane::usage::UsageSink;
use tollgate_data_plane::{DataPlane, DataPlaneConfig};
use tollgate_proto::config::v1 as pb;
use tower::ServiceExt;

const REQUESTS: usize = 2_000;
const VIRTUAL_KEY: &str = "sk-tg-failover-bench";
const BAD_KEY: &str = "sk-ant-bad";
const CONCURRENCY: usize = 16;
const RUN: Duration = Duration::from_secs(35);

async fn upstream() -> String {
    async fn messages(headers: HeaderMap, body: Bytes) -> (StatusCode, axum::Json<Value>) {
        let error = |status, kind: &str| {
            (
                status,
                axum::Json(json!({"type": "error", "error": {"type": kind, "message": kind}})),
            )
        };
        if headers.get("x-api-key").map(|v| v.as_bytes()) == Some(BAD_KEY.as_bytes()) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "api_error");
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        if model.ends_with("-throttled") {
            return error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error");
        }
        (
            StatusCode::OK,
            axum::Json(json!({
                "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 3, "output_tokens": 5}
            })),
        )
    }
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(messages));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn key(id: &str, value: &str) -> pb::ProviderKey {
    pb::ProviderKey {
        id: id.into(),
        name: id.into(),
        models: vec!["*".into()],
        weight: 1.0,
        value: Some(pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(value.into())),
        }),
        enabled: true,
        ..Default::default()
    }
}

fn snapshot(version: u64, base_url: &str, keys: Vec<pb::ProviderKey>) -> pb::Snapshot {
    pb::Snapshot {
        version,
        providers: vec![pb::Provider {
            name: "anthropic".into(),
            kind: pb::ProviderKind::Anthropic as i32,
            network: Some(pb::NetworkConfig {
                base_url: base_url.into(),
                ..Default::default()
            }),
            keys,
        }],
        virtual_keys: vec![pb::VirtualKey {
            id: "vk".into(),
            name: "bench".into(),
            key_sha256: Sha256::digest(VIRTUAL_KEY).to_vec().into(),
            active: true,
            ..Default::default()
        }],
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

async fn send(router: &axum::Router, body: &str) -> StatusCode {
    let req = Request::post("/anthropic/v1/messages")
        .header("x-api-key", VIRTUAL_KEY)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let _ = resp.into_body().collect().await.expect("body");
    status
}

async fn run(router: &axum::Router, body: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let status = send(router, body).await;
        out.push(start.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    out.sort();
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let url = upstream().await;
    let (sink, mut records) = UsageSink::channel(4_096);
    // Per second of part 2: requests, and those whose first attempt went to the bad key.
    let seconds = RUN.as_secs() as usize + 1;
    let total: Arc<Vec<AtomicU64>> = Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
    let bad: Arc<Vec<AtomicU64>> = Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
    let part2_start: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let counter = {
        let (total, bad, start) = (
            Arc::clone(&total),
            Arc::clone(&bad),
            Arc::clone(&part2_start),
        );
        tokio::spawn(async move {
            while let Some(r) = records.recv().await {
                let Some(start) = start.get() else { continue };
                let s = (start.elapsed().as_secs() as usize).min(seconds - 1);
                total[s].fetch_add(1, Ordering::Relaxed);
                assert_eq!(r.status, 200, "{r:?}");
                if r.attempts
                    .first()
                    .is_some_and(|a| a.provider_key_id == "bad")
                {
                    bad[s].fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let dp: Arc<DataPlane> = DataPlane::new(DataPlaneConfig::default(), sink);
    let router = tollgate_data_plane::server::router(Arc::clone(&dp));

    // 1. Time to fail over.
    dp.runtime()
        .apply(&snapshot(1, &url, vec![key("good", "sk-ant-good")]))
        .expect("snapshot");
    let direct = json!({"model": "anthropic/claude-ok", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let failover = json!({"model": "anthropic/claude-throttled", "max_tokens": 8,
        "fallbacks": ["anthropic/claude-ok"],
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    // Warm-up: connections pooled, code paths hot.
    run(&router, &direct, 200).await;
    run(&router, &failover, 200).await;
    let a = run(&router, &direct, REQUESTS).await;
    let b = run(&router, &failover, REQUESTS).await;
    println!("1. {REQUESTS} requests each, one at a time, loopback upstream (µs):");
    for (label, d) in [("direct", &a), ("429 then fallback", &b)] {
        println!(
            "{label:>18}: p50 {:>7.1}  p90 {:>7.1}  p99 {:>7.1}",
            pct(d, 0.5),
            pct(d, 0.9),
            pct(d, 0.99)
        );
    }
    println!(
        "time to fail over (difference of medians): {:.1} µs",
        pct(&b, 0.5) - pct(&a, 0.5)
    );

    // 2. A failing key under load (after part 1's last records are counted out).
    tokio::time::sleep(Duration::from_millis(200)).await;
    dp.runtime()
        .apply(&snapshot(
            2,
            &url,
            vec![key("good", "sk-ant-good"), key("bad", BAD_KEY)],
        ))
        .expect("snapshot");
    let started = *part2_start.get_or_init(Instant::now);
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let router = router.clone();
            let body = direct.clone();
            tokio::spawn(async move {
                while started.elapsed() < RUN {
                    assert_eq!(send(&router, &body).await, StatusCode::OK);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    drop(router);
    drop(dp);
    counter.await.expect("counter");
    let sum = |v: &[AtomicU64], r: std::ops::Range<usize>| -> u64 {
        v[r].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    };
    println!(
        "2. {CONCURRENCY} at a time for {} s, two keys of equal weight, one failing:",
        RUN.as_secs()
    );
    for (label, range) in [
        ("first second", 0..1),
        ("1 s to 30 s (ejected)", 1..30),
        ("30 s to the end (probe)", 30..seconds),
        ("whole run", 0..seconds),
    ] {
        let (n, b) = (sum(&total, range.clone()), sum(&bad, range));
        let share = if n == 0 {
            0.0
        } else {
            100.0 * b as f64 / n as f64
        };
        println!(
            "{label:>24}: {n:>7} requests, {b:>3} first sent to the failing key ({share:.4} %)"
        );
    }
}

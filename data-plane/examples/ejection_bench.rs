//! How many requests still reach a failing key once outlier detection has seen it fail: the
//! data plane's router in process (no listener) in front of a loopback Anthropic upstream, two
//! provider keys of equal weight, one of them refused by the upstream with 503 on every request.
//! 16 requests at a time for 35 s (one cooldown of 30 s and its probe). Every request is answered
//! by the good key (after another-key failover when it was first sent to the bad one); the
//! figures are the requests whose first attempt went to the bad key, per phase.
//!
//! `cargo run --release -p tollgate-data-plane --example ejection_bench`

use std::net::SocketAddr;
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

const VIRTUAL_KEY: &str = "sk-tg-ejection-bench";
const BAD_KEY: &str = "sk-ant-bad";
const CONCURRENCY: usize = 16;
const RUN: Duration = Duration::from_secs(35);

async fn upstream() -> String {
    async fn messages(headers: HeaderMap, body: Bytes) -> (StatusCode, axum::Json<Value>) {
        if headers.get("x-api-key").map(|v| v.as_bytes()) == Some(BAD_KEY.as_bytes()) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"type": "error",
                    "error": {"type": "api_error", "message": "unavailable"}})),
            );
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = body["model"].as_str().unwrap_or_default().to_owned();
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
    let addr: SocketAddr = listener.local_addr().expect("addr");
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

fn snapshot(base_url: &str) -> pb::Snapshot {
    pb::Snapshot {
        version: 1,
        providers: vec![pb::Provider {
            name: "anthropic".into(),
            kind: pb::ProviderKind::Anthropic as i32,
            network: Some(pb::NetworkConfig {
                base_url: base_url.into(),
                ..Default::default()
            }),
            keys: vec![key("good", "sk-ant-good"), key("bad", BAD_KEY)],
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

#[tokio::main]
async fn main() {
    let url = upstream().await;
    let (sink, mut records) = UsageSink::channel(4_096);
    let started = Instant::now();
    // Per second of the run: requests, and those whose first attempt went to the bad key.
    let seconds = RUN.as_secs() as usize + 1;
    let total: Arc<Vec<AtomicU64>> = Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
    let bad: Arc<Vec<AtomicU64>> = Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
    let counter = {
        let (total, bad) = (Arc::clone(&total), Arc::clone(&bad));
        tokio::spawn(async move {
            while let Some(r) = records.recv().await {
                let s = (started.elapsed().as_secs() as usize).min(seconds - 1);
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
    dp.runtime().apply(&snapshot(&url)).expect("snapshot");
    let router = tollgate_data_plane::server::router(Arc::clone(&dp));
    let body = json!({"model": "anthropic/claude-ok", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let router = router.clone();
            let body = body.clone();
            tokio::spawn(async move {
                while started.elapsed() < RUN {
                    let req = Request::post("/anthropic/v1/messages")
                        .header("x-api-key", VIRTUAL_KEY)
                        .header("content-type", "application/json")
                        .body(Body::from(body.clone()))
                        .expect("request");
                    let resp = router.clone().oneshot(req).await.expect("infallible");
                    let _ = resp.into_body().collect().await.expect("body");
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
        "{CONCURRENCY} at a time for {} s, two keys of equal weight, one failing:",
        RUN.as_secs()
    );
    for (label, range) in [
        ("first second", 0..1),
        ("1 s to 30 s (ejected)", 1..30),
        ("30 s to the end (probe)", 30..seconds),
        ("whole run", 0..seconds),
    ] {
        let (n, b) = (sum(&total, range.clone()), sum(&bad, range));
        println!(
            "{label:>24}: {n:>7} requests, {b:>3} first sent to the failing key ({:.4} %)",
            if n == 0 {
                0.0
            } else {
                100.0 * b as f64 / n as f64
            }
        );
    }
}

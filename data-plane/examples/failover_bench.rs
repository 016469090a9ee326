//! What failing over costs: the data plane's router in process (no listener) in front of a
//! loopback Anthropic upstream that answers one model with a message and throttles another
//! (429). Requests go one at a time: straight to the answering model, then to the throttled one
//! with the answering one as their fallback. The difference is the time to fail over: the
//! throttled attempt's round trip, taking its admission back, and routing and admitting the
//! fallback.
//!
//! `cargo run --release -p tollgate-data-plane --example failover_bench`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_data_plane::usage::UsageSink;
use tollgate_data_plane::{DataPlane, DataPlaneConfig};
use tollgate_proto::config::v1 as pb;
use tower::ServiceExt;

const REQUESTS: usize = 2_000;
const VIRTUAL_KEY: &str = "sk-tg-failover-bench";

async fn upstream() -> String {
    async fn messages(body: Bytes) -> (StatusCode, axum::Json<Value>) {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        if model.ends_with("-throttled") {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"type": "error",
                    "error": {"type": "rate_limit_error", "message": "slow down"}})),
            );
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
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
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
            keys: vec![pb::ProviderKey {
                id: "pk".into(),
                name: "key".into(),
                models: vec!["*".into()],
                weight: 1.0,
                value: Some(pb::ValueRef {
                    source: Some(pb::value_ref::Source::Literal("sk-ant-bench".into())),
                }),
                enabled: true,
                ..Default::default()
            }],
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

async fn run(router: &axum::Router, body: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = Request::post("/anthropic/v1/messages")
            .header("x-api-key", VIRTUAL_KEY)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        let start = Instant::now();
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let _ = resp.into_body().collect().await.expect("body");
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
    let (sink, mut records) = UsageSink::channel(1_024);
    tokio::spawn(async move { while records.recv().await.is_some() {} });
    let dp: Arc<DataPlane> = DataPlane::new(DataPlaneConfig::default(), sink);
    dp.runtime().apply(&snapshot(&url)).expect("snapshot");
    let router = tollgate_data_plane::server::router(Arc::clone(&dp));
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
    println!("{REQUESTS} requests each, one at a time, loopback upstream (µs):");
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
}

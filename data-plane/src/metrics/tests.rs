//! The data plane's metrics in process: requests sent through [`crate::server::router`] (every
//! ingress), then `/metrics`' text parsed ([`Exposition`]) and read series by series, with exact
//! values and label sets.
//!
//! | test | behaviour |
//! |---|---|
//! | `every_ingress_counts_a_request_once_with_its_tokens_cost_and_times` | one `requests_total` per usage record, by route; tokens and cost equal the records'; TTFT for streams only; refusals before the key are not requests |
//! | `failed_attempts_retries_and_fallbacks_are_counted_by_class` | the attempt trail and the answer by class and provider; retries and fallbacks by the route that answered |
//! | `limit_refusals_are_counted_by_level_and_reason` | key, team, budget and fleet-allowance refusals |
//! | `a_scrape_reads_config_backlog_refusals_and_key_health_of_its_own_data_plane` | gauges read at scrape; two data planes in one process keep their own figures |
//! | `the_readme_table_describes_every_metric` | README "Metrics" lists each definition with its type and labels |

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::usage::v1::UsageRecord;
use tower::ServiceExt;

use super::exposition::Exposition;
use super::*;
use crate::health::{EJECT_AFTER, Verdict};
use crate::limits::Share;
use crate::testing::{dead_endpoint, lit, network, serve};
use crate::usage::UsageSink;
use crate::{DataPlane, DataPlaneConfig};

const KEY: &str = "sk-tg-metrics-key";
const UPSTREAM_KEY: &str = "sk-ant-metrics-upstream";

/// A data plane, its registry, and the receiving end of its usage queue.
struct Gateway {
    dp: Arc<DataPlane>,
    registry: Registry,
    usage: mpsc::Receiver<UsageRecord>,
}

impl Gateway {
    fn new(snapshot: &pb::Snapshot) -> Gateway {
        let (sink, usage) = UsageSink::channel(64);
        let dp = DataPlane::new(DataPlaneConfig::default(), sink);
        dp.runtime().apply(snapshot).expect("a valid snapshot");
        let mut registry = Registry::default();
        register(&dp, &mut registry);
        Gateway {
            dp,
            registry,
            usage,
        }
    }

    fn scrape(&self) -> Exposition {
        Exposition::parse(&encode(&self.registry))
    }

    /// Sends `body` to `path` with the virtual key `key` (none: `None`); returns the status and
    /// the whole body (a stream read to its end).
    async fn send(&self, path: &str, key: Option<&str>, body: Value) -> (StatusCode, Bytes) {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = req.body(Body::from(body.to_string())).expect("request");
        let resp = crate::server::router(Arc::clone(&self.dp))
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    }

    async fn message(&self, key: &str, body: Value) -> StatusCode {
        self.send("/anthropic/v1/messages", Some(key), body).await.0
    }

    fn records(&mut self) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        while let Ok(r) = self.usage.try_recv() {
            out.push(r);
        }
        out
    }
}

fn body(model: &str) -> Value {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
}

fn with_fallbacks(model: &str, fallbacks: &[&str]) -> Value {
    let mut b = body(model);
    b["fallbacks"] = json!(fallbacks);
    b
}

fn virtual_key(id: &str, key: &str) -> pb::VirtualKey {
    pb::VirtualKey {
        id: id.into(),
        name: id.into(),
        key_sha256: Sha256::digest(key).to_vec().into(),
        active: true,
        ..Default::default()
    }
}

fn anthropic(base_url: &str, models: &[&str], aliases: &[(&str, &str)]) -> pb::Provider {
    pb::Provider {
        name: "anthropic".into(),
        kind: pb::ProviderKind::Anthropic as i32,
        network: network(base_url),
        keys: vec![pb::ProviderKey {
            id: "pk-anthropic".into(),
            name: "anthropic-key".into(),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            aliases: aliases
                .iter()
                .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
                .collect(),
            weight: 1.0,
            value: lit(UPSTREAM_KEY),
            enabled: true,
            ..Default::default()
        }],
    }
}

fn snapshot(providers: Vec<pb::Provider>) -> pb::Snapshot {
    pb::Snapshot {
        version: 3,
        providers,
        virtual_keys: vec![virtual_key("vk-metrics", KEY)],
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

/// An Anthropic API stand-in: `…-throttled` answers 429, `…-broken` 500; a stream is a short
/// SSE message; anything else a message whose usage has every kind of token.
async fn upstream() -> String {
    let messages = |headers: HeaderMap, body: Bytes| async move {
        assert_eq!(headers["x-api-key"], UPSTREAM_KEY);
        let body: Value = serde_json::from_slice(&body).expect("json");
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let error = |status: u16, kind: &str| {
            let e = json!({"type": "error", "error": {"type": kind, "message": kind}});
            axum::response::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(e.to_string()))
                .expect("response")
        };
        if model.ends_with("-throttled") {
            return error(429, "rate_limit_error");
        }
        if model.ends_with("-broken") {
            return error(500, "api_error");
        }
        if body["stream"] == true {
            let start = json!({"type": "message_start", "message": {"id": "msg_s",
                "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 7, "output_tokens": 1,
                    "cache_read_input_tokens": 20}}});
            let events = [
                ("message_start", start),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": "hello"}}),
                ),
                (
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                (
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                        "stop_sequence": null}, "usage": {"output_tokens": 9}}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ];
            let sse: String = events
                .iter()
                .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
                .collect();
            return axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(sse))
                .expect("response");
        }
        let answer = json!({"id": "msg_m", "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 300,
                "cache_creation": {"ephemeral_5m_input_tokens": 100,
                    "ephemeral_1h_input_tokens": 200}}});
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(answer.to_string()))
            .expect("response")
    };
    serve(axum::Router::new().route("/v1/messages", axum::routing::post(messages))).await
}

const REQUESTS_TOTAL: &str = "tollgate_requests_total";

/// Every ingress counts a request once, under the configured model it was served by (`other`
/// for a model the config does not name; `none` before routing); tokens and cost are the usage
/// records' own; the time to first token is a stream's only; a refusal before the virtual key
/// is a refusal, not a request.
#[tokio::test]
async fn every_ingress_counts_a_request_once_with_its_tokens_cost_and_times() {
    let url = upstream().await;
    let mut gw = Gateway::new(&snapshot(vec![anthropic(
        &url,
        &["*"],
        &[("sonnet", "claude-sonnet-4-6")],
    )]));
    let sonnet = [("provider", "anthropic"), ("model", "claude-sonnet-4-6")];
    let other = [("provider", "anthropic"), ("model", "other")];
    let unrouted = [("provider", "none"), ("model", "none")];

    assert_eq!(gw.message(KEY, body("sonnet")).await, StatusCode::OK);
    let mut stream = body("sonnet");
    stream["stream"] = json!(true);
    let (status, sse) = gw.send("/anthropic/v1/messages", Some(KEY), stream).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&sse).contains("event: message_stop"));
    let chat = json!({"model": "sonnet", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = gw
        .send("/openai/v1/chat/completions", Some(KEY), chat)
        .await;
    assert_eq!(status, StatusCode::OK);
    let invoke = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = gw
        .send("/bedrock/model/sonnet/invoke", Some(KEY), invoke)
        .await;
    assert_eq!(status, StatusCode::OK);
    // A model the config does not name: priced, labelled `other`.
    assert_eq!(
        gw.message(KEY, body("anthropic/claude-haiku-4-5")).await,
        StatusCode::OK
    );
    // No model: refused before routing.
    let no_model = json!({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.message(KEY, no_model).await, StatusCode::BAD_REQUEST);
    // No virtual key: a refusal, not usage.
    let (status, _) = gw
        .send("/anthropic/v1/messages", None, body("sonnet"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let records = gw.records();
    assert_eq!(records.len(), 6, "{records:?}");
    let e = gw.scrape();
    let with = |route: &[(&'static str, &'static str)], extra: (&'static str, &'static str)| {
        let mut l = route.to_vec();
        l.push(extra);
        l
    };
    assert_eq!(
        e.value(REQUESTS_TOTAL, &with(&sonnet, ("status", "200"))),
        4.0
    );
    assert_eq!(
        e.value(REQUESTS_TOTAL, &with(&other, ("status", "200"))),
        1.0
    );
    assert_eq!(
        e.value(REQUESTS_TOTAL, &with(&unrouted, ("status", "400"))),
        1.0
    );
    assert_eq!(
        e.series(REQUESTS_TOTAL).len(),
        3,
        "one series per route and status"
    );
    let count = "tollgate_request_duration_seconds_count";
    assert_eq!(e.value(count, &sonnet), 4.0);
    assert_eq!(e.value(count, &other), 1.0);
    assert_eq!(e.value(count, &unrouted), 1.0);
    let sum: f64 = records
        .iter()
        .filter(|r| r.model_resolved == "claude-sonnet-4-6")
        .map(|r| f64::from(r.latency_ms) / 1000.0)
        .sum();
    let got = e.value("tollgate_request_duration_seconds_sum", &sonnet);
    assert!((got - sum).abs() < 1e-9, "{got} != {sum}");
    assert_eq!(
        e.value(
            "tollgate_request_duration_seconds_bucket",
            &with(&sonnet, ("le", "+Inf"))
        ),
        4.0
    );
    // The stream's time to first token only.
    let ttft = "tollgate_time_to_first_token_seconds_count";
    assert_eq!(e.value(ttft, &sonnet), 1.0);
    assert_eq!(e.series(ttft).len(), 1);
    assert_eq!(
        e.series("tollgate_request_duration_seconds_bucket").len(),
        3 * (DURATION_BUCKETS.len() + 1),
        "each route's buckets and +Inf"
    );

    // Tokens and cost are the records' sums, per route.
    for (model, route) in [("claude-sonnet-4-6", sonnet), ("claude-haiku-4-5", other)] {
        let of = |f: fn(&UsageRecord) -> u64| -> f64 {
            records
                .iter()
                .filter(|r| r.model_resolved == model)
                .map(f)
                .sum::<u64>() as f64
        };
        for (kind, f) in [
            ("input", (|r| r.input_tokens) as fn(&UsageRecord) -> u64),
            ("output", |r| r.output_tokens),
            ("cache_read", |r| r.cache_read_input_tokens),
            ("cache_write", |r| r.cache_write_input_tokens),
        ] {
            let want = of(f);
            assert!(want > 0.0, "{model} {kind}");
            assert_eq!(
                e.value("tollgate_tokens_total", &with(&route, ("kind", kind))),
                want,
                "{model} {kind}"
            );
        }
        let cost = of(|r| r.cost_nano_usd.expect("priced"));
        assert!(cost > 0.0);
        assert_eq!(e.value("tollgate_cost_nano_usd_total", &route), cost);
    }
    assert!(e.series("tollgate_unpriced_requests_total").is_empty());
    assert_eq!(
        e.value("tollgate_requests_refused_total", &[("reason", "auth")]),
        1.0
    );
    for none in [
        "tollgate_upstream_errors_total",
        "tollgate_retries_total",
        "tollgate_fallbacks_total",
        "tollgate_limit_refusals_total",
    ] {
        assert!(e.series(none).is_empty(), "{none}");
    }
}

/// Each attempt given up counts as an upstream error of its provider and class, and so does an
/// answer that is an upstream failure; the attempts before the answer count as retries of the
/// route that answered, and an answer from a fallback entry as a fallback.
#[tokio::test]
async fn failed_attempts_retries_and_fallbacks_are_counted_by_class() {
    let url = upstream().await;
    let (closed, _) = dead_endpoint().await;
    let bedrock = pb::Provider {
        name: "bedrock".into(),
        kind: pb::ProviderKind::Bedrock as i32,
        network: network(&closed),
        keys: vec![pb::ProviderKey {
            id: "pk-bedrock".into(),
            name: "bedrock-key".into(),
            models: vec!["*".into()],
            weight: 1.0,
            bedrock: Some(pb::BedrockKeyConfig {
                access_key: lit("AKIDMETRICSTEST"),
                secret_key: lit("metrics-test-secret"),
                region: lit("us-east-1"),
                ..Default::default()
            }),
            enabled: true,
            ..Default::default()
        }],
    };
    let models = ["claude-ok", "claude-throttled", "claude-broken"];
    let mut gw = Gateway::new(&snapshot(vec![anthropic(&url, &models, &[]), bedrock]));

    // 429, then 500, then the second fallback answers.
    let b = with_fallbacks(
        "anthropic/claude-throttled",
        &["anthropic/claude-broken", "anthropic/claude-ok"],
    );
    assert_eq!(gw.message(KEY, b).await, StatusCode::OK);
    // No connection to Bedrock, then the fallback answers.
    let b = with_fallbacks("bedrock/anthropic.claude-x-v1:0", &["anthropic/claude-ok"]);
    assert_eq!(gw.message(KEY, b).await, StatusCode::OK);
    // Failures that are the answer.
    assert_eq!(
        gw.message(KEY, body("anthropic/claude-broken")).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        gw.message(KEY, body("anthropic/claude-throttled")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let records = gw.records();
    let trails: Vec<Vec<&str>> = records
        .iter()
        .map(|r| r.attempts.iter().map(|a| a.class.as_str()).collect())
        .collect();
    assert_eq!(
        trails,
        [
            vec!["rate_limited", "server_error"],
            vec!["unreachable"],
            vec![],
            vec![]
        ]
    );

    let e = gw.scrape();
    let errors = "tollgate_upstream_errors_total";
    for (provider, class, n) in [
        ("anthropic", "rate_limited", 2.0),
        ("anthropic", "server_error", 2.0),
        ("bedrock", "unreachable", 1.0),
    ] {
        let got = e.value(errors, &[("provider", provider), ("class", class)]);
        assert_eq!(got, n, "{provider} {class}");
    }
    assert_eq!(e.series(errors).len(), 3);
    let ok = [("provider", "anthropic"), ("model", "claude-ok")];
    assert_eq!(e.value("tollgate_retries_total", &ok), 3.0);
    assert_eq!(e.value("tollgate_fallbacks_total", &ok), 2.0);
    assert_eq!(e.series("tollgate_retries_total").len(), 1);
    assert_eq!(e.series("tollgate_fallbacks_total").len(), 1);
    for (model, status, n) in [
        ("claude-ok", "200", 2.0),
        ("claude-broken", "500", 1.0),
        ("claude-throttled", "429", 1.0),
    ] {
        let labels = [
            ("provider", "anthropic"),
            ("model", model),
            ("status", status),
        ];
        assert_eq!(e.value(REQUESTS_TOTAL, &labels), n, "{model}");
    }
    assert_eq!(e.series(REQUESTS_TOTAL).len(), 3);
}

fn requests_per_minute(n: u64) -> pb::Limits {
    pb::Limits {
        rate_limit: Some(pb::RateLimit {
            request_max_limit: n,
            request_reset: pb::ResetPeriod::Minute as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn limited(id: &str, key: &str, limits: pb::Limits, team: &str) -> pb::VirtualKey {
    pb::VirtualKey {
        limits: Some(limits),
        team_id: team.into(),
        ..virtual_key(id, key)
    }
}

/// A refusal by the limits counts once under the level that refused and what it ran out of;
/// a refusal by this node's share of a fleet-wide limit is `allowance_moving`.
#[tokio::test]
async fn limit_refusals_are_counted_by_level_and_reason() {
    let url = upstream().await;
    let mut s = snapshot(vec![anthropic(&url, &["*"], &[])]);
    let budget = pb::Limits {
        budgets: vec![pb::Budget {
            id: "b-month".into(),
            max_limit_nano_usd: 1_000,
            reset: pb::ResetPeriod::Month as i32,
            calendar_aligned: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    s.virtual_keys.extend([
        limited("vk-rate", "sk-tg-rate", requests_per_minute(1), ""),
        limited("vk-team", "sk-tg-team", pb::Limits::default(), "team-1"),
        limited("vk-tiny", "sk-tg-tiny", budget, ""),
        limited("vk-fleet", "sk-tg-fleet", requests_per_minute(3), ""),
    ]);
    s.teams = vec![pb::Team {
        id: "team-1".into(),
        name: "platform".into(),
        limits: Some(requests_per_minute(1)),
        ..Default::default()
    }];
    let gw = Gateway::new(&s);
    let haiku = || body("anthropic/claude-haiku-4-5");
    for key in ["sk-tg-rate", "sk-tg-team"] {
        assert_eq!(gw.message(key, haiku()).await, StatusCode::OK);
        assert_eq!(
            gw.message(key, haiku()).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        gw.message("sk-tg-tiny", haiku()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // This node holds one of three shares of the key's three requests a minute.
    gw.dp.runtime().fleet().set_share(Share { slot: 2, of: 3 });
    assert_eq!(gw.message("sk-tg-fleet", haiku()).await, StatusCode::OK);
    assert_eq!(
        gw.message("sk-tg-fleet", haiku()).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    let e = gw.scrape();
    let refusals = "tollgate_limit_refusals_total";
    for (level, reason) in [
        ("virtual_key", "requests"),
        ("team", "requests"),
        ("virtual_key", "budget"),
        ("virtual_key", "allowance_moving"),
    ] {
        let got = e.value(refusals, &[("level", level), ("reason", reason)]);
        assert_eq!(got, 1.0, "{level} {reason}");
    }
    assert_eq!(e.series(refusals).len(), 4);
    let route = |status| {
        [
            ("provider", "anthropic"),
            ("model", "other"),
            ("status", status),
        ]
    };
    assert_eq!(e.value(REQUESTS_TOTAL, &route("429")), 4.0);
    assert_eq!(e.value(REQUESTS_TOTAL, &route("200")), 3.0);
}

/// What a scrape reads when it happens: the config served and when it was published and
/// applied, the usage queue, refusals before authentication and every provider key's health
/// (ids escaped). Two data planes in one process each show their own.
#[tokio::test]
async fn a_scrape_reads_config_backlog_refusals_and_key_health_of_its_own_data_plane() {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut s = snapshot(vec![anthropic(&dead_endpoint().await.0, &["*"], &[])]);
    let mut second = s.providers[0].keys[0].clone();
    s.providers[0].keys[0].id = "k\"1".into();
    second.id = "k2".into();
    s.providers[0].keys.push(second);
    s.created_at_unix_ms = now_ms - 5_000;
    let a = Gateway::new(&s);
    let b = Gateway::new(&s);

    for _ in 0..2 {
        let (status, _) = a.send("/anthropic/v1/messages", None, body("x")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Two usage records waiting in A's queue (nothing drains it here).
    for _ in 0..2 {
        let no_model = json!({"max_tokens": 8, "messages": []});
        assert_eq!(a.message(KEY, no_model).await, StatusCode::BAD_REQUEST);
    }
    let rt = a.dp.runtime().load().expect("config");
    let keys = &rt.provider("anthropic").expect("provider").keys;
    for _ in 0..EJECT_AFTER {
        keys[0]
            .health
            .record(Verdict::Failure, crate::health::now_ms());
    }
    for _ in 0..2 {
        keys[1]
            .health
            .record(Verdict::Failure, crate::health::now_ms());
    }

    let e = a.scrape();
    assert_eq!(e.value("tollgate_config_version", &[]), 3.0);
    let published = e.value("tollgate_config_published_timestamp_seconds", &[]);
    let applied = e.value("tollgate_config_applied_timestamp_seconds", &[]);
    let lag = e.value("tollgate_config_lag_seconds", &[]);
    assert_eq!(published, (now_ms - 5_000) as f64 / 1000.0);
    assert!(applied >= now_ms as f64 / 1000.0, "{applied} {now_ms}");
    assert!((lag - (applied - published)).abs() < 1e-6, "{lag}");
    // Published 5 s before it was applied (set above), whatever the code computes.
    assert!(lag >= 5.0, "{lag}");
    assert_eq!(e.value("tollgate_control_plane_connected", &[]), 0.0);
    assert!(
        e.series("tollgate_control_plane_last_contact_timestamp_seconds")
            .is_empty(),
        "no control-plane stream here"
    );
    assert_eq!(e.value("tollgate_usage_queue_length", &[]), 2.0);
    assert_eq!(e.value("tollgate_usage_queue_dropped_total", &[]), 0.0);
    let refused = "tollgate_requests_refused_total";
    assert_eq!(e.value(refused, &[("reason", "auth")]), 2.0);
    for reason in ["not_ready", "no_route", "other"] {
        assert_eq!(e.value(refused, &[("reason", reason)]), 0.0, "{reason}");
    }
    let key = |id| [("provider", "anthropic"), ("key_id", id)];
    assert_eq!(e.value("tollgate_provider_key_ejected", &key("k\"1")), 1.0);
    assert_eq!(e.value("tollgate_provider_key_ejected", &key("k2")), 0.0);
    assert_eq!(
        e.value("tollgate_provider_key_ejections_total", &key("k\"1")),
        1.0
    );
    let failures = "tollgate_provider_key_consecutive_failures";
    assert_eq!(e.value(failures, &key("k\"1")), 0.0, "the count restarts");
    assert_eq!(e.value(failures, &key("k2")), 2.0);
    assert_eq!(
        e.value(
            "tollgate_requests_total",
            &[("provider", "none"), ("model", "none"), ("status", "400")]
        ),
        2.0
    );

    // The other data plane: the same config, nothing of A's.
    let e = b.scrape();
    assert!(e.series("tollgate_requests_total").is_empty());
    assert_eq!(e.value(refused, &[("reason", "auth")]), 0.0);
    assert_eq!(e.value("tollgate_usage_queue_length", &[]), 0.0);
    assert_eq!(e.value("tollgate_provider_key_ejected", &key("k\"1")), 0.0);
    assert_eq!(e.value(failures, &key("k2")), 0.0);
}

/// A split data plane's reporter figures.
#[test]
fn the_reporter_shows_delivery_and_backlog() {
    let mut registry = Registry::default();
    register_reporter(Arc::new(ReporterStats::default()), &mut registry);
    let e = Exposition::parse(&encode(&registry));
    for (name, v) in [
        ("tollgate_usage_records_received_total", 0.0),
        ("tollgate_usage_records_acked_total", 0.0),
        ("tollgate_usage_records_pending", 0.0),
        ("tollgate_usage_records_dropped_total", 0.0),
        ("tollgate_usage_stream_connected", 0.0),
    ] {
        assert_eq!(e.value(name, &[]), v, "{name}");
    }
    assert_eq!(e.types["tollgate_usage_records_pending"], "gauge");
    assert_eq!(e.types["tollgate_usage_records_acked_total"], "counter");
}

#[test]
fn statuses_are_codes_or_classes() {
    for (status, label) in [
        (200, "200"),
        (529, "529"),
        (499, "499"),
        (201, "2xx"),
        (302, "3xx"),
        (418, "4xx"),
        (501, "5xx"),
        (0, "other"),
        (999, "other"),
    ] {
        assert_eq!(STATUSES[status_slot(status)], label, "{status}");
    }
    for (i, s) in STATUSES.iter().enumerate() {
        if let Ok(code) = s.parse::<u32>() {
            assert_eq!(status_slot(code), i, "{s}");
        }
    }
}

/// An answer that is an upstream failure takes the class its attempt would have had.
#[test]
fn answer_classes_match_attempt_classes() {
    use crate::providers::Retryable;
    for (status, class, retryable) in [
        (429, "upstream_error", Retryable::RateLimited),
        (529, "upstream_error", Retryable::Overloaded),
        (503, "upstream_error", Retryable::ServerError),
        (401, "upstream_error", Retryable::KeyRejected),
        (0, crate::upstream::TIMEOUT_CLASS, Retryable::Timeout),
        (
            0,
            crate::upstream::UNREACHABLE_CLASS,
            Retryable::Unreachable,
        ),
    ] {
        let answer = answer_class(status, class);
        assert_eq!(answer, Some(retryable.as_str()), "{status} {class}");
        assert_eq!(attempt_class(retryable.as_str()), retryable.as_str());
    }
    assert_eq!(answer_class(400, "upstream_error"), Some("client_error"));
    assert_eq!(answer_class(502, "upstream_new_kind"), Some("other"));
    assert_eq!(answer_class(499, "client_closed"), None);
    assert_eq!(
        answer_class(429, "rate_limited"),
        None,
        "limits, not upstream"
    );
    assert_eq!(attempt_class("anything else"), "other");
}

/// A model label is a name the config holds (an alias target or a listed model), never the
/// client's string.
#[test]
fn model_labels_come_from_the_config() {
    let p = anthropic(
        "http://127.0.0.1:1",
        &["*", "claude-listed"],
        &[("fast", "claude-haiku-4-5")],
    );
    let labels = ModelLabels::of(&p);
    assert_eq!(&*labels.label("claude-haiku-4-5"), "claude-haiku-4-5");
    assert_eq!(&*labels.label("claude-listed"), "claude-listed");
    for raw in ["fast", "*", "claude-anything", "CLAUDE-LISTED"] {
        assert_eq!(&*labels.label(raw), "other", "{raw}");
    }
}

//! `POST /api/providers/{provider}/keys/{key_id}/test` in process: a stand-in data plane is
//! attached as a probe target (as all-in-one attaches its own) and answers as it is scripted;
//! the real data plane's side is the e2e test's (`tests/tests/e2e_key_test.rs`).

use tokio::sync::mpsc;
use tollgate_proto::config::v1::{ProbeRequest, ProbeResult};

use super::*;

/// A stand-in data plane: every probe it gets is sent on the returned channel and answered by
/// `answer`.
fn data_plane(
    h: &Harness,
    node: &str,
    answer: impl Fn(&ProbeRequest) -> ProbeResult + Send + 'static,
) -> mpsc::UnboundedReceiver<ProbeRequest> {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let mut target = h.cp.attach_probe_target(node);
    tokio::spawn(async move {
        while let Some(req) = target.next().await {
            let result = ProbeResult {
                probe_id: req.probe_id,
                ..answer(&req)
            };
            let _ = seen_tx.send(req);
            assert!(target.answer(result));
        }
    });
    seen
}

/// An Anthropic provider with a key serving `models` with `aliases`; returns the key's path.
async fn key(h: &Harness, models: Value, aliases: Value, enabled: bool) -> String {
    let r = post(h, "/api/providers", json!({"provider": "anthropic"})).await;
    assert!(
        r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
        "{}",
        r.text
    );
    let r = post(
        h,
        "/api/providers/anthropic/keys",
        json!({"name": format!("k-{}", uuid::Uuid::new_v4()), "value": "sk-ant-KEY-TEST-SECRET-0001",
               "models": models, "aliases": aliases, "enabled": enabled}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    format!(
        "/api/providers/anthropic/keys/{}/test",
        r.json["id"].as_str().unwrap()
    )
}

async fn test_rows(h: &Harness) -> Vec<Value> {
    let r = get(h, "/api/audit-logs?action=provider_key.test").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["audit_logs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_data_plane_answers_and_the_result_is_returned_and_audited() {
    let h = sqlite_harness(loopback_auth()).await;
    let path = key(
        &h,
        json!(["*", "claude-haiku-4-5"]),
        json!({"fast": "claude-haiku-4-5"}),
        true,
    )
    .await;
    let mut seen = data_plane(&h, "dp-1", |req| ProbeResult {
        ok: true,
        status: 200,
        latency_ms: 42,
        model: req.model.clone(),
        config_version: req.config_version,
        ..ProbeResult::default()
    });
    // No body: the key's first listed model that is not a pattern.
    let r = Call::new(Method::POST, &path).send(&h.router).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let version = h.cp.published_version();
    assert_eq!(
        r.json,
        json!({"ok": true, "status": 200, "latency_ms": 42, "model": "claude-haiku-4-5",
               "data_plane": "dp-1", "config_version": version, "error": null})
    );
    let req = seen.recv().await.unwrap();
    assert_eq!(req.provider, "anthropic");
    assert!(path.contains(&req.key_id));
    assert_eq!(req.config_version, version);
    // A model given is sent as given (the data plane resolves aliases).
    let r = post(&h, &path, json!({"model": "fast"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(seen.recv().await.unwrap().model, "fast");

    let rows = test_rows(&h).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = rows
        .iter()
        .find(|r| r["details"]["model"] == "claude-haiku-4-5")
        .unwrap();
    assert_eq!(row["details"]["result"], "success");
    assert_eq!(row["details"]["ok"], true);
    assert_eq!(row["details"]["upstream_status"], 200);
    assert_eq!(row["details"]["data_plane"], "dp-1");
    assert!(path.contains(row["target"].as_str().unwrap()), "{row}");
    assert!(!row.to_string().contains("KEY-TEST-SECRET"));
}

#[tokio::test]
async fn a_rejected_key_is_a_200_with_the_providers_error_and_a_failure_row() {
    let h = sqlite_harness(loopback_auth()).await;
    let path = key(
        &h,
        json!(["*"]),
        json!({"sonnet": "claude-sonnet-4-5"}),
        true,
    )
    .await;
    let mut seen = data_plane(&h, "dp-1", |req| ProbeResult {
        ok: false,
        status: 401,
        latency_ms: 7,
        model: "claude-sonnet-4-5".into(),
        config_version: req.config_version,
        error_class: "authentication_error".into(),
        error_message: "invalid x-api-key".into(),
        ..ProbeResult::default()
    });
    let r = post(&h, &path, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["ok"], false);
    assert_eq!(r.json["status"], 401);
    assert_eq!(
        r.json["error"],
        json!({"class": "authentication_error", "message": "invalid x-api-key"})
    );
    // Only `*` listed: the first alias by name is sent.
    assert_eq!(seen.recv().await.unwrap().model, "sonnet");
    let rows = test_rows(&h).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["details"]["result"], "failure");
    assert_eq!(rows[0]["details"]["error"], "invalid x-api-key");
    assert_eq!(rows[0]["details"]["error_class"], "authentication_error");
}

#[tokio::test]
async fn without_a_data_plane_it_is_503_and_audited() {
    let h = sqlite_harness(loopback_auth()).await;
    let path = key(&h, json!(["claude-haiku-4-5"]), json!({}), true).await;
    let r = post(&h, &path, json!({})).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no data plane is connected"),
        "{}",
        r.text
    );
    let rows = test_rows(&h).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["details"]["result"], "failure");
    assert_eq!(rows[0]["details"]["status"], 503);
}

#[tokio::test]
async fn refused_tests_name_the_problem_and_are_audited() {
    let h = sqlite_harness(loopback_auth()).await;
    let _seen = data_plane(&h, "dp-1", |_| ProbeResult::default());
    let patterns_only = key(&h, json!(["*", "regex:claude.*"]), json!({}), true).await;
    let r = post(&h, &patterns_only, json!({})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("model"),
    );
    let r = post(&h, &patterns_only, json!({"model": "has space"})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("model"),
    );
    let r = post(&h, &patterns_only, json!({"modle": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = Call::new(Method::POST, &patterns_only)
        .raw(b"{\"model\":\"x\"}", None)
        .send(&h.router)
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a body needs its type: {}",
        r.text
    );

    let disabled = key(&h, json!(["claude-haiku-4-5"]), json!({}), false).await;
    let r = post(&h, &disabled, json!({})).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);

    let unknown = format!(
        "/api/providers/anthropic/keys/{}/test",
        uuid::Uuid::new_v4()
    );
    let r = post(&h, &unknown, json!({})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = post(&h, "/api/providers/nope/keys/not-a-uuid/test", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    let rows = test_rows(&h).await;
    assert_eq!(rows.len(), 7, "every refusal has its row: {rows:?}");
    assert!(rows.iter().all(|r| r["details"]["result"] == "failure"));
}

#[tokio::test]
async fn a_data_plane_that_does_not_answer_in_time_is_504_and_audited() {
    let h = sqlite_harness(loopback_auth()).await;
    let path = key(&h, json!(["claude-haiku-4-5"]), json!({}), true).await;
    h.cp.set_probe_timeout(std::time::Duration::from_millis(200));
    // Attached, never answering.
    let mut silent = h.cp.attach_probe_target("dp-silent");
    let r = post(&h, &path, json!({})).await;
    assert_error(&r, StatusCode::GATEWAY_TIMEOUT, "timeout", None);
    assert!(r.text.contains("dp-silent"), "{}", r.text);
    assert!(silent.next().await.is_some(), "the probe was sent");
    let rows = test_rows(&h).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["details"]["result"], "failure");
    assert_eq!(rows[0]["details"]["status"], 504);
}

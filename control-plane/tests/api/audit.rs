//! The audit log through the admin API: what a row holds (who, from where, what, before →
//! after with secrets redacted, result), refused changes and failed authentication, filters,
//! cursor pagination, and the NDJSON export verified offline.

use tollgate_control_plane::audit_chain::{ChainRow, verify};

use super::*;

/// A tab and a right-to-left override (control characters cannot be sent in a header).
const UA: &str = "audit-test/1.0 (\t\u{202e}rtl)";
const SECRET_1: &str = "sk-ant-AUDIT-SECRET-ONE-0001";
const SECRET_2: &str = "sk-ant-AUDIT-SECRET-TWO-0002";
const WRONG_PLACE: &str = "sk-ant-AUDIT-SECRET-WRONG-PLACE";

fn with_ua<'a>(call: Call<'a>) -> Call<'a> {
    call.header("user-agent", UA)
}

/// The audit log as the API lists it, following `next_cursor` with pages of `limit`.
async fn all_pages(h: &Harness, filters: &str, limit: u32) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/audit-logs?limit={limit}{filters}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = get(h, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let page = r.json["audit_logs"].as_array().unwrap().clone();
        assert_eq!(r.json["count"], page.len());
        assert!(page.len() <= limit as usize);
        rows.extend(page);
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    rows
}

/// `GET /api/audit-logs/export?query`: status, content type, body.
async fn export(h: &Harness, query: &str) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .uri(format!("/api/audit-logs/export{query}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(loopback()));
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

/// An exported line as the hash chain sees it.
fn chain_row(v: &Value) -> ChainRow {
    ChainRow {
        id: v["id"].as_i64().unwrap(),
        at: time::OffsetDateTime::parse(
            v["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap(),
        actor: v["actor"].as_str().unwrap().to_owned(),
        action: v["action"].as_str().unwrap().to_owned(),
        target: v["target"].as_str().unwrap().to_owned(),
        config_version: v["config_version"].as_i64().unwrap(),
        details: v["details"].clone(),
        prev_hash: v["prev_hash"].as_str().map(str::to_owned),
        hash: v["hash"].as_str().map(str::to_owned),
    }
}

async fn audit_log(h: &Harness) {
    // A create, then an update that replaces the literal secret and the weight.
    let r = with_ua(Call::new(Method::POST, "/api/providers"))
        .json(json!({"provider": "anthropic"}))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = with_ua(Call::new(Method::POST, "/api/providers/anthropic/keys"))
        .json(json!({"name": "main", "value": SECRET_1}))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key_id = r.json["id"].as_str().unwrap().to_owned();
    let key_path = format!("/api/providers/anthropic/keys/{key_id}");
    let r = with_ua(Call::new(Method::PUT, &key_path))
        .json(json!({"value": SECRET_2, "weight": 2.5}))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // An update that keeps the secret: `value` is not listed as changed.
    let r = put(
        h,
        &key_path,
        json!({"value": "<redacted>", "enabled": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let version = get(h, "/api/version").await.json["config_version"].clone();

    let r = get(h, "/api/audit-logs?action=provider_key.update").await;
    assert_eq!(r.json["count"], 2, "{}", r.text);
    let (keep, rotate) = (&r.json["audit_logs"][0], &r.json["audit_logs"][1]);
    assert_eq!(rotate["actor"], "loopback@127.0.0.1");
    assert_eq!(
        rotate["target"],
        format!("providers/anthropic/keys/{key_id}")
    );
    let d = &rotate["details"];
    assert_eq!(d["result"], "success");
    assert_eq!(d["source"]["ip"], "127.0.0.1");
    assert_eq!(
        d["source"]["user_agent"],
        "audit-test/1.0 (\\t\\u{202e}rtl)"
    );
    assert_eq!(d["before"]["value"], "<redacted>");
    assert_eq!(d["after"]["value"], "<redacted>");
    assert_eq!(d["before"]["weight"], 1.0);
    assert_eq!(d["after"]["weight"], 2.5);
    assert_eq!(d["after"]["name"], "main");
    assert_eq!(d["changed"], json!(["value", "weight"]));
    assert_eq!(keep["details"]["changed"], json!(["enabled"]));
    assert_eq!(keep["details"]["source"]["user_agent"], Value::Null);
    let r = get(h, "/api/audit-logs?action=provider_key.create").await;
    assert_eq!(r.json["audit_logs"][0]["details"]["before"], Value::Null);
    assert_eq!(
        r.json["audit_logs"][0]["details"]["after"]["value"],
        "<redacted>"
    );

    // Refused changes: a failure row each, no new config version.
    let missing = uuid::Uuid::new_v4();
    let r = put(
        h,
        &format!("/api/providers/anthropic/keys/{missing}"),
        json!({"weight": 3}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = post(h, "/api/virtual-keys", json!({"name": ""})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = post(
        h,
        "/api/providers/anthropic/keys",
        json!({"name": "k2", "weight": WRONG_PLACE}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = delete(h, &key_path.replace(&key_id, "not-a-uuid")).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("key_id"),
    );
    // A method the route does not have refuses no change: no row.
    let r = Call::new(Method::PATCH, "/api/providers/anthropic")
        .json(json!({}))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    assert_eq!(get(h, "/api/version").await.json["config_version"], version);
    let r = get(h, "/api/audit-logs?result=failure").await;
    assert_eq!(r.json["count"], 4, "{}", r.text);
    let failures = r.json["audit_logs"].as_array().unwrap();
    let by_action = |a: &str| failures.iter().find(|f| f["action"] == a).unwrap().clone();
    let nf = by_action("provider_key.update");
    assert_eq!(nf["target"], format!("providers/anthropic/keys/{missing}"));
    assert_eq!(nf["details"]["status"], 404);
    assert_eq!(nf["details"]["result"], "failure");
    assert!(
        nf["details"]["error"]
            .as_str()
            .unwrap()
            .contains("has no key"),
        "{nf}"
    );
    assert_eq!(nf["config_version"], version);
    let bad = by_action("virtual_key.create");
    assert_eq!(bad["target"], "virtual-keys");
    assert_eq!(bad["details"]["status"], 400);
    assert_eq!(bad["actor"], "loopback@127.0.0.1");
    let wrong = by_action("provider_key.create");
    assert!(
        wrong["details"]["error"]
            .as_str()
            .unwrap()
            .contains("<redacted>"),
        "{wrong}"
    );
    assert_eq!(by_action("provider_key.delete")["details"]["status"], 400);

    // No secret anywhere in the log.
    let text = get(h, "/api/audit-logs?limit=1000").await.text;
    for secret in [SECRET_1, SECRET_2, WRONG_PLACE] {
        assert!(
            !text.contains(secret),
            "the audit log shows {secret}: {text}"
        );
    }

    // Filters.
    let r = get(h, "/api/audit-logs?action=provider_key.*&result=success").await;
    assert_eq!(r.json["count"], 3, "{}", r.text);
    let r = get(h, "/api/audit-logs?target=providers/anthropic*&limit=1000").await;
    assert!(r.json["count"].as_u64().unwrap() > 0, "{}", r.text);
    assert!(
        r.json["audit_logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["target"]
                .as_str()
                .unwrap()
                .starts_with("providers/anthropic")),
        "{}",
        r.text
    );
    let r = get(
        h,
        "/api/audit-logs?actor=loopback@127.0.0.1&since=2000-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(r.json["count"], 8, "{}", r.text);
    let r = get(h, "/api/audit-logs?until=2000-01-01T00:00:00%2B02:00").await;
    assert_eq!(r.json["count"], 0, "{}", r.text);
    for (query, field) in [
        ("result=maybe", "result"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
        ("action=a*b", "action"),
        ("actor=", "actor"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=1001", "limit"),
        ("offset=3", "offset"),
    ] {
        let r = get(h, &format!("/api/audit-logs?{query}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
        let (status, _, _) = export(h, &format!("?{query}")).await;
        if !["cursor", "limit"].contains(&field) {
            assert_eq!(status, StatusCode::BAD_REQUEST, "export ?{query}");
        }
    }

    // Pages: every row once, newest first, the last page without a cursor.
    let whole = get(h, "/api/audit-logs?limit=1000").await;
    assert_eq!(whole.json["next_cursor"], Value::Null);
    let whole = whole.json["audit_logs"].as_array().unwrap().clone();
    for limit in [1, 3, 4] {
        assert_eq!(all_pages(h, "", limit).await, whole, "limit {limit}");
    }
    let failures_paged = all_pages(h, "&result=failure", 3).await;
    assert_eq!(failures_paged.len(), 4);

    // The export: every row, oldest first, re-verified offline.
    for i in 0..520 {
        let ev = tollgate_control_plane::model::AuditEvent::new(
            "test",
            "test.event",
            format!("t/{i}"),
            &Default::default(),
        )
        .success();
        h.cp.store().append_audit(&ev).await.unwrap();
    }
    let (status, ct, body) = export(h, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    assert!(body.ends_with('\n'));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len(), whole.len() + 520);
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64())
    );
    let rows: Vec<ChainRow> = lines.iter().map(chain_row).collect();
    let report = verify(&rows).expect("the export verifies offline");
    assert_eq!(report.chained as usize, lines.len());
    // Tampering with an exported line is caught.
    let mut forged = rows.clone();
    forged[2].details["after"]["weight"] = json!(9);
    assert_eq!(verify(&forged).unwrap_err().id, rows[2].id);
    // A filtered export: each row still matches its own hash.
    let (_, _, body) = export(h, "?result=failure").await;
    let failed: Vec<ChainRow> = body
        .lines()
        .map(|l| chain_row(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(failed.len(), 4);
    for r in &failed {
        assert_eq!(
            r.hash.as_deref(),
            Some(r.hash_after(r.prev_hash.as_deref().unwrap()).as_str())
        );
    }
}

#[tokio::test]
async fn audit_log_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    audit_log(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        audit_log(&h).await;
    })
    .await;
}

/// A 401 writes an `auth.failed` row with the source and the reason, at most one per source
/// address per 10 seconds; the presented token is never stored.
#[tokio::test]
async fn failed_admin_authentication_is_audited_and_capped() {
    let h = sqlite_harness(AdminAuth {
        token: Some("admin-s3cret".into()),
        allow_loopback_without_token: false,
    })
    .await;
    for _ in 0..5 {
        let r = Call::new(Method::DELETE, "/api/providers/bedrock")
            .token("guessed-token-123")
            .peer(Some(remote()))
            .header("user-agent", "scanner/9")
            .send(&h.router)
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    let other: SocketAddr = "198.51.100.4:1000".parse().unwrap();
    let r = Call::new(Method::GET, "/api/providers")
        .peer(Some(other))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = Call::new(Method::GET, "/api/audit-logs?action=auth.failed")
        .token("admin-s3cret")
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["count"], 2, "one row per source: {}", r.text);
    let first = &r.json["audit_logs"][1];
    assert_eq!(first["actor"], "anonymous@192.0.2.7");
    assert_eq!(first["target"], "/api/providers/bedrock");
    assert_eq!(first["details"]["result"], "failure");
    assert_eq!(first["details"]["error"], "invalid admin token");
    assert_eq!(first["details"]["method"], "DELETE");
    assert_eq!(first["details"]["source"]["ip"], "192.0.2.7");
    assert_eq!(first["details"]["source"]["user_agent"], "scanner/9");
    let second = &r.json["audit_logs"][0];
    assert_eq!(second["actor"], "anonymous@198.51.100.4");
    assert!(
        second["details"]["error"]
            .as_str()
            .unwrap()
            .contains("missing admin token")
    );
    assert!(!r.text.contains("guessed-token-123"));
    assert!(!r.text.contains("admin-s3cret"));
    // The rows are chained with the rest and change no configuration.
    let rows = h.cp.store().audit_chain().await.unwrap();
    assert_eq!(verify(&rows).unwrap().chained, 2);
    assert_eq!(h.cp.store().config_version().await.unwrap(), 1);
}

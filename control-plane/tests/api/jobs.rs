//! Jobs through the admin API with the control plane's own runner: a cost recomputation after
//! a pricing change re-prices the stored records and the spend, shows its progress, and says
//! what it did; bad ranges are 400s naming the field; unknown jobs 404s.

use std::time::{Duration, Instant};

use tollgate_control_plane::store::UsageRecord;

use super::*;

fn record(id: &str, key: &str, ago_ms: i64, input: u64, output: u64) -> UsageRecord {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    UsageRecord {
        request_id: id.into(),
        virtual_key_id: key.into(),
        provider: "anthropic".into(),
        model_requested: "house-model".into(),
        model_resolved: "house-model".into(),
        provider_key_id: "pk".into(),
        input_tokens: input,
        output_tokens: output,
        status: 200,
        started_at_unix_ms: now_ms - ago_ms,
        // Stored before the model had a price: unpriced.
        cost_nano_usd: None,
        ..Default::default()
    }
}

/// Polls the job until it ends.
async fn finished(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(h, &format!("/api/jobs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if ["succeeded", "failed", "cancelled"].contains(&r.json["state"].as_str().unwrap()) {
            return r.json;
        }
        assert!(Instant::now() < deadline, "job still {}", r.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn spend_totals(h: &Harness) -> Value {
    let r = get(h, "/api/spend").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["totals"].clone()
}

#[tokio::test]
async fn recomputing_costs_after_a_price_change_reprices_records_and_spend() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(&h, "/api/virtual-keys", json!({"name": "app"})).await;
    let key = r.json["id"].as_str().unwrap().to_owned();
    // Three records in the last two hours (two hours: two slices) and one from two days ago,
    // outside the range recomputed.
    let records = [
        record("r1", &key, 60_000, 1_000, 100),
        record("r2", &key, 90 * 60_000, 2_000, 0),
        record("r3", &key, 100 * 60_000, 0, 50),
        record("old", &key, 2 * 86_400_000, 1_000, 1_000),
    ];
    h.cp.store().insert_usage(&records).await.unwrap();
    let before = spend_totals(&h).await;
    assert_eq!(
        (
            before["cost_nano_usd"].as_u64(),
            before["unpriced_requests"].as_u64()
        ),
        (Some(0), Some(4))
    );

    // The price arrives: $1 input, $2 output per million tokens (1,000 and 2,000 nano-dollars
    // per token).
    let r = post(
        &h,
        "/api/pricing",
        json!({"provider": "anthropic", "models": ["house-model"], "input": 1.0, "output": 2.0,
               "cache_write_5m": 1.0, "cache_write_1h": 1.0, "cache_read": 1.0}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let since = (time::OffsetDateTime::now_utc() - time::Duration::hours(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = post(&h, "/api/jobs/recompute-costs", json!({"since": since})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["kind"], "recompute_costs");
    assert_eq!(r.json["state"], "queued");
    let id = r.json["id"].as_str().unwrap().to_owned();
    let job = finished(&h, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["total"].as_u64()),
        (Some(3), Some(3)),
        "{job}"
    );
    assert_eq!(job["percent"], 100.0);
    assert_eq!(job["message"], "3 records re-priced, 3 changed");
    assert!(job["finished_at"].is_string() && job["started_at"].is_string());

    // r1: 1,000 × 1,000 + 100 × 2,000; r2: 2,000 × 1,000; r3: 50 × 2,000. `old` is untouched.
    let cost = |r: &Resp| r.json["cost_usd"].as_f64();
    let r1 = get(&h, "/api/logs/r1").await;
    assert_eq!(cost(&r1), Some(0.0012));
    assert_eq!(cost(&get(&h, "/api/logs/r2").await), Some(0.002));
    assert_eq!(cost(&get(&h, "/api/logs/r3").await), Some(0.0001));
    let after = spend_totals(&h).await;
    assert_eq!(after["cost_nano_usd"], 1_200_000 + 2_000_000 + 100_000);
    assert_eq!(
        after["unpriced_requests"], 1,
        "the record outside the range"
    );

    // Again: nothing left to change. The audit log names both jobs.
    let r = post(&h, "/api/jobs/recompute-costs", json!({"since": since})).await;
    let job = finished(&h, r.json["id"].as_str().unwrap()).await;
    assert_eq!(job["message"], "3 records re-priced, 0 changed");
    let r = get(&h, "/api/jobs").await;
    assert_eq!(r.json["count"], 2);
    assert_eq!(r.json["jobs"][1]["id"], id.as_str(), "newest first");
    let audit = get(&h, "/api/audit-logs?action=job.create").await;
    assert_eq!(audit.json["count"], 2, "{}", audit.text);

    // A finished job cancelled is returned as it is.
    let r = post(&h, &format!("/api/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "succeeded");
}

#[tokio::test]
async fn bad_ranges_and_unknown_jobs() {
    let h = sqlite_harness(loopback_auth()).await;
    for (body, field) in [
        (json!({}), "since"),
        (json!({"since": "yesterday"}), "since"),
        (
            json!({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
            "until",
        ),
        (
            json!({"since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
            "since",
        ),
        (
            json!({"since": "2026-01-01T00:00:00Z", "extra": 1}),
            "extra",
        ),
    ] {
        let r = post(&h, "/api/jobs/recompute-costs", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let missing = uuid::Uuid::new_v4();
    assert_error(
        &get(&h, &format!("/api/jobs/{missing}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &post(&h, &format!("/api/jobs/{missing}/cancel"), json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &get(&h, "/api/jobs/not-a-uuid").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("job_id"),
    );
    assert_error(
        &get(&h, "/api/jobs?limit=0").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("limit"),
    );
}

//! Spend through the admin API: the report's shape (groups with current names, buckets,
//! totals), the CSV export parsed back with the `csv` crate, 400s naming the field, and scoping
//! (a member sums their own key, a team admin what was billed to their team).

use tollgate_control_plane::identity::Role;
use tollgate_control_plane::store::UsageRecord;
use uuid::Uuid;

use super::logs::billed;
use super::roles::{Org, admin, org};
use super::*;

fn record(request_id: &str, vk: &str, ago_ms: i64, cost: Option<u64>) -> UsageRecord {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    UsageRecord {
        request_id: request_id.into(),
        virtual_key_id: vk.into(),
        provider: "bedrock".into(),
        model_requested: "claude-sonnet-4-6".into(),
        model_resolved: "global.anthropic.claude-sonnet-4-6".into(),
        provider_key_id: "pk-1".into(),
        input_tokens: 100,
        output_tokens: 20,
        cache_read_input_tokens: 5,
        cache_write_input_tokens: 3,
        status: 200,
        started_at_unix_ms: now_ms - ago_ms,
        cost_nano_usd: cost,
        ..Default::default()
    }
}

fn ok(r: &Resp) -> &Value {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["count"], r.json["rows"].as_array().unwrap().len());
    &r.json
}

#[tokio::test]
async fn spend_reports_groups_buckets_totals_and_csv() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(&h, "/api/teams", json!({"name": "eng"})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let team = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "app, \"one\"", "team_id": team}),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    let app = r.json["id"].as_str().unwrap().to_owned();
    let r = post(&h, "/api/virtual-keys", json!({"name": "solo"})).await;
    let solo = r.json["id"].as_str().unwrap().to_owned();
    let mut refused = record("r-refused", &app, 1_000, None);
    refused.error_class = "rate_limited".into();
    refused.status = 429;
    let mut failed = record("r-failed", &solo, 2_000, Some(0));
    failed.error_class = "upstream_error".into();
    failed.status = 502;
    let mut records = vec![
        record("r-1", &app, 1_000, Some(1_250_000_000)),
        record("r-2", &app, 3 * 86_400_000, Some(250_000_000)),
        record("r-3", &solo, 5_000, None),
        refused,
        failed,
    ];
    for r in &mut records {
        *r = billed(&h, r.clone()).await;
    }
    assert_eq!(h.cp.store().insert_usage(&records).await.unwrap(), 5);

    // Default: the last 30 days, one row of totals.
    let r = get(&h, "/api/spend").await;
    let j = ok(&r);
    assert_eq!(j["interval"], "none");
    assert_eq!(j["group_by"], json!([]));
    assert_eq!(j["count"], 1);
    let total = &j["totals"];
    assert_eq!(total["requests"], 4);
    assert_eq!(total["refused_requests"], 1);
    assert_eq!(total["error_requests"], 1);
    assert_eq!(total["unpriced_requests"], 2);
    assert_eq!(total["cost_nano_usd"], 1_500_000_000u64);
    assert_eq!(total["cost_usd"], json!(1.5));
    assert_eq!(
        total["tokens"],
        json!({"input": 500, "output": 100, "cache_read": 25, "cache_write": 15})
    );
    assert_eq!(j["rows"][0]["requests"], 4);
    assert!(j["rows"][0].get("key").is_none() && j["rows"][0].get("bucket").is_none());
    // The bounds are whole days: until is the next midnight, since 30 days before it.
    let since = j["since"].as_str().unwrap();
    let until = j["until"].as_str().unwrap();
    assert!(
        since.ends_with("T00:00:00Z") && until.ends_with("T00:00:00Z"),
        "{since} {until}"
    );

    // By key and team, costliest first, with current names; no team is a group with nulls.
    let r = get(&h, "/api/spend?group_by=key,team").await;
    let j = ok(&r);
    assert_eq!(j["group_by"], json!(["key", "team"]));
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], json!({"id": app, "name": "app, \"one\""}));
    assert_eq!(rows[0]["team"], json!({"id": team, "name": "eng"}));
    assert_eq!(rows[0]["requests"], 2);
    assert_eq!(rows[0]["refused_requests"], 1);
    assert_eq!(rows[0]["cost_nano_usd"], 1_500_000_000u64);
    assert_eq!(rows[1]["key"]["name"], "solo");
    assert_eq!(rows[1]["team"], json!({"id": null, "name": null}));
    assert_eq!(rows[1]["unpriced_requests"], 1);
    assert!(rows[0].get("user").is_none() && rows[0].get("model").is_none());

    // By day: two buckets for app (today and three days ago), oldest first.
    let r = get(&h, &format!("/api/spend?interval=day&virtual_key_id={app}")).await;
    let rows = ok(&r)["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["bucket"].as_str().unwrap() < rows[1]["bucket"].as_str().unwrap());
    assert_eq!(rows[0]["cost_nano_usd"], 250_000_000u64);
    // By hour over the last day, by model and provider.
    let r = get(
        &h,
        "/api/spend?interval=hour&group_by=model,provider&since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(ok(&r)["count"], 0);
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let r = get(
        &h,
        &format!(
            "/api/spend?interval=hour&group_by=model,provider&since={}&until={}",
            fmt(now - time::Duration::hours(2)),
            fmt(now)
        ),
    )
    .await;
    let j = ok(&r);
    assert_eq!(j["totals"]["requests"], 3);
    for row in j["rows"].as_array().unwrap() {
        assert_eq!(row["model"], "global.anthropic.claude-sonnet-4-6");
        assert_eq!(row["provider"], "bedrock");
        assert!(row["bucket"].as_str().unwrap().ends_with(":00:00Z"));
    }
    // Filters narrow; an unknown model sums nothing.
    let r = get(&h, "/api/spend?model=gpt-4o").await;
    assert_eq!(ok(&r)["count"], 0);
    assert_eq!(ok(&r)["totals"]["requests"], 0);
    let r = get(&h, &format!("/api/spend?team_id={team}&group_by=key")).await;
    assert_eq!(ok(&r)["count"], 1);

    // CSV: a header row, escaped names, exact costs; `format=csv` is the same report.
    let r = get(&h, "/api/spend/export?group_by=key,team&interval=day").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let disposition = r.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"spend-") && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let header_row: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header_row,
        [
            "bucket",
            "key_id",
            "key_name",
            "team_id",
            "team_name",
            "requests",
            "refused_requests",
            "error_requests",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost_usd",
            "unpriced_requests"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    let app_today = rows
        .iter()
        .find(|r| &r[1] == app.as_str() && &r[6] == "1")
        .expect("app today");
    assert_eq!(&app_today[2], "app, \"one\"");
    assert_eq!(&app_today[4], "eng");
    assert_eq!(&app_today[12], "1.250000000");
    let solo_row = rows.iter().find(|r| &r[1] == solo.as_str()).unwrap();
    assert_eq!((&solo_row[3], &solo_row[4]), ("", ""));
    assert_eq!(&solo_row[5], "2");
    let same = get(&h, "/api/spend?group_by=key,team&interval=day&format=csv").await;
    assert_eq!(same.text, r.text);
    // No rows: the header alone.
    let r = get(&h, "/api/spend/export?model=none").await;
    assert_eq!(r.text.lines().count(), 1, "{}", r.text);

    // Bad parameters: 400 naming the field.
    for (query, field) in [
        ("group_by=key,week", "group_by"),
        ("interval=week", "interval"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
        (
            "since=2024-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        (
            "interval=hour&since=2026-01-01T00:00:00Z&until=2026-02-15T00:00:00Z",
            "since",
        ),
        ("virtual_key_id=app", "virtual_key_id"),
        ("team_id=1", "team_id"),
        ("customer_id=x", "customer_id"),
        ("user_id=x", "user_id"),
        ("format=xml", "format"),
    ] {
        let r = get(&h, &format!("/api/spend?{query}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
        let r = get(&h, &format!("/api/spend/export?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
    }
    let r = get(&h, "/api/spend?sort=asc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // 400 days by day, and 31 days by hour, are allowed.
    let r = get(
        &h,
        "/api/spend?interval=day&since=2025-01-01T00:00:00Z&until=2026-02-05T00:00:00Z",
    )
    .await;
    ok(&r);
    let r = get(
        &h,
        "/api/spend?interval=hour&since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00Z",
    )
    .await;
    ok(&r);
}

/// The requests `GET /api/spend{query}` sums for `role` (`None`: the admin token).
async fn requests(o: &Org, role: Option<Role>, query: &str) -> u64 {
    let path = format!("/api/spend{query}");
    let r = match role {
        Some(role) => o.as_role(role, Method::GET, &path, None).await,
        None => admin(&o.h, Method::GET, &path, None).await,
    };
    ok(&r)["totals"]["requests"].as_u64().unwrap()
}

#[tokio::test]
async fn members_sum_their_key_and_team_admins_their_team() {
    let o = org().await;
    let member = o.personal_key(Role::Member).to_string();
    let lead = o.personal_key(Role::TeamAdmin).to_string();
    let boss = o.personal_key(Role::Admin).to_string();
    // 1 request on key-a, 2 on key-b, 4 on the member's key, 8 on the lead's, 16 on the
    // admin's, 32 on a deleted key: each total names who was summed.
    let mut records = Vec::new();
    for (i, (key, n)) in [
        (o.key_a.clone(), 1),
        (o.key_b.clone(), 2),
        (member.clone(), 4),
        (lead, 8),
        (boss, 16),
        (Uuid::new_v4().to_string(), 32),
    ]
    .into_iter()
    .enumerate()
    {
        for j in 0..n {
            let r = record(&format!("r-{i}-{j}"), &key, 1_000, Some(1_000));
            records.push(billed(&o.h, r).await);
        }
    }
    o.h.cp.store().insert_usage(&records).await.unwrap();
    assert_eq!(requests(&o, None, "").await, 63);
    assert_eq!(requests(&o, Some(Role::Admin), "").await, 63);
    assert_eq!(requests(&o, Some(Role::Viewer), "").await, 63);
    // Team a: key-a, and the member's and the lead's personal keys.
    assert_eq!(requests(&o, Some(Role::TeamAdmin), "").await, 1 + 4 + 8);
    assert_eq!(requests(&o, Some(Role::Member), "").await, 4);
    // Filters cannot widen the scope.
    let other = format!("?virtual_key_id={}", o.key_b);
    assert_eq!(requests(&o, Some(Role::Member), &other).await, 0);
    assert_eq!(requests(&o, Some(Role::TeamAdmin), &other).await, 0);
    let team_b = format!("?team_id={}", o.team_b);
    assert_eq!(requests(&o, Some(Role::TeamAdmin), &team_b).await, 0);
    assert_eq!(requests(&o, None, &team_b).await, 2);
    // The export is scoped the same way.
    let r = o
        .as_role(
            Role::Member,
            Method::GET,
            "/api/spend/export?group_by=key",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], member.as_str());
    assert_eq!(&rows[0][2], "4");
    // By user: the member's personal key names them.
    let r = o
        .as_role(Role::Member, Method::GET, "/api/spend?group_by=user", None)
        .await;
    assert_eq!(ok(&r)["rows"][0]["user"]["name"], "mia@example.com");
}

//! Request logs through the admin API: the entry's shape, paging with `next_cursor`, 400s
//! naming the field, and scoping (a member sees their own key's requests, a team admin their
//! team's; out-of-scope details are 404s).

use tollgate_control_plane::identity::Role;
use tollgate_control_plane::store::UsageRecord;
use uuid::Uuid;

use super::roles::{Org, admin, org};
use super::*;

fn record(request_id: &str, vk: &str, ago_ms: i64, status: u32) -> UsageRecord {
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
        latency_ms: 1234,
        time_to_first_token_ms: 200,
        status,
        error_class: if status == 200 { "" } else { "upstream_error" }.into(),
        started_at_unix_ms: now_ms - ago_ms,
        stream: true,
        cache_write_1h_input_tokens: 1,
        cost_nano_usd: (status == 200).then_some(12_500_000),
        fallback_index: 1,
        attempts: vec![tollgate_proto::usage::v1::Attempt {
            provider: "bedrock".into(),
            model: "m".into(),
            provider_key_id: "pk-0".into(),
            class: "rate_limited".into(),
            status: 429,
            latency_ms: 12,
        }],
        ..Default::default()
    }
}

/// `r` billed as a data plane bills it: to its key's current team, customer and user.
pub(super) async fn billed(h: &Harness, mut r: UsageRecord) -> UsageRecord {
    let text = |id: Option<Uuid>| id.map(|u| u.to_string()).unwrap_or_default();
    if let Ok(id) = r.virtual_key_id.parse()
        && let Some(vk) = h.cp.store().get_virtual_key(id).await.unwrap()
    {
        r.team_id = text(vk.team_id);
        r.customer_id = text(vk.customer_id);
        r.user_id = text(vk.user_id);
    }
    r
}

fn request_ids(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let logs = r.json["logs"].as_array().unwrap();
    assert_eq!(r.json["count"], logs.len());
    logs.iter()
        .map(|l| l["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn logs_list_page_and_check_their_filters() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(&h, "/api/virtual-keys", json!({"name": "app"})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let key = r.json["id"].as_str().unwrap().to_owned();
    let records: Vec<_> = (0..5)
        .map(|i| {
            record(
                &format!("req-{i}"),
                &key,
                60_000 * i,
                if i == 2 { 502 } else { 200 },
            )
        })
        .collect();
    h.cp.store().insert_usage(&records).await.unwrap();

    // Newest first, the whole entry.
    let r = get(&h, "/api/logs").await;
    assert_eq!(
        request_ids(&r),
        ["req-0", "req-1", "req-2", "req-3", "req-4"]
    );
    assert!(r.json["next_cursor"].is_null());
    let e = &r.json["logs"][0];
    assert_eq!(e["virtual_key"], json!({"id": key, "name": "app"}));
    assert!(e["user"].is_null() && e["team_id"].is_null() && e["customer_id"].is_null());
    assert_eq!(
        e["tokens"],
        json!({"input": 100, "output": 20, "cache_read": 5, "cache_write": 3, "cache_write_1h": 1})
    );
    assert_eq!(e["cost_usd"], json!(0.0125));
    assert_eq!(e["status"], 200);
    assert_eq!(e["stream"], true);
    assert_eq!(e["latency_ms"], 1234);
    assert_eq!(e["time_to_first_token_ms"], 200);
    assert_eq!(e["fallback_index"], 1);
    assert_eq!(e["attempts"][0]["class"], "rate_limited");
    assert_eq!(e["provider_key_id"], "pk-1");
    assert_eq!(e["model_resolved"], "global.anthropic.claude-sonnet-4-6");
    let started = e["started_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{started}"
    );
    assert!(r.json["logs"][2]["cost_usd"].is_null(), "unpriced is null");

    // Filters.
    let r = get(&h, "/api/logs?status=5xx").await;
    assert_eq!(request_ids(&r), ["req-2"]);
    let r = get(
        &h,
        &format!("/api/logs?virtual_key_id={key}&min_cost_usd=0.01&status=200"),
    )
    .await;
    assert_eq!(request_ids(&r), ["req-0", "req-1", "req-3", "req-4"]);
    let r = get(
        &h,
        "/api/logs?model=global.anthropic.claude-sonnet-4-6&provider=openai",
    )
    .await;
    assert!(request_ids(&r).is_empty());

    // Pages of two.
    let mut seen = Vec::new();
    let mut path = "/api/logs?limit=2".to_owned();
    loop {
        let r = get(&h, &path).await;
        let page = request_ids(&r);
        assert!(page.len() <= 2);
        seen.extend(page);
        match r.json["next_cursor"].as_str() {
            Some(c) => path = format!("/api/logs?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["req-0", "req-1", "req-2", "req-3", "req-4"]);

    // One request.
    let r = get(&h, "/api/logs/req-3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["request_id"], "req-3");
    let r = get(&h, "/api/logs/req-none").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    // Bad filters: 400 naming the field.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
        (
            "since=2026-01-01T00:00:00Z&until=2026-02-15T00:00:00Z",
            "since",
        ),
        ("virtual_key_id=app", "virtual_key_id"),
        ("team_id=1", "team_id"),
        ("customer_id=x", "customer_id"),
        ("user_id=x", "user_id"),
        ("status=ok", "status"),
        ("status=600", "status"),
        ("min_cost_usd=-1", "min_cost_usd"),
        ("min_cost_usd=lots", "min_cost_usd"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let r = get(&h, &format!("/api/logs?{query}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let r = get(&h, "/api/logs?sort=asc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // 31 days exactly is allowed.
    let r = get(
        &h,
        "/api/logs?since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00Z",
    )
    .await;
    assert!(request_ids(&r).is_empty());
}

/// The request ids `GET /api/logs{query}` lists for `role` (`None`: the admin token).
async fn list(o: &Org, role: Option<Role>, query: &str) -> Vec<String> {
    let path = format!("/api/logs{query}");
    let r = match role {
        Some(role) => o.as_role(role, Method::GET, &path, None).await,
        None => admin(&o.h, Method::GET, &path, None).await,
    };
    request_ids(&r)
}

#[tokio::test]
async fn members_see_their_key_and_team_admins_their_team() {
    let o = org().await;
    let member = o.personal_key(Role::Member).to_string();
    let lead = o.personal_key(Role::TeamAdmin).to_string();
    let boss = o.personal_key(Role::Admin).to_string();
    let mut records = Vec::new();
    for r in [
        record("r-key-a", &o.key_a, 1_000, 200),
        record("r-key-b", &o.key_b, 2_000, 200),
        record("r-member", &member, 3_000, 200),
        record("r-lead", &lead, 4_000, 200),
        record("r-admin", &boss, 5_000, 200),
        record("r-gone", &Uuid::new_v4().to_string(), 6_000, 200),
    ] {
        records.push(billed(&o.h, r).await);
    }
    o.h.cp.store().insert_usage(&records).await.unwrap();
    let everything = [
        "r-key-a", "r-key-b", "r-member", "r-lead", "r-admin", "r-gone",
    ];
    assert_eq!(list(&o, None, "").await, everything);
    assert_eq!(list(&o, Some(Role::Admin), "").await, everything);
    assert_eq!(list(&o, Some(Role::Viewer), "").await, everything);
    // The team admin: team a's keys (key-a and the personal keys of team a's members).
    assert_eq!(
        list(&o, Some(Role::TeamAdmin), "").await,
        ["r-key-a", "r-member", "r-lead"]
    );
    // The member: their personal key only, whatever the filter asks for.
    assert_eq!(list(&o, Some(Role::Member), "").await, ["r-member"]);
    let other = format!("?virtual_key_id={}", o.key_a);
    assert!(list(&o, Some(Role::Member), &other).await.is_empty());
    let team = format!("?team_id={}", o.team_a);
    assert_eq!(list(&o, Some(Role::Member), &team).await, ["r-member"]);
    assert_eq!(
        list(&o, None, &team).await,
        ["r-key-a", "r-member", "r-lead"],
        "billed to team a"
    );

    // The member's own entry names them.
    let r = o
        .as_role(Role::Member, Method::GET, "/api/logs/r-member", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["user"]["user_name"], "mia@example.com");
    assert_eq!(r.json["team_id"], o.team_a.as_str());

    // Details outside the scope are 404s, like unknown ids.
    for (role, id, status) in [
        (Role::Member, "r-key-a", StatusCode::NOT_FOUND),
        (Role::Member, "r-lead", StatusCode::NOT_FOUND),
        (Role::TeamAdmin, "r-key-b", StatusCode::NOT_FOUND),
        (Role::TeamAdmin, "r-gone", StatusCode::NOT_FOUND),
        (Role::TeamAdmin, "r-member", StatusCode::OK),
        (Role::Viewer, "r-gone", StatusCode::OK),
        (Role::Admin, "r-key-b", StatusCode::OK),
    ] {
        let r = o
            .as_role(role, Method::GET, &format!("/api/logs/{id}"), None)
            .await;
        assert_eq!(r.status, status, "{role:?} {id}: {}", r.text);
        if status == StatusCode::NOT_FOUND {
            assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
        }
    }

    // key-a moves to team b: its past request stays team a's, its next one is team b's.
    let r = admin(
        &o.h,
        Method::PUT,
        &format!("/api/virtual-keys/{}", o.key_a),
        Some(json!({"team_id": o.team_b})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let later = billed(&o.h, record("r-key-a-later", &o.key_a, 500, 200)).await;
    o.h.cp.store().insert_usage(&[later]).await.unwrap();
    assert_eq!(
        list(&o, Some(Role::TeamAdmin), "").await,
        ["r-key-a", "r-member", "r-lead"]
    );
    let team_b = format!("?team_id={}", o.team_b);
    assert_eq!(list(&o, None, &team_b).await, ["r-key-a-later", "r-key-b"]);
}

//! The governance model through the admin API: the walkthrough's `monthly_budget` shape, the full
//! model, teams and customers, partial updates that keep budgets, and 400s naming the field.

use super::*;

/// Creates the `bedrock` provider and one key; returns the key's id.
async fn bedrock_with_a_key(h: &Harness) -> String {
    let r = post(h, "/api/providers", json!({"provider": "bedrock"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = post(
        h,
        "/api/providers/bedrock/keys",
        json!({"name": "k", "models": ["*"], "weight": 1.0,
               "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                   "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn governance_model(h: &Harness) {
    let key_id = bedrock_with_a_key(h).await;

    // The walkthrough, as pasted: a calendar-aligned 1M budget and one provider config.
    let r = post(
        h,
        "/api/virtual-keys",
        json!({"name": "engineering-team", "monthly_budget": 500, "provider": "bedrock"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.json["value"].as_str().unwrap().starts_with("sk-tg-"));
    assert_eq!(r.json["monthly_budget"], 500.0);
    assert_eq!(r.json["budgets"][0]["max_limit"], 500.0);
    assert_eq!(r.json["budgets"][0]["reset_duration"], "1M");
    assert_eq!(r.json["budgets"][0]["calendar_aligned"], true);
    assert_eq!(r.json["providers"], json!(["bedrock"]));
    assert_eq!(
        r.json["provider_configs"],
        json!([{"provider": "bedrock", "weight": 1.0, "allowed_models": ["*"], "key_ids": ["*"],
                "budgets": [], "rate_limit": null, "max_concurrent": null}])
    );
    assert_eq!(r.json["fail_open"], false);
    let walk_id = r.json["id"].as_str().unwrap().to_owned();
    let budget_id = r.json["budgets"][0]["id"].clone();
    let snap = current(h);
    let vk = snap.virtual_keys.iter().find(|v| v.id == walk_id).unwrap();
    let limits = vk.limits.as_ref().unwrap();
    assert_eq!(limits.budgets[0].max_limit_nano_usd, 500_000_000_000);
    assert_eq!(vk.provider_configs[0].provider, "bedrock");

    // A customer and a team under it.
    let r = post(
        h,
        "/api/governance/customers",
        json!({"name": "acme", "budgets": [{"max_limit": 1000, "reset_duration": "1M", "calendar_aligned": true}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let customer = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        h,
        "/api/teams",
        json!({"name": "platform", "customer_id": customer,
               "rate_limit": {"request_max_limit": 600, "request_reset_duration": "1m"},
               "max_concurrent": 50}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["rate_limit"]["request_max_limit"], 600);
    assert_eq!(r.json["customer_id"], json!(customer));
    let team = r.json["id"].as_str().unwrap().to_owned();

    // The full model.
    let r = post(
        h,
        "/api/governance/virtual-keys",
        json!({
            "name": "ci-bot",
            "provider_configs": [{
                "provider": "bedrock", "weight": 1,
                "allowed_models": ["claude-sonnet-*", "regex:^claude-haiku-4.*"],
                "key_ids": [key_id],
                "budgets": [{"max_limit": 5, "reset_duration": "1d"}],
                "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "1h"}
            }],
            "budgets": [{"max_limit": 1, "reset_duration": "1M", "calendar_aligned": true},
                        {"max_limit": 0.25, "reset_duration": "1d"}],
            "rate_limit": {"request_max_limit": 60, "request_reset_duration": "1m"},
            "max_concurrent": 4,
            "team_id": team,
            "expires_at": "2099-01-01T00:00:00Z",
            "fail_open": true
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ci = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json["monthly_budget"], 1.0);
    assert_eq!(r.json["budgets"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["provider_configs"][0]["key_ids"], json!([key_id]));
    assert_eq!(r.json["expires_at"], "2099-01-01T00:00:00Z");
    let snap = current(h);
    let vk = snap.virtual_keys.iter().find(|v| v.id == ci).unwrap();
    assert_eq!(vk.team_id, team);
    assert!(vk.fail_open);
    assert_eq!(vk.limits.as_ref().unwrap().max_concurrent, 4);
    assert_eq!(vk.provider_configs[0].allowed_models.len(), 2);
    assert_eq!(snap.teams.len(), 1);
    assert_eq!(snap.teams[0].customer_id, customer);
    assert_eq!(snap.customers.len(), 1);

    // PUT is partial: raising the budget keeps its id; other fields stay.
    let path = format!("/api/virtual-keys/{walk_id}");
    let r = put(h, &path, json!({"monthly_budget": 750})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["budgets"][0]["id"], budget_id);
    assert_eq!(r.json["budgets"][0]["max_limit"], 750.0);
    assert_eq!(r.json["providers"], json!(["bedrock"]));
    let r = put(
        h,
        &path,
        json!({"rate_limit": {"request_max_limit": 10, "request_reset_duration": "1m"}}),
    )
    .await;
    assert_eq!(r.json["rate_limit"]["request_max_limit"], 10);
    assert_eq!(r.json["monthly_budget"], 750.0, "untouched");
    let r = put(h, &path, json!({"rate_limit": null, "monthly_budget": 0})).await;
    assert_eq!(
        (r.json["rate_limit"].clone(), r.json["budgets"].clone()),
        (Value::Null, json!([]))
    );
    // A listed key is accepted back as it is.
    let listed = get(h, &format!("/api/virtual-keys/{ci}")).await;
    let r = put(h, &format!("/api/virtual-keys/{ci}"), listed.json.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["budgets"], listed.json["budgets"]);
    assert_eq!(r.json["provider_configs"], listed.json["provider_configs"]);

    // Membership rules.
    let r = put(
        h,
        &format!("/api/virtual-keys/{ci}"),
        json!({"customer_id": customer}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("customer_id"),
    );
    let r = put(
        h,
        &format!("/api/virtual-keys/{ci}"),
        json!({"customer_id": customer, "team_id": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = delete(h, &format!("/api/customers/{customer}")).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);
    let r = delete(h, &format!("/api/teams/{team}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = put(
        h,
        &format!("/api/virtual-keys/{ci}"),
        json!({"customer_id": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = delete(h, &format!("/api/governance/customers/{customer}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(current(h).customers.is_empty());

    // Team and customer updates keep their budgets' identity too.
    let r = post(
        h,
        "/api/customers",
        json!({"name": "globex", "budgets": [{"max_limit": 10, "reset_duration": "1w"}]}),
    )
    .await;
    let c = r.json["id"].as_str().unwrap().to_owned();
    let id = r.json["budgets"][0]["id"].clone();
    let r = put(
        h,
        &format!("/api/customers/{c}"),
        json!({"budgets": [{"max_limit": 20, "reset_duration": "1w"}], "max_concurrent": 9}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.json["budgets"][0]["id"].clone(),
            r.json["max_concurrent"].clone()
        ),
        (id, json!(9))
    );
}

#[tokio::test]
async fn governance_model_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    governance_model(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_model_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        governance_model(&h).await;
    })
    .await;
}

/// Every rule of the model refuses bad input with a 400 naming the field.
#[tokio::test]
async fn bad_governance_input_names_the_field() {
    let h = sqlite_harness(loopback_auth()).await;
    let key_id = bedrock_with_a_key(&h).await;
    let r = post(&h, "/api/providers", json!({"provider": "anthropic"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let team = post(&h, "/api/teams", json!({"name": "t"})).await.json["id"].clone();
    let customer = post(&h, "/api/customers", json!({"name": "c"})).await.json["id"].clone();
    let base = || json!({"name": "k", "provider": "bedrock"});
    let with = |extra: Value| {
        let mut b = base();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (
            json!({"budgets": [{"max_limit": -1, "reset_duration": "1d"}]}),
            "budgets[0].max_limit",
        ),
        (
            json!({"budgets": [{"max_limit": 1, "reset_duration": "2d"}]}),
            "budgets[0].reset_duration",
        ),
        (
            json!({"budgets": [{"max_limit": 1, "reset_duration": "1d"}, {"max_limit": 2, "reset_duration": "1d"}]}),
            "budgets[1].reset_duration",
        ),
        (json!({"monthly_budget": -5}), "monthly_budget"),
        (
            json!({"monthly_budget": 5, "budgets": [{"max_limit": 1, "reset_duration": "1d"}]}),
            "monthly_budget",
        ),
        (
            json!({"rate_limit": {"request_max_limit": 5}}),
            "rate_limit.request_reset_duration",
        ),
        (
            json!({"rate_limit": {"request_max_limit": -1, "request_reset_duration": "1m"}}),
            "rate_limit.request_max_limit",
        ),
        (json!({"max_concurrent": 0}), "max_concurrent"),
        (
            json!({"max_concurrent": 2_147_483_648u64}),
            "max_concurrent",
        ),
        (
            json!({"rate_limit": {"token_max_limit": 9_223_372_036_854_775_808u64, "token_reset_duration": "1h"}}),
            "rate_limit.token_max_limit",
        ),
        (
            json!({"team_id": team, "customer_id": customer}),
            "customer_id",
        ),
        (
            json!({"team_id": "00000000-0000-4000-8000-000000000000"}),
            "team_id",
        ),
        (
            json!({"customer_id": "00000000-0000-4000-8000-000000000000"}),
            "customer_id",
        ),
        (json!({"expires_at": "2020-01-01T00:00:00Z"}), "expires_at"),
        (json!({"expires_at": "next year"}), "expires_at"),
        (json!({"fallbacks": ["claude-sonnet-4-6"]}), "fallbacks[0]"),
        (
            json!({"fallbacks": ["anthropic/claude-sonnet-4-6", "bad model\n"]}),
            "fallbacks[1]",
        ),
        (json!({"fallbacks": vec!["anthropic/x"; 9]}), "fallbacks"),
    ];
    for (extra, field) in cases {
        let r = post(&h, "/api/virtual-keys", with(extra.clone())).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let config_cases = [
        (
            json!({"provider": "bedrock", "allowed_models": ["regex:claude-("]}),
            "provider_configs[0].allowed_models[0]",
        ),
        (
            json!({"provider": "bedrock", "key_ids": ["00000000-0000-4000-8000-000000000000"]}),
            "provider_configs[0].key_ids[0]",
        ),
        (
            json!({"provider": "anthropic", "key_ids": [key_id]}),
            "provider_configs[0].key_ids[0]",
        ),
        (json!({"provider": "ghost"}), "provider_configs[0].provider"),
        (
            json!({"provider": "bedrock", "weight": -1}),
            "provider_configs[0].weight",
        ),
        (
            json!({"provider": "bedrock", "budgets": [{"max_limit": "inf", "reset_duration": "1d"}]}),
            "provider_configs[0].budgets[0].max_limit",
        ),
    ];
    for (config, field) in config_cases {
        let r = post(
            &h,
            "/api/virtual-keys",
            json!({"name": "k", "provider_configs": [config]}),
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "k", "provider": "ghost"}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("provider"),
    );
    let r = post(
        &h,
        "/api/teams",
        json!({"name": "t2", "customer_id": "00000000-0000-4000-8000-000000000000"}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("customer_id"),
    );
    let r = post(
        &h,
        "/api/customers",
        json!({"name": "c2", "budgets": [{"max_limit": 1}]}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("budgets[0].reset_duration"),
    );
    let r = post(&h, "/api/teams", json!({"name": "t"})).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);
    assert!(
        get(&h, "/api/virtual-keys").await.json["count"] == 0,
        "nothing was created"
    );
}

/// `/api/pricing`: the shipped table with its sources, overrides that are validated field by
/// field, published in the snapshot in their order, replaced and deleted.
#[tokio::test]
async fn pricing_overrides() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = get(&h, "/api/pricing").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["overrides"], json!([]));
    let shipped = r.json["shipped"].as_array().unwrap();
    assert!(shipped.len() > 10);
    assert!(shipped.iter().all(|e| {
        e["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://"))
    }));
    let sonnet = shipped
        .iter()
        .find(|e| e["provider"] == "bedrock" && e["models"][0] == "anthropic.claude-sonnet-4-6*")
        .unwrap();
    assert_eq!(
        (sonnet["input"].clone(), sonnet["output"].clone()),
        (json!(3.0), json!(15.0))
    );

    let discount = json!({"provider": "bedrock", "models": ["anthropic.claude-sonnet-4-6*"],
        "input": 2.7, "output": 13.5, "cache_write_5m": 3.375, "cache_write_1h": 5.4,
        "cache_read": 0.27, "regional_premium_percent": 10, "source": "contract 2026-11"});
    let r = post(&h, "/api/pricing", discount.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json["output"], 13.5);
    let snap = current(&h);
    assert_eq!(snap.price_overrides.len(), 1);
    assert_eq!(snap.price_overrides[0].id, id);
    assert_eq!(snap.price_overrides[0].rates.as_ref().unwrap().input, 2_700);

    // A listed override goes back without its id and times; a changed one replaces the entry.
    let mut listed = get(&h, "/api/pricing").await.json["overrides"][0].clone();
    for read_only in ["id", "created_at", "updated_at"] {
        listed.as_object_mut().unwrap().remove(read_only);
    }
    let r = put(&h, &format!("/api/pricing/{id}"), listed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut cheaper = discount.clone();
    cheaper["input"] = json!(2.5);
    let r = put(&h, &format!("/api/pricing/{id}"), cheaper).await;
    assert_eq!(r.json["input"], 2.5);
    assert_eq!(
        current(&h).price_overrides[0].rates.as_ref().unwrap().input,
        2_500
    );

    for (change, field) in [
        (json!({"provider": "azure"}), "provider"),
        (json!({"models": []}), "models"),
        (json!({"input": -1}), "input"),
        (json!({"output": 1.23456}), "output"),
        (
            json!({"regional_premium_percent": 150}),
            "regional_premium_percent",
        ),
        (
            json!({"long_context": {"above_input_tokens": 0, "input": 1, "output": 1,
                   "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}}),
            "long_context.above_input_tokens",
        ),
        (
            json!({"long_context": {"above_input_tokens": 9_223_372_036_854_775_808u64, "input": 1,
                   "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}}),
            "long_context.above_input_tokens",
        ),
        (json!({"surprise": 1}), "surprise"),
    ] {
        let mut bad = discount.clone();
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let r = post(&h, "/api/pricing", bad).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let missing = "/api/pricing/00000000-0000-4000-8000-000000000000";
    assert_error(
        &put(&h, missing, discount).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let r = delete(&h, &format!("/api/pricing/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(current(&h).price_overrides.is_empty());
    assert_error(
        &delete(&h, missing).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

fn record(
    id: &str,
    vk: &str,
    started_at_unix_ms: i64,
    cost: Option<u64>,
) -> tollgate_proto::usage::v1::UsageRecord {
    tollgate_proto::usage::v1::UsageRecord {
        request_id: id.into(),
        virtual_key_id: vk.into(),
        provider: "bedrock".into(),
        input_tokens: 100,
        output_tokens: 20,
        status: 200,
        started_at_unix_ms,
        cost_nano_usd: cost,
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Usage against limits comes from the stored records of the current windows, per key and per
/// team; an admin budget reset stops counting what was spent before it.
#[tokio::test]
async fn usage_against_limits_and_budget_resets() {
    let h = sqlite_harness(loopback_auth()).await;
    bedrock_with_a_key(&h).await;
    let team = post(
        &h,
        "/api/teams",
        json!({"name": "t",
        "budgets": [{"max_limit": 10, "reset_duration": "1d", "calendar_aligned": true}]}),
    )
    .await
    .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut keys = Vec::new();
    for name in ["a", "b"] {
        let r = post(
            &h,
            "/api/virtual-keys",
            json!({"name": name, "provider": "bedrock", "team_id": team,
                   "budgets": [{"max_limit": 1, "reset_duration": "1M", "calendar_aligned": true}],
                   "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h",
                                  "token_max_limit": 5000, "token_reset_duration": "1h"}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        keys.push((
            r.json["id"].as_str().unwrap().to_owned(),
            r.json["budgets"][0]["id"].as_str().unwrap().to_owned(),
        ));
    }
    let (a, a_budget) = &keys[0];
    let (b, _) = &keys[1];
    let t = now_ms();
    let stored =
        h.cp.ingest_usage(&[
            record("r1", a, t - 1_000, Some(250_000_000)),
            record("r2", a, t - 900, Some(150_000_000)),
            record("r3", a, t - 800, None),
            record("r4", b, t - 700, Some(1_000_000_000)),
            // Long before any current window: not counted.
            record("r5", a, t - 400 * 86_400_000, Some(9_000_000_000)),
        ])
        .await
        .unwrap();
    assert_eq!(stored, 5);
    // Requests refused by limits are rows of the key, not requests against its request limit.
    let refusals: Vec<tollgate_proto::usage::v1::UsageRecord> =
        tollgate_proto::usage::refusal::BY_LIMITS
            .iter()
            .enumerate()
            .map(|(i, class)| tollgate_proto::usage::v1::UsageRecord {
                input_tokens: 0,
                output_tokens: 0,
                status: 429,
                error_class: (*class).to_owned(),
                ..record(&format!("refused-{i}"), a, t - 600, Some(0))
            })
            .collect();
    assert_eq!(h.cp.ingest_usage(&refusals).await.unwrap(), 5);
    let r = get(&h, &format!("/api/virtual-keys/{a}/usage")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["budgets"][0]["spent_nano_usd"], 400_000_000);
    assert_eq!(r.json["budgets"][0]["remaining"], 0.6);
    assert_eq!(r.json["budgets"][0]["unpriced_requests"], 1);
    assert_eq!(r.json["requests"]["used"], 3);
    assert_eq!(r.json["tokens"]["used"], 360);
    assert!(
        r.json["budgets"][0]["resets_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    let r = get(&h, &format!("/api/teams/{team}/usage")).await;
    assert_eq!(
        (
            r.json["virtual_keys"].clone(),
            r.json["budgets"][0]["spent"].clone()
        ),
        (json!(2), json!(1.4))
    );

    // The reset: earlier spend stops counting; later spend counts.
    let r = post(
        &h,
        &format!("/api/virtual-keys/{a}/budgets/{a_budget}/reset"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let snap = current(&h);
    let vk = snap.virtual_keys.iter().find(|v| &v.id == a).unwrap();
    assert!(vk.limits.as_ref().unwrap().budgets[0].reset_at_unix_ms >= t);
    h.cp.ingest_usage(&[record("r6", a, now_ms() + 5, Some(70_000_000))])
        .await
        .unwrap();
    let r = get(&h, &format!("/api/virtual-keys/{a}/usage")).await;
    assert_eq!(r.json["budgets"][0]["spent_nano_usd"], 70_000_000);
    // Unknown budgets and keys.
    let r = post(
        &h,
        &format!("/api/virtual-keys/{a}/budgets/00000000-0000-4000-8000-000000000000/reset"),
        json!({}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("budget_id"),
    );
    let r = get(
        &h,
        "/api/customers/00000000-0000-4000-8000-000000000000/usage",
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

/// A key's fallback list is stored, shown, replaced by PUT (`[]` clears it) and sent to the
/// data planes.
#[tokio::test]
async fn a_keys_fallbacks_round_trip() {
    let h = sqlite_harness(loopback_auth()).await;
    bedrock_with_a_key(&h).await;
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "k", "provider": "bedrock",
               "fallbacks": ["anthropic/claude-sonnet-4-6", "bedrock/us.anthropic.claude-sonnet-4-6"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json["fallbacks"],
        json!([
            "anthropic/claude-sonnet-4-6",
            "bedrock/us.anthropic.claude-sonnet-4-6"
        ])
    );
    let id = r.json["id"].as_str().unwrap().to_owned();
    let snap = h.cp.snapshots().borrow().clone();
    let vk = snap.virtual_keys.iter().find(|v| v.id == id).unwrap();
    assert_eq!(vk.fallbacks.len(), 2);
    let r = put(
        &h,
        &format!("/api/virtual-keys/{id}"),
        json!({"fallbacks": ["anthropic/claude-haiku-4-5"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["fallbacks"], json!(["anthropic/claude-haiku-4-5"]));
    let r = put(
        &h,
        &format!("/api/virtual-keys/{id}"),
        json!({"name": "k2"}),
    )
    .await;
    assert_eq!(
        r.json["fallbacks"],
        json!(["anthropic/claude-haiku-4-5"]),
        "kept when not given"
    );
    let r = put(
        &h,
        &format!("/api/virtual-keys/{id}"),
        json!({"fallbacks": []}),
    )
    .await;
    assert_eq!(r.json["fallbacks"], json!([]));
}

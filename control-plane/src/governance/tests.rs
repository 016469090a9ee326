use time::macros::datetime;

use super::*;

fn budget(max_limit: f64, reset: &str, aligned: bool) -> BudgetInput {
    BudgetInput {
        id: None,
        max_limit,
        reset_duration: serde_json::from_value(serde_json::json!(reset)).expect("a duration"),
        calendar_aligned: aligned,
    }
}

fn field(e: ValidationError) -> String {
    e.field.expect("names a field")
}

const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

#[test]
fn budgets_are_exact_nano_dollars_and_one_per_duration() {
    let b = budgets(
        "budgets",
        &[budget(0.000001, "1M", true), budget(50.5, "1d", false)],
        &[],
        NOW,
    )
    .unwrap();
    assert_eq!(b[0].max_limit_nano_usd, 1_000);
    assert_eq!(b[1].max_limit_nano_usd, 50_500_000_000);
    assert_eq!(b[1].anchor_unix_ms, unix_ms(NOW));
    assert_ne!(b[0].id, b[1].id);

    let twice = budgets(
        "budgets",
        &[budget(1.0, "1d", false), budget(2.0, "1d", true)],
        &[],
        NOW,
    );
    assert_eq!(field(twice.unwrap_err()), "budgets[1].reset_duration");
    for bad in [-1.0, f64::NAN, f64::INFINITY, 0.0, 2e9] {
        let e = budgets("budgets", &[budget(bad, "1h", false)], &[], NOW).unwrap_err();
        assert_eq!(field(e), "budgets[0].max_limit", "{bad}");
    }
    // Unknown durations are refused when the JSON is read (the path names the field).
    let e = serde_json::from_value::<BudgetInput>(
        serde_json::json!({"max_limit": 1, "reset_duration": "2d"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant `2d`"), "{e}");
}

/// An update keeps a budget's identity and anchor when its period (and alignment) stays, so
/// spend is not forgotten; a changed alignment starts a new budget.
#[test]
fn budgets_keep_their_identity_across_updates() {
    let first = budgets("budgets", &[budget(10.0, "1M", false)], &[], NOW).unwrap();
    let later = NOW + time::Duration::days(3);
    let raised = budgets("budgets", &[budget(20.0, "1M", false)], &first, later).unwrap();
    assert_eq!(raised[0].id, first[0].id);
    assert_eq!(raised[0].anchor_unix_ms, first[0].anchor_unix_ms);
    assert_eq!(raised[0].max_limit_nano_usd, 20_000_000_000);
    let realigned = budgets("budgets", &[budget(20.0, "1M", true)], &first, later).unwrap();
    assert_ne!(realigned[0].id, first[0].id);
    assert_eq!(realigned[0].anchor_unix_ms, unix_ms(later));
    // By id, explicitly; an unknown id is an error naming it.
    let mut by_id = budget(5.0, "1M", false);
    by_id.id = Some(first[0].id);
    assert_eq!(
        budgets("b", &[by_id], &first, later).unwrap()[0].id,
        first[0].id
    );
    let mut unknown = budget(5.0, "1M", false);
    unknown.id = Some(Uuid::new_v4());
    assert_eq!(
        field(budgets("b", &[unknown], &first, later).unwrap_err()),
        "b[0].id"
    );
}

#[test]
fn rate_limits_need_their_durations() {
    let ok = RateLimit {
        request_max_limit: Some(60),
        request_reset_duration: Some(ResetDuration::Minute),
        ..RateLimit::default()
    };
    assert_eq!(rate_limit("rate_limit", &ok).unwrap(), Some(ok.clone()));
    assert_eq!(
        rate_limit("rate_limit", &RateLimit::default()).unwrap(),
        None
    );
    let cases = [
        (
            RateLimit {
                token_max_limit: Some(5),
                ..RateLimit::default()
            },
            "rate_limit.token_reset_duration",
        ),
        (
            RateLimit {
                request_reset_duration: Some(ResetDuration::Hour),
                ..RateLimit::default()
            },
            "rate_limit.request_max_limit",
        ),
        (
            RateLimit {
                request_max_limit: Some(0),
                request_reset_duration: Some(ResetDuration::Hour),
                ..RateLimit::default()
            },
            "rate_limit.request_max_limit",
        ),
    ];
    for (r, want) in cases {
        assert_eq!(field(rate_limit("rate_limit", &r).unwrap_err()), want);
    }
    assert_eq!(
        field(max_concurrent("max_concurrent", Some(0)).unwrap_err()),
        "max_concurrent"
    );
    assert_eq!(max_concurrent("max_concurrent", Some(4)).unwrap(), Some(4));
}

fn config(json: serde_json::Value) -> ProviderConfigInput {
    serde_json::from_value(json).expect("a provider config")
}

#[test]
fn provider_configs_check_patterns_keys_and_weights() {
    let key = Uuid::new_v4();
    let got = provider_configs(
        &[
            config(serde_json::json!({"provider": "bedrock"})),
            config(serde_json::json!({
                "provider": "anthropic", "weight": 0.5,
                "allowed_models": ["claude-*", "regex:^claude-(sonnet|haiku)-4.*"],
                "key_ids": [key.to_string(), key.to_string()],
                "budgets": [{"max_limit": 5, "reset_duration": "1d"}],
                "rate_limit": {"request_max_limit": 10, "request_reset_duration": "1m"}
            })),
        ],
        &[],
        NOW,
    )
    .unwrap();
    assert_eq!(
        (
            got[0].weight,
            got[0].allowed_models.len(),
            got[0].key_ids.len()
        ),
        (1.0, 0, 0)
    );
    assert_eq!(got[1].key_ids, vec![key], "duplicates folded");
    assert_eq!(got[1].limits.budgets[0].max_limit_nano_usd, 5_000_000_000);
    let view = ProviderConfigView::from(&got[0]);
    assert_eq!(
        (view.allowed_models, view.key_ids),
        (vec!["*".to_owned()], vec!["*".to_owned()])
    );

    let bad = [
        (
            serde_json::json!({"provider": "a", "allowed_models": ["regex:claude-("]}),
            "provider_configs[0].allowed_models[0]",
        ),
        (
            serde_json::json!({"provider": "a", "allowed_models": []}),
            "provider_configs[0].allowed_models",
        ),
        (
            serde_json::json!({"provider": "a", "key_ids": ["nope"]}),
            "provider_configs[0].key_ids[0]",
        ),
        (
            serde_json::json!({"provider": "a", "key_ids": []}),
            "provider_configs[0].key_ids",
        ),
        (
            serde_json::json!({"provider": "a", "weight": 0}),
            "provider_configs[0].weight",
        ),
        (
            serde_json::json!({"provider": "a b"}),
            "provider_configs[0].provider",
        ),
        (
            serde_json::json!({"provider": "a", "budgets": [{"max_limit": -1, "reset_duration": "1d"}]}),
            "provider_configs[0].budgets[0].max_limit",
        ),
        (
            serde_json::json!({"provider": "a", "rate_limit": {"token_max_limit": 1}}),
            "provider_configs[0].rate_limit.token_reset_duration",
        ),
    ];
    for (json, want) in bad {
        let e = provider_configs(&[config(json.clone())], &[], NOW).unwrap_err();
        assert_eq!(field(e), want, "{json}");
    }
    let twice = provider_configs(
        &[
            config(serde_json::json!({"provider": "a"})),
            config(serde_json::json!({"provider": "a"})),
        ],
        &[],
        NOW,
    );
    assert_eq!(field(twice.unwrap_err()), "provider_configs[1].provider");
}

#[test]
fn expiry_must_be_a_future_rfc3339_time() {
    assert_eq!(
        expires_at("2027-01-01T00:00:00Z", NOW).unwrap(),
        datetime!(2027-01-01 0:00 UTC)
    );
    assert_eq!(
        field(expires_at("2026-01-01T00:00:00Z", NOW).unwrap_err()),
        "expires_at"
    );
    assert_eq!(
        field(expires_at("tomorrow", NOW).unwrap_err()),
        "expires_at"
    );
}

#[test]
fn limits_travel_in_the_snapshot_as_stored() {
    let stored = Limits {
        budgets: budgets("budgets", &[budget(1.5, "1w", true)], &[], NOW).unwrap(),
        rate_limit: Some(RateLimit {
            token_max_limit: Some(1000),
            token_reset_duration: Some(ResetDuration::Hour),
            ..RateLimit::default()
        }),
        max_concurrent: Some(3),
    };
    let pb = limits_to_pb(&stored);
    assert_eq!(pb.budgets[0].max_limit_nano_usd, 1_500_000_000);
    assert_eq!(pb.budgets[0].reset, pb::ResetPeriod::Week as i32);
    assert!(pb.budgets[0].calendar_aligned);
    assert_eq!(pb.budgets[0].id, stored.budgets[0].id.to_string());
    let r = pb.rate_limit.unwrap();
    assert_eq!(
        (r.token_max_limit, r.token_reset),
        (1000, pb::ResetPeriod::Hour as i32)
    );
    assert_eq!(
        (r.request_max_limit, r.request_reset),
        (0, pb::ResetPeriod::Unspecified as i32)
    );
    assert_eq!(pb.max_concurrent, 3);
    // The stored JSON round-trips.
    let json = serde_json::to_string(&stored).unwrap();
    assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), stored);
}

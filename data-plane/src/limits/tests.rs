//! Engine tests: the hierarchy, all-or-nothing admission, budgets with estimates and
//! settlement, the unpriced rule, concurrency, windows rolling over, admin resets, state across
//! `compile_after`, threads, allowances and fail-open, reports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use tollgate_proto::config::v1 as pb;
use tollgate_proto::pricing::Cost;

use super::*;

const NOW: &str = "2026-03-15T10:00:00Z";

fn now() -> i64 {
    ms(NOW)
}

fn budget(id: &str, limit: u64, reset: pb::ResetPeriod) -> pb::Budget {
    pb::Budget {
        id: id.into(),
        max_limit_nano_usd: limit,
        reset: reset as i32,
        calendar_aligned: true,
        ..Default::default()
    }
}

fn with_budgets(budgets: Vec<pb::Budget>) -> pb::Limits {
    pb::Limits {
        budgets,
        ..Default::default()
    }
}

fn requests(limit: u64, reset: pb::ResetPeriod) -> pb::Limits {
    pb::Limits {
        rate_limit: Some(pb::RateLimit {
            request_max_limit: limit,
            request_reset: reset as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tokens(limit: u64, reset: pb::ResetPeriod) -> pb::Limits {
    pb::Limits {
        rate_limit: Some(pb::RateLimit {
            token_max_limit: limit,
            token_reset: reset as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn concurrent(max: u32) -> pb::Limits {
    pb::Limits {
        max_concurrent: max,
        ..Default::default()
    }
}

fn key(id: &str, limits: Option<pb::Limits>) -> pb::VirtualKey {
    pb::VirtualKey {
        id: id.into(),
        name: format!("{id}-name"),
        key_sha256: vec![0; 32].into(),
        active: true,
        limits,
        ..Default::default()
    }
}

fn provider_config(provider: &str, limits: Option<pb::Limits>) -> pb::ProviderConfig {
    pb::ProviderConfig {
        provider: provider.into(),
        limits,
        ..Default::default()
    }
}

fn team(id: &str, customer: &str, limits: Option<pb::Limits>) -> pb::Team {
    pb::Team {
        id: id.into(),
        name: format!("{id}-name"),
        customer_id: customer.into(),
        limits,
    }
}

fn customer(id: &str, limits: Option<pb::Limits>) -> pb::Customer {
    pb::Customer {
        id: id.into(),
        name: format!("{id}-name"),
        limits,
    }
}

fn snapshot(
    keys: Vec<pb::VirtualKey>,
    teams: Vec<pb::Team>,
    customers: Vec<pb::Customer>,
) -> pb::Snapshot {
    pb::Snapshot {
        version: 1,
        virtual_keys: keys,
        teams,
        customers,
        ..Default::default()
    }
}

fn engine(s: &pb::Snapshot) -> Engine {
    Engine::compile(s).expect("limits compile")
}

fn vk(id: &str) -> LevelId {
    LevelId::VirtualKey(id.into())
}

fn budget_cell(level: LevelId, id: &str, period: Period) -> CellKey {
    CellKey {
        level,
        counter: CounterId::Budget(id.into(), WindowSpec::calendar(period)),
    }
}

fn request_cell(level: LevelId, period: Period) -> CellKey {
    CellKey {
        level,
        counter: CounterId::Requests(WindowSpec::calendar(period)),
    }
}

fn used(e: &Engine, cell: &CellKey, at: i64) -> (u64, u64) {
    let u = e.usage(cell, at).expect("cell exists");
    (u.used, u.reserved)
}

fn priced(n: u64) -> Option<Cost> {
    Some(Cost(n))
}

/// The chain provider config → key → team → customer, each with a request limit of 100 except
/// the one under test, which allows 1.
fn chain_with_one_tight(tight: usize) -> pb::Snapshot {
    let limit = |i: usize| {
        Some(requests(
            if i == tight { 1 } else { 100 },
            pb::ResetPeriod::Hour,
        ))
    };
    let mut k = key("k", limit(1));
    k.team_id = "t".into();
    k.provider_configs = vec![provider_config("bedrock", limit(0))];
    snapshot(
        vec![k],
        vec![team("t", "c", limit(2))],
        vec![customer("c", limit(3))],
    )
}

#[test]
fn every_level_can_refuse_and_is_named() {
    let expected = [
        LevelId::ProviderConfig {
            virtual_key_id: "k".into(),
            provider: "bedrock".into(),
        },
        vk("k"),
        LevelId::Team("t".into()),
        LevelId::Customer("c".into()),
    ];
    let names = ["bedrock", "k-name", "t-name", "c-name"];
    for (tight, level) in expected.iter().enumerate() {
        let e = engine(&chain_with_one_tight(tight));
        e.admit("k", "bedrock", priced(1), 10, now())
            .expect("first request fits everywhere")
            .settle(Some(1), 10);
        let refusal = e
            .admit("k", "bedrock", priced(1), 10, now())
            .expect_err("second is refused");
        assert_eq!(&refusal.level, level);
        assert_eq!(&*refusal.level_name, names[tight]);
        assert_eq!(
            refusal.exhausted,
            Exhausted::Requests {
                period: Period::Hour,
                limit: 1,
                resets_at_unix_ms: ms("2026-03-15T11:00:00Z"),
            }
        );
        // All or nothing: every level still counts exactly the one admitted request.
        for l in &expected {
            assert_eq!(
                used(&e, &request_cell(l.clone(), Period::Hour), now()).0,
                1,
                "{l} after a refusal at {level}"
            );
        }
    }
}

#[test]
fn a_provider_config_limits_only_its_provider() {
    let e = engine(&chain_with_one_tight(0));
    let _held = e
        .admit("k", "bedrock", priced(1), 1, now())
        .expect("admitted");
    assert!(e.admit("k", "bedrock", priced(1), 1, now()).is_err());
    // Anthropic has no config: key, team and customer limits only.
    drop(
        e.admit("k", "anthropic", priced(1), 1, now())
            .expect("another provider is not limited by the bedrock config"),
    );
}

#[test]
fn refusal_rolls_back_reservations_and_slots_of_earlier_levels() {
    let key_limits = pb::Limits {
        budgets: vec![budget("kb", 10_000, pb::ResetPeriod::Day)],
        max_concurrent: 5,
        ..tokens(1_000_000, pb::ResetPeriod::Minute)
    };
    let mut k = key("k", Some(key_limits));
    k.customer_id = "c".into();
    let s = snapshot(
        vec![k],
        vec![],
        vec![customer(
            "c",
            Some(with_budgets(vec![budget(
                "cb",
                500,
                pb::ResetPeriod::Month,
            )])),
        )],
    );
    let e = engine(&s);
    let r = e
        .admit("k", "p", priced(600), 1000, now())
        .expect_err("the customer's budget is smaller");
    assert_eq!(r.level, LevelId::Customer("c".into()));
    assert!(
        matches!(r.exhausted, Exhausted::Budget { ref budget_id, period: Period::Month, limit_nano_usd: 500, .. } if &**budget_id == "cb")
    );
    assert_eq!(r.resets_at_unix_ms(), Some(ms("2026-04-01T00:00:00Z")));
    assert_eq!(
        used(&e, &budget_cell(vk("k"), "kb", Period::Day), now()),
        (0, 0)
    );
    let tok = CellKey {
        level: vk("k"),
        counter: CounterId::Tokens(WindowSpec::calendar(Period::Minute)),
    };
    assert_eq!(used(&e, &tok, now()), (0, 0));
    assert_eq!(e.in_flight(&vk("k")), Some(0));
}

#[test]
fn a_team_inherits_its_customer_and_shares_it_with_direct_keys() {
    let mut in_team = key("a", None);
    in_team.team_id = "t".into();
    let mut direct = key("b", None);
    direct.customer_id = "c".into();
    let s = snapshot(
        vec![in_team, direct],
        vec![team("t", "c", None)],
        vec![customer("c", Some(concurrent(1)))],
    );
    let e = engine(&s);
    let held = e.admit("a", "p", None, 0, now()).expect("first in flight");
    let r = e
        .admit("b", "p", None, 0, now())
        .expect_err("the customer allows one in flight");
    assert_eq!(r.level, LevelId::Customer("c".into()));
    assert_eq!(r.exhausted, Exhausted::Concurrency { limit: 1 });
    assert_eq!(r.resets_at_unix_ms(), None);
    drop(held);
    drop(
        e.admit("b", "p", None, 0, now())
            .expect("the slot came back"),
    );
}

#[test]
fn budget_estimates_then_actual_costs() {
    let s = snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget("b", 1_000, pb::ResetPeriod::Day)])),
        )],
        vec![],
        vec![],
    );
    let e = engine(&s);
    let cell = budget_cell(vk("k"), "b", Period::Day);
    let first = e
        .admit("k", "p", priced(600), 0, now())
        .expect("600 of 1000");
    assert_eq!(used(&e, &cell, now()), (0, 600));
    let r = e
        .admit("k", "p", priced(401), 0, now())
        .expect_err("600 + 401 > 1000");
    assert!(matches!(r.exhausted, Exhausted::Budget { .. }));
    // Lower actual cost: room comes back.
    first.settle(Some(300), 0);
    assert_eq!(used(&e, &cell, now()), (300, 0));
    // Exactly up to the limit is admitted (`<=`).
    let second = e
        .admit("k", "p", priced(700), 0, now())
        .expect("300 + 700 = 1000");
    // Higher actual cost: the budget goes over and refuses everything until it resets.
    second.settle(Some(900), 0);
    assert_eq!(used(&e, &cell, now()), (1_200, 0));
    let r = e
        .admit("k", "p", priced(1), 0, now())
        .expect_err("over budget");
    assert_eq!(r.resets_at_unix_ms(), Some(ms("2026-03-16T00:00:00Z")));
    assert_eq!(r.retry_after_secs(now()), Some(14 * 3600));
    drop(
        e.admit("k", "p", priced(1), 0, ms("2026-03-16T00:00:00Z"))
            .expect("a new day"),
    );
}

#[test]
fn a_used_up_budget_refuses_even_a_zero_estimate() {
    let s = snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget("b", 100, pb::ResetPeriod::Day)])),
        )],
        vec![],
        vec![],
    );
    let e = engine(&s);
    e.admit("k", "p", priced(100), 0, now())
        .expect("exactly the budget")
        .settle(Some(100), 0);
    assert!(e.admit("k", "p", priced(0), 0, now()).is_err());
}

#[test]
fn unpriced_models_are_refused_on_chains_with_a_budget() {
    let mut with_budget = key("b", None);
    with_budget.team_id = "t".into();
    let mut provider_budget = key("p", None);
    provider_budget.provider_configs = vec![provider_config(
        "bedrock",
        Some(with_budgets(vec![budget(
            "pb",
            1_000,
            pb::ResetPeriod::Day,
        )])),
    )];
    let free = key("f", Some(requests(10, pb::ResetPeriod::Minute)));
    let s = snapshot(
        vec![with_budget, provider_budget, free],
        vec![team(
            "t",
            "",
            Some(with_budgets(vec![budget(
                "tb",
                1_000,
                pb::ResetPeriod::Month,
            )])),
        )],
        vec![],
    );
    let e = engine(&s);
    let r = e
        .admit("b", "x", None, 10, now())
        .expect_err("team budget, no price");
    assert_eq!(r.level, LevelId::Team("t".into()));
    assert_eq!(
        r.exhausted,
        Exhausted::Unpriced {
            budget_id: "tb".into()
        }
    );
    assert!(
        r.to_string()
            .starts_with("model has no price; keys with a budget can only use priced models"),
        "{r}"
    );
    assert_eq!(
        used(
            &e,
            &budget_cell(LevelId::Team("t".into()), "tb", Period::Month),
            now()
        ),
        (0, 0)
    );
    // A budget on the bedrock config only: unpriced bedrock refused, other providers admitted.
    assert!(matches!(
        e.admit("p", "bedrock", None, 0, now())
            .expect_err("config budget")
            .exhausted,
        Exhausted::Unpriced { .. }
    ));
    drop(
        e.admit("p", "anthropic", None, 0, now())
            .expect("no budget on this chain"),
    );
    // No budget at all: admitted and counted.
    drop(e.admit("f", "x", None, 0, now()).expect("no budget"));
    assert_eq!(used(&e, &request_cell(vk("f"), Period::Minute), now()).0, 1);
}

#[test]
fn settling_unpriced_keeps_the_estimate() {
    let s = snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget("b", 1_000, pb::ResetPeriod::Day)])),
        )],
        vec![],
        vec![],
    );
    let e = engine(&s);
    e.admit("k", "p", priced(250), 0, now())
        .expect("fits")
        .settle(None, 0);
    assert_eq!(
        used(&e, &budget_cell(vk("k"), "b", Period::Day), now()),
        (250, 0)
    );
}

#[test]
fn dropping_a_reservation_releases_the_slot_and_keeps_the_request() {
    let limits = pb::Limits {
        max_concurrent: 1,
        budgets: vec![budget("b", 1_000, pb::ResetPeriod::Day)],
        rate_limit: Some(pb::RateLimit {
            request_max_limit: 10,
            request_reset: pb::ResetPeriod::Minute as i32,
            token_max_limit: 1_000,
            token_reset: pb::ResetPeriod::Minute as i32,
        }),
    };
    let e = engine(&snapshot(vec![key("k", Some(limits))], vec![], vec![]));
    let held = e
        .admit("k", "p", priced(500), 800, now())
        .expect("admitted");
    assert_eq!(e.in_flight(&vk("k")), Some(1));
    assert!(matches!(
        e.admit("k", "p", priced(1), 1, now())
            .expect_err("one in flight")
            .exhausted,
        Exhausted::Concurrency { limit: 1 }
    ));
    drop(held);
    assert_eq!(e.in_flight(&vk("k")), Some(0));
    assert_eq!(
        used(&e, &budget_cell(vk("k"), "b", Period::Day), now()),
        (0, 0)
    );
    let tok = CellKey {
        level: vk("k"),
        counter: CounterId::Tokens(WindowSpec::calendar(Period::Minute)),
    };
    assert_eq!(used(&e, &tok, now()), (0, 0));
    // The refused request was not counted; the dropped one was.
    assert_eq!(used(&e, &request_cell(vk("k"), Period::Minute), now()).0, 1);
}

#[test]
fn request_and_token_windows_roll_over_with_the_clock() {
    let clock = ManualClock::new(ms("2026-03-15T10:00:59Z"));
    let limits = pb::Limits {
        rate_limit: Some(pb::RateLimit {
            request_max_limit: 2,
            request_reset: pb::ResetPeriod::Minute as i32,
            token_max_limit: 1_000,
            token_reset: pb::ResetPeriod::Hour as i32,
        }),
        ..Default::default()
    };
    let e = engine(&snapshot(vec![key("k", Some(limits))], vec![], vec![]));
    let admit = |tokens: u64| e.admit("k", "p", None, tokens, clock.now_unix_ms());
    admit(100).expect("1 of 2").settle(None, 100);
    admit(100).expect("2 of 2").settle(None, 100);
    let r = admit(100).expect_err("third in the minute");
    assert_eq!(r.resets_at_unix_ms(), Some(ms("2026-03-15T10:01:00Z")));
    assert_eq!(r.retry_after_secs(clock.now_unix_ms()), Some(1));
    clock.advance(1_000);
    // A new minute; the hour's tokens carry on: 200 used, an estimate of 801 does not fit.
    let r = admit(801).expect_err("token limit");
    assert_eq!(
        r.exhausted,
        Exhausted::Tokens {
            period: Period::Hour,
            limit: 1_000,
            resets_at_unix_ms: ms("2026-03-15T11:00:00Z")
        }
    );
    let big = admit(800).expect("200 + 800 = 1000");
    big.settle(None, 50);
    admit(750)
        .expect("actual tokens replaced the estimate: 250 + 750")
        .settle(None, 750);
    assert!(admit(1).is_err());
    clock.set(ms("2026-03-15T11:00:00Z"));
    drop(admit(1_000).expect("a new hour"));
}

#[test]
fn time_going_backwards_does_not_reopen_a_window() {
    let e = engine(&snapshot(
        vec![key("k", Some(requests(1, pb::ResetPeriod::Minute)))],
        vec![],
        vec![],
    ));
    drop(
        e.admit("k", "p", None, 0, ms("2026-03-15T10:01:00Z"))
            .expect("first"),
    );
    assert!(
        e.admit("k", "p", None, 0, ms("2026-03-15T10:00:30Z"))
            .is_err(),
        "an earlier instant counts in the current window"
    );
}

#[test]
fn calendar_aligned_budgets_reset_at_midnight_and_anchored_ones_at_their_anchor() {
    let anchored = pb::Budget {
        calendar_aligned: false,
        anchor_unix_ms: ms("2026-03-14T18:00:00Z"),
        ..budget("a", 100, pb::ResetPeriod::Day)
    };
    let k = key(
        "k",
        Some(with_budgets(vec![budget("cal", 100, pb::ResetPeriod::Day)])),
    );
    let j = key("j", Some(with_budgets(vec![anchored])));
    let e = engine(&snapshot(vec![k, j], vec![], vec![]));
    for id in ["k", "j"] {
        e.admit(id, "p", priced(100), 0, ms("2026-03-15T17:59:00Z"))
            .expect("fits")
            .settle(Some(100), 0);
    }
    let midnight = ms("2026-03-16T00:00:00Z");
    let r = e
        .admit("j", "p", priced(1), 0, ms("2026-03-15T17:59:59Z"))
        .expect_err("used up");
    assert_eq!(r.resets_at_unix_ms(), Some(ms("2026-03-15T18:00:00Z")));
    drop(
        e.admit("j", "p", priced(1), 0, ms("2026-03-15T18:00:00Z"))
            .expect("anchored window rolled at 18:00"),
    );
    let r = e
        .admit("k", "p", priced(1), 0, ms("2026-03-15T23:59:59.999Z"))
        .expect_err("still today");
    assert_eq!(r.resets_at_unix_ms(), Some(midnight));
    drop(
        e.admit("k", "p", priced(1), 0, midnight)
            .expect("a new day"),
    );
}

#[test]
fn an_admin_reset_forgets_spend_before_it_in_its_window() {
    let b = budget("b", 1_000, pb::ResetPeriod::Day);
    let s1 = snapshot(
        vec![key("k", Some(with_budgets(vec![b.clone()])))],
        vec![],
        vec![],
    );
    let e1 = engine(&s1);
    let cell = budget_cell(vk("k"), "b", Period::Day);
    e1.admit("k", "p", priced(800), 0, ms("2026-03-15T09:00:00Z"))
        .expect("fits")
        .settle(Some(800), 0);
    // The admin resets at 11:00 (the snapshot arrives early, at 10:30).
    let reset = pb::Budget {
        reset_at_unix_ms: ms("2026-03-15T11:00:00Z"),
        ..b.clone()
    };
    let s2 = snapshot(
        vec![key("k", Some(with_budgets(vec![reset.clone()])))],
        vec![],
        vec![],
    );
    let e2 = Engine::compile_after(&s2, Some(&e1)).expect("compiles");
    assert!(
        e2.admit("k", "p", priced(300), 0, ms("2026-03-15T10:30:00Z"))
            .is_err(),
        "not reset yet"
    );
    e2.admit("k", "p", priced(300), 0, ms("2026-03-15T11:00:00Z"))
        .expect("reset")
        .settle(Some(300), 0);
    assert_eq!(used(&e2, &cell, ms("2026-03-15T11:00:00Z")), (300, 0));
    // Applied once: recompiling with the same reset keeps the spend after it.
    let e3 = Engine::compile_after(&s2, Some(&e2)).expect("compiles");
    e3.admit("k", "p", priced(1), 0, ms("2026-03-15T12:00:00Z"))
        .expect("fits")
        .settle(Some(700), 0);
    assert!(
        e3.admit("k", "p", priced(1), 0, ms("2026-03-15T12:00:00Z"))
            .is_err(),
        "300 + 700 used since the reset"
    );
    // A reset instant of an earlier window does nothing to a later one.
    let old = pb::Budget {
        reset_at_unix_ms: ms("2026-03-14T11:00:00Z"),
        ..b
    };
    let e4 = engine(&snapshot(
        vec![key("k", Some(with_budgets(vec![old])))],
        vec![],
        vec![],
    ));
    e4.admit("k", "p", priced(1_000), 0, now())
        .expect("fits")
        .settle(Some(1_000), 0);
    assert!(e4.admit("k", "p", priced(1), 0, now()).is_err());
}

#[test]
fn spend_survives_config_changes_that_keep_the_window() {
    let b = budget("b", 1_000, pb::ResetPeriod::Month);
    let s1 = snapshot(
        vec![
            key("k", Some(with_budgets(vec![b.clone()]))),
            key("other", None),
        ],
        vec![],
        vec![],
    );
    let e1 = engine(&s1);
    e1.admit("k", "p", priced(800), 0, now())
        .expect("fits")
        .settle(Some(800), 0);
    let cell = budget_cell(vk("k"), "b", Period::Month);
    // Another key edited, this one's limit raised and its name changed: spend stays.
    let mut k = key(
        "k",
        Some(with_budgets(vec![pb::Budget {
            max_limit_nano_usd: 2_000,
            ..b.clone()
        }])),
    );
    k.name = "renamed".into();
    let mut other = key("other", Some(requests(5, pb::ResetPeriod::Minute)));
    other.name = "edited".into();
    let s2 = snapshot(vec![k, other], vec![], vec![]);
    let e2 = Engine::compile_after(&s2, Some(&e1)).expect("compiles");
    assert_eq!(used(&e2, &cell, now()), (800, 0));
    drop(
        e2.admit("k", "p", priced(1_200), 0, now())
            .expect("800 + 1200 = 2000 under the raised limit"),
    );
    // Without the previous engine everything starts fresh.
    assert_eq!(used(&engine(&s2), &cell, now()), (0, 0));
    // A changed window definition starts fresh: a weekly budget with the same id...
    let s3 = snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget(
                "b",
                1_000,
                pb::ResetPeriod::Week,
            )])),
        )],
        vec![],
        vec![],
    );
    let e3 = Engine::compile_after(&s3, Some(&e2)).expect("compiles");
    assert_eq!(
        used(&e3, &budget_cell(vk("k"), "b", Period::Week), now()),
        (0, 0)
    );
    // ...and so does a budget that is no longer calendar-aligned.
    let anchored = pb::Budget {
        calendar_aligned: false,
        anchor_unix_ms: ms("2026-03-01T00:00:00Z"),
        ..b
    };
    let s4 = snapshot(
        vec![key("k", Some(with_budgets(vec![anchored])))],
        vec![],
        vec![],
    );
    let e4 = Engine::compile_after(&s4, Some(&e2)).expect("compiles");
    drop(
        e4.admit("k", "p", priced(1_000), 0, now())
            .expect("a fresh counter"),
    );
}

#[test]
fn reservations_held_across_a_swap_settle_into_their_cells() {
    let limits = pb::Limits {
        max_concurrent: 1,
        budgets: vec![budget("b", 1_000, pb::ResetPeriod::Day)],
        ..Default::default()
    };
    let s = snapshot(vec![key("k", Some(limits))], vec![], vec![]);
    let e1 = engine(&s);
    let held = e1.admit("k", "p", priced(100), 0, now()).expect("fits");
    let e2 = Engine::compile_after(&s, Some(&e1)).expect("compiles");
    drop(e1);
    assert!(
        e2.admit("k", "p", priced(1), 0, now()).is_err(),
        "the slot is still held"
    );
    held.settle(Some(400), 0);
    assert_eq!(e2.in_flight(&vk("k")), Some(0));
    assert_eq!(
        used(&e2, &budget_cell(vk("k"), "b", Period::Day), now()),
        (400, 0)
    );
}

#[test]
fn a_settlement_after_the_window_rolled_charges_the_old_window() {
    let s = snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget(
                "b",
                1_000,
                pb::ResetPeriod::Minute,
            )])),
        )],
        vec![],
        vec![],
    );
    let e = engine(&s);
    let cell = budget_cell(vk("k"), "b", Period::Minute);
    let old = e
        .admit("k", "p", priced(900), 0, ms("2026-03-15T10:00:59Z"))
        .expect("fits");
    let next = ms("2026-03-15T10:01:00Z");
    e.admit("k", "p", priced(1_000), 0, next)
        .expect("the old reservation is not in the new window")
        .settle(Some(10), 0);
    old.settle(Some(700), 0);
    assert_eq!(
        used(&e, &cell, next),
        (10, 0),
        "the new window is not charged"
    );
    let report = e.report(next, true);
    assert_eq!(
        report.counters,
        vec![CounterHolding {
            cell,
            window: Window {
                start_unix_ms: next,
                end_unix_ms: ms("2026-03-15T10:02:00Z"),
            },
            limit: 1_000,
            used: 10,
            wanted: 0,
            allowance: 1_000,
        }],
        "the report holds the current window only"
    );
}

#[test]
fn many_threads_admit_exactly_the_limit() {
    const LIMIT: u64 = 100;
    let mut k = key("k", Some(requests(LIMIT, pb::ResetPeriod::Year)));
    k.team_id = "t".into();
    let s = snapshot(
        vec![k],
        vec![team(
            "t",
            "c",
            Some(with_budgets(vec![budget(
                "tb",
                u64::MAX,
                pb::ResetPeriod::Day,
            )])),
        )],
        vec![customer("c", Some(concurrent(1_000)))],
    );
    let e = Arc::new(engine(&s));
    let admitted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (e, admitted) = (Arc::clone(&e), Arc::clone(&admitted));
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if let Ok(r) = e.admit("k", "p", priced(1), 1, now()) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        r.settle(Some(1), 1);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(admitted.load(Ordering::Relaxed), LIMIT as usize);
    assert_eq!(
        used(
            &e,
            &budget_cell(LevelId::Team("t".into()), "tb", Period::Day),
            now()
        ),
        (LIMIT, 0)
    );
    assert_eq!(e.in_flight(&LevelId::Customer("c".into())), Some(0));
}

#[test]
fn many_threads_hold_at_most_max_concurrent() {
    const MAX: u32 = 5;
    const THREADS: usize = 16;
    let e = Arc::new(engine(&snapshot(
        vec![key("k", Some(concurrent(MAX)))],
        vec![],
        vec![],
    )));
    let admitted = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (e, admitted, barrier) =
                (Arc::clone(&e), Arc::clone(&admitted), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let held = e.admit("k", "p", None, 0, now());
                if held.is_ok() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
                // Everybody holds what they got until all have tried.
                barrier.wait();
                drop(held);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(admitted.load(Ordering::Relaxed), MAX as usize);
    assert_eq!(e.in_flight(&vk("k")), Some(0));
}

#[test]
fn allowances_below_the_limit_and_fail_open() {
    let limits = with_budgets(vec![budget("b", 1_000, pb::ResetPeriod::Day)]);
    let mut open = key("open", Some(limits.clone()));
    open.fail_open = true;
    let closed = key("closed", Some(limits));
    let e = engine(&snapshot(vec![open, closed], vec![], vec![]));
    let day = ms("2026-03-15T00:00:00Z");
    for id in ["open", "closed"] {
        let cell = budget_cell(vk(id), "b", Period::Day);
        assert!(e.grant(&cell, day, 300, false));
        e.admit(id, "p", priced(200), 0, now())
            .expect("200 of the 300 allowed")
            .settle(Some(200), 0);
        assert!(
            e.admit(id, "p", priced(200), 0, now()).is_err(),
            "beyond the allowance"
        );
    }
    // Control plane unreachable: fail-open keys go on up to the limit, others do not.
    e.set_control_plane_reachable(false);
    let r = e
        .admit("open", "p", priced(800), 0, now())
        .expect("fail-open, 200 + 800 = limit");
    assert!(r.admitted_fail_open());
    r.settle(Some(800), 0);
    assert!(
        e.admit("open", "p", priced(1), 0, now()).is_err(),
        "never beyond the limit"
    );
    assert!(e.admit("closed", "p", priced(200), 0, now()).is_err());
    // The flag survives a recompile; reachable again, allowances hold again.
    let e2 = Engine::compile_after(
        &snapshot(
            vec![key(
                "closed",
                Some(with_budgets(vec![budget("b", 1_000, pb::ResetPeriod::Day)])),
            )],
            vec![],
            vec![],
        ),
        Some(&e),
    )
    .expect("compiles");
    assert!(!e2.fleet().control_plane_reachable());
    e2.set_control_plane_reachable(true);
    assert!(e.fleet().control_plane_reachable());
    // A grant for the next window applies when it starts; unknown cells are refused.
    let next = ms("2026-03-16T00:00:00Z");
    let cell = budget_cell(vk("closed"), "b", Period::Day);
    assert!(e2.grant(&cell, next, 50, false));
    assert!(e2.admit("closed", "p", priced(51), 0, next).is_err());
    e2.admit("closed", "p", priced(50), 0, next)
        .expect("the granted 50")
        .settle(Some(50), 0);
    assert!(!e2.grant(&budget_cell(vk("nobody"), "b", Period::Day), day, 1, false));
    // An allowance equal to the limit: fail-open changes nothing.
    e2.set_control_plane_reachable(false);
    assert!(e2.grant(&cell, next, 1_000, false));
    assert!(e2.admit("closed", "p", priced(951), 0, next).is_err());
}

#[test]
fn reports_hold_use_allowances_and_requests_in_flight() {
    let limits = pb::Limits {
        budgets: vec![budget("b", 1_000, pb::ResetPeriod::Day)],
        ..requests(10, pb::ResetPeriod::Minute)
    };
    let mut k = key("k", Some(limits));
    k.team_id = "t".into();
    let s = snapshot(
        vec![k, key("idle", Some(requests(5, pb::ResetPeriod::Minute)))],
        vec![team("t", "", None)],
        vec![],
    );
    let e = engine(&s);
    e.set_share(Share { slot: 0, of: 3 });
    assert_eq!(
        e.report(now(), true),
        UseReport {
            full: true,
            ..UseReport::default()
        },
        "nothing used yet"
    );
    e.admit("k", "p", priced(100), 0, now())
        .expect("fits")
        .settle(Some(40), 0);
    let held = e.admit("k", "p", priced(100), 0, now()).expect("fits");
    let day = ms("2026-03-15T00:00:00Z");
    let mut report = e.report(now(), true);
    report.counters.sort_by_key(|c| c.limit);
    report.in_flight.sort_by_key(|(l, _)| l.to_string());
    assert_eq!(
        report.counters,
        vec![
            CounterHolding {
                cell: request_cell(vk("k"), Period::Minute),
                window: Window {
                    start_unix_ms: now(),
                    end_unix_ms: now() + 60_000,
                },
                limit: 10,
                used: 2,
                wanted: 0,
                allowance: 4,
            },
            CounterHolding {
                cell: budget_cell(vk("k"), "b", Period::Day),
                window: Window {
                    start_unix_ms: day,
                    end_unix_ms: day + 86_400_000,
                },
                limit: 1_000,
                used: 140,
                wanted: 0,
                allowance: 334,
            },
        ],
        "use with reservations, allowance the share (10 / 3 + 1, 1000 / 3 + 1)"
    );
    assert_eq!(
        report.in_flight,
        vec![(LevelId::Team("t".into()), 1), (vk("k"), 1)],
        "in flight at the key and its team, which has no limits"
    );
    let only = e.in_flight_report();
    assert!(only.counters.is_empty());
    assert_eq!(only.in_flight.len(), 2);
    // A grant replaces the share; an idle counter with a grant is reported.
    assert!(e.grant(&budget_cell(vk("k"), "b", Period::Day), day, 900, false));
    assert!(e.grant(&request_cell(vk("idle"), Period::Minute), now(), 1, false));
    held.settle(Some(60), 0);
    let mut report = e.report(now(), true);
    report.counters.sort_by_key(|c| c.limit);
    let figures: Vec<_> = report
        .counters
        .iter()
        .map(|c| (c.limit, c.used, c.allowance))
        .collect();
    assert_eq!(figures, vec![(5, 0, 1), (10, 2, 4), (1_000, 100, 900)]);
    assert!(report.in_flight.is_empty());
    // Between full reports, only what changed since it was last listed.
    assert!(
        e.report(now(), false).counters.is_empty(),
        "nothing changed"
    );
    drop(
        e.admit("idle", "p", None, 0, now())
            .expect("its grant of 1"),
    );
    let delta = e.report(now(), false);
    assert!(!delta.full);
    let figures: Vec<_> = delta
        .counters
        .iter()
        .map(|c| (c.limit, c.used, c.allowance))
        .collect();
    assert_eq!(figures, vec![(5, 1, 1)], "the idle key's counter alone");
    assert!(e.report(now(), false).counters.is_empty());
    assert_eq!(
        e.report(now(), true).counters.len(),
        3,
        "a full report lists all"
    );
    // A grant for a window this node has not reached yet is listed too.
    let next = now() + 60_000;
    assert!(e.grant(&request_cell(vk("idle"), Period::Minute), next, 4, false));
    let ahead: Vec<_> = e
        .report(now(), false)
        .counters
        .into_iter()
        .map(|c| (c.window.start_unix_ms, c.used, c.allowance))
        .collect();
    assert_eq!(ahead, vec![(now(), 1, 1), (next, 0, 4)]);
    // In the next minute the request counters hold nothing (but the idle key's grant); the
    // day's budget still holds its spend.
    let mut later: Vec<_> = e
        .report(next, true)
        .counters
        .into_iter()
        .map(|c| (c.limit, c.used, c.allowance))
        .collect();
    later.sort();
    assert_eq!(later, vec![(5, 0, 4), (1_000, 100, 900)]);
}

#[test]
fn keys_without_limits_are_admitted_and_hold_nothing() {
    let e = engine(&snapshot(vec![key("k", None)], vec![], vec![]));
    for _ in 0..3 {
        let _r = e
            .admit("k", "p", None, 1_000_000, now())
            .expect("no limits");
    }
    drop(
        e.admit("unknown", "p", None, 0, now())
            .expect("unknown keys have no limits"),
    );
    // Only the key's in-flight counter, which its requests left at 0.
    assert_eq!(e.cell_keys().count(), 1);
    assert_eq!(e.in_flight(&vk("k")), Some(0));
    assert!(e.report(now(), true).counters.is_empty());
}

#[test]
fn refusal_messages_name_what_and_when() {
    let e = engine(&chain_with_one_tight(2));
    e.admit("k", "bedrock", priced(1), 1, now())
        .expect("first")
        .settle(Some(1), 1);
    let r = e
        .admit("k", "bedrock", priced(1), 1, now())
        .expect_err("team");
    assert_eq!(
        r.to_string(),
        "request limit of team `t` reached (1 per 1h); it resets at 2026-03-15T11:00:00Z"
    );
    let b = engine(&snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget(
                "monthly",
                5_000_000_000,
                pb::ResetPeriod::Month,
            )])),
        )],
        vec![],
        vec![],
    ));
    let r = b
        .admit("k", "p", priced(6_000_000_000), 0, now())
        .expect_err("over");
    assert_eq!(
        r.to_string(),
        "budget `monthly` (1M, $5.000000) of virtual key `k` is used up; it resets at 2026-04-01T00:00:00Z"
    );
}

#[test]
fn snapshots_with_inconsistent_limits_do_not_compile() {
    let mut k = key("k", None);
    k.team_id = "missing".into();
    assert!(matches!(
        Engine::compile(&snapshot(vec![k], vec![], vec![])),
        Err(LimitsError::UnknownTeam { .. })
    ));
    let no_period = key(
        "k",
        Some(with_budgets(vec![budget(
            "b",
            1,
            pb::ResetPeriod::Unspecified,
        )])),
    );
    assert!(matches!(
        Engine::compile(&snapshot(vec![no_period], vec![], vec![])),
        Err(LimitsError::MissingPeriod { .. })
    ));
    let twice = key(
        "k",
        Some(with_budgets(vec![
            budget("b", 1, pb::ResetPeriod::Day),
            budget("b", 2, pb::ResetPeriod::Month),
        ])),
    );
    assert!(matches!(
        Engine::compile(&snapshot(vec![twice], vec![], vec![])),
        Err(LimitsError::DuplicateBudget { .. })
    ));
    let orphan = team("t", "nobody", None);
    assert!(matches!(
        Engine::compile(&snapshot(vec![], vec![orphan], vec![])),
        Err(LimitsError::UnknownCustomer { .. })
    ));
    let mut both = key("k", None);
    both.team_id = "t".into();
    both.customer_id = "c".into();
    assert!(matches!(
        Engine::compile(&snapshot(
            vec![both],
            vec![team("t", "", None)],
            vec![customer("c", None)]
        )),
        Err(LimitsError::TeamAndCustomer(_))
    ));
}

#[test]
fn an_allowance_above_the_limit_counts_as_the_limit() {
    let e = engine(&snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget("b", 1_000, pb::ResetPeriod::Day)])),
        )],
        vec![],
        vec![],
    ));
    let cell = budget_cell(vk("k"), "b", Period::Day);
    assert!(e.grant(&cell, ms("2026-03-15T00:00:00Z"), 5_000, false));
    assert_eq!(
        e.usage(&cell, now()).and_then(|u| u.granted),
        Some(5_000),
        "reported as granted"
    );
    assert!(e.admit("k", "p", priced(1_001), 0, now()).is_err());
    e.admit("k", "p", priced(1_000), 0, now())
        .expect("the limit")
        .settle(Some(1_000), 0);
}

/// An RFC 3339 instant in unix ms.
fn ms(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("test instant");
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("in range")
}

/// The shares of a fleet add up to each limit exactly: three nodes with slots 0, 1 and 2 of 3
/// admit 10 requests in all against a limit of 10 (4, 3, 3), whatever the order, and spend at
/// most a budget between them; a share survives recompiles.
#[test]
fn fleet_shares_add_up_to_the_limit() {
    for limit in [0u64, 1, 2, 10, 61, 1_000_000_007] {
        let total: u64 = (0..3)
            .map(|slot| Share { slot, of: 3 }.of_limit(limit))
            .sum();
        assert_eq!(total, limit);
    }
    assert_eq!(Share::WHOLE.of_limit(60), 60);
    let s = snapshot(
        vec![key(
            "k",
            Some(pb::Limits {
                budgets: vec![budget("b", 1_000, pb::ResetPeriod::Day)],
                ..requests(10, pb::ResetPeriod::Hour)
            }),
        )],
        vec![],
        vec![],
    );
    let nodes: Vec<Engine> = (0..3)
        .map(|slot| {
            let e = engine(&s);
            e.set_share(Share { slot, of: 3 });
            Engine::compile_after(&s, Some(&e)).expect("recompiles")
        })
        .collect();
    assert_eq!(nodes[2].fleet().share(), Share { slot: 2, of: 3 });
    let mut admitted = [0; 3];
    for round in 0..20 {
        for (i, e) in nodes.iter().enumerate() {
            if let Ok(r) = e.admit("k", "bedrock", priced(0), 0, now() + round) {
                r.settle(Some(0), 0);
                admitted[i] += 1;
            }
        }
    }
    assert_eq!(admitted, [4, 3, 3]);
    // Budgets likewise: shares of 334, 333 and 333 n$ of 1,000, 100 n$ a request.
    let s = snapshot(
        vec![key(
            "k",
            Some(with_budgets(vec![budget("b", 1_000, pb::ResetPeriod::Day)])),
        )],
        vec![],
        vec![],
    );
    let mut spent = 0;
    for slot in 0..3 {
        let e = engine(&s);
        e.set_share(Share { slot, of: 3 });
        while let Ok(r) = e.admit("k", "bedrock", priced(100), 0, now()) {
            r.settle(Some(100), 0);
            spent += 100;
        }
    }
    assert_eq!(spent, 900, "three of each node's 333 n$ fit");
}

#[test]
fn refusals_by_the_allowance_alone_are_temporary_and_wanted() {
    let e = engine(&snapshot(
        vec![key("k", Some(requests(9, pb::ResetPeriod::Minute)))],
        vec![],
        vec![],
    ));
    e.set_share(Share { slot: 0, of: 3 });
    for _ in 0..3 {
        drop(e.admit("k", "p", None, 0, now()).expect("the share of 3"));
    }
    let r = e.admit("k", "p", None, 0, now()).expect_err("share used");
    assert!(r.temporary, "the other nodes' 6 may move here");
    let cell = request_cell(vk("k"), Period::Minute);
    let held = |e: &Engine| {
        let report = e.report(now(), true);
        let c = report.counters.iter().find(|c| c.cell == cell).unwrap();
        (c.used, c.wanted, c.allowance)
    };
    assert_eq!(held(&e), (3, 1, 3), "the refused request is demand");
    // Allowance moved here: admitted again.
    assert!(e.grant(&cell, now(), 5, false));
    drop(e.admit("k", "p", None, 0, now()).expect("granted 5"));
    drop(e.admit("k", "p", None, 0, now()).expect("granted 5"));
    // The fleet has nothing left: final.
    assert!(e.grant(&cell, now(), 5, true));
    let r = e
        .admit("k", "p", None, 0, now())
        .expect_err("allowance used");
    assert!(!r.temporary, "the fleet is exhausted");
    assert_eq!(held(&e), (5, 2, 5));
    // The limit itself: final whatever the grants say.
    assert!(e.grant(&cell, now(), 100, false));
    for _ in 0..4 {
        drop(e.admit("k", "p", None, 0, now()).expect("up to the limit"));
    }
    assert!(!e.admit("k", "p", None, 0, now()).unwrap_err().temporary);
    // With the control plane away nothing moves: final.
    let e = engine(&snapshot(
        vec![key("k", Some(requests(9, pb::ResetPeriod::Minute)))],
        vec![],
        vec![],
    ));
    e.set_share(Share { slot: 0, of: 3 });
    e.set_control_plane_reachable(false);
    for _ in 0..3 {
        drop(e.admit("k", "p", None, 0, now()).expect("the share"));
    }
    assert!(!e.admit("k", "p", None, 0, now()).unwrap_err().temporary);
}

#[test]
fn a_cancelled_admission_leaves_nothing_behind() {
    let limits = pb::Limits {
        budgets: vec![budget("b", 1_000, pb::ResetPeriod::Day)],
        max_concurrent: 1,
        ..requests(2, pb::ResetPeriod::Minute)
    };
    let e = engine(&snapshot(vec![key("k", Some(limits))], vec![], vec![]));
    let first = e.admit("k", "p", priced(600), 0, now()).expect("fits");
    assert!(
        e.admit("k", "p", priced(1), 0, now()).is_err(),
        "one in flight"
    );
    first.cancel();
    assert_eq!(e.in_flight(&vk("k")), Some(0));
    assert_eq!(
        used(&e, &request_cell(vk("k"), Period::Minute), now()),
        (0, 0)
    );
    // The full budget and both requests are there again.
    e.admit("k", "p", priced(1_000), 0, now())
        .expect("the whole budget")
        .settle(Some(10), 0);
    drop(
        e.admit("k", "p", priced(1), 0, now())
            .expect("the second request"),
    );
}

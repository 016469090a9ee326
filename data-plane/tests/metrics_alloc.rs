//! What a request's metrics cost the allocator: once its route was seen,
//! `Metrics::observe` allocates nothing (it adds to series resolved then). Counted by
//! `allocation-counter`'s global allocator, on the observing thread only.

use std::sync::Arc;

use tollgate_data_plane::metrics::{LimitRefusal, Metrics, RouteLabels};
use tollgate_data_plane::runtime::RuntimeHandle;
use tollgate_proto::usage::v1::{Attempt, UsageRecord};

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn observing_a_seen_route_allocates_nothing() {
    let metrics = Metrics::default();
    let runtime = RuntimeHandle::default();
    let route = RouteLabels {
        provider: Arc::from("anthropic"),
        model: Arc::from("claude-sonnet-4-6"),
    };
    let answered = UsageRecord {
        status: 200,
        stream: true,
        latency_ms: 1_200,
        time_to_first_token_ms: 300,
        input_tokens: 10,
        output_tokens: 20,
        cache_read_input_tokens: 30,
        cache_write_input_tokens: 40,
        cost_nano_usd: Some(1_000),
        fallback_index: 1,
        attempts: vec![Attempt {
            provider: "anthropic".into(),
            class: "rate_limited".into(),
            status: 429,
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = UsageRecord {
        status: 429,
        error_class: "rate_limited".into(),
        ..Default::default()
    };
    let limit = LimitRefusal {
        level: "team",
        reason: "requests",
    };
    let observe = || {
        metrics.observe(&answered, Some(&route), None, &runtime);
        metrics.observe(&refused, Some(&route), Some(limit), &runtime);
        metrics.observe(&refused, None, None, &runtime);
    };
    // The first requests of a route create its series.
    assert!(allocations(observe) > 0);
    assert_eq!(allocations(observe), 0);
}

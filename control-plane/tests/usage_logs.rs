//! Request logs ([`Store::query_usage_logs`], [`Store::get_usage_log`]) on SQLite and
//! PostgreSQL: the join with the key's current owner, every filter (checked against the same
//! filter applied in Rust to the inserted records), pages without gaps or repeats, the time
//! window's bounds, and scoping to a set of keys.

mod common;

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tollgate_control_plane::model::VirtualKeyRecord;
use tollgate_control_plane::store::UsageRecord;
use tollgate_control_plane::usage_log::{LogScope, StatusFilter, UsageLogQuery, UsageLogRow};
use tollgate_control_plane::{PostgresStore, SqliteStore, Store};
use uuid::Uuid;

use common::owners::event;

/// A key's id text, name, team, customer and user.
type Owner = (
    String,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
);

/// What the test knows about an inserted record: the record and its key's owner.
#[derive(Clone)]
struct Expect {
    rec: UsageRecord,
    key_name: Option<String>,
    team: Option<Uuid>,
    customer: Option<Uuid>,
    user: Option<Uuid>,
}

fn text(id: Option<Uuid>) -> String {
    id.map(|u| u.to_string()).unwrap_or_default()
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn at(unix_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).unwrap()
}

fn query(since: OffsetDateTime, until: OffsetDateTime) -> UsageLogQuery {
    UsageLogQuery {
        since,
        until,
        virtual_key_id: None,
        team_id: None,
        customer_id: None,
        user_id: None,
        model: None,
        provider: None,
        status: None,
        min_cost_nano_usd: None,
        scope: LogScope::All,
        after: None,
        limit: 1000,
    }
}

/// The filter of `q` applied in Rust, newest first.
fn expected(all: &[Expect], q: &UsageLogQuery) -> Vec<String> {
    let since = ms(tollgate_control_plane::usage_log::ceil_to_millis(q.since));
    let until = ms(tollgate_control_plane::usage_log::ceil_to_millis(q.until));
    let mut rows: Vec<&Expect> = all
        .iter()
        .filter(|e| {
            let r = &e.rec;
            let key: Option<Uuid> = r.virtual_key_id.parse().ok();
            r.started_at_unix_ms >= since
                && r.started_at_unix_ms < until
                && match q.scope {
                    LogScope::All => true,
                    LogScope::Team(t) => t.is_some() && e.team == t,
                    LogScope::Key(k) => k.is_some() && key == k,
                }
                && q.virtual_key_id.is_none_or(|k| key == Some(k))
                && q.team_id.is_none_or(|t| e.team == Some(t))
                && q.customer_id.is_none_or(|c| e.customer == Some(c))
                && q.user_id.is_none_or(|u| e.user == Some(u))
                && q.model
                    .as_ref()
                    .is_none_or(|m| &r.model_requested == m || &r.model_resolved == m)
                && q.provider.as_ref().is_none_or(|p| &r.provider == p)
                && q.status.is_none_or(|s| {
                    let (lo, hi) = s.range();
                    (lo..hi).contains(&(r.status as i32))
                })
                && q.min_cost_nano_usd
                    .is_none_or(|min| r.cost_nano_usd.is_some_and(|c| c as i64 >= min))
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.rec.started_at_unix_ms, &b.rec.request_id)
            .cmp(&(a.rec.started_at_unix_ms, &a.rec.request_id))
    });
    rows.iter().map(|e| e.rec.request_id.clone()).collect()
}

fn ids(rows: &[UsageLogRow]) -> Vec<String> {
    rows.iter().map(|r| r.request_id.clone()).collect()
}

async fn usage_logs_conform(store: Arc<dyn Store>) {
    let o = common::owners::owners(store.as_ref(), false).await;
    let (keys, teams, customer) = (&o.keys, &o.teams, o.customer);
    let personal = o.personal;
    let personal_name = store.get_virtual_key(personal).await.unwrap().unwrap().name;
    // Owners, by key: (id text, name, team, customer, user).
    let deleted = Uuid::new_v4();
    let owners: Vec<Owner> = vec![
        (
            keys[0].to_string(),
            Some("key-eng".into()),
            Some(teams[0]),
            None,
            None,
        ),
        (
            keys[1].to_string(),
            Some("key-ml".into()),
            Some(teams[1]),
            None,
            None,
        ),
        (
            keys[2].to_string(),
            Some("key-acme".into()),
            None,
            Some(customer),
            None,
        ),
        (
            personal.to_string(),
            Some(personal_name.clone()),
            None,
            None,
            Some(o.user),
        ),
        // A key of team ml deleted since: no name, still billed to the team.
        (deleted.to_string(), None, Some(teams[1]), None, None),
    ];

    // 60 records over the last ~50 minutes; every third shares its start time with the one
    // before (the request id breaks the tie); plus one 2 days old and one 40 days old.
    let base = ms(OffsetDateTime::now_utc()) - 3_600_000;
    let statuses = [200, 200, 429, 500, 200, 404, 502];
    let models = [
        ("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6"),
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("claude-haiku", "claude-haiku"),
    ];
    let mut all: Vec<Expect> = Vec::new();
    for i in 0..62usize {
        let (key, name, team, cust, user) = owners[i % owners.len()].clone();
        let started = match i {
            60 => base - 2 * 86_400_000,
            61 => base - 40 * 86_400_000,
            _ => base + 50_000 * (i as i64 - (i % 3 == 2) as i64),
        };
        let (req, res) = models[i % models.len()];
        let rec = UsageRecord {
            request_id: format!("req-{:03}", (i * 37) % 101),
            virtual_key_id: key,
            provider: if i % 2 == 0 { "bedrock" } else { "openai" }.into(),
            model_requested: req.into(),
            model_resolved: res.into(),
            provider_key_id: "pk-1".into(),
            input_tokens: 100 + i as u64,
            output_tokens: 20,
            cache_read_input_tokens: 5,
            cache_write_input_tokens: 3,
            latency_ms: 1000 + i as u32,
            time_to_first_token_ms: 200,
            status: statuses[i % statuses.len()],
            error_class: if i % 7 == 2 { "rate_limited" } else { "" }.into(),
            started_at_unix_ms: started,
            stream: i % 2 == 0,
            cache_write_1h_input_tokens: 1,
            cost_nano_usd: (i % 5 != 4).then_some(1_000_000 * i as u64),
            fallback_index: u32::from(i % 4 == 0),
            attempts: if i % 4 == 0 {
                vec![tollgate_proto::usage::v1::Attempt {
                    provider: "bedrock".into(),
                    model: res.into(),
                    provider_key_id: "pk-0".into(),
                    class: "rate_limited".into(),
                    status: 429,
                    latency_ms: 12,
                }]
            } else {
                Vec::new()
            },
            // What the data plane stamps: the key's owner when it served the request.
            team_id: text(team),
            customer_id: text(cust),
            user_id: text(user),
            content: None,
            mcp: None,
        };
        all.push(Expect {
            rec,
            key_name: name,
            team,
            customer: cust,
            user,
        });
    }
    let records: Vec<UsageRecord> = all.iter().map(|e| e.rec.clone()).collect();
    assert_eq!(store.insert_usage(&records).await.unwrap(), 62);

    // Everything in the last 24 hours, with the joined owner.
    let until = OffsetDateTime::now_utc() + Duration::minutes(1);
    let day = query(until - Duration::hours(24), until);
    let rows = store.query_usage_logs(&day).await.unwrap();
    assert_eq!(ids(&rows), expected(&all, &day));
    assert_eq!(rows.len(), 60);
    for row in &rows {
        let e = all
            .iter()
            .find(|e| e.rec.request_id == row.request_id)
            .unwrap();
        let r = &e.rec;
        assert_eq!(row.virtual_key_id, r.virtual_key_id);
        assert_eq!(row.key_name, e.key_name);
        assert_eq!(row.team_id, e.team);
        assert_eq!(row.customer_id, e.customer);
        assert_eq!(row.user_id, e.user);
        assert_eq!(
            row.user_name.as_deref(),
            e.user.map(|_| "alice@example.com")
        );
        assert_eq!(ms(row.started_at), r.started_at_unix_ms);
        assert_eq!(row.status, r.status as i32);
        assert_eq!(row.cost_nano_usd, r.cost_nano_usd.map(|c| c as i64));
        assert_eq!(row.input_tokens, r.input_tokens as i64);
        assert_eq!(row.cache_write_input_tokens, 3);
        assert_eq!(row.cache_write_1h_input_tokens, 1);
        assert_eq!(row.latency_ms, i64::from(r.latency_ms));
        assert_eq!(row.stream, r.stream);
        assert_eq!(row.fallback_index, r.fallback_index as i32);
        assert_eq!(row.attempts.is_some(), !r.attempts.is_empty());
        assert_eq!(row.provider, r.provider);
        assert_eq!(row.model_resolved, r.model_resolved);
        assert_eq!(row.error_class, r.error_class);
    }

    // Every filter, alone and combined.
    let mut cases: Vec<UsageLogQuery> = Vec::new();
    for k in [keys[0], personal, deleted, Uuid::new_v4()] {
        cases.push(UsageLogQuery {
            virtual_key_id: Some(k),
            ..day.clone()
        });
    }
    for team in [teams[0], teams[1], Uuid::new_v4()] {
        cases.push(UsageLogQuery {
            team_id: Some(team),
            ..day.clone()
        });
    }
    cases.push(UsageLogQuery {
        customer_id: Some(customer),
        ..day.clone()
    });
    cases.push(UsageLogQuery {
        user_id: Some(o.user),
        ..day.clone()
    });
    for model in [
        "gpt-4o",
        "global.anthropic.claude-sonnet-4-6",
        "claude-haiku",
        "none",
    ] {
        cases.push(UsageLogQuery {
            model: Some(model.into()),
            ..day.clone()
        });
    }
    cases.push(UsageLogQuery {
        provider: Some("openai".into()),
        ..day.clone()
    });
    for status in ["200", "429", "2xx", "4xx", "5xx", "302"] {
        cases.push(UsageLogQuery {
            status: Some(StatusFilter::parse(status).unwrap()),
            ..day.clone()
        });
    }
    for min in [0, 1, 30_000_000, 59_000_000, 60_000_000] {
        cases.push(UsageLogQuery {
            min_cost_nano_usd: Some(min),
            ..day.clone()
        });
    }
    cases.push(UsageLogQuery {
        provider: Some("bedrock".into()),
        status: Some(StatusFilter::Class(2)),
        model: Some("claude-sonnet-4-6".into()),
        min_cost_nano_usd: Some(10_000_000),
        ..day.clone()
    });
    // Scoping: a team, a key, a key and another key's filter, nothing.
    cases.push(UsageLogQuery {
        scope: LogScope::Team(Some(teams[1])),
        ..day.clone()
    });
    cases.push(UsageLogQuery {
        scope: LogScope::Key(Some(personal)),
        ..day.clone()
    });
    cases.push(UsageLogQuery {
        scope: LogScope::Key(Some(personal)),
        virtual_key_id: Some(keys[0]),
        ..day.clone()
    });
    cases.push(UsageLogQuery {
        scope: LogScope::Team(Some(teams[0])),
        team_id: Some(teams[1]),
        ..day.clone()
    });
    for nothing in [LogScope::Team(None), LogScope::Key(None)] {
        cases.push(UsageLogQuery {
            scope: nothing,
            ..day.clone()
        });
    }
    for (n, q) in cases.iter().enumerate() {
        let want = expected(&all, q);
        assert_eq!(
            ids(&store.query_usage_logs(q).await.unwrap()),
            want,
            "case {n}"
        );
    }
    // The cases are not vacuous.
    assert_eq!(
        expected(
            &all,
            &UsageLogQuery {
                scope: LogScope::Key(Some(personal)),
                ..day.clone()
            }
        )
        .len(),
        12
    );

    // Pages of 7 (one more fetched, as the API does) join to the whole list, no gaps or repeats.
    for q in [&day, &cases[cases.len() - 6]] {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .query_usage_logs(&UsageLogQuery {
                    after: after.clone(),
                    limit: 7,
                    ..q.clone()
                })
                .await
                .unwrap();
            paged.extend(ids(&page));
            if page.len() < 7 {
                break;
            }
            let last = page.last().unwrap();
            after = Some((last.started_at, last.request_id.clone()));
        }
        assert_eq!(paged, expected(&all, q));
    }

    // The window: `since` inclusive, `until` exclusive, sub-millisecond bounds round up.
    let r0 = &all[0].rec;
    let t0 = at(r0.started_at_unix_ms);
    let exact = query(t0, t0 + Duration::milliseconds(1));
    assert_eq!(
        ids(&store.query_usage_logs(&exact).await.unwrap()),
        [r0.request_id.as_str()]
    );
    let after_t0 = query(t0 + Duration::microseconds(500), t0 + Duration::seconds(1));
    assert!(store.query_usage_logs(&after_t0).await.unwrap().is_empty());
    let before_t0 = query(t0 - Duration::seconds(1), t0);
    assert!(store.query_usage_logs(&before_t0).await.unwrap().is_empty());
    let upto_t0 = query(t0 - Duration::seconds(1), t0 + Duration::microseconds(1));
    assert_eq!(
        ids(&store.query_usage_logs(&upto_t0).await.unwrap()),
        [r0.request_id.as_str()]
    );
    // Older rows: only in a window that reaches them.
    let week = query(until - Duration::days(7), until);
    let rows = store.query_usage_logs(&week).await.unwrap();
    assert_eq!(rows.len(), 61);
    assert_eq!(ids(&rows), expected(&all, &week));
    let month_ago = query(until - Duration::days(45), until - Duration::days(30));
    assert_eq!(
        ids(&store.query_usage_logs(&month_ago).await.unwrap()),
        [all[61].rec.request_id.clone()]
    );

    // One request by id.
    let one = store
        .get_usage_log(&all[3].rec.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.user_id, Some(o.user));
    assert_eq!(one.user_name.as_deref(), Some("alice@example.com"));
    assert_eq!(one.key_name.as_deref(), Some(personal_name.as_str()));
    assert_eq!(
        store
            .get_usage_log(&all[61].rec.request_id)
            .await
            .unwrap()
            .map(|r| r.request_id),
        Some(all[61].rec.request_id.clone())
    );
    assert!(store.get_usage_log("req-none").await.unwrap().is_none());

    // The owner is the one stamped on the record, the name the key's current one: move key-ml
    // to team eng (renamed), delete key-acme. Their past requests stay billed where they were.
    store
        .update_virtual_key(
            keys[1],
            &|v: &mut VirtualKeyRecord| {
                v.team_id = Some(teams[0]);
                v.name = "key-ml-moved".into();
                Ok(())
            },
            &event("virtual_key.update"),
        )
        .await
        .unwrap();
    store
        .delete_virtual_key(keys[2], &event("virtual_key.delete"))
        .await
        .unwrap();
    for e in &mut all {
        if e.rec.virtual_key_id == keys[1].to_string() {
            e.key_name = Some("key-ml-moved".into());
        }
        if e.rec.virtual_key_id == keys[2].to_string() {
            e.key_name = None;
        }
    }
    for q in [
        UsageLogQuery {
            team_id: Some(teams[0]),
            ..day.clone()
        },
        UsageLogQuery {
            team_id: Some(teams[1]),
            ..day.clone()
        },
        UsageLogQuery {
            customer_id: Some(customer),
            ..day.clone()
        },
    ] {
        assert_eq!(
            ids(&store.query_usage_logs(&q).await.unwrap()),
            expected(&all, &q)
        );
    }
    let moved = store
        .query_usage_logs(&UsageLogQuery {
            virtual_key_id: Some(keys[1]),
            ..day.clone()
        })
        .await
        .unwrap();
    assert!(!moved.is_empty());
    assert!(
        moved
            .iter()
            .all(|r| r.team_id == Some(teams[1]) && r.key_name.as_deref() == Some("key-ml-moved"))
    );
    let gone = store
        .query_usage_logs(&UsageLogQuery {
            virtual_key_id: Some(keys[2]),
            ..day.clone()
        })
        .await
        .unwrap();
    assert!(!gone.is_empty());
    assert!(
        gone.iter()
            .all(|r| r.key_name.is_none() && r.customer_id == Some(customer))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_usage_logs_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    usage_logs_conform(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_usage_logs_conform() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        usage_logs_conform(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

//! Jobs storage ([`JobStore`], migration 0017) on SQLite and PostgreSQL: a job is claimed by one
//! runner only, also when runners race; a stale one is taken over and its old runner learns it
//! lost it; progress, cancellation (queued at once, running at the next checkpoint), the end;
//! and the compare-and-set of re-priced usage costs with their rollup differences; export output
//! (migration 0019): chunks are written only with their runner's checkpoint, a takeover continues
//! after the last chunk without a duplicate, a cancelled job writes nothing more, and expired
//! output is purged.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use tollgate_control_plane::jobs::{JobKind, JobRecord, JobState};
use tollgate_control_plane::model::AuditEvent;
use tollgate_control_plane::store::jobs::CostChange;
use tollgate_control_plane::store::{Checkpoint, Progress, UsageRecord};
use tollgate_control_plane::{PostgresStore, SqliteStore, Store};

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        actor: "test".into(),
        action: action.into(),
        target: "jobs".into(),
        details: json!({}),
    }
}

fn job(n: i64) -> JobRecord {
    let mut j = JobRecord::queued(JobKind::RecomputeCosts, json!({"n": n}), "test".into());
    // Distinct creation times: claims take the oldest first.
    j.created_at = tollgate_control_plane::model::now() - Duration::seconds(100 - n);
    j
}

async fn jobs_conform(store: Arc<dyn Store>) {
    let now = tollgate_control_plane::model::now();
    let stale_before = now - Duration::minutes(1);
    let jobs: Vec<JobRecord> = (0..3).map(job).collect();
    for j in &jobs {
        store.create_job(j, &event("job.create")).await.unwrap();
    }
    assert_eq!(store.get_job(jobs[1].id).await.unwrap().unwrap(), jobs[1]);
    let listed = store.list_jobs(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [jobs[2].id, jobs[1].id, jobs[0].id],
        "newest first"
    );

    // Eight runners race for three jobs: each job goes to exactly one.
    let mut tasks = Vec::new();
    for r in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .claim_job(&format!("runner-{r}"), now, stale_before)
                .await
                .unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        if let Some(j) = t.await.unwrap() {
            assert_eq!(j.state, JobState::Running);
            assert_eq!(j.started_at, Some(now));
            claimed.push((j.id, j.owner.unwrap()));
        }
    }
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    let ids: BTreeSet<_> = claimed.iter().map(|c| c.0).collect();
    assert_eq!(ids.len(), 3);
    assert!(
        store
            .claim_job("late", now, stale_before)
            .await
            .unwrap()
            .is_none()
    );
    let owner_of = |id| claimed.iter().find(|c| c.0 == id).unwrap().1.clone();

    // Progress by its runner; another runner's checkpoint is refused.
    let p = Progress {
        done: 5,
        total: Some(10),
        cursor: Some("c1".into()),
        message: Some("half".into()),
    };
    let a = jobs[0].id;
    assert_eq!(
        store
            .checkpoint_job(a, &owner_of(a), &p, now)
            .await
            .unwrap(),
        Checkpoint::Continue
    );
    assert_eq!(
        store.checkpoint_job(a, "someone", &p, now).await.unwrap(),
        Checkpoint::Lost
    );
    let got = store.get_job(a).await.unwrap().unwrap();
    assert_eq!(
        (
            got.done,
            got.total,
            got.cursor.as_deref(),
            got.message.as_deref()
        ),
        (5, Some(10), Some("c1"), Some("half"))
    );

    // A runner that stops renewing its heartbeat loses the job to the next claim, which resumes
    // from the checkpoint; the old runner learns it at its next checkpoint.
    let later = now + Duration::minutes(2);
    let taken = store
        .claim_job("rescuer", later, later - Duration::minutes(1))
        .await
        .unwrap()
        .expect("a stale job");
    assert_eq!(taken.owner.as_deref(), Some("rescuer"));
    assert_eq!(taken.started_at, Some(now), "the first start is kept");
    let (done, cursor) = if taken.id == a {
        (5, Some("c1".to_owned()))
    } else {
        (0, None)
    };
    assert_eq!((taken.done, taken.cursor.clone()), (done, cursor));
    assert_eq!(
        store
            .checkpoint_job(taken.id, &owner_of(taken.id), &p, later)
            .await
            .unwrap(),
        Checkpoint::Lost
    );
    assert!(
        !store
            .finish_job(
                taken.id,
                &owner_of(taken.id),
                JobState::Succeeded,
                "x",
                later
            )
            .await
            .unwrap()
    );

    // Cancelling: a running job is asked to stop (its next checkpoint says so), then ends.
    let c = store
        .cancel_job(taken.id, &event("job.cancel"))
        .await
        .unwrap()
        .unwrap();
    assert!(c.cancel_requested);
    assert_eq!(c.state, JobState::Running);
    assert_eq!(
        store
            .checkpoint_job(taken.id, "rescuer", &p, later)
            .await
            .unwrap(),
        Checkpoint::Cancel
    );
    assert!(
        store
            .finish_job(taken.id, "rescuer", JobState::Cancelled, "stopped", later)
            .await
            .unwrap()
    );
    let ended = store.get_job(taken.id).await.unwrap().unwrap();
    assert_eq!(ended.state, JobState::Cancelled);
    assert_eq!(ended.finished_at, Some(later));
    // A finished job is returned unchanged and not claimed again.
    let again = store
        .cancel_job(taken.id, &event("job.cancel"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, ended);

    // A queued job is cancelled at once and never claimed.
    let q = job(50);
    store.create_job(&q, &event("job.create")).await.unwrap();
    let c = store
        .cancel_job(q.id, &event("job.cancel"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert!(c.finished_at.is_some());
    let far = now + Duration::hours(1);
    let mut left = BTreeSet::new();
    while let Some(j) = store
        .claim_job("sweeper", far, far - Duration::minutes(1))
        .await
        .unwrap()
    {
        assert!(left.insert(j.id), "claimed twice");
        assert!(
            store
                .finish_job(j.id, "sweeper", JobState::Succeeded, "ok", far)
                .await
                .unwrap()
        );
    }
    assert!(!left.contains(&q.id) && !left.contains(&taken.id));
    assert_eq!(left.len(), 2, "the two other running jobs, now stale");
    assert!(
        store
            .cancel_job(uuid::Uuid::new_v4(), &event("job.cancel"))
            .await
            .unwrap()
            .is_none()
    );
}

fn usage(id: &str, at: OffsetDateTime, cost: Option<u64>) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        virtual_key_id: "0197a3c2-7d1e-7b6a-9f00-000000000001".into(),
        provider: "anthropic".into(),
        model_requested: "m".into(),
        model_resolved: "m".into(),
        provider_key_id: "pk".into(),
        input_tokens: 10,
        output_tokens: 5,
        status: 200,
        started_at_unix_ms: (at.unix_timestamp_nanos() / 1_000_000) as i64,
        cost_nano_usd: cost,
        team_id: "0197a3c2-7d1e-7b6a-9f01-000000000001".into(),
        ..Default::default()
    }
}

async fn costs_conform(store: Arc<dyn Store>) {
    let hour = tollgate_control_plane::spend::floor_to(OffsetDateTime::now_utc(), Duration::HOUR);
    let records = [
        usage("a", hour + Duration::minutes(1), None),
        usage("b", hour + Duration::minutes(2), Some(7)),
        usage("c", hour + Duration::minutes(3), Some(100)),
    ];
    assert_eq!(store.insert_usage(&records).await.unwrap(), 3);
    assert_eq!(
        store
            .count_usage(hour, hour + Duration::HOUR)
            .await
            .unwrap(),
        3
    );
    let rows = store
        .usage_cost_rows(hour, hour + Duration::HOUR)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let row = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap().clone();
    assert_eq!(row("a").cost_nano_usd, None);
    assert_eq!(
        row("a").team_id.map(|t| t.to_string()).as_deref(),
        Some("0197a3c2-7d1e-7b6a-9f01-000000000001")
    );
    // a: unpriced → 1,000; b: 7 → 20; c read with a stale cost (another recomputation changed
    // it since): left alone.
    let mut stale = row("c");
    stale.cost_nano_usd = Some(99);
    let changes = [
        CostChange {
            row: row("a"),
            cost_nano_usd: Some(1_000),
        },
        CostChange {
            row: row("b"),
            cost_nano_usd: Some(20),
        },
        CostChange {
            row: stale,
            cost_nano_usd: Some(5),
        },
    ];
    assert_eq!(store.set_usage_costs(&changes).await.unwrap(), 2);
    let after = store
        .usage_cost_rows(hour, hour + Duration::HOUR)
        .await
        .unwrap();
    let cost = |id: &str| {
        after
            .iter()
            .find(|r| r.request_id == id)
            .unwrap()
            .cost_nano_usd
    };
    assert_eq!(
        (cost("a"), cost("b"), cost("c")),
        (Some(1_000), Some(20), Some(100))
    );
    // The rollups (hour and day) moved by the same amounts: 1,000 + 20 + 100 now, none unpriced.
    use tollgate_control_plane::spend::{Interval, SpendQuery};
    use tollgate_control_plane::usage_log::LogScope;
    let day = time::Time::MIDNIGHT;
    for interval in [Interval::Hour, Interval::Day] {
        let q = SpendQuery {
            since: hour.replace_time(day) - Duration::days(1),
            until: hour.replace_time(day) + Duration::days(2),
            interval,
            group_by: Vec::new(),
            virtual_key_id: None,
            team_id: None,
            customer_id: None,
            user_id: None,
            model: None,
            provider: None,
            scope: LogScope::All,
            limit: 1000,
        };
        let rows = store.query_spend(&q).await.unwrap();
        let total: u64 = rows.iter().map(|r| r.totals.cost_nano_usd).sum();
        let unpriced: u64 = rows.iter().map(|r| r.totals.unpriced_requests).sum();
        assert_eq!((total, unpriced), (1_120, 0), "{interval:?}");
    }
    // Applying the same change again changes nothing (the costs no longer match).
    assert_eq!(store.set_usage_costs(&changes).await.unwrap(), 0);
}

fn progress(seq: u64) -> Progress {
    Progress {
        done: seq * 10,
        total: None,
        cursor: Some(format!("next={seq}")),
        message: Some(format!("{} rows written", seq * 10)),
    }
}

async fn output(store: &Arc<dyn Store>, id: uuid::Uuid) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut after = None;
    // Two chunks per read: the reads page.
    loop {
        let page = store.job_output(id, after, 2).await.unwrap();
        let Some(last) = page.last().map(|c| c.0) else {
            return all;
        };
        all.extend(
            page.into_iter()
                .map(|(seq, b)| (seq, String::from_utf8(b).unwrap())),
        );
        after = Some(last);
    }
}

async fn outputs_conform(store: Arc<dyn Store>) {
    let now = tollgate_control_plane::model::now();
    let stale_before = now - Duration::minutes(1);
    let export = JobRecord::queued(JobKind::Export, json!({"n": "export"}), "test".into());
    store
        .create_job(&export, &event("job.create"))
        .await
        .unwrap();
    let id = export.id;
    let active = |store: Arc<dyn Store>| async move {
        let jobs = store.active_exports().await.unwrap();
        jobs.into_iter().map(|j| j.id).collect::<Vec<_>>()
    };
    // A cost recomputation (queued, but newer: the claims below take the exports) is no export.
    let mut other = job(9);
    other.created_at = now + Duration::hours(1);
    store
        .create_job(&other, &event("job.create"))
        .await
        .unwrap();
    assert_eq!(active(store.clone()).await, [id]);
    let claimed = store
        .claim_job("a", now, stale_before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    for seq in 0..2 {
        assert_eq!(
            store
                .append_job_output(
                    id,
                    "a",
                    seq,
                    format!("a{seq};").as_bytes(),
                    &progress(seq + 1),
                    now
                )
                .await
                .unwrap(),
            Checkpoint::Continue
        );
    }
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!((job.done, job.cursor.as_deref()), (20, Some("next=2")));

    // Runner a stalls; b takes the job over and resumes from the cursor committed with the last
    // chunk. a's late chunk is refused and not written; b's continues the sequence.
    let later = now + Duration::minutes(2);
    let taken = store
        .claim_job("b", later, later - Duration::minutes(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id, taken.cursor.as_deref()), (id, Some("next=2")));
    assert_eq!(
        store
            .append_job_output(id, "a", 2, b"a2;", &progress(3), later)
            .await
            .unwrap(),
        Checkpoint::Lost
    );
    assert_eq!(
        store
            .append_job_output(id, "b", 2, b"b2;", &progress(3), later)
            .await
            .unwrap(),
        Checkpoint::Continue
    );
    // The same chunk twice is an error, never a second copy.
    assert!(
        store
            .append_job_output(id, "b", 2, b"again;", &progress(3), later)
            .await
            .is_err()
    );
    let got = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (got.done, got.cursor.as_deref()),
        (30, Some("next=3")),
        "the failed append's checkpoint is rolled back"
    );
    assert_eq!(
        output(&store, id).await,
        [
            (0, "a0;".to_owned()),
            (1, "a1;".to_owned()),
            (2, "b2;".to_owned())
        ]
    );
    assert_eq!(
        store.job_output(id, Some(1), 10).await.unwrap(),
        [(2, b"b2;".to_vec())]
    );

    // A runner rewriting from chunk 1 (a slice taken over mid-way): the chunks from 1 on go in
    // the transaction that writes the new chunk 1; a runner that lost the job deletes nothing.
    assert_eq!(
        store
            .rewrite_job_output(id, "a", 1, b"lost;", &progress(2), later)
            .await
            .unwrap(),
        Checkpoint::Lost
    );
    assert_eq!(output(&store, id).await.len(), 3);
    assert_eq!(
        store
            .rewrite_job_output(id, "b", 1, b"", &progress(1), later)
            .await
            .unwrap(),
        Checkpoint::Continue
    );
    assert_eq!(
        output(&store, id).await,
        [(0, "a0;".to_owned())],
        "an empty rewrite only deletes"
    );
    assert_eq!(
        store
            .rewrite_job_output(id, "b", 1, b"b1;", &progress(2), later)
            .await
            .unwrap(),
        Checkpoint::Continue
    );
    store
        .append_job_output(id, "b", 2, b"b2';", &progress(3), later)
        .await
        .unwrap();
    assert_eq!(
        output(&store, id).await,
        [
            (0, "a0;".to_owned()),
            (1, "b1;".to_owned()),
            (2, "b2';".to_owned())
        ]
    );
    let got = store.get_job(id).await.unwrap().unwrap();
    assert_eq!((got.done, got.cursor.as_deref()), (30, Some("next=3")));

    // A cancellation: the next chunk is not written.
    let event_cancel = event("job.cancel");
    store.cancel_job(id, &event_cancel).await.unwrap();
    assert_eq!(
        store
            .append_job_output(id, "b", 3, b"b3;", &progress(4), later)
            .await
            .unwrap(),
        Checkpoint::Cancel
    );
    assert_eq!(output(&store, id).await.len(), 3);
    assert!(
        store
            .finish_job(id, "b", JobState::Cancelled, "cancelled", later)
            .await
            .unwrap()
    );

    // A second export finishes now; the purge of what finished before `later + 1 s` takes the
    // first one's chunks only when its cutoff is past its end.
    let recent = JobRecord::queued(JobKind::Export, json!({"n": "recent"}), "test".into());
    store
        .create_job(&recent, &event("job.create"))
        .await
        .unwrap();
    let c = store
        .claim_job("c", later, stale_before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.id, recent.id);
    assert_eq!(
        active(store.clone()).await,
        [recent.id],
        "the cancelled one is not active; the running one is"
    );
    store
        .append_job_output(recent.id, "c", 0, b"r0;", &progress(1), later)
        .await
        .unwrap();
    let much_later = later + Duration::days(8);
    assert!(
        store
            .finish_job(recent.id, "c", JobState::Succeeded, "done", much_later)
            .await
            .unwrap()
    );
    assert!(active(store.clone()).await.is_empty());
    assert_eq!(
        store.purge_job_output(later).await.unwrap(),
        0,
        "nothing finished before"
    );
    assert_eq!(
        store
            .purge_job_output(later + Duration::seconds(1))
            .await
            .unwrap(),
        3
    );
    assert!(output(&store, id).await.is_empty());
    assert_eq!(output(&store, recent.id).await, [(0, "r0;".to_owned())]);
    assert_eq!(
        store
            .purge_job_output(much_later + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert!(output(&store, recent.id).await.is_empty());
    assert!(
        store.get_job(recent.id).await.unwrap().is_some(),
        "the job stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_export_outputs_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    outputs_conform(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_export_outputs_conform() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        outputs_conform(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_jobs_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    jobs_conform(store.clone()).await;
    costs_conform(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_jobs_conform() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        jobs_conform(Arc::new(store.clone())).await;
        costs_conform(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

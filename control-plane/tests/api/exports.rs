//! Exports as jobs through the admin API with the control plane's own runner: each kind's
//! download equals what its GET endpoint returns for the same query (spend CSV byte for byte,
//! logs and audit as JSON Lines and CSV), scoping (a team admin's export holds only their team's
//! rows; others' exports are not theirs to follow or download), 409 before the end, 410 after
//! the output expired, a takeover that resumes after the dead runner's last chunk, 400s naming
//! the field, and the audit rows of creations and refusals.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_control_plane::identity::Role;
use tollgate_control_plane::jobs::{JobKind, JobRecord, JobState};
use tollgate_control_plane::store::{Progress, UsageRecord};
use uuid::Uuid;

use super::logs::billed;
use super::roles::{Org, admin, org};
use super::*;

fn record(request_id: &str, vk: &str, ago_ms: i64, cost: Option<u64>) -> UsageRecord {
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    UsageRecord {
        request_id: request_id.into(),
        virtual_key_id: vk.into(),
        provider: "bedrock".into(),
        model_requested: "=cmd|' /C calc'!A0".into(),
        model_resolved: "global.anthropic.claude-sonnet-4-6".into(),
        provider_key_id: "pk-1".into(),
        input_tokens: 100,
        output_tokens: 20,
        status: 200,
        started_at_unix_ms: now_ms - ago_ms,
        cost_nano_usd: cost,
        ..Default::default()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Polls the job (as `call` reads it) until it ends.
async fn finished_as<F, Fut>(id: &str, call: F) -> Value
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(format!("/api/jobs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if ["succeeded", "failed", "cancelled"].contains(&r.json["state"].as_str().unwrap()) {
            return r.json;
        }
        assert!(Instant::now() < deadline, "job still {}", r.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs an export as the loopback admin and returns its download.
async fn export(h: &Harness, body: Value) -> Resp {
    let r = post(h, "/api/jobs/export", body.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{body}: {}", r.text);
    assert_eq!(r.json["kind"], "export");
    let id = r.json["id"].as_str().unwrap().to_owned();
    let job = finished_as(&id, |p| async move { get(h, &p).await }).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["percent"], 100.0, "{job}");
    let r = get(h, &format!("/api/jobs/{id}/download")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let disposition = r.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    let ext = body["format"].as_str().unwrap_or("csv");
    assert_eq!(
        disposition,
        format!(
            "attachment; filename=\"{}-{}.{ext}\"",
            body["kind"].as_str().unwrap(),
            Uuid::parse_str(&id).unwrap().simple()
        )
    );
    let rows = job["done"].as_u64().unwrap();
    let lines = r.text.lines().count() as u64;
    let header_rows = u64::from(ext == "csv");
    assert_eq!(rows + header_rows, lines, "{job}");
    r
}

/// The `/api/logs` entries of `query`, every page of `limit`.
async fn logs_pages(h: &Harness, limit: u32, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = get(h, &format!("/api/logs?limit={limit}&{query}{cursor}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        out.extend(r.json["logs"].as_array().unwrap().iter().cloned());
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// JSON Lines parsed.
fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn exports_hold_what_the_get_endpoints_return_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    exports_hold_what_the_get_endpoints_return(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_what_the_get_endpoints_return_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        exports_hold_what_the_get_endpoints_return(&h).await;
    })
    .await;
}

async fn exports_hold_what_the_get_endpoints_return(h: &Harness) {
    let r = post(h, "/api/teams", json!({"name": "eng"})).await;
    let team = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        h,
        "/api/virtual-keys",
        json!({"name": "=HYPERLINK(\"http://x\")", "team_id": team}),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    let app = r.json["id"].as_str().unwrap().to_owned();
    let r = post(h, "/api/virtual-keys", json!({"name": "solo"})).await;
    let solo = r.json["id"].as_str().unwrap().to_owned();
    // 20 requests over 12 days: several spend slices (a week of days, a day of hours) and
    // several pages of logs as the test pages them (7 a page).
    let mut records = Vec::new();
    for i in 0..20_i64 {
        let key = if i % 3 == 0 { &solo } else { &app };
        let cost = (i % 4 != 0).then_some(1_000_000 * (i as u64 + 1));
        let r = record(&format!("r-{i:02}"), key, i * 14 * 3_600_000 + 1_000, cost);
        records.push(billed(h, r).await);
    }
    h.cp.store().insert_usage(&records).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let since = rfc3339(now - time::Duration::days(13));
    let until = rfc3339(now + time::Duration::hours(1));

    // Spend: byte for byte `/api/spend/export`, by day over 13 days and by hour over 2.
    // Hour by hour over exactly 31 days (the most, as asked: rounding outwards to whole hours
    // must not make the runner refuse it).
    let month = (rfc3339(now - time::Duration::days(31)), rfc3339(now));
    for (interval, since, until) in [
        ("day", since.clone(), until.clone()),
        (
            "hour",
            rfc3339(now - time::Duration::days(2)),
            until.clone(),
        ),
        ("hour", month.0, month.1),
        ("none", since.clone(), until.clone()),
    ] {
        let query = json!({"group_by": "key,model", "interval": interval, "since": since,
                           "until": until});
        let got = export(h, json!({"kind": "spend", "query": query})).await;
        assert!(
            got.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let path = format!(
            "/api/spend/export?group_by=key,model&interval={interval}&since={since}&until={until}"
        );
        let want = get(h, &path.replace('+', "%2B")).await;
        assert_eq!(want.status, StatusCode::OK, "{}", want.text);
        assert!(want.text.lines().count() > 2, "{}", want.text);
        assert_eq!(got.text, want.text, "interval={interval}");
        // The formula-like key name is quoted in both.
        assert!(got.text.contains("'=HYPERLINK"), "{}", got.text);
    }

    // Logs: JSON Lines equal to every page of `/api/logs` for the same filters (newest first).
    let query = format!("since={since}&until={until}&status=2xx").replace('+', "%2B");
    let got = export(
        h,
        json!({"kind": "logs", "format": "jsonl",
               "query": {"since": since, "until": until, "status": "2xx"}}),
    )
    .await;
    assert_eq!(
        got.headers[header::CONTENT_TYPE].to_str().unwrap(),
        "application/x-ndjson"
    );
    let want = logs_pages(h, 7, &query).await;
    assert_eq!(want.len(), 20);
    assert_eq!(lines(&got.text), want);
    // As CSV: the same rows in the same order, formula-like cells quoted.
    let got = export(
        h,
        json!({"kind": "logs", "query": {"since": since, "until": until,
                                          "virtual_key_id": app}}),
    )
    .await;
    let mut reader = csv::Reader::from_reader(got.text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "request_id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let want: Vec<String> = logs_pages(h, 7, &format!("{query}&virtual_key_id={app}"))
        .await
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(want.len(), 13);
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, want);
    assert_eq!(&rows[0][col("key_name")], "'=HYPERLINK(\"http://x\")");
    assert_eq!(&rows[0][col("model_requested")], "'=cmd|' /C calc'!A0");
    assert_eq!(&rows[0][col("team_id")], team.as_str());

    // Audit: JSON Lines equal to `/api/audit-logs/export` for the same filter; CSV has a row
    // per entry.
    let got = export(
        h,
        json!({"kind": "audit", "format": "jsonl", "query": {"action": "virtual_key.*"}}),
    )
    .await;
    let want = get(h, "/api/audit-logs/export?action=virtual_key.*").await;
    assert_eq!(want.text.lines().count(), 2);
    assert_eq!(got.text, want.text);
    let got = export(h, json!({"kind": "audit", "query": {"action": "job.*"}})).await;
    let mut reader = csv::Reader::from_reader(got.text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "at",
            "actor",
            "action",
            "target",
            "config_version",
            "result",
            "details",
            "prev_hash",
            "hash"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // Every export so far (four of spend, two of logs, one of audit) and this one: its own
    // creation is before the head it pinned.
    assert_eq!(rows.len(), 8);
    assert!(
        rows.iter()
            .all(|r| &r[3] == "job.create" && &r[6] == "success")
    );

    // Every creation is audited, with what it exports.
    let audit = get(h, "/api/audit-logs?action=job.create").await;
    assert_eq!(audit.json["count"], 8, "{}", audit.text);
    let after = &audit.json["audit_logs"][0]["details"]["after"];
    assert_eq!(after["kind"], "export");
    assert_eq!(after["params"]["export"], "audit");
    assert_eq!(after["params"]["scope"], "all");
}

#[tokio::test]
async fn bad_exports_are_400s_naming_the_field_and_audited() {
    let h = sqlite_harness(loopback_auth()).await;
    for (body, field) in [
        (json!({}), "kind"),
        (json!({"kind": "users"}), "kind"),
        (json!({"kind": "spend", "format": "xml"}), "format"),
        (
            json!({"kind": "spend", "query": {"interval": "week"}}),
            "interval",
        ),
        (
            json!({"kind": "spend", "query": {"format": "csv"}}),
            "query.format",
        ),
        (
            json!({"kind": "spend", "query": {"colour": "red"}}),
            "query",
        ),
        (
            json!({"kind": "spend", "query": {"since": 5}}),
            "query.since",
        ),
        (
            json!({"kind": "logs", "query": {"limit": "5"}}),
            "query.limit",
        ),
        (
            json!({"kind": "logs", "query": {"status": "teapot"}}),
            "status",
        ),
        (
            json!({"kind": "logs", "query": {"since": "2024-01-01T00:00:00Z",
                                             "until": "2026-01-01T00:00:00Z"}}),
            "since",
        ),
        (
            json!({"kind": "audit", "query": {"result": "maybe"}}),
            "result",
        ),
        (json!({"kind": "audit", "extra": 1}), "extra"),
    ] {
        let r = post(&h, "/api/jobs/export", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let r = get(&h, "/api/audit-logs?action=job.create&result=failure").await;
    assert_eq!(r.json["count"], 12, "{}", r.text);
    assert_eq!(r.json["audit_logs"][0]["target"], "jobs/export");
    let missing = Uuid::new_v4();
    assert_error(
        &get(&h, &format!("/api/jobs/{missing}/download")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

/// An export job stored as `state`, as if created by `user` (`None`: the admin token), owned by
/// a runner whose heartbeat is `heartbeat` and finished at `finished`.
fn stored_export(
    user: Option<Uuid>,
    state: JobState,
    heartbeat: Option<OffsetDateTime>,
    finished: Option<OffsetDateTime>,
) -> JobRecord {
    let mut j = JobRecord::queued(
        JobKind::Export,
        json!({"export": "logs", "format": "jsonl", "query": {},
               "scope": "all", "user_id": user}),
        "test".into(),
    );
    j.state = state;
    j.owner = heartbeat.map(|_| "elsewhere".to_owned());
    j.heartbeat_at = heartbeat;
    j.started_at = heartbeat;
    j.finished_at = finished;
    j
}

fn stored_event() -> tollgate_control_plane::model::AuditEvent {
    tollgate_control_plane::model::AuditEvent {
        actor: "test".into(),
        action: "job.create".into(),
        target: "jobs".into(),
        details: json!({}),
    }
}

#[tokio::test]
async fn an_export_is_downloaded_once_succeeded_and_until_it_expires() {
    let h = sqlite_harness(loopback_auth()).await;
    let now = OffsetDateTime::now_utc();
    // Running on a live replica elsewhere (its heartbeat is fresh): 409.
    let running = stored_export(
        None,
        JobState::Running,
        Some(now + time::Duration::hours(1)),
        None,
    );
    h.cp.store()
        .create_job(&running, &stored_event())
        .await
        .unwrap();
    let r = get(&h, &format!("/api/jobs/{}/download", running.id)).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);
    assert!(r.text.contains("running"), "{}", r.text);
    // Failed: 409 with its message.
    let mut failed = stored_export(None, JobState::Failed, None, Some(now));
    failed.message = Some("store error: boom".into());
    h.cp.store()
        .create_job(&failed, &stored_event())
        .await
        .unwrap();
    let r = get(&h, &format!("/api/jobs/{}/download", failed.id)).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);
    assert!(r.text.contains("boom"), "{}", r.text);
    // Succeeded eight days ago: gone.
    let old = stored_export(
        None,
        JobState::Succeeded,
        None,
        Some(now - time::Duration::days(8)),
    );
    h.cp.store()
        .create_job(&old, &stored_event())
        .await
        .unwrap();
    let r = get(&h, &format!("/api/jobs/{}/download", old.id)).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text);
    assert!(r.text.contains("expired"), "{}", r.text);
    // The default range is fixed when the job is created: 24 hours of logs, 30 days of spend.
    for (kind, hours) in [("logs", 24), ("spend", 30 * 24)] {
        let r = post(&h, "/api/jobs/export", json!({"kind": kind})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        let q = &r.json["params"]["query"];
        let at = |f: &str| OffsetDateTime::parse(q[f].as_str().unwrap(), &Rfc3339).unwrap();
        assert_eq!(
            at("until") - at("since"),
            time::Duration::hours(hours),
            "{q}"
        );
        assert!(
            (at("until") - now).abs() < time::Duration::minutes(1),
            "{q}"
        );
    }
    // A cost recomputation has no download.
    let r = post(
        &h,
        "/api/jobs/recompute-costs",
        json!({"since": rfc3339(now - time::Duration::hours(1))}),
    )
    .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    let r = get(&h, &format!("/api/jobs/{id}/download")).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn a_taken_over_export_resumes_after_the_last_chunk_without_duplicates() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(&h, "/api/virtual-keys", json!({"name": "app"})).await;
    let key = r.json["id"].as_str().unwrap().to_owned();
    // 2,500 requests: three pages of 1,000.
    let records: Vec<UsageRecord> = (0..2_500)
        .map(|i| record(&format!("r-{i:04}"), &key, 1_000 + i * 1_000, Some(1)))
        .collect();
    h.cp.store().insert_usage(&records).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let since = rfc3339(now - time::Duration::hours(2));
    let until = rfc3339(now);
    let query = format!("since={since}&until={until}").replace('+', "%2B");
    let want = logs_pages(&h, 1000, &query).await;
    assert_eq!(want.len(), 2_500);

    // A replica wrote the first page and died (its heartbeat is two minutes old).
    let stale = now - time::Duration::minutes(2);
    let mut job = stored_export(None, JobState::Running, Some(stale), None);
    job.params = json!({"export": "logs", "format": "jsonl",
                        "query": {"since": since, "until": until},
                        "scope": "all", "user_id": null});
    h.cp.store()
        .create_job(&job, &stored_event())
        .await
        .unwrap();
    let first: String = want[..1_000].iter().map(|e| format!("{e}\n")).collect();
    let last = &want[999];
    let at = OffsetDateTime::parse(last["started_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let cursor = json!({"seq": 1, "rows": 1000,
                        "after_log": [at.unix_timestamp_nanos().to_string(), last["request_id"]]});
    let progress = Progress {
        done: 1_000,
        total: None,
        cursor: Some(cursor.to_string()),
        message: None,
    };
    assert_eq!(
        h.cp.store()
            .append_job_output(job.id, "elsewhere", 0, first.as_bytes(), &progress, stale)
            .await
            .unwrap(),
        tollgate_control_plane::store::Checkpoint::Continue
    );
    // This replica's runner takes it over (it looks every two seconds) and writes the rest.
    let id = job.id.to_string();
    let done = finished_as(&id, |p| {
        let h = &h;
        async move { get(h, &p).await }
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["done"], 2_500);
    let r = get(&h, &format!("/api/jobs/{id}/download")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(lines(&r.text), want);
}

#[tokio::test]
async fn a_spend_slice_taken_over_mid_way_is_written_again_whole() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(&h, "/api/virtual-keys", json!({"name": "app"})).await;
    let key = r.json["id"].as_str().unwrap().to_owned();
    let records: Vec<UsageRecord> = (0..5)
        .map(|i| {
            record(
                &format!("r-{i}"),
                &key,
                1_000 + i * 1_000,
                Some(1_000 * (i as u64 + 1)),
            )
        })
        .collect();
    let mut billed_records = Vec::new();
    for r in records {
        billed_records.push(billed(&h, r).await);
    }
    h.cp.store().insert_usage(&billed_records).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let since = rfc3339(now - time::Duration::hours(2));
    let until = rfc3339(now + time::Duration::hours(1));
    let path = format!(
        "/api/spend/export?group_by=model,provider,key&interval=none&since={since}&until={until}"
    );
    let want = get(&h, &path.replace('+', "%2B")).await;
    assert_eq!(want.status, StatusCode::OK, "{}", want.text);

    // A replica wrote the slice's first chunk (rows in the order it read then, which costs
    // changed since) as one row of the only slice, and died.
    let stale = now - time::Duration::minutes(2);
    let mut job = stored_export(None, JobState::Running, Some(stale), None);
    job.params = json!({"export": "spend", "format": "csv",
                        "query": {"group_by": "model,provider,key", "interval": "none",
                                  "since": since, "until": until},
                        "scope": "all", "user_id": null});
    h.cp.store()
        .create_job(&job, &stored_event())
        .await
        .unwrap();
    let cursor = json!({"seq": 1, "rows": 1, "skip": 1, "slice": [0, 0]});
    let progress = Progress {
        done: 1,
        total: None,
        cursor: Some(cursor.to_string()),
        message: None,
    };
    h.cp.store()
        .append_job_output(
            job.id,
            "elsewhere",
            0,
            b"header\nstale row\n",
            &progress,
            stale,
        )
        .await
        .unwrap();
    let id = job.id.to_string();
    let done = finished_as(&id, |p| {
        let h = &h;
        async move { get(h, &p).await }
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let r = get(&h, &format!("/api/jobs/{id}/download")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.text, want.text,
        "the slice is written again, header and all"
    );
}

/// Runs an export as `role` and returns the job's id once it ended.
async fn export_as(o: &Org, role: Role, body: Value) -> String {
    let r = o
        .as_role(role, Method::POST, "/api/jobs/export", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(r.json["params"]["user_id"].is_string(), "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let job = finished_as(&id, |p| async move {
        o.as_role(role, Method::GET, &p, None).await
    })
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_scoped_and_downloaded_only_by_their_creator_and_admins() {
    let o = org().await;
    let member = o.personal_key(Role::Member).to_string();
    let lead = o.personal_key(Role::TeamAdmin).to_string();
    // key-a and the member's and the lead's keys are in team a; key-b in team b.
    let mut records = Vec::new();
    for (i, key) in [&o.key_a, &o.key_b, &member, &lead, &o.key_b]
        .into_iter()
        .enumerate()
    {
        records.push(billed(&o.h, record(&format!("r-{i}"), key, 1_000, Some(10))).await);
    }
    o.h.cp.store().insert_usage(&records).await.unwrap();

    // The team admin's logs export holds team a's requests only, whatever its filters ask.
    let body = json!({"kind": "logs", "query": {}});
    let lead_job = export_as(&o, Role::TeamAdmin, body).await;
    let path = format!("/api/jobs/{lead_job}/download");
    let r = o.as_role(Role::TeamAdmin, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let mut ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["r-0", "r-2", "r-3"]);
    let other_team = json!({"kind": "logs", "query": {"team_id": o.team_b}});
    let id = export_as(&o, Role::TeamAdmin, other_team).await;
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::GET,
            &format!("/api/jobs/{id}/download"),
            None,
        )
        .await;
    assert_eq!(r.text.lines().count(), 1, "the header only: {}", r.text);

    // The member's spend export sums their own key.
    let id = export_as(
        &o,
        Role::Member,
        json!({"kind": "spend", "query": {"group_by": "key"}}),
    )
    .await;
    let r = o
        .as_role(
            Role::Member,
            Method::GET,
            &format!("/api/jobs/{id}/download"),
            None,
        )
        .await;
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0][0], &rows[0][2]), (member.as_str(), "1"));

    // Another's export: neither followed nor downloaded by a member (404, as for no job); a
    // viewer sees it but may not download it; the admin may, and the admin token too.
    for p in [format!("/api/jobs/{lead_job}"), path.clone()] {
        let r = o.as_role(Role::Member, Method::GET, &p, None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    }
    let listed = o
        .as_role(Role::Member, Method::GET, "/api/jobs", None)
        .await;
    assert_eq!(listed.json["count"], 1, "{}", listed.text);
    assert_eq!(listed.json["jobs"][0]["id"], id.as_str());
    let r = o
        .as_role(
            Role::Viewer,
            Method::GET,
            &format!("/api/jobs/{lead_job}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = o.as_role(Role::Viewer, Method::GET, &path, None).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    let r = o.as_role(Role::Admin, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = admin(&o.h, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The team admin lists their own two exports (not the member's).
    let listed = o
        .as_role(Role::TeamAdmin, Method::GET, "/api/jobs", None)
        .await;
    assert_eq!(listed.json["count"], 2, "{}", listed.text);

    // The audit log is exported by admins and viewers only (and the refusal is audited).
    for role in [Role::TeamAdmin, Role::Member] {
        let r = o
            .as_role(
                role,
                Method::POST,
                "/api/jobs/export",
                Some(json!({"kind": "audit"})),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    }
    export_as(&o, Role::Viewer, json!({"kind": "audit"})).await;
    let r = admin(
        &o.h,
        Method::GET,
        "/api/audit-logs?action=job.create&result=failure",
        None,
    )
    .await;
    assert_eq!(r.json["count"], 2, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_follows_its_creators_current_scope() {
    let o = org().await;
    let lead_job = export_as(&o, Role::TeamAdmin, json!({"kind": "logs"})).await;
    let path = format!("/api/jobs/{lead_job}/download");
    let r = o.as_role(Role::TeamAdmin, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let job = admin(&o.h, Method::GET, &format!("/api/jobs/{lead_job}"), None).await;
    let lead = job.json["params"]["user_id"].as_str().unwrap().to_owned();
    assert_eq!(job.json["params"]["scope"], json!({"team": o.team_a}));

    // A queued export of team a, asked for by the lead, is not run once they lead team b.
    let mut queued = stored_export(None, JobState::Queued, None, None);
    queued.params = json!({"export": "logs", "format": "csv", "query": {},
                           "scope": {"team": o.team_a}, "user_id": lead});
    let r = admin(
        &o.h,
        Method::PUT,
        &format!("/api/users/{lead}"),
        Some(json!({"team_id": o.team_b})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    o.h.cp
        .store()
        .create_job(&queued, &stored_event())
        .await
        .unwrap();
    let id = queued.id.to_string();
    let ended = finished_as(&id, |p| {
        let o = &o;
        async move { admin(&o.h, Method::GET, &p, None).await }
    })
    .await;
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(
        ended["message"]
            .as_str()
            .unwrap()
            .contains("role or team changed"),
        "{ended}"
    );

    // Their finished export of team a is no longer theirs to download (404, as for no job);
    // admins still download it.
    let r = o.as_role(Role::TeamAdmin, Method::GET, &path, None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = o.as_role(Role::Admin, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Back in team a, it is theirs again.
    let r = admin(
        &o.h,
        Method::PUT,
        &format!("/api/users/{lead}"),
        Some(json!({"team_id": o.team_a})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = o.as_role(Role::TeamAdmin, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Demoted to member: not theirs either.
    let r = admin(
        &o.h,
        Method::PUT,
        &format!("/api/users/{lead}"),
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = o.as_role(Role::TeamAdmin, Method::GET, &path, None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creator_has_at_most_three_exports_queued_or_running() {
    let o = org().await;
    let done = export_as(&o, Role::Member, json!({"kind": "logs"})).await;
    let r = admin(&o.h, Method::GET, &format!("/api/jobs/{done}"), None).await;
    let member: Uuid = r.json["params"]["user_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Three of the member's exports running on another replica (its heartbeat is fresh).
    let running = OffsetDateTime::now_utc();
    for _ in 0..3 {
        let job = stored_export(Some(member), JobState::Running, Some(running), None);
        o.h.cp
            .store()
            .create_job(&job, &stored_event())
            .await
            .unwrap();
    }
    let body = json!({"kind": "spend", "query": {"group_by": "key"}});
    let r = o
        .as_role(
            Role::Member,
            Method::POST,
            "/api/jobs/export",
            Some(body.clone()),
        )
        .await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{}",
        r.text
    );
    // The refusal is audited; nothing was queued.
    let audited = admin(
        &o.h,
        Method::GET,
        "/api/audit-logs?action=job.create&result=failure",
        None,
    )
    .await;
    assert_eq!(audited.json["count"], 1, "{}", audited.text);
    let listed = o
        .as_role(Role::Member, Method::GET, "/api/jobs", None)
        .await;
    assert_eq!(listed.json["count"], 4, "{}", listed.text);
    // Others are not held back by the member's exports.
    export_as(&o, Role::TeamAdmin, body).await;
}

#[tokio::test]
async fn a_spend_export_holds_at_most_a_million_rows_in_all_as_the_get() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(&h, "/api/virtual-keys", json!({"name": "app"})).await;
    let key = r.json["id"].as_str().unwrap().to_owned();
    let r = billed(&h, record("r-0", &key, 1_000, Some(1))).await;
    h.cp.store().insert_usage(&[r]).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let since = rfc3339(now - time::Duration::days(20));
    let until = rfc3339(now + time::Duration::hours(1));
    // Slices of a week of days: a replica wrote a million rows in the slices before the last
    // one (which holds the one request) and died.
    let stale = now - time::Duration::minutes(2);
    let mut job = stored_export(None, JobState::Running, Some(stale), None);
    job.params = json!({"export": "spend", "format": "csv",
                        "query": {"group_by": "key", "interval": "day",
                                  "since": since, "until": until},
                        "scope": "all", "user_id": null});
    let next = rfc3339(now - time::Duration::days(3));
    job.cursor = Some(json!({"seq": 1000, "rows": 1_000_000, "next": next}).to_string());
    h.cp.store()
        .create_job(&job, &stored_event())
        .await
        .unwrap();
    let id = job.id.to_string();
    let done = finished_as(&id, |p| {
        let h = &h;
        async move { get(h, &p).await }
    })
    .await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("more than 1000000 rows"),
        "{done}"
    );
}

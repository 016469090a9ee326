//! The split deployment with real processes: one control plane on PostgreSQL, three data
//! planes, the Bedrock double. The control plane goes away and comes back, a data plane restarts
//! while it is away, config changes converge, and every request sent ends up as exactly one
//! usage row. Content logging's bodies travel the same way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sqlx::Connection;
use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, free_port};
use tollgate_tests::postgres::TestDatabase;

const AKID: &str = "AKIDSPLITDEPLOYMENT";
const SECRET: &str = "splitSecret/K7MDENG+bPxRfiCYEXAMPLEKEY";
const ADMIN_TOKEN: &str = "admin-token-for-the-split-e2e-test";
const JOIN_TOKEN: &str = "join-token-for-the-split-e2e-test";
const RECONNECT_MAX_DELAY_MS: u64 = 1_000;

struct Cluster {
    http: reqwest::Client,
    cp_admin: String,
    cp_grpc: String,
    db: TestDatabase,
    secret_key: String,
    sent: AtomicU64,
}

impl Cluster {
    async fn start_cp(&self) -> TollgateProcess {
        TollgateProcess::spawn_with(TollgateOptions {
            args: vec![
                "control-plane".into(),
                "--listen".into(),
                self.cp_admin.clone(),
                "--grpc-listen".into(),
                self.cp_grpc.clone(),
            ],
            envs: vec![
                ("TOLLGATE_DATABASE_URL".into(), self.db.url.clone()),
                ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
                ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
                ("TOLLGATE_SECRET_KEY".into(), self.secret_key.clone()),
            ],
            health_path: "/openapi.json".into(),
            ..TollgateOptions::default()
        })
        .await
        .expect("control plane starts")
    }

    /// Starts `n` data planes, each on a data directory and a port of its own (returned too,
    /// to restart one on them).
    async fn start_dps(
        &self,
        n: usize,
    ) -> (Vec<tempfile::TempDir>, Vec<String>, Vec<TollgateProcess>) {
        let dirs: Vec<tempfile::TempDir> =
            (0..n).map(|_| tempfile::tempdir().expect("dir")).collect();
        let listens: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port().expect("port")))
            .collect();
        let mut dps = Vec::new();
        for (dir, listen) in dirs.iter().zip(&listens) {
            dps.push(self.start_dp(dir.path().to_owned(), listen).await);
        }
        (dirs, listens, dps)
    }

    /// Starts a data plane on `data_dir`; it is healthy once it serves a config (`/ready`).
    async fn start_dp(&self, data_dir: PathBuf, listen: &str) -> TollgateProcess {
        TollgateProcess::spawn_with(TollgateOptions {
            args: vec![
                "data-plane".into(),
                "--listen".into(),
                listen.into(),
                "--control-plane".into(),
                format!("http://{}", self.cp_grpc),
            ],
            envs: vec![
                ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
                ("AWS_ACCESS_KEY_ID".into(), AKID.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
                // With the default 10 s cap, a data plane that failed to reach the control plane
                // for a while may wait up to 10 s before its next attempt; the test would time
                // the jitter rather than the behaviour.
                (
                    "TOLLGATE_RECONNECT_MAX_DELAY_MS".into(),
                    RECONNECT_MAX_DELAY_MS.to_string(),
                ),
            ],
            data_dir: Some(data_dir),
            health_path: "/ready".into(),
            ..TollgateOptions::default()
        })
        .await
        .expect("data plane starts and becomes ready")
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.cp_admin))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// One inference request; every one counts, whatever its outcome (each makes a usage row).
    async fn infer(&self, dp: &TollgateProcess, vk: &str, model: &str) -> u16 {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.http
            .post(dp.url("/anthropic/v1/messages"))
            .header("x-api-key", vk)
            .json(&json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_restart_from_disk_convergence_and_exact_usage() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let (cluster, mut cp) = cluster_with_bedrock(&double, "tollgate_split").await;

    // The admin API always wants the token in this role.
    let resp = cluster
        .http
        .get(format!("http://{}/api/providers", cluster.cp_admin))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 401);

    let (s, b) = cluster
        .admin(
            reqwest::Method::POST,
            "/api/virtual-keys",
            Some(json!({"name": "team", "provider": "bedrock"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let vk = b["value"].as_str().expect("vk").to_owned();

    let (dirs, listens, mut dps) = cluster.start_dps(3).await;
    // Ready means a config is loaded; it is the one with the virtual key.
    for dp in &dps {
        eventually(
            "data plane serves the virtual key",
            Duration::from_secs(10),
            || async { cluster.infer(dp, &vk, "claude-sonnet-4-6").await == 200 },
        )
        .await;
    }
    for _ in 0..5 {
        for dp in &dps {
            assert_eq!(cluster.infer(dp, &vk, "claude-sonnet-4-6").await, 200);
        }
    }

    // The fleet view knows the three nodes and that none lags.
    eventually(
        "fleet view lists three up-to-date nodes",
        Duration::from_secs(10),
        || async {
            let (s, v) = cluster
                .admin(reqwest::Method::GET, "/api/data-planes", None)
                .await;
            let nodes = v["data_planes"].as_array().cloned().unwrap_or_default();
            s == 200 && nodes.len() == 3 && nodes.iter().all(|n| n["lagging"] == false)
        },
    )
    .await;

    // Control plane down: the data planes keep serving.
    assert!(
        cp.terminate(Duration::from_secs(15)),
        "control plane stops on SIGTERM"
    );
    for _ in 0..5 {
        for dp in &dps {
            assert_eq!(cluster.infer(dp, &vk, "claude-sonnet-4-6").await, 200);
        }
    }
    // Requests with a bad key are refused and are not usage: they are not counted in `sent`,
    // and the row count below stays exact; the data plane counts them in its metrics.
    const BAD_KEY_REQUESTS: u64 = 20;
    for _ in 0..BAD_KEY_REQUESTS {
        let status = cluster
            .http
            .post(dps[1].url("/anthropic/v1/messages"))
            .header("x-api-key", "sk-tg-not-a-real-key")
            .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 401);
    }

    // A data plane restarts while the control plane is away: it serves from its disk cache.
    assert!(
        dps[0].terminate(Duration::from_secs(15)),
        "data plane stops on SIGTERM"
    );
    dps[0] = cluster
        .start_dp(dirs[0].path().to_owned(), &listens[0])
        .await;
    for _ in 0..5 {
        assert_eq!(cluster.infer(&dps[0], &vk, "claude-sonnet-4-6").await, 200);
    }

    // The control plane returns; a change made then reaches all three data planes.
    let cp = cluster.start_cp().await;
    let mut key = cluster
        .admin(reqwest::Method::GET, "/api/providers/bedrock/keys", None)
        .await
        .1["keys"][0]
        .clone();
    let key_id = key["id"].as_str().expect("key id").to_owned();
    key["aliases"]["claude-opus-9"] = json!("global.anthropic.claude-opus-9");
    let (s, b) = cluster
        .admin(
            reqwest::Method::PUT,
            &format!("/api/providers/bedrock/keys/{key_id}"),
            Some(json!({"aliases": key["aliases"]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // Every data plane retries at least once a second, so each finds the control plane and
    // loads the change within a few seconds (generous bound for a loaded CI machine).
    for dp in &dps {
        eventually(
            "the new alias is live on every data plane",
            Duration::from_secs(15),
            || async { cluster.infer(dp, &vk, "claude-opus-9").await == 200 },
        )
        .await;
    }
    assert!(
        double
            .requests()
            .iter()
            .any(|r| r.model_id.as_deref() == Some("global.anthropic.claude-opus-9"))
    );

    // Every request sent is one usage row, once, after all the outages.
    let sent = cluster.sent.load(Ordering::SeqCst);
    let mut conn = sqlx::PgConnection::connect(&cluster.db.url)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rows = 0i64;
    while Instant::now() < deadline {
        rows = sqlx::query_scalar("SELECT count(*) FROM usage_records")
            .fetch_one(&mut conn)
            .await
            .expect("count usage");
        if rows as u64 >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rows as u64, sent, "usage rows vs requests sent");
    // Operators see delivery on each data plane: everything acknowledged, nothing dropped. The
    // control plane acknowledges a batch after committing it, so the last rows can be visible a
    // moment before the data plane has processed their ack.
    for dp in &dps {
        let deadline = Instant::now() + Duration::from_secs(10);
        let delivered = |m: &str| {
            m.contains("tollgate_usage_records_dropped_total 0\n")
                && m.contains("tollgate_control_plane_connected 1\n")
                && m.contains("tollgate_usage_records_pending 0\n")
        };
        let mut metrics = String::new();
        while Instant::now() < deadline {
            metrics = cluster
                .http
                .get(dp.url("/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            if delivered(&metrics) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(delivered(&metrics), "{metrics}");
    }
    let metrics = cluster
        .http
        .get(dps[1].url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!(
            "tollgate_requests_refused_total{{reason=\"auth\"}} {BAD_KEY_REQUESTS}\n"
        )),
        "{metrics}"
    );
    // The control plane's `/metrics` (admin port): its three data planes, and the usage they
    // delivered to it since it came back (what they served while it was away).
    let cp_metrics = cluster
        .http
        .get(cp.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sample = |series: &str| {
        cp_metrics.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    assert_eq!(
        sample("tollgate_data_planes{state=\"connected\"}"),
        Some(3.0),
        "{cp_metrics}"
    );
    assert!(
        sample("tollgate_usage_ingested_records_total{outcome=\"new\"}").is_some_and(|n| n >= 20.0),
        "{cp_metrics}"
    );
    assert!(cp_metrics.contains("tollgate_listener_connections_open{listener=\"grpc\"}"));
    // Once everything is acknowledged nothing more arrives: still one row per request.
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT request_id) FROM usage_records")
            .fetch_one(&mut conn)
            .await
            .expect("count usage");
    assert_eq!(
        rows as u64, sent,
        "usage rows vs requests sent, after every ack"
    );
    assert_eq!(distinct, rows, "no request counted twice");
    drop(conn);
    drop(dps);
}

/// A cluster with the Bedrock double as its provider, its `bedrock` provider and key.
async fn cluster_with_bedrock(
    double: &BedrockDouble,
    db_prefix: &str,
) -> (Cluster, TollgateProcess) {
    let cluster = Cluster {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        cp_admin: format!("127.0.0.1:{}", free_port().expect("port")),
        cp_grpc: format!("127.0.0.1:{}", free_port().expect("port")),
        db: TestDatabase::create(db_prefix).await,
        secret_key: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        sent: AtomicU64::new(0),
    };
    let cp = cluster.start_cp().await;
    let (s, b) = cluster
        .admin(
            reqwest::Method::POST,
            "/api/providers",
            Some(json!({"provider": "bedrock", "network_config": {"base_url": double.base_url()}})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = cluster
        .admin(reqwest::Method::POST, "/api/providers/bedrock/keys", Some(json!({
            "name": "bedrock-key", "models": ["*"], "weight": 1.0,
            "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
            "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                                   "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}})))
        .await;
    assert_eq!(s, 201, "{b}");
    (cluster, cp)
}

impl Cluster {
    async fn virtual_key(&self, body: Value) -> String {
        let (s, b) = self
            .admin(reqwest::Method::POST, "/api/virtual-keys", Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
        b["value"].as_str().expect("value").to_owned()
    }

    async fn send(&self, dp_url: String, vk: String, body: Value) -> u16 {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.http
            .post(format!("{dp_url}/anthropic/v1/messages"))
            .header("x-api-key", vk)
            .json(&body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

/// Three data planes share every limit: each admits its third (the control plane's fleet
/// share), so 180 concurrent requests against 60 per minute get exactly 60 answers, and a $1
/// budget is never overspent across the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_three_data_planes() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let (cluster, mut cp) = cluster_with_bedrock(&double, "tollgate_fleet").await;
    let probe = cluster
        .virtual_key(json!({"name": "probe", "provider": "bedrock"}))
        .await;
    let rpm = cluster
        .virtual_key(json!({"name": "rpm", "provider": "bedrock",
            "rate_limit": {"request_max_limit": 60, "request_reset_duration": "1m"}}))
        .await;
    let budget = cluster
        .virtual_key(json!({"name": "budget", "provider": "bedrock",
            "budgets": [{"max_limit": 1, "reset_duration": "1d", "calendar_aligned": true}]}))
        .await;
    // For the outage below: 6 requests an hour, closed and open when allowances run out.
    let per_hour = |name: &str, fail_open: bool| {
        json!({"name": name, "provider": "bedrock", "fail_open": fail_open,
               "rate_limit": {"request_max_limit": 6, "request_reset_duration": "1h"}})
    };
    let closed = cluster.virtual_key(per_hour("closed", false)).await;
    let open = cluster.virtual_key(per_hour("open", true)).await;
    let (dirs, listens, mut dps) = cluster.start_dps(3).await;
    for dp in &dps {
        eventually(
            "a data plane serves the keys",
            Duration::from_secs(10),
            || async { cluster.infer(dp, &probe, "claude-sonnet-4-6").await == 200 },
        )
        .await;
        eventually(
            "a data plane holds a third of every limit",
            Duration::from_secs(10),
            || async { dp.output().contains("of=3") },
        )
        .await;
    }
    let urls: Vec<String> = dps.iter().map(|dp| dp.url("")).collect();

    // 60 requests per minute: 180 at once, 60 to each data plane, in one minute window (start
    // early in a minute so the window does not turn during the burst).
    let second = time::OffsetDateTime::now_utc().second();
    if second > 30 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    let small = json!({"model": "claude-sonnet-4-6", "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}]});
    let burst = (0..180).map(|i| cluster.send(urls[i % 3].clone(), rpm.clone(), small.clone()));
    let statuses = futures::future::join_all(burst).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (60, 120), "{statuses:?}");

    // $1 a day: requests whose prompt writes 25,000 tokens to the cache ($0.09375 each at
    // Sonnet 4.6's $3.75 per million), with a prompt of about 60 KB (reserved at its bound).
    let padding = "x".repeat(60_000);
    let costly = json!({"model": "claude-sonnet-4-6", "max_tokens": 100,
        "messages": [{"role": "user", "content": format!("[double:cache:0:25000] {padding}")}]});
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let wave = (0..3).map(|i| cluster.send(urls[i].clone(), budget.clone(), costly.clone()));
        statuses.extend(futures::future::join_all(wave).await);
    }
    let answered = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        answered >= 3,
        "every data plane answered within its share: {statuses:?}"
    );
    assert!(statuses.contains(&429), "the budget ran out: {statuses:?}");

    // The stored costs (every data plane's usage, delivered to the control plane) stay within $1.
    let sent = cluster.sent.load(Ordering::SeqCst) as i64;
    let mut conn = sqlx::PgConnection::connect(&cluster.db.url)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_records")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        if rows >= sent {
            break;
        }
        assert!(Instant::now() < deadline, "{rows} usage rows of {sent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (admitted, spent): (i64, i64) = sqlx::query_as(
        "SELECT count(*), CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT) FROM usage_records u \
         JOIN virtual_keys v ON v.id::text = u.virtual_key_id WHERE v.name = 'budget' AND u.status = 200",
    )
    .fetch_one(&mut conn)
    .await
    .expect("spend");
    println!(
        "fleet of 3: {ok} of 180 requests answered against 60 per minute; {answered} of {} \
         costly requests answered against $1, spending {spent} n$",
        statuses.len()
    );
    assert_eq!(admitted as usize, answered);
    assert!(
        spent > 0 && spent <= 1_000_000_000,
        "spent {spent} n$ of a $1 budget"
    );

    // The control plane goes away. Every data plane keeps its share: a fail-closed key gets 2 of
    // its 6 an hour on one data plane; a fail-open key, once that share is used, is admitted up
    // to its limit there.
    assert!(cp.terminate(Duration::from_secs(10)), "control plane stops");
    eventually(
        "the data plane notices",
        Duration::from_secs(10),
        || async {
            let ready: Value = cluster
                .http
                .get(format!("{}/ready", urls[0]))
                .send()
                .await
                .expect("ready")
                .json()
                .await
                .expect("json");
            ready["control_plane_connected"] == false
        },
    )
    .await;
    let mut answered = Vec::new();
    for vk in [&closed, &open] {
        let mut ok = 0;
        for _ in 0..8 {
            if cluster
                .send(urls[0].clone(), vk.clone(), small.clone())
                .await
                == 200
            {
                ok += 1;
            }
        }
        answered.push(ok);
    }
    assert_eq!(
        answered,
        [2, 6],
        "fail-closed: its share; fail-open: the limit"
    );

    // That data plane restarts while the control plane is still away: it serves its cached
    // config with its stored share (its counters start again from zero, the documented slack),
    // so the fail-closed key gets another share, not the whole limit.
    assert!(
        dps[0].terminate(Duration::from_secs(15)),
        "data plane stops"
    );
    dps[0] = cluster
        .start_dp(dirs[0].path().to_owned(), &listens[0])
        .await;
    assert!(
        dps[0].output().contains("enforcing the stored fleet share"),
        "{}",
        dps[0].output()
    );
    let mut ok = 0;
    for _ in 0..8 {
        if cluster
            .send(urls[0].clone(), closed.clone(), small.clone())
            .await
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 2, "the stored share of 6, not all of it");
}

/// Allowance moves to where it is used: with three data planes and all of a key's traffic on
/// one of them, that one answers the whole limit (30 an hour), not its third. While allowance
/// moves, its refusals are temporary (429 `retry-after: 1`, retried here as Claude Code
/// does); once the fleet has nothing left, the refusal is the limit's own. The usage endpoint
/// shows the requests in flight on every data plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowance_moves_to_the_busy_data_plane() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let (cluster, _cp) = cluster_with_bedrock(&double, "tollgate_rebalance").await;
    let (s, created) = cluster
        .admin(
            reqwest::Method::POST,
            "/api/virtual-keys",
            Some(json!({"name": "busy", "provider": "bedrock",
                "rate_limit": {"request_max_limit": 30, "request_reset_duration": "1h"}})),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let vk = created["value"].as_str().expect("value").to_owned();
    let usage_path = format!(
        "/api/virtual-keys/{}/usage",
        created["id"].as_str().expect("id")
    );
    let probe = cluster
        .virtual_key(json!({"name": "probe", "provider": "bedrock"}))
        .await;
    let (_dirs, _listens, dps) = cluster.start_dps(3).await;
    for dp in &dps {
        eventually(
            "a data plane serves the keys with its third of every limit",
            Duration::from_secs(10),
            || async {
                cluster.infer(dp, &probe, "claude-sonnet-4-6").await == 200
                    && dp.output().contains("of=3")
            },
        )
        .await;
    }

    // Requests in flight on two data planes show in the usage endpoint, and go away.
    let slow = json!({"model": "claude-sonnet-4-6", "max_tokens": 32,
        "messages": [{"role": "user", "content": "[double:slow:4000] hi"}]});
    let held = futures::future::join_all(
        dps[1..]
            .iter()
            .map(|dp| cluster.send(dp.url(""), vk.clone(), slow.clone())),
    );
    let watch = async {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && seen < 2 {
            let (s, usage) = cluster.admin(reqwest::Method::GET, &usage_path, None).await;
            assert_eq!(s, 200, "{usage}");
            seen = seen.max(usage["in_flight"].as_u64().expect("in_flight"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };
    let (statuses, seen) = tokio::join!(held, watch);
    assert_eq!(statuses, [200, 200]);
    assert_eq!(
        seen, 2,
        "two requests in flight, one on each of two data planes"
    );
    eventually(
        "nothing in flight once they end",
        Duration::from_secs(5),
        || async {
            let (_, usage) = cluster.admin(reqwest::Method::GET, &usage_path, None).await;
            usage["in_flight"] == 0
        },
    )
    .await;

    // Everything else goes to the first data plane; it gets what the others do not use.
    let small = json!({"model": "claude-sonnet-4-6", "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}]});
    let (mut ok, mut temporary, mut last) = (0, 0, String::new());
    for _ in 0..120 {
        cluster.sent.fetch_add(1, Ordering::SeqCst);
        let resp = cluster
            .http
            .post(dps[0].url("/anthropic/v1/messages"))
            .header("x-api-key", &vk)
            .json(&small)
            .send()
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = resp.json().await.expect("json");
        match status {
            200 => ok += 1,
            429 => {
                last = body["error"]["message"].as_str().unwrap_or("").to_owned();
                if !last.contains("being moved here") {
                    break;
                }
                temporary += 1;
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => panic!("{other}: {body}"),
        }
    }
    println!(
        "one busy data plane of 3: {ok} answered of 30 an hour (2 answered elsewhere), \
         {temporary} temporary refusals while allowance moved"
    );
    assert!(
        last.contains("may send 30 requests per 1h"),
        "the limit's own refusal at the end: {last}"
    );
    assert_eq!(ok, 28, "all that is left of 30 after the two slow requests");
    assert!(temporary < 20, "{temporary} temporary refusals");
}

/// A provider key that keeps failing is ejected by the data plane that saw it fail: its
/// `/metrics` says so, the control plane's fleet view names the key under that node (and not
/// under the other node), and requests no longer wait on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_key_shows_in_metrics_and_the_fleet_view() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let (cluster, _cp) = cluster_with_bedrock(&double, "tollgate_ejection").await;
    let vk = cluster
        .virtual_key(json!({"name": "ejection", "provider": "bedrock"}))
        .await;
    let (_dirs, _listens, dps) = cluster.start_dps(2).await;
    for dp in &dps {
        eventually("the data plane serves", Duration::from_secs(10), || async {
            cluster.infer(dp, &vk, "claude-sonnet-4-6").await == 200
        })
        .await;
    }
    let (_, keys) = cluster
        .admin(reqwest::Method::GET, "/api/providers/bedrock/keys", None)
        .await;
    let key_id = keys["keys"][0]["id"].as_str().expect("key id").to_owned();
    let metric =
        format!("tollgate_provider_key_ejected{{provider=\"bedrock\",key_id=\"{key_id}\"}}");
    let metrics = |dp: &TollgateProcess| {
        let url = dp.url("/metrics");
        let http = cluster.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        }
    };
    assert!(metrics(&dps[0]).await.contains(&format!("{metric} 0")));

    // Bedrock fails every request: five failures in a row on the first data plane eject the key.
    double.set_fault(Some("unavailable"));
    for _ in 0..5 {
        assert_eq!(cluster.infer(&dps[0], &vk, "claude-sonnet-4-6").await, 529);
    }
    assert!(metrics(&dps[0]).await.contains(&format!("{metric} 1")));
    assert!(metrics(&dps[1]).await.contains(&format!("{metric} 0")));
    eventually(
        "the fleet view names the ejected key under the first node",
        Duration::from_secs(5),
        || async {
            let (_, list) = cluster
                .admin(reqwest::Method::GET, "/api/data-planes", None)
                .await;
            let planes = list["data_planes"].as_array().cloned().unwrap_or_default();
            let ejected: Vec<(String, Value)> = planes
                .iter()
                .map(|p| {
                    (
                        p["address"].as_str().unwrap_or("").to_owned(),
                        p["ejected_keys"].clone(),
                    )
                })
                .collect();
            ejected.iter().any(|(address, keys)| {
                dps[0].url("").contains(address.as_str())
                    && keys.as_array().is_some_and(|k| {
                        k.len() == 1
                            && k[0]["key_id"] == key_id.as_str()
                            && k[0]["key_name"] == "bedrock-key"
                            && k[0]["ejections_total"] == 1
                            && k[0]["until"].is_string()
                    })
            }) && ejected
                .iter()
                .filter(|(address, _)| !dps[0].url("").contains(address.as_str()))
                .all(|(_, keys)| keys.as_array().is_some_and(Vec::is_empty))
        },
    )
    .await;
    // The only key, ejected, is still the last resort: the request is tried, not refused.
    let tried = double.requests().len();
    assert_eq!(cluster.infer(&dps[0], &vk, "claude-sonnet-4-6").await, 529);
    assert_eq!(double.requests().len(), tried + 1);
}

/// Content logging in a split deployment: a team turns it on, its key's bodies travel from the
/// data plane through the usage spool and gRPC to the control plane's store; the stream's
/// recorded answer is exactly the events the client read (real event-stream framing from the
/// Bedrock double, SigV4 checked), an OpenAI-format request is recorded as the gateway's
/// Anthropic translation, a credential in a prompt is masked, and a key outside the team has
/// nothing recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_logging_records_bodies_through_a_split_data_plane() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let (cluster, _cp) = cluster_with_bedrock(&double, "tollgate_content").await;
    let (s, team) = cluster
        .admin(
            reqwest::Method::POST,
            "/api/teams",
            Some(json!({"name": "recorded", "content_logging": {"enabled": true, "max_body_bytes": 8192}})),
        )
        .await;
    assert_eq!(s, 201, "{team}");
    let team_id = team["id"].as_str().expect("id").to_owned();
    let logged = cluster
        .virtual_key(json!({"name": "logged", "provider": "bedrock", "team_id": team_id}))
        .await;
    let plain = cluster
        .virtual_key(json!({"name": "plain", "provider": "bedrock"}))
        .await;
    let (_dirs, _listens, dps) = cluster.start_dps(1).await;
    let dp = &dps[0];

    let secret = "AKIAIOSFODNN7EXAMPLE";
    let streamed = cluster
        .http
        .post(dp.url("/anthropic/v1/messages"))
        .header("x-api-key", &logged)
        .json(
            &json!({"model": "claude-sonnet-4-6", "max_tokens": 32, "stream": true,
            "messages": [{"role": "user", "content": format!("deploy with {secret}")}]}),
        )
        .send()
        .await
        .expect("stream");
    assert_eq!(streamed.status(), 200);
    let stream_id = streamed.headers()["request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let events = streamed.text().await.expect("events");
    assert!(events.contains("event: message_stop"), "{events}");

    let chat = cluster
        .http
        .post(dp.url("/openai/v1/chat/completions"))
        .bearer_auth(&logged)
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello from the OpenAI SDK"}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(chat.status(), 200);
    let chat_id = chat.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();

    let other = cluster
        .http
        .post(dp.url("/anthropic/v1/messages"))
        .header("x-api-key", &plain)
        .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 8,
            "messages": [{"role": "user", "content": "not recorded"}]}))
        .send()
        .await
        .expect("plain");
    assert_eq!(other.status(), 200);
    let plain_id = other.headers()["request-id"]
        .to_str()
        .expect("id")
        .to_owned();

    let content = |id: String| {
        let cluster = &cluster;
        async move {
            cluster
                .admin(
                    reqwest::Method::GET,
                    &format!("/api/logs/{id}/content"),
                    None,
                )
                .await
        }
    };
    eventually(
        "the bodies reach the control plane",
        Duration::from_secs(15),
        || async {
            content(chat_id.clone()).await.0 == 200 && content(stream_id.clone()).await.0 == 200
        },
    )
    .await;

    let (_, c) = content(stream_id.clone()).await;
    assert_eq!(
        c["response"]["body"],
        events.as_str(),
        "the events the client read"
    );
    assert_eq!(c["response"]["truncated"], false);
    let request = c["request"]["body"].as_str().expect("request");
    assert!(!request.contains(secret), "{request}");
    assert!(
        request.contains(&format!("deploy with {}", "*".repeat(secret.len()))),
        "{request}"
    );

    let (_, c) = content(chat_id).await;
    let request: Value =
        serde_json::from_str(c["request"]["body"].as_str().expect("text")).expect("JSON");
    assert_eq!(request["max_tokens"], 16, "{request}");
    assert_eq!(
        request["messages"][0]["content"][0]["text"], "hello from the OpenAI SDK",
        "the Anthropic translation: {request}"
    );
    let answer: Value =
        serde_json::from_str(c["response"]["body"].as_str().expect("text")).expect("JSON");
    assert_eq!(answer["type"], "message", "an Anthropic Message: {answer}");

    // The plain key's request is logged, without bodies.
    eventually(
        "the plain request is logged",
        Duration::from_secs(15),
        || async {
            cluster
                .admin(reqwest::Method::GET, &format!("/api/logs/{plain_id}"), None)
                .await
                .0
                == 200
        },
    )
    .await;
    assert_eq!(content(plain_id).await.0, 404);

    let (_, audit) = cluster
        .admin(
            reqwest::Method::GET,
            "/api/audit-logs?action=log.content.read&limit=100",
            None,
        )
        .await;
    let reads = audit["audit_logs"].as_array().expect("rows").len();
    assert!(
        reads >= 2,
        "every read returning bodies is audited: {audit}"
    );
}

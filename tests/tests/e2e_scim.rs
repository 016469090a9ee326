//! SCIM deprovisioning against the real binary: how long after an identity provider's
//! `PATCH active:false` (Okta's shape) is answered does a data plane refuse the user's personal
//! key? Measured in the split deployment (control plane on PostgreSQL, the data plane a
//! separate process fed over gRPC) and all-in-one (same PostgreSQL store, in-process snapshot).
//!
//! The personal key is created by a login, which these tests do not drive (OIDC is not part of
//! this crate's doubles): the test opens the same PostgreSQL database and calls
//! `IdentityStore::provision_user` for the user SCIM created, exactly as a login does; the
//! running control plane hears of the change through PostgreSQL `NOTIFY` and publishes it. The
//! key's value is derived from the master key the test gave the binary.
//!
//! The figure printed (and asserted under 10 s) is the time from the SCIM response until every
//! data plane (two in the split deployment) answers an inference request with that key 401 (requests sent back to back), over
//! several rounds; the time from sending the PATCH is printed too. The control plane answers
//! after it has published the snapshot, so the data plane usually has it before the client
//! reads the response.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tollgate_control_plane::PostgresStore;
use tollgate_control_plane::crypto::derive_key;
use tollgate_control_plane::identity::{GroupMappings, Profile, personal_key_value};
use tollgate_control_plane::model::AuditEvent;
use tollgate_control_plane::store::IdentityStore as _;
use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, free_port};
use tollgate_tests::postgres::TestDatabase;

const AKID: &str = "AKIDSCIMDEPROVISION";
const SECRET: &str = "scimSecret/K7MDENG+bPxRfiCYEXAMPLEKEY";
const ADMIN_TOKEN: &str = "admin-token-for-the-scim-e2e-test";
const JOIN_TOKEN: &str = "join-token-for-the-scim-e2e-test";
const MASTER: [u8; 32] = [11u8; 32];
const ROUNDS: usize = 5;
const LIMIT: Duration = Duration::from_secs(10);

struct Gateway {
    http: reqwest::Client,
    /// Serves `/api` and `/scim/v2`.
    admin: String,
    /// Every data plane serving inference.
    inference: Vec<String>,
    scim_token: String,
}

impl Gateway {
    async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn scim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.admin))
            .bearer_auth(&self.scim_token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("SCIM call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn infer(&self, base: &str, key: &str) -> u16 {
        self.http
            .post(format!("{base}/anthropic/v1/messages"))
            .header("x-api-key", key)
            .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Waits until every data plane answers `status` for the key; returns how long it took.
    async fn wait_for(&self, key: &str, status: u16, timeout: Duration) -> Duration {
        let start = Instant::now();
        for base in &self.inference {
            while self.infer(base, key).await != status {
                assert!(
                    start.elapsed() < timeout,
                    "the data plane at {base} did not answer {status} within {timeout:?}"
                );
            }
        }
        start.elapsed()
    }
}

fn secret_key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(MASTER)
}

/// Provider, provider key, SCIM token, a SCIM user and their personal key; returns the key.
async fn set_up(gw: &mut Gateway, double: &BedrockDouble, db_url: &str) -> (String, String) {
    let (s, b) = gw
        .admin_call(
            reqwest::Method::POST,
            "/api/providers",
            Some(json!({"provider": "bedrock", "network_config": {"base_url": double.base_url()}})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .admin_call(reqwest::Method::POST, "/api/providers/bedrock/keys", Some(json!({
            "name": "bedrock-key", "models": ["*"], "weight": 1.0,
            "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
            "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                                   "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}})))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .admin_call(reqwest::Method::POST, "/api/scim/token", None)
        .await;
    assert_eq!(s, 201, "{b}");
    gw.scim_token = b["token"].as_str().expect("token").to_owned();

    let (s, b) = gw
        .scim(
            reqwest::Method::POST,
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": "dana@example.com", "active": true,
                   "name": {"givenName": "Dana", "familyName": "D"},
                   "emails": [{"value": "dana@example.com", "primary": true}]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let user_id = b["id"].as_str().expect("id").to_owned();

    // Her first login, as the OIDC flow would run it, against the same database.
    let store = PostgresStore::connect(db_url).await.expect("store");
    let secret = derive_key(&MASTER, b"tollgate personal keys v1");
    let keyer = move |u: uuid::Uuid, g: u64| personal_key_value(&secret, u, g);
    let provisioned = store
        .provision_user(
            &Profile {
                issuer: Some("https://idp.example".into()),
                subject: Some("dana".into()),
                user_name: "dana@example.com".into(),
                ..Profile::default()
            },
            &GroupMappings::default(),
            &keyer,
            &AuditEvent {
                actor: "test-login".into(),
                action: "user.login".into(),
                target: format!("users/{user_id}"),
                details: json!({}),
            },
        )
        .await
        .expect("provision");
    assert_eq!(
        provisioned.user.id.to_string(),
        user_id,
        "the SCIM user signs in"
    );
    assert!(provisioned.key_created);
    let key = personal_key_value(&secret, provisioned.user.id, 0);
    (user_id, key)
}

/// Deactivates and reactivates the user `ROUNDS` times; returns each revocation latency.
async fn measure(gw: &Gateway, user_id: &str, key: &str, deployment: &str) -> Vec<Duration> {
    gw.wait_for(key, 200, Duration::from_secs(20)).await;
    let mut figures = Vec::new();
    for round in 0..ROUNDS {
        let sent = Instant::now();
        let (s, b) = gw
            .scim(
                reqwest::Method::PATCH,
                &format!("/Users/{user_id}"),
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "value": {"active": false}}]}),
            )
            .await;
        let answered = Instant::now();
        assert_eq!((s, &b["active"]), (200, &json!(false)), "{b}");
        gw.wait_for(key, 401, LIMIT).await;
        let latency = answered.elapsed();
        eprintln!(
            "{deployment}: round {round}: revocation reached every data plane in {} ms \
             ({} ms after the PATCH was sent; the SCIM call took {} ms)",
            latency.as_millis(),
            sent.elapsed().as_millis(),
            (answered - sent).as_millis()
        );
        assert!(latency < LIMIT, "{latency:?}");
        figures.push(latency);

        // Entra ID's shape brings her back.
        let (s, b) = gw
            .scim(
                reqwest::Method::PATCH,
                &format!("/Users/{user_id}"),
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "Replace", "path": "active", "value": "True"}]}),
            )
            .await;
        assert_eq!((s, &b["active"]), (200, &json!(true)), "{b}");
        gw.wait_for(key, 200, LIMIT).await;
    }
    let max = figures.iter().max().copied().unwrap_or_default();
    let mut sorted = figures.clone();
    sorted.sort();
    eprintln!(
        "{deployment}: revocation reached every data plane in {} ms (median of {ROUNDS}), max {} ms",
        sorted[ROUNDS / 2].as_millis(),
        max.as_millis()
    );
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_deactivation_reaches_a_separate_data_plane_quickly() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let db = TestDatabase::create("tollgate_scim_split").await;
    let cp_admin = format!("127.0.0.1:{}", free_port().expect("port"));
    let cp_grpc = format!("127.0.0.1:{}", free_port().expect("port"));
    let cp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "control-plane".into(),
            "--listen".into(),
            cp_admin.clone(),
            "--grpc-listen".into(),
            cp_grpc.clone(),
        ],
        envs: vec![
            ("TOLLGATE_DATABASE_URL".into(), db.url.clone()),
            ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("TOLLGATE_SECRET_KEY".into(), secret_key_b64()),
        ],
        health_path: "/openapi.json".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("control plane starts");
    let mut gw = Gateway {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        admin: format!("http://{cp_admin}"),
        inference: Vec::new(),
        scim_token: String::new(),
    };
    let (user_id, key) = set_up(&mut gw, &double, &db.url).await;

    // Two data planes: the revocation must reach every one.
    let mut dps = Vec::new();
    for _ in 0..2 {
        let dp = TollgateProcess::spawn_with(TollgateOptions {
            args: vec![
                "data-plane".into(),
                "--control-plane".into(),
                format!("http://{cp_grpc}"),
            ],
            envs: vec![
                ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
                ("AWS_ACCESS_KEY_ID".into(), AKID.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
            ],
            health_path: "/ready".into(),
            ..TollgateOptions::default()
        })
        .await
        .expect("data plane starts");
        dps.push(dp);
    }
    gw.inference = dps.iter().map(|dp| dp.base_url().to_owned()).collect();

    measure(&gw, &user_id, &key, "split").await;

    // Deleting the user removes the key for good.
    let resp = gw
        .http
        .delete(format!("{}/scim/v2/Users/{user_id}", gw.admin))
        .bearer_auth(&gw.scim_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    gw.wait_for(&key, 401, LIMIT).await;

    // A refused SCIM call is logged, without the token it presented.
    let wrong = "tgscim_wrong-token-that-must-not-be-logged";
    let resp = gw
        .http
        .get(format!("{}/scim/v2/Users", gw.admin))
        .bearer_auth(wrong)
        .send()
        .await
        .expect("refused call");
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.expect("SCIM error");
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let logs = format!("{}{}", cp.stdout(), cp.stderr());
    assert!(logs.contains("SCIM request refused"), "{logs}");
    assert!(!logs.contains("must-not-be-logged"));

    // Nothing secret in the logs: neither the SCIM token nor the personal key.
    for p in std::iter::once(&cp).chain(&dps) {
        let logs = format!("{}{}", p.stdout(), p.stderr());
        assert!(
            !logs.contains(&gw.scim_token[7..]),
            "SCIM token in the logs"
        );
        assert!(!logs.contains(&key[6..]), "personal key in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_deactivation_reaches_the_all_in_one_data_plane_quickly() {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let db = TestDatabase::create("tollgate_scim_aio").await;
    let gw_process = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![],
        envs: vec![
            ("TOLLGATE_DATABASE_URL".into(), db.url.clone()),
            ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("TOLLGATE_SECRET_KEY".into(), secret_key_b64()),
            ("AWS_ACCESS_KEY_ID".into(), AKID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        ],
        ..TollgateOptions::default()
    })
    .await
    .expect("gateway starts");
    let base = gw_process.base_url().to_owned();
    let mut gw = Gateway {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        admin: base.clone(),
        inference: vec![base],
        scim_token: String::new(),
    };
    let (user_id, key) = set_up(&mut gw, &double, &db.url).await;
    measure(&gw, &user_id, &key, "all-in-one").await;
}

//! End to end: `POST /api/providers/{provider}/keys/{key_id}/test` through the real binary.
//!
//! * All-in-one (its in-process data plane answers): a good Bedrock key is `ok` with the strict
//!   double's 200 (SigV4 verified independently), a key with a wrong secret is `ok: false` with
//!   the double's 403 and its message, an Anthropic key with a bad API key is `ok: false` with
//!   401; the upstream call is one non-streaming `max_tokens: 1` request; every test has its
//!   `provider_key.test` audit row and its log event, and no secret shows in the answers or the
//!   logs.
//! * The split deployment (PostgreSQL): the control plane alone answers 503; once a data plane
//!   is connected it runs the test over its Watch stream and names itself in the answer.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tollgate_tests::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig};
use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, assert_not_in_output, free_port};
use tollgate_tests::postgres::TestDatabase;

const AKID: &str = "AKIDKEYTESTE2E000001";
const SECRET: &str = "keyTestSecret/K7MDENG+bPxRfiCYEXAMPLEKEY1";
const WRONG_SECRET: &str = "keyTestWRONG/K7MDENG+bPxRfiCYEXAMPLEKEY2";
const ANT_KEY: &str = "sk-ant-api03-key-test-e2e-good-000000001";
const ANT_BAD_KEY: &str = "sk-ant-api03-key-test-e2e-revoked-00002";
const SONNET: &str = "global.anthropic.claude-sonnet-4-6";
const ADMIN_TOKEN: &str = "admin-token-for-the-key-test-e2e";
const JOIN_TOKEN: &str = "join-token-for-the-key-test-e2e";

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<&'static str>,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates provider `name` of `kind` at `base_url`; returns the test path of each key.
    async fn provider(&self, name: &str, base_url: &str, keys: &[Value]) -> Vec<String> {
        let (s, b) = self
            .post(
                "/api/providers",
                json!({"provider": name, "network_config": {"base_url": base_url}}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let mut paths = Vec::new();
        for key in keys {
            let (s, b) = self
                .post(&format!("/api/providers/{name}/keys"), key.clone())
                .await;
            assert_eq!(s, 201, "{b}");
            paths.push(format!(
                "/api/providers/{name}/keys/{}/test",
                b["id"].as_str().unwrap()
            ));
        }
        paths
    }

    /// Tests a key (no body: its default model).
    async fn test(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, None).await
    }
}

fn bedrock_key(name: &str, secret: &str) -> Value {
    json!({"name": name, "models": [SONNET],
           "bedrock_key_config": {"access_key": AKID, "secret_key": secret, "region": "us-east-1"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_tests_keys_with_its_own_data_plane() {
    let bedrock =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let anthropic = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(ANT_KEY))
        .expect("anthropic double");
    let gw = TollgateProcess::spawn_with(TollgateOptions::default())
        .await
        .expect("tollgate starts");
    let api = Api {
        http: reqwest::Client::new(),
        base: gw.base_url().to_owned(),
        token: None,
    };
    let bedrock_paths = api
        .provider(
            "bedrock",
            bedrock.base_url(),
            &[
                bedrock_key("good", SECRET),
                bedrock_key("wrong-secret", WRONG_SECRET),
            ],
        )
        .await;
    let ant_paths = api
        .provider(
            "anthropic",
            anthropic.base_url(),
            &[
                json!({"name": "good", "models": ["*"], "aliases": {"sonnet": "claude-sonnet-4-6"}, "value": ANT_KEY}),
                json!({"name": "revoked", "models": ["claude-haiku-4-5"], "value": ANT_BAD_KEY}),
            ],
        )
        .await;
    let (_, version) = api.call(reqwest::Method::GET, "/api/version", None).await;

    // A good Bedrock key: the double verified the signature and answered 200.
    let (s, good) = api.test(&bedrock_paths[0]).await;
    assert_eq!(s, 200, "{good}");
    assert_eq!(good["ok"], true, "{good}");
    assert_eq!(good["status"], 200);
    assert_eq!(good["model"], SONNET);
    assert_eq!(good["data_plane"], "all-in-one");
    assert_eq!(good["error"], Value::Null);
    assert!(good["latency_ms"].as_u64().is_some());
    assert_eq!(
        good["config_version"], version["published_version"],
        "{good} {version}"
    );
    let calls = bedrock.requests();
    assert_eq!(calls.len(), 1, "one upstream call");
    assert_eq!(calls[0].verdict.status, 200);
    assert_eq!(calls[0].operation.as_deref(), Some("InvokeModel"));
    assert_eq!(calls[0].access_key_id.as_deref(), Some(AKID));
    let body = calls[0].body.as_ref().expect("body");
    assert_eq!(body["max_tokens"], 1, "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}");

    // The wrong secret: the double's 403 and its message, as it gave them.
    let (s, bad) = api.test(&bedrock_paths[1]).await;
    assert_eq!(s, 200, "{bad}");
    assert_eq!(bad["ok"], false, "{bad}");
    assert_eq!(bad["status"], 403);
    let refused = bedrock.requests().pop().expect("the call");
    assert_eq!(refused.verdict.status, 403);
    assert_eq!(
        bad["error"]["class"].as_str(),
        refused.verdict.error_type.as_deref(),
        "{bad}"
    );
    assert_eq!(
        bad["error"]["message"].as_str(),
        refused.verdict.message.as_deref().map(str::trim),
        "the double's message, blank space around it trimmed: {bad}"
    );

    // Anthropic: the revoked key is the double's 401; the good one works through its alias.
    let (s, bad) = api.test(&ant_paths[1]).await;
    assert_eq!(s, 200, "{bad}");
    assert_eq!(
        (
            bad["ok"].clone(),
            bad["status"].clone(),
            bad["model"].clone()
        ),
        (json!(false), json!(401), json!("claude-haiku-4-5")),
        "{bad}"
    );
    assert_eq!(
        bad["error"],
        json!({"class": "authentication_error", "message": "invalid x-api-key"})
    );
    let (s, good) = api.test(&ant_paths[0]).await;
    assert_eq!(s, 200, "{good}");
    assert_eq!(
        (good["ok"].clone(), good["model"].clone()),
        (json!(true), json!("claude-sonnet-4-6")),
        "{good}"
    );
    let sent = anthropic
        .last_request()
        .expect("a call")
        .json()
        .expect("json");
    assert_eq!(sent["max_tokens"], 1);
    assert_eq!(sent.get("stream"), None, "not streamed: {sent}");

    // Audited: four tests, two of them failures with the provider's error.
    let (s, log) = api
        .call(
            reqwest::Method::GET,
            "/api/audit-logs?action=provider_key.test",
            None,
        )
        .await;
    assert_eq!(s, 200, "{log}");
    let rows = log["audit_logs"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{log}");
    let results: Vec<&str> = rows
        .iter()
        .map(|r| r["details"]["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "success").count(),
        2,
        "{log}"
    );
    assert!(rows.iter().any(|r| r["details"]["upstream_status"] == 403));

    // Logged with their cost, and no secret anywhere.
    let output = gw.output();
    assert_eq!(output.matches("provider key probed").count(), 4, "{output}");
    for secret in [SECRET, WRONG_SECRET, ANT_KEY, ANT_BAD_KEY] {
        assert_not_in_output(&gw, secret).unwrap();
        assert!(!log.to_string().contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_control_plane_without_then_with_a_data_plane() {
    let bedrock =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let db = TestDatabase::create("tollgate_key_test").await;
    let secret_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let admin_listen = format!("127.0.0.1:{}", free_port().unwrap());
    let grpc_listen = format!("127.0.0.1:{}", free_port().unwrap());
    let _cp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "control-plane".into(),
            "--listen".into(),
            admin_listen.clone(),
            "--grpc-listen".into(),
            grpc_listen.clone(),
        ],
        envs: vec![
            ("TOLLGATE_DATABASE_URL".into(), db.url.clone()),
            ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("TOLLGATE_SECRET_KEY".into(), secret_key),
        ],
        health_path: "/openapi.json".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("control plane starts");
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{admin_listen}"),
        token: Some(ADMIN_TOKEN),
    };
    let paths = api
        .provider(
            "bedrock",
            bedrock.base_url(),
            &[bedrock_key("good", SECRET)],
        )
        .await;

    let (s, b) = api.test(&paths[0]).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"]["type"], "unavailable");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no data plane is connected"),
        "{b}"
    );
    assert!(bedrock.requests().is_empty());

    let dp_listen = format!("127.0.0.1:{}", free_port().unwrap());
    let _dp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "data-plane".into(),
            "--listen".into(),
            dp_listen,
            "--control-plane".into(),
            format!("http://{grpc_listen}"),
        ],
        envs: vec![
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("TOLLGATE_NODE_ID".into(), "dp-key-test".into()),
        ],
        health_path: "/ready".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("data plane starts and becomes ready");
    // Ready means it serves a config; its Watch stream is attached by then or soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let (s, b) = api.test(&paths[0]).await;
        if s != 503 || Instant::now() > deadline {
            break (s, b);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["ok"], true, "{}", answer.1);
    assert_eq!(answer.1["status"], 200);
    assert_eq!(answer.1["data_plane"], "dp-key-test");
    assert_eq!(bedrock.requests().len(), 1);

    // A key added just now: the data plane runs the test with the version that holds it.
    let (s, b) = api
        .post(
            "/api/providers/bedrock/keys",
            bedrock_key("wrong-secret", WRONG_SECRET),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, bad) = api
        .test(&format!(
            "/api/providers/bedrock/keys/{}/test",
            b["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200, "{bad}");
    assert_eq!(
        (bad["ok"].clone(), bad["status"].clone()),
        (json!(false), json!(403)),
        "{bad}"
    );
    let (_, version) = api.call(reqwest::Method::GET, "/api/version", None).await;
    assert_eq!(
        bad["config_version"], version["published_version"],
        "{bad} {version}"
    );
}

//! Shared setup of the end-to-end tests: the README walkthrough against the real binary, with
//! the strict Bedrock double behind it.
#![allow(dead_code)]

pub mod sso;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_tests::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig};
use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig, RecordedRequest};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess};
use tollgate_tests::vertex_double::{VertexDouble, VertexDoubleConfig, test_key_file};

pub const AKID: &str = "AKIDE2EWALKTHROUGH";
pub const SECRET: &str = "e2eSecretKey/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A gateway configured by the walkthrough, a double behind it, and the virtual key.
pub struct Setup {
    pub double: BedrockDouble,
    pub gw: TollgateProcess,
    pub vk: String,
    pub http: reqwest::Client,
}

pub async fn admin(
    http: &reqwest::Client,
    gw: &TollgateProcess,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let req = match method {
        "POST" => http.post(gw.url(path)),
        "PUT" => http.put(gw.url(path)),
        _ => http.get(gw.url(path)),
    };
    let resp = req.json(&body).send().await.expect("admin call");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn setup_with(args: &[&str]) -> Setup {
    setup_with_env(args, &[]).await
}

/// [`setup_with`], with more environment variables for the gateway process.
pub async fn setup_with_env(args: &[&str], env: &[(&str, &str)]) -> Setup {
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let mut envs: Vec<(String, String)> = vec![
        ("AWS_ACCESS_KEY_ID".into(), AKID.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
    ];
    envs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let gw = TollgateProcess::spawn_with(TollgateOptions {
        args: args.iter().map(|s| s.to_string()).collect(),
        envs,
        ..TollgateOptions::default()
    })
    .await
    .expect("tollgate starts");
    let http = reqwest::Client::new();
    // The walkthrough, as pasted.
    let (s, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/providers",
        json!({"provider": "bedrock"}),
    )
    .await;
    assert_eq!(s, 201, "create provider: {b}");
    let (s, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/providers/bedrock/keys",
        json!({"name": "bedrock-key", "models": ["*"], "weight": 1.0,
               "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6",
                           "claude-haiku-4-5": "global.anthropic.claude-haiku-4-5-20251001-v1:0"},
               "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                                      "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}}),
    )
    .await;
    assert_eq!(s, 201, "create key: {b}");
    let (s, b) = admin(
        &http,
        &gw,
        "POST",
        "/api/virtual-keys",
        json!({"name": "engineering-team", "monthly_budget": 500, "provider": "bedrock"}),
    )
    .await;
    assert_eq!(s, 201, "create virtual key: {b}");
    let vk = b["value"]
        .as_str()
        .expect("virtual key value shown at creation")
        .to_owned();
    // Test-only step: send Bedrock traffic to the double instead of AWS.
    let (s, b) = admin(
        &http,
        &gw,
        "PUT",
        "/api/providers/bedrock",
        json!({"network_config": {"base_url": double.base_url(), "default_request_timeout_in_seconds": 5}}),
    )
    .await;
    assert_eq!(s, 200, "point provider at the double: {b}");
    wait_for_config(&http, &gw, &vk).await;
    Setup {
        double,
        gw,
        vk,
        http,
    }
}

impl Setup {
    /// Starts an Anthropic API double taking `api_key`, and configures it as provider
    /// `anthropic` with one key (`ant`) of that value.
    pub async fn add_anthropic(&self, api_key: &str) -> AnthropicDouble {
        let anthropic = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(api_key))
            .expect("anthropic double");
        for (path, body) in [
            (
                "/api/providers",
                json!({"provider": "anthropic", "network_config": {"base_url": anthropic.base_url()}}),
            ),
            (
                "/api/providers/anthropic/keys",
                json!({"name": "ant", "models": ["*"], "value": api_key}),
            ),
        ] {
            let (st, b) = admin(&self.http, &self.gw, "POST", path, body).await;
            assert_eq!(st, 201, "{path}: {b}");
        }
        anthropic
    }

    /// Starts a Vertex AI double trusting `testdata/vertex/service-account.json`, and configures
    /// it as provider `vertex` with one key (`vertex-key`, project `tollgate-test`, region
    /// `us-east5`) holding the key file `key_file` (`testdata/vertex/<key_file>`) and the double's
    /// token endpoint as its `token_uri`.
    pub async fn add_vertex(&self, key_file: &str) -> VertexDouble {
        let vertex =
            VertexDouble::start(VertexDoubleConfig::for_test_account()).expect("vertex double");
        for (path, body) in [
            (
                "/api/providers",
                json!({"provider": "vertex", "network_config": {"base_url": vertex.api_url()}}),
            ),
            (
                "/api/providers/vertex/keys",
                json!({"name": "vertex-key", "models": ["*"],
                       "vertex_key_config": {"project_id": "tollgate-test", "region": "us-east5",
                                             "auth_credentials": test_key_file(key_file),
                                             "token_uri": vertex.token_url()}}),
            ),
        ] {
            let (st, b) = admin(&self.http, &self.gw, "POST", path, body).await;
            assert_eq!(st, 201, "{path}: {b}");
        }
        vertex
    }

    /// Creates a virtual key with `body` (201 expected) and waits until the gateway routes its
    /// requests; returns the created key (its `value` and `id` among the fields).
    pub async fn virtual_key(&self, body: Value) -> Value {
        let (st, b) = admin(&self.http, &self.gw, "POST", "/api/virtual-keys", body).await;
        assert_eq!(st, 201, "{b}");
        let value = b["value"].as_str().expect("value");
        wait_for_config(&self.http, &self.gw, value).await;
        b
    }
}

pub async fn setup() -> Setup {
    setup_with(&["--sse-ping-interval-ms", "200"]).await
}

/// Config is applied asynchronously (in-process channel); wait until routing uses the double.
pub async fn wait_for_config(http: &reqwest::Client, gw: &TollgateProcess, vk: &str) {
    for _ in 0..100 {
        let r = http
            .post(gw.url("/anthropic/v1/messages/count_tokens"))
            .header("x-api-key", vk)
            .json(&json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "warm"}]}))
            .send()
            .await
            .expect("count tokens");
        if r.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "gateway never routed to the double; output:\n{}",
        gw.output()
    );
}

pub fn message(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

impl Setup {
    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.gw.url("/anthropic/v1/messages?beta=true"))
            .bearer_auth(&self.vk)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .expect("inference call")
    }

    pub fn last_request(&self) -> RecordedRequest {
        self.double
            .requests()
            .pop()
            .expect("the double saw a request")
    }
}

/// Parses an SSE body into (event, data JSON) pairs.
pub fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| {
            let mut event = String::new();
            let mut data = String::new();
            for line in chunk.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::Null);
            (event, data)
        })
        .collect()
}

/// An environment variable naming a real client; panics saying where it comes from.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through scripts/test.sh, which installs the real clients")
    })
}

/// Runs `cmd` to its end on a blocking thread, so the gateway and the doubles keep serving;
/// panics naming `what` if it cannot start.
pub async fn output(mut cmd: Command, what: &str) -> Output {
    let what = what.to_owned();
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// Runs `claude -p PROMPT [ARGS]` in `cwd` with a fresh home, nothing from the test's
/// environment but `PATH`, no non-essential traffic, and `env` (the README's settings, or a
/// test's).
pub async fn run_claude(
    claude: &str,
    cwd: &Path,
    env: Vec<(String, String)>,
    prompt: &str,
    args: &[&str],
) -> Output {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = Command::new(claude);
    cmd.args(["-p", prompt])
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("TERM", "dumb")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .envs(env);
    output(cmd, "run claude").await
}

/// The repository's README.
pub fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README")
}

/// The `env` of the README's Claude Code settings block (the JSON block that sets
/// `ANTHROPIC_BASE_URL`).
pub fn readme_claude_env() -> serde_json::Map<String, Value> {
    let readme = readme();
    let block = readme
        .split("```json\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .find(|block| block.contains("ANTHROPIC_BASE_URL"))
        .expect("the README shows Claude Code settings");
    let settings: Value = serde_json::from_str(block).expect("the settings block is JSON");
    settings["env"]
        .as_object()
        .cloned()
        .expect("settings have an env object")
}

/// The model Claude Code asks for in the first request of a session with `env`: the
/// `ANTHROPIC_MODEL` (its `opus`/`sonnet`/`haiku` aliases resolved through
/// `ANTHROPIC_DEFAULT_*_MODEL`), else the Opus default (`ANTHROPIC_DEFAULT_OPUS_MODEL`, else the
/// release's built-in name). `e2e_clients` checks this against both releases.
pub fn claude_code_first_model(env: &serde_json::Map<String, Value>, builtin_opus: &str) -> String {
    let get = |name: &str| env.get(name).and_then(Value::as_str).map(str::to_owned);
    let tier = |tier: &str| get(&format!("ANTHROPIC_DEFAULT_{}_MODEL", tier.to_uppercase()));
    match get("ANTHROPIC_MODEL") {
        Some(alias) if matches!(alias.as_str(), "opus" | "sonnet" | "haiku") => {
            tier(&alias).unwrap_or(alias)
        }
        Some(model) => model,
        None => tier("opus").unwrap_or_else(|| builtin_opus.to_owned()),
    }
}

/// The captured first `POST /v1/messages` of each Claude Code release
/// (`testdata/claude-code/requests.json`): (version, body, `anthropic-beta` header).
pub fn claude_code_captures() -> Vec<(String, Value, String)> {
    let all: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/claude-code/requests.json"
        ))
        .expect("captures"),
    )
    .expect("json");
    all.as_array()
        .expect("array")
        .iter()
        .filter(|r| r.get("body").is_some())
        .map(|r| {
            (
                r["client_version"].as_str().unwrap_or_default().to_owned(),
                r["body"].clone(),
                r["headers"]["anthropic-beta"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// Claude Code's built-in default (Opus) model name per release.
pub fn builtin_opus(version: &str) -> &'static str {
    match version {
        "2.1.197" => "claude-opus-4-8",
        _ => "claude-opus-5-5",
    }
}

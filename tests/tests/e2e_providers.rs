//! End to end: provider credentials and the Anthropic provider, through the real `tollgate`
//! binary.
//!
//! * Bedrock with `role_arn`: the gateway assumes the role at the STS double (which verifies the
//!   AssumeRole signature made with the base keys) and signs Bedrock calls with the temporary
//!   `ASIA…` key and its session token (which the Bedrock double verifies); credentials are
//!   cached. A wrong external id is a clear error naming STS.
//! * Bedrock with a static session token, and with a Bedrock API key (`value`).
//! * Literal secrets work and never show in admin responses, logs or the data directory.
//! * The Anthropic provider passes bodies, `anthropic-*` headers and answers (streams and errors
//!   included) through byte for byte, with the provider key as `x-api-key`.
//! * `env.NAME` references are resolved at use: a missing variable is a 500 naming the setting
//!   and the request id; the variable's name goes to the log only.
//! * Extra headers are secrets: an `env.ANTHROPIC_...` header value reaches the upstream from the
//!   data plane's environment and never the logs. In the split deployment a data plane refuses a
//!   reference its own allowlist does not allow (even when the control plane's does), with a
//!   clear error for the requests that need it, while the other keys keep working.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::admin;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tollgate_tests::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig, AnthropicRequest};
use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, assert_not_in_output, free_port};
use tollgate_tests::sigv4::Credentials;
use tollgate_tests::sts_double::{StsDouble, StsDoubleConfig, StsRole};

// Base keys the gateway holds (in its environment) and signs AssumeRole with.
const BASE_AKID: &str = "AKIDPROVIDERSBASE001";
const BASE_SECRET: &str = "providersBaseSecret/K7MDENG+bPxRfiCYEXAMPLE";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/tollgate-bedrock-e2e";
const EXTERNAL_ID: &str = "tg-ext-e2e-5c9d41";
const SESSION_NAME: &str = "tollgate-e2e-session";
// What the role hands out; only these are registered on the Bedrock double.
const TEMP_AKID: &str = "ASIAE2EPROVIDERS0001";
const TEMP_SECRET: &str = "tempSecretE2E/providers+AssumedRole00000";
const TEMP_TOKEN: &str = "IQoJb3JpZ2luX2VjE2UtZW5kLXRvLWVuZA/assumed+role+token==";

const SONNET: &str = "bedrock/global.anthropic.claude-sonnet-4-6";
const UPSTREAM_KEY: &str = "sk-ant-api03-e2e-upstream-provider-key-0001";

/// The gateway's environment: `pairs`, and `TOLLGATE_ENV_ALLOW=TG_*` so that the tests' own
/// variables (`env.TG_...`) may be referenced.
fn envs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    std::iter::once(("TOLLGATE_ENV_ALLOW", "TG_*"))
        .chain(pairs.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn gateway(envs: Vec<(String, String)>) -> TollgateProcess {
    TollgateProcess::spawn_with(TollgateOptions {
        envs,
        ..TollgateOptions::default()
    })
    .await
    .expect("tollgate starts")
}

/// Creates provider `name` (of `kind`) pointing at `base_url`, adds `key`, and returns the
/// created key (as the admin API shows it).
async fn provider_with_key(
    http: &reqwest::Client,
    gw: &TollgateProcess,
    name: &str,
    kind: &str,
    base_url: &str,
    key: Value,
) -> Value {
    let mut create = json!({"provider": name});
    if name != kind {
        create["custom_provider_config"] = json!({"base_provider_type": kind});
    }
    let (s, b) = admin(http, gw, "POST", "/api/providers", create).await;
    assert_eq!(s, 201, "create provider {name}: {b}");
    let (s, b) = admin(
        http,
        gw,
        "PUT",
        &format!("/api/providers/{name}"),
        json!({"network_config": {"base_url": base_url, "default_request_timeout_in_seconds": 20}}),
    )
    .await;
    assert_eq!(s, 200, "point {name} at its double: {b}");
    let (s, b) = admin(
        http,
        gw,
        "POST",
        &format!("/api/providers/{name}/keys"),
        key,
    )
    .await;
    assert_eq!(s, 201, "create key of {name}: {b}");
    b
}

/// Creates the virtual key last, so that once it is known the whole configuration is applied.
async fn virtual_key(http: &reqwest::Client, gw: &TollgateProcess, providers: &[&str]) -> String {
    let (s, b) = admin(
        http,
        gw,
        "POST",
        "/api/virtual-keys",
        json!({"name": "e2e-providers", "providers": providers}),
    )
    .await;
    assert_eq!(s, 201, "create virtual key: {b}");
    b["value"].as_str().expect("virtual key value").to_owned()
}

/// Sends the request built by `make` until the gateway knows the virtual key (config applied).
async fn until_configured<F>(gw: &TollgateProcess, make: F) -> reqwest::Response
where
    F: Fn() -> reqwest::RequestBuilder,
{
    for _ in 0..200 {
        let resp = make().send().await.expect("request reaches the gateway");
        if resp.status() != 401 {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the gateway never applied the configuration (still 401); output:\n{}",
        gw.output()
    );
}

fn message(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 128, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

fn messages_call(
    http: &reqwest::Client,
    gw: &TollgateProcess,
    vk: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    http.post(gw.url("/anthropic/v1/messages?beta=true"))
        .bearer_auth(vk)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON error body");
    (status, body)
}

// ---------------------------------------------------------------------------------------------
// Bedrock: STS AssumeRole
// ---------------------------------------------------------------------------------------------

struct RoleSetup {
    sts: StsDouble,
    bedrock: BedrockDouble,
    gw: TollgateProcess,
    http: reqwest::Client,
    vk: String,
    key: Value,
}

async fn role_setup(configured_external_id: &str, role: StsRole) -> RoleSetup {
    let sts = StsDouble::start(
        StsDoubleConfig::new()
            .with_key(BASE_AKID, BASE_SECRET)
            .with_role(role),
    )
    .expect("sts double");
    // The Bedrock double knows only the temporary key: base-key signatures would be rejected.
    let bedrock = BedrockDouble::start(
        BedrockDoubleConfig::new()
            .with_temporary_key(TEMP_AKID, TEMP_SECRET, TEMP_TOKEN)
            .with_region("us-east-1"),
    )
    .expect("bedrock double");
    let gw = gateway(envs(&[
        ("TG_BASE_AKID", BASE_AKID),
        ("TG_BASE_SECRET", BASE_SECRET),
        ("AWS_ENDPOINT_URL_STS", sts.base_url()),
    ]))
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let key = provider_with_key(
        &http,
        &gw,
        "bedrock",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "assumed-role", "models": ["*"], "weight": 1,
               "bedrock_key_config": {
                   "access_key": "env.TG_BASE_AKID", "secret_key": "env.TG_BASE_SECRET",
                   "region": "us-east-1", "role_arn": ROLE_ARN,
                   "external_id": configured_external_id, "session_name": SESSION_NAME}}),
    )
    .await;
    let vk = virtual_key(&http, &gw, &["bedrock"]).await;
    RoleSetup {
        sts,
        bedrock,
        gw,
        http,
        vk,
        key,
    }
}

fn role() -> StsRole {
    StsRole::new(
        ROLE_ARN,
        Credentials::new(TEMP_AKID, TEMP_SECRET).with_session_token(TEMP_TOKEN),
    )
    .with_external_id(EXTERNAL_ID)
    .trusting(&[BASE_AKID])
}

#[tokio::test]
async fn bedrock_assume_role_signs_with_temporary_credentials_and_assumes_once() {
    let s = role_setup(EXTERNAL_ID, role()).await;
    let first = until_configured(&s.gw, || {
        messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "hello", false))
    })
    .await;
    assert_eq!(first.status(), 200, "{}", s.gw.output());
    let body: Value = first.json().await.expect("json");
    assert_eq!(body["content"][0]["text"], "Hello from the Bedrock double.");

    // More traffic of every kind, some of it concurrent.
    for stream in [false, true, false, true] {
        let resp = messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "again", stream))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.expect("body");
        if stream {
            assert!(text.contains("event: message_stop"), "{text}");
        }
    }
    let count = s
        .http
        .post(s.gw.url("/anthropic/v1/messages/count_tokens"))
        .header("x-api-key", &s.vk)
        .json(&json!({"model": SONNET, "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .expect("count");
    assert_eq!(count.status(), 200);
    let concurrent = futures::future::join_all((0..6).map(|i| {
        messages_call(
            &s.http,
            &s.gw,
            &s.vk,
            &message(SONNET, &format!("concurrent {i}"), i % 2 == 0),
        )
        .send()
    }))
    .await;
    for r in concurrent {
        assert_eq!(r.expect("send").status(), 200);
    }

    // STS: exactly one AssumeRole, signed with the base keys, with the configured parameters.
    let calls = s.sts.calls();
    assert_eq!(
        calls.len(),
        1,
        "12 inference requests must cause one AssumeRole: {calls:#?}"
    );
    let call = &calls[0];
    assert!(call.succeeded(), "{:?}", call.verdict);
    assert_eq!(call.access_key_id.as_deref(), Some(BASE_AKID));
    assert_eq!(call.region.as_deref(), Some("us-east-1"));
    assert!(!call.session_token_presented);
    assert_eq!(call.param("Action"), Some("AssumeRole"));
    assert_eq!(call.param("Version"), Some("2011-06-15"));
    assert_eq!(call.param("RoleArn"), Some(ROLE_ARN));
    assert_eq!(call.param("RoleSessionName"), Some(SESSION_NAME));
    assert_eq!(call.param("ExternalId"), Some(EXTERNAL_ID));
    let duration: u32 = call
        .param("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .expect("DurationSeconds");
    assert!((900..=3600).contains(&duration), "{duration}");

    // Bedrock: every request signed with the temporary key and its session token.
    let requests = s.bedrock.requests();
    assert_eq!(
        requests.len(),
        12,
        "every inference request reached Bedrock"
    );
    for r in &requests {
        assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
        assert_eq!(r.access_key_id.as_deref(), Some(TEMP_AKID));
        assert_eq!(r.header("x-amz-security-token"), Some(TEMP_TOKEN));
        let auth = r.header("authorization").unwrap_or_default();
        assert!(
            auth.contains("x-amz-security-token"),
            "session token is signed: {auth}"
        );
    }

    // The external id is a secret: never shown, never logged; neither are the credentials.
    assert_eq!(s.key["bedrock_key_config"]["external_id"], "<redacted>");
    assert_eq!(s.key["bedrock_key_config"]["role_arn"], ROLE_ARN);
    assert_eq!(
        s.key["bedrock_key_config"]["access_key"],
        "env.TG_BASE_AKID"
    );
    for path in [
        "/api/providers/bedrock/keys",
        "/api/keys",
        "/api/audit-logs",
    ] {
        let text = s
            .http
            .get(s.gw.url(path))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(!text.contains(EXTERNAL_ID), "{path} shows the external id");
    }
    for secret in [EXTERNAL_ID, BASE_SECRET, TEMP_SECRET, TEMP_TOKEN] {
        assert_not_in_output(&s.gw, secret).expect("no secret in the gateway's output");
    }
}

#[tokio::test]
async fn bedrock_assume_role_with_a_wrong_external_id_is_a_clear_error() {
    let s = role_setup("tg-ext-wrong-000000", role()).await;
    let started = Instant::now();
    let resp = until_configured(&s.gw, || {
        messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "hello", false))
    })
    .await;
    let (status, body) = error_of(resp).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a refused AssumeRole must fail fast, took {:?}",
        started.elapsed()
    );
    assert!((500..600).contains(&status), "{status} {body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    let text = body["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("STS"), "the error names STS: {text}");
    assert!(
        text.contains("AccessDenied"),
        "the error carries STS's reason: {text}"
    );
    assert!(!text.contains("tg-ext-wrong"), "{text}");
    // STS's own message names the caller and the role (account ids, ARNs): it is the log's, with
    // the request id; the client gets AWS's error code and that id.
    assert!(
        !text.contains("arn:aws") && !text.contains("123456789012"),
        "{text}"
    );
    let id = body["request_id"].as_str().expect("request id");
    assert!(text.contains(id), "{text}");
    let log = s.gw.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains(id) && l.contains("is not authorized to perform")),
        "the STS detail is logged with the request id: {log}"
    );

    // Not a crash: the gateway keeps serving, and fails the same way again (no hang).
    let (status, stream_body) = error_of(
        messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "again", true))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert!((500..600).contains(&status), "{status} {stream_body}");
    assert_eq!(
        s.http
            .get(s.gw.url("/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    let calls = s.sts.calls();
    assert!(calls.len() >= 2, "{calls:#?}");
    for c in &calls {
        assert_eq!(c.verdict.status, 403, "{:?}", c.verdict);
        assert_eq!(c.verdict.code.as_deref(), Some("AccessDenied"));
        assert_eq!(
            c.access_key_id.as_deref(),
            Some(BASE_AKID),
            "signature verified"
        );
    }
    assert!(
        s.bedrock.requests().is_empty(),
        "nothing may reach Bedrock without credentials"
    );
}

#[tokio::test]
async fn bedrock_assumed_credentials_are_refreshed_five_minutes_before_they_expire() {
    // Credentials that expire in 312 s are due for refresh 12 s from now (5 min before expiry):
    // kept until then, fetched again after.
    let s = role_setup(EXTERNAL_ID, role().with_lifetime(Duration::from_secs(312))).await;
    let first = until_configured(&s.gw, || {
        messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "one", false))
    })
    .await;
    assert_eq!(first.status(), 200);
    let assumed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resp = messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "two", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.sts.assume_role_count(),
        1,
        "credentials are kept until 5 min before expiry"
    );
    tokio::time::sleep(Duration::from_secs(14).saturating_sub(assumed_at.elapsed())).await;
    let resp = messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "three", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.sts.assume_role_count(),
        2,
        "credentials within 5 min of expiry are fetched again"
    );
    assert!(s.bedrock.requests().iter().all(|r| r.verdict.status == 200));
}

#[tokio::test]
async fn bedrock_rejected_assumed_credentials_are_fetched_again() {
    let s = role_setup(EXTERNAL_ID, role()).await;
    let first = until_configured(&s.gw, || {
        messages_call(&s.http, &s.gw, &s.vk, &message(SONNET, "one", false))
    })
    .await;
    assert_eq!(first.status(), 200);
    // The session is revoked (Bedrock no longer knows it); the role now hands out new ones.
    const NEW_AKID: &str = "ASIAE2EPROVIDERS0002";
    const NEW_SECRET: &str = "rotatedSecretE2E/providers+AssumedRole0000";
    const NEW_TOKEN: &str = "IQoJb3JpZ2luX2VjE2UtZW5kLXRvLWVuZA/rotated+role+token==";
    s.bedrock.remove_credentials(TEMP_AKID);
    let rotated = Credentials::new(NEW_AKID, NEW_SECRET).with_session_token(NEW_TOKEN);
    s.bedrock.set_credentials(rotated.clone());
    s.sts.set_role(
        StsRole::new(ROLE_ARN, rotated)
            .with_external_id(EXTERNAL_ID)
            .trusting(&[BASE_AKID]),
    );
    // At most one request may fail before the gateway drops the rejected credentials.
    let mut statuses = Vec::new();
    for i in 0..2 {
        let resp = messages_call(
            &s.http,
            &s.gw,
            &s.vk,
            &message(SONNET, &format!("r{i}"), false),
        )
        .send()
        .await
        .expect("send");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        statuses.last(),
        Some(&200),
        "still failing after Bedrock rejected the cached credentials: {statuses:?}"
    );
    assert_eq!(s.sts.assume_role_count(), 2);
    let last = s.bedrock.requests().pop().expect("request");
    assert_eq!(last.access_key_id.as_deref(), Some(NEW_AKID));
}

// ---------------------------------------------------------------------------------------------
// Bedrock: static session token, Bedrock API key
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bedrock_static_session_token_is_sent_and_signed() {
    const AKID: &str = "ASIASTATICSESSION001";
    const SECRET: &str = "staticSessionSecret/e2e+0000000000000000";
    const TOKEN: &str = "FwoGZXIvYXdzEStaticSessionToken/e2e+test==";
    let bedrock =
        BedrockDouble::start(BedrockDoubleConfig::new().with_temporary_key(AKID, SECRET, TOKEN))
            .expect("double");
    let gw = gateway(envs(&[
        ("TG_SESSION_AKID", AKID),
        ("TG_SESSION_SECRET", SECRET),
        ("TG_SESSION_TOKEN", TOKEN),
    ]))
    .await;
    let http = reqwest::Client::new();
    let key = provider_with_key(
        &http,
        &gw,
        "bedrock",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "session", "models": ["*"], "weight": 1,
               "bedrock_key_config": {"access_key": "env.TG_SESSION_AKID",
                   "secret_key": "env.TG_SESSION_SECRET", "session_token": "env.TG_SESSION_TOKEN",
                   "region": "us-west-2"}}),
    )
    .await;
    assert_eq!(
        key["bedrock_key_config"]["session_token"],
        "env.TG_SESSION_TOKEN"
    );
    let vk = virtual_key(&http, &gw, &["bedrock"]).await;
    let resp = until_configured(&gw, || {
        messages_call(&http, &gw, &vk, &message(SONNET, "hi", false))
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", gw.output());
    let resp = messages_call(&http, &gw, &vk, &message(SONNET, "hi", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("text").contains("message_stop"));
    let requests = bedrock.requests();
    assert_eq!(requests.len(), 2);
    for r in requests {
        assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
        assert_eq!(r.access_key_id.as_deref(), Some(AKID));
        assert_eq!(r.region.as_deref(), Some("us-west-2"));
        assert_eq!(r.header("x-amz-security-token"), Some(TOKEN));
    }
    assert_not_in_output(&gw, TOKEN).expect("session token not logged");
}

#[tokio::test]
async fn bedrock_api_key_is_sent_as_a_bearer_token_without_sigv4() {
    const API_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1lMmUtcHJvdmlkZXJzLXRlc3Q=";
    let bedrock =
        BedrockDouble::start(BedrockDoubleConfig::new().with_api_key(API_KEY)).expect("double");
    let gw = gateway(envs(&[("TG_BEDROCK_API_KEY", API_KEY)])).await;
    let http = reqwest::Client::new();
    let key = provider_with_key(
        &http,
        &gw,
        "bedrock",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "api-key", "models": ["*"], "weight": 1,
               "value": "env.TG_BEDROCK_API_KEY",
               "bedrock_key_config": {"region": "us-east-1"}}),
    )
    .await;
    assert_eq!(key["value"], "env.TG_BEDROCK_API_KEY");
    let vk = virtual_key(&http, &gw, &["bedrock"]).await;
    let resp = until_configured(&gw, || {
        messages_call(&http, &gw, &vk, &message(SONNET, "hi", false))
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", gw.output());
    let resp = messages_call(&http, &gw, &vk, &message(SONNET, "hi", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("text").contains("message_stop"));
    let requests = bedrock.requests();
    assert_eq!(requests.len(), 2);
    for r in requests {
        assert_eq!(r.verdict.status, 200, "{:?}", r.verdict);
        assert_eq!(r.access_key_id.as_deref(), Some("bearer"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert!(r.header("x-amz-date").is_none() && r.header("x-amz-security-token").is_none());
    }
    assert_not_in_output(&gw, API_KEY).expect("API key not logged");
}

#[tokio::test]
async fn bedrock_api_key_without_bedrock_key_config_takes_the_region_from_the_environment() {
    // No bedrock_key_config at all: the region comes from AWS_REGION at use time.
    const API_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1uby1jb25maWctYmxvY2s=";
    let bedrock = BedrockDouble::start(
        BedrockDoubleConfig::new()
            .with_api_key(API_KEY)
            .with_region("eu-west-1"),
    )
    .expect("double");
    let gw = gateway(envs(&[("AWS_REGION", "eu-west-1")])).await;
    let http = reqwest::Client::new();
    let key = provider_with_key(
        &http,
        &gw,
        "bedrock",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "api-key-only", "models": ["*"], "weight": 1, "value": API_KEY}),
    )
    .await;
    assert_eq!(key["value"], "<redacted>");
    let vk = virtual_key(&http, &gw, &["bedrock"]).await;
    let resp = until_configured(&gw, || {
        messages_call(&http, &gw, &vk, &message(SONNET, "hi", false))
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", gw.output());
    let r = bedrock.requests().pop().expect("request");
    assert_eq!(r.access_key_id.as_deref(), Some("bearer"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_not_in_output(&gw, API_KEY).expect("API key not logged");
}

// ---------------------------------------------------------------------------------------------
// Literal secrets
// ---------------------------------------------------------------------------------------------

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn literal_secrets_work_and_never_leave_the_gateway() {
    const AKID: &str = "AKIDLITERALSECRET001";
    const SECRET: &str = "literalSecretKey/NeverShown+Anywhere000001";
    const API_KEY: &str = "sk-ant-api03-literal-upstream-NeverShown-0001";
    let bedrock = BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET))
        .expect("bedrock double");
    let anthropic = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(API_KEY))
        .expect("anthropic double");
    let gw = gateway(Vec::new()).await;
    let http = reqwest::Client::new();
    let bkey = provider_with_key(
        &http,
        &gw,
        "bedrock",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "literal", "models": ["*"], "weight": 1,
               "bedrock_key_config": {"access_key": AKID, "secret_key": SECRET, "region": "us-east-1"}}),
    )
    .await;
    let akey = provider_with_key(
        &http,
        &gw,
        "anthropic",
        "anthropic",
        anthropic.base_url(),
        json!({"name": "literal", "models": ["*"], "weight": 1, "value": API_KEY}),
    )
    .await;
    assert_eq!(bkey["bedrock_key_config"]["access_key"], "<redacted>");
    assert_eq!(bkey["bedrock_key_config"]["secret_key"], "<redacted>");
    assert_eq!(akey["value"], "<redacted>");
    // An update that sends the redacted form back keeps the stored secret.
    let id = bkey["id"].as_str().expect("id");
    let mut edited = bkey.clone();
    edited["weight"] = json!(2.0);
    let (s, updated) = admin(
        &http,
        &gw,
        "PUT",
        &format!("/api/providers/bedrock/keys/{id}"),
        edited,
    )
    .await;
    assert_eq!(s, 200, "{updated}");
    let vk = virtual_key(&http, &gw, &["bedrock", "anthropic"]).await;

    let resp = until_configured(&gw, || {
        messages_call(&http, &gw, &vk, &message(SONNET, "hi", false))
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", gw.output());
    let resp = messages_call(
        &http,
        &gw,
        &vk,
        &message("anthropic/claude-opus-4-5", "hi", true),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("drain");
    let b = bedrock.requests().pop().expect("bedrock request");
    assert_eq!(
        (b.verdict.status, b.access_key_id.as_deref()),
        (200, Some(AKID))
    );
    let a = anthropic.last_request().expect("anthropic request");
    assert_eq!(a.header("x-api-key"), Some(API_KEY));
    assert_eq!(a.verdict.status, 200);

    let mut seen = vec![updated.to_string()];
    for path in [
        "/api/providers",
        "/api/providers/bedrock",
        "/api/providers/anthropic",
        "/api/providers/bedrock/keys",
        "/api/providers/anthropic/keys",
        &format!("/api/providers/bedrock/keys/{id}"),
        "/api/keys",
        "/api/virtual-keys",
        "/api/audit-logs",
    ] {
        let resp = http.get(gw.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        seen.push(resp.text().await.expect("text"));
    }
    for text in &seen {
        for secret in [SECRET, API_KEY] {
            assert!(
                !text.contains(secret),
                "an admin response shows a secret: {text}"
            );
        }
    }
    for secret in [SECRET, API_KEY, vk.as_str()] {
        assert_not_in_output(&gw, secret).expect("no secret in the gateway's output");
    }
    // Stored encrypted: the plaintext is in no file of the data directory.
    let files = files_under(gw.data_dir());
    assert!(!files.is_empty(), "the data directory holds the database");
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for secret in [SECRET, API_KEY] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a literal secret in plaintext",
                f.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic provider
// ---------------------------------------------------------------------------------------------

struct AnthropicSetup {
    double: AnthropicDouble,
    gw: TollgateProcess,
    http: reqwest::Client,
    vk: String,
}

async fn anthropic_setup() -> AnthropicSetup {
    let double = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY))
        .expect("anthropic double");
    let gw = gateway(envs(&[("ANTHROPIC_UPSTREAM_KEY", UPSTREAM_KEY)])).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let key = provider_with_key(
        &http,
        &gw,
        "anthropic",
        "anthropic",
        double.base_url(),
        json!({"name": "ant", "models": ["*"], "weight": 1,
               "value": "env.ANTHROPIC_UPSTREAM_KEY", "aliases": {"opus": "claude-opus-4-5"}}),
    )
    .await;
    assert_eq!(key["value"], "env.ANTHROPIC_UPSTREAM_KEY");
    let vk = virtual_key(&http, &gw, &["anthropic"]).await;
    // Warm up until the configuration is applied, then forget the warm-up.
    let resp = until_configured(&gw, || {
        http.post(gw.url("/anthropic/v1/messages/count_tokens"))
            .header("x-api-key", &vk)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-opus-4-5", "messages": [{"role": "user", "content": "warm"}]}))
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", gw.output());
    double.clear_requests();
    AnthropicSetup {
        double,
        gw,
        http,
        vk,
    }
}

const BETA_1: &str = "claude-code-20250219,interleaved-thinking-2025-05-14";
const BETA_2: &str = "context-management-2025-06-27";

impl AnthropicSetup {
    /// Sends raw body bytes the way Claude Code does (Bearer virtual key, version, two beta
    /// header lines, a session id).
    async fn send_raw(&self, path: &str, body: &[u8]) -> reqwest::Response {
        self.http
            .post(self.gw.url(path))
            .bearer_auth(&self.vk)
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", BETA_1)
            .header("anthropic-beta", BETA_2)
            .header(
                "x-claude-code-session-id",
                "5f0c7a52-e2e0-4c3b-9d55-2b8a1f0e6d11",
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("send")
    }

    fn only_request(&self) -> AnthropicRequest {
        let mut requests = self.double.requests();
        assert_eq!(requests.len(), 1, "exactly one upstream request");
        requests.remove(0)
    }

    /// What every forwarded request must look like: the provider key, never the virtual key;
    /// the client's `anthropic-*` headers unchanged.
    fn assert_forwarded_headers(&self, r: &AnthropicRequest) {
        assert_eq!(r.header("x-api-key"), Some(UPSTREAM_KEY));
        assert!(r.authenticated);
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header_all("anthropic-beta"), [BETA_1, BETA_2]);
        assert!(
            r.header("authorization").is_none(),
            "no Authorization header goes upstream: {:?}",
            r.headers
        );
        for (name, value) in &r.headers {
            assert!(
                !value.contains(&self.vk),
                "the virtual key reached the upstream in {name}"
            );
        }
    }
}

/// Top-level members of a JSON object as (name, raw text), in order.
fn raw_members(body: &[u8]) -> Vec<(String, String)> {
    let order: serde_json::Map<String, Value> = serde_json::from_slice(body).expect("object");
    let raw: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).expect("object");
    order
        .keys()
        .map(|k| (k.clone(), raw[k].get().to_owned()))
        .collect()
}

#[tokio::test]
async fn anthropic_non_streaming_passes_bytes_through() {
    let s = anthropic_setup().await;
    // Unusual but valid JSON: spacing, escapes, nested order; the model needs no rewrite.
    let raw = br#"{ "model" : "claude-opus-4-5",
  "max_tokens": 128,
  "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1", "cache_control": {"type": "ephemeral"}}],
  "messages": [{"role": "user", "content": [{"text": "caf\u00e9 \"quoted\" \/ slash", "type": "text"}]}],
  "metadata": {"user_id": "user_e2e"}, "temperature": 1.0e0 }"#;
    let resp = s.send_raw("/anthropic/v1/messages?beta=true", raw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let request_id = resp.headers()["request-id"]
        .to_str()
        .expect("request-id")
        .to_owned();
    let got = resp.bytes().await.expect("bytes");
    let r = s.only_request();
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(raw),
        "the body reaches the upstream byte for byte"
    );
    s.assert_forwarded_headers(&r);
    assert_eq!(got, r.response_body, "the client gets the upstream's bytes");
    assert_eq!(request_id, r.request_id, "the upstream's request-id");

    // `anthropic/<model>` and an alias are rewritten to the upstream id; nothing else changes.
    // The answer reports the name the client asked for (Claude Code keeps thinking blocks only
    // when it matches) and the headers name what served it.
    for (model, compact) in [("anthropic/claude-opus-4-5", true), ("opus", false)] {
        s.double.clear_requests();
        let sent = if compact {
            format!(
                r#"{{"model":"{model}","max_tokens":64,"messages":[{{"role":"user","content":"caf\u00e9"}}],"thinking":{{"type":"enabled","budget_tokens":1024}}}}"#
            )
        } else {
            format!(
                "{{\n  \"max_tokens\": 64,\n  \"model\": \"{model}\",\n  \"messages\": [ {{\"role\":\"user\", \"content\":\"caf\\u00e9\"}} ]\n}}"
            )
        };
        let resp = s.send_raw("/anthropic/v1/messages", sent.as_bytes()).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(resp.headers()["x-tollgate-provider"], "anthropic");
        assert_eq!(resp.headers()["x-tollgate-model"], "claude-opus-4-5");
        let got = resp.bytes().await.expect("bytes");
        let r = s.only_request();
        s.assert_forwarded_headers(&r);
        let expected_model = r#""claude-opus-4-5""#;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&r.response_body).replacen(
                &format!(r#""model":{expected_model}"#),
                &format!(r#""model":"{model}""#),
                1
            ),
            "the upstream's bytes with the requested model name"
        );
        if compact {
            assert_eq!(
                String::from_utf8_lossy(&r.body),
                sent.replace(&format!(r#""{model}""#), expected_model),
                "only the model changes"
            );
        }
        // Every other member keeps its exact bytes and its place.
        let before = raw_members(sent.as_bytes());
        let after = raw_members(&r.body);
        assert_eq!(before.len(), after.len());
        for ((k1, v1), (k2, v2)) in before.iter().zip(&after) {
            assert_eq!(k1, k2, "member order");
            if k1 == "model" {
                assert_eq!(v2, expected_model);
            } else {
                assert_eq!(v1, v2, "{k1} is forwarded byte for byte");
            }
        }
        let answer: Value = serde_json::from_slice(&got).expect("json");
        assert_eq!(answer["model"], model);
    }
}

#[tokio::test]
async fn anthropic_streaming_passes_bytes_through_as_they_arrive() {
    let s = anthropic_setup().await;
    let sent = br#"{"model":"anthropic/claude-opus-4-5","max_tokens":128,"stream":true,"messages":[{"role":"user","content":"[double:slow:250] stream please"}]}"#;
    let resp = s.send_raw("/anthropic/v1/messages?beta=true", sent).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let started = Instant::now();
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        arrivals.push(started.elapsed());
        got.extend_from_slice(&chunk);
    }
    let r = s.only_request();
    s.assert_forwarded_headers(&r);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(sent).replace("anthropic/claude-opus-4-5", "claude-opus-4-5")
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&r.response_body).replacen(
            r#""model":"claude-opus-4-5""#,
            r#""model":"anthropic/claude-opus-4-5""#,
            1
        ),
        "the client gets exactly the upstream's SSE bytes, message_start naming the requested model"
    );
    assert!(
        String::from_utf8_lossy(&got).contains("event: ping\ndata: {\"type\": \"ping\"}\n\n"),
        "the upstream's ping passes through untouched"
    );
    // Relayed as produced: the first event long before the last (≈ 8 gaps of 250 ms).
    let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
    assert!(
        last.saturating_sub(first) >= Duration::from_millis(1200),
        "stream was buffered: first chunk at {first:?}, last at {last:?}"
    );
}

#[tokio::test]
async fn anthropic_upstream_errors_are_relayed_unmodified() {
    let s = anthropic_setup().await;
    for (trigger, stream, status) in [
        ("[double:overloaded]", false, 529),
        ("[double:overloaded]", true, 529),
        ("[double:prompt-too-long]", false, 400),
        ("[double:rate-limit]", true, 429),
        ("[double:error:permission_error]", false, 403),
        ("[double:error:api_error]", false, 500),
        ("[double:html-502]", false, 502),
        ("[double:midstream-overloaded]", true, 200),
    ] {
        s.double.clear_requests();
        let body = message("anthropic/claude-opus-4-5", trigger, stream).to_string();
        let resp = s.send_raw("/anthropic/v1/messages", body.as_bytes()).await;
        assert_eq!(resp.status().as_u16(), status, "{trigger}");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let got = resp.bytes().await.expect("bytes");
        let r = s.only_request();
        // Error answers are relayed byte for byte; a stream that started reports the requested
        // model name in its message_start.
        let mut expected = String::from_utf8_lossy(&r.response_body).into_owned();
        if status == 200 {
            expected = expected.replacen(
                r#""model":"claude-opus-4-5""#,
                r#""model":"anthropic/claude-opus-4-5""#,
                1,
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            expected,
            "{trigger}: the upstream's answer, byte for byte"
        );
        let expected_type = if trigger == "[double:html-502]" {
            "text/html"
        } else if status == 200 {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        };
        assert_eq!(content_type.as_deref(), Some(expected_type), "{trigger}");
    }
    // The mid-stream error event is the last thing the client sees.
    let r = s.double.last_request().expect("request");
    assert!(
        String::from_utf8_lossy(&r.response_body).ends_with(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        )
    );
    // ...and the gateway logs it at warn, like an HTTP error.
    let log = s.gw.output();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("upstream ended the stream with an error")
            && l.contains("overloaded_error")),
        "{log}"
    );
}

#[tokio::test]
async fn anthropic_rate_limit_headers_reach_the_client() {
    let s = anthropic_setup().await;
    let body = message("anthropic/claude-opus-4-5", "[double:rate-limit]", false).to_string();
    let resp = s.send_raw("/anthropic/v1/messages", body.as_bytes()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some(tollgate_tests::anthropic_double::RATE_LIMIT_RETRY_AFTER),
        "clients back off by the upstream's retry-after"
    );
    assert_eq!(
        resp.headers()
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
}

#[tokio::test]
async fn anthropic_count_tokens_passes_through() {
    let s = anthropic_setup().await;
    let sent = br#"{"model":"anthropic/claude-opus-4-5","messages":[{"role":"user","content":"count these words"}],"system":"be brief"}"#;
    let resp = s
        .send_raw("/anthropic/v1/messages/count_tokens?beta=true", sent)
        .await;
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await.expect("bytes");
    let r = s.only_request();
    assert_eq!(r.path, "/v1/messages/count_tokens");
    assert_eq!(r.operation.as_deref(), Some("CountTokens"));
    s.assert_forwarded_headers(&r);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(sent).replace("anthropic/claude-opus-4-5", "claude-opus-4-5")
    );
    assert_eq!(got, r.response_body);
    let v: Value = serde_json::from_slice(&got).expect("json");
    assert_eq!(v, json!({"input_tokens": 7}));
    // Errors too.
    s.double.clear_requests();
    let resp = s
        .send_raw(
            "/anthropic/v1/messages/count_tokens",
            br#"{"model":"claude-opus-4-5","messages":[{"role":"user","content":"[double:overloaded]"}]}"#,
        )
        .await;
    assert_eq!(resp.status(), 529);
    let got = resp.bytes().await.expect("bytes");
    assert_eq!(got, s.only_request().response_body);
}

// ---------------------------------------------------------------------------------------------
// env.NAME references
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn env_references_are_resolved_at_use_and_a_missing_one_is_named_in_the_log() {
    const SET_AKID_VALUE: &str = "AKIDVALUEMUSTNOTSHOW";
    let anthropic = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY))
        .expect("anthropic double");
    let bedrock = BedrockDouble::start(
        BedrockDoubleConfig::new().with_key(SET_AKID_VALUE, "irrelevant-secret"),
    )
    .expect("bedrock double");
    let data = tempfile::tempdir().expect("data dir");
    let options = |envs: Vec<(String, String)>| TollgateOptions {
        envs,
        data_dir: Some(data.path().to_path_buf()),
        ..TollgateOptions::default()
    };
    let gw = TollgateProcess::spawn_with(options(envs(&[("TG_E2E_SET_AKID", SET_AKID_VALUE)])))
        .await
        .expect("tollgate starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    // The references are accepted and stored as references although nothing is set yet.
    let akey = provider_with_key(
        &http,
        &gw,
        "anthropic",
        "anthropic",
        anthropic.base_url(),
        json!({"name": "ant", "models": ["*"], "weight": 1, "value": "env.TG_E2E_UNSET_ANTHROPIC_KEY"}),
    )
    .await;
    assert_eq!(akey["value"], "env.TG_E2E_UNSET_ANTHROPIC_KEY");
    provider_with_key(
        &http,
        &gw,
        "bedrock",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "half-set", "models": ["*"], "weight": 1,
               "bedrock_key_config": {"access_key": "env.TG_E2E_SET_AKID",
                   "secret_key": "env.TG_E2E_UNSET_SECRET", "region": "us-east-1"}}),
    )
    .await;
    provider_with_key(
        &http,
        &gw,
        "bedrock-role",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "role-from-env", "models": ["*"], "weight": 1,
               "bedrock_key_config": {"access_key": "env.TG_E2E_SET_AKID",
                   "secret_key": "env.TG_E2E_SET_AKID", "region": "us-east-1",
                   "role_arn": "env.TG_E2E_UNSET_ROLE_ARN"}}),
    )
    .await;
    provider_with_key(
        &http,
        &gw,
        "bedrock-noregion",
        "bedrock",
        bedrock.base_url(),
        json!({"name": "api-key-no-region", "models": ["*"], "weight": 1,
               "value": "env.TG_E2E_SET_AKID"}),
    )
    .await;
    let vk = virtual_key(
        &http,
        &gw,
        &["anthropic", "bedrock", "bedrock-role", "bedrock-noregion"],
    )
    .await;

    let credentials = "Bedrock credentials unavailable";
    let cases = [
        (
            "anthropic/claude-opus-4-5",
            "TG_E2E_UNSET_ANTHROPIC_KEY",
            "API key",
        ),
        (SONNET, "TG_E2E_UNSET_SECRET", credentials),
        (
            "bedrock-role/global.anthropic.claude-sonnet-4-6",
            "TG_E2E_UNSET_ROLE_ARN",
            credentials,
        ),
        // No region configured and none in the environment.
        (
            "bedrock-noregion/global.anthropic.claude-sonnet-4-6",
            "REGION",
            "region",
        ),
    ];
    for (model, variable, setting) in cases {
        for stream in [false, true] {
            let resp = until_configured(&gw, || {
                messages_call(&http, &gw, &vk, &message(model, "hi", stream))
            })
            .await;
            let (status, body) = error_of(resp).await;
            assert_eq!(status, 500, "{model}: {body}");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "api_error", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(setting) && message.contains("request id req_tg_"),
                "{model}: names the setting ({setting}) and the request id: {message}"
            );
            assert!(
                !message.contains(variable) && !message.contains(SET_AKID_VALUE),
                "the client learns neither the variable's name nor a value: {message}"
            );
        }
        // The operator's log names the variable, on the failed request's line.
        let output = gw.output();
        assert!(
            output
                .lines()
                .any(|l| l.contains("request failed") && l.contains(variable)),
            "{model}: the log names {variable}: {output}"
        );
    }
    assert!(anthropic.requests().is_empty() && bedrock.requests().is_empty());
    assert_not_in_output(&gw, SET_AKID_VALUE).expect("the set value is not logged");

    // The stored configuration is unchanged; with the variable set (here: a restart with a new
    // environment, the only way to change a process's environment) the same key works.
    drop(gw);
    let gw = TollgateProcess::spawn_with(options(envs(&[(
        "TG_E2E_UNSET_ANTHROPIC_KEY",
        UPSTREAM_KEY,
    )])))
    .await
    .expect("tollgate restarts over the same data");
    let resp = until_configured(&gw, || {
        messages_call(
            &http,
            &gw,
            &vk,
            &message("anthropic/claude-opus-4-5", "hi", false),
        )
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", gw.output());
    assert_eq!(
        anthropic
            .last_request()
            .expect("request")
            .header("x-api-key"),
        Some(UPSTREAM_KEY)
    );
}

// ---------------------------------------------------------------------------------------------
// Extra headers and the env allowlist
// ---------------------------------------------------------------------------------------------

const PROXY_TOKEN: &str = "proxy-token-from-the-environment-3b8e1f";
const LITERAL_HEADER: &str = "literal-header-secret-6c0d22";

#[tokio::test]
async fn extra_header_env_references_reach_the_upstream_and_never_the_logs() {
    let double = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY))
        .expect("anthropic double");
    let gw = gateway(envs(&[
        ("ANTHROPIC_UPSTREAM_KEY", UPSTREAM_KEY),
        ("ANTHROPIC_PROXY_TOKEN", PROXY_TOKEN),
    ]))
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    provider_with_key(
        &http,
        &gw,
        "anthropic",
        "anthropic",
        double.base_url(),
        json!({"name": "ant", "value": "env.ANTHROPIC_UPSTREAM_KEY"}),
    )
    .await;
    let (s, b) = admin(
        &http,
        &gw,
        "PUT",
        "/api/providers/anthropic",
        json!({"network_config": {"base_url": double.base_url(), "extra_headers": {
            "x-proxy-token": "env.ANTHROPIC_PROXY_TOKEN", "x-literal": LITERAL_HEADER}}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["network_config"]["extra_headers"],
        json!({"x-literal": "<redacted>", "x-proxy-token": "env.ANTHROPIC_PROXY_TOKEN"})
    );
    // The gateway's own variables cannot be named.
    let (s, b) = admin(
        &http,
        &gw,
        "PUT",
        "/api/providers/anthropic",
        json!({"network_config": {"extra_headers": {"x-steal": "env.TOLLGATE_SECRET_KEY"}}}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "network_config.extra_headers.x-steal");
    let vk = virtual_key(&http, &gw, &["anthropic"]).await;

    for stream in [false, true] {
        let resp = until_configured(&gw, || {
            messages_call(
                &http,
                &gw,
                &vk,
                &message("anthropic/claude-opus-4-5", "hi", stream),
            )
        })
        .await;
        assert_eq!(resp.status(), 200, "{}", gw.output());
        let _ = resp.bytes().await;
        let req = double.last_request().expect("upstream request");
        assert_eq!(req.header("x-proxy-token"), Some(PROXY_TOKEN));
        assert_eq!(req.header("x-literal"), Some(LITERAL_HEADER));
        assert_eq!(req.header("x-api-key"), Some(UPSTREAM_KEY));
    }
    let (_, providers) = admin(&http, &gw, "GET", "/api/providers", json!(null)).await;
    let (_, audit) = admin(&http, &gw, "GET", "/api/audit-logs?limit=100", json!(null)).await;
    for secret in [PROXY_TOKEN, LITERAL_HEADER] {
        assert_not_in_output(&gw, secret).expect("header values are not logged");
        assert!(!providers.to_string().contains(secret), "{providers}");
        assert!(!audit.to_string().contains(secret), "{audit}");
    }
}

/// The split deployment: the control plane accepts `env.PROXY_*` (its `--env-allow`), the data
/// plane keeps the default allowlist. The data plane applies the snapshot (no NACK), refuses the
/// references it does not allow with a clear error for the requests that need them, and serves
/// the other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_refuses_references_its_allowlist_does_not_allow() {
    const ADMIN_TOKEN: &str = "admin-token-for-the-env-allowlist-test";
    const JOIN_TOKEN: &str = "join-token-for-the-env-allowlist-test";
    const PROXY_KEY: &str = "value-of-proxy-key-MUST-NOT-LEAVE";
    const PROXY_HEADER: &str = "value-of-proxy-header-MUST-NOT-LEAVE";
    use base64::Engine as _;

    let double = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY))
        .expect("anthropic double");
    let db = tollgate_tests::postgres::TestDatabase::create("tollgate_env_allow").await;
    let cp_admin = format!("127.0.0.1:{}", free_port().expect("port"));
    let cp_grpc = format!("127.0.0.1:{}", free_port().expect("port"));
    let cp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "control-plane".into(),
            "--listen".into(),
            cp_admin.clone(),
            "--grpc-listen".into(),
            cp_grpc.clone(),
            "--env-allow".into(),
            "PROXY_*".into(),
        ],
        envs: envs(&[
            ("TOLLGATE_DATABASE_URL", &db.url),
            ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN),
            ("TOLLGATE_JOIN_TOKEN", JOIN_TOKEN),
            (
                "TOLLGATE_SECRET_KEY",
                &base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
            ),
        ]),
        health_path: "/openapi.json".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("control plane starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        let req = http
            .request(method, format!("http://{cp_admin}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body);
        async move {
            let resp = req.send().await.expect("admin call");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let provider = |name: &str, headers: Value| {
        json!({"provider": name, "custom_provider_config": {"base_provider_type": "anthropic"},
               "network_config": {"base_url": double.base_url(), "extra_headers": headers}})
    };
    // `ok`: everything allowed everywhere. `bad-key`: a key the data plane refuses. `bad-header`:
    // an extra header the data plane refuses.
    for (name, headers, value) in [
        (
            "ok",
            json!({"x-literal": LITERAL_HEADER}),
            "env.ANTHROPIC_UPSTREAM_KEY",
        ),
        ("bad-key", json!({}), "env.PROXY_KEY"),
        (
            "bad-header",
            json!({"x-proxy": "env.PROXY_HEADER"}),
            "env.ANTHROPIC_UPSTREAM_KEY",
        ),
    ] {
        let (s, b) = admin(
            reqwest::Method::POST,
            "/api/providers",
            provider(name, headers),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = admin(
            reqwest::Method::POST,
            &format!("/api/providers/{name}/keys"),
            json!({"name": "k", "value": value}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        assert!(
            b.get("refused_env_references").is_none(),
            "allowed on the control plane: {b}"
        );
    }
    // The control plane's wider list still never reaches TOLLGATE_*.
    let (s, b) = admin(
        reqwest::Method::POST,
        "/api/providers/ok/keys",
        json!({"name": "steal", "value": "env.TOLLGATE_JOIN_TOKEN"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = admin(
        reqwest::Method::POST,
        "/api/virtual-keys",
        json!({"name": "team", "providers": ["ok", "bad-key", "bad-header"]}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let vk = b["value"].as_str().expect("vk").to_owned();

    let dp_dir = tempfile::tempdir().expect("dir");
    let dp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "data-plane".into(),
            "--control-plane".into(),
            format!("http://{cp_grpc}"),
        ],
        // The data plane has the values; its allowlist (the default) does not name them.
        envs: vec![
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("ANTHROPIC_UPSTREAM_KEY".into(), UPSTREAM_KEY.into()),
            ("PROXY_KEY".into(), PROXY_KEY.into()),
            ("PROXY_HEADER".into(), PROXY_HEADER.into()),
        ],
        data_dir: Some(dp_dir.path().to_owned()),
        health_path: "/ready".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("data plane starts and applies the config");

    let ok = until_configured(&dp, || {
        messages_call(&http, &dp, &vk, &message("ok/claude-opus-4-5", "hi", false))
    })
    .await;
    assert_eq!(ok.status(), 200, "{}", dp.output());
    for (model, reference) in [
        ("bad-key/claude-opus-4-5", "env.PROXY_KEY"),
        ("bad-header/claude-opus-4-5", "env.PROXY_HEADER"),
    ] {
        for stream in [false, true] {
            let resp = messages_call(&http, &dp, &vk, &message(model, "hi", stream))
                .send()
                .await
                .expect("request");
            let (status, body) = error_of(resp).await;
            assert_eq!(status, 500, "{model}: {body}");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "api_error", "{body}");
            let text = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                text.contains("cannot be used on this data plane")
                    && text.contains("request id req_tg_"),
                "{model}: {text}"
            );
            assert!(!text.contains(reference), "{model}: {text}");
            assert!(!text.contains(PROXY_KEY) && !text.contains(PROXY_HEADER));
        }
        // The log says which reference and why, per request.
        let output = dp.output();
        assert!(
            output.contains(&format!("{reference} is not allowed on this data plane")),
            "{model}: {output}"
        );
    }
    // The other provider still works after the refusals.
    let ok = messages_call(&http, &dp, &vk, &message("ok/claude-opus-4-5", "hi", false))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    // Only the two `ok` requests went upstream, and no refused value did.
    let requests = double.requests();
    assert_eq!(
        requests.len(),
        2,
        "refused requests never reach the upstream"
    );
    for r in &requests {
        assert_eq!(r.header("x-literal"), Some(LITERAL_HEADER));
        for (_, v) in &r.headers {
            assert!(v != PROXY_KEY && v != PROXY_HEADER, "{v}");
        }
    }

    // The snapshot was applied, not rejected: no NACK in the fleet view.
    let (s, fleet) = admin(reqwest::Method::GET, "/api/data-planes", json!(null)).await;
    assert_eq!(s, 200, "{fleet}");
    let node = &fleet["data_planes"][0];
    assert!(node["last_error"].is_null(), "{fleet}");
    assert!(node["applied_version"].as_u64().unwrap_or(0) > 0, "{fleet}");
    // The data plane said why, at warn, without the values.
    let output = dp.output();
    assert!(
        output.contains("WARN") && output.contains("PROXY_KEY") && output.contains("PROXY_HEADER"),
        "{output}"
    );
    assert!(output.contains("env allowlist"), "{output}");
    for secret in [PROXY_KEY, PROXY_HEADER, UPSTREAM_KEY] {
        assert_not_in_output(&dp, secret).expect("values are not logged");
        assert_not_in_output(&cp, secret).expect("values are not logged");
    }
    // The config cache holds the header values with the other decrypted secrets, owner-only.
    let cache = dp_dir.path().join("config-cache/snapshot.bin");
    let bytes = std::fs::read(&cache).expect("config cache");
    assert!(
        bytes
            .windows(LITERAL_HEADER.len())
            .any(|w| w == LITERAL_HEADER.as_bytes()),
        "the cached snapshot carries the header values"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache)
            .expect("cache")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", cache.display());
    }
    drop(dp);
    drop(cp);
}

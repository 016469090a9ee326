//! Admin API tests: the router is driven with `tower::ServiceExt::oneshot`, the peer address is
//! given as a `ConnectInfo` extension, exactly as `into_make_service_with_connect_info` does.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tollgate_control_plane::{
    AdminAuth, ControlPlane, ControlPlaneConfig, EnvAllowlist, Error, StoreConfig,
};
use tollgate_proto::config::v1::{Snapshot, value_ref};
use tower::ServiceExt as _;

const KEY: [u8; 32] = [42u8; 32];

fn loopback() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn remote() -> SocketAddr {
    "192.0.2.7:40000".parse().unwrap()
}

fn loopback_auth() -> AdminAuth {
    AdminAuth {
        token: None,
        allow_loopback_without_token: true,
    }
}

/// The default env allowlist plus the short names older cases use (`env.X`, `env.K`, ...).
fn test_env_allow() -> EnvAllowlist {
    EnvAllowlist::with_extra(["A", "B", "K", "R", "X", "BEDROCK_API_KEY"]).unwrap()
}

struct Harness {
    cp: ControlPlane,
    router: Router,
    store: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite_harness(auth: AdminAuth) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::Sqlite {
        path: dir.path().join("tollgate.db"),
    };
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: store.clone(),
        secret_key: KEY,
        admin_auth: auth,
        env_allow: test_env_allow(),
    })
    .await
    .unwrap();
    Harness {
        router: cp.admin_router(),
        cp,
        store,
        _dir: Some(dir),
    }
}

async fn postgres_harness(url: String) -> Harness {
    let store = StoreConfig::Postgres { url };
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: store.clone(),
        secret_key: KEY,
        admin_auth: loopback_auth(),
        env_allow: test_env_allow(),
    })
    .await
    .unwrap();
    Harness {
        router: cp.admin_router(),
        cp,
        store,
        _dir: None,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
    text: String,
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    body: Option<Vec<u8>>,
    content_type: Option<&'a str>,
    peer: Option<SocketAddr>,
    token: Option<&'a str>,
    headers: Vec<(&'static str, &'a str)>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Call {
            method,
            path,
            body: None,
            content_type: None,
            peer: Some(loopback()),
            token: None,
            headers: Vec::new(),
        }
    }
    fn json(mut self, v: Value) -> Self {
        self.body = Some(serde_json::to_vec(&v).unwrap());
        self.content_type = Some("application/json");
        self
    }
    fn raw(mut self, body: &[u8], content_type: Option<&'a str>) -> Self {
        self.body = Some(body.to_vec());
        self.content_type = content_type;
        self
    }
    fn peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }
    fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    fn header(mut self, name: &'static str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
    async fn send(self, router: &Router) -> Resp {
        let mut req = Request::builder().method(self.method).uri(self.path);
        if let Some(ct) = self.content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(t) = self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (name, value) in self.headers {
            req = req.header(name, value);
        }
        let mut req = req
            .body(self.body.map_or_else(Body::empty, Body::from))
            .unwrap();
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let ndjson = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes().starts_with(b"application/x-ndjson")
                || v.as_bytes().starts_with(b"text/csv")
        });
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = if text.is_empty() || ndjson {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"))
        };
        Resp {
            status,
            headers,
            json,
            text,
        }
    }
}

async fn get(h: &Harness, path: &str) -> Resp {
    Call::new(Method::GET, path).send(&h.router).await
}
async fn post(h: &Harness, path: &str, body: Value) -> Resp {
    Call::new(Method::POST, path)
        .json(body)
        .send(&h.router)
        .await
}
async fn put(h: &Harness, path: &str, body: Value) -> Resp {
    Call::new(Method::PUT, path)
        .json(body)
        .send(&h.router)
        .await
}
async fn delete(h: &Harness, path: &str) -> Resp {
    Call::new(Method::DELETE, path).send(&h.router).await
}

fn assert_error(r: &Resp, status: StatusCode, kind: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "body: {}", r.text);
    assert_eq!(r.json["error"]["type"], kind, "body: {}", r.text);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {}",
        r.text
    );
    match field {
        Some(f) => assert_eq!(r.json["error"]["field"], f, "body: {}", r.text),
        None => assert!(r.json["error"].get("field").is_none(), "body: {}", r.text),
    }
}

fn current(h: &Harness) -> Arc<Snapshot> {
    h.cp.snapshots().borrow().clone()
}

fn literal(v: &Option<tollgate_proto::config::v1::ValueRef>) -> Option<&str> {
    match v.as_ref()?.source.as_ref()? {
        value_ref::Source::Literal(s) => Some(s),
        value_ref::Source::Env(_) => None,
    }
}

fn env(v: &Option<tollgate_proto::config::v1::ValueRef>) -> Option<&str> {
    match v.as_ref()?.source.as_ref()? {
        value_ref::Source::Env(s) => Some(s),
        value_ref::Source::Literal(_) => None,
    }
}

/// The walkthrough users paste, end to end.
async fn walkthrough(h: &Harness) {
    let mut rx = h.cp.snapshots();
    let v0 = rx.borrow_and_update().version;
    assert_eq!(v0, 1);

    let r = post(h, "/api/providers", json!({"provider": "bedrock"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["name"], "bedrock");
    assert_eq!(r.json["kind"], "bedrock");
    assert!(
        rx.has_changed().unwrap(),
        "the watch channel sees the change"
    );
    assert_eq!(rx.borrow_and_update().version, v0 + 1);

    let r = post(
        h,
        "/api/providers/bedrock/keys",
        json!({
            "name": "bedrock-key",
            "models": ["*"],
            "weight": 1.0,
            "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
            "bedrock_key_config": {
                "access_key": "env.AWS_ACCESS_KEY_ID",
                "secret_key": "env.AWS_SECRET_ACCESS_KEY",
                "region": "us-east-1"
            }
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key_id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json["provider"], "bedrock");
    assert_eq!(r.json["enabled"], true);
    assert_eq!(r.json["models"], json!(["*"]));
    assert_eq!(
        r.json["bedrock_key_config"]["access_key"], "env.AWS_ACCESS_KEY_ID",
        "env references are shown as written"
    );
    assert_eq!(
        r.json["bedrock_key_config"]["secret_key"],
        "env.AWS_SECRET_ACCESS_KEY"
    );
    assert_eq!(r.json["bedrock_key_config"]["region"], "us-east-1");
    assert_eq!(rx.borrow_and_update().version, v0 + 2);

    let r = post(
        h,
        "/api/virtual-keys",
        json!({"name": "engineering-team", "monthly_budget": 500, "provider": "bedrock"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let value = r.json["value"].as_str().unwrap().to_owned();
    let body = value.strip_prefix("sk-tg-").expect("sk-tg- prefix");
    assert_eq!(body.len(), 43);
    assert!(
        body.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(r.json["providers"], json!(["bedrock"]));
    assert_eq!(r.json["monthly_budget"], 500.0);
    assert_eq!(r.json["is_active"], true);
    let vk_id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(rx.borrow_and_update().version, v0 + 3);

    // The snapshot carries what the data plane needs: env refs unresolved, the VK's SHA-256.
    let snap = current(h);
    assert_eq!(snap.version, v0 + 3);
    assert_eq!(snap.providers.len(), 1);
    let p = &snap.providers[0];
    assert_eq!(p.name, "bedrock");
    let k = &p.keys[0];
    assert_eq!(k.id, key_id);
    assert_eq!(k.name, "bedrock-key");
    assert_eq!(k.models, ["*"]);
    assert_eq!(k.weight, 1.0);
    assert!(k.enabled);
    assert_eq!(
        k.aliases["claude-sonnet-4-6"],
        "global.anthropic.claude-sonnet-4-6"
    );
    let b = k.bedrock.as_ref().unwrap();
    assert_eq!(env(&b.access_key), Some("AWS_ACCESS_KEY_ID"));
    assert_eq!(env(&b.secret_key), Some("AWS_SECRET_ACCESS_KEY"));
    assert_eq!(literal(&b.region), Some("us-east-1"));
    let vk = &snap.virtual_keys[0];
    assert_eq!(vk.id, vk_id);
    assert_eq!(&vk.key_sha256[..], &Sha256::digest(value.as_bytes())[..]);
    assert_eq!(vk.providers, ["bedrock"]);
    assert_eq!(vk.monthly_budget_usd, 500.0);
    assert!(vk.active);

    // The value is never shown again.
    for path in ["/api/virtual-keys", &format!("/api/virtual-keys/{vk_id}")] {
        let r = get(h, path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(!r.text.contains(&value), "{path} leaks the value");
        assert!(!r.text.contains(body), "{path} leaks the value");
    }
    let r = get(h, &format!("/api/virtual-keys/{vk_id}")).await;
    let prefix = r.json["value_prefix"].as_str().unwrap();
    assert_eq!(prefix, format!("{}…", &value[..10]));
    assert!(r.json.get("value").is_none());
    let r = get(h, "/api/governance/virtual-keys").await;
    assert_eq!(r.json["count"], 1);
    assert_eq!(r.json["virtual_keys"][0]["id"], vk_id.as_str());

    // Lists.
    let r = get(h, "/api/providers").await;
    assert_eq!(r.json["count"], 1);
    let r = get(h, "/api/keys").await;
    assert_eq!(r.json["keys"][0]["id"], key_id.as_str());
    let r = get(h, "/api/providers/bedrock/keys").await;
    assert_eq!(r.json["count"], 1);

    // Version endpoint and audit log.
    let r = get(h, "/api/version").await;
    assert_eq!(r.json["config_version"], v0 + 3);
    assert_eq!(r.json["published_version"], v0 + 3);
    assert_eq!(r.json["version"], env!("CARGO_PKG_VERSION"));
    let r = get(h, "/api/audit-logs").await;
    let actions: Vec<_> = r.json["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "virtual_key.create",
            "provider_key.create",
            "provider.create"
        ]
    );
    assert_eq!(r.json["audit_logs"][0]["actor"], "loopback@127.0.0.1");
    assert_eq!(r.json["audit_logs"][0]["config_version"], v0 + 3);
    assert!(!r.text.contains(&value));
    let r = get(h, "/api/audit-logs?limit=1").await;
    assert_eq!(r.json["count"], 1);
}

#[tokio::test]
async fn walkthrough_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    walkthrough(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        walkthrough(&h).await;
        secrets_are_sealed_and_never_returned(&h).await;
    })
    .await;
}

#[tokio::test]
async fn conflicts_and_not_found() {
    let h = sqlite_harness(loopback_auth()).await;
    assert_eq!(
        post(&h, "/api/providers", json!({"provider": "bedrock"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = post(&h, "/api/providers", json!({"provider": "bedrock"})).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);

    let key = json!({"name": "k", "value": "env.BEDROCK_API_KEY"});
    assert_eq!(
        post(&h, "/api/providers/bedrock/keys", key.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let r = post(&h, "/api/providers/bedrock/keys", key.clone()).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);

    let vk = json!({"name": "team", "provider": "bedrock"});
    assert_eq!(
        post(&h, "/api/virtual-keys", vk.clone()).await.status,
        StatusCode::CREATED
    );
    let r = post(&h, "/api/governance/virtual-keys", vk).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);

    let r = get(&h, "/api/providers/nope").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = post(&h, "/api/providers/nope/keys", key).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = get(&h, "/api/providers/nope/keys").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = put(&h, "/api/providers/nope", json!({})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = delete(&h, "/api/providers/nope").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let missing = uuid::Uuid::new_v4();
    let r = get(&h, &format!("/api/providers/bedrock/keys/{missing}")).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = delete(&h, &format!("/api/virtual-keys/{missing}")).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = get(&h, "/api/virtual-keys/not-a-uuid").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("vk_id"),
    );
    let r = get(&h, "/api/no-such-route").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    assert!(r.text.contains("/api/no-such-route"), "{}", r.text);
    let r = Call::new(Method::PATCH, "/api/providers")
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json["error"]["type"], "invalid_request");

    // A virtual key naming an unknown provider is a bad request.
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "x", "provider": "ghost"}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("provider"),
    );
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "x", "providers": ["bedrock", "ghost"]}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("providers[1]"),
    );
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "x", "provider": "bedrock", "providers": ["bedrock"]}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("providers"),
    );

    // The provider is in use: 409 until the virtual key is gone; then its keys go with it.
    let r = delete(&h, "/api/providers/bedrock").await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);
    let vk_id = get(&h, "/api/virtual-keys").await.json["virtual_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        delete(&h, &format!("/api/governance/virtual-keys/{vk_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&h, "/api/providers/bedrock").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&h, "/api/keys").await.json["count"], 0);
    assert!(current(&h).providers.is_empty());
}

/// The retry and timeout settings of `network_config` are checked, kept, shown and handed to
/// the data planes in milliseconds.
#[tokio::test]
async fn retry_and_timeout_settings_reach_the_snapshot() {
    let h = sqlite_harness(loopback_auth()).await;
    for (bad, field) in [
        (json!({"max_retries": 11}), "network_config.max_retries"),
        (
            json!({"retry_backoff_initial": 0}),
            "network_config.retry_backoff_initial",
        ),
        (
            json!({"retry_backoff_max": 60001}),
            "network_config.retry_backoff_max",
        ),
        (
            json!({"retry_backoff_initial": 2000, "retry_backoff_max": 1000}),
            "network_config.retry_backoff_initial",
        ),
        (
            json!({"response_header_timeout_in_seconds": 0}),
            "network_config.response_header_timeout_in_seconds",
        ),
    ] {
        let r = post(
            &h,
            "/api/providers",
            json!({"provider": "bedrock", "network_config": bad}),
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let settings = json!({
        "connect_timeout_in_seconds": 3,
        "response_header_timeout_in_seconds": 20,
        "default_request_timeout_in_seconds": 300,
        "stream_idle_timeout_in_seconds": 90,
        "max_retries": 2,
        "retry_backoff_initial": 250,
        "retry_backoff_max": 4000
    });
    let r = post(
        &h,
        "/api/providers",
        json!({"provider": "bedrock", "network_config": settings}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let shown = get(&h, "/api/providers/bedrock").await;
    for (name, value) in settings.as_object().unwrap() {
        assert_eq!(&shown.json["network_config"][name], value, "{name}");
    }
    let snapshot = current(&h);
    let network = snapshot.providers[0].network.clone().unwrap();
    assert_eq!(
        (
            network.connect_timeout_ms,
            network.response_header_timeout_ms,
            network.request_timeout_ms,
            network.stream_idle_timeout_ms,
            network.max_retries,
            network.retry_backoff_initial_ms,
            network.retry_backoff_max_ms
        ),
        (3000, 20_000, 300_000, 90_000, 2, 250, 4000)
    );
}

#[tokio::test]
async fn bad_input_is_a_json_400_naming_the_field() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(
        &h,
        "/api/providers",
        json!({"provider": "bedrock", "max_retries": 2}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("max_retries"),
    );
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_retries")
    );

    let r = post(
        &h,
        "/api/providers",
        json!({"provider": "bedrock", "network_config": {"base_url": "ftp://x"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("network_config.base_url"),
    );
    let r = post(
        &h,
        "/api/providers",
        json!({"provider": "bedrock", "network_config": {"timeout": 1}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("network_config.timeout"),
    );
    let r = post(&h, "/api/providers", json!({"provider": "my-proxy"})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("custom_provider_config"),
    );
    let r = post(
        &h,
        "/api/providers",
        json!({"provider": "my-proxy", "custom_provider_config": {"base_provider_type": "azure"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("custom_provider_config.base_provider_type"),
    );
    let r = post(&h, "/api/providers", json!({"provider": "a/b"})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("provider"),
    );
    let r = post(&h, "/api/providers", json!({})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("provider"),
    );

    // Malformed JSON, wrong content type, no body, too large.
    let r = Call::new(Method::POST, "/api/providers")
        .raw(b"{\"provider\": ", Some("application/json"))
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", None);
    let r = Call::new(Method::POST, "/api/providers")
        .raw(br#"{"provider": "bedrock"}"#, Some("text/plain"))
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", None);
    let r = Call::new(Method::POST, "/api/providers")
        .raw(br#"{"provider": "bedrock"}"#, None)
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", None);
    let big = format!(r#"{{"provider": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let r = Call::new(Method::POST, "/api/providers")
        .raw(big.as_bytes(), Some("application/json"))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.json["error"]["type"], "invalid_request");
    assert!(current(&h).providers.is_empty(), "nothing was created");

    // Keys.
    post(&h, "/api/providers", json!({"provider": "bedrock"})).await;
    post(&h, "/api/providers", json!({"provider": "anthropic"})).await;
    let cases = [
        (
            "bedrock",
            json!({"name": "k", "bedrock_key_config": {"acess_key": "x"}}),
            "bedrock_key_config.acess_key",
        ),
        ("bedrock", json!({"name": "k"}), "bedrock_key_config"),
        (
            "bedrock",
            json!({"name": "k", "bedrock_key_config": {"region": "us-east-1", "access_key": "AKIA"}}),
            "bedrock_key_config.secret_key",
        ),
        (
            "bedrock",
            json!({"name": "k", "bedrock_key_config": {"access_key": "env.A", "secret_key": "env.B"}}),
            "bedrock_key_config.region",
        ),
        (
            "bedrock",
            json!({"name": "k", "bedrock_key_config": {"region": "env.9BAD"}}),
            "bedrock_key_config.region",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "env.X", "weight": 0}),
            "weight",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "env.X", "weight": -1.5}),
            "weight",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "env.X", "weight": "heavy"}),
            "weight",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "env.X", "aliases": {"a": ""}}),
            "aliases.a",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "env.X", "aliases": {"": "b"}}),
            "aliases",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "env.X", "models": ["ok", 3]}),
            "models[1]",
        ),
        (
            "bedrock",
            json!({"name": "k", "value": "<redacted>"}),
            "value",
        ),
        ("bedrock", json!({"name": "", "value": "env.X"}), "name"),
        ("anthropic", json!({"name": "k"}), "value"),
        (
            "anthropic",
            json!({"name": "k", "value": "env.K", "bedrock_key_config": {"region": "us-east-1"}}),
            "bedrock_key_config",
        ),
    ];
    for (provider, body, field) in cases {
        let r = post(&h, &format!("/api/providers/{provider}/keys"), body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
        let _ = body;
    }
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "x", "monthly_budget": -1}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("monthly_budget"),
    );
    let r = post(&h, "/api/virtual-keys", json!({"name": "x", "budget": 5})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("budget"),
    );
    let r = get(&h, "/api/audit-logs?limit=0").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("limit"),
    );
    let r = get(&h, "/api/audit-logs?limit=abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(&h, "/api/audit-logs?offset=3").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("offset"),
    );
}

/// Bodies that match the spec only in shape are refused (found by schemathesis): an array where
/// an object is expected, and read-only fields that are not the strings responses carry. A GET
/// response sent back is still a valid update.
#[tokio::test]
async fn bodies_must_have_the_documented_types() {
    let h = sqlite_harness(loopback_auth()).await;
    let provider = post(&h, "/api/providers", json!({"provider": "bedrock"})).await;
    assert_eq!(provider.status, StatusCode::CREATED, "{}", provider.text);
    let key = post(
        &h,
        "/api/providers/bedrock/keys",
        json!({"name": "k", "bedrock_key_config": {"region": "us-east-1"}}),
    )
    .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    let key_path = format!(
        "/api/providers/bedrock/keys/{}",
        key.json["id"].as_str().unwrap()
    );
    let vk = post(&h, "/api/virtual-keys", json!({"name": "team"})).await;
    assert_eq!(vk.status, StatusCode::CREATED, "{}", vk.text);
    let vk_path = format!("/api/virtual-keys/{}", vk.json["id"].as_str().unwrap());

    let r = put(&h, &key_path, json!([null, null])).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", None);
    let r = put(
        &h,
        "/api/providers/bedrock",
        json!({"network_config": ["https://example.com", 5]}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("network_config"),
    );
    let r = put(&h, "/api/providers/bedrock", json!({"updated_at": {}})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("updated_at"),
    );
    let r = put(&h, &key_path, json!({"created_at": 5})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("created_at"),
    );
    let r = put(&h, &vk_path, json!({"value_prefix": ["sk-tg-"]})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("value_prefix"),
    );
    // Nothing above changed anything; the GET responses are accepted back as they are.
    for (path, resp) in [
        ("/api/providers/bedrock", &provider),
        (key_path.as_str(), &key),
        (vk_path.as_str(), &vk),
    ] {
        let now = get(&h, path).await;
        assert_eq!(now.json["updated_at"], resp.json["updated_at"], "{path}");
        let r = put(&h, path, now.json.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
}

/// The five secret columns of `provider_keys`.
type SecretColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Literal secrets are sealed in the database, shown as "<redacted>", kept by "<redacted>" in an
/// update, and reach the data plane only through the snapshot.
async fn secrets_are_sealed_and_never_returned(h: &Harness) {
    const ACCESS: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";
    const API_KEY: &str = "sk-ant-api03-EXAMPLEKEYEXAMPLEKEY";
    const EXTERNAL: &str = "external-id-EXAMPLE-1234";
    let all = [ACCESS, SECRET, TOKEN, API_KEY, EXTERNAL];
    let mut bodies = Vec::new();

    let r = post(h, "/api/providers", json!({"provider": "anthropic"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = post(h, "/api/providers", json!({
        "provider": "bedrock-eu",
        "custom_provider_config": {"base_provider_type": "bedrock"},
        "network_config": {"base_url": "https://bedrock-runtime.eu-west-1.amazonaws.com", "connect_timeout_in_seconds": 5}
    })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json["custom_provider_config"]["base_provider_type"],
        "bedrock"
    );

    let r = post(
        h,
        "/api/providers/bedrock-eu/keys",
        json!({
            "name": "static",
            "description": "static credentials",
            "bedrock_key_config": {
                "access_key": ACCESS, "secret_key": SECRET, "session_token": TOKEN,
                "region": "eu-west-1", "role_arn": "arn:aws:iam::123456789012:role/gw",
                "external_id": EXTERNAL, "session_name": "tollgate"
            }
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bedrock_id = r.json["id"].as_str().unwrap().to_owned();
    for f in ["access_key", "secret_key", "session_token", "external_id"] {
        assert_eq!(r.json["bedrock_key_config"][f], "<redacted>", "{f}");
    }
    assert_eq!(
        r.json["bedrock_key_config"]["role_arn"],
        "arn:aws:iam::123456789012:role/gw"
    );
    bodies.push(r.text);
    let r = post(
        h,
        "/api/providers/anthropic/keys",
        json!({"name": "main", "value": API_KEY}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["value"], "<redacted>");
    let anthropic_id = r.json["id"].as_str().unwrap().to_owned();
    bodies.push(r.text);

    for path in [
        "/api/keys".to_owned(),
        "/api/providers/bedrock-eu/keys".to_owned(),
        format!("/api/providers/bedrock-eu/keys/{bedrock_id}"),
        format!("/api/providers/anthropic/keys/{anthropic_id}"),
        "/api/providers".to_owned(),
    ] {
        let r = get(h, &path).await;
        assert_eq!(r.status, StatusCode::OK);
        bodies.push(r.text);
    }

    // The snapshot has the plaintext for the data plane.
    let snap = current(h);
    let eu = snap
        .providers
        .iter()
        .find(|p| p.name == "bedrock-eu")
        .unwrap();
    assert_eq!(eu.network.as_ref().unwrap().connect_timeout_ms, 5000);
    let b = eu.keys[0].bedrock.as_ref().unwrap();
    assert_eq!(literal(&b.access_key), Some(ACCESS));
    assert_eq!(literal(&b.secret_key), Some(SECRET));
    assert_eq!(literal(&b.session_token), Some(TOKEN));
    assert_eq!(literal(&b.external_id), Some(EXTERNAL));
    assert_eq!(b.session_name, "tollgate");
    let an = snap
        .providers
        .iter()
        .find(|p| p.name == "anthropic")
        .unwrap();
    assert_eq!(literal(&an.keys[0].value), Some(API_KEY));

    // GET, edit, PUT back: "<redacted>" keeps every secret; the edit applies.
    let mut edited = get(h, &format!("/api/providers/bedrock-eu/keys/{bedrock_id}"))
        .await
        .json;
    edited["weight"] = json!(2.5);
    edited["bedrock_key_config"]["region"] = json!("env.AWS_REGION");
    let r = put(
        h,
        &format!("/api/providers/bedrock-eu/keys/{bedrock_id}"),
        edited,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["weight"], 2.5);
    assert_eq!(r.json["bedrock_key_config"]["region"], "env.AWS_REGION");
    bodies.push(r.text);
    let b = current(h)
        .providers
        .iter()
        .find(|p| p.name == "bedrock-eu")
        .unwrap()
        .keys[0]
        .bedrock
        .clone()
        .unwrap();
    assert_eq!(literal(&b.access_key), Some(ACCESS), "kept");
    assert_eq!(literal(&b.secret_key), Some(SECRET), "kept");
    assert_eq!(literal(&b.external_id), Some(EXTERNAL), "kept");
    assert_eq!(env(&b.region), Some("AWS_REGION"));

    // A new literal replaces; null clears; "<redacted>" with nothing stored is refused.
    let r = put(
        h,
        &format!("/api/providers/anthropic/keys/{anthropic_id}"),
        json!({"value": "sk-ant-NEW-VALUE"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("sk-ant-NEW-VALUE"));
    let an = current(h)
        .providers
        .iter()
        .find(|p| p.name == "anthropic")
        .unwrap()
        .clone();
    assert_eq!(literal(&an.keys[0].value), Some("sk-ant-NEW-VALUE"));
    let r = put(
        h,
        &format!("/api/providers/anthropic/keys/{anthropic_id}"),
        json!({"value": null}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("value"),
    );
    let r = put(
        h,
        &format!("/api/providers/bedrock-eu/keys/{bedrock_id}"),
        json!({"bedrock_key_config": {"region": "eu-west-1", "access_key": "<redacted>", "secret_key": "<redacted>", "role_arn": "env.R", "external_id": "<redacted>"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json["bedrock_key_config"]["session_token"].is_null(),
        "omitted in a replaced block: removed"
    );
    bodies.push(r.text);
    let r = put(
        h,
        &format!("/api/providers/bedrock-eu/keys/{bedrock_id}"),
        json!({"bedrock_key_config": {"region": "eu-west-1", "session_token": "<redacted>", "access_key": "<redacted>", "secret_key": "<redacted>"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("bedrock_key_config.session_token"),
    );
    let r = put(
        h,
        &format!("/api/providers/bedrock-eu/keys/{bedrock_id}"),
        json!({"id": uuid::Uuid::new_v4()}),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some("id"));

    let r = get(h, "/api/audit-logs?limit=1000").await;
    bodies.push(r.text);
    for body in &bodies {
        for secret in all {
            assert!(!body.contains(secret), "a response leaks {secret}: {body}");
        }
    }

    // At rest: sealed, not plaintext.
    let rows: Vec<SecretColumns> = match &h.store {
        StoreConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let rows = sqlx::query_as("SELECT value_secret, access_key_secret, secret_key_secret, session_token_secret, external_id_secret FROM provider_keys")
                    .fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        StoreConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_as("SELECT value_secret, access_key_secret, secret_key_secret, session_token_secret, external_id_secret FROM provider_keys")
                    .fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    };
    let mut sealed = 0;
    for (a, b, c, d, e) in rows {
        for col in [a, b, c, d, e].into_iter().flatten() {
            for secret in all.iter().chain(&["sk-ant-NEW-VALUE"]) {
                assert!(!col.contains(secret), "plaintext at rest: {col}");
            }
            if col.starts_with("enc:v1:") {
                sealed += 1;
            }
        }
    }
    assert!(sealed >= 4, "literal secrets are stored sealed ({sealed})");
}

#[tokio::test]
async fn secrets_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    secrets_are_sealed_and_never_returned(&h).await;
}

#[tokio::test]
async fn every_mutation_bumps_the_published_version() {
    let h = sqlite_harness(loopback_auth()).await;
    let mut rx = h.cp.snapshots();
    let mut last = rx.borrow_and_update().version;
    let mut expect_bump = async |r: Resp, rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>| {
        assert!(r.status.is_success(), "{}", r.text);
        assert!(
            rx.has_changed().unwrap(),
            "no new snapshot after a mutation"
        );
        let v = rx.borrow_and_update().version;
        assert_eq!(v, last + 1);
        last = v;
        r
    };
    let r = expect_bump(
        post(&h, "/api/providers", json!({"provider": "anthropic"})).await,
        &mut rx,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = expect_bump(
        put(
            &h,
            "/api/providers/anthropic",
            json!({"network_config": {"default_request_timeout_in_seconds": 600}}),
        )
        .await,
        &mut rx,
    )
    .await;
    assert_eq!(
        r.json["network_config"]["default_request_timeout_in_seconds"],
        600
    );
    let k = expect_bump(
        post(
            &h,
            "/api/providers/anthropic/keys",
            json!({"name": "k", "value": "env.ANTHROPIC_API_KEY"}),
        )
        .await,
        &mut rx,
    )
    .await;
    let kid = k.json["id"].as_str().unwrap().to_owned();
    expect_bump(
        put(
            &h,
            &format!("/api/providers/anthropic/keys/{kid}"),
            json!({"enabled": false}),
        )
        .await,
        &mut rx,
    )
    .await;
    let vk = expect_bump(
        post(
            &h,
            "/api/virtual-keys",
            json!({"name": "v", "providers": ["anthropic"]}),
        )
        .await,
        &mut rx,
    )
    .await;
    let vid = vk.json["id"].as_str().unwrap().to_owned();
    let r = expect_bump(
        put(
            &h,
            &format!("/api/virtual-keys/{vid}"),
            json!({"is_active": false, "monthly_budget": 10}),
        )
        .await,
        &mut rx,
    )
    .await;
    assert_eq!(r.json["is_active"], false);
    expect_bump(
        delete(&h, &format!("/api/virtual-keys/{vid}")).await,
        &mut rx,
    )
    .await;
    expect_bump(
        delete(&h, &format!("/api/providers/anthropic/keys/{kid}")).await,
        &mut rx,
    )
    .await;
    expect_bump(delete(&h, "/api/providers/anthropic").await, &mut rx).await;

    // Failed mutations publish nothing.
    let r = post(
        &h,
        "/api/providers/ghost/keys",
        json!({"name": "k", "value": "env.X"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!rx.has_changed().unwrap());

    // Partial provider update leaves omitted blocks alone.
    post(&h, "/api/providers", json!({"provider": "bedrock", "network_config": {"base_url": "http://127.0.0.1:9", "extra_headers": {"x-a": "b"}}})).await;
    let r = put(&h, "/api/providers/bedrock", json!({})).await;
    assert_eq!(r.json["network_config"]["base_url"], "http://127.0.0.1:9");
    let r = put(
        &h,
        "/api/providers/bedrock",
        json!({"custom_provider_config": {"base_provider_type": "anthropic"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("custom_provider_config.base_provider_type"),
    );
    let r = put(&h, "/api/providers/bedrock", json!({"provider": "other"})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("provider"),
    );
    let snapshot = get(&h, "/api/providers/bedrock").await.json;
    let r = put(&h, "/api/providers/bedrock", snapshot).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a GET response can be PUT back: {}",
        r.text
    );

    // A restart publishes the same version from the store.
    drop(h.router);
    let version = h.cp.snapshots().borrow().version;
    let again = ControlPlane::start(ControlPlaneConfig {
        store: h.store.clone(),
        secret_key: KEY,
        admin_auth: loopback_auth(),
        env_allow: test_env_allow(),
    })
    .await
    .unwrap();
    assert_eq!(again.snapshots().borrow().version, version);
}

#[tokio::test]
async fn wrong_secret_key_refuses_to_start() {
    let h = sqlite_harness(loopback_auth()).await;
    post(&h, "/api/providers", json!({"provider": "anthropic"})).await;
    let r = post(
        &h,
        "/api/providers/anthropic/keys",
        json!({"name": "k", "value": "sk-ant-literal"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let err = ControlPlane::start(ControlPlaneConfig {
        store: h.store.clone(),
        secret_key: [7u8; 32],
        admin_auth: loopback_auth(),
        env_allow: test_env_allow(),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Snapshot(_)), "{err}");
    assert!(!err.to_string().contains("sk-ant-literal"));
}

#[tokio::test]
async fn admin_auth_rules() {
    // No token, loopback allowed.
    let h = sqlite_harness(loopback_auth()).await;
    let ok = Call::new(Method::GET, "/api/providers")
        .send(&h.router)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let ok6 = Call::new(Method::GET, "/api/providers")
        .peer(Some("[::1]:1234".parse().unwrap()))
        .send(&h.router)
        .await;
    assert_eq!(ok6.status, StatusCode::OK);
    let r = Call::new(Method::GET, "/api/providers")
        .peer(Some(remote()))
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let r = Call::new(Method::POST, "/api/providers")
        .json(json!({"provider": "bedrock"}))
        .peer(Some(remote()))
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert!(
        current(&h).providers.is_empty(),
        "refused requests change nothing"
    );
    let r = Call::new(Method::GET, "/api/providers")
        .peer(None)
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    // Browsers on this machine are loopback clients too: cross-origin requests and rebound
    // host names are refused, so a web page cannot drive the API.
    let evil = Call::new(Method::POST, "/api/providers")
        .raw(
            br#"{"provider": "bedrock"}"#,
            Some("application/x-www-form-urlencoded"),
        )
        .header("host", "localhost:8080")
        .header("origin", "https://evil.example")
        .send(&h.router)
        .await;
    assert_error(&evil, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let rebound = Call::new(Method::POST, "/api/providers")
        .json(json!({"provider": "bedrock"}))
        .header("host", "rebind.evil.example:8080")
        .header("origin", "http://rebind.evil.example:8080")
        .send(&h.router)
        .await;
    assert_error(&rebound, StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert!(
        current(&h).providers.is_empty(),
        "refused requests change nothing"
    );
    // `curl -d` (form content type, JSON body, Host: localhost) works as pasted.
    let curl = Call::new(Method::POST, "/api/providers")
        .raw(
            br#"{"provider": "bedrock"}"#,
            Some("application/x-www-form-urlencoded"),
        )
        .header("host", "localhost:8080")
        .header("user-agent", "curl/8.5.0")
        .send(&h.router)
        .await;
    assert_eq!(curl.status, StatusCode::CREATED, "{}", curl.text);
    // Unknown routes under /api are behind auth too.
    let r = Call::new(Method::GET, "/api/whatever")
        .peer(Some(remote()))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The OpenAPI document is public.
    let r = Call::new(Method::GET, "/openapi.json")
        .peer(Some(remote()))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["info"]["title"], "Tollgate admin API");

    // Token set: required from everyone, loopback included.
    let h = sqlite_harness(AdminAuth {
        token: Some("admin-s3cret".into()),
        allow_loopback_without_token: true,
    })
    .await;
    let r = Call::new(Method::GET, "/api/providers")
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let r = Call::new(Method::GET, "/api/providers")
        .token("wrong")
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let r = Call::new(Method::GET, "/api/providers")
        .token("admin-s3cret")
        .peer(Some(remote()))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = Call::new(Method::POST, "/api/providers")
        .json(json!({"provider": "bedrock"}))
        .token("admin-s3cret")
        .peer(Some(remote()))
        .send(&h.router)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = Call::new(Method::GET, "/api/audit-logs")
        .token("admin-s3cret")
        .send(&h.router)
        .await;
    assert_eq!(r.json["audit_logs"][0]["actor"], "token@192.0.2.7");
    assert!(!r.text.contains("admin-s3cret"));

    // Neither token nor loopback: everything is refused.
    let h = sqlite_harness(AdminAuth::default()).await;
    let r = Call::new(Method::GET, "/api/providers")
        .send(&h.router)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);

    // An empty token is a configuration error.
    let dir = tempfile::tempdir().unwrap();
    let err = ControlPlane::start(ControlPlaneConfig {
        store: StoreConfig::Sqlite {
            path: dir.path().join("x.db"),
        },
        secret_key: KEY,
        admin_auth: AdminAuth {
            token: Some(" ".into()),
            allow_loopback_without_token: false,
        },
        env_allow: test_env_allow(),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}

#[tokio::test]
async fn internal_errors_are_generic_and_logged_not_returned() {
    let h = sqlite_harness(loopback_auth()).await;
    post(&h, "/api/providers", json!({"provider": "anthropic"})).await;
    let r = post(
        &h,
        "/api/providers/anthropic/keys",
        json!({"name": "k", "value": "env.K"}),
    )
    .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    // Damage the row behind the store's back.
    let StoreConfig::Sqlite { path } = &h.store else {
        unreachable!()
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE provider_keys SET value_secret = 'garbage-SECRETISH'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let r = get(&h, &format!("/api/providers/anthropic/keys/{id}")).await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    assert!(!r.text.contains("garbage"), "{}", r.text);
    assert!(
        !r.text.contains("provider_keys"),
        "causes stay in the log: {}",
        r.text
    );
}

// ---------------------------------------------------------------------------------------------
// env.NAME allowlist and extra-header secrets.

const TOLLGATE_REF: &str = "env.TOLLGATE_SECRET_KEY";

/// A 400 that names `field` and the allowlist rule.
fn assert_refused(r: &Resp, field: &str, reference: &str) {
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains(reference), "{message}");
    if reference.starts_with("env.TOLLGATE_") {
        assert!(message.contains("never resolve"), "{message}");
    } else {
        assert!(
            message.contains("AWS_*") && message.contains("TOLLGATE_ENV_ALLOW"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn env_references_outside_the_allowlist_are_refused_naming_field_and_rule() {
    let h = sqlite_harness(loopback_auth()).await;
    post(&h, "/api/providers", json!({"provider": "bedrock"})).await;
    post(&h, "/api/providers", json!({"provider": "anthropic"})).await;
    let version = h.cp.published_version();
    let aws = |field: &str, value: &str| {
        let mut cfg = json!({"region": "us-east-1", "access_key": "env.AWS_ACCESS_KEY_ID",
                             "secret_key": "env.AWS_SECRET_ACCESS_KEY",
                             "role_arn": "arn:aws:iam::123456789012:role/r"});
        cfg[field] = json!(value);
        json!({"name": "k", "bedrock_key_config": cfg})
    };
    for reference in [TOLLGATE_REF, "env.TOLLGATE_ADMIN_TOKEN", "env.HOME"] {
        let cases = [
            (
                "anthropic",
                json!({"name": "k", "value": reference}),
                "value",
            ),
            ("bedrock", json!({"name": "k", "value": reference}), "value"),
            (
                "bedrock",
                aws("access_key", reference),
                "bedrock_key_config.access_key",
            ),
            (
                "bedrock",
                aws("secret_key", reference),
                "bedrock_key_config.secret_key",
            ),
            (
                "bedrock",
                aws("session_token", reference),
                "bedrock_key_config.session_token",
            ),
            (
                "bedrock",
                aws("external_id", reference),
                "bedrock_key_config.external_id",
            ),
            (
                "bedrock",
                aws("region", reference),
                "bedrock_key_config.region",
            ),
            (
                "bedrock",
                aws("role_arn", reference),
                "bedrock_key_config.role_arn",
            ),
        ];
        for (provider, body, field) in cases {
            let r = post(&h, &format!("/api/providers/{provider}/keys"), body).await;
            assert_refused(&r, field, reference);
        }
        let r = post(
            &h,
            "/api/providers",
            json!({"provider": "proxy", "custom_provider_config": {"base_provider_type": "anthropic"},
                   "network_config": {"extra_headers": {"x-ok": "plain", "x-foo": reference}}}),
        )
        .await;
        assert_refused(&r, "network_config.extra_headers.x-foo", reference);
        let r = put(
            &h,
            "/api/providers/anthropic",
            json!({"network_config": {"extra_headers": {"x-foo": reference}}}),
        )
        .await;
        assert_refused(&r, "network_config.extra_headers.x-foo", reference);
    }
    assert_eq!(h.cp.published_version(), version, "nothing was stored");

    // Updates are checked the same way.
    let r = post(
        &h,
        "/api/providers/anthropic/keys",
        json!({"name": "ok", "value": "env.ANTHROPIC_API_KEY"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.json.get("refused_env_references").is_none(), "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let r = put(
        &h,
        &format!("/api/providers/anthropic/keys/{id}"),
        json!({"value": TOLLGATE_REF}),
    )
    .await;
    assert_refused(&r, "value", TOLLGATE_REF);

    // Allowed: the default patterns and the names this control plane adds (`X`, not `XY`).
    let r = post(
        &h,
        "/api/providers/bedrock/keys",
        aws("session_token", "env.AWS_SESSION_TOKEN"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = put(
        &h,
        "/api/providers/anthropic",
        json!({"network_config": {"extra_headers": {"x-a": "env.OPENAI_PROXY", "x-b": "env.X"}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = put(
        &h,
        "/api/providers/anthropic",
        json!({"network_config": {"extra_headers": {"x-b": "env.XY"}}}),
    )
    .await;
    assert_refused(&r, "network_config.extra_headers.x-b", "env.XY");
}

/// Extra-header values are secrets: sealed at rest, redacted in every response and in the audit
/// log, kept by "<redacted>", replaced by a new value, removed when left out.
async fn extra_header_values_are_secrets(h: &Harness) {
    const PROXY: &str = "proxy-token-EXAMPLE-5f1c2a";
    const OTHER: &str = "second-secret-EXAMPLE-77ab";
    const NEW: &str = "rotated-proxy-token-EXAMPLE-9d";
    let mut bodies = Vec::new();
    let header_values = |snap: &Snapshot| {
        let net = snap
            .providers
            .iter()
            .find(|p| p.name == "gw")
            .unwrap()
            .network
            .clone()
            .unwrap();
        let values: std::collections::BTreeMap<String, (Option<String>, Option<String>)> = net
            .extra_header_values
            .iter()
            .map(|(k, v)| {
                let v = Some(v.clone());
                (
                    k.clone(),
                    (literal(&v).map(str::to_owned), env(&v).map(str::to_owned)),
                )
            })
            .collect();
        (values, net.extra_headers)
    };

    let r = post(
        h,
        "/api/providers",
        json!({"provider": "gw", "custom_provider_config": {"base_provider_type": "anthropic"},
               "network_config": {"base_url": "http://127.0.0.1:9", "extra_headers": {
                   "x-proxy-token": PROXY, "x-other": OTHER, "x-env": "env.ANTHROPIC_PROXY_TOKEN"}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let shown = json!({"x-env": "env.ANTHROPIC_PROXY_TOKEN", "x-other": "<redacted>",
                       "x-proxy-token": "<redacted>"});
    assert_eq!(r.json["network_config"]["extra_headers"], shown);
    bodies.push(r.text);
    for path in ["/api/providers", "/api/providers/gw"] {
        let r = get(h, path).await;
        assert_eq!(r.status, StatusCode::OK);
        bodies.push(r.text);
    }
    let r = get(h, "/api/providers/gw").await;
    assert_eq!(r.json["network_config"]["extra_headers"], shown);

    // The data plane gets the values; references stay references.
    let (values, literal_only) = header_values(&current(h));
    assert_eq!(values["x-proxy-token"], (Some(PROXY.into()), None));
    assert_eq!(values["x-other"], (Some(OTHER.into()), None));
    assert_eq!(
        values["x-env"],
        (None, Some("ANTHROPIC_PROXY_TOKEN".into()))
    );
    assert_eq!(
        literal_only,
        [
            ("x-other".to_string(), OTHER.to_string()),
            ("x-proxy-token".to_string(), PROXY.to_string())
        ]
        .into(),
        "older data planes get the literal ones"
    );

    // GET, edit, PUT back: "<redacted>" keeps the value; a header left out is removed.
    let mut edited = get(h, "/api/providers/gw").await.json;
    edited["network_config"]["connect_timeout_in_seconds"] = json!(7);
    edited["network_config"]["extra_headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-other");
    let r = put(h, "/api/providers/gw", edited).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["network_config"]["extra_headers"],
        json!({"x-env": "env.ANTHROPIC_PROXY_TOKEN", "x-proxy-token": "<redacted>"})
    );
    bodies.push(r.text);
    let (values, _) = header_values(&current(h));
    assert_eq!(values.len(), 2);
    assert_eq!(values["x-proxy-token"], (Some(PROXY.into()), None), "kept");

    // A new value replaces; "<redacted>" with nothing stored is refused.
    let r = put(
        h,
        "/api/providers/gw",
        json!({"network_config": {"base_url": "http://127.0.0.1:9",
               "extra_headers": {"x-proxy-token": NEW, "x-env": "<redacted>"}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    bodies.push(r.text);
    let (values, _) = header_values(&current(h));
    assert_eq!(values["x-proxy-token"], (Some(NEW.into()), None));
    assert_eq!(
        values["x-env"],
        (None, Some("ANTHROPIC_PROXY_TOKEN".into())),
        "a kept reference stays a reference"
    );
    let r = put(
        h,
        "/api/providers/gw",
        json!({"network_config": {"extra_headers": {"x-new": "<redacted>"}}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("network_config.extra_headers.x-new"),
    );
    // Without network_config nothing changes.
    let r = put(h, "/api/providers/gw", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        header_values(&current(h)).0["x-proxy-token"].0.as_deref(),
        Some(NEW)
    );

    // The audit log keeps header names only.
    let r = get(h, "/api/audit-logs?limit=1000").await;
    assert!(r.text.contains("x-proxy-token"), "{}", r.text);
    bodies.push(r.text);
    for body in &bodies {
        for secret in [PROXY, OTHER, NEW] {
            assert!(!body.contains(secret), "a response leaks {secret}: {body}");
        }
    }

    // At rest: sealed, not plaintext.
    let sql = "SELECT CAST(network_config AS TEXT), CAST(extra_header_secrets AS TEXT) \
               FROM providers WHERE name = 'gw'";
    let (network, sealed): (String, String) = match &h.store {
        StoreConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let row = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            row
        }
        StoreConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let row = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            row
        }
    };
    for secret in [PROXY, OTHER, NEW] {
        assert!(!network.contains(secret), "plaintext at rest: {network}");
        assert!(!sealed.contains(secret), "plaintext at rest: {sealed}");
    }
    assert!(!network.contains("x-proxy-token"), "{network}");
    assert_eq!(sealed.matches("enc:v1:").count(), 1, "{sealed}");
    assert!(sealed.contains("env:ANTHROPIC_PROXY_TOKEN"), "{sealed}");
}

#[tokio::test]
async fn extra_header_values_are_secrets_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    extra_header_values_are_secrets(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_header_values_are_secrets_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        extra_header_values_are_secrets(&h).await;
    })
    .await;
}

/// Rows that hold a now-disallowed reference (written before the allowlist existed) are kept,
/// marked in responses, published as they are (the data plane refuses them) and do not block
/// other changes; setting such a reference again is refused.
#[tokio::test]
async fn stored_references_outside_the_allowlist_are_marked_not_dropped() {
    use tollgate_control_plane::model::{AuditEvent, ProviderKeyRecord, SealedSecret, now};
    let h = sqlite_harness(loopback_auth()).await;
    post(&h, "/api/providers", json!({"provider": "anthropic"})).await;
    let good = post(
        &h,
        "/api/providers/anthropic/keys",
        json!({"name": "good", "value": "env.ANTHROPIC_API_KEY"}),
    )
    .await;
    assert_eq!(good.status, StatusCode::CREATED, "{}", good.text);
    // Planted behind the API, as an older version could have stored them.
    let t = now();
    let planted = ProviderKeyRecord {
        id: uuid::Uuid::new_v4(),
        provider: "anthropic".into(),
        name: "planted".into(),
        description: None,
        models: vec!["*".into()],
        weight: 1.0,
        aliases: Default::default(),
        enabled: true,
        value: Some(SealedSecret::Env("TOLLGATE_SECRET_KEY".into())),
        bedrock: None,
        vertex: None,
        created_at: t,
        updated_at: t,
    };
    let event = AuditEvent {
        actor: "test".into(),
        action: "plant".into(),
        target: "t".into(),
        details: json!({}),
    };
    let store = h.cp.store().clone();
    store.create_key(&planted, &event).await.unwrap();
    store
        .update_provider(
            "anthropic",
            &|p| {
                p.network
                    .extra_headers
                    .insert("x-home".into(), SealedSecret::Env("HOME".into()));
                Ok(())
            },
            &event,
        )
        .await
        .unwrap();
    h.cp.republish().await.unwrap();

    let path = format!("/api/providers/anthropic/keys/{}", planted.id);
    let r = get(&h, &path).await;
    assert_eq!(r.json["value"], TOLLGATE_REF);
    assert_eq!(r.json["refused_env_references"], json!(["value"]));
    let r = get(&h, "/api/providers/anthropic/keys").await;
    let marks: Vec<_> = r.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].clone(), k.get("refused_env_references").cloned()))
        .collect();
    assert_eq!(
        marks,
        [
            (json!("good"), None),
            (json!("planted"), Some(json!(["value"])))
        ]
    );
    let r = get(&h, "/api/providers/anthropic").await;
    assert_eq!(
        r.json["refused_env_references"],
        json!(["network_config.extra_headers.x-home"])
    );

    // Published as they are, next to the good key: the data plane decides.
    let snap = current(&h);
    let p = &snap.providers[0];
    assert_eq!(p.keys.len(), 2);
    let planted_key = p.keys.iter().find(|k| k.name == "planted").unwrap();
    assert_eq!(env(&planted_key.value), Some("TOLLGATE_SECRET_KEY"));
    let home = Some(p.network.as_ref().unwrap().extra_header_values["x-home"].clone());
    assert_eq!(env(&home), Some("HOME"));

    // Other changes go through; setting the reference again does not; replacing it clears the mark.
    let r = put(&h, &path, json!({"weight": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["refused_env_references"], json!(["value"]));
    let r = put(&h, &path, json!({"value": TOLLGATE_REF})).await;
    assert_refused(&r, "value", TOLLGATE_REF);
    let r = put(&h, &path, json!({"value": "env.ANTHROPIC_OTHER_KEY"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("refused_env_references").is_none(), "{}", r.text);
    // Sending the provider back as shown is refused for the header until it is changed.
    let shown = get(&h, "/api/providers/anthropic").await.json;
    let r = put(
        &h,
        "/api/providers/anthropic",
        json!({"network_config": shown["network_config"]}),
    )
    .await;
    assert_refused(&r, "network_config.extra_headers.x-home", "env.HOME");
}

/// A SQLite database written by the version before header sealing: the control plane seals its
/// plaintext header values when it starts, and the provider keeps working.
#[tokio::test]
async fn provider_rows_from_before_header_sealing_still_work() {
    const LEGACY: &str = "legacy-header-PLAINTEXT-4e21";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    let mut old = sqlx::migrate!("../migrations/sqlite");
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version < 3)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    old.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO providers (name, kind, network_config, created_at, updated_at) \
         VALUES ('anthropic', 'anthropic', $1, $2, $2)",
    )
    .bind(format!(
        r#"{{"base_url":"http://127.0.0.1:9","extra_headers":{{"x-proxy-token":"{LEGACY}"}}}}"#
    ))
    .bind(tollgate_control_plane::model::now())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = StoreConfig::Sqlite { path: path.clone() };
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: store.clone(),
        secret_key: KEY,
        admin_auth: loopback_auth(),
        env_allow: test_env_allow(),
    })
    .await
    .unwrap();
    let h = Harness {
        router: cp.admin_router(),
        cp,
        store,
        _dir: None,
    };
    let r = get(&h, "/api/providers/anthropic").await;
    assert_eq!(
        r.json["network_config"]["extra_headers"],
        json!({"x-proxy-token": "<redacted>"}),
        "{}",
        r.text
    );
    let snap = current(&h);
    let net = snap.providers[0].network.as_ref().unwrap();
    let v = Some(net.extra_header_values["x-proxy-token"].clone());
    assert_eq!(literal(&v), Some(LEGACY));
    assert_eq!(snap.version, 1, "sealing is not a config change");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (network, sealed): (String, String) =
        sqlx::query_as("SELECT network_config, extra_header_secrets FROM providers")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(!network.contains(LEGACY) && !sealed.contains(LEGACY));
    assert!(sealed.contains("enc:v1:"), "{sealed}");
    // The kept value survives an edit sent back from GET.
    let mut edited = r.json.clone();
    edited["network_config"]["connect_timeout_in_seconds"] = json!(3);
    let r = put(&h, "/api/providers/anthropic", edited).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let snap = current(&h);
    let v = Some(
        snap.providers[0]
            .network
            .as_ref()
            .unwrap()
            .extra_header_values["x-proxy-token"]
            .clone(),
    );
    assert_eq!(literal(&v), Some(LEGACY));
}

/// A request body that only records whether anyone read it.
struct Unread {
    declared: u64,
    polled: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for Unread {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.polled.store(true, std::sync::atomic::Ordering::SeqCst);
        // A client that declared a large body and sends it slowly, or never.
        std::task::Poll::Pending
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.declared)
    }
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let h = sqlite_harness(loopback_auth()).await;
    let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/providers")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(Unread {
            declared: 64 * 1024 * 1024,
            polled: Arc::clone(&polled),
        }))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(loopback()));
    // Reading the body would wait forever: the answer must come from the declared length.
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        h.router.clone().oneshot(req),
    )
    .await
    .expect("answered without reading the body")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["type"], "invalid_request", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most")),
        "{json}"
    );
    assert!(!polled.load(std::sync::atomic::Ordering::SeqCst));
}

#[path = "api/governance.rs"]
mod governance;

#[path = "api/vertex_openai.rs"]
mod vertex_openai;

#[path = "api/roles.rs"]
mod roles;

#[path = "api/audit.rs"]
mod audit;

#[path = "api/logs.rs"]
mod logs;

#[path = "api/spend.rs"]
mod spend;

#[path = "api/jobs.rs"]
mod jobs;

#[path = "api/content.rs"]
mod content;

#[path = "api/exports.rs"]
mod exports;

#[path = "api/key_test.rs"]
mod key_test;

#[path = "api/mcp.rs"]
mod mcp;

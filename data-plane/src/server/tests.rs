//! The inference API in process: [`router`] driven with `tower::ServiceExt::oneshot`, no listener
//! and no binary. Where a test needs an upstream it gets a small loopback server ([`upstream`]);
//! SigV4 and the providers' full behaviour are the e2e tests' (strict doubles, real binary).
//!
//! | test | behaviour |
//! |---|---|
//! | `no_config_yet_is_503_in_the_envelope_and_not_usage` | 503 before any config; the error envelope; no usage record |
//! | `unknown_inactive_deactivated_and_deleted_keys_get_the_same_401` | auth rules across config changes |
//! | `the_first_key_header_present_wins` | `x-api-key` / `Authorization: Bearer` / `x-bf-vk` precedence |
//! | `a_declared_body_over_the_cap_is_413_before_a_byte_is_read` | 413 from `Content-Length`, body never polled |
//! | `malformed_model_ids_are_400_naming_the_problem` | the model id rule, before routing |
//! | `an_unreachable_provider_is_a_stable_502_with_the_detail_in_the_log` | no OS/TLS text to clients |
//! | `client_and_upstream_text_cannot_forge_log_lines` | one event, one line |
//! | `unauthenticated_floods_cannot_push_real_usage_out_of_the_spool` | refusals are not usage |
//! | `unknown_paths_say_what_is_served` | 404/405 bodies and shapes |
//! | `content_logging_records_the_bodies_the_client_exchanged` | recorded bodies: unary, stream, error; cap, masking; other keys none |

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::pricing::PriceTable;
use tollgate_proto::usage::v1::UsageRecord;
use tower::ServiceExt;

use super::router;
use crate::limits::Share;
use crate::reporter::{ReporterConfig, start_reporter};
use crate::testing::{
    FakeControlPlane, FakeState, dead_endpoint, fast_options, lit, network, serve, wait_until,
};
use crate::usage::UsageSink;
use crate::{DataPlane, DataPlaneConfig};

const GOOD: &str = "sk-tg-good-key";
const INACTIVE: &str = "sk-tg-inactive-key";
/// Active in [`config`]`(1)`, deactivated in version 2.
const DEACTIVATED: &str = "sk-tg-deactivated-key";
/// Active in [`config`]`(1)`, deleted in version 2.
const DELETED: &str = "sk-tg-deleted-key";
const UPSTREAM_KEY: &str = "sk-ant-upstream-key";
const MAX_BODY: usize = 64 * 1024;
/// A body that passes authentication and then fails: it has no `model` (400).
const NO_MODEL: &str = r#"{"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;

fn virtual_key(id: &str, key: &str, active: bool) -> pb::VirtualKey {
    pb::VirtualKey {
        id: id.into(),
        name: id.into(),
        key_sha256: Sha256::digest(key).to_vec().into(),
        providers: vec![],
        monthly_budget_usd: 0.0,
        active,
        ..Default::default()
    }
}

/// An Anthropic provider at `base_url` and a Bedrock provider (static keys) at `bedrock_url`.
fn providers(base_url: &str, bedrock_url: &str) -> Vec<pb::Provider> {
    vec![
        pb::Provider {
            name: "anthropic".into(),
            kind: pb::ProviderKind::Anthropic as i32,
            network: network(base_url),
            keys: vec![pb::ProviderKey {
                id: "pk-anthropic".into(),
                name: "anthropic-key".into(),
                models: vec!["*".into()],
                weight: 1.0,
                value: lit(UPSTREAM_KEY),
                enabled: true,
                ..Default::default()
            }],
        },
        pb::Provider {
            name: "bedrock".into(),
            kind: pb::ProviderKind::Bedrock as i32,
            network: network(bedrock_url),
            keys: vec![pb::ProviderKey {
                id: "pk-bedrock".into(),
                name: "bedrock-key".into(),
                models: vec!["*".into()],
                weight: 1.0,
                bedrock: Some(pb::BedrockKeyConfig {
                    access_key: lit("AKIDINPROCESSTEST"),
                    secret_key: lit("in-process-test-secret"),
                    region: lit("us-east-1"),
                    ..Default::default()
                }),
                enabled: true,
                ..Default::default()
            }],
        },
    ]
}

/// Version 1 has the good, deactivated and deleted keys active and one inactive key; version 2
/// deactivates one and deletes another. The upstreams are at `base_url` (a closed port by
/// default: tests that never reach an upstream need none).
fn config(version: u64, base_url: &str) -> pb::Snapshot {
    let mut virtual_keys = vec![
        virtual_key("vk-good", GOOD, true),
        virtual_key("vk-inactive", INACTIVE, false),
    ];
    if version == 1 {
        virtual_keys.push(virtual_key("vk-deactivated", DEACTIVATED, true));
        virtual_keys.push(virtual_key("vk-deleted", DELETED, true));
    } else {
        virtual_keys.push(virtual_key("vk-deactivated", DEACTIVATED, false));
    }
    pb::Snapshot {
        version,
        providers: providers(base_url, base_url),
        virtual_keys,
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

/// A data plane (no listener) and the receiving end of its usage sink.
struct Gateway {
    dp: Arc<DataPlane>,
    usage: mpsc::Receiver<UsageRecord>,
}

/// A response, its body parsed as JSON.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Gateway {
    fn new() -> Gateway {
        let (sink, usage) = UsageSink::channel(1024);
        Gateway::with_sink(sink, usage)
    }

    fn with_sink(sink: UsageSink, usage: mpsc::Receiver<UsageRecord>) -> Gateway {
        let config = DataPlaneConfig {
            max_body_bytes: MAX_BODY,
            ..DataPlaneConfig::default()
        };
        Gateway {
            dp: DataPlane::new(config, sink),
            usage,
        }
    }

    /// A gateway serving [`config`]`(1)` with its upstreams at `base_url`.
    fn configured(base_url: &str) -> Gateway {
        let gw = Gateway::new();
        gw.apply(config(1, base_url));
        gw
    }

    fn apply(&self, snapshot: pb::Snapshot) {
        self.dp
            .runtime()
            .apply(&snapshot)
            .expect("a valid snapshot");
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = router(Arc::clone(&self.dp))
            .oneshot(req)
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        }
    }

    /// `POST /anthropic/v1/messages` with `headers` (raw bytes allowed) and `body`.
    async fn post(&self, headers: &[(&str, &[u8])], body: impl Into<Body>) -> Answer {
        self.send(request("/anthropic/v1/messages", headers, body.into()))
            .await
    }

    /// The usage records written so far.
    fn usage(&mut self) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        while let Ok(r) = self.usage.try_recv() {
            out.push(r);
        }
        out
    }
}

fn request(path: &str, headers: &[(&str, &[u8])], body: Body) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("request");
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_bytes(value).expect("value"),
        );
    }
    req
}

fn message(model: &str) -> String {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

/// Checks the Anthropic error envelope (status, `type`, `error.type`, a message, `request_id`
/// equal to the `request-id` header) and returns the message.
fn envelope(a: &Answer, status: u16, kind: &str) -> String {
    assert_eq!(a.status.as_u16(), status, "{a:?}");
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json", "{a:?}");
    assert_eq!(a.body["type"], "error", "{a:?}");
    assert_eq!(a.body["error"]["type"], kind, "{a:?}");
    let id = a.body["request_id"].as_str().expect("request_id");
    assert!(id.starts_with("req_tg_") && id.len() > 20, "{id}");
    assert_eq!(a.headers["request-id"], id, "{a:?}");
    let message = a.body["error"]["message"].as_str().expect("message");
    assert!(!message.is_empty());
    message.to_owned()
}

/// Log lines written while the returned guard lives, on this thread, in the text format.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// A Bedrock error message that tries to forge a second log line.
const FORGED: &str = "bad input\n2026-01-01T00:00:00.000000Z  INFO tollgate: forged line\r\x1b[2K";

/// A loopback upstream for the in-process tests: `POST /v1/messages` answers like the Anthropic
/// API (checks the key, `anthropic-version` and the body's required fields; the answer carries
/// usage), and `POST /model/{id}/invoke` answers like Bedrock refusing the request, with
/// [`FORGED`] as its message (signatures are the e2e tests' business).
async fn upstream() -> String {
    async fn messages(headers: HeaderMap, body: Bytes) -> (StatusCode, axum::Json<Value>) {
        let error = |status: StatusCode, kind: &str, message: &str| {
            (
                status,
                axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
            )
        };
        if headers.get("x-api-key").map(HeaderValue::as_bytes) != Some(UPSTREAM_KEY.as_bytes()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
            );
        }
        if headers.get("anthropic-version").is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "anthropic-version: header is required",
            );
        }
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "body is not JSON",
            );
        };
        let (Some(model), Some(_), Some(_)) = (
            body["model"].as_str(),
            body["max_tokens"].as_u64(),
            body["messages"].as_array(),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model, max_tokens and messages are required",
            );
        };
        (
            StatusCode::OK,
            axum::Json(json!({
                "id": "msg_in_process", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {
                    "input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 300,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200
                    }
                }
            })),
        )
    }
    async fn bedrock_refuses() -> impl axum::response::IntoResponse {
        (
            StatusCode::BAD_REQUEST,
            [("x-amzn-errortype", "ValidationException")],
            axum::Json(json!({ "message": FORGED })),
        )
    }
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .route("/model/{id}/invoke", axum::routing::post(bedrock_refuses));
    serve(app).await
}

/// A closed port: providers there are unreachable.
async fn closed() -> String {
    dead_endpoint().await.0
}

#[tokio::test]
async fn no_config_yet_is_503_in_the_envelope_and_not_usage() {
    let mut gw = Gateway::new();
    let a = gw
        .post(&[("x-api-key", GOOD.as_bytes())], message("m"))
        .await;
    let text = envelope(&a, 503, "overloaded_error");
    assert!(text.contains("configuration"), "{text}");
    assert!(
        gw.usage().is_empty(),
        "a refusal without a key is not usage"
    );
    assert_eq!(gw.dp.refusals().get("not_ready"), 1);

    // Once configured, the same request is served (here: refused by the closed upstream).
    gw.apply(config(1, &closed().await));
    let a = gw
        .post(&[("x-api-key", GOOD.as_bytes())], message("anthropic/m"))
        .await;
    envelope(&a, 502, "api_error");
    assert_eq!(gw.usage().len(), 1);
}

#[tokio::test]
async fn unknown_inactive_deactivated_and_deleted_keys_get_the_same_401() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let mut gw = Gateway::configured(&closed().await);
    // Authenticated: the body's missing model is the next thing refused, and that is usage.
    for key in [GOOD, DEACTIVATED, DELETED] {
        let a = gw.post(&[("x-api-key", key.as_bytes())], NO_MODEL).await;
        envelope(&a, 400, "invalid_request_error");
    }
    let usage = gw.usage();
    let ids: Vec<&str> = usage.iter().map(|r| r.virtual_key_id.as_str()).collect();
    assert_eq!(ids, ["vk-good", "vk-deactivated", "vk-deleted"]);
    assert!(usage.iter().all(|r| r.status == 400));

    let missing = gw.post(&[], NO_MODEL).await;
    assert!(envelope(&missing, 401, "authentication_error").starts_with("missing virtual key"));
    let unknown = gw
        .post(&[("x-api-key", b"sk-tg-never-issued")], NO_MODEL)
        .await;
    let inactive = gw
        .post(&[("x-api-key", INACTIVE.as_bytes())], NO_MODEL)
        .await;
    for a in [&unknown, &inactive] {
        assert_eq!(
            envelope(a, 401, "authentication_error"),
            "invalid virtual key"
        );
    }

    // A config change deactivates one key and deletes another; the same data plane refuses both
    // at once, with the answer an unknown key gets. (Snapshots carry no expiry time yet: keys
    // end by being deactivated or deleted, and both are covered here.)
    gw.apply(config(2, &closed().await));
    for key in [DEACTIVATED, DELETED] {
        let a = gw.post(&[("x-api-key", key.as_bytes())], NO_MODEL).await;
        assert_eq!(
            envelope(&a, 401, "authentication_error"),
            "invalid virtual key"
        );
    }
    let a = gw.post(&[("x-api-key", GOOD.as_bytes())], NO_MODEL).await;
    envelope(&a, 400, "invalid_request_error");

    // The 401s are not usage: only the last request (authenticated) wrote a record.
    let usage = gw.usage();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].virtual_key_id, "vk-good");
    assert_eq!(gw.dp.refusals().get("auth"), 5);
    // Each refusal is a debug line; one warn line sums them up (at most once a minute).
    assert_eq!(
        logs.lines_with("request refused before a virtual key was established")
            .len(),
        5,
        "{}",
        logs.text()
    );
    let warns = logs.lines_with("requests refused before a virtual key was established");
    assert_eq!(warns.len(), 1, "{}", logs.text());
    assert!(warns[0].contains("WARN"), "{}", warns[0]);
}

#[tokio::test]
async fn the_first_key_header_present_wins() {
    let gw = Gateway::configured(&closed().await);
    let bearer = |k: &str| format!("Bearer {k}").into_bytes();
    let good = GOOD.as_bytes();
    let bad: &[u8] = b"sk-tg-wrong";
    // (headers, authenticated?)
    type Headers = Vec<(&'static str, Vec<u8>)>;
    let cases: Vec<(Headers, bool)> = vec![
        (vec![("x-api-key", good.into())], true),
        (vec![("authorization", bearer(GOOD))], true),
        (
            vec![("authorization", format!("bearer  {GOOD} ").into_bytes())],
            true,
        ),
        (vec![("x-bf-vk", good.into())], true),
        // Claude Code's apiKeyHelper sends the same key in both.
        (
            vec![("x-api-key", good.into()), ("authorization", bearer(GOOD))],
            true,
        ),
        // x-api-key wins over Authorization and x-bf-vk.
        (
            vec![
                ("x-api-key", good.into()),
                ("authorization", bearer("sk-tg-wrong")),
            ],
            true,
        ),
        (
            vec![("x-api-key", bad.into()), ("authorization", bearer(GOOD))],
            false,
        ),
        (
            vec![("x-api-key", bad.into()), ("x-bf-vk", good.into())],
            false,
        ),
        // Authorization: Bearer wins over x-bf-vk.
        (
            vec![
                ("authorization", bearer("sk-tg-wrong")),
                ("x-bf-vk", good.into()),
            ],
            false,
        ),
        (
            vec![("authorization", bearer(GOOD)), ("x-bf-vk", bad.into())],
            true,
        ),
        // Another scheme is not a virtual key: x-bf-vk is used.
        (
            vec![
                ("authorization", b"Basic dXNlcjpwYXNz".to_vec()),
                ("x-bf-vk", good.into()),
            ],
            true,
        ),
        // An empty header is absent.
        (
            vec![("x-api-key", Vec::new()), ("authorization", bearer(GOOD))],
            true,
        ),
        // A header that cannot hold a key (not UTF-8) still wins, and fails.
        (
            vec![
                ("x-api-key", b"sk-tg-\xff".to_vec()),
                ("authorization", bearer(GOOD)),
            ],
            false,
        ),
        (
            vec![
                ("authorization", b"Bearer sk-tg-\xff".to_vec()),
                ("x-bf-vk", good.into()),
            ],
            false,
        ),
    ];
    for (headers, authenticated) in cases {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let a = gw.post(&raw, NO_MODEL).await;
        let shown: Vec<(&str, String)> = headers
            .iter()
            .map(|(n, v)| (*n, String::from_utf8_lossy(v).into_owned()))
            .collect();
        if authenticated {
            envelope(&a, 400, "invalid_request_error");
        } else {
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{shown:?} must be refused: {a:?}"
            );
        }
    }
}

/// A request body that never yields a byte, declaring `declared` bytes; records whether it was
/// polled.
struct Stalled {
    declared: u64,
    polled: Arc<AtomicBool>,
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        Poll::Pending
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}

#[tokio::test]
async fn a_declared_body_over_the_cap_is_413_before_a_byte_is_read() {
    let mut gw = Gateway::configured(&closed().await);
    let polled = Arc::new(AtomicBool::new(false));
    let declared = 10 * MAX_BODY as u64;
    let mut req = request(
        "/anthropic/v1/messages",
        &[("x-api-key", GOOD.as_bytes())],
        Body::new(Stalled {
            declared,
            polled: Arc::clone(&polled),
        }),
    );
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
    // The bound only tells "answered" from "waits for a body that never comes".
    let a = tokio::time::timeout(Duration::from_secs(10), gw.send(req))
        .await
        .expect("answered without waiting for the body");
    let text = envelope(&a, 413, "request_too_large");
    assert!(text.contains(&MAX_BODY.to_string()), "{text}");
    assert!(!polled.load(Ordering::SeqCst), "the body was never read");
    let usage = gw.usage();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].status, usage[0].error_class.as_str()),
        (413, "body_too_large")
    );
}

#[tokio::test]
async fn malformed_model_ids_are_400_naming_the_problem() {
    let mut gw = Gateway::configured(&closed().await);
    let long = "a".repeat(10 * 1024);
    let cases = [
        (long.as_str(), "10240 bytes is too long"),
        ("claude\nINFO forged", "character '\\n' at byte 6"),
        ("claude\u{1b}[31m", "character '\\u{1b}' at byte 6"),
        ("claude sonnet", "character ' ' at byte 6"),
        ("claudé-sonnet", "character 'é' at byte 5"),
        ("bedrock/anthropic.claude?x=1", "character '?'"),
        ("", "must not be empty"),
    ];
    for (model, expected) in cases {
        let a = gw
            .post(&[("x-api-key", GOOD.as_bytes())], message(model))
            .await;
        let text = envelope(&a, 400, "invalid_request_error");
        assert!(text.starts_with("model: "), "{text}");
        assert!(text.contains(expected), "{model:?}: {text}");
        assert!(!text.contains("forged") && text.len() < 300, "{text}");
    }
    let usage = gw.usage();
    assert_eq!(usage.len(), cases.len());
    for r in usage {
        assert_eq!((r.status, r.error_class.as_str()), (400, "invalid_model"));
        assert_eq!(r.model_requested, "", "an invalid id is not recorded");
        assert_eq!(r.virtual_key_id, "vk-good");
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_a_stable_502_with_the_detail_in_the_log() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let closed = closed().await;
    let port = closed.rsplit(':').next().expect("port").to_owned();
    let mut gw = Gateway::configured(&closed);
    let a = gw
        .post(
            &[("x-api-key", GOOD.as_bytes())],
            message("anthropic/claude-x"),
        )
        .await;
    let text = envelope(&a, 502, "api_error");
    let id = a.body["request_id"].as_str().expect("id");
    assert_eq!(
        text,
        format!(
            "could not connect to provider \"anthropic\" (request id {id}; the gateway log has the details)"
        )
    );
    // The OS error and the address are the log's.
    let lines = logs.lines_with(id);
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert!(
        failed[0].contains("detail=") && failed[0].to_lowercase().contains("refused"),
        "{}",
        failed[0]
    );
    assert!(!text.contains(&port));
    let usage = gw.usage();
    assert_eq!(
        (usage[0].status, usage[0].error_class.as_str()),
        (502, "upstream_unreachable")
    );
}

#[tokio::test]
async fn client_and_upstream_text_cannot_forge_log_lines() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let gw = Gateway::configured(&upstream().await);
    // Bedrock's error message goes to the log (and, mapped, to the client).
    let a = gw
        .post(
            &[("x-api-key", GOOD.as_bytes())],
            message("bedrock/anthropic.claude-x"),
        )
        .await;
    let text = envelope(&a, 400, "invalid_request_error");
    assert!(
        text.contains("forged line"),
        "relayed to the client: {text}"
    );
    // A model id that tries the same.
    let a = gw
        .post(
            &[("x-api-key", GOOD.as_bytes())],
            message("claude\n2026-01-01T00:00:00.000000Z  INFO tollgate: forged line"),
        )
        .await;
    envelope(&a, 400, "invalid_request_error");

    let log = logs.text();
    let forged = logs.lines_with("forged line");
    assert_eq!(forged.len(), 1, "{log}");
    assert!(forged[0].contains("Bedrock returned an error"), "{log}");
    assert!(forged[0].contains("bad input\\n2026-01-01"), "{log}");
    assert!(forged[0].contains("forged line\\r\\u{1b}[2K"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01")),
        "no forged line: {log}"
    );
    assert!(!log.contains('\x1b') && !log.contains('\r'), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_floods_cannot_push_real_usage_out_of_the_spool() {
    // The control plane is away: usage waits in a spool of 10 records.
    let (endpoint, cp_addr) = dead_endpoint().await;
    let spool = tempfile::tempdir().expect("dir");
    let (sink, rx) = UsageSink::channel(1024);
    let reporter = start_reporter(
        rx,
        ReporterConfig {
            spool_dir: Some(spool.path().to_owned()),
            spool_max_records: 10,
            batch_max: 10,
            flush_interval: Duration::from_millis(20),
            ..ReporterConfig::new(endpoint, "node-in-process")
        },
        fast_options(),
    );
    let gw = Gateway::with_sink(sink, mpsc::channel(1).1);
    gw.apply(config(1, &upstream().await));

    async fn real(gw: &Gateway) {
        let a = gw
            .post(
                &[("x-api-key", GOOD.as_bytes())],
                message("anthropic/claude-sonnet-4-6"),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["usage"]["output_tokens"], 5);
    }
    for _ in 0..5 {
        real(&gw).await;
    }
    let mut flood_ids = Vec::new();
    for i in 0..200 {
        let key = format!("sk-tg-guess-{i}");
        let a = gw.post(&[("x-api-key", key.as_bytes())], NO_MODEL).await;
        assert_eq!(a.status, 401);
        flood_ids.push(a.body["request_id"].as_str().expect("id").to_owned());
    }
    for _ in 0..5 {
        real(&gw).await;
    }
    wait_until("the real records reach the spool", || {
        reporter.stats.received_total() >= 10
    })
    .await;

    // The control plane comes back: every real record is delivered, nothing was dropped.
    let state = FakeState::new(None);
    let cp = FakeControlPlane::start(Arc::clone(&state), Some(cp_addr)).await;
    wait_until("the real records acknowledged", || {
        reporter.stats.acked_total() >= 10
    })
    .await;
    let stored = state.usage();
    assert_eq!(stored.len(), 10, "{stored:?}");
    assert!(flood_ids.iter().all(|id| !stored.contains_key(id)));
    assert_eq!(reporter.stats.received_total(), 10);
    assert_eq!(reporter.dropped_total(), 0);
    assert_eq!(gw.dp.usage.dropped(), 0);
    assert_eq!(gw.dp.refusals().get("auth"), 200);
    reporter.task.abort();
    cp.stop().await;
}

/// Every usage record carries its cost, priced at the routed model's prices: each token kind at
/// its own rate (cache writes split by TTL); a model without a price is unpriced (no cost, never
/// $0); a request that used no token costs 0.
#[tokio::test]
async fn usage_records_carry_their_cost() {
    let upstream_url = upstream().await;
    let mut gw = Gateway::configured(&upstream_url);
    let good: &[(&str, &[u8])] = &[("x-api-key", GOOD.as_bytes())];
    for model in ["anthropic/claude-sonnet-4-6", "anthropic/my-fine-tune"] {
        let a = gw.post(good, message(model)).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let refused = gw.post(good, message("bad model!")).await;
    assert_eq!(refused.status, 400, "{refused:?}");
    let usage = gw.usage();
    let [sonnet, fine_tune, bad] = &usage[..] else {
        panic!("three records: {usage:?}");
    };
    assert_eq!(
        (
            sonnet.cache_write_input_tokens,
            sonnet.cache_write_1h_input_tokens
        ),
        (300, 200)
    );
    // Sonnet 4.6 on the Anthropic API: $3 input, $15 output, $3.75 5-minute and $6 1-hour cache
    // writes, $0.30 cache reads per million tokens.
    let want = 3 * 3_000 + 5 * 15_000 + 100 * 3_750 + 200 * 6_000 + 1000 * 300;
    assert_eq!(sonnet.cost_nano_usd, Some(want));
    assert_eq!(fine_tune.input_tokens, 3);
    assert_eq!(fine_tune.cost_nano_usd, None, "unpriced, not $0");
    assert_eq!((bad.status, bad.cost_nano_usd), (400, Some(0)));

    // An admin's override (in the snapshot) prices the fine-tune and beats the shipped Sonnet
    // price; both apply from the config version that carries them.
    let flat = |models: &[&str], n: u64| pb::PriceOverride {
        id: format!("o{n}"),
        provider: "anthropic".into(),
        models: models.iter().map(|m| m.to_string()).collect(),
        rates: Some(pb::Rates {
            input: n,
            output: n,
            cache_write_5m: n,
            cache_write_1h: n,
            cache_read: n,
        }),
        ..Default::default()
    };
    let mut snapshot = config(2, &upstream_url);
    snapshot.price_overrides = vec![
        flat(&["my-fine-tune"], 1_000),
        flat(&["claude-sonnet-4-6*"], 7),
    ];
    gw.apply(snapshot);
    for model in ["anthropic/claude-sonnet-4-6", "anthropic/my-fine-tune"] {
        let a = gw.post(good, message(model)).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let usage = gw.usage();
    let tokens = 3 + 5 + 300 + 1000;
    assert_eq!(usage[0].cost_nano_usd, Some(tokens * 7));
    assert_eq!(usage[1].cost_nano_usd, Some(tokens * 1_000));
}

/// Every usage record names who its request is billed to, as the config said when it was
/// served: the key's team, its customer (its own, or its team's) and, for a personal key, its
/// user. All three routes (Anthropic, OpenAI and Bedrock formats) bill alike.
#[tokio::test]
async fn usage_records_name_who_they_are_billed_to() {
    let upstream_url = upstream().await;
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &upstream_url);
    snapshot.teams = vec![pb::Team {
        id: "team-t".into(),
        name: "t".into(),
        customer_id: "cust-c".into(),
        ..Default::default()
    }];
    snapshot.customers = vec![
        pb::Customer {
            id: "cust-c".into(),
            name: "c".into(),
            ..Default::default()
        },
        pb::Customer {
            id: "cust-d".into(),
            name: "d".into(),
            ..Default::default()
        },
    ];
    snapshot.virtual_keys.push(pb::VirtualKey {
        team_id: "team-t".into(),
        user_id: "user-u".into(),
        ..virtual_key("vk-personal", "sk-tg-personal", true)
    });
    snapshot.virtual_keys.push(pb::VirtualKey {
        customer_id: "cust-d".into(),
        ..virtual_key("vk-customer", "sk-tg-customer", true)
    });
    gw.apply(snapshot);
    let chat = json!({"model": "anthropic/claude-haiku-4-5",
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let invoke = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    for key in ["sk-tg-personal", "sk-tg-customer", GOOD] {
        let auth = format!("Bearer {key}");
        let headers: &[(&str, &[u8])] = &[("authorization", auth.as_bytes())];
        for (path, body) in [
            (
                "/anthropic/v1/messages",
                message("anthropic/claude-haiku-4-5"),
            ),
            ("/openai/v1/chat/completions", chat.clone()),
            (
                "/bedrock/model/anthropic%2Fclaude-haiku-4-5/invoke",
                invoke.clone(),
            ),
        ] {
            let a = gw.send(request(path, headers, body.into())).await;
            assert_eq!(a.status, 200, "{path}: {a:?}");
        }
    }
    let usage = gw.usage();
    let billed: Vec<_> = usage
        .iter()
        .map(|r| {
            (
                r.virtual_key_id.as_str(),
                r.team_id.as_str(),
                r.customer_id.as_str(),
                r.user_id.as_str(),
            )
        })
        .collect();
    let personal = ("vk-personal", "team-t", "cust-c", "user-u");
    let customer = ("vk-customer", "", "cust-d", "");
    let nobody = ("vk-good", "", "", "");
    assert_eq!(
        billed,
        [
            personal, personal, personal, customer, customer, customer, nobody, nobody, nobody
        ]
    );
}

/// An expired key gets a 401 saying so; a key restricted to some models gets a 403 naming the
/// model; both are usage of the key (it was established) except the expired one, which is
/// refused like a bad key.
#[tokio::test]
async fn expired_keys_and_disallowed_models_are_refused() {
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &upstream().await);
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1;
    let mut expired = virtual_key("vk-expired", "sk-tg-expired", true);
    expired.expires_at_unix_ms = past;
    let mut later = virtual_key("vk-later", "sk-tg-later", true);
    later.expires_at_unix_ms = past + 3_600_000;
    later.provider_configs = vec![pb::ProviderConfig {
        provider: "anthropic".into(),
        weight: 1.0,
        allowed_models: vec!["claude-haiku-*".into()],
        ..Default::default()
    }];
    snapshot.virtual_keys.extend([expired, later]);
    gw.apply(snapshot);

    let a = gw
        .post(
            &[("x-api-key", b"sk-tg-expired")],
            message("anthropic/claude-haiku-4-5"),
        )
        .await;
    let text = envelope(&a, 401, "authentication_error");
    assert!(text.contains("expired"), "{text}");
    let later: &[(&str, &[u8])] = &[("x-api-key", b"sk-tg-later")];
    let a = gw.post(later, message("anthropic/claude-haiku-4-5")).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = gw.post(later, message("anthropic/claude-sonnet-4-6")).await;
    let text = envelope(&a, 403, "permission_error");
    assert!(text.contains("claude-sonnet-4-6"), "{text}");
    let usage = gw.usage();
    let classes: Vec<_> = usage.iter().map(|r| r.error_class.as_str()).collect();
    assert_eq!(classes, ["", "model_not_allowed"]);
    assert_eq!(gw.dp.refusals().get("auth"), 1);
}

#[tokio::test]
async fn unknown_paths_say_what_is_served() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let gw = Gateway::configured(&closed().await);
    let call = |method: Method, path: &str| {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        gw.send(req)
    };
    // A base URL that ends in /v1 (Claude Code appends /v1/messages).
    let a = call(Method::POST, "/anthropic/v1/v1/messages?beta=true").await;
    let text = envelope(&a, 404, "not_found_error");
    assert!(
        text.starts_with("no route for POST /anthropic/v1/v1/messages: ")
            && text.contains("POST /anthropic/v1/messages")
            && text.contains("ANTHROPIC_BASE_URL")
            && text.contains("without /v1"),
        "{text}"
    );
    // Served now (model discovery): without a key, the usual 401.
    let a = call(Method::GET, "/v1/models?limit=1000").await;
    envelope(&a, 401, "authentication_error");
    let a = call(Method::POST, "/gateway/v1/messages").await;
    let text = envelope(&a, 404, "not_found_error");
    assert!(text.contains("ANTHROPIC_BASE_URL"), "{text}");
    let a = call(Method::POST, "/anthropic/v1/complete").await;
    let text = envelope(&a, 404, "not_found_error");
    assert!(
        text.contains("serves POST /anthropic/v1/messages"),
        "{text}"
    );
    let long = format!("/anthropic/{}", "x".repeat(5_000));
    let a = call(Method::POST, &long).await;
    assert!(envelope(&a, 404, "not_found_error").len() < 600);

    // The wrong method on an inference route.
    let a = call(Method::GET, "/v1/messages").await;
    let text = envelope(&a, 405, "invalid_request_error");
    assert!(
        text.starts_with("GET is not served on /v1/messages"),
        "{text}"
    );

    // Elsewhere: the admin API's shape.
    let a = call(Method::GET, "/nowhere").await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.body,
        json!({"error": {"type": "not_found", "message": "no route for GET /nowhere"}})
    );

    // Each is logged at info with its path; none is usage.
    let logged = logs.lines_with("no route for this request");
    assert_eq!(logged.len(), 5, "{}", logs.text());
    assert!(logged[0].contains(" INFO ") && logged[0].contains("path=/anthropic/v1/v1/messages"));
    assert_eq!(gw.dp.refusals().get("no_route"), 6);
}

/// A key with the given limits (and team), for the admission tests.
fn limited(id: &str, key: &str, limits: pb::Limits, team: &str) -> pb::VirtualKey {
    pb::VirtualKey {
        limits: Some(limits),
        team_id: team.into(),
        ..virtual_key(id, key, true)
    }
}

fn budget(nano_usd: u64) -> pb::Limits {
    pb::Limits {
        budgets: vec![pb::Budget {
            id: "b-month".into(),
            max_limit_nano_usd: nano_usd,
            reset: pb::ResetPeriod::Month as i32,
            calendar_aligned: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn requests_per_minute(n: u64) -> pb::Limits {
    pb::Limits {
        rate_limit: Some(pb::RateLimit {
            request_max_limit: n,
            request_reset: pb::ResetPeriod::Minute as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// In a fleet, a refusal by this node's allowance while the limit has room elsewhere is a
/// temporary 429 (retry in a second, Claude Code retries), not the final one; once a grant says
/// the fleet is exhausted it is final again.
#[tokio::test]
async fn refusals_by_this_nodes_allowance_ask_for_a_retry() {
    let gw = Gateway::new();
    let mut snapshot = config(1, &upstream().await);
    snapshot
        .virtual_keys
        .push(limited("vk-rate", "sk-tg-rate", requests_per_minute(3), ""));
    gw.apply(snapshot);
    gw.dp.runtime().fleet().set_share(Share { slot: 2, of: 3 });
    let send = || {
        gw.post(
            &[("x-api-key", b"sk-tg-rate")],
            message("anthropic/claude-haiku-4-5"),
        )
    };
    assert_eq!(send().await.status, 200, "this node's share: 1 of 3");
    let a = send().await;
    let text = envelope(&a, 429, "rate_limit_error");
    assert!(text.contains("being moved here"), "{text}");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    assert!(!a.headers.contains_key("x-should-retry"));
    // The control plane says nothing is left anywhere: the limit's own refusal.
    let cell = crate::limits::CellKey {
        level: crate::limits::LevelId::VirtualKey("vk-rate".into()),
        counter: crate::limits::CounterId::Requests(crate::limits::WindowSpec::calendar(
            crate::limits::Period::Minute,
        )),
    };
    let window = crate::limits::WindowSpec::calendar(crate::limits::Period::Minute).window_at(
        crate::limits::Clock::now_unix_ms(&crate::limits::SystemClock),
    );
    let applied = gw.dp.apply_grants(&pb::Grants {
        seq: 1,
        grants: vec![pb::Grant {
            counter: crate::limits::wire::counter_to_pb(&cell),
            window_start_unix_ms: window.start_unix_ms,
            amount: 1,
            fleet_exhausted: true,
        }],
    });
    assert_eq!(applied, 1);
    let a = send().await;
    let text = envelope(&a, 429, "rate_limit_error");
    assert!(text.contains("may send 3 requests per 1m"), "{text}");
}

/// Budgets, rate limits and the team level are enforced after routing, before the upstream call:
/// a request is admitted only if its worst-case cost fits what is left, settles at its actual
/// cost, and refusals say which level and limit, with the headers that tell Claude Code whether
/// to retry.
#[tokio::test]
async fn budgets_and_rate_limits_refuse_with_the_level_and_the_reset() {
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &upstream().await);
    // Sonnet 4.6 answers cost 1,959,000 n$ each (see usage_records_carry_their_cost); the
    // worst case of this small request is reserved first.
    let body = message("anthropic/claude-sonnet-4-6");
    let estimate = crate::admission::Estimate::of_request(body.len(), Some(8));
    let price = PriceTable::shipped()
        .price("anthropic", "claude-sonnet-4-6")
        .unwrap();
    let reserve = price
        .upper_bound(estimate.input_tokens, estimate.output_tokens)
        .0;
    let actual = 1_959_000;
    // Room for two answers and the reservation of the second, not of a third.
    let limit = 2 * actual + reserve - 1;
    assert!(actual + reserve <= limit && 2 * actual + reserve > limit);
    snapshot.virtual_keys.extend([
        limited("vk-tiny", "sk-tg-tiny", budget(1_000), ""),
        limited("vk-budget", "sk-tg-budget", budget(limit), ""),
        limited("vk-rate", "sk-tg-rate", requests_per_minute(3), ""),
        limited("vk-team-a", "sk-tg-team-a", pb::Limits::default(), "team-1"),
        limited("vk-team-b", "sk-tg-team-b", pb::Limits::default(), "team-1"),
    ]);
    snapshot.teams = vec![pb::Team {
        id: "team-1".into(),
        name: "platform".into(),
        limits: Some(requests_per_minute(2)),
        ..Default::default()
    }];
    gw.apply(snapshot);
    let send = |key: &'static str, model: &'static str| {
        let gw = &gw;
        async move {
            gw.post(&[("x-api-key", key.as_bytes())], message(model))
                .await
        }
    };

    // The issue's example: a $0.000001 budget answers nothing.
    let a = send("sk-tg-tiny", "anthropic/claude-sonnet-4-6").await;
    let text = envelope(&a, 429, "rate_limit_error");
    assert!(text.contains("budget of virtual key \"vk-tiny\""), "{text}");
    assert_eq!(a.headers["x-should-retry"], "false");
    assert!(a.headers.contains_key(header::RETRY_AFTER));

    for _ in 0..2 {
        let a = send("sk-tg-budget", "anthropic/claude-sonnet-4-6").await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = send("sk-tg-budget", "anthropic/claude-sonnet-4-6").await;
    let text = envelope(&a, 429, "rate_limit_error");
    assert!(text.contains("is used up; it resets at "), "{text}");
    assert_eq!(a.headers["x-should-retry"], "false");
    // A model without a price is refused on a key with a budget.
    let a = send("sk-tg-budget", "anthropic/my-fine-tune").await;
    let text = envelope(&a, 403, "permission_error");
    assert!(text.contains("no price"), "{text}");

    for _ in 0..3 {
        assert_eq!(
            send("sk-tg-rate", "anthropic/claude-haiku-4-5")
                .await
                .status,
            200
        );
    }
    let a = send("sk-tg-rate", "anthropic/claude-haiku-4-5").await;
    let text = envelope(&a, 429, "rate_limit_error");
    assert!(text.contains("may send 3 requests per 1m"), "{text}");
    assert!(
        !a.headers.contains_key("x-should-retry"),
        "a rate limit is worth retrying"
    );
    let after: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{after}");

    // Two keys share their team's limit of 2 per minute.
    assert_eq!(
        send("sk-tg-team-a", "anthropic/claude-haiku-4-5")
            .await
            .status,
        200
    );
    assert_eq!(
        send("sk-tg-team-b", "anthropic/claude-haiku-4-5")
            .await
            .status,
        200
    );
    let a = send("sk-tg-team-b", "anthropic/claude-haiku-4-5").await;
    let text = envelope(&a, 429, "rate_limit_error");
    assert!(text.contains("team \"platform\""), "{text}");

    // Every refusal after authentication is usage of its key, with its class and no cost.
    let usage = gw.usage();
    let refused: Vec<_> = usage
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| {
            (
                r.virtual_key_id.as_str(),
                r.error_class.as_str(),
                r.cost_nano_usd,
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("vk-tiny", "budget_exhausted", Some(0)),
            ("vk-budget", "budget_exhausted", Some(0)),
            ("vk-budget", "unpriced_model", Some(0)),
            ("vk-rate", "rate_limited", Some(0)),
            ("vk-team-b", "rate_limited", Some(0)),
        ]
    );
    let spent: u64 = usage
        .iter()
        .filter(|r| r.virtual_key_id == "vk-budget")
        .filter_map(|r| r.cost_nano_usd)
        .sum();
    assert_eq!(
        spent,
        2 * actual,
        "two answers settled at their actual cost"
    );
}

/// The snapshot's provider called `name`, to change it.
fn provider_mut<'a>(snapshot: &'a mut pb::Snapshot, name: &str) -> &'a mut pb::Provider {
    snapshot
        .providers
        .iter_mut()
        .find(|p| p.name == name)
        .expect("a provider of the test config")
}

/// `GET /v1/models` lists what the presented key may use, in Anthropic's list shape: aliases as
/// bare names (where the bare name routes there) and as `provider/name`, named models of keys
/// restricted to them, filtered by the key's providers and `allowed_models`; every listed id
/// routes.
#[tokio::test]
async fn model_discovery_lists_what_the_key_may_use() {
    let gw = Gateway::new();
    let mut snapshot = config(1, "http://127.0.0.1:9");
    let bedrock = provider_mut(&mut snapshot, "bedrock");
    bedrock.keys[0].aliases = [
        ("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6"),
        (
            "claude-haiku-4-5",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .into();
    let anthropic = provider_mut(&mut snapshot, "anthropic");
    anthropic.keys[0].models = vec!["claude-opus-4-6".into(), "claude-sonnet-4-6".into()];
    snapshot.virtual_keys.push(pb::VirtualKey {
        provider_configs: vec![pb::ProviderConfig {
            provider: "bedrock".into(),
            allowed_models: vec!["claude-haiku-*".into()],
            ..Default::default()
        }],
        providers: vec!["bedrock".into()],
        ..virtual_key("vk-narrow", "sk-tg-narrow", true)
    });
    gw.apply(snapshot);
    let get = |path: &str, key: &'static str| {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        if !key.is_empty() {
            req.headers_mut()
                .insert("x-api-key", HeaderValue::from_static(key));
        }
        gw.send(req)
    };
    let ids = |a: &Answer| -> Vec<String> {
        a.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = get("/v1/models?limit=1000", GOOD).await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(
        ids(&all),
        [
            "claude-haiku-4-5",
            "claude-sonnet-4-6",
            "anthropic/claude-opus-4-6",
            "anthropic/claude-sonnet-4-6",
            "bedrock/claude-haiku-4-5",
            "bedrock/claude-sonnet-4-6",
        ],
        "bare names where they route (bedrock aliases them); the anthropic key's named models"
    );
    assert_eq!(all.body["data"][1]["display_name"], "Claude Sonnet 4.6");
    assert_eq!(all.body["data"][1]["type"], "model");
    assert_eq!(
        all.body["data"][4]["display_name"],
        "Claude Haiku 4.5 (bedrock)"
    );
    assert_eq!(all.body["has_more"], false);
    assert_eq!(all.body["first_id"], "claude-haiku-4-5");
    assert_eq!(all.body["last_id"], "bedrock/claude-sonnet-4-6");

    // The same list under /anthropic, paged.
    let page = get(
        "/anthropic/v1/models?limit=2&after_id=claude-sonnet-4-6",
        GOOD,
    )
    .await;
    assert_eq!(
        ids(&page),
        ["anthropic/claude-opus-4-6", "anthropic/claude-sonnet-4-6"]
    );
    assert_eq!(page.body["has_more"], true);

    let narrow = get("/v1/models", "sk-tg-narrow").await;
    assert_eq!(
        ids(&narrow),
        ["claude-haiku-4-5", "bedrock/claude-haiku-4-5"],
        "its provider and allowed_models only"
    );

    // One model; one it may not use.
    let one = get("/v1/models/bedrock/claude-haiku-4-5", "sk-tg-narrow").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["id"], "bedrock/claude-haiku-4-5");
    let other = get("/anthropic/v1/models/claude-sonnet-4-6", "sk-tg-narrow").await;
    assert_eq!(other.status, 404);
    assert_eq!(other.body["error"]["type"], "not_found_error");

    // Errors in Anthropic's shape.
    let anonymous = get("/v1/models", "").await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["type"], "authentication_error");
    let bad = get("/v1/models?limit=0", GOOD).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["type"], "invalid_request_error");
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{:?}",
        bad.body
    );
}

/// A provider key value the scripted upstream always throttles.
const THROTTLED_KEY: &str = "sk-ant-throttled-key";
/// A provider key value the scripted upstream refuses (401).
const REVOKED_KEY: &str = "sk-ant-revoked-key";

/// An Anthropic upstream scripted by model name and key. Models: `…-throttled` answers 429,
/// `…-overloaded` 529, `…-broken` 500, `…-invalid` 400; `…-flaky-N` 503 to its first N
/// requests; `…-wait-S` 429 with `retry-after: S` to its first request; `…-hang` never answers;
/// anything else a message. Keys: [`THROTTLED_KEY`] is always 429, [`REVOKED_KEY`] always 401.
/// Like the real API it refuses fields it does not know (the gateway's `fallbacks` must never
/// reach it). Returns its URL and the models it was asked for, in order.
async fn scripted_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let counts = Arc::new(Mutex::new(std::collections::HashMap::<String, u32>::new()));
    let messages = move |headers: HeaderMap, body: Bytes| {
        let log = Arc::clone(&log);
        let counts = Arc::clone(&counts);
        async move {
            let body: Value = serde_json::from_slice(&body).expect("json");
            let mut model = body["model"].as_str().unwrap_or_default().to_owned();
            log.lock().unwrap().push(model.clone());
            let key = headers.get("x-api-key").map(HeaderValue::as_bytes);
            // A key that is throttled whatever it asks for.
            if key == Some(THROTTLED_KEY.as_bytes()) {
                model.push_str("-throttled");
            }
            let error = |status: u16, kind: &str| {
                let body = json!({"type": "error", "error": {"type": kind, "message": format!("{model}: {kind}")}});
                (
                    StatusCode::from_u16(status).unwrap(),
                    HeaderMap::new(),
                    axum::Json(body),
                )
            };
            if body.get("fallbacks").is_some() {
                return error(400, "invalid_request_error");
            }
            if key == Some(REVOKED_KEY.as_bytes()) {
                return error(401, "authentication_error");
            }
            // Requests for this model that got past authentication.
            let nth = {
                let mut counts = counts.lock().unwrap();
                let n = counts.entry(model.clone()).or_default();
                *n += 1;
                *n
            };
            if model.ends_with("-hang") {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if let Some((_, n)) = model.rsplit_once("-flaky-")
                && nth <= n.parse().unwrap()
            {
                return error(503, "api_error");
            }
            if let Some((_, secs)) = model.rsplit_once("-wait-")
                && nth == 1
            {
                let mut e = error(429, "rate_limit_error");
                e.1.insert("retry-after", secs.parse().unwrap());
                return e;
            }
            for (suffix, status, kind) in [
                ("-throttled", 429, "rate_limit_error"),
                ("-overloaded", 529, "overloaded_error"),
                ("-broken", 500, "api_error"),
                ("-invalid", 400, "invalid_request_error"),
            ] {
                if model.ends_with(suffix) {
                    return error(status, kind);
                }
            }
            (
                StatusCode::OK,
                HeaderMap::new(),
                axum::Json(json!({
                    "id": "msg_fallback", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "hello"}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": 3, "output_tokens": 5}
                })),
            )
        }
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(messages));
    let url = serve(app).await;
    (url, seen)
}

/// The models the scripted upstream was asked for since the last call.
fn take(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    std::mem::take(&mut *seen.lock().unwrap())
}

async fn post_with_fallbacks(gw: &Gateway, key: &str, model: &str, fallbacks: Value) -> Answer {
    let body = json!({"model": model, "max_tokens": 8, "fallbacks": fallbacks,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    gw.post(&[("x-api-key", key.as_bytes())], body).await
}

/// A request's `fallbacks` are tried in order while an attempt fails with 429, 529, 5xx or no
/// connection, before anything reaches the client; the field never goes upstream; the answer
/// names what served; the usage record keeps the attempts. Errors of the request itself and
/// refusals by limits never fall back.
#[tokio::test]
async fn fallbacks_are_tried_in_order_on_retryable_failures() {
    let (url, seen) = scripted_upstream().await;
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &url);
    // Bedrock at a closed port: unreachable.
    let bedrock = provider_mut(&mut snapshot, "bedrock");
    bedrock.network = network(&closed().await);
    snapshot
        .virtual_keys
        .push(limited("vk-rate", "sk-tg-rate", requests_per_minute(1), ""));
    snapshot.virtual_keys.push(pb::VirtualKey {
        fallbacks: vec!["anthropic/claude-ok".into()],
        ..virtual_key("vk-fallbacks", "sk-tg-fallbacks", true)
    });
    gw.apply(snapshot);

    // 429, then 529, then an answer: the third entry serves.
    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "anthropic/claude-throttled",
        json!(["anthropic/claude-overloaded", "anthropic/claude-ok"]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["model"], "anthropic/claude-throttled",
        "the name asked for"
    );
    assert_eq!(a.headers["x-tollgate-fallback-index"], "2");
    assert_eq!(a.headers["x-tollgate-model"], "claude-ok");
    assert_eq!(a.headers["x-tollgate-provider"], "anthropic");
    assert_eq!(a.headers["x-tollgate-provider-key"], "anthropic-key");
    assert_eq!(
        take(&seen),
        ["claude-throttled", "claude-overloaded", "claude-ok"],
        "in order, and no attempt carried `fallbacks` (the upstream refuses it)"
    );
    let usage = gw.usage();
    let r = usage.last().unwrap();
    assert_eq!((r.status, r.fallback_index), (200, 2));
    assert_eq!(r.model_resolved, "claude-ok");
    let trail: Vec<_> = r
        .attempts
        .iter()
        .map(|a| (a.model.as_str(), a.class.as_str(), a.status))
        .collect();
    assert_eq!(
        trail,
        [
            ("claude-throttled", "rate_limited", 429),
            ("claude-overloaded", "overloaded", 529)
        ]
    );

    // No connection to Bedrock, then Anthropic; a 500 then an answer.
    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "bedrock/anthropic.claude-sonnet-4-6",
        json!(["anthropic/claude-broken", "anthropic/claude-ok"]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = gw.usage().pop().unwrap();
    let classes: Vec<_> = r
        .attempts
        .iter()
        .map(|a| (a.class.as_str(), a.status))
        .collect();
    assert_eq!(classes, [("unreachable", 0), ("server_error", 500)]);
    take(&seen);

    // An error of the request itself is the answer: no fallback.
    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "anthropic/claude-invalid",
        json!(["anthropic/claude-ok"]),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(!a.headers.contains_key("x-tollgate-fallback-index"));
    assert_eq!(take(&seen), ["claude-invalid"]);
    assert!(gw.usage().pop().unwrap().attempts.is_empty());

    // Every entry fails: the last failure is the answer, with the whole trail.
    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "anthropic/claude-throttled",
        json!([
            "anthropic/claude-broken",
            "no-such-provider/x",
            "anthropic/claude-overloaded"
        ]),
    )
    .await;
    assert_eq!(a.status, 529, "{a:?}");
    assert_eq!(
        take(&seen),
        ["claude-throttled", "claude-broken", "claude-overloaded"],
        "the entry that does not route is skipped"
    );
    let r = gw.usage().pop().unwrap();
    assert_eq!((r.fallback_index, r.attempts.len()), (3, 2));

    // A refusal by limits never falls back.
    let ok = post_with_fallbacks(
        &gw,
        "sk-tg-rate",
        "anthropic/claude-ok",
        json!(["anthropic/claude-ok"]),
    )
    .await;
    assert_eq!(ok.status, 200);
    let refused = post_with_fallbacks(
        &gw,
        "sk-tg-rate",
        "anthropic/claude-ok",
        json!(["anthropic/claude-ok"]),
    )
    .await;
    let text = envelope(&refused, 429, "rate_limit_error");
    assert!(text.contains("may send 1 requests per 1m"), "{text}");
    assert_eq!(
        take(&seen),
        ["claude-ok"],
        "nothing went upstream for the refusal"
    );

    // A key's own list applies to requests without one; a request's list replaces it.
    let body = json!({"model": "anthropic/claude-throttled", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let a = gw
        .post(&[("x-api-key", b"sk-tg-fallbacks".as_slice())], body)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.headers["x-tollgate-fallback-index"], "1");
    assert_eq!(take(&seen), ["claude-throttled", "claude-ok"]);
    let a = post_with_fallbacks(
        &gw,
        "sk-tg-fallbacks",
        "anthropic/claude-throttled",
        json!(["anthropic/claude-broken"]),
    )
    .await;
    assert_eq!(a.status, 500);
    assert_eq!(take(&seen), ["claude-throttled", "claude-broken"]);
    gw.usage();

    // Bad `fallbacks` are the client's error, naming the field.
    for (bad, what) in [
        (json!("anthropic/claude-ok"), "fallbacks: must be"),
        (json!([1]), "fallbacks: must be"),
        (json!(["bad model\n"]), "fallbacks[0]"),
        (json!(vec!["anthropic/claude-ok"; 9]), "at most 8"),
    ] {
        let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-ok", bad).await;
        let text = envelope(&a, 400, "invalid_request_error");
        assert!(text.contains(what), "{text}");
    }
    assert!(take(&seen).is_empty());
}

/// A throttled key is rotated away from within the provider before any fallback: the next
/// attempt goes to another key that serves the model, and the answer is the model asked for
/// (fallback index 0), with the throttled attempt in the usage record. After
/// [`crate::health::EJECT_AFTER`] failures in a row the key is ejected: requests stop trying
/// it first, and it is tried only as the last resort, after every fallback.
#[tokio::test]
async fn a_throttled_key_rotates_to_another_key_and_is_ejected() {
    let (url, seen) = scripted_upstream().await;
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &url);
    let anthropic = provider_mut(&mut snapshot, "anthropic");
    let good = anthropic.keys[0].clone();
    // Nearly every first pick is the throttled key (100 to 1).
    anthropic.keys = vec![
        pb::ProviderKey {
            id: "pk-throttled".into(),
            name: "throttled".into(),
            weight: 100.0,
            value: lit(THROTTLED_KEY),
            ..good.clone()
        },
        good,
    ];
    gw.apply(snapshot);
    let mut rotated = 0;
    for i in 0..10 {
        let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-ok", Value::Null).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(!a.headers.contains_key("x-tollgate-fallback-index"));
        assert_eq!(a.headers["x-tollgate-provider-key"], "anthropic-key");
        let r = gw.usage().pop().unwrap();
        assert_eq!(
            (r.fallback_index, r.provider_key_id.as_str()),
            (0, "pk-anthropic")
        );
        if let [attempt] = r.attempts.as_slice() {
            assert_eq!(
                (
                    attempt.provider_key_id.as_str(),
                    attempt.class.as_str(),
                    attempt.status
                ),
                ("pk-throttled", "rate_limited", 429)
            );
            rotated += 1;
            assert!(
                rotated <= crate::health::EJECT_AFTER,
                "request {i}: tried while ejected"
            );
        } else {
            assert!(r.attempts.is_empty(), "{:?}", r.attempts);
        }
    }
    // Each first pick goes to the throttled key with probability 100/101: fewer than five in
    // ten happens about once in 10^10 runs.
    assert_eq!(
        rotated,
        crate::health::EJECT_AFTER,
        "ejected after five failures"
    );
    assert_eq!(seen.lock().unwrap().len(), 10 + rotated as usize);
    seen.lock().unwrap().clear();
    // The good key fails both entries: the fallback's healthy key comes before the ejected key,
    // which is the last resort; its 429 is the answer, with a retry-after for the client.
    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "anthropic/claude-throttled",
        json!(["anthropic/claude-broken"]),
    )
    .await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(
        a.headers["retry-after"], "1",
        "the first backoff, rounded up"
    );
    assert_eq!(a.headers["x-tollgate-provider-key"], "throttled");
    let r = gw.usage().pop().unwrap();
    assert_eq!(r.fallback_index, 1);
    let tried: Vec<_> = r
        .attempts
        .iter()
        .map(|a| (a.model.as_str(), a.provider_key_id.as_str(), a.status))
        .collect();
    assert_eq!(
        tried,
        [
            ("claude-throttled", "pk-anthropic", 429),
            ("claude-broken", "pk-anthropic", 500)
        ]
    );
    assert_eq!(r.provider_key_id, "pk-throttled");
}

/// Retries after backoff: within the provider's `max_retries`, paced by jittered exponential
/// backoff or the upstream's longer `retry-after`, never past the request's deadline; a key
/// whose credential is refused (401) is left for the rest of the request; a streaming call
/// whose upstream sends no response head within `response_header_timeout` moves on.
#[tokio::test]
async fn retries_back_off_within_the_deadline() {
    let (url, seen) = scripted_upstream().await;
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &url);
    let anthropic = provider_mut(&mut snapshot, "anthropic");
    let network = anthropic.network.as_mut().unwrap();
    network.max_retries = 2;
    network.retry_backoff_initial_ms = 100;
    network.retry_backoff_max_ms = 200;
    network.request_timeout_ms = 3_000;
    network.response_header_timeout_ms = 300;
    gw.apply(snapshot.clone());

    // Two 503s, then an answer: two retries, after at least 0.8 × 100 + 0.8 × 200 ms.
    let started = Instant::now();
    let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-flaky-2", Value::Null).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
    let r = gw.usage().pop().unwrap();
    let classes: Vec<_> = r
        .attempts
        .iter()
        .map(|a| (a.class.as_str(), a.status))
        .collect();
    assert_eq!(classes, [("server_error", 503), ("server_error", 503)]);
    assert_eq!(take(&seen).len(), 3);

    // More failures than retries: the last 503 is the answer.
    let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-flaky-9", Value::Null).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(gw.usage().pop().unwrap().attempts.len(), 2);
    assert_eq!(take(&seen).len(), 3, "one attempt and two retries");

    // The upstream's retry-after (1 s) is longer than the backoff: it is honoured.
    let started = Instant::now();
    let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-wait-1", Value::Null).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    gw.usage();

    // A retry-after past the deadline (3 s) is not waited for: the fallback serves at once,
    // and without one the 429 (with its retry-after) is the answer.
    let started = Instant::now();
    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "anthropic/claude-wait-30",
        json!(["anthropic/claude-ok"]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.headers["x-tollgate-fallback-index"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-other-wait-30", Value::Null).await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.headers["retry-after"], "30");
    gw.usage();
    take(&seen);

    // A streaming call with no response head within 300 ms: timed out, on to the fallback.
    let body = json!({"model": "anthropic/claude-hang", "max_tokens": 8, "stream": true,
        "fallbacks": ["anthropic/claude-ok"],
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let started = Instant::now();
    let a = gw.post(&[("x-api-key", GOOD.as_bytes())], body).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let r = gw.usage().pop().unwrap();
    assert_eq!(r.attempts[0].class, "timeout");
    assert_eq!(r.fallback_index, 1);
    take(&seen);

    // A revoked key (401): the other key serves at once, and the revoked key is not tried
    // again by the request's retries.
    let anthropic = provider_mut(&mut snapshot, "anthropic");
    let good = anthropic.keys[0].clone();
    anthropic.keys = vec![
        pb::ProviderKey {
            id: "pk-revoked".into(),
            name: "revoked".into(),
            weight: 1000.0,
            value: lit(REVOKED_KEY),
            ..good.clone()
        },
        good,
    ];
    snapshot.version = 2;
    gw.apply(snapshot);
    let a = post_with_fallbacks(&gw, GOOD, "anthropic/claude-flaky-1", Value::Null).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.headers["x-tollgate-provider-key"], "anthropic-key");
    let r = gw.usage().pop().unwrap();
    let tried: Vec<_> = r
        .attempts
        .iter()
        .map(|a| (a.provider_key_id.as_str(), a.class.as_str()))
        .collect();
    // The revoked key first (weight 1000 to 1; once in about 1000 runs the good key is
    // picked first and its 503 comes before the 401).
    assert!(
        tried
            == [
                ("pk-revoked", "key_rejected"),
                ("pk-anthropic", "server_error")
            ]
            || tried
                == [
                    ("pk-anthropic", "server_error"),
                    ("pk-revoked", "key_rejected")
                ],
        "{tried:?}"
    );
}

/// A 400 that is not about thinking signatures is relayed as it came, though the gateway read
/// its body to find out (the request had thinking blocks): one attempt, the upstream's message.
#[tokio::test]
async fn a_400_read_for_a_signature_refusal_is_relayed_as_it_came() {
    let (url, seen) = scripted_upstream().await;
    let gw = Gateway::configured(&url);
    let body = json!({"model": "anthropic/claude-invalid", "max_tokens": 8,
        "thinking": {"type": "adaptive"},
        "messages": [{"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "a"}]},
            {"role": "user", "content": "again"}]})
    .to_string();
    let a = gw.post(&[("x-api-key", GOOD.as_bytes())], body).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(
        a.body,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "claude-invalid: invalid_request_error"}})
    );
    assert_eq!(take(&seen), ["claude-invalid"], "no second attempt");
}

/// An upstream that drops the connection before answering is unreachable: the fallback serves.
/// A stream that stalls ends with a `timeout_error` event after the idle timeout; one whose
/// connection breaks midway ends with an `api_error` event. Neither falls back: its first bytes
/// had gone to the client.
#[tokio::test]
async fn connections_dropped_before_the_answer_fall_back_and_broken_streams_end_with_an_error() {
    // Accepts, reads the request, closes.
    let dropper = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dropper_url = format!("http://{}", dropper.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = dropper.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
        }
    });
    // SSE that stalls or breaks after `message_start`; a message for anything else.
    let messages = |body: Bytes| async move {
        let body: Value = serde_json::from_slice(&body).expect("json");
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let start = Bytes::from(format!(
            "event: message_start\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}})
        ));
        let tail: Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>> =
            match model.as_str() {
                "claude-stall" => Box::pin(futures::stream::pending()),
                // After the head and the first event have gone out.
                "claude-cut" => Box::pin(futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("cut"))
                })),
                _ => {
                    let answer = json!({"id": "msg_ok", "type": "message", "role": "assistant",
                        "model": model, "content": [{"type": "text", "text": "hello"}],
                        "stop_reason": "end_turn", "stop_sequence": null,
                        "usage": {"input_tokens": 3, "output_tokens": 5}});
                    return axum::response::Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(answer.to_string()))
                        .expect("response");
                }
            };
        let stream = futures::StreamExt::chain(futures::stream::iter([Ok(start)]), tail);
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .expect("response")
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(messages));
    let url = serve(app).await;
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &url);
    provider_mut(&mut snapshot, "bedrock").network = network(&dropper_url);
    provider_mut(&mut snapshot, "anthropic")
        .network
        .as_mut()
        .expect("network")
        .stream_idle_timeout_ms = 300;
    gw.apply(snapshot);

    let a = post_with_fallbacks(
        &gw,
        GOOD,
        "bedrock/global.anthropic.claude-sonnet-4-6",
        json!(["anthropic/claude-ok"]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = gw.usage().pop().expect("record");
    assert_eq!(r.attempts[0].class, "unreachable", "{:?}", r.attempts);
    assert_eq!(r.fallback_index, 1);

    for (model, error, class) in [
        ("claude-stall", "timeout_error", "upstream_idle_timeout"),
        ("claude-cut", "api_error", ""),
    ] {
        let body = json!({"model": format!("anthropic/{model}"), "max_tokens": 8,
            "stream": true, "fallbacks": ["anthropic/claude-ok"],
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let a = gw.post(&[("x-api-key", GOOD.as_bytes())], body).await;
        assert_eq!(a.status, 200, "{a:?}");
        let text = a.body.as_str().unwrap_or_else(|| panic!("{model}: {a:?}"));
        assert!(text.starts_with("event: message_start"), "{text}");
        let last = text.trim_end().rsplit("\n\n").next().expect("an event");
        assert!(last.starts_with("event: error"), "{model}: {text}");
        assert!(last.contains(error), "{model}: {last}");
        let r = gw.usage().pop().expect("record");
        assert!(r.attempts.is_empty(), "no fallback after the first byte");
        if !class.is_empty() {
            assert_eq!(r.error_class, class);
        }
    }
}

/// A loopback Anthropic upstream for content logging: a stream when asked for one (with the
/// caller's prompt echoed in a `content_block_delta`), else a Message.
async fn echo_upstream() -> String {
    async fn messages(body: Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        let prompt = body["messages"][0]["content"].as_str().unwrap_or_default();
        let usage = json!({"input_tokens": 3, "output_tokens": 5});
        if body["stream"] == true {
            let events = [
                (
                    "message_start",
                    json!({"type": "message_start", "message": {
                    "id": "msg_echo", "type": "message", "role": "assistant",
                    "model": body["model"], "content": [], "stop_reason": null,
                    "usage": {"input_tokens": 3, "output_tokens": 0}}}),
                ),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": format!("echo: {prompt}")}}),
                ),
                (
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                (
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ];
            let sse: String = events
                .iter()
                .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
                .collect();
            return ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response();
        }
        axum::Json(json!({
            "id": "msg_echo", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": format!("echo: {prompt}")}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage
        }))
        .into_response()
    }
    serve(axum::Router::new().route("/v1/messages", axum::routing::post(messages))).await
}

/// Content logging: a key that records bodies (the setting the control plane resolved from the
/// key's and its team's) gets its request and the answer the client saw (a Message, a stream's
/// events, an error envelope) on its usage record, each cut to the key's cap and with
/// credentials masked; other keys' records carry no bodies.
#[tokio::test]
async fn content_logging_records_the_bodies_the_client_exchanged() {
    let upstream_url = echo_upstream().await;
    let mut gw = Gateway::new();
    let mut snapshot = config(1, &upstream_url);
    let recorded = |max| {
        Some(pb::ContentLogging {
            max_body_bytes: max,
        })
    };
    snapshot.virtual_keys.push(pb::VirtualKey {
        content_logging: recorded(4096),
        ..virtual_key("vk-logged", "sk-tg-logged", true)
    });
    snapshot.virtual_keys.push(pb::VirtualKey {
        content_logging: recorded(40),
        ..virtual_key("vk-small", "sk-tg-small", true)
    });
    gw.apply(snapshot);
    let ask = |prompt: &str, stream: bool| {
        json!({"model": "anthropic/claude-haiku-4-5", "max_tokens": 8, "stream": stream,
            "messages": [{"role": "user", "content": prompt}]})
        .to_string()
    };
    let secret = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
    let post = |key: &'static str, body: String| {
        let gw = &gw;
        async move {
            let auth = format!("Bearer {key}");
            let a = gw
                .send(request(
                    "/anthropic/v1/messages",
                    &[("authorization", auth.as_bytes())],
                    body.into(),
                ))
                .await;
            (a.status, a.body)
        }
    };

    // A Message.
    let unary = ask(&format!("my key is {secret}"), false);
    let (status, answer) = post("sk-tg-logged", unary.clone()).await;
    assert_eq!(status, 200, "{answer}");
    // A stream.
    let (status, streamed) = post("sk-tg-logged", ask("stream it", true)).await;
    assert_eq!(status, 200, "{streamed}");
    // An error envelope (the model is not one the gateway routes).
    let bad = json!({"model": "nowhere/x", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let (status, refused) = post("sk-tg-logged", bad.clone()).await;
    assert!(status.is_client_error(), "{refused}");
    // Cut to 40 bytes; a key without content logging.
    let (status, _) = post(
        "sk-tg-small",
        ask("a longer prompt than forty bytes", false),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(GOOD, ask("not recorded", false)).await;
    assert_eq!(status, 200);

    let usage = gw.usage();
    assert_eq!(usage.len(), 5, "{usage:?}");
    let content = |i: usize| usage[i].content.clone().expect("recorded bodies");
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).expect("UTF-8");

    let c = content(0);
    let masked = unary.replace(secret, &"*".repeat(secret.len()));
    assert_eq!(text(&c.request), masked, "the request, credentials masked");
    assert_eq!(c.request_bytes, unary.len() as u64);
    let sent: Value = serde_json::from_slice(&c.response).expect("the Message");
    let stars = "*".repeat(secret.len());
    let seen: Value =
        serde_json::from_str(&answer.to_string().replace(secret, &stars)).expect("JSON");
    assert_eq!(
        sent, seen,
        "the answer as the client received it, the echoed key masked"
    );
    assert!(
        answer.to_string().contains(secret),
        "the client got it unmasked"
    );
    assert_eq!(c.response_bytes, c.response.len() as u64);

    let c = content(1);
    let events = text(&c.response);
    assert_eq!(
        Value::String(events.clone()),
        streamed,
        "every event the client got"
    );
    assert!(events.contains("echo: stream it") && events.contains("event: message_stop"));

    let c = content(2);
    assert_eq!(text(&c.request), bad);
    let envelope: Value = serde_json::from_slice(&c.response).expect("the envelope");
    assert_eq!(envelope, refused);
    assert_eq!(envelope["type"], "error");

    let c = content(3);
    assert_eq!(c.request.len(), 40, "cut to the key's cap");
    assert!(c.request_bytes > 40);
    assert!(c.response.len() <= 40 && c.response_bytes > 40);

    assert!(usage[4].content.is_none(), "not recorded for other keys");
}

/// `GET /v1/key` says what the presented key is (owner names, expiry, providers, model
/// patterns) and what is left of each budget of its chain as this node counts it; it needs a
/// key like `/v1/models`, and never returns the key or its hash.
#[tokio::test]
async fn key_information_shows_budgets_left_and_no_secret() {
    let gw = Gateway::new();
    let mut snapshot = config(1, "http://127.0.0.1:9");
    snapshot.customers = vec![pb::Customer {
        id: "cust-c".into(),
        name: "Acme".into(),
        limits: Some(budget(50_000_000_000)),
    }];
    snapshot.teams = vec![pb::Team {
        id: "team-t".into(),
        name: "Platform".into(),
        customer_id: "cust-c".into(),
        ..Default::default()
    }];
    let key = "sk-tg-key-info";
    snapshot.virtual_keys.push(pb::VirtualKey {
        expires_at_unix_ms: 4_102_444_800_000,
        providers: vec!["bedrock".into()],
        provider_configs: vec![pb::ProviderConfig {
            provider: "bedrock".into(),
            allowed_models: vec!["claude-haiku-*".into(), "regex:claude-opus-4-[67]".into()],
            ..Default::default()
        }],
        ..limited("vk-info", key, budget(10_000_000_000), "team-t")
    });
    gw.apply(snapshot);
    // Spend $2.50 on the key's chain as a request would (admitted, then settled).
    let rt = gw.dp.runtime().load().expect("runtime");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    rt.limits
        .admit(
            "vk-info",
            "bedrock",
            Some(tollgate_proto::pricing::Cost(1)),
            1,
            now,
        )
        .expect("admitted")
        .settle(Some(2_500_000_000), 10);

    let get = |auth: Option<(&'static str, String)>| {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("/v1/key")
            .body(Body::empty())
            .expect("request");
        if let Some((name, value)) = auth {
            req.headers_mut()
                .insert(name, HeaderValue::from_str(&value).expect("header"));
        }
        gw.send(req)
    };
    envelope(&get(None).await, 401, "authentication_error");
    envelope(
        &get(Some(("x-api-key", "sk-tg-nope".into()))).await,
        401,
        "authentication_error",
    );

    let a = get(Some(("authorization", format!("Bearer {key}")))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let b = &a.body;
    assert_eq!(b["id"], "vk-info");
    assert_eq!(b["team"], json!({"id": "team-t", "name": "Platform"}));
    assert_eq!(b["customer"], json!({"id": "cust-c", "name": "Acme"}));
    assert_eq!(b["expires_at"], "2100-01-01T00:00:00Z");
    assert_eq!(b["providers"], json!(["bedrock"]));
    assert_eq!(
        b["allowed_models"],
        json!([{"provider": "bedrock", "patterns": ["claude-haiku-*", "regex:claude-opus-4-[67]"]}])
    );
    assert_eq!(b["counted_by"], "this data plane");
    let budgets = b["budgets"].as_array().expect("budgets");
    assert_eq!(budgets.len(), 2, "{budgets:?}");
    assert_eq!(budgets[0]["level"], "virtual_key");
    assert_eq!(budgets[0]["level_id"], "vk-info");
    assert_eq!(budgets[0]["budget_id"], "b-month");
    assert_eq!(budgets[0]["period"], "1M");
    assert_eq!(budgets[0]["limit_usd"], 10.0);
    assert_eq!(budgets[0]["spent_usd"], 2.5);
    assert_eq!(budgets[0]["remaining_usd"], 7.5);
    assert_eq!(budgets[1]["level"], "customer");
    assert_eq!(budgets[1]["level_name"], "Acme");
    assert_eq!(budgets[1]["remaining_usd"], 47.5);
    let end = budgets[0]["window_end"].as_str().expect("window end");
    assert!(end.ends_with("-01T00:00:00Z"), "{end}");
    // Nothing secret: not the key, not its hash.
    let text = b.to_string();
    let hash = hex::encode(Sha256::digest(key));
    assert!(!text.contains(key) && !text.contains(&hash), "{text}");

    // A key without limits, team or expiry: nulls and empty lists.
    let a = get(Some(("x-api-key", GOOD.into()))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["team"], Value::Null);
    assert_eq!(a.body["expires_at"], Value::Null);
    assert_eq!(a.body["budgets"], json!([]));
    assert_eq!(a.body["providers"], json!([]));
}

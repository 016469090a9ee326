//! The Bedrock-format routes in process: [`crate::server::router`] driven with
//! `tower::ServiceExt::oneshot`, loopback stand-ins for Bedrock and the Anthropic API.
//!
//! | test | behaviour |
//! |---|---|
//! | `a_bedrock_served_stream_goes_back_as_the_same_event_stream` | path id, betas, body to Bedrock; frames event for event; usage |
//! | `a_fallback_to_anthropic_is_re_encoded_as_an_event_stream` | fallback after a throttle; SSE re-encoded; the path id reported |
//! | `unary_invoke_and_count_tokens_answer_in_bedrocks_shape` | Message JSON; `{"inputTokens"}`; betas and version headers |
//! | `refusals_and_errors_come_back_in_bedrocks_shape` | 400/404/405/429 with `x-amzn-ErrorType`; refusals are not usage |
//! | `a_mid_stream_error_is_an_exception_frame` | never `text/event-stream`; the usage record keeps the error |
//! | `inference_profiles_list_what_the_key_may_use` | list and get; 400 without a key |

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::usage::v1::UsageRecord;
use tollgate_protocol::eventstream::{Decoder, Header, Message};
use tower::ServiceExt;

use crate::server::router;
use crate::testing::{lit, network, serve};
use crate::usage::UsageSink;
use crate::{DataPlane, DataPlaneConfig};

pub(crate) const GOOD: &str = "sk-tg-bedrock-mode-key";
/// Reaches Bedrock and Anthropic, falls back to `anthropic/claude-sonnet-4-6`.
pub(crate) const RESILIENT: &str = "sk-tg-bedrock-mode-resilient";
const UPSTREAM_KEY: &str = "sk-ant-bedrock-mode-upstream";

/// What a stand-in upstream saw: path, `anthropic-beta` header, body.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) beta: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) body: Value,
}

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, path: String, headers: &HeaderMap, body: &Bytes) {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    log.lock().unwrap().push(Seen {
        path,
        beta: text("anthropic-beta"),
        version: text("anthropic-version"),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
}

/// The events both stand-ins stream (Bedrock's names its own model).
pub(crate) fn events(model: &str) -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
               "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop"}),
    ]
}

fn chunk(event: &Value) -> Bytes {
    let payload = json!({"bytes": BASE64.encode(event.to_string()), "p": "abcd"}).to_string();
    tollgate_protocol::eventstream::encode(&Message::new(
        vec![
            Header::string(":event-type", "chunk"),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        payload.into_bytes(),
    ))
    .unwrap()
}

/// A Bedrock stand-in (signatures are the e2e tests' business). `mode`: `ok`, `throttle` (429
/// `ThrottlingException`) or `midstream` (`message_start`, then a `throttlingException` frame).
pub(crate) async fn bedrock(mode: &'static str) -> (String, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let handler = move |Path((id, op)): Path<(String, String)>, headers: HeaderMap, body: Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            record(&seen, format!("/model/{id}/{op}"), &headers, &body);
            if mode == "throttle" {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("x-amzn-errortype", "ThrottlingException")],
                    r#"{"message":"Too many requests, please wait before trying again."}"#,
                )
                    .into_response();
            }
            let all = events("claude-sonnet-4-6");
            let mut out = Vec::new();
            if mode == "midstream" {
                out.extend_from_slice(&chunk(&all[0]));
                let exception = tollgate_protocol::eventstream::encode(&Message::new(
                    vec![
                        Header::string(":exception-type", "throttlingException"),
                        Header::string(":content-type", "application/json"),
                        Header::string(":message-type", "exception"),
                    ],
                    br#"{"message":"slow down"}"#.to_vec(),
                ))
                .unwrap();
                out.extend_from_slice(&exception);
            } else {
                for e in &all {
                    out.extend_from_slice(&chunk(e));
                }
            }
            (
                [(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")],
                out,
            )
                .into_response()
        }
    };
    let app = axum::Router::new().route("/model/{id}/{op}", axum::routing::post(handler));
    (serve(app).await, log)
}

/// An Anthropic API stand-in: messages (streamed as SSE with a `ping`, or whole) and
/// count_tokens.
pub(crate) async fn anthropic() -> (String, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let messages = move |headers: HeaderMap, body: Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            record(&seen, "/v1/messages".into(), &headers, &body);
            let req: Value = serde_json::from_slice(&body).unwrap();
            let model = req["model"].as_str().unwrap_or_default().to_owned();
            if req["stream"] == true {
                let mut sse = String::new();
                for (i, e) in events(&model).iter().enumerate() {
                    if i == 1 {
                        sse.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
                    }
                    sse.push_str(&format!(
                        "event: {}\ndata: {e}\n\n",
                        e["type"].as_str().unwrap()
                    ));
                }
                return ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response();
            }
            axum::Json(
                json!({"id": "msg_2", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 2}}),
            )
            .into_response()
        }
    };
    let seen = Arc::clone(&log);
    let count = move |headers: HeaderMap, body: Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            record(&seen, "/v1/messages/count_tokens".into(), &headers, &body);
            axum::Json(json!({"input_tokens": 42}))
        }
    };
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .route("/v1/messages/count_tokens", axum::routing::post(count));
    (serve(app).await, log)
}

/// Bedrock (with an alias and a named profile) and Anthropic providers; [`GOOD`] reaches only
/// Bedrock, [`RESILIENT`] both, with a fallback to Anthropic.
pub(crate) fn snapshot(bedrock_url: &str, anthropic_url: &str) -> pb::Snapshot {
    let vk = |id: &str, key: &str, providers: &[&str], fallbacks: &[&str]| pb::VirtualKey {
        id: id.into(),
        name: id.into(),
        key_sha256: Sha256::digest(key).to_vec().into(),
        providers: providers.iter().map(|p| p.to_string()).collect(),
        fallbacks: fallbacks.iter().map(|p| p.to_string()).collect(),
        active: true,
        ..Default::default()
    };
    pb::Snapshot {
        version: 1,
        providers: vec![
            pb::Provider {
                name: "bedrock".into(),
                kind: pb::ProviderKind::Bedrock as i32,
                network: network(bedrock_url),
                keys: vec![pb::ProviderKey {
                    id: "pk-bedrock".into(),
                    name: "bedrock-key".into(),
                    models: vec!["*".into()],
                    weight: 1.0,
                    aliases: [(
                        "claude-sonnet-4-6".to_owned(),
                        "global.anthropic.claude-sonnet-4-6".to_owned(),
                    )]
                    .into(),
                    bedrock: Some(pb::BedrockKeyConfig {
                        access_key: lit("AKIDBEDROCKMODETEST"),
                        secret_key: lit("bedrock-mode-test-secret"),
                        region: lit("us-east-1"),
                        ..Default::default()
                    }),
                    enabled: true,
                    ..Default::default()
                }],
            },
            pb::Provider {
                name: "anthropic".into(),
                kind: pb::ProviderKind::Anthropic as i32,
                network: network(anthropic_url),
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
        ],
        virtual_keys: vec![
            vk("vk-good", GOOD, &["bedrock"], &[]),
            vk(
                "vk-resilient",
                RESILIENT,
                &["bedrock", "anthropic"],
                &["anthropic/claude-sonnet-4-6"],
            ),
        ],
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

pub(crate) struct Gateway {
    dp: Arc<DataPlane>,
    usage: mpsc::Receiver<UsageRecord>,
}

/// A response with its body whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as event-stream messages (both CRCs checked by the decoder).
    fn frames(&self) -> Vec<Message> {
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/vnd.amazon.eventstream",
            "{self:?}"
        );
        let mut decoder = Decoder::new();
        decoder.push(&self.body);
        let mut out = Vec::new();
        while let Some(m) = decoder.next_message().expect("valid frames") {
            out.push(m);
        }
        decoder.finish().expect("no partial frame");
        out
    }

    /// The events of the `chunk` frames.
    fn chunk_events(&self) -> Vec<Value> {
        self.frames()
            .iter()
            .map(|m| {
                assert_eq!(m.header_str(":message-type"), Some("event"), "{m:?}");
                assert_eq!(m.header_str(":event-type"), Some("chunk"));
                let payload: Value = serde_json::from_slice(&m.payload).unwrap();
                serde_json::from_slice(&BASE64.decode(payload["bytes"].as_str().unwrap()).unwrap())
                    .unwrap()
            })
            .collect()
    }

    /// Checks Bedrock's error shape and returns the message.
    fn bedrock_error(&self, status: u16, error_type: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.headers["x-amzn-errortype"], error_type, "{self:?}");
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/json");
        let body = self.json();
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
        body["message"].as_str().expect("message").to_owned()
    }
}

impl Gateway {
    pub(crate) fn new(snapshot: pb::Snapshot) -> Gateway {
        let (sink, usage) = UsageSink::channel(64);
        let config = DataPlaneConfig {
            max_body_bytes: 64 * 1024,
            ..DataPlaneConfig::default()
        };
        let dp = DataPlane::new(config, sink);
        dp.runtime().apply(&snapshot).expect("a valid snapshot");
        Gateway { dp, usage }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        if let Some(key) = key {
            req.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {key}").parse().unwrap(),
            );
        }
        let resp: Response = router(Arc::clone(&self.dp))
            .oneshot(req)
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }

    pub(crate) fn usage(&mut self) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        while let Ok(r) = self.usage.try_recv() {
            out.push(r);
        }
        out
    }
}

/// A Bedrock-format body as Claude Code sends it.
fn invoke_body() -> String {
    json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64,
           "anthropic_beta": ["interleaved-thinking-2025-05-14"],
           "anthropic_version": "bedrock-2023-05-31"})
    .to_string()
}

#[tokio::test]
async fn a_bedrock_served_stream_goes_back_as_the_same_event_stream() {
    let (bedrock_url, bedrock_seen) = bedrock("ok").await;
    let (anthropic_url, _) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke-with-response-stream",
            Some(GOOD),
            &invoke_body(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.headers["x-amzn-bedrock-content-type"], "application/json");
    assert_eq!(a.headers["x-tollgate-provider"], "bedrock");
    let mut expected = events("claude-sonnet-4-6");
    // The answer names the model the client asked for.
    expected[0]["message"]["model"] = "us.anthropic.claude-sonnet-4-6".into();
    assert_eq!(a.chunk_events(), expected);

    let seen = bedrock_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].path,
        "/model/us.anthropic.claude-sonnet-4-6/invoke-with-response-stream"
    );
    assert_eq!(seen[0].body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        seen[0].body["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14"])
    );
    assert_eq!(seen[0].body["max_tokens"], 64);
    assert!(seen[0].body.get("model").is_none() && seen[0].body.get("stream").is_none());

    let usage = gw.usage();
    assert_eq!(usage.len(), 1, "{usage:?}");
    let u = &usage[0];
    assert_eq!((u.status, u.virtual_key_id.as_str()), (200, "vk-good"));
    assert_eq!(u.model_requested, "us.anthropic.claude-sonnet-4-6");
    assert!(u.stream);
    assert_eq!((u.input_tokens, u.output_tokens), (11, 7));
}

#[tokio::test]
async fn a_fallback_to_anthropic_is_re_encoded_as_an_event_stream() {
    let (bedrock_url, bedrock_seen) = bedrock("throttle").await;
    let (anthropic_url, anthropic_seen) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    // Claude Code's built-in id: no alias, and the key reaches two providers; it goes to the
    // key's one Bedrock provider.
    let path = "/bedrock/model/us.anthropic.claude-opus-5-5/invoke-with-response-stream";
    let a = gw
        .call(Method::POST, path, Some(RESILIENT), &invoke_body())
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.headers["x-tollgate-fallback-index"], "1");
    assert_eq!(a.headers["x-tollgate-provider"], "anthropic");
    let mut expected = events("claude-sonnet-4-6");
    expected.insert(1, json!({"type": "ping"}));
    expected[0]["message"]["model"] = "us.anthropic.claude-opus-5-5".into();
    assert_eq!(a.chunk_events(), expected);

    let tried = bedrock_seen.lock().unwrap().clone();
    assert_eq!(tried.len(), 1);
    assert_eq!(
        tried[0].path,
        "/model/us.anthropic.claude-opus-5-5/invoke-with-response-stream"
    );
    let served = anthropic_seen.lock().unwrap().clone();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].body["model"], "claude-sonnet-4-6");
    assert_eq!(served[0].body["stream"], true);
    assert!(served[0].body.get("anthropic_version").is_none());
    assert!(served[0].body.get("anthropic_beta").is_none());
    assert_eq!(
        served[0].beta.as_deref(),
        Some("interleaved-thinking-2025-05-14")
    );
    assert_eq!(served[0].version.as_deref(), Some("2023-06-01"));

    let usage = gw.usage();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].fallback_index, 1);
    assert_eq!(usage[0].attempts.len(), 1);
    assert_eq!(usage[0].attempts[0].status, 429);
    assert_eq!(usage[0].status, 200);
}

#[tokio::test]
async fn unary_invoke_and_count_tokens_answer_in_bedrocks_shape() {
    let (anthropic_url, seen) = anthropic().await;
    let mut gw = Gateway::new(snapshot(
        &crate::testing::dead_endpoint().await.0,
        &anthropic_url,
    ));
    // provider/model in the path, `/` sent as %2F.
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/anthropic%2Fclaude-haiku-4-5/invoke",
            Some(RESILIENT),
            &invoke_body(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    let body = a.json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Hello");
    assert_eq!(body["model"], "anthropic/claude-haiku-4-5");

    let inner = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "count me"}]});
    let count = json!({"input": {"invokeModel": {"body": BASE64.encode(inner.to_string())}}});
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/anthropic%2Fclaude-haiku-4-5/count-tokens",
            Some(RESILIENT),
            &count.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.json(), json!({"inputTokens": 42}));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].body["model"], "claude-haiku-4-5");
    assert!(seen[0].body.get("stream").is_none());
    assert_eq!(seen[1].path, "/v1/messages/count_tokens");
    assert_eq!(
        seen[1].body,
        json!({"model": "claude-haiku-4-5", "max_tokens": 1,
               "messages": [{"role": "user", "content": "count me"}]})
    );
    let usage = gw.usage();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert!(usage.iter().all(|u| u.status == 200));
}

#[tokio::test]
async fn refusals_and_errors_come_back_in_bedrocks_shape() {
    let (bedrock_url, _) = bedrock("throttle").await;
    let (anthropic_url, _) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let stream = "/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke-with-response-stream";

    // No key (Claude Code's skip-auth mode without AWS_BEARER_TOKEN_BEDROCK), a bad key.
    for key in [None, Some("sk-tg-nope")] {
        let a = gw.call(Method::POST, stream, key, &invoke_body()).await;
        let message = a.bedrock_error(400, "UnrecognizedClientException");
        assert!(message.contains("virtual key"), "{key:?}: {message}");
        assert!(a.headers.contains_key("x-amzn-requestid"), "{a:?}");
    }
    assert!(gw.usage().is_empty(), "refusals before a key are not usage");

    // A malformed model segment and a malformed body: 400 ValidationException, usage.
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/us.anthropic%zz/invoke",
            Some(GOOD),
            &invoke_body(),
        )
        .await;
    let message = a.bedrock_error(400, "ValidationException");
    assert!(message.contains("model id in the path"), "{message}");
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke",
            Some(GOOD),
            r#"{"anthropic_beta": "x"}"#,
        )
        .await;
    let message = a.bedrock_error(400, "ValidationException");
    assert!(message.contains("anthropic_beta"), "{message}");
    assert_eq!(gw.usage().len(), 2);

    // Bedrock throttles and nothing is left to try: Bedrock's own 429.
    let a = gw
        .call(Method::POST, stream, Some(GOOD), &invoke_body())
        .await;
    let message = a.bedrock_error(429, "ThrottlingException");
    assert!(message.contains("Too many requests"), "{message}");

    // A bare Claude name with no alias (the key reaches only Bedrock): 404 naming the setting.
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/claude-opus-5-5/invoke",
            Some(GOOD),
            &invoke_body(),
        )
        .await;
    let message = a.bedrock_error(404, "ResourceNotFoundException");
    assert!(
        message.contains("ANTHROPIC_DEFAULT_OPUS_MODEL"),
        "{message}"
    );

    // Other methods and paths.
    let a = gw.call(Method::GET, stream, Some(GOOD), "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{a:?}");
    assert_eq!(a.headers["x-amzn-errortype"], "ValidationException");
    let a = gw
        .call(Method::POST, "/bedrock/v1/messages", Some(GOOD), "{}")
        .await;
    let message = a.bedrock_error(404, "ResourceNotFoundException");
    assert!(message.contains("ANTHROPIC_BEDROCK_BASE_URL"), "{message}");
}

#[tokio::test]
async fn a_mid_stream_error_is_an_exception_frame() {
    let (bedrock_url, _) = bedrock("midstream").await;
    let (anthropic_url, _) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let a = gw
        .call(
            Method::POST,
            "/bedrock/model/claude-sonnet-4-6/invoke-with-response-stream",
            Some(GOOD),
            &invoke_body(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let frames = a.frames();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0].header_str(":event-type"), Some("chunk"));
    assert_eq!(frames[1].header_str(":message-type"), Some("exception"));
    assert_eq!(
        frames[1].header_str(":exception-type"),
        Some("throttlingException")
    );
    assert_eq!(&frames[1].payload[..], br#"{"message":"slow down"}"#);
    let usage = gw.usage();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].status, usage[0].error_class.as_str()),
        (429, "upstream_stream_exception")
    );
}

#[tokio::test]
async fn inference_profiles_list_what_the_key_may_use() {
    let (anthropic_url, _) = anthropic().await;
    let dead = crate::testing::dead_endpoint().await.0;
    let mut gw = Gateway::new(snapshot(&dead, &anthropic_url));
    let list = "/bedrock/inference-profiles?type=SYSTEM_DEFINED";

    // Claude Code in skip-auth mode asks without a credential.
    let a = gw.call(Method::GET, list, None, "").await;
    a.bedrock_error(400, "UnrecognizedClientException");

    for key in [GOOD, RESILIENT] {
        let a = gw.call(Method::GET, list, Some(key), "").await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        let summaries = a.json()["inferenceProfileSummaries"].clone();
        assert_eq!(
            summaries,
            json!([{"inferenceProfileId": "global.anthropic.claude-sonnet-4-6",
                    "inferenceProfileName": "global.anthropic.claude-sonnet-4-6",
                    "description": "served through the Tollgate gateway",
                    "status": "ACTIVE", "type": "SYSTEM_DEFINED", "models": []}]),
            "{key}"
        );
    }
    let a = gw
        .call(
            Method::GET,
            "/bedrock/inference-profiles/global.anthropic.claude-sonnet-4-6",
            Some(GOOD),
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.json()["status"], "ACTIVE");
    let a = gw
        .call(
            Method::GET,
            "/bedrock/inference-profiles/arn:aws:bedrock:us-east-1:1:application-inference-profile%2Fx",
            Some(GOOD),
            "",
        )
        .await;
    a.bedrock_error(404, "ResourceNotFoundException");
    assert!(gw.usage().is_empty(), "look-ups are not usage");
}

//! Probes in process: a data plane given snapshots directly, an Anthropic stand-in on loopback
//! that checks the API key and records what it was sent. Bedrock's SigV4 path is the e2e test's
//! (`tests/tests/e2e_key_test.rs`, with the strict double).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tollgate_proto::config::v1 as pb;

use super::*;
use crate::testing::{dead_endpoint, lit, network, serve, snapshot};
use crate::usage::UsageSink;
use crate::{DataPlane, DataPlaneConfig};

const GOOD_KEY: &str = "sk-ant-probe-good-key";
const BAD_KEY: &str = "sk-ant-probe-revoked-key";

/// What the stand-in received: (api key, body) of every call.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// An Anthropic Messages stand-in: 200 with usage for [`GOOD_KEY`], else Anthropic's 401
/// (which, like some providers do, echoes the key it was given).
async fn anthropic_stand_in() -> (String, Seen) {
    async fn messages(
        State(seen): State<Seen>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        seen.lock().unwrap().push((key.clone(), body));
        if key == GOOD_KEY {
            (
                StatusCode::OK,
                Json(json!({
                    "id": "msg_probe", "type": "message", "role": "assistant",
                    "content": [{"type": "text", "text": "pong"}],
                    "model": "claude-haiku-4-5", "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 8, "output_tokens": 1}
                })),
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "type": "error",
                    "error": {"type": "authentication_error", "message": format!("invalid x-api-key {key}")}
                })),
            )
        }
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/messages", post(messages))
        .with_state(seen.clone());
    (serve(app).await, seen)
}

fn anthropic_key(id: &str, value: &str) -> pb::ProviderKey {
    pb::ProviderKey {
        id: id.into(),
        name: format!("{id}-name"),
        models: vec!["claude-haiku".into()],
        weight: 1.0,
        aliases: [("claude-haiku".to_owned(), "claude-haiku-4-5".to_owned())].into(),
        value: lit(value),
        enabled: true,
        ..Default::default()
    }
}

/// Version `version`: an Anthropic provider at `base_url` with a good and a revoked key.
fn config(version: u64, base_url: &str) -> pb::Snapshot {
    let mut s = snapshot(version);
    s.providers.push(pb::Provider {
        name: "anthropic".into(),
        kind: pb::ProviderKind::Anthropic as i32,
        network: network(base_url),
        keys: vec![
            anthropic_key("good", GOOD_KEY),
            anthropic_key("bad", BAD_KEY),
        ],
    });
    s
}

fn data_plane(snapshot: &pb::Snapshot) -> Arc<DataPlane> {
    let dp = DataPlane::new(DataPlaneConfig::default(), UsageSink::log_only());
    dp.runtime().apply(snapshot).expect("valid snapshot");
    dp
}

fn request(key_id: &str, model: &str, version: u64) -> ProbeRequest {
    ProbeRequest {
        probe_id: 7,
        provider: "anthropic".into(),
        key_id: key_id.into(),
        model: model.into(),
        config_version: version,
    }
}

#[tokio::test]
async fn a_good_key_answers_ok_with_the_minimal_request_through_its_alias() {
    let (url, seen) = anthropic_stand_in().await;
    let dp = data_plane(&config(3, &url));
    let result = dp.probe(&request("good", "claude-haiku", 3)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.probe_id, 7);
    assert_eq!(result.status, 200);
    assert_eq!(result.model, "claude-haiku-4-5");
    assert_eq!(result.config_version, 3);
    assert_eq!(
        (result.error_class.as_str(), result.error_message.as_str()),
        ("", "")
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "exactly one upstream call");
    let (key, body) = &seen[0];
    assert_eq!(key, GOOD_KEY);
    assert_eq!(
        *body,
        json!({"model": "claude-haiku-4-5", "max_tokens": 1,
               "messages": [{"role": "user", "content": PROMPT}]})
    );
}

#[tokio::test]
async fn a_rejected_key_is_the_providers_status_class_and_message_without_the_secret() {
    let (url, _) = anthropic_stand_in().await;
    let dp = data_plane(&config(1, &url));
    let result = dp.probe(&request("bad", "claude-haiku", 1)).await;
    assert!(!result.ok);
    assert_eq!(result.status, 401);
    assert_eq!(result.error_class, "authentication_error");
    assert_eq!(result.error_message, "invalid x-api-key <redacted>");
    assert!(!format!("{result:?}").contains(BAD_KEY));
}

#[tokio::test]
async fn an_ejected_key_is_still_probed_and_the_probe_does_not_touch_its_health() {
    use crate::health::{State, Verdict, now_ms};
    let (url, seen) = anthropic_stand_in().await;
    let dp = data_plane(&config(1, &url));
    let rt = dp.runtime().load().unwrap();
    let health = &rt.provider("anthropic").unwrap().keys[0].health;
    while !matches!(health.state(now_ms()), State::Ejected { .. }) {
        health.record(Verdict::Failure, now_ms());
    }
    let ejections = health.ejections_total();
    let result = dp.probe(&request("good", "claude-haiku", 1)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the ejected key was called");
    assert!(
        matches!(health.state(now_ms()), State::Ejected { .. }),
        "a successful probe does not bring the key back"
    );
    assert_eq!(health.ejections_total(), ejections);
}

#[tokio::test]
async fn no_answer_is_status_zero_with_the_gateways_class_and_no_detail() {
    let (dead, _addr) = dead_endpoint().await;
    let dp = data_plane(&config(1, &dead));
    let result = dp.probe(&request("good", "claude-haiku", 1)).await;
    assert!(!result.ok);
    assert_eq!(result.status, 0);
    assert_eq!(result.error_class, crate::upstream::UNREACHABLE_CLASS);
    assert!(!result.error_message.is_empty());
    assert!(
        !result.error_message.contains("127.0.0.1"),
        "no upstream address: {}",
        result.error_message
    );
}

#[tokio::test]
async fn a_key_missing_from_the_served_config_is_key_not_loaded() {
    let dp = data_plane(&config(4, "http://127.0.0.1:9"));
    let result = dp.probe(&request("gone", "claude-haiku", 4)).await;
    assert!(!result.ok);
    assert_eq!(result.status, 0);
    assert_eq!(result.error_class, "key_not_loaded");
    assert_eq!(result.config_version, 4);
    assert!(
        result.error_message.contains("gone"),
        "{}",
        result.error_message
    );
}

#[tokio::test]
async fn an_older_config_is_waited_for_then_answered_config_behind() {
    let dp = data_plane(&config(4, "http://127.0.0.1:9"));
    let started = Instant::now();
    let wait = Duration::from_millis(300);
    let result = dp
        .probe_waiting(&request("gone", "claude-haiku", 5), wait)
        .await;
    assert_eq!(result.error_class, "config_behind");
    assert_eq!(result.config_version, 4);
    assert!(started.elapsed() >= wait);
    assert!(
        result.error_message.contains("version 5"),
        "{}",
        result.error_message
    );
}

#[tokio::test]
async fn a_probe_waits_for_the_version_that_holds_its_key() {
    let (url, _) = anthropic_stand_in().await;
    let mut old = config(1, &url);
    old.providers.pop();
    let dp = data_plane(&old);
    let probing = {
        let dp = dp.clone();
        tokio::spawn(async move { dp.probe(&request("good", "claude-haiku", 2)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    dp.runtime().apply(&config(2, &url)).unwrap();
    let result = probing.await.unwrap();
    assert!(result.ok, "{result:?}");
    assert_eq!(result.config_version, 2);
}

#[test]
fn provider_error_shapes_give_their_type_and_message() {
    let mut bedrock = HeaderMap::new();
    bedrock.insert(
        "x-amzn-errortype",
        "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
            .parse()
            .unwrap(),
    );
    let cases: Vec<(u16, HeaderMap, &str, (&str, &str))> = vec![
        (
            403,
            bedrock,
            r#"{"message":"The request signature we calculated does not match"}"#,
            (
                "InvalidSignatureException",
                "The request signature we calculated does not match",
            ),
        ),
        (
            401,
            HeaderMap::new(),
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            ("authentication_error", "invalid x-api-key"),
        ),
        (
            401,
            HeaderMap::new(),
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            ("invalid_request_error", "Incorrect API key provided"),
        ),
        (
            403,
            HeaderMap::new(),
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
            ("PERMISSION_DENIED", "Permission denied"),
        ),
        (
            502,
            HeaderMap::new(),
            "<html>bad gateway</html>",
            ("http_502", "<html>bad gateway</html>"),
        ),
        (
            500,
            HeaderMap::new(),
            "",
            (
                "http_500",
                "the provider answered HTTP 500 without a message",
            ),
        ),
    ];
    for (status, headers, body, (class, message)) in cases {
        let got = upstream_error(status, &headers, body.as_bytes());
        assert_eq!((got.0.as_str(), got.1.as_str()), (class, message), "{body}");
    }
}

#[test]
fn results_are_cleaned_and_cut() {
    let mut result = ProbeResult::default();
    fail(
        &mut result,
        "x",
        format!("line\nnext\ttab\u{1b}[31m\u{202e}rtl {}", "é".repeat(2000)),
    );
    assert!(
        result.error_message.starts_with("line\nnext\ttab[31mrtl é"),
        "{}",
        result.error_message
    );
    assert!(result.error_message.len() <= MAX_MESSAGE + '…'.len_utf8());
    assert!(result.error_message.ends_with('…'));
    assert_eq!(
        scrub("key sk-123456789 bad", Some("sk-123456789")),
        "key <redacted> bad"
    );
    assert_eq!(
        scrub("a b", Some("a")),
        "a b",
        "short values are not scrubbed"
    );
    // A signature mismatch echoes the canonical request: a temporary credential's session
    // token goes, and credential shapes are masked.
    let echoed = "The Canonical String for this request should have been\n'POST\n/model/x/invoke\n\nhost:bedrock-runtime.us-east-1.amazonaws.com\nx-amz-date:20260101T000000Z\nX-Amz-Security-Token:IQoJb3JpZ2luX2VjEXAMPLETOKENVALUE\n\nhost;x-amz-date;x-amz-security-token' for AKIAIOSFODNN7EXAMPLE";
    let out = scrub(echoed, None);
    assert!(!out.contains("IQoJb3JpZ2luX2VjEXAMPLETOKENVALUE"), "{out}");
    assert!(out.contains("X-Amz-Security-Token:<redacted>"), "{out}");
    assert!(!out.contains("AKIAIOSFODNN7EXAMPLE"), "{out}");
    assert!(
        out.contains("host;x-amz-date;x-amz-security-token"),
        "{out}"
    );
}

//! The Bedrock double over real HTTP: signatures, routing, body rules, scripted behaviour,
//! event-stream framing and the request log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate_protocol::eventstream::{Decoder, Message};
use tollgate_tests::bedrock_double::script::{DEFAULT_REPLY, THROTTLE_MESSAGE};
use tollgate_tests::sigv4::{self, Credentials};
use tollgate_tests::{
    BedrockDouble, BedrockDoubleConfig, EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY,
};

const MODEL_PATH: &str = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0";

fn example_creds() -> Credentials {
    Credentials::new(EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY)
}

fn start() -> BedrockDouble {
    BedrockDouble::start(
        BedrockDoubleConfig::new().with_key(EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY),
    )
    .expect("double starts")
}

fn body_with(text: &str) -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    })
}

/// Headers for a request signed like an AWS SDK would (host with port, content-type, accept).
fn signed_headers(
    double: &BedrockDouble,
    path: &str,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    time: OffsetDateTime,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        HeaderValue::from_str(&double.addr().to_string()).expect("host"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    sigv4::sign("POST", path, &mut headers, body, creds, region, time);
    headers
}

async fn send_raw(
    double: &BedrockDouble,
    path: &str,
    headers: HeaderMap,
    body: Vec<u8>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", double.base_url()))
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("request reaches the double")
}

async fn send(double: &BedrockDouble, path: &str, body: &Value) -> reqwest::Response {
    let bytes = serde_json::to_vec(body).expect("json");
    let headers = signed_headers(
        double,
        path,
        &bytes,
        &example_creds(),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    send_raw(double, path, headers, bytes).await
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn expect_error(resp: reqwest::Response, status: u16, error_type: &str, message_part: &str) {
    assert_eq!(resp.status().as_u16(), status, "status");
    let et = header(&resp, "x-amzn-errortype").to_owned();
    assert!(
        et.starts_with(&format!("{error_type}:http://internal.amazon.com/coral/")),
        "x-amzn-ErrorType {et:?} should name {error_type}"
    );
    assert!(
        !header(&resp, "x-amzn-requestid").is_empty(),
        "x-amzn-RequestId"
    );
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: Value = json_of(resp).await;
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "message {message:?} should contain {message_part:?}"
    );
}

async fn json_of(resp: reqwest::Response) -> Value {
    let bytes = resp.bytes().await.expect("body");
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

struct StreamRead {
    messages: Vec<Message>,
    /// Arrival time of each transport chunk, relative to the response headers.
    chunk_times: Vec<Duration>,
    transport_error: bool,
    decoder_finished_clean: bool,
}

async fn read_stream(resp: reqwest::Response) -> StreamRead {
    let started = Instant::now();
    let mut decoder = Decoder::new();
    let mut messages = Vec::new();
    let mut chunk_times = Vec::new();
    let mut transport_error = false;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                chunk_times.push(started.elapsed());
                decoder.push(&bytes);
                while let Some(m) = decoder.next_message().expect("valid event-stream framing") {
                    messages.push(m);
                }
            }
            Err(_) => {
                transport_error = true;
                break;
            }
        }
    }
    StreamRead {
        messages,
        chunk_times,
        transport_error,
        decoder_finished_clean: decoder.finish().is_ok(),
    }
}

/// The Anthropic event inside a Bedrock chunk, checking the chunk's headers and payload shape.
fn chunk_event(m: &Message) -> Value {
    assert_eq!(m.header_str(":message-type"), Some("event"));
    assert_eq!(m.header_str(":event-type"), Some("chunk"));
    assert_eq!(m.header_str(":content-type"), Some("application/json"));
    let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [":event-type", ":content-type", ":message-type"],
        "Bedrock header order"
    );
    let payload: Value = serde_json::from_slice(&m.payload).expect("chunk payload is JSON");
    assert!(payload["p"].is_string(), "padding field present");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload["bytes"].as_str().expect("bytes field"))
        .expect("bytes is base64");
    serde_json::from_slice(&bytes).expect("one Anthropic event JSON per chunk")
}

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

// === Signatures and authentication ===

#[tokio::test]
async fn replays_botocore_vectors_byte_for_byte() {
    // The exact requests botocore signed (host, date, signature), replayed with the double's
    // clock set to the vector time: the double must accept the signature of each.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sigv4-bedrock");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("vectors") {
        let v: Value =
            serde_json::from_slice(&std::fs::read(entry.expect("entry").path()).expect("read"))
                .expect("json");
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut config = BedrockDoubleConfig::new()
            .with_clock(sigv4::parse_amz_date(&s("/time")).expect("time"));
        config = match v
            .pointer("/credentials/session_token")
            .and_then(Value::as_str)
        {
            Some(token) => config.with_temporary_key(
                &s("/credentials/access_key_id"),
                &s("/credentials/secret_access_key"),
                token,
            ),
            None => config.with_key(
                &s("/credentials/access_key_id"),
                &s("/credentials/secret_access_key"),
            ),
        };
        let double = BedrockDouble::start(config).expect("start");
        let mut headers = HeaderMap::new();
        for (k, val) in v["request"]["headers"].as_object().expect("headers") {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                val.as_str().expect("v").parse().expect("v"),
            );
        }
        headers.insert("host", s("/request/host").parse().expect("host"));
        headers.insert(
            "x-amz-date",
            s("/expected/x-amz-date").parse().expect("date"),
        );
        headers.insert(
            "authorization",
            s("/expected/authorization").parse().expect("auth"),
        );
        if let Some(t) = v
            .pointer("/expected/x-amz-security-token")
            .and_then(Value::as_str)
        {
            headers.insert("x-amz-security-token", t.parse().expect("token"));
        }
        let path = s("/request/wire_path");
        let resp = send_raw(&double, &path, headers, s("/request/body").into_bytes()).await;
        let status = resp.status().as_u16();
        let recorded = double.requests().pop().expect("recorded");
        let name = s("/name");
        assert_eq!(
            recorded.access_key_id.as_deref(),
            Some(EXAMPLE_ACCESS_KEY_ID),
            "{name}: signature accepted"
        );
        assert_eq!(recorded.region.as_deref(), Some(s("/region").as_str()));
        match path.rsplit('/').next() {
            Some("invoke" | "invoke-with-response-stream") => assert_eq!(status, 200, "{name}"),
            // The count-tokens vector carries a bare invoke body (not the envelope): rejected
            // by validation, after authentication.
            Some("count-tokens") => {
                assert_eq!(status, 400, "{name}");
                assert_eq!(
                    recorded.verdict.error_type.as_deref(),
                    Some("ValidationException")
                );
            }
            // The converse vector carries an InvokeModel body: not a Converse body.
            _ => {
                assert_eq!(status, 400, "{name}");
                assert_eq!(
                    recorded.verdict.error_type.as_deref(),
                    Some("ValidationException"),
                    "{name}"
                );
                assert_eq!(recorded.operation.as_deref(), Some("Converse"), "{name}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 7);
}

#[tokio::test]
async fn accepts_a_fresh_signature_and_rejects_a_wrong_secret() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    let resp = send(&double, &path, &body_with("hi")).await;
    assert_eq!(resp.status(), 200);

    let bytes = serde_json::to_vec(&body_with("hi")).expect("json");
    let wrong = Credentials::new(EXAMPLE_ACCESS_KEY_ID, "wrong-secret");
    let headers = signed_headers(
        &double,
        &path,
        &bytes,
        &wrong,
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    let resp = send_raw(&double, &path, headers, bytes).await;
    expect_error(
        resp,
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match",
    )
    .await;
}

#[tokio::test]
async fn rejects_tampering_after_signing() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    let bytes = serde_json::to_vec(&body_with("hi")).expect("json");
    let headers = signed_headers(
        &double,
        &path,
        &bytes,
        &example_creds(),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );

    let tampered = serde_json::to_vec(&body_with("ho")).expect("json");
    expect_error(
        send_raw(&double, &path, headers.clone(), tampered).await,
        403,
        "InvalidSignatureException",
        "does not match",
    )
    .await;

    // Same model, `:` literal on the wire instead of the signed `%3A`.
    let literal = path.replace("%3A", ":");
    expect_error(
        send_raw(&double, &literal, headers.clone(), bytes.clone()).await,
        403,
        "InvalidSignatureException",
        "does not match",
    )
    .await;

    // Host signed without the port (a known client bug) does not verify on a non-default port.
    let mut no_port = HeaderMap::new();
    no_port.insert("host", HeaderValue::from_static("127.0.0.1"));
    no_port.insert("content-type", HeaderValue::from_static("application/json"));
    sigv4::sign(
        "POST",
        &path,
        &mut no_port,
        &bytes,
        &example_creds(),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    no_port.remove("host"); // the client then sends the real host:port
    expect_error(
        send_raw(&double, &path, no_port, bytes.clone()).await,
        403,
        "InvalidSignatureException",
        "does not match",
    )
    .await;

    // x-amz-content-sha256 signed for the original body, body swapped.
    let mut with_hash = HeaderMap::new();
    with_hash.insert("host", double.addr().to_string().parse().expect("host"));
    with_hash.insert("content-type", HeaderValue::from_static("application/json"));
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    with_hash.insert("x-amz-content-sha256", hash.parse().expect("hash"));
    sigv4::sign(
        "POST",
        &path,
        &mut with_hash,
        &bytes,
        &example_creds(),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    assert_eq!(
        send_raw(&double, &path, with_hash.clone(), bytes.clone())
            .await
            .status(),
        200
    );
    let swapped = serde_json::to_vec(&body_with("something else")).expect("json");
    expect_error(
        send_raw(&double, &path, with_hash, swapped).await,
        403,
        "InvalidSignatureException",
        "header does not match what was computed",
    )
    .await;
}

#[tokio::test]
async fn authentication_failures_have_bedrock_shapes() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    let bytes = serde_json::to_vec(&body_with("hi")).expect("json");

    let unknown = Credentials::new("AKIDUNKNOWN", EXAMPLE_SECRET_ACCESS_KEY);
    let h = signed_headers(
        &double,
        &path,
        &bytes,
        &unknown,
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    expect_error(
        send_raw(&double, &path, h, bytes.clone()).await,
        403,
        "UnrecognizedClientException",
        "security token included in the request is invalid",
    )
    .await;

    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    expect_error(
        send_raw(&double, &path, h.clone(), bytes.clone()).await,
        403,
        "MissingAuthenticationTokenException",
        "Authorization header is missing",
    )
    .await;

    h.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/bedrock/aws4_request",
        ),
    );
    h.insert("x-amz-date", HeaderValue::from_static("20261124T123045Z"));
    expect_error(
        send_raw(&double, &path, h, bytes.clone()).await,
        400,
        "IncompleteSignatureException",
        "requires 'Signature' parameter",
    )
    .await;

    let stale = OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let h = signed_headers(&double, &path, &bytes, &example_creds(), "us-east-1", stale);
    expect_error(
        send_raw(&double, &path, h, bytes.clone()).await,
        403,
        "InvalidSignatureException",
        "Signature expired",
    )
    .await;

    let auth_errors: Vec<_> = double
        .requests()
        .iter()
        .map(|r| r.verdict.error_type.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        auth_errors,
        [
            "UnrecognizedClientException",
            "MissingAuthenticationTokenException",
            "IncompleteSignatureException",
            "InvalidSignatureException"
        ]
    );
}

#[tokio::test]
async fn session_tokens_regions_and_api_keys() {
    let double = BedrockDouble::start(
        BedrockDoubleConfig::new()
            .with_temporary_key("ASIATEMP", "tempsecret", "the-session-token")
            .with_region("eu-west-1")
            .with_api_key("ABSKexamplekey"),
    )
    .expect("start");
    let path = "/model/eu.anthropic.claude-haiku-4-5/invoke";
    let bytes = serde_json::to_vec(&body_with("hi")).expect("json");
    let temp = Credentials::new("ASIATEMP", "tempsecret").with_session_token("the-session-token");

    let h = signed_headers(
        &double,
        path,
        &bytes,
        &temp,
        "eu-west-1",
        OffsetDateTime::now_utc(),
    );
    assert!(h.contains_key("x-amz-security-token"));
    assert_eq!(
        send_raw(&double, path, h, bytes.clone()).await.status(),
        200
    );

    let no_token = Credentials::new("ASIATEMP", "tempsecret");
    let h = signed_headers(
        &double,
        path,
        &bytes,
        &no_token,
        "eu-west-1",
        OffsetDateTime::now_utc(),
    );
    expect_error(
        send_raw(&double, path, h, bytes.clone()).await,
        403,
        "UnrecognizedClientException",
        "invalid",
    )
    .await;

    let h = signed_headers(
        &double,
        path,
        &bytes,
        &temp,
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    expect_error(
        send_raw(&double, path, h, bytes.clone()).await,
        403,
        "InvalidSignatureException",
        "Credential should be scoped to a valid region",
    )
    .await;

    let mut bearer = HeaderMap::new();
    bearer.insert("content-type", HeaderValue::from_static("application/json"));
    bearer.insert(
        "authorization",
        HeaderValue::from_static("Bearer ABSKexamplekey"),
    );
    assert_eq!(
        send_raw(&double, path, bearer.clone(), bytes.clone())
            .await
            .status(),
        200
    );
    bearer.insert(
        "authorization",
        HeaderValue::from_static("Bearer ABSKother"),
    );
    assert_eq!(send_raw(&double, path, bearer, bytes).await.status(), 403);
}

#[tokio::test]
async fn key_rotation_at_runtime() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    assert_eq!(send(&double, &path, &body_with("hi")).await.status(), 200);
    double.remove_credentials(EXAMPLE_ACCESS_KEY_ID);
    expect_error(
        send(&double, &path, &body_with("hi")).await,
        403,
        "UnrecognizedClientException",
        "invalid",
    )
    .await;
    double.set_credentials(example_creds());
    assert_eq!(send(&double, &path, &body_with("hi")).await.status(), 200);
}

// === Routing and model ids ===

#[tokio::test]
async fn model_ids_are_one_percent_decoded_segment() {
    let double = start();
    let arn_path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6/invoke";
    assert_eq!(
        send(&double, arn_path, &body_with("hi")).await.status(),
        200
    );
    let literal_colon = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke";
    assert_eq!(
        send(&double, literal_colon, &body_with("hi"))
            .await
            .status(),
        200
    );
    let foundation = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke";
    assert_eq!(
        send(&double, foundation, &body_with("hi")).await.status(),
        200
    );

    let recorded = double.requests();
    assert_eq!(recorded[0].path, arn_path, "raw path recorded as received");
    assert_eq!(
        recorded[0].model_id.as_deref(),
        Some("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6")
    );
    assert_eq!(
        recorded[1].model_id.as_deref(),
        Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    );
    assert_eq!(recorded[2].operation.as_deref(), Some("InvokeModel"));

    // An unencoded `/` in the ARN splits the segment: no such operation.
    let split = "/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6/invoke";
    expect_error(
        send(&double, split, &body_with("hi")).await,
        404,
        "UnknownOperationException",
        "",
    )
    .await;
    for bad in [
        "/model/amazon.titan-text-express-v1/invoke",
        "/model/claude-sonnet-4-5/invoke",
        "/model/xx.anthropic.claude-sonnet-4-6/invoke",
    ] {
        expect_error(
            send(&double, bad, &body_with("hi")).await,
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
        )
        .await;
    }
    // Converse exists, but an InvokeModel body is not a Converse body.
    expect_error(
        send(
            &double,
            &format!("{MODEL_PATH}/converse-stream"),
            &body_with("hi"),
        )
        .await,
        400,
        "ValidationException",
        "extraneous key [anthropic_version] is not permitted",
    )
    .await;
    expect_error(
        send(
            &double,
            &format!("{MODEL_PATH}/converse-nope"),
            &body_with("hi"),
        )
        .await,
        404,
        "UnknownOperationException",
        "",
    )
    .await;
}

// === Body rules ===

#[tokio::test]
async fn body_rules_match_bedrock() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    let mut with_model = body_with("hi");
    with_model["model"] = json!("claude-sonnet-4-5");
    expect_error(
        send(&double, &path, &with_model).await,
        400,
        "ValidationException",
        "model: Extra inputs are not permitted",
    )
    .await;
    let mut with_stream = body_with("hi");
    with_stream["stream"] = json!(true);
    expect_error(
        send(&double, &path, &with_stream).await,
        400,
        "ValidationException",
        "stream: Extra inputs are not permitted",
    )
    .await;
    let mut bad_beta = body_with("hi");
    bad_beta["anthropic_beta"] = json!([
        "interleaved-thinking-2025-05-14",
        "prompt-caching-2024-07-31"
    ]);
    expect_error(
        send(&double, &path, &bad_beta).await,
        400,
        "ValidationException",
        "invalid beta flag",
    )
    .await;
    let mut good_beta = body_with("hi");
    good_beta["anthropic_beta"] = json!([
        "interleaved-thinking-2025-05-14",
        "context-1m-2025-08-07",
        "effort-2025-11-24"
    ]);
    assert_eq!(send(&double, &path, &good_beta).await.status(), 200);
    let mut version = body_with("hi");
    version["anthropic_version"] = json!("2023-06-01");
    expect_error(
        send(&double, &path, &version).await,
        400,
        "ValidationException",
        "anthropic_version",
    )
    .await;
    let mut no_max = body_with("hi");
    no_max.as_object_mut().expect("object").remove("max_tokens");
    expect_error(
        send(&double, &path, &no_max).await,
        400,
        "ValidationException",
        "max_tokens: Field required",
    )
    .await;
    expect_error(
        send(&double, &path, &json!([1, 2])).await,
        400,
        "ValidationException",
        "JSONObject",
    )
    .await;

    // Content-Type must be JSON.
    let bytes = serde_json::to_vec(&body_with("hi")).expect("json");
    let mut h = HeaderMap::new();
    h.insert("host", double.addr().to_string().parse().expect("host"));
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    sigv4::sign(
        "POST",
        &path,
        &mut h,
        &bytes,
        &example_creds(),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    expect_error(
        send_raw(&double, &path, h, bytes).await,
        400,
        "ValidationException",
        "content type",
    )
    .await;

    // The gateway's rejected bodies are recorded with the verdict, for assertions.
    let first = &double.requests()[0];
    assert_eq!(first.verdict.status, 400);
    assert_eq!(
        first.body.as_ref().and_then(|b| b.get("model")),
        Some(&json!("claude-sonnet-4-5"))
    );
}

#[tokio::test]
async fn bodies_over_20_mb_are_rejected() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    let big = "x".repeat(20 * 1024 * 1024 + 1);
    let resp = send(&double, &path, &body_with(&big)).await;
    expect_error(resp, 400, "ValidationException", "exceeds the limit").await;
}

// === Responses ===

#[tokio::test]
async fn invoke_returns_an_anthropic_message_with_bedrock_headers() {
    let double = start();
    let mut body = body_with("12345678");
    body["system"] = json!("1234");
    let resp = send(&double, &format!("{MODEL_PATH}/invoke"), &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-amzn-bedrock-input-token-count"), "4"); // 12 chars / 4 + 1
    let output_tokens = header(&resp, "x-amzn-bedrock-output-token-count").to_owned();
    assert!(
        header(&resp, "x-amzn-bedrock-invocation-latency")
            .parse::<u64>()
            .is_ok()
    );
    assert!(!header(&resp, "x-amzn-requestid").is_empty());
    let message: Value = json_of(resp).await;
    assert!(
        message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_bdrk_"))
    );
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": DEFAULT_REPLY}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"]["input_tokens"], 4);
    assert_eq!(message["usage"]["output_tokens"].to_string(), output_tokens);
}

#[tokio::test]
async fn scripted_tool_and_thinking_replies() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke");
    let message: Value =
        json_of(send(&double, &path, &body_with("read it [double:tool]")).await).await;
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["content"][0]["type"], "tool_use");
    assert_eq!(message["content"][0]["name"], "Read");
    assert_eq!(
        message["content"][0]["input"],
        json!({"file_path": "/tmp/x"})
    );
    assert!(
        message["content"][0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_bdrk_"))
    );

    // A follow-up turn holding only the tool_result has no trigger: plain text again.
    let mut follow_up = body_with("read it [double:tool]");
    follow_up["messages"] = json!([
        {"role": "user", "content": "read it [double:tool]"},
        {"role": "assistant", "content": [message["content"][0].clone()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message["content"][0]["id"], "content": "data"}]},
    ]);
    let reply: Value = json_of(send(&double, &path, &follow_up).await).await;
    assert_eq!(reply["content"][0]["text"], DEFAULT_REPLY);

    let mut thinking = body_with("[double:thinking]");
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let message: Value = json_of(send(&double, &path, &thinking).await).await;
    assert_eq!(message["content"][0]["type"], "thinking");
    assert!(
        message["content"][0]["signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(message["content"][1]["text"], DEFAULT_REPLY);
    // Without `thinking` in the request there is no thinking block.
    let message: Value = json_of(send(&double, &path, &body_with("[double:thinking]")).await).await;
    assert_eq!(message["content"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn scripted_http_errors() {
    let double = start();
    for path in [
        format!("{MODEL_PATH}/invoke"),
        format!("{MODEL_PATH}/invoke-with-response-stream"),
    ] {
        expect_error(
            send(&double, &path, &body_with("[double:throttle]")).await,
            429,
            "ThrottlingException",
            THROTTLE_MESSAGE,
        )
        .await;
        expect_error(
            send(&double, &path, &body_with("[double:validation]")).await,
            400,
            "ValidationException",
            "",
        )
        .await;
        expect_error(
            send(&double, &path, &body_with("[double:unavailable]")).await,
            503,
            "ServiceUnavailableException",
            "",
        )
        .await;
        expect_error(
            send(
                &double,
                &path,
                &body_with("[double:error:ModelTimeoutException]"),
            )
            .await,
            408,
            "ModelTimeoutException",
            "",
        )
        .await;
    }
}

#[tokio::test]
async fn hang_never_answers() {
    let double = start();
    let bytes = serde_json::to_vec(&body_with("[double:hang]")).expect("json");
    let path = format!("{MODEL_PATH}/invoke");
    let headers = signed_headers(
        &double,
        &path,
        &bytes,
        &example_creds(),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    let result = reqwest::Client::new()
        .post(format!("{}{path}", double.base_url()))
        .headers(headers)
        .body(bytes)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        result.is_err_and(|e| e.is_timeout()),
        "hang must time out the client"
    );
    assert_eq!(
        double.requests()[0].verdict.scenario.as_deref(),
        Some("hang")
    );
}

// === Streaming ===

#[tokio::test]
async fn stream_is_real_event_stream_from_message_start_to_message_stop() {
    let double = start();
    let resp = send(
        &double,
        &format!("{MODEL_PATH}/invoke-with-response-stream"),
        &body_with("hi"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        "application/vnd.amazon.eventstream"
    );
    assert_eq!(
        header(&resp, "x-amzn-bedrock-content-type"),
        "application/json"
    );
    let read = read_stream(resp).await;
    assert!(!read.transport_error && read.decoder_finished_clean);
    let events: Vec<Value> = read.messages.iter().map(chunk_event).collect();
    let types = event_types(&events);
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert!(
        !types.contains(&"ping".to_owned()),
        "Bedrock sends no pings"
    );
    let text: String = events
        .iter()
        .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, DEFAULT_REPLY);
    let stop = events.last().expect("events");
    let metrics = &stop["amazon-bedrock-invocationMetrics"];
    assert_eq!(
        metrics["inputTokenCount"],
        events[0]["message"]["usage"]["input_tokens"]
    );
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(metrics["outputTokenCount"], delta["usage"]["output_tokens"]);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn stream_frames_are_flushed_one_by_one() {
    let double = start();
    let resp = send(
        &double,
        &format!("{MODEL_PATH}/invoke-with-response-stream"),
        &body_with("[double:slow:150]"),
    )
    .await;
    let read = read_stream(resp).await;
    let n = read.messages.len();
    assert!(n >= 8, "{n} events");
    // One frame per transport chunk, spread over time rather than one buffer at the end.
    assert_eq!(
        read.chunk_times.len(),
        n,
        "each frame arrives as its own chunk"
    );
    let first = read.chunk_times[0];
    let last = *read.chunk_times.last().expect("chunks");
    assert!(
        last - first >= Duration::from_millis(150 * (n as u64 - 1) - 100),
        "{first:?} .. {last:?}"
    );
    for pair in read.chunk_times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(100),
            "silence between events: {pair:?}"
        );
    }
}

#[tokio::test]
async fn streamed_tool_use_and_thinking() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke-with-response-stream");
    let read = read_stream(send(&double, &path, &body_with("[double:tool]")).await).await;
    let events: Vec<Value> = read.messages.iter().map(chunk_event).collect();
    let start = events
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .expect("block start");
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "Read");
    let partial: String = events
        .iter()
        .filter_map(|e| e.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).expect("tool input"),
        json!({"file_path": "/tmp/x"})
    );
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("delta");
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    let mut thinking = body_with("[double:thinking]");
    thinking["thinking"] = json!({"type": "adaptive"});
    let read = read_stream(send(&double, &path, &thinking).await).await;
    let events: Vec<Value> = read.messages.iter().map(chunk_event).collect();
    let delta_types: Vec<&str> = events
        .iter()
        .filter_map(|e| e.pointer("/delta/type").and_then(Value::as_str))
        .collect();
    let sig = delta_types
        .iter()
        .position(|t| *t == "signature_delta")
        .expect("signature_delta");
    assert!(delta_types[..sig].iter().all(|t| *t == "thinking_delta") && sig > 0);
    assert!(delta_types[sig + 1..].iter().all(|t| *t == "text_delta"));
    let stops: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "content_block_stop")
        .filter_map(|e| e["index"].as_u64())
        .collect();
    assert_eq!(stops, [0, 1]);
}

#[tokio::test]
async fn midstream_throttle_sends_an_exception_frame() {
    let double = start();
    let resp = send(
        &double,
        &format!("{MODEL_PATH}/invoke-with-response-stream"),
        &body_with("[double:midstream-throttle]"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let read = read_stream(resp).await;
    let (last, events) = read.messages.split_last().expect("frames");
    assert!(!events.is_empty(), "some events before the exception");
    let types = event_types(&events.iter().map(chunk_event).collect::<Vec<_>>());
    assert!(!types.contains(&"message_stop".to_owned()));
    assert_eq!(last.header_str(":message-type"), Some("exception"));
    assert_eq!(
        last.header_str(":exception-type"),
        Some("throttlingException")
    );
    assert_eq!(last.header_str(":content-type"), Some("application/json"));
    let payload: Value = serde_json::from_slice(&last.payload).expect("json");
    assert_eq!(payload, json!({"message": THROTTLE_MESSAGE}));
    assert_eq!(
        double.requests()[0].verdict.error_type.as_deref(),
        Some("throttlingException")
    );
}

#[tokio::test]
async fn truncated_streams_end_without_message_stop() {
    let double = start();
    let path = format!("{MODEL_PATH}/invoke-with-response-stream");
    let read = read_stream(send(&double, &path, &body_with("[double:truncate]")).await).await;
    assert!(read.transport_error, "connection cut mid-body");
    let types = event_types(&read.messages.iter().map(chunk_event).collect::<Vec<_>>());
    assert!(
        !types.is_empty() && !types.contains(&"message_stop".to_owned()),
        "{types:?}"
    );

    let read = read_stream(send(&double, &path, &body_with("[double:truncate-clean]")).await).await;
    assert!(!read.transport_error, "clean end of body");
    let types = event_types(&read.messages.iter().map(chunk_event).collect::<Vec<_>>());
    assert!(
        !types.is_empty() && !types.contains(&"message_stop".to_owned()),
        "{types:?}"
    );
}

#[tokio::test]
async fn frames_also_decode_with_an_independent_minimal_decoder() {
    // Cross-check against a decoder written here from the spec (not the gateway's).
    let double = start();
    let resp = send(
        &double,
        &format!("{MODEL_PATH}/invoke-with-response-stream"),
        &body_with("hi"),
    )
    .await;
    let bytes = resp.bytes().await.expect("body");
    let mut rest = &bytes[..];
    let mut count = 0;
    while !rest.is_empty() {
        let total = u32::from_be_bytes(rest[0..4].try_into().expect("4")) as usize;
        let headers_len = u32::from_be_bytes(rest[4..8].try_into().expect("4")) as usize;
        let prelude_crc = u32::from_be_bytes(rest[8..12].try_into().expect("4"));
        assert_eq!(crc32fast::hash(&rest[..8]), prelude_crc, "prelude CRC");
        let message_crc = u32::from_be_bytes(rest[total - 4..total].try_into().expect("4"));
        assert_eq!(
            crc32fast::hash(&rest[..total - 4]),
            message_crc,
            "message CRC"
        );
        let payload = &rest[12 + headers_len..total - 4];
        let v: Value = serde_json::from_slice(payload).expect("payload JSON");
        assert!(v["bytes"].is_string());
        rest = &rest[total..];
        count += 1;
    }
    assert!(count >= 6);
}

// === CountTokens ===

#[tokio::test]
async fn count_tokens() {
    let double = start();
    let inner = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "0123456789abcdef"}],
    });
    let envelope = json!({"input": {"invokeModel": {"body": base64::engine::general_purpose::STANDARD.encode(inner.to_string())}}});
    let path = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens";
    let resp = send(&double, path, &envelope).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await, json!({"inputTokens": 5}));
    assert_eq!(
        double.requests()[0].count_tokens_body.as_ref(),
        Some(&inner)
    );

    // Inference profiles are not accepted by CountTokens; a bare invoke body is not an envelope.
    expect_error(
        send(&double, &format!("{MODEL_PATH}/count-tokens"), &envelope).await,
        400,
        "ValidationException",
        "model identifier",
    )
    .await;
    expect_error(
        send(&double, path, &inner).await,
        400,
        "ValidationException",
        "Unknown field",
    )
    .await;
}

// === Request log ===

#[tokio::test]
async fn requests_are_recorded_in_process_and_over_http() {
    let double = start();
    let mut body = body_with("hi");
    body["anthropic_beta"] = json!(["interleaved-thinking-2025-05-14"]);
    send(
        &double,
        &format!("{MODEL_PATH}/invoke-with-response-stream"),
        &body,
    )
    .await
    .bytes()
    .await
    .expect("drain");
    let recorded = double.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.operation.as_deref(),
        Some("InvokeModelWithResponseStream")
    );
    assert_eq!(
        r.body.as_ref().map(|b| &b["anthropic_beta"]),
        Some(&json!(["interleaved-thinking-2025-05-14"]))
    );
    assert!(
        r.header("Authorization")
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 "))
    );
    assert_eq!(r.verdict.status, 200);

    let over_http: Vec<tollgate_tests::RecordedRequest> = serde_json::from_value(
        json_of(
            reqwest::get(format!("{}/_double/requests", double.base_url()))
                .await
                .expect("get"),
        )
        .await,
    )
    .expect("recorded requests deserialize");
    assert_eq!(over_http, recorded);
    let status = reqwest::Client::new()
        .delete(format!("{}/_double/requests", double.base_url()))
        .send()
        .await
        .expect("delete")
        .status();
    assert_eq!(status, 204);
    assert!(double.requests().is_empty());
}

#[test]
fn works_from_synchronous_code_and_stops_on_drop() {
    let double = start();
    let addr = double.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(double);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "double still listening after drop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn request_log_is_bounded() {
    let double = BedrockDouble::start(
        BedrockDoubleConfig::new()
            .with_key(EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY)
            .with_max_recorded(2),
    )
    .expect("start");
    for _ in 0..3 {
        send(&double, &format!("{MODEL_PATH}/invoke"), &body_with("hi")).await;
    }
    let seqs: Vec<u64> = double.requests().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [2, 3], "oldest dropped first");
}

#[tokio::test]
async fn scripted_cache_usage_and_hang_midstream() {
    let double = start();
    let resp = send(
        &double,
        &format!("{MODEL_PATH}/invoke"),
        &body_with("[double:cache:100:20]"),
    )
    .await;
    assert_eq!(
        header(&resp, "x-amzn-bedrock-cache-read-input-token-count"),
        "100"
    );
    assert_eq!(
        header(&resp, "x-amzn-bedrock-cache-write-input-token-count"),
        "20"
    );
    let message = json_of(resp).await;
    assert_eq!(message["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(message["usage"]["cache_creation_input_tokens"], 20);

    let path = format!("{MODEL_PATH}/invoke-with-response-stream");
    let read = read_stream(send(&double, &path, &body_with("[double:cache:7:3]")).await).await;
    let events: Vec<Value> = read.messages.iter().map(chunk_event).collect();
    assert_eq!(events[0]["message"]["usage"]["cache_read_input_tokens"], 7);
    let metrics = &events.last().expect("events")["amazon-bedrock-invocationMetrics"];
    assert_eq!(
        (
            metrics["cacheReadInputTokenCount"].as_u64(),
            metrics["cacheWriteInputTokenCount"].as_u64()
        ),
        (Some(7), Some(3))
    );

    // hang-midstream: message_start arrives, then silence.
    let resp = send(&double, &path, &body_with("[double:hang-midstream]")).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("first frame")
        .expect("chunk")
        .expect("bytes");
    decoder.push(&first);
    let start_event = chunk_event(
        &decoder
            .next_message()
            .expect("frame")
            .expect("complete frame"),
    );
    assert_eq!(start_event["type"], "message_start");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), body.next())
            .await
            .is_err(),
        "nothing after message_start"
    );
}

#[tokio::test]
async fn max_tokens_is_honoured() {
    let double = start();
    let mut body = body_with("hi");
    body["max_tokens"] = json!(2);
    let message = json_of(send(&double, &format!("{MODEL_PATH}/invoke"), &body).await).await;
    assert_eq!(message["stop_reason"], "max_tokens");
    assert_eq!(message["usage"]["output_tokens"], 2);
    assert!(
        message["content"][0]["text"]
            .as_str()
            .is_some_and(|t| DEFAULT_REPLY.starts_with(t) && t.len() < DEFAULT_REPLY.len())
    );
}

// === Converse (models that are not Anthropic's) ===

const LLAMA_PATH: &str = "/model/meta.llama3-3-70b-instruct-v1%3A0";
const NOVA_PATH: &str = "/model/us.amazon.nova-pro-v1%3A0";

fn converse_body(text: &str) -> Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 256},
    })
}

/// A ConverseStream event: its headers in Bedrock's order, and its payload (the event struct's
/// JSON with a padding member, no base64 wrapper).
fn converse_event(m: &Message) -> (String, Value) {
    assert_eq!(m.header_str(":message-type"), Some("event"));
    assert_eq!(m.header_str(":content-type"), Some("application/json"));
    let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, [":event-type", ":content-type", ":message-type"]);
    let payload: Value = serde_json::from_slice(&m.payload).expect("event payload is JSON");
    assert!(payload["p"].is_string(), "padding member present");
    (
        m.header_str(":event-type").unwrap_or("?").to_owned(),
        payload,
    )
}

#[tokio::test]
async fn converse_is_signed_validated_and_answered() {
    let double = start();
    let path = format!("{LLAMA_PATH}/converse");
    let resp = send(&double, &path, &converse_body("hi")).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let reply = json_of(resp).await;
    assert_eq!(reply["output"]["message"]["role"], "assistant");
    assert_eq!(
        reply["output"]["message"]["content"],
        json!([{"text": DEFAULT_REPLY}])
    );
    assert_eq!(reply["stopReason"], "end_turn");
    let usage = &reply["usage"];
    assert!(usage["inputTokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(
        usage["totalTokens"].as_u64(),
        Some(
            usage["inputTokens"].as_u64().unwrap_or(0)
                + usage["outputTokens"].as_u64().unwrap_or(0)
        )
    );
    assert!(reply["metrics"]["latencyMs"].is_u64());
    let r = &double.requests()[0];
    assert_eq!(r.operation.as_deref(), Some("Converse"));
    assert_eq!(
        r.model_id.as_deref(),
        Some("meta.llama3-3-70b-instruct-v1:0")
    );
    assert_eq!(r.access_key_id.as_deref(), Some(EXAMPLE_ACCESS_KEY_ID));

    // The signature is checked exactly as for InvokeModel.
    let bytes = serde_json::to_vec(&converse_body("hi")).expect("json");
    let headers = signed_headers(
        &double,
        &path,
        &bytes,
        &Credentials::new(EXAMPLE_ACCESS_KEY_ID, "wrong-secret"),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    expect_error(
        send_raw(&double, &path, headers, bytes).await,
        403,
        "InvalidSignatureException",
        "signature",
    )
    .await;
}

#[tokio::test]
async fn converse_bodies_are_checked_like_bedrock() {
    let double = start();
    let llama = format!("{LLAMA_PATH}/converse");
    let mut cached = converse_body("hi");
    cached["system"] = json!([{"text": "be brief"}, {"cachePoint": {"type": "default"}}]);
    expect_error(
        send(&double, &llama, &cached).await,
        400,
        "ValidationException",
        "prompt caching",
    )
    .await;
    // Nova takes cache points.
    let resp = send(&double, &format!("{NOVA_PATH}/converse"), &cached).await;
    assert_eq!(resp.status(), 200);

    let mut extra = converse_body("hi");
    extra["model"] = json!("x");
    expect_error(
        send(&double, &llama, &extra).await,
        400,
        "ValidationException",
        "extraneous key [model] is not permitted",
    )
    .await;
    let mut zero = converse_body("hi");
    zero["inferenceConfig"]["maxTokens"] = json!(0);
    expect_error(
        send(&double, &llama, &zero).await,
        400,
        "ValidationException",
        "maxTokens",
    )
    .await;
    let tool_turns = json!([
        {"role": "user", "content": [{"text": "read"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "Read", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "x"}]}}]},
    ]);
    expect_error(
        send(&double, &llama, &json!({"messages": tool_turns})).await,
        400,
        "ValidationException",
        "toolConfig field must be defined",
    )
    .await;
    let mut wrong_id = tool_turns.clone();
    wrong_id[2]["content"][0]["toolResult"]["toolUseId"] = json!("tooluse_2");
    let tools = json!({"tools": [{"toolSpec": {"name": "Read", "inputSchema": {"json": {"type": "object"}}}}]});
    expect_error(
        send(
            &double,
            &llama,
            &json!({"messages": wrong_id, "toolConfig": tools}),
        )
        .await,
        400,
        "ValidationException",
        "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_1",
    )
    .await;
    let resp = send(
        &double,
        &llama,
        &json!({"messages": tool_turns, "toolConfig": tools}),
    )
    .await;
    assert_eq!(resp.status(), 200);

    // An Anthropic body through InvokeModel is not Llama's schema; CountTokens is Claude's only.
    expect_error(
        send(&double, &format!("{LLAMA_PATH}/invoke"), &body_with("hi")).await,
        400,
        "ValidationException",
        "extraneous key [anthropic_version]",
    )
    .await;
    let envelope = json!({"input": {"converse": {"messages": converse_body("hi")["messages"]}}});
    expect_error(
        send(&double, &format!("{LLAMA_PATH}/count-tokens"), &envelope).await,
        400,
        "ValidationException",
        "doesn't support counting tokens",
    )
    .await;
    // Claude counts a converse input; `inferenceConfig` is not part of one.
    let claude = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens";
    let resp = send(&double, claude, &envelope).await;
    assert_eq!(resp.status(), 200);
    assert!(json_of(resp).await["inputTokens"].is_u64());
    let with_config = json!({"input": {"converse": converse_body("hi")}});
    expect_error(
        send(&double, claude, &with_config).await,
        400,
        "ValidationException",
        "extraneous key [inferenceConfig]",
    )
    .await;
}

#[tokio::test]
async fn converse_stream_is_real_event_stream_frames() {
    let double = start();
    let resp = send(
        &double,
        &format!("{LLAMA_PATH}/converse-stream"),
        &converse_body("[double:slow:20] hi"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        "application/vnd.amazon.eventstream"
    );
    let read = read_stream(resp).await;
    assert!(!read.transport_error && read.decoder_finished_clean);
    assert_eq!(
        read.chunk_times.len(),
        read.messages.len(),
        "one frame per body chunk"
    );
    let events: Vec<(String, Value)> = read.messages.iter().map(converse_event).collect();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types.first(), Some(&"messageStart"));
    assert_eq!(
        &types[types.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    assert!(
        !types.contains(&"contentBlockStart"),
        "text blocks have no contentBlockStart"
    );
    let text: String = events
        .iter()
        .filter_map(|(_, e)| e.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, DEFAULT_REPLY);
    let (_, metadata) = events.last().expect("metadata");
    assert!(
        metadata["usage"]["inputTokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(
        metadata["usage"]["outputTokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(metadata["metrics"]["latencyMs"].is_u64());
    assert_eq!(events[types.len() - 2].1["stopReason"], "end_turn");
    assert_eq!(
        double.requests()[0].operation.as_deref(),
        Some("ConverseStream")
    );
}

#[tokio::test]
async fn converse_scripts_tool_calls_throttling_and_midstream_exceptions() {
    let double = start();
    let stream = format!("{LLAMA_PATH}/converse-stream");
    let read = read_stream(send(&double, &stream, &converse_body("[double:tool]")).await).await;
    let events: Vec<(String, Value)> = read.messages.iter().map(converse_event).collect();
    let (_, start) = events
        .iter()
        .find(|(t, _)| t == "contentBlockStart")
        .expect("toolUse start");
    let tool_id = start["start"]["toolUse"]["toolUseId"]
        .as_str()
        .expect("tool use id")
        .to_owned();
    assert!(tool_id.starts_with("tooluse_"), "{tool_id}");
    assert_eq!(start["start"]["toolUse"]["name"], "Read");
    let input: String = events
        .iter()
        .filter_map(|(_, e)| e.pointer("/delta/toolUse/input").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).expect("tool input"),
        json!({"file_path": "/tmp/x"})
    );
    let stop = events
        .iter()
        .find(|(t, _)| t == "messageStop")
        .expect("messageStop");
    assert_eq!(stop.1["stopReason"], "tool_use");

    let reply = json_of(
        send(
            &double,
            &format!("{LLAMA_PATH}/converse"),
            &converse_body("[double:tool]"),
        )
        .await,
    )
    .await;
    assert_eq!(reply["stopReason"], "tool_use");
    assert_eq!(
        reply["output"]["message"]["content"][0]["toolUse"]["name"],
        "Read"
    );

    expect_error(
        send(&double, &stream, &converse_body("[double:throttle]")).await,
        429,
        "ThrottlingException",
        THROTTLE_MESSAGE,
    )
    .await;
    // A throttle for one model only.
    let only_llama = converse_body("[double:throttle-on:llama]");
    expect_error(
        send(&double, &stream, &only_llama).await,
        429,
        "ThrottlingException",
        THROTTLE_MESSAGE,
    )
    .await;
    let resp = send(&double, &format!("{NOVA_PATH}/converse"), &only_llama).await;
    assert_eq!(resp.status(), 200);

    let resp = send(
        &double,
        &stream,
        &converse_body("[double:midstream-throttle]"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let read = read_stream(resp).await;
    let (last, before) = read.messages.split_last().expect("frames");
    assert_eq!(before.len(), 3, "three events before the exception");
    assert_eq!(last.header_str(":message-type"), Some("exception"));
    assert_eq!(
        last.header_str(":exception-type"),
        Some("throttlingException")
    );
}

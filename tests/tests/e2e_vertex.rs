//! End to end: Google Vertex AI as a provider, through the real `tollgate` binary and the strict
//! Vertex double (`tollgate_tests::vertex_double`).
//!
//! * A service-account key file configured through the admin API is exchanged for an access
//!   token with a signed JWT, which the double verifies with the account's public key; every
//!   Vertex call carries the token; one token serves many requests (also concurrent ones), and
//!   a token Vertex stops accepting is replaced once.
//! * `vertex/claude-sonnet-4-6`: `rawPredict`, `streamRawPredict` and count-tokens with the
//!   model in the path and `anthropic_version: vertex-2023-10-16` in the body; the answers are
//!   Anthropic's, naming the model asked for.
//! * Google's error envelope becomes Anthropic's; a key file Google refuses is a clear 500 and
//!   never shows in admin responses or logs.

mod common;

use common::{admin, message, setup, sse_events};
use serde_json::{Value, json};
use tollgate_tests::vertex_double::test_key_file;

const MODEL: &str = "vertex/claude-sonnet-4-6";
const PATH: &str = "/v1/projects/tollgate-test/locations/us-east5/publishers/anthropic/models";

async fn post_as(s: &common::Setup, vk: &str, path: &str, body: &Value) -> reqwest::Response {
    s.http
        .post(s.gw.url(path))
        .bearer_auth(vk)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(body)
        .send()
        .await
        .expect("inference call")
}

/// Posts a message with `text` to [`MODEL`] (streamed or not) with the virtual key `vk`.
async fn ask(s: &common::Setup, vk: &str, text: &str, stream: bool) -> reqwest::Response {
    post_as(
        s,
        vk,
        "/anthropic/v1/messages",
        &message(MODEL, text, stream),
    )
    .await
}

#[tokio::test]
async fn vertex_serves_claude_with_a_service_account_token() {
    let s = setup().await;
    let vertex = s.add_vertex("service-account.json").await;
    let vk = s
        .virtual_key(json!({"name": "vertex-team", "providers": ["bedrock", "vertex"]}))
        .await["value"]
        .as_str()
        .expect("value")
        .to_owned();

    // A message.
    let resp = ask(&s, &vk, "hi", false).await;
    assert_eq!(resp.status(), 200, "{}", s.gw.output());
    assert_eq!(resp.headers()["x-tollgate-provider"], "vertex");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["model"], MODEL, "{body}");
    assert_eq!(body["type"], "message");
    let calls = vertex.predictions();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.path, format!("{PATH}/claude-sonnet-4-6:rawPredict"));
    assert_eq!(call.status, 200);
    assert_eq!(call.header("authorization"), Some("Bearer ya29.double-1"));
    assert_eq!(
        call.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );
    assert!(
        call.header("anthropic-version").is_none(),
        "in the body on Vertex"
    );
    let sent = call.json().expect("JSON body");
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
    assert!(sent.get("model").is_none(), "{sent}");

    // A stream.
    let resp = ask(&s, &vk, "hi", true).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("SSE");
    let events = sse_events(&text);
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("message_start"));
    assert_eq!(events[0].1["message"]["model"], MODEL);
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("message_stop"));
    assert_eq!(
        vertex.predictions()[1].path,
        format!("{PATH}/claude-sonnet-4-6:streamRawPredict")
    );

    // Counting tokens: the model stays in the body.
    let resp = post_as(
        &s,
        &vk,
        "/anthropic/v1/messages/count_tokens",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "count me"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let counted: Value = resp.json().await.expect("JSON");
    assert!(
        counted["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{counted}"
    );
    let call = vertex.predictions().pop().expect("count call");
    assert_eq!(call.path, format!("{PATH}/count-tokens:rawPredict"));
    assert_eq!(call.json().expect("body")["model"], "claude-sonnet-4-6");

    // One token so far; concurrent requests share it.
    assert_eq!(vertex.tokens_issued(), 1);
    let hi = message(MODEL, "hi", false);
    let concurrent = (0..8).map(|_| post_as(&s, &vk, "/anthropic/v1/messages", &hi));
    for resp in futures::future::join_all(concurrent).await {
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        vertex.tokens_issued(),
        1,
        "the cached token serves every request"
    );

    // Vertex stops accepting the token: the gateway fetches a new one and sends the request
    // again, once; the client sees only the answer.
    vertex.revoke_tokens();
    let resp = ask(&s, &vk, "hi", false).await;
    assert_eq!(resp.status(), 200, "{}", s.gw.output());
    assert_eq!(vertex.tokens_issued(), 2);
    let last_two: Vec<u16> = vertex
        .predictions()
        .iter()
        .rev()
        .take(2)
        .map(|r| r.status)
        .collect();
    assert_eq!(last_two, [200, 401]);

    // Google's quota error, as Anthropic's.
    let resp = ask(&s, &vk, "[double:vertex-quota]", false).await;
    assert_eq!(resp.status(), 429);
    let err: Value = resp.json().await.expect("JSON");
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "rate_limit_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Quota exceeded")),
        "{err}"
    );
}

#[tokio::test]
async fn a_service_account_google_refuses_is_a_clear_error_and_stays_secret() {
    let s = setup().await;
    // The right account, signed with a key the double does not know.
    let vertex = s.add_vertex("other-service-account.json").await;
    let vk = s
        .virtual_key(json!({"name": "vertex-refused", "providers": ["bedrock", "vertex"]}))
        .await;
    let vk = vk["value"].as_str().expect("value");
    let resp = ask(&s, vk, "hi", false).await;
    assert_eq!(resp.status(), 500);
    let err: Value = resp.json().await.expect("JSON");
    assert_eq!(err["error"]["type"], "api_error", "{err}");
    let text = err["error"]["message"].as_str().expect("message");
    assert!(
        text.contains("Google refused this provider key's service account (invalid_grant)"),
        "{text}"
    );
    assert!(vertex.predictions().is_empty(), "no call without a token");
    assert_eq!(vertex.tokens_issued(), 0);
    let grants: Vec<u16> = vertex.requests().iter().map(|r| r.status).collect();
    assert_eq!(grants, [400]);

    // The key file is a secret: redacted in the admin API, never in the logs.
    let (st, keys) = admin(
        &s.http,
        &s.gw,
        "GET",
        "/api/providers/vertex/keys",
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let shown = keys.to_string();
    assert!(shown.contains("<redacted>"), "{shown}");
    let key_file: Value =
        serde_json::from_str(&test_key_file("other-service-account.json")).expect("JSON");
    let private_key = key_file["private_key"].as_str().expect("PEM");
    let body_line = private_key.lines().nth(1).expect("a base64 line");
    assert!(!shown.contains(body_line));
    tollgate_tests::harness::assert_not_in_output(&s.gw, body_line).expect("not logged");
}

/// What the virtual key `id` has spent in its budget's window, in nano-dollars.
async fn spent(s: &common::Setup, id: &str) -> u64 {
    let (st, usage) = admin(
        &s.http,
        &s.gw,
        "GET",
        &format!("/api/virtual-keys/{id}/usage"),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{usage}");
    usage["budgets"][0]["spent_nano_usd"]
        .as_u64()
        .expect("spent")
}

#[tokio::test]
async fn a_regional_vertex_endpoint_is_priced_with_its_premium() {
    let s = setup().await;
    let _vertex = s.add_vertex("service-account.json").await;
    let vk = s
        .virtual_key(json!({"name": "vertex-priced", "monthly_budget": 500,
                            "providers": ["bedrock", "vertex"]}))
        .await;
    let (id, value) = (
        vk["id"].as_str().expect("id"),
        vk["value"].as_str().expect("value"),
    );
    let before = spent(&s, id).await;
    let resp = ask(&s, value, "price me", false).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    let (input, output) = (
        body["usage"]["input_tokens"].as_u64().expect("input"),
        body["usage"]["output_tokens"].as_u64().expect("output"),
    );
    // Sonnet 4.6 at $3 / $15 per MTok, +10 % for the regional endpoint (us-east5): 3,300 and
    // 16,500 nano-dollars a token.
    let expected = input * 3_300 + output * 16_500;
    let mut now = before;
    for _ in 0..100 {
        now = spent(&s, id).await;
        if now != before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(now - before, expected, "{input} in, {output} out");
}

//! The OpenAI-format routes in process: [`crate::server::router`] driven with
//! `tower::ServiceExt::oneshot`, with the loopback Bedrock and Anthropic stand-ins of the
//! Bedrock-format routes' tests (same snapshot: `GOOD` reaches Bedrock only, `RESILIENT` both).
//!
//! | test | behaviour |
//! |---|---|
//! | `chat_completions_reach_claude_as_messages_and_come_back_as_openai` | body translated; `chat.completion`; usage; headers |
//! | `a_chat_stream_is_translated_event_by_event` | Bedrock's event stream → `chat.completion.chunk`s, usage chunk, `[DONE]` |
//! | `responses_are_served_whole_and_streamed` | Response object; `response.*` events ending `response.completed` |
//! | `errors_and_refusals_are_openai_shaped` | 401 (not usage), 400 with `param`, 404, 429 with `retry-after` |
//! | `the_model_list_is_openais` | `{"object":"list","data":[{"id","object":"model",…}]}` |

use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::bedrock_ingress::tests::{GOOD, Gateway, RESILIENT, anthropic, bedrock, snapshot};

/// The `data:` payloads of an SSE body, in order.
fn data_lines(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .expect("UTF-8")
        .split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn chat_completions_reach_claude_as_messages_and_come_back_as_openai() {
    let (bedrock_url, _) = bedrock("ok").await;
    let (anthropic_url, seen) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let body = json!({
        "model": "anthropic/claude-sonnet-4-6",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"}
        ],
        "max_completion_tokens": 50,
        "seed": 7
    });
    for path in ["/openai/v1/chat/completions", "/v1/chat/completions"] {
        let a = gw
            .call(Method::POST, path, Some(RESILIENT), &body.to_string())
            .await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(a.headers["x-tollgate-provider"], "anthropic");
        let c = a.json();
        assert_eq!(c["object"], "chat.completion", "{c}");
        assert_eq!(c["id"], "chatcmpl-msg_2");
        assert_eq!(c["model"], "anthropic/claude-sonnet-4-6");
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["usage"]["prompt_tokens"], 3);
        assert_eq!(c["usage"]["completion_tokens"], 2);
        assert_eq!(c["usage"]["total_tokens"], 5);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let upstream = &seen[0];
    assert_eq!(upstream.version.as_deref(), Some("2023-06-01"));
    assert_eq!(upstream.body["model"], "claude-sonnet-4-6");
    assert_eq!(upstream.body["system"][0]["text"], "Be brief.");
    assert_eq!(
        upstream.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
    assert_eq!(upstream.body["max_tokens"], 50);
    assert!(upstream.body.get("seed").is_none(), "dropped");

    let usage = gw.usage();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert_eq!(usage[0].model_requested, "anthropic/claude-sonnet-4-6");
    assert_eq!((usage[0].input_tokens, usage[0].output_tokens), (3, 2));
}

#[tokio::test]
async fn a_chat_stream_is_translated_event_by_event() {
    let (bedrock_url, bedrock_seen) = bedrock("ok").await;
    let (anthropic_url, _) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let body = json!({
        "model": "bedrock/claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let a = gw
        .call(
            Method::POST,
            "/openai/v1/chat/completions",
            Some(GOOD),
            &body.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let lines = data_lines(&a.body);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("[DONE]"),
        "{lines:?}"
    );
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON chunk"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["model"] == "bedrock/claude-sonnet-4-6")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hi");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 11);
    assert_eq!(last["usage"]["completion_tokens"], 7);

    // Bedrock got its native InvokeModel body.
    let seen = bedrock_seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].path,
        "/model/global.anthropic.claude-sonnet-4-6/invoke-with-response-stream"
    );
    assert_eq!(seen[0].body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(seen[0].body["max_tokens"], 4096, "the default max_tokens");
    let usage = gw.usage();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert!(usage[0].stream);
    assert_eq!((usage[0].input_tokens, usage[0].output_tokens), (11, 7));
    assert_eq!(usage[0].status, 200);
}

#[tokio::test]
async fn responses_are_served_whole_and_streamed() {
    let (bedrock_url, _) = bedrock("ok").await;
    let (anthropic_url, seen) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let body = json!({
        "model": "anthropic/claude-sonnet-4-6",
        "instructions": "Be brief.",
        "input": "hi",
        "store": false
    });
    let a = gw
        .call(
            Method::POST,
            "/openai/v1/responses",
            Some(RESILIENT),
            &body.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let r = a.json();
    assert_eq!(r["object"], "response", "{r}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "anthropic/claude-sonnet-4-6");
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(r["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(r["usage"]["input_tokens"], 3);
    assert_eq!(
        seen.lock().unwrap()[0].body["system"][0]["text"],
        "Be brief."
    );

    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let a = gw
        .call(
            Method::POST,
            "/v1/responses",
            Some(RESILIENT),
            &streamed.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let events: Vec<Value> = data_lines(&a.body)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    assert!(types.contains(&"response.output_text.delta"));
    let sequence: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(sequence, (0..events.len() as u64).collect::<Vec<_>>());
    let done = events.last().unwrap();
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Hi");
    assert_eq!(done["response"]["usage"]["output_tokens"], 7);
    let usage = gw.usage();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert!(usage.iter().all(|u| u.status == 200));
}

#[tokio::test]
async fn errors_and_refusals_are_openai_shaped() {
    let (bedrock_url, _) = bedrock("throttle").await;
    let (anthropic_url, _) = anthropic().await;
    let mut gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let error = |a: &crate::bedrock_ingress::tests::Answer| -> Value {
        assert_eq!(a.headers[header::CONTENT_TYPE], "application/json", "{a:?}");
        let body = a.json();
        let e = body["error"].clone();
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(
            e.get("param").is_some() && e.get("code").is_some(),
            "{body}"
        );
        e
    };
    let chat = json!({"model": "bedrock/claude-sonnet-4-6",
                      "messages": [{"role": "user", "content": "hi"}]})
    .to_string();

    // No key: 401, OpenAI's code for a bad key; not usage.
    let a = gw
        .call(Method::POST, "/openai/v1/chat/completions", None, &chat)
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&a)["code"], "invalid_api_key");
    let a = gw
        .call(
            Method::POST,
            "/openai/v1/responses",
            Some("sk-tg-wrong"),
            "{}",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(gw.usage().is_empty());

    // A body Claude cannot take: 400 naming the member; a usage record (the key is known).
    let hot = json!({"model": "bedrock/claude-sonnet-4-6", "temperature": 1.5,
                     "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let a = gw
        .call(
            Method::POST,
            "/openai/v1/chat/completions",
            Some(GOOD),
            &hot,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let e = error(&a);
    assert_eq!(
        (e["type"].as_str(), e["param"].as_str()),
        (Some("invalid_request_error"), Some("temperature"))
    );
    let a = gw
        .call(
            Method::POST,
            "/openai/v1/responses",
            Some(GOOD),
            &json!({"model": "bedrock/claude-sonnet-4-6", "input": "hi",
                    "previous_response_id": "resp_1"})
            .to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&a)["param"], "previous_response_id");
    let usage = gw.usage();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert!(usage.iter().all(|u| u.status == 400));

    // Bedrock throttles: a 429 with retry advice, OpenAI's rate-limit code.
    let a = gw
        .call(Method::POST, "/v1/chat/completions", Some(GOOD), &chat)
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{a:?}");
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(error(&a)["code"], "rate_limit_exceeded");

    // A method not served on an OpenAI route.
    for path in ["/v1/chat/completions", "/openai/v1/responses"] {
        let a = gw.call(Method::GET, path, Some(GOOD), "").await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(error(&a)["type"], "invalid_request_error");
    }

    // A path under /openai that is not served.
    let a = gw
        .call(Method::POST, "/openai/v1/embeddings", Some(GOOD), "{}")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        error(&a)["message"]
            .as_str()
            .unwrap()
            .contains("/openai/v1/chat/completions")
    );
}

#[tokio::test]
async fn the_model_list_is_openais() {
    let (bedrock_url, _) = bedrock("ok").await;
    let (anthropic_url, _) = anthropic().await;
    let gw = Gateway::new(snapshot(&bedrock_url, &anthropic_url));
    let a = gw
        .call(Method::GET, "/openai/v1/models", Some(GOOD), "")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let list = a.json();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().expect("data");
    assert!(!data.is_empty());
    assert!(
        data.iter().all(|m| m["object"] == "model"
            && m["owned_by"] == "tollgate"
            && m["created"].is_i64())
    );
    let id = data[0]["id"].as_str().unwrap();
    let a = gw
        .call(
            Method::GET,
            &format!("/openai/v1/models/{id}"),
            Some(GOOD),
            "",
        )
        .await;
    assert_eq!(a.json()["id"], id);
    let a = gw
        .call(
            Method::GET,
            "/openai/v1/models/nope/nothing",
            Some(GOOD),
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["code"], "model_not_found");
    let a = gw.call(Method::GET, "/openai/v1/models", None, "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

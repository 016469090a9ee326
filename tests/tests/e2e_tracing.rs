//! End to end: OpenTelemetry traces from the real binary to an OTLP receiver on loopback
//! (`tollgate_tests::otlp_receiver`), in front of the strict Bedrock double. The client's
//! `traceparent` becomes the parent of the gateway's span, each upstream attempt is a span under
//! it, the GenAI attributes carry the double's token counts, and nothing is exported (nor any
//! collector contacted) unless an endpoint is configured.

mod common;

use std::time::Duration;

use common::{admin, message, setup_with_env, sse_events};
use serde_json::{Value, json};
use tollgate_tests::otlp_receiver::{
    KIND_CLIENT, KIND_SERVER, OtlpReceiver, ReceivedSpan, STATUS_ERROR,
};

const WAIT: Duration = Duration::from_secs(20);

/// A W3C `traceparent` with a fresh trace id and parent span id; `sampled` sets the flag.
fn traceparent(sampled: bool) -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let flags = if sampled { "01" } else { "00" };
    (format!("00-{trace_id}-{parent}-{flags}"), trace_id, parent)
}

fn in_trace<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.trace_id == trace_id).collect()
}

/// The trace's server span and its client spans in start order, once the server span is there
/// (it ends last: the attempts end before or with it).
async fn trace_of(receiver: &OtlpReceiver, trace_id: &str) -> (ReceivedSpan, Vec<ReceivedSpan>) {
    let spans = receiver
        .wait_for(
            &format!("the server span of trace {trace_id}"),
            WAIT,
            |spans| {
                spans
                    .iter()
                    .any(|s| s.trace_id == trace_id && s.kind == KIND_SERVER)
            },
        )
        .await;
    let trace = in_trace(&spans, trace_id);
    let servers: Vec<_> = trace.iter().filter(|s| s.kind == KIND_SERVER).collect();
    assert_eq!(servers.len(), 1, "{trace:#?}");
    let server = (*servers[0]).clone();
    let mut clients: Vec<ReceivedSpan> = trace
        .iter()
        .filter(|s| s.kind == KIND_CLIENT)
        .map(|s| (*s).clone())
        .collect();
    clients.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(
        clients.len() + 1,
        trace.len(),
        "only server and client spans: {trace:#?}"
    );
    (server, clients)
}

fn attr<'a>(span: &'a ReceivedSpan, key: &str) -> &'a Value {
    span.attributes.get(key).unwrap_or(&Value::Null)
}

/// No attribute of any span holds `secret` (a virtual key, a prompt).
fn assert_nowhere(spans: &[ReceivedSpan], secret: &str) {
    for s in spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.to_string().contains(secret),
                "span {:?} attribute {k} holds {secret:?}",
                s.name
            );
        }
    }
}

/// The id of the walkthrough's virtual key.
async fn virtual_key_id(s: &common::Setup) -> String {
    let (st, keys) = admin(&s.http, &s.gw, "GET", "/api/virtual-keys", json!(null)).await;
    assert_eq!(st, 200, "{keys}");
    keys["virtual_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "engineering-team")
        .and_then(|k| k["id"].as_str())
        .expect("the walkthrough's key")
        .to_owned()
}

/// Token counts of an Anthropic answer as the GenAI conventions count them: (input including
/// cache reads and writes, output, cache read, cache creation).
fn conventions_tokens(usage: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| usage[k].as_i64().unwrap_or(0);
    let (input, read, write) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    (input + read + write, n("output_tokens"), read, write)
}

fn assert_tokens(span: &ReceivedSpan, expected: (i64, i64, i64, i64)) {
    assert_eq!(
        (
            attr(span, "gen_ai.usage.input_tokens").as_i64(),
            attr(span, "gen_ai.usage.output_tokens").as_i64(),
            attr(span, "gen_ai.usage.cache_read.input_tokens").as_i64(),
            attr(span, "gen_ai.usage.cache_creation.input_tokens").as_i64(),
        ),
        (
            Some(expected.0),
            Some(expected.1),
            Some(expected.2),
            Some(expected.3)
        ),
        "{} {:#?}",
        span.name,
        span.attributes
    );
}

/// Over OTLP/gRPC: a non-streaming request, a stream whose first model is throttled and whose
/// fallback answers, a stream the client leaves, and an unsampled request.
#[tokio::test]
async fn spans_follow_the_clients_traceparent_with_genai_attributes_over_grpc() {
    let receiver = OtlpReceiver::grpc().expect("receiver");
    let endpoint = receiver.endpoint();
    let s = setup_with_env(
        &[
            "--sse-ping-interval-ms",
            "200",
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "grpc",
        ],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_SERVICE_NAME", "tollgate-e2e"),
        ],
    )
    .await;
    assert!(
        s.gw.output().contains("exporting traces over OTLP"),
        "{}",
        s.gw.output()
    );
    let vk_id = virtual_key_id(&s).await;
    let double_port = i64::from(
        s.double
            .base_url()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap(),
    );

    // 1. Non-streaming, with cached tokens and sampling settings.
    let (tp, trace_id, parent) = traceparent(true);
    let mut body = message("claude-sonnet-4-6", "[double:cache:20:5] Hello", false);
    body["temperature"] = json!(0.5);
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .bearer_auth(&s.vk)
        .header("traceparent", &tp)
        .header("x-claude-code-session-id", "session-e2e-1")
        .json(&body)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
    let answer: Value = resp.json().await.expect("json");
    let tokens = conventions_tokens(&answer["usage"]);
    assert_eq!((tokens.2, tokens.3), (20, 5), "{answer}");
    let (server, clients) = trace_of(&receiver, &trace_id).await;
    assert_eq!(
        server.parent_span_id, parent,
        "the client's span is the parent"
    );
    assert_eq!(server.name, "chat claude-sonnet-4-6");
    assert_eq!(server.service_name.as_deref(), Some("tollgate-e2e"));
    assert_eq!(server.scope, "tollgate");
    for (k, v) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.provider.name", json!("aws.bedrock")),
        ("gen_ai.request.model", json!("claude-sonnet-4-6")),
        (
            "gen_ai.response.model",
            json!("global.anthropic.claude-sonnet-4-6"),
        ),
        ("gen_ai.request.max_tokens", json!(256)),
        ("gen_ai.request.temperature", json!(0.5)),
        ("gen_ai.conversation.id", json!("session-e2e-1")),
        ("http.response.status_code", json!(200)),
        ("tollgate.request_id", json!(request_id)),
        ("tollgate.virtual_key.id", json!(vk_id)),
        ("tollgate.provider", json!("bedrock")),
        ("tollgate.fallback_index", json!(0)),
        ("tollgate.attempts", json!(1)),
    ] {
        assert_eq!(attr(&server, k), &v, "{k}: {:#?}", server.attributes);
    }
    assert!(attr(&server, "error.type").is_null());
    assert!(attr(&server, "gen_ai.request.stream").is_null());
    assert_ne!(server.status_code, STATUS_ERROR);
    assert_tokens(&server, tokens);
    assert_eq!(clients.len(), 1, "{clients:#?}");
    let client = &clients[0];
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.name, "chat global.anthropic.claude-sonnet-4-6");
    for (k, v) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.provider.name", json!("aws.bedrock")),
        (
            "gen_ai.request.model",
            json!("global.anthropic.claude-sonnet-4-6"),
        ),
        (
            "gen_ai.response.model",
            json!("global.anthropic.claude-sonnet-4-6"),
        ),
        ("server.address", json!("127.0.0.1")),
        ("server.port", json!(double_port)),
        ("http.response.status_code", json!(200)),
        ("tollgate.attempt", json!(1)),
        ("tollgate.fallback_index", json!(0)),
        (
            "tollgate.provider_key.id",
            attr(&server, "tollgate.provider_key.id").clone(),
        ),
    ] {
        assert_eq!(attr(client, k), &v, "{k}: {:#?}", client.attributes);
    }
    assert!(attr(client, "tollgate.provider_key.id").is_string());
    assert_tokens(client, tokens);
    assert!(server.start_unix_nano <= client.start_unix_nano);
    assert!(client.end_unix_nano <= server.end_unix_nano);

    // 2. A stream: the model asked for is throttled on every try (the first, and a retry after
    //    a backoff of at least 160 ms), its fallback answers.
    let version = |s: &common::Setup| {
        let http = s.http.clone();
        let url = s.gw.url("/ready");
        async move {
            let ready: Value = http
                .get(url)
                .send()
                .await
                .expect("ready")
                .json()
                .await
                .expect("json");
            ready["config_version"].as_i64().expect("a version")
        }
    };
    let before = version(&s).await;
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/providers/bedrock",
        json!({"network_config": {"base_url": s.double.base_url(), "default_request_timeout_in_seconds": 5,
                                  "max_retries": 1, "retry_backoff_initial": 200}}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    for _ in 0..100 {
        if version(&s).await > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        version(&s).await > before,
        "the retry setting never applied"
    );
    s.double.clear_requests();
    let (tp, trace_id, parent) = traceparent(true);
    let mut body = message("claude-sonnet-4-6", "[double:throttle-on:sonnet] hi", true);
    body["fallbacks"] = json!(["claude-haiku-4-5"]);
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .header("traceparent", &tp)
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-fallback-index"], "1");
    let text = resp.text().await.expect("body");
    let events = sse_events(&text);
    let start = events
        .iter()
        .find(|(e, _)| e == "message_start")
        .map(|(_, d)| d["message"]["usage"].clone())
        .expect("message_start");
    let end = events
        .iter()
        .rev()
        .find(|(e, _)| e == "message_delta")
        .map(|(_, d)| d["usage"].clone())
        .expect("message_delta");
    let mut usage = start.clone();
    usage["output_tokens"] = end["output_tokens"].clone();
    let tokens = conventions_tokens(&usage);
    let upstream: Vec<(String, u16)> = s
        .double
        .requests()
        .into_iter()
        .map(|r| (r.model_id.unwrap_or_default(), r.verdict.status))
        .collect();
    let (server, clients) = trace_of(&receiver, &trace_id).await;
    assert_eq!(server.parent_span_id, parent);
    assert_eq!(
        clients.len(),
        upstream.len(),
        "one span per upstream attempt: {upstream:?} {clients:#?}"
    );
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    // The throttled attempt's span ends when it failed, before the backoff, not when the retry
    // starts.
    assert!(
        clients[1].start_unix_nano - clients[0].end_unix_nano >= 150_000_000,
        "{clients:#?}"
    );
    for (i, (span, (model, status))) in clients.iter().zip(&upstream).enumerate() {
        assert_eq!(span.parent_span_id, server.span_id);
        assert_eq!(attr(span, "gen_ai.request.model"), &json!(model));
        assert_eq!(attr(span, "http.response.status_code"), &json!(status));
        assert_eq!(attr(span, "tollgate.attempt"), &json!(i + 1));
        assert_eq!(attr(span, "gen_ai.request.stream"), &json!(true));
        if i + 1 < upstream.len() {
            assert_eq!(*status, 429, "{upstream:?}");
            assert!(model.contains("sonnet"), "{model}");
            assert_eq!(attr(span, "error.type"), &json!("rate_limited"));
            assert_eq!(span.status_code, STATUS_ERROR);
            assert_eq!(attr(span, "tollgate.fallback_index"), &json!(0));
            assert!(attr(span, "gen_ai.usage.output_tokens").is_null());
        } else {
            assert_eq!(*status, 200, "{upstream:?}");
            assert!(model.contains("haiku"), "{model}");
            assert!(attr(span, "error.type").is_null());
            assert_eq!(attr(span, "tollgate.fallback_index"), &json!(1));
            assert_tokens(span, tokens);
        }
    }
    assert_eq!(attr(&server, "gen_ai.request.stream"), &json!(true));
    assert_eq!(
        attr(&server, "gen_ai.response.model"),
        &json!("global.anthropic.claude-haiku-4-5-20251001-v1:0")
    );
    assert_eq!(attr(&server, "tollgate.fallback_index"), &json!(1));
    assert_eq!(attr(&server, "tollgate.attempts"), &json!(upstream.len()));
    assert!(
        attr(&server, "gen_ai.response.time_to_first_chunk")
            .as_f64()
            .is_some_and(|t| t > 0.0),
        "{:#?}",
        server.attributes
    );
    assert_tokens(&server, tokens);

    // 3. A stream the client leaves: the spans end then, as client_closed.
    let (tp, trace_id, _) = traceparent(true);
    let mut resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .header("traceparent", &tp)
        .json(&message(
            "claude-sonnet-4-6",
            "[double:slow:400] a long answer",
            true,
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.expect("a chunk").expect("not the end");
    assert!(!first.is_empty());
    drop(resp);
    let (server, clients) = trace_of(&receiver, &trace_id).await;
    assert_eq!(clients.len(), 1);
    for span in [&server, &clients[0]] {
        assert_eq!(
            attr(span, "error.type"),
            &json!("client_closed"),
            "{span:#?}"
        );
        assert_eq!(attr(span, "http.response.status_code"), &json!(499));
    }

    // 4. A client that leaves before the answer begins (the upstream never answers): the
    //    request's spans end when the gateway drops the request, as client_closed.
    let (tp, trace_id, _) = traceparent(true);
    let left = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .header("traceparent", &tp)
        .timeout(Duration::from_millis(300))
        .json(&message("claude-sonnet-4-6", "[double:hang]", false))
        .send()
        .await;
    assert!(left.is_err_and(|e| e.is_timeout()));
    let (server, clients) = trace_of(&receiver, &trace_id).await;
    assert_eq!(clients.len(), 1);
    for span in [&server, &clients[0]] {
        assert_eq!(
            attr(span, "error.type"),
            &json!("client_closed"),
            "{span:#?}"
        );
        assert!(attr(span, "gen_ai.usage.input_tokens").is_null());
    }

    // 5. A parent that is not sampled: nothing of that trace is exported. The request after it
    //    is: spans leave in the order they end, so once its spans are in, so would those be.
    let (tp, unsampled, _) = traceparent(false);
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .header("traceparent", &tp)
        .json(&message("claude-sonnet-4-6", "not sampled", false))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let (tp, trace_id, _) = traceparent(true);
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .header("traceparent", &tp)
        .json(&message("claude-sonnet-4-6", "sampled", false))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    trace_of(&receiver, &trace_id).await;
    let spans = receiver.spans();
    assert!(in_trace(&spans, &unsampled).is_empty(), "{spans:#?}");
    // Prompts and the virtual key never leave in a span.
    assert_nowhere(&spans, &s.vk);
    assert_nowhere(&spans, "a long answer");
    assert_nowhere(&spans, "Hello");
}

/// Over OTLP/HTTP (protobuf, gzip), configured only by the standard variables; a request without a
/// `traceparent` starts a trace of its own, and a refusal after authentication is traced too.
#[tokio::test]
async fn the_standard_variables_export_over_http_protobuf() {
    let receiver = OtlpReceiver::http().expect("receiver");
    let endpoint = receiver.endpoint();
    let s = setup_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e",
            ),
        ],
    )
    .await;
    let resp = s.post(&message("claude-haiku-4-5", "hi", false)).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
    let spans = receiver
        .wait_for("the request's spans", WAIT, |spans| {
            spans
                .iter()
                .any(|s| attr(s, "tollgate.request_id") == &json!(request_id))
        })
        .await;
    let server = spans
        .iter()
        .find(|s| attr(s, "tollgate.request_id") == &json!(request_id))
        .expect("server span");
    assert_eq!(server.kind, KIND_SERVER);
    assert_eq!(
        receiver.gzip_requests(),
        receiver.requests(),
        "every export compressed"
    );
    assert_eq!(
        server.parent_span_id, "",
        "a root span without a traceparent"
    );
    assert_eq!(server.name, "chat claude-haiku-4-5");
    assert_eq!(server.service_name.as_deref(), Some("tollgate"));
    assert_eq!(
        server.resource.get("deployment.environment.name"),
        Some(&json!("e2e"))
    );
    let (_, clients) = trace_of(&receiver, &server.trace_id).await;
    assert_eq!(clients.len(), 1);
    assert_eq!(
        clients[0].name,
        "chat global.anthropic.claude-haiku-4-5-20251001-v1:0"
    );
    // The setup's count_tokens calls are traced with their own operation name.
    assert!(
        spans.iter().any(|s| s.kind == KIND_SERVER
            && s.name == "count_tokens claude-sonnet-4-6"
            && attr(s, "gen_ai.operation.name") == &json!("count_tokens")),
        "{spans:#?}"
    );

    // A refusal once the key is known (a body that is not JSON) is a server span with its
    // error, no attempt; one before (no key) is not traced.
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .bearer_auth(&s.vk)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 400);
    let refused_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .json(&message("claude-haiku-4-5", "no key", false))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 401);
    let unauthenticated_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
    // Spans leave in the order they end: once this one is in, the 401's would be.
    let resp = s.post(&message("claude-haiku-4-5", "after", false)).await;
    let last_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
    let spans = receiver
        .wait_for("the last request's span", WAIT, |spans| {
            spans
                .iter()
                .any(|s| attr(s, "tollgate.request_id") == &json!(last_id))
        })
        .await;
    let refused = spans
        .iter()
        .find(|s| attr(s, "tollgate.request_id") == &json!(refused_id))
        .expect("the refusal's span");
    assert_eq!(refused.name, "chat");
    assert_eq!(attr(refused, "http.response.status_code"), &json!(400));
    assert_eq!(attr(refused, "error.type"), &json!("invalid_request"));
    assert!(in_trace(&spans, &refused.trace_id).len() == 1);
    assert!(
        !spans
            .iter()
            .any(|s| attr(s, "tollgate.request_id") == &json!(unauthenticated_id))
    );
}

/// With no endpoint configured nothing is exported: a collector on the default OTLP ports
/// (4318 HTTP, 4317 gRPC) hears nothing, though requests carried a `traceparent` and the
/// gateway stopped gracefully (when export is on, that flushes every span). `OTEL_SDK_DISABLED`
/// turns export off even with an endpoint.
#[tokio::test]
async fn nothing_is_exported_without_an_endpoint() {
    let default_http = OtlpReceiver::http_on(([127, 0, 0, 1], 4318).into())
        .expect("this test needs 127.0.0.1:4318 free (the default OTLP/HTTP port)");
    let default_grpc = OtlpReceiver::grpc_on(([127, 0, 0, 1], 4317).into())
        .expect("this test needs 127.0.0.1:4317 free (the default OTLP/gRPC port)");
    let configured = OtlpReceiver::http().expect("receiver");
    let configured_endpoint = configured.endpoint();
    let cases: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "no endpoint",
            vec![
                ("OTEL_SERVICE_NAME", "tollgate-off"),
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ],
        ),
        (
            "OTEL_SDK_DISABLED",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", configured_endpoint.as_str()),
                ("OTEL_SDK_DISABLED", "true"),
            ],
        ),
    ];
    for (case, env) in cases {
        let mut s = setup_with_env(&[], &env).await;
        for stream in [false, true] {
            let (tp, _, _) = traceparent(true);
            let resp = s
                .http
                .post(s.gw.url("/anthropic/v1/messages"))
                .header("x-api-key", &s.vk)
                .header("traceparent", &tp)
                .json(&message("claude-sonnet-4-6", "hi", stream))
                .send()
                .await
                .expect("call");
            assert_eq!(resp.status(), 200, "{case}");
            resp.bytes().await.expect("body");
        }
        assert!(
            !s.gw.output().contains("exporting traces"),
            "{case}: {}",
            s.gw.output()
        );
        assert!(
            s.gw.terminate(Duration::from_secs(20)),
            "{case}: stops gracefully"
        );
        assert!(
            s.gw.output().contains("tollgate stopped"),
            "{case}: {}",
            s.gw.output()
        );
        for (name, r) in [
            ("4318", &default_http),
            ("4317", &default_grpc),
            ("configured", &configured),
        ] {
            assert_eq!(r.requests(), 0, "{case}: the {name} receiver was contacted");
        }
    }
}

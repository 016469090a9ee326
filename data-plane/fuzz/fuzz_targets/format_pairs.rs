//! The format pairs beyond Bedrock InvokeModel on arbitrary input: OpenAI Chat Completions and
//! Responses clients (`openai::{chat_ingress, responses_ingress}`), OpenAI-compatible upstreams
//! (`openai::chat_egress`), Bedrock Converse (`bedrock::converse`) and Vertex AI (`vertex`).
//!
//! The first byte picks what the rest is fed to:
//!
//! | byte % 4 | input | checks |
//! |---|---|---|
//! | 0 | a client's request body | both OpenAI ingresses and, when it parses as an Anthropic body, the egress, Converse and Vertex translations produce JSON objects; the ingresses keep the client's `model` |
//! | 1 | an answer body | the non-streaming answer translations produce JSON objects or errors |
//! | 2 | an Anthropic SSE stream | `ChatStream` and `ResponsesStream` give the same bytes whole, byte by byte and in input-derived splits; every `data:` line is JSON (or `[DONE]`) |
//! | 3 | an upstream stream | `ChatToAnthropic` (OpenAI SSE) and `ConverseStream` (event stream) give the same output whole and in splits |
//!
//! No input may panic.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_fuzz::{chunks, splits};
use tollgate_protocol::bedrock::{RequestBody, converse};
use tollgate_protocol::openai::{chat_egress, chat_ingress, responses_ingress};
use tollgate_protocol::vertex;

fn is_object(json: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(json), Ok(Value::Object(_)))
}

fn requests(body: &[u8]) {
    let opts = chat_ingress::RequestOptions {
        default_max_tokens: 4096,
    };
    if let Ok(t) = chat_ingress::request(body, &opts) {
        let out: Value = serde_json::from_slice(&t.body).expect("chat translation is JSON");
        assert_eq!(out["model"].as_str(), Some(t.model.as_str()));
        assert!(out["max_tokens"].as_u64().is_some());
    }
    let opts = responses_ingress::RequestOptions {
        default_max_tokens: 4096,
    };
    if let Ok(t) = responses_ingress::request(body, &opts) {
        let out: Value = serde_json::from_slice(&t.body).expect("responses translation is JSON");
        assert_eq!(out["model"].as_str(), Some(t.model.as_str()));
    }
    let Ok(parsed) = RequestBody::parse(body) else {
        return;
    };
    let egress = chat_egress::RequestOptions {
        stream: parsed.stream,
        ..Default::default()
    };
    if let Ok(t) = chat_egress::request(&parsed, "fuzz-model", &egress) {
        let out: Value = serde_json::from_slice(&t.body).expect("egress translation is JSON");
        assert_eq!(out["model"], "fuzz-model");
    }
    if let Ok(t) = converse::request(&parsed) {
        assert!(is_object(&t.body), "converse translation is a JSON object");
    }
    for call in [
        vertex::Call::Predict,
        vertex::Call::StreamPredict,
        vertex::Call::CountTokens,
    ] {
        let out = vertex::body(&parsed, "fuzz-model", call);
        assert!(is_object(&out), "vertex body is a JSON object");
    }
}

fn answers(body: &[u8]) {
    if let Ok(out) = chat_ingress::response(body, "m", 0) {
        assert!(is_object(&out));
    }
    let ctx = responses_ingress::ResponseContext::new("m");
    if let Ok(out) = responses_ingress::response(body, &ctx, 0) {
        assert!(is_object(&out));
    }
    if let Ok(out) = chat_egress::message(body, "m") {
        assert!(is_object(&out));
    }
    if let Ok(out) = converse::message(body, "m", "msg_fuzz") {
        assert!(is_object(&out));
    }
    let _ = chat_egress::error(500, body);
    let _ = chat_ingress::error_from_anthropic(500, body);
    let _ = vertex::map_error(500, body);
}

/// Feeds `data` in chunks of `lens` to a stream translation, its end included.
fn feed<S>(data: &[u8], lens: &[usize], mut s: S, push: fn(&mut S, &[u8]) -> Bytes, finish: fn(&mut S) -> Bytes) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks(data, lens) {
        out.extend_from_slice(&push(&mut s, chunk));
    }
    out.extend_from_slice(&finish(&mut s));
    out
}

fn check_openai_sse(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("UTF-8");
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data: ")
            && data != "[DONE]"
        {
            assert!(
                serde_json::from_str::<Value>(data).is_ok(),
                "not JSON: {data}"
            );
        }
    }
}

fn client_streams(data: &[u8]) {
    let lens = [vec![data.len()], vec![1; data.len()], splits(data, 37)];
    let chat = |lens: &[usize]| {
        feed(
            data,
            lens,
            chat_ingress::ChatStream::new("m", 0, true),
            |s, c| s.push(c),
            |s| s.finish(),
        )
    };
    let whole = chat(&lens[0]);
    check_openai_sse(&whole);
    for l in &lens[1..] {
        assert_eq!(chat(l), whole, "chat stream splits");
    }
    let responses = |lens: &[usize]| {
        feed(
            data,
            lens,
            responses_ingress::ResponsesStream::new(responses_ingress::ResponseContext::new("m"), 0),
            |s, c| s.push(c),
            |s| s.finish(),
        )
    };
    let whole = responses(&lens[0]);
    check_openai_sse(&whole);
    for l in &lens[1..] {
        assert_eq!(responses(l), whole, "responses stream splits");
    }
}

fn upstream_streams(data: &[u8]) {
    let egress = |lens: &[usize]| {
        let mut s = chat_egress::ChatToAnthropic::new("m");
        let mut out = Vec::new();
        for chunk in chunks(data, lens) {
            match s.push(chunk) {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return (out, true),
            }
        }
        let failed = match s.finish() {
            Ok(b) => {
                out.extend_from_slice(&b);
                false
            }
            Err(_) => true,
        };
        (out, failed)
    };
    let whole = egress(&[data.len()]);
    assert_eq!(egress(&splits(data, 29)), whole, "egress stream splits");
    let conv = |lens: &[usize]| {
        let mut s = converse::ConverseStream::new("m", "msg_fuzz");
        let mut out = Vec::new();
        for chunk in chunks(data, lens) {
            match s.push(chunk) {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return (out, true),
            }
        }
        let failed = match s.finish() {
            Ok(b) => {
                out.extend_from_slice(&b);
                false
            }
            Err(_) => true,
        };
        (out, failed)
    };
    let whole = conv(&[data.len()]);
    assert_eq!(conv(&splits(data, 29)), whole, "converse stream splits");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => requests(rest),
        1 => answers(rest),
        2 => client_streams(rest),
        _ => upstream_streams(rest),
    }
});

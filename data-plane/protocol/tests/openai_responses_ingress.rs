//! `openai::responses_ingress`: OpenAI Responses requests → Anthropic, Anthropic answers →
//! Responses. Golden against request bodies captured from the official OpenAI Python SDK
//! (openai 3.63.0, `client.responses.create` / `.stream` pointed at a local server) and from
//! Codex CLI 0.171.0 (`codex exec`, custom provider with `wire_api = "responses"`; long prompt
//! texts and tool descriptions in that capture are shortened, shapes untouched).
//!
//! Expected outputs live next to the inputs (`testdata/openai/responses-*`). To regenerate them
//! after an intended change: `UPDATE_GOLDEN=1 cargo test -p tollgate-protocol --test
//! openai_responses_ingress`, then review the diff.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{TESTDATA, read};
use tollgate_protocol::openai::responses_ingress::{
    ENCRYPTED_CONTENT_PREFIX, RequestOptions, ResponseContext, ResponsesError, ResponsesStream,
    Translated, request, response,
};
use tollgate_protocol::sse::SseParser;

const OPTS: RequestOptions = RequestOptions {
    default_max_tokens: 8192,
};
const CREATED: u64 = 1_796_418_481;

/// Compares `actual` with `testdata/openai/<rel>`, or writes it there with `UPDATE_GOLDEN=1`.
fn golden(rel: &str, actual: &[u8]) {
    let path = format!("{TESTDATA}/openai/{rel}");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    if rel.ends_with(".json") {
        let a: Value = serde_json::from_slice(actual).unwrap();
        let e: Value = serde_json::from_slice(&expected).unwrap();
        assert_eq!(
            a,
            e,
            "{rel} differs:\n{}",
            serde_json::to_string_pretty(&a).unwrap()
        );
    } else {
        assert_eq!(
            String::from_utf8_lossy(actual),
            String::from_utf8_lossy(&expected),
            "{rel} differs"
        );
    }
}

fn pretty(body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).unwrap();
    let mut out = serde_json::to_vec_pretty(&v).unwrap();
    out.push(b'\n');
    out
}

fn translate(rel: &str) -> Translated {
    request(&read(&format!("openai/{rel}")), &OPTS).unwrap()
}

fn body(t: &Translated) -> Value {
    serde_json::from_slice(&t.body).unwrap()
}

fn translate_json(v: Value) -> Result<Translated, ResponsesError> {
    request(&serde_json::to_vec(&v).unwrap(), &OPTS)
}

fn ok_json(v: Value) -> Value {
    body(&translate_json(v).unwrap())
}

// === Requests: captured SDK bodies ===

#[test]
fn sdk_plain_input() {
    let t = translate("responses-sdk-plain.json");
    assert_eq!(t.model, "claude-sonnet-4-5");
    assert!(!t.stream);
    assert!(t.betas.is_empty());
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
    assert_eq!(
        body(&t),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 8192,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Write a haiku about toll roads."}]}],
        })
    );
    // Key order is part of the contract: model first.
    assert!(
        t.body
            .starts_with(br#"{"model":"claude-sonnet-4-5","max_tokens":8192,"#)
    );
}

#[test]
fn sdk_instructions_and_images() {
    let t = translate("responses-sdk-instructions-images.json");
    golden(
        "responses-sdk-instructions-images.anthropic.json",
        &pretty(&t.body),
    );
    let b = body(&t);
    assert_eq!(
        b["system"],
        json!([{"type": "text", "text": "You are a concise assistant."}])
    );
    assert_eq!(b["max_tokens"], 512);
    assert_eq!(b["temperature"], 0.2);
    let content = &b["messages"][0]["content"];
    assert_eq!(content[1]["source"]["type"], "base64");
    assert_eq!(content[1]["source"]["media_type"], "image/png");
    assert_eq!(
        content[2]["source"],
        json!({"type": "url", "url": "https://example.com/toll.jpg"})
    );
}

#[test]
fn sdk_tool_round_trip() {
    let t = translate("responses-sdk-tools-round-trip.json");
    golden(
        "responses-sdk-tools-round-trip.anthropic.json",
        &pretty(&t.body),
    );
    let b = body(&t);
    assert_eq!(
        b["tools"],
        json!([{
            "name": "get_weather",
            "description": "Get the weather for a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false},
        }])
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(b["metadata"], json!({"user_id": "user-42"}));
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        3,
        "user, assistant (2 tool uses), user (2 results)"
    );
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(
        messages[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "4C, snow"}]},
        ])
    );
    assert_eq!(t.dropped, ["metadata", "tools.strict"]);
}

#[test]
fn sdk_reasoning_stream_json_schema() {
    let t = translate("responses-sdk-reasoning-json-schema.json");
    golden(
        "responses-sdk-reasoning-json-schema.anthropic.json",
        &pretty(&t.body),
    );
    assert!(t.stream);
    let b = body(&t);
    assert_eq!(
        b["system"],
        json!([{"type": "text", "text": "Answer in JSON."}])
    );
    // max_output_tokens 4096 is explicit: high (16384) is cut to fit under it.
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "budget_tokens": 4095})
    );
    assert_eq!(b["output_config"]["format"]["type"], "json_schema");
    assert_eq!(
        b["output_config"]["format"]["schema"]["required"],
        json!(["p"])
    );
    assert_eq!(b["stream"], true);
    assert!(t.body.ends_with(br#","stream":true}"#));
    assert!(t.betas.is_empty(), "no tools: no interleaved thinking");
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
}

// === Requests: Codex CLI ===

#[test]
fn codex_first_turn() {
    let t = translate("responses-codex-0.171.0-first-turn.json");
    golden(
        "responses-codex-0.171.0-first-turn.anthropic.json",
        &pretty(&t.body),
    );
    assert!(t.stream);
    assert_eq!(t.betas, ["interleaved-thinking-2025-05-14"]);
    assert_eq!(
        t.dropped,
        ["client_metadata", "tools[8] (web_search)"],
        "store:false and include reasoning.encrypted_content are served"
    );
    let b = body(&t);
    // Codex 0.171 sends no `instructions`: its prompt is in developer messages.
    let system = b["system"].as_array().unwrap();
    assert_eq!(system.len(), 3);
    assert_eq!(system[2]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert_eq!(b["max_tokens"], 8192 + 8192, "raised above the budget");
    let names: Vec<&str> = b["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"exec_command"));
    assert!(names.contains(&"multi_agent_v1__close_agent"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("web_search")));
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "the two user items merge");
    let last = messages[0]["content"].as_array().unwrap().last().unwrap();
    assert_eq!(last["text"], "List the files in this directory.");
    assert_eq!(last["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(b["tool_choice"], json!({"type": "auto"}));
}

/// The second request Codex 0.171.0 sent after it ran the tool call streamed by
/// [`ResponsesStream`] from `responses-anthropic-stream-thinking-tool.sse` (served to the real
/// binary by a local server): the thinking block comes back byte for byte.
#[test]
fn codex_tool_turn_rebuilds_the_thinking_block() {
    let t = translate("responses-codex-0.171.0-tool-turn.json");
    golden(
        "responses-codex-0.171.0-tool-turn.anthropic.json",
        &pretty(&t.body),
    );
    let b = body(&t);
    let messages = b["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(
        assistant["content"][0],
        json!({
            "type": "thinking",
            "thinking": "The user wants the files listed; I will run ls. Ünïcödé ✓",
            "signature": "EqQBCkYIBxgCKkDk0bWl+q0zT6N9c/8Pj7Yd3u1Q2vG0uFf0mJ3v1s8Kx2yq5Rr0Q4n3p2o1m0l9k8j7i6h5g4f3e2d1c0b9a8EgzTollgateStream",
        })
    );
    assert_eq!(assistant["content"][1]["type"], "text");
    assert_eq!(
        assistant["content"][2],
        json!({"type": "tool_use", "id": "toolu_01StreamExec", "name": "exec_command", "input": {"cmd": "ls -la"}})
    );
    let last = &messages[messages.len() - 1];
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][0]["tool_use_id"], "toolu_01StreamExec");
    assert!(b.get("thinking").is_some(), "the turn keeps its thinking");
}

// === Requests: mappings one by one ===

fn with_input(input: Value) -> Value {
    json!({"model": "m", "input": input})
}

#[test]
fn roles_and_easy_messages() {
    let b = ok_json(json!({
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "system", "content": "S1"},
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello", "annotations": []}, {"type": "refusal", "refusal": "no"}]},
            {"role": "developer", "content": [{"type": "input_text", "text": "D1"}]},
            {"role": "user", "content": [{"type": "input_text", "text": ""}, {"type": "input_text", "text": "again"}]},
        ],
    }));
    assert_eq!(
        b["system"],
        json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "S1"}, {"type": "text", "text": "D1"}])
    );
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "no"}]},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ])
    );
}

#[test]
fn files_and_function_outputs() {
    let pdf = "JVBERi0xLjQK";
    let text = BASE64.encode("plain notes");
    let b = ok_json(with_input(json!([
        {"role": "user", "content": [
            {"type": "input_file", "filename": "a.pdf", "file_data": format!("data:application/pdf;base64,{pdf}")},
            {"type": "input_file", "filename": "b.pdf", "file_data": pdf},
            {"type": "input_file", "file_data": format!("data:text/plain;base64,{text}")},
            {"type": "input_file", "file_url": "https://example.com/c.pdf"},
        ]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": {"content": "boom", "success": false}},
        {"role": "user", "content": "next"},
    ])));
    let docs = &b["messages"][0]["content"];
    assert_eq!(
        docs[0],
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}, "title": "a.pdf"})
    );
    assert_eq!(docs[1]["source"]["media_type"], "application/pdf");
    assert_eq!(
        docs[2]["source"],
        json!({"type": "text", "media_type": "text/plain", "data": "plain notes"})
    );
    assert_eq!(docs[3]["source"]["type"], "url");
    assert_eq!(b["messages"][1]["content"][0]["input"], json!({}));
    assert_eq!(
        b["messages"][2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "c1", "content": "boom", "is_error": true},
            {"type": "text", "text": "next"},
        ])
    );
}

#[test]
fn namespace_and_custom_tools_map_both_ways() {
    let t = translate_json(json!({
        "model": "m",
        "input": [
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "c1", "namespace": "crm", "name": "lookup", "arguments": "{\"id\":1}"},
            {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
        ],
        "tools": [
            {"type": "namespace", "name": "crm", "description": "CRM", "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}}}]},
            {"type": "custom", "name": "apply_patch", "description": "Patch files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "local_shell"},
        ],
        "tool_choice": {"type": "function", "namespace": "crm", "name": "lookup"},
    }))
    .unwrap();
    let b = body(&t);
    assert_eq!(b["tools"][0]["name"], "crm__lookup");
    assert_eq!(b["tools"][1]["name"], "apply_patch");
    assert_eq!(b["tools"][1]["input_schema"]["required"], json!(["input"]));
    assert!(
        b["tools"][1]["description"]
            .as_str()
            .unwrap()
            .ends_with("lark grammar:\nstart: x")
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "tool", "name": "crm__lookup"})
    );
    assert_eq!(b["messages"][1]["content"][0]["name"], "crm__lookup");
    assert_eq!(
        b["messages"][1]["content"][1]["input"],
        json!({"input": "*** Begin Patch"})
    );
    assert_eq!(t.dropped, ["tools[2] (local_shell)"]);

    // Back: the calls carry the namespace and the custom tool's raw input.
    let message = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "crm__lookup", "input": {"id": 2}},
            {"type": "tool_use", "id": "t2", "name": "apply_patch", "input": {"input": "*** End Patch"}},
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1},
    });
    let r: Value = serde_json::from_slice(
        &response(&serde_json::to_vec(&message).unwrap(), &t.context, CREATED).unwrap(),
    )
    .unwrap();
    assert_eq!(
        r["output"][0],
        json!({"id": "fc_1_0", "type": "function_call", "status": "completed", "call_id": "t1", "name": "lookup", "arguments": "{\"id\":2}", "namespace": "crm"})
    );
    assert_eq!(
        r["output"][1],
        json!({"id": "ctc_1_1", "type": "custom_tool_call", "status": "completed", "call_id": "t2", "name": "apply_patch", "input": "*** End Patch"})
    );
    assert_eq!(
        r["tools"].as_array().unwrap().len(),
        2,
        "echoes the served tools"
    );
    assert_eq!(r["tool_choice"]["name"], "lookup");
}

#[test]
fn effort_table_and_budgets() {
    let budget = |effort: &str, max: Option<u32>| {
        let mut req = json!({"model": "m", "input": "x", "reasoning": {"effort": effort}});
        if let Some(m) = max {
            req["max_output_tokens"] = json!(m);
        }
        let t = translate_json(req).unwrap();
        let b = body(&t);
        (
            b.get("thinking").cloned(),
            b["max_tokens"].as_u64().unwrap(),
            t.dropped,
        )
    };
    assert_eq!(budget("none", None), (None, 8192, vec![]));
    let on = |n: u64| Some(json!({"type": "enabled", "budget_tokens": n}));
    assert_eq!(budget("minimal", None), (on(1024), 8192, vec![]));
    assert_eq!(budget("low", None), (on(2048), 8192, vec![]));
    assert_eq!(budget("medium", None), (on(8192), 16384, vec![]));
    assert_eq!(budget("high", None), (on(16384), 24576, vec![]));
    assert_eq!(budget("xhigh", None), (on(32768), 40960, vec![]));
    assert_eq!(budget("high", Some(64000)), (on(16384), 64000, vec![]));
    assert_eq!(budget("high", Some(2000)), (on(1999), 2000, vec![]));
    let (thinking, max, dropped) = budget("low", Some(1024));
    assert_eq!((thinking, max), (None, 1024));
    assert_eq!(dropped.len(), 1);

    // Thinking on: temperature and top_p are left out.
    let t = translate_json(json!({"model": "m", "input": "x", "reasoning": {"effort": "low"}, "temperature": 0.5, "top_p": 0.9})).unwrap();
    assert!(body(&t).get("temperature").is_none());
    assert_eq!(
        t.dropped,
        ["temperature (thinking is on)", "top_p (thinking is on)"]
    );
}

#[test]
fn a_tool_turn_without_its_reasoning_turns_thinking_off() {
    let t = translate_json(json!({
        "model": "m",
        "reasoning": {"effort": "medium"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "input": [
            {"role": "user", "content": "go"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ],
    }))
    .unwrap();
    assert!(body(&t).get("thinking").is_none());
    assert!(t.betas.is_empty());
    assert_eq!(t.dropped.len(), 2, "{:?}", t.dropped);
    assert!(t.dropped[0].starts_with("input[1] (reasoning without encrypted_content"));
}

#[test]
fn foreign_encrypted_content_is_dropped() {
    let t = translate_json(with_input(json!([
        {"role": "user", "content": "a"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABoOpenAIciphertext"},
        {"type": "reasoning", "summary": [], "encrypted_content": format!("{ENCRYPTED_CONTENT_PREFIX}{}", BASE64.encode(r#"{"type":"text","text":"x"}"#))},
        {"role": "assistant", "content": "b"},
    ])))
    .unwrap();
    assert_eq!(
        body(&t)["messages"][1]["content"],
        json!([{"type": "text", "text": "b"}])
    );
    assert_eq!(t.dropped.len(), 2);
}

#[test]
fn tool_choice_forms() {
    let tools = json!([{"type": "function", "name": "f"}]);
    let choice = |c: Value, parallel: Option<bool>| {
        let mut req = json!({"model": "m", "input": "x", "tools": tools, "tool_choice": c});
        if let Some(p) = parallel {
            req["parallel_tool_calls"] = json!(p);
        }
        ok_json(req)["tool_choice"].clone()
    };
    assert_eq!(choice(json!("auto"), None), json!({"type": "auto"}));
    assert_eq!(choice(json!("none"), Some(false)), json!({"type": "none"}));
    assert_eq!(
        choice(json!("required"), Some(false)),
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        choice(json!({"type": "function", "name": "f"}), None),
        json!({"type": "tool", "name": "f"})
    );
    assert_eq!(
        ok_json(json!({"model": "m", "input": "x", "tools": tools}))["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    // No served tool, no tool_choice.
    let b = ok_json(
        json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "required"}),
    );
    assert!(b.get("tools").is_none() && b.get("tool_choice").is_none());
}

#[test]
fn accepted_and_listed_members() {
    let t = translate_json(json!({
        "model": "m", "input": "x", "store": true, "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
        "truncation": "auto", "service_tier": "flex", "stream_options": {"include_obfuscation": false},
        "text": {"format": {"type": "json_object"}, "verbosity": "low"}, "safety_identifier": "sid", "user": "u",
        "previous_response_id": null, "background": false, "top_logprobs": 0, "prompt_cache_key": "k",
    }))
    .unwrap();
    assert_eq!(
        t.dropped,
        [
            "store",
            "include: message.output_text.logprobs",
            "truncation",
            "service_tier",
            "stream_options",
            "top_logprobs",
            "text.format (json_object)",
            "text.verbosity",
        ]
    );
    let b = body(&t);
    assert_eq!(b["metadata"], json!({"user_id": "sid"}));
    assert!(b.get("output_config").is_none());
    assert_eq!(
        b["messages"][0]["content"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
}

#[test]
fn every_refusal_is_a_typed_400() {
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({"input": "x"}), Some("model")),
        (json!({"model": "m"}), Some("input")),
        (json!({"model": "m", "input": []}), Some("input")),
        (json!({"model": "m", "input": 5}), Some("input")),
        (json!({"model": 1, "input": "x"}), Some("model")),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            Some("previous_response_id"),
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            Some("conversation"),
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            Some("background"),
        ),
        (
            json!({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}),
            Some("prompt"),
        ),
        (
            with_input(json!([{"type": "item_reference", "id": "msg_1"}])),
            Some("input[0]"),
        ),
        (
            json!({"model": "m", "input": "x", "temperature": 1.5}),
            Some("temperature"),
        ),
        (
            json!({"model": "m", "input": "x", "temperature": "hot"}),
            Some("temperature"),
        ),
        (
            json!({"model": "m", "input": "x", "top_p": 2}),
            Some("top_p"),
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            Some("max_output_tokens"),
        ),
        (
            json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
            Some("reasoning.effort"),
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}),
            Some("text.format.schema"),
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            Some("text.format.type"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": {}}),
            Some("tools"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"name": "f"}]}),
            Some("tools[0]"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            Some("tools[0]"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]}),
            Some("tools[1]"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}),
            Some("tools[0].parameters"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]}),
            Some("tools[0].tools[0]"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "web_search"}}),
            Some("tool_choice"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}}),
            Some("tool_choice.name"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": "sometimes"}),
            Some("tool_choice"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]),
            ),
            Some("input[0].content[0].file_id"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}]),
            ),
            Some("input[0].content[0].image_url"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png,abc"}]}]),
            ),
            Some("input[0].content[0].image_url"),
        ),
        (
            with_input(json!([{"role": "user", "content": [{"type": "input_image"}]}])),
            Some("input[0].content[0]"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]),
            ),
            Some("input[0].content[0].file_id"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_file", "file_data": "data:image/png;base64,AA=="}]}]),
            ),
            Some("input[0].content[0].file_data"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_file", "file_data": "AAAA"}]}]),
            ),
            Some("input[0].content[0].file_data"),
        ),
        (
            with_input(
                json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
            ),
            Some("input[0].content[0]"),
        ),
        (
            with_input(json!([{"role": "user", "content": [{"type": "video"}]}])),
            Some("input[0].content[0]"),
        ),
        (
            with_input(
                json!([{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]),
            ),
            Some("input[0].content[0]"),
        ),
        (
            with_input(
                json!([{"role": "system", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]),
            ),
            Some("input[0].content[0]"),
        ),
        (
            with_input(json!([{"role": "tool", "content": "x"}])),
            Some("input[0].role"),
        ),
        (with_input(json!([{"content": "x"}])), Some("input[0]")),
        (with_input(json!(["x"])), Some("input[0]")),
        (
            with_input(
                json!([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}]),
            ),
            Some("input[0].arguments"),
        ),
        (
            with_input(
                json!([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]),
            ),
            Some("input[0].arguments"),
        ),
        (
            with_input(json!([{"type": "function_call", "name": "f", "arguments": "{}"}])),
            Some("input[0].call_id"),
        ),
        (
            with_input(json!([{"type": "function_call_output", "call_id": "c", "output": 5}])),
            Some("input[0].output"),
        ),
        (
            with_input(json!([{"role": "user", "content": 5}])),
            Some("input[0].content"),
        ),
    ];
    for (req, param) in cases {
        let err = translate_json(req.clone()).expect_err(&req.to_string());
        assert_eq!(err.param(), param, "{req}: {err}");
        assert!(!err.to_string().is_empty());
    }
    for (raw, want) in [
        (&b"{"[..], "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (br#"{"model":"a","model":"b","input":"x"}"#, "duplicate"),
    ] {
        let err = request(raw, &OPTS).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(err.param(), None);
    }
    let err = translate_json(json!({"model": "m", "input": "x", "previous_response_id": "r"}))
        .unwrap_err();
    assert!(err.to_string().contains("stateless"), "{err}");
}

// === Answers ===

fn codex_context() -> ResponseContext {
    translate("responses-codex-0.171.0-first-turn.json").context
}

#[test]
fn text_answer() {
    let t = translate("responses-sdk-plain.json");
    let out = response(
        &read("openai/responses-anthropic-text.json"),
        &t.context,
        CREATED,
    )
    .unwrap();
    golden("responses-anthropic-text.response.json", &pretty(&out));
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["id"], "resp_01TextAnswer");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "claude-sonnet-4-5");
    assert_eq!(r["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 2062, "input_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 0}, "output_tokens": 25, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2087})
    );
}

#[test]
fn thinking_and_tool_answer() {
    let out = response(
        &read("openai/responses-anthropic-thinking-tool.json"),
        &codex_context(),
        CREATED,
    )
    .unwrap();
    golden(
        "responses-anthropic-thinking-tool.response.json",
        &pretty(&out),
    );
    let r: Value = serde_json::from_slice(&out).unwrap();
    let types: Vec<&str> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "reasoning",
            "reasoning",
            "message",
            "function_call",
            "function_call"
        ]
    );
    assert_eq!(r["output"][4]["namespace"], "multi_agent_v1");
    assert_eq!(r["output"][4]["name"], "close_agent");
    assert_eq!(r["usage"]["input_tokens"], 4212);
    assert_eq!(r["parallel_tool_calls"], true);

    // The reasoning items, sent back, rebuild the exact blocks.
    let source: Value =
        serde_json::from_slice(&read("openai/responses-anthropic-thinking-tool.json")).unwrap();
    let mut input = vec![json!({"role": "user", "content": "list"})];
    input.extend(r["output"].as_array().unwrap().iter().cloned());
    let back = body(&translate_json(json!({"model": "m", "input": input, "tools": [
        {"type": "function", "name": "exec_command"},
        {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "close_agent"}]},
    ]})).unwrap());
    assert_eq!(back["messages"][1]["content"], source["content"]);
}

#[test]
fn incomplete_answers_and_bad_upstream() {
    let ctx = ResponseContext::new("claude-x");
    let r: Value = serde_json::from_slice(
        &response(
            &read("openai/responses-anthropic-max-tokens.json"),
            &ctx,
            CREATED,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(r["status"], "incomplete");
    assert_eq!(
        r["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(r["model"], "claude-x");
    let refusal = br#"{"id":"msg_r","type":"message","content":[],"stop_reason":"refusal","usage":{"input_tokens":1,"output_tokens":0}}"#;
    let r: Value = serde_json::from_slice(&response(refusal, &ctx, CREATED).unwrap()).unwrap();
    assert_eq!(r["incomplete_details"]["reason"], "content_filter");
    for bad in [
        &b"nope"[..],
        b"{}",
        br#"{"id":"x","content":{}}"#,
        br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#,
    ] {
        assert!(matches!(
            response(bad, &ctx, CREATED),
            Err(ResponsesError::Upstream(_))
        ));
    }
}

// === Streams ===

fn stream_all(ctx: &ResponseContext, input: &[u8], sizes: &mut dyn FnMut() -> usize) -> Vec<u8> {
    let mut s = ResponsesStream::new(ctx.clone(), CREATED);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        out.extend_from_slice(&s.push(&rest[..n]));
        rest = &rest[n..];
    }
    out.extend_from_slice(&s.finish());
    assert!(s.ended());
    out
}

fn events(sse: &[u8]) -> Vec<(String, Value)> {
    let mut p = SseParser::new();
    p.push(sse);
    std::iter::from_fn(|| p.next_event())
        .map(|e| (e.event.unwrap(), serde_json::from_str(&e.data).unwrap()))
        .collect()
}

#[test]
fn thinking_tool_stream() {
    let input = read("openai/responses-anthropic-stream-thinking-tool.sse");
    let ctx = codex_context();
    let out = stream_all(&ctx, &input, &mut || usize::MAX);
    golden(
        "responses-anthropic-stream-thinking-tool.responses.sse",
        &out,
    );
    assert!(out.windows(8).any(|w| w == b": ping\n\n"));
    let evs = events(&out);
    for (i, (name, data)) in evs.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i as u64);
    }
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let completed = &evs.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["usage"]["input_tokens"], 11200);
    assert_eq!(
        completed["usage"]["input_tokens_details"]["cached_tokens"],
        9000
    );
    assert_eq!(completed["usage"]["output_tokens"], 96);
    assert_eq!(completed["output"][2]["arguments"], "{\"cmd\": \"ls -la\"}");
    // The streamed items are the non-streamed ones.
    for (name, data) in &evs {
        if name == "response.output_item.done" {
            let i = data["output_index"].as_u64().unwrap() as usize;
            assert_eq!(completed["output"][i], data["item"]);
        }
    }
    let encrypted = completed["output"][0]["encrypted_content"]
        .as_str()
        .unwrap();
    let block: Value = serde_json::from_slice(
        &BASE64
            .decode(encrypted.strip_prefix(ENCRYPTED_CONTENT_PREFIX).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        block["thinking"],
        "The user wants the files listed; I will run ls. Ünïcödé ✓"
    );
    assert!(
        block["signature"]
            .as_str()
            .unwrap()
            .ends_with("TollgateStream")
    );
}

#[test]
fn any_split_gives_the_same_stream() {
    let ctx = codex_context();
    for rel in [
        "openai/responses-anthropic-stream-thinking-tool.sse",
        "openai/responses-anthropic-stream-error.sse",
    ] {
        let input = read(rel);
        let whole = stream_all(&ctx, &input, &mut || usize::MAX);
        let bytewise = stream_all(&ctx, &input, &mut || 1);
        assert_eq!(whole, bytewise, "{rel}");
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let random = stream_all(&ctx, &input, &mut || rng.random_range(1..64));
            assert_eq!(whole, random, "{rel}");
        }
        // CRLF line ends parse the same.
        let crlf = String::from_utf8(input.clone())
            .unwrap()
            .replace('\n', "\r\n");
        assert_eq!(whole, stream_all(&ctx, crlf.as_bytes(), &mut || 5), "{rel}");
    }
}

#[test]
fn error_event_fails_the_response() {
    let out = stream_all(
        &ResponseContext::new("claude-x"),
        &read("openai/responses-anthropic-stream-error.sse"),
        &mut || usize::MAX,
    );
    golden("responses-anthropic-stream-error.responses.sse", &out);
    let evs = events(&out);
    let (name, last) = evs.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(
        last["response"]["error"],
        json!({"code": "server_error", "message": "Overloaded"})
    );
    assert_eq!(
        evs.iter().filter(|(n, _)| n == "response.failed").count(),
        1
    );
    assert!(
        !evs.iter().any(|(n, _)| n == "response.output_item.done"),
        "the unfinished text is not reported as done"
    );
}

#[test]
fn error_codes_codex_acts_on() {
    let code = |ty: &str, message: &str| {
        let sse = format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": ty, "message": message}})
        );
        let mut s = ResponsesStream::new(ResponseContext::new("m"), CREATED);
        let out = s.push(sse.as_bytes());
        assert!(s.ended());
        assert!(
            s.push(b"event: ping\ndata: {}\n\n").is_empty(),
            "nothing after the end"
        );
        let evs = events(&out);
        assert_eq!(
            evs[0].0, "response.created",
            "a lone error still opens the response"
        );
        evs.last().unwrap().1["response"]["error"]["code"].clone()
    };
    assert_eq!(code("rate_limit_error", "slow down"), "rate_limit_exceeded");
    assert_eq!(
        code(
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum"
        ),
        "context_length_exceeded"
    );
    assert_eq!(code("invalid_request_error", "bad"), "invalid_prompt");
    assert_eq!(code("billing_error", "credit"), "insufficient_quota");
    assert_eq!(code("overloaded_error", "Overloaded"), "server_error");
    assert_eq!(code("something_new", "x"), "server_error");
}

#[test]
fn truncated_and_max_tokens_streams() {
    let input = read("openai/responses-anthropic-stream-thinking-tool.sse");
    let cut = &input[..input.len() / 2];
    let mut s = ResponsesStream::new(codex_context(), CREATED);
    let mut out = s.push(cut).to_vec();
    assert!(!s.ended());
    out.extend_from_slice(&s.finish());
    assert!(s.ended());
    assert!(s.finish().is_empty(), "finish twice: once");
    let evs = events(&out);
    let (name, last) = evs.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");

    // max_tokens ends with response.incomplete.
    let sse = String::from_utf8(input).unwrap().replace(
        r#""stop_reason":"tool_use""#,
        r#""stop_reason":"max_tokens""#,
    );
    let out = stream_all(&codex_context(), sse.as_bytes(), &mut || usize::MAX);
    let evs = events(&out);
    let (name, last) = evs.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );

    // An empty upstream is a failure too.
    let out = stream_all(&ResponseContext::new("m"), b"", &mut || 1);
    assert_eq!(events(&out).last().unwrap().0, "response.failed");
}

#[test]
fn garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(42);
    let stream = read("openai/responses-anthropic-stream-thinking-tool.sse");
    let bodies = [
        read("openai/responses-codex-0.171.0-first-turn.json"),
        read("openai/responses-sdk-tools-round-trip.json"),
        read("openai/responses-anthropic-thinking-tool.json"),
    ];
    let ctx = codex_context();
    for round in 0..300 {
        let src = &bodies[round % bodies.len()];
        let mut bytes = src.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        let _ = request(&bytes, &OPTS);
        let _ = response(&bytes, &ctx, CREATED);
        let mut s = ResponsesStream::new(ctx.clone(), CREATED);
        let mut garbled = stream.clone();
        for _ in 0..rng.random_range(1..16) {
            let i = rng.random_range(0..garbled.len());
            garbled[i] = rng.random();
        }
        let _ = s.push(&garbled);
        let _ = s.finish();
    }
    // Well-formed JSON of every shape at every input position.
    for v in [
        json!(null),
        json!(1),
        json!("s"),
        json!([]),
        json!({}),
        json!([null, 1, {"type": null}]),
    ] {
        let _ = translate_json(
            json!({"model": "m", "input": v.clone(), "tools": v.clone(), "tool_choice": v.clone(), "reasoning": v.clone(), "text": v.clone(), "include": v.clone()}),
        );
        let _ = translate_json(with_input(
            json!([{"type": "message", "role": "user", "content": [v.clone()]}]),
        ));
        let _ = translate_json(with_input(
            json!([{"type": "function_call_output", "call_id": "c", "output": [v.clone()]}]),
        ));
        let _ = response(&serde_json::to_vec(&json!({"id": "m", "content": [v.clone(), {"type": "tool_use", "input": v.clone()}]})).unwrap(), &ctx, CREATED);
        let mut s = ResponsesStream::new(ctx.clone(), CREATED);
        for ty in [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "error",
        ] {
            let _ = s.push(format!("event: {ty}\ndata: {}\n\n", json!({"type": ty, "index": v, "delta": v, "content_block": v, "message": v, "error": v})).as_bytes());
        }
        let _ = s.push(b"event: message_stop\ndata: {}\n\n");
    }
}

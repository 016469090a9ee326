//! The request body's top-level parser and its Bedrock translations on arbitrary input.
//!
//! Input: `BETAS\nBODY`, the value of an `anthropic-beta` header (up to the first newline; split
//! on commas and trimmed as the data plane does) and the request body. Whatever the parser
//! accepts must be a JSON object, and every translation of it must be JSON that keeps the other
//! members byte for byte: toward Bedrock, from a Bedrock-format client (`bedrock::ingress`), and
//! without the thinking blocks another platform signed (`thinking`).

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use tollgate_fuzz::members;
use tollgate_protocol::anthropic::set_model_parsed;
use tollgate_protocol::bedrock::{
    ANTHROPIC_VERSION, BEDROCK_BETAS, BetaField, RequestBody, count_tokens_body_parsed,
    count_tokens_model_id, ingress, invoke_body_parsed, model_path_segment,
};
use tollgate_protocol::thinking::without_thinking;

type Members = Vec<(String, Box<RawValue>)>;

fn get<'a>(members: &'a Members, key: &str) -> Option<&'a str> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| v.get())
}

fn assert_unique_keys(members: &Members, what: &str) {
    for (i, (key, _)) in members.iter().enumerate() {
        assert!(
            !members[..i].iter().any(|(k, _)| k == key),
            "{what}: duplicate key {key:?}"
        );
    }
}

/// Removes `name` from every `cache_control` object in `v`, at any depth.
fn strip_cache_control(v: &mut Value, name: &str) {
    match v {
        Value::Object(o) => {
            for (key, value) in o.iter_mut() {
                if key == "cache_control"
                    && let Value::Object(cc) = value
                {
                    cc.remove(name);
                }
                strip_cache_control(value, name);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip_cache_control(x, name)),
        _ => {}
    }
}

/// What the translation may have made of the top-level member `key` when it removed `removed`
/// (the fields of betas it did not forward): `None` when the member itself goes.
fn expected_member(key: &str, mut value: Value, removed: &[BetaField]) -> Option<Value> {
    for field in removed {
        match *field {
            BetaField::TopLevel(name) if name == key => return None,
            BetaField::CacheControl(name) if matches!(key, "system" | "messages" | "tools") => {
                strip_cache_control(&mut value, name);
            }
            BetaField::CacheControl(name) if key == "cache_control" => {
                if let Value::Object(o) = &mut value {
                    o.remove(name);
                }
            }
            BetaField::Tool(name) if key == "tools" => {
                if let Value::Array(tools) = &mut value {
                    for tool in tools {
                        if let Value::Object(o) = tool {
                            o.remove(name);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Some(value)
}

/// The Bedrock body: every input member except `model`, `stream` and `anthropic_beta` is kept
/// with its bytes, unless it holds a field of a beta that was not forwarded (`removed`): then
/// exactly that field is gone. `anthropic_version` is present, and the betas are allowlisted and
/// unique.
fn check_bedrock_body(input: &Members, body: &[u8], removed: &[BetaField], what: &str) -> Members {
    let out = members(body).unwrap_or_else(|| panic!("{what} is not a JSON object"));
    assert_unique_keys(&out, what);
    for (key, raw) in input {
        match key.as_str() {
            "model" | "stream" => assert!(get(&out, key).is_none(), "{what} keeps {key}"),
            "anthropic_beta" => {}
            _ => {
                let kept = get(&out, key);
                if kept == Some(raw.get()) {
                    continue;
                }
                assert!(!removed.is_empty(), "{what}: member {key:?} changed");
                // Nested strings are not decoded by the gateway; a lone surrogate escape makes
                // the member unreadable here, and then only its presence can be checked.
                let Ok(value) = serde_json::from_str::<Value>(raw.get()) else {
                    continue;
                };
                match expected_member(key, value, removed) {
                    None => assert!(kept.is_none(), "{what}: member {key:?} kept"),
                    Some(expected) => {
                        let kept = kept.unwrap_or_else(|| panic!("{what}: member {key:?} lost"));
                        let kept: Value = serde_json::from_str(kept).expect("member is JSON");
                        assert_eq!(kept, expected, "{what}: member {key:?}");
                    }
                }
            }
        }
    }
    let version = get(&out, "anthropic_version").expect("anthropic_version");
    if get(input, "anthropic_version").is_none() {
        assert_eq!(version, format!("\"{ANTHROPIC_VERSION}\""));
    }
    if let Some(raw) = get(&out, "anthropic_beta") {
        let betas: Vec<String> = serde_json::from_str(raw).expect("anthropic_beta is strings");
        assert!(!betas.is_empty(), "{what}: empty anthropic_beta");
        for (i, beta) in betas.iter().enumerate() {
            assert!(
                BEDROCK_BETAS.contains(&beta.as_str()),
                "{what}: beta {beta}"
            );
            assert!(!betas[..i].contains(beta), "{what}: beta {beta} twice");
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let header = String::from_utf8_lossy(header);
    let betas: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();

    let Ok(parsed) = RequestBody::parse(body) else {
        return;
    };
    // Accepted: a JSON object without duplicate keys, whose `model` is the string reported.
    // (Syntactically: like the gateway, which forwards nested values byte for byte, this does not
    // decode nested strings, so a lone surrogate escape inside one is accepted.)
    let input = members(body).expect("an accepted body is a JSON object");
    assert_unique_keys(&input, "accepted body");
    let model: String = serde_json::from_str(get(&input, "model").expect("model")).unwrap();
    assert_eq!(model, parsed.model);
    assert_eq!(parsed.stream, get(&input, "stream") == Some("true"));

    let segment = model_path_segment(&parsed.model);
    assert!(
        segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
    );
    assert!(parsed.model.ends_with(count_tokens_model_id(&parsed.model)));

    // The count-tokens translation removes the same fields as the invoke one (same betas, same
    // family) but does not report them.
    let mut removed = Vec::new();
    if let Ok(invoke) = invoke_body_parsed(&parsed, &betas) {
        removed.clone_from(&invoke.removed_fields);
        assert_eq!(invoke.stream, parsed.stream);
        check_bedrock_body(&input, &invoke.body, &invoke.removed_fields, "invoke body");
        for dropped in &invoke.dropped_betas {
            assert!(
                !BEDROCK_BETAS.contains(&dropped.as_str()),
                "dropped {dropped}"
            );
        }
    }

    if let Ok(count) = count_tokens_body_parsed(&parsed, &betas) {
        let wrapper: Value = serde_json::from_slice(&count).expect("count-tokens body is JSON");
        let inner = wrapper["input"]["invokeModel"]["body"]
            .as_str()
            .expect("input.invokeModel.body is a string");
        let inner = BASE64.decode(inner).expect("the inner body is base64");
        let out = check_bedrock_body(&input, &inner, &removed, "count-tokens body");
        assert!(
            get(&out, "max_tokens").is_some(),
            "count-tokens body lacks max_tokens"
        );
    }

    // From a Bedrock-format client: the same members, `anthropic_*` out, the path's model in.
    if let Ok(request) = ingress::invoke_request(body, "fuzz-model", true) {
        let out = members(&request.body).expect("ingress output is a JSON object");
        assert_unique_keys(&out, "ingress body");
        assert_eq!(get(&out, "model"), Some("\"fuzz-model\""));
        assert_eq!(get(&out, "stream"), Some("true"));
        for (key, raw) in &input {
            if !matches!(
                key.as_str(),
                "model" | "stream" | "anthropic_version" | "anthropic_beta"
            ) {
                assert_eq!(get(&out, key), Some(raw.get()), "ingress: member {key:?}");
            }
        }
    }

    // Without thinking blocks: the members other than `messages` (and, when thinking goes off,
    // `thinking` and `context_management`) keep their bytes; no assistant turn keeps a thinking
    // block.
    if let Ok(Some(stripped)) = without_thinking(&parsed) {
        let out = members(&stripped.body).expect("stripped body is a JSON object");
        assert_unique_keys(&out, "stripped body");
        assert!(stripped.blocks > 0);
        for (key, raw) in &input {
            match key.as_str() {
                "messages" => {}
                "thinking" | "context_management" if stripped.thinking_off => {}
                _ => assert_eq!(get(&out, key), Some(raw.get()), "stripped: member {key:?}"),
            }
        }
        let messages: Value =
            serde_json::from_str(get(&out, "messages").expect("messages")).expect("JSON");
        for m in messages.as_array().expect("an array") {
            if m["role"] == "assistant"
                && let Some(blocks) = m["content"].as_array()
            {
                assert!(
                    blocks
                        .iter()
                        .all(|b| b["type"] != "thinking" && b["type"] != "redacted_thinking"),
                    "a thinking block left: {m}"
                );
            }
        }
    }

    let renamed = set_model_parsed(&parsed, "fuzz/\"model\"\n");
    let out = members(&renamed).expect("set_model output is a JSON object");
    assert_eq!(out.len(), input.len());
    for ((key, raw), (out_key, out_raw)) in input.iter().zip(&out) {
        assert_eq!(key, out_key);
        if key == "model" {
            assert_eq!(out_raw.get(), r#""fuzz/\"model\"\n""#);
        } else {
            assert_eq!(out_raw.get(), raw.get(), "set_model: member {key:?}");
        }
    }
});

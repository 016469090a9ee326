//! Request-side translation: `invoke_body`, `request_model`, count-tokens helpers and
//! `model_path_segment`, golden against real Claude Code bodies and the SigV4 vectors.

mod support;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::{TESTDATA, read_json};
use tollgate_protocol::anthropic::set_model;
use tollgate_protocol::bedrock::{
    ANTHROPIC_VERSION, BetaField, BodyError, RequestBody, count_tokens_body, count_tokens_body_for,
    count_tokens_model_id, count_tokens_response, invoke_body, invoke_body_for, model_path_segment,
    request_model,
};

/// Top-level keys in order.
fn keys(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

/// Top-level members as raw bytes.
fn raw_members(body: &[u8]) -> BTreeMap<String, &RawValue> {
    serde_json::from_slice(body).unwrap()
}

fn beta_list(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v.get("anthropic_beta")
        .map(|b| serde_json::from_value(b.clone()).unwrap())
}

/// The Claude Code `POST /v1/messages` captures: (body, anthropic-beta header values).
fn claude_code_requests() -> Vec<(Value, Vec<String>)> {
    let all = read_json("claude-code/requests.json");
    let out: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["request_line"]
                .as_str()
                .unwrap()
                .starts_with("POST /v1/messages")
        })
        .map(|r| {
            let betas = r["headers"]["anthropic-beta"].as_str().unwrap_or("");
            let betas = betas.split(',').map(|b| b.trim().to_owned()).collect();
            (r["body"].clone(), betas)
        })
        .collect();
    assert_eq!(out.len(), 2, "expected two captured message requests");
    out
}

#[test]
fn claude_code_bodies_keep_every_member_byte_identical() {
    let expected_betas: [(&[&str], &[&str]); 2] = [
        (
            &[
                "context-1m-2025-08-07",
                "interleaved-thinking-2025-05-14",
                "context-management-2025-06-27",
                "effort-2025-11-24",
            ],
            &[
                "claude-code-20250219",
                "thinking-token-count-2026-05-13",
                "prompt-caching-scope-2026-01-05",
                "mid-conversation-system-2026-04-07",
            ],
        ),
        (
            &[
                "interleaved-thinking-2025-05-14",
                "context-management-2025-06-27",
                "tool-search-tool-2025-10-19",
                "effort-2025-11-24",
            ],
            &[
                "claude-code-20250219",
                "per-turn-control-2026-07-01",
                "mid-conversation-tool-changes-2026-07-01",
                "thinking-token-count-2026-05-13",
            ],
        ),
    ];
    for ((body, betas), (kept, dropped)) in claude_code_requests().into_iter().zip(expected_betas) {
        let betas: Vec<&str> = betas.iter().map(String::as_str).collect();
        let model = body["model"].as_str().unwrap().to_owned();
        // Compact and pretty spellings: nested whitespace must survive too.
        for input in [
            serde_json::to_vec(&body).unwrap(),
            serde_json::to_vec_pretty(&body).unwrap(),
        ] {
            assert_eq!(request_model(&input).unwrap(), (model.clone(), true));
            let out = invoke_body(&input, &betas).unwrap();
            assert!(out.stream);
            assert_eq!(out.dropped_betas, dropped);

            let input_keys = keys(&input);
            let mut want_keys = vec!["anthropic_version".to_owned()];
            want_keys.extend(
                input_keys
                    .iter()
                    .filter(|k| *k != "model" && *k != "stream")
                    .cloned(),
            );
            want_keys.push("anthropic_beta".to_owned());
            assert_eq!(keys(&out.body), want_keys);

            let before = raw_members(&input);
            let after = raw_members(&out.body);
            for key in &input_keys {
                if key == "model" || key == "stream" {
                    assert!(!after.contains_key(key));
                } else {
                    assert_eq!(after[key].get(), before[key].get(), "member {key} changed");
                }
            }
            assert_eq!(
                after["anthropic_version"].get(),
                format!("\"{ANTHROPIC_VERSION}\"")
            );
            assert_eq!(beta_list(&out.body).unwrap(), kept);
        }
    }
}

#[test]
fn unknown_roles_and_fields_pass_through() {
    // The capture's second message has role "system" (mid-conversation system), unknown to the
    // public API; it must not be touched.
    let (body, betas) = claude_code_requests().remove(0);
    assert_eq!(body["messages"][1]["role"], "system");
    let input = serde_json::to_vec(&body).unwrap();
    let betas: Vec<&str> = betas.iter().map(String::as_str).collect();
    let out = invoke_body(&input, &betas).unwrap();
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(v["messages"], body["messages"]);
    assert_eq!(v["context_management"], body["context_management"]);
    assert_eq!(v["output_config"], body["output_config"]);
    assert!(out.removed_fields.is_empty(), "{:?}", out.removed_fields);
}

#[test]
fn golden_minimal_body_matches_the_signed_sigv4_vectors() {
    // Appendix A1 body (102 bytes) and every testdata/sigv4-bedrock request body.
    let out = invoke_body(
        br#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    )
    .unwrap();
    let a1 = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(out.body, a1);
    assert_eq!(out.body.len(), 102);
    assert!(!out.stream);
    assert!(out.dropped_betas.is_empty());

    for name in [
        "invoke-arn",
        "invoke-base-model-with-colon",
        "invoke-stream",
    ] {
        let v = read_json(&format!("sigv4-bedrock/{name}.json"));
        let signed = v["request"]["body"].as_str().unwrap();
        let anthropic = format!(
            r#"{{"model":"{}","max_tokens":64,"messages":[{{"role":"user","content":"Hello, Bedrock"}}],"stream":{}}}"#,
            v["request"]["model_id"].as_str().unwrap(),
            name == "invoke-stream"
        );
        let out = invoke_body(anthropic.as_bytes(), &[]).unwrap();
        assert_eq!(String::from_utf8(out.body).unwrap(), signed, "{name}");
        assert_eq!(out.stream, name == "invoke-stream");
    }
}

#[test]
fn nested_bytes_are_untouched() {
    let input = br#"{
  "model" : "m",
  "system": [ {"type":"text","text":"b"}, {"type":"text","text":"a","cache_control":{"type":"ephemeral","ttl":"1h"}} ],
  "messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"caf\u00e9 \"q\" \ud83e\udd80","signature":"EqQB+/=="},{"type":"tool_use","id":"t","name":"n","input":{"z":1,"a":[1.0e3, -0.0, 12345678901234567890123]}}]}],
  "unknown_field": {"b": null, "a": true},
  "max_tokens": 1024
}"#;
    // Sonnet 4.6 takes `cache_control.ttl` natively: nothing needs to change below the top level.
    let out = invoke_body_for(
        &RequestBody::parse(input).unwrap(),
        &[],
        "global.anthropic.claude-sonnet-4-6",
    )
    .unwrap();
    assert!(out.removed_fields.is_empty());
    let expected = concat!(
        r#"{"anthropic_version":"bedrock-2023-05-31","#,
        r#""system":[ {"type":"text","text":"b"}, {"type":"text","text":"a","cache_control":{"type":"ephemeral","ttl":"1h"}} ],"#,
        r#""messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"caf\u00e9 \"q\" \ud83e\udd80","signature":"EqQB+/=="},{"type":"tool_use","id":"t","name":"n","input":{"z":1,"a":[1.0e3, -0.0, 12345678901234567890123]}}]}],"#,
        r#""unknown_field":{"b": null, "a": true},"#,
        r#""max_tokens":1024}"#
    );
    assert_eq!(String::from_utf8(out.body).unwrap(), expected);
}

#[test]
fn existing_anthropic_version_is_kept_in_place() {
    let out = invoke_body(
        br#"{"max_tokens":1,"anthropic_version":"bedrock-2099-01-01","model":"m","messages":[]}"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        out.body,
        br#"{"max_tokens":1,"anthropic_version":"bedrock-2099-01-01","messages":[]}"#
    );
}

#[test]
fn betas_merge_with_the_body_array_in_place() {
    let input = br#"{"model":"m","anthropic_beta":["interleaved-thinking-2025-05-14","files-api-2025-04-14"],"max_tokens":1}"#;
    let out = invoke_body(
        input,
        &[
            "context-1m-2025-08-07",
            "interleaved-thinking-2025-05-14",
            "advanced-tool-use-2025-11-20",
            "files-api-2025-04-14",
            "",
        ],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out.body).unwrap(),
        concat!(
            r#"{"anthropic_version":"bedrock-2023-05-31","#,
            r#""anthropic_beta":["interleaved-thinking-2025-05-14","context-1m-2025-08-07","tool-search-tool-2025-10-19"],"#,
            r#""max_tokens":1}"#
        )
    );
    assert_eq!(out.dropped_betas, ["files-api-2025-04-14"]);
}

#[test]
fn anthropic_beta_is_omitted_when_nothing_survives() {
    let out = invoke_body(
        br#"{"model":"m","anthropic_beta":["prompt-caching-2024-07-31"],"max_tokens":1}"#,
        &["claude-code-20250219", "oauth-2025-04-20"],
    )
    .unwrap();
    assert_eq!(
        out.body,
        br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1}"#
    );
    assert_eq!(
        out.dropped_betas,
        [
            "prompt-caching-2024-07-31",
            "claude-code-20250219",
            "oauth-2025-04-20"
        ]
    );

    let out = invoke_body(br#"{"model":"m","anthropic_beta":null}"#, &[]).unwrap();
    assert_eq!(out.body, br#"{"anthropic_version":"bedrock-2023-05-31"}"#);

    let out = invoke_body(br#"{"model":"m"}"#, &["interleaved-thinking-2025-05-14"]).unwrap();
    assert_eq!(
        out.body,
        br#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["interleaved-thinking-2025-05-14"]}"#
    );
}

#[test]
fn every_allowlisted_beta_is_kept() {
    for beta in tollgate_protocol::bedrock::BEDROCK_BETAS {
        let out = invoke_body(br#"{"model":"m"}"#, &[beta]).unwrap();
        assert_eq!(beta_list(&out.body).unwrap(), [*beta]);
        assert!(out.dropped_betas.is_empty());
    }
}

#[test]
fn stream_flag() {
    let cases: [(&[u8], bool); 4] = [
        (br#"{"model":"m","stream":true}"#, true),
        (br#"{"model":"m","stream":false}"#, false),
        (br#"{"model":"m","stream":null}"#, false),
        (br#"{"model":"m"}"#, false),
    ];
    for (input, stream) in cases {
        assert_eq!(invoke_body(input, &[]).unwrap().stream, stream);
        assert_eq!(request_model(input).unwrap(), ("m".to_owned(), stream));
        assert_eq!(
            invoke_body(input, &[]).unwrap().body,
            br#"{"anthropic_version":"bedrock-2023-05-31"}"#
        );
    }
}

#[test]
fn invalid_bodies_are_rejected() {
    let cases: [(&[u8], &str); 14] = [
        (b"", "InvalidJson"),
        (b"{", "InvalidJson"),
        (br#"{"model":"m"} trailing"#, "InvalidJson"),
        (br#"{"model":"m","messages":[}"#, "InvalidJson"),
        (b"[]", "NotAnObject"),
        (br#""model""#, "NotAnObject"),
        (b"42", "NotAnObject"),
        (b"null", "NotAnObject"),
        (br#"{"messages":[]}"#, "MissingModel"),
        (br#"{"model":42}"#, "InvalidField"),
        (br#"{"model":null}"#, "InvalidField"),
        (br#"{"model":"m","stream":"yes"}"#, "InvalidField"),
        (br#"{"model":"a","model":"b"}"#, "DuplicateField"),
        (br#"{"model":"m","anthropic_beta":"x"}"#, "InvalidField"),
    ];
    for (input, want) in cases {
        let err = invoke_body(input, &[]).unwrap_err();
        let got = format!("{err:?}");
        assert!(
            got.starts_with(want),
            "{}: got {got}",
            String::from_utf8_lossy(input)
        );
        if input != br#"{"model":"m","anthropic_beta":"x"}"# {
            let err = request_model(input).unwrap_err();
            assert!(format!("{err:?}").starts_with(want));
        }
    }
    assert_eq!(
        invoke_body(br#"{"model":42}"#, &[])
            .unwrap_err()
            .to_string(),
        "model: must be a string"
    );
    assert_eq!(
        invoke_body(b"{}", &[]).unwrap_err().to_string(),
        "model: field required"
    );
    assert!(matches!(
        invoke_body(br#"{"model":"m","stream":1,"stream":2}"#, &[]),
        Err(BodyError::DuplicateField(k)) if k == "stream"
    ));
}

#[test]
fn count_tokens_body_wraps_the_invoke_body() {
    let input = br#"{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"Hello"}],"system":"s"}"#;
    let out = count_tokens_body(
        input,
        &["token-counting-2024-11-01", "claude-code-20250219"],
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(keys(&out), ["input"]);
    let b64 = v["input"]["invokeModel"]["body"].as_str().unwrap();
    assert_eq!(
        v,
        json!({"input":{"invokeModel":{"body": b64}}}),
        "nothing but the wrapped body"
    );
    let inner = BASE64.decode(b64).unwrap();
    assert_eq!(
        String::from_utf8(inner).unwrap(),
        concat!(
            r#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"Hello"}],"#,
            r#""system":"s","anthropic_beta":["token-counting-2024-11-01"],"max_tokens":1}"#
        )
    );

    // An existing max_tokens is kept as is.
    let out = count_tokens_body(br#"{"model":"m","max_tokens":4096}"#, &[]).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let inner = BASE64
        .decode(v["input"]["invokeModel"]["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        inner,
        br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":4096}"#
    );

    assert!(matches!(
        count_tokens_body(b"[]", &[]),
        Err(BodyError::NotAnObject)
    ));
    assert!(matches!(
        count_tokens_body(b"{}", &[]),
        Err(BodyError::MissingModel)
    ));
}

#[test]
fn count_tokens_model_ids() {
    let cases = [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "eu.anthropic.claude-haiku-4-5",
            "anthropic.claude-haiku-4-5",
        ),
        ("apac.anthropic.x", "anthropic.x"),
        ("jp.anthropic.x", "anthropic.x"),
        ("au.anthropic.x", "anthropic.x"),
        (
            "global.anthropic.claude-sonnet-4-6",
            "anthropic.claude-sonnet-4-6",
        ),
        ("us-gov.anthropic.x", "anthropic.x"),
        ("ca.anthropic.x", "anthropic.x"),
        ("in.anthropic.x", "anthropic.x"),
        ("anthropic.claude-sonnet-4-6", "anthropic.claude-sonnet-4-6"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
        ),
        ("usa.anthropic.x", "usa.anthropic.x"),
        ("us.", "us."),
        ("", ""),
    ];
    for (id, want) in cases {
        assert_eq!(count_tokens_model_id(id), want, "{id}");
    }
    // The count-tokens SigV4 vector uses the stripped id.
    let v = read_json("sigv4-bedrock/count-tokens.json");
    assert_eq!(
        count_tokens_model_id("global.anthropic.claude-sonnet-4-6"),
        v["request"]["model_id"].as_str().unwrap()
    );
}

#[test]
fn count_tokens_response_mapping() {
    assert_eq!(
        count_tokens_response(br#"{"inputTokens":1234}"#).unwrap(),
        br#"{"input_tokens":1234}"#
    );
    assert_eq!(
        count_tokens_response(br#" {"inputTokens": 0, "other": "x"} "#).unwrap(),
        br#"{"input_tokens":0}"#
    );
    for bad in [
        &b"{}"[..],
        br#"{"inputTokens":-1}"#,
        br#"{"inputTokens":"5"}"#,
        b"nope",
        b"[]",
    ] {
        assert!(
            matches!(
                count_tokens_response(bad),
                Err(BodyError::InvalidCountTokensResponse(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn model_path_segment_matches_the_sigv4_wire_paths() {
    let dir = format!("{TESTDATA}/sigv4-bedrock");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let model_id = v["request"]["model_id"].as_str().unwrap();
        let wire_path = v["request"]["wire_path"].as_str().unwrap();
        let operation = wire_path.rsplit('/').next().unwrap();
        assert_eq!(
            format!("/model/{}/{operation}", model_path_segment(model_id)),
            wire_path,
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn model_path_segment_encodes_everything_but_unreserved() {
    assert_eq!(
        model_path_segment("anthropic.claude-3-5-haiku-20241022-v1:0"),
        "anthropic.claude-3-5-haiku-20241022-v1%3A0"
    );
    assert_eq!(
        model_path_segment(
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
        ),
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6"
    );
    assert_eq!(model_path_segment("AZaz09-._~"), "AZaz09-._~");
    assert_eq!(model_path_segment("a b%/?#é"), "a%20b%25%2F%3F%23%C3%A9");
    assert_eq!(model_path_segment(""), "");
}

#[test]
fn set_model_rewrites_only_the_model_value() {
    let input = br#"{ "max_tokens" : 5, "model" : "alias", "messages":[{"role":"user","content":"caf\u00e9"}] }"#;
    assert_eq!(
        set_model(input, "claude-\"x\"").unwrap(),
        br#"{"max_tokens":5,"model":"claude-\"x\"","messages":[{"role":"user","content":"caf\u00e9"}]}"#
    );
    for (body, _) in claude_code_requests() {
        let input = serde_json::to_vec_pretty(&body).unwrap();
        let out = set_model(&input, "claude-sonnet-4-6").unwrap();
        assert_eq!(keys(&out), keys(&input), "order kept");
        let (before, after) = (raw_members(&input), raw_members(&out));
        for (key, raw) in &before {
            if key == "model" {
                assert_eq!(after[key].get(), r#""claude-sonnet-4-6""#);
            } else {
                assert_eq!(after[key].get(), raw.get(), "member {key} changed");
            }
        }
        assert_eq!(
            request_model(&out).unwrap(),
            ("claude-sonnet-4-6".to_owned(), true)
        );
    }
    assert!(matches!(
        set_model(b"{}", "m"),
        Err(BodyError::MissingModel)
    ));
    assert!(matches!(
        set_model(br#"{"model":1}"#, "m"),
        Err(BodyError::InvalidField { .. })
    ));
    assert!(matches!(set_model(b"[]", "m"), Err(BodyError::NotAnObject)));
    assert!(matches!(
        set_model(br#"{"model":"a","model":"b"}"#, "m"),
        Err(BodyError::DuplicateField(_))
    ));
}

/// A body carrying every beta-dependent field, in unusual spacing.
const WITH_BETA_FIELDS: &[u8] = br#"{"model":"m" , "max_tokens":8,
 "system":[{"type":"text","text":"a \"ttl\": 1","cache_control":{"type":"ephemeral","ttl":"1h","scope":"global"}}],
 "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"x","cache_control": {"ttl":"5m", "type":"ephemeral"}}]}]}],
 "tools":[{"name":"Read","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral","ttl":"1h"}}, {"name":"Later","defer_loading":true,"input_schema":{"type":"object"}}],
 "context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
 "cache_control":{"type":"ephemeral","scope":"global"},
 "thinking":{"type":"adaptive"}}"#;

const CLAUDE_CODE_BETAS: &[&str] = &[
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
    "extended-cache-ttl-2025-04-11",
    "advanced-tool-use-2025-11-20",
];

fn translate_for(model_id: &str) -> tollgate_protocol::bedrock::InvokeBody {
    invoke_body_for(
        &RequestBody::parse(WITH_BETA_FIELDS).unwrap(),
        CLAUDE_CODE_BETAS,
        model_id,
    )
    .unwrap()
}

/// A dropped beta takes its body fields along: here `extended-cache-ttl` (ttl, on a model that
/// does not take it natively) and `prompt-caching-scope` (scope). Only the objects holding them
/// are rewritten; every other byte stays.
#[test]
fn dropped_betas_take_their_body_fields_along() {
    let out = translate_for("anthropic.claude-3-5-haiku-20241022-v1:0");
    let expected = concat!(
        r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"#,
        r#""system":[{"type":"text","text":"a \"ttl\": 1","cache_control":{"type":"ephemeral"}}],"#,
        r#""messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"x","cache_control": {"type":"ephemeral"}}]}]}],"#,
        r#""tools":[{"name":"Read","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}, {"name":"Later","defer_loading":true,"input_schema":{"type":"object"}}],"#,
        r#""context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},"#,
        r#""cache_control":{"type":"ephemeral"},"#,
        r#""thinking":{"type":"adaptive"},"#,
        r#""anthropic_beta":["interleaved-thinking-2025-05-14","context-management-2025-06-27","tool-search-tool-2025-10-19"]}"#
    );
    assert_eq!(String::from_utf8(out.body).unwrap(), expected);
    assert_eq!(
        out.dropped_betas,
        [
            "claude-code-20250219",
            "prompt-caching-scope-2026-01-05",
            "extended-cache-ttl-2025-04-11"
        ]
    );
    assert_eq!(
        out.removed_fields,
        [
            BetaField::CacheControl("ttl"),
            BetaField::CacheControl("scope")
        ]
    );
}

/// Claude 4.5 and 4.6 take `cache_control.ttl` without the beta: it stays; `scope` still goes.
#[test]
fn families_that_take_ttl_keep_it() {
    for model in [
        "global.anthropic.claude-sonnet-4-6",
        "global.anthropic.claude-opus-4-6-v1",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    ] {
        let out = translate_for(model);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            v["system"][0]["cache_control"],
            json!({"type": "ephemeral", "ttl": "1h"}),
            "{model}"
        );
        assert_eq!(v["tools"][0]["cache_control"]["ttl"], "1h", "{model}");
        assert_eq!(v["cache_control"], json!({"type": "ephemeral"}), "{model}");
        assert_eq!(
            out.removed_fields,
            [BetaField::CacheControl("scope")],
            "{model}"
        );
    }
}

/// Per family: Haiku 4.5 has no 1M-context beta; Opus 4.7 takes no beta at all, so the context
/// management and tool-search fields go too.
#[test]
fn beta_allowlists_follow_the_model_family() {
    let betas = ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"];
    let body = RequestBody::parse(br#"{"model":"m","max_tokens":1,"messages":[]}"#).unwrap();
    let kept = |model: &str| {
        beta_list(&invoke_body_for(&body, &betas, model).unwrap().body).unwrap_or_default()
    };
    assert_eq!(kept("global.anthropic.claude-sonnet-4-6"), betas);
    assert_eq!(
        kept("global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ["interleaved-thinking-2025-05-14"]
    );
    assert!(kept("global.anthropic.claude-opus-4-7").is_empty());

    let out = translate_for("global.anthropic.claude-opus-4-7");
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    assert!(v.get("anthropic_beta").is_none(), "{v}");
    assert!(v.get("context_management").is_none(), "{v}");
    assert!(v["tools"][1].get("defer_loading").is_none(), "{v}");
    assert_eq!(v["tools"][1]["name"], "Later");
    assert_eq!(
        out.removed_fields,
        [
            BetaField::CacheControl("ttl"),
            BetaField::CacheControl("scope"),
            BetaField::TopLevel("context_management"),
            BetaField::Tool("defer_loading")
        ]
    );
    // CountTokens validates the same inner body.
    let count = count_tokens_body_for(
        &RequestBody::parse(WITH_BETA_FIELDS).unwrap(),
        CLAUDE_CODE_BETAS,
        "global.anthropic.claude-opus-4-7",
    )
    .unwrap();
    let outer: Value = serde_json::from_slice(&count).unwrap();
    let inner = BASE64
        .decode(outer["input"]["invokeModel"]["body"].as_str().unwrap())
        .unwrap();
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    assert!(inner.get("context_management").is_none());
}

/// Real Claude Code bodies for Opus 4.7: only the beta-dependent members change.
#[test]
fn claude_code_bodies_for_a_model_without_betas_lose_only_the_dependent_members() {
    for (body, betas) in claude_code_requests() {
        let input = serde_json::to_vec(&body).unwrap();
        let betas: Vec<&str> = betas.iter().map(String::as_str).collect();
        let out = invoke_body_for(
            &RequestBody::parse(&input).unwrap(),
            &betas,
            "global.anthropic.claude-opus-4-7",
        )
        .unwrap();
        let before = raw_members(&input);
        let after = raw_members(&out.body);
        for (key, raw) in &before {
            match key.as_str() {
                "model" | "stream" | "context_management" => assert!(!after.contains_key(key)),
                "tools"
                    if out
                        .removed_fields
                        .contains(&BetaField::Tool("defer_loading")) =>
                {
                    let tools: Value = serde_json::from_str(after[key].get()).unwrap();
                    assert!(
                        tools
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|t| t.get("defer_loading").is_none())
                    );
                }
                _ => assert_eq!(after[key].get(), raw.get(), "member {key} changed"),
            }
        }
        assert!(!after.contains_key("anthropic_beta"));
    }
}

/// The gateway's `fallbacks` field: read as model names, and removed from what goes upstream
/// with every other field kept byte for byte, in order.
#[test]
fn fallbacks_are_read_and_removed() {
    let body = br#"{"model":"claude-sonnet-4-6","fallbacks":["anthropic/claude-sonnet-4-6","bedrock/x"],"max_tokens":8,"messages":[{"role":"user","content":"hi \u00e9"}]}"#;
    let parsed = RequestBody::parse(body).expect("parses");
    assert_eq!(
        parsed.fallbacks().expect("valid"),
        Some(vec![
            "anthropic/claude-sonnet-4-6".to_owned(),
            "bedrock/x".to_owned()
        ])
    );
    let stripped = parsed.without("fallbacks");
    assert_eq!(
        std::str::from_utf8(&stripped).unwrap(),
        r#"{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user","content":"hi \u00e9"}]}"#
    );
    let again = RequestBody::parse(&stripped).expect("parses");
    assert!(!again.has("fallbacks") && again.has("messages"));
    assert_eq!(again.fallbacks().expect("absent"), None);
    for bad in [
        &br#"{"model":"m","fallbacks":"anthropic/x"}"#[..],
        br#"{"model":"m","fallbacks":[1]}"#,
        br#"{"model":"m","fallbacks":{"a":"b"}}"#,
    ] {
        let parsed = RequestBody::parse(bad).expect("parses");
        let err = parsed.fallbacks().expect_err("not a list of names");
        assert!(err.to_string().starts_with("fallbacks: must be"), "{err}");
    }
    let null = RequestBody::parse(br#"{"model":"m","fallbacks":null}"#).unwrap();
    assert_eq!(null.fallbacks().unwrap(), None);
}

/// Sampling settings are read from the parsed top level: finite numbers only.
#[test]
fn top_level_numbers_are_read_without_another_parse() {
    let body = RequestBody::parse(
        br#"{"model":"m","max_tokens":64,"temperature":0.25,"top_p":1,"top_k":"x","messages":[]}"#,
    )
    .unwrap();
    assert_eq!(body.max_tokens(), Some(64));
    assert_eq!(body.number("temperature"), Some(0.25));
    assert_eq!(body.number("top_p"), Some(1.0));
    assert_eq!(body.number("top_k"), None, "not a number");
    assert_eq!(body.number("stop_sequences"), None, "absent");
    let huge = RequestBody::parse(br#"{"model":"m","temperature":1e999}"#).unwrap();
    assert_eq!(huge.number("temperature"), None, "not finite");
}

//! Golden tests of `thinking::without_thinking` and `is_signature_rejection`.

use tollgate_protocol::bedrock::RequestBody;
use tollgate_protocol::thinking::{Stripped, is_signature_rejection, without_thinking};

fn strip(body: &str) -> Option<Stripped> {
    without_thinking(&RequestBody::parse(body.as_bytes()).expect("parses")).expect("strips")
}

fn text(s: &Stripped) -> &str {
    std::str::from_utf8(&s.body).expect("utf-8")
}

/// Earlier turns lose their thinking blocks; every other byte (spacing, key order, the user
/// turns, the other members) stays as it came; thinking stays on when the final turn has no
/// tool use.
#[test]
fn earlier_turns_lose_their_thinking_and_nothing_else_changes() {
    let body = r#"{"model": "claude-sonnet-4-6", "max_tokens":  64,
 "thinking": {"type": "adaptive"},
 "messages": [ {"role": "user", "content": "hi  there"},
  {"role":"assistant","content":[{"type":"thinking","thinking":"Let me think.","signature":"sig-bedrock"},{"type":"text","text":"Hello!"}]},
  {"role": "user", "content": [{"type": "text", "text": "and now?"}]}],
 "stream": true}"#;
    let s = strip(body).expect("stripped");
    assert_eq!(
        text(&s),
        r#"{"model":"claude-sonnet-4-6","max_tokens":64,"thinking":{"type": "adaptive"},"messages":[{"role": "user", "content": "hi  there"},{"role":"assistant","content":[{"type":"text","text":"Hello!"}]},{"role": "user", "content": [{"type": "text", "text": "and now?"}]}],"stream":true}"#
    );
    assert_eq!((s.blocks, s.thinking_off), (1, false));
}

/// The final turn of a tool-use loop may not lose its thinking while thinking is on: thinking
/// goes off for the request, with the context-management edits that need it (other edits stay;
/// an emptied `context_management` goes).
#[test]
fn a_tool_loop_whose_final_turn_loses_its_thinking_runs_without_thinking() {
    let body = r#"{"model":"m","max_tokens":64,"thinking":{"type":"enabled","budget_tokens":1024},
"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
"messages":[{"role":"user","content":"read it"},
{"role":"assistant","content":[{"type":"redacted_thinking","data":"opaque"},{"type":"thinking","thinking":"t","signature":"s"},{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/x"}}]},
{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}"#;
    let s = strip(body).expect("stripped");
    assert_eq!(
        text(&s),
        r#"{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"read it"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/x"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}"#
    );
    assert_eq!((s.blocks, s.thinking_off), (2, true));

    let kept = body.replace(
        r#"{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]}"#,
        r#"{"edits":[{"type":"clear_thinking_20251015"},{"type":"clear_tool_uses_20250919"}]}"#,
    );
    let s = strip(&kept).expect("stripped");
    assert!(
        text(&s)
            .contains(r#""context_management":{"edits":[{"type":"clear_tool_uses_20250919"}]}"#),
        "{}",
        text(&s)
    );
    assert!(!text(&s).contains(r#""thinking":{"#));
}

/// Nothing to strip: `None` (the caller keeps its body); a turn that was only thinking keeps a
/// placeholder text (an assistant message may not be empty).
#[test]
fn no_thinking_is_none_and_a_thinking_only_turn_keeps_a_placeholder() {
    assert_eq!(
        strip(
            r#"{"model":"m","messages":[{"role":"user","content":"thinking about it"},{"role":"assistant","content":"no thinking here"}]}"#
        ),
        None
    );
    assert_eq!(strip(r#"{"model":"m"}"#), None);
    let s = strip(r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"x","signature":"y"}]},{"role":"user","content":"go on"}]}"#).expect("stripped");
    assert_eq!(
        text(&s),
        r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"text","text":"(thinking omitted)"}]},{"role":"user","content":"go on"}]}"#
    );
}

/// The refusals of both platforms are recognised, and nothing else.
#[test]
fn signature_rejections_of_both_platforms_are_recognised() {
    for refusal in [
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: Invalid `signature` in `thinking` block"}}"#,
        r#"{"message":"messages.7.content.2: Invalid signature in thinking block"}"#,
        r#"{"message":"The model returned the following errors: messages.3.content.0.thinking.signature: Field required"}"#,
    ] {
        assert!(is_signature_rejection(refusal.as_bytes()), "{refusal}");
    }
    for other in [
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}"#,
        r#"{"message":"Malformed input request: thinking: budget_tokens too small"}"#,
        "",
    ] {
        assert!(!is_signature_rejection(other.as_bytes()), "{other}");
    }
}

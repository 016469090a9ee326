//! Thinking-block signatures as the doubles make and check them. Each platform signs the
//! thinking blocks it produces with a secret of its own and refuses, in its own words, blocks it
//! did not sign, as the Anthropic API and Bedrock do with each other's blocks (protocols.md;
//! their wording: ``messages.N.content.M: Invalid `signature` in `thinking` block`` from the
//! Anthropic API, `messages.N.content.M: Invalid signature in thinking block` from Bedrock). Both
//! also refuse `context_management`'s `clear_thinking_*` edits while thinking is off.
//!
//! Not enforced: the API's rule that with thinking `enabled` the final tool-call turn must start
//! with its thinking block. The real model always thinks first then, but the doubles think only
//! when a prompt asks them to (`[double:thinking]`), so their own tool calls would break the
//! rule. The gateway turns thinking off when it had to remove such a block
//! (`tollgate_protocol::thinking`, golden-tested), and the end-to-end test checks it did.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A platform that signs thinking blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Anthropic,
    Bedrock,
}

impl Platform {
    fn secret(self) -> &'static str {
        match self {
            Platform::Anthropic => "anthropic-double-thinking-key",
            Platform::Bedrock => "bedrock-double-thinking-key",
        }
    }

    fn invalid(self, i: usize, j: usize) -> String {
        match self {
            Platform::Anthropic => {
                format!("messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            }
            Platform::Bedrock => {
                format!("messages.{i}.content.{j}: Invalid signature in thinking block")
            }
        }
    }
}

/// The start every signature shares (as real ones share a protobuf prefix).
const PREFIX: &str = "EqQBCkYIBxgCKkD";

fn mac(platform: Platform, nonce: &str, thinking: &str) -> String {
    let digest = Sha256::new()
        .chain_update(platform.secret())
        .chain_update([0])
        .chain_update(nonce)
        .chain_update([0])
        .chain_update(thinking)
        .finalize();
    hex::encode(&digest[..16])
}

/// The signature `platform` gives a thinking block with text `thinking` (`nonce`: any text
/// without `.`, unique per block); for a `redacted_thinking` block's `data`, `thinking` is "".
pub fn sign(platform: Platform, nonce: &str, thinking: &str) -> String {
    format!("{PREFIX}{nonce}.{}", mac(platform, nonce, thinking))
}

/// Whether `platform` signed `signature` for `thinking`.
pub fn verify(platform: Platform, signature: &str, thinking: &str) -> bool {
    signature
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(nonce, m)| m == mac(platform, nonce, thinking))
}

/// What `platform` refuses in a request body (its error message), if anything: a thinking or
/// redacted-thinking block it did not sign, or a `clear_thinking_*` edit while thinking is off.
pub fn check(platform: Platform, body: &Map<String, Value>) -> Option<String> {
    let messages = body.get("messages").and_then(Value::as_array)?;
    for (i, m) in messages.iter().enumerate() {
        if m.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(blocks) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        for (j, b) in blocks.iter().enumerate() {
            let (signature, text) = match b.get("type").and_then(Value::as_str) {
                Some("thinking") => (
                    b.get("signature").and_then(Value::as_str),
                    b.get("thinking").and_then(Value::as_str).unwrap_or(""),
                ),
                Some("redacted_thinking") => (b.get("data").and_then(Value::as_str), ""),
                _ => continue,
            };
            match signature {
                None | Some("") => {
                    return Some(format!(
                        "messages.{i}.content.{j}.thinking.signature: Field required"
                    ));
                }
                Some(s) if !verify(platform, s, text) => return Some(platform.invalid(i, j)),
                Some(_) => {}
            }
        }
    }
    let thinking_on = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "enabled" || t == "adaptive");
    if !thinking_on
        && let Some(edits) = body
            .get("context_management")
            .and_then(|c| c.get("edits"))
            .and_then(Value::as_array)
        && let Some(n) = edits.iter().position(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("clear_thinking"))
        })
    {
        return Some(format!(
            "context_management.edits.{n}: the clear_thinking strategy requires thinking to be enabled"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_platform_accepts_only_its_own_signatures() {
        let sig = sign(Platform::Bedrock, "n1", "hmm");
        assert!(verify(Platform::Bedrock, &sig, "hmm"));
        assert!(
            !verify(Platform::Bedrock, &sig, "hmm!"),
            "the text is signed"
        );
        assert!(
            !verify(Platform::Anthropic, &sig, "hmm"),
            "another platform's key"
        );
        let body = |sig: &str| {
            json!({"messages": [{"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": sig},
                                                   {"type": "text", "text": "a"}]}]})
            .as_object()
            .cloned()
            .expect("object")
        };
        assert_eq!(check(Platform::Bedrock, &body(&sig)), None);
        assert_eq!(
            check(Platform::Anthropic, &body(&sig)).as_deref(),
            Some("messages.1.content.0: Invalid `signature` in `thinking` block")
        );
        let theirs = sign(Platform::Anthropic, "n2", "hmm");
        assert_eq!(
            check(Platform::Bedrock, &body(&theirs)).as_deref(),
            Some("messages.1.content.0: Invalid signature in thinking block")
        );
        assert!(
            check(Platform::Bedrock, &body(""))
                .is_some_and(|e| e.ends_with("thinking.signature: Field required"))
        );
    }

    #[test]
    fn clear_thinking_needs_thinking_on() {
        let body = |thinking: Value| {
            json!({"thinking": thinking,
                "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
                "messages": [{"role": "user", "content": "q"}]})
            .as_object()
            .cloned()
            .expect("object")
        };
        assert_eq!(
            check(Platform::Anthropic, &body(json!({"type": "adaptive"}))),
            None
        );
        assert!(
            check(Platform::Bedrock, &body(json!({"type": "disabled"})))
                .is_some_and(|e| e.contains("requires thinking"))
        );
    }
}

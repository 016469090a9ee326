//! Converse reply -> Anthropic Message (mapping table in the module docs).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ConverseError, TokenUsage, additional_stop_sequence, stop_reason};
use crate::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply<'a> {
    #[serde(borrow)]
    output: Option<Output<'a>>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: TokenUsage,
    #[serde(borrow)]
    additional_model_response_fields: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow)]
    message: Option<OutputMessage<'a>>,
}

#[derive(Deserialize)]
struct OutputMessage<'a> {
    #[serde(borrow, default)]
    content: Vec<&'a RawValue>,
}

fn bad(why: impl Into<String>) -> ConverseError {
    ConverseError::InvalidResponse(why.into())
}

/// Translates a `Converse` reply (HTTP 200 body) into an Anthropic Message JSON body with the id
/// `id` (Converse has none: the caller derives one, e.g. from its request id) and the model name
/// `model` (the one the client asked for). See the module docs for the mapping.
///
/// Errors ([`ConverseError::InvalidResponse`]): not JSON, no `output.message`, a content block
/// that is not an object or whose known member has the wrong shape.
pub fn message(converse_response: &[u8], model: &str, id: &str) -> Result<Vec<u8>, ConverseError> {
    let reply: Reply<'_> = serde_json::from_slice(converse_response)
        .map_err(|e| bad(format!("not a Converse reply: {e}")))?;
    let content = reply
        .output
        .and_then(|o| o.message)
        .ok_or_else(|| bad("no output.message"))?
        .content;

    let mut out = Vec::with_capacity(converse_response.len() + 256);
    out.extend_from_slice(br#"{"id":"#);
    json::write_str(&mut out, id);
    out.extend_from_slice(br#","type":"message","role":"assistant","model":"#);
    json::write_str(&mut out, model);
    out.extend_from_slice(br#","content":["#);
    let mut first = true;
    for (i, block) in content.into_iter().enumerate() {
        let start = out.len();
        if !first {
            out.push(b',');
        }
        if write_block(&mut out, block).map_err(|e| bad(format!("content[{i}]: {e}")))? {
            first = false;
        } else {
            out.truncate(start);
        }
    }
    out.extend_from_slice(br#"],"stop_reason":"#);
    json::write_str(
        &mut out,
        stop_reason(reply.stop_reason.as_deref().unwrap_or("")),
    );
    out.extend_from_slice(br#","stop_sequence":"#);
    match additional_stop_sequence(reply.additional_model_response_fields) {
        Some(seq) => json::write_str(&mut out, &seq),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","usage":"#);
    reply.usage.write_anthropic(&mut out);
    out.push(b'}');
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    #[serde(borrow)]
    tool_use_id: &'a RawValue,
    #[serde(borrow)]
    name: &'a RawValue,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningContent<'a> {
    #[serde(borrow)]
    reasoning_text: Option<ReasoningText<'a>>,
    #[serde(borrow)]
    redacted_content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ReasoningText<'a> {
    #[serde(borrow)]
    text: &'a RawValue,
    #[serde(borrow)]
    signature: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CitationsContent {
    #[serde(default)]
    content: Vec<CitationText>,
}

#[derive(Deserialize)]
struct CitationText {
    text: Option<String>,
}

fn string_raw<'a>(raw: &'a RawValue, what: &str) -> Result<&'a RawValue, String> {
    if raw.get().starts_with('"') {
        Ok(raw)
    } else {
        Err(format!("{what} is not a string"))
    }
}

/// Appends one Anthropic content block; `Ok(false)` when the Converse block has no Anthropic
/// counterpart (nothing written that matters: the caller truncates).
fn write_block(out: &mut Vec<u8>, raw: &RawValue) -> Result<bool, String> {
    let fields = json::parse_object(raw.get().as_bytes()).map_err(|_| "not a JSON object")?;
    let parse = |name: &str| json::get(&fields, name);
    if let Some(text) = parse("text") {
        out.extend_from_slice(br#"{"type":"text","text":"#);
        out.extend_from_slice(string_raw(text, "text")?.get().as_bytes());
        out.push(b'}');
        return Ok(true);
    }
    if let Some(tool) = parse("toolUse") {
        let tool: ToolUse<'_> =
            serde_json::from_str(tool.get()).map_err(|e| format!("toolUse: {e}"))?;
        out.extend_from_slice(br#"{"type":"tool_use","id":"#);
        out.extend_from_slice(
            string_raw(tool.tool_use_id, "toolUse.toolUseId")?
                .get()
                .as_bytes(),
        );
        out.extend_from_slice(br#","name":"#);
        out.extend_from_slice(string_raw(tool.name, "toolUse.name")?.get().as_bytes());
        out.extend_from_slice(br#","input":"#);
        out.extend_from_slice(tool.input.map_or("{}", |i| i.get()).as_bytes());
        out.push(b'}');
        return Ok(true);
    }
    if let Some(reasoning) = parse("reasoningContent") {
        let reasoning: ReasoningContent<'_> =
            serde_json::from_str(reasoning.get()).map_err(|e| format!("reasoningContent: {e}"))?;
        if let Some(text) = reasoning.reasoning_text {
            out.extend_from_slice(br#"{"type":"thinking","thinking":"#);
            out.extend_from_slice(
                string_raw(text.text, "reasoningText.text")?
                    .get()
                    .as_bytes(),
            );
            out.extend_from_slice(br#","signature":"#);
            match text.signature {
                Some(sig) => out.extend_from_slice(
                    string_raw(sig, "reasoningText.signature")?.get().as_bytes(),
                ),
                None => out.extend_from_slice(br#""""#),
            }
            out.push(b'}');
            return Ok(true);
        }
        if let Some(data) = reasoning.redacted_content {
            out.extend_from_slice(br#"{"type":"redacted_thinking","data":"#);
            out.extend_from_slice(string_raw(data, "redactedContent")?.get().as_bytes());
            out.push(b'}');
            return Ok(true);
        }
        return Ok(false);
    }
    if let Some(citations) = parse("citationsContent") {
        let citations: CitationsContent =
            serde_json::from_str(citations.get()).map_err(|e| format!("citationsContent: {e}"))?;
        let text: String = citations
            .content
            .into_iter()
            .filter_map(|c| c.text)
            .collect();
        out.extend_from_slice(br#"{"type":"text","text":"#);
        json::write_str(out, &text);
        out.push(b'}');
        return Ok(true);
    }
    Ok(false)
}

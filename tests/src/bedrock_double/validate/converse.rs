//! `Converse` / `ConverseStream` request validation, the way bedrock-runtime checks it, and the
//! models that are not Anthropic's (they take only Converse).
//!
//! What is refused (each with a Bedrock-shaped `ValidationException`):
//!
//! * a body that is not a JSON object (`SerializationException`), unknown top-level members
//!   (`extraneous key [x] is not permitted`, Bedrock's wording for bodies that do not match the
//!   model's schema), members of the wrong type;
//! * `messages` empty or absent, a role other than `user`/`assistant`, a conversation that does
//!   not start with `user` or does not alternate, empty `content`;
//! * content blocks that are not exactly one known member (`text`, `image`, `document`,
//!   `toolUse`, `toolResult`, `reasoningContent`, `cachePoint`, `guardContent`, `video`,
//!   `citationsContent`), blank text, malformed `image`/`document`/`toolUse`/`toolResult`;
//! * `toolUse` outside assistant turns, `toolResult` outside user turns, a `toolResult` that does
//!   not answer a `toolUse` of the previous assistant turn, or a `toolUse` left unanswered by
//!   the next turn;
//! * tool blocks without `toolConfig`; `toolConfig` on a model without tool use; an empty tool
//!   list, a `toolSpec` without `name` or `inputSchema.json`; `toolChoice` `any`/`tool` on a
//!   model that only takes `auto`;
//! * `inferenceConfig.maxTokens` below 1 (or not an integer), unknown `inferenceConfig` members;
//! * a `cachePoint` (in `system`, `messages` or `toolConfig.tools`) on a model without prompt
//!   caching (Llama, Mistral, DeepSeek);
//! * `additionalModelRequestFields` with Anthropic's `thinking` or `anthropic_beta` on a model
//!   that is not Claude.

use serde_json::{Map, Value};

use super::{ApiError, MAX_BODY_BYTES, ModelRef};

/// A model that is not Anthropic's, reachable only through Converse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConverseModel {
    /// The foundation-model id (`meta.llama3-3-70b-instruct-v1:0`).
    pub id: &'static str,
    /// Bedrock prompt caching (`cachePoint` blocks).
    pub caching: bool,
    /// Tool use (`toolConfig`, `toolUse`/`toolResult` blocks).
    pub tools: bool,
    /// `toolChoice` `any` and `tool` (else only `auto`).
    pub tool_choice_any: bool,
}

/// The non-Anthropic models of the double (AWS model cards: Nova takes prompt caching and every
/// `toolChoice`; Llama 3.x and Mistral Large tool use with `auto` only; DeepSeek-R1 no tools).
pub const CONVERSE_MODELS: &[ConverseModel] = &[
    ConverseModel {
        id: "meta.llama3-3-70b-instruct-v1:0",
        caching: false,
        tools: true,
        tool_choice_any: false,
    },
    ConverseModel {
        id: "meta.llama3-1-8b-instruct-v1:0",
        caching: false,
        tools: true,
        tool_choice_any: false,
    },
    ConverseModel {
        id: "mistral.mistral-large-2407-v1:0",
        caching: false,
        tools: true,
        tool_choice_any: false,
    },
    ConverseModel {
        id: "amazon.nova-pro-v1:0",
        caching: true,
        tools: true,
        tool_choice_any: true,
    },
    ConverseModel {
        id: "amazon.nova-lite-v1:0",
        caching: true,
        tools: true,
        tool_choice_any: true,
    },
    ConverseModel {
        id: "amazon.nova-micro-v1:0",
        caching: true,
        tools: true,
        tool_choice_any: true,
    },
    ConverseModel {
        id: "deepseek.r1-v1:0",
        caching: false,
        tools: false,
        tool_choice_any: false,
    },
];

/// What Claude takes through Converse.
const CLAUDE: ConverseModel = ConverseModel {
    id: "",
    caching: true,
    tools: true,
    tool_choice_any: true,
};

/// The non-Anthropic model a (decoded, valid) id names: the id itself, a cross-region profile of
/// it, or a `foundation-model/` / `inference-profile/` ARN of either.
pub fn model(id: &str) -> Option<&'static ConverseModel> {
    let id = match id.strip_prefix("arn:") {
        Some(rest) => rest.splitn(5, ':').nth(4)?.split_once('/')?.1,
        None => id,
    };
    let find = |base: &str| CONVERSE_MODELS.iter().find(|m| m.id == base);
    find(id).or_else(|| {
        id.split_once('.')
            .filter(|(geo, _)| super::GEO_PREFIXES.contains(geo))
            .and_then(|(_, base)| find(base))
    })
}

/// What `model` takes through Converse (Claude and opaque ARNs: everything).
pub fn capabilities(model: &ModelRef) -> ConverseModel {
    model.converse_only.copied().unwrap_or(CLAUDE)
}

/// Bedrock's answer to an InvokeModel call with an Anthropic body on a model that is not
/// Anthropic's: the body does not match that model's native schema.
pub fn invoke_refusal(bytes: &[u8]) -> ApiError {
    let key = serde_json::from_slice::<Map<String, Value>>(bytes)
        .ok()
        .and_then(|body| {
            ["anthropic_version", "anthropic_beta", "max_tokens"]
                .into_iter()
                .find(|k| body.contains_key(*k))
        });
    match key {
        Some(key) => malformed(&format!("#: extraneous key [{key}] is not permitted")),
        None => ApiError::validation(
            "Malformed input request, please reformat your input and try again.",
        ),
    }
}

fn malformed(what: &str) -> ApiError {
    ApiError::validation(format!(
        "Malformed input request: {what}, please reformat your input and try again."
    ))
}

fn serialization() -> ApiError {
    ApiError::new(
        400,
        "SerializationException",
        "Could not parse the request body.",
    )
}

const CONVERSE_FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
];

/// `ConverseTokensRequest` (CountTokens' `input.converse`).
const TOKENS_FIELDS: &[&str] = &[
    "messages",
    "system",
    "toolConfig",
    "additionalModelRequestFields",
];

/// Parses and validates a `Converse` / `ConverseStream` body for a model that takes `caps`.
pub fn body(bytes: &[u8], caps: &ConverseModel) -> Result<Map<String, Value>, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::validation(format!(
            "The request body of {} bytes exceeds the limit of {MAX_BODY_BYTES} bytes.",
            bytes.len()
        )));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(serialization());
    };
    check(&body, caps, CONVERSE_FIELDS)?;
    Ok(body)
}

/// Validates CountTokens' `input.converse` (a `ConverseTokensRequest`: no `inferenceConfig`).
pub fn tokens_request(value: &Value, caps: &ConverseModel) -> Result<(), ApiError> {
    let Value::Object(body) = value else {
        return Err(serialization());
    };
    check(body, caps, TOKENS_FIELDS)
}

fn check(
    body: &Map<String, Value>,
    caps: &ConverseModel,
    allowed: &[&str],
) -> Result<(), ApiError> {
    if let Some(extra) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(malformed(&format!(
            "#: extraneous key [{extra}] is not permitted"
        )));
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) | None => {
            return Err(ApiError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        Some(_) => return Err(serialization()),
    };
    if let Some(system) = body.get("system") {
        let Value::Array(blocks) = system else {
            return Err(serialization());
        };
        for (i, block) in blocks.iter().enumerate() {
            let (name, inner) = one_member(block, &format!("system.{i}"))?;
            match name {
                "text" => text(inner, &format!("system.{i}"))?,
                "cachePoint" => cache_point(inner, caps)?,
                "guardContent" => {}
                _ => {
                    return Err(ApiError::validation(format!(
                        "The system content block at system.{i} has an unsupported member {name}."
                    )));
                }
            }
        }
    }
    if let Some(config) = body.get("inferenceConfig") {
        inference_config(config)?;
    }
    if let Some(fields) = body.get("additionalModelRequestFields") {
        let Value::Object(fields) = fields else {
            return Err(serialization());
        };
        if caps.id.is_empty() {
            // Claude takes its own fields here.
        } else if let Some(key) = ["thinking", "anthropic_beta"]
            .into_iter()
            .find(|k| fields.contains_key(*k))
        {
            return Err(malformed(&format!(
                "#: extraneous key [{key}] is not permitted"
            )));
        }
    }
    let mut has_tool_blocks = false;
    let mut open_tool_uses: Vec<String> = Vec::new();
    let mut previous_role = "";
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(serialization());
        };
        let role = match message.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'messages.{i}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
                )));
            }
            None => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value null at 'messages.{i}.member.role' failed to satisfy constraint: Member must not be null"
                )));
            }
        };
        if i == 0 && role != "user" {
            return Err(ApiError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        if role == previous_role {
            return Err(ApiError::validation(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
            ));
        }
        previous_role = role;
        let content = match message.get("content") {
            Some(Value::Array(c)) if !c.is_empty() => c,
            Some(Value::Array(_)) => {
                return Err(ApiError::validation(format!(
                    "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
                )));
            }
            Some(_) => return Err(serialization()),
            None => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value null at 'messages.{i}.member.content' failed to satisfy constraint: Member must not be null"
                )));
            }
        };
        let mut tool_uses = Vec::new();
        let mut tool_results = Vec::new();
        for (j, block) in content.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            let (name, inner) = one_member(block, &at)?;
            match name {
                "text" => text(inner, &at)?,
                "image" => image(inner, &at)?,
                "document" => document(inner, &at)?,
                "toolUse" => {
                    if role != "assistant" {
                        return Err(ApiError::validation(format!(
                            "A toolUse block is only allowed in an assistant message: {at}."
                        )));
                    }
                    tool_uses.push(tool_use(inner, &at)?);
                }
                "toolResult" => {
                    if role != "user" {
                        return Err(ApiError::validation(format!(
                            "A toolResult block is only allowed in a user message: {at}."
                        )));
                    }
                    tool_results.push(tool_result(inner, &at)?);
                }
                "reasoningContent" => reasoning(inner, &at)?,
                "cachePoint" => cache_point(inner, caps)?,
                "guardContent" | "video" | "citationsContent" => {}
                _ => unreachable_member(&at, name)?,
            }
        }
        has_tool_blocks |= !tool_uses.is_empty() || !tool_results.is_empty();
        if role == "user" {
            if tool_results.len() > open_tool_uses.len() {
                return Err(ApiError::validation(format!(
                    "The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
                )));
            }
            let missing: Vec<&str> = open_tool_uses
                .iter()
                .filter(|id| !tool_results.contains(id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::validation(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    missing.join(", ")
                )));
            }
            open_tool_uses.clear();
        } else {
            open_tool_uses = tool_uses;
        }
    }
    match body.get("toolConfig") {
        Some(config) => tool_config(config, caps)?,
        None if has_tool_blocks => {
            return Err(ApiError::validation(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            ));
        }
        None => {}
    }
    Ok(())
}

const BLOCK_MEMBERS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
];

/// A union member: an object with exactly one known member.
fn one_member<'v>(block: &'v Value, at: &str) -> Result<(&'v str, &'v Value), ApiError> {
    let Value::Object(map) = block else {
        return Err(serialization());
    };
    let mut members = map.iter();
    match (members.next(), members.next()) {
        (Some((name, inner)), None) => Ok((name.as_str(), inner)),
        (None, _) => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}' failed to satisfy constraint: Member must have exactly one of its members set"
        ))),
        (Some(_), Some(_)) => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}' failed to satisfy constraint: Member must have only one of its members set"
        ))),
    }
}

fn unreachable_member(at: &str, name: &str) -> Result<(), ApiError> {
    if BLOCK_MEMBERS.contains(&name) {
        return Ok(());
    }
    Err(malformed(&format!(
        "#/{}: extraneous key [{name}] is not permitted",
        at.replace('.', "/")
    )))
}

fn text(value: &Value, at: &str) -> Result<(), ApiError> {
    match value.as_str() {
        Some(t) if !t.trim().is_empty() => Ok(()),
        Some(_) => Err(ApiError::validation(format!(
            "The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again."
        ))),
        None => Err(serialization()),
    }
}

fn bytes_source(source: Option<&Value>, at: &str) -> Result<(), ApiError> {
    let Some(Value::Object(source)) = source else {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{at}.source' failed to satisfy constraint: Member must not be null"
        )));
    };
    match source.get("bytes").and_then(Value::as_str) {
        Some(b)
            if !b.is_empty()
                && base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b)
                    .is_ok() =>
        {
            Ok(())
        }
        Some(_) => Err(serialization()),
        None if source.contains_key("s3Location") || source.contains_key("text") => Ok(()),
        None => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}.source' failed to satisfy constraint: Member must have exactly one of its members set"
        ))),
    }
}

fn image(value: &Value, at: &str) -> Result<(), ApiError> {
    let format = value.get("format").and_then(Value::as_str);
    if !matches!(format, Some("png" | "jpeg" | "gif" | "webp")) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}.image.format' failed to satisfy constraint: Member must satisfy enum value set: [png, jpeg, gif, webp]"
        )));
    }
    bytes_source(value.get("source"), &format!("{at}.image"))
}

fn document(value: &Value, at: &str) -> Result<(), ApiError> {
    let format = value.get("format").and_then(Value::as_str);
    if !matches!(
        format,
        Some("pdf" | "csv" | "doc" | "docx" | "xls" | "xlsx" | "html" | "txt" | "md")
    ) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}.document.format' failed to satisfy constraint: Member must satisfy enum value set: [pdf, csv, doc, docx, xls, xlsx, html, txt, md]"
        )));
    }
    if value
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{at}.document.name' failed to satisfy constraint: Member must not be null"
        )));
    }
    bytes_source(value.get("source"), &format!("{at}.document"))
}

fn tool_use(value: &Value, at: &str) -> Result<String, ApiError> {
    let id = value.get("toolUseId").and_then(Value::as_str);
    let name = value.get("name").and_then(Value::as_str);
    match (id, name, value.get("input")) {
        (Some(id), Some(name), Some(_)) if !id.is_empty() && !name.is_empty() => Ok(id.to_owned()),
        _ => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}.toolUse' failed to satisfy constraint: toolUseId, name and input must be set"
        ))),
    }
}

fn tool_result(value: &Value, at: &str) -> Result<String, ApiError> {
    let Some(id) = value
        .get("toolUseId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{at}.toolResult.toolUseId' failed to satisfy constraint: Member must not be null"
        )));
    };
    let Some(Value::Array(content)) = value.get("content") else {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{at}.toolResult.content' failed to satisfy constraint: Member must not be null"
        )));
    };
    for (k, block) in content.iter().enumerate() {
        let inner_at = format!("{at}.toolResult.content.{k}");
        let (name, inner) = one_member(block, &inner_at)?;
        match name {
            "text" => {
                if !inner.is_string() {
                    return Err(serialization());
                }
            }
            "json" => {}
            "image" => image(inner, &inner_at)?,
            "document" => document(inner, &inner_at)?,
            "video" | "searchResult" => {}
            _ => {
                return Err(malformed(&format!(
                    "#/{}: extraneous key [{name}] is not permitted",
                    inner_at.replace('.', "/")
                )));
            }
        }
    }
    match value.get("status") {
        None => {}
        Some(Value::String(s)) if s == "success" || s == "error" => {}
        Some(_) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{at}.toolResult.status' failed to satisfy constraint: Member must satisfy enum value set: [success, error]"
            )));
        }
    }
    Ok(id.to_owned())
}

fn reasoning(value: &Value, at: &str) -> Result<(), ApiError> {
    let (name, inner) = one_member(value, &format!("{at}.reasoningContent"))?;
    match name {
        "reasoningText" if inner.get("text").is_some_and(Value::is_string) => Ok(()),
        "redactedContent" if inner.is_string() => Ok(()),
        _ => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}.reasoningContent' failed to satisfy constraint: Member must have exactly one of: reasoningText, redactedContent"
        ))),
    }
}

/// The message Bedrock answers a `cachePoint` with on a model without prompt caching.
pub const NO_CACHING: &str = "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information.";

fn cache_point(value: &Value, caps: &ConverseModel) -> Result<(), ApiError> {
    if !caps.caching {
        return Err(ApiError::validation(NO_CACHING));
    }
    if value.get("type").and_then(Value::as_str) != Some("default") {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]",
        ));
    }
    match value.get("ttl") {
        None => Ok(()),
        Some(Value::String(t)) if t == "5m" || t == "1h" => Ok(()),
        Some(_) => Err(ApiError::validation(
            "1 validation error detected: Value at 'cachePoint.ttl' failed to satisfy constraint: Member must satisfy enum value set: [5m, 1h]",
        )),
    }
}

fn inference_config(config: &Value) -> Result<(), ApiError> {
    let Value::Object(config) = config else {
        return Err(serialization());
    };
    if let Some(extra) = config
        .keys()
        .find(|k| !["maxTokens", "temperature", "topP", "stopSequences"].contains(&k.as_str()))
    {
        return Err(malformed(&format!(
            "#/inferenceConfig: extraneous key [{extra}] is not permitted"
        )));
    }
    if let Some(max) = config.get("maxTokens") {
        match max.as_i64() {
            Some(n) if n >= 1 => {}
            Some(n) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
                )));
            }
            None => return Err(serialization()),
        }
    }
    for key in ["temperature", "topP"] {
        if let Some(v) = config.get(key) {
            match v.as_f64() {
                Some(x) if (0.0..=1.0).contains(&x) => {}
                Some(x) => {
                    return Err(ApiError::validation(format!(
                        "1 validation error detected: Value '{x}' at 'inferenceConfig.{key}' failed to satisfy constraint: Member must have value between 0 and 1"
                    )));
                }
                None => return Err(serialization()),
            }
        }
    }
    if let Some(stops) = config.get("stopSequences")
        && !stops
            .as_array()
            .is_some_and(|s| s.iter().all(Value::is_string))
    {
        return Err(serialization());
    }
    Ok(())
}

fn tool_config(config: &Value, caps: &ConverseModel) -> Result<(), ApiError> {
    if !caps.tools {
        return Err(ApiError::validation("This model doesn't support tool use."));
    }
    let Value::Object(config) = config else {
        return Err(serialization());
    };
    let tools = match config.get("tools") {
        Some(Value::Array(t)) if !t.is_empty() => t,
        Some(Value::Array(_)) => {
            return Err(ApiError::validation(
                "1 validation error detected: Value '[]' at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        Some(_) => return Err(serialization()),
        None => {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'toolConfig.tools' failed to satisfy constraint: Member must not be null",
            ));
        }
    };
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let (member, inner) = one_member(tool, &format!("toolConfig.tools.{i}"))?;
        match member {
            "toolSpec" => {
                let name = inner.get("name").and_then(Value::as_str).unwrap_or("");
                let name_ok = (1..=64).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !name_ok {
                    return Err(ApiError::validation(format!(
                        "1 validation error detected: Value '{name}' at 'toolConfig.tools.{i}.member.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
                    )));
                }
                if names.contains(&name) {
                    return Err(ApiError::validation(format!(
                        "The toolConfig field contains duplicate tool names: {name}."
                    )));
                }
                names.push(name);
                if !inner
                    .pointer("/inputSchema/json")
                    .is_some_and(Value::is_object)
                {
                    return Err(ApiError::validation(format!(
                        "1 validation error detected: Value null at 'toolConfig.tools.{i}.member.toolSpec.inputSchema' failed to satisfy constraint: Member must not be null"
                    )));
                }
            }
            "cachePoint" => cache_point(inner, caps)?,
            other => {
                return Err(malformed(&format!(
                    "#/toolConfig/tools/{i}: extraneous key [{other}] is not permitted"
                )));
            }
        }
    }
    if let Some(choice) = config.get("toolChoice") {
        let (member, inner) = one_member(choice, "toolConfig.toolChoice")?;
        match member {
            "auto" => {}
            "any" | "tool" if !caps.tool_choice_any => {
                return Err(ApiError::validation(format!(
                    "This model doesn't support the toolConfig.toolChoice.{member} field. Remove toolConfig.toolChoice.{member} and try again."
                )));
            }
            "any" => {}
            "tool" => {
                let name = inner.get("name").and_then(Value::as_str).unwrap_or("");
                if !names.contains(&name) {
                    return Err(ApiError::validation(format!(
                        "The tool {name} named in toolConfig.toolChoice is not in toolConfig.tools."
                    )));
                }
            }
            other => {
                return Err(malformed(&format!(
                    "#/toolConfig/toolChoice: extraneous key [{other}] is not permitted"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llama() -> ConverseModel {
        *model("us.meta.llama3-3-70b-instruct-v1:0").expect("known")
    }

    fn err(body: Value, caps: &ConverseModel) -> String {
        super::body(body.to_string().as_bytes(), caps)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.message)
    }

    #[test]
    fn models() {
        assert!(model("meta.llama3-3-70b-instruct-v1:0").is_some());
        assert!(model("us.amazon.nova-pro-v1:0").is_some_and(|m| m.caching));
        assert!(
            model("arn:aws:bedrock:us-east-1::foundation-model/mistral.mistral-large-2407-v1:0")
                .is_some()
        );
        assert!(model("anthropic.claude-sonnet-4-6").is_none());
        assert!(model("xx.meta.llama3-3-70b-instruct-v1:0").is_none());
    }

    #[test]
    fn conversation_rules() {
        let caps = llama();
        let ok = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                        "inferenceConfig": {"maxTokens": 5}});
        assert_eq!(err(ok, &caps), "");
        for (body, want) in [
            (json!({"messages": []}), "must start with a user message"),
            (
                json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
                "must start with a user message",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]}),
                "must alternate",
            ),
            (
                json!({"messages": [{"role": "user", "content": []}]}),
                "is empty",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": " "}]}]}),
                "is blank",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}),
                "only one of its members",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"bogus": 1}]}]}),
                "extraneous key [bogus]",
            ),
            (
                json!({"model": "x", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "extraneous key [model]",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 0}}),
                "greater than or equal to 1",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "default"}}]}]}),
                NO_CACHING,
            ),
            (
                json!({"system": [{"text": "s"}, {"cachePoint": {"type": "default"}}], "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                NO_CACHING,
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "additionalModelRequestFields": {"thinking": {}}}),
                "extraneous key [thinking]",
            ),
        ] {
            let got = err(body.clone(), &caps);
            assert!(
                got.contains(want),
                "{body}: {got:?} should contain {want:?}"
            );
        }
        let nova = *model("amazon.nova-pro-v1:0").expect("nova");
        assert_eq!(
            err(
                json!({"system": [{"text": "s"}, {"cachePoint": {"type": "default"}}],
                       "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                &nova
            ),
            ""
        );
    }

    #[test]
    fn tool_rules() {
        let caps = llama();
        let tools = json!({"tools": [{"toolSpec": {"name": "Read", "inputSchema": {"json": {"type": "object"}}}}]});
        let history = |result_id: &str| {
            json!([
                {"role": "user", "content": [{"text": "read it"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "Read", "input": {}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": result_id, "content": [{"text": "data"}]}}]},
            ])
        };
        assert_eq!(
            err(
                json!({"messages": history("t1"), "toolConfig": tools}),
                &caps
            ),
            ""
        );
        assert!(
            err(json!({"messages": history("t1")}), &caps)
                .contains("toolConfig field must be defined")
        );
        assert!(
            err(
                json!({"messages": history("t2"), "toolConfig": tools}),
                &caps
            )
            .contains("Expected toolResult blocks")
        );
        let extra = json!([
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": []}}]},
        ]);
        assert!(
            err(json!({"messages": extra, "toolConfig": tools}), &caps)
                .contains("exceeds the number of toolUse")
        );
        let any = json!({"tools": tools["tools"], "toolChoice": {"any": {}}});
        assert!(
            err(json!({"messages": history("t1"), "toolConfig": any}), &caps)
                .contains("toolChoice.any")
        );
        let deepseek = *model("deepseek.r1-v1:0").expect("deepseek");
        assert!(
            err(
                json!({"messages": history("t1"), "toolConfig": tools}),
                &deepseek
            )
            .contains("doesn't support tool use")
        );
    }
}

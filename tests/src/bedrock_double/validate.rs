//! Request validation the way bedrock-runtime does it for Anthropic models: model identifiers,
//! the InvokeModel body (allow-listed top-level fields, `anthropic_version`, betas, required
//! fields), what each model accepts ([`model_body`]: betas per model, `cache_control` members,
//! fields that need their beta) and the CountTokens envelope. Converse bodies, and the models
//! that are not Anthropic's (only reachable through Converse), are in [`converse`].

pub mod converse;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::ApiError;

/// The `anthropic_version` Bedrock requires in the body.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Largest accepted InvokeModel body (Bedrock user guide: 20 MB payload).
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

/// Top-level fields Bedrock InvokeModel accepts for Anthropic models; anything else is
/// `"<field>: Extra inputs are not permitted"` (including `model` and `stream`).
pub const ALLOWED_TOP_LEVEL_FIELDS: &[&str] = &[
    "anthropic_version",
    "max_tokens",
    "messages",
    "anthropic_beta",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "output_config",
    "context_management",
];

/// `anthropic_beta` values Bedrock accepts; anything else fails the whole request with
/// `invalid beta flag`.
pub const SUPPORTED_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "dev-full-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14",
    "mcp-client-2025-04-04",
    "mcp-client-2025-11-20",
    "model-context-window-exceeded-2025-08-26",
    "output-128k-2025-02-19",
    "pdfs-2024-09-25",
    "search-results-2025-06-09",
    "token-counting-2024-11-01",
    "token-efficient-tools-2025-02-19",
    "tool-search-tool-2025-10-19",
    "web-search-2025-03-05",
    "effort-2025-11-24",
];

/// Inference-profile prefixes (`us.anthropic.…`).
pub const GEO_PREFIXES: &[&str] = &["us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"];

const INVALID_MODEL: &str = "The provided model identifier is invalid.";

/// What a valid model identifier names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelKind {
    /// `anthropic.claude-…` or a `foundation-model/` ARN.
    FoundationModel,
    /// `<geo>.anthropic.claude-…` or an `inference-profile/` ARN.
    InferenceProfile,
    /// Application inference profile, provisioned, imported or custom model ARN (opaque id).
    OpaqueArn,
}

/// A decoded, validated model identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub id: String,
    pub kind: ModelKind,
    /// The Anthropic model name the response reports (`claude-sonnet-4-5-20250929`).
    pub response_model: String,
    /// A model that is not Anthropic's ([`converse::CONVERSE_MODELS`]): it takes only Converse;
    /// `None` for Claude models and opaque ARNs.
    pub converse_only: Option<&'static converse::ConverseModel>,
}

/// Validates a percent-decoded model id (InvokeModelIdentifier: length 1..=2048, then the
/// identifier forms Bedrock knows; the models that exist are Anthropic's Claude models and
/// those of [`converse::CONVERSE_MODELS`]).
pub fn model_id(id: &str) -> Result<ModelRef, ApiError> {
    if id.is_empty() || id.len() > 2048 {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{id}' at 'modelId' failed to satisfy constraint: \
             Member must have length less than or equal to 2048 and greater than or equal to 1"
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/:".contains(&b))
    {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{id}' at 'modelId' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: ^[a-zA-Z_.\\-/0-9:]+$"
        )));
    }
    let kind = if let Some(rest) = id.strip_prefix("arn:") {
        arn_kind(rest)
    } else if is_known_base(id) {
        Some(ModelKind::FoundationModel)
    } else if id
        .split_once('.')
        .is_some_and(|(geo, base)| GEO_PREFIXES.contains(&geo) && is_known_base(base))
    {
        Some(ModelKind::InferenceProfile)
    } else {
        None
    };
    let kind = kind.ok_or_else(|| ApiError::validation(INVALID_MODEL))?;
    Ok(ModelRef {
        id: id.to_owned(),
        kind,
        response_model: response_model_name(id),
        converse_only: converse::model(id),
    })
}

/// CountTokens takes foundation models only (Bedrock rejects inference profiles there), and
/// counts tokens only for Claude (the models of [`converse::CONVERSE_MODELS`] are refused).
pub fn count_tokens_model(model: &ModelRef) -> Result<(), ApiError> {
    if model.kind != ModelKind::FoundationModel {
        return Err(ApiError::validation(INVALID_MODEL));
    }
    if model.converse_only.is_some() {
        return Err(ApiError::validation(NO_TOKEN_COUNTING));
    }
    Ok(())
}

/// CountTokens' refusal of a model it cannot count tokens for.
pub const NO_TOKEN_COUNTING: &str = "The provided model doesn't support counting tokens.";

/// A Claude foundation-model id or one of [`converse::CONVERSE_MODELS`].
fn is_known_base(id: &str) -> bool {
    is_claude_base(id) || converse::CONVERSE_MODELS.iter().any(|m| m.id == id)
}

fn is_claude_base(id: &str) -> bool {
    id.strip_prefix("anthropic.claude-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
    })
}

/// `aws[-x]:bedrock:<region>:<account>:<resource-type>/<id>` (after the `arn:`).
fn arn_kind(rest: &str) -> Option<ModelKind> {
    let mut parts = rest.splitn(5, ':');
    let partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let account = parts.next()?;
    let resource = parts.next()?;
    if !(partition == "aws" || partition.starts_with("aws-")) || service != "bedrock" {
        return None;
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let (resource_type, resource_id) = resource.split_once('/')?;
    let opaque_ok = !resource_id.is_empty()
        && resource_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
    match resource_type {
        "foundation-model" if account.is_empty() && is_known_base(resource_id) => {
            Some(ModelKind::FoundationModel)
        }
        "inference-profile" if account_ok => resource_id
            .split_once('.')
            .filter(|(geo, base)| GEO_PREFIXES.contains(geo) && is_known_base(base))
            .map(|_| ModelKind::InferenceProfile),
        "application-inference-profile"
        | "provisioned-model"
        | "imported-model"
        | "custom-model"
            if account_ok && opaque_ok =>
        {
            Some(ModelKind::OpaqueArn)
        }
        _ => None,
    }
}

/// `us.anthropic.claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5-20250929`.
fn response_model_name(id: &str) -> String {
    let Some(pos) = id.find("anthropic.claude-") else {
        return "claude-sonnet-4-5-20250929".to_owned();
    };
    let name = &id[pos + "anthropic.".len()..];
    let name = name.split(':').next().unwrap_or(name);
    match name.rsplit_once("-v") {
        Some((head, version))
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) =>
        {
            head.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// `Content-Type` must be `application/json` (parameters such as `charset` allowed).
pub fn content_type(value: Option<&str>) -> Result<(), ApiError> {
    let mime = value.map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match mime.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::validation(format!(
            "The provided content type '{other}' is not supported. Use application/json."
        ))),
        None => Err(ApiError::validation(
            "The content type is missing. Use application/json.".to_owned(),
        )),
    }
}

/// Parses and validates an InvokeModel body for an Anthropic model.
pub fn invoke_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::validation(format!(
            "Input is too long for requested model. The request body of {} bytes exceeds the limit of {MAX_BODY_BYTES} bytes.",
            bytes.len()
        )));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|_| {
        ApiError::validation("Malformed input request, please reformat your input and try again.")
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::validation(format!(
            "Malformed input request: #: expected type: JSONObject, found: {}, please reformat your input and try again.",
            json_type_name(&value)
        )));
    };
    invoke_object(&body)?;
    Ok(body)
}

fn invoke_object(body: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(extra) = body
        .keys()
        .find(|k| !ALLOWED_TOP_LEVEL_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::validation(format!(
            "{extra}: Extra inputs are not permitted"
        )));
    }
    match body.get("anthropic_version") {
        None => return Err(ApiError::validation("anthropic_version: Field required")),
        Some(Value::String(v)) if v == BEDROCK_ANTHROPIC_VERSION => {}
        Some(_) => {
            return Err(ApiError::validation(format!(
                "anthropic_version: Input should be '{BEDROCK_ANTHROPIC_VERSION}'"
            )));
        }
    }
    if let Some(betas) = body.get("anthropic_beta") {
        let Value::Array(betas) = betas else {
            return Err(ApiError::validation(
                "anthropic_beta: Input should be a valid list",
            ));
        };
        for beta in betas {
            match beta.as_str() {
                Some(b) if SUPPORTED_BETAS.contains(&b) => {}
                Some(_) => return Err(ApiError::validation("invalid beta flag")),
                None => {
                    return Err(ApiError::validation(
                        "anthropic_beta.0: Input should be a valid string",
                    ));
                }
            }
        }
    }
    match body.get("max_tokens") {
        None => return Err(ApiError::validation("max_tokens: Field required")),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => {}
            Some(_) => {
                return Err(ApiError::validation(
                    "max_tokens: Input should be greater than or equal to 1",
                ));
            }
            None => {
                return Err(ApiError::validation(
                    "max_tokens: Input should be a valid integer",
                ));
            }
        },
    }
    let messages = match body.get("messages") {
        None => return Err(ApiError::validation("messages: Field required")),
        Some(Value::Array(m)) => m,
        Some(_) => {
            return Err(ApiError::validation(
                "messages: Input should be a valid list",
            ));
        }
    };
    if messages.is_empty() {
        return Err(ApiError::validation(
            "messages: at least one message is required",
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(ApiError::validation(format!(
                "messages.{i}: Input should be a valid dictionary"
            )));
        };
        match message.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => {
                return Err(ApiError::validation(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )));
            }
        }
        match message.get("content") {
            Some(Value::String(_) | Value::Array(_)) => {}
            Some(_) => {
                return Err(ApiError::validation(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                )));
            }
            None => {
                return Err(ApiError::validation(format!(
                    "messages.{i}.content: Field required"
                )));
            }
        }
    }
    for (field, ok) in [
        (
            "system",
            body.get("system")
                .is_none_or(|v| v.is_string() || v.is_array()),
        ),
        (
            "stop_sequences",
            body.get("stop_sequences").is_none_or(Value::is_array),
        ),
        (
            "temperature",
            body.get("temperature").is_none_or(Value::is_number),
        ),
        ("top_p", body.get("top_p").is_none_or(Value::is_number)),
        ("top_k", body.get("top_k").is_none_or(Value::is_u64)),
        ("tools", body.get("tools").is_none_or(Value::is_array)),
        (
            "tool_choice",
            body.get("tool_choice").is_none_or(Value::is_object),
        ),
        (
            "thinking",
            body.get("thinking").is_none_or(Value::is_object),
        ),
        (
            "metadata",
            body.get("metadata").is_none_or(Value::is_object),
        ),
    ] {
        if !ok {
            return Err(ApiError::validation(format!(
                "{field}: Input has an invalid type"
            )));
        }
    }
    Ok(())
}

/// The model's version as `(major, minor)` from its response name (`claude-haiku-4-5-20251001`
/// -> (4, 5), `claude-opus-4-20250514` -> (4, 0), `claude-3-5-haiku-20241022` -> (3, 5)).
fn model_version(model: &ModelRef) -> (u32, u32) {
    let parts: Vec<&str> = model
        .response_model
        .trim_start_matches("claude-")
        .split('-')
        .collect();
    fn number(p: &str) -> bool {
        !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit())
    }
    // `sonnet-4-5-…` names the tier first, `3-5-haiku-…` the version.
    let start = usize::from(!parts.first().is_some_and(|p| number(p)));
    let numbers: Vec<u32> = parts
        .iter()
        .skip(start)
        .take_while(|p| number(p))
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    )
}

/// The model family without date and version (`claude-opus-4-7`).
fn model_family(model: &ModelRef) -> &str {
    let name = model.response_model.as_str();
    match name.rsplit_once('-') {
        Some((head, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    }
}

/// What a given model accepts, checked after [`invoke_body`]:
///
/// * betas per model: Claude Opus 4.7 accepts none (anthropics/claude-code#49648, #49490),
///   Claude Haiku 4.5 not `context-1m-2025-08-07` (200K context window): `invalid beta flag`;
/// * `cache_control` objects (at any depth) take only `type` and `ttl`, and `ttl` only on
///   Claude 4.5 and later (protocols.md §3.3; the `extended-cache-ttl-2025-04-11` beta itself is
///   never accepted): `<path>.cache_control.<member>: Extra inputs are not permitted`;
/// * `context_management` needs `context-management-2025-06-27`, a tool's `defer_loading`
///   needs `tool-search-tool-2025-10-19`: `Extra inputs are not permitted` otherwise.
pub fn model_body(body: &Map<String, Value>, model: &ModelRef) -> Result<(), ApiError> {
    let betas: Vec<&str> = body
        .get("anthropic_beta")
        .and_then(Value::as_array)
        .map(|b| b.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = model_family(model);
    if (family == "claude-opus-4-7" && !betas.is_empty())
        || (family == "claude-haiku-4-5" && betas.contains(&"context-1m-2025-08-07"))
    {
        return Err(ApiError::validation("invalid beta flag"));
    }
    if body.contains_key("context_management") && !betas.contains(&"context-management-2025-06-27")
    {
        return Err(ApiError::validation(
            "context_management: Extra inputs are not permitted",
        ));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array)
        && !betas.contains(&"tool-search-tool-2025-10-19")
        && let Some(i) = tools.iter().position(|t| t.get("defer_loading").is_some())
    {
        return Err(ApiError::validation(format!(
            "tools.{i}.defer_loading: Extra inputs are not permitted"
        )));
    }
    if let Some(refusal) = crate::thinking::check(crate::thinking::Platform::Bedrock, body) {
        return Err(ApiError::validation(refusal));
    }
    let ttl_ok = model_version(model) >= (4, 5);
    check_cache_control(&Value::Object(body.clone()), "", ttl_ok)
}

fn check_cache_control(value: &Value, path: &str, ttl_ok: bool) -> Result<(), ApiError> {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key == "cache_control"
                    && let Value::Object(cc) = inner
                {
                    for member in cc.keys() {
                        let allowed = member == "type" || (member == "ttl" && ttl_ok);
                        if !allowed {
                            return Err(ApiError::validation(format!(
                                "{here}.{member}: Extra inputs are not permitted"
                            )));
                        }
                    }
                } else {
                    check_cache_control(inner, &here, ttl_ok)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_cache_control(item, &format!("{path}.{i}"), ttl_ok)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Parses a CountTokens body `{"input":{"invokeModel":{"body":"<base64>"}}}` (or
/// `{"input":{"converse":{…}}}`) and returns the decoded inner body, validated like InvokeModel
/// (or like a Converse request for `model`).
pub fn count_tokens_body(bytes: &[u8], model: &ModelRef) -> Result<Value, ApiError> {
    let serialization = || {
        ApiError::new(
            400,
            "SerializationException",
            "Could not parse the request body.",
        )
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|_| serialization())?;
    let Some(outer) = value.as_object() else {
        return Err(serialization());
    };
    if let Some(extra) = outer.keys().find(|k| k.as_str() != "input") {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Unknown field '{extra}' in the request body."
        )));
    }
    let input = outer
        .get("input")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'input' failed to satisfy constraint: Member must not be null"))?;
    if input.len() != 1 {
        return Err(ApiError::validation(
            "1 validation error detected: 'input' must set exactly one of 'invokeModel' or 'converse'",
        ));
    }
    if let Some(invoke) = input.get("invokeModel") {
        let encoded = invoke
            .get("body")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'input.invokeModel.body' failed to satisfy constraint: Member must not be null"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| serialization())?;
        return invoke_body(&decoded).map(Value::Object);
    }
    if let Some(converse) = input.get("converse") {
        if !converse.get("messages").is_some_and(Value::is_array) {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'input.converse.messages' failed to satisfy constraint: Member must not be null",
            ));
        }
        converse::tokens_request(converse, &converse::capabilities(model))?;
        return Ok(converse.clone());
    }
    Err(ApiError::validation(
        "1 validation error detected: 'input' must set exactly one of 'invokeModel' or 'converse'",
    ))
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_ids() {
        for ok in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-6",
            "us-gov.anthropic.claude-3-haiku-20240307-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        ] {
            assert!(model_id(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "",
            "claude-sonnet-4-5",
            "amazon.titan-text-express-v1",
            "xx.anthropic.claude-sonnet-4-6",
            "anthropic.claude-",
            "anthropic.claude-sonnet 4",
            "arn:aws:bedrock:us-east-1:123:application-inference-profile/abc",
            "arn:aws:s3:us-east-1:123456789012:application-inference-profile/abc",
            "arn:aws:bedrock:us-east-1:123456789012:foundation-model/anthropic.claude-x",
        ] {
            let err = model_id(bad).expect_err(bad);
            assert_eq!(
                (err.status, err.error_type.as_str()),
                (400, "ValidationException"),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_model_accepts_its_own_betas_and_cache_control_members() {
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        let sonnet = model_id("global.anthropic.claude-sonnet-4-6").unwrap();
        let haiku = model_id("global.anthropic.claude-haiku-4-5-20251001-v1:0").unwrap();
        let opus47 = model_id("global.anthropic.claude-opus-4-7").unwrap();
        let old = model_id("anthropic.claude-3-5-haiku-20241022-v1:0").unwrap();
        let sonnet4 = model_id("us.anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
        assert_eq!(model_version(&haiku), (4, 5));
        assert_eq!(model_version(&sonnet4), (4, 0));
        assert_eq!(model_version(&old), (3, 5));
        let ttl = body(json!({"system": [{"type": "text", "text": "s",
            "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}));
        assert!(model_body(&ttl, &sonnet).is_ok());
        assert!(model_body(&ttl, &haiku).is_ok());
        for m in [&old, &sonnet4] {
            assert_eq!(
                model_body(&ttl, m).map_err(|e| e.message),
                Err("system.0.cache_control.ttl: Extra inputs are not permitted".to_owned())
            );
        }
        let scope = body(json!({"cache_control": {"type": "ephemeral", "scope": "global"}}));
        assert_eq!(
            model_body(&scope, &sonnet).map_err(|e| e.message),
            Err("cache_control.scope: Extra inputs are not permitted".to_owned())
        );
        let beta = |b: &str| body(json!({"anthropic_beta": [b]}));
        assert!(model_body(&beta("interleaved-thinking-2025-05-14"), &sonnet).is_ok());
        assert!(model_body(&beta("interleaved-thinking-2025-05-14"), &opus47).is_err());
        assert!(model_body(&beta("context-1m-2025-08-07"), &sonnet).is_ok());
        assert!(model_body(&beta("context-1m-2025-08-07"), &haiku).is_err());
        let cm = json!({"edits": []});
        assert!(model_body(&body(json!({"context_management": cm})), &sonnet).is_err());
        assert!(
            model_body(
                &body(json!({"context_management": cm, "anthropic_beta": ["context-management-2025-06-27"]})),
                &sonnet
            )
            .is_ok()
        );
        let deferred = json!([{"name": "a"}, {"name": "b", "defer_loading": true}]);
        assert_eq!(
            model_body(&body(json!({"tools": deferred})), &sonnet).map_err(|e| e.message),
            Err("tools.1.defer_loading: Extra inputs are not permitted".to_owned())
        );
    }

    #[test]
    fn response_model_names() {
        assert_eq!(
            model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
                .map(|m| m.response_model)
                .ok(),
            Some("claude-sonnet-4-5-20250929".to_owned())
        );
        assert_eq!(
            model_id("global.anthropic.claude-sonnet-4-6")
                .map(|m| m.response_model)
                .ok(),
            Some("claude-sonnet-4-6".to_owned())
        );
    }

    #[test]
    fn body_rules() {
        let ok = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"anthropic_beta":["interleaved-thinking-2025-05-14"]}"#;
        assert!(invoke_body(ok).is_ok());
        let cases: &[(&[u8], &str)] = &[
            (br#"[1]"#, "expected type: JSONObject"),
            (br#"{"#, "Malformed input request"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"model":"x"}"#, "model: Extra inputs are not permitted"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"stream":true}"#, "stream: Extra inputs are not permitted"),
            (br#"{"anthropic_version":"2023-06-01","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#, "anthropic_version: Input should be"),
            (br#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#, "anthropic_version: Field required"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"hi"}]}"#, "max_tokens: Field required"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5}"#, "messages: Field required"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}"#, "at least one message"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"system","content":"hi"}]}"#, "messages.0.role"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"anthropic_beta":["prompt-caching-2024-07-31"]}"#, "invalid beta flag"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"anthropic_beta":"x"}"#, "anthropic_beta: Input should be a valid list"),
            (br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":"5","messages":[{"role":"user","content":"hi"}]}"#, "max_tokens: Input should be a valid integer"),
        ];
        for (body, want) in cases {
            let err = invoke_body(body).expect_err(want);
            assert_eq!(err.status, 400);
            assert!(
                err.message.contains(want),
                "{} does not contain {want}",
                err.message
            );
        }
    }

    #[test]
    fn count_tokens_envelope() {
        let claude = model_id("anthropic.claude-sonnet-4-6").expect("claude");
        let inner = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
        let ok = format!(r#"{{"input":{{"invokeModel":{{"body":"{b64}"}}}}}}"#);
        assert_eq!(
            count_tokens_body(ok.as_bytes(), &claude)
                .ok()
                .and_then(|v| v.get("max_tokens").cloned()),
            Some(serde_json::json!(1))
        );
        assert!(
            count_tokens_body(inner, &claude).is_err(),
            "a bare invoke body is not a CountTokens body"
        );
        let bad_inner = base64::engine::general_purpose::STANDARD.encode(br#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"hi"}]}"#);
        let bad = format!(r#"{{"input":{{"invokeModel":{{"body":"{bad_inner}"}}}}}}"#);
        assert!(
            count_tokens_body(bad.as_bytes(), &claude).is_err(),
            "inner body needs max_tokens"
        );
    }
}

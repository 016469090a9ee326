//! Request bodies: Anthropic Messages -> Bedrock `InvokeModel` and `CountTokens`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::betas::{
    self, BedrockFamily, BetaField, UNKNOWN_FAMILY, fields_to_remove, filter_betas,
};
use crate::json::{self, Field, ObjectError};

/// The `anthropic_version` Bedrock requires in the body.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Cross-region inference profile prefixes (`us.anthropic.claude-…`). `CountTokens` only accepts
/// foundation-model ids, so [`count_tokens_model_id`] strips them.
pub const CROSS_REGION_PREFIXES: &[&str] = &[
    "us.", "eu.", "apac.", "jp.", "au.", "global.", "us-gov.", "ca.", "in.",
];

/// Why a request body could not be translated (here, or by [`crate::anthropic::set_model`]). The
/// messages are meant for the client (a 400 `invalid_request_error`).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is not valid JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// A top-level field appears twice (ambiguous: parsers disagree on which one wins).
    #[error("request body has duplicate field `{0}`")]
    DuplicateField(String),
    /// `model` is absent.
    #[error("model: field required")]
    MissingModel,
    /// A field the gateway interprets has the wrong type.
    #[error("{field}: must be {expected}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A Bedrock `CountTokens` reply without a valid `inputTokens`.
    #[error("unexpected Bedrock CountTokens response: {0}")]
    InvalidCountTokensResponse(String),
}

impl From<ObjectError> for BodyError {
    fn from(err: ObjectError) -> Self {
        match err {
            ObjectError::Syntax(e) => BodyError::InvalidJson(e),
            ObjectError::NotObject => BodyError::NotAnObject,
            ObjectError::Duplicate(k) => BodyError::DuplicateField(k),
        }
    }
}

/// A translated `InvokeModel` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeBody {
    /// The Bedrock request body (JSON).
    pub body: Vec<u8>,
    /// Whether the client asked for streaming: use `invoke-with-response-stream`.
    pub stream: bool,
    /// Betas removed because Bedrock does not accept them (for logging), deduplicated, in order.
    pub dropped_betas: Vec<String>,
    /// Body fields removed with the betas they belong to ([`betas::BETA_FIELDS`]), in table
    /// order; only those the body had.
    pub removed_fields: Vec<BetaField>,
}

/// Percent-encodes a model id, inference profile id or ARN as a single path segment: every byte
/// except the RFC 3986 unreserved set `A-Za-z0-9-._~` becomes `%XX` (upper-case hex), so `:` is
/// `%3A` and `/` is `%2F`, as AWS SDKs send it. Sign exactly the string you send.
pub fn model_path_segment(model_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(model_id.len() + 16);
    for b in model_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// An Anthropic request body with its top level parsed once: `model`, `stream`, and every
/// member's key and raw value, borrowed from the body. Routing reads `model` and `stream`; the
/// translations ([`invoke_body_parsed`], [`count_tokens_body_parsed`],
/// [`crate::anthropic::set_model_parsed`]) reuse the members instead of scanning the body again
/// (Claude Code bodies are often hundreds of KiB).
#[derive(Debug)]
pub struct RequestBody<'a> {
    pub(crate) fields: Vec<Field<'a>>,
    /// The top-level `model`.
    pub model: String,
    /// Whether `stream` is JSON `true`.
    pub stream: bool,
    pub(crate) len: usize,
}

impl<'a> RequestBody<'a> {
    /// Parses the top level of `body`. Errors: not JSON, not an object, duplicate top-level keys,
    /// `model` missing or not a string, `stream` neither boolean nor null.
    pub fn parse(body: &'a [u8]) -> Result<RequestBody<'a>, BodyError> {
        let fields = json::parse_object(body)?;
        let (model, stream) = model_and_stream(&fields)?;
        Ok(RequestBody {
            fields,
            model,
            stream,
            len: body.len(),
        })
    }

    /// The top-level `max_tokens`, when it is a non-negative integer (the upstream refuses the
    /// request otherwise).
    pub fn max_tokens(&self) -> Option<u64> {
        json::get(&self.fields, "max_tokens").and_then(json::decode::<u64>)
    }

    /// A top-level number (`temperature`, `top_p`), when the field holds a finite JSON number.
    pub fn number(&self, name: &str) -> Option<f64> {
        json::get(&self.fields, name)
            .and_then(json::decode::<f64>)
            .filter(|n| n.is_finite())
    }

    /// Whether the body has the top-level field `name`.
    pub fn has(&self, name: &str) -> bool {
        json::get(&self.fields, name).is_some()
    }

    /// The gateway's own `fallbacks` field: `None` when absent (or `null`), the model names when
    /// it is an array of strings, `Err` otherwise.
    pub fn fallbacks(&self) -> Result<Option<Vec<String>>, BodyError> {
        match json::get(&self.fields, "fallbacks") {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => {
                json::decode::<Vec<String>>(raw)
                    .map(Some)
                    .ok_or(BodyError::InvalidField {
                        field: "fallbacks",
                        expected: "an array of model names (provider/model)",
                    })
            }
        }
    }

    /// The body without its top-level field `name` (the other fields byte for byte, in order).
    pub fn without(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        out.push(b'{');
        for (key, value) in self.fields.iter().filter(|(k, _)| k != name) {
            if out.len() > 1 {
                out.push(b',');
            }
            json::write_str(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

/// Extracts `model` and `stream` (JSON `true`) from an Anthropic request body, parsing only the
/// top level. Errors as for [`RequestBody::parse`].
pub fn request_model(body: &[u8]) -> Result<(String, bool), BodyError> {
    RequestBody::parse(body).map(|r| (r.model, r.stream))
}

fn model_and_stream(fields: &[Field<'_>]) -> Result<(String, bool), BodyError> {
    let model = json::get(fields, "model").ok_or(BodyError::MissingModel)?;
    let model: String = json::decode(model).ok_or(BodyError::InvalidField {
        field: "model",
        expected: "a string",
    })?;
    let stream = match json::get(fields, "stream") {
        None => false,
        Some(raw) => json::decode::<Option<bool>>(raw)
            .ok_or(BodyError::InvalidField {
                field: "stream",
                expected: "a boolean",
            })?
            .unwrap_or(false),
    };
    Ok((model, stream))
}

/// Translates an Anthropic Messages body into a Bedrock `InvokeModel` body, for a model whose
/// family is unknown ([`UNKNOWN_FAMILY`]); [`invoke_body_for`] takes the model id.
///
/// Only the top level is parsed; every kept member is copied with its original bytes, in its
/// original order. `model` and `stream` are removed; `anthropic_version` is set to
/// [`ANTHROPIC_VERSION`] (first member) unless present; the `anthropic-beta` header values
/// (`betas`, already split on `,` and trimmed) are merged after any `anthropic_beta` array in the
/// body, aliased ([`super::BETA_ALIASES`]), deduplicated and filtered by the family's list
/// ([`super::bedrock_family`]). The result replaces `anthropic_beta` in place, or is appended;
/// it is omitted when empty. The body fields of betas not forwarded are removed
/// ([`super::BETA_FIELDS`]); only the objects holding them are rewritten.
///
/// Errors: not JSON, not an object, duplicate top-level keys, `model` missing or not a string,
/// `stream` neither boolean nor null, `anthropic_beta` not an array of strings.
pub fn invoke_body(anthropic_body: &[u8], betas: &[&str]) -> Result<InvokeBody, BodyError> {
    invoke_body_parsed(&RequestBody::parse(anthropic_body)?, betas)
}

/// [`invoke_body`] of a body already parsed.
pub fn invoke_body_parsed(body: &RequestBody<'_>, betas: &[&str]) -> Result<InvokeBody, BodyError> {
    translate(body, betas, false, &UNKNOWN_FAMILY)
}

/// [`invoke_body`] for the Bedrock model id (or inference profile, or ARN) `model_id`: the
/// betas and fields its family accepts ([`super::bedrock_family`]).
pub fn invoke_body_for(
    body: &RequestBody<'_>,
    betas: &[&str],
    model_id: &str,
) -> Result<InvokeBody, BodyError> {
    translate(body, betas, false, betas::bedrock_family(model_id))
}

/// Builds a Bedrock `CountTokens` body, `{"input":{"invokeModel":{"body":"<base64>"}}}`, whose
/// inner body is the [`invoke_body`] translation with `max_tokens` set to 1 if absent (Bedrock
/// validates it even when only counting). Betas dropped here are not reported.
pub fn count_tokens_body(anthropic_body: &[u8], betas: &[&str]) -> Result<Vec<u8>, BodyError> {
    count_tokens_body_parsed(&RequestBody::parse(anthropic_body)?, betas)
}

/// [`count_tokens_body`] of a body already parsed.
pub fn count_tokens_body_parsed(
    body: &RequestBody<'_>,
    betas: &[&str],
) -> Result<Vec<u8>, BodyError> {
    count_tokens_inner(body, betas, &UNKNOWN_FAMILY)
}

/// [`count_tokens_body`] for the model id `model_id` (see [`invoke_body_for`]).
pub fn count_tokens_body_for(
    body: &RequestBody<'_>,
    betas: &[&str],
    model_id: &str,
) -> Result<Vec<u8>, BodyError> {
    count_tokens_inner(body, betas, betas::bedrock_family(model_id))
}

fn count_tokens_inner(
    body: &RequestBody<'_>,
    betas: &[&str],
    family: &BedrockFamily,
) -> Result<Vec<u8>, BodyError> {
    let invoke = translate(body, betas, true, family)?;
    let encoded = BASE64.encode(&invoke.body);
    let mut out = Vec::with_capacity(encoded.len() + 40);
    out.extend_from_slice(br#"{"input":{"invokeModel":{"body":""#);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(br#""}}}"#);
    Ok(out)
}

/// The foundation-model id for `CountTokens`: strips a cross-region prefix
/// ([`CROSS_REGION_PREFIXES`]) from an inference profile id. ARNs and plain ids are returned
/// unchanged.
pub fn count_tokens_model_id(id: &str) -> &str {
    CROSS_REGION_PREFIXES
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix).filter(|rest| !rest.is_empty()))
        .unwrap_or(id)
}

/// Maps a Bedrock `CountTokens` reply `{"inputTokens":N}` to Anthropic's `{"input_tokens":N}`.
pub fn count_tokens_response(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
    }
    let reply: Reply = serde_json::from_slice(body)
        .map_err(|e| BodyError::InvalidCountTokensResponse(e.to_string()))?;
    Ok(format!(r#"{{"input_tokens":{}}}"#, reply.input_tokens).into_bytes())
}

fn translate(
    body: &RequestBody<'_>,
    betas: &[&str],
    need_max_tokens: bool,
    family: &BedrockFamily,
) -> Result<InvokeBody, BodyError> {
    let fields = &body.fields;
    let stream = body.stream;

    let body_betas: Vec<String> = match json::get(fields, "anthropic_beta") {
        None => Vec::new(),
        Some(raw) => json::decode::<Option<Vec<String>>>(raw)
            .ok_or(BodyError::InvalidField {
                field: "anthropic_beta",
                expected: "an array of strings",
            })?
            .unwrap_or_default(),
    };
    let (kept, dropped_betas) = filter_betas(
        body_betas
            .iter()
            .map(String::as_str)
            .chain(betas.iter().copied()),
        family,
    );
    let remove = fields_to_remove(family, &kept);
    let mut removed_fields: Vec<BetaField> = Vec::new();

    let mut out =
        Vec::with_capacity(body.len + 64 + kept.iter().map(|b| b.len() + 3).sum::<usize>());
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        json::write_str(out, key);
        out.push(b':');
    };
    out.push(b'{');
    if json::get(fields, "anthropic_version").is_none() {
        member(&mut out, "anthropic_version");
        json::write_str(&mut out, ANTHROPIC_VERSION);
    }
    let mut wrote_betas = false;
    for (key, value) in fields {
        match key.as_ref() {
            "model" | "stream" => {}
            "anthropic_beta" => {
                if !kept.is_empty() {
                    member(&mut out, key);
                    write_str_array(&mut out, &kept);
                }
                wrote_betas = true;
            }
            name => {
                if let Some(raw) =
                    betas::clean_member(name, value.get().as_bytes(), &remove, &mut removed_fields)
                {
                    member(&mut out, key);
                    out.extend_from_slice(&raw);
                }
            }
        }
    }
    if !wrote_betas && !kept.is_empty() {
        member(&mut out, "anthropic_beta");
        write_str_array(&mut out, &kept);
    }
    if need_max_tokens && json::get(fields, "max_tokens").is_none() {
        member(&mut out, "max_tokens");
        out.push(b'1');
    }
    out.push(b'}');
    removed_fields.sort_by_key(|f| betas::BETA_FIELDS.iter().position(|(_, g)| g == f));
    Ok(InvokeBody {
        body: out,
        stream,
        dropped_betas,
        removed_fields,
    })
}

fn write_str_array(out: &mut Vec<u8>, items: &[&str]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, item);
    }
    out.push(b']');
}

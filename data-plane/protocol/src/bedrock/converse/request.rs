//! Anthropic Messages request -> Converse request body (mapping table in the module docs).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::value::RawValue;

use super::ConverseError;
use crate::bedrock::RequestBody;
use crate::json::{self, Field};

/// Choices the caller makes per model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Turn `cache_control` into Converse `cachePoint` blocks. Only models that support prompt
    /// caching on Bedrock take them (Amazon Nova, Claude); others refuse the request, so the
    /// default is `false`, and `cache_control` is then dropped (and listed).
    pub cache_points: bool,
    /// Forward `thinking` as `additionalModelRequestFields.thinking`, byte-identical. Only models
    /// that take Anthropic's shape (Claude) accept it; others refuse unknown fields, so the
    /// default is `false` and `thinking` is dropped (and listed).
    pub thinking: bool,
}

/// A translated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The `Converse`/`ConverseStream` request body (JSON).
    pub body: Vec<u8>,
    /// The fields left out because Converse cannot take them (for the caller to log): paths with
    /// `[]` for array elements, deduplicated, top-level fields first, then in the order met.
    pub dropped: Vec<String>,
}

/// Translates an Anthropic Messages body into a Converse body with the default
/// [`RequestOptions`] (no cache points, no `thinking`). See the module docs for the mapping.
///
/// Errors: `messages` absent or not an array of `{role, content}` objects, a role other than
/// `user`, `assistant` or `system`, a field the translation reads with the wrong type
/// ([`ConverseError::InvalidRequest`]); content Converse cannot carry (images or documents by
/// URL or file id, server tools, …: [`ConverseError::Unsupported`]).
pub fn request(parsed: &RequestBody<'_>) -> Result<Translated, ConverseError> {
    request_with(parsed, &RequestOptions::default())
}

/// [`request`] with explicit options.
pub fn request_with(
    parsed: &RequestBody<'_>,
    options: &RequestOptions,
) -> Result<Translated, ConverseError> {
    let mut t = Translator {
        options: *options,
        dropped: Vec::new(),
        doc_names: Vec::new(),
        used_tools: Vec::new(),
        has_tool_blocks: false,
    };
    let body = t.translate(&parsed.fields)?;
    let out = serde_json::to_vec(&body).map_err(|e| invalid("", e.to_string()))?;
    Ok(Translated {
        body: out,
        dropped: t.dropped,
    })
}

// === Output shapes ===

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemBlock<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_model_request_fields: Option<Additional<'a>>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum SystemBlock<'a> {
    Text(&'a RawValue),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a RawValue),
    Image(Image<'a>),
    Document(Document<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    ReasoningContent(Reasoning<'a>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
struct Image<'a> {
    format: &'static str,
    source: Source<'a>,
}

#[derive(Serialize)]
struct Source<'a> {
    bytes: Cow<'a, RawValue>,
}

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    name: String,
    source: Source<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a RawValue,
    name: &'a RawValue,
    input: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a RawValue,
    content: Vec<ResultBlock<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ResultBlock<'a> {
    Text(&'a RawValue),
    Image(Image<'a>),
    Document(Document<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Reasoning<'a> {
    ReasoningText(ReasoningText<'a>),
    RedactedContent(&'a RawValue),
}

#[derive(Serialize)]
struct ReasoningText<'a> {
    text: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a RawValue>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a RawValue>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_none()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Tool<'a> {
    ToolSpec(ToolSpec<'a>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: Cow<'a, RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a RawValue>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: Cow<'a, RawValue>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoice {
    Auto(Empty),
    Any(Empty),
    Tool(Named),
}

#[derive(Clone, Debug, Serialize)]
struct Empty {}

#[derive(Clone, Debug, Serialize)]
struct Named {
    name: String,
}

#[derive(Serialize)]
struct Additional<'a> {
    thinking: &'a RawValue,
}

// === Translation ===

/// What `tool_choice` asked for.
enum Choice {
    Converse(ToolChoice),
    None,
}

struct Translator {
    options: RequestOptions,
    dropped: Vec<String>,
    /// Document names given so far (they must be unique).
    doc_names: Vec<String>,
    /// Tool names of the conversation's `tool_use` blocks, in order, deduplicated.
    used_tools: Vec<String>,
    /// Whether the conversation holds `tool_use` or `tool_result` blocks.
    has_tool_blocks: bool,
}

fn invalid(path: &str, message: impl Into<String>) -> ConverseError {
    ConverseError::InvalidRequest {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn unsupported(path: &str, what: impl Into<String>) -> ConverseError {
    ConverseError::Unsupported {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// A member that is present and not `null`.
fn get<'a>(fields: &[Field<'a>], name: &str) -> Option<&'a RawValue> {
    json::get(fields, name).filter(|v| !is_null(v))
}

fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// A required string member, as its raw JSON string.
fn raw_string<'a>(
    fields: &[Field<'a>],
    name: &str,
    path: &str,
) -> Result<&'a RawValue, ConverseError> {
    match get(fields, name) {
        Some(v) if is_string(v) => Ok(v),
        Some(_) => Err(invalid(&format!("{path}.{name}"), "must be a string")),
        None => Err(invalid(&format!("{path}.{name}"), "field required")),
    }
}

/// A required string member, decoded.
fn string(fields: &[Field<'_>], name: &str, path: &str) -> Result<String, ConverseError> {
    raw_string(fields, name, path).and_then(|raw| {
        json::decode::<String>(raw)
            .ok_or_else(|| invalid(&format!("{path}.{name}"), "must be a string"))
    })
}

fn object<'a>(raw: &'a RawValue, path: &str) -> Result<Vec<Field<'a>>, ConverseError> {
    json::parse_object(raw.get().as_bytes()).map_err(|_| invalid(path, "must be a JSON object"))
}

fn array<'a>(raw: &'a RawValue, path: &str) -> Result<Vec<&'a RawValue>, ConverseError> {
    serde_json::from_str::<Vec<&'a RawValue>>(raw.get())
        .map_err(|_| invalid(path, "must be an array"))
}

/// A text to send: `None` for the empty string (Converse refuses blank text).
fn non_empty(raw: &RawValue) -> Option<&RawValue> {
    (raw.get() != "\"\"").then_some(raw)
}

fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn document_format(media_type: &str) -> Option<&'static str> {
    match media_type {
        "application/pdf" => Some("pdf"),
        "text/plain" => Some("txt"),
        "text/csv" => Some("csv"),
        "text/html" => Some("html"),
        "text/markdown" => Some("md"),
        "application/msword" => Some("doc"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Some("docx"),
        "application/vnd.ms-excel" => Some("xls"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some("xlsx"),
        _ => None,
    }
}

/// Longest document name produced before the uniqueness suffix (Converse allows 200).
const DOC_NAME_MAX: usize = 190;

/// A document name Converse accepts (ASCII letters and digits, `-`, `(`, `)`, `[`, `]`, single
/// spaces), or `None` if nothing usable remains.
fn safe_doc_name(title: &str) -> Option<String> {
    let mut out = String::with_capacity(title.len().min(DOC_NAME_MAX));
    let mut after_space = true;
    for c in title.chars() {
        if out.len() >= DOC_NAME_MAX {
            break;
        }
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            out.push(c);
            after_space = false;
        } else if c.is_whitespace() {
            if !after_space {
                out.push(' ');
                after_space = true;
            }
        } else {
            out.push('-');
            after_space = false;
        }
    }
    let trimmed = out.trim_end();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

impl Translator {
    fn drop_field(&mut self, path: &str) {
        if !self.dropped.iter().any(|d| d == path) {
            self.dropped.push(path.to_owned());
        }
    }

    /// Lists the members of `fields` not in `known` as dropped, under `prefix`.
    fn drop_unknown(&mut self, fields: &[Field<'_>], known: &[&str], prefix: &str) {
        for (key, value) in fields {
            if !known.contains(&key.as_ref()) && !is_null(value) {
                self.drop_field(&format!("{prefix}.{key}"));
            }
        }
    }

    /// The cache point for a block's `cache_control`, if any and if enabled; otherwise the
    /// field is listed as dropped under `prefix`.
    fn cache_point(
        &mut self,
        fields: &[Field<'_>],
        prefix: &str,
    ) -> Result<Option<CachePoint>, ConverseError> {
        let Some(raw) = get(fields, "cache_control") else {
            return Ok(None);
        };
        if !self.options.cache_points {
            self.drop_field(&format!("{prefix}.cache_control"));
            return Ok(None);
        }
        let control = object(raw, &format!("{prefix}.cache_control"))?;
        let ttl = match get(&control, "ttl")
            .and_then(json::decode::<String>)
            .as_deref()
        {
            Some("5m") => Some("5m"),
            Some("1h") => Some("1h"),
            _ => None,
        };
        Ok(Some(CachePoint {
            kind: "default",
            ttl,
        }))
    }

    fn translate<'a>(&mut self, fields: &[Field<'a>]) -> Result<Body<'a>, ConverseError> {
        let mut inference = InferenceConfig::default();
        let mut additional = None;
        for (key, value) in fields {
            if is_null(value) {
                continue;
            }
            match key.as_ref() {
                "model" | "stream" | "fallbacks" | "messages" | "system" | "tools"
                | "tool_choice" => {}
                "max_tokens" => {
                    inference.max_tokens =
                        Some(json::decode::<u64>(value).ok_or_else(|| {
                            invalid("max_tokens", "must be a non-negative integer")
                        })?);
                }
                "temperature" | "top_p" => {
                    if json::decode::<f64>(value).is_none() {
                        return Err(invalid(key, "must be a number"));
                    }
                    if key == "temperature" {
                        inference.temperature = Some(value);
                    } else {
                        inference.top_p = Some(value);
                    }
                }
                "stop_sequences" => {
                    if json::decode::<Vec<String>>(value).is_none() {
                        return Err(invalid("stop_sequences", "must be an array of strings"));
                    }
                    inference.stop_sequences = Some(value);
                }
                "thinking" if self.options.thinking => {
                    additional = Some(Additional { thinking: value });
                }
                other => self.drop_field(other),
            }
        }

        let mut system = Vec::new();
        if let Some(raw) = get(fields, "system") {
            self.system_content(raw, "system", &mut system)?;
        }

        let raw_messages =
            get(fields, "messages").ok_or_else(|| invalid("messages", "field required"))?;
        let mut messages: Vec<Message<'a>> = Vec::new();
        for (i, raw) in array(raw_messages, "messages")?.into_iter().enumerate() {
            let path = format!("messages[{i}]");
            let message = object(raw, &path)?;
            let role = string(&message, "role", &path)?;
            let content = get(&message, "content")
                .ok_or_else(|| invalid(&format!("{path}.content"), "field required"))?;
            self.drop_unknown(&message, &["role", "content"], "messages[]");
            let role = match role.as_str() {
                "user" => "user",
                "assistant" => "assistant",
                "system" => {
                    self.system_content(content, &format!("{path}.content"), &mut system)?;
                    continue;
                }
                other => {
                    return Err(invalid(
                        &format!("{path}.role"),
                        format!("unknown role `{other}` (expected user, assistant or system)"),
                    ));
                }
            };
            let mut blocks = Vec::new();
            if is_string(content) {
                blocks.extend(non_empty(content).map(Block::Text));
            } else {
                let list = array(content, &format!("{path}.content"))?;
                for (j, block) in list.into_iter().enumerate() {
                    self.block(block, &format!("{path}.content[{j}]"), &mut blocks)?;
                }
            }
            if blocks.is_empty() {
                continue;
            }
            match messages.last_mut() {
                Some(last) if last.role == role => last.content.extend(blocks),
                _ => messages.push(Message {
                    role,
                    content: blocks,
                }),
            }
        }

        let tool_config = self.tool_config(fields)?;
        Ok(Body {
            messages,
            system,
            inference_config: inference,
            tool_config,
            additional_model_request_fields: additional,
        })
    }

    /// `system` (top level, or the content of a `system` turn): a string or text blocks.
    fn system_content<'a>(
        &mut self,
        raw: &'a RawValue,
        path: &str,
        out: &mut Vec<SystemBlock<'a>>,
    ) -> Result<(), ConverseError> {
        if is_string(raw) {
            out.extend(non_empty(raw).map(SystemBlock::Text));
            return Ok(());
        }
        for (i, block) in array(raw, path)?.into_iter().enumerate() {
            let path = format!("{path}[{i}]");
            let fields = object(block, &path)?;
            let kind = string(&fields, "type", &path)?;
            if kind != "text" {
                return Err(invalid(
                    &path,
                    format!("system blocks must be text, not `{kind}`"),
                ));
            }
            let text = raw_string(&fields, "text", &path)?;
            self.drop_unknown(&fields, &["type", "text", "cache_control"], "system[]");
            let point = self.cache_point(&fields, "system[]")?;
            if let Some(text) = non_empty(text) {
                out.push(SystemBlock::Text(text));
                out.extend(point.map(SystemBlock::CachePoint));
            }
        }
        Ok(())
    }

    /// One content block of a user or assistant turn.
    fn block<'a>(
        &mut self,
        raw: &'a RawValue,
        path: &str,
        out: &mut Vec<Block<'a>>,
    ) -> Result<(), ConverseError> {
        const PREFIX: &str = "messages[].content[]";
        let fields = object(raw, path)?;
        let kind = string(&fields, "type", path)?;
        let before = out.len();
        match kind.as_str() {
            "text" => {
                let text = raw_string(&fields, "text", path)?;
                self.drop_unknown(&fields, &["type", "text", "cache_control"], PREFIX);
                out.extend(non_empty(text).map(Block::Text));
            }
            "image" => {
                self.drop_unknown(&fields, &["type", "source", "cache_control"], PREFIX);
                out.push(Block::Image(self.image(&fields, path)?));
            }
            "document" => {
                self.drop_unknown(
                    &fields,
                    &["type", "source", "title", "context", "cache_control"],
                    PREFIX,
                );
                out.push(Block::Document(self.document(&fields, path)?));
            }
            "tool_use" => {
                let id = raw_string(&fields, "id", path)?;
                let name = raw_string(&fields, "name", path)?;
                let input = get(&fields, "input")
                    .ok_or_else(|| invalid(&format!("{path}.input"), "field required"))?;
                self.drop_unknown(
                    &fields,
                    &["type", "id", "name", "input", "cache_control"],
                    PREFIX,
                );
                self.has_tool_blocks = true;
                let decoded = string(&fields, "name", path)?;
                if !self.used_tools.contains(&decoded) {
                    self.used_tools.push(decoded);
                }
                out.push(Block::ToolUse(ToolUse {
                    tool_use_id: id,
                    name,
                    input,
                }));
            }
            "tool_result" => {
                let id = raw_string(&fields, "tool_use_id", path)?;
                self.drop_unknown(
                    &fields,
                    &[
                        "type",
                        "tool_use_id",
                        "content",
                        "is_error",
                        "cache_control",
                    ],
                    PREFIX,
                );
                let is_error = match get(&fields, "is_error") {
                    None => false,
                    Some(v) => json::decode::<bool>(v)
                        .ok_or_else(|| invalid(&format!("{path}.is_error"), "must be a boolean"))?,
                };
                let content = match get(&fields, "content") {
                    None => Vec::new(),
                    Some(c) => self.tool_result_content(c, &format!("{path}.content"))?,
                };
                self.has_tool_blocks = true;
                out.push(Block::ToolResult(ToolResult {
                    tool_use_id: id,
                    content,
                    status: is_error.then_some("error"),
                }));
            }
            "thinking" => {
                let text = raw_string(&fields, "thinking", path)?;
                let signature = match get(&fields, "signature") {
                    None => None,
                    Some(s) if is_string(s) => non_empty(s),
                    Some(_) => {
                        return Err(invalid(&format!("{path}.signature"), "must be a string"));
                    }
                };
                self.drop_unknown(
                    &fields,
                    &["type", "thinking", "signature", "cache_control"],
                    PREFIX,
                );
                out.push(Block::ReasoningContent(Reasoning::ReasoningText(
                    ReasoningText { text, signature },
                )));
            }
            "redacted_thinking" => {
                let data = raw_string(&fields, "data", path)?;
                self.drop_unknown(&fields, &["type", "data", "cache_control"], PREFIX);
                out.push(Block::ReasoningContent(Reasoning::RedactedContent(data)));
            }
            other => {
                return Err(unsupported(path, format!("a `{other}` content block")));
            }
        }
        let point = self.cache_point(&fields, PREFIX)?;
        if out.len() > before {
            out.extend(point.map(Block::CachePoint));
        }
        Ok(())
    }

    fn tool_result_content<'a>(
        &mut self,
        raw: &'a RawValue,
        path: &str,
    ) -> Result<Vec<ResultBlock<'a>>, ConverseError> {
        const PREFIX: &str = "messages[].content[].content[]";
        if is_string(raw) {
            return Ok(non_empty(raw).map(ResultBlock::Text).into_iter().collect());
        }
        let mut out = Vec::new();
        for (i, block) in array(raw, path)?.into_iter().enumerate() {
            let path = format!("{path}[{i}]");
            let fields = object(block, &path)?;
            let kind = string(&fields, "type", &path)?;
            match kind.as_str() {
                "text" => {
                    let text = raw_string(&fields, "text", &path)?;
                    self.drop_unknown(&fields, &["type", "text"], PREFIX);
                    out.extend(non_empty(text).map(ResultBlock::Text));
                }
                "image" => {
                    self.drop_unknown(&fields, &["type", "source"], PREFIX);
                    out.push(ResultBlock::Image(self.image(&fields, &path)?));
                }
                "document" => {
                    self.drop_unknown(&fields, &["type", "source", "title", "context"], PREFIX);
                    out.push(ResultBlock::Document(self.document(&fields, &path)?));
                }
                other => {
                    return Err(unsupported(
                        &path,
                        format!("a `{other}` block in a tool result"),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn image<'a>(&mut self, fields: &[Field<'a>], path: &str) -> Result<Image<'a>, ConverseError> {
        let path = format!("{path}.source");
        let source_raw = get(fields, "source").ok_or_else(|| invalid(&path, "field required"))?;
        let source = object(source_raw, &path)?;
        match string(&source, "type", &path)?.as_str() {
            "base64" => {
                let media_type = string(&source, "media_type", &path)?;
                let format = image_format(&media_type).ok_or_else(|| {
                    unsupported(&path, format!("the image media type `{media_type}`"))
                })?;
                let data = raw_string(&source, "data", &path)?;
                Ok(Image {
                    format,
                    source: Source {
                        bytes: Cow::Borrowed(data),
                    },
                })
            }
            "url" => Err(unsupported(
                &path,
                "an image given by URL (send it as base64)",
            )),
            "file" => Err(unsupported(
                &path,
                "an image given by file id (send it as base64)",
            )),
            other => Err(invalid(
                &path,
                format!("unknown image source type `{other}`"),
            )),
        }
    }

    fn document<'a>(
        &mut self,
        fields: &[Field<'a>],
        path: &str,
    ) -> Result<Document<'a>, ConverseError> {
        let source_path = format!("{path}.source");
        let source_raw =
            get(fields, "source").ok_or_else(|| invalid(&source_path, "field required"))?;
        let source = object(source_raw, &source_path)?;
        let (format, bytes) = match string(&source, "type", &source_path)?.as_str() {
            "base64" => {
                let media_type = string(&source, "media_type", &source_path)?;
                let format = document_format(&media_type).ok_or_else(|| {
                    unsupported(
                        &source_path,
                        format!("the document media type `{media_type}`"),
                    )
                })?;
                (
                    format,
                    Cow::Borrowed(raw_string(&source, "data", &source_path)?),
                )
            }
            "text" => {
                let text = string(&source, "data", &source_path)?;
                let encoded = format!("\"{}\"", BASE64.encode(text.as_bytes()));
                let raw = RawValue::from_string(encoded)
                    .map_err(|e| invalid(&source_path, e.to_string()))?;
                ("txt", Cow::Owned(raw))
            }
            "content" => {
                return Err(unsupported(
                    &source_path,
                    "a document with a `content` source",
                ));
            }
            "url" => {
                return Err(unsupported(
                    &source_path,
                    "a document given by URL (send it as base64)",
                ));
            }
            "file" => {
                return Err(unsupported(
                    &source_path,
                    "a document given by file id (send it as base64)",
                ));
            }
            other => {
                return Err(invalid(
                    &source_path,
                    format!("unknown document source type `{other}`"),
                ));
            }
        };
        let title = match get(fields, "title") {
            None => None,
            Some(_) => Some(string(fields, "title", path)?),
        };
        let context = match get(fields, "context") {
            None => None,
            Some(_) => Some(raw_string(fields, "context", path)?),
        };
        if get(fields, "citations").is_some() {
            self.drop_field("messages[].content[].citations");
        }
        let name = self.doc_name(title.as_deref());
        Ok(Document {
            format,
            name,
            source: Source { bytes },
            context,
        })
    }

    /// A safe, unique document name.
    fn doc_name(&mut self, title: Option<&str>) -> String {
        let base = title
            .and_then(safe_doc_name)
            .unwrap_or_else(|| format!("document-{}", self.doc_names.len() + 1));
        let mut name = base.clone();
        let mut n = 2;
        while self.doc_names.contains(&name) {
            name = format!("{base} ({n})");
            n += 1;
        }
        self.doc_names.push(name.clone());
        name
    }

    fn tool_config<'a>(
        &mut self,
        fields: &[Field<'a>],
    ) -> Result<Option<ToolConfig<'a>>, ConverseError> {
        let mut tools = Vec::new();
        if let Some(raw) = get(fields, "tools") {
            for (i, tool) in array(raw, "tools")?.into_iter().enumerate() {
                let path = format!("tools[{i}]");
                let tool = object(tool, &path)?;
                if get(&tool, "type").is_some() {
                    let kind = string(&tool, "type", &path)?;
                    if kind != "custom" {
                        return Err(unsupported(&path, format!("the `{kind}` tool")));
                    }
                }
                let name = raw_string(&tool, "name", &path)?;
                let description = match get(&tool, "description") {
                    None => None,
                    Some(_) => Some(raw_string(&tool, "description", &path)?),
                };
                let schema = get(&tool, "input_schema")
                    .ok_or_else(|| invalid(&format!("{path}.input_schema"), "field required"))?;
                if !schema.get().starts_with('{') {
                    return Err(invalid(
                        &format!("{path}.input_schema"),
                        "must be a JSON object",
                    ));
                }
                self.drop_unknown(
                    &tool,
                    &[
                        "type",
                        "name",
                        "description",
                        "input_schema",
                        "cache_control",
                    ],
                    "tools[]",
                );
                let point = self.cache_point(&tool, "tools[]")?;
                tools.push(Tool::ToolSpec(ToolSpec {
                    name: Cow::Borrowed(name),
                    description,
                    input_schema: InputSchema {
                        json: Cow::Borrowed(schema),
                    },
                }));
                tools.extend(point.map(Tool::CachePoint));
            }
        }

        let choice = match get(fields, "tool_choice") {
            None => None,
            Some(raw) => Some(self.tool_choice(raw)?),
        };

        if tools.is_empty() {
            if !self.has_tool_blocks {
                return Ok(None);
            }
            // Converse requires a toolConfig when the conversation holds tool blocks.
            for name in &self.used_tools {
                let mut quoted = Vec::with_capacity(name.len() + 2);
                json::write_str(&mut quoted, name);
                let name = String::from_utf8(quoted)
                    .ok()
                    .and_then(|s| RawValue::from_string(s).ok())
                    .ok_or_else(|| invalid("messages", "unusable tool name"))?;
                let schema = RawValue::from_string(r#"{"type":"object","properties":{}}"#.into())
                    .map_err(|e| invalid("messages", e.to_string()))?;
                tools.push(Tool::ToolSpec(ToolSpec {
                    name: Cow::Owned(name),
                    description: None,
                    input_schema: InputSchema {
                        json: Cow::Owned(schema),
                    },
                }));
            }
            if tools.is_empty() {
                return Ok(None);
            }
            return Ok(Some(ToolConfig {
                tools,
                tool_choice: None,
            }));
        }
        match choice {
            Some(Choice::None) if !self.has_tool_blocks => Ok(None),
            Some(Choice::None) | None => Ok(Some(ToolConfig {
                tools,
                tool_choice: None,
            })),
            Some(Choice::Converse(choice)) => Ok(Some(ToolConfig {
                tools,
                tool_choice: Some(choice),
            })),
        }
    }

    fn tool_choice(&mut self, raw: &RawValue) -> Result<Choice, ConverseError> {
        let fields = object(raw, "tool_choice")?;
        let kind = string(&fields, "type", "tool_choice")?;
        let choice = match kind.as_str() {
            "auto" => Choice::Converse(ToolChoice::Auto(Empty {})),
            "any" => Choice::Converse(ToolChoice::Any(Empty {})),
            "tool" => Choice::Converse(ToolChoice::Tool(Named {
                name: string(&fields, "name", "tool_choice")?,
            })),
            "none" => Choice::None,
            other => {
                return Err(invalid(
                    "tool_choice.type",
                    format!("unknown tool_choice type `{other}`"),
                ));
            }
        };
        self.drop_unknown(&fields, &["type", "name"], "tool_choice");
        Ok(choice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_names_are_made_safe() {
        assert_eq!(safe_doc_name("report.pdf").as_deref(), Some("report-pdf"));
        assert_eq!(
            safe_doc_name("  Q3   results (final) [v2]  ").as_deref(),
            Some("Q3 results (final) [v2]")
        );
        assert_eq!(
            safe_doc_name("Ünïcode_name").as_deref(),
            Some("-n-code-name")
        );
        assert_eq!(safe_doc_name("   "), None);
        assert_eq!(
            safe_doc_name(&"x".repeat(500)).map(|s| s.len()),
            Some(DOC_NAME_MAX)
        );
    }
}

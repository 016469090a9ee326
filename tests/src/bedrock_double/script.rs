//! Scripted behaviour: `[double:…]` triggers in the last user message select what the double
//! answers, and this module builds the Anthropic message / stream events for it.
//!
//! Triggers are read from the last `user` message: its string content, or its last `text`
//! block (a user turn holding only `tool_result` blocks has no trigger, so a tool loop ends in
//! a plain text reply). Several triggers may be combined, e.g. `[double:tool] [double:slow:50]`.
//!
//! | trigger | InvokeModel | InvokeModelWithResponseStream |
//! |---|---|---|
//! | (none) | text `Hello from the Bedrock double.`, `end_turn` (`max_tokens` honoured at 4 chars/token) | same, one `text_delta` per word |
//! | `[double:tool]` | one `tool_use` block `Read {"file_path":"/tmp/x"}`, `tool_use` | `input_json_delta` pieces |
//! | `[double:read:PATH]` | the same, reading `PATH` | same |
//! | `[double:exec:CMD]` | one `tool_use` block `exec_command {"cmd":"CMD"}` (Codex CLI's shell tool), `tool_use` | `input_json_delta` pieces |
//! | `[double:thinking]` | `thinking` block (with signature) then text — only if the request has `thinking` enabled/adaptive | `thinking_delta`s, `signature_delta`, then text |
//! | `[double:throttle]` | HTTP 429 `ThrottlingException` | same, before any frame |
//! | `[double:validation]` | HTTP 400 `ValidationException` | same |
//! | `[double:unavailable]` | HTTP 503 `ServiceUnavailableException` | same |
//! | `[double:error:<Name>]` | HTTP error of that Bedrock exception (§3.7 statuses) | same |
//! | `[double:midstream-throttle]` | HTTP 429 | 3 events, then an exception frame `throttlingException` |
//! | `[double:midstream:<member>]` | HTTP equivalent | 3 events, then exception frame `<member>` |
//! | `[double:truncate]` | half the JSON, then the connection is cut | 3 events, then the connection is cut |
//! | `[double:truncate-clean]` | half the JSON, then cut | 3 events, then a clean end of body (no `message_stop`) |
//! | `[double:slow:MS]` | waits MS before answering | MS of silence between events |
//! | `[double:hang]` | never answers (not even headers) | same |
//! | `[double:hang-midstream]` | never answers | `message_start`, then silence |
//! | `[double:cache:R:W]` | usage `cache_read_input_tokens`=R, `cache_creation_input_tokens`=W | same, plus invocation metrics |
//! | `[double:throttle-on:TEXT]` | `[double:throttle]` when the model id contains TEXT, else nothing | same |
//!
//! `Converse` / `ConverseStream` (models that are not Anthropic's, or Claude through Converse)
//! follow the same table with Converse shapes: the reply is `{output:{message}, stopReason,
//! usage:{inputTokens, outputTokens, totalTokens, cacheReadInputTokens?, cacheWriteInputTokens?},
//! metrics}`, the stream `messageStart`, text as `contentBlockDelta`s without a
//! `contentBlockStart`, a tool call as `contentBlockStart{toolUse}` and `toolUse.input` deltas,
//! `contentBlockStop`, `messageStop`, `metadata{usage, metrics}`; `max_tokens` is
//! `inferenceConfig.maxTokens`, `[double:thinking]` does nothing, and the trigger is read from the
//! last `{text}` block of the last user message. Tool call ids are `tooluse_…`.
//!
//! Fault triggers (`throttle`, `validation`, `unavailable`, `error:…`, `hang`, `slow`) also
//! apply to CountTokens, read from the decoded inner body. Token counts are deterministic:
//! input = characters of system + message text (and tool inputs/results) / 4 + 1.

use serde_json::{Map, Value, json};

/// The text of the default reply.
pub const DEFAULT_REPLY: &str = "Hello from the Bedrock double.";
/// The tool the `[double:tool]` reply calls.
pub const TOOL_NAME: &str = "Read";
/// The tool the `[double:exec:CMD]` reply calls (Codex CLI's shell tool).
pub const EXEC_TOOL_NAME: &str = "exec_command";
/// Thinking text of the `[double:thinking]` reply.
pub const THINKING_TEXT: &str = "Let me think about this step by step.";
/// Message of the scripted throttling errors (HTTP and mid-stream).
pub const THROTTLE_MESSAGE: &str = "Too many requests, please wait before trying again.";

/// Parsed triggers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub tool: bool,
    /// `[double:read:PATH]`: the tool call reads PATH.
    pub read: Option<String>,
    /// `[double:exec:CMD]`: the tool call runs CMD with Codex CLI's `exec_command`.
    pub exec: Option<String>,
    pub thinking: bool,
    /// `(exception name, HTTP status, message)` returned before any byte of the reply.
    pub error: Option<(String, u16, String)>,
    /// Stream exception member (`throttlingException`, …) sent after the first events.
    pub midstream: Option<String>,
    /// Abort the connection after the first events (no `message_stop`).
    pub truncate: bool,
    /// End the stream cleanly after the first events (no `message_stop`).
    pub truncate_clean: bool,
    /// Silence between stream events (or before a non-streaming reply).
    pub slow_ms: Option<u64>,
    /// Never answer.
    pub hang: bool,
    /// Send `message_start`, then nothing, forever.
    pub hang_midstream: bool,
    /// `(cache_read_input_tokens, cache_creation_input_tokens)`.
    pub cache: Option<(u64, u64)>,
    /// `[double:throttle-on:TEXT]`: throttle only models whose id contains TEXT
    /// ([`Script::for_model`]).
    pub throttle_on: Option<String>,
}

impl Script {
    /// Parses every `[double:…]` token in `text`; unknown tokens are ignored.
    pub fn parse(text: &str) -> Script {
        let mut script = Script::default();
        for (name, arg) in crate::double_http::triggers(text) {
            script.apply(name, arg);
        }
        script
    }

    fn apply(&mut self, name: &str, arg: &str) {
        match name {
            "tool" => self.tool = true,
            "read" if !arg.is_empty() => {
                self.tool = true;
                self.read = Some(arg.to_owned());
            }
            "exec" if !arg.is_empty() => {
                self.tool = true;
                self.exec = Some(arg.to_owned());
            }
            "thinking" => self.thinking = true,
            "throttle" => self.error = Some(error_for("ThrottlingException")),
            "validation" => self.error = Some(error_for("ValidationException")),
            "unavailable" => self.error = Some(error_for("ServiceUnavailableException")),
            "error" if !arg.is_empty() => self.error = Some(error_for(arg)),
            "midstream-throttle" => self.midstream = Some("throttlingException".to_owned()),
            "midstream" if !arg.is_empty() => self.midstream = Some(arg.to_owned()),
            "truncate" => self.truncate = true,
            "truncate-clean" => self.truncate_clean = true,
            "slow" => self.slow_ms = arg.parse().ok(),
            "hang" => self.hang = true,
            "hang-midstream" => self.hang_midstream = true,
            "throttle-on" if !arg.is_empty() => self.throttle_on = Some(arg.to_owned()),
            "cache" => {
                let (read, write) = arg.split_once(':').unwrap_or((arg, "0"));
                if let (Ok(read), Ok(write)) = (read.parse(), write.parse()) {
                    self.cache = Some((read, write));
                }
            }
            _ => {}
        }
    }

    /// Applies the model-dependent triggers for `model_id`.
    #[must_use]
    pub fn for_model(mut self, model_id: &str) -> Script {
        if let Some(text) = self.throttle_on.take()
            && model_id.contains(&text)
        {
            self.error = Some(error_for("ThrottlingException"));
        }
        self
    }

    /// A short label for the request log.
    pub fn label(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some((name, ..)) = &self.error {
            parts.push(format!("error:{name}"));
        }
        for (on, label) in [
            (self.tool, "tool"),
            (self.thinking, "thinking"),
            (self.truncate, "truncate"),
            (self.truncate_clean, "truncate-clean"),
            (self.hang, "hang"),
            (self.hang_midstream, "hang-midstream"),
        ] {
            if on {
                parts.push(label.to_owned());
            }
        }
        if let Some(m) = &self.midstream {
            parts.push(format!("midstream:{m}"));
        }
        if let Some(ms) = self.slow_ms {
            parts.push(format!("slow:{ms}"));
        }
        if let Some((r, w)) = self.cache {
            parts.push(format!("cache:{r}:{w}"));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// HTTP status and message of a Bedrock exception by name (protocols.md §3.7).
pub fn error_for(name: &str) -> (String, u16, String) {
    let (status, message) = match name {
        "ValidationException" => (
            400,
            "Malformed input request: scripted by [double:validation], please reformat your input and try again.",
        ),
        "ServiceQuotaExceededException" => (400, "Your request exceeded the service quota."),
        "ConflictException" => (
            400,
            "The request conflicts with the current state of the resource.",
        ),
        "AccessDeniedException" => (
            403,
            "You don't have access to the model with the specified model ID.",
        ),
        "ResourceNotFoundException" => (404, "The specified resource ARN was not found."),
        "ModelTimeoutException" => (
            408,
            "Model has timed out in processing the request. Try your request again.",
        ),
        "ThrottlingException" => (429, THROTTLE_MESSAGE),
        "ModelNotReadyException" => (
            429,
            "Model is not ready to serve inference requests. Try again later.",
        ),
        "ModelErrorException" => (424, "The model returned an error."),
        "InternalServerException" => (500, "The server encountered an internal error."),
        "ServiceUnavailableException" => (503, "Bedrock is unable to process your request."),
        _ => (500, "Scripted error with an unknown exception name."),
    };
    (name.to_owned(), status, message.to_owned())
}

/// HTTP equivalent of a stream exception member (`throttlingException` → `ThrottlingException`).
pub fn http_error_for_stream_member(member: &str) -> (String, u16, String) {
    let mut chars = member.chars();
    let name = match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    };
    error_for(&name)
}

/// The text that drives the script: last user message, string content or last text block.
pub fn trigger_text(body: &Value) -> String {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(last_user) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match last_user.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .rev()
            .find(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .and_then(|b| b.get("text").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The text that drives the script in a Converse body: the last `{text}` block of the last user
/// message.
pub fn converse_trigger_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content").and_then(Value::as_array))
        .and_then(|blocks| {
            blocks
                .iter()
                .rev()
                .find_map(|b| b.get("text").and_then(Value::as_str))
        })
        .unwrap_or_default()
        .to_owned()
}

/// Deterministic input token count: characters of all prompt text / 4 + 1.
///
/// Counts `system`, message text (string content, `text` blocks, `tool_result` text) and
/// `tool_use` inputs. Works for InvokeModel bodies and Converse-shaped bodies alike.
pub fn input_tokens(body: &Value) -> u64 {
    let mut chars = 0usize;
    match body.get("system") {
        Some(Value::String(s)) => chars += s.chars().count(),
        Some(Value::Array(blocks)) => chars += blocks.iter().map(text_chars).sum::<usize>(),
        _ => {}
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            match m.get("content") {
                Some(Value::String(s)) => chars += s.chars().count(),
                Some(Value::Array(blocks)) => chars += blocks.iter().map(text_chars).sum::<usize>(),
                _ => {}
            }
        }
    }
    (chars / 4) as u64 + 1
}

fn text_chars(block: &Value) -> usize {
    let mut n = 0;
    if let Some(t) = block.get("text").and_then(Value::as_str) {
        n += t.chars().count();
    }
    match block.get("content") {
        Some(Value::String(s)) => n += s.chars().count(),
        Some(Value::Array(inner)) => n += inner.iter().map(text_chars).sum::<usize>(),
        _ => {}
    }
    if block.get("type").and_then(Value::as_str) == Some("tool_use")
        && let Some(input) = block.get("input")
    {
        n += input.to_string().chars().count();
    }
    n
}

fn out_tokens(chars: usize) -> u64 {
    (chars / 4) as u64 + 1
}

/// One content block of the reply, with how it streams.
#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    Thinking {
        thinking: String,
        signature: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// The reply the script produces for a request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub id: String,
    pub model: String,
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Reply {
    /// Builds the reply for a validated invoke body.
    pub fn build(script: &Script, body: &Map<String, Value>, model: &str, seq: u64) -> Reply {
        let body_value = Value::Object(body.clone());
        let thinking_enabled = body
            .get("thinking")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "enabled" || t == "adaptive");
        let max_tokens = body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let mut blocks = Vec::new();
        let mut stop_reason = "end_turn";
        if script.thinking && thinking_enabled {
            blocks.push(Block::Thinking {
                thinking: THINKING_TEXT.to_owned(),
                signature: crate::thinking::sign(
                    crate::thinking::Platform::Bedrock,
                    &id_suffix(seq),
                    THINKING_TEXT,
                ),
            });
        }
        if script.tool {
            let (name, input) = match &script.exec {
                Some(cmd) => (EXEC_TOOL_NAME, json!({ "cmd": cmd })),
                None => (
                    TOOL_NAME,
                    json!({ "file_path": script.read.as_deref().unwrap_or("/tmp/x") }),
                ),
            };
            blocks.push(Block::ToolUse {
                id: format!("toolu_bdrk_01{}", id_suffix(seq)),
                name: name.to_owned(),
                input,
            });
            stop_reason = "tool_use";
        } else {
            // Honour max_tokens on the plain text reply (4 characters per token).
            let limit = usize::try_from(max_tokens.saturating_mul(4)).unwrap_or(usize::MAX);
            let mut text = DEFAULT_REPLY.to_owned();
            if out_tokens(text.chars().count()) > max_tokens {
                text = text.chars().take(limit.saturating_sub(4).max(1)).collect();
                stop_reason = "max_tokens";
            }
            blocks.push(Block::Text(text));
        }
        let output_chars: usize = blocks
            .iter()
            .map(|b| match b {
                Block::Text(t) => t.chars().count(),
                Block::Thinking { thinking, .. } => thinking.chars().count(),
                Block::ToolUse { input, .. } => input.to_string().chars().count(),
            })
            .sum();
        let (cache_read, cache_write) = script.cache.unwrap_or((0, 0));
        Reply {
            id: format!("msg_bdrk_01{}", id_suffix(seq)),
            model: model.to_owned(),
            blocks,
            stop_reason,
            input_tokens: input_tokens(&body_value),
            output_tokens: out_tokens(output_chars).min(max_tokens),
            cache_read,
            cache_write,
        }
    }

    /// Builds the reply for a validated Converse body (`inferenceConfig.maxTokens` as
    /// `max_tokens`; no thinking).
    pub fn build_converse(script: &Script, body: &Map<String, Value>, seq: u64) -> Reply {
        let mut shim = Map::new();
        for key in ["system", "messages"] {
            if let Some(v) = body.get(key) {
                shim.insert(key.to_owned(), v.clone());
            }
        }
        if let Some(max) = body
            .get("inferenceConfig")
            .and_then(|c| c.get("maxTokens"))
            .and_then(Value::as_u64)
        {
            shim.insert("max_tokens".to_owned(), json!(max));
        }
        let script = Script {
            thinking: false,
            ..script.clone()
        };
        let mut reply = Reply::build(&script, &shim, "", seq);
        for block in &mut reply.blocks {
            if let Block::ToolUse { id, .. } = block {
                *id = format!("tooluse_{}", id_suffix(seq));
            }
        }
        reply
    }

    fn converse_usage(&self, output_tokens: u64) -> Value {
        let mut usage = json!({
            "inputTokens": self.input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": self.input_tokens + self.cache_read + self.cache_write + output_tokens,
        });
        if self.cache_read > 0 || self.cache_write > 0 {
            usage["cacheReadInputTokens"] = json!(self.cache_read);
            usage["cacheWriteInputTokens"] = json!(self.cache_write);
        }
        usage
    }

    /// The `Converse` response body.
    pub fn converse_json(&self, latency_ms: u64) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text(text) => Some(json!({ "text": text })),
                Block::ToolUse { id, name, input } => {
                    Some(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}))
                }
                Block::Thinking { .. } => None,
            })
            .collect();
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self.stop_reason,
            "usage": self.converse_usage(self.output_tokens),
            "metrics": {"latencyMs": latency_ms},
        })
    }

    /// The `ConverseStream` events as `(:event-type, payload)`, `messageStart` … `metadata`
    /// (the sender sets `metadata.metrics.latencyMs`).
    pub fn converse_events(&self) -> Vec<(&'static str, Value)> {
        let mut events = vec![("messageStart", json!({"role": "assistant"}))];
        let blocks = self
            .blocks
            .iter()
            .filter(|b| !matches!(b, Block::Thinking { .. }));
        for (index, block) in blocks.enumerate() {
            match block {
                Block::Text(text) => {
                    // Converse sends no contentBlockStart for text.
                    for piece in split_words(text) {
                        events.push((
                            "contentBlockDelta",
                            json!({"contentBlockIndex": index, "delta": {"text": piece}}),
                        ));
                    }
                }
                Block::ToolUse { id, name, input } => {
                    events.push((
                        "contentBlockStart",
                        json!({"contentBlockIndex": index,
                               "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                    ));
                    let json_text = input.to_string();
                    let split = json_text.find(':').map_or(json_text.len(), |p| p + 1);
                    for piece in [&json_text[..split], &json_text[split..]] {
                        events.push((
                            "contentBlockDelta",
                            json!({"contentBlockIndex": index,
                                   "delta": {"toolUse": {"input": piece}}}),
                        ));
                    }
                }
                Block::Thinking { .. } => {}
            }
            events.push(("contentBlockStop", json!({"contentBlockIndex": index})));
        }
        events.push(("messageStop", json!({"stopReason": self.stop_reason})));
        events.push((
            "metadata",
            json!({"usage": self.converse_usage(self.output_tokens), "metrics": {"latencyMs": 0}}),
        ));
        events
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output_tokens,
        })
    }

    /// The non-streaming InvokeModel response body.
    pub fn message_json(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text(text) => json!({ "type": "text", "text": text }),
                Block::Thinking {
                    thinking,
                    signature,
                } => {
                    json!({ "type": "thinking", "thinking": thinking, "signature": signature })
                }
                Block::ToolUse { id, name, input } => {
                    json!({ "type": "tool_use", "id": id, "name": name, "input": input })
                }
            })
            .collect();
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": null,
            "usage": self.usage(self.output_tokens),
        })
    }

    /// The Anthropic stream events, `message_start` … `message_stop` (without the
    /// invocation metrics, which the sender adds to the last event when it knows the latency).
    pub fn stream_events(&self) -> Vec<Value> {
        let mut events = vec![json!({
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": self.usage(1),
            }
        })];
        for (index, block) in self.blocks.iter().enumerate() {
            match block {
                Block::Text(text) => {
                    events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
                    for piece in split_words(text) {
                        events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}));
                    }
                }
                Block::Thinking {
                    thinking,
                    signature,
                } => {
                    events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}));
                    for piece in split_words(thinking) {
                        events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}}));
                    }
                    events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": signature}}));
                }
                Block::ToolUse { id, name, input } => {
                    events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
                    let json_text = input.to_string();
                    let split = json_text.find(':').map_or(json_text.len(), |p| p + 1);
                    for piece in ["", &json_text[..split], &json_text[split..]] {
                        events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}));
                    }
                }
            }
            events.push(json!({"type": "content_block_stop", "index": index}));
        }
        events.push(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens},
        }));
        events.push(json!({"type": "message_stop"}));
        events
    }

    /// `amazon-bedrock-invocationMetrics` for the `message_stop` chunk.
    pub fn invocation_metrics(
        &self,
        invocation_latency_ms: u64,
        first_byte_latency_ms: u64,
    ) -> Value {
        let mut m = json!({
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": self.output_tokens,
            "invocationLatency": invocation_latency_ms,
            "firstByteLatency": first_byte_latency_ms,
        });
        if self.cache_read > 0 || self.cache_write > 0 {
            m["cacheReadInputTokenCount"] = json!(self.cache_read);
            m["cacheWriteInputTokenCount"] = json!(self.cache_write);
        }
        m
    }
}

/// Splits into word-sized pieces that concatenate back to `text` ("Hello", " from", …).
fn split_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(word.to_owned());
        } else {
            out.push(format!(" {word}"));
        }
    }
    out.retain(|p| !p.is_empty());
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// 22 base58-ish characters derived from a sequence number (ids look like Anthropic's).
pub fn id_suffix(seq: u64) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..22)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x = x
                .rotate_left(7)
                .wrapping_mul(0x2545_F491_4F6C_DD1D)
                .wrapping_add(1);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_triggers() {
        let s = Script::parse(
            "do it [double:tool] [double:slow:250] [double:cache:10:3] [double:nope]",
        );
        assert!(s.tool);
        assert_eq!(s.slow_ms, Some(250));
        assert_eq!(s.cache, Some((10, 3)));
        assert_eq!(s.error, None);
        let s = Script::parse("[double:throttle]");
        assert_eq!(
            s.error.as_ref().map(|e| (e.0.as_str(), e.1)),
            Some(("ThrottlingException", 429))
        );
        let s = Script::parse("[double:error:ModelTimeoutException]");
        assert_eq!(s.error.as_ref().map(|e| e.1), Some(408));
        assert_eq!(Script::parse("plain text"), Script::default());
        assert_eq!(
            http_error_for_stream_member("throttlingException").1,
            429,
            "stream member maps back to the HTTP exception"
        );
    }

    #[test]
    fn trigger_comes_from_last_user_text() {
        let body = json!({"messages": [
            {"role": "user", "content": "[double:tool]"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "file"}]},
        ]});
        assert_eq!(trigger_text(&body), "");
        let body = json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "[double:thinking]"}]},
        ]});
        assert_eq!(trigger_text(&body), "[double:thinking]");
    }

    #[test]
    fn token_counts_are_deterministic() {
        let body = json!({"system": "12345678", "messages": [{"role": "user", "content": "1234"}]});
        assert_eq!(input_tokens(&body), 12 / 4 + 1);
    }

    #[test]
    fn stream_events_concatenate_to_the_message() {
        let body: Map<String, Value> = serde_json::from_value(json!({
            "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap_or_default();
        let reply = Reply::build(&Script::default(), &body, "claude-x", 1);
        let text: String = reply
            .stream_events()
            .iter()
            .filter_map(|e| {
                e.pointer("/delta/text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, DEFAULT_REPLY);
        assert_eq!(reply.message_json()["content"][0]["text"], DEFAULT_REPLY);
    }

    #[test]
    fn max_tokens_truncates_text() {
        let body: Map<String, Value> = serde_json::from_value(json!({
            "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap_or_default();
        let reply = Reply::build(&Script::default(), &body, "claude-x", 1);
        assert_eq!(reply.stop_reason, "max_tokens");
        assert_eq!(reply.output_tokens, 1);
    }
}

//! Chat Completions SSE (`chat.completion.chunk`s) -> Anthropic SSE events.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::response::tool_use_id;
use super::{error_text, message_id, stop_reason, to_bytes, usage_from_openai};
use crate::anthropic::{ApiError, ErrorKind, Usage};
use crate::sse::{self, SseEvent, SseParser};

/// Why a Chat Completions stream could not be translated. [`StreamError::to_api_error`] gives
/// the `api_error` to send the client (as [`ApiError::to_sse`]) before closing the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// An event whose data is neither `[DONE]` nor a JSON object of the expected shape.
    #[error("invalid Chat Completions stream chunk: {0}")]
    InvalidChunk(String),
    /// The upstream ended before a `finish_reason`, `[DONE]` or an error.
    #[error("Chat Completions stream ended before finish_reason or [DONE]")]
    Truncated,
}

impl StreamError {
    /// The error to send the client (`api_error`, 500).
    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(ErrorKind::Api, self.to_string())
    }
}

/// The content block currently open.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Block {
    None,
    Text,
    Tool {
        /// The upstream's `tool_calls[].index`.
        index: u64,
        /// The upstream's id for the call, when it gave one.
        upstream_id: Option<String>,
    },
}

/// Translates the SSE stream of a Chat Completions request (`stream: true`, ideally with
/// `stream_options.include_usage`) into Anthropic's event sequence, incrementally.
///
/// Feed the upstream bytes as they come to [`ChatToAnthropic::push`], in any split (the output
/// is the same whatever the split, even byte by byte); call [`ChatToAnthropic::finish`] when the
/// upstream ends. Output, per `choices[0]` (other choices are ignored):
///
/// * `message_start` on the first chunk (`id` from the chunk's, usage all 0: input tokens are
///   only known at the end);
/// * a `text` block opened on the first non-empty `delta.content` (or `delta.refusal`), with a
///   `text_delta` per fragment;
/// * a `tool_use` block per new `delta.tool_calls[].index` (the open block is closed first; `id`
///   and `name` from that first delta; a repeated index with a different non-empty `id` also
///   starts a new call), each `function.arguments` fragment as an `input_json_delta`, verbatim;
/// * on `finish_reason`, the open block is closed; `message_delta` (`stop_reason`, and usage
///   with `input_tokens`, output and cache-read counts) and `message_stop` follow as soon as
///   the usage is known: a chunk with a non-null `usage` in or after the one with
///   `finish_reason` (with `include_usage` it comes after, with `choices: []` or `null`), or
///   `[DONE]`, or the end of the stream (servers that send no usage, such as some Ollama
///   versions, then report 0 tokens);
/// * `delta.role`, `delta.content: null`, `reasoning_content` / `reasoning` (dropped, see the
///   module docs), SSE comments and `event:` names are ignored; `\r\n` and `\r` line ends are
///   accepted;
/// * an error chunk (`data: {"error":{…}}`, or vLLM's `{"object":"error",…}`, or any event named
///   `error`) becomes an Anthropic `error` event and ends the stream: kind from a numeric `code`
///   (an HTTP status, vLLM), else from `type` (Anthropic names, OpenAI's `server_error`,
///   `rate_limit_exceeded`, …), else `api_error`.
///
/// After `message_stop` or an error, later input produces no output. A chunk that cannot be
/// read gives [`StreamError::InvalidChunk`]: if the same `push` already produced output, that
/// output is returned and the error comes from the next `push` or `finish`, so no translated
/// byte is lost whatever the split.
#[derive(Debug)]
pub struct ChatToAnthropic {
    parser: SseParser,
    model: String,
    /// The Anthropic message id, once `message_start` was sent.
    id: Option<String>,
    block: Block,
    /// The Anthropic index of the open block, or of the next one.
    next_index: usize,
    /// Upstream tool call indexes whose blocks were opened.
    tool_indexes: Vec<u64>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    stopped: bool,
    error: Option<ApiError>,
    /// A protocol violation not reported yet (its push returned the output before it).
    pending: Option<StreamError>,
    failed: bool,
}

impl ChatToAnthropic {
    /// A translator at the start of a stream; `model` is the name the client asked for, reported
    /// in `message_start`.
    pub fn new(model: &str) -> Self {
        ChatToAnthropic {
            parser: SseParser::new(),
            model: model.to_owned(),
            id: None,
            block: Block::None,
            next_index: 0,
            tool_indexes: Vec::new(),
            finish_reason: None,
            usage: None,
            stopped: false,
            error: None,
            pending: None,
            failed: false,
        }
    }

    /// Feeds upstream bytes; returns the Anthropic SSE bytes they complete (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, StreamError> {
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        if self.ended() {
            return Ok(Bytes::new());
        }
        self.parser.push(chunk);
        self.drain()
    }

    /// Call when the upstream ended. An event left without its closing blank line is read
    /// (lenient: some servers end with `data: [DONE]\n`). If a `finish_reason` was seen but
    /// the message is not closed yet (no usage chunk, no `[DONE]`), it is closed now.
    /// `Err(Truncated)` when the stream ended before a `finish_reason`, `[DONE]` or an error
    /// (any output of that last event is then dropped: the client gets the error instead).
    pub fn finish(&mut self) -> Result<Bytes, StreamError> {
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        if self.ended() {
            return Ok(Bytes::new());
        }
        self.parser.push(b"\n\n");
        let mut out = BytesMut::from(&self.drain()?[..]);
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        if self.ended() {
            return Ok(out.freeze());
        }
        if self.finish_reason.is_none() {
            self.failed = true;
            return Err(StreamError::Truncated);
        }
        self.finalize(&mut out);
        Ok(out.freeze())
    }

    /// The upstream's usage in Anthropic terms (`input_tokens` without the cached tokens);
    /// `None` until a chunk reported one.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream is over: `message_stop` or an `error` event was produced, or the
    /// input was unreadable.
    pub fn ended(&self) -> bool {
        self.stopped || self.error.is_some() || self.failed
    }

    /// The upstream error relayed as an `error` event, if any.
    pub fn terminal_error(&self) -> Option<&ApiError> {
        self.error.as_ref()
    }

    fn drain(&mut self) -> Result<Bytes, StreamError> {
        let mut out = BytesMut::new();
        while let Some(event) = self.parser.next_event() {
            if self.ended() {
                continue;
            }
            if let Err(err) = self.on_event(&event, &mut out) {
                self.failed = true;
                if out.is_empty() {
                    return Err(err);
                }
                self.pending = Some(err);
            }
        }
        Ok(out.freeze())
    }

    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<(), StreamError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.finalize(out);
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|e| StreamError::InvalidChunk(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| StreamError::InvalidChunk("not a JSON object".into()))?;
        let is_error = event.event.as_deref() == Some("error")
            || obj.get("error").is_some_and(|e| !e.is_null())
            || obj.get("object").and_then(Value::as_str) == Some("error");
        if is_error {
            let err = stream_error(&value);
            out.extend_from_slice(&err.to_sse());
            self.error = Some(err);
            return Ok(());
        }
        if self.id.is_none() {
            let id = message_id(obj.get("id").and_then(Value::as_str));
            self.start(id, out);
        }
        let usage = obj.get("usage").and_then(usage_from_openai);
        if usage.is_some() {
            self.usage = usage;
        }
        match obj.get("choices") {
            None | Some(Value::Null) => {}
            Some(Value::Array(choices)) => {
                for choice in choices {
                    let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if index == 0 {
                        self.on_choice(choice, out)?;
                    }
                }
            }
            Some(_) => {
                return Err(StreamError::InvalidChunk(
                    "`choices` is not an array".into(),
                ));
            }
        }
        if self.finish_reason.is_some() && usage.is_some() {
            self.finalize(out);
        }
        Ok(())
    }

    fn on_choice(&mut self, choice: &Value, out: &mut BytesMut) -> Result<(), StreamError> {
        if let Some(delta) = choice.get("delta").filter(|d| d.is_object()) {
            for key in ["content", "refusal"] {
                if let Some(text) = delta.get(key).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    self.text(text, out);
                }
            }
            match delta.get("tool_calls") {
                None | Some(Value::Null) => {}
                Some(Value::Array(calls)) => {
                    for call in calls {
                        self.tool_delta(call, out)?;
                    }
                }
                Some(_) => {
                    return Err(StreamError::InvalidChunk(
                        "`delta.tool_calls` is not an array".into(),
                    ));
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.close(out);
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(())
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if self.block != Block::Text {
            self.close(out);
            self.block = Block::Text;
            emit(
                out,
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": self.next_index,
                    "content_block": {"type": "text", "text": ""},
                }),
            );
        }
        emit(
            out,
            "content_block_delta",
            &json!({
                "type": "content_block_delta",
                "index": self.next_index,
                "delta": {"type": "text_delta", "text": text},
            }),
        );
    }

    fn tool_delta(&mut self, call: &Value, out: &mut BytesMut) -> Result<(), StreamError> {
        let upstream_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        let index = match call.get("index").and_then(Value::as_u64) {
            Some(index) => index,
            // No index (a few servers): a call with an id is a new one.
            None => match (&self.block, upstream_id) {
                (Block::Tool { index, .. }, None) => *index,
                _ => self.tool_indexes.iter().max().map_or(0, |m| m + 1),
            },
        };
        let continues = match &self.block {
            Block::Tool {
                index: open,
                upstream_id: open_id,
            } => {
                *open == index
                    && !matches!((open_id.as_deref(), upstream_id), (Some(a), Some(b)) if a != b)
            }
            _ => false,
        };
        if !continues {
            // A call seen before resuming (no new id) after another block started: Anthropic
            // blocks cannot interleave.
            if upstream_id.is_none() && self.tool_indexes.contains(&index) {
                return Err(StreamError::InvalidChunk(format!(
                    "tool call {index} continues after another content block started"
                )));
            }
            self.close(out);
            let position = self.tool_indexes.len();
            let id = tool_use_id(upstream_id, self.id.as_deref().unwrap_or("msg_"), position);
            emit(
                out,
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": self.next_index,
                    "content_block": {
                        "type": "tool_use",
                        "id": id,
                        "name": name.unwrap_or_default(),
                        "input": {},
                    },
                }),
            );
            self.tool_indexes.push(index);
            self.block = Block::Tool {
                index,
                upstream_id: upstream_id.map(str::to_owned),
            };
        }
        let arguments = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            // Some servers send the arguments as an object instead of a string.
            Some(obj @ Value::Object(_)) => obj.to_string(),
            _ => String::new(),
        };
        if !arguments.is_empty() {
            emit(
                out,
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": self.next_index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                }),
            );
        }
        Ok(())
    }

    fn start(&mut self, id: String, out: &mut BytesMut) {
        emit(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 0,
                    },
                },
            }),
        );
        self.id = Some(id);
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.block == Block::None {
            return;
        }
        emit(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.next_index}),
        );
        self.block = Block::None;
        self.next_index += 1;
    }

    /// Closes the message: the open block, `message_delta`, `message_stop`.
    fn finalize(&mut self, out: &mut BytesMut) {
        if self.id.is_none() {
            self.start(message_id(None), out);
        }
        self.close(out);
        let stop = stop_reason(self.finish_reason.as_deref(), !self.tool_indexes.is_empty());
        let usage = self.usage.unwrap_or_default();
        emit(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": usage.cache_read_input_tokens,
                    "output_tokens": usage.output_tokens,
                },
            }),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.stopped = true;
    }
}

fn emit(out: &mut BytesMut, name: &str, value: &Value) {
    out.extend_from_slice(&sse::event(name, &to_bytes(value)));
}

/// The Anthropic error for an error chunk.
fn stream_error(value: &Value) -> ApiError {
    let inner = value
        .get("error")
        .filter(|e| e.is_object())
        .unwrap_or(value);
    let kind = match inner.get("code") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (400..600).contains(s))
            .map(ErrorKind::from_status),
        _ => None,
    };
    let named = |key: &str| -> Option<ErrorKind> {
        let name = inner.get(key).and_then(Value::as_str)?;
        ErrorKind::parse(name).or(match name {
            "server_error" | "internal_error" | "InternalServerError" => Some(ErrorKind::Api),
            "rate_limit_exceeded" | "tokens" | "requests" => Some(ErrorKind::RateLimit),
            "BadRequestError" | "invalid_request" => Some(ErrorKind::InvalidRequest),
            "overloaded" | "service_unavailable" => Some(ErrorKind::Overloaded),
            _ => None,
        })
    };
    let kind = kind
        .or_else(|| named("type"))
        .or_else(|| named("code"))
        .unwrap_or(ErrorKind::Api);
    let (message, _) = error_text(value);
    let message = message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "upstream stream error".to_owned());
    ApiError::new(kind, super::cut(message, super::MAX_ERROR_MESSAGE))
}

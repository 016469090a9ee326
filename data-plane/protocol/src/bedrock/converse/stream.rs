//! `ConverseStream` response bytes (AWS event stream) -> Anthropic SSE.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{TokenUsage, additional_stop_sequence, stop_reason};
use crate::anthropic::{ApiError, ErrorKind, Usage};
use crate::bedrock::exception_kind;
use crate::eventstream::{DecodeError, Decoder, Message};
use crate::json;
use crate::sse;

/// Why a `ConverseStream` response could not be translated, or why it ended badly. These are
/// protocol violations by the upstream (or a broken transport); [`StreamError::to_api_error`]
/// gives the `api_error` to send the client before closing the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not a valid event stream (bad CRC or length, or cut inside a frame).
    #[error("Bedrock ConverseStream framing: {0}")]
    Decode(#[from] DecodeError),
    /// A required header is missing (`:message-type`, or `:event-type` on an event).
    #[error("Bedrock ConverseStream message lacks the `{0}` header")]
    MissingHeader(&'static str),
    /// `:message-type` is not `event`, `exception` or `error`.
    #[error("Bedrock ConverseStream message has unknown :message-type `{0}`")]
    UnknownMessageType(String),
    /// An event whose payload is not the JSON its `:event-type` defines.
    #[error("invalid Bedrock ConverseStream `{event}` event: {reason}")]
    InvalidEvent {
        /// The `:event-type`.
        event: String,
        /// What is wrong.
        reason: String,
    },
    /// The stream ended before `messageStop` and without an exception.
    #[error("Bedrock ConverseStream ended before messageStop")]
    Truncated,
}

impl StreamError {
    /// The error to send the client (`api_error`, 500) as an SSE `error` event.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(ErrorKind::Api, self.to_string())
    }
}

/// The kind of the Anthropic block currently open.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Text,
    ToolUse,
    Thinking,
    /// `redacted_thinking`: its data arrives in deltas but Anthropic sends it whole in
    /// `content_block_start`, so the block is emitted when it closes.
    Redacted(Vec<u8>),
}

#[derive(Debug)]
struct Open {
    /// The Converse `contentBlockIndex`.
    converse: u64,
    /// The Anthropic `index`.
    index: u64,
    kind: Kind,
}

/// Translates one `ConverseStream` response into Anthropic SSE.
///
/// Feed the raw response bytes with [`ConverseStream::push`], as they arrive: frames are decoded
/// with [`crate::eventstream`] (CRCs checked) and translated in order, so any split of the input
/// gives the same output. Call [`ConverseStream::finish`] when the upstream ends.
///
/// | Converse (`:event-type`) | Anthropic SSE |
/// |---|---|
/// | `messageStart` | `message_start` with the caller's `id` and `model`, empty content, usage zeros (Converse reports usage only at the end) |
/// | `contentBlockStart` `start.toolUse{toolUseId, name}` | `content_block_start {type:"tool_use", id, name, input:{}}` |
/// | `contentBlockDelta` `delta.text` | `text_delta`; the first one of a block opens `{type:"text", text:""}` (Converse sends no start for text) |
/// | `delta.toolUse.input` | `input_json_delta {partial_json}` |
/// | `delta.reasoningContent.text` | `thinking_delta`; the first one opens `{type:"thinking", thinking:"", signature:""}` |
/// | `delta.reasoningContent.signature` | `signature_delta` (opens a thinking block if none is open) |
/// | `delta.reasoningContent.redactedContent` | a `redacted_thinking` block (start with the whole `data`, then stop), emitted when the block closes; several deltas are joined |
/// | other deltas and starts (citations, images, …) | ignored |
/// | `contentBlockStop` | `content_block_stop` |
/// | `messageStop {stopReason}` | closes an open block; the stop reason ([`super::stop_reason`]) is held |
/// | `metadata {usage}` (after `messageStop`) | `message_delta {delta:{stop_reason, stop_sequence}, usage}` (cumulative, all four counts), then `message_stop` |
/// | other event types | ignored (forward compatibility) |
/// | `:message-type: exception` / `error` | Anthropic `error` event mapped with [`crate::bedrock::exception_kind`] (unknown names -> `api_error`); the stream has ended |
///
/// Anthropic block indexes count from 0 without gaps whatever Converse's `contentBlockIndex`
/// values are. Blocks are strictly sequential: an event for another Converse block (or a delta of
/// another kind) closes the open one first, and a `contentBlockStop` for a block that is not
/// open is ignored, so the output is always well nested even if the upstream interleaves.
/// `message_start` is sent before the first block even if `messageStart` is missing.
///
/// After the end (`message_stop` or an `error` event) further input is ignored. An invalid frame
/// or event makes `push` fail; output produced from earlier frames of the same chunk is
/// returned first and the error by the next call (`push` or `finish`), which keeps the output
/// independent of how the input is split. The stream is unusable after an error.
#[derive(Debug)]
pub struct ConverseStream {
    decoder: Decoder,
    model: String,
    id: String,
    started: bool,
    next_index: u64,
    open: Option<Open>,
    /// The mapped stop reason and sequence, once `messageStop` was seen.
    stop: Option<(&'static str, Option<String>)>,
    metadata: Option<TokenUsage>,
    ended: bool,
    error: Option<ApiError>,
    failed: Option<StreamError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    content_block_index: Option<u64>,
    #[serde(borrow)]
    start: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart<'a> {
    #[serde(borrow)]
    tool_use_id: &'a RawValue,
    #[serde(borrow)]
    name: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    content_block_index: Option<u64>,
    #[serde(borrow)]
    delta: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    content_block_index: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop<'a> {
    stop_reason: Option<String>,
    #[serde(borrow)]
    additional_model_response_fields: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: TokenUsage,
}

#[derive(Deserialize)]
struct ExceptionPayload {
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
}

fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

impl ConverseStream {
    /// A translator for one response, reporting `model` (the name the client asked for) and the
    /// message id `id` (Converse has none: the caller derives one) in `message_start`.
    pub fn new(model: &str, id: &str) -> Self {
        ConverseStream {
            decoder: Decoder::new(),
            model: model.to_owned(),
            id: id.to_owned(),
            started: false,
            next_index: 0,
            open: None,
            stop: None,
            metadata: None,
            ended: false,
            error: None,
            failed: None,
        }
    }

    /// Feeds response bytes (split anywhere) and returns the SSE they complete (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, StreamError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.ended {
            return Ok(Bytes::new());
        }
        self.decoder.push(chunk);
        let mut out = Vec::new();
        while !self.ended {
            let step = match self.decoder.next_message() {
                Ok(Some(msg)) => self.on_message(&msg, &mut out),
                Ok(None) => break,
                Err(e) => Err(StreamError::Decode(e)),
            };
            if let Err(err) = step {
                self.failed = Some(err.clone());
                if out.is_empty() {
                    return Err(err);
                }
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    /// Call when the upstream ended. Returns the closing events when `messageStop` was seen but
    /// `metadata` never came (the answer is complete; [`ConverseStream::usage`] stays `None`);
    /// `Err(Truncated)` when the stream ended before `messageStop` without an exception, or the
    /// framing error if it ended inside a frame; empty output when already ended.
    pub fn finish(&mut self) -> Result<Bytes, StreamError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.ended {
            return Ok(Bytes::new());
        }
        let result = match self.decoder.finish() {
            Err(e) => Err(StreamError::Decode(e)),
            Ok(()) if self.stop.is_some() => {
                let mut out = Vec::new();
                self.end(&mut out);
                Ok(Bytes::from(out))
            }
            Ok(()) => Err(StreamError::Truncated),
        };
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// The usage reported by the `metadata` event; `None` before it.
    pub fn usage(&self) -> Option<Usage> {
        self.metadata.as_ref().map(TokenUsage::to_usage)
    }

    /// Whether the stream has ended: `message_stop` or an `error` event was emitted.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The upstream exception that ended the stream, if any (as sent to the client).
    pub fn terminal_error(&self) -> Option<&ApiError> {
        self.error.as_ref()
    }

    fn on_message(&mut self, msg: &Message, out: &mut Vec<u8>) -> Result<(), StreamError> {
        match msg.header_str(":message-type") {
            Some("event") => {
                let event = msg
                    .header_str(":event-type")
                    .ok_or(StreamError::MissingHeader(":event-type"))?;
                self.on_event(event, &msg.payload, out)
            }
            Some("exception") => {
                let name = msg
                    .header_str(":exception-type")
                    .unwrap_or("unknown exception");
                let message = serde_json::from_slice::<ExceptionPayload>(&msg.payload)
                    .ok()
                    .and_then(|p| p.message.or(p.message_upper))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| name.to_owned());
                self.fail(exception_kind(name).unwrap_or(ErrorKind::Api), message, out);
                Ok(())
            }
            Some("error") => {
                let code = msg.header_str(":error-code").unwrap_or("unknown error");
                let message = msg
                    .header_str(":error-message")
                    .filter(|m| !m.is_empty())
                    .unwrap_or(code)
                    .to_owned();
                self.fail(exception_kind(code).unwrap_or(ErrorKind::Api), message, out);
                Ok(())
            }
            Some(other) => Err(StreamError::UnknownMessageType(other.to_owned())),
            None => Err(StreamError::MissingHeader(":message-type")),
        }
    }

    fn fail(&mut self, kind: ErrorKind, message: String, out: &mut Vec<u8>) {
        let err = ApiError::new(kind, message);
        out.extend_from_slice(&err.to_sse());
        self.error = Some(err);
        self.ended = true;
    }

    fn on_event(
        &mut self,
        event: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        let invalid = |reason: String| StreamError::InvalidEvent {
            event: event.to_owned(),
            reason,
        };
        match event {
            "messageStart" => {
                self.start(out);
                Ok(())
            }
            "contentBlockStart" => {
                let ev: BlockStart<'_> =
                    serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
                let index = ev
                    .content_block_index
                    .ok_or_else(|| invalid("no contentBlockIndex".into()))?;
                let Some(start) = ev.start else {
                    return Ok(());
                };
                let start = json::parse_object(start.get().as_bytes())
                    .map_err(|_| invalid("`start` is not an object".into()))?;
                let Some(tool) = json::get(&start, "toolUse") else {
                    return Ok(());
                };
                let tool: ToolUseStart<'_> = serde_json::from_str(tool.get())
                    .map_err(|e| invalid(format!("start.toolUse: {e}")))?;
                if !is_string(tool.tool_use_id) || !is_string(tool.name) {
                    return Err(invalid(
                        "start.toolUse: toolUseId and name must be strings".into(),
                    ));
                }
                self.start(out);
                self.close(out);
                let anthropic = self.open_block(index, Kind::ToolUse);
                let mut data = Vec::with_capacity(128);
                data.extend_from_slice(
                    format!(r#"{{"type":"content_block_start","index":{anthropic},"content_block":{{"type":"tool_use","id":"#)
                        .as_bytes(),
                );
                data.extend_from_slice(tool.tool_use_id.get().as_bytes());
                data.extend_from_slice(br#","name":"#);
                data.extend_from_slice(tool.name.get().as_bytes());
                data.extend_from_slice(br#","input":{}}}"#);
                out.extend_from_slice(&sse::event("content_block_start", &data));
                Ok(())
            }
            "contentBlockDelta" => {
                let ev: BlockDelta<'_> =
                    serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
                let index = ev
                    .content_block_index
                    .ok_or_else(|| invalid("no contentBlockIndex".into()))?;
                let delta = json::parse_object(ev.delta.get().as_bytes())
                    .map_err(|_| invalid("`delta` is not an object".into()))?;
                if let Some(text) = json::get(&delta, "text") {
                    if !is_string(text) {
                        return Err(invalid("delta.text is not a string".into()));
                    }
                    let i = self.ensure_block(index, Kind::Text, out);
                    self.delta(out, i, "text_delta", "text", text);
                } else if let Some(tool) = json::get(&delta, "toolUse") {
                    let fields = json::parse_object(tool.get().as_bytes())
                        .map_err(|_| invalid("delta.toolUse is not an object".into()))?;
                    let input = json::get(&fields, "input")
                        .filter(|i| is_string(i))
                        .ok_or_else(|| invalid("delta.toolUse.input is not a string".into()))?;
                    let i = match &self.open {
                        Some(open) if open.converse == index && open.kind == Kind::ToolUse => {
                            open.index
                        }
                        _ => {
                            return Err(invalid(format!(
                                "toolUse delta for block {index}, which did not start as toolUse"
                            )));
                        }
                    };
                    self.delta(out, i, "input_json_delta", "partial_json", input);
                } else if let Some(reasoning) = json::get(&delta, "reasoningContent") {
                    let fields = json::parse_object(reasoning.get().as_bytes())
                        .map_err(|_| invalid("delta.reasoningContent is not an object".into()))?;
                    if let Some(text) = json::get(&fields, "text") {
                        if !is_string(text) {
                            return Err(invalid("reasoningContent.text is not a string".into()));
                        }
                        let i = self.ensure_block(index, Kind::Thinking, out);
                        self.delta(out, i, "thinking_delta", "thinking", text);
                    } else if let Some(sig) = json::get(&fields, "signature") {
                        if !is_string(sig) {
                            return Err(invalid(
                                "reasoningContent.signature is not a string".into(),
                            ));
                        }
                        let i = self.ensure_block(index, Kind::Thinking, out);
                        self.delta(out, i, "signature_delta", "signature", sig);
                    } else if let Some(redacted) = json::get(&fields, "redactedContent") {
                        let encoded: String = json::decode(redacted)
                            .ok_or_else(|| invalid("redactedContent is not a string".into()))?;
                        let bytes = BASE64
                            .decode(encoded.as_bytes())
                            .map_err(|e| invalid(format!("redactedContent is not base64: {e}")))?;
                        self.ensure_block(index, Kind::Redacted(Vec::new()), out);
                        if let Some(Open {
                            kind: Kind::Redacted(data),
                            ..
                        }) = &mut self.open
                        {
                            data.extend_from_slice(&bytes);
                        }
                    }
                }
                Ok(())
            }
            "contentBlockStop" => {
                let ev: BlockStop =
                    serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
                let index = ev
                    .content_block_index
                    .ok_or_else(|| invalid("no contentBlockIndex".into()))?;
                if self.open.as_ref().is_some_and(|o| o.converse == index) {
                    self.close(out);
                }
                Ok(())
            }
            "messageStop" => {
                let ev: MessageStop<'_> =
                    serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
                self.start(out);
                self.close(out);
                self.stop = Some((
                    stop_reason(ev.stop_reason.as_deref().unwrap_or("")),
                    additional_stop_sequence(ev.additional_model_response_fields),
                ));
                if self.metadata.is_some() {
                    self.end(out);
                }
                Ok(())
            }
            "metadata" => {
                let ev: Metadata =
                    serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
                self.metadata = Some(ev.usage);
                if self.stop.is_some() {
                    self.end(out);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Emits `message_start` once.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut data = Vec::with_capacity(256);
        data.extend_from_slice(br#"{"type":"message_start","message":{"id":"#);
        json::write_str(&mut data, &self.id);
        data.extend_from_slice(br#","type":"message","role":"assistant","model":"#);
        json::write_str(&mut data, &self.model);
        data.extend_from_slice(
            br#","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}"#,
        );
        out.extend_from_slice(&sse::event("message_start", &data));
    }

    /// Allocates the next Anthropic index for a block of Converse index `converse`.
    fn open_block(&mut self, converse: u64, kind: Kind) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some(Open {
            converse,
            index,
            kind,
        });
        index
    }

    /// The Anthropic index of the open block for (`converse`, kind of `kind`), opening one
    /// (after closing any other) when needed.
    fn ensure_block(&mut self, converse: u64, kind: Kind, out: &mut Vec<u8>) -> u64 {
        if let Some(open) = &self.open
            && open.converse == converse
            && std::mem::discriminant(&open.kind) == std::mem::discriminant(&kind)
        {
            return open.index;
        }
        self.start(out);
        self.close(out);
        let start: Option<&[u8]> = match kind {
            Kind::Text => Some(br#"{"type":"text","text":""}"#),
            Kind::Thinking => Some(br#"{"type":"thinking","thinking":"","signature":""}"#),
            Kind::ToolUse | Kind::Redacted(_) => None,
        };
        let index = self.open_block(converse, kind);
        if let Some(block) = start {
            let mut data = Vec::with_capacity(96);
            data.extend_from_slice(
                format!(r#"{{"type":"content_block_start","index":{index},"content_block":"#)
                    .as_bytes(),
            );
            data.extend_from_slice(block);
            data.push(b'}');
            out.extend_from_slice(&sse::event("content_block_start", &data));
        }
        index
    }

    /// Emits a `content_block_delta` whose delta is `{type, <field>: <raw string>}`.
    fn delta(&self, out: &mut Vec<u8>, index: u64, kind: &str, field: &str, value: &RawValue) {
        let mut data = Vec::with_capacity(value.get().len() + 96);
        data.extend_from_slice(
            format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"{kind}","{field}":"#
            )
            .as_bytes(),
        );
        data.extend_from_slice(value.get().as_bytes());
        data.extend_from_slice(b"}}");
        out.extend_from_slice(&sse::event("content_block_delta", &data));
    }

    /// Closes the open block, if any.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = open.index;
        if let Kind::Redacted(bytes) = open.kind {
            let mut data = Vec::with_capacity(bytes.len() * 4 / 3 + 128);
            data.extend_from_slice(
                format!(
                    r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"redacted_thinking","data":""#
                )
                .as_bytes(),
            );
            data.extend_from_slice(BASE64.encode(&bytes).as_bytes());
            data.extend_from_slice(br#""}}"#);
            out.extend_from_slice(&sse::event("content_block_start", &data));
        }
        out.extend_from_slice(&sse::event(
            "content_block_stop",
            format!(r#"{{"type":"content_block_stop","index":{index}}}"#).as_bytes(),
        ));
    }

    /// Emits `message_delta` and `message_stop`; the stream has ended.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let (reason, sequence) = self.stop.take().unwrap_or(("end_turn", None));
        let mut data = Vec::with_capacity(256);
        data.extend_from_slice(br#"{"type":"message_delta","delta":{"stop_reason":"#);
        json::write_str(&mut data, reason);
        data.extend_from_slice(br#","stop_sequence":"#);
        match &sequence {
            Some(seq) => json::write_str(&mut data, seq),
            None => data.extend_from_slice(b"null"),
        }
        data.extend_from_slice(br#"},"usage":"#);
        self.metadata
            .clone()
            .unwrap_or_default()
            .write_anthropic(&mut data);
        data.push(b'}');
        out.extend_from_slice(&sse::event("message_delta", &data));
        out.extend_from_slice(&sse::event("message_stop", br#"{"type":"message_stop"}"#));
        self.ended = true;
    }
}

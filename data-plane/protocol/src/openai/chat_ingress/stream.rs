//! Anthropic SSE → Chat Completions SSE (`chat.completion.chunk`).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{REASONING_FORMAT, error_body, finish_reason, read_anthropic_error, usage_json};
use crate::anthropic::{ErrorKind, UsageTracker};
use crate::sse::SseParser;

/// What an Anthropic content block becomes.
#[derive(Clone, Copy, Debug)]
enum BlockKind {
    Text,
    /// A thinking block, with its order among the reasoning blocks (`reasoning_details` index).
    Thinking(u64),
    /// A tool_use block, with its order among the tool blocks (`tool_calls` index).
    Tool(u64),
    /// Blocks without a Chat Completions form (server tools, redacted thinking once sent).
    Other,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    index: Option<u64>,
    message: Option<StartMessage>,
    content_block: Option<StartBlock>,
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct StartMessage {
    id: Option<String>,
}

#[derive(Deserialize)]
struct StartBlock {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    name: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    data: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

/// Turns an Anthropic Messages event stream into OpenAI's Chat Completions stream, event by
/// event, whatever the split of the input (one byte per [`ChatStream::push`] gives the same
/// output as the whole stream at once).
///
/// Each output event is `data: {chat.completion.chunk}\n\n`:
///
/// | Anthropic event | chunk `choices[0]` |
/// |---|---|
/// | `message_start` | `delta {role:"assistant", content:""}` (its message id makes the chunk `id`) |
/// | `text_delta` (or text in a block start) | `delta.content` |
/// | `thinking_delta` | `delta.reasoning_content` and `delta.reasoning_details [{type:"reasoning.text", text}]` |
/// | `signature_delta` | `delta.reasoning_details [{type:"reasoning.text", text:"", signature}]` |
/// | `redacted_thinking` block | `delta.reasoning_details [{type:"reasoning.encrypted", data}]` |
/// | `tool_use` block start | `delta.tool_calls [{index, id, type:"function", function:{name, arguments:""}}]` |
/// | `input_json_delta` | `delta.tool_calls [{index, function:{arguments}}]` |
/// | `message_delta` with `stop_reason` | `delta {}`, `finish_reason` |
/// | `message_stop` | (usage chunk) then `data: [DONE]` |
/// | `ping` | the comment `: ping` (keeps the client's idle timer alive; SDKs skip comments) |
/// | `error` | `data: {"error":{…}}` ([`super::error_from_anthropic`]), then nothing: no `[DONE]` |
///
/// `reasoning_details` entries carry `format` `anthropic-claude-v1` and `index` (the block's
/// order among reasoning blocks); `tool_calls[].index` is the block's order among tool blocks,
/// not Anthropic's block index. With `include_usage`, every chunk has `"usage": null` and one
/// more chunk with `choices: []` and the whole usage comes before `[DONE]`, as OpenAI does.
/// Events without an `event:` line are typed by their JSON `type`; unknown events are skipped.
#[derive(Debug)]
pub struct ChatStream {
    parser: SseParser,
    model: String,
    created: u64,
    include_usage: bool,
    id: String,
    started: bool,
    blocks: Vec<(u64, BlockKind)>,
    tools: u64,
    reasoning: u64,
    finish_sent: bool,
    usage: UsageTracker,
    ended: bool,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,"delta":`:
    /// the same for every chunk of the stream, written once (when the id is known).
    prefix: Vec<u8>,
}

impl ChatStream {
    /// A converter for an answer to `model` (the name the client asked for), made at
    /// `created_unix`; `include_usage` is the request's `stream_options.include_usage`.
    pub fn new(model: &str, created_unix: u64, include_usage: bool) -> Self {
        ChatStream {
            parser: SseParser::new(),
            model: model.to_owned(),
            created: created_unix,
            include_usage,
            id: "chatcmpl-".to_owned(),
            started: false,
            blocks: Vec::new(),
            tools: 0,
            reasoning: 0,
            finish_sent: false,
            usage: UsageTracker::new(),
            ended: false,
            prefix: Vec::new(),
        }
    }

    /// Whether the output is complete: `[DONE]` or an error was written.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds Anthropic SSE bytes (split anywhere); returns the output of the events they
    /// complete. Nothing once the stream [`ended`](ChatStream::ended).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.ended {
            return Bytes::new();
        }
        self.parser.push(chunk);
        let mut out = BytesMut::new();
        while !self.ended
            && let Some(event) = self.parser.next_event()
        {
            self.event(event.event.as_deref(), event.data.as_bytes(), &mut out);
        }
        out.freeze()
    }

    /// The upstream ended. If the answer was not complete (no `message_stop`, no error), an
    /// error event says so; otherwise nothing.
    pub fn finish(&mut self) -> Bytes {
        if self.ended {
            return Bytes::new();
        }
        self.ended = true;
        error_line(&error_body(
            ErrorKind::Api,
            "the upstream stream ended before the answer was complete",
        ))
    }

    fn event(&mut self, name: Option<&str>, data: &[u8], out: &mut BytesMut) {
        let parsed: Option<Event> = serde_json::from_slice(data).ok();
        let kind = name
            .map(str::to_owned)
            .or_else(|| parsed.as_ref().and_then(|e| e.kind.clone()));
        let Some(kind) = kind else { return };
        if kind == "error" {
            let (kind, message) = read_anthropic_error(500, data);
            out.extend_from_slice(&error_line(&error_body(kind, &message)));
            self.ended = true;
            return;
        }
        if kind == "ping" {
            out.extend_from_slice(b": ping\n\n");
            return;
        }
        self.usage.observe_typed(&kind, data);
        let Some(event) = parsed else { return };
        match kind.as_str() {
            "message_start" => {
                if let Some(id) = event.message.and_then(|m| m.id) {
                    self.id = format!("chatcmpl-{id}");
                    self.prefix.clear();
                }
                self.start(out);
            }
            "content_block_start" => self.block_start(event, out),
            "content_block_delta" => self.block_delta(event, out),
            "message_delta" => {
                let stop = event.delta.and_then(|d| d.stop_reason);
                if let Some(stop) = stop
                    && !self.finish_sent
                {
                    self.start(out);
                    self.finish_sent = true;
                    self.chunk(out, json!({}), Some(finish_reason(&stop)));
                }
            }
            "message_stop" => {
                self.start(out);
                if !self.finish_sent {
                    self.finish_sent = true;
                    self.chunk(out, json!({}), Some("stop"));
                }
                if self.include_usage {
                    let usage = self.usage.usage().unwrap_or_default();
                    let chunk = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage_json(&usage),
                    });
                    data_line(out, &chunk);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.ended = true;
            }
            _ => {}
        }
    }

    fn block_start(&mut self, event: Event, out: &mut BytesMut) {
        let (Some(index), Some(block)) = (event.index, event.content_block) else {
            return;
        };
        let kind = match block.kind.as_deref() {
            Some("text") => {
                if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                    self.start(out);
                    self.chunk(out, json!({"content": text}), None);
                }
                BlockKind::Text
            }
            Some("thinking") => {
                let ordinal = self.reasoning;
                self.reasoning += 1;
                if let Some(text) = block.thinking.filter(|t| !t.is_empty()) {
                    self.thinking_text(ordinal, text, out);
                }
                BlockKind::Thinking(ordinal)
            }
            Some("redacted_thinking") => {
                let ordinal = self.reasoning;
                self.reasoning += 1;
                self.start(out);
                let entry = json!({
                    "type": "reasoning.encrypted",
                    "data": block.data.unwrap_or_default(),
                    "format": REASONING_FORMAT,
                    "index": ordinal,
                });
                self.chunk(out, json!({"reasoning_details": [entry]}), None);
                BlockKind::Other
            }
            Some("tool_use") => {
                let ordinal = self.tools;
                self.tools += 1;
                self.start(out);
                let call = json!({
                    "index": ordinal,
                    "id": block.id.unwrap_or_default(),
                    "type": "function",
                    "function": {"name": block.name.unwrap_or_default(), "arguments": ""},
                });
                self.chunk(out, json!({"tool_calls": [call]}), None);
                BlockKind::Tool(ordinal)
            }
            _ => BlockKind::Other,
        };
        self.blocks.push((index, kind));
    }

    fn block_delta(&mut self, event: Event, out: &mut BytesMut) {
        let (Some(index), Some(delta)) = (event.index, event.delta) else {
            return;
        };
        let Some(&(_, kind)) = self.blocks.iter().rev().find(|(i, _)| *i == index) else {
            return;
        };
        match (kind, delta.kind.as_deref()) {
            (BlockKind::Text, Some("text_delta")) => {
                if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                    self.start(out);
                    // The most frequent chunk: written directly, without a JSON tree.
                    let mut content = Vec::with_capacity(text.len() + 16);
                    content.extend_from_slice(b"{\"content\":");
                    crate::json::write_str(&mut content, &text);
                    content.push(b'}');
                    self.chunk_raw(out, &content, None);
                }
            }
            (BlockKind::Thinking(ordinal), Some("thinking_delta")) => {
                if let Some(text) = delta.thinking.filter(|t| !t.is_empty()) {
                    self.thinking_text(ordinal, text, out);
                }
            }
            (BlockKind::Thinking(ordinal), Some("signature_delta")) => {
                if let Some(signature) = delta.signature {
                    self.start(out);
                    let entry = json!({
                        "type": "reasoning.text",
                        "text": "",
                        "signature": signature,
                        "format": REASONING_FORMAT,
                        "index": ordinal,
                    });
                    self.chunk(out, json!({"reasoning_details": [entry]}), None);
                }
            }
            (BlockKind::Tool(ordinal), Some("input_json_delta")) => {
                if let Some(fragment) = delta.partial_json.filter(|t| !t.is_empty()) {
                    self.start(out);
                    let call = json!({"index": ordinal, "function": {"arguments": fragment}});
                    self.chunk(out, json!({"tool_calls": [call]}), None);
                }
            }
            _ => {}
        }
    }

    fn thinking_text(&mut self, ordinal: u64, text: String, out: &mut BytesMut) {
        self.start(out);
        let entry = json!({
            "type": "reasoning.text",
            "text": text,
            "format": REASONING_FORMAT,
            "index": ordinal,
        });
        self.chunk(
            out,
            json!({"reasoning_content": text, "reasoning_details": [entry]}),
            None,
        );
    }

    /// The first chunk (the role), once.
    fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    fn chunk(&mut self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        // Serializing a Value cannot fail (no non-string keys, no custom serializers).
        let delta = serde_json::to_vec(&delta).unwrap_or_default();
        self.chunk_raw(out, &delta, finish);
    }

    /// One `chat.completion.chunk` with `delta` (JSON) and `finish`: the envelope's fixed part
    /// is written once per stream ([`ChatStream::prefix`]).
    fn chunk_raw(&mut self, out: &mut BytesMut, delta: &[u8], finish: Option<&str>) {
        if self.prefix.is_empty() {
            let mut p = Vec::with_capacity(self.id.len() + self.model.len() + 96);
            p.extend_from_slice(b"data: {\"id\":");
            crate::json::write_str(&mut p, &self.id);
            p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            p.extend_from_slice(self.created.to_string().as_bytes());
            p.extend_from_slice(b",\"model\":");
            crate::json::write_str(&mut p, &self.model);
            p.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
            self.prefix = p;
        }
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(delta);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(reason) => {
                let mut quoted = Vec::with_capacity(reason.len() + 2);
                crate::json::write_str(&mut quoted, reason);
                out.extend_from_slice(&quoted);
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]");
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }
}

fn data_line(out: &mut BytesMut, value: &Value) {
    out.extend_from_slice(b"data: ");
    // Serializing a Value cannot fail (no non-string keys, no custom serializers).
    out.extend_from_slice(&serde_json::to_vec(value).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

fn error_line(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

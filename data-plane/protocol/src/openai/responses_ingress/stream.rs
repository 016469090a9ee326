//! Anthropic SSE → Responses SSE.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::{
    ResponseContext, State, call_item, error_code, ids, message_item, reasoning_item, status_for,
};
use crate::anthropic::{ErrorKind, UsageTracker};
use crate::sse::{self, SseParser};

/// What an open Anthropic content block becomes.
#[derive(Debug)]
enum Kind {
    Text(String),
    Thinking {
        thinking: String,
        signature: String,
        part_open: bool,
    },
    Redacted(Value),
    Tool {
        call_id: String,
        name: String,
        arguments: String,
    },
}

#[derive(Debug)]
struct Open {
    index: u64,
    output_index: u64,
    item_id: String,
    kind: Kind,
}

/// Re-encodes an Anthropic Messages event stream as a Responses event stream, incrementally.
///
/// Every event is `event: <type>\ndata: {"type":…,"sequence_number":n,…}\n\n`, numbered from 0.
///
/// | Anthropic | Responses |
/// |---|---|
/// | `message_start` | `response.created`, `response.in_progress` (status `in_progress`, no output) |
/// | `content_block_start` text | `response.output_item.added` (message, `in_progress`), `response.content_part.added` (empty `output_text`) |
/// | `text_delta` | `response.output_text.delta` |
/// | `content_block_stop` text | `response.output_text.done`, `response.content_part.done`, `response.output_item.done` |
/// | `content_block_start` thinking / redacted_thinking | `response.output_item.added` (reasoning, empty summary) |
/// | first non-empty `thinking_delta` | `response.reasoning_summary_part.added` (when summaries are on) |
/// | `thinking_delta` | `response.reasoning_summary_text.delta` (when summaries are on) |
/// | `signature_delta` | nothing: the signature goes into `encrypted_content` at the block's end |
/// | `content_block_stop` thinking | `response.reasoning_summary_text.done`, `response.reasoning_summary_part.done` (when a part was added), `response.output_item.done` (with `encrypted_content`) |
/// | `content_block_start` tool_use | `response.output_item.added` (`function_call` or `custom_tool_call`, `in_progress`) |
/// | `input_json_delta` | `response.function_call_arguments.delta` (function tools; custom tools wait for the end) |
/// | `content_block_stop` tool_use | `response.function_call_arguments.done` or `response.custom_tool_call_input.done`, then `response.output_item.done` |
/// | server-tool blocks, `citations_delta` | nothing |
/// | `message_delta` | nothing (stop reason and usage kept) |
/// | `message_stop` | `response.completed`, or `response.incomplete` (max tokens, refusal), with the whole Response and usage; the stream ends |
/// | `ping` | an SSE comment `: ping` (keeps idle-timing clients and proxies patient) |
/// | `error` | `response.failed` with `error {code, message}`: `rate_limit_error` → `rate_limit_exceeded`, `billing_error` → `insufficient_quota`, a too-long prompt → `context_length_exceeded`, other 4xx kinds → `invalid_prompt`, the rest → `server_error`; the stream ends |
/// | input ends without `message_stop` ([`ResponsesStream::finish`]) | `response.failed` (`server_error`) |
///
/// Codex reads `response.output_item.done` items and needs `response.completed` (anything else
/// ends its turn with an error it retries, except the error codes `context_length_exceeded`,
/// `insufficient_quota` and `usage_not_included`); the OpenAI SDK's stream helpers read the
/// deltas and the final `response`. Comments and events left unterminated at the end are
/// dropped, as SSE clients drop them; unparseable events are ignored.
#[derive(Debug)]
pub struct ResponsesStream {
    ctx: ResponseContext,
    created: u64,
    parser: SseParser,
    seq: u64,
    started: bool,
    ended: bool,
    id: String,
    stem: String,
    usage: UsageTracker,
    stop_reason: Option<String>,
    open: Vec<Open>,
    next_output: u64,
    done: Vec<(u64, Value)>,
}

impl ResponsesStream {
    /// A converter at the start of a stream for the request `ctx` describes, reporting
    /// `created_unix` as the creation time.
    pub fn new(ctx: ResponseContext, created_unix: u64) -> Self {
        ResponsesStream {
            ctx,
            created: created_unix,
            parser: SseParser::new(),
            seq: 0,
            started: false,
            ended: false,
            id: String::new(),
            stem: String::new(),
            usage: UsageTracker::new(),
            stop_reason: None,
            open: Vec::new(),
            next_output: 0,
            done: Vec::new(),
        }
    }

    /// Whether the stream ended (`message_stop`, an `error` event, or [`ResponsesStream::finish`]);
    /// later input produces nothing.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds Anthropic SSE bytes (split anywhere); returns the Responses events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        if self.ended {
            return out.freeze();
        }
        self.parser.push(chunk);
        while let Some(event) = self.parser.next_event() {
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            let kind = event
                .event
                .as_deref()
                .or_else(|| data.get("type").and_then(Value::as_str))
                .unwrap_or("")
                .to_owned();
            self.event(&mut out, &kind, &event.data, &data);
            if self.ended {
                break;
            }
        }
        out.freeze()
    }

    /// The upstream ended. If no `message_stop` or `error` ended the stream, returns a
    /// `response.failed` event (`server_error`): Codex then retries the turn.
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if !self.ended {
            self.fail(
                &mut out,
                "server_error",
                "the upstream stream ended before the response was complete",
            );
        }
        out.freeze()
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, fields: Vec<(&str, Value)>) {
        let mut data = Map::with_capacity(fields.len() + 2);
        data.insert("type".into(), json!(kind));
        data.insert("sequence_number".into(), json!(self.seq));
        for (k, v) in fields {
            data.insert(k.into(), v);
        }
        self.seq += 1;
        let bytes = serde_json::to_vec(&Value::Object(data)).unwrap_or_default();
        out.extend_from_slice(&sse::event(kind, &bytes));
    }

    fn start(&mut self, out: &mut BytesMut, message_id: &str) {
        if self.started {
            return;
        }
        self.started = true;
        let (id, stem) = ids(message_id);
        self.id = id;
        self.stem = stem;
        let response = self.snapshot("in_progress", None, Value::Null, false);
        self.emit(
            out,
            "response.created",
            vec![("response", response.clone())],
        );
        self.emit(out, "response.in_progress", vec![("response", response)]);
    }

    /// The Response object now: completed items in order, usage when `with_usage`.
    fn snapshot(
        &self,
        status: &str,
        reason: Option<&str>,
        error: Value,
        with_usage: bool,
    ) -> Value {
        let mut done: Vec<&(u64, Value)> = self.done.iter().collect();
        done.sort_by_key(|(i, _)| *i);
        let output = done.into_iter().map(|(_, v)| v.clone()).collect();
        let usage = with_usage.then(|| self.usage.usage().unwrap_or_default());
        self.ctx.response_object(
            &self.id,
            self.created,
            State {
                status,
                incomplete: reason,
                error,
            },
            output,
            usage,
        )
    }

    fn event(&mut self, out: &mut BytesMut, kind: &str, raw: &str, data: &Value) {
        match kind {
            "message_start" => {
                self.usage.observe_typed(kind, raw.as_bytes());
                let id = data
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                self.start(out, id);
            }
            "content_block_start" => {
                self.start(out, "");
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                let Some(block) = data.get("content_block") else {
                    return;
                };
                self.block_start(out, index, block);
            }
            "content_block_delta" => {
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(delta) = data.get("delta") {
                    self.block_delta(out, index, delta);
                }
            }
            "content_block_stop" => {
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(pos) = self.open.iter().position(|o| o.index == index) {
                    let open = self.open.remove(pos);
                    self.block_stop(out, open);
                }
            }
            "message_delta" => {
                self.usage.observe_typed(kind, raw.as_bytes());
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
            }
            "message_stop" => {
                self.start(out, "");
                for open in std::mem::take(&mut self.open) {
                    self.block_stop(out, open);
                }
                let (status, reason) = status_for(self.stop_reason.as_deref());
                let response = self.snapshot(status, reason, Value::Null, true);
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                self.emit(out, kind, vec![("response", response)]);
                self.ended = true;
            }
            "ping" => out.extend_from_slice(b": ping\n\n"),
            "error" => {
                let kind = data
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .and_then(ErrorKind::parse);
                let message = data
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .unwrap_or("the upstream stream failed")
                    .to_owned();
                self.fail(out, error_code(kind, &message), &message);
            }
            _ => {}
        }
    }

    fn fail(&mut self, out: &mut BytesMut, code: &str, message: &str) {
        self.start(out, "");
        let error = json!({"code": code, "message": message});
        let response = self.snapshot("failed", None, error, true);
        self.emit(out, "response.failed", vec![("response", response)]);
        self.ended = true;
    }

    fn block_start(&mut self, out: &mut BytesMut, index: u64, block: &Value) {
        let stem = self.stem.clone();
        let (kind, item_id, item) = match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let id = format!("msg_{stem}_{index}");
                let mut item = message_item(&id, "", "in_progress");
                if let Some(obj) = item.as_object_mut() {
                    obj.insert("content".into(), json!([]));
                }
                (Kind::Text(String::new()), id, item)
            }
            Some("thinking") => {
                let id = format!("rs_{stem}_{index}");
                let item = json!({"id": id, "type": "reasoning", "summary": []});
                let kind = Kind::Thinking {
                    thinking: String::new(),
                    signature: String::new(),
                    part_open: false,
                };
                (kind, id, item)
            }
            Some("redacted_thinking") => {
                let id = format!("rs_{stem}_{index}");
                let item = json!({"id": id, "type": "reasoning", "summary": []});
                (Kind::Redacted(block.clone()), id, item)
            }
            Some("tool_use") => {
                let call_id = block.get("id").and_then(Value::as_str).unwrap_or("");
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                let item = call_item(&self.ctx, &stem, index, call_id, name, "", "in_progress");
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let kind = Kind::Tool {
                    call_id: call_id.to_owned(),
                    name: name.to_owned(),
                    arguments: String::new(),
                };
                (kind, id, item)
            }
            _ => return,
        };
        let output_index = self.next_output;
        self.next_output += 1;
        self.emit(
            out,
            "response.output_item.added",
            vec![("output_index", json!(output_index)), ("item", item)],
        );
        if matches!(kind, Kind::Text(_)) {
            self.emit(
                out,
                "response.content_part.added",
                vec![
                    ("item_id", json!(item_id)),
                    ("output_index", json!(output_index)),
                    ("content_index", json!(0)),
                    (
                        "part",
                        json!({"type": "output_text", "text": "", "annotations": []}),
                    ),
                ],
            );
        }
        self.open.push(Open {
            index,
            output_index,
            item_id,
            kind,
        });
    }

    fn block_delta(&mut self, out: &mut BytesMut, index: u64, delta: &Value) {
        let summaries = self.ctx.summaries;
        let Some(pos) = self.open.iter().position(|o| o.index == index) else {
            return;
        };
        let text = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or("");
        let (item_id, output_index) = (self.open[pos].item_id.clone(), self.open[pos].output_index);
        let mut events: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        match (
            &mut self.open[pos].kind,
            delta.get("type").and_then(Value::as_str),
        ) {
            (Kind::Text(acc), Some("text_delta")) => {
                let d = text("text");
                if d.is_empty() {
                    return;
                }
                acc.push_str(d);
                events.push((
                    "response.output_text.delta",
                    vec![
                        ("item_id", json!(item_id)),
                        ("output_index", json!(output_index)),
                        ("content_index", json!(0)),
                        ("delta", json!(d)),
                        ("logprobs", json!([])),
                    ],
                ));
            }
            (
                Kind::Thinking {
                    thinking,
                    part_open,
                    ..
                },
                Some("thinking_delta"),
            ) => {
                let d = text("thinking");
                if d.is_empty() {
                    return;
                }
                thinking.push_str(d);
                if !summaries {
                    return;
                }
                if !*part_open {
                    *part_open = true;
                    events.push((
                        "response.reasoning_summary_part.added",
                        vec![
                            ("item_id", json!(item_id)),
                            ("output_index", json!(output_index)),
                            ("summary_index", json!(0)),
                            ("part", json!({"type": "summary_text", "text": ""})),
                        ],
                    ));
                }
                events.push((
                    "response.reasoning_summary_text.delta",
                    vec![
                        ("item_id", json!(item_id)),
                        ("output_index", json!(output_index)),
                        ("summary_index", json!(0)),
                        ("delta", json!(d)),
                    ],
                ));
            }
            (Kind::Thinking { signature, .. }, Some("signature_delta")) => {
                signature.push_str(text("signature"));
            }
            (
                Kind::Tool {
                    arguments, name, ..
                },
                Some("input_json_delta"),
            ) => {
                let d = text("partial_json");
                if d.is_empty() {
                    return;
                }
                arguments.push_str(d);
                let custom = self.ctx.tool(name).2;
                if !custom {
                    events.push((
                        "response.function_call_arguments.delta",
                        vec![
                            ("item_id", json!(item_id)),
                            ("output_index", json!(output_index)),
                            ("delta", json!(d)),
                        ],
                    ));
                }
            }
            _ => {}
        }
        for (kind, fields) in events {
            self.emit(out, kind, fields);
        }
    }

    fn block_stop(&mut self, out: &mut BytesMut, open: Open) {
        let Open {
            index,
            output_index,
            item_id,
            kind,
        } = open;
        let id = json!(item_id);
        let oi = json!(output_index);
        let item = match kind {
            Kind::Text(text) => {
                self.emit(
                    out,
                    "response.output_text.done",
                    vec![
                        ("item_id", id.clone()),
                        ("output_index", oi.clone()),
                        ("content_index", json!(0)),
                        ("text", json!(text)),
                        ("logprobs", json!([])),
                    ],
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    vec![
                        ("item_id", id),
                        ("output_index", oi.clone()),
                        ("content_index", json!(0)),
                        (
                            "part",
                            json!({"type": "output_text", "text": text, "annotations": []}),
                        ),
                    ],
                );
                message_item(&item_id, &text, "completed")
            }
            Kind::Thinking {
                thinking,
                signature,
                part_open,
            } => {
                if part_open {
                    self.emit(
                        out,
                        "response.reasoning_summary_text.done",
                        vec![
                            ("item_id", id.clone()),
                            ("output_index", oi.clone()),
                            ("summary_index", json!(0)),
                            ("text", json!(thinking)),
                        ],
                    );
                    self.emit(
                        out,
                        "response.reasoning_summary_part.done",
                        vec![
                            ("item_id", id),
                            ("output_index", oi.clone()),
                            ("summary_index", json!(0)),
                            ("part", json!({"type": "summary_text", "text": thinking})),
                        ],
                    );
                }
                let block =
                    json!({"type": "thinking", "thinking": thinking, "signature": signature});
                reasoning_item(&item_id, &block, self.ctx.summaries)
            }
            Kind::Redacted(block) => reasoning_item(&item_id, &block, self.ctx.summaries),
            Kind::Tool {
                call_id,
                name,
                arguments,
            } => {
                let arguments = if arguments.is_empty() {
                    "{}".to_owned()
                } else {
                    arguments
                };
                let item = call_item(
                    &self.ctx,
                    &self.stem,
                    index,
                    &call_id,
                    &name,
                    &arguments,
                    "completed",
                );
                if item.get("type").and_then(Value::as_str) == Some("custom_tool_call") {
                    let input = item.get("input").cloned().unwrap_or(json!(""));
                    self.emit(
                        out,
                        "response.custom_tool_call_input.done",
                        vec![
                            ("item_id", id),
                            ("output_index", oi.clone()),
                            ("input", input),
                        ],
                    );
                } else {
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        vec![
                            ("item_id", id),
                            ("output_index", oi.clone()),
                            ("name", json!(self.ctx.tool(&name).1)),
                            ("arguments", json!(arguments)),
                        ],
                    );
                }
                item
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            vec![("output_index", oi), ("item", item.clone())],
        );
        self.done.push((output_index, item));
    }
}

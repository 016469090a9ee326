//! # tollgate-protocol
//!
//! The translation core of Tollgate's data plane: every wire format the gateway speaks or
//! rewrites, and nothing else.
//!
//! | module | what it covers |
//! |---|---|
//! | [`eventstream`] | AWS `application/vnd.amazon.eventstream` binary framing (incremental decoder, encoder) |
//! | [`sse`] | Anthropic-style server-sent events (writer helpers, WHATWG-conformant incremental parser) |
//! | [`anthropic`] | Anthropic error envelopes, error kinds and token usage extraction |
//! | [`bedrock`] | Anthropic Messages <-> Bedrock `InvokeModel` / `CountTokens` translation, stream and error mapping |
//! | [`openai`] | OpenAI Chat Completions and Responses <-> Anthropic Messages, both directions |
//! | [`vertex`] | Anthropic Messages <-> Google Vertex AI (`rawPredict`, `streamRawPredict`): paths, body, Google errors |
//! | [`response_model`] | The requested model name put back into answers (`message.model`, streaming or not) |
//!
//! ## Invariants
//!
//! * **Pure.** No I/O, no async runtime, no clock, no randomness, no global state. Every function
//!   is a deterministic transformation of its inputs, so the whole crate is golden-tested against
//!   recorded vectors (`testdata/`). Transport, timing (e.g. synthesizing `ping` events during
//!   gaps), retries and logging belong to the caller.
//! * **Never panics on input.** Library code has no `unwrap`/`expect`/`panic!`; malformed input
//!   becomes a typed error (`thiserror`).
//! * **Byte-preserving.** Request bodies are parsed only at the top level; nested JSON (thinking
//!   signatures, tool inputs, `cache_control`, the order of `system` blocks, unknown fields) is
//!   forwarded byte-identical, except that toward Bedrock the fields of a beta that is not
//!   forwarded are removed (only the objects holding them are rewritten, [`bedrock`]). Stream
//!   events decoded from Bedrock are forwarded verbatim except for the Bedrock-only
//!   `amazon-bedrock-invocationMetrics` key and, when asked, the model name of `message_start`
//!   ([`response_model`], which splices the value in place). The one exception on the way in:
//!   after a platform refused thinking blocks it cannot verify, the assistant turns that hold
//!   them are rewritten without them ([`thinking`]).
//! * **Incremental parsers are linear.** The event-stream decoder and the SSE parser buffer only
//!   incomplete input and never rescan bytes they already examined.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

pub mod anthropic;
pub mod bedrock;
pub mod eventstream;
mod json;
pub mod openai;
pub mod response_model;
pub mod sse;
pub mod thinking;
pub mod vertex;

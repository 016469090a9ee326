//! Test doubles and the end-to-end harness for Tollgate.
//!
//! Cloud APIs cannot be reached from CI, so Tollgate's tests talk to loopback doubles that are
//! as strict as the real services:
//!
//! * [`sigv4`] — an independent SigV4 verifier (hmac + sha2, no `aws-sigv4`) and a test signer.
//! * [`eventstream`] — an AWS event-stream frame encoder.
//! * [`bedrock_double`] — a bedrock-runtime double (InvokeModel, InvokeModelWithResponseStream,
//!   CountTokens, Converse, ConverseStream; Claude and a set of Llama, Mistral, Nova and DeepSeek
//!   models) that checks signatures and bodies, streams real event-stream frames and is
//!   scripted by `[double:…]` triggers in the prompt.
//! * [`thinking`] — thinking-block signatures per platform, made and checked by both doubles.
//! * [`vertex_double`] — Vertex AI (rawPredict, streamRawPredict) and Google's token endpoint: JWT
//!   assertions verified with the service account's public key, bearer tokens checked on every call.
//! * [`openai_double`] — an OpenAI-compatible Chat Completions API (`/v1/chat/completions`,
//!   `/v1/models`): bearer keys, bodies validated as OpenAI validates them (tool messages must
//!   answer the preceding `tool_calls`), `chat.completion` JSON or chunked SSE with `[DONE]` and
//!   the usage chunk, scripted by `[double:…]` triggers (tool calls, 429, 5xx, mid-stream error).
//! * [`otlp_receiver`] — an OTLP trace receiver (gRPC or HTTP/protobuf) on loopback that keeps
//!   the spans it is sent.
//! * [`harness`] — runs the real `tollgate` binary for end-to-end tests.
//!
//! The standalone double (`src/bin/bedrock-double.rs`) serves the same double on a fixed
//! address for benchmarks and manual runs.

pub mod anthropic_double;
pub mod bedrock_double;
mod double_http;
pub mod eventstream;
pub mod harness;
pub mod openai_double;
pub mod otlp_receiver;
pub mod postgres;
mod serve;
pub mod sigv4;
pub mod sts_double;
pub mod thinking;
pub mod vertex_double;

pub use bedrock_double::{BedrockDouble, BedrockDoubleConfig, RecordedRequest, Verdict};
pub use harness::{TollgateOptions, TollgateProcess};
pub use sigv4::Credentials;

/// The documentation example access key id (also in `testdata/sigv4-bedrock`).
pub const EXAMPLE_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
/// The documentation example secret (also in `testdata/sigv4-bedrock`).
pub const EXAMPLE_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

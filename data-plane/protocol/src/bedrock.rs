//! Anthropic Messages <-> Bedrock Runtime `InvokeModel` translation.
//!
//! * [`model_path_segment`]: the model id / inference profile / ARN as one URL path segment.
//! * [`RequestBody`]: an Anthropic request body's top level, parsed once; [`invoke_body_for`]
//!   and [`count_tokens_body_for`] translate it for a model id ([`invoke_body_parsed`] and
//!   [`count_tokens_body_parsed`] for an unknown one). [`request_model`], [`invoke_body`] and
//!   [`count_tokens_body`] are the same from raw bytes.
//! * [`bedrock_family`], [`BEDROCK_FAMILIES`], [`BETA_FIELDS`]: which betas Bedrock accepts per
//!   model family, and the body fields removed with a beta that is not forwarded.
//! * [`count_tokens_model_id`], [`count_tokens_response`]: the rest of `CountTokens`.
//! * [`StreamTranslator`]: `InvokeModelWithResponseStream` event-stream messages -> Anthropic SSE.
//! * [`map_error`]: non-2xx Bedrock replies -> Anthropic errors.
//! * [`converse`]: Anthropic Messages <-> `Converse`/`ConverseStream`, for models that are not
//!   Anthropic's (Llama, Mistral, Nova, …).
//! * [`ingress`]: the other direction, for clients that speak Bedrock's format to the gateway
//!   (Claude Code in Bedrock mode): their requests -> Anthropic, Anthropic answers -> Bedrock's.

mod betas;
mod body;
pub mod converse;
mod error;
pub mod ingress;
mod stream;

pub use betas::{
    BEDROCK_BETAS, BEDROCK_FAMILIES, BETA_ALIASES, BETA_FIELDS, BedrockFamily, BetaField,
    UNKNOWN_FAMILY, bedrock_family, family_name,
};
pub use body::{
    ANTHROPIC_VERSION, BodyError, CROSS_REGION_PREFIXES, InvokeBody, RequestBody,
    count_tokens_body, count_tokens_body_for, count_tokens_body_parsed, count_tokens_model_id,
    count_tokens_response, invoke_body, invoke_body_for, invoke_body_parsed, model_path_segment,
    request_model,
};
pub use error::{exception_kind, map_error, sanitize_error_type};
pub use stream::{StreamError, StreamTranslator};

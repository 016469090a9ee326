//! Anthropic Messages <-> Bedrock Runtime `InvokeModel` translation.
//!
//! * [`model_path_segment`]: the model id / inference profile / ARN as one URL path segment.
//! * [`RequestBody`]: an Anthropic request body's top level, parsed once; [`invoke_body_parsed`]
//!   and [`count_tokens_body_parsed`] translate it. [`request_model`], [`invoke_body`] and
//!   [`count_tokens_body`] are the same from raw bytes.
//! * [`count_tokens_model_id`], [`count_tokens_response`]: the rest of `CountTokens`.
//! * [`StreamTranslator`]: `InvokeModelWithResponseStream` event-stream messages -> Anthropic SSE.
//! * [`map_error`]: non-2xx Bedrock replies -> Anthropic errors.

mod body;
mod error;
mod stream;

pub use body::{
    ANTHROPIC_VERSION, BEDROCK_BETAS, BETA_ALIASES, BodyError, CROSS_REGION_PREFIXES, InvokeBody,
    RequestBody, count_tokens_body, count_tokens_body_parsed, count_tokens_model_id,
    count_tokens_response, invoke_body, invoke_body_parsed, model_path_segment, request_model,
};
pub use error::{exception_kind, map_error, sanitize_error_type};
pub use stream::{StreamError, StreamTranslator};

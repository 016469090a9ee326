//! What the spans say, as pure functions: the attribute names (OpenTelemetry's GenAI semantic
//! conventions, `gen_ai.*`, and Tollgate's own, `tollgate.*`), the well-known
//! `gen_ai.provider.name` of each provider kind, the operation names, the token counts as the
//! conventions count them, and `server.address` of an upstream. No I/O.

use crate::providers::Operation;
use crate::runtime::ProviderKind;

pub const OPERATION_NAME: &str = "gen_ai.operation.name";
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const REQUEST_TOP_P: &str = "gen_ai.request.top_p";
pub const REQUEST_STREAM: &str = "gen_ai.request.stream";
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
pub const ERROR_TYPE: &str = "error.type";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";

pub const TOLLGATE_REQUEST_ID: &str = "tollgate.request_id";
pub const TOLLGATE_VIRTUAL_KEY_ID: &str = "tollgate.virtual_key.id";
pub const TOLLGATE_PROVIDER: &str = "tollgate.provider";
pub const TOLLGATE_PROVIDER_KEY_ID: &str = "tollgate.provider_key.id";
pub const TOLLGATE_FALLBACK_INDEX: &str = "tollgate.fallback_index";
pub const TOLLGATE_ATTEMPT: &str = "tollgate.attempt";
pub const TOLLGATE_ATTEMPTS: &str = "tollgate.attempts";

/// `gen_ai.operation.name`: `chat` for Messages (the conventions' value for chat completions);
/// `count_tokens` (a custom value: the conventions name none for it) for token counting.
pub fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Messages => "chat",
        Operation::CountTokens => "count_tokens",
    }
}

/// `gen_ai.provider.name`: the conventions' well-known value for each provider kind.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Vertex => "gcp.vertex_ai",
        ProviderKind::OpenAi => "openai",
    }
}

/// The span name: `{gen_ai.operation.name} {gen_ai.request.model}`, or the operation alone
/// while the model is not known.
pub fn span_name(op: Operation, model: Option<&str>) -> String {
    match model {
        Some(model) => format!("{} {model}", operation_name(op)),
        None => operation_name(op).to_owned(),
    }
}

/// Token counts as the conventions count them: `gen_ai.usage.input_tokens` includes the cached
/// tokens (read and written), which Anthropic's `input_tokens` leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenAttributes {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

impl TokenAttributes {
    /// From Anthropic's split: `input_tokens` (not cached), cache reads, cache writes, output.
    pub fn from_anthropic(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Self {
        TokenAttributes {
            input: input.saturating_add(cache_read).saturating_add(cache_write),
            output,
            cache_read,
            cache_creation: cache_write,
        }
    }
}

/// `error.type` of an outcome: the gateway's low-cardinality class (`rate_limited`,
/// `upstream_error`, `client_closed`, ...) when it has one, else the HTTP status for an error
/// status, else none (a success).
pub fn error_type(status: u16, class: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !class.is_empty() {
        Some(class.into())
    } else if status >= 400 || status == 0 {
        Some(status.to_string().into())
    } else {
        None
    }
}

/// `server.address` and `server.port` of an upstream base URL (`https://host[:port]/...`); the
/// port only when the URL names one.
pub fn server_of(url: &str) -> Option<(&str, Option<u16>)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() {
        return None;
    }
    // An IPv6 literal keeps its brackets off the address.
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok())),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_kinds_use_the_well_known_names() {
        assert_eq!(provider_name(ProviderKind::Bedrock), "aws.bedrock");
        assert_eq!(provider_name(ProviderKind::Anthropic), "anthropic");
        assert_eq!(provider_name(ProviderKind::Vertex), "gcp.vertex_ai");
        assert_eq!(provider_name(ProviderKind::OpenAi), "openai");
    }

    #[test]
    fn span_names_follow_operation_and_model() {
        assert_eq!(
            span_name(Operation::Messages, Some("claude-sonnet-4-6")),
            "chat claude-sonnet-4-6"
        );
        assert_eq!(span_name(Operation::CountTokens, None), "count_tokens");
    }

    #[test]
    fn input_tokens_include_cached_ones() {
        let t = TokenAttributes::from_anthropic(10, 200, 30, 7);
        assert_eq!(
            t,
            TokenAttributes {
                input: 240,
                output: 7,
                cache_read: 200,
                cache_creation: 30
            }
        );
        assert_eq!(
            TokenAttributes::from_anthropic(u64::MAX, 1, 1, 0).input,
            u64::MAX
        );
    }

    #[test]
    fn error_types_are_classes_or_statuses() {
        assert_eq!(error_type(200, ""), None);
        assert_eq!(
            error_type(429, "rate_limited").as_deref(),
            Some("rate_limited")
        );
        assert_eq!(error_type(503, "").as_deref(), Some("503"));
        assert_eq!(error_type(0, "").as_deref(), Some("0"));
    }

    #[test]
    fn server_address_and_port_come_from_the_url() {
        assert_eq!(
            server_of("https://bedrock-runtime.us-east-1.amazonaws.com/model/x/invoke"),
            Some(("bedrock-runtime.us-east-1.amazonaws.com", None))
        );
        assert_eq!(
            server_of("http://127.0.0.1:8000/v1"),
            Some(("127.0.0.1", Some(8000)))
        );
        assert_eq!(server_of("http://[::1]:9/"), Some(("::1", Some(9))));
        assert_eq!(
            server_of("https://user:pw@api.example.com"),
            Some(("api.example.com", None))
        );
        assert_eq!(server_of("ftp://x"), None);
        assert_eq!(server_of("https:///path"), None);
    }
}

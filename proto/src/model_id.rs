//! The shape a requested `model` must have before it is routed, logged or put in a URL.
//!
//! | rule | why |
//! |---|---|
//! | 1 to [`MAX_MODEL_ID_BYTES`] bytes | Bedrock model ids, inference profile ids and ARNs are well under it; a 10 KB "model" is not a model |
//! | ASCII letters, digits and `. _ - : / @` only | Bedrock ids and ARNs use `[A-Za-z0-9._:/-]`, Anthropic ids the same, Vertex ids add `@`, provider names add `_` |
//!
//! Anything else (spaces, control characters, non-ASCII, quotes, `?`, `#`, `%`) cannot name a
//! model on any provider Tollgate speaks to, so the request is refused with a 400 that names the
//! problem instead of reaching routing, the logs or an upstream URL; and the admin API refuses
//! alias names and targets outside it (an alias that breaks it could never be requested). Pure:
//! no I/O.

/// Longest accepted model id, in bytes (`provider/` prefix included).
pub const MAX_MODEL_ID_BYTES: usize = 256;

/// Most entries of a fallback list, a request's own (`fallbacks`) or a virtual key's: the data
/// plane refuses longer request lists, the admin API longer key lists.
pub const MAX_FALLBACKS: usize = 8;

/// Why a requested model id is refused. Messages are safe to show the client: they never echo
/// the id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelIdError {
    #[error("model: must not be empty")]
    Empty,
    #[error(
        "model: {0} bytes is too long for a model id (at most {MAX_MODEL_ID_BYTES}); use provider/model or an alias"
    )]
    TooLong(usize),
    #[error(
        "model: character {ch:?} at byte {at} is not allowed in a model id (use ASCII letters, digits and . _ - : / @)"
    )]
    InvalidChar { ch: char, at: usize },
}

/// Checks `model` against the rule in the module docs.
pub fn check(model: &str) -> Result<(), ModelIdError> {
    if model.is_empty() {
        return Err(ModelIdError::Empty);
    }
    if model.len() > MAX_MODEL_ID_BYTES {
        return Err(ModelIdError::TooLong(model.len()));
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@');
    match model.bytes().position(|b| !allowed(b)) {
        None => Ok(()),
        Some(at) => Err(ModelIdError::InvalidChar {
            ch: model[at..].chars().next().unwrap_or('\u{fffd}'),
            at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_model_ids_pass() {
        for id in [
            "claude-sonnet-4-6",
            "claude-haiku-4-5-20251001",
            "bedrock/global.anthropic.claude-sonnet-4-6",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "my_provider/claude-opus-4-1@20250805",
        ] {
            assert_eq!(check(id), Ok(()), "{id}");
        }
        assert_eq!(check(&"a".repeat(MAX_MODEL_ID_BYTES)), Ok(()));
    }

    #[test]
    fn malformed_ids_are_named_without_being_echoed() {
        assert_eq!(check(""), Err(ModelIdError::Empty));
        assert_eq!(
            check(&"a".repeat(10_240)),
            Err(ModelIdError::TooLong(10_240))
        );
        assert_eq!(
            check("claude\nINFO forged"),
            Err(ModelIdError::InvalidChar { ch: '\n', at: 6 })
        );
        assert_eq!(
            check("claude sonnet"),
            Err(ModelIdError::InvalidChar { ch: ' ', at: 6 })
        );
        assert_eq!(
            check("claudé"),
            Err(ModelIdError::InvalidChar { ch: 'é', at: 5 })
        );
        for bad in ["a?b", "a#b", "a%2Fb", "a\"b", "a\\b", "a\u{1b}[31m"] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        let message = check("claude\nINFO forged").unwrap_err().to_string();
        assert_eq!(
            message,
            "model: character '\\n' at byte 6 is not allowed in a model id (use ASCII letters, digits and . _ - : / @)"
        );
        assert!(!message.contains("forged"));
    }
}

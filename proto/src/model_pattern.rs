//! Model patterns of a virtual key's provider configs (`allowed_models`): which model names a key
//! may call through one provider. Both planes read them alike: the admin API refuses patterns
//! that do not compile, the data plane matches requests against them.
//!
//! A pattern is one of:
//! * `*`: every model;
//! * `regex:EXPR`: a regular expression (the `regex` crate's syntax, close to RE2) that must match
//!   the whole model name, case-insensitively;
//! * anything else: the name itself, where `*` matches any run of characters (`claude-sonnet-*`),
//!   compared case-insensitively.
//!
//! Model names are matched as the client sent them and as routing resolved them (an alias's
//! target), like provider keys' `models`.

use regex::{Regex, RegexBuilder};

/// The prefix of a regular-expression pattern.
pub const REGEX_PREFIX: &str = "regex:";

/// Largest compiled program a `regex:` pattern may produce (bytes): enough for any sensible
/// allow-list, small enough that a hostile pattern cannot make every snapshot compile slowly.
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;

/// A compiled model pattern.
#[derive(Debug, Clone)]
pub enum ModelPattern {
    Any,
    /// Lower-cased; `*` is a wildcard.
    Glob(String),
    Regex(Regex),
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a model pattern must not be empty")]
    Empty,
    #[error("a model pattern must be at most {MAX_PATTERN_LEN} bytes")]
    TooLong,
    #[error("the regular expression does not compile: {0}")]
    Regex(String),
}

impl ModelPattern {
    /// Compiles one pattern.
    pub fn parse(pattern: &str) -> Result<ModelPattern, PatternError> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        if let Some(expr) = pattern.strip_prefix(REGEX_PREFIX) {
            if expr.is_empty() {
                return Err(PatternError::Empty);
            }
            let regex = RegexBuilder::new(&format!("^(?:{expr})$"))
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| PatternError::Regex(first_line(&e.to_string())))?;
            return Ok(ModelPattern::Regex(regex));
        }
        match pattern {
            "" => Err(PatternError::Empty),
            "*" => Ok(ModelPattern::Any),
            glob => Ok(ModelPattern::Glob(glob.to_ascii_lowercase())),
        }
    }

    /// Whether `model` matches.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Any => true,
            ModelPattern::Glob(glob) => glob_match_ignore_case(glob, model),
            ModelPattern::Regex(regex) => regex.is_match(model),
        }
    }
}

/// The pattern as written (globs lower-cased): `*`, `regex:EXPR` or the glob.
impl std::fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelPattern::Any => f.write_str("*"),
            ModelPattern::Glob(glob) => f.write_str(glob),
            ModelPattern::Regex(regex) => {
                let compiled = regex.as_str();
                let expr = compiled
                    .strip_prefix("^(?:")
                    .and_then(|e| e.strip_suffix(")$"))
                    .unwrap_or(compiled);
                write!(f, "{REGEX_PREFIX}{expr}")
            }
        }
    }
}

/// The regex crate's errors span several lines (the pattern, a caret, the reason); the last
/// line says what is wrong.
fn first_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_owned()
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), |c| c)
}

/// [`glob_match`] with `text` compared ASCII-case-insensitively to a lower-case `pattern`.
fn glob_match_ignore_case(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), |c| {
        c.to_ascii_lowercase()
    })
}

/// Wildcard matching with backtracking to the last `*`; `fold` maps each text byte before it
/// is compared.
fn glob(p: &[u8], t: &[u8], fold: impl Fn(u8) -> u8) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == fold(t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_display_as_written() {
        for (written, shown) in [
            ("*", "*"),
            ("Claude-Sonnet-*", "claude-sonnet-*"),
            (
                "regex:claude-(opus|sonnet)-4.*",
                "regex:claude-(opus|sonnet)-4.*",
            ),
        ] {
            assert_eq!(ModelPattern::parse(written).unwrap().to_string(), shown);
        }
    }

    fn m(pattern: &str, model: &str) -> bool {
        ModelPattern::parse(pattern)
            .expect("compiles")
            .matches(model)
    }

    #[test]
    fn any_glob_and_exact() {
        assert!(m("*", "anything"));
        assert!(m("claude-sonnet-4-6", "claude-sonnet-4-6"));
        assert!(
            m("claude-sonnet-4-6", "Claude-Sonnet-4-6"),
            "case-insensitive"
        );
        assert!(!m("claude-sonnet-4-6", "claude-sonnet-4-6-20260101"));
        assert!(m("claude-sonnet-*", "claude-sonnet-4-6"));
        assert!(m("*.anthropic.claude-*", "us.anthropic.claude-haiku-4-5"));
        assert!(!m("claude-sonnet-*", "claude-opus-4-6"));
    }

    #[test]
    fn regexes_match_the_whole_name_case_insensitively() {
        assert!(m(r"regex:^gpt-4\..*", "gpt-4.1"));
        assert!(m(r"regex:claude-(sonnet|haiku)-4-\d", "CLAUDE-HAIKU-4-5"));
        assert!(!m("regex:sonnet", "claude-sonnet-4-6"), "a full match");
        assert!(m("regex:.*sonnet.*", "claude-sonnet-4-6"));
        assert!(!m(r"regex:.*-preview$", "model-preview-2"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        assert_eq!(ModelPattern::parse("").unwrap_err(), PatternError::Empty);
        assert_eq!(
            ModelPattern::parse("regex:").unwrap_err(),
            PatternError::Empty
        );
        let PatternError::Regex(why) = ModelPattern::parse("regex:claude-(").unwrap_err() else {
            panic!("a regex error");
        };
        assert!(why.contains("unclosed group"), "{why}");
        assert_eq!(
            ModelPattern::parse(&"a".repeat(MAX_PATTERN_LEN + 1)).unwrap_err(),
            PatternError::TooLong
        );
        // A pattern whose compiled program is too large.
        assert!(matches!(
            ModelPattern::parse(r"regex:(\w{100}){100}").unwrap_err(),
            PatternError::Regex(_)
        ));
    }
}

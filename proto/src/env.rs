//! Which environment variables an `env.NAME` reference (`ValueRef.env`) may name.
//!
//! A reference is resolved in the environment of the process that uses it, and the value is
//! sent upstream (as a credential or a header) to a URL the configuration names. Without a
//! rule, anyone who may change the configuration could read any variable of the gateway,
//! `TOLLGATE_SECRET_KEY` included, by pointing a provider at their own listener. Both planes
//! apply the same [`EnvAllowlist`]: the control plane refuses a disallowed reference in admin
//! input, and the data plane refuses it again when it compiles a snapshot (defence in depth: in
//! the split deployment the data plane's environment is where the credentials live).
//!
//! | pattern | matches |
//! |---|---|
//! | `NAME` | exactly the variable `NAME` (case-sensitive) |
//! | `PREFIX*` | every variable whose name starts with `PREFIX` |
//!
//! The default patterns are [`DEFAULT_ENV_ALLOW`]; operators add more with `--env-allow` /
//! `TOLLGATE_ENV_ALLOW` (comma-separated). Names starting with [`RESERVED_ENV_PREFIX`]
//! (`TOLLGATE_`, any case) never resolve, and a pattern that could match one is refused when the
//! process starts. A bare `*` is refused too: it would allow `DATABASE_URL`, `HOME` and
//! everything else.

use std::fmt;

/// Patterns every allowlist contains: the variables cloud SDKs read their credentials from.
pub const DEFAULT_ENV_ALLOW: [&str; 5] =
    ["AWS_*", "ANTHROPIC_*", "OPENAI_*", "GOOGLE_*", "AZURE_*"];

/// Variables with this prefix (compared case-insensitively) hold the gateway's own secrets and
/// never resolve.
pub const RESERVED_ENV_PREFIX: &str = "TOLLGATE_";

/// How an operator extends the allowlist, for error messages.
pub const ENV_ALLOW_SETTING: &str = "--env-allow / TOLLGATE_ENV_ALLOW";

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(n) => n == name,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(n) => f.write_str(n),
            Pattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// The environment variables `env.NAME` references may name. [`Default`] is
/// [`DEFAULT_ENV_ALLOW`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAllowlist {
    patterns: Vec<Pattern>,
}

impl Default for EnvAllowlist {
    fn default() -> Self {
        EnvAllowlist {
            patterns: DEFAULT_ENV_ALLOW
                .iter()
                .map(|p| parse(p).expect("default patterns are valid"))
                .collect(),
        }
    }
}

/// A pattern given by the operator that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for EnvPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid env allowlist pattern {:?} ({ENV_ALLOW_SETTING}): {}",
            self.pattern, self.reason
        )
    }
}

impl std::error::Error for EnvPatternError {}

/// Why a name does not resolve. Its text names the variable and the rule, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRefused {
    pub name: String,
    /// The patterns in force, as `AWS_*, ANTHROPIC_*, ...`.
    pub allowed: String,
}

impl EnvRefused {
    /// Whether the name is one of the gateway's own (`TOLLGATE_*`).
    pub fn reserved(&self) -> bool {
        is_reserved(&self.name)
    }
}

impl fmt::Display for EnvRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reserved() {
            write!(
                f,
                "env.{} is not allowed: {RESERVED_ENV_PREFIX}* variables hold the gateway's own \
                 secrets and never resolve",
                self.name
            )
        } else {
            write!(
                f,
                "env.{} is not allowed: env.NAME may only name variables matching {} (add names \
                 or PREFIX* patterns with {ENV_ALLOW_SETTING})",
                self.name, self.allowed
            )
        }
    }
}

impl std::error::Error for EnvRefused {}

fn is_reserved(name: &str) -> bool {
    name.len() >= RESERVED_ENV_PREFIX.len()
        && name.as_bytes()[..RESERVED_ENV_PREFIX.len()]
            .eq_ignore_ascii_case(RESERVED_ENV_PREFIX.as_bytes())
}

fn parse(raw: &str) -> Result<Pattern, EnvPatternError> {
    let err = |reason| EnvPatternError {
        pattern: raw.to_owned(),
        reason,
    };
    let (body, prefix) = match raw.strip_suffix('*') {
        Some(body) => (body, true),
        None => (raw, false),
    };
    if body.is_empty() {
        return Err(err(
            "a bare * would allow every variable (DATABASE_URL, HOME, ...); list names or PREFIX* patterns",
        ));
    }
    let mut bytes = body.bytes();
    let valid = matches!(bytes.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !valid {
        return Err(err(
            "use a variable name ([A-Za-z_][A-Za-z0-9_]*), optionally followed by * for a prefix",
        ));
    }
    let upper = body.to_ascii_uppercase();
    let reaches_reserved = if prefix {
        upper.starts_with(RESERVED_ENV_PREFIX) || RESERVED_ENV_PREFIX.starts_with(upper.as_str())
    } else {
        upper.starts_with(RESERVED_ENV_PREFIX)
    };
    if reaches_reserved {
        return Err(err(
            "TOLLGATE_* variables hold the gateway's own secrets and never resolve; name a pattern that cannot match them",
        ));
    }
    Ok(if prefix {
        Pattern::Prefix(body.to_owned())
    } else {
        Pattern::Exact(body.to_owned())
    })
}

impl EnvAllowlist {
    /// The default patterns plus `extra` (names or `PREFIX*` patterns; surrounding whitespace and
    /// empty entries are ignored, so `"A, B,"` is fine).
    pub fn with_extra<I, S>(extra: I) -> Result<Self, EnvPatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = EnvAllowlist::default();
        for raw in extra {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let pattern = parse(raw)?;
            if !list.patterns.contains(&pattern) {
                list.patterns.push(pattern);
            }
        }
        Ok(list)
    }

    /// Whether `env.name` may resolve.
    pub fn allows(&self, name: &str) -> bool {
        !is_reserved(name) && self.patterns.iter().any(|p| p.matches(name))
    }

    /// `Ok` when `env.name` may resolve; otherwise the refusal, naming the rule.
    pub fn check(&self, name: &str) -> Result<(), EnvRefused> {
        if self.allows(name) {
            Ok(())
        } else {
            Err(EnvRefused {
                name: name.to_owned(),
                allowed: self.describe(),
            })
        }
    }

    /// The patterns in force, comma-separated (`AWS_*, ANTHROPIC_*, ...`).
    pub fn describe(&self) -> String {
        self.patterns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_cloud_credentials_only() {
        let list = EnvAllowlist::default();
        for ok in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AZURE_OPENAI_KEY",
        ] {
            assert!(list.allows(ok), "{ok}");
        }
        for refused in [
            "TOLLGATE_SECRET_KEY",
            "TOLLGATE_ADMIN_TOKEN",
            "tollgate_secret_key",
            "HOME",
            "DATABASE_URL",
            "aws_secret_access_key",
            "AWS",
            "XAWS_KEY",
        ] {
            assert!(!list.allows(refused), "{refused}");
        }
        assert_eq!(
            list.describe(),
            "AWS_*, ANTHROPIC_*, OPENAI_*, GOOGLE_*, AZURE_*"
        );
    }

    #[test]
    fn operators_add_exact_names_and_prefixes() {
        let list = EnvAllowlist::with_extra([" PROXY_TOKEN", "TEAM_*", "", "AWS_*"]).unwrap();
        assert!(list.allows("PROXY_TOKEN"));
        assert!(!list.allows("PROXY_TOKEN_2"), "exact names are exact");
        assert!(list.allows("TEAM_A_KEY"));
        assert!(list.allows("AWS_REGION"));
        assert_eq!(
            list.describe(),
            "AWS_*, ANTHROPIC_*, OPENAI_*, GOOGLE_*, AZURE_*, PROXY_TOKEN, TEAM_*",
            "duplicates are listed once"
        );
    }

    #[test]
    fn patterns_that_reach_tollgate_variables_are_refused() {
        for bad in [
            "TOLLGATE_SECRET_KEY",
            "TOLLGATE_*",
            "tollgate_*",
            "TOLLGATE*",
            "TOLL*",
            "T*",
            "TOLLGATE_X*",
        ] {
            let err = EnvAllowlist::with_extra([bad]).unwrap_err();
            assert_eq!(err.pattern, bad);
            assert!(err.to_string().contains("TOLLGATE_*"), "{err}");
        }
        for bad in ["*", "A B", "1ABC", "A*B", "A-B*", "**"] {
            assert!(EnvAllowlist::with_extra([bad]).is_err(), "{bad}");
        }
        // Near misses that cannot match a TOLLGATE_ name are fine.
        assert!(EnvAllowlist::with_extra(["TOLLGATES", "TX*", "_*"]).is_ok());
    }

    #[test]
    fn refusals_name_the_variable_and_the_rule() {
        let list = EnvAllowlist::default();
        let err = list.check("HOME").unwrap_err();
        assert_eq!(err.name, "HOME");
        assert!(!err.reserved());
        let text = err.to_string();
        assert!(text.contains("env.HOME"), "{text}");
        assert!(text.contains("AWS_*, ANTHROPIC_*"), "{text}");
        assert!(text.contains("TOLLGATE_ENV_ALLOW"), "{text}");
        let err = list.check("TOLLGATE_SECRET_KEY").unwrap_err();
        assert!(err.reserved());
        assert!(err.to_string().contains("never resolve"), "{err}");
        assert!(list.check("AWS_REGION").is_ok());
    }
}

//! Configuration values that are either literal or `env.NAME` references.
//!
//! References are resolved when the value is used, not when the snapshot arrives, so rotating a
//! credential in the data plane's environment (or a file-backed secret that updates it) needs no
//! config change, and credentials can live only where the data plane runs.
//!
//! Only names this data plane's [`EnvAllowlist`] allows are ever read. The check runs once, when
//! a snapshot is compiled ([`Value::from_proto`]): a disallowed reference becomes
//! [`Value::Refused`], which fails every use with [`EnvError::Refused`] and never reads the
//! environment, so a control plane that is older, differently configured or compromised cannot
//! make the data plane send `TOLLGATE_*` or any other variable upstream. The rest of the
//! snapshot is unaffected.
//!
//! | variant | resolves to |
//! |---|---|
//! | `Literal` | the value itself |
//! | `Env` | the variable's current value (allowed name; checked at compile time) |
//! | `Refused` | always [`EnvError::Refused`] |

use std::fmt;
use std::sync::Arc;

use tollgate_proto::config::v1 as pb;
use tollgate_proto::env::{ENV_ALLOW_SETTING, EnvAllowlist, RESERVED_ENV_PREFIX};

/// A literal value or the name of an environment variable.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Literal(Arc<str>),
    /// An allowed variable name, read at every use.
    Env(Arc<str>),
    /// A variable name the allowlist refuses: never read, every use fails.
    Refused(Arc<str>),
}

/// Why a value cannot be produced. The text names the variable, never a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvError {
    /// The referenced variable is not set (or empty, or not valid UTF-8).
    #[error("environment variable {0} is not set on this data plane")]
    Missing(Arc<str>),
    /// The reference names a variable this data plane's allowlist refuses.
    #[error(
        "env.{0} is not allowed on this data plane: only variables on its env allowlist resolve \
         ({ENV_ALLOW_SETTING}; {RESERVED_ENV_PREFIX}* never); change the provider configuration"
    )]
    Refused(Arc<str>),
}

impl Value {
    /// `None` when the proto value is absent or empty. An `env` reference that `env` does not
    /// allow becomes [`Value::Refused`].
    pub fn from_proto(v: Option<&pb::ValueRef>, env: &EnvAllowlist) -> Option<Value> {
        match v?.source.as_ref()? {
            pb::value_ref::Source::Literal(s) if !s.is_empty() => {
                Some(Value::Literal(s.as_str().into()))
            }
            pb::value_ref::Source::Env(name) if !name.is_empty() => Some(Value::env(name, env)),
            _ => None,
        }
    }

    /// An `env.name` reference under `env`.
    pub fn env(name: &str, env: &EnvAllowlist) -> Value {
        if env.allows(name) {
            Value::Env(name.into())
        } else {
            Value::Refused(name.into())
        }
    }

    /// The value now.
    pub fn resolve(&self) -> Result<Arc<str>, EnvError> {
        match self {
            Value::Literal(s) => Ok(s.clone()),
            Value::Env(name) => std::env::var(&**name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Arc::from)
                .ok_or_else(|| EnvError::Missing(name.clone())),
            Value::Refused(name) => Err(EnvError::Refused(name.clone())),
        }
    }

    /// The variable name of a refused reference.
    pub fn refused(&self) -> Option<&str> {
        match self {
            Value::Refused(name) => Some(name),
            _ => None,
        }
    }
}

/// Never prints a literal: values are often secrets.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Literal(_) => f.write_str("Literal(<redacted>)"),
            Value::Env(name) => write!(f, "Env({name})"),
            Value::Refused(name) => write!(f, "Refused({name})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(s: &str) -> pb::ValueRef {
        pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(s.into())),
        }
    }

    fn env_ref(name: &str) -> pb::ValueRef {
        pb::ValueRef {
            source: Some(pb::value_ref::Source::Env(name.into())),
        }
    }

    #[test]
    fn debug_never_shows_literals() {
        let v = Value::from_proto(Some(&literal("wJalrXUtnFEMI")), &EnvAllowlist::default())
            .expect("value");
        assert!(!format!("{v:?}").contains("wJalr"));
    }

    #[test]
    fn env_references_resolve_at_use() {
        let allow = EnvAllowlist::with_extra(["TG_VALUE_TEST_*"]).unwrap();
        let name = "TG_VALUE_TEST_SURELY_UNSET_VAR";
        let v = Value::from_proto(Some(&env_ref(name)), &allow).expect("value");
        assert!(matches!(v, Value::Env(_)));
        assert!(matches!(v.resolve(), Err(EnvError::Missing(n)) if &*n == name));
        // PATH exists in every test environment; allow it by name for this check.
        let allow = EnvAllowlist::with_extra(["PATH"]).unwrap();
        let path = Value::from_proto(Some(&env_ref("PATH")), &allow).expect("value");
        assert_eq!(
            &*path.resolve().expect("PATH"),
            std::env::var("PATH").expect("PATH")
        );
    }

    #[test]
    fn disallowed_references_are_refused_without_reading_the_environment() {
        let allow = EnvAllowlist::default();
        for name in ["PATH", "TOLLGATE_SECRET_KEY", "HOME"] {
            let v = Value::from_proto(Some(&env_ref(name)), &allow).expect("value");
            assert_eq!(v.refused(), Some(name));
            let err = v.resolve().unwrap_err();
            assert!(matches!(&err, EnvError::Refused(n) if &**n == name));
            let text = err.to_string();
            assert!(text.contains(&format!("env.{name}")), "{text}");
            assert!(text.contains("TOLLGATE_ENV_ALLOW"), "{text}");
            if let Ok(value) = std::env::var(name) {
                assert!(
                    !text.contains(&value),
                    "the message never carries the value"
                );
            }
        }
        let ok = Value::from_proto(Some(&env_ref("AWS_REGION")), &allow).expect("value");
        assert_eq!(ok.refused(), None);
    }

    #[test]
    fn empty_values_are_absent() {
        let allow = EnvAllowlist::default();
        assert!(Value::from_proto(Some(&literal("")), &allow).is_none());
        assert!(Value::from_proto(Some(&env_ref("")), &allow).is_none());
        assert!(Value::from_proto(None, &allow).is_none());
    }
}

//! Configuration values that are either literal or `env.NAME` references.
//!
//! References are resolved when the value is used, not when the snapshot arrives, so rotating a
//! credential in the data plane's environment (or a file-backed secret that updates it) needs no
//! config change, and credentials can live only where the data plane runs.

use std::fmt;
use std::sync::Arc;

use tollgate_proto::config::v1 as pb;

/// A literal value or the name of an environment variable.
#[derive(Clone)]
pub enum Value {
    Literal(Arc<str>),
    Env(Arc<str>),
}

/// A referenced environment variable is not set (or not valid UTF-8).
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set on this data plane")]
pub struct MissingEnv(pub Arc<str>);

impl Value {
    /// `None` when the proto value is absent or empty.
    pub fn from_proto(v: Option<&pb::ValueRef>) -> Option<Value> {
        match v?.source.as_ref()? {
            pb::value_ref::Source::Literal(s) if !s.is_empty() => {
                Some(Value::Literal(s.as_str().into()))
            }
            pb::value_ref::Source::Env(name) if !name.is_empty() => {
                Some(Value::Env(name.as_str().into()))
            }
            _ => None,
        }
    }

    /// The value now.
    pub fn resolve(&self) -> Result<Arc<str>, MissingEnv> {
        match self {
            Value::Literal(s) => Ok(s.clone()),
            Value::Env(name) => std::env::var(&**name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Arc::from)
                .ok_or_else(|| MissingEnv(name.clone())),
        }
    }
}

/// Never prints a literal: values are often secrets.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Literal(_) => f.write_str("Literal(<redacted>)"),
            Value::Env(name) => write!(f, "Env({name})"),
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

    #[test]
    fn debug_never_shows_literals() {
        let v = Value::from_proto(Some(&literal("wJalrXUtnFEMI"))).expect("value");
        assert!(!format!("{v:?}").contains("wJalr"));
    }

    #[test]
    fn env_references_resolve_at_use() {
        let name = "TOLLGATE_VALUE_TEST_PATH_VAR";
        let v = Value::from_proto(Some(&pb::ValueRef {
            source: Some(pb::value_ref::Source::Env(name.into())),
        }))
        .expect("value");
        // PATH-like variables exist in every test environment; use one that surely does not.
        assert!(v.resolve().is_err());
        let path = Value::Env("PATH".into());
        assert_eq!(
            &*path.resolve().expect("PATH"),
            std::env::var("PATH").expect("PATH")
        );
    }

    #[test]
    fn empty_values_are_absent() {
        assert!(Value::from_proto(Some(&literal(""))).is_none());
        assert!(Value::from_proto(None).is_none());
    }
}

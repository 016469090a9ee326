//! Small JSON helpers shared by the modules: an infallible string escaper and a top-level-only
//! object parser that keeps every value as raw bytes borrowed from the input.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// One top-level member: decoded key (borrowed from the input unless it has escapes) and the
/// raw, untouched bytes of its value.
pub(crate) type Field<'a> = (Cow<'a, str>, &'a RawValue);

/// Why [`parse_object`] rejected its input.
#[derive(Debug)]
pub(crate) enum ObjectError {
    /// Not valid JSON (syntax error, truncated, trailing garbage).
    Syntax(serde_json::Error),
    /// Valid JSON, but not an object.
    NotObject,
    /// The same key appears twice at the top level.
    Duplicate(String),
}

/// Parses `input` as a JSON object, only one level deep. Values are returned as borrowed
/// [`RawValue`]s, so their bytes (whitespace, escapes, key order, number spelling) are exactly
/// those of the input. Duplicate top-level keys are rejected: different JSON parsers resolve them
/// differently (first wins vs last wins), which would let a request route on one `model` and be
/// served with another.
pub(crate) fn parse_object(input: &[u8]) -> Result<Vec<Field<'_>>, ObjectError> {
    let fields = parse_members(input)?;
    // Requests have a dozen members or so: comparing pairs is cheaper than hashing them.
    if fields.len() <= 32 {
        for (i, (key, _)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(k, _)| k == key) {
                return Err(ObjectError::Duplicate(key.to_string()));
            }
        }
    } else {
        let mut seen = HashSet::with_capacity(fields.len());
        for (key, _) in &fields {
            if !seen.insert(key.as_ref()) {
                return Err(ObjectError::Duplicate(key.to_string()));
            }
        }
    }
    Ok(fields)
}

/// [`parse_object`] without the duplicate check: every member in order, repeated keys
/// included. For rewriting nested objects that the gateway otherwise forwards as they came (a
/// member taken out of such an object must go from each of its copies).
pub(crate) fn parse_members(input: &[u8]) -> Result<Vec<Field<'_>>, ObjectError> {
    match serde_json::from_slice::<TopLevel<'_>>(input) {
        Ok(top) => Ok(top.0),
        Err(err) if err.classify() == serde_json::error::Category::Data => {
            Err(ObjectError::NotObject)
        }
        Err(err) => Err(ObjectError::Syntax(err)),
    }
}

/// Returns the raw value of the first member named `name`.
pub(crate) fn get<'a>(fields: &[Field<'a>], name: &str) -> Option<&'a RawValue> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

struct TopLevel<'a>(Vec<Field<'a>>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = TopLevel<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Appends `s` to `out` as a JSON string literal (with quotes). Infallible, RFC 8259 escaping:
/// `"`, `\` and control characters are escaped, everything else is copied as UTF-8.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(seq) => out.extend_from_slice(seq),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Deserializes `raw` as `T`, mapping any failure to `None`.
pub(crate) fn decode<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_round_trips_through_serde() {
        let samples = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "controls \u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}",
            "unicode é 日本 🦀 \u{2028}",
        ];
        for s in samples {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
        let mut out = Vec::new();
        write_str(&mut out, "a\u{1}b");
        assert_eq!(out, br#""a\u0001b""#);
    }

    #[test]
    fn parse_object_keeps_raw_values_and_order() {
        let input = br#" { "b" : [1, 2 ,3], "a":{"x" : "\u00e9"} , "c":1.50 } "#;
        let fields = parse_object(input).unwrap();
        let got: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(
            got,
            vec![
                ("b", "[1, 2 ,3]"),
                ("a", r#"{"x" : "\u00e9"}"#),
                ("c", "1.50")
            ]
        );
    }

    #[test]
    fn parse_object_errors() {
        assert!(matches!(parse_object(b"[1]"), Err(ObjectError::NotObject)));
        assert!(matches!(
            parse_object(b"\"s\""),
            Err(ObjectError::NotObject)
        ));
        assert!(matches!(parse_object(b"null"), Err(ObjectError::NotObject)));
        assert!(matches!(parse_object(b"{"), Err(ObjectError::Syntax(_))));
        assert!(matches!(parse_object(b"{} x"), Err(ObjectError::Syntax(_))));
        assert!(matches!(parse_object(b""), Err(ObjectError::Syntax(_))));
        assert!(matches!(
            parse_object(br#"{"a":1,"\u0061":2}"#),
            Err(ObjectError::Duplicate(k)) if k == "a"
        ));
        // Past 32 members duplicates are found by hashing instead of comparing pairs.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", many.join(","));
        assert_eq!(parse_object(ok.as_bytes()).expect("40 members").len(), 40);
        let dup = format!("{{{},\"k\\u0033\":0}}", many.join(","));
        assert!(matches!(
            parse_object(dup.as_bytes()),
            Err(ObjectError::Duplicate(k)) if k == "k3"
        ));
    }
}

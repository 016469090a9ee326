//! The audit log's hash chain (pure): every row written from migration 0009 on carries the hash
//! of the row before it (`prev_hash`) and its own `hash`:
//!
//! ```text
//! hash = hex(SHA-256(field(prev_hash) field(id) field(at_us) field(actor) field(action)
//!                    field(target) field(config_version) field(canonical(details))))
//! field(x) = decimal length of x, ':', the bytes of x
//! ```
//!
//! `at_us` is the row's time in microseconds since the Unix epoch (both stores keep
//! microseconds); `canonical(details)` is the details JSON with every object's keys sorted, so
//! the hash does not depend on how a store re-serializes JSON (PostgreSQL's `JSONB` reorders
//! keys). The length prefixes make every field boundary unambiguous. The first chained row's
//! `prev_hash` is the empty string.
//!
//! [`verify`] walks the rows in id order: editing a row changes its hash (and breaks the next
//! row's `prev_hash`), deleting one breaks the next row's `prev_hash`, and a row without a hash
//! after the chain began is a break too. Rows from before the chain began (written by a version
//! before migration 0009) are counted, not checked. Deleting the newest rows leaves a shorter
//! valid chain: compare the head hash [`verify`] reports with one kept elsewhere to detect it.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// One audit row as the chain sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub config_version: i64,
    pub details: serde_json::Value,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// The time as the chain hashes it: whole microseconds since the Unix epoch.
pub fn micros(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos().div_euclid(1000)
}

/// `at` cut to whole microseconds, as both stores keep it (so the value hashed at write time is
/// the value read back).
pub fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let nanos = at.unix_timestamp_nanos();
    OffsetDateTime::from_unix_timestamp_nanos(nanos - nanos.rem_euclid(1000)).unwrap_or(at)
}

/// `value` as JSON text with every object's keys sorted (recursively).
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&map[*k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The hash of a row whose predecessor's hash is `prev_hash` (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    prev_hash: &str,
    id: i64,
    at: OffsetDateTime,
    actor: &str,
    action: &str,
    target: &str,
    config_version: i64,
    details: &serde_json::Value,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update(bytes.len().to_string().as_bytes());
        h.update(b":");
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(id.to_string().as_bytes());
    field(micros(at).to_string().as_bytes());
    field(actor.as_bytes());
    field(action.as_bytes());
    field(target.as_bytes());
    field(config_version.to_string().as_bytes());
    field(canonical_json(details).as_bytes());
    hex::encode(h.finalize())
}

impl ChainRow {
    /// This row's hash when the row before it has `prev_hash` ([`row_hash`]).
    pub fn hash_after(&self, prev_hash: &str) -> String {
        row_hash(
            prev_hash,
            self.id,
            self.at,
            &self.actor,
            &self.action,
            &self.target,
            self.config_version,
            &self.details,
        )
    }
}

/// What [`verify`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows from before the chain began (no hash; written before migration 0009).
    pub unchained: u64,
    /// Rows checked.
    pub chained: u64,
    /// The newest row's hash: keep it elsewhere to detect the newest rows being deleted.
    pub head: Option<String>,
}

/// The first row where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit row {id}: {reason}")]
pub struct ChainBreak {
    pub id: i64,
    pub reason: &'static str,
}

/// Checks `rows` (in id order, the whole log): `Err` names the first row that breaks the chain.
pub fn verify<'a>(rows: impl IntoIterator<Item = &'a ChainRow>) -> Result<ChainReport, ChainBreak> {
    let mut report = ChainReport {
        unchained: 0,
        chained: 0,
        head: None,
    };
    for row in rows {
        let fail = |reason| Err(ChainBreak { id: row.id, reason });
        let Some(hash) = &row.hash else {
            if report.head.is_some() {
                return fail(
                    "no hash after the chain began (the row was edited or its hash removed)",
                );
            }
            report.unchained += 1;
            continue;
        };
        let expected_prev = report.head.as_deref().unwrap_or("");
        if row.prev_hash.as_deref().unwrap_or("") != expected_prev {
            return fail(
                "its prev_hash is not the previous row's hash (a row before it was deleted or edited)",
            );
        }
        if row.hash_after(expected_prev) != *hash {
            return fail("its content does not match its hash (the row was edited)");
        }
        report.chained += 1;
        report.head = Some(hash.clone());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chain(n: i64) -> Vec<ChainRow> {
        let mut rows = Vec::new();
        let mut prev = String::new();
        for id in 1..=n {
            let at = OffsetDateTime::from_unix_timestamp(1_767_225_600 + id).unwrap();
            let details = json!({"name": format!("key-{id}"), "weight": 1.5, "models": ["*"]});
            let hash = row_hash(&prev, id, at, "admin", "key.create", "k", id, &details);
            rows.push(ChainRow {
                id,
                at,
                actor: "admin".into(),
                action: "key.create".into(),
                target: "k".into(),
                config_version: id,
                details,
                prev_hash: Some(prev.clone()),
                hash: Some(hash.clone()),
            });
            prev = hash;
        }
        rows
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let rows = chain(5);
        let report = verify(&rows).unwrap();
        assert_eq!((report.unchained, report.chained), (0, 5));
        assert_eq!(report.head, rows[4].hash);
    }

    #[test]
    fn edits_deletions_and_removed_hashes_name_the_first_bad_row() {
        let mut edited = chain(5);
        edited[2].details["weight"] = json!(2.0);
        assert_eq!(verify(&edited).unwrap_err().id, 3);

        let mut actor = chain(5);
        actor[1].actor = "someone-else".into();
        assert_eq!(verify(&actor).unwrap_err().id, 2);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).unwrap_err().id, 3);

        let mut unhashed = chain(5);
        unhashed[3].hash = None;
        unhashed[3].prev_hash = None;
        assert_eq!(verify(&unhashed).unwrap_err().id, 4);

        // Recomputing the edited row's hash does not help: the next row still names the old one.
        let mut rehashed = chain(5);
        rehashed[2].details["weight"] = json!(2.0);
        let prev = rehashed[1].hash.clone().unwrap();
        rehashed[2].hash = Some(rehashed[2].hash_after(&prev));
        assert_eq!(verify(&rehashed).unwrap_err().id, 4);
    }

    #[test]
    fn rows_from_before_the_chain_are_counted_not_checked() {
        let mut rows = chain(3);
        for r in &mut rows {
            r.id += 2;
        }
        // Re-hash with the new ids.
        let mut prev = String::new();
        for r in &mut rows {
            let h = r.hash_after(&prev);
            r.prev_hash = Some(prev.clone());
            r.hash = Some(h.clone());
            prev = h;
        }
        let mut old = chain(2);
        for r in &mut old {
            r.hash = None;
            r.prev_hash = None;
        }
        old.extend(rows);
        let report = verify(&old).unwrap();
        assert_eq!((report.unchained, report.chained), (2, 3));
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order_and_fields_cannot_shift() {
        let at = OffsetDateTime::from_unix_timestamp(1).unwrap();
        let a = row_hash(
            "",
            1,
            at,
            "ab",
            "c",
            "t",
            1,
            &json!({"x": 1, "y": {"b": 2, "a": 1}}),
        );
        let b = row_hash(
            "",
            1,
            at,
            "ab",
            "c",
            "t",
            1,
            &json!({"y": {"a": 1, "b": 2}, "x": 1}),
        );
        assert_eq!(a, b);
        let shifted = row_hash(
            "",
            1,
            at,
            "a",
            "bc",
            "t",
            1,
            &json!({"x": 1, "y": {"b": 2, "a": 1}}),
        );
        assert_ne!(a, shifted);
        assert_eq!(
            micros(truncate_to_micros(
                OffsetDateTime::from_unix_timestamp_nanos(1_500_999).unwrap()
            )),
            1_500
        );
    }
}

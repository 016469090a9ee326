//! What an audit row says (pure): who, from where, what, before → after, and the result; and how
//! the log is queried. The rows' hash chain is [`crate::audit_chain`]; the store writes rows
//! ([`Store::append_audit`](crate::store::Store::append_audit) and every mutation).
//!
//! A row is `(id, at, actor, action, target, config_version, details, prev_hash, hash)`.
//! `details` is a JSON object:
//!
//! | key | holds |
//! |---|---|
//! | `result` | `"success"` (a committed change, or a successful standalone event) or `"failure"` (a refused request) |
//! | `source` | `{"ip", "user_agent"}`: the TCP peer's address (never a forwarded-for header) and the `User-Agent`, escaped and cut to [`MAX_USER_AGENT_CHARS`] characters |
//! | `before`, `after` | change rows: the record's [`AuditView`] before and after the change (`before` is null for a create, `after` for a delete); standalone rows have neither |
//! | `changed` | updates: the top-level fields of the view whose value differs |
//! | `error`, `status` | failures: the error message (values echoed from a request body redacted) and the HTTP status |
//! | others | what an action adds: `budget_id` (`budget.reset`), `method` (`auth.failed`) |
//!
//! Why in `details` and not in columns: the hash already covers `details` (canonical JSON), so
//! the new fields are tamper-evident without a second hash formula, and rows chained before them
//! still verify unchanged. Filtering on `result` uses an expression index on `details` (migration
//! 0010); `actor`, `action`, `target` and `at` are columns with indexes. Rows written before
//! migration 0010 have no `result` and match no `result` filter.
//!
//! Secrets never reach a row: views show sealed literals as `"<redacted>"` and `env.NAME`
//! references as written, and never a virtual key's digest.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::model::{
    AuditEvent, CustomerRecord, PriceOverrideRecord, ProviderKeyRecord, ProviderRecord,
    SealedSecret, TeamRecord, ValueSource, VirtualKeyRecord,
};

/// The longest `User-Agent` kept, in characters (before escaping).
pub const MAX_USER_AGENT_CHARS: usize = 200;
/// The longest error message kept in a failure row, in characters (before escaping).
pub const MAX_ERROR_CHARS: usize = 500;
/// The longest target kept in a row written from request text (failures), in characters.
pub const MAX_TARGET_CHARS: usize = 200;

/// `details.result` of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    Success,
    Failure,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(AuditResult::Success),
            "failure" => Some(AuditResult::Failure),
            _ => None,
        }
    }
}

/// Where a request came from, as an audit row records it (`details.source`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSource {
    /// The TCP peer's address (IPv4-mapped IPv6 addresses are shown as IPv4).
    pub ip: Option<IpAddr>,
    /// The `User-Agent`, escaped ([`escape`]) and cut to [`MAX_USER_AGENT_CHARS`] characters.
    pub user_agent: Option<String>,
}

impl AuditSource {
    /// `user_agent` is the raw header value (any bytes; invalid UTF-8 is replaced).
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&[u8]>) -> Self {
        AuditSource {
            ip: ip.map(|ip| ip.to_canonical()),
            user_agent: user_agent
                .map(|raw| escape(&String::from_utf8_lossy(raw), MAX_USER_AGENT_CHARS)),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ip": self.ip.map(|ip| ip.to_string()),
            "user_agent": self.user_agent,
        })
    }
}

/// `text` cut to `max_chars` characters, then with control characters, Unicode line separators
/// and bidirectional overrides written as `\n`, `\u{1b}` and the like (the rule of
/// `tollgate_proto::logsafe`), so a row shown in a terminal or a log cannot forge lines.
pub fn escape(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for c in text.chars().take(max_chars) {
        let special = c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            );
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if special => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// An error message as a failure row keeps it: string values that serde echoes from a request
/// body are replaced ([`redact_echoed_strings`]), then the text is [`escape`]d and cut to
/// [`MAX_ERROR_CHARS`].
pub fn error_message(message: &str) -> String {
    escape(&redact_echoed_strings(message), MAX_ERROR_CHARS)
}

/// `message` with every string value serde echoes from a request body (`invalid type: string
/// "…"`, `{:?}`-escaped) replaced with `"<redacted>"`: a secret sent in the wrong field must be
/// neither answered nor stored. The admin API's body errors ([`crate::api`]) and failure rows
/// both use it.
pub fn redact_echoed_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    const ECHO: &str = "string \"";
    while let Some(i) = rest.find(ECHO) {
        out.push_str(&rest[..i + ECHO.len()]);
        out.push_str(crate::model::REDACTED);
        let after = &rest[i + ECHO.len()..];
        // serde writes the value with `{:?}`-like escaping: skip to the closing quote.
        let mut end = after.len();
        let mut escaped = false;
        for (j, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = j;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

impl AuditEvent {
    /// An event by `actor` from `source` about `target`; its `details` hold the source only.
    /// For a change, pass it to the store's mutation, which adds `before`, `after`, `changed`
    /// and `result`; for a standalone row ([`Store::append_audit`](crate::store::Store::append_audit))
    /// finish it with [`AuditEvent::success`] or [`AuditEvent::failure`].
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        source: &AuditSource,
    ) -> Self {
        AuditEvent {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            details: json!({ "source": source.to_json() }),
        }
    }

    /// Adds `key: value` to `details` (which must not contain secrets).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        details_object(&mut self.details).insert(key.to_owned(), value);
        self
    }

    /// Marks a standalone event successful.
    pub fn success(self) -> Self {
        self.with("result", json!(AuditResult::Success.as_str()))
    }

    /// Marks a standalone event failed with `message` (sanitised by [`error_message`]).
    pub fn failure(self, message: &str) -> Self {
        self.with("result", json!(AuditResult::Failure.as_str()))
            .with("error", json!(error_message(message)))
    }
}

/// `details` as an object: anything else (older callers) is kept under `data`.
fn details_object(details: &mut Value) -> &mut Map<String, Value> {
    if !details.is_object() {
        let old = std::mem::take(details);
        let mut map = Map::new();
        if !old.is_null() {
            map.insert("data".to_owned(), old);
        }
        *details = Value::Object(map);
    }
    match details {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

/// The row of a committed change: `event` with `before` and `after` ([`AuditView`]s of the
/// record; `None` for a create and a delete), `changed` (when both exist) and
/// `result: "success"` added to its details.
pub fn change_event<T: AuditView>(
    event: &AuditEvent,
    before: Option<&T>,
    after: Option<&T>,
) -> AuditEvent {
    let before_view = before.map(AuditView::audit_view);
    let after_view = after.map(AuditView::audit_view);
    let mut event = event.clone();
    let details = details_object(&mut event.details);
    if let (Some(b), Some(a), Some(bv), Some(av)) = (before, after, &before_view, &after_view) {
        let mut changed: BTreeSet<String> = changed_fields(bv, av).into_iter().collect();
        // A new literal secret shows as "<redacted>" before and after: compare the sealed values.
        let (bs, as_) = (b.sealed_fields(), a.sealed_fields());
        for (field, _) in bs.iter().chain(as_.iter()) {
            let of = |list: &[(&'static str, String)]| {
                list.iter()
                    .filter(|(f, _)| f == field)
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            };
            if of(&bs) != of(&as_) {
                changed.insert((*field).to_owned());
            }
        }
        details.insert("changed".to_owned(), json!(changed));
    }
    details.insert("before".to_owned(), before_view.unwrap_or(Value::Null));
    details.insert("after".to_owned(), after_view.unwrap_or(Value::Null));
    details.insert("result".to_owned(), json!(AuditResult::Success.as_str()));
    event
}

/// The top-level keys whose values differ between two views (sorted).
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect()
}

/// How a record appears in an audit row's `before` and `after`: its settings with every secret
/// redacted (sealed literals as `"<redacted>"`, `env.NAME` references as written), no
/// virtual-key digest, no timestamps (they change with every update and would show in every
/// `changed` list).
pub trait AuditView {
    fn audit_view(&self) -> Value;

    /// The sealed secrets behind the view's `"<redacted>"` values, as `(top-level field, column
    /// text)` pairs: never written to a row, only compared, so that replacing a literal secret
    /// with another lists its field in `changed` although the view reads the same.
    fn sealed_fields(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl<T: AuditView + ?Sized> AuditView for &T {
    fn audit_view(&self) -> Value {
        (**self).audit_view()
    }

    fn sealed_fields(&self) -> Vec<(&'static str, String)> {
        (**self).sealed_fields()
    }
}

fn sealed(field: &'static str, s: &Option<SealedSecret>) -> Option<(&'static str, String)> {
    s.as_ref().map(|s| (field, s.to_column()))
}

fn secret(s: &Option<SealedSecret>) -> Option<String> {
    s.as_ref().map(SealedSecret::display)
}

fn plain(v: &Option<ValueSource>) -> Option<String> {
    v.as_ref().map(ValueSource::display)
}

impl AuditView for ProviderRecord {
    fn audit_view(&self) -> Value {
        json!({
            "name": self.name,
            "kind": self.kind,
            // Header values as the API shows them: "<redacted>" or env.NAME.
            "network_config": self.network.display(),
        })
    }

    fn sealed_fields(&self) -> Vec<(&'static str, String)> {
        let n = &self.network;
        n.extra_headers
            .iter()
            .map(|(name, v)| ("network_config", format!("{name}={}", v.to_column())))
            .chain(
                n.legacy_extra_headers
                    .iter()
                    .map(|(name, v)| ("network_config", format!("{name}=legacy:{v}"))),
            )
            .collect()
    }
}

impl AuditView for ProviderKeyRecord {
    fn audit_view(&self) -> Value {
        json!({
            "id": self.id,
            "provider": self.provider,
            "name": self.name,
            "description": self.description,
            "models": self.models,
            "weight": self.weight,
            "aliases": self.aliases,
            "enabled": self.enabled,
            "value": secret(&self.value),
            "bedrock_key_config": self.bedrock.as_ref().map(|b| json!({
                "access_key": secret(&b.access_key),
                "secret_key": secret(&b.secret_key),
                "session_token": secret(&b.session_token),
                "external_id": secret(&b.external_id),
                "region": plain(&b.region),
                "role_arn": plain(&b.role_arn),
                "session_name": b.session_name,
                "arn": b.arn,
            })),
            "vertex_key_config": self.vertex.as_ref().map(|v| json!({
                "project_id": plain(&v.project_id),
                "region": plain(&v.region),
                "auth_credentials": secret(&v.auth_credentials),
                "token_uri": v.token_uri,
            })),
        })
    }

    fn sealed_fields(&self) -> Vec<(&'static str, String)> {
        let b = self.bedrock.as_ref();
        [
            sealed("value", &self.value),
            b.and_then(|b| sealed("bedrock_key_config", &b.access_key)),
            b.and_then(|b| sealed("bedrock_key_config", &b.secret_key)),
            b.and_then(|b| sealed("bedrock_key_config", &b.session_token)),
            b.and_then(|b| sealed("bedrock_key_config", &b.external_id)),
            self.vertex
                .as_ref()
                .and_then(|v| sealed("vertex_key_config", &v.auth_credentials)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl AuditView for VirtualKeyRecord {
    fn audit_view(&self) -> Value {
        // Never `key_sha256`: the digest would let anyone holding the log test guesses.
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "value_prefix": self.value_prefix,
            "providers": self.providers,
            "is_active": self.active,
            "team_id": self.team_id,
            "customer_id": self.customer_id,
            "governance": self.governance,
        })
    }
}

impl AuditView for TeamRecord {
    fn audit_view(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "customer_id": self.customer_id,
            "limits": self.limits,
            "member_key_limits": self.member_key_limits,
            "content_logging": self.content_logging,
            "mcp_tools": self.mcp_tools,
        })
    }
}

impl AuditView for crate::mcp::McpServerRecord {
    fn audit_view(&self) -> Value {
        // `env` and `headers` values as the API shows them: "<redacted>" or env.NAME.
        json!(crate::mcp::McpServerView::of(self))
    }

    fn sealed_fields(&self) -> Vec<(&'static str, String)> {
        crate::mcp::sealed_entries(self)
    }
}

impl AuditView for crate::identity::UserRecord {
    fn audit_view(&self) -> Value {
        json!({
            "id": self.id,
            "user_name": self.user_name,
            "issuer": self.issuer,
            "subject": self.subject,
            "external_id": self.external_id,
            "email": self.email,
            "display_name": self.display_name,
            "groups": self.groups,
            "role": self.role,
            "team_id": self.team_id,
            "active": self.active,
            "key_generation": self.key_generation,
        })
    }
}

impl AuditView for crate::identity::ApiTokenRecord {
    fn audit_view(&self) -> Value {
        // Never the digest.
        json!({
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "value_prefix": self.value_prefix,
            "expires_at": self.expires_at.unix_timestamp(),
            "revoked": self.revoked_at.is_some(),
        })
    }
}

impl AuditView for CustomerRecord {
    fn audit_view(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "limits": self.limits,
        })
    }
}

impl AuditView for PriceOverrideRecord {
    fn audit_view(&self) -> Value {
        json!({
            "id": self.id,
            "entry": self.entry,
        })
    }
}

/// A text filter: exact, or a prefix (written `virtual_key.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    Exact(String),
    Prefix(String),
}

impl TextMatch {
    /// `abc` is exact, `abc*` a prefix; `*` anywhere but at the end, and empty text, are refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if raw.chars().count() > 1000 {
            return Err("at most 1000 characters".to_owned());
        }
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        if body.contains('*') {
            return Err(
                "`*` may only end the value (a prefix match, e.g. `virtual_key.*`)".to_owned(),
            );
        }
        Ok(if prefix {
            TextMatch::Prefix(body.to_owned())
        } else {
            TextMatch::Exact(body.to_owned())
        })
    }

    /// Whether `text` matches (what the store's SQL computes).
    pub fn matches(&self, text: &str) -> bool {
        match self {
            TextMatch::Exact(e) => text == e,
            TextMatch::Prefix(p) => text.starts_with(p.as_str()),
        }
    }
}

/// The least string greater than every string that starts with `prefix`, in code-point order
/// (= UTF-8 byte order): `s` starts with `prefix` iff `prefix <= s < prefix_end(prefix)`. `None`
/// when there is no such bound (empty prefix, or only `char::MAX`s). The stores turn a prefix
/// filter into this range so it can use an index with bound parameters.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `t` rounded up to whole microseconds, the precision of `at`: for a row's `at`,
/// `at >= t` iff `at >= ceil_to_micros(t)`, and likewise for `<`. The stores bind time bounds
/// this way (PostgreSQL would otherwise round a finer bound).
pub fn ceil_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.unix_timestamp_nanos();
    let rem = nanos.rem_euclid(1000);
    if rem == 0 {
        t
    } else {
        OffsetDateTime::from_unix_timestamp_nanos(nanos - rem + 1000)
            .map_or(t, |c| c.to_offset(t.offset()))
    }
}

/// Which rows a query returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<TextMatch>,
    pub action: Option<TextMatch>,
    pub target: Option<TextMatch>,
    pub result: Option<AuditResult>,
    /// `at >= since`.
    pub since: Option<OffsetDateTime>,
    /// `at < until`.
    pub until: Option<OffsetDateTime>,
}

/// Row order of a query (by id, which is the chain's order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// One page of the audit log: keyset pagination on the id, never an offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// Only rows with `id < before_id` (the next page of a newest-first listing).
    pub before_id: Option<i64>,
    /// Only rows with `id > after_id` (the next page of an oldest-first listing).
    pub after_id: Option<i64>,
    pub order: AuditOrder,
    /// Rows at most.
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_ranges() {
        assert_eq!(prefix_end("virtual_key."), Some("virtual_key/".to_owned()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10ffff}"), Some("b".to_owned()));
        assert_eq!(prefix_end("\u{10ffff}"), None);
        // The surrogate gap is skipped.
        assert_eq!(prefix_end("\u{d7ff}"), Some("\u{e000}".to_owned()));
        for (p, s) in [
            ("virtual_key.", "virtual_key.create"),
            ("token@", "token@10.0.0.5"),
            ("é", "éa"),
        ] {
            let end = prefix_end(p).unwrap();
            assert!(p <= s && s < end.as_str(), "{p} {s} {end}");
        }
        for (p, s) in [
            ("virtual_key.", "virtual_key"),
            ("virtual_key.", "virtual_keys"),
        ] {
            let end = prefix_end(p).unwrap();
            assert!(!(p <= s && s < end.as_str()), "{p} {s} {end}");
        }
    }

    #[test]
    fn time_bounds_round_up_to_microseconds() {
        let t = time::macros::datetime!(2026-01-15 10:00:00.000001001 UTC);
        assert_eq!(
            ceil_to_micros(t),
            time::macros::datetime!(2026-01-15 10:00:00.000002 UTC)
        );
        let exact = time::macros::datetime!(2026-01-15 10:00:00.000002 UTC);
        assert_eq!(ceil_to_micros(exact), exact);
    }

    #[test]
    fn text_filters_parse() {
        assert_eq!(
            TextMatch::parse("virtual_key.*"),
            Ok(TextMatch::Prefix("virtual_key.".into()))
        );
        assert_eq!(
            TextMatch::parse("provider.create"),
            Ok(TextMatch::Exact("provider.create".into()))
        );
        assert!(TextMatch::parse("").is_err());
        assert!(TextMatch::parse("a*b").is_err());
        assert!(TextMatch::parse("**").is_err());
        assert_eq!(TextMatch::parse("*"), Ok(TextMatch::Prefix(String::new())));
    }

    #[test]
    fn user_agents_are_cut_and_escaped() {
        let s = AuditSource::new(
            Some("::ffff:10.0.0.5".parse().unwrap()),
            Some(format!("curl/8\n\u{1b}[31m{}", "x".repeat(500)).as_bytes()),
        );
        assert_eq!(s.ip, Some("10.0.0.5".parse().unwrap()));
        let ua = s.user_agent.unwrap();
        assert!(ua.starts_with("curl/8\\n\\u{1b}[31mxxx"), "{ua}");
        assert!(!ua.chars().any(char::is_control));
        let head = "curl/8\n\u{1b}[31m".chars().count();
        assert_eq!(ua.chars().filter(|c| *c == 'x').count(), 200 - head);
    }

    #[test]
    fn echoed_body_strings_are_redacted_in_error_messages() {
        let m = error_message(
            r#"invalid value for `weight`: invalid type: string "sk-ant-\"SECRET", expected f64"#,
        );
        assert_eq!(
            m,
            r#"invalid value for `weight`: invalid type: string "<redacted>", expected f64"#
        );
        assert_eq!(
            error_message("provider \"bedrock\" not found"),
            "provider \"bedrock\" not found"
        );
    }

    fn key(value: Option<SealedSecret>, weight: f64) -> ProviderKeyRecord {
        let t = OffsetDateTime::UNIX_EPOCH;
        ProviderKeyRecord {
            id: uuid::Uuid::nil(),
            provider: "anthropic".into(),
            name: "k".into(),
            description: None,
            models: vec!["*".into()],
            weight,
            aliases: Default::default(),
            enabled: true,
            value,
            bedrock: None,
            vertex: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn changes_list_the_fields_that_differ_and_secrets_stay_redacted() {
        let e = AuditEvent::new("a", "x.update", "t", &AuditSource::default());
        let old = key(Some(SealedSecret::Encrypted("v1:OLDCIPHER".into())), 1.0);
        let new = key(Some(SealedSecret::Encrypted("v1:NEWCIPHER".into())), 2.0);
        let row = change_event(&e, Some(&old), Some(&new));
        assert_eq!(row.details["changed"], json!(["value", "weight"]));
        assert_eq!(row.details["result"], "success");
        assert_eq!(row.details["before"]["value"], "<redacted>");
        assert_eq!(row.details["after"]["value"], "<redacted>");
        assert_eq!(row.details["before"]["weight"], 1.0);
        assert_eq!(row.details["source"]["ip"], Value::Null);
        let text = row.details.to_string();
        assert!(!text.contains("CIPHER"), "{text}");
        // Env references show as written; an unchanged secret is not listed.
        let env = key(Some(SealedSecret::Env("ANTHROPIC_API_KEY".into())), 1.0);
        let row = change_event(&e, Some(&env), Some(&env));
        assert_eq!(row.details["changed"], json!([]));
        assert_eq!(row.details["after"]["value"], "env.ANTHROPIC_API_KEY");
        let created = change_event(&e, None, Some(&old));
        assert_eq!(created.details["before"], Value::Null);
        assert!(created.details.get("changed").is_none());
        let deleted = change_event(&e, Some(&old), None);
        assert_eq!(deleted.details["after"], Value::Null);
    }
}

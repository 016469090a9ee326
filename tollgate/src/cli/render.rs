//! Pure text of the CLI: the model list's filter, the launch summary, `tollgate status`'s
//! report and `tollgate doctor`'s check list with its exit code.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;

use super::harness::Choices;
use super::keystore::redact;

/// Whether `model` matches what was typed: every whitespace-separated word of `filter` is in
/// the name, case-insensitively (`son 4-6` matches `claude-sonnet-4-6`).
pub fn model_matches(filter: &str, model: &str) -> bool {
    let model = model.to_lowercase();
    filter
        .split_whitespace()
        .all(|word| model.contains(&word.to_lowercase()))
}

/// The longest text [`terminal_safe`] lets through, in characters (longer: cut, with `…`).
pub const TERMINAL_SAFE_MAX: usize = 300;

/// `s` (text from the network: model ids, names, error messages) made safe to print as one
/// line of a terminal: control characters (ESC, CSI, BEL, and `\n`, `\r`, `\t` too, which would
/// fake or rewrite lines) and bidirectional / zero-width format characters become `\u{..}`
/// escapes, and more than [`TERMINAL_SAFE_MAX`] characters are cut. Borrowed when unchanged.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    escape(s, TERMINAL_SAFE_MAX)
}

/// [`terminal_safe`] with another length cap.
fn escape(s: &str, max: usize) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(unsafe_char) && s.chars().nth(max).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A whole message (an error chain) made one terminal-safe line, with a larger cap.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape(s, 4 * TERMINAL_SAFE_MAX)
}

/// [`terminal_safe`], owned.
pub fn safe(s: &str) -> String {
    terminal_safe(s).into_owned()
}

/// The ids of a `GET /v1/models` answer.
pub fn model_ids(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Page {
        data: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: String,
    }
    let page: Page = serde_json::from_slice(body)?;
    Ok(page.data.into_iter().map(|e| e.id).collect())
}

/// The summary shown before launching.
pub fn summary(c: &Choices, key: &str, key_place: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  gateway   {}", terminal_safe(&c.gateway));
    let _ = writeln!(
        out,
        "  key       {} ({})",
        redact(key),
        terminal_safe(key_place)
    );
    let _ = writeln!(out, "  harness   {}", c.harness);
    let _ = writeln!(out, "  model     {}", terminal_safe(&c.model));
    if let Some(small) = &c.small_model {
        let _ = writeln!(out, "  small     {}", terminal_safe(small));
    }
    if c.harness == super::harness::Harness::Claude {
        let _ = writeln!(
            out,
            "  MCP       {}",
            if c.mcp {
                format!("{}/mcp as `tollgate`", terminal_safe(&c.gateway))
            } else {
                "off".to_owned()
            }
        );
    }
    out
}

/// The outcome of one check of `tollgate doctor` (or line of `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, but something is worth knowing.
    Warn,
    Fail,
    /// Not run (an earlier check failed, or nothing to check).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome,
            detail: detail.into(),
        }
    }
}

/// `tollgate doctor`'s report, one line per check.
pub fn checks(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        // Details quote the gateway (names, errors): one line each, whatever they hold.
        let _ = writeln!(
            out,
            "[{tag}] {:<13} {}",
            c.name,
            escape(&c.detail, 4 * TERMINAL_SAFE_MAX)
        );
    }
    out
}

/// Exit code when every check passed (warnings included).
pub const EXIT_OK: u8 = 0;
/// Exit code when a check failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a usage or configuration error (no gateway, no key, bad flags).
pub const EXIT_USAGE: u8 = 2;

/// `tollgate doctor`'s exit code: 1 if any check failed, else 0.
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.outcome == Outcome::Fail) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// What a `GET /health` status says of the gateway: 2xx ok; 401, 403 or 404 a warning (it
/// answers, but `/health` is behind authentication or not routed, e.g. behind a proxy); any
/// other status (5xx from a proxy whose upstream is down, a redirect) a failure.
pub fn health_outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        401 | 403 | 404 => Outcome::Warn,
        _ => Outcome::Fail,
    }
}

/// Clock skew thresholds (seconds, absolute): up to [`SKEW_WARN_SECS`] is fine (the `Date`
/// header has a resolution of one second, plus the round trip), up to [`SKEW_FAIL_SECS`] a
/// warning, beyond a failure: signed requests (SigV4 allows 5 minutes) and the sign-in's
/// tokens stop working.
pub const SKEW_WARN_SECS: i64 = 30;
pub const SKEW_FAIL_SECS: i64 = 300;

/// The clock-skew check: `skew` is local minus gateway, in seconds.
pub fn skew_check(skew: i64) -> Check {
    let outcome = match skew.unsigned_abs() {
        s if s <= SKEW_WARN_SECS as u64 => Outcome::Ok,
        s if s <= SKEW_FAIL_SECS as u64 => Outcome::Warn,
        _ => Outcome::Fail,
    };
    let detail = if skew == 0 {
        "local clock agrees with the gateway's".to_owned()
    } else {
        format!(
            "local clock is {}s {} the gateway's (ok up to {SKEW_WARN_SECS}s, fails beyond {SKEW_FAIL_SECS}s)",
            skew.unsigned_abs(),
            if skew > 0 { "ahead of" } else { "behind" }
        )
    };
    Check::new("clock skew", outcome, detail)
}

/// The state of the gateway's MCP servers (`GET /v1/mcp/servers`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct McpServerState {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub tools: u32,
    #[serde(default)]
    pub error: Option<String>,
}

pub fn mcp_servers(body: &[u8]) -> Result<Vec<McpServerState>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Answer {
        servers: Vec<McpServerState>,
    }
    serde_json::from_slice::<Answer>(body).map(|a| a.servers)
}

/// The MCP-servers check: failed servers fail it, connecting ones warn.
pub fn mcp_servers_check(servers: &[McpServerState]) -> Check {
    if servers.is_empty() {
        return Check::new(
            "MCP servers",
            Outcome::Ok,
            "the gateway has no MCP server for this key",
        );
    }
    let describe = |s: &McpServerState| {
        let name = terminal_safe(&s.name);
        match (&*s.state, &s.error) {
            ("ready", _) => format!("{name} ready ({} tools)", s.tools),
            (state, Some(e)) => format!("{name} {}: {}", terminal_safe(state), terminal_safe(e)),
            (state, None) => format!("{name} {}", terminal_safe(state)),
        }
    };
    let outcome = if servers.iter().any(|s| s.state == "failed") {
        Outcome::Fail
    } else if servers.iter().any(|s| s.state != "ready") {
        Outcome::Warn
    } else {
        Outcome::Ok
    };
    let detail = servers.iter().map(describe).collect::<Vec<_>>().join("; ");
    Check::new("MCP servers", outcome, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::harness::Harness;

    #[test]
    fn the_filter_matches_every_word_case_insensitively() {
        let models = [
            "claude-haiku-4-5",
            "claude-sonnet-4-6",
            "bedrock/claude-sonnet-4-6",
            "anthropic/claude-opus-4-6",
        ];
        let pick = |f: &str| -> Vec<&str> {
            models
                .iter()
                .copied()
                .filter(|m| model_matches(f, m))
                .collect()
        };
        assert_eq!(pick(""), models);
        assert_eq!(
            pick("SON 4-6"),
            ["claude-sonnet-4-6", "bedrock/claude-sonnet-4-6"]
        );
        assert_eq!(pick("bedrock son"), ["bedrock/claude-sonnet-4-6"]);
        assert!(pick("gpt").is_empty());
    }

    #[test]
    fn model_lists_are_read_from_the_anthropic_shape() {
        let ids = model_ids(br#"{"data":[{"type":"model","id":"a"},{"id":"b"}],"has_more":false}"#)
            .unwrap();
        assert_eq!(ids, ["a", "b"]);
        assert!(model_ids(b"{}").is_err());
    }

    #[test]
    fn the_summary_redacts_the_key() {
        let c = Choices {
            gateway: "http://gw:8080".into(),
            harness: Harness::Claude,
            model: "claude-opus-4-6".into(),
            small_model: Some("claude-haiku-4-5".into()),
            mcp: true,
        };
        let s = summary(&c, "sk-tg-0123456789abcdef", "the OS keyring");
        assert!(s.contains("sk-tg-…cdef (the OS keyring)"), "{s}");
        assert!(!s.contains("0123456789"), "{s}");
        assert!(s.contains("Claude Code") && s.contains("claude-opus-4-6"));
        assert!(s.contains("http://gw:8080/mcp as `tollgate`"), "{s}");
        assert!(s.contains("small     claude-haiku-4-5"), "{s}");
    }

    #[test]
    fn network_text_is_made_terminal_safe() {
        assert!(matches!(
            terminal_safe("claude-sonnet-4-6"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            terminal_safe("a\x1b]52;c;cHduZWQ=\x07b\x1b[2Kc"),
            "a\\u{1b}]52;c;cHduZWQ=\\u{7}b\\u{1b}[2Kc"
        );
        assert_eq!(terminal_safe("x\ny\r\tz"), "x\\u{a}y\\u{d}\\u{9}z");
        // C1 CSI, DEL and a bidi override.
        assert_eq!(
            terminal_safe("\u{9b}31m\u{7f}\u{202e}"),
            "\\u{9b}31m\\u{7f}\\u{202e}"
        );
        let long = "é".repeat(TERMINAL_SAFE_MAX + 10);
        let cut = terminal_safe(&long);
        assert_eq!(cut.chars().count(), TERMINAL_SAFE_MAX + 1);
        assert!(cut.ends_with('…'));
        // A doctor line stays one line whatever a server's name or error holds.
        let servers = [McpServerState {
            name: "a\x1b[1A\r[ok  ] fake".into(),
            state: "failed".into(),
            tools: 0,
            error: Some("boom\n[ok  ] key".into()),
        }];
        let text = checks(&[mcp_servers_check(&servers)]);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        let text = checks(&[Check::new("key", Outcome::Fail, "x\n[ok  ] y\x1b]0;t\x07")]);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
    }

    #[test]
    fn health_statuses_are_classified() {
        assert_eq!(health_outcome(200), Outcome::Ok);
        assert_eq!(health_outcome(204), Outcome::Ok);
        assert_eq!(health_outcome(401), Outcome::Warn);
        assert_eq!(health_outcome(404), Outcome::Warn);
        assert_eq!(health_outcome(500), Outcome::Fail);
        assert_eq!(health_outcome(502), Outcome::Fail);
        assert_eq!(health_outcome(503), Outcome::Fail);
        assert_eq!(health_outcome(302), Outcome::Fail);
    }

    #[test]
    fn clock_skew_thresholds() {
        assert_eq!(skew_check(0).outcome, Outcome::Ok);
        assert_eq!(skew_check(-30).outcome, Outcome::Ok);
        assert_eq!(skew_check(31).outcome, Outcome::Warn);
        assert_eq!(skew_check(-300).outcome, Outcome::Warn);
        assert_eq!(skew_check(301).outcome, Outcome::Fail);
        assert!(skew_check(-90).detail.contains("90s behind"));
    }

    #[test]
    fn mcp_server_states_decide_the_check_and_exit_code() {
        let servers = mcp_servers(
            br#"{"servers":[{"name":"everything","state":"ready","tools":3,"error":null},
                           {"name":"git","state":"connecting","tools":0,"error":null}]}"#,
        )
        .unwrap();
        let c = mcp_servers_check(&servers);
        assert_eq!(c.outcome, Outcome::Warn);
        assert_eq!(c.detail, "everything ready (3 tools); git connecting");
        let failed = mcp_servers(
            br#"{"servers":[{"name":"x","state":"failed","tools":0,"error":"spawn failed"}]}"#,
        )
        .unwrap();
        let c = mcp_servers_check(&failed);
        assert_eq!(c.outcome, Outcome::Fail);
        assert_eq!(c.detail, "x failed: spawn failed");
        assert_eq!(mcp_servers_check(&[]).outcome, Outcome::Ok);

        let ok = Check::new("a", Outcome::Ok, "");
        let warn = Check::new("b", Outcome::Warn, "");
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), EXIT_OK);
        assert_eq!(exit_code(&[ok, warn, c]), EXIT_FAILED);
        let text = checks(&[Check::new("reachability", Outcome::Fail, "refused")]);
        assert_eq!(text, "[FAIL] reachability  refused\n");
    }
}

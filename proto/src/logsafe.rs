//! Text the gateway did not write, in log lines: [`log_safe`] wraps a `&str` so that, when a
//! `tracing` field formats it (`field = %log_safe(text)`), it can neither forge a log line nor
//! flood one. Both planes log such text (model ids, upstream messages, paths; data planes' node
//! ids and NACK reasons), so the rule lives here, with the contract, and is applied identically.
//!
//! | input | written as |
//! |---|---|
//! | `\n`, `\r`, `\t` | `\n`, `\r`, `\t` (backslash and letter) |
//! | other control characters (C0, DEL, C1: ESC, BEL, ...) | `\u{1b}` and the like |
//! | Unicode line/paragraph separators, bidirectional overrides | `\u{2028}` and the like |
//! | anything else | itself |
//! | text beyond [`MAX_LOG_BYTES`] | cut at a character boundary, then `...[truncated, N bytes]` |
//!
//! The text log format (tracing-subscriber 0.3.23) escapes ESC, BEL and C1 characters in the
//! `message` field only, and newlines nowhere; the JSON format escapes everything. The output of
//! this wrapper holds no control character, so neither format changes it again (nothing is
//! escaped twice). Backslashes are left as they are: the point is that one event stays one line.
//!
//! Formatting writes straight into the log line: nothing is allocated, and text that needs no
//! escaping is written in one piece.

use std::fmt;

/// Longest text written before truncation, in bytes.
pub const MAX_LOG_BYTES: usize = 512;

/// `text`, made safe for a log line (see the module docs).
pub fn log_safe(text: &str) -> LogSafe<'_> {
    LogSafe(text)
}

/// See [`log_safe`].
#[derive(Clone, Copy)]
pub struct LogSafe<'a>(&'a str);

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let shown = if text.len() > MAX_LOG_BYTES {
            let mut end = MAX_LOG_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        } else {
            text
        };
        let mut start = 0;
        for (i, c) in shown.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            f.write_str(&shown[start..i])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
            start = i + c.len_utf8();
        }
        f.write_str(&shown[start..])?;
        if shown.len() < text.len() {
            write!(f, "...[truncated, {} bytes]", text.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        for s in ["", "global.anthropic.claude-sonnet-4-6", "naïve – ok \\n"] {
            assert_eq!(log_safe(s).to_string(), s);
        }
    }

    #[test]
    fn controls_separators_and_overrides_are_escaped() {
        let forged = "claude\n2026-01-01T00:00:00Z  INFO tollgate: forged\r\x1b[31mred\x07\u{85}\u{2028}\u{202e}\x7f\tx";
        let out = log_safe(forged).to_string();
        assert_eq!(
            out,
            "claude\\n2026-01-01T00:00:00Z  INFO tollgate: forged\\r\\u{1b}[31mred\\u{7}\\u{85}\\u{2028}\\u{202e}\\u{7f}\\tx"
        );
        assert!(!out.chars().any(needs_escape), "{out:?}");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_its_length() {
        let long = "é".repeat(5_000);
        let out = log_safe(&long).to_string();
        assert!(out.len() < MAX_LOG_BYTES + 40, "{}", out.len());
        assert!(out.ends_with("...[truncated, 10000 bytes]"), "{out}");
        assert!(out.starts_with(&"é".repeat(MAX_LOG_BYTES / 2)));
        let exact = "a".repeat(MAX_LOG_BYTES);
        assert_eq!(log_safe(&exact).to_string(), exact);
    }
}

//! Text the control plane did not write (data planes' node ids, addresses, build versions, NACK
//! reasons) made safe for a log line: `field = %log_safe(text)` escapes control characters
//! (`\n` as `\n`, ESC as `\u{1b}`, ...), Unicode line separators and bidirectional overrides,
//! and cuts the text at [`MAX_LOG_BYTES`] with `...[truncated, N bytes]`. Nothing is allocated.
//!
//! The data plane has the same wrapper (`tollgate_data_plane::logsafe`); the planes share no
//! code but `tollgate-proto`, so each keeps its copy.

use std::fmt;

/// Longest text written before truncation, in bytes.
pub(crate) const MAX_LOG_BYTES: usize = 512;

/// `text`, made safe for a log line.
pub(crate) fn log_safe(text: &str) -> LogSafe<'_> {
    LogSafe(text)
}

/// See [`log_safe`].
#[derive(Clone, Copy)]
pub(crate) struct LogSafe<'a>(&'a str);

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
        let mut end = text.len().min(MAX_LOG_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let shown = &text[..end];
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
        if end < text.len() {
            write!(f, "...[truncated, {} bytes]", text.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_truncates() {
        assert_eq!(log_safe("dp-1.eu").to_string(), "dp-1.eu");
        assert_eq!(
            log_safe("dp-1\n2026-01-01T00:00:00Z  INFO forged\x1b[2K\u{2028}").to_string(),
            "dp-1\\n2026-01-01T00:00:00Z  INFO forged\\u{1b}[2K\\u{2028}"
        );
        let long = "ü".repeat(1_000);
        let out = log_safe(&long).to_string();
        assert!(out.ends_with("...[truncated, 2000 bytes]"), "{out}");
        assert!(out.len() <= MAX_LOG_BYTES + 30);
    }
}

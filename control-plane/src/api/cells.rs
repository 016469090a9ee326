//! CSV cells shared by every CSV the admin API writes (`/api/spend/export` and the export jobs of
//! `api/exports.rs`).

/// A text as a CSV cell that a spreadsheet shows as text: one starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return would be read as a formula (CSV injection), so it gets a leading
/// `'` (OWASP's advice). Every cell whose text an API user or a client chooses (names, models,
/// request ids, audit actors and targets) goes through it.
pub(crate) fn text(v: Option<&str>) -> String {
    match v {
        Some(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
        Some(s) => s.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn texts_that_spreadsheets_would_run_as_formulas_are_quoted() {
        for (name, cell) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("ci-key", "ci-key"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(text(Some(name)), cell);
        }
        assert_eq!(text(None), "");
    }
}

//! Content logging's rules, shared by both planes: how large a recorded body may be, where it is
//! cut, and which credentials are masked before a body leaves the data plane.
//!
//! Bodies are recorded only for virtual keys (or teams) that turn it on
//! (`VirtualKey.content_logging`). The data plane keeps at most `max_body_bytes` of each body,
//! cuts it at a UTF-8 character boundary ([`cut`]) and masks, in place and byte for byte with
//! `*`, what [`mask_secrets`] recognises (before the cut: [`finish_body`]); headers (where the virtual key and provider
//! credentials travel) are never recorded.
//!
//! | masked | pattern |
//! |---|---|
//! | Tollgate virtual keys | `sk-tg-` and 16 or more base64url characters |
//! | Anthropic and OpenAI API keys | `sk-` (`sk-ant-`, `sk-proj-`, …) and 20 or more `[A-Za-z0-9_-]`, not inside a word (a JSON escape such as `\\n` before it counts as a boundary) |
//! | AWS access key ids | `AKIA`/`ASIA` and 16 `[A-Z0-9]`, as a word (likewise) |
//! | AWS secret access keys named as such | `aws_secret_access_key` (any case), `=`, `:` or quotes, and the 40-character value |
//! | JSON Web Tokens (bearer tokens, ID tokens) | `eyJ…​.eyJ….…` |
//! | PEM private keys | `-----BEGIN … PRIVATE KEY-----` to its `END` line (or the end of what was kept) |
//!
//! Masking is a safety net for credentials pasted into prompts or printed by tools, not a
//! guarantee: a secret in a shape not listed here is recorded as it was sent. Operators who
//! cannot accept that leave content logging off (the default).

use std::sync::LazyLock;

use regex::bytes::Regex;

/// Largest `max_body_bytes` a key or team may set: 1 MiB per body.
pub const MAX_BODY_BYTES: u32 = 1024 * 1024;

/// The `max_body_bytes` of a setting that names none: 64 KiB per body.
pub const DEFAULT_BODY_BYTES: u32 = 64 * 1024;

/// The length of the longest prefix of `bytes` of at most `max` bytes that does not end inside a
/// UTF-8 character (bytes that are not UTF-8 are cut at `max`).
pub fn cut(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    // A character is at most 4 bytes: step back over at most 3 continuation bytes.
    let mut end = max;
    for _ in 0..3 {
        if end == 0 || bytes[end] & 0xC0 != 0x80 {
            break;
        }
        end -= 1;
    }
    if bytes[end] & 0xC0 == 0x80 { max } else { end }
}

/// Every credential shape of the module docs; each alternative has exactly one capture group,
/// the bytes to mask (a key's leading boundary is matched, not masked: the regex engine has no
/// look-behind). A boundary is the start, a character that cannot be part of the key, or a JSON
/// escape (`\n`, `\t`, ...) — a key pasted alone on a line reaches the body as `\nsk-...`.
static SECRETS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:\A|[^A-Za-z0-9_-]|\\[nrtbf])(sk-[A-Za-z0-9_-]{20,})",
        r"|(sk-tg-[A-Za-z0-9_-]{16,})",
        r"|(?:\A|[^A-Za-z0-9]|\\[nrtbf])((?:AKIA|ASIA)[A-Z0-9]{16})",
        r#"|((?i:aws_secret_access_key)["'\\]*\s*[=:]\s*["'\\]*[A-Za-z0-9/+]{40})"#,
        r"|(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)",
        r"|(-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.)*?(?:-----END [A-Z ]*PRIVATE KEY-----|\z))",
    ))
    .expect("the secret patterns compile")
});

/// The start of a credential cut off at the end of the text: masked when the text is the head
/// of a longer body (what is left of a key is still most of the key).
static CUT_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:sk-[A-Za-z0-9_-]*|(?:AKIA|ASIA)[A-Z0-9]*|eyJ[A-Za-z0-9_.-]*",
        r#"|(?i:aws_secret_access_key)["'\\]*\s*[=:]?\s*["'\\]*[A-Za-z0-9/+]*)\z"#,
    ))
    .expect("the cut-secret patterns compile")
});

/// Replaces every byte of every credential [`SECRETS`] recognises (see the module docs) with
/// `*`, in place; the length does not change. With `more` (the text is the head of a longer
/// body), a credential's start at the very end is masked too. Returns how many were masked.
pub fn mask_secrets(bytes: &mut [u8], more: bool) -> usize {
    let mut found = Vec::new();
    for caps in SECRETS.captures_iter(bytes) {
        if let Some(m) = caps.iter().skip(1).flatten().next() {
            found.push(m.range());
        }
    }
    if more && let Some(m) = CUT_SECRET.find(bytes) {
        found.push(m.range());
    }
    for range in &found {
        bytes[range.clone()].fill(b'*');
    }
    found.len()
}

/// How many bytes past the cap a capture keeps so that [`mask_secrets`] sees a credential that
/// straddles the cap whole before the text is cut.
pub const MASK_LOOKAHEAD: usize = 4096;

/// A recorded body: `kept` (at most `max` + [`MASK_LOOKAHEAD`] bytes of a body of `whole`
/// bytes) with its credentials masked, then cut to `max` at a character boundary.
pub fn finish_body(mut kept: Vec<u8>, whole: u64, max: usize) -> Vec<u8> {
    let more = (kept.len() as u64) < whole;
    mask_secrets(&mut kept, more);
    kept.truncate(cut(&kept, max));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        let mut b = text.as_bytes().to_vec();
        mask_secrets(&mut b, false);
        String::from_utf8(b).expect("masking keeps UTF-8")
    }

    #[test]
    fn cut_never_ends_inside_a_character() {
        let text = "aé€😀b".as_bytes(); // 1 + 2 + 3 + 4 + 1 bytes
        assert_eq!(cut(text, 100), text.len());
        assert_eq!(cut(text, 1), 1);
        assert_eq!(cut(text, 2), 1, "é is two bytes");
        assert_eq!(cut(text, 3), 3);
        assert_eq!(cut(text, 5), 3, "€ is three bytes");
        assert_eq!(cut(text, 9), 6, "😀 is four bytes");
        assert_eq!(cut(text, 10), 10);
        assert_eq!(cut(text, 0), 0);
        for max in 0..text.len() {
            let n = cut(text, max);
            assert!(n <= max);
            assert!(
                std::str::from_utf8(&text[..n]).is_ok(),
                "cut at {max} gave {n}"
            );
        }
        // Not UTF-8 (continuation bytes only): cut where asked.
        assert_eq!(cut(&[0x80; 10], 6), 6);
    }

    #[test]
    fn credentials_are_masked_byte_for_byte() {
        let vk = "sk-tg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd";
        let ant = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        let oai = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz";
        let akid = "AKIAIOSFODNN7EXAMPLE";
        let secret = r#"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"#;
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXBhcnQ";
        let pem = "-----BEGIN RSA PRIVATE KEY-----\\nMIIEow...\\n-----END RSA PRIVATE KEY-----";
        for secret in [vk, ant, oai, akid, secret, jwt, pem] {
            let text = format!(r#"{{"content":"my key is {secret} ok"}}"#);
            let out = masked(&text);
            assert_eq!(out.len(), text.len());
            assert!(!out.contains(secret), "{out}");
            assert!(out.contains(&"*".repeat(secret.len())), "{out}");
            assert!(out.starts_with(r#"{"content":"my key is "#) && out.ends_with(r#" ok"}"#));
        }
        // Alone on a line or after a tab in JSON text (`\n`, `\t` escapes), or at the start.
        for secret in [ant, oai, akid] {
            for text in [
                format!(r#"{{"content":"key:\n{secret}\nend"}}"#),
                format!(r#"{{"content":"key:\t{secret}"}}"#),
                secret.to_owned(),
            ] {
                let out = masked(&text);
                assert!(!out.contains(secret), "{out}");
                assert_eq!(out.len(), text.len());
            }
        }
        // A private key cut off before its END line is masked to the end of what was kept.
        let out = masked("x -----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN");
        assert_eq!(out, format!("x {}", "*".repeat(41)));
    }

    /// A key that straddles the cap is masked before the body is cut, and the start of one cut
    /// off at the end of what was kept is masked too.
    #[test]
    fn keys_at_the_cap_are_masked_before_the_cut() {
        let key = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        let body = format!("prompt: {key} and more text after it");
        // Cut inside the key: what is kept of it is masked, whole sizes kept.
        let out = finish_body(body.as_bytes().to_vec(), body.len() as u64, 20);
        assert_eq!(out, b"prompt: ************");
        // The capture kept less than the body, ending inside a key: the start is masked.
        let head = &body.as_bytes()[..30];
        let out = finish_body(head.to_vec(), body.len() as u64, 30);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("prompt: {}", "*".repeat(22))
        );
        // The same text as a whole body is not a cut key: too short to be one, left alone.
        let whole = "prompt: sk-short";
        let out = finish_body(whole.as_bytes().to_vec(), whole.len() as u64, 100);
        assert_eq!(out, whole.as_bytes());
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "disk-usage-monitoring-tool-configuration",
            "task-AbCdEfGhIjKlMnOpQrStUvWxYz",
            "sk-short",
            "AKIA is how AWS access key ids start",
            "the aws_secret_access_key setting",
            "eyJhbGciOi alone",
            r#"{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}]}"#,
        ] {
            assert_eq!(masked(text), text);
        }
    }
}

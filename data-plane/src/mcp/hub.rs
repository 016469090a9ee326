//! The gateway's connections to its MCP servers: one supervisor task per configured server.
//!
//! [`Hub::reconcile`] runs with every applied snapshot: a new server gets a supervisor, a removed
//! one's is stopped (its child process killed), a changed one's is restarted, and an unchanged
//! one keeps its connection across the swap. A supervisor connects (a child process that gets
//! only its configured environment, or Streamable HTTP with its configured headers, values read
//! when it connects), initializes, lists every page of tools, keeps those its `allowed_tools`
//! serve, and publishes them; then it pings the server every `health_interval`, lists the tools
//! again on `notifications/tools/list_changed`, and watches the connection. A failure or a
//! closed connection marks the server failed and it reconnects after an exponential backoff with
//! jitter. Each state change rebuilds the [`Catalog`] requests read (one atomic swap).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rmcp::ServiceExt;
use rmcp::model::{ClientConfig, ClientRequest, Implementation, PingRequest, ProtocolVersion};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, ServerView, State, served_tools};
use super::spec::{INHERITED_ENV, ServerSpec, Transport};

/// How the hub watches its servers.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Between two health checks (MCP `ping`) of a ready server.
    pub health_interval: Duration,
    /// How long a health check may take.
    pub ping_timeout: Duration,
    /// How long connecting may take: process start or HTTP, `initialize`, listing the tools.
    pub connect_timeout: Duration,
    /// The first wait before reconnecting; it doubles with each failure in a row.
    pub backoff_initial: Duration,
    /// The longest wait before reconnecting.
    pub backoff_max: Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            health_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// How often a supervisor looks whether its connection has closed.
const CLOSED_POLL: Duration = Duration::from_millis(250);

/// The wait before retrying a server whose config keeps it from starting (a refused
/// `env.NAME`, a bad URL): a config change restarts it at once anyway.
const CONFIG_ERROR_BACKOFF: Duration = Duration::from_secs(300);

/// How long [`Hub::shutdown`] waits for the supervisors to close their connections.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The connections to every configured MCP server. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: HubSettings,
    servers: Mutex<HashMap<Arc<str>, Entry>>,
    catalog: ArcSwap<Catalog>,
    /// Gives each supervisor a number: a supervisor that was replaced publishes nothing.
    generation: std::sync::atomic::AtomicU64,
    /// Set by [`Hub::shutdown`]: no supervisor starts after it.
    stopped: std::sync::atomic::AtomicBool,
    /// The supervisors [`Hub::reconcile`] stopped, until they end: [`Hub::shutdown`] waits for
    /// them too.
    stopping: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The HTTP client of Streamable HTTP servers (rustls, no redirects: credentials only go to
    /// the configured URL), made when the first one connects.
    http: std::sync::OnceLock<reqwest::Client>,
}

#[derive(Debug)]
struct Entry {
    spec: Arc<ServerSpec>,
    generation: u64,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    view: ServerView,
}

impl Hub {
    pub fn new(settings: HubSettings) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                settings,
                servers: Mutex::default(),
                catalog: ArcSwap::from_pointee(Catalog::default()),
                generation: Default::default(),
                stopped: Default::default(),
                stopping: Mutex::default(),
                http: std::sync::OnceLock::new(),
            }),
        }
    }

    /// What `/mcp` serves now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared.catalog.load_full()
    }

    /// Starts, stops and restarts supervisors so that exactly `specs` run; unchanged servers
    /// keep their connection. Needs a Tokio runtime when something starts.
    pub fn reconcile(&self, specs: &[Arc<ServerSpec>]) {
        let mut servers = self.shared.lock();
        if self
            .shared
            .stopped
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let mut changed = false;
        let mut stopped = Vec::new();
        servers.retain(|name, entry| {
            let keep = specs
                .iter()
                .any(|s| s.name == *name && s.source == entry.spec.source);
            if !keep {
                tracing::info!(server = %name, "MCP server removed or changed; stopping it");
                entry.cancel.cancel();
                stopped.extend(entry.task.take());
                changed = true;
            }
            keep
        });
        if !stopped.is_empty() {
            let mut stopping = self
                .shared
                .stopping
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            stopping.retain(|t| !t.is_finished());
            stopping.append(&mut stopped);
        }
        for spec in specs {
            if servers.contains_key(&spec.name) {
                continue;
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::error!(server = %spec.name, "no async runtime; the MCP server is not started");
                continue;
            };
            let generation = self
                .shared
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let cancel = CancellationToken::new();
            let view = ServerView::new(spec, State::Connecting, Arc::from([]));
            let task = runtime.spawn(supervise(
                Arc::clone(&self.shared),
                Arc::clone(spec),
                generation,
                cancel.clone(),
            ));
            servers.insert(
                Arc::clone(&spec.name),
                Entry {
                    spec: Arc::clone(spec),
                    generation,
                    cancel,
                    task: Some(task),
                    view,
                },
            );
            changed = true;
        }
        if changed {
            self.shared.publish_locked(&servers);
        }
    }

    /// Stops every supervisor and waits (a bounded time) for them to close their connections,
    /// which ends their child processes.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = {
            let mut servers = self.shared.lock();
            self.shared
                .stopped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let mut tasks: Vec<_> = servers
                .values_mut()
                .filter_map(|e| {
                    e.cancel.cancel();
                    e.task.take()
                })
                .collect();
            tasks.append(
                &mut self
                    .shared
                    .stopping
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            servers.clear();
            self.shared.publish_locked(&servers);
            tasks
        };
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(SHUTDOWN_WAIT, all).await.is_err() {
            tracing::warn!("MCP servers did not all stop in time");
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        for entry in self.shared.lock().values() {
            entry.cancel.cancel();
        }
    }
}

impl Shared {
    fn http(&self) -> reqwest::Client {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a supervisor's new view of its server and swaps in a new catalog, unless the
    /// supervisor was replaced meanwhile.
    fn publish(&self, generation: u64, view: ServerView) {
        let mut servers = self.lock();
        let Some(entry) = servers.get_mut(&view.name) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        entry.view = view;
        self.publish_locked(&servers);
    }

    fn publish_locked(&self, servers: &HashMap<Arc<str>, Entry>) {
        let views = servers.values().map(|e| e.view.clone()).collect();
        self.catalog.store(Arc::new(Catalog::build(views)));
    }

    /// The last tools of a server (kept while it is down).
    fn last_tools(&self, name: &str) -> Arc<[super::catalog::ServedTool]> {
        self.lock()
            .get(name)
            .map_or_else(|| Arc::from([]), |e| Arc::clone(&e.view.tools))
    }
}

/// The client side of one connection: it hears `notifications/tools/list_changed`.
#[derive(Debug, Clone)]
struct Upstream {
    tools_changed: Arc<Notify>,
}

impl rmcp::ClientHandler for Upstream {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.tools_changed.notify_one();
        std::future::ready(())
    }

    /// The newest protocol version with the `initialize` handshake: servers answer with theirs
    /// if older, and the session has `ping`, the health check (2026-07-28 has neither).
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            Default::default(),
            Implementation::new("tollgate", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }
}

type Connection = RunningService<RoleClient, Upstream>;

/// How a connection ended.
enum Ended {
    Stopped,
    Failed(String),
}

async fn supervise(
    shared: Arc<Shared>,
    spec: Arc<ServerSpec>,
    generation: u64,
    cancel: CancellationToken,
) {
    let settings = shared.settings.clone();
    let mut failures: u32 = 0;
    loop {
        let tools = shared.last_tools(&spec.name);
        shared.publish(
            generation,
            ServerView::new(&spec, State::Connecting, Arc::clone(&tools)),
        );
        let tools_changed = Arc::new(Notify::new());
        let connecting = tokio::time::timeout(
            settings.connect_timeout,
            connect(&shared, &spec, Arc::clone(&tools_changed)),
        );
        let error = tokio::select! {
            () = cancel.cancelled() => return,
            connected = connecting => match connected {
                Err(_) => format!(
                    "connecting took longer than {} s",
                    settings.connect_timeout.as_secs_f32()
                ),
                Ok(Err(e)) => e,
                Ok(Ok((conn, tools))) => {
                    let up = tokio::time::Instant::now();
                    let ended = run(&shared, &spec, generation, conn, tools, &tools_changed, &cancel).await;
                    // The backoff starts again only after the connection stayed up a while: a
                    // server that initializes and then dies is not restarted at once forever.
                    if up.elapsed() >= settings.backoff_max {
                        failures = 0;
                    }
                    match ended {
                        Ended::Stopped => return,
                        Ended::Failed(e) => e,
                    }
                }
            },
        };
        let error = spec.clean_error(&error);
        tracing::warn!(
            server = %spec.name,
            error = %error,
            failures = failures + 1,
            "MCP server failed; reconnecting after a backoff"
        );
        let mut view = ServerView::new(&spec, State::Failed, shared.last_tools(&spec.name));
        view.error = Some(error.into());
        shared.publish(generation, view);
        let delay = if spec.config_error() {
            CONFIG_ERROR_BACKOFF
        } else {
            backoff(&settings, failures)
        };
        failures = failures.saturating_add(1);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// The wait before reconnection number `failures` (0: the first): `backoff_initial` doubled per
/// failure in a row, at most `backoff_max`, times a jitter in [0.75, 1.25) so a fleet of data
/// planes does not reconnect in step.
fn backoff(settings: &HubSettings, failures: u32) -> Duration {
    let doubled = settings
        .backoff_initial
        .saturating_mul(1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX));
    doubled
        .min(settings.backoff_max)
        .mul_f64(0.75 + 0.5 * rand::random::<f64>())
}

/// Serves one established connection until it fails or the supervisor stops.
async fn run(
    shared: &Shared,
    spec: &Arc<ServerSpec>,
    generation: u64,
    mut conn: Connection,
    tools: Vec<super::catalog::ServedTool>,
    tools_changed: &Notify,
    cancel: &CancellationToken,
) -> Ended {
    let ready = |tools: Vec<super::catalog::ServedTool>, conn: &Connection| {
        let mut view = ServerView::new(spec, State::Ready, tools.into());
        view.peer = Some(conn.peer().clone());
        view
    };
    tracing::info!(server = %spec.name, tools = tools.len(), "MCP server ready");
    shared.publish(generation, ready(tools, &conn));
    let settings = &shared.settings;
    let mut health = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.health_interval,
        settings.health_interval,
    );
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = tokio::time::interval(CLOSED_POLL);
    let failed = loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = conn.close_with_timeout(Duration::from_secs(8)).await;
                return Ended::Stopped;
            }
            _ = health.tick() => {
                let ping = conn.peer().send_request(ClientRequest::PingRequest(PingRequest::default()));
                // Raced against the stop: a server that does not answer does not delay it.
                let Some(answer) = cancel
                    .run_until_cancelled(tokio::time::timeout(settings.ping_timeout, ping))
                    .await
                else {
                    let _ = conn.close_with_timeout(Duration::from_secs(8)).await;
                    return Ended::Stopped;
                };
                match answer {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break format!("health check failed: {e}"),
                    Err(_) => break format!(
                        "health check: no answer to ping within {} s",
                        settings.ping_timeout.as_secs_f32()
                    ),
                }
            }
            _ = closed.tick() => {
                if conn.peer().is_transport_closed() || conn.is_closed() {
                    break "the connection to the server closed".to_owned();
                }
            }
            () = tools_changed.notified() => {
                let list = tokio::time::timeout(settings.connect_timeout, conn.peer().list_all_tools());
                let Some(listed) = cancel.run_until_cancelled(list).await else {
                    let _ = conn.close_with_timeout(Duration::from_secs(8)).await;
                    return Ended::Stopped;
                };
                match listed {
                    Ok(Ok(list)) => {
                        let tools = served_tools(spec, list);
                        tracing::info!(server = %spec.name, tools = tools.len(), "MCP server's tools changed");
                        shared.publish(generation, ready(tools, &conn));
                    }
                    Ok(Err(e)) => break format!("listing the changed tools failed: {e}"),
                    Err(_) => break "listing the changed tools timed out".to_owned(),
                }
            }
        }
    };
    // Close the connection (a child process is ended) before reconnecting.
    let _ = conn.close_with_timeout(Duration::from_secs(8)).await;
    Ended::Failed(failed)
}

/// Starts the server's transport, initializes and lists its tools.
async fn connect(
    shared: &Shared,
    spec: &Arc<ServerSpec>,
    tools_changed: Arc<Notify>,
) -> Result<(Connection, Vec<super::catalog::ServedTool>), String> {
    let handler = Upstream { tools_changed };
    let conn = match &spec.transport {
        Err(e) => return Err(format!("configuration: {e}")),
        Ok(Transport::Stdio {
            command,
            args,
            env,
            cwd,
        }) => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).env_clear();
            for name in INHERITED_ENV {
                if let Some(v) = std::env::var_os(name) {
                    cmd.env(name, v);
                }
            }
            for (name, value) in env {
                let value = value.resolve().map_err(|e| format!("env {name}: {e}"))?;
                cmd.env(name, &*value);
            }
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            let mut wrapped = process_wrap::tokio::CommandWrap::from(cmd);
            // Its own process group, so ending it ends what it started (`npx` runs `node`).
            #[cfg(unix)]
            wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
            wrapped.wrap(process_wrap::tokio::KillOnDrop);
            let (process, stderr) = TokioChildProcess::builder(wrapped)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {command}: {e}"))?;
            if let Some(stderr) = stderr {
                tokio::spawn(log_stderr(Arc::clone(spec), spec.secrets(), stderr));
            }
            handler
                .serve(process)
                .await
                .map_err(|e| format!("initialize failed: {e}"))?
        }
        Ok(Transport::Http { url, headers }) => {
            let client = super::http_client::HeaderClient::new(shared.http(), headers);
            // A header that cannot be produced fails the connection with its reason.
            client
                .with_headers(HashMap::new())
                .map_err(|e| e.to_string())?;
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            let transport = StreamableHttpClientTransport::with_client(client, config);
            handler
                .serve(transport)
                .await
                .map_err(|e| format!("initialize failed: {e}"))?
        }
    };
    match conn.peer().list_all_tools().await {
        Ok(tools) => Ok((conn, served_tools(spec, tools))),
        Err(e) => {
            let mut conn = conn;
            let _ = conn.close_with_timeout(Duration::from_secs(8)).await;
            Err(format!("listing the tools failed: {e}"))
        }
    }
}

/// A stdio server's standard error, logged at `debug` a chunk at a time (escaped, cut).
/// The server's configured secret values (`secrets`) are masked: it may echo its environment.
async fn log_stderr(
    spec: Arc<ServerSpec>,
    secrets: Vec<Arc<str>>,
    mut stderr: tokio::process::ChildStderr,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let text =
                    spec.clean_error_with(String::from_utf8_lossy(&buf[..n]).trim_end(), &secrets);
                tracing::debug!(server = %spec.name, stderr = %text, "MCP server stderr");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_leave_out_the_url_query() {
        let spec = ServerSpec::compile(
            &tollgate_proto::config::v1::McpServer {
                name: "remote".into(),
                transport: Some(tollgate_proto::config::v1::mcp_server::Transport::Http(
                    tollgate_proto::config::v1::McpHttp {
                        url: "https://mcp.example.com/mcp?api_key=s3cr3t&x=1".into(),
                        headers: Default::default(),
                    },
                )),
                ..Default::default()
            },
            &Default::default(),
        );
        let error = spec.clean_error(
            "error sending request for url (https://mcp.example.com/mcp?api_key=s3cr3t&x=1)",
        );
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(error.contains("https://mcp.example.com/mcp?"), "{error}");
    }

    #[test]
    fn only_config_errors_are_config_errors() {
        let server = |url: &str, env: &str| {
            let mut headers = std::collections::HashMap::new();
            headers.insert(
                "x-token".to_owned(),
                tollgate_proto::config::v1::ValueRef {
                    source: Some(tollgate_proto::config::v1::value_ref::Source::Env(
                        env.into(),
                    )),
                },
            );
            ServerSpec::compile(
                &tollgate_proto::config::v1::McpServer {
                    name: "remote".into(),
                    transport: Some(tollgate_proto::config::v1::mcp_server::Transport::Http(
                        tollgate_proto::config::v1::McpHttp {
                            url: url.into(),
                            headers,
                        },
                    )),
                    ..Default::default()
                },
                &tollgate_proto::env::EnvAllowlist::with_extra(["MCP_TOKEN"]).expect("allowlist"),
            )
        };
        assert!(!server("https://mcp.example.com/mcp", "MCP_TOKEN").config_error());
        assert!(server("https://mcp.example.com/mcp", "TOLLGATE_SECRET").config_error());
        assert!(server("ftp://mcp.example.com/mcp", "MCP_TOKEN").config_error());
        assert!(CONFIG_ERROR_BACKOFF >= Duration::from_secs(300));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let s = HubSettings {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            ..HubSettings::default()
        };
        for (failures, base) in [(0, 100), (1, 200), (3, 800), (5, 2000), (40, 2000)] {
            let d = backoff(&s, failures).as_millis();
            let base = base as f64;
            assert!(
                (d as f64) >= base * 0.75 - 1.0 && (d as f64) < base * 1.25 + 1.0,
                "{failures}: {d}"
            );
        }
    }
}

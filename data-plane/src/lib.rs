//! # tollgate-data-plane
//!
//! Serves the inference API: authenticates virtual keys, routes models to providers, signs and
//! forwards requests, relays streams as they arrive, and reports usage. It holds configuration
//! only as compiled snapshots ([`runtime::Runtime`]) received from the control plane and **never
//! opens a database connection**.
//!
//! | module | role |
//! |---|---|
//! | [`runtime`] | snapshot -> validated runtime; atomic swap ([`runtime::RuntimeHandle`]) |
//! | [`routing`] | model name -> provider, upstream id, provider key (pure) |
//! | [`signing`] | SigV4 (aws-sigv4) and Bedrock credentials (static, env, default chain, STS) |
//! | [`server`] | axum routes of the inference API and the request flow |
//! | [`providers`] | the Bedrock, Anthropic, Vertex AI and OpenAI-compatible upstream calls (I/O around `tollgate-protocol`) |
//! | [`upstream`] | the pooled HTTP client for provider calls (hyper-util, rustls, no redirects) |
//! | [`usage`] | one usage record per request, logged and handed to a bounded sink |
//! | [`refusals`] | requests refused before a virtual key is known: counted, not usage |
//! | [`metrics`] | every Prometheus metric of the data plane: names, labels, per-request series, `/metrics` collectors |
//! | [`key_info`] | `GET /v1/key`: the presented key's owner, expiry, providers, model patterns and budgets left (this node's count) |
//! | [`model_id`] | the shape a requested model id must have (400 otherwise) |
//! | [`logsafe`] | client- and upstream-controlled text made safe for log lines |
//! | [`source`] | split deployment: the control plane's config stream, disk cache, reconnects |
//! | [`reporter`] | split deployment: usage batches to the control plane, disk spool, resends |
//! | [`limits`] | budgets, rate limits and concurrency: the engine's counters, admission and settlement (pure) |
//! | [`admission`] | a request's estimate checked against [`limits`] after routing; refusals in the client's shape |
//! | [`grpc`] | connection options, join-token auth and backoff shared by `source` and `reporter` |
//! | [`error`] | the one error type of the inference surface (Anthropic-shaped) |
//! | [`otel`] | OpenTelemetry traces over OTLP (off by default): a span per request and per upstream attempt |
//! | [`value`] | literal / `env.NAME` values resolved at use, under the env allowlist |
//! | [`probe`] | provider-key probes the control plane asks for: one minimal call to one key through the serving path |
//! | [`mcp`] | the MCP gateway at `/mcp`: connections to the configured MCP servers, their tools served per key |

pub mod admission;
pub mod bedrock_ingress;
pub mod content;
pub mod error;
pub mod google;
pub mod grpc;
pub mod health;
pub mod key_info;
pub mod limits;
pub mod logsafe;
pub mod mcp;
pub mod metrics;
pub mod models;
pub mod openai_ingress;
pub mod otel;
pub mod probe;
pub use tollgate_proto::model_id;
pub mod providers;
pub mod refusals;
pub mod reporter;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod signing;
pub mod source;
#[cfg(test)]
mod testing;
pub mod upstream;
pub mod usage;
pub mod value;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tollgate_proto::config::v1::Snapshot;
use tollgate_proto::env::EnvAllowlist;

use crate::runtime::RuntimeHandle;

/// Default cap on request bodies (Anthropic's own edge limit for Messages is 32 MB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default silence after which a keep-alive `ping` event is sent on a stream.
pub const DEFAULT_SSE_PING_INTERVAL: Duration = Duration::from_secs(10);

/// Process-level settings of a data plane (not part of the pushed config).
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub max_body_bytes: usize,
    pub sse_ping_interval: Duration,
    /// The environment variables `env.NAME` references may name (checked when a snapshot is
    /// compiled; see [`value`]).
    pub env_allow: EnvAllowlist,
    /// Starts the spans of requests when traces are exported ([`otel`]); `None`: off, and the
    /// request path does nothing for traces.
    pub tracing: Option<otel::Tracer>,
    /// Bytes of recorded bodies (content logging) held in memory on their way to the control
    /// plane, at most ([`content::ContentBudget`]).
    pub content_max_held_bytes: usize,
    /// How the MCP gateway watches its servers (health checks, reconnects).
    pub mcp: mcp::HubSettings,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sse_ping_interval: DEFAULT_SSE_PING_INTERVAL,
            env_allow: EnvAllowlist::default(),
            tracing: None,
            content_max_held_bytes: content::DEFAULT_MAX_HELD_BYTES,
            mcp: mcp::HubSettings::default(),
        }
    }
}

/// A data plane: the current runtime (providers hold their upstream clients) and the usage sink.
#[derive(Debug)]
pub struct DataPlane {
    pub config: DataPlaneConfig,
    runtime: RuntimeHandle,
    pub usage: usage::UsageSink,
    link: source::ConfigLink,
    refusals: refusals::Refusals,
    metrics: metrics::Metrics,
    probes: probe::Probes,
    content: Arc<content::ContentBudget>,
    mcp: mcp::Mcp,
}

impl DataPlane {
    pub fn new(config: DataPlaneConfig, usage: usage::UsageSink) -> Arc<DataPlane> {
        Arc::new(DataPlane {
            content: content::ContentBudget::new(config.content_max_held_bytes),
            mcp: mcp::Mcp::new(config.mcp.clone()),
            runtime: RuntimeHandle::new(config.env_allow.clone()),
            config,
            usage,
            link: source::ConfigLink::default(),
            refusals: refusals::Refusals::default(),
            metrics: metrics::Metrics::default(),
            probes: probe::Probes::default(),
        })
    }

    /// Requests refused before a virtual key was established (they are not usage).
    pub fn refusals(&self) -> &refusals::Refusals {
        &self.refusals
    }

    /// The bound of recorded bodies in memory (content logging).
    pub fn content_budget(&self) -> &Arc<content::ContentBudget> {
        &self.content
    }

    /// Its per-request metrics (every usage record adds to them; see [`metrics`]).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    pub fn runtime(&self) -> &RuntimeHandle {
        &self.runtime
    }

    /// The MCP gateway: its servers' connections and the `/mcp` service.
    pub fn mcp(&self) -> &mcp::Mcp {
        &self.mcp
    }

    /// Compiles and publishes a snapshot (see [`RuntimeHandle::apply`]), then makes the MCP
    /// gateway's connections match the config now served. Returns the version now served.
    pub fn apply(&self, snapshot: &Snapshot) -> Result<u64, runtime::SnapshotError> {
        let version = self.runtime.apply(snapshot)?;
        if let Some(rt) = self.runtime.load() {
            self.mcp.reconcile(&rt.mcp_servers);
        }
        Ok(version)
    }

    /// Stops the MCP gateway: answers in progress end, servers' connections close and their
    /// child processes end. For graceful shutdown, after the listener stopped.
    pub async fn shutdown(&self) {
        self.mcp.shutdown().await;
    }

    /// What this node holds of its limits now, as `LimitsReport` messages naming `grant_seq`
    /// (the last grants applied): every counter in use when `full`, else those that changed
    /// since last listed (see [`limits::Engine::report`]). One empty final message before any
    /// config.
    pub fn limits_report(
        &self,
        grant_seq: u64,
        full: bool,
    ) -> Vec<tollgate_proto::config::v1::LimitsReport> {
        let report = self
            .runtime
            .load()
            .map(|rt| {
                rt.limits
                    .report(limits::Clock::now_unix_ms(&limits::SystemClock), full)
            })
            .unwrap_or(limits::UseReport {
                full,
                ..limits::UseReport::default()
            });
        limits::wire::report_to_pb(&report, grant_seq)
    }

    /// This node's requests in flight per level, as `LimitsReport` messages without counters
    /// (all-in-one: one node holds every limit whole, so only the usage endpoints need this).
    pub fn in_flight_report(&self) -> Vec<tollgate_proto::config::v1::LimitsReport> {
        let report = self
            .runtime
            .load()
            .map(|rt| rt.limits.in_flight_report())
            .unwrap_or_default();
        limits::wire::report_to_pb(&report, 0)
    }

    /// The provider keys outlier detection has out of service now (for the fleet view).
    pub fn ejected_keys(&self) -> Vec<tollgate_proto::config::v1::EjectedKey> {
        self.runtime
            .load()
            .map(|rt| health::out_of_service(&rt, health::now_ms()))
            .unwrap_or_default()
    }

    /// Applies allowances the control plane granted; returns how many named a counter this
    /// node has (others are ignored: their key or limit is gone, or not here yet).
    pub fn apply_grants(&self, grants: &tollgate_proto::config::v1::Grants) -> usize {
        let Some(rt) = self.runtime.load() else {
            return 0;
        };
        grants
            .grants
            .iter()
            .filter(|g| {
                g.counter
                    .as_ref()
                    .and_then(limits::wire::counter_from_pb)
                    .is_some_and(|cell| {
                        rt.limits
                            .grant(&cell, g.window_start_unix_ms, g.amount, g.fleet_exhausted)
                    })
            })
            .count()
    }

    /// Where the configuration comes from and whether that path is up.
    pub fn config_link(&self) -> &source::ConfigLink {
        &self.link
    }

    /// Follows a channel of snapshots (in-process from the control plane, or fed by a gRPC
    /// stream), applying each one. The current snapshot is applied before this returns, so a
    /// listener started afterwards never answers "not ready". A snapshot that fails validation
    /// is logged and skipped; the last good one keeps serving.
    pub fn follow(
        self: &Arc<Self>,
        mut rx: watch::Receiver<Arc<Snapshot>>,
    ) -> tokio::task::JoinHandle<()> {
        let dp = Arc::clone(self);
        dp.link.set_source(source::ConfigSource::InProcess);
        dp.link.set_connected(true);
        let current = rx.borrow_and_update().clone();
        dp.apply_logged(&current);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let snapshot = rx.borrow_and_update().clone();
                dp.apply_logged(&snapshot);
            }
            dp.link.set_connected(false);
        })
    }

    fn apply_logged(&self, snapshot: &Snapshot) {
        match self.apply(snapshot) {
            Ok(version) => tracing::info!(version, "config applied"),
            Err(e) => tracing::error!(
                version = snapshot.version,
                error = %e,
                "config snapshot rejected; still serving the last good one"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{snapshot, wait_until};

    /// `follow` applies the channel's current snapshot before it returns (the all-in-one starts
    /// its listener right after, and must not answer "not ready"), then follows changes.
    #[tokio::test]
    async fn follow_applies_the_current_snapshot_before_returning() {
        let dp = DataPlane::new(DataPlaneConfig::default(), usage::UsageSink::log_only());
        let (tx, rx) = watch::channel(Arc::new(snapshot(7)));
        let task = dp.follow(rx);
        // Nothing has yielded to the follower task yet.
        assert_eq!(dp.runtime().load().map(|r| r.version), Some(7));
        tx.send(Arc::new(snapshot(8))).expect("send");
        wait_until("version 8 applied", || {
            dp.runtime().load().map(|r| r.version) == Some(8)
        })
        .await;
        drop(tx);
        task.await.expect("the follower ends with its channel");
        assert!(!dp.config_link().connected());
    }
}

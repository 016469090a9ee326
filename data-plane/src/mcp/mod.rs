//! The MCP gateway: the tools of the configured MCP servers served to virtual keys at `/mcp`.
//!
//! | module | role |
//! |---|---|
//! | [`spec`] | the snapshot's `mcp_servers` and a key's `mcp_access`, compiled (pure) |
//! | [`catalog`] | what `/mcp` serves now: servers, states, tools by served name; lookups (pure) |
//! | [`hub`] | one supervisor per server: connect, list tools, health checks, reconnects |
//! | `http_client` | the HTTP client of Streamable HTTP servers: their headers, read at each request |
//! | `serve` | the `/mcp` endpoint (rmcp's Streamable HTTP server, stateless) and `/v1/mcp/servers` |
//!
//! The servers come with the snapshot: [`DataPlane::apply`](crate::DataPlane::apply) compiles
//! them with the runtime and hands them to [`Mcp::reconcile`], in every role. Served names are
//! `<server>__<tool>` ([`tollgate_proto::mcp::served_name`]: at most 49 characters, so Claude
//! Code's `mcp__tollgate__` prefix keeps them within the 64 Bedrock accepts).
//!
//! **Hosts.** rmcp's Streamable HTTP server accepts only loopback `Host` headers by default: a
//! guard against DNS rebinding for servers that run on a developer's machine without
//! authentication. The gateway is reached under public hostnames and every request must carry a
//! virtual key, which a page rebinding a name cannot know, and `/mcp` sends no CORS headers, so a
//! browser cannot send one cross-origin either: the check is off (`disable_allowed_hosts`), and
//! `Origin` is not checked either (rmcp's default), for the same reason.
//!
//! **Stateless.** Data planes are scaled horizontally behind load balancers, so `/mcp` keeps no
//! session (no `Mcp-Session-Id`): any node answers any request, `GET` (the server-to-client
//! stream) and `DELETE` are 405, and answers are JSON when the tool sends nothing before its
//! result.

pub mod catalog;
mod http_client;
pub mod hub;
mod serve;
pub mod spec;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use tokio_util::sync::CancellationToken;

pub use catalog::Catalog;
pub use hub::HubSettings;
pub use spec::{Access, AccessCache, ServerSpec};

/// Largest `/mcp` request body (a JSON-RPC message: tool arguments can be files).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A data plane's MCP gateway: the hub and the `/mcp` service.
pub struct Mcp {
    hub: hub::Hub,
    http: StreamableHttpService<serve::Gateway, NeverSessionManager>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Mcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcp")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Mcp {
    pub fn new(settings: HubSettings) -> Mcp {
        let cancel = CancellationToken::new();
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            // See the module docs ("Hosts").
            .disable_allowed_hosts()
            .with_max_request_body_bytes(MAX_REQUEST_BYTES)
            .with_cancellation_token(cancel.clone());
        Mcp {
            hub: hub::Hub::new(settings),
            http: StreamableHttpService::new(
                || Ok(serve::Gateway),
                Arc::new(NeverSessionManager::default()),
                config,
            ),
            cancel,
        }
    }

    /// What `/mcp` serves now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.hub.catalog()
    }

    /// Makes the connections match a newly applied config (see [`hub::Hub::reconcile`]).
    pub fn reconcile(&self, servers: &[Arc<ServerSpec>]) {
        self.hub.reconcile(servers);
    }

    /// Ends `/mcp` answers in progress and every connection (child processes are ended).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.hub.shutdown().await;
    }

    fn http(&self) -> &StreamableHttpService<serve::Gateway, NeverSessionManager> {
        &self.http
    }
}

/// The routes of the MCP gateway on the inference router.
pub(crate) fn routes() -> axum::Router<Arc<crate::DataPlane>> {
    axum::Router::new()
        .route("/mcp", axum::routing::any(serve::endpoint))
        .route("/v1/mcp/servers", axum::routing::get(serve::servers))
}

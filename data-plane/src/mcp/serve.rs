//! The `/mcp` endpoint (Streamable HTTP through rmcp's server, stateless, JSON answers) and
//! `GET /v1/mcp/servers`.
//!
//! Every request is authenticated before rmcp sees it, exactly as inference requests are
//! (`server::authenticate`: the same headers in the same order; 401 with `WWW-Authenticate:
//! Bearer`, 503 before any config); the runtime and key are put in the request's extensions,
//! where the handler ([`Gateway`]) finds them through the `http::request::Parts` rmcp passes on.
//! Each `tools/call` ends in one usage record with `mcp` set, one log event and one count in
//! `tollgate_mcp_tool_calls_total`; none of them is a model request (no `Metrics::observe`, no
//! limits).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, Implementation, ListToolsResult,
    PaginatedRequestParams, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer, ServiceError};
use tollgate_proto::usage::v1::{McpCall, UsageRecord};

use super::catalog::{Lookup, State as ServerState, now_unix_ms};
use crate::DataPlane;
use crate::error::ProxyError;
use crate::logsafe::log_safe;
use crate::runtime::{Runtime, VirtualKey};
use crate::server::{authenticate, new_request_id, not_ready};

/// The one message for a tool that does not exist and one the key may not use: a key learns
/// nothing about tools it may not call.
fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("Unknown tool: {}", cut(name, 200)), None)
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// Who is calling: put in the request's extensions by [`endpoint`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    dp: Arc<DataPlane>,
    vk: Arc<VirtualKey>,
    /// Kept so the request is served under the config its key was checked against.
    _rt: Arc<Runtime>,
}

/// `/mcp` (every method: rmcp answers 405 to those a stateless server does not serve).
pub(crate) async fn endpoint(State(dp): State<Arc<DataPlane>>, mut req: Request) -> Response {
    let (rt, vk) = match caller(&dp, req.headers()) {
        Ok(caller) => caller,
        Err(e) => return refuse(&dp, e),
    };
    req.extensions_mut().insert(Caller {
        dp: Arc::clone(&dp),
        vk,
        _rt: rt,
    });
    dp.mcp().http().handle(req).await.map(axum::body::Body::new)
}

/// `GET /v1/mcp/servers`: the servers, their state and how many tools the key may use now.
pub(crate) async fn servers(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    let (_rt, vk) = match caller(&dp, req.headers()) {
        Ok(caller) => caller,
        Err(e) => return refuse(&dp, e),
    };
    let catalog = dp.mcp().catalog();
    Json(catalog.status(&vk.mcp_access)).into_response()
}

/// The runtime and virtual key of a request.
fn caller(
    dp: &DataPlane,
    headers: &http::HeaderMap,
) -> Result<(Arc<Runtime>, Arc<VirtualKey>), ProxyError> {
    let Some(rt) = dp.runtime().load() else {
        return Err(not_ready());
    };
    let vk = authenticate(&rt, headers, now_unix_ms())?;
    Ok((rt, vk))
}

/// A request refused before a virtual key was established: counted and logged at `debug`, not
/// usage (as every such refusal). A 401 says how to authenticate (`WWW-Authenticate: Bearer`).
fn refuse(dp: &DataPlane, e: ProxyError) -> Response {
    let request_id = new_request_id();
    dp.refusals().count(e.class);
    tracing::debug!(
        request_id,
        status = e.status.as_u16(),
        error_class = e.class,
        "MCP request refused before a virtual key was established"
    );
    let auth = e.status == http::StatusCode::UNAUTHORIZED;
    let mut resp = e.into_response_with(&request_id);
    if auth {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The MCP server `/mcp` is: the tools of the configured servers, per key.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gateway;

fn caller_of(context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))
}

impl rmcp::ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("tollgate", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Tollgate's MCP gateway: the tools of the MCP servers this virtual key may use, \
             named <server>__<tool>."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller_of(&context)?;
        let tools = caller.dp.mcp().catalog().list(&caller.vk.mcp_access);
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller_of(&context)?;
        let mut call = ToolCall::start(&caller);
        let catalog = caller.dp.mcp().catalog();
        let (server, tool, peer, timeout, spec) =
            match catalog.lookup(&request.name, &caller.vk.mcp_access) {
                Lookup::Unknown { server } => {
                    let tool = match server {
                        Some(s) => request.name.get(s.len() + 2..).unwrap_or_default(),
                        None => &request.name,
                    };
                    call.finish(server.unwrap_or_default(), tool, 404, "unknown_tool");
                    return Err(unknown_tool(&request.name));
                }
                Lookup::NotAllowed(server, tool) => {
                    call.finish(&server.name, &tool.upstream, 403, "not_allowed");
                    return Err(unknown_tool(&request.name));
                }
                Lookup::Found(server, tool) => match (&server.peer, server.state) {
                    (Some(peer), ServerState::Ready) => (
                        Arc::clone(&server.name),
                        Arc::clone(&tool.upstream),
                        peer.clone(),
                        server.call_timeout,
                        Arc::clone(&server.spec),
                    ),
                    _ => {
                        call.finish(&server.name, &tool.upstream, 502, "unreachable");
                        return Err(ErrorData::internal_error(
                            format!("the MCP server {} is not available now", server.name),
                            None,
                        ));
                    }
                },
            };
        drop(catalog);
        call.target = Some((Arc::clone(&server), Arc::clone(&tool)));
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = request.arguments;
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Ok(Ok(mut result)) => {
                // A server on an older protocol version leaves `resultType` out; clients on
                // 2026-07-28 need it (rmcp removes it again for older clients).
                result.result_type.get_or_insert(ResultType::COMPLETE);
                let class = if result.is_error == Some(true) {
                    "tool_error"
                } else {
                    ""
                };
                call.finish(&server, &tool, 200, class);
                Ok(result.into())
            }
            // The server's own JSON-RPC error goes back as it is; invalid params (the client's
            // own arguments) or an unknown method is the client's fault, not the server's.
            Ok(Err(ServiceError::McpError(e))) => {
                if matches!(
                    e.code,
                    ErrorCode::INVALID_PARAMS | ErrorCode::METHOD_NOT_FOUND
                ) {
                    call.finish(&server, &tool, 400, "invalid_arguments");
                } else {
                    call.finish(&server, &tool, 502, "upstream_error");
                }
                Err(e)
            }
            Ok(Err(e)) => {
                tracing::info!(
                    request_id = %call.request_id,
                    server = %server,
                    error = %spec.clean_error(&e.to_string()),
                    "MCP tool call failed upstream"
                );
                let message = format!(
                    "the MCP server {server} did not answer (request id {})",
                    call.request_id
                );
                call.finish(&server, &tool, 502, "unreachable");
                Err(ErrorData::internal_error(message, None))
            }
            Err(_) => {
                call.finish(&server, &tool, 504, "timeout");
                Err(ErrorData::internal_error(
                    format!("the tool call timed out after {} ms", timeout.as_millis()),
                    None,
                ))
            }
        }
    }
}

/// One `tools/call` being served: ends in its record, also when the client goes away while
/// it runs (dropped: 499 `client_closed`).
struct ToolCall<'a> {
    caller: &'a Caller,
    request_id: String,
    started: Instant,
    started_at_unix_ms: i64,
    /// The server and tool it was sent to, once known.
    target: Option<(Arc<str>, Arc<str>)>,
    done: bool,
}

impl<'a> ToolCall<'a> {
    fn start(caller: &'a Caller) -> ToolCall<'a> {
        ToolCall {
            caller,
            request_id: new_request_id(),
            started: Instant::now(),
            started_at_unix_ms: now_unix_ms(),
            target: None,
            done: false,
        }
    }

    fn finish(mut self, server: &str, tool: &str, status: u16, error_class: &str) {
        self.record(server, tool, status, error_class);
    }

    /// The call's usage record (billed as a model request's), its log event and its count.
    fn record(&mut self, server: &str, tool: &str, status: u16, error_class: &str) {
        self.done = true;
        let vk = &self.caller.vk;
        let latency_ms = u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        // Names from outside (an unknown tool's) are cut: they are stored with the record.
        let tool = cut(tool, 256);
        tracing::info!(
            target: "tollgate::usage",
            request_id = %self.request_id,
            virtual_key_id = %vk.id,
            server = %log_safe(server),
            tool = %log_safe(tool),
            status,
            error_class,
            latency_ms,
            "MCP tool call"
        );
        let dp = &self.caller.dp;
        dp.metrics().observe_mcp_call(server, status);
        let mut record = UsageRecord {
            request_id: std::mem::take(&mut self.request_id),
            started_at_unix_ms: self.started_at_unix_ms,
            status: u32::from(status),
            error_class: error_class.to_owned(),
            latency_ms,
            mcp: Some(McpCall {
                server: server.to_owned(),
                tool: tool.to_owned(),
            }),
            ..Default::default()
        };
        vk.bill(&mut record);
        dp.usage.push(record);
    }
}

impl Drop for ToolCall<'_> {
    fn drop(&mut self) {
        if !self.done {
            let (server, tool) = self.target.take().unwrap_or_else(|| ("".into(), "".into()));
            self.record(&server, &tool, 499, "client_closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::UsageSink;
    use crate::{DataPlaneConfig, testing};

    /// A call whose handler is dropped before it ends (the client went away) is recorded as
    /// 499 `client_closed`, with the tool it was sent to; a finished one is recorded once.
    #[tokio::test]
    async fn a_dropped_call_is_recorded_as_client_closed() {
        let (sink, mut usage) = UsageSink::channel(8);
        let dp = DataPlane::new(DataPlaneConfig::default(), sink);
        dp.apply(&testing::snapshot(1)).expect("applies");
        let rt = dp.runtime().load().expect("runtime");
        let vk = Arc::clone(rt.virtual_key(testing::VIRTUAL_KEY).expect("the key"));
        let caller = Caller {
            dp: Arc::clone(&dp),
            vk,
            _rt: rt,
        };
        let mut call = ToolCall::start(&caller);
        call.target = Some(("alpha".into(), "slow".into()));
        drop(call);
        let r = usage.try_recv().expect("a record");
        assert_eq!((r.status, r.error_class.as_str()), (499, "client_closed"));
        let mcp = r.mcp.expect("mcp");
        assert_eq!((mcp.server.as_str(), mcp.tool.as_str()), ("alpha", "slow"));
        assert!(r.request_id.starts_with("req_tg_"));

        ToolCall::start(&caller).finish("alpha", "echo", 200, "");
        assert_eq!(usage.try_recv().expect("a record").status, 200);
        assert!(usage.try_recv().is_err(), "one record per call");
    }
}

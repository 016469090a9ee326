//! The MCP gateway in process: the data plane's router on loopback, an rmcp client in front of
//! it, and behind it an MCP server written here (rmcp, Streamable HTTP on loopback) and a stdio
//! server (a small Python script speaking newline-delimited JSON-RPC).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode, header};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock, ErrorCode,
    Implementation, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::env::EnvAllowlist;
use tollgate_proto::usage::v1::UsageRecord;
use tower::ServiceExt as _;

use super::HubSettings;
use super::catalog::State;
use crate::testing::wait_until;
use crate::usage::UsageSink;
use crate::{DataPlane, DataPlaneConfig};

const KEY_ALL: &str = "sk-tg-mcp-all-tools";
const KEY_SOME: &str = "sk-tg-mcp-some-tools";
const UPSTREAM_TOKEN: &str = "upstream-secret-123";

// ---------------------------------------------------------------------------------------------
// The upstream MCP server over Streamable HTTP.

/// Tools `echo`, `add`, `fail`, `slow`, `hidden`, listed two per page; `echo` answers with the
/// `x-upstream-token` header it received.
#[derive(Clone, Default)]
struct Upstream;

fn tool(name: &str) -> Tool {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"text": {"type": "string"}, "a": {"type": "number"}, "b": {"type": "number"}}
    });
    let mut t = Tool::new(
        name.to_owned(),
        format!("The {name} tool."),
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    );
    t.title = Some(format!("{name} title"));
    t
}

const UPSTREAM_TOOLS: [&str; 5] = ["echo", "add", "fail", "slow", "hidden"];

impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let page: usize = request
            .and_then(|r| r.cursor)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let tools: Vec<Tool> = UPSTREAM_TOOLS
            .iter()
            .skip(page * 2)
            .take(2)
            .map(|n| tool(n))
            .collect();
        let mut result = ListToolsResult::with_all_items(tools);
        if (page + 1) * 2 < UPSTREAM_TOOLS.len() {
            result.next_cursor = Some((page + 1).to_string());
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let token = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("x-upstream-token"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let args = request.arguments.unwrap_or_default();
        let num = |k: &str| {
            args.get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        // `echo` with `headers`: the names of the HTTP headers the call came with.
        let header_names = context
            .extensions
            .get::<http::request::Parts>()
            .map(|p| {
                let mut names: Vec<&str> = p.headers.keys().map(http::HeaderName::as_str).collect();
                names.sort_unstable();
                names.join(",")
            })
            .unwrap_or_default();
        let result = match &*request.name {
            "echo" if args.contains_key("headers") => {
                CallToolResult::success(vec![ContentBlock::text(header_names)])
            }
            "echo" => {
                let text = args.get("text").and_then(|v| v.as_str()).unwrap_or("");
                CallToolResult::success(vec![ContentBlock::text(format!("{text}|{token}"))])
            }
            "add" if args.values().any(|v| !v.is_number()) => {
                return Err(ErrorData::invalid_params("a and b must be numbers", None));
            }
            "add" => CallToolResult::structured(serde_json::json!({"sum": num("a") + num("b")})),
            "fail" if args.contains_key("crash") => {
                return Err(ErrorData::internal_error("it crashed", None));
            }
            "fail" => CallToolResult::error(vec![ContentBlock::text("it broke")]),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                CallToolResult::success(vec![ContentBlock::text("late")])
            }
            _ => return Err(ErrorData::invalid_params("no such tool upstream", None)),
        };
        Ok(result.into())
    }
}

/// The upstream server on `listener` until the token is cancelled (then its connections close
/// and the port is free).
fn serve_upstream(
    listener: tokio::net::TcpListener,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let ct = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_cancellation_token(ct.clone());
    let service: StreamableHttpService<Upstream, NeverSessionManager> =
        StreamableHttpService::new(|| Ok(Upstream), Default::default(), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    let stop = ct.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled_owned().await })
            .await;
    });
    (ct, task)
}

async fn start_upstream() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (ct, task) = serve_upstream(listener);
    (addr, ct, task)
}

// ---------------------------------------------------------------------------------------------
// The stdio server.

/// An MCP server over stdio: tools `env` (its environment as JSON), `echo`, `pid`, and `grow`,
/// which adds a tool `extra` and says so (`notifications/tools/list_changed`). With `START_LOG`
/// set it appends its start time to that file; `MODE=exit_after_list` exits after listing its
/// tools, `MODE=hang_ping` never answers a ping.
const STDIO_SERVER: &str = r#"
import json, os, sys, time

if os.environ.get("START_LOG"):
    with open(os.environ["START_LOG"], "a") as f:
        f.write("%f %d\n" % (time.time(), os.getpid()))
MODE = os.environ.get("MODE", "")

def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

NAMES = ["env", "echo", "pid", "grow"]

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    m = json.loads(line)
    mid, method = m.get("id"), m.get("method")
    if mid is None or method is None:
        continue
    params = m.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "py", "version": "1"}}
    elif method == "ping":
        if MODE == "hang_ping":
            time.sleep(3600)
        result = {}
    elif method == "tools/list":
        result = {"tools": [
            {"name": n, "description": "the " + n + " tool", "inputSchema": {"type": "object"}}
            for n in NAMES
        ]}
    elif method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "env":
            text = json.dumps(dict(os.environ))
        elif name == "echo":
            text = args.get("text", "")
        elif name == "grow":
            NAMES.append("extra")
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            text = "grown"
        else:
            text = str(os.getpid())
        result = {"content": [{"type": "text", "text": text}]}
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no " + method}})
        continue
    send({"jsonrpc": "2.0", "id": mid, "result": result})
    if method == "tools/list" and MODE == "exit_after_list":
        sys.exit(0)
"#;

/// The Python interpreter itself (not a version manager's shim, which adds its own variables to
/// the environment the test inspects).
fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

fn stdio_script() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.py");
    std::fs::write(&path, STDIO_SERVER).expect("write the script");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

// ---------------------------------------------------------------------------------------------
// The gateway.

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

fn http_server(name: &str, addr: SocketAddr) -> pb::McpServer {
    pb::McpServer {
        id: format!("id-{name}"),
        name: name.into(),
        transport: Some(pb::mcp_server::Transport::Http(pb::McpHttp {
            url: format!("http://{addr}/mcp"),
            headers: [("x-upstream-token".to_owned(), lit(UPSTREAM_TOKEN))].into(),
        })),
        allowed_tools: vec!["echo".into(), "add".into(), "fail".into(), "slow".into()],
        call_timeout_ms: 0,
    }
}

fn stdio_server(name: &str, script: &str, env: &[(&str, pb::ValueRef)]) -> pb::McpServer {
    pb::McpServer {
        id: format!("id-{name}"),
        name: name.into(),
        transport: Some(pb::mcp_server::Transport::Stdio(pb::McpStdio {
            command: python().into(),
            args: vec![script.to_owned()],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            cwd: String::new(),
        })),
        ..Default::default()
    }
}

fn key(id: &str, value: &str, access: &[&[&str]]) -> pb::VirtualKey {
    pb::VirtualKey {
        id: id.into(),
        name: id.into(),
        key_sha256: Sha256::digest(value).to_vec().into(),
        active: true,
        team_id: "team-1".into(),
        user_id: "user-1".into(),
        mcp_access: access
            .iter()
            .map(|e| pb::McpAccess {
                tools: e.iter().map(|s| (*s).to_owned()).collect(),
            })
            .collect(),
        ..Default::default()
    }
}

fn snapshot(version: u64, servers: Vec<pb::McpServer>) -> pb::Snapshot {
    pb::Snapshot {
        version,
        virtual_keys: vec![
            key("vk-all", KEY_ALL, &[]),
            // The key's own allowlist and its team's: a tool must pass both.
            key(
                "vk-some",
                KEY_SOME,
                &[&["alpha__*", "local__*"], &["*__echo", "local__env"]],
            ),
        ],
        teams: vec![pb::Team {
            id: "team-1".into(),
            name: "team".into(),
            customer_id: "cust-1".into(),
            limits: None,
        }],
        customers: vec![pb::Customer {
            id: "cust-1".into(),
            name: "customer".into(),
            limits: None,
        }],
        mcp_servers: servers,
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

struct Gateway {
    dp: Arc<DataPlane>,
    usage: mpsc::Receiver<UsageRecord>,
    addr: SocketAddr,
}

fn fast() -> HubSettings {
    HubSettings {
        health_interval: Duration::from_millis(150),
        ping_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
    }
}

async fn gateway(env_allow: EnvAllowlist) -> Gateway {
    gateway_with(env_allow, fast()).await
}

async fn gateway_with(env_allow: EnvAllowlist, mcp: HubSettings) -> Gateway {
    let (sink, usage) = UsageSink::channel(1024);
    let dp = DataPlane::new(
        DataPlaneConfig {
            env_allow,
            mcp,
            ..DataPlaneConfig::default()
        },
        sink,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = crate::server::router(Arc::clone(&dp));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Gateway { dp, usage, addr }
}

impl Gateway {
    fn state(&self, server: &str) -> Option<State> {
        self.dp.mcp().catalog().server(server).map(|s| s.state)
    }

    async fn ready(&self, server: &str) {
        wait_until(&format!("{server} ready"), || {
            self.state(server) == Some(State::Ready)
        })
        .await;
    }

    /// An rmcp client of `/mcp` presenting `key`, speaking `version`.
    async fn client(
        &self,
        key: &str,
        version: ProtocolVersion,
    ) -> RunningService<RoleClient, ClientConfig> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", self.addr))
                .auth_header(key);
        let transport = StreamableHttpClientTransport::from_config(config);
        ClientConfig::new(Default::default(), Implementation::new("test-client", "1"))
            .with_protocol_version(version)
            .serve(transport)
            .await
            .expect("the client connects to /mcp")
    }

    fn records(&mut self) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        while let Ok(r) = self.usage.try_recv() {
            out.push(r);
        }
        out
    }

    async fn get(
        &self,
        path: &str,
        key: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let mut req = Request::get(path).header(header::HOST, "gateway.example.com");
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let resp = crate::server::router(Arc::clone(&self.dp))
            .oneshot(req.body(axum::body::Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or_default(),
        )
    }
}

fn names(tools: &[Tool]) -> Vec<String> {
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(name.to_owned());
    p.arguments = args.as_object().cloned();
    p
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

fn mcp_error(e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Tools of both kinds of server listed and called through `/mcp` under prefixed names, with the
/// upstream's definitions unchanged; the key's and its team's allowlists both applied; refused
/// and unknown tools get the same error; every call is a usage record and a count.
#[tokio::test]
async fn tools_are_served_per_key_and_every_call_is_recorded() {
    let (upstream, _up, _task) = start_upstream().await;
    let (_dir, script) = stdio_script();
    let mut gw = gateway(EnvAllowlist::default()).await;
    gw.dp
        .apply(&snapshot(
            1,
            vec![
                http_server("alpha", upstream),
                stdio_server("local", &script, &[]),
            ],
        ))
        .expect("applies");
    gw.ready("alpha").await;
    gw.ready("local").await;

    // A client speaking the version Claude Code speaks, and one speaking the newest.
    let all = gw.client(KEY_ALL, ProtocolVersion::V_2025_06_18).await;
    let listed = all.list_all_tools().await.expect("tools/list");
    assert_eq!(
        names(&listed),
        [
            "alpha__add",
            "alpha__echo",
            "alpha__fail",
            "alpha__slow",
            "local__echo",
            "local__env",
            "local__grow",
            "local__pid"
        ],
        "every page of the upstream's tools, less those its allowed_tools leave out"
    );
    let echo = listed
        .iter()
        .find(|t| t.name == "alpha__echo")
        .expect("alpha__echo");
    let original = tool("echo");
    assert_eq!(echo.description, original.description);
    assert_eq!(echo.input_schema, original.input_schema);
    assert_eq!(echo.title, original.title);
    let modern = gw.client(KEY_ALL, ProtocolVersion::LATEST).await;
    assert_eq!(
        names(&modern.list_all_tools().await.expect("tools/list")),
        names(&listed)
    );
    // A 2026-07-28 client gets `resultType` even from a server on an older version (the stdio
    // one leaves it out).
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"local__echo",
        "arguments":{"text":"modern"},"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
        "io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let req = Request::post("/mcp")
        .header(header::HOST, "gateway.example.com")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "local__echo")
        .header(header::AUTHORIZATION, format!("Bearer {KEY_ALL}"))
        .body(axum::body::Body::from(body))
        .expect("request");
    let (status, _, body) = send(&gw.dp, req).await;
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["resultType"], "complete", "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "modern", "{body}");

    let some = gw.client(KEY_SOME, ProtocolVersion::V_2025_06_18).await;
    let listed = some.list_all_tools().await.expect("tools/list");
    assert_eq!(names(&listed), ["alpha__echo", "local__echo", "local__env"]);
    gw.records();

    // Calls: the upstream sees the gateway's credential header, never the client's key.
    let r = all
        .call_tool(call("alpha__echo", serde_json::json!({"text": "hi"})))
        .await
        .expect("alpha__echo");
    assert_eq!(text(&r), format!("hi|{UPSTREAM_TOKEN}"));
    let r = all
        .call_tool(call("alpha__echo", serde_json::json!({"headers": true})))
        .await
        .expect("alpha__echo");
    let received = text(&r);
    let received: Vec<&str> = received.split(',').collect();
    assert!(received.contains(&"x-upstream-token"), "{received:?}");
    for name in ["authorization", "x-api-key", "x-bf-vk"] {
        assert!(
            !received.contains(&name),
            "{name} reached the upstream: {received:?}"
        );
    }
    let r = all
        .call_tool(call("alpha__add", serde_json::json!({"a": 2, "b": 3})))
        .await
        .expect("alpha__add");
    assert_eq!(r.structured_content, Some(serde_json::json!({"sum": 5.0})));
    let r = all
        .call_tool(call("alpha__fail", serde_json::json!({})))
        .await
        .expect("alpha__fail");
    assert_eq!(r.is_error, Some(true));
    assert_eq!(text(&r), "it broke");
    let r = some
        .call_tool(call(
            "local__echo",
            serde_json::json!({"text": "over stdio"}),
        ))
        .await
        .expect("local__echo");
    assert_eq!(text(&r), "over stdio");

    // Refused: a tool the team's entry leaves out, one the server's allowed_tools leave out,
    // one that does not exist. One shape of error for all.
    let refused = mcp_error(
        some.call_tool(call("alpha__add", serde_json::json!({"a": 1})))
            .await
            .expect_err("not allowed"),
    );
    let hidden = mcp_error(
        all.call_tool(call("alpha__hidden", serde_json::json!({})))
            .await
            .expect_err("not served"),
    );
    let unknown = mcp_error(
        some.call_tool(call("alpha__nope", serde_json::json!({})))
            .await
            .expect_err("unknown"),
    );
    let nowhere = mcp_error(
        some.call_tool(call("nothing", serde_json::json!({})))
            .await
            .expect_err("unknown"),
    );
    for (e, name) in [
        (&refused, "alpha__add"),
        (&hidden, "alpha__hidden"),
        (&unknown, "alpha__nope"),
        (&nowhere, "nothing"),
    ] {
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{name}");
        assert_eq!(e.message, format!("Unknown tool: {name}"));
        assert_eq!(e.data, None);
    }

    let records = gw.records();
    let summary: Vec<(String, String, u32, String, String)> = records
        .iter()
        .map(|r| {
            let mcp = r.mcp.clone().expect("an MCP record");
            (
                mcp.server,
                mcp.tool,
                r.status,
                r.error_class.clone(),
                r.virtual_key_id.clone(),
            )
        })
        .collect();
    let row = |s: &str, t: &str, status: u32, class: &str, key: &str| {
        (
            s.to_owned(),
            t.to_owned(),
            status,
            class.to_owned(),
            key.to_owned(),
        )
    };
    assert_eq!(
        summary,
        [
            row("alpha", "echo", 200, "", "vk-all"),
            row("alpha", "echo", 200, "", "vk-all"),
            row("alpha", "add", 200, "", "vk-all"),
            row("alpha", "fail", 200, "tool_error", "vk-all"),
            row("local", "echo", 200, "", "vk-some"),
            row("alpha", "add", 403, "not_allowed", "vk-some"),
            row("alpha", "hidden", 404, "unknown_tool", "vk-all"),
            row("alpha", "nope", 404, "unknown_tool", "vk-some"),
            row("", "nothing", 404, "unknown_tool", "vk-some"),
        ]
    );
    let mut ids = std::collections::HashSet::new();
    for r in &records {
        assert!(r.request_id.starts_with("req_tg_"), "{}", r.request_id);
        assert!(
            ids.insert(r.request_id.clone()),
            "a fresh request id per call"
        );
        assert_eq!(
            (
                r.team_id.as_str(),
                r.customer_id.as_str(),
                r.user_id.as_str()
            ),
            ("team-1", "cust-1", "user-1")
        );
        assert!(r.started_at_unix_ms > 0);
        assert!(r.provider.is_empty() && r.model_requested.is_empty());
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.cost_nano_usd),
            (0, 0, None)
        );
    }

    // Counted as tool calls, not as model requests.
    let mut registry = prometheus_client::registry::Registry::default();
    crate::metrics::register(&gw.dp, &mut registry);
    let text = crate::metrics::encode(&registry);
    for line in [
        r#"tollgate_mcp_tool_calls_total{server="alpha",status="200"} 4"#,
        r#"tollgate_mcp_tool_calls_total{server="alpha",status="403"} 1"#,
        r#"tollgate_mcp_tool_calls_total{server="alpha",status="404"} 2"#,
        r#"tollgate_mcp_tool_calls_total{server="none",status="404"} 1"#,
        r#"tollgate_mcp_tool_calls_total{server="local",status="200"} 2"#,
        r#"tollgate_mcp_server_up{server="alpha"} 1"#,
        r#"tollgate_mcp_server_up{server="local"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains("tollgate_requests_total{"), "{text}");

    // `/v1/mcp/servers` counts what each key may use.
    let (status, _, body) = gw.get("/v1/mcp/servers", Some(KEY_SOME)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"servers": [
            {"name": "alpha", "state": "ready", "tools": 1, "error": null},
            {"name": "local", "state": "ready", "tools": 2, "error": null},
        ]})
    );
    let (_, _, body) = gw.get("/v1/mcp/servers", Some(KEY_ALL)).await;
    assert_eq!(body["servers"][0]["tools"], 4);
    gw.dp.shutdown().await;
}

/// A call past the server's deadline is a 504 record and an error to the client.
#[tokio::test]
async fn a_call_past_its_deadline_is_a_504() {
    let (upstream, _up, _task) = start_upstream().await;
    let mut gw = gateway(EnvAllowlist::default()).await;
    let mut server = http_server("alpha", upstream);
    server.call_timeout_ms = 300;
    gw.dp.apply(&snapshot(1, vec![server])).expect("applies");
    gw.ready("alpha").await;
    let client = gw.client(KEY_ALL, ProtocolVersion::V_2025_06_18).await;
    let started = std::time::Instant::now();
    let e = mcp_error(
        client
            .call_tool(call("alpha__slow", serde_json::json!({})))
            .await
            .expect_err("times out"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.message.contains("timed out after 300 ms"),
        "{}",
        e.message
    );
    let records = gw.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].status, records[0].error_class.as_str()),
        (504, "timeout")
    );
    assert!(records[0].latency_ms >= 300, "{}", records[0].latency_ms);

    // A client that goes away while its call runs: the call is recorded all the same.
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__slow","arguments":{}}}"#;
    let mut slow = http_server("alpha", upstream);
    slow.call_timeout_ms = 10_000;
    gw.dp.apply(&snapshot(2, vec![slow])).expect("applies");
    gw.ready("alpha").await;
    let abandoned = reqwest::Client::new()
        .post(format!("http://{}/mcp", gw.addr))
        .bearer_auth(KEY_ALL)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(body)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(abandoned.is_err(), "the client gave up first");
    let mut closed = Vec::new();
    wait_until("the abandoned call recorded", || {
        closed.extend(gw.records());
        !closed.is_empty()
    })
    .await;
    assert_eq!(closed.len(), 1);
    // rmcp's stateless JSON server does not cancel the handler when its client disconnects:
    // the call runs to its end at the server (3 s) and is recorded with its outcome. (499
    // `client_closed`, for a handler dropped mid-call, is unit-tested in `serve`.)
    assert_eq!(
        (closed[0].status, closed[0].error_class.as_str()),
        (200, ""),
        "{:?}",
        closed[0]
    );
    assert!(closed[0].latency_ms >= 3000, "{:?}", closed[0]);
    assert_eq!(
        closed[0].mcp.as_ref().map(|m| m.tool.as_str()),
        Some("slow")
    );
    gw.dp.shutdown().await;
}

/// An upstream that goes away is marked failed (visible in `/v1/mcp/servers`, its tools no
/// longer listed, calls answered 502); once it is back the gateway reconnects by itself.
#[tokio::test]
async fn a_server_that_goes_away_is_failed_then_reconnected() {
    let (upstream, up, task) = start_upstream().await;
    let mut gw = gateway(EnvAllowlist::default()).await;
    gw.dp
        .apply(&snapshot(1, vec![http_server("alpha", upstream)]))
        .expect("applies");
    gw.ready("alpha").await;
    let client = gw.client(KEY_ALL, ProtocolVersion::V_2025_06_18).await;
    assert_eq!(client.list_all_tools().await.expect("tools").len(), 4);

    up.cancel();
    task.await.expect("the upstream stopped");
    wait_until("alpha failed", || gw.state("alpha") == Some(State::Failed)).await;
    let (status, _, body) = gw.get("/v1/mcp/servers", Some(KEY_ALL)).await;
    assert_eq!(status, StatusCode::OK);
    let alpha = &body["servers"][0];
    assert_eq!(alpha["state"], "failed", "{body}");
    assert_eq!(alpha["tools"], 0);
    assert!(
        alpha["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(client.list_all_tools().await.expect("tools").is_empty());
    let e = mcp_error(
        client
            .call_tool(call("alpha__echo", serde_json::json!({"text": "x"})))
            .await
            .expect_err("unreachable"),
    );
    assert!(e.message.contains("not available"), "{}", e.message);
    let records = gw.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].status, records[0].error_class.as_str()),
        (502, "unreachable")
    );
    let mut registry = prometheus_client::registry::Registry::default();
    crate::metrics::register(&gw.dp, &mut registry);
    assert!(
        crate::metrics::encode(&registry).contains(r#"tollgate_mcp_server_up{server="alpha"} 0"#)
    );

    // Back on the same port.
    let listener = tokio::net::TcpListener::bind(upstream)
        .await
        .expect("rebind");
    let (_up, _task) = serve_upstream(listener);
    gw.ready("alpha").await;
    let r = client
        .call_tool(call("alpha__echo", serde_json::json!({"text": "again"})))
        .await
        .expect("called after the reconnect");
    assert_eq!(text(&r), format!("again|{UPSTREAM_TOKEN}"));
    gw.dp.shutdown().await;
}

/// A stdio server gets only its configured environment (literals and allowed `env.NAME`
/// references) plus PATH, HOME and LANG; a reference outside the env allowlist keeps it from
/// starting, with the reason shown; removing it from the config ends its process; unchanged
/// servers keep their process across config changes.
#[tokio::test]
async fn stdio_servers_get_only_their_environment_and_end_with_their_config() {
    let (_dir, script) = stdio_script();
    let allow = EnvAllowlist::with_extra(["HOME"]).expect("allowlist");
    let gw = gateway(allow).await;
    let env = [
        ("LITERAL_TOKEN", lit("tok-literal")),
        ("FROM_HOME", env_ref("HOME")),
    ];
    let refused = [("SECRET", env_ref("TOLLGATE_ADMIN_TOKEN"))];
    gw.dp
        .apply(&snapshot(
            1,
            vec![
                stdio_server("local", &script, &env),
                stdio_server("refused", &script, &refused),
            ],
        ))
        .expect("applies");
    gw.ready("local").await;
    let client = gw.client(KEY_ALL, ProtocolVersion::V_2025_06_18).await;
    let r = client
        .call_tool(call("local__env", serde_json::json!({})))
        .await
        .expect("local__env");
    let seen: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text(&r)).expect("the environment as JSON");
    assert_eq!(seen["LITERAL_TOKEN"], "tok-literal");
    assert_eq!(
        seen["FROM_HOME"].as_str(),
        std::env::var("HOME").ok().as_deref()
    );
    for name in seen.keys() {
        assert!(
            [
                "LITERAL_TOKEN",
                "FROM_HOME",
                "PATH",
                "HOME",
                "LANG",
                "LC_CTYPE"
            ]
            .contains(&name.as_str()),
            "{name} leaked into the child's environment"
        );
    }

    wait_until("refused failed", || {
        gw.state("refused") == Some(State::Failed)
    })
    .await;
    let (_, _, body) = gw.get("/v1/mcp/servers", Some(KEY_ALL)).await;
    let error = body["servers"][1]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(body["servers"][1]["name"], "refused");
    assert!(error.contains("env.TOLLGATE_ADMIN_TOKEN"), "{error}");
    assert!(error.contains("not allowed"), "{error}");

    let pid: i32 = text(
        &client
            .call_tool(call("local__pid", serde_json::json!({})))
            .await
            .expect("local__pid"),
    )
    .parse()
    .expect("a pid");
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid));
    // A config change elsewhere keeps the process.
    gw.dp
        .apply(&snapshot(2, vec![stdio_server("local", &script, &env)]))
        .expect("applies");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: i32 = text(
        &client
            .call_tool(call("local__pid", serde_json::json!({})))
            .await
            .expect("local__pid"),
    )
    .parse()
    .expect("a pid");
    assert_eq!(again, pid, "an unchanged server keeps its process");
    // Changed: restarted with its new config, the old process ended.
    let changed = [("LITERAL_TOKEN", lit("tok-rotated"))];
    gw.dp
        .apply(&snapshot(3, vec![stdio_server("local", &script, &changed)]))
        .expect("applies");
    wait_until("the old child ended", || !alive(pid) || zombie(pid)).await;
    gw.ready("local").await;
    let r = client
        .call_tool(call("local__env", serde_json::json!({})))
        .await
        .expect("local__env");
    let seen: serde_json::Value = serde_json::from_str(&text(&r)).expect("json");
    assert_eq!(seen["LITERAL_TOKEN"], "tok-rotated");
    assert!(seen.get("FROM_HOME").is_none());
    let pid: i32 = text(
        &client
            .call_tool(call("local__pid", serde_json::json!({})))
            .await
            .expect("local__pid"),
    )
    .parse()
    .expect("a pid");
    // Removed: the process ends.
    gw.dp.apply(&snapshot(4, vec![])).expect("applies");
    assert!(gw.dp.mcp().catalog().servers().is_empty());
    wait_until("the child ended", || !alive(pid) || zombie(pid)).await;
    // After shutdown, a config starts nothing.
    gw.dp.shutdown().await;
    gw.dp
        .apply(&snapshot(5, vec![stdio_server("local", &script, &env)]))
        .expect("applies");
    assert!(gw.dp.mcp().catalog().servers().is_empty());
}

/// Whether `pid` has exited but not been reaped yet.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(true)
}

/// A stdio server whose process dies is restarted.
#[tokio::test]
async fn a_stdio_server_that_dies_is_restarted() {
    let (_dir, script) = stdio_script();
    let gw = gateway(EnvAllowlist::default()).await;
    gw.dp
        .apply(&snapshot(1, vec![stdio_server("local", &script, &[])]))
        .expect("applies");
    gw.ready("local").await;
    let client = gw.client(KEY_ALL, ProtocolVersion::V_2025_06_18).await;
    let pid = |r: CallToolResult| text(&r).parse::<i32>().expect("a pid");
    let first = pid(client
        .call_tool(call("local__pid", serde_json::json!({})))
        .await
        .expect("pid"));
    let killed = std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    wait_until("local failed", || gw.state("local") != Some(State::Ready)).await;
    gw.ready("local").await;
    let second = pid(client
        .call_tool(call("local__pid", serde_json::json!({})))
        .await
        .expect("pid"));
    assert_ne!(first, second);

    // The server says its tools changed: they are listed again.
    let listed = |tools: Vec<Tool>| names(&tools).contains(&"local__extra".to_owned());
    assert!(!listed(client.list_all_tools().await.expect("tools")));
    client
        .call_tool(call("local__grow", serde_json::json!({})))
        .await
        .expect("grow");
    wait_until("local__extra served", || {
        gw.dp
            .mcp()
            .catalog()
            .server("local")
            .is_some_and(|s| s.tools.iter().any(|t| &*t.served == "local__extra"))
    })
    .await;
    assert!(listed(client.list_all_tools().await.expect("tools")));

    // Shutdown ends the process.
    let last = pid(client
        .call_tool(call("local__pid", serde_json::json!({})))
        .await
        .expect("pid"));
    gw.dp.shutdown().await;
    let gone = !std::path::Path::new(&format!("/proc/{last}")).exists() || zombie(last);
    assert!(gone, "the stdio server's process ended with the data plane");
}

/// `/mcp` and `/v1/mcp/servers` authenticate like inference requests: 401 with a JSON body and
/// `WWW-Authenticate: Bearer` for a missing, unknown or inactive key, 503 before any config.
#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let gw = gateway(EnvAllowlist::default()).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post = |key: Option<(&str, &str)>, body: &str| {
        let mut req = Request::post("/mcp")
            .header(header::HOST, "gateway.example.com")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some((name, value)) = key {
            req = req.header(name, value);
        }
        req.body(axum::body::Body::from(body.to_owned()))
            .expect("request")
    };
    let send = |req| send(&gw.dp, req);
    let (status, _, body) = send(post(Some(("x-api-key", KEY_ALL)), init)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no config yet");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["type"], "overloaded_error");

    let mut snap = snapshot(1, vec![]);
    snap.virtual_keys.push(pb::VirtualKey {
        active: false,
        ..key("vk-off", "sk-tg-mcp-inactive", &[])
    });
    gw.dp.apply(&snap).expect("applies");
    for presented in [
        None,
        Some(("authorization", "Bearer sk-tg-unknown")),
        Some(("x-api-key", "sk-tg-mcp-inactive")),
        // The first header present wins: a bad x-api-key is not saved by a good bearer.
        Some(("x-bf-vk", "sk-tg-unknown")),
    ] {
        let (status, headers, body) = send(post(presented, init)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    }
    let mut req = post(Some(("x-api-key", "sk-tg-unknown")), init);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer sk-tg-mcp-all-tools"),
    );
    assert_eq!(
        send(req).await.0,
        StatusCode::UNAUTHORIZED,
        "x-api-key wins"
    );
    assert_eq!(gw.dp.refusals().get("auth"), 5);
    let (status, headers, _) = gw.get("/v1/mcp/servers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");

    // With a key: a JSON answer, no session.
    let (status, headers, body) = send(post(
        Some(("authorization", "Bearer sk-tg-mcp-all-tools")),
        init,
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/json")
    );
    assert!(!headers.contains_key("mcp-session-id"), "stateless");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["result"]["serverInfo"]["name"], "tollgate");
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    assert!(
        body["result"]["capabilities"]["tools"].is_object(),
        "{body}"
    );
    // Stateless: a request needs no handshake before it (README's curl example).
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let (status, _, body) = send(post(Some(("x-api-key", KEY_ALL)), list)).await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["id"], 2);
    assert_eq!(body["result"]["tools"], serde_json::json!([]), "{body}");
}

async fn send(
    dp: &Arc<DataPlane>,
    req: Request<axum::body::Body>,
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let resp = crate::server::router(Arc::clone(dp))
        .oneshot(req)
        .await
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, headers, body)
}

/// Bad JSON-RPC is answered with rmcp's errors; a body over the bound is refused unread; GET
/// (no server-to-client stream without sessions) is 405.
#[tokio::test]
async fn bad_requests_get_protocol_errors() {
    let gw = gateway(EnvAllowlist::default()).await;
    gw.dp.apply(&snapshot(1, vec![])).expect("applies");
    let send = |method: http::Method, body: Vec<u8>| async {
        let req = Request::builder()
            .method(method)
            .uri("/mcp")
            .header(header::HOST, "gateway.example.com")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::AUTHORIZATION, format!("Bearer {KEY_ALL}"))
            .body(axum::body::Body::from(body))
            .expect("request");
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            crate::server::router(Arc::clone(&gw.dp)).oneshot(req),
        )
        .await
        .expect("answered, not hung")
        .expect("response");
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, body) = send(http::Method::POST, b"{not json".to_vec()).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = send(
        http::Method::POST,
        br#"{"jsonrpc":"2.0","id":1,"method":"nope/nope"}"#.to_vec(),
    )
    .await;
    // An unknown method: a JSON-RPC error answer (HTTP 200), -32601, its id echoed.
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(answer["jsonrpc"], "2.0", "{body}");
    assert_eq!(answer["id"], 1, "{body}");
    assert_eq!(answer["error"]["code"], -32601, "{body}");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"t":"{}"}}}}}}"#,
        "a".repeat(super::MAX_REQUEST_BYTES)
    );
    let (status, _) = send(http::Method::POST, big.into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = send(http::Method::GET, Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Neither the data plane's nor the runtime's `Debug` prints an MCP server's literal header or
/// env value, nor its URL's query (they hold credentials).
#[tokio::test]
async fn debug_never_prints_an_mcp_secret() {
    let gw = gateway(EnvAllowlist::default()).await;
    let mut remote = http_server("remote", "127.0.0.1:9".parse().expect("addr"));
    if let Some(pb::mcp_server::Transport::Http(h)) = &mut remote.transport {
        h.url = "http://127.0.0.1:9/mcp?api_key=query-secret-456".into();
    }
    let local = stdio_server(
        "local",
        "/nonexistent.py",
        &[("TOKEN", lit("env-secret-789"))],
    );
    gw.dp
        .apply(&snapshot(1, vec![remote, local]))
        .expect("applies");
    let rt = gw.dp.runtime().load().expect("runtime");
    for debug in [format!("{:?}", gw.dp), format!("{rt:?}")] {
        assert!(
            debug.contains("remote") && debug.contains("local"),
            "{debug}"
        );
        for secret in [UPSTREAM_TOKEN, "query-secret-456", "env-secret-789"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
}

/// The times (seconds) a stdio server with `START_LOG` started, and its process ids.
fn starts(log: &std::path::Path) -> Vec<(f64, i32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (time, pid) = l.split_once(' ')?;
            Some((time.parse().ok()?, pid.parse().ok()?))
        })
        .collect()
}

/// A server that initializes and lists its tools, then exits, is restarted after a growing
/// backoff: connecting is not a success that starts the backoff again.
#[tokio::test]
async fn a_server_that_dies_after_connecting_backs_off() {
    let (dir, script) = stdio_script();
    let log = dir.path().join("starts");
    let settings = HubSettings {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_secs(2),
        ..fast()
    };
    let gw = gateway_with(EnvAllowlist::default(), settings).await;
    let env = [
        ("START_LOG", lit(&log.to_string_lossy())),
        ("MODE", lit("exit_after_list")),
    ];
    gw.dp
        .apply(&snapshot(1, vec![stdio_server("local", &script, &env)]))
        .expect("applies");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starts = starts(&log);
    gw.dp.shutdown().await;
    // Backoffs 50, 100, 200, 400, 800, 1600 ms (±25 %): at most 7 starts in 3 s; restarting
    // after 50 ms each time would start it more than 10 times.
    assert!(
        (3..=7).contains(&starts.len()),
        "{} starts: {starts:?}",
        starts.len()
    );
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps[gaps.len() - 1] > 2.0 * gaps[0], "{gaps:?}");
}

/// Whether process `pid` has ended.
fn ended(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(pid)
}

/// A server that never answers a ping does not hold up its removal nor the shutdown: its
/// process ends promptly, not after the ping timeout.
#[tokio::test]
async fn a_server_hanging_on_ping_is_stopped_promptly() {
    let (dir, script) = stdio_script();
    let settings = HubSettings {
        health_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_secs(60),
        ..fast()
    };
    let gw = gateway_with(EnvAllowlist::default(), settings).await;
    let log = |name: &str| dir.path().join(name);
    let server = |name: &str| {
        let env = [
            ("MODE", lit("hang_ping")),
            ("START_LOG", lit(&log(name).to_string_lossy())),
        ];
        stdio_server(name, &script, &env)
    };
    gw.dp
        .apply(&snapshot(1, vec![server("local"), server("other")]))
        .expect("applies");
    gw.ready("local").await;
    gw.ready("other").await;
    let pid = |name: &str| starts(&log(name)).first().expect("started").1;
    let (local, other) = (pid("local"), pid("other"));
    // Their first pings are sent now, and never answered.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!ended(local) && !ended(other));

    // Removed: its process ends within seconds.
    gw.dp
        .apply(&snapshot(2, vec![server("other")]))
        .expect("applies");
    let started = std::time::Instant::now();
    while !ended(local) && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended(local), "the removed server's process still runs");

    // Shutdown: the same.
    let started = std::time::Instant::now();
    gw.dp.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        ended(other),
        "the server's process ended with the data plane"
    );
}

/// An upstream's JSON-RPC error goes back as it is; one about the client's own arguments
/// (invalid params) is recorded as 400 `invalid_arguments`, any other as 502 `upstream_error`.
#[tokio::test]
async fn upstream_errors_are_recorded_by_whose_fault_they_are() {
    let (upstream, _up, _task) = start_upstream().await;
    let mut gw = gateway(EnvAllowlist::default()).await;
    gw.dp
        .apply(&snapshot(1, vec![http_server("alpha", upstream)]))
        .expect("applies");
    gw.ready("alpha").await;
    let client = gw.client(KEY_ALL, ProtocolVersion::V_2025_06_18).await;
    let e = mcp_error(
        client
            .call_tool(call("alpha__add", serde_json::json!({"a": "one"})))
            .await
            .expect_err("invalid params"),
    );
    assert_eq!(
        (e.code, &*e.message),
        (ErrorCode::INVALID_PARAMS, "a and b must be numbers")
    );
    let e = mcp_error(
        client
            .call_tool(call("alpha__fail", serde_json::json!({"crash": true})))
            .await
            .expect_err("internal error"),
    );
    assert_eq!(
        (e.code, &*e.message),
        (ErrorCode::INTERNAL_ERROR, "it crashed")
    );
    let rows: Vec<(u32, String)> = gw
        .records()
        .into_iter()
        .map(|r| (r.status, r.error_class))
        .collect();
    assert_eq!(
        rows,
        [
            (400, "invalid_arguments".to_owned()),
            (502, "upstream_error".to_owned())
        ]
    );
}

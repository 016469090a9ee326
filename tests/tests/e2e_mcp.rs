//! End to end: the MCP gateway (`/mcp`) of the real binary, in front of the reference MCP server
//! (`@modelcontextprotocol/server-everything` from npm, over stdio and over Streamable HTTP),
//! driven by the official MCP Python SDK (`mcp` from PyPI).
//!
//! * Both servers are configured through `/api/mcp/servers`; their tools are listed under
//!   `<server>__<tool>` and called through the gateway.
//! * The stdio server runs with only the environment it was configured with: a literal, an
//!   `env.NAME` reference resolved from the gateway's environment, and nothing else of the
//!   gateway's (checked with the server's own `get-env` tool).
//! * A key with a tool allowlist lists and calls only its tools; another tool is refused with the
//!   same error as an unknown one; a bad key gets no session.
//! * Every call is in the tool-call log (`/api/mcp/calls`) with key, server, tool and status.
//! * The remote server going away shows in `/v1/mcp/servers`, and the gateway reconnects when it
//!   is back.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, free_port};

use common::{admin, output, required_env};

const CANARY: &str = "mcp-e2e-canary-from-the-gateway-env";

/// The reference server's entry point (`dist/index.js`), run with node.
fn everything() -> String {
    required_env("TOLLGATE_TEST_MCP_EVERYTHING")
}

/// `server-everything` over Streamable HTTP on `port`; killed on drop.
struct HttpServer(Child);

impl HttpServer {
    async fn start(port: u16) -> HttpServer {
        let child = Command::new("node")
            .arg(everything())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs server-everything");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server-everything never listened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        HttpServer(child)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the MCP Python SDK against the gateway: initialize, list every tool, call `tool`.
async fn sdk(gw: &TollgateProcess, key: &str, tool: &str, args: Value) -> Value {
    let mut cmd = Command::new(required_env("TOLLGATE_TEST_PYTHON"));
    cmd.arg(required_env("TOLLGATE_TEST_MCP_CLIENT"))
        .arg(gw.url("/mcp"))
        .arg(key)
        .arg(tool)
        .arg(args.to_string());
    let out = output(cmd, "run the MCP Python SDK").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the SDK script printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn tool_names(v: &Value) -> Vec<String> {
    v["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

/// Waits until `/v1/mcp/servers` (as `key` sees it) shows `server` in `state`.
async fn wait_state(
    http: &reqwest::Client,
    gw: &TollgateProcess,
    key: &str,
    server: &str,
    state: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let r = http
            .get(gw.url("/v1/mcp/servers"))
            .bearer_auth(key)
            .send()
            .await
            .expect("servers");
        if r.status() == 200 {
            last = r.json().await.unwrap_or(Value::Null);
            if last["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == server && s["state"] == state)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{server} never became {state}: {last}\ngateway:\n{}",
        gw.output()
    );
}

/// The tool-call log's rows (newest first).
async fn calls(http: &reqwest::Client, gw: &TollgateProcess) -> Vec<Value> {
    let (st, b) = admin(http, gw, "GET", "/api/mcp/calls?limit=100", Value::Null).await;
    assert_eq!(st, 200, "{b}");
    b["calls"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("the tool-call log: {b}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_lists_and_calls_tools_of_the_reference_server_through_the_gateway() {
    let port = free_port().expect("port");
    let mut remote = Some(HttpServer::start(port).await);
    let gw = TollgateProcess::spawn_with(TollgateOptions {
        envs: vec![("ANTHROPIC_MCP_CANARY".to_owned(), CANARY.to_owned())],
        ..TollgateOptions::default()
    })
    .await
    .expect("tollgate starts");
    let http = reqwest::Client::new();
    let node = which_node();

    for body in [
        json!({"name": "everything", "transport": "stdio", "command": node,
               "args": [everything(), "stdio"],
               "env": {"GREETING": "hello-literal", "FROM_GATEWAY": "env.ANTHROPIC_MCP_CANARY"}}),
        json!({"name": "remote", "transport": "http", "url": format!("http://127.0.0.1:{port}/mcp"),
               "headers": {"X-Team-Token": "remote-header-secret-0001"},
               "allowed_tools": ["echo", "get-sum"]}),
    ] {
        let (st, b) = admin(&http, &gw, "POST", "/api/mcp/servers", body).await;
        assert_eq!(st, 201, "{b}");
        assert!(!b.to_string().contains("remote-header-secret-0001"), "{b}");
    }
    let (st, all) = admin(
        &http,
        &gw,
        "POST",
        "/api/virtual-keys",
        json!({"name": "mcp-all"}),
    )
    .await;
    assert_eq!(st, 201, "{all}");
    let all_key = all["value"].as_str().unwrap().to_owned();
    let (st, narrow) = admin(
        &http,
        &gw,
        "POST",
        "/api/virtual-keys",
        json!({"name": "mcp-echo-only", "mcp_tools": ["*__echo"]}),
    )
    .await;
    assert_eq!(st, 201, "{narrow}");
    let narrow_key = narrow["value"].as_str().unwrap().to_owned();
    wait_state(&http, &gw, &all_key, "everything", "ready").await;
    wait_state(&http, &gw, &all_key, "remote", "ready").await;

    // Every tool of the stdio server, the allowed ones of the remote one, all prefixed.
    let v = sdk(&gw, &all_key, "everything__echo", json!({"message": "hi"})).await;
    let names = tool_names(&v);
    for want in [
        "everything__echo",
        "everything__get-env",
        "everything__get-sum",
        "remote__echo",
        "remote__get-sum",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "remote__get-env"), "{names:?}");
    assert!(names.iter().all(|n| n.len() <= 49), "{names:?}");
    assert_eq!(text_of(&v["result"]), "Echo: hi", "{v}");

    // The remote server answers through the gateway too.
    let v = sdk(&gw, &all_key, "remote__get-sum", json!({"a": 2, "b": 40})).await;
    assert!(text_of(&v["result"]).contains("42"), "{v}");

    // The stdio server sees its configured environment and nothing else of the gateway's.
    let v = sdk(&gw, &all_key, "everything__get-env", json!({})).await;
    let env = text_of(&v["result"]);
    assert!(env.contains("hello-literal"), "{env}");
    assert!(
        env.contains(CANARY),
        "the env.NAME reference resolved: {env}"
    );
    assert!(
        !env.contains("ANTHROPIC_MCP_CANARY") && !env.contains("TOLLGATE_"),
        "the gateway's own environment leaked: {env}"
    );

    // The narrow key: only echo tools; another tool is refused like an unknown one.
    let v = sdk(
        &gw,
        &narrow_key,
        "everything__get-sum",
        json!({"a": 1, "b": 2}),
    )
    .await;
    let names = tool_names(&v);
    assert_eq!(
        {
            let mut n = names.clone();
            n.sort();
            n
        },
        vec!["everything__echo".to_owned(), "remote__echo".to_owned()]
    );
    let refused = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let v = sdk(&gw, &narrow_key, "everything__no-such-tool", json!({})).await;
    let unknown = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert_eq!(
        refused.replace("get-sum", "X"),
        unknown.replace("no-such-tool", "X"),
        "a tool the key may not use is refused like an unknown one"
    );

    // No session without a valid key.
    let v = sdk(
        &gw,
        "sk-tg-not-a-key",
        "everything__echo",
        json!({"message": "x"}),
    )
    .await;
    assert!(v.get("session_error").is_some(), "{v}");

    // Every call is in the tool-call log, with its key, server, tool and status.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = calls(&http, &gw).await;
        if rows.len() >= 5 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let find = |server: &str, tool: &str, status: u64| {
        rows.iter().any(|r| {
            r["server"] == server && r["tool"] == tool && r["status"].as_u64() == Some(status)
        })
    };
    assert!(find("everything", "echo", 200), "{rows:?}");
    assert!(find("remote", "get-sum", 200), "{rows:?}");
    assert!(find("everything", "get-env", 200), "{rows:?}");
    assert!(find("everything", "get-sum", 403), "{rows:?}");
    let narrow_id = narrow["id"].as_str().unwrap();
    assert!(
        rows.iter()
            .filter(|r| r["status"].as_u64() == Some(403))
            .all(|r| r["virtual_key"]["id"] == narrow_id),
        "{rows:?}"
    );
    assert!(
        !gw.output().contains("remote-header-secret-0001"),
        "a server credential reached the logs"
    );

    // The remote server goes away, then comes back: the gateway reconnects.
    drop(remote.take());
    wait_state(&http, &gw, &all_key, "remote", "failed").await;
    let _back = HttpServer::start(port).await;
    wait_state(&http, &gw, &all_key, "remote", "ready").await;
    let v = sdk(&gw, &all_key, "remote__echo", json!({"message": "again"})).await;
    assert_eq!(text_of(&v["result"]), "Echo: again", "{v}");
}

/// `node` as an absolute path: the gateway runs stdio servers with only the environment they
/// were configured with (and PATH).
fn which_node() -> String {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .expect("node on PATH")
        .display()
        .to_string()
}

//! End to end: the MCP gateway (`/mcp`) and `tollgate launch` with the real binary. The MCP
//! gateway sits in front of the reference MCP server
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
//! * `tollgate status` lists a key's tools; `tollgate doctor` passes, fails (exit 1) while a
//!   server is down, and passes again once it is back.
//! * The remote server going away shows in `/v1/mcp/servers`, and the gateway reconnects when it
//!   is back.
//! * Claude Code started by `tollgate launch` (`-p` mode) is offered a gateway tool and calls it
//!   through the gateway, with no `claude mcp add`; Codex CLI and OpenCode started by `tollgate
//!   launch --harness codex|opencode` run a turn through the gateway, writing no config file.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig};
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

    // `tollgate status` shows the key's tools; `tollgate doctor` finds the MCP gateway healthy.
    let (code, status) = cli(&gw, &narrow_key, "status").await;
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("MCP tools  2: everything__echo, remote__echo"),
        "{status}"
    );
    assert!(
        !status.contains(&narrow_key),
        "the key is shown redacted: {status}"
    );
    let (code, doctor) = cli(&gw, &all_key, "doctor").await;
    assert_eq!(code, 0, "{doctor}");

    // The remote server goes away, then comes back: the gateway reconnects.
    drop(remote.take());
    wait_state(&http, &gw, &all_key, "remote", "failed").await;
    let (code, doctor) = cli(&gw, &all_key, "doctor").await;
    assert_eq!(code, 1, "a failed MCP server fails the doctor: {doctor}");
    assert!(doctor.contains("remote"), "{doctor}");
    let _back = HttpServer::start(port).await;
    wait_state(&http, &gw, &all_key, "remote", "ready").await;
    let (code, doctor) = cli(&gw, &all_key, "doctor").await;
    assert_eq!(code, 0, "{doctor}");
    let v = sdk(&gw, &all_key, "remote__echo", json!({"message": "again"})).await;
    assert_eq!(text_of(&v["result"]), "Echo: again", "{v}");
}

/// Runs `tollgate CMD --gateway <gw>` with the key in `TOLLGATE_API_KEY` and a fresh home;
/// returns its exit code and output (stdout, then stderr).
async fn cli(gw: &TollgateProcess, key: &str, cmd_name: &str) -> (i32, String) {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = Command::new(tollgate_tests::harness::tollgate_binary());
    cmd.args([cmd_name, "--gateway", gw.base_url()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("TOLLGATE_API_KEY", key)
        .stdin(Stdio::null());
    let out = output(cmd, cmd_name).await;
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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

const UPSTREAM_KEY: &str = "sk-ant-api03-e2e-mcp-upstream-key-000001";
const ECHO_TOOL: &str = "mcp__tollgate__everything__echo";

/// A gateway for the `tollgate launch` tests: the Anthropic provider at a double, `mcp` (if
/// given) configured as an MCP server, and a virtual key that routes; returns the double, the
/// gateway, the key's create answer and its value.
async fn launch_gateway(
    key_name: &str,
    mcp: Option<Value>,
) -> (
    AnthropicDouble,
    TollgateProcess,
    reqwest::Client,
    Value,
    String,
) {
    let double = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(UPSTREAM_KEY))
        .expect("anthropic double");
    let gw = TollgateProcess::spawn_with(TollgateOptions::default())
        .await
        .expect("tollgate starts");
    let http = reqwest::Client::new();
    let mut config = vec![
        (
            "/api/providers",
            json!({"provider": "anthropic", "network_config": {"base_url": double.base_url()}}),
        ),
        (
            "/api/providers/anthropic/keys",
            json!({"name": "ant", "models": ["*"], "value": UPSTREAM_KEY}),
        ),
    ];
    config.extend(mcp.map(|server| ("/api/mcp/servers", server)));
    for (path, body) in config {
        let (st, b) = admin(&http, &gw, "POST", path, body).await;
        assert_eq!(st, 201, "{path}: {b}");
    }
    let (st, vk) = admin(
        &http,
        &gw,
        "POST",
        "/api/virtual-keys",
        json!({"name": key_name, "provider": "anthropic"}),
    )
    .await;
    assert_eq!(st, 201, "{vk}");
    let key = vk["value"].as_str().unwrap().to_owned();
    common::wait_for_config(&http, &gw, &key).await;
    (double, gw, http, vk, key)
}

/// `tollgate launch --yes` against `gw` for `harness` (its program at `program`), the key in
/// `TOLLGATE_API_KEY`, in `work` with a fresh `home`; `args` go to the harness.
fn launch_command(
    gw: &TollgateProcess,
    home: &std::path::Path,
    work: &std::path::Path,
    harness: &str,
    program: &str,
    key: &str,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(tollgate_tests::harness::tollgate_binary());
    cmd.args([
        "launch",
        "--yes",
        "--gateway",
        gw.base_url(),
        "--harness",
        harness,
    ])
    .args([
        "--model",
        "claude-sonnet-4-5",
        "--harness-path",
        program,
        "--",
    ])
    .args(args)
    .current_dir(work)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", home)
    .env("XDG_CONFIG_HOME", home.join(".config"))
    .env("TERM", "dumb")
    .env("TOLLGATE_API_KEY", key)
    .stdin(Stdio::null());
    cmd
}

/// Claude Code started by `tollgate launch` (non-interactive, `-p` mode) against the real gateway:
/// the gateway's `/mcp` is attached with no manual step, the model is offered the reference
/// server's `echo` as `mcp__tollgate__everything__echo`, the (scripted) model calls it, Claude Code
/// calls it through the gateway, and the tool's answer goes back to the model in the next request.
/// The call is in the tool-call log under the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_started_by_tollgate_launch_lists_and_calls_a_gateway_tool() {
    use tollgate_tests::anthropic_double::{CALL_MESSAGE, DEFAULT_REPLY};
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let (double, gw, http, vk, key) = launch_gateway(
        "launch-e2e",
        Some(
            json!({"name": "everything", "transport": "stdio", "command": which_node(),
                    "args": [everything(), "stdio"]}),
        ),
    )
    .await;
    wait_state(&http, &gw, &key, "everything", "ready").await;

    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work dir");
    let prompt = format!("[double:call:{ECHO_TOOL}] Echo something.");
    let mut cmd = launch_command(
        &gw,
        home.path(),
        work.path(),
        "claude",
        &claude,
        &key,
        &["-p", &prompt, "--allowedTools", ECHO_TOOL],
    );
    cmd.env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        // Claude Code defers MCP tools behind its tool-search tool, which the scripted model does
        // not use: with tool search off, the tools are offered in the request itself.
        .env("ENABLE_TOOL_SEARCH", "false");
    let out = output(cmd, "tollgate launch").await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tollgate launch / claude failed ({}):\nstdout: {stdout}\nstderr: {}\ngateway:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        gw.output()
    );

    let requests = double.requests();
    let bodies: Vec<Value> = requests.iter().filter_map(|r| r.json()).collect();
    let offered = bodies.iter().find(|b| {
        b["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["name"] == ECHO_TOOL)
    });
    let offered = offered.unwrap_or_else(|| {
        panic!(
            "no request offered {ECHO_TOOL}: {:?}",
            bodies
                .iter()
                .map(|b| b["tools"].as_array().map(|t| t.len()))
                .collect::<Vec<_>>()
        )
    });
    let tool = offered["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == ECHO_TOOL)
        .unwrap();
    assert_eq!(
        tool["description"], "Echoes back the input string",
        "{tool}"
    );
    // The tool's answer, from the reference server through the gateway, went back to the model.
    let echoed = format!("Echo: {CALL_MESSAGE}");
    assert!(
        bodies.iter().any(|b| b["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .any(|c| c["type"] == "tool_result" && c["content"].to_string().contains(&echoed))),
        "no request carried the tool result {echoed:?}\nstdout: {stdout}"
    );
    assert!(stdout.contains(DEFAULT_REPLY), "stdout: {stdout}");
    // The virtual key reached the model API as a Bearer token (the gateway swapped in the
    // upstream key), and the call is in the tool-call log under the key.
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-api-key") == Some(UPSTREAM_KEY))
    );
    let vk_id = vk["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = calls(&http, &gw).await;
        if rows.iter().any(|r| {
            r["server"] == "everything"
                && r["tool"] == "echo"
                && r["status"] == 200
                && r["virtual_key"]["id"] == vk_id
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call is not in the log: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Codex CLI started by `tollgate launch --harness codex` (its provider given as command-line
/// overrides, the key in `TOLLGATE_API_KEY`, no `config.toml` written) runs a turn through the
/// gateway's OpenAI Responses route to the Anthropic double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_started_by_tollgate_launch_runs_a_turn_through_the_gateway() {
    use tollgate_tests::anthropic_double::DEFAULT_REPLY;
    let codex = required_env("TOLLGATE_TEST_CODEX");
    let (double, gw, _http, _vk, key) = launch_gateway("launch-codex", None).await;
    let home = tempfile::tempdir().expect("home");
    let codex_home = home.path().join(".codex");
    std::fs::create_dir_all(&codex_home).expect("codex home");
    let work = tempfile::tempdir().expect("work dir");
    let mut cmd = launch_command(
        &gw,
        home.path(),
        work.path(),
        "codex",
        &codex,
        &key,
        &["exec", "--skip-git-repo-check", "Say hello."],
    );
    cmd.env("CODEX_HOME", &codex_home);
    let out = output(cmd, "tollgate launch --harness codex").await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tollgate launch / codex failed ({}):\nstdout: {stdout}\nstderr: {}\ngateway:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        gw.output()
    );
    assert!(stdout.contains(DEFAULT_REPLY), "stdout: {stdout}");
    assert!(
        !codex_home.join("config.toml").exists(),
        "no Codex configuration file written"
    );
    let requests = double.requests();
    assert!(!requests.is_empty(), "the double saw the turn");
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-api-key") == Some(UPSTREAM_KEY))
    );
}
/// OpenCode started by `tollgate launch --harness opencode` (its provider given inline in
/// `OPENCODE_CONFIG_CONTENT`, no `opencode.json` written) runs a turn through the gateway's OpenAI
/// Chat Completions route to the Anthropic double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_started_by_tollgate_launch_runs_a_turn_through_the_gateway() {
    use tollgate_tests::anthropic_double::DEFAULT_REPLY;
    let opencode = required_env("TOLLGATE_TEST_OPENCODE");
    let (double, gw, _http, _vk, key) = launch_gateway("launch-opencode", None).await;
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work dir");
    let mut cmd = launch_command(
        &gw,
        home.path(),
        work.path(),
        "opencode",
        &opencode,
        &key,
        &["run", "Say hello."],
    );
    cmd.env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1");
    let out = output(cmd, "tollgate launch --harness opencode").await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tollgate launch / opencode failed ({}):\nstdout: {stdout}\nstderr: {}\ngateway:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        gw.output()
    );
    assert!(stdout.contains(DEFAULT_REPLY), "stdout: {stdout}");
    assert!(
        !work.path().join("opencode.json").exists()
            && !home.path().join(".config/opencode/opencode.json").exists(),
        "no OpenCode configuration file written"
    );
    let requests = double.requests();
    assert!(!requests.is_empty(), "the double saw the turn");
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-api-key") == Some(UPSTREAM_KEY))
    );
}

//! `tollgate launch`, `status` and `doctor` as a user runs them: the interactive flow driven in
//! a pseudo-terminal (prompts, typing a filter in the model list, the summary, Enter relaunching
//! the last configuration), the non-interactive flags, tmux windows side by side, and the exit
//! codes. The launched "harness" is a shell script that writes its argv and environment to a
//! file; the gateway is a small loopback fake (`FakeGateway`) serving `/health`,
//! `/v1/models`, `/v1/key`, `/v1/mcp/servers` and `/mcp` as the contract says (the MCP routes
//! are being built elsewhere; `/v1/key` itself is tested in process in the data plane).
//!
//! The tests run with a cleared environment (no D-Bus session, so no Secret Service): the key goes
//! to the warned 0600 file fallback and is read back from it. One test starts a real Secret
//! Service (GNOME Keyring in a private D-Bus session) and checks the key goes there instead.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "sk-tg-launch-test-key-0123456789";
/// The gateway's MCP tool as Claude Code names it to the model (server `tollgate`).
const TOOL_SEEN: &str = "mcp__tollgate__everything__echo";
const MODELS: [&str; 4] = [
    "claude-haiku-4-5",
    "claude-sonnet-4-6",
    "anthropic/claude-opus-4-6",
    "bedrock/claude-sonnet-4-6",
];

fn tollgate() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tollgate"))
}

/// A loopback gateway answering with canned JSON; `mcp_state` is what `/v1/mcp/servers` says.
struct FakeGateway {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

/// How a [`FakeGateway`] misbehaves.
#[derive(Clone, Copy)]
struct Fake {
    /// What `/v1/mcp/servers` says of the server.
    mcp_state: &'static str,
    /// The status line of `/health`.
    health: &'static str,
    /// Terminal escape sequences in a model id and in the key-refused message.
    hostile: bool,
}

/// A model id carrying OSC 0 (set the title) and a line rewrite.
const HOSTILE_MODEL_JSON: &str = r"evil\u001b]0;pwned\u0007\u001b[2K\r[ok  ] model";

impl FakeGateway {
    fn start(mcp_state: &'static str) -> FakeGateway {
        FakeGateway::start_with(Fake {
            mcp_state,
            health: "200 OK",
            hostile: false,
        })
    }

    fn start_with(fake: Fake) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let path = parts.next().unwrap_or_default().to_owned();
                    let mut auth = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
                        match name.trim().to_ascii_lowercase().as_str() {
                            "authorization" => auth = value.trim().to_owned(),
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let tool = body
                        .windows(TOOL_SEEN.len())
                        .any(|w| w == TOOL_SEEN.as_bytes());
                    log.lock()
                        .unwrap()
                        .push(format!("{method} {path} auth={auth} tool={tool}"));
                    let authorized = auth == format!("Bearer {KEY}");
                    let (status, json) = answer(&method, &path, authorized, &body, fake);
                    let date = httpdate_now();
                    let text = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ndate: {date}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                        json.len()
                    );
                    let _ = stream.write_all(text.as_bytes());
                });
            }
        });
        FakeGateway { url, seen }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

fn answer(
    method: &str,
    path: &str,
    authorized: bool,
    body: &[u8],
    fake: Fake,
) -> (&'static str, String) {
    let mcp_state = fake.mcp_state;
    let refused = (
        "401 Unauthorized",
        if fake.hostile {
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid\u001b]52;c;cHduZWQ=\u0007 key\n[ok  ] key accepted"}}"#
        } else {
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid virtual key"}}"#
        }
        .to_owned(),
    );
    match (method, path) {
        ("GET", "/health") => (fake.health, r#"{"status":"ok"}"#.to_owned()),
        _ if !authorized => refused,
        ("GET", "/v1/models?limit=1000") => {
            let mut data: Vec<String> = MODELS
                .iter()
                .map(|m| format!(r#"{{"type":"model","id":"{m}"}}"#))
                .collect();
            if fake.hostile {
                data.insert(0, format!(r#"{{"type":"model","id":"{HOSTILE_MODEL_JSON}"}}"#));
            }
            ("200 OK", format!(r#"{{"data":[{}],"has_more":false}}"#, data.join(",")))
        }
        ("GET", "/v1/key") => (
            "200 OK",
            r#"{"id":"vk-1","name":"alice","team":null,"customer":null,"expires_at":null,"providers":[],"allowed_models":[],"budgets":[{"level":"virtual_key","level_id":"vk-1","level_name":"alice","budget_id":"b","period":"1M","limit_usd":10.0,"spent_usd":2.5,"remaining_usd":7.5,"window_start":"2026-12-01T00:00:00Z","window_end":"2027-01-01T00:00:00Z"}],"counted_by":"this data plane"}"#.to_owned(),
        ),
        ("GET", "/v1/mcp/servers") => (
            "200 OK",
            format!(
                r#"{{"servers":[{{"name":"everything","state":"{mcp_state}","tools":3,"error":null}}]}}"#
            ),
        ),
        ("POST", "/mcp") => {
            let req: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let id = req["id"].clone();
            match req["method"].as_str() {
                Some("initialize") => (
                    "200 OK",
                    serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"tollgate","version":"0"}}}).to_string(),
                ),
                Some("tools/list") => (
                    "200 OK",
                    serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"tools":[{"name":"everything__echo","inputSchema":{"type":"object"}}]}}).to_string(),
                ),
                _ if req.get("id").is_some() => (
                    "200 OK",
                    serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"Method not found"}}).to_string(),
                ),
                _ => ("202 Accepted", String::new()),
            }
        }
        _ => (
            "404 Not Found",
            r#"{"type":"error","error":{"type":"not_found_error","message":"no route"}}"#.to_owned(),
        ),
    }
}

fn httpdate_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A user's home: config dir, and the fake harness writing argv and env to `out/<model>.txt`.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().expect("home");
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let script = dir.path().join("fake-claude");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nf='{}/out/'\"$(echo \"$ANTHROPIC_MODEL\" | tr / _)\".txt\n\
                 {{ for a in \"$@\"; do printf 'ARG %s\\n' \"$a\"; done; env | sed 's/^/ENV /'; }} > \"$f.tmp\"\n\
                 mv \"$f.tmp\" \"$f\"\n\
                 if [ -n \"$TMUX\" ]; then sleep 30; fi\n",
                dir.path().display()
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn script(&self) -> PathBuf {
        self.path().join("fake-claude")
    }

    /// The environment of every run: cleared (no D-Bus session: no keyring).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", self.path().display().to_string()),
            (
                "XDG_CONFIG_HOME",
                self.path().join("config").display().to_string(),
            ),
            ("TERM", "xterm".into()),
        ]
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(tollgate());
        cmd.env_clear().envs(self.env());
        cmd
    }

    /// What the fake harness recorded for `model`: (argv, env).
    fn launched(&self, model: &str) -> (Vec<String>, Vec<(String, String)>) {
        let file = self
            .path()
            .join("out")
            .join(format!("{}.txt", model.replace('/', "_")));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.exists() {
            assert!(
                Instant::now() < deadline,
                "{} never written",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let mut argv = Vec::new();
        let mut env = Vec::new();
        for line in text.lines() {
            if let Some(a) = line.strip_prefix("ARG ") {
                argv.push(a.to_owned());
            } else if let Some(e) = line.strip_prefix("ENV ") {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        (argv, env)
    }

    fn key_file(&self, gw: &FakeGateway) -> PathBuf {
        self.path()
            .join(format!("config/tollgate/keys/127.0.0.1_{}.key", gw.port()))
    }
}

fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What every Claude Code launch must look like.
fn assert_claude_launch(argv: &[String], env: &[(String, String)], gw: &FakeGateway, model: &str) {
    assert_eq!(get(env, "ANTHROPIC_BASE_URL"), Some(gw.url.as_str()));
    assert_eq!(get(env, "ANTHROPIC_AUTH_TOKEN"), Some(KEY));
    assert_eq!(get(env, "ANTHROPIC_MODEL"), Some(model));
    assert_eq!(argv[0], "--mcp-config", "{argv:?}");
    let mcp: serde_json::Value = serde_json::from_str(&argv[1]).expect("mcp config");
    assert_eq!(
        mcp["mcpServers"]["tollgate"]["url"],
        format!("{}/mcp", gw.url)
    );
    assert_eq!(
        mcp["mcpServers"]["tollgate"]["headers"]["Authorization"],
        "Bearer ${TOLLGATE_API_KEY}"
    );
    assert_eq!(get(env, "TOLLGATE_API_KEY"), Some(KEY));
    assert!(
        argv.iter().all(|a| !a.contains(KEY)),
        "the key in argv: {argv:?}"
    );
}

/// `sh -c 'stty …; exec tollgate launch …'` in a pseudo-terminal of 120×40.
fn pty(home: &Home, args: &str) -> rexpect::session::PtySession {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "stty cols 120 rows 40; exec '{}' launch --harness-path '{}' {args}",
        tollgate().display(),
        home.script().display()
    ));
    cmd.env_clear().envs(home.env());
    rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in a pty")
}

const ENTER: &str = "\r";

/// Types `text` into the terminal.
fn send(p: &mut rexpect::session::PtySession, text: &str) {
    p.send(text).expect("send");
    p.flush().expect("flush");
}

#[test]
fn interactive_launch_filters_models_and_enter_relaunches_the_last_configuration() {
    let gw = FakeGateway::start("ready");
    let home = Home::new();

    // First run: every prompt.
    let mut p = pty(&home, "");
    p.exp_string("Gateway URL").unwrap();
    send(&mut p, &gw.url);
    send(&mut p, ENTER);
    p.exp_string("Virtual key").unwrap();
    p.exp_string("Paste a virtual key").unwrap();
    send(&mut p, ENTER);
    p.exp_string("sk-tg-").unwrap();
    send(&mut p, KEY);
    send(&mut p, ENTER);
    // No Secret Service here: the warned file fallback.
    p.exp_string("no OS keyring available").unwrap();
    p.exp_string("Coding agent").unwrap();
    p.exp_string("Codex CLI").unwrap();
    send(&mut p, ENTER);
    p.exp_string("Model (type to filter)").unwrap();
    p.exp_string("bedrock/claude-sonnet-4-6").unwrap();
    // Typing filters the list: "son bed" leaves one model, the last of the gateway's list
    // (Enter on the unfiltered list would take the first, claude-haiku-4-5).
    send(&mut p, "son bed");
    p.exp_string("son bed").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    send(&mut p, ENTER);
    p.exp_string("Enter to launch").unwrap();
    send(&mut p, ENTER);
    p.exp_eof().unwrap();

    let (argv, env) = home.launched("bedrock/claude-sonnet-4-6");
    assert_claude_launch(&argv, &env, &gw, "bedrock/claude-sonnet-4-6");
    let key_file = home.key_file(&gw);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let saved = std::fs::read_to_string(home.path().join("config/tollgate/launch.json")).unwrap();
    assert!(!saved.contains(KEY), "{saved}");
    assert!(saved.contains("bedrock/claude-sonnet-4-6"), "{saved}");
    std::fs::remove_file(home.path().join("out/bedrock_claude-sonnet-4-6.txt")).unwrap();

    // Second run: the summary of the last configuration, Enter relaunches it.
    let mut p = pty(&home, "");
    p.exp_string("Last configuration").unwrap();
    // The key redacted to its last four characters (rexpect reads bytes as Latin-1: no `…`).
    p.exp_string("6789 (").unwrap();
    p.exp_string("Enter to launch").unwrap();
    send(&mut p, ENTER);
    p.exp_eof().unwrap();
    let (argv, env) = home.launched("bedrock/claude-sonnet-4-6");
    assert_claude_launch(&argv, &env, &gw, "bedrock/claude-sonnet-4-6");

    // Third run: "Change the settings" asks again, each answer defaulting to the last one
    // (Enter keeps the gateway and the stored key), and a new filter picks another model.
    let mut p = pty(&home, "");
    p.exp_string("Enter to launch").unwrap();
    p.exp_string("Quit").unwrap();
    send(&mut p, "\x1b[B");
    std::thread::sleep(Duration::from_millis(200));
    send(&mut p, ENTER);
    p.exp_string("Gateway URL").unwrap();
    send(&mut p, ENTER);
    p.exp_string("Use the stored key").unwrap();
    send(&mut p, ENTER);
    p.exp_string("Coding agent").unwrap();
    send(&mut p, ENTER);
    p.exp_string("Model (type to filter)").unwrap();
    send(&mut p, "haiku");
    p.exp_string("haiku").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    send(&mut p, ENTER);
    p.exp_string("Enter to launch").unwrap();
    send(&mut p, ENTER);
    p.exp_eof().unwrap();
    let (argv, env) = home.launched("claude-haiku-4-5");
    assert_claude_launch(&argv, &env, &gw, "claude-haiku-4-5");
}

#[test]
fn non_interactive_launch_reads_the_key_back_from_the_fallback_file() {
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    // The key piped in once (stored, with the warning)…
    let mut child = home
        .command()
        .args([
            "launch",
            "--yes",
            "--key-stdin",
            "--gateway",
            &gw.url,
            "--model",
            "claude-haiku-4-5",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .args(["--", "--resume"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no OS keyring available"), "{stderr}");
    assert!(
        stderr.contains(&home.key_file(&gw).display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "{stderr}");
    let (argv, env) = home.launched("claude-haiku-4-5");
    assert_claude_launch(&argv, &env, &gw, "claude-haiku-4-5");
    assert_eq!(argv.last().map(String::as_str), Some("--resume"));

    // …then read back on the next launch, which only names another model.
    let out = home
        .command()
        .args([
            "launch",
            "--yes",
            "--model",
            "claude-sonnet-4-6",
            "--no-mcp",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (argv, env) = home.launched("claude-sonnet-4-6");
    assert_eq!(get(&env, "ANTHROPIC_AUTH_TOKEN"), Some(KEY));
    assert_eq!(get(&env, "ANTHROPIC_BASE_URL"), Some(gw.url.as_str()));
    assert!(argv.is_empty(), "--no-mcp: {argv:?}");
    // --no-mcp holds for that launch only.
    let out = home
        .command()
        .args(["launch", "--yes", "--model", "anthropic/claude-opus-4-6"])
        .arg("--harness-path")
        .arg(home.script())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (argv, env) = home.launched("anthropic/claude-opus-4-6");
    assert_claude_launch(&argv, &env, &gw, "anthropic/claude-opus-4-6");

    // Gemini CLI is refused with the reason (usage error).
    let out = home
        .command()
        .args(["launch", "--yes", "--harness", "gemini", "--model", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Gemini API"));
    // Without a model anywhere: a usage error too.
    let fresh = Home::new();
    let out = fresh.command().args(["launch", "--yes"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_and_doctor_report_and_exit_with_the_documented_codes() {
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    // No key anywhere: usage error.
    for cmd in ["status", "doctor"] {
        let out = home
            .command()
            .args([cmd, "--gateway", &gw.url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
    }
    let run = |cmd: &str, key: &str, gw: &FakeGateway, model: &str| {
        home.command()
            .args([cmd, "--gateway", &gw.url, "--model", model])
            .env("TOLLGATE_API_KEY", key)
            .output()
            .unwrap()
    };
    let out = run("status", KEY, &gw, "claude-haiku-4-5");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("accepted") && text.contains("$7.50 left of $10.00"),
        "{text}"
    );
    assert!(
        text.contains("everything ready (3 tools)") && text.contains("everything__echo"),
        "{text}"
    );
    assert!(!text.contains(KEY), "{text}");

    let out = run("doctor", KEY, &gw, "claude-haiku-4-5");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("[ok  ]")).count(),
        6,
        "{text}"
    );

    // A model the key may not use, a refused key, a failed MCP server: exit 1.
    let out = run("doctor", KEY, &gw, "claude-opus-9");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] model access"));
    let out = run("doctor", "sk-tg-wrong-key-value", &gw, "claude-haiku-4-5");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] key"));
    let out = run("status", "sk-tg-wrong-key-value", &gw, "x");
    assert_eq!(out.status.code(), Some(1));
    let failing = FakeGateway::start("failed");
    let out = run("doctor", KEY, &failing, "claude-haiku-4-5");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] MCP servers"));
    // Nothing listening: unreachable, exit 1.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let out = home
        .command()
        .args(["doctor", "--gateway", &dead_url])
        .env("TOLLGATE_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] reachability"));
    let _ = gw.seen.lock().unwrap().len();
}

/// Two Claude Code sessions side by side in tmux windows (a private tmux server): each window
/// runs `tollgate launch --yes` for its model, reading the key from the store; the key is never
/// on tmux's command lines.
#[test]
fn new_tmux_windows_run_other_models_next_to_the_first() {
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "these tests need tmux (Debian: apt-get install tmux)"
    );
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    let tmpdir = home.path().join("tmux");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .env_clear()
            .envs(home.env())
            .env("TMUX_TMPDIR", &tmpdir)
            .output()
            .expect("tmux")
    };
    let out = tmux(&["new-session", "-d", "-s", "main", "-x", "120", "-y", "40"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket =
        String::from_utf8(tmux(&["display-message", "-p", "#{socket_path},#{pid},0"]).stdout)
            .unwrap()
            .trim()
            .to_owned();
    // Store the key once (as a first launch would).
    let mut child = home
        .command()
        .args([
            "launch",
            "--yes",
            "--key-stdin",
            "--gateway",
            &gw.url,
            "--model",
            "claude-opus-4-6",
            "--new-window",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .env("TMUX", &socket)
        .env("TMUX_TMPDIR", &tmpdir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = home
        .command()
        .args([
            "launch",
            "--yes",
            "--model",
            "claude-haiku-4-5",
            "--new-window",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .env("TMUX", &socket)
        .env("TMUX_TMPDIR", &tmpdir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (argv, env) = home.launched("claude-opus-4-6");
    assert_claude_launch(&argv, &env, &gw, "claude-opus-4-6");
    let (argv, env) = home.launched("claude-haiku-4-5");
    assert_claude_launch(&argv, &env, &gw, "claude-haiku-4-5");
    let windows =
        String::from_utf8(tmux(&["list-windows", "-t", "main", "-F", "#{window_name}"]).stdout)
            .unwrap();
    let names: Vec<&str> = windows.lines().collect();
    assert!(
        names.contains(&"opus") && names.contains(&"haiku"),
        "{names:?}"
    );
    let commands = String::from_utf8(
        tmux(&[
            "list-panes",
            "-s",
            "-t",
            "main",
            "-F",
            "#{pane_start_command}",
        ])
        .stdout,
    )
    .unwrap();
    assert!(commands.contains("launch --yes"), "{commands}");
    assert!(!commands.contains(KEY), "{commands}");
    tmux(&["kill-server"]);
}

/// The real Claude Code (`TOLLGATE_TEST_CLAUDE`, installed by scripts/test.sh) launched by
/// `tollgate launch`: its MCP connection to `<gateway>/mcp` carries the key (Claude Code expanded
/// `${TOLLGATE_API_KEY}` from its environment), and its request offers the gateway's tool as
/// `mcp__tollgate__…`; the inference request carries the key as a Bearer token.
#[test]
fn real_claude_code_attaches_the_gateway_mcp_tools_with_the_key_from_its_environment() {
    let claude = std::env::var("TOLLGATE_TEST_CLAUDE").unwrap_or_else(|_| {
        panic!("set TOLLGATE_TEST_CLAUDE to Claude Code's binary (scripts/test.sh installs it)")
    });
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    let mut child = home
        .command()
        .args([
            "launch",
            "--yes",
            "--key-stdin",
            "--gateway",
            &gw.url,
            "--model",
            "claude-sonnet-4-6",
        ])
        .args(["--harness-path", &claude, "--", "-p", "hi"])
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let seen = gw.seen.lock().unwrap().clone();
    let bearer = format!("auth=Bearer {KEY} ");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("POST /mcp ") && l.contains(&bearer)),
        "no authenticated MCP request: {seen:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen.iter().any(|l| l.starts_with("POST /v1/messages")
            && l.contains(&bearer)
            && l.ends_with("tool=true")),
        "no inference request offering {TOOL_SEEN}: {seen:#?}"
    );
}

/// Outside tmux, `--tmux` starts a tmux session (private socket directory) whose first window,
/// named after the model's tier, runs the session.
#[test]
fn tmux_flag_starts_a_session_outside_tmux() {
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "these tests need tmux (Debian: apt-get install tmux)"
    );
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    let tmpdir = home.path().join("tmux");
    std::fs::create_dir_all(&tmpdir).unwrap();
    // The key stored by an earlier launch.
    let mut child = home
        .command()
        .args([
            "launch",
            "--yes",
            "--key-stdin",
            "--gateway",
            &gw.url,
            "--model",
            "claude-haiku-4-5",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "stty cols 120 rows 40; exec '{}' launch --yes --tmux --model claude-opus-4-6 --harness-path '{}'",
        tollgate().display(),
        home.script().display()
    ));
    cmd.env_clear().envs(home.env()).env("TMUX_TMPDIR", &tmpdir);
    let _session = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in a pty");
    let (argv, env) = home.launched("claude-opus-4-6");
    assert_claude_launch(&argv, &env, &gw, "claude-opus-4-6");
    assert!(get(&env, "TMUX").is_some(), "not inside tmux: {env:?}");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .env_clear()
            .envs(home.env())
            .env("TMUX_TMPDIR", &tmpdir)
            .output()
            .expect("tmux")
    };
    let windows =
        String::from_utf8(tmux(&["list-windows", "-a", "-F", "#{window_name}"]).stdout).unwrap();
    assert_eq!(windows.trim(), "opus");
    tmux(&["kill-server"]);
}

/// With a Secret Service (Debian's `gnome-keyring-daemon`, unlocked, in a private D-Bus session
/// from `dbus-run-session`; scripts/test.sh installs both), the key goes to the OS keyring: no key
/// file, no warning, the keyring holds it under service `tollgate` and the gateway's URL (read
/// back with libsecret's `secret-tool`), and the next launch reads it from there.
#[test]
fn with_a_secret_service_the_key_goes_to_the_os_keyring() {
    for tool in ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "{tool} is missing: run the tests through scripts/test.sh, which installs Debian's \
             dbus, gnome-keyring and libsecret-tools"
        );
    }
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    let script = home.path().join("keyring-session.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\n\
             printf test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null\n\
             printf '%s\\n' \"$KEY\" | '{tollgate}' launch --yes --key-stdin --gateway '{url}' \
               --model claude-haiku-4-5 --harness-path '{harness}' 2>first.err\n\
             secret-tool lookup service tollgate username '{url}' > stored.txt\n\
             '{tollgate}' launch --yes --gateway '{url}' --model claude-sonnet-4-6 \
               --harness-path '{harness}' 2>second.err\n",
            tollgate = tollgate().display(),
            url = gw.url,
            harness = home.script().display(),
        ),
    )
    .unwrap();
    let out = Command::new("dbus-run-session")
        .args(["--", "sh"])
        .arg(&script)
        .current_dir(home.path())
        .env_clear()
        .envs(home.env())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("KEY", KEY)
        .output()
        .expect("dbus-run-session");
    let read = |name: &str| std::fs::read_to_string(home.path().join(name)).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\nfirst: {}\nsecond: {}",
        String::from_utf8_lossy(&out.stderr),
        read("first.err"),
        read("second.err")
    );
    assert_eq!(read("stored.txt").trim(), KEY, "the keyring holds the key");
    assert!(!home.key_file(&gw).exists(), "no fallback file");
    for err in [read("first.err"), read("second.err")] {
        assert!(!err.contains("no OS keyring"), "{err}");
        assert!(!err.contains(KEY), "{err}");
    }
    assert!(
        read("second.err").contains("from the OS keyring"),
        "{}",
        read("second.err")
    );
    let (argv, env) = home.launched("claude-sonnet-4-6");
    assert_claude_launch(&argv, &env, &gw, "claude-sonnet-4-6");
    assert_eq!(get(&env, "ANTHROPIC_AUTH_TOKEN"), Some(KEY));
}

/// Stores `KEY` for `gw` and saves a last configuration (`claude-sonnet-4-6`, MCP on) with one
/// non-interactive launch, whose record is then removed.
fn remember(home: &Home, gw: &FakeGateway) {
    let mut child = home
        .command()
        .args([
            "launch",
            "--yes",
            "--key-stdin",
            "--gateway",
            &gw.url,
            "--model",
            "claude-sonnet-4-6",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (argv, _) = home.launched("claude-sonnet-4-6");
    assert_eq!(argv[0], "--mcp-config");
    std::fs::remove_file(home.path().join("out/claude-sonnet-4-6.txt")).unwrap();
}

/// Flags other than --gateway/--harness/--model keep the summary of the last configuration,
/// and apply to it: Enter launches without MCP and with the given small model.
#[test]
fn flags_apply_to_the_last_configuration_summary() {
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    remember(&home, &gw);
    let mut p = pty(&home, "--no-mcp --small-model claude-haiku-4-5");
    p.exp_string("Last configuration").unwrap();
    p.exp_string("small     claude-haiku-4-5").unwrap();
    p.exp_string("MCP       off").unwrap();
    p.exp_string("Enter to launch").unwrap();
    send(&mut p, ENTER);
    p.exp_eof().unwrap();
    let (argv, env) = home.launched("claude-sonnet-4-6");
    assert!(
        !argv.iter().any(|a| a == "--mcp-config"),
        "--no-mcp: {argv:?}"
    );
    assert_eq!(
        get(&env, "ANTHROPIC_DEFAULT_HAIKU_MODEL"),
        Some("claude-haiku-4-5")
    );
    assert_eq!(get(&env, "ANTHROPIC_AUTH_TOKEN"), Some(KEY));
}

/// A key from TOLLGATE_API_KEY serves that launch only (never stored); inherited variables
/// that would send Claude Code elsewhere are removed; a gateway URL with a password is refused.
#[test]
fn an_env_key_is_not_stored_and_bypass_variables_are_removed() {
    let gw = FakeGateway::start("ready");
    let home = Home::new();
    let bypass = [
        ("ANTHROPIC_API_KEY", "sk-ant-other"),
        ("CLAUDE_CODE_USE_BEDROCK", "1"),
        ("CLAUDE_CODE_USE_VERTEX", "1"),
        ("CLAUDE_CODE_USE_FOUNDRY", "1"),
        ("ANTHROPIC_BEDROCK_BASE_URL", "https://bedrock.example.com"),
        ("ANTHROPIC_VERTEX_BASE_URL", "https://vertex.example.com"),
        ("CLAUDE_CODE_OAUTH_TOKEN", "oauth-token"),
    ];
    let out = home
        .command()
        .args([
            "launch",
            "--yes",
            "--gateway",
            &gw.url,
            "--model",
            "claude-haiku-4-5",
        ])
        .arg("--harness-path")
        .arg(home.script())
        .env("TOLLGATE_API_KEY", KEY)
        .env("ANTHROPIC_CUSTOM_HEADERS", "x-team: platform")
        .envs(bypass)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("no OS keyring available"), "{stderr}");
    let (argv, env) = home.launched("claude-haiku-4-5");
    assert_claude_launch(&argv, &env, &gw, "claude-haiku-4-5");
    for (name, _) in bypass {
        assert_eq!(get(&env, name), None, "{name} inherited");
    }
    assert_eq!(
        get(&env, "ANTHROPIC_CUSTOM_HEADERS"),
        Some("x-team: platform")
    );
    assert!(!home.key_file(&gw).exists(), "the env key was stored");
    // The next launch without it has no key: a usage error.
    let out = home
        .command()
        .args(["launch", "--yes"])
        .arg("--harness-path")
        .arg(home.script())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no virtual key"), "{stderr}");

    let with_password = gw.url.replace("http://", "http://alice:sk-tg-pw@");
    let out = home
        .command()
        .args([
            "launch",
            "--yes",
            "--model",
            "x",
            "--gateway",
            &with_password,
        ])
        .env("TOLLGATE_API_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("user name or password"), "{stderr}");
    assert!(!stderr.contains("sk-tg-pw"), "{stderr}");
}

/// Escape sequences in what the gateway sends (a model id, an error message) reach the
/// terminal escaped, and cannot add lines to doctor's report.
#[test]
fn gateway_text_with_escape_sequences_is_printed_escaped() {
    let gw = FakeGateway::start_with(Fake {
        mcp_state: "ready",
        health: "200 OK",
        hostile: true,
    });
    let home = Home::new();
    let run = |cmd: &str, key: &str| {
        home.command()
            .args([cmd, "--gateway", &gw.url, "--model", "nope"])
            .env("TOLLGATE_API_KEY", key)
            .output()
            .unwrap()
    };
    for (cmd, key) in [
        ("status", KEY),
        ("status", "sk-tg-wrong-key-value"),
        ("doctor", KEY),
        ("doctor", "sk-tg-wrong-key-value"),
    ] {
        let out = run(cmd, key);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
            "{cmd}: {text:?}"
        );
        assert!(text.contains("\\u{1b}"), "{cmd}: {text}");
        if cmd == "doctor" {
            assert_eq!(
                text.lines().filter(|l| l.starts_with("[ok  ] key")).count(),
                usize::from(key == KEY),
                "{text}"
            );
            assert_eq!(
                text.lines()
                    .filter(|l| l.starts_with("[ok  ] model"))
                    .count(),
                0,
                "{text}"
            );
        }
    }
}

/// `/health` answering 502 (a proxy whose gateway is down): doctor fails reachability,
/// status exits 1.
#[test]
fn a_failing_health_endpoint_fails_doctor_and_status() {
    let gw = FakeGateway::start_with(Fake {
        mcp_state: "ready",
        health: "502 Bad Gateway",
        hostile: false,
    });
    let home = Home::new();
    let run = |cmd: &str| {
        home.command()
            .args([cmd, "--gateway", &gw.url, "--model", "claude-haiku-4-5"])
            .env("TOLLGATE_API_KEY", KEY)
            .output()
            .unwrap()
    };
    let out = run("doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[FAIL] reachability"), "{text}");
    assert!(text.contains("502"), "{text}");
    let out = run("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("UNHEALTHY (/health answered 502)"), "{text}");
}

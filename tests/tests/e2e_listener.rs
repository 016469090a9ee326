//! The listeners of the real binary under stalled clients (issue 7, item 1), the files and
//! token rules (item 5) and log colour (item 6). Timeouts are set short with their flags; the
//! assertions are on sockets seeing EOF, on `/metrics` and on logs, not on wall time.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{message, sse_events};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, free_port, tollgate_binary};
use tollgate_tests::postgres::TestDatabase;

/// Longest the test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(60);
/// Header-read, body-read and idle timeout of the gateway under test.
const TIMEOUT_MS: u64 = 3_000;

/// Reads until the gateway closes the connection (EOF or reset); panics after [`PATIENCE`].
async fn closed_by_server(mut read: OwnedReadHalf) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the gateway never closed a stalled connection"
    );
}

/// True while the gateway keeps `read`'s connection open with nothing to say.
fn still_open(read: &OwnedReadHalf) -> bool {
    let mut buf = [0u8; 64];
    matches!(read.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads one whole HTTP/1.1 response (Content-Length or chunked) as text.
async fn read_response(read: &mut OwnedReadHalf) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let body = &text[end + 4..];
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().expect("content-length"));
            match length {
                Some(len) if body.len() >= len => return text,
                None if body.ends_with("0\r\n\r\n") => return text,
                _ => {}
            }
        }
        let n = tokio::time::timeout(PATIENCE, read.read(&mut buf))
            .await
            .expect("a response")
            .expect("read");
        assert!(n > 0, "connection closed mid-response: {text}");
        seen.extend_from_slice(&buf[..n]);
    }
}

async fn connect(addr: SocketAddr) -> (OwnedReadHalf, OwnedWriteHalf) {
    TcpStream::connect(addr)
        .await
        .expect("connect")
        .into_split()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_while_clients_and_long_streams_are_served() {
    let timeout = TIMEOUT_MS.to_string();
    let s = common::setup_with(&[
        "--header-read-timeout-ms",
        &timeout,
        "--body-read-timeout-ms",
        &timeout,
        "--idle-timeout-ms",
        &timeout,
        "--sse-ping-interval-ms",
        "300",
    ])
    .await;
    let addr = s.gw.addr();

    // A stream whose events come 1 s apart, for longer than every timeout.
    let streaming = {
        let http = s.http.clone();
        let url = s.gw.url("/anthropic/v1/messages");
        let vk = s.vk.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = http
                .post(url)
                .header("x-api-key", vk)
                .json(&message(
                    "claude-sonnet-4-6",
                    "[double:slow:1000] a long answer",
                    true,
                ))
                .send()
                .await
                .expect("stream");
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.expect("the whole stream");
            (text, started.elapsed())
        })
    };

    // Write halves are kept: dropping one would send FIN, which is not stalling.
    let mut writers = Vec::new();
    let mut stalled = Vec::new();
    // Silent connections.
    for _ in 0..100 {
        let (read, write) = connect(addr).await;
        writers.push(write);
        stalled.push(read);
    }
    // Part of a head.
    for _ in 0..50 {
        let (read, mut write) = connect(addr).await;
        write
            .write_all(b"POST /anthropic/v1/messages HTTP/1.1\r\nHost: t\r\nx-api-")
            .await
            .expect("write");
        writers.push(write);
        stalled.push(read);
    }
    // A body trickled with a valid key: one byte every 100 ms of a declared 100 kB.
    for _ in 0..50 {
        let (read, mut write) = connect(addr).await;
        write
            .write_all(
                format!(
                    "POST /anthropic/v1/messages HTTP/1.1\r\nHost: t\r\nx-api-key: {}\r\n\
                     content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{",
                    s.vk
                )
                .as_bytes(),
            )
            .await
            .expect("write");
        tokio::spawn(async move {
            while write.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        stalled.push(read);
    }
    // Keep-alive connections that made a request and stay idle.
    for _ in 0..50 {
        let (mut read, mut write) = connect(addr).await;
        write
            .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let response = read_response(&mut read).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        writers.push(write);
        stalled.push(read);
    }

    // A client with a fresh connection is answered while all 250 are held open.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let resp = fresh
        .post(s.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.vk)
        .json(&message("claude-sonnet-4-6", "hello", false))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200);
    let open = stalled.iter().filter(|r| still_open(r)).count();
    assert_eq!(
        open, 250,
        "the answer did not wait for a stalled connection to go"
    );

    // Each stalled connection is closed by its timeout.
    for read in stalled {
        closed_by_server(read).await;
    }

    // The stream ran longer than every timeout, pinged, and ended properly.
    let (text, elapsed) = streaming.await.expect("stream task");
    assert!(
        elapsed > Duration::from_millis(TIMEOUT_MS),
        "the stream must outlast the timeouts for this test to mean anything ({elapsed:?})"
    );
    let events = sse_events(&text);
    assert!(events.iter().any(|(e, _)| e == "ping"), "{text}");
    assert_eq!(
        events.last().map(|(e, _)| e.as_str()),
        Some("message_stop"),
        "{text}"
    );

    // Text logs written to a file carry no terminal colour codes.
    let log = s.gw.stderr();
    assert!(log.contains("is serving"), "{log}");
    assert!(
        log.contains("open-file limit"),
        "the RLIMIT_NOFILE figure is logged: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in the log file:\n{log}"
    );
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let s = common::setup_with(&["--max-body-bytes", "1000000"]).await;
    let addr = s.gw.addr();

    // Inference: the head only, with a declared length over --max-body-bytes.
    let (mut read, mut write) = connect(addr).await;
    write
        .write_all(
            format!(
                "POST /anthropic/v1/messages HTTP/1.1\r\nHost: t\r\nx-api-key: {}\r\n\
                 content-type: application/json\r\ncontent-length: 1000001\r\n\r\n",
                s.vk
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let response = read_response(&mut read).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let body: Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).expect("json");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "request_too_large", "{body}");
    drop(write);

    // Admin API: its own limit and error shape.
    let (mut read, mut write) = connect(addr).await;
    write
        .write_all(
            format!(
                "POST /api/providers HTTP/1.1\r\nHost: {addr}\r\n\
                 content-type: application/json\r\ncontent-length: 50000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let response = read_response(&mut read).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let body: Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).expect("json");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn the_all_in_one_data_directory_and_database_are_private() {
    let scratch = tempfile::tempdir().expect("dir");
    let data_dir = scratch.path().join("not-yet").join("tollgate");
    let gw = TollgateProcess::spawn_with(TollgateOptions {
        args: vec!["--data-dir".into(), data_dir.display().to_string()],
        ..TollgateOptions::default()
    })
    .await
    .expect("starts");
    // Write through the WAL so every SQLite file exists.
    let resp = reqwest::Client::new()
        .post(gw.url("/api/providers"))
        .json(&json!({"provider": "bedrock"}))
        .send()
        .await
        .expect("admin call");
    assert_eq!(resp.status(), 201);
    let mode = |name: &str| {
        std::fs::metadata(data_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "data directory");
    for file in [
        "secret.key",
        "tollgate.db",
        "tollgate.db-wal",
        "tollgate.db-shm",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}

/// Runs the binary to its exit (it must refuse to start) and returns its log.
fn refused(args: &[&str]) -> String {
    let out = Command::new(tollgate_binary())
        .args(args)
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_JOIN_TOKEN")
        .env("TOLLGATE_LOG_FORMAT", "text")
        .output()
        .expect("run tollgate");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {args:?}:\n{log}");
    log
}

#[test]
fn admin_tokens_have_the_same_rules_in_every_role() {
    let scratch = tempfile::tempdir().expect("dir");
    let data_dir = scratch.path().display().to_string();
    let port = free_port().expect("port").to_string();
    let listen = format!("127.0.0.1:{port}");
    let long = "0123456789abcdef-admin";
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);

    let log = refused(&[
        "--listen",
        &listen,
        "--data-dir",
        &data_dir,
        "--admin-token",
        "too-short",
    ]);
    assert!(
        log.contains("TOLLGATE_ADMIN_TOKEN must be at least 16 characters"),
        "{log}"
    );

    let control_plane = |admin: &str, join: &str| {
        refused(&[
            "control-plane",
            "--listen",
            &listen,
            "--database-url",
            "postgres://127.0.0.1:1/none",
            "--secret-key",
            &key,
            "--admin-token",
            admin,
            "--join-token",
            join,
        ])
    };
    let log = control_plane("too-short", "0123456789abcdef-join");
    assert!(
        log.contains("TOLLGATE_ADMIN_TOKEN must be at least 16 characters"),
        "{log}"
    );
    let log = control_plane(long, long);
    assert!(
        log.contains("TOLLGATE_ADMIN_TOKEN and TOLLGATE_JOIN_TOKEN must differ"),
        "{log}"
    );
    let log = control_plane(long, "too-short");
    assert!(
        log.contains("TOLLGATE_JOIN_TOKEN must be at least 16 characters"),
        "{log}"
    );

    // A data plane refuses a short join token too, before it listens or connects.
    let log = refused(&[
        "data-plane",
        "--listen",
        &listen,
        "--data-dir",
        &data_dir,
        "--control-plane",
        "http://127.0.0.1:1",
        "--join-token",
        "too-short",
    ]);
    assert!(
        log.contains("TOLLGATE_JOIN_TOKEN must be at least 16 characters"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_port_closes_silent_sockets_and_keeps_the_data_plane_link() {
    const ADMIN: &str = "admin-token-for-the-listener-test";
    const JOIN: &str = "join-token-for-the-listener-test";
    let db = TestDatabase::create("tollgate_listener").await;
    let cp_grpc: SocketAddr = format!("127.0.0.1:{}", free_port().expect("port"))
        .parse()
        .expect("addr");
    let cp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "control-plane".into(),
            "--grpc-listen".into(),
            cp_grpc.to_string(),
            // The data plane must beat these by its own speed (a debug build on a busy
            // machine): short enough that its streams outlive many of them.
            "--grpc-handshake-timeout-ms".into(),
            "1500".into(),
            "--grpc-idle-timeout-ms".into(),
            "1500".into(),
        ],
        envs: vec![
            ("TOLLGATE_DATABASE_URL".into(), db.url.clone()),
            ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN.into()),
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN.into()),
            (
                "TOLLGATE_SECRET_KEY".into(),
                base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            ),
            (
                "TOLLGATE_LOG".into(),
                "info,tollgate::listener=debug".into(),
            ),
        ],
        health_path: "/openapi.json".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("control plane starts");
    let dp_dir = tempfile::tempdir().expect("dir");
    let dp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "data-plane".into(),
            "--control-plane".into(),
            format!("http://{cp_grpc}"),
        ],
        envs: vec![("TOLLGATE_JOIN_TOKEN".into(), JOIN.into())],
        data_dir: Some(dp_dir.path().to_owned()),
        health_path: "/ready".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("data plane starts and gets its config");

    // Sockets that never send the HTTP/2 preface, or only part of it, are closed.
    let mut writers = Vec::new();
    let mut silent = Vec::new();
    for i in 0..40 {
        let (read, mut write) = connect(cp_grpc).await;
        if i % 2 == 1 {
            write.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        }
        writers.push(write);
        silent.push(read);
    }
    for read in silent {
        closed_by_server(read).await;
    }
    let cp_log = cp.stderr();
    assert!(
        cp_log
            .matches("HTTP/2 preface not received in time")
            .count()
            >= 40,
        "{cp_log}"
    );

    // Let the data plane's streams outlive a few more idle periods.
    tokio::time::sleep(Duration::from_millis(3 * 1500)).await;
    // The data plane's streams outlived many handshake and idle timeouts: a config change
    // still arrives over the first connection, which never had to be reopened.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/providers", cp.base_url()))
        .bearer_auth(ADMIN)
        .json(&json!({"provider": "bedrock"}))
        .send()
        .await
        .expect("admin call");
    assert_eq!(resp.status(), 201);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics = http
            .get(dp.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("tollgate_config_version 2") {
            assert!(
                metrics.contains("tollgate_control_plane_connected 1"),
                "{metrics}"
            );
            assert!(
                metrics.contains("tollgate_listener_connections_open{listener=\"inference\"} 1"),
                "{metrics}"
            );
            assert!(
                metrics.contains(
                    "tollgate_listener_connections_timed_out_total{listener=\"inference\",timeout=\"idle\"}"
                ),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "config never arrived: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dp_log = dp.stderr();
    assert_eq!(
        dp_log
            .matches("config stream to the control plane open")
            .count(),
        1,
        "{dp_log}"
    );
    assert_eq!(
        dp_log
            .matches("usage stream to the control plane open")
            .count(),
        1,
        "{dp_log}"
    );
    assert!(
        !cp.stderr()
            .contains("closing a connection: connection idle"),
        "{}",
        cp.stderr()
    );
    drop(writers);
}

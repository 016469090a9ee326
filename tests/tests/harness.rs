//! The end-to-end harness, exercised against `tollgate-stub` (a stand-in that speaks the
//! tollgate CLI), so it is tested before the real binary exists.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tollgate_tests::harness::{self, TollgateOptions, TollgateProcess};

fn stub() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tollgate-stub"))
}

fn options(args: &[&str]) -> TollgateOptions {
    TollgateOptions {
        binary: Some(stub()),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..TollgateOptions::default()
    }
}

#[tokio::test]
async fn spawns_waits_for_health_and_captures_output() {
    let mut opts = options(&["--admin-token", "admin-secret-123"]);
    opts.envs
        .push(("TOLLGATE_EXAMPLE".to_owned(), "from-test".to_owned()));
    let mut process = TollgateProcess::spawn_with(opts)
        .await
        .expect("stub starts");
    assert!(process.is_running());

    let health = reqwest::get(process.url("/health")).await.expect("health");
    assert_eq!(health.status(), 200);
    assert_eq!(process.base_url(), format!("http://{}", process.addr()));
    assert!(process.addr().ip().is_loopback());

    // The harness passed --listen and --data-dir; the test's args and env came through.
    let seen = std::fs::read_to_string(process.data_dir().join("stub-env.txt"))
        .expect("stub wrote its env");
    assert!(seen.contains(&format!("arg {}", process.addr())), "{seen}");
    assert!(
        seen.contains(&format!("arg {}", process.data_dir().display())),
        "{seen}"
    );
    assert!(seen.contains("arg --admin-token"), "{seen}");
    assert!(seen.contains("env TOLLGATE_EXAMPLE=from-test"), "{seen}");
    // The AWS default chain is fenced off (no shared config, no IMDS).
    assert!(
        seen.contains("env AWS_EC2_METADATA_DISABLED=true"),
        "{seen}"
    );
    assert!(seen.contains("no-aws-config"), "{seen}");

    // Output is captured to files.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process.stderr().contains("log line on stderr") {
        assert!(
            Instant::now() < deadline,
            "stderr not captured: {}",
            process.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        process.stdout().contains("tollgate-stub listening on"),
        "{}",
        process.output()
    );
    assert!(harness::assert_not_in_output(&process, "admin-secret-123").is_ok());
    let err = harness::assert_not_in_output(&process, "log line").expect_err("present in output");
    assert!(
        !err.to_string().contains("log line"),
        "the error must not echo the secret: {err}"
    );
}

#[tokio::test]
async fn kills_the_process_on_drop() {
    let process = TollgateProcess::spawn_with(options(&[]))
        .await
        .expect("stub starts");
    let addr = process.addr();
    let pid = process.pid();
    drop(process);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port still open after drop"
    );
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists() || !cfg!(target_os = "linux"),
        "process {pid} still exists"
    );
}

#[tokio::test]
async fn startup_failure_reports_the_process_output() {
    let err = TollgateProcess::spawn_with(options(&["--exit-at-startup"]))
        .await
        .expect_err("must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("exited during startup"), "{msg}");
    assert!(
        msg.contains("refusing to start (--exit-at-startup)"),
        "stderr included: {msg}"
    );
}

#[tokio::test]
async fn startup_timeout_kills_and_reports() {
    let mut opts = options(&["--never-ready"]);
    opts.startup_timeout = Duration::from_millis(600);
    let started = Instant::now();
    let err = TollgateProcess::spawn_with(opts)
        .await
        .expect_err("must time out");
    let msg = format!("{err:#}");
    assert!(msg.contains("did not answer 200"), "{msg}");
    assert!(
        msg.contains("tollgate-stub listening on"),
        "stdout included: {msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn missing_binary_is_a_clear_error() {
    let mut opts = options(&[]);
    opts.binary = Some(PathBuf::from("/nonexistent/tollgate"));
    let msg = format!(
        "{:#}",
        TollgateProcess::spawn_with(opts)
            .await
            .expect_err("no binary")
    );
    assert!(
        msg.contains("not found") && msg.contains("TOLLGATE_BIN"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_given_data_dir_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(&[]);
    opts.data_dir = Some(dir.path().to_path_buf());
    let first = TollgateProcess::spawn_with(opts.clone())
        .await
        .expect("first");
    assert_eq!(first.data_dir(), dir.path());
    drop(first);
    let second = TollgateProcess::spawn_with(opts).await.expect("second");
    assert!(second.data_dir().join("stub-env.txt").exists());
}

#[test]
fn default_binary_location() {
    // Without TOLLGATE_BIN the harness looks in <target dir>/debug/tollgate; it never builds.
    let path = harness::tollgate_binary();
    if std::env::var_os("TOLLGATE_BIN").is_none() {
        assert!(
            path.ends_with(format!("debug/tollgate{}", std::env::consts::EXE_SUFFIX)),
            "{path:?}"
        );
    }
    assert!(harness::workspace_root().join("Cargo.toml").is_file());
}

//! End-to-end harness: runs the real `tollgate` binary as a child process.
//!
//! [`TollgateProcess::spawn`] picks a free loopback port, passes
//! `--listen 127.0.0.1:PORT --data-dir <tempdir>`, waits until `GET /health` answers 200
//! (30 s by default, then fails with the process's output), captures stdout and stderr to files
//! (so tests can assert, for example, that no secret ever reaches the logs) and kills the
//! process when dropped.
//!
//! The binary is `$TOLLGATE_BIN` if set, else `<target dir>/debug/tollgate` (target dir =
//! `$CARGO_TARGET_DIR` or `<workspace>/target`). The harness never builds anything: run
//! `cargo build -p tollgate` first. `CARGO_BIN_EXE_tollgate` does not exist across crates.
//!
//! The child does not inherit `TOLLGATE_*`, `AWS_*` or `ANTHROPIC_*` variables from the test
//! environment, so a developer's shell cannot change what a test sees; pass what the test needs
//! in `envs`. The AWS default credential chain is also fenced off unless `envs` says otherwise:
//! `AWS_CONFIG_FILE`/`AWS_SHARED_CREDENTIALS_FILE` point at a missing file in the scratch dir and
//! `AWS_EC2_METADATA_DISABLED=true` (no IMDS probe).

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Default time to wait for `GET /health`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`TollgateProcess::spawn_with`].
#[derive(Debug, Clone)]
pub struct TollgateOptions {
    /// Binary to run; `None` = [`tollgate_binary`].
    pub binary: Option<PathBuf>,
    /// Extra arguments. If they contain `--listen` or `--data-dir`, the harness does not add its own.
    pub args: Vec<String>,
    /// Environment for the child (on top of the filtered parent environment).
    pub envs: Vec<(String, String)>,
    /// Data directory to use (e.g. to restart over the same state); `None` = a fresh temp dir.
    pub data_dir: Option<PathBuf>,
    /// How long to wait for `GET /health` to answer 200.
    pub startup_timeout: Duration,
    /// Path polled for readiness.
    pub health_path: String,
}

impl Default for TollgateOptions {
    fn default() -> Self {
        TollgateOptions {
            binary: None,
            args: Vec::new(),
            envs: Vec::new(),
            data_dir: None,
            startup_timeout: STARTUP_TIMEOUT,
            health_path: "/health".to_owned(),
        }
    }
}

/// A running `tollgate` process. Killed (and reaped) on drop.
#[derive(Debug)]
pub struct TollgateProcess {
    child: Child,
    addr: SocketAddr,
    base_url: String,
    data_dir: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    // Owns the log files and (unless the caller supplied one) the data dir.
    _scratch: tempfile::TempDir,
}

/// The binary the harness runs: `$TOLLGATE_BIN`, else `<target dir>/debug/tollgate`.
pub fn tollgate_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TOLLGATE_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target
        .join("debug")
        .join(format!("tollgate{}", std::env::consts::EXE_SUFFIX))
}

/// The cargo workspace root (parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

impl TollgateProcess {
    /// Starts the binary with `args` and `envs` and waits for `GET /health` = 200.
    pub async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<TollgateProcess> {
        Self::spawn_with(TollgateOptions {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..TollgateOptions::default()
        })
        .await
    }

    /// Starts the binary as described by `options`. Retries a few times if the picked port was
    /// taken in between (the child's output mentions "in use").
    pub async fn spawn_with(options: TollgateOptions) -> anyhow::Result<TollgateProcess> {
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_spawn(&options).await {
                Ok(p) => return Ok(p),
                Err(SpawnError::PortTaken(e)) => last_err = Some(e),
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("could not start tollgate")))
    }

    async fn try_spawn(options: &TollgateOptions) -> Result<TollgateProcess, SpawnError> {
        let binary = options.binary.clone().unwrap_or_else(tollgate_binary);
        if !binary.is_file() {
            return Err(SpawnError::Other(anyhow::anyhow!(
                "tollgate binary not found at {}; build it first (`cargo build -p tollgate`) or set TOLLGATE_BIN",
                binary.display()
            )));
        }
        let scratch = tempfile::Builder::new()
            .prefix("tollgate-e2e-")
            .tempdir()
            .map_err(|e| SpawnError::Other(e.into()))?;
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| scratch.path().join("data"));
        std::fs::create_dir_all(&data_dir).map_err(|e| SpawnError::Other(e.into()))?;
        let stdout_path = scratch.path().join("stdout.log");
        let stderr_path = scratch.path().join("stderr.log");

        let has_arg = |name: &str| {
            options
                .args
                .iter()
                .any(|a| a == name || a.starts_with(&format!("{name}=")))
        };
        let listen = if has_arg("--listen") {
            listen_arg(&options.args).ok_or_else(|| {
                SpawnError::Other(anyhow::anyhow!("cannot parse the --listen argument"))
            })?
        } else {
            SocketAddr::from((
                [127, 0, 0, 1],
                free_port().map_err(|e| SpawnError::Other(e.into()))?,
            ))
        };

        let mut command = Command::new(&binary);
        let missing = scratch.path().join("no-aws-config");
        command
            .env_clear()
            .envs(filtered_parent_env())
            .env("AWS_CONFIG_FILE", &missing)
            .env("AWS_SHARED_CREDENTIALS_FILE", &missing)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        // A subcommand (`control-plane`, `data-plane`) must come before its flags; the control
        // plane keeps no local data, so it gets no `--data-dir`.
        let (subcommand, rest) = match options.args.split_first() {
            Some((first, rest)) if !first.starts_with('-') => (Some(first.as_str()), rest),
            _ => (None, options.args.as_slice()),
        };
        if let Some(sub) = subcommand {
            command.arg(sub);
        }
        if !has_arg("--listen") {
            command.arg("--listen").arg(listen.to_string());
        }
        if !has_arg("--data-dir") && subcommand != Some("control-plane") {
            command.arg("--data-dir").arg(&data_dir);
        }
        command
            .args(rest)
            .envs(options.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).map_err(|e| SpawnError::Other(e.into()))?)
            .stderr(File::create(&stderr_path).map_err(|e| SpawnError::Other(e.into()))?);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))
            .map_err(SpawnError::Other)?;

        let mut process = TollgateProcess {
            child,
            addr: listen,
            base_url: format!("http://{listen}"),
            data_dir,
            stdout_path,
            stderr_path,
            _scratch: scratch,
        };
        process.wait_healthy(options).await?;
        Ok(process)
    }

    async fn wait_healthy(&mut self, options: &TollgateOptions) -> Result<(), SpawnError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| SpawnError::Other(e.into()))?;
        let url = self.url(&options.health_path);
        let deadline = Instant::now() + options.startup_timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let output = self.output();
                let msg = anyhow::anyhow!("tollgate exited during startup with {status}\n{output}");
                return Err(if output.contains("in use") {
                    SpawnError::PortTaken(msg)
                } else {
                    SpawnError::Other(msg)
                });
            }
            if let Ok(resp) = client.get(&url).send().await
                && resp.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(SpawnError::Other(anyhow::anyhow!(
                    "tollgate did not answer 200 on {url} within {:?}\n{}",
                    options.startup_timeout,
                    self.output()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// stdout and stderr, labelled, for failure messages and "no secret in logs" assertions.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process and reaps it. Idempotent.
    /// Stops the process the way an orchestrator does: SIGTERM, then SIGKILL if it has not
    /// exited within `timeout`. Returns whether it exited on its own.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return true;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for TollgateProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

enum SpawnError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SpawnError {
    fn from(e: anyhow::Error) -> Self {
        SpawnError::Other(e)
    }
}

fn listen_arg(args: &[String]) -> Option<SocketAddr> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--listen" {
            return it.next()?.parse().ok();
        }
        if let Some(v) = a.strip_prefix("--listen=") {
            return v.parse().ok();
        }
    }
    None
}

fn filtered_parent_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !(k.starts_with("TOLLGATE_")
                || k.starts_with("AWS_")
                || k.starts_with("ANTHROPIC_")
                || k.starts_with("OTEL_"))
        })
        .collect()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Fails if `needle` occurs in the process output; the message shows where.
pub fn assert_not_in_output(process: &TollgateProcess, needle: &str) -> anyhow::Result<()> {
    let output = process.output();
    if let Some(pos) = output.find(needle) {
        let start = output[..pos]
            .char_indices()
            .rev()
            .nth(80)
            .map_or(0, |(i, _)| i);
        bail!(
            "secret found in tollgate output near: …{}…",
            &output[start..pos]
        );
    }
    Ok(())
}

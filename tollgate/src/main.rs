//! The `tollgate` binary. With no subcommand it runs everything in one process (all-in-one): the
//! control plane on an embedded SQLite store and a data plane fed in-process with the same config
//! snapshots and usage records the gRPC streams carry, on 127.0.0.1:8080. `tollgate
//! control-plane` and `tollgate data-plane` run the two planes separately.

mod cli;
mod listener;
mod login;
mod metrics;
mod roles;

/// mimalloc instead of glibc malloc: the request path allocates many small, short-lived buffers
/// across worker threads, where glibc spent about a fifth of the gateway's CPU (BENCHMARKS.md §1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::roles::{AllInOneArgs, ControlPlaneArgs, DataPlaneRoleArgs};

/// Tollgate, an AI gateway for coding agents. Without a subcommand it runs all-in-one: admin
/// API, inference API and an embedded store in one process. Every flag can also be set with the
/// environment variable shown next to it.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,

    #[command(flatten)]
    all_in_one: AllInOneArgs,

    /// Log format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `tollgate=debug`.
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info", global = true)]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The control plane: admin API on PostgreSQL, and the gRPC services data planes connect to
    /// (config stream, usage reports). Serves no inference.
    ControlPlane(ControlPlaneArgs),
    /// A data plane: the inference API only. Gets its config from a control plane over gRPC,
    /// keeps serving the last good config (also from disk) while the control plane is away, and
    /// reports usage back. Opens no database connection.
    DataPlane(DataPlaneRoleArgs),
    /// Prints your personal virtual key of a gateway with single sign-on, signing you in
    /// through the browser when needed; for Claude Code's apiKeyHelper:
    /// `tollgate login --print-key --gateway https://gateway.example.com`.
    Login(login::LoginArgs),
    /// Starts a coding agent (Claude Code, Codex CLI, OpenCode) against a gateway: asks for the
    /// gateway, key, agent and model (or takes them from flags and the last run), then runs the
    /// agent with the gateway's variables set for it alone; Enter at the summary relaunches the
    /// last configuration. Options for the agent itself go after `--`.
    Launch(cli::launch::LaunchArgs),
    /// Shows the gateway, the stored key (redacted), its budget left, the models it may use and
    /// the MCP tools. Exit code 0 ok, 1 gateway unreachable or key refused, 2 no key or bad
    /// configuration.
    Status(cli::status::StatusArgs),
    /// Checks reachability (TLS errors explained), the key, clock skew, model access and MCP
    /// health. Exit code 0 when no check failed, 1 when one did, 2 no key or bad configuration.
    Doctor(cli::status::StatusArgs),
    /// The audit log: `tollgate audit verify` checks its hash chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the audit log's hash chain in the store: exit code 0 and the head hash when every
    /// row is intact, 1 and the first bad row's id when a row was edited or deleted, 2 when the
    /// store cannot be read.
    Verify(AuditVerifyArgs),
}

/// Where the store is (as for the all-in-one and the control plane).
#[derive(Debug, clap::Args)]
struct AuditVerifyArgs {
    /// PostgreSQL URL (`postgres://…`); without it, the SQLite store in the data directory.
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// The data directory holding `tollgate.db` (default `~/.local/share/tollgate`).
    #[arg(long, env = "TOLLGATE_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Role::Login(args)) = cli.role {
        // No logging setup: stdout carries only the key, diagnostics go to stderr.
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(login::run(args)),
            Err(e) => {
                eprintln!("tollgate login: cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // User commands: no logging setup, their output is for a person.
    match cli.role {
        Some(Role::Launch(args)) => cli::launch::run(args),
        Some(Role::Status(args)) => cli::status::status(args),
        Some(Role::Doctor(args)) => cli::status::doctor(args),
        role => run_role(Cli { role, ..cli }),
    }
}

fn run_role(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, &cli.log);
    listener::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Role::Audit {
        command: AuditCommand::Verify(args),
    }) = &cli.role
    {
        return runtime.block_on(audit_verify(args));
    }
    let result = runtime.block_on(async move {
        match cli.role {
            None => roles::all_in_one(cli.all_in_one).await,
            Some(
                Role::Audit { .. }
                | Role::Login(_)
                | Role::Launch(_)
                | Role::Status(_)
                | Role::Doctor(_),
            ) => Ok(()),
            Some(Role::ControlPlane(args)) => roles::control_plane(args).await,
            Some(Role::DataPlane(args)) => roles::data_plane(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tollgate stopped");
            ExitCode::from(2)
        }
    }
}

/// `tollgate audit verify`: reads the whole audit log and checks its chain
/// (`tollgate_control_plane::audit_chain`). The result goes to stdout.
async fn audit_verify(args: &AuditVerifyArgs) -> ExitCode {
    use tollgate_control_plane::Store as _;
    let rows = match &args.database_url {
        Some(url) => match tollgate_control_plane::PostgresStore::connect(url).await {
            Ok(store) => {
                let rows = store.audit_chain().await;
                store.close().await;
                rows
            }
            Err(e) => {
                eprintln!("error: cannot open the PostgreSQL store: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(roles::default_data_dir);
            let path = dir.join("tollgate.db");
            if !path.exists() {
                eprintln!("error: no store at {}", path.display());
                return ExitCode::from(2);
            }
            match tollgate_control_plane::SqliteStore::open(&path).await {
                Ok(store) => store.audit_chain().await,
                Err(e) => {
                    eprintln!("error: cannot open the SQLite store: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: cannot read the audit log: {e}");
            return ExitCode::from(2);
        }
    };
    match tollgate_control_plane::audit_chain::verify(&rows) {
        Ok(report) => {
            println!(
                "audit log intact: {} chained rows{}; head {}",
                report.chained,
                if report.unchained > 0 {
                    format!(
                        " (and {} older rows from before the chain began)",
                        report.unchained
                    )
                } else {
                    String::new()
                },
                report.head.as_deref().unwrap_or("(none)")
            );
            ExitCode::SUCCESS
        }
        Err(broken) => {
            println!("audit log broken at row {}: {}", broken.id, broken.reason);
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; text logs are coloured only when stderr is a terminal (a log file or a
/// journal gets no ANSI escape codes).
fn init_logging(format: LogFormat, filter: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

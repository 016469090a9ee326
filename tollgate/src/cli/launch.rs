//! `tollgate launch` (I/O): the prompts, the key store, the model list, then the harness started
//! in place of this process (`exec` on Unix) with the gateway's variables set for it alone.
//!
//! **Interactive** (a terminal, no `--yes`): with complete last choices and a stored key, the
//! summary comes first and Enter relaunches them; otherwise, or after "Change", the prompts:
//! gateway URL (default the last one, else `http://localhost:8080`), key (the stored one, a
//! pasted one, or SSO sign-in as `tollgate login`), harness, model (the gateway's list for that
//! key, filtered as you type), then the summary. **Non-interactive** (`--yes`, or no terminal):
//! flags, then the last choices; the key from stdin (`--key-stdin`), `TOLLGATE_API_KEY`, or the
//! key store; a missing model is a usage error (exit 2).
//!
//! Choices are saved to `launch.json` ([`super::config`]); a new key to the key store
//! ([`super::keystore`]). Nothing else is written: the harness's own settings files are not
//! touched.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};

use super::config::{self, DEFAULT_GATEWAY, Saved};
use super::gateway::{Gateway, GatewayError};
use super::harness::{self, Choices, Harness};
use super::keystore::{KeyStore, Place, redact};
use super::render::{self, EXIT_USAGE};
use super::tmux;

#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// The gateway's URL (default: the last one used, else http://localhost:8080).
    #[arg(long, env = "TOLLGATE_GATEWAY")]
    gateway: Option<String>,

    /// The coding agent to start (default: the last one, else claude). `gemini` is refused:
    /// Gemini CLI speaks only the Gemini API, which this gateway does not serve.
    #[arg(long, value_enum)]
    harness: Option<Harness>,

    /// The model (default: the last one; asked for from the gateway's list when interactive).
    #[arg(long)]
    model: Option<String>,

    /// Claude Code's small/fast model (background tasks, the `haiku` alias).
    #[arg(long)]
    small_model: Option<String>,

    /// Read the virtual key from stdin (one line), and store it. Without it: the
    /// TOLLGATE_API_KEY variable (used for this launch only, not stored), else the stored key.
    #[arg(long)]
    key_stdin: bool,

    /// Sign in through the browser (single sign-on, as `tollgate login`) to get the key.
    #[arg(long)]
    sso: bool,

    /// With --sso: print the sign-in URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,

    /// Do not register the gateway's MCP tools (`<gateway>/mcp`) in the Claude Code session
    /// (this launch; Enter at the summary relaunches as last time).
    #[arg(long)]
    no_mcp: bool,

    /// No prompts: flags, then the last choices; fails (exit 2) when something is missing.
    #[arg(long, short = 'y')]
    yes: bool,

    /// Inside tmux: start the session in a new tmux window named after the model's tier
    /// (e.g. a second Claude Code on another model next to the first).
    #[arg(long)]
    new_window: bool,

    /// Outside tmux: start a tmux session for it (switch windows later with --new-window).
    #[arg(long)]
    tmux: bool,

    /// The harness program to run instead of the one on PATH (`claude`, `codex`, `opencode`).
    #[arg(long, env = "TOLLGATE_HARNESS_PATH")]
    harness_path: Option<PathBuf>,

    /// Arguments for the harness itself, after `--` (e.g. `-- --resume`).
    #[arg(last = true)]
    harness_args: Vec<String>,
}

/// A usage or configuration problem (exit 2), as opposed to a failure (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs `tollgate launch`: it only returns on failure, or when tmux took the session over.
pub fn run(args: LaunchArgs) -> ExitCode {
    match launch(args) {
        Ok(code) => code,
        Err(e) => {
            // Errors can quote the gateway: terminal-safe.
            eprintln!(
                "tollgate launch: {}",
                render::escape_line(&format!("{e:#}"))
            );
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// What the prompts or flags decided, with the key and where it is kept.
struct Decided {
    choices: Choices,
    key: String,
    place: Place,
    /// Open in a tmux window (summary choice or flag).
    new_window: bool,
}

fn launch(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    if let Some(why) = args.harness.and_then(Harness::unsupported) {
        return Err(UsageError(why.to_owned()).into());
    }
    let config_dir = super::keystore::config_dir().ok_or_else(|| {
        UsageError("cannot find a configuration directory: set XDG_CONFIG_HOME or HOME".into())
    })?;
    let config_path = config::path(&config_dir);
    let saved = config::load(&config_path).map_err(|e| UsageError(format!("{e:#}")))?;
    let store = KeyStore::from_env()?;
    let interactive =
        !args.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let decided = if interactive {
        interactive_flow(&args, &saved, &store)?
    } else {
        flags_flow(&args, &saved, &store)?
    };
    let Some(decided) = decided else {
        return Ok(ExitCode::SUCCESS);
    };
    config::save(&config_path, &Saved::from_choices(&decided.choices))?;
    if decided.new_window || args.new_window || args.tmux {
        return open_in_tmux(&args, &decided);
    }
    exec(&args, &decided)
}

/// `--yes` or no terminal: flags, then the last choices.
fn flags_flow(
    args: &LaunchArgs,
    saved: &Saved,
    store: &KeyStore,
) -> anyhow::Result<Option<Decided>> {
    let gateway = config::gateway_url(
        args.gateway
            .as_deref()
            .or(saved.gateway.as_deref())
            .unwrap_or(DEFAULT_GATEWAY),
    )
    .map_err(|e| UsageError(format!("{e:#}")))?;
    let harness = args.harness.or(saved.harness).unwrap_or(Harness::Claude);
    let model = args
        .model
        .clone()
        .or_else(|| saved.model.clone())
        .ok_or_else(|| UsageError("no model: pass --model (no earlier choice is saved)".into()))?;
    let (key, place) = flag_key(args, store, &gateway)?.ok_or_else(|| {
        UsageError(format!(
            "no virtual key for {gateway}: pipe it to --key-stdin, set TOLLGATE_API_KEY, run \
             `tollgate login --gateway {gateway}`, or run `tollgate launch` in a terminal"
        ))
    })?;
    Ok(Some(Decided {
        choices: Choices {
            gateway,
            harness,
            model,
            small_model: args
                .small_model
                .clone()
                .or_else(|| saved.small_model.clone()),
            mcp: !args.no_mcp,
        },
        key,
        place,
        new_window: false,
    }))
}

/// The key from `--key-stdin` (stored), `TOLLGATE_API_KEY` (this launch only, not stored) or
/// `--sso` (stored), else the store.
fn flag_key(
    args: &LaunchArgs,
    store: &KeyStore,
    gateway: &str,
) -> anyhow::Result<Option<(String, Place)>> {
    if args.key_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the key from stdin")?;
        if let Some(key) = Some(line.trim().to_owned()).filter(|k| !k.is_empty()) {
            let place = store.save(gateway, &key)?;
            return Ok(Some((key, place)));
        }
    } else if let Some(key) = std::env::var("TOLLGATE_API_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
    {
        return Ok(Some((key, Place::Env)));
    }
    if args.sso {
        let key = block_on(crate::login::sign_in(store, gateway, args.no_browser))?;
        let place = store.load(gateway)?.map_or(Place::Keyring, |(_, p)| p);
        return Ok(Some((key, place)));
    }
    store.load(gateway)
}

/// The prompts. `None`: the user quit.
fn interactive_flow(
    args: &LaunchArgs,
    saved: &Saved,
    store: &KeyStore,
) -> anyhow::Result<Option<Decided>> {
    // The last configuration, complete, with its key and no flag choosing another gateway,
    // harness or model: summary first, with the other flags (`--no-mcp`, `--small-model`,
    // `--sso`) applied to it.
    let flags_given = args.gateway.is_some() || args.harness.is_some() || args.model.is_some();
    if !flags_given && let Some(last) = saved.choices() {
        let last = with_flags(args, last);
        let key = if args.sso {
            // A new key by sign-in, never the stored one.
            let key = block_on(crate::login::sign_in(store, &last.gateway, args.no_browser))?;
            let place = store
                .load(&last.gateway)?
                .map_or(Place::Keyring, |(_, p)| p);
            Some((key, place))
        } else {
            store.load(&last.gateway)?
        };
        if let Some((key, place)) = key {
            eprintln!(
                "Last configuration:\n{}",
                render::summary(&last, &key, &place.to_string())
            );
            match confirm()? {
                Confirm::Launch => {
                    return Ok(Some(Decided {
                        choices: last,
                        key,
                        place,
                        new_window: false,
                    }));
                }
                Confirm::NewWindow => {
                    return Ok(Some(Decided {
                        choices: last,
                        key,
                        place,
                        new_window: true,
                    }));
                }
                Confirm::Quit => return Ok(None),
                Confirm::Change => {}
            }
        }
    }
    let mut defaults = saved.clone();
    loop {
        let (choices, key, place) = prompts(args, &defaults, store)?;
        eprintln!("\n{}", render::summary(&choices, &key, &place.to_string()));
        let new_window = match confirm()? {
            Confirm::Launch => false,
            Confirm::NewWindow => true,
            Confirm::Quit => return Ok(None),
            // Again, from these choices.
            Confirm::Change => {
                defaults = Saved::from_choices(&choices);
                continue;
            }
        };
        return Ok(Some(Decided {
            choices,
            key,
            place,
            new_window,
        }));
    }
}

/// The remembered choices with this launch's `--no-mcp` and `--small-model` applied.
fn with_flags(args: &LaunchArgs, mut last: Choices) -> Choices {
    if args.no_mcp {
        last.mcp = false;
    }
    if let Some(small) = &args.small_model {
        last.small_model = Some(small.clone());
    }
    last
}

/// Gateway, key, harness and model, each defaulting to `saved`.
fn prompts(
    args: &LaunchArgs,
    saved: &Saved,
    store: &KeyStore,
) -> anyhow::Result<(Choices, String, Place)> {
    let default_gateway = args
        .gateway
        .clone()
        .or_else(|| saved.gateway.clone())
        .unwrap_or_else(|| DEFAULT_GATEWAY.to_owned());
    let gateway = loop {
        let raw = inquire::Text::new("Gateway URL:")
            .with_default(&default_gateway)
            .prompt()
            .map_err(prompt_error)?;
        match config::gateway_url(&raw) {
            Ok(url) => break url,
            Err(e) => eprintln!("{e:#}"),
        }
    };
    let (key, place, models) = prompt_key(args, store, &gateway)?;
    let harness = match args.harness {
        Some(h) => h,
        None => {
            let start = saved
                .harness
                .and_then(|h| Harness::OFFERED.iter().position(|o| *o == h))
                .unwrap_or(0);
            inquire::Select::new("Coding agent:", Harness::OFFERED.to_vec())
                .with_starting_cursor(start)
                .prompt()
                .map_err(prompt_error)?
        }
    };
    let model = match &args.model {
        Some(m) => m.clone(),
        None => prompt_model(&models, saved.model.as_deref())?,
    };
    let choices = Choices {
        gateway,
        harness,
        model,
        small_model: args
            .small_model
            .clone()
            .or_else(|| saved.small_model.clone()),
        mcp: !args.no_mcp,
    };
    Ok((choices, key, place))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    Launch,
    NewWindow,
    Change,
    Quit,
}

impl std::fmt::Display for Confirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Confirm::Launch => "Launch",
            Confirm::NewWindow => "Launch in a new tmux window",
            Confirm::Change => "Change the settings",
            Confirm::Quit => "Quit",
        })
    }
}

/// The summary's choice; Enter launches.
fn confirm() -> anyhow::Result<Confirm> {
    let mut options = vec![Confirm::Launch];
    if std::env::var_os("TMUX").is_some() {
        options.push(Confirm::NewWindow);
    }
    options.extend([Confirm::Change, Confirm::Quit]);
    inquire::Select::new("Enter to launch:", options)
        .without_filtering()
        .without_help_message()
        .prompt()
        .map_err(prompt_error)
}

/// The key (stored, pasted or SSO), checked by fetching the model list with it.
fn prompt_key(
    args: &LaunchArgs,
    store: &KeyStore,
    gateway: &str,
) -> anyhow::Result<(String, Place, Vec<String>)> {
    const STORED: &str = "Use the stored key";
    const PASTE: &str = "Paste a virtual key";
    const SSO: &str = "Sign in with single sign-on (browser)";
    loop {
        let stored = store.load(gateway)?;
        let choice = if args.sso {
            SSO
        } else {
            let mut options = Vec::new();
            if stored.is_some() {
                options.push(STORED);
            }
            options.extend([PASTE, SSO]);
            let help = stored
                .as_ref()
                .map(|(k, p)| format!("stored: {} in {p}", redact(k)));
            let mut select = inquire::Select::new("Virtual key:", options).without_filtering();
            if let Some(help) = &help {
                select = select.with_help_message(help);
            }
            select.prompt().map_err(prompt_error)?
        };
        let (key, place) = match choice {
            STORED => stored.expect("offered only when stored"),
            PASTE => {
                let key = inquire::Password::new("Virtual key (sk-tg-…):")
                    .without_confirmation()
                    .with_display_mode(inquire::PasswordDisplayMode::Masked)
                    .prompt()
                    .map_err(prompt_error)?;
                let key = key.trim().to_owned();
                if key.is_empty() {
                    continue;
                }
                let place = store.save(gateway, &key)?;
                (key, place)
            }
            _ => {
                let key = block_on(crate::login::sign_in(store, gateway, args.no_browser))?;
                let place = store.load(gateway)?.map_or(Place::Keyring, |(_, p)| p);
                (key, place)
            }
        };
        let models = block_on(async {
            let gw = Gateway::new(gateway, &key)?;
            gw.models().await
        });
        match models {
            Ok(models) => return Ok((key, place, pickable(models))),
            Err(e @ GatewayError::KeyRefused { .. }) => {
                eprintln!("{e}; choose another key");
                if args.sso {
                    return Err(e.into());
                }
            }
            Err(e) => {
                eprintln!("warning: cannot list the gateway's models ({e}); type the model name");
                return Ok((key, place, Vec::new()));
            }
        }
    }
}

/// The gateway's models that can be offered in the picker as they are: an id that
/// [`render::terminal_safe`] would change (control characters, too long) is left out, with a
/// warning naming it escaped; it can still be typed with `--model`.
fn pickable(models: Vec<String>) -> Vec<String> {
    models
        .into_iter()
        .filter(|m| {
            let safe = matches!(render::terminal_safe(m), std::borrow::Cow::Borrowed(_));
            if !safe {
                eprintln!(
                    "warning: the gateway lists a model id with control characters or too long \
                     to show, left out of the list: {}",
                    render::terminal_safe(m)
                );
            }
            safe
        })
        .collect()
}

/// The model, from the gateway's list filtered as you type (or typed when there is no list).
fn prompt_model(models: &[String], last: Option<&str>) -> anyhow::Result<String> {
    if models.is_empty() {
        let mut text = inquire::Text::new("Model:");
        if let Some(last) = last {
            text = text.with_default(last);
        }
        return text.prompt().map_err(prompt_error);
    }
    let start = last
        .and_then(|l| models.iter().position(|m| m == l))
        .unwrap_or(0);
    // Keeps the gateway's order: every match scores by its position.
    let scorer = |filter: &str, _: &String, value: &str, idx: usize| -> Option<i64> {
        render::model_matches(filter, value).then(|| -(idx as i64))
    };
    inquire::Select::new("Model (type to filter):", models.to_vec())
        .with_starting_cursor(start)
        .with_scorer(&scorer)
        .with_page_size(12)
        .prompt()
        .map_err(prompt_error)
}

fn prompt_error(e: inquire::InquireError) -> anyhow::Error {
    match e {
        inquire::InquireError::OperationCanceled | inquire::InquireError::OperationInterrupted => {
            anyhow!("cancelled")
        }
        e => anyhow!("prompt failed: {e}"),
    }
}

/// Runs a future on a current-thread runtime (the CLI's few HTTP calls).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

/// Starts the harness in place of this process.
fn exec(args: &LaunchArgs, d: &Decided) -> anyhow::Result<ExitCode> {
    let plan = harness::plan(
        &d.choices,
        &d.key,
        args.harness_path.as_deref().and_then(Path::to_str),
        &args.harness_args,
    )
    .map_err(|why| UsageError(why.to_owned()))?;
    eprintln!(
        "tollgate: starting {} on {} through {} (key {} from {})",
        d.choices.harness,
        render::terminal_safe(&d.choices.model),
        render::terminal_safe(&d.choices.gateway),
        redact(&d.key),
        d.place
    );
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args);
    for name in &plan.env_remove {
        cmd.env_remove(name);
    }
    cmd.envs(plan.env.iter().map(|(k, v)| (k, v)));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let e = cmd.exec();
        Err(not_started(&plan.program, d.choices.harness, e))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| not_started(&plan.program, d.choices.harness, e))?;
        Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ))
    }
}

fn not_started(program: &str, harness: Harness, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow!(
            "cannot start {harness}: `{program}` is not on PATH; install it, or pass \
             --harness-path /path/to/{}",
            harness.program()
        )
    } else {
        anyhow!("cannot start {harness} (`{program}`): {e}")
    }
}

/// `--new-window` / `--tmux`: tmux runs `tollgate launch --yes …` for these choices in a new
/// window (inside tmux) or a new session (outside); that process reads the key from the store.
fn open_in_tmux(args: &LaunchArgs, d: &Decided) -> anyhow::Result<ExitCode> {
    if let Some(why) = d.choices.harness.unsupported() {
        return Err(UsageError(why.to_owned()).into());
    }
    if d.place == Place::Env {
        bail!(UsageError(
            "a key from TOLLGATE_API_KEY is used for this launch only and never stored, but the \
             tmux window's tollgate reads the key from the key store: pipe the key to \
             --key-stdin (which stores it) or run `tollgate login` first"
                .into()
        ));
    }
    let inside = std::env::var_os("TMUX").is_some_and(|v| !v.is_empty());
    if args.new_window && !inside && !args.tmux {
        bail!(UsageError(
            "--new-window needs to run inside tmux ($TMUX is not set); use --tmux to start a tmux session"
                .into()
        ));
    }
    let exe = std::env::current_exe().context("cannot find the tollgate executable")?;
    let command = tmux::launch_argv(
        &exe,
        &d.choices,
        args.harness_path.as_deref(),
        &args.harness_args,
    );
    let env: Vec<(String, String)> = tmux::PASSED_ENV
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), std::env::var(k).ok()?)))
        .collect();
    let tmux_args = tmux::tmux_args(inside, &d.choices, &env, command);
    let mut cmd = std::process::Command::new("tmux");
    cmd.args(&tmux_args);
    // The key is read from the store by the window's tollgate: never in tmux's environment.
    for name in [
        "TOLLGATE_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_API_KEY",
    ] {
        cmd.env_remove(name);
    }
    let status = cmd.status().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!("tmux is not installed (or not on PATH)")
        } else {
            anyhow!("cannot run tmux: {e}")
        }
    })?;
    if !status.success() {
        bail!("tmux failed ({status})");
    }
    if inside {
        eprintln!(
            "tollgate: {} on {} opened in tmux window `{}`",
            d.choices.harness,
            render::terminal_safe(&d.choices.model),
            harness::tier(&d.choices.model)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_picker_leaves_out_ids_that_are_not_terminal_safe() {
        let models = vec![
            "claude-sonnet-4-6".to_owned(),
            "evil\u{1b}]0;pwned\u{7}".to_owned(),
            "x".repeat(render::TERMINAL_SAFE_MAX + 1),
            "bedrock/claude-haiku-4-5".to_owned(),
        ];
        assert_eq!(
            pickable(models),
            ["claude-sonnet-4-6", "bedrock/claude-haiku-4-5"]
        );
    }

    #[test]
    fn flags_override_the_remembered_choices() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            launch: LaunchArgs,
        }
        let last = Choices {
            gateway: "http://gw:8080".into(),
            harness: Harness::Claude,
            model: "claude-opus-4-6".into(),
            small_model: Some("claude-haiku-4-5".into()),
            mcp: true,
        };
        let cli = Cli::try_parse_from(["launch"]).unwrap();
        assert_eq!(with_flags(&cli.launch, last.clone()), last);
        let cli =
            Cli::try_parse_from(["launch", "--no-mcp", "--small-model", "tiny-model"]).unwrap();
        let c = with_flags(&cli.launch, last.clone());
        assert!(!c.mcp);
        assert_eq!(c.small_model.as_deref(), Some("tiny-model"));
        assert_eq!(c.model, last.model);
    }
}

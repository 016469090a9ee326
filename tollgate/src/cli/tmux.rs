//! Sessions side by side in tmux (argv construction pure; running tmux in `launch.rs`).
//!
//! `tollgate launch --new-window` inside tmux (`$TMUX` set) opens a window named after the
//! model's tier running `tollgate launch --yes` with the same gateway and harness and the chosen
//! model; `--tmux` outside tmux starts a tmux session whose first window does the same. The
//! window's `tollgate` reads the key from the key store itself: the key is never on tmux's
//! command line (which every user sees in `ps`) nor in tmux's environment.

use std::path::Path;

use super::harness::{Choices, tier};

/// Variables passed to the window with `-e` (tmux gives a new window the server's environment,
/// not the client's): where the key store and config are, and how to reach the keyring.
pub const PASSED_ENV: [&str; 6] = [
    "PATH",
    "HOME",
    "XDG_CONFIG_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "TOLLGATE_KEYRING",
];

/// `tollgate launch --yes …` for `choices` (never the key).
pub fn launch_argv(
    exe: &Path,
    choices: &Choices,
    harness_path: Option<&Path>,
    extra: &[String],
) -> Vec<String> {
    let mut argv = vec![
        exe.display().to_string(),
        "launch".into(),
        "--yes".into(),
        "--gateway".into(),
        choices.gateway.clone(),
        "--harness".into(),
        choices.harness.flag().into(),
        "--model".into(),
        choices.model.clone(),
    ];
    if let Some(small) = &choices.small_model {
        argv.push("--small-model".into());
        argv.push(small.clone());
    }
    if !choices.mcp {
        argv.push("--no-mcp".into());
    }
    if let Some(p) = harness_path {
        argv.push("--harness-path".into());
        argv.push(p.display().to_string());
    }
    if !extra.is_empty() {
        argv.push("--".into());
        argv.extend(extra.iter().cloned());
    }
    argv
}

/// tmux's arguments: `new-window` (inside tmux) or `new-session` (outside), the window named
/// after the model's tier, `env` passed with `-e`, then the command.
pub fn tmux_args(
    inside: bool,
    choices: &Choices,
    env: &[(String, String)],
    command: Vec<String>,
) -> Vec<String> {
    let mut args: Vec<String> = if inside {
        vec!["new-window".into()]
    } else {
        vec!["new-session".into()]
    };
    args.push("-n".into());
    args.push(tier(&choices.model));
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.push("--".into());
    args.extend(command);
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::harness::Harness;

    #[test]
    fn windows_run_tollgate_launch_without_the_key() {
        let c = Choices {
            gateway: "http://gw:8080".into(),
            harness: Harness::Claude,
            model: "claude-opus-4-6".into(),
            small_model: None,
            mcp: false,
        };
        let cmd = launch_argv(
            Path::new("/bin/tollgate"),
            &c,
            Some(Path::new("/t/fake-claude")),
            &["--resume".into()],
        );
        assert_eq!(
            cmd,
            [
                "/bin/tollgate",
                "launch",
                "--yes",
                "--gateway",
                "http://gw:8080",
                "--harness",
                "claude",
                "--model",
                "claude-opus-4-6",
                "--no-mcp",
                "--harness-path",
                "/t/fake-claude",
                "--",
                "--resume"
            ]
        );
        let env = vec![("XDG_CONFIG_HOME".to_owned(), "/cfg".to_owned())];
        let args = tmux_args(true, &c, &env, cmd.clone());
        assert_eq!(
            &args[..6],
            [
                "new-window",
                "-n",
                "opus",
                "-e",
                "XDG_CONFIG_HOME=/cfg",
                "--"
            ]
        );
        assert_eq!(&args[6..], &cmd[..]);
        assert_eq!(tmux_args(false, &c, &[], vec![])[0], "new-session");
    }
}

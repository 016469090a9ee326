//! The user-facing commands: `tollgate launch` starts a coding agent against a gateway,
//! `tollgate status` shows what the gateway says of the stored key, `tollgate doctor` checks
//! what stops a session. `tollgate login` (`crate::login`) shares the key store.
//!
//! | file | role |
//! |---|---|
//! | `harness.rs` | each coding agent's program, argv and environment for a gateway, key and model; the MCP attach (pure) |
//! | `config.rs` | the last choices (`launch.json`), gateway URL checks |
//! | `keystore.rs` | the virtual key in the OS keyring, else a warned 0600 file |
//! | `render.rs` | model filter, launch summary, doctor's checks, clock-skew thresholds, exit codes (pure) |
//! | `tmux.rs` | sessions side by side: the tmux window / session argv (pure) |
//! | `gateway.rs` | HTTP to the gateway: models, `/v1/key`, MCP servers and endpoint, `/health` (I/O) |
//! | `launch.rs` | `tollgate launch`: prompts, key, exec of the harness, tmux (I/O) |
//! | `status.rs` | `tollgate status` and `tollgate doctor`: gathering (I/O), text and checks (pure) |

pub mod config;
pub mod gateway;
pub mod harness;
pub mod keystore;
pub mod launch;
pub mod render;
pub mod status;
pub mod tmux;

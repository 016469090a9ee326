//! `tollgate status` and `tollgate doctor`: what the gateway says of the stored key, and the
//! checks that find what stops a session. The rendering ([`status_text`]) and the decisions
//! ([`super::render`]) are pure; [`gather`] does the HTTP calls.
//!
//! Exit codes (both commands): 0 every check passed (warnings allowed), 1 a check failed
//! (status: gateway unreachable, `/health` answering 5xx, or key refused), 2 usage or configuration error (no key
//! stored or given, bad gateway URL, unreadable `launch.json`).

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use super::config::{self, DEFAULT_GATEWAY};
use super::gateway::{Gateway, GatewayError};
use super::keystore::{KeyStore, Place, redact};
use super::render::{self, Check, EXIT_FAILED, EXIT_OK, EXIT_USAGE, McpServerState, Outcome};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The gateway's URL (default: the last one `tollgate launch` used, else
    /// http://localhost:8080).
    #[arg(long, env = "TOLLGATE_GATEWAY")]
    gateway: Option<String>,

    /// The model whose access `doctor` checks (default: the last one `tollgate launch` used).
    #[arg(long)]
    model: Option<String>,
}

/// Everything the gateway answered, for rendering.
pub struct Gathered {
    pub gateway: String,
    pub key: String,
    pub place: Place,
    pub local_unix: i64,
    pub probe: Result<super::gateway::Probe, GatewayError>,
    pub models: Result<Vec<String>, GatewayError>,
    pub key_info: Result<Value, GatewayError>,
    pub mcp_servers: Result<Vec<McpServerState>, GatewayError>,
    pub mcp_tools: Result<Vec<String>, GatewayError>,
}

/// The gateway and key to check (flags, then the last launch, then the default), or a usage
/// error.
fn target(args: &StatusArgs) -> Result<(String, String, Place, Option<String>), String> {
    let saved = config::load(&config::path(
        &super::keystore::config_dir()
            .ok_or("cannot find a configuration directory: set XDG_CONFIG_HOME or HOME")?,
    ))
    .map_err(|e| format!("{e:#}"))?;
    let gateway = config::gateway_url(
        args.gateway
            .as_deref()
            .or(saved.gateway.as_deref())
            .unwrap_or(DEFAULT_GATEWAY),
    )
    .map_err(|e| format!("{e:#}"))?;
    let store = KeyStore::from_env().map_err(|e| format!("{e:#}"))?;
    let (key, place) = match std::env::var("TOLLGATE_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        Some(k) => (k.trim().to_owned(), Place::Env),
        None => store
            .load(&gateway)
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| {
                format!(
                    "no virtual key for {gateway}: run `tollgate launch` or `tollgate login --gateway {gateway}`, or set TOLLGATE_API_KEY"
                )
            })?,
    };
    let model = args.model.clone().or(saved.model);
    Ok((gateway, key, place, model))
}

async fn gather(gateway: String, key: String, place: Place) -> Gathered {
    let gw = match Gateway::new(&gateway, &key) {
        Ok(gw) => gw,
        Err(e) => {
            let again = || GatewayError::Unreachable {
                url: gateway.clone(),
                why: e.to_string(),
            };
            return Gathered {
                probe: Err(again()),
                models: Err(again()),
                key_info: Err(again()),
                mcp_servers: Err(again()),
                mcp_tools: Err(again()),
                local_unix: now_unix(),
                gateway,
                key,
                place,
            };
        }
    };
    let probe = gw.probe().await;
    let local_unix = now_unix();
    let reachable = probe.is_ok();
    let skipped = || GatewayError::Unreachable {
        url: gateway.clone(),
        why: "skipped: the gateway is unreachable".into(),
    };
    let (models, key_info, mcp_servers, mcp_tools) = if reachable {
        tokio::join!(gw.models(), gw.key_info(), gw.mcp_servers(), gw.mcp_tools())
    } else {
        (
            Err(skipped()),
            Err(skipped()),
            Err(skipped()),
            Err(skipped()),
        )
    };
    Gathered {
        gateway,
        key,
        place,
        local_unix,
        probe,
        models,
        key_info,
        mcp_servers,
        mcp_tools,
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

/// `tollgate status`.
pub fn status(args: StatusArgs) -> ExitCode {
    let (gateway, key, place, _) = match target(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tollgate status: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let g = block_on(gather(gateway, key, place));
    print!("{}", status_text(&g));
    let unhealthy = match &g.probe {
        Ok(p) => render::health_outcome(p.status) == Outcome::Fail,
        Err(_) => true,
    };
    let failed = unhealthy || matches!(g.models, Err(GatewayError::KeyRefused { .. }));
    ExitCode::from(if failed { EXIT_FAILED } else { EXIT_OK })
}

/// `tollgate doctor`.
pub fn doctor(args: StatusArgs) -> ExitCode {
    let (gateway, key, place, model) = match target(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tollgate doctor: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let g = block_on(gather(gateway, key, place));
    let checks = doctor_checks(&g, model.as_deref());
    print!("{}", render::checks(&checks));
    ExitCode::from(render::exit_code(&checks))
}

/// `tollgate status`'s text.
pub fn status_text(g: &Gathered) -> String {
    let mut out = String::new();
    let reach = match &g.probe {
        Ok(p) => match render::health_outcome(p.status) {
            Outcome::Fail => format!("UNHEALTHY (/health answered {})", p.status),
            _ => format!("reachable (/health {})", p.status),
        },
        Err(e) => format!("UNREACHABLE: {e}"),
    };
    let _ = writeln!(
        out,
        "gateway    {} — {reach}",
        render::terminal_safe(&g.gateway)
    );
    let validity = match &g.models {
        Ok(_) => "accepted".to_owned(),
        Err(GatewayError::KeyRefused { message, .. }) => format!("REFUSED: {message}"),
        Err(e) => format!("not checked ({e})"),
    };
    let _ = writeln!(
        out,
        "key        {} ({}) — {validity}",
        redact(&g.key),
        g.place
    );
    match &g.key_info {
        Ok(info) => {
            // Every string of /v1/key is the gateway's: terminal-safe before it is printed.
            let s = |v: &Value| render::safe(v.as_str().unwrap_or_default());
            let _ = writeln!(out, "key id     {} ({})", s(&info["id"]), s(&info["name"]));
            for owner in ["team", "customer"] {
                if info[owner].is_object() {
                    let name = s(&info[owner]["name"]);
                    let id = s(&info[owner]["id"]);
                    let _ = writeln!(
                        out,
                        "{owner:<10} {}",
                        if name.is_empty() {
                            id
                        } else {
                            format!("{name} ({id})")
                        }
                    );
                }
            }
            let _ = writeln!(
                out,
                "expires    {}",
                render::terminal_safe(info["expires_at"].as_str().unwrap_or("never"))
            );
            let budgets = info["budgets"].as_array().cloned().unwrap_or_default();
            if budgets.is_empty() {
                let _ = writeln!(out, "budget     no budget applies");
            }
            for b in &budgets {
                let level = s(&b["level"]).replace('_', " ");
                let name = s(&b["level_name"]);
                let _ = writeln!(
                    out,
                    "budget     {level} {name}: ${:.2} left of ${:.2} ({} window ends {})",
                    b["remaining_usd"].as_f64().unwrap_or(0.0),
                    b["limit_usd"].as_f64().unwrap_or(0.0),
                    s(&b["period"]),
                    s(&b["window_end"]),
                );
            }
            if !budgets.is_empty() {
                let _ = writeln!(out, "           (as {} counts it)", s(&info["counted_by"]));
            }
            if let Some(allowed) = info["allowed_models"].as_array() {
                for a in allowed {
                    let patterns: Vec<String> = a["patterns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(s)
                        .collect();
                    let _ = writeln!(
                        out,
                        "patterns   {}: {}",
                        s(&a["provider"]),
                        patterns.join(", ")
                    );
                }
            }
        }
        Err(GatewayError::NotServed { .. }) => {
            let _ = writeln!(
                out,
                "budget     unknown (this gateway does not serve /v1/key: an older version)"
            );
        }
        Err(e) => {
            let _ = writeln!(out, "budget     unknown ({e})");
        }
    }
    match &g.models {
        Ok(models) => {
            let shown: Vec<std::borrow::Cow<'_, str>> = models
                .iter()
                .take(8)
                .map(|m| render::terminal_safe(m))
                .collect();
            let more = models.len().saturating_sub(shown.len());
            let _ = writeln!(
                out,
                "models     {} allowed: {}{}",
                models.len(),
                shown.join(", "),
                if more > 0 {
                    format!(", … ({more} more)")
                } else {
                    String::new()
                }
            );
        }
        Err(e) => {
            let _ = writeln!(out, "models     unknown ({e})");
        }
    }
    match (&g.mcp_servers, &g.mcp_tools) {
        (Err(GatewayError::NotServed { .. }), _) => {
            let _ = writeln!(out, "MCP        not served by this gateway");
        }
        (servers, tools) => {
            if let Ok(servers) = servers {
                let _ = writeln!(
                    out,
                    "MCP        {}",
                    render::mcp_servers_check(servers).detail
                );
            } else if let Err(e) = servers {
                let _ = writeln!(out, "MCP        servers unknown ({e})");
            }
            match tools {
                Ok(tools) => {
                    let _ = writeln!(out, "MCP tools  {}: {}", tools.len(), tools.join(", "));
                }
                Err(e) => {
                    let _ = writeln!(out, "MCP tools  unknown ({e})");
                }
            }
        }
    }
    out
}

/// `tollgate doctor`'s checks, in order: reachability, key validity, clock skew, model access,
/// MCP servers, MCP endpoint.
pub fn doctor_checks(g: &Gathered, model: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let reachable = match &g.probe {
        Ok(p) => {
            let outcome = render::health_outcome(p.status);
            let detail = match outcome {
                Outcome::Ok => format!("{} answers (/health {})", g.gateway, p.status),
                Outcome::Warn => format!(
                    "{} answers, but /health gave {} (behind authentication or a proxy?)",
                    g.gateway, p.status
                ),
                _ => format!(
                    "{} answers /health with {}: the gateway (or a proxy before it) is failing",
                    g.gateway, p.status
                ),
            };
            checks.push(Check::new("reachability", outcome, detail));
            true
        }
        Err(e) => {
            checks.push(Check::new("reachability", Outcome::Fail, e.to_string()));
            false
        }
    };
    let skip = |name| Check::new(name, Outcome::Skip, "the gateway is unreachable");
    if !reachable {
        for name in [
            "key",
            "clock skew",
            "model access",
            "MCP servers",
            "MCP endpoint",
        ] {
            checks.push(skip(name));
        }
        return checks;
    }
    let key_ok = match &g.models {
        Ok(_) => {
            checks.push(Check::new(
                "key",
                Outcome::Ok,
                format!("{} accepted ({})", redact(&g.key), g.place),
            ));
            true
        }
        Err(GatewayError::KeyRefused { status, message }) => {
            checks.push(Check::new(
                "key",
                Outcome::Fail,
                format!("{} refused ({status}): {message}", redact(&g.key)),
            ));
            false
        }
        Err(e) => {
            checks.push(Check::new("key", Outcome::Fail, e.to_string()));
            false
        }
    };
    match g.probe.as_ref().ok().and_then(|p| p.date_unix) {
        Some(date) => checks.push(render::skew_check(g.local_unix - date)),
        None => checks.push(Check::new(
            "clock skew",
            Outcome::Warn,
            "the gateway sent no Date header",
        )),
    }
    checks.push(match (&g.models, model) {
        (_, None) => Check::new(
            "model access",
            Outcome::Skip,
            "no model chosen yet (pass --model, or run tollgate launch)",
        ),
        (Err(_), Some(_)) => Check::new("model access", Outcome::Skip, "the key was not accepted"),
        (Ok(models), Some(m)) if models.iter().any(|x| x == m) => Check::new(
            "model access",
            Outcome::Ok,
            format!("{} is in the key's model list", render::terminal_safe(m)),
        ),
        (Ok(models), Some(m)) => Check::new(
            "model access",
            Outcome::Fail,
            format!(
                "{} is not in the key's model list ({} models{})",
                render::terminal_safe(m),
                models.len(),
                if models.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", e.g. {}",
                        models
                            .iter()
                            .take(3)
                            .map(|m| render::safe(m))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ),
    });
    if !key_ok {
        checks.push(Check::new(
            "MCP servers",
            Outcome::Skip,
            "the key was not accepted",
        ));
        checks.push(Check::new(
            "MCP endpoint",
            Outcome::Skip,
            "the key was not accepted",
        ));
        return checks;
    }
    checks.push(match &g.mcp_servers {
        Ok(servers) => render::mcp_servers_check(servers),
        Err(GatewayError::NotServed { .. }) => Check::new(
            "MCP servers",
            Outcome::Skip,
            "this gateway does not serve /v1/mcp/servers (no MCP support)",
        ),
        Err(e) => Check::new("MCP servers", Outcome::Fail, e.to_string()),
    });
    checks.push(match &g.mcp_tools {
        Ok(tools) => Check::new(
            "MCP endpoint",
            Outcome::Ok,
            format!("/mcp initialize and tools/list: {} tools", tools.len()),
        ),
        Err(GatewayError::NotServed { .. }) => Check::new(
            "MCP endpoint",
            Outcome::Skip,
            "this gateway does not serve /mcp (no MCP support)",
        ),
        Err(e) => Check::new("MCP endpoint", Outcome::Fail, e.to_string()),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::gateway::Probe;
    use serde_json::json;

    fn gathered() -> Gathered {
        Gathered {
            gateway: "http://gw:8080".into(),
            key: "sk-tg-0123456789abcdef".into(),
            place: Place::Keyring,
            local_unix: 1_000,
            probe: Ok(Probe {
                status: 200,
                date_unix: Some(1_000),
            }),
            models: Ok(vec!["claude-sonnet-4-6".into(), "claude-haiku-4-5".into()]),
            key_info: Ok(json!({
                "id": "vk-1", "name": "alice", "team": {"id": "t1", "name": "Platform"},
                "customer": null, "expires_at": null, "providers": [],
                "allowed_models": [{"provider": "bedrock", "patterns": ["claude-*"]}],
                "budgets": [{"level": "virtual_key", "level_id": "vk-1", "level_name": "alice",
                    "budget_id": "b", "period": "1M", "limit_usd": 10.0, "spent_usd": 2.5,
                    "remaining_usd": 7.5, "window_start": "2026-12-01T00:00:00Z",
                    "window_end": "2027-01-01T00:00:00Z"}],
                "counted_by": "this data plane"
            })),
            mcp_servers: Ok(vec![McpServerState {
                name: "everything".into(),
                state: "ready".into(),
                tools: 3,
                error: None,
            }]),
            mcp_tools: Ok(vec!["everything__echo".into()]),
        }
    }

    #[test]
    fn status_shows_budget_models_and_mcp_with_the_key_redacted() {
        let text = status_text(&gathered());
        assert!(
            text.contains("sk-tg-…cdef (the OS keyring) — accepted"),
            "{text}"
        );
        assert!(!text.contains("0123456789"), "{text}");
        assert!(text.contains("team       Platform (t1)"), "{text}");
        assert!(
            text.contains("budget     virtual key alice: $7.50 left of $10.00 (1M window ends 2027-01-01T00:00:00Z)"),
            "{text}"
        );
        assert!(
            text.contains("models     2 allowed: claude-sonnet-4-6, claude-haiku-4-5"),
            "{text}"
        );
        assert!(text.contains("patterns   bedrock: claude-*"), "{text}");
        assert!(
            text.contains("MCP        everything ready (3 tools)"),
            "{text}"
        );
        assert!(text.contains("MCP tools  1: everything__echo"), "{text}");

        let mut old = gathered();
        old.key_info = Err(GatewayError::NotServed { path: "/v1/key" });
        old.mcp_servers = Err(GatewayError::NotServed {
            path: "/v1/mcp/servers",
        });
        let text = status_text(&old);
        assert!(text.contains("does not serve /v1/key"), "{text}");
        assert!(
            text.contains("MCP        not served by this gateway"),
            "{text}"
        );
    }

    /// The data plane's own `GET /v1/key` answer (`key_info::describe`), not a hand-written
    /// copy, is what `status` reads: the two agree on the field names.
    #[test]
    fn status_reads_the_data_planes_key_answer() {
        use sha2::Digest as _;
        use tollgate_proto::config::v1 as pb;
        let key = "sk-tg-status-contract-key";
        let budget = pb::Limits {
            budgets: vec![pb::Budget {
                id: "b-month".into(),
                max_limit_nano_usd: 20_000_000_000,
                reset: pb::ResetPeriod::Month as i32,
                calendar_aligned: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let snapshot = pb::Snapshot {
            version: 1,
            teams: vec![pb::Team {
                id: "team-1".into(),
                name: "Platform".into(),
                ..Default::default()
            }],
            virtual_keys: vec![pb::VirtualKey {
                id: "vk-1".into(),
                name: "alice".into(),
                key_sha256: sha2::Sha256::digest(key).to_vec().into(),
                active: true,
                team_id: "team-1".into(),
                limits: Some(budget),
                ..Default::default()
            }],
            ..Default::default()
        };
        let rt = tollgate_data_plane::runtime::Runtime::compile(&snapshot).expect("snapshot");
        let vk = rt.virtual_key(key).expect("the key");
        let info = tollgate_data_plane::key_info::describe(&rt, vk, 1_780_000_000_000);
        let mut g = gathered();
        g.key_info = Ok(serde_json::to_value(&info).expect("json"));
        let text = status_text(&g);
        assert!(text.contains("key id     vk-1 (alice)"), "{text}");
        assert!(text.contains("team       Platform (team-1)"), "{text}");
        assert!(text.contains("expires    never"), "{text}");
        assert!(
            text.contains("budget     virtual key alice: $20.00 left of $20.00 (1M window ends 2026-06-01T00:00:00Z)"),
            "{text}"
        );
        assert!(text.contains("(as this data plane counts it)"), "{text}");
    }

    #[test]
    fn doctor_checks_and_their_exit_codes() {
        let g = gathered();
        let checks = doctor_checks(&g, Some("claude-sonnet-4-6"));
        let outcomes: Vec<_> = checks.iter().map(|c| (c.name, c.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("reachability", Outcome::Ok),
                ("key", Outcome::Ok),
                ("clock skew", Outcome::Ok),
                ("model access", Outcome::Ok),
                ("MCP servers", Outcome::Ok),
                ("MCP endpoint", Outcome::Ok),
            ]
        );
        assert_eq!(render::exit_code(&checks), EXIT_OK);

        // A model the key may not use fails; so does a skewed clock.
        let mut skewed = gathered();
        skewed.local_unix = 1_000 + 600;
        let checks = doctor_checks(&skewed, Some("claude-opus-4-6"));
        assert_eq!(checks[2].outcome, Outcome::Fail);
        assert_eq!(checks[3].outcome, Outcome::Fail);
        assert!(checks[3].detail.contains("not in the key's model list"));
        assert_eq!(render::exit_code(&checks), EXIT_FAILED);

        // A refused key fails and skips what needs it.
        let mut refused = gathered();
        refused.models = Err(GatewayError::KeyRefused {
            status: 401,
            message: "invalid virtual key".into(),
        });
        let checks = doctor_checks(&refused, Some("claude-sonnet-4-6"));
        assert_eq!(checks[1].outcome, Outcome::Fail);
        assert!(checks[1].detail.contains("refused (401)"));
        assert_eq!(checks[4].outcome, Outcome::Skip);

        // Unreachable: one failure, the rest skipped.
        let mut down = gathered();
        down.probe = Err(GatewayError::Unreachable {
            url: "http://gw:8080/health".into(),
            why: "connection refused".into(),
        });
        let checks = doctor_checks(&down, None);
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(checks[1..].iter().all(|c| c.outcome == Outcome::Skip));

        // /health answering 502 (a proxy whose gateway is down) fails; 404/401 only warn.
        for (status, outcome, exit) in [
            (502, Outcome::Fail, EXIT_FAILED),
            (503, Outcome::Fail, EXIT_FAILED),
            (404, Outcome::Warn, EXIT_OK),
            (401, Outcome::Warn, EXIT_OK),
        ] {
            let mut g = gathered();
            g.probe = Ok(Probe {
                status,
                date_unix: Some(1_000),
            });
            let checks = doctor_checks(&g, Some("claude-sonnet-4-6"));
            assert_eq!(checks[0].outcome, outcome, "{status}");
            assert_eq!(render::exit_code(&checks), exit, "{status}");
        }

        // A gateway without MCP: skipped, not failed.
        let mut no_mcp = gathered();
        no_mcp.mcp_servers = Err(GatewayError::NotServed {
            path: "/v1/mcp/servers",
        });
        no_mcp.mcp_tools = Err(GatewayError::NotServed { path: "/mcp" });
        let checks = doctor_checks(&no_mcp, Some("claude-sonnet-4-6"));
        assert_eq!(render::exit_code(&checks), EXIT_OK);
        assert_eq!(checks[5].outcome, Outcome::Skip);
    }
}

//! End to end: the web console in a real browser (Debian's Chromium, driven by playwright-core
//! through `tests/clients/console.mjs`), against the real `tollgate` binary with single sign-on
//! through a real OpenID Connect provider and the strict Bedrock double behind it: an admin signs
//! in, creates a virtual key in the console, a request is sent with it, and the request shows in
//! the log explorer and its cost in the spend chart, and in an export of the logs run as a job
//! from the jobs page; a member sees only their own key.
//!
//! `scripts/test.sh` installs Chromium (Debian's `chromium`) and playwright-core and sets
//! `TOLLGATE_TEST_CHROMIUM` and `TOLLGATE_TEST_CONSOLE` (the script's path).
//! `TOLLGATE_CONSOLE_SHOTS=<dir>` keeps the screenshots (the README's come from there).

mod common;

use std::process::Command;

use common::sso::{Sso, sso};
use common::{admin, required_env};
use serde_json::{Value, json};

#[tokio::test]
async fn an_admin_creates_a_key_in_the_console_and_finds_its_request_and_spend() {
    let Sso {
        s,
        idp: _idp,
        public,
    } = sso().await;
    // adam's group makes him an admin; bob's puts him in team eng as a member.
    let (st, team) = admin(&s.http, &s.gw, "POST", "/api/teams", json!({"name": "eng"})).await;
    assert_eq!(st, 201, "{team}");
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/group-mappings",
        json!({"teams": [{"group": "eng", "team_id": team["id"]}],
               "roles": [{"group": "gateway-admins", "role": "admin"}],
               "default_role": "member"}),
    )
    .await;
    assert_eq!(st, 200, "{b}");

    let shots = std::env::var("TOLLGATE_CONSOLE_SHOTS")
        .ok()
        .unwrap_or_else(|| tempfile_dir().to_string_lossy().into_owned());
    let node = std::env::var("TOLLGATE_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
    let script = required_env("TOLLGATE_TEST_CONSOLE");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(script)
            .env("CONSOLE_URL", &public)
            .env("CONSOLE_ADMIN", "adam")
            .env("CONSOLE_MEMBER", "bob")
            .env("CONSOLE_MODEL", "claude-sonnet-4-6")
            .env("CONSOLE_SHOTS", &shots)
            .output()
            .expect("run node console.mjs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "console.mjs failed: {stderr}\n{stdout}"
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("console.mjs printed no JSON ({e}): {stdout}\n{stderr}"));
    assert!(
        seen["failure"].is_null(),
        "{}\nat {}: {}",
        seen["failure"],
        seen["failureUrl"],
        seen["failureText"]
    );
    assert_eq!(seen["consoleErrors"], json!([]), "errors in the browser");

    // The admin's console.
    let who = seen["adminWho"].as_str().unwrap();
    assert!(who.contains("adam") && who.contains("admin"), "{who}");
    for section in [
        "Overview",
        "Logs",
        "Virtual keys",
        "Providers",
        "Audit log",
        "Fleet",
    ] {
        assert!(
            seen["adminNav"]
                .as_array()
                .unwrap()
                .contains(&json!(section)),
            "{section}: {}",
            seen["adminNav"]
        );
    }
    assert_eq!(
        seen["unlabeled"],
        json!([]),
        "every form control has a label"
    );

    // The key made in the console is a real key: the request with it was served.
    let key = seen["keyValue"].as_str().unwrap();
    assert!(key.starts_with("sk-tg-"), "{key}");
    let (st, keys) = admin(&s.http, &s.gw, "GET", "/api/virtual-keys", Value::Null).await;
    assert_eq!(st, 200);
    assert!(
        keys["virtual_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "console-key"),
        "{keys}"
    );
    assert_eq!(seen["requestStatus"], 200, "{seen}");
    let request_id = seen["requestId"].as_str().expect("request-id header");

    // The log explorer found that request; its detail is that request.
    assert_eq!(seen["detailId"], request_id);
    assert_eq!(seen["detailModel"], "global.anthropic.claude-sonnet-4-6");

    // The charts drew (the overview's canvas was waited for); the spend chart by key has a
    // series for the new key, and the top keys list it.
    assert!(
        seen["spendLegend"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap_or("").contains("console-key")),
        "{}",
        seen["spendLegend"]
    );
    assert!(
        seen["topKeys"]
            .as_array()
            .unwrap()
            .contains(&json!("console-key")),
        "{}",
        seen["topKeys"]
    );
    // The spend page grouped by key lists it, and its CSV export (a header row, then one row per
    // key) has it too.
    assert!(
        seen["spendGroups"]
            .as_array()
            .unwrap()
            .contains(&json!("console-key")),
        "{}",
        seen["spendGroups"]
    );
    let csv = seen["csv"].as_str().unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or("");
    assert!(header.contains("cost_usd"), "{csv}");
    assert!(lines.any(|l| l.contains("console-key")), "{csv}");
    // The audit log page lists the key's creation.
    assert!(
        seen["auditActions"]
            .as_array()
            .unwrap()
            .contains(&json!("virtual_key.create")),
        "{}",
        seen["auditActions"]
    );

    // The jobs page's export of the request logs: started, followed and downloaded in the
    // browser, it holds the request (its id in the first column, after the header row).
    assert!(
        seen["exportName"]
            .as_str()
            .is_some_and(|n| n.starts_with("tollgate-logs-") && n.ends_with(".csv")),
        "{}",
        seen["exportName"]
    );
    let export = seen["exportCsv"].as_str().unwrap();
    let mut lines = export.lines();
    assert!(
        lines
            .next()
            .unwrap_or("")
            .starts_with("request_id,started_at,"),
        "{export}"
    );
    assert!(
        lines.any(|l| l.starts_with(&format!("{request_id},"))),
        "{export}"
    );

    // The member: no admin sections, only their own personal key, none of the admin's requests.
    let who = seen["memberWho"].as_str().unwrap();
    assert!(who.contains("bob") && who.contains("member"), "{who}");
    let nav = seen["memberNav"].as_array().unwrap();
    for hidden in ["Providers", "Audit log", "Fleet", "Pricing", "Teams"] {
        assert!(!nav.contains(&json!(hidden)), "{hidden} shown to a member");
    }
    let member_keys = seen["memberKeys"].as_array().unwrap();
    assert_eq!(member_keys.len(), 1, "{member_keys:?}");
    assert!(
        member_keys[0].as_str().unwrap().contains("bob"),
        "{member_keys:?}"
    );
    assert_eq!(seen["memberCanCreate"], 0);
    assert_eq!(seen["memberLogRows"], 0);
    assert!(
        seen["memberKeyPrefix"]
            .as_str()
            .unwrap()
            .starts_with("sk-tg-"),
        "{seen}"
    );
}

/// A directory for the screenshots when `TOLLGATE_CONSOLE_SHOTS` names none: under the system's
/// temporary directory, kept after the run (it is where to look when the test fails).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

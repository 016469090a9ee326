//! End to end: the web console in a real browser (Debian's Chromium, driven by playwright-core
//! through `tests/clients/console.mjs`), against the real `tollgate` binary with single sign-on
//! through a real OpenID Connect provider and the strict Bedrock double behind it: an admin signs
//! in, creates a virtual key in the console, a request is sent with it, and the request shows in
//! the log explorer and its cost in the spend chart, and in an export of the logs run as a job
//! from the jobs page; the admin edits a team's budget (which keeps its id when its period
//! changes), a key's limits (a refused value shows the API's error next to its field, opening the
//! folded part of the form it is in) and content logging, a provider key, a price override (a
//! missing long-context rate is refused by name) and the group mappings in the console's forms,
//! and the admin API returns what was typed (closing an editor focuses the button that opened
//! it), and reads the key's next request's recorded bodies; a member sees only their own key.
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
    // A disabled key whose credentials are literals (sealed at rest): the console may show them
    // only as the API does, and deletes the key.
    let secret = "console-literal-secret-0123456789";
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "POST",
        "/api/providers/bedrock/keys",
        json!({"name": "sealed-key", "enabled": false,
               "bedrock_key_config": {"access_key": "AKIACONSOLETEST0001", "secret_key": secret,
                                      "region": "us-east-1"}}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    // What the admin types in the edit forms (console.mjs reads it from CONSOLE_EDITS).
    let edits = json!({
        "team_budget": "123.45", "team_first_period": "1d", "team_period": "1w",
        "team_concurrent": "7",
        "key_budget": "9.5", "key_period": "1d",
        "key_requests": "77", "key_request_window": "1m",
        "key_tokens": "50000", "key_token_window": "1h",
        "provider_key_weight": "3",
        "allowed_models": ["claude-sonnet-*", "regex:^claude-haiku-4.*"],
        "config_budget": "2.5", "config_period": "1d",
        "expires_local": "2030-01-01T00:00",
        "price": {"provider": "bedrock", "models": ["anthropic.console-test-model*"],
                  "input": 1.25, "first_output": 6.5, "output": 7.25, "cache_write_5m": 1.5,
                  "cache_write_1h": 2.5, "cache_read": 0.125, "source": "console test",
                  "long_context": {"above_input_tokens": 200000, "input": 2.5, "output": 9.75,
                                   "cache_write_5m": 3.0, "cache_write_1h": 5.0,
                                   "cache_read": 0.25}},
        "role_rule": {"group": "auditors", "role": "viewer"},
        "content_bytes": "4096",
        "recorded_prompt": "a prompt the console shows back",
    });
    let edits_env = edits.to_string();

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
            .env("CONSOLE_EDITS", &edits_env)
            .env("CONSOLE_SECRET", secret)
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
        "Pricing",
        "MCP",
        "Settings",
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
    // The MCP page added a server; its header secret is stored, sealed, and never shown.
    let row = seen["mcpRow"].as_str().unwrap_or_default();
    assert!(row.contains("docs") && row.contains("http"), "{seen}");
    assert_eq!(seen["mcpSecretOnPage"], false, "{seen}");
    let (st, server) = admin(&s.http, &s.gw, "GET", "/api/mcp/servers/docs", Value::Null).await;
    assert_eq!(st, 200, "{server}");
    assert_eq!(server["headers"]["Authorization"], "<redacted>", "{server}");
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

    // The team's budget and concurrency limit, as typed in its editor.
    let (st, t) = admin(
        &s.http,
        &s.gw,
        "GET",
        &format!("/api/teams/{}", team["id"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["budgets"].as_array().map(Vec::len), Some(1), "{t}");
    assert_eq!(t["budgets"][0]["max_limit"], json!(123.45), "{t}");
    assert_eq!(t["budgets"][0]["reset_duration"], "1w", "{t}");
    assert_eq!(t["budgets"][0]["calendar_aligned"], false, "{t}");
    assert_eq!(t["max_concurrent"], 7, "{t}");
    assert_eq!(t["rate_limit"], Value::Null, "{t}");
    // Its budget was first saved with another period; the second edit changed the period and
    // sent the budget's id back, so it is the same budget.
    let first = &seen["teamBudgetsFirst"];
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first[0]["reset_duration"], "1d", "{first}");
    assert!(first[0]["id"].is_string(), "{first}");
    assert_eq!(seen["teamBudgetsThen"][0]["reset_duration"], "1w", "{seen}");
    assert_eq!(t["budgets"][0]["id"], first[0]["id"], "{t}");
    // Closing an editor (saved, or cancelled) puts focus back on the button that opened it.
    assert_eq!(seen["teamFocus"], "Edit eng", "{seen}");
    assert_eq!(seen["teamCancelFocus"], "Edit eng", "{seen}");
    assert_eq!(seen["keyFocus"], "Edit engineering-team", "{seen}");
    assert_eq!(
        seen["providerKeyFocus"], "Edit key bedrock-key of bedrock",
        "{seen}"
    );
    assert_eq!(
        seen["priceFocus"], "Edit the override of anthropic.console-test-model*",
        "{seen}"
    );

    // The refused value: the API's error (naming the second budget's period) next to that
    // control, which is marked invalid and described by it.
    let bad = &seen["badValue"];
    assert_eq!(bad["field"], "budgets[1].reset_duration", "{bad}");
    assert_eq!(bad["invalidPath"], "budgets[1].reset_duration", "{bad}");
    assert_eq!(bad["invalidCount"], 1, "{bad}");
    assert_eq!(bad["describedBy"], true, "{bad}");
    assert_eq!(bad["sameRow"], true, "{bad}");
    assert!(
        bad["note"]
            .as_str()
            .unwrap()
            .contains("another budget already has reset_duration \"1d\""),
        "{bad}"
    );
    assert!(
        bad["alert"]
            .as_str()
            .unwrap()
            .starts_with("budgets[1].reset_duration: "),
        "{bad}"
    );
    // The refused values were the only 4xx: the key's budgets, its provider config's budgets,
    // and the price override's missing long-context rate.
    let refusals = seen["expectedRefusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    for (refusal, what) in refusals.iter().zip([
        "400 PUT /api/virtual-keys/",
        "400 PUT /api/virtual-keys/",
        "400 PUT /api/pricing/",
    ]) {
        assert!(refusal.as_str().unwrap().starts_with(what), "{refusals:?}");
    }
    // The provider config's refused budget sits in its folded-away limits: the error opened
    // them and focused the control it names.
    let config_error = &seen["configError"];
    assert_eq!(seen["configLimitsOpenBefore"], false, "{seen}");
    assert_eq!(
        config_error["field"], "provider_configs[0].budgets[1].reset_duration",
        "{config_error}"
    );
    assert_eq!(config_error["open"], true, "{config_error}");
    assert_eq!(
        config_error["focusedPath"], "provider_configs[0].budgets[1].reset_duration",
        "{config_error}"
    );

    // The key's rate limit and its one budget, as typed once the error was fixed.
    let (st, keys) = admin(&s.http, &s.gw, "GET", "/api/virtual-keys", Value::Null).await;
    assert_eq!(st, 200);
    let key = keys["virtual_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "console-key")
        .expect("console-key");
    assert_eq!(
        key["rate_limit"],
        json!({"request_max_limit": 77, "request_reset_duration": "1m",
               "token_max_limit": 50000, "token_reset_duration": "1h"}),
        "{key}"
    );
    assert_eq!(key["budgets"].as_array().map(Vec::len), Some(1), "{key}");
    assert_eq!(key["budgets"][0]["max_limit"], json!(9.5), "{key}");
    assert_eq!(key["budgets"][0]["reset_duration"], "1d", "{key}");
    assert_eq!(key["is_active"], true, "{key}");
    assert_eq!(key["provider_configs"], json!([]), "{key}");
    assert_eq!(
        key["content_logging"],
        json!({"enabled": true, "max_body_bytes": 4096}),
        "{key}"
    );

    // The next request's bodies, shown in its detail: what was sent and what came back.
    assert_eq!(seen["recordedStatus"], 200, "{seen}");
    assert_eq!(seen["recordedDetailId"], seen["recordedId"], "{seen}");
    let sent: Value =
        serde_json::from_str(seen["recordedRequest"].as_str().unwrap()).expect("the request");
    assert_eq!(
        sent["messages"][0]["content"], edits["recorded_prompt"],
        "{sent}"
    );
    let shown: Value =
        serde_json::from_str(seen["recordedResponse"].as_str().unwrap()).expect("the answer");
    let answered: Value =
        serde_json::from_str(seen["recordedAnswer"].as_str().unwrap()).expect("the answer");
    assert_eq!(shown, answered, "the answer the client got");

    // The walkthrough key's provider config and expiry, as typed; its monthly budget kept.
    let key = keys["virtual_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "engineering-team")
        .expect("engineering-team");
    assert_eq!(key["expires_at"], "2030-01-01T00:00:00Z", "{key}");
    assert_eq!(key["monthly_budget"], json!(500.0), "{key}");
    let configs = key["provider_configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "{key}");
    let c = &configs[0];
    assert_eq!(c["provider"], "bedrock", "{c}");
    assert_eq!(c["weight"], json!(1.0), "{c}");
    assert_eq!(c["allowed_models"], edits["allowed_models"], "{c}");
    assert_eq!(c["budgets"].as_array().map(Vec::len), Some(1), "{c}");
    assert_eq!(c["budgets"][0]["max_limit"], json!(2.5), "{c}");
    assert_eq!(c["budgets"][0]["reset_duration"], "1d", "{c}");
    assert_eq!(c["rate_limit"], Value::Null, "{c}");

    // The key test run from the providers page: the double answered through the data plane.
    let tested = seen["keyTest"].as_str().unwrap();
    assert!(
        tested.starts_with("Works: 200") && tested.contains("via all-in-one"),
        "{tested}"
    );
    assert_eq!(
        seen["sealedTestButtons"], 0,
        "a disabled key offers no test"
    );

    // Provider keys: the literal secret showed only as the API returns it, the key is gone, the
    // walkthrough's key has its new weight and keeps its env references.
    assert_eq!(
        seen["sealedShown"],
        json!({"access_key": "<redacted>", "secret_key": "<redacted>"}),
        "{seen}"
    );
    assert_eq!(seen["secretOnPage"], false);
    assert_eq!(seen["walkthroughKeyShown"], "env.AWS_SECRET_ACCESS_KEY");
    let (st, pk) = admin(
        &s.http,
        &s.gw,
        "GET",
        "/api/providers/bedrock/keys",
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{pk}");
    let names: Vec<&str> = pk["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bedrock-key"], "{pk}");
    let bk = &pk["keys"][0];
    assert_eq!(bk["weight"], json!(3.0), "{bk}");
    assert_eq!(bk["enabled"], true, "{bk}");
    assert_eq!(
        bk["bedrock_key_config"]["access_key"], "env.AWS_ACCESS_KEY_ID",
        "{bk}"
    );
    assert_eq!(
        bk["bedrock_key_config"]["secret_key"], "env.AWS_SECRET_ACCESS_KEY",
        "{bk}"
    );
    assert_eq!(bk["bedrock_key_config"]["region"], "us-east-1", "{bk}");
    assert_eq!(bk["value"], Value::Null, "{bk}");
    assert_eq!(
        bk["aliases"]["claude-sonnet-4-6"],
        "global.anthropic.claude-sonnet-4-6"
    );
    assert_eq!(seen["providerKeyWeights"], json!(["3"]));
    // The provider config may use that key only.
    assert_eq!(c["key_ids"], json!([bk["id"]]), "{c}");

    // The price override, as added then edited (the output price).
    let (st, pricing) = admin(&s.http, &s.gw, "GET", "/api/pricing", Value::Null).await;
    assert_eq!(st, 200);
    let overrides = pricing["overrides"].as_array().unwrap();
    assert_eq!(overrides.len(), 1, "{pricing}");
    let o = &overrides[0];
    let price = &edits["price"];
    assert_eq!(o["provider"], price["provider"], "{o}");
    assert_eq!(o["models"], price["models"], "{o}");
    for field in [
        "input",
        "output",
        "cache_write_5m",
        "cache_write_1h",
        "cache_read",
        "source",
    ] {
        assert_eq!(o[field], price[field], "{field}: {o}");
    }
    assert_eq!(o["regional_premium_percent"], 0, "{o}");
    // A long-context rate left empty was refused by name (not stored as a $0 price); the tier
    // was stored once every rate was typed.
    let missing = &seen["missingRate"];
    assert_eq!(missing["field"], "long_context.output", "{missing}");
    assert!(
        missing["note"]
            .as_str()
            .unwrap()
            .contains("missing field `long_context.output`"),
        "{missing}"
    );
    assert_eq!(missing["invalidPath"], "long_context.output", "{missing}");
    assert_eq!(missing["focusedPath"], "long_context.output", "{missing}");
    assert_eq!(o["long_context"], price["long_context"], "{o}");
    assert!(
        seen["overrideRows"][0]
            .as_str()
            .unwrap()
            .contains("anthropic.console-test-model*"),
        "{}",
        seen["overrideRows"]
    );

    // The group mappings: the role rule added, the test's own rules kept.
    let (st, m) = admin(&s.http, &s.gw, "GET", "/api/group-mappings", Value::Null).await;
    assert_eq!(st, 200);
    assert_eq!(
        m["roles"],
        json!([{"group": "gateway-admins", "role": "admin"},
               {"group": "auditors", "role": "viewer"}]),
        "{m}"
    );
    assert_eq!(
        m["teams"],
        json!([{"group": "eng", "team_id": team["id"]}]),
        "{m}"
    );
    assert_eq!(m["default_role"], "member", "{m}");
    // Single sign-on is set by the flags here: the settings page says so (and offers no form).
    assert!(
        seen["ssoSetBy"].as_str().unwrap().contains("flags"),
        "{}",
        seen["ssoSetBy"]
    );

    // The jobs page's export of the request logs: started, followed and downloaded in the
    // browser, it holds the request (its id in the first column, after the header row).
    assert!(
        seen["exportName"]
            .as_str()
            .is_some_and(|n| is_export_name(n, "logs", "csv")),
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
    for hidden in [
        "Providers",
        "Audit log",
        "Fleet",
        "Pricing",
        "Teams",
        "Settings",
    ] {
        assert!(!nav.contains(&json!(hidden)), "{hidden} shown to a member");
    }
    // Jobs is every role's: the member exports and downloads under the server's file name.
    assert!(nav.contains(&json!("Jobs")), "{nav:?}");
    assert!(
        seen["memberExportName"]
            .as_str()
            .is_some_and(|n| is_export_name(n, "spend", "csv")),
        "{}",
        seen["memberExportName"]
    );
    assert_eq!(seen["memberCanCancel"], 0);
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

/// Whether `name` is the server's name of an export (`<kind>-<job id, 32 hex digits>.<ext>`,
/// as its `Content-Disposition` says).
fn is_export_name(name: &str, kind: &str, ext: &str) -> bool {
    name.strip_prefix(&format!("{kind}-"))
        .and_then(|rest| rest.strip_suffix(&format!(".{ext}")))
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

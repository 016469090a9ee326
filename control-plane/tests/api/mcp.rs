//! The MCP gateway's admin API: `/api/mcp/servers` (validation naming the field, secrets
//! sealed and never returned, `"<redacted>"` keeping a value, audit rows, the snapshot), the
//! tool allowlists of keys and teams (who may set them, what the snapshot's `mcp_access` says),
//! and `/api/mcp/calls` (tool calls kept apart from request logs and spend, scoped like them).

use tollgate_control_plane::identity::Role;
use tollgate_control_plane::store::UsageRecord;
use tollgate_proto::config::v1::{McpServer, mcp_server};

use super::logs::billed;
use super::roles::{admin, org};
use super::*;

const TOKEN: &str = "ghp-EXAMPLE-token-5e1a";
const BEARER: &str = "Bearer mcp-EXAMPLE-7c2d";
const ROTATED: &str = "Bearer rotated-EXAMPLE-91f0";

fn served(h: &Harness, name: &str) -> Option<McpServer> {
    current(h)
        .mcp_servers
        .iter()
        .find(|s| s.name == name)
        .cloned()
}

fn stdio_env(
    s: &McpServer,
) -> std::collections::BTreeMap<String, (Option<String>, Option<String>)> {
    match s.transport.as_ref().unwrap() {
        mcp_server::Transport::Stdio(st) => st
            .env
            .iter()
            .map(|(k, v)| {
                let v = Some(v.clone());
                (
                    k.clone(),
                    (literal(&v).map(str::to_owned), env(&v).map(str::to_owned)),
                )
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn http_header(s: &McpServer, name: &str) -> Option<String> {
    match s.transport.as_ref().unwrap() {
        mcp_server::Transport::Http(h) => literal(&h.headers.get(name).cloned()).map(str::to_owned),
        other => panic!("{other:?}"),
    }
}

async fn servers_are_configured_and_their_secrets_kept(h: &Harness) {
    let mut bodies = Vec::new();
    let version = current(h).version;
    let r = post(
        h,
        "/api/mcp/servers",
        json!({"name": "github", "transport": "stdio", "command": "npx",
               "args": ["-y", "@modelcontextprotocol/server-github"],
               "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": TOKEN, "REGION": "env.AWS_REGION"},
               "allowed_tools": ["search_*", "get_issue"], "call_timeout_ms": 30000}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json["env"],
        json!({"GITHUB_PERSONAL_ACCESS_TOKEN": "<redacted>", "REGION": "env.AWS_REGION"})
    );
    assert_eq!(r.json["transport"], "stdio");
    assert_eq!(r.json["enabled"], true);
    assert!(r.json.get("url").is_none() && r.json.get("headers").is_none());
    bodies.push(r.text.clone());
    assert!(current(h).version > version, "a new snapshot is published");
    let gh = served(h, "github").expect("published");
    assert_eq!(gh.allowed_tools, ["search_*", "get_issue"]);
    assert_eq!(gh.call_timeout_ms, 30000);
    let env_values = stdio_env(&gh);
    assert_eq!(
        env_values["GITHUB_PERSONAL_ACCESS_TOKEN"],
        (Some(TOKEN.into()), None)
    );
    assert_eq!(env_values["REGION"], (None, Some("AWS_REGION".into())));

    let r = post(
        h,
        "/api/mcp/servers",
        json!({"name": "docs", "transport": "http", "url": "https://mcp.example.com/mcp",
               "headers": {"Authorization": BEARER}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["headers"], json!({"Authorization": "<redacted>"}));
    bodies.push(r.text);
    assert_eq!(
        http_header(&served(h, "docs").unwrap(), "Authorization").as_deref(),
        Some(BEARER)
    );
    let r = post(
        h,
        "/api/mcp/servers",
        json!({"name": "docs", "transport": "http", "url": "https://x.example.com"}),
    )
    .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);

    // Reads.
    let r = get(h, "/api/mcp/servers").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["count"], 2);
    assert_eq!(r.json["servers"][0]["name"], "docs");
    bodies.push(r.text);
    let r = get(h, "/api/mcp/servers/github").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    bodies.push(r.text.clone());
    let read = r.json;
    let r = get(h, "/api/mcp/servers/nope").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    // GET, PUT back: nothing changes, the secret is kept.
    let r = put(h, "/api/mcp/servers/github", read.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["env"], read["env"]);
    assert_eq!(
        stdio_env(&served(h, "github").unwrap())["GITHUB_PERSONAL_ACCESS_TOKEN"],
        (Some(TOKEN.into()), None)
    );
    // A new header value replaces the stored one; `<redacted>` with nothing stored is refused.
    let r = put(
        h,
        "/api/mcp/servers/docs",
        json!({"headers": {"Authorization": ROTATED}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    bodies.push(r.text);
    assert_eq!(
        http_header(&served(h, "docs").unwrap(), "Authorization").as_deref(),
        Some(ROTATED)
    );
    let r = put(
        h,
        "/api/mcp/servers/docs",
        json!({"headers": {"X-New": "<redacted>"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("headers.X-New"),
    );
    // Disabled: kept, not served.
    let r = put(h, "/api/mcp/servers/docs", json!({"enabled": false})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(served(h, "docs").is_none());
    assert!(served(h, "github").is_some());
    let r = put(h, "/api/mcp/servers/docs", json!({"enabled": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        http_header(&served(h, "docs").unwrap(), "Authorization").as_deref(),
        Some(ROTATED),
        "a disabled server keeps its secrets"
    );

    // The audit log: every change, with redacted views; the refused ones as failures.
    let actions_of = |r: &Resp| -> Vec<String> {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json["audit_logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .filter(|a| a.starts_with("mcp_server."))
            .map(str::to_owned)
            .collect()
    };
    let failed = actions_of(&get(h, "/api/audit-logs?limit=1000&result=failure").await);
    assert_eq!(failed, ["mcp_server.update", "mcp_server.create"]);
    let r = get(h, "/api/audit-logs?limit=1000&result=success").await;
    let actions = actions_of(&r);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "mcp_server.create")
            .count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "mcp_server.update")
            .count(),
        4,
        "{actions:?}"
    );
    assert!(
        r.text.contains("GITHUB_PERSONAL_ACCESS_TOKEN"),
        "names are kept"
    );
    bodies.push(r.text);

    // Delete.
    let r = delete(h, "/api/mcp/servers/docs").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(served(h, "docs").is_none());
    let r = delete(h, "/api/mcp/servers/docs").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = get(h, "/api/audit-logs?limit=1000").await;
    assert!(r.text.contains("mcp_server.delete"), "{}", r.text);
    bodies.push(r.text);

    for body in &bodies {
        for secret in [TOKEN, "mcp-EXAMPLE-7c2d", "rotated-EXAMPLE-91f0"] {
            assert!(!body.contains(secret), "a response leaks {secret}: {body}");
        }
    }

    // At rest: sealed, not plaintext.
    let sql = "SELECT CAST(env_secrets AS TEXT) FROM mcp_servers WHERE name = 'github'";
    let sealed: (String,) = match &h.store {
        StoreConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let row = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            row
        }
        StoreConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let row = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            row
        }
    };
    assert!(!sealed.0.contains(TOKEN), "plaintext at rest: {}", sealed.0);
    assert_eq!(sealed.0.matches("enc:v1:").count(), 1, "{}", sealed.0);
    assert!(sealed.0.contains("env:AWS_REGION"), "{}", sealed.0);
}

#[tokio::test]
async fn mcp_servers_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    servers_are_configured_and_their_secrets_kept(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_servers_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        servers_are_configured_and_their_secrets_kept(&h).await;
    })
    .await;
}

#[tokio::test]
async fn invalid_servers_are_refused_naming_the_field() {
    let h = sqlite_harness(loopback_auth()).await;
    let ok = json!({"name": "a", "transport": "stdio", "command": "x"});
    let with = |patch: Value| {
        let mut body = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (json!({"transport": "stdio", "command": "x"}), "name"),
        (with(json!({"name": "GitHub"})), "name"),
        (with(json!({"name": "git_hub"})), "name"),
        (with(json!({"name": "a".repeat(21)})), "name"),
        (json!({"name": "a", "command": "x"}), "transport"),
        (json!({"name": "a", "transport": "stdio"}), "command"),
        (json!({"name": "a", "transport": "http"}), "url"),
        (
            json!({"name": "a", "transport": "http", "url": "file:///etc/passwd"}),
            "url",
        ),
        (with(json!({"url": "https://x.example.com"})), "url"),
        (
            json!({"name": "a", "transport": "http", "url": "https://mcp.example.com/mcp?api_key=k1"}),
            "url",
        ),
        (
            json!({"name": "a", "transport": "http", "url": "https://user:pw@mcp.example.com/mcp"}),
            "url",
        ),
        (with(json!({"env": {"BAD-NAME": "v"}})), "env.BAD-NAME"),
        (with(json!({"env": {"T": "env.not valid"}})), "env.T"),
        (
            with(json!({"env": {"T": "env.TOLLGATE_ADMIN_TOKEN"}})),
            "env.T",
        ),
        (with(json!({"env": {"T": "env.SOMETHING_ELSE"}})), "env.T"),
        (with(json!({"env": {"T": "<redacted>"}})), "env.T"),
        (
            json!({"name": "a", "transport": "http", "url": "https://x", "headers": {"mcp-session-id": "1"}}),
            "headers.mcp-session-id",
        ),
        (
            with(json!({"allowed_tools": ["regex:(unclosed"]})),
            "allowed_tools[0]",
        ),
        (
            with(json!({"call_timeout_ms": 3_600_001})),
            "call_timeout_ms",
        ),
    ] {
        let r = post(&h, "/api/mcp/servers", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let r = post(&h, "/api/mcp/servers", with(json!({"unknown": 1}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Nothing was stored or published; each refusal is audited as a failure, without the
    // body's values.
    assert_eq!(get(&h, "/api/mcp/servers").await.json["count"], 0);
    let r = get(
        &h,
        "/api/audit-logs?action=mcp_server.create&result=failure&limit=1000",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["count"], 20, "{}", r.text);
    assert!(current(&h).mcp_servers.is_empty());
    // Renames and transport mismatches on update.
    let r = post(&h, "/api/mcp/servers", ok.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = put(&h, "/api/mcp/servers/a", json!({"name": "b"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some("name"));
    let r = put(&h, "/api/mcp/servers/a", json!({"headers": {}})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("headers"),
    );
    let r = put(&h, "/api/mcp/servers/a", json!({"transport": "http"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some("url"));
    let r = put(
        &h,
        "/api/mcp/servers/a",
        json!({"transport": "http", "url": "http://127.0.0.1:9000/mcp"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["transport"], "http");
    assert!(r.json.get("command").is_none(), "{}", r.text);
    assert!(matches!(
        served(&h, "a").unwrap().transport,
        Some(mcp_server::Transport::Http(_))
    ));
}

fn access(h: &Harness, key: &str) -> Vec<Vec<String>> {
    current(h)
        .virtual_keys
        .iter()
        .find(|k| k.id == key)
        .unwrap()
        .mcp_access
        .iter()
        .map(|a| a.tools.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_allowlists_of_keys_and_teams_reach_the_snapshot() {
    let o = org().await;
    let h = &o.h;
    let none: Vec<Vec<String>> = Vec::new();
    assert_eq!(access(h, &o.key_a), none, "no list: every tool");
    // The team's list (admins only).
    let team = format!("/api/teams/{}", o.team_a);
    let r = admin(
        h,
        Method::PUT,
        &team,
        Some(json!({"mcp_tools": ["github__*"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["mcp_tools"], json!(["github__*"]));
    assert_eq!(access(h, &o.key_a), [vec!["github__*".to_owned()]]);
    // The key's own list comes first; `[]` allows no tool.
    let key = format!("/api/virtual-keys/{}", o.key_a);
    let r = admin(h, Method::PUT, &key, Some(json!({"mcp_tools": []}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["mcp_tools"], json!([]));
    assert_eq!(access(h, &o.key_a), [vec![], vec!["github__*".to_owned()]]);
    // A team admin narrows their team's keys, as they set allowed models.
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &key,
            Some(json!({"mcp_tools": ["github__search_issues"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        access(h, &o.key_a),
        [
            vec!["github__search_issues".to_owned()],
            vec!["github__*".to_owned()]
        ]
    );
    // ... but not another team's key, nor their team's own list (sent back unchanged is fine).
    let other = format!("/api/virtual-keys/{}", o.key_b);
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &other,
            Some(json!({"mcp_tools": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &team,
            Some(json!({"mcp_tools": ["*"]})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &team,
            Some(json!({"mcp_tools": null})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    let read = o.as_role(Role::TeamAdmin, Method::GET, &team, None).await;
    let unchanged = json!({"mcp_tools": read.json["mcp_tools"], "max_concurrent": 3});
    let r = o
        .as_role(Role::TeamAdmin, Method::PUT, &team, Some(unchanged))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["mcp_tools"], json!(["github__*"]));
    // null clears: no restriction of the key's own.
    let r = admin(h, Method::PUT, &key, Some(json!({"mcp_tools": null}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["mcp_tools"].is_null());
    assert_eq!(access(h, &o.key_a), [vec!["github__*".to_owned()]]);
    // Omitted: unchanged.
    let r = admin(h, Method::PUT, &team, Some(json!({"name": "a"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(access(h, &o.key_a), [vec!["github__*".to_owned()]]);
    // Created with lists.
    let r = admin(
        h,
        Method::POST,
        "/api/teams",
        Some(json!({"name": "tools", "mcp_tools": ["docs__*"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let tools_team = r.json["id"].as_str().unwrap().to_owned();
    let r = admin(
        h,
        Method::POST,
        "/api/virtual-keys",
        Some(json!({"name": "tooled", "team_id": tools_team, "mcp_tools": ["docs__search"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let tooled = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        access(h, &tooled),
        [vec!["docs__search".to_owned()], vec!["docs__*".to_owned()]]
    );
    // Patterns must compile; customers have no list.
    for (path, method, body, field) in [
        (
            "/api/virtual-keys",
            Method::POST,
            json!({"name": "bad", "mcp_tools": ["regex:["]}),
            "mcp_tools[0]",
        ),
        (
            key.as_str(),
            Method::PUT,
            json!({"mcp_tools": ["ok", "regex:("]}),
            "mcp_tools[1]",
        ),
        (
            team.as_str(),
            Method::PUT,
            json!({"mcp_tools": ["regex:["]}),
            "mcp_tools[0]",
        ),
        (
            "/api/teams",
            Method::POST,
            json!({"name": "t2", "mcp_tools": ["regex:["]}),
            "mcp_tools[0]",
        ),
    ] {
        let r = admin(h, method, path, Some(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
    }
    let r = admin(
        h,
        Method::PUT,
        &format!("/api/customers/{}", o.team_b),
        Some(json!({"mcp_tools": []})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

fn call(id: &str, vk: &str, ago_ms: i64, server: &str, tool: &str, status: u32) -> UsageRecord {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    UsageRecord {
        request_id: id.into(),
        virtual_key_id: vk.into(),
        latency_ms: 37,
        status,
        error_class: match status {
            200 => "",
            403 => "tool_not_allowed",
            _ => "timeout",
        }
        .into(),
        started_at_unix_ms: now_ms - ago_ms,
        mcp: Some(tollgate_proto::usage::v1::McpCall {
            server: server.into(),
            tool: tool.into(),
        }),
        ..Default::default()
    }
}

fn call_ids(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let calls = r.json["calls"].as_array().unwrap();
    assert_eq!(r.json["count"], calls.len());
    calls
        .iter()
        .map(|c| c["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_are_logged_scoped_and_kept_out_of_requests_and_spend() {
    let o = org().await;
    let h = &o.h;
    let member = o.personal_key(Role::Member).to_string();
    let mut records = Vec::new();
    for r in [
        call("c-key-a", &o.key_a, 1_000, "github", "search_issues", 200),
        call("c-key-b", &o.key_b, 2_000, "github", "get_issue", 504),
        call("c-member", &member, 3_000, "docs", "search", 403),
    ] {
        records.push(billed(h, r).await);
    }
    // One inference request in the same batch.
    let mut inference = billed(
        h,
        UsageRecord {
            request_id: "r-1".into(),
            virtual_key_id: o.key_a.clone(),
            provider: "bedrock".into(),
            model_requested: "m".into(),
            model_resolved: "m".into(),
            status: 200,
            input_tokens: 10,
            cost_nano_usd: Some(5),
            ..Default::default()
        },
    )
    .await;
    inference.started_at_unix_ms = records[0].started_at_unix_ms - 10;
    records.push(inference);
    assert_eq!(h.cp.ingest_usage(&records).await.unwrap(), 4);
    assert_eq!(h.cp.ingest_usage(&records).await.unwrap(), 0, "idempotent");

    // Admins see every call, newest first, with the key's name.
    let as_admin = |q: &str| {
        let path = format!("/api/mcp/calls{q}");
        async move { admin(h, Method::GET, &path, None).await }
    };
    let r = as_admin("").await;
    assert_eq!(call_ids(&r), ["c-key-a", "c-key-b", "c-member"]);
    let first = &r.json["calls"][0];
    assert_eq!(
        first["virtual_key"],
        json!({"id": o.key_a, "name": "key-a"})
    );
    assert_eq!(first["server"], "github");
    assert_eq!(first["tool"], "search_issues");
    assert_eq!(first["status"], 200);
    assert_eq!(first["latency_ms"], 37);
    assert_eq!(first["team_id"], o.team_a.as_str());
    assert_eq!(r.json["calls"][1]["error_class"], "timeout");
    // Filters.
    assert_eq!(call_ids(&as_admin("?server=docs").await), ["c-member"]);
    assert_eq!(call_ids(&as_admin("?tool=get_issue").await), ["c-key-b"]);
    assert_eq!(call_ids(&as_admin("?status=4xx").await), ["c-member"]);
    assert_eq!(
        call_ids(&as_admin(&format!("?virtual_key_id={}", o.key_b)).await),
        ["c-key-b"]
    );
    assert_eq!(
        call_ids(&as_admin(&format!("?team_id={}", o.team_a)).await),
        ["c-key-a", "c-member"]
    );
    // Pages.
    let r = as_admin("?limit=2").await;
    assert_eq!(call_ids(&r), ["c-key-a", "c-key-b"]);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r = as_admin(&format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(call_ids(&r), ["c-member"]);
    assert!(r.json["next_cursor"].is_null());
    for (q, field) in [
        ("?limit=0", "limit"),
        ("?status=ok", "status"),
        ("?since=nope", "since"),
        ("?cursor=x", "cursor"),
        ("?team_id=1", "team_id"),
    ] {
        assert_error(
            &as_admin(q).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field),
        );
    }

    // Scopes: the team admin their team's calls, the member their own key's.
    let o = &o;
    let scoped = |role: Role, q: &'static str| async move {
        call_ids(
            &o.as_role(role, Method::GET, &format!("/api/mcp/calls{q}"), None)
                .await,
        )
    };
    assert_eq!(
        scoped(Role::Viewer, "").await,
        ["c-key-a", "c-key-b", "c-member"]
    );
    assert_eq!(scoped(Role::TeamAdmin, "").await, ["c-key-a", "c-member"]);
    assert_eq!(scoped(Role::Member, "").await, ["c-member"]);
    assert!(scoped(Role::Member, "?server=github").await.is_empty());

    // Not request logs, not spend.
    let r = admin(h, Method::GET, "/api/logs", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let logged: Vec<&str> = r.json["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ["r-1"]);
    let r = admin(h, Method::GET, "/api/logs/c-key-a", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let usage = h.cp.store().usage_by_virtual_key().await.unwrap();
    assert_eq!(usage.values().map(|t| t.requests).sum::<u64>(), 1);
    let r = admin(h, Method::GET, "/api/spend?group_by=key", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains(&o.key_b), "{}", r.text);
    assert!(!r.text.contains(&member), "{}", r.text);
}

//! Roles on the admin API: every operation of the OpenAPI description called as every role
//! (signed-in users of each role through their session, plus the admin token), against an
//! expectation written here independently of the server's table; then the scopes (a team admin's
//! team, a member's own key), CSRF on cookie-authenticated changes, and personal API tokens.

use tollgate_control_plane::crypto::sha256;
use tollgate_control_plane::identity::{
    GROUP_MAPPINGS_SETTING, GroupMappings, Profile, Role, RoleMapping, SessionRecord, TeamMapping,
};
use tollgate_control_plane::model::{AuditEvent, now};
use tollgate_control_plane::store::Provisioned;
use uuid::Uuid;

use super::*;

const ADMIN_TOKEN: &str = "admin-secret-token";

pub(super) struct Org {
    pub(super) h: Harness,
    pub(super) team_a: String,
    pub(super) team_b: String,
    pub(super) key_a: String,
    pub(super) key_b: String,
    customer: String,
    provider_key: String,
    /// A user only the admin deletes (so the others' sessions survive the matrix).
    spare_user: String,
    /// Role → (cookie value, CSRF token, personal key id).
    sessions: Vec<(Role, String, String, Uuid)>,
}

pub(super) async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut call = Call::new(method, path)
        .token(ADMIN_TOKEN)
        .peer(Some(remote()));
    if let Some(b) = body {
        call = call.json(b);
    }
    call.send(&h.router).await
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        actor: "test".into(),
        action: action.into(),
        target: "users".into(),
        details: json!({}),
    }
}

async fn sign_in(h: &Harness, name: &str, groups: &[&str]) -> Provisioned {
    let mappings = h.cp.group_mappings().await.unwrap();
    let key = |u: Uuid, g: u64| h.cp.personal_key(u, g);
    let p =
        h.cp.store()
            .provision_user(
                &Profile {
                    issuer: Some("https://idp.test".into()),
                    subject: Some(name.into()),
                    user_name: format!("{name}@example.com"),
                    email: None,
                    display_name: None,
                    groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
                },
                &mappings,
                &key,
                &event("user.login"),
            )
            .await
            .unwrap();
    if let Some(v) = p.version {
        h.cp.republish_if_behind(v).await.unwrap();
    }
    p
}

async fn session(h: &Harness, user: Uuid, tag: &str) -> (String, String) {
    let value = format!("session-{tag}-{}", Uuid::new_v4());
    let csrf = format!("csrf-{tag}");
    h.cp.store()
        .create_session(&SessionRecord {
            id_sha256: sha256(value.as_bytes()),
            user_id: user,
            csrf_token: csrf.clone(),
            created_at: now(),
            expires_at: now() + time::Duration::hours(1),
        })
        .await
        .unwrap();
    (value, csrf)
}

pub(super) async fn org() -> Org {
    let h = sqlite_harness(AdminAuth {
        token: Some(ADMIN_TOKEN.into()),
        allow_loopback_without_token: true,
    })
    .await;
    let id = |r: &Resp| {
        assert!(r.status.is_success(), "{}", r.text);
        r.json["id"].as_str().unwrap().to_owned()
    };
    let r = admin(&h, Method::POST, "/api/teams", Some(json!({"name": "a"}))).await;
    let team_a = id(&r);
    let r = admin(&h, Method::POST, "/api/teams", Some(json!({"name": "b"}))).await;
    let team_b = id(&r);
    let r = admin(
        &h,
        Method::POST,
        "/api/customers",
        Some(json!({"name": "c"})),
    )
    .await;
    let customer = id(&r);
    let r = admin(
        &h,
        Method::POST,
        "/api/providers",
        Some(json!({"provider": "bedrock"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = admin(
        &h,
        Method::POST,
        "/api/providers/bedrock/keys",
        Some(json!({"name": "k", "models": ["*"], "bedrock_key_config": {
            "access_key": "env.AWS_ACCESS_KEY_ID", "secret_key": "env.AWS_SECRET_ACCESS_KEY",
            "region": "us-east-1"}})),
    )
    .await;
    let provider_key = id(&r);
    let r = admin(
        &h,
        Method::POST,
        "/api/virtual-keys",
        Some(json!({"name": "key-a", "team_id": team_a})),
    )
    .await;
    let key_a = id(&r);
    let r = admin(
        &h,
        Method::POST,
        "/api/virtual-keys",
        Some(json!({"name": "key-b", "team_id": team_b})),
    )
    .await;
    let key_b = id(&r);

    let mappings = GroupMappings {
        teams: vec![TeamMapping {
            group: "team-a".into(),
            team_id: team_a.parse().unwrap(),
        }],
        roles: vec![
            RoleMapping {
                group: "admins".into(),
                role: Role::Admin,
            },
            RoleMapping {
                group: "auditors".into(),
                role: Role::Viewer,
            },
            RoleMapping {
                group: "leads".into(),
                role: Role::TeamAdmin,
            },
        ],
        default_role: Role::Member,
        allowed_groups: Vec::new(),
    };
    h.cp.store()
        .put_setting(
            GROUP_MAPPINGS_SETTING,
            Some(&serde_json::to_value(&mappings).unwrap()),
            &event("group_mappings.update"),
        )
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for (role, name, groups) in [
        (Role::Admin, "ada", &["admins"][..]),
        (Role::Viewer, "vic", &["auditors"][..]),
        (Role::TeamAdmin, "tom", &["leads", "team-a"][..]),
        (Role::Member, "mia", &["team-a"][..]),
    ] {
        let p = sign_in(&h, name, groups).await;
        let (cookie, csrf) = session(&h, p.user.id, name).await;
        sessions.push((role, cookie, csrf, p.personal_key_id.unwrap()));
    }
    let spare_user = sign_in(&h, "zed", &[]).await.user.id.to_string();
    Org {
        h,
        team_a,
        team_b,
        key_a,
        key_b,
        customer,
        provider_key,
        spare_user,
        sessions,
    }
}

impl Org {
    pub(super) async fn as_role(
        &self,
        role: Role,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let (_, cookie, csrf, _) = self.sessions.iter().find(|s| s.0 == role).unwrap();
        let cookie = format!("tollgate_session={cookie}");
        let mut call = Call::new(method, path)
            .peer(Some(remote()))
            .header("cookie", &cookie)
            .header("x-csrf-token", csrf);
        if let Some(b) = body {
            call = call.json(b);
        }
        call.send(&self.h.router).await
    }

    pub(super) fn personal_key(&self, role: Role) -> Uuid {
        self.sessions.iter().find(|s| s.0 == role).unwrap().3
    }
}

/// Who may call each operation: `A` admin, `V` viewer, `T` team admin (of team `a`), `M`
/// member (of team `a`), `K` the admin token. Path parameters name team `a`, its key `key-a`,
/// the customer, the provider's key, a spare user.
fn expected(op: &str) -> &'static str {
    match op {
        "GET /api/providers"
        | "GET /api/providers/{provider}"
        | "GET /api/providers/{provider}/keys"
        | "GET /api/providers/{provider}/keys/{key_id}"
        | "GET /api/keys"
        | "GET /api/pricing"
        | "GET /api/customers"
        | "GET /api/customers/{customer_id}"
        | "GET /api/governance/customers"
        | "GET /api/governance/customers/{customer_id}"
        | "GET /api/customers/{customer_id}/usage"
        | "GET /api/data-planes"
        | "GET /api/mcp/servers"
        | "GET /api/mcp/servers/{name}"
        | "GET /api/version" => "AVTK",
        "GET /api/teams"
        | "GET /api/governance/teams"
        | "GET /api/teams/{team_id}"
        | "GET /api/governance/teams/{team_id}"
        | "GET /api/teams/{team_id}/usage"
        | "GET /api/virtual-keys"
        | "GET /api/governance/virtual-keys" => "AVTMK",
        "PUT /api/teams/{team_id}"
        | "PUT /api/governance/teams/{team_id}"
        | "POST /api/teams/{team_id}/budgets/{budget_id}/reset"
        | "POST /api/virtual-keys"
        | "POST /api/governance/virtual-keys"
        | "PUT /api/virtual-keys/{vk_id}"
        | "PUT /api/governance/virtual-keys/{vk_id}"
        | "DELETE /api/virtual-keys/{vk_id}"
        | "DELETE /api/governance/virtual-keys/{vk_id}"
        | "POST /api/virtual-keys/{vk_id}/budgets/{budget_id}/reset" => "ATK",
        // `key-a` is in team a, but it is not the member's own key.
        "GET /api/virtual-keys/{vk_id}"
        | "GET /api/governance/virtual-keys/{vk_id}"
        | "GET /api/virtual-keys/{vk_id}/usage" => "AVTK",
        "GET /api/audit-logs"
        | "GET /api/audit-logs/export"
        | "GET /api/users"
        | "GET /api/users/{user_id}" => "AVK",
        // Everything about oneself: the admin token has no self but `/api/me`.
        "GET /api/me" => "AVTMK",
        // Every role may read request logs; the handlers narrow them to the caller's keys (an
        // unknown request id is a 404 for everyone).
        "GET /api/logs" | "GET /api/logs/{request_id}" => "AVTMK",
        // Recorded bodies: admins and team admins (their team's requests; the handler checks).
        "GET /api/logs/{request_id}/content" => "ATK",
        // Spend likewise: every role, summed over the caller's scope.
        "GET /api/spend" | "GET /api/spend/export" => "AVTMK",
        // The MCP tool-call log likewise: every role, narrowed to the caller's scope.
        "GET /api/mcp/calls" => "AVTMK",
        // Jobs: every role sees the jobs it may read (an unknown job is a 404 for everyone) and
        // may export what it may read (queued with a valid body, `valid_body`; an audit export
        // is refused to team admins and members by the handler).
        "GET /api/jobs"
        | "GET /api/jobs/{job_id}"
        | "POST /api/jobs/export"
        | "GET /api/jobs/{job_id}/download" => "AVTMK",
        "GET /api/me/key"
        | "POST /api/me/key/rotate"
        | "GET /api/me/tokens"
        | "POST /api/me/tokens"
        | "DELETE /api/me/tokens/{token_id}" => "AVTM",
        "GET /api/scim" | "GET /api/sso" | "GET /api/group-mappings" => "AK",
        // Testing a provider key spends money at the provider: admins only.
        "POST /api/providers/{provider}/keys/{key_id}/test" => "AK",
        _ if op.starts_with("GET ") => panic!("no expectation for {op}"),
        // Every other change (providers, keys, MCP servers, pricing, customers, teams' creation
        // and deletion, users, customer budget resets) is the admin's.
        _ => "AK",
    }
}

/// A body the operation accepts and the status it then answers, where the empty body's 400
/// would hide whether the role may do it.
fn valid_body(op: &str) -> Option<(Value, StatusCode)> {
    match op {
        "POST /api/jobs/export" => Some((
            json!({"kind": "spend", "query": {"group_by": "team"}}),
            StatusCode::ACCEPTED,
        )),
        _ => None,
    }
}

async fn role_matrix(o: &Org) {
    let spec = tollgate_control_plane::openapi();
    let spec: Value = serde_json::to_value(&spec).unwrap();
    // Deletions last, so the objects the other calls name still exist; and replacing the
    // group mappings (which decide the users' roles) after everything else.
    let mut ops: Vec<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/api/"))
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    ops.sort_by_key(|(m, p)| (m == "PUT" && p == "/api/group-mappings", m == "DELETE"));
    let mut checked = 0;
    for (method, path) in &ops {
        {
            let op = format!("{method} {path}");
            let allowed = expected(&op);
            let concrete = path
                .replace("{provider}", "bedrock")
                .replace("{key_id}", &o.provider_key)
                .replace("{vk_id}", &o.key_a)
                .replace("{team_id}", &o.team_a)
                .replace("{customer_id}", &o.customer)
                .replace("{user_id}", &o.spare_user)
                .replace("{budget_id}", &Uuid::new_v4().to_string())
                .replace("{override_id}", &Uuid::new_v4().to_string())
                .replace("{token_id}", &Uuid::new_v4().to_string())
                .replace("{request_id}", "req-none")
                .replace("{job_id}", &Uuid::new_v4().to_string())
                .replace("{name}", "github");
            let m: Method = method.parse().unwrap();
            let valid = valid_body(&op);
            let body = match &valid {
                Some((b, _)) => Some(b.clone()),
                None => matches!(m, Method::POST | Method::PUT).then(|| json!({})),
            };
            // The admin last: its changes (deletions) must not hide the others' outcomes.
            for (flag, role) in [
                ('V', Some(Role::Viewer)),
                ('M', Some(Role::Member)),
                ('T', Some(Role::TeamAdmin)),
                ('A', Some(Role::Admin)),
                ('K', None),
            ] {
                let r = match role {
                    Some(role) => o.as_role(role, m.clone(), &concrete, body.clone()).await,
                    None => admin(&o.h, m.clone(), &concrete, body.clone()).await,
                };
                assert_ne!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "{op} as {flag}: {}",
                    r.text
                );
                if allowed.contains(flag) {
                    assert_ne!(
                        r.status,
                        StatusCode::FORBIDDEN,
                        "{op} as {flag}: {}",
                        r.text
                    );
                    if let Some((_, status)) = &valid {
                        assert_eq!(r.status, *status, "{op} as {flag}: {}", r.text);
                    }
                    // The route itself answered: not a server error, not the router's fallback.
                    assert!(
                        !r.status.is_server_error() && !r.text.contains("no admin API route"),
                        "{op} as {flag}: {}",
                        r.text
                    );
                } else {
                    assert_eq!(
                        r.status,
                        StatusCode::FORBIDDEN,
                        "{op} as {flag}: {}",
                        r.text
                    );
                    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
                }
                checked += 1;
            }
        }
    }
    assert!(ops.len() >= 75, "{} operations", ops.len());
    assert_eq!(checked, ops.len() * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_as_every_role() {
    let o = org().await;
    role_matrix(&o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_admins_and_members_see_and_manage_only_their_scope() {
    let o = org().await;
    let names = |r: &Resp| -> Vec<String> {
        r.json["virtual_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Lists are narrowed: the team admin sees team a's keys (key-a and the personal keys placed
    // there), the member only their own key, the viewer everything.
    let all = names(
        &o.as_role(Role::Viewer, Method::GET, "/api/virtual-keys", None)
            .await,
    );
    assert!(
        all.contains(&"key-b".to_owned()) && all.len() == 7,
        "{all:?}"
    );
    let team = names(
        &o.as_role(Role::TeamAdmin, Method::GET, "/api/virtual-keys", None)
            .await,
    );
    assert_eq!(
        team,
        [
            "key-a",
            "personal:mia@example.com",
            "personal:tom@example.com"
        ]
    );
    let own = names(
        &o.as_role(Role::Member, Method::GET, "/api/virtual-keys", None)
            .await,
    );
    assert_eq!(own, ["personal:mia@example.com"]);
    let r = o
        .as_role(Role::TeamAdmin, Method::GET, "/api/teams", None)
        .await;
    assert_eq!(r.json["count"], 1, "{}", r.text);

    // A member reads their own key and its usage, nothing else.
    let mine = o.personal_key(Role::Member);
    for path in [
        format!("/api/virtual-keys/{mine}"),
        format!("/api/virtual-keys/{mine}/usage"),
        "/api/me/key".to_owned(),
    ] {
        let r = o.as_role(Role::Member, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    let r = o
        .as_role(
            Role::Member,
            Method::GET,
            &format!("/api/virtual-keys/{}", o.key_b),
            None,
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);

    // The team admin manages team a's keys and budgets, not team b's, and cannot move a key
    // out of the team or rename the team.
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &format!("/api/virtual-keys/{}", o.key_a),
            Some(json!({"rate_limit": {"request_max_limit": 10, "request_reset_duration": "1m"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (path, body) in [
        (
            format!("/api/virtual-keys/{}", o.key_b),
            json!({"max_concurrent": 1}),
        ),
        (
            format!("/api/virtual-keys/{}", o.key_a),
            json!({"team_id": o.team_b}),
        ),
        (
            format!("/api/teams/{}", o.team_b),
            json!({"max_concurrent": 1}),
        ),
        (
            format!("/api/teams/{}", o.team_a),
            json!({"name": "renamed"}),
        ),
    ] {
        let r = o
            .as_role(Role::TeamAdmin, Method::PUT, &path, Some(body))
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    }
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &format!("/api/teams/{}", o.team_a),
            Some(json!({"max_concurrent": 20})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A key the team admin creates lands in their team, whatever team it names.
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::POST,
            "/api/virtual-keys",
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["team_id"], o.team_a.as_str());
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::POST,
            "/api/virtual-keys",
            Some(json!({"name": "elsewhere", "team_id": o.team_b})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_changes_need_the_csrf_token_and_tokens_act_as_their_user() {
    let o = org().await;
    let (_, cookie, csrf, _) = o.sessions.iter().find(|s| s.0 == Role::Admin).unwrap();
    let cookie = format!("tollgate_session={cookie}");
    let create = |csrf: Option<&'static str>, origin: Option<&'static str>| {
        let mut c = Call::new(Method::POST, "/api/teams")
            .peer(Some(remote()))
            .header("cookie", &cookie)
            .header("host", "gateway.example")
            .json(json!({"name": format!("t-{}", Uuid::new_v4())}));
        if let Some(v) = csrf {
            c = c.header("x-csrf-token", v);
        }
        if let Some(o) = origin {
            c = c.header("origin", o);
        }
        c
    };
    for (token, origin) in [
        (None, None),
        (Some("wrong"), None),
        (Some("csrf-ada"), Some("https://evil.example")),
    ] {
        let r = create(token, origin).send(&o.h.router).await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    }
    assert_eq!(csrf, "csrf-ada");
    let r = create(Some("csrf-ada"), Some("https://gateway.example"))
        .send(&o.h.router)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Reads need no CSRF token; /api/me hands it to the browser.
    let r = Call::new(Method::GET, "/api/me")
        .peer(Some(remote()))
        .header("cookie", &cookie)
        .send(&o.h.router)
        .await;
    assert_eq!(r.json["csrf_token"], "csrf-ada", "{}", r.text);
    assert_eq!(r.json["role"], "admin");
    assert_eq!(r.json["user"]["user_name"], "ada@example.com");

    // A personal API token, made from the member's session, acts as the member.
    let (_, mia_cookie, mia_csrf, mia_key) =
        o.sessions.iter().find(|s| s.0 == Role::Member).unwrap();
    let r = o
        .as_role(
            Role::Member,
            Method::POST,
            "/api/me/tokens",
            Some(json!({"name": "script", "expires_in_days": 7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let value = r.json["value"].as_str().unwrap().to_owned();
    let token_id = r.json["token"]["id"].as_str().unwrap().to_owned();
    assert!(value.starts_with("tgp_") && !r.text.contains("token_sha256"));
    let as_token = |method: Method, path: String| {
        let value = value.clone();
        let router = o.h.router.clone();
        async move {
            Call::new(method, &path)
                .peer(Some(remote()))
                .token(&value)
                .send(&router)
                .await
        }
    };
    let r = as_token(Method::GET, "/api/me".into()).await;
    assert_eq!(
        (r.json["credential"].as_str(), r.json["role"].as_str()),
        (Some("api_token"), Some("member")),
        "{}",
        r.text
    );
    let r = as_token(Method::GET, format!("/api/virtual-keys/{mia_key}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = as_token(Method::GET, "/api/providers".into()).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    // A token cannot mint more tokens.
    let r = Call::new(Method::POST, "/api/me/tokens")
        .peer(Some(remote()))
        .token(&value)
        .json(json!({"name": "again"}))
        .send(&o.h.router)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    // Listed without its value; revoked, it stops at once.
    let r = o
        .as_role(Role::Member, Method::GET, "/api/me/tokens", None)
        .await;
    assert_eq!(r.json["count"], 1);
    assert!(!r.text.contains(&value));
    let r = Call::new(Method::DELETE, &format!("/api/me/tokens/{token_id}"))
        .peer(Some(remote()))
        .header("cookie", &format!("tollgate_session={mia_cookie}"))
        .header("x-csrf-token", mia_csrf)
        .send(&o.h.router)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = as_token(Method::GET, "/api/me".into()).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);

    // Rotation: a new value once, the key's digest changes, the member's key id stays.
    let before = current(&o.h)
        .virtual_keys
        .iter()
        .find(|k| k.id == mia_key.to_string())
        .unwrap()
        .key_sha256
        .clone();
    let r = o
        .as_role(Role::Member, Method::POST, "/api/me/key/rotate", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rotated = r.json["value"].as_str().unwrap();
    let after = current(&o.h)
        .virtual_keys
        .iter()
        .find(|k| k.id == mia_key.to_string())
        .unwrap()
        .key_sha256
        .clone();
    assert_ne!(before, after);
    assert_eq!(after, sha256(rotated.as_bytes()).to_vec());

    // An admin deactivates the member: their session ends and their key stops.
    let mia = o
        .as_role(Role::Member, Method::GET, "/api/me", None)
        .await
        .json["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin(
        &o.h,
        Method::PUT,
        &format!("/api/users/{mia}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["active"], false);
    let key = current(&o.h)
        .virtual_keys
        .iter()
        .find(|k| k.id == mia_key.to_string())
        .cloned();
    assert!(
        !key.expect("the personal key is kept, inactive").active,
        "the key no longer works"
    );
    let r = o.as_role(Role::Member, Method::GET, "/api/me", None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
}

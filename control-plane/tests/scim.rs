//! SCIM 2.0 conformance (`/scim/v2`), in-process through `tower::ServiceExt::oneshot`, on SQLite
//! and PostgreSQL: the token (admin routes, refusals), Users (create, uniqueness, list, filters,
//! pagination, get, replace, PATCH in Okta's and Entra ID's shapes, delete), Groups (create,
//! filter, PATCH of members including Entra's `members[value eq "id"]`, rename, delete), group
//! membership moving users and their personal key between teams and giving roles, deactivation
//! reaching the published snapshot, error shapes, audit rows.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tollgate_control_plane::governance::Limits;
use tollgate_control_plane::identity::{GROUP_MAPPINGS_SETTING, Profile, Role};
use tollgate_control_plane::model::{AuditEvent, TeamRecord, now};
use tollgate_control_plane::{
    AdminAuth, ControlPlane, ControlPlaneConfig, EnvAllowlist, StoreConfig,
};
use tower::ServiceExt as _;
use uuid::Uuid;

const KEY: [u8; 32] = [42u8; 32];
const SCIM_JSON: &str = "application/scim+json";

struct Resp {
    status: StatusCode,
    json: Value,
    text: String,
    content_type: Option<String>,
    location: Option<String>,
    www_authenticate: Option<String>,
}

struct Scim {
    cp: ControlPlane,
    router: Router,
    token: Option<String>,
}

impl Scim {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, SCIM_JSON);
        }
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let (content_type, location, www_authenticate) = {
            let h = |name| {
                resp.headers()
                    .get(name)
                    .and_then(|v: &header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            (
                h(header::CONTENT_TYPE),
                h(header::LOCATION),
                h(header::WWW_AUTHENTICATE),
            )
        };
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"))
        };
        Resp {
            status,
            json,
            text,
            content_type,
            location,
            www_authenticate,
        }
    }

    /// An authenticated SCIM call.
    async fn scim(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call(
            method,
            &format!("/scim/v2{path}"),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
            self.token.as_deref(),
        )
        .await
    }

    /// An admin API call (loopback, no admin token configured).
    async fn admin(&self, method: Method, path: &str) -> Resp {
        self.call(method, path, None, None).await
    }
}

fn assert_scim_error(r: &Resp, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text);
    assert_eq!(
        r.json["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{}",
        r.text
    );
    assert_eq!(r.json["status"], status.to_string(), "{}", r.text);
    assert!(r.json["detail"].as_str().is_some_and(|d| !d.is_empty()));
    match scim_type {
        Some(t) => assert_eq!(r.json["scimType"], t, "{}", r.text),
        None => assert!(r.json.get("scimType").is_none(), "{}", r.text),
    }
    assert_eq!(r.content_type.as_deref(), Some(SCIM_JSON));
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

async fn team(cp: &ControlPlane, name: &str) -> Uuid {
    let t = now();
    let team = TeamRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        customer_id: None,
        limits: Limits::default(),
        member_key_limits: None,
        content_logging: None,
        mcp_tools: None,
        created_at: t,
        updated_at: t,
    };
    let event = AuditEvent {
        actor: "test".into(),
        action: "team.create".into(),
        target: format!("teams/{}", team.id),
        details: json!({}),
    };
    let v = cp.store().create_team(&team, &event).await.unwrap();
    cp.republish_if_behind(v).await.unwrap();
    team.id
}

/// The personal key of a user, as the published snapshot has it: (team id, active).
fn published_key(cp: &ControlPlane, key_id: Uuid) -> Option<(String, bool)> {
    cp.snapshots()
        .borrow()
        .virtual_keys
        .iter()
        .find(|k| k.id == key_id.to_string())
        .map(|k| (k.team_id.clone(), k.active))
}

async fn start(store: StoreConfig) -> Scim {
    let cp = ControlPlane::start(ControlPlaneConfig {
        store,
        secret_key: KEY,
        admin_auth: AdminAuth {
            token: None,
            allow_loopback_without_token: true,
        },
        env_allow: EnvAllowlist::default(),
    })
    .await
    .unwrap();
    Scim {
        router: cp.admin_router(),
        cp,
        token: None,
    }
}

async fn scim_conforms(mut s: Scim) {
    let cp = s.cp.clone();

    // ---- Token: none configured, so SCIM refuses everything with a SCIM 401.
    let r = s
        .call(Method::GET, "/scim/v2/Users", None, Some("anything"))
        .await;
    assert_scim_error(&r, 401, None);
    assert!(r.json["detail"].as_str().unwrap().contains("disabled"));
    assert!(r.www_authenticate.unwrap().starts_with("Bearer"));
    // The refused call is in the audit log (once per source per 10 s), without the token.
    let failed = cp
        .store()
        .audit_chain()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.action == "auth.failed")
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].target, "/scim/v2/Users");
    assert_eq!(failed[0].details["result"], "failure");
    assert!(!failed[0].details.to_string().contains("anything"));
    let r = s.admin(Method::GET, "/api/scim").await;
    assert_eq!(
        (r.status, &r.json["enabled"]),
        (StatusCode::OK, &json!(false))
    );

    let r = s.admin(Method::POST, "/api/scim/token").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tgscim_") && token.len() > 40, "{token}");
    assert_eq!(r.json["base_path"], "/scim/v2");
    // Only the digest is stored; the status never shows the value.
    let stored = cp
        .store()
        .setting("scim")
        .await
        .unwrap()
        .unwrap()
        .to_string();
    assert!(!stored.contains(&token[7..]), "{stored}");
    let r = s.admin(Method::GET, "/api/scim").await;
    assert_eq!(r.json["enabled"], true);
    assert!(!r.text.contains(&token[7..]));
    assert_eq!(r.json["token_prefix"], &token[..11]);

    for bad in [None, Some("tgscim_wrong"), Some("")] {
        let r = s.call(Method::GET, "/scim/v2/Users", None, bad).await;
        assert_scim_error(&r, 401, None);
    }
    // Rotation: a new token replaces the old one at once.
    let old = token;
    let r = s.admin(Method::POST, "/api/scim/token").await;
    let token = r.json["token"].as_str().unwrap().to_owned();
    assert_ne!(token, old);
    assert_scim_error(
        &s.call(Method::GET, "/scim/v2/Users", None, Some(&old))
            .await,
        401,
        None,
    );
    s.token = Some(token.clone());

    // ---- Discovery.
    let r = s.scim(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type.as_deref(), Some(SCIM_JSON));
    assert_eq!(r.json["patch"]["supported"], true);
    assert_eq!(r.json["bulk"]["supported"], false);
    assert_eq!(r.json["filter"]["supported"], true);
    let r = s.scim(Method::GET, "/ResourceTypes", None).await;
    assert_eq!(r.json["totalResults"], 2);
    let r = s.scim(Method::GET, "/ResourceTypes/User", None).await;
    assert_eq!(r.json["endpoint"], "/Users");
    let r = s.scim(Method::GET, "/Schemas", None).await;
    assert_eq!(
        r.json["Resources"][0]["id"],
        "urn:ietf:params:scim:schemas:core:2.0:User"
    );
    let r = s
        .scim(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
            None,
        )
        .await;
    assert_eq!(r.json["name"], "Group");
    assert_scim_error(&s.scim(Method::GET, "/Bulk", None).await, 404, None);
    assert_scim_error(
        &s.scim(Method::PATCH, "/Users", Some(json!({}))).await,
        405,
        None,
    );

    // ---- Users: create (Okta's shape), uniqueness, errors.
    let r = s
        .scim(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "Alice@Example.com",
                "name": {"givenName": "Alice", "familyName": "Liddell"},
                "emails": [{"primary": true, "value": "alice@example.com", "type": "work"}],
                "externalId": "okta-00u1",
                "active": true,
                "locale": "en-US",
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.content_type.as_deref(), Some(SCIM_JSON));
    let alice = r.json["id"].as_str().unwrap().to_owned();
    let alice_id: Uuid = alice.parse().unwrap();
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/scim/v2/Users/{alice}").as_str())
    );
    assert_eq!(r.json["userName"], "alice@example.com");
    assert_eq!(r.json["displayName"], "Alice Liddell");
    assert_eq!(r.json["emails"][0]["value"], "alice@example.com");
    assert_eq!(r.json["active"], true);
    assert_eq!(r.json["meta"]["resourceType"], "User");
    assert_eq!(
        r.json["meta"]["location"],
        format!("/scim/v2/Users/{alice}")
    );
    assert!(r.json["meta"]["created"].as_str().unwrap().ends_with('Z'));

    let dup = s
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "ALICE@example.com"})),
        )
        .await;
    assert_scim_error(&dup, 409, Some("uniqueness"));
    assert_scim_error(
        &s.call(
            Method::POST,
            "/scim/v2/Users",
            Some(b"{not json".to_vec()),
            Some(&token),
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &s.scim(
            Method::POST,
            "/Users",
            Some(json!({"name": {"formatted": "x"}})),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &s.scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "z", "active": "perhaps"})),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    let big = vec![b' '; 2 * 1024 * 1024];
    assert_scim_error(
        &s.call(Method::POST, "/scim/v2/Users", Some(big), Some(&token))
            .await,
        413,
        None,
    );

    // Entra ID's create shape (string booleans, enterprise extension, work email path style).
    let r = s
        .scim(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "entra-bob",
                "userName": "bob@example.com",
                "active": "True",
                "displayName": "Bob",
                "emails": [{"primary": true, "type": "work", "value": "bob@example.com"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bob = r.json["id"].as_str().unwrap().to_owned();
    let bob_id: Uuid = bob.parse().unwrap();
    let r = s
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "carol@example.com"})),
        )
        .await;
    let carol = r.json["id"].as_str().unwrap().to_owned();

    // ---- List, filters, pagination.
    let r = s.scim(Method::GET, "/Users", None).await;
    assert_eq!(
        r.json["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(r.json["totalResults"], 3);
    let r = s
        .scim(
            Method::GET,
            "/Users?filter=userName%20eq%20%22ALICE%40example.com%22",
            None,
        )
        .await;
    assert_eq!(r.json["totalResults"], 1, "{}", r.text);
    assert_eq!(r.json["Resources"][0]["id"], alice.as_str());
    let r = s
        .scim(
            Method::GET,
            "/Users?filter=externalId+eq+%22entra-bob%22",
            None,
        )
        .await;
    assert_eq!(r.json["totalResults"], 1, "{}", r.text);
    assert_eq!(r.json["Resources"][0]["id"], bob.as_str());
    let r = s
        .scim(
            Method::GET,
            "/Users?filter=UserName%20eq%20%22nobody%22",
            None,
        )
        .await;
    assert_eq!(
        (r.json["totalResults"].clone(), r.json["Resources"].clone()),
        (json!(0), json!([]))
    );
    assert_scim_error(
        &s.scim(Method::GET, "/Users?filter=title%20eq%20%22x%22", None)
            .await,
        400,
        Some("invalidFilter"),
    );
    assert_scim_error(
        &s.scim(Method::GET, "/Users?filter=userName%20sw%20%22a%22", None)
            .await,
        400,
        Some("invalidFilter"),
    );
    let r = s
        .scim(Method::GET, "/Users?startIndex=2&count=1", None)
        .await;
    assert_eq!(
        (
            &r.json["totalResults"],
            &r.json["startIndex"],
            &r.json["itemsPerPage"]
        ),
        (&json!(3), &json!(2), &json!(1))
    );
    assert_eq!(
        r.json["Resources"][0]["id"],
        bob.as_str(),
        "ordered by userName"
    );
    let r = s.scim(Method::GET, "/Users?count=0", None).await;
    assert_eq!(
        (&r.json["totalResults"], &r.json["itemsPerPage"]),
        (&json!(3), &json!(0))
    );
    let r = s
        .scim(Method::GET, "/Users?attributes=userName", None)
        .await;
    assert!(r.json["Resources"][0].get("emails").is_none());
    assert!(r.json["Resources"][0].get("userName").is_some());

    // ---- Get.
    let r = s.scim(Method::GET, &format!("/Users/{alice}"), None).await;
    assert_eq!(
        (r.status, &r.json["externalId"]),
        (StatusCode::OK, &json!("okta-00u1"))
    );
    assert_scim_error(
        &s.scim(Method::GET, "/Users/not-a-uuid", None).await,
        404,
        None,
    );
    assert_scim_error(
        &s.scim(Method::GET, &format!("/Users/{}", Uuid::new_v4()), None)
            .await,
        404,
        None,
    );

    // ---- PATCH (Entra attribute paths) and PUT.
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Users/{carol}"),
            Some(patch(json!([
                {"op": "Replace", "path": "displayName", "value": "Carol C"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "carol@example.com"},
                {"op": "Replace", "path": "title", "value": "ignored"},
                {"op": "Add", "path": "externalId", "value": "entra-carol"},
            ]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["displayName"], "Carol C");
    assert_eq!(r.json["emails"][0]["value"], "carol@example.com");
    assert_eq!(r.json["externalId"], "entra-carol");
    assert_scim_error(
        &s.scim(
            Method::PATCH,
            &format!("/Users/{carol}"),
            Some(patch(
                json!([{"op": "frobnicate", "path": "active", "value": true}]),
            )),
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &s.scim(
            Method::PATCH,
            &format!("/Users/{carol}"),
            Some(json!({"Operations": []})),
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &s.scim(
            Method::PATCH,
            &format!("/Users/{carol}"),
            Some(patch(
                json!([{"op": "add", "path": "groups", "value": [{"value": bob}]}]),
            )),
        )
        .await,
        400,
        Some("mutability"),
    );
    assert_scim_error(
        &s.scim(
            Method::PATCH,
            &format!("/Users/{carol}"),
            Some(patch(
                json!([{"op": "replace", "path": "userName", "value": "bob@example.com"}]),
            )),
        )
        .await,
        409,
        Some("uniqueness"),
    );
    let r = s
        .scim(
            Method::PUT,
            &format!("/Users/{carol}"),
            Some(
                json!({"userName": "carol@example.com", "name": {"formatted": "Carol Replaced"},
                        "active": true}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["displayName"], "Carol Replaced");
    assert!(
        r.json.get("emails").is_none() && r.json.get("externalId").is_none(),
        "{}",
        r.text
    );

    // ---- Groups → teams and roles.
    let eng = team(&cp, "eng").await;
    let ml = team(&cp, "ml").await;
    let mappings = json!({
        "teams": [{"group": "Engineering", "team_id": eng}, {"group": "ML", "team_id": ml}],
        "roles": [{"group": "Leads", "role": "team-admin"}],
    });
    let ev = AuditEvent {
        actor: "test".into(),
        action: "settings.update".into(),
        target: "settings/group_mappings".into(),
        details: json!({}),
    };
    cp.store()
        .put_setting(GROUP_MAPPINGS_SETTING, Some(&mappings), &ev)
        .await
        .unwrap();

    // Alice signs in once: her personal key exists (in no team yet).
    let keyer = {
        let cp = cp.clone();
        move |u: Uuid, g: u64| cp.personal_key(u, g)
    };
    let provisioned = cp
        .store()
        .provision_user(
            &Profile {
                user_name: "alice@example.com".into(),
                issuer: Some("https://idp.example".into()),
                subject: Some("alice".into()),
                ..Profile::default()
            },
            &cp.group_mappings().await.unwrap(),
            &keyer,
            &ev,
        )
        .await
        .unwrap();
    assert_eq!(
        provisioned.user.id, alice_id,
        "the SCIM-created user is found by name"
    );
    let alice_key = provisioned.personal_key_id.unwrap();
    cp.republish().await.unwrap();
    assert_eq!(published_key(&cp, alice_key), Some((String::new(), true)));

    let r = s
        .scim(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": "Engineering", "externalId": "g-eng",
                        "members": [{"value": alice}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let g_eng = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/scim/v2/Groups/{g_eng}").as_str())
    );
    assert_eq!(r.json["members"][0]["value"], alice.as_str());
    assert_eq!(r.json["members"][0]["display"], "alice@example.com");
    let u = cp.store().get_user(alice_id).await.unwrap().unwrap();
    assert_eq!(
        (u.groups.clone(), u.team_id),
        (vec!["Engineering".to_owned()], Some(eng))
    );
    assert_eq!(
        published_key(&cp, alice_key),
        Some((eng.to_string(), true)),
        "the group moved her key and the snapshot is published"
    );
    let r = s.scim(Method::GET, &format!("/Users/{alice}"), None).await;
    assert_eq!(r.json["groups"][0]["display"], "Engineering");
    assert_eq!(r.json["groups"][0]["value"], g_eng.as_str());

    assert_scim_error(
        &s.scim(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Engineering"})),
        )
        .await,
        409,
        Some("uniqueness"),
    );
    assert_scim_error(
        &s.scim(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "X", "members": [{"value": Uuid::new_v4()}]})),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &s.scim(Method::POST, "/Groups", Some(json!({"members": []})))
            .await,
        400,
        Some("invalidValue"),
    );

    // Entra: add a member, then remove one through a members[value eq ...] path.
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Groups/{g_eng}"),
            Some(patch(
                json!([{"op": "Add", "path": "members", "value": [{"value": bob}]}]),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["members"].as_array().unwrap().len(), 2);
    let bob_user = cp.store().get_user(bob_id).await.unwrap().unwrap();
    assert_eq!(bob_user.team_id, Some(eng));
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Groups/{g_eng}"),
            Some(patch(
                json!([{"op": "Remove", "path": format!("members[value eq \"{alice}\"]")}]),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["members"],
        json!([{"value": bob, "display": "bob@example.com",
        "$ref": format!("/scim/v2/Users/{bob}"), "type": "User"}])
    );
    assert!(
        cp.store()
            .get_user(alice_id)
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );

    // Okta: a new group with a member pushed by PATCH; she moves to the ML team, key included.
    let r = s
        .scim(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "ML", "members": []})),
        )
        .await;
    let g_ml = r.json["id"].as_str().unwrap().to_owned();
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Groups/{g_ml}"),
            Some(patch(json!([{"op": "add", "path": "members",
                               "value": [{"value": alice, "display": "alice@example.com"}]}]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        cp.store()
            .get_user(alice_id)
            .await
            .unwrap()
            .unwrap()
            .team_id,
        Some(ml)
    );
    assert_eq!(published_key(&cp, alice_key), Some((ml.to_string(), true)));

    // Roles come from groups.
    let r = s
        .scim(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Leads", "members": [{"value": alice}]})),
        )
        .await;
    let g_leads = r.json["id"].as_str().unwrap().to_owned();
    let m = cp.group_mappings().await.unwrap();
    let u = cp.store().get_user(alice_id).await.unwrap().unwrap();
    assert_eq!(m.effective_role(&u), Role::TeamAdmin);
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Groups/{g_leads}"),
            Some(patch(
                json!([{"op": "remove", "path": "members", "value": [{"value": alice}]}]),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let u = cp.store().get_user(alice_id).await.unwrap().unwrap();
    assert_eq!(m.effective_role(&u), Role::Member);

    // Group list and filters.
    let r = s
        .scim(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22engineering%22",
            None,
        )
        .await;
    assert_eq!(r.json["totalResults"], 1, "{}", r.text);
    assert_eq!(r.json["Resources"][0]["id"], g_eng.as_str());
    let r = s
        .scim(Method::GET, "/Groups?excludedAttributes=members", None)
        .await;
    assert_eq!(r.json["totalResults"], 3);
    assert!(
        r.json["Resources"][0].get("members").is_none(),
        "{}",
        r.text
    );
    let r = s
        .scim(
            Method::GET,
            &format!("/Groups/{g_ml}?excludedAttributes=members"),
            None,
        )
        .await;
    assert!(r.json.get("members").is_none() && r.json["displayName"] == "ML");
    let r = s
        .scim(
            Method::GET,
            &format!("/Groups?filter=id%20eq%20%22{g_ml}%22%20and%20members%5Bvalue%20eq%20%22{alice}%22%5D"),
            None,
        )
        .await;
    assert_eq!(r.json["totalResults"], 1, "{}", r.text);
    assert_scim_error(
        &s.scim(
            Method::GET,
            "/Groups?filter=displayName%20co%20%22E%22",
            None,
        )
        .await,
        400,
        Some("invalidFilter"),
    );

    // Rename (Okta's no-path replace): members' groups follow the new name.
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Groups/{g_eng}"),
            Some(patch(
                json!([{"op": "replace", "value": {"id": g_eng, "displayName": "Platform"}}]),
            )),
        )
        .await;
    assert_eq!(
        (r.status, &r.json["displayName"]),
        (StatusCode::OK, &json!("Platform"))
    );
    assert_eq!(
        cp.store().get_user(bob_id).await.unwrap().unwrap().groups,
        vec!["Platform"]
    );
    // PUT replaces the members.
    let r = s
        .scim(
            Method::PUT,
            &format!("/Groups/{g_eng}"),
            Some(json!({"displayName": "Platform", "members": [{"value": carol}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        cp.store()
            .get_user(bob_id)
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );

    // ---- Deactivation: Okta's shape; the key is inactive in the snapshot the response follows.
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Users/{alice}"),
            Some(patch(
                json!([{"op": "replace", "value": {"active": false}}]),
            )),
        )
        .await;
    assert_eq!(
        (r.status, &r.json["active"]),
        (StatusCode::OK, &json!(false)),
        "{}",
        r.text
    );
    assert_eq!(published_key(&cp, alice_key), Some((ml.to_string(), false)));
    // Reactivation with Entra's string boolean, then deactivation the same way.
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Users/{alice}"),
            Some(patch(
                json!([{"op": "Replace", "path": "active", "value": "True"}]),
            )),
        )
        .await;
    assert_eq!(r.json["active"], true, "{}", r.text);
    assert_eq!(published_key(&cp, alice_key), Some((ml.to_string(), true)));
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Users/{alice}"),
            Some(patch(
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
            )),
        )
        .await;
    assert_eq!(r.json["active"], false, "{}", r.text);
    assert_eq!(published_key(&cp, alice_key), Some((ml.to_string(), false)));
    // A repeated PATCH that changes nothing writes nothing.
    let before = cp.published_version();
    let r = s
        .scim(
            Method::PATCH,
            &format!("/Users/{alice}"),
            Some(patch(
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(cp.published_version(), before);
    // PUT can reactivate too.
    let r = s
        .scim(
            Method::PUT,
            &format!("/Users/{alice}"),
            Some(json!({"userName": "alice@example.com", "active": true})),
        )
        .await;
    assert_eq!(r.json["active"], true, "{}", r.text);
    assert_eq!(published_key(&cp, alice_key), Some((ml.to_string(), true)));

    // ---- Delete: the key goes, memberships go.
    let r = s
        .scim(Method::DELETE, &format!("/Users/{alice}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(published_key(&cp, alice_key), None);
    assert_scim_error(
        &s.scim(Method::GET, &format!("/Users/{alice}"), None).await,
        404,
        None,
    );
    assert_scim_error(
        &s.scim(Method::DELETE, &format!("/Users/{alice}"), None)
            .await,
        404,
        None,
    );
    let r = s.scim(Method::GET, &format!("/Groups/{g_ml}"), None).await;
    assert_eq!(r.json["members"], json!([]));
    let r = s
        .scim(Method::DELETE, &format!("/Groups/{g_eng}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let carol_id: Uuid = carol.parse().unwrap();
    assert!(
        cp.store()
            .get_user(carol_id)
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );
    assert_scim_error(
        &s.scim(Method::GET, &format!("/Groups/{g_eng}"), None).await,
        404,
        None,
    );

    // ---- Audit: SCIM changes are attributed to scim@<ip>, the token never appears.
    let audit = cp.store().list_audit(500).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str()))
        .collect();
    for action in [
        "scim.user.create",
        "scim.user.patch",
        "scim.user.replace",
        "scim.user.deactivate",
        "scim.user.reactivate",
        "scim.user.delete",
        "scim.group.create",
        "scim.group.patch",
        "scim.group.replace",
        "scim.group.delete",
    ] {
        assert!(
            actions.contains(&("scim@127.0.0.1", action)),
            "{action} missing in {actions:?}"
        );
    }
    assert!(actions.iter().any(|(_, a)| *a == "scim.token.create"));
    for a in &audit {
        let row = format!("{} {} {}", a.target, a.details, a.actor);
        assert!(
            !row.contains(&token[7..]) && !row.contains(&old[7..]),
            "{row}"
        );
    }

    // ---- Disabling SCIM.
    let r = s.admin(Method::DELETE, "/api/scim/token").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_scim_error(&s.scim(Method::GET, "/Users", None).await, 401, None);
}

#[tokio::test]
async fn scim_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(StoreConfig::Sqlite {
        path: dir.path().join("tollgate.db"),
    })
    .await;
    scim_conforms(s).await;
}

#[tokio::test]
async fn scim_on_postgres() {
    common::with_postgres(|url| async move {
        let s = start(StoreConfig::Postgres { url }).await;
        scim_conforms(s).await;
    })
    .await;
}

/// The SCIM routes are served next to the data plane's in the all-in-one binary; their
/// fallback must not swallow other paths.
#[tokio::test]
async fn unknown_paths_outside_scim_are_not_scim_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(StoreConfig::Sqlite {
        path: dir.path().join("tollgate.db"),
    })
    .await;
    let r = s.call(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json.get("error").is_some(), "{}", r.text);
}

//! The identity half of the store ([`IdentityStore`]) on SQLite and PostgreSQL: provisioning
//! (one user and one personal key whatever the number of logins, concurrent ones included),
//! group placement, deactivation and deletion reaching the key, sessions, API tokens, settings.

mod common;

use std::sync::Arc;

use serde_json::json;
use time::Duration;
use tollgate_control_plane::crypto::sha256;
use tollgate_control_plane::governance::{Limits, RateLimit};
use tollgate_control_plane::identity::{
    ApiTokenRecord, GroupMappings, Profile, Role, RoleMapping, SessionRecord, TeamMapping,
    personal_key_value,
};
use tollgate_control_plane::model::{AuditEvent, TeamRecord, now};
use tollgate_control_plane::{PostgresStore, SqliteStore, Store, StoreError};
use uuid::Uuid;

const MASTER: [u8; 32] = [9; 32];

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        actor: "test".into(),
        action: action.into(),
        target: "users".into(),
        details: json!({}),
    }
}

fn key(user: Uuid, generation: u64) -> String {
    personal_key_value(&MASTER, user, generation)
}

fn profile(sub: &str, email: &str, groups: Option<&[&str]>) -> Profile {
    Profile {
        issuer: Some("https://idp.example".into()),
        subject: Some(sub.into()),
        user_name: email.into(),
        email: Some(email.into()),
        display_name: Some("Alice".into()),
        groups: groups.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
    }
}

async fn team(store: &dyn Store, name: &str, member_rpm: Option<u64>) -> Uuid {
    let t = now();
    let team = TeamRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        customer_id: None,
        limits: Limits::default(),
        member_key_limits: member_rpm.map(|rpm| Limits {
            rate_limit: Some(RateLimit {
                request_max_limit: Some(rpm),
                request_reset_duration: Some(serde_json::from_value(json!("1m")).unwrap()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        content_logging: None,
        mcp_tools: None,
        created_at: t,
        updated_at: t,
    };
    store
        .create_team(&team, &event("team.create"))
        .await
        .unwrap();
    team.id
}

async fn identity_conforms(store: Arc<dyn Store>) {
    let eng = team(&*store, "eng", Some(60)).await;
    let ml = team(&*store, "ml", None).await;
    let mappings = GroupMappings {
        teams: vec![
            TeamMapping {
                group: "eng".into(),
                team_id: eng,
            },
            TeamMapping {
                group: "ml".into(),
                team_id: ml,
            },
        ],
        roles: vec![RoleMapping {
            group: "leads".into(),
            role: Role::TeamAdmin,
        }],
        default_role: Role::Member,
        allowed_groups: Vec::new(),
    };

    // First login: a user and one personal key in the mapped team with its member limits.
    let v0 = store.config_version().await.unwrap();
    let first = store
        .provision_user(
            &profile("alice", "Alice@Example.com", Some(&["eng", "leads"])),
            &mappings,
            &key,
            &event("user.login"),
        )
        .await
        .unwrap();
    assert!(first.user_created && first.key_created);
    assert_eq!(first.user.user_name, "alice@example.com");
    assert_eq!(first.user.team_id, Some(eng));
    assert_eq!(mappings.effective_role(&first.user), Role::TeamAdmin);
    assert!(first.version.unwrap() > v0, "a new key is a config change");
    let key_id = first.personal_key_id.unwrap();
    let vk = store.get_virtual_key(key_id).await.unwrap().unwrap();
    assert_eq!(vk.team_id, Some(eng));
    assert!(vk.active);
    assert_eq!(vk.key_sha256, sha256(key(first.user.id, 0).as_bytes()));
    assert_eq!(
        vk.governance
            .limits
            .rate_limit
            .as_ref()
            .and_then(|r| r.request_max_limit),
        Some(60)
    );

    // Later logins, several at once: the same user and key, no config change.
    let v1 = store.config_version().await.unwrap();
    let logins = (0..8).map(|_| {
        let store = store.clone();
        let mappings = mappings.clone();
        async move {
            store
                .provision_user(
                    &profile("alice", "alice@example.com", Some(&["eng", "leads"])),
                    &mappings,
                    &key,
                    &event("user.login"),
                )
                .await
                .unwrap()
        }
    });
    for again in futures::future::join_all(logins).await {
        assert_eq!(again.user.id, first.user.id);
        assert!(!again.user_created && !again.key_created);
        assert_eq!(again.personal_key_id, Some(key_id));
        assert_eq!(again.version, None);
    }
    assert_eq!(store.config_version().await.unwrap(), v1);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    assert_eq!(store.list_virtual_keys().await.unwrap().len(), 1);

    // Concurrent FIRST logins of a new user: one user, one key.
    let bobs = (0..8).map(|_| {
        let store = store.clone();
        let mappings = mappings.clone();
        async move {
            store
                .provision_user(
                    &profile("bob", "bob@example.com", Some(&["ml"])),
                    &mappings,
                    &key,
                    &event("user.login"),
                )
                .await
                .unwrap()
        }
    });
    let bobs = futures::future::join_all(bobs).await;
    assert_eq!(bobs.iter().filter(|p| p.user_created).count(), 1);
    assert_eq!(bobs.iter().filter(|p| p.key_created).count(), 1);
    assert!(bobs.iter().all(|p| p.user.id == bobs[0].user.id));
    assert_eq!(store.list_virtual_keys().await.unwrap().len(), 2);
    let bob = bobs[0].user.clone();
    assert_eq!(bob.team_id, Some(ml));

    // A changed group at login moves the key (with the new team's limits).
    let moved = store
        .provision_user(
            &profile("bob", "bob@example.com", Some(&["eng"])),
            &mappings,
            &key,
            &event("user.login"),
        )
        .await
        .unwrap();
    assert!(moved.version.is_some());
    let bob_key = store
        .get_virtual_key(moved.personal_key_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_key.team_id, Some(eng));
    assert_eq!(
        bob_key
            .governance
            .limits
            .rate_limit
            .as_ref()
            .and_then(|r| r.request_max_limit),
        Some(60)
    );

    // A user SCIM created is linked at their first login by user name.
    let t = now();
    let carol = tollgate_control_plane::identity::UserRecord {
        id: Uuid::new_v4(),
        issuer: None,
        subject: None,
        user_name: "carol@example.com".into(),
        external_id: Some("00u1".into()),
        email: Some("carol@example.com".into()),
        display_name: None,
        groups: vec![],
        role: Some(Role::Viewer),
        team_id: None,
        active: true,
        key_generation: 0,
        last_login_at: None,
        created_at: t,
        updated_at: t,
    };
    store
        .create_user(&carol, &event("user.create"))
        .await
        .unwrap();
    let c = store
        .provision_user(
            &profile("carol-sub", "CAROL@example.com", None),
            &mappings,
            &key,
            &event("user.login"),
        )
        .await
        .unwrap();
    assert_eq!(c.user.id, carol.id);
    assert!(!c.user_created && c.key_created);
    assert_eq!(c.user.subject.as_deref(), Some("carol-sub"));
    assert_eq!(c.user.role, Some(Role::Viewer));
    assert!(matches!(
        store.create_user(&carol, &event("user.create")).await,
        Err(StoreError::Conflict(_))
    ));

    // Sessions and tokens.
    let session = SessionRecord {
        id_sha256: [1; 32],
        user_id: bob.id,
        csrf_token: "csrf".into(),
        created_at: t,
        expires_at: t + Duration::hours(1),
    };
    store.create_session(&session).await.unwrap();
    let (s, u) = store.session(&[1; 32], now()).await.unwrap().unwrap();
    assert_eq!((s.csrf_token.as_str(), u.id), ("csrf", bob.id));
    assert!(
        store
            .session(&[1; 32], t + Duration::hours(2))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    let token = ApiTokenRecord {
        id: Uuid::new_v4(),
        user_id: bob.id,
        name: "ci".into(),
        token_sha256: [2; 32],
        value_prefix: "tgp_abcd".into(),
        created_at: t,
        expires_at: t + Duration::days(30),
        last_used_at: None,
        revoked_at: None,
    };
    store
        .create_api_token(&token, &event("api_token.create"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_api_token(
                &ApiTokenRecord {
                    id: Uuid::new_v4(),
                    token_sha256: [3; 32],
                    ..token.clone()
                },
                &event("api_token.create")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (found, u) = store.api_token(&[2; 32], now()).await.unwrap().unwrap();
    assert_eq!((found.id, u.id), (token.id, bob.id));
    assert!(
        store.list_api_tokens(bob.id).await.unwrap()[0]
            .last_used_at
            .is_some()
    );
    assert!(
        store
            .api_token(&[2; 32], t + Duration::days(31))
            .await
            .unwrap()
            .is_none()
    );

    // Deactivation: the key stops, sessions end, tokens are revoked; a login is refused.
    let before = store.config_version().await.unwrap();
    let (off, v) = store
        .update_user(
            bob.id,
            &|u| {
                u.active = false;
                Ok(())
            },
            &mappings,
            &event("user.update"),
        )
        .await
        .unwrap();
    assert!(!off.active && v > before);
    let state = store.load_state().await.unwrap();
    let k = state
        .virtual_keys
        .iter()
        .find(|k| k.id == bob_key.id)
        .unwrap();
    assert!(
        !k.active,
        "the personal key is inactive in the published state"
    );
    assert!(store.session(&[1; 32], now()).await.unwrap().is_none());
    assert!(store.api_token(&[2; 32], now()).await.unwrap().is_none());
    let refused = store
        .provision_user(
            &profile("bob", "bob@example.com", Some(&["eng"])),
            &mappings,
            &key,
            &event("user.login"),
        )
        .await
        .unwrap();
    assert!(!refused.user.active && refused.personal_key_id.is_none());

    // Rotation: a new digest, from the next generation.
    let (rotated, _) = store
        .rotate_personal_key(first.user.id, &key, &event("user.rotate_key"))
        .await
        .unwrap();
    assert_eq!(rotated.key_generation, 1);
    let vk = store.get_virtual_key(key_id).await.unwrap().unwrap();
    assert_eq!(vk.key_sha256, sha256(key(first.user.id, 1).as_bytes()));

    // Deletion removes the key.
    store
        .delete_user(first.user.id, &event("user.delete"))
        .await
        .unwrap();
    assert!(store.get_virtual_key(key_id).await.unwrap().is_none());
    assert!(store.get_user(first.user.id).await.unwrap().is_none());
    assert!(matches!(
        store
            .delete_user(first.user.id, &event("user.delete"))
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Settings.
    assert_eq!(store.setting("sso").await.unwrap(), None);
    let value = json!({"issuer": "https://idp.example"});
    store
        .put_setting("sso", Some(&value), &event("sso.update"))
        .await
        .unwrap();
    assert_eq!(store.setting("sso").await.unwrap(), Some(value));
    store
        .put_setting("sso", None, &event("sso.delete"))
        .await
        .unwrap();
    assert_eq!(store.setting("sso").await.unwrap(), None);

    // Every step above was audited on one valid chain.
    let chain = tollgate_control_plane::audit_chain::verify(&store.audit_chain().await.unwrap());
    assert!(chain.is_ok(), "{chain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_identity_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    identity_conforms(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_identity_conforms() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        identity_conforms(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

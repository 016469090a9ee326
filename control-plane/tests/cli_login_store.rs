//! `tollgate login`'s pending sign-ins ([`CliLoginStore`], migration 0013) on SQLite and
//! PostgreSQL: pending, slow down, approve, redeemed once (also when polls race), deny, expiry,
//! the cap on pending sign-ins, user-code collisions.

mod common;

use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use tollgate_control_plane::crypto::sha256;
use tollgate_control_plane::identity::{GroupMappings, Profile, personal_key_value};
use tollgate_control_plane::model::AuditEvent;
use tollgate_control_plane::{
    CliLoginRecord, CliPoll, PostgresStore, SqliteStore, Store, StoreError,
};

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        actor: "test".into(),
        action: action.into(),
        target: "users".into(),
        details: json!({}),
    }
}

fn login(device: &str, code: &str, now: OffsetDateTime) -> CliLoginRecord {
    CliLoginRecord {
        device_code_sha256: sha256(device.as_bytes()),
        user_code: code.into(),
        user_id: None,
        denied: false,
        created_at: now,
        expires_at: now + Duration::minutes(10),
        last_poll_at: None,
    }
}

async fn cli_logins_conform(store: Arc<dyn Store>) {
    let user = store
        .provision_user(
            &Profile {
                issuer: Some("https://idp".into()),
                subject: Some("s1".into()),
                user_name: "a@example.com".into(),
                ..Profile::default()
            },
            &GroupMappings::default(),
            &|u, g| personal_key_value(&[1; 32], u, g),
            &event("user.login"),
        )
        .await
        .unwrap()
        .user;
    let now = OffsetDateTime::now_utc();
    let interval = Duration::seconds(3);
    let d1 = sha256(b"device-1");

    store
        .create_cli_login(&login("device-1", "BCDFGHJK", now), 100)
        .await
        .unwrap();
    // A taken user code is a conflict (the route draws another).
    let err = store
        .create_cli_login(&login("device-x", "BCDFGHJK", now), 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.cli_login("BCDFGHJK", now).await.unwrap().is_some());
    assert!(store.cli_login("ZZZZZZZZ", now).await.unwrap().is_none());

    assert_eq!(
        store.poll_cli_login(&d1, now, interval).await.unwrap(),
        CliPoll::Pending
    );
    assert_eq!(
        store
            .poll_cli_login(&d1, now + Duration::seconds(1), interval)
            .await
            .unwrap(),
        CliPoll::SlowDown
    );
    let later = now + Duration::seconds(10);
    assert_eq!(
        store.poll_cli_login(&d1, later, interval).await.unwrap(),
        CliPoll::Pending
    );

    // Approval, audited; a second decision finds nothing pending.
    assert!(
        store
            .decide_cli_login(
                "BCDFGHJK",
                user.id,
                true,
                now,
                &event("user.cli_login_approve")
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_cli_login(
                "BCDFGHJK",
                user.id,
                false,
                now,
                &event("user.cli_login_deny")
            )
            .await
            .unwrap()
    );
    // Racing polls: exactly one redeems it.
    let polls: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.poll_cli_login(&d1, later, interval).await.unwrap() })
        })
        .collect();
    let mut approved = 0;
    for p in polls {
        match p.await.unwrap() {
            CliPoll::Approved(id) => {
                assert_eq!(id, user.id);
                approved += 1;
            }
            other => assert_eq!(other, CliPoll::Unknown),
        }
    }
    assert_eq!(approved, 1);
    assert_eq!(
        store.poll_cli_login(&d1, later, interval).await.unwrap(),
        CliPoll::Unknown
    );

    // Denial.
    store
        .create_cli_login(&login("device-2", "CDFGHJKL", now), 100)
        .await
        .unwrap();
    assert!(
        store
            .decide_cli_login(
                "CDFGHJKL",
                user.id,
                false,
                now,
                &event("user.cli_login_deny")
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .poll_cli_login(&sha256(b"device-2"), later, interval)
            .await
            .unwrap(),
        CliPoll::Denied
    );

    // Expiry: not approvable, polled as expired, purged.
    store
        .create_cli_login(&login("device-3", "DFGHJKLM", now), 100)
        .await
        .unwrap();
    let expired = now + Duration::minutes(11);
    assert!(
        store
            .cli_login("DFGHJKLM", expired)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .decide_cli_login("DFGHJKLM", user.id, true, expired, &event("x"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .poll_cli_login(&sha256(b"device-3"), expired, interval)
            .await
            .unwrap(),
        CliPoll::Expired
    );
    store
        .create_cli_login(&login("device-4", "FGHJKLMN", now), 100)
        .await
        .unwrap();
    assert_eq!(store.purge_cli_logins(expired).await.unwrap(), 1);

    // The cap on pending sign-ins.
    store
        .create_cli_login(&login("device-5", "GHJKLMNP", now), 2)
        .await
        .unwrap();
    store
        .create_cli_login(&login("device-6", "HJKLMNPQ", now), 2)
        .await
        .unwrap();
    let err = store
        .create_cli_login(&login("device-7", "JKLMNPQR", now), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("pending")),
        "{err:?}"
    );

    let chain = tollgate_control_plane::audit_chain::verify(&store.audit_chain().await.unwrap());
    assert!(chain.is_ok(), "{chain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cli_logins_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    cli_logins_conform(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cli_logins_conform() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        cli_logins_conform(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

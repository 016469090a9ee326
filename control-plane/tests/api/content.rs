//! Content logging through the admin API: the settings on keys and teams (validation, admins
//! only, the snapshot carrying the effective setting), reading the recorded bodies (scope,
//! audited reads, 404 without bodies), storing them once however often a record is resent, and
//! their retention.

use tollgate_control_plane::Store;
use tollgate_control_plane::identity::Role;
use tollgate_control_plane::store::UsageRecord;
use tollgate_proto::usage::v1::Content;
use uuid::Uuid;

use super::logs::billed;
use super::roles::{admin, org};
use super::*;

fn with_content(
    request_id: &str,
    vk: &str,
    ago_ms: i64,
    request: &[u8],
    whole: u64,
) -> UsageRecord {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    UsageRecord {
        request_id: request_id.into(),
        virtual_key_id: vk.into(),
        provider: "bedrock".into(),
        model_requested: "claude-sonnet-4-6".into(),
        status: 200,
        started_at_unix_ms: now_ms - ago_ms,
        content: Some(Content {
            request: bytes::Bytes::copy_from_slice(request),
            request_bytes: whole,
            response: bytes::Bytes::from_static(b"event: message_stop\ndata: {}\n\n"),
            response_bytes: 30,
        }),
        ..Default::default()
    }
}

/// The effective setting of virtual key `id` in the published snapshot.
fn published(h: &Harness, id: &str) -> Option<u32> {
    current(h)
        .virtual_keys
        .iter()
        .find(|k| k.id == id)
        .expect("the key is published")
        .content_logging
        .map(|c| c.max_body_bytes)
}

#[tokio::test]
async fn settings_on_keys_and_teams_reach_the_snapshot() {
    let h = sqlite_harness(loopback_auth()).await;
    let r = post(
        &h,
        "/api/teams",
        json!({"name": "t", "content_logging": {"enabled": true}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json["content_logging"],
        json!({"enabled": true, "max_body_bytes": 65536}),
        "the default cap"
    );
    let team = r.json["id"].as_str().unwrap().to_owned();
    let key = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "team_id": team});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let r = post(&h, "/api/virtual-keys", key("inherits", json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["content_logging"], Value::Null);
    let inherits = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        &h,
        "/api/virtual-keys",
        key("opts-out", json!({"content_logging": {"enabled": false}})),
    )
    .await;
    let opts_out = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "own", "content_logging": {"enabled": true, "max_body_bytes": 1024}}),
    )
    .await;
    let own = r.json["id"].as_str().unwrap().to_owned();
    let r = post(&h, "/api/virtual-keys", json!({"name": "plain"})).await;
    let plain = r.json["id"].as_str().unwrap().to_owned();

    assert_eq!(published(&h, &inherits), Some(65536), "the team's setting");
    assert_eq!(published(&h, &opts_out), None, "the key's own setting wins");
    assert_eq!(published(&h, &own), Some(1024));
    assert_eq!(published(&h, &plain), None, "off by default");

    // The team turns it off: its keys follow, the key with its own setting does not change.
    let r = put(
        &h,
        &format!("/api/teams/{team}"),
        json!({"content_logging": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["content_logging"], Value::Null);
    assert_eq!(published(&h, &inherits), None);
    // A key's setting is cleared with null, and then follows its team again.
    let r = put(
        &h,
        &format!("/api/virtual-keys/{own}"),
        json!({"content_logging": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(published(&h, &own), None);

    // Caps out of range are 400s naming the field; customers have no setting.
    for (path, body) in [
        (
            "/api/virtual-keys".to_owned(),
            json!({"name": "x", "content_logging": {"enabled": true, "max_body_bytes": 0}}),
        ),
        (
            format!("/api/teams/{team}"),
            json!({"content_logging": {"enabled": true, "max_body_bytes": 1048577}}),
        ),
    ] {
        let r = if path.contains("/teams/") {
            put(&h, &path, body).await
        } else {
            post(&h, &path, body).await
        };
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("content_logging.max_body_bytes"),
        );
    }
    let r = post(
        &h,
        "/api/virtual-keys",
        json!({"name": "x", "content_logging": {"enabled": true, "extra": 1}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = post(&h, "/api/customers", json!({"name": "c"})).await;
    let customer = r.json["id"].as_str().unwrap().to_owned();
    let r = put(
        &h,
        &format!("/api/customers/{customer}"),
        json!({"content_logging": {"enabled": true}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("content_logging"),
    );
}

#[tokio::test]
async fn recorded_bodies_are_read_by_admins_and_team_admins_and_every_read_is_audited() {
    let o = org().await;
    // Only an admin changes content logging.
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &format!("/api/teams/{}", o.team_a),
            Some(json!({"content_logging": {"enabled": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &format!("/api/virtual-keys/{}", o.key_a),
            Some(json!({"content_logging": {"enabled": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // Sent back as it was read (its setting unchanged), a key is the team admin's to save.
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &format!("/api/virtual-keys/{}", o.key_a),
            Some(json!({"content_logging": null, "name": "key-a"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = o
        .as_role(
            Role::TeamAdmin,
            Method::PUT,
            &format!("/api/teams/{}", o.team_a),
            Some(json!({"content_logging": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let records = vec![
        billed(
            &o.h,
            with_content("r-a", &o.key_a, 1_000, b"{\"q\":\"a\"}", 9),
        )
        .await,
        billed(
            &o.h,
            with_content("r-b", &o.key_b, 2_000, b"{\"q\":\"b\"}", 4_000),
        )
        .await,
        billed(
            &o.h,
            UsageRecord {
                content: None,
                mcp: None,
                ..with_content("r-none", &o.key_a, 3_000, b"", 0)
            },
        )
        .await,
    ];
    o.h.cp.store().insert_usage(&records).await.unwrap();

    let r = admin(&o.h, Method::GET, "/api/logs/r-b/content", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json,
        json!({
            "request_id": "r-b",
            "request": {"body": "{\"q\":\"b\"}", "encoding": "utf8", "bytes": 4000,
                "truncated": true},
            "response": {"body": "event: message_stop\ndata: {}\n\n", "encoding": "utf8",
                "bytes": 30, "truncated": false},
        })
    );
    for (role, id, status) in [
        (Role::TeamAdmin, "r-a", StatusCode::OK),
        (Role::TeamAdmin, "r-b", StatusCode::NOT_FOUND),
        (Role::Admin, "r-a", StatusCode::OK),
        (Role::Admin, "r-none", StatusCode::NOT_FOUND),
        (Role::Admin, "r-unknown", StatusCode::NOT_FOUND),
        (Role::Viewer, "r-a", StatusCode::FORBIDDEN),
        (Role::Member, "r-a", StatusCode::FORBIDDEN),
    ] {
        let r = o
            .as_role(role, Method::GET, &format!("/api/logs/{id}/content"), None)
            .await;
        assert_eq!(r.status, status, "{role:?} {id}: {}", r.text);
        if status == StatusCode::OK {
            assert_eq!(r.json["request_id"], id);
        }
    }
    // One audit row per read that returned bodies, none for the refused ones.
    let r = admin(
        &o.h,
        Method::GET,
        "/api/audit-logs?action=log.content.read&limit=100",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.json["audit_logs"].as_array().unwrap();
    let mut targets: Vec<_> = rows
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    targets.sort();
    assert_eq!(targets, ["logs/r-a", "logs/r-a", "logs/r-b"], "{}", r.text);
}

async fn stored_once_and_kept_for_the_retention(store: Arc<dyn Store>) {
    let key = Uuid::new_v4().to_string();
    let old = with_content("r-old", &key, 3 * 86_400_000, b"old", 3);
    let new = with_content("r-new", &key, 1_000, b"new", 3);
    assert_eq!(
        store
            .insert_usage(&[old.clone(), new.clone()])
            .await
            .unwrap(),
        2
    );
    // Resent, with other bodies: nothing changes.
    let resent = UsageRecord {
        content: Some(Content {
            request: bytes::Bytes::from_static(b"changed"),
            ..new.content.clone().unwrap()
        }),
        ..new.clone()
    };
    assert_eq!(store.insert_usage(&[resent]).await.unwrap(), 0);
    let got = store.get_request_content("r-new").await.unwrap().unwrap();
    assert_eq!(got.request, b"new");
    assert_eq!(got.response_bytes, 30);
    assert!(store.get_request_content("r-none").await.unwrap().is_none());

    let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    assert_eq!(store.drop_request_content_before(cutoff).await.unwrap(), 1);
    assert!(store.get_request_content("r-old").await.unwrap().is_none());
    assert!(store.get_request_content("r-new").await.unwrap().is_some());
    assert_eq!(store.drop_request_content_before(cutoff).await.unwrap(), 0);
}

#[tokio::test]
async fn bodies_are_stored_once_and_kept_for_the_retention_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    stored_once_and_kept_for_the_retention(h.cp.store().clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_stored_once_and_kept_for_the_retention_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        // Today's partition in place first (the start's own maintenance runs concurrently).
        h.cp.maintain_usage_storage().await.unwrap();
        stored_once_and_kept_for_the_retention(h.cp.store().clone()).await;
    })
    .await;
}

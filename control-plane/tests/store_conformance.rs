//! One conformance suite for every [`Store`] backend, run against SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tollgate_control_plane::crypto::SecretBox;
use tollgate_control_plane::mcp::{
    McpCallQuery, McpCallRow, McpServerRecord, SecretMap, TransportRecord,
};
use tollgate_control_plane::model::{
    AuditEvent, BedrockKeyRecord, NetworkRecord, ProviderKeyRecord, ProviderKind, ProviderRecord,
    SealedSecret, SecretField, ValueSource, VertexKeyRecord, VirtualKeyRecord, now,
};
use tollgate_control_plane::store::{UsageRecord, UsageTotals};
use tollgate_control_plane::usage_log::{LogScope, StatusFilter};
use tollgate_control_plane::validate::ValidationError;
use tollgate_control_plane::{PostgresStore, SqliteStore, Store, StoreError};
use uuid::Uuid;

fn event(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        actor: "test".into(),
        action: action.into(),
        target: target.into(),
        details: json!({"action": action}),
    }
}

fn provider(name: &str, kind: ProviderKind) -> ProviderRecord {
    let t = now();
    ProviderRecord {
        name: name.into(),
        kind,
        network: NetworkRecord::default(),
        created_at: t,
        updated_at: t,
    }
}

fn key(provider: &str, name: &str, secrets: &SecretBox) -> ProviderKeyRecord {
    let t = now();
    let id = Uuid::new_v4();
    ProviderKeyRecord {
        id,
        provider: provider.into(),
        name: name.into(),
        description: Some("a key".into()),
        models: vec!["*".into(), "claude-sonnet-4-6".into()],
        weight: 0.25,
        aliases: BTreeMap::from([(
            "claude-sonnet-4-6".to_string(),
            "global.anthropic.claude-sonnet-4-6".to_string(),
        )]),
        enabled: true,
        value: None,
        bedrock: Some(BedrockKeyRecord {
            access_key: Some(SealedSecret::Env("AWS_ACCESS_KEY_ID".into())),
            secret_key: Some(
                SealedSecret::seal(secrets, id, SecretField::SecretKey, "wJalrXUtnFEMI").unwrap(),
            ),
            session_token: None,
            external_id: Some(SealedSecret::Env("EXT".into())),
            region: Some(ValueSource::Literal("us-east-1".into())),
            role_arn: Some(ValueSource::Env("ROLE_ARN".into())),
            session_name: Some("tollgate".into()),
            arn: Some("arn:aws:bedrock:us-east-1:123456789012".into()),
        }),
        vertex: None,
        created_at: t,
        updated_at: t,
    }
}

fn vk(name: &str, providers: &[&str], fill: u8) -> VirtualKeyRecord {
    let t = now();
    VirtualKeyRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        description: None,
        key_sha256: [fill; 32],
        value_prefix: "sk-tg-AbCd".into(),
        providers: providers.iter().map(|s| s.to_string()).collect(),
        active: true,
        team_id: None,
        customer_id: None,
        user_id: None,
        governance: serde_json::from_value(json!({
            "limits": {"budgets": [{
                "id": Uuid::new_v4(), "max_limit_nano_usd": 500_000_000_000u64,
                "reset_duration": "1M", "calendar_aligned": true, "anchor_unix_ms": 0
            }]},
            "fail_open": true
        }))
        .unwrap(),
        created_at: t,
        updated_at: t,
    }
}

/// The suite. Every assertion holds for every backend.
async fn conformance(store: Arc<dyn Store>) {
    let secrets = SecretBox::new(&[5u8; 32]);

    // Fresh store.
    assert_eq!(store.config_version().await.unwrap(), 1);
    let st = store.load_state().await.unwrap();
    assert_eq!(st.version, 1);
    assert!(st.providers.is_empty() && st.keys.is_empty() && st.virtual_keys.is_empty());
    assert!(store.list_audit(10).await.unwrap().is_empty());
    let mut expected_version = 1;
    let mut successes = 0;

    // Providers: create, duplicate, get, list order.
    let mut bedrock = provider("bedrock", ProviderKind::Bedrock);
    bedrock.network.settings.base_url = Some("https://bedrock.example".into());
    bedrock.network.extra_headers.insert(
        "x-team".into(),
        SealedSecret::seal_header(&secrets, "bedrock", "x-team", "eng").unwrap(),
    );
    bedrock.network.extra_headers.insert(
        "x-proxy-token".into(),
        SealedSecret::Env("ANTHROPIC_PROXY_TOKEN".into()),
    );
    let v = store
        .create_provider(&bedrock, &event("provider.create", "providers/bedrock"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert_eq!(v, expected_version);
    let dup = store
        .create_provider(&bedrock, &event("provider.create", "providers/bedrock"))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        store.config_version().await.unwrap(),
        expected_version,
        "a failed mutation must not bump the version"
    );
    assert_eq!(
        store.get_provider("bedrock").await.unwrap().as_ref(),
        Some(&bedrock)
    );
    assert_eq!(store.get_provider("nope").await.unwrap(), None);
    let anthropic = provider("anthropic", ProviderKind::Anthropic);
    store
        .create_provider(&anthropic, &event("provider.create", "providers/anthropic"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    let names: Vec<_> = store
        .list_providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["anthropic", "bedrock"]);

    // Provider update: the closure's changes are written; its errors abort.
    let (updated, v) = store
        .update_provider(
            "bedrock",
            &|p: &mut ProviderRecord| {
                p.network.settings.connect_timeout_in_seconds = Some(7);
                p.name = "renamed".into(); // ignored: names cannot change
                Ok(())
            },
            &event("provider.update", "providers/bedrock"),
        )
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert_eq!(v, expected_version);
    assert_eq!(updated.name, "bedrock");
    assert_eq!(updated.created_at, bedrock.created_at);
    assert!(updated.updated_at >= bedrock.updated_at);
    assert_eq!(
        store.get_provider("bedrock").await.unwrap().unwrap(),
        updated
    );
    let err = store
        .update_provider(
            "bedrock",
            &|_p: &mut ProviderRecord| Err(ValidationError::new("kind", "no")),
            &event("provider.update", "providers/bedrock"),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(ref v)) if v.field.as_deref() == Some("kind")));
    let err = store
        .update_provider("nope", &|_p: &mut ProviderRecord| Ok(()), &event("x", "y"))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound(_))));
    assert_eq!(store.config_version().await.unwrap(), expected_version);

    // Keys.
    let k1 = key("bedrock", "bedrock-key", &secrets);
    let orphan = key("nope", "k", &secrets);
    assert!(matches!(
        store.create_key(&orphan, &event("k", "k")).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .create_key(&k1, &event("provider_key.create", "k1"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert_eq!(
        store.get_key("bedrock", k1.id).await.unwrap().as_ref(),
        Some(&k1),
        "keys round-trip exactly, sealed secrets included"
    );
    assert_eq!(store.get_key("anthropic", k1.id).await.unwrap(), None);
    let mut same_name = key("bedrock", "bedrock-key", &secrets);
    same_name.bedrock = None;
    same_name.value = Some(SealedSecret::Env("BEDROCK_API_KEY".into()));
    assert!(matches!(
        store.create_key(&same_name, &event("k", "k")).await,
        Err(StoreError::Conflict(_))
    ));
    // The same name under another provider is fine.
    let mut k2 = key("anthropic", "bedrock-key", &secrets);
    k2.bedrock = None;
    k2.value = Some(SealedSecret::seal(&secrets, k2.id, SecretField::Value, "sk-ant-xyz").unwrap());
    store
        .create_key(&k2, &event("provider_key.create", "k2"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    let mut k3 = key("bedrock", "a-second-key", &secrets);
    k3.enabled = false;
    store
        .create_key(&k3, &event("provider_key.create", "k3"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    let ids = |ks: Vec<ProviderKeyRecord>| ks.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_keys(Some("bedrock")).await.unwrap()),
        [k3.id, k1.id]
    );
    assert_eq!(
        ids(store.list_keys(None).await.unwrap()),
        [k2.id, k3.id, k1.id],
        "ordered by provider, then name"
    );
    assert!(store.list_keys(Some("nope")).await.unwrap().is_empty());

    // Key update: rename onto an existing name conflicts; other changes stick.
    let err = store
        .update_key(
            "bedrock",
            k3.id,
            &|k: &mut ProviderKeyRecord| {
                k.name = "bedrock-key".into();
                Ok(())
            },
            &event("k", "k"),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    let (k3u, _) = store
        .update_key(
            "bedrock",
            k3.id,
            &|k: &mut ProviderKeyRecord| {
                k.enabled = true;
                k.weight = 3.0;
                k.bedrock = None;
                k.value = Some(SealedSecret::Env("BEDROCK_API_KEY".into()));
                k.provider = "anthropic".into(); // ignored
                Ok(())
            },
            &event("provider_key.update", "k3"),
        )
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert_eq!(k3u.provider, "bedrock");
    assert_eq!(k3u.created_at, k3.created_at);
    let stored = store.get_key("bedrock", k3.id).await.unwrap().unwrap();
    assert_eq!(stored, k3u);
    assert!(stored.enabled && stored.weight == 3.0 && stored.bedrock.is_none());
    assert!(matches!(
        store
            .update_key(
                "bedrock",
                Uuid::new_v4(),
                &|_k: &mut ProviderKeyRecord| Ok(()),
                &event("k", "k")
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Virtual keys.
    let unknown = vk("team", &["bedrock", "nope"], 1);
    match store.create_virtual_key(&unknown, &event("v", "v")).await {
        Err(StoreError::Invalid(v)) => assert_eq!(v.field.as_deref(), Some("providers[1]")),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let team = vk("engineering-team", &["bedrock"], 1);
    store
        .create_virtual_key(&team, &event("virtual_key.create", "vk"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert_eq!(
        store.get_virtual_key(team.id).await.unwrap().as_ref(),
        Some(&team)
    );
    assert!(matches!(
        store.create_virtual_key(&vk("engineering-team", &[], 2), &event("v", "v")).await,
        Err(StoreError::Conflict(ref m)) if m.contains("named")
    ));
    assert!(matches!(
        store.create_virtual_key(&vk("other", &[], 1), &event("v", "v")).await,
        Err(StoreError::Conflict(ref m)) if m.contains("value")
    ));
    let all = vk("all-providers", &[], 3);
    store
        .create_virtual_key(&all, &event("virtual_key.create", "vk2"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    let (team_u, _) = store
        .update_virtual_key(
            team.id,
            &|v: &mut VirtualKeyRecord| {
                v.active = false;
                v.governance = Default::default();
                v.providers = vec!["bedrock".into(), "anthropic".into()];
                v.key_sha256 = [0; 32]; // ignored
                Ok(())
            },
            &event("virtual_key.update", "vk"),
        )
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert_eq!(team_u.key_sha256, team.key_sha256);
    assert_eq!(
        store.get_virtual_key(team.id).await.unwrap().unwrap(),
        team_u
    );
    assert!(matches!(
        store
            .update_virtual_key(
                team.id,
                &|v: &mut VirtualKeyRecord| {
                    v.providers = vec!["ghost".into()];
                    Ok(())
                },
                &event("v", "v"),
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    let names: Vec<_> = store
        .list_virtual_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["all-providers", "engineering-team"]);

    // The state matches the lists.
    let st = store.load_state().await.unwrap();
    assert_eq!(st.version, expected_version);
    assert_eq!(st.providers, store.list_providers().await.unwrap());
    assert_eq!(st.keys, store.list_keys(None).await.unwrap());
    assert_eq!(st.virtual_keys, store.list_virtual_keys().await.unwrap());

    // A provider named by a virtual key cannot be deleted.
    assert!(matches!(
        store.delete_provider("anthropic", &event("p", "p")).await,
        Err(StoreError::Conflict(ref m)) if m.contains("engineering-team")
    ));
    store
        .delete_virtual_key(team.id, &event("virtual_key.delete", "vk"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert!(matches!(
        store.delete_virtual_key(team.id, &event("v", "v")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_virtual_key(team.id).await.unwrap(), None);

    // Deleting a provider deletes its keys.
    store
        .delete_key("anthropic", k2.id, &event("provider_key.delete", "k2"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert!(matches!(
        store.delete_key("anthropic", k2.id, &event("k", "k")).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .delete_provider("bedrock", &event("provider.delete", "providers/bedrock"))
        .await
        .unwrap();
    expected_version += 1;
    successes += 1;
    assert!(store.list_keys(None).await.unwrap().is_empty(), "cascade");
    assert!(matches!(
        store.delete_provider("bedrock", &event("p", "p")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.config_version().await.unwrap(), expected_version);

    // Audit: one row per successful mutation, newest first, carrying its version.
    let audit = store.list_audit(1000).await.unwrap();
    assert_eq!(audit.len(), successes);
    assert_eq!(audit[0].action, "provider.delete");
    assert_eq!(audit[0].target, "providers/bedrock");
    assert_eq!(audit[0].config_version, expected_version);
    // The handler's details, plus what the store adds: the record before, nothing after.
    assert_eq!(audit[0].details["action"], "provider.delete");
    assert_eq!(audit[0].details["result"], "success");
    assert_eq!(audit[0].details["before"]["name"], "bedrock");
    assert_eq!(audit[0].details["before"]["kind"], "bedrock");
    assert_eq!(audit[0].details["after"], serde_json::Value::Null);
    assert_eq!(
        audit.last().unwrap().details["before"],
        serde_json::Value::Null
    );
    assert_eq!(audit.last().unwrap().details["after"]["name"], "bedrock");
    assert_eq!(audit[0].actor, "test");
    assert_eq!(audit.last().unwrap().action, "provider.create");
    assert_eq!(audit.last().unwrap().config_version, 2);
    for pair in audit.windows(2) {
        assert!(pair[0].id > pair[1].id);
        assert_eq!(pair[0].config_version, pair[1].config_version + 1);
    }
    assert_eq!(store.list_audit(2).await.unwrap().len(), 2);

    // Concurrent writers are serialised: every one commits with its own version.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let p = provider(&format!("p{i:02}"), ProviderKind::Anthropic);
                store
                    .create_provider(&p, &event("provider.create", "p"))
                    .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().expect("concurrent create"));
    }
    versions.sort_unstable();
    let want: Vec<u64> = (expected_version + 1..=expected_version + 16).collect();
    assert_eq!(versions, want);
    assert_eq!(store.config_version().await.unwrap(), expected_version + 16);
}

fn usage(i: usize, vk: &str, started_at_unix_ms: i64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i:06}"),
        virtual_key_id: vk.into(),
        provider: "bedrock".into(),
        model_requested: "claude-sonnet-4-6".into(),
        model_resolved: "global.anthropic.claude-sonnet-4-6".into(),
        provider_key_id: "key-1".into(),
        input_tokens: 100 + i as u64,
        output_tokens: 20,
        cache_read_input_tokens: 5,
        cache_write_input_tokens: 1,
        latency_ms: 1234,
        time_to_first_token_ms: 200,
        status: 200,
        error_class: String::new(),
        started_at_unix_ms,
        stream: i.is_multiple_of(2),
        cache_write_1h_input_tokens: 1,
        // Every fifth record is unpriced.
        cost_nano_usd: (i % 5 != 4).then_some(1_000_000 * i as u64 + 7),
        // Every fourth was served by its first fallback, after a throttled attempt.
        fallback_index: u32::from(i.is_multiple_of(4)),
        attempts: if i.is_multiple_of(4) {
            vec![tollgate_proto::usage::v1::Attempt {
                provider: "bedrock".into(),
                model: "global.anthropic.claude-sonnet-4-6".into(),
                provider_key_id: "key-0".into(),
                class: "rate_limited".into(),
                status: 429,
                latency_ms: 12,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// Stored rows per virtual key.
async fn requests(store: &dyn Store) -> BTreeMap<String, u64> {
    let totals = store.usage_by_virtual_key().await.unwrap();
    totals.into_iter().map(|(k, t)| (k, t.requests)).collect()
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Usage storage: idempotent batches, counts by virtual key, partitions and retention.
/// Returns the partitions it dropped (PostgreSQL) so callers can check backend specifics.
async fn usage_conformance(store: Arc<dyn Store>) -> Vec<String> {
    let now = now();
    let today = now.date();
    let yesterday = today.previous_day().unwrap();
    let created = store.create_usage_partitions(yesterday, 3).await.unwrap();
    let again = store.create_usage_partitions(yesterday, 3).await.unwrap();
    assert!(again.is_empty(), "partitions are created once: {again:?}");
    assert_eq!(store.insert_usage(&[]).await.unwrap(), 0);
    assert!(store.usage_by_virtual_key().await.unwrap().is_empty());

    // 1,200 records (more than one statement's worth in SQLite), a third of them for vk-a.
    // Within today even when the test runs just after midnight (UTC).
    let t = unix_ms(now).max(unix_ms(today.midnight().assume_utc()) + 5_000);
    let batch: Vec<UsageRecord> = (0..1200)
        .map(|i| usage(i, if i % 3 == 0 { "vk-a" } else { "vk-b" }, t - i as i64))
        .collect();
    assert_eq!(store.insert_usage(&batch).await.unwrap(), 1200);
    assert_eq!(
        store.insert_usage(&batch).await.unwrap(),
        0,
        "the same batch twice stores each record once"
    );
    assert_eq!(
        requests(&*store).await,
        counts(&[("vk-a", 400), ("vk-b", 800)])
    );
    // Costs add up exactly; unpriced rows are counted, not read as $0.
    let mut want: BTreeMap<String, UsageTotals> = BTreeMap::new();
    for r in &batch {
        let t = want.entry(r.virtual_key_id.clone()).or_default();
        t.requests += 1;
        t.cost_nano_usd += r.cost_nano_usd.unwrap_or(0);
        t.unpriced_requests += u64::from(r.cost_nano_usd.is_none());
    }
    assert_eq!(want["vk-a"].unpriced_requests, 80);
    assert_eq!(store.usage_by_virtual_key().await.unwrap(), want);
    // Overlapping batches and duplicates within one batch.
    let mut mixed = batch[..10].to_vec();
    mixed.push(usage(5000, "vk-c", t));
    mixed.push(usage(5000, "vk-c", t));
    assert_eq!(store.insert_usage(&mixed).await.unwrap(), 1);

    // Yesterday (its partition) and ten days ago (no partition: the DEFAULT one in PostgreSQL).
    let yesterday_ms = unix_ms(yesterday.midnight().assume_utc()) + 3_600_000;
    let old_ms = unix_ms(now - time::Duration::days(10));
    let older: Vec<UsageRecord> = (0..7)
        .map(|i| usage(6000 + i, "vk-old", yesterday_ms))
        .chain((0..3).map(|i| usage(7000 + i, "vk-old", old_ms)))
        .collect();
    assert_eq!(store.insert_usage(&older).await.unwrap(), 10);
    assert_eq!(store.insert_usage(&older).await.unwrap(), 0);

    // A day without a partition yet: its rows move into the partition when it is created, and
    // stay deduplicated.
    let ahead = today + time::Duration::days(6);
    let ahead_rec = vec![usage(
        8000,
        "vk-ahead",
        unix_ms(ahead.midnight().assume_utc()) + 1,
    )];
    assert_eq!(store.insert_usage(&ahead_rec).await.unwrap(), 1);
    let made = store.create_usage_partitions(ahead, 1).await.unwrap();
    if store.backend() == "postgres" {
        assert_eq!(made.len(), 1);
        assert_eq!(created.len(), 3);
    } else {
        assert!(made.is_empty() && created.is_empty());
    }
    assert_eq!(store.insert_usage(&ahead_rec).await.unwrap(), 0);
    assert_eq!(
        requests(&*store).await,
        counts(&[
            ("vk-a", 400),
            ("vk-ahead", 1),
            ("vk-b", 800),
            ("vk-c", 1),
            ("vk-old", 10)
        ])
    );

    // Retention: everything that started before today goes.
    let purge = store.drop_usage_partitions_before(today).await.unwrap();
    let after = requests(&*store).await;
    assert_eq!(after.get("vk-old"), None, "{purge:?}");
    assert_eq!(after.get("vk-a"), Some(&400));
    assert_eq!(after.get("vk-ahead"), Some(&1));
    if store.backend() == "postgres" {
        assert_eq!(
            purge.deleted_rows, 3,
            "the old rows in the DEFAULT partition"
        );
    } else {
        assert_eq!(purge.deleted_rows, 10);
        assert!(purge.dropped_partitions.is_empty());
    }
    // Running it again finds nothing.
    let again = store.drop_usage_partitions_before(today).await.unwrap();
    assert!(again.dropped_partitions.is_empty() && again.deleted_rows == 0);
    purge.dropped_partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_usage_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("usage.db"))
        .await
        .unwrap();
    assert!(store.config_changes().is_none());
    usage_conformance(Arc::new(store)).await;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("usage.db").display()
    ))
    .await
    .unwrap();
    let trail: (i64, Option<String>) = sqlx::query_as(
        "SELECT fallback_index, attempts FROM usage_records WHERE request_id = 'req-000004'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(trail.0, 1);
    assert!(
        trail
            .1
            .as_deref()
            .is_some_and(|a| a.contains(r#""class":"rate_limited""#)),
        "{trail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_usage_conforms() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let dropped = usage_conformance(Arc::new(store.clone())).await;
        let yesterday = now().date().previous_day().unwrap();
        assert_eq!(
            dropped,
            [format!(
                "usage_records_p{:04}{:02}{:02}",
                yesterday.year(),
                u8::from(yesterday.month()),
                yesterday.day()
            )]
        );
        // Every field is stored as sent.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let texts: (String, String, String, String, String, String, bool) = sqlx::query_as(
            "SELECT virtual_key_id, provider, model_requested, model_resolved, provider_key_id, \
             error_class, stream FROM usage_records WHERE request_id = 'req-000004'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            texts,
            (
                "vk-b".into(),
                "bedrock".into(),
                "claude-sonnet-4-6".into(),
                "global.anthropic.claude-sonnet-4-6".into(),
                "key-1".into(),
                String::new(),
                true
            )
        );
        let numbers: (i64, i64, i64, i64, i64, i64, i32) = sqlx::query_as(
            "SELECT input_tokens, output_tokens, cache_read_input_tokens, \
             cache_write_input_tokens, latency_ms, time_to_first_token_ms, status \
             FROM usage_records WHERE request_id = 'req-000004'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(numbers, (104, 20, 5, 1, 1234, 200, 200));
        let trail: (i32, Option<String>) = sqlx::query_as(
            "SELECT fallback_index, attempts FROM usage_records WHERE request_id = 'req-000004'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(trail.0, 1);
        let attempts: serde_json::Value =
            serde_json::from_str(trail.1.as_deref().expect("attempts")).unwrap();
        assert_eq!(
            attempts,
            serde_json::json!([{"provider": "bedrock", "model": "global.anthropic.claude-sonnet-4-6",
                "provider_key_id": "key-0", "class": "rate_limited", "status": 429, "latency_ms": 12}])
        );
        let none: (i32, Option<String>) = sqlx::query_as(
            "SELECT fallback_index, attempts FROM usage_records WHERE request_id = 'req-000005'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(none, (0, None));
        // The partitions are the parent's, and rows land in their day's partition.
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_records'::regclass ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(parts.len(), 4, "{parts:?}"); // today, tomorrow, +6 days, default
        assert!(parts.contains(&"usage_records_default".to_owned()));
        let in_default: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_records_default")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(in_default, 0);
        pool.close().await;
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/tollgate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    conformance(Arc::new(store)).await;
    assert!(path.exists(), "the database file is created");
    // Reopening runs the migrations again without harm and keeps the data.
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.list_providers().await.unwrap().len(), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_conforms() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        conformance(Arc::new(store.clone())).await;
        store.close().await;
        let reopened = PostgresStore::connect(&url).await.unwrap();
        assert_eq!(reopened.list_providers().await.unwrap().len(), 17);
        reopened.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Upgrades: databases as earlier versions left them.

/// The migrations of `all` before `version`.
fn before(mut all: sqlx::migrate::Migrator, version: i64) -> sqlx::migrate::Migrator {
    all.migrations = all
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    all
}

/// A SQLite database at `path` with the migrations before `version` applied.
async fn sqlite_before_migration(path: &std::path::Path, version: i64) -> sqlx::SqlitePool {
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    before(sqlx::migrate!("../migrations/sqlite"), version)
        .run(&pool)
        .await
        .unwrap();
    pool
}

/// The PostgreSQL database at `url` with the migrations before `version` applied.
async fn postgres_before_migration(url: &str, version: i64) -> sqlx::PgPool {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    before(sqlx::migrate!("../migrations/postgres"), version)
        .run(&pool)
        .await
        .unwrap();
    pool
}

// ---------------------------------------------------------------------------------------------
// Upgrade: extra-header values that versions before migration 0003 stored in plaintext.

const LEGACY_VALUE: &str = "legacy-proxy-token-PLAINTEXT-0001";

/// Checks a store whose `providers` rows were written by the code before migration 0003 (header
/// values in plaintext inside `network_config`): they read back as legacy values, are sealed by
/// `seal_legacy_extra_headers` without a config change, and read back sealed afterwards.
async fn legacy_headers_conform(store: Arc<dyn Store>) {
    let secrets = SecretBox::new(&[5u8; 32]);
    let before = store.get_provider("old").await.unwrap().unwrap();
    assert_eq!(
        before.network.legacy_extra_headers,
        BTreeMap::from([("x-proxy-token".to_string(), LEGACY_VALUE.to_string())]),
        "plaintext written by the old code reads back as legacy values"
    );
    assert!(before.network.extra_headers.is_empty());
    assert_eq!(before.network.settings.connect_timeout_in_seconds, Some(5));
    let version = store.config_version().await.unwrap();
    let audit = store.list_audit(100).await.unwrap().len();

    let seal = |provider: &str, header: &str, value: &str| {
        SealedSecret::seal_header(&secrets, provider, header, value)
    };
    assert_eq!(store.seal_legacy_extra_headers(&seal).await.unwrap(), 1);
    assert_eq!(
        store.seal_legacy_extra_headers(&seal).await.unwrap(),
        0,
        "once sealed, nothing is left"
    );
    let after = store.get_provider("old").await.unwrap().unwrap();
    assert!(after.network.legacy_extra_headers.is_empty());
    assert_eq!(after.network.settings.connect_timeout_in_seconds, Some(5));
    assert_eq!(after.updated_at, before.updated_at, "not a config change");
    let sealed = &after.network.extra_headers["x-proxy-token"];
    assert!(matches!(sealed, SealedSecret::Encrypted(_)));
    assert_eq!(
        sealed
            .open_header(&secrets, "old", "x-proxy-token")
            .unwrap(),
        ValueSource::Literal(LEGACY_VALUE.into())
    );
    assert_eq!(store.config_version().await.unwrap(), version);
    assert_eq!(store.list_audit(100).await.unwrap().len(), audit);
    // The untouched provider is unchanged.
    let plain = store.get_provider("plain").await.unwrap().unwrap();
    assert_eq!(plain.network, NetworkRecord::default());
}

/// The rows the code before migration 0003 wrote (its INSERT, its JSON shape).
const OLD_INSERTS: [(&str, &str); 2] = [
    (
        "old",
        r#"{"base_url":null,"default_request_timeout_in_seconds":null,"connect_timeout_in_seconds":5,"stream_idle_timeout_in_seconds":null,"extra_headers":{"x-proxy-token":"legacy-proxy-token-PLAINTEXT-0001"}}"#,
    ),
    ("plain", r#"{"extra_headers":{}}"#),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_from_before_header_sealing_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // The schema as the previous version left it: migrations 1 and 2 only.
    let pool = sqlite_before_migration(&path, 3).await;
    for (name, network) in OLD_INSERTS {
        sqlx::query(
            "INSERT INTO providers (name, kind, network_config, created_at, updated_at) \
             VALUES ($1, 'anthropic', $2, $3, $3)",
        )
        .bind(name)
        .bind(network)
        .bind(now())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    legacy_headers_conform(Arc::new(store)).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT network_config, extra_header_secrets FROM providers")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_sealed_at_rest(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_from_before_header_sealing_are_sealed() {
    common::with_postgres(|url| async move {
        let pool = postgres_before_migration(&url, 3).await;
        for (name, network) in OLD_INSERTS {
            sqlx::query(
                "INSERT INTO providers (name, kind, network_config, created_at, updated_at) \
                 VALUES ($1, 'anthropic', $2::jsonb, $3, $3)",
            )
            .bind(name)
            .bind(network)
            .bind(now())
            .execute(&pool)
            .await
            .unwrap();
        }
        let store = PostgresStore::connect(&url).await.unwrap();
        legacy_headers_conform(Arc::new(store.clone())).await;
        store.close().await;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT network_config::text, extra_header_secrets::text FROM providers",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        assert_sealed_at_rest(&rows);
    })
    .await;
}

fn assert_sealed_at_rest(rows: &[(String, String)]) {
    assert_eq!(rows.len(), 2);
    let mut sealed = 0;
    for (network, secrets) in rows {
        assert!(!network.contains(LEGACY_VALUE), "plaintext left: {network}");
        assert!(!secrets.contains(LEGACY_VALUE), "plaintext left: {secrets}");
        sealed += secrets.matches("enc:v1:").count();
    }
    assert_eq!(sealed, 1);
}

// ---------------------------------------------------------------------------------------------
// Upgrade: virtual keys with the `monthly_budget` column of versions before migration 0005.

/// Two keys as the code before migration 0005 wrote them (one with a budget, one without);
/// `insert` runs the backend's INSERT with $1 id, $2 name, $3 key hash, $4 budget, $5 time.
const OLD_VK_INSERT: &str = "INSERT INTO virtual_keys (id, name, description, key_sha256, \
     value_prefix, providers, monthly_budget, active, created_at, updated_at) \
     VALUES ($1, $2, NULL, $3, 'sk-tg-AbCd', '[\"bedrock\"]', $4, TRUE, $5, $5)";

async fn budgets_migrated(store: Arc<dyn Store>, with: Uuid, without: Uuid) {
    let vk = store.get_virtual_key(with).await.unwrap().unwrap();
    let b = &vk.governance.limits.budgets;
    assert_eq!(b.len(), 1, "{vk:?}");
    assert_eq!(b[0].max_limit_nano_usd, 500_250_000_000);
    assert_eq!(
        serde_json::to_value(b[0].reset_duration).unwrap(),
        json!("1M")
    );
    assert!(b[0].calendar_aligned);
    assert_eq!(b[0].id.get_version_num(), 4, "a random id");
    assert_eq!(vk.providers, ["bedrock"]);
    let none = store.get_virtual_key(without).await.unwrap().unwrap();
    assert!(none.governance.limits.budgets.is_empty());
    // Both keys are in the state a snapshot is built from.
    assert_eq!(store.load_state().await.unwrap().virtual_keys.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_monthly_budgets_become_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let pool = sqlite_before_migration(&path, 5).await;
    let (with, without) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, name, fill, budget) in [(with, "a", 1u8, 500.25), (without, "b", 2, 0.0)] {
        sqlx::query(OLD_VK_INSERT)
            .bind(id)
            .bind(name)
            .bind(vec![fill; 32])
            .bind(budget)
            .bind(now())
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    budgets_migrated(Arc::new(store), with, without).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_monthly_budgets_become_budgets() {
    common::with_postgres(|url| async move {
        let pool = postgres_before_migration(&url, 5).await;
        let (with, without) = (Uuid::new_v4(), Uuid::new_v4());
        for (id, name, fill, budget) in [(with, "a", 1u8, 500.25), (without, "b", 2, 0.0)] {
            sqlx::query(OLD_VK_INSERT)
                .bind(id)
                .bind(name)
                .bind(vec![fill; 32])
                .bind(budget)
                .bind(now())
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        let store = PostgresStore::connect(&url).await.unwrap();
        budgets_migrated(Arc::new(store.clone()), with, without).await;
        store.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Provider kinds `vertex` and `openai` (migration 0008): Vertex AI keys round-trip.

const KEY_FILE: &str = r#"{"type":"service_account","client_email":"gw@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nSECRET-KEY-FILE-0008\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#;

fn vertex_key(name: &str, secrets: &SecretBox) -> ProviderKeyRecord {
    let t = now();
    let id = Uuid::new_v4();
    ProviderKeyRecord {
        id,
        provider: "vertex".into(),
        name: name.into(),
        description: None,
        models: vec!["*".into()],
        weight: 1.0,
        aliases: BTreeMap::from([(
            "claude-sonnet-4-6".to_string(),
            "claude-sonnet-4-6@20260101".to_string(),
        )]),
        enabled: true,
        value: None,
        bedrock: None,
        vertex: Some(VertexKeyRecord {
            project_id: Some(ValueSource::Literal("my-project-123".into())),
            region: Some(ValueSource::Env("GOOGLE_CLOUD_REGION".into())),
            auth_credentials: Some(
                SealedSecret::seal(secrets, id, SecretField::AuthCredentials, KEY_FILE).unwrap(),
            ),
            token_uri: Some("http://127.0.0.1:9000/token".into()),
        }),
        created_at: t,
        updated_at: t,
    }
}

/// Providers of the new kinds and a Vertex AI key: stored and read back exactly, updated, listed
/// in the state a snapshot is built from.
async fn vertex_and_openai_conform(store: Arc<dyn Store>) {
    let secrets = SecretBox::new(&[5u8; 32]);
    let mut ollama = provider("ollama", ProviderKind::OpenAi);
    ollama.network.settings.base_url = Some("http://127.0.0.1:11434/v1".into());
    for p in [
        provider("vertex", ProviderKind::Vertex),
        provider("openai", ProviderKind::OpenAi),
        ollama.clone(),
    ] {
        store
            .create_provider(&p, &event("provider.create", &p.name))
            .await
            .unwrap();
        assert_eq!(
            store.get_provider(&p.name).await.unwrap().as_ref(),
            Some(&p)
        );
    }
    let k = vertex_key("sa", &secrets);
    store
        .create_key(&k, &event("provider_key.create", "sa"))
        .await
        .unwrap();
    let stored = store.get_key("vertex", k.id).await.unwrap().unwrap();
    assert_eq!(
        stored, k,
        "vertex keys round-trip exactly, sealed key file included"
    );
    let v = stored.vertex.as_ref().unwrap();
    assert_eq!(
        v.auth_credentials
            .as_ref()
            .unwrap()
            .open(&secrets, k.id, SecretField::AuthCredentials)
            .unwrap(),
        ValueSource::Literal(KEY_FILE.into())
    );

    // An env-referenced key file, no token_uri; then the block is cleared.
    let (updated, _) = store
        .update_key(
            "vertex",
            k.id,
            &|k: &mut ProviderKeyRecord| {
                let v = k.vertex.as_mut().unwrap();
                v.auth_credentials = Some(SealedSecret::Env("GOOGLE_VERTEX_CREDENTIALS".into()));
                v.project_id = Some(ValueSource::Env("GOOGLE_CLOUD_PROJECT".into()));
                v.token_uri = None;
                Ok(())
            },
            &event("provider_key.update", "sa"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_key("vertex", k.id).await.unwrap().unwrap(),
        updated
    );
    assert_eq!(
        updated.vertex.as_ref().unwrap().auth_credentials,
        Some(SealedSecret::Env("GOOGLE_VERTEX_CREDENTIALS".into()))
    );
    let (cleared, _) = store
        .update_key(
            "vertex",
            k.id,
            &|k: &mut ProviderKeyRecord| {
                k.vertex = None;
                Ok(())
            },
            &event("provider_key.update", "sa"),
        )
        .await
        .unwrap();
    assert_eq!(cleared.vertex, None);
    assert_eq!(
        store.get_key("vertex", k.id).await.unwrap().unwrap(),
        cleared
    );

    // An openai key with a value, one without (the local server's).
    let mut openai_key = vertex_key("main", &secrets);
    openai_key.provider = "openai".into();
    openai_key.vertex = None;
    openai_key.value = Some(SealedSecret::Env("OPENAI_API_KEY".into()));
    store
        .create_key(&openai_key, &event("provider_key.create", "main"))
        .await
        .unwrap();
    let mut local = vertex_key("local", &secrets);
    local.provider = "ollama".into();
    local.vertex = None;
    store
        .create_key(&local, &event("provider_key.create", "local"))
        .await
        .unwrap();
    let second = vertex_key("sa-2", &secrets);
    store
        .create_key(&second, &event("provider_key.create", "sa-2"))
        .await
        .unwrap();

    let st = store.load_state().await.unwrap();
    let kinds: Vec<_> = st
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("ollama", ProviderKind::OpenAi),
            ("openai", ProviderKind::OpenAi),
            ("vertex", ProviderKind::Vertex)
        ]
    );
    assert_eq!(st.keys, [local, openai_key, cleared, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_vertex_and_openai_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    vertex_and_openai_conform(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_vertex_and_openai_conform() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        vertex_and_openai_conform(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Upgrade: migration 0008 widens `providers.kind`. SQLite rebuilds the `providers` table, which
// `provider_keys` references with ON DELETE CASCADE: the keys must survive it.

/// A provider and two keys as the code before migration 0008 wrote them (`$1` id, `$2` name,
/// `$3` time).
const OLD_PROVIDER_INSERT: &str = "INSERT INTO providers (name, kind, network_config, \
     extra_header_secrets, created_at, updated_at) \
     VALUES ('bedrock', 'bedrock', '{\"connect_timeout_in_seconds\": 5}', \
     '{\"x-team\": \"env:ANTHROPIC_TEAM\"}', $1, $1)";
const OLD_KEY_INSERT: &str = "INSERT INTO provider_keys (id, provider, name, description, models, \
     weight, aliases, enabled, value_secret, bedrock_config, access_key_secret, secret_key_secret, \
     session_token_secret, external_id_secret, created_at, updated_at) \
     VALUES ($1, 'bedrock', $2, 'kept', '[\"*\"]', 2.5, '{}', TRUE, NULL, \
     '{\"region\": {\"literal\": \"us-east-1\"}}', 'env:AWS_ACCESS_KEY_ID', \
     'env:AWS_SECRET_ACCESS_KEY', NULL, NULL, $3, $3)";

/// After migration 0008: the old provider and its keys are intact, the new kinds are accepted,
/// foreign keys still cascade, and a bogus kind is still refused.
async fn kinds_migrated(store: Arc<dyn Store>, keys: [Uuid; 2]) {
    let p = store.get_provider("bedrock").await.unwrap().unwrap();
    assert_eq!(p.kind, ProviderKind::Bedrock);
    assert_eq!(p.network.settings.connect_timeout_in_seconds, Some(5));
    assert_eq!(
        p.network.extra_headers["x-team"],
        SealedSecret::Env("ANTHROPIC_TEAM".into())
    );
    let stored = store.list_keys(Some("bedrock")).await.unwrap();
    assert_eq!(
        stored.iter().map(|k| k.id).collect::<Vec<_>>(),
        keys,
        "the keys survive the rebuild of providers"
    );
    for k in &stored {
        assert_eq!(k.description.as_deref(), Some("kept"));
        assert_eq!(k.weight, 2.5);
        assert_eq!(k.vertex, None);
        let b = k.bedrock.as_ref().unwrap();
        assert_eq!(b.region, Some(ValueSource::Literal("us-east-1".into())));
        assert_eq!(
            b.secret_key,
            Some(SealedSecret::Env("AWS_SECRET_ACCESS_KEY".into()))
        );
    }
    // The reference from provider_keys still points at the (new) providers table.
    store
        .delete_provider("bedrock", &event("provider.delete", "bedrock"))
        .await
        .unwrap();
    assert!(store.list_keys(None).await.unwrap().is_empty(), "cascade");
    vertex_and_openai_conform(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_provider_keys_survive_migration_0008() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let pool = sqlite_before_migration(&path, 8).await;
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        fk, 1,
        "the rows are written with foreign keys enforced, like the store's"
    );
    sqlx::query(OLD_PROVIDER_INSERT)
        .bind(now())
        .execute(&pool)
        .await
        .unwrap();
    let keys = [Uuid::from_u128(1), Uuid::from_u128(2)];
    for (id, name) in keys.iter().zip(["a", "b"]) {
        sqlx::query(OLD_KEY_INSERT)
            .bind(id)
            .bind(name)
            .bind(now())
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    // The migration on ONE connection that enforces foreign keys (as the store's do): the keys
    // survive, and foreign keys are enforced again afterwards on that same connection.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .foreign_keys(true),
        )
        .await
        .unwrap();
    sqlx::migrate!("../migrations/sqlite")
        .run(&pool)
        .await
        .unwrap();
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fk, 1, "foreign keys are back on after the migration");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let schema: String = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'provider_keys'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        schema.contains("REFERENCES providers (name) ON DELETE CASCADE"),
        "the reference is not rewritten: {schema}"
    );
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'providers_%' OR name LIKE '%0008%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0);
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    kinds_migrated(Arc::new(store), keys).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let bogus = sqlx::query(
        "INSERT INTO providers (name, kind, created_at, updated_at) VALUES ('x', 'bogus', 't', 't')",
    )
    .execute(&pool)
    .await;
    assert!(bogus.is_err(), "the kind CHECK is still there");
    pool.close().await;
}

/// A database whose keys already break their foreign key (written with enforcement off) is not
/// migrated: the migration's own check fails it and rolls the rebuild back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_0008_refuses_dangling_keys_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let pool = sqlite_before_migration(&path, 8).await;
    pool.close().await;
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .foreign_keys(false),
    )
    .await
    .unwrap();
    sqlx::query(OLD_KEY_INSERT)
        .bind(Uuid::from_u128(1))
        .bind("dangling")
        .bind(now())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    assert!(SqliteStore::open(&path).await.is_err());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let providers: String = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'providers'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!providers.contains("vertex"), "rolled back: {providers}");
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 8")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(applied, 0);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_provider_keys_survive_migration_0008() {
    common::with_postgres(|url| async move {
        let pool = postgres_before_migration(&url, 8).await;
        sqlx::query(OLD_PROVIDER_INSERT)
            .bind(now())
            .execute(&pool)
            .await
            .unwrap();
        let keys = [Uuid::from_u128(1), Uuid::from_u128(2)];
        for (id, name) in keys.iter().zip(["a", "b"]) {
            sqlx::query(OLD_KEY_INSERT)
                .bind(id)
                .bind(name)
                .bind(now())
                .execute(&pool)
                .await
                .unwrap();
        }
        let store = PostgresStore::connect(&url).await.unwrap();
        kinds_migrated(Arc::new(store.clone()), keys).await;
        store.close().await;
        let check: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'providers'::regclass AND conname = 'providers_kind_check'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(check.contains("vertex") && check.contains("openai"), "{check}");
        let bogus = sqlx::query(
            "INSERT INTO providers (name, kind, created_at, updated_at) VALUES ('x', 'bogus', now(), now())",
        )
        .execute(&pool)
        .await;
        assert!(bogus.is_err(), "the kind CHECK is still there");
        pool.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The audit log's hash chain.

/// Twenty changes written by concurrent writers: every audit row is chained in id order.
async fn chained_changes(
    store: Arc<dyn Store>,
) -> Vec<tollgate_control_plane::audit_chain::ChainRow> {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut ev = event("provider.create", &format!("p{i}"));
            ev.details =
                json!({"provider": format!("p{i}"), "kind": "bedrock", "n": i, "weight": 0.5});
            store
                .create_provider(&provider(&format!("p{i}"), ProviderKind::Bedrock), &ev)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = store.audit_chain().await.unwrap();
    let report = tollgate_control_plane::audit_chain::verify(&rows).expect("an intact chain");
    assert_eq!((report.unchained, report.chained), (0, 20));
    assert_eq!(report.head, rows.last().unwrap().hash);
    rows
}

/// Checks that the chain of `store` breaks at `id`.
async fn breaks_at(store: &dyn Store, id: i64) {
    let rows = store.audit_chain().await.unwrap();
    let err = tollgate_control_plane::audit_chain::verify(&rows).expect_err("a broken chain");
    assert_eq!(err.id, id, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_audit_chain_catches_edits_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let rows = chained_changes(Arc::clone(&store)).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // An edited row: its details no longer match its hash.
    sqlx::query("UPDATE audit_log SET details = '{\"provider\":\"p-other\"}' WHERE id = ?")
        .bind(rows[7].id)
        .execute(&pool)
        .await
        .unwrap();
    breaks_at(&*store, rows[7].id).await;
    // Put back as it was (the canonical text is what was hashed): intact again.
    sqlx::query("UPDATE audit_log SET details = ? WHERE id = ?")
        .bind(rows[7].details.to_string())
        .bind(rows[7].id)
        .execute(&pool)
        .await
        .unwrap();
    tollgate_control_plane::audit_chain::verify(&store.audit_chain().await.unwrap()).unwrap();
    // A deleted row: the next one names a predecessor that is gone.
    sqlx::query("DELETE FROM audit_log WHERE id = ?")
        .bind(rows[12].id)
        .execute(&pool)
        .await
        .unwrap();
    breaks_at(&*store, rows[13].id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_audit_chain_catches_edits_and_deletions() {
    common::with_postgres(|url| async move {
        let pg = PostgresStore::connect(&url).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(pg.clone());
        let rows = chained_changes(Arc::clone(&store)).await;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        // An edited row, with its hash recomputed by someone who knows the scheme: the next
        // row still names the old hash.
        sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE id = $1")
            .bind(rows[5].id)
            .execute(&pool)
            .await
            .unwrap();
        breaks_at(&*store, rows[5].id).await;
        let r = &rows[5];
        let forged = tollgate_control_plane::audit_chain::row_hash(
            r.prev_hash.as_deref().unwrap_or(""),
            r.id,
            r.at,
            "someone-else",
            &r.action,
            &r.target,
            r.config_version,
            &r.details,
        );
        sqlx::query("UPDATE audit_log SET hash = $2 WHERE id = $1")
            .bind(r.id)
            .bind(&forged)
            .execute(&pool)
            .await
            .unwrap();
        breaks_at(&*store, rows[6].id).await;
        pool.close().await;
        pg.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Audit log contents, queries and standalone rows.

use tollgate_control_plane::audit::{
    AuditFilter, AuditOrder, AuditQuery, AuditResult, AuditSource, TextMatch,
};
use tollgate_control_plane::model::AuditRecord;

fn actor_event(actor: &str, action: &str, target: &str) -> AuditEvent {
    let source = AuditSource::new(Some("10.0.0.5".parse().unwrap()), Some(b"conformance/1"));
    AuditEvent::new(actor, action, target, &source)
}

async fn query(store: &dyn Store, filter: AuditFilter) -> Vec<AuditRecord> {
    store
        .query_audit(&AuditQuery {
            filter,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn ids(rows: &[AuditRecord]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

/// Changes and standalone rows interleaved; every filter and both page orders.
async fn audit_queries_conform(store: Arc<dyn Store>) {
    let token = "token@10.0.0.1";
    let loopback = "loopback@127.0.0.1";
    let mut failures = 0;
    for i in 0..12 {
        let actor = if i % 2 == 0 { token } else { loopback };
        let target = format!("providers/p{i}");
        let version = store
            .create_provider(
                &provider(&format!("p{i}"), ProviderKind::Bedrock),
                &actor_event(actor, "provider.create", &target),
            )
            .await
            .unwrap();
        if i % 4 == 3 {
            // A refused change between two changes: chained, no new version.
            let ev = actor_event(token, "virtual_key.create", "virtual-keys")
                .failure("unknown provider \"nope\"")
                .with("status", json!(400));
            let id = store.append_audit(&ev).await.unwrap();
            failures += 1;
            assert_eq!(store.config_version().await.unwrap(), version);
            let row = &store.list_audit(1).await.unwrap()[0];
            assert_eq!(row.id, id);
            assert_eq!(row.config_version, version, "the current version");
            assert_eq!(row.details["result"], "failure");
            assert_eq!(row.details["error"], "unknown provider \"nope\"");
            assert_eq!(row.details["source"]["ip"], "10.0.0.5");
            assert_eq!(row.details["source"]["user_agent"], "conformance/1");
        }
    }
    store
        .create_virtual_key(
            &vk("audited", &["p0"], 0xA1),
            &actor_event(loopback, "virtual_key.create", "virtual-keys/x"),
        )
        .await
        .unwrap();
    let all = query(&*store, AuditFilter::default()).await;
    assert_eq!(all.len(), 12 + failures + 1);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let report = tollgate_control_plane::audit_chain::verify(&store.audit_chain().await.unwrap())
        .expect("standalone rows chain like the others");
    assert_eq!(report.chained as usize, all.len());
    // The vk's view never holds its digest.
    let vk_row = &all[0];
    assert_eq!(vk_row.details["after"]["name"], "audited");
    assert!(vk_row.details["after"].get("key_sha256").is_none());
    assert!(
        !vk_row
            .details
            .to_string()
            .contains(&hex::encode([0xA1u8; 32]))
    );

    let expect = |pred: &dyn Fn(&AuditRecord) -> bool| -> Vec<i64> {
        all.iter().filter(|r| pred(r)).map(|r| r.id).collect()
    };
    let text = |raw: &str| Some(TextMatch::parse(raw).unwrap());
    let cases: Vec<(AuditFilter, Vec<i64>)> = vec![
        (
            AuditFilter {
                action: text("provider.create"),
                ..Default::default()
            },
            expect(&|r| r.action == "provider.create"),
        ),
        (
            AuditFilter {
                action: text("virtual_key.*"),
                ..Default::default()
            },
            expect(&|r| r.action.starts_with("virtual_key.")),
        ),
        (
            AuditFilter {
                actor: text(loopback),
                ..Default::default()
            },
            expect(&|r| r.actor == loopback),
        ),
        (
            AuditFilter {
                actor: text("token@*"),
                ..Default::default()
            },
            expect(&|r| r.actor.starts_with("token@")),
        ),
        (
            AuditFilter {
                target: text("providers/p1*"),
                ..Default::default()
            },
            expect(&|r| r.target.starts_with("providers/p1")),
        ),
        (
            AuditFilter {
                result: Some(AuditResult::Failure),
                ..Default::default()
            },
            expect(&|r| r.details["result"] == "failure"),
        ),
        (
            AuditFilter {
                result: Some(AuditResult::Success),
                actor: text(token),
                action: text("provider.*"),
                ..Default::default()
            },
            expect(&|r| {
                r.details["result"] == "success"
                    && r.actor == token
                    && r.action.starts_with("provider.")
            }),
        ),
        // `_` and `%` are not wildcards.
        (
            AuditFilter {
                action: text("virtual%*"),
                ..Default::default()
            },
            Vec::new(),
        ),
    ];
    for (filter, expected) in cases {
        assert!(!expected.is_empty() || filter.action == text("virtual%*"));
        assert_eq!(
            ids(&query(&*store, filter.clone()).await),
            expected,
            "{filter:?}"
        );
    }
    assert_eq!(
        expect(&|r| r.target.starts_with("providers/p1")).len(),
        3,
        "p1, p10, p11"
    );

    // Time ranges: [since, until), whatever the offset or precision of the bounds.
    let oldest_first: Vec<&AuditRecord> = all.iter().rev().collect();
    let (since, until) = (oldest_first[4].at, oldest_first[11].at);
    let whole_second = since.replace_nanosecond(0).unwrap();
    let plus_two = time::UtcOffset::from_hms(2, 0, 0).unwrap();
    for (since, until) in [
        (Some(since), None),
        (None, Some(until)),
        (Some(since), Some(until)),
        (
            Some(since.to_offset(plus_two)),
            Some(until.to_offset(plus_two)),
        ),
        (Some(whole_second), None),
        (None, Some(whole_second)),
        (Some(since + time::Duration::nanoseconds(1)), None),
    ] {
        let expected =
            expect(&|r| since.is_none_or(|s| r.at >= s) && until.is_none_or(|u| r.at < u));
        let got = query(
            &*store,
            AuditFilter {
                since,
                until,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&got), expected, "since {since:?} until {until:?}");
    }

    // Pages: newest first with `before_id`, oldest first with `after_id`; no gaps, no repeats.
    for (filter, page) in [
        (AuditFilter::default(), 5),
        (
            AuditFilter {
                result: Some(AuditResult::Success),
                ..Default::default()
            },
            4,
        ),
        (
            AuditFilter {
                actor: text("token@*"),
                ..Default::default()
            },
            1,
        ),
    ] {
        let expected = ids(&query(&*store, filter.clone()).await);
        let mut seen = Vec::new();
        let mut before_id = None;
        loop {
            let rows = store
                .query_audit(&AuditQuery {
                    filter: filter.clone(),
                    before_id,
                    limit: page,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(ids(&rows));
            if rows.len() < page as usize {
                break;
            }
            before_id = rows.last().map(|r| r.id);
        }
        assert_eq!(seen, expected, "{filter:?} newest first");
        let mut seen = Vec::new();
        let mut after_id = None;
        loop {
            let rows = store
                .query_audit(&AuditQuery {
                    filter: filter.clone(),
                    after_id,
                    order: AuditOrder::OldestFirst,
                    limit: page,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(ids(&rows));
            if rows.len() < page as usize {
                break;
            }
            after_id = rows.last().map(|r| r.id);
        }
        seen.reverse();
        assert_eq!(seen, expected, "{filter:?} oldest first");
    }
}

/// Changes and standalone rows written at once by many tasks keep one valid chain.
async fn concurrent_audit_writers(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let changes = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            changes
                .create_provider(
                    &provider(&format!("c{i}"), ProviderKind::Anthropic),
                    &actor_event(
                        "token@10.0.0.1",
                        "provider.create",
                        &format!("providers/c{i}"),
                    ),
                )
                .await
                .unwrap();
        }));
        let standalone = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let ev = actor_event("anonymous@10.0.0.9", "auth.failed", "/api/providers")
                .failure("invalid admin token");
            standalone.append_audit(&ev).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = store.audit_chain().await.unwrap();
    let report = tollgate_control_plane::audit_chain::verify(&rows).expect("an intact chain");
    assert_eq!(report.chained, 32);
    let standalone = query(
        &*store,
        AuditFilter {
            action: Some(TextMatch::Exact("auth.failed".into())),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(standalone.len(), 16);
    // 16 changes: versions 2..=17; standalone rows carry one of them and bump none.
    assert_eq!(store.config_version().await.unwrap(), 17);
    assert!(
        standalone
            .iter()
            .all(|r| (1..=17).contains(&r.config_version))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_audit_queries_and_standalone_rows_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("a.db")).await.unwrap());
    audit_queries_conform(store).await;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("b.db")).await.unwrap());
    concurrent_audit_writers(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_audit_queries_and_standalone_rows_conform() {
    common::with_postgres(|url| async move {
        let pg = PostgresStore::connect(&url).await.unwrap();
        audit_queries_conform(Arc::new(pg.clone())).await;
        pg.close().await;
    })
    .await;
    common::with_postgres(|url| async move {
        let pg = PostgresStore::connect(&url).await.unwrap();
        concurrent_audit_writers(Arc::new(pg.clone())).await;
        pg.close().await;
    })
    .await;
}

/// Usage inserts while partitions are created for the days they write to: no insert fails
/// (PostgreSQL refuses a row routed into the DEFAULT partition while a partition for its day is
/// attached, unless the two are kept apart), and every row is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_usage_inserts_race_partition_creation_without_failing() {
    common::with_postgres(|url| async move {
        let store = Arc::new(PostgresStore::connect(&url).await.unwrap());
        let first = now().date() + time::Duration::days(20);
        const DAYS: usize = 8;
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut stored = 0;
                    for batch in 0..40 {
                        let records: Vec<UsageRecord> = (0..DAYS)
                            .map(|d| {
                                let day = first + time::Duration::days(d as i64);
                                let at = unix_ms(day.midnight().assume_utc()) + 1_000 * batch;
                                usage(100_000 * w + 1_000 * batch as usize + d, "vk-race", at)
                            })
                            .collect();
                        stored += store.insert_usage(&records).await.expect("no insert fails");
                    }
                    stored
                })
            })
            .collect();
        for d in 0..DAYS {
            let day = first + time::Duration::days(d as i64);
            store.create_usage_partitions(day, 1).await.unwrap();
        }
        let mut stored = 0;
        for w in writers {
            stored += w.await.unwrap();
        }
        assert_eq!(stored, (3 * 40 * DAYS) as u64);
        assert_eq!(
            requests(&*store).await.get("vk-race"),
            Some(&(3 * 40 * DAYS as u64))
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The MCP gateway (migration 0020): servers, and tool calls kept apart from usage.

fn mcp_server(name: &str, secrets: &SecretBox) -> McpServerRecord {
    let t = now();
    let id = Uuid::new_v4();
    McpServerRecord {
        id,
        name: name.into(),
        transport: TransportRecord::Stdio {
            command: "npx".into(),
            args: vec!["-y".into(), "server".into()],
            env: BTreeMap::from([
                (
                    "TOKEN".to_owned(),
                    tollgate_control_plane::mcp::seal(
                        secrets,
                        id,
                        SecretMap::Env,
                        "TOKEN",
                        "mcp-secret-EXAMPLE",
                    )
                    .unwrap(),
                ),
                ("REF".to_owned(), SealedSecret::Env("AWS_REGION".into())),
            ]),
            cwd: Some("/srv".into()),
        },
        allowed_tools: vec!["search_*".into()],
        call_timeout_ms: 1500,
        enabled: true,
        created_at: t,
        updated_at: t,
    }
}

fn mcp_call(id: &str, vk: &str, team: Option<Uuid>, started_at_unix_ms: i64) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        virtual_key_id: vk.into(),
        team_id: team.map(|t| t.to_string()).unwrap_or_default(),
        status: 200,
        latency_ms: 42,
        started_at_unix_ms,
        mcp: Some(tollgate_proto::usage::v1::McpCall {
            server: "github".into(),
            tool: "search_issues".into(),
        }),
        ..Default::default()
    }
}

async fn mcp_calls(store: &dyn Store, scope: LogScope) -> Vec<McpCallRow> {
    store
        .query_mcp_calls(&McpCallQuery {
            since: now() - time::Duration::days(30),
            until: now() + time::Duration::hours(1),
            virtual_key_id: None,
            team_id: None,
            server: None,
            tool: None,
            status: None,
            scope,
            after: None,
            limit: 100,
        })
        .await
        .unwrap()
}

async fn mcp_conformance(store: Arc<dyn Store>) {
    let secrets = SecretBox::new(&[5u8; 32]);
    // Servers: create, conflict, read back as written, update, delete.
    let github = mcp_server("github", &secrets);
    let v1 = store
        .create_mcp_server(&github, &event("mcp_server.create", "mcp/servers/github"))
        .await
        .unwrap();
    let mut web = mcp_server("web", &secrets);
    web.transport = TransportRecord::Http {
        url: "https://mcp.example.com/mcp".into(),
        headers: BTreeMap::from([(
            "Authorization".to_owned(),
            tollgate_control_plane::mcp::seal(
                &secrets,
                web.id,
                SecretMap::Headers,
                "Authorization",
                "Bearer mcp-secret-EXAMPLE",
            )
            .unwrap(),
        )]),
    };
    web.enabled = false;
    store
        .create_mcp_server(&web, &event("mcp_server.create", "mcp/servers/web"))
        .await
        .unwrap();
    let mut dup = mcp_server("github", &secrets);
    dup.id = Uuid::new_v4();
    assert!(matches!(
        store
            .create_mcp_server(&dup, &event("mcp_server.create", "x"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_mcp_server("github").await.unwrap().as_ref(),
        Some(&github)
    );
    let names: Vec<String> = store
        .list_mcp_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["github", "web"]);
    assert_eq!(store.list_mcp_servers().await.unwrap()[1], web);
    let state = store.load_state().await.unwrap();
    assert_eq!(state.mcp_servers, vec![github.clone(), web.clone()]);
    let (updated, v2) = store
        .update_mcp_server(
            "github",
            &|s: &mut McpServerRecord| {
                s.enabled = false;
                s.call_timeout_ms = 0;
                s.name = "renamed".into();
                Ok(())
            },
            &event("mcp_server.update", "mcp/servers/github"),
        )
        .await
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(updated.name, "github", "the name cannot change");
    assert!(!updated.enabled && updated.call_timeout_ms == 0);
    assert_eq!(updated.transport, github.transport);
    assert_eq!(store.get_mcp_server("github").await.unwrap(), Some(updated));
    // A refused update changes nothing.
    let refused = store
        .update_mcp_server(
            "github",
            &|_: &mut McpServerRecord| Err(ValidationError::new("url", "no")),
            &event("mcp_server.update", "mcp/servers/github"),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Invalid(_))));
    assert_eq!(store.config_version().await.unwrap(), v2);
    assert!(matches!(
        store
            .update_mcp_server("nope", &|_: &mut McpServerRecord| Ok(()), &event("u", "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .delete_mcp_server("web", &event("mcp_server.delete", "mcp/servers/web"))
        .await
        .unwrap();
    assert!(matches!(
        store.delete_mcp_server("web", &event("d", "x")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.get_mcp_server("web").await.unwrap().is_none());
    // The audit rows show the servers redacted: no plaintext, no ciphertext.
    let rows = store.list_audit(100).await.unwrap();
    let mcp_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.action.starts_with("mcp_server."))
        .collect();
    assert_eq!(mcp_rows.len(), 4, "create, create, update, delete");
    for r in &mcp_rows {
        let text = r.details.to_string();
        assert!(
            !text.contains("mcp-secret-EXAMPLE") && !text.contains("v1:"),
            "{text}"
        );
    }
    let create = mcp_rows
        .iter()
        .find(|r| r.action == "mcp_server.create" && r.target == "mcp/servers/github")
        .unwrap();
    assert_eq!(create.details["after"]["env"]["TOKEN"], "<redacted>");
    assert_eq!(create.details["after"]["env"]["REF"], "env.AWS_REGION");

    // Tool calls: their own log, idempotent, never usage.
    let team = Uuid::new_v4();
    let t = unix_ms(now());
    let old_ms = unix_ms(now() - time::Duration::days(10));
    let mut batch: Vec<UsageRecord> = (0..3).map(|i| usage(900 + i, "vk-m", t - 10)).collect();
    batch.push(mcp_call("mcp-0", "vk-m", Some(team), t - 1));
    batch.push(mcp_call("mcp-1", "vk-n", None, t - 2));
    batch.push(mcp_call("mcp-1", "vk-n", None, t - 2));
    let mut failed = mcp_call("mcp-2", "vk-m", Some(team), old_ms);
    failed.status = 504;
    failed.error_class = "timeout".into();
    batch.push(failed);
    assert_eq!(
        store.insert_usage(&batch).await.unwrap(),
        6,
        "3 requests, 3 calls"
    );
    assert_eq!(
        store.insert_usage(&batch).await.unwrap(),
        0,
        "a resent batch stores nothing twice"
    );
    assert_eq!(requests(&*store).await, counts(&[("vk-m", 3)]));
    for id in ["mcp-0", "mcp-1", "mcp-2"] {
        assert!(store.get_usage_log(id).await.unwrap().is_none(), "{id}");
    }
    let spend = store
        .query_spend(&tollgate_control_plane::spend::SpendQuery {
            since: now() - time::Duration::days(30),
            until: now() + time::Duration::days(1),
            interval: tollgate_control_plane::spend::Interval::None,
            group_by: vec![tollgate_control_plane::spend::Dimension::Key],
            virtual_key_id: None,
            team_id: None,
            customer_id: None,
            user_id: None,
            model: None,
            provider: None,
            scope: LogScope::All,
            limit: 100,
        })
        .await
        .unwrap();
    let spent: Vec<(Option<String>, u64)> = spend
        .iter()
        .map(|r| {
            (
                r.virtual_key_id.clone(),
                r.totals.requests + r.totals.refused_requests,
            )
        })
        .collect();
    assert_eq!(
        spent,
        [(Some("vk-m".to_owned()), 3)],
        "calls are not in the rollups"
    );

    let all = mcp_calls(&*store, LogScope::All).await;
    let ids: Vec<&str> = all.iter().map(|c| c.request_id.as_str()).collect();
    assert_eq!(ids, ["mcp-0", "mcp-1", "mcp-2"], "newest first");
    let c = &all[0];
    assert_eq!(
        (
            c.virtual_key_id.as_str(),
            c.team_id,
            c.server.as_str(),
            c.tool.as_str()
        ),
        ("vk-m", Some(team), "github", "search_issues")
    );
    assert_eq!(
        (c.status, c.latency_ms, c.error_class.as_str()),
        (200, 42, "")
    );
    assert_eq!(unix_ms(c.started_at), t - 1);
    assert_eq!(
        (all[2].status, all[2].error_class.as_str()),
        (504, "timeout")
    );
    let team_ids: Vec<String> = mcp_calls(&*store, LogScope::Team(Some(team)))
        .await
        .into_iter()
        .map(|c| c.request_id)
        .collect();
    assert_eq!(team_ids, ["mcp-0", "mcp-2"]);
    assert!(mcp_calls(&*store, LogScope::Team(None)).await.is_empty());
    // Filters and the keyset page.
    let page = store
        .query_mcp_calls(&McpCallQuery {
            since: now() - time::Duration::days(30),
            until: now() + time::Duration::hours(1),
            virtual_key_id: None,
            team_id: None,
            server: Some("github".into()),
            tool: Some("search_issues".into()),
            status: Some(StatusFilter::Class(2)),
            scope: LogScope::All,
            after: Some((all[0].started_at, all[0].request_id.clone())),
            limit: 10,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|c| c.request_id.as_str()).collect();
    assert_eq!(ids, ["mcp-1"]);

    // Retention: calls go with the usage of their days.
    let purge = store
        .drop_usage_partitions_before(now().date())
        .await
        .unwrap();
    assert_eq!(purge.deleted_mcp_calls, 1, "{purge:?}");
    let left: Vec<String> = mcp_calls(&*store, LogScope::All)
        .await
        .into_iter()
        .map(|c| c.request_id)
        .collect();
    assert_eq!(left, ["mcp-0", "mcp-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mcp_servers_and_tool_calls_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("mcp.db")).await.unwrap();
    mcp_conformance(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mcp_servers_and_tool_calls_conform() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        mcp_conformance(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

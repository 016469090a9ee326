//! Provider kinds `vertex` and `openai` through the admin API: Vertex AI keys (a service
//! account key file as a secret, project and region), OpenAI and OpenAI-compatible providers
//! (a custom name with base type `openai` and a `base_url`), redaction, the snapshot, and 400s
//! naming the field.

use super::*;

/// Stands for the private key inside the key file; must never appear in a response.
const PRIVATE_KEY_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-NOT-A-REAL-KEY-0008";

/// A key file with the shape Google Cloud downloads (the private key is not a real one).
fn key_file(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "my-project-123",
        "private_key_id": "0123456789abcdef",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{PRIVATE_KEY_BODY}\n-----END PRIVATE KEY-----\n"),
        "client_email": "gateway@my-project-123.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "token_uri": token_uri,
    })
    .to_string()
}

fn vertex_of(snap: &Snapshot, provider: &str) -> tollgate_proto::config::v1::Provider {
    snap.providers
        .iter()
        .find(|p| p.name == provider)
        .unwrap_or_else(|| panic!("no provider {provider} in the snapshot"))
        .clone()
}

async fn vertex_keys(h: &Harness) {
    let file = key_file("https://oauth2.googleapis.com/token");
    let r = post(h, "/api/providers", json!({"provider": "vertex"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["kind"], "vertex");
    assert!(r.json.get("custom_provider_config").is_none(), "{}", r.text);
    let mut bodies = Vec::new();

    // Create: the key file is a secret, project and region are shown as given.
    let r = post(
        h,
        "/api/providers/vertex/keys",
        json!({
            "name": "sa",
            "aliases": {"claude-sonnet-4-6": "claude-sonnet-4-6@20260101"},
            "vertex_key_config": {
                "project_id": "my-project-123",
                "region": "us-east5",
                "auth_credentials": file,
                "token_uri": "http://127.0.0.1:9000/token"
            }
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.json["vertex_key_config"],
        json!({
            "project_id": "my-project-123",
            "region": "us-east5",
            "auth_credentials": "<redacted>",
            "token_uri": "http://127.0.0.1:9000/token"
        })
    );
    assert!(r.json["bedrock_key_config"].is_null());
    assert!(r.json["value"].is_null());
    bodies.push(r.text);
    let path = format!("/api/providers/vertex/keys/{id}");
    for p in [path.as_str(), "/api/keys", "/api/providers/vertex/keys"] {
        let r = get(h, p).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        bodies.push(r.text);
    }

    // The snapshot has the key file for the data plane, and the kind.
    let v = vertex_of(&current(h), "vertex");
    assert_eq!(
        v.kind,
        tollgate_proto::config::v1::ProviderKind::Vertex as i32
    );
    let cfg = v.keys[0].vertex.clone().unwrap();
    assert_eq!(literal(&cfg.auth_credentials), Some(file.as_str()));
    assert_eq!(literal(&cfg.project_id), Some("my-project-123"));
    assert_eq!(literal(&cfg.region), Some("us-east5"));
    assert_eq!(cfg.token_uri, "http://127.0.0.1:9000/token");
    assert!(v.keys[0].bedrock.is_none() && v.keys[0].value.is_none());

    // GET, edit, PUT back: "<redacted>" keeps the key file.
    let mut edited = get(h, &path).await.json;
    edited["vertex_key_config"]["region"] = json!("env.GOOGLE_CLOUD_REGION");
    edited["vertex_key_config"]["project_id"] = json!("env.GOOGLE_CLOUD_PROJECT");
    let r = put(h, &path, edited).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["vertex_key_config"]["region"],
        "env.GOOGLE_CLOUD_REGION"
    );
    assert_eq!(
        r.json["vertex_key_config"]["auth_credentials"],
        "<redacted>"
    );
    bodies.push(r.text);
    let cfg = vertex_of(&current(h), "vertex").keys[0]
        .vertex
        .clone()
        .unwrap();
    assert_eq!(literal(&cfg.auth_credentials), Some(file.as_str()), "kept");
    assert_eq!(env(&cfg.region), Some("GOOGLE_CLOUD_REGION"));
    assert_eq!(env(&cfg.project_id), Some("GOOGLE_CLOUD_PROJECT"));

    // A replaced block without token_uri drops it; an env key file replaces the literal.
    let r = put(
        h,
        &path,
        json!({"vertex_key_config": {"project_id": "my-project-123", "region": "global",
               "auth_credentials": "env.GOOGLE_VERTEX_CREDENTIALS"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["vertex_key_config"],
        json!({"project_id": "my-project-123", "region": "global",
               "auth_credentials": "env.GOOGLE_VERTEX_CREDENTIALS", "token_uri": null})
    );
    let cfg = vertex_of(&current(h), "vertex").keys[0]
        .vertex
        .clone()
        .unwrap();
    assert_eq!(
        env(&cfg.auth_credentials),
        Some("GOOGLE_VERTEX_CREDENTIALS")
    );
    assert_eq!(cfg.token_uri, "");
    // And back to a literal (a loopback token endpoint in the file is fine).
    let loopback_file = key_file("http://127.0.0.1:9000/token");
    let r = put(
        h,
        &path,
        json!({"vertex_key_config": {"project_id": "my-project-123", "region": "eu",
               "auth_credentials": loopback_file}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    bodies.push(r.text);

    // The audit log shows the shape, never the key file.
    let r = get(h, "/api/audit-logs?limit=1000").await;
    let create = r.json["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "provider_key.create")
        .unwrap()
        .clone();
    assert_eq!(
        create["details"]["after"]["vertex_key_config"],
        json!({"project_id": "my-project-123", "region": "us-east5",
               "auth_credentials": "<redacted>", "token_uri": "http://127.0.0.1:9000/token"})
    );
    assert_eq!(create["details"]["before"], Value::Null);
    bodies.push(r.text);
    for body in &bodies {
        assert!(
            !body.contains(PRIVATE_KEY_BODY),
            "a response leaks the key file: {body}"
        );
        assert!(!body.contains("BEGIN PRIVATE KEY"), "{body}");
    }

    // At rest: sealed.
    let sql = "SELECT auth_credentials_secret FROM provider_keys";
    let rows: Vec<Option<String>> = match &h.store {
        StoreConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        StoreConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    };
    let col = rows[0].clone().unwrap();
    assert!(col.starts_with("enc:v1:"), "{col}");
    assert!(!col.contains(PRIVATE_KEY_BODY));

    // null clears the block, which a vertex key needs.
    let r = put(h, &path, json!({"vertex_key_config": null})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("vertex_key_config"),
    );
}

#[tokio::test]
async fn vertex_keys_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    vertex_keys(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertex_keys_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        vertex_keys(&h).await;
    })
    .await;
}

#[tokio::test]
async fn vertex_key_errors_name_the_field_and_never_quote_the_key_file() {
    let h = sqlite_harness(loopback_auth()).await;
    post(&h, "/api/providers", json!({"provider": "vertex"})).await;
    post(&h, "/api/providers", json!({"provider": "bedrock"})).await;
    let version = h.cp.published_version();
    let good = || {
        json!({"project_id": "my-project-123", "region": "us-east5",
               "auth_credentials": key_file("https://oauth2.googleapis.com/token")})
    };
    let with = |field: &str, value: Value| {
        let mut cfg = good();
        if value.is_null() {
            cfg.as_object_mut().unwrap().remove(field);
        } else {
            cfg[field] = value;
        }
        json!({"name": "k", "vertex_key_config": cfg})
    };
    let broken_file = |edit: &dyn Fn(&mut Value)| {
        let mut f: Value =
            serde_json::from_str(&key_file("https://oauth2.googleapis.com/token")).unwrap();
        edit(&mut f);
        json!(f.to_string())
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "k"}), "vertex_key_config"),
        (
            with("project_id", Value::Null),
            "vertex_key_config.project_id",
        ),
        (
            with("project_id", json!("My Project")),
            "vertex_key_config.project_id",
        ),
        (with("region", Value::Null), "vertex_key_config.region"),
        (
            with("region", json!("US-EAST5")),
            "vertex_key_config.region",
        ),
        (
            with("region", json!("us_east5")),
            "vertex_key_config.region",
        ),
        (
            with("auth_credentials", Value::Null),
            "vertex_key_config.auth_credentials",
        ),
        (
            with("auth_credentials", json!("<redacted>")),
            "vertex_key_config.auth_credentials",
        ),
        (
            with(
                "auth_credentials",
                json!(format!("{{\"private_key\": \"{PRIVATE_KEY_BODY}")),
            ),
            "vertex_key_config.auth_credentials",
        ),
        (
            with("auth_credentials", json!(PRIVATE_KEY_BODY)),
            "vertex_key_config.auth_credentials",
        ),
        (
            with(
                "auth_credentials",
                broken_file(&|f| f["type"] = json!(PRIVATE_KEY_BODY)),
            ),
            "vertex_key_config.auth_credentials",
        ),
        (
            with(
                "auth_credentials",
                broken_file(&|f| f["private_key"] = json!(PRIVATE_KEY_BODY)),
            ),
            "vertex_key_config.auth_credentials",
        ),
        (
            with(
                "auth_credentials",
                broken_file(&|f| f["token_uri"] = json!("http://oauth2.example/token")),
            ),
            "vertex_key_config.auth_credentials",
        ),
        (
            with("auth_credentials", json!("env.NOT_ALLOWED_CREDENTIALS")),
            "vertex_key_config.auth_credentials",
        ),
        (
            with("project_id", json!("env.TOLLGATE_SECRET_KEY")),
            "vertex_key_config.project_id",
        ),
        (
            with("token_uri", json!("ftp://x/token")),
            "vertex_key_config.token_uri",
        ),
        (
            with("token_uri", json!("not a url")),
            "vertex_key_config.token_uri",
        ),
        (with("extra", json!(1)), "vertex_key_config.extra"),
    ];
    for (body, field) in cases {
        let r = post(&h, "/api/providers/vertex/keys", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", Some(field));
        assert!(
            !r.text.contains(PRIVATE_KEY_BODY),
            "the error quotes the key file: {}",
            r.text
        );
    }

    // Blocks and fields of other kinds.
    let mut both = with("region", json!("us-east5"));
    both["bedrock_key_config"] = json!({"region": "us-east-1", "access_key": "env.AWS_ACCESS_KEY_ID", "secret_key": "env.AWS_SECRET_ACCESS_KEY"});
    let r = post(&h, "/api/providers/vertex/keys", both).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("bedrock_key_config"),
    );
    let mut valued = with("region", json!("us-east5"));
    valued["value"] = json!("env.GOOGLE_API_KEY");
    let r = post(&h, "/api/providers/vertex/keys", valued).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("value"),
    );
    let r = post(
        &h,
        "/api/providers/bedrock/keys",
        json!({"name": "b", "value": "env.BEDROCK_API_KEY", "vertex_key_config": good()}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("vertex_key_config"),
    );
    assert!(!r.text.contains(PRIVATE_KEY_BODY));
    assert_eq!(h.cp.published_version(), version, "nothing was stored");

    // Updates are checked the same way, and "<redacted>" needs something stored.
    let r = post(
        &h,
        "/api/providers/vertex/keys",
        json!({"name": "ok", "vertex_key_config": good()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let path = format!(
        "/api/providers/vertex/keys/{}",
        r.json["id"].as_str().unwrap()
    );
    let r = put(
        &h,
        &path,
        json!({"vertex_key_config": {"project_id": "p-1", "region": "nowhere land",
               "auth_credentials": "<redacted>"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("vertex_key_config.region"),
    );
    let r = put(
        &h,
        &path,
        json!({"bedrock_key_config": {"region": "us-east-1"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("bedrock_key_config"),
    );
    let r = put(
        &h,
        &path,
        json!({"vertex_key_config": {"project_id": "p-1", "region": "us",
               "auth_credentials": "{\"type\": \"service_account\"}"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("vertex_key_config.auth_credentials"),
    );
}

#[tokio::test]
async fn vertex_references_stored_outside_the_allowlist_are_marked() {
    use tollgate_control_plane::model::{
        AuditEvent, ProviderKeyRecord, SealedSecret, ValueSource, VertexKeyRecord, now,
    };
    let h = sqlite_harness(loopback_auth()).await;
    post(&h, "/api/providers", json!({"provider": "vertex"})).await;
    let t = now();
    let planted = ProviderKeyRecord {
        id: uuid::Uuid::new_v4(),
        provider: "vertex".into(),
        name: "planted".into(),
        description: None,
        models: vec!["*".into()],
        weight: 1.0,
        aliases: Default::default(),
        enabled: true,
        value: None,
        bedrock: None,
        vertex: Some(VertexKeyRecord {
            project_id: Some(ValueSource::Env("HOME".into())),
            region: Some(ValueSource::Literal("us-east5".into())),
            auth_credentials: Some(SealedSecret::Env("TOLLGATE_SECRET_KEY".into())),
            token_uri: None,
        }),
        created_at: t,
        updated_at: t,
    };
    let event = AuditEvent {
        actor: "test".into(),
        action: "plant".into(),
        target: "t".into(),
        details: json!({}),
    };
    h.cp.store().create_key(&planted, &event).await.unwrap();
    let r = get(&h, &format!("/api/providers/vertex/keys/{}", planted.id)).await;
    assert_eq!(
        r.json["refused_env_references"],
        json!([
            "vertex_key_config.project_id",
            "vertex_key_config.auth_credentials"
        ])
    );
    assert_eq!(
        r.json["vertex_key_config"]["auth_credentials"],
        "env.TOLLGATE_SECRET_KEY"
    );
}

async fn openai_providers(h: &Harness) {
    use tollgate_proto::config::v1::ProviderKind as Pk;

    // `openai` is a kind of its own; a custom name takes it as base type.
    let r = post(h, "/api/providers", json!({"provider": "openai"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["kind"], "openai");
    let r = post(
        h,
        "/api/providers",
        json!({"provider": "ollama",
               "custom_provider_config": {"base_provider_type": "openai"},
               "network_config": {"base_url": "http://127.0.0.1:11434/v1"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["kind"], "openai");
    assert_eq!(
        r.json["custom_provider_config"]["base_provider_type"],
        "openai"
    );
    let r = post(
        h,
        "/api/providers",
        json!({"provider": "vllm", "network_config": {"base_url": "http://127.0.0.1:8000/v1"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("custom_provider_config"),
    );
    assert!(
        r.text.contains("openai") && r.text.contains("vertex"),
        "{}",
        r.text
    );
    let r = post(
        h,
        "/api/providers",
        json!({"provider": "openai", "custom_provider_config": {"base_provider_type": "anthropic"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // api.openai.com needs an API key; the local server may go without.
    let r = post(h, "/api/providers/openai/keys", json!({"name": "main"})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("value"),
    );
    assert!(r.text.contains("base_url"), "{}", r.text);
    let r = post(
        h,
        "/api/providers/openai/keys",
        json!({"name": "main", "value": "sk-proj-SECRET-0008", "models": ["gpt-5", "gpt-5-mini"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["value"], "<redacted>");
    assert!(r.json["vertex_key_config"].is_null());
    let openai_key = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        h,
        "/api/providers/ollama/keys",
        json!({"name": "local", "aliases": {"llama": "llama3.1:8b"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.json["value"].is_null());
    let local_key = r.json["id"].as_str().unwrap().to_owned();
    let r = post(
        h,
        "/api/providers/openai/keys",
        json!({"name": "b", "value": "env.OPENAI_API_KEY",
               "bedrock_key_config": {"region": "us-east-1"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("bedrock_key_config"),
    );
    let r = post(
        h,
        "/api/providers/ollama/keys",
        json!({"name": "v", "vertex_key_config": {"project_id": "p-1", "region": "us",
               "auth_credentials": "env.GOOGLE_VERTEX_CREDENTIALS"}}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("vertex_key_config"),
    );

    let snap = current(h);
    let openai = vertex_of(&snap, "openai");
    assert_eq!(openai.kind, Pk::Openai as i32);
    assert_eq!(openai.network.as_ref().unwrap().base_url, "");
    assert_eq!(literal(&openai.keys[0].value), Some("sk-proj-SECRET-0008"));
    let ollama = vertex_of(&snap, "ollama");
    assert_eq!(ollama.kind, Pk::Openai as i32);
    assert_eq!(
        ollama.network.as_ref().unwrap().base_url,
        "http://127.0.0.1:11434/v1"
    );
    assert_eq!(ollama.keys[0].value, None);
    assert_eq!(ollama.keys[0].aliases["llama"], "llama3.1:8b");

    // The value can be removed only where a base_url makes it optional.
    let r = put(
        h,
        &format!("/api/providers/openai/keys/{openai_key}"),
        json!({"value": null}),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("value"),
    );
    let r = put(
        h,
        &format!("/api/providers/ollama/keys/{local_key}"),
        json!({"value": "env.OPENAI_LOCAL_KEY"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["value"], "env.OPENAI_LOCAL_KEY");
    let r = put(
        h,
        &format!("/api/providers/ollama/keys/{local_key}"),
        json!({"value": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Removing the base_url of a provider whose keys have no value is refused; with a value, fine.
    let r = put(h, "/api/providers/ollama", json!({"network_config": {}})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("network_config.base_url"),
    );
    assert!(r.text.contains("local"), "{}", r.text);
    let r = put(
        h,
        "/api/providers/ollama",
        json!({"network_config": {"base_url": "http://127.0.0.1:11435/v1"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = put(
        h,
        &format!("/api/providers/ollama/keys/{local_key}"),
        json!({"value": "env.OPENAI_LOCAL_KEY"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = put(h, "/api/providers/ollama", json!({"network_config": {}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Audit rows keep the shape only.
    let r = get(h, "/api/audit-logs?limit=1000").await;
    assert!(!r.text.contains("sk-proj-SECRET-0008"), "{}", r.text);
    for path in ["/api/keys", "/api/providers"] {
        let r = get(h, path).await;
        assert!(!r.text.contains("sk-proj-SECRET-0008"), "{}", r.text);
    }
}

#[tokio::test]
async fn openai_providers_on_sqlite() {
    let h = sqlite_harness(loopback_auth()).await;
    openai_providers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_providers_on_postgres() {
    common::with_postgres(|url| async move {
        let h = postgres_harness(url).await;
        openai_providers(&h).await;
    })
    .await;
}

//! TLS and mutual TLS between the planes, with real processes: one control plane on PostgreSQL
//! serving its gRPC listener with a server certificate and requiring client certificates, data
//! planes with and without a valid client certificate, the Bedrock double. Certificates are made
//! here with rcgen: a CA, a server certificate for 127.0.0.1/localhost, a client certificate
//! signed by the CA, and a client certificate from another CA.
//!
//! With mutual TLS a data plane gets its config, serves requests and its usage rows arrive. A data
//! plane without a client certificate, with one from another CA, speaking plaintext to the TLS
//! listener, or trusting only the system's roots never becomes ready, and the control plane logs
//! each refused handshake. Bad TLS files stop either process at start with an error naming them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use sqlx::Connection;
use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig};
use tollgate_tests::harness::{TollgateOptions, TollgateProcess, free_port};
use tollgate_tests::postgres::TestDatabase;

const AKID: &str = "AKIDMTLSDEPLOYMENT";
const SECRET: &str = "mtlsSecret/K7MDENG+bPxRfiCYEXAMPLEKEY";
const ADMIN_TOKEN: &str = "admin-token-for-the-mtls-e2e-test";
const JOIN_TOKEN: &str = "join-token-for-the-mtls-e2e-test";

/// The PEM files of the test's PKI.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_client_cert: PathBuf,
    other_client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate for `names` signed by `issuer`, and its key (PEM).
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let main = ca("Tollgate e2e CA");
    let other = ca("Another CA");
    let (server_cert, server_key) = leaf(
        &main,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(&main, &["data-plane"], ExtendedKeyUsagePurpose::ClientAuth);
    let (other_cert, other_key) = leaf(&other, &["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: write("ca.pem", &main.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
        other_client_cert: write("other-client.pem", &other_cert),
        other_client_key: write("other-client-key.pem", &other_key),
        dir,
    }
}

/// A process's log without terminal colour codes.
fn log(process: &TollgateProcess) -> String {
    let raw = process.stderr();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn secret_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([9u8; 32])
}

fn control_plane_options(
    admin: &str,
    grpc: &str,
    database_url: &str,
    tls_args: Vec<String>,
) -> TollgateOptions {
    let mut args = vec![
        "control-plane".into(),
        "--listen".into(),
        admin.into(),
        "--grpc-listen".into(),
        grpc.into(),
    ];
    args.extend(tls_args);
    TollgateOptions {
        args,
        envs: vec![
            ("TOLLGATE_DATABASE_URL".into(), database_url.into()),
            ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("TOLLGATE_SECRET_KEY".into(), secret_key()),
        ],
        health_path: "/openapi.json".into(),
        ..TollgateOptions::default()
    }
}

/// A data plane connecting to `endpoint` with `extra` arguments; `health_path` is `/ready` for
/// one expected to get its config, `/health` for one expected not to.
fn data_plane_options(endpoint: &str, extra: Vec<String>, health_path: &str) -> TollgateOptions {
    let mut args = vec![
        "data-plane".into(),
        "--control-plane".into(),
        endpoint.into(),
    ];
    args.extend(extra);
    TollgateOptions {
        args,
        envs: vec![
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("AWS_ACCESS_KEY_ID".into(), AKID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        ],
        health_path: health_path.into(),
        ..TollgateOptions::default()
    }
}

async fn admin(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("http://{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin call");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_and_reports_and_refuses_data_planes_without_a_valid_certificate() {
    let pki = pki();
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(AKID, SECRET)).expect("double");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let db = TestDatabase::create("tollgate_mtls").await;
    let cp_admin = format!("127.0.0.1:{}", free_port().expect("port"));
    let cp_grpc = format!("127.0.0.1:{}", free_port().expect("port"));
    let cp = TollgateProcess::spawn_with(control_plane_options(
        &cp_admin,
        &cp_grpc,
        &db.url,
        vec![
            "--grpc-tls-cert".into(),
            path(&pki.server_cert),
            "--grpc-tls-key".into(),
            path(&pki.server_key),
            "--grpc-client-ca".into(),
            path(&pki.ca),
        ],
    ))
    .await
    .expect("control plane starts with mutual TLS");
    assert!(log(&cp).contains("grpc_tls=\"mutual\""), "{}", log(&cp));

    let (s, b) = admin(
        &http,
        &cp_admin,
        reqwest::Method::POST,
        "/api/providers",
        Some(json!({"provider": "bedrock", "network_config": {"base_url": double.base_url()}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = admin(
        &http,
        &cp_admin,
        reqwest::Method::POST,
        "/api/providers/bedrock/keys",
        Some(json!({
        "name": "bedrock-key", "models": ["*"], "weight": 1.0,
        "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
        "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                               "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = admin(
        &http,
        &cp_admin,
        reqwest::Method::POST,
        "/api/virtual-keys",
        Some(json!({"name": "team", "provider": "bedrock"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let vk = b["value"].as_str().expect("vk").to_owned();

    let https = format!("https://{cp_grpc}");
    let ca = vec!["--control-plane-ca".to_owned(), path(&pki.ca)];
    let client_cert = vec![
        "--tls-cert".to_owned(),
        path(&pki.client_cert),
        "--tls-key".to_owned(),
        path(&pki.client_key),
    ];

    // Two data planes with the CA's client certificate: one by IP (the server certificate names
    // 127.0.0.1), one verifying the name `localhost` instead (the server-name override). Both
    // become ready, which means they got their config over mutual TLS.
    let dp1 = TollgateProcess::spawn_with(data_plane_options(
        &https,
        [ca.clone(), client_cert.clone()].concat(),
        "/ready",
    ))
    .await
    .expect("data plane with a valid client certificate gets its config");
    let mut dp2_options = data_plane_options(
        &https,
        [
            ca.clone(),
            vec!["--control-plane-server-name".into(), "localhost".into()],
        ]
        .concat(),
        "/ready",
    );
    // The client certificate can come from the environment too.
    dp2_options.envs.extend([
        ("TOLLGATE_TLS_CERT".into(), path(&pki.client_cert)),
        ("TOLLGATE_TLS_KEY".into(), path(&pki.client_key)),
    ]);
    let dp2 = TollgateProcess::spawn_with(dp2_options)
        .await
        .expect("data plane with a server-name override gets its config");
    for dp in [&dp1, &dp2] {
        assert!(
            log(dp).contains("control_plane_tls=\"mutual\""),
            "{}",
            log(dp)
        );
    }

    let mut sent = 0u64;
    for dp in [&dp1, &dp2] {
        for _ in 0..5 {
            let resp = http
                .post(dp.url("/anthropic/v1/messages"))
                .header("x-api-key", &vk)
                .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 32,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("inference call");
            sent += 1;
            assert_eq!(resp.status(), 200, "{}", dp.output());
        }
    }

    // The data planes that must be turned away, started together.
    let refused_cases: Vec<(&str, TollgateOptions)> = vec![
        (
            "no client certificate",
            data_plane_options(&https, ca.clone(), "/health"),
        ),
        (
            "client certificate from another CA",
            data_plane_options(
                &https,
                [
                    ca.clone(),
                    vec![
                        "--tls-cert".into(),
                        path(&pki.other_client_cert),
                        "--tls-key".into(),
                        path(&pki.other_client_key),
                    ],
                ]
                .concat(),
                "/health",
            ),
        ),
        (
            "plaintext http to the TLS listener",
            data_plane_options(&format!("http://{cp_grpc}"), Vec::new(), "/health"),
        ),
        (
            "https without the private CA",
            data_plane_options(&https, client_cert.clone(), "/health"),
        ),
    ];
    let mut refused = Vec::new();
    for (what, options) in refused_cases {
        let dp = TollgateProcess::spawn_with(options)
            .await
            .unwrap_or_else(|e| panic!("{what}: the data plane process starts: {e:#}"));
        refused.push((what, dp));
    }
    // Each keeps retrying with backoff and never gets a config.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        for (what, dp) in &refused {
            let status = http
                .get(dp.url("/ready"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            assert_eq!(
                status,
                503,
                "{what}: must not become ready\n{}",
                dp.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (what, dp) in &refused {
        let log = log(dp);
        assert!(
            log.contains("config stream from the control plane unavailable"),
            "{what}: the failure is logged\n{log}"
        );
        assert!(log.contains("reconnecting"), "{what}: and retried\n{log}");
        assert!(!log.contains(JOIN_TOKEN), "{what}: the join token leaked");
    }
    let log_of = |what: &str| {
        refused
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, dp)| log(dp))
            .unwrap_or_default()
    };
    // Each data plane's log says what is wrong and what to set.
    for (what, expected) in [
        ("no client certificate", "set --tls-cert and --tls-key"),
        ("client certificate from another CA", "--grpc-client-ca"),
        (
            "plaintext http to the TLS listener",
            "use an https:// endpoint",
        ),
        ("https without the private CA", "--control-plane-ca"),
    ] {
        let log = log_of(what);
        assert!(
            log.contains(expected),
            "{what}: expected {expected:?} in\n{log}"
        );
    }
    let no_ca = log_of("https without the private CA");
    assert!(
        no_ca.contains("UnknownIssuer") || no_ca.contains("native certs"),
        "{no_ca}"
    );

    // The control plane logs every refused handshake, with the reason.
    let cp_log = log(&cp);
    let refusals: Vec<&str> = cp_log
        .lines()
        .filter(|l| l.contains("refused a gRPC connection"))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("no certificates") && l.contains("presented no client certificate")),
        "a data plane without a client certificate is refused\n{cp_log}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("UnknownIssuer")),
        "a client certificate from another CA is refused\n{cp_log}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("InvalidContentType") || l.contains("corrupt message")),
        "plaintext to the TLS listener is refused\n{cp_log}"
    );
    assert!(!cp_log.contains(JOIN_TOKEN), "the join token leaked");

    // Only the two data planes with valid certificates ever reached the control plane.
    let (s, v) = admin(
        &http,
        &cp_admin,
        reqwest::Method::GET,
        "/api/data-planes",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data_planes"].as_array().map(Vec::len), Some(2), "{v}");

    // Every request served over the mutual-TLS link is one usage row.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rows = 0i64;
    while Instant::now() < deadline {
        let r: (i64,) = sqlx::query_as("SELECT count(DISTINCT request_id) FROM usage_records")
            .fetch_one(&mut conn)
            .await
            .expect("count usage");
        rows = r.0;
        if rows as u64 >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rows as u64, sent, "usage rows vs requests sent");
    drop(conn);
    drop(refused);
    drop((dp1, dp2, cp));
}

/// Bad TLS settings stop either process at start, with an error naming the file at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_are_startup_errors() {
    let pki = pki();
    let missing = pki.dir.path().join("missing.pem");
    let port = || format!("127.0.0.1:{}", free_port().expect("port"));
    // The files are checked before the database is touched.
    let unused_db = "postgres://postgres@127.0.0.1:1/none";

    let cp_cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--grpc-tls-cert".into(),
                path(&pki.server_cert),
                "--grpc-tls-key".into(),
                path(&pki.client_key),
            ],
            "do not belong together",
        ),
        (
            vec![
                "--grpc-tls-cert".into(),
                path(&missing),
                "--grpc-tls-key".into(),
                path(&pki.server_key),
            ],
            "cannot read the gRPC TLS certificate file",
        ),
        (
            vec![
                "--grpc-tls-cert".into(),
                path(&pki.server_cert),
                "--grpc-tls-key".into(),
                path(&pki.server_key),
                "--grpc-client-ca".into(),
                path(&pki.server_key),
            ],
            "gRPC client CA file",
        ),
        (
            vec!["--grpc-tls-cert".into(), path(&pki.server_cert)],
            "--grpc-tls-key",
        ),
    ];
    for (args, expected) in cp_cases {
        let err = TollgateProcess::spawn_with(TollgateOptions {
            startup_timeout: Duration::from_secs(10),
            ..control_plane_options(&port(), &port(), unused_db, args.clone())
        })
        .await
        .expect_err("the control plane must refuse to start");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(expected),
            "{args:?}: expected {expected:?} in\n{msg}"
        );
    }

    let dp_cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            format!("http://{}", port()),
            vec!["--control-plane-ca".into(), path(&pki.ca)],
            "use https://",
        ),
        (
            format!("https://{}", port()),
            vec![
                "--tls-cert".into(),
                path(&pki.client_cert),
                "--tls-key".into(),
                path(&pki.other_client_key),
            ],
            "do not belong together",
        ),
        (
            format!("https://{}", port()),
            vec!["--control-plane-ca".into(), path(&missing)],
            "cannot read the control-plane CA file",
        ),
        (
            format!("https://{}", port()),
            vec!["--tls-cert".into(), path(&pki.client_cert)],
            "--tls-key",
        ),
    ];
    for (endpoint, args, expected) in dp_cases {
        let err = TollgateProcess::spawn_with(TollgateOptions {
            startup_timeout: Duration::from_secs(10),
            ..data_plane_options(&endpoint, args.clone(), "/health")
        })
        .await
        .expect_err("the data plane must refuse to start");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(expected),
            "{args:?}: expected {expected:?} in\n{msg}"
        );
    }
}

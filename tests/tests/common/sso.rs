//! The identity provider of the single sign-on tests: oidc-provider 9 from npm running
//! `tests/clients/idp.mjs` (`TOLLGATE_TEST_NODE_IDP`), and a gateway whose SSO flags point at it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness::free_port;

use super::{Setup, required_env, setup_with};

pub const CLIENT_ID: &str = "gateway";
pub const CLIENT_SECRET: &str = "idp-client-secret-for-e2e";

/// The test accounts of the identity provider: login → claims.
pub fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice A",
                  "groups": ["eng", "eng-leads"]},
        "bob": {"email": "bob@example.com", "email_verified": true, "groups": ["eng"]},
        "carol": {"email": "carol@example.com", "email_verified": true, "groups": []},
        "dave": {"email": "dave@example.com", "email_verified": true, "groups": ["eng"]},
        "erin": {"email": "erin@example.com", "email_verified": true, "groups": ["eng"]},
        "vera": {"email": "vera@example.com", "email_verified": true, "groups": ["auditors"]},
        "adam": {"email": "adam@example.com", "email_verified": true,
                 "groups": ["gateway-admins"]},
    })
}

/// oidc-provider running `idp.mjs`; killed on drop.
pub struct Idp {
    child: Child,
    pub issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    pub async fn start(public_url: &str) -> Idp {
        let script = required_env("TOLLGATE_TEST_NODE_IDP");
        let node = std::env::var("TOLLGATE_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
        let port = free_port().expect("port");
        let child = Command::new(node)
            .arg(&script)
            .env("IDP_PORT", port.to_string())
            .env("IDP_CLIENT_ID", CLIENT_ID)
            .env("IDP_CLIENT_SECRET", CLIENT_SECRET)
            .env("IDP_REDIRECT_URIS", format!("{public_url}/auth/callback"))
            .env(
                "IDP_POST_LOGOUT_URIS",
                format!("{public_url}/auth/logged-out"),
            )
            .env("IDP_ACCOUNTS", accounts().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the identity provider (node idp.mjs)");
        let idp = Idp {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let discovery = format!("{}/.well-known/openid-configuration", idp.issuer);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&discovery).send().await
                && r.status() == 200
            {
                return idp;
            }
            assert!(
                Instant::now() < deadline,
                "the identity provider did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A gateway with SSO by flags, the identity provider, and the Bedrock double.
pub struct Sso {
    pub s: Setup,
    pub idp: Idp,
    pub public: String,
}

pub async fn sso() -> Sso {
    let port = free_port().expect("port");
    let public = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&public).await;
    let listen = format!("127.0.0.1:{port}");
    let s = setup_with(&[
        "--listen",
        &listen,
        "--oidc-issuer",
        &idp.issuer,
        "--oidc-client-id",
        CLIENT_ID,
        "--oidc-client-secret",
        CLIENT_SECRET,
        "--oidc-scopes",
        "openid email profile groups",
        "--public-url",
        &public,
    ])
    .await;
    Sso { s, idp, public }
}

//! End to end: single sign-on against a real OpenID Connect provider (oidc-provider 9 from npm,
//! `tests/clients/idp.mjs`), the real `tollgate` binary (all-in-one, configured by the
//! `--oidc-*` flags) and the strict Bedrock double behind it. The browser is played headlessly
//! by a reqwest client with a cookie store that follows redirects itself and fills in the
//! provider's login and consent forms.
//!
//! `scripts/test.sh` installs oidc-provider and sets `TOLLGATE_TEST_NODE_IDP` (the path of
//! `idp.mjs`); `TOLLGATE_TEST_NODE` may name the node binary (default `node` on the PATH).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sso::{CLIENT_ID, CLIENT_SECRET, Idp, Sso, sso};
use common::{Setup, admin, message, wait_for_config};
use serde_json::{Value, json};
use tollgate_tests::harness::{assert_not_in_output, free_port, tollgate_binary};

/// A page the browser ended on.
#[derive(Debug)]
struct Page {
    url: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

enum Walk {
    /// The walk reached a URL the caller wanted to see before it is fetched.
    Stopped(String),
    Done(Page),
}

impl Walk {
    fn page(self) -> Page {
        match self {
            Walk::Done(p) => p,
            Walk::Stopped(u) => panic!("stopped at {u}"),
        }
    }
    fn stopped(self) -> String {
        match self {
            Walk::Stopped(u) => u,
            Walk::Done(p) => panic!("expected to stop, ended on {} ({})", p.url, p.status),
        }
    }
}

/// A headless browser: a cookie store, redirects followed here (so a test can stop at or
/// change any of them), and the identity provider's login and consent forms filled in as
/// `login`.
struct Browser {
    http: reqwest::Client,
    login: String,
    idp: String,
}

impl Browser {
    fn new(login: &str, idp: &Idp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            login: login.to_owned(),
            idp: idp.issuer.clone(),
        }
    }

    async fn get(&self, url: &str) -> Page {
        self.walk(self.http.get(url), url, |_| false).await.page()
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        self.walk(self.http.post(url).form(fields), url, |_| false)
            .await
            .page()
    }

    /// Sends `req` (to `url`) and follows redirects and the provider's forms until a page
    /// that is neither, or until `stop` says so of the next URL.
    async fn walk(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        stop: impl Fn(&str) -> bool,
    ) -> Walk {
        let mut url = url.to_owned();
        let mut resp = req.send().await.expect("request");
        for _ in 0..30 {
            if resp.status().is_redirection() {
                let location = resp.headers()["location"].to_str().expect("location");
                let next = reqwest::Url::parse(&url)
                    .and_then(|u| u.join(location))
                    .expect("redirect URL")
                    .to_string();
                if stop(&next) {
                    return Walk::Stopped(next);
                }
                url = next;
                resp = self.http.get(&url).send().await.expect("follow");
                continue;
            }
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.unwrap_or_default();
            if url.starts_with(&self.idp) && status == 200 {
                let prompt = if body.contains(r#"name="prompt" value="login""#) {
                    Some("login")
                } else if body.contains(r#"name="prompt" value="consent""#) {
                    Some("consent")
                } else {
                    None
                };
                if let Some(prompt) = prompt {
                    let action = attr_after(&body, "<form", "action").expect("form action");
                    let action = reqwest::Url::parse(&url)
                        .and_then(|u| u.join(&action))
                        .expect("action URL")
                        .to_string();
                    let mut fields = vec![("prompt", prompt.to_owned())];
                    if prompt == "login" {
                        fields.push(("login", self.login.clone()));
                        fields.push(("password", "any".to_owned()));
                    }
                    resp = self
                        .http
                        .post(&action)
                        .form(&fields)
                        .send()
                        .await
                        .expect("form");
                    url = action;
                    continue;
                }
            }
            return Walk::Done(Page {
                url,
                status,
                headers,
                body,
            });
        }
        panic!("too many redirects from {url}");
    }
}

/// The value of attribute `attr` of the first element after `marker` (HTML-unescaped).
fn attr_after(body: &str, marker: &str, attr: &str) -> Option<String> {
    let at = body.find(marker)?;
    let rest = &body[at..];
    let key = format!("{attr}=\"");
    let start = rest.find(&key)? + key.len();
    let end = rest[start..].find('"')? + start;
    Some(unescape(&rest[start..end]))
}

/// The value of the hidden input `name`.
fn hidden(body: &str, name: &str) -> Option<String> {
    attr_after(body, &format!("name=\"{name}\""), "value")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The personal key shown on `/auth/me` (inside the `secret` section), if any.
fn shown_key(body: &str) -> Option<String> {
    let section = &body[body.find("class=\"secret\"")?..];
    let start = section.find("<pre>sk-tg-")? + "<pre>".len();
    let end = section[start..].find("</pre>")? + start;
    Some(section[start..end].to_owned())
}

async fn virtual_keys(s: &Setup) -> Vec<Value> {
    let (st, b) = admin(&s.http, &s.gw, "GET", "/api/virtual-keys", Value::Null).await;
    assert_eq!(st, 200, "{b}");
    b.get("virtual_keys")
        .cloned()
        .unwrap_or(b)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn personal_keys(s: &Setup, user_name: &str) -> Vec<Value> {
    let name = format!("personal:{user_name}");
    virtual_keys(s)
        .await
        .into_iter()
        .filter(|k| k["name"] == name.as_str())
        .collect()
}

/// Creates team `eng` (member keys get `max_concurrent: 7`) and maps group `eng` to it and
/// `eng-leads` to team-admin. Returns the team id.
async fn map_groups(s: &Setup) -> String {
    let (st, team) = admin(
        &s.http,
        &s.gw,
        "POST",
        "/api/teams",
        json!({"name": "eng", "member_key_limits": {"max_concurrent": 7}}),
    )
    .await;
    assert_eq!(st, 201, "{team}");
    let team_id = team["id"].as_str().expect("team id").to_owned();
    // An unknown team is refused, naming the field.
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/group-mappings",
        json!({"teams": [{"group": "eng", "team_id": "00000000-0000-0000-0000-000000000001"}]}),
    )
    .await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(b["error"]["field"], "teams[0].team_id");
    let mappings = json!({
        "teams": [{"group": "eng", "team_id": team_id}],
        "roles": [{"group": "eng-leads", "role": "team-admin"}],
        "default_role": "member",
    });
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/group-mappings",
        mappings.clone(),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = admin(&s.http, &s.gw, "GET", "/api/group-mappings", Value::Null).await;
    assert_eq!((st, b), (200, mappings));
    team_id
}

#[tokio::test]
async fn sign_in_provisions_one_user_and_key_shows_it_once_and_signs_out() {
    let Sso { s, idp, public } = sso().await;
    let team_id = map_groups(&s).await;

    // The flags configure SSO: the API shows it (secret redacted) and refuses changes.
    let (st, b) = admin(&s.http, &s.gw, "GET", "/api/sso", Value::Null).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["source"], "flags");
    assert_eq!(b["client_secret"], "<redacted>");
    assert_eq!(b["redirect_uri"], format!("{public}/auth/callback"));
    assert_eq!(b["scopes"], json!(["openid", "email", "profile", "groups"]));
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/sso",
        json!({"issuer": idp.issuer, "client_id": "x", "public_url": public}),
    )
    .await;
    assert_eq!(st, 409, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("--oidc-issuer"),
        "{b}"
    );

    // Without a session, the key page sends the browser to the login.
    let alice = Browser::new("alice", &idp);
    let to_login = alice
        .walk(
            alice.http.get(format!("{public}/auth/me")),
            &format!("{public}/auth/me"),
            |u| u.contains("/auth/login"),
        )
        .await
        .stopped();
    assert_eq!(
        to_login,
        format!("{public}/auth/login?return_to=%2Fauth%2Fme")
    );

    // The flow up to the callback, then the callback by hand to see its cookies.
    let start = format!("{public}/auth/login?return_to=/auth/me");
    let callback = alice
        .walk(alice.http.get(&start), &start, |u| {
            u.contains("/auth/callback")
        })
        .await
        .stopped();
    assert!(
        callback.contains("code=") && callback.contains("state="),
        "{callback}"
    );
    let resp = alice.http.get(&callback).send().await.expect("callback");
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/auth/me");
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("tollgate_session="))
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "http public URL: {session}");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("tollgate_login_") && c.contains("Max-Age=0")),
        "the login cookie is cleared: {cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("tollgate_reveal=")),
        "{cookies:?}"
    );

    // The page shows the key once, with the Claude Code settings.
    let me = alice.get(&format!("{public}/auth/me")).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.headers["cache-control"], "no-store");
    assert!(me.body.contains("alice@example.com"), "{}", me.body);
    assert!(me.body.contains("<td>Team</td><td>eng</td>"), "{}", me.body);
    assert!(
        me.body.contains("<td>Role</td><td>team-admin</td>"),
        "{}",
        me.body
    );
    let key = shown_key(&me.body).unwrap_or_else(|| panic!("no key shown: {}", me.body));
    assert!(me.body.contains(&format!(
        "&quot;apiKeyHelper&quot;: &quot;tollgate login --print-key --gateway {public}&quot;"
    )));
    assert!(me.body.contains("ANTHROPIC_AUTH_TOKEN"));
    let again = alice.get(&format!("{public}/auth/me")).await;
    assert_eq!(again.status, 200);
    assert!(!again.body.contains(&key), "shown only once");
    assert!(again.body.contains(&key[..10]), "the prefix stays");

    // One user, one key, in the mapped team with the team's member limits.
    let keys = personal_keys(&s, "alice@example.com").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["team_id"], team_id.as_str());
    assert_eq!(keys[0]["max_concurrent"], 7);
    assert_eq!(keys[0]["is_active"], true);

    // The key works on the inference routes.
    wait_for_config(&s.http, &s.gw, &key).await;
    let resp = s
        .http
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&message(
            "bedrock/global.anthropic.claude-sonnet-4-6",
            "hi",
            false,
        ))
        .send()
        .await
        .expect("inference");
    assert_eq!(resp.status(), 200);

    // A second sign-in (another browser) finds the user: no second key, no key shown.
    let alice2 = Browser::new("alice", &idp);
    let me2 = alice2.get(&start).await;
    assert_eq!(me2.status, 200, "{}", me2.body);
    assert!(shown_key(&me2.body).is_none(), "{}", me2.body);
    assert_eq!(personal_keys(&s, "alice@example.com").await.len(), 1);

    // Five first sign-ins of the same new user at once: one user, one key, shown once.
    let mut flows = Vec::new();
    for _ in 0..5 {
        let b = Browser::new("bob", &idp);
        let start = start.clone();
        flows.push(tokio::spawn(async move { b.get(&start).await }));
    }
    let mut shown = 0;
    for f in flows {
        let page = f.await.expect("join");
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("bob@example.com"), "{}", page.body);
        shown += usize::from(shown_key(&page.body).is_some());
    }
    assert_eq!(
        shown, 1,
        "exactly the sign-in that created the key shows it"
    );
    let bob_keys = personal_keys(&s, "bob@example.com").await;
    assert_eq!(bob_keys.len(), 1, "{bob_keys:?}");
    assert_eq!(bob_keys[0]["team_id"], team_id.as_str());

    // Rotation: CSRF required; the new value is shown once; the old one stops working.
    let no_csrf = alice2
        .post_form(&format!("{public}/auth/me/rotate-key"), &[])
        .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let csrf = hidden(&me2.body, "csrf_token").expect("csrf token on the page");
    let rotated = alice2
        .post_form(
            &format!("{public}/auth/me/rotate-key"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_key = shown_key(&rotated.body).expect("the rotated key is shown");
    assert_ne!(new_key, key);
    wait_for_config(&s.http, &s.gw, &new_key).await;
    let old = s
        .http
        .get(s.gw.url("/v1/models"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("models");
    assert_eq!(old.status(), 401);

    // Logout: CSRF required; ends the session and goes to the provider's end-session page.
    let csrf1 = hidden(&again.body, "csrf_token").expect("csrf");
    let refused = alice
        .post_form(&format!("{public}/auth/logout"), &[("csrf_token", "wrong")])
        .await;
    assert_eq!(refused.status, 403);
    let end = alice
        .walk(
            alice
                .http
                .post(format!("{public}/auth/logout"))
                .form(&[("csrf_token", csrf1.as_str())]),
            &format!("{public}/auth/logout"),
            |u| u.starts_with(&idp.issuer),
        )
        .await
        .stopped();
    assert!(
        end.starts_with(&format!("{}/session/end?", idp.issuer)),
        "{end}"
    );
    assert!(end.contains("client_id=gateway"), "{end}");
    let after = alice
        .walk(
            alice.http.get(format!("{public}/auth/me")),
            &format!("{public}/auth/me"),
            |u| u.contains("/auth/login"),
        )
        .await;
    assert!(matches!(after, Walk::Stopped(_)), "the session is over");

    // The audit log has the sign-ins; no secret reached the gateway's output.
    let (st, audit) = admin(
        &s.http,
        &s.gw,
        "GET",
        "/api/audit-logs?limit=1000",
        Value::Null,
    )
    .await;
    assert_eq!(st, 200);
    let logins = audit["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.login")
        .count();
    assert_eq!(logins, 2 + 5, "{audit}");
    for secret in [key.as_str(), new_key.as_str(), CLIENT_SECRET, csrf.as_str()] {
        assert_not_in_output(&s.gw, secret).expect("secret in output");
    }
}

#[tokio::test]
async fn tampered_state_or_nonce_and_inactive_users_are_refused() {
    let Sso { s, idp, public } = sso().await;
    map_groups(&s).await;
    let start = format!("{public}/auth/login");

    // A state that is not the one the login cookie holds.
    let b = Browser::new("carol", &idp);
    let callback = b
        .walk(b.http.get(&start), &start, |u| u.contains("/auth/callback"))
        .await
        .stopped();
    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{}x", &v[..v.len() - 1])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let page = b.get(url.as_str()).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("Sign-in failed"), "{}", page.body);
    let me = b
        .walk(
            b.http.get(format!("{public}/auth/me")),
            &format!("{public}/auth/me"),
            |u| u.contains("/auth/login"),
        )
        .await;
    assert!(matches!(me, Walk::Stopped(_)), "no session");

    // A nonce changed on the way to the provider: the ID token carries the wrong one.
    let b = Browser::new("carol", &idp);
    let authorize = b
        .walk(b.http.get(&start), &start, |u| u.starts_with(&idp.issuer))
        .await
        .stopped();
    let mut url = reqwest::Url::parse(&authorize).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "attacker-nonce".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let page = b.get(url.as_str()).await;
    assert!(page.url.starts_with(&public), "{}", page.url);
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("did not verify"), "{}", page.body);
    assert!(personal_keys(&s, "carol@example.com").await.is_empty());

    // A return_to off this origin is refused before anything else.
    let page = b
        .get(&format!("{public}/auth/login?return_to=//evil.example/"))
        .await;
    assert_eq!(page.status, 400);

    // An inactive user is refused with a clear page, and gets no session.
    let dave = Browser::new("dave", &idp);
    assert_eq!(dave.get(&start).await.status, 200);
    deactivate(&s, "dave@example.com").await;
    let dave = Browser::new("dave", &idp);
    let page = dave.get(&start).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("deactivated"), "{}", page.body);
    let me = dave
        .walk(
            dave.http.get(format!("{public}/auth/me")),
            &format!("{public}/auth/me"),
            |u| u.contains("/auth/login"),
        )
        .await;
    assert!(matches!(me, Walk::Stopped(_)), "no session");
    assert!(
        s.gw.stderr().contains("user.login_failed"),
        "failed sign-ins are logged"
    );
    // ... and audited (written in the background: wait for them), with their reasons.
    let mut reasons = Vec::new();
    for _ in 0..50 {
        let (st, audit) = admin(
            &s.http,
            &s.gw,
            "GET",
            "/api/audit-logs?action=user.login_failed",
            Value::Null,
        )
        .await;
        assert_eq!(st, 200, "{audit}");
        reasons = audit["audit_logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["details"]["result"], "failure", "{e}");
                e["details"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if reasons.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reasons.len() >= 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("inactive")),
        "{reasons:?}"
    );
}

/// Deactivates a user through the admin API (as an admin, or SCIM, would).
async fn deactivate(s: &Setup, user_name: &str) {
    let (st, users) = admin(&s.http, &s.gw, "GET", "/api/users", Value::Null).await;
    assert_eq!(st, 200, "{users}");
    let id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_name"] == user_name)
        .and_then(|u| u["id"].as_str())
        .expect("the user")
        .to_owned();
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        &format!("/api/users/{id}"),
        json!({"active": false}),
    )
    .await;
    assert_eq!((st, &b["active"]), (200, &json!(false)), "{b}");
}

#[tokio::test]
async fn tollgate_login_gets_the_key_through_the_browser_then_reuses_it() {
    let Sso { s, idp, public } = sso().await;
    map_groups(&s).await;
    let config = tempfile::tempdir().expect("config dir");
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(tollgate_binary());
        cmd.args(["login", "--no-browser", "--print-key", "--gateway", &public])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", config.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("run tollgate login")
    };

    let mut child = run(&[]);
    // The CLI prints the approval URL on stderr; the test plays the person in the browser.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stderr_text = String::new();
    let approve_url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no approval URL on stderr: {stderr_text}"));
        stderr_text.push_str(&line);
        stderr_text.push('\n');
        if let Some(at) = line.find("http") {
            let url = line[at..].trim().to_owned();
            if url.contains("/auth/cli/approve?user_code=") {
                break url;
            }
        }
    };
    let erin = Browser::new("erin", &idp);
    let page = erin.get(&approve_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.url.starts_with(&format!("{public}/auth/cli/approve")),
        "{}",
        page.url
    );
    let code = hidden(&page.body, "user_code").expect("user code in the form");
    assert!(approve_url.ends_with(&code), "{approve_url} vs {code}");
    let csrf = hidden(&page.body, "csrf_token").expect("csrf");
    let refused = erin
        .post_form(
            &format!("{public}/auth/cli/approve"),
            &[("user_code", &code), ("decision", "approve")],
        )
        .await;
    assert_eq!(refused.status, 403, "no CSRF token: {}", refused.body);
    let approved = erin
        .post_form(
            &format!("{public}/auth/cli/approve"),
            &[
                ("csrf_token", &csrf),
                ("user_code", &code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(approved.body.contains("Approved"), "{}", approved.body);

    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        stderr_text.push_str(&line);
        stderr_text.push('\n');
    }
    assert!(out.status.success(), "tollgate login failed: {stderr_text}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let key = stdout.trim_end_matches('\n');
    assert!(
        key.starts_with("sk-tg-") && !key.contains('\n'),
        "stdout is the key alone: {stdout:?}"
    );
    assert!(
        stderr_text.contains("signed in as erin@example.com"),
        "{stderr_text}"
    );

    // Stored 0600 under the config dir, named after the gateway.
    let port = reqwest::Url::parse(&public).unwrap().port().unwrap();
    let file = config
        .path()
        .join(format!("tollgate/keys/127.0.0.1_{port}.key"));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // It is erin's personal key, and it works.
    assert_eq!(personal_keys(&s, "erin@example.com").await.len(), 1);
    wait_for_config(&s.http, &s.gw, key).await;

    // A second run prints the stored key without a new sign-in.
    let t = Instant::now();
    let out = tokio::task::spawn_blocking({
        let child = run(&[]);
        move || child.wait_with_output()
    })
    .await
    .expect("join")
    .expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{key}\n"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("to sign in"),
        "no new sign-in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(10));

    // An unknown device code is refused (that a redeemed one is refused: cli_login_store.rs).
    let resp = s
        .http
        .post(s.gw.url("/auth/cli/token"))
        .form(&[("device_code", "not-a-device-code")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "expired_token");

    // Claude Code itself, with the README's settings but `tollgate login` as its apiKeyHelper
    // instead of a key: it gets the stored key from the helper and its session goes through.
    let claude = common::required_env("TOLLGATE_TEST_CLAUDE");
    let helper = format!(
        "XDG_CONFIG_HOME='{}' '{}' login --print-key --gateway {public}",
        config.path().display(),
        tollgate_binary().display()
    );
    let env: Vec<(String, String)> = common::readme_claude_env()
        .into_iter()
        .filter(|(k, _)| k != "ANTHROPIC_AUTH_TOKEN")
        .map(|(k, v)| {
            let v = match k.as_str() {
                "ANTHROPIC_BASE_URL" => s.gw.url("/anthropic"),
                _ => v.as_str().expect("string settings").to_owned(),
            };
            (k, v)
        })
        .collect();
    let settings = json!({"apiKeyHelper": helper}).to_string();
    let work = tempfile::tempdir().expect("work dir");
    let out = common::run_claude(
        &claude,
        work.path(),
        env,
        "say hi",
        &["--settings", &settings],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Hello from the Bedrock double."),
        "claude with apiKeyHelper: {}\nstdout: {stdout}\nstderr: {}\ngateway:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        s.gw.output()
    );
    let used = s.double.requests().iter().any(|r| r.verdict.status == 200);
    assert!(used, "Claude Code's request reached Bedrock");
    assert_not_in_output(&s.gw, key).expect("the key is not logged");
}

/// Roles from the identity provider's groups, enforced on the admin API for browsers signed in
/// through the real provider; then SCIM deactivates a member who signed in, and the gateway
/// refuses the personal key that sign-in gave them.
#[tokio::test]
async fn idp_groups_give_roles_the_admin_api_enforces_and_scim_deactivation_stops_the_key() {
    let Sso { s, idp, public } = sso().await;
    let team_id = map_groups(&s).await;
    let (st, b) = admin(
        &s.http,
        &s.gw,
        "PUT",
        "/api/group-mappings",
        json!({
            "teams": [{"group": "eng", "team_id": team_id}],
            "roles": [{"group": "eng-leads", "role": "team-admin"},
                      {"group": "auditors", "role": "viewer"},
                      {"group": "gateway-admins", "role": "admin"}],
            "allowed_groups": ["eng", "auditors", "gateway-admins"],
        }),
    )
    .await;
    assert_eq!(st, 200, "{b}");

    // Only members of the allowed groups may sign in: carol (no groups) gets no user and no key.
    let carol = Browser::new("carol", &idp);
    let page = carol.get(&format!("{public}/auth/login")).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("not in a group allowed"),
        "{}",
        page.body
    );
    assert!(personal_keys(&s, "carol@example.com").await.is_empty());

    let start = format!("{public}/auth/login?return_to=/auth/me");
    let mut bob_key = None;
    // login, role, may read the configuration, may create a team, may read the audit log
    for (login, role, read, create, audit) in [
        ("adam", "admin", true, true, true),
        ("vera", "viewer", true, false, true),
        ("alice", "team-admin", true, false, false),
        ("bob", "member", false, false, false),
    ] {
        let b = Browser::new(login, &idp);
        let page = b.get(&start).await;
        assert_eq!(page.status, 200, "{login}: {}", page.body);
        if login == "bob" {
            bob_key = shown_key(&page.body);
        }
        let me: Value = b
            .http
            .get(format!("{public}/api/me"))
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("json");
        assert_eq!(me["role"], role, "{login}: {me}");
        assert_eq!(me["credential"], "session");
        let csrf = me["csrf_token"].as_str().expect("csrf token").to_owned();
        let status = |r: reqwest::Response| r.status().as_u16();
        let allowed = |ok: bool| if ok { 200 } else { 403 };
        let r = b.http.get(format!("{public}/api/providers")).send().await;
        assert_eq!(status(r.expect("providers")), allowed(read), "{login}");
        let r = b.http.get(format!("{public}/api/audit-logs")).send().await;
        assert_eq!(status(r.expect("audit")), allowed(audit), "{login}");
        let r = b
            .http
            .post(format!("{public}/api/teams"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": format!("team-of-{login}")}))
            .send()
            .await;
        assert_eq!(
            status(r.expect("team")),
            if create { 201 } else { 403 },
            "{login}"
        );
        // Testing a provider key spends money at the provider: the admin's only (the admin
        // passes the access check and learns the key does not exist).
        let r = b
            .http
            .post(format!(
                "{public}/api/providers/bedrock/keys/00000000-0000-0000-0000-000000000001/test"
            ))
            .header("x-csrf-token", &csrf)
            .send()
            .await;
        assert_eq!(
            status(r.expect("key test")),
            if role == "admin" { 404 } else { 403 },
            "{login}"
        );
        // Without the CSRF token even the admin's browser cannot change anything.
        let r = b
            .http
            .post(format!("{public}/api/teams"))
            .json(&json!({"name": format!("csrf-{login}")}))
            .send()
            .await;
        assert_eq!(status(r.expect("team")), 403, "{login}");
    }

    // Bob's key, from his sign-in, works; SCIM deactivates him; the gateway refuses it.
    let key = bob_key.expect("bob's key was shown at his first sign-in");
    wait_for_config(&s.http, &s.gw, &key).await;
    let infer = || async {
        s.http
            .post(s.gw.url("/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&message(
                "bedrock/global.anthropic.claude-sonnet-4-6",
                "hi",
                false,
            ))
            .send()
            .await
            .expect("inference")
            .status()
            .as_u16()
    };
    assert_eq!(infer().await, 200);
    let (st, b) = admin(&s.http, &s.gw, "POST", "/api/scim/token", Value::Null).await;
    assert_eq!(st, 201, "{b}");
    let scim_token = b["token"].as_str().expect("token").to_owned();
    let users: Value = s
        .http
        .get(s.gw.url("/scim/v2/Users?filter=userName%20eq%20%22bob%40example.com%22"))
        .bearer_auth(&scim_token)
        .send()
        .await
        .expect("scim list")
        .json()
        .await
        .expect("json");
    assert_eq!(users["totalResults"], 1, "{users}");
    let id = users["Resources"][0]["id"].as_str().expect("id").to_owned();
    let resp = s
        .http
        .patch(s.gw.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(&scim_token)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "value": {"active": false}}]})
            .to_string(),
        )
        .send()
        .await
        .expect("scim patch");
    assert_eq!(resp.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while infer().await != 401 {
        assert!(
            Instant::now() < deadline,
            "the key still works after deactivation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // His browser session ended with it.
    let bob = Browser::new("bob", &idp);
    let page = bob.get(&start).await;
    assert_eq!(
        page.status, 403,
        "a deactivated user cannot sign in: {}",
        page.body
    );
}

/// The split deployment: the control-plane role serves the sign-in pages next to `/api` (with
/// the same `--oidc-*` flags), and the personal key a sign-in there creates works on a separate
/// data plane as soon as its config stream delivers it.
#[tokio::test]
async fn split_deployment_signs_in_on_the_control_plane_and_serves_the_key_on_a_data_plane() {
    use tollgate_tests::bedrock_double::{BedrockDouble, BedrockDoubleConfig};
    use tollgate_tests::harness::{TollgateOptions, TollgateProcess};
    const ADMIN: &str = "admin-token-of-the-split-sso-test";
    const JOIN: &str = "join-token-of-the-split-sso-test";
    let double =
        BedrockDouble::start(BedrockDoubleConfig::new().with_key(common::AKID, common::SECRET))
            .expect("double");
    let admin_port = free_port().expect("port");
    let public = format!("http://127.0.0.1:{admin_port}");
    let grpc = format!("127.0.0.1:{}", free_port().expect("port"));
    let idp = Idp::start(&public).await;
    let db = tollgate_tests::postgres::TestDatabase::create("tollgate_sso_split").await;
    let secret_key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    };
    let cp = TollgateProcess::spawn_with(TollgateOptions {
        args: [
            "control-plane",
            "--listen",
            &format!("127.0.0.1:{admin_port}"),
            "--grpc-listen",
            &grpc,
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
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        envs: vec![
            ("TOLLGATE_ADMIN_TOKEN".into(), ADMIN.into()),
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN.into()),
            ("TOLLGATE_DATABASE_URL".into(), db.url.clone()),
            ("TOLLGATE_SECRET_KEY".into(), secret_key),
        ],
        health_path: "/openapi.json".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("control plane starts");
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Value| {
        http.request(method, format!("{public}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let r = call(
        reqwest::Method::POST,
        "/api/providers",
        json!({"provider": "bedrock", "network_config": {"base_url": double.base_url()}}),
    )
    .await
    .expect("provider");
    assert_eq!(r.status(), 201);
    let r = call(
        reqwest::Method::POST,
        "/api/providers/bedrock/keys",
        json!({
        "name": "bedrock-key", "models": ["*"],
        "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
        "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
                               "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}}),
    )
    .await
    .expect("key");
    assert_eq!(r.status(), 201);
    let dp = TollgateProcess::spawn_with(TollgateOptions {
        args: vec![
            "data-plane".into(),
            "--control-plane".into(),
            format!("http://{grpc}"),
        ],
        envs: vec![
            ("TOLLGATE_JOIN_TOKEN".into(), JOIN.into()),
            ("AWS_ACCESS_KEY_ID".into(), common::AKID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), common::SECRET.into()),
        ],
        health_path: "/ready".into(),
        ..TollgateOptions::default()
    })
    .await
    .expect("data plane starts");

    // Sign in on the control plane; the key page shows the new personal key once.
    let b = Browser::new("bob", &idp);
    let page = b
        .get(&format!("{public}/auth/login?return_to=/auth/me"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let key = shown_key(&page.body).expect("the key is shown at the first sign-in");

    // The data plane serves it once the snapshot with it arrives.
    let infer = || async {
        http.post(dp.url("/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&message("claude-sonnet-4-6", "hi", false))
            .send()
            .await
            .expect("inference")
            .status()
            .as_u16()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while infer().await != 200 {
        assert!(
            Instant::now() < deadline,
            "the data plane never accepted the key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_not_in_output(&cp, &key).expect("the key is not logged");
    assert_not_in_output(&dp, &key).expect("the key is not logged");
}

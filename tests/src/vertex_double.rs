//! A loopback double of Google Vertex AI's Anthropic endpoints and of Google's OAuth 2.0 token
//! endpoint, as strict as the real services where the gateway can get them wrong.
//!
//! * `POST /token`: the JWT-bearer grant. The form must hold
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an `assertion` that verifies
//!   with the service account's **public key** (RS256; header `kid` = the key file's
//!   `private_key_id`), whose `iss` is the account's `client_email`, `aud` Google's token URI,
//!   `scope` includes `cloud-platform`, `iat` not in the future and `exp` at most an hour after
//!   it. Otherwise `400 {"error":"invalid_grant",…}` as Google answers. A good assertion gets
//!   `{"access_token":"ya29.double-N","expires_in":…,"token_type":"Bearer"}`; tokens expire.
//! * `POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
//!   and `:streamRawPredict` (and `count-tokens:rawPredict`): `Authorization: Bearer` must hold
//!   an issued, unexpired token (else Google's `401 UNAUTHENTICATED`), the project must be the
//!   configured one (else `403 PERMISSION_DENIED`), the body must carry
//!   `anthropic_version: "vertex-2023-10-16"` and no `model` (count-tokens: a `model`), and
//!   `stream` must match the method. Such a request is then served by an inner
//!   [`AnthropicDouble`] (the model from the path): its validation, scripts (`[double:…]`),
//!   answers and SSE streams, relayed chunk by chunk.
//! * `[double:vertex-quota]` in the prompt: Google's `429 RESOURCE_EXHAUSTED` envelope.
//!
//! Every request is recorded ([`VertexDouble::requests`]); token grants are counted
//! ([`VertexDouble::tokens_issued`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::anthropic_double::{AnthropicDouble, AnthropicDoubleConfig};
use crate::double_http::{header_pairs, lock};
use crate::serve::{Bound, Running};

/// The grant type of a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token URI: the audience a service account's assertion must name.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The `anthropic_version` Vertex requires.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";
/// The key the double uses towards its inner Anthropic double.
const INNER_KEY: &str = "sk-ant-vertex-double-inner";

/// Configuration of a [`VertexDouble`].
#[derive(Debug, Clone)]
pub struct VertexDoubleConfig {
    /// The project requests must name.
    pub project: String,
    /// The service account's public key (PEM, SubjectPublicKeyInfo).
    pub public_key_pem: String,
    /// The key file's `private_key_id` (the assertion's `kid`).
    pub key_id: String,
    /// The service account's `client_email`.
    pub client_email: String,
    /// The audience assertions must name.
    pub audience: String,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
}

impl VertexDoubleConfig {
    /// The double for `testdata/vertex/service-account.json` (its public key and ids), project
    /// `tollgate-test`.
    pub fn for_test_account() -> VertexDoubleConfig {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vertex");
        let key_file: Value = serde_json::from_slice(
            &std::fs::read(dir.join("service-account.json")).expect("the test key file"),
        )
        .expect("JSON");
        VertexDoubleConfig {
            project: "tollgate-test".into(),
            public_key_pem: std::fs::read_to_string(dir.join("public-key.pem"))
                .expect("the test public key"),
            key_id: key_file["private_key_id"]
                .as_str()
                .unwrap_or_default()
                .into(),
            client_email: key_file["client_email"].as_str().unwrap_or_default().into(),
            audience: GOOGLE_TOKEN_URI.into(),
            token_lifetime: Duration::from_secs(3599),
        }
    }
}

/// The test service account's key file (`testdata/vertex/<name>`), as text.
pub fn test_key_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/vertex")
        .join(name);
    std::fs::read_to_string(path).expect("a test key file")
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct VertexRequest {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// The status the double answered.
    pub status: u16,
}

impl VertexRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

struct Shared {
    config: VertexDoubleConfig,
    key: jsonwebtoken::DecodingKey,
    /// Issued token -> expiry.
    tokens: Mutex<HashMap<String, Instant>>,
    issued: AtomicU64,
    requests: Mutex<Vec<VertexRequest>>,
    inner: AnthropicDouble,
    client: reqwest::Client,
}

/// A running double. Dropping it stops the server.
pub struct VertexDouble {
    server: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VertexDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug(f, "VertexDouble")
    }
}

impl VertexDouble {
    /// Starts the double on `127.0.0.1:0`.
    pub fn start(config: VertexDoubleConfig) -> std::io::Result<VertexDouble> {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes())
            .map_err(std::io::Error::other)?;
        let inner = AnthropicDouble::start(AnthropicDoubleConfig::new().with_api_key(INNER_KEY))?;
        let shared = Arc::new(Shared {
            config,
            key,
            tokens: Mutex::default(),
            issued: AtomicU64::new(0),
            requests: Mutex::default(),
            inner,
            client: reqwest::Client::new(),
        });
        let server = Bound::loopback()?.serve("vertex-double", 2, handle, Arc::clone(&shared))?;
        Ok(VertexDouble { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// The API root to configure as the provider's `base_url` (`…/v1`).
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// The token endpoint (`…/token`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// Every request so far (token grants included), oldest first.
    pub fn requests(&self) -> Vec<VertexRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The predict requests so far (not the token grants).
    pub fn predictions(&self) -> Vec<VertexRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != "/token")
            .collect()
    }

    /// How many access tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.issued.load(Ordering::Relaxed)
    }

    /// Revokes every issued token (Vertex then answers 401 to them).
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// The inner Anthropic double that serves the models.
    pub fn anthropic(&self) -> &AnthropicDouble {
        &self.shared.inner
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 32 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let response = if parts.method != http::Method::POST {
        google_error(
            404,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
        )
    } else if path == "/token" {
        token(&shared, &parts.headers, &body)
    } else {
        predict(&shared, &path, &parts.headers, &body).await
    };
    lock(&shared.requests).push(VertexRequest {
        path,
        headers: header_pairs(&parts.headers).collect(),
        body,
        status: response.status().as_u16(),
    });
    response
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// Google's error envelope.
fn google_error(code: u16, status: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

fn invalid_grant(description: &str) -> Response {
    json_response(
        400,
        &json!({"error": "invalid_grant", "error_description": description}),
    )
}

#[derive(Deserialize)]
/// The claims checked here; `iss` and `aud` are checked by `jsonwebtoken`'s validation.
struct Claims {
    scope: String,
    iat: u64,
    exp: u64,
}

fn token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let form_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return json_response(
            400,
            &json!({"error": "invalid_request", "error_description": "Bad Request"}),
        );
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return json_response(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return invalid_grant("Missing required parameter: assertion");
    };
    let config = &shared.config;
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
        );
    };
    if header.alg != jsonwebtoken::Algorithm::RS256
        || header.kid.as_deref() != Some(config.key_id.as_str())
    {
        return invalid_grant("Invalid JWT Signature.");
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[config.audience.as_str()]);
    validation.set_issuer(&[config.client_email.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &shared.key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid_grant("Invalid JWT Signature.")
                }
                _ => invalid_grant(&format!("Invalid JWT: {e}")),
            };
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if claims.iat > now + 60 || claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if !claims
        .scope
        .split(' ')
        .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
    {
        return invalid_grant("Invalid OAuth scope or ID token audience provided.");
    }
    let n = shared.issued.fetch_add(1, Ordering::Relaxed) + 1;
    let token = format!("ya29.double-{n}");
    lock(&shared.tokens).insert(token.clone(), Instant::now() + config.token_lifetime);
    json_response(
        200,
        &json!({
            "access_token": token,
            "expires_in": config.token_lifetime.as_secs(),
            "token_type": "Bearer",
        }),
    )
}

/// `/v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:{method}`, split.
fn split_path(path: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = path.strip_prefix("/v1/projects/")?;
    let (project, rest) = rest.split_once("/locations/")?;
    let (region, rest) = rest.split_once("/publishers/anthropic/models/")?;
    let (model, method) = rest.rsplit_once(':')?;
    if project.contains('/') || region.contains('/') || model.contains('/') {
        return None;
    }
    Some((project, region, model, method))
}

/// An Anthropic-shaped 400, as Vertex sends for bodies its Anthropic endpoint refuses.
fn anthropic_invalid(message: &str) -> Response {
    json_response(
        400,
        &json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
    )
}

async fn predict(shared: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = bearer.is_some_and(|t| {
        lock(&shared.tokens)
            .get(t)
            .is_some_and(|expiry| Instant::now() < *expiry)
    });
    if !valid {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
    }
    let Some((project, _region, model, method)) = split_path(path) else {
        return google_error(
            404,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
        );
    };
    if project != shared.config.project {
        return google_error(
            403,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/{project}' (or it may not exist)."
            ),
        );
    }
    let stream = match method {
        "rawPredict" => false,
        "streamRawPredict" => true,
        _ => {
            return google_error(
                404,
                "NOT_FOUND",
                "The requested URL was not found on this server.",
            );
        }
    };
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return anthropic_invalid("There was an error parsing the body of your request.");
    };
    match fields.remove("anthropic_version") {
        Some(Value::String(v)) if v == VERTEX_VERSION => {}
        Some(_) => return anthropic_invalid("anthropic_version: invalid version"),
        None => return anthropic_invalid("anthropic_version: Field required"),
    }
    let counting = model == "count-tokens";
    let inner_path = if counting {
        if !fields.get("model").is_some_and(Value::is_string) {
            return anthropic_invalid("model: Field required");
        }
        // Count-tokens bodies carry no sampling or streaming fields.
        fields.remove("stream");
        fields.remove("max_tokens");
        "/v1/messages/count_tokens"
    } else {
        if fields.contains_key("model") {
            return anthropic_invalid("model: Extra inputs are not permitted");
        }
        let streaming = fields.get("stream").and_then(Value::as_bool) == Some(true);
        if streaming != stream {
            return anthropic_invalid(if stream {
                "stream: streamRawPredict needs \"stream\": true"
            } else {
                "stream: use streamRawPredict to stream"
            });
        }
        fields.insert("model".into(), Value::String(model.to_owned()));
        "/v1/messages"
    };
    if body
        .windows(b"[double:vertex-quota]".len())
        .any(|w| w == b"[double:vertex-quota]")
    {
        return google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude. Please submit a quota increase request.",
        );
    }
    let mut req = shared
        .client
        .post(format!("{}{inner_path}", shared.inner.base_url()))
        .header("x-api-key", INNER_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Value::Object(fields).to_string());
    for beta in headers.get_all("anthropic-beta") {
        req = req.header("anthropic-beta", beta.clone());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return google_error(503, "UNAVAILABLE", &e.to_string()),
    };
    let status = resp.status();
    let mut relayed = HeaderMap::new();
    for name in ["content-type", "request-id", "retry-after"] {
        if let Some(v) = resp.headers().get(name) {
            relayed.insert(http::HeaderName::from_static(name), v.clone());
        }
    }
    let mut out = Response::new(Body::from_stream(
        resp.bytes_stream().map_err(std::io::Error::other),
    ));
    *out.status_mut() = status;
    *out.headers_mut() = relayed;
    out
}

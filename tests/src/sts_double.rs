//! A loopback double of AWS STS `AssumeRole`, as strict as the real service.
//!
//! * Only `POST /` with a form-encoded body (`application/x-www-form-urlencoded`), the awsQuery
//!   protocol the AWS SDKs speak: `Action=AssumeRole&Version=2011-06-15&RoleArn=…&RoleSessionName=…`
//!   `[&ExternalId=…][&DurationSeconds=…]`.
//! * Every request must carry a valid SigV4 signature for service `sts`, made with a configured
//!   base key (or with credentials this double issued: role chaining). The check is the same as
//!   [`crate::sigv4::verify`], whose service name is fixed to `bedrock`; [`verify_service`] is the
//!   service-generic version of it, built from the public pieces of [`crate::sigv4`].
//! * Parameters are validated like STS validates them: `RoleArn` (20-2048 characters, an IAM
//!   role ARN), `RoleSessionName` (2-64 characters of `[\w+=,.@-]`), `ExternalId` (2-1224
//!   characters of `[\w+=,.@:/-]`), `DurationSeconds` (900-43200, at most the role's maximum
//!   session duration and at most one hour when the caller itself uses temporary credentials).
//! * A role that requires an external id answers `AccessDenied` (403) when it is missing or wrong,
//!   as does an unknown role or a caller the role does not trust.
//! * Answers are the real XML: `AssumeRoleResponse` with `Credentials` and `AssumedRoleUser`, and
//!   errors as `ErrorResponse` (`Type`, `Code`, `Message`, `RequestId`), with `x-amzn-RequestId`.
//! * Each role issues *fixed* temporary credentials ([`StsRole::issued`], an `ASIA…` key with a
//!   session token), so a test can register them on the Bedrock double beforehand
//!   ([`crate::BedrockDoubleConfig::with_temporary_key`]).
//! * Every call is recorded ([`StsDouble::calls`]), so a test can assert how often credentials
//!   were fetched.
//!
//! Like the Bedrock double, the server runs on its own thread and Tokio runtime.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::double_http::{first_header, header_pairs, lock, path_and_query};
use crate::serve::{Bound, Running};
use crate::sigv4::{self, Credentials, SigError};

/// SigV4 signing name of STS.
pub const STS_SERVICE: &str = "sts";
/// The only API version of STS.
pub const STS_VERSION: &str = "2011-06-15";
/// XML namespace of STS responses.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// `DurationSeconds` when the request has none.
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// Smallest and largest `DurationSeconds` STS accepts.
pub const MIN_DURATION_SECONDS: u32 = 900;
pub const MAX_DURATION_SECONDS: u32 = 43_200;
/// Role chaining (temporary credentials assuming a role) is limited to one hour.
pub const ROLE_CHAINING_MAX_SECONDS: u32 = 3600;
/// The account of the principals the double invents for error messages.
pub const ACCOUNT_ID: &str = "123456789012";
const READ_LIMIT: usize = 1024 * 1024;

/// A role the double can assume.
#[derive(Debug, Clone)]
pub struct StsRole {
    /// `arn:aws:iam::123456789012:role/name`.
    pub arn: String,
    /// When set, `ExternalId` must equal it (else `AccessDenied`).
    pub external_id: Option<String>,
    /// The role's `MaxSessionDuration` (3600 unless set).
    pub max_session_duration: u32,
    /// Base access key ids allowed to assume the role; `None` = every known key.
    pub trusted_access_keys: Option<HashSet<String>>,
    /// What every successful AssumeRole returns: an `ASIA…` key with a session token.
    pub issued: Credentials,
    /// Test knob: the `Expiration` returned is `now + lifetime` instead of
    /// `now + DurationSeconds` (to make a client's refresh point arrive quickly).
    pub lifetime: Option<Duration>,
}

impl StsRole {
    /// A role issuing `issued` (its `session_token` must be set).
    pub fn new(arn: &str, issued: Credentials) -> StsRole {
        StsRole {
            arn: arn.to_owned(),
            external_id: None,
            max_session_duration: DEFAULT_DURATION_SECONDS,
            trusted_access_keys: None,
            issued,
            lifetime: None,
        }
    }

    #[must_use]
    pub fn with_external_id(mut self, external_id: &str) -> StsRole {
        self.external_id = Some(external_id.to_owned());
        self
    }

    #[must_use]
    pub fn with_max_session_duration(mut self, seconds: u32) -> StsRole {
        self.max_session_duration = seconds;
        self
    }

    /// Only these base keys may assume the role.
    #[must_use]
    pub fn trusting(mut self, access_key_ids: &[&str]) -> StsRole {
        self.trusted_access_keys = Some(access_key_ids.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> StsRole {
        self.lifetime = Some(lifetime);
        self
    }

    fn name(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }
}

/// Configuration of an [`StsDouble`].
#[derive(Debug, Clone, Default)]
pub struct StsDoubleConfig {
    /// Base credentials that may call STS, by access key id.
    pub credentials: HashMap<String, Credentials>,
    /// Roles by ARN.
    pub roles: HashMap<String, StsRole>,
    /// When set, a signature scoped to another region is rejected.
    pub region: Option<String>,
    /// A fixed clock for the signature window and `Expiration`.
    pub clock: Option<OffsetDateTime>,
}

impl StsDoubleConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a long-term base key.
    #[must_use]
    pub fn with_key(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.credentials.insert(
            access_key_id.to_owned(),
            Credentials::new(access_key_id, secret_access_key),
        );
        self
    }

    /// Adds base credentials as given (e.g. temporary ones with a session token).
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials
            .insert(credentials.access_key_id.clone(), credentials);
        self
    }

    #[must_use]
    pub fn with_role(mut self, role: StsRole) -> Self {
        self.roles.insert(role.arn.clone(), role);
        self
    }

    #[must_use]
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    #[must_use]
    pub fn with_clock(mut self, now: OffsetDateTime) -> Self {
        self.clock = Some(now);
        self
    }
}

/// What the double answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsVerdict {
    pub status: u16,
    /// STS error code (`AccessDenied`, `SignatureDoesNotMatch`, `ValidationError`, …).
    pub code: Option<String>,
    pub message: Option<String>,
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct StsCall {
    pub seq: u64,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Lowercase header names with their values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw (form-encoded) body.
    pub body: String,
    /// Decoded form parameters, in order.
    pub params: Vec<(String, String)>,
    /// The access key that signed the request, once the signature verified.
    pub access_key_id: Option<String>,
    /// Region of the credential scope, once the signature verified.
    pub region: Option<String>,
    /// Signed header names, once the signature verified.
    pub signed_headers: Vec<String>,
    /// Whether the caller presented a session token (temporary base credentials).
    pub session_token_presented: bool,
    /// The access key id handed out, for successful calls.
    pub issued_access_key_id: Option<String>,
    /// The `Expiration` handed out, for successful calls.
    pub expiration: Option<String>,
    pub verdict: StsVerdict,
}

impl StsCall {
    /// First value of a form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Whether the call succeeded and handed out credentials.
    pub fn succeeded(&self) -> bool {
        self.verdict.status == 200 && self.issued_access_key_id.is_some()
    }
}

/// A running STS double. Dropping it stops the server.
pub struct StsDouble {
    server: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StsDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug(f, "StsDouble")
    }
}

struct Shared {
    credentials: RwLock<HashMap<String, Credentials>>,
    roles: RwLock<HashMap<String, StsRole>>,
    region: Option<String>,
    clock: RwLock<Option<OffsetDateTime>>,
    calls: Mutex<Vec<StsCall>>,
    seq: AtomicU64,
}

impl StsDouble {
    /// Starts the double on `127.0.0.1:0`. Fails if a role's issued credentials are not
    /// temporary (`ASIA…` with a session token) or its ARN is malformed.
    pub fn start(config: StsDoubleConfig) -> std::io::Result<StsDouble> {
        for role in config.roles.values() {
            if !role.issued.access_key_id.starts_with("ASIA") || role.issued.session_token.is_none()
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "role {}: issued credentials must be temporary (ASIA… with a session token)",
                        role.arn
                    ),
                ));
            }
            if let Err(m) = check_role_arn(&role.arn) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, m));
            }
        }
        let shared = Arc::new(Shared {
            credentials: RwLock::new(config.credentials),
            roles: RwLock::new(config.roles),
            region: config.region,
            clock: RwLock::new(config.clock),
            calls: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        });
        let server = Bound::loopback()?.serve("sts-double", 2, handle, Arc::clone(&shared))?;
        Ok(StsDouble { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the value for `AWS_ENDPOINT_URL_STS`.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received so far, oldest first.
    pub fn calls(&self) -> Vec<StsCall> {
        lock(&self.shared.calls).clone()
    }

    /// How many AssumeRole calls succeeded (handed out credentials).
    pub fn assume_role_count(&self) -> usize {
        lock(&self.shared.calls)
            .iter()
            .filter(|c| c.succeeded())
            .count()
    }

    pub fn clear_calls(&self) {
        lock(&self.shared.calls).clear();
    }

    /// Adds or replaces a role (e.g. to change its external id mid-test).
    pub fn set_role(&self, role: StsRole) {
        self.shared
            .roles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(role.arn.clone(), role);
    }

    /// Sets (or with `None` clears) the fixed clock.
    pub fn set_clock(&self, now: Option<OffsetDateTime>) {
        *self
            .shared
            .clock
            .write()
            .unwrap_or_else(PoisonError::into_inner) = now;
    }
}

/// An STS error, answered as `ErrorResponse` XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl StsError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> StsError {
        StsError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> StsError {
        Self::new(400, "ValidationError", message)
    }

    fn access_denied(caller: &str, role_arn: &str) -> StsError {
        Self::new(
            403,
            "AccessDenied",
            format!(
                "User: arn:aws:iam::{ACCOUNT_ID}:user/{caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
        )
    }

    /// How STS reports a failed signature check.
    pub fn from_sig(err: &SigError) -> StsError {
        let (status, code) = match err {
            SigError::MissingAuthorization => (403, "MissingAuthenticationToken"),
            SigError::Incomplete(_) => (400, "IncompleteSignature"),
            SigError::UnrecognizedClient => (403, "InvalidClientTokenId"),
            SigError::Invalid(_)
            | SigError::ContentSha256Mismatch { .. }
            | SigError::SignatureMismatch { .. } => (403, "SignatureDoesNotMatch"),
        };
        let message = match err {
            SigError::MissingAuthorization => "Request is missing Authentication Token".to_owned(),
            other => other.to_string(),
        };
        Self::new(status, code, message)
    }

    /// The `ErrorResponse` document.
    pub fn to_xml(&self, request_id: &str) -> String {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse xmlns=\"{STS_NAMESPACE}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            xml_escape(&self.code),
            xml_escape(&self.message)
        )
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = request_id(seq);
    let path = path_and_query(&parts.uri);
    let mut headers = parts.headers.clone();
    if !headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(http::header::HOST, v);
    }
    let mut call = StsCall {
        seq,
        method: parts.method.to_string(),
        path: path.clone(),
        headers: header_pairs(&parts.headers).collect(),
        body: String::new(),
        params: Vec::new(),
        access_key_id: None,
        region: None,
        signed_headers: Vec::new(),
        session_token_presented: false,
        issued_access_key_id: None,
        expiration: None,
        verdict: StsVerdict {
            status: 0,
            code: None,
            message: None,
        },
    };
    let result = match axum::body::to_bytes(body, READ_LIMIT).await {
        Ok(bytes) => {
            call.body = String::from_utf8_lossy(&bytes).into_owned();
            process(&shared, &parts.method, &path, &headers, &bytes, &mut call)
        }
        Err(_) => Err(StsError::new(
            413,
            "RequestEntityTooLarge",
            "Request body too large",
        )),
    };
    let response = match result {
        Ok(xml) => {
            call.verdict.status = 200;
            xml_response(StatusCode::OK, xml, &request_id)
        }
        Err(err) => {
            call.verdict = StsVerdict {
                status: err.status,
                code: Some(err.code.clone()),
                message: Some(err.message.clone()),
            };
            let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
            xml_response(status, err.to_xml(&request_id), &request_id)
        }
    };
    lock(&shared.calls).push(call);
    response
}

fn xml_response(status: StatusCode, xml: String, request_id: &str) -> Response {
    let mut response = (status, xml).into_response();
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    response
}

/// Checks transport, signature and parameters; returns the `AssumeRoleResponse` document.
fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    call: &mut StsCall,
) -> Result<String, StsError> {
    if method != Method::POST || path != "/" {
        return Err(StsError::new(
            400,
            "InvalidAction",
            format!(
                "The STS double serves only POST / with a form-encoded body, not {method} {path}"
            ),
        ));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(StsError::new(
            400,
            "MissingAction",
            format!(
                "Missing Action (expected a form-encoded body, got content-type '{content_type}')"
            ),
        ));
    }

    // Authentication comes before anything the body says.
    let now = (*shared.clock.read().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_else(OffsetDateTime::now_utc);
    let verified = {
        let base = shared
            .credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let roles = shared.roles.read().unwrap_or_else(PoisonError::into_inner);
        verify_service(
            STS_SERVICE,
            method.as_str(),
            path,
            headers,
            body,
            |akid| {
                base.get(akid).cloned().or_else(|| {
                    roles
                        .values()
                        .find(|r| r.issued.access_key_id == akid)
                        .map(|r| r.issued.clone())
                })
            },
            now,
        )
    }
    .map_err(|e| StsError::from_sig(&e))?;
    call.access_key_id = Some(verified.access_key_id.clone());
    call.region = Some(verified.region.clone());
    call.signed_headers.clone_from(&verified.signed_headers);
    call.session_token_presented = verified.session_token.is_some();
    if let Some(expected) = &shared.region
        && &verified.region != expected
    {
        return Err(StsError::new(
            403,
            "SignatureDoesNotMatch",
            format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                verified.region
            ),
        ));
    }

    // Parameters.
    call.params = form_urlencoded::parse(body).into_owned().collect();
    let mut seen = HashSet::new();
    for (name, _) in &call.params {
        if !seen.insert(name.as_str()) {
            return Err(StsError::new(
                400,
                "InvalidParameterCombination",
                format!("Parameter {name} is given more than once"),
            ));
        }
    }
    let param = |name: &str| {
        call.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let action =
        param("Action").ok_or_else(|| StsError::new(400, "MissingAction", "Missing Action"))?;
    let version = param("Version").unwrap_or("");
    if action != "AssumeRole" || version != STS_VERSION {
        return Err(StsError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        ));
    }

    let mut problems = Vec::new();
    let role_arn = param("RoleArn");
    match role_arn {
        None => problems.push("Value null at 'roleArn' failed to satisfy constraint: Member must not be null".to_owned()),
        Some(arn) if !(20..=2048).contains(&arn.len()) => problems.push(format!(
            "Value '{arn}' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048"
        )),
        Some(_) => {}
    }
    let session_name = param("RoleSessionName");
    match session_name {
        None => problems.push(
            "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"
                .to_owned(),
        ),
        Some(name) => {
            if !(2..=64).contains(&name.len()) {
                problems.push(format!(
                    "Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64"
                ));
            }
            if !name.bytes().all(|c| is_word(c) || b"+=,.@-".contains(&c)) {
                problems.push(format!(
                    "Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
                ));
            }
        }
    }
    let external_id = param("ExternalId");
    if let Some(id) = external_id {
        if !(2..=1224).contains(&id.len()) {
            problems.push(format!(
                "Value '{id}' at 'externalId' failed to satisfy constraint: Member must have length between 2 and 1224"
            ));
        }
        if !id.bytes().all(|c| is_word(c) || b"+=,.@:/-".contains(&c)) {
            problems.push(format!(
                "Value '{id}' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*"
            ));
        }
    }
    let duration = match param("DurationSeconds") {
        None => DEFAULT_DURATION_SECONDS,
        Some(raw) => match raw.parse::<u32>() {
            Ok(d) if d < MIN_DURATION_SECONDS => {
                problems.push(format!(
                    "Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION_SECONDS}"
                ));
                d
            }
            Ok(d) if d > MAX_DURATION_SECONDS => {
                problems.push(format!(
                    "Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_DURATION_SECONDS}"
                ));
                d
            }
            Ok(d) => d,
            Err(_) => {
                return Err(StsError::new(
                    400,
                    "MalformedInput",
                    format!("Invalid value for DurationSeconds: '{raw}'"),
                ));
            }
        },
    };
    if !problems.is_empty() {
        let n = problems.len();
        let plural = if n == 1 { "" } else { "s" };
        return Err(StsError::validation(format!(
            "{n} validation error{plural} detected: {}",
            problems.join("; ")
        )));
    }
    let (Some(role_arn), Some(session_name)) = (role_arn, session_name) else {
        return Err(StsError::validation(
            "RoleArn and RoleSessionName are required",
        ));
    };
    check_role_arn(role_arn).map_err(StsError::validation)?;

    // Authorization: the role exists, trusts the caller, and its condition on sts:ExternalId holds.
    let caller = verified.access_key_id.to_ascii_lowercase();
    let role = shared
        .roles
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(role_arn)
        .cloned()
        .ok_or_else(|| StsError::access_denied(&caller, role_arn))?;
    if let Some(trusted) = &role.trusted_access_keys
        && !trusted.contains(&verified.access_key_id)
    {
        return Err(StsError::access_denied(&caller, role_arn));
    }
    if let Some(expected) = &role.external_id
        && !external_id
            .is_some_and(|given| sigv4::constant_time_eq(given.as_bytes(), expected.as_bytes()))
    {
        return Err(StsError::access_denied(&caller, role_arn));
    }
    if duration > role.max_session_duration {
        return Err(StsError::validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    if verified.session_token.is_some() && duration > ROLE_CHAINING_MAX_SECONDS {
        return Err(StsError::validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }

    let lifetime = role
        .lifetime
        .and_then(|l| time::Duration::try_from(l).ok())
        .unwrap_or_else(|| time::Duration::seconds(i64::from(duration)));
    let expiration = format_expiration(now + lifetime);
    call.issued_access_key_id = Some(role.issued.access_key_id.clone());
    call.expiration = Some(expiration.clone());
    Ok(assume_role_xml(
        &role,
        session_name,
        &expiration,
        &request_id(call.seq),
    ))
}

/// The `AssumeRoleResponse` document.
fn assume_role_xml(
    role: &StsRole,
    session_name: &str,
    expiration: &str,
    request_id: &str,
) -> String {
    let account = role.arn.split(':').nth(4).unwrap_or(ACCOUNT_ID);
    let partition = role.arn.split(':').nth(1).unwrap_or("aws");
    let role_id = {
        let digest = Sha256::digest(role.arn.as_bytes());
        let mut id = String::from("AROA");
        for b in &digest[..8] {
            let _ = write!(id, "{b:02X}");
        }
        id
    };
    format!(
        "<AssumeRoleResponse xmlns=\"{STS_NAMESPACE}\">\n  <AssumeRoleResult>\n    <AssumedRoleUser>\n      <AssumedRoleId>{role_id}:{session}</AssumedRoleId>\n      <Arn>arn:{partition}:sts::{account}:assumed-role/{role_name}/{session}</Arn>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{akid}</AccessKeyId>\n      <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        session = xml_escape(session_name),
        role_name = xml_escape(role.name()),
        akid = xml_escape(&role.issued.access_key_id),
        secret = xml_escape(&role.issued.secret_access_key),
        token = xml_escape(role.issued.session_token.as_deref().unwrap_or("")),
    )
}

/// `arn:{aws|aws-cn|aws-us-gov}:iam::{12 digits}:role/{path/}{name}`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let invalid = || format!("{arn} is invalid");
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        || account.len() != 12
        || !account.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(invalid());
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err(invalid());
    };
    let name = path_and_name.rsplit('/').next().unwrap_or("");
    if name.is_empty()
        || name.len() > 64
        || !path_and_name
            .bytes()
            .all(|c| is_word(c) || b"+=,.@-/".contains(&c))
    {
        return Err(invalid());
    }
    Ok(())
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as STS writes `Expiration`.
pub fn format_expiration(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A request id shaped like AWS's (UUID form), unique per request.
fn request_id(seq: u64) -> String {
    let digest = Sha256::digest(format!("sts:{seq}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub use crate::sigv4::{sign_service, verify_service};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        for ok in [
            "arn:aws:iam::123456789012:role/tollgate-bedrock",
            "arn:aws:iam::123456789012:role/service-role/x@y.z",
            "arn:aws-cn:iam::123456789012:role/r",
        ] {
            assert!(check_role_arn(ok).is_ok(), "{ok}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/short-account",
            "arn:aws:iam::123456789012:user/not-a-role",
            "arn:aws:s3:::bucket/role/x",
            "arn:aws:iam:us-east-1:123456789012:role/regional",
            "arn:aws:iam::123456789012:role/",
            "role/tollgate",
            "arn:aws:iam::123456789012:role/bad name",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiration_is_iso8601_utc() {
        let t = sigv4::parse_amz_date("20261124T203000Z").expect("date");
        assert_eq!(format_expiration(t), "2026-11-24T20:30:00Z");
    }

    #[test]
    fn sign_and_verify_round_trip_for_sts() {
        let creds = Credentials::new("AKIDSTSBASE", "secret/KEY+x");
        let now = OffsetDateTime::now_utc();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:9"));
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = b"Action=AssumeRole&Version=2011-06-15";
        sign_service(
            "sts",
            "POST",
            "/",
            &mut headers,
            body,
            &creds,
            "us-east-1",
            now,
        );
        let lookup = |k: &str| (k == "AKIDSTSBASE").then(|| creds.clone());
        let v = verify_service("sts", "POST", "/", &headers, body, lookup, now).expect("verifies");
        assert_eq!(v.service, "sts");
        // The same request is not valid for another service, nor with another body.
        assert!(matches!(
            verify_service("bedrock", "POST", "/", &headers, body, lookup, now),
            Err(SigError::Invalid(_))
        ));
        assert!(matches!(
            verify_service("sts", "POST", "/", &headers, b"Action=X", lookup, now),
            Err(SigError::SignatureMismatch { .. })
        ));
    }
}

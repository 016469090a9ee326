//! An independent AWS Signature Version 4 verifier (and a small signer for tests).
//!
//! Written from the SigV4 specification with `hmac` + `sha2` only. It deliberately does
//! **not** use the `aws-sigv4` crate: the gateway signs with that crate, and a double that
//! verified with the same code would agree with every bug in it.
//!
//! What [`verify`] checks, in the order a real AWS front end does:
//!
//! 1. `Authorization` is present and parses as
//!    `AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request, SignedHeaders=…, Signature=…`.
//! 2. `x-amz-date` is present, well formed, within five minutes of `now`, and its date equals the
//!    credential-scope date; the scope names service `bedrock` and ends in `aws4_request`.
//! 3. `host` and `x-amz-date` are signed; every signed header is present.
//! 4. The access key is known (else `UnrecognizedClientException`); an `x-amz-security-token`
//!    header, if present, is signed and equals the key's session token, and a key issued with a
//!    session token must present it.
//! 5. `x-amz-content-sha256`, if present, equals `sha256(body)` (botocore trusts that header
//!    blindly, so a verifier that reused it would accept a tampered body).
//! 6. The canonical request is rebuilt from the *wire* request — canonical URI = every path
//!    segment URI-encoded once more (non-S3 rule: a `%` on the wire becomes `%25`, a literal `:`
//!    becomes `%3A`), canonical query sorted, header values trimmed with inner runs of spaces
//!    collapsed — and the signature is recomputed and compared in constant time.
//!
//! The double does not normalise paths (`.`/`..`/`//`): Bedrock paths never contain them and a
//! path that would need normalising does not route anyway.

use std::fmt;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The only algorithm SigV4 (as opposed to SigV4a) uses.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SigV4 signing name of bedrock-runtime (not `bedrock-runtime`).
pub const BEDROCK_SERVICE: &str = "bedrock";
/// Allowed clock skew between `x-amz-date` and the verifier's clock.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(5);

/// Everything except RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) is encoded.
const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A set of AWS credentials, as configured in the double or used by the test signer.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    // Never print the secret, even in test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What a successful verification established about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub access_key_id: String,
    /// `yyyymmdd` from the credential scope.
    pub scope_date: String,
    pub region: String,
    pub service: String,
    /// Lowercase, in the order given by the client.
    pub signed_headers: Vec<String>,
    /// The `x-amz-date` value.
    pub amz_date: String,
    pub session_token: Option<String>,
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Why a request was rejected. [`SigError::error_type`] and [`SigError::status`] give the AWS
/// exception name and HTTP status the real service answers with; `Display` gives its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header at all.
    MissingAuthorization,
    /// `Authorization` present but not a parsable SigV4 header (400 IncompleteSignatureException).
    Incomplete(String),
    /// Date missing/garbled/skewed, scope wrong, required header unsigned, … (403 InvalidSignatureException).
    Invalid(String),
    /// Unknown access key, or a session token that does not belong to it.
    UnrecognizedClient,
    /// `x-amz-content-sha256` does not match the body.
    ContentSha256Mismatch { header: String, computed: String },
    /// The recomputed signature differs.
    SignatureMismatch {
        canonical_request: String,
        string_to_sign: String,
    },
}

impl SigError {
    /// AWS exception name, as carried in `x-amzn-ErrorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            SigError::MissingAuthorization => "MissingAuthenticationTokenException",
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::UnrecognizedClient => "UnrecognizedClientException",
            SigError::Invalid(_)
            | SigError::ContentSha256Mismatch { .. }
            | SigError::SignatureMismatch { .. } => "InvalidSignatureException",
        }
    }

    /// HTTP status the real service returns.
    pub fn status(&self) -> u16 {
        match self {
            SigError::Incomplete(_) => 400,
            _ => 403,
        }
    }
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigError::MissingAuthorization => f.write_str("Authorization header is missing"),
            SigError::Incomplete(m) | SigError::Invalid(m) => f.write_str(m),
            SigError::UnrecognizedClient => {
                f.write_str("The security token included in the request is invalid.")
            }
            SigError::ContentSha256Mismatch { header, computed } => write!(
                f,
                "The provided 'x-amz-content-sha256' header does not match what was computed. \
                 ClientComputedContentSHA256: {header}, ServerComputedContentSHA256: {computed}"
            ),
            SigError::SignatureMismatch {
                canonical_request,
                string_to_sign,
            } => write!(
                f,
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n\
                 The Canonical String for this request should have been\n'{canonical_request}'\n\n\
                 The String-to-Sign should have been\n'{string_to_sign}'\n"
            ),
        }
    }
}

impl std::error::Error for SigError {}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    pub access_key_id: String,
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader, SigError> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(SigError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Authorization={value}"
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((key, val)) = part.split_once('=') else {
            return Err(SigError::Incomplete(format!(
                "Authorization header requires each component to be of the form key=value. Authorization={value}"
            )));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(SigError::Incomplete(format!(
                    "Authorization header has an unknown component '{other}'. Authorization={value}"
                )));
            }
        };
        if slot.replace(val.trim().to_owned()).is_some() {
            return Err(SigError::Incomplete(format!(
                "Authorization header has a duplicate '{}' component. Authorization={value}",
                key.trim()
            )));
        }
    }
    let mut missing = Vec::new();
    for (name, slot) in [
        ("Credential", &credential),
        ("Signature", &signature),
        ("SignedHeaders", &signed_headers),
    ] {
        if slot.as_deref().is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(SigError::Incomplete(format!(
            "{} Authorization={value}",
            missing.join(" ")
        )));
    }
    let (credential, signed_headers, signature) = (
        credential.unwrap_or_default(),
        signed_headers.unwrap_or_default(),
        signature.unwrap_or_default(),
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = scope[..] else {
        return Err(SigError::Incomplete(format!(
            "Credential should have exactly 5 '/'-separated parts: AKID/yyyymmdd/region/service/aws4_request, got '{credential}'"
        )));
    };
    if akid.is_empty() || date.is_empty() || region.is_empty() || service.is_empty() {
        return Err(SigError::Incomplete(format!(
            "Credential has an empty component: '{credential}'"
        )));
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(SigError::Incomplete(format!(
            "Signature must be 64 lowercase hex characters, got '{signature}'"
        )));
    }
    Ok(AuthorizationHeader {
        access_key_id: akid.to_owned(),
        scope_date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        terminator: terminator.to_owned(),
        signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
        signature,
    })
}

/// Verifies a SigV4-signed request exactly as it arrived on the wire.
///
/// * `wire_path_and_query` — the request target as sent (`/model/…-v1%3A0/invoke`), not decoded.
/// * `headers` — as received; must contain `host` (for HTTP/2 the caller copies `:authority` in).
/// * `creds_lookup` — access key id → configured credentials.
/// * `now` — the verifier's clock, for the five-minute window.
pub fn verify<F>(
    method: &str,
    wire_path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    creds_lookup: F,
    now: OffsetDateTime,
) -> Result<VerifiedRequest, SigError>
where
    F: Fn(&str) -> Option<Credentials>,
{
    verify_service(
        BEDROCK_SERVICE,
        method,
        wire_path_and_query,
        headers,
        body,
        creds_lookup,
        now,
    )
}

/// [`verify`] for any service: the credential scope must name `service` (e.g. `sts`).
pub fn verify_service<F>(
    service: &str,
    method: &str,
    wire_path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    creds_lookup: F,
    now: OffsetDateTime,
) -> Result<VerifiedRequest, SigError>
where
    F: Fn(&str) -> Option<Credentials>,
{
    let authorization = match headers.get_all(http::header::AUTHORIZATION).iter().count() {
        0 => return Err(SigError::MissingAuthorization),
        1 => header_str(headers, "authorization")?,
        _ => {
            return Err(SigError::Incomplete(
                "Multiple Authorization headers.".to_owned(),
            ));
        }
    };
    let auth = parse_authorization(&authorization)?;

    // Date: required, well formed, within the window, consistent with the scope.
    let amz_date = match headers.get("x-amz-date") {
        Some(_) => header_str(headers, "x-amz-date")?,
        None => {
            return Err(SigError::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".to_owned(),
            ));
        }
    };
    let request_time = parse_amz_date(&amz_date).ok_or_else(|| {
        SigError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;
    if request_time < now - MAX_SKEW {
        return Err(SigError::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(now - MAX_SKEW),
            format_amz_date(now)
        )));
    }
    if request_time > now + MAX_SKEW {
        return Err(SigError::Invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(now + MAX_SKEW),
            format_amz_date(now)
        )));
    }
    if auth.scope_date != amz_date[..8] {
        return Err(SigError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.scope_date,
            &amz_date[..8]
        )));
    }
    if auth.service != service {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            auth.terminator
        )));
    }

    // Signed headers: lowercase, host and x-amz-date mandatory, each present.
    if auth
        .signed_headers
        .iter()
        .any(|h| h.is_empty() || h.chars().any(|c| c.is_ascii_uppercase()))
    {
        return Err(SigError::Invalid(format!(
            "SignedHeaders must be lowercase names separated by ';': '{}'",
            auth.signed_headers.join(";")
        )));
    }
    let is_signed = |name: &str| auth.signed_headers.iter().any(|h| h == name);
    if !is_signed("host") {
        return Err(SigError::Invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    if !is_signed("x-amz-date") {
        return Err(SigError::Invalid(
            "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization when it is used to date the request."
                .to_owned(),
        ));
    }
    for name in &auth.signed_headers {
        if !headers.contains_key(name.as_str()) {
            return Err(SigError::Invalid(format!(
                "Header '{name}' is listed in SignedHeaders but is not present in the request."
            )));
        }
    }

    // Credentials and session token.
    let creds = creds_lookup(&auth.access_key_id).ok_or(SigError::UnrecognizedClient)?;
    let presented_token = match headers.get("x-amz-security-token") {
        Some(_) => Some(header_str(headers, "x-amz-security-token")?),
        None => None,
    };
    match (&presented_token, &creds.session_token) {
        (None, None) => {}
        (Some(presented), Some(expected)) => {
            if !is_signed("x-amz-security-token") {
                return Err(SigError::Invalid(
                    "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."
                        .to_owned(),
                ));
            }
            if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
                return Err(SigError::UnrecognizedClient);
            }
        }
        // A temporary key without its token, or a token on a long-term key.
        _ => return Err(SigError::UnrecognizedClient),
    }

    // Payload hash: never trust x-amz-content-sha256 without checking it.
    let computed = hex::encode(Sha256::digest(body));
    if headers.contains_key("x-amz-content-sha256") {
        let declared = header_str(headers, "x-amz-content-sha256")?;
        if declared != computed {
            return Err(SigError::ContentSha256Mismatch {
                header: declared,
                computed,
            });
        }
    }

    let canonical_request = canonical_request(
        method,
        wire_path_and_query,
        headers,
        &auth.signed_headers,
        &computed,
    );
    let scope = format!(
        "{}/{}/{}/{}",
        auth.scope_date, auth.region, auth.service, auth.terminator
    );
    let string_to_sign = string_to_sign(&amz_date, &scope, &canonical_request);
    let key = signing_key(
        &creds.secret_access_key,
        &auth.scope_date,
        &auth.region,
        &auth.service,
    );
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(SigError::SignatureMismatch {
            canonical_request,
            string_to_sign,
        });
    }

    Ok(VerifiedRequest {
        access_key_id: auth.access_key_id,
        scope_date: auth.scope_date,
        region: auth.region,
        service: auth.service,
        signed_headers: auth.signed_headers,
        amz_date,
        session_token: presented_token,
        canonical_request,
        string_to_sign,
    })
}

/// Builds the canonical request from the wire form of the request.
///
/// `signed_headers` are lowercase names; they are emitted sorted. `payload_hash` is the hex
/// SHA-256 of the body.
pub fn canonical_request(
    method: &str,
    wire_path_and_query: &str,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let (path, query) = wire_path_and_query
        .split_once('?')
        .unwrap_or((wire_path_and_query, ""));
    let mut names: Vec<&str> = signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::with_capacity(512);
    out.push_str(method);
    out.push('\n');
    out.push_str(&canonical_uri(path));
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for name in &names {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| canonical_header_value(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// Canonical URI for non-S3 services: each segment of the wire path URI-encoded once more.
pub fn canonical_uri(wire_path: &str) -> String {
    if wire_path.is_empty() {
        return "/".to_owned();
    }
    wire_path
        .split('/')
        .map(|segment| utf8_percent_encode(segment, URI_ENCODE).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Canonical query: parameters decoded, re-encoded with the SigV4 set, sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode_lossy(k)), uri_encode(&decode_lossy(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims a header value and collapses each inner run of spaces to one space.
pub fn canonical_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut previous_space = false;
    for c in value.trim().chars() {
        if c == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
    out
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hex(sha256(canonical_request))}`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// HMAC chain `"AWS4"+secret` → date → region → service → `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, URI_ENCODE).to_string()
}

fn decode_lossy(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn header_str(headers: &HeaderMap, name: &str) -> Result<String, SigError> {
    let value = headers
        .get(name)
        .ok_or_else(|| SigError::Invalid(format!("Missing header '{name}'.")))?;
    value
        .to_str()
        .map(str::to_owned)
        .map_err(|_| SigError::Incomplete(format!("Header '{name}' is not valid ASCII.")))
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'`.
pub fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let hour = u8::try_from(digits(9..11)?).ok()?;
    let minute = u8::try_from(digits(11..13)?).ok()?;
    let second = u8::try_from(digits(13..15)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Formats a time as `YYYYMMDD'T'HHMMSS'Z'` (UTC).
pub fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Signs a request for tests and tools: adds `x-amz-date`, `x-amz-security-token` (when the
/// credentials carry one) and `authorization` to `headers`, signing every header already in
/// `headers` (which must include `host`) except the ones AWS SDKs never sign.
///
/// Returns the `Authorization` value.
pub fn sign(
    method: &str,
    wire_path_and_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    time: OffsetDateTime,
) -> String {
    sign_service(
        BEDROCK_SERVICE,
        method,
        wire_path_and_query,
        headers,
        body,
        creds,
        region,
        time,
    )
}

/// [`sign`] for any service (e.g. `sts`).
#[allow(clippy::too_many_arguments)]
pub fn sign_service(
    service: &str,
    method: &str,
    wire_path_and_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    time: OffsetDateTime,
) -> String {
    const UNSIGNED: [&str; 5] = [
        "authorization",
        "user-agent",
        "x-amzn-trace-id",
        "transfer-encoding",
        "connection",
    ];
    let amz_date = format_amz_date(time);
    headers.insert(
        "x-amz-date",
        amz_date.parse().expect("amz date is a valid header value"),
    );
    if let Some(token) = &creds.session_token {
        headers.insert(
            "x-amz-security-token",
            token
                .parse()
                .expect("session token is a valid header value"),
        );
    }
    let mut signed: Vec<String> = headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| !UNSIGNED.contains(&k.as_str()))
        .collect();
    signed.sort_unstable();
    signed.dedup();
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical = canonical_request(method, wire_path_and_query, headers, &signed, &payload_hash);
    let scope = format!("{}/{region}/{service}/aws4_request", &amz_date[..8]);
    let sts = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(&creds.secret_access_key, &amz_date[..8], region, service);
    let signature = hex::encode(hmac_sha256(&key, sts.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        creds.access_key_id,
        signed.join(";")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        authorization
            .parse()
            .expect("authorization is a valid header value"),
    );
    authorization
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_double_encodes_each_segment() {
        assert_eq!(
            canonical_uri("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
        );
        assert_eq!(
            canonical_uri("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%253A0/invoke"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a b/~x"), "/a%20b/~x");
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("x=a%20b&y"), "x=a%20b&y=");
        assert_eq!(canonical_query("k=a:b"), "k=a%3Ab");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(canonical_header_value("  a   b  c "), "a b c");
        assert_eq!(canonical_header_value("plain"), "plain");
    }

    #[test]
    fn amz_date_round_trips_and_rejects_garbage() {
        let t = parse_amz_date("20150830T123600Z").expect("valid date");
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        for bad in [
            "20150830T123600",
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "2015083xT123600Z",
            "",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad} must not parse");
        }
    }

    #[test]
    fn authorization_parse_errors() {
        let ok = "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=75cefbb2917d9b7183b4f40c26d37d52decdf95ccfed3696d776dd135fc48acb";
        let parsed = parse_authorization(ok).expect("parses");
        assert_eq!(parsed.access_key_id, "AK");
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        for bad in [
            "Bearer abc",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/aws4_request, SignedHeaders=host, Signature=75cefbb2917d9b7183b4f40c26d37d52decdf95ccfed3696d776dd135fc48acb",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=zz",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            let err = parse_authorization(bad).expect_err(bad);
            assert_eq!(err.status(), 400, "{bad}");
            assert_eq!(err.error_type(), "IncompleteSignatureException");
        }
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn credentials_debug_redacts_secret() {
        let c = Credentials::new("AKID", "supersecret").with_session_token("tok");
        let s = format!("{c:?}");
        assert!(!s.contains("supersecret") && !s.contains("tok\""), "{s}");
    }
}

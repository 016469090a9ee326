//! Input rules shared by the admin API and the store: names, `env.NAME` references, network
//! settings and provider keys. Errors name the offending field with the admin API's JSON path.

use std::collections::BTreeMap;

use tollgate_proto::env::EnvAllowlist;

use crate::model::{
    ENV_PREFIX, NetworkConfig, NetworkRecord, ProviderKeyRecord, ProviderKind, REDACTED,
    SealedSecret, ValueSource,
};

/// A rejected input. `field` is the JSON path of the offending field (`bedrock_key_config.region`,
/// `models[2]`) when one field is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: Option<String>,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

pub type Result<T, E = ValidationError> = std::result::Result<T, E>;

/// Longest accepted timeout, in seconds (one day).
pub const MAX_TIMEOUT_SECONDS: u32 = 86_400;
/// Most retries a provider's `network_config.max_retries` may ask for.
pub const MAX_RETRIES: u32 = 10;
/// Longest backoff a provider's `network_config.retry_backoff_*` may ask for, in milliseconds.
pub const MAX_BACKOFF_MS: u32 = 60_000;
const MAX_NAME_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 1_024;
const MAX_LIST_LEN: usize = 1_000;

/// Provider names are used in `provider/model` strings and URL paths.
pub fn provider_name(field: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "invalid provider name {name:?}: use 1-64 characters a-z, A-Z, 0-9, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

/// Display names of keys and virtual keys.
pub fn display_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if name.trim() != name {
        return Err(ValidationError::new(
            field,
            "must not start or end with whitespace",
        ));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub fn description(field: &str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(())
}

/// Whether `name` is a valid environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && name.len() <= 256
}

/// A string field of the admin API that may hold a literal or an `env.NAME` reference.
#[derive(Clone, PartialEq, Eq)]
pub enum Sourced {
    Env(String),
    Literal(String),
    /// The [`REDACTED`] placeholder: keep what is stored (updates only).
    Keep,
}

impl std::fmt::Debug for Sourced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sourced::Env(name) => write!(f, "Env({name})"),
            Sourced::Literal(_) => f.write_str("Literal(..)"),
            Sourced::Keep => f.write_str("Keep"),
        }
    }
}

/// Parses a field that may be `env.NAME`, a literal, or (when `allow_keep`) [`REDACTED`]. An
/// `env.NAME` must be allowed by `env`; the error names the field and the rule.
pub fn sourced(field: &str, raw: &str, allow_keep: bool, env: &EnvAllowlist) -> Result<Sourced> {
    if raw == REDACTED {
        return if allow_keep {
            Ok(Sourced::Keep)
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "{REDACTED:?} is the placeholder shown in responses; give the value or an env.NAME reference"
                ),
            ))
        };
    }
    if let Some(name) = raw.strip_prefix(ENV_PREFIX) {
        return if is_env_var_name(name) {
            env.check(name)
                .map_err(|refused| ValidationError::new(field, refused.to_string()))?;
            Ok(Sourced::Env(name.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "invalid environment variable reference {raw:?}: expected env.NAME with NAME matching [A-Za-z_][A-Za-z0-9_]*"
                ),
            ))
        };
    }
    if raw.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    Ok(Sourced::Literal(raw.to_owned()))
}

/// Validates a network block; `prefix` is its JSON path (`network_config`). Returns the parsed
/// extra-header values (literal, `env.NAME` allowed by `env`, or, when `allow_keep`, the
/// [`REDACTED`] placeholder).
pub fn network_config(
    prefix: &str,
    nc: &NetworkConfig,
    env: &EnvAllowlist,
    allow_keep: bool,
) -> Result<BTreeMap<String, Sourced>> {
    if let Some(url) = &nc.base_url {
        base_url(&format!("{prefix}.base_url"), url)?;
    }
    for (name, value) in [
        (
            "default_request_timeout_in_seconds",
            nc.default_request_timeout_in_seconds,
        ),
        ("connect_timeout_in_seconds", nc.connect_timeout_in_seconds),
        (
            "stream_idle_timeout_in_seconds",
            nc.stream_idle_timeout_in_seconds,
        ),
        (
            "response_header_timeout_in_seconds",
            nc.response_header_timeout_in_seconds,
        ),
    ] {
        if let Some(v) = value
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&v)
        {
            return Err(ValidationError::new(
                format!("{prefix}.{name}"),
                format!("must be between 1 and {MAX_TIMEOUT_SECONDS} seconds"),
            ));
        }
    }
    if let Some(n) = nc.max_retries
        && n > MAX_RETRIES
    {
        return Err(ValidationError::new(
            format!("{prefix}.max_retries"),
            format!("must be between 0 and {MAX_RETRIES}"),
        ));
    }
    for (name, value) in [
        ("retry_backoff_initial", nc.retry_backoff_initial),
        ("retry_backoff_max", nc.retry_backoff_max),
    ] {
        if let Some(v) = value
            && !(1..=MAX_BACKOFF_MS).contains(&v)
        {
            return Err(ValidationError::new(
                format!("{prefix}.{name}"),
                format!("must be between 1 and {MAX_BACKOFF_MS} milliseconds"),
            ));
        }
    }
    if let (Some(initial), Some(max)) = (nc.retry_backoff_initial, nc.retry_backoff_max)
        && initial > max
    {
        return Err(ValidationError::new(
            format!("{prefix}.retry_backoff_initial"),
            "must not exceed retry_backoff_max",
        ));
    }
    if nc.extra_headers.len() > MAX_LIST_LEN {
        return Err(ValidationError::new(
            format!("{prefix}.extra_headers"),
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    let mut values = BTreeMap::new();
    for (name, value) in &nc.extra_headers {
        let field = format!("{prefix}.extra_headers.{name}");
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ValidationError::new(&field, "invalid HTTP header name"))?;
        if matches!(
            header.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te"
        ) {
            return Err(ValidationError::new(
                &field,
                format!("the {header} header is managed by the gateway and cannot be set"),
            ));
        }
        let value = sourced(&field, value, allow_keep, env)?;
        if let Sourced::Literal(v) = &value {
            http::HeaderValue::from_str(v)
                .map_err(|_| ValidationError::new(&field, "invalid HTTP header value"))?;
        }
        values.insert(name.clone(), value);
    }
    Ok(values)
}

/// The admin-API paths of a stored key's `env.NAME` references that `env` refuses (rows written
/// before the allowlist existed, or under a wider one).
pub fn refused_key_references(k: &ProviderKeyRecord, env: &EnvAllowlist) -> Vec<String> {
    fn secret(s: &Option<SealedSecret>) -> Option<&str> {
        match s {
            Some(SealedSecret::Env(name)) => Some(name),
            _ => None,
        }
    }
    fn plain(v: &Option<ValueSource>) -> Option<&str> {
        match v {
            Some(ValueSource::Env(name)) => Some(name),
            _ => None,
        }
    }
    let mut fields = vec![("value", secret(&k.value))];
    if let Some(v) = &k.vertex {
        fields.extend([
            ("vertex_key_config.project_id", plain(&v.project_id)),
            ("vertex_key_config.region", plain(&v.region)),
            (
                "vertex_key_config.auth_credentials",
                secret(&v.auth_credentials),
            ),
        ]);
    }
    if let Some(b) = &k.bedrock {
        fields.extend([
            ("bedrock_key_config.access_key", secret(&b.access_key)),
            ("bedrock_key_config.secret_key", secret(&b.secret_key)),
            ("bedrock_key_config.session_token", secret(&b.session_token)),
            ("bedrock_key_config.external_id", secret(&b.external_id)),
            ("bedrock_key_config.region", plain(&b.region)),
            ("bedrock_key_config.role_arn", plain(&b.role_arn)),
        ]);
    }
    fields
        .into_iter()
        .filter(|(_, name)| name.is_some_and(|n| !env.allows(n)))
        .map(|(field, _)| field.to_owned())
        .collect()
}

/// The admin-API paths of a stored network block's header references that `env` refuses.
pub fn refused_network_references(n: &NetworkRecord, env: &EnvAllowlist) -> Vec<String> {
    n.extra_headers
        .iter()
        .filter(|(name, v)| {
            !n.legacy_extra_headers.contains_key(*name)
                && matches!(v, SealedSecret::Env(var) if !env.allows(var))
        })
        .map(|(name, _)| format!("network_config.extra_headers.{name}"))
        .collect()
}

fn base_url(field: &str, url: &str) -> Result<()> {
    http_url(field, url, true)
}

/// An absolute `http://` or `https://` URL with a host and no credentials (and, when
/// `no_query`, no query string). Errors are named after the last segment of `field`.
pub(crate) fn http_url(field: &str, url: &str, no_query: bool) -> Result<()> {
    let name = field.rsplit('.').next().unwrap_or(field);
    let invalid = |why: &str| ValidationError::new(field, format!("invalid {name}: {why}"));
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("not a valid absolute URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("the scheme must be http or https")),
        None => return Err(invalid("expected an absolute http(s) URL")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(invalid("the URL has no host")),
    }
    if no_query && uri.query().is_some() {
        return Err(invalid("the URL must not have a query string"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid(
            "credentials in the URL are not allowed; use extra_headers or a key",
        ));
    }
    Ok(())
}

/// The secret-agnostic view of a provider key used to check it: presence of each field and, for
/// fields that may be `env.NAME`, the literal when there is one (to check its format).
#[derive(Debug)]
pub struct KeyShape<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub models: &'a [String],
    pub weight: f64,
    pub aliases: &'a BTreeMap<String, String>,
    pub has_value: bool,
    pub bedrock: Option<BedrockShape<'a>>,
    pub vertex: Option<VertexShape<'a>>,
}

/// What a key's rules need of its provider besides the kind.
#[derive(Debug, Clone, Copy)]
pub struct ProviderShape {
    pub kind: ProviderKind,
    /// The provider has `network_config.base_url` (`openai` keys may then omit `value`).
    pub has_base_url: bool,
}

impl ProviderShape {
    /// A provider of `kind` at its default endpoint.
    pub fn of(kind: ProviderKind) -> Self {
        ProviderShape {
            kind,
            has_base_url: false,
        }
    }
}

/// A Vertex AI key's settings as the rules see them. The service account key file is checked
/// where it is still plaintext ([`service_account_key`], before sealing): here only its presence.
#[derive(Debug, Default)]
pub struct VertexShape<'a> {
    /// `None`: absent; `Some(None)`: an env reference; `Some(Some(v))`: a literal.
    pub project_id: Option<Option<&'a str>>,
    pub region: Option<Option<&'a str>>,
    pub has_auth_credentials: bool,
    pub token_uri: Option<&'a str>,
}

#[derive(Debug, Default)]
pub struct BedrockShape<'a> {
    pub has_access_key: bool,
    pub has_secret_key: bool,
    pub has_session_token: bool,
    pub has_external_id: bool,
    /// `None`: absent; `Some(None)`: an env reference; `Some(Some(v))`: a literal.
    pub region: Option<Option<&'a str>>,
    pub role_arn: Option<Option<&'a str>>,
    pub session_name: Option<&'a str>,
    pub arn: Option<&'a str>,
}

/// Checks a provider key as a whole against its provider (its kind, and for `openai` whether it
/// has a `base_url`).
pub fn provider_key(provider: ProviderShape, key: &KeyShape<'_>) -> Result<()> {
    let kind = provider.kind;
    display_name("name", key.name)?;
    if let Some(d) = key.description {
        description("description", d)?;
    }
    if key.models.len() > MAX_LIST_LEN {
        return Err(ValidationError::new(
            "models",
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    for (i, m) in key.models.iter().enumerate() {
        if m.trim().is_empty() {
            return Err(ValidationError::new(
                format!("models[{i}]"),
                "model names must not be empty",
            ));
        }
    }
    if !key.weight.is_finite() || key.weight <= 0.0 {
        return Err(ValidationError::new(
            "weight",
            "must be a finite number greater than 0",
        ));
    }
    if key.aliases.len() > MAX_LIST_LEN {
        return Err(ValidationError::new(
            "aliases",
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    let mut seen = BTreeMap::new();
    for (alias, target) in key.aliases {
        if alias.trim().is_empty() {
            return Err(ValidationError::new(
                "aliases",
                "alias names must not be empty",
            ));
        }
        if target.trim().is_empty() {
            return Err(ValidationError::new(
                format!("aliases.{alias}"),
                "the alias target must not be empty",
            ));
        }
        // An alias is requested as a model name, and its target is sent upstream as one: both
        // must have a model id's shape (the data plane refuses requests for any other name).
        for (what, name) in [("alias name", alias), ("alias target", target)] {
            if let Err(e) = tollgate_proto::model_id::check(name) {
                return Err(ValidationError::new(
                    format!("aliases.{alias}"),
                    format!("the {what} is not a valid model id: {e}"),
                ));
            }
        }
        if let Some(other) = seen.insert(alias.to_lowercase(), alias) {
            return Err(ValidationError::new(
                format!("aliases.{alias}"),
                format!("aliases are matched case-insensitively; {alias:?} duplicates {other:?}"),
            ));
        }
    }
    if kind != ProviderKind::Bedrock && key.bedrock.is_some() {
        return Err(ValidationError::new(
            "bedrock_key_config",
            format!("bedrock_key_config is only valid for keys of bedrock providers, not {kind}"),
        ));
    }
    if kind != ProviderKind::Vertex && key.vertex.is_some() {
        return Err(ValidationError::new(
            "vertex_key_config",
            format!("vertex_key_config is only valid for keys of vertex providers, not {kind}"),
        ));
    }
    match kind {
        ProviderKind::Anthropic => {
            if !key.has_value {
                return Err(ValidationError::new(
                    "value",
                    "anthropic keys need `value` (the API key, or env.NAME)",
                ));
            }
        }
        ProviderKind::OpenAi => {
            if !key.has_value && !provider.has_base_url {
                return Err(ValidationError::new(
                    "value",
                    "openai keys need `value` (the API key, or env.NAME) unless the provider has a network_config.base_url (a local server such as vLLM or Ollama may need none)",
                ));
            }
        }
        ProviderKind::Bedrock => match &key.bedrock {
            None if !key.has_value => {
                return Err(ValidationError::new(
                    "bedrock_key_config",
                    "bedrock keys need bedrock_key_config (AWS credentials and region) or `value` (a Bedrock API key)",
                ));
            }
            None => {}
            Some(b) => bedrock(key.has_value, b)?,
        },
        ProviderKind::Vertex => {
            if key.has_value {
                return Err(ValidationError::new(
                    "value",
                    "vertex keys authenticate with vertex_key_config.auth_credentials (a service account key); `value` is not used",
                ));
            }
            match &key.vertex {
                None => {
                    return Err(ValidationError::new(
                        "vertex_key_config",
                        "vertex keys need vertex_key_config (project_id, region and auth_credentials)",
                    ));
                }
                Some(v) => vertex(v)?,
            }
        }
    }
    Ok(())
}

/// A required `vertex_key_config.<name>`: absent is `missing`; a literal (`Some(Some(_))`, not
/// an `env.NAME`) must pass `valid`, else `"<value>" <not_valid>`.
fn required_shape(
    name: &str,
    value: Option<Option<&str>>,
    valid: fn(&str) -> bool,
    missing: &str,
    not_valid: &str,
) -> Result<()> {
    let path = format!("vertex_key_config.{name}");
    match value {
        None => Err(ValidationError::new(path, missing.to_owned())),
        Some(Some(v)) if !valid(v) => Err(ValidationError::new(path, format!("{v:?} {not_valid}"))),
        Some(_) => Ok(()),
    }
}

fn vertex(v: &VertexShape<'_>) -> Result<()> {
    const P: &str = "vertex_key_config";
    required_shape(
        "project_id",
        v.project_id,
        is_gcp_project_id,
        "project_id is required (e.g. \"my-project-123\" or env.GOOGLE_CLOUD_PROJECT)",
        "is not a Google Cloud project id (lowercase letters, digits and hyphens, starting with a letter, e.g. \"my-project-123\")",
    )?;
    required_shape(
        "region",
        v.region,
        is_gcp_region,
        "region is required (e.g. \"us-east5\", \"europe-west1\", \"global\" or env.GOOGLE_CLOUD_REGION)",
        "is not a Google Cloud region name (e.g. \"us-east5\", \"europe-west1\", \"global\", \"us\", \"eu\")",
    )?;
    if !v.has_auth_credentials {
        return Err(ValidationError::new(
            format!("{P}.auth_credentials"),
            "auth_credentials is required: the service account key file (JSON) as a string, or env.NAME",
        ));
    }
    if let Some(uri) = v.token_uri {
        http_url(&format!("{P}.token_uri"), uri, false)?;
    }
    Ok(())
}

/// Longest service account key file accepted (they are about 2.4 KB).
const MAX_KEY_FILE_LEN: usize = 64 * 1024;

/// Checks a literal Vertex AI `auth_credentials`: a service account key file as Google Cloud
/// downloads it (`type: "service_account"`, `client_email`, `private_key` in PKCS#8 PEM,
/// `token_uri` an https URL or http on loopback). Messages never repeat any part of it.
pub fn service_account_key(field: &str, raw: &str) -> Result<()> {
    let invalid = |why: &str| {
        ValidationError::new(
            field,
            format!(
                "not a service account key file: {why} (give the key file's JSON as a string, or env.NAME)"
            ),
        )
    };
    if raw.len() > MAX_KEY_FILE_LEN {
        return Err(invalid(&format!("longer than {MAX_KEY_FILE_LEN} bytes")));
    }
    // serde_json's messages may quote the input: only its position is reported.
    let doc: serde_json::Value = serde_json::from_str(raw).map_err(|e| {
        invalid(&format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Some(obj) = doc.as_object() else {
        return Err(invalid("not a JSON object"));
    };
    let text = |name: &str| obj.get(name).and_then(serde_json::Value::as_str);
    if text("type") != Some("service_account") {
        return Err(invalid("`type` must be \"service_account\""));
    }
    match text("client_email") {
        Some(email) if email.contains('@') => {}
        _ => return Err(invalid("`client_email` is missing or not an email address")),
    }
    match text("private_key") {
        Some(pem)
            if pem.trim_start().starts_with("-----BEGIN PRIVATE KEY-----")
                && pem.contains("-----END PRIVATE KEY-----") => {}
        _ => {
            return Err(invalid(
                "`private_key` must be a PEM private key (-----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----)",
            ));
        }
    }
    match text("token_uri") {
        Some(uri) if is_token_endpoint(uri) => {}
        _ => {
            return Err(invalid(
                "`token_uri` must be an https URL (or http on a loopback address)",
            ));
        }
    }
    Ok(())
}

/// An `https://` URL with a host, or `http://` to a loopback host (a test double).
fn is_token_endpoint(uri: &str) -> bool {
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return false;
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return false;
    }
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            bare.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// `us-east5`, `europe-west1`, `asia-northeast1`, `global`, and the multi-regions `us` and `eu`:
/// lowercase letters, digits and single hyphens, starting with a letter.
fn is_gcp_region(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
        && !s.contains("--")
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// `my-project-123`, or a domain-scoped project (`example.com:my-project`): lowercase letters,
/// digits and hyphens, starting with a letter, not ending with a hyphen.
fn is_gcp_project_id(s: &str) -> bool {
    let (domain, id) = s.rsplit_once(':').unwrap_or(("", s));
    let domain_ok = domain.is_empty()
        || (domain.len() <= 253
            && domain
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'));
    domain_ok
        && (1..=63).contains(&id.len())
        && id.as_bytes()[0].is_ascii_lowercase()
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn bedrock(has_value: bool, b: &BedrockShape<'_>) -> Result<()> {
    const P: &str = "bedrock_key_config";
    match b.region {
        None => {
            return Err(ValidationError::new(
                format!("{P}.region"),
                "region is required (e.g. \"us-east-1\" or env.AWS_REGION)",
            ));
        }
        Some(Some(region)) if !is_aws_region(region) => {
            return Err(ValidationError::new(
                format!("{P}.region"),
                format!("{region:?} is not an AWS region name (e.g. \"us-east-1\")"),
            ));
        }
        Some(_) => {}
    }
    if b.has_access_key != b.has_secret_key {
        let missing = if b.has_access_key {
            "secret_key"
        } else {
            "access_key"
        };
        return Err(ValidationError::new(
            format!("{P}.{missing}"),
            "access_key and secret_key must be given together",
        ));
    }
    if b.has_session_token && !b.has_access_key {
        return Err(ValidationError::new(
            format!("{P}.session_token"),
            "session_token needs access_key and secret_key",
        ));
    }
    if has_value && b.has_access_key {
        return Err(ValidationError::new(
            "value",
            "give either `value` (a Bedrock API key) or access_key/secret_key, not both",
        ));
    }
    if let Some(Some(arn)) = b.role_arn
        && !arn.starts_with("arn:")
    {
        return Err(ValidationError::new(
            format!("{P}.role_arn"),
            "must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME) or env.NAME",
        ));
    }
    if b.role_arn.is_none() {
        if b.has_external_id {
            return Err(ValidationError::new(
                format!("{P}.external_id"),
                "external_id is only used with role_arn",
            ));
        }
        if b.session_name.is_some() {
            return Err(ValidationError::new(
                format!("{P}.session_name"),
                "session_name is only used with role_arn",
            ));
        }
    }
    if let Some(name) = b.session_name {
        let ok = (2..=64).contains(&name.len())
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_+=,.@-".contains(&c));
        if !ok {
            return Err(ValidationError::new(
                format!("{P}.session_name"),
                "must be 2-64 characters of [A-Za-z0-9_+=,.@-]",
            ));
        }
    }
    if let Some(arn) = b.arn
        && !arn.starts_with("arn:")
    {
        return Err(ValidationError::new(
            format!("{P}.arn"),
            "must be an ARN prefix such as arn:aws:bedrock:us-east-1:123456789012",
        ));
    }
    Ok(())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-4` ...
fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> EnvAllowlist {
        EnvAllowlist::default()
    }

    #[test]
    fn env_references() {
        let env = allow();
        assert_eq!(
            sourced("f", "env.AWS_ACCESS_KEY_ID", false, &env).unwrap(),
            Sourced::Env("AWS_ACCESS_KEY_ID".into())
        );
        assert_eq!(
            sourced("f", "AKIA123", false, &env).unwrap(),
            Sourced::Literal("AKIA123".into())
        );
        let err = sourced("bedrock_key_config.access_key", "env.1BAD", false, &env).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("bedrock_key_config.access_key"));
        assert!(sourced("f", "env.", false, &env).is_err());
        assert!(sourced("f", "env.A-B", false, &env).is_err());
        assert!(sourced("f", "  ", false, &env).is_err());
        assert!(sourced("f", REDACTED, false, &env).is_err());
        assert_eq!(sourced("f", REDACTED, true, &env).unwrap(), Sourced::Keep);
    }

    #[test]
    fn env_references_outside_the_allowlist_are_refused_naming_field_and_rule() {
        let env = allow();
        for (field, raw) in [
            ("bedrock_key_config.secret_key", "env.TOLLGATE_SECRET_KEY"),
            ("value", "env.TOLLGATE_ADMIN_TOKEN"),
            ("value", "env.HOME"),
            ("network_config.extra_headers.x-foo", "env.DATABASE_URL"),
        ] {
            let err = sourced(field, raw, true, &env).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field));
            assert!(err.message.contains(raw), "{}", err.message);
            if raw.starts_with("env.TOLLGATE_") {
                assert!(err.message.contains("never resolve"), "{}", err.message);
            } else {
                assert!(err.message.contains("AWS_*"), "{}", err.message);
                assert!(
                    err.message.contains("TOLLGATE_ENV_ALLOW"),
                    "{}",
                    err.message
                );
            }
        }
        let wider = EnvAllowlist::with_extra(["HOME", "PROXY_*"]).unwrap();
        assert!(sourced("value", "env.HOME", false, &wider).is_ok());
        assert!(sourced("value", "env.PROXY_TOKEN", false, &wider).is_ok());
        assert!(sourced("value", "env.TOLLGATE_SECRET_KEY", false, &wider).is_err());
        // A literal that merely looks like a name is a literal.
        assert_eq!(
            sourced("value", "TOLLGATE_SECRET_KEY", false, &env).unwrap(),
            Sourced::Literal("TOLLGATE_SECRET_KEY".into())
        );
    }

    #[test]
    fn stored_references_the_allowlist_refuses_are_listed() {
        let env = allow();
        let t = crate::model::now();
        let key = ProviderKeyRecord {
            id: uuid::Uuid::new_v4(),
            provider: "bedrock".into(),
            name: "k".into(),
            description: None,
            models: vec![],
            weight: 1.0,
            aliases: BTreeMap::new(),
            enabled: true,
            value: None,
            bedrock: Some(crate::model::BedrockKeyRecord {
                access_key: Some(SealedSecret::Env("AWS_ACCESS_KEY_ID".into())),
                secret_key: Some(SealedSecret::Env("TOLLGATE_SECRET_KEY".into())),
                region: Some(ValueSource::Env("REGION".into())),
                role_arn: Some(ValueSource::Literal("arn:aws:iam::1:role/r".into())),
                ..Default::default()
            }),
            vertex: None,
            created_at: t,
            updated_at: t,
        };
        assert_eq!(
            refused_key_references(&key, &env),
            ["bedrock_key_config.secret_key", "bedrock_key_config.region"]
        );
        let net = NetworkRecord {
            extra_headers: [
                ("x-a".to_string(), SealedSecret::Env("HOME".into())),
                ("x-b".to_string(), SealedSecret::Env("ANTHROPIC_X".into())),
                ("x-c".to_string(), SealedSecret::Encrypted("v1:..".into())),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            refused_network_references(&net, &env),
            ["network_config.extra_headers.x-a"]
        );
    }

    #[test]
    fn base_urls() {
        let nc = |u: &str| NetworkConfig {
            base_url: Some(u.into()),
            ..Default::default()
        };
        let env = allow();
        assert!(
            network_config(
                "n",
                &nc("https://bedrock-runtime.us-east-1.amazonaws.com"),
                &env,
                false
            )
            .is_ok()
        );
        assert!(network_config("n", &nc("http://127.0.0.1:9000/prefix"), &env, false).is_ok());
        for bad in [
            "ftp://example.com",
            "example.com",
            "/just/a/path",
            "https://",
            "not a url",
            "https://user:pw@example.com",
            "https://example.com/?a=b",
        ] {
            let err = network_config("n", &nc(bad), &env, false).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("n.base_url"), "{bad}");
        }
    }

    #[test]
    fn timeouts_and_headers() {
        let env = allow();
        let check = |nc: &NetworkConfig, keep| network_config("network_config", nc, &env, keep);
        let mut nc = NetworkConfig {
            connect_timeout_in_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check(&nc, false).unwrap_err().field.as_deref(),
            Some("network_config.connect_timeout_in_seconds")
        );
        nc.connect_timeout_in_seconds = Some(10);
        nc.extra_headers.insert("x-team".into(), "eng".into());
        nc.extra_headers
            .insert("x-token".into(), "env.ANTHROPIC_PROXY_TOKEN".into());
        assert_eq!(
            check(&nc, false).unwrap(),
            BTreeMap::from([
                ("x-team".to_string(), Sourced::Literal("eng".into())),
                (
                    "x-token".to_string(),
                    Sourced::Env("ANTHROPIC_PROXY_TOKEN".into())
                ),
            ])
        );
        nc.extra_headers.insert("x-kept".into(), REDACTED.into());
        assert_eq!(
            check(&nc, false).unwrap_err().field.as_deref(),
            Some("network_config.extra_headers.x-kept"),
            "nothing to keep on create"
        );
        assert_eq!(check(&nc, true).unwrap()["x-kept"], Sourced::Keep);
        nc.extra_headers
            .insert("x-steal".into(), "env.TOLLGATE_SECRET_KEY".into());
        assert_eq!(
            check(&nc, true).unwrap_err().field.as_deref(),
            Some("network_config.extra_headers.x-steal")
        );
        nc.extra_headers.clear();
        nc.extra_headers.insert("x-bad".into(), "a\nb".into());
        assert_eq!(
            check(&nc, false).unwrap_err().message,
            "invalid HTTP header value"
        );
        nc.extra_headers.clear();
        nc.extra_headers.insert("bad header".into(), "x".into());
        assert!(check(&nc, false).is_err());
        nc.extra_headers.clear();
        nc.extra_headers.insert("Host".into(), "x".into());
        assert!(check(&nc, false).is_err());
    }

    fn bedrock_key<'a>(
        aliases: &'a BTreeMap<String, String>,
        models: &'a [String],
    ) -> KeyShape<'a> {
        KeyShape {
            name: "k",
            models,
            weight: 1.0,
            aliases,
            description: None,
            has_value: false,
            bedrock: Some(BedrockShape {
                has_access_key: true,
                has_secret_key: true,
                region: Some(Some("us-east-1")),
                ..Default::default()
            }),
            vertex: None,
        }
    }

    #[test]
    fn aliases_must_be_requestable_model_ids() {
        let models = vec!["*".to_string()];
        let check = |alias: &str, target: &str| {
            let aliases = BTreeMap::from([(alias.to_string(), target.to_string())]);
            provider_key(
                ProviderShape::of(ProviderKind::Bedrock),
                &bedrock_key(&aliases, &models),
            )
        };
        assert!(check("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6").is_ok());
        assert!(
            check(
                "claude-haiku-4-5",
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
            )
            .is_ok()
        );
        for (alias, target, what) in [
            (
                "claude sonnet",
                "global.anthropic.claude-sonnet-4-6",
                "alias name",
            ),
            (
                "claude\nforged",
                "global.anthropic.claude-sonnet-4-6",
                "alias name",
            ),
            (
                "claude-sonnet-4-6",
                "global.anthropic claude",
                "alias target",
            ),
            (
                "claude-sonnet-4-6",
                "x".repeat(300).as_str(),
                "alias target",
            ),
        ] {
            let err = check(alias, target).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                Some(format!("aliases.{alias}").as_str())
            );
            assert!(err.message.contains(what), "{}", err.message);
        }
    }

    #[test]
    fn provider_key_rules() {
        let aliases = BTreeMap::new();
        let models = vec!["*".to_string()];
        let ok = bedrock_key(&aliases, &models);
        assert!(provider_key(ProviderShape::of(ProviderKind::Bedrock), &ok).is_ok());
        let field = |k: &KeyShape<'_>, kind| {
            provider_key(ProviderShape::of(kind), k)
                .unwrap_err()
                .field
                .unwrap()
        };

        // Anthropic keys need a value and no bedrock block.
        assert_eq!(field(&ok, ProviderKind::Anthropic), "bedrock_key_config");
        let anthropic = KeyShape {
            name: "a",
            models: &models,
            weight: 1.0,
            aliases: &aliases,
            description: None,
            has_value: false,
            bedrock: None,
            vertex: None,
        };
        assert_eq!(field(&anthropic, ProviderKind::Anthropic), "value");
        assert_eq!(
            field(&anthropic, ProviderKind::Bedrock),
            "bedrock_key_config"
        );

        let mut k = bedrock_key(&aliases, &models);
        k.bedrock.as_mut().unwrap().has_secret_key = false;
        assert_eq!(
            field(&k, ProviderKind::Bedrock),
            "bedrock_key_config.secret_key"
        );

        let mut k = bedrock_key(&aliases, &models);
        k.bedrock.as_mut().unwrap().region = None;
        assert_eq!(
            field(&k, ProviderKind::Bedrock),
            "bedrock_key_config.region"
        );
        k.bedrock.as_mut().unwrap().region = Some(None); // env reference
        assert!(provider_key(ProviderShape::of(ProviderKind::Bedrock), &k).is_ok());
        k.bedrock.as_mut().unwrap().region = Some(Some("mars"));
        assert_eq!(
            field(&k, ProviderKind::Bedrock),
            "bedrock_key_config.region"
        );

        let mut k = bedrock_key(&aliases, &models);
        k.bedrock.as_mut().unwrap().has_external_id = true;
        assert_eq!(
            field(&k, ProviderKind::Bedrock),
            "bedrock_key_config.external_id"
        );

        for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut k = bedrock_key(&aliases, &models);
            k.weight = w;
            assert_eq!(field(&k, ProviderKind::Bedrock), "weight");
        }

        let mut bad_aliases = BTreeMap::new();
        bad_aliases.insert("claude".to_string(), " ".to_string());
        let k = bedrock_key(&bad_aliases, &models);
        assert_eq!(field(&k, ProviderKind::Bedrock), "aliases.claude");
        let mut dup = BTreeMap::new();
        dup.insert("Claude".to_string(), "a".to_string());
        dup.insert("claude".to_string(), "b".to_string());
        assert!(
            provider_key(
                ProviderShape::of(ProviderKind::Bedrock),
                &bedrock_key(&dup, &models)
            )
            .is_err()
        );
        let mut empty_name = BTreeMap::new();
        empty_name.insert(String::new(), "x".to_string());
        assert_eq!(
            field(&bedrock_key(&empty_name, &models), ProviderKind::Bedrock),
            "aliases"
        );

        let empty_model = vec![String::new()];
        assert_eq!(
            field(&bedrock_key(&aliases, &empty_model), ProviderKind::Bedrock),
            "models[0]"
        );
    }

    fn vertex_key<'a>(aliases: &'a BTreeMap<String, String>, models: &'a [String]) -> KeyShape<'a> {
        KeyShape {
            name: "v",
            models,
            weight: 1.0,
            aliases,
            description: None,
            has_value: false,
            bedrock: None,
            vertex: Some(VertexShape {
                project_id: Some(Some("my-project-123")),
                region: Some(Some("us-east5")),
                has_auth_credentials: true,
                token_uri: None,
            }),
        }
    }

    #[test]
    fn vertex_key_rules() {
        let aliases = BTreeMap::new();
        let models = vec!["*".to_string()];
        let vertex = ProviderShape::of(ProviderKind::Vertex);
        let field = |k: &KeyShape<'_>, p: ProviderShape| provider_key(p, k).unwrap_err().field;
        assert!(provider_key(vertex, &vertex_key(&aliases, &models)).is_ok());

        let mut k = vertex_key(&aliases, &models);
        k.vertex = None;
        assert_eq!(field(&k, vertex).as_deref(), Some("vertex_key_config"));
        let mut k = vertex_key(&aliases, &models);
        k.has_value = true;
        assert_eq!(field(&k, vertex).as_deref(), Some("value"));
        let mut k = vertex_key(&aliases, &models);
        k.bedrock = Some(BedrockShape::default());
        assert_eq!(field(&k, vertex).as_deref(), Some("bedrock_key_config"));
        // vertex_key_config on the other kinds.
        for kind in [
            ProviderKind::Bedrock,
            ProviderKind::Anthropic,
            ProviderKind::OpenAi,
        ] {
            let mut k = vertex_key(&aliases, &models);
            k.has_value = true;
            assert_eq!(
                field(&k, ProviderShape::of(kind)).as_deref(),
                Some("vertex_key_config"),
                "{kind}"
            );
        }

        let with = |f: &dyn Fn(&mut VertexShape<'static>)| {
            let mut shape = VertexShape {
                project_id: Some(Some("my-project-123")),
                region: Some(Some("us-east5")),
                has_auth_credentials: true,
                token_uri: None,
            };
            f(&mut shape);
            let k = KeyShape {
                vertex: Some(shape),
                ..vertex_key(&aliases, &models)
            };
            provider_key(vertex, &k).map_err(|e| e.field.unwrap())
        };
        for region in [
            "us-east5",
            "europe-west1",
            "global",
            "us",
            "eu",
            "asia-northeast1",
        ] {
            assert_eq!(with(&|v| v.region = Some(Some(region))), Ok(()), "{region}");
        }
        for region in [
            "US-EAST5", "us_east5", "-us", "us-", "us--east", "", "u", "us/x",
        ] {
            assert_eq!(
                with(&|v| v.region = Some(Some(region))),
                Err("vertex_key_config.region".into()),
                "{region}"
            );
        }
        assert_eq!(with(&|v| v.region = Some(None)), Ok(()), "env reference");
        assert_eq!(
            with(&|v| v.region = None),
            Err("vertex_key_config.region".into())
        );
        assert_eq!(
            with(&|v| v.project_id = None),
            Err("vertex_key_config.project_id".into())
        );
        assert_eq!(with(&|v| v.project_id = Some(None)), Ok(()));
        assert_eq!(
            with(&|v| v.project_id = Some(Some("example.com:my-project"))),
            Ok(())
        );
        for bad in ["My-Project", "1project", "proj/x", "proj-", "a b"] {
            assert_eq!(
                with(&|v| v.project_id = Some(Some(bad))),
                Err("vertex_key_config.project_id".into()),
                "{bad}"
            );
        }
        assert_eq!(
            with(&|v| v.has_auth_credentials = false),
            Err("vertex_key_config.auth_credentials".into())
        );
        assert_eq!(
            with(&|v| v.token_uri = Some("http://127.0.0.1:9000/token")),
            Ok(())
        );
        assert_eq!(
            with(&|v| v.token_uri = Some("https://oauth2.example/token?x=1")),
            Ok(())
        );
        for bad in [
            "ftp://x/token",
            "oauth2.googleapis.com/token",
            "https://u:p@x/t",
        ] {
            assert_eq!(
                with(&|v| v.token_uri = Some(bad)),
                Err("vertex_key_config.token_uri".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn openai_keys_need_a_value_unless_the_provider_has_a_base_url() {
        let aliases = BTreeMap::new();
        let models = vec!["*".to_string()];
        let k = KeyShape {
            name: "o",
            models: &models,
            weight: 1.0,
            aliases: &aliases,
            description: None,
            has_value: false,
            bedrock: None,
            vertex: None,
        };
        let openai = ProviderShape::of(ProviderKind::OpenAi);
        let err = provider_key(openai, &k).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("value"));
        assert!(err.message.contains("base_url"), "{}", err.message);
        let local = ProviderShape {
            has_base_url: true,
            ..openai
        };
        assert!(provider_key(local, &k).is_ok());
        assert!(
            provider_key(
                openai,
                &KeyShape {
                    has_value: true,
                    vertex: None,
                    ..k
                }
            )
            .is_ok()
        );
        let k = KeyShape {
            has_value: true,
            bedrock: Some(BedrockShape::default()),
            ..k
        };
        assert_eq!(
            provider_key(local, &k).unwrap_err().field.as_deref(),
            Some("bedrock_key_config")
        );
    }

    /// A key file with the shape Google Cloud downloads; the private key is not a real one.
    const KEY_FILE_SECRET: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-FAKE-KEY";

    fn key_file(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
        let mut doc = serde_json::json!({
            "type": "service_account",
            "project_id": "my-project-123",
            "private_key_id": "0123456789abcdef",
            "private_key": format!("-----BEGIN PRIVATE KEY-----\n{KEY_FILE_SECRET}\n-----END PRIVATE KEY-----\n"),
            "client_email": "gateway@my-project-123.iam.gserviceaccount.com",
            "client_id": "123456789012345678901",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "universe_domain": "googleapis.com"
        });
        edit(doc.as_object_mut().unwrap());
        doc.to_string()
    }

    #[test]
    fn service_account_key_files() {
        let f = "vertex_key_config.auth_credentials";
        assert!(service_account_key(f, &key_file(|_| {})).is_ok());
        assert!(
            service_account_key(
                f,
                &key_file(|d| {
                    d.insert("token_uri".into(), "http://127.0.0.1:9000/token".into());
                })
            )
            .is_ok(),
            "a test double on loopback"
        );
        assert!(
            service_account_key(
                f,
                &key_file(|d| {
                    d.insert("token_uri".into(), "http://[::1]:9000/token".into());
                })
            )
            .is_ok()
        );
        let bad: Vec<(String, &str)> = vec![
            (
                format!("{{\"private_key\": \"{KEY_FILE_SECRET}"),
                "not valid JSON",
            ),
            (format!("[\"{KEY_FILE_SECRET}\"]"), "not a JSON object"),
            (KEY_FILE_SECRET.to_string(), "not valid JSON"),
            (
                key_file(|d| {
                    d.insert("type".into(), "authorized_user".into());
                }),
                "`type`",
            ),
            (
                key_file(|d| {
                    d.remove("client_email");
                }),
                "`client_email`",
            ),
            (
                key_file(|d| {
                    d.insert(
                        "private_key".into(),
                        format!("-----BEGIN RSA PRIVATE KEY-----\n{KEY_FILE_SECRET}\n-----END RSA PRIVATE KEY-----").into(),
                    );
                }),
                "`private_key`",
            ),
            (
                key_file(|d| {
                    d.insert("private_key".into(), KEY_FILE_SECRET.into());
                }),
                "`private_key`",
            ),
            (
                key_file(|d| {
                    d.insert("token_uri".into(), "http://oauth2.example/token".into());
                }),
                "`token_uri`",
            ),
            (
                key_file(|d| {
                    d.remove("token_uri");
                }),
                "`token_uri`",
            ),
            (
                key_file(|d| {
                    d.insert("client_email".into(), serde_json::json!(KEY_FILE_SECRET));
                    d.insert("type".into(), serde_json::json!(7));
                }),
                "`type`",
            ),
        ];
        for (raw, why) in bad {
            let err = service_account_key(f, &raw).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(f));
            assert!(err.message.contains(why), "{why}: {}", err.message);
            assert!(
                !err.message.contains(KEY_FILE_SECRET) && !err.message.contains("FAKE"),
                "the message repeats the secret: {}",
                err.message
            );
        }
        let long = "x".repeat(MAX_KEY_FILE_LEN + 1);
        assert!(service_account_key(f, &long).is_err());
    }

    #[test]
    fn vertex_references_the_allowlist_refuses_are_listed() {
        let t = crate::model::now();
        let key = ProviderKeyRecord {
            id: uuid::Uuid::new_v4(),
            provider: "vertex".into(),
            name: "k".into(),
            description: None,
            models: vec![],
            weight: 1.0,
            aliases: BTreeMap::new(),
            enabled: true,
            value: None,
            bedrock: None,
            vertex: Some(crate::model::VertexKeyRecord {
                project_id: Some(ValueSource::Env("PROJECT".into())),
                region: Some(ValueSource::Env("GOOGLE_CLOUD_REGION".into())),
                auth_credentials: Some(SealedSecret::Env("TOLLGATE_ADMIN_TOKEN".into())),
                token_uri: None,
            }),
            created_at: t,
            updated_at: t,
        };
        assert_eq!(
            refused_key_references(&key, &allow()),
            [
                "vertex_key_config.project_id",
                "vertex_key_config.auth_credentials"
            ]
        );
    }

    #[test]
    fn names() {
        assert!(provider_name("provider", "bedrock").is_ok());
        assert!(provider_name("provider", "bedrock-eu_2.x").is_ok());
        for bad in ["", "-x", "a/b", "with space", &"x".repeat(65)] {
            assert!(provider_name("provider", bad).is_err(), "{bad}");
        }
        assert!(display_name("name", "engineering-team").is_ok());
        assert!(display_name("name", " padded").is_err());
        assert!(display_name("name", "").is_err());
        assert!(is_aws_region("us-gov-west-1"));
        assert!(!is_aws_region("us-east"));
    }
}

//! The MCP gateway's configuration on the control plane (issue 13): MCP servers as the store
//! keeps them ([`McpServerRecord`]), the admin API's input and its validation
//! ([`McpServerInput`] → [`ServerChange`]), the sealing of their secrets, the tool allowlists of
//! keys and teams ([`tool_patterns`]), and the tool-call log's query and row types
//! ([`McpCallQuery`], [`McpCallRow`]). Pure: no I/O.
//!
//! Every value of a stdio server's `env` and of an HTTP server's `headers` is a secret, kept
//! like providers' extra-header values: a literal is sealed (AES-256-GCM, bound to the server's
//! id, the map and the entry's name: [`seal`]), an `env.NAME` reference (under the env
//! allowlist) is kept as written and resolved by the data plane. The API shows literals as
//! `"<redacted>"`; sent back in an update, `"<redacted>"` keeps the stored value of that name.
//!
//! Served tool names are `<server>__<tool>` ([`tollgate_proto::mcp::served_name`]); a key's and a
//! team's `mcp_tools` are patterns over them, and a server's `allowed_tools` patterns over the
//! server's own tool names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tollgate_proto::env::EnvAllowlist;
use tollgate_proto::model_pattern::ModelPattern;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::{CryptoError, SecretBox};
use crate::model::{REDACTED, SealedSecret, ValueSource};
use crate::validate::{self, Sourced, ValidationError};

/// Longest tool-call deadline a server may ask for (one hour).
pub const MAX_CALL_TIMEOUT_MS: u32 = 3_600_000;
/// Most `args`, `env` entries or `headers` of one server.
pub const MAX_ENTRIES: usize = 256;
/// Most patterns of one allowlist (`allowed_tools`, `mcp_tools`).
pub const MAX_PATTERNS: usize = 1_000;
/// Longest `command`, argument, `cwd` or `url`, in bytes.
const MAX_TEXT: usize = 4_096;

/// How the data plane talks to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A child process of the data plane, over its stdin and stdout.
    Stdio,
    /// A remote server, over Streamable HTTP.
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdio" => Some(Transport::Stdio),
            "http" => Some(Transport::Http),
            _ => None,
        }
    }
}

/// A server's transport settings, as stored (secrets sealed).
#[derive(Debug, Clone, PartialEq)]
pub enum TransportRecord {
    Stdio {
        command: String,
        args: Vec<String>,
        /// Variable name -> sealed literal or env reference.
        env: BTreeMap<String, SealedSecret>,
        /// Working directory (`None`: the data plane's).
        cwd: Option<String>,
    },
    Http {
        url: String,
        /// Header name -> sealed literal or env reference.
        headers: BTreeMap<String, SealedSecret>,
    },
}

impl TransportRecord {
    pub fn kind(&self) -> Transport {
        match self {
            TransportRecord::Stdio { .. } => Transport::Stdio,
            TransportRecord::Http { .. } => Transport::Http,
        }
    }
}

/// An MCP server, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerRecord {
    pub id: Uuid,
    /// [`tollgate_proto::mcp::check_server_name`]; cannot change.
    pub name: String,
    pub transport: TransportRecord,
    /// Patterns over the server's own tool names; empty: all.
    pub allowed_tools: Vec<String>,
    /// 0: the data plane's default (60 s).
    pub call_timeout_ms: u32,
    /// Disabled servers are kept but not published to data planes.
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Which map of a server a secret belongs to (part of its associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMap {
    Env,
    Headers,
}

impl SecretMap {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretMap::Env => "env",
            SecretMap::Headers => "headers",
        }
    }
}

/// Server ids are UUIDs and map names `env`/`headers`, so the text is unambiguous whatever the
/// entry's name.
fn aad(server: Uuid, map: SecretMap, name: &str) -> Vec<u8> {
    format!("tollgate/mcp_server/{server}/{}/{name}", map.as_str()).into_bytes()
}

/// Seals the literal value of entry `name` of `map` of server `server`.
pub fn seal(
    secrets: &SecretBox,
    server: Uuid,
    map: SecretMap,
    name: &str,
    plaintext: &str,
) -> Result<SealedSecret, CryptoError> {
    secrets
        .seal(plaintext, &aad(server, map, name))
        .map(SealedSecret::Encrypted)
}

/// The plaintext of a sealed entry, or the reference of an env one.
pub fn open(
    secrets: &SecretBox,
    server: Uuid,
    map: SecretMap,
    name: &str,
    value: &SealedSecret,
) -> Result<ValueSource, CryptoError> {
    match value {
        SealedSecret::Env(var) => Ok(ValueSource::Env(var.clone())),
        SealedSecret::Encrypted(sealed) => secrets
            .open(sealed, &aad(server, map, name))
            .map(ValueSource::Literal),
    }
}

/// `POST /api/mcp/servers` and `PUT /api/mcp/servers/{name}` body. In an update, omitted
/// fields stay as they are; `env` and `headers` given replace the stored map (an entry sent as
/// `"<redacted>"` keeps its stored value; entries left out are removed). Read-only fields of a
/// GET response are accepted, so it can be sent back as it was read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerInput {
    /// 1-20 characters of `a-z`, `0-9` and `-`, starting with a letter or digit: the prefix of
    /// the served tool names (`<name>__<tool>`). Required to create; cannot change (an update
    /// may repeat it).
    #[schema(example = "github")]
    #[serde(default)]
    pub name: Option<String>,
    /// Required to create.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// stdio: the program the data plane runs (found on its `PATH` unless absolute).
    #[serde(default)]
    #[schema(example = "npx")]
    pub command: Option<String>,
    /// stdio: its arguments (shown as they are: put credentials in `env`).
    #[serde(default)]
    #[schema(example = json!(["-y", "@modelcontextprotocol/server-github"]))]
    pub args: Option<Vec<String>>,
    /// stdio: its environment (besides `PATH`, `HOME` and `LANG` from the data plane's). Each
    /// value is a secret: a literal, or `env.NAME` resolved from the data plane's environment
    /// (under its env allowlist). Shown as `"<redacted>"` or `env.NAME`.
    #[serde(default)]
    #[schema(example = json!({"GITHUB_PERSONAL_ACCESS_TOKEN": "env.GITHUB_TOKEN"}))]
    pub env: Option<BTreeMap<String, String>>,
    /// stdio: its working directory (`null`: the data plane's).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub cwd: Option<Option<String>>,
    /// http: the server's Streamable HTTP endpoint, `http://` or `https://`, without
    /// credentials (put them in `headers`).
    #[serde(default)]
    #[schema(example = "https://mcp.example.com/mcp")]
    pub url: Option<String>,
    /// http: sent with every request to the server. Each value is a secret, as `env`'s.
    #[serde(default)]
    #[schema(example = json!({"Authorization": "Bearer sk-..."}))]
    pub headers: Option<BTreeMap<String, String>>,
    /// Patterns over the server's own tool names (exact, `*` globs, `regex:`; case-insensitive):
    /// only these are served. Omitted, `[]` or `["*"]`: all.
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// A tool call's deadline, 1 to 3600000 ms; 0 or omitted: the data plane's default (60 s).
    #[serde(default)]
    pub call_timeout_ms: Option<u32>,
    /// Default true. Disabled servers are not served.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Read-only; must equal the stored id if given.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Read-only; ignored.
    #[serde(default, rename = "refused_env_references")]
    pub _refused_env_references: Option<Vec<String>>,
    /// Read-only; ignored.
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<String>,
}

/// `null` as `Some(None)`, absent (with `#[serde(default)]`) as `None`.
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as Deserialize>::deserialize(d).map(Some)
}

/// A secret entry of a change: sealed (or a reference), or `"<redacted>"`: keep the stored one.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretInput {
    Set(SealedSecret),
    Keep,
}

/// A checked [`McpServerInput`] with its literal secrets sealed ([`McpServerInput::check`]);
/// [`ServerChange::apply`] makes the stored record of it.
#[derive(Debug, Clone, Default)]
pub struct ServerChange {
    pub transport: Option<Transport>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, SecretInput>>,
    pub cwd: Option<Option<String>>,
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, SecretInput>>,
    pub allowed_tools: Option<Vec<String>>,
    pub call_timeout_ms: Option<u32>,
    pub enabled: Option<bool>,
}

impl McpServerInput {
    /// Checks every field (errors name it by its JSON path) and seals literal secrets with
    /// `seal_literal` (for the server's id: [`seal`]). `update`: `"<redacted>"` is accepted (keep the stored value) and `name`
    /// must equal `path_name` when given; otherwise `name` and `transport` are required.
    pub fn check(
        &self,
        path_name: Option<&str>,
        env_allow: &EnvAllowlist,
        seal_literal: &dyn Fn(SecretMap, &str, &str) -> Result<SealedSecret, CryptoError>,
    ) -> Result<ServerChange, CheckError> {
        let update = path_name.is_some();
        match (&self.name, path_name) {
            (None, None) => return Err(ValidationError::new("name", "required").into()),
            (Some(name), None) => tollgate_proto::mcp::check_server_name(name)
                .map_err(|e| ValidationError::new("name", e.to_string()))?,
            (Some(given), Some(path)) if given != path => {
                return Err(ValidationError::new(
                    "name",
                    format!(
                        "MCP servers cannot be renamed ({given:?} differs from {path:?} in the path)"
                    ),
                )
                .into());
            }
            _ => {}
        }
        if !update && self.transport.is_none() {
            return Err(
                ValidationError::new("transport", "required: \"stdio\" or \"http\"").into(),
            );
        }
        if let Some(command) = &self.command {
            text("command", command)?;
        }
        if let Some(args) = &self.args {
            if args.len() > MAX_ENTRIES {
                return Err(ValidationError::new(
                    "args",
                    format!("at most {MAX_ENTRIES} arguments"),
                )
                .into());
            }
            for (i, a) in args.iter().enumerate() {
                if a.len() > MAX_TEXT || a.contains('\0') {
                    return Err(ValidationError::new(
                        format!("args[{i}]"),
                        format!("at most {MAX_TEXT} bytes, without NUL"),
                    )
                    .into());
                }
            }
        }
        if let Some(Some(cwd)) = &self.cwd {
            text("cwd", cwd)?;
        }
        if let Some(url) = &self.url {
            // Everyone who reads the configuration sees the URL (and the data planes show it in
            // errors), so a query string (where SaaS servers often take an API key) is refused:
            // credentials go in `headers`, which are sealed.
            if url.contains('?') {
                return Err(ValidationError::new(
                    "url",
                    "invalid url: no query string (put credentials in `headers`, which are kept secret)",
                )
                .into());
            }
            validate::http_url("url", url, true)?;
        }
        if let Some(t) = self.call_timeout_ms
            && t > MAX_CALL_TIMEOUT_MS
        {
            return Err(ValidationError::new(
                "call_timeout_ms",
                format!("must be between 1 and {MAX_CALL_TIMEOUT_MS} (0: the default, 60000)"),
            )
            .into());
        }
        let allowed_tools = self
            .allowed_tools
            .as_deref()
            .map(|list| tool_patterns("allowed_tools", list))
            .transpose()?
            .map(|list| {
                // `*` is every tool: stored as the empty list.
                if list.iter().any(|p| p == "*") {
                    Vec::new()
                } else {
                    list
                }
            });
        let env = self
            .env
            .as_ref()
            .map(|map| {
                secrets_of(
                    map,
                    SecretMap::Env,
                    update,
                    env_allow,
                    seal_literal,
                    |name| {
                        if validate::is_env_var_name(name) {
                            Ok(())
                        } else {
                            Err("invalid environment variable name: expected [A-Za-z_][A-Za-z0-9_]*"
                            .to_owned())
                        }
                    },
                )
            })
            .transpose()?;
        let headers = self
            .headers
            .as_ref()
            .map(|map| {
                secrets_of(
                    map,
                    SecretMap::Headers,
                    update,
                    env_allow,
                    seal_literal,
                    header_name,
                )
            })
            .transpose()?;
        Ok(ServerChange {
            transport: self.transport,
            command: self.command.clone(),
            args: self.args.clone(),
            env,
            cwd: self.cwd.clone(),
            url: self.url.clone(),
            headers,
            allowed_tools,
            call_timeout_ms: self.call_timeout_ms,
            enabled: self.enabled,
        })
    }
}

/// Why an input was refused: invalid, or a secret could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT || value.contains('\0') {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_TEXT} bytes, without NUL"),
        ));
    }
    Ok(())
}

/// Headers the MCP transport itself sets (or HTTP manages): refused in `headers`.
const MANAGED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
];

fn header_name(name: &str) -> Result<(), String> {
    let header = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| "invalid HTTP header name".to_owned())?;
    if MANAGED_HEADERS.contains(&header.as_str()) {
        return Err(format!(
            "the {header} header is set by the gateway's MCP client and cannot be configured"
        ));
    }
    Ok(())
}

fn secrets_of(
    map: &BTreeMap<String, String>,
    which: SecretMap,
    allow_keep: bool,
    env_allow: &EnvAllowlist,
    seal_literal: &dyn Fn(SecretMap, &str, &str) -> Result<SealedSecret, CryptoError>,
    check_name: impl Fn(&str) -> Result<(), String>,
) -> Result<BTreeMap<String, SecretInput>, CheckError> {
    let prefix = which.as_str();
    if map.len() > MAX_ENTRIES {
        return Err(ValidationError::new(prefix, format!("at most {MAX_ENTRIES} entries")).into());
    }
    let mut out = BTreeMap::new();
    for (name, raw) in map {
        let field = format!("{prefix}.{name}");
        check_name(name).map_err(|why| ValidationError::new(&field, why))?;
        let input = match validate::sourced(&field, raw, allow_keep, env_allow)? {
            Sourced::Env(var) => SecretInput::Set(SealedSecret::Env(var)),
            Sourced::Literal(value) => {
                let bad = match which {
                    SecretMap::Env => value.contains('\0'),
                    SecretMap::Headers => http::HeaderValue::from_str(&value).is_err(),
                };
                if bad {
                    return Err(ValidationError::new(
                        &field,
                        match which {
                            SecretMap::Env => "an environment value must not contain NUL",
                            SecretMap::Headers => "invalid HTTP header value",
                        },
                    )
                    .into());
                }
                SecretInput::Set(seal_literal(which, name, &value)?)
            }
            Sourced::Keep => SecretInput::Keep,
        };
        out.insert(name.clone(), input);
    }
    Ok(out)
}

/// The stored map a given map makes, `"<redacted>"` entries taken from `stored`.
fn merge(
    which: SecretMap,
    given: &BTreeMap<String, SecretInput>,
    stored: Option<&BTreeMap<String, SealedSecret>>,
) -> Result<BTreeMap<String, SealedSecret>, ValidationError> {
    let mut out = BTreeMap::new();
    for (name, input) in given {
        let value = match input {
            SecretInput::Set(v) => v.clone(),
            SecretInput::Keep => stored.and_then(|s| s.get(name)).cloned().ok_or_else(|| {
                ValidationError::new(
                    format!("{}.{name}", which.as_str()),
                    format!("{REDACTED:?} keeps the stored value, but none is stored"),
                )
            })?,
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

impl ServerChange {
    /// The transport this change makes of `stored` (`None` when creating): fields not given
    /// keep their stored value while the transport stays; a new transport takes only what is
    /// given. Fields of the other transport are refused.
    pub fn transport(
        &self,
        stored: Option<&TransportRecord>,
    ) -> Result<TransportRecord, ValidationError> {
        let kind = self
            .transport
            .or(stored.map(TransportRecord::kind))
            .ok_or_else(|| ValidationError::new("transport", "required: \"stdio\" or \"http\""))?;
        let only = |field: &str, given: bool, kind: Transport| {
            if given {
                Err(ValidationError::new(
                    field,
                    format!("not a setting of {} servers", kind.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        match kind {
            Transport::Stdio => {
                only("url", self.url.is_some(), kind)?;
                only("headers", self.headers.is_some(), kind)?;
                let (s_command, s_args, s_env, s_cwd) = match stored {
                    Some(TransportRecord::Stdio {
                        command,
                        args,
                        env,
                        cwd,
                    }) => (Some(command), Some(args), Some(env), cwd.as_ref()),
                    _ => (None, None, None, None),
                };
                let command = self
                    .command
                    .clone()
                    .or_else(|| s_command.cloned())
                    .ok_or_else(|| {
                        ValidationError::new("command", "required for a stdio server")
                    })?;
                let args = self
                    .args
                    .clone()
                    .or_else(|| s_args.cloned())
                    .unwrap_or_default();
                let env = match &self.env {
                    Some(given) => merge(SecretMap::Env, given, s_env)?,
                    None => s_env.cloned().unwrap_or_default(),
                };
                let cwd = match &self.cwd {
                    Some(cwd) => cwd.clone(),
                    None => s_cwd.cloned(),
                };
                Ok(TransportRecord::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                })
            }
            Transport::Http => {
                for (field, given) in [
                    ("command", self.command.is_some()),
                    ("args", self.args.is_some()),
                    ("env", self.env.is_some()),
                    ("cwd", self.cwd.is_some()),
                ] {
                    only(field, given, kind)?;
                }
                let (s_url, s_headers) = match stored {
                    Some(TransportRecord::Http { url, headers }) => (Some(url), Some(headers)),
                    _ => (None, None),
                };
                let url =
                    self.url.clone().or_else(|| s_url.cloned()).ok_or_else(|| {
                        ValidationError::new("url", "required for an http server")
                    })?;
                let headers = match &self.headers {
                    Some(given) => merge(SecretMap::Headers, given, s_headers)?,
                    None => s_headers.cloned().unwrap_or_default(),
                };
                Ok(TransportRecord::Http { url, headers })
            }
        }
    }

    /// Applies the change to a stored server (in the store's transaction).
    pub fn apply(&self, server: &mut McpServerRecord) -> Result<(), ValidationError> {
        server.transport = self.transport(Some(&server.transport))?;
        if let Some(tools) = &self.allowed_tools {
            server.allowed_tools.clone_from(tools);
        }
        if let Some(t) = self.call_timeout_ms {
            server.call_timeout_ms = t;
        }
        if let Some(e) = self.enabled {
            server.enabled = e;
        }
        Ok(())
    }

    /// The server this change creates.
    pub fn create(
        &self,
        id: Uuid,
        name: String,
        now: OffsetDateTime,
    ) -> Result<McpServerRecord, ValidationError> {
        Ok(McpServerRecord {
            id,
            name,
            transport: self.transport(None)?,
            allowed_tools: self.allowed_tools.clone().unwrap_or_default(),
            call_timeout_ms: self.call_timeout_ms.unwrap_or(0),
            enabled: self.enabled.unwrap_or(true),
            created_at: now,
            updated_at: now,
        })
    }
}

/// Checks a tool allowlist (`field`: its JSON name): at most [`MAX_PATTERNS`] patterns, each
/// compiling as a [`ModelPattern`]. Returned as given.
pub fn tool_patterns(field: &str, list: &[String]) -> Result<Vec<String>, ValidationError> {
    if list.len() > MAX_PATTERNS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_PATTERNS} patterns"),
        ));
    }
    for (i, p) in list.iter().enumerate() {
        ModelPattern::parse(p)
            .map_err(|e| ValidationError::new(format!("{field}[{i}]"), e.to_string()))?;
    }
    Ok(list.to_vec())
}

/// The server as the admin API (and the audit log) shows it: secrets as `"<redacted>"` or
/// `env.NAME`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct McpServerView {
    pub id: Uuid,
    #[schema(example = "github")]
    pub name: String,
    pub transport: Transport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Empty: every tool of the server.
    pub allowed_tools: Vec<String>,
    /// 0: the data plane's default (60 s).
    pub call_timeout_ms: u32,
    pub enabled: bool,
}

impl McpServerView {
    pub fn of(s: &McpServerRecord) -> Self {
        let shown = |m: &BTreeMap<String, SealedSecret>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.display()))
                .collect::<BTreeMap<_, _>>()
        };
        let mut view = McpServerView {
            id: s.id,
            name: s.name.clone(),
            transport: s.transport.kind(),
            command: None,
            args: None,
            env: None,
            cwd: None,
            url: None,
            headers: None,
            allowed_tools: s.allowed_tools.clone(),
            call_timeout_ms: s.call_timeout_ms,
            enabled: s.enabled,
        };
        match &s.transport {
            TransportRecord::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                view.command = Some(command.clone());
                view.args = Some(args.clone());
                view.env = Some(shown(env));
                view.cwd.clone_from(cwd);
            }
            TransportRecord::Http { url, headers } => {
                view.url = Some(url.clone());
                view.headers = Some(shown(headers));
            }
        }
        view
    }
}

/// The sealed values behind a server's `"<redacted>"` entries, `(map, "name=column text")`, for
/// the audit log's `changed` list (never written).
pub fn sealed_entries(s: &McpServerRecord) -> Vec<(&'static str, String)> {
    let (map, entries) = match &s.transport {
        TransportRecord::Stdio { env, .. } => ("env", env),
        TransportRecord::Http { headers, .. } => ("headers", headers),
    };
    entries
        .iter()
        .map(|(name, v)| (map, format!("{name}={}", v.to_column())))
        .collect()
}

/// The admin-API paths of a stored server's `env.NAME` references that `env` refuses.
pub fn refused_references(s: &McpServerRecord, env: &EnvAllowlist) -> Vec<String> {
    let (map, entries) = match &s.transport {
        TransportRecord::Stdio { env, .. } => ("env", env),
        TransportRecord::Http { headers, .. } => ("headers", headers),
    };
    entries
        .iter()
        .filter(|(_, v)| matches!(v, SealedSecret::Env(var) if !env.allows(var)))
        .map(|(name, _)| format!("{map}.{name}"))
        .collect()
}

/// One page of the tool-call log (`GET /api/mcp/calls`).
#[derive(Debug, Clone)]
pub struct McpCallQuery {
    /// Calls that started at or after this time.
    pub since: OffsetDateTime,
    /// Calls that started before this time.
    pub until: OffsetDateTime,
    pub virtual_key_id: Option<Uuid>,
    /// The team the call was billed to.
    pub team_id: Option<Uuid>,
    pub server: Option<String>,
    /// The tool's own name on its server.
    pub tool: Option<String>,
    pub status: Option<crate::usage_log::StatusFilter>,
    /// Whose calls the caller may see.
    pub scope: crate::usage_log::LogScope,
    /// Continue after this `(started_at, request_id)` (newest first).
    pub after: Option<(OffsetDateTime, String)>,
    pub limit: u32,
}

/// One stored tool call, with its key's current name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct McpCallRow {
    pub request_id: String,
    pub started_at: OffsetDateTime,
    pub virtual_key_id: String,
    /// The key's name; `None` once the key is deleted.
    pub key_name: Option<String>,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub server: String,
    pub tool: String,
    pub status: i32,
    pub error_class: String,
    pub latency_ms: i64,
}

#[cfg(test)]
mod tests;

//! `POST /api/providers/{provider}/keys/{key_id}/test`: has a connected data plane send one
//! minimal request with the key (see [`crate::probes`] and the data plane's `probe` module), so a
//! bad credential shows up before traffic does.
//!
//! The model defaults to one the key serves, chosen deterministically: its first listed model
//! that is not a pattern, else its first alias (by name). The answer is 200 whenever a data plane
//! answered, whatever the provider said (`ok` false with the provider's status and error); 503
//! without a connected data plane (or with too many tests running), 504 when the data plane does
//! not answer within 30 s. Every test that reaches a data plane (or fails to) writes a
//! `provider_key.test` audit row: `success` when the key worked, `failure` with the error
//! otherwise; refused requests (400, 404, 409) get their row from `record_refusals`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::audit::Audit;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, OptionalApiJson};
use super::parse_id;
use crate::ControlPlane;
use crate::model::ProviderKeyRecord;
use crate::probes::ProbeError;
use tollgate_proto::config::v1::ProbeRequest;

/// What to test a key with. The body may be omitted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyTestRequest {
    /// The model to send (resolved through the key's aliases, as a request's would be).
    /// Default: the key's first listed model that is not a pattern, else its first alias by
    /// name; required when it has neither.
    #[serde(default)]
    #[schema(example = "claude-haiku-4-5")]
    pub model: Option<String>,
}

/// What a data plane's test of the key found.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyTestResult {
    /// The provider answered with a 2xx.
    pub ok: bool,
    /// The provider's HTTP status; 0 when there was no answer.
    pub status: u16,
    /// From sending the request to the end of the answer (or the failure).
    pub latency_ms: u64,
    /// The model id sent upstream (after the key's aliases).
    pub model: String,
    /// The node id of the data plane that ran the test.
    pub data_plane: String,
    /// The config version the data plane ran it with.
    pub config_version: u64,
    /// Why it failed; null when `ok`.
    pub error: Option<KeyTestError>,
}

/// A failed key test.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyTestError {
    /// The provider's error type (`UnrecognizedClientException`, `InvalidSignatureException`,
    /// `authentication_error`, ...), else `http_<status>`; without an answer the gateway's:
    /// `upstream_unreachable`, `upstream_timeout`, `gateway_config` (a credential or setting the
    /// data plane cannot produce, such as an unset `env.NAME`), `key_not_loaded` (`busy` and
    /// `config_behind`, the data plane unable to run the test now, are a 503 instead).
    #[schema(example = "InvalidSignatureException")]
    pub class: String,
    /// The provider's message (control characters other than newlines and tabs removed, cut at
    /// 2 KiB), else the gateway's.
    pub message: String,
}

/// The model a test of `key` sends when none is given (see the module docs).
pub(crate) fn default_model(key: &ProviderKeyRecord) -> Option<&str> {
    key.models
        .iter()
        .map(String::as_str)
        .find(|m| !m.is_empty() && !m.contains('*') && !m.starts_with("regex:"))
        .or_else(|| key.aliases.keys().next().map(String::as_str))
}

/// Test a provider key: a connected data plane sends it one minimal request (`max_tokens` 1,
/// a one-word prompt, not streamed) through the path that serves traffic, outside routing,
/// limits and outlier detection. Costs the provider's price of a few input tokens and one output
/// token; not recorded as usage. Admins only; audited as `provider_key.test`.
#[utoipa::path(
    post,
    path = "/api/providers/{provider}/keys/{key_id}/test",
    tag = "keys",
    params(
        ("provider" = String, Path, description = "Provider name"),
        ("key_id" = Uuid, Path, description = "Key id"),
    ),
    request_body(content = Option<KeyTestRequest>, description = "Optional: the model to test with"),
    responses(
        (status = 200, description = "A data plane ran the test (`ok` says whether the provider accepted the key)", body = KeyTestResult),
        (status = 400, description = "Malformed id or body, an invalid model, or no model given for a key that lists none", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such provider or key", body = ErrorBody),
        (status = 409, description = "The key is disabled (data planes do not load disabled keys)", body = ErrorBody),
        (status = 503, description = "No data plane is connected, or too many tests are running", body = ErrorBody),
        (status = 504, description = "The data plane did not answer in time", body = ErrorBody),
    )
)]
pub(crate) async fn test_key(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath((provider, key_id)): ApiPath<(String, String)>,
    OptionalApiJson(req): OptionalApiJson<KeyTestRequest>,
) -> Result<Json<KeyTestResult>, ApiError> {
    let id = parse_id("key_id", &key_id)?;
    let req = req.unwrap_or_default();
    let key = cp
        .store()
        .get_key(&provider, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider {provider:?} has no key {id}")))?;
    let model = match req.model.as_deref().map(str::trim) {
        Some(model) => {
            tollgate_proto::model_id::check(model)
                .map_err(|e| ApiError::invalid_field("model", e.to_string()))?;
            model.to_owned()
        }
        None => default_model(&key)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "model",
                    "the key lists no model to test with (only patterns, and no aliases): name one",
                )
            })?
            .to_owned(),
    };
    if !key.enabled {
        return Err(ApiError::Conflict(format!(
            "key {id} is disabled: data planes do not load disabled keys, so it cannot be \
             tested; enable it first"
        )));
    }
    let event = audit
        .event(
            "provider_key.test",
            format!("providers/{provider}/keys/{id}"),
        )
        .with("model", json!(model));
    let probe = ProbeRequest {
        provider: provider.clone(),
        key_id: id.to_string(),
        model,
        config_version: cp.published_version(),
        ..ProbeRequest::default()
    };
    let (data_plane, result) = match cp.probe_key(probe).await {
        Ok(answer) => answer,
        Err(e) => {
            let (status, error) = match &e {
                ProbeError::TimedOut(..) => (504, ApiError::GatewayTimeout(e.to_string())),
                _ => (503, ApiError::Unavailable(e.to_string())),
            };
            let row = event.failure(&e.to_string()).with("status", json!(status));
            if let Err(e) = cp.store().append_audit(&row).await {
                tracing::warn!(error = %e, "cannot write the audit row of a key test");
            }
            return Err(error);
        }
    };
    // The data plane could not run the test now (its probes are all in use, or it has not
    // applied the key's config yet): the key is untested, a 503 to retry, not a failed key.
    if !result.ok && matches!(result.error_class.as_str(), "busy" | "config_behind") {
        let message = format!(
            "data plane {data_plane} could not test the key now ({}): {}; try again",
            result.error_class, result.error_message
        );
        let row = event.failure(&message).with("status", json!(503));
        if let Err(e) = cp.store().append_audit(&row).await {
            tracing::warn!(error = %e, "cannot write the audit row of a key test");
        }
        return Err(ApiError::Unavailable(message));
    }
    let answer = KeyTestResult {
        ok: result.ok,
        status: u16::try_from(result.status).unwrap_or(0),
        latency_ms: result.latency_ms,
        model: result.model,
        data_plane,
        config_version: result.config_version,
        error: (!result.ok).then_some(KeyTestError {
            class: result.error_class,
            message: result.error_message,
        }),
    };
    let row = event
        .with("ok", json!(answer.ok))
        .with("upstream_status", json!(answer.status))
        .with("latency_ms", json!(answer.latency_ms))
        .with("model_sent", json!(answer.model))
        .with("data_plane", json!(answer.data_plane))
        .with("tested_config_version", json!(answer.config_version));
    let row = match &answer.error {
        None => row.success(),
        Some(e) => row.with("error_class", json!(e.class)).failure(&e.message),
    };
    if let Err(e) = cp.store().append_audit(&row).await {
        tracing::warn!(error = %e, "cannot write the audit row of a key test");
    }
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn key(models: &[&str], aliases: &[(&str, &str)]) -> ProviderKeyRecord {
        ProviderKeyRecord {
            id: uuid::Uuid::nil(),
            provider: "p".into(),
            name: "k".into(),
            description: None,
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            weight: 1.0,
            aliases: aliases
                .iter()
                .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            enabled: true,
            value: None,
            bedrock: None,
            vertex: None,
            created_at: crate::model::now(),
            updated_at: crate::model::now(),
        }
    }

    #[test]
    fn the_default_model_is_the_first_listed_one_then_the_first_alias() {
        assert_eq!(
            default_model(&key(
                &["*", "claude-*", "claude-haiku-4-5", "x"],
                &[("a", "b")]
            )),
            Some("claude-haiku-4-5")
        );
        assert_eq!(
            default_model(&key(&["*"], &[("sonnet", "s-id"), ("haiku", "h-id")])),
            Some("haiku"),
            "aliases by name; the alias (not its target) is sent, to resolve as traffic does"
        );
        assert_eq!(default_model(&key(&["regex:claude.*"], &[])), None);
        assert_eq!(default_model(&key(&[], &[])), None);
    }
}

//! Bedrock InvokeModel / InvokeModelWithResponseStream / CountTokens with the native Anthropic
//! body, signed with SigV4 (or a Bedrock API key as a bearer token); models that are not
//! Anthropic's go through Converse / ConverseStream instead ([`converse`]), with the same
//! signing, credentials and error mapping.
//!
//! Streams are decoded frame by frame as bytes arrive and every event is written to the client
//! at once as Anthropic SSE. Bedrock sends no keep-alives, so after `sse_ping_interval` of
//! silence the relay sends its own `ping` event; Claude Code aborts streams silent for 300 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::response::Response;
use bytes::BytesMut;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::Full;
use tollgate_protocol::anthropic::{ApiError, ErrorKind};
use tollgate_protocol::bedrock::{self as translate, StreamTranslator};
use tollgate_protocol::eventstream;
use tollgate_protocol::response_model::read_message;

use super::{
    Call, End, MAX_UPSTREAM_BODY, Operation, Outcome, Step, StreamTranslation, UpstreamResponse,
    config_error, fail, name_served_by,
};
use crate::DataPlane;
use crate::error::{ProxyError, error_response};
use crate::logsafe::log_safe;
use crate::runtime::KeyCredential;
use crate::server::Draft;
use crate::signing::{BedrockCredential, CredentialError, ToSign, sign_request};
use crate::upstream;

mod converse;

/// Headers that are signed and sent with every Bedrock request (besides `host`, `x-amz-date`
/// and, with temporary credentials, `x-amz-security-token`).
const SIGNED_HEADERS: [(&str, &str); 2] = [
    ("accept", "application/json"),
    ("content-type", "application/json"),
];

/// One attempt: the request translated, signed and sent; the answer's body is not read.
pub(crate) async fn send(c: &Call<'_>, request_id: &str) -> Outcome {
    let resp = prepare_and_send(c).await?;
    // Cached credentials (default chain, assumed role) may have been revoked or rotated since
    // they were fetched: when Bedrock rejects them, fetch fresh ones and retry once.
    if let KeyCredential::Bedrock(auth) = &c.key().credential
        && auth.is_cached()
        && credential_rejected(&resp)
    {
        tracing::warn!(
            request_id = %request_id,
            provider_key = %c.key().name,
            "Bedrock rejected cached credentials; refreshing them and retrying once"
        );
        auth.invalidate();
        return prepare_and_send(c).await;
    }
    Ok(resp)
}

/// Whether an upstream answer says the credentials themselves are bad (not the request).
fn credential_rejected(resp: &UpstreamResponse) -> bool {
    if !matches!(resp.status().as_u16(), 400 | 401 | 403) {
        return false;
    }
    let error_type = resp
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(translate::sanitize_error_type)
        .unwrap_or_default();
    matches!(
        error_type,
        "ExpiredTokenException"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
    )
}

async fn prepare_and_send(c: &Call<'_>) -> Result<UpstreamResponse, ProxyError> {
    let req = prepare(c).await?;
    c.provider
        .client
        .send(&c.provider.name, req, c.head_timeout())
        .await
}

/// Most distinct dropped betas logged at info (a client sending ever new names cannot grow the
/// set; beyond it they are only in the per-request debug line).
const MAX_LOGGED_BETAS: usize = 64;

/// Betas already logged as dropped, process-wide, as nonzero hashes (0: a free slot). Claude
/// Code sends a beta Bedrock never takes (`claude-code-20250219`) on every request, so the
/// common case (already logged) is a scan of atomics: no lock, no allocation.
static LOGGED_BETAS: [AtomicU64; MAX_LOGGED_BETAS] =
    [const { AtomicU64::new(0) }; MAX_LOGGED_BETAS];

/// Whether `beta` looks like a beta name (`claude-code-20250219`): only those are logged at
/// info, so junk in a header cannot take the slots real names need.
fn beta_shaped(beta: &str) -> bool {
    (1..=64).contains(&beta.len())
        && beta
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Logs each distinct beta Bedrock does not accept once, at info, with the body fields that
/// leave with it ([`translate::BETA_FIELDS`]). Two requests racing on a new name may both log
/// it; that is all a race costs.
fn log_dropped_betas_once(dropped: &[String], model: &str) {
    for beta in dropped.iter().filter(|b| beta_shaped(b)) {
        let hash = {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(beta.as_str(), &mut h);
            std::hash::Hasher::finish(&h) | 1
        };
        if LOGGED_BETAS
            .iter()
            .any(|slot| slot.load(Ordering::Relaxed) == hash)
        {
            continue;
        }
        let claimed = LOGGED_BETAS.iter().any(|slot| {
            slot.compare_exchange(0, hash, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        });
        if !claimed {
            continue;
        }
        let fields: Vec<&str> = translate::BETA_FIELDS
            .iter()
            .filter(|(b, _)| b == beta)
            .map(|(_, f)| f.path())
            .collect();
        tracing::info!(
            beta = %log_safe(beta),
            model = %model,
            body_fields_removed = ?fields,
            "anthropic-beta value not accepted by Bedrock for this model: not forwarded (logged once per value)"
        );
    }
}

fn body_error(e: translate::BodyError) -> ProxyError {
    ProxyError::invalid_request(e.to_string())
}

/// Credentials that could not be produced: the kind of failure for the client, the SDK's text
/// for the log.
fn credential_error(e: &CredentialError) -> ProxyError {
    config_error(format!(
        "Bedrock credentials unavailable: {}",
        e.client_message()
    ))
    .with_detail(e.detail())
}

/// The model id as it goes into the URL: the routed one, below the key's ARN prefix when an
/// alias named a resource rather than an ARN.
fn model_id<'c>(c: &'c Call<'_>) -> std::borrow::Cow<'c, str> {
    let id = c.upstream_model.as_str();
    if let KeyCredential::Bedrock(auth) = &c.key().credential
        && let Some(prefix) = &auth.arn_prefix
        && c.via_alias
        && !id.starts_with("arn:")
    {
        return format!("{prefix}:{id}").into();
    }
    id.into()
}

/// Whether the call goes to Converse (a model that is not Anthropic's) rather than InvokeModel.
fn uses_converse(c: &Call<'_>) -> bool {
    tollgate_protocol::bedrock::converse::uses_converse(&model_id(c))
}

/// The InvokeModel operation (last path segment) and body: the native Anthropic body, with the
/// betas and beta-dependent fields of the model's family.
fn invoke_operation_and_body(c: &Call<'_>) -> Result<(&'static str, Vec<u8>), ProxyError> {
    let betas = c.betas();
    Ok(match (c.op, c.stream) {
        (Operation::CountTokens, _) => (
            "count-tokens",
            translate::count_tokens_body_for(c.parsed, &betas, &c.upstream_model)
                .map_err(body_error)?,
        ),
        (Operation::Messages, stream) => {
            let invoke = translate::invoke_body_for(c.parsed, &betas, &c.upstream_model)
                .map_err(body_error)?;
            if !invoke.dropped_betas.is_empty() {
                tracing::debug!(
                    dropped = ?invoke.dropped_betas,
                    removed_fields = ?invoke.removed_fields,
                    "anthropic-beta values Bedrock does not accept were not forwarded"
                );
                log_dropped_betas_once(&invoke.dropped_betas, &c.upstream_model);
            }
            (
                if stream {
                    "invoke-with-response-stream"
                } else {
                    "invoke"
                },
                invoke.body,
            )
        }
    })
}

async fn prepare(c: &Call<'_>) -> Result<Request<Full<Bytes>>, ProxyError> {
    let key = c.key();
    let KeyCredential::Bedrock(auth) = &key.credential else {
        return Err(config_error("the provider key has no Bedrock credentials")
            .with_detail(format!("provider key {:?}", key.name)));
    };
    let mut model_id = model_id(c);
    // Claude through InvokeModel with its native body; every other model through Converse.
    let (operation, body, signed_headers) =
        if tollgate_protocol::bedrock::converse::uses_converse(&model_id) {
            let (operation, body) =
                converse::operation_and_body(c.op, c.stream, c.parsed, &model_id)?;
            let headers = if operation == "converse-stream" {
                &converse::STREAM_HEADERS
            } else {
                &converse::JSON_HEADERS
            };
            (operation, body, headers)
        } else {
            let (operation, body) = invoke_operation_and_body(c)?;
            (operation, body, &SIGNED_HEADERS)
        };
    if c.op == Operation::CountTokens {
        model_id = translate::count_tokens_model_id(&model_id)
            .to_owned()
            .into();
    }
    let region = auth
        .region()
        .map_err(|e| super::setting_unavailable("region", e))?;
    let url = match &c.provider.base_url {
        Some(base) => format!(
            "{base}/model/{}/{operation}",
            translate::model_path_segment(&model_id)
        ),
        None => format!(
            "https://bedrock-runtime.{region}.amazonaws.com/model/{}/{operation}",
            translate::model_path_segment(&model_id)
        ),
    };
    let credential = auth.credential().await.map_err(|e| credential_error(&e))?;
    let uri = upstream::parse_url(&url)?;
    let mut headers = http::HeaderMap::with_capacity(8);
    for (name, value) in *signed_headers {
        headers.insert(name, HeaderValue::from_static(value));
    }
    match credential {
        BedrockCredential::Bearer(token) => {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| config_error("the Bedrock API key is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        BedrockCredential::SigV4(creds) => {
            let signed = sign_request(
                &auth.signing_key,
                &ToSign {
                    credentials: &creds,
                    region: &region,
                    time: SystemTime::now(),
                    method: "POST",
                    url: &url,
                    headers: signed_headers,
                    body: &body,
                },
            )
            .map_err(|e| {
                config_error("could not sign the request to Bedrock").with_detail(e.to_string())
            })?;
            for (name, value) in signed {
                let mut value = HeaderValue::try_from(value)
                    .map_err(|_| config_error("SigV4 produced an invalid header"))?;
                value.set_sensitive(name != "x-amz-date");
                headers.insert(name, value);
            }
        }
    }
    let extra_headers = c
        .provider
        .extra_headers
        .resolve()
        .map_err(|e| super::setting_unavailable("extra headers", e))?;
    Ok(upstream::post(
        uri,
        headers,
        &extra_headers,
        Bytes::from(body),
    ))
}

/// The client's response to an answer: errors mapped to Anthropic's shape, answers
/// translated (streams event by event).
pub(crate) async fn respond(
    dp: Arc<DataPlane>,
    c: Call<'_>,
    draft: Draft,
    resp: UpstreamResponse,
) -> Response {
    let provider = &c.provider;
    let status = resp.status();
    if !status.is_success() {
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = upstream::read_body(&provider.name, resp, c.body_timeout(), MAX_UPSTREAM_BODY)
            .await
            .unwrap_or_default();
        let api = translate::map_error(status.as_u16(), error_type.as_deref(), &body);
        return upstream_error(&dp, &c, draft, &api);
    }
    let converse = uses_converse(&c);
    if c.stream {
        if converse {
            let translation =
                converse::ConverseToSse::new(c.parsed.model.as_str(), &draft.record.request_id);
            return super::translated_stream(dp, &c, draft, resp, translation);
        }
        let translation = EventStreamToSse {
            decoder: eventstream::Decoder::default(),
            translator: StreamTranslator::reporting_model(c.parsed.model.as_str()),
        };
        return super::translated_stream(dp, &c, draft, resp, translation);
    }
    let body = match upstream::read_body(&provider.name, resp, c.body_timeout(), MAX_UPSTREAM_BODY)
        .await
    {
        Ok(b) => b,
        Err(e) => return fail(&dp, draft, e),
    };
    let mut draft = draft;
    let body = match c.op {
        Operation::CountTokens => match translate::count_tokens_response(&body) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return fail(
                    &dp,
                    draft,
                    ProxyError::new(
                        ErrorKind::Api,
                        "upstream_invalid",
                        format!("Bedrock count-tokens answer not understood: {e}"),
                    )
                    .with_status(StatusCode::BAD_GATEWAY),
                );
            }
        },
        // Converse: an Anthropic Message made from the reply, reporting the requested name.
        Operation::Messages if converse => {
            match converse::message(&body, &c.parsed.model, &draft.record.request_id) {
                Ok((message, usage)) => {
                    if let Some(u) = &usage {
                        draft.set_usage(u);
                    }
                    message
                }
                Err(e) => {
                    return fail(
                        &dp,
                        draft,
                        ProxyError::new(ErrorKind::Api, "upstream_invalid", e.to_string())
                            .with_status(StatusCode::BAD_GATEWAY),
                    );
                }
            }
        }
        // The answer reports the model name the client asked for (Claude Code keeps a turn's
        // thinking blocks only when it matches); the served model is in the headers. The body
        // is read once for that and its usage.
        Operation::Messages => {
            let answer = read_message(&body, Some(&c.parsed.model));
            if let Some(u) = &answer.usage {
                draft.set_usage(u);
            }
            answer.body.map_or(body, Bytes::from)
        }
    };
    super::message_answer(&dp, &c, draft, body)
}

fn upstream_error(dp: &DataPlane, c: &Call<'_>, mut draft: Draft, api: &ApiError) -> Response {
    tracing::warn!(
        request_id = %draft.record.request_id,
        status = api.status,
        error_type = api.kind.as_str(),
        message = %log_safe(&api.message),
        "Bedrock returned an error"
    );
    let mut resp = error_response(api, &draft.record.request_id, false);
    name_served_by(resp.headers_mut(), c);
    draft.capture_error(api);
    draft.finish(dp, api.status, "upstream_error");
    resp
}

/// Bedrock's event stream, decoded frame by frame, as Anthropic SSE. All the events completed
/// by one upstream chunk go out together, at once.
struct EventStreamToSse {
    decoder: eventstream::Decoder,
    translator: StreamTranslator,
}

impl StreamTranslation for EventStreamToSse {
    fn on_chunk(&mut self, chunk: &Bytes) -> Step {
        self.decoder.push(chunk);
        // One event (the usual case) goes out as translated; several are joined.
        let mut out = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        let mut end = None;
        loop {
            let message = match self.decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    end = Some(End::bad_gateway(
                        "upstream_corrupt",
                        format!("corrupt upstream event stream: {e}"),
                    ));
                    break;
                }
            };
            match self.translator.on_message(&message) {
                Ok(sse) if sse.is_empty() => {}
                Ok(sse) if out.is_empty() && joined.is_none() => out = sse,
                Ok(sse) => joined
                    .get_or_insert_with(|| BytesMut::from(&out[..]))
                    .extend_from_slice(&sse),
                Err(e) => {
                    end = Some(End::bad_gateway(
                        "upstream_invalid",
                        format!("upstream event not understood: {e}"),
                    ));
                    break;
                }
            }
            if let Some(exception) = self.translator.terminal_error() {
                end = Some(End::Upstream {
                    status: exception.status,
                    error_type: exception.kind.as_str(),
                    message: exception.message.clone(),
                });
                break;
            }
        }
        Step {
            out: joined.map_or(out, BytesMut::freeze),
            end,
        }
    }

    fn on_end(&mut self) -> Result<Bytes, String> {
        self.decoder.finish().map_err(|e| e.to_string())?;
        self.translator.finish().map_err(|e| e.to_string())?;
        Ok(Bytes::new())
    }

    fn usage(&self) -> Option<tollgate_protocol::anthropic::Usage> {
        self.translator.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::beta_shaped;

    /// Only names that look like betas may take one of the slots of the logged-once set.
    #[test]
    fn only_beta_shaped_names_are_logged_at_info() {
        for name in ["claude-code-20250219", "extended-cache-ttl-2025-04-11"] {
            assert!(beta_shaped(name), "{name}");
        }
        for junk in ["", "Claude-Code", "a b", "x\ny", "é", &"a".repeat(65)] {
            assert!(!beta_shaped(junk), "{junk:?}");
        }
    }
}

//! Google Vertex AI's Anthropic models: the Anthropic body without `model` and with
//! `anthropic_version: vertex-2023-10-16` (`tollgate_protocol::vertex`), posted to
//! `…/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
//! (`:streamRawPredict` for streams) with an OAuth 2.0 access token obtained from the key's
//! service account ([`crate::google`]). `anthropic-*` headers go as they are (betas). Answers
//! are Anthropic's and are relayed like the Anthropic API's ([`super::anthropic::respond`]);
//! errors in Google's envelope are turned into Anthropic's there.

use axum::body::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use tollgate_protocol::vertex::{self, Call as VertexCall};

use super::{Call, Operation, Outcome, config_error};
use crate::error::ProxyError;
use crate::google::TokenError;
use crate::runtime::KeyCredential;
use crate::upstream;

/// One attempt: the request built and sent with the cached access token. When Vertex says the
/// token is not valid (401), the token is fetched again and the request sent once more.
pub(crate) async fn send(c: &Call<'_>, request_id: &str) -> Outcome {
    let resp = prepare_and_send(c).await?;
    if resp.status() == http::StatusCode::UNAUTHORIZED
        && let KeyCredential::Vertex(auth) = &c.key().credential
    {
        tracing::warn!(
            request_id = %request_id,
            provider_key = %c.key().name,
            "Vertex AI refused the cached access token; fetching a new one and retrying once"
        );
        auth.invalidate();
        return prepare_and_send(c).await;
    }
    Ok(resp)
}

async fn prepare_and_send(c: &Call<'_>) -> Outcome {
    let req = prepare(c).await?;
    c.provider
        .client
        .send(&c.provider.name, req, c.head_timeout())
        .await
}

fn token_error(e: TokenError) -> ProxyError {
    match e {
        // Unreachable or too slow: classified like the upstream itself (another key may serve).
        TokenError::Transport(e) => e,
        e => config_error(format!(
            "Vertex AI access token unavailable: {}",
            e.client_message()
        ))
        .with_detail(e.to_string()),
    }
}

async fn prepare(c: &Call<'_>) -> Result<Request<Full<Bytes>>, ProxyError> {
    let KeyCredential::Vertex(auth) = &c.key().credential else {
        return Err(config_error("provider key has no Vertex AI settings"));
    };
    let project = auth
        .project
        .resolve()
        .map_err(|e| super::setting_unavailable("project_id", e))?;
    let region = auth
        .region
        .resolve()
        .map_err(|e| super::setting_unavailable("region", e))?;
    if !vertex::is_path_safe(&project) || !vertex::is_path_safe(&region) {
        return Err(config_error(
            "this provider key's Vertex AI project_id or region is not a valid name",
        ));
    }
    let call = match (c.op, c.stream) {
        (Operation::CountTokens, _) => VertexCall::CountTokens,
        (Operation::Messages, true) => VertexCall::StreamPredict,
        (Operation::Messages, false) => VertexCall::Predict,
    };
    let base = match c.provider.base_url.as_deref() {
        Some(b) => b.to_owned(),
        None => vertex::base_url(&region),
    };
    let uri = upstream::parse_url(&format!(
        "{base}{}",
        vertex::path(&project, &region, &c.upstream_model, call)
    ))?;
    let body = Bytes::from(vertex::body(c.parsed, &c.upstream_model, call));
    let bearer = auth
        .bearer(
            &c.provider.client,
            &c.provider.name,
            c.provider.response_header_timeout,
        )
        .await
        .map_err(token_error)?;
    let mut headers = http::HeaderMap::with_capacity(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::AUTHORIZATION, bearer);
    for (name, value) in &c.headers {
        let n = name.as_str();
        // The version is in the body on Vertex; betas stay headers.
        if n.starts_with("anthropic-") && n != "anthropic-version" {
            headers.append(name, value.clone());
        }
    }
    let extra_headers = c
        .provider
        .extra_headers
        .resolve()
        .map_err(|e| super::setting_unavailable("extra headers", e))?;
    Ok(upstream::post(uri, headers, &extra_headers, body))
}

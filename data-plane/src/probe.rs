//! Provider-key probes: the control plane's "test this key" ([`ProbeRequest`] on the Watch
//! stream, or in process in all-in-one), run with this node's current runtime.
//!
//! A probe is one minimal Messages call — `max_tokens` 1, the one-word prompt [`PROMPT`], not
//! streamed — sent through [`providers::send`], the path that serves traffic (credentials
//! resolved at use, SigV4 signing, the provider's pooled upstream client, its extra headers and
//! timeouts), to exactly the named key. Routing, virtual keys, limits and outlier detection are
//! left out: the key is used even when it is ejected, and the probe's outcome does not count
//! towards its health.
//!
//! * **Config version.** The request names the version that holds the key; a node serving an
//!   older one waits up to [`CONFIG_WAIT`] for it, then answers `config_behind`. A key missing
//!   from the config it serves (deleted, or disabled: disabled keys are not loaded) is
//!   `key_not_loaded`.
//! * **Result.** Any answer from the provider is a result: `ok` for a 2xx, otherwise the
//!   provider's status with its error type and message ([`upstream_error`]: control characters
//!   other than newlines dropped, cut at 2 KiB, and scrubbed of the key's own API key should the
//!   provider echo it). No answer is status 0 with
//!   the gateway's class (`upstream_unreachable`, `upstream_timeout`, `gateway_config`); the
//!   internal detail of such an error is logged, never returned.
//! * **Cost.** A probe costs the provider's price of a few input tokens and one output token.
//!   It is not a usage record (it has no virtual key): it is logged as one `provider key probed`
//!   event with the token counts the provider reported.
//! * **Bounds.** At most [`MAX_IN_FLIGHT`] probes run at once on a node (others are answered
//!   `busy` at once), and a probe takes at most [`PROBE_TIMEOUT`] plus its config wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http::HeaderMap;
use tokio::sync::Semaphore;
use tollgate_proto::config::v1::{ProbeRequest, ProbeResult};

use crate::DataPlane;
use crate::logsafe::{log_safe, log_safe_opt};
use crate::providers::{self, Call, Operation};
use crate::runtime::{KeyCredential, Runtime};

/// The prompt of a probe.
pub const PROMPT: &str = "ping";
/// Longest a probe waits for the config version that holds its key.
pub const CONFIG_WAIT: Duration = Duration::from_secs(10);
/// Longest a probe's upstream call takes (below the control plane's 30 s, so the node's answer
/// arrives before the control plane gives up).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Probes running at once on one node.
pub const MAX_IN_FLIGHT: usize = 4;
/// Longest error message returned (bytes, on a character boundary): room for AWS's signature
/// mismatch message with its canonical request and string to sign.
const MAX_MESSAGE: usize = 2048;
/// Largest upstream answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// How often the config version is checked while waiting for it.
const CONFIG_POLL: Duration = Duration::from_millis(20);

/// The probes running on one node (see the module docs).
#[derive(Debug)]
pub struct Probes {
    running: Semaphore,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            running: Semaphore::new(MAX_IN_FLIGHT),
        }
    }
}

impl DataPlane {
    /// Runs one provider-key probe with the current runtime (see [`crate::probe`]). Never
    /// fails: every outcome is a [`ProbeResult`].
    pub async fn probe(&self, req: &ProbeRequest) -> ProbeResult {
        self.probe_waiting(req, CONFIG_WAIT).await
    }

    /// [`DataPlane::probe`], waiting up to `config_wait` for the request's config version.
    async fn probe_waiting(&self, req: &ProbeRequest, config_wait: Duration) -> ProbeResult {
        let mut result = ProbeResult {
            probe_id: req.probe_id,
            ..ProbeResult::default()
        };
        let Ok(_permit) = self.probes.running.try_acquire() else {
            fail(
                &mut result,
                "busy",
                format!("this data plane is already running {MAX_IN_FLIGHT} key tests"),
            );
            return result;
        };
        let rt = match self.runtime_with(req.config_version, config_wait).await {
            Ok(rt) => rt,
            Err(serving) => {
                result.config_version = serving;
                fail(
                    &mut result,
                    "config_behind",
                    format!(
                        "this data plane serves config version {serving} and did not receive \
                         version {} (which holds the key) within {} s",
                        req.config_version,
                        config_wait.as_secs()
                    ),
                );
                log_result(req, &result, None);
                return result;
            }
        };
        result.config_version = rt.version;
        let Some((provider, key_index)) = rt.provider(&req.provider).and_then(|p| {
            p.keys
                .iter()
                .position(|k| *k.id == *req.key_id)
                .map(|i| (Arc::clone(p), i))
        }) else {
            fail(
                &mut result,
                "key_not_loaded",
                format!(
                    "config version {} on this data plane has no key {} in provider {:?} \
                     (disabled keys are not loaded)",
                    rt.version, req.key_id, req.provider
                ),
            );
            log_result(req, &result, None);
            return result;
        };
        let key = &provider.keys[key_index];
        let (upstream_model, via_alias) = key.resolve(&req.model);
        let upstream_model = upstream_model.to_owned();
        result.model.clone_from(&upstream_model);
        let body = probe_body(&req.model);
        let parsed = match tollgate_protocol::bedrock::RequestBody::parse(&body) {
            Ok(parsed) => parsed,
            Err(e) => {
                // Only a model name JSON cannot carry would do this; the control plane checks it.
                fail(&mut result, "invalid_model", e.to_string());
                return result;
            }
        };
        let call = Call {
            op: Operation::Messages,
            runtime: Arc::clone(&rt),
            provider: Arc::clone(&provider),
            key_index,
            upstream_model,
            via_alias,
            parsed: &parsed,
            stream: false,
            headers: HeaderMap::new(),
            body: body.clone(),
            started: Instant::now(),
        };
        let probe_id = format!("probe_{}", req.probe_id);
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
            let resp = providers::send(&call, &probe_id).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = crate::upstream::read_body(
                &provider.name,
                resp,
                PROBE_TIMEOUT.saturating_sub(started.elapsed()),
                MAX_ANSWER,
            )
            .await?;
            Ok::<_, crate::error::ProxyError>((status, headers, body))
        })
        .await;
        result.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut tokens = None;
        match answer {
            Ok(Ok((status, headers, body))) => {
                result.status = u32::from(status.as_u16());
                if status.is_success() {
                    result.ok = true;
                    tokens = Some(token_counts(&body));
                } else {
                    let (class, message) = upstream_error(status.as_u16(), &headers, &body);
                    let message = scrub(&message, secret_of(&key.credential).as_deref());
                    fail(&mut result, &class, message);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    probe_id = %probe_id,
                    provider = %log_safe(&req.provider),
                    error_class = e.class,
                    message = %log_safe(&e.message),
                    detail = log_safe_opt(e.detail.as_deref()),
                    "provider key probe got no answer"
                );
                fail(&mut result, e.class, e.message.into_owned());
            }
            Err(_) => fail(
                &mut result,
                crate::upstream::TIMEOUT_CLASS,
                format!(
                    "the provider did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            ),
        }
        log_result(req, &result, tokens);
        result
    }

    /// The runtime once it serves `version` or newer; `Err(version served)` after `wait`
    /// without it.
    async fn runtime_with(&self, version: u64, wait: Duration) -> Result<Arc<Runtime>, u64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rt = self.runtime.load();
            match rt {
                Some(rt) if rt.version >= version => return Ok(rt),
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(rt.map_or(0, |rt| rt.version));
                }
                _ => tokio::time::sleep(CONFIG_POLL).await,
            }
        }
    }
}

/// The probe's request body: `model`, `max_tokens` 1 and the one-word prompt.
pub fn probe_body(model: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "model": model,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": PROMPT}],
        })
        .to_string(),
    )
}

fn fail(result: &mut ProbeResult, class: &str, message: String) {
    result.ok = false;
    result.error_class = clip(class, 128);
    result.error_message = clip(&message, MAX_MESSAGE);
}

/// `text` for the admin API: control characters other than newlines and tabs and bidi
/// controls removed (the console shows it as text; a log line gets it escaped instead), cut to
/// `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let is_bidi = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let clean: String = text
        .chars()
        .filter(|&c| (!c.is_control() || c == '\n' || c == '\t') && !is_bidi(c))
        .collect();
    if clean.len() <= max {
        return clean;
    }
    let mut end = max;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &clean[..end])
}

/// The error type and message of a provider's non-2xx answer, in any of the shapes Tollgate's
/// providers use: Bedrock's `x-amzn-ErrorType` header and `{"message"}` (or `Message`),
/// Anthropic's `{"type":"error","error":{"type","message"}}`, OpenAI's
/// `{"error":{"type"|"code","message"}}`, Google's `{"error":{"status","message"}}`. Without
/// one, `http_<status>` and the start of the body.
pub fn upstream_error(status: u16, headers: &HeaderMap, body: &[u8]) -> (String, String) {
    use serde_json::Value;
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let error = json.get("error");
    let amzn = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(tollgate_protocol::bedrock::sanitize_error_type)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let class = amzn
        .or_else(|| text(error.and_then(|e| e.get("type"))))
        .or_else(|| text(error.and_then(|e| e.get("status"))))
        .or_else(|| text(error.and_then(|e| e.get("code"))))
        .or_else(|| {
            text(json.get("__type"))
                .map(|t| tollgate_protocol::bedrock::sanitize_error_type(&t).to_owned())
        })
        .unwrap_or_else(|| format!("http_{status}"));
    let message = text(error.and_then(|e| e.get("message")))
        .or_else(|| text(json.get("message")))
        .or_else(|| text(json.get("Message")))
        .or_else(|| text(error))
        .unwrap_or_else(|| {
            let raw = String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]);
            let raw = raw.trim();
            if raw.is_empty() {
                format!("the provider answered HTTP {status} without a message")
            } else {
                raw.to_owned()
            }
        });
    (class, message)
}

/// The key's own API key, when it has one and it resolves (to scrub it from echoed messages).
fn secret_of(credential: &KeyCredential) -> Option<String> {
    let value = match credential {
        KeyCredential::AnthropicApiKey(v) | KeyCredential::OpenAiApiKey(Some(v)) => v,
        _ => return None,
    };
    value.resolve().ok().map(|s| s.to_string())
}

/// `message` without any occurrence of `secret` (short values are left alone: they could match
/// ordinary words), without the value of an `x-amz-security-token` line (AWS echoes the
/// canonical request, which signs a temporary credential's session token, in a signature
/// mismatch), and with every credential shape content logging masks masked
/// ([`tollgate_proto::content::mask_secrets`]).
fn scrub(message: &str, secret: Option<&str>) -> String {
    let mut out = match secret {
        Some(secret) if secret.len() >= 8 && message.contains(secret) => {
            message.replace(secret, "<redacted>")
        }
        _ => message.to_owned(),
    };
    if out.to_ascii_lowercase().contains("x-amz-security-token") {
        out = out
            .split('\n')
            .map(|line| match line.split_once(':') {
                Some((name, _)) if name.trim().eq_ignore_ascii_case("x-amz-security-token") => {
                    format!("{name}:<redacted>")
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut bytes = out.into_bytes();
    tollgate_proto::content::mask_secrets(&mut bytes, false);
    // Masking replaces ASCII with ASCII: still UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Input and output tokens of a successful answer (Anthropic's and Bedrock InvokeModel's
/// `usage.input_tokens`, Converse's `usage.inputTokens`, OpenAI's `usage.prompt_tokens`).
fn token_counts(body: &[u8]) -> (u64, u64) {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let usage = &json["usage"];
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| usage.get(*n).and_then(serde_json::Value::as_u64))
            .unwrap_or(0)
    };
    (
        first(&["input_tokens", "inputTokens", "prompt_tokens"]),
        first(&["output_tokens", "outputTokens", "completion_tokens"]),
    )
}

/// The probe's one log event (its cost: the provider's price of the tokens it reports).
fn log_result(req: &ProbeRequest, result: &ProbeResult, tokens: Option<(u64, u64)>) {
    let (input_tokens, output_tokens) = tokens.unwrap_or_default();
    tracing::info!(
        probe_id = req.probe_id,
        provider = %log_safe(&req.provider),
        key_id = %log_safe(&req.key_id),
        model = %log_safe(&result.model),
        config_version = result.config_version,
        ok = result.ok,
        status = result.status,
        latency_ms = result.latency_ms,
        input_tokens,
        output_tokens,
        error_class = %log_safe(&result.error_class),
        error = %log_safe(&result.error_message),
        "provider key probed"
    );
}

#[cfg(test)]
mod tests;

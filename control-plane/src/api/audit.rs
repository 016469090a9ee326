//! The admin API's side of the audit log ([`crate::audit`] says what a row holds):
//!
//! * [`Audit`]: the extractor mutation handlers build their [`AuditEvent`] from (the [`Actor`]
//!   and the request's [`AuditSource`]); the store adds before/after and the result.
//! * [`record_refusals`]: a refused mutation (a 4xx answer other than 401 and 405 to POST, PUT,
//!   PATCH or DELETE on a route that changes something: configuration, users, SSO and SCIM
//!   settings, a user's own key and tokens) writes a `result: "failure"` row with the error message and status, in
//!   its own small transaction ([`Store::append_audit`](crate::store::Store::append_audit)): the
//!   action and target come from the route (`provider_key.update` on
//!   `providers/bedrock/keys/ID`, `provider_key.test` for a refused key test; a create's target
//!   is the collection, `virtual-keys`), since the
//!   request may have failed before a handler could say more. Server errors (5xx) are not
//!   recorded: nothing was refused, and the store is likely what failed.
//! * [`record_auth_failures`]: a 401 from the admin-auth middleware writes an `auth.failed` row
//!   (actor `anonymous@IP`, target the request path), at most one per source IP per
//!   [`AUTH_FAILURE_INTERVAL`] and [`AUTH_FAILURE_GLOBAL_MAX`] per minute per control-plane process, tracked in a
//!   map of at most [`AUTH_FAILURE_TRACKED_IPS`] addresses, so a flood cannot fill the table. The
//!   admin-auth middleware logs a warning for every refusal, written to the log or not.
//!
//! Failing to write one of these rows is logged and does not change the answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::auth::Actor;
use super::error::ErrorMessage;
use crate::ControlPlane;
use crate::audit::{AuditSource, MAX_TARGET_CHARS, escape};
use crate::model::AuditEvent;

/// Who made a request and from where, for the audit rows of the changes it makes.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pub actor: Actor,
    pub source: AuditSource,
}

impl Audit {
    /// The event of a change to `target`; the store adds `before`, `after`, `changed` and
    /// `result` when it commits.
    pub(crate) fn event(&self, action: &str, target: impl Into<String>) -> AuditEvent {
        AuditEvent::new(self.actor.0.clone(), action, target, &self.source)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let actor = Actor::from_request_parts(parts, state).await?;
        Ok(Audit {
            actor,
            source: source_of(parts),
        })
    }
}

/// The TCP peer (never a forwarded-for header) and the `User-Agent` of a request.
fn source_of(parts: &Parts) -> AuditSource {
    AuditSource::new(
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        parts.headers.get(header::USER_AGENT).map(|v| v.as_bytes()),
    )
}

/// The action and target of a refused request to route `template` (`/api/...` or without the
/// prefix) with path parameters `params`: `None` for reads and routes that change nothing.
fn refused_action(
    method: &Method,
    template: &str,
    params: &[(String, String)],
) -> Option<(String, String, Option<serde_json::Value>)> {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => return None,
    };
    let path = template.strip_prefix("/api").unwrap_or(template);
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("governance/").unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let value = |segment: &str| -> String {
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => params
                .iter()
                .find(|(k, _)| k == name)
                .map_or_else(String::new, |(_, v)| v.clone()),
            None => segment.to_owned(),
        }
    };
    let target_of = |segments: &[&str]| {
        let text: Vec<String> = segments.iter().map(|s| value(s)).collect();
        escape(&text.join("/"), MAX_TARGET_CHARS)
    };
    let resource = match segments.first().copied()? {
        "providers" if segments.get(2) == Some(&"keys") => "provider_key",
        "providers" => "provider",
        "virtual-keys" => "virtual_key",
        "teams" => "team",
        "customers" => "customer",
        "pricing" => "pricing",
        "users" => "user",
        "sso" => "sso",
        "group-mappings" => "group_mappings",
        "scim" => "scim_token",
        "me" if segments.get(1) == Some(&"tokens") => "api_token",
        "me" => "personal_key",
        "jobs" => "job",
        "mcp" if segments.get(1) == Some(&"servers") => "mcp_server",
        _ => return None,
    };
    // `jobs/{job_id}/cancel` (`jobs/recompute-costs` and `jobs/export` are creates).
    if resource == "job" && segments.last() == Some(&"cancel") {
        return Some((
            "job.cancel".to_owned(),
            target_of(&segments[..segments.len() - 1]),
            None,
        ));
    }
    // `providers/{provider}/keys/{key_id}/test`: a key test, of the key.
    if resource == "provider_key" && segments.len() == 5 && segments[4] == "test" {
        return Some((
            "provider_key.test".to_owned(),
            target_of(&segments[..4]),
            None,
        ));
    }
    // `{owner}/{id}/budgets/{budget_id}/reset`.
    if segments.len() == 5 && segments[2] == "budgets" && segments[4] == "reset" {
        let budget = escape(&value(segments[3]), MAX_TARGET_CHARS);
        return Some((
            "budget.reset".to_owned(),
            target_of(&segments[..2]),
            Some(json!({ "budget_id": budget })),
        ));
    }
    if segments.iter().any(|s| s.ends_with("usage")) {
        return None;
    }
    Some((format!("{resource}.{verb}"), target_of(&segments), None))
}

/// Middleware on every `/api` route (inside admin auth): records refused mutations.
pub(crate) async fn record_refusals(
    State(cp): State<ControlPlane>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let audit = Audit::from_request_parts(&mut parts, &())
        .await
        .unwrap_or_else(|never| match never {});
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    // 401 is `auth.failed` (outside); 405 names no change a route makes.
    if !status.is_client_error() || matches!(status.as_u16(), 401 | 405) {
        return response;
    }
    let Some((action, target, extra)) = template
        .as_deref()
        .and_then(|t| refused_action(&method, t, &params))
    else {
        return response;
    };
    let message = response
        .extensions()
        .get::<ErrorMessage>()
        .map_or_else(|| status.to_string(), |m| m.0.clone());
    let mut event = audit
        .event(&action, target)
        .failure(&message)
        .with("status", json!(status.as_u16()));
    if let Some(serde_json::Value::Object(extra)) = extra {
        for (k, v) in extra {
            event = event.with(&k, v);
        }
    }
    if let Err(e) = cp.store().append_audit(&event).await {
        tracing::warn!(error = %e, action = %event.action, "cannot write the audit row of a refused change");
    }
    response
}

/// At most one `auth.failed` row per source IP in this interval.
pub const AUTH_FAILURE_INTERVAL: Duration = Duration::from_secs(10);
/// At most this many `auth.failed` rows per minute, from all sources together.
pub const AUTH_FAILURE_GLOBAL_MAX: u32 = 60;
/// Source addresses tracked at once (older than [`AUTH_FAILURE_INTERVAL`] are forgotten first).
pub const AUTH_FAILURE_TRACKED_IPS: usize = 1024;

/// Decides which authentication failures get an audit row (see the module docs). Bounded:
/// at most [`AUTH_FAILURE_TRACKED_IPS`] entries.
#[derive(Debug)]
pub(crate) struct AuthFailureLimiter {
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    last: HashMap<IpAddr, Instant>,
    window_start: Instant,
    window_rows: u32,
}

impl AuthFailureLimiter {
    pub(crate) fn new() -> Self {
        AuthFailureLimiter {
            state: Mutex::new(LimiterState {
                last: HashMap::new(),
                window_start: Instant::now(),
                window_rows: 0,
            }),
        }
    }

    /// Whether a failure from `ip` at `now` gets a row (and counts it if so).
    fn admit(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(s.window_start) >= Duration::from_secs(60) {
            s.window_start = now;
            s.window_rows = 0;
        }
        if s.last
            .get(&ip)
            .is_some_and(|t| now.saturating_duration_since(*t) < AUTH_FAILURE_INTERVAL)
        {
            return false;
        }
        if s.window_rows >= AUTH_FAILURE_GLOBAL_MAX {
            return false;
        }
        if s.last.len() >= AUTH_FAILURE_TRACKED_IPS && !s.last.contains_key(&ip) {
            s.last
                .retain(|_, t| now.saturating_duration_since(*t) < AUTH_FAILURE_INTERVAL);
            if s.last.len() >= AUTH_FAILURE_TRACKED_IPS {
                return false;
            }
        }
        s.last.insert(ip, now);
        s.window_rows += 1;
        true
    }
}

/// Middleware outside admin auth: writes `auth.failed` rows for its 401 answers.
pub(crate) async fn record_auth_failures(
    State((cp, limiter)): State<(ControlPlane, Arc<AuthFailureLimiter>)>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let source = source_of(&parts);
    let method = parts.method.clone();
    let path = axum::extract::OriginalUri::from_request_parts(&mut parts, &())
        .await
        .map_or_else(|_| parts.uri.path().to_owned(), |u| u.0.path().to_owned());
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.status().as_u16() != 401 {
        return response;
    }
    if !limiter.admit(source.ip, Instant::now()) {
        return response;
    }
    let message = response
        .extensions()
        .get::<ErrorMessage>()
        .map_or_else(|| "unauthorized".to_owned(), |m| m.0.clone());
    let ip = source
        .ip
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let event = AuditEvent::new(
        format!("anonymous@{ip}"),
        "auth.failed",
        escape(&path, MAX_TARGET_CHARS),
        &source,
    )
    .failure(&message)
    .with("status", json!(401))
    .with("method", json!(method.as_str()));
    if let Err(e) = cp.store().append_audit(&event).await {
        tracing::warn!(error = %e, "cannot write the audit row of a failed admin authentication");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn routes_name_the_refused_action_and_target() {
        let cases = [
            (
                Method::POST,
                "/api/providers",
                params(&[]),
                "provider.create",
                "providers",
            ),
            (
                Method::PUT,
                "/api/providers/{provider}/keys/{key_id}",
                params(&[("provider", "bedrock"), ("key_id", "k1")]),
                "provider_key.update",
                "providers/bedrock/keys/k1",
            ),
            (
                Method::POST,
                "/api/providers/{provider}/keys",
                params(&[("provider", "bedrock")]),
                "provider_key.create",
                "providers/bedrock/keys",
            ),
            (
                Method::DELETE,
                "/api/governance/virtual-keys/{vk_id}",
                params(&[("vk_id", "v1")]),
                "virtual_key.delete",
                "virtual-keys/v1",
            ),
            (
                Method::POST,
                "/api/teams/{team_id}/budgets/{budget_id}/reset",
                params(&[("team_id", "t1"), ("budget_id", "b1")]),
                "budget.reset",
                "teams/t1",
            ),
            (
                Method::PUT,
                "/pricing/{override_id}",
                params(&[("override_id", "o\n1")]),
                "pricing.update",
                "pricing/o\\n1",
            ),
            (
                Method::POST,
                "/api/providers/{provider}/keys/{key_id}/test",
                params(&[("provider", "bedrock"), ("key_id", "k1")]),
                "provider_key.test",
                "providers/bedrock/keys/k1",
            ),
            (
                Method::POST,
                "/api/jobs/recompute-costs",
                params(&[]),
                "job.create",
                "jobs/recompute-costs",
            ),
            (
                Method::DELETE,
                "/api/mcp/servers/{name}",
                params(&[("name", "github")]),
                "mcp_server.delete",
                "mcp/servers/github",
            ),
            (
                Method::POST,
                "/api/mcp/servers",
                params(&[]),
                "mcp_server.create",
                "mcp/servers",
            ),
            (
                Method::POST,
                "/api/jobs/{job_id}/cancel",
                params(&[("job_id", "j1")]),
                "job.cancel",
                "jobs/j1",
            ),
        ];
        for (method, template, params, action, target) in cases {
            let (a, t, _) = refused_action(&method, template, &params).unwrap();
            assert_eq!((a.as_str(), t.as_str()), (action, target), "{template}");
        }
        assert!(refused_action(&Method::GET, "/api/providers", &[]).is_none());
        assert!(refused_action(&Method::POST, "/api/audit-logs", &[]).is_none());
    }

    #[test]
    fn auth_failures_are_capped_per_source_and_overall() {
        let l = AuthFailureLimiter::new();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.admit(Some(a), t0));
        assert!(!l.admit(Some(a), t0 + Duration::from_secs(9)));
        assert!(l.admit(Some(a), t0 + Duration::from_secs(10)));
        // Many sources: the global cap applies within the minute.
        let mut admitted = 2; // a (twice)
        for i in 0..200u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            if l.admit(Some(ip), t0 + Duration::from_secs(11)) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, AUTH_FAILURE_GLOBAL_MAX);
        // A new minute: rows again; the map stays bounded.
        let later = t0 + Duration::from_secs(120);
        assert!(l.admit(Some("10.9.9.9".parse().unwrap()), later));
        let tracked = l.state.lock().unwrap().last.len();
        assert!(tracked <= AUTH_FAILURE_TRACKED_IPS, "{tracked}");
    }

    #[test]
    fn the_tracked_sources_are_bounded() {
        let l = AuthFailureLimiter::new();
        let t0 = Instant::now();
        // Spread over minutes so the global cap does not stop it first.
        let mut now = t0;
        for i in 0..(AUTH_FAILURE_TRACKED_IPS as u32 + 100) {
            if i % AUTH_FAILURE_GLOBAL_MAX == 0 {
                now += Duration::from_secs(1);
                let mut s = l.state.lock().unwrap();
                s.window_start = now;
                s.window_rows = 0;
            }
            l.admit(Some(IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + i))), now);
        }
        assert!(l.state.lock().unwrap().last.len() <= AUTH_FAILURE_TRACKED_IPS);
    }
}

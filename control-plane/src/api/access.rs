//! Which roles may call which admin route: one table, enforced by one middleware on every
//! matched `/api` route ([`authorize`]). A route missing from the table is refused to
//! everyone (and logged), so a new route cannot ship unguarded; the role matrix test calls
//! every route of the OpenAPI description as every role.
//!
//! The table decides by role; handlers of [`Access::Scoped`] and [`Access::ManageScoped`]
//! routes then narrow to the caller's scope ([`super::auth::Principal::scope`]): a team admin
//! sees and manages their own team's keys and budgets, a member sees their own key.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::ApiError;
use crate::identity::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Admins only: providers, provider keys, MCP servers, pricing, customers, users, SSO and
    /// SCIM settings.
    Admin,
    /// Reading the configuration: admins, viewers, team admins.
    ReadConfig,
    /// Reading what not every team should see (audit log, users): admins and viewers.
    ReadSensitive,
    /// Every role, narrowed by the handler to the caller's scope.
    Scoped,
    /// Admins, and team admins within their team (the handler checks the team).
    ManageScoped,
    /// Any caller, about themselves (`/api/me`).
    SelfService,
    /// A signed-in user (a session or a personal API token; not the admin token), about their
    /// own key and tokens.
    SignedIn,
}

impl Access {
    pub(crate) fn allows(self, role: Role) -> bool {
        match self {
            Access::Admin => role == Role::Admin,
            Access::ReadConfig => matches!(role, Role::Admin | Role::Viewer | Role::TeamAdmin),
            Access::ReadSensitive => matches!(role, Role::Admin | Role::Viewer),
            Access::Scoped | Access::SelfService | Access::SignedIn => true,
            Access::ManageScoped => matches!(role, Role::Admin | Role::TeamAdmin),
        }
    }
}

/// The rule of a route (its matched path, as registered), or `None` if it has none.
pub(crate) fn rule(method: &Method, path: &str) -> Option<Access> {
    use Access::*;
    let read = matches!(*method, Method::GET | Method::HEAD);
    let path = path.strip_prefix("/api").unwrap_or(path);
    Some(match path {
        "/providers"
        | "/providers/{provider}"
        | "/providers/{provider}/keys"
        | "/providers/{provider}/keys/{key_id}"
        | "/keys"
        | "/pricing"
        | "/pricing/{override_id}"
        | "/customers"
        | "/customers/{customer_id}"
        | "/governance/customers"
        | "/governance/customers/{customer_id}"
        | "/data-planes"
        | "/mcp/servers"
        | "/mcp/servers/{name}"
        | "/version" => {
            if read {
                ReadConfig
            } else {
                Admin
            }
        }
        "/providers/{provider}/keys/{key_id}/test" => Admin,
        "/customers/{customer_id}/usage" => ReadConfig,
        "/customers/{customer_id}/budgets/{budget_id}/reset" => Admin,
        "/teams" | "/governance/teams" => {
            if read {
                Scoped
            } else {
                Admin
            }
        }
        "/teams/{team_id}" | "/governance/teams/{team_id}" => match *method {
            Method::GET | Method::HEAD => Scoped,
            Method::PUT => ManageScoped,
            _ => Admin,
        },
        "/teams/{team_id}/usage" => Scoped,
        "/teams/{team_id}/budgets/{budget_id}/reset" => ManageScoped,
        "/virtual-keys"
        | "/virtual-keys/{vk_id}"
        | "/governance/virtual-keys"
        | "/governance/virtual-keys/{vk_id}" => {
            if read {
                Scoped
            } else {
                ManageScoped
            }
        }
        "/virtual-keys/{vk_id}/usage" => Scoped,
        "/virtual-keys/{vk_id}/budgets/{budget_id}/reset" => ManageScoped,
        "/audit-logs" | "/audit-logs/export" => ReadSensitive,
        // Handlers narrow to the caller's keys (GET only: nothing else is routed).
        "/logs" | "/logs/{request_id}" => Scoped,
        // Recorded bodies: admins, and team admins for their team's requests (the handler
        // checks the team); every read is audited.
        "/logs/{request_id}/content" => ManageScoped,
        // Handlers narrow to the caller's scope, as for the logs (GET only).
        "/spend" | "/spend/export" => Scoped,
        // The tool-call log: handlers narrow to the caller's scope, as for the logs (GET only).
        "/mcp/calls" => Scoped,
        "/users" | "/users/{user_id}" => {
            if read {
                ReadSensitive
            } else {
                Admin
            }
        }
        "/sso" | "/group-mappings" | "/scim" | "/scim/token" => Admin,
        // Every role: handlers show a caller the jobs they may read (admins and viewers every
        // job; others the exports they asked for, team admins also cost recomputations) and
        // narrow an export to the caller's scope (an audit export: admins and viewers).
        "/jobs" | "/jobs/{job_id}" | "/jobs/export" | "/jobs/{job_id}/download" => Scoped,
        "/jobs/recompute-costs" | "/jobs/{job_id}/cancel" => Admin,
        "/me" => SelfService,
        "/me/key" | "/me/key/rotate" | "/me/tokens" | "/me/tokens/{token_id}" => SignedIn,
        _ => return None,
    })
}

/// Middleware (a route layer, so the route is matched): refuses principals whose role the
/// route's rule does not allow.
pub(crate) async fn authorize(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(principal) = req.extensions().get::<Principal>() else {
        return ApiError::Internal("no principal on an /api request".to_owned()).into_response();
    };
    let Some(access) = rule(req.method(), &path) else {
        tracing::error!(method = %req.method(), path, "admin route without an access rule: refused");
        return ApiError::Forbidden(format!(
            "{} {path} has no access rule; this is a bug",
            req.method()
        ))
        .into_response();
    };
    if access == Access::SignedIn
        && let Err(e) = principal.signed_in_user()
    {
        return e.into_response();
    }
    if !access.allows(principal.role) {
        return ApiError::Forbidden(format!(
            "the {} role may not {} {path}",
            principal.role,
            req.method()
        ))
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_of_the_same_path_differ() {
        assert_eq!(
            rule(&Method::GET, "/api/providers"),
            Some(Access::ReadConfig)
        );
        assert_eq!(rule(&Method::POST, "/api/providers"), Some(Access::Admin));
        assert_eq!(
            rule(&Method::PUT, "/api/teams/{team_id}"),
            Some(Access::ManageScoped)
        );
        assert_eq!(
            rule(&Method::DELETE, "/api/teams/{team_id}"),
            Some(Access::Admin)
        );
        assert_eq!(rule(&Method::GET, "/api/nothing"), None);
    }

    #[test]
    fn viewers_never_write_and_members_only_reach_scoped_routes() {
        use Access::*;
        for a in [Admin, ManageScoped] {
            assert!(!a.allows(Role::Viewer));
            assert!(!a.allows(Role::Member));
        }
        for a in [ReadConfig, ReadSensitive] {
            assert!(!a.allows(Role::Member));
        }
        assert!(!ReadSensitive.allows(Role::TeamAdmin));
        for r in Role::ALL {
            assert!(Admin.allows(r) == (r == Role::Admin));
            assert!(Scoped.allows(r) && SelfService.allows(r));
        }
    }
}

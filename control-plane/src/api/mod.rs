//! The admin HTTP API: routes, the OpenAPI description, and shared helpers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::Method;
use axum::routing::{get, put};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use uuid::Uuid;

use crate::ControlPlane;

mod access;
mod audit;
mod auth;
mod cells;
mod cli_login;
mod data_planes;
mod error;
pub(crate) mod exports;
mod extract;
mod jobs;
mod key_test;
mod keys;
mod login;
mod logs;
mod mcp;
mod pricing;
mod providers;
mod scim;
mod session;
mod spend;
mod sso_admin;
mod system;
mod teams;
mod ui;
mod usage;
mod users;
mod virtual_keys;
mod web;

pub use error::{ApiError, ErrorBody, ErrorDetail, ErrorType};

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(crate) fn router(cp: ControlPlane) -> Router {
    let policy = Arc::new(auth::AuthPolicy::new(cp.admin_auth(), Some(cp.clone())));
    let auth_failures = (cp.clone(), Arc::new(audit::AuthFailureLimiter::new()));
    let vk_routes = |r: Router<ControlPlane>, base: &str, item: &str, gov: bool| {
        if gov {
            r.route(
                base,
                get(virtual_keys::governance_list_virtual_keys)
                    .post(virtual_keys::governance_create_virtual_key),
            )
            .route(
                item,
                get(virtual_keys::governance_get_virtual_key)
                    .put(virtual_keys::governance_update_virtual_key)
                    .delete(virtual_keys::governance_delete_virtual_key),
            )
        } else {
            r.route(
                base,
                get(virtual_keys::list_virtual_keys).post(virtual_keys::create_virtual_key),
            )
            .route(
                item,
                get(virtual_keys::get_virtual_key)
                    .put(virtual_keys::update_virtual_key)
                    .delete(virtual_keys::delete_virtual_key),
            )
        }
    };
    let api = Router::new()
        .route(
            "/providers",
            get(providers::list_providers).post(providers::create_provider),
        )
        .route(
            "/providers/{provider}",
            get(providers::get_provider)
                .put(providers::update_provider)
                .delete(providers::delete_provider),
        )
        .route(
            "/providers/{provider}/keys",
            get(keys::list_provider_keys).post(keys::create_key),
        )
        .route(
            "/providers/{provider}/keys/{key_id}",
            get(keys::get_key)
                .put(keys::update_key)
                .delete(keys::delete_key),
        )
        .route(
            "/providers/{provider}/keys/{key_id}/test",
            axum::routing::post(key_test::test_key),
        )
        .route("/keys", get(keys::list_all_keys))
        .route(
            "/mcp/servers",
            get(mcp::list_servers).post(mcp::create_server),
        )
        .route(
            "/mcp/servers/{name}",
            get(mcp::get_server)
                .put(mcp::update_server)
                .delete(mcp::delete_server),
        )
        .route("/mcp/calls", get(mcp::list_calls))
        .route("/me", get(users::me))
        .route("/me/key", get(users::my_key))
        .route("/me/key/rotate", axum::routing::post(users::rotate_my_key))
        .route(
            "/me/tokens",
            get(users::list_my_tokens).post(users::create_my_token),
        )
        .route(
            "/me/tokens/{token_id}",
            axum::routing::delete(users::revoke_my_token),
        )
        .route("/users", get(users::list_users))
        .route(
            "/users/{user_id}",
            get(users::get_user)
                .put(users::update_user)
                .delete(users::delete_user),
        )
        .route(
            "/sso",
            get(sso_admin::get_sso)
                .put(sso_admin::put_sso)
                .delete(sso_admin::delete_sso),
        )
        .route(
            "/group-mappings",
            get(sso_admin::get_group_mappings).put(sso_admin::put_group_mappings),
        )
        .route("/audit-logs", get(system::list_audit_logs))
        .route("/logs", get(logs::list_logs))
        .route("/logs/{request_id}", get(logs::get_log))
        .route("/logs/{request_id}/content", get(logs::get_log_content))
        .route("/jobs", get(jobs::list_jobs))
        .route(
            "/jobs/recompute-costs",
            axum::routing::post(jobs::recompute_costs),
        )
        .route("/jobs/export", axum::routing::post(exports::create_export))
        .route("/jobs/{job_id}", get(jobs::get_job))
        .route("/jobs/{job_id}/download", get(exports::download))
        .route(
            "/jobs/{job_id}/cancel",
            axum::routing::post(jobs::cancel_job),
        )
        .route("/spend", get(spend::get_spend))
        .route("/spend/export", get(spend::export_spend))
        .route("/audit-logs/export", get(system::export_audit_logs))
        .route("/data-planes", get(data_planes::list_data_planes))
        .route("/version", get(system::version))
        .route("/virtual-keys/{vk_id}/usage", get(usage::virtual_key_usage))
        .route(
            "/virtual-keys/{vk_id}/budgets/{budget_id}/reset",
            axum::routing::post(usage::reset_virtual_key_budget),
        )
        .route("/teams/{team_id}/usage", get(usage::team_usage))
        .route(
            "/teams/{team_id}/budgets/{budget_id}/reset",
            axum::routing::post(usage::reset_team_budget),
        )
        .route("/customers/{customer_id}/usage", get(usage::customer_usage))
        .route(
            "/customers/{customer_id}/budgets/{budget_id}/reset",
            axum::routing::post(usage::reset_customer_budget),
        )
        .route(
            "/pricing",
            get(pricing::get_pricing).post(pricing::create_price_override),
        )
        .route(
            "/pricing/{override_id}",
            put(pricing::replace_price_override).delete(pricing::delete_price_override),
        )
        .route(
            "/teams",
            get(teams::api_list_teams).post(teams::api_create_team),
        )
        .route(
            "/teams/{team_id}",
            get(teams::api_get_team)
                .put(teams::api_update_team)
                .delete(teams::api_delete_team),
        )
        .route(
            "/governance/teams",
            get(teams::governance_list_teams).post(teams::governance_create_team),
        )
        .route(
            "/governance/teams/{team_id}",
            get(teams::governance_get_team)
                .put(teams::governance_update_team)
                .delete(teams::governance_delete_team),
        )
        .route(
            "/customers",
            get(teams::api_list_customers).post(teams::api_create_customer),
        )
        .route(
            "/customers/{customer_id}",
            get(teams::api_get_customer)
                .put(teams::api_update_customer)
                .delete(teams::api_delete_customer),
        )
        .route(
            "/governance/customers",
            get(teams::governance_list_customers).post(teams::governance_create_customer),
        )
        .route(
            "/governance/customers/{customer_id}",
            get(teams::governance_get_customer)
                .put(teams::governance_update_customer)
                .delete(teams::governance_delete_customer),
        );
    let api = vk_routes(api, "/virtual-keys", "/virtual-keys/{vk_id}", false);
    let api = vk_routes(
        api,
        "/governance/virtual-keys",
        "/governance/virtual-keys/{vk_id}",
        true,
    )
    .merge(scim::admin_routes())
    .route_layer(axum::middleware::from_fn(access::authorize))
    // Refused changes are audited (inside authentication, so the actor is known; outside the
    // access check, so changes a role may not make are recorded too), on routes only.
    .route_layer(axum::middleware::from_fn_with_state(
        cp.clone(),
        audit::record_refusals,
    ))
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(axum::middleware::from_fn_with_state(
        policy,
        auth::authenticate,
    ))
    .layer(axum::middleware::from_fn_with_state(
        auth_failures.clone(),
        audit::record_auth_failures,
    ))
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .with_state(cp.clone());
    Router::new()
        .route("/openapi.json", get(system::openapi_json))
        .nest("/api", api)
        // SCIM 2.0 for identity providers, behind its own token (api/scim.rs); its refused
        // calls are audited like the admin API's.
        .nest(
            crate::scim::BASE_PATH,
            scim::router(cp.clone()).layer(axum::middleware::from_fn_with_state(
                auth_failures,
                audit::record_auth_failures,
            )),
        )
        .nest("/auth", auth_routes(cp))
        // The web console: static files; its data comes from /api like any other client's.
        .merge(ui::routes())
}

/// Largest body of the browser and CLI sign-in routes (small forms).
const MAX_AUTH_BODY_BYTES: usize = 16 * 1024;

/// The sign-in routes (`/auth/*`): OIDC login, the user's page, `tollgate login`'s device flow.
/// They authenticate by session cookie (mutations also by its CSRF token) or not at all.
fn auth_routes(cp: ControlPlane) -> Router {
    use axum::routing::post;
    Router::new()
        .route("/login", get(login::login))
        .route("/callback", get(login::callback))
        .route("/logout", post(login::logout))
        .route("/logged-out", get(login::logged_out))
        .route("/me", get(login::me))
        .route("/me/rotate-key", post(login::rotate_key))
        .route("/cli/start", post(cli_login::start))
        .route(
            "/cli/approve",
            get(cli_login::approve_page).post(cli_login::approve),
        )
        .route("/cli/token", post(cli_login::token))
        .layer(DefaultBodyLimit::max(MAX_AUTH_BODY_BYTES))
        .with_state(cp)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no admin API route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// For `Option<Option<T>>` fields of partial updates: absent stays `None`, `null` is
/// `Some(None)` (clear), a value is `Some(Some(v))`.
pub(crate) fn double_option<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// RFC 3339 text of a timestamp.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Parses an id path segment.
pub(crate) fn parse_id(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid_field(field, format!("{raw:?} is not a UUID")))
}

/// Parses an optional id query parameter (400 naming `field`).
pub(crate) fn parse_opt_id(field: &str, raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    raw.map(|r| parse_id(field, r)).transpose()
}

/// Parses an RFC 3339 query or body field (400 naming `field`).
pub(crate) fn parse_time(field: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        ApiError::invalid_field(
            field,
            format!("{raw:?} is not an RFC 3339 time (e.g. 2026-01-15T10:00:00Z)"),
        )
    })
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token, or a personal API token (`tgp_...`, acting as its \
                         user with their role), as `Authorization: Bearer <token>`. Browsers \
                         signed in through SSO use the session cookie instead, and send \
                         `X-CSRF-Token` with every change. When no admin token is configured, \
                         the server may accept loopback clients without one.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "Configure providers, provider keys, virtual keys, teams and customers of a Tollgate gateway. \
            Secrets (provider-key credentials, extra-header values) are never returned: literals \
            show as \"<redacted>\", env.NAME references as written. An env.NAME reference may \
            only name a variable on the gateway's env allowlist (default AWS_*, ANTHROPIC_*, \
            OPENAI_*, GOOGLE_*, AZURE_*, plus --env-allow / TOLLGATE_ENV_ALLOW; never \
            TOLLGATE_*). Errors are {\"error\": {\"type\", \"message\", \"field\"?}}.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        providers::create_provider,
        providers::list_providers,
        providers::get_provider,
        providers::update_provider,
        providers::delete_provider,
        keys::create_key,
        keys::list_provider_keys,
        keys::list_all_keys,
        keys::get_key,
        keys::update_key,
        keys::delete_key,
        key_test::test_key,
        virtual_keys::create_virtual_key,
        virtual_keys::list_virtual_keys,
        virtual_keys::get_virtual_key,
        virtual_keys::update_virtual_key,
        virtual_keys::delete_virtual_key,
        virtual_keys::governance_create_virtual_key,
        virtual_keys::governance_list_virtual_keys,
        virtual_keys::governance_get_virtual_key,
        virtual_keys::governance_update_virtual_key,
        virtual_keys::governance_delete_virtual_key,
        usage::virtual_key_usage,
        usage::reset_virtual_key_budget,
        usage::team_usage,
        usage::reset_team_budget,
        usage::customer_usage,
        usage::reset_customer_budget,
        pricing::get_pricing,
        pricing::create_price_override,
        pricing::replace_price_override,
        pricing::delete_price_override,
        teams::api_create_team,
        teams::api_list_teams,
        teams::api_get_team,
        teams::api_update_team,
        teams::api_delete_team,
        teams::governance_create_team,
        teams::governance_list_teams,
        teams::governance_get_team,
        teams::governance_update_team,
        teams::governance_delete_team,
        teams::api_create_customer,
        teams::api_list_customers,
        teams::api_get_customer,
        teams::api_update_customer,
        teams::api_delete_customer,
        teams::governance_create_customer,
        teams::governance_list_customers,
        teams::governance_get_customer,
        teams::governance_update_customer,
        teams::governance_delete_customer,
        data_planes::list_data_planes,
        scim::scim_status,
        scim::create_token,
        scim::delete_token,
        logs::list_logs,
        logs::get_log,
        logs::get_log_content,
        jobs::recompute_costs,
        jobs::list_jobs,
        jobs::get_job,
        jobs::cancel_job,
        exports::create_export,
        exports::download,
        spend::get_spend,
        spend::export_spend,
        system::list_audit_logs,
        system::export_audit_logs,
        system::version,
        users::me,
        users::my_key,
        users::rotate_my_key,
        users::list_my_tokens,
        users::create_my_token,
        users::revoke_my_token,
        users::list_users,
        users::get_user,
        users::update_user,
        users::delete_user,
        system::openapi_json,
        sso_admin::get_sso,
        sso_admin::put_sso,
        sso_admin::delete_sso,
        sso_admin::get_group_mappings,
        sso_admin::put_group_mappings,
        mcp::create_server,
        mcp::list_servers,
        mcp::get_server,
        mcp::update_server,
        mcp::delete_server,
        mcp::list_calls,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorType)),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
    tags(
        (name = "providers", description = "Upstream providers (bedrock, anthropic, or custom names)"),
        (name = "keys", description = "Provider credentials"),
        (name = "virtual-keys", description = "Keys clients use to call the gateway"),
        (name = "pricing", description = "What requests cost: the shipped table and overrides"),
        (name = "teams", description = "Teams: groups of virtual keys with their own limits"),
        (name = "customers", description = "Customers: groups of teams and keys with their own limits"),
        (name = "governance", description = "The virtual-key, team and customer routes under the path other gateways use"),
        (name = "data-planes", description = "The fleet view: data planes connected to this control plane"),
        (name = "scim", description = "The token identity providers use for SCIM provisioning at /scim/v2"),
        (name = "logs", description = "Request logs: one entry per inference request, scoped to the caller"),
        (name = "jobs", description = "Long operations in the background (recomputing costs, exports), with their progress"),
        (name = "spend", description = "Spend: usage and cost per key, user, team, customer, model, provider and hour or day, scoped to the caller"),
        (name = "system", description = "Audit log, versions, this document"),
        (name = "users", description = "People who sign in through SSO: their roles, personal keys and API tokens"),
        (name = "sso", description = "Single sign-on (OIDC) and the group → team and role mappings; admins only"),
        (name = "mcp", description = "The MCP gateway: the MCP servers whose tools /mcp serves, and the log of tool calls (scoped to the caller)"),
    )
)]
struct ApiDoc;

/// The OpenAPI description of the admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) fn openapi_pretty() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

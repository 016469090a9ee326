//! The committed OpenAPI document (`openapi/admin.v1.json`) must match what the code generates.
//! Run `UPDATE_OPENAPI=1 cargo test -p tollgate-control-plane --test openapi` to rewrite it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/admin.v1.json")
}

fn generated() -> String {
    let mut text = tollgate_control_plane::openapi()
        .to_pretty_json()
        .expect("serialise the OpenAPI document");
    text.push('\n');
    text
}

#[test]
fn committed_spec_matches_the_code() {
    let path = committed_path();
    let generated = generated();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write the OpenAPI document");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_owned(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "{} is out of date with the admin API ({first_difference}).\n\
             Run `UPDATE_OPENAPI=1 cargo test -p tollgate-control-plane --test openapi` to rewrite it, \
             then review and commit the change.",
            path.display()
        );
    }
}

#[test]
fn every_route_is_documented_and_bodies_are_closed() {
    let spec: Value = serde_json::from_str(&generated()).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut expected = BTreeSet::new();
    for op in [
        "GET /api/providers",
        "POST /api/providers",
        "GET /api/providers/{provider}",
        "PUT /api/providers/{provider}",
        "DELETE /api/providers/{provider}",
        "GET /api/providers/{provider}/keys",
        "POST /api/providers/{provider}/keys",
        "GET /api/providers/{provider}/keys/{key_id}",
        "PUT /api/providers/{provider}/keys/{key_id}",
        "DELETE /api/providers/{provider}/keys/{key_id}",
        "POST /api/providers/{provider}/keys/{key_id}/test",
        "GET /api/keys",
        "GET /api/logs",
        "GET /api/logs/{request_id}",
        "GET /api/logs/{request_id}/content",
        "GET /api/spend",
        "GET /api/spend/export",
        "POST /api/jobs/recompute-costs",
        "GET /api/jobs",
        "GET /api/jobs/{job_id}",
        "POST /api/jobs/{job_id}/cancel",
        "POST /api/jobs/export",
        "GET /api/jobs/{job_id}/download",
        "GET /api/audit-logs",
        "GET /api/audit-logs/export",
        "GET /api/data-planes",
        "GET /api/version",
        "GET /openapi.json",
        "GET /api/pricing",
        "POST /api/pricing",
        "PUT /api/pricing/{override_id}",
        "DELETE /api/pricing/{override_id}",
        "GET /api/virtual-keys/{vk_id}/usage",
        "POST /api/virtual-keys/{vk_id}/budgets/{budget_id}/reset",
        "GET /api/teams/{team_id}/usage",
        "POST /api/teams/{team_id}/budgets/{budget_id}/reset",
        "GET /api/customers/{customer_id}/usage",
        "POST /api/customers/{customer_id}/budgets/{budget_id}/reset",
        "GET /api/me",
        "GET /api/me/key",
        "POST /api/me/key/rotate",
        "GET /api/me/tokens",
        "POST /api/me/tokens",
        "DELETE /api/me/tokens/{token_id}",
        "GET /api/users",
        "GET /api/users/{user_id}",
        "PUT /api/users/{user_id}",
        "DELETE /api/users/{user_id}",
        "GET /api/scim",
        "POST /api/scim/token",
        "DELETE /api/scim/token",
        "GET /api/sso",
        "PUT /api/sso",
        "DELETE /api/sso",
        "GET /api/group-mappings",
        "PUT /api/group-mappings",
        "GET /api/mcp/servers",
        "POST /api/mcp/servers",
        "GET /api/mcp/servers/{name}",
        "PUT /api/mcp/servers/{name}",
        "DELETE /api/mcp/servers/{name}",
        "GET /api/mcp/calls",
    ] {
        expected.insert(op.to_owned());
    }
    for (kind, id) in [
        ("virtual-keys", "vk_id"),
        ("teams", "team_id"),
        ("customers", "customer_id"),
    ] {
        for base in [format!("/api/{kind}"), format!("/api/governance/{kind}")] {
            expected.insert(format!("GET {base}"));
            expected.insert(format!("POST {base}"));
            for m in ["GET", "PUT", "DELETE"] {
                expected.insert(format!("{m} {base}/{{{id}}}"));
            }
        }
    }
    assert_eq!(operations, expected);

    // Request bodies reject unknown fields, and the spec says so.
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "CreateProviderRequest",
        "UpdateProviderRequest",
        "NetworkConfig",
        "CustomProviderConfig",
        "CreateKeyRequest",
        "UpdateKeyRequest",
        "BedrockKeyConfigInput",
        "CreateVirtualKeyRequest",
        "UpdateVirtualKeyRequest",
        "BudgetInput",
        "RateLimit",
        "ProviderConfigInput",
        "CreateTeamRequest",
        "CreateCustomerRequest",
        "UpdateGroupRequest",
        "PriceInput",
        "LongContextInput",
        "LimitsInput",
        "CreateApiTokenRequest",
        "UpdateUserRequest",
        "McpServerInput",
    ] {
        assert_eq!(
            schemas[name]["additionalProperties"],
            Value::Bool(false),
            "{name} should deny unknown fields"
        );
    }
    assert!(spec["components"]["securitySchemes"]["admin_token"].is_object());
    assert_eq!(
        spec["paths"]["/openapi.json"]["get"]["security"],
        serde_json::json!([{}]),
        "/openapi.json is public"
    );
}

//! `/api/teams` and `/api/customers` (also under `/api/governance/...`): the groups virtual keys
//! belong to. Each carries its own budgets, rate limit and concurrency limit; a request must pass
//! every level it belongs to (provider config → key → team → customer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::Audit;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::governance::{self, BudgetInput, ContentLogging, Limits, LimitsView, RateLimit};
use crate::identity::Role;
use crate::model::{CustomerRecord, TeamRecord, now};
use crate::validate;

/// `POST /api/teams` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    #[schema(example = "platform")]
    pub name: String,
    /// The customer the team belongs to; its limits apply to the team's keys too.
    #[serde(default)]
    pub customer_id: Option<Uuid>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// What each member's personal key gets when SSO or SCIM places the member in this team.
    #[serde(default)]
    pub member_key_limits: Option<LimitsInput>,
    /// Record the request and response bodies of the team's keys (a key's own setting wins).
    /// Off when absent.
    #[serde(default)]
    pub content_logging: Option<ContentLogging>,
    /// The MCP tools (`/mcp`) the team's keys may list and call: patterns (exact, `*` globs,
    /// `regex:`; case-insensitive) over the served names `<server>__<tool>`. Absent or null: no
    /// restriction; `[]`: no tool. A key's own list narrows it further.
    #[serde(default)]
    #[schema(example = json!(["github__*"]))]
    pub mcp_tools: Option<Vec<String>>,
}

/// Budgets, rate limit and concurrency limit, as given for a team's member keys.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

impl LimitsInput {
    fn limits(&self) -> Result<Limits, ApiError> {
        new_limits(
            self.budgets.as_deref(),
            self.rate_limit.as_ref(),
            self.max_concurrent,
        )
    }
}

/// `POST /api/customers` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerRequest {
    #[schema(example = "acme")]
    pub name: String,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// `PUT` body of a team or customer; omitted fields stay, `null` clears the nullable ones,
/// `budgets` given replaces the list (a budget keeps its id and windows while its
/// `reset_duration` stays). Read-only fields of a listed team or customer are accepted and
/// ignored, so it can be sent back as it was read.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    /// Must equal the id in the path if given.
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub name: Option<String>,
    /// Teams only.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Uuid>, nullable)]
    pub customer_id: Option<Option<Uuid>>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<RateLimit>, nullable)]
    pub rate_limit: Option<Option<RateLimit>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<u32>, nullable)]
    pub max_concurrent: Option<Option<u32>>,
    /// Teams only: replaces the member key limits (`null` removes them). Keys already placed
    /// keep theirs; members placed from now on get these.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<LimitsInput>, nullable)]
    pub member_key_limits: Option<Option<LimitsInput>>,
    /// Teams only, admins only: replaces the team's content-logging setting (`null` turns it
    /// off).
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<ContentLogging>, nullable)]
    pub content_logging: Option<Option<ContentLogging>>,
    /// Teams only, admins only: replaces the team's MCP tool allowlist (`null`: no restriction,
    /// `[]`: no tool).
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub mcp_tools: Option<Option<Vec<String>>>,
    /// Read-only; ignored.
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamResponse {
    pub id: Uuid,
    pub name: String,
    pub customer_id: Option<Uuid>,
    #[serde(flatten)]
    pub limits: LimitsView,
    /// The limits members' personal keys get when SSO or SCIM places them here.
    pub member_key_limits: Option<LimitsView>,
    /// Whether the bodies of the team's keys' requests are recorded (`null`: not recorded,
    /// unless a key says otherwise).
    pub content_logging: Option<ContentLogging>,
    /// The MCP tools the team's keys may use, over served names `<server>__<tool>` (`null`: no
    /// restriction).
    pub mcp_tools: Option<Vec<String>>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&TeamRecord> for TeamResponse {
    fn from(t: &TeamRecord) -> Self {
        TeamResponse {
            id: t.id,
            name: t.name.clone(),
            customer_id: t.customer_id,
            limits: LimitsView::from(&t.limits),
            member_key_limits: t.member_key_limits.as_ref().map(LimitsView::from),
            content_logging: t.content_logging,
            mcp_tools: t.mcp_tools.clone(),
            created_at: timestamp(t.created_at),
            updated_at: timestamp(t.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CustomerResponse {
    pub id: Uuid,
    pub name: String,
    #[serde(flatten)]
    pub limits: LimitsView,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&CustomerRecord> for CustomerResponse {
    fn from(c: &CustomerRecord) -> Self {
        CustomerResponse {
            id: c.id,
            name: c.name.clone(),
            limits: LimitsView::from(&c.limits),
            created_at: timestamp(c.created_at),
            updated_at: timestamp(c.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TeamList {
    pub teams: Vec<TeamResponse>,
    pub count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerResponse>,
    pub count: usize,
}

fn check_path_id(given: Option<Uuid>, id: Uuid) -> Result<(), ApiError> {
    match given {
        Some(g) if g != id => Err(ApiError::invalid_field(
            "id",
            "does not match the id in the path",
        )),
        _ => Ok(()),
    }
}

fn new_limits(
    budgets: Option<&[BudgetInput]>,
    rate: Option<&RateLimit>,
    concurrent: Option<u32>,
) -> Result<Limits, ApiError> {
    Ok(governance::limits(
        "",
        budgets,
        rate,
        concurrent,
        &Limits::default(),
        now(),
    )?)
}

fn apply_limits(
    limits: &mut Limits,
    req: &UpdateGroupRequest,
) -> Result<(), validate::ValidationError> {
    governance::update_limits(
        limits,
        req.budgets.as_deref(),
        req.rate_limit.as_ref().map(Option::as_ref),
        req.max_concurrent,
        now(),
    )
}

async fn create_team(
    cp: &ControlPlane,
    audit: Audit,
    req: CreateTeamRequest,
) -> Result<(StatusCode, Json<TeamResponse>), ApiError> {
    validate::display_name("name", &req.name)?;
    let limits = new_limits(
        req.budgets.as_deref(),
        req.rate_limit.as_ref(),
        req.max_concurrent,
    )?;
    let t = now();
    let team = TeamRecord {
        id: Uuid::new_v4(),
        name: req.name,
        customer_id: req.customer_id,
        limits,
        member_key_limits: req
            .member_key_limits
            .as_ref()
            .map(LimitsInput::limits)
            .transpose()?,
        content_logging: req
            .content_logging
            .map(|c| c.check("content_logging"))
            .transpose()?,
        mcp_tools: req
            .mcp_tools
            .as_deref()
            .map(|list| crate::mcp::tool_patterns("mcp_tools", list))
            .transpose()?,
        created_at: t,
        updated_at: t,
    };
    let event = audit.event("team.create", format!("teams/{}", team.id));
    let version = cp.store().create_team(&team, &event).await?;
    cp.committed(&event, version).await?;
    Ok((StatusCode::CREATED, Json(TeamResponse::from(&team))))
}

async fn list_teams(cp: &ControlPlane, caller: &Principal) -> Result<Json<TeamList>, ApiError> {
    let teams: Vec<_> = cp
        .store()
        .list_teams()
        .await?
        .iter()
        .filter(|t| caller.covers_team(t.id))
        .map(TeamResponse::from)
        .collect();
    Ok(Json(TeamList {
        count: teams.len(),
        teams,
    }))
}

async fn get_team(
    cp: &ControlPlane,
    caller: &Principal,
    team_id: &str,
) -> Result<Json<TeamResponse>, ApiError> {
    let id = parse_id("team_id", team_id)?;
    caller.check_team(id)?;
    let team = cp
        .store()
        .get_team(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("team {id} not found")))?;
    Ok(Json(TeamResponse::from(&team)))
}

async fn update_team(
    cp: &ControlPlane,
    caller: &Principal,
    audit: Audit,
    team_id: &str,
    req: UpdateGroupRequest,
) -> Result<Json<TeamResponse>, ApiError> {
    let id = parse_id("team_id", team_id)?;
    caller.check_team(id)?;
    // A team read and sent back as it was (its content logging and tool allowlist unchanged)
    // is not a change.
    let admin_only_changes = if caller.role != Role::Admin
        && (req.content_logging.is_some() || req.mcp_tools.is_some())
    {
        let stored = cp.store().get_team(id).await?;
        stored.is_some_and(|t| {
            req.content_logging.is_some_and(|c| c != t.content_logging)
                || req.mcp_tools.as_ref().is_some_and(|m| *m != t.mcp_tools)
        })
    } else {
        false
    };
    if caller.role != Role::Admin
        && (req.name.is_some() || req.customer_id.is_some() || admin_only_changes)
    {
        return Err(ApiError::Forbidden(
            "a team admin manages their team's budgets and limits; its name, customer, \
             content logging and MCP tool allowlist are the admin's"
                .to_owned(),
        ));
    }
    check_path_id(req.id, id)?;
    if let Some(name) = &req.name {
        validate::display_name("name", name)?;
    }
    let member_key_limits = req
        .member_key_limits
        .as_ref()
        .map(|l| l.as_ref().map(LimitsInput::limits).transpose())
        .transpose()?;
    let content_logging = req
        .content_logging
        .map(|c| c.map(|c| c.check("content_logging")).transpose())
        .transpose()?;
    let mcp_tools = req
        .mcp_tools
        .as_ref()
        .map(|m| {
            m.as_deref()
                .map(|list| crate::mcp::tool_patterns("mcp_tools", list))
                .transpose()
        })
        .transpose()?;
    let apply = |team: &mut TeamRecord| {
        if let Some(name) = &req.name {
            team.name = name.clone();
        }
        if let Some(customer) = req.customer_id {
            team.customer_id = customer;
        }
        if let Some(limits) = &member_key_limits {
            team.member_key_limits.clone_from(limits);
        }
        if let Some(content) = content_logging {
            team.content_logging = content;
        }
        if let Some(tools) = &mcp_tools {
            team.mcp_tools.clone_from(tools);
        }
        apply_limits(&mut team.limits, &req)
    };
    let event = audit.event("team.update", format!("teams/{id}"));
    let (team, version) = cp.store().update_team(id, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(TeamResponse::from(&team)))
}

async fn delete_team(
    cp: &ControlPlane,
    audit: Audit,
    team_id: &str,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("team_id", team_id)?;
    let event = audit.event("team.delete", format!("teams/{id}"));
    let version = cp.store().delete_team(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_customer(
    cp: &ControlPlane,
    audit: Audit,
    req: CreateCustomerRequest,
) -> Result<(StatusCode, Json<CustomerResponse>), ApiError> {
    validate::display_name("name", &req.name)?;
    let limits = new_limits(
        req.budgets.as_deref(),
        req.rate_limit.as_ref(),
        req.max_concurrent,
    )?;
    let t = now();
    let customer = CustomerRecord {
        id: Uuid::new_v4(),
        name: req.name,
        limits,
        created_at: t,
        updated_at: t,
    };
    let event = audit.event("customer.create", format!("customers/{}", customer.id));
    let version = cp.store().create_customer(&customer, &event).await?;
    cp.committed(&event, version).await?;
    Ok((StatusCode::CREATED, Json(CustomerResponse::from(&customer))))
}

// Customers are read by configuration readers and changed by admins only (the access table),
// so their handlers take the caller only for the shared macro's shape.
async fn list_customers(
    cp: &ControlPlane,
    _caller: &Principal,
) -> Result<Json<CustomerList>, ApiError> {
    let customers: Vec<_> = cp
        .store()
        .list_customers()
        .await?
        .iter()
        .map(CustomerResponse::from)
        .collect();
    Ok(Json(CustomerList {
        count: customers.len(),
        customers,
    }))
}

async fn get_customer(
    cp: &ControlPlane,
    _caller: &Principal,
    customer_id: &str,
) -> Result<Json<CustomerResponse>, ApiError> {
    let id = parse_id("customer_id", customer_id)?;
    let customer = cp
        .store()
        .get_customer(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("customer {id} not found")))?;
    Ok(Json(CustomerResponse::from(&customer)))
}

async fn update_customer(
    cp: &ControlPlane,
    _caller: &Principal,
    audit: Audit,
    customer_id: &str,
    req: UpdateGroupRequest,
) -> Result<Json<CustomerResponse>, ApiError> {
    let id = parse_id("customer_id", customer_id)?;
    check_path_id(req.id, id)?;
    if let Some(name) = &req.name {
        validate::display_name("name", name)?;
    }
    if req.customer_id.is_some() {
        return Err(ApiError::invalid_field(
            "customer_id",
            "a customer does not belong to a customer",
        ));
    }
    if req.content_logging.is_some() {
        return Err(ApiError::invalid_field(
            "content_logging",
            "content logging is set on teams and virtual keys, not on customers",
        ));
    }
    if req.mcp_tools.is_some() {
        return Err(ApiError::invalid_field(
            "mcp_tools",
            "MCP tool allowlists are set on teams and virtual keys, not on customers",
        ));
    }
    if req.member_key_limits.is_some() {
        return Err(ApiError::invalid_field(
            "member_key_limits",
            "customers have no members of their own: set member key limits on a team",
        ));
    }
    let apply = |customer: &mut CustomerRecord| {
        if let Some(name) = &req.name {
            customer.name = name.clone();
        }
        apply_limits(&mut customer.limits, &req)
    };
    let event = audit.event("customer.update", format!("customers/{id}"));
    let (customer, version) = cp.store().update_customer(id, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(CustomerResponse::from(&customer)))
}

async fn delete_customer(
    cp: &ControlPlane,
    audit: Audit,
    customer_id: &str,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("customer_id", customer_id)?;
    let event = audit.event("customer.delete", format!("customers/{id}"));
    let version = cp.store().delete_customer(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Generates the handlers of one group kind under one route prefix (`/api/teams` and its
/// governance alias, likewise customers), each with its own OpenAPI operation.
macro_rules! group_handlers {
    ($tag:tt, $base:tt, $item:tt, $param:tt, $what:literal,
     $Create:ty, $Response:ty, $List:ty,
     [$create:ident => $create_impl:ident, $list:ident => $list_impl:ident,
      $get:ident => $get_impl:ident, $update:ident => $update_impl:ident,
      $delete:ident => $delete_impl:ident]) => {
        #[doc = concat!("Create a ", $what, ".")]
        #[utoipa::path(
            post,
            path = $base,
            tag = $tag,
            request_body = $Create,
            responses(
                (status = 201, description = "Created", body = $Response),
                (status = 400, description = "Invalid request", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 409, description = "The name is taken", body = ErrorBody),
            )
        )]
        pub(crate) async fn $create(
            State(cp): State<ControlPlane>,
            audit: Audit,
            ApiJson(req): ApiJson<$Create>,
        ) -> Result<(StatusCode, Json<$Response>), ApiError> {
            $create_impl(&cp, audit, req).await
        }

        #[doc = concat!("List every ", $what, ", by name.")]
        #[utoipa::path(
            get,
            path = $base,
            tag = $tag,
            responses(
                (status = 200, description = "All of them, by name", body = $List),
                (status = 401, description = "Not authorised", body = ErrorBody),
            )
        )]
        pub(crate) async fn $list(
            State(cp): State<ControlPlane>,
            caller: Principal,
        ) -> Result<Json<$List>, ApiError> {
            $list_impl(&cp, &caller).await
        }

        #[doc = concat!("Get a ", $what, ".")]
        #[utoipa::path(
            get,
            path = $item,
            tag = $tag,
            params(($param = Uuid, Path, description = "Id")),
            responses(
                (status = 200, description = "Found", body = $Response),
                (status = 400, description = "Malformed id", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 404, description = "Not found", body = ErrorBody),
            )
        )]
        pub(crate) async fn $get(
            State(cp): State<ControlPlane>,
            caller: Principal,
            ApiPath(id): ApiPath<String>,
        ) -> Result<Json<$Response>, ApiError> {
            $get_impl(&cp, &caller, &id).await
        }

        #[doc = concat!("Update a ", $what, "; omitted fields stay as they are.")]
        #[utoipa::path(
            put,
            path = $item,
            tag = $tag,
            params(($param = Uuid, Path, description = "Id")),
            request_body = UpdateGroupRequest,
            responses(
                (status = 200, description = "Updated", body = $Response),
                (status = 400, description = "Invalid request", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 404, description = "Not found", body = ErrorBody),
                (status = 409, description = "The name is taken", body = ErrorBody),
            )
        )]
        pub(crate) async fn $update(
            State(cp): State<ControlPlane>,
            caller: Principal,
            audit: Audit,
            ApiPath(id): ApiPath<String>,
            ApiJson(req): ApiJson<UpdateGroupRequest>,
        ) -> Result<Json<$Response>, ApiError> {
            $update_impl(&cp, &caller, audit, &id, req).await
        }

        #[doc = concat!("Delete a ", $what, " (409 while others belong to it).")]
        #[utoipa::path(
            delete,
            path = $item,
            tag = $tag,
            params(($param = Uuid, Path, description = "Id")),
            responses(
                (status = 204, description = "Deleted"),
                (status = 400, description = "Malformed id", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 404, description = "Not found", body = ErrorBody),
                (status = 409, description = "Keys or teams belong to it", body = ErrorBody),
            )
        )]
        pub(crate) async fn $delete(
            State(cp): State<ControlPlane>,
            audit: Audit,
            ApiPath(id): ApiPath<String>,
        ) -> Result<StatusCode, ApiError> {
            $delete_impl(&cp, audit, &id).await
        }
    };
}

group_handlers!("teams", "/api/teams", "/api/teams/{team_id}", "team_id", "team",
    CreateTeamRequest, TeamResponse, TeamList,
    [api_create_team => create_team, api_list_teams => list_teams, api_get_team => get_team,
     api_update_team => update_team, api_delete_team => delete_team]);
group_handlers!("governance", "/api/governance/teams", "/api/governance/teams/{team_id}",
    "team_id", "team", CreateTeamRequest, TeamResponse, TeamList,
    [governance_create_team => create_team, governance_list_teams => list_teams,
     governance_get_team => get_team, governance_update_team => update_team,
     governance_delete_team => delete_team]);
group_handlers!("customers", "/api/customers", "/api/customers/{customer_id}", "customer_id",
    "customer", CreateCustomerRequest, CustomerResponse, CustomerList,
    [api_create_customer => create_customer, api_list_customers => list_customers,
     api_get_customer => get_customer, api_update_customer => update_customer,
     api_delete_customer => delete_customer]);
group_handlers!("governance", "/api/governance/customers",
    "/api/governance/customers/{customer_id}", "customer_id", "customer",
    CreateCustomerRequest, CustomerResponse, CustomerList,
    [governance_create_customer => create_customer, governance_list_customers => list_customers,
     governance_get_customer => get_customer, governance_update_customer => update_customer,
     governance_delete_customer => delete_customer]);

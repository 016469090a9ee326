//! SCIM 2.0 (RFC 7643, RFC 7644) without HTTP: how Tollgate's users and groups look as SCIM
//! resources, the filters and PATCH operations identity providers send (Okta's and Entra ID's
//! shapes included), the discovery documents, and the SCIM error shape. The routes are in the
//! private `api::scim` module; the groups' storage in [`crate::store::ScimStore`].
//!
//! # Mapping
//! * `userName` ↔ [`UserRecord::user_name`] (case-folded, unique).
//! * `displayName`, else `name.formatted`, else `name.givenName` + `name.familyName` →
//!   `display_name`; returned as `displayName` and `name.formatted`. Given and family names are
//!   not kept separately: a PATCH of `name.givenName` or `name.familyName` alone is accepted and
//!   changes nothing.
//! * The primary entry of `emails` (else the first) → `email`; returned as the one primary
//!   `work` email. `emails[type eq "work"].value` and similar paths set it.
//! * `externalId`, `active` (booleans, or Entra's `"True"`/`"False"` strings).
//! * `groups`: read-only, the SCIM groups the user is a member of.
//! * Attributes Tollgate does not keep (`title`, `phoneNumbers`, `addresses`, the enterprise
//!   extension, ...) are accepted and ignored, so a provider's default attribute mappings work.
//!
//! Filters: `attribute eq value` terms joined with `and`, where the attribute is one of the
//! resource's filterable attributes (case-insensitive names), and the `members[value eq "id"]`
//! form; anything else is a 400 `invalidFilter`.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::identity::UserRecord;
use crate::store::ScimGroupRecord;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Where the SCIM routes are served.
pub const BASE_PATH: &str = "/scim/v2";

/// Most resources one list response holds (`count` is capped to it).
pub const MAX_RESULTS: usize = 1000;

/// A SCIM error: `{"schemas": [Error], "status": "400", "scimType"?, "detail"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    /// RFC 7644 §3.12 `scimType` (400 and 409 only).
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        body
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.detail)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `obj[key]`, the key compared case-insensitively (SCIM attribute names are).
pub fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

// ---------------------------------------------------------------------------------------------
// Resources.

/// The attributes of a user SCIM can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAttrs {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: bool,
}

impl UserAttrs {
    pub fn of(u: &UserRecord) -> Self {
        UserAttrs {
            user_name: u.user_name.clone(),
            external_id: u.external_id.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            active: u.active,
        }
    }

    pub fn write_to(&self, u: &mut UserRecord) {
        u.user_name = crate::identity::fold_user_name(&self.user_name);
        u.external_id = self.external_id.clone();
        u.display_name = self.display_name.clone();
        u.email = self.email.clone();
        u.active = self.active;
    }

    /// From a whole User resource (POST, PUT). `active` defaults to `default_active`.
    pub fn from_resource(v: &Value, default_active: bool) -> Result<Self, ScimError> {
        let obj = object(v, "a User resource")?;
        let user_name = match get_ci(obj, "userName") {
            Some(v) => non_empty(string(v, "userName")?, "userName")?,
            None => return Err(ScimError::bad("invalidValue", "userName is required")),
        };
        let mut attrs = UserAttrs {
            user_name,
            external_id: None,
            display_name: None,
            email: None,
            active: default_active,
        };
        if let Some(v) = get_ci(obj, "externalId") {
            attrs.external_id = opt_string(v, "externalId")?;
        }
        if let Some(v) = get_ci(obj, "name") {
            attrs.display_name = display_from_name(v)?;
        }
        if let Some(v) = get_ci(obj, "displayName")
            && let Some(d) = opt_string(v, "displayName")?
        {
            attrs.display_name = Some(d);
        }
        if let Some(v) = get_ci(obj, "emails") {
            attrs.email = email_from(v)?;
        }
        if let Some(v) = get_ci(obj, "active") {
            attrs.active = boolean(v, "active")?;
        }
        Ok(attrs)
    }
}

/// A user as a SCIM resource; `groups` are the SCIM groups it is a member of.
pub fn user_resource(u: &UserRecord, groups: &[(Uuid, String)]) -> Value {
    let mut r = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id.to_string(),
        "userName": u.user_name,
        "active": u.active,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(u.created_at),
            "lastModified": rfc3339(u.updated_at),
            "location": format!("{BASE_PATH}/Users/{}", u.id),
        },
    });
    if let Some(x) = &u.external_id {
        r["externalId"] = json!(x);
    }
    if let Some(d) = &u.display_name {
        r["displayName"] = json!(d);
        r["name"] = json!({ "formatted": d });
    }
    if let Some(e) = &u.email {
        r["emails"] = json!([{ "value": e, "type": "work", "primary": true }]);
    }
    if !groups.is_empty() {
        r["groups"] = Value::Array(
            groups
                .iter()
                .map(|(id, name)| {
                    json!({
                        "value": id.to_string(),
                        "display": name,
                        "$ref": format!("{BASE_PATH}/Groups/{id}"),
                        "type": "direct",
                    })
                })
                .collect(),
        );
    }
    r
}

/// The attributes of a group SCIM can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAttrs {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<Uuid>,
}

impl GroupAttrs {
    /// From a whole Group resource (POST, PUT).
    pub fn from_resource(v: &Value) -> Result<Self, ScimError> {
        let obj = object(v, "a Group resource")?;
        let display_name = match get_ci(obj, "displayName") {
            Some(v) => non_empty(string(v, "displayName")?, "displayName")?,
            None => return Err(ScimError::bad("invalidValue", "displayName is required")),
        };
        let external_id = match get_ci(obj, "externalId") {
            Some(v) => opt_string(v, "externalId")?,
            None => None,
        };
        let members = match get_ci(obj, "members") {
            Some(v) => members(v)?,
            None => Vec::new(),
        };
        Ok(GroupAttrs {
            display_name,
            external_id,
            members,
        })
    }

    pub fn write_to(&self, g: &mut ScimGroupRecord) {
        g.display_name = self.display_name.trim().to_owned();
        g.external_id = self.external_id.clone();
        g.members = self.members.clone();
    }
}

/// A group as a SCIM resource; `user_name` names members (`display`), `with_members` false
/// leaves them out (`excludedAttributes=members`).
pub fn group_resource(
    g: &ScimGroupRecord,
    user_name: &dyn Fn(Uuid) -> Option<String>,
    with_members: bool,
) -> Value {
    let mut r = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.id.to_string(),
        "displayName": g.display_name,
        "meta": {
            "resourceType": "Group",
            "created": rfc3339(g.created_at),
            "lastModified": rfc3339(g.updated_at),
            "location": format!("{BASE_PATH}/Groups/{}", g.id),
        },
    });
    if let Some(x) = &g.external_id {
        r["externalId"] = json!(x);
    }
    if with_members {
        r["members"] = Value::Array(
            g.members
                .iter()
                .map(|m| {
                    let mut v = json!({
                        "value": m.to_string(),
                        "$ref": format!("{BASE_PATH}/Users/{m}"),
                        "type": "User",
                    });
                    if let Some(n) = user_name(*m) {
                        v["display"] = json!(n);
                    }
                    v
                })
                .collect(),
        );
    }
    r
}

/// A `ListResponse` of one page.
pub fn list_response(total: usize, start_index: usize, page: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

/// `startIndex` (1-based, default 1) and `count` (default and cap [`MAX_RESULTS`]) applied
/// to `items`. Returns the page and the start index used.
pub fn paginate<T>(items: Vec<T>, start_index: Option<i64>, count: Option<i64>) -> (Vec<T>, usize) {
    let start = usize::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = usize::try_from(count.unwrap_or(MAX_RESULTS as i64).max(0))
        .unwrap_or(MAX_RESULTS)
        .min(MAX_RESULTS);
    let page = items.into_iter().skip(start - 1).take(count).collect();
    (page, start)
}

/// Applies the `attributes` and `excludedAttributes` query parameters to a resource's
/// top-level attributes (`id` and `schemas` always stay).
pub fn project(resource: &mut Value, attributes: Option<&str>, excluded: Option<&str>) {
    let names = |list: &str| -> HashSet<String> {
        list.split(',')
            .map(|a| {
                let a = strip_schema(a.trim());
                a.split('.').next().unwrap_or_default().to_ascii_lowercase()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let always = |k: &str| k == "id" || k == "schemas";
    if let Some(list) = attributes.filter(|a| !a.trim().is_empty()) {
        let keep = names(list);
        obj.retain(|k, _| always(k) || keep.contains(&k.to_ascii_lowercase()));
    }
    if let Some(list) = excluded.filter(|a| !a.trim().is_empty()) {
        let drop = names(list);
        obj.retain(|k, _| always(k) || !drop.contains(&k.to_ascii_lowercase()));
    }
}

/// Whether `excludedAttributes` leaves out `members` (groups are then listed without them).
pub fn excludes_members(excluded: Option<&str>) -> bool {
    excluded.is_some_and(|list| {
        list.split(',')
            .any(|a| strip_schema(a.trim()).eq_ignore_ascii_case("members"))
    })
}

// ---------------------------------------------------------------------------------------------
// Values.

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ScimError> {
    v.as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", format!("expected {what} (a JSON object)")))
}

fn string(v: &Value, attr: &str) -> Result<String, ScimError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ScimError::bad("invalidValue", format!("{attr} must be a string")))
}

fn non_empty(s: String, attr: &str) -> Result<String, ScimError> {
    if s.trim().is_empty() {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{attr} must not be empty"),
        ));
    }
    Ok(s.trim().to_owned())
}

/// A string, or `null` / `""` for none.
fn opt_string(v: &Value, attr: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{attr} must be a string"),
        )),
    }
}

/// A boolean, or the strings `"true"` / `"false"` in any case (Entra ID sends `"False"`).
fn boolean(v: &Value, attr: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{attr} must be a boolean"),
        )),
    }
}

/// The display name a `name` object gives: `formatted`, else given and family names.
fn display_from_name(v: &Value) -> Result<Option<String>, ScimError> {
    let Some(obj) = v.as_object() else {
        return match v {
            Value::Null => Ok(None),
            _ => Err(ScimError::bad("invalidValue", "name must be an object")),
        };
    };
    if let Some(f) = get_ci(obj, "formatted")
        && let Some(f) = opt_string(f, "name.formatted")?
    {
        return Ok(Some(f));
    }
    let part = |k: &str| -> Result<Option<String>, ScimError> {
        get_ci(obj, k).map_or(Ok(None), |v| opt_string(v, &format!("name.{k}")))
    };
    let parts: Vec<String> = [part("givenName")?, part("familyName")?]
        .into_iter()
        .flatten()
        .collect();
    Ok((!parts.is_empty()).then(|| parts.join(" ")))
}

/// The email an `emails` value gives: the primary entry's, else the first's.
fn email_from(v: &Value) -> Result<Option<String>, ScimError> {
    let entries: Vec<&Value> = match v {
        Value::Null => return Ok(None),
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => return Err(ScimError::bad("invalidValue", "emails must be an array")),
    };
    let value_of = |e: &Value| -> Result<Option<String>, ScimError> {
        match e.as_object().and_then(|o| get_ci(o, "value")) {
            Some(v) => opt_string(v, "emails.value"),
            None => Ok(None),
        }
    };
    for e in &entries {
        let primary = e
            .as_object()
            .and_then(|o| get_ci(o, "primary"))
            .map(|p| boolean(p, "emails.primary"))
            .transpose()?
            .unwrap_or(false);
        if primary && let Some(v) = value_of(e)? {
            return Ok(Some(v));
        }
    }
    for e in &entries {
        if let Some(v) = value_of(e)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// User ids of a `members` value (an array of `{"value": id}`, or one such object).
fn members(v: &Value) -> Result<Vec<Uuid>, ScimError> {
    let entries: Vec<&Value> = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "members must be an array of {\"value\": id}",
            ));
        }
    };
    entries
        .into_iter()
        .map(|e| {
            let raw = e
                .as_object()
                .and_then(|o| get_ci(o, "value"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ScimError::bad(
                        "invalidValue",
                        "a member needs a string \"value\" (a user id)",
                    )
                })?;
            raw.trim().parse::<Uuid>().map_err(|_| {
                ScimError::bad("invalidValue", format!("member {raw:?} is not a user id"))
            })
        })
        .collect()
}

/// The attribute path without a core schema URN prefix; `None` for an extension schema's
/// attribute (which Tollgate ignores).
fn strip_schema(path: &str) -> &str {
    for urn in [USER_SCHEMA, GROUP_SCHEMA] {
        if path.len() > urn.len()
            && path[..urn.len()].eq_ignore_ascii_case(urn)
            && path.as_bytes()[urn.len()] == b':'
        {
            return &path[urn.len() + 1..];
        }
    }
    path
}

fn normalize_path(path: &str) -> Option<String> {
    let p = strip_schema(path.trim());
    if p.len() >= 4 && p[..4].eq_ignore_ascii_case("urn:") {
        return None;
    }
    Some(p.to_ascii_lowercase())
}

// ---------------------------------------------------------------------------------------------
// PATCH.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One operation of a PatchOp request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// Reads a PatchOp request body (`op` names in any case, as Entra ID capitalises them).
pub fn parse_patch(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let obj = object(body, "a PatchOp request")?;
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            ScimError::bad(
                "invalidSyntax",
                "a PatchOp request needs a non-empty \"Operations\" array",
            )
        })?;
    ops.iter()
        .map(|o| {
            let o = object(o, "a PATCH operation")?;
            let op = get_ci(o, "op").and_then(Value::as_str).unwrap_or_default();
            let op = match op.to_ascii_lowercase().as_str() {
                "add" => OpKind::Add,
                "remove" => OpKind::Remove,
                "replace" => OpKind::Replace,
                _ => {
                    return Err(ScimError::bad(
                        "invalidSyntax",
                        format!("unknown PATCH op {op:?}: expected add, remove or replace"),
                    ));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(p.trim().to_owned()),
                Some(_) => return Err(ScimError::bad("invalidPath", "path must be a string")),
            };
            let value = get_ci(o, "value").cloned();
            if op != OpKind::Remove && value.is_none() {
                return Err(ScimError::bad(
                    "invalidValue",
                    "add and replace operations need a value",
                ));
            }
            Ok(PatchOp { op, path, value })
        })
        .collect()
}

/// Applies PATCH operations to a user's attributes.
pub fn patch_user(attrs: &mut UserAttrs, ops: &[PatchOp]) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            Some(path) => patch_user_attr(attrs, op.op, path, op.value.as_ref())?,
            None => {
                let obj = no_path_value(op)?;
                for (k, v) in obj {
                    patch_user_attr(attrs, op.op, k, Some(v))?;
                }
            }
        }
    }
    Ok(())
}

fn no_path_value(op: &PatchOp) -> Result<&Map<String, Value>, ScimError> {
    if op.op == OpKind::Remove {
        return Err(ScimError::bad(
            "noTarget",
            "a remove operation needs a path",
        ));
    }
    op.value.as_ref().and_then(Value::as_object).ok_or_else(|| {
        ScimError::bad(
            "invalidValue",
            "an operation without a path needs an object of attributes as its value",
        )
    })
}

fn patch_user_attr(
    a: &mut UserAttrs,
    op: OpKind,
    path: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(p) = normalize_path(path) else {
        return Ok(()); // an extension's attribute: not kept
    };
    let remove = op == OpKind::Remove;
    let v = value.unwrap_or(&Value::Null);
    match p.as_str() {
        "username" => {
            if remove {
                return Err(ScimError::bad("mutability", "userName cannot be removed"));
            }
            a.user_name = non_empty(string(v, "userName")?, "userName")?;
        }
        "externalid" => {
            a.external_id = if remove {
                None
            } else {
                opt_string(v, "externalId")?
            }
        }
        "displayname" | "name.formatted" => {
            a.display_name = if remove { None } else { opt_string(v, &p)? };
        }
        "name" => {
            if remove {
                a.display_name = None;
            } else if let Some(d) = display_from_name(v)? {
                a.display_name = Some(d);
            }
        }
        "active" => {
            if remove {
                return Err(ScimError::bad("mutability", "active cannot be removed"));
            }
            a.active = boolean(v, "active")?;
        }
        "emails" => a.email = if remove { None } else { email_from(v)? },
        _ if p.starts_with("emails[") || p == "emails.value" => {
            if remove {
                a.email = None;
            } else if p.ends_with("].value") || p == "emails.value" {
                a.email = opt_string(v, "emails.value")?;
            } else {
                a.email = email_from(v)?;
            }
        }
        _ if p == "groups" || p.starts_with("groups[") || p.starts_with("groups.") => {
            return Err(ScimError::bad(
                "mutability",
                "groups is read-only on Users: change memberships through /Groups",
            ));
        }
        // Read-only or not kept (id, meta, title, phoneNumbers, name.givenName, ...).
        _ => {}
    }
    Ok(())
}

/// Applies PATCH operations to a group's attributes.
pub fn patch_group(g: &mut GroupAttrs, ops: &[PatchOp]) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            Some(path) => patch_group_attr(g, op.op, path, op.value.as_ref())?,
            None => {
                let obj = no_path_value(op)?;
                for (k, v) in obj {
                    patch_group_attr(g, op.op, k, Some(v))?;
                }
            }
        }
    }
    Ok(())
}

fn patch_group_attr(
    g: &mut GroupAttrs,
    op: OpKind,
    path: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(p) = normalize_path(path) else {
        return Ok(());
    };
    let v = value.unwrap_or(&Value::Null);
    match (p.as_str(), op) {
        ("displayname", OpKind::Remove) => {
            return Err(ScimError::bad(
                "mutability",
                "displayName cannot be removed",
            ));
        }
        ("displayname", _) => g.display_name = non_empty(string(v, "displayName")?, "displayName")?,
        ("externalid", OpKind::Remove) => g.external_id = None,
        ("externalid", _) => g.external_id = opt_string(v, "externalId")?,
        ("members", OpKind::Add) => {
            for m in members(v)? {
                if !g.members.contains(&m) {
                    g.members.push(m);
                }
            }
        }
        ("members", OpKind::Replace) => g.members = members(v)?,
        ("members", OpKind::Remove) => {
            if value.is_none() || v.is_null() {
                g.members.clear();
            } else {
                let gone = members_lenient(v);
                g.members.retain(|m| !gone.contains(m));
            }
        }
        _ if p.starts_with("members[") => {
            // Entra ID: {"op": "Remove", "path": "members[value eq \"<id>\"]"}.
            let inner = path.trim();
            let open = inner.find('[').unwrap_or(0);
            let close = inner.rfind(']').unwrap_or(inner.len());
            if op != OpKind::Remove || close <= open || inner[close + 1..].trim() != "" {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("unsupported path {path:?}: only remove takes a members[...] filter"),
                ));
            }
            let filter = Filter::parse(&inner[open + 1..close], &["value"])?;
            g.members
                .retain(|m| !filter.matches(&json!({ "value": m.to_string() })));
        }
        _ => {}
    }
    Ok(())
}

/// Member ids to remove: values that are not user ids cannot be members, so they are skipped.
fn members_lenient(v: &Value) -> Vec<Uuid> {
    let entries: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    entries
        .into_iter()
        .filter_map(|e| {
            e.as_object()
                .and_then(|o| get_ci(o, "value"))
                .and_then(Value::as_str)
                .and_then(|s| s.trim().parse().ok())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Filters.

/// Filterable attributes of Users (lower case).
pub const USER_FILTER_ATTRS: &[&str] = &[
    "id",
    "username",
    "externalid",
    "displayname",
    "emails.value",
    "active",
];
/// Filterable attributes of Groups (lower case).
pub const GROUP_FILTER_ATTRS: &[&str] = &["id", "displayname", "externalid", "members.value"];

/// Attributes compared case-exactly (RFC 7643: `id`, `externalId` and references are).
const CASE_EXACT: &[&str] = &["id", "externalid", "members.value", "value"];

/// A parsed filter: `eq` conditions that must all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conds: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
}

fn invalid_filter(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidFilter", detail)
}

fn tokenize(text: &str) -> Result<Vec<Token>, ScimError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '[' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ']' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(invalid_filter("unterminated string in filter"));
            }
            i += 1;
            let lit: String = chars[start..i].iter().collect();
            let s: String = serde_json::from_str(&lit)
                .map_err(|_| invalid_filter("bad string literal in filter"))?;
            tokens.push(Token::Str(s));
        } else if c == '(' || c == ')' {
            return Err(invalid_filter("grouping with parentheses is not supported"));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"[]\"()".contains(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(tokens)
}

impl Filter {
    /// Parses `text`; the attributes must be among `allowed` (lower case).
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Filter, ScimError> {
        let tokens = tokenize(text)?;
        let mut conds = Vec::new();
        let mut it = tokens.into_iter().peekable();
        loop {
            let Some(Token::Word(attr)) = it.next() else {
                return Err(invalid_filter(format!(
                    "unsupported filter {text:?}: expected `attribute eq \"value\"`"
                )));
            };
            let mut path = normalize_path(&attr)
                .ok_or_else(|| invalid_filter(format!("cannot filter on {attr:?}")))?;
            if it.peek() == Some(&Token::Open) {
                it.next();
                let (
                    Some(Token::Word(sub)),
                    Some(Token::Word(op)),
                    Some(value),
                    Some(Token::Close),
                ) = (it.next(), it.next(), it.next(), it.next())
                else {
                    return Err(invalid_filter(format!("unsupported filter {text:?}")));
                };
                path = format!("{path}.{}", sub.to_ascii_lowercase());
                conds.push((path, Self::value(&op, value, &attr)?));
            } else {
                let (Some(Token::Word(op)), Some(value)) = (it.next(), it.next()) else {
                    return Err(invalid_filter(format!(
                        "unsupported filter {text:?}: expected `attribute eq \"value\"`"
                    )));
                };
                conds.push((path, Self::value(&op, value, &attr)?));
            }
            if !allowed.contains(&conds[conds.len() - 1].0.as_str()) {
                return Err(invalid_filter(format!(
                    "cannot filter on {attr:?}; filterable: {}",
                    allowed.join(", ")
                )));
            }
            match it.next() {
                None => break,
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("and") => continue,
                Some(_) => {
                    return Err(invalid_filter(format!(
                        "unsupported filter {text:?}: only `and` joins conditions"
                    )));
                }
            }
        }
        Ok(Filter { conds })
    }

    fn value(op: &str, value: Token, attr: &str) -> Result<Value, ScimError> {
        if !op.eq_ignore_ascii_case("eq") {
            return Err(invalid_filter(format!(
                "unsupported operator {op:?} on {attr:?}: only eq is supported"
            )));
        }
        Ok(match value {
            Token::Str(s) => Value::String(s),
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Value::Null,
            Token::Word(w) => serde_json::from_str::<serde_json::Number>(&w)
                .map(Value::Number)
                .map_err(|_| invalid_filter(format!("bad value {w:?} in filter")))?,
            _ => return Err(invalid_filter("missing value in filter")),
        })
    }

    /// Whether a rendered resource satisfies every condition.
    pub fn matches(&self, resource: &Value) -> bool {
        self.conds.iter().all(|(path, want)| {
            let mut found = Vec::new();
            collect(resource, &path.split('.').collect::<Vec<_>>(), &mut found);
            if want.is_null() {
                return found.iter().all(|v| v.is_null());
            }
            let exact = CASE_EXACT.contains(&path.as_str());
            found.iter().any(|&have| match (have, want) {
                (Value::String(h), Value::String(w)) if exact => h == w,
                (Value::String(h), Value::String(w)) => h.to_lowercase() == w.to_lowercase(),
                (h, w) => h == w,
            })
        })
    }
}

/// The values at `path` (case-insensitive keys) under `v`, flattening arrays.
fn collect<'a>(v: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        _ if path.is_empty() => out.push(v),
        Value::Object(o) => {
            if let Some(next) = get_ci(o, path[0]) {
                collect(next, &path[1..], out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery.

pub fn service_provider_config() -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The SCIM token an admin created with POST /api/scim/token, as `Authorization: Bearer <token>`",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{BASE_PATH}/ServiceProviderConfig"),
        },
    })
}

pub fn resource_type(name: &str) -> Option<Value> {
    let (endpoint, schema, description) = match name {
        "User" => ("/Users", USER_SCHEMA, "People who may use the gateway"),
        "Group" => (
            "/Groups",
            GROUP_SCHEMA,
            "Groups that map to teams and roles",
        ),
        _ => return None,
    };
    Some(json!({
        "schemas": [RESOURCE_TYPE],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": description,
        "schema": schema,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{BASE_PATH}/ResourceTypes/{name}"),
        },
    }))
}

fn attr(name: &str, kind: &str, multi: bool, required: bool, mutability: &str) -> Value {
    let mut a = json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "required": required,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": "none",
    });
    if kind == "string" || kind == "reference" {
        a["caseExact"] = json!(false);
    }
    a
}

fn with_sub(mut a: Value, sub: Vec<Value>) -> Value {
    a["subAttributes"] = Value::Array(sub);
    a
}

pub fn schema(id: &str) -> Option<Value> {
    let (name, description, attributes) = if id.eq_ignore_ascii_case(USER_SCHEMA) {
        let mut user_name = attr("userName", "string", false, true, "readWrite");
        user_name["uniqueness"] = json!("server");
        let mut external_id = attr("externalId", "string", false, false, "readWrite");
        external_id["caseExact"] = json!(true);
        (
            "User",
            "User Account",
            vec![
                user_name,
                external_id,
                with_sub(
                    attr("name", "complex", false, false, "readWrite"),
                    vec![
                        attr("formatted", "string", false, false, "readWrite"),
                        attr("givenName", "string", false, false, "readWrite"),
                        attr("familyName", "string", false, false, "readWrite"),
                    ],
                ),
                attr("displayName", "string", false, false, "readWrite"),
                attr("active", "boolean", false, false, "readWrite"),
                with_sub(
                    attr("emails", "complex", true, false, "readWrite"),
                    vec![
                        attr("value", "string", false, false, "readWrite"),
                        attr("type", "string", false, false, "readWrite"),
                        attr("primary", "boolean", false, false, "readWrite"),
                    ],
                ),
                with_sub(
                    attr("groups", "complex", true, false, "readOnly"),
                    vec![
                        attr("value", "string", false, false, "readOnly"),
                        attr("$ref", "reference", false, false, "readOnly"),
                        attr("display", "string", false, false, "readOnly"),
                    ],
                ),
            ],
        )
    } else if id.eq_ignore_ascii_case(GROUP_SCHEMA) {
        let mut display = attr("displayName", "string", false, true, "readWrite");
        display["uniqueness"] = json!("server");
        (
            "Group",
            "Group",
            vec![
                display,
                attr("externalId", "string", false, false, "readWrite"),
                with_sub(
                    attr("members", "complex", true, false, "readWrite"),
                    vec![
                        attr("value", "string", false, false, "immutable"),
                        attr("$ref", "reference", false, false, "immutable"),
                        attr("display", "string", false, false, "readOnly"),
                    ],
                ),
            ],
        )
    } else {
        return None;
    };
    let id = if name == "User" {
        USER_SCHEMA
    } else {
        GROUP_SCHEMA
    };
    Some(json!({
        "schemas": [SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{BASE_PATH}/Schemas/{id}"),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> UserAttrs {
        UserAttrs {
            user_name: "alice@example.com".into(),
            external_id: None,
            display_name: None,
            email: None,
            active: true,
        }
    }

    fn ops(v: Value) -> Vec<PatchOp> {
        parse_patch(&json!({"schemas": [PATCH_OP], "Operations": v})).unwrap()
    }

    #[test]
    fn okta_and_entra_deactivation_shapes() {
        let mut a = attrs();
        patch_user(
            &mut a,
            &ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .unwrap();
        assert!(!a.active);
        let mut a = attrs();
        patch_user(
            &mut a,
            &ops(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .unwrap();
        assert!(!a.active);
        patch_user(
            &mut a,
            &ops(json!([{"op": "Replace", "path": "active", "value": "True"}])),
        )
        .unwrap();
        assert!(a.active);
        assert_eq!(
            patch_user(
                &mut a,
                &ops(json!([{"op": "replace", "path": "active", "value": "maybe"}]))
            )
            .unwrap_err()
            .scim_type,
            Some("invalidValue")
        );
    }

    #[test]
    fn entra_attribute_paths() {
        let mut a = attrs();
        patch_user(
            &mut a,
            &ops(json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@x.io"},
                {"op": "Replace", "path": "displayName", "value": "Alice A"},
                {"op": "Add", "path": "title", "value": "Engineer"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "R&D"},
                {"op": "Replace", "path": "externalId", "value": "e-1"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "value": "Alice2@Example.com"},
            ])),
        )
        .unwrap();
        assert_eq!(a.email.as_deref(), Some("a@x.io"));
        assert_eq!(a.display_name.as_deref(), Some("Alice A"));
        assert_eq!(a.external_id.as_deref(), Some("e-1"));
        assert_eq!(a.user_name, "Alice2@Example.com");
        patch_user(
            &mut a,
            &ops(json!([{"op": "remove", "path": "externalId"}])),
        )
        .unwrap();
        assert_eq!(a.external_id, None);
        assert_eq!(
            patch_user(
                &mut a,
                &ops(json!([{"op": "add", "path": "groups", "value": []}]))
            )
            .unwrap_err()
            .scim_type,
            Some("mutability")
        );
    }

    #[test]
    fn group_member_patches() {
        let (u1, u2, u3) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut g = GroupAttrs {
            display_name: "eng".into(),
            external_id: None,
            members: vec![],
        };
        patch_group(
            &mut g,
            &ops(json!([{"op": "Add", "path": "members", "value": [{"value": u1.to_string()}, {"value": u2.to_string()}]}])),
        )
        .unwrap();
        assert_eq!(g.members, vec![u1, u2]);
        patch_group(
            &mut g,
            &ops(json!([{"op": "Remove", "path": format!("members[value eq \"{u1}\"]")}])),
        )
        .unwrap();
        assert_eq!(g.members, vec![u2]);
        patch_group(
            &mut g,
            &ops(
                json!([{"op": "remove", "path": "members", "value": [{"value": u2.to_string()}]}]),
            ),
        )
        .unwrap();
        assert!(g.members.is_empty());
        patch_group(
            &mut g,
            &ops(json!([{"op": "replace", "value": {"id": "x", "displayName": "eng2", "members": [{"value": u3.to_string()}]}}])),
        )
        .unwrap();
        assert_eq!(
            (g.display_name.as_str(), g.members.clone()),
            ("eng2", vec![u3])
        );
        patch_group(&mut g, &ops(json!([{"op": "remove", "path": "members"}]))).unwrap();
        assert!(g.members.is_empty());
    }

    #[test]
    fn filters() {
        let user = json!({"id": "abc", "userName": "alice@example.com", "externalId": "X1",
                          "emails": [{"value": "A@x.io"}], "active": true});
        let f = |t: &str| Filter::parse(t, USER_FILTER_ATTRS);
        assert!(
            f("userName eq \"Alice@Example.com\"")
                .unwrap()
                .matches(&user)
        );
        assert!(
            f("USERNAME Eq \"alice@example.com\"")
                .unwrap()
                .matches(&user)
        );
        assert!(f("externalId eq \"X1\"").unwrap().matches(&user));
        assert!(
            !f("externalId eq \"x1\"").unwrap().matches(&user),
            "case-exact"
        );
        assert!(
            f("emails.value eq \"a@x.io\" and active eq true")
                .unwrap()
                .matches(&user)
        );
        assert!(!f("userName eq \"bob\"").unwrap().matches(&user));
        for bad in [
            "userName co \"a\"",
            "title eq \"x\"",
            "userName eq \"a\" or userName eq \"b\"",
            "(userName eq \"a\")",
            "userName eq",
            "userName eq \"unterminated",
            "",
        ] {
            assert_eq!(
                f(bad).unwrap_err().scim_type,
                Some("invalidFilter"),
                "{bad}"
            );
        }
        let g = Filter::parse("members[value eq \"u1\"]", GROUP_FILTER_ATTRS).unwrap();
        assert!(g.matches(&json!({"members": [{"value": "u0"}, {"value": "u1"}]})));
        assert!(!g.matches(&json!({"members": []})));
    }

    #[test]
    fn resources_from_create_bodies() {
        let a = UserAttrs::from_resource(
            &json!({"userName": "Bob@X.io", "name": {"givenName": "Bob", "familyName": "B"},
                    "emails": [{"value": "home@x.io"}, {"value": "bob@x.io", "primary": "true"}],
                    "active": "False", "groups": [{"value": "ignored"}]}),
            true,
        )
        .unwrap();
        assert_eq!(a.display_name.as_deref(), Some("Bob B"));
        assert_eq!(a.email.as_deref(), Some("bob@x.io"));
        assert!(!a.active);
        assert_eq!(
            UserAttrs::from_resource(&json!({"name": {}}), true)
                .unwrap_err()
                .scim_type,
            Some("invalidValue")
        );
        assert_eq!(
            UserAttrs::from_resource(&json!([]), true)
                .unwrap_err()
                .scim_type,
            Some("invalidSyntax")
        );
    }

    #[test]
    fn projection_and_pagination() {
        let mut r = json!({"schemas": [], "id": "1", "userName": "a", "emails": [], "meta": {}});
        project(&mut r, Some("userName"), None);
        assert_eq!(r, json!({"schemas": [], "id": "1", "userName": "a"}));
        let mut r = json!({"schemas": [], "id": "1", "members": [], "displayName": "g"});
        project(&mut r, None, Some("members"));
        assert_eq!(r, json!({"schemas": [], "id": "1", "displayName": "g"}));
        assert_eq!(
            paginate(vec![1, 2, 3, 4], Some(2), Some(2)),
            (vec![2, 3], 2)
        );
        assert_eq!(paginate(vec![1, 2], Some(0), None), (vec![1, 2], 1));
        assert_eq!(paginate(vec![1, 2], None, Some(0)), (vec![], 1));
        assert_eq!(paginate(vec![1, 2], Some(5), Some(-1)), (vec![], 5));
    }
}

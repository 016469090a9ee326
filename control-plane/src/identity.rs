//! Who uses the admin API: users (from SSO or SCIM), their roles, their personal virtual key,
//! sessions and personal API tokens, and the settings that map identity-provider groups to
//! teams and roles. Pure: records, rules and derivations; storage is in
//! [`crate::store::IdentityStore`], HTTP in the private `api` module.
//!
//! # Roles
//! * `admin`: everything.
//! * `team-admin`: reads the configuration; manages the keys and budgets of their own team.
//! * `member`: their own key, its usage, their own API tokens.
//! * `viewer`: reads everything, changes nothing.
//!
//! A user's role is the one an admin assigned, else the highest role any of their groups maps
//! to, else the settings' default (`member`). The admin token and the loopback rule act as
//! `admin`.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::VIRTUAL_KEY_PREFIX;

/// Roles, lowest to highest privilege for mapping purposes (`viewer` < `member` <
/// `team-admin` < `admin`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    #[default]
    Member,
    TeamAdmin,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::TeamAdmin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::TeamAdmin => "team-admin",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person who may sign in.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    /// The OIDC issuer and `sub` of their first login (none yet for users SCIM created).
    pub issuer: Option<String>,
    pub subject: Option<String>,
    /// Unique, case-folded (SCIM `userName`, else the login's email or `preferred_username`).
    pub user_name: String,
    /// SCIM `externalId`.
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Group names from the identity provider (the login's groups claim, or SCIM groups).
    pub groups: Vec<String>,
    /// The role an admin assigned; `None`: from the groups.
    pub role: Option<Role>,
    pub team_id: Option<Uuid>,
    pub active: bool,
    /// How many times the personal key was rotated (part of its derivation).
    pub key_generation: u64,
    pub last_login_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Folds a user name for storage and matching (user names are case-insensitive, as SCIM's
/// `userName` is).
pub fn fold_user_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A browser session (the cookie holds the value; the store its digest).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id_sha256: [u8; 32],
    pub user_id: Uuid,
    /// Sent back by the browser in `X-CSRF-Token` on every mutation.
    pub csrf_token: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A personal API token for scripts: it acts as its user, with the user's role.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiTokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub token_sha256: [u8; 32],
    /// The first characters of the value, to recognise it in listings.
    pub value_prefix: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The setting that holds the [`GroupMappings`].
pub const GROUP_MAPPINGS_SETTING: &str = "group_mappings";

/// Prefix of personal API token values.
pub const API_TOKEN_PREFIX: &str = "tgp_";

/// Which groups put a user in which team, and which give which role. Part of the SSO settings,
/// also applied to SCIM group memberships.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMappings {
    /// The first rule (in order) whose group the user is in gives their team.
    #[serde(default)]
    pub teams: Vec<TeamMapping>,
    /// The highest role any of the user's groups maps to.
    #[serde(default)]
    pub roles: Vec<RoleMapping>,
    /// The role of users no rule gives one (default `member`).
    #[serde(default)]
    pub default_role: Role,
    /// When not empty, only users in one of these groups may sign in (anyone the identity
    /// provider authenticates otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMapping {
    pub group: String,
    pub team_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    pub group: String,
    pub role: Role,
}

impl GroupMappings {
    /// The team the groups map to, if a rule matches.
    pub fn team_for(&self, groups: &[String]) -> Option<Uuid> {
        self.teams
            .iter()
            .find(|m| groups.iter().any(|g| g == &m.group))
            .map(|m| m.team_id)
    }

    /// The role the groups give (highest match, else the default).
    pub fn role_for(&self, groups: &[String]) -> Role {
        self.roles
            .iter()
            .filter(|m| groups.iter().any(|g| g == &m.group))
            .map(|m| m.role)
            .max()
            .unwrap_or(self.default_role)
    }

    /// Whether a user in `groups` may sign in.
    pub fn admits(&self, groups: &[String]) -> bool {
        self.allowed_groups.is_empty() || groups.iter().any(|g| self.allowed_groups.contains(g))
    }

    /// A user's effective role: the assigned one, else from their groups.
    pub fn effective_role(&self, user: &UserRecord) -> Role {
        user.role.unwrap_or_else(|| self.role_for(&user.groups))
    }
}

/// The value of a user's personal virtual key: `sk-tg-` and base64url of
/// HMAC-SHA256(`secret`, "tollgate personal virtual key v1", user id, generation), where
/// `secret` is a key derived from the master key for this purpose only
/// (`crypto::derive_key(master, b"tollgate personal keys v1")`, see `ControlPlane::personal_key`).
///
/// Only its digest is stored (as for every virtual key), so the database alone does not hold
/// it; the control plane can give it again to its owner after they sign in, without rotating
/// it (a second laptop, `tollgate login` run again). Whoever holds both the master key file
/// and the database can derive it, as they can open the sealed provider secrets.
pub fn personal_key_value(secret: &[u8; 32], user_id: Uuid, generation: u64) -> String {
    use base64::Engine as _;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"tollgate personal virtual key v1\0");
    mac.update(user_id.as_bytes());
    mac.update(&generation.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    format!(
        "{VIRTUAL_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The name of a user's personal virtual key (virtual-key names are unique).
pub fn personal_key_name(user: &UserRecord) -> String {
    format!("personal:{}", user.user_name)
}

/// What a login (or SCIM) says about a user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub user_name: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// `None`: the source says nothing about groups (keep the stored ones).
    pub groups: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str], role: Option<Role>) -> UserRecord {
        UserRecord {
            id: Uuid::nil(),
            issuer: None,
            subject: None,
            user_name: "a@example.com".into(),
            external_id: None,
            email: None,
            display_name: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            role,
            team_id: None,
            active: true,
            key_generation: 0,
            last_login_at: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn roles_come_from_assignment_then_highest_group_then_default() {
        let (t1, t2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let m = GroupMappings {
            teams: vec![
                TeamMapping {
                    group: "eng".into(),
                    team_id: t1,
                },
                TeamMapping {
                    group: "ml".into(),
                    team_id: t2,
                },
            ],
            roles: vec![
                RoleMapping {
                    group: "auditors".into(),
                    role: Role::Viewer,
                },
                RoleMapping {
                    group: "eng-leads".into(),
                    role: Role::TeamAdmin,
                },
            ],
            default_role: Role::Member,
            allowed_groups: Vec::new(),
        };
        assert!(m.admits(&[]), "no allowed groups: everyone");
        let gated = GroupMappings {
            allowed_groups: vec!["eng".into(), "ml".into()],
            ..m.clone()
        };
        assert!(gated.admits(&["other".into(), "ml".into()]));
        assert!(!gated.admits(&["other".into()]) && !gated.admits(&[]));
        assert_eq!(m.effective_role(&user(&[], None)), Role::Member);
        assert_eq!(m.effective_role(&user(&["auditors"], None)), Role::Viewer);
        assert_eq!(
            m.effective_role(&user(&["auditors", "eng-leads"], None)),
            Role::TeamAdmin
        );
        assert_eq!(
            m.effective_role(&user(&["eng-leads"], Some(Role::Viewer))),
            Role::Viewer
        );
        assert_eq!(m.team_for(&["ml".into(), "eng".into()]), Some(t1));
        assert_eq!(m.team_for(&["ml".into()]), Some(t2));
        assert_eq!(m.team_for(&["other".into()]), None);
    }

    #[test]
    fn personal_keys_are_stable_per_generation_and_distinct_per_user_and_master_key() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let (u1, u2) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let v = personal_key_value(&k1, u1, 0);
        assert!(
            v.starts_with("sk-tg-") && v.len() == "sk-tg-".len() + 43,
            "{v}"
        );
        assert_eq!(v, personal_key_value(&k1, u1, 0));
        assert_ne!(v, personal_key_value(&k1, u1, 1));
        assert_ne!(v, personal_key_value(&k1, u2, 0));
        assert_ne!(v, personal_key_value(&k2, u1, 0));
    }

    #[test]
    fn roles_parse_and_print_in_kebab_case() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(Role::parse("superuser"), None);
    }
}

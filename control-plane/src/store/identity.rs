//! Storage of identities (migration 0011): users, their personal virtual key, sessions,
//! personal API tokens and the identity settings, shared by both backends like the rest of the
//! store (one SQL text, `$N` placeholders).
//!
//! Invariants on top of the store's:
//! * a user has at most one personal virtual key (`virtual_keys.user_id` is unique) and it is
//!   created in the transaction that provisions the user, under the writers' lock, so neither a
//!   second nor a concurrent login creates another;
//! * whatever changes what data planes enforce (a key created, moved, deactivated, deleted)
//!   bumps the config version in its transaction, like every config change; sign-ins that
//!   change nothing of that take the writers' lock without bumping;
//! * deactivating a user deactivates their key, ends their sessions and revokes their API
//!   tokens in the same transaction; deleting a user deletes their key.

use async_trait::async_trait;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::identity::{
    ApiTokenRecord, GroupMappings, Profile, Role, SessionRecord, UserRecord, fold_user_name,
};
use crate::model::AuditEvent;

/// Gives the value of a user's personal key for (user id, generation); the store keeps its
/// digest ([`crate::identity::personal_key_value`] bound to the master key).
pub type PersonalKey<'a> = dyn Fn(Uuid, u64) -> String + Send + Sync + 'a;

/// What [`IdentityStore::provision_user`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    pub user: UserRecord,
    /// The user row was created by this login.
    pub user_created: bool,
    /// The personal key was created by this login.
    pub key_created: bool,
    /// The personal key's id (`None` for an inactive user who never had one).
    pub personal_key_id: Option<Uuid>,
    /// The config version the login produced, when it changed what data planes enforce.
    pub version: Option<u64>,
}

/// The identity half of the store; every [`super::Store`] implements it.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    async fn get_user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;
    /// By (case-folded) user name.
    async fn get_user_by_name(&self, user_name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// The id of a user's personal virtual key.
    async fn personal_key_id(&self, user_id: Uuid) -> Result<Option<Uuid>, StoreError>;

    /// A sign-in: finds the user by (issuer, subject), else by user name (a user SCIM created
    /// before their first login, or one whose identity provider changed subject), creates them
    /// otherwise; records the profile; places them in the team `mappings` give their groups
    /// (keeping their team when no rule matches); and makes sure an active user has exactly
    /// one personal key, in that team with its member key limits. An inactive user is returned
    /// as found (`user.active == false`), with nothing changed: the caller refuses the login.
    /// `event` is the login's audit row; the store adds what it did to its details.
    async fn provision_user(
        &self,
        profile: &Profile,
        mappings: &GroupMappings,
        key: &PersonalKey<'_>,
        event: &AuditEvent,
    ) -> Result<Provisioned, StoreError>;

    /// Creates a user without a key (SCIM); the key comes with their first login.
    async fn create_user(&self, user: &UserRecord, event: &AuditEvent) -> Result<u64, StoreError>;

    /// Changes a user (admin, SCIM). Moves, deactivates or reactivates their personal key with
    /// them; deactivation also ends their sessions and revokes their API tokens. A change of
    /// groups re-applies the team mapping.
    async fn update_user(
        &self,
        id: Uuid,
        apply: &super::Apply<'_, UserRecord>,
        mappings: &GroupMappings,
        event: &AuditEvent,
    ) -> Result<(UserRecord, u64), StoreError>;

    /// Deletes a user, their personal key, sessions and API tokens.
    async fn delete_user(&self, id: Uuid, event: &AuditEvent) -> Result<u64, StoreError>;

    /// Replaces the personal key's value with the next generation's; returns the user after
    /// and the config version.
    async fn rotate_personal_key(
        &self,
        user_id: Uuid,
        key: &PersonalKey<'_>,
        event: &AuditEvent,
    ) -> Result<(UserRecord, u64), StoreError>;

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// An unexpired session of an active user, with the user.
    async fn session(
        &self,
        id_sha256: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError>;
    async fn delete_session(&self, id_sha256: &[u8; 32]) -> Result<(), StoreError>;
    /// Removes expired sessions; returns how many.
    async fn purge_expired_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    async fn create_api_token(
        &self,
        token: &ApiTokenRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn list_api_tokens(&self, user_id: Uuid) -> Result<Vec<ApiTokenRecord>, StoreError>;
    /// Revokes a token of `user_id` (NotFound when it has no such token).
    async fn revoke_api_token(
        &self,
        user_id: Uuid,
        id: Uuid,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// An unrevoked, unexpired token of an active user, with the user; records its use.
    async fn api_token(
        &self,
        token_sha256: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError>;

    /// An identity setting (`sso`, `scim`), as stored.
    async fn setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError>;
    /// Replaces an identity setting (`None` removes it).
    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    issuer: Option<String>,
    subject: Option<String>,
    user_name: String,
    external_id: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    groups: Json<Vec<String>>,
    role: Option<String>,
    team_id: Option<Uuid>,
    active: bool,
    key_generation: i64,
    last_login_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        let role = match r.role.as_deref() {
            None => None,
            Some(s) => Some(Role::parse(s).ok_or_else(|| StoreError::Corrupt {
                table: "users",
                reason: format!("role {s:?} of {} is unknown", r.id),
            })?),
        };
        Ok(UserRecord {
            id: r.id,
            issuer: r.issuer,
            subject: r.subject,
            user_name: r.user_name,
            external_id: r.external_id,
            email: r.email,
            display_name: r.display_name,
            groups: r.groups.0,
            role,
            team_id: r.team_id,
            active: r.active,
            key_generation: u64::try_from(r.key_generation).unwrap_or(0),
            last_login_at: r.last_login_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id_sha256: Vec<u8>,
    user_id: Uuid,
    csrf_token: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;
    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        Ok(SessionRecord {
            id_sha256: digest("sessions", &r.id_sha256)?,
            user_id: r.user_id,
            csrf_token: r.csrf_token,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiTokenRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    token_sha256: Vec<u8>,
    value_prefix: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    last_used_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

impl TryFrom<ApiTokenRow> for ApiTokenRecord {
    type Error = StoreError;
    fn try_from(r: ApiTokenRow) -> Result<Self, StoreError> {
        Ok(ApiTokenRecord {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            token_sha256: digest("api_tokens", &r.token_sha256)?,
            value_prefix: r.value_prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

fn digest(table: &'static str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        table,
        reason: "a digest is not 32 bytes".to_owned(),
    })
}

/// The user name a profile is stored under.
pub(crate) fn profile_user_name(profile: &Profile) -> Result<String, StoreError> {
    let name = fold_user_name(&profile.user_name);
    if name.is_empty() {
        return Err(StoreError::Invalid(crate::validate::ValidationError::new(
            "user_name",
            "the identity provider gave no user name, email or subject",
        )));
    }
    Ok(name)
}

/// A setting as its audit rows show it: sealed values (`enc:...`, such as the OIDC client
/// secret) as `"<redacted>"`, everything else as stored; `null` when there is none.
pub(crate) struct SettingView<'a>(pub Option<&'a serde_json::Value>);

impl crate::audit::AuditView for SettingView<'_> {
    fn audit_view(&self) -> serde_json::Value {
        fn redact(v: &serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::String(s) if s.starts_with("enc:") => {
                    serde_json::Value::String(crate::model::REDACTED.to_owned())
                }
                serde_json::Value::Array(a) => a.iter().map(redact).collect(),
                serde_json::Value::Object(o) => {
                    o.iter().map(|(k, v)| (k.clone(), redact(v))).collect()
                }
                other => other.clone(),
            }
        }
        self.0.map_or(serde_json::Value::Null, redact)
    }

    fn sealed_fields(&self) -> Vec<(&'static str, String)> {
        // A replaced secret reads "<redacted>" on both sides: compare the sealed text.
        let mut sealed = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<(&'static str, String)>) {
            match v {
                serde_json::Value::String(s) if s.starts_with("enc:") => {
                    out.push(("sealed_secret", s.clone()))
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        if let Some(v) = self.0 {
            walk(v, &mut sealed);
        }
        sealed
    }
}

/// Shared SQL (both backends).
pub(crate) mod sql {
    pub const LIST_USERS: &str = "SELECT id, issuer, subject, user_name, external_id, email, \
         display_name, groups, role, team_id, active, key_generation, last_login_at, created_at, \
         updated_at FROM users ORDER BY user_name";
    pub const GET_USER: &str = "SELECT id, issuer, subject, user_name, external_id, email, \
         display_name, groups, role, team_id, active, key_generation, last_login_at, created_at, \
         updated_at FROM users WHERE id = $1";
    pub const USER_BY_NAME: &str = "SELECT id, issuer, subject, user_name, external_id, email, \
         display_name, groups, role, team_id, active, key_generation, last_login_at, created_at, \
         updated_at FROM users WHERE user_name = $1";
    pub const USER_BY_SUBJECT: &str = "SELECT id, issuer, subject, user_name, external_id, email, \
         display_name, groups, role, team_id, active, key_generation, last_login_at, created_at, \
         updated_at FROM users WHERE issuer = $1 AND subject = $2";
    pub const INSERT_USER: &str = "INSERT INTO users (id, issuer, subject, user_name, external_id, \
         email, display_name, groups, role, team_id, active, key_generation, last_login_at, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    pub const UPDATE_USER: &str = "UPDATE users SET issuer = $2, subject = $3, user_name = $4, \
         external_id = $5, email = $6, display_name = $7, groups = $8, role = $9, team_id = $10, \
         active = $11, key_generation = $12, last_login_at = $13, created_at = $14, updated_at = $15 \
         WHERE id = $1";
    pub const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";

    pub const PERSONAL_KEY: &str = "SELECT id FROM virtual_keys WHERE user_id = $1";
    pub const SET_KEY_VALUE: &str = "UPDATE virtual_keys SET key_sha256 = $2, value_prefix = $3, \
         updated_at = $4 WHERE user_id = $1";
    pub const DELETE_PERSONAL_KEY: &str = "DELETE FROM virtual_keys WHERE user_id = $1";
    pub const TEAM_MEMBER_LIMITS: &str = "SELECT member_key_limits FROM teams WHERE id = $1";

    pub const INSERT_SESSION: &str = "INSERT INTO sessions (id_sha256, user_id, csrf_token, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
    pub const GET_SESSION: &str = "SELECT id_sha256, user_id, csrf_token, created_at, expires_at \
         FROM sessions WHERE id_sha256 = $1 AND expires_at > $2";
    pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id_sha256 = $1";
    pub const DELETE_USER_SESSIONS: &str = "DELETE FROM sessions WHERE user_id = $1";
    pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";

    pub const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, user_id, name, token_sha256, \
         value_prefix, created_at, expires_at, last_used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    pub const LIST_TOKENS: &str = "SELECT id, user_id, name, token_sha256, value_prefix, \
         created_at, expires_at, last_used_at, revoked_at FROM api_tokens WHERE user_id = $1 \
         ORDER BY created_at, name";
    pub const GET_TOKEN: &str = "SELECT id, user_id, name, token_sha256, value_prefix, \
         created_at, expires_at, last_used_at, revoked_at FROM api_tokens \
         WHERE token_sha256 = $1 AND revoked_at IS NULL AND expires_at > $2";
    pub const TOUCH_TOKEN: &str = "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1";
    pub const REVOKE_TOKEN: &str = "UPDATE api_tokens SET revoked_at = $3 \
         WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL";
    pub const REVOKE_USER_TOKENS: &str =
        "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";

    pub const GET_SETTING: &str = "SELECT value FROM settings WHERE name = $1";
    pub const UPSERT_SETTING: &str = "INSERT INTO settings (name, value, updated_at) \
         VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = $2, updated_at = $3";
    pub const DELETE_SETTING: &str = "DELETE FROM settings WHERE name = $1";
}

/// Implements [`IdentityStore`] for a backend; expanded next to `impl_sql_store!`, whose
/// helpers (`bump`, `audit`, `Conn`, ...) it uses.
macro_rules! impl_identity_store {
    ($store:ty) => {
        use $crate::identity::{
            personal_key_name, ApiTokenRecord, GroupMappings, Profile, SessionRecord, UserRecord,
        };
        use $crate::store::identity::{
            profile_user_name, sql as isql, ApiTokenRow, IdentityStore, PersonalKey, Provisioned,
            SessionRow, UserRow,
        };

        async fn fetch_user(conn: &mut Conn, q: &'static str, a: &str, b: Option<&str>) -> Result<Option<UserRecord>, StoreError> {
            let mut query = sqlx::query_as::<_, UserRow>(q).bind(a);
            if let Some(b) = b {
                query = query.bind(b);
            }
            query.fetch_optional(&mut *conn).await?.map(UserRecord::try_from).transpose()
        }

        async fn fetch_user_by_id(conn: &mut Conn, id: uuid::Uuid) -> Result<Option<UserRecord>, StoreError> {
            sqlx::query_as::<_, UserRow>(isql::GET_USER)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .map(UserRecord::try_from)
                .transpose()
        }

        async fn write_user(conn: &mut Conn, q: &'static str, u: &UserRecord) -> Result<(), StoreError> {
            sqlx::query(q)
                .bind(u.id)
                .bind(&u.issuer)
                .bind(&u.subject)
                .bind(&u.user_name)
                .bind(&u.external_id)
                .bind(&u.email)
                .bind(&u.display_name)
                .bind(sqlx::types::Json(&u.groups))
                .bind(u.role.map(|r| r.as_str()))
                .bind(u.team_id)
                .bind(u.active)
                .bind(i64::try_from(u.key_generation).unwrap_or(i64::MAX))
                .bind(u.last_login_at)
                .bind(u.created_at)
                .bind(u.updated_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    let name = u.user_name.clone();
                    unique_to_conflict(e, || format!("a user named {name:?} already exists"))
                })?;
            Ok(())
        }

        async fn personal_key(conn: &mut Conn, user_id: uuid::Uuid) -> Result<Option<uuid::Uuid>, StoreError> {
            Ok(sqlx::query_scalar(isql::PERSONAL_KEY)
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        async fn member_key_limits(conn: &mut Conn, team: Option<uuid::Uuid>) -> Result<$crate::governance::Limits, StoreError> {
            let Some(team) = team else {
                return Ok(Default::default());
            };
            let limits: Option<Option<sqlx::types::Json<$crate::governance::Limits>>> =
                sqlx::query_scalar(isql::TEAM_MEMBER_LIMITS)
                    .bind(team)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(limits.flatten().map(|l| l.0).unwrap_or_default())
        }

        /// Creates the personal key of `user` (active, in their team, with its member limits).
        async fn create_personal_key(
            conn: &mut Conn,
            user: &UserRecord,
            key: &PersonalKey<'_>,
        ) -> Result<uuid::Uuid, StoreError> {
            let value = key(user.id, user.key_generation);
            let limits = member_key_limits(conn, user.team_id).await?;
            let t = $crate::model::now();
            let vk = VirtualKeyRecord {
                id: uuid::Uuid::now_v7(),
                name: personal_key_name(user),
                description: Some(format!("Personal key of {}", user.user_name)),
                key_sha256: $crate::crypto::sha256(value.as_bytes()),
                value_prefix: $crate::crypto::virtual_key_prefix(&value),
                providers: Vec::new(),
                active: user.active,
                team_id: user.team_id,
                customer_id: None,
                user_id: Some(user.id),
                governance: $crate::governance::KeyGovernance { limits, ..Default::default() },
                created_at: t,
                updated_at: t,
            };
            insert_vk(conn, &vk).await?;
            Ok(vk.id)
        }

        /// Moves the personal key to the user's team (with that team's member limits) and sets
        /// it active as the user is.
        async fn follow_user(conn: &mut Conn, user: &UserRecord) -> Result<(), StoreError> {
            let Some(id) = personal_key(conn, user.id).await? else {
                return Ok(());
            };
            let mut vk = fetch_vk(conn, id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("virtual key {id} not found")))?;
            if vk.team_id != user.team_id {
                vk.team_id = user.team_id;
                vk.customer_id = None;
                vk.governance.limits = member_key_limits(conn, user.team_id).await?;
            }
            vk.active = user.active;
            vk.updated_at = $crate::model::now();
            update_vk(conn, &vk).await?;
            Ok(())
        }

        /// Ends the sessions and revokes the API tokens of a user.
        async fn sign_out_everywhere(conn: &mut Conn, user_id: uuid::Uuid) -> Result<(), StoreError> {
            sqlx::query(isql::DELETE_USER_SESSIONS).bind(user_id).execute(&mut *conn).await?;
            sqlx::query(isql::REVOKE_USER_TOKENS)
                .bind(user_id)
                .bind($crate::model::now())
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl IdentityStore for $store {
            async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
                sqlx::query_as::<_, UserRow>(isql::LIST_USERS)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(UserRecord::try_from)
                    .collect()
            }

            async fn get_user(&self, id: uuid::Uuid) -> Result<Option<UserRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_user_by_id(&mut conn, id).await
            }

            async fn get_user_by_name(&self, user_name: &str) -> Result<Option<UserRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let name = $crate::identity::fold_user_name(user_name);
                fetch_user(&mut conn, isql::USER_BY_NAME, &name, None).await
            }

            async fn personal_key_id(&self, user_id: uuid::Uuid) -> Result<Option<uuid::Uuid>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                personal_key(&mut conn, user_id).await
            }

            async fn provision_user(
                &self,
                profile: &Profile,
                mappings: &GroupMappings,
                key: &PersonalKey<'_>,
                event: &AuditEvent,
            ) -> Result<Provisioned, StoreError> {
                let user_name = profile_user_name(profile)?;
                let mut tx = self.begin_write().await?;
                let mut version = lock_writers(&mut tx).await?;
                let by_subject = match (&profile.issuer, &profile.subject) {
                    (Some(iss), Some(sub)) => {
                        fetch_user(&mut tx, isql::USER_BY_SUBJECT, iss, Some(sub)).await?
                    }
                    _ => None,
                };
                let found = match by_subject {
                    Some(u) => Some(u),
                    None => fetch_user(&mut tx, isql::USER_BY_NAME, &user_name, None).await?,
                };
                if let Some(u) = &found
                    && !u.active
                {
                    return Ok(Provisioned {
                        user: u.clone(),
                        user_created: false,
                        key_created: false,
                        personal_key_id: None,
                        version: None,
                    });
                }
                let t = $crate::model::now();
                let user_created = found.is_none();
                let mut user = found.clone().unwrap_or_else(|| UserRecord {
                    id: uuid::Uuid::now_v7(),
                    issuer: None,
                    subject: None,
                    user_name: user_name.clone(),
                    external_id: None,
                    email: None,
                    display_name: None,
                    groups: Vec::new(),
                    role: None,
                    team_id: None,
                    active: true,
                    key_generation: 0,
                    last_login_at: None,
                    created_at: t,
                    updated_at: t,
                });
                user.issuer = profile.issuer.clone().or(user.issuer);
                user.subject = profile.subject.clone().or(user.subject);
                user.user_name = user_name;
                user.email = profile.email.clone().or(user.email);
                user.display_name = profile.display_name.clone().or(user.display_name);
                if let Some(groups) = &profile.groups {
                    user.groups = groups.clone();
                }
                if user_created || profile.groups.is_some() {
                    if let Some(team) = mappings.team_for(&user.groups) {
                        user.team_id = Some(team);
                    }
                }
                user.last_login_at = Some(t);
                user.updated_at = t;
                let moved = found.as_ref().is_some_and(|f| f.team_id != user.team_id);
                let existing_key = if user_created { None } else { personal_key(&mut tx, user.id).await? };
                let key_created = existing_key.is_none();
                if key_created || moved {
                    version = bump(&mut tx).await?;
                }
                if user_created {
                    write_user(&mut tx, isql::INSERT_USER, &user).await?;
                } else {
                    write_user(&mut tx, isql::UPDATE_USER, &user).await?;
                }
                let personal_key_id = match existing_key {
                    Some(id) => {
                        if moved {
                            follow_user(&mut tx, &user).await?;
                        }
                        id
                    }
                    None => create_personal_key(&mut tx, &user, key).await?,
                };
                let event = event
                    .clone()
                    .with("user_created", serde_json::json!(user_created))
                    .with("key_created", serde_json::json!(key_created))
                    .with("personal_key_id", serde_json::json!(personal_key_id));
                audit_change(&mut tx, &event, version, found.as_ref(), Some(&user)).await?;
                tx.commit().await?;
                Ok(Provisioned {
                    user,
                    user_created,
                    key_created,
                    personal_key_id: Some(personal_key_id),
                    version: (key_created || moved).then_some(version),
                })
            }

            async fn create_user(&self, user: &UserRecord, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                write_user(&mut tx, isql::INSERT_USER, user).await?;
                audit_change(&mut tx, event, version, None, Some(user)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_user(
                &self,
                id: uuid::Uuid,
                apply: &$crate::store::Apply<'_, UserRecord>,
                mappings: &GroupMappings,
                event: &AuditEvent,
            ) -> Result<(UserRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_user_by_id(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("user {id} not found")))?;
                let mut user = before.clone();
                apply(&mut user)?;
                user.id = id;
                user.user_name = $crate::identity::fold_user_name(&user.user_name);
                if user.groups != before.groups
                    && let Some(team) = mappings.team_for(&user.groups)
                {
                    user.team_id = Some(team);
                }
                user.created_at = before.created_at;
                user.updated_at = $crate::model::now();
                write_user(&mut tx, isql::UPDATE_USER, &user).await?;
                follow_user(&mut tx, &user).await?;
                if before.active && !user.active {
                    sign_out_everywhere(&mut tx, id).await?;
                }
                audit_change(&mut tx, event, version, Some(&before), Some(&user)).await?;
                tx.commit().await?;
                Ok((user, version))
            }

            async fn delete_user(&self, id: uuid::Uuid, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_user_by_id(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("user {id} not found")))?;
                sqlx::query(isql::DELETE_PERSONAL_KEY).bind(id).execute(&mut *tx).await?;
                sqlx::query(isql::DELETE_USER).bind(id).execute(&mut *tx).await?;
                audit_change(&mut tx, event, version, Some(&before), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn rotate_personal_key(
                &self,
                user_id: uuid::Uuid,
                key: &PersonalKey<'_>,
                event: &AuditEvent,
            ) -> Result<(UserRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_user_by_id(&mut tx, user_id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("user {user_id} not found")))?;
                let mut user = before.clone();
                user.key_generation += 1;
                user.updated_at = $crate::model::now();
                write_user(&mut tx, isql::UPDATE_USER, &user).await?;
                let value = key(user.id, user.key_generation);
                let changed = sqlx::query(isql::SET_KEY_VALUE)
                    .bind(user_id)
                    .bind(&$crate::crypto::sha256(value.as_bytes())[..])
                    .bind($crate::crypto::virtual_key_prefix(&value))
                    .bind(user.updated_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    return Err(StoreError::NotFound(format!(
                        "user {user_id} has no personal key yet: it is created at their first sign-in"
                    )));
                }
                audit_change(&mut tx, event, version, Some(&before), Some(&user)).await?;
                tx.commit().await?;
                Ok((user, version))
            }

            async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
                sqlx::query(isql::INSERT_SESSION)
                    .bind(&s.id_sha256[..])
                    .bind(s.user_id)
                    .bind(&s.csrf_token)
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn session(
                &self,
                id_sha256: &[u8; 32],
                now: time::OffsetDateTime,
            ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let Some(row) = sqlx::query_as::<_, SessionRow>(isql::GET_SESSION)
                    .bind(&id_sha256[..])
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?
                else {
                    return Ok(None);
                };
                let session = SessionRecord::try_from(row)?;
                Ok(fetch_user_by_id(&mut conn, session.user_id)
                    .await?
                    .filter(|u| u.active)
                    .map(|u| (session, u)))
            }

            async fn delete_session(&self, id_sha256: &[u8; 32]) -> Result<(), StoreError> {
                sqlx::query(isql::DELETE_SESSION)
                    .bind(&id_sha256[..])
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_expired_sessions(&self, now: time::OffsetDateTime) -> Result<u64, StoreError> {
                Ok(sqlx::query(isql::PURGE_SESSIONS)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn create_api_token(&self, t: &ApiTokenRecord, event: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                sqlx::query(isql::INSERT_TOKEN)
                    .bind(t.id)
                    .bind(t.user_id)
                    .bind(&t.name)
                    .bind(&t.token_sha256[..])
                    .bind(&t.value_prefix)
                    .bind(t.created_at)
                    .bind(t.expires_at)
                    .bind(t.last_used_at)
                    .bind(t.revoked_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        let name = t.name.clone();
                        unique_to_conflict(e, || format!("you already have an API token named {name:?}"))
                    })?;
                audit_change(&mut tx, event, version, None, Some(t)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_api_tokens(&self, user_id: uuid::Uuid) -> Result<Vec<ApiTokenRecord>, StoreError> {
                sqlx::query_as::<_, ApiTokenRow>(isql::LIST_TOKENS)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(ApiTokenRecord::try_from)
                    .collect()
            }

            async fn revoke_api_token(
                &self,
                user_id: uuid::Uuid,
                id: uuid::Uuid,
                event: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                let n = sqlx::query(isql::REVOKE_TOKEN)
                    .bind(user_id)
                    .bind(id)
                    .bind($crate::model::now())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("no active API token {id}")));
                }
                audit(&mut tx, &event.clone().success(), version).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn api_token(
                &self,
                token_sha256: &[u8; 32],
                now: time::OffsetDateTime,
            ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let Some(row) = sqlx::query_as::<_, ApiTokenRow>(isql::GET_TOKEN)
                    .bind(&token_sha256[..])
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?
                else {
                    return Ok(None);
                };
                let token = ApiTokenRecord::try_from(row)?;
                let Some(user) = fetch_user_by_id(&mut conn, token.user_id).await?.filter(|u| u.active) else {
                    return Ok(None);
                };
                sqlx::query(isql::TOUCH_TOKEN)
                    .bind(token.id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                Ok(Some((token, user)))
            }

            async fn setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
                let v: Option<sqlx::types::Json<serde_json::Value>> =
                    sqlx::query_scalar(isql::GET_SETTING)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(v.map(|v| v.0))
            }

            async fn put_setting(
                &self,
                name: &str,
                value: Option<&serde_json::Value>,
                event: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                let before: Option<sqlx::types::Json<serde_json::Value>> =
                    sqlx::query_scalar(isql::GET_SETTING)
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let setting = $crate::store::identity::SettingView(before.as_ref().map(|b| &b.0));
                let after = $crate::store::identity::SettingView(value);
                match value {
                    Some(v) => {
                        sqlx::query(isql::UPSERT_SETTING)
                            .bind(name)
                            .bind(sqlx::types::Json(v))
                            .bind($crate::model::now())
                            .execute(&mut *tx)
                            .await?;
                    }
                    None => {
                        sqlx::query(isql::DELETE_SETTING).bind(name).execute(&mut *tx).await?;
                    }
                }
                audit_change(&mut tx, event, version, Some(&setting), Some(&after)).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_identity_store;

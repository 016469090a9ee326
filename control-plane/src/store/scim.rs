//! Storage of SCIM groups (migration 0012): the groups an identity provider pushes to
//! `/scim/v2/Groups` and their members, shared by both backends (one SQL text).
//!
//! A group's members carry its display name in their [`crate::identity::UserRecord::groups`]: every change
//! of a group (created with members, members added or removed, renamed, deleted) updates the
//! members it concerns in the same transaction, re-applies the group → team mapping to them
//! (keeping their team when no rule matches, as [`super::IdentityStore::update_user`] does) and
//! moves their personal key with them. Such a change bumps the config version (a key may have
//! moved); a change that touches no user takes the writers' lock without bumping.
//!
//! Only the group's own name is added or removed, so groups a user got from elsewhere (the
//! groups claim of their last SSO login) are kept.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::identity::GroupMappings;
use crate::model::AuditEvent;

/// A SCIM group.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimGroupRecord {
    pub id: Uuid,
    /// Unique; the name group mappings match and members' `groups` hold.
    pub display_name: String,
    pub external_id: Option<String>,
    /// User ids, sorted, without duplicates.
    pub members: Vec<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The SCIM half of the store; every [`super::Store`] implements it.
#[async_trait]
pub trait ScimStore: Send + Sync + 'static {
    /// Every group with its members, by display name.
    async fn list_scim_groups(&self) -> Result<Vec<ScimGroupRecord>, StoreError>;
    async fn get_scim_group(&self, id: Uuid) -> Result<Option<ScimGroupRecord>, StoreError>;
    /// The (id, display name) of the groups `user_id` is a member of, by display name.
    async fn scim_groups_of(&self, user_id: Uuid) -> Result<Vec<(Uuid, String)>, StoreError>;
    /// Creates a group and adds its members (unknown user ids: [`StoreError::Invalid`]; a
    /// taken display name: [`StoreError::Conflict`]). Returns the config version after.
    async fn create_scim_group(
        &self,
        group: &ScimGroupRecord,
        mappings: &GroupMappings,
        event: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// Changes a group (name, external id, members) with `apply`, run on the stored group in
    /// the transaction. Returns the group after and the config version after.
    async fn update_scim_group(
        &self,
        id: Uuid,
        apply: &super::Apply<'_, ScimGroupRecord>,
        mappings: &GroupMappings,
        event: &AuditEvent,
    ) -> Result<(ScimGroupRecord, u64), StoreError>;
    /// Deletes a group; its members lose its name. Returns the config version after.
    async fn delete_scim_group(
        &self,
        id: Uuid,
        mappings: &GroupMappings,
        event: &AuditEvent,
    ) -> Result<u64, StoreError>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct ScimGroupRow {
    pub(crate) id: Uuid,
    pub(crate) display_name: String,
    pub(crate) external_id: Option<String>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
}

impl ScimGroupRow {
    pub(crate) fn with_members(self, mut members: Vec<Uuid>) -> ScimGroupRecord {
        members.sort();
        members.dedup();
        ScimGroupRecord {
            id: self.id,
            display_name: self.display_name,
            external_id: self.external_id,
            members,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Checks a group before it is written; sorts and dedups its members.
pub(crate) fn normalize_group(group: &mut ScimGroupRecord) -> Result<(), StoreError> {
    group.display_name = group.display_name.trim().to_owned();
    if group.display_name.is_empty() {
        return Err(StoreError::Invalid(crate::validate::ValidationError::new(
            "displayName",
            "a group needs a non-empty displayName",
        )));
    }
    group.members.sort();
    group.members.dedup();
    Ok(())
}

/// Shared SQL (both backends).
pub(crate) mod sql {
    pub const LIST_GROUPS: &str = "SELECT id, display_name, external_id, created_at, updated_at \
         FROM scim_groups ORDER BY display_name";
    pub const GET_GROUP: &str = "SELECT id, display_name, external_id, created_at, updated_at \
         FROM scim_groups WHERE id = $1";
    pub const LIST_MEMBERS: &str = "SELECT group_id, user_id FROM scim_group_members";
    pub const GROUP_MEMBERS: &str = "SELECT user_id FROM scim_group_members WHERE group_id = $1";
    pub const GROUPS_OF: &str = "SELECT g.id, g.display_name FROM scim_groups g \
         JOIN scim_group_members m ON m.group_id = g.id WHERE m.user_id = $1 \
         ORDER BY g.display_name";
    pub const INSERT_GROUP: &str = "INSERT INTO scim_groups (id, display_name, external_id, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5)";
    pub const UPDATE_GROUP: &str = "UPDATE scim_groups SET display_name = $2, external_id = $3, \
         updated_at = $4 WHERE id = $1";
    pub const DELETE_GROUP: &str = "DELETE FROM scim_groups WHERE id = $1";
    pub const INSERT_MEMBER: &str =
        "INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2)";
    pub const DELETE_MEMBER: &str =
        "DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2";
}

/// Implements [`ScimStore`] for a backend; expanded after `impl_identity_store!`, whose helpers
/// (`fetch_user_by_id`, `write_user`, `follow_user`) and `impl_sql_store!`'s (`lock_writers`,
/// `bump`, `audit`, `Conn`) it uses.
macro_rules! impl_scim_store {
    ($store:ty) => {
        use $crate::store::scim::{
            ScimGroupRecord, ScimGroupRow, ScimStore, normalize_group, sql as ssql,
        };

        async fn fetch_group(
            conn: &mut Conn,
            id: uuid::Uuid,
        ) -> Result<Option<ScimGroupRecord>, StoreError> {
            let Some(row) = sqlx::query_as::<_, ScimGroupRow>(ssql::GET_GROUP)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let members: Vec<uuid::Uuid> = sqlx::query_scalar(ssql::GROUP_MEMBERS)
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
            Ok(Some(row.with_members(members)))
        }

        /// Takes `remove` out of a member's groups and puts `add` in; re-applies the team
        /// mapping and moves their key. Returns whether the user changed.
        async fn regroup(
            conn: &mut Conn,
            user_id: uuid::Uuid,
            remove: Option<&str>,
            add: Option<&str>,
            mappings: &GroupMappings,
        ) -> Result<bool, StoreError> {
            let Some(before) = fetch_user_by_id(conn, user_id).await? else {
                return Ok(false);
            };
            let mut user = before.clone();
            if let Some(r) = remove {
                user.groups.retain(|g| g != r);
            }
            if let Some(a) = add
                && !user.groups.iter().any(|g| g == a)
            {
                user.groups.push(a.to_owned());
            }
            if user.groups == before.groups {
                return Ok(false);
            }
            if let Some(team) = mappings.team_for(&user.groups) {
                user.team_id = Some(team);
            }
            user.updated_at = $crate::model::now();
            write_user(conn, isql::UPDATE_USER, &user).await?;
            follow_user(conn, &user).await?;
            Ok(true)
        }

        async fn check_members(conn: &mut Conn, members: &[uuid::Uuid]) -> Result<(), StoreError> {
            for (i, m) in members.iter().enumerate() {
                if fetch_user_by_id(conn, *m).await?.is_none() {
                    return Err(StoreError::Invalid($crate::validate::ValidationError::new(
                        format!("members[{i}].value"),
                        format!("no user {m}"),
                    )));
                }
            }
            Ok(())
        }

        fn group_conflict(e: sqlx::Error, name: &str) -> StoreError {
            unique_to_conflict(e, || format!("a group named {name:?} already exists"))
        }

        #[async_trait::async_trait]
        impl ScimStore for $store {
            async fn list_scim_groups(&self) -> Result<Vec<ScimGroupRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let rows = sqlx::query_as::<_, ScimGroupRow>(ssql::LIST_GROUPS)
                    .fetch_all(&mut *conn)
                    .await?;
                let pairs: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(ssql::LIST_MEMBERS)
                    .fetch_all(&mut *conn)
                    .await?;
                let mut members: std::collections::HashMap<uuid::Uuid, Vec<uuid::Uuid>> =
                    std::collections::HashMap::new();
                for (g, u) in pairs {
                    members.entry(g).or_default().push(u);
                }
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let m = members.remove(&r.id).unwrap_or_default();
                        r.with_members(m)
                    })
                    .collect())
            }

            async fn get_scim_group(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<ScimGroupRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_group(&mut conn, id).await
            }

            async fn scim_groups_of(
                &self,
                user_id: uuid::Uuid,
            ) -> Result<Vec<(uuid::Uuid, String)>, StoreError> {
                Ok(sqlx::query_as(ssql::GROUPS_OF)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn create_scim_group(
                &self,
                group: &ScimGroupRecord,
                mappings: &GroupMappings,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut group = group.clone();
                normalize_group(&mut group)?;
                let mut tx = self.begin_write().await?;
                let mut version = lock_writers(&mut tx).await?;
                check_members(&mut tx, &group.members).await?;
                sqlx::query(ssql::INSERT_GROUP)
                    .bind(group.id)
                    .bind(&group.display_name)
                    .bind(&group.external_id)
                    .bind(group.created_at)
                    .bind(group.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| group_conflict(e, &group.display_name))?;
                let mut changed = false;
                for m in &group.members {
                    sqlx::query(ssql::INSERT_MEMBER)
                        .bind(group.id)
                        .bind(*m)
                        .execute(&mut *tx)
                        .await?;
                    changed |=
                        regroup(&mut tx, *m, None, Some(&group.display_name), mappings).await?;
                }
                if changed {
                    version = bump(&mut tx).await?;
                }
                audit(&mut tx, event, version).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_scim_group(
                &self,
                id: uuid::Uuid,
                apply: &$crate::store::Apply<'_, ScimGroupRecord>,
                mappings: &GroupMappings,
                event: &AuditEvent,
            ) -> Result<(ScimGroupRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let mut version = lock_writers(&mut tx).await?;
                let before = fetch_group(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("group {id} not found")))?;
                let mut group = before.clone();
                apply(&mut group)?;
                group.id = id;
                group.created_at = before.created_at;
                normalize_group(&mut group)?;
                let added: Vec<uuid::Uuid> = group
                    .members
                    .iter()
                    .filter(|m| before.members.binary_search(m).is_err())
                    .copied()
                    .collect();
                let removed: Vec<uuid::Uuid> = before
                    .members
                    .iter()
                    .filter(|m| group.members.binary_search(m).is_err())
                    .copied()
                    .collect();
                check_members(&mut tx, &added).await?;
                if group != before {
                    group.updated_at = $crate::model::now();
                    sqlx::query(ssql::UPDATE_GROUP)
                        .bind(id)
                        .bind(&group.display_name)
                        .bind(&group.external_id)
                        .bind(group.updated_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| group_conflict(e, &group.display_name))?;
                }
                let (old, new) = (before.display_name.as_str(), group.display_name.as_str());
                let mut changed = false;
                for m in &removed {
                    sqlx::query(ssql::DELETE_MEMBER)
                        .bind(id)
                        .bind(*m)
                        .execute(&mut *tx)
                        .await?;
                    changed |= regroup(&mut tx, *m, Some(old), None, mappings).await?;
                }
                for m in &added {
                    sqlx::query(ssql::INSERT_MEMBER)
                        .bind(id)
                        .bind(*m)
                        .execute(&mut *tx)
                        .await?;
                    changed |= regroup(&mut tx, *m, None, Some(new), mappings).await?;
                }
                if old != new {
                    for m in group.members.iter().filter(|m| !added.contains(m)) {
                        changed |= regroup(&mut tx, *m, Some(old), Some(new), mappings).await?;
                    }
                }
                if changed {
                    version = bump(&mut tx).await?;
                }
                audit(&mut tx, event, version).await?;
                tx.commit().await?;
                Ok((group, version))
            }

            async fn delete_scim_group(
                &self,
                id: uuid::Uuid,
                mappings: &GroupMappings,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let mut version = lock_writers(&mut tx).await?;
                let group = fetch_group(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("group {id} not found")))?;
                sqlx::query(ssql::DELETE_GROUP)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let mut changed = false;
                for m in &group.members {
                    changed |=
                        regroup(&mut tx, *m, Some(&group.display_name), None, mappings).await?;
                }
                if changed {
                    version = bump(&mut tx).await?;
                }
                audit(&mut tx, event, version).await?;
                tx.commit().await?;
                Ok(version)
            }
        }
    };
}
pub(crate) use impl_scim_store;

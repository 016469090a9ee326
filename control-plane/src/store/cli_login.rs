//! Storage of `tollgate login`'s pending sign-ins (migration 0013), both backends: the device
//! code's digest, the user code a person approves in the browser, who approved or denied it,
//! and when the CLI last polled.
//!
//! Redeeming an approved login deletes its row in the same statement that reads it
//! (`DELETE ... RETURNING`), so a device code gives the key once, however many polls race.

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::StoreError;
use crate::model::AuditEvent;

/// A pending sign-in of the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct CliLoginRecord {
    pub device_code_sha256: [u8; 32],
    /// Upper-case letters, without the dash shown to people.
    pub user_code: String,
    /// Who approved or denied it.
    pub user_id: Option<Uuid>,
    pub denied: bool,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_poll_at: Option<OffsetDateTime>,
}

/// What a poll of the CLI found (RFC 8628's answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliPoll {
    /// No such device code (never issued, already redeemed, or purged).
    Unknown,
    Expired,
    Pending,
    /// Polled sooner than the interval allows.
    SlowDown,
    Denied,
    /// Approved by this user; the row is gone (redeemed).
    Approved(Uuid),
}

#[async_trait]
pub trait CliLoginStore: Send + Sync + 'static {
    /// Stores a new pending login, after purging expired ones. Conflict when its user code is
    /// taken (draw another) or when `max_pending` logins are already pending.
    async fn create_cli_login(
        &self,
        login: &CliLoginRecord,
        max_pending: u64,
    ) -> Result<(), StoreError>;

    /// The unexpired login of a user code.
    async fn cli_login(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<CliLoginRecord>, StoreError>;

    /// Approves (or denies) a pending, unexpired login as `user_id`; false when there is none.
    /// `event` is audited in the same transaction.
    async fn decide_cli_login(
        &self,
        user_code: &str,
        user_id: Uuid,
        approve: bool,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// A poll of the CLI: see [`CliPoll`]. `interval` is the least time between two polls.
    async fn poll_cli_login(
        &self,
        device_code_sha256: &[u8; 32],
        now: OffsetDateTime,
        interval: Duration,
    ) -> Result<CliPoll, StoreError>;

    /// Removes expired logins; returns how many.
    async fn purge_cli_logins(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct CliLoginRow {
    pub device_code_sha256: Vec<u8>,
    pub user_code: String,
    pub user_id: Option<Uuid>,
    pub denied: bool,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_poll_at: Option<OffsetDateTime>,
}

impl TryFrom<CliLoginRow> for CliLoginRecord {
    type Error = StoreError;
    fn try_from(r: CliLoginRow) -> Result<Self, StoreError> {
        Ok(CliLoginRecord {
            device_code_sha256: <[u8; 32]>::try_from(r.device_code_sha256.as_slice()).map_err(
                |_| StoreError::Corrupt {
                    table: "cli_logins",
                    reason: "a digest is not 32 bytes".to_owned(),
                },
            )?,
            user_code: r.user_code,
            user_id: r.user_id,
            denied: r.denied,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_poll_at: r.last_poll_at,
        })
    }
}

pub(crate) mod sql {
    pub const PURGE: &str = "DELETE FROM cli_logins WHERE expires_at <= $1";
    pub const COUNT_PENDING: &str =
        "SELECT count(*) FROM cli_logins WHERE expires_at > $1 AND user_id IS NULL";
    pub const INSERT: &str = "INSERT INTO cli_logins (device_code_sha256, user_code, user_id, \
         denied, created_at, expires_at, last_poll_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    pub const BY_USER_CODE: &str = "SELECT device_code_sha256, user_code, user_id, denied, \
         created_at, expires_at, last_poll_at FROM cli_logins \
         WHERE user_code = $1 AND expires_at > $2";
    pub const BY_DEVICE_CODE: &str = "SELECT device_code_sha256, user_code, user_id, denied, \
         created_at, expires_at, last_poll_at FROM cli_logins WHERE device_code_sha256 = $1";
    pub const DECIDE: &str = "UPDATE cli_logins SET user_id = $2, denied = $3 \
         WHERE user_code = $1 AND user_id IS NULL AND expires_at > $4";
    pub const REDEEM: &str = "DELETE FROM cli_logins \
         WHERE device_code_sha256 = $1 AND user_id IS NOT NULL AND NOT denied RETURNING user_id";
    pub const DELETE: &str = "DELETE FROM cli_logins WHERE device_code_sha256 = $1";
    pub const TOUCH: &str = "UPDATE cli_logins SET last_poll_at = $2 WHERE device_code_sha256 = $1";
}

/// Implements [`CliLoginStore`] for a backend; expanded next to `impl_sql_store!`, whose
/// `lock_writers` and `audit` it uses.
macro_rules! impl_cli_login_store {
    ($store:ty) => {
        use $crate::store::cli_login::{
            sql as clisql, CliLoginRecord, CliLoginRow, CliLoginStore, CliPoll,
        };

        #[async_trait::async_trait]
        impl CliLoginStore for $store {
            async fn create_cli_login(
                &self,
                login: &CliLoginRecord,
                max_pending: u64,
            ) -> Result<(), StoreError> {
                let mut conn = self.pool.acquire().await?;
                sqlx::query(clisql::PURGE)
                    .bind(login.created_at)
                    .execute(&mut *conn)
                    .await?;
                let pending: i64 = sqlx::query_scalar(clisql::COUNT_PENDING)
                    .bind(login.created_at)
                    .fetch_one(&mut *conn)
                    .await?;
                if u64::try_from(pending).unwrap_or(0) >= max_pending {
                    return Err(StoreError::Conflict(format!(
                        "{pending} sign-ins of `tollgate login` are already pending; try again in a few minutes"
                    )));
                }
                sqlx::query(clisql::INSERT)
                    .bind(&login.device_code_sha256[..])
                    .bind(&login.user_code)
                    .bind(login.user_id)
                    .bind(login.denied)
                    .bind(login.created_at)
                    .bind(login.expires_at)
                    .bind(login.last_poll_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| unique_to_conflict(e, || "the user code is taken".to_owned()))?;
                Ok(())
            }

            async fn cli_login(
                &self,
                user_code: &str,
                now: time::OffsetDateTime,
            ) -> Result<Option<CliLoginRecord>, StoreError> {
                sqlx::query_as::<_, CliLoginRow>(clisql::BY_USER_CODE)
                    .bind(user_code)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(CliLoginRecord::try_from)
                    .transpose()
            }

            async fn decide_cli_login(
                &self,
                user_code: &str,
                user_id: uuid::Uuid,
                approve: bool,
                now: time::OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                let n = sqlx::query(clisql::DECIDE)
                    .bind(user_code)
                    .bind(user_id)
                    .bind(!approve)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                audit(&mut tx, event, version).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn poll_cli_login(
                &self,
                device_code_sha256: &[u8; 32],
                now: time::OffsetDateTime,
                interval: time::Duration,
            ) -> Result<CliPoll, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let Some(row) = sqlx::query_as::<_, CliLoginRow>(clisql::BY_DEVICE_CODE)
                    .bind(&device_code_sha256[..])
                    .fetch_optional(&mut *conn)
                    .await?
                else {
                    return Ok(CliPoll::Unknown);
                };
                let login = CliLoginRecord::try_from(row)?;
                if login.expires_at <= now {
                    sqlx::query(clisql::DELETE)
                        .bind(&device_code_sha256[..])
                        .execute(&mut *conn)
                        .await?;
                    return Ok(CliPoll::Expired);
                }
                if login.denied {
                    sqlx::query(clisql::DELETE)
                        .bind(&device_code_sha256[..])
                        .execute(&mut *conn)
                        .await?;
                    return Ok(CliPoll::Denied);
                }
                if login.user_id.is_some() {
                    let redeemed: Option<uuid::Uuid> = sqlx::query_scalar(clisql::REDEEM)
                        .bind(&device_code_sha256[..])
                        .fetch_optional(&mut *conn)
                        .await?;
                    return Ok(redeemed.map_or(CliPoll::Unknown, CliPoll::Approved));
                }
                sqlx::query(clisql::TOUCH)
                    .bind(&device_code_sha256[..])
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                Ok(match login.last_poll_at {
                    Some(last) if now - last < interval => CliPoll::SlowDown,
                    _ => CliPoll::Pending,
                })
            }

            async fn purge_cli_logins(&self, now: time::OffsetDateTime) -> Result<u64, StoreError> {
                Ok(sqlx::query(clisql::PURGE)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
        }
    };
}
pub(crate) use impl_cli_login_store;

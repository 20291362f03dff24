//! `oidc_device_grants`: device authorization grants (RFC 8628), from the device's request
//! through the user's decision and the device's polls. They are spent (redeemed) by
//! [`crate::writer`].

use crate::provider::DeviceGrant;
use sichat_core::db::Db;
use sqlx::{AnyConnection, Row};

/// A new grant, pending its user.
#[derive(Debug)]
pub(crate) struct NewGrant {
    pub id: String,
    pub device_code_hash: String,
    pub user_code: String,
    pub challenge: String,
    pub client_id: String,
    pub scope: String,
    pub interval_ms: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Store a new pending grant. A unique violation means its user code is taken: the caller
/// draws another ([`sichat_core::db::is_unique_violation`]).
pub(crate) async fn insert(c: &mut AnyConnection, g: &NewGrant) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_device_grants (id, device_code_hash, user_code, challenge, client_id, scope, status, \
         interval_ms, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)",
    )
    .bind(&g.id)
    .bind(&g.device_code_hash)
    .bind(&g.user_code)
    .bind(&g.challenge)
    .bind(&g.client_id)
    .bind(&g.scope)
    .bind(g.interval_ms)
    .bind(g.created_at)
    .bind(g.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// The grant of `user_code` if it is pending and live at `now` (on `c`: the connection of a
/// guess at a code, see [`crate::approval`]).
pub(crate) async fn pending(
    c: &mut AnyConnection,
    user_code: &str,
    now: i64,
) -> Result<Option<DeviceGrant>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_code, challenge, client_id, scope, expires_at FROM oidc_device_grants \
         WHERE user_code = $1 AND status = 'pending' AND expires_at > $2",
    )
    .bind(user_code)
    .bind(now)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(DeviceGrant {
            id: r.try_get("id")?,
            user_code: r.try_get("user_code")?,
            challenge: r.try_get("challenge")?,
            client_id: r.try_get("client_id")?,
            scope: r.try_get("scope")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Approve the grant `id` for `user_id` if it is still pending and live at `now`: its
/// client; none when it is not.
pub(crate) async fn approve(
    c: &mut AnyConnection,
    id: &str,
    user_id: &str,
    auth_time: i64,
    amr: Option<&str>,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE oidc_device_grants SET status = 'approved', user_id = $1, auth_time = $2, amr = $3 \
         WHERE id = $4 AND status = 'pending' AND expires_at > $5 RETURNING client_id",
    )
    .bind(user_id)
    .bind(auth_time)
    .bind(amr)
    .bind(id)
    .bind(now)
    .fetch_optional(c)
    .await
}

/// Deny the grant `id` if it is still pending.
pub(crate) async fn deny(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_device_grants SET status = 'denied' WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A grant, as the device's poll reads it.
#[derive(Debug)]
pub(crate) struct Polled {
    pub id: String,
    pub client_id: String,
    pub scope: String,
    pub status: String,
    pub user_id: Option<String>,
    pub auth_time: Option<i64>,
    pub amr: Option<String>,
    pub interval_ms: i64,
    pub last_polled_at: Option<i64>,
    pub expires_at: i64,
}

/// The grant of the device code stored as `device_code_hash`, in whatever state.
pub(crate) async fn by_device_code(db: &Db, device_code_hash: &str) -> Result<Option<Polled>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, client_id, scope, status, user_id, auth_time, amr, interval_ms, last_polled_at, expires_at \
         FROM oidc_device_grants WHERE device_code_hash = $1",
    )
    .bind(device_code_hash)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Polled {
            id: r.try_get("id")?,
            client_id: r.try_get("client_id")?,
            scope: r.try_get("scope")?,
            status: r.try_get("status")?,
            user_id: r.try_get("user_id")?,
            auth_time: r.try_get("auth_time")?,
            amr: r.try_get("amr")?,
            interval_ms: r.try_get("interval_ms")?,
            last_polled_at: r.try_get("last_polled_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// The device polled the grant `id` at `now`; it may poll every `interval_ms` from now on.
pub(crate) async fn polled(db: &Db, id: &str, now: i64, interval_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_device_grants SET last_polled_at = $1, interval_ms = $2 WHERE id = $3")
        .bind(now)
        .bind(interval_ms)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

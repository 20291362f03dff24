//! `oidc_tokens`: access and refresh tokens (keyed by [`crate::provider::token_key`]), read
//! at the token, introspection and UserInfo endpoints, and revoked. They are written and
//! spent by [`crate::writer`].

use sichat_core::db::Db;
use sqlx::{AnyConnection, Row};

/// A refresh token, as the `refresh_token` grant reads it.
#[derive(Debug)]
pub(crate) struct Refresh {
    pub client_id: String,
    pub user_id: Option<String>,
    pub scope: String,
    pub family: String,
    pub auth_time: Option<i64>,
    pub amr: Option<String>,
    pub sid: Option<String>,
    pub jkt: Option<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The refresh token stored under `token_hash`, in whatever state.
pub(crate) async fn refresh(db: &Db, token_hash: &str) -> Result<Option<Refresh>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT client_id, user_id, scope, family, auth_time, amr, sid, jkt, expires_at, used_at, revoked_at \
         FROM oidc_tokens \
         WHERE token_hash = $1 AND kind = 'refresh'",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Refresh {
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            scope: r.try_get("scope")?,
            family: r.try_get("family")?,
            auth_time: r.try_get("auth_time")?,
            amr: r.try_get("amr")?,
            sid: r.try_get("sid")?,
            jkt: r.try_get("jkt")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Revoke every live token of `family` (a code's hash, a device grant's id, or a client
/// credentials grant's id).
pub(crate) async fn revoke_family(db: &Db, family: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(family)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// What revocation needs to know of a token.
#[derive(Debug)]
pub(crate) struct Revocable {
    pub kind: String,
    pub family: String,
    pub client_id: String,
}

/// The token stored under `token_hash`, in whatever state.
pub(crate) async fn revocable(db: &Db, token_hash: &str) -> Result<Option<Revocable>, sqlx::Error> {
    let row = sqlx::query("SELECT kind, family, client_id FROM oidc_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| {
        Ok(Revocable { kind: r.try_get("kind")?, family: r.try_get("family")?, client_id: r.try_get("client_id")? })
    })
    .transpose()
}

/// Revoke the one token stored under `token_hash`, if it is not already.
pub(crate) async fn revoke(db: &Db, token_hash: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(token_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Revoke every live token `user_id` granted `client_id` (in the caller's transaction).
pub(crate) async fn revoke_of_client(
    c: &mut AnyConnection,
    user_id: &str,
    client_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_tokens SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .bind(client_id)
        .execute(c)
        .await?;
    Ok(())
}

/// A live token, as introspection describes it.
#[derive(Debug)]
pub(crate) struct Live {
    pub kind: String,
    pub client_id: String,
    pub user_id: Option<String>,
    pub scope: String,
    pub jkt: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The token stored under `token_hash` if it is live (unrevoked, unused, unexpired at
/// `now`). On a read connection.
pub(crate) async fn live(db: &Db, token_hash: &str, now: i64) -> Result<Option<Live>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT kind, client_id, user_id, scope, jkt, created_at, expires_at FROM oidc_tokens WHERE token_hash = $1 \
         AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    row.map(|r| {
        Ok(Live {
            kind: r.try_get("kind")?,
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            scope: r.try_get("scope")?,
            jkt: r.try_get("jkt")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// A live access token, as UserInfo reads it.
#[derive(Debug)]
pub(crate) struct LiveAccess {
    pub user_id: Option<String>,
    pub client_id: String,
    pub scope: String,
    pub jkt: Option<String>,
}

/// The access token stored under `token_hash` if it is unrevoked and unexpired at `now`.
/// On a read connection.
pub(crate) async fn live_access(db: &Db, token_hash: &str, now: i64) -> Result<Option<LiveAccess>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, client_id, scope, jkt FROM oidc_tokens WHERE token_hash = $1 AND kind = 'access' \
         AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    row.map(|r| {
        Ok(LiveAccess {
            user_id: r.try_get("user_id")?,
            client_id: r.try_get("client_id")?,
            scope: r.try_get("scope")?,
            jkt: r.try_get("jkt")?,
        })
    })
    .transpose()
}

//! `oidc_sessions` (signed-in browsers, by the hash of their cookie) and
//! `oidc_session_clients` (the sites each browser session signed in to, with the `sid` they
//! were given, for logout). A session's sites are listed by [`crate::writer`], with each
//! code.

use sichat_core::db::Db;
use sqlx::{AnyConnection, Row};

/// A new browser session.
#[derive(Debug)]
pub(crate) struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub auth_time: i64,
    /// How the user signed in (`amr` values, space-separated).
    pub amr: &'a str,
    pub address: &'a str,
    pub expires_at: i64,
}

/// Store a new browser session (in the caller's transaction).
pub(crate) async fn insert(c: &mut AnyConnection, s: &NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_sessions (token_hash, user_id, auth_time, amr, address, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(s.token_hash)
    .bind(s.user_id)
    .bind(s.auth_time)
    .bind(s.amr)
    .bind(s.address)
    .bind(s.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// A live browser session of an active user.
#[derive(Debug)]
pub(crate) struct Live {
    pub user_id: String,
    /// The user's name.
    pub name: String,
    pub auth_time: i64,
    pub amr: Option<String>,
    pub address: Option<String>,
}

/// The session stored under `token_hash` if it is live at `now` and its user active.
pub(crate) async fn live(db: &Db, token_hash: &str, now: i64) -> Result<Option<Live>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.user_id, s.auth_time, s.amr, s.address, u.name FROM oidc_sessions s \
         JOIN acct_users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.status = 'active'",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Live {
            user_id: r.try_get("user_id")?,
            name: r.try_get("name")?,
            auth_time: r.try_get("auth_time")?,
            amr: r.try_get("amr")?,
            address: r.try_get("address")?,
        })
    })
    .transpose()
}

/// The browser sessions (their hashes) of `user_id`, but `keep` (in the caller's
/// transaction).
pub(crate) async fn of_user(
    c: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT token_hash FROM oidc_sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user_id)
        .bind(keep.unwrap_or(""))
        .fetch_all(c)
        .await
}

/// End the browser session stored under `token_hash` (in the caller's transaction).
pub(crate) async fn delete(c: &mut AnyConnection, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_sessions WHERE token_hash = $1").bind(token_hash).execute(c).await?;
    Ok(())
}

/// A site a browser session signed in to, and the `sid` it was given.
#[derive(Debug)]
pub(crate) struct Site {
    pub client_id: String,
    pub sid: String,
}

/// The sites the session `session_hash` signed in to (in the caller's transaction).
pub(crate) async fn sites(c: &mut AnyConnection, session_hash: &str) -> Result<Vec<Site>, sqlx::Error> {
    let rows = sqlx::query("SELECT client_id, sid FROM oidc_session_clients WHERE session_hash = $1")
        .bind(session_hash)
        .fetch_all(c)
        .await?;
    rows.iter().map(|r| Ok(Site { client_id: r.try_get("client_id")?, sid: r.try_get("sid")? })).collect()
}

/// A site a browser session signed in to, with the session's user.
#[derive(Debug)]
pub(crate) struct SiteOfUser {
    pub client_id: String,
    pub sid: String,
    pub user_id: String,
}

/// The sites the session `session_hash` signed in to, with its user (in the caller's
/// transaction).
pub(crate) async fn sites_with_user(c: &mut AnyConnection, session_hash: &str) -> Result<Vec<SiteOfUser>, sqlx::Error> {
    let rows = sqlx::query("SELECT client_id, sid, user_id FROM oidc_session_clients WHERE session_hash = $1")
        .bind(session_hash)
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SiteOfUser {
                client_id: r.try_get("client_id")?,
                sid: r.try_get("sid")?,
                user_id: r.try_get("user_id")?,
            })
        })
        .collect()
}

/// Forget the sites of the session `session_hash` (in the caller's transaction).
pub(crate) async fn forget_sites(c: &mut AnyConnection, session_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_session_clients WHERE session_hash = $1").bind(session_hash).execute(c).await?;
    Ok(())
}

/// The `sid`s `client_id` was given in `user_id`'s sessions (in the caller's transaction).
pub(crate) async fn sids_at(c: &mut AnyConnection, user_id: &str, client_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT sid FROM oidc_session_clients WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .fetch_all(c)
        .await
}

/// Forget that `user_id`'s sessions signed in to `client_id` (in the caller's
/// transaction).
pub(crate) async fn forget_site(c: &mut AnyConnection, user_id: &str, client_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_session_clients WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .execute(c)
        .await?;
    Ok(())
}

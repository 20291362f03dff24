//! `oidc_requests` (authorization requests waiting while the user signs in and consents)
//! and `oidc_pushed_requests` (RFC 9126 pushed requests, stored by the hash of their
//! `request_uri`, used once).

use sichat_core::db::Db;
use sqlx::{AnyConnection, Row};

/// An authorization request to keep (`params` as JSON) until `expires_at`.
#[derive(Debug)]
pub(crate) struct NewRequest {
    pub id: String,
    pub client_id: String,
    pub params: String,
    pub csrf: String,
    pub expires_at: i64,
}

pub(crate) async fn insert(c: &mut AnyConnection, r: &NewRequest) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO oidc_requests (id, client_id, params, csrf, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&r.id)
        .bind(&r.client_id)
        .bind(&r.params)
        .bind(&r.csrf)
        .bind(r.expires_at)
        .execute(c)
        .await?;
    Ok(())
}

/// A waiting authorization request.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// Its parameters, as JSON.
    pub params: String,
    pub csrf: String,
}

/// The request `id` if it is still live at `now`.
pub(crate) async fn waiting(db: &Db, id: &str, now: i64) -> Result<Option<Waiting>, sqlx::Error> {
    let row = sqlx::query("SELECT params, csrf FROM oidc_requests WHERE id = $1 AND expires_at > $2")
        .bind(id)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| Ok(Waiting { params: r.try_get("params")?, csrf: r.try_get("csrf")? })).transpose()
}

/// The request `id` is done with.
pub(crate) async fn delete(c: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_requests WHERE id = $1").bind(id).execute(c).await?;
    Ok(())
}

/// Keep a pushed request of `client_id` (`params` as JSON) under `id_hash` until
/// `expires_at`.
pub(crate) async fn insert_pushed(
    db: &Db,
    id_hash: &str,
    client_id: &str,
    params: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO oidc_pushed_requests (id_hash, client_id, params, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id_hash)
        .bind(client_id)
        .bind(params)
        .bind(expires_at)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Mark the pushed request `id_hash` of `client_id` used at `now`; false when it is
/// unknown, another client's, used already or expired.
pub(crate) async fn take_pushed(db: &Db, id_hash: &str, client_id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query(
        "UPDATE oidc_pushed_requests SET used_at = $1 WHERE id_hash = $2 AND client_id = $3 AND used_at IS NULL \
         AND expires_at > $1",
    )
    .bind(now)
    .bind(id_hash)
    .bind(client_id)
    .execute(db.pool())
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// The parameters (JSON) of the pushed request `id_hash`.
pub(crate) async fn pushed_params(db: &Db, id_hash: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT params FROM oidc_pushed_requests WHERE id_hash = $1")
        .bind(id_hash)
        .fetch_one(db.pool())
        .await
}

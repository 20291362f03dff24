//! `oidc_logout_notices`: the outbox of back-channel logout notices, one per site to tell,
//! retried with back-off until delivered or dropped.

use sichat_core::db::Db;
use sichat_core::ids::new_id;
use sqlx::{AnyConnection, Row};

/// A notice for `client_id` that `user_id` (in session `sid`, if known) signed out, due at
/// once (in the caller's transaction).
pub(crate) async fn insert(
    c: &mut AnyConnection,
    client_id: &str,
    user_id: &str,
    sid: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_logout_notices (id, client_id, user_id, sid, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(new_id())
    .bind(client_id)
    .bind(user_id)
    .bind(sid)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// A notice to send.
#[derive(Debug)]
pub(crate) struct Notice {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub sid: Option<String>,
    pub attempts: i64,
}

/// At most `limit` notices due at `now`, the longest due first.
pub(crate) async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<Notice>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, client_id, user_id, sid, attempts FROM oidc_logout_notices WHERE next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Notice {
                id: r.try_get("id")?,
                client_id: r.try_get("client_id")?,
                user_id: r.try_get("user_id")?,
                sid: r.try_get("sid")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

/// The notice `id` is done with (delivered, or dropped).
pub(crate) async fn delete(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_logout_notices WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// The notice `id` failed with `error`: one more attempt, at `next_attempt_at`.
pub(crate) async fn retry_at(db: &Db, id: &str, next_attempt_at: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oidc_logout_notices SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
         WHERE id = $3",
    )
    .bind(next_attempt_at)
    .bind(error)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

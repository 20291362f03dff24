//! `oidc_signin_events`: each sign-in to the node's pages and each site a browser session
//! or a device signed in to, for the user to see ([`crate::provider::SignInEvent`]).

use sichat_core::db::Db;
use sichat_core::ids::new_id;
use sqlx::{AnyConnection, Row};

/// Record one sign-in (in the caller's transaction).
pub(crate) async fn record(
    c: &mut AnyConnection,
    user_id: &str,
    client_id: Option<&str>,
    method: Option<&str>,
    address: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_signin_events (id, user_id, client_id, method, address, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(client_id)
    .bind(method)
    .bind(address)
    .bind(at)
    .execute(c)
    .await?;
    Ok(())
}

/// A recorded sign-in, with the metadata (JSON) of the site signed in to, if still
/// registered.
#[derive(Debug)]
pub(crate) struct Event {
    pub at: i64,
    pub client_id: Option<String>,
    pub method: Option<String>,
    pub address: Option<String>,
    pub metadata: Option<String>,
}

/// The latest `limit` sign-ins of `user_id`, newest first. On a read connection.
pub(crate) async fn latest(db: &Db, user_id: &str, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.at, e.client_id, e.method, e.address, k.metadata FROM oidc_signin_events e \
         LEFT JOIN oidc_clients k ON k.id = e.client_id WHERE e.user_id = $1 ORDER BY e.at DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(&mut *db.read().await?)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                at: r.try_get("at")?,
                client_id: r.try_get("client_id")?,
                method: r.try_get("method")?,
                address: r.try_get("address")?,
                metadata: r.try_get("metadata")?,
            })
        })
        .collect()
}

/// Forget sign-ins at or before `before`; how many.
pub(crate) async fn purge(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM oidc_signin_events WHERE at <= $1")
        .bind(before)
        .execute(db.pool())
        .await?
        .rows_affected())
}

//! `oidc_consents`: the scope each user consented to give each site.

use sichat_core::db::Db;
use sqlx::{Any, AnyConnection, Executor, Row};

async fn select_scope<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    user_id: &str,
    client_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(exec)
        .await
}

/// The scope `user_id` consented to give `client_id`, if any.
pub(crate) async fn scope(db: &Db, user_id: &str, client_id: &str) -> Result<Option<String>, sqlx::Error> {
    select_scope(db.pool(), user_id, client_id).await
}

/// [`scope`], in the caller's transaction.
async fn scope_on(c: &mut AnyConnection, user_id: &str, client_id: &str) -> Result<Option<String>, sqlx::Error> {
    select_scope(c, user_id, client_id).await
}

/// Add `scope` to what `user_id` granted `client_id`, at `now` (in the caller's
/// transaction).
pub(crate) async fn add(
    c: &mut AnyConnection,
    user_id: &str,
    client_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    use crate::provider::scope_set;
    let before = scope_on(c, user_id, client_id).await?;
    let mut all = scope_set(before.as_deref().unwrap_or_default());
    all.extend(scope_set(scope));
    all.sort_unstable();
    all.dedup();
    replace(c, user_id, client_id, &all.join(" "), now).await
}

/// Set the consent of `user_id` to `client_id` to `scope`, given at `now` (in the caller's
/// transaction).
async fn replace(
    c: &mut AnyConnection,
    user_id: &str,
    client_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("INSERT INTO oidc_consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4)")
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// A consent, with the metadata (JSON) of its site.
#[derive(Debug)]
pub(crate) struct Consent {
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub metadata: String,
}

/// The consents of `user_id` to registered sites, newest first.
pub(crate) async fn of_user(db: &Db, user_id: &str) -> Result<Vec<Consent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.client_id, c.scope, c.created_at, k.metadata FROM oidc_consents c \
         JOIN oidc_clients k ON k.id = c.client_id WHERE c.user_id = $1 ORDER BY c.created_at DESC",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Consent {
                client_id: r.try_get("client_id")?,
                scope: r.try_get("scope")?,
                created_at: r.try_get("created_at")?,
                metadata: r.try_get("metadata")?,
            })
        })
        .collect()
}

/// Withdraw the consent of `user_id` to `client_id` (in the caller's transaction); false
/// if there was none.
pub(crate) async fn delete(c: &mut AnyConnection, user_id: &str, client_id: &str) -> Result<bool, sqlx::Error> {
    let gone = sqlx::query("DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .execute(c)
        .await?
        .rows_affected();
    Ok(gone > 0)
}

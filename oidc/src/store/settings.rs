//! `node_settings`, for the provider's one row there: the node's pairwise-subject salt,
//! sealed under the master key (formerly kept in clear as `oidc_pairwise_salt`).

use sichat_core::db::Db;

/// The setting `name`.
pub(crate) async fn value(db: &Db, name: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM node_settings WHERE name = $1").bind(name).fetch_optional(db.pool()).await
}

/// The pairwise salt as nodes before sealing kept it, in clear.
pub(crate) async fn clear_pairwise_salt(db: &Db) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM node_settings WHERE name = 'oidc_pairwise_salt'")
        .fetch_optional(db.pool())
        .await
}

/// Store the sealed salt as `name` unless another process stored one first, and drop the
/// clear one, in one transaction.
pub(crate) async fn store_sealed_pairwise_salt(db: &Db, name: &str, sealed: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("INSERT INTO node_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM node_settings WHERE name = 'oidc_pairwise_salt'").execute(&mut *tx).await?;
    tx.commit().await
}

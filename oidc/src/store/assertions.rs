//! `oidc_client_assertions`: the `jti` of each `private_key_jwt` client assertion, kept
//! until it expires, so an assertion is used once.

use sichat_core::db::Db;

/// Record `jti` of `client_id`'s assertion (expiring at `expires_at`); false if it was
/// already recorded (a replay).
pub(crate) async fn record(db: &Db, client_id: &str, jti: &str, expires_at: i64) -> Result<bool, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO oidc_client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (client_id, jti) DO NOTHING",
    )
    .bind(client_id)
    .bind(jti)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(fresh.rows_affected() == 1)
}

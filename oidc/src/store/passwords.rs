//! `oidc_passwords`: each user's sign-in password, as an argon2id PHC string.

use sichat_core::db::Db;
use sqlx::AnyConnection;

/// The password hash of `user_id`, if they set one.
pub(crate) async fn hash(db: &Db, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT hash FROM oidc_passwords WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db.pool())
        .await
}

/// Replace the password hash of `user_id` (in the caller's transaction).
pub(crate) async fn replace(c: &mut AnyConnection, user_id: &str, hash: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_passwords WHERE user_id = $1").bind(user_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO oidc_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

//! The account's sealed history (`acct_history`) and its history key (`acct_users.history_key`).

use super::Conn;
use sqlx::Row;

pub async fn history_key(c: &mut Conn, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT history_key FROM acct_users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(c)
        .await?
        .map(|r| r.try_get("history_key"))
        .transpose()
        .map(Option::flatten)
}

pub async fn set_history_key(c: &mut Conn, user_id: &str, key: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET history_key = $1 WHERE id = $2").bind(key).bind(user_id).execute(c).await?;
    Ok(())
}

/// Bytes the account's history holds, not counting the items `except` would replace.
pub async fn history_bytes(c: &mut Conn, user_id: &str, except: &[&str]) -> Result<i64, sqlx::Error> {
    let total: i64 =
        sqlx::query("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS n FROM acct_history WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *c)
            .await?
            .try_get("n")?;
    let mut replaced = 0;
    for id in except {
        let row = sqlx::query("SELECT bytes FROM acct_history WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(*id)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(r) = row {
            replaced += r.try_get::<i64, _>("bytes")?;
        }
    }
    Ok(total - replaced)
}

/// Write an item (replacing one of the same id) with the account's next `seq`.
pub async fn put_history_item(c: &mut Conn, user_id: &str, id: &str, jwe: &str, now: i64) -> Result<i64, sqlx::Error> {
    let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM acct_history WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *c)
        .await?
        .try_get("n")?;
    sqlx::query("DELETE FROM acct_history WHERE user_id = $1 AND id = $2")
        .bind(user_id)
        .bind(id)
        .execute(&mut *c)
        .await?;
    sqlx::query("INSERT INTO acct_history (user_id, id, seq, bytes, jwe, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(user_id)
        .bind(id)
        .bind(seq)
        .bind(jwe.len() as i64)
        .bind(jwe)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(seq)
}

/// The items written after `after`, in order, at most `limit`.
pub async fn history_after(
    c: &mut Conn,
    user_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(String, i64, String)>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, seq, jwe FROM acct_history WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(user_id)
            .bind(after)
            .bind(limit)
            .fetch_all(c)
            .await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("seq")?, r.try_get("jwe")?))).collect()
}

//! Social recovery's rows: the friends an account named (`acct_users.recovery_guardians`),
//! the requests opened for it (`acct_recovery_requests`) and each friend's signed approval
//! (`acct_recovery_approvals`).

use super::Conn;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct RecoveryRequestRow {
    pub id: String,
    pub user_id: String,
    pub agree_key: String,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub guardian: String,
    pub approval: String,
    pub approved_at: i64,
}

fn request_row(r: &AnyRow) -> Result<RecoveryRequestRow, sqlx::Error> {
    Ok(RecoveryRequestRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        agree_key: r.try_get("agree_key")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// The account's friends, as JSON (`Guardians`), if it named any.
pub async fn guardians(c: &mut Conn, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT recovery_guardians FROM acct_users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(c)
        .await?
        .map(|r| r.try_get("recovery_guardians"))
        .transpose()
        .map(Option::flatten)
}

pub async fn set_guardians(c: &mut Conn, user_id: &str, guardians: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET recovery_guardians = $1 WHERE id = $2")
        .bind(guardians)
        .bind(user_id)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn insert_recovery_request(c: &mut Conn, r: &RecoveryRequestRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_recovery_requests (id, user_id, agree_key, status, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&r.id)
    .bind(&r.user_id)
    .bind(&r.agree_key)
    .bind(&r.status)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn recovery_request(c: &mut Conn, id: &str) -> Result<Option<RecoveryRequestRow>, sqlx::Error> {
    sqlx::query("SELECT * FROM acct_recovery_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(request_row)
        .transpose()
}

/// The account's requests, newest first, at most `limit`.
pub async fn recovery_requests(
    c: &mut Conn,
    user_id: &str,
    limit: i64,
) -> Result<Vec<RecoveryRequestRow>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT * FROM acct_recovery_requests WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2")
            .bind(user_id)
            .bind(limit)
            .fetch_all(c)
            .await?;
    rows.iter().map(request_row).collect()
}

/// Mark the account's open requests that ran out `expired`.
pub async fn expire_recovery_requests(c: &mut Conn, user_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE acct_recovery_requests SET status = 'expired', closed_at = $1 \
         WHERE user_id = $2 AND status = 'open' AND expires_at <= $1",
    )
    .bind(now)
    .bind(user_id)
    .execute(c)
    .await?;
    Ok(())
}

/// Close one request (`id`) or every open one of the account (`id` `None`). How many closed.
pub async fn close_recovery_requests(
    c: &mut Conn,
    user_id: &str,
    id: Option<&str>,
    status: &str,
    closed_by: Option<&str>,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE acct_recovery_requests SET status = $1, closed_at = $2, closed_by = $3 \
         WHERE user_id = $4 AND status = 'open' AND (CAST($5 AS TEXT) IS NULL OR id = CAST($5 AS TEXT))",
    )
    .bind(status)
    .bind(now)
    .bind(closed_by)
    .bind(user_id)
    .bind(id)
    .execute(c)
    .await?;
    Ok(done.rows_affected())
}

/// Whether a recovery is open (and not run out) for the account.
pub async fn recovery_open(c: &mut Conn, user_id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM acct_recovery_requests WHERE user_id = $1 AND status = 'open' AND expires_at > $2",
    )
    .bind(user_id)
    .bind(now)
    .fetch_one(c)
    .await?
    .try_get("n")?;
    Ok(n > 0)
}

/// The open requests of the account with no approval yet, oldest first.
pub async fn unapproved_open_requests(c: &mut Conn, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.id FROM acct_recovery_requests r WHERE r.user_id = $1 AND r.status = 'open' \
         AND NOT EXISTS (SELECT 1 FROM acct_recovery_approvals a WHERE a.request_id = r.id) \
         ORDER BY r.created_at, r.id",
    )
    .bind(user_id)
    .fetch_all(c)
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

pub async fn count_open_requests(c: &mut Conn, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM acct_recovery_requests WHERE user_id = $1 AND status = 'open'")
        .bind(user_id)
        .fetch_one(c)
        .await?
        .try_get("n")
}

pub async fn approvals(c: &mut Conn, request_id: &str) -> Result<Vec<ApprovalRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT guardian, approval, approved_at FROM acct_recovery_approvals WHERE request_id = $1 \
         ORDER BY approved_at, guardian",
    )
    .bind(request_id)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ApprovalRow {
                guardian: r.try_get("guardian")?,
                approval: r.try_get("approval")?,
                approved_at: r.try_get("approved_at")?,
            })
        })
        .collect()
}

/// Keep a friend's approval; `false` if that friend approved this request already.
pub async fn insert_approval(
    c: &mut Conn,
    request_id: &str,
    guardian: &str,
    approval: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO acct_recovery_approvals (request_id, guardian, approval, approved_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (request_id, guardian) DO NOTHING",
    )
    .bind(request_id)
    .bind(guardian)
    .bind(approval)
    .bind(now)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

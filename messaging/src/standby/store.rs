//! The standby's tables: `msg_standbys` (the accounts of other nodes this node stands by
//! for, one row per DID) and `msg_standby_held` (what it keeps for them).

use sqlx::{AnyConnection as Conn, Row};

/// One account this node stands by for.
pub struct StandbyRow {
    pub account: String,
    pub ended: bool,
}

pub async fn standby_for(c: &mut Conn, did: &str) -> Result<Option<StandbyRow>, sqlx::Error> {
    let row =
        sqlx::query("SELECT account, ended_at FROM msg_standbys WHERE did = $1").bind(did).fetch_optional(c).await?;
    row.map(|r| {
        Ok(StandbyRow { account: r.try_get("account")?, ended: r.try_get::<Option<i64>, _>("ended_at")?.is_some() })
    })
    .transpose()
}

/// Whether `account` has a standby here that has not ended.
pub async fn active(c: &mut Conn, account: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS one FROM msg_standbys WHERE account = $1 AND ended_at IS NULL")
        .bind(account)
        .fetch_optional(c)
        .await?;
    Ok(row.is_some())
}

pub struct NewStandby<'a> {
    pub dids: &'a [String],
    pub account: &'a str,
    pub primary_endpoint: &'a str,
    pub grant: &'a str,
    pub invite_id: &'a str,
    pub now: i64,
}

/// Stand by for the account under each of its DIDs (rows of an ended standby are replaced).
pub async fn insert(c: &mut Conn, s: NewStandby<'_>) -> Result<(), sqlx::Error> {
    for did in s.dids {
        sqlx::query(
            "INSERT INTO msg_standbys (did, account, primary_endpoint, grant_jws, invite_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (did) DO UPDATE SET account = excluded.account, \
             primary_endpoint = excluded.primary_endpoint, grant_jws = excluded.grant_jws, \
             invite_id = excluded.invite_id, created_at = excluded.created_at, ended_at = NULL",
        )
        .bind(did)
        .bind(s.account)
        .bind(s.primary_endpoint)
        .bind(s.grant)
        .bind(s.invite_id)
        .bind(s.now)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// End the standby for `account`: nothing more is held; what is held is still handed over.
pub async fn end(c: &mut Conn, account: &str, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE msg_standbys SET ended_at = $1 WHERE account = $2 AND ended_at IS NULL")
        .bind(now)
        .bind(account)
        .execute(c)
        .await?;
    Ok(done.rows_affected())
}

/// Forget ended standbys with nothing left to hand over.
pub async fn forget_ended(c: &mut Conn) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM msg_standbys WHERE ended_at IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM msg_standby_held h WHERE h.account = msg_standbys.account)",
    )
    .execute(c)
    .await?;
    Ok(done.rows_affected())
}

/// A delivery held for an account.
pub struct Held {
    pub id: String,
    pub account: String,
    pub forward_id: String,
    pub target_uri: String,
    /// The signature headers, as a JSON object of name to value.
    pub headers: String,
    pub body: Vec<u8>,
    pub received_at: i64,
    pub attempts: i64,
}

/// Keep a delivery; false when it is held already (the sender retried).
pub async fn hold(c: &mut Conn, h: &Held, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO msg_standby_held (id, account, forward_id, target_uri, headers, body, received_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (account, forward_id) DO NOTHING",
    )
    .bind(&h.id)
    .bind(&h.account)
    .bind(&h.forward_id)
    .bind(&h.target_uri)
    .bind(&h.headers)
    .bind(&h.body)
    .bind(h.received_at)
    .bind(now)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Bytes held for `account`.
pub async fn held_bytes(c: &mut Conn, account: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT COALESCE(SUM(LENGTH(body)), 0) AS n FROM msg_standby_held WHERE account = $1")
        .bind(account)
        .fetch_one(c)
        .await?;
    row.try_get("n")
}

/// Held deliveries due for a handover, oldest first, with where they go.
pub async fn due(c: &mut Conn, now: i64, limit: i64) -> Result<Vec<(Held, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT h.id, h.account, h.forward_id, h.target_uri, h.headers, h.body, h.received_at, h.attempts, \
         (SELECT s.primary_endpoint FROM msg_standbys s WHERE s.account = h.account LIMIT 1) AS primary_endpoint \
         FROM msg_standby_held h WHERE h.next_attempt_at <= $1 ORDER BY h.received_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            let held = Held {
                id: r.try_get("id")?,
                account: r.try_get("account")?,
                forward_id: r.try_get("forward_id")?,
                target_uri: r.try_get("target_uri")?,
                headers: r.try_get("headers")?,
                body: r.try_get("body")?,
                received_at: r.try_get("received_at")?,
                attempts: r.try_get("attempts")?,
            };
            Ok((held, r.try_get::<Option<String>, _>("primary_endpoint")?.unwrap_or_default()))
        })
        .collect()
}

pub async fn handed_over(c: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM msg_standby_held WHERE id = $1").bind(id).execute(c).await?;
    Ok(())
}

pub async fn retry_later(c: &mut Conn, id: &str, at: i64, why: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE msg_standby_held SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
    )
    .bind(at)
    .bind(why)
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

/// Drop what was held longer than messages are kept at all (`received_at` before `before`).
pub async fn drop_expired(c: &mut Conn, before: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM msg_standby_held WHERE received_at < $1").bind(before).execute(c).await?;
    Ok(done.rows_affected())
}

// ---- the mirror (this node as a did:webvh watcher) ----

/// The `did:webvh` DIDs of the accounts this node stands by for, with their account.
pub async fn mirrored_dids(c: &mut Conn) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT did, account FROM msg_standbys WHERE ended_at IS NULL AND did LIKE 'did:webvh:%' ORDER BY did",
    )
    .fetch_all(c)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("did")?, r.try_get("account")?))).collect()
}

/// Whether `did` is one this node mirrors (an account it stands by for).
pub async fn mirrors_did(c: &mut Conn, did: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT account FROM msg_standbys WHERE did = $1 AND ended_at IS NULL")
        .bind(did)
        .fetch_optional(c)
        .await?;
    row.map(|r| r.try_get("account")).transpose()
}

/// Entries in the log mirrored under `scid`, if any.
pub async fn mirror_entries(c: &mut Conn, scid: &str) -> Result<Option<i64>, sqlx::Error> {
    let row =
        sqlx::query("SELECT entries FROM msg_standby_mirror WHERE scid = $1").bind(scid).fetch_optional(c).await?;
    row.map(|r| r.try_get("entries")).transpose()
}

pub struct MirroredLog<'a> {
    pub scid: &'a str,
    pub did: &'a str,
    pub account: &'a str,
    pub log: &'a str,
    pub entries: i64,
    pub now: i64,
}

pub async fn put_mirror(c: &mut Conn, m: MirroredLog<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO msg_standby_mirror (scid, did, account, log, entries, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (scid) DO UPDATE SET did = excluded.did, account = excluded.account, log = excluded.log, \
         entries = excluded.entries, updated_at = excluded.updated_at",
    )
    .bind(m.scid)
    .bind(m.did)
    .bind(m.account)
    .bind(m.log)
    .bind(m.entries)
    .bind(m.now)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn mirrored_log(c: &mut Conn, scid: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT log FROM msg_standby_mirror WHERE scid = $1").bind(scid).fetch_optional(c).await?;
    row.map(|r| r.try_get("log")).transpose()
}

pub async fn put_mirror_file(
    c: &mut Conn,
    scid: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO msg_standby_mirror_files (scid, path, content_type, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (scid, path) DO UPDATE SET content_type = excluded.content_type, body = excluded.body, \
         updated_at = excluded.updated_at",
    )
    .bind(scid)
    .bind(path)
    .bind(content_type)
    .bind(body)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// A mirrored resource: its content type and body.
pub async fn mirrored_file(c: &mut Conn, scid: &str, path: &str) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query("SELECT content_type, body FROM msg_standby_mirror_files WHERE scid = $1 AND path = $2")
        .bind(scid)
        .bind(path)
        .fetch_optional(c)
        .await?;
    row.map(|r| Ok((r.try_get("content_type")?, r.try_get("body")?))).transpose()
}

/// Forget what is mirrored for accounts this node no longer stands by for.
pub async fn forget_unmirrored(c: &mut Conn) -> Result<(), sqlx::Error> {
    let gone =
        "NOT EXISTS (SELECT 1 FROM msg_standbys s WHERE s.account = msg_standby_mirror.account AND s.ended_at IS NULL)";
    sqlx::query(&format!(
        "DELETE FROM msg_standby_mirror_files WHERE scid IN (SELECT scid FROM msg_standby_mirror WHERE {gone})"
    ))
    .execute(&mut *c)
    .await?;
    sqlx::query(&format!("DELETE FROM msg_standby_mirror WHERE {gone}")).execute(c).await?;
    Ok(())
}

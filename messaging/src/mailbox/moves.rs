//! The mailbox's queries for an account moving to another node (`crate::moves`).

use super::*;

/// A message waiting for at least one of its user's active devices, as a move carries it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WaitingRow {
    pub seq: i64,
    pub id: String,
    pub sender: String,
    pub folder: String,
    pub envelope: String,
    pub size: i64,
    pub presentation: i64,
    pub received_at: i64,
}

/// A line of the replay guard (`msg_received`), less its user.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct ReceivedRow {
    pub id: String,
    /// Base64url SHA-256 of the forward as first received.
    pub body_hash: String,
    pub sender: String,
    pub folder: String,
    pub received_at: i64,
}

/// Which messages wait for an active device of their user ("active": the accounts
/// service's `acct_devices`, read here as on the receive path; a revoked device's rows are
/// released by housekeeping).
const WAITING: &str = "EXISTS (SELECT 1 FROM msg_pending p JOIN acct_devices d ON d.id = p.device_id \
     WHERE p.seq = m.seq AND d.user_id = m.user_id AND d.revoked_at IS NULL)";

/// `user_id`'s waiting messages after `seq` `after`, oldest first: (`seq`, size), at most
/// `limit`.
pub async fn waiting_sizes_after(
    c: &mut Conn,
    user_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT m.seq, m.size FROM msg_mailbox m WHERE m.user_id = $1 AND m.seq > $2 AND {WAITING} \
         ORDER BY m.seq LIMIT $3"
    );
    let rows = sqlx::query(&sql).bind(user_id).bind(after).bind(limit).fetch_all(c).await?;
    rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("size")?))).collect()
}

/// How many waiting messages `user_id` has after `seq` `after`.
pub async fn waiting_count_after(c: &mut Conn, user_id: &str, after: i64) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT COUNT(*) AS n FROM msg_mailbox m WHERE m.user_id = $1 AND m.seq > $2 AND {WAITING}");
    sqlx::query(&sql).bind(user_id).bind(after).fetch_one(c).await?.try_get("n")
}

/// `user_id`'s waiting messages with `after < seq <= upto`, oldest first.
pub async fn waiting_between(
    c: &mut Conn,
    user_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<WaitingRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {STORED_COLUMNS} FROM msg_mailbox m WHERE m.user_id = $1 AND m.seq > $2 AND m.seq <= $3 \
         AND {WAITING} ORDER BY m.seq"
    );
    sqlx::query_as(&sql).bind(user_id).bind(after).bind(upto).fetch_all(c).await
}

/// The active devices of `user_id` that still owe each of its messages with
/// `after < seq <= upto`: (`seq`, device id), by `seq`.
pub async fn pending_devices_between(
    c: &mut Conn,
    user_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.seq, p.device_id FROM msg_pending p JOIN msg_mailbox m ON m.seq = p.seq \
         JOIN acct_devices d ON d.id = p.device_id AND d.user_id = m.user_id AND d.revoked_at IS NULL \
         WHERE m.user_id = $1 AND m.seq > $2 AND m.seq <= $3 ORDER BY p.seq, p.device_id",
    )
    .bind(user_id)
    .bind(after)
    .bind(upto)
    .fetch_all(c)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("device_id")?))).collect()
}

/// The newest ids `user_id` received (at most `limit`), newest first.
pub async fn received_rows(c: &mut Conn, user_id: &str, limit: i64) -> Result<Vec<ReceivedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, body_hash, sender, folder, received_at FROM msg_received WHERE user_id = $1 \
         ORDER BY received_at DESC, id LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(c)
    .await
}

/// `user_id`'s stored policy (JSON text) and when it was set.
pub async fn stored_policy(c: &mut Conn, user_id: &str) -> Result<Option<(String, i64)>, sqlx::Error> {
    let row = sqlx::query("SELECT policy, updated_at FROM msg_policies WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(c)
        .await?;
    row.map(|r| Ok((r.try_get("policy")?, r.try_get("updated_at")?))).transpose()
}

/// Whether this node holds any mailbox, replay guard, policy or usage row of `user_id`.
pub async fn holds_any(c: &mut Conn, user_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM msg_mailbox WHERE user_id = $1) + (SELECT COUNT(*) FROM msg_received WHERE user_id = $1) \
         + (SELECT COUNT(*) FROM msg_policies WHERE user_id = $1) + (SELECT COUNT(*) FROM msg_usage WHERE user_id = $1)",
    )
    .bind(user_id)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

/// The ids of `user_id`'s active devices.
pub async fn active_devices(c: &mut Conn, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM acct_devices WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .fetch_all(c)
        .await
}

/// Store moved messages for `user_id`, each with its pending rows for its devices, in order
/// (their `seq`s follow the order given; their bytes are counted by [`add_usage`]),
/// a few hundred per statement: an import of a large mailbox makes a few hundred round trips,
/// not two per message.
pub async fn insert_moved_batch(
    c: &mut Conn,
    user_id: &str,
    batch: &[(WaitingRow, &[String])],
) -> Result<(), sqlx::Error> {
    const ROWS: usize = 500;
    for chunk in batch.chunks(ROWS) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let n = i * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7,
                    n + 8
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO msg_mailbox (id, user_id, sender, folder, envelope, size, presentation, received_at) \
             VALUES {} RETURNING id, seq",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (m, _) in chunk {
            q = q
                .bind(&m.id)
                .bind(user_id)
                .bind(&m.sender)
                .bind(&m.folder)
                .bind(&m.envelope)
                .bind(m.size)
                .bind(m.presentation)
                .bind(m.received_at);
        }
        let seqs: std::collections::HashMap<String, i64> = q
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("seq")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let mut pending = Vec::new();
        for (m, devices) in chunk {
            let seq = *seqs.get(&m.id).ok_or_else(|| sqlx::Error::RowNotFound)?;
            let request = i64::from(m.folder == crate::policy::Folder::Requests.as_str());
            for d in devices.iter() {
                pending.push((d, seq, m.size, request, m.received_at));
            }
        }
        for rows in pending.chunks(ROWS) {
            let values: Vec<String> = (0..rows.len())
                .map(|i| {
                    let n = i * 5;
                    format!("(${}, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4, n + 5)
                })
                .collect();
            let sql = format!(
                "INSERT INTO msg_pending (device_id, seq, size, request, received_at) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (d, seq, size, request, at) in rows {
                q = q.bind(d.as_str()).bind(*seq).bind(*size).bind(*request).bind(*at);
            }
            q.execute(&mut *c).await?;
        }
    }
    Ok(())
}

/// Count `messages` more messages of `bytes` in `user_id`'s mailbox.
pub async fn add_usage(c: &mut Conn, user_id: &str, messages: i64, bytes: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO msg_usage (user_id, bytes, messages) VALUES ($1, $2, $3) ON CONFLICT (user_id) \
         DO UPDATE SET bytes = msg_usage.bytes + excluded.bytes, messages = msg_usage.messages + excluded.messages",
    )
    .bind(user_id)
    .bind(bytes)
    .bind(messages)
    .execute(c)
    .await?;
    Ok(())
}

/// Store a moved line of the replay guard.
pub async fn insert_received(c: &mut Conn, user_id: &str, r: &ReceivedRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO msg_received (user_id, id, body_hash, sender, folder, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user_id)
    .bind(&r.id)
    .bind(&r.body_hash)
    .bind(&r.sender)
    .bind(&r.folder)
    .bind(r.received_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Store a moved policy (JSON text).
pub async fn insert_policy(c: &mut Conn, user_id: &str, policy: &str, updated_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO msg_policies (user_id, policy, updated_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(policy)
        .bind(updated_at)
        .execute(c)
        .await?;
    Ok(())
}

/// The account moved away: its mailbox here goes (pending rows with it, through the
/// cascade and the triggers), with its usage, its devices' queue totals and drop reports.
/// What it received stays (`msg_received`), and so do its policy and what it was sending.
pub async fn forget_moved(c: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    for table in ["msg_mailbox", "msg_usage", "msg_drops"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(user_id).execute(&mut *c).await?;
    }
    for table in ["msg_queue_totals", "msg_drops_seen"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE device_id IN (SELECT id FROM acct_devices WHERE user_id = $1)"
        ))
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Most message bytes one grouped statement carries: a batch of large messages is written
/// in several statements, so that no parameter grows past this.
const STATEMENT_BYTES: usize = 4 << 20;

/// Indexes `0..n` of items of these sizes, cut into consecutive runs of at most
/// [`STATEMENT_BYTES`] (an item larger than that is a run of its own).
pub(crate) fn by_size(sizes: impl Iterator<Item = usize>) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, size) in sizes.enumerate() {
        match runs.last_mut() {
            Some(run) if bytes + size <= STATEMENT_BYTES => {
                run.end = i + 1;
                bytes += size;
            }
            _ => {
                runs.push(i..i + 1);
                bytes = size;
            }
        }
    }
    runs
}

/// What the JSON array parameter of [`json_values`] holds.
#[derive(Clone, Copy)]
pub(crate) enum Listed {
    Int,
    Text,
}

/// A subquery yielding the elements of the JSON array bound at `$n`. A list passed this way
/// keeps one statement text whatever its length: one prepared statement, not one per length.
pub(crate) fn json_values(c: &Conn, n: usize, kind: Listed) -> String {
    match (is_postgres(c), kind) {
        (false, _) => format!("SELECT value FROM json_each(${n})"),
        (true, Listed::Text) => format!("SELECT value FROM jsonb_array_elements_text(CAST(${n} AS JSONB))"),
        (true, Listed::Int) => {
            format!("SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST(${n} AS JSONB))")
        }
    }
}

/// `column` is one of the values `subquery` yields. On PostgreSQL an array, so that even a
/// generic plan looks each value up in `column`'s index rather than scanning around it.
pub(crate) fn any_of(c: &Conn, column: &str, subquery: &str) -> String {
    match is_postgres(c) {
        true => format!("{column} = ANY(ARRAY({subquery}))"),
        false => format!("{column} IN ({subquery})"),
    }
}

pub(crate) fn is_postgres(c: &Conn) -> bool {
    c.backend_name() == "PostgreSQL"
}

/// The JSON array to bind for [`json_values`].
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(items).map_err(|e| sqlx::Error::Encode(e.into()))
}

//! The outbox: forwards a user's devices handed to this node, kept until the recipient's
//! node has them. Every SQL query of the outbox is here.

use crate::mailbox::{any_of, by_size, is_postgres, json_list, json_values, Listed};
use serde::Serialize;
use sichat_core::db::Backend;
use sqlx::{AnyConnection, Row};
use std::collections::HashSet;
use std::sync::Arc;

type Conn = AnyConnection;

/// Delivery states a sender sees (`sichat message status`).
pub const QUEUED: &str = "queued";
pub const DELIVERED: &str = "delivered";
pub const NOT_ACCEPTED: &str = "not_accepted";
pub const FAILED: &str = "failed";

/// A forward in the outbox.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub user_id: String,
    pub sender: String,
    pub recipient: String,
    pub body: String,
    pub attempts: i64,
    pub created_at: i64,
    /// Until when this worker has it; after that another may take it.
    pub leased_until: i64,
}

/// What a sender may know about one of its messages.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub id: String,
    pub to: String,
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub struct NewEntry {
    pub id: String,
    pub user_id: String,
    pub sender: String,
    pub recipient: String,
    pub body: String,
    pub body_hash: String,
    pub now: i64,
    /// When the worker may take it: `now`, or later if it is leased already.
    pub next_attempt_at: i64,
}

impl Status {
    /// A forward just queued.
    pub fn queued(e: &NewEntry) -> Self {
        Status {
            id: e.id.clone(),
            to: e.recipient.clone(),
            state: QUEUED.into(),
            attempts: 0,
            created_at: e.now,
            updated_at: e.now,
            next_attempt_at: Some(e.now),
            last_error: None,
        }
    }
}

impl NewEntry {
    /// This forward as the delivery worker takes it.
    pub fn to_attempt(&self) -> Entry {
        Entry {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            body: self.body.clone(),
            attempts: 0,
            created_at: self.now,
            leased_until: self.next_attempt_at,
        }
    }
}

/// Queue forwards, each answered in order: `Ok(true)` if queued now. An id already queued
/// by the same user with the same content is the same request again (`Ok(false)`); with
/// other content, or by another user, `Err(())`. On PostgreSQL all in one statement.
pub async fn insert_all(c: &mut Conn, items: Vec<Arc<NewEntry>>) -> Result<Vec<Result<bool, ()>>, sqlx::Error> {
    let mut queued = HashSet::new();
    if is_postgres(c) {
        for part in by_size(items.iter().map(|e| e.body.len())) {
            queued.extend(insert_postgres(c, &items[part.clone()], part.start).await?);
        }
    } else {
        for (i, e) in items.iter().enumerate() {
            if insert_one(c, e).await? {
                queued.insert(i);
            }
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, e) in items.iter().enumerate() {
        out.push(if queued.contains(&i) { Ok(true) } else { repeat_of(c, e).await? });
    }
    Ok(out)
}

async fn insert_one(c: &mut Conn, e: &NewEntry) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO msg_outbox (id, user_id, sender, recipient, body, body_hash, state, attempts, next_attempt_at, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $8, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.user_id)
    .bind(&e.sender)
    .bind(&e.recipient)
    .bind(&e.body)
    .bind(&e.body_hash)
    .bind(e.now)
    .bind(e.next_attempt_at)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The indexes (from `first`) of the forwards of `items` queued now (of an id twice, the
/// first).
async fn insert_postgres(c: &mut Conn, items: &[Arc<NewEntry>], first: usize) -> Result<HashSet<usize>, sqlx::Error> {
    let input: Vec<serde_json::Value> = items
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({
                "ord": first + i, "id": e.id, "user_id": e.user_id, "sender": e.sender, "recipient": e.recipient,
                "body": e.body, "body_hash": e.body_hash, "now": e.now, "next_attempt_at": e.next_attempt_at,
            })
        })
        .collect();
    let rows = sqlx::query(
        "WITH input AS (SELECT DISTINCT ON (id) * FROM json_to_recordset(CAST($1 AS JSON)) AS x(ord BIGINT, id TEXT, \
           user_id TEXT, sender TEXT, recipient TEXT, body TEXT, body_hash TEXT, now BIGINT, next_attempt_at BIGINT) \
           ORDER BY id, ord), \
         q AS (INSERT INTO msg_outbox (id, user_id, sender, recipient, body, body_hash, state, attempts, \
           next_attempt_at, created_at, updated_at) \
           SELECT id, user_id, sender, recipient, body, body_hash, 'queued', 0, next_attempt_at, now, now FROM input \
           ORDER BY ord ON CONFLICT (id) DO NOTHING RETURNING id) \
         SELECT i.ord FROM q JOIN input i ON i.id = q.id",
    )
    .bind(serde_json::Value::Array(input).to_string())
    .fetch_all(c)
    .await?;
    rows.iter().map(|r| Ok(r.try_get::<i64, _>("ord")? as usize)).collect()
}

/// An id already queued: the same request again, or not.
async fn repeat_of(c: &mut Conn, e: &NewEntry) -> Result<Result<bool, ()>, sqlx::Error> {
    let row =
        sqlx::query("SELECT user_id, body_hash FROM msg_outbox WHERE id = $1").bind(&e.id).fetch_optional(c).await?;
    Ok(match row {
        Some(r)
            if r.try_get::<String, _>("user_id")? == e.user_id
                && r.try_get::<String, _>("body_hash")? == e.body_hash =>
        {
            Ok(false)
        }
        _ => Err(()),
    })
}

/// Take up to `limit` due forwards, leasing them until `lease_until` so that no other
/// worker (or replica) takes them meanwhile. A crash leaves them to be taken again when
/// the lease ends; the recipient's node recognises the redelivery.
pub async fn claim(
    c: &mut Conn,
    backend: Backend,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    let lock = if backend == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE msg_outbox SET next_attempt_at = $2 WHERE id IN (SELECT id FROM msg_outbox \
         WHERE state = 'queued' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $3{lock}) \
         RETURNING id, user_id, sender, recipient, body, attempts, COALESCE(requeued_at, created_at) AS created_at"
    );
    let rows = sqlx::query(&sql).bind(now).bind(lease_until).bind(limit).fetch_all(c).await?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                sender: r.try_get("sender")?,
                recipient: r.try_get("recipient")?,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
                leased_until: lease_until,
            })
        })
        .collect()
}

/// The end of one attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: String,
    /// `delivered`, `not_accepted`, `failed`, or `queued` to try again.
    pub state: &'static str,
    pub next_attempt_at: i64,
    pub error: Option<String>,
    /// Delivered to another node: where, and under which of its mailbox epochs.
    pub delivered: Option<Delivered>,
}

/// Where a forward went: another node's DIDComm endpoint and the mailbox epoch it answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub endpoint: String,
    pub epoch: String,
}

/// Record the ends of attempts. Finished forwards lose their body, except those another
/// node took: they keep it for [`REDELIVERY_WINDOW_MS`], in case that node is restored from
/// a backup and needs it again.
pub async fn record(c: &mut Conn, outcomes: &[Outcome], now: i64) -> Result<(), sqlx::Error> {
    let (done, retry): (Vec<&Outcome>, Vec<&Outcome>) = outcomes.iter().partition(|o| o.state != QUEUED);
    let sql = format!(
        "UPDATE msg_outbox SET state = $1, body = '', attempts = attempts + 1, updated_at = $2, \
         last_error = NULL WHERE {}",
        any_of(c, "id", &json_values(c, 3, Listed::Text))
    );
    for state in [DELIVERED, NOT_ACCEPTED, FAILED] {
        let ids: Vec<&str> =
            done.iter().filter(|o| o.state == state && o.delivered.is_none()).map(|o| o.id.as_str()).collect();
        if !ids.is_empty() {
            sqlx::query(&sql).bind(state).bind(now).bind(json_list(&ids)?).execute(&mut *c).await?;
        }
    }
    let mut by_peer: std::collections::HashMap<&Delivered, Vec<&str>> = Default::default();
    for o in &done {
        if let Some(d) = &o.delivered {
            by_peer.entry(d).or_default().push(o.id.as_str());
        }
    }
    let kept = format!(
        "UPDATE msg_outbox SET state = 'delivered', attempts = attempts + 1, updated_at = $1, last_error = NULL, \
         delivered_to = $3, delivered_epoch = $4, delivered_at = $1 WHERE {}",
        any_of(c, "id", &json_values(c, 2, Listed::Text))
    );
    for (peer, ids) in by_peer {
        sqlx::query(&kept)
            .bind(now)
            .bind(json_list(&ids)?)
            .bind(&peer.endpoint)
            .bind(&peer.epoch)
            .execute(&mut *c)
            .await?;
    }
    for o in retry {
        sqlx::query(
            "UPDATE msg_outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3, updated_at = $4 \
             WHERE id = $1",
        )
        .bind(&o.id)
        .bind(o.next_attempt_at)
        .bind(&o.error)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    for o in done.iter().filter(|o| o.error.is_some()) {
        sqlx::query("UPDATE msg_outbox SET last_error = $2 WHERE id = $1")
            .bind(&o.id)
            .bind(&o.error)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// A user's own message.
pub async fn status(c: &mut Conn, user_id: &str, id: &str) -> Result<Option<Status>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, recipient, state, attempts, next_attempt_at, last_error, created_at, updated_at \
         FROM msg_outbox WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(c)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let state: String = r.try_get("state")?;
    Ok(Some(Status {
        next_attempt_at: (state == QUEUED).then(|| r.try_get("next_attempt_at")).transpose()?,
        id: r.try_get("id")?,
        to: r.try_get("recipient")?,
        state,
        attempts: r.try_get("attempts")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_error: r.try_get("last_error")?,
    }))
}

/// Forget finished forwards last touched before `before`.
pub async fn prune(c: &mut Conn, before: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM msg_outbox WHERE state <> 'queued' AND updated_at < $1")
        .bind(before)
        .execute(c)
        .await?;
    Ok(r.rows_affected())
}

/// How long a forward another node took keeps its body, to deliver it again if that node
/// is restored from a backup: a day less than the recipient's memory of the ids it
/// received, so that what it had before the backup is recognised, not taken twice.
pub const REDELIVERY_WINDOW_MS: i64 = 6 * 24 * 3_600_000;
/// A forward is delivered again at most this many times (a node flipping its epoch gets
/// no more).
const MAX_REDELIVERIES: i64 = 3;

/// The other nodes' endpoints this node delivered to since `since` and still holds bodies for.
pub async fn delivered_endpoints(c: &mut Conn, since: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT delivered_to FROM msg_outbox WHERE delivered_to IS NOT NULL AND delivered_at > $1 \
         AND state = 'delivered'",
    )
    .bind(since)
    .fetch_all(c)
    .await
}

/// Queue again what `endpoint` took since `since` under a mailbox epoch other than `epoch`
/// (its node was restored from a backup since). Returns how many.
pub async fn requeue(c: &mut Conn, endpoint: &str, epoch: &str, since: i64, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE msg_outbox SET state = 'queued', attempts = 0, next_attempt_at = $4, requeued_at = $4, \
         updated_at = $4, redeliveries = redeliveries + 1, \
         last_error = $6 \
         WHERE delivered_to = $1 AND delivered_epoch <> $2 AND delivered_at > $3 AND state = 'delivered' \
         AND body <> '' AND redeliveries < $5",
    )
    .bind(endpoint)
    .bind(epoch)
    .bind(since)
    .bind(now)
    .bind(MAX_REDELIVERIES)
    .bind("the recipient's node was restored from a backup: delivering again")
    .execute(c)
    .await?;
    Ok(done.rows_affected())
}

/// The wait before attempt `attempts + 1`: 1 s doubling to at most 10 minutes, with up to
/// a quarter more at random so that many senders do not retry in step.
pub fn backoff_ms(attempts: i64) -> i64 {
    let base = 1000i64.saturating_mul(1i64 << attempts.clamp(0, 20)).min(600_000);
    let jitter = i64::from(u16::from_le_bytes(sichat_core::ids::random_bytes::<2>())) * (base / 4) / 65_536;
    base + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert!((1000..1250).contains(&backoff_ms(0)));
        assert!((4000..5000).contains(&backoff_ms(2)));
        assert!((600_000..750_000).contains(&backoff_ms(30)));
        assert!((1000..1250).contains(&backoff_ms(-3)));
    }
}

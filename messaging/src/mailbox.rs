//! The mailbox tables: messages waiting for a user's devices, which device still owes an
//! acknowledgement, the quota, and the drop reports. Every SQL query of the mailbox is here.

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

type Conn = AnyConnection;

/// A message as the mailbox keeps it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: i64,
    pub id: String,
    pub sender: String,
    pub folder: String,
    pub envelope: String,
    pub size: i64,
    pub presentation: bool,
    pub received_at: i64,
}

/// A message to keep for a user.
pub struct NewMessage {
    pub user_id: String,
    pub id: String,
    pub sender: String,
    pub folder: &'static str,
    pub envelope: String,
    pub body_hash: String,
    pub presentation: bool,
    pub received_at: i64,
}

/// What happened to a message handed to [`insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Kept, and the oldest messages dropped to make room (count, bytes).
    New { dropped: (i64, i64) },
    /// This id with this content is already here: a redelivery. Nothing changed.
    Duplicate,
    /// This id came before with other content: a replay. Nothing changed.
    Conflict,
}

/// A drop the user has not yet been told about.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drop {
    #[serde(skip)]
    pub seq: i64,
    pub reason: String,
    pub count: i64,
    pub bytes: i64,
    pub at: i64,
}

/// The queue one device sees.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub messages: i64,
    pub bytes: i64,
    pub requests: i64,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
    /// The newest drop report the device has not acknowledged, if any.
    pub unseen_drop: Option<i64>,
}

const STORED_COLUMNS: &str = "m.seq, m.id, m.sender, m.folder, m.envelope, m.size, m.presentation, m.received_at";

fn stored(r: &AnyRow) -> Result<Stored, sqlx::Error> {
    Ok(Stored {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        sender: r.try_get("sender")?,
        folder: r.try_get("folder")?,
        envelope: r.try_get("envelope")?,
        size: r.try_get("size")?,
        presentation: r.try_get::<i64, _>("presentation")? != 0,
        received_at: r.try_get("received_at")?,
    })
}

/// The content hash a message id was first accepted with, if it was.
pub async fn received_hash(c: &mut Conn, user_id: &str, id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT body_hash FROM msg_received WHERE user_id = $1 AND id = $2")
        .bind(user_id)
        .bind(id)
        .fetch_optional(c)
        .await?;
    row.map(|r| r.try_get("body_hash")).transpose()
}

/// How many messages `sender` put in `user_id`'s requests folder since `since`, and how
/// many anyone did.
pub async fn recent_requests(c: &mut Conn, user_id: &str, sender: &str, since: i64) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS total, CAST(COALESCE(SUM(CASE WHEN sender = $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS mine \
         FROM msg_received WHERE user_id = $1 AND folder = 'requests' AND received_at >= $3",
    )
    .bind(user_id)
    .bind(sender)
    .bind(since)
    .fetch_one(c)
    .await?;
    Ok((row.try_get("mine")?, row.try_get("total")?))
}

/// What a user's mailbox may hold: `total` bytes, of which the requests folder at most
/// `requests`. Over either, requests go first; requests never make room by dropping inbox
/// messages.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub total: i64,
    pub requests: i64,
}

/// A message to keep, the devices to keep it for, and the notice for other replicas.
pub struct Incoming {
    pub message: NewMessage,
    pub devices: Vec<String>,
    /// `NOTIFY`ed to the other replicas with the commit (PostgreSQL).
    pub notify: Option<String>,
}

/// Keep each message for each of its devices, inside the caller's transaction, then make
/// room under `quota` (see [`make_room`]). One answer per item. On PostgreSQL one statement
/// per [`STATEMENT_BYTES`] of messages; SQLite, which has no writing `WITH`, runs a few
/// cheap in-process statements per message.
pub async fn insert_all(c: &mut Conn, items: Vec<Arc<Incoming>>, quota: Quota) -> Result<Vec<Inserted>, sqlx::Error> {
    if !is_postgres(c) {
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let m = &item.message;
            out.push(match keep_sqlite(c, m, &item.devices).await? {
                Some((seq, used)) => {
                    let newest = Newest { seq, size: m.envelope.len() as i64, request: is_request(m) == 1 };
                    Inserted::New {
                        dropped: make_room(c, &m.user_id, used, newest, newest.request, quota, m.received_at).await?,
                    }
                }
                None => repeated(c, m).await?,
            });
        }
        return Ok(out);
    }
    let mut kept = BTreeMap::new();
    for part in by_size(items.iter().map(|i| i.message.envelope.len())) {
        kept.extend(keep_postgres(c, &items[part.clone()], part.start).await?);
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(match kept.get(&(i as i64)) {
            Some(_) => Inserted::New { dropped: (0, 0) },
            None => repeated(c, &item.message).await?,
        });
    }
    // Over quota: make room once per user, around this batch's newest message of theirs.
    // (index, seq, bytes after the batch, a request among this batch's)
    let mut users: BTreeMap<&str, (usize, i64, i64, bool)> = BTreeMap::new();
    for (&i, &(seq, used)) in &kept {
        let Some(item) = items.get(i as usize) else { continue };
        let request = is_request(&item.message) == 1;
        let newest = users.entry(item.message.user_id.as_str()).or_insert((i as usize, seq, used, false));
        newest.3 |= request;
        if seq > newest.1 {
            *newest = (i as usize, seq, used, newest.3);
        }
    }
    for (user, (i, seq, used, any_request)) in users {
        let m = &items[i].message;
        let newest = Newest { seq, size: m.envelope.len() as i64, request: is_request(m) == 1 };
        let dropped = make_room(c, user, used, newest, any_request, quota, m.received_at).await?;
        out[i] = Inserted::New { dropped };
    }
    Ok(out)
}

/// A message whose id was here already: the same content again, or a replay.
async fn repeated(c: &mut Conn, m: &NewMessage) -> Result<Inserted, sqlx::Error> {
    let hash = received_hash(c, &m.user_id, &m.id).await?;
    Ok(if hash.as_deref() == Some(m.body_hash.as_str()) { Inserted::Duplicate } else { Inserted::Conflict })
}

/// What [`insert_all`] writes on PostgreSQL, in one statement: the ids, the messages, a
/// pending row per device, the usage, the notices. An id already here (or twice in `items`:
/// the first counts) is not written. Returns, by index in `items`, each new message's `seq`
/// and its user's bytes after the whole batch. `items` start at index `first`.
async fn keep_postgres(
    c: &mut Conn,
    items: &[Arc<Incoming>],
    first: usize,
) -> Result<BTreeMap<i64, (i64, i64)>, sqlx::Error> {
    let input: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let m = &item.message;
            json!({
                "ord": first + i, "user_id": m.user_id, "id": m.id, "body_hash": m.body_hash, "sender": m.sender,
                "folder": m.folder, "envelope": m.envelope, "size": m.envelope.len(),
                "presentation": i64::from(m.presentation), "request": is_request(m),
                "received_at": m.received_at, "devices": item.devices,
            })
        })
        .collect();
    let notices: Vec<&str> = items.iter().filter_map(|i| i.notify.as_deref()).collect();
    let rows = sqlx::query(
        "WITH input AS (SELECT DISTINCT ON (user_id, id) * FROM json_to_recordset(CAST($1 AS JSON)) AS x(ord BIGINT, \
           user_id TEXT, id TEXT, body_hash TEXT, sender TEXT, folder TEXT, envelope TEXT, size BIGINT, \
           presentation BIGINT, request BIGINT, received_at BIGINT, devices JSON) ORDER BY user_id, id, ord), \
         r AS (INSERT INTO msg_received (user_id, id, body_hash, sender, folder, received_at) \
           SELECT user_id, id, body_hash, sender, folder, received_at FROM input ORDER BY ord \
           ON CONFLICT (user_id, id) DO NOTHING RETURNING user_id, id), \
         m AS (INSERT INTO msg_mailbox (id, user_id, sender, folder, envelope, size, presentation, received_at) \
           SELECT i.id, i.user_id, i.sender, i.folder, i.envelope, i.size, i.presentation, i.received_at \
           FROM input i JOIN r ON r.user_id = i.user_id AND r.id = i.id ORDER BY i.ord RETURNING seq, user_id, id, size), \
         p AS (INSERT INTO msg_pending (device_id, seq, size, request, received_at) \
           SELECT d.value, m.seq, i.size, i.request, i.received_at \
           FROM m JOIN input i ON i.user_id = m.user_id AND i.id = m.id, json_array_elements_text(i.devices) d), \
         u AS (INSERT INTO msg_usage (user_id, bytes, messages) \
           SELECT user_id, CAST(SUM(size) AS BIGINT), COUNT(*) FROM m GROUP BY user_id ON CONFLICT (user_id) \
           DO UPDATE SET bytes = msg_usage.bytes + excluded.bytes, messages = msg_usage.messages + excluded.messages \
           RETURNING user_id, bytes), \
         n AS (SELECT pg_notify($2, x.value) FROM json_array_elements_text(CAST($3 AS JSON)) x) \
         SELECT i.ord, m.seq, u.bytes, (SELECT COUNT(*) FROM n) AS notified \
         FROM m JOIN input i ON i.user_id = m.user_id AND i.id = m.id JOIN u ON u.user_id = m.user_id",
    )
    .bind(Value::Array(input).to_string())
    .bind(crate::live::CHANNEL)
    .bind(json_list(&notices)?)
    .fetch_all(c)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("ord")?, (r.try_get("seq")?, r.try_get("bytes")?)))).collect()
}

/// What [`insert_all`] writes for one message on SQLite. Returns the message's `seq` and
/// its user's bytes now, or `None` if the id was here already (nothing written).
async fn keep_sqlite(c: &mut Conn, m: &NewMessage, devices: &[String]) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let first = sqlx::query(
        "INSERT INTO msg_received (user_id, id, body_hash, sender, folder, received_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, id) DO NOTHING",
    )
    .bind(&m.user_id)
    .bind(&m.id)
    .bind(&m.body_hash)
    .bind(&m.sender)
    .bind(m.folder)
    .bind(m.received_at)
    .execute(&mut *c)
    .await?
    .rows_affected()
        == 1;
    if !first {
        return Ok(None);
    }
    let size = m.envelope.len() as i64;
    let seq: i64 = sqlx::query(
        "INSERT INTO msg_mailbox (id, user_id, sender, folder, envelope, size, presentation, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
    )
    .bind(&m.id)
    .bind(&m.user_id)
    .bind(&m.sender)
    .bind(m.folder)
    .bind(&m.envelope)
    .bind(size)
    .bind(i64::from(m.presentation))
    .bind(m.received_at)
    .fetch_one(&mut *c)
    .await?
    .try_get("seq")?;
    sqlx::query(
        "INSERT INTO msg_pending (device_id, seq, size, request, received_at) \
         SELECT value, $1, $2, $3, $4 FROM json_each($5)",
    )
    .bind(seq)
    .bind(size)
    .bind(is_request(m))
    .bind(m.received_at)
    .bind(json_list(devices)?)
    .execute(&mut *c)
    .await?;
    let used: i64 = sqlx::query(
        "INSERT INTO msg_usage (user_id, bytes, messages) VALUES ($1, $2, 1) ON CONFLICT (user_id) \
         DO UPDATE SET bytes = msg_usage.bytes + excluded.bytes, messages = msg_usage.messages + 1 RETURNING bytes",
    )
    .bind(&m.user_id)
    .bind(size)
    .fetch_one(&mut *c)
    .await?
    .try_get("bytes")?;
    Ok(Some((seq, used)))
}

fn is_request(m: &NewMessage) -> i64 {
    i64::from(m.folder == crate::policy::Folder::Requests.as_str())
}

/// The message just kept, which making room spares unless it is a request that cannot fit.
#[derive(Debug, Clone, Copy)]
struct Newest {
    seq: i64,
    size: i64,
    request: bool,
}

/// Bring `user_id`'s mailbox (`used` bytes, `newest` just kept) back under `quota`, in one
/// drop event reported once: first the requests folder down to its share (when a request
/// came in), then, while over the total, the oldest requests, and only then, for an inbox
/// message, the oldest of the inbox. A request never drops an inbox message: when the
/// inbox leaves no room, the request itself goes. Returns (count, bytes) dropped.
async fn make_room(
    c: &mut Conn,
    user_id: &str,
    used: i64,
    newest: Newest,
    requests_came: bool,
    quota: Quota,
    now: i64,
) -> Result<(i64, i64), sqlx::Error> {
    let requests = crate::policy::Folder::Requests;
    let mut victims = Vec::new();
    let mut freed = 0;
    let mut reason = "requests_quota";
    if requests_came {
        let over = requests_bytes(c, user_id).await? - quota.requests;
        if over > 0 {
            freed += oldest_after(c, user_id, requests, newest.seq, 0, over, &mut victims).await?;
            if freed < over && newest.request {
                victims.push(newest.seq);
                freed += newest.size;
            }
        }
    }
    if used - freed > quota.total && !victims.contains(&newest.seq) {
        reason = "quota";
        let after = victims.last().copied().unwrap_or(0);
        freed +=
            oldest_after(c, user_id, requests, newest.seq, after, used - freed - quota.total, &mut victims).await?;
        if used - freed > quota.total {
            if newest.request {
                victims.push(newest.seq);
            } else {
                let inbox = crate::policy::Folder::Inbox;
                oldest_after(c, user_id, inbox, newest.seq, 0, used - freed - quota.total, &mut victims).await?;
            }
        }
    }
    let (count, bytes) = remove(c, user_id, &victims).await?;
    if count > 0 {
        record_drop(c, user_id, reason, count, bytes, now).await?;
        tracing::info!(count, bytes, reason, "mailbox over quota: dropped the oldest messages");
    }
    Ok((count, bytes))
}

/// Bytes `user_id`'s requests folder holds (a partial index over that folder alone).
async fn requests_bytes(c: &mut Conn, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM msg_mailbox WHERE user_id = $1 AND folder = 'requests'",
    )
    .bind(user_id)
    .fetch_one(c)
    .await
}

/// Add to `victims` the oldest messages of `folder` after `seq` `after` (never `keep`)
/// until `excess` bytes; returns the bytes added.
async fn oldest_after(
    c: &mut Conn,
    user_id: &str,
    folder: crate::policy::Folder,
    keep: i64,
    mut after: i64,
    excess: i64,
    victims: &mut Vec<i64>,
) -> Result<i64, sqlx::Error> {
    // The folder is one of ours, written into the text so that the requests folder's
    // partial index applies.
    let sql = format!(
        "SELECT seq, size FROM msg_mailbox WHERE user_id = $1 AND folder = '{}' AND seq > $2 AND seq <> $3 \
         ORDER BY seq LIMIT 256",
        folder.as_str()
    );
    let mut freed = 0;
    'scan: while freed < excess {
        let rows = sqlx::query(&sql).bind(user_id).bind(after).bind(keep).fetch_all(&mut *c).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let (seq, size): (i64, i64) = (r.try_get("seq")?, r.try_get("size")?);
            after = seq;
            victims.push(seq);
            freed += size;
            if freed >= excess {
                break 'scan;
            }
        }
    }
    Ok(freed)
}

/// Delete mailbox messages (and their pending rows) and take them off the usage count.
async fn remove(c: &mut Conn, user_id: &str, seqs: &[i64]) -> Result<(i64, i64), sqlx::Error> {
    let sql = format!(
        "DELETE FROM msg_mailbox WHERE user_id = $1 AND {} RETURNING size",
        any_of(c, "seq", &json_values(c, 2, Listed::Int))
    );
    let (mut count, mut bytes) = (0, 0);
    for r in sqlx::query(&sql).bind(user_id).bind(json_list(seqs)?).fetch_all(&mut *c).await? {
        count += 1;
        bytes += r.try_get::<i64, _>("size")?;
    }
    take_off_usage(c, user_id, count, bytes).await?;
    Ok((count, bytes))
}

async fn take_off_usage(c: &mut Conn, user_id: &str, count: i64, bytes: i64) -> Result<(), sqlx::Error> {
    if count > 0 {
        sqlx::query("UPDATE msg_usage SET bytes = bytes - $2, messages = messages - $3 WHERE user_id = $1")
            .bind(user_id)
            .bind(bytes)
            .bind(count)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

async fn record_drop(
    c: &mut Conn,
    user_id: &str,
    reason: &str,
    count: i64,
    bytes: i64,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO msg_drops (user_id, reason, count, bytes, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(reason)
        .bind(count)
        .bind(bytes)
        .bind(at)
        .execute(c)
        .await?;
    Ok(())
}

/// The oldest messages `device_id` has not acknowledged, leaving out the `seq`s in
/// `skip` (those already in flight to it), at most `limit`.
pub async fn pending(c: &mut Conn, device_id: &str, skip: &[i64], limit: i64) -> Result<Vec<Stored>, sqlx::Error> {
    let sql = format!(
        "SELECT {STORED_COLUMNS} FROM msg_pending p JOIN msg_mailbox m ON m.seq = p.seq \
         WHERE p.device_id = $1 AND NOT ({}) ORDER BY p.seq LIMIT $3",
        any_of(c, "p.seq", &json_values(c, 2, Listed::Int))
    );
    let rows = sqlx::query(&sql).bind(device_id).bind(json_list(skip)?).bind(limit).fetch_all(c).await?;
    rows.iter().map(stored).collect()
}

/// What `device_id` has waiting, and the newest drop report it has not seen (of those from
/// `since` on: a device is not told of drops before it was added): index lookups only (the
/// totals are kept by triggers on `msg_pending`).
pub async fn queue(c: &mut Conn, user_id: &str, device_id: &str, since: i64) -> Result<Queue, sqlx::Error> {
    let row = sqlx::query(
        "SELECT t.messages, t.bytes, t.requests, \
         (SELECT p.received_at FROM msg_pending p WHERE p.device_id = $1 ORDER BY p.seq LIMIT 1) AS oldest, \
         (SELECT p.received_at FROM msg_pending p WHERE p.device_id = $1 ORDER BY p.seq DESC LIMIT 1) AS newest, \
         (SELECT MAX(d.seq) FROM msg_drops d WHERE d.user_id = $2 AND d.at >= $3 AND d.seq > \
          COALESCE((SELECT s.seq FROM msg_drops_seen s WHERE s.device_id = $1), 0)) AS unseen_drop \
         FROM (SELECT 1 AS one) o LEFT JOIN msg_queue_totals t ON t.device_id = $1",
    )
    .bind(device_id)
    .bind(user_id)
    .bind(since)
    .fetch_one(c)
    .await?;
    Ok(Queue {
        messages: row.try_get::<Option<i64>, _>("messages")?.unwrap_or(0),
        bytes: row.try_get::<Option<i64>, _>("bytes")?.unwrap_or(0),
        requests: row.try_get::<Option<i64>, _>("requests")?.unwrap_or(0),
        oldest: row.try_get("oldest")?,
        newest: row.try_get("newest")?,
        unseen_drop: row.try_get("unseen_drop")?,
    })
}

/// Drops from `since` on that `device_id` has not acknowledged.
pub async fn unseen_drops(c: &mut Conn, user_id: &str, device_id: &str, since: i64) -> Result<Vec<Drop>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, reason, count, bytes, at FROM msg_drops WHERE user_id = $1 AND at >= $3 \
         AND seq > COALESCE((SELECT seq FROM msg_drops_seen WHERE device_id = $2), 0) ORDER BY seq LIMIT 100",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(since)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Drop {
                seq: r.try_get("seq")?,
                reason: r.try_get("reason")?,
                count: r.try_get("count")?,
                bytes: r.try_get("bytes")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}

/// `device_id` has these messages (by id): forget them for it, delete those no device
/// still owes, and mark drop reports up to `drops_seen` as told. Returns how many of the
/// ids were pending for the device.
pub async fn acknowledge(
    c: &mut Conn,
    user_id: &str,
    device_id: &str,
    ids: &[String],
    drops_seen: Option<i64>,
) -> Result<u64, sqlx::Error> {
    let of_ids = format!(
        "SELECT seq FROM msg_mailbox WHERE user_id = $2 AND {}",
        any_of(c, "id", &json_values(c, 3, Listed::Text))
    );
    let sql = format!("DELETE FROM msg_pending WHERE device_id = $1 AND {} RETURNING seq", any_of(c, "seq", &of_ids));
    let seqs: Vec<i64> = sqlx::query(&sql)
        .bind(device_id)
        .bind(user_id)
        .bind(json_list(ids)?)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.try_get("seq"))
        .collect::<Result<_, _>>()?;
    let acknowledged = seqs.len() as u64;
    if !seqs.is_empty() {
        forget_unowed(c, &seqs).await?;
    }
    if let Some(seen) = drops_seen {
        sqlx::query(
            "INSERT INTO msg_drops_seen (device_id, seq) VALUES ($1, $2) ON CONFLICT (device_id) \
             DO UPDATE SET seq = CASE WHEN excluded.seq > msg_drops_seen.seq THEN excluded.seq ELSE msg_drops_seen.seq END",
        )
        .bind(device_id)
        .bind(seen)
        .execute(&mut *c)
        .await?;
    }
    Ok(acknowledged)
}

/// Revoked devices owe nothing: forget their pending rows, and delete the messages no
/// device owes any more. Returns how many messages went.
pub async fn release_revoked(c: &mut Conn) -> Result<i64, sqlx::Error> {
    let seqs: Vec<i64> = sqlx::query(
        "DELETE FROM msg_pending WHERE device_id IN (SELECT id FROM acct_devices WHERE revoked_at IS NOT NULL) \
         RETURNING seq",
    )
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| r.try_get("seq"))
    .collect::<Result<_, _>>()?;
    forget_unowed(c, &seqs).await
}

/// A device just revoked owes nothing: forget its pending rows, and delete the messages no
/// device owes any more. Returns how many messages went.
pub async fn release_device(c: &mut Conn, device_id: &str) -> Result<i64, sqlx::Error> {
    let seqs: Vec<i64> = sqlx::query("DELETE FROM msg_pending WHERE device_id = $1 RETURNING seq")
        .bind(device_id)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.try_get("seq"))
        .collect::<Result<_, _>>()?;
    forget_unowed(c, &seqs).await
}

/// Of the messages `seqs`, delete those no device owes any more and take them off their
/// users' usage. Returns how many went.
async fn forget_unowed(c: &mut Conn, seqs: &[i64]) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "DELETE FROM msg_mailbox WHERE {} \
         AND NOT EXISTS (SELECT 1 FROM msg_pending p WHERE p.seq = msg_mailbox.seq) RETURNING user_id, size",
        any_of(c, "seq", &json_values(c, 1, Listed::Int))
    );
    let mut by_user: BTreeMap<String, (i64, i64)> = Default::default();
    for r in sqlx::query(&sql).bind(json_list(seqs)?).fetch_all(&mut *c).await? {
        let entry = by_user.entry(r.try_get("user_id")?).or_default();
        entry.0 += 1;
        entry.1 += r.try_get::<i64, _>("size")?;
    }
    let mut total = 0;
    for (user_id, (count, bytes)) in by_user {
        take_off_usage(c, &user_id, count, bytes).await?;
        total += count;
    }
    Ok(total)
}

/// Drop messages received before `before`, per user, recording each drop. Returns how
/// many went.
pub async fn expire(c: &mut Conn, before: i64, now: i64) -> Result<i64, sqlx::Error> {
    let rows = sqlx::query("SELECT user_id, seq FROM msg_mailbox WHERE received_at < $1 ORDER BY user_id LIMIT 5000")
        .bind(before)
        .fetch_all(&mut *c)
        .await?;
    let mut by_user: BTreeMap<String, Vec<i64>> = Default::default();
    for r in rows {
        by_user.entry(r.try_get("user_id")?).or_default().push(r.try_get("seq")?);
    }
    let mut total = 0;
    for (user_id, seqs) in by_user {
        let (count, bytes) = remove(c, &user_id, &seqs).await?;
        if count > 0 {
            record_drop(c, &user_id, "expired", count, bytes, now).await?;
            total += count;
        }
    }
    Ok(total)
}

/// Forget what no one needs any more: ids of messages received before `received_before`
/// (a sending node gives up long before), and drop reports before `drops_before`.
pub async fn prune(c: &mut Conn, received_before: i64, drops_before: i64) -> Result<u64, sqlx::Error> {
    let a =
        sqlx::query("DELETE FROM msg_received WHERE received_at < $1").bind(received_before).execute(&mut *c).await?;
    let b = sqlx::query("DELETE FROM msg_drops WHERE at < $1").bind(drops_before).execute(&mut *c).await?;
    Ok(a.rows_affected() + b.rows_affected())
}

mod moves;
pub use moves::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_stay_under_the_statement_bytes() {
        let mb = 1 << 20;
        assert_eq!(by_size([mb, mb, mb, mb, mb].into_iter()), vec![0..4, 4..5]);
        assert_eq!(by_size([5 * mb, 1, 1].into_iter()), vec![0..1, 1..3]);
        assert_eq!(by_size([1, 5 * mb, 1].into_iter()), vec![0..1, 1..2, 2..3]);
        assert!(by_size(std::iter::empty()).is_empty());
    }
}

//! The moves' rows (`acct_moves`) and the DIDs accounts had before (`acct_did_aliases`).

use super::Conn;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct MoveRow {
    pub id: String,
    pub status: String,
    pub user_name: Option<String>,
    pub peer_origin: Option<String>,
    pub invite_id: Option<String>,
    pub ticket_key: Option<Vec<u8>>,
    pub bundle: Option<String>,
    pub new_did: Option<String>,
    pub old_dids: Option<String>,
    pub expires_at: i64,
    pub finished_at: Option<i64>,
}

const MOVE_COLUMNS: &str =
    "id, status, user_name, peer_origin, invite_id, ticket_key, bundle, new_did, old_dids, expires_at, finished_at";

fn move_row(r: &AnyRow) -> Result<MoveRow, sqlx::Error> {
    Ok(MoveRow {
        id: r.try_get("id")?,
        status: r.try_get("status")?,
        user_name: r.try_get("user_name")?,
        peer_origin: r.try_get("peer_origin")?,
        invite_id: r.try_get("invite_id")?,
        ticket_key: r.try_get("ticket_key")?,
        bundle: r.try_get("bundle")?,
        new_did: r.try_get("new_did")?,
        old_dids: r.try_get("old_dids")?,
        expires_at: r.try_get("expires_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

pub struct NewMove<'a> {
    pub id: &'a str,
    pub direction: &'a str,
    pub status: &'a str,
    pub ticket_hash: &'a str,
    pub user_id: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub peer_origin: Option<&'a str>,
    pub invite_id: Option<&'a str>,
    pub ticket_key: Option<Vec<u8>>,
    pub now: i64,
    pub expires_at: i64,
}

pub async fn insert_move(c: &mut Conn, m: NewMove<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_moves (id, direction, status, ticket_hash, user_id, user_name, peer_origin, invite_id, \
         ticket_key, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(m.id)
    .bind(m.direction)
    .bind(m.status)
    .bind(m.ticket_hash)
    .bind(m.user_id)
    .bind(m.user_name)
    .bind(m.peer_origin)
    .bind(m.invite_id)
    .bind(m.ticket_key)
    .bind(m.now)
    .bind(m.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn move_by_ticket(c: &mut Conn, direction: &str, ticket_hash: &str) -> Result<Option<MoveRow>, sqlx::Error> {
    let sql = format!("SELECT {MOVE_COLUMNS} FROM acct_moves WHERE direction = $1 AND ticket_hash = $2");
    sqlx::query(&sql).bind(direction).bind(ticket_hash).fetch_optional(c).await?.as_ref().map(move_row).transpose()
}

/// The account's export that has not expired and is not done, if there is one.
pub async fn move_in_flight(c: &mut Conn, user_id: &str, now: i64) -> Result<Option<MoveRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM acct_moves WHERE user_id = $1 AND direction = 'out' AND status = 'exported' \
         AND expires_at > $2"
    );
    sqlx::query(&sql).bind(user_id).bind(now).fetch_optional(c).await?.as_ref().map(move_row).transpose()
}

/// An export in flight ends unfinished (`move_cancel`).
pub async fn cancel_move(c: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_moves SET status = 'cancelled', ticket_key = NULL WHERE id = $1 AND status = 'exported'")
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// How many tickets taken with an invite are still open.
pub async fn open_tickets(c: &mut Conn, invite_id: &str, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM acct_moves WHERE invite_id = $1 AND direction = 'in' \
         AND status IN ('open', 'drafted') AND expires_at > $2",
    )
    .bind(invite_id)
    .bind(now)
    .fetch_one(c)
    .await?
    .try_get("n")
}

/// The new node keeps the bundle and the chosen name between the draft and the import.
pub async fn set_move_drafted(c: &mut Conn, id: &str, bundle: &str, user_name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE acct_moves SET status = 'drafted', bundle = $1, user_name = $2 WHERE id = $3 AND status IN ('open', 'drafted')",
    )
    .bind(bundle)
    .bind(user_name)
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

/// A move is done: where the account is now, and its DIDs before; the ticket's key and
/// the bundle are forgotten.
pub async fn finish_move(
    c: &mut Conn,
    id: &str,
    user_id: &str,
    new_did: &str,
    old_dids: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE acct_moves SET status = 'done', user_id = $1, new_did = $2, old_dids = $3, finished_at = $4, \
         ticket_key = NULL, bundle = NULL WHERE id = $5 AND status IN ('drafted', 'exported')",
    )
    .bind(user_id)
    .bind(new_did)
    .bind(old_dids)
    .bind(now)
    .bind(id)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The finished move of an account, in `direction`: for `out`, where it went; for `in`,
/// the DIDs it had before.
pub async fn finished_move(c: &mut Conn, user_id: &str, direction: &str) -> Result<Option<MoveRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM acct_moves WHERE user_id = $1 AND direction = $2 AND status = 'done' \
         ORDER BY finished_at DESC LIMIT 1"
    );
    sqlx::query(&sql).bind(user_id).bind(direction).fetch_optional(c).await?.as_ref().map(move_row).transpose()
}

/// Where the account that was called `name` here went, if it moved away.
pub async fn moved_away(c: &mut Conn, name: &str) -> Result<Option<MoveRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM acct_moves WHERE user_name = $1 AND direction = 'out' AND status = 'done' \
         ORDER BY finished_at DESC LIMIT 1"
    );
    sqlx::query(&sql).bind(name).fetch_optional(c).await?.as_ref().map(move_row).transpose()
}

/// Tickets and exports that expired unfinished.
pub async fn purge_expired_moves(c: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM acct_moves WHERE status <> 'done' AND expires_at <= $1").bind(now).execute(c).await?;
    Ok(done.rows_affected())
}

/// The DIDs a moved-in account had before, each naming it here.
pub async fn insert_did_alias(c: &mut Conn, did: &str, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO acct_did_aliases (did, user_id) VALUES ($1, $2)")
        .bind(did)
        .bind(user_id)
        .execute(c)
        .await?;
    Ok(())
}

/// Record the did:key an account started as (see `RegistrationClaims::key_did`).
pub async fn set_key_did(c: &mut Conn, user_id: &str, did: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET key_did = $1 WHERE id = $2").bind(did).bind(user_id).execute(c).await?;
    Ok(())
}

/// The did:key the account started as, if it joined from a wallet that worked alone.
pub async fn key_did(c: &mut Conn, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT key_did FROM acct_users WHERE id = $1").bind(user_id).fetch_optional(c).await?;
    Ok(row.map(|r| r.try_get::<Option<String>, _>("key_did")).transpose()?.flatten())
}

/// The name of the account (active, or moved on from here) that once had `did` on another
/// node: callers check the account's status (a moved one is answered `moved`).
pub async fn name_by_alias(c: &mut Conn, did: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.name FROM acct_did_aliases a JOIN acct_users u ON u.id = a.user_id \
         WHERE a.did = $1 AND u.status IN ('active', 'moved')",
    )
    .bind(did)
    .fetch_optional(c)
    .await?;
    row.map(|r| r.try_get("name")).transpose()
}

/// A node that changed its public URL records, for each account, a finished move in from
/// its former URL (`old_dids`: every DID the account had before), and the old `did:web` as
/// an alias. Returns false, changing nothing, when the account has followed that URL already.
pub async fn insert_rehost(
    c: &mut Conn,
    user_id: &str,
    user_name: &str,
    from_origin: &str,
    old_web_did: &str,
    old_dids: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO acct_did_aliases (did, user_id) VALUES ($1, $2) ON CONFLICT (did) DO NOTHING")
            .bind(old_web_did)
            .bind(user_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
            == 1;
    if !inserted {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO acct_moves (id, direction, status, ticket_hash, user_id, user_name, peer_origin, old_dids, \
         created_at, expires_at, finished_at) VALUES ($1, 'in', 'done', $2, $3, $4, $5, $6, $7, $7, $7)",
    )
    .bind(sichat_core::ids::new_id())
    .bind(format!("rehost:{old_web_did}"))
    .bind(user_id)
    .bind(user_name)
    .bind(from_origin)
    .bind(old_dids)
    .bind(now)
    .execute(c)
    .await?;
    Ok(true)
}

/// The DIDs the account had before, after its `did:webvh` followed the node to its new URL
/// (the old `did:webvh` added): on its latest finished move in.
pub async fn set_old_dids(c: &mut Conn, user_id: &str, old_dids: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE acct_moves SET old_dids = $1 WHERE id = (SELECT id FROM acct_moves WHERE user_id = $2 \
         AND direction = 'in' AND status = 'done' ORDER BY finished_at DESC LIMIT 1)",
    )
    .bind(old_dids)
    .bind(user_id)
    .execute(c)
    .await?;
    Ok(())
}

/// An alias of `user_id`, if not one already.
pub async fn add_did_alias(c: &mut Conn, did: &str, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO acct_did_aliases (did, user_id) VALUES ($1, $2) ON CONFLICT (did) DO NOTHING")
        .bind(did)
        .bind(user_id)
        .execute(c)
        .await?;
    Ok(())
}

/// A page held for a move, in the order it came.
pub struct MovePageRow {
    pub part: String,
    pub last: bool,
    pub page: String,
}

/// Hold a page for the move `move_id`, after those it holds. Returns how many it holds.
pub async fn insert_move_page(
    c: &mut Conn,
    move_id: &str,
    part: &str,
    last: bool,
    page: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_move_pages (move_id, seq, part, last, page) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM acct_move_pages WHERE move_id = $1",
    )
    .bind(move_id)
    .bind(part)
    .bind(i64::from(last))
    .bind(page)
    .execute(&mut *c)
    .await?;
    Ok(move_page_totals(c, move_id).await?.0)
}

/// How many pages a move holds, and their bytes.
pub async fn move_page_totals(c: &mut Conn, move_id: &str) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(page)), 0) AS bytes FROM acct_move_pages WHERE move_id = $1",
    )
    .bind(move_id)
    .fetch_one(c)
    .await?;
    Ok((row.try_get("n")?, row.try_get::<i64, _>("bytes")?))
}

/// The pages a move holds, in order.
pub async fn move_pages(c: &mut Conn, move_id: &str) -> Result<Vec<MovePageRow>, sqlx::Error> {
    let rows = sqlx::query("SELECT part, last, page FROM acct_move_pages WHERE move_id = $1 ORDER BY seq")
        .bind(move_id)
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MovePageRow {
                part: r.try_get("part")?,
                last: r.try_get::<i64, _>("last")? != 0,
                page: r.try_get("page")?,
            })
        })
        .collect()
}

pub async fn delete_move_pages(c: &mut Conn, move_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM acct_move_pages WHERE move_id = $1").bind(move_id).execute(c).await?;
    Ok(())
}

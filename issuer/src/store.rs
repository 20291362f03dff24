//! The issuer's tables (`issuer_*`) and every query on them.

use crate::moves::MovedType;
use crate::status::Purpose;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

pub type Conn = AnyConnection;

/// A user's own types: (name, display name, schema JSON, alg).
pub async fn user_types(c: &mut Conn, user_id: &str) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, display_name, schema, alg FROM issuer_types WHERE user_id = $1 ORDER BY name")
        .bind(user_id)
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("display_name")?, r.try_get("schema")?, r.try_get("alg")?)))
        .collect()
}

pub struct NewType<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub display_name: &'a str,
    pub schema: &'a str,
    pub alg: &'a str,
    pub now: i64,
}

pub async fn insert_type(c: &mut Conn, t: NewType<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO issuer_types (id, user_id, name, display_name, schema, alg, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(t.id)
    .bind(t.user_id)
    .bind(t.name)
    .bind(t.display_name)
    .bind(t.schema)
    .bind(t.alg)
    .bind(t.now)
    .execute(c)
    .await?;
    Ok(())
}

/// The newest list of `user_id` for `purpose` issued under `issuer_did` (a list with no
/// issuer recorded is under the account's `web_did`) and published here: (id, bits). Lists
/// that moved in with the account keep their old URL, which new credentials must not name.
pub async fn current_list(
    c: &mut Conn,
    user_id: &str,
    purpose: Purpose,
    issuer_did: &str,
    web_did: &str,
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, bits FROM issuer_status_lists WHERE user_id = $1 AND purpose = $2 \
         AND COALESCE(issuer_did, $4) = $3 AND published_url IS NULL ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(issuer_did)
    .bind(web_did)
    .fetch_optional(c)
    .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("bits")?))).transpose()
}

/// Hold `list` until the transaction ends (PostgreSQL; SQLite's one writer already
/// serialises): concurrent issuances of one account then pick their indexes one after the
/// other, each seeing those taken before it.
pub async fn lock_list(c: &mut Conn, list: &str, postgres: bool) -> Result<(), sqlx::Error> {
    if postgres {
        sqlx::query("SELECT id FROM issuer_status_lists WHERE id = $1 FOR UPDATE").bind(list).execute(c).await?;
    }
    Ok(())
}

pub async fn insert_list(
    c: &mut Conn,
    id: &str,
    user_id: &str,
    purpose: Purpose,
    issuer_did: &str,
    bits: &[u8],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO issuer_status_lists (id, user_id, purpose, issuer_did, bits, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(issuer_did)
    .bind(bits.to_vec())
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// A status list with its owner's name, as the node serves it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListRow {
    pub user_id: String,
    /// The owner's account name.
    pub name: String,
    pub purpose: String,
    pub bits: Vec<u8>,
    pub updated_at: i64,
    /// The DID the list is issued under; `None`: the account's `did:web` (see [`current_list`]).
    pub issuer_did: Option<String>,
    /// The URL the list was first published at, for a list that moved in with its account;
    /// `None`: this node's URL for it.
    pub published_url: Option<String>,
}

/// A list with its owner's name; `lock` takes a row lock (PostgreSQL) for an update.
pub async fn list(c: &mut Conn, id: &str, lock: bool) -> Result<Option<ListRow>, sqlx::Error> {
    let sql = format!(
        "SELECT l.user_id, u.name, l.purpose, l.bits, l.updated_at, l.issuer_did, l.published_url \
         FROM issuer_status_lists l JOIN acct_users u ON u.id = l.user_id WHERE l.id = $1{}",
        if lock { " FOR UPDATE OF l" } else { "" }
    );
    sqlx::query_as(&sql).bind(id).fetch_optional(c).await
}

pub async fn save_bits(c: &mut Conn, id: &str, bits: &[u8], now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE issuer_status_lists SET bits = $1, updated_at = $2 WHERE id = $3")
        .bind(bits.to_vec())
        .bind(now)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn index_taken(c: &mut Conn, list_id: &str, index: i64) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM issuer_credentials WHERE (revocation_list = $1 AND revocation_index = $2) \
         OR (suspension_list = $1 AND suspension_index = $2)",
    )
    .bind(list_id)
    .bind(index)
    .fetch_one(c)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub id: String,
    pub user_id: String,
    pub type_name: String,
    pub subject: String,
    pub claims: String,
    pub revocation_list: String,
    pub revocation_index: i64,
    pub suspension_list: Option<String>,
    pub suspension_index: Option<i64>,
    pub status: String,
    pub issued_at: i64,
    pub valid_until: Option<i64>,
    pub format: String,
}

fn credential_row(r: &AnyRow) -> Result<CredentialRow, sqlx::Error> {
    Ok(CredentialRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        type_name: r.try_get("type_name")?,
        subject: r.try_get("subject")?,
        claims: r.try_get("claims")?,
        revocation_list: r.try_get("revocation_list")?,
        revocation_index: r.try_get("revocation_index")?,
        suspension_list: r.try_get("suspension_list")?,
        suspension_index: r.try_get("suspension_index")?,
        status: r.try_get("status")?,
        issued_at: r.try_get("issued_at")?,
        valid_until: r.try_get("valid_until")?,
        format: r.try_get("format")?,
    })
}

const CREDENTIAL_COLUMNS: &str = "id, user_id, type_name, subject, claims, revocation_list, revocation_index, \
     suspension_list, suspension_index, status, issued_at, valid_until, format";

pub async fn insert_credential(c: &mut Conn, r: &CredentialRow) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO issuer_credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    sqlx::query(&sql)
        .bind(&r.id)
        .bind(&r.user_id)
        .bind(&r.type_name)
        .bind(&r.subject)
        .bind(&r.claims)
        .bind(&r.revocation_list)
        .bind(r.revocation_index)
        .bind(&r.suspension_list)
        .bind(r.suspension_index)
        .bind(&r.status)
        .bind(r.issued_at)
        .bind(r.valid_until)
        .bind(&r.format)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn credential(c: &mut Conn, id: &str, user_id: &str) -> Result<Option<CredentialRow>, sqlx::Error> {
    let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM issuer_credentials WHERE id = $1 AND user_id = $2");
    sqlx::query(&sql).bind(id).bind(user_id).fetch_optional(c).await?.as_ref().map(credential_row).transpose()
}

pub async fn credentials(c: &mut Conn, user_id: &str) -> Result<Vec<CredentialRow>, sqlx::Error> {
    let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM issuer_credentials WHERE user_id = $1 ORDER BY issued_at, id");
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(c).await?;
    rows.iter().map(credential_row).collect()
}

/// Whether `user_id` issued `subject` a credential of one of `types` that is active and
/// not expired at `now`.
pub async fn has_active_credential(
    c: &mut Conn,
    user_id: &str,
    subject: &str,
    types: &[String],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let list = (4..4 + types.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT 1 AS found FROM issuer_credentials WHERE user_id = $1 AND subject = $2 AND status = 'active' \
         AND (valid_until IS NULL OR valid_until > $3) AND type_name IN ({list}) LIMIT 1"
    );
    let mut q = sqlx::query(&sql).bind(user_id).bind(subject).bind(now);
    for t in types {
        q = q.bind(t);
    }
    Ok(q.fetch_optional(c).await?.is_some())
}

pub async fn set_status(c: &mut Conn, id: &str, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE issuer_credentials SET status = $1 WHERE id = $2").bind(status).bind(id).execute(c).await?;
    Ok(())
}

// ---- an account moving between nodes (see `crate::moves`) ----

/// An account's name (for the URLs and `did:web` it has on this node).
pub async fn account_name(c: &mut Conn, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM acct_users WHERE id = $1").bind(user_id).fetch_optional(c).await
}

/// A user's own types, every column but the owner.
pub async fn types_of(c: &mut Conn, user_id: &str) -> Result<Vec<MovedType>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, display_name, schema, alg, created_at FROM issuer_types WHERE user_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(c)
    .await
}

pub async fn insert_moved_type(c: &mut Conn, user_id: &str, t: &MovedType) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO issuer_types (id, user_id, name, display_name, schema, alg, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(user_id)
    .bind(&t.name)
    .bind(&t.display_name)
    .bind(&t.schema)
    .bind(&t.alg)
    .bind(t.created_at)
    .execute(c)
    .await?;
    Ok(())
}

/// A status list as stored, every column but the owner.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredList {
    pub id: String,
    pub purpose: String,
    pub bits: Vec<u8>,
    pub issuer_did: Option<String>,
    pub published_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn lists_of(c: &mut Conn, user_id: &str) -> Result<Vec<StoredList>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, purpose, bits, issuer_did, published_url, created_at, updated_at FROM issuer_status_lists \
         WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(c)
    .await
}

pub async fn insert_moved_list(c: &mut Conn, user_id: &str, l: &StoredList) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO issuer_status_lists (id, user_id, purpose, bits, issuer_did, published_url, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&l.id)
    .bind(user_id)
    .bind(&l.purpose)
    .bind(l.bits.clone())
    .bind(&l.issuer_did)
    .bind(&l.published_url)
    .bind(l.created_at)
    .bind(l.updated_at)
    .execute(c)
    .await?;
    Ok(())
}

/// A table whose rows keep their ids when an account moves in.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Types,
    Lists,
    Credentials,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Types => "issuer_types",
            Self::Lists => "issuer_status_lists",
            Self::Credentials => "issuer_credentials",
        }
    }
}

/// Which of `ids` already name a row of `table`.
pub async fn present_ids(c: &mut Conn, table: Table, ids: &[&str]) -> Result<Vec<String>, sqlx::Error> {
    // Bounded statements: SQLite builds before 3.32 allow 999 parameters.
    const CHUNK: usize = 500;
    let mut found = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let params = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT id FROM {} WHERE id IN ({params})", table.name());
        let mut q = sqlx::query_scalar(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        found.extend(q.fetch_all(&mut *c).await?);
    }
    Ok(found)
}

/// The node changed its public URL: each list of the account that had none records the
/// URL its credentials name (`url_prefix` + its id) and the DID it was issued under (the
/// old `did:web`, for a list that recorded none), so it is served as before.
pub async fn keep_list_urls(c: &mut Conn, user_id: &str, url_prefix: &str, old_did: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE issuer_status_lists SET published_url = $1 || id, issuer_did = COALESCE(issuer_did, $2) \
         WHERE user_id = $3 AND published_url IS NULL",
    )
    .bind(url_prefix)
    .bind(old_did)
    .bind(user_id)
    .execute(c)
    .await?;
    Ok(())
}

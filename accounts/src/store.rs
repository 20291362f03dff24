//! The accounts tables (`acct_*`) and every query on them. Portable SQL for both backends.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

pub type Conn = AnyConnection;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub root_key: String,
    /// The recovery key named in advance, if any (multibase Ed25519).
    pub recovery_key: Option<String>,
    /// Whether the account's devices may revoke each other.
    pub devices_may_revoke: bool,
    pub quota: i64,
    pub status: String,
    pub invited_by: Option<String>,
    pub created_at: i64,
    /// The standby node's DID and DIDComm endpoint, when the account has one.
    pub standby: Option<(String, String)>,
}

const USER_COLUMNS: &str = "u.id, u.name, u.root_key, u.recovery_key, u.devices_may_revoke, u.quota, u.status, u.created_at, \
     u.standby_node, u.standby_endpoint, \
     (SELECT p.name FROM acct_invites i JOIN acct_users p ON p.id = i.inviter_id WHERE i.id = u.invite_id) AS invited_by";

fn user_row(r: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        root_key: r.try_get("root_key")?,
        recovery_key: r.try_get("recovery_key")?,
        devices_may_revoke: r.try_get::<i64, _>("devices_may_revoke")? != 0,
        quota: r.try_get("quota")?,
        status: r.try_get("status")?,
        invited_by: r.try_get("invited_by")?,
        created_at: r.try_get("created_at")?,
        standby: r
            .try_get::<Option<String>, _>("standby_node")?
            .zip(r.try_get::<Option<String>, _>("standby_endpoint")?),
    })
}

pub async fn user_by_name(c: &mut Conn, name: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM acct_users u WHERE u.name = $1");
    sqlx::query(&sql).bind(name).fetch_optional(c).await?.as_ref().map(user_row).transpose()
}

pub async fn user_by_id(c: &mut Conn, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM acct_users u WHERE u.id = $1");
    sqlx::query(&sql).bind(id).fetch_optional(c).await?.as_ref().map(user_row).transpose()
}

pub async fn all_users(c: &mut Conn) -> Result<Vec<(UserRow, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, (SELECT COUNT(*) FROM acct_devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL) AS devices \
         FROM acct_users u ORDER BY u.created_at"
    );
    let rows = sqlx::query(&sql).fetch_all(c).await?;
    rows.iter().map(|r| Ok((user_row(r)?, r.try_get("devices")?))).collect()
}

pub async fn count_active_users(c: &mut Conn) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM acct_users WHERE status = 'active'").fetch_one(c).await?.try_get("n")
}

/// Make the caller's later reads of this user consistent with concurrent writers.
/// PostgreSQL locks the row; SQLite's single writer connection already serialises.
pub async fn lock_user(c: &mut Conn, id: &str, postgres: bool) -> Result<(), sqlx::Error> {
    if postgres {
        sqlx::query("SELECT id FROM acct_users WHERE id = $1 FOR UPDATE").bind(id).execute(c).await?;
    }
    Ok(())
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub root_key: &'a str,
    pub quota: i64,
    pub invite_id: &'a str,
    pub now: i64,
}

/// Name, or forget, the account's standby node (see [`UserRow::standby`]).
pub async fn set_standby(c: &mut Conn, user_id: &str, standby: Option<(&str, &str)>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET standby_node = $1, standby_endpoint = $2 WHERE id = $3")
        .bind(standby.map(|s| s.0))
        .bind(standby.map(|s| s.1))
        .bind(user_id)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn insert_user(c: &mut Conn, u: NewUser<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_users (id, name, root_key, quota, invite_id, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'active', $6)",
    )
    .bind(u.id)
    .bind(u.name)
    .bind(u.root_key)
    .bind(u.quota)
    .bind(u.invite_id)
    .bind(u.now)
    .execute(c)
    .await?;
    Ok(())
}

impl UserRow {
    /// The keys that may sign the account's did:webvh log: the root key, and the recovery
    /// key when one is named.
    pub fn update_keys(&self) -> Vec<String> {
        std::iter::once(self.root_key.clone()).chain(self.recovery_key.clone()).collect()
    }

    /// Whether `keys` (a log's update keys) are exactly [`Self::update_keys`], in any order.
    pub fn controls_log(&self, keys: &[String]) -> bool {
        let mut want = self.update_keys();
        let mut got = keys.to_vec();
        want.sort();
        got.sort();
        want == got
    }
}

pub async fn set_recovery_key(c: &mut Conn, user_id: &str, key: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET recovery_key = $1 WHERE id = $2").bind(key).bind(user_id).execute(c).await?;
    Ok(())
}

pub async fn set_root_key(c: &mut Conn, user_id: &str, root_key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET root_key = $1 WHERE id = $2").bind(root_key).bind(user_id).execute(c).await?;
    Ok(())
}

// ---- challenges ----

pub async fn insert_challenge(
    c: &mut Conn,
    id: &str,
    purpose: &str,
    subject: Option<&str>,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO acct_challenges (id, purpose, subject, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(purpose)
        .bind(subject)
        .bind(expires_at)
        .execute(c)
        .await?;
    Ok(())
}

/// Consume a live challenge. True when it existed, matched, and had not expired.
pub async fn take_challenge(
    c: &mut Conn,
    id: &str,
    purpose: &str,
    subject: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM acct_challenges WHERE id = $1 AND purpose = $2 AND expires_at > $3 \
         AND (subject = $4 OR (subject IS NULL AND $4 IS NULL))",
    )
    .bind(id)
    .bind(purpose)
    .bind(now)
    .bind(subject)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ---- invites ----

#[derive(Debug, Clone)]
pub struct InviteRow {
    pub id: String,
    pub quota: i64,
    pub label: Option<String>,
    pub status: String,
    pub used_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

fn invite_row(r: &AnyRow) -> Result<InviteRow, sqlx::Error> {
    Ok(InviteRow {
        id: r.try_get("id")?,
        quota: r.try_get("quota")?,
        label: r.try_get("label")?,
        status: r.try_get("status")?,
        used_by: r.try_get("used_by_name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

const INVITE_COLUMNS: &str = "i.id, i.inviter_id, i.quota, i.label, i.status, i.created_at, i.expires_at, \
     (SELECT u.name FROM acct_users u WHERE u.id = i.used_by) AS used_by_name";

pub async fn invite_by_code_hash(c: &mut Conn, hash: &str) -> Result<Option<InviteRow>, sqlx::Error> {
    let sql = format!("SELECT {INVITE_COLUMNS} FROM acct_invites i WHERE i.code_hash = $1");
    sqlx::query(&sql).bind(hash).fetch_optional(c).await?.as_ref().map(invite_row).transpose()
}

pub async fn invite_by_id(c: &mut Conn, id: &str) -> Result<Option<InviteRow>, sqlx::Error> {
    let sql = format!("SELECT {INVITE_COLUMNS} FROM acct_invites i WHERE i.id = $1");
    sqlx::query(&sql).bind(id).fetch_optional(c).await?.as_ref().map(invite_row).transpose()
}

pub async fn invites_by(c: &mut Conn, inviter_id: Option<&str>) -> Result<Vec<InviteRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {INVITE_COLUMNS} FROM acct_invites i \
         WHERE i.inviter_id = $1 OR (i.inviter_id IS NULL AND $1 IS NULL) ORDER BY i.created_at"
    );
    let rows = sqlx::query(&sql).bind(inviter_id).fetch_all(c).await?;
    rows.iter().map(invite_row).collect()
}

/// Quota held by a user's invites: live open ones and ones used by active accounts.
pub async fn quota_given(c: &mut Conn, inviter_id: &str, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT CAST(COALESCE(SUM(i.quota), 0) AS BIGINT) AS given FROM acct_invites i LEFT JOIN acct_users u ON u.id = i.used_by \
         WHERE i.inviter_id = $1 AND ((i.status = 'open' AND i.expires_at > $2) OR (i.status = 'used' AND u.status = 'active'))",
    )
    .bind(inviter_id)
    .bind(now)
    .fetch_one(c)
    .await?
    .try_get("given")
}

pub struct NewInvite<'a> {
    pub id: &'a str,
    pub code_hash: &'a str,
    pub inviter_id: Option<&'a str>,
    pub quota: i64,
    pub label: Option<&'a str>,
    pub now: i64,
    pub expires_at: i64,
}

pub async fn insert_invite(c: &mut Conn, i: NewInvite<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_invites (id, code_hash, inviter_id, quota, label, status, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7)",
    )
    .bind(i.id)
    .bind(i.code_hash)
    .bind(i.inviter_id)
    .bind(i.quota)
    .bind(i.label)
    .bind(i.now)
    .bind(i.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Mark an open invite used. False if someone else used it first.
pub async fn use_invite(c: &mut Conn, id: &str, user_id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE acct_invites SET status = 'used', used_by = $1, used_at = $2 WHERE id = $3 AND status = 'open'",
    )
    .bind(user_id)
    .bind(now)
    .bind(id)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Mark an open invite used by no account (see `Accounts::spend_invite`).
pub async fn spend_invite(c: &mut Conn, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE acct_invites SET status = 'used', used_at = $1 WHERE id = $2 AND status = 'open'")
        .bind(now)
        .bind(id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn revoke_invite(c: &mut Conn, id: &str, inviter_id: Option<&str>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE acct_invites SET status = 'revoked' WHERE id = $1 AND status = 'open' \
         AND (inviter_id = $2 OR (inviter_id IS NULL AND $2 IS NULL))",
    )
    .bind(id)
    .bind(inviter_id)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn revoke_open_invites_labelled(c: &mut Conn, label: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE acct_invites SET status = 'revoked' WHERE inviter_id IS NULL AND label = $1 AND status = 'open'",
    )
    .bind(label)
    .execute(c)
    .await?;
    Ok(())
}

/// Whether `ancestor_id` is strictly above `user_id` in the invite tree.
pub async fn is_ancestor(c: &mut Conn, ancestor_id: &str, user_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "WITH RECURSIVE chain (user_id, depth) AS ( \
           SELECT i.inviter_id, 1 FROM acct_users u JOIN acct_invites i ON i.id = u.invite_id WHERE u.id = $1 \
           UNION ALL \
           SELECT i.inviter_id, chain.depth + 1 FROM chain \
             JOIN acct_users u ON u.id = chain.user_id JOIN acct_invites i ON i.id = u.invite_id \
           WHERE chain.depth < 256 \
         ) SELECT COUNT(*) AS n FROM chain WHERE user_id = $2",
    )
    .bind(user_id)
    .bind(ancestor_id)
    .fetch_one(c)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Remove an account: tombstone it, end its devices and sessions, destroy its issuing key,
/// revoke its open invites, and hand the accounts it invited to its own inviter.
pub async fn remove_user(c: &mut Conn, user_id: &str, now: i64) -> Result<(), sqlx::Error> {
    let parent: Option<String> =
        sqlx::query("SELECT i.inviter_id FROM acct_users u JOIN acct_invites i ON i.id = u.invite_id WHERE u.id = $1")
            .bind(user_id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.try_get("inviter_id"))
            .transpose()?
            .flatten();
    sqlx::query("UPDATE acct_invites SET status = 'revoked' WHERE inviter_id = $1 AND status = 'open'")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("UPDATE acct_invites SET inviter_id = $1 WHERE inviter_id = $2")
        .bind(parent)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM acct_sessions WHERE user_id = $1").bind(user_id).execute(&mut *c).await?;
    sqlx::query("UPDATE acct_devices SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM acct_issuing_keys WHERE user_id = $1").bind(user_id).execute(&mut *c).await?;
    sqlx::query("DELETE FROM acct_history WHERE user_id = $1").bind(user_id).execute(&mut *c).await?;
    sqlx::query("UPDATE acct_users SET status = 'removed', removed_at = $1 WHERE id = $2")
        .bind(now)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

// ---- issuing keys ----

pub async fn insert_issuing_key(
    c: &mut Conn,
    id: &str,
    user_id: &str,
    algorithm: &str,
    public_key: &str,
    sealed: Vec<u8>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_issuing_keys (id, user_id, algorithm, public_key, sealed_secret, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(user_id)
    .bind(algorithm)
    .bind(public_key)
    .bind(sealed)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn issuing_keys(c: &mut Conn, user_id: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, public_key FROM acct_issuing_keys WHERE user_id = $1 ORDER BY created_at")
        .bind(user_id)
        .fetch_all(c)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("public_key")?))).collect()
}

pub async fn current_issuing_key(
    c: &mut Conn,
    user_id: &str,
    algorithm: &str,
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, sealed_secret FROM acct_issuing_keys WHERE user_id = $1 AND algorithm = $2 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(algorithm)
    .fetch_optional(c)
    .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("sealed_secret")?))).transpose()
}

// ---- devices ----

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub sign_key: String,
    pub agree_key: String,
    pub certificate: String,
    pub cert_expires_at: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The device that revoked it; `None` when the root key did (or it is active).
    pub revoked_by: Option<String>,
}

fn device_row(r: &AnyRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        sign_key: r.try_get("sign_key")?,
        agree_key: r.try_get("agree_key")?,
        certificate: r.try_get("certificate")?,
        cert_expires_at: r.try_get("cert_expires_at")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
    })
}

const DEVICE_COLUMNS: &str =
    "id, user_id, name, sign_key, agree_key, certificate, cert_expires_at, created_at, revoked_at, revoked_by";

pub async fn device(c: &mut Conn, id: &str) -> Result<Option<DeviceRow>, sqlx::Error> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM acct_devices WHERE id = $1");
    sqlx::query(&sql).bind(id).fetch_optional(c).await?.as_ref().map(device_row).transpose()
}

/// Every device an account ever had, active or revoked.
pub async fn device_ids(c: &mut Conn, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT id FROM acct_devices WHERE user_id = $1").bind(user_id).fetch_all(c).await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// The status of the device's account and when the device was revoked, if it was.
pub async fn device_standing(
    c: &mut Conn,
    user_id: &str,
    device_id: &str,
) -> Result<Option<(String, Option<i64>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.status, d.revoked_at FROM acct_devices d JOIN acct_users u ON u.id = d.user_id \
         WHERE d.id = $1 AND d.user_id = $2",
    )
    .bind(device_id)
    .bind(user_id)
    .fetch_optional(c)
    .await?;
    row.map(|r| Ok((r.try_get("status")?, r.try_get("revoked_at")?))).transpose()
}

pub async fn active_devices(c: &mut Conn, user_id: &str) -> Result<Vec<DeviceRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM acct_devices WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at"
    );
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(c).await?;
    rows.iter().map(device_row).collect()
}

pub struct NewDevice<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub sign_key: &'a str,
    pub agree_key: &'a str,
    pub certificate: &'a str,
    pub cert_expires_at: i64,
    pub now: i64,
}

pub async fn insert_device(c: &mut Conn, d: NewDevice<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO acct_devices (id, user_id, name, sign_key, agree_key, certificate, cert_expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(d.id)
    .bind(d.user_id)
    .bind(d.name)
    .bind(d.sign_key)
    .bind(d.agree_key)
    .bind(d.certificate)
    .bind(d.cert_expires_at)
    .bind(d.now)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn recertify_device(
    c: &mut Conn,
    id: &str,
    certificate: &str,
    cert_expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_devices SET certificate = $1, cert_expires_at = $2 WHERE id = $3")
        .bind(certificate)
        .bind(cert_expires_at)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// Revoke a device and end its sessions. False if it was not active.
pub async fn revoke_device(c: &mut Conn, id: &str, user_id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE acct_devices SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .bind(user_id)
            .execute(&mut *c)
            .await?;
    sqlx::query("DELETE FROM acct_sessions WHERE device_id = $1").bind(id).execute(&mut *c).await?;
    Ok(r.rows_affected() == 1)
}

/// Whether an active device of the account has a certificate ending before `at` (ms).
pub async fn certificate_ends_before(c: &mut Conn, user_id: &str, at: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM acct_devices WHERE user_id = $1 AND revoked_at IS NULL AND cert_expires_at < $2",
    )
    .bind(user_id)
    .bind(at)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

/// How many sign-in numbers a device keeps.
const LOGIN_SEQS_KEPT: usize = 64;

/// Note sign-in number `seq` of device `id`: true when it was seen already (a copy of the
/// wallet), else it is kept with the last [`LOGIN_SEQS_KEPT`].
pub async fn note_login_seq(c: &mut Conn, id: &str, seq: i64) -> Result<bool, sqlx::Error> {
    let stored: Option<Option<String>> = sqlx::query_scalar("SELECT login_seqs FROM acct_devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    let mut seqs: Vec<i64> = stored.flatten().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    if seqs.contains(&seq) {
        return Ok(true);
    }
    seqs.push(seq);
    let skip = seqs.len().saturating_sub(LOGIN_SEQS_KEPT);
    let text = serde_json::to_string(&seqs[skip..]).unwrap_or_default();
    sqlx::query("UPDATE acct_devices SET login_seqs = $1 WHERE id = $2").bind(text).bind(id).execute(c).await?;
    Ok(false)
}

/// Record that device `by` (not the root key) revoked device `id`.
pub async fn set_revoked_by(c: &mut Conn, id: &str, by: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_devices SET revoked_by = $1 WHERE id = $2").bind(by).bind(id).execute(c).await?;
    Ok(())
}

/// The account's devices another device revoked, newest first.
pub async fn revoked_by_devices(c: &mut Conn, user_id: &str) -> Result<Vec<DeviceRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM acct_devices WHERE user_id = $1 AND revoked_at IS NOT NULL \
         AND revoked_by IS NOT NULL ORDER BY revoked_at DESC"
    );
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(c).await?;
    rows.iter().map(device_row).collect()
}

/// Make a device another device revoked active again, with a new certificate.
pub async fn reinstate_device(c: &mut Conn, id: &str, certificate: &str, expires_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE acct_devices SET revoked_at = NULL, revoked_by = NULL, certificate = $1, cert_expires_at = $2 \
         WHERE id = $3",
    )
    .bind(certificate)
    .bind(expires_at)
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

/// Whether the account's did:webvh log lags its document: a device another device revoked
/// after the log's last entry.
pub async fn did_log_stale(c: &mut Conn, user_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM acct_devices d WHERE d.user_id = $1 AND d.revoked_by IS NOT NULL \
         AND d.revoked_at >= (SELECT MAX(l.created_at) FROM acct_did_log l WHERE l.user_id = $1)",
    )
    .bind(user_id)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

pub async fn set_devices_may_revoke(c: &mut Conn, user_id: &str, allowed: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET devices_may_revoke = $1 WHERE id = $2")
        .bind(i64::from(allowed))
        .bind(user_id)
        .execute(c)
        .await?;
    Ok(())
}

// ---- sessions ----

pub async fn insert_session(
    c: &mut Conn,
    token_hash: &str,
    user_id: &str,
    device_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO acct_sessions (token_hash, user_id, device_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(token_hash)
        .bind(user_id)
        .bind(device_id)
        .bind(now)
        .bind(expires_at)
        .execute(c)
        .await?;
    Ok(())
}

/// The live session of a token hash: (user id, user name, device id).
pub async fn session(
    c: &mut Conn,
    token_hash: &str,
    now: i64,
) -> Result<Option<(String, String, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.user_id, u.name, s.device_id FROM acct_sessions s \
         JOIN acct_users u ON u.id = s.user_id JOIN acct_devices d ON d.id = s.device_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.status = 'active' AND d.revoked_at IS NULL",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(c)
    .await?;
    row.map(|r| Ok((r.try_get("user_id")?, r.try_get("name")?, r.try_get("device_id")?))).transpose()
}

pub async fn delete_session(c: &mut Conn, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM acct_sessions WHERE token_hash = $1").bind(token_hash).execute(c).await?;
    Ok(())
}

/// Drop expired challenges and sessions. Returns how many rows went.
pub async fn purge_expired(c: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
    let a = sqlx::query("DELETE FROM acct_challenges WHERE expires_at <= $1").bind(now).execute(&mut *c).await?;
    let b = sqlx::query("DELETE FROM acct_sessions WHERE expires_at <= $1").bind(now).execute(&mut *c).await?;
    let moves = purge_expired_moves(c, now).await?;
    Ok(a.rows_affected() + b.rows_affected() + moves)
}

// ---- did:webvh logs ----

/// The account's did:webvh log, one JSON line per entry, in order.
pub async fn did_log(c: &mut Conn, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT entry FROM acct_did_log WHERE user_id = $1 ORDER BY version")
        .bind(user_id)
        .fetch_all(c)
        .await?;
    rows.iter().map(|r| r.try_get("entry")).collect()
}

/// Append entry `version` (1 for the first). The primary key refuses a second writer of
/// the same version.
pub async fn append_did_log(
    c: &mut Conn,
    user_id: &str,
    version: i64,
    entry: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO acct_did_log (user_id, version, entry, created_at) VALUES ($1, $2, $3, $4)")
        .bind(user_id)
        .bind(version)
        .bind(entry)
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}

/// Every issuing key of an account, with its sealed secret (for a move).
pub struct IssuingKeyRow {
    pub id: String,
    pub algorithm: String,
    pub public_key: String,
    pub sealed_secret: Vec<u8>,
    pub created_at: i64,
}

pub async fn all_issuing_keys(c: &mut Conn, user_id: &str) -> Result<Vec<IssuingKeyRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, algorithm, public_key, sealed_secret, created_at FROM acct_issuing_keys \
         WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(IssuingKeyRow {
                id: r.try_get("id")?,
                algorithm: r.try_get("algorithm")?,
                public_key: r.try_get("public_key")?,
                sealed_secret: r.try_get("sealed_secret")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// A moved account's issuing keys sign nothing more here: their secrets are erased (the
/// public keys stay, for the old DID documents).
pub async fn erase_issuing_secrets(c: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_issuing_keys SET sealed_secret = $1 WHERE user_id = $2")
        .bind(Vec::<u8>::new())
        .bind(user_id)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn set_user_status(c: &mut Conn, user_id: &str, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE acct_users SET status = $1 WHERE id = $2").bind(status).bind(user_id).execute(c).await?;
    Ok(())
}

pub async fn delete_user_sessions(c: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM acct_sessions WHERE user_id = $1").bind(user_id).execute(c).await?;
    Ok(())
}

mod history;
mod moves;
mod recovery;
pub use history::*;
pub use moves::*;
pub use recovery::*;

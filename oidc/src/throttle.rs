//! The password sign-in throttle: per account *and* client address, with backoff, and per
//! address as a whole; counted in the database so every replica sees the same counts.
//!
//! A stranger guessing a user's password from one address slows down only their own
//! guesses at that account from that address: the user, from anywhere else, signs in as
//! usual. Each attempt is admitted and counted in one statement (an upsert guarded by
//! `blocked_until`, which the same statement moves forward once the free attempts are spent),
//! so concurrent attempts, on one node or many, cannot slip past the limit. A success clears
//! the account's counter from that address.
//!
//! A per-process map of known blocks is the cheap first line: an address already known to be
//! blocked is refused without a database round trip.

use crate::OidcError;
use axum::http::StatusCode;
use sichat_core::db::Db;
use sichat_core::ids::now_ms;
use sqlx::Row;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Attempts at one account from one address before backoff starts.
pub const FREE_PER_ACCOUNT: i64 = 5;
/// Attempts from one address at any accounts before backoff starts.
pub const FREE_PER_ADDRESS: i64 = 20;
/// The wait after the last free attempt, doubling with each attempt after it.
const FIRST_BACKOFF_MS: i64 = 60_000;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 15 * 60_000;
/// A counter with no attempt for this long starts over.
const FORGET_AFTER_MS: i64 = 24 * 3_600_000;
/// Known blocks kept in memory before the map starts over.
const MAX_REMEMBERED: usize = 100_000;

/// The counter key of an address as a whole (user names are never empty).
const ANY_ACCOUNT: &str = "";

/// Refused: try again at `until` (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub until: i64,
}

impl Throttled {
    pub fn error(self) -> OidcError {
        let minutes = ((self.until - now_ms()).max(0) + 59_999) / 60_000;
        OidcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            format!("too many failed sign-ins from this address: wait {} minute(s) and try again", minutes.max(1)),
        )
    }
}

pub struct PasswordThrottle {
    db: Db,
    /// (account, address) → blocked until (unix ms), as last seen by this process.
    known: Mutex<HashMap<(String, IpAddr), i64>>,
}

/// The `blocked_until` of an attempt numbered by `n` (a SQL expression), made at `$3`.
fn block_after(n: &str, free: i64) -> String {
    let mut ladder = format!("CASE WHEN {n} < {free} THEN 0");
    let mut wait = FIRST_BACKOFF_MS;
    let mut k = free;
    while wait < MAX_BACKOFF_MS {
        ladder.push_str(&format!(" WHEN {n} = {k} THEN $3 + {wait}"));
        wait *= 2;
        k += 1;
    }
    ladder.push_str(&format!(" ELSE $3 + {MAX_BACKOFF_MS} END"));
    ladder
}

impl PasswordThrottle {
    pub fn new(db: Db) -> Self {
        Self { db, known: Mutex::new(HashMap::new()) }
    }

    /// Admit one password attempt at `account` from `addr`, counting it, or refuse it.
    pub async fn admit(&self, account: &str, addr: IpAddr) -> Result<Result<(), Throttled>, OidcError> {
        let now = now_ms();
        for (key, free) in [(ANY_ACCOUNT, FREE_PER_ADDRESS), (account, FREE_PER_ACCOUNT)] {
            if let Some(until) = self.known_block(key, addr, now) {
                return Ok(Err(Throttled { until }));
            }
            if let Err(t) = self.count(key, addr, free, now).await? {
                self.remember(key, addr, t.until);
                return Ok(Err(t));
            }
        }
        Ok(Ok(()))
    }

    /// The attempt succeeded: the account's counter from this address starts over (the
    /// address's own counter gives the attempt back).
    pub async fn succeeded(&self, account: &str, addr: IpAddr) -> Result<(), OidcError> {
        let addr_text = addr.to_string();
        sqlx::query("DELETE FROM oidc_signin_throttle WHERE account = $1 AND addr = $2")
            .bind(account)
            .bind(&addr_text)
            .execute(self.db.pool())
            .await?;
        sqlx::query(
            "UPDATE oidc_signin_throttle SET attempts = attempts - 1, \
             blocked_until = CASE WHEN attempts - 1 < $3 THEN 0 ELSE blocked_until END \
             WHERE account = $1 AND addr = $2 AND attempts > 0",
        )
        .bind(ANY_ACCOUNT)
        .bind(&addr_text)
        .bind(FREE_PER_ADDRESS)
        .execute(self.db.pool())
        .await?;
        if let Ok(mut known) = self.known.lock() {
            known.remove(&(account.to_owned(), addr));
        }
        Ok(())
    }

    /// Housekeeping: forget counters with no attempt for a day.
    pub async fn purge(&self) -> Result<u64, OidcError> {
        let now = now_ms();
        if let Ok(mut known) = self.known.lock() {
            known.retain(|_, until| *until > now);
        }
        let done = sqlx::query("DELETE FROM oidc_signin_throttle WHERE last_at <= $1 AND blocked_until <= $2")
            .bind(now - FORGET_AFTER_MS)
            .bind(now)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Count an attempt in one guarded upsert; refused when the counter is blocked.
    async fn count(
        &self,
        account: &str,
        addr: IpAddr,
        free: i64,
        now: i64,
    ) -> Result<Result<(), Throttled>, OidcError> {
        let next = format!(
            "(CASE WHEN oidc_signin_throttle.last_at <= $3 - {FORGET_AFTER_MS} THEN 1 \
             ELSE oidc_signin_throttle.attempts + 1 END)"
        );
        let sql = format!(
            "INSERT INTO oidc_signin_throttle (account, addr, attempts, blocked_until, last_at) \
             VALUES ($1, $2, 1, {first}, $3) \
             ON CONFLICT (account, addr) DO UPDATE SET attempts = {next}, blocked_until = {block}, last_at = $3 \
             WHERE oidc_signin_throttle.blocked_until <= $3 \
             RETURNING attempts",
            first = block_after("1", free),
            block = block_after(&next, free),
        );
        let addr_text = addr.to_string();
        let admitted =
            sqlx::query(&sql).bind(account).bind(&addr_text).bind(now).fetch_optional(self.db.pool()).await?;
        if admitted.is_some() {
            return Ok(Ok(()));
        }
        let until: i64 = sqlx::query("SELECT blocked_until FROM oidc_signin_throttle WHERE account = $1 AND addr = $2")
            .bind(account)
            .bind(&addr_text)
            .fetch_optional(self.db.pool())
            .await?
            .map(|r| r.try_get("blocked_until"))
            .transpose()?
            .unwrap_or(now);
        Ok(Err(Throttled { until }))
    }

    fn known_block(&self, account: &str, addr: IpAddr, now: i64) -> Option<i64> {
        let known = self.known.lock().ok()?;
        known.get(&(account.to_owned(), addr)).copied().filter(|until| *until > now)
    }

    fn remember(&self, account: &str, addr: IpAddr, until: i64) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= MAX_REMEMBERED {
                known.clear();
            }
            known.insert((account.to_owned(), addr), until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_ladder_doubles_up_to_its_cap() {
        let sql = block_after("n", 5);
        assert!(
            sql.starts_with("CASE WHEN n < 5 THEN 0 WHEN n = 5 THEN $3 + 60000 WHEN n = 6 THEN $3 + 120000"),
            "{sql}"
        );
        assert!(sql.ends_with("ELSE $3 + 900000 END"), "{sql}");
    }
}

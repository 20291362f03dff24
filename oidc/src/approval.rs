//! Sign-in by wallet approval. The sign-in page shows a short code (and a QR code of it);
//! `sichat login approve CODE` fetches what it is approving, asks the user, and sends a JWS
//! by one of the device's keys over the code, the node's challenge and the issuer. The page
//! polls with a secret handle and, once approved, turns the approval into a browser session.
//!
//! An approval is bound to one pending authorization request (or to the account page) and
//! to the browser's CSRF cookie, lives two minutes, and is used once: approving twice, or
//! continuing twice, is refused. Unknown codes count as failures per client address, so
//! codes cannot be guessed in their lifetime: in the database (`oidc_approval_failures`),
//! checked and counted in one statement, so replicas share the limit; a per-process count
//! in front spares the database when one process alone has seen enough. Each code typed
//! takes its guess in a transaction that also looks the code up: a found code rolls it
//! back (no write at all), a wrong one commits it, and concurrent guesses from one address
//! wait for each other, so none passes the limit.

use crate::provider::Provider;
use crate::OidcError;
use axum::http::StatusCode;
use sichat_accounts::protocol::{LoginApprovalClaims, PendingApproval, TYP_LOGIN_APPROVAL};
use sichat_accounts::{AccountError, Accounts};
use sichat_core::ids::{now_ms, random_bytes, random_token, token_hash};
use sichat_core::jws;
use sichat_core::p256key::PublicKey;
use sqlx::{Any, AnyConnection, Row, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a code may be approved and continued.
pub const APPROVAL_TTL_MS: i64 = 2 * 60_000;
/// The longest an approval JWS may live (`exp - iat`), and the clock skew tolerated.
const MAX_APPROVAL_LIFETIME_SECS: i64 = 300;
const MAX_SKEW_SECS: i64 = 60;
/// Unknown or wrong codes allowed per client address in a window.
const MAX_CODE_FAILURES: u32 = 10;
pub(crate) const FAILURE_WINDOW_MS: i64 = 15 * 60_000;
/// Crockford's base32: no I, L, O or U, so a code survives being read aloud.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A guess at a code, taken from its address's limit and not yet decided.
struct Guess {
    tx: Transaction<'static, Any>,
}

impl Guess {
    /// Where the code is looked up: the guess's own transaction.
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The code was found: the guess does not count, and nothing was written.
    async fn found(self) -> Result<(), OidcError> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// A real code, but not usable (already used, expired): the guess counts.
    async fn kept(self) -> Result<(), OidcError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A new approval, as the sign-in page shows it.
pub struct Started {
    /// The browser's secret handle to poll and continue with.
    pub handle: String,
    /// The short code, `XXXX-XXXX`.
    pub code: String,
    /// What the QR code holds: a URL `sichat login approve` accepts.
    pub uri: String,
    pub expires_at: i64,
}

/// Where an approval stands, as the waiting page sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    /// Expired, already used, or unknown.
    Gone,
}

/// An approved sign-in, taken by the browser that started it.
pub struct Approved {
    pub user_id: String,
    pub request_id: Option<String>,
}

pub struct Approvals {
    op: Arc<Provider>,
    accounts: Arc<Accounts>,
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

/// 40 random bits as `XXXX-XXXX` (each byte's low 5 bits: uniform over 32 symbols).
pub(crate) fn new_code() -> String {
    let bytes = random_bytes::<8>();
    let chars: String = bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// A code as typed or scanned, in its canonical `XXXX-XXXX` form: case, dashes and spaces
/// do not matter, and O, I, L read as 0, 1, 1. Also accepts the URL of the QR code.
pub fn normalize_code(input: &str) -> Option<String> {
    let input = input.trim();
    let raw = match url::Url::parse(input) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())?
        }
        _ => input.to_owned(),
    };
    let mut out = String::with_capacity(8);
    for c in raw.chars().filter(|c| !matches!(c, '-' | ' ')) {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == 8).then(|| format!("{}-{}", &out[..4], &out[4..]))
}

fn refused(status: StatusCode, code: &'static str, why: impl Into<String>) -> OidcError {
    OidcError::new(status, code, why)
}

fn unknown_code() -> OidcError {
    refused(
        StatusCode::NOT_FOUND,
        "unknown_code",
        "no sign-in is waiting for this code: check it, or reload the sign-in page for a new one",
    )
}

impl Approvals {
    pub fn new(op: Arc<Provider>, accounts: Arc<Accounts>) -> Self {
        Self { op, accounts, failures: Mutex::new(HashMap::new()) }
    }

    /// A fresh code for a browser: bound to `request_id` (none: the account page) and to the
    /// browser's CSRF cookie `csrf`.
    pub async fn start(&self, request_id: Option<&str>, csrf: &str) -> Result<Started, OidcError> {
        let now = now_ms();
        let handle = random_token();
        let expires_at = now + APPROVAL_TTL_MS;
        // Live codes are few and 40 bits wide; a clash with an old row just draws again.
        for _ in 0..3 {
            let code = new_code();
            let inserted = sqlx::query(
                "INSERT INTO oidc_approvals (handle_hash, code, challenge, request_id, csrf, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(token_hash(&handle))
            .bind(&code)
            .bind(random_token())
            .bind(request_id)
            .bind(csrf)
            .bind(now)
            .bind(expires_at)
            .execute(self.op.db().pool())
            .await;
            match inserted {
                Ok(_) => {
                    let uri = format!("{}?code={code}", self.op.url("oidc/approve"));
                    return Ok(Started { handle, code, uri, expires_at });
                }
                Err(e) if sichat_core::db::is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OidcError::internal("could not draw a free approval code"))
    }

    fn too_many() -> OidcError {
        refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many unknown codes from your address: wait 15 minutes and try again",
        )
    }

    /// The cheap first line: this process alone has seen too many failures from `ip`.
    fn throttled_here(&self, ip: &str) -> Result<(), OidcError> {
        let now = now_ms();
        let mut f = self.failures.lock().map_err(OidcError::internal)?;
        f.retain(|_, (_, since)| now - *since < FAILURE_WINDOW_MS);
        match f.get(ip) {
            Some((n, _)) if *n >= MAX_CODE_FAILURES => Err(Self::too_many()),
            _ => Ok(()),
        }
    }

    /// Take one guess for `ip` from the limit every process shares: counted as a failure in
    /// the database, in the same statement that checks the limit, so concurrent guesses on
    /// any number of replicas cannot pass it. The code is looked up on the guess's
    /// connection; [`Guess::found`] hands the guess back, [`Self::missed`] keeps it.
    async fn take_guess(&self, ip: &str) -> Result<Guess, OidcError> {
        self.throttled_here(ip)?;
        let mut tx = self.op.db().pool().begin().await?;
        let now = now_ms();
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO oidc_approval_failures (address, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (address) DO UPDATE SET \
             failures = CASE WHEN oidc_approval_failures.window_start <= $3 THEN 1 \
                        ELSE oidc_approval_failures.failures + 1 END, \
             window_start = CASE WHEN oidc_approval_failures.window_start <= $3 THEN $2 \
                            ELSE oidc_approval_failures.window_start END \
             RETURNING failures",
        )
        .bind(ip)
        .bind(now)
        .bind(now - FAILURE_WINDOW_MS)
        .fetch_one(&mut *tx)
        .await?;
        if failures > i64::from(MAX_CODE_FAILURES) {
            // Refused before it was tried: no failure, nothing written (else right codes
            // typed at once behind one address would lock it out for good).
            tx.rollback().await?;
            return Err(Self::too_many());
        }
        Ok(Guess { tx })
    }

    /// The guess found no code (or a wrong one): it counts.
    async fn missed(&self, guess: Guess, ip: &str) -> Result<(), OidcError> {
        guess.tx.commit().await?;
        self.note_failure(ip);
        Ok(())
    }

    fn note_failure(&self, ip: &str) {
        if let Ok(mut f) = self.failures.lock() {
            let e = f.entry(ip.to_owned()).or_insert((0, now_ms()));
            e.0 += 1;
        }
        metrics::counter!("sichat_oidc_approval_failures_total").increment(1);
    }

    /// What a wallet is about to approve: the site, where the answer goes, and the node.
    pub async fn pending(&self, code: &str, ip: &str) -> Result<PendingApproval, OidcError> {
        self.throttled_here(ip)?;
        let Some(code) = normalize_code(code) else {
            self.note_failure(ip);
            return Err(OidcError::bad("invalid_code", "a code is 8 letters and digits, like ABCD-1234"));
        };
        let mut guess = self.take_guess(ip).await?;
        let row = sqlx::query(
            "SELECT challenge, request_id, expires_at FROM oidc_approvals \
             WHERE code = $1 AND expires_at > $2 AND approved_at IS NULL",
        )
        .bind(&code)
        .bind(now_ms())
        .fetch_optional(guess.conn())
        .await?;
        let Some(row) = row else {
            // A device's user code (RFC 8628) is approved the same way.
            if let Some(device) = Provider::pending_device(guess.conn(), &code).await? {
                guess.found().await?;
                return self.device_shown(&device).await;
            }
            self.missed(guess, ip).await?;
            return Err(unknown_code());
        };
        guess.found().await?;
        let request_id: Option<String> = row.try_get("request_id")?;
        let mut out = PendingApproval {
            code,
            challenge: row.try_get("challenge")?,
            node: self.op.issuer().to_owned(),
            site: None,
            redirect_host: None,
            scope: None,
            expires_at: row.try_get("expires_at")?,
        };
        if let Some(id) = request_id {
            let pending = self.op.pending(&id).await?.ok_or_else(unknown_code)?;
            out.site = Some(pending.client.name().to_owned());
            out.redirect_host =
                url::Url::parse(&pending.params.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned));
            out.scope = Some(pending.params.scope);
        }
        Ok(out)
    }

    /// Check a wallet's approval and record it. Nothing changes unless every check passes.
    pub async fn approve(&self, approval: &str, ip: &str) -> Result<PendingApproval, OidcError> {
        self.throttled_here(ip)?;
        let invalid = |why: String| refused(StatusCode::UNAUTHORIZED, "invalid_approval", why);
        let header = jws::header_of(approval).map_err(|e| OidcError::bad("invalid_request", e.to_string()))?;
        let kid = header.get("kid").and_then(|k| k.as_str()).ok_or_else(|| {
            OidcError::bad("invalid_request", "the approval's header has no kid naming the device key")
        })?;
        let (user_id, device_id, key) = self.accounts.authentication_key(kid).await.map_err(|e| match e {
            AccountError::Internal(_) => OidcError::internal(e),
            AccountError::CertificateExpired => {
                invalid("this device's certificate has expired: bless the device again with your root key".into())
            }
            other => invalid(format!("{kid} is not an active device key of an account on this node ({other})")),
        })?;
        let payload =
            jws::verify_signature(approval, &PublicKey::Ed25519(key), TYP_LOGIN_APPROVAL).map_err(|e| match e {
                sichat_core::CoreError::BadSignature => {
                    invalid(format!("the signature does not verify with {kid}: this approval is forged"))
                }
                other => invalid(format!("not a login approval: {other}")),
            })?;
        let claims: LoginApprovalClaims =
            serde_json::from_slice(&payload).map_err(|e| invalid(format!("the approval's claims: {e}")))?;
        let did = kid.split_once('#').map(|(d, _)| d).unwrap_or_default();
        if claims.iss != did {
            return Err(invalid(format!("iss {} is not the DID of {kid}", claims.iss)));
        }
        if claims.aud != self.op.issuer() {
            return Err(invalid(format!(
                "the approval is for {}, not for this node ({})",
                claims.aud,
                self.op.issuer()
            )));
        }
        let now_secs = now_ms() / 1000;
        if claims.exp <= now_secs {
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                "expired_approval",
                "the approval has expired: run `sichat login approve` again",
            ));
        }
        if claims.iat > now_secs + MAX_SKEW_SECS || claims.exp - claims.iat > MAX_APPROVAL_LIFETIME_SECS {
            return Err(invalid("iat is in the future or the approval lives longer than 5 minutes".into()));
        }
        let Some(code) = normalize_code(&claims.code) else {
            self.note_failure(ip);
            return Err(OidcError::bad("invalid_code", "the approval's code is not a sign-in code"));
        };
        let mut guess = self.take_guess(ip).await?;
        let now = now_ms();
        let row = sqlx::query("SELECT challenge, expires_at, approved_at FROM oidc_approvals WHERE code = $1")
            .bind(&code)
            .fetch_optional(guess.conn())
            .await?;
        let Some(row) = row else {
            return self.approve_device(guess, &code, &claims.challenge, &user_id, &device_id, ip).await;
        };
        if row.try_get::<Option<i64>, _>("approved_at")?.is_some() {
            guess.kept().await?;
            return Err(refused(
                StatusCode::CONFLICT,
                "already_used",
                "this code was already approved: an approval counts once",
            ));
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            guess.kept().await?;
            return Err(refused(
                StatusCode::GONE,
                "expired_code",
                "the code has expired: reload the sign-in page for a new one",
            ));
        }
        if row.try_get::<String, _>("challenge")? != claims.challenge {
            self.missed(guess, ip).await?;
            return Err(invalid("the challenge does not match this code's".into()));
        }
        guess.found().await?;
        let shown = self.pending(&code, ip).await?;
        let done = sqlx::query(
            "UPDATE oidc_approvals SET approved_at = $1, user_id = $2, device_id = $3 \
             WHERE code = $4 AND approved_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&user_id)
        .bind(&device_id)
        .bind(&code)
        .execute(self.op.db().pool())
        .await?;
        if done.rows_affected() != 1 {
            return Err(refused(StatusCode::CONFLICT, "already_used", "this code was already approved"));
        }
        metrics::counter!("sichat_oidc_approvals_total").increment(1);
        tracing::info!(device = %device_id, "sign-in approved by a wallet");
        Ok(shown)
    }

    /// What the wallet shows for a device's code: the device's client and what it asks.
    async fn device_shown(&self, device: &crate::provider::DeviceGrant) -> Result<PendingApproval, OidcError> {
        let client = self.op.client(&device.client_id).await?.ok_or_else(unknown_code)?;
        Ok(PendingApproval {
            code: device.user_code.clone(),
            challenge: device.challenge.clone(),
            node: self.op.issuer().to_owned(),
            site: Some(format!("{} (a device)", client.name())),
            redirect_host: None,
            scope: Some(device.scope.clone()),
            expires_at: device.expires_at,
        })
    }

    /// The wallet approved a device's user code: the device may redeem its grant.
    async fn approve_device(
        &self,
        mut guess: Guess,
        code: &str,
        challenge: &str,
        user_id: &str,
        device_id: &str,
        ip: &str,
    ) -> Result<PendingApproval, OidcError> {
        let Some(device) = Provider::pending_device(guess.conn(), code).await? else {
            self.missed(guess, ip).await?;
            return Err(unknown_code());
        };
        if device.challenge != challenge {
            self.missed(guess, ip).await?;
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                "invalid_approval",
                "the challenge does not match this code's",
            ));
        }
        guess.found().await?;
        let shown = self.device_shown(&device).await?;
        let how = crate::amr::SignIn::WalletApproval.stored();
        let approval = crate::provider::DeviceApproval {
            id: device.id.clone(),
            user_id: user_id.to_owned(),
            auth_time: now_ms(),
            amr: Some(how),
            scope: device.scope.clone(),
            request: None,
        };
        if !self.op.approve_device(approval).await? {
            return Err(refused(StatusCode::CONFLICT, "already_used", "this code was already approved or refused"));
        }
        tracing::info!(device = %device_id, "a device's sign-in approved by a wallet");
        Ok(shown)
    }

    /// A device's user code typed on `/oidc/device`, counted against `ip` like any code.
    pub async fn device(&self, code: &str, ip: &str) -> Result<crate::provider::DeviceGrant, OidcError> {
        self.throttled_here(ip)?;
        let Some(code) = normalize_code(code) else {
            self.note_failure(ip);
            return Err(OidcError::bad("invalid_code", "a code is 8 letters and digits, like ABCD-1234"));
        };
        let mut guess = self.take_guess(ip).await?;
        match Provider::pending_device(guess.conn(), &code).await? {
            Some(device) => {
                guess.found().await?;
                Ok(device)
            }
            None => {
                self.missed(guess, ip).await?;
                Err(refused(
                    StatusCode::NOT_FOUND,
                    "unknown_code",
                    "no device is waiting for this code: check the code on the device, or start again there",
                ))
            }
        }
    }

    /// Where the approval behind a browser's handle stands.
    pub async fn status(&self, handle: &str) -> Result<Status, OidcError> {
        let row = sqlx::query("SELECT expires_at, approved_at, consumed_at FROM oidc_approvals WHERE handle_hash = $1")
            .bind(token_hash(handle))
            .fetch_optional(self.op.db().pool())
            .await?;
        let Some(row) = row else { return Ok(Status::Gone) };
        if row.try_get::<Option<i64>, _>("consumed_at")?.is_some() || row.try_get::<i64, _>("expires_at")? <= now_ms() {
            return Ok(Status::Gone);
        }
        Ok(match row.try_get::<Option<i64>, _>("approved_at")? {
            Some(_) => Status::Approved,
            None => Status::Pending,
        })
    }

    /// Take an approved sign-in for the browser holding `handle` and the CSRF cookie `csrf`:
    /// once only, and only for the request it was made for.
    pub async fn take(&self, handle: &str, request_id: Option<&str>, csrf: &str) -> Result<Approved, OidcError> {
        let hash = token_hash(handle);
        let now = now_ms();
        let row = sqlx::query(
            "SELECT request_id, csrf, user_id FROM oidc_approvals WHERE handle_hash = $1 AND approved_at IS NOT NULL \
             AND consumed_at IS NULL AND expires_at > $2",
        )
        .bind(&hash)
        .bind(now)
        .fetch_optional(self.op.db().pool())
        .await?;
        let gone = || {
            refused(
                StatusCode::BAD_REQUEST,
                "not_approved",
                "this code was not approved, has expired, or was used: get a new code",
            )
        };
        let row = row.ok_or_else(gone)?;
        let bound: Option<String> = row.try_get("request_id")?;
        if bound.as_deref() != request_id || row.try_get::<String, _>("csrf")? != csrf {
            return Err(refused(StatusCode::FORBIDDEN, "wrong_browser", "this approval belongs to another sign-in"));
        }
        let user_id: Option<String> = row.try_get("user_id")?;
        let user_id = user_id.ok_or_else(gone)?;
        let taken =
            sqlx::query("UPDATE oidc_approvals SET consumed_at = $1 WHERE handle_hash = $2 AND consumed_at IS NULL")
                .bind(now)
                .bind(&hash)
                .execute(self.op.db().pool())
                .await?;
        if taken.rows_affected() != 1 {
            return Err(gone());
        }
        Ok(Approved { user_id, request_id: bound })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_canonical_and_forgiving() {
        let c = new_code();
        assert_eq!(c.len(), 9);
        assert_eq!(normalize_code(&c).as_deref(), Some(c.as_str()));
        assert_eq!(normalize_code(&c.to_lowercase().replace('-', " ")).as_deref(), Some(c.as_str()));
        assert_eq!(normalize_code("abcd-efgo").as_deref(), Some("ABCD-EFG0"));
        assert_eq!(normalize_code("il00 1111").as_deref(), Some("1100-1111"));
        assert_eq!(normalize_code("https://id.example.org/oidc/approve?code=ab12-cd34").as_deref(), Some("AB12-CD34"));
        for bad in ["", "ABCD-EFG", "ABCD-EFGHJ", "ABCD-EFGU", "ÄBCD-EFGH", "https://x.org/oidc/approve"] {
            assert_eq!(normalize_code(bad), None, "{bad}");
        }
    }
}

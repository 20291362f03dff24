//! The device authorization grant (RFC 8628), for TVs, CLIs and headless apps:
//! `POST /oidc/device_authorization` gives the device a `device_code` to poll the token
//! endpoint with and a short `user_code` for its user. The user approves the code on
//! `/oidc/device` (the sign-in page in any of its ways, then a consent that names the
//! device's client; see [`crate::device`]) or with `sichat login approve CODE`
//! ([`crate::approval`]). The device then polls for its tokens once.
//!
//! User codes are 40 random bits (`XXXX-XXXX`, Crockford base32) living ten minutes; wrong
//! codes count against the address as wallet approval codes do, so they cannot be guessed.

use super::*;

/// How long a device code may be approved and redeemed.
pub const DEVICE_TTL_MS: i64 = 10 * 60_000;
/// The polling interval a device starts with, and what `slow_down` adds (RFC 8628 §3.5).
const INTERVAL_MS: i64 = 5_000;
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A grant waiting for its user, as the pages and the wallet see it.
#[derive(Debug, Clone)]
pub struct DeviceGrant {
    pub id: String,
    pub user_code: String,
    pub challenge: String,
    pub client_id: String,
    pub scope: String,
    pub expires_at: i64,
}

impl Provider {
    /// `POST /oidc/device_authorization` for an authenticated client.
    pub async fn device_authorization(
        &self,
        client: &Client,
        form: &DeviceAuthorizationRequest,
    ) -> Result<DeviceAuthorization, OidcError> {
        if !client.metadata.grant_types.iter().any(|g| g == DEVICE_CODE_GRANT) {
            return Err(OidcError::bad(
                "unauthorized_client",
                format!("this client did not register {DEVICE_CODE_GRANT}"),
            ));
        }
        let asked = form.scope.as_deref().unwrap_or("openid");
        let scopes = scope_set(asked);
        if !scopes.contains(&"openid") {
            return Err(OidcError::bad("invalid_scope", "scope must include openid"));
        }
        let refreshable = client.metadata.grant_types.iter().any(|g| g == "refresh_token");
        let scope: Vec<&str> =
            scopes.into_iter().filter(|s| SCOPES.contains(s) && (*s != "offline_access" || refreshable)).collect();
        let device_code = random_token();
        let now = now_ms();
        for _ in 0..3 {
            let user_code = crate::approval::new_code();
            let inserted = sqlx::query(
                "INSERT INTO oidc_device_grants (id, device_code_hash, user_code, challenge, client_id, scope, status, \
                 interval_ms, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)",
            )
            .bind(new_id())
            .bind(token_hash(&device_code))
            .bind(&user_code)
            .bind(random_token())
            .bind(&client.id)
            .bind(scope.join(" "))
            .bind(INTERVAL_MS)
            .bind(now)
            .bind(now + DEVICE_TTL_MS)
            .execute(self.db.pool())
            .await;
            match inserted {
                Ok(_) => {
                    let verification_uri = self.url("oidc/device");
                    return Ok(DeviceAuthorization {
                        verification_uri_complete: format!("{verification_uri}?user_code={user_code}"),
                        device_code,
                        user_code,
                        verification_uri,
                        expires_in: DEVICE_TTL_MS / 1000,
                        interval: INTERVAL_MS / 1000,
                    });
                }
                Err(e) if sichat_core::db::is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OidcError::internal("could not draw a free user code"))
    }

    /// The grant waiting for `user_code` (canonical form), if it is pending and live.
    pub async fn pending_device(&self, user_code: &str) -> Result<Option<DeviceGrant>, OidcError> {
        let row = sqlx::query(
            "SELECT id, user_code, challenge, client_id, scope, expires_at FROM oidc_device_grants \
             WHERE user_code = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(user_code)
        .bind(now_ms())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok(DeviceGrant {
                id: r.try_get("id")?,
                user_code: r.try_get("user_code")?,
                challenge: r.try_get("challenge")?,
                client_id: r.try_get("client_id")?,
                scope: r.try_get("scope")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// The authorization request a device grant becomes for the sign-in and consent pages.
    pub fn device_request(grant: &DeviceGrant) -> AuthParams {
        AuthParams {
            client_id: grant.client_id.clone(),
            scope: grant.scope.clone(),
            device: Some(DeviceRequest { id: grant.id.clone(), user_code: grant.user_code.clone() }),
            ..AuthParams::default()
        }
    }

    /// The user approved the device: it may redeem its code once. False when the grant is
    /// no longer pending (approved or denied already, or expired).
    pub async fn approve_device(
        &self,
        id: &str,
        user_id: &str,
        auth_time: i64,
        amr: Option<&str>,
    ) -> Result<bool, OidcError> {
        let done = sqlx::query(
            "UPDATE oidc_device_grants SET status = 'approved', user_id = $1, auth_time = $2, amr = $3 \
             WHERE id = $4 AND status = 'pending' AND expires_at > $5",
        )
        .bind(user_id)
        .bind(auth_time)
        .bind(amr)
        .bind(id)
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        metrics::counter!("sichat_oidc_device_decisions_total", "decision" => "approved").increment(1);
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let client_id: Option<String> = sqlx::query_scalar("SELECT client_id FROM oidc_device_grants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let mut c = self.db.pool().acquire().await?;
        super::activity::record(&mut c, user_id, client_id.as_deref(), amr, None, now_ms()).await?;
        Ok(true)
    }

    pub async fn deny_device(&self, id: &str) -> Result<(), OidcError> {
        sqlx::query("UPDATE oidc_device_grants SET status = 'denied' WHERE id = $1 AND status = 'pending'")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        metrics::counter!("sichat_oidc_device_decisions_total", "decision" => "denied").increment(1);
        Ok(())
    }

    /// The token endpoint's `device_code` grant: pending, slow down, denied, expired, or
    /// the tokens, once.
    pub(super) async fn device_grant(
        &self,
        client: &Client,
        form: &TokenRequest,
        proof: Option<&Proof>,
    ) -> Result<TokenResponse, OidcError> {
        let code =
            form.device_code.as_deref().ok_or_else(|| OidcError::bad("invalid_request", "device_code is required"))?;
        let now = now_ms();
        let row = sqlx::query(
            "SELECT id, client_id, scope, status, user_id, auth_time, amr, interval_ms, last_polled_at, expires_at \
             FROM oidc_device_grants WHERE device_code_hash = $1",
        )
        .bind(token_hash(code))
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| invalid_grant("unknown device_code"))?;
        if row.try_get::<String, _>("client_id")? != client.id {
            return Err(invalid_grant("the device_code was issued to another client"));
        }
        let id: String = row.try_get("id")?;
        let status: String = row.try_get("status")?;
        if status == "used" {
            return Err(invalid_grant("the device_code was already redeemed"));
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Err(OidcError::bad("expired_token", "the device_code has expired: start again"));
        }
        // A poll sooner than the interval slows the device down for good (RFC 8628 §3.5).
        let interval: i64 = row.try_get("interval_ms")?;
        let last: Option<i64> = row.try_get("last_polled_at")?;
        let too_soon = last.is_some_and(|l| now - l < interval);
        let new_interval = if too_soon { interval + INTERVAL_MS } else { interval };
        sqlx::query("UPDATE oidc_device_grants SET last_polled_at = $1, interval_ms = $2 WHERE id = $3")
            .bind(now)
            .bind(new_interval)
            .bind(&id)
            .execute(self.db.pool())
            .await?;
        if too_soon {
            return Err(OidcError::bad("slow_down", format!("poll at most every {} seconds", new_interval / 1000)));
        }
        match status.as_str() {
            "pending" => return Err(OidcError::bad("authorization_pending", "the user has not approved the code yet")),
            "denied" => return Err(OidcError::bad("access_denied", "the user refused the device")),
            _ => {}
        }
        let user_id: Option<String> = row.try_get("user_id")?;
        let user_id = user_id.ok_or_else(|| invalid_grant("the grant names no user"))?;
        if self.accounts.account(&user_id).await.is_err() {
            return Err(invalid_grant("the account is gone"));
        }
        let scope: String = row.try_get("scope")?;
        let amr: Option<String> = row.try_get("amr")?;
        let grant = Grant {
            user_id: Some(&user_id),
            scope: &scope,
            family: &id,
            code_hash: None,
            auth_time: row.try_get("auth_time")?,
            amr: amr.as_deref(),
            sid: None,
            proof,
        };
        self.token_response(Spend::Device { id: id.clone(), at: now }, client, &grant, None).await
    }
}

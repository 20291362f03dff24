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

/// A user's approval of a device grant.
#[derive(Debug, Clone)]
pub struct DeviceApproval {
    /// The grant.
    pub id: String,
    pub user_id: String,
    pub auth_time: i64,
    /// How the user signed in (stored `amr`).
    pub amr: Option<String>,
    /// What the device asked for, consented to.
    pub scope: String,
    /// The pending authorization request of the pages, ended with the approval.
    pub request: Option<String>,
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
            let grant = Arc::new(store::device::NewGrant {
                id: new_id(),
                device_code_hash: token_hash(&device_code),
                user_code: user_code.clone(),
                challenge: random_token(),
                client_id: client.id.clone(),
                scope: scope.join(" "),
                interval_ms: INTERVAL_MS,
                created_at: now,
                expires_at: now + DEVICE_TTL_MS,
            });
            let inserted = self
                .writer
                .commit(move |c| {
                    let grant = grant.clone();
                    Box::pin(async move { store::device::insert(c, &grant).await })
                })
                .await;
            match inserted {
                Ok(()) => {
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

    /// The grant waiting for `user_code` (canonical form), if it is pending and live: read
    /// on `c`, the connection of the guess at the code ([`crate::approval`]).
    pub async fn pending_device(
        c: &mut sqlx::AnyConnection,
        user_code: &str,
    ) -> Result<Option<DeviceGrant>, OidcError> {
        Ok(store::device::pending(c, user_code, now_ms()).await?)
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

    /// The user approved the device: it may redeem its code once, its client keeps the
    /// consent, the sign-in is listed, and the pending request the pages made (if any)
    /// ends, all in one transaction. False when the grant is no longer pending (approved or
    /// denied already, or expired): then nothing changes.
    pub async fn approve_device(&self, a: DeviceApproval) -> Result<bool, OidcError> {
        let a = Arc::new(a);
        let done = self
            .writer
            .commit(move |c| {
                let a = a.clone();
                Box::pin(async move { approve_in(c, &a, now_ms()).await })
            })
            .await?;
        if done {
            metrics::counter!("sichat_oidc_device_decisions_total", "decision" => "approved").increment(1);
        }
        Ok(done)
    }

    pub async fn deny_device(&self, id: &str) -> Result<(), OidcError> {
        store::device::deny(&self.db, id).await?;
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
        let row = store::device::by_device_code(&self.db, &token_hash(code))
            .await?
            .ok_or_else(|| invalid_grant("unknown device_code"))?;
        if row.client_id != client.id {
            return Err(invalid_grant("the device_code was issued to another client"));
        }
        let (id, status) = (&row.id, row.status.as_str());
        if status == "used" {
            return Err(invalid_grant("the device_code was already redeemed"));
        }
        if row.expires_at <= now {
            return Err(OidcError::bad("expired_token", "the device_code has expired: start again"));
        }
        // A poll sooner than the interval slows the device down for good (RFC 8628 §3.5).
        let interval = row.interval_ms;
        let too_soon = row.last_polled_at.is_some_and(|l| now - l < interval);
        let new_interval = if too_soon { interval + INTERVAL_MS } else { interval };
        // An approved grant polled in time is spent below, in the tokens' own transaction:
        // no poll to remember.
        if too_soon || status != "approved" {
            store::device::polled(&self.db, id, now, new_interval).await?;
        }
        if too_soon {
            return Err(OidcError::bad("slow_down", format!("poll at most every {} seconds", new_interval / 1000)));
        }
        match status {
            "pending" => return Err(OidcError::bad("authorization_pending", "the user has not approved the code yet")),
            "denied" => return Err(OidcError::bad("access_denied", "the user refused the device")),
            _ => {}
        }
        let user_id = row.user_id.as_deref().ok_or_else(|| invalid_grant("the grant names no user"))?;
        if self.accounts.account(user_id).await.is_err() {
            return Err(invalid_grant("the account is gone"));
        }
        let grant = Grant {
            user_id: Some(user_id),
            scope: &row.scope,
            family: id,
            code_hash: None,
            auth_time: row.auth_time,
            amr: row.amr.as_deref(),
            sid: None,
            proof,
        };
        self.token_response(Spend::Device { id: id.clone(), at: now }, client, &grant, None).await
    }
}

/// [`Provider::approve_device`]'s writes, in the caller's transaction.
async fn approve_in(c: &mut sqlx::AnyConnection, a: &DeviceApproval, now: i64) -> Result<bool, sqlx::Error> {
    let approved = store::device::approve(c, &a.id, &a.user_id, a.auth_time, a.amr.as_deref(), now).await?;
    let Some(client_id) = approved else { return Ok(false) };
    store::consents::add(c, &a.user_id, &client_id, &a.scope, now).await?;
    if let Some(request) = &a.request {
        store::requests::delete(c, request).await?;
    }
    store::activity::record(c, &a.user_id, Some(&client_id), a.amr.as_deref(), None, now).await?;
    Ok(true)
}

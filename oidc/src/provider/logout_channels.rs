//! Telling sites a user signed out: OpenID Connect Back-Channel Logout 1.0 and Front-Channel
//! Logout 1.0.
//!
//! Each browser session has a `sid` ([`sid_of`]) that its ID tokens carry, and the sites it
//! signed in to are listed (`oidc_session_clients`, written with each code). When the
//! session ends at the node (`/oidc/logout`, the account page's sign-out), when the user
//! signs out everywhere, or when they withdraw a site's consent, a logout notice per site
//! goes into `oidc_logout_notices` in the same transaction; [`Provider::run_logouts`] posts
//! each as a signed logout token (`typ` `logout+jwt`) to the site's
//! `backchannel_logout_uri`, retrying with back-off, so a notice survives a restart. Sites
//! with a `frontchannel_logout_uri` are loaded in iframes of the signed-out page.

use super::*;
use sqlx::AnyConnection;

/// The `events` member of a logout token.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Notices sent per round, and how often a round runs when nothing wakes it.
const BATCH: i64 = 50;
const ROUND: std::time::Duration = std::time::Duration::from_secs(5);
/// Attempts before a notice is dropped (the last about a day after the first).
const MAX_ATTEMPTS: i64 = 12;
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;

/// Notices for the sites the browser sessions `sessions` signed in to, and those sessions'
/// site lists gone. In the caller's transaction.
pub(crate) async fn notify_sessions(c: &mut AnyConnection, sessions: &[String], now: i64) -> Result<(), sqlx::Error> {
    for session in sessions {
        for site in store::sessions::sites_with_user(c, session).await? {
            store::logouts::insert(c, &site.client_id, &site.user_id, Some(&site.sid), now).await?;
        }
        store::sessions::forget_sites(c, session).await?;
    }
    Ok(())
}

/// The browser sessions of `user_id`, but `keep`: [`store::sessions::of_user`].
pub(crate) use crate::store::sessions::of_user as sessions_of;

impl Provider {
    /// End the browser session of cookie `token`: the sites it signed in to are told (back
    /// channel), and the front-channel logout URLs of those that asked for one are returned
    /// for the signed-out page to load.
    pub async fn end_session(&self, token: &str) -> Result<Vec<String>, OidcError> {
        let hash = token_hash(token);
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let sites = store::sessions::sites(&mut tx, &hash).await?;
        notify_sessions(&mut tx, std::slice::from_ref(&hash), now).await?;
        store::sessions::delete(&mut tx, &hash).await?;
        tx.commit().await?;
        self.logouts_due.notify_one();
        let mut frames = Vec::new();
        for store::sessions::Site { client_id, sid } in sites {
            let Some(client) = self.client(&client_id).await? else { continue };
            if let Some(uri) = &client.metadata.frontchannel_logout_uri {
                if let Ok(mut u) = url::Url::parse(uri) {
                    u.query_pairs_mut().append_pair("iss", &self.issuer).append_pair("sid", &sid);
                    frames.push(u.to_string());
                }
            }
        }
        Ok(frames)
    }

    /// A user withdrew `client_id`'s consent: it is told for each session it had, or once
    /// with no `sid`.
    pub(super) async fn notify_consent_withdrawn(
        &self,
        c: &mut AnyConnection,
        user_id: &str,
        client_id: &str,
    ) -> Result<(), OidcError> {
        let now = now_ms();
        let sids = store::sessions::sids_at(c, user_id, client_id).await?;
        if sids.is_empty() {
            store::logouts::insert(c, client_id, user_id, None, now).await?;
        }
        for sid in &sids {
            store::logouts::insert(c, client_id, user_id, Some(sid), now).await?;
        }
        store::sessions::forget_site(c, user_id, client_id).await?;
        Ok(())
    }

    /// Wake the sender: notices were written.
    pub fn logouts_written(&self) {
        self.logouts_due.notify_one();
    }

    /// Deliver logout notices, forever: on every wake-up, else every few seconds.
    pub async fn run_logouts(self: Arc<Self>) {
        loop {
            if let Err(e) = self.send_due_logouts().await {
                tracing::warn!(error = %e, "back-channel logout round failed");
            }
            let _ = tokio::time::timeout(ROUND, self.logouts_due.notified()).await;
        }
    }

    async fn send_due_logouts(&self) -> Result<(), OidcError> {
        let now = now_ms();
        let due = store::logouts::due(&self.db, now, BATCH).await?;
        for store::logouts::Notice { id, client_id, user_id, sid, attempts } in due {
            let outcome = self.send_logout(&client_id, &user_id, sid.as_deref()).await;
            let ok = if outcome.is_ok() { "true" } else { "false" };
            match outcome {
                Ok(()) => store::logouts::delete(&self.db, &id).await?,
                Err(why) if attempts + 1 >= MAX_ATTEMPTS => {
                    tracing::warn!(notice = %id, %why, "a site never took its back-channel logout: dropped");
                    store::logouts::delete(&self.db, &id).await?;
                }
                Err(why) => {
                    let backoff = 2_000i64.saturating_mul(1 << attempts.clamp(0, 15)).min(4 * 3_600_000);
                    let why: String = why.chars().take(300).collect();
                    store::logouts::retry_at(&self.db, &id, now_ms() + backoff, &why).await?;
                }
            }
            metrics::counter!("sichat_oidc_backchannel_logouts_total", "ok" => ok).increment(1);
        }
        Ok(())
    }

    /// One logout token to one site. `Ok` also when there is nothing to tell (the site or
    /// the user is gone, or the site has no back channel).
    async fn send_logout(&self, client_id: &str, user_id: &str, sid: Option<&str>) -> Result<(), String> {
        let Some(client) = self.client(client_id).await.map_err(|e| e.to_string())? else { return Ok(()) };
        let Some(uri) = client.metadata.backchannel_logout_uri.clone() else { return Ok(()) };
        if self.accounts.account(user_id).await.is_err() {
            return Ok(());
        }
        let token = self.logout_token(&client, user_id, sid).await.map_err(|e| e.to_string())?;
        let body =
            format!("logout_token={}", url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>());
        let headers = [("content-type", "application/x-www-form-urlencoded".to_owned())];
        let (status, _) = self.fetcher.post(&uri, &headers, body.into_bytes()).await.map_err(|e| e.to_string())?;
        match status {
            200..=299 => {
                tracing::info!(client = %client.id, "back-channel logout delivered");
                Ok(())
            }
            other => Err(format!("HTTP {other}")),
        }
    }

    /// A logout token (Back-Channel Logout §2.4), signed like the client's ID tokens.
    pub async fn logout_token(&self, client: &Client, user_id: &str, sid: Option<&str>) -> Result<String, OidcError> {
        let now = now_ms() / 1000;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": client.id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL_SECS,
            "jti": random_token(),
            "sub": self.subject(client, user_id).await?,
            "events": { LOGOUT_EVENT: {} },
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        let keys = self.keys();
        keys.signer(&client.metadata.id_token_signed_response_alg)?.sign_typed(&claims, "logout+jwt")
    }
}

//! Passkeys (WebAuthn, through `webauthn-rs`): registration from the account page or a
//! one-time link made by `sichat passkey add`, and sign-in by user name then passkey, or
//! with no name at all: passkeys are made discoverable (`residentKey: preferred`, the user
//! handle is the account's id), so the browser offers them in the user name field's
//! autofill (conditional mediation) or when asked with no name.
//!
//! The relying party id is the host of the node's public URL (WebAuthn refuses IP
//! addresses, so a node reached by IP has no passkeys). Ceremony state stays on the node,
//! in `oidc_webauthn_ceremonies`: the browser only holds a random ceremony id, and the state
//! is bound to what started it (a pending request, the account page's CSRF cookie, a
//! session or a link), taken once, and lives two minutes.

use crate::amr::SignIn;
use crate::OidcError;
use axum::http::StatusCode;
use serde::Serialize;
use sichat_accounts::Accounts;
use sichat_core::db::Db;
use sichat_core::ids::{b64url, new_id, now_ms, random_token, token_hash};
use sqlx::Row;
use std::sync::Arc;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

const CEREMONY_TTL_MS: i64 = 2 * 60_000;
/// How long a link from `sichat passkey add` may be used.
pub const LINK_TTL_MS: i64 = 10 * 60_000;
const MAX_PASSKEYS: usize = 20;

/// A passkey as the account page and `sichat passkey list` show it.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A registration link for `sichat passkey add`.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub url: String,
    pub expires_at: i64,
}

pub struct Passkeys {
    db: Db,
    accounts: Arc<Accounts>,
    issuer: String,
    webauthn: Result<Webauthn, String>,
}

fn rejected(why: impl std::fmt::Display) -> OidcError {
    OidcError::new(StatusCode::UNAUTHORIZED, "passkey_rejected", format!("the passkey was not accepted: {why}"))
}

/// A passkey's name: 1–64 printable characters.
pub fn check_name(name: &str) -> Result<String, OidcError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(OidcError::bad("invalid_request", "a passkey's name is 1 to 64 printable characters"));
    }
    Ok(name.to_owned())
}

fn build(issuer: &str) -> Result<Webauthn, String> {
    let url = Url::parse(issuer).map_err(|e| format!("the public URL is not a URL: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(_) => return Err("passkeys need the node's public URL to have a host name, not an IP address".into()),
        None => return Err("the public URL has no host".into()),
    };
    let origin = Url::parse(&url.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name("Sichat").build())
        .map_err(|e| format!("cannot set up WebAuthn for {host}: {e}"))
}

impl Passkeys {
    pub fn new(db: Db, accounts: Arc<Accounts>, issuer: &str) -> Self {
        let webauthn = build(issuer);
        if let Err(e) = &webauthn {
            tracing::warn!(error = %e, "passkeys are off");
        }
        Self { db, accounts, issuer: issuer.to_owned(), webauthn }
    }

    /// Whether this node can offer passkeys at all.
    pub fn enabled(&self) -> bool {
        self.webauthn.is_ok()
    }

    fn webauthn(&self) -> Result<&Webauthn, OidcError> {
        self.webauthn
            .as_ref()
            .map_err(|e| OidcError::new(StatusCode::SERVICE_UNAVAILABLE, "passkeys_unavailable", e.clone()))
    }

    pub async fn list(&self, user_id: &str) -> Result<Vec<PasskeyInfo>, OidcError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM oidc_passkeys WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PasskeyInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// Remove one of the user's passkeys; false if the user has none with that id.
    pub async fn remove(&self, user_id: &str, id: &str) -> Result<bool, OidcError> {
        let gone = sqlx::query("DELETE FROM oidc_passkeys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(self.db.pool())
            .await?;
        Ok(gone.rows_affected() > 0)
    }

    async fn stored(&self, user_id: &str) -> Result<Vec<(String, Passkey)>, OidcError> {
        let rows = sqlx::query("SELECT id, passkey FROM oidc_passkeys WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let pk: Passkey =
                    serde_json::from_str(&r.try_get::<String, _>("passkey")?).map_err(OidcError::internal)?;
                Ok((r.try_get("id")?, pk))
            })
            .collect()
    }

    async fn save_ceremony(
        &self,
        kind: &str,
        user_id: &str,
        bound_to: &str,
        state: &impl Serialize,
    ) -> Result<String, OidcError> {
        let id = random_token();
        sqlx::query(
            "INSERT INTO oidc_webauthn_ceremonies (id_hash, kind, user_id, bound_to, state, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(&id))
        .bind(kind)
        .bind(user_id)
        .bind(bound_to)
        .bind(serde_json::to_string(state).map_err(OidcError::internal)?)
        .bind(now_ms() + CEREMONY_TTL_MS)
        .execute(self.db.pool())
        .await?;
        Ok(id)
    }

    /// Take a ceremony's state once: it is gone afterwards, whatever happens next. Its kind
    /// (one of `kinds`), user id and state.
    async fn take_ceremony(
        &self,
        id: &str,
        kinds: &[&str],
        bound_to: &str,
    ) -> Result<(String, String, String), OidcError> {
        let row = sqlx::query(
            "DELETE FROM oidc_webauthn_ceremonies WHERE id_hash = $1 AND expires_at > $2 \
             RETURNING kind, user_id, bound_to, state",
        )
        .bind(token_hash(id))
        .bind(now_ms())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| OidcError::bad("invalid_request", "this passkey request has expired or was used: try again"))?;
        let kind: String = row.try_get("kind")?;
        if !kinds.contains(&kind.as_str()) || row.try_get::<String, _>("bound_to")? != bound_to {
            return Err(OidcError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this passkey request belongs to another page",
            ));
        }
        Ok((kind, row.try_get("user_id")?, row.try_get("state")?))
    }

    /// Begin registering a passkey for a user: WebAuthn creation options for the browser,
    /// and the ceremony id to finish with.
    pub async fn start_registration(
        &self,
        user_id: &str,
        user_name: &str,
        bound_to: &str,
    ) -> Result<(String, CreationChallengeResponse), OidcError> {
        let webauthn = self.webauthn()?;
        let existing = self.stored(user_id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(OidcError::bad("invalid_request", "you have 20 passkeys: remove one before adding another"));
        }
        let uuid = Uuid::parse_str(user_id).map_err(OidcError::internal)?;
        let exclude = existing.iter().map(|(_, pk)| pk.cred_id().clone()).collect();
        let display = match self.accounts.user_did(user_name) {
            Ok(did) => did.to_string(),
            Err(_) => user_name.to_owned(),
        };
        let (mut options, state) = webauthn
            .start_passkey_registration(uuid, user_name, &display, Some(exclude))
            .map_err(OidcError::internal)?;
        // Discoverable, so that signing in needs no user name (the user handle is the
        // account's id, which `finish_authentication` reads back).
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
        }
        let id = self.save_ceremony("register", user_id, bound_to, &state).await?;
        Ok((id, options))
    }

    /// Finish a registration: check the browser's answer and keep the passkey. A
    /// registration started from a link uses the link up, once the passkey checks out.
    pub async fn finish_registration(
        &self,
        ceremony: &str,
        bound_to: &str,
        credential: &RegisterPublicKeyCredential,
        name: &str,
        link: Option<&str>,
    ) -> Result<(String, PasskeyInfo), OidcError> {
        let webauthn = self.webauthn()?;
        let name = check_name(name)?;
        let (_, user_id, state) = self.take_ceremony(ceremony, &["register"], bound_to).await?;
        let state: PasskeyRegistration = serde_json::from_str(&state).map_err(OidcError::internal)?;
        let passkey = webauthn.finish_passkey_registration(credential, &state).map_err(rejected)?;
        if let Some(token) = link {
            if !self.use_link(token).await? {
                return Err(OidcError::bad("invalid_request", "this link was already used or has expired"));
            }
        }
        let now = now_ms();
        let info = PasskeyInfo { id: new_id(), name, created_at: now, last_used_at: None };
        let inserted = sqlx::query(
            "INSERT INTO oidc_passkeys (id, user_id, credential_id, name, passkey, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&info.id)
        .bind(&user_id)
        .bind(b64url(passkey.cred_id().as_ref()))
        .bind(&info.name)
        .bind(serde_json::to_string(&passkey).map_err(OidcError::internal)?)
        .bind(now)
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if sichat_core::db::is_unique_violation(&e) => {
                return Err(OidcError::new(
                    StatusCode::CONFLICT,
                    "already_registered",
                    "this passkey is already registered",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        metrics::counter!("sichat_oidc_passkeys_registered_total").increment(1);
        Ok((user_id, info))
    }

    /// Begin signing in `user_name` with a passkey. User names are public on a node (their
    /// DID documents are), so saying that one has no passkey reveals nothing new.
    pub async fn start_authentication(
        &self,
        user_name: &str,
        bound_to: &str,
    ) -> Result<(String, RequestChallengeResponse), OidcError> {
        let webauthn = self.webauthn()?;
        let none = || {
            OidcError::bad(
                "no_passkey",
                "no passkey is registered for this user name: sign in another way, then add one on your account page",
            )
        };
        let user_id = self.accounts.active_user_id(user_name.trim()).await?.ok_or_else(none)?;
        let keys: Vec<Passkey> = self.stored(&user_id).await?.into_iter().map(|(_, pk)| pk).collect();
        if keys.is_empty() {
            return Err(none());
        }
        let (options, state) = webauthn.start_passkey_authentication(&keys).map_err(OidcError::internal)?;
        let id = self.save_ceremony("authenticate", &user_id, bound_to, &state).await?;
        Ok((id, options))
    }

    /// Begin a sign-in with no user name: the browser offers the discoverable passkeys it
    /// holds for this node (in the user name field's autofill, or when asked).
    pub async fn start_discoverable(&self, bound_to: &str) -> Result<(String, RequestChallengeResponse), OidcError> {
        let webauthn = self.webauthn()?;
        let (options, state) = webauthn.start_discoverable_authentication().map_err(OidcError::internal)?;
        let id = random_token();
        sqlx::query(
            "INSERT INTO oidc_discoverable_ceremonies (id_hash, bound_to, state, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash(&id))
        .bind(bound_to)
        .bind(serde_json::to_string(&state).map_err(OidcError::internal)?)
        .bind(now_ms() + CEREMONY_TTL_MS)
        .execute(self.db.pool())
        .await?;
        Ok((id, options))
    }

    /// Take a no-name ceremony once, if `id` is one: its state.
    async fn take_discoverable(&self, id: &str, bound_to: &str) -> Result<Option<String>, OidcError> {
        let row = sqlx::query(
            "DELETE FROM oidc_discoverable_ceremonies WHERE id_hash = $1 AND expires_at > $2 RETURNING bound_to, state",
        )
        .bind(token_hash(id))
        .bind(now_ms())
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<String, _>("bound_to")? != bound_to {
            return Err(OidcError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this passkey request belongs to another page",
            ));
        }
        Ok(Some(row.try_get("state")?))
    }

    /// Finish a passkey sign-in: the user it signs in, and how (the authenticator's flags).
    pub async fn finish_authentication(
        &self,
        ceremony: &str,
        bound_to: &str,
        credential: &PublicKeyCredential,
    ) -> Result<(String, SignIn), OidcError> {
        let webauthn = self.webauthn()?;
        let (user_id, result) = match self.take_discoverable(ceremony, bound_to).await? {
            Some(state) => {
                // The passkey names its account by the user handle it was made with.
                let (uuid, _) = webauthn.identify_discoverable_authentication(credential).map_err(rejected)?;
                let user_id = uuid.to_string();
                let active = self.accounts.account(&user_id).await.is_ok();
                let keys: Vec<DiscoverableKey> = match active {
                    true => self.stored(&user_id).await?.iter().map(|(_, pk)| DiscoverableKey::from(pk)).collect(),
                    false => Vec::new(),
                };
                if keys.is_empty() {
                    return Err(rejected("it is not registered for an account of this node"));
                }
                let state: DiscoverableAuthentication = serde_json::from_str(&state).map_err(OidcError::internal)?;
                let result = webauthn.finish_discoverable_authentication(credential, state, &keys).map_err(rejected)?;
                (user_id, result)
            }
            None => {
                let (_, user_id, state) = self.take_ceremony(ceremony, &["authenticate"], bound_to).await?;
                let state: PasskeyAuthentication = serde_json::from_str(&state).map_err(OidcError::internal)?;
                (user_id, webauthn.finish_passkey_authentication(credential, &state).map_err(rejected)?)
            }
        };
        for (id, mut pk) in self.stored(&user_id).await? {
            if let Some(changed) = pk.update_credential(&result) {
                let mut q = sqlx::query("UPDATE oidc_passkeys SET last_used_at = $1, passkey = $2 WHERE id = $3")
                    .bind(now_ms())
                    .bind(serde_json::to_string(&pk).map_err(OidcError::internal)?);
                if !changed {
                    q = sqlx::query("UPDATE oidc_passkeys SET last_used_at = $1 WHERE id = $2").bind(now_ms());
                }
                q.bind(&id).execute(self.db.pool()).await?;
            }
        }
        metrics::counter!("sichat_oidc_passkey_logins_total").increment(1);
        Ok((user_id, SignIn::passkey(&result)))
    }

    // ---- one-time registration links ----

    /// A link that lets whoever opens it register one passkey for `user_id`, for 10 minutes.
    pub async fn create_link(&self, user_id: &str, name: &str) -> Result<Link, OidcError> {
        self.webauthn()?;
        let name = check_name(name)?;
        let token = random_token();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO oidc_passkey_links (token_hash, user_id, name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&token))
        .bind(user_id)
        .bind(&name)
        .bind(now)
        .bind(now + LINK_TTL_MS)
        .execute(self.db.pool())
        .await?;
        Ok(Link { url: format!("{}/account/passkeys/new?link={token}", self.issuer), expires_at: now + LINK_TTL_MS })
    }

    /// The live, unused link `token`: its user id, user name and passkey name.
    pub async fn link(&self, token: &str) -> Result<Option<(String, String, String)>, OidcError> {
        let row = sqlx::query(
            "SELECT l.user_id, l.name, u.name AS user_name FROM oidc_passkey_links l JOIN acct_users u \
             ON u.id = l.user_id WHERE l.token_hash = $1 AND l.expires_at > $2 AND l.used_at IS NULL \
             AND u.status = 'active'",
        )
        .bind(token_hash(token))
        .bind(now_ms())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("user_name")?, r.try_get("name")?))).transpose()
    }

    /// Mark a link used; false if it already was (or has expired).
    pub async fn use_link(&self, token: &str) -> Result<bool, OidcError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE oidc_passkey_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash(token))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_relying_party_is_the_host_and_never_an_address() {
        assert!(super::build("http://localhost:8080").is_ok());
        assert!(super::build("https://id.example.org/sichat").is_ok());
        assert!(super::build("http://127.0.0.1:8080").is_err());
        assert!(super::build("http://[::1]:8080").is_err());
    }

    #[test]
    fn names_are_short_and_printable() {
        assert_eq!(super::check_name(" laptop ").unwrap(), "laptop");
        assert!(super::check_name("").is_err());
        assert!(super::check_name("a\nb").is_err());
        assert!(super::check_name(&"x".repeat(65)).is_err());
    }
}

//! The provider. Each endpoint area has its submodule: `authorize` (`/oidc/authorize`,
//! `/oidc/consent`), `token` (`/oidc/token`, `/oidc/revoke`, `/oidc/introspect`),
//! `userinfo` (`/oidc/userinfo`) and `logout` (`/oidc/logout`); sign-in, browser sessions
//! and consent stay here. Everything durable lives in the `oidc_*` tables; codes and tokens
//! are stored as hashes only.

use crate::amr::SignIn;
use crate::clients::Registration;
use crate::clients::{self, Client, ClientCache};
use crate::keys::{self, KeySet};
use crate::store;
use crate::subjects::Subjects;
use crate::throttle::PasswordThrottle;
use crate::wire::{
    AuthorizationParams, ClientAuth, Confirmation, DeviceAuthorization, DeviceAuthorizationRequest, Introspection,
    PushedRequest, TokenRequest, TokenResponse, TokenType,
};
use crate::writer::{CodeRow, Outcome, ProofRow, Spend, TokenRow, Write, Writer};
use crate::OidcError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sichat_accounts::Accounts;
use sichat_core::db::Db;
use sichat_core::ids::{b64url, b64url_decode, new_id, now_ms, random_bytes, random_token, token_hash};
use sichat_core::net::Fetcher;
use sichat_core::seal::MasterKey;
use sichat_verifier::Verifier;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

mod activity;
mod authorize;
mod device;
mod dpop;
mod logout;
mod logout_channels;
mod par;
mod token;
mod userinfo;

pub(crate) use activity::record as record_sign_in;
pub use activity::SignInEvent;
pub use device::{DeviceApproval, DeviceGrant, DEVICE_CODE_GRANT, DEVICE_TTL_MS};
pub use dpop::{read_proof, thumbprint, Proof, ProofFor, DPOP_ALGS};
pub(crate) use logout_channels::{notify_sessions, sessions_of};
pub use par::REQUEST_URI_PREFIX;
pub use userinfo::{Access, Presented};

/// Every scope we grant; `membership`, `friends` and `email` bring claims backed by credentials.
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", "membership", "friends"];
const CODE_TTL_MS: i64 = 60_000;
const REQUEST_TTL_MS: i64 = 10 * 60_000;
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;
const ACCESS_TTL_MS: i64 = 3_600_000;
const REFRESH_TTL_MS: i64 = 30 * 24 * 3_600_000;
pub const ID_TOKEN_TTL_SECS: i64 = 3600;
/// The longest lifetime a `private_key_jwt` client assertion may claim.
const ASSERTION_MAX_TTL_MS: i64 = 10 * 60_000;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The parameters of an authorization request, kept while the user signs in and consents.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AuthParams {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Option<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// `form_post` (OAuth 2.0 Form Post Response Mode): the answer is posted by the
    /// browser, not put in the redirect's query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<String>,
    /// A device authorization grant the user is approving (no redirect: the device polls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRequest>,
    /// The DPoP key (its thumbprint) the code is bound to (RFC 9449 §10): `dpop_jkt`, or the
    /// key of a DPoP proof sent with the pushed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// The device grant behind an authorization request, and the code its screen shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub id: String,
    pub user_code: String,
}

/// A pending request, as the pages see it.
pub struct Pending {
    pub id: String,
    pub csrf: String,
    pub params: AuthParams,
    pub client: Arc<Client>,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub user_id: String,
    pub user_name: String,
    pub auth_time: i64,
    /// How the user signed in: `amr` values as stored (space-separated); `None` for
    /// sessions from before they were recorded.
    pub amr: Option<String>,
    /// The session cookie's hash, as stored.
    pub session_hash: String,
    /// Its OpenID Connect session id, in the ID tokens it gives ([`sid_of`]).
    pub sid: String,
    /// Where it signed in from (`None` for sessions from before it was kept).
    pub address: Option<String>,
}

/// A browser session's `sid`: derived from its stored hash, so it names the session
/// without revealing the cookie, and needs no column of its own.
pub fn sid_of(session_hash: &str) -> String {
    b64url(&Sha256::digest(format!("sichat-sid:{session_hash}").as_bytes())[..18])
}

/// Where an authorization request goes next.
pub enum Next {
    Login,
    Consent,
    /// Back to the client: the redirect URL with `code` or `error`.
    Redirect(String),
}

/// What a token carries: whose, which scope, and the family it belongs to (the code's
/// hash, so a replayed code and a reused refresh token revoke every descendant).
struct Grant<'a> {
    user_id: Option<&'a str>,
    scope: &'a str,
    family: &'a str,
    code_hash: Option<&'a str>,
    auth_time: Option<i64>,
    /// How the user signed in (stored `amr`).
    amr: Option<&'a str>,
    /// The browser session's `sid`, if the grant came from one.
    sid: Option<&'a str>,
    /// The request's DPoP proof, if it sent one: the tokens are bound to its key, and its
    /// `jti` is recorded in the grant's own write.
    proof: Option<&'a Proof>,
}

impl Grant<'_> {
    /// The thumbprint of the DPoP key the tokens are bound to.
    fn jkt(&self) -> Option<&str> {
        self.proof.map(|p| p.jkt.as_str())
    }
}

/// How the node runs its provider (from the server's configuration).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub registration: Registration,
    /// Replace signing keys older than this; `None` never rotates on its own.
    pub key_rotation_ms: Option<i64>,
}

pub struct Provider {
    db: Db,
    accounts: Arc<Accounts>,
    master: Arc<MasterKey>,
    fetcher: Arc<Fetcher>,
    verifier: Arc<Verifier>,
    settings: Settings,
    issuer: String,
    keys: RwLock<Arc<KeySet>>,
    /// Pairwise subjects: the master key and the node's salt for them.
    subjects: Arc<Subjects>,
    /// Bounds the memory of concurrent argon2id hashing (19 MiB each).
    hashing: Semaphore,
    /// Password attempts per account and address, and per address (in the database).
    throttle: PasswordThrottle,
    /// Codes and tokens, group-committed on SQLite.
    writer: Writer,
    /// Clients read in the last few seconds.
    clients: ClientCache,
    /// Rung when back-channel logout notices were written.
    logouts_due: tokio::sync::Notify,
}

/// OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
const ARGON_M_KIB: u32 = 19 * 1024;
const ARGON_T: u32 = 2;
const ARGON_P: u32 = 1;

fn argon() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(ARGON_M_KIB, ARGON_T, ARGON_P, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Whether `hash` (a PHC string from another node) is one this node would have made:
/// argon2id, version 19, this node's cost. A verification runs with the hash's own cost, so
/// any other would let the sender set what each sign-in attempt costs here.
pub(crate) fn check_password_hash(hash: &str) -> Result<(), String> {
    if hash.len() > 256 {
        return Err("longer than 256 bytes".into());
    }
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string ({e})"))?;
    let params = argon2::Params::try_from(&parsed).map_err(|e| format!("not argon2 parameters ({e})"))?;
    let ours = parsed.algorithm == argon2::Algorithm::Argon2id.ident()
        && parsed.version == Some(0x13)
        && (params.m_cost(), params.t_cost(), params.p_cost()) == (ARGON_M_KIB, ARGON_T, ARGON_P)
        && parsed.salt.is_some()
        && parsed.hash.is_some_and(|h| h.len() == argon2::Params::DEFAULT_OUTPUT_LEN);
    if !ours {
        return Err(format!(
            "must be argon2id v=19 m={ARGON_M_KIB},t={ARGON_T},p={ARGON_P} with a salt and a 32-byte hash"
        ));
    }
    Ok(())
}

pub(crate) fn scope_set(scope: &str) -> Vec<&str> {
    let mut v: Vec<&str> = scope.split_whitespace().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The key under which an access or refresh token is stored (`oidc_tokens.token_hash`).
///
/// A token is a time-ordered id (UUIDv7), a dot, and 256 random bits; its key is that id,
/// a dot, and the SHA-256 of the whole token. The database never holds the token, and keys
/// made together sort together, so a group commit of many new tokens touches the last pages
/// of the primary key's index instead of one random page per token (each dirty page is
/// written to the WAL and flushed). Tokens without such an id (issued before) are keyed by
/// their SHA-256 alone. The id tells the token's holder when it was issued, nothing more.
pub fn token_key(token: &str) -> String {
    match token.split_once('.') {
        Some((id, _)) if id.len() == 36 && uuid::Uuid::try_parse(id).is_ok() => format!("{id}.{}", token_hash(token)),
        _ => token_hash(token),
    }
}

/// The S256 PKCE challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn invalid_grant(why: impl Into<String>) -> OidcError {
    OidcError::bad("invalid_grant", why)
}

/// The node's secret for the pairwise subjects of legacy accounts ([`crate::subjects`]),
/// sealed under the master key: with it and the user ids, anyone could link a user's
/// subjects across sites.
async fn pairwise_salt(db: &Db, master: &MasterKey) -> Result<Vec<u8>, OidcError> {
    const NAME: &str = "oidc_pairwise_salt_sealed";
    let read = || async {
        let sealed = store::settings::value(db, NAME).await?;
        let Some(sealed) = sealed else { return Ok::<_, OidcError>(None) };
        let bytes = b64url_decode(&sealed).ok_or_else(|| OidcError::internal("the pairwise salt is not base64url"))?;
        Ok(Some(master.open(&bytes, NAME)?.to_vec()))
    };
    if let Some(salt) = read().await? {
        return Ok(salt);
    }
    // Nodes before sealing kept it in clear; keep its value so subjects do not change.
    let clear = store::settings::clear_pairwise_salt(db).await?;
    let salt = clear.map(String::into_bytes).unwrap_or_else(|| b64url(&random_bytes::<32>()).into_bytes());
    // A replica starting at the same time may win the insert; everyone then reads its value.
    store::settings::store_sealed_pairwise_salt(db, NAME, &b64url(&master.seal(&salt, NAME))).await?;
    read().await?.ok_or_else(|| OidcError::internal("the pairwise salt was not stored"))
}

impl Provider {
    pub async fn open(
        db: Db,
        accounts: Arc<Accounts>,
        master: Arc<MasterKey>,
        verifier: Arc<Verifier>,
        settings: Settings,
    ) -> Result<Self, OidcError> {
        let fetcher = verifier.resolver().fetcher().clone();
        let keys = keys::load(&db, &master).await?;
        let subjects = Arc::new(Subjects::new(master.clone(), pairwise_salt(&db, &master).await?));
        let issuer = accounts.node().public_url().as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            writer: Writer::new(db.clone()),
            throttle: PasswordThrottle::new(db.clone()),
            db,
            accounts,
            master,
            fetcher,
            verifier,
            settings,
            issuer,
            keys: RwLock::new(Arc::new(keys)),
            subjects,
            hashing: Semaphore::new(2),
            clients: ClientCache::default(),
            logouts_due: tokio::sync::Notify::new(),
        })
    }

    /// The hooks that end and move this provider's rows of an account; the server registers
    /// them with the accounts service.
    pub fn account_hooks(&self) -> crate::account_hooks::OidcAccountHooks {
        crate::account_hooks::OidcAccountHooks::new(self.subjects.clone())
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.issuer)
    }

    /// Cookies may be `Secure` only when the node is served over https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.url("oidc/authorize"),
            "token_endpoint": self.url("oidc/token"),
            "userinfo_endpoint": self.url("oidc/userinfo"),
            "jwks_uri": self.url("oidc/jwks"),
            "registration_endpoint": self.url("oidc/register"),
            "revocation_endpoint": self.url("oidc/revoke"),
            "introspection_endpoint": self.url("oidc/introspect"),
            "end_session_endpoint": self.url("oidc/logout"),
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": true,
            "frontchannel_logout_session_supported": true,
            "device_authorization_endpoint": self.url("oidc/device_authorization"),
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "pushed_authorization_request_endpoint": self.url("oidc/par"),
            "require_pushed_authorization_requests": false,
            "request_object_signing_alg_values_supported": keys::ALGS,
            "grant_types_supported": clients::GRANT_TYPES,
            "subject_types_supported": ["pairwise", "public"],
            "id_token_signing_alg_values_supported": keys::ALGS,
            "token_endpoint_auth_methods_supported": clients::AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": keys::ALGS,
            "revocation_endpoint_auth_signing_alg_values_supported": keys::ALGS,
            "introspection_endpoint_auth_signing_alg_values_supported": keys::ALGS,
            "client_id_metadata_document_supported": true,
            "revocation_endpoint_auth_methods_supported": clients::AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": clients::AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "dpop_signing_alg_values_supported": DPOP_ALGS,
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "name", "preferred_username",
                "email", "email_verified", "sichat_membership", "sichat_friend_of"
            ],
            "prompt_values_supported": ["none", "login", "consent"],
            "claims_parameter_supported": true,
            "request_parameter_supported": true,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn keys(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn jwks(&self) -> Value {
        self.keys().jwks().clone()
    }

    /// Rotate keys that are due, then pick up keys another process made (a replica, or
    /// `sichatd admin rotate-keys`). Run by the node's housekeeping.
    pub async fn maintain_keys(&self) -> Result<(), OidcError> {
        let current = self.keys();
        if let Some(period) = self.settings.key_rotation_ms {
            if current.oldest_active().is_some_and(|t| t < now_ms() - period) {
                keys::rotate(&self.db, &self.master, now_ms() - period).await?;
            }
        }
        let fresh = keys::load(&self.db, &self.master).await?;
        if fresh.state() != current.state() {
            if let Ok(mut k) = self.keys.write() {
                *k = Arc::new(fresh);
            }
        }
        Ok(())
    }

    /// Replace every active key now (`sichatd admin rotate-keys`); returns the new kids.
    pub async fn rotate_keys(&self) -> Result<Vec<String>, OidcError> {
        let made = keys::rotate(&self.db, &self.master, now_ms() + 1).await?;
        let fresh = keys::load(&self.db, &self.master).await?;
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(fresh);
        }
        Ok(made)
    }

    /// A client by id: registered here, or the URL of its metadata document. Read through
    /// a cache of a few seconds ([`clients::CLIENT_CACHE_TTL`]): clients that exist are kept,
    /// unknown ids are always looked up.
    pub async fn client(&self, id: &str) -> Result<Option<Arc<Client>>, OidcError> {
        if let Some(c) = self.clients.get(id) {
            return Ok(Some(c));
        }
        let found = match clients::is_document_url(id) {
            // A document fetched again may have changed: the fresh copy replaces ours.
            true => Some(clients::from_document(&self.db, &self.fetcher, id, &self.settings.registration).await?),
            false => clients::find(&self.db, id).await?,
        };
        Ok(found.map(|c| self.clients.put(c)))
    }

    /// Record that `client` completed a flow, so housekeeping keeps it.
    pub(crate) async fn mark_used(&self, client: &Client) -> Result<(), OidcError> {
        if clients::mark_used(&self.db, client).await? {
            self.forget_client(&client.id);
        }
        Ok(())
    }

    /// Forget what this process knows of client `id`: call it on every change to a client.
    pub fn forget_client(&self, id: &str) {
        self.clients.forget(id);
    }

    pub async fn register(&self, body: Value, initial_token: Option<&str>) -> Result<clients::Registered, OidcError> {
        let base = self.url("oidc/register");
        clients::register(&self.db, body, &base, &self.settings.registration, initial_token).await
    }

    // ---- sign-in ----

    /// Check a user name and password from client address `addr`. `None` when they do not
    /// match; the caller says only "wrong user name or password". Too many failures at this
    /// account from this address, or from this address at all, and the attempt is refused
    /// (429) before any password is checked ([`PasswordThrottle`]).
    pub async fn check_password(&self, name: &str, password: &str, addr: IpAddr) -> Result<Option<String>, OidcError> {
        if let Err(throttled) = self.throttle.admit(name, addr).await? {
            tracing::warn!(event = "signin_throttled", account = name, %addr, until = throttled.until, "password sign-in throttled");
            metrics::counter!("sichat_oidc_login_throttled_total").increment(1);
            return Err(throttled.error());
        }
        let user_id = self.accounts.active_user_id(name).await?;
        let hash = match &user_id {
            Some(id) => store::passwords::hash(&self.db, id).await?,
            None => None,
        };
        let ok = self.verify_hash(hash, password.to_owned()).await?;
        if ok {
            self.throttle.succeeded(name, addr).await?;
            return Ok(user_id);
        }
        tracing::warn!(event = "signin_failed", account = name, %addr, known = user_id.is_some(), "password sign-in failed");
        metrics::counter!("sichat_oidc_login_failures_total").increment(1);
        metrics::counter!("sichat_oidc_signin_failures_total", "method" => "password").increment(1);
        Ok(None)
    }

    /// Verify against `hash`; with no hash, spend the same effort and fail (no user
    /// enumeration by timing).
    async fn verify_hash(&self, hash: Option<String>, password: String) -> Result<bool, OidcError> {
        let _permit = self.hashing.acquire().await.map_err(OidcError::internal)?;
        tokio::task::spawn_blocking(move || {
            let a = argon();
            match hash.as_deref().map(PasswordHash::new) {
                Some(Ok(h)) => a.verify_password(password.as_bytes(), &h).is_ok(),
                _ => {
                    let salt = SaltString::encode_b64(&random_bytes::<16>()).ok();
                    if let Some(salt) = salt {
                        let _ = a.hash_password(password.as_bytes(), &salt);
                    }
                    false
                }
            }
        })
        .await
        .map_err(OidcError::internal)
    }

    /// Set a user's sign-in password (argon2id), and sign the user out everywhere in the same
    /// transaction: every browser session, refresh and access token ends.
    pub async fn set_password(&self, user_id: &str, password: &str) -> Result<(), OidcError> {
        let n = password.chars().count();
        if !(12..=256).contains(&n) {
            return Err(OidcError::bad("invalid_request", "a password must be 12 to 256 characters long"));
        }
        let _permit = self.hashing.acquire().await.map_err(OidcError::internal)?;
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(OidcError::internal)?;
            argon().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(OidcError::internal)
        })
        .await
        .map_err(OidcError::internal)??;
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        store::passwords::replace(&mut tx, user_id, &hash, now).await?;
        // Whoever knew the old password may hold a session or tokens: they all end with it.
        self.accounts.sign_out_everywhere_on(&mut tx, user_id, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A browser session for a user who just signed in `how` from `address`; its token
    /// (the cookie). The sign-in is recorded for the user to see.
    pub async fn start_session(&self, user_id: &str, how: SignIn, address: &str) -> Result<String, OidcError> {
        let token = random_token();
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let session = store::sessions::NewSession {
            token_hash: &token_hash(&token),
            user_id,
            auth_time: now,
            amr: &how.stored(),
            address,
            expires_at: now + SESSION_TTL_MS,
        };
        store::sessions::insert(&mut tx, &session).await?;
        activity::record(&mut tx, user_id, None, Some(&how.stored()), Some(address), now).await?;
        tx.commit().await?;
        metrics::counter!("sichat_oidc_logins_total").increment(1);
        Ok(token)
    }

    pub async fn session(&self, token: &str) -> Result<Option<BrowserSession>, OidcError> {
        let session_hash = token_hash(token);
        let row = store::sessions::live(&self.db, &session_hash, now_ms()).await?;
        Ok(row.map(|r| BrowserSession {
            user_id: r.user_id,
            user_name: r.name,
            auth_time: r.auth_time,
            amr: r.amr,
            address: r.address,
            sid: sid_of(&session_hash),
            session_hash,
        }))
    }

    // ---- consent ----

    async fn consented(&self, user_id: &str, client_id: &str, scope: &str) -> Result<bool, OidcError> {
        let given = store::consents::scope(&self.db, user_id, client_id).await?.unwrap_or_default();
        let given = scope_set(&given);
        Ok(scope_set(scope).iter().all(|s| given.contains(s)))
    }

    /// Remember consent to `scope` (added to what was given before).
    pub async fn consent(&self, user_id: &str, client_id: &str, scope: &str) -> Result<(), OidcError> {
        let mut tx = self.db.pool().begin().await?;
        store::consents::add(&mut tx, user_id, client_id, scope, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sites a user has consented to.
    pub async fn consents(&self, user_id: &str) -> Result<Vec<Value>, OidcError> {
        let rows = store::consents::of_user(&self.db, user_id).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let meta: Value = serde_json::from_str(&r.metadata).unwrap_or_default();
                json!({
                    "client_id": r.client_id,
                    "client_name": meta.get("client_name"),
                    "redirect_uris": meta.get("redirect_uris"),
                    "scope": r.scope,
                    "created_at": r.created_at,
                })
            })
            .collect())
    }

    /// Withdraw consent: the site must ask again, and its tokens for this user end.
    pub async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool, OidcError> {
        let mut tx = self.db.pool().begin().await?;
        let gone = store::consents::delete(&mut tx, user_id, client_id).await?;
        store::tokens::revoke_of_client(&mut tx, user_id, client_id, now_ms()).await?;
        if gone {
            self.notify_consent_withdrawn(&mut tx, user_id, client_id).await?;
        }
        tx.commit().await?;
        self.logouts_written();
        Ok(gone)
    }

    /// The credentials that back the claims `scope` asks for, verified now.
    pub async fn evidence(&self, user_id: &str, scope: &str) -> Result<Vec<crate::claims::Evidence>, OidcError> {
        crate::claims::evidence(&self.db, &self.verifier, user_id, &scope_set(scope)).await
    }

    async fn backed_claims(&self, user_id: &str, scope: &str) -> Result<serde_json::Map<String, Value>, OidcError> {
        let scopes = scope_set(scope);
        if !crate::claims::scopes().any(|s| scopes.contains(&s)) {
            return Ok(serde_json::Map::new());
        }
        let evidence = crate::claims::evidence(&self.db, &self.verifier, user_id, &scopes).await?;
        Ok(crate::claims::as_claims(&scopes, &evidence))
    }

    /// Housekeeping: expired requests, codes, sessions and tokens, closed throttle windows,
    /// and registered clients that never completed a flow.
    pub async fn purge_expired(&self) -> Result<u64, OidcError> {
        let now = now_ms();
        let mut n = store::purge::expired(&self.db, now).await?;
        n += store::activity::purge(&self.db, now - activity::KEEP_MS).await?;
        n += self.throttle.purge().await?;
        n += store::purge::approval_failures(&self.db, now - crate::approval::FAILURE_WINDOW_MS).await?;
        n += clients::purge_unused(&self.db, now - clients::UNUSED_CLIENT_TTL_MS).await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_sort_by_issue_time_and_hold_no_secret() {
        let tokens: Vec<String> = (0..50).map(|_| format!("{}.{}", new_id(), random_token())).collect();
        let keys: Vec<String> = tokens.iter().map(|t| token_key(t)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "keys made one after another sort in that order");
        for (t, k) in tokens.iter().zip(&keys) {
            let (id, secret) = t.split_once('.').expect("id.secret");
            assert_eq!(*k, format!("{id}.{}", token_hash(t)));
            assert!(!k.contains(secret), "the key does not hold the secret part");
        }
        // Same id, another secret: another key.
        let (id, _) = tokens[0].split_once('.').expect("id.secret");
        assert_ne!(token_key(&format!("{id}.{}", random_token())), keys[0]);
        // Tokens issued before, and anything else, are keyed by their hash alone.
        let old = random_token();
        assert_eq!(token_key(&old), token_hash(&old));
        assert_eq!(token_key("not-an-id.x"), token_hash("not-an-id.x"));
    }
}

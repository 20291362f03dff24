//! The provider: authorization requests, sign-in, consent, codes, tokens, UserInfo,
//! revocation and introspection. Everything durable lives in the `oidc_*` tables; codes and
//! tokens are stored as hashes only.

use crate::amr::SignIn;
use crate::clients::Registration;
use crate::clients::{self, Client, ClientCache};
use crate::keys::{self, KeySet};
use crate::throttle::PasswordThrottle;
use crate::writer::{CodeRow, Outcome, Spend, TokenRow, Write, Writer};
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
use sqlx::Row;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

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
    pairwise_salt: Vec<u8>,
    /// Bounds the memory of concurrent argon2id hashing (19 MiB each).
    hashing: Semaphore,
    /// Password attempts per account and address, and per address (in the database).
    throttle: PasswordThrottle,
    /// Codes and tokens, group-committed on SQLite.
    writer: Writer,
    /// Clients read in the last few seconds.
    clients: ClientCache,
}

fn argon() -> argon2::Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

fn scope_set(scope: &str) -> Vec<&str> {
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

/// The node's secret for pairwise subjects, sealed under the master key: with it and the
/// user ids, anyone could link a user's subjects across sites.
async fn pairwise_salt(db: &Db, master: &MasterKey) -> Result<Vec<u8>, OidcError> {
    const NAME: &str = "oidc_pairwise_salt_sealed";
    let read = || async {
        let sealed: Option<String> = sqlx::query_scalar("SELECT value FROM node_settings WHERE name = $1")
            .bind(NAME)
            .fetch_optional(db.pool())
            .await?;
        let Some(sealed) = sealed else { return Ok::<_, OidcError>(None) };
        let bytes = b64url_decode(&sealed).ok_or_else(|| OidcError::internal("the pairwise salt is not base64url"))?;
        Ok(Some(master.open(&bytes, NAME)?.to_vec()))
    };
    if let Some(salt) = read().await? {
        return Ok(salt);
    }
    // Nodes before sealing kept it in clear; keep its value so subjects do not change.
    let clear: Option<String> = sqlx::query_scalar("SELECT value FROM node_settings WHERE name = 'oidc_pairwise_salt'")
        .fetch_optional(db.pool())
        .await?;
    let salt = clear.map(String::into_bytes).unwrap_or_else(|| b64url(&random_bytes::<32>()).into_bytes());
    let mut tx = db.pool().begin().await?;
    // A replica starting at the same time may win the insert; everyone then reads its value.
    sqlx::query("INSERT INTO node_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(NAME)
        .bind(b64url(&master.seal(&salt, NAME)))
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM node_settings WHERE name = 'oidc_pairwise_salt'").execute(&mut *tx).await?;
    tx.commit().await?;
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
        let pairwise_salt = pairwise_salt(&db, &master).await?;
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
            pairwise_salt,
            hashing: Semaphore::new(2),
            clients: ClientCache::default(),
        })
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
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
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
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "name", "preferred_username",
                "email", "email_verified", "sichat_membership", "sichat_friend_of"
            ],
            "prompt_values_supported": ["none", "login", "consent"],
            "claims_parameter_supported": true,
            "request_parameter_supported": false,
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
        if fresh.kids() != current.kids() {
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

    /// Forget what this process knows of client `id`: call it on every change to a client.
    pub fn forget_client(&self, id: &str) {
        self.clients.forget(id);
    }

    pub async fn register(&self, body: Value, initial_token: Option<&str>) -> Result<clients::Registered, OidcError> {
        let base = self.url("oidc/register");
        clients::register(&self.db, body, &base, &self.settings.registration, initial_token).await
    }

    // ---- authorization requests ----

    /// Check a request's parameters against its (known) client and redirect URI. Errors
    /// here go back to the client.
    pub fn check_request(client: &Client, q: &HashMap<String, String>) -> Result<AuthParams, OidcError> {
        let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        if get("request").is_some() || get("request_uri").is_some() {
            return Err(OidcError::bad("request_not_supported", "request objects are not supported"));
        }
        if get("response_type").as_deref() != Some("code") {
            return Err(OidcError::bad("unsupported_response_type", "response_type must be code"));
        }
        if !client.metadata.grant_types.iter().any(|g| g == "authorization_code") {
            return Err(OidcError::bad("unauthorized_client", "this client may not use the code flow"));
        }
        if get("response_mode").is_some_and(|m| m != "query") {
            return Err(OidcError::bad("invalid_request", "response_mode must be query"));
        }
        let mut scope = get("scope").unwrap_or_default();
        if let Some(claims) = get("claims") {
            // A backed claim asked for by name needs the same consent as its scope.
            let extra = crate::claims::scopes_in_claims_parameter(&claims)
                .map_err(|why| OidcError::bad("invalid_request", why))?;
            for s in extra {
                scope.push(' ');
                scope.push_str(s);
            }
        }
        let scopes = scope_set(&scope);
        if !scopes.contains(&"openid") {
            return Err(OidcError::bad("invalid_scope", "scope must include openid"));
        }
        let granted: Vec<&str> = scopes.into_iter().filter(|s| SCOPES.contains(s)).collect();
        let code_challenge = get("code_challenge")
            .ok_or_else(|| OidcError::bad("invalid_request", "PKCE is required: send code_challenge (S256)"))?;
        if get("code_challenge_method").as_deref() != Some("S256") {
            return Err(OidcError::bad("invalid_request", "code_challenge_method must be S256"));
        }
        if !is_pkce_value(&code_challenge) {
            return Err(OidcError::bad("invalid_request", "code_challenge is not a valid S256 challenge"));
        }
        let prompt = get("prompt");
        if let Some(p) = &prompt {
            let values: Vec<&str> = p.split_whitespace().collect();
            if values.iter().any(|v| !["none", "login", "consent", "select_account"].contains(v)) {
                return Err(OidcError::bad("invalid_request", "unknown prompt value"));
            }
            if values.contains(&"none") && values.len() > 1 {
                return Err(OidcError::bad("invalid_request", "prompt=none cannot be combined"));
            }
        }
        let max_age = match get("max_age") {
            None => None,
            Some(m) => Some(
                m.parse::<i64>()
                    .ok()
                    .filter(|m| *m >= 0)
                    .ok_or_else(|| OidcError::bad("invalid_request", "max_age must be a non-negative integer"))?,
            ),
        };
        let too_long = |k: &str| get(k).is_some_and(|v| v.len() > 512);
        if ["state", "nonce", "login_hint"].iter().any(|k| too_long(k)) {
            return Err(OidcError::bad("invalid_request", "state, nonce and login_hint are limited to 512 bytes"));
        }
        Ok(AuthParams {
            client_id: client.id.clone(),
            redirect_uri: get("redirect_uri").unwrap_or_default(),
            scope: granted.join(" "),
            state: get("state"),
            nonce: get("nonce"),
            code_challenge,
            prompt,
            max_age,
            login_hint: get("login_hint"),
        })
    }

    /// The URL that answers the client: `params` (code or error) plus `state` and `iss`.
    pub fn redirect_url(&self, redirect_uri: &str, state: Option<&str>, params: &[(&str, &str)]) -> String {
        let mut u = match url::Url::parse(redirect_uri) {
            Ok(u) => u,
            Err(_) => return redirect_uri.to_owned(),
        };
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.issuer);
        }
        u.into()
    }

    pub fn error_redirect(&self, p: &AuthParams, e: &OidcError) -> String {
        self.redirect_url(
            &p.redirect_uri,
            p.state.as_deref(),
            &[("error", e.code), ("error_description", &e.description)],
        )
    }

    /// Decide the next step of a request for the current browser session.
    pub async fn next_step(
        &self,
        p: &AuthParams,
        client: &Client,
        session: Option<&BrowserSession>,
        fresh_login: bool,
    ) -> Result<Next, OidcError> {
        let prompt: Vec<&str> = p.prompt.as_deref().unwrap_or_default().split_whitespace().collect();
        let none = prompt.contains(&"none");
        let needs_login = match session {
            None => true,
            Some(s) => {
                (prompt.contains(&"login") && !fresh_login)
                    || p.max_age.is_some_and(|m| now_ms() - s.auth_time > m.saturating_mul(1000))
            }
        };
        if needs_login {
            return Ok(match none {
                true => Next::Redirect(self.error_redirect(p, &OidcError::bad("login_required", "no signed-in user"))),
                false => Next::Login,
            });
        }
        let Some(s) = session else { return Ok(Next::Login) };
        let consented = self.consented(&s.user_id, &client.id, &p.scope).await?;
        if !consented || prompt.contains(&"consent") {
            return Ok(match none {
                true => Next::Redirect(
                    self.error_redirect(p, &OidcError::bad("consent_required", "the user has not consented")),
                ),
                false => Next::Consent,
            });
        }
        let code = self.issue_code(p, s).await?;
        Ok(Next::Redirect(self.redirect_url(&p.redirect_uri, p.state.as_deref(), &[("code", &code)])))
    }

    pub async fn save_request(&self, p: &AuthParams) -> Result<(String, String), OidcError> {
        let (id, csrf) = (random_token(), random_token());
        sqlx::query("INSERT INTO oidc_requests (id, client_id, params, csrf, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(&p.client_id)
            .bind(serde_json::to_string(p).map_err(OidcError::internal)?)
            .bind(&csrf)
            .bind(now_ms() + REQUEST_TTL_MS)
            .execute(self.db.pool())
            .await?;
        Ok((id, csrf))
    }

    pub async fn pending(&self, id: &str) -> Result<Option<Pending>, OidcError> {
        let row = sqlx::query("SELECT params, csrf FROM oidc_requests WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now_ms())
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let params: AuthParams =
            serde_json::from_str(&row.try_get::<String, _>("params")?).map_err(OidcError::internal)?;
        let Some(client) = self.client(&params.client_id).await? else { return Ok(None) };
        Ok(Some(Pending { id: id.to_owned(), csrf: row.try_get("csrf")?, params, client }))
    }

    pub async fn finish_request(&self, id: &str) -> Result<(), OidcError> {
        sqlx::query("DELETE FROM oidc_requests WHERE id = $1").bind(id).execute(self.db.pool()).await?;
        Ok(())
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
        let hash: Option<String> = match &user_id {
            Some(id) => {
                sqlx::query_scalar("SELECT hash FROM oidc_passwords WHERE user_id = $1")
                    .bind(id)
                    .fetch_optional(self.db.pool())
                    .await?
            }
            None => None,
        };
        let ok = self.verify_hash(hash, password.to_owned()).await?;
        if ok {
            self.throttle.succeeded(name, addr).await?;
            return Ok(user_id);
        }
        tracing::warn!(event = "signin_failed", account = name, %addr, known = user_id.is_some(), "password sign-in failed");
        metrics::counter!("sichat_oidc_login_failures_total").increment(1);
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
        sqlx::query("DELETE FROM oidc_passwords WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO oidc_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Whoever knew the old password may hold a session or tokens: they all end with it.
        self.accounts.sign_out_everywhere_on(&mut tx, user_id, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A browser session for a user who just signed in `how`; its token (the cookie).
    pub async fn start_session(&self, user_id: &str, how: SignIn) -> Result<String, OidcError> {
        let token = random_token();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO oidc_sessions (token_hash, user_id, auth_time, amr, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&token))
        .bind(user_id)
        .bind(now)
        .bind(how.stored())
        .bind(now + SESSION_TTL_MS)
        .execute(self.db.pool())
        .await?;
        metrics::counter!("sichat_oidc_logins_total").increment(1);
        Ok(token)
    }

    pub async fn session(&self, token: &str) -> Result<Option<BrowserSession>, OidcError> {
        let row = sqlx::query(
            "SELECT s.user_id, s.auth_time, s.amr, u.name FROM oidc_sessions s JOIN acct_users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.status = 'active'",
        )
        .bind(token_hash(token))
        .bind(now_ms())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok(BrowserSession {
                user_id: r.try_get("user_id")?,
                user_name: r.try_get("name")?,
                auth_time: r.try_get("auth_time")?,
                amr: r.try_get("amr")?,
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, token: &str) -> Result<(), OidcError> {
        sqlx::query("DELETE FROM oidc_sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    // ---- consent ----

    async fn consented(&self, user_id: &str, client_id: &str, scope: &str) -> Result<bool, OidcError> {
        let given: Option<String> =
            sqlx::query_scalar("SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(self.db.pool())
                .await?;
        let given = given.unwrap_or_default();
        let given = scope_set(&given);
        Ok(scope_set(scope).iter().all(|s| given.contains(s)))
    }

    /// Remember consent to `scope` (added to what was given before).
    pub async fn consent(&self, user_id: &str, client_id: &str, scope: &str) -> Result<(), OidcError> {
        let mut tx = self.db.pool().begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
        let mut all = scope_set(before.as_deref().unwrap_or_default());
        all.extend(scope_set(scope));
        all.sort_unstable();
        all.dedup();
        sqlx::query("DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO oidc_consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(client_id)
            .bind(all.join(" "))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sites a user has consented to.
    pub async fn consents(&self, user_id: &str) -> Result<Vec<Value>, OidcError> {
        let rows = sqlx::query(
            "SELECT c.client_id, c.scope, c.created_at, k.metadata FROM oidc_consents c \
             JOIN oidc_clients k ON k.id = c.client_id WHERE c.user_id = $1 ORDER BY c.created_at DESC",
        )
        .bind(user_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let meta: Value = serde_json::from_str(&r.try_get::<String, _>("metadata")?).unwrap_or_default();
                Ok(json!({
                    "client_id": r.try_get::<String, _>("client_id")?,
                    "client_name": meta.get("client_name"),
                    "redirect_uris": meta.get("redirect_uris"),
                    "scope": r.try_get::<String, _>("scope")?,
                    "created_at": r.try_get::<i64, _>("created_at")?,
                }))
            })
            .collect()
    }

    /// Withdraw consent: the site must ask again, and its tokens for this user end.
    pub async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool, OidcError> {
        let mut tx = self.db.pool().begin().await?;
        let gone = sqlx::query("DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE oidc_tokens SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(user_id)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(gone > 0)
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

    // ---- codes and tokens ----

    /// A single-use code for `p`, for the signed-in user.
    pub async fn issue_code(&self, p: &AuthParams, s: &BrowserSession) -> Result<String, OidcError> {
        let code = random_token();
        let row = CodeRow {
            code_hash: token_hash(&code),
            client_id: p.client_id.clone(),
            user_id: s.user_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scope: p.scope.clone(),
            nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone(),
            auth_time: s.auth_time,
            amr: s.amr.clone(),
            expires_at: now_ms() + CODE_TTL_MS,
        };
        self.writer.write(Write::Code(row)).await?;
        Ok(code)
    }

    /// Authenticate the client at the token, revocation or introspection endpoint.
    pub async fn authenticate_client(
        &self,
        basic: Option<(String, String)>,
        form: &HashMap<String, String>,
    ) -> Result<Arc<Client>, OidcError> {
        if let Some(kind) = form.get("client_assertion_type") {
            if basic.is_some() || form.contains_key("client_secret") {
                return Err(OidcError::bad("invalid_request", "use one client authentication method, not two"));
            }
            if kind != JWT_BEARER {
                return Err(OidcError::invalid_client(format!("client_assertion_type must be {JWT_BEARER}")));
            }
            let assertion = form
                .get("client_assertion")
                .ok_or_else(|| OidcError::invalid_client("client_assertion is required"))?;
            return self.client_by_assertion(assertion, form.get("client_id").map(String::as_str)).await;
        }
        let posted = (form.get("client_id").cloned(), form.get("client_secret").cloned());
        let (id, secret, method) = match (basic, posted) {
            (Some(_), (_, Some(_))) => {
                return Err(OidcError::bad("invalid_request", "use one client authentication method, not two"))
            }
            (Some((id, secret)), _) => (id, Some(secret), "client_secret_basic"),
            (None, (Some(id), Some(secret))) => (id, Some(secret), "client_secret_post"),
            (None, (Some(id), None)) => (id, None, "none"),
            (None, (None, _)) => return Err(OidcError::invalid_client("client authentication is required")),
        };
        let client = self.client(&id).await?.ok_or_else(|| OidcError::invalid_client("unknown client"))?;
        if client.metadata.token_endpoint_auth_method != method {
            return Err(OidcError::invalid_client(format!(
                "this client authenticates with {}",
                client.metadata.token_endpoint_auth_method
            )));
        }
        if let Some(secret) = secret {
            // Stored as SHA-256 of a 256-bit random secret, so checking costs one hash; the
            // comparison takes the same time wherever the digests differ.
            let presented = token_hash(&secret);
            let matches =
                client.secret_hash.as_deref().is_some_and(|h| bool::from(h.as_bytes().ct_eq(presented.as_bytes())));
            if !matches {
                return Err(OidcError::invalid_client("wrong client secret"));
            }
        }
        Ok(client)
    }

    /// `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a JWT signed by one of the client's
    /// registered keys, for this provider, short-lived, and used once.
    async fn client_by_assertion(&self, assertion: &str, posted_id: Option<&str>) -> Result<Arc<Client>, OidcError> {
        let bad = |why: &str| OidcError::invalid_client(format!("client assertion: {why}"));
        let (header, claims) =
            sichat_core::jws::unverified_parts(assertion).map_err(|_| bad("not a compact JWS with a JSON payload"))?;
        let id = claims.get("iss").and_then(Value::as_str).ok_or_else(|| bad("iss is missing"))?;
        if claims.get("sub").and_then(Value::as_str) != Some(id) {
            return Err(bad("sub must equal iss (the client_id)"));
        }
        if posted_id.is_some_and(|p| p != id) {
            return Err(bad("client_id does not match the assertion's issuer"));
        }
        let client = self.client(id).await?.ok_or_else(|| OidcError::invalid_client("unknown client"))?;
        if client.metadata.token_endpoint_auth_method != "private_key_jwt" {
            return Err(OidcError::invalid_client(format!(
                "this client authenticates with {}",
                client.metadata.token_endpoint_auth_method
            )));
        }
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
        if !keys::ALGS.contains(&alg)
            || client.metadata.token_endpoint_auth_signing_alg.as_deref().is_some_and(|a| a != alg)
        {
            return Err(bad(&format!("alg {alg} is not accepted for this client")));
        }
        let jwks = match (&client.metadata.jwks, &client.metadata.jwks_uri) {
            (Some(j), _) => j.clone(),
            (None, Some(uri)) => self.fetcher.get_json(uri).await.map_err(|e| bad(&format!("jwks_uri: {e}")))?,
            (None, None) => return Err(bad("the client has no keys")),
        };
        let kid = header.get("kid").and_then(Value::as_str);
        let candidates: Vec<&Value> = jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid).collect())
            .unwrap_or_default();
        let verified = candidates.iter().any(|k| {
            let Some(jwk) = k.as_object().and_then(|m| josekit::jwk::Jwk::from_map(m.clone()).ok()) else {
                return false;
            };
            keys::verifier_for(alg, &jwk).is_ok_and(|v| josekit::jws::deserialize_compact(assertion, &*v).is_ok())
        });
        if !verified {
            return Err(bad("the signature does not match any of the client's keys"));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ours = [self.issuer.clone(), self.url("oidc/token"), self.url("oidc/revoke"), self.url("oidc/introspect")];
        if !audiences.iter().any(|a| ours.iter().any(|o| o == a)) {
            return Err(bad("aud must be this provider's issuer or token endpoint"));
        }
        let now = now_ms();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| bad("exp is missing"))? * 1000;
        if exp <= now {
            return Err(bad("it has expired"));
        }
        if exp > now + ASSERTION_MAX_TTL_MS {
            return Err(bad("exp is more than 10 minutes away"));
        }
        if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat * 1000 > now + 60_000) {
            return Err(bad("iat is in the future"));
        }
        let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= 256);
        let jti = jti.ok_or_else(|| bad("jti is missing or too long"))?;
        let fresh = sqlx::query(
            "INSERT INTO oidc_client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(&client.id)
        .bind(jti)
        .bind(exp)
        .execute(self.db.pool())
        .await?;
        if fresh.rows_affected() != 1 {
            return Err(bad("it was already used (jti replay)"));
        }
        Ok(client)
    }

    fn subject(&self, client: &Client, user_id: &str) -> String {
        if client.metadata.subject_type == "public" {
            return user_id.to_owned();
        }
        let mut h = Sha256::new();
        h.update(&self.pairwise_salt);
        h.update(client.sector().as_bytes());
        h.update([0]);
        h.update(user_id.as_bytes());
        b64url(&h.finalize())
    }

    /// A new token and the row that stores it (keyed by [`token_key`]).
    fn new_token(kind: &'static str, client: &Client, g: &Grant<'_>) -> (String, TokenRow) {
        let token = format!("{}.{}", new_id(), random_token());
        let now = now_ms();
        let ttl = if kind == "refresh" { REFRESH_TTL_MS } else { ACCESS_TTL_MS };
        let row = TokenRow {
            token_hash: token_key(&token),
            kind,
            client_id: client.id.clone(),
            user_id: g.user_id.map(str::to_owned),
            scope: g.scope.to_owned(),
            family: g.family.to_owned(),
            code_hash: g.code_hash.map(str::to_owned),
            auth_time: g.auth_time,
            // Only a refresh token needs it (for the ID tokens of later refreshes).
            amr: g.amr.filter(|_| kind == "refresh").map(str::to_owned),
            created_at: now,
            expires_at: now + ttl,
        };
        (token, row)
    }

    /// Access token, ID token and (with `offline_access`) refresh token, for a user's grant,
    /// stored in one write with the spending of the code or refresh token redeemed.
    async fn token_response(
        &self,
        spend: Spend,
        client: &Client,
        g: &Grant<'_>,
        nonce: Option<&str>,
    ) -> Result<Value, OidcError> {
        let (user_id, scope) = (g.user_id.unwrap_or_default(), g.scope);
        let auth_time = g.auth_time.unwrap_or_else(now_ms);
        let (access, access_row) = Self::new_token("access", client, g);
        let mut rows = vec![access_row];
        let refresh = match scope_set(scope).contains(&"offline_access") {
            true => {
                let (refresh, row) = Self::new_token("refresh", client, g);
                rows.push(row);
                Some(refresh)
            }
            false => None,
        };
        if self.writer.write(Write::Tokens { spend: Some(spend), tokens: rows }).await? == Outcome::AlreadySpent {
            return Err(invalid_grant("the code or refresh token was already used"));
        }
        let now = now_ms() / 1000;
        let digest = Sha256::digest(access.as_bytes());
        let mut claims = json!({
            "iss": self.issuer,
            "sub": self.subject(client, user_id),
            "aud": client.id,
            "azp": client.id,
            "iat": now,
            "exp": now + ID_TOKEN_TTL_SECS,
            "auth_time": auth_time / 1000,
            "at_hash": b64url(&digest[..16]),
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let amr = crate::amr::from_stored(g.amr);
        if !amr.is_empty() {
            claims["amr"] = json!(amr);
        }
        if let Some(map) = claims.as_object_mut() {
            map.extend(self.backed_claims(user_id, scope).await?);
        }
        let keys = self.keys();
        let key = keys.signer(&client.metadata.id_token_signed_response_alg)?;
        let mut out = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL_MS / 1000,
            "scope": scope,
            "id_token": key.sign(&claims)?,
        });
        if let Some(r) = refresh {
            out["refresh_token"] = json!(r);
        }
        Ok(out)
    }

    pub async fn token(&self, client: &Client, form: &HashMap<String, String>) -> Result<Value, OidcError> {
        let grant = form.get("grant_type").map(String::as_str).unwrap_or_default();
        if !client.metadata.grant_types.iter().any(|g| g == grant) && !grant.is_empty() {
            return Err(OidcError::bad("unauthorized_client", format!("this client may not use {grant}")));
        }
        let result = match grant {
            "authorization_code" => self.code_grant(client, form).await,
            "refresh_token" => self.refresh_grant(client, form).await,
            "client_credentials" => self.client_credentials(client, form).await,
            "" => Err(OidcError::bad("invalid_request", "grant_type is required")),
            other => Err(OidcError::bad("unsupported_grant_type", format!("{other} is not supported"))),
        };
        // Only grant types the client registered get here: static labels, bounded series.
        let label = clients::GRANT_TYPES.iter().find(|g| **g == grant).copied().unwrap_or("none");
        let ok = if result.is_ok() { "true" } else { "false" };
        metrics::counter!("sichat_oidc_token_requests_total", "grant" => label, "ok" => ok).increment(1);
        result
    }

    async fn code_grant(&self, client: &Client, form: &HashMap<String, String>) -> Result<Value, OidcError> {
        let code = form.get("code").ok_or_else(|| OidcError::bad("invalid_request", "code is required"))?;
        let verifier =
            form.get("code_verifier").ok_or_else(|| OidcError::bad("invalid_request", "code_verifier is required"))?;
        let hash = token_hash(code);
        let now = now_ms();
        let row = sqlx::query(
            "SELECT client_id, user_id, redirect_uri, scope, nonce, code_challenge, auth_time, amr, expires_at, \
             used_at FROM oidc_codes WHERE code_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| invalid_grant("unknown authorization code"))?;
        if row.try_get::<String, _>("client_id")? != client.id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            // A replayed code: everything issued from it ends (RFC 6749 §4.1.2).
            self.revoke_family(&hash).await?;
            return Err(invalid_grant("the code was already used; its tokens are revoked"));
        }
        // A failed redemption spends the code all the same.
        let refuse = |why: &'static str| {
            let spend = Write::Tokens { spend: Some(Spend::Code { hash: hash.clone(), at: now }), tokens: vec![] };
            async move {
                self.writer.write(spend).await?;
                Err::<Value, _>(invalid_grant(why))
            }
        };
        if row.try_get::<i64, _>("expires_at")? <= now {
            return refuse("the code has expired").await;
        }
        if form.get("redirect_uri") != Some(&row.try_get::<String, _>("redirect_uri")?) {
            return refuse("redirect_uri does not match the authorization request").await;
        }
        if !is_pkce_value(verifier) || s256(verifier) != row.try_get::<String, _>("code_challenge")? {
            return refuse("code_verifier does not match the code_challenge").await;
        }
        let user_id: String = row.try_get("user_id")?;
        let scope: String = row.try_get("scope")?;
        let nonce: Option<String> = row.try_get("nonce")?;
        let auth_time: i64 = row.try_get("auth_time")?;
        let amr: Option<String> = row.try_get("amr")?;
        let grant = Grant {
            user_id: Some(&user_id),
            scope: &scope,
            family: &hash,
            code_hash: Some(&hash),
            auth_time: Some(auth_time),
            amr: amr.as_deref(),
        };
        let spend = Spend::Code { hash: hash.clone(), at: now };
        self.token_response(spend, client, &grant, nonce.as_deref()).await
    }

    async fn refresh_grant(&self, client: &Client, form: &HashMap<String, String>) -> Result<Value, OidcError> {
        let token =
            form.get("refresh_token").ok_or_else(|| OidcError::bad("invalid_request", "refresh_token is required"))?;
        let hash = token_key(token);
        let now = now_ms();
        let row = sqlx::query(
            "SELECT client_id, user_id, scope, family, auth_time, amr, expires_at, used_at, revoked_at FROM oidc_tokens \
             WHERE token_hash = $1 AND kind = 'refresh'",
        )
        .bind(&hash)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| invalid_grant("unknown refresh token"))?;
        if row.try_get::<String, _>("client_id")? != client.id {
            return Err(invalid_grant("the refresh token was issued to another client"));
        }
        let family: String = row.try_get("family")?;
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            // A rotated token came back: someone holds a copy. End the whole family.
            self.revoke_family(&family).await?;
            metrics::counter!("sichat_oidc_refresh_reuse_total").increment(1);
            return Err(invalid_grant("the refresh token was already used; its family is revoked"));
        }
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() || row.try_get::<i64, _>("expires_at")? <= now {
            return Err(invalid_grant("the refresh token is revoked or expired"));
        }
        let user_id: Option<String> = row.try_get("user_id")?;
        let user_id = user_id.ok_or_else(|| invalid_grant("not a user's refresh token"))?;
        if self.accounts.account(&user_id).await.is_err() {
            return Err(invalid_grant("the account is gone"));
        }
        let granted: String = row.try_get("scope")?;
        let scope = match form.get("scope") {
            None => granted.clone(),
            Some(asked) => {
                let g = scope_set(&granted);
                if scope_set(asked).iter().any(|s| !g.contains(s)) {
                    return Err(OidcError::bad("invalid_scope", "a refresh cannot widen the granted scope"));
                }
                let mut asked = scope_set(asked);
                if !asked.contains(&"offline_access") {
                    asked.push("offline_access");
                }
                asked.join(" ")
            }
        };
        let auth_time: Option<i64> = row.try_get("auth_time")?;
        let amr: Option<String> = row.try_get("amr")?;
        let grant = Grant {
            user_id: Some(&user_id),
            scope: &scope,
            family: &family,
            code_hash: None,
            auth_time,
            amr: amr.as_deref(),
        };
        // Spending it is guarded (unused, unrevoked): rotation stays single-use under
        // concurrency.
        self.token_response(Spend::Refresh { hash, at: now }, client, &grant, None).await
    }

    async fn client_credentials(&self, client: &Client, form: &HashMap<String, String>) -> Result<Value, OidcError> {
        if client.is_public() {
            return Err(OidcError::bad("unauthorized_client", "client_credentials needs a confidential client"));
        }
        let asked = form.get("scope").cloned().unwrap_or_default();
        let allowed = client.metadata.scope.clone().unwrap_or_default();
        let allowed = scope_set(&allowed);
        if let Some(s) = scope_set(&asked).iter().find(|s| !allowed.contains(s)) {
            return Err(OidcError::bad("invalid_scope", format!("scope {s} is not registered for this client")));
        }
        // Time-ordered, like the token's key: a batch of grants appends to the family index.
        let family = new_id();
        let grant =
            Grant { user_id: None, scope: &asked, family: &family, code_hash: None, auth_time: None, amr: None };
        let (access, row) = Self::new_token("access", client, &grant);
        self.writer.write(Write::Tokens { spend: None, tokens: vec![row] }).await?;
        Ok(json!({"access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TTL_MS / 1000, "scope": asked}))
    }

    async fn revoke_family(&self, family: &str) -> Result<(), OidcError> {
        sqlx::query("UPDATE oidc_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(family)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// A live access token: its user, client and scope.
    pub async fn access(&self, token: &str) -> Result<Option<(Option<String>, String, String)>, OidcError> {
        let row = sqlx::query(
            "SELECT user_id, client_id, scope FROM oidc_tokens WHERE token_hash = $1 AND kind = 'access' \
             AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_key(token))
        .bind(now_ms())
        .fetch_optional(&mut *self.db.read().await?)
        .await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("client_id")?, r.try_get("scope")?))).transpose()
    }

    pub async fn userinfo(&self, token: &str) -> Result<Value, OidcError> {
        let denied = |why: &str| OidcError::new(StatusCode::UNAUTHORIZED, "invalid_token", why);
        let (user_id, client_id, scope) =
            self.access(token).await?.ok_or_else(|| denied("unknown, expired or revoked access token"))?;
        let user_id = user_id.ok_or_else(|| denied("this token is not a user's"))?;
        if !scope_set(&scope).contains(&"openid") {
            return Err(OidcError::new(StatusCode::FORBIDDEN, "insufficient_scope", "the token lacks openid"));
        }
        let client = self.client(&client_id).await?.ok_or_else(|| denied("the client is gone"))?;
        let account = self.accounts.account(&user_id).await.map_err(|_| denied("the account is gone"))?;
        let mut out = json!({"sub": self.subject(&client, &user_id)});
        if scope_set(&scope).contains(&"profile") {
            out["preferred_username"] = json!(account.name);
            out["name"] = json!(account.name);
        }
        if let Some(map) = out.as_object_mut() {
            map.extend(self.backed_claims(&user_id, &scope).await?);
        }
        Ok(out)
    }

    /// RFC 7009: revoke a token of this client. Unknown tokens are not an error.
    pub async fn revoke(&self, client: &Client, token: &str) -> Result<(), OidcError> {
        let key = token_key(token);
        let row = sqlx::query("SELECT kind, family, client_id FROM oidc_tokens WHERE token_hash = $1")
            .bind(&key)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(()) };
        if row.try_get::<String, _>("client_id")? != client.id {
            return Ok(());
        }
        if row.try_get::<String, _>("kind")? == "refresh" {
            return self.revoke_family(&row.try_get::<String, _>("family")?).await;
        }
        sqlx::query("UPDATE oidc_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(&key)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// RFC 7662: what a token of this client is, if it is live.
    pub async fn introspect(&self, client: &Client, token: &str) -> Result<Value, OidcError> {
        let row = sqlx::query(
            "SELECT kind, client_id, user_id, scope, created_at, expires_at FROM oidc_tokens WHERE token_hash = $1 \
             AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_key(token))
        .bind(now_ms())
        .fetch_optional(&mut *self.db.read().await?)
        .await?;
        let Some(row) = row else { return Ok(json!({"active": false})) };
        if row.try_get::<String, _>("client_id")? != client.id {
            return Ok(json!({"active": false}));
        }
        let user_id: Option<String> = row.try_get("user_id")?;
        let mut out = json!({
            "active": true,
            "scope": row.try_get::<String, _>("scope")?,
            "client_id": client.id,
            "token_type": if row.try_get::<String, _>("kind")? == "refresh" { "refresh_token" } else { "Bearer" },
            "iat": row.try_get::<i64, _>("created_at")? / 1000,
            "exp": row.try_get::<i64, _>("expires_at")? / 1000,
            "iss": self.issuer,
        });
        if let Some(u) = user_id {
            out["sub"] = json!(self.subject(client, &u));
        }
        Ok(out)
    }

    /// The client an `id_token_hint` was issued to, if we signed it.
    pub fn hinted_client(&self, id_token: &str) -> Option<String> {
        let claims: Value = serde_json::from_slice(&self.keys().verify(id_token)?).ok()?;
        if claims.get("iss")?.as_str()? != self.issuer {
            return None;
        }
        claims.get("aud")?.as_str().map(str::to_owned)
    }

    /// Housekeeping: expired requests, codes, sessions and tokens.
    pub async fn purge_expired(&self) -> Result<u64, OidcError> {
        let now = now_ms();
        let mut n = 0;
        for sql in [
            "DELETE FROM oidc_requests WHERE expires_at <= $1",
            "DELETE FROM oidc_codes WHERE expires_at <= $1",
            "DELETE FROM oidc_sessions WHERE expires_at <= $1",
            "DELETE FROM oidc_tokens WHERE expires_at <= $1",
            "DELETE FROM oidc_client_assertions WHERE expires_at <= $1",
            "DELETE FROM oidc_registration_tokens WHERE expires_at <= $1",
            "DELETE FROM oidc_approvals WHERE expires_at <= $1",
            "DELETE FROM oidc_webauthn_ceremonies WHERE expires_at <= $1",
            "DELETE FROM oidc_passkey_links WHERE expires_at <= $1",
        ] {
            n += sqlx::query(sql).bind(now).execute(self.db.pool()).await?.rows_affected();
        }
        n += self.throttle.purge().await?;
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

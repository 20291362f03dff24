//! Relying parties, registered dynamically (RFC 7591) and read back with their
//! registration access token (RFC 7592).

use crate::OidcError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms, random_token, token_hash};
use sichat_core::net::Fetcher;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

pub const AUTH_METHODS: &[&str] = &["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];
mod redirects;
pub use redirects::{check_redirect_uri, redirect_matches};
use redirects::{is_loopback, receiver};

pub const GRANT_TYPES: &[&str] =
    &["authorization_code", "refresh_token", "client_credentials", crate::provider::DEVICE_CODE_GRANT];

/// The metadata a client registers, as stored and served back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// Required only for redirect-based grants (checked in `validate`).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: String,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    #[serde(default = "default_response_types")]
    pub response_types: Vec<String>,
    #[serde(default = "default_subject_type")]
    pub subject_type: String,
    #[serde(default = "default_alg")]
    pub id_token_signed_response_alg: String,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client's public keys for `private_key_jwt`: inline, or at a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// Informational metadata: kept and served back, used for nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// Always honoured: every ID token carries `auth_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_auth_time: Option<bool>,
    /// Where logout tokens are posted (Back-Channel Logout 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// Always honoured: a logout token carries the `sid` whenever the sign-in had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_session_required: Option<bool>,
    /// Loaded in an iframe of the signed-out page, with `iss` and `sid` (Front-Channel
    /// Logout 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontchannel_logout_uri: Option<String>,
    /// Always honoured: `iss` and `sid` are always sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontchannel_logout_session_required: Option<bool>,
    /// Every token request must carry a DPoP proof (RFC 9449 §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens: Option<bool>,
    /// Sign-in only through `/oidc/par` (RFC 9126 §6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_pushed_authorization_requests: Option<bool>,
    /// The only algorithm its request objects may use (RFC 9101).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_object_signing_alg: Option<String>,
    /// Every authorization request must be a signed request object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signed_request_object: Option<bool>,
}

fn default_auth_method() -> String {
    "client_secret_basic".into()
}
fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".into()]
}
fn default_response_types() -> Vec<String> {
    vec!["code".into()]
}
fn default_subject_type() -> String {
    "pairwise".into()
}
fn default_alg() -> String {
    "RS256".into()
}

pub struct Client {
    pub id: String,
    pub secret_hash: Option<String>,
    pub metadata: Metadata,
    /// When the client first completed a flow; `None` until then.
    pub used_at: Option<i64>,
}

impl Client {
    pub fn name(&self) -> &str {
        self.metadata.client_name.as_deref().unwrap_or(&self.id)
    }

    /// The pairwise sector: the host every redirect URI shares (a native app's scheme for
    /// its private-use URIs; loopback only where there is nothing else).
    pub fn sector(&self) -> String {
        if is_document_url(&self.id) {
            return Url::parse(&self.id).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        }
        let receivers: Vec<(String, bool)> = self.metadata.redirect_uris.iter().filter_map(|u| receiver(u)).collect();
        receivers
            .iter()
            .find(|(_, loopback)| !loopback)
            .or(receivers.first())
            .map(|(r, _)| r.clone())
            .unwrap_or_default()
    }

    /// Whether `redirect_uri` is one this client registered ([`redirect_matches`]).
    pub fn allows_redirect(&self, redirect_uri: &str) -> bool {
        self.metadata.redirect_uris.iter().any(|r| redirect_matches(r, redirect_uri))
    }

    pub fn is_native(&self) -> bool {
        self.metadata.application_type.as_deref() == Some("native")
    }

    pub fn is_public(&self) -> bool {
        self.metadata.token_endpoint_auth_method == "none"
    }
}

/// What registration returns: the metadata plus the credentials, shown once.
#[derive(Debug, Serialize)]
pub struct Registered {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    pub registration_access_token: String,
    pub registration_client_uri: String,
    #[serde(flatten)]
    pub metadata: Metadata,
}

fn bad_metadata(why: impl Into<String>) -> OidcError {
    OidcError::bad("invalid_client_metadata", why)
}

/// An inline JWKS: a few public signing keys.
fn check_jwks(jwks: &Value) -> Result<(), OidcError> {
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or_else(|| bad_metadata("jwks must have keys"))?;
    if keys.is_empty() || keys.len() > 10 {
        return Err(bad_metadata("jwks must hold between 1 and 10 keys"));
    }
    for k in keys {
        let jwk = josekit::jwk::Jwk::from_map(k.as_object().cloned().unwrap_or_default())
            .map_err(|e| bad_metadata(format!("jwks holds a bad key: {e}")))?;
        if jwk.parameter("d").is_some() {
            return Err(bad_metadata("jwks must hold public keys only; this one has a private part"));
        }
    }
    Ok(())
}

/// Registered client metadata (RFC 7591, OpenID Connect Registration, and the IANA registry)
/// that this node does not implement. Ignoring one would leave the client believing in a
/// behaviour it does not get (encrypted or signed responses, a default max_age, logout
/// channels, sender-constrained tokens, a software statement's claims), so registration
/// refuses it. Names nobody registered are ignored, as RFC 7591 §2 asks.
const UNSUPPORTED_METADATA: &[&str] = &[
    "sector_identifier_uri",
    "id_token_encrypted_response_alg",
    "id_token_encrypted_response_enc",
    "userinfo_signed_response_alg",
    "userinfo_encrypted_response_alg",
    "userinfo_encrypted_response_enc",
    "request_object_encryption_alg",
    "request_object_encryption_enc",
    "request_uris",
    "default_max_age",
    "default_acr_values",
    "initiate_login_uri",
    "authorization_signed_response_alg",
    "authorization_encrypted_response_alg",
    "authorization_encrypted_response_enc",
    "introspection_signed_response_alg",
    "introspection_encrypted_response_alg",
    "introspection_encrypted_response_enc",
    "tls_client_certificate_bound_access_tokens",
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
    "software_statement",
];

/// Refuse metadata the node would otherwise drop without a word. `null` and `false` ask for
/// nothing and pass; `require_auth_time` passes, as every ID token carries `auth_time`.
fn refuse_unsupported(body: &Value) -> Result<(), OidcError> {
    let Some(map) = body.as_object() else { return Err(bad_metadata("the metadata must be a JSON object")) };
    let asked = |v: &Value| !matches!(v, Value::Null | Value::Bool(false));
    if let Some(name) = UNSUPPORTED_METADATA.iter().find(|n| map.get(**n).is_some_and(asked)) {
        return Err(bad_metadata(format!("{name} is not supported by this node; register without it")));
    }
    if let Some(t) = map.get("application_type").filter(|v| asked(v)) {
        if !matches!(t.as_str(), Some("web" | "native")) {
            return Err(bad_metadata("application_type must be web or native"));
        }
    }
    Ok(())
}

fn validate(m: &Metadata) -> Result<(), OidcError> {
    if m.redirect_uris.is_empty() && m.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OidcError::bad("invalid_redirect_uri", "redirect_uris is required"));
    }
    if m.redirect_uris.len() > 16 || m.post_logout_redirect_uris.len() > 16 {
        return Err(bad_metadata("at most 16 redirect URIs"));
    }
    let native = m.application_type.as_deref() == Some("native");
    for u in m.redirect_uris.iter().chain(&m.post_logout_redirect_uris) {
        check_redirect_uri(u, native)?;
    }
    // Loopback redirects are the user's own machine, not a sector of their own.
    let receivers: std::collections::HashSet<_> =
        m.redirect_uris.iter().filter_map(|u| receiver(u)).filter(|(_, loopback)| !loopback).collect();
    if m.subject_type == "pairwise" && receivers.len() > 1 {
        return Err(bad_metadata("pairwise subjects need every redirect URI on one host"));
    }
    if !["pairwise", "public"].contains(&m.subject_type.as_str()) {
        return Err(bad_metadata("subject_type must be pairwise or public"));
    }
    if !AUTH_METHODS.contains(&m.token_endpoint_auth_method.as_str()) {
        return Err(bad_metadata(format!("token_endpoint_auth_method must be one of {}", AUTH_METHODS.join(", "))));
    }
    if let Some(g) = m.grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(bad_metadata(format!("grant type {g} is not supported")));
    }
    if m.grant_types.iter().any(|g| g == "client_credentials") && m.token_endpoint_auth_method == "none" {
        return Err(bad_metadata("client_credentials needs a confidential client"));
    }
    if m.response_types.iter().any(|r| r != "code") {
        return Err(bad_metadata("only response_type code is supported"));
    }
    if !crate::keys::ALGS.contains(&m.id_token_signed_response_alg.as_str()) {
        return Err(bad_metadata(format!(
            "id_token_signed_response_alg must be one of {}",
            crate::keys::ALGS.join(", ")
        )));
    }
    if m.request_object_signing_alg.as_deref().is_some_and(|a| !crate::keys::ALGS.contains(&a)) {
        return Err(bad_metadata(format!(
            "request_object_signing_alg must be one of {}",
            crate::keys::ALGS.join(", ")
        )));
    }
    let signs_requests = m.request_object_signing_alg.is_some() || m.require_signed_request_object == Some(true);
    if signs_requests && m.jwks.is_none() && m.jwks_uri.is_none() {
        return Err(bad_metadata("signed request objects need the client's keys: register jwks or jwks_uri"));
    }
    if m.token_endpoint_auth_signing_alg.as_deref().is_some_and(|a| !crate::keys::ALGS.contains(&a)) {
        return Err(bad_metadata(format!(
            "token_endpoint_auth_signing_alg must be one of {}",
            crate::keys::ALGS.join(", ")
        )));
    }
    match (m.token_endpoint_auth_method.as_str(), &m.jwks, &m.jwks_uri) {
        ("private_key_jwt", Some(_), Some(_)) => return Err(bad_metadata("send jwks or jwks_uri, not both")),
        ("private_key_jwt", None, None) => return Err(bad_metadata("private_key_jwt needs jwks or jwks_uri")),
        ("private_key_jwt", Some(jwks), None) => check_jwks(jwks)?,
        // Keys for request objects too, whatever the client authenticates with.
        (_, Some(_), Some(_)) => return Err(bad_metadata("send jwks or jwks_uri, not both")),
        (_, Some(jwks), None) => check_jwks(jwks)?,
        (_, None, Some(uri)) => {
            let u = Url::parse(uri).map_err(|_| bad_metadata("jwks_uri is not a URL"))?;
            if u.scheme() != "https" && !is_loopback(&u) {
                return Err(bad_metadata("jwks_uri must be https"));
            }
        }
        _ => {}
    }
    if let Some(uri) = &m.backchannel_logout_uri {
        let u = Url::parse(uri).map_err(|_| bad_metadata("backchannel_logout_uri is not a URL"))?;
        if (u.scheme() != "https" && !is_loopback(&u)) || u.fragment().is_some() || uri.len() > 2048 {
            return Err(bad_metadata("backchannel_logout_uri must be https (http only on loopback), with no fragment"));
        }
    }
    if let Some(uri) = &m.frontchannel_logout_uri {
        // Front-Channel Logout §2: the same scheme, host and port as a redirect URI.
        let u = Url::parse(uri).map_err(|_| bad_metadata("frontchannel_logout_uri is not a URL"))?;
        let same_origin = m.redirect_uris.iter().filter_map(|r| Url::parse(r).ok()).any(|r| r.origin() == u.origin());
        if !same_origin || !matches!(u.scheme(), "https" | "http") || u.fragment().is_some() || uri.len() > 2048 {
            return Err(bad_metadata(
                "frontchannel_logout_uri must share the scheme, host and port of a redirect URI, with no fragment",
            ));
        }
    }
    let informational = [&m.client_uri, &m.logo_uri, &m.policy_uri, &m.tos_uri, &m.software_id, &m.software_version];
    let contacts = m.contacts.iter().flatten();
    if informational.into_iter().flatten().chain(contacts).any(|v| v.len() > 2048) {
        return Err(bad_metadata("a metadata value is longer than 2048 bytes"));
    }
    if m.contacts.as_ref().is_some_and(|c| c.len() > 10) {
        return Err(bad_metadata("at most 10 contacts"));
    }
    if m.client_name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(bad_metadata("client_name is longer than 100 characters"));
    }
    Ok(())
}

/// Who may register clients on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationPolicy {
    /// Anyone (the default: a site needs no prior arrangement with the node).
    #[default]
    Open,
    /// Nobody; dynamic registration is refused.
    Off,
    /// Holders of an initial access token (`sichatd admin client-token`), single-use.
    InviteOnly,
    /// Clients whose redirect URIs are all on listed hosts.
    AllowList,
}

#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub policy: RegistrationPolicy,
    pub allowed_hosts: Vec<String>,
    /// `pairwise` (the default) or `public`, for clients that do not say.
    pub default_subject_type: String,
}

impl Registration {
    /// May a client with these redirect URIs register (or present a metadata document)?
    fn admits(&self, m: &Metadata) -> Result<(), OidcError> {
        match self.policy {
            RegistrationPolicy::Off => Err(OidcError::new(
                axum::http::StatusCode::FORBIDDEN,
                "access_denied",
                "client registration is off on this node; ask its owner to register your client",
            )),
            RegistrationPolicy::AllowList => {
                let uris = m
                    .redirect_uris
                    .iter()
                    .chain(&m.post_logout_redirect_uris)
                    .chain(&m.jwks_uri)
                    .chain(&m.backchannel_logout_uri);
                for u in uris {
                    let host = Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
                    if !host.as_ref().is_some_and(|h| self.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h))) {
                        return Err(OidcError::bad(
                            "invalid_redirect_uri",
                            format!("{u}: its host is not on this node's allow-list"),
                        ));
                    }
                }
                Ok(())
            }
            RegistrationPolicy::Open | RegistrationPolicy::InviteOnly => Ok(()),
        }
    }
}

fn bad_initial_token(why: &str) -> OidcError {
    OidcError::new(axum::http::StatusCode::UNAUTHORIZED, "invalid_token", why)
}

/// RFC 7591 registration under the node's policy. `initial_token` is the bearer token the
/// request carried, if any.
pub async fn register(
    db: &Db,
    body: Value,
    registration_base: &str,
    policy: &Registration,
    initial_token: Option<&str>,
) -> Result<Registered, OidcError> {
    let mut body = body;
    if let Some(map) = body.as_object_mut().filter(|_| !policy.default_subject_type.is_empty()) {
        map.entry("subject_type").or_insert_with(|| policy.default_subject_type.clone().into());
    }
    refuse_unsupported(&body)?;
    let metadata: Metadata =
        serde_json::from_value(body).map_err(|e| bad_metadata(sichat_core::json::describe(e).to_string()))?;
    validate(&metadata)?;
    policy.admits(&metadata)?;
    let id = new_id();
    let secret = metadata.token_endpoint_auth_method.starts_with("client_secret").then(random_token);
    let registration = random_token();
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    if policy.policy == RegistrationPolicy::InviteOnly {
        let token = initial_token.ok_or_else(|| {
            bad_initial_token(
                "this node registers clients by invitation: send its initial access token as a Bearer token",
            )
        })?;
        let used = sqlx::query(
            "UPDATE oidc_registration_tokens SET used_at = $1, client_id = $2 \
             WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&id)
        .bind(token_hash(token))
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Err(bad_initial_token("the initial access token is unknown, used or expired"));
        }
    }
    sqlx::query(
        "INSERT INTO oidc_clients (id, secret_hash, registration_hash, metadata, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(secret.as_deref().map(token_hash))
    .bind(token_hash(&registration))
    .bind(serde_json::to_string(&metadata).map_err(OidcError::internal)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("sichat_oidc_clients_registered_total").increment(1);
    Ok(Registered {
        client_secret_expires_at: secret.as_ref().map(|_| 0),
        client_secret: secret,
        client_id_issued_at: now / 1000,
        registration_access_token: registration,
        registration_client_uri: format!("{registration_base}/{id}"),
        client_id: id,
        metadata,
    })
}

/// A single-use initial access token for registration under `invite-only`.
pub async fn create_registration_token(db: &Db, ttl_ms: i64) -> Result<String, OidcError> {
    let token = random_token();
    sqlx::query("INSERT INTO oidc_registration_tokens (token_hash, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(token_hash(&token))
        .bind(now_ms())
        .bind(now_ms() + ttl_ms)
        .execute(db.pool())
        .await?;
    Ok(token)
}

/// Is `id` a client ID metadata document URL rather than a registered id?
pub fn is_document_url(id: &str) -> bool {
    id.starts_with("https://") || id.starts_with("http://")
}

/// How long a fetched metadata document is used before it is fetched again, when the
/// site's own caching headers do not say longer.
const DOCUMENT_FRESH_MS: i64 = 5 * 60_000;
/// How long a stored copy stands in when the site cannot be reached.
const DOCUMENT_STALE_MS: i64 = 24 * 3_600_000;

/// A client identified by the URL of its metadata document
/// (draft-ietf-oauth-client-id-metadata-document), fetched through the safe fetcher. The
/// last good copy is kept in `oidc_clients` (with no secret and no registration token),
/// so requests, consents and tokens refer to it like to any client; it is fetched again
/// after five minutes, and stands in for a day if the site is down. Such clients have no
/// secret, and are refused when registration is `off` or `invite-only`.
pub async fn from_document(db: &Db, fetcher: &Fetcher, id: &str, policy: &Registration) -> Result<Client, OidcError> {
    let bad = |why: String| OidcError::bad("invalid_client", format!("client metadata document {id}: {why}"));
    if !matches!(policy.policy, RegistrationPolicy::Open | RegistrationPolicy::AllowList) {
        return Err(bad("this node accepts only clients its owner registered".into()));
    }
    let u = Url::parse(id).map_err(|_| bad("not a URL".into()))?;
    if u.path().len() < 2 || u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err(bad("the URL needs a path, and no fragment or credentials".into()));
    }
    let stored = find(db, id).await?.filter(|c| c.secret_hash.is_none());
    let stored_at: Option<i64> = match stored {
        Some(_) => {
            sqlx::query_scalar("SELECT created_at FROM oidc_clients WHERE id = $1")
                .bind(id)
                .fetch_optional(db.pool())
                .await?
        }
        None => None,
    };
    let age = stored_at.map(|t| now_ms() - t);
    if let (Some(c), Some(age)) = (&stored, age) {
        if age < DOCUMENT_FRESH_MS {
            return Ok(Client {
                id: c.id.clone(),
                secret_hash: None,
                metadata: c.metadata.clone(),
                used_at: c.used_at,
            });
        }
    }
    let mut doc = match fetcher.get_json(id).await {
        Ok(doc) => doc,
        Err(e) => {
            return match (stored, age) {
                (Some(c), Some(age)) if age < DOCUMENT_STALE_MS => {
                    tracing::warn!(client = %id, error = %e, "using the stored client metadata document");
                    Ok(c)
                }
                _ => Err(bad(e.to_string())),
            }
        }
    };
    if doc.get("client_id").and_then(Value::as_str) != Some(id) {
        return Err(bad("its client_id is not the URL it was fetched from".into()));
    }
    if let Some(map) = doc.as_object_mut() {
        map.remove("client_id");
        map.entry("token_endpoint_auth_method").or_insert_with(|| "none".into());
    }
    refuse_unsupported(&doc).map_err(|e| bad(e.description))?;
    let metadata: Metadata =
        serde_json::from_value(doc).map_err(|e| bad(sichat_core::json::describe(e).to_string()))?;
    if !["none", "private_key_jwt"].contains(&metadata.token_endpoint_auth_method.as_str()) {
        return Err(bad("a metadata document client cannot use a shared secret".into()));
    }
    validate(&metadata).map_err(|e| bad(e.description))?;
    policy.admits(&metadata).map_err(|e| bad(e.description))?;
    // No registration token can match the empty hash, and no secret is stored.
    sqlx::query(
        "INSERT INTO oidc_clients (id, secret_hash, registration_hash, metadata, created_at) \
         VALUES ($1, NULL, '', $2, $3) \
         ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata, created_at = excluded.created_at \
         WHERE oidc_clients.secret_hash IS NULL",
    )
    .bind(id)
    .bind(serde_json::to_string(&metadata).map_err(OidcError::internal)?)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    let used_at = stored.and_then(|c| c.used_at);
    Ok(Client { id: id.to_owned(), secret_hash: None, metadata, used_at })
}

pub async fn find(db: &Db, id: &str) -> Result<Option<Client>, OidcError> {
    let row = sqlx::query("SELECT id, secret_hash, metadata, used_at FROM oidc_clients WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *db.read().await?)
        .await?;
    row.map(|r| {
        let metadata: String = r.try_get("metadata")?;
        Ok(Client {
            id: r.try_get("id")?,
            secret_hash: r.try_get("secret_hash")?,
            metadata: serde_json::from_str(&metadata).map_err(OidcError::internal)?,
            used_at: r.try_get("used_at")?,
        })
    })
    .transpose()
}

/// How long a registered client that never completed a flow is kept.
pub const UNUSED_CLIENT_TTL_MS: i64 = 7 * 24 * 3_600_000;

/// Record that `client` completed a flow (once: later calls cost nothing). Returns whether
/// this changed the row, so the caller drops its cached copy.
pub async fn mark_used(db: &Db, client: &Client) -> Result<bool, OidcError> {
    if client.used_at.is_some() {
        return Ok(false);
    }
    let done = sqlx::query("UPDATE oidc_clients SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(now_ms())
        .bind(&client.id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Housekeeping: clients made before `before` that never completed a flow (open
/// registration lets anyone make them), with what they left behind. Returns how many went.
pub async fn purge_unused(db: &Db, before: i64) -> Result<u64, OidcError> {
    const STALE: &str = "SELECT id FROM oidc_clients WHERE used_at IS NULL AND created_at <= $1";
    let mut tx = db.pool().begin().await?;
    for table in ["oidc_requests", "oidc_client_assertions", "oidc_codes", "oidc_consents", "oidc_tokens"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE client_id IN ({STALE})"))
            .bind(before)
            .execute(&mut *tx)
            .await?;
    }
    let gone = sqlx::query("DELETE FROM oidc_clients WHERE used_at IS NULL AND created_at <= $1")
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    if gone > 0 {
        tracing::info!(clients = gone, "removed registered clients that never completed a sign-in");
    }
    Ok(gone)
}

/// RFC 7592 read: the client's metadata, for the holder of its registration token.
pub async fn read(db: &Db, id: &str, registration_token: &str) -> Result<Metadata, OidcError> {
    let row = sqlx::query("SELECT registration_hash, metadata FROM oidc_clients WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let denied = || OidcError::new(axum::http::StatusCode::UNAUTHORIZED, "invalid_token", "unknown client or token");
    let row = row.ok_or_else(denied)?;
    if row.try_get::<String, _>("registration_hash")? != token_hash(registration_token) {
        return Err(denied());
    }
    serde_json::from_str(&row.try_get::<String, _>("metadata")?).map_err(OidcError::internal)
}

/// How long this process trusts a client it has read before reading it again. Other
/// replicas (and `sichatd` processes sharing the database) see a change within this time.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; when full, every entry is dropped at once (they are cheap to
/// read again, and unknown ids are never cached, so guessing ids cannot fill it).
const CLIENT_CACHE_MAX: usize = 4096;

/// Clients read recently by this process, by id: the token, introspection and revocation
/// endpoints authenticate the same few clients over and over, and each read was a trip to
/// the database plus a JSON parse. Only clients that exist are kept, for
/// [`CLIENT_CACHE_TTL`]; whoever changes a client in this process calls
/// [`ClientCache::put`] or [`ClientCache::forget`], so this process never serves a stale one.
pub struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<Client>)>>,
}

impl Default for ClientCache {
    fn default() -> Self {
        Self::new(CLIENT_CACHE_TTL)
    }
}

impl ClientCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The client `id`, if it was read less than the time to live ago.
    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        let entries = self.entries.lock().ok()?;
        let (at, client) = entries.get(id)?;
        (at.elapsed() < self.ttl).then(|| client.clone())
    }

    /// Remember `client` as just read (or just changed); returns it.
    pub fn put(&self, client: Client) -> Arc<Client> {
        let client = Arc::new(client);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CLIENT_CACHE_MAX {
                entries.clear();
            }
            entries.insert(client.id.clone(), (Instant::now(), client.clone()));
        }
        client
    }

    /// Drop `id`: the next read goes to the database.
    pub fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ip_redirects_match_on_any_port_and_nothing_else() {
        let registered = "http://127.0.0.1/cb?x=1";
        assert!(redirect_matches(registered, "http://127.0.0.1:53211/cb?x=1"));
        assert!(redirect_matches("http://[::1]:8080/cb", "http://[::1]:1/cb"));
        for other in [
            "http://127.0.0.1:53211/cb",
            "http://127.0.0.1:53211/cb?x=2",
            "http://127.0.0.2:53211/cb?x=1",
            "http://localhost:53211/cb?x=1",
            "https://127.0.0.1:53211/cb?x=1",
            "http://u:p@127.0.0.1:53211/cb?x=1",
            "http://127.0.0.1:53211/cb?x=1#f",
        ] {
            assert!(!redirect_matches(registered, other), "{other}");
        }
        // Only loopback IPs: a localhost or https redirect matches exactly.
        assert!(!redirect_matches("http://localhost:8080/cb", "http://localhost:8081/cb"));
        assert!(!redirect_matches("https://app.example/cb", "https://app.example:444/cb"));
        assert!(redirect_matches("com.example.app:/cb", "com.example.app:/cb"));
    }

    #[test]
    fn private_use_schemes_only_for_native_apps_and_as_reverse_domains() {
        assert!(check_redirect_uri("com.example.app:/cb", true).is_ok());
        assert!(check_redirect_uri("com.example.app:/cb", false).is_err());
        for bad in ["myapp:/cb", "javascript:alert(1)", "data:text/html,x", ".com.example:/cb", "com..example:/cb"] {
            assert!(check_redirect_uri(bad, true).is_err(), "{bad}");
        }
        assert!(check_redirect_uri("http://example.com/cb", true).is_err(), "plain http off loopback");
    }

    fn client(id: &str, name: &str) -> Client {
        let metadata = serde_json::from_value(serde_json::json!({"client_name": name})).expect("metadata");
        Client { id: id.into(), secret_hash: None, metadata, used_at: None }
    }

    #[test]
    fn the_cache_keeps_clients_until_forgotten_or_expired() {
        let cache = ClientCache::default();
        assert!(cache.get("a").is_none(), "nothing is known before a read");
        cache.put(client("a", "First"));
        assert_eq!(cache.get("a").map(|c| c.name().to_owned()).as_deref(), Some("First"));
        cache.put(client("a", "Changed"));
        assert_eq!(cache.get("a").map(|c| c.name().to_owned()).as_deref(), Some("Changed"), "a change replaces it");
        cache.forget("a");
        assert!(cache.get("a").is_none(), "forgotten: read again");

        let expired = ClientCache::new(Duration::ZERO);
        expired.put(client("b", "B"));
        assert!(expired.get("b").is_none(), "past its time to live, an entry is not used");
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = ClientCache::default();
        for i in 0..CLIENT_CACHE_MAX {
            cache.put(client(&i.to_string(), "x"));
        }
        assert!(cache.get("0").is_some());
        cache.put(client("one more", "x"));
        assert!(cache.get("0").is_none() && cache.get("one more").is_some());
    }
}

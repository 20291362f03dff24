//! Relying parties, registered dynamically (RFC 7591) and read back with their
//! registration access token (RFC 7592).

use crate::OidcError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms, random_token, token_hash};
use sqlx::Row;
use url::{Host, Url};

pub const AUTH_METHODS: &[&str] = &["client_secret_basic", "client_secret_post", "none"];
pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

/// The metadata a client registers, as stored and served back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
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
}

impl Client {
    pub fn name(&self) -> &str {
        self.metadata.client_name.as_deref().unwrap_or(&self.id)
    }

    /// The pairwise sector: the host every redirect URI shares.
    pub fn sector(&self) -> String {
        self.metadata
            .redirect_uris
            .first()
            .and_then(|u| Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
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

/// A redirect URI we accept: absolute, no fragment, and https unless on loopback.
pub fn check_redirect_uri(uri: &str) -> Result<(), OidcError> {
    let bad = |why: &str| OidcError::bad("invalid_redirect_uri", format!("{uri}: {why}"));
    let u = Url::parse(uri).map_err(|_| bad("not an absolute URL"))?;
    if u.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    let loopback = match u.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost",
        None => return Err(bad("has no host")),
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(bad("must be https (http only on loopback)")),
    }
}

fn validate(m: &Metadata) -> Result<(), OidcError> {
    if m.redirect_uris.is_empty() && m.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OidcError::bad("invalid_redirect_uri", "redirect_uris is required"));
    }
    if m.redirect_uris.len() > 16 || m.post_logout_redirect_uris.len() > 16 {
        return Err(bad_metadata("at most 16 redirect URIs"));
    }
    for u in m.redirect_uris.iter().chain(&m.post_logout_redirect_uris) {
        check_redirect_uri(u)?;
    }
    let hosts: std::collections::HashSet<_> =
        m.redirect_uris.iter().filter_map(|u| Url::parse(u).ok()?.host_str().map(str::to_owned)).collect();
    if m.subject_type == "pairwise" && hosts.len() > 1 {
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
    if m.id_token_signed_response_alg != "RS256" {
        return Err(bad_metadata("id_token_signed_response_alg must be RS256"));
    }
    if m.client_name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(bad_metadata("client_name is longer than 100 characters"));
    }
    Ok(())
}

pub async fn register(db: &Db, body: Value, registration_base: &str) -> Result<Registered, OidcError> {
    let metadata: Metadata = serde_json::from_value(body).map_err(|e| bad_metadata(e.to_string()))?;
    validate(&metadata)?;
    let id = new_id();
    let secret = (metadata.token_endpoint_auth_method != "none").then(random_token);
    let registration = random_token();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO oidc_clients (id, secret_hash, registration_hash, metadata, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(secret.as_deref().map(token_hash))
    .bind(token_hash(&registration))
    .bind(serde_json::to_string(&metadata).map_err(OidcError::internal)?)
    .bind(now)
    .execute(db.pool())
    .await?;
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

pub async fn find(db: &Db, id: &str) -> Result<Option<Client>, OidcError> {
    let row = sqlx::query("SELECT id, secret_hash, metadata FROM oidc_clients WHERE id = $1")
        .bind(id)
        .fetch_optional(db.reads())
        .await?;
    row.map(|r| {
        let metadata: String = r.try_get("metadata")?;
        Ok(Client {
            id: r.try_get("id")?,
            secret_hash: r.try_get("secret_hash")?,
            metadata: serde_json::from_str(&metadata).map_err(OidcError::internal)?,
        })
    })
    .transpose()
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

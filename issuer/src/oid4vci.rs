//! OpenID for Verifiable Credential Issuance 1.0, pre-authorized code flow.
//!
//! One Credential Issuer per user: `<public url>/users/<name>`. Its metadata lives at
//! `/.well-known/openid-credential-issuer/users/<name>` and it is its own Authorization
//! Server (`/.well-known/oauth-authorization-server/users/<name>`).
//!
//! Credentials are W3C VCDM 2.0 secured with VC-JOSE-COSE. OpenID4VCI 1.0's `jwt_vc_json`
//! profile describes VCDM 1.1 JWTs, so, as the specification recommends for new profiles,
//! the format identifier is the credential's media type: `vc+jwt`.

use crate::service::{Format, IssueRequest, Issuer};
use crate::types::CredentialType;
use crate::IssuerError;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sichat_accounts::AuthDevice;
use sichat_core::did::Did;
use sichat_core::ids::{b64url_decode, new_id, now_ms, random_bytes, random_token, token_hash};
use sichat_core::jws;
use sichat_core::p256key::PublicKey;
use sichat_core::resolver::Relationship;
use sqlx::Row;

pub const FORMAT: &str = "vc+jwt";
pub const PRE_AUTH_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
pub const PROOF_TYP: &str = "openid4vci-proof+jwt";
const OFFER_TTL_MS: i64 = 60 * 60 * 1000;
const TOKEN_TTL_MS: i64 = 5 * 60 * 1000;
const NONCE_TTL_MS: i64 = 5 * 60 * 1000;
const MAX_PIN_ATTEMPTS: i64 = 5;
const PROOF_MAX_AGE_SECS: i64 = 300;
/// Tolerance for clocks that disagree, on a proof's `exp`.
const CLOCK_SKEW_SECS: i64 = 60;

/// An OAuth-style error: `{"error", "error_description"}` with its HTTP status.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into() }
    }
    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }
}

impl From<IssuerError> for OAuthError {
    fn from(e: IssuerError) -> Self {
        match e {
            IssuerError::Internal(d) => {
                tracing::error!(error = %d, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
            }
            IssuerError::Account(a) if a.status() == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %a, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
            }
            IssuerError::UnknownType(t) => {
                Self::bad("unknown_credential_configuration", format!("unknown configuration {t}"))
            }
            other => Self::bad("credential_request_denied", other.to_string()),
        }
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        IssuerError::from(e).into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    #[serde(rename = "type")]
    pub type_name: String,
    /// The holder's DID, or `None` for whoever redeems the offer.
    #[serde(default)]
    pub subject: Option<String>,
    pub claims: Map<String, Value>,
    /// Require a 6-digit transaction code (PIN), shown only to the issuer.
    #[serde(default)]
    pub pin: bool,
    #[serde(default)]
    pub valid_until: Option<i64>,
    #[serde(default)]
    pub suspendable: bool,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferCreated {
    pub id: String,
    /// `openid-credential-offer://?credential_offer_uri=…` (by reference).
    pub offer_uri: String,
    /// `openid-credential-offer://?credential_offer=…` (by value).
    pub offer_by_value: String,
    /// The PIN to pass to the holder over another channel.
    pub tx_code: Option<String>,
    pub expires_at: i64,
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    #[serde(rename = "pre-authorized_code")]
    pub pre_authorized_code: Option<String>,
    pub tx_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CredentialRequest {
    pub credential_configuration_id: Option<String>,
    pub credential_identifier: Option<String>,
    pub proofs: Option<Value>,
}

impl Issuer {
    pub fn issuer_id(&self, user_name: &str) -> String {
        self.base_url(user_name)
    }

    fn endpoint(&self, user_name: &str, path: &str) -> String {
        format!("{}/oid4vci/{path}", self.base_url(user_name))
    }

    /// Two credential configurations per credential type of the user: `vc+jwt` under the
    /// type's name, and Data Integrity under `<name>_ldp_vc`.
    fn configurations(&self, t: &CredentialType) -> [(String, Value); 2] {
        let jwt = Self::configuration(t);
        let mut di = jwt.clone();
        di["format"] = json!(Format::LdpVc.as_str());
        let node_url = self.accounts.node().public_url().as_str().to_owned();
        di["credential_definition"]["@context"] =
            json!([crate::credential::VCDM2_CONTEXT, crate::credential::embedded_context(&node_url)]);
        let suite = match t.alg.as_str() {
            "ES256" => crate::data_integrity::ECDSA_RDFC_2019,
            _ => crate::data_integrity::EDDSA_RDFC_2022,
        };
        di["credential_signing_alg_values_supported"] = json!([suite]);
        [(configuration_id(&t.name, Format::VcJwt), jwt), (configuration_id(&t.name, Format::LdpVc), di)]
    }

    fn configuration(t: &CredentialType) -> Value {
        let claims: Vec<Value> = t.schema["properties"]
            .as_object()
            .map(|p| p.keys().map(|k| json!({"path": ["credentialSubject", k]})).collect())
            .unwrap_or_default();
        let mut metadata = json!({"display": [{"name": t.display_name, "locale": "en"}]});
        if !claims.is_empty() {
            metadata["claims"] = Value::Array(claims);
        }
        json!({
            "format": FORMAT,
            "scope": t.name,
            "credential_definition": {"type": ["VerifiableCredential", t.name]},
            "credential_signing_alg_values_supported": [t.alg],
            "cryptographic_binding_methods_supported": ["did:key", "did:jwk", "did:web", "jwk"],
            "proof_types_supported": {"jwt": {"proof_signing_alg_values_supported": crate::types::ALGORITHMS}},
            "credential_metadata": metadata,
        })
    }

    /// Credential Issuer Metadata.
    pub async fn issuer_metadata(&self, user_name: &str) -> Result<Value, IssuerError> {
        let user_id = self.user_id(user_name).await?;
        let configs: Map<String, Value> =
            self.types(&user_id).await?.iter().flat_map(|t| self.configurations(t)).collect();
        Ok(json!({
            "credential_issuer": self.issuer_id(user_name),
            "credential_endpoint": self.endpoint(user_name, "credential"),
            "nonce_endpoint": self.endpoint(user_name, "nonce"),
            "display": [{"name": format!("{user_name} on {}", self.accounts.node().public_url().host_str().unwrap_or("sichat")), "locale": "en"}],
            "credential_configurations_supported": configs,
        }))
    }

    /// OAuth 2.0 Authorization Server Metadata of the per-user issuer.
    pub async fn authorization_server_metadata(&self, user_name: &str) -> Result<Value, IssuerError> {
        self.user_id(user_name).await?;
        Ok(json!({
            "issuer": self.issuer_id(user_name),
            "token_endpoint": self.endpoint(user_name, "token"),
            "grant_types_supported": [PRE_AUTH_GRANT],
            "pre-authorized_grant_anonymous_access_supported": true,
            "token_endpoint_auth_methods_supported": ["none"],
        }))
    }

    /// Make an offer: the claims are checked now, the credential is signed on redemption.
    pub async fn create_offer(&self, me: &AuthDevice, offer: NewOffer) -> Result<OfferCreated, IssuerError> {
        let holder = match offer.subject.as_deref() {
            None | Some("anyone") => None,
            Some(did) => Some(Did::parse(did)?.to_string()),
        };
        // Validate against the schema with the real holder, or a stand-in for "anyone".
        let check = IssueRequest {
            type_name: offer.type_name.clone(),
            subject: holder.clone().unwrap_or_else(|| "did:key:anyone".into()),
            claims: offer.claims.clone(),
            valid_until: offer.valid_until,
            suspendable: offer.suspendable,
            format: offer.format,
        };
        self.prepare(&me.user_id, &me.user_name, check).await?;
        let now = now_ms();
        let id = new_id();
        let code = random_token();
        let pin = offer.pin.then(|| format!("{:06}", u32::from_le_bytes(random_bytes::<4>()) % 1_000_000));
        let expires_at = now + OFFER_TTL_MS;
        sqlx::query(
            "INSERT INTO issuer_offers (id, user_id, type_name, subject, claims, suspendable, valid_until, code_hash, \
             tx_code_hash, status, created_at, expires_at, format) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'offered', $10, $11, $12)",
        )
        .bind(&id)
        .bind(&me.user_id)
        .bind(&offer.type_name)
        .bind(holder)
        .bind(Value::Object(offer.claims).to_string())
        .bind(offer.suspendable as i64)
        .bind(offer.valid_until)
        .bind(token_hash(&code))
        .bind(pin.as_deref().map(|p| pin_hash(&code, p)))
        .bind(now)
        .bind(expires_at)
        .bind(offer.format.as_str())
        .execute(self.db.pool())
        .await?;
        let config = configuration_id(&offer.type_name, offer.format);
        let object = self.offer_object(&me.user_name, &config, &code, pin.is_some());
        let reference = self.endpoint(&me.user_name, &format!("offers/{code}"));
        Ok(OfferCreated {
            id,
            offer_uri: format!("openid-credential-offer://?credential_offer_uri={}", enc(&reference)),
            offer_by_value: format!("openid-credential-offer://?credential_offer={}", enc(&object.to_string())),
            tx_code: pin,
            expires_at,
        })
    }

    fn offer_object(&self, user_name: &str, config: &str, code: &str, pin: bool) -> Value {
        let mut grant = json!({"pre-authorized_code": code});
        if pin {
            grant["tx_code"] =
                json!({"input_mode": "numeric", "length": 6, "description": "The PIN the issuer gave you"});
        }
        json!({
            "credential_issuer": self.issuer_id(user_name),
            "credential_configuration_ids": [config],
            "grants": {PRE_AUTH_GRANT: grant},
        })
    }

    /// The offer object, by reference. The URL carries the pre-authorized code itself. A
    /// burned offer is still served, so that the wallet hears why from the token endpoint.
    pub async fn offer_by_reference(&self, user_name: &str, code: &str) -> Result<Value, IssuerError> {
        let row = sqlx::query(
            "SELECT o.type_name, o.format, o.tx_code_hash FROM issuer_offers o JOIN acct_users u ON u.id = o.user_id \
             WHERE o.code_hash = $1 AND u.name = $2 AND o.status IN ('offered', 'burned') AND o.expires_at > $3",
        )
        .bind(token_hash(code))
        .bind(user_name)
        .bind(now_ms())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| IssuerError::NotFound("no such offer, or it expired or was used".into()))?;
        let type_name: String = row.try_get("type_name")?;
        let format = Format::parse(&row.try_get::<String, _>("format")?)?;
        let pin: Option<String> = row.try_get("tx_code_hash")?;
        Ok(self.offer_object(user_name, &configuration_id(&type_name, format), code, pin.is_some()))
    }

    /// Token Endpoint: a pre-authorized code (and PIN) for a short-lived access token.
    pub async fn token(&self, user_name: &str, req: TokenRequest) -> Result<Value, OAuthError> {
        match req.grant_type.as_deref() {
            Some(PRE_AUTH_GRANT) => {}
            Some(other) => return Err(OAuthError::bad("unsupported_grant_type", format!("{other} is not supported"))),
            None => return Err(OAuthError::bad("invalid_request", "grant_type is missing")),
        }
        let code = req
            .pre_authorized_code
            .ok_or_else(|| OAuthError::bad("invalid_request", "pre-authorized_code is missing"))?;
        let now = now_ms();
        let row = sqlx::query(
            "SELECT o.id, o.tx_code_hash, o.status, o.expires_at FROM issuer_offers o \
             JOIN acct_users u ON u.id = o.user_id WHERE o.code_hash = $1 AND u.name = $2",
        )
        .bind(token_hash(&code))
        .bind(user_name)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| OAuthError::bad("invalid_grant", "unknown pre-authorized code"))?;
        let id: String = row.try_get("id")?;
        let expected_pin: Option<String> = row.try_get("tx_code_hash")?;
        unusable(&row.try_get::<String, _>("status")?, row.try_get("expires_at")?, now)?;
        match (&expected_pin, req.tx_code.as_deref()) {
            (None, Some(_)) => return Err(OAuthError::bad("invalid_request", "this offer takes no tx_code")),
            (Some(_), None) => return Err(OAuthError::bad("invalid_request", "this offer needs its tx_code (PIN)")),
            _ => {}
        }
        // The PIN is checked and a miss counted in one statement: guesses sent at the same
        // time are evaluated one after another, and none once the offer is burned.
        let token = random_token();
        let pin_ok = "(tx_code_hash IS NULL OR tx_code_hash = $1)";
        let outcome = sqlx::query(&format!(
            "UPDATE issuer_offers SET \
             tx_attempts = tx_attempts + CASE WHEN {pin_ok} THEN 0 ELSE 1 END, \
             status = CASE WHEN {pin_ok} THEN 'redeemed' WHEN tx_attempts + 1 >= $2 THEN 'burned' ELSE status END, \
             token_hash = CASE WHEN {pin_ok} THEN $3 ELSE token_hash END, \
             token_expires_at = CASE WHEN {pin_ok} THEN $4 ELSE token_expires_at END \
             WHERE id = $5 AND status = 'offered' AND expires_at > $6 AND tx_attempts < $2 \
             RETURNING status, tx_attempts"
        ))
        .bind(req.tx_code.as_deref().map(|pin| pin_hash(&code, pin)))
        .bind(MAX_PIN_ATTEMPTS)
        .bind(token_hash(&token))
        .bind(now + TOKEN_TTL_MS)
        .bind(&id)
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(outcome) = outcome else {
            // Another request used, burned or outlived the offer since it was read.
            let row = sqlx::query("SELECT status, expires_at FROM issuer_offers WHERE id = $1")
                .bind(&id)
                .fetch_one(self.db.pool())
                .await?;
            unusable(&row.try_get::<String, _>("status")?, row.try_get("expires_at")?, now)?;
            return Err(burned());
        };
        let status: String = outcome.try_get("status")?;
        if status != "redeemed" {
            let attempts: i64 = outcome.try_get("tx_attempts")?;
            metrics::counter!("sichat_oid4vci_pin_misses_total").increment(1);
            let left = (MAX_PIN_ATTEMPTS - attempts).max(0);
            return Err(OAuthError::bad(
                "invalid_grant",
                match left {
                    0 => format!("wrong tx_code (PIN); 0 attempts left: {BURNED}"),
                    _ => format!("wrong tx_code (PIN); {left} attempts left"),
                },
            ));
        }
        Ok(json!({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_MS / 1000}))
    }

    /// Nonce Endpoint: a fresh single-use `c_nonce`.
    pub async fn nonce(&self, user_name: &str) -> Result<Value, IssuerError> {
        let user_id = self.user_id(user_name).await?;
        let nonce = random_token();
        sqlx::query("INSERT INTO issuer_nonces (nonce, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(&nonce)
            .bind(&user_id)
            .bind(now_ms() + NONCE_TTL_MS)
            .execute(self.db.pool())
            .await?;
        Ok(json!({"c_nonce": nonce}))
    }

    /// Credential Endpoint: check the access token and the proof of possession, then sign.
    pub async fn credential(
        &self,
        user_name: &str,
        token: Option<&str>,
        req: CredentialRequest,
    ) -> Result<Value, OAuthError> {
        let token = token.ok_or_else(|| {
            OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_token", "a Bearer access token is required")
        })?;
        let now = now_ms();
        let offer = sqlx::query(
            "SELECT o.id, o.user_id, o.type_name, o.format, o.subject, o.claims, o.suspendable, o.valid_until, o.status, o.token_expires_at \
             FROM issuer_offers o JOIN acct_users u ON u.id = o.user_id WHERE o.token_hash = $1 AND u.name = $2",
        )
        .bind(token_hash(token))
        .bind(user_name)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_token", "unknown access token"))?;
        let status: String = offer.try_get("status")?;
        if status != "redeemed" || offer.try_get::<Option<i64>, _>("token_expires_at")?.unwrap_or(0) <= now {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token was used or has expired",
            ));
        }
        if req.credential_identifier.is_some() {
            return Err(OAuthError::bad(
                "unknown_credential_identifier",
                "this issuer does not use credential identifiers",
            ));
        }
        let type_name: String = offer.try_get("type_name")?;
        let format = Format::parse(&offer.try_get::<String, _>("format")?)?;
        let offered = configuration_id(&type_name, format);
        let config = req
            .credential_configuration_id
            .ok_or_else(|| OAuthError::bad("invalid_credential_request", "credential_configuration_id is missing"))?;
        if config != offered {
            return Err(OAuthError::bad(
                "unknown_credential_configuration",
                format!("this access token is for {offered}, not {config}"),
            ));
        }
        let proofs = req.proofs.ok_or_else(|| OAuthError::bad("invalid_proof", "proofs is missing"))?;
        let jwts = proofs
            .get("jwt")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1 && proofs.as_object().is_some_and(|o| o.len() == 1))
            .ok_or_else(|| OAuthError::bad("invalid_proof", "proofs must hold exactly one jwt proof"))?;
        let proof =
            jwts[0].as_str().ok_or_else(|| OAuthError::bad("invalid_proof", "the jwt proof must be a string"))?;
        let (holder, nonce) = self.check_proof(user_name, proof).await?;
        let wanted: Option<String> = offer.try_get("subject")?;
        if wanted.as_deref().is_some_and(|w| w != holder) {
            return Err(OAuthError::bad("credential_request_denied", "this offer was made for another holder"));
        }
        let user_id: String = offer.try_get("user_id")?;
        let claims: Map<String, Value> =
            serde_json::from_str(&offer.try_get::<String, _>("claims")?).unwrap_or_default();
        let req = IssueRequest {
            type_name,
            subject: holder,
            claims,
            valid_until: offer.try_get("valid_until")?,
            suspendable: offer.try_get::<i64, _>("suspendable")? != 0,
            format,
        };
        let prepared = self.prepare(&user_id, user_name, req).await?;
        let offer_id: String = offer.try_get("id")?;

        let mut tx = self.db.pool().begin().await?;
        let taken = sqlx::query("DELETE FROM issuer_nonces WHERE nonce = $1 AND user_id = $2 AND expires_at > $3")
            .bind(&nonce)
            .bind(&user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if taken.rows_affected() != 1 {
            return Err(OAuthError::bad(
                "invalid_nonce",
                "unknown, expired or used c_nonce: get a new one from the nonce endpoint",
            ));
        }
        let issued = self.issue_prepared(&mut tx, prepared).await?;
        let done = sqlx::query(
            "UPDATE issuer_offers SET status = 'issued', credential_id = $1 WHERE id = $2 AND status = 'redeemed'",
        )
        .bind(&issued.id)
        .bind(&offer_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token was already used",
            ));
        }
        tx.commit().await?;
        // A Data Integrity credential is returned as a JSON object, never re-encoded.
        let credential = match format {
            Format::VcJwt => Value::String(issued.credential),
            Format::LdpVc => serde_json::from_str(&issued.credential)
                .map_err(|e| OAuthError::from(IssuerError::Internal(e.to_string())))?,
        };
        Ok(json!({"credentials": [{"credential": credential}]}))
    }

    /// Check a `jwt` key proof: type, key, signature, audience, age and nonce. Returns the
    /// holder's DID (the credential subject) and the proof's `c_nonce`.
    async fn check_proof(&self, user_name: &str, proof: &str) -> Result<(String, String), OAuthError> {
        let (alg, named) = proof_key(proof)?;
        let (holder, key) = match named {
            ProofKey::Kid(kid) => {
                self.resolve_kid(&kid).await.map_err(|e| OAuthError::bad("invalid_proof", e.to_string()))?
            }
            ProofKey::Jwk(key) => (key.did_jwk(), key),
        };
        let nonce = check_signed_proof(proof, &alg, &key, &self.issuer_id(user_name), now_ms() / 1000)?;
        Ok((holder, nonce))
    }

    /// The key a DID URL names: `did:key`, `did:jwk`, or a `did:web` of this node's users.
    async fn resolve_kid(&self, kid: &str) -> Result<(String, PublicKey), IssuerError> {
        if let Some(found) = offline_key(kid) {
            return found;
        }
        let (did, _) = kid.split_once('#').unwrap_or((kid, ""));
        let parsed = Did::parse(did)?;
        match parsed.method() {
            "web" => {
                let prefix = format!("{}:users:", self.accounts.node().did());
                if let Some(name) = did.strip_prefix(&prefix) {
                    let doc = self.accounts.did_document(name).await?;
                    let key = doc.authentication_key(kid).ok_or_else(|| {
                        IssuerError::InvalidRequest(format!("{kid} is not an authentication key of {did}"))
                    })?;
                    return Ok((did.to_owned(), PublicKey::Ed25519(key)));
                }
                let keys = self.resolver.resolve(did).await.map_err(|e| IssuerError::InvalidRequest(e.to_string()))?;
                let key = keys
                    .key_for(kid, Relationship::Authentication)
                    .map_err(|e| IssuerError::InvalidRequest(e.to_string()))?;
                Ok((did.to_owned(), key))
            }
            other => Err(IssuerError::InvalidRequest(format!("did:{other} is not supported for holder binding"))),
        }
    }

    /// Offers of the user, newest first.
    pub async fn offers(&self, me: &AuthDevice) -> Result<Vec<Value>, IssuerError> {
        let rows = sqlx::query(
            "SELECT id, type_name, subject, status, credential_id, created_at, expires_at FROM issuer_offers \
             WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(&me.user_id)
        .fetch_all(self.db.pool())
        .await?;
        let now = now_ms();
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let expires_at: i64 = r.try_get("expires_at")?;
                let status = if status == "offered" && expires_at <= now { "expired".to_owned() } else { status };
                Ok(json!({
                    "id": r.try_get::<String, _>("id")?,
                    "type": r.try_get::<String, _>("type_name")?,
                    "subject": r.try_get::<Option<String>, _>("subject")?,
                    "status": status,
                    "credential_id": r.try_get::<Option<String>, _>("credential_id")?,
                    "created_at": r.try_get::<i64, _>("created_at")?,
                    "expires_at": expires_at,
                }))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Housekeeping: drop expired nonces.
    pub async fn purge_expired(&self) -> Result<u64, IssuerError> {
        let r = sqlx::query("DELETE FROM issuer_nonces WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

const BURNED: &str =
    "too many wrong PINs (tx_code) were tried, so this offer can no longer be used: the issuer must make a new offer";

fn burned() -> OAuthError {
    OAuthError::bad("invalid_grant", BURNED)
}

/// Why an offer in `status` cannot be redeemed now, if it cannot.
fn unusable(status: &str, expires_at: i64, now: i64) -> Result<(), OAuthError> {
    match status {
        "burned" => Err(burned()),
        "offered" if expires_at <= now => {
            Err(OAuthError::bad("invalid_grant", "this offer has expired: ask the issuer for a new one"))
        }
        "offered" => Ok(()),
        _ => Err(OAuthError::bad("invalid_grant", "this pre-authorized code was already used")),
    }
}

/// The credential configuration id of a type in a format.
pub fn configuration_id(type_name: &str, format: Format) -> String {
    match format {
        Format::VcJwt => type_name.to_owned(),
        Format::LdpVc => format!("{type_name}_ldp_vc"),
    }
}

/// The key a `jwt` key proof's header names.
#[derive(Debug, Clone)]
pub enum ProofKey {
    /// A DID URL (`kid`): `did:key`, `did:jwk`, or a `did:web` to resolve.
    Kid(String),
    /// The public key itself (`jwk`); the holder is its `did:jwk`.
    Jwk(PublicKey),
}

/// The first step of checking a `jwt` key proof, on its header alone: the type, the
/// algorithm (returned), and the key it names.
pub fn proof_key(proof: &str) -> Result<(String, ProofKey), OAuthError> {
    let bad = |why: String| OAuthError::bad("invalid_proof", why);
    let header = proof_header(proof).map_err(|e| bad(e.to_string()))?;
    if !header.get("typ").and_then(Value::as_str).is_some_and(|t| jws::typ_matches(t, PROOF_TYP)) {
        return Err(bad(format!("typ must be {PROOF_TYP}")));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !crate::types::ALGORITHMS.contains(&alg) {
        return Err(bad("alg must be EdDSA or ES256 (see proof_signing_alg_values_supported)".into()));
    }
    let named = match (header.get("kid").and_then(Value::as_str), header.get("jwk")) {
        (Some(kid), None) => ProofKey::Kid(kid.to_owned()),
        (None, Some(jwk)) => ProofKey::Jwk(
            PublicKey::from_jwk(jwk).ok_or_else(|| bad("jwk must be an Ed25519 or P-256 public key".into()))?,
        ),
        _ => return Err(bad("exactly one of kid or jwk must identify the key".into())),
    };
    Ok((alg.to_owned(), named))
}

/// The holder's DID and key that a `did:key` or `did:jwk` DID URL names, found without
/// any network; `None` for a DID of another method.
pub fn offline_key(kid: &str) -> Option<Result<(String, PublicKey), IssuerError>> {
    let (did, _) = kid.split_once('#').unwrap_or((kid, ""));
    let parsed = match Did::parse(did) {
        Ok(parsed) => parsed,
        Err(e) => return Some(Err(e.into())),
    };
    let found = match parsed.method() {
        "key" => PublicKey::from_multibase(did.trim_start_matches("did:key:")).map_err(IssuerError::from),
        "jwk" => b64url_decode(did.trim_start_matches("did:jwk:"))
            .and_then(|b| sichat_core::json::from_slice_bounded::<Value>(&b, sichat_core::json::MAX_DEPTH).ok())
            .ok_or_else(|| IssuerError::InvalidRequest("did:jwk is not base64url JSON".into()))
            .and_then(|jwk| {
                PublicKey::from_jwk(&jwk)
                    .ok_or_else(|| IssuerError::InvalidRequest("did:jwk is not an Ed25519 or P-256 key".into()))
            }),
        _ => return None,
    };
    Some(found.map(|key| (did.to_owned(), key)))
}

/// The rest of checking a `jwt` key proof once its key is known: the key fits `alg`, the
/// signature, the audience (the credential issuer), the age against `now` (seconds) and
/// any `exp`. Returns the proof's `nonce` (a `c_nonce`, for the caller to take).
pub fn check_signed_proof(
    proof: &str,
    alg: &str,
    key: &PublicKey,
    audience: &str,
    now: i64,
) -> Result<String, OAuthError> {
    let bad = |why: String| OAuthError::bad("invalid_proof", why);
    if key.alg() != alg {
        return Err(bad(format!("alg {alg} does not match the {} key", key.alg())));
    }
    let claims: Value = jws::verify_with(proof, key, PROOF_TYP).map_err(|e| bad(format!("signature: {e}")))?;
    if claims.get("aud").and_then(Value::as_str) != Some(audience) {
        return Err(bad(format!("aud must be the credential issuer {audience}")));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or_else(|| bad("iat is missing".into()))?;
    if now.saturating_sub(iat).saturating_abs() > PROOF_MAX_AGE_SECS {
        return Err(bad("iat is more than 5 minutes off".into()));
    }
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_i64().ok_or_else(|| bad("exp must be a NumericDate (seconds)".into()))?;
        if exp.saturating_add(CLOCK_SKEW_SECS) <= now {
            return Err(bad("the proof has expired (exp)".into()));
        }
    }
    let nonce =
        claims.get("nonce").and_then(Value::as_str).ok_or_else(|| bad("nonce (a c_nonce) is missing".into()))?;
    Ok(nonce.to_owned())
}

fn proof_header(jwt: &str) -> Result<Value, IssuerError> {
    let part = jwt.split('.').next().filter(|_| jwt.split('.').count() == 3).unwrap_or("");
    b64url_decode(part)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object)
        .ok_or_else(|| IssuerError::InvalidRequest("the proof is not a compact JWS".into()))
}

fn pin_hash(code: &str, pin: &str) -> String {
    token_hash(&format!("{code}:{pin}"))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

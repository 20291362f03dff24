//! ID token signing keys: RS256 (RSA 2048), made at first start, sealed under the node's
//! master key, and published as a JWKS.

use crate::OidcError;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair as _;
use josekit::jws::alg::rsassa::RsassaJwsSigner;
use josekit::jws::{JwsHeader, RS256};
use serde_json::{json, Value};
use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms};
use sichat_core::seal::MasterKey;
use sqlx::Row;

pub struct SigningKey {
    pub kid: String,
    signer: RsassaJwsSigner,
    pub public_jwk: Value,
}

impl SigningKey {
    /// A compact JWS (`typ: JWT`) over `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, OidcError> {
        let mut header = JwsHeader::new();
        header.set_token_type("JWT");
        header.set_key_id(&self.kid);
        let body = serde_json::to_vec(claims).map_err(OidcError::internal)?;
        josekit::jws::serialize_compact(&body, &header, &self.signer).map_err(OidcError::internal)
    }
}

fn seal_context(kid: &str) -> String {
    format!("oidc_keys:{kid}")
}

/// The current signing keys, newest first; one is made if there is none.
pub async fn load_or_create(db: &Db, master: &MasterKey) -> Result<Vec<SigningKey>, OidcError> {
    let rows = sqlx::query("SELECT kid, sealed FROM oidc_keys WHERE retired_at IS NULL ORDER BY created_at DESC")
        .fetch_all(db.pool())
        .await?;
    let mut keys = Vec::new();
    for r in rows {
        let kid: String = r.try_get("kid")?;
        let sealed: Vec<u8> = r.try_get("sealed")?;
        let der = master.open(&sealed, &seal_context(&kid))?;
        keys.push(from_der(kid, &der)?);
    }
    if keys.is_empty() {
        let pair = tokio::task::spawn_blocking(|| RS256.generate_key_pair(2048))
            .await
            .map_err(OidcError::internal)?
            .map_err(OidcError::internal)?;
        let kid = new_id();
        let der = pair.to_der_private_key();
        let key = from_der(kid.clone(), &der)?;
        sqlx::query(
            "INSERT INTO oidc_keys (kid, alg, sealed, public_jwk, created_at) VALUES ($1, 'RS256', $2, $3, $4)",
        )
        .bind(&kid)
        .bind(master.seal(&der, &seal_context(&kid)))
        .bind(key.public_jwk.to_string())
        .bind(now_ms())
        .execute(db.pool())
        .await?;
        keys.push(key);
    }
    Ok(keys)
}

fn from_der(kid: String, der: &[u8]) -> Result<SigningKey, OidcError> {
    let pair = RsaKeyPair::from_der(der).map_err(OidcError::internal)?;
    let mut jwk = pair.to_jwk_public_key();
    jwk.set_key_id(&kid);
    jwk.set_key_use("sig");
    jwk.set_algorithm("RS256");
    let public_jwk = Value::Object(jwk.as_ref().clone());
    let signer = RS256.signer_from_der(der).map_err(OidcError::internal)?;
    Ok(SigningKey { kid, signer, public_jwk })
}

/// The JWKS document.
pub fn jwks(keys: &[SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()})
}

//! ID token signing keys: one per algorithm (RS256, which OpenID Connect requires, plus
//! EdDSA and ES256 for clients that ask), made at first start, sealed under the node's
//! master key, rotated on a schedule or by `sichatd admin rotate-keys`, and published as a
//! JWKS. A retired key stays published until every ID token it signed has expired.

use crate::OidcError;
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::alg::ed::EdCurve;
use josekit::jwk::{Jwk, KeyPair as _};
use josekit::jws::{EdDSA, JwsHeader, JwsSigner, JwsVerifier, ES256, RS256};
use serde_json::{json, Value};
use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms};
use sichat_core::seal::MasterKey;
use sqlx::Row;

/// The ID token signing algorithms, default first.
pub const ALGS: &[&str] = &["RS256", "EdDSA", "ES256"];

/// How long relying parties may cache the JWKS (its `Cache-Control: max-age`).
pub const JWKS_MAX_AGE_SECS: i64 = 300;
/// How long a new key is published before it signs: two JWKS cache lifetimes, so an RP that
/// fetched the JWKS just before the key appeared has fetched it again since. Until then the
/// key it replaces goes on signing.
pub const PUBLISH_BEFORE_USE_MS: i64 = 2 * JWKS_MAX_AGE_SECS * 1000;
/// How long a retired key stays published: it may sign for [`PUBLISH_BEFORE_USE_MS`] after
/// retiring, then its tokens live the ID token lifetime, plus clock skew.
pub const RETIRED_OVERLAP_MS: i64 = PUBLISH_BEFORE_USE_MS + crate::provider::ID_TOKEN_TTL_SECS * 1000 + 5 * 60_000;

pub struct SigningKey {
    pub kid: String,
    pub alg: &'static str,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    signer: Box<dyn JwsSigner>,
    pub public_jwk: Value,
}

impl SigningKey {
    /// A compact JWS (`typ: JWT`) over `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, OidcError> {
        self.sign_typed(claims, "JWT")
    }

    /// Signed with an explicit `typ` (`logout+jwt` for a logout token).
    pub fn sign_typed(&self, claims: &Value, typ: &str) -> Result<String, OidcError> {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&self.kid);
        let body = serde_json::to_vec(claims).map_err(OidcError::internal)?;
        josekit::jws::serialize_compact(&body, &header, &*self.signer).map_err(OidcError::internal)
    }
}

/// The keys a node publishes: the active one of each algorithm and the retired ones still
/// inside their overlap.
pub struct KeySet {
    keys: Vec<SigningKey>,
    jwks: Value,
}

impl KeySet {
    /// The key that signs for `alg` now: the newest active key published for at least
    /// [`PUBLISH_BEFORE_USE_MS`]; while a new key is younger than that, the key it replaced;
    /// and on a node's first start (no JWKS was ever served), its only key.
    pub fn signer(&self, alg: &str) -> Result<&SigningKey, OidcError> {
        self.signer_at(alg, now_ms())
    }

    fn signer_at(&self, alg: &str, now: i64) -> Result<&SigningKey, OidcError> {
        let of_alg = || self.keys.iter().filter(move |k| k.alg == alg);
        let seen_by_all = now - PUBLISH_BEFORE_USE_MS;
        of_alg()
            .filter(|k| k.retired_at.is_none() && k.created_at <= seen_by_all)
            .max_by_key(|k| k.created_at)
            .or_else(|| of_alg().filter(|k| k.retired_at.is_some_and(|r| r > seen_by_all)).max_by_key(|k| k.retired_at))
            .or_else(|| of_alg().filter(|k| k.retired_at.is_none()).max_by_key(|k| k.created_at))
            .ok_or_else(|| OidcError::internal(format!("no active {alg} key")))
    }

    /// What the keys are and when they were made and retired: when it changes, reload.
    pub fn state(&self) -> Vec<(&str, i64, Option<i64>)> {
        self.keys.iter().map(|k| (k.kid.as_str(), k.created_at, k.retired_at)).collect()
    }

    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The payload of a JWS that one of these keys signed (active or retired).
    pub fn verify(&self, token: &str) -> Option<Vec<u8>> {
        let header = josekit::jws::deserialize_compact(token, &NoVerify).ok()?.1;
        let key = self.keys.iter().find(|k| Some(k.kid.as_str()) == header.key_id())?;
        let jwk = Jwk::from_map(key.public_jwk.as_object()?.clone()).ok()?;
        let verifier = verifier_for(key.alg, &jwk).ok()?;
        josekit::jws::deserialize_compact(token, &*verifier).ok().map(|(payload, _)| payload)
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// When the oldest active key was made.
    pub fn oldest_active(&self) -> Option<i64> {
        self.keys.iter().filter(|k| k.retired_at.is_none()).map(|k| k.created_at).min()
    }
}

/// A verifier for `alg` from a public JWK (ours or a client's).
pub fn verifier_for(alg: &str, jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, String> {
    let v: Box<dyn JwsVerifier> = match alg {
        "RS256" => Box::new(RS256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        "ES256" => Box::new(ES256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        other => return Err(format!("algorithm {other} is not supported")),
    };
    Ok(v)
}

/// The OpenID Connect left-half hash of `value` (`at_hash`, `c_hash`; Core §3.1.3.6,
/// §3.3.2.11) for an ID token signed with `alg`: the left half of the hash the JWS algorithm
/// uses, base64url. SHA-256 for RS256 and ES256; SHA-512 for EdDSA, whose keys here are all
/// Ed25519 (Ed448 would take SHAKE256).
pub fn left_half_hash(alg: &str, value: &str) -> String {
    use sha2::{Digest, Sha256, Sha512};
    let digest: Vec<u8> = match alg {
        "EdDSA" => Sha512::digest(value.as_bytes()).to_vec(),
        _ => Sha256::digest(value.as_bytes()).to_vec(),
    };
    sichat_core::ids::b64url(&digest[..digest.len() / 2])
}

/// Reads a compact JWS header without checking anything; only used to pick a key.
#[derive(Debug, Clone)]
struct NoVerify;

impl JwsVerifier for NoVerify {
    fn algorithm(&self) -> &dyn josekit::jws::JwsAlgorithm {
        &RS256
    }
    fn key_id(&self) -> Option<&str> {
        None
    }
    fn verify(&self, _: &[u8], _: &[u8]) -> Result<(), josekit::JoseError> {
        Ok(())
    }
    fn box_clone(&self) -> Box<dyn JwsVerifier> {
        Box::new(self.clone())
    }
}

fn seal_context(kid: &str) -> String {
    format!("oidc_keys:{kid}")
}

/// A fresh private key for `alg`, as PKCS#8 DER. RSA generation takes a while, so it runs
/// off the async threads.
async fn generate(alg: &'static str) -> Result<Vec<u8>, OidcError> {
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, josekit::JoseError> {
        Ok(match alg {
            "RS256" => RS256.generate_key_pair(2048)?.to_der_private_key(),
            "ES256" => ES256.generate_key_pair()?.to_der_private_key(),
            _ => EdDSA.generate_key_pair(EdCurve::Ed25519)?.to_der_private_key(),
        })
    })
    .await
    .map_err(OidcError::internal)?
    .map_err(OidcError::internal)
}

fn from_der(
    alg: &'static str,
    kid: String,
    der: &[u8],
    created_at: i64,
    retired_at: Option<i64>,
) -> Result<SigningKey, OidcError> {
    let (signer, mut jwk): (Box<dyn JwsSigner>, Jwk) = match alg {
        "RS256" => (
            Box::new(RS256.signer_from_der(der).map_err(OidcError::internal)?),
            josekit::jwk::alg::rsa::RsaKeyPair::from_der(der).map_err(OidcError::internal)?.to_jwk_public_key(),
        ),
        "ES256" => (
            Box::new(ES256.signer_from_der(der).map_err(OidcError::internal)?),
            josekit::jwk::alg::ec::EcKeyPair::from_der(der, Some(EcCurve::P256))
                .map_err(OidcError::internal)?
                .to_jwk_public_key(),
        ),
        _ => (
            Box::new(EdDSA.signer_from_der(der).map_err(OidcError::internal)?),
            josekit::jwk::alg::ed::EdKeyPair::from_der(der).map_err(OidcError::internal)?.to_jwk_public_key(),
        ),
    };
    jwk.set_key_id(&kid);
    jwk.set_key_use("sig");
    jwk.set_algorithm(alg);
    let public_jwk = Value::Object(jwk.as_ref().clone());
    Ok(SigningKey { kid, alg, created_at, retired_at, signer, public_jwk })
}

fn known_alg(alg: &str) -> Option<&'static str> {
    ALGS.iter().copied().find(|a| *a == alg)
}

/// A new key row for `alg`, inside `tx`.
async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    master: &MasterKey,
    alg: &'static str,
    der: &[u8],
) -> Result<String, OidcError> {
    let kid = new_id();
    let key = from_der(alg, kid.clone(), der, now_ms(), None)?;
    sqlx::query("INSERT INTO oidc_keys (kid, alg, sealed, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&kid)
        .bind(alg)
        .bind(master.seal(der, &seal_context(&kid)))
        .bind(key.public_jwk.to_string())
        .bind(key.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(kid)
}

/// The published keys; an algorithm with no active key gets one.
pub async fn load(db: &Db, master: &MasterKey) -> Result<KeySet, OidcError> {
    let active: Vec<String> =
        sqlx::query_scalar("SELECT alg FROM oidc_keys WHERE retired_at IS NULL").fetch_all(db.pool()).await?;
    for alg in ALGS.iter().copied().filter(|a| !active.iter().any(|b| b == a)) {
        let der = generate(alg).await?;
        let mut tx = db.pool().begin().await?;
        insert_key(&mut tx, master, alg, &der).await?;
        tx.commit().await?;
    }
    let rows = sqlx::query(
        "SELECT kid, alg, sealed, created_at, retired_at FROM oidc_keys \
         WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
    )
    .bind(now_ms() - RETIRED_OVERLAP_MS)
    .fetch_all(db.pool())
    .await?;
    let mut keys = Vec::new();
    for r in rows {
        let kid: String = r.try_get("kid")?;
        let alg: String = r.try_get("alg")?;
        let alg = known_alg(&alg).ok_or_else(|| OidcError::internal(format!("key {kid} has unknown alg {alg}")))?;
        let der = master.open(&r.try_get::<Vec<u8>, _>("sealed")?, &seal_context(&kid))?;
        keys.push(from_der(alg, kid, &der, r.try_get("created_at")?, r.try_get("retired_at")?)?);
    }
    let jwks = json!({"keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()});
    Ok(KeySet { keys, jwks })
}

/// Replace every active key made before `older_than` (ms) with a new one; returns the new
/// kids. Retiring first, with a guarded update, keeps replicas from rotating twice.
pub async fn rotate(db: &Db, master: &MasterKey, older_than: i64) -> Result<Vec<String>, OidcError> {
    let mut made = Vec::new();
    for alg in ALGS.iter().copied() {
        let der = generate(alg).await?;
        // Retire and replace in one transaction: no moment without an active key, and a
        // second replica finds nothing left to retire.
        let mut tx = db.pool().begin().await?;
        let retired = sqlx::query(
            "UPDATE oidc_keys SET retired_at = $1 WHERE alg = $2 AND retired_at IS NULL AND created_at < $3",
        )
        .bind(now_ms())
        .bind(alg)
        .bind(older_than)
        .execute(&mut *tx)
        .await?;
        if retired.rows_affected() > 0 {
            made.push(insert_key(&mut tx, master, alg, &der).await?);
        }
        tx.commit().await?;
    }
    if !made.is_empty() {
        tracing::info!(kids = ?made, "rotated the OpenID Provider's signing keys");
        metrics::counter!("sichat_oidc_key_rotations_total").increment(1);
    }
    sqlx::query("DELETE FROM oidc_keys WHERE retired_at IS NOT NULL AND retired_at <= $1")
        .bind(now_ms() - RETIRED_OVERLAP_MS)
        .execute(db.pool())
        .await?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519(kid: &str, created_at: i64, retired_at: Option<i64>) -> SigningKey {
        let der = EdDSA.generate_key_pair(EdCurve::Ed25519).expect("Ed25519 key").to_der_private_key();
        from_der("EdDSA", kid.into(), &der, created_at, retired_at).expect("a signing key")
    }

    #[test]
    fn a_new_key_signs_only_once_relying_parties_can_have_fetched_it() {
        let now = now_ms();
        // Rotated a minute ago: the new key is published, the old one retired.
        let keys = KeySet {
            keys: vec![ed25519("new", now - 60_000, None), ed25519("old", now - 86_400_000, Some(now - 60_000))],
            jwks: Value::Null,
        };
        assert_eq!(keys.signer_at("EdDSA", now).expect("a signer").kid, "old", "the new key is too fresh");
        let later = now - 60_000 + PUBLISH_BEFORE_USE_MS + 1;
        assert_eq!(keys.signer_at("EdDSA", later).expect("a signer").kid, "new", "published long enough");
        // A node's very first key signs at once: nobody can have cached a JWKS without it.
        let first = KeySet { keys: vec![ed25519("first", now, None)], jwks: Value::Null };
        assert_eq!(first.signer_at("EdDSA", now).expect("a signer").kid, "first");
        assert!(first.signer_at("RS256", now).is_err());
    }

    #[test]
    fn left_half_hashes_follow_the_signing_algorithm() {
        // The access token and RS256 at_hash of OpenID Connect Core, Appendix A.3; the EdDSA
        // value by openssl: `printf %s TOKEN | openssl dgst -sha512 -binary | head -c 32 | basenc --base64url`.
        const SHA256_HALF: &str = "77QmUPtjPfzWtF2AnpK9RQ";
        const SHA512_HALF: &str = "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM";
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(left_half_hash("RS256", token), left_half_hash("ES256", token));
        assert_eq!(left_half_hash("RS256", token).len(), 22, "16 bytes");
        assert_eq!(left_half_hash("EdDSA", token).len(), 43, "32 bytes");
        assert_eq!(left_half_hash("RS256", token), SHA256_HALF);
        assert_eq!(left_half_hash("EdDSA", token), SHA512_HALF);
    }
}

//! DPoP (RFC 9449): tokens bound to a key the client proves it holds on every use.
//!
//! At the token endpoint a `DPoP` proof (a JWT signed by the client's key, with the public
//! key in its header) binds the access token, and a public client's refresh token, to that
//! key's thumbprint (`jkt`, RFC 7638); `token_type` is then `DPoP`. Such an access token is
//! accepted only as `Authorization: DPoP <token>` with a fresh proof of the same key that
//! names the request (`htm`, `htu`) and the token (`ath`). Each proof's `jti` is kept until
//! the proof would be too old anyway, so a proof is used once: at the token endpoint in the
//! grant's own write (no commit of its own), at UserInfo by [`Provider::check_dpop`]. A
//! client that registered `dpop_bound_access_tokens` must send proofs.

use super::*;

/// The proof algorithms accepted (asymmetric only, RFC 9449 §4.2).
pub const DPOP_ALGS: &[&str] = &["ES256", "EdDSA", "RS256"];
const MAX_PROOF_BYTES: usize = 8 * 1024;
/// A proof's `iat` may be this far in the future (clock skew) or in the past.
const SKEW_SECS: i64 = 60;
const MAX_AGE_SECS: i64 = 300;

/// What a proof must be for: the request's method and URL, and for a resource, the token.
pub struct ProofFor<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub access_token: Option<&'a str>,
}

pub(crate) fn invalid_proof(why: impl Into<String>) -> OidcError {
    OidcError::bad("invalid_dpop_proof", why)
}

/// A proof whose `jti` was already recorded.
pub(crate) fn replayed() -> OidcError {
    metrics::counter!("sichat_oidc_dpop_replays_total").increment(1);
    invalid_proof("this proof was already used (jti replay)")
}

/// The JWK SHA-256 thumbprint (RFC 7638) of a public key: its required members, sorted,
/// without whitespace.
pub fn thumbprint(jwk: &serde_json::Map<String, Value>) -> Result<String, String> {
    let member = |k: &str| jwk.get(k).and_then(Value::as_str).ok_or_else(|| format!("the jwk has no {k}"));
    let canonical = match member("kty")? {
        "EC" => json!({"crv": member("crv")?, "kty": "EC", "x": member("x")?, "y": member("y")?}),
        "OKP" => json!({"crv": member("crv")?, "kty": "OKP", "x": member("x")?}),
        "RSA" => json!({"e": member("e")?, "kty": "RSA", "n": member("n")?}),
        other => return Err(format!("key type {other} is not supported")),
    };
    // serde_json keeps object members sorted (no preserve_order): the RFC 7638 form.
    Ok(b64url(&Sha256::digest(canonical.to_string().as_bytes())))
}

/// `url` without query and fragment (RFC 9449 §4.3: `htu` is compared so).
fn bare_url(url: &str) -> Option<String> {
    let mut u = url::Url::parse(url).ok()?;
    u.set_query(None);
    u.set_fragment(None);
    Some(u.to_string())
}

/// A proof that checked out: its key's thumbprint, `jti` and `iat`.
#[derive(Debug)]
pub struct Proof {
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

impl Proof {
    /// The row that records its `jti` until it would be refused as too old anyway.
    pub(crate) fn row(&self) -> ProofRow {
        ProofRow {
            jkt: self.jkt.clone(),
            jti: self.jti.clone(),
            expires_at: (self.iat + SKEW_SECS + MAX_AGE_SECS) * 1000,
        }
    }
}

/// Everything a proof must be for `f` at `now` (seconds) that needs no storage: type,
/// algorithm, public key, signature, `htm`, `htu`, `iat`, `jti` and `ath`.
pub fn read_proof(proof: &str, f: &ProofFor<'_>, now: i64) -> Result<Proof, OidcError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(invalid_proof("the proof is too large"));
    }
    let (header, claims) =
        sichat_core::jws::unverified_parts(proof).map_err(|_| invalid_proof("not a compact JWS with JSON parts"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid_proof("typ must be dpop+jwt"));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !DPOP_ALGS.contains(&alg) {
        return Err(invalid_proof(format!("alg must be one of {}", DPOP_ALGS.join(", "))));
    }
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or_else(|| invalid_proof("the header has no jwk"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|k| jwk.contains_key(*k)) {
        return Err(invalid_proof("the jwk must be a public key"));
    }
    let key = josekit::jwk::Jwk::from_map(jwk.clone()).map_err(|e| invalid_proof(format!("the jwk: {e}")))?;
    let verifier = keys::verifier_for(alg, &key).map_err(|e| invalid_proof(format!("the jwk: {e}")))?;
    josekit::jws::deserialize_compact(proof, &*verifier)
        .map_err(|_| invalid_proof("the signature does not verify with the jwk"))?;
    if claims.get("htm").and_then(Value::as_str) != Some(f.method) {
        return Err(invalid_proof(format!("htm must be {}", f.method)));
    }
    let htu = claims.get("htu").and_then(Value::as_str).and_then(bare_url);
    if htu.is_none() || htu != bare_url(f.url) {
        return Err(invalid_proof(format!("htu must be {}", f.url)));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or_else(|| invalid_proof("iat is missing"))?;
    if iat > now + SKEW_SECS || iat < now - MAX_AGE_SECS {
        return Err(invalid_proof("iat is too far from now: check the clock"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid_proof("jti is missing or too long"))?;
    if let Some(token) = f.access_token {
        let ath = b64url(&Sha256::digest(token.as_bytes()));
        if claims.get("ath").and_then(Value::as_str) != Some(ath.as_str()) {
            return Err(invalid_proof("ath must be the access token's SHA-256"));
        }
    }
    let jkt = thumbprint(jwk).map_err(invalid_proof)?;
    Ok(Proof { jkt, jti: jti.to_owned(), iat })
}

impl Provider {
    /// Check a DPoP proof for `f`; the thumbprint of its key. Each proof counts once.
    pub async fn check_dpop(&self, proof: &str, f: ProofFor<'_>) -> Result<String, OidcError> {
        let p = read_proof(proof, &f, now_ms() / 1000)?;
        if !crate::writer::record_proof(self.db.pool(), &p.row()).await? {
            return Err(replayed());
        }
        Ok(p.jkt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_of_the_rfc_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let map = jwk.as_object().unwrap();
        assert_eq!(thumbprint(map).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert!(thumbprint(json!({"kty": "oct", "k": "x"}).as_object().unwrap()).is_err());
    }

    #[test]
    fn htu_ignores_query_and_fragment() {
        assert_eq!(bare_url("https://a.example/t?x=1#f"), bare_url("https://a.example/t"));
        assert_ne!(bare_url("https://a.example/t"), bare_url("https://a.example/u"));
    }
}

//! Compact JWS with EdDSA (RFC 7515, RFC 8037), through `josekit`.
//!
//! Every Sichat JWS names its purpose in `typ`, and [`verify`] checks it, so a token made
//! for one purpose (a device certificate, say) cannot be replayed as another.

use crate::ids::b64url_decode;
use crate::keys::{Ed25519KeyPair, Ed25519Public};
use crate::p256key::{KeyPair, PublicKey};
use crate::CoreError;
use ed25519_dalek::Signer;
use josekit::jws::{EdDSA, JwsAlgorithm, JwsHeader, JwsSigner, JwsVerifier, ES256};
use josekit::JoseError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// josekit's EdDSA, computed by `ed25519-dalek`: josekit builds and parses the JWS,
/// dalek does the curve arithmetic (no per-call key import, strict verification).
#[derive(Clone)]
struct DalekSigner(ed25519_dalek::SigningKey);

impl fmt::Debug for DalekSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DalekSigner(<redacted>)")
    }
}

impl JwsSigner for DalekSigner {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        &EdDSA
    }
    fn key_id(&self) -> Option<&str> {
        None
    }
    fn signature_len(&self) -> usize {
        64
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        Ok(self.0.sign(message).to_bytes().to_vec())
    }
    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}

/// josekit's ES256, computed by the `p256` crate (signatures as r ‖ s, as JWS wants).
#[derive(Clone)]
struct P256Signer(p256::ecdsa::SigningKey);

impl fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256Signer(<redacted>)")
    }
}

impl JwsSigner for P256Signer {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        &ES256
    }
    fn key_id(&self) -> Option<&str> {
        None
    }
    fn signature_len(&self) -> usize {
        64
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&self.0, message);
        Ok(sig.to_bytes().to_vec())
    }
    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}

/// Verifies EdDSA (ed25519-dalek, strict) or ES256 (p256) for josekit.
#[derive(Clone, Debug)]
struct KeyVerifier(PublicKey);

impl JwsVerifier for KeyVerifier {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        match self.0 {
            PublicKey::Ed25519(_) => &EdDSA,
            PublicKey::P256(_) => &ES256,
        }
    }
    fn key_id(&self) -> Option<&str> {
        None
    }
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        if self.0.verify(message, signature) {
            Ok(())
        } else {
            Err(JoseError::InvalidSignature(anyhow::anyhow!("{} signature does not verify", self.0.alg())))
        }
    }
    fn box_clone(&self) -> Box<dyn JwsVerifier> {
        Box::new(self.clone())
    }
}

/// Longest compact JWS we will parse.
pub const MAX_JWS_LEN: usize = 32 * 1024;

/// Sign `payload` as a compact JWS with `typ` and an optional `kid` (EdDSA).
pub fn sign(key: &Ed25519KeyPair, typ: &str, kid: Option<&str>, payload: &impl Serialize) -> Result<String, CoreError> {
    sign_compact(&DalekSigner(key.signing_key().clone()), typ, kid, payload)
}

/// Sign with a key of either algorithm (EdDSA or ES256).
pub fn sign_with(key: &KeyPair, typ: &str, kid: Option<&str>, payload: &impl Serialize) -> Result<String, CoreError> {
    match key {
        KeyPair::Ed25519(k) => sign(k, typ, kid, payload),
        KeyPair::P256(k) => {
            let secret = k.secret();
            let sk = p256::ecdsa::SigningKey::from_slice(&secret).map_err(|e| CoreError::InvalidKey(e.to_string()))?;
            sign_compact(&P256Signer(sk), typ, kid, payload)
        }
    }
}

fn sign_compact(
    signer: &dyn JwsSigner,
    typ: &str,
    kid: Option<&str>,
    payload: &impl Serialize,
) -> Result<String, CoreError> {
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    if let Some(kid) = kid {
        header.set_key_id(kid);
    }
    let body = serde_json::to_vec(payload).map_err(|e| CoreError::MalformedJws(e.to_string()))?;
    josekit::jws::serialize_compact(&body, &header, signer).map_err(|e| CoreError::MalformedJws(e.to_string()))
}

/// Verify a compact EdDSA JWS against `key`, check its `typ`, and decode its payload.
pub fn verify<T: DeserializeOwned>(token: &str, key: &Ed25519Public, typ: &str) -> Result<T, CoreError> {
    verify_with(token, &PublicKey::Ed25519(*key), typ)
}

/// Verify a compact JWS whose `alg` must be the key's (EdDSA or ES256).
pub fn verify_with<T: DeserializeOwned>(token: &str, key: &PublicKey, typ: &str) -> Result<T, CoreError> {
    let payload = verify_signature(token, key, typ)?;
    serde_json::from_slice(&payload).map_err(|e| CoreError::MalformedJws(format!("payload: {e}")))
}

/// Check a compact JWS's `typ`, `alg` and signature against `key`; returns the payload's
/// bytes, for callers that already hold it parsed.
pub fn verify_signature(token: &str, key: &PublicKey, typ: &str) -> Result<Vec<u8>, CoreError> {
    let header = header_of(token)?;
    let got = header.get("typ").and_then(|v| v.as_str()).unwrap_or("");
    if !typ_matches(got, typ) {
        return Err(CoreError::WrongJwsType { expected: typ.into(), got: got.into() });
    }
    if header.get("alg").and_then(|v| v.as_str()) != Some(key.alg()) {
        return Err(CoreError::MalformedJws(format!("alg must be {} for this key", key.alg())));
    }
    let verifier = KeyVerifier(*key);
    let (payload, _) = josekit::jws::deserialize_compact(token, &verifier).map_err(|e| match e {
        josekit::JoseError::InvalidSignature(_) => CoreError::BadSignature,
        other => CoreError::MalformedJws(other.to_string()),
    })?;
    Ok(payload)
}

/// Whether a JWS `typ` names the media type `expected`. RFC 7515 §4.1.9: a `typ` without
/// a '/' stands for `application/` followed by it, and media types compare without regard
/// to case; so `application/vc+jwt`, `VC+JWT` and `vc+jwt` are one type.
pub fn typ_matches(got: &str, expected: &str) -> bool {
    fn full(typ: &str) -> String {
        let typ = typ.trim().to_ascii_lowercase();
        match typ.contains('/') {
            true => typ,
            false => format!("application/{typ}"),
        }
    }
    !got.trim().is_empty() && full(got) == full(expected)
}

/// Decode the payload *without* checking the signature: only to find which key to verify
/// with. Never act on these claims before [`verify`] succeeds.
pub fn unverified_payload<T: DeserializeOwned>(token: &str) -> Result<T, CoreError> {
    let (_, payload) = unverified_parts(token)?;
    serde_json::from_value(payload).map_err(|e| CoreError::MalformedJws(format!("payload: {e}")))
}

/// The three parts of a compact JWS, bounded in size.
fn parts(token: &str) -> Result<[&str; 3], CoreError> {
    if token.len() > MAX_JWS_LEN {
        return Err(CoreError::MalformedJws(format!("longer than {MAX_JWS_LEN} bytes")));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(CoreError::MalformedJws("a compact JWS has three dot-separated parts".into()));
    };
    if s.is_empty() {
        return Err(CoreError::MalformedJws("signature part is empty".into()));
    }
    Ok([h, p, s])
}

fn decode_part(part: &str, what: &str) -> Result<serde_json::Value, CoreError> {
    let bytes = b64url_decode(part).ok_or_else(|| CoreError::MalformedJws(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| CoreError::MalformedJws(format!("{what} is not JSON")))
}

/// The protected header, unverified.
pub fn header_of(token: &str) -> Result<serde_json::Value, CoreError> {
    let header = decode_part(parts(token)?[0], "header")?;
    if !header.is_object() {
        return Err(CoreError::MalformedJws("header is not a JSON object".into()));
    }
    Ok(header)
}

/// Header and payload, both unverified: to find the key, never to act on.
pub fn unverified_parts(token: &str) -> Result<(serde_json::Value, serde_json::Value), CoreError> {
    let [h, p, _] = parts(token)?;
    let header = decode_part(h, "header")?;
    if !header.is_object() {
        return Err(CoreError::MalformedJws("header is not a JSON object".into()));
    }
    Ok((header, decode_part(p, "payload")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn sign_then_verify_round_trips() {
        let k = Ed25519KeyPair::generate();
        let t = sign(&k, "test+jwt", Some("did:key:x#y"), &json!({"a": 1})).unwrap();
        let v: Value = verify(&t, &k.public(), "test+jwt").unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn wrong_key_wrong_type_and_tampering_are_refused() {
        let k = Ed25519KeyPair::generate();
        let other = Ed25519KeyPair::generate();
        let t = sign(&k, "test+jwt", None, &json!({"a": 1})).unwrap();
        assert!(matches!(verify::<Value>(&t, &other.public(), "test+jwt"), Err(CoreError::BadSignature)));
        assert!(matches!(verify::<Value>(&t, &k.public(), "other+jwt"), Err(CoreError::WrongJwsType { .. })));
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = crate::ids::b64url(br#"{"a":2}"#);
        assert!(verify::<Value>(&parts.join("."), &k.public(), "test+jwt").is_err());
        for junk in ["", "a.b", "a.b.c", "....", "eyJ9.eyJ9.x"] {
            assert!(verify::<Value>(junk, &k.public(), "test+jwt").is_err(), "{junk}");
        }
    }

    #[test]
    fn es256_round_trips_and_algorithms_do_not_mix() {
        let p = KeyPair::P256(crate::p256key::P256KeyPair::generate());
        let t = sign_with(&p, "test+jwt", Some("k"), &json!({"a": 2})).unwrap();
        let header: Value =
            serde_json::from_slice(&crate::ids::b64url_decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let v: Value = verify_with(&t, &p.public(), "test+jwt").unwrap();
        assert_eq!(v["a"], 2);
        let other = crate::p256key::P256KeyPair::generate();
        assert!(verify_with::<Value>(&t, &PublicKey::P256(other.public()), "test+jwt").is_err());
        let ed = Ed25519KeyPair::generate();
        assert!(
            verify_with::<Value>(&t, &PublicKey::Ed25519(ed.public()), "test+jwt").is_err(),
            "an ES256 JWS is not EdDSA"
        );
    }

    #[test]
    fn typ_is_a_media_type() {
        let k = Ed25519KeyPair::generate();
        for typ in ["vc+jwt", "application/vc+jwt", "Application/VC+JWT", "VC+JWT"] {
            let t = sign(&k, typ, None, &json!({"a": 1})).unwrap();
            let v: Value = verify(&t, &k.public(), "vc+jwt").unwrap_or_else(|e| panic!("{typ}: {e}"));
            assert_eq!(v["a"], 1);
        }
        for typ in ["vp+jwt", "application/vp+jwt", "text/vc+jwt", "", "application/"] {
            let t = sign(&k, typ, None, &json!({"a": 1})).unwrap();
            assert!(matches!(verify::<Value>(&t, &k.public(), "vc+jwt"), Err(CoreError::WrongJwsType { .. })), "{typ}");
        }
        assert!(typ_matches("application/oauth-authz-req+jwt", "oauth-authz-req+jwt"));
        assert!(!typ_matches("", ""), "a missing typ is no type");
    }

    #[test]
    fn alg_none_is_refused() {
        let k = Ed25519KeyPair::generate();
        let h = crate::ids::b64url(br#"{"alg":"none","typ":"test+jwt"}"#);
        let p = crate::ids::b64url(br#"{"a":1}"#);
        assert!(verify::<Value>(&format!("{h}.{p}.x"), &k.public(), "test+jwt").is_err());
        assert!(verify::<Value>(&format!("{h}.{p}."), &k.public(), "test+jwt").is_err());
    }
}

//! Compact JWS with EdDSA (RFC 7515, RFC 8037), through `josekit`.
//!
//! Every Sichat JWS names its purpose in `typ`, and [`verify`] checks it, so a token made
//! for one purpose (a device certificate, say) cannot be replayed as another.

use crate::ids::b64url_decode;
use crate::keys::{Ed25519KeyPair, Ed25519Public};
use crate::CoreError;
use ed25519_dalek::Signer;
use josekit::jws::{EdDSA, JwsAlgorithm, JwsHeader, JwsSigner, JwsVerifier};
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

#[derive(Clone, Debug)]
struct DalekVerifier(Ed25519Public);

impl JwsVerifier for DalekVerifier {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        &EdDSA
    }
    fn key_id(&self) -> Option<&str> {
        None
    }
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        if self.0.verify(message, signature) {
            Ok(())
        } else {
            Err(JoseError::InvalidSignature(anyhow::anyhow!("Ed25519 signature does not verify")))
        }
    }
    fn box_clone(&self) -> Box<dyn JwsVerifier> {
        Box::new(self.clone())
    }
}

/// Longest compact JWS we will parse.
pub const MAX_JWS_LEN: usize = 32 * 1024;

/// Sign `payload` as a compact JWS with `typ` and an optional `kid`.
pub fn sign(key: &Ed25519KeyPair, typ: &str, kid: Option<&str>, payload: &impl Serialize) -> Result<String, CoreError> {
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    if let Some(kid) = kid {
        header.set_key_id(kid);
    }
    let signer = DalekSigner(key.signing_key().clone());
    let body = serde_json::to_vec(payload).map_err(|e| CoreError::MalformedJws(e.to_string()))?;
    josekit::jws::serialize_compact(&body, &header, &signer).map_err(|e| CoreError::MalformedJws(e.to_string()))
}

/// Verify a compact JWS against `key`, check its `typ`, and decode its payload.
pub fn verify<T: DeserializeOwned>(token: &str, key: &Ed25519Public, typ: &str) -> Result<T, CoreError> {
    let (header, _) = split(token)?;
    let got = header.get("typ").and_then(|v| v.as_str()).unwrap_or("");
    if got != typ {
        return Err(CoreError::WrongJwsType { expected: typ.into(), got: got.into() });
    }
    if header.get("alg").and_then(|v| v.as_str()) != Some("EdDSA") {
        return Err(CoreError::MalformedJws("alg must be EdDSA".into()));
    }
    let verifier = DalekVerifier(*key);
    let (payload, _) = josekit::jws::deserialize_compact(token, &verifier).map_err(|e| match e {
        josekit::JoseError::InvalidSignature(_) => CoreError::BadSignature,
        other => CoreError::MalformedJws(other.to_string()),
    })?;
    serde_json::from_slice(&payload).map_err(|e| CoreError::MalformedJws(format!("payload: {e}")))
}

/// Decode the payload *without* checking the signature: only to find which key to verify
/// with. Never act on these claims before [`verify`] succeeds.
pub fn unverified_payload<T: DeserializeOwned>(token: &str) -> Result<T, CoreError> {
    let (_, payload) = split(token)?;
    serde_json::from_value(payload).map_err(|e| CoreError::MalformedJws(format!("payload: {e}")))
}

fn split(token: &str) -> Result<(serde_json::Value, serde_json::Value), CoreError> {
    if token.len() > MAX_JWS_LEN {
        return Err(CoreError::MalformedJws(format!("longer than {MAX_JWS_LEN} bytes")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(CoreError::MalformedJws("a compact JWS has three dot-separated parts".into()));
    };
    if s.is_empty() {
        return Err(CoreError::MalformedJws("signature part is empty".into()));
    }
    let decode = |part: &str, what: &str| -> Result<serde_json::Value, CoreError> {
        let bytes = b64url_decode(part).ok_or_else(|| CoreError::MalformedJws(format!("{what} is not base64url")))?;
        serde_json::from_slice(&bytes).map_err(|_| CoreError::MalformedJws(format!("{what} is not JSON")))
    };
    let header = decode(h, "header")?;
    if !header.is_object() {
        return Err(CoreError::MalformedJws("header is not a JSON object".into()));
    }
    Ok((header, decode(p, "payload")?))
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
    fn alg_none_is_refused() {
        let k = Ed25519KeyPair::generate();
        let h = crate::ids::b64url(br#"{"alg":"none","typ":"test+jwt"}"#);
        let p = crate::ids::b64url(br#"{"a":1}"#);
        assert!(verify::<Value>(&format!("{h}.{p}.x"), &k.public(), "test+jwt").is_err());
        assert!(verify::<Value>(&format!("{h}.{p}."), &k.public(), "test+jwt").is_err());
    }
}

//! JWS in general JSON serialization (RFC 7515 §7.2.1), as DIDComm signs messages:
//! `typ` and `alg` protected, the signer's DID URL as `kid` in the unprotected header. A `kid`
//! in both headers (as other implementations write it) is accepted when the two are equal.
//!
//! Signing is EdDSA (Ed25519). Verifying takes EdDSA or ES256, whichever the resolved
//! key is; the header's `alg` must be that key's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sichat_core::ids::{b64url, b64url_decode};
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::p256key::PublicKey;

use crate::EnvelopeError;

/// `typ` of a signed message.
pub const SIGNED_TYP: &str = "application/didcomm-signed+json";

#[derive(Serialize, Deserialize)]
struct GeneralJws {
    payload: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Serialize, Deserialize)]
struct SignatureJson {
    protected: String,
    signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<Map<String, Value>>,
}

/// Sign `payload` with `key`, naming it `kid` (a DID URL). Returns the JWS as JSON text.
pub fn sign(payload: &[u8], kid: &str, key: &Ed25519KeyPair) -> String {
    // A fixed protected header: `typ` and `alg` only, always in this order.
    let protected = b64url(format!(r#"{{"typ":"{SIGNED_TYP}","alg":"EdDSA"}}"#).as_bytes());
    let payload = b64url(payload);
    let signature = key.sign(format!("{protected}.{payload}").as_bytes());
    let mut header = Map::new();
    header.insert("kid".into(), Value::String(kid.to_owned()));
    let jws = GeneralJws {
        payload,
        signatures: vec![SignatureJson { protected, signature: b64url(&signature), header: Some(header) }],
    };
    // Serializing plain strings cannot fail.
    serde_json::to_string(&jws).unwrap_or_default()
}

/// A parsed, not yet verified, signed message.
pub struct Signed {
    payload: Vec<u8>,
    kid: String,
    alg: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

fn bad(why: impl Into<String>) -> EnvelopeError {
    EnvelopeError::MalformedJws(why.into())
}

impl Signed {
    /// Parse a JWS in general (or flattened) JSON serialization. DIDComm messages from
    /// Sichat carry one signature; a JWS with several is refused rather than half-checked.
    pub fn parse(value: Value) -> Result<Self, EnvelopeError> {
        let value = flatten_to_general(value)?;
        let jws: GeneralJws = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let [sig] = <[SignatureJson; 1]>::try_from(jws.signatures)
            .map_err(|s| bad(format!("expected one signature, found {}", s.len())))?;
        let protected_bytes = b64url_decode(&sig.protected).ok_or_else(|| bad("protected header is not base64url"))?;
        let protected: Map<String, Value> =
            serde_json::from_slice(&protected_bytes).map_err(|_| bad("protected header is not a JSON object"))?;
        let mut header = sig.header.unwrap_or_default();
        // RFC 7515 §7.2.1 wants the two headers disjoint, but other DIDComm implementations
        // put the signer's `kid` in both. The same value twice says nothing new: accept it
        // (once, from the protected header). Two different signers named is refused.
        if let (Some(Value::String(p)), Some(u)) = (protected.get("kid"), header.get("kid")) {
            if u.as_str() != Some(p.as_str()) {
                return Err(bad(format!("the protected `kid` {p:?} and the unprotected `kid` {u} differ")));
            }
            tracing::debug!(kid = %p, "JWS names its `kid` in both headers (identically): accepted");
            header.remove("kid");
        }
        if let Some(name) = protected.keys().find(|k| header.contains_key(*k)) {
            return Err(bad(format!("{name:?} is both protected and unprotected")));
        }
        if protected.contains_key("crit") || header.contains_key("crit") {
            return Err(EnvelopeError::UnsupportedAlgorithm("JWS with critical header extensions".into()));
        }
        if protected.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
            return Err(EnvelopeError::UnsupportedAlgorithm("JWS with unencoded payload (b64: false)".into()));
        }
        match protected.get("typ") {
            None => {}
            Some(Value::String(t)) if t == SIGNED_TYP => {}
            Some(other) => return Err(bad(format!("`typ` must be {SIGNED_TYP}, not {other}"))),
        }
        let alg = protected.get("alg").and_then(Value::as_str).ok_or_else(|| bad("no `alg` in protected header"))?;
        let kid = protected
            .get("kid")
            .or_else(|| header.get("kid"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no `kid`: the signer's key is not named"))?;
        let payload = b64url_decode(&jws.payload).ok_or_else(|| bad("payload is not base64url"))?;
        let signature = b64url_decode(&sig.signature).ok_or_else(|| bad("signature is not base64url"))?;
        Ok(Self {
            payload,
            kid: kid.to_owned(),
            alg: alg.to_owned(),
            signing_input: format!("{}.{}", sig.protected, jws.payload).into_bytes(),
            signature,
        })
    }

    /// The signer's key id (a DID URL), as the JWS claims it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The payload *before* verification: to find out whom to check, never to act on.
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// Check the signature with `key`; returns the payload.
    pub fn verify(self, key: &PublicKey) -> Result<Vec<u8>, EnvelopeError> {
        if !matches!(self.alg.as_str(), "EdDSA" | "ES256") {
            return Err(EnvelopeError::UnsupportedAlgorithm(format!("JWS alg {}", self.alg)));
        }
        if self.alg != key.alg() {
            return Err(bad(format!("`alg` is {} but {} is a {} key", self.alg, self.kid, key.alg())));
        }
        if !key.verify(&self.signing_input, &self.signature) {
            return Err(EnvelopeError::BadSignature);
        }
        Ok(self.payload)
    }
}

/// A flattened JWS (RFC 7515 §7.2.2) as the general form with one signature.
fn flatten_to_general(mut value: Value) -> Result<Value, EnvelopeError> {
    let obj = value.as_object_mut().ok_or_else(|| bad("not a JSON object"))?;
    if obj.contains_key("signatures") {
        return Ok(value);
    }
    let mut sig = Map::new();
    for name in ["protected", "signature", "header"] {
        if let Some(v) = obj.remove(name) {
            sig.insert(name.into(), v);
        }
    }
    obj.insert("signatures".into(), Value::Array(vec![Value::Object(sig)]));
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sign_parse_verify() {
        let k = Ed25519KeyPair::generate();
        let jws = sign(br#"{"a":1}"#, "did:example:a#k", &k);
        let v: Value = serde_json::from_str(&jws).unwrap();
        assert_eq!(v["signatures"][0]["header"]["kid"], "did:example:a#k");
        let s = Signed::parse(v.clone()).unwrap();
        assert_eq!(s.kid(), "did:example:a#k");
        assert_eq!(s.verify(&PublicKey::Ed25519(k.public())).unwrap(), br#"{"a":1}"#);

        let other = Ed25519KeyPair::generate();
        let s = Signed::parse(v.clone()).unwrap();
        assert!(matches!(s.verify(&PublicKey::Ed25519(other.public())), Err(EnvelopeError::BadSignature)));

        let mut tampered = v.clone();
        tampered["payload"] = json!(b64url(br#"{"a":2}"#));
        let s = Signed::parse(tampered).unwrap();
        assert!(matches!(s.verify(&PublicKey::Ed25519(k.public())), Err(EnvelopeError::BadSignature)));
    }

    /// Other DIDComm implementations name the signer's `kid` in both headers: the same
    /// value twice is one signer, and the signature still has to verify.
    #[test]
    fn the_same_kid_in_both_headers_is_one_signer() {
        let k = Ed25519KeyPair::generate();
        let protected = b64url(br#"{"typ":"application/didcomm-signed+json","alg":"EdDSA","kid":"did:example:a#k"}"#);
        let payload = b64url(br#"{"a":1}"#);
        let signature = b64url(&k.sign(format!("{protected}.{payload}").as_bytes()));
        let jws = json!({"payload": payload, "signatures": [
            {"protected": protected, "signature": signature, "header": {"kid": "did:example:a#k"}}]});
        let s = Signed::parse(jws).unwrap();
        assert_eq!(s.kid(), "did:example:a#k");
        assert_eq!(s.verify(&PublicKey::Ed25519(k.public())).unwrap(), br#"{"a":1}"#);
    }

    #[test]
    fn malformed_jws_is_refused() {
        let k = Ed25519KeyPair::generate();
        let v: Value = serde_json::from_str(&sign(b"{}", "did:example:a#k", &k)).unwrap();
        let mut two = v.clone();
        let sig = two["signatures"][0].clone();
        two["signatures"].as_array_mut().unwrap().push(sig);
        let mut no_kid = v.clone();
        no_kid["signatures"][0]["header"] = json!({});
        let mut crit = v.clone();
        crit["signatures"][0]["protected"] = json!(b64url(br#"{"alg":"EdDSA","crit":["x"],"x":1}"#));
        let mut none = v.clone();
        none["signatures"][0]["protected"] = json!(b64url(br#"{"alg":"none"}"#));
        for (what, bad) in [
            ("two signatures", two),
            ("no kid", no_kid),
            ("not an object", json!([1])),
            ("bad base64", json!({"payload": "***", "signatures": v["signatures"].clone()})),
        ] {
            assert!(matches!(Signed::parse(bad), Err(EnvelopeError::MalformedJws(_))), "{what}");
        }
        assert!(matches!(Signed::parse(crit), Err(EnvelopeError::UnsupportedAlgorithm(_))));
        let mut conflicting = v.clone();
        conflicting["signatures"][0]["protected"] = json!(b64url(br#"{"alg":"EdDSA","kid":"did:example:b#k"}"#));
        assert!(matches!(Signed::parse(conflicting), Err(EnvelopeError::MalformedJws(_))), "two signers named");
        let mut alg_twice = v.clone();
        alg_twice["signatures"][0]["header"]["alg"] = json!("EdDSA");
        assert!(matches!(Signed::parse(alg_twice), Err(EnvelopeError::MalformedJws(_))), "other names stay disjoint");
        let s = Signed::parse(none).unwrap();
        assert!(matches!(s.verify(&PublicKey::Ed25519(k.public())), Err(EnvelopeError::UnsupportedAlgorithm(_))));
    }
}

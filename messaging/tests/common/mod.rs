//! Parties with DID documents, shared by the envelope tests and the interop test.
#![allow(dead_code)]

use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::ids::b64url;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::resolver::Keys;
use sichat_messaging::{AgreementKey, RecipientKey, SigningKey};
use std::collections::HashMap;
use std::sync::Arc;

/// Someone with a DID, one Ed25519 signing key and `n` X25519 key agreement keys (devices).
pub struct Party {
    pub did: Did,
    pub sign: Ed25519KeyPair,
    pub sign_kid: String,
    pub agree: Vec<AgreementKey>,
    /// The X25519 secrets behind `agree`, for other implementations and impostors.
    pub agree_secrets: Vec<Vec<u8>>,
}

impl Party {
    pub fn new(name: &str, devices: usize) -> Self {
        let did = Did::parse(&format!("did:web:example.org:users:{name}")).unwrap();
        let agree_secrets: Vec<Vec<u8>> = (0..devices).map(|_| X25519KeyPair::generate().secret().to_vec()).collect();
        let agree = agree_secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                AgreementKey::new(did.url(&format!("device-{i}-x25519")), X25519KeyPair::from_secret(s).unwrap())
            })
            .collect();
        Party { sign_kid: did.url("device-0"), did, sign: Ed25519KeyPair::generate(), agree, agree_secrets }
    }

    /// The DID document, with keys as JsonWebKey2020 (which other implementations read).
    pub fn document(&self) -> Value {
        let mut vms = vec![json!({
            "id": self.sign_kid, "type": "JsonWebKey2020", "controller": self.did,
            "publicKeyJwk": self.sign.public().to_jwk(),
        })];
        for k in &self.agree {
            vms.push(json!({"id": k.kid(), "type": "JsonWebKey2020", "controller": self.did, "publicKeyJwk": k.public().to_jwk()}));
        }
        json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": self.did,
            "verificationMethod": vms,
            "authentication": [self.sign_kid],
            "keyAgreement": self.agree.iter().map(|k| k.kid()).collect::<Vec<_>>(),
        })
    }

    pub fn keys(&self) -> Keys {
        Keys::from_document(self.did.as_str(), &self.document()).unwrap()
    }

    pub fn recipients(&self) -> Vec<RecipientKey> {
        RecipientKey::all_of(&self.keys())
    }

    pub fn signer(&self) -> SigningKey<'_> {
        SigningKey { kid: &self.sign_kid, key: &self.sign }
    }

    pub fn agreement(&self, i: usize) -> &AgreementKey {
        &self.agree[i]
    }

    pub fn kid(&self, i: usize) -> &str {
        self.agree[i].kid()
    }

    pub fn all_agreement(&self) -> &[AgreementKey] {
        &self.agree
    }

    /// The private keys as JWKs, for another implementation's secrets resolver.
    pub fn secrets(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "kid": self.sign_kid,
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.sign.public().as_bytes()), "d": b64url(&self.sign.secret())},
        })];
        for (a, secret) in self.agree.iter().zip(&self.agree_secrets) {
            out.push(json!({
                "kid": a.kid(),
                "jwk": {"kty": "OKP", "crv": "X25519", "x": b64url(a.public().as_bytes()), "d": b64url(secret)},
            }));
        }
        out
    }
}

pub fn directory(parties: &[&Party]) -> HashMap<String, Arc<Keys>> {
    parties.iter().map(|p| (p.did.to_string(), Arc::new(p.keys()))).collect()
}

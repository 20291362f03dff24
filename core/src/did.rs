//! Decentralized identifiers and DID documents.
//!
//! - `did:key` for Ed25519 (a wallet with no server).
//! - `did:web` for nodes (`did:web:host%3Aport`) and their users (`…:users:<name>`).

use crate::keys::{Ed25519Public, X25519Public};
use crate::CoreError;
use serde::{Deserialize, Serialize};
use std::fmt;
use url::Url;

/// A syntactically valid DID (DID Core §3.1). A bad value cannot be constructed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Did(String);

impl Did {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let bad = |why: &str| CoreError::InvalidDid(format!("{s:?}: {why}"));
        if s.len() > 2048 {
            return Err(bad("longer than 2048 characters"));
        }
        let rest = s.strip_prefix("did:").ok_or_else(|| bad("must start with \"did:\""))?;
        let (method, id) = rest.split_once(':').ok_or_else(|| bad("missing method-specific id"))?;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(bad("method must be lowercase letters and digits"));
        }
        if id.is_empty() || id.ends_with(':') {
            return Err(bad("method-specific id is empty or ends with ':'"));
        }
        let bytes = id.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes.get(i + 1..i + 3).ok_or_else(|| bad("truncated percent-encoding"))?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(bad("invalid percent-encoding"));
                    }
                    i += 3;
                    continue;
                }
                b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':') => {}
                _ => return Err(bad("invalid character in method-specific id")),
            }
            i += 1;
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }

    /// `did:key` of an Ed25519 public key.
    pub fn key(public: &Ed25519Public) -> Self {
        Self(format!("did:key:{}", public.to_multibase()))
    }

    /// The `did:web` of a base URL: the host, its port percent-encoded, then the path.
    pub fn web(base: &Url) -> Result<Self, CoreError> {
        let host = base.host_str().ok_or_else(|| CoreError::InvalidDid(format!("{base} has no host")))?;
        let mut did = format!("did:web:{host}");
        if let Some(port) = base.port() {
            did.push_str(&format!("%3A{port}"));
        }
        for seg in base.path_segments().into_iter().flatten().filter(|s| !s.is_empty()) {
            did.push(':');
            did.push_str(seg);
        }
        Self::parse(&did)
    }

    /// A child `did:web`, e.g. `did:web:host:users:alice` from `did:web:host`.
    pub fn web_child(&self, segments: &[&str]) -> Result<Self, CoreError> {
        Self::parse(&format!("{}:{}", self.0, segments.join(":")))
    }

    /// For `did:key`: the Ed25519 key it encodes.
    pub fn key_ed25519(&self) -> Result<Ed25519Public, CoreError> {
        let mb = self
            .0
            .strip_prefix("did:key:")
            .ok_or_else(|| CoreError::InvalidDid(format!("{} is not a did:key", self.0)))?;
        Ed25519Public::from_multibase(mb)
    }

    /// The verification method URL `did#fragment`.
    pub fn url(&self, fragment: &str) -> String {
        format!("{}#{fragment}", self.0)
    }
}

impl TryFrom<String> for Did {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        Self::parse(&s)
    }
}

impl From<Did> for String {
    fn from(d: Did) -> String {
        d.0
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({})", self.0)
    }
}

/// A Multikey verification method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub controller: String,
    pub public_key_multibase: String,
}

/// A service endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// A URL, or an object such as DIDComm's `{"uri", "accept", "routingKeys"}`.
    pub service_endpoint: serde_json::Value,
}

/// A DID document (DID Core), with the relationships Sichat uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    pub id: Did,
    #[serde(default)]
    pub verification_method: Vec<VerificationMethod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertion_method: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_agreement: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_invocation: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_delegation: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<Service>,
    /// Other identifiers of the same subject (a `did:web` and its `did:webvh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_known_as: Vec<String>,
}

/// Which relationships a key is listed under.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relationships {
    pub authentication: bool,
    pub assertion_method: bool,
    pub key_agreement: bool,
    pub capability: bool,
}

impl DidDocument {
    pub fn new(id: Did) -> Self {
        Self {
            context: vec!["https://www.w3.org/ns/did/v1".into(), "https://w3id.org/security/multikey/v1".into()],
            id,
            verification_method: Vec::new(),
            authentication: Vec::new(),
            assertion_method: Vec::new(),
            key_agreement: Vec::new(),
            capability_invocation: Vec::new(),
            capability_delegation: Vec::new(),
            service: Vec::new(),
            also_known_as: Vec::new(),
        }
    }

    /// Remove the method `#fragment` and every reference to it.
    pub fn remove_key(&mut self, fragment: &str) {
        let id = self.id.url(fragment);
        self.verification_method.retain(|vm| vm.id != id);
        for list in [
            &mut self.authentication,
            &mut self.assertion_method,
            &mut self.key_agreement,
            &mut self.capability_invocation,
            &mut self.capability_delegation,
        ] {
            list.retain(|r| *r != id);
        }
    }

    /// Add a Multikey method `#fragment` under the given relationships.
    pub fn add_key(&mut self, fragment: &str, public_key_multibase: String, rel: Relationships) {
        let id = self.id.url(fragment);
        self.verification_method.push(VerificationMethod {
            id: id.clone(),
            kind: "Multikey".into(),
            controller: self.id.to_string(),
            public_key_multibase,
        });
        let lists = [
            (rel.authentication, &mut self.authentication),
            (rel.assertion_method, &mut self.assertion_method),
            (rel.key_agreement, &mut self.key_agreement),
            (rel.capability, &mut self.capability_invocation),
            (rel.capability, &mut self.capability_delegation),
        ];
        for (wanted, list) in lists {
            if wanted {
                list.push(id.clone());
            }
        }
    }

    /// The document of an Ed25519 `did:key`, with its derived X25519 key agreement key.
    pub fn for_did_key(public: &Ed25519Public) -> Self {
        let did = Did::key(public);
        let fragment = public.to_multibase();
        let mut doc = Self::new(did);
        doc.add_key(
            &fragment,
            fragment.clone(),
            Relationships { authentication: true, assertion_method: true, key_agreement: false, capability: true },
        );
        let x = public.to_x25519().to_multibase();
        doc.add_key(&x.clone(), x, Relationships { key_agreement: true, ..Default::default() });
        doc
    }

    /// The Ed25519 key of a verification method listed under `authentication`.
    pub fn authentication_key(&self, method_id: &str) -> Option<Ed25519Public> {
        self.authentication.iter().find(|id| *id == method_id)?;
        let vm = self.verification_method.iter().find(|vm| vm.id == method_id)?;
        Ed25519Public::from_multibase(&vm.public_key_multibase).ok()
    }
}

impl Ed25519Public {
    /// The X25519 key that this Ed25519 key maps to (RFC 7748 birational map).
    pub fn to_x25519(&self) -> X25519Public {
        X25519Public::from_bytes(self.montgomery_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Ed25519KeyPair;

    #[test]
    fn did_web_percent_encodes_the_port_and_maps_the_path() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(Did::web(&u).unwrap().as_str(), "did:web:127.0.0.1%3A8080");
        let u = Url::parse("https://example.com/sichat/").unwrap();
        assert_eq!(Did::web(&u).unwrap().as_str(), "did:web:example.com:sichat");
        let node = Did::web(&Url::parse("https://example.com").unwrap()).unwrap();
        assert_eq!(node.web_child(&["users", "alice"]).unwrap().as_str(), "did:web:example.com:users:alice");
    }

    #[test]
    fn parse_rejects_malformed_dids() {
        for bad in
            ["", "did:", "did:web", "did:web:", "did:Web:x", "did:web:a b", "did:web:x%2", "did:web:x:", "urn:x:y"]
        {
            assert!(Did::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(Did::parse("did:web:example.com%3A443:users:bob").is_ok());
    }

    #[test]
    fn did_key_document_lists_the_key_and_its_x25519_twin() {
        let k = Ed25519KeyPair::generate().public();
        let doc = DidDocument::for_did_key(&k);
        assert_eq!(doc.id.key_ed25519().unwrap(), k);
        assert_eq!(doc.verification_method.len(), 2);
        assert_eq!(doc.key_agreement.len(), 1);
        assert!(doc.verification_method[1].public_key_multibase.starts_with("z6LS"));
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["@context"][0], "https://www.w3.org/ns/did/v1");
    }
}

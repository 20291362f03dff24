//! Building a W3C VC Data Model 2.0 credential and securing it as `vc+jwt`
//! (VC-JOSE-COSE: the credential itself is the JWS payload, `typ` is `vc+jwt`).

use crate::IssuerError;
use serde_json::{json, Map, Value};
use sichat_core::jws;
use sichat_core::p256key::KeyPair;

pub const VC_JWT_TYP: &str = "vc+jwt";
pub const VCDM2_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// Path (under the node's public URL) of the node's JSON-LD context, which credentials
/// issued before the context was embedded name. It is still served, and never changes,
/// so their Data Integrity proofs stay valid.
pub const CONTEXT_PATH: &str = "contexts/v1";

/// The node's vocabulary: where every term that the VC Data Model 2.0 context leaves
/// undefined (credential type names, claim names) expands to.
pub fn vocab(node_public_url: &str) -> String {
    format!("{}/vocab#", node_public_url.trim_end_matches('/'))
}

/// The JSON-LD context a credential carries after the VC Data Model 2.0 one: the node's
/// vocabulary, embedded, so that a verifier needs no context beyond the standard ones
/// (no fetch, nothing to pin). The published VC 2.0 context has no `@vocab` of its own.
pub fn embedded_context(node_public_url: &str) -> Value {
    json!({"@vocab": vocab(node_public_url)})
}

/// The document served at [`CONTEXT_PATH`]: the same vocabulary as
/// [`embedded_context`], for credentials that name it by URL.
pub fn context_document(node_public_url: &str) -> Value {
    json!({"@context": embedded_context(node_public_url)})
}

/// One `BitstringStatusListEntry`.
#[derive(Debug, Clone)]
pub struct StatusEntry {
    pub purpose: &'static str,
    pub list_url: String,
    pub index: usize,
}

/// What goes into a credential.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub id: &'a str,
    /// The issuing node's public URL, whose vocabulary the credential embeds (see
    /// [`embedded_context`]).
    pub node_url: &'a str,
    pub issuer: &'a str,
    pub type_name: &'a str,
    /// The whole `credentialSubject`, `id` included.
    pub subject: &'a Value,
    /// The JSON Schema of its subject, where one is published (a wallet issuing alone has
    /// no host to publish one at).
    pub schema_url: Option<&'a str>,
    pub statuses: &'a [StatusEntry],
    pub valid_from_ms: i64,
    pub valid_until_ms: Option<i64>,
}

pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub fn build(d: &Draft) -> Value {
    let mut vc = Map::new();
    vc.insert("@context".into(), json!([VCDM2_CONTEXT, embedded_context(d.node_url)]));
    vc.insert("id".into(), json!(format!("urn:uuid:{}", d.id)));
    vc.insert("type".into(), json!(["VerifiableCredential", d.type_name]));
    vc.insert("issuer".into(), json!(d.issuer));
    vc.insert("validFrom".into(), json!(rfc3339(d.valid_from_ms)));
    if let Some(until) = d.valid_until_ms {
        vc.insert("validUntil".into(), json!(rfc3339(until)));
    }
    vc.insert("credentialSubject".into(), d.subject.clone());
    if let Some(schema) = d.schema_url {
        vc.insert("credentialSchema".into(), json!({"id": schema, "type": "JsonSchema"}));
    }
    let statuses: Vec<Value> = d
        .statuses
        .iter()
        .map(|s| {
            json!({
                "id": format!("{}#{}", s.list_url, s.index),
                "type": "BitstringStatusListEntry",
                "statusPurpose": s.purpose,
                "statusListIndex": s.index.to_string(),
                "statusListCredential": s.list_url,
            })
        })
        .collect();
    if !statuses.is_empty() {
        vc.insert("credentialStatus".into(), Value::Array(statuses));
    }
    Value::Object(vc)
}

/// Secure a credential as a compact JWS with `typ: vc+jwt` and `kid` = the issuing key
/// (EdDSA or ES256, by the key).
pub fn sign_vc_jwt(key: &KeyPair, kid: &str, credential: &Value) -> Result<String, IssuerError> {
    Ok(jws::sign_with(key, VC_JWT_TYP, Some(kid), credential)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_vcdm2_credential_and_signs_it_as_vc_jwt() {
        let subject = json!({"id": "did:key:z6Mkabc", "name": "Bob"});
        let statuses =
            [StatusEntry { purpose: "revocation", list_url: "https://n/users/a/status/1".into(), index: 42 }];
        let d = Draft {
            id: "0190-x",
            node_url: "https://n/",
            issuer: "did:web:n:users:a",
            type_name: "FriendCredential",
            subject: &subject,
            schema_url: Some("https://n/s.json"),
            statuses: &statuses,
            valid_from_ms: 0,
            valid_until_ms: Some(86_400_000),
        };
        let vc = build(&d);
        assert_eq!(vc["@context"], json!([VCDM2_CONTEXT, {"@vocab": "https://n/vocab#"}]));
        assert_eq!(vc["validFrom"], "1970-01-01T00:00:00Z");
        assert_eq!(vc["validUntil"], "1970-01-02T00:00:00Z");
        assert_eq!(vc["credentialStatus"][0]["statusListIndex"], "42");
        assert_eq!(vc["credentialStatus"][0]["id"], "https://n/users/a/status/1#42");
        for key in [
            KeyPair::Ed25519(sichat_core::keys::Ed25519KeyPair::generate()),
            KeyPair::P256(sichat_core::p256key::P256KeyPair::generate()),
        ] {
            let jwt = sign_vc_jwt(&key, "did:web:n:users:a#issuing-1", &vc).unwrap();
            let back: Value = jws::verify_with(&jwt, &key.public(), VC_JWT_TYP).unwrap();
            assert_eq!(back, vc);
        }
    }
}

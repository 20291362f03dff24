//! Entry points into every parser of outside input, for fuzzing. Each takes arbitrary
//! bytes and must return, whatever they are: a panic, an abort or a hang is a bug.
//!
//! The cargo-fuzz targets in `fuzz/targets/` call these, and `tests/seeds.rs` runs
//! every file of `fuzz/corpus/<target>/` through them under plain `cargo test`, so the
//! seed corpora (small real inputs and the hostile ones an outside review found) are
//! checked in CI without a nightly toolchain. Nothing here touches the network: DIDs are
//! `did:key`/`did:jwk` or resolved from a fixed map.

use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::p256key::{KeyPair, PublicKey};
use sichat_core::resolver::{Keys, Relationship};
use sichat_core::{json as bounded, jws};
use sichat_issuer::data_integrity::{self, Contexts, Method, ProofPurpose};
use sichat_messaging::federation_auth::{verify_request, IncomingRequest};
use sichat_messaging::{unpack, unwrap_forward, AgreementKey, UnpackOptions};
use sichat_verifier::verify::Input;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The fixed keys inputs are checked against.
pub struct Fixture {
    /// An Ed25519 `did:key` method, for Data Integrity proofs and JWS.
    pub method: Method,
    pub signer: KeyPair,
    /// A node (`did:web:node.example`) whose document lists `#node-key` for authentication.
    pub node_keys: HashMap<String, Arc<Keys>>,
    pub node_key: Ed25519KeyPair,
    /// A DIDComm recipient's agreement key.
    pub recipient: [AgreementKey; 1],
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = Ed25519KeyPair::from_secret(&[7; 32]).expect("a fixed key");
        let mb = key.public().to_multibase();
        let method = Method { id: format!("did:key:{mb}#{mb}"), key: PublicKey::Ed25519(key.public()) };
        let node_key = Ed25519KeyPair::from_secret(&[9; 32]).expect("a fixed key");
        let node = "did:web:node.example";
        let doc = json!({
            "id": node,
            "verificationMethod": [{"id": format!("{node}#node-key"), "type": "Multikey", "controller": node,
                "publicKeyMultibase": node_key.public().to_multibase()}],
            "authentication": [format!("{node}#node-key")],
        });
        let keys = Keys::from_document(node, &doc).expect("a DID document");
        let agree = X25519KeyPair::from_secret(&[11; 32]).expect("a fixed key");
        Fixture {
            method,
            signer: KeyPair::Ed25519(key),
            node_keys: HashMap::from([(node.to_owned(), Arc::new(keys))]),
            node_key,
            recipient: [AgreementKey::new("did:web:node.example:users:bob#x", agree)],
        }
    })
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// JWS/JWT: header and payload decoding, and signature checks against a fixed key.
pub fn jws(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = jws::header_of(t);
    let _ = jws::unverified_parts(t);
    let _ = jws::unverified_payload::<Value>(t);
    let key = PublicKey::Ed25519(fixture().node_key.public());
    for typ in ["vc+jwt", "vp+jwt", "JWT"] {
        let _ = jws::verify_signature(t, &key, typ);
    }
}

/// DIDs and DID documents: parsing, keys by relationship, Multikey and JWK keys.
pub fn did(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = Did::parse(t.trim());
    let _ = PublicKey::from_multibase(t.trim());
    let Ok(doc) = bounded::from_str_bounded::<Value>(t, bounded::MAX_DEPTH) else { return };
    let _ = PublicKey::from_jwk(&doc);
    let id = doc.get("id").and_then(Value::as_str).unwrap_or("did:web:example.org");
    if let Ok(keys) = Keys::from_document(id, &doc) {
        for m in doc.get("verificationMethod").and_then(Value::as_array).into_iter().flatten() {
            let mid = m.get("id").and_then(Value::as_str).unwrap_or_default();
            let _ = keys.key_for(mid, Relationship::Authentication);
            let _ = keys.key_for(mid, Relationship::AssertionMethod);
            let _ = keys.agreement_key(mid);
        }
    }
}

/// Verifiable Credentials as JSON and JSON-LD: format detection, the holder's reading,
/// and a Data Integrity proof check (bounds, JSON-LD expansion, canonicalization).
pub fn vc(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = Input::detect(t);
    let _ = sichat_holder::check::unverified("vc+jwt", t);
    let Ok(doc) = sichat_holder::check::unverified("ldp_vc", t) else { return };
    data_integrity_checks(&doc, ProofPurpose::Assertion);
}

fn data_integrity_checks(doc: &Value, purpose: ProofPurpose) {
    let _ = data_integrity::remote_contexts(doc);
    let _ = data_integrity::proof_of(doc);
    let f = fixture();
    let verified = futures_executor::block_on(data_integrity::verify(doc, &f.method, purpose, &Contexts::new()));
    no_caught_panic(verified.err());
    if purpose == ProofPurpose::Authentication {
        // The wallet signs what it is asked to present.
        let signed = futures_executor::block_on(data_integrity::sign_for(
            &f.signer,
            &f.method.id,
            doc,
            &Contexts::new(),
            purpose,
            Some(("nonce", "aud")),
        ));
        no_caught_panic(signed.err());
    }
}

/// The node catches a panic of the JSON-LD libraries and refuses the document; to the
/// fuzzer it is still a panic, of an input the bounds let through.
fn no_caught_panic(error: Option<String>) {
    if error.as_deref() == Some(data_integrity::JSON_LD_PANICKED) {
        panic!("JSON-LD processing panicked (caught by the node): check_bounds should refuse this input");
    }
}

/// OpenID4VCI key proofs: a JWT whose header names the holder's key (`jwk`, a `did:key`
/// or a `did:jwk` `kid`), checked with that key.
pub fn oid4vci_proof(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let Ok(header) = jws::header_of(t) else { return };
    let mut keys = Vec::new();
    if let Some(jwk) = header.get("jwk") {
        keys.extend(PublicKey::from_jwk(jwk));
    }
    if let Some(kid) = header.get("kid").and_then(Value::as_str) {
        let did = kid.split('#').next().unwrap_or_default();
        if let Some(mb) = did.strip_prefix("did:key:") {
            keys.extend(PublicKey::from_multibase(mb).ok());
        }
        if let Some(b64) = did.strip_prefix("did:jwk:") {
            let jwk = sichat_core::ids::b64url_decode(b64)
                .and_then(|b| bounded::from_slice_bounded::<Value>(&b, bounded::MAX_DEPTH).ok());
            keys.extend(jwk.as_ref().and_then(PublicKey::from_jwk));
        }
    }
    for key in keys {
        let _ = jws::verify_with::<Value>(t, &key, "openid4vci-proof+jwt");
    }
}

/// OpenID4VP `direct_post` bodies: the form, the `vp_token` JSON, and each presentation
/// (a `vp+jwt`, or an `ldp_vp` with its Data Integrity proof).
pub fn oid4vp_response(data: &[u8]) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(data).into_owned().collect();
    let Some(token) = form.get("vp_token") else { return };
    let Ok(token) = bounded::from_str_bounded::<Value>(token, bounded::MAX_DEPTH) else { return };
    for presentations in token.as_object().into_iter().flat_map(|o| o.values()) {
        for p in presentations.as_array().into_iter().flatten() {
            match p {
                Value::String(jwt) => {
                    let _ = Input::detect(jwt);
                    if let Ok((_, payload)) = jws::unverified_parts(jwt) {
                        for vc in payload.get("verifiableCredential").and_then(Value::as_array).into_iter().flatten() {
                            if let Some(id) = vc.get("id").and_then(Value::as_str) {
                                jws(id.trim_start_matches("data:application/vc+jwt,").as_bytes());
                            }
                        }
                    }
                }
                doc @ Value::Object(_) => data_integrity_checks(doc, ProofPurpose::Authentication),
                _ => {}
            }
        }
    }
}

/// RFC 9421 signatures on node-to-node requests: lines of `name: value` headers, a blank
/// line, then the body; verified as a `POST` to `https://node.example/didcomm`.
pub fn http_signature(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = axum::http::HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(&line[..colon]),
            axum::http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let request =
        IncomingRequest { method: "POST", target_uri: "https://node.example/didcomm", headers: &headers, body };
    let now = sichat_core::ids::now_ms() / 1000;
    let _ = futures_executor::block_on(verify_request(&request, &fixture().node_keys, now));
}

/// DIDComm envelopes: unpacking (JWE, JWS, plaintext) and unwrapping a forward.
pub fn didcomm(data: &[u8]) {
    let f = fixture();
    let opts = UnpackOptions { max_size: 64 * 1024, ..Default::default() };
    let _ = futures_executor::block_on(unpack(data, &f.recipient, &HashMap::<String, Arc<Keys>>::new(), &opts));
    let _ = unwrap_forward(data, &f.recipient, &opts);
}

/// A fuzz target: any input must end without a panic.
pub type Target = fn(&[u8]);

/// Every target by name, as the corpus directories are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("jws", jws),
    ("did", did),
    ("vc", vc),
    ("oid4vci_proof", oid4vci_proof),
    ("oid4vp_response", oid4vp_response),
    ("http_signature", http_signature),
    ("didcomm", didcomm),
];

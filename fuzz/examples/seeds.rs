//! Writes the seed corpora of `fuzz/corpus/<target>/`: small real inputs made with the
//! project's own signing code, and the hostile inputs an outside review found. Run from
//! the repository root: `cargo run -p sichat-fuzz-harness --example seeds`.

use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::ids::b64url;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_fuzz_harness::fixture;
use sichat_issuer::credential::VCDM2_CONTEXT;
use sichat_issuer::data_integrity::{self, Contexts, ProofPurpose};
use sichat_messaging::federation_auth::{sign_request, NodeSigner, OutgoingRequest};
use sichat_messaging::jwe::RecipientKey;
use sichat_messaging::{pack_authcrypt, wrap_forward, AgreementKey, Message, SigningKey};
use std::path::Path;

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!("deep"), |inner, _| json!({ "x:n": inner }))
}

struct Node(Ed25519KeyPair);

impl NodeSigner for Node {
    fn key_id(&self) -> String {
        "did:web:node.example#node-key".into()
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message)
    }
}

fn main() {
    let f = fixture();
    let did = f.method.id.split('#').next().expect("did").to_owned();
    let block = futures_executor::block_on;
    let credential = json!({
        "@context": [VCDM2_CONTEXT],
        "id": "urn:uuid:0190a1b2-0000-7000-8000-000000000001",
        "type": ["VerifiableCredential", "FriendCredential"],
        "issuer": did,
        "validFrom": "2026-01-01T00:00:00Z",
        "credentialSubject": {"id": did, "name": "Bob"},
    });
    let signed = block(data_integrity::sign(&f.signer, &f.method.id, &credential, &Contexts::new())).expect("sign");
    let KeyPair(ed) = ed25519(&f.signer);
    let vc_jwt = jws::sign(ed, "vc+jwt", Some(&f.method.id), &credential).expect("sign");

    // JWS/JWT
    write("jws", "vc-jwt", &vc_jwt);
    write("jws", "two-parts", "eyJhbGciOiJFZERTQSJ9.e30");
    write(
        "jws",
        "deep-header",
        format!("{}.e30.AA", b64url(format!("{}{}", "[".repeat(200), "]".repeat(200)).as_bytes())),
    );

    // DIDs and DID documents
    write("did", "did-web", "did:web:example.org:users:alice");
    write("did", "did-key", &did);
    write(
        "did",
        "document",
        json!({
        "id": "did:web:example.org", "verificationMethod": [{"id": "did:web:example.org#k", "type": "Multikey",
        "controller": "did:web:example.org", "publicKeyMultibase": f.method.key.to_multibase()}],
        "authentication": ["did:web:example.org#k"], "assertionMethod": ["did:web:example.org#k"]})
        .to_string(),
    );
    write("did", "jwk", f.method.key.to_jwk().to_string());

    // VC JSON and JSON-LD, with the inputs that overflowed a stack or panicked in ssi/json-ld.
    write("vc", "ldp-vc", signed.to_string());
    write("vc", "vc-jwt", &vc_jwt);
    let mut deep = signed.clone();
    deep["credentialSubject"]["x:n"] = nested(114);
    write("vc", "nested-114", deep.to_string());
    let mut big = signed.clone();
    big["credentialSubject"]["x:n"] = json!(1e308);
    write("vc", "number-1e308", big.to_string());
    let mut year = signed.clone();
    year["proof"]["created"] = json!("999-01-01T00:00:00Z");
    write("vc", "three-digit-year", year.to_string());
    let mut iri = signed.clone();
    iri["type"] = json!(["VerifiableCredential", "Friend%edCredential"]);
    write("vc", "percent-ed-type", iri.to_string());
    let mut prop = signed.clone();
    prop["credentialSubject"]["a%ed"] = json!("x");
    write("vc", "percent-ed-property", prop.to_string());

    // OpenID4VCI proofs: jwk, did:key and did:jwk holder keys.
    let claims = json!({"aud": "https://node.example/users/alice", "iat": 1_790_000_000, "nonce": "n"});
    let with_kid = jws::sign(ed, "openid4vci-proof+jwt", Some(&f.method.id), &claims).expect("sign");
    write("oid4vci_proof", "did-key-kid", &with_kid);
    let did_jwk = format!("did:jwk:{}#0", b64url(f.method.key.to_jwk().to_string().as_bytes()));
    write(
        "oid4vci_proof",
        "did-jwk-kid",
        jws::sign(ed, "openid4vci-proof+jwt", Some(&did_jwk), &claims).expect("sign"),
    );
    let (_, rest) = with_kid.split_once('.').expect("jws");
    let header = json!({"alg": "EdDSA", "typ": "openid4vci-proof+jwt", "jwk": f.method.key.to_jwk()});
    write("oid4vci_proof", "jwk-header", format!("{}.{rest}", b64url(header.to_string().as_bytes())));

    // OpenID4VP direct_post bodies.
    let form = |token: Value| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("vp_token", &token.to_string())
            .append_pair("state", "req-1")
            .finish()
    };
    let vp = json!({
        "@context": [VCDM2_CONTEXT], "type": ["VerifiablePresentation"], "holder": did,
        "verifiableCredential": [{"@context": [VCDM2_CONTEXT], "type": "EnvelopedVerifiableCredential",
            "id": format!("data:application/vc+jwt,{vc_jwt}")}],
        "aud": "decentralized_identifier:did:web:node.example:users:carol", "nonce": "n",
    });
    write(
        "oid4vp_response",
        "vp-jwt",
        form(json!({"jwt": [jws::sign(ed, "vp+jwt", Some(&f.method.id), &vp).expect("sign")]})),
    );
    let ldp_vp = json!({"@context": [VCDM2_CONTEXT], "type": ["VerifiablePresentation"], "holder": did,
        "verifiableCredential": [signed.clone()]});
    let ldp_vp = block(data_integrity::sign_for(
        &f.signer,
        &f.method.id,
        &ldp_vp,
        &Contexts::new(),
        ProofPurpose::Authentication,
        Some(("n", "aud")),
    ))
    .expect("sign");
    write("oid4vp_response", "ldp-vp", form(json!({"ldp": [ldp_vp.clone()]})));
    let mut bomb = ldp_vp.clone();
    bomb["verifiableCredential"] = json!([deep]);
    write("oid4vp_response", "ldp-vp-nested-114", form(json!({"ldp": [bomb]})));
    let plain = json!({"@context": [VCDM2_CONTEXT], "type": ["VerifiablePresentation"], "holder": did,
        "verifiableCredential": [deep]});
    write(
        "oid4vp_response",
        "vp-jwt-plain-nested",
        form(json!({"jwt": [jws::sign(ed, "vp+jwt", Some(&f.method.id), &plain).expect("sign")]})),
    );

    // RFC 9421 signed deliveries.
    let sender = Did::parse("did:web:node.example:users:alice").expect("did");
    let body = br#"{"protected":"e30","ciphertext":"AA"}"#;
    let req = OutgoingRequest::delivery("https://node.example/didcomm", &sender, body);
    let signed_headers = sign_request(&Node(f.node_key.clone()), &req, 1_790_000_000).expect("sign");
    let mut text = String::new();
    for (name, value) in signed_headers.pairs() {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    write("http_signature", "delivery", [text.as_bytes(), body].concat());
    write("http_signature", "no-signature", "content-type: application/didcomm-encrypted+json\n\n{}");

    // DIDComm envelopes: authcrypt to the fixture's recipient, and a forward of it.
    let alice = Ed25519KeyPair::from_secret(&[21; 32]).expect("key");
    let alice_agree =
        AgreementKey::new("did:web:node.example:users:alice#x", X25519KeyPair::from_secret(&[22; 32]).expect("key"));
    let bob = Did::parse("did:web:node.example:users:bob").expect("did");
    let to = [RecipientKey { kid: f.recipient[0].kid().to_owned(), key: f.recipient[0].public() }];
    let msg = Message::new("https://didcomm.org/basicmessage/2.0/message", json!({"content": "hi"}))
        .with_from(sender.clone())
        .with_to(vec![bob.clone()]);
    let kid = "did:web:node.example:users:alice#s";
    let auth = pack_authcrypt(&msg, &alice_agree, Some(&SigningKey { kid, key: &alice }), &to).expect("pack");
    write("didcomm", "authcrypt", &auth);
    write("didcomm", "forward", wrap_forward(&auth, &bob, &to).expect("wrap"));
    write("didcomm", "nested", format!("{}{}", "[".repeat(120), "]".repeat(120)));
}

struct KeyPair<'a>(&'a Ed25519KeyPair);

fn ed25519(k: &sichat_core::p256key::KeyPair) -> KeyPair<'_> {
    match k {
        sichat_core::p256key::KeyPair::Ed25519(e) => KeyPair(e),
        sichat_core::p256key::KeyPair::P256(_) => unreachable!("the fixture key is Ed25519"),
    }
}

//! Verifying a credential (DID cached) against raw Ed25519 verification of the same bytes.
//!
//!     cargo bench -p sichat-verifier --bench verify

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::Verifier as _;
use serde_json::json;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::NetPolicy;
use sichat_core::p256key::KeyPair;
use sichat_issuer::credential::{build, sign_vc_jwt, Draft, VCDM2_CONTEXT};
use sichat_issuer::data_integrity::{self, Contexts};
use sichat_verifier::{Options, Verifier};
use std::hint::black_box;

const CONTEXT: &str = "https://id.example.org/contexts/v1";

fn bench(c: &mut Criterion) {
    let key = Ed25519KeyPair::generate();
    let mb = key.public().to_multibase();
    let issuer = format!("did:key:{mb}");
    let kid = format!("{issuer}#{mb}");
    let subject = json!({"id": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "name": "Bob"});
    let mut vc = build(&Draft {
        id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        node_url: "https://id.example.org",
        issuer: &issuer,
        type_name: "FriendCredential",
        subject: &subject,
        schema_url: Some("https://id.example.org/schema.json"),
        statuses: &[],
        valid_from_ms: 1_790_000_000_000,
        valid_until_ms: None,
    });
    vc.as_object_mut().expect("object").remove("credentialSchema");
    assert_eq!(vc["@context"][0], VCDM2_CONTEXT);
    let signer = KeyPair::Ed25519(Ed25519KeyPair::from_secret(&key.secret()).expect("key"));
    let jwt = sign_vc_jwt(&signer, &kid, &vc).expect("sign");
    let (input, sig) = jwt.rsplit_once('.').expect("compact");
    let sig = sichat_core::ids::b64url_decode(sig).expect("b64");
    let raw_key = ed25519_dalek::VerifyingKey::from_bytes(key.public().as_bytes()).expect("key");
    let raw_sig = ed25519_dalek::Signature::from_slice(&sig).expect("sig");

    let contexts = Contexts::from([(
        CONTEXT.to_owned(),
        sichat_issuer::credential::context_document("https://id.example.org").to_string(),
    )]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let di = rt.block_on(data_integrity::sign(&signer, &kid, &vc, &contexts)).expect("sign").to_string();
    let verifier = Verifier::new(NetPolicy::default(), contexts).expect("verifier");
    let opts = Options::default();
    assert!(rt.block_on(verifier.verify(&jwt, &opts)).valid);
    assert!(rt.block_on(verifier.verify(&di, &opts)).valid);

    let mut g = c.benchmark_group("verify");
    g.bench_function("raw ed25519-dalek verify (same bytes)", |b| {
        b.iter(|| raw_key.verify(black_box(input.as_bytes()), &raw_sig).expect("valid"))
    });
    g.bench_function("vc+jwt verify (all checks, DID cached)", |b| {
        b.iter(|| assert!(rt.block_on(verifier.verify(black_box(&jwt), &opts)).valid))
    });
    g.bench_function("eddsa-rdfc-2022 verify (all checks, DID cached)", |b| {
        b.iter(|| assert!(rt.block_on(verifier.verify(black_box(&di), &opts)).valid))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

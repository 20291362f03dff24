//! Signing a credential as `vc+jwt` and with a Data Integrity proof (`eddsa-rdfc-2022`),
//! against raw Ed25519 signing of the same bytes.
//!
//!     cargo bench -p sichat-issuer --bench vc_jwt

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::Signer;
use serde_json::json;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::p256key::{KeyPair, P256KeyPair};
use sichat_issuer::credential::{build, sign_vc_jwt, Draft, StatusEntry};
use sichat_issuer::data_integrity::{self, Contexts};
use std::hint::black_box;

const CONTEXT: &str = "https://id.example.org/contexts/v1";

fn bench(c: &mut Criterion) {
    let key = KeyPair::Ed25519(Ed25519KeyPair::generate());
    let es256 = KeyPair::P256(P256KeyPair::generate());
    let kid = "did:web:id.example.org:users:alice#issuing-0190a1b2";
    let subject =
        json!({"id": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "name": "Bob", "since": "2024-05-01"});
    let statuses = [StatusEntry {
        purpose: "revocation",
        list_url: "https://id.example.org/users/alice/status/0190".into(),
        index: 94567,
    }];
    let draft = Draft {
        id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        node_url: "https://id.example.org",
        issuer: "did:web:id.example.org:users:alice",
        type_name: "FriendCredential",
        subject: &subject,
        schema_url: Some("https://id.example.org/users/alice/credential-types/FriendCredential/schema.json"),
        statuses: &statuses,
        valid_from_ms: 1_790_000_000_000,
        valid_until_ms: None,
    };
    let vc = build(&draft);
    // The exact signing input of the JWS, so the raw signature covers the same bytes.
    let jwt = sign_vc_jwt(&key, kid, &vc).expect("sign");
    let signing_input = jwt.rsplit_once('.').map(|(i, _)| i.to_owned()).expect("compact");
    let raw = ed25519_dalek::SigningKey::from_bytes(&key.secret()[..].try_into().expect("32 bytes"));

    let mut g = c.benchmark_group("issue");
    g.bench_function("raw ed25519-dalek sign (same bytes)", |b| {
        b.iter(|| raw.sign(black_box(signing_input.as_bytes())))
    });
    g.bench_function("vc+jwt sign (serialize + JWS)", |b| {
        b.iter(|| sign_vc_jwt(&key, kid, black_box(&vc)).expect("sign"))
    });
    g.bench_function("vc+jwt build + sign", |b| {
        b.iter(|| sign_vc_jwt(&key, kid, &build(black_box(&draft))).expect("sign"))
    });
    g.bench_function("vc+jwt sign, ES256", |b| b.iter(|| sign_vc_jwt(&es256, kid, black_box(&vc)).expect("sign")));
    let contexts = Contexts::from([(
        CONTEXT.to_owned(),
        sichat_issuer::credential::context_document("https://id.example.org").to_string(),
    )]);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    g.bench_function("eddsa-rdfc-2022 sign (canonicalize + hash + sign)", |b| {
        b.iter(|| rt.block_on(data_integrity::sign(&key, kid, black_box(&vc), &contexts)).expect("sign"))
    });
    g.bench_function("ecdsa-rdfc-2019 sign, ES256", |b| {
        b.iter(|| rt.block_on(data_integrity::sign(&es256, kid, black_box(&vc), &contexts)).expect("sign"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

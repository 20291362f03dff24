//! did:webvh: verifying whole logs (1, 10 and 100 entries, each signed and hash-chained),
//! and a cached resolution of a did:webvh DID against a cached did:web, both served on
//! loopback.
//!
//!     cargo bench -p sichat-core --bench webvh

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::resolver::Resolver;
use sichat_core::webvh::{self, Genesis, WebvhDid};
use std::hint::black_box;
use std::sync::Arc;

/// A log of `n` entries at `host`: the root key adds a device key in each version.
fn build_log(host: &str, n: usize) -> (String, String, Value) {
    let root = Ed25519KeyPair::generate();
    let t = WebvhDid::template(host, &["users", "alice"]);
    let doc = json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": t,
        "verificationMethod": [{"id": format!("{t}#root"), "type": "Multikey", "controller": t,
            "publicKeyMultibase": root.public().to_multibase()}],
        "capabilityInvocation": [format!("{t}#root")],
    });
    let start = time::OffsetDateTime::now_utc() - time::Duration::seconds(n as i64 + 10);
    let genesis = Genesis { portable: true, at: Some(start), ..Default::default() };
    let (did, first) = webvh::create(doc, &[root.public()], &genesis, &root).expect("create");
    let did = did.to_string();
    let mut state: Value = serde_json::from_str(&first.line).map(|e: Value| e["state"].clone()).expect("state");
    let mut lines = vec![first.line];
    for i in 1..n {
        let key = Ed25519KeyPair::generate().public().to_multibase();
        state["verificationMethod"].as_array_mut().expect("methods").push(
            json!({"id": format!("{did}#device-{i}"), "type": "Multikey", "controller": did, "publicKeyMultibase": key}),
        );
        state["authentication"] = json!([format!("{did}#device-{i}")]);
        let at = start + time::Duration::seconds(i as i64);
        let e =
            webvh::append_at(lines.last().expect("last"), state.clone(), json!({}), &root, Some(at)).expect("append");
        lines.push(e.line);
    }
    let raw = lines.iter().map(|l| format!("{l}\n")).collect();
    (did, raw, state)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("did:webvh");
    for n in [1, 10, 100] {
        let (did, raw, _) = build_log("example.com", n);
        assert_eq!(rt.block_on(webvh::verify_log(&did, &raw)).expect("verifies").entries, n);
        g.bench_function(format!("verify a log of {n} entries"), |b| {
            b.iter(|| rt.block_on(webvh::verify_log(black_box(&did), black_box(&raw))).expect("verifies"))
        });
    }

    // Cached resolution: a did:webvh (100 entries) and a did:web, served on loopback.
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (vh_did, raw, state) = build_log(&format!("localhost%3A{port}"), 100);
    let web_did = format!("did:web:localhost%3A{port}:users:bob");
    let web_doc = serde_json::to_string(&state).expect("json").replace(&vh_did, &web_did);
    let app = axum::Router::new()
        .route("/users/alice/did.jsonl", axum::routing::get(move || async move { raw }))
        .route("/users/bob/did.json", axum::routing::get(move || async move { web_doc }));
    rt.spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let resolver = Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true }).expect("fetcher")));
    rt.block_on(resolver.resolve(&vh_did)).expect("webvh resolves");
    rt.block_on(resolver.resolve(&web_did)).expect("web resolves");
    g.bench_function("resolve did:web (cached)", |b| {
        b.iter(|| rt.block_on(resolver.resolve(black_box(&web_did))).expect("resolves"))
    });
    g.bench_function("resolve did:webvh, 100 entries (cached)", |b| {
        b.iter(|| rt.block_on(resolver.resolve(black_box(&vh_did))).expect("resolves"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

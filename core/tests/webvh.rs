//! did:webvh logs written by `sichat_core::webvh` and verified by the DIF's `didwebvh-rs`:
//! what a user does (create, add a key, rotate, pre-rotate, move host), and every way a
//! log can be forged, each refused with a reason.

use serde_json::{json, Value};
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::webvh::{self, append, create, key_hash, verify_log, Genesis, WebvhDid};

fn doc_template(host: &str, root: &Ed25519KeyPair) -> Value {
    let did = WebvhDid::template(host, &["users", "alice"]);
    json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [{
            "id": format!("{did}#root"), "type": "Multikey", "controller": did,
            "publicKeyMultibase": root.public().to_multibase(),
        }],
        "capabilityInvocation": [format!("{did}#root")],
    })
}

/// The document of `did` with one more key.
fn with_key(mut doc: Value, did: &str, fragment: &str, key: &Ed25519KeyPair) -> Value {
    doc["verificationMethod"].as_array_mut().unwrap().push(json!({
        "id": format!("{did}#{fragment}"), "type": "Multikey", "controller": did,
        "publicKeyMultibase": key.public().to_multibase(),
    }));
    doc["authentication"] = json!([format!("{did}#{fragment}")]);
    doc
}

fn portable() -> Genesis {
    Genesis { portable: true, ..Default::default() }
}

fn log(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

async fn refused(did: &str, raw: &str) -> String {
    match verify_log(did, raw).await {
        Ok(v) => panic!("a forged log verified: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_created_did_verifies_and_names_its_parallel_did_web() {
    let root = Ed25519KeyPair::generate();
    let (did, first) = create(doc_template("example.com%3A8443", &root), &[root.public()], &portable(), &root).unwrap();
    assert!(did.to_string().starts_with("did:webvh:Qm"));
    assert!(did.to_string().ends_with(":example.com%3A8443:users:alice"));
    assert_eq!(did.log_path(), "users/alice/did.jsonl");
    assert_eq!(did.web_did().as_str(), "did:web:example.com%3A8443:users:alice");

    let v = verify_log(&did.to_string(), &log(&[&first.line])).await.unwrap();
    assert_eq!(v.version_number, 1);
    assert_eq!(v.version_id, first.version_id);
    assert_eq!(v.document["id"], did.to_string());
    assert_eq!(v.scid, did.scid());
    assert!(v.portable);
    assert_eq!(v.update_keys, [root.public().to_multibase()]);

    let web = webvh::parallel_did_web(&v.document, &did, "https://example.com:8443/users/alice");
    assert_eq!(web["id"], "did:web:example.com%3A8443:users:alice");
    assert_eq!(web["alsoKnownAs"], json!([did.to_string()]));
    assert_eq!(web["verificationMethod"][0]["id"], "did:web:example.com%3A8443:users:alice#root");
    let services: Vec<&str> = web["service"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        services,
        ["did:web:example.com%3A8443:users:alice#files", "did:web:example.com%3A8443:users:alice#whois"]
    );
}

#[tokio::test]
async fn updates_rotation_and_a_move_verify_in_order() {
    let root = Ed25519KeyPair::generate();
    let (did, e1) = create(doc_template("a.example", &root), &[root.public()], &portable(), &root).unwrap();
    let d = did.to_string();
    let v1 = verify_log(&d, &log(&[&e1.line])).await.unwrap();

    // A new device key: the root key signs version 2.
    let device = Ed25519KeyPair::generate();
    let e2 = append(&e1.line, with_key(v1.document.clone(), &d, "device-1", &device), json!({}), &root).unwrap();
    let v2 = verify_log(&d, &log(&[&e1.line, &e2.line])).await.unwrap();
    assert_eq!(v2.version_number, 2);
    assert_eq!(v2.document["authentication"], json!([format!("{d}#device-1")]));

    // Root rotation: the old key signs the entry that names the new one.
    let new_root = Ed25519KeyPair::generate();
    let e3 = append(&e2.line, v2.document.clone(), json!({"updateKeys": [new_root.public().to_multibase()]}), &root)
        .unwrap();
    let v3 = verify_log(&d, &log(&[&e1.line, &e2.line, &e3.line])).await.unwrap();
    assert_eq!(v3.update_keys, [new_root.public().to_multibase()]);
    // From then on the old key is powerless…
    let stale = append(&e3.line, v3.document.clone(), json!({}), &root).unwrap();
    let why = refused(&d, &log(&[&e1.line, &e2.line, &e3.line, &stale.line])).await;
    assert!(!why.is_empty());
    // …and the new one signs.
    let e4 = append(&e3.line, v3.document.clone(), json!({}), &new_root).unwrap();
    let v4 = verify_log(&d, &log(&[&e1.line, &e2.line, &e3.line, &e4.line])).await.unwrap();
    assert_eq!(v4.update_keys, [new_root.public().to_multibase()], "an entry without updateKeys keeps them");

    // A move to b.example: same SCID, the old DID in alsoKnownAs, signed by the root key.
    let moved = did.moved_to("b.example", &["users", "alice"]).unwrap();
    let text = serde_json::to_string(&v3.document).unwrap().replace(&d, &moved.to_string());
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["alsoKnownAs"] = json!([d]);
    let e5 = append(&e4.line, doc, json!({}), &new_root).unwrap();
    let all = log(&[&e1.line, &e2.line, &e3.line, &e4.line, &e5.line]);
    let at_b = verify_log(&moved.to_string(), &all).await.unwrap();
    assert_eq!(at_b.document["id"], moved.to_string());
    assert_eq!(at_b.version_number, 5);
    // The old DID resolves to the same history, and so to the new document.
    let at_a = verify_log(&d, &all).await.unwrap();
    assert_eq!(at_a.document["id"], moved.to_string());
}

#[tokio::test]
async fn pre_rotation_binds_the_next_update_key() {
    let k1 = Ed25519KeyPair::generate();
    let k2 = Ed25519KeyPair::generate();
    let k3 = Ed25519KeyPair::generate();
    let genesis =
        Genesis { next_key_hashes: vec![key_hash(&k2.public())], portable: true, ttl: Some(60), ..Default::default() };
    let (did, e1) = create(doc_template("example.com", &k1), &[k1.public()], &genesis, &k1).unwrap();
    let d = did.to_string();
    let v1 = verify_log(&d, &log(&[&e1.line])).await.unwrap();
    assert_eq!(v1.next_key_hashes, [key_hash(&k2.public())]);
    assert_eq!(v1.ttl, Some(60));

    // The committed key takes over and commits to the next.
    let params = json!({"updateKeys": [k2.public().to_multibase()], "nextKeyHashes": [key_hash(&k3.public())]});
    let e2 = append(&e1.line, v1.document.clone(), params, &k2).unwrap();
    verify_log(&d, &log(&[&e1.line, &e2.line])).await.unwrap();

    // A key that was not committed cannot take over, even signed by the current key.
    let intruder = Ed25519KeyPair::generate();
    let params = json!({"updateKeys": [intruder.public().to_multibase()], "nextKeyHashes": []});
    let bad = append(&e1.line, v1.document.clone(), params, &intruder).unwrap();
    refused(&d, &log(&[&e1.line, &bad.line])).await;
    let params = json!({"updateKeys": [intruder.public().to_multibase()], "nextKeyHashes": []});
    let bad = append(&e1.line, v1.document.clone(), params, &k1).unwrap();
    refused(&d, &log(&[&e1.line, &bad.line])).await;
}

#[tokio::test]
async fn forged_logs_are_refused_with_a_reason() {
    let root = Ed25519KeyPair::generate();
    let stranger = Ed25519KeyPair::generate();
    let (did, e1) = create(doc_template("example.com", &root), &[root.public()], &portable(), &root).unwrap();
    let d = did.to_string();
    let v1 = verify_log(&d, &log(&[&e1.line])).await.unwrap();
    let e2 = append(&e1.line, v1.document.clone(), json!({}), &root).unwrap();
    let e3 = append(&e2.line, v1.document.clone(), json!({"ttl": 100}), &root).unwrap();

    // An entry signed by a key that is not an update key.
    let forged = append(&e1.line, with_key(v1.document.clone(), &d, "evil", &stranger), json!({}), &stranger).unwrap();
    assert!(refused(&d, &log(&[&e1.line, &forged.line])).await.contains("not authorized"));

    // A broken hash chain: an entry's document changed after it was signed.
    let mut tampered: Value = serde_json::from_str(&e2.line).unwrap();
    tampered["state"]["verificationMethod"][0]["publicKeyMultibase"] = json!(stranger.public().to_multibase());
    assert!(refused(&d, &log(&[&e1.line, &tampered.to_string()])).await.contains("Signature"));
    // A validly signed entry chained to another version than the one before it.
    let fork = append(&e1.line, v1.document.clone(), json!({"ttl": 7}), &root).unwrap();
    let after_fork = append(&fork.line, v1.document.clone(), json!({}), &root).unwrap();
    assert!(verify_log(&d, &log(&[&e1.line, &fork.line, &after_fork.line])).await.is_ok());
    refused(&d, &log(&[&e1.line, &e2.line, &after_fork.line])).await;

    // An entry dropped from the middle; entries out of order.
    assert!(refused(&d, &log(&[&e1.line, &e3.line])).await.contains("version"));
    assert!(refused(&d, &log(&[&e1.line, &e3.line, &e2.line])).await.contains("version"));
    refused(&d, &log(&[&e2.line, &e1.line])).await;

    // A SCID that does not match: the log of another DID served for this one.
    let (other, o1) =
        create(doc_template("example.com", &stranger), &[stranger.public()], &portable(), &stranger).unwrap();
    assert_ne!(other.scid(), did.scid());
    assert!(refused(&d, &log(&[&o1.line])).await.contains("does not match"));

    // A DID whose host is not in any version (a node claiming an identity it was not given).
    let elsewhere = did.moved_to("evil.example", &["users", "alice"]).unwrap();
    assert!(refused(&elsewhere.to_string(), &log(&[&e1.line, &e2.line])).await.contains("does not match"));

    // A move that the root key did not sign.
    let text = serde_json::to_string(&v1.document).unwrap().replace(&d, &elsewhere.to_string());
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["alsoKnownAs"] = json!([d]);
    let hijack = append(&e1.line, doc.clone(), json!({}), &stranger).unwrap();
    assert!(refused(&elsewhere.to_string(), &log(&[&e1.line, &hijack.line])).await.contains("not authorized"));

    // A move of a DID that was not made portable.
    let (fixed, f1) = create(doc_template("example.com", &root), &[root.public()], &Genesis::default(), &root).unwrap();
    let fixed_doc = verify_log(&fixed.to_string(), &log(&[&f1.line])).await.unwrap().document;
    let fixed_moved = fixed.moved_to("b.example", &["users", "alice"]).unwrap();
    let text = serde_json::to_string(&fixed_doc).unwrap().replace(&fixed.to_string(), &fixed_moved.to_string());
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["alsoKnownAs"] = json!([fixed.to_string()]);
    let mv = append(&f1.line, doc, json!({}), &root).unwrap();
    assert!(refused(&fixed_moved.to_string(), &log(&[&f1.line, &mv.line])).await.contains("portable"));
    // …nor may a later entry turn portability on.
    let late = append(&f1.line, fixed_doc, json!({"portable": true}), &root).unwrap();
    assert!(refused(&fixed.to_string(), &log(&[&f1.line, &late.line])).await.contains("ortable"));

    // A proof with another cryptosuite.
    let mut suite: Value = serde_json::from_str(&e2.line).unwrap();
    suite["proof"][0]["cryptosuite"] = json!("eddsa-rdfc-2022");
    assert!(refused(&d, &log(&[&e1.line, &suite.to_string()])).await.contains("cryptosuite"));

    // Garbage, an empty log, a huge one and a deep one: refused before the verifier.
    assert!(refused(&d, "not json\n").await.contains("invalid"));
    assert!(refused(&d, "").await.contains("no entries"));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(refused(&d, &deep).await.contains("deeper"));
    let huge = format!("{}\n", e1.line).repeat(webvh::MAX_LOG_BYTES / e1.line.len() + 2);
    assert!(refused(&d, &huge).await.contains("larger"));
    // Not a did:webvh DID at all.
    assert!(verify_log("did:web:example.com", &log(&[&e1.line])).await.is_err());
}

#[test]
fn did_syntax() {
    let scid = "QmQ6FJ4fk2xheSSQoEjVpTgx9AQPKhJgtR9hn1nr4EeCrZ";
    let ok = |s: &str| WebvhDid::parse(s).unwrap();
    let d = ok(&format!("did:webvh:{scid}:example.com%3A3000:dids:issuer"));
    assert_eq!(d.host(), "example.com:3000");
    assert_eq!(d.log_path(), "dids/issuer/did.jsonl");
    assert_eq!(ok(&format!("did:webvh:{scid}:example.com")).log_path(), ".well-known/did.jsonl");
    ok(&format!("did:webvh:{scid}:localhost%3A8080:users:bob"));
    for bad in [
        format!("did:webvh:{scid}:127.0.0.1%3A8080"),
        format!("did:webvh:{scid}:example.com%3A0"),
        format!("did:webvh:{scid}:example.com%3A70000"),
        format!("did:webvh:{scid}:example.com:%2E%2E"),
        format!("did:webvh:{scid}:example.com:a%2Fb"),
        format!("did:webvh:{scid}:ex_ample.com"),
        "did:webvh:short:example.com".into(),
        format!("did:web:{scid}:example.com"),
    ] {
        assert!(WebvhDid::parse(&bad).is_err(), "{bad} should be refused");
    }
}

/// The entry hash of the specification's own example (did:webvh v1.0, "Generate Entry
/// Hash"): JCS, SHA-256 multihash, base58btc.
#[test]
fn entry_hash_matches_the_specification_example() {
    let entry: Value = serde_json::from_str(r#"{"versionId": "QmdmPkUdYzbr9txmx8gM2rsHPgr5L6m3gHjJGAf4vUFoGE", "versionTime": "2025-04-01T17:39:50Z", "parameters": {"witness": {"threshold": 2, "witnesses": [{"id": "did:key:z6Mkkc51mg2vpQzKWAbWQZupeGYhowaBjYkmvcKMTqteqHB4", "weight": 1}, {"id": "did:key:z6MkuDdJdKLCgwZuQuEi9xG6LVgJJ9Tebr74CXPYPSumqgJs", "weight": 1}, {"id": "did:key:z6MkoSWmQyp4fTk4ZQy4KUsss9dFX51XfEUzKKKj1J1JUsrF", "weight": 1}]}, "updateKeys": ["z6MkgzBDcBFV3sk4ypPE5YXMZHmS213A3HpYY2LmcVKV15jr"], "nextKeyHashes": ["QmZreDcjvWEpyRFznQeExWNCsvMLk5i59AcRJJuQC8UodJ"], "method": "did:webvh:0.5", "scid": "QmdmPkUdYzbr9txmx8gM2rsHPgr5L6m3gHjJGAf4vUFoGE"}, "state": {"@context": ["https://www.w3.org/ns/did/v1"], "id": "did:webvh:QmdmPkUdYzbr9txmx8gM2rsHPgr5L6m3gHjJGAf4vUFoGE:domain.example"}}"#).unwrap();
    let canonical = serde_json_canonicalizer::to_vec(&entry).unwrap();
    assert_eq!(webvh::multihash(&canonical), "QmQ6FJ4fk2xheSSQoEjVpTgx9AQPKhJgtR9hn1nr4EeCrZ");
}

/// Serve `routes` (path → body) on a loopback port; returns the port.
async fn serve(routes: Vec<(String, String)>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut app = axum::Router::new();
    for (path, body) in routes {
        app = app.route(&path, axum::routing::get(move || async move { body }));
    }
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// The resolver fetches the log where the method says, verifies it, and reads the keys;
/// after a move, the old DID (whose host still serves the whole log) names the same keys.
#[tokio::test]
async fn the_resolver_follows_a_moved_did() {
    use sichat_core::net::{Fetcher, NetPolicy};
    use sichat_core::resolver::{Relationship, ResolveError, Resolver};
    use std::sync::Arc;

    let root = Ed25519KeyPair::generate();
    let issuing = Ed25519KeyPair::generate();
    // Two hosts: ports picked first, so the DIDs can name them.
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    drop((a, b));
    let mut doc = doc_template(&format!("localhost%3A{pa}"), &root);
    let t = doc["id"].as_str().unwrap().to_owned();
    doc["verificationMethod"].as_array_mut().unwrap().push(json!({
        "id": format!("{t}#issuing-1"), "type": "Multikey", "controller": t,
        "publicKeyMultibase": issuing.public().to_multibase(),
    }));
    doc["assertionMethod"] = json!([format!("{t}#issuing-1")]);
    let (did, e1) = create(doc, &[root.public()], &portable(), &root).unwrap();
    let d = did.to_string();
    let v1 = verify_log(&d, &log(&[&e1.line])).await.unwrap();
    let moved = did.moved_to(&format!("localhost:{pb}"), &["users", "alice"]).unwrap();
    let text = serde_json::to_string(&v1.document).unwrap().replace(&d, &moved.to_string());
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["alsoKnownAs"] = json!([d]);
    let e2 = append(&e1.line, doc, json!({}), &root).unwrap();
    let whole = log(&[&e1.line, &e2.line]);

    let path = "/users/alice/did.jsonl".to_string();
    let listener_a = tokio::net::TcpListener::bind(("127.0.0.1", pa)).await.unwrap();
    let listener_b = tokio::net::TcpListener::bind(("127.0.0.1", pb)).await.unwrap();
    for (listener, body) in [(listener_a, whole.clone()), (listener_b, whole.clone())] {
        let app = axum::Router::new().route(&path, axum::routing::get(move || async move { body }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let resolver = Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true }).unwrap()));
    let keys = resolver.resolve(&moved.to_string()).await.unwrap();
    assert!(keys.key_for(&format!("{moved}#issuing-1"), Relationship::AssertionMethod).is_ok());
    assert_eq!(keys.also_known_as, std::slice::from_ref(&d));
    // A credential signed before the move names the old DID's key: still found.
    let old = resolver.resolve(&d).await.unwrap();
    assert_eq!(
        old.key_for(&format!("{d}#issuing-1"), Relationship::AssertionMethod).unwrap(),
        keys.key_for(&format!("{moved}#issuing-1"), Relationship::AssertionMethod).unwrap()
    );

    // A host that serves a forged log (an entry by another key) is refused.
    let forged = append(&e1.line, v1.document.clone(), json!({}), &Ed25519KeyPair::generate()).unwrap();
    let pc = serve(vec![(path.clone(), log(&[&e1.line, &forged.line]))]).await;
    let (other, o1) =
        create(doc_template(&format!("localhost%3A{pc}"), &root), &[root.public()], &portable(), &root).unwrap();
    let _ = o1;
    let err = resolver.resolve(&other.to_string()).await.unwrap_err();
    assert!(matches!(err, ResolveError::InvalidLog { .. }), "{err}");
}

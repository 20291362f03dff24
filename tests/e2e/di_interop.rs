//! Data Integrity credentials checked by a verifier that is not ours: Digital Bazaar's
//! `@digitalbazaar/vc` with `eddsa-rdfc-2022`, run by Node.js through
//! `tests/interop/di-verify.mjs`, with a static document loader that holds only the
//! standard contexts. Credentials the node issues verify there, with no fetch; those
//! issued before, which name the node's own context, still verify with the node's verifier
//! and `sichat verify`.
//!
//! The packages are `$SICHAT_DI_NODE_MODULES`, else `~/.cache/sichat-node/node_modules`
//! (`.ci/run` installs them from `tests/interop/package-lock.json`). Under `CI=true` a
//! missing installation fails the test; elsewhere the test says so loudly and passes.

use serde_json::{json, Value};
use sichat_core::ids::now_ms;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::p256key::KeyPair;
use sichat_e2e::{json, sichat, sichat_env, stderr, stdout, storage_tests, Backend, TestApp};
use sichat_issuer::credential::{build, Draft, VCDM2_CONTEXT};
use sichat_issuer::data_integrity;
use sichat_verifier::Options;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

storage_tests!(
    issued_credentials_verify_with_the_standard_contexts_alone,
    credentials_naming_the_old_context_still_verify
);

const LOCAL: &[(&str, &str)] = &[("SICHAT_ALLOW_LOCAL_NETWORK", "true"), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];

pub(crate) fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("SICHAT_DI_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/sichat-node/node_modules")
    });
    let usable = dir.join("@digitalbazaar/vc/package.json").is_file()
        && Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if usable {
        return Some(dir);
    }
    let why = format!(
        "no Node.js, or no @digitalbazaar/vc in {}; run .ci/run, or `npm ci` in tests/interop and set \
         SICHAT_DI_NODE_MODULES to its node_modules",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the Data Integrity interop test cannot run under CI: {why}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPING the Data Integrity interop test: {why} !!!!!!!!!!\n");
    None
}

/// The independent verifier's answer: `Ok(())` when it verifies, else its error.
pub(crate) fn js_verify(modules: &Path, work: &Path, credential: &Value, dids: Value) -> Result<(), String> {
    let dir = work.join("di-verify");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).expect("dir");
        std::os::unix::fs::symlink(modules, dir.join("node_modules")).expect("link node_modules");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/interop/di-verify.mjs"), dir.join("di-verify.mjs"))
            .expect("copy the script");
    }
    let mut child = Command::new("node")
        .arg(dir.join("di-verify.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let input = json!({"credential": credential, "dids": dids}).to_string();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("node");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("di-verify.mjs: {}", String::from_utf8_lossy(&out.stderr)));
    match answer["verified"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(answer["error"].as_str().unwrap_or_default().to_owned()),
    }
}

/// A Data Integrity credential received by a real wallet from a real node verifies with a
/// loader that knows only the standard contexts; a changed claim does not.
async fn issued_credentials_verify_with_the_standard_contexts_alone(backend: Backend) {
    let Some(modules) = node_modules() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let carol = app.wallet("carol");
    assert!(sichat(&carol, &["init"]).await.status.success());
    let out = sichat(
        &alice,
        &[
            "--json",
            "credential",
            "offer",
            "--type",
            "FriendCredential",
            "--to",
            "anyone",
            "--claim",
            "name=Carol",
            "--format",
            "ldp_vc",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let uri = json(&out)["offer_uri"].as_str().expect("uri").to_owned();
    // Carol is a did:key wallet: the issuer's node is on loopback, not hers.
    let out = sichat_env(&carol, &["--json", "credential", "receive", &uri], LOCAL).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().expect("id").to_owned();
    let doc = json(&sichat(&carol, &["--json", "credential", "show", &id]).await)["document"].clone();
    assert_eq!(doc["@context"][0], VCDM2_CONTEXT);
    assert!(
        doc["@context"].as_array().expect("contexts").iter().skip(1).all(Value::is_object),
        "no context to fetch: {}",
        doc["@context"]
    );

    let issuer = doc["issuer"].as_str().expect("issuer").to_owned();
    let (_, did_doc) = app.get_json("/users/alice/did.json").await;
    let dids = json!({ issuer: did_doc });
    js_verify(&modules, app.dir.path(), &doc, dids.clone()).expect("an independent verifier accepts it");
    let mut forged = doc.clone();
    forged["credentialSubject"]["name"] = json!("Mallory");
    let e = js_verify(&modules, app.dir.path(), &forged, dids).expect_err("a changed claim");
    assert!(!e.is_empty());
    app.stop().await;
}

/// A `did:key` DID document, as a resolver makes it, for the independent verifier.
fn did_key_document(key: &Ed25519KeyPair) -> (String, String, Value) {
    let mb = key.public().to_multibase();
    let (did, kid) = (format!("did:key:{mb}"), format!("did:key:{mb}#{mb}"));
    let doc = json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [{"id": kid, "type": "Multikey", "controller": did, "publicKeyMultibase": mb}],
        "assertionMethod": [kid],
        "authentication": [kid],
    });
    (did, kid, doc)
}

/// Credentials issued before the vocabulary was embedded name the node's context by URL:
/// the node still serves it, so they verify with the node's verifier and with `sichat
/// verify`. A verifier with a static loader cannot fetch it, which is why new credentials
/// embed it.
async fn credentials_naming_the_old_context_still_verify(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let issuer_key = Ed25519KeyPair::generate();
    let (did, kid, did_doc) = did_key_document(&issuer_key);
    let subject = json!({"id": did, "name": "Bob"});
    let mut old = build(&Draft {
        id: "0190a1b2-0000-7000-8000-000000000002",
        node_url: &app.url,
        issuer: &did,
        type_name: "FriendCredential",
        subject: &subject,
        schema_url: Some("https://example.org/schema.json"),
        statuses: &[],
        valid_from_ms: now_ms() - 1000,
        valid_until_ms: None,
    });
    old.as_object_mut().expect("object").remove("credentialSchema");
    let context_url = format!("{}/contexts/v1", app.url);
    old["@context"] = json!([VCDM2_CONTEXT, context_url]);
    let (_, served) = app.get_json("/contexts/v1").await;
    let contexts = data_integrity::Contexts::from([(context_url.clone(), served.to_string())]);
    let key = KeyPair::Ed25519(issuer_key);
    let old = data_integrity::sign(&key, &kid, &old, &contexts).await.expect("sign");

    let report = app.node.verifier.verify(&old.to_string(), &Options::default()).await;
    assert!(report.valid, "{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    let file = app.dir.path().join("old-credential.json");
    std::fs::write(&file, old.to_string()).expect("write");
    let nobody = app.wallet("nobody");
    let out = sichat_env(&nobody, &["--json", "verify", file.to_str().expect("path")], LOCAL).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(json(&out)["valid"], true);

    if let Some(modules) = node_modules() {
        let e = js_verify(&modules, app.dir.path(), &old, json!({ did.clone(): did_doc.clone() }))
            .expect_err("a static loader has no node context");
        assert!(e.contains("contexts/v1"), "{e}");
        // The same credential with the vocabulary embedded verifies there.
        let mut new = old.clone();
        new.as_object_mut().expect("object").remove("proof");
        new["@context"] = json!([VCDM2_CONTEXT, {"@vocab": format!("{}/vocab#", app.url)}]);
        let new = data_integrity::sign(&key, &kid, &new, &Default::default()).await.expect("sign");
        js_verify(&modules, app.dir.path(), &new, json!({ did: did_doc })).expect("verifies");
    }
    app.stop().await;
}

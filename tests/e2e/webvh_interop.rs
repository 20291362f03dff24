//! The DIF's Python did:webvh implementation (`did-webvh` from PyPI, pinned in
//! `tests/interop/webvh-requirements.txt`) resolves the logs a node serves after an upgrade,
//! a device added and a root rotation: an implementation that shares no code with ours or
//! with `didwebvh-rs`. And it refuses the same log with one entry changed.
//!
//! The interpreter is `$SICHAT_WEBVH_PYTHON`, else `~/.cache/sichat-py-webvh/bin/python`
//! (`.ci/run` makes it). Without it the test skips loudly; under `CI=true` it fails.

use serde_json::Value;
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};
use std::path::PathBuf;

storage_tests!(the_dif_python_resolver_accepts_our_logs_and_refuses_a_forged_one);

fn python() -> Option<PathBuf> {
    let py = std::env::var_os("SICHAT_WEBVH_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sichat-py-webvh/bin/python")
    });
    let ok =
        std::process::Command::new(&py).args(["-c", "import did_webvh"]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let msg = "the did:webvh interop test needs Python with did-webvh: python3 -m venv ~/.cache/sichat-py-webvh && \
               ~/.cache/sichat-py-webvh/bin/pip install -r tests/interop/webvh-requirements.txt (or set SICHAT_WEBVH_PYTHON)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("!!!! SKIPPED: {msg}");
    None
}

async fn resolve(app: &TestApp, py: &PathBuf, did: &str, log: &str) -> Value {
    let path = app.dir.path().join("did.jsonl");
    std::fs::write(&path, log).expect("write");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/webvh_resolve.py");
    let out = tokio::process::Command::new(py).arg(script).arg(did).arg(&path).output().await.expect("python");
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

async fn the_dif_python_resolver_accepts_our_logs_and_refuses_a_forged_one(backend: Backend) {
    let Some(py) = python() else { return };
    // did:webvh wants a domain name with a dot (the specification's ABNF; the Python
    // implementation holds to it, so `localhost` will not do): the node calls itself
    // `sichat.localhost`, while the test reaches it on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        c.public_url = Some(format!("http://sichat.localhost:{port}").parse().expect("url"));
    })
    .await
    else {
        return;
    };
    let alice = app.join("alice", &app.owner_invite).await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let did = json(&out)["did"].as_str().expect("did").to_owned();
    let phone = app.wallet("alice-phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["key", "rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let log = app
        .http
        .get(format!("{}/users/alice/did.jsonl", app.url))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("log");
    let ours = sichat_core::webvh::verify_log(&did, &log).await.expect("ours verifies");
    let theirs = resolve(&app, &py, &did, &log).await;
    assert!(theirs["didResolutionMetadata"].get("error").is_none(), "the DIF resolver refused our log: {theirs}");
    let doc = &theirs["didDocument"];
    assert_eq!(doc["id"], did.as_str());
    assert_eq!(theirs["didDocumentMetadata"]["versionId"], ours.version_id.as_str());
    assert_eq!(doc["verificationMethod"], ours.document["verificationMethod"], "{theirs}");

    // One key changed in the second entry: refused there too.
    let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
    let mut entry: Value = serde_json::from_str(&lines[1]).expect("entry");
    entry["state"]["verificationMethod"][0]["publicKeyMultibase"] =
        Value::String(sichat_core::keys::Ed25519KeyPair::generate().public().to_multibase());
    lines[1] = entry.to_string();
    let forged = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let theirs = resolve(&app, &py, &did, &forged).await;
    assert!(theirs["didResolutionMetadata"].get("error").is_some(), "the DIF resolver accepted a forged log: {theirs}");
}

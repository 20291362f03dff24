//! The DIF's Python did:webvh implementation (`did-webvh` from PyPI, pinned in
//! `tests/interop/webvh-requirements.txt`) resolves the logs a node serves after an upgrade,
//! a device added, a root rotation, a recovery key named and a recovery signed by it, and
//! after the node moved the DID to a new host: an
//! implementation that shares no code with ours or with `didwebvh-rs`. And it refuses the
//! same logs with one entry changed, or with the move signed by another key.
//!
//! The interpreter is `$SICHAT_WEBVH_PYTHON`, else `~/.cache/sichat-py-webvh/bin/python`
//! (`.ci/run` makes it). Without it the test skips loudly; under `CI=true` it fails.

use crate::portable_did::Raw;
use serde_json::Value;
use sichat_accounts::protocol::{MoveDraft, RootOperation};
use sichat_core::did::Did;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::webvh;
use sichat_e2e::{json, session_token, sichat, stderr, storage_tests, unseal, Backend, TestApp};
use std::path::PathBuf;

storage_tests!(
    the_dif_python_resolver_accepts_our_logs_and_refuses_a_forged_one,
    the_dif_python_resolver_follows_a_did_to_its_new_host
);

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
    let Some(app) = spawn_named(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let did = json(&out)["did"].as_str().expect("did").to_owned();
    let phone = app.wallet("alice-phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["key", "rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A recovery key beside the root key, then a recovery signed by it alone.
    let kit = app.dir.path().join("kit.json");
    let out = sichat(&alice, &["recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recovered = app.wallet("alice-recovered");
    let out = sichat(&recovered, &["recovery", "restore", "--kit", kit.to_str().expect("path")]).await;
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

/// A node that calls itself `sichat.localhost` (a host name with a dot, as did:webvh wants),
/// reached by the test on loopback.
async fn spawn_named(backend: Backend) -> Option<TestApp> {
    let port = free_port();
    TestApp::spawn_with(backend, |c| {
        c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        c.public_url = Some(format!("http://sichat.localhost:{port}").parse().expect("url"));
    })
    .await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The node changes its host name (`sichat.localhost` to `moved.localhost`); the root key
/// signs the entry that moves Alice's did:webvh there (`follow_host`, as her wallet does).
/// The DIF resolver follows the log across the move (`portable` on), and refuses the same
/// log when the move entry is signed by a key the log never authorised.
async fn the_dif_python_resolver_follows_a_did_to_its_new_host(backend: Backend) {
    let Some(py) = python() else { return };
    let Some(app) = spawn_named(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let old_web = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let old_did = json(&out)["did"].as_str().expect("did").to_owned();

    let mut stopped = app.stop_keeping().await;
    let new_port = free_port();
    stopped.config.public_url = Some(format!("http://moved.localhost:{new_port}").parse().expect("url"));
    let app = stopped.serve_at(format!("127.0.0.1:{new_port}").parse().expect("addr")).await;

    let token = session_token(&app, &alice).await;
    let r =
        app.http.post(format!("{}/api/v1/did/rehost-draft", app.url)).bearer_auth(&token).json(&serde_json::json!({}));
    let draft: MoveDraft = r.send().await.expect("POST").json().await.expect("draft");
    assert!(draft.did.contains(&format!(":moved.localhost%3A{new_port}:")), "{}", draft.did);
    let root = unseal(&alice).root.expect("the root key");
    let line = webvh::append(&draft.last_entry, draft.state.clone(), serde_json::json!({}), &root).expect("entry").line;
    let raw = Raw { root, did: Did::parse(&old_web).expect("did") };
    let (status, body) = raw.root_op(&app, RootOperation::FollowHost { did: draft.did.clone() }, Some(line)).await;
    assert_eq!(status, 200, "{body}");

    let log = app
        .http
        .get(format!("{}/users/alice/did.jsonl", app.url))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("log");
    assert_eq!(log.lines().count(), 2, "{log}");
    let ours = sichat_core::webvh::verify_log(&draft.did, &log).await.expect("ours verifies");
    let theirs = resolve(&app, &py, &draft.did, &log).await;
    assert!(theirs["didResolutionMetadata"].get("error").is_none(), "the DIF resolver refused the moved log: {theirs}");
    assert_eq!(theirs["didDocument"]["id"], draft.did.as_str());
    assert_eq!(theirs["didDocumentMetadata"]["versionId"], ours.version_id.as_str());
    assert!(theirs["didDocument"]["alsoKnownAs"].to_string().contains(&old_did), "{theirs}");

    // The same move, signed by a key that is not the log's update key.
    let genesis = log.lines().next().expect("genesis");
    let stranger = Ed25519KeyPair::generate();
    let forged = webvh::append(genesis, draft.state.clone(), serde_json::json!({}), &stranger).expect("entry").line;
    let forged = format!("{genesis}\n{forged}\n");
    let theirs = resolve(&app, &py, &draft.did, &forged).await;
    assert!(
        theirs["didResolutionMetadata"].get("error").is_some(),
        "the DIF resolver accepted a forged move: {theirs}"
    );
    app.stop().await;
}

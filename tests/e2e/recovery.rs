//! A lost root key, recovered with the recovery kit (`sichat recovery setup`, then
//! `sichat recovery restore` into a new wallet): the same DID and log, a new root key and
//! device, every other device revoked, and what the account issued still under its control.
//! A recovery signed by another key, from a tampered kit, for an account that named no
//! recovery key, or keeping no device, is refused and changes nothing.

use crate::portable_did::{device_cert, issue, text, Raw};
use sichat_accounts::protocol::RootOperation;
use sichat_core::did::Did;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::webvh;
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};
use sqlx::Row;

storage_tests!(a_lost_root_key_is_recovered_with_the_kit, bad_recoveries_change_nothing);

/// The account's root key and its active devices, as the node holds them.
async fn state(app: &TestApp, name: &str) -> (String, Option<String>, i64) {
    let row = sqlx::query(
        "SELECT u.root_key, u.recovery_key, (SELECT COUNT(*) FROM acct_devices d WHERE d.user_id = u.id \
         AND d.revoked_at IS NULL) AS devices FROM acct_users u WHERE u.name = $1",
    )
    .bind(name)
    .fetch_one(app.node.db.pool())
    .await
    .expect("user");
    (row.get("root_key"), row.get("recovery_key"), row.get("devices"))
}

async fn a_lost_root_key_is_recovered_with_the_kit(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let webvh_did = json(&out)["did"].as_str().expect("did").to_owned();
    let phone = app.wallet("phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = app.wallet("bob");
    let out = sichat(&bob, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob_did = json(&out)["did"].as_str().expect("did").to_owned();
    let (cred_id, cred) = issue(&app, &alice, &bob_did, "vc+jwt").await;

    let kit = app.dir.path().join("alice-recovery.json");
    let out = sichat(&alice, &["--json", "recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&kit).expect("kit").permissions().mode() & 0o777, 0o600);
    let recovery_key = json(&out)["recovery_key"].as_str().expect("key").to_owned();
    let (old_root, held, _) = state(&app, "alice").await;
    assert_eq!(held.as_deref(), Some(recovery_key.as_str()));
    let (_, _, log) = text(&app, "/users/alice/did.jsonl").await;
    let verified = webvh::verify_log(&webvh_did, &log).await.expect("log");
    assert_eq!(verified.update_keys, [old_root.clone(), recovery_key.clone()], "the recovery key is an update key");
    let out = sichat(&alice, &["recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(!out.status.success() && stderr(&out).contains("exists"), "a kit is never overwritten");

    // Alice loses the wallet with the root key.
    std::fs::remove_dir_all(&alice).expect("lose the wallet");
    let fresh = app.wallet("alice-again");
    let out = sichat(&fresh, &["--json", "recovery", "restore", "--kit", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let (new_root, still, devices) = state(&app, "alice").await;
    assert_ne!(new_root, old_root);
    assert_eq!(still.as_deref(), Some(recovery_key.as_str()), "the recovery key stays until replaced");
    assert_eq!(devices, 1, "only the recovering device is left");

    // The same DID; the log verifies and shows the recovery, signed by the recovery key.
    let who = json(&sichat(&fresh, &["--json", "whoami"]).await);
    let (_, _, log) = text(&app, "/users/alice/did.jsonl").await;
    let verified = webvh::verify_log(&webvh_did, &log).await.expect("log after the recovery");
    assert_eq!(verified.update_keys, [new_root.clone(), recovery_key.clone()]);
    let last: serde_json::Value = serde_json::from_str(log.lines().last().expect("entry")).expect("json");
    assert!(last["proof"].to_string().contains(&recovery_key), "signed by the recovery key: {last}");
    assert!(who["did"].as_str().is_some_and(|d| d.starts_with("did:web:")), "{who}");

    // The new wallet works: it signs in, revokes what alice issued before, rotates.
    let out = sichat(&fresh, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out).as_array().map(Vec::len), Some(1));
    let out = sichat(&phone, &["device", "list"]).await;
    assert!(!out.status.success(), "the phone was revoked with the lost root key");
    let out = sichat(&fresh, &["credential", "revoke", &cred_id]).await;
    assert!(out.status.success(), "revoke after recovery: {}", stderr(&out));
    let report = app.node.verifier.verify(&cred, &sichat_verifier::Options::default()).await;
    assert!(!report.valid, "{}", serde_json::to_string(&report).unwrap_or_default());
    let out = sichat(&fresh, &["--json", "key", "rotate"]).await;
    assert!(out.status.success(), "rotate after recovery: {}", stderr(&out));
    let (_, _, log) = text(&app, "/users/alice/did.jsonl").await;
    let verified = webvh::verify_log(&webvh_did, &log).await.expect("log after the rotation");
    assert!(verified.update_keys.contains(&recovery_key), "{:?}", verified.update_keys);
    app.stop().await;
}

async fn bad_recoveries_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let web =
        Did::parse(json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did")).expect("did");
    let carol_web =
        Did::parse(json(&sichat(&carol, &["--json", "whoami"]).await)["did"].as_str().expect("did")).expect("did");
    let kit = app.dir.path().join("kit.json");
    let out = sichat(&alice, &["recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = state(&app, "alice").await;
    let new_root = Ed25519KeyPair::generate();
    let recover = |root: &Ed25519KeyPair, did: &Did| RootOperation::Recover {
        new_root_key: root.public().to_multibase(),
        certificates: vec![device_cert(root, did, &sichat_core::ids::new_id())],
    };

    // Signed by a key that is not the recovery key (here: a stranger's).
    let stranger = Raw { root: Ed25519KeyPair::generate(), did: web.clone() };
    let (status, body) = stranger.root_op(&app, recover(&new_root, &web), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(state(&app, "alice").await, before);

    // A kit whose secret was changed: refused, and no wallet is left behind.
    let mut tampered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kit).expect("kit")).expect("json");
    tampered["recovery_secret"] = serde_json::Value::String(sichat_core::ids::b64url(&[9u8; 32]));
    let bad_kit = app.dir.path().join("tampered.json");
    std::fs::write(&bad_kit, tampered.to_string()).expect("write");
    let fresh = app.wallet("fresh");
    let out = sichat(&fresh, &["recovery", "restore", "--kit", bad_kit.to_str().expect("path")]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nothing changed"), "{}", stderr(&out));
    assert!(!fresh.join("wallet.json").exists(), "no wallet left behind");
    assert_eq!(state(&app, "alice").await, before);

    // Carol named no recovery key: there is nothing to recover with.
    let carol_before = state(&app, "carol").await;
    let anyone = Raw { root: Ed25519KeyPair::generate(), did: carol_web.clone() };
    let (status, body) = anyone.root_op(&app, recover(&new_root, &carol_web), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("no recovery key"), "{body}");
    assert_eq!(state(&app, "carol").await, carol_before);

    // The recovery key itself, without a device to keep: refused; then a good one is taken.
    let kit_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&kit).expect("kit")).expect("json");
    let secret = sichat_core::ids::b64url_decode(kit_json["recovery_secret"].as_str().expect("secret")).expect("b64");
    let holder = Raw { root: Ed25519KeyPair::from_secret(&secret).expect("key"), did: web.clone() };
    let empty = RootOperation::Recover { new_root_key: new_root.public().to_multibase(), certificates: vec![] };
    let (status, body) = holder.root_op(&app, empty, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(state(&app, "alice").await, before);
    let (status, body) = holder.root_op(&app, recover(&new_root, &web), None).await;
    assert_eq!(status, 200, "{body}");
    let after = state(&app, "alice").await;
    assert_eq!(after.0, new_root.public().to_multibase());
    app.stop().await;
}

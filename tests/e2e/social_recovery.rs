//! A lost root key, recovered by friends (`sichat recovery setup --friend … --threshold 2`,
//! then `recovery ask`, `recovery approve` by two friends, `recovery finish`): the shares
//! travel as encrypted messages, the node checks and logs each friend's signed approval,
//! the account's other devices are warned and can cancel. Fewer than k approvals, a friend
//! approving twice, someone who is not a friend, a forged approval, a tampered code and a
//! cancelled request are each refused and change nothing.

use crate::messaging::inbox;
use serde_json::Value;
use sichat_accounts::protocol::{RecoveryApprovalClaims, TYP_RECOVERY_APPROVAL};
use sichat_core::ids::now_ms;
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_e2e::{json, sichat, stderr, stdout, storage_tests, Backend, TestApp};
use sqlx::Row;
use std::path::Path;

storage_tests!(friends_recover_a_lost_root_key, a_recovery_the_user_did_not_ask_for_is_cancelled);

const SHARE: &str = "https://sichat.dev/recovery/1.0/share";

async fn did_of(wallet: &Path) -> String {
    let out = sichat(wallet, &["--json", "whoami"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)["did"].as_str().expect("did").to_owned()
}

/// Wait until `wallet` has fetched its share (the sender's node delivers it in the background).
async fn wait_for_share(wallet: &Path) {
    for _ in 0..100 {
        let listing = inbox(wallet, &["--requests"]).await;
        let all = [listing, inbox(wallet, &[]).await];
        let found =
            all.iter().flat_map(|l| l["messages"].as_array().cloned().unwrap_or_default()).find(|m| m["kind"] == SHARE);
        if let Some(m) = found {
            assert_eq!(m["body"]["share"], "(kept in the wallet)", "the share is never printed: {m}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no recovery share reached {}", wallet.display());
}

async fn root_key(app: &TestApp, name: &str) -> (String, i64) {
    let row = sqlx::query(
        "SELECT u.root_key, (SELECT COUNT(*) FROM acct_devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL) \
         AS devices FROM acct_users u WHERE u.name = $1",
    )
    .bind(name)
    .fetch_one(app.node.db.pool())
    .await
    .expect("user");
    (row.get("root_key"), row.get("devices"))
}

async fn approvals_count(app: &TestApp) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM acct_recovery_approvals")
        .fetch_one(app.node.db.pool())
        .await
        .expect("count")
        .get("n")
}

/// Alice and three friends (bob, carol, dave) and a stranger (eve) on one node; alice's
/// recovery key split 2 of 3 among the friends, who have fetched their shares.
struct Circle {
    app: TestApp,
    alice: std::path::PathBuf,
    alice_did: String,
    friends: Vec<std::path::PathBuf>,
    eve: std::path::PathBuf,
}

async fn circle(backend: Backend) -> Option<Circle> {
    let app = TestApp::spawn(backend).await?;
    let alice = app.join("alice", &app.owner_invite).await;
    let mut friends = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let invite = app.invite(&alice, 1).await;
        friends.push(app.join(name, &invite).await);
    }
    let invite = app.invite(&alice, 1).await;
    let eve = app.join("eve", &invite).await;
    let alice_did = did_of(&alice).await;
    let mut dids = Vec::new();
    for f in &friends {
        dids.push(did_of(f).await);
    }

    // One friend alone could take the account: refused, nothing set.
    let out =
        sichat(&alice, &["recovery", "setup", "--friend", &dids[0], "--friend", &dids[1], "--threshold", "1"]).await;
    assert!(!out.status.success() && stderr(&out).contains("at least 2"), "{}", stderr(&out));
    let out = sichat(&alice, &["recovery", "setup", "--friend", &alice_did, "--friend", &dids[1]]).await;
    assert!(!out.status.success() && stderr(&out).contains("your own recovery friend"), "{}", stderr(&out));
    let none: Option<String> = sqlx::query("SELECT recovery_guardians FROM acct_users WHERE name = 'alice'")
        .fetch_one(app.node.db.pool())
        .await
        .expect("row")
        .get("recovery_guardians");
    assert!(none.is_none(), "a refused setup sets nothing");

    let mut args = vec!["--json", "recovery", "setup", "--threshold", "2"];
    for d in &dids {
        args.extend(["--friend", d.as_str()]);
    }
    let out = sichat(&alice, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let set = json(&out);
    assert_eq!(set["guardians"]["threshold"], 2, "{set}");
    assert_eq!(set["kit"], Value::Null, "no kit was asked for");
    for f in &friends {
        wait_for_share(f).await;
    }
    Some(Circle { app, alice, alice_did, friends, eve })
}

async fn ask(wallet: &Path, did: &str, url: &str) -> String {
    let out = sichat(wallet, &["--json", "recovery", "ask", did, "--server", url]).await;
    assert!(out.status.success(), "ask: {}", stderr(&out));
    json(&out)["code"].as_str().expect("code").to_owned()
}

async fn friends_recover_a_lost_root_key(backend: Backend) {
    let Some(Circle { app, alice, alice_did, friends, eve }) = circle(backend).await else { return };
    let phone = app.wallet("alice-phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (old_root, _) = root_key(&app, "alice").await;

    // Alice loses the wallet with the root key, and asks from a new one.
    std::fs::remove_dir_all(&alice).expect("lose the wallet");
    let fresh = app.wallet("alice-again");
    let code = ask(&fresh, &alice_did, &app.url).await;
    assert!(!fresh.join("wallet.json").exists(), "no wallet until the recovery is done");

    // Her phone is told at its next sign-in.
    let out = sichat(&phone, &["device", "list"]).await;
    assert!(out.status.success() && stderr(&out).contains("opened a recovery"), "{}", stderr(&out));

    // A code whose fingerprint is not the request's key: the friend sends nothing.
    let (head, _) = code.split_once('#').expect("fingerprint");
    let tampered = format!("{head}#{}", "0".repeat(20));
    let out = sichat(&friends[0], &["recovery", "approve", &tampered, "--yes"]).await;
    assert!(!out.status.success() && stderr(&out).contains("another key"), "{}", stderr(&out));
    // Eve is no friend of alice's.
    let out = sichat(&eve, &["recovery", "approve", &code, "--yes"]).await;
    assert!(!out.status.success() && stderr(&out).contains("did not name you"), "{}", stderr(&out));
    // A forged approval, in bob's name but signed by another key, is refused by the node.
    let id = head.rsplit('/').next().expect("id");
    let (_, req) = app.get_json(&format!("/api/v1/recovery/requests/{id}")).await;
    let bob_did = did_of(&friends[0]).await;
    let now = now_ms() / 1000;
    let forged = RecoveryApprovalClaims {
        iss: bob_did.clone(),
        sub: alice_did.clone(),
        aud: app.node.identity.did().to_string(),
        request: id.to_owned(),
        key: req["key"].as_str().expect("key").to_owned(),
        share: "x.y.z.w.v".into(),
        iat: now,
        exp: now + 60,
    };
    let bob_device =
        json(&sichat(&friends[0], &["--json", "whoami"]).await)["device_id"].as_str().expect("device").to_owned();
    let kid = format!("{bob_did}#device-{bob_device}");
    let token = jws::sign(&Ed25519KeyPair::generate(), TYP_RECOVERY_APPROVAL, Some(&kid), &forged).expect("sign");
    let (status, body) = app
        .post_json(&format!("/api/v1/recovery/requests/{id}/approvals"), &serde_json::json!({"approval": token}))
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_signature")), "{body}");
    assert_eq!(approvals_count(&app).await, 0, "nothing was kept");

    // Bob approves; once is enough.
    let out = sichat(&friends[0], &["--json", "recovery", "approve", &code, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["approvals"], 1);
    let out = sichat(&friends[0], &["recovery", "approve", &code, "--yes"]).await;
    assert!(!out.status.success() && stderr(&out).contains("approved this recovery already"), "{}", stderr(&out));

    // One of two: nothing happens yet.
    let out = sichat(&fresh, &["--json", "recovery", "finish"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["status"], "waiting", "{}", stdout(&out));
    assert_eq!(root_key(&app, "alice").await.0, old_root);

    // Carol approves: alice finishes, with a new root key; the phone is revoked.
    let out = sichat(&friends[1], &["recovery", "approve", &code, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&fresh, &["--json", "recovery", "finish", "--device-name", "new-laptop"]).await;
    assert!(out.status.success(), "finish: {}", stderr(&out));
    let (new_root, devices) = root_key(&app, "alice").await;
    assert_ne!(new_root, old_root);
    assert_eq!(devices, 1, "only the recovering device is left");
    assert_eq!(did_of(&fresh).await, alice_did, "the same DID");
    assert!(!fresh.join("recovery-request.json").exists(), "the request's key is gone");
    let out = sichat(&phone, &["device", "list"]).await;
    assert!(!out.status.success(), "the phone was revoked with the lost root key");

    // The log: who approved, kept as signed.
    let out = sichat(&fresh, &["--json", "recovery", "log"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let log = json(&out);
    assert_eq!(log[0]["status"], "done", "{log}");
    let approvers: Vec<&str> =
        log[0]["approvals"].as_array().expect("approvals").iter().filter_map(|a| a["guardian"].as_str()).collect();
    assert_eq!(approvers.len(), 2);
    assert!(approvers.contains(&bob_did.as_str()));
    // A finished request takes no more approvals.
    let out = sichat(&friends[2], &["recovery", "approve", &code, "--yes"]).await;
    assert!(!out.status.success() && stderr(&out).contains("done"), "{}", stderr(&out));
}

async fn a_recovery_the_user_did_not_ask_for_is_cancelled(backend: Backend) {
    let Some(Circle { app, alice, alice_did, friends, .. }) = circle(backend).await else { return };
    let (root, _) = root_key(&app, "alice").await;
    let thief = app.wallet("thief");
    let code = ask(&thief, &alice_did, &app.url).await;
    let out = sichat(&friends[0], &["recovery", "approve", &code, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Alice's wallet is warned, sees who approved, and cancels.
    let out = sichat(&alice, &["--json", "recovery", "log"]).await;
    assert!(out.status.success() && stderr(&out).contains("opened a recovery"), "{}", stderr(&out));
    assert_eq!(json(&out)[0]["approvals"].as_array().map(Vec::len), Some(1));
    let out = sichat(&alice, &["--json", "recovery", "cancel"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["cancelled"], 1);
    let out = sichat(&alice, &["device", "list"]).await;
    assert!(out.status.success() && !stderr(&out).contains("opened a recovery"), "{}", stderr(&out));

    // The second friend's approval comes too late; the thief gets nothing.
    let out = sichat(&friends[1], &["recovery", "approve", &code, "--yes"]).await;
    assert!(!out.status.success() && stderr(&out).contains("cancelled"), "{}", stderr(&out));
    let out = sichat(&thief, &["recovery", "finish"]).await;
    assert!(!out.status.success() && stderr(&out).contains("cancelled"), "{}", stderr(&out));
    // A new request from the same directory replaces the closed one; an open one is kept.
    let again = ask(&thief, &alice_did, &app.url).await;
    assert_ne!(again, code);
    let out = sichat(&thief, &["recovery", "ask", &alice_did, "--server", &app.url]).await;
    assert!(!out.status.success() && stderr(&out).contains("open recovery already"), "{}", stderr(&out));
    let out = sichat(&alice, &["--json", "recovery", "cancel"]).await;
    assert_eq!(json(&out)["cancelled"], 1);
    assert_eq!(root_key(&app, "alice").await.0, root, "nothing changed");
    // An account that named no friends cannot be asked for.
    let bob_did = did_of(&friends[0]).await;
    let out = sichat(&app.wallet("nobody"), &["recovery", "ask", &bob_did, "--server", &app.url]).await;
    assert!(!out.status.success() && stderr(&out).contains("named no recovery friends"), "{}", stderr(&out));
}

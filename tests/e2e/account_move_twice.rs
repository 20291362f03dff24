//! An account moves twice, A → B → C (`sichat move`, the real binary). Those who know only
//! the DIDs it had on A keep reaching it: A's copy of its document names B, and B, which it
//! left too, says where it went (`421 recipient_moved` with `moved_to`), so a message to the
//! A-era DID from a node that never heard of C arrives once, on C. What it issued on A
//! verifies (with our verifier, and a Data Integrity one by Digital Bazaar given A's
//! document), and a revocation on C is seen through A's status-list URL. A's and B's logs
//! both lead to the DID on C.

use crate::account_move::verdict;
use crate::di_interop::{js_verify, node_modules};
use crate::messaging::{delivered, inbox, send, texts};
use crate::portable_did::{issue, text};
use serde_json::{json as json_value, Value};
use sichat_core::webvh;
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};

storage_tests!(an_account_moves_twice_and_its_first_dids_still_reach_it);

async fn an_account_moves_twice_and_its_first_dids_still_reach_it(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let Some(c) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let carol = a.join("carol", &a.invite(&alice, 1).await).await;
    let bob = a.wallet("bob");
    let out = sichat(&bob, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob_did = json(&out)["did"].as_str().expect("did").to_owned();
    let a_web = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let (cred_id, cred) = issue(&a, &alice, &bob_did, "vc+jwt").await;
    let (_, ldp) = issue(&a, &alice, &bob_did, "ldp_vc").await;

    // A recovery key named before the moves moves with the account.
    let kit = a.dir.path().join("kit.json");
    let out = sichat(&alice, &["--json", "recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recovery_key = json(&out)["recovery_key"].as_str().expect("key").to_owned();
    let mut c_did = String::new();
    for (to, invite) in [(&b, &b.owner_invite), (&c, &c.owner_invite)] {
        let out = sichat(&alice, &["--json", "move", "--to", &to.url, "--invite", invite]).await;
        assert!(out.status.success(), "move to {}: {}", to.url, stderr(&out));
        c_did = json(&out)["did"].as_str().expect("did").to_owned();
    }
    let who = json(&sichat(&alice, &["--json", "whoami"]).await);
    assert_eq!(who["server"], c.url.as_str(), "{who}");
    assert!(c_did.contains(&c.url.trim_start_matches("http://").replace(':', "%3A")), "{c_did}");

    // A's document names B; B's names C. Carol, on A, writes to the DID she knows: it
    // arrives on C, once.
    let (_, on_a) = a.get_json("/users/alice/did.json").await;
    assert!(on_a["service"].to_string().contains(&format!("{}/didcomm", b.url)), "{on_a}");
    let id = send(&carol, &a_web, "to the first DID, two moves later", &[]).await;
    delivered(&carol, &id).await;
    let got = [texts(&inbox(&alice, &[]).await), texts(&inbox(&alice, &["--requests"]).await)].concat();
    assert_eq!(got.iter().filter(|t| *t == "to the first DID, two moves later").count(), 1, "{got:?}");

    // Issued on A: verifies, and a revocation on C is seen through A's status-list URL.
    let (valid, report) = verdict(&cred).await;
    assert!(valid, "{report}");
    let out = sichat(&alice, &["credential", "revoke", &cred_id]).await;
    assert!(out.status.success(), "revoke on C: {}", stderr(&out));
    let (valid, report) = verdict(&cred).await;
    assert!(!valid && report.contains("revoked"), "{report}");

    // An independent Data Integrity verifier (Digital Bazaar's), given the document A
    // still serves for the issuer's DID, accepts what was issued there before both moves.
    if let Some(modules) = node_modules() {
        let ldp: Value = serde_json::from_str(&ldp).expect("a JSON-LD credential");
        let (status, doc) = a.get_json("/users/alice/did.json").await;
        assert_eq!(status, 200);
        let issuer = ldp["issuer"].as_str().expect("issuer").to_owned();
        assert_eq!(issuer, a_web);
        js_verify(&modules, a.dir.path(), &ldp, json_value!({ issuer: doc })).expect("verifies after two moves");
    }

    let on_c: Option<String> = sqlx::query_scalar("SELECT recovery_key FROM acct_users WHERE name = 'alice'")
        .fetch_one(c.node.db.pool())
        .await
        .expect("alice on C");
    assert_eq!(on_c.as_deref(), Some(recovery_key.as_str()));

    // The log B keeps, and C's, verify to the DID on C.
    for node in [&b, &c] {
        let (status, _, log) = text(node, "/users/alice/did.jsonl").await;
        assert_eq!(status, 200, "{}", node.url);
        let verified = webvh::verify_log(&c_did, &log).await.expect("the log verifies");
        assert_eq!(verified.document["id"], c_did.as_str());
        assert!(verified.update_keys.contains(&recovery_key), "{:?}", verified.update_keys);
    }
    for app in [a, b, c] {
        app.stop().await;
    }
}

//! The design's hardware configurations (seeds/001, "Model evaluation"), one test per row
//! as they are built. So far: 1→0, a wallet whose node is gone keeps everything that needs
//! no node.

use crate::holder::give;
use crate::messaging::{delivered, send, texts};
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};

storage_tests!(a_wallet_whose_node_is_gone_keeps_what_needs_no_node);

/// Alice holds a credential and a message; then her node goes away. Listing and reading
/// her messages and listing her credentials still work, each saying the node is out of
/// reach; `--offline` does not ask it at all.
async fn a_wallet_whose_node_is_gone_keeps_what_needs_no_node(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let credential = give(&bob, &alice, "FriendCredential", &[]).await;
    let alice_did = crate::holder::did(&alice).await;
    let id = send(&bob, &alice_did, "kept in the wallet", &[]).await;
    delivered(&bob, &id).await;
    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let message = json(&out)["messages"][0]["id"].as_str().expect("id").to_owned();
    // The node goes away (its directory, and the wallets in it, stay).
    let _gone = app.stop_keeping().await;

    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "inbox with the node gone: {}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach the server"), "{}", stderr(&out));
    assert_eq!(texts(&json(&out)), ["kept in the wallet"]);
    let out = sichat(&alice, &["--json", "message", "inbox", "--offline"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("cannot reach"), "--offline does not ask: {}", stderr(&out));
    assert_eq!(texts(&json(&out)), ["kept in the wallet"]);
    let out = sichat(&alice, &["--json", "message", "read", &message]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["text"], "kept in the wallet");
    let out = sichat(&alice, &["--json", "credential", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json(&out);
    assert!(listed.as_array().is_some_and(|l| l.iter().any(|c| c["id"] == credential.as_str())), "{listed}");
}

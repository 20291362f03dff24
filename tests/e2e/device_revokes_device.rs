//! A device revokes another when the root key allowed it (`sichat device policy
//! --devices-may-revoke on`): the phone cuts off a lost laptop at once, without the
//! root-key wallet. The root key's next command brings the did:webvh log up to date (no
//! device can sign it), and the root key can reinstate the laptop. Refused, changing
//! nothing: without the policy, without --yes, a device revoking itself, reinstating a
//! device the root key revoked.

use crate::holder::give;
use crate::messaging::{delivered, inbox, send, texts};
use crate::portable_did::text;
use sichat_core::webvh;
use sichat_e2e::{json, sichat, stderr, storage_tests, unseal, Backend, TestApp};

storage_tests!(
    a_phone_revokes_a_lost_laptop_and_the_root_key_can_undo_it,
    a_new_device_starts_with_the_history,
    two_copies_of_one_wallet_are_told
);

/// A wallet directory copied to a second machine is the same device: the two would split
/// its messages. The node sees a sign-in number twice and both copies are told; one wallet
/// running commands at once is not.
async fn two_copies_of_one_wallet_are_told(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let phone = app.wallet("phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&phone, &["device", "list"]).await;
    assert!(out.status.success() && !stderr(&out).contains("another copy"), "{}", stderr(&out));
    let copy = app.wallet("phone-copy");
    std::fs::create_dir_all(&copy).expect("dir");
    for entry in std::fs::read_dir(&phone).expect("dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
    }
    let told = |out: &std::process::Output| stderr(out).contains("another copy of this wallet");
    let first = sichat(&phone, &["device", "list"]).await;
    let second = sichat(&copy, &["device", "list"]).await;
    assert!(first.status.success() && second.status.success());
    assert!(!told(&first), "{}", stderr(&first));
    assert!(told(&second), "the copy is told: {}", stderr(&second));
    let again = sichat(&copy, &["device", "list"]).await;
    let original = sichat(&phone, &["device", "list"]).await;
    assert!(told(&original), "the original is told too, once the copy got ahead: {}", stderr(&original));
    assert!(!told(&again));

    // One wallet, several commands at once: never told.
    let runs: Vec<_> = (0..3).map(|_| sichat(&alice, &["device", "list"])).collect();
    for out in futures_util::future::join_all(runs).await {
        assert!(out.status.success() && !told(&out), "{}", stderr(&out));
    }
    app.stop().await;
}

/// A device blessed by the root-key wallet starts with that wallet's history: the
/// credentials it holds and the messages it fetched, which the node no longer has.
async fn a_new_device_starts_with_the_history(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let alice_did = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let id = send(&carol, &alice_did, "before the phone existed", &[]).await;
    delivered(&carol, &id).await;
    assert!(texts(&inbox(&alice, &[]).await).contains(&"before the phone existed".to_owned()));
    let held = give(&carol, &alice, "FriendCredential", &[]).await;

    let phone = app.wallet("phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = inbox(&phone, &[]).await;
    assert!(texts(&listing).contains(&"before the phone existed".to_owned()), "{listing}");
    let creds = json(&sichat(&phone, &["--json", "credential", "list"]).await);
    assert!(creds.to_string().contains(&held), "{creds}");
    app.stop().await;
}

async fn a_phone_revokes_a_lost_laptop_and_the_root_key_can_undo_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let webvh_did = json(&out)["did"].as_str().expect("did").to_owned();
    let (phone, laptop, tablet) = (app.wallet("phone"), app.wallet("laptop"), app.wallet("tablet"));
    for (name, w) in [("phone", &phone), ("laptop", &laptop), ("tablet", &tablet)] {
        let out = sichat(&alice, &["device", "add", "--name", name, "--out", w.to_str().expect("path")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let id_of = |w: &std::path::Path| unseal(w).profile["device_id"].as_str().expect("id").to_owned();
    let (phone_id, laptop_id, tablet_id) = (id_of(&phone), id_of(&laptop), id_of(&tablet));
    let active = || async { json(&sichat(&alice, &["--json", "device", "list"]).await).as_array().map_or(0, Vec::len) };
    assert_eq!(active().await, 4);

    // Not allowed yet: refused, saying how to allow it.
    let out = sichat(&phone, &["device", "revoke", &laptop_id, "--yes"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("devices-may-revoke on"), "{}", stderr(&out));
    assert_eq!(active().await, 4);

    let out = sichat(&alice, &["--json", "device", "policy", "--devices-may-revoke", "on"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // It asks first, and a device does not revoke itself.
    let out = sichat(&phone, &["device", "revoke", &laptop_id]).await;
    assert!(!out.status.success() && stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = sichat(&phone, &["device", "revoke", &phone_id, "--yes"]).await;
    assert!(!out.status.success() && stderr(&out).contains("this device"), "{}", stderr(&out));
    assert_eq!(active().await, 4);

    // The phone cuts off the laptop.
    let out = sichat(&phone, &["--json", "device", "revoke", &laptop_id, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&laptop, &["device", "list"]).await;
    assert!(!out.status.success(), "the laptop is cut off");
    let (_, web_doc) = app.get_json("/users/alice/did.json").await;
    assert!(!web_doc.to_string().contains(&laptop_id), "the did:web document drops it at once");

    // The root key's next command brings the log up to date.
    let out = sichat(&alice, &["device", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Your DID log now drops"), "{}", stderr(&out));
    let (_, _, log) = text(&app, "/users/alice/did.jsonl").await;
    let verified = webvh::verify_log(&webvh_did, &log).await.expect("log");
    assert!(!verified.document.to_string().contains(&laptop_id), "{}", verified.document);
    let out = sichat(&alice, &["device", "list"]).await;
    assert!(!stderr(&out).contains("Your DID log"), "once: {}", stderr(&out));

    // The root key revokes the tablet; that one a reinstate does not bring back.
    let out = sichat(&alice, &["device", "revoke", &tablet_id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["device", "reinstate", &tablet_id]).await;
    assert!(!out.status.success(), "the root key's own revocation stands");

    // The root key undoes what the phone did.
    let listed = json(&sichat(&alice, &["--json", "device", "reinstate"]).await);
    assert_eq!(listed[0]["id"], laptop_id.as_str(), "{listed}");
    assert_eq!(listed[0]["revoked_by"], phone_id.as_str(), "{listed}");
    let out = sichat(&alice, &["device", "reinstate", &laptop_id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&laptop, &["device", "list"]).await;
    assert!(out.status.success(), "the laptop is back: {}", stderr(&out));
    let (_, _, log) = text(&app, "/users/alice/did.jsonl").await;
    let verified = webvh::verify_log(&webvh_did, &log).await.expect("log");
    assert!(verified.document.to_string().contains(&laptop_id), "{}", verified.document);

    // Policy off: the phone may no longer.
    let out = sichat(&alice, &["device", "policy", "--devices-may-revoke", "off"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&phone, &["device", "revoke", &laptop_id, "--yes"]).await;
    assert!(!out.status.success());
    assert_eq!(active().await, 3);
    app.stop().await;
}

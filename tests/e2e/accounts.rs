//! Joining a node, the DID documents it serves, the invite tree, devices and rotation.

use serde_json::Value;
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};
use ssi_dids_core::{DIDResolver, DID};

storage_tests!(join_and_resolve_did_with_ssi, invite_tree_quotas_and_removal, devices_and_root_rotation);

fn ids(doc: &Value, relationship: &str) -> Vec<String> {
    doc[relationship]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

async fn join_and_resolve_did_with_ssi(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    assert!(app.url.starts_with("http://localhost:"), "a loopback node is did:web:localhost…: {}", app.url);
    let alice = app.join("alice", &app.owner_invite).await;

    let who = json(&sichat(&alice, &["--json", "whoami"]).await);
    let did = who["did"].as_str().expect("did").to_owned();
    let port = app.url.rsplit(':').next().expect("port");
    assert_eq!(did, format!("did:web:localhost%3A{port}:users:alice"));

    // Served over HTTP where did:web says it lives.
    let (status, doc) = app.get_json("/users/alice/did.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["id"], did.as_str());
    let methods = doc["verificationMethod"].as_array().expect("methods");
    assert_eq!(methods.len(), 4, "root, issuing key, device Ed25519, device X25519: {doc}");
    assert_eq!(ids(&doc, "assertionMethod").len(), 1, "the issuing key");
    assert!(ids(&doc, "assertionMethod")[0].contains("#issuing-"));
    assert_eq!(ids(&doc, "authentication").len(), 1, "the device key");
    assert_eq!(ids(&doc, "keyAgreement").len(), 1, "the device X25519 key");
    assert_eq!(ids(&doc, "capabilityInvocation"), vec![format!("{did}#root")]);

    // And `sichat did show` prints that same document.
    let shown = json(&sichat(&alice, &["did", "show"]).await);
    assert_eq!(shown, doc);

    // ssi's own did:web resolver agrees, for the user and for the node.
    let resolved =
        did_web::DIDWeb.resolve(DID::new(did.as_str()).expect("ssi parses our DID")).await.expect("ssi resolves");
    let resolved = resolved.document.into_document();
    assert_eq!(resolved.id.as_str(), did);
    assert_eq!(resolved.verification_method.len(), 4);
    assert_eq!(resolved.verification_relationships.assertion_method.len(), 1);
    assert_eq!(resolved.verification_relationships.key_agreement.len(), 1);
    let node_did = app.node.identity.did().to_string();
    let node_doc = did_web::DIDWeb.resolve(DID::new(node_did.as_str()).expect("node DID")).await.expect("resolve node");
    assert_eq!(node_doc.document.into_document().id.as_str(), node_did);

    // The owner invite was single-use: a second start of the node mints no new one.
    assert!(app.node.owner_invite().await.expect("owner invite").is_none());
    app.stop().await;
}

async fn invite_tree_quotas_and_removal(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.owner_quota = 5).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let me = json(&sichat(&alice, &["--json", "invite", "list"]).await);
    assert_eq!((me["quota"].as_i64(), me["quota_available"].as_i64()), (Some(4), Some(4)));

    // alice (4) → bob (quota 3 → 2 of his own) → carol (quota 2 → 1) → dave (quota 1 → 0).
    let code = app.invite(&alice, 3).await;
    let bob = app.join("bob", &code).await;
    let code = app.invite(&bob, 2).await;
    let carol = app.join("carol", &code).await;
    let code = app.invite(&carol, 1).await;
    let dave = app.join("dave", &code).await;

    // Quotas are split off the inviter's and cannot be overdrawn.
    let over = sichat(&alice, &["--json", "invite", "create", "--quota", "2"]).await;
    assert!(!over.status.success());
    assert!(stderr(&over).contains("quota_exceeded"), "{}", stderr(&over));
    let over = sichat(&dave, &["invite", "create", "--quota", "1"]).await;
    assert!(stderr(&over).contains("0 left to give"), "{}", stderr(&over));
    let ok = sichat(&alice, &["--json", "invite", "create", "--quota", "1"]).await;
    assert!(ok.status.success(), "exactly the rest is fine: {}", stderr(&ok));
    let spare = json(&ok)["id"].as_str().expect("id").to_owned();
    // Revoking an unused invite gives its quota back.
    assert!(sichat(&alice, &["invite", "revoke", &spare]).await.status.success());
    let me = json(&sichat(&alice, &["--json", "invite", "list"]).await);
    assert_eq!(me["quota_available"].as_i64(), Some(1));

    // Only accounts above may remove: not below, not beside.
    let up = sichat(&carol, &["user", "remove", "bob"]).await;
    assert!(stderr(&up).contains("forbidden"), "{}", stderr(&up));
    let self_remove = sichat(&dave, &["user", "remove", "dave"]).await;
    assert!(!self_remove.status.success());

    // alice, two levels up, removes carol: carol's DID is gone, dave moves up to bob.
    let out = sichat(&alice, &["user", "remove", "carol"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = app.get_json("/users/carol/did.json").await;
    assert_eq!((status, body["error"].as_str()), (410, Some("account_removed")));
    let denied = sichat(&carol, &["device", "list"]).await;
    assert!(!denied.status.success(), "a removed account cannot log in");
    assert!(sichat(&dave, &["device", "list"]).await.status.success(), "dave keeps his account");
    let users = app.node.accounts.users().await.expect("users");
    let dave_row = users.iter().find(|u| u.name == "dave").expect("dave");
    assert_eq!(dave_row.invited_by.as_deref(), Some("bob"));
    // Bob now holds dave's invite (quota 1) instead of carol's (2): one back to give.
    let bob_me = json(&sichat(&bob, &["--json", "invite", "list"]).await);
    assert_eq!(bob_me["quota_available"].as_i64(), Some(1));
    // bob, now directly above dave, may remove him; a removed name is never reused.
    assert!(sichat(&bob, &["user", "remove", "dave"]).await.status.success());
    let code = app.invite(&bob, 1).await;
    let again =
        sichat(&app.wallet("dave2"), &["init", "--server", &app.url, "--invite", &code, "--name", "dave"]).await;
    assert!(stderr(&again).contains("name_taken"), "{}", stderr(&again));
    app.stop().await;
}

async fn devices_and_root_rotation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let phone = app.wallet("alice-phone");
    let out =
        sichat(&alice, &["--json", "device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let phone_id = json(&out)["device_id"].as_str().expect("id").to_owned();

    let (_, doc) = app.get_json("/users/alice/did.json").await;
    assert_eq!(ids(&doc, "authentication").len(), 2);
    assert_eq!(ids(&doc, "keyAgreement").len(), 2);
    let listed = json(&sichat(&phone, &["--json", "device", "list"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "the phone logs in by itself");

    // The phone holds no root key, so it cannot bless or revoke devices.
    let no_root = sichat(&phone, &["device", "revoke", &phone_id]).await;
    assert!(stderr(&no_root).contains("root key"), "{}", stderr(&no_root));

    // Rotation: new root key in the document, both devices re-blessed and still working.
    let before = doc["verificationMethod"][0]["publicKeyMultibase"].clone();
    let out = sichat(&alice, &["--json", "key", "rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["devices_recertified"], 2);
    let (_, doc) = app.get_json("/users/alice/did.json").await;
    assert_ne!(doc["verificationMethod"][0]["publicKeyMultibase"], before);
    assert_eq!(doc["verificationMethod"][0]["publicKeyMultibase"], json(&out)["root_key"]);
    assert!(sichat(&alice, &["device", "list"]).await.status.success());
    assert!(sichat(&phone, &["device", "list"]).await.status.success(), "re-blessed phone still logs in");

    // Revoking the phone takes its keys out of the document and ends its logins.
    assert!(sichat(&alice, &["device", "revoke", &phone_id]).await.status.success());
    let (_, doc) = app.get_json("/users/alice/did.json").await;
    assert_eq!(ids(&doc, "authentication").len(), 1);
    assert!(!doc.to_string().contains(&phone_id));
    let gone = sichat(&phone, &["device", "list"]).await;
    assert!(stderr(&gone).contains("revoked"), "{}", stderr(&gone));
    app.stop().await;
}

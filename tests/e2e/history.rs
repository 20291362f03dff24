//! History on every device (`sichat history sync`, and `message inbox`): messages and
//! contacts kept on the node sealed to the account's devices and its history key. A device
//! gets a contact another device added; a wallet recovered with the kit gets back messages
//! and contacts the lost wallet alone held (the node had deleted the messages once every
//! device took them), and tells each contact of the recovery. The node holds no plaintext,
//! and bad items are refused.

use crate::messaging::{inbox, send, texts};
use sichat_e2e::{json, session_token, sichat, stderr, storage_tests, Backend, TestApp};
use sqlx::Row;

storage_tests!(history_reaches_every_device_and_a_recovered_wallet);

async fn contacts(wallet: &std::path::Path) -> Vec<String> {
    let out = sichat(wallet, &["--json", "contacts", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let list = v.as_array().cloned().or_else(|| v["contacts"].as_array().cloned()).unwrap_or_default();
    list.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect()
}

async fn history_reaches_every_device_and_a_recovered_wallet(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let alice_did = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let bob_did = json(&sichat(&bob, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let kit = app.dir.path().join("kit.json");
    let out = sichat(&alice, &["recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let phone = app.wallet("alice-phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Bob writes; both of alice's devices take it, so the node's mailbox lets it go.
    send(&bob, &alice_did, "kept in the history", &[]).await;
    let mut seen = false;
    for _ in 0..100 {
        if texts(&inbox(&alice, &[]).await).contains(&"kept in the history".to_owned()) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the message reached alice");
    for _ in 0..100 {
        if texts(&inbox(&phone, &[]).await).contains(&"kept in the history".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A contact alice adds on the laptop reaches the phone.
    let out = sichat(&alice, &["contacts", "add", "bob", &bob_did]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["--json", "history", "sync"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["sent"], 1, "the new contact (the message was kept by `message inbox`): {}", json(&out));
    assert!(!contacts(&phone).await.contains(&"bob".to_owned()));
    let out = sichat(&phone, &["--json", "history", "sync"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["received_contacts"], 1, "{}", json(&out));
    assert!(contacts(&phone).await.contains(&"bob".to_owned()));

    // The node holds sealed items only: no text, no DID, ids that are hashes.
    let rows = sqlx::query("SELECT id, jwe FROM acct_history").fetch_all(app.node.db.pool()).await.expect("rows");
    assert!(rows.len() >= 2);
    for r in &rows {
        let (id, jwe): (String, String) = (r.get("id"), r.get("jwe"));
        assert!(!jwe.contains("kept in the history") && !jwe.contains(&bob_did) && !id.contains("bob"), "{jwe}");
        assert!(jwe.contains("ciphertext"), "{jwe}");
    }

    // Bad items are refused and change nothing.
    let token = session_token(&app, &alice).await;
    let before = rows.len();
    for (body, why) in [
        (serde_json::json!({"items": [{"id": "short", "jwe": "x"}]}), "a bad id"),
        (serde_json::json!({"items": [{"id": "a".repeat(20), "jwe": "x".repeat(49 * 1024)}]}), "too large"),
        (serde_json::json!({"items": []}), "empty"),
        (serde_json::json!({"items": [{"id": "a".repeat(20), "jwe": "x", "extra": 1}]}), "an unknown field"),
    ] {
        let r = app
            .http
            .post(format!("{}/api/v1/history", app.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert!(r.status().is_client_error(), "{why}: {}", r.status());
    }
    let r = app.http.get(format!("{}/api/v1/history", app.url)).send().await.expect("GET");
    assert_eq!(r.status(), 401, "no session, no history");
    let after: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM acct_history").fetch_one(app.node.db.pool()).await.expect("n").get("n");
    assert_eq!(after as usize, before);

    // Alice loses both devices. The kit gets her back in, with her messages and contacts.
    std::fs::remove_dir_all(&alice).expect("lose the laptop");
    std::fs::remove_dir_all(&phone).expect("lose the phone");
    let fresh = app.wallet("alice-again");
    let out = sichat(&fresh, &["--json", "recovery", "restore", "--kit", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = json(&out);
    assert!(restored["history"]["received_messages"].as_u64().unwrap_or(0) >= 1, "{restored}");
    assert!(texts(&inbox(&fresh, &[]).await).contains(&"kept in the history".to_owned()));
    assert!(contacts(&fresh).await.contains(&"bob".to_owned()));
    // Every contact is told of the recovery.
    assert_eq!(restored["contacts_told"], 1, "{restored}");
    let mut told = false;
    for _ in 0..100 {
        let listing = [inbox(&bob, &[]).await, inbox(&bob, &["--requests"]).await];
        if listing.iter().flat_map(texts).any(|t| t.contains(&format!("{alice_did} was recovered"))) {
            told = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(told, "bob hears of alice's recovery");
}

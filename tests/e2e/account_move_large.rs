//! A mailbox larger than one move bundle (20,000 waiting messages) moves whole: the rest
//! follows in pages that the wallet carries from the old node to the new one, with
//! progress, and the new node stores them in the import's transaction, in order. A move the
//! new node refuses half-way is cancelled on the old one, where the account works at once.

use crate::messaging::{delivered, send};
use serde_json::json;
use sichat_e2e::fill::fill_mailbox;
use sichat_e2e::{sichat, stderr, storage_tests, Backend, TestApp};
use sqlx::Row;

storage_tests!(a_mailbox_larger_than_a_bundle_moves_whole, a_failed_move_is_cancelled_and_the_account_works);

async fn waiting_ids(app: &TestApp, user_id: &str) -> Vec<String> {
    sqlx::query("SELECT id FROM msg_mailbox WHERE user_id = $1 ORDER BY seq")
        .bind(user_id)
        .fetch_all(app.node.db.pool())
        .await
        .expect("ids")
        .iter()
        .map(|r| r.try_get("id").expect("id"))
        .collect()
}

async fn a_mailbox_larger_than_a_bundle_moves_whole(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let carol = a.join("carol", &a.invite(&alice, 1).await).await;
    let pool = a.node.db.pool();
    let user_id: String = sqlx::query("SELECT id FROM acct_users WHERE name = 'alice'")
        .fetch_one(pool)
        .await
        .expect("alice")
        .try_get("id")
        .expect("id");
    let devices: Vec<String> = sqlx::query("SELECT id FROM acct_devices WHERE user_id = $1")
        .bind(&user_id)
        .fetch_all(pool)
        .await
        .expect("devices")
        .iter()
        .map(|r| r.try_get("id").expect("id"))
        .collect();
    let alice_did =
        sichat_e2e::json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let id = send(&carol, &alice_did, "the oldest", &[]).await;
    delivered(&carol, &id).await;
    fill_mailbox(&a.node, &user_id, &devices, 20_500, 200).await;
    let id = send(&carol, &alice_did, "the newest", &[]).await;
    delivered(&carol, &id).await;
    let before = waiting_ids(&a, &user_id).await;
    assert_eq!(before.len(), 20_502);

    // Pages are only taken for a move that has its draft, and only sealed to it.
    let (status, ticket) = b.post_json("/api/v1/moves/tickets", &json!({"invite": b.owner_invite})).await;
    assert_eq!(status, 201, "{ticket}");
    let (status, body) =
        b.post_json("/api/v1/moves/pages", &json!({"ticket": ticket["ticket"], "page": "x.y.z"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("draft first"), "{body}");
    let (status, body) = b.post_json("/api/v1/moves/pages", &json!({"ticket": "nope", "page": "x.y.z"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) =
        a.post_json("/api/v1/moves/export/page", &json!({"ticket": "nope", "part": "messaging", "cursor": "0"})).await;
    assert_eq!(status, 404, "no export in flight: {body}");

    let out = sichat(&alice, &["move", "--to", &b.url, "--invite", &b.owner_invite]).await;
    assert!(out.status.success(), "move: {}", stderr(&out));
    assert!(stderr(&out).contains("carrying 502 more items of messaging"), "{}", stderr(&out));
    assert!(stderr(&out).contains("messages: 502/502"), "progress: {}", stderr(&out));

    // Every waiting message is on B, in the same order, and A's mailbox is gone.
    assert_eq!(waiting_ids(&b, &user_id).await, before);
    assert!(waiting_ids(&a, &user_id).await.is_empty());
    let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM acct_move_pages")
        .fetch_one(b.node.db.pool())
        .await
        .expect("pages")
        .try_get("n")
        .expect("n");
    assert_eq!(held, 0, "the pages are gone once imported");
    a.stop().await;
    b.stop().await;
}

async fn a_failed_move_is_cancelled_and_the_account_works(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let carol = a.join("carol", &a.invite(&alice, 1).await).await;
    let alice_did =
        sichat_e2e::json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    // Nothing in flight: nothing to cancel.
    let out = sichat(&alice, &["move", "--cancel", "--to", &b.url]).await;
    assert!(!out.status.success() && stderr(&out).contains("nothing to cancel"), "{}", stderr(&out));

    // B refuses the name after A exported: the wallet cancels the move on A.
    let out = sichat(&alice, &["move", "--to", &b.url, "--invite", &b.owner_invite, "--name", "Not A Name"]).await;
    assert!(!out.status.success(), "a bad name is refused");
    assert!(stderr(&out).contains("the move was cancelled"), "{}", stderr(&out));
    // At once, A takes messages for alice and her root operations again.
    let id = send(&carol, &alice_did, "after the cancelled move", &[]).await;
    delivered(&carol, &id).await;
    let phone = a.wallet("alice-phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "a root operation right after: {}", stderr(&out));
    // And the move can be made again, now.
    let out = sichat(&alice, &["move", "--to", &b.url, "--invite", &b.owner_invite]).await;
    assert!(out.status.success(), "the move again: {}", stderr(&out));
    a.stop().await;
    b.stop().await;
}

//! Filling an account quickly, for tests and measurements of moves: issued credentials
//! through the issuer's own service (what `POST /api/v1/issuer/credentials` runs), and
//! waiting messages straight into the mailbox (envelopes that are JSON, not encrypted:
//! what is measured is carrying them, not opening them).

use sichat_accounts::AuthDevice;
use sichat_issuer::service::IssueRequest;
use sichat_messaging::mailbox::{self, WaitingRow};
use sichat_messaging::MessageId;
use sichat_server::Node;
use std::sync::Arc;

/// Issue `count` `FriendCredential`s from `me` to `subject`, `parallel` at a time.
pub async fn issue_many(node: &Node, me: &AuthDevice, subject: &str, count: usize, parallel: usize) {
    let me = Arc::new(me.clone());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..parallel.max(1))
        .map(|_| {
            let (node, me, next, subject) = (node.clone(), me.clone(), next.clone(), subject.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                    let mut claims = serde_json::Map::new();
                    claims.insert("name".into(), "Bob".into());
                    let req = IssueRequest {
                        type_name: "FriendCredential".into(),
                        subject: subject.clone(),
                        claims,
                        valid_until: None,
                        suspendable: false,
                        format: Default::default(),
                    };
                    node.issuer.issue(&me, req).await.expect("issue");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("issuer worker");
    }
}

/// Leave `count` messages of about `bytes` each waiting in `user_id`'s mailbox for
/// `devices`, a thousand per transaction. Returns their ids, oldest first.
pub async fn fill_mailbox(node: &Node, user_id: &str, devices: &[String], count: usize, bytes: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    let padding = "x".repeat(bytes.saturating_sub(40));
    let now = sichat_core::ids::now_ms();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let rows: Vec<(WaitingRow, &[String])> = chunk
            .iter()
            .map(|_| {
                let envelope = serde_json::json!({ "ciphertext": padding }).to_string();
                let row = WaitingRow {
                    seq: 0,
                    id: MessageId::new().as_str().to_owned(),
                    sender: "did:web:sender.example:users:carol".into(),
                    folder: "inbox".into(),
                    size: envelope.len() as i64,
                    envelope,
                    presentation: 0,
                    received_at: now,
                };
                (row, devices)
            })
            .collect();
        let size = rows.iter().map(|(r, _)| r.size).sum();
        let mut tx = node.db.pool().begin().await.expect("begin");
        mailbox::insert_moved_batch(&mut tx, user_id, &rows).await.expect("insert");
        mailbox::add_usage(&mut tx, user_id, rows.len() as i64, size).await.expect("usage");
        tx.commit().await.expect("commit");
        ids.extend(rows.into_iter().map(|(r, _)| r.id));
    }
    ids
}

//! Durability under `kill -9`: real `sichatd` processes for both nodes, killed in the
//! middle of a run and restarted. Every message a node acknowledged to its sender reaches
//! the recipient's device, and exactly once once deduplicated by id.

use crate::mailbox::{next, say, Device, Socket};
use crate::process::{field, free_port, start_env};
use futures_util::SinkExt;
use serde_json::{json, Value};
use sichat_e2e::{sichat, stderr, Backend, TempDir, TestDb};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message as Frame;

const MESSAGES: usize = 300;
/// Limits raised so that only the crashes slow the run down.
const ENV: &[(&str, &str)] = &[
    ("SICHAT_MSG_SEND_PER_SECOND", "10000"),
    ("SICHAT_MSG_NODE_PER_SECOND", "10000"),
    ("SICHAT_MSG_SENDER_PER_SECOND", "10000"),
    ("SICHAT_MSG_REQUESTS_PER_SENDER_PER_DAY", "100000"),
    ("SICHAT_MSG_REQUESTS_PER_DAY", "100000"),
    ("SICHAT_RATE_LIMIT_PER_SECOND", "10000"),
    ("SICHAT_RATE_LIMIT_BURST", "10000"),
];

struct Node {
    child: Child,
    data: std::path::PathBuf,
    db: String,
    port: u16,
    url: String,
    did: String,
}

impl Node {
    async fn start(dir: &Path, name: &str, db: &TestDb) -> (Self, String) {
        let data = dir.join(name);
        let port = free_port();
        let (child, banner) = start_env(&data, &db.url, port, true, ENV).await;
        let idx = banner.iter().position(|l| l.contains("owner invite")).expect("owner invite printed");
        let invite = banner[idx + 1].trim().to_owned();
        let node =
            Node { child, url: field(&banner, "URL:"), did: field(&banner, "DID:"), data, db: db.url.clone(), port };
        (node, invite)
    }

    /// SIGKILL, then start again on the same port, data and database.
    async fn crash_and_restart(&mut self) {
        self.child.start_kill().expect("kill -9");
        self.child.wait().await.expect("reaped");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (child, _) = start_env(&self.data, &self.db, self.port, false, ENV).await;
        self.child = child;
    }
}

/// The recipient's device: connected live whenever the node is up, acknowledging each
/// delivery at once, recording every id it is handed (duplicates included).
async fn receive(alice: Arc<Device>, seen: Arc<Mutex<Vec<String>>>, stop: Arc<tokio::sync::Notify>) {
    loop {
        let Ok(mut ws) = alice.try_connect().await else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = stop.notified() => return,
            }
        };
        say(&mut ws, "live-delivery-change", json!({"live_delivery": true})).await;
        tokio::select! {
            _ = pump(&mut ws, &seen) => {}
            _ = stop.notified() => return,
        }
    }
}

async fn pump(ws: &mut Socket, seen: &Mutex<Vec<String>>) {
    use futures_util::StreamExt;
    while let Some(Ok(frame)) = ws.next().await {
        let Frame::Text(text) = frame else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        if v["type"] != "https://didcomm.org/messagepickup/3.0/delivery" {
            continue;
        }
        let ids: Vec<String> = v["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect();
        seen.lock().expect("lock").extend(ids.iter().cloned());
        let ack = json!({"id": sichat_core::ids::new_id(), "type": "https://didcomm.org/messagepickup/3.0/messages-received",
            "body": {"message_id_list": ids}});
        if ws.send(Frame::Text(ack.to_string().into())).await.is_err() {
            return;
        }
    }
}

async fn kill_9_loses_nothing_acknowledged(backend: Backend) {
    let dir = TempDir::new("crash");
    for sub in ["a-db", "b-db"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let Some(db_a) = TestDb::create(backend, &dir.path().join("a-db")).await else { return };
    let Some(db_b) = TestDb::create(backend, &dir.path().join("b-db")).await else { return };
    let (mut a, invite_a) = Node::start(dir.path(), "a", &db_a).await;
    let (mut b, invite_b) = Node::start(dir.path(), "b", &db_b).await;
    let join = |url: String, invite: String, name: &'static str| {
        let wallet = dir.path().join(name);
        async move {
            let out = sichat(&wallet, &["init", "--server", &url, "--invite", &invite, "--name", name]).await;
            assert!(out.status.success(), "init {name}: {}", stderr(&out));
            wallet
        }
    };
    let alice_w = join(a.url.clone(), invite_a, "alice").await;
    let bob_w = join(b.url.clone(), invite_b, "bob").await;
    let alice = Arc::new(Device::at(&a.url, &a.did, &alice_w).await);
    let bob = Device::at(&b.url, &b.did, &bob_w).await;

    // Packed beforehand, as a wallet would have them: Alice's node will be down at times.
    let mut forwards = Vec::new();
    for i in 0..MESSAGES {
        forwards.push(bob.forward(&alice.did, &format!("message {i}")).await);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let receiver = tokio::spawn(receive(alice.clone(), seen.clone(), stop.clone()));

    // Bob's device sends while the nodes die under it; each forward is retried until Bob's
    // node acknowledges it (202), which is the only promise a node makes. Alice's node is
    // killed a third of the way through, Bob's at two thirds.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let retried = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let sender = {
        let (acknowledged, retried) = (acknowledged.clone(), retried.clone());
        tokio::spawn(async move {
            for (i, (id, body)) in forwards.iter().enumerate() {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match bob.try_post(body).await {
                        Some(202) => break,
                        other => {
                            retried.lock().expect("lock").insert(i);
                            assert!(Instant::now() < deadline, "Bob's node never took message {i}: {other:?}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                acknowledged.lock().expect("lock").push(id.clone());
            }
            bob
        })
    };
    let sent = || acknowledged.lock().expect("lock").len();
    while sent() < MESSAGES / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.crash_and_restart().await;
    while sent() < 2 * MESSAGES / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.crash_and_restart().await;
    let bob = sender.await.expect("sender");
    let acknowledged = acknowledged.lock().expect("lock").clone();

    // Everything acknowledged arrives; nothing else does.
    let wanted: HashSet<&str> = acknowledged.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: HashSet<String> = seen.lock().expect("lock").iter().cloned().collect();
        if wanted.iter().all(|id| got.contains(*id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged messages never arrived",
            wanted.iter().filter(|id| !got.contains(**id)).count(),
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.notify_waiters();
    let _ = receiver.await;
    let raw = seen.lock().expect("lock").clone();
    let unique: HashSet<&str> = raw.iter().map(String::as_str).collect();
    assert_eq!(unique, wanted, "exactly the acknowledged messages, once each after deduplication");
    println!(
        "crash test ({backend:?}): {} acknowledged, {} delivered, {} redelivered after crashes (deduplicated by id), {} sends retried",
        wanted.len(),
        unique.len(),
        raw.len() - unique.len(),
        retried.lock().expect("lock").len()
    );

    // Every forward is marked delivered at Bob's node, and Alice's queue is empty.
    for id in acknowledged.iter().step_by(37) {
        assert_eq!(bob.status(id).await["state"], "delivered");
    }
    let mut ws = alice.connect().await;
    say(&mut ws, "status-request", json!({})).await;
    assert_eq!(next(&mut ws, "status").await["body"]["message_count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_sqlite() {
    sichat_e2e::or_hung(kill_9_loses_nothing_acknowledged(Backend::Sqlite)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_postgres() {
    sichat_e2e::or_hung(kill_9_loses_nothing_acknowledged(Backend::Postgres)).await
}

//! Messaging between two real nodes on loopback, through the real `sichat` binary: a message
//! sent while its recipient is offline and fetched later, the inbound policy (friends with a
//! credential, strangers in requests, refusals and blocks), contacts and `name@host`, live
//! delivery with `message watch` (also across a dropped connection), and every device of
//! the recipient getting every message.

use serde_json::Value;
use sichat_core::did::Did;
use sichat_e2e::{json, sichat, stderr, stdout, storage_tests, Backend, TestApp, Watch};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

storage_tests!(
    offline_recipient_friends_and_strangers,
    policy_refusals_and_blocks,
    live_watch_reconnects_and_every_device_gets_it,
    limits_and_drop_reports_reach_the_user,
    large_messages_come_in_several_deliveries,
    foreign_signed_messages_are_read_and_unreadable_ones_kept,
    name_at_host_works_while_its_node_is_down,
);

/// How long a message may take to cross two nodes before a test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

async fn two_nodes(backend: Backend) -> Option<(TestApp, TestApp)> {
    let a = TestApp::spawn(backend).await?;
    let b = TestApp::spawn(backend).await?;
    Some((a, b))
}

/// `name@host:port` of an account on `app`.
fn address(app: &TestApp, name: &str) -> String {
    format!("{name}@{}", app.url.trim_start_matches("http://"))
}

async fn did_of(wallet: &Path) -> String {
    json(&sichat(wallet, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned()
}

/// `sichat message send`, which must succeed; returns the message id.
pub(crate) async fn send(wallet: &Path, to: &str, text: &str, extra: &[&str]) -> String {
    let mut args = vec!["--json", "message", "send", to, text];
    args.extend_from_slice(extra);
    let out = sichat(wallet, &args).await;
    assert!(out.status.success(), "send to {to}: {}", stderr(&out));
    let sent = json(&out);
    // A new forward is answered from its insert: queued, whatever the worker does next.
    assert_eq!(sent["state"], "queued", "{sent}");
    sent["id"].as_str().expect("id").to_owned()
}

/// Poll `sichat message status ID` until the message leaves `queued`; returns the status.
pub(crate) async fn settled(wallet: &Path, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let out = sichat(wallet, &["--json", "message", "status", id]).await;
        assert!(out.status.success(), "status {id}: {}", stderr(&out));
        let s = json(&out);
        if s["state"] != "queued" {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "still queued after {PATIENCE:?}: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(crate) async fn delivered(wallet: &Path, id: &str) {
    let s = settled(wallet, id).await;
    assert_eq!(s["state"], "delivered", "{s}");
}

pub(crate) async fn inbox(wallet: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "message", "inbox"];
    args.extend_from_slice(extra);
    let out = sichat(wallet, &args).await;
    assert!(out.status.success(), "inbox: {}", stderr(&out));
    json(&out)
}

pub(crate) fn texts(listing: &Value) -> Vec<String> {
    listing["messages"].as_array().into_iter().flatten().filter_map(|m| m["text"].as_str().map(str::to_owned)).collect()
}

fn message_with<'a>(listing: &'a Value, text: &str) -> &'a Value {
    listing["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["text"] == text)
        .unwrap_or_else(|| panic!("no message {text:?} in {listing}"))
}

async fn policy(wallet: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json", "policy", "set"];
    all.extend_from_slice(args);
    let out = sichat(wallet, &all).await;
    assert!(out.status.success(), "policy set {args:?}: {}", stderr(&out));
    json(&out)
}

async fn offline_recipient_friends_and_strangers(backend: Backend) {
    let Some((a, b)) = two_nodes(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let code = b.invite(&bob, 1).await;
    let carol = b.join("carol", &code).await;
    let (alice_did, bob_did, carol_did) = (did_of(&alice).await, did_of(&bob).await, did_of(&carol).await);
    let shown =
        policy(&alice, &["--members", "on", "--requests", "on", "--accept-credential", "FriendCredential"]).await;
    assert_eq!(shown["accept_credentials"], serde_json::json!(["FriendCredential"]));

    // Alice befriends Bob: a FriendCredential she offers him over OpenID4VCI, signed by her
    // node with her issuing key and recorded in her issuance log. Bob keeps it in his wallet.
    let out = sichat(
        &alice,
        &["--json", "credential", "offer", "--type", "FriendCredential", "--to", &bob_did, "--claim", "name=Bob"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let offer = json(&out)["offer_uri"].as_str().expect("offer").to_owned();
    let out = sichat(&bob, &["--json", "credential", "receive", &offer]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let friend_credential = json(&out)["id"].as_str().expect("id").to_owned();

    // A typo in name@host is caught by WebFinger before anything is sent.
    let typo = address(&a, "alcie");
    let out = sichat(&bob, &["message", "send", &typo, "hi"]).await;
    assert!(stderr(&out).contains(&format!("no account {typo}")), "{}", stderr(&out));
    let out = sichat(&bob, &["message", "send", "nobody", "hi"]).await;
    assert!(stderr(&out).contains("no contact named nobody"), "{}", stderr(&out));

    // Bob names Alice by her address and writes while none of her devices is connected.
    let out = sichat(&bob, &["--json", "contacts", "add", "alice", &address(&a, "alice")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["did"], alice_did.as_str());
    let from_bob = send(&bob, "alice", "Hello Alice, it's Bob", &[]).await;
    delivered(&bob, &from_bob).await;
    // Carol, a stranger to Alice, writes to her DID.
    let from_carol = send(&carol, &alice_did, "Hi, I'm Carol. We met at the conference.", &[]).await;
    delivered(&carol, &from_carol).await;
    // Status is only for the sender.
    let out = sichat(&carol, &["message", "status", &from_bob]).await;
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));

    // Alice's node keeps what it cannot read: who sent it, but not a word of the text.
    assert!(node_rows_contain(&a, backend, &bob_did).await, "the mailbox holds Bob's message for Alice");
    assert!(!node_rows_contain(&a, backend, "Hello Alice").await, "the node must not hold the plaintext");

    // Alice comes online: the friend is in her inbox, the stranger in requests.
    let listing = inbox(&alice, &[]).await;
    assert_eq!(listing["fetched"], 2, "{listing}");
    assert_eq!(texts(&listing), vec!["Hello Alice, it's Bob"], "{listing}");
    let m = message_with(&listing, "Hello Alice, it's Bob");
    assert_eq!((m["id"].as_str(), m["from"].as_str()), (Some(from_bob.as_str()), Some(bob_did.as_str())));
    assert_eq!((m["folder"].as_str(), m["sender_mismatch"].as_bool()), (Some("inbox"), Some(false)));
    let requests = inbox(&alice, &["--requests"]).await;
    assert_eq!(requests["fetched"], 0, "already fetched and kept: {requests}");
    assert_eq!(texts(&requests), vec!["Hi, I'm Carol. We met at the conference."], "{requests}");
    assert_eq!(message_with(&requests, "Hi, I'm Carol. We met at the conference.")["from"], carol_did.as_str());

    // `read` shows the text (by a prefix of the id too) and marks it read.
    let out = sichat(&alice, &["message", "read", &from_bob]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Hello Alice, it's Bob") && stdout(&out).contains(&bob_did), "{}", stdout(&out));
    let out = sichat(&alice, &["--json", "message", "read", &from_carol[..18]]).await;
    assert_eq!(json(&out)["text"], "Hi, I'm Carol. We met at the conference.", "{}", stderr(&out));
    let out = sichat(&alice, &["message", "read", "ffffffff-not-there"]).await;
    assert!(stderr(&out).contains("no message"), "{}", stderr(&out));

    // Acknowledged once kept: nothing waits on the node any more, and the wallet keeps both.
    let listing = inbox(&alice, &[]).await;
    assert_eq!(listing["fetched"], 0, "{listing}");
    assert_eq!(message_with(&listing, "Hello Alice, it's Bob")["read"], true);

    // Alice names Bob; her inbox says who he is. Replies go back across the nodes.
    let out = sichat(&alice, &["contacts", "add", "bob", &address(&b, "bob")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = inbox(&alice, &[]).await;
    assert_eq!(message_with(&listing, "Hello Alice, it's Bob")["from_contact"], "bob");
    let reply = send(&alice, "bob", "Hi Bob!", &[]).await;
    delivered(&alice, &reply).await;
    // Bob's node sorts: Alice is a stranger there, so her reply lands in his requests.
    let bobs = inbox(&bob, &["--requests"]).await;
    assert_eq!(texts(&bobs), vec!["Hi Bob!"], "{bobs}");
    assert_eq!(message_with(&bobs, "Hi Bob!")["from_contact"], "alice");

    // A presentation rides along. Take the friendship out of Alice's issuance log (as if
    // she had issued it elsewhere): now only the FriendCredential Bob presents, bound to
    // Alice and to this message, gets him into her inbox; without it he is a stranger.
    let hidden = sqlx::query("UPDATE issuer_credentials SET subject = $1 WHERE subject = $2")
        .bind("did:example:issued-elsewhere")
        .bind(&bob_did)
        .execute(a.node.db.pool())
        .await
        .expect("hide the issuance record");
    assert_eq!(hidden.rows_affected(), 1);
    let out = sichat(&bob, &["message", "send", "alice", "see?", "--present", "no-such-credential"]).await;
    assert!(stderr(&out).contains("holds no credential no-such-credential"), "{}", stderr(&out));
    let plain = send(&bob, "alice", "No proof attached", &[]).await;
    delivered(&bob, &plain).await;
    let with_vp = send(&bob, "alice", "With my FriendCredential attached", &["--present", &friend_credential]).await;
    delivered(&bob, &with_vp).await;
    let listing = inbox(&alice, &[]).await;
    let m = message_with(&listing, "With my FriendCredential attached");
    assert_eq!((m["presentation"].as_bool(), m["folder"].as_str()), (Some(true), Some("inbox")), "{m}");
    let requests = inbox(&alice, &["--requests"]).await;
    let m = message_with(&requests, "No proof attached");
    assert_eq!((m["presentation"].as_bool(), m["from"].as_str()), (Some(false), Some(bob_did.as_str())), "{m}");

    a.stop().await;
    b.stop().await;
}

/// Whether any `msg_` table row of `app`'s database contains `needle` (as text).
async fn node_rows_contain(app: &TestApp, backend: Backend, needle: &str) -> bool {
    use sqlx::Row;
    let pool = app.node.db.pool();
    let tables = if backend == Backend::Sqlite {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'msg_%'"
    } else {
        "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name LIKE 'msg_%'"
    };
    let names: Vec<String> = sqlx::query(tables)
        .fetch_all(pool)
        .await
        .expect("tables")
        .iter()
        .map(|r| r.try_get::<String, _>("name").expect("name"))
        .collect();
    assert!(!names.is_empty(), "the node keeps messages in msg_ tables");
    for name in names {
        let rows = sqlx::query(&format!("SELECT * FROM {name}")).fetch_all(pool).await.expect("rows");
        for row in rows {
            for i in 0..row.len() {
                let text = row
                    .try_get::<String, _>(i)
                    .ok()
                    .or_else(|| row.try_get::<Vec<u8>, _>(i).ok().map(|b| String::from_utf8_lossy(&b).into_owned()));
                if text.is_some_and(|t| t.contains(needle)) {
                    return true;
                }
            }
        }
    }
    false
}

async fn policy_refusals_and_blocks(backend: Backend) {
    let Some((a, b)) = two_nodes(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let eve = b.join("eve", &b.owner_invite).await;
    let code = b.invite(&eve, 1).await;
    let mallory = b.join("mallory", &code).await;
    let (alice_did, eve_did) = (did_of(&alice).await, did_of(&eve).await);

    let shown = json(&sichat(&alice, &["--json", "policy", "show"]).await);
    assert!(shown["requests"].is_boolean() && shown["accept_members"].is_boolean(), "{shown}");
    let out = sichat(&alice, &["policy", "set"]).await;
    assert!(stderr(&out).contains("nothing to change"), "{}", stderr(&out));
    let out = sichat(&alice, &["policy", "set", "--block", "not a host"]).await;
    assert!(stderr(&out).contains("give a DID"), "{}", stderr(&out));

    // No requests folder: a stranger is not accepted, and told no more than that.
    let p = policy(&alice, &["--requests", "off"]).await;
    assert_eq!(p["requests"], false);
    let id = send(&eve, &alice_did, "let me in", &[]).await;
    let s = settled(&eve, &id).await;
    assert_eq!(s["state"], "not_accepted", "{s}");
    let human = sichat(&eve, &["message", "status", &id]).await;
    assert!(stdout(&human).contains("not_accepted"), "{}", stdout(&human));

    // Requests on again, Eve blocked by DID: Eve is refused, Mallory (same node) is not.
    let p = policy(&alice, &["--requests", "on", "--block", &eve_did]).await;
    assert_eq!(p["blocked"], serde_json::json!([eve_did]));
    let id = send(&eve, &alice_did, "blocked?", &[]).await;
    assert_eq!(settled(&eve, &id).await["state"], "not_accepted");
    let id = send(&mallory, &alice_did, "from mallory, before the host block", &[]).await;
    delivered(&mallory, &id).await;

    // Blocking Eve's whole node refuses Mallory too; lifting both blocks lets them in again.
    let host = b.url.trim_start_matches("http://").to_owned();
    let p = policy(&alice, &["--block", &host]).await;
    assert_eq!(p["blocked"].as_array().map(Vec::len), Some(2), "{p}");
    let id = send(&mallory, &alice_did, "from mallory, after the host block", &[]).await;
    assert_eq!(settled(&mallory, &id).await["state"], "not_accepted");
    let p = policy(&alice, &["--unblock", &host, "--unblock", &address(&b, "eve")]).await;
    assert_eq!(p["blocked"], serde_json::json!([]), "{p}");
    let id = send(&eve, &alice_did, "unblocked", &[]).await;
    delivered(&eve, &id).await;

    // Only what was accepted reached Alice, into requests.
    let requests = inbox(&alice, &["--requests"]).await;
    let mut got = texts(&requests);
    got.sort();
    assert_eq!(got, vec!["from mallory, before the host block", "unblocked"], "{requests}");
    assert_eq!(texts(&inbox(&alice, &[]).await), Vec::<String>::new());
    a.stop().await;
    b.stop().await;
}

/// A TCP proxy in front of a node, whose connections the test can cut.
struct Proxy {
    url: String,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://localhost:{}", listener.local_addr().expect("addr").port());
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let kept = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                kept.lock().expect("lock").push(task);
            }
        });
        Self { url, connections, _accept: accept }
    }

    /// Cut every open connection (the node stays up).
    fn cut(&self) {
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

async fn live_watch_reconnects_and_every_device_gets_it(backend: Backend) {
    let Some((a, b)) = two_nodes(backend).await else { return };
    // Alice's laptop reaches her node through a proxy the test can cut.
    let proxy = Proxy::start(&a.url).await;
    let laptop: PathBuf = a.wallet("alice");
    let out = sichat(&laptop, &["init", "--server", &proxy.url, "--invite", &a.owner_invite, "--name", "alice"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let phone = a.wallet("alice-phone");
    let out = sichat(&laptop, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = b.join("bob", &b.owner_invite).await;
    let alice_did = did_of(&laptop).await;
    let out = sichat(
        &laptop,
        &["credential", "issue", "--type", "FriendCredential", "--to", &did_of(&bob).await, "--claim", "name=Bob"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    policy(&laptop, &["--accept-credential", "FriendCredential"]).await;

    // The laptop watches; Bob's message shows up as it arrives.
    let mut watch = Watch::start(&laptop);
    watch.expect("stderr", "Watching for messages").await;
    let first = send(&bob, &alice_did, "live one", &[]).await;
    let line = watch.expect("stdout", "live one").await;
    assert!(line.contains(&did_of(&bob).await), "{line}");
    watch.expect("stdout", &first).await;

    // The connection drops: watch says so, reconnects by itself, and goes on receiving.
    proxy.cut();
    watch.expect("stderr", "reconnecting").await;
    watch.expect("stderr", "Reconnected").await;
    send(&bob, &alice_did, "after the cut", &[]).await;
    watch.expect("stdout", "after the cut").await;

    // Ctrl-C ends it cleanly.
    let status = watch.interrupt().await;
    assert!(status.success(), "{status:?}");

    // What watch showed is kept in the laptop's wallet and was acknowledged: nothing new to fetch.
    let listing = inbox(&laptop, &[]).await;
    assert_eq!(listing["fetched"], 0, "{listing}");
    let mut got = texts(&listing);
    got.sort();
    assert_eq!(got, vec!["after the cut", "live one"]);

    // The phone was off all along; it gets both too, encrypted to its own key.
    let on_phone = inbox(&phone, &[]).await;
    assert_eq!(on_phone["fetched"], 2, "{on_phone}");
    let mut got = texts(&on_phone);
    got.sort();
    assert_eq!(got, vec!["after the cut", "live one"]);
    assert_eq!(message_with(&on_phone, "live one")["id"], first.as_str());
    assert_eq!(inbox(&phone, &[]).await["fetched"], 0, "acknowledged by the phone too");
    a.stop().await;
    b.stop().await;
}

/// A full mailbox drops the oldest messages; the wallet warns about it once. Oversized,
/// empty and non-text messages are refused with what to do.
async fn limits_and_drop_reports_reach_the_user(backend: Backend) {
    let Some(a) = TestApp::spawn_with(backend, |c| {
        c.msg_max_bytes = 4096;
        c.msg_quota_bytes = 4096;
    })
    .await
    else {
        return;
    };
    let alice = a.join("alice", &a.owner_invite).await;
    let code = a.invite(&alice, 1).await;
    let carol = a.join("carol", &code).await;
    let alice_did = did_of(&alice).await;

    // Carol, on the same node (a member: inbox), writes five times; one comes from a file.
    let file = a.dir.path().join("note.txt");
    std::fs::write(&file, "number 4 (from a file)").expect("write");
    for i in 0..4 {
        let id = send(&carol, &alice_did, &format!("number {i}"), &[]).await;
        delivered(&carol, &id).await;
    }
    let out = sichat(&carol, &["--json", "message", "send", &alice_did, "--file", file.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    delivered(&carol, json(&out)["id"].as_str().expect("id")).await;

    // Alice's mailbox holds 4 KiB: the oldest went, and her wallet says so.
    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("warning: your node dropped") && warning.contains("mailbox on the node was full"),
        "{warning}"
    );
    let listing = json(&out);
    assert_eq!(listing["dropped"][0]["reason"], "quota", "{listing}");
    let got = texts(&listing);
    assert!(got.contains(&"number 4 (from a file)".to_owned()), "the newest is kept: {got:?}");
    assert!(!got.contains(&"number 0".to_owned()), "the oldest went first: {got:?}");
    let dropped: i64 = listing["dropped"].as_array().expect("drops").iter().filter_map(|d| d["count"].as_i64()).sum();
    assert_eq!(dropped + got.len() as i64, 5, "{listing}");
    // Told once: the report was acknowledged with the messages.
    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert!(!stderr(&out).contains("dropped"), "{}", stderr(&out));
    assert_eq!(json(&out)["dropped"], serde_json::json!([]));

    // Too large for Carol's node: refused before it is queued, with what to do.
    let big = "x".repeat(5000);
    let out = sichat(&carol, &["message", "send", &alice_did, &big]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("message_too_large") && stderr(&out).contains("Send a shorter text"),
        "{}",
        stderr(&out)
    );
    let out = sichat(&carol, &["message", "send", &alice_did, "   "]).await;
    assert!(stderr(&out).contains("the message is empty"), "{}", stderr(&out));
    std::fs::write(&file, [0xff, 0xfe, 0x00]).expect("write");
    let out = sichat(&carol, &["message", "send", &alice_did, "--file", file.to_str().expect("path")]).await;
    assert!(stderr(&out).contains("is not UTF-8 text"), "{}", stderr(&out));
    let out = sichat(&carol, &["message", "send", &alice_did, "both", "--file", file.to_str().expect("path")]).await;
    assert!(!out.status.success(), "text and --file together are refused");
    a.stop().await;
}

/// Where the node allows large messages, a queue of them reaches the wallet in deliveries
/// small enough for its WebSocket frames, asked for (`inbox`) or pushed live (`watch`,
/// where the node also holds back what would put too many bytes in flight).
async fn large_messages_come_in_several_deliveries(backend: Backend) {
    let Some(a) = TestApp::spawn_with(backend, |c| {
        c.msg_max_bytes = 1 << 20;
        c.msg_quota_bytes = 256 << 20;
    })
    .await
    else {
        return;
    };
    let alice = a.join("alice", &a.owner_invite).await;
    let phone = a.wallet("alice-phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let code = a.invite(&alice, 1).await;
    let carol = a.join("carol", &code).await;
    let alice_did = did_of(&alice).await;

    // 30 messages of ~0.7 MB packed, ~21 MB together: more than one 16 MiB frame, and more
    // than a live session may have in flight.
    const SENT: usize = 30;
    let mut ids = Vec::new();
    for i in 0..SENT {
        let file = a.dir.path().join(format!("big-{i}.txt"));
        std::fs::write(&file, format!("{i:02} {}", "z".repeat(400_000))).expect("write");
        let out =
            sichat(&carol, &["--json", "message", "send", &alice_did, "--file", file.to_str().expect("path")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        ids.push(json(&out)["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        delivered(&carol, id).await;
    }
    let want: Vec<String> = (0..SENT).map(|i| format!("{i:02}")).collect();

    // Live: the phone connects to a full queue and gets every message.
    let mut watch = Watch::start(&phone);
    let mut got = Vec::new();
    for _ in 0..SENT {
        let line = watch.expect("stdout", " zzzzzzzzzz").await;
        let at = line.find(" zzzz").expect("text");
        got.push(line[at - 2..at].to_owned());
    }
    assert!(watch.interrupt().await.success());
    got.sort();
    assert_eq!(got, want);
    assert_eq!(inbox(&phone, &[]).await["fetched"], 0, "watch acknowledged them all");

    // Asked for: the laptop fetches them all.
    let listing = inbox(&alice, &["--limit", "100"]).await;
    assert_eq!(listing["fetched"], SENT, "{}", listing["fetched"]);
    let mut got: Vec<String> = texts(&listing).iter().map(|t| t[..2].to_owned()).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(inbox(&alice, &[]).await["fetched"], 0, "all acknowledged");
    a.stop().await;
}

/// A signed message as another DIDComm implementation writes it: the signer's `kid` in both
/// JWS headers (`protected_kid` in the protected one), authcrypted to every key of `to`.
async fn foreign_forward(from: &crate::mailbox::Device, to: &Did, text: &str, protected_kid: &str) -> (String, Value) {
    use sichat_core::ids::b64url;
    let kid = from.did.url(&format!("device-{}", from.device_id()));
    let msg = sichat_messaging::Message::new("https://sichat.dev/message/1.0/text", serde_json::json!({"text": text}))
        .with_from(from.did.clone())
        .with_to(vec![to.clone()]);
    let protected = b64url(
        serde_json::json!({"typ": "application/didcomm-signed+json", "alg": "EdDSA", "kid": protected_kid})
            .to_string()
            .as_bytes(),
    );
    let payload = b64url(&serde_json::to_vec(&msg).expect("message"));
    let signature = b64url(&from.sign_key().sign(format!("{protected}.{payload}").as_bytes()));
    let jws = serde_json::json!({"payload": payload, "signatures": [
        {"protected": protected, "signature": signature, "header": {"kid": kid}}]});
    let keys = crate::mailbox::resolver().resolve(to.as_str()).await.expect("recipient resolves");
    let envelope = sichat_messaging::jwe::encrypt(
        jws.to_string().as_bytes(),
        Some(&from.agreement()),
        &sichat_messaging::RecipientKey::all_of(&keys),
    )
    .expect("encrypt");
    let envelope: Value = serde_json::from_str(&envelope).expect("json");
    let id = sichat_core::ids::new_id();
    let forward = serde_json::json!({
        "id": id, "type": "https://didcomm.org/routing/2.0/forward", "body": {"next": to},
        "attachments": [{"id": "envelope", "data": {"json": envelope}}],
    });
    (forward.to_string(), envelope)
}

/// Signed the way other DIDComm implementations sign (the `kid` in both JWS headers), a
/// message is read. One naming two different signers cannot be read: the wallet keeps it
/// as it came, lists it as unreadable with the reason, and only then acknowledges it.
async fn foreign_signed_messages_are_read_and_unreadable_ones_kept(backend: Backend) {
    let Some((a, b)) = two_nodes(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let alice = crate::mailbox::Device::of(&a, &alice_w).await;
    let bob = crate::mailbox::Device::of(&b, &bob_w).await;
    let kid = bob.did.url(&format!("device-{}", bob.device_id()));

    let (same, _) = foreign_forward(&bob, &alice.did, "signed the other way", &kid).await;
    let other_kid = alice.did.url(&format!("device-{}", alice.device_id()));
    let (conflicting, envelope) = foreign_forward(&bob, &alice.did, "two signers", &other_kid).await;
    let mut ids = Vec::new();
    for body in [same, conflicting] {
        let (status, answer) = bob.post(body).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().expect("id").to_owned();
        assert_eq!(bob.settled(&id).await["state"], "delivered");
        ids.push(id);
    }

    let out = sichat(&alice_w, &["--json", "message", "inbox", "--requests"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = json(&out);
    assert_eq!(texts(&listing), vec!["signed the other way"], "{listing}");
    let unreadable = listing["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == ids[1].as_str())
        .unwrap_or_else(|| panic!("the unreadable message is listed: {listing}"));
    assert!(unreadable["unreadable"].as_str().is_some_and(|w| w.contains("differ")), "{unreadable}");
    assert!(stderr(&out).contains("cannot be read"), "{}", stderr(&out));
    let out = sichat(&alice_w, &["--json", "message", "read", &ids[1]]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["raw"], envelope, "kept exactly as it came");
    let out = sichat(&alice_w, &["message", "inbox", "--requests"]).await;
    assert!(stdout(&out).contains("unreadable, kept as received"), "{}", stdout(&out));

    // Both are in the wallet now, so both were acknowledged: the node holds neither.
    let mut ws = alice.connect().await;
    crate::mailbox::say(&mut ws, "status-request", serde_json::json!({})).await;
    assert_eq!(crate::mailbox::next(&mut ws, "status").await["body"]["message_count"], 0);
    a.stop().await;
    b.stop().await;
}

/// `message send name@host` while that node is down: the address this wallet already wrote
/// to maps to the same DID (and its cached keys), as the DID form does. A new address is
/// still checked, and says why it cannot be.
async fn name_at_host_works_while_its_node_is_down(backend: Backend) {
    let Some((a, b)) = two_nodes(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let to_alice = address(&a, "alice");
    let to_dave = address(&a, "dave");
    let id = send(&bob, &to_alice, "while you are up", &[]).await;
    delivered(&bob, &id).await;
    a.stop().await;

    let out = sichat(&bob, &["--json", "message", "send", &to_alice, "while you are down"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["state"], "queued");
    assert!(stderr(&out).contains("already knows"), "{}", stderr(&out));
    let out = sichat(&bob, &["message", "send", &to_dave, "never written before"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("WebFinger"), "{}", stderr(&out));
    let _ = alice;
    b.stop().await;
}

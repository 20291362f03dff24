//! An account's mailbox moving between two nodes, each with its own database, on both
//! backends: what node A exports, node B imports with each device's queue as it was, a
//! forward A had accepted is a redelivery on B, A frees the mailbox once the move is done,
//! and a malformed part is refused without writing anything.
//!
//! PostgreSQL tests use `SICHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a database per node and drop it
//! afterwards; they are skipped when it is unreachable, except under `CI=true`.

use serde_json::{json, Value};
use sichat_accounts::hooks::{AccountHooks, Arrival, ImportError};
use sichat_core::db::Db;
use sichat_core::ids::{b64url, new_id, now_ms};
use sichat_messaging::account_hooks::MessagingAccountHooks;
use sichat_messaging::live::Hub;
use sichat_messaging::mailbox::{self, Incoming, Inserted, NewMessage, Quota};
use sichat_messaging::moves::{self, Limits, MessagingPage, MessagingPart};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Each test once per backend.
macro_rules! storage_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

storage_tests!(waiting_messages_move_with_their_queues, a_full_mailbox_follows_in_pages, bad_parts_change_nothing);

const USER: &str = "user-1";
const PHONE: &str = "device-phone";
const LAPTOP: &str = "device-laptop";
const SENDER: &str = "did:web:other.example:users:carol";

fn postgres_admin_url() -> String {
    std::env::var("SICHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A migrated database of its own.
struct TestDb {
    db: Db,
    dir: Option<std::path::PathBuf>,
    pg_name: Option<String>,
}

impl TestDb {
    /// `None`: PostgreSQL is unreachable outside CI, and the test is skipped.
    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("sichat-messaging-moves-{}", new_id()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let db = Db::open(&Db::sqlite_url(&dir.join("node.db"))).await.expect("sqlite");
                Some(Self { db, dir: Some(dir), pg_name: None })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
                        panic!("PostgreSQL is unreachable at {admin} and CI=true: {e}")
                    }
                    Err(e) => {
                        eprintln!("SKIPPING a PostgreSQL test: cannot reach {admin}: {e}");
                        return None;
                    }
                };
                let name = format!("sichat_test_{}", new_id().replace('-', ""));
                conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&format!("/{name}"));
                let db = Db::open(url.as_str()).await.expect("postgres");
                Some(Self { db, dir: None, pg_name: Some(name) })
            }
        }
    }
}

/// Removed even when the test fails: the SQLite directory, or the PostgreSQL database
/// (from a thread of its own, as drop runs inside the test's runtime).
impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&postgres_admin_url()).await {
                        let _ = c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                    }
                });
            })
            .join();
        }
    }
}

/// A node on its own database with messaging's hooks, and the account `USER` with a
/// phone and a laptop (on B, as the accounts service stores them before the hooks run).
struct Node {
    test_db: TestDb,
    hooks: MessagingAccountHooks,
}

impl Node {
    async fn start(backend: Backend) -> Option<Self> {
        let test_db = TestDb::create(backend).await?;
        let node = Self { test_db, hooks: MessagingAccountHooks::new(Arc::new(Hub::default())) };
        let pool = node.db().pool();
        sqlx::query(
            "INSERT INTO acct_users (id, name, root_key, quota, invite_id, status, created_at) \
             VALUES ($1, 'alice', 'z-root', 0, 'invite', 'active', $2)",
        )
        .bind(USER)
        .bind(now_ms())
        .execute(pool)
        .await
        .expect("user");
        for device in [PHONE, LAPTOP] {
            sqlx::query(
                "INSERT INTO acct_devices (id, user_id, name, sign_key, agree_key, certificate, cert_expires_at, \
                 created_at) VALUES ($1, $2, $1, $3, 'z-agree', 'cert', 0, 0)",
            )
            .bind(device)
            .bind(USER)
            .bind(format!("z-sign-{device}"))
            .execute(pool)
            .await
            .expect("device");
        }
        Some(node)
    }

    fn db(&self) -> &Db {
        &self.test_db.db
    }

    /// A forward accepted for `USER`, kept for both devices. Returns its body hash.
    async fn receive(&self, id: &str, folder: &'static str, envelope_bytes: usize) -> (Inserted, String) {
        let envelope = json!({"protected": "e30", "ciphertext": "x".repeat(envelope_bytes), "id": id}).to_string();
        let body_hash = b64url(&sichat_core::ids::random_bytes::<32>());
        let inserted = self.receive_with(id, folder, envelope, &body_hash).await;
        (inserted, body_hash)
    }

    async fn receive_with(&self, id: &str, folder: &'static str, envelope: String, body_hash: &str) -> Inserted {
        let message = NewMessage {
            user_id: USER.into(),
            id: id.into(),
            sender: SENDER.into(),
            folder,
            envelope,
            body_hash: body_hash.into(),
            presentation: folder == "inbox",
            received_at: now_ms(),
        };
        let item = Arc::new(Incoming { message, devices: vec![PHONE.into(), LAPTOP.into()], notify: None });
        let mut tx = self.db().pool().begin().await.expect("begin");
        let quota = Quota { total: 1 << 30, requests: 1 << 30 };
        let out = mailbox::insert_all(&mut tx, vec![item], quota).await.expect("insert");
        tx.commit().await.expect("commit");
        out[0]
    }

    async fn acknowledge(&self, device: &str, ids: &[&str]) {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let mut tx = self.db().pool().begin().await.expect("begin");
        mailbox::acknowledge(&mut tx, USER, device, &ids, None).await.expect("acknowledge");
        tx.commit().await.expect("commit");
    }

    async fn export(&self, limits: Limits) -> Value {
        self.export_with_more(limits).await.0
    }

    /// The part, and the cursor and count of what follows in pages.
    async fn export_with_more(&self, limits: Limits) -> (Value, Option<(String, u64)>) {
        let mut tx = self.db().pool().begin().await.expect("begin");
        let exported = moves::export(&mut tx, USER, limits).await.expect("export");
        tx.commit().await.expect("commit");
        match exported {
            Some((part, more)) => (serde_json::to_value(part).expect("part"), more.map(|m| (m.cursor, m.items))),
            None => (Value::Null, None),
        }
    }

    async fn export_page(&self, cursor: &str) -> (Value, Option<String>) {
        let mut c = self.db().pool().acquire().await.expect("connection");
        let page = self.hooks.export_page(&mut c, USER, cursor).await.expect("page");
        (page.page, page.next)
    }

    async fn import_page(&self, page: Value) -> Result<(), ImportError> {
        let mut tx = self.db().pool().begin().await.expect("begin");
        let outcome = self.hooks.import_page(&mut tx, arrival(), page).await;
        tx.commit().await.expect("commit");
        outcome
    }

    /// Import `part` in a transaction that commits whatever the outcome, so a refused part
    /// that had written anything would show.
    async fn import(&self, part: Value) -> Result<(), ImportError> {
        let mut tx = self.db().pool().begin().await.expect("begin");
        let outcome = self.hooks.import_account(&mut tx, arrival(), part).await;
        tx.commit().await.expect("commit");
        outcome
    }

    async fn moved(&self) {
        let mut tx = self.db().pool().begin().await.expect("begin");
        self.hooks.account_moved(&mut tx, USER).await.expect("account_moved");
        tx.commit().await.expect("commit");
    }

    /// The ids `device` would be handed, oldest first.
    async fn queue_ids(&self, device: &str) -> Vec<String> {
        let mut c = self.db().pool().acquire().await.expect("connection");
        mailbox::pending(&mut c, device, &[], 1000).await.expect("pending").into_iter().map(|m| m.id).collect()
    }

    /// What `device`'s queue status says: messages, bytes, requests, and the newest drop
    /// report it has not seen.
    async fn queue(&self, device: &str) -> (i64, i64, i64, Option<i64>) {
        let mut c = self.db().pool().acquire().await.expect("connection");
        let q = mailbox::queue(&mut c, USER, device, 0).await.expect("queue");
        (q.messages, q.bytes, q.requests, q.unseen_drop)
    }

    /// Every messaging row of the account, every column but `seq`.
    async fn rows(&self) -> Rows {
        let pool = self.db().pool();
        Rows {
            mailbox: sqlx::query_as(
                "SELECT id, user_id, sender, folder, envelope, size, presentation, received_at FROM msg_mailbox \
                 ORDER BY seq",
            )
            .fetch_all(pool)
            .await
            .expect("mailbox"),
            pending: sqlx::query_as(
                "SELECT p.device_id, m.id, p.size, p.request, p.received_at FROM msg_pending p \
                 JOIN msg_mailbox m ON m.seq = p.seq ORDER BY m.id, p.device_id",
            )
            .fetch_all(pool)
            .await
            .expect("pending"),
            received: sqlx::query_as(
                "SELECT user_id, id, body_hash, sender, folder, received_at FROM msg_received ORDER BY id",
            )
            .fetch_all(pool)
            .await
            .expect("received"),
            policies: sqlx::query_as("SELECT user_id, policy, updated_at FROM msg_policies ORDER BY user_id")
                .fetch_all(pool)
                .await
                .expect("policies"),
            usage: sqlx::query_as("SELECT user_id, bytes, messages FROM msg_usage ORDER BY user_id")
                .fetch_all(pool)
                .await
                .expect("usage"),
            totals: sqlx::query_as(
                "SELECT device_id, messages, bytes, requests FROM msg_queue_totals WHERE messages <> 0 ORDER BY device_id",
            )
            .fetch_all(pool)
            .await
            .expect("totals"),
            drops: sqlx::query_as("SELECT user_id, reason, count, bytes FROM msg_drops ORDER BY seq")
                .fetch_all(pool)
                .await
                .expect("drops"),
        }
    }

    async fn stop(self) {
        self.test_db.db.close().await;
    }
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct MailboxRow {
    id: String,
    user_id: String,
    sender: String,
    folder: String,
    envelope: String,
    size: i64,
    presentation: i64,
    received_at: i64,
}

#[derive(Debug, PartialEq)]
struct Rows {
    mailbox: Vec<MailboxRow>,
    pending: Vec<(String, String, i64, i64, i64)>,
    received: Vec<(String, String, String, String, String, i64)>,
    policies: Vec<(String, String, i64)>,
    usage: Vec<(String, i64, i64)>,
    totals: Vec<(String, i64, i64, i64)>,
    drops: Vec<(String, String, i64, i64)>,
}

async fn set_policy(node: &Node) {
    let policy = json!({"accept_members": false, "accept_credentials": ["FriendCredential"], "requests": true,
        "blocked": ["evil.example"]});
    sqlx::query("INSERT INTO msg_policies (user_id, policy, updated_at) VALUES ($1, $2, 1234)")
        .bind(USER)
        .bind(policy.to_string())
        .execute(node.db().pool())
        .await
        .expect("policy");
}

fn arrival() -> Arrival<'static> {
    Arrival {
        user_id: USER,
        user_name: "alice",
        from_origin: "https://a.example",
        old_web_did: "did:web:a.example:users:alice",
        new_did: "did:webvh:QmScid:b.example:users:alice",
    }
}

async fn waiting_messages_move_with_their_queues(backend: Backend) {
    let Some(a) = Node::start(backend).await else { return };
    let Some(b) = Node::start(backend).await else { return };
    set_policy(&a).await;
    // m1: fetched by both devices (gone from the mailbox, its id remembered); m2: fetched by
    // the phone only; m3 (a request) and m4: fetched by neither.
    let (_, hash1) = a.receive("m1", "inbox", 100).await;
    let (_, hash2) = a.receive("m2", "inbox", 200).await;
    a.receive("m3", "requests", 300).await;
    a.receive("m4", "inbox", 400).await;
    a.acknowledge(PHONE, &["m1", "m2"]).await;
    a.acknowledge(LAPTOP, &["m1"]).await;
    assert_eq!(a.queue_ids(PHONE).await, ["m3", "m4"]);
    assert_eq!(a.queue_ids(LAPTOP).await, ["m2", "m3", "m4"]);

    let part = a.export(Limits::default()).await;
    let typed: MessagingPart = serde_json::from_value(part.clone()).expect("typed part");
    assert_eq!(typed.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m2", "m3", "m4"]);
    assert_eq!(typed.received.len(), 4, "every id A accepted travels");
    assert!(a.export_with_more(Limits::default()).await.1.is_none(), "nothing follows");

    b.import(part).await.expect("import");
    for device in [PHONE, LAPTOP] {
        assert_eq!(b.queue_ids(device).await, a.queue_ids(device).await, "{device}'s queue");
        let (qa, qb) = (a.queue(device).await, b.queue(device).await);
        assert_eq!(qb, qa, "{device}'s queue status");
    }
    assert_eq!(b.queue(LAPTOP).await.2, 1, "the request counts as one");
    let (ra, rb) = (a.rows().await, b.rows().await);
    assert_eq!(rb.mailbox, ra.mailbox);
    assert_eq!(rb.pending, ra.pending);
    assert_eq!(rb.received, ra.received);
    assert_eq!(rb.usage, ra.usage);
    assert_eq!(rb.totals, ra.totals);
    assert_eq!(rb.policies.len(), 1);
    let policy: Value = serde_json::from_str(&rb.policies[0].1).expect("policy JSON");
    assert_eq!(policy["accept_members"], false);
    assert_eq!(policy["blocked"], json!(["evil.example"]));
    assert_eq!(rb.policies[0].2, 1234);

    // The sending node redelivers: B knows m1 (fetched before the move) and m2, and refuses
    // m2's id with other content; nothing changes.
    let envelope = json!({"ciphertext": "again"}).to_string();
    assert_eq!(b.receive_with("m1", "inbox", envelope.clone(), &hash1).await, Inserted::Duplicate);
    assert_eq!(b.receive_with("m2", "inbox", envelope.clone(), &hash2).await, Inserted::Duplicate);
    assert_eq!(b.receive_with("m2", "inbox", envelope.clone(), &hash1).await, Inserted::Conflict);
    assert_eq!(b.rows().await, rb);
    // A new message is queued after the moved ones, for both devices.
    assert!(matches!(b.receive("m5", "inbox", 10).await.0, Inserted::New { .. }));
    assert_eq!(b.queue_ids(LAPTOP).await, ["m2", "m3", "m4", "m5"]);
    b.acknowledge(LAPTOP, &["m2"]).await;
    assert_eq!(b.rows().await.mailbox.len(), 3, "m2 went once both devices had it");

    // Once the move is done, A's mailbox goes; the ids it accepted stay.
    a.moved().await;
    let after = a.rows().await;
    assert!(after.mailbox.is_empty() && after.pending.is_empty() && after.usage.is_empty());
    assert!(after.totals.is_empty());
    assert_eq!(after.received, ra.received);
    assert_eq!(a.queue(PHONE).await, (0, 0, 0, None));

    a.stop().await;
    b.stop().await;
}

async fn a_full_mailbox_follows_in_pages(backend: Backend) {
    let Some(a) = Node::start(backend).await else { return };
    let Some(b) = Node::start(backend).await else { return };
    for i in 1..=5 {
        a.receive(&format!("m{i}"), "inbox", 1000).await;
    }
    a.acknowledge(LAPTOP, &["m4"]).await;
    let size = a.rows().await.mailbox[0].size;
    // Room for three messages by count, two by bytes: the oldest two travel in the part.
    let (part, more) = a.export_with_more(Limits { messages: 3, envelope_bytes: 2 * size + 1, received: 4 }).await;
    let typed: MessagingPart = serde_json::from_value(part.clone()).expect("typed part");
    assert_eq!(typed.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
    assert_eq!(typed.received.len(), 4);
    let (cursor, items) = more.expect("the rest follows");
    assert_eq!(items, 3);
    // The rest in one page (a page holds thousands), and no page after it.
    let (page, next) = a.export_page(&cursor).await;
    assert_eq!(next, None);
    let typed: MessagingPage = serde_json::from_value(page.clone()).expect("typed page");
    assert_eq!(typed.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m3", "m4", "m5"]);

    // A page that names a device the account does not have is refused, changing nothing.
    b.import(part).await.expect("import");
    let before = b.rows().await;
    let mut bad = page.clone();
    bad["messages"][0]["pending"] = json!(["device-stolen"]);
    match b.import_page(bad).await {
        Err(ImportError::Invalid(why)) => assert!(why.contains("device-stolen"), "{why}"),
        other => panic!("a bad page: {other:?}"),
    }
    assert_eq!(b.rows().await, before);
    match a.hooks.export_page(&mut a.db().pool().acquire().await.expect("c"), USER, "not a seq").await {
        Err(ImportError::Invalid(why)) => assert!(why.contains("not a seq"), "{why}"),
        other => panic!("a bad cursor: {other:?}"),
    }

    // Imported after the part, the page keeps every message, each for its devices, in order.
    b.import_page(page).await.expect("the page");
    for device in [PHONE, LAPTOP] {
        assert_eq!(b.queue_ids(device).await, a.queue_ids(device).await, "{device}'s queue");
        assert_eq!(b.queue(device).await, a.queue(device).await, "{device}'s queue status");
    }
    assert_eq!(b.queue_ids(PHONE).await, ["m1", "m2", "m3", "m4", "m5"]);
    let (ra, rb) = (a.rows().await, b.rows().await);
    assert_eq!(rb.mailbox, ra.mailbox);
    assert_eq!(rb.pending, ra.pending);
    assert_eq!(rb.usage, ra.usage);
    assert!(rb.drops.is_empty(), "nothing dropped");
    a.stop().await;
    b.stop().await;
}

async fn bad_parts_change_nothing(backend: Backend) {
    let Some(a) = Node::start(backend).await else { return };
    let Some(b) = Node::start(backend).await else { return };
    set_policy(&a).await;
    a.receive("m1", "inbox", 100).await;
    a.receive("m2", "requests", 100).await;
    let good = a.export(Limits::default()).await;
    let before = b.rows().await;

    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, &str)> = vec![
        ("unknown folder", |p| p["messages"][0]["folder"] = json!("spam"), "folder \"spam\" is neither"),
        (
            "a device not of the account",
            |p| p["messages"][1]["pending"] = json!([PHONE, "device-stolen"]),
            "device device-stolen is not a device of this account",
        ),
        ("a device named twice", |p| p["messages"][1]["pending"] = json!([PHONE, PHONE]), "named twice"),
        ("no device waiting", |p| p["messages"][1]["pending"] = json!([]), "no device is waiting"),
        ("duplicate message id", |p| p["messages"][1]["id"] = json!("m1"), "messages[1] (m1): its id appears twice"),
        ("duplicate received id", |p| p["received"][1]["id"] = p["received"][0]["id"].clone(), "appears twice"),
        ("wrong type", |p| p["messages"][0]["presentation"] = json!("yes"), "messages[0].presentation"),
        ("wrong type of pending", |p| p["messages"][0]["pending"] = json!(PHONE), "messages[0].pending"),
        ("unknown field", |p| p["messages"][0]["seq"] = json!(7), "unknown field `seq`"),
        ("envelope not JSON", |p| p["messages"][0]["envelope"] = json!("{not json"), "envelope is not JSON"),
        ("sender not a DID", |p| p["messages"][0]["sender"] = json!("carol"), "sender"),
        ("bad body hash", |p| p["received"][0]["body_hash"] = json!("abc"), "body_hash"),
        ("bad received folder", |p| p["received"][0]["folder"] = json!("Inbox"), "folder \"Inbox\""),
        ("bad policy", |p| p["policy"]["policy"]["blocked"] = json!(["not a host"]), "policy"),
        ("negative time", |p| p["messages"][0]["received_at"] = json!(-1), "negative"),
        ("not an object", |p| *p = json!([1, 2]), "messaging part"),
    ];
    for (what, change, expected) in cases {
        let mut part = good.clone();
        change(&mut part);
        match b.import(part).await {
            Err(ImportError::Invalid(why)) => {
                assert!(why.starts_with("messaging part: "), "{what}: {why}");
                assert!(why.contains(expected), "{what}: {why:?} should say {expected:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(b.rows().await, before, "{what} changed B");
    }

    // A node that still holds the account's rows refuses rather than mixing them.
    b.import(good.clone()).await.expect("the good part");
    let imported = b.rows().await;
    match b.import(good).await {
        Err(ImportError::Invalid(why)) => assert!(why.contains("still holds"), "{why}"),
        other => panic!("a second import: {other:?}"),
    }
    assert_eq!(b.rows().await, imported);
    a.stop().await;
    b.stop().await;
}

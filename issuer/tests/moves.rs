//! An account's issuer data moving between two nodes, each with its own database, on both
//! backends: what node A exports, node B imports row for row, serves the moved status lists
//! under the URLs and DID the credentials issued on A name, and refuses a malformed part
//! without writing anything.
//!
//! PostgreSQL tests use `SICHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a database per node and drop it
//! afterwards; they are skipped when it is unreachable, except under `CI=true`.

use serde_json::{json, Map, Value};
use sichat_accounts::hooks::{AccountHooks, Arrival, ImportError};
use sichat_accounts::{Accounts, AuthDevice, Settings};
use sichat_core::db::Db;
use sichat_core::ids::{b64url, new_id, now_ms};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::node::NodeIdentity;
use sichat_core::resolver::Resolver;
use sichat_core::seal::MasterKey;
use sichat_issuer::account_hooks::IssuerAccountHooks;
use sichat_issuer::moves::IssuerPart;
use sichat_issuer::service::{Format, IssueRequest, NewType, StatusAction};
use sichat_issuer::status::{Bitstring, LIST_SIZE};
use sichat_issuer::Issuer;
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

storage_tests!(
    a_moved_account_keeps_its_types_lists_and_log,
    moved_lists_take_no_new_credentials,
    bad_parts_change_nothing
);

fn postgres_admin_url() -> String {
    std::env::var("SICHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A migrated database of its own (`None`: PostgreSQL is unreachable
/// outside CI, and the test is skipped).
struct TestDb {
    db: Db,
    dir: Option<std::path::PathBuf>,
    pg_name: Option<String>,
}

impl TestDb {
    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("sichat-issuer-moves-{}", new_id()));
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

/// A node at `origin` on its own database, with the issuer's hooks registered.
struct Node {
    test_db: TestDb,
    master: MasterKey,
    accounts: Arc<Accounts>,
    issuer: Issuer,
    hooks: IssuerAccountHooks,
}

impl Node {
    async fn start(backend: Backend, origin: &str) -> Option<Self> {
        let test_db = TestDb::create(backend).await?;
        let db = test_db.db.clone();
        let master = MasterKey::generate();
        let url = url::Url::parse(origin).expect("origin");
        let (node, _) = NodeIdentity::load_or_create(&db, &master, &url).await.expect("node identity");
        let node = Arc::new(node);
        let accounts = Arc::new(Accounts::new(
            db.clone(),
            node.clone(),
            Arc::new(MasterKey::from_base64(&master.to_base64()).expect("master key")),
            Settings::default(),
        ));
        let fetcher = Fetcher::new(NetPolicy { allow_local: false }).expect("fetcher");
        let issuer = Issuer::new(db, accounts.clone(), Arc::new(Resolver::new(Arc::new(fetcher))));
        Some(Self { test_db, master, accounts, issuer, hooks: IssuerAccountHooks::new(node) })
    }

    fn db(&self) -> &Db {
        &self.test_db.db
    }

    /// An account `name` with id `user_id` and the Ed25519 issuing key `key` (ids as the
    /// accounts service makes them; on B, the account and its keys as a move brings them).
    async fn account(&self, user_id: &str, name: &str, key_id: &str, key: &Ed25519KeyPair) -> AuthDevice {
        sqlx::query(
            "INSERT INTO acct_users (id, name, root_key, quota, invite_id, status, created_at) \
             VALUES ($1, $2, 'z-root', 0, 'invite', 'active', $3)",
        )
        .bind(user_id)
        .bind(name)
        .bind(now_ms())
        .execute(self.db().pool())
        .await
        .expect("user");
        sqlx::query(
            "INSERT INTO acct_issuing_keys (id, user_id, public_key, sealed_secret, created_at, algorithm) \
             VALUES ($1, $2, $3, $4, $5, 'Ed25519')",
        )
        .bind(key_id)
        .bind(user_id)
        .bind(key.public().to_multibase())
        .bind(self.master.seal(&key.secret(), &format!("acct_issuing_keys:{key_id}")))
        .bind(now_ms())
        .execute(self.db().pool())
        .await
        .expect("issuing key");
        AuthDevice {
            user_id: user_id.into(),
            user_name: name.into(),
            device_id: "device".into(),
            token_hash: "t".into(),
        }
    }

    async fn export(&self, user_id: &str) -> Value {
        let mut tx = self.db().pool().begin().await.expect("begin");
        let part = self.hooks.export_account(&mut tx, user_id).await.expect("export");
        tx.commit().await.expect("commit");
        part
    }

    /// Import `part` in a transaction that commits whatever the outcome, so a refused part
    /// that had written anything would show.
    async fn import(&self, arrival: Arrival<'_>, part: Value) -> Result<(), ImportError> {
        let mut tx = self.db().pool().begin().await.expect("begin");
        let outcome = self.hooks.import_account(&mut tx, arrival, part).await;
        tx.commit().await.expect("commit");
        outcome
    }

    /// Every row of the issuer's moved tables, every column, ordered by id.
    async fn rows(&self) -> Rows {
        let pool = self.db().pool();
        let types = sqlx::query_as(
            "SELECT id, user_id, name, display_name, schema, alg, created_at FROM issuer_types ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .expect("types");
        let lists = sqlx::query_as(
            "SELECT id, user_id, purpose, issuer_did, published_url, bits, created_at, updated_at \
             FROM issuer_status_lists ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .expect("lists");
        let credentials = sqlx::query_as(
            "SELECT id, user_id, type_name, subject, claims, revocation_list, revocation_index, suspension_list, \
             suspension_index, status, issued_at, valid_until, format FROM issuer_credentials ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .expect("credentials");
        Rows { types, lists, credentials }
    }

    async fn stop(self) {
        self.test_db.db.close().await;
    }
}

type TypeRow = (String, String, String, String, String, String, i64);
type ListRow = (String, String, String, Option<String>, Option<String>, Vec<u8>, i64, i64);
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct CredentialRow {
    id: String,
    user_id: String,
    type_name: String,
    subject: String,
    claims: String,
    revocation_list: String,
    revocation_index: i64,
    suspension_list: Option<String>,
    suspension_index: Option<i64>,
    status: String,
    issued_at: i64,
    valid_until: Option<i64>,
    format: String,
}

#[derive(Debug, PartialEq)]
struct Rows {
    types: Vec<TypeRow>,
    lists: Vec<ListRow>,
    credentials: Vec<CredentialRow>,
}

fn arrival<'a>(user_id: &'a str, user_name: &'a str, new_did: &'a str) -> Arrival<'a> {
    Arrival {
        user_id,
        user_name,
        from_origin: "https://a.example",
        old_web_did: "did:web:a.example:users:alice",
        new_did,
    }
}

fn payload(jwt: &str) -> Value {
    jws::unverified_payload(jwt).expect("a JWS")
}

/// The status entries of an issued `vc+jwt`: (purpose, statusListCredential, index).
fn statuses(jwt: &str) -> Vec<(String, String, usize)> {
    let vc = payload(jwt);
    let entries = match &vc["credentialStatus"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    entries
        .iter()
        .map(|e| {
            (
                e["statusPurpose"].as_str().expect("purpose").to_owned(),
                e["statusListCredential"].as_str().expect("list").to_owned(),
                e["statusListIndex"].as_str().expect("index").parse().expect("a number"),
            )
        })
        .collect()
}

/// What node A holds for alice: her own type, three credentials (one revoked, one
/// suspended), and status lists made before lists recorded their issuer. Returns the
/// credentials as issued.
async fn alice_on_a(a: &Node, user_id: &str, key: &Ed25519KeyPair) -> Vec<String> {
    let me = a.account(user_id, "alice", "key-1", key).await;
    let schema = json!({"type": "object", "properties": {"club": {"type": "string"}}, "required": ["club"]});
    let new_type = NewType { name: "BookClubCredential".into(), display_name: None, schema, alg: None };
    a.issuer.add_type(&me, new_type).await.expect("type");
    let holder = format!("did:key:{}", Ed25519KeyPair::generate().public().to_multibase());
    let mut issued = Vec::new();
    for (type_name, claims, suspendable) in [
        ("BookClubCredential", json!({"club": "Tuesday readers"}), true),
        ("BookClubCredential", json!({"club": "Sunday readers"}), true),
        ("FriendCredential", json!({"name": "Bob"}), false),
    ] {
        let Value::Object(claims) = claims else { unreachable!() };
        let req = IssueRequest {
            type_name: type_name.into(),
            subject: holder.clone(),
            claims,
            valid_until: (type_name == "FriendCredential").then(|| now_ms() + 86_400_000),
            suspendable,
            format: Format::VcJwt,
        };
        issued.push(a.issuer.issue(&me, req).await.expect("issue"));
    }
    a.issuer.set_status(&me, &issued[0].id, StatusAction::Suspend).await.expect("suspend");
    a.issuer.set_status(&me, &issued[2].id, StatusAction::Revoke).await.expect("revoke");
    // Lists made before migration 0024 recorded no issuer: the account's did:web.
    sqlx::query("UPDATE issuer_status_lists SET issuer_did = NULL").execute(a.db().pool()).await.expect("legacy");
    issued.into_iter().map(|i| i.credential).collect()
}

async fn a_moved_account_keeps_its_types_lists_and_log(backend: Backend) {
    let Some(a) = Node::start(backend, "https://a.example").await else { return };
    let Some(b) = Node::start(backend, "https://b.example").await else { return a.stop().await };
    let user_id = new_id();
    let key = Ed25519KeyPair::generate();
    let credentials = alice_on_a(&a, &user_id, &key).await;

    let part = a.export(&user_id).await;
    let typed: IssuerPart = serde_json::from_value(part.clone()).expect("the issuer's part");
    assert_eq!((typed.types.len(), typed.lists.len(), typed.credentials.len()), (1, 2, 3));
    for list in &typed.lists {
        assert_eq!(list.issuer_did, "did:web:a.example:users:alice", "a list with no issuer is under the did:web");
        assert_eq!(list.published_url, format!("https://a.example/users/alice/status/{}", list.id));
    }

    // On B the account is "alice2", with the same id and the same issuing key.
    b.account(&user_id, "alice2", "key-1", &key).await;
    b.import(arrival(&user_id, "alice2", "did:webvh:scid:b.example:users:alice2"), part.clone()).await.expect("import");

    // Row for row the same, the lists now saying which URL and DID they were published under.
    let (on_a, on_b) = (a.rows().await, b.rows().await);
    assert_eq!(on_b.types, on_a.types);
    assert_eq!(on_b.credentials, on_a.credentials);
    let expected: Vec<ListRow> = on_a
        .lists
        .into_iter()
        .map(|mut l| {
            l.3 = Some("did:web:a.example:users:alice".into());
            l.4 = Some(format!("https://a.example/users/alice/status/{}", l.0));
            l
        })
        .collect();
    assert_eq!(on_b.lists, expected);
    assert!(!expected.is_empty());
    // B would hand on exactly what it received.
    assert_eq!(b.export(&user_id).await, part);

    // The lists B serves are the ones the credentials issued on A name, with their bits.
    for (n, credential) in credentials.iter().enumerate() {
        for (purpose, url, index) in statuses(credential) {
            let list_id = url.rsplit('/').next().expect("list id");
            let served = b.issuer.status_list("alice2", list_id).await.expect("served list");
            let list: Value = jws::verify(&served.jwt, &key.public(), "vc+jwt").expect("signed with the issuing key");
            assert_eq!(list["id"], json!(url), "its id is the URL the credential names");
            assert_eq!(list["issuer"], json!("did:web:a.example:users:alice"));
            assert_eq!(list["credentialSubject"]["statusPurpose"], json!(purpose));
            let encoded = list["credentialSubject"]["encodedList"].as_str().expect("encodedList");
            let bits = Bitstring::decode(encoded, LIST_SIZE / 8).expect("a bitstring");
            let set = matches!((n, purpose.as_str()), (0, "suspension") | (2, "revocation"));
            assert_eq!(bits.get(index), Some(set), "credential {n}, {purpose}");
        }
    }
    // Only under B's own name.
    let list_id = statuses(&credentials[0])[0].1.rsplit('/').next().expect("id").to_owned();
    assert!(b.issuer.status_list("alice", &list_id).await.is_err());

    // The log moved too: suspending on B changes the list the credential names.
    let me = AuthDevice {
        user_id: user_id.clone(),
        user_name: "alice2".into(),
        device_id: "d".into(),
        token_hash: "t".into(),
    };
    let ids: Vec<String> = credentials.iter().map(|c| payload(c)["id"].as_str().expect("id")[9..].to_owned()).collect();
    b.issuer.set_status(&me, &ids[1], StatusAction::Suspend).await.expect("suspend on B");
    let (_, url, index) = statuses(&credentials[1]).into_iter().find(|s| s.0 == "suspension").expect("suspension");
    let served = b.issuer.status_list("alice2", url.rsplit('/').next().expect("id")).await.expect("served");
    let encoded = payload(&served.jwt)["credentialSubject"]["encodedList"].as_str().expect("list").to_owned();
    assert_eq!(Bitstring::decode(&encoded, LIST_SIZE / 8).expect("bits").get(index), Some(true));
    assert_eq!(b.accounts.user_did("alice2").expect("did").as_str(), "did:web:b.example:users:alice2");

    // Nothing to move is `null`, and `null` moves nothing.
    let nobody = new_id();
    a.account(&nobody, "nobody", "key-2", &Ed25519KeyPair::generate()).await;
    assert_eq!(a.export(&nobody).await, Value::Null);
    b.import(arrival(&nobody, "nobody", "did:webvh:scid:b.example:users:nobody"), Value::Null).await.expect("null");

    a.stop().await;
    b.stop().await;
}

/// A moved list is issued under a DID the account may issue under on B too; still, B puts
/// new credentials in lists of its own, at its own URLs.
async fn moved_lists_take_no_new_credentials(backend: Backend) {
    let Some(b) = Node::start(backend, "https://b.example").await else { return };
    let user_id = new_id();
    let key = Ed25519KeyPair::generate();
    let me = b.account(&user_id, "alice", "key-1", &key).await;
    let moved = new_id();
    let part = json!({
        "types": [],
        "lists": [{
            "id": moved,
            "purpose": "revocation",
            "bits": b64url(Bitstring::new(LIST_SIZE).as_bytes()),
            "issuer_did": "did:web:b.example:users:alice",
            "published_url": format!("https://a.example/users/alice/status/{moved}"),
            "created_at": now_ms() + 60_000,
            "updated_at": now_ms() + 60_000,
        }],
        "credentials": [],
    });
    b.import(arrival(&user_id, "alice", "did:webvh:scid:b.example:users:alice"), part).await.expect("import");
    let mut claims = Map::new();
    claims.insert("name".into(), json!("Bob"));
    let req = IssueRequest {
        type_name: "FriendCredential".into(),
        subject: format!("did:key:{}", Ed25519KeyPair::generate().public().to_multibase()),
        claims,
        valid_until: None,
        suspendable: false,
        format: Format::VcJwt,
    };
    let issued = b.issuer.issue(&me, req).await.expect("issue");
    let (_, url, _) = statuses(&issued.credential).remove(0);
    assert!(url.starts_with("https://b.example/users/alice/status/"), "{url}");
    assert!(!url.ends_with(&moved), "a new credential landed in a moved list");
    b.stop().await;
}

/// Malformed parts are refused, naming what is wrong, and write nothing.
async fn bad_parts_change_nothing(backend: Backend) {
    let Some(a) = Node::start(backend, "https://a.example").await else { return };
    let Some(b) = Node::start(backend, "https://b.example").await else { return a.stop().await };
    let user_id = new_id();
    let key = Ed25519KeyPair::generate();
    alice_on_a(&a, &user_id, &key).await;
    let good = a.export(&user_id).await;
    b.account(&user_id, "alice", "key-1", &key).await;
    let to_b = arrival(&user_id, "alice", "did:webvh:scid:b.example:users:alice");
    let before = b.rows().await;

    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut part = good.clone();
    part["credentials"][1]["revocation_list"] = json!("no-such-list");
    cases.push(("a credential whose list is missing", part, "is not in the part"));
    let mut part = good.clone();
    part["lists"][0]["bits"] = json!("*".repeat(21_846));
    cases.push(("bits not base64url", part, "not base64url"));
    let mut part = good.clone();
    part["lists"][0]["bits"] = json!(b64url(&[0u8; 100]));
    cases.push(("a list of the wrong size", part, "must be 131072 bits"));
    let mut part = good.clone();
    part["lists"][0]["bits"] = json!("A".repeat(4 << 20));
    cases.push(("a hostile length", part, "must be 131072 bits"));
    let mut part = good.clone();
    let twin = part["credentials"][0].clone();
    part["credentials"].as_array_mut().expect("array").push(twin);
    cases.push(("a credential twice", part, "appears twice"));
    let mut part = good.clone();
    part["credentials"][0]["revocation_index"] = json!("7");
    cases.push(("a wrong type", part, "credentials[0].revocation_index"));
    let mut part = good.clone();
    part["credentials"][0]["revocation_index"] = json!(LIST_SIZE);
    cases.push(("an index beyond the list", part, "outside"));
    let mut part = good.clone();
    part["lists"][0]["extra"] = json!(true);
    cases.push(("an unknown field", part, "unknown field `extra`"));
    let mut part = good.clone();
    part["lists"][1]["published_url"] = json!("ftp://a.example/list");
    cases.push(("a list URL that is not http(s)", part, "published_url"));
    cases.push(("not an object", json!([1, 2]), "issuer part"));

    for (what, part, says) in cases {
        match b.import(to_b, part).await {
            Err(ImportError::Invalid(message)) => assert!(message.contains(says), "{what}: {message}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(b.rows().await, before, "{what} changed something");
    }

    // Ids already taken on B (here, by the same part moved in for another account).
    let other = new_id();
    b.account(&other, "carol", "key-2", &Ed25519KeyPair::generate()).await;
    b.import(arrival(&other, "carol", "did:webvh:scid:b.example:users:carol"), good.clone()).await.expect("first");
    let taken = b.rows().await;
    match b.import(to_b, good).await {
        Err(ImportError::Invalid(message)) => assert!(message.contains("already exists on this node"), "{message}"),
        other => panic!("a duplicate id: {other:?}"),
    }
    assert_eq!(b.rows().await, taken, "a duplicate id changed something");

    a.stop().await;
    b.stop().await;
}

//! The node's copies of an account's credentials moving between two nodes, each with its
//! own database, on both backends: what node A exports, node B imports row for row, and a
//! malformed part is refused without writing anything.
//!
//! PostgreSQL tests use `SICHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a database per node and drop it
//! afterwards; they are skipped when it is unreachable, except under `CI=true`.

use serde_json::{json, Value};
use sichat_accounts::hooks::{AccountHooks, Arrival, ImportError};
use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_holder::account_hooks::HolderAccountHooks;
use sqlx::{Connection, Executor, PgConnection};

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

storage_tests!(moved_credentials_arrive_row_for_row, bad_parts_change_nothing);

fn postgres_admin_url() -> String {
    std::env::var("SICHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A node's migrated database of its own (`None`: PostgreSQL is
/// unreachable outside CI, and the test is skipped).
struct Node {
    db: Db,
    dir: Option<std::path::PathBuf>,
    pg_name: Option<String>,
}

impl Node {
    async fn start(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("sichat-holder-moves-{}", new_id()));
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

    async fn stop(self) {
        self.db.close().await;
    }

    async fn account(&self, user_id: &str, name: &str) {
        sqlx::query(
            "INSERT INTO acct_users (id, name, root_key, quota, invite_id, status, created_at) \
             VALUES ($1, $2, 'z-root', 0, 'invite', 'active', $3)",
        )
        .bind(user_id)
        .bind(name)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .expect("user");
    }

    /// Keep a credential for `user_id`, as the node's `POST /api/v1/holder/credentials` does.
    async fn keep(&self, user_id: &str, id: &str, format: &str, credential: &str, received_at: i64) {
        sqlx::query(
            "INSERT INTO holder_credentials (id, user_id, format, credential, received_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(user_id)
        .bind(format)
        .bind(credential)
        .bind(received_at)
        .execute(self.db.pool())
        .await
        .expect("keep");
    }

    async fn export(&self, user_id: &str) -> Value {
        let mut tx = self.db.pool().begin().await.expect("begin");
        let part = HolderAccountHooks.export_account(&mut tx, user_id).await.expect("export");
        tx.commit().await.expect("commit");
        part
    }

    /// Import `part` in a transaction that commits whatever the outcome, so a refused part
    /// that had written anything would show.
    async fn import(&self, arrival: Arrival<'_>, part: Value) -> Result<(), ImportError> {
        let mut tx = self.db.pool().begin().await.expect("begin");
        let outcome = HolderAccountHooks.import_account(&mut tx, arrival, part).await;
        tx.commit().await.expect("commit");
        outcome
    }

    /// Every row of `holder_credentials`, every column: (user_id, id, format, credential, received_at).
    async fn rows(&self) -> Vec<(String, String, String, String, i64)> {
        sqlx::query_as(
            "SELECT user_id, id, format, credential, received_at FROM holder_credentials ORDER BY user_id, id",
        )
        .fetch_all(self.db.pool())
        .await
        .expect("rows")
    }
}

/// Removed even when the test fails: the SQLite directory, or the PostgreSQL database
/// (from a thread of its own, as drop runs inside the test's runtime).
impl Drop for Node {
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

fn arrival<'a>(user_id: &'a str, user_name: &'a str) -> Arrival<'a> {
    Arrival {
        user_id,
        user_name,
        from_origin: "https://a.example",
        old_web_did: "did:web:a.example:users:alice",
        new_did: "did:webvh:scid:b.example:users:alice2",
    }
}

/// Alice's credentials on A, one of each format: a `vc+jwt` and a Data Integrity document.
async fn alice_on_a(a: &Node, user_id: &str) {
    a.account(user_id, "alice").await;
    let issuer = Ed25519KeyPair::generate();
    let vc = json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": "urn:uuid:0190c0de-0000-7000-8000-000000000001",
        "type": ["VerifiableCredential", "FriendCredential"],
        "issuer": "did:web:c.example:users:carol",
        "credentialSubject": {"id": "did:web:a.example:users:alice", "name": "Alice"},
    });
    let jwt = jws::sign(&issuer, "vc+jwt", Some("did:web:c.example:users:carol#issuing-1"), &vc).expect("sign");
    a.keep(user_id, "0190c0de-0000-7000-8000-000000000001", "vc+jwt", &jwt, now_ms() - 5_000).await;
    let mut di = vc.clone();
    di["id"] = json!("urn:uuid:0190c0de-0000-7000-8000-000000000002");
    di["proof"] = json!({"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022", "proofValue": "z3abc"});
    a.keep(user_id, "0190c0de-0000-7000-8000-000000000002", "ldp_vc", &di.to_string(), now_ms()).await;
}

async fn moved_credentials_arrive_row_for_row(backend: Backend) {
    let Some(a) = Node::start(backend).await else { return };
    let Some(b) = Node::start(backend).await else { return a.stop().await };
    let user_id = new_id();
    alice_on_a(&a, &user_id).await;
    // Someone else's on A stays there.
    let bob = new_id();
    a.account(&bob, "bob").await;
    a.keep(&bob, "bobs", "ldp_vc", r#"{"type":["VerifiableCredential"]}"#, 1).await;

    let part = a.export(&user_id).await;
    assert_eq!(part["credentials"].as_array().map(Vec::len), Some(2), "{part}");
    b.account(&user_id, "alice2").await;
    b.import(arrival(&user_id, "alice2"), part.clone()).await.expect("import");

    let on_a: Vec<_> = a.rows().await.into_iter().filter(|r| r.0 == user_id).collect();
    assert_eq!(b.rows().await, on_a);
    assert_eq!(b.export(&user_id).await, part, "B would hand on exactly what it received");

    // Nothing to move is `null`, and `null` moves nothing.
    let nobody = new_id();
    a.account(&nobody, "nobody").await;
    assert_eq!(a.export(&nobody).await, Value::Null);
    b.account(&nobody, "nobody").await;
    b.import(arrival(&nobody, "nobody"), Value::Null).await.expect("null");
    assert_eq!(b.rows().await.len(), 2);

    a.stop().await;
    b.stop().await;
}

/// Malformed parts are refused, naming what is wrong, and write nothing.
async fn bad_parts_change_nothing(backend: Backend) {
    let Some(a) = Node::start(backend).await else { return };
    let Some(b) = Node::start(backend).await else { return a.stop().await };
    let user_id = new_id();
    alice_on_a(&a, &user_id).await;
    let good = a.export(&user_id).await;
    b.account(&user_id, "alice").await;

    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut part = good.clone();
    let twin = part["credentials"][0].clone();
    part["credentials"].as_array_mut().expect("array").push(twin);
    cases.push(("a credential twice", part, "appears twice"));
    let mut part = good.clone();
    part["credentials"][1]["format"] = json!("mso_mdoc");
    cases.push(("an unknown format", part, "neither vc+jwt nor ldp_vc"));
    let mut part = good.clone();
    part["credentials"][0]["credential"] = json!("not a JWS");
    cases.push(("a credential that is not one", part, "credential 0190c0de"));
    let mut part = good.clone();
    part["credentials"][0]["id"] = json!("");
    cases.push(("an empty id", part, "must be 1-128 characters"));
    let mut part = good.clone();
    part["credentials"][0]["received_at"] = json!("yesterday");
    cases.push(("a wrong type", part, "credentials[0].received_at"));
    let mut part = good.clone();
    part["credentials"][0]["user_id"] = json!("someone");
    cases.push(("an unknown field", part, "unknown field `user_id`"));

    for (what, part, says) in cases {
        match b.import(arrival(&user_id, "alice"), part).await {
            Err(ImportError::Invalid(message)) => assert!(message.contains(says), "{what}: {message}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(b.rows().await, vec![], "{what} changed something");
    }

    // A credential already kept for the account (a second import of the same part).
    b.import(arrival(&user_id, "alice"), good.clone()).await.expect("first");
    let kept = b.rows().await;
    match b.import(arrival(&user_id, "alice"), good).await {
        Err(ImportError::Invalid(message)) => assert!(message.contains("already kept"), "{message}"),
        other => panic!("a duplicate id: {other:?}"),
    }
    assert_eq!(b.rows().await, kept, "a duplicate id changed something");

    a.stop().await;
    b.stop().await;
}

//! Pairwise subjects across a move, on both backends: accounts that existed before
//! per-account secrets keep the subjects they had, new accounts get secret-based ones, and an
//! account moved from node A to node B (each with its own database, master key and node
//! salt) shows every site the same `sub` on B as on A. A malformed part writes nothing.
//!
//! PostgreSQL tests use `SICHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a database per node and drop it
//! afterwards; they are skipped when it is unreachable, except under `CI=true`.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sichat_accounts::hooks::{AccountHooks, Arrival, ImportError, Removal};
use sichat_accounts::{Accounts, Settings};
use sichat_core::db::Db;
use sichat_core::ids::{b64url, b64url_decode, new_id, now_ms};
use sichat_core::net::NetPolicy;
use sichat_core::node::NodeIdentity;
use sichat_core::seal::MasterKey;
use sichat_oidc::account_hooks::OidcAccountHooks;
use sichat_oidc::amr::SignIn;
use sichat_oidc::moves::OidcPart;
use sichat_oidc::subjects::SubjectSecret;
use sichat_oidc::Provider;
use sichat_verifier::Verifier;
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
    legacy_accounts_keep_their_subjects,
    new_accounts_get_subjects_from_their_own_secret,
    a_moved_account_keeps_its_subjects,
    bad_parts_change_nothing,
    moving_and_removing_end_what_the_account_held
);

fn postgres_admin_url() -> String {
    std::env::var("SICHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A migrated database of its own (`None`: PostgreSQL is unreachable outside CI, and the
/// test is skipped).
struct TestDb {
    db: Db,
    dir: Option<std::path::PathBuf>,
    pg_name: Option<String>,
}

impl TestDb {
    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("sichat-oidc-moves-{}", new_id()));
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

/// A node at `origin` on its own database, master key and pairwise salt.
struct Node {
    test_db: TestDb,
    master: Arc<MasterKey>,
    provider: Provider,
    hooks: OidcAccountHooks,
}

impl Node {
    async fn start(backend: Backend, origin: &str) -> Option<Self> {
        let test_db = TestDb::create(backend).await?;
        let db = test_db.db.clone();
        let master = Arc::new(MasterKey::generate());
        let url = url::Url::parse(origin).expect("origin");
        let (node, _) = NodeIdentity::load_or_create(&db, &master, &url).await.expect("node identity");
        let accounts = Arc::new(Accounts::new(db.clone(), Arc::new(node), master.clone(), Settings::default()));
        let verifier = Arc::new(Verifier::new(NetPolicy { allow_local: false }, Default::default()).expect("verifier"));
        let provider =
            Provider::open(db, accounts, master.clone(), verifier, Default::default()).await.expect("provider");
        let hooks = provider.account_hooks();
        Some(Self { test_db, master, provider, hooks })
    }

    fn db(&self) -> &Db {
        &self.test_db.db
    }

    /// An account `name` with id `user_id`.
    async fn account(&self, user_id: &str, name: &str) {
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
    }

    /// Accounts created before migration 0027: create them, then run 0027 again, as a node
    /// upgrading would.
    async fn legacy_accounts(&self, users: &[(&str, &str)]) {
        for (id, name) in users {
            self.account(id, name).await;
        }
        for sql in [
            "DROP TABLE oidc_subject_pins",
            "DROP TABLE oidc_subject_secrets",
            "DELETE FROM _sqlx_migrations WHERE version = 27",
        ] {
            sqlx::query(sql).execute(self.db().pool()).await.expect(sql);
        }
        self.db().migrate().await.expect("migrate again");
    }

    /// A site at `host`, registered here; `public`: with `subject_type` public.
    async fn client(&self, host: &str, public: bool) -> Arc<sichat_oidc::clients::Client> {
        let mut body = json!({"redirect_uris": [format!("https://{host}/callback")], "client_name": host});
        if public {
            body["subject_type"] = json!("public");
        }
        let registered = self.provider.register(body, None).await.expect("register");
        self.provider.client(&registered.client_id).await.expect("client").expect("registered")
    }

    async fn sub(&self, client: &Arc<sichat_oidc::clients::Client>, user_id: &str) -> String {
        self.provider.subject(client, user_id).await.expect("subject")
    }

    /// The subject before per-account secrets: SHA-256 of the node's salt, the sector, a
    /// zero byte and the user id, the salt read from where the node keeps it.
    async fn old_formula(&self, sector: &str, user_id: &str) -> String {
        const NAME: &str = "oidc_pairwise_salt_sealed";
        let sealed: String = sqlx::query_scalar("SELECT value FROM node_settings WHERE name = $1")
            .bind(NAME)
            .fetch_one(self.db().pool())
            .await
            .expect("salt");
        let salt = self.master.open(&b64url_decode(&sealed).expect("base64url"), NAME).expect("opens");
        let mut h = Sha256::new();
        h.update(salt.as_slice());
        h.update(sector.as_bytes());
        h.update([0]);
        h.update(user_id.as_bytes());
        b64url(&h.finalize())
    }

    /// The account's secret as stored here, opened.
    async fn stored_secret(&self, user_id: &str) -> Option<SubjectSecret> {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT secret_sealed FROM oidc_subject_secrets WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(self.db().pool())
                .await
                .expect("a row");
        let sealed = sealed?;
        let opened = self.master.open(&sealed, &format!("oidc_subject_secrets:{user_id}")).expect("opens");
        Some(SubjectSecret::parse(&b64url(&opened)).expect("32 bytes"))
    }

    async fn export(&self, user_id: &str) -> Value {
        let mut tx = self.db().pool().begin().await.expect("begin");
        let part = self.hooks.export_account(&mut tx, user_id).await.expect("export");
        tx.commit().await.expect("commit");
        part
    }

    /// Import `part` in a transaction that commits whatever the outcome, so a refused part
    /// that had written anything would show.
    async fn import(&self, user_id: &str, part: Value) -> Result<(), ImportError> {
        let arrival = Arrival {
            user_id,
            user_name: "alice",
            from_origin: "https://a.example",
            old_web_did: "did:web:a.example:users:alice",
            new_did: "did:webvh:scid:b.example:users:alice",
        };
        let mut tx = self.db().pool().begin().await.expect("begin");
        let outcome = self.hooks.import_account(&mut tx, arrival, part).await;
        tx.commit().await.expect("commit");
        outcome
    }

    /// Every row of the subject tables, ordered.
    async fn subject_rows(&self) -> (Vec<(String, Option<Vec<u8>>)>, Vec<(String, String, String)>) {
        let pool = self.db().pool();
        let secrets = sqlx::query_as("SELECT user_id, secret_sealed FROM oidc_subject_secrets ORDER BY user_id")
            .fetch_all(pool)
            .await
            .expect("secrets");
        let pins = sqlx::query_as("SELECT user_id, sector, sub FROM oidc_subject_pins ORDER BY user_id, sector")
            .fetch_all(pool)
            .await
            .expect("pins");
        (secrets, pins)
    }

    async fn count(&self, table: &str, user_id: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
            .bind(user_id)
            .fetch_one(self.db().pool())
            .await
            .expect("count")
    }

    async fn stop(self) {
        self.test_db.db.close().await;
    }
}

async fn legacy_accounts_keep_their_subjects(backend: Backend) {
    let Some(a) = Node::start(backend, "https://a.example").await else { return };
    let (alice, bob) = (new_id(), new_id());
    a.legacy_accounts(&[(&alice, "alice"), (&bob, "bob")]).await;
    let rp = a.client("rp.example", false).await;
    let other = a.client("other.example", false).await;
    let public = a.client("public.example", true).await;

    for user in [&alice, &bob] {
        assert_eq!(a.sub(&rp, user).await, a.old_formula("rp.example", user).await);
        assert_eq!(a.sub(&other, user).await, a.old_formula("other.example", user).await);
        assert_eq!(a.sub(&public, user).await, *user, "a public client sees the user id");
        assert!(a.stored_secret(user).await.is_none(), "still a legacy account");
    }
    assert_ne!(a.sub(&rp, &alice).await, a.sub(&other, &alice).await);
    assert_ne!(a.sub(&rp, &alice).await, a.sub(&rp, &bob).await);
    a.stop().await;
}

async fn new_accounts_get_subjects_from_their_own_secret(backend: Backend) {
    let Some(a) = Node::start(backend, "https://a.example").await else { return };
    let carol = new_id();
    a.account(&carol, "carol").await;
    assert_eq!(a.count("oidc_subject_secrets", &carol).await, 0, "no secret before first use");
    let rp = a.client("rp.example", false).await;
    // A second client of the same sector sees the same subject.
    let rp2 = a.client("rp.example", false).await;
    let sub = a.sub(&rp, &carol).await;

    let secret = a.stored_secret(&carol).await.expect("a secret, made on first use");
    assert_eq!(sub, secret.subject("rp.example"));
    assert_ne!(sub, a.old_formula("rp.example", &carol).await, "not the node-salt formula");
    assert_eq!(a.sub(&rp, &carol).await, sub, "the same at every sign-in");
    assert_eq!(a.sub(&rp2, &carol).await, sub, "the same for every client of the sector");
    assert_eq!(a.stored_secret(&carol).await, Some(secret), "made once");
    let other = a.client("other.example", false).await;
    assert_ne!(a.sub(&other, &carol).await, sub);
    a.stop().await;
}

async fn a_moved_account_keeps_its_subjects(backend: Backend) {
    let Some(a) = Node::start(backend, "https://a.example").await else { return };
    let Some(b) = Node::start(backend, "https://b.example").await else { return a.stop().await };
    let (alice, carol) = (new_id(), new_id());
    a.legacy_accounts(&[(&alice, "alice")]).await;
    a.account(&carol, "carol").await;
    let rp = a.client("rp.example", false).await;
    let shop = a.client("shop.example", false).await;
    let public = a.client("public.example", true).await;
    for user in [&alice, &carol] {
        for client in [&rp, &shop, &public] {
            a.provider.consent(user, &client.id, "openid").await.expect("consent");
        }
    }
    let on_a = |sector: &str, user: &str| (sector.to_owned(), user.to_owned());
    let mut seen = std::collections::HashMap::new();
    for user in [&alice, &carol] {
        seen.insert(on_a("rp.example", user), a.sub(&rp, user).await);
        seen.insert(on_a("shop.example", user), a.sub(&shop, user).await);
    }
    // A sector carol has not signed in to yet, as A would have named her there.
    let later_on_a = a.sub(&a.client("later.example", false).await, &carol).await;

    let password = "correct horse battery staple";
    a.provider.set_password(&alice, password).await.expect("password");
    let alice_part = a.export(&alice).await;
    let carol_part = a.export(&carol).await;
    let typed: OidcPart = serde_json::from_value(alice_part.clone()).expect("the oidc part");
    let pinned: Vec<&str> = typed.pins.iter().map(|p| p.sector.as_str()).collect();
    assert_eq!(pinned, ["rp.example", "shop.example"], "a pin per pairwise sector alice consented to");
    let carol_typed: OidcPart = serde_json::from_value(carol_part.clone()).expect("the oidc part");
    assert!(carol_typed.pins.is_empty(), "carol's subjects come from her secret");
    assert_eq!(Some(carol_typed.subject_secret.clone()), a.stored_secret(&carol).await);
    assert!(a.stored_secret(&alice).await.is_none(), "an export writes nothing on A");

    b.account(&alice, "alice").await;
    b.account(&carol, "carol2").await;
    b.import(&alice, alice_part).await.expect("import alice");
    b.import(&carol, carol_part).await.expect("import carol");

    // Sites register anew with B (another client id), at the same hosts.
    let (rp_b, shop_b) = (b.client("rp.example", false).await, b.client("shop.example", false).await);
    for user in [&alice, &carol] {
        assert_eq!(b.sub(&rp_b, user).await, seen[&on_a("rp.example", user)], "rp.example, {user}");
        assert_eq!(b.sub(&shop_b, user).await, seen[&on_a("shop.example", user)], "shop.example, {user}");
        assert_eq!(b.sub(&b.client("public.example", true).await, user).await, *user);
    }
    // B's own salt would have given alice another subject: the pin is what holds it.
    assert_ne!(b.old_formula("rp.example", &alice).await, seen[&on_a("rp.example", &alice)]);
    let later_b = b.client("later.example", false).await;
    assert_eq!(b.sub(&later_b, &carol).await, later_on_a, "carol's secret gives every sector the same sub");
    // Alice's later sectors come from the fresh secret she took along, sealed under B's key.
    let alice_later = b.sub(&later_b, &alice).await;
    assert_eq!(Some(typed.subject_secret.clone()), b.stored_secret(&alice).await);
    assert_eq!(alice_later, typed.subject_secret.subject("later.example"));
    assert_ne!(alice_later, a.old_formula("later.example", &alice).await);

    // Alice's password signs her in on B; carol had none.
    let addr: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
    assert!(typed.password.is_some() && carol_typed.password.is_none());
    assert_eq!(b.provider.check_password("alice", password, addr).await.expect("check"), Some(alice.clone()));
    assert_eq!(b.provider.check_password("alice", "another password!", addr).await.expect("check"), None);

    // B hands on what it received: the same secret, pins and password.
    let again: OidcPart = serde_json::from_value(b.export(&alice).await).expect("part");
    assert_eq!(again, typed);

    a.stop().await;
    b.stop().await;
}

/// A PHC string of `algorithm` with `params`, well formed but not what this node makes.
fn argon_hash(algorithm: &str, params: &str) -> String {
    let salt = sichat_core::ids::b64url(&[1u8; 16]);
    let hash = sichat_core::ids::b64url(&[2u8; 32]);
    format!("${algorithm}$v=19${params}${salt}${hash}")
}

async fn bad_parts_change_nothing(backend: Backend) {
    let Some(b) = Node::start(backend, "https://b.example").await else { return };
    let (alice, dave) = (new_id(), new_id());
    b.account(&alice, "alice").await;
    b.account(&dave, "dave").await;
    let secret = b64url(&[7u8; 32]);
    let pin = |sector: &str, sub: &str| json!({"sector": sector, "sub": sub});
    let good = json!({"subject_secret": secret, "pins": [pin("rp.example", "abc")]});
    // Dave already has a subject secret here.
    b.sub(&b.client("rp.example", false).await, &dave).await;
    let before = b.subject_rows().await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (&alice, json!({"subject_secret": secret, "pins": [], "extra": 1}), "unknown field"),
        (&alice, json!({"pins": []}), "missing field"),
        (&alice, json!({"subject_secret": b64url(&[7u8; 31]), "pins": []}), "32 bytes"),
        (&alice, json!({"subject_secret": format!("{secret}="), "pins": []}), "32 bytes"),
        (&alice, json!({"subject_secret": "!".repeat(43), "pins": []}), "32 bytes"),
        (&alice, json!({"subject_secret": secret, "pins": [pin("", "abc")]}), "the sector must be"),
        (&alice, json!({"subject_secret": secret, "pins": [pin(&"a".repeat(256), "abc")]}), "the sector must be"),
        (&alice, json!({"subject_secret": secret, "pins": [pin("rp.example", "")]}), "sub must be"),
        (&alice, json!({"subject_secret": secret, "pins": [pin("rp.example", &"s".repeat(256))]}), "sub must be"),
        (&alice, json!({"subject_secret": secret, "pins": [pin("rp.example", "a b")]}), "sub must be"),
        (
            &alice,
            json!({"subject_secret": secret, "pins": [pin("rp.example", "x"), pin("ok.example", "y"), pin("rp.example", "z")]}),
            "pin 2 (sector \"rp.example\"): the sector appears twice",
        ),
        (&alice, json!({"subject_secret": secret, "pins": {"rp.example": "x"}}), "pins"),
        (&alice, json!([1, 2]), "invalid type"),
        (&alice, json!({"subject_secret": secret, "pins": [], "password": "hunter2"}), "password: not a PHC string"),
        (
            &alice,
            json!({"subject_secret": secret, "pins": [], "password": argon_hash("argon2id", "m=4000000,t=2,p=1")}),
            "password: must be argon2id",
        ),
        (
            &alice,
            json!({"subject_secret": secret, "pins": [], "password": argon_hash("argon2i", "m=19456,t=2,p=1")}),
            "password: must be argon2id",
        ),
        (&dave, good.clone(), "already has pairwise subjects"),
    ];
    for (user, part, why) in cases {
        match b.import(user, part.clone()).await {
            Err(ImportError::Invalid(message)) => {
                assert!(message.starts_with("oidc part: "), "{message}");
                assert!(message.contains(why), "{part}: {message:?} should say {why:?}");
            }
            other => panic!("{part}: expected a refusal, got {other:?}"),
        }
        assert_eq!(b.subject_rows().await, before, "{part} changed nothing");
    }
    // The same part, well formed, is taken; `null` moves nothing.
    b.import(&alice, good).await.expect("a good part");
    assert_eq!(b.sub(&b.client("rp.example", false).await, &alice).await, "abc");
    let erin = new_id();
    b.account(&erin, "erin").await;
    let after = b.subject_rows().await;
    b.import(&erin, Value::Null).await.expect("null");
    assert_eq!(b.subject_rows().await, after);
    b.stop().await;
}

async fn moving_and_removing_end_what_the_account_held(backend: Backend) {
    let Some(a) = Node::start(backend, "https://a.example").await else { return };
    let (alice, bob) = (new_id(), new_id());
    a.account(&alice, "alice").await;
    a.account(&bob, "bob").await;
    let rp = a.client("rp.example", false).await;
    for user in [&alice, &bob] {
        a.provider.consent(user, &rp.id, "openid").await.expect("consent");
        a.provider.start_session(user, SignIn::Password, "127.0.0.1").await.expect("session");
        a.sub(&rp, user).await;
    }
    sqlx::query("INSERT INTO oidc_subject_pins (user_id, sector, sub) VALUES ($1, 'old.example', 'x')")
        .bind(&alice)
        .execute(a.db().pool())
        .await
        .expect("pin");

    let mut tx = a.db().pool().begin().await.expect("begin");
    a.hooks.account_moved(&mut tx, &alice).await.expect("moved");
    tx.commit().await.expect("commit");
    assert_eq!(a.count("oidc_consents", &alice).await, 0);
    assert_eq!(a.count("oidc_sessions", &alice).await, 0);
    assert_eq!(a.count("oidc_subject_secrets", &alice).await, 1, "the secret stays");
    assert_eq!((a.count("oidc_consents", &bob).await, a.count("oidc_sessions", &bob).await), (1, 1), "bob's stay");

    let mut tx = a.db().pool().begin().await.expect("begin");
    let removal = Removal { user_id: &alice, device_ids: &[] };
    a.hooks.account_removed(&mut tx, removal).await.expect("removed");
    tx.commit().await.expect("commit");
    assert_eq!(a.count("oidc_subject_secrets", &alice).await, 0);
    assert_eq!(a.count("oidc_subject_pins", &alice).await, 0);
    assert_eq!(a.count("oidc_subject_secrets", &bob).await, 1);
    a.stop().await;
}

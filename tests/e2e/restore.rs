//! `sichatd admin restore` (the real binary, both backends): a backup from `admin backup`
//! goes back in place of the database, and what came after it is gone; the database it
//! replaced is kept. A damaged backup, one of a newer schema, one under another master key,
//! or a restore with no master key at all is refused and changes nothing; and a node never
//! makes a new master key for a database that was made with one.

use crate::portable_did::issue;
use serde_json::Value;
use sichat_core::seal::MasterKey;
use sichat_e2e::{json, sichat, sichatd, stderr, storage_tests, Backend, TestApp};
use std::path::Path;
use std::process::Output;

storage_tests!(
    a_backup_restores_and_bad_ones_change_nothing,
    devices_added_after_a_backup_are_blessed_again,
    messages_delivered_after_a_backup_come_again,
    a_did_webvh_account_catches_up_after_a_restore,
    messages_handed_over_after_a_backup_are_handed_over_again,
);

async fn users(data: &Path, db: &str) -> Vec<String> {
    let out = sichatd(data, db, &["admin", "users", "--json"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out).as_array().expect("users").iter().map(|u| u["name"].as_str().expect("name").to_owned()).collect()
}

async fn a_backup_restores_and_bad_ones_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let (data, db) = (app.node.config.data_dir.clone(), app.node.config.database_url());
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.wallet("bob");
    assert!(sichat(&bob, &["init"]).await.status.success());
    let bob_did = json(&sichat(&bob, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let (first_id, cred) = issue(&app, &alice, &bob_did, "vc+jwt").await;
    let kit = app.dir.path().join("kit.json");
    let out = sichat(&alice, &["recovery", "setup", "--out", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = app.dir.path().join("backup");
    let out = sichatd(&data, &db, &["admin", "backup", backup.to_str().expect("path")], &[]).await;
    assert!(out.status.success(), "backup: {}", stderr(&out));
    // After the backup: carol joins, alice revokes what she issued before, issues two more
    // (one in each format), and rotates her root key.
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let out = sichat(&alice, &["credential", "revoke", &first_id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (later_id, later) = issue(&app, &alice, &bob_did, "vc+jwt").await;
    let (later_ldp_id, later_ldp) = issue(&app, &alice, &bob_did, "ldp_vc").await;
    let tablet = app.wallet("tablet");
    let out = sichat(&alice, &["device", "add", "--name", "tablet", "--out", tablet.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["key", "rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let port = url::Url::parse(&app.url).expect("url").port().expect("port");
    let stopped = app.stop_keeping().await;
    let key_file = std::fs::read(data.join("master.key")).expect("master.key");
    assert_eq!(users(&data, &db).await, ["alice", "carol"]);

    let refused = |out: &Output, says: &str| {
        assert!(!out.status.success(), "{says}: it was accepted");
        assert!(stderr(out).contains(says), "{says}: {}", stderr(out));
    };
    // Without --yes, and no terminal: it asks first.
    let out = sichatd(&data, &db, &["admin", "restore", "--from", backup.to_str().expect("path")], &[]).await;
    refused(&out, "--yes");
    // Damaged: bytes overwritten in the middle.
    let damaged = stopped_copy(&backup, "damaged");
    let mut bytes = std::fs::read(&damaged).expect("read");
    let (mid, len) = (bytes.len() / 2, bytes.len());
    bytes[mid..mid + 4096.min(len - mid)].fill(0x5a);
    std::fs::write(&damaged, &bytes).expect("write");
    let out = sichatd(&data, &db, &["admin", "restore", "--yes", "--from", damaged.to_str().expect("path")], &[]).await;
    assert!(!out.status.success(), "a damaged backup was restored");
    // Under another master key.
    let other = MasterKey::generate().to_base64().as_str().to_owned();
    let out = sichatd(
        &data,
        &db,
        &["admin", "restore", "--yes", "--from", backup.to_str().expect("path")],
        &[("SICHAT_MASTER_KEY", &other)],
    )
    .await;
    refused(&out, "another master key");
    // Of a newer schema (SQLite: the backup is a database we can change).
    if backend == Backend::Sqlite {
        let newer = stopped_copy(&backup, "newer");
        let url = format!("sqlite://{}", newer.display());
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.expect("open");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from the future', TRUE, X'00', 0)",
        )
        .execute(&mut c)
        .await
        .expect("insert");
        drop(c);
        let out =
            sichatd(&data, &db, &["admin", "restore", "--yes", "--from", newer.to_str().expect("path")], &[]).await;
        refused(&out, "newer than this sichatd");
    }
    // A data directory with no master key: refused, and no key is made.
    let bare = stopped.config.data_dir.parent().expect("parent").join("bare");
    std::fs::create_dir_all(&bare).expect("dir");
    let out = sichatd(&bare, &db, &["admin", "restore", "--yes", "--from", backup.to_str().expect("path")], &[]).await;
    refused(&out, "no master key");
    assert!(!bare.join("master.key").exists());
    // Nothing changed.
    assert_eq!(users(&data, &db).await, ["alice", "carol"]);
    assert_eq!(std::fs::read(data.join("master.key")).expect("master.key"), key_file);

    if backend == Backend::Postgres {
        // A connection is still open (here: the stopped in-process node's listener, as a
        // running node's would be): the database cannot be set aside, and nothing changed.
        let from = backup.to_str().expect("path");
        let out = sichatd(&data, &db, &["admin", "restore", "--yes", "--from", from], &[]).await;
        refused(&out, "stop the node");
        assert_eq!(users(&data, &db).await, ["alice", "carol"]);
        let mut c =
            <sqlx::PgConnection as sqlx::Connection>::connect(&sichat_e2e::postgres_admin_url()).await.expect("pg");
        let name = url::Url::parse(&db).expect("url").path().trim_start_matches('/').to_owned();
        let scratch: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{name}_restore_%"))
            .fetch_one(&mut c)
            .await
            .expect("count");
        assert_eq!(scratch, 0, "the scratch database is gone");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .execute(&mut c)
        .await
        .expect("end the stopped node's connections");
    }

    // The restore.
    let out =
        sichatd(&data, &db, &["admin", "restore", "--yes", "--json", "--from", backup.to_str().expect("path")], &[])
            .await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let restored: Value = json(&out);
    let kept = restored["kept"].as_str().expect("kept").to_owned();
    assert_eq!(users(&data, &db).await, ["alice"], "carol came after the backup");

    // The node starts on it: alice signs in, what she issued verifies; carol is unknown.
    let app = stopped.serve_at(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let out = sichat(&alice, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "alice after the restore: {}", stderr(&out));
    let report = app.node.verifier.verify(&cred, &sichat_verifier::Options::default()).await;
    assert!(
        report.valid,
        "the revocation came after the backup: {}",
        serde_json::to_string(&report).unwrap_or_default()
    );
    assert!(!sichat(&carol, &["device", "list"]).await.status.success());

    // Alice's wallet kept what it issued and the status it set: the node takes them back.
    let out = sichat(&alice, &["--json", "credential", "reinstate"]).await;
    assert!(out.status.success(), "reinstate: {}", stderr(&out));
    let outcomes = json(&out);
    let outcome =
        |id: &str| outcomes.as_array().into_iter().flatten().find(|o| o["id"] == id).map(|o| o["outcome"].clone());
    assert_eq!(outcome(&first_id), Some(Value::from("revoked")), "{outcomes}");
    assert_eq!(outcome(&later_id), Some(Value::from("reinstated")), "{outcomes}");
    assert_eq!(outcome(&later_ldp_id), Some(Value::from("reinstated")), "{outcomes}");
    let report = app.node.verifier.verify(&cred, &sichat_verifier::Options::default()).await;
    assert!(!report.valid, "revoked again");
    for (id, c) in [(&later_id, &later), (&later_ldp_id, &later_ldp)] {
        let out = sichat(&alice, &["credential", "revoke", id]).await;
        assert!(out.status.success(), "a credential issued after the backup can be revoked: {}", stderr(&out));
        let report = app.node.verifier.verify(c, &sichat_verifier::Options::default()).await;
        assert!(!report.valid, "{id} is revoked");
    }
    // Again: nothing more to do.
    let out = sichat(&alice, &["--json", "credential", "reinstate"]).await;
    assert!(json(&out).as_array().into_iter().flatten().all(|o| o["outcome"] == "known"), "{}", json(&out));
    // Dave cannot pass alice's credentials off as his own issuance.
    let dave = app.join("dave", &app.invite(&alice, 1).await).await;
    let token = sichat_e2e::session_token(&app, &dave).await;
    let r = app
        .http
        .post(format!("{}/api/v1/issuer/credentials/reinstate", app.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"credentials": [{"format": "vc+jwt", "credential": later, "status": "active"}]}))
        .send()
        .await
        .expect("POST");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body[0]["outcome"], "refused", "{body}");
    // Her root key is newer than the restored node's: her wallet shows the node the rotation
    // it signed (each rotation signed by the key before), the node follows it (`catch_up`),
    // and the root operation goes through.
    let restored_root = root_key_of(&app, "alice").await;
    let phone = app.wallet("phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "after the restore: {}", stderr(&out));
    assert!(stderr(&out).contains("restored from a backup made before you rotated"), "{}", stderr(&out));
    let caught_up = root_key_of(&app, "alice").await;
    assert_ne!(caught_up, restored_root, "the node held the key from before the rotation");
    let out = sichat(&alice, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out).as_array().map(Vec::len),
        Some(3),
        "alice's laptop, the tablet, the new phone: {}",
        json(&out)
    );
    assert!(sichat(&phone, &["device", "list"]).await.status.success(), "the phone signs in");
    let out = sichat(&tablet, &["device", "list"]).await;
    assert!(out.status.success(), "the tablet, added after the backup, is back: {}", stderr(&out));
    // The recovery kit made before the backup still works.
    let again = app.wallet("alice-again");
    let out = sichat(&again, &["recovery", "restore", "--kit", kit.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&again, &["key", "rotate"]).await;
    assert!(out.status.success(), "back in: {}", stderr(&out));

    // A node never makes a new master key for a database made with one.
    let out = sichatd(&bare, &db, &["admin", "users"], &[]).await;
    refused(&out, "made with a master key");
    assert!(!bare.join("master.key").exists(), "no wrong master.key left behind");
    app.stop().await;

    if backend == Backend::Postgres {
        let admin = sichat_e2e::postgres_admin_url();
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("admin");
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{kept}\" WITH (FORCE)")).execute(&mut c).await.expect("drop");
    }
}

/// The root key the node holds for `name`.
async fn root_key_of(app: &TestApp, name: &str) -> String {
    use sqlx::Row;
    sqlx::query("SELECT root_key FROM acct_users WHERE name = $1")
        .bind(name)
        .fetch_one(app.node.db.pool())
        .await
        .expect("user")
        .get("root_key")
}

fn stopped_copy(backup: &Path, name: &str) -> std::path::PathBuf {
    let copy = backup.with_file_name(name);
    std::fs::copy(backup, &copy).expect("copy");
    copy
}

/// End every connection to `db` but ours (the stopped in-process node's pool).
async fn end_connections(db: &str) {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&sichat_e2e::postgres_admin_url()).await.expect("pg");
    let name = url::Url::parse(db).expect("url").path().trim_start_matches('/').to_owned();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&mut c)
    .await
    .expect("end connections");
}

/// `sichatd admin backup` of `app`'s database to `to`.
async fn back_up(app: &TestApp, to: &Path) {
    let (data, db) = (&app.node.config.data_dir, app.node.config.database_url());
    let out = sichatd(data, &db, &["admin", "backup", to.to_str().expect("path")], &[]).await;
    assert!(out.status.success(), "backup: {}", stderr(&out));
}

/// Stop `app`, `sichatd admin restore` `backup` in place of its database (`--json`: what
/// the restore said), and serve it again at the same address.
async fn restored(app: TestApp, backup: &Path) -> (TestApp, Value) {
    let (data, db) = (app.node.config.data_dir.clone(), app.node.config.database_url());
    let port = url::Url::parse(&app.url).expect("url").port().expect("port");
    let stopped = app.stop_keeping().await;
    if db.starts_with("postgres") {
        end_connections(&db).await;
    }
    let out =
        sichatd(&data, &db, &["admin", "restore", "--yes", "--json", "--from", backup.to_str().expect("path")], &[])
            .await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    (stopped.serve_at(format!("127.0.0.1:{port}").parse().expect("addr")).await, json(&out))
}

/// A restore with no root rotation since the backup: the devices the root-key wallet added
/// after it are unknown to the node until `sichat device reconcile` blesses them again.
async fn devices_added_after_a_backup_are_blessed_again(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let db = app.node.config.database_url();
    let alice = app.join("alice", &app.owner_invite).await;
    let backup = app.dir.path().join("backup");
    back_up(&app, &backup).await;
    let tablet = app.wallet("tablet");
    let out = sichat(&alice, &["device", "add", "--name", "tablet", "--out", tablet.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (app, _) = restored(app, &backup).await;
    assert!(!sichat(&tablet, &["device", "list"]).await.status.success(), "the restored node does not know it");

    let out = sichat(&alice, &["--json", "device", "reconcile"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["added"].as_array().map(Vec::len), Some(1), "{}", json(&out));
    let out = sichat(&tablet, &["device", "list"]).await;
    assert!(out.status.success(), "the tablet signs in again: {}", stderr(&out));
    let out = sichat(&alice, &["--json", "device", "reconcile"]).await;
    assert_eq!(json(&out)["added"], serde_json::json!([]), "nothing more to do");
    // A device the wallet revoked is not brought back.
    let id = json(&sichat(&tablet, &["--json", "whoami"]).await)["device_id"].as_str().expect("id").to_owned();
    let out = sichat(&alice, &["device", "revoke", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["--json", "device", "reconcile"]).await;
    assert_eq!(json(&out)["added"], serde_json::json!([]), "{}", json(&out));
    assert!(!sichat(&tablet, &["device", "list"]).await.status.success());
    app.stop().await;
    if backend == Backend::Postgres {
        drop_kept_databases(&db).await;
    }
}

/// Drop the databases `sichatd admin restore` kept of `db`.
async fn drop_kept_databases(db: &str) {
    let name = url::Url::parse(db).expect("url").path().trim_start_matches('/').to_owned();
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&sichat_e2e::postgres_admin_url()).await.expect("pg");
    let kept: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(format!("{name}_before_restore%"))
        .fetch_all(&mut c)
        .await
        .expect("kept");
    for k in kept {
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{k}\" WITH (FORCE)")).execute(&mut c).await.expect("drop");
    }
}

/// Other nodes delivered messages to bob after the backup and were told "delivered"; no
/// device fetched them, so the restore loses them. Each node notices the restored node's new
/// mailbox epoch and delivers them again: alice's asks (every second here), carol's hears it
/// in the answer to her next message. What the restored mailbox still had is recognised,
/// not kept twice.
async fn messages_delivered_after_a_backup_come_again(backend: Backend) {
    use crate::messaging::{delivered, inbox, send, texts};
    let Some(a) = TestApp::spawn_with(backend, |c| c.msg_peer_check_secs = 1).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let Some(c) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let carol = c.join("carol", &c.owner_invite).await;
    let bob_did = json(&sichat(&bob, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let before = send(&alice, &bob_did, "before the backup", &[]).await;
    delivered(&alice, &before).await;
    let db = b.node.config.database_url();
    let backup = a.dir.path().join("backup-of-b");
    back_up(&b, &backup).await;
    let after = send(&alice, &bob_did, "after the backup", &[]).await;
    delivered(&alice, &after).await;
    let carols = send(&carol, &bob_did, "carol after the backup", &[]).await;
    delivered(&carol, &carols).await;

    let (b, said) = restored(b, &backup).await;
    assert!(said["mailbox_epoch"].is_string(), "{said}");
    let nudge = send(&carol, &bob_did, "carol after the restore", &[]).await;
    delivered(&carol, &nudge).await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let listing = loop {
        let listing = inbox(&bob, &["--requests"]).await;
        let got = texts(&listing);
        if ["after the backup", "carol after the backup"].iter().all(|t| got.iter().any(|g| g == t)) {
            break listing;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered again: {listing}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let mut all = texts(&listing);
    all.sort();
    assert_eq!(
        all,
        ["after the backup", "before the backup", "carol after the backup", "carol after the restore"],
        "each once: {listing}"
    );
    delivered(&alice, &after).await;
    delivered(&carol, &carols).await;
    let redeliveries: i64 = sqlx::query_scalar("SELECT redeliveries FROM msg_outbox WHERE id = $1")
        .bind(&after)
        .fetch_one(a.node.db.pool())
        .await
        .expect("outbox");
    assert_eq!(redeliveries, 1);
    // A node that is asked again and names the same epoch gets nothing more.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let again: i64 = sqlx::query_scalar("SELECT MAX(redeliveries) FROM msg_outbox")
        .fetch_one(a.node.db.pool())
        .await
        .expect("outbox");
    assert_eq!(again, 1);
    b.stop().await;
    a.stop().await;
    c.stop().await;
    if backend == Backend::Postgres {
        drop_kept_databases(&db).await;
    }
}

/// A did:webvh account rotates its root key after the backup: the restored node's log ends
/// before the rotation. The wallet kept the log; at its next root operation it hands the
/// node the entries it lost with the rotations, and the log goes on from there.
async fn a_did_webvh_account_catches_up_after_a_restore(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let db = app.node.config.database_url();
    let alice = app.join("alice", &app.owner_invite).await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let webvh = json(&out)["did"].as_str().expect("did").to_owned();
    let backup = app.dir.path().join("backup");
    back_up(&app, &backup).await;
    let out = sichat(&alice, &["key", "rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated = root_key_of(&app, "alice").await;
    let log = |app: &TestApp| {
        let url = format!("{}/users/alice/did.jsonl", app.url);
        let http = app.http.clone();
        async move { http.get(url).send().await.expect("GET").text().await.expect("log") }
    };
    let entries = |raw: &str| raw.lines().filter(|l| !l.trim().is_empty()).count();
    let before_restore = log(&app).await;

    let (app, _) = restored(app, &backup).await;
    assert_eq!(entries(&log(&app).await), entries(&before_restore) - 1, "the rotation's entry is lost");

    let phone = app.wallet("phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "after the restore: {}", stderr(&out));
    assert!(stderr(&out).contains("restored from a backup made before you rotated"), "{}", stderr(&out));
    assert_eq!(root_key_of(&app, "alice").await, rotated);
    let raw = log(&app).await;
    assert!(raw.starts_with(&before_restore), "the lost entries came back as they were signed");
    assert_eq!(entries(&raw), entries(&before_restore) + 2, "then the catch-up's entry and the phone's");
    let verified = sichat_core::webvh::verify_log(&webvh, &raw).await.expect("the log verifies");
    assert!(verified.update_keys.contains(&rotated), "{:?}", verified.update_keys);
    assert!(sichat(&phone, &["device", "list"]).await.status.success(), "the phone signs in");
    app.stop().await;
    if backend == Backend::Postgres {
        drop_kept_databases(&db).await;
    }
}

/// Bob hands his node a message after its backup, while carol's node is down; the restore
/// loses it from the node's outbox. Bob's wallet kept it until delivered: at his next inbox
/// the node has no trace of it, so the wallet hands it over again, and carol gets it once.
async fn messages_handed_over_after_a_backup_are_handed_over_again(backend: Backend) {
    use crate::messaging::{delivered, inbox, send, texts};
    let Some(b) = TestApp::spawn(backend).await else { return };
    let Some(c) = TestApp::spawn(backend).await else { return };
    let bob = b.join("bob", &b.owner_invite).await;
    let carol = c.join("carol", &c.owner_invite).await;
    let carol_did = json(&sichat(&carol, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let first = send(&bob, &carol_did, "first", &[]).await;
    delivered(&bob, &first).await;
    let db = b.node.config.database_url();
    let backup = b.dir.path().join("backup");
    back_up(&b, &backup).await;
    let c_port = url::Url::parse(&c.url).expect("url").port().expect("port");
    let c_stopped = c.stop_keeping().await;
    let waiting = send(&bob, &carol_did, "while carol's node is down", &[]).await;

    let (b, _) = restored(b, &backup).await;
    let c = c_stopped.serve_at(format!("127.0.0.1:{c_port}").parse().expect("addr")).await;

    let out = sichat(&bob, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("handed it over again"), "{}", stderr(&out));
    delivered(&bob, &waiting).await;
    let listing = inbox(&carol, &["--requests"]).await;
    let mut got = texts(&listing);
    got.sort();
    assert_eq!(got, ["first", "while carol's node is down"], "each once: {listing}");
    // Delivered: the wallet lets it go, and asks no more.
    let out = sichat(&bob, &["--json", "message", "inbox"]).await;
    assert!(!stderr(&out).contains("handed it over again"), "{}", stderr(&out));
    b.stop().await;
    c.stop().await;
    if backend == Backend::Postgres {
        drop_kept_databases(&db).await;
    }
}

//! The real `sichatd` process: first start, restart, signals, configuration, admin.

use sichat_e2e::{binary, sichat, stderr, Backend, TempDir, TestDb, Watch};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn sichatd(data: &Path, db: &str) -> Command {
    let mut c = Command::new(binary("sichatd"));
    c.arg("--data-dir").arg(data).arg("--database-url").arg(db).env_remove("SICHAT_MASTER_KEY").stdin(Stdio::null());
    c
}

/// Start `sichatd serve` and read its banner: through the join command when a fresh
/// node prints an owner invite, else through the data line.
/// Its log (stderr) goes to `<data>/../sichatd-<port>.log`.
async fn start(data: &Path, db: &str, port: u16, expect_invite: bool) -> (Child, Vec<String>) {
    start_env(data, db, port, expect_invite, &[]).await
}

pub(crate) async fn start_env(
    data: &Path,
    db: &str,
    port: u16,
    expect_invite: bool,
    env: &[(&str, &str)],
) -> (Child, Vec<String>) {
    let log = std::fs::File::create(log_path(data, port)).expect("log file");
    let mut child = sichatd(data, db)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sichatd");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let last = if expect_invite { "sichat init --server" } else { "master key:" };
    let mut banner = Vec::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains(last);
            banner.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("sichatd printed its banner");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

fn log_path(data: &Path, port: u16) -> std::path::PathBuf {
    data.parent().expect("parent").join(format!("sichatd-{port}.log"))
}

pub(crate) async fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits on SIGTERM").expect("wait")
}

pub(crate) fn field(banner: &[String], label: &str) -> String {
    banner
        .iter()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {label} in {banner:?}"))
}

async fn first_start_restart_and_admin(backend: Backend) {
    let dir = TempDir::new("proc");
    let Some(db) = TestDb::create(backend, dir.path()).await else { return };
    let data = dir.path().join("data");
    let port = free_port();
    let (mut node, banner) = start(&data, &db.url, port, true).await;
    let url = field(&banner, "URL:");
    let did = field(&banner, "DID:");
    assert_eq!(url, format!("http://localhost:{port}"));
    assert_eq!(did, format!("did:web:localhost%3A{port}"));
    let idx = banner.iter().position(|l| l.contains("owner invite")).expect("owner invite printed");
    let invite = banner[idx + 1].trim().to_owned();

    // The data directory and its master key are private.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("master.key")).expect("key").permissions().mode() & 0o777, 0o600);

    let health = reqwest::get(format!("{url}/healthz")).await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let metrics = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("sichat_http_requests_total"), "{metrics}");

    let wallet = dir.path().join("alice");
    let out = sichat(&wallet, &["init", "--server", &url, "--invite", &invite, "--name", "alice"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let doc_before =
        reqwest::get(format!("{url}/users/alice/did.json")).await.expect("doc").text().await.expect("text");

    // A note to herself puts the messaging writer to work. On PostgreSQL it keeps a
    // connection between batches, which shutdown must take back rather than wait on.
    let out = sichat(&wallet, &["--json", "message", "send", &format!("alice@localhost:{port}"), "a note"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let arrived = async {
        loop {
            let out = sichat(&wallet, &["--json", "message", "inbox"]).await;
            assert!(out.status.success(), "{}", stderr(&out));
            if String::from_utf8_lossy(&out.stdout).contains("a note") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), arrived).await.expect("the note arrives");

    // A device watching live hears that the node is going away, not a dropped connection.
    let mut watch = Watch::start(&wallet);
    watch.expect("stderr", "Watching for messages").await;

    // SIGTERM: a clean exit.
    let status = sigterm(&mut node).await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    watch.expect("stderr", "(your node is shutting down or restarting); reconnecting").await;

    // Restart: same DIDs, same document, no new owner invite.
    let (mut node, banner) = start(&data, &db.url, port, false).await;
    assert_eq!(field(&banner, "DID:"), did);
    assert!(!banner.iter().any(|l| l.contains("owner invite")), "{banner:?}");
    let doc_after = reqwest::get(format!("{url}/users/alice/did.json")).await.expect("doc").text().await.expect("text");
    assert_eq!(doc_before, doc_after);
    assert!(sichat(&wallet, &["device", "list"]).await.status.success(), "the wallet still logs in");

    // Admin works on the data directory beside the running node.
    // No --public-url: admin uses the URL the node remembered from its first start.
    let admin = |args: &[&str]| {
        let mut c = sichatd(&data, &db.url);
        c.args(args);
        c.output()
    };
    let users = admin(&["admin", "users", "--json"]).await.expect("admin users");
    let users: serde_json::Value = serde_json::from_slice(&users.stdout).expect("json");
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["did"], format!("{did}:users:alice"));
    let inv = admin(&["admin", "invite", "--quota", "3", "--json"]).await.expect("admin invite");
    let code: serde_json::Value = serde_json::from_slice(&inv.stdout).expect("json");
    let bob = dir.path().join("bob");
    let code = code["code"].as_str().expect("code");
    let out = sichat(&bob, &["init", "--server", &url, "--invite", code, "--name", "bob"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let removed = admin(&["admin", "remove", "bob"]).await.expect("admin remove");
    assert!(removed.status.success(), "{}", stderr(&removed));
    let gone = reqwest::get(format!("{url}/users/bob/did.json")).await.expect("doc");
    assert_eq!(gone.status().as_u16(), 410);

    if backend == Backend::Sqlite {
        let copy = dir.path().join("backup.db");
        let out = admin(&["admin", "backup", copy.to_str().expect("path")]).await.expect("backup");
        assert!(out.status.success(), "{}", stderr(&out));
        let db = sichat_core::db::Db::open(&sichat_core::db::Db::sqlite_url(&copy)).await.expect("backup opens");
        let n: i64 = sqlx::Row::get(
            &sqlx::query("SELECT COUNT(*) AS n FROM acct_users").fetch_one(db.pool()).await.expect("q"),
            "n",
        );
        assert_eq!(n, 2, "the copy holds alice and bob's tombstone");
        let again = admin(&["admin", "backup", copy.to_str().expect("path")]).await.expect("backup");
        assert!(stderr(&again).contains("already exists"));
    }
    sigterm(&mut node).await;

    // Listening elsewhere does not move the DIDs: the public URL is remembered.
    let (mut node, banner) = start(&data, &db.url, free_port(), false).await;
    assert_eq!(field(&banner, "DID:"), did);
    assert_eq!(field(&banner, "URL:"), url);
    sigterm(&mut node).await;

    // The wrong master key is a clear error, and changes nothing.
    let out = sichatd(&data, &db.url)
        .env("SICHAT_MASTER_KEY", "A".repeat(43))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("master key does not open"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_restart_and_admin_sqlite() {
    sichat_e2e::or_hung(first_start_restart_and_admin(Backend::Sqlite)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_restart_and_admin_postgres() {
    sichat_e2e::or_hung(first_start_restart_and_admin(Backend::Postgres)).await
}

/// Debug logging of a registration and an OpenID4VCI issuance with a PIN: no invite code,
/// pre-authorized code, master key or passphrase in what sichatd writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_the_logs() {
    sichat_e2e::or_hung(secrets_stay_out_of_the_logs_run()).await
}

async fn secrets_stay_out_of_the_logs_run() {
    let dir = TempDir::new("logs");
    let Some(db) = TestDb::create(Backend::Sqlite, dir.path()).await else { return };
    let data = dir.path().join("data");
    let port = free_port();
    let (mut node, banner) = start_env(&data, &db.url, port, true, &[("RUST_LOG", "debug")]).await;
    let url = field(&banner, "URL:");
    let idx = banner.iter().position(|l| l.contains("owner invite")).expect("invite");
    let invite = banner[idx + 1].trim().to_owned();

    let alice = dir.path().join("alice");
    let out = sichat(&alice, &["init", "--server", &url, "--invite", &invite, "--name", "alice"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(
        &alice,
        &[
            "--json",
            "credential",
            "offer",
            "--type",
            "FriendCredential",
            "--to",
            "anyone",
            "--claim",
            "name=C",
            "--pin",
        ],
    )
    .await;
    let offer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let uri = offer["offer_uri"].as_str().expect("uri").to_owned();
    let pin = offer["tx_code"].as_str().expect("pin").to_owned();
    let code = uri.rsplit("%2F").next().expect("code").to_owned();
    let carol = dir.path().join("carol");
    assert!(sichat(&carol, &["init"]).await.status.success());
    let out = sichat(&carol, &["--allow-local-network", "credential", "receive", &uri, "--pin", &pin]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    sigterm(&mut node).await;

    let log = std::fs::read_to_string(log_path(&data, port)).expect("log");
    assert!(log.contains("oid4vci/token"), "debug logging was on and saw the token endpoint's route");
    let master = std::fs::read_to_string(data.join("master.key")).expect("master key");
    for (what, secret) in [
        ("invite code", invite.as_str()),
        ("pre-authorized code", code.as_str()),
        ("master key", master.trim()),
        ("wallet passphrase", sichat_e2e::PASSPHRASE),
        ("PIN", &format!("tx_code={pin}")),
    ] {
        assert!(secret.len() >= 6, "{what} is a real value");
        assert!(!log.contains(secret), "the {what} reached the log");
    }
}

/// The database, its WAL and shared-memory files and backups are private (0600), one made
/// readable by an older version is made private, a data directory open to others is
/// warned about, and a log written to a file has no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private_and_file_logs_are_plain() {
    sichat_e2e::or_hung(database_files_are_private_and_file_logs_are_plain_run()).await
}

async fn database_files_are_private_and_file_logs_are_plain_run() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode();
    let dir = TempDir::new("modes");
    let Some(db) = TestDb::create(Backend::Sqlite, dir.path()).await else { return };
    let file = dir.path().join("test.db");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = free_port();
    let (mut node, banner) = start(&data, &db.url, port, true).await;
    let url = field(&banner, "URL:");
    assert_eq!(reqwest::get(format!("{url}/healthz")).await.expect("healthz").status().as_u16(), 200);
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("test.db{suffix}"));
        assert_eq!(mode(&path) & 0o777, 0o600, "{}", path.display());
    }
    let copy = dir.path().join("backup.db");
    let out = sichatd(&data, &db.url).args(["admin", "backup"]).arg(&copy).output().await.expect("backup");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&copy) & 0o777, 0o600, "the backup is private");
    sigterm(&mut node).await;

    let log = std::fs::read_to_string(log_path(&data, port)).expect("log");
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains("\x1b["), "colour codes in a log file: {log:?}");
    assert!(log.contains("open to other users"), "no warning about the data directory: {log}");

    // A database left readable by others (an older version made it so) is made private.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let port = free_port();
    let (mut node, _) = start(&data, &db.url, port, false).await;
    assert_eq!(mode(&file) & 0o777, 0o600);
    sigterm(&mut node).await;
    let log = std::fs::read_to_string(log_path(&data, port)).expect("log");
    assert!(log.contains("made it private"), "{log}");
}

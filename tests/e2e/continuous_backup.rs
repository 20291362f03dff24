//! The continuous-backup paths README documents, drilled.
//!
//! PostgreSQL: a cluster that archives its WAL (`archive_mode`, `archive_command`), a base
//! backup (`pg_basebackup`), sichatd writing after it, the cluster lost, and a new one made
//! from the base backup and the archive (`restore_command`, `recovery.signal`). What sichatd
//! wrote after the base backup is there, and sichatd opens the restored database.
//! PostgreSQL's own binaries, run as the `postgres` user on a port of their own.
//!
//! SQLite: Litestream (`SICHAT_LITESTREAM`, installed by `.ci/run`) replicating the node's
//! database to a file replica while sichatd writes, the database lost, `litestream restore`,
//! and sichatd opening what came back, the last write included.
//!
//! Under `CI=true` a missing tool fails the test.

use sichat_e2e::{json, sichatd, stderr};
use std::path::{Path, PathBuf};
use std::process::Output;

fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path()).collect();
    versions.sort();
    versions.into_iter().rev().map(|v| v.join("bin").join(name)).find(|p| p.exists())
}

async fn as_postgres(bin: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin)
        .args(args)
        .output()
        .await
        .expect("runuser")
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
}

/// Stops the clusters under a directory when the test ends, passed or not.
struct StopClusters(PathBuf, Vec<PathBuf>);

impl Drop for StopClusters {
    fn drop(&mut self) {
        for data in &self.1 {
            if data.join("postmaster.pid").exists() {
                let _ = std::process::Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&self.0)
                    .args(["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"])
                    .output();
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn labels(db: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(db).await.expect("connect");
    sqlx::query_scalar("SELECT label FROM acct_invites WHERE label IS NOT NULL ORDER BY created_at")
        .fetch_all(&mut c)
        .await
        .expect("labels")
}

#[tokio::test]
async fn postgres_wal_archiving_restores_what_came_after_the_base_backup() {
    let (Some(initdb), Some(pg_ctl), Some(basebackup)) = (pg_bin("initdb"), pg_bin("pg_ctl"), pg_bin("pg_basebackup"))
    else {
        assert!(!sichat_e2e::in_ci(), "PostgreSQL's server binaries are missing and CI=true");
        eprintln!("!!!! skipped: PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) are not installed");
        return;
    };
    let dir = sichat_e2e::TempDir::new("wal");
    let root = dir.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (primary, archive, base, restored) =
        (root.join("primary"), root.join("archive"), root.join("base"), root.join("restored"));
    let _stop = StopClusters(pg_ctl.clone(), vec![primary.clone(), restored.clone()]);
    let s = |p: &Path| p.to_str().expect("path").to_owned();
    ok(&as_postgres(Path::new("/bin/mkdir"), &["-p", &s(&archive)]).await, "mkdir");
    ok(&as_postgres(&initdb, &["-D", &s(&primary), "--auth=trust", "-U", "postgres"]).await, "initdb");
    let port = free_port();
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\nwal_level = replica\n\
         archive_mode = on\narchive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\n",
        root = s(root),
        archive = s(&archive)
    );
    let append = |path: PathBuf, text: String| {
        let mut all = std::fs::read_to_string(&path).expect("conf");
        all.push_str(&text);
        std::fs::write(&path, all).expect("conf");
    };
    append(primary.join("postgresql.conf"), conf.clone());
    let log = s(&root.join("primary.log"));
    ok(&as_postgres(&pg_ctl, &["-D", &s(&primary), "-l", &log, "-w", "start"]).await, "start the primary");
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let db = format!("postgres://postgres@127.0.0.1:{port}/sichat");
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("connect");
    sqlx::query("CREATE DATABASE sichat").execute(&mut c).await.expect("create");

    let data = root.join("node");
    let out = sichatd(&data, &db, &["admin", "invite", "--quota", "2", "--label", "before the base backup"], &[]).await;
    ok(&out, "sichatd before");
    ok(
        &as_postgres(
            &basebackup,
            &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-D", &s(&base), "--checkpoint=fast"],
        )
        .await,
        "pg_basebackup",
    );
    let out = sichatd(&data, &db, &["admin", "invite", "--quota", "2", "--label", "after the base backup"], &[]).await;
    ok(&out, "sichatd after");
    // The segment holding that write is finished and archived.
    let segment: String =
        sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())").fetch_one(&mut c).await.expect("switch");
    for _ in 0..300 {
        if archive.join(&segment).exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(archive.join(&segment).exists(), "{segment} was archived");
    drop(c);

    // The primary's disk is lost.
    ok(&as_postgres(&pg_ctl, &["-D", &s(&primary), "-m", "immediate", "-w", "stop"]).await, "stop");
    std::fs::remove_dir_all(&primary).expect("lose the primary");

    // A new cluster from the base backup and the archive.
    ok(&as_postgres(Path::new("/bin/cp"), &["-a", &s(&base), &s(&restored)]).await, "copy the base backup");
    append(restored.join("postgresql.conf"), format!("restore_command = 'cp {}/%f %p'\n", s(&archive)));
    ok(&as_postgres(Path::new("/usr/bin/touch"), &[&s(&restored.join("recovery.signal"))]).await, "recovery.signal");
    let log = s(&root.join("restored.log"));
    ok(&as_postgres(&pg_ctl, &["-D", &s(&restored), "-l", &log, "-w", "-t", "60", "start"]).await, "start restored");
    // Recovery replays the archive, then the cluster takes writes again.
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("connect");
    for _ in 0..600 {
        let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut c).await.expect("q");
        if !recovering {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(c);
    assert_eq!(labels(&db).await, ["before the base backup", "after the base backup"]);
    // Recorded as a restore: other nodes deliver again what they delivered since.
    let out = sichatd(&data, &db, &["admin", "restored", "--json"], &[]).await;
    ok(&out, "sichatd admin restored");
    assert!(json(&out)["mailbox_epoch"].is_string(), "{}", json(&out));
    let out = sichatd(&data, &db, &["admin", "users", "--json"], &[]).await;
    ok(&out, "sichatd opens the restored database");
    assert!(json(&out).is_array());
    ok(&as_postgres(&pg_ctl, &["-D", &s(&restored), "-m", "fast", "-w", "stop"]).await, "stop restored");
}

#[tokio::test]
async fn sqlite_litestream_restores_the_writes_it_replicated() {
    let Some(litestream) = std::env::var_os("SICHAT_LITESTREAM").map(PathBuf::from).filter(|p| p.exists()) else {
        assert!(!sichat_e2e::in_ci(), "SICHAT_LITESTREAM names no Litestream binary and CI=true");
        eprintln!("!!!! skipped: no Litestream (SICHAT_LITESTREAM; .ci/run installs it)");
        return;
    };
    let dir = sichat_e2e::TempDir::new("litestream");
    let data = dir.path().join("node");
    let file = data.join("sichat.db");
    let db = sichat_core::db::Db::sqlite_url(&file);
    let replica = format!("file://{}", dir.path().join("replica").display());
    let invite = |label: &'static str| {
        let (data, db) = (data.clone(), db.clone());
        async move {
            let out = sichatd(&data, &db, &["admin", "invite", "--quota", "2", "--label", label], &[]).await;
            ok(&out, label);
        }
    };
    invite("before replication").await;
    let mut replicating = tokio::process::Command::new(&litestream)
        .arg("replicate")
        .arg(&file)
        .arg(&replica)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("litestream replicate");
    invite("while replicating").await;
    // Litestream ships each change within its sync interval (1 s): restore copies until one
    // holds the last write.
    let copy = dir.path().join("copy.db");
    let mut shipped = false;
    for _ in 0..120 {
        let _ = std::fs::remove_file(&copy);
        let out =
            tokio::process::Command::new(&litestream).arg("restore").arg("-o").arg(&copy).arg(&replica).output().await;
        if out.is_ok_and(|o| o.status.success())
            && labels(&sichat_core::db::Db::sqlite_url(&copy)).await.iter().any(|l| l == "while replicating")
        {
            shipped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(shipped, "the last write reached the replica");
    replicating.kill().await.expect("stop litestream");

    // The node's disk is lost; the database comes back from the replica.
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", file.display()));
    }
    let out = tokio::process::Command::new(&litestream)
        .arg("restore")
        .arg("-o")
        .arg(&file)
        .arg(&replica)
        .output()
        .await
        .expect("litestream restore");
    ok(&out, "litestream restore");
    let out = sichatd(&data, &db, &["admin", "restored", "--json"], &[]).await;
    ok(&out, "sichatd admin restored");
    assert!(json(&out)["mailbox_epoch"].is_string(), "{}", json(&out));
    let out = sichatd(&data, &db, &["admin", "users", "--json"], &[]).await;
    ok(&out, "sichatd opens the restored database");
    assert_eq!(labels(&db).await, ["before replication", "while replicating"]);
}

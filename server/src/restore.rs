//! `sichatd admin restore --from PATH`: put a backup made by `sichatd admin backup` in place
//! of the node's database, after checking it. Nothing changes when a check fails:
//!
//! - it is whole: SQLite's `integrity_check`; a pg_dump archive that `pg_restore` loads,
//!   into a scratch database, in one transaction;
//! - its schema is this build's or older (newer would need a newer `sichatd`); older ones
//!   are brought up to date at the next start, as after an upgrade;
//! - this node's master key opens its node key (a backup is useless without the master key
//!   it was sealed under, and the node never makes a new one for it);
//! - it is this node's: its node key is the one the database it replaces holds.
//!
//! The database it replaces is kept: SQLite's file (with its WAL) is renamed
//! `<file>.before-restore-<time>`; PostgreSQL's database is renamed
//! `<name>_before_restore_<time>` and the scratch one takes its name.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sichat_core::db::{latest_schema, schema_of, Backend};
use sichat_core::ids::{now_ms, random_token};
use sichat_core::node::NodeIdentity;
use sichat_core::seal::MasterKey;
use sqlx::{AnyConnection, Connection};
use std::path::{Path, PathBuf};

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// The node key (public) of the restored database.
    pub node_key: String,
    /// Its newest migration.
    pub schema: i64,
    /// Where the database it replaced is kept.
    pub kept: Option<String>,
    /// The new mailbox epoch: other nodes deliver again what they delivered here after the
    /// backup (up to six days back).
    pub mailbox_epoch: String,
}

pub async fn restore(config: &Config, from: &Path) -> Result<Restored> {
    sqlx::any::install_default_drivers();
    if !from.is_file() {
        bail!("{} is not a file: give the path `sichatd admin backup` wrote", from.display());
    }
    let env_key = std::env::var("SICHAT_MASTER_KEY").ok().filter(|v| !v.is_empty());
    let (master, _) = MasterKey::load(&config.data_dir, env_key.as_deref())?.ok_or_else(|| {
        anyhow::anyhow!(
            "no master key in {} (nor SICHAT_MASTER_KEY): put the master.key the backup was made with there first",
            config.data_dir.join("master.key").display()
        )
    })?;
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        restore_sqlite(&url, from, &master).await
    } else {
        restore_postgres(&url, from, &master).await
    }
}

/// The checks on a backup's database, on `c`: its schema, and its node key opened with
/// `master` and the same as `current`'s (the database it replaces), when that has one.
async fn check(
    c: &mut AnyConnection,
    backend: Backend,
    master: &MasterKey,
    current: Option<String>,
) -> Result<(String, i64)> {
    let schema = schema_of(c).await.context("the backup has no Sichat schema")?;
    let ours = latest_schema(backend);
    if schema > ours {
        bail!("the backup's schema ({schema}) is newer than this sichatd's ({ours}): restore it with a newer sichatd");
    }
    let key = NodeIdentity::key_in(c, master)
        .await
        .map_err(|e| anyhow::anyhow!("{e}: the backup was sealed under another master key"))?
        .ok_or_else(|| anyhow::anyhow!("the backup holds no node key: it is not a Sichat node's database"))?;
    if let Some(current) = current.filter(|c| *c != key) {
        bail!(
            "the backup is of another node (node key {key}, this database's is {current}): restore it into that \
             node's data directory"
        );
    }
    Ok((key, schema))
}

/// The node key of the database at `url` now, if it exists and has one.
async fn current_key(url: &str, master: &MasterKey) -> Result<Option<String>> {
    let Ok(mut c) = AnyConnection::connect(url).await else { return Ok(None) };
    let has_table: bool =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM node_keys").fetch_one(&mut c).await.is_ok();
    if !has_table {
        return Ok(None);
    }
    let key = NodeIdentity::key_in(&mut c, master).await.ok().flatten();
    c.close().await.ok();
    Ok(key)
}

async fn restore_sqlite(url: &str, from: &Path, master: &MasterKey) -> Result<Restored> {
    let target = url
        .strip_prefix("sqlite://")
        .map(|rest| PathBuf::from(rest.split_once('?').map_or(rest, |(p, _)| p)))
        .context("the database URL names no SQLite file")?;
    let current = match target.exists() {
        true => current_key(&format!("sqlite://{}?mode=ro", target.display()), master).await?,
        false => None,
    };
    let mut c = AnyConnection::connect(&format!("sqlite://{}?mode=ro", from.display()))
        .await
        .with_context(|| format!("{} is not a SQLite database", from.display()))?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .with_context(|| format!("{} is not a SQLite database", from.display()))?;
    if integrity != "ok" {
        bail!("{} is damaged (SQLite integrity_check: {integrity})", from.display());
    }
    let (node_key, schema) = check(&mut c, Backend::Sqlite, master, current).await?;
    c.close().await.ok();

    // Copy beside the target (private, synced), keep the old file with its WAL, then rename
    // the copy into place.
    let copy = sibling(&target, ".restoring");
    let _ = std::fs::remove_file(&copy);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&copy)?;
        std::io::copy(&mut std::fs::File::open(from)?, &mut out)?;
        out.sync_all()?;
    }
    let mut kept = None;
    if target.exists() {
        let stamp = format!(".before-restore-{}", now_ms());
        let old = sibling(&target, &stamp);
        std::fs::rename(&target, &old)?;
        for ext in ["-wal", "-shm"] {
            let side = sibling(&target, ext);
            if side.exists() {
                std::fs::rename(&side, sibling(&old, ext))?;
            }
        }
        kept = Some(old.display().to_string());
    }
    std::fs::rename(&copy, &target)?;
    if let Some(dir) = target.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    let mailbox_epoch = new_epoch(url).await?;
    Ok(Restored { node_key, schema, kept, mailbox_epoch })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

async fn restore_postgres(url: &str, from: &Path, master: &MasterKey) -> Result<Restored> {
    let parsed = url::Url::parse(url).context("the database URL")?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("the database URL must name the database (letters, digits, _ and -): {name:?}");
    }
    let at = |db: &str| {
        let mut u = parsed.clone();
        u.set_path(&format!("/{db}"));
        u.to_string()
    };
    let listed = tokio::process::Command::new("pg_restore")
        .arg("--list")
        .arg(from)
        .output()
        .await
        .context("restoring PostgreSQL needs pg_restore; install the postgresql-client package")?;
    if !listed.status.success() {
        bail!("{} is not a pg_dump archive pg_restore can read: {}", from.display(), first_line(&listed.stderr));
    }
    let current = current_key(url, master).await?;
    let scratch = format!("{name}_restore_{}", random_token().to_lowercase().replace(['-', '_'], "")[..12].to_owned());
    let mut admin = AnyConnection::connect(&at("postgres")).await.context("connecting to the postgres database")?;
    sqlx::query(&format!("CREATE DATABASE \"{scratch}\""))
        .execute(&mut admin)
        .await
        .context("the database role needs CREATEDB to check a backup before restoring it")?;
    let checked = async {
        let loaded = tokio::process::Command::new("pg_restore")
            .args(["--no-owner", "--exit-on-error", "--single-transaction", "--dbname"])
            .arg(at(&scratch))
            .arg(from)
            .output()
            .await?;
        if !loaded.status.success() {
            bail!("{} does not load: {}", from.display(), first_line(&loaded.stderr));
        }
        let mut c = AnyConnection::connect(&at(&scratch)).await?;
        let checked = check(&mut c, Backend::Postgres, master, current).await;
        c.close().await.ok();
        checked
    }
    .await;
    let (node_key, schema) = match checked {
        Ok(v) => v,
        Err(e) => {
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{scratch}\"")).execute(&mut admin).await.ok();
            return Err(e);
        }
    };
    // The checked copy takes the database's name; the old one is kept under another.
    let old = format!("{name}_before_restore_{}", now_ms());
    if let Err(e) = sqlx::query(&format!("ALTER DATABASE \"{name}\" RENAME TO \"{old}\"")).execute(&mut admin).await {
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{scratch}\"")).execute(&mut admin).await.ok();
        return Err(anyhow::Error::new(e)
            .context(format!("cannot set {name} aside: stop the node (and every other connection to it) first")));
    }
    sqlx::query(&format!("ALTER DATABASE \"{scratch}\" RENAME TO \"{name}\"")).execute(&mut admin).await?;
    admin.close().await.ok();
    let mailbox_epoch = new_epoch(url).await?;
    Ok(Restored { node_key, schema, kept: Some(old), mailbox_epoch })
}

/// A new mailbox epoch for the database at `url`, which went back to an earlier state (a
/// restore, by this command or by other means): the nodes that delivered here after that
/// state deliver again what it lacks.
pub async fn new_epoch(url: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(url).await.context("opening the restored database")?;
    let epoch = sichat_core::node::new_mailbox_epoch(&mut c).await.context("recording the restore")?;
    c.close().await.ok();
    Ok(epoch)
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().find(|l| !l.trim().is_empty()).unwrap_or("no reason given").to_owned()
}

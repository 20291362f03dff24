//! The storage pool: one `AnyPool` over SQLite (embedded default) or PostgreSQL.
//!
//! Queries are portable SQL: `$1` placeholders, `ON CONFLICT`, `RETURNING`, `BIGINT` unix
//! milliseconds, `TEXT`, and bytes (`BLOB`/`BYTEA`). Each backend has its own migration
//! folder, `migrations/<backend>/`, embedded at build time and run at start.

use crate::CoreError;
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the node's database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    /// SQLite only: read-only connections beside the single writer (see [`Db::read`]).
    readers: Option<Arc<Readers>>,
    backend: Backend,
    /// PostgreSQL only: the URL, for connections outside the pool (`LISTEN`).
    postgres_url: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish_non_exhaustive()
    }
}

/// Connections kept for [`Db::read`].
const READERS: usize = 4;
/// A pooled PostgreSQL connection idle longer than this is pinged before it is used again.
const POSTGRES_IDLE_CHECK: Duration = Duration::from_secs(10);
/// A kept PostgreSQL reader is checked at most this often, and replaced if it has dropped.
const POSTGRES_READER_CHECK: Duration = Duration::from_secs(1);

/// Read-only connections, all opened on first use and kept. Not an sqlx pool: that pings
/// every connection it takes back, one more round trip per read.
struct Readers {
    url: String,
    backend: Backend,
    conns: OnceCell<Vec<Arc<tokio::sync::Mutex<Reader>>>>,
    /// One per connection: whoever holds a slot finds a connection free.
    slots: Arc<Semaphore>,
}

struct Reader {
    conn: AnyConnection,
    checked: Instant,
}

impl Readers {
    async fn open(&self) -> Result<Reader, sqlx::Error> {
        let mut conn = AnyConnection::connect(&self.url).await?;
        let setup = match self.backend {
            Backend::Sqlite => "PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;",
            Backend::Postgres => "SET default_transaction_read_only = on",
        };
        conn.execute(setup).await?;
        Ok(Reader { conn, checked: Instant::now() })
    }

    async fn take(&self) -> Result<ReadConn, sqlx::Error> {
        let conns = self
            .conns
            .get_or_try_init(|| async {
                let mut conns = Vec::with_capacity(READERS);
                for _ in 0..READERS {
                    conns.push(Arc::new(tokio::sync::Mutex::new(self.open().await?)));
                }
                Ok::<_, sqlx::Error>(conns)
            })
            .await?;
        let slot = self.slots.clone().acquire_owned().await.map_err(|_| sqlx::Error::PoolClosed)?;
        // A guard lets its connection go before its slot, so a slot always finds one free.
        let mut reader = conns
            .iter()
            .find_map(|c| c.clone().try_lock_owned().ok())
            .ok_or_else(|| sqlx::Error::Protocol("no free reader for a held slot".into()))?;
        // A server's connection can drop (a restart, a timeout); a local SQLite file's cannot.
        if self.backend == Backend::Postgres && reader.checked.elapsed() > POSTGRES_READER_CHECK {
            if reader.conn.ping().await.is_err() {
                *reader = self.open().await?;
            }
            reader.checked = Instant::now();
        }
        Ok(ReadConn(Held::Kept { reader, _slot: slot }))
    }
}

/// A connection for reads ([`Db::read`]); use it as `&mut *conn`.
pub struct ReadConn(Held);

enum Held {
    /// A kept reader. Fields drop in order: the connection, then the slot.
    Kept {
        reader: OwnedMutexGuard<Reader>,
        _slot: OwnedSemaphorePermit,
    },
    Pooled(PoolConnection<Any>),
}

impl Deref for ReadConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            Held::Kept { reader, .. } => &reader.conn,
            Held::Pooled(c) => c,
        }
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            Held::Kept { reader, .. } => &mut reader.conn,
            Held::Pooled(c) => c,
        }
    }
}

/// The newest migration this build has for `backend`.
pub fn latest_schema(backend: Backend) -> i64 {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest migration applied to the database on `c`; 0 when none is.
pub async fn schema_of(c: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(c).await?;
    Ok(v.unwrap_or(0))
}

impl Db {
    /// The SQLite URL of a database file, created if missing.
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Connect to `url` (`sqlite://…` or `postgres://…`). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, CoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(CoreError::Database(sqlx::Error::Configuration(
                "database URL must start with sqlite:// or postgres://".into(),
            )));
        };
        // SQLite allows one writer; one connection avoids lock-upgrade failures and keeps
        // the footprint small. PostgreSQL gets a real pool.
        // A connection to a local SQLite file cannot drop, so it is not pinged (a round trip
        // to its worker thread) each time it is taken from the pool.
        // A PostgreSQL connection in steady use is not pinged either: only one that sat idle
        // (it may have been dropped by the server or a restart) is checked before use.
        let sqlite_file = (backend == Backend::Sqlite).then(|| sqlite_path(url)).flatten();
        if let Some(path) = &sqlite_file {
            create_private(path)?;
        }
        let options = match backend {
            Backend::Sqlite => AnyPoolOptions::new().max_connections(1).min_connections(1).test_before_acquire(false),
            Backend::Postgres => {
                AnyPoolOptions::new().max_connections(16).min_connections(0).test_before_acquire(false).before_acquire(
                    |conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for > POSTGRES_IDLE_CHECK {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    },
                )
            }
        };
        let pool = options
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // temp_store = MEMORY keeps statement journals (the undo log of one
                        // statement inside a transaction, e.g. a multi-row INSERT in a group
                        // commit) in memory instead of spilling them to a temporary file.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                             PRAGMA temp_store = MEMORY;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if let Some(path) = &sqlite_file {
            make_private(path)?;
        }
        // Readers open lazily, after the writer has created the file and set WAL mode. (An
        // in-memory database is private to its connection: it gets no readers.)
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let readers = match backend {
            Backend::Sqlite if in_memory => None,
            _ => Some(Arc::new(Readers {
                url: url.to_owned(),
                backend,
                conns: OnceCell::new(),
                slots: Arc::new(Semaphore::new(READERS)),
            })),
        };
        let postgres_url = (backend == Backend::Postgres).then(|| std::sync::Arc::from(url));
        Ok(Self { pool, readers, backend, postgres_url })
    }

    /// Connect and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Self, CoreError> {
        let db = Self::connect(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    pub async fn migrate(&self) -> Result<(), CoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For hot single-statement reads that must see every committed write but need no
    /// transaction: a few kept read-only connections. On SQLite they run beside the one
    /// writer (WAL lets readers and the writer work at once) instead of queueing behind it;
    /// on PostgreSQL they save the pool's ping on every connection it takes back.
    pub async fn read(&self) -> Result<ReadConn, sqlx::Error> {
        match &self.readers {
            Some(readers) => readers.take().await,
            None => Ok(ReadConn(Held::Pooled(self.pool.acquire().await?))),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL of a PostgreSQL database, for a connection of its own (`LISTEN`). It may
    /// hold a password: never log it.
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), CoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_: AnyQueryResult| ())?;
        Ok(())
    }

    /// A consistent copy of an SQLite database (`VACUUM INTO`).
    pub async fn backup_sqlite(&self, dest: &Path) -> Result<(), CoreError> {
        // An empty file is a valid target; making it first keeps the copy private (0600)
        // and refuses to overwrite anything.
        create_new_private(dest)?;
        sqlx::query("VACUUM INTO $1").bind(dest.display().to_string()).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        // No reads after this; the kept readers close when the last `Db` handle goes.
        if let Some(readers) = &self.readers {
            readers.slots.close();
        }
        self.pool.close().await;
    }
}

/// The file of a `sqlite://PATH?…` URL; `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
    (!in_memory).then(|| PathBuf::from(path))
}

/// Create the database file `0600` if it does not exist yet: SQLite gives its `-wal` and
/// `-shm` files the database file's mode, so they are private too.
fn create_private(path: &Path) -> Result<(), CoreError> {
    match create_new_private(path) {
        Err(CoreError::DatabaseFile { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn create_new_private(path: &Path) -> Result<(), CoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CoreError::DatabaseFile { path: path.to_owned(), source })?;
    Ok(())
}

/// A database made by an older version (or by hand) may be readable by others: the
/// database, its WAL and its shared-memory index hold every account's data. Make them
/// `0600`, and say so.
fn make_private(path: &Path) -> Result<(), CoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|source| CoreError::DatabaseFile { path: file.clone(), source })?;
            tracing::warn!(file = %file.display(), "the database was readable by other users (mode {mode:o}); made it private");
        }
    }
    Ok(())
}

/// Whether an error is a unique-constraint violation (a name or key already taken).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.code().is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

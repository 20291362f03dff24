//! Group commit on both backends: every acknowledged write is stored and answers its own
//! result, and a failing write fails alone while the writes batched beside it are stored.

use sichat_core::db::Db;
use sichat_core::group_commit::GroupCommit;
use sichat_core::ids::new_id;
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;

async fn count(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM gc_rows").fetch_one(db.pool()).await.expect("count")
}

/// Insert key `k`; answer how many rows the insert touched and the key back.
async fn insert(writes: &GroupCommit, k: String) -> Result<(u64, String), sqlx::Error> {
    let key = Arc::new(k);
    writes
        .write(move |c| {
            let key = key.clone();
            Box::pin(async move {
                let n = sqlx::query("INSERT INTO gc_rows (k) VALUES ($1)").bind(key.as_str()).execute(c).await?;
                Ok((n.rows_affected(), key.to_string()))
            })
        })
        .await
}

async fn exercise(db: Db) {
    sqlx::query("CREATE TABLE gc_rows (k TEXT PRIMARY KEY)").execute(db.pool()).await.expect("table");
    let writes = Arc::new(GroupCommit::new(db.clone(), "test"));

    // Many at once: each answers its own result, and all are stored.
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let w = writes.clone();
            tokio::spawn(async move { insert(&w, format!("k{i}")).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task").expect("write"), (1, format!("k{i}")));
    }
    assert_eq!(count(&db).await, 300);

    // One duplicate key among many: it alone fails, the others are stored.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let w = writes.clone();
            let k = if i == 30 { "k0".to_owned() } else { format!("n{i}") };
            tokio::spawn(async move { insert(&w, k).await })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.expect("task").is_err() {
            failed.push(i);
        }
    }
    assert_eq!(failed, vec![30], "only the duplicate fails");
    assert_eq!(count(&db).await, 359);
}

#[tokio::test]
async fn group_commit_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("sichat-group-commit-{}", new_id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Db::open(&Db::sqlite_url(&dir.join("t.db"))).await.expect("sqlite");
    exercise(db.clone()).await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn group_commit_on_postgres() {
    let admin = std::env::var("SICHAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!("PostgreSQL: {e}"),
        Err(e) => return eprintln!("SKIPPING group_commit_on_postgres: PostgreSQL unreachable at {admin}: {e}"),
    };
    let name = format!("sichat_test_{}", new_id().to_lowercase().replace('-', ""));
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
    let db = Db::open(&format!("{base}/{name}")).await.expect("postgres");
    exercise(db.clone()).await;
    db.close().await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.expect("drop database");
}

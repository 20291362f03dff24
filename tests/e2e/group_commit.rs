//! Group commit (`sichat_core::group_commit`, batching on both backends): every acknowledged write is
//! stored and answers its own result, and a failing write fails alone while the writes
//! batched beside it are stored. Closing the database does not wait on the writer.

use sichat_core::db::Db;
use sichat_core::group_commit::GroupCommit;
use sichat_e2e::{storage_tests, Backend, TempDir, TestDb};
use std::sync::Arc;

storage_tests!(batched_writes_answer_alone);

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

async fn batched_writes_answer_alone(backend: Backend) {
    let dir = TempDir::new("group-commit");
    let Some(test_db) = TestDb::create(backend, dir.path()).await else { return };
    let db = Db::open(&test_db.url).await.expect("database");
    sqlx::query("CREATE TABLE gc_rows (k TEXT PRIMARY KEY)").execute(db.pool()).await.expect("table");
    let writes = Arc::new(GroupCommit::on_both(db.clone(), "test"));

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

    // On PostgreSQL the writer keeps a connection between batches; closing the database
    // (a node's shutdown) takes it back instead of waiting for it forever. Writes after
    // that fail, and say so.
    assert_eq!(insert(&writes, "last".into()).await.expect("write"), (1, "last".into()));
    db.close().await;
    assert!(insert(&writes, "after".into()).await.is_err(), "a write after close fails");
}

//! The token writer under concurrency, on both backends: every acknowledged write is
//! stored, a failed write takes nobody else's down with it, and a code or refresh token
//! is spent exactly once however many grants race for it, and a DPoP proof counts once.

use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms};
use sichat_oidc::writer::{Outcome, ProofRow, Spend, TokenRow, Write, Writer};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;

fn token(hash: &str, kind: &'static str) -> TokenRow {
    let now = now_ms();
    TokenRow {
        token_hash: hash.into(),
        kind,
        client_id: "c".into(),
        user_id: None,
        scope: String::new(),
        family: "f".into(),
        code_hash: None,
        auth_time: None,
        amr: None,
        sid: None,
        jkt: None,
        created_at: now,
        expires_at: now + 60_000,
    }
}

async fn count(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM oidc_tokens").fetch_one(db.pool()).await.expect("count")
}

async fn exercise(db: Db) {
    sqlx::query(
        "INSERT INTO oidc_clients (id, secret_hash, registration_hash, metadata, created_at) VALUES ('c', NULL, 'r', '{}', 0)",
    )
    .execute(db.pool())
    .await
    .expect("client");
    let writer = Arc::new(Writer::new(db.clone()));

    // Many at once: all acknowledged, all stored.
    let writes = (0..200).map(|i| {
        let w = writer.clone();
        tokio::spawn(async move {
            w.write(Write::Tokens { spend: None, proof: None, tokens: vec![token(&format!("t{i}"), "access")] }).await
        })
    });
    for w in writes.collect::<Vec<_>>() {
        assert_eq!(w.await.expect("task").expect("write"), Outcome::Written);
    }
    assert_eq!(count(&db).await, 200);

    // A write that fails (a duplicate key) fails alone; the ones beside it are stored.
    let writes = (0..50).map(|i| {
        let w = writer.clone();
        let hash = if i == 25 { "t0".to_owned() } else { format!("u{i}") };
        tokio::spawn(async move {
            w.write(Write::Tokens { spend: None, proof: None, tokens: vec![token(&hash, "access")] }).await
        })
    });
    let results: Vec<_> = futures_join(writes.collect()).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "only the duplicate fails");
    assert_eq!(count(&db).await, 249);

    // A refresh token raced for by 32 grants is spent once; only the winner's tokens exist.
    writer
        .write(Write::Tokens { spend: None, proof: None, tokens: vec![token("r0", "refresh")] })
        .await
        .expect("refresh token");
    let grants = (0..32).map(|i| {
        let w = writer.clone();
        tokio::spawn(async move {
            let spend = Spend::Refresh { hash: "r0".into(), at: now_ms() };
            w.write(Write::Tokens {
                spend: Some(spend),
                proof: None,
                tokens: vec![token(&format!("r1-{i}"), "refresh")],
            })
            .await
        })
    });
    let outcomes: Vec<Outcome> =
        futures_join(grants.collect()).await.into_iter().map(|r| r.expect("no error, just spent")).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Written).count(), 1, "{outcomes:?}");
    let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_tokens WHERE token_hash LIKE 'r1-%'")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(children, 1, "the losers' tokens were not stored");

    // One DPoP proof sent with 16 grants at once: one is written; the others write nothing,
    // not even the spending of their (distinct, unspent) refresh tokens.
    for i in 0..16 {
        let row = token(&format!("p0-{i}"), "refresh");
        writer.write(Write::Tokens { spend: None, proof: None, tokens: vec![row] }).await.expect("refresh token");
    }
    let grants = (0..16).map(|i| {
        let w = writer.clone();
        tokio::spawn(async move {
            let spend = Spend::Refresh { hash: format!("p0-{i}"), at: now_ms() };
            let proof = ProofRow { jkt: "k".into(), jti: "same".into(), expires_at: now_ms() + 60_000 };
            let tokens = vec![token(&format!("p1-{i}"), "access")];
            w.write(Write::Tokens { spend: Some(spend), proof: Some(proof), tokens }).await
        })
    });
    let outcomes: Vec<Outcome> =
        futures_join(grants.collect()).await.into_iter().map(|r| r.expect("no error, just replayed")).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Written).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::ProofReplayed).count(), 15, "{outcomes:?}");
    let spent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oidc_tokens WHERE token_hash LIKE 'p0-%' AND used_at IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .expect("count");
    assert_eq!(spent, 1, "only the written grant spent its refresh token");
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn writes_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("sichat-writer-{}", new_id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Db::open(&Db::sqlite_url(&dir.join("t.db"))).await.expect("sqlite");
    exercise(db.clone()).await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn writes_on_postgres() {
    let admin = std::env::var("SICHAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!("PostgreSQL: {e}"),
        Err(e) => return eprintln!("skipping: PostgreSQL unreachable at {admin}: {e}"),
    };
    let name = format!("sichat_test_{}", new_id().to_lowercase().replace('-', ""));
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&format!("/{name}"));
    let db = Db::open(url.as_str()).await.expect("postgres");
    exercise(db.clone()).await;
    db.close().await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.expect("drop database");
}

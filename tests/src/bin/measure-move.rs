//! `measure-move`: how long `sichat move` takes for a large account. Two nodes in this
//! process (SQLite by default, `--postgres` for PostgreSQL), an account on the first that
//! issued `--credentials` credentials and has `--messages` messages of `--message-bytes`
//! waiting, then the real `sichat move` to the second, timed, and checked: every
//! credential and message must be on the new node. Prints one JSON line.
//!
//! `cargo build --release -p sichat-wallet-cli -p sichat-e2e --bins && target/release/measure-move`

use sichat_e2e::fill::{fill_mailbox, issue_many};
use sichat_e2e::{session_token, Backend, TestApp};
use sqlx::Row;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    credentials: usize,
    messages: usize,
    message_bytes: usize,
    backend: Backend,
}

fn args() -> Args {
    let mut a = Args { credentials: 10_000, messages: 100_000, message_bytes: 1_500, backend: Backend::Sqlite };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = || it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage(&flag));
        match flag.as_str() {
            "--credentials" => a.credentials = number(),
            "--messages" => a.messages = number(),
            "--message-bytes" => a.message_bytes = number(),
            "--postgres" => a.backend = Backend::Postgres,
            _ => usage(&flag),
        }
    }
    a
}

fn usage(flag: &str) -> ! {
    eprintln!("measure-move: bad argument {flag}");
    eprintln!("usage: measure-move [--credentials N] [--messages N] [--message-bytes N] [--postgres]");
    std::process::exit(2)
}

async fn count(app: &TestApp, sql: &str, user_id: &str) -> i64 {
    sqlx::query(sql).bind(user_id).fetch_one(app.node.db.pool()).await.expect("count").try_get(0).expect("n")
}

#[tokio::main]
async fn main() {
    let args = args();
    // The wallet binary sits beside this one.
    if std::env::var_os("SICHAT_SICHAT_BIN").is_none() {
        let exe = std::env::current_exe().expect("exe");
        std::env::set_var("SICHAT_SICHAT_BIN", exe.with_file_name("sichat"));
    }
    let (Some(a), Some(b)) = (TestApp::spawn(args.backend).await, TestApp::spawn(args.backend).await) else {
        eprintln!("measure-move: PostgreSQL is not reachable");
        std::process::exit(1)
    };
    let alice = a.join("alice", &a.owner_invite).await;
    let token = session_token(&a, &alice).await;
    let me = a.node.accounts.authenticate(&token).await.expect("session");
    let began = Instant::now();
    issue_many(&a.node, &me, "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", args.credentials, 8).await;
    let issue_secs = began.elapsed().as_secs_f64();
    let devices = vec![me.device_id.clone()];
    let began = Instant::now();
    fill_mailbox(&a.node, &me.user_id, &devices, args.messages, args.message_bytes).await;
    let fill_secs = began.elapsed().as_secs_f64();

    // The move, with the time each of its steps (its progress lines) began.
    let began = Instant::now();
    let mut child = tokio::process::Command::new(sichat_e2e::binary("sichat"))
        .arg("--wallet")
        .arg(&alice)
        .args(["move", "--to", &b.url, "--invite", &b.owner_invite])
        .env("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sichat");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut steps = Vec::new();
    while let Some(line) = lines.next_line().await.expect("stderr") {
        steps.push(serde_json::json!([(began.elapsed().as_secs_f64() * 100.0).round() / 100.0, line]));
    }
    let status = child.wait().await.expect("sichat");
    let move_secs = began.elapsed().as_secs_f64();
    assert!(status.success(), "move: {steps:?}");
    let messages = count(&b, "SELECT COUNT(*) FROM msg_mailbox WHERE user_id = $1", &me.user_id).await;
    let credentials = count(&b, "SELECT COUNT(*) FROM issuer_credentials WHERE user_id = $1", &me.user_id).await;
    assert_eq!((messages as usize, credentials as usize), (args.messages, args.credentials), "all moved");
    println!(
        "{}",
        serde_json::json!({
            "backend": format!("{:?}", args.backend),
            "credentials": args.credentials,
            "messages": args.messages,
            "message_bytes": args.message_bytes,
            "issue_seconds": issue_secs,
            "fill_seconds": fill_secs,
            "move_seconds": move_secs,
            "steps": steps,
        })
    );
    a.stop().await;
    b.stop().await;
}

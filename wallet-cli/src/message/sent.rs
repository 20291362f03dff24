//! Messages this wallet handed to its node, kept until the node has finished with them:
//! delivered, refused by the recipient's node, or given up. A node restored from a backup
//! made before it took one has no trace of it; the wallet hands it over again (the same
//! forward, so the recipient's node recognises a message it already has). Each is a file
//! of its own in `outbox/` beside the wallet, sealed with a key the wallet holds
//! (`Wallet::outbox_key`), so a large message costs one file, not a rewrite of the wallet.
//! Each `message inbox` and `message status` asks the node about the kept ones.

use super::*;
use serde::{Deserialize, Serialize};
use sichat_core::seal::MasterKey;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// A forward as this wallet handed it to its node.
#[derive(Serialize, Deserialize)]
struct SentForward {
    forward: Value,
    /// When it was handed over (ms).
    at: i64,
}

/// How long a forward is kept at most: well past the node's retry window (3 days).
const KEEP_MS: i64 = 14 * 24 * 3_600_000;
const DIR: &str = "outbox";
const SUFFIX: &str = ".sealed";

fn context(id: &str) -> String {
    format!("sichat-sent-forward:{id}")
}

/// The wallet's outbox key, made (and kept in the wallet) the first time.
fn key(ctx: &Ctx, pass: &str, w: &Wallet) -> Result<MasterKey> {
    let stored = match &w.outbox_key {
        Some(k) => k.clone(),
        None => wallet::update(&ctx.dir, pass, |saved| {
            Ok(saved.outbox_key.get_or_insert_with(|| MasterKey::generate().to_base64().to_string()).clone())
        })?,
    };
    MasterKey::from_base64(&stored).context("the wallet's outbox key is corrupt")
}

/// Keep `forward`, durably, before handing it to the node.
pub(super) fn keep(ctx: &Ctx, pass: &str, w: &Wallet, id: &MessageId, forward: &Value) -> Result<()> {
    let key = key(ctx, pass, w)?;
    let dir = ctx.dir.join(DIR);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let plain = serde_json::to_vec(&SentForward { forward: forward.clone(), at: now_ms() })?;
    let sealed = key.seal(&plain, &context(id.as_str()));
    let tmp = dir.join(format!("{}.tmp", id.as_str()));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        std::io::Write::write_all(&mut f, &sealed)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(format!("{}{SUFFIX}", id.as_str())))?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).ok();
    Ok(())
}

/// Nothing to keep any more (the node refused it, or finished with it).
pub(super) fn forget(ctx: &Ctx, id: &str) -> Result<()> {
    match std::fs::remove_file(ctx.dir.join(DIR).join(format!("{id}{SUFFIX}"))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The kept forwards (or only `only`), by id. One that cannot be opened is left alone,
/// with a warning.
fn kept(dir: &Path, key: &MasterKey, only: Option<&str>) -> Result<Vec<(String, SentForward)>> {
    let entries = match std::fs::read_dir(dir.join(DIR)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other?,
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let opened = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|sealed| Ok(key.open(&sealed, &context(id))?))
            .and_then(|plain| Ok(serde_json::from_slice::<SentForward>(&plain)?));
        match opened {
            Ok(s) => out.push((id.to_owned(), s)),
            Err(e) => eprintln!("warning: cannot read the sent message kept in {}: {e:#}", path.display()),
        }
    }
    Ok(out)
}

/// Ask the node behind `c` about the kept forwards (or only `only`): those it finished with,
/// or older than [`KEEP_MS`], are forgotten; those it has no trace of are handed over again.
/// Returns how many were handed over again.
pub(crate) async fn settle(ctx: &Ctx, w: &Wallet, c: &Client, only: Option<&str>) -> Result<usize> {
    let Some(stored) = &w.outbox_key else { return Ok(0) };
    let key = MasterKey::from_base64(stored).context("the wallet's outbox key is corrupt")?;
    let mut again = 0;
    for (id, s) in kept(&ctx.dir, &key, only)? {
        let state: Result<Value> = c.get(&format!("/api/v1/messages/{id}")).await;
        match state {
            Ok(st) if st["state"] != "queued" => forget(ctx, &id)?,
            Ok(_) if now_ms() - s.at > KEEP_MS => forget(ctx, &id)?,
            Ok(_) => {}
            Err(e)
                if e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "not_found")
                    && now_ms() - s.at > KEEP_MS =>
            {
                forget(ctx, &id)?
            }
            Err(e) if e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "not_found") => {
                let _: Value = c.post("/api/v1/messages", &s.forward).await?;
                again += 1;
                eprintln!(
                    "Your node had no trace of message {id} (was it restored from a backup?): handed it over again."
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(again)
}

/// `sichat message status ID`: the node's word on a message this account sent. One this
/// wallet kept and the node has no trace of (restored from an older backup) is handed over
/// again first.
pub(super) async fn status(ctx: &Ctx, id: &str) -> Result<()> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        bail!("{id:?} is not a message id: use the id `sichat message send` printed");
    }
    need_node(&wallet::read_profile(&ctx.dir)?)?;
    let (w, pass) = ctx.open()?;
    let mut c = login(ctx, &w, &pass).await?;
    let settled = settle(ctx, &w, &c, Some(id)).await;
    let got: Result<Value> = match settled {
        Ok(_) => c.get(&format!("/api/v1/messages/{id}")).await,
        Err(e) => Err(e),
    };
    c.logout().await;
    let s = got.map_err(|e| {
        explain(
            e,
            &[
                ("not_found", "Only messages sent from your account have a status: use the id `message send` printed"),
                NO_MESSAGING,
            ],
        )
    })?;
    ctx.print(&s, |s| {
        let state = s["state"].as_str().unwrap_or("?");
        println!("{}: {state}", s["id"].as_str().unwrap_or(id));
        if let Some(to) = s["to"].as_str() {
            println!("  to:        {to}");
        }
        let when = |k: &str| s[k].as_i64().map(date);
        if let Some(t) = when("created_at") {
            println!("  sent:      {t}");
        }
        if let Some(t) = when("updated_at") {
            println!("  updated:   {t}");
        }
        println!("  attempts:  {}", s["attempts"].as_i64().unwrap_or(0));
        if let Some(t) = when("next_attempt_at") {
            println!("  next try:  {t}");
        }
        if let Some(e) = s["last_error"].as_str() {
            println!("  last error: {e}");
        }
        println!(
            "  {}",
            match state {
                "queued" => "Your node is still trying to deliver it.",
                "delivered" => "Their node has it; their devices get it when they connect.",
                "not_accepted" => "Their node did not accept it (their policy). It will not be retried.",
                "failed" => "Your node gave up delivering it.",
                _ => "",
            }
        );
    })
}

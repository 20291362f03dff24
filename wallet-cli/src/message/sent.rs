//! Messages this wallet handed to its node, kept (sealed in the wallet) until the node has
//! finished with them: delivered, refused by the recipient's node, or given up. A node
//! restored from a backup made before it took one has no trace of it; the wallet hands it
//! over again (the same forward, so the recipient's node recognises a message it already
//! has). Each `message inbox` and `message status` asks the node about the kept ones.

use super::*;
use serde::{Deserialize, Serialize};

/// A forward as this wallet handed it to its node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentForward {
    pub id: String,
    pub forward: Value,
    /// When it was handed over (ms).
    pub at: i64,
}

/// How long a forward is kept at most: well past the node's retry window (3 days).
const KEEP_MS: i64 = 14 * 24 * 3_600_000;

/// Keep `forward` before handing it to the node.
pub(super) fn keep(ctx: &Ctx, pass: &str, id: &MessageId, forward: &Value) -> Result<()> {
    wallet::update(&ctx.dir, pass, |w| {
        w.sent.push(SentForward { id: id.as_str().to_owned(), forward: forward.clone(), at: now_ms() });
        Ok(())
    })
}

/// The node refused it: nothing to keep.
pub(super) fn forget(ctx: &Ctx, pass: &str, id: &str) -> Result<()> {
    wallet::update(&ctx.dir, pass, |w| {
        w.sent.retain(|s| s.id != id);
        Ok(())
    })
}

/// Ask the node behind `c` about the kept forwards (or only `only`): those it finished with,
/// or older than [`KEEP_MS`], are forgotten; those it has no trace of are handed over again.
/// Returns how many were handed over again.
pub(crate) async fn settle(ctx: &Ctx, pass: &str, c: &Client, only: Option<&str>) -> Result<usize> {
    let kept = Wallet::open(&ctx.dir, pass)?.sent;
    let (mut done, mut again) = (Vec::new(), 0);
    for s in kept.iter().filter(|s| only.is_none_or(|id| id == s.id)) {
        let state: Result<Value> = c.get(&format!("/api/v1/messages/{}", s.id)).await;
        match state {
            Ok(st) if st["state"] != "queued" => done.push(s.id.clone()),
            Ok(_) => {}
            Err(e) if e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "not_found") => {
                let _: Value = c.post("/api/v1/messages", &s.forward).await?;
                again += 1;
                eprintln!(
                    "Your node had no trace of message {} (was it restored from a backup?): handed it over again.",
                    s.id
                );
            }
            Err(e) => return Err(e),
        }
        if now_ms() - s.at > KEEP_MS {
            done.push(s.id.clone());
        }
    }
    if !done.is_empty() {
        wallet::update(&ctx.dir, pass, |w| {
            w.sent.retain(|s| !done.contains(&s.id));
            Ok(())
        })?;
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
    let settled = settle(ctx, &pass, &c, Some(id)).await;
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

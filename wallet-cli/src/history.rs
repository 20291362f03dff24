//! `sichat history sync`: this wallet's messages and contacts, kept on the node sealed to
//! every device of the account and to the history key (derived from the recovery key's
//! secret), and what other devices kept there, merged in. The node never sees inside an
//! item, and its id is a hash. A wallet recovered with the kit or by friends derives the
//! history key and gets the history back. See `sichat_accounts::protocol::history`.

use crate::client::Client;
use crate::wallet::{Contact, StoredMessage, Wallet};
use crate::Ctx;
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::b64url;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair, X25519Public};
use sichat_messaging::{pack_anoncrypt, unpack, AgreementKey, Message, RecipientKey, UnpackOptions};
use std::collections::HashSet;
use zeroize::Zeroizing;

/// Bytes of sealed items per upload, under the node's request body limit.
const UPLOAD_BYTES: usize = 56 * 1024;
/// Pages read in one sync at most.
const MAX_PAGES: usize = 10_000;

/// Where this wallet stands with the node's copy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryState {
    /// The last `seq` read.
    #[serde(default)]
    pub cursor: i64,
    /// Ids of the items this wallet wrote or read.
    #[serde(default)]
    pub on_node: Vec<String>,
    /// The keys its items were last sealed to: when they change (a device added or revoked),
    /// everything is sealed again, so a new device can read it all.
    #[serde(default)]
    pub sealed_for: Vec<String>,
}

/// What one sync did.
#[derive(Debug, Default, Serialize)]
pub struct Synced {
    pub received_messages: usize,
    pub received_contacts: usize,
    pub sent: usize,
    /// Items too large to keep on the node.
    pub skipped: usize,
}

/// The history key of the account whose recovery key is `recovery`.
pub fn history_key(recovery: &Ed25519KeyPair) -> Result<X25519KeyPair> {
    let mut h = Sha256::new();
    h.update(b"sichat history key v1\0");
    h.update(recovery.secret().as_slice());
    let secret = Zeroizing::new(h.finalize().to_vec());
    Ok(X25519KeyPair::from_secret(&secret)?)
}

fn item_id(kind: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("sichat-history:{kind}:{key}").as_bytes());
    b64url(&digest[..24])
}

/// Read what the node holds that this wallet lacks, then write what the node lacks, with
/// `client` signed in. `history` is the history key, for a recovered wallet.
pub async fn sync(ctx: &Ctx, w: &mut Wallet, client: &Client, history: Option<&X25519KeyPair>) -> Result<Synced> {
    let mut done = Synced::default();
    let keys: HistoryKeys = client.get("/api/v1/history/keys").await?;
    let did = keys.keys.first().and_then(|k| k.kid.split_once('#')).map(|(d, _)| d.to_owned());
    let Some(did) = did else { return Ok(done) };
    let mut ours = vec![AgreementKey::new(
        format!("{did}#device-{}-x25519", w.profile.device_id),
        X25519KeyPair::from_secret(&w.device_agree.secret())?,
    )];
    if let Some(h) = history {
        ours.push(AgreementKey::new(format!("{did}#{HISTORY_KEY_FRAGMENT}"), X25519KeyPair::from_secret(&h.secret())?));
    }
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let mut on_node: HashSet<String> = w.history.on_node.drain(..).collect();
    let mut held: HashSet<String> = w.messages.iter().map(|m| m.id.clone()).collect();
    for _ in 0..MAX_PAGES {
        let page: HistoryPage = client.get(&format!("/api/v1/history?after={}", w.history.cursor)).await?;
        for item in &page.items {
            w.history.cursor = w.history.cursor.max(item.seq);
            on_node.insert(item.id.clone());
            let Ok(opened) = unpack(item.jwe.as_bytes(), &ours, &resolver, &UnpackOptions::default()).await else {
                continue; // sealed before this device existed, or not for it
            };
            if opened.message.kind != HISTORY_ITEM_TYPE || !opened.anoncrypted {
                continue;
            }
            merge(w, &mut held, &opened.message.body, &mut done);
        }
        if page.next.is_none() {
            break;
        }
    }
    if done.received_messages > 0 {
        w.messages.sort_by_key(|m| m.received_time);
    }
    let mut sealed_for: Vec<String> = keys.keys.iter().map(|k| format!("{}={}", k.kid, k.key)).collect();
    sealed_for.sort();
    if sealed_for != w.history.sealed_for {
        on_node.clear();
    }
    let recipients = keys
        .keys
        .iter()
        .map(|k| Ok(RecipientKey { kid: k.kid.clone(), key: X25519Public::from_multibase(&k.key)? }))
        .collect::<Result<Vec<_>>>()?;
    let to = Did::parse(&did)?;
    let mut batch: Vec<HistoryItem> = Vec::new();
    let mut batch_bytes = 0;
    for (id, body) in pending(w, &on_node) {
        let msg = Message::new(HISTORY_ITEM_TYPE, body).with_to(vec![to.clone()]);
        let jwe = pack_anoncrypt(&msg, None, &recipients).map_err(|e| anyhow!("cannot seal history: {e}"))?;
        if jwe.len() > MAX_HISTORY_ITEM_BYTES {
            done.skipped += 1;
            continue;
        }
        if batch_bytes + jwe.len() > UPLOAD_BYTES || batch.len() == HISTORY_PAGE_ITEMS as usize {
            upload(client, &mut on_node, &mut batch, &mut done).await?;
            batch_bytes = 0;
        }
        batch_bytes += jwe.len();
        batch.push(HistoryItem { id, jwe });
    }
    let uploaded = upload(client, &mut on_node, &mut batch, &mut done).await;
    // What was read and written so far stays known, even when an upload failed.
    w.history.on_node = on_node.into_iter().collect();
    uploaded?;
    w.history.sealed_for = sealed_for;
    Ok(done)
}

async fn upload(
    client: &Client,
    on_node: &mut HashSet<String>,
    batch: &mut Vec<HistoryItem>,
    done: &mut Synced,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let _: Value = client.post("/api/v1/history", &PutHistory { items: batch.clone() }).await?;
    done.sent += batch.len();
    on_node.extend(batch.drain(..).map(|i| i.id));
    Ok(())
}

/// Messages and contacts the node does not hold yet, with their item ids.
fn pending(w: &Wallet, on_node: &HashSet<String>) -> Vec<(String, Value)> {
    let messages = w.messages.iter().map(|m| (item_id("message", &m.id), json!({"kind": "message", "data": m})));
    let contacts = w.contacts.iter().map(|c| (item_id("contact", &c.did), json!({"kind": "contact", "data": c})));
    messages.chain(contacts).filter(|(id, _)| !on_node.contains(id)).collect()
}

/// Take in one item: a message this wallet lacks, a contact whose DID it lacks.
fn merge(w: &mut Wallet, held: &mut HashSet<String>, body: &Value, done: &mut Synced) {
    match body.get("kind").and_then(Value::as_str) {
        Some("message") => {
            let Ok(m) = serde_json::from_value::<StoredMessage>(body["data"].clone()) else { return };
            if held.insert(m.id.clone()) {
                w.messages.push(m);
                done.received_messages += 1;
            }
        }
        Some("contact") => {
            let Ok(c) = serde_json::from_value::<Contact>(body["data"].clone()) else { return };
            let taken = w.contacts.iter().any(|k| k.did == c.did || k.name == c.name);
            if !taken && Did::parse(&c.did).is_ok() {
                w.contacts.push(c);
                done.received_contacts += 1;
            }
        }
        _ => {}
    }
}

/// Sync the wallet as saved in `ctx.dir` now, and save what changed.
pub async fn sync_saved(ctx: &Ctx, pass: &str, client: &Client, history: Option<&X25519KeyPair>) -> Result<Synced> {
    let mut w = Wallet::open(&ctx.dir, pass)?;
    let done = sync(ctx, &mut w, client, history).await?;
    crate::wallet::update(&ctx.dir, pass, |saved| {
        adopt(saved, &w);
        Ok(())
    })?;
    Ok(done)
}

/// `sichat history sync`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let (_, mut client) = ctx.session().await?;
    let pass = ctx.passphrase(false)?;
    let done = sync_saved(ctx, &pass, &client, None).await;
    client.logout().await;
    ctx.print(&done?, |d| {
        println!(
            "History synced: {} message(s) and {} contact(s) from your other devices; {} item(s) kept on your node.",
            d.received_messages, d.received_contacts, d.sent
        );
        if d.skipped > 0 {
            println!("{} message(s) are too large to keep on the node; they stay only in this wallet.", d.skipped);
        }
    })
}

/// Take what a sync added into a freshly read wallet (another command may have saved it).
pub fn adopt(saved: &mut Wallet, synced: &Wallet) {
    let mut held: HashSet<String> = saved.messages.iter().map(|m| m.id.clone()).collect();
    for m in &synced.messages {
        if held.insert(m.id.clone()) {
            saved.messages.push(m.clone());
        }
    }
    saved.messages.sort_by_key(|m| m.received_time);
    for c in &synced.contacts {
        if !saved.contacts.iter().any(|k| k.did == c.did || k.name == c.name) {
            saved.contacts.push(c.clone());
        }
    }
    saved.history = synced.history.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_key_comes_from_the_recovery_key_alone() {
        let recovery = Ed25519KeyPair::generate();
        let a = history_key(&recovery).unwrap().public();
        let b = history_key(&Ed25519KeyPair::from_secret(&recovery.secret()).unwrap()).unwrap().public();
        assert_eq!(a, b);
        assert_ne!(a, history_key(&Ed25519KeyPair::generate()).unwrap().public());
    }

    #[test]
    fn item_ids_are_opaque_and_valid() {
        let id = item_id("contact", "did:web:example.org:users:bob");
        assert!(valid_item_id(&id), "{id}");
        assert!(!id.contains("bob"));
        assert_ne!(id, item_id("message", "did:web:example.org:users:bob"));
    }
}

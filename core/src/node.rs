//! The node's own identity: its `did:web`, made from its public URL, and its Ed25519 node
//! key, sealed in the database under the master key.

use crate::db::Db;
use crate::did::{Did, DidDocument, Relationships};
use crate::ids::now_ms;
use crate::jws;
use crate::keys::{Ed25519KeyPair, Ed25519Public};
use crate::seal::MasterKey;
use crate::CoreError;
use serde::Serialize;
use sqlx::Row;
use url::Url;

const NODE_KEY_ID: &str = "node-ed25519-1";

/// The node: who it is and how it signs.
#[derive(Debug)]
pub struct NodeIdentity {
    did: Did,
    public_url: Url,
    key: Ed25519KeyPair,
    /// The node's `did:webvh` log (JSON Lines) and its current DID, when its host is a
    /// domain name (see [`node_did_log`]).
    did_log: Option<(String, String)>,
    /// The public URLs the node had before, newest first (`sichatd admin change-url`).
    former: Vec<FormerUrl>,
}

/// A public URL the node had before: it still answers there, for the DIDs made from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormerUrl {
    pub url: Url,
    pub did: Did,
}

impl FormerUrl {
    /// The DID its user `name` had there.
    pub fn user_did(&self, name: &str) -> Result<Did, CoreError> {
        self.did.web_child(&["users", name])
    }
}

/// `host[:port]` of a URL, as a `Host` header names it (lowercase, default port left out).
pub fn authority(url: &Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// The public URL a node uses, and what happened to it at this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicUrl {
    /// First start: this URL is now the node's.
    New(Url),
    /// The URL remembered from earlier starts.
    Kept(Url),
    /// Configured to something else than before: every DID of the node changes, and the
    /// node goes on answering for the old ones at `from` (see [`rehost_pending`]).
    Changed { from: Url, to: Url },
}

const FORMER_URLS: &str = "former_urls";
const REHOST_PENDING: &str = "rehost_pending";

impl PublicUrl {
    pub fn url(&self) -> &Url {
        match self {
            Self::New(u) | Self::Kept(u) | Self::Changed { to: u, .. } => u,
        }
    }
}

/// Settle the node's public URL. Its DIDs are made from it, so once chosen it is kept:
/// a `configured` URL wins (and replaces the remembered one), else the remembered one,
/// else `derived` (from the listen address) on first start. A changed URL is recorded
/// with the one it replaces (`former_urls`) and the accounts' part still to do
/// (`rehost_pending`), in one transaction. Configuring a URL the node left is refused.
pub async fn settle_public_url(db: &Db, configured: Option<&Url>, derived: &Url) -> Result<PublicUrl, CoreError> {
    let mut tx = db.pool().begin().await?;
    let stored = setting(&mut tx, "public_url").await?.and_then(|s| Url::parse(&s).ok());
    let outcome = match (stored, configured) {
        (Some(old), Some(new)) if old != *new => PublicUrl::Changed { from: old, to: new.clone() },
        (Some(old), _) => return Ok(PublicUrl::Kept(old)),
        (None, c) => PublicUrl::New(c.unwrap_or(derived).clone()),
    };
    if let PublicUrl::Changed { from, to } = &outcome {
        let mut former = former_urls_in(&mut tx).await?;
        if former.contains(to) {
            return Err(CoreError::Sealed(format!(
                "this node left {to} for {from}: it answers there only for its old DIDs. Set public_url = \"{from}\" \
                 (or leave it out: the node remembers it)"
            )));
        }
        former.insert(0, from.clone());
        let list: Vec<&str> = former.iter().map(Url::as_str).collect();
        let list = serde_json::to_string(&list).map_err(|e| CoreError::Sealed(e.to_string()))?;
        put_setting(&mut tx, FORMER_URLS, &list).await?;
        put_setting(&mut tx, REHOST_PENDING, from.as_str()).await?;
    }
    put_setting(&mut tx, "public_url", outcome.url().as_str()).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The URL the node left whose accounts still have to follow it (their old DIDs made
/// aliases, their crates told): set by [`settle_public_url`], cleared by [`rehost_done`].
pub async fn rehost_pending(db: &Db) -> Result<Option<Url>, CoreError> {
    let mut c = db.pool().acquire().await?;
    Ok(setting(&mut c, REHOST_PENDING).await?.and_then(|s| Url::parse(&s).ok()))
}

pub async fn rehost_done(db: &Db) -> Result<(), CoreError> {
    sqlx::query("DELETE FROM node_settings WHERE name = $1").bind(REHOST_PENDING).execute(db.pool()).await?;
    Ok(())
}

const MAILBOX_EPOCH: &str = "mailbox_epoch";

/// Which copy of its mailboxes this node serves: a random name, made at the first start and
/// again by every restore. Other nodes deliver again what they delivered under another one
/// (`sichat_messaging::redelivery`).
pub async fn mailbox_epoch(db: &Db) -> Result<String, CoreError> {
    let mut c = db.pool().acquire().await?;
    sqlx::query("INSERT INTO node_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(MAILBOX_EPOCH)
        .bind(crate::ids::random_token())
        .execute(&mut *c)
        .await?;
    setting(&mut c, MAILBOX_EPOCH).await?.ok_or(CoreError::Database(sqlx::Error::RowNotFound))
}

/// A new mailbox epoch, after the database went back to an earlier state (a restore).
pub async fn new_mailbox_epoch(c: &mut sqlx::AnyConnection) -> Result<String, CoreError> {
    let epoch = crate::ids::random_token();
    put_setting(c, MAILBOX_EPOCH, &epoch).await?;
    Ok(epoch)
}

async fn setting(c: &mut sqlx::AnyConnection, name: &str) -> Result<Option<String>, CoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM node_settings WHERE name = $1").bind(name).fetch_optional(c).await?)
}

async fn put_setting(c: &mut sqlx::AnyConnection, name: &str, value: &str) -> Result<(), CoreError> {
    sqlx::query(
        "INSERT INTO node_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(c)
    .await?;
    Ok(())
}

async fn former_urls_in(c: &mut sqlx::AnyConnection) -> Result<Vec<Url>, CoreError> {
    let Some(text) = setting(c, FORMER_URLS).await? else { return Ok(Vec::new()) };
    let list: Vec<String> =
        serde_json::from_str(&text).map_err(|e| CoreError::Sealed(format!("node_settings.former_urls: {e}")))?;
    Ok(list.iter().filter_map(|u| Url::parse(u).ok()).collect())
}

impl NodeIdentity {
    /// Load the node key, creating it on first start. Returns whether it was created.
    /// A master key that does not open the stored key is a clear error.
    /// The public key of the node key a database holds, opened with `master` to prove the
    /// key seals it: `None` when the database has no node key yet.
    pub async fn key_in(c: &mut sqlx::AnyConnection, master: &MasterKey) -> Result<Option<String>, CoreError> {
        let row = sqlx::query("SELECT public_key, sealed_secret FROM node_keys WHERE id = $1")
            .bind(NODE_KEY_ID)
            .fetch_optional(c)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("sealed_secret")?;
        let secret = master
            .open(&sealed, &format!("node_keys:{NODE_KEY_ID}"))
            .map_err(|_| CoreError::Sealed("the master key does not open this database's node key".into()))?;
        let public: String = row.try_get("public_key")?;
        if Ed25519KeyPair::from_secret(&secret)?.public().to_multibase() != public {
            return Err(CoreError::Sealed("the stored node key does not match its public key".into()));
        }
        Ok(Some(public))
    }

    pub async fn load_or_create(db: &Db, master: &MasterKey, public_url: &Url) -> Result<(Self, bool), CoreError> {
        let did = Did::web(public_url)?;
        let context = format!("node_keys:{NODE_KEY_ID}");
        let fresh = Ed25519KeyPair::generate();
        let inserted = sqlx::query(
            "INSERT INTO node_keys (id, purpose, algorithm, public_key, sealed_secret, created_at) \
             VALUES ($1, 'node-signing', 'Ed25519', $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(NODE_KEY_ID)
        .bind(fresh.public().to_multibase())
        .bind(master.seal(&fresh.secret(), &context))
        .bind(now_ms())
        .execute(db.pool())
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query("SELECT public_key, sealed_secret FROM node_keys WHERE id = $1")
            .bind(NODE_KEY_ID)
            .fetch_one(db.pool())
            .await?;
        let sealed: Vec<u8> = row.try_get("sealed_secret")?;
        let secret = master.open(&sealed, &context).map_err(|_| {
            CoreError::Sealed(
                "the master key does not open this node's keys: use the master.key file or \
                 SICHAT_MASTER_KEY this node was created with"
                    .into(),
            )
        })?;
        let key = Ed25519KeyPair::from_secret(&secret)?;
        let public: String = row.try_get("public_key")?;
        if key.public().to_multibase() != public {
            return Err(CoreError::Sealed("stored node key does not match its public key".into()));
        }
        let did_log = node_did_log(db, &did, &key).await?;
        let mut c = db.pool().acquire().await?;
        let former = former_urls_in(&mut c)
            .await?
            .into_iter()
            .filter(|u| u != public_url)
            .map(|url| Ok(FormerUrl { did: Did::web(&url)?, url }))
            .collect::<Result<_, CoreError>>()?;
        Ok((Self { did, public_url: public_url.clone(), key, did_log, former }, inserted))
    }

    pub fn did(&self) -> &Did {
        &self.did
    }

    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// The public URLs the node had before, newest first.
    pub fn former(&self) -> &[FormerUrl] {
        &self.former
    }

    /// The former URL whose `host[:port]` is `authority` (from a request's `Host`).
    pub fn former_at(&self, authority: &str) -> Option<&FormerUrl> {
        self.former.iter().find(|f| self::authority(&f.url).is_some_and(|a| a.eq_ignore_ascii_case(authority)))
    }

    /// Whether `did` is this node's DID, now or at a URL it had before.
    pub fn is_own_did(&self, did: &str) -> bool {
        self.did.as_str() == did || self.former.iter().any(|f| f.did.as_str() == did)
    }

    /// The node's DID document as it is answered at a former URL: the same key, under the
    /// DID made from that URL, naming the current DIDs in `alsoKnownAs`.
    pub fn former_did_document(&self, former: &FormerUrl) -> DidDocument {
        let mut doc = document(&former.did, &self.key.public());
        doc.also_known_as.push(self.did.to_string());
        if let Some((_, webvh)) = &self.did_log {
            doc.also_known_as.push(webvh.clone());
        }
        doc
    }

    /// An absolute URL under the node's public URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.public_url.as_str().trim_end_matches('/'), path.trim_start_matches('/'))
    }

    pub fn public_key(&self) -> Ed25519Public {
        self.key.public()
    }

    /// The id of the node key's verification method.
    pub fn key_id(&self) -> String {
        self.did.url("node-key-1")
    }

    /// The DID of a user of this node: `did:web:<host>:users:<name>`.
    pub fn user_did(&self, name: &str) -> Result<Did, CoreError> {
        self.did.web_child(&["users", name])
    }

    pub fn did_document(&self) -> DidDocument {
        let mut doc = document(&self.did, &self.key.public());
        if let Some((_, webvh)) = &self.did_log {
            doc.also_known_as.push(webvh.clone());
        }
        doc.also_known_as.extend(self.former.iter().map(|f| f.did.to_string()));
        doc
    }

    /// The node's `did:webvh` log (`/.well-known/did.jsonl`), if it has one.
    pub fn did_log(&self) -> Option<&str> {
        self.did_log.as_ref().map(|(log, _)| log.as_str())
    }

    /// The node's `did:webvh` DID, if it has one.
    pub fn webvh_did(&self) -> Option<&str> {
        self.did_log.as_ref().map(|(_, did)| did.as_str())
    }

    /// Sign raw bytes with the node key (Ed25519, RFC 8032), for protocols that build their
    /// own signature base, such as the HTTP Message Signatures between nodes.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message)
    }

    /// Sign a JWS with the node key, `kid` set to its verification method.
    pub fn sign_jws(&self, typ: &str, payload: &impl Serialize) -> Result<String, CoreError> {
        jws::sign(&self.key, typ, Some(&self.key_id()), payload)
    }
}

fn document(did: &Did, key: &Ed25519Public) -> DidDocument {
    let mut doc = DidDocument::new(did.clone());
    doc.add_key(
        "node-key-1",
        key.to_multibase(),
        Relationships { authentication: true, assertion_method: true, key_agreement: false, capability: true },
    );
    doc
}

/// The node's document under the id `id`, the `did:web` DID and `earlier` in `alsoKnownAs`.
fn webvh_state(did: &Did, key: &Ed25519Public, id: &str, earlier: &[String]) -> Result<serde_json::Value, CoreError> {
    let text = serde_json::to_string(&document(did, key)).map_err(|e| CoreError::Sealed(e.to_string()))?;
    let text = text.replace(&format!("{did}\""), &format!("{id}\"")).replace(&format!("{did}#"), &format!("{id}#"));
    let mut state: serde_json::Value = serde_json::from_str(&text).map_err(|e| CoreError::Sealed(e.to_string()))?;
    let mut aka = vec![did.to_string()];
    aka.extend(earlier.iter().cloned());
    state["alsoKnownAs"] = serde_json::json!(aka);
    Ok(state)
}

/// The node's own `did:webvh` log, controlled by the node key: made at the first start on
/// a domain name, and when the public URL changes, continued by an entry that moves the
/// DID to the new host (same SCID, the earlier DID in `alsoKnownAs`). Every start verifies
/// it. `None` for a node on an IP address (did:webvh needs a domain name) and, with a
/// warning, for a stored log that does not verify.
async fn node_did_log(db: &Db, did: &Did, key: &Ed25519KeyPair) -> Result<Option<(String, String)>, CoreError> {
    use crate::webvh::{self, Genesis, WebvhDid};
    const NAME: &str = "did_log";
    let read = || async {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM node_settings WHERE name = $1")
            .bind(NAME)
            .fetch_optional(db.pool())
            .await?;
        Ok::<_, CoreError>(v)
    };
    let here = |scid: &str| format!("did:webvh:{scid}:{}", did.as_str().trim_start_matches("did:web:"));
    let stored = read().await?;
    let log = match stored {
        None => {
            if WebvhDid::parse(&here("QmQ6FJ4fk2xheSSQoEjVpTgx9AQPKhJgtR9hn1nr4EeCrZ")).is_err() {
                return Ok(None);
            }
            let state = webvh_state(did, &key.public(), &here("{SCID}"), &[])?;
            let genesis = Genesis { portable: true, ..Default::default() };
            let (_, first) =
                webvh::create(state, &[key.public()], &genesis, key).map_err(|e| CoreError::Sealed(e.to_string()))?;
            // A replica starting at the same time may win; everyone then reads its log.
            sqlx::query("INSERT INTO node_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(NAME)
                .bind(format!("{}\n", first.line))
                .execute(db.pool())
                .await?;
            read().await?.unwrap_or_default()
        }
        Some(log) => log,
    };
    let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default().to_owned();
    let current = serde_json::from_str::<serde_json::Value>(&last)
        .ok()
        .and_then(|e| e["state"]["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let log = match WebvhDid::parse(&current) {
        Ok(cur) if cur.web_did() != *did => {
            let moved = here(cur.scid());
            if WebvhDid::parse(&moved).is_err() {
                tracing::warn!(%did, "the node's did:webvh DID cannot follow it to an IP address: it stays {current}");
                log
            } else {
                let state = webvh_state(did, &key.public(), &moved, std::slice::from_ref(&current))?;
                let entry = webvh::append(&last, state, serde_json::json!({}), key)
                    .map_err(|e| CoreError::Sealed(e.to_string()))?;
                let grown = format!("{log}{}\n", entry.line);
                sqlx::query("UPDATE node_settings SET value = $1 WHERE name = $2 AND value = $3")
                    .bind(&grown)
                    .bind(NAME)
                    .bind(&log)
                    .execute(db.pool())
                    .await?;
                tracing::info!(from = %current, to = %moved, "the node's did:webvh DID moved with its public URL");
                read().await?.unwrap_or_default()
            }
        }
        _ => log,
    };
    let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    let current = serde_json::from_str::<serde_json::Value>(last)
        .ok()
        .and_then(|e| e["state"]["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    match webvh::verify_log(&current, &log).await {
        Ok(_) => Ok(Some((log, current))),
        Err(e) => {
            tracing::warn!(error = %e, "the node's stored did:webvh log does not verify: not serving it");
            Ok(None)
        }
    }
}

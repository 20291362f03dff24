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
}

/// The public URL a node uses, and what happened to it at this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicUrl {
    /// First start: this URL is now the node's.
    New(Url),
    /// The URL remembered from earlier starts.
    Kept(Url),
    /// Configured to something else than before: every DID of the node changes.
    Changed { from: Url, to: Url },
}

impl PublicUrl {
    pub fn url(&self) -> &Url {
        match self {
            Self::New(u) | Self::Kept(u) | Self::Changed { to: u, .. } => u,
        }
    }
}

/// Settle the node's public URL. Its DIDs are made from it, so once chosen it is kept:
/// a `configured` URL wins (and replaces the remembered one), else the remembered one,
/// else `derived` (from the listen address) on first start.
pub async fn settle_public_url(db: &Db, configured: Option<&Url>, derived: &Url) -> Result<PublicUrl, CoreError> {
    let stored: Option<String> = sqlx::query("SELECT value FROM node_settings WHERE name = 'public_url'")
        .fetch_optional(db.pool())
        .await?
        .map(|r| r.try_get("value"))
        .transpose()?;
    let stored = stored.and_then(|s| Url::parse(&s).ok());
    let outcome = match (stored, configured) {
        (Some(old), Some(new)) if old != *new => PublicUrl::Changed { from: old, to: new.clone() },
        (Some(old), _) => return Ok(PublicUrl::Kept(old)),
        (None, c) => PublicUrl::New(c.unwrap_or(derived).clone()),
    };
    sqlx::query(
        "INSERT INTO node_settings (name, value) VALUES ('public_url', $1) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(outcome.url().as_str())
    .execute(db.pool())
    .await?;
    Ok(outcome)
}

impl NodeIdentity {
    /// Load the node key, creating it on first start. Returns whether it was created.
    /// A master key that does not open the stored key is a clear error.
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
        Ok((Self { did, public_url: public_url.clone(), key, did_log }, inserted))
    }

    pub fn did(&self) -> &Did {
        &self.did
    }

    pub fn public_url(&self) -> &Url {
        &self.public_url
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

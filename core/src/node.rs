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
        Ok((Self { did, public_url: public_url.clone(), key }, inserted))
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
        let mut doc = DidDocument::new(self.did.clone());
        doc.add_key(
            "node-key-1",
            self.key.public().to_multibase(),
            Relationships { authentication: true, assertion_method: true, key_agreement: false, capability: true },
        );
        doc
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

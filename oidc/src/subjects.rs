//! Pairwise subjects: the `sub` a site sees for a user, the same at every client of one
//! sector (the host of its redirect URIs) and unlinkable across sectors.
//!
//! Each account has a secret of its own (`oidc_subject_secrets`), made on first use and
//! sealed under the master key, and `sub = b64url(HMAC-SHA256(secret, label || sector))`.
//! The secret moves with the account ([`crate::moves`]), so sites keep seeing the same
//! `sub` on the new node. Accounts that existed before (a row with no secret: *legacy*)
//! keep the node-salt formula they always had, `b64url(SHA-256(node_salt || sector || 0 ||
//! user_id))`, so no site sees a new `sub`. A pin (`oidc_subject_pins`: what a site saw on
//! the node the account came from) wins over both.
//!
//! A user's secret never changes on a node, and nothing is cached: working out a `sub`
//! costs one indexed read (and, the first time, one insert).

use crate::OidcError;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use sichat_core::db::Db;
use sichat_core::ids::{b64url, b64url_decode, now_ms, random_bytes};
use sichat_core::seal::MasterKey;
use sqlx::AnyConnection;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Domain separation of the secret-based subject.
const LABEL: &[u8] = b"sichat oidc pairwise sub v1\0";
/// The longest sector and `sub` accepted (OpenID Connect Core §2: `sub` is at most 255
/// ASCII characters; a host name is at most 253).
pub const MAX_SECTOR: usize = 255;
pub const MAX_SUB: usize = 255;

/// An account's subject secret: 32 random bytes. Never printed; base64url on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectSecret(Zeroizing<[u8; 32]>);

impl SubjectSecret {
    pub fn generate() -> Self {
        Self(Zeroizing::new(random_bytes::<32>()))
    }

    /// 32 bytes, base64url without padding (43 characters).
    pub fn parse(s: &str) -> Result<Self, String> {
        const WHAT: &str = "a subject secret is 32 bytes, base64url without padding (43 characters)";
        if s.len() != 43 {
            return Err(WHAT.into());
        }
        let bytes = Zeroizing::new(b64url_decode(s).ok_or(WHAT)?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| WHAT)?;
        Ok(Self(Zeroizing::new(key)))
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(key)))
    }

    /// The `sub` of this secret's account at `sector`.
    pub fn subject(&self, sector: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.as_slice()) else {
            unreachable!("HMAC takes a key of any length")
        };
        mac.update(LABEL);
        mac.update(sector.as_bytes());
        b64url(&mac.finalize().into_bytes())
    }

    /// Sealed under `master`, bound to the account's row.
    pub(crate) fn seal(&self, master: &MasterKey, user_id: &str) -> Vec<u8> {
        master.seal(self.0.as_slice(), &context(user_id))
    }

    pub(crate) fn open(master: &MasterKey, user_id: &str, sealed: &[u8]) -> Result<Self, OidcError> {
        let opened = master.open(sealed, &context(user_id))?;
        Self::from_bytes(&opened).ok_or_else(|| OidcError::internal("a subject secret is not 32 bytes"))
    }
}

impl fmt::Debug for SubjectSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectSecret(..)")
    }
}

impl Serialize for SubjectSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b64url(self.0.as_slice()))
    }
}

impl<'de> Deserialize<'de> for SubjectSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The AEAD context of a sealed subject secret: its table and row.
fn context(user_id: &str) -> String {
    format!("oidc_subject_secrets:{user_id}")
}

/// What a node knows of an account's subjects, from one read.
enum Basis {
    Pinned(String),
    Secret(SubjectSecret),
    Legacy,
}

/// The node's side of pairwise subjects: its master key (to open the accounts' secrets) and
/// its salt (for legacy accounts).
pub struct Subjects {
    master: Arc<MasterKey>,
    node_salt: Zeroizing<Vec<u8>>,
}

impl Subjects {
    pub fn new(master: Arc<MasterKey>, node_salt: Vec<u8>) -> Self {
        Self { master, node_salt: Zeroizing::new(node_salt) }
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The `sub` of a legacy account at `sector`: the node-salt formula.
    pub fn legacy(&self, sector: &str, user_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.node_salt.as_slice());
        h.update(sector.as_bytes());
        h.update([0]);
        h.update(user_id.as_bytes());
        b64url(&h.finalize())
    }

    /// The pairwise `sub` of `user_id` at `sector`. An account with no row yet gets a
    /// fresh secret.
    pub async fn pairwise(&self, db: &Db, user_id: &str, sector: &str) -> Result<String, OidcError> {
        let known = self.basis(&mut *db.read().await?, user_id, sector).await?;
        let basis = match known {
            Some(basis) => basis,
            None => {
                let mut c = db.pool().acquire().await?;
                self.create(&mut c, user_id).await?;
                self.basis(&mut c, user_id, sector)
                    .await?
                    .ok_or_else(|| OidcError::internal("the subject secret was not stored"))?
            }
        };
        Ok(match basis {
            Basis::Pinned(sub) => sub,
            Basis::Secret(secret) => secret.subject(sector),
            Basis::Legacy => self.legacy(sector, user_id),
        })
    }

    /// What `sub` at `sector` rests on (`None`: the account has no row yet).
    async fn basis(&self, c: &mut AnyConnection, user_id: &str, sector: &str) -> Result<Option<Basis>, OidcError> {
        let row: Option<(Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
            "SELECT s.secret_sealed, p.sub FROM oidc_subject_secrets s \
             LEFT JOIN oidc_subject_pins p ON p.user_id = s.user_id AND p.sector = $2 WHERE s.user_id = $1",
        )
        .bind(user_id)
        .bind(sector)
        .fetch_optional(&mut *c)
        .await?;
        Ok(match row {
            None => None,
            Some((_, Some(pin))) => Some(Basis::Pinned(pin)),
            Some((Some(sealed), None)) => Some(Basis::Secret(SubjectSecret::open(&self.master, user_id, &sealed)?)),
            Some((None, None)) => Some(Basis::Legacy),
        })
    }

    /// Give `user_id` a fresh secret, unless it has a row already (a replica may win the
    /// insert; everyone then reads its value).
    async fn create(&self, c: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
        let secret = SubjectSecret::generate();
        sqlx::query(
            "INSERT INTO oidc_subject_secrets (user_id, secret_sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(secret.seal(&self.master, user_id))
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_only_as_32_bytes_of_base64url() {
        let s = SubjectSecret::generate();
        let text = b64url(s.0.as_slice());
        assert_eq!(SubjectSecret::parse(&text).expect("parses"), s);
        assert!(SubjectSecret::parse(&text[..42]).is_err());
        assert!(SubjectSecret::parse(&format!("{text}=")).is_err());
        assert!(SubjectSecret::parse(&b64url(&[0; 31])).is_err());
        assert!(SubjectSecret::parse(&"+".repeat(43)).is_err());
        assert_eq!(format!("{s:?}"), "SubjectSecret(..)");
    }

    #[test]
    fn subjects_differ_per_sector_and_per_secret() {
        let (a, b) = (SubjectSecret::generate(), SubjectSecret::generate());
        assert_eq!(a.subject("rp.example"), a.subject("rp.example"));
        assert_ne!(a.subject("rp.example"), a.subject("other.example"));
        assert_ne!(a.subject("rp.example"), b.subject("rp.example"));
        assert_eq!(a.subject("rp.example").len(), 43);
    }
}

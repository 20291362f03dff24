//! An account's OpenID Provider data on its way to another node ([`crate::account_hooks`]):
//! what keeps its pairwise subjects ([`crate::subjects`]) the same there, [`OidcPart`].
//!
//! - An account with a subject secret exports it (opened: the bundle is sealed to the new
//!   node as a whole), which gives the same `sub` at every sector there.
//! - A legacy account (subjects from this node's salt, which cannot leave the node) exports
//!   a pin per sector it has consented to, holding the `sub` that sector sees here, and a
//!   fresh secret for the sectors it signs in to later.
//! - Pins it holds already (from an earlier move) travel too.
//!
//! - The sign-in password's hash moves too (argon2id with this node's parameters, the only
//!   kind an import takes), so the same password signs in at the new node.
//!
//! Consents, sessions, tokens and passkeys stay behind: the issuer URL changes, so each
//! site signs the user in again and sees the same `sub` under a new `iss`; a passkey is
//! bound to the old host name (its relying party id), which no standard lets it leave.

use crate::clients::{Client, Metadata};
use crate::subjects::{SubjectSecret, Subjects, MAX_SECTOR, MAX_SUB};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_accounts::hooks::{Arrival, ImportError};
use sichat_core::ids::now_ms;
use sqlx::AnyConnection;
use std::collections::{BTreeMap, HashSet};

/// The most pins a part may carry (one per site the user signed in to).
pub const MAX_PINS: usize = 10_000;

/// The OpenID Provider's part of a moved account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcPart {
    /// The account's subject secret, base64url (32 bytes).
    pub subject_secret: SubjectSecret,
    /// Subjects fixed per sector, each sector once.
    pub pins: Vec<MovedPin>,
    /// The sign-in password's hash (PHC string), if the account has a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The `sub` one sector (a client's host) has seen for the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct MovedPin {
    pub sector: String,
    pub sub: String,
}

/// The account's part on this node, read on `c` (no write: an export runs in a read
/// transaction). An account with no row has never been given a subject here: it gets a
/// fresh secret, as it would on first use.
pub async fn export(c: &mut AnyConnection, subjects: &Subjects, user_id: &str) -> Result<OidcPart, sqlx::Error> {
    let row: Option<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT secret_sealed FROM oidc_subject_secrets WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *c)
            .await?;
    let stored: Vec<MovedPin> =
        sqlx::query_as("SELECT sector, sub FROM oidc_subject_pins WHERE user_id = $1 ORDER BY sector")
            .bind(user_id)
            .fetch_all(&mut *c)
            .await?;
    let mut pins: BTreeMap<String, String> = stored.into_iter().map(|p| (p.sector, p.sub)).collect();
    let secret = match row {
        Some((Some(sealed),)) => SubjectSecret::open(subjects.master(), user_id, &sealed)
            .map_err(|e| sqlx::Error::Decode(format!("oidc_subject_secrets:{user_id}: {e}").into()))?,
        Some((None,)) => {
            for sector in consented_sectors(c, user_id).await? {
                let sub = subjects.legacy(&sector, user_id);
                pins.entry(sector).or_insert(sub);
            }
            SubjectSecret::generate()
        }
        None => SubjectSecret::generate(),
    };
    let pins = pins.into_iter().map(|(sector, sub)| MovedPin { sector, sub }).collect();
    let password = sqlx::query_scalar("SELECT hash FROM oidc_passwords WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(OidcPart { subject_secret: secret, pins, password })
}

/// The pairwise sectors of the clients the user has consented to.
async fn consented_sectors(c: &mut AnyConnection, user_id: &str) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT k.id, k.metadata FROM oidc_consents c JOIN oidc_clients k ON k.id = c.client_id WHERE c.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&mut *c)
    .await?;
    let mut sectors = HashSet::new();
    for (id, metadata) in rows {
        let Ok(metadata) = serde_json::from_str::<Metadata>(&metadata) else {
            tracing::warn!(client_id = id, "a consented client's metadata does not parse; no pin for it");
            continue;
        };
        let client = Client { id, secret_hash: None, metadata, used_at: None };
        let sector = client.sector();
        if client.metadata.subject_type != "public" && !sector.is_empty() {
            sectors.insert(sector);
        }
    }
    Ok(sectors)
}

/// Store an arriving account's `part` (JSON `null`: nothing; the account gets a fresh
/// secret on first use), on the transaction that creates the account. Everything is
/// checked before anything is written.
pub async fn import(
    c: &mut AnyConnection,
    subjects: &Subjects,
    arrival: Arrival<'_>,
    part: Value,
) -> Result<(), ImportError> {
    if part.is_null() {
        return Ok(());
    }
    let invalid = |why: String| ImportError::Invalid(format!("oidc part: {why}"));
    let part: OidcPart = serde_path_to_error::deserialize(part).map_err(|e| invalid(e.to_string()))?;
    part.check().map_err(invalid)?;
    let user_id = arrival.user_id;
    let mut held = 0;
    for table in ["oidc_subject_secrets", "oidc_subject_pins", "oidc_passwords"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
            .bind(user_id)
            .fetch_one(&mut *c)
            .await?;
        held += n;
    }
    if held > 0 {
        return Err(invalid(format!("account {user_id} already has pairwise subjects or a password on this node")));
    }
    sqlx::query("INSERT INTO oidc_subject_secrets (user_id, secret_sealed, created_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(part.subject_secret.seal(subjects.master(), user_id))
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    for pin in &part.pins {
        sqlx::query("INSERT INTO oidc_subject_pins (user_id, sector, sub) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(&pin.sector)
            .bind(&pin.sub)
            .execute(&mut *c)
            .await?;
    }
    if let Some(hash) = &part.password {
        sqlx::query("INSERT INTO oidc_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(hash)
            .bind(now_ms())
            .execute(&mut *c)
            .await?;
    }
    tracing::info!(
        user_id,
        from = arrival.from_origin,
        pins = part.pins.len(),
        password = part.password.is_some(),
        "pairwise subjects moved in"
    );
    Ok(())
}

impl OidcPart {
    /// Whether the part is well formed: what is wrong, naming the pin. (The secret was
    /// checked as it was read.)
    pub fn check(&self) -> Result<(), String> {
        if self.pins.len() > MAX_PINS {
            return Err(format!("at most {MAX_PINS} pins"));
        }
        if let Some(hash) = &self.password {
            crate::provider::check_password_hash(hash).map_err(|why| format!("password: {why}"))?;
        }
        let mut sectors = HashSet::new();
        for (n, pin) in self.pins.iter().enumerate() {
            let shown: String = pin.sector.chars().take(40).collect();
            let bad = |why: &str| format!("pin {n} (sector {shown:?}): {why}");
            if !printable(&pin.sector, MAX_SECTOR) {
                return Err(bad(&format!("the sector must be 1-{MAX_SECTOR} printable ASCII characters")));
            }
            if !printable(&pin.sub, MAX_SUB) {
                return Err(bad(&format!("sub must be 1-{MAX_SUB} printable ASCII characters")));
            }
            if !sectors.insert(pin.sector.as_str()) {
                return Err(bad("the sector appears twice"));
            }
        }
        Ok(())
    }
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

//! An account's issuer data on its way to another node ([`crate::account_hooks`]): the part
//! the old node exports, [`IssuerPart`], and the checks the new node makes before it stores
//! any of it.
//!
//! Everything keeps its id. Credentials issued on the old node name their status lists by
//! the old node's URL, which that node redirects here once the move is done; so each list
//! travels with the URL its credentials name (`published_url`) and the DID it was issued
//! under (`issuer_did`), and the new node serves it with that URL as its id, signed under
//! that DID with the same issuing key (the keys move with the account).
//!
//! Offers and nonces stay behind (they point at the old node's endpoints), and so does the
//! node's membership list (it belongs to the node, not the account).

use crate::status::{Purpose, LIST_SIZE};
use crate::store::{self, Conn, CredentialRow, StoredList, Table};
use crate::types;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_accounts::hooks::{Arrival, ImportError};
use sichat_core::did::Did;
use sichat_core::ids::{b64url, b64url_decode};
use sichat_core::node::NodeIdentity;
use std::collections::{HashMap, HashSet};

/// The issuer's part of a moved account: the types the user defined, their status lists
/// and the issuance log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerPart {
    pub types: Vec<MovedType>,
    pub lists: Vec<MovedList>,
    pub credentials: Vec<MovedCredential>,
}

/// A credential type the user defined (a row of `issuer_types`, less its owner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct MovedType {
    pub id: String,
    pub name: String,
    pub display_name: String,
    /// The claims' JSON Schema, as stored (JSON text).
    pub schema: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    pub created_at: i64,
}

/// A status list (a row of `issuer_status_lists`, less its owner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedList {
    pub id: String,
    /// `revocation` or `suspension`.
    pub purpose: String,
    /// The raw bitstring of [`LIST_SIZE`] bits, base64url without padding.
    pub bits: String,
    /// The DID the list is issued under: for a list that recorded none, the account's
    /// `did:web` on the old node.
    pub issuer_did: String,
    /// The URL its credentials name it by: for a list published on the old node, that
    /// node's URL for it.
    pub published_url: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A line of the issuance log (a row of `issuer_credentials`, less its owner). Its status
/// entries name lists of the same part by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedCredential {
    pub id: String,
    pub type_name: String,
    /// The holder's DID.
    pub subject: String,
    /// The claims, as stored (a JSON object, as text).
    pub claims: String,
    pub revocation_list: String,
    pub revocation_index: i64,
    pub suspension_list: Option<String>,
    pub suspension_index: Option<i64>,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    pub issued_at: i64,
    pub valid_until: Option<i64>,
    /// `vc+jwt` or `ldp_vc`.
    pub format: String,
}

impl MovedCredential {
    fn from_row(r: CredentialRow) -> Self {
        Self {
            id: r.id,
            type_name: r.type_name,
            subject: r.subject,
            claims: r.claims,
            revocation_list: r.revocation_list,
            revocation_index: r.revocation_index,
            suspension_list: r.suspension_list,
            suspension_index: r.suspension_index,
            status: r.status,
            issued_at: r.issued_at,
            valid_until: r.valid_until,
            format: r.format,
        }
    }

    fn into_row(self, user_id: &str) -> CredentialRow {
        CredentialRow {
            id: self.id,
            user_id: user_id.to_owned(),
            type_name: self.type_name,
            subject: self.subject,
            claims: self.claims,
            revocation_list: self.revocation_list,
            revocation_index: self.revocation_index,
            suspension_list: self.suspension_list,
            suspension_index: self.suspension_index,
            status: self.status,
            issued_at: self.issued_at,
            valid_until: self.valid_until,
            format: self.format,
        }
    }
}

/// Bytes of a list's bitstring.
const LIST_BYTES: usize = LIST_SIZE / 8;
/// Characters of a list's bitstring in base64url without padding.
const LIST_BASE64_LEN: usize = (LIST_BYTES * 4).div_ceil(3);
/// Longest id, URL, DID or name a part may carry.
const MAX_ID: usize = 128;
const MAX_URL: usize = 2048;

/// The account's issuer data on this node (`None`: it has none), for another node.
/// `node` is this node: lists that recorded no issuer or URL get the account's `did:web`
/// and this node's URL for them, which is what their credentials name.
pub async fn export(c: &mut Conn, node: &NodeIdentity, user_id: &str) -> Result<Option<IssuerPart>, sqlx::Error> {
    let types = store::types_of(c, user_id).await?;
    let stored_lists = store::lists_of(c, user_id).await?;
    let credentials = store::credentials(c, user_id).await?;
    if types.is_empty() && stored_lists.is_empty() && credentials.is_empty() {
        return Ok(None);
    }
    let name = store::account_name(c, user_id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let web_did = node.user_did(&name).map_err(|e| sqlx::Error::Decode(Box::new(e)))?.to_string();
    let lists = stored_lists
        .into_iter()
        .map(|l| MovedList {
            bits: b64url(&l.bits),
            issuer_did: l.issuer_did.unwrap_or_else(|| web_did.clone()),
            published_url: l.published_url.unwrap_or_else(|| crate::service::list_url(node, &name, &l.id)),
            id: l.id,
            purpose: l.purpose,
            created_at: l.created_at,
            updated_at: l.updated_at,
        })
        .collect();
    let credentials = credentials.into_iter().map(MovedCredential::from_row).collect();
    Ok(Some(IssuerPart { types, lists, credentials }))
}

/// Store an arriving account's issuer `part` (JSON `null`: nothing), on the transaction that
/// creates the account. Everything is checked before anything is written: a part that is
/// malformed, inconsistent, or whose ids are taken here is refused with what is wrong.
pub async fn import(c: &mut Conn, arrival: Arrival<'_>, part: Value) -> Result<(), ImportError> {
    if part.is_null() {
        return Ok(());
    }
    let invalid = |why: String| ImportError::Invalid(format!("issuer part: {why}"));
    let part: IssuerPart = serde_path_to_error::deserialize(part).map_err(|e| invalid(e.to_string()))?;
    let bits = part.check().map_err(invalid)?;
    let taken = [
        (Table::Types, "credential type", part.types.iter().map(|t| t.id.as_str()).collect::<Vec<_>>()),
        (Table::Lists, "status list", part.lists.iter().map(|l| l.id.as_str()).collect()),
        (Table::Credentials, "credential", part.credentials.iter().map(|r| r.id.as_str()).collect()),
    ];
    for (table, what, ids) in taken {
        if let Some(id) = store::present_ids(c, table, &ids).await?.first() {
            return Err(invalid(format!("{what} {id} already exists on this node")));
        }
    }
    let user_id = arrival.user_id;
    for t in &part.types {
        store::insert_moved_type(c, user_id, t).await?;
    }
    for (l, bits) in part.lists.into_iter().zip(bits) {
        let stored = StoredList {
            id: l.id,
            purpose: l.purpose,
            bits,
            issuer_did: Some(l.issuer_did),
            published_url: Some(l.published_url),
            created_at: l.created_at,
            updated_at: l.updated_at,
        };
        store::insert_moved_list(c, user_id, &stored).await?;
    }
    for r in part.credentials {
        store::insert_credential(c, &r.into_row(user_id)).await?;
    }
    tracing::info!(user_id, from = arrival.from_origin, "issuer data moved in");
    Ok(())
}

impl IssuerPart {
    /// Whether the part is well formed and consistent on its own: what is wrong, naming the
    /// row, or each list's bitstring decoded, in order.
    pub fn check(&self) -> Result<Vec<Vec<u8>>, String> {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for t in &self.types {
            check_id("credential type", &t.id)?;
            let bad = |why: &dyn std::fmt::Display| format!("credential type {}: {why}", t.id);
            if !ids.insert(t.id.as_str()) {
                return Err(bad(&"appears twice"));
            }
            types::check_name(&t.name).map_err(|e| bad(&e))?;
            if types::builtin().iter().any(|b| b.name == t.name) || t.name == crate::membership::MEMBERSHIP {
                return Err(bad(&format!("{} is a built-in type", t.name)));
            }
            if !names.insert(t.name.as_str()) {
                return Err(bad(&format!("another type is named {}", t.name)));
            }
            if t.display_name.is_empty() || t.display_name.len() > 100 {
                return Err(bad(&"display_name must be 1-100 characters"));
            }
            if !types::ALGORITHMS.contains(&t.alg.as_str()) {
                return Err(bad(&format!("alg {:?} is neither EdDSA nor ES256", t.alg)));
            }
            let schema: Value = sichat_core::json::from_str_bounded(&t.schema, sichat_core::json::MAX_DEPTH)
                .map_err(|e| bad(&format!("schema is not JSON: {e}")))?;
            types::subject_schema(&schema).map_err(|e| bad(&e))?;
        }

        let mut purposes: HashMap<&str, Purpose> = HashMap::new();
        let mut bits = Vec::with_capacity(self.lists.len());
        for l in &self.lists {
            check_id("status list", &l.id)?;
            let bad = |why: &dyn std::fmt::Display| format!("status list {}: {why}", l.id);
            let purpose = match l.purpose.as_str() {
                "revocation" => Purpose::Revocation,
                "suspension" => Purpose::Suspension,
                other => return Err(bad(&format!("purpose {other:?} is neither revocation nor suspension"))),
            };
            if purposes.insert(&l.id, purpose).is_some() {
                return Err(bad(&"appears twice"));
            }
            // The length first: nothing is decoded past one list's size.
            if l.bits.len() != LIST_BASE64_LEN {
                return Err(bad(&format!("bits must be {LIST_SIZE} bits ({LIST_BASE64_LEN} base64url characters)")));
            }
            let decoded = b64url_decode(&l.bits).ok_or_else(|| bad(&"bits are not base64url"))?;
            if decoded.len() != LIST_BYTES {
                return Err(bad(&format!("bits must be {LIST_SIZE} bits")));
            }
            bits.push(decoded);
            Did::parse(&l.issuer_did).map_err(|e| bad(&format!("issuer_did: {e}")))?;
            check_url(&l.published_url).map_err(|why| bad(&format!("published_url: {why}")))?;
        }

        let mut ids = HashSet::new();
        let mut entries = HashSet::new();
        for r in &self.credentials {
            check_id("credential", &r.id)?;
            let bad = |why: &dyn std::fmt::Display| format!("credential {}: {why}", r.id);
            if !ids.insert(r.id.as_str()) {
                return Err(bad(&"appears twice"));
            }
            types::check_name(&r.type_name).map_err(|e| bad(&e))?;
            Did::parse(&r.subject).map_err(|e| bad(&format!("subject: {e}")))?;
            let claims: Value = sichat_core::json::from_str_bounded(&r.claims, sichat_core::json::MAX_DEPTH)
                .map_err(|e| bad(&format!("claims are not JSON: {e}")))?;
            if !claims.is_object() {
                return Err(bad(&"claims must be a JSON object"));
            }
            let mut entry = |list: &str, index: i64, purpose: Purpose| {
                match purposes.get(list) {
                    None => return Err(bad(&format!("its {} list {list} is not in the part", purpose.as_str()))),
                    Some(p) if *p != purpose => {
                        return Err(bad(&format!("its {} list {list} is a {} list", purpose.as_str(), p.as_str())))
                    }
                    Some(_) => {}
                }
                if !(0..LIST_SIZE as i64).contains(&index) {
                    return Err(bad(&format!("{} index {index} is outside 0..{LIST_SIZE}", purpose.as_str())));
                }
                if !entries.insert((list.to_owned(), index)) {
                    return Err(bad(&format!("entry {index} of list {list} belongs to another credential too")));
                }
                Ok(())
            };
            entry(&r.revocation_list, r.revocation_index, Purpose::Revocation)?;
            match (&r.suspension_list, r.suspension_index) {
                (Some(list), Some(index)) => entry(list, index, Purpose::Suspension)?,
                (None, None) => {}
                _ => return Err(bad(&"suspension_list and suspension_index go together")),
            }
            match r.status.as_str() {
                "active" | "revoked" => {}
                "suspended" if r.suspension_list.is_some() => {}
                "suspended" => return Err(bad(&"suspended, but not suspendable")),
                other => return Err(bad(&format!("status {other:?} is none of active, suspended, revoked"))),
            }
            if !matches!(r.format.as_str(), "vc+jwt" | "ldp_vc") {
                return Err(bad(&format!("format {:?} is neither vc+jwt nor ldp_vc", r.format)));
            }
        }
        Ok(bits)
    }
}

/// An id as this node makes them: 1 to [`MAX_ID`] printable ASCII characters.
fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        let shown: String = id.chars().take(40).collect();
        return Err(format!("{what} id {shown:?} must be 1-{MAX_ID} printable ASCII characters"));
    }
    Ok(())
}

/// An absolute `https` or `http` URL, as a list's id.
fn check_url(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL {
        return Err(format!("longer than {MAX_URL} characters"));
    }
    let url = url::Url::parse(s).map_err(|e| format!("{e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("{s:?} is not an http(s) URL"));
    }
    Ok(())
}

//! The account's history on its node: messages and contacts, each item sealed by a wallet
//! (DIDComm anoncrypt) to every active device's key agreement key and to the account's
//! history key, which only the recovery key's secret yields. The node keeps the sealed
//! items and never sees what is in them; each device fetches what it lacks, and a wallet
//! recovered with the kit or by friends gets the history back.

use serde::{Deserialize, Serialize};

/// The DIDComm message type inside an item; its body is `{"kind": …, "data": …}`.
pub const HISTORY_ITEM_TYPE: &str = "https://sichat.dev/history/1.0/item";
/// Largest sealed item the node takes.
pub const MAX_HISTORY_ITEM_BYTES: usize = 48 * 1024;
/// Most bytes of sealed items one account keeps on its node.
pub const HISTORY_QUOTA_BYTES: i64 = 64 * 1024 * 1024;
/// Most items one page of `GET /api/v1/history` carries.
pub const HISTORY_PAGE_ITEMS: i64 = 200;
/// The key id of the history key in an item's recipients (after the account's DID).
pub const HISTORY_KEY_FRAGMENT: &str = "history";

/// One key an item is sealed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryKey {
    pub kid: String,
    /// X25519, multibase.
    pub key: String,
}

/// `GET /api/v1/history/keys`: every active device's key agreement key, and the history key
/// when the account named one (with its recovery key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryKeys {
    pub keys: Vec<HistoryKey>,
}

/// An item as a wallet sends it: an opaque id (a hash the wallet makes, so the node learns
/// nothing from it) and the sealed item. The same id replaces what was there.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryItem {
    pub id: String,
    pub jwe: String,
}

/// `POST /api/v1/history`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutHistory {
    pub items: Vec<HistoryItem>,
}

/// An item as the node keeps it, in the order it was last written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredHistoryItem {
    pub id: String,
    pub seq: i64,
    pub jwe: String,
}

/// `GET /api/v1/history?after=SEQ`: the next items; `next` is the `after` of the page after.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPage {
    pub items: Vec<StoredHistoryItem>,
    pub next: Option<i64>,
}

/// Whether `id` is an item id: 16 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_item_id(id: &str) -> bool {
    (16..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

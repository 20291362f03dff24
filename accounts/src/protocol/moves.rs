//! Moving an account from one node to another (`sichat move`), while the old node is up.
//!
//! 1. The wallet takes a **ticket** on the new node with an invite: a single-use secret and
//!    a fresh X25519 key of the new node's.
//! 2. The old node, asked by a request signed by the root key ([`RootOperation::MoveOut`]),
//!    **exports** everything the account owns, sealed to that key (a JWE only the new node
//!    opens), and holds no second move while this one is in flight.
//! 3. The new node opens the bundle and answers a **draft**: the account's DID document at
//!    its new host, which the root key signs as the next entry of the `did:webvh` log.
//! 4. The new node **imports**, on a request signed by the root key carrying that entry and
//!    the devices' new certificates: it checks the whole log, creates the account and stores
//!    every crate's part, in one transaction.
//! 5. The old node is told the move is **done** ([`RootOperation::MoveDone`], with the same
//!    entry): it appends the entry, keeps serving the log and the old `did:web` document
//!    (naming the new DID), and redirects the account's other URLs to the new node.
//!
//! What does not fit the bundle (a large mailbox) follows it in **pages**, between steps 3
//! and 4: the wallet asks the old node for each ([`MovePageRequest`], sealed to the same key)
//! and hands it to the new node ([`MovePageUpload`]), which keeps it until the import and
//! refuses an import whose pages are not all there.
//!
//! Until step 5, the account keeps working on the old node; a move that stops half-way
//! leaves it there, and its export expires.

use super::Device;
use serde::{Deserialize, Serialize};

/// `typ` of the bundle (a JWE) and of the signed import request.
pub const TYP_MOVE_BUNDLE: &str = "sichat-move-bundle+jwe";
pub const TYP_MOVE_IN: &str = "sichat-move-in+jwt";
/// `typ` of a page (a JWE).
pub const TYP_MOVE_PAGE: &str = "sichat-move-page+jwe";

/// `POST /api/v1/moves/tickets` on the new node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveTicketRequest {
    pub invite: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoveTicket {
    /// The single-use secret that names this move on the new node.
    pub ticket: String,
    /// The public X25519 JWK the old node seals the bundle to.
    pub recipient_key: serde_json::Value,
    /// The new node's DID: the audience of the import request.
    pub node_did: String,
    pub expires_at: i64,
}

/// `POST /api/v1/moves/export` on the old node answers the sealed bundle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoveExport {
    pub bundle: String,
    /// The account's `did:webvh` DID on the old node.
    pub did: String,
    /// What follows in pages: where each crate's pages start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<MoreToMove>,
}

/// A crate's data that follows the bundle in pages.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoreToMove {
    /// The crate (`messaging`, …).
    pub part: String,
    /// Where its first page starts.
    pub cursor: String,
    /// How many items (messages, …) follow.
    pub items: u64,
}

/// `POST /api/v1/moves/export/page` on the old node: the page of `part` at `cursor`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovePageRequest {
    pub ticket: String,
    pub part: String,
    pub cursor: String,
}

/// A page, sealed to the new node; `next` is where the following one starts (`None`: last).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MovePage {
    pub page: String,
    pub next: Option<String>,
    /// Items in this page.
    pub items: u64,
}

/// `POST /api/v1/moves/pages` on the new node: keep a page for the import.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovePageUpload {
    pub ticket: String,
    pub page: String,
}

/// How many pages the new node holds for the move.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MovePagesHeld {
    pub pages: u64,
}

/// `POST /api/v1/moves/draft` on the new node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveDraftRequest {
    pub ticket: String,
    pub bundle: String,
    /// The account's name on the new node (by default its name on the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the root key signs: the document at the new host and the log's last entry it follows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoveDraft {
    /// The `did:webvh` DID on the new node.
    pub did: String,
    /// The `did:web` DID on the new node, which device certificates name.
    pub web_did: String,
    pub state: serde_json::Value,
    pub last_entry: String,
    /// The devices that move, each to be certified again for the new DID.
    pub devices: Vec<Device>,
}

/// Payload of the import request (`POST /api/v1/moves/import`), signed by the root key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoveInClaims {
    /// The `did:webvh` DID on the new node.
    pub iss: String,
    pub aud: String,
    pub challenge: String,
    pub iat: i64,
    pub ticket: String,
    /// The log's next entry: the document of the draft, signed by the root key.
    pub entry: String,
    /// A certificate for each device of the draft, issued for the new `did:web` DID.
    pub certificates: Vec<String>,
}

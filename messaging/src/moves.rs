//! An account's mailbox on its way to another node ([`crate::account_hooks`]): the part the
//! old node exports, [`MessagingPart`], and the checks the new node makes before it stores
//! any of it.
//!
//! The user's devices keep their ids and keys across the move, so the envelopes still
//! waiting for them travel as they are, each with the devices that have not fetched it yet.
//! They keep their message ids and get new `seq`s on the new node, in the same order. The
//! replay guard travels too (the newest [`Limits::received`] ids), so that a sending node
//! redelivering a forward the old node had accepted gets "duplicate" from the new one, and
//! so does the user's policy. What the user was still sending stays on the old node, whose
//! worker delivers it.
//!
//! A part is bounded ([`Limits`]): the bundle it rides in is at most 64 MiB sealed. It
//! carries the oldest waiting messages that fit; the rest follow in pages ([`MessagingPage`],
//! [`Limits::page`] each), oldest first, which the new node stores after the part, in the
//! same transaction: nothing waiting is left behind, and the order is kept.

use crate::mailbox::{self, ReceivedRow, WaitingRow};
use crate::policy::{Folder, Policy};
use crate::MessageId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_accounts::hooks::{Arrival, ImportError, More, Page};
use sichat_core::did::Did;
use sichat_core::ids::b64url_decode;
use sqlx::AnyConnection;
use std::collections::{BTreeMap, HashSet};

/// Messaging's part of a moved account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingPart {
    /// The user's inbound policy, if they set one.
    pub policy: Option<MovedPolicy>,
    /// Messages still waiting for a device, oldest first.
    pub messages: Vec<MovedMessage>,
    /// The replay guard: ids of forwards accepted for the user (`msg_received`), newest first.
    pub received: Vec<ReceivedRow>,
}

/// Waiting messages that did not fit the part, in `seq` order after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingPage {
    pub messages: Vec<MovedMessage>,
}

/// A user's policy as stored, and when it was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedPolicy {
    pub policy: Policy,
    pub updated_at: i64,
}

/// A message still waiting (a row of `msg_mailbox`, less its user and `seq`), with the
/// devices that still have to fetch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedMessage {
    pub id: String,
    /// The sender's DID.
    pub sender: String,
    /// `inbox` or `requests`.
    pub folder: String,
    /// The DIDComm envelope, as JSON text.
    pub envelope: String,
    /// Whether the forward carried a presentation.
    pub presentation: bool,
    pub received_at: i64,
    /// Device ids of the account that have not fetched it yet.
    pub pending: Vec<String>,
}

/// What one part may carry. The defaults keep a part under about 42 MiB of JSON (about
/// 56 MiB sealed), leaving room for the rest of a 64 MiB bundle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Waiting messages.
    pub messages: usize,
    /// Bytes of their envelopes.
    pub envelope_bytes: i64,
    /// Lines of the replay guard (each at most about 700 bytes).
    pub received: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { messages: 20_000, envelope_bytes: 32 << 20, received: 20_000 }
    }
}

impl Limits {
    /// What one page carries (no received ids: those ride in the part).
    pub fn page() -> Self {
        Self { messages: 5_000, envelope_bytes: 16 << 20, received: 0 }
    }
}

/// The largest envelope an import takes (a node's `max_message_bytes` is 256 KiB by default).
pub const MAX_ENVELOPE_BYTES: usize = 4 << 20;
/// Longest sender DID.
const MAX_DID: usize = 2048;

/// The account's messaging data on this node (`None`: it has none), within `limits`, and
/// where the messages that did not fit start.
pub async fn export(
    c: &mut AnyConnection,
    user_id: &str,
    limits: Limits,
) -> Result<Option<(MessagingPart, Option<More>)>, sqlx::Error> {
    let policy = match mailbox::stored_policy(c, user_id).await? {
        Some((text, updated_at)) => {
            let policy = serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Some(MovedPolicy { policy, updated_at })
        }
        None => None,
    };

    let (messages, upto) = waiting_page(c, user_id, 0, limits).await?;
    let left = mailbox::waiting_count_after(c, user_id, upto).await?;
    let more = (left > 0).then(|| More { cursor: upto.to_string(), items: left as u64 });

    let received = mailbox::received_rows(c, user_id, limits.received as i64).await?;
    if policy.is_none() && messages.is_empty() && received.is_empty() {
        return Ok(None);
    }
    Ok(Some((MessagingPart { policy, messages, received }, more)))
}

/// The page of waiting messages after `seq` `cursor` (from [`export`] or the page before).
pub async fn export_page(c: &mut AnyConnection, user_id: &str, cursor: &str) -> Result<Page, ImportError> {
    let after: i64 =
        cursor.parse().map_err(|_| ImportError::Invalid(format!("cursor {:?} is not a seq", shown(cursor))))?;
    let (messages, upto) = waiting_page(c, user_id, after, Limits::page()).await?;
    let left = mailbox::waiting_count_after(c, user_id, upto).await?;
    let items = messages.len() as u64;
    let page = serde_json::to_value(MessagingPage { messages }).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(Page { page, next: (left > 0).then(|| upto.to_string()), items })
}

/// The oldest waiting messages after `seq` `after` that fit `limits`, each with the devices
/// that owe it, and the `seq` of the last one (`after` if none).
async fn waiting_page(
    c: &mut AnyConnection,
    user_id: &str,
    after: i64,
    limits: Limits,
) -> Result<(Vec<MovedMessage>, i64), sqlx::Error> {
    let (mut upto, mut bytes) = (after, 0);
    for (seq, size) in mailbox::waiting_sizes_after(c, user_id, after, limits.messages as i64).await? {
        if bytes + size > limits.envelope_bytes && upto > after {
            break;
        }
        upto = seq;
        bytes += size;
    }
    let mut messages = Vec::new();
    if upto == after {
        return Ok((messages, upto));
    }
    let mut devices: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (seq, device) in mailbox::pending_devices_between(c, user_id, after, upto).await? {
        devices.entry(seq).or_default().push(device);
    }
    for m in mailbox::waiting_between(c, user_id, after, upto).await? {
        // A message fetched between the queries is as good as delivered: only those with
        // devices still owing them travel.
        let Some(pending) = devices.remove(&m.seq) else { continue };
        messages.push(MovedMessage {
            id: m.id,
            sender: m.sender,
            folder: m.folder,
            envelope: m.envelope,
            presentation: m.presentation != 0,
            received_at: m.received_at,
            pending,
        });
    }
    Ok((messages, upto))
}

/// Store an arriving account's messaging `part` (JSON `null`: nothing), on the transaction
/// that creates the account (its devices already stored). Everything is checked before
/// anything is written: a malformed part, one naming a device the account does not have, or
/// one for an account this node still holds messaging rows of, is refused with what is wrong.
pub async fn import(c: &mut AnyConnection, arrival: Arrival<'_>, part: Value) -> Result<(), ImportError> {
    if part.is_null() {
        return Ok(());
    }
    let invalid = |why: String| ImportError::Invalid(format!("messaging part: {why}"));
    let part: MessagingPart = serde_path_to_error::deserialize(part).map_err(|e| invalid(e.to_string()))?;
    let user_id = arrival.user_id;
    let devices: HashSet<String> = mailbox::active_devices(c, user_id).await?.into_iter().collect();
    let policy = part.check(&devices, Limits::default()).map_err(invalid)?;
    if mailbox::holds_any(c, user_id).await? {
        return Err(invalid("this node still holds messages, received ids or a policy of this account".into()));
    }

    if let (Some(policy), Some(moved)) = (policy, &part.policy) {
        let text = serde_json::to_string(&policy).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        mailbox::insert_policy(c, user_id, &text, moved.updated_at).await?;
    }
    insert_messages(c, user_id, &part.messages).await?;
    for r in &part.received {
        mailbox::insert_received(c, user_id, r).await?;
    }
    tracing::info!(
        user_id,
        from = arrival.from_origin,
        messages = part.messages.len(),
        received = part.received.len(),
        "messaging data moved in"
    );
    Ok(())
}

/// Store a page of an arriving account's waiting messages, after its part (same checks).
pub async fn import_page(c: &mut AnyConnection, arrival: Arrival<'_>, page: Value) -> Result<(), ImportError> {
    let invalid = |why: String| ImportError::Invalid(format!("messaging page: {why}"));
    let page: MessagingPage = serde_path_to_error::deserialize(page).map_err(|e| invalid(e.to_string()))?;
    let devices: HashSet<String> = mailbox::active_devices(c, arrival.user_id).await?.into_iter().collect();
    let as_part = MessagingPart { messages: page.messages, ..Default::default() };
    as_part.check(&devices, Limits::page()).map_err(invalid)?;
    insert_messages(c, arrival.user_id, &as_part.messages).await?;
    Ok(())
}

async fn insert_messages(c: &mut AnyConnection, user_id: &str, messages: &[MovedMessage]) -> Result<(), sqlx::Error> {
    let rows: Vec<(WaitingRow, &[String])> = messages
        .iter()
        .map(|m| {
            let row = WaitingRow {
                seq: 0,
                id: m.id.clone(),
                sender: m.sender.clone(),
                folder: m.folder.clone(),
                envelope: m.envelope.clone(),
                size: m.envelope.len() as i64,
                presentation: i64::from(m.presentation),
                received_at: m.received_at,
            };
            (row, m.pending.as_slice())
        })
        .collect();
    mailbox::insert_moved_batch(c, user_id, &rows).await?;
    if !messages.is_empty() {
        let bytes = rows.iter().map(|(r, _)| r.size).sum();
        mailbox::add_usage(c, user_id, messages.len() as i64, bytes).await?;
    }
    Ok(())
}

impl MessagingPart {
    /// Whether the part is well formed, within `limits`, and names only `devices` (the
    /// arriving account's): what is wrong, naming the row, or the policy as this node
    /// stores it.
    pub fn check(&self, devices: &HashSet<String>, limits: Limits) -> Result<Option<Policy>, String> {
        let policy = match &self.policy {
            Some(moved) => {
                check_time("policy updated_at", moved.updated_at)?;
                Some(moved.policy.clone().validated().map_err(|e| format!("policy: {e}"))?)
            }
            None => None,
        };

        if self.messages.len() > limits.messages {
            return Err(format!("{} messages, more than the {} a move carries", self.messages.len(), limits.messages));
        }
        let mut ids = HashSet::new();
        let mut bytes = 0i64;
        for (i, m) in self.messages.iter().enumerate() {
            let bad = |why: &dyn std::fmt::Display| format!("messages[{i}] ({}): {why}", shown(&m.id));
            MessageId::parse(&m.id).map_err(|e| bad(&e))?;
            if !ids.insert(m.id.as_str()) {
                return Err(bad(&"its id appears twice"));
            }
            check_sender(&m.sender).map_err(|e| bad(&e))?;
            check_folder(&m.folder).map_err(|e| bad(&e))?;
            check_time("received_at", m.received_at).map_err(|e| bad(&e))?;
            if m.envelope.len() > MAX_ENVELOPE_BYTES {
                return Err(bad(&format!("its envelope is over {MAX_ENVELOPE_BYTES} bytes")));
            }
            let envelope: Value = sichat_core::json::from_str_bounded(&m.envelope, sichat_core::json::MAX_DEPTH)
                .map_err(|e| bad(&format!("its envelope is not JSON: {e}")))?;
            if !envelope.is_object() {
                return Err(bad(&"its envelope is not a JSON object"));
            }
            bytes += m.envelope.len() as i64;
            if m.pending.is_empty() {
                return Err(bad(&"no device is waiting for it"));
            }
            let mut seen = HashSet::new();
            for d in &m.pending {
                if !devices.contains(d) {
                    return Err(bad(&format!("device {} is not a device of this account", shown(d))));
                }
                if !seen.insert(d) {
                    return Err(bad(&format!("device {} is named twice", shown(d))));
                }
            }
        }
        if bytes > limits.envelope_bytes {
            return Err(format!("{bytes} bytes of envelopes, more than the {} a move carries", limits.envelope_bytes));
        }

        if self.received.len() > limits.received {
            return Err(format!(
                "{} received ids, more than the {} a move carries",
                self.received.len(),
                limits.received
            ));
        }
        let mut ids = HashSet::new();
        for (i, r) in self.received.iter().enumerate() {
            let bad = |why: &dyn std::fmt::Display| format!("received[{i}] ({}): {why}", shown(&r.id));
            MessageId::parse(&r.id).map_err(|e| bad(&e))?;
            if !ids.insert(r.id.as_str()) {
                return Err(bad(&"its id appears twice"));
            }
            if r.body_hash.len() != 43 || b64url_decode(&r.body_hash).is_none_or(|h| h.len() != 32) {
                return Err(bad(&"body_hash is not a base64url SHA-256"));
            }
            check_sender(&r.sender).map_err(|e| bad(&e))?;
            check_folder(&r.folder).map_err(|e| bad(&e))?;
            check_time("received_at", r.received_at).map_err(|e| bad(&e))?;
        }

        Ok(policy)
    }
}

fn check_sender(sender: &str) -> Result<(), String> {
    if sender.len() > MAX_DID {
        return Err(format!("sender is longer than {MAX_DID} characters"));
    }
    Did::parse(sender).map(|_| ()).map_err(|e| format!("sender: {e}"))
}

/// One of the mailbox's folders, exactly as stored.
fn check_folder(folder: &str) -> Result<(), String> {
    if [Folder::Inbox, Folder::Requests].iter().any(|f| f.as_str() == folder) {
        return Ok(());
    }
    Err(format!("folder {:?} is neither inbox nor requests", shown(folder)))
}

/// A time in milliseconds since 1970, not negative.
fn check_time(what: &str, ms: i64) -> Result<(), String> {
    if ms < 0 {
        return Err(format!("{what} {ms} is negative"));
    }
    Ok(())
}

/// At most 64 characters of an untrusted string, for an error message.
fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

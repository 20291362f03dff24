//! The accounts' `did:webvh` logs: the draft a wallet signs to upgrade, the entries root
//! operations append, and what the node serves (`did.jsonl`, and `alsoKnownAs` in the
//! `did:web` document). The node never signs an entry: only the user's root key does. It
//! checks that each entry continues the log and that its document is exactly the account's
//! document, so the `did:web` and `did:webvh` documents never say different things.

use super::*;
use serde_json::Value;
use sichat_core::webvh::{self, WebvhDid};

/// `did:webvh:<scid>:…` at the host and path of the `did:web` DID `web`.
pub(super) fn webvh_at(web: &Did, scid: &str) -> String {
    format!("did:webvh:{scid}:{}", web.as_str().trim_start_matches("did:web:"))
}

/// The `did:webvh` form of a `did:web` document: every `web` DID made `webvh`, and in
/// `alsoKnownAs` the `did:web` DID, then the DIDs the account had on earlier nodes.
pub(super) fn webvh_state(doc: &DidDocument, webvh: &str, earlier: &[String]) -> Result<Value, AccountError> {
    let web = doc.id.to_string();
    let text = serde_json::to_string(doc).map_err(|e| AccountError::Internal(e.to_string()))?;
    // A DID is followed by `"` (the id) or `#` (its methods) wherever it appears.
    let text =
        text.replace(&format!("{web}\""), &format!("{webvh}\"")).replace(&format!("{web}#"), &format!("{webvh}#"));
    let mut state: Value = serde_json::from_str(&text).map_err(|e| AccountError::Internal(e.to_string()))?;
    let mut aka = vec![Value::String(web)];
    aka.extend(earlier.iter().cloned().map(Value::String));
    state["alsoKnownAs"] = Value::Array(aka);
    Ok(state)
}

/// What a log's update keys must be.
pub(super) const CONTROL: &str =
    "its update keys must be the account's root key and, if the account named one, its recovery key";

pub(super) fn bad_entry(why: impl std::fmt::Display) -> AccountError {
    AccountError::InvalidRequest(format!("the DID log entry: {why}"))
}

impl Accounts {
    /// The account's log as served (`did.jsonl`): one entry per line.
    pub async fn did_log(&self, name: &str) -> Result<String, AccountError> {
        let name = UserName::parse(name).map_err(|_| AccountError::NotFound("no such account".into()))?;
        let mut conn = self.conn().await?;
        let user = store::user_by_name(&mut conn, name.as_str())
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("no account named {name}")))?;
        // A moved account's log stays, ending with the entry that moved it, for as long as
        // this node answers for it.
        if !self.still_answering_for(&mut conn, &user).await? {
            self.check_active(&mut conn, &user).await?;
        }
        let lines = store::did_log(&mut conn, &user.id).await?;
        if lines.is_empty() {
            return Err(AccountError::NotFound(format!("{name} has no did:webvh DID (only did:web)")));
        }
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    }

    /// The `did:webvh` DID of an account, if it has one: the `id` of its last entry.
    pub(super) async fn webvh_did(conn: &mut store::Conn, user_id: &str) -> Result<Option<String>, AccountError> {
        let lines = store::did_log(conn, user_id).await?;
        Ok(lines
            .last()
            .and_then(|l| serde_json::from_str::<Value>(l).ok()?.get("state")?.get("id")?.as_str().map(str::to_owned)))
    }

    /// The document a wallet signs to upgrade its account to `did:webvh`: the account's
    /// document with the DID template (`did:webvh:{SCID}:…`) and the `did:web` DID in
    /// `alsoKnownAs`. Every issuing key the account will use is made first, so the
    /// document does not change under the signature.
    pub async fn did_draft(&self, me: &AuthDevice) -> Result<Value, AccountError> {
        let web = self.node.user_did(&me.user_name)?;
        let template = webvh_at(&web, "{SCID}");
        if WebvhDid::parse(&template.replace("{SCID}", "QmQ6FJ4fk2xheSSQoEjVpTgx9AQPKhJgtR9hn1nr4EeCrZ")).is_err() {
            return Err(AccountError::InvalidRequest(format!(
                "did:webvh needs a domain name, and this node's DIDs are {web}: give the node a public_url \
                 with a host name (not an IP address)"
            )));
        }
        self.issuing_key_for(&me.user_id, "ES256").await?;
        let mut conn = self.conn().await?;
        if !store::did_log(&mut conn, &me.user_id).await?.is_empty() {
            return Err(AccountError::Conflict("this account already has a did:webvh DID".into()));
        }
        let user = store::user_by_id(&mut conn, &me.user_id).await?.ok_or(AccountError::Unauthorized)?;
        let doc = self.document_of(&mut conn, &user).await?;
        webvh_state(&doc, &template, &[])
    }

    /// Root operation `upgrade_did`: the first entry of the account's log.
    pub(super) async fn upgrade_did(
        &self,
        tx: &mut store::Conn,
        user: &store::UserRow,
        entry: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        if !store::did_log(tx, &user.id).await?.is_empty() {
            return Err(AccountError::Conflict("this account already has a did:webvh DID".into()));
        }
        let did = entry_did(entry)?;
        let parsed = WebvhDid::parse(&did).map_err(bad_entry)?;
        let web = self.node.user_did(&user.name)?;
        if parsed.web_did() != web {
            return Err(AccountError::Forbidden(format!("{did} is not at this account's address ({web})")));
        }
        let log = webvh::verify_log(&did, &format!("{entry}\n")).await.map_err(bad_entry)?;
        if !user.controls_log(&log.update_keys) {
            return Err(bad_entry(CONTROL));
        }
        if !log.portable {
            return Err(bad_entry("it must set portable, so the DID can move to another server"));
        }
        let expected = webvh_state(&self.document_of(tx, user).await?, &did, &[])?;
        if !webvh::same_document(&log.document, &expected) {
            return Err(bad_entry("its document is not the account's document (ask the node for a new draft)"));
        }
        store::append_did_log(tx, &user.id, 1, entry, now).await?;
        tracing::info!(user = %user.name, %did, "account upgraded to did:webvh");
        Ok(())
    }

    /// After a root operation changed the account's document (in `tx`): the log's next
    /// entry, required when the account has a log, refused when it has none.
    pub(super) async fn append_did_entry(
        &self,
        tx: &mut store::Conn,
        user_id: &str,
        entry: Option<&str>,
        now: i64,
    ) -> Result<(), AccountError> {
        let lines = store::did_log(tx, user_id).await?;
        let Some(entry) = entry else {
            if lines.is_empty() {
                return Ok(());
            }
            return Err(AccountError::InvalidRequest(
                "this account's DID has a verifiable log (did:webvh): the root operation must carry the log's next \
                 entry, signed by the root key (update sichat)"
                    .into(),
            ));
        };
        let Some(current) = Self::webvh_did(tx, user_id).await? else {
            return Err(AccountError::InvalidRequest(
                "this account has no did:webvh DID yet: run `sichat did upgrade` first".into(),
            ));
        };
        if entry_did(entry)? != current {
            return Err(bad_entry(format!("its document must keep the DID {current}")));
        }
        let raw: String = lines.iter().chain(std::iter::once(&entry.to_owned())).map(|l| format!("{l}\n")).collect();
        let log = webvh::verify_log(&current, &raw).await.map_err(bad_entry)?;
        let user = store::user_by_id(tx, user_id).await?.ok_or(AccountError::Unauthorized)?;
        if log.entries != lines.len() + 1 {
            return Err(bad_entry("it is not the next version of the log"));
        }
        if !user.controls_log(&log.update_keys) {
            return Err(bad_entry(format!("after it, {CONTROL}")));
        }
        let earlier = Self::earlier_dids(tx, user_id).await?;
        let expected = webvh_state(&self.document_of(tx, &user).await?, &current, &earlier)?;
        if !webvh::same_document(&log.document, &expected) {
            return Err(bad_entry("its document is not the account's document after this operation"));
        }
        store::append_did_log(tx, user_id, log.entries as i64, entry, now).await?;
        Ok(())
    }
}

/// Most log entries a catch-up may bring back at once.
const MAX_LOST_ENTRIES: usize = 256;

impl Accounts {
    /// Root operation `catch_up` on a node restored from an older backup: the `did:webvh` log
    /// entries it lacks, which the wallet kept, each signed by the key the log authorised
    /// before it, leading to a log `signer` controls. None for an account with no log.
    pub(super) async fn follow_lost_entries(
        &self,
        tx: &mut store::Conn,
        user_id: &str,
        lost: &[String],
        signer: &Ed25519Public,
        now: i64,
    ) -> Result<(), AccountError> {
        let Some(current) = Self::webvh_did(tx, user_id).await? else {
            return match lost.is_empty() {
                true => Ok(()),
                false => Err(AccountError::InvalidRequest("this account has no did:webvh log to catch up".into())),
            };
        };
        if lost.is_empty() {
            return Err(AccountError::Conflict(
                "this node's copy of your did:webvh log is older than your root key (it was restored from a \
                 backup), and the request carries none of the entries it lacks: update sichat, whose wallet keeps \
                 them, or recover with your recovery kit or friends"
                    .into(),
            ));
        }
        if lost.len() > MAX_LOST_ENTRIES {
            return Err(AccountError::InvalidRequest(format!("catch up with at most {MAX_LOST_ENTRIES} log entries")));
        }
        let lines = store::did_log(tx, user_id).await?;
        let raw: String = lines.iter().chain(lost).map(|l| format!("{}\n", l.trim_end())).collect();
        let log = webvh::verify_log(&current, &raw).await.map_err(bad_entry)?;
        if log.entries != lines.len() + lost.len() {
            return Err(bad_entry("they do not continue this node's copy of the log"));
        }
        if !log.update_keys.contains(&signer.to_multibase()) {
            return Err(bad_entry("after them, the log is not controlled by the key signing this request"));
        }
        for (i, entry) in lost.iter().enumerate() {
            store::append_did_log(tx, user_id, (lines.len() + i + 1) as i64, entry.trim_end(), now).await?;
        }
        tracing::warn!(entries = lost.len(), "did:webvh log entries lost in a restore brought back");
        Ok(())
    }
}

/// The DID an entry's document names.
pub(super) fn entry_did(entry: &str) -> Result<String, AccountError> {
    let value: Value = sichat_core::json::from_str_bounded(entry, 16).map_err(|e| bad_entry(e.to_string()))?;
    value
        .get("state")
        .and_then(|s| s.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| bad_entry("it has no state.id"))
}

//! A node that changes its public URL (`sichatd admin change-url`): every account follows
//! it, with the machinery of a move. The node records, per account, a finished move in from
//! its former URL (the old `did:web` DID becomes an alias and joins `alsoKnownAs`), and
//! each crate keeps what the account published there answering (`AccountHooks::node_rehosted`).
//! The node keeps answering at the former URL for the old DIDs (see
//! [`Accounts::former_did_document`]). A `did:webvh` DID can only move with an entry signed
//! by the root key: the wallet that holds it signs `follow_host` at its next session.

use super::*;
use crate::hooks::Rehosting;
use did_log::{bad_entry, entry_did, webvh_at, webvh_state};
use sichat_core::node::FormerUrl;
use sichat_core::webvh::{self, WebvhDid};

impl Accounts {
    /// Make every account follow the node from `from` (its former public URL). Idempotent:
    /// an account that followed already is skipped, so an interrupted run can be run again.
    /// `progress(done, total)` after each account. Returns how many accounts followed now.
    pub async fn rehost_accounts(
        &self,
        from: &url::Url,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<usize, AccountError> {
        let former = FormerUrl { did: Did::web(from)?, url: from.clone() };
        let base = from.as_str().trim_end_matches('/').to_owned();
        let users: Vec<store::UserRow> = store::all_users(&mut *self.conn().await?)
            .await?
            .into_iter()
            .map(|(u, _)| u)
            .filter(|u| u.status == "active")
            .collect();
        let total = users.len();
        let mut followed = 0;
        for (i, user) in users.iter().enumerate() {
            if self.rehost_account(&former, &base, user).await? {
                followed += 1;
            }
            progress(i + 1, total);
        }
        Ok(followed)
    }

    async fn rehost_account(
        &self,
        former: &FormerUrl,
        base: &str,
        user: &store::UserRow,
    ) -> Result<bool, AccountError> {
        let old_web = former.user_did(&user.name)?.to_string();
        let mut tx = self.db.pool().begin().await?;
        store::lock_user(&mut tx, &user.id, self.db.backend() == Backend::Postgres).await?;
        let mut earlier = Self::earlier_dids(&mut tx, &user.id).await?;
        earlier.push(old_web.clone());
        let old_dids = serde_json::to_string(&earlier).map_err(|e| AccountError::Internal(e.to_string()))?;
        if !store::insert_rehost(&mut tx, &user.id, &user.name, base, &old_web, &old_dids, now_ms()).await? {
            return Ok(false);
        }
        let rehosting = Rehosting { user_id: &user.id, user_name: &user.name, from_url: base, old_web_did: &old_web };
        for hook in self.hooks() {
            hook.node_rehosted(&mut tx, rehosting)
                .await
                .map_err(|e| AccountError::Internal(format!("{} could not follow the new URL: {e}", hook.name())))?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The `did:web` document of user `name` as answered at a URL the node left: the same
    /// keys under the DID made from that URL, naming the account's DIDs now in `alsoKnownAs`,
    /// so credentials issued and messages sealed under the old DID keep verifying and opening.
    pub async fn former_did_document(&self, former: &FormerUrl, name: &str) -> Result<DidDocument, AccountError> {
        let current = self.did_document(name).await?;
        let old = former.user_did(name)?;
        let mut conn = self.read_conn().await?;
        let user = store::user_by_name(&mut conn, name)
            .await?
            .ok_or_else(|| AccountError::NotFound("no such account".into()))?;
        if !Self::earlier_dids(&mut conn, &user.id).await?.contains(&old.to_string()) {
            return Err(AccountError::NotFound(format!("{old} was never an account of this node")));
        }
        let text = serde_json::to_string(&current).map_err(|e| AccountError::Internal(e.to_string()))?;
        let now = current.id.to_string();
        let text =
            text.replace(&format!("{now}\""), &format!("{old}\"")).replace(&format!("{now}#"), &format!("{old}#"));
        let mut doc: DidDocument = serde_json::from_str(&text).map_err(|e| AccountError::Internal(e.to_string()))?;
        doc.also_known_as = std::iter::once(now).chain(current.also_known_as).filter(|d| *d != old.as_str()).collect();
        Ok(doc)
    }

    /// What the root key signs for the account's `did:webvh` to follow the node to its new
    /// URL: the document at the new host and the log entry it follows. `409` when the DID
    /// is there already (or the account has none).
    pub async fn rehost_draft(&self, me: &AuthDevice) -> Result<MoveDraft, AccountError> {
        let devices = self.devices(me, false).await?;
        let mut conn = self.conn().await?;
        let user = store::user_by_id(&mut conn, &me.user_id).await?.ok_or(AccountError::Unauthorized)?;
        let lines = store::did_log(&mut conn, &user.id).await?;
        let (Some(last), Some(current)) = (lines.last(), Self::webvh_did(&mut conn, &user.id).await?) else {
            return Err(AccountError::Conflict("this account has no did:webvh DID".into()));
        };
        let (did, earlier) = self.followed(&mut conn, &user, &current).await?;
        let state = webvh_state(&self.document_of(&mut conn, &user).await?, &did, &earlier)?;
        let web_did = self.node.user_did(&user.name)?.to_string();
        Ok(MoveDraft { did, web_did, state, last_entry: last.clone(), devices })
    }

    /// Where the account's `did:webvh` DID `current` goes at this node's host, and the DIDs
    /// before it, once it has.
    async fn followed(
        &self,
        c: &mut store::Conn,
        user: &store::UserRow,
        current: &str,
    ) -> Result<(String, Vec<String>), AccountError> {
        let scid = WebvhDid::parse(current).map_err(bad_entry)?.scid().to_owned();
        let did = webvh_at(&self.node.user_did(&user.name)?, &scid);
        if did == current {
            return Err(AccountError::Conflict(format!("{current} is at this node's address already")));
        }
        let mut earlier = Self::earlier_dids(c, &user.id).await?;
        if !earlier.iter().any(|d| d == current) {
            earlier.push(current.to_owned());
        }
        Ok((did, earlier))
    }

    /// Root operation `follow_host`: the entry that moves the account's `did:webvh` to the
    /// node's new host, checked like a move's (next version, root key alone, exactly the
    /// account's document there).
    pub(super) async fn follow_host(
        &self,
        tx: &mut store::Conn,
        user: &store::UserRow,
        did: &str,
        entry: Option<&str>,
        now: i64,
    ) -> Result<(), AccountError> {
        let entry = entry.ok_or_else(|| bad_entry("a follow_host carries the entry that moves the DID"))?;
        let lines = store::did_log(tx, &user.id).await?;
        let Some(current) = Self::webvh_did(tx, &user.id).await? else {
            return Err(AccountError::Conflict("this account has no did:webvh DID".into()));
        };
        let (expected_did, earlier) = self.followed(tx, user, &current).await?;
        if did != expected_did || entry_did(entry)? != did {
            return Err(bad_entry(format!("it must move the DID to {expected_did}")));
        }
        let raw: String = lines.iter().chain(std::iter::once(&entry.to_owned())).map(|l| format!("{l}\n")).collect();
        let log = webvh::verify_log(did, &raw).await.map_err(bad_entry)?;
        if log.entries != lines.len() + 1 {
            return Err(bad_entry("it is not the next version of the log"));
        }
        if !user.controls_log(&log.update_keys) {
            return Err(bad_entry(format!("after it, {}", super::did_log::CONTROL)));
        }
        let expected = webvh_state(&self.document_of(tx, user).await?, did, &earlier)?;
        if !webvh::same_document(&log.document, &expected) {
            return Err(bad_entry("its document is not the account's document at this node's address"));
        }
        store::append_did_log(tx, &user.id, log.entries as i64, entry, now).await?;
        let old_dids = serde_json::to_string(&earlier).map_err(|e| AccountError::Internal(e.to_string()))?;
        store::set_old_dids(tx, &user.id, &old_dids).await?;
        store::add_did_alias(tx, &current, &user.id).await?;
        tracing::info!(user = %user.name, from = %current, to = %did, "did:webvh followed the node's new URL");
        Ok(())
    }
}

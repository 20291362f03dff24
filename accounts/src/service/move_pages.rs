//! What does not fit a moving account's bundle (a large mailbox) follows it in pages
//! ([`crate::protocol::moves`]). The old node seals each page to the new node's ticket key,
//! as it sealed the bundle; the wallet carries it over; the new node checks it opens and is
//! for this move, holds it (`acct_move_pages`), and the import stores every page in the
//! transaction that creates the account. An import whose pages have not all come is refused,
//! so the old node, which deletes its copy only once the move is done, loses nothing.

use super::moves::{bad_bundle, BUNDLE_DEPTH, MAX_BUNDLE_BYTES};
use super::*;
use crate::hooks::{Arrival, ImportError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_core::jwe;
use sichat_core::keys::{X25519KeyPair, X25519Public};
use std::collections::{BTreeMap, BTreeSet};

/// Pages one move may hold on the new node, and their bytes in all.
const MAX_PAGES: i64 = 20_000;
const MAX_HELD_BYTES: i64 = 4 << 30;

/// A page as sealed: for which move and crate, and whether it is that crate's last.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagePlain {
    ticket_hash: String,
    part: String,
    page: Value,
    last: bool,
}

impl Accounts {
    /// On the old node: the page of `part` at `cursor` of the export the ticket names,
    /// sealed to the new node. Only while that export is in flight.
    pub async fn move_export_page(&self, req: &MovePageRequest) -> Result<MovePage, AccountError> {
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let m = store::move_by_ticket(&mut tx, "out", &token_hash(&req.ticket))
            .await?
            .filter(|m| m.status == "exported" && m.expires_at > now)
            .ok_or_else(|| {
                AccountError::NotFound("no export in flight for this ticket: start the move again".into())
            })?;
        let user = match m.user_name.as_deref() {
            Some(name) => store::user_by_name(&mut tx, name).await?,
            None => None,
        }
        .ok_or_else(|| AccountError::Internal("an export without its account".into()))?;
        let key: [u8; 32] =
            m.ticket_key.as_deref().and_then(|k| k.try_into().ok()).ok_or_else(|| {
                AccountError::Conflict("this export was made before pages: start the move again".into())
            })?;
        let hook = self
            .hooks()
            .into_iter()
            .find(|h| h.name() == req.part)
            .ok_or_else(|| AccountError::InvalidRequest(format!("no part {} to export", req.part)))?;
        let page = hook.export_page(&mut tx, &user.id, &req.cursor).await.map_err(|e| match e {
            ImportError::Invalid(why) => AccountError::InvalidRequest(why),
            ImportError::Database(e) => AccountError::Internal(format!("{} could not export a page: {e}", hook.name())),
        })?;
        tx.rollback().await?;
        let plain = PagePlain {
            ticket_hash: token_hash(&req.ticket),
            part: req.part.clone(),
            page: page.page,
            last: page.next.is_none(),
        };
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(&plain).map_err(|e| AccountError::Internal(e.to_string()))?);
        let sealed = jwe::seal(&X25519Public::from_bytes(key), TYP_MOVE_PAGE, &plain)?;
        if sealed.len() > MAX_BUNDLE_BYTES {
            return Err(AccountError::Internal(format!("a page of {} is over {MAX_BUNDLE_BYTES} bytes", req.part)));
        }
        Ok(MovePage { page: sealed, next: page.next, items: page.items })
    }

    /// On the new node: hold a page for the import, once it opens and is for this move.
    pub async fn move_page_upload(&self, req: &MovePageUpload) -> Result<MovePagesHeld, AccountError> {
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let m = self.ticket(&mut tx, &req.ticket, now).await?;
        if m.bundle.is_none() {
            return Err(AccountError::InvalidRequest("ask for the draft first (POST /api/v1/moves/draft)".into()));
        }
        let page = self.open_page(&m, &req.ticket, &req.page)?;
        let (count, bytes) = store::move_page_totals(&mut tx, &m.id).await?;
        if count >= MAX_PAGES || bytes + req.page.len() as i64 > MAX_HELD_BYTES {
            return Err(AccountError::InvalidRequest(format!(
                "this move holds {count} pages ({bytes} bytes) already: at most {MAX_PAGES} and {MAX_HELD_BYTES} bytes"
            )));
        }
        let held = store::insert_move_page(&mut tx, &m.id, &page.part, page.last, &req.page).await?;
        tx.commit().await?;
        Ok(MovePagesHeld { pages: held as u64 })
    }

    fn open_page(&self, m: &store::MoveRow, ticket: &str, sealed: &str) -> Result<PagePlain, AccountError> {
        let key =
            m.ticket_key.as_deref().ok_or_else(|| AccountError::Internal("a move ticket without its key".into()))?;
        let key = X25519KeyPair::from_secret(&self.master.open(key, &format!("acct_moves:{}", m.id))?)?;
        let plain = jwe::open(&key, TYP_MOVE_PAGE, sealed, MAX_BUNDLE_BYTES).map_err(|e| bad_page(&e))?;
        let text = std::str::from_utf8(&plain).map_err(|_| bad_page(&"not UTF-8"))?;
        let page: PagePlain = sichat_core::json::from_str_bounded(text, BUNDLE_DEPTH).map_err(|e| bad_page(&e))?;
        if page.ticket_hash != token_hash(ticket) {
            return Err(bad_page(&"it was sealed for another move"));
        }
        Ok(page)
    }

    /// In the import's transaction: every page held, in order, each to its crate. Refused
    /// when a crate whose rest the bundle announced has not had its last page, or a page
    /// is not announced or comes after its crate's last.
    pub(super) async fn import_pages(
        &self,
        tx: &mut store::Conn,
        m: &store::MoveRow,
        ticket: &str,
        more: &BTreeMap<String, u64>,
        arrival: Arrival<'_>,
    ) -> Result<(), AccountError> {
        let rows = store::move_pages(tx, &m.id).await?;
        for part in more.keys() {
            if !rows.iter().any(|r| &r.part == part && r.last) {
                return Err(bad_bundle(format!(
                    "the pages of {part} have not all come: run sichat move again (nothing changed)"
                )));
            }
        }
        let hooks = self.hooks();
        let mut ended = BTreeSet::new();
        for row in rows {
            if !more.contains_key(&row.part) || ended.contains(&row.part) {
                return Err(bad_bundle(format!("a page of {} that the bundle does not announce", row.part)));
            }
            let page = self.open_page(m, ticket, &row.page)?;
            let hook = hooks
                .iter()
                .find(|h| h.name() == row.part)
                .ok_or_else(|| bad_bundle(format!("pages of {}, which this node cannot store", row.part)))?;
            hook.import_page(tx, arrival, page.page).await.map_err(|e| match e {
                ImportError::Invalid(why) => bad_bundle(format!("{} page: {why}", hook.name())),
                ImportError::Database(e) => AccountError::Internal(format!("{} could not import: {e}", hook.name())),
            })?;
            if row.last {
                ended.insert(row.part);
            }
        }
        store::delete_move_pages(tx, &m.id).await?;
        Ok(())
    }
}

fn bad_page(why: &dyn std::fmt::Display) -> AccountError {
    AccountError::InvalidRequest(format!("the move page: {why}"))
}

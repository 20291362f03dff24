//! The account's sealed history on the node (see [`crate::protocol::history`]): the keys
//! items are sealed to, writing items, and reading them in order.

use super::*;

impl Accounts {
    /// The keys a device seals history items to: every active device's, and the history key.
    pub async fn history_keys(&self, me: &AuthDevice) -> Result<HistoryKeys, AccountError> {
        let mut c = self.db.pool().acquire().await?;
        let did = self.node.user_did(&me.user_name)?;
        let mut keys: Vec<HistoryKey> = store::active_devices(&mut c, &me.user_id)
            .await?
            .into_iter()
            .map(|d| HistoryKey { kid: format!("{did}#device-{}-x25519", d.id), key: d.agree_key })
            .collect();
        if let Some(key) = store::history_key(&mut c, &me.user_id).await? {
            keys.push(HistoryKey { kid: format!("{did}#{HISTORY_KEY_FRAGMENT}"), key });
        }
        Ok(HistoryKeys { keys })
    }

    /// Keep sealed items, each replacing one of the same id, within the account's quota.
    pub async fn put_history(&self, me: &AuthDevice, put: &PutHistory) -> Result<usize, AccountError> {
        if put.items.is_empty() || put.items.len() > HISTORY_PAGE_ITEMS as usize {
            return Err(AccountError::InvalidRequest(format!("send 1 to {HISTORY_PAGE_ITEMS} items")));
        }
        for item in &put.items {
            if !valid_item_id(&item.id) {
                return Err(AccountError::InvalidRequest("an item id is 16 to 64 of [A-Za-z0-9_-]".into()));
            }
            if item.jwe.is_empty() || item.jwe.len() > MAX_HISTORY_ITEM_BYTES {
                return Err(AccountError::InvalidRequest(format!(
                    "a sealed item is 1 to {MAX_HISTORY_ITEM_BYTES} bytes"
                )));
            }
        }
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        store::lock_user(&mut tx, &me.user_id, self.db.backend() == Backend::Postgres).await?;
        let ids: Vec<&str> = put.items.iter().map(|i| i.id.as_str()).collect();
        let held = store::history_bytes(&mut tx, &me.user_id, &ids).await?;
        let adding: i64 = put.items.iter().map(|i| i.jwe.len() as i64).sum();
        if held + adding > HISTORY_QUOTA_BYTES {
            return Err(AccountError::Conflict(format!(
                "your history on this node is full ({} MiB): nothing was kept",
                HISTORY_QUOTA_BYTES / (1024 * 1024)
            )));
        }
        for item in &put.items {
            store::put_history_item(&mut tx, &me.user_id, &item.id, &item.jwe, now).await?;
        }
        tx.commit().await?;
        Ok(put.items.len())
    }

    /// The items written after `after`.
    pub async fn history(&self, me: &AuthDevice, after: i64) -> Result<HistoryPage, AccountError> {
        let mut c = self.read_conn().await?;
        let rows = store::history_after(&mut c, &me.user_id, after.max(0), HISTORY_PAGE_ITEMS).await?;
        let next = (rows.len() as i64 == HISTORY_PAGE_ITEMS).then(|| rows.last().map(|r| r.1)).flatten();
        let items = rows.into_iter().map(|(id, seq, jwe)| StoredHistoryItem { id, seq, jwe }).collect();
        Ok(HistoryPage { items, next })
    }
}

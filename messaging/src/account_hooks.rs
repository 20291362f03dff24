//! What messaging does for its own tables when an account is removed or a device revoked
//! ([`sichat_accounts::hooks`]), and what it hands over when the account moves. Runs on the
//! accounts service's transaction.
//!
//! - Moving: the messages still waiting for the user's devices (with which device still
//!   owes each), the policy and the replay guard travel ([`crate::moves`]). Once the account
//!   has moved, its mailbox here goes, freeing the node's quota; the ids it received stay,
//!   and so does what it was still sending (the delivery worker finishes it).
//!
//! It also ends the pickup WebSockets of what ended: once the change has committed, the
//! user's sessions on this process check their session tokens at once
//! ([`Hub::end_sessions`]); on PostgreSQL a `NOTIFY` sent in the transaction does the same
//! on every other replica, and only if the change commits.

use crate::live::{Hub, ENDED_CHANNEL};
use crate::mailbox::{self, is_postgres};
use crate::moves::{self, Limits};
use sichat_accounts::hooks::{
    AccountHooks, Arrival, ExportFuture, Exported, ExportedFuture, HookFuture, ImportFuture, PageFuture, Removal,
    Revocation,
};
use sqlx::AnyConnection;
use std::sync::Arc;

/// Messaging's [`AccountHooks`]; registered by the server at startup.
pub struct MessagingAccountHooks {
    hub: Arc<Hub>,
}

impl MessagingAccountHooks {
    /// The hooks of the messaging service whose live sessions are `hub`'s
    /// ([`crate::Messaging::hub`]).
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Tell the other replicas, when the transaction commits, that `user_id`'s sessions must
    /// check whether they may go on.
    async fn notify_replicas(&self, c: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
        if is_postgres(c) {
            // Counted, not returned: the Any driver has no type for `void`.
            sqlx::query("SELECT COUNT(*) FROM (SELECT pg_notify($1, $2)) n")
                .bind(ENDED_CHANNEL)
                .bind(self.hub.notice(user_id))
                .execute(&mut *c)
                .await?;
        }
        Ok(())
    }
}

impl AccountHooks for MessagingAccountHooks {
    fn name(&self) -> &'static str {
        "messaging"
    }

    /// The mailbox (and with it every device's pending rows), what the account was still
    /// sending, its policy, its drop reports and usage, and the ids of what it received.
    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            // Pending rows go with their messages (ON DELETE CASCADE); the triggers on
            // msg_pending keep the queue totals, which are deleted after.
            for table in ["msg_mailbox", "msg_outbox", "msg_received", "msg_policies", "msg_drops", "msg_usage"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(removal.user_id)
                    .execute(&mut *c)
                    .await?;
            }
            for device_id in removal.device_ids {
                for table in ["msg_pending", "msg_queue_totals", "msg_drops_seen"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE device_id = $1"))
                        .bind(device_id)
                        .execute(&mut *c)
                        .await?;
                }
            }
            self.notify_replicas(c, removal.user_id).await
        })
    }

    /// The device's queue goes; messages no other device still owes are deleted.
    fn device_revoked<'a>(&'a self, c: &'a mut AnyConnection, revocation: Revocation<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            mailbox::release_device(c, revocation.device_id).await?;
            for table in ["msg_queue_totals", "msg_drops_seen"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE device_id = $1"))
                    .bind(revocation.device_id)
                    .execute(&mut *c)
                    .await?;
            }
            self.notify_replicas(c, revocation.user_id).await
        })
    }

    /// Every pickup session of the account closes.
    fn account_removed_committed(&self, removal: Removal<'_>) {
        self.hub.end_sessions(removal.user_id);
    }

    /// The device's pickup sessions close (the user's other devices' stay open: each
    /// session checks its own token).
    fn device_revoked_committed(&self, revocation: Revocation<'_>) {
        self.hub.end_sessions(revocation.user_id);
    }

    fn export_account<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> ExportFuture<'a> {
        Box::pin(async move { Ok(self.export_with_more(c, user_id).await?.part) })
    }

    /// The part carries the oldest waiting messages that fit; the rest follow in pages.
    fn export_with_more<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> ExportedFuture<'a> {
        Box::pin(async move {
            match moves::export(c, user_id, Limits::default()).await? {
                Some((part, more)) => {
                    let part = serde_json::to_value(part).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                    Ok(Exported { part, more })
                }
                None => Ok(Exported { part: serde_json::Value::Null, more: None }),
            }
        })
    }

    fn export_page<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str, cursor: &'a str) -> PageFuture<'a> {
        Box::pin(moves::export_page(c, user_id, cursor))
    }

    fn import_page<'a>(
        &'a self,
        c: &'a mut AnyConnection,
        arrival: Arrival<'a>,
        page: serde_json::Value,
    ) -> ImportFuture<'a> {
        Box::pin(moves::import_page(c, arrival, page))
    }

    fn import_account<'a>(
        &'a self,
        c: &'a mut AnyConnection,
        arrival: Arrival<'a>,
        part: serde_json::Value,
    ) -> ImportFuture<'a> {
        Box::pin(moves::import(c, arrival, part))
    }

    /// The mailbox here goes: the new node holds what was waiting. Pickup sessions end with
    /// the account's device sessions (the accounts service ends those).
    fn account_moved<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> HookFuture<'a> {
        Box::pin(async move {
            mailbox::forget_moved(c, user_id).await?;
            self.notify_replicas(c, user_id).await
        })
    }
}

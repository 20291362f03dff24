//! Live delivery: wakes every connected device of a user when a message for it is
//! committed. On PostgreSQL the wake-up crosses replicas through `LISTEN`/`NOTIFY`.
//!
//! A wake-up carries no message: the woken session reads what is pending from the
//! database, so a missed or doubled wake-up can delay a message but never lose one.

use sichat_core::db::Db;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The `NOTIFY` channel; its payload is a user id.
pub const CHANNEL: &str = "sichat_mailbox";

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Hub {
    /// Subscribe before reading the queue: whatever commits after the read wakes the
    /// receiver, so nothing falls between reading and waiting.
    pub fn subscribe(&self, user_id: &str) -> watch::Receiver<u64> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(user_id.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Wake `user_id`'s sessions on this process.
    pub fn wake(&self, user_id: &str) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = users.get(user_id) {
            if tx.receiver_count() == 0 {
                users.remove(user_id);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// PostgreSQL: wake local sessions for every `NOTIFY` from any replica, reconnecting when
/// the listening connection drops. Runs until the process ends.
pub async fn listen(db: Db, hub: std::sync::Arc<Hub>) {
    let Some(url) = db.postgres_url() else { return };
    loop {
        match sqlx::postgres::PgListener::connect(url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot LISTEN for new messages; retrying");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(n) => hub.wake(n.payload()),
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to LISTEN for new messages; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

//! Live delivery: wakes every connected device of a user when a message for it is
//! committed. On PostgreSQL the wake-up crosses replicas through `LISTEN`/`NOTIFY`.
//!
//! A wake-up carries no message: the woken session reads what is pending from the
//! database, so a missed or doubled wake-up can delay a message but never lose one.

use sichat_core::db::Db;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The `NOTIFY` channel; its payload is `<origin> <user id>`, the origin naming the
/// process that committed (which has woken its own sessions already).
pub const CHANNEL: &str = "sichat_mailbox";

pub struct Hub {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    origin: String,
    /// Set when the node shuts down; every session holds a receiver until it has ended.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self { users: Mutex::default(), origin: sichat_core::ids::new_id(), closing: watch::channel(false).0 }
    }
}

impl Hub {
    /// For a session: changes to `true` when the node shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Tell every session the node is going away, and wait until they have all ended
    /// (each writes the acknowledgements it holds, then closes with 1001).
    pub async fn close_sessions(&self) {
        self.closing.send_replace(true);
        self.closing.closed().await;
    }

    /// The `NOTIFY` payload announcing a message for `user_id`.
    pub fn notice(&self, user_id: &str) -> String {
        format!("{} {user_id}", self.origin)
    }

    /// Wake the sessions a `NOTIFY` payload names, unless this process sent it.
    fn on_notice(&self, payload: &str) {
        match payload.split_once(' ') {
            Some((origin, _)) if origin == self.origin => {}
            Some((_, user_id)) => self.wake(user_id),
            None => self.wake(payload),
        }
    }

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
                            Ok(n) => hub.on_notice(n.payload()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_notices_are_skipped_others_wake() {
        let (hub, other) = (Hub::default(), Hub::default());
        let mut rx = hub.subscribe("u1");
        hub.on_notice(&hub.notice("u1"));
        assert!(!rx.has_changed().unwrap(), "this process woke its sessions already");
        hub.on_notice(&other.notice("u1"));
        assert!(rx.has_changed().unwrap(), "another replica's message wakes");
        rx.borrow_and_update();
        hub.on_notice("u1");
        assert!(rx.has_changed().unwrap(), "a bare user id (an older replica) wakes");
    }
}

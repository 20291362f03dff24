//! Live delivery: wakes every connected device of a user when a message for it is
//! committed, and tells a user's open sessions to check they may go on when one of the
//! user's devices is revoked or the account removed. On PostgreSQL both cross replicas
//! through `LISTEN`/`NOTIFY`.
//!
//! A wake-up carries no message: the woken session reads what is pending from the
//! database, so a missed or doubled wake-up can delay a message but never lose one. In the
//! same way an end notice carries no verdict: each session re-checks its own session token
//! against the database, and only those that no longer authenticate close.

use sichat_core::db::Db;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The `NOTIFY` channel of new messages; its payload is `<origin> <user id>`, the origin
/// naming the process that committed (which has woken its own sessions already).
pub const CHANNEL: &str = "sichat_mailbox";
/// The `NOTIFY` channel of ended devices and accounts, sent inside the transaction that
/// ends them; its payload is `<origin> <user id>` as on [`CHANNEL`].
pub const ENDED_CHANNEL: &str = "sichat_sessions_ended";

/// One watch channel per user, kept while someone listens.
type Signals = Mutex<HashMap<String, watch::Sender<u64>>>;

pub struct Hub {
    users: Signals,
    ended: Signals,
    origin: String,
    /// Set when the node shuts down; every session holds a receiver until it has ended.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            users: Signals::default(),
            ended: Signals::default(),
            origin: sichat_core::ids::new_id(),
            closing: watch::channel(false).0,
        }
    }
}

fn subscribe(signals: &Signals, user_id: &str) -> watch::Receiver<u64> {
    let mut users = signals.lock().unwrap_or_else(|p| p.into_inner());
    users.entry(user_id.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
}

fn signal(signals: &Signals, user_id: &str) {
    let mut users = signals.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = users.get(user_id) {
        if tx.receiver_count() == 0 {
            users.remove(user_id);
        } else {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
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

    /// The `NOTIFY` payload announcing a message for `user_id`, or (on [`ENDED_CHANNEL`])
    /// that a device or the account of `user_id` ended.
    pub fn notice(&self, user_id: &str) -> String {
        format!("{} {user_id}", self.origin)
    }

    /// Act on a `NOTIFY` payload of `channel`, unless this process sent it.
    fn on_notice(&self, channel: &str, payload: &str) {
        let user_id = match payload.split_once(' ') {
            Some((origin, _)) if origin == self.origin => return,
            Some((_, user_id)) => user_id,
            None => payload,
        };
        match channel {
            ENDED_CHANNEL => self.end_sessions(user_id),
            _ => self.wake(user_id),
        }
    }

    /// Subscribe before reading the queue: whatever commits after the read wakes the
    /// receiver, so nothing falls between reading and waiting.
    pub fn subscribe(&self, user_id: &str) -> watch::Receiver<u64> {
        subscribe(&self.users, user_id)
    }

    /// Wake `user_id`'s sessions on this process.
    pub fn wake(&self, user_id: &str) {
        signal(&self.users, user_id)
    }

    /// For a session: changes when a device or the account of `user_id` has ended, and the
    /// session must check that it may go on.
    pub fn ended(&self, user_id: &str) -> watch::Receiver<u64> {
        subscribe(&self.ended, user_id)
    }

    /// A device or the account of `user_id` has ended (committed): its sessions on this
    /// process check their session tokens now, and those that no longer hold close.
    pub fn end_sessions(&self, user_id: &str) {
        signal(&self.ended, user_id)
    }
}

/// PostgreSQL: wake or check local sessions for every `NOTIFY` from any replica,
/// reconnecting when the listening connection drops. Runs until the process ends.
pub async fn listen(db: Db, hub: std::sync::Arc<Hub>) {
    let Some(url) = db.postgres_url() else { return };
    loop {
        match sqlx::postgres::PgListener::connect(url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen_all([CHANNEL, ENDED_CHANNEL]).await {
                    tracing::warn!(error = %e, "cannot LISTEN for new messages; retrying");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(n) => hub.on_notice(n.channel(), n.payload()),
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
        hub.on_notice(CHANNEL, &hub.notice("u1"));
        assert!(!rx.has_changed().unwrap(), "this process woke its sessions already");
        hub.on_notice(CHANNEL, &other.notice("u1"));
        assert!(rx.has_changed().unwrap(), "another replica's message wakes");
        rx.borrow_and_update();
        hub.on_notice(CHANNEL, "u1");
        assert!(rx.has_changed().unwrap(), "a bare user id (an older replica) wakes");
    }

    #[test]
    fn end_notices_reach_only_that_users_sessions_and_do_not_wake() {
        let (hub, other) = (Hub::default(), Hub::default());
        let (mut ended, woken, bystander) = (hub.ended("u1"), hub.subscribe("u1"), hub.ended("u2"));
        hub.on_notice(ENDED_CHANNEL, &hub.notice("u1"));
        assert!(!ended.has_changed().unwrap(), "this process told its sessions already");
        hub.on_notice(ENDED_CHANNEL, &other.notice("u1"));
        assert!(ended.has_changed().unwrap(), "another replica's revocation reaches the user's sessions");
        assert!(!woken.has_changed().unwrap(), "an end is not a new message");
        assert!(!bystander.has_changed().unwrap(), "another user's sessions are left alone");
        ended.borrow_and_update();
        hub.end_sessions("u1");
        assert!(ended.has_changed().unwrap());
        hub.on_notice(CHANNEL, &other.notice("u2"));
        assert!(!bystander.has_changed().unwrap(), "a new message is not an end");
    }
}

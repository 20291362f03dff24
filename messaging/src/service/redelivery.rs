//! Delivering again what a restored node lost. Every node names the copy of its mailboxes
//! it serves, its mailbox epoch (`sichat_core::node::mailbox_epoch`), in each answer to a
//! delivery and at `GET /didcomm`; a restore makes a new one. A sending node keeps the body
//! of what other nodes took for [`REDELIVERY_WINDOW_MS`], with the epoch that took it. When
//! a node names another epoch (in an answer, or when asked every `peer_check`), what it took
//! under the old one is queued again. The restored node recognises what it had before the
//! backup (its memory of received ids came back with it) and keeps the rest: the messages
//! that arrived after the backup, which its users' devices had not fetched.

use super::Messaging;
use crate::outbox::{self, Delivered, REDELIVERY_WINDOW_MS};
use serde_json::Value;
use sichat_core::ids::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The mailbox epoch in another node's answer, if it names a plausible one.
pub(crate) fn epoch_in(answer: &Value) -> Option<&str> {
    answer.get("epoch")?.as_str().filter(|e| !e.is_empty() && e.len() <= 128 && e.chars().all(|c| c.is_ascii_graphic()))
}

/// The epoch each endpoint last named to this process.
#[derive(Default)]
pub(crate) struct PeerEpochs(Mutex<HashMap<String, String>>);

impl PeerEpochs {
    /// Those of `delivered` whose endpoint named another epoch before, or none yet.
    fn changed<'a>(&self, delivered: impl Iterator<Item = &'a Delivered>) -> Vec<Delivered> {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed: Vec<Delivered> = Vec::new();
        for d in delivered {
            if known.get(&d.endpoint) != Some(&d.epoch) {
                known.insert(d.endpoint.clone(), d.epoch.clone());
                changed.push(d.clone());
            }
        }
        changed
    }
}

impl Messaging {
    /// After deliveries were recorded: an endpoint that names an epoch this process has not
    /// seen from it may have been restored since it took earlier forwards.
    pub(crate) async fn notice_epochs<'a>(&self, delivered: impl Iterator<Item = &'a Delivered>) {
        for d in self.peer_epochs.changed(delivered) {
            self.redeliver(&d.endpoint, &d.epoch).await;
        }
    }

    /// Queue again what `endpoint` took under an epoch other than `epoch`.
    async fn redeliver(&self, endpoint: &str, epoch: &str) {
        let now = now_ms();
        let requeued = async {
            let mut c = self.db.pool().acquire().await?;
            outbox::requeue(&mut c, endpoint, epoch, now - REDELIVERY_WINDOW_MS, now).await
        }
        .await;
        match requeued {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(%endpoint, count = n, "a node was restored from a backup: delivering again what it took");
                ::metrics::counter!("sichat_message_redeliveries_total").increment(n);
                self.outbox_ready.notify_one();
            }
            Err(e) => tracing::warn!(%endpoint, error = %e, "cannot queue again what a restored node lost"),
        }
    }

    /// Every `peer_check`, ask each node this one delivered to within the window which epoch
    /// it serves, and deliver again what it lost.
    pub(crate) async fn run_peer_checks(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.settings.peer_check).await;
            let listed = async {
                let mut c = self.db.pool().acquire().await?;
                outbox::delivered_endpoints(&mut c, now_ms() - REDELIVERY_WINDOW_MS).await
            }
            .await;
            let endpoints = match listed {
                Ok(endpoints) => endpoints,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the nodes delivered to");
                    continue;
                }
            };
            for endpoint in endpoints {
                match self.resolver.fetcher().get_json(&endpoint).await {
                    Ok(answer) => match epoch_in(&answer) {
                        Some(epoch) => self.redeliver(&endpoint, epoch).await,
                        None => tracing::debug!(%endpoint, "the node names no mailbox epoch"),
                    },
                    Err(e) => tracing::debug!(%endpoint, error = %e, "cannot ask a node for its mailbox epoch"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(endpoint: &str, epoch: &str) -> Delivered {
        Delivered { endpoint: endpoint.into(), epoch: epoch.into() }
    }

    #[test]
    fn a_new_or_changed_epoch_is_noticed_once() {
        let peers = PeerEpochs::default();
        let (a1, a2, b1) = (at("https://a/didcomm", "1"), at("https://a/didcomm", "2"), at("https://b/didcomm", "1"));
        assert_eq!(peers.changed([&a1, &a1, &b1].into_iter()), vec![a1.clone(), b1.clone()]);
        assert!(peers.changed([&a1, &b1].into_iter()).is_empty());
        assert_eq!(peers.changed([&a2, &b1].into_iter()), vec![a2]);
    }

    #[test]
    fn only_plausible_epochs_are_taken() {
        assert_eq!(epoch_in(&serde_json::json!({"epoch": "abc-_1"})), Some("abc-_1"));
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"epoch": ""}),
            serde_json::json!({"epoch": 7}),
            serde_json::json!({"epoch": "a b"}),
            serde_json::json!({"epoch": "x".repeat(129)}),
        ] {
            assert_eq!(epoch_in(&bad), None, "{bad}");
        }
    }
}

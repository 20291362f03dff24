//! The messaging service of one node: taking messages from its users' devices, delivering
//! them to other nodes (or to its own users), accepting messages from other nodes under each
//! recipient's policy, and keeping them until every device has them.

mod redelivery;
pub(crate) use redelivery::epoch_in;

use crate::federation::Failure;
use crate::live::Hub;
use crate::mailbox::{self, Incoming, Inserted, NewMessage};
use crate::outbox::{self, Entry, NewEntry, Outcome};
use crate::policy::{Folder, Policy};
use crate::{forwarded, Message, MessagingError, PRESENTATION_ATTACHMENT};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::db::{Backend, Db};
use sichat_core::did::Did;
use sichat_core::group_commit::{GroupCommit, Grouped, WriteFuture};
use sichat_core::ids::{b64url, b64url_decode, now_ms};
use sichat_core::node::NodeIdentity;
use sichat_core::resolver::Resolver;
use sichat_issuer::Issuer;
use sichat_verifier::verify::{Expectation, Options};
use sichat_verifier::Verifier;
use sqlx::{AnyConnection, Row};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

/// Limits and lifetimes, all configurable (`msg_*` in the server's configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest forward accepted, envelope included.
    pub max_message_bytes: usize,
    /// Most keys one envelope may be encrypted to.
    pub max_recipient_keys: usize,
    /// Bytes a user's mailbox may hold; the oldest requests go first, then the oldest of
    /// the inbox.
    pub quota_bytes: i64,
    /// Of `quota_bytes`, what the requests folder may hold. Requests never make room by
    /// dropping inbox messages.
    pub requests_quota_bytes: i64,
    /// Messages older than this are dropped, whether fetched or not.
    pub max_age_ms: i64,
    /// How long the outbox keeps trying a node that does not answer.
    pub retry_window_ms: i64,
    /// Messages one device may hand over per second, and the burst above it.
    pub send_rate: (u32, u32),
    /// Messages one sending node may deliver here per second, and the burst.
    pub node_rate: (u32, u32),
    /// Messages one sender DID may deliver here per second, and the burst.
    pub sender_rate: (u32, u32),
    /// Requests-folder messages one stranger may leave per day, and all strangers together.
    pub requests_per_sender_per_day: i64,
    pub requests_per_day: i64,
    /// Deliveries in flight to one other node at once (under its connection cap).
    pub deliveries_per_node: usize,
    /// How often the nodes delivered to are asked which copy of their mailboxes they serve
    /// (a restored node lost what it took after its backup: see `redelivery`).
    pub peer_check: Duration,
    /// How often a standby hands over what it keeps for accounts of other nodes (see
    /// `standby`).
    pub standby_handover: Duration,
    /// How often a pickup session re-checks its session token and, in live mode, the
    /// queue (a safety net under the wake-ups).
    pub pickup_recheck: Duration,
    /// Pickup WebSockets open at once per device and per account, in this process.
    pub pickup_sessions_per_device: usize,
    pub pickup_sessions_per_account: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_recipient_keys: 64,
            quota_bytes: 64 * 1024 * 1024,
            max_age_ms: 30 * 24 * 3_600_000,
            retry_window_ms: 3 * 24 * 3_600_000,
            send_rate: (50, 200),
            node_rate: (200, 1000),
            sender_rate: (20, 100),
            requests_per_sender_per_day: 5,
            requests_per_day: 200,
            peer_check: Duration::from_secs(600),
            standby_handover: Duration::from_secs(30),
            deliveries_per_node: 48,
            pickup_recheck: Duration::from_secs(5),
            requests_quota_bytes: 16 * 1024 * 1024,
            pickup_sessions_per_device: 4,
            pickup_sessions_per_account: 16,
        }
    }
}

/// Whom a delivery comes from: the node that signed it, and the user it vouches for.
#[derive(Debug, Clone)]
pub struct Vouched {
    pub node: Did,
    pub sender: Did,
}

/// The answer to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Stored,
    /// A redelivery of something already here.
    Duplicate,
}

type Limiter = DefaultKeyedRateLimiter<String>;

fn limiter((per_second, burst): (u32, u32)) -> Limiter {
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}

/// Forwards in flight to other nodes at once. Each waits for the other node's commit, so
/// this over that node's answer time bounds the delivery rate.
const DELIVERY_CONCURRENCY: usize = 256;
/// New forwards waiting for a delivery slot in memory; past this they wait in the outbox.
const DISPATCH_QUEUE: usize = 1024;
/// How long a claimed forward is left alone before another worker may retry it.
const LEASE_MS: i64 = 60_000;
/// Ids of received messages are remembered this long after their arrival (well past the
/// sending node's retry window) to recognise redeliveries.
const RECEIVED_MEMORY_MS: i64 = 7 * 24 * 3_600_000;

pub struct Messaging {
    pub(crate) db: Db,
    /// The mailbox's and outbox's hot writes, sharing transactions on SQLite.
    pub(crate) writes: GroupCommit,
    /// Received messages, stored together per batch of `writes`.
    store_messages: Arc<StoreMessages>,
    /// New forwards, queued together per batch of `writes`.
    queue_forwards: Arc<QueueForwards>,
    accounts: Arc<Accounts>,
    issuer: Arc<Issuer>,
    verifier: Arc<Verifier>,
    node: Arc<NodeIdentity>,
    resolver: Arc<Resolver>,
    pub(crate) settings: Settings,
    pub(crate) hub: Arc<Hub>,
    /// Open pickup sessions, capped per device and per account.
    pub(crate) sessions: Arc<crate::sessions::Sessions>,
    outbox_ready: Notify,
    /// Which copy of its mailboxes this node serves (`sichat_core::node::mailbox_epoch`).
    pub(crate) epoch: String,
    peer_epochs: redelivery::PeerEpochs,
    pub(crate) peer_slots: crate::federation::PeerSlots,
    /// New forwards go straight to the delivery worker, already leased to it, saving a
    /// claim per message; once [`Self::run_outbox`] runs and while the queue has room.
    dispatch: mpsc::Sender<Entry>,
    dispatched: std::sync::Mutex<Option<mpsc::Receiver<Entry>>>,
    dispatching: std::sync::atomic::AtomicBool,
    sends: Limiter,
    nodes: Limiter,
    senders: Limiter,
}

impl Messaging {
    pub fn new(
        db: Db,
        node: Arc<NodeIdentity>,
        accounts: Arc<Accounts>,
        issuer: Arc<Issuer>,
        verifier: Arc<Verifier>,
        resolver: Arc<Resolver>,
        settings: Settings,
    ) -> Self {
        let (dispatch, dispatched) = mpsc::channel(DISPATCH_QUEUE);
        Self {
            peer_slots: crate::federation::PeerSlots::new(settings.deliveries_per_node),
            dispatch,
            dispatched: std::sync::Mutex::new(Some(dispatched)),
            dispatching: Default::default(),
            sends: limiter(settings.send_rate),
            nodes: limiter(settings.node_rate),
            senders: limiter(settings.sender_rate),
            writes: GroupCommit::on_both(db.clone(), "messaging"),
            store_messages: Arc::new(StoreMessages {
                quota: mailbox::Quota {
                    total: settings.quota_bytes,
                    requests: settings.requests_quota_bytes.min(settings.quota_bytes),
                },
            }),
            queue_forwards: Arc::new(QueueForwards),
            db,
            accounts,
            issuer,
            verifier,
            node,
            resolver,
            sessions: Arc::new(crate::sessions::Sessions::new(
                settings.pickup_sessions_per_device,
                settings.pickup_sessions_per_account,
            )),
            settings,
            hub: Arc::new(Hub::default()),
            outbox_ready: Notify::new(),
            epoch: String::new(),
            peer_epochs: Default::default(),
        }
    }

    /// The node's mailbox epoch (`sichat_core::node::mailbox_epoch`), named to other nodes.
    pub fn with_mailbox_epoch(mut self, epoch: String) -> Self {
        self.epoch = epoch;
        self
    }

    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    /// Wakes connected devices; [`crate::live::listen`] feeds it from other replicas.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The user DID a session speaks for.
    pub fn did_of(&self, me: &AuthDevice) -> Result<Did, MessagingError> {
        Ok(self.node.user_did(&me.user_name)?)
    }

    // ---- sending ----

    /// Take a forward from one of the user's devices into the outbox. Once this returns,
    /// the forward is durable and will be delivered (or its failure recorded).
    pub async fn send(&self, me: &AuthDevice, body: &[u8]) -> Result<outbox::Status, MessagingError> {
        if self.sends.check_key(&me.device_id).is_err() {
            return Err(MessagingError::RateLimited("this device is sending too fast; retry in a moment".into()));
        }
        let sender = self.did_of(me)?;
        let forward = self.read_forward(body)?;
        if let Some(skid) = forward.envelope.get("protected").and_then(protected_skid) {
            // A wallet that has not followed the node to its new URL yet still seals under
            // the user's DID from the old one: the same keys, answered there.
            // So does a wallet that followed its account here from another node.
            let former = self.node.former().iter().filter_map(|f| f.user_did(&me.user_name).ok());
            let ours =
                std::iter::once(sender.clone()).chain(former).any(|d| skid.starts_with(&format!("{}#", d.as_str())));
            let skid_did = skid.split('#').next().unwrap_or_default();
            if !ours && self.accounts.name_by_alias(skid_did).await?.as_deref() != Some(me.user_name.as_str()) {
                return Err(MessagingError::Malformed(format!(
                    "the envelope is authcrypted from {skid}, which is not a key of your DID {sender}"
                )));
            }
        }
        if let Some(name) = self.local_user_name(&forward.next) {
            let moved = self.accounts.moved_away(&name).await?.is_some_and(|a| a.answering);
            if !moved && self.accounts.active_user_id(&name).await?.is_none() {
                return Err(MessagingError::UnknownRecipient(format!("{} has no account on this node", forward.next)));
            }
        }
        let body =
            std::str::from_utf8(body).map_err(|_| MessagingError::Malformed("the message is not UTF-8".into()))?;
        let now = now_ms();
        let dispatch = match self.dispatching.load(std::sync::atomic::Ordering::Relaxed) {
            true => self.dispatch.try_reserve().ok(),
            false => None,
        };
        let entry = Arc::new(NewEntry {
            id: forward.id.clone(),
            user_id: me.user_id.clone(),
            sender: sender.to_string(),
            recipient: forward.next.to_string(),
            body_hash: hash(body.as_bytes()),
            body: body.to_owned(),
            now,
            // Dispatched: leased to this process's worker, like a claim.
            next_attempt_at: if dispatch.is_some() { now + LEASE_MS } else { now },
        });
        let fresh = match self.writes.write_grouped(&self.queue_forwards, entry.clone()).await? {
            Ok(fresh) => fresh,
            Err(()) => return Err(MessagingError::DuplicateId(forward.id)),
        };
        let status = if fresh {
            match dispatch {
                Some(slot) => slot.send(entry.to_attempt()),
                None => self.outbox_ready.notify_one(),
            }
            outbox::Status::queued(&entry)
        } else {
            // The same request again: say where the first one is.
            outbox::status(&mut *self.db.read().await?, &me.user_id, &forward.id)
                .await?
                .ok_or_else(|| MessagingError::internal("a queued message vanished"))?
        };
        ::metrics::counter!("sichat_messages_sent_total").increment(1);
        Ok(status)
    }

    /// A user's own sent message.
    pub async fn status(&self, me: &AuthDevice, id: &str) -> Result<outbox::Status, MessagingError> {
        let mut conn = self.db.read().await?;
        outbox::status(&mut conn, &me.user_id, id)
            .await?
            .ok_or_else(|| MessagingError::NotFound(format!("you sent no message with id {id}")))
    }

    /// Check a forward: size, shape, and an encrypted envelope with not too many keys.
    pub(crate) fn read_forward(&self, body: &[u8]) -> Result<Forward, MessagingError> {
        let limit = self.settings.max_message_bytes;
        if body.len() > limit {
            return Err(MessagingError::TooLarge { size: body.len(), limit });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| MessagingError::Malformed(format!("not JSON: {e}")))?;
        let message = Message::from_json(value)?;
        let (next, envelope) = forwarded(&message)?;
        let next = Did::parse(&next).map_err(|e| MessagingError::Malformed(format!("`body.next`: {e}")))?;
        let keys = envelope.get("recipients").and_then(Value::as_array).map_or(0, Vec::len);
        if keys == 0 {
            return Err(MessagingError::Malformed("the envelope has no recipients".into()));
        }
        if keys > self.settings.max_recipient_keys {
            return Err(MessagingError::TooManyRecipients { count: keys, limit: self.settings.max_recipient_keys });
        }
        let presentation = message
            .attachments
            .iter()
            .find(|a| a.id.as_deref() == Some(PRESENTATION_ATTACHMENT))
            .map(|a| {
                a.data.base64.as_deref().and_then(b64url_decode).and_then(|b| String::from_utf8(b).ok()).ok_or_else(
                    || MessagingError::Malformed("the presentation attachment must hold base64 data".into()),
                )
            })
            .transpose()?;
        // A presentation is a `vp+jwt`: one that cannot even be read (not a compact JWS, or
        // JSON nested past the bounds) is bad input, refused before anything looks inside.
        if let Some(vp) = &presentation {
            sichat_core::jws::unverified_parts(vp).map_err(|e| {
                MessagingError::Malformed(format!("the presentation attachment is not a readable vp+jwt: {e}"))
            })?;
        }
        Ok(Forward { id: message.id.as_str().to_owned(), next, envelope, presentation })
    }

    /// The user of a portable `did:webvh` DID that lives at this node's `did:web` address.
    /// The name of the account here that `did` is: a user's DID (did:web or did:webvh), or
    /// a DID the account had before (another node it moved from, the did:key it joined as).
    pub(crate) async fn recipient_name(&self, did: &Did) -> Result<String, MessagingError> {
        if let Some(name) = self.local_user_name(did).or_else(|| self.local_webvh_name(did)) {
            return Ok(name);
        }
        self.accounts
            .name_by_alias(did.as_str())
            .await?
            .ok_or_else(|| MessagingError::UnknownRecipient(format!("{did} is not hosted on this node")))
    }

    pub(crate) fn local_webvh_name(&self, did: &Did) -> Option<String> {
        let webvh = sichat_core::webvh::WebvhDid::parse(did.as_str()).ok()?;
        self.local_user_name(&webvh.web_did())
    }

    /// The name of a user of this node, if `did` is one's: by the node's DID now or at a URL
    /// it had before (`sichatd admin change-url`).
    pub(crate) fn local_user_name(&self, did: &Did) -> Option<String> {
        let node_dids = std::iter::once(self.node.did()).chain(self.node.former().iter().map(|f| &f.did));
        let name = node_dids.filter_map(|node| did.as_str().strip_prefix(&format!("{node}:users:"))).next()?;
        (!name.is_empty() && !name.contains(':')).then(|| name.to_owned())
    }

    // ---- the outbox worker ----

    /// Deliver queued forwards until the process ends: due ones at once, failed ones again
    /// after an exponential backoff, until the retry window closes.
    pub async fn run_outbox(self: Arc<Self>) {
        let (done_tx, done_rx) = mpsc::channel::<Outcome>(4096);
        tokio::spawn(self.clone().record_outcomes(done_rx));
        tokio::spawn(self.clone().run_peer_checks());
        tokio::spawn(self.clone().run_handovers());
        let slots = Arc::new(Semaphore::new(DELIVERY_CONCURRENCY));
        let dispatched = self.dispatched.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut dispatched) = dispatched {
            let (this, slots, done) = (self.clone(), slots.clone(), done_tx.clone());
            tokio::spawn(async move {
                while let Some(entry) = dispatched.recv().await {
                    let Ok(permit) = slots.clone().acquire_owned().await else { return };
                    // Waited past its lease (every slot busy with slow nodes): the poll
                    // takes it now, and two attempts at once would only be wasted.
                    if now_ms() >= entry.leased_until {
                        continue;
                    }
                    this.clone().spawn_attempt(entry, permit, done.clone());
                }
            });
            self.dispatching.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        loop {
            let free = slots.available_permits().max(1) as i64;
            let claimed = async {
                let now = now_ms();
                let mut conn = self.db.pool().acquire().await?;
                outbox::claim(&mut conn, self.db.backend(), now, now + LEASE_MS, free.min(256)).await
            }
            .await;
            let batch = match claimed {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                // New forwards wake us; retries and other replicas' forwards are found by the poll.
                let _ = tokio::time::timeout(Duration::from_millis(500), self.outbox_ready.notified()).await;
                continue;
            }
            for entry in batch {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                self.clone().spawn_attempt(entry, permit, done_tx.clone());
            }
        }
    }

    fn spawn_attempt(self: Arc<Self>, entry: Entry, slot: OwnedSemaphorePermit, done: mpsc::Sender<Outcome>) {
        tokio::spawn(async move {
            let outcome = self.attempt(&entry).await;
            let _ = done.send(outcome).await;
            drop(slot);
        });
    }

    /// Write outcomes as they come, many per transaction.
    async fn record_outcomes(self: Arc<Self>, mut rx: mpsc::Receiver<Outcome>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 512).await > 0 {
            let written = async {
                let mut tx = self.db.pool().begin().await?;
                outbox::record(&mut tx, &batch, now_ms()).await?;
                tx.commit().await
            }
            .await;
            match written {
                Ok(()) => self.notice_epochs(batch.iter().filter_map(|o| o.delivered.as_ref())).await,
                // The leases run out and the forwards are tried again; the recipient's node
                // recognises what it already has.
                Err(e) => tracing::warn!(error = %e, count = batch.len(), "cannot record delivery outcomes"),
            }
            batch.clear();
        }
    }

    /// One delivery attempt, and what it means for the forward.
    async fn attempt(&self, entry: &Entry) -> Outcome {
        let now = now_ms();
        let result = self.deliver(entry).await;
        let mut delivered = None;
        let (state, error) = match result {
            Ok(to) => {
                delivered = to;
                (outbox::DELIVERED, None)
            }
            Err(Failure::NotAccepted) => (outbox::NOT_ACCEPTED, None),
            Err(Failure::Moved { why, .. }) => (outbox::QUEUED, Some(why)),
            Err(Failure::Permanent(why)) => (outbox::FAILED, Some(why)),
            Err(Failure::Temporary(why)) if now - entry.created_at > self.settings.retry_window_ms => {
                (outbox::FAILED, Some(format!("gave up after {} attempts: {why}", entry.attempts + 1)))
            }
            Err(Failure::Temporary(why)) => (outbox::QUEUED, Some(why)),
        };
        if let Some(why) = &error {
            tracing::info!(id = %entry.id, state, error = %why, "message delivery attempt failed");
        }
        ::metrics::counter!("sichat_message_deliveries_total", "state" => state).increment(1);
        Outcome {
            id: entry.id.clone(),
            state,
            next_attempt_at: now + outbox::backoff_ms(entry.attempts),
            error,
            delivered,
        }
    }

    // ---- receiving ----

    /// Accept a forward for one of this node's users from `from`, under the user's policy.
    /// It is committed before this returns.
    pub async fn receive(&self, from: &Vouched, body: &[u8]) -> Result<Received, MessagingError> {
        let forward = self.read_forward(body)?;
        let name = self.recipient_name(&forward.next).await?;
        let Some(Recipient { user_id, devices, policy, moving }) = self.recipient(&name).await? else {
            if let Some(away) = self.accounts.moved_away(&name).await?.filter(|a| a.answering) {
                return Err(MessagingError::RecipientMoved {
                    message: format!(
                        "{} moved to {}: resolve the DID again and deliver there",
                        forward.next, away.origin
                    ),
                    to: format!("{}{}", away.origin.trim_end_matches('/'), sichat_accounts::DIDCOMM_PATH),
                });
            }
            return Err(MessagingError::UnknownRecipient(format!("{} has no account on this node", forward.next)));
        };
        if moving {
            return Err(MessagingError::RecipientMoving(format!(
                "{} is moving to another node: try again in a minute",
                forward.next
            )));
        }
        if from.node != *self.node.did() && self.nodes.check_key(&from.node.to_string()).is_err() {
            return Err(MessagingError::RateLimited("your node is delivering too fast".into()));
        }
        if self.senders.check_key(&from.sender.to_string()).is_err() {
            return Err(MessagingError::RateLimited("this sender is sending too fast".into()));
        }
        let body_hash = hash(body);
        let judged = match encrypted_to_any(&forward.envelope, &forward.next, &devices) {
            true => self.judge(&user_id, &policy, &forward, from).await,
            false => Err(MessagingError::Malformed(format!(
                "the envelope is not encrypted to any key of {}: none of its devices could open it",
                forward.next
            ))),
        };
        let folder = match judged {
            Ok(folder) => folder,
            Err(refused) => {
                // A redelivery is answered as such, whatever the policy says now.
                let mut conn = self.db.read().await?;
                return match mailbox::received_hash(&mut conn, &user_id, &forward.id).await? {
                    Some(h) if h == body_hash => Ok(Received::Duplicate),
                    Some(_) => Err(MessagingError::DuplicateId(forward.id)),
                    None => Err(refused),
                };
            }
        };
        let notify = (self.db.backend() == Backend::Postgres).then(|| self.hub.notice(&user_id));
        let message = NewMessage {
            user_id: user_id.clone(),
            id: forward.id.clone(),
            sender: from.sender.to_string(),
            folder: folder.as_str(),
            envelope: serde_json::to_string(&forward.envelope).map_err(MessagingError::internal)?,
            body_hash,
            presentation: forward.presentation.is_some(),
            received_at: now_ms(),
        };
        let inserted =
            self.writes.write_grouped(&self.store_messages, Arc::new(Incoming { message, devices, notify })).await?;
        match inserted {
            Inserted::New { dropped } => {
                self.hub.wake(&user_id);
                ::metrics::counter!("sichat_messages_received_total", "folder" => folder.as_str()).increment(1);
                if dropped.0 > 0 {
                    ::metrics::counter!("sichat_messages_dropped_total", "reason" => "quota")
                        .increment(dropped.0 as u64);
                }
                Ok(Received::Stored)
            }
            Inserted::Duplicate => Ok(Received::Duplicate),
            Inserted::Conflict => Err(MessagingError::DuplicateId(forward.id)),
        }
    }

    /// The recipient's policy applied to a sender: a folder, or "not accepted".
    async fn judge(
        &self,
        user_id: &str,
        policy: &Policy,
        forward: &Forward,
        from: &Vouched,
    ) -> Result<Folder, MessagingError> {
        if policy.blocks(&from.sender) {
            return Err(MessagingError::NotAccepted);
        }
        if policy.accept_members && from.node == *self.node.did() {
            return Ok(Folder::Inbox);
        }
        if self.issuer.has_issued(user_id, from.sender.as_str(), &policy.accept_credentials).await.unwrap_or(false) {
            return Ok(Folder::Inbox);
        }
        if let Some(vp) = &forward.presentation {
            if self.presentation_accepted(vp, forward, from, policy).await {
                return Ok(Folder::Inbox);
            }
        }
        if !policy.requests {
            return Err(MessagingError::NotAccepted);
        }
        let since = now_ms() - 24 * 3_600_000;
        let mut conn = self.db.read().await?;
        let (mine, total) = mailbox::recent_requests(&mut conn, user_id, from.sender.as_str(), since).await?;
        if mine >= self.settings.requests_per_sender_per_day || total >= self.settings.requests_per_day {
            tracing::info!(sender = %from.sender, "requests folder full for this sender: not accepted");
            return Err(MessagingError::NotAccepted);
        }
        Ok(Folder::Requests)
    }

    /// A presentation the sender attached: valid, bound to this forward and to the
    /// recipient, by the sender, carrying a credential of an accepted type that the
    /// recipient issued.
    async fn presentation_accepted(&self, vp: &str, forward: &Forward, from: &Vouched, policy: &Policy) -> bool {
        let opts = Options {
            expect: Some(Expectation { nonce: forward.id.clone(), audience: forward.next.to_string() }),
            ..Options::default()
        };
        let report = self.verifier.verify_presentation("vp+jwt", vp, &opts).await;
        if !report.valid || report.holder.as_deref() != Some(from.sender.as_str()) {
            tracing::info!(sender = %from.sender, why = ?report.first_failure().map(|c| &c.reason), "attached presentation refused");
            return false;
        }
        report.credentials.iter().any(|c| {
            c.valid
                && c.issuer.as_deref() == Some(forward.next.as_str())
                && c.types.iter().any(|t| policy.accept_credentials.contains(t))
        })
    }

    // ---- policy ----

    pub async fn policy_of(&self, user_id: &str) -> Result<Policy, MessagingError> {
        let row = sqlx::query("SELECT policy FROM msg_policies WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *self.db.read().await?)
            .await?;
        parse_policy(row.map(|r| r.try_get("policy")).transpose()?)
    }

    /// An active user of this node by name, with their active devices (a message is kept
    /// for each) and their policy: one read on the receive path. (It reads the accounts'
    /// tables, as `accounts` would, beside this crate's own.)
    async fn recipient(&self, name: &str) -> Result<Option<Recipient>, MessagingError> {
        let rows = sqlx::query(
            "SELECT u.id AS user_id, d.id AS device_id, p.policy, \
             (SELECT COUNT(*) FROM acct_moves m WHERE m.user_id = u.id AND m.direction = 'out' \
              AND m.status = 'exported' AND m.expires_at > $2) AS moving FROM acct_users u \
             LEFT JOIN msg_policies p ON p.user_id = u.id \
             LEFT JOIN acct_devices d ON d.user_id = u.id AND d.revoked_at IS NULL \
             WHERE u.name = $1 AND u.status = 'active' ORDER BY d.created_at",
        )
        .bind(name)
        .bind(now_ms())
        .fetch_all(&mut *self.db.read().await?)
        .await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let devices = rows
            .iter()
            .filter_map(|r| r.try_get::<Option<String>, _>("device_id").transpose())
            .collect::<Result<_, _>>()?;
        Ok(Some(Recipient {
            user_id: first.try_get("user_id")?,
            devices,
            policy: parse_policy(first.try_get("policy")?)?,
            moving: first.try_get::<i64, _>("moving")? > 0,
        }))
    }

    pub async fn set_policy(&self, me: &AuthDevice, policy: Policy) -> Result<Policy, MessagingError> {
        let policy = policy.validated()?;
        let text = serde_json::to_string(&policy).map_err(MessagingError::internal)?;
        sqlx::query(
            "INSERT INTO msg_policies (user_id, policy, updated_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) \
             DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
        )
        .bind(&me.user_id)
        .bind(&text)
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(policy)
    }

    // ---- housekeeping ----

    /// Drop expired messages (reported to the user), release what revoked devices still
    /// owed, and forget old ids, drop reports and finished forwards. Returns how many rows
    /// went.
    pub async fn housekeeping(&self) -> Result<u64, MessagingError> {
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let expired = mailbox::expire(&mut tx, now - self.settings.max_age_ms, now).await?;
        let released = mailbox::release_revoked(&mut tx).await?;
        let pruned = mailbox::prune(&mut tx, now - RECEIVED_MEMORY_MS, now - self.settings.max_age_ms).await?
            + outbox::prune(&mut tx, now - RECEIVED_MEMORY_MS).await?
            + crate::federation::forget_expired_nonces(&mut tx, now / 1000).await?;
        tx.commit().await?;
        if expired > 0 {
            ::metrics::counter!("sichat_messages_dropped_total", "reason" => "expired").increment(expired as u64);
        }
        self.sends.retain_recent();
        self.nodes.retain_recent();
        self.senders.retain_recent();
        Ok(expired as u64 + released as u64 + pruned)
    }
}

/// A forward as this node reads it.
pub(crate) struct Forward {
    pub id: String,
    pub next: Did,
    pub envelope: Value,
    pub presentation: Option<String>,
}

/// Storing received messages: every one in a batch of the messaging writer at once.
struct StoreMessages {
    quota: mailbox::Quota,
}

impl Grouped for StoreMessages {
    type Item = Incoming;
    type Out = Inserted;
    fn write_all<'c>(&'c self, c: &'c mut AnyConnection, items: Vec<Arc<Incoming>>) -> WriteFuture<'c, Vec<Inserted>> {
        Box::pin(mailbox::insert_all(c, items, self.quota))
    }
}

/// Queueing new forwards: every one in a batch of the messaging writer at once.
struct QueueForwards;

impl Grouped for QueueForwards {
    type Item = NewEntry;
    type Out = Result<bool, ()>;
    fn write_all<'c>(&'c self, c: &'c mut AnyConnection, items: Vec<Arc<NewEntry>>) -> WriteFuture<'c, Vec<Self::Out>> {
        Box::pin(outbox::insert_all(c, items))
    }
}

/// Whom a forward is for, as the receive path needs them.
struct Recipient {
    user_id: String,
    devices: Vec<String>,
    policy: Policy,
    /// The account is being exported to another node: what arrives now would miss the
    /// move, so senders are asked to try again (then they find it on the new node).
    moving: bool,
}

/// A stored policy, or the default when the user has set none.
fn parse_policy(stored: Option<String>) -> Result<Policy, MessagingError> {
    match stored {
        Some(text) => serde_json::from_str(&text).map_err(MessagingError::internal),
        None => Ok(Policy::default()),
    }
}

/// Whether one of the envelope's recipient `kid`s is the key agreement key of one of the
/// recipient's active devices (as its DID document lists them: `<did>#device-<id>-x25519`).
/// An envelope no device can open only takes room in the mailbox.
fn encrypted_to_any(envelope: &Value, did: &Did, devices: &[String]) -> bool {
    let kids = envelope.get("recipients").and_then(Value::as_array).into_iter().flatten();
    let mut kids = kids.filter_map(|r| r.get("header").and_then(|h| h.get("kid")).and_then(Value::as_str));
    kids.any(|kid| {
        kid.strip_prefix(did.as_str())
            .and_then(|k| k.strip_prefix("#device-"))
            .and_then(|k| k.strip_suffix("-x25519"))
            .is_some_and(|device| devices.iter().any(|d| d == device))
    })
}

/// The `skid` in a JWE's protected header, if any (authcrypt).
fn protected_skid(protected: &Value) -> Option<String> {
    let header: Value = serde_json::from_slice(&b64url_decode(protected.as_str()?)?).ok()?;
    header.get("skid").and_then(Value::as_str).map(str::to_owned)
}

pub(crate) fn hash(bytes: &[u8]) -> String {
    b64url(&Sha256::digest(bytes))
}

//! Message Pickup 3.0 over a WebSocket between a device and its own node.
//!
//! Each frame is one DIDComm plaintext message. The device asks for `status`, requests
//! `delivery` of up to a limit, acknowledges with `messages-received`, and switches live
//! delivery on and off. Turning live delivery on (which a device does on every connect)
//! redelivers the whole unacknowledged queue first; the session subscribes to wake-ups
//! *before* reading the queue, so a message committed meanwhile is read on the next wake-up
//! rather than lost between the two.
//!
//! A session lasts while its session token authenticates: it checks when its device is
//! revoked or its account removed (told at once, on every replica, see [`crate::live`])
//! and every `pickup_recheck` besides, and closes with a [`close`] code saying why.

use crate::mailbox::{self, Stored};
use crate::{Message, Messaging};
use axum::extract::ws::{close_code, CloseFrame, Message as Frame, Utf8Bytes, WebSocket};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sichat_accounts::{AccountError, AuthDevice, Standing};
use sichat_core::ids::now_ms;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub const PIURI: &str = "https://didcomm.org/messagepickup/3.0/";

/// Close codes of the pickup WebSocket beside RFC 6455's own (1001 when the node shuts
/// down), from the range it leaves to applications (4000–4999); the wallet reads them.
pub mod close {
    /// The session token no longer authenticates (it expired, or the device logged out):
    /// log in again and reconnect.
    pub const SESSION_EXPIRED: u16 = 4001;
    /// The device was revoked or its account removed: logging in again cannot help. The
    /// close reason says which.
    pub const ENDED: u16 = 4003;
}
const PROBLEM: &str = "https://didcomm.org/report-problem/2.0/problem-report";
/// Messages, and envelope bytes, handed to a live session and not yet acknowledged, at
/// most: past either the node waits for acknowledgements before sending more.
const MAX_IN_FLIGHT: usize = 512;
const MAX_IN_FLIGHT_BYTES: i64 = 16 << 20;
/// Messages per `delivery` message.
const BATCH: i64 = 50;
/// Envelope bytes per `delivery` message, at most (unless one message is larger): frames
/// stay under the 16 MiB that WebSocket clients accept by default. Counted as that many of
/// the largest messages the node accepts, so the query stays a plain `LIMIT`.
const BATCH_BYTES: usize = 12 << 20;
/// Largest frame a device may send.
const MAX_FRAME: usize = 256 * 1024;

/// Messages sent to a live session and not yet acknowledged: id → (`seq`, size).
#[derive(Default)]
struct InFlight {
    sent: HashMap<String, (i64, i64)>,
    bytes: i64,
}

impl InFlight {
    fn full(&self) -> bool {
        self.sent.len() >= MAX_IN_FLIGHT || self.bytes >= MAX_IN_FLIGHT_BYTES
    }

    fn len(&self) -> usize {
        self.sent.len()
    }

    fn seqs(&self) -> Vec<i64> {
        self.sent.values().map(|(seq, _)| *seq).collect()
    }

    fn add(&mut self, batch: &[Stored]) {
        for m in batch {
            if self.sent.insert(m.id.clone(), (m.seq, m.size)).is_none() {
                self.bytes += m.size;
            }
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some((_, size)) = self.sent.remove(id) {
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

struct Session {
    messaging: Arc<Messaging>,
    me: AuthDevice,
    token: String,
    live: bool,
    /// Forwards sent in live mode and not yet acknowledged.
    in_flight: InFlight,
    /// The newest drop report shown to this device, acknowledged with the next
    /// `messages-received`.
    drops_shown: Option<i64>,
    /// When the device was added (ms): it is told only of drops from then on.
    added_at: i64,
    /// `messages-received` taken and not yet written (thread id, message ids), and the
    /// write under way: the session goes on pushing while acknowledgements commit, and
    /// those that come meanwhile share the next write.
    acks_waiting: Vec<Ack>,
    ack_write: Option<AckWrite>,
}

/// One `messages-received`: its id (the reply's thread) and the ids it acknowledges.
type Ack = (String, Vec<String>);
type AckWrite = Pin<Box<dyn Future<Output = (Vec<Ack>, Result<u64, sqlx::Error>)> + Send>>;

/// The acknowledgement write under way, once it ends; only polled while there is one.
async fn ack_written(write: &mut Option<AckWrite>) -> (Vec<Ack>, Result<u64, sqlx::Error>) {
    match write {
        Some(w) => w.await,
        None => std::future::pending().await,
    }
}

/// Resolves once the node is shutting down.
async fn going_away(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Serve one device's WebSocket until it closes or its session ends.
pub async fn serve(messaging: Arc<Messaging>, me: AuthDevice, token: String, mut socket: WebSocket) {
    let mut wake = messaging.hub.subscribe(&me.user_id);
    let mut ended = messaging.hub.ended(&me.user_id);
    // The session was checked at the upgrade: check it again once listening, so that a
    // revocation committed in between is not missed until the next periodic check.
    ended.mark_changed();
    let mut closing = messaging.hub.closing();
    let added_at = match messaging.accounts().devices(&me, false).await {
        Ok(devices) => devices.into_iter().find(|d| d.id == me.device_id).map_or(0, |d| d.created_at),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the device's creation time; showing every drop report");
            0
        }
    };
    let mut session = Session {
        added_at,
        messaging,
        me,
        token,
        live: false,
        in_flight: InFlight::default(),
        drops_shown: None,
        acks_waiting: Vec::new(),
        ack_write: None,
    };
    let mut tick = tokio::time::interval(session.messaging.settings.pickup_recheck);
    tick.tick().await;
    ::metrics::gauge!("sichat_pickup_sessions").increment(1.0);
    'frames: loop {
        session.start_ack_write();
        let result = tokio::select! {
            (acks, written) = ack_written(&mut session.ack_write), if session.ack_write.is_some() => {
                session.ack_write = None;
                session.acks_written(acks, written).await
            },
            frame = socket.recv() => match frame {
                Some(Ok(Frame::Text(text))) => session.on_frame(text.as_str()).await,
                Some(Ok(Frame::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                    Ok(text) => session.on_frame(text).await,
                    Err(_) => Ok(vec![problem(None, "e.p.msg.malformed", "frames must be UTF-8 JSON")]),
                },
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => Ok(vec![]),
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
            },
            changed = wake.changed(), if session.live => match changed {
                Ok(()) => session.push().await,
                Err(_) => break,
            },
            () = going_away(&mut closing) => {
                let frame = CloseFrame { code: close_code::AWAY, reason: Utf8Bytes::from_static("the node is shutting down") };
                let _ = socket.send(Frame::Close(Some(frame))).await;
                break;
            },
            changed = ended.changed() => match changed {
                Ok(()) => match session.ending().await {
                    None => Ok(vec![]),
                    Some(frame) => {
                        let _ = socket.send(Frame::Close(Some(frame))).await;
                        break;
                    }
                },
                Err(_) => break,
            },
            _ = tick.tick() => match session.ending().await {
                None if session.live => session.push().await,
                None => Ok(vec![]),
                Some(frame) => {
                    let _ = socket.send(Frame::Close(Some(frame))).await;
                    break;
                }
            },
        };
        let replies = match result {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!(error = %e, "pickup session failed");
                vec![problem(None, "e.p.me.res.storage", "the node could not read its mailbox; try again")]
            }
        };
        for reply in replies {
            if socket.send(Frame::Text(reply.into())).await.is_err() {
                break 'frames;
            }
        }
    }
    // What the device acknowledged before leaving is still written.
    if let Err(e) = session.flush_acks().await {
        tracing::warn!(error = %e, "cannot record acknowledgements of a closed pickup session");
    }
    ::metrics::gauge!("sichat_pickup_sessions").decrement(1.0);
}

impl Session {
    /// Whether the session may go on (`None`), or the frame that closes it: its token no
    /// longer authenticates. A failure to check is not an end; the next check tries again.
    async fn ending(&mut self) -> Option<CloseFrame> {
        match self.messaging.accounts().authenticate(&self.token).await {
            Ok(_) => None,
            Err(AccountError::Unauthorized) => Some(self.why_ended().await),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a pickup session; checking again later");
                None
            }
        }
    }

    /// Why the session's token stopped authenticating, as the close frame that says so.
    async fn why_ended(&mut self) -> CloseFrame {
        let standing = self.messaging.accounts().device_standing(&self.me.user_id, &self.me.device_id).await;
        let (code, reason) = match standing {
            Ok(Standing::DeviceRevoked) => (close::ENDED, "this device was revoked"),
            Ok(Standing::AccountRemoved) => (close::ENDED, "this account was removed"),
            Ok(Standing::Active) | Err(_) => (close::SESSION_EXPIRED, "session expired: log in again"),
        };
        if code == close::ENDED {
            tracing::info!(user_id = %self.me.user_id, device_id = %self.me.device_id, reason, "pickup session closed");
        }
        CloseFrame { code, reason: Utf8Bytes::from_static(reason) }
    }

    /// Messages per `delivery` message: [`BATCH`], or fewer where messages may be large.
    fn per_delivery(&self) -> i64 {
        let fit = BATCH_BYTES / self.messaging.settings.max_message_bytes.max(1);
        i64::try_from(fit).unwrap_or(BATCH).clamp(1, BATCH)
    }

    async fn on_frame(&mut self, text: &str) -> Result<Vec<String>, sqlx::Error> {
        if text.len() > MAX_FRAME {
            return Ok(vec![problem(None, "e.p.msg.too-large", "the frame is too large")]);
        }
        let message = match serde_json::from_str::<Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|v| Message::from_json(v).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(why) => return Ok(vec![problem(None, "e.p.msg.malformed", &format!("not a DIDComm message: {why}"))]),
        };
        let thid = message.id.as_str().to_owned();
        let Some(kind) = message.kind.strip_prefix(PIURI) else {
            return Ok(vec![problem(
                Some(&thid),
                "e.p.msg.unsupported",
                &format!("unknown message type {}", message.kind),
            )]);
        };
        // Anything else is answered as if the acknowledgements before it were written.
        let mut replies = match kind {
            "messages-received" => Vec::new(),
            _ => self.flush_acks().await?,
        };
        replies.extend(self.handle(kind, thid, &message).await?);
        Ok(replies)
    }

    async fn handle(&mut self, kind: &str, thid: String, message: &Message) -> Result<Vec<String>, sqlx::Error> {
        match kind {
            "status-request" => Ok(vec![self.status(Some(&thid)).await?]),
            "delivery-request" => {
                let asked = message.body.get("limit").and_then(Value::as_i64).unwrap_or(10).clamp(1, 1000);
                let limit = asked.min(self.per_delivery());
                let mut conn = self.messaging.db().read().await?;
                let batch = mailbox::pending(&mut conn, &self.me.device_id, &[], limit).await?;
                drop(conn);
                if batch.is_empty() {
                    return Ok(vec![self.status(Some(&thid)).await?]);
                }
                Ok(vec![delivery(Some(&thid), &batch)])
            }
            "messages-received" => {
                let ids: Vec<String> = match message.body.get("message_id_list").and_then(Value::as_array) {
                    Some(list) if list.len() <= 10_000 => {
                        list.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                    }
                    _ => {
                        return Ok(vec![problem(
                            Some(&thid),
                            "e.p.msg.malformed",
                            "messages-received needs `message_id_list`, a list of at most 10000 ids",
                        )])
                    }
                };
                // Answered with a status once written (see `acks_written`).
                self.acks_waiting.push((thid, ids));
                Ok(vec![])
            }
            "live-delivery-change" => {
                let Some(live) = message.body.get("live_delivery").and_then(Value::as_bool) else {
                    return Ok(vec![problem(
                        Some(&thid),
                        "e.p.msg.malformed",
                        "`live_delivery` must be true or false",
                    )]);
                };
                self.live = live;
                // Every switch to live mode hands over the whole queue again.
                self.in_flight.clear();
                let mut replies = vec![self.status(Some(&thid)).await?];
                if live {
                    replies.extend(self.push().await?);
                }
                Ok(replies)
            }
            other => Ok(vec![problem(Some(&thid), "e.p.msg.unsupported", &format!("unknown pickup message {other}"))]),
        }
    }

    /// Start writing the acknowledgements taken, unless a write is under way.
    fn start_ack_write(&mut self) {
        if self.ack_write.is_some() || self.acks_waiting.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks_waiting);
        let ids: Arc<Vec<String>> = Arc::new(acks.iter().flat_map(|(_, ids)| ids.iter().cloned()).collect());
        let (user_id, device_id) = (self.me.user_id.clone(), self.me.device_id.clone());
        let (messaging, drops_seen) = (self.messaging.clone(), self.drops_shown.take());
        self.ack_write = Some(Box::pin(async move {
            let written = messaging
                .writes
                .write(move |c| {
                    let (user_id, device_id, ids) = (user_id.clone(), device_id.clone(), ids.clone());
                    Box::pin(async move { mailbox::acknowledge(c, &user_id, &device_id, &ids, drops_seen).await })
                })
                .await;
            (acks, written)
        }));
    }

    /// Acknowledgements are committed: forget them, answer each with the queue's status,
    /// and push more if the window was full.
    async fn acks_written(
        &mut self,
        acks: Vec<Ack>,
        written: Result<u64, sqlx::Error>,
    ) -> Result<Vec<String>, sqlx::Error> {
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot record acknowledgements");
            return Ok(acks
                .iter()
                .map(|(thid, _)| {
                    problem(Some(thid), "e.p.me.res.storage", "the node could not record these; send them again")
                })
                .collect());
        }
        // Arrivals wake the session anyway: only a full window holds anything back.
        let held_back = self.in_flight.full();
        for id in acks.iter().flat_map(|(_, ids)| ids) {
            self.in_flight.remove(id);
        }
        let body = self.status_body().await?;
        let mut replies: Vec<String> = acks.iter().map(|(thid, _)| reply("status", Some(thid), body.clone())).collect();
        if self.live && held_back {
            replies.extend(self.push().await?);
        }
        Ok(replies)
    }

    /// Write every acknowledgement taken, in turn; the statuses that answer them.
    async fn flush_acks(&mut self) -> Result<Vec<String>, sqlx::Error> {
        let mut replies = Vec::new();
        loop {
            self.start_ack_write();
            let Some(write) = self.ack_write.take() else { return Ok(replies) };
            let (acks, written) = write.await;
            replies.extend(self.acks_written(acks, written).await?);
        }
    }

    /// Live mode: send what is pending and not yet in flight, oldest first.
    async fn push(&mut self) -> Result<Vec<String>, sqlx::Error> {
        let mut out = Vec::new();
        while !self.in_flight.full() {
            let room = self.per_delivery().min((MAX_IN_FLIGHT - self.in_flight.len()) as i64);
            let out_seqs = self.in_flight.seqs();
            let mut conn = self.messaging.db().read().await?;
            let batch = mailbox::pending(&mut conn, &self.me.device_id, &out_seqs, room).await?;
            drop(conn);
            if batch.is_empty() {
                break;
            }
            self.in_flight.add(&batch);
            out.push(delivery(None, &batch));
            if (batch.len() as i64) < room {
                break;
            }
        }
        Ok(out)
    }

    async fn status(&mut self, thid: Option<&str>) -> Result<String, sqlx::Error> {
        Ok(reply("status", thid, self.status_body().await?))
    }

    /// The queue as a `status` body; marks the drop reports it shows as shown.
    async fn status_body(&mut self) -> Result<Value, sqlx::Error> {
        let mut conn = self.messaging.db().read().await?;
        let queue = mailbox::queue(&mut conn, &self.me.user_id, &self.me.device_id, self.added_at).await?;
        let drops = match queue.unseen_drop {
            Some(_) => mailbox::unseen_drops(&mut conn, &self.me.user_id, &self.me.device_id, self.added_at).await?,
            None => Vec::new(),
        };
        drop(conn);
        if let Some(last) = drops.last() {
            self.drops_shown = Some(last.seq);
        }
        let now = now_ms();
        let mut body = json!({
            "message_count": queue.messages,
            "total_bytes": queue.bytes,
            "live_delivery": self.live,
            "requests_count": queue.requests,
            "dropped": drops,
        });
        if let Some(oldest) = queue.oldest {
            body["longest_waited_seconds"] = json!((now - oldest).max(0) / 1000);
            body["oldest_received_time"] = json!(oldest / 1000);
        }
        if let Some(newest) = queue.newest {
            body["newest_received_time"] = json!(newest / 1000);
        }
        Ok(body)
    }
}

/// A `delivery` frame. Envelopes go out as the mailbox holds them, never re-parsed.
fn delivery(thid: Option<&str>, batch: &[Stored]) -> String {
    #[derive(Serialize)]
    struct Attachment<'a> {
        id: &'a str,
        data: Data<'a>,
        sichat: Meta<'a>,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        json: &'a RawValue,
    }
    #[derive(Serialize)]
    struct Meta<'a> {
        from: &'a str,
        folder: &'a str,
        received_time: i64,
        presentation: bool,
    }
    #[derive(Serialize)]
    struct Delivery<'a> {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        created_time: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        thid: Option<&'a str>,
        body: Value,
        attachments: Vec<Attachment<'a>>,
    }
    // The mailbox stores only envelopes it serialized itself; `null` stands in for one
    // that would not parse rather than losing the frame.
    let null = serde_json::from_str::<&RawValue>("null").ok();
    let attachments = batch
        .iter()
        .filter_map(|m| {
            let json = serde_json::from_str::<&RawValue>(&m.envelope).ok().or(null)?;
            Some(Attachment {
                id: &m.id,
                data: Data { json },
                sichat: Meta {
                    from: &m.sender,
                    folder: &m.folder,
                    received_time: m.received_at,
                    presentation: m.presentation,
                },
            })
        })
        .collect();
    let frame = Delivery {
        id: sichat_core::ids::new_id(),
        kind: format!("{PIURI}delivery"),
        created_time: now_ms() / 1000,
        thid,
        body: json!({}),
        attachments,
    };
    // Strings, numbers and raw JSON only: serializing cannot fail.
    serde_json::to_string(&frame).unwrap_or_default()
}

fn reply(kind: &str, thid: Option<&str>, body: Value) -> String {
    let mut m = json!({
        "id": sichat_core::ids::new_id(),
        "type": format!("{PIURI}{kind}"),
        "created_time": now_ms() / 1000,
        "body": body,
    });
    if let Some(thid) = thid {
        m["thid"] = json!(thid);
    }
    m.to_string()
}

fn problem(thid: Option<&str>, code: &str, comment: &str) -> String {
    let mut m = json!({
        "id": sichat_core::ids::new_id(),
        "type": PROBLEM,
        "body": {"code": code, "comment": comment},
    });
    if let Some(thid) = thid {
        m["thid"] = json!(thid);
        m["pthid"] = json!(thid);
    }
    m.to_string()
}

//! Message Pickup 3.0 over a WebSocket between a device and its own node.
//!
//! Each frame is one DIDComm plaintext message. The device asks for `status`, requests
//! `delivery` of up to a limit, acknowledges with `messages-received`, and switches live
//! delivery on and off. Turning live delivery on (which a device does on every connect)
//! redelivers the whole unacknowledged queue first; the session subscribes to wake-ups
//! *before* reading the queue, so a message committed meanwhile is read on the next wake-up
//! rather than lost between the two.

use crate::mailbox::{self, Stored};
use crate::{Message, Messaging};
use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket};
use serde_json::{json, Value};
use sichat_accounts::AuthDevice;
use sichat_core::ids::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub const PIURI: &str = "https://didcomm.org/messagepickup/3.0/";
const PROBLEM: &str = "https://didcomm.org/report-problem/2.0/problem-report";
/// Messages handed to a live session and not yet acknowledged, at most: past this the
/// node waits for acknowledgements before sending more.
const MAX_IN_FLIGHT: usize = 512;
/// Messages per `delivery` message.
const BATCH: i64 = 50;
/// Largest frame a device may send.
const MAX_FRAME: usize = 256 * 1024;

struct Session {
    messaging: Arc<Messaging>,
    me: AuthDevice,
    token: String,
    live: bool,
    /// Forwards sent in live mode and not yet acknowledged: id → `seq`.
    in_flight: HashMap<String, i64>,
    /// The newest drop report shown to this device, acknowledged with the next
    /// `messages-received`.
    drops_shown: Option<i64>,
}

/// Serve one device's WebSocket until it closes or its session ends.
pub async fn serve(messaging: Arc<Messaging>, me: AuthDevice, token: String, mut socket: WebSocket) {
    let mut wake = messaging.hub.subscribe(&me.user_id);
    let mut session = Session { messaging, me, token, live: false, in_flight: HashMap::new(), drops_shown: None };
    let mut tick = tokio::time::interval(session.messaging.settings.pickup_recheck);
    tick.tick().await;
    ::metrics::gauge!("sichat_pickup_sessions").increment(1.0);
    loop {
        let result = tokio::select! {
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
            _ = tick.tick() => match session.messaging.accounts().authenticate(&session.token).await {
                Ok(_) if session.live => session.push().await,
                Ok(_) => Ok(vec![]),
                Err(_) => {
                    let frame = CloseFrame { code: 4001, reason: Utf8Bytes::from_static("session expired: log in again") };
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
            if socket.send(Frame::Text(reply.to_string().into())).await.is_err() {
                ::metrics::gauge!("sichat_pickup_sessions").decrement(1.0);
                return;
            }
        }
    }
    ::metrics::gauge!("sichat_pickup_sessions").decrement(1.0);
}

impl Session {
    async fn on_frame(&mut self, text: &str) -> Result<Vec<Value>, sqlx::Error> {
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
        match kind {
            "status-request" => Ok(vec![self.status(Some(&thid)).await?]),
            "delivery-request" => {
                let limit = message.body.get("limit").and_then(Value::as_i64).unwrap_or(10).clamp(1, 1000);
                let mut conn = self.messaging.db().reads().acquire().await?;
                let batch = mailbox::pending(&mut conn, &self.me.device_id, limit).await?;
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
                let (user_id, device_id) = (self.me.user_id.clone(), self.me.device_id.clone());
                let (acked, drops_seen) = (Arc::new(ids.clone()), self.drops_shown.take());
                self.messaging
                    .writes
                    .write(move |c| {
                        let (user_id, device_id, acked) = (user_id.clone(), device_id.clone(), acked.clone());
                        Box::pin(async move { mailbox::acknowledge(c, &user_id, &device_id, &acked, drops_seen).await })
                    })
                    .await?;
                // Arrivals wake the session anyway: only a full window holds anything back.
                let held_back = self.in_flight.len() >= MAX_IN_FLIGHT;
                for id in &ids {
                    self.in_flight.remove(id);
                }
                let mut replies = vec![self.status(Some(&thid)).await?];
                if self.live && held_back {
                    replies.extend(self.push().await?);
                }
                Ok(replies)
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

    /// Live mode: send what is pending and not yet in flight, oldest first.
    async fn push(&mut self) -> Result<Vec<Value>, sqlx::Error> {
        let mut out = Vec::new();
        while self.in_flight.len() < MAX_IN_FLIGHT {
            // The queue's head from the index, then the envelopes of what is not yet out.
            let window = (self.in_flight.len() as i64) + BATCH;
            let mut conn = self.messaging.db().reads().acquire().await?;
            let out_seqs: HashSet<i64> = self.in_flight.values().copied().collect();
            let head = mailbox::pending_seqs(&mut conn, &self.me.device_id, window).await?;
            let fresh: Vec<i64> = head.iter().copied().filter(|s| !out_seqs.contains(s)).collect();
            if fresh.is_empty() {
                break;
            }
            let batch = mailbox::by_seqs(&mut conn, &fresh).await?;
            drop(conn);
            if batch.is_empty() {
                break; // acknowledged by now
            }
            self.in_flight.extend(batch.iter().map(|m| (m.id.clone(), m.seq)));
            out.push(delivery(None, &batch));
            if (head.len() as i64) < window {
                break;
            }
        }
        Ok(out)
    }

    async fn status(&mut self, thid: Option<&str>) -> Result<Value, sqlx::Error> {
        let mut conn = self.messaging.db().reads().acquire().await?;
        let queue = mailbox::queue(&mut conn, &self.me.device_id).await?;
        let drops = mailbox::unseen_drops(&mut conn, &self.me.user_id, &self.me.device_id).await?;
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
        Ok(reply("status", thid, body, None))
    }
}

fn delivery(thid: Option<&str>, batch: &[Stored]) -> Value {
    let attachments: Vec<Value> = batch
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(&m.envelope).unwrap_or(Value::Null);
            json!({
                "id": m.id,
                "data": {"json": envelope},
                "sichat": {"from": m.sender, "folder": m.folder, "received_time": m.received_at, "presentation": m.presentation},
            })
        })
        .collect();
    reply("delivery", thid, json!({}), Some(attachments))
}

fn reply(kind: &str, thid: Option<&str>, body: Value, attachments: Option<Vec<Value>>) -> Value {
    let mut m = json!({
        "id": sichat_core::ids::new_id(),
        "type": format!("{PIURI}{kind}"),
        "created_time": now_ms() / 1000,
        "body": body,
    });
    if let Some(thid) = thid {
        m["thid"] = json!(thid);
    }
    if let Some(a) = attachments {
        m["attachments"] = json!(a);
    }
    m
}

fn problem(thid: Option<&str>, code: &str, comment: &str) -> Value {
    let mut m = json!({
        "id": sichat_core::ids::new_id(),
        "type": PROBLEM,
        "body": {"code": code, "comment": comment},
    });
    if let Some(thid) = thid {
        m["thid"] = json!(thid);
        m["pthid"] = json!(thid);
    }
    m
}

//! The device's side of Message Pickup 3.0 over the node's WebSocket
//! (`GET /api/v1/messages/ws`, the session's bearer token on the upgrade). Every frame is
//! one DIDComm plaintext message: `status-request` → `status`, `delivery-request` →
//! `delivery` (or `status` when nothing waits), `messages-received` → `status`, and
//! `live-delivery-change`, after which the node pushes each `delivery` as it arrives.

use crate::client::ServerError;
use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use sichat_messaging::pickup::close;
use sichat_messaging::Message;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The Message Pickup 3.0 protocol URI; message types are appended to it.
pub const PICKUP: &str = "https://didcomm.org/messagepickup/3.0/";
/// A problem report, the node's way to say a request failed.
pub const PROBLEM_REPORT: &str = "https://didcomm.org/report-problem/2.0/problem-report";
/// How long to wait for the node's answer to a request.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the node's pickup endpoint.
pub struct Pickup {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The code and reason of the node's close frame, once it closed.
    close_code: Option<u16>,
    close_reason: String,
}
/// The largest frame taken from the node.
const MAX_DELIVERY: usize = 72 << 20;

/// What the node said.
#[derive(Debug)]
pub enum Event {
    Status(Status),
    /// Messages for this device, oldest first.
    Delivery(Vec<Delivered>),
    /// The node refused a request.
    Problem {
        code: String,
        comment: String,
    },
    /// A message type this wallet does not know; ignored.
    Other,
}

/// The node's `status`: what waits for this device, and what it had to drop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub message_count: u64,
    pub total_bytes: u64,
    pub live_delivery: bool,
    pub requests_count: u64,
    pub dropped: Vec<Dropped>,
}

/// Messages the node dropped before this device fetched them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Dropped {
    /// `quota` (the mailbox was full: oldest dropped first) or `expired`.
    pub reason: String,
    pub count: u64,
    pub bytes: u64,
    /// When (unix milliseconds).
    pub at: i64,
}

/// One message in a `delivery`.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The node's id for it (the id of the forward it came in); acknowledged by this id.
    pub id: String,
    /// The encrypted message (JWE JSON), as its sender packed it.
    pub envelope: Value,
    /// The sender the delivering node vouched for.
    pub from: String,
    /// `inbox` or `requests`.
    pub folder: String,
    /// When the node received it (unix milliseconds).
    pub received_time: i64,
    /// Whether the sender attached a credential presentation.
    pub presentation: bool,
}

impl Pickup {
    /// Open the WebSocket at `server` (the node's base URL) with a session token.
    pub async fn connect(server: &str, token: &str) -> Result<Self> {
        let base = server.trim_end_matches('/');
        let url = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}/api/v1/messages/ws")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}/api/v1/messages/ws")
        } else {
            bail!("the server URL {server} is neither https:// nor http://");
        };
        let mut request = url.as_str().into_client_request().map_err(|e| anyhow!("{url}: {e}"))?;
        let bearer =
            format!("Bearer {token}").parse().map_err(|_| anyhow!("the session token is not a header value"))?;
        request.headers_mut().insert(tungstenite::http::header::AUTHORIZATION, bearer);
        // The node keeps deliveries under 16 MiB, but a single message may be as large as
        // its operator allows (up to 64 MiB): room for one such message, wrapped.
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_DELIVERY))
            .max_frame_size(Some(MAX_DELIVERY));
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
        let (ws, _) = match tokio::time::timeout(ANSWER_TIMEOUT, connecting).await {
            Err(_) => bail!("your node at {base} did not open the message connection within 30 s"),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let body: Value =
                    resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
                let message = body["message"].as_str().map(str::to_owned);
                let code = body["error"].as_str().map(str::to_owned);
                return Err(match (status, code, message) {
                    (404, None, _) => anyhow!(
                        "your node at {base} has no messaging endpoint: it runs a sichatd without messaging; \
                         ask its operator to upgrade"
                    ),
                    (_, Some(code), Some(message)) => anyhow!(ServerError { status, code, message }),
                    (_, code, _) => anyhow!(ServerError {
                        status,
                        code: code.unwrap_or_else(|| format!("http_{status}")),
                        message: format!("your node refused the message connection (HTTP {status})"),
                    }),
                });
            }
            Ok(Err(e)) => bail!("cannot open the message connection to your node at {base}: {e}"),
            Ok(Ok(pair)) => pair,
        };
        Ok(Self { ws, close_code: None, close_reason: String::new() })
    }

    /// Send a pickup request of type `kind` (e.g. `status-request`); returns its id.
    pub async fn send(&mut self, kind: &str, body: Value) -> Result<String> {
        let msg = Message::new(format!("{PICKUP}{kind}"), body);
        let id = msg.id.to_string();
        let text = serde_json::to_string(&msg)?;
        self.ws.send(Frame::text(text)).await.map_err(|e| anyhow!("lost the connection to your node: {e}"))?;
        Ok(id)
    }

    /// Ask for the status.
    pub async fn status_request(&mut self) -> Result<String> {
        self.send("status-request", json!({})).await
    }

    /// Ask for up to `limit` messages.
    pub async fn delivery_request(&mut self, limit: usize) -> Result<String> {
        self.send("delivery-request", json!({"limit": limit})).await
    }

    /// Acknowledge messages: the node may forget them for this device.
    pub async fn received(&mut self, ids: &[String]) -> Result<String> {
        self.send("messages-received", json!({"message_id_list": ids})).await
    }

    /// Turn live delivery on or off.
    pub async fn live(&mut self, on: bool) -> Result<String> {
        self.send("live-delivery-change", json!({"live_delivery": on})).await
    }

    /// Keep the connection alive (and find out when it is not).
    pub async fn ping(&mut self) -> Result<()> {
        self.ws.send(Frame::Ping(Vec::new().into())).await.map_err(|e| anyhow!("lost the connection to your node: {e}"))
    }

    /// The next event, or `None` once the node closed the connection.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            let frame = match self.ws.next().await {
                None => return Ok(None),
                Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => bail!("lost the connection to your node: {e}"),
                Some(Ok(f)) => f,
            };
            match frame {
                Frame::Text(text) => return parse_event(text.as_str()).map(Some),
                Frame::Close(frame) => {
                    if let Some(f) = frame {
                        self.close_code = Some(u16::from(f.code));
                        self.close_reason = f.reason.as_str().chars().filter(|c| !c.is_control()).collect();
                    }
                    return Ok(None);
                }
                Frame::Binary(_) => bail!("your node sent a binary frame; this wallet expects DIDComm JSON text"),
                Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_) => continue,
            }
        }
    }

    /// The next event that answers a request (unknown message types are skipped), waiting
    /// at most [`ANSWER_TIMEOUT`]. A problem report is an error.
    pub async fn answer(&mut self) -> Result<Event> {
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Err(_) => bail!("your node did not answer within 30 s"),
                Ok(Ok(None)) => match self.ended() {
                    Some(why) => bail!("your node closed the message connection: {why}"),
                    None => bail!("your node closed the message connection"),
                },
                Ok(Ok(Some(Event::Problem { code, comment }))) => bail!("your node refused: {comment} ({code})"),
                Ok(Ok(Some(Event::Other))) => continue,
                Ok(Ok(Some(event))) => return Ok(event),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Whether the node closed the connection because the session expired (log in again).
    pub fn session_expired(&self) -> bool {
        self.close_code == Some(close::SESSION_EXPIRED)
    }

    /// Why the node ended this device's connection for good (the device was revoked, the
    /// account removed), if it did: logging in again cannot help.
    pub fn ended(&self) -> Option<&str> {
        match self.close_code {
            Some(close::ENDED) if self.close_reason.is_empty() => Some("this device can no longer pick up messages"),
            Some(close::ENDED) => Some(&self.close_reason),
            _ => None,
        }
    }

    /// Whether the node closed the connection because it is shutting down ("going away").
    pub fn going_away(&self) -> bool {
        self.close_code == Some(u16::from(tungstenite::protocol::frame::coding::CloseCode::Away))
    }

    /// Close politely (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

fn parse_event(text: &str) -> Result<Event> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("your node sent a frame that is not JSON: {e}"))?;
    let msg = Message::from_json(value).map_err(|e| anyhow!("your node sent a bad pickup message: {e}"))?;
    if msg.kind == PROBLEM_REPORT {
        let s = |k: &str| msg.body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Ok(Event::Problem { code: s("code"), comment: s("comment") });
    }
    let Some(kind) = msg.kind.strip_prefix(PICKUP) else {
        return Ok(Event::Other);
    };
    Ok(match kind {
        "status" => Event::Status(parse_status(&msg.body)),
        "delivery" => {
            let mut items = Vec::new();
            for a in &msg.attachments {
                let meta = a.extra.get("sichat").cloned().unwrap_or(Value::Null);
                let (Some(id), Some(envelope)) = (a.id.clone(), a.data.json.clone()) else {
                    bail!("your node delivered an attachment with no id or no JSON message");
                };
                items.push(Delivered {
                    id,
                    envelope,
                    from: meta["from"].as_str().unwrap_or_default().to_owned(),
                    folder: meta["folder"].as_str().unwrap_or("inbox").to_owned(),
                    received_time: meta["received_time"].as_i64().unwrap_or_default(),
                    presentation: meta["presentation"].as_bool().unwrap_or(false),
                });
            }
            Event::Delivery(items)
        }
        _ => Event::Other,
    })
}

fn parse_status(body: &Value) -> Status {
    let n = |k: &str| body.get(k).and_then(Value::as_u64).unwrap_or(0);
    let dropped = body
        .get("dropped")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| Dropped {
            reason: d["reason"].as_str().unwrap_or("unknown").to_owned(),
            count: d["count"].as_u64().unwrap_or(0),
            bytes: d["bytes"].as_u64().unwrap_or(0),
            at: d["at"].as_i64().unwrap_or(0),
        })
        .collect();
    Status {
        message_count: n("message_count"),
        total_bytes: n("total_bytes"),
        live_delivery: body.get("live_delivery").and_then(Value::as_bool).unwrap_or(false),
        requests_count: n("requests_count"),
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_and_statuses_parse() {
        let delivery = json!({
            "id": "d1", "type": format!("{PICKUP}delivery"), "thid": "r1", "body": {},
            "attachments": [{"id": "f1", "data": {"json": {"ciphertext": "x"}},
                             "sichat": {"from": "did:web:b:users:bob", "folder": "requests",
                                        "received_time": 5, "presentation": true}}]
        });
        let Event::Delivery(items) = parse_event(&delivery.to_string()).unwrap() else { panic!("a delivery") };
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].id.as_str(), items[0].folder.as_str()), ("f1", "requests"));
        assert_eq!(items[0].from, "did:web:b:users:bob");
        assert!(items[0].presentation);
        assert_eq!(items[0].envelope["ciphertext"], "x");

        let status = json!({"id": "s1", "type": format!("{PICKUP}status"), "body": {
            "message_count": 2, "total_bytes": 10, "live_delivery": true, "requests_count": 1,
            "dropped": [{"reason": "quota", "count": 3, "bytes": 30, "at": 7}]}});
        let Event::Status(s) = parse_event(&status.to_string()).unwrap() else { panic!("a status") };
        assert_eq!((s.message_count, s.requests_count, s.live_delivery), (2, 1, true));
        assert_eq!(s.dropped, vec![Dropped { reason: "quota".into(), count: 3, bytes: 30, at: 7 }]);

        let problem = json!({"id": "p", "type": PROBLEM_REPORT, "body": {"code": "e.p.msg.x", "comment": "no"}});
        assert!(matches!(parse_event(&problem.to_string()).unwrap(), Event::Problem { .. }));
        let bad = json!({"id": "d", "type": format!("{PICKUP}delivery"), "body": {}, "attachments": [{"data": {}}]});
        assert!(parse_event(&bad.to_string()).is_err());
        assert!(parse_event("not json").is_err());
    }
}

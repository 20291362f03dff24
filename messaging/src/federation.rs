//! Node-to-node delivery: an outbox entry's attempt (to a user here, or to the recipient's
//! node, following it when it moved), posting a forward signed with this node's key, and
//! checking the signature on a forward another node posts here.

use crate::federation_auth::{sign_request, verify_request, IncomingRequest, OutgoingRequest};
use crate::outbox::{Delivered, Entry};
use crate::service::Vouched;
use crate::{Messaging, MessagingError};
use axum::http::{HeaderMap, Method, Uri};
use sichat_core::did::Did;
use sichat_core::ids::now_ms;

/// How many further nodes a delivery follows after a fresh resolution, each named by the
/// `421 recipient_moved` of the one before.
const MAX_MOVED_HOPS: usize = 3;

type Slots = std::sync::Arc<tokio::sync::Semaphore>;

/// A slot per endpoint for the deliveries in flight to it (`Settings::deliveries_per_node`):
/// under a receiving node's cap on connections per address (`max_connections_per_address`,
/// 64 by default), which 256 deliveries at once to one busy peer would trip, each then
/// reset and retried.
pub(crate) struct PeerSlots {
    per_endpoint: usize,
    all: std::sync::Mutex<std::collections::HashMap<String, Slots>>,
}

impl PeerSlots {
    pub(crate) fn new(per_endpoint: usize) -> Self {
        Self { per_endpoint: per_endpoint.max(1), all: Default::default() }
    }

    async fn take(&self, endpoint: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = {
            let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
            // Forget endpoints nothing is delivering to, so the map stays small.
            if all.len() > 1024 {
                all.retain(|_, s| s.available_permits() < self.per_endpoint);
            }
            let fresh = || Slots::new(tokio::sync::Semaphore::new(self.per_endpoint));
            all.entry(endpoint.to_owned()).or_insert_with(fresh).clone()
        };
        slots.acquire_owned().await.ok()
    }
}

/// Why an attempt failed, and whether to try again.
pub(crate) enum Failure {
    NotAccepted,
    /// The node answered that the recipient moved away (`421 recipient_moved`), and where
    /// its messages go now (the new node's DIDComm endpoint), when it said.
    Moved {
        why: String,
        to: Option<String>,
    },
    Permanent(String),
    Temporary(String),
}

impl Messaging {
    /// One attempt at an outbox entry: to a user of this node, or to the recipient's node
    /// (then where it went, when that node named its mailbox epoch).
    pub(crate) async fn deliver(&self, entry: &Entry) -> Result<Option<Delivered>, Failure> {
        let sender = Did::parse(&entry.sender).map_err(|e| Failure::Permanent(e.to_string()))?;
        let recipient = Did::parse(&entry.recipient).map_err(|e| Failure::Permanent(e.to_string()))?;
        if self.local_user_name(&recipient).is_some() {
            let vouched = Vouched { node: self.node().did().clone(), sender: sender.clone() };
            match self.receive(&vouched, entry.body.as_bytes()).await {
                Ok(_) => return Ok(None),
                // Moved away: its DID document here names the new node; deliver there.
                Err(MessagingError::RecipientMoved { .. }) => {}
                Err(MessagingError::NotAccepted) => return Err(Failure::NotAccepted),
                Err(MessagingError::RateLimited(why))
                | Err(MessagingError::Internal(why))
                | Err(MessagingError::RecipientMoving(why)) => return Err(Failure::Temporary(why)),
                Err(other) => return Err(Failure::Permanent(other.to_string())),
            }
        }
        let post = |endpoint: String| {
            let sender = sender.clone();
            async move { post(self, &endpoint, &sender, entry.body.as_bytes()).await }
        };
        let first = self.post_in_order(&recipient, &post).await;
        let Err(Failure::Moved { why, .. }) = first else { return first };
        // The recipient moved since its document was cached: resolve it afresh. A document
        // that still names a node the account left (it moved on again, A→B→C, and A's copy
        // names B) is followed by the hint each such node gives, a few hops at most. The
        // envelope is sealed to the recipient's keys: a wrong hint can lose it, as that node
        // could anyway, never read it.
        self.resolver().forget(recipient.as_str());
        let mut endpoint = self.endpoint_of(&recipient).await?;
        tracing::info!(%recipient, %endpoint, "the recipient moved; delivering to its new node");
        let mut seen = vec![endpoint.clone()];
        loop {
            match post(endpoint.clone()).await {
                Err(Failure::Moved { to: Some(next), .. }) if seen.len() <= MAX_MOVED_HOPS && !seen.contains(&next) => {
                    tracing::info!(%recipient, from = %endpoint, to = %next, "the recipient moved on; following");
                    seen.push(next.clone());
                    endpoint = next;
                }
                Err(Failure::Moved { .. }) => return Err(Failure::Temporary(why)),
                other => return other,
            }
        }
    }

    /// Post to the recipient's endpoints in the order its DID document lists them (its node,
    /// then a standby): the next is tried only when one cannot take it now.
    async fn post_in_order<F, Fut>(&self, recipient: &Did, post: &F) -> Result<Option<Delivered>, Failure>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Delivered>, Failure>>,
    {
        let endpoints = self.endpoints_of(recipient).await?;
        let own = self.node().url(sichat_accounts::DIDCOMM_PATH);
        let mut last = Err(Failure::Temporary(format!("{recipient} names no endpoint but this node's")));
        for endpoint in endpoints.into_iter().filter(|e| *e != own) {
            match post(endpoint.clone()).await {
                Err(Failure::Temporary(why)) => {
                    tracing::debug!(%recipient, %endpoint, %why, "endpoint unavailable; trying the next one listed");
                    last = Err(Failure::Temporary(why));
                }
                other => return other,
            }
        }
        last
    }

    /// The DIDComm endpoints the recipient's DID document names, in its order.
    async fn endpoints_of(&self, recipient: &Did) -> Result<Vec<String>, Failure> {
        let keys = self.resolver().resolve(recipient.as_str()).await.map_err(|e| match no_such_did(&e) {
            true => Failure::Permanent(format!("no such recipient: {e}")),
            false => Failure::Temporary(e.to_string()),
        })?;
        match keys.didcomm_endpoints.is_empty() {
            true => Err(Failure::Permanent(format!("{recipient} names no DIDCommMessaging service"))),
            false => Ok(keys.didcomm_endpoints.clone()),
        }
    }

    /// The DIDComm endpoint the recipient's DID document names first.
    async fn endpoint_of(&self, recipient: &Did) -> Result<String, Failure> {
        let keys = self.resolver().resolve(recipient.as_str()).await.map_err(|e| match no_such_did(&e) {
            // Its node says the DID does not exist (or no longer does): retrying cannot help.
            true => Failure::Permanent(format!("no such recipient: {e}")),
            false => Failure::Temporary(e.to_string()),
        })?;
        keys.didcomm_endpoints
            .first()
            .cloned()
            .ok_or_else(|| Failure::Permanent(format!("{recipient} names no DIDCommMessaging service")))
    }
}

/// The recipient's node answered the DID document's URL with 404 Not Found or 410 Gone:
/// the DID does not exist there.
fn no_such_did(e: &sichat_core::resolver::ResolveError) -> bool {
    use sichat_core::net::FetchError;
    use sichat_core::resolver::ResolveError;
    matches!(e, ResolveError::Fetch(FetchError::Status { status: 404 | 410, .. }))
}

/// Post `body` to another node's DIDComm endpoint, vouching for `sender`. Taken: where, and
/// under which mailbox epoch, when the node named one.
pub(crate) async fn post(
    m: &Messaging,
    endpoint: &str,
    sender: &Did,
    body: &[u8],
) -> Result<Option<Delivered>, Failure> {
    let _slot = m.peer_slots.take(endpoint).await;
    let request = OutgoingRequest::delivery(endpoint, sender, body);
    let signed = sign_request(m.node(), &request, now_ms() / 1000).map_err(|e| Failure::Permanent(e.to_string()))?;
    let headers: Vec<(&str, String)> = signed.pairs().iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    let (status, answer) = m
        .resolver()
        .fetcher()
        .post(endpoint, &headers, body.to_vec())
        .await
        .map_err(|e| Failure::Temporary(e.to_string()))?;
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let said = || {
        let text = answer.get("message").and_then(|m| m.as_str()).unwrap_or("no reason given");
        format!("the recipient's node answered HTTP {status}: {}", text.chars().take(300).collect::<String>())
    };
    // Where a node the recipient left says it went: an http(s) URL, or nothing.
    let moved_to = || {
        let to = answer.get("moved_to").and_then(|t| t.as_str()).filter(|t| t.len() <= 2048)?;
        url::Url::parse(to).ok().filter(|u| matches!(u.scheme(), "https" | "http")).map(|u| u.to_string())
    };
    match status {
        200..=299 => Ok(crate::service::epoch_in(&answer)
            .map(|epoch| Delivered { endpoint: endpoint.to_owned(), epoch: epoch.to_owned() })),
        403 => Err(Failure::NotAccepted),
        421 => Err(Failure::Moved { why: said(), to: moved_to() }),
        408 | 425 | 429 | 500..=599 => Err(Failure::Temporary(said())),
        _ => Err(Failure::Permanent(said())),
    }
}

/// Remember the nonce of a verified request until its signature expires; false if it was
/// seen before and has not expired (a replay). Check and insert are one statement, in the
/// database: the guard holds across restarts and replicas. (`now`, `expires`: seconds.)
pub(crate) async fn first_time(
    m: &Messaging,
    node: &Did,
    nonce: &str,
    expires: i64,
    now: i64,
) -> Result<bool, MessagingError> {
    let (node, nonce) = (node.to_string(), nonce.to_owned());
    let first = m
        .writes
        .write(move |c| {
            let (node, nonce) = (node.clone(), nonce.clone());
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO msg_federation_nonces (node_did, nonce, expires) VALUES ($1, $2, $3) \
                     ON CONFLICT (node_did, nonce) DO UPDATE SET expires = excluded.expires \
                     WHERE msg_federation_nonces.expires <= $4",
                )
                .bind(&node)
                .bind(&nonce)
                .bind(expires)
                .bind(now)
                .execute(c)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await?;
    Ok(first)
}

/// Forget nonces whose signatures have expired (`now`: seconds).
pub(crate) async fn forget_expired_nonces(c: &mut sqlx::AnyConnection, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM msg_federation_nonces WHERE expires <= $1").bind(now).execute(c).await?;
    Ok(done.rows_affected())
}

/// The URL a delivery's sender signed: ours (now, or one we had, `at`), never what the Host
/// header says.
pub(crate) fn target_of(m: &Messaging, at: Option<&str>, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match at {
        Some(former) => format!("{}/{}", former.trim_end_matches('/'), path.trim_start_matches('/')),
        None => m.node().url(path),
    }
}

/// Who sent a delivery: the node whose key signed it, and the user it vouches for. `at`:
/// the URL this node had before that the request came in at (a sender that resolved an
/// old DID document), if so.
pub(crate) async fn authenticate(
    m: &Messaging,
    at: Option<&str>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vouched, MessagingError> {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some(crate::federation_auth::CONTENT_TYPE) {
        return Err(MessagingError::Malformed(format!(
            "a delivery must be {}, not {content_type:?}",
            crate::federation_auth::CONTENT_TYPE
        )));
    }
    let target = target_of(m, at, uri);
    let request = IncomingRequest { method: method.as_str(), target_uri: &target, headers, body };
    let now = now_ms() / 1000;
    let peer = verify_request(&request, m.resolver(), now).await.map_err(|e| {
        ::metrics::counter!("sichat_federation_refused_total").increment(1);
        MessagingError::BadSignature(e.to_string())
    })?;
    if !first_time(m, &peer.node_did, &peer.nonce, peer.expires, now).await? {
        return Err(MessagingError::BadSignature("this signed request was already received (a replay)".into()));
    }
    Ok(Vouched { node: peer.node_did, sender: peer.sender })
}

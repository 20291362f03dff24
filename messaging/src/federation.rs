//! Node-to-node delivery: posting a forward to the recipient's node, signed with this
//! node's key, and checking the signature on a forward another node posts here.

use crate::federation_auth::{sign_request, verify_request, IncomingRequest, OutgoingRequest};
use crate::service::{Failure, Vouched};
use crate::{Messaging, MessagingError};
use axum::http::{HeaderMap, Method, Uri};
use sichat_core::did::Did;
use sichat_core::ids::now_ms;
use std::collections::HashMap;
use std::sync::Mutex;

/// Post `body` to another node's DIDComm endpoint, vouching for `sender`.
pub(crate) async fn post(m: &Messaging, endpoint: &str, sender: &Did, body: &[u8]) -> Result<(), Failure> {
    let request = OutgoingRequest::delivery(endpoint, sender, body);
    let signed = sign_request(m.node(), &request, now_ms() / 1000).map_err(|e| Failure::Permanent(e.to_string()))?;
    let headers: Vec<(&str, String)> = signed.pairs().iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    let (status, answer) = m
        .resolver()
        .fetcher()
        .post(endpoint, &headers, body.to_vec())
        .await
        .map_err(|e| Failure::Temporary(e.to_string()))?;
    let said = || {
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        let text = v.get("message").and_then(|m| m.as_str()).unwrap_or("no reason given");
        format!("the recipient's node answered HTTP {status}: {}", text.chars().take(300).collect::<String>())
    };
    match status {
        200..=299 => Ok(()),
        403 => Err(Failure::NotAccepted),
        408 | 425 | 429 | 500..=599 => Err(Failure::Temporary(said())),
        _ => Err(Failure::Permanent(said())),
    }
}

/// Nonces of verified requests, until their signatures expire: a captured request sent
/// again is refused even before its message id would be recognised.
#[derive(Default)]
pub(crate) struct SeenNonces(Mutex<HashMap<String, i64>>);

impl SeenNonces {
    /// Remember `key` until `expires`; false if it was already there.
    fn first_time(&self, key: String, expires: i64, now: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, until| *until > now);
        }
        match seen.get(&key) {
            Some(until) if *until > now => false,
            _ => {
                seen.insert(key, expires);
                true
            }
        }
    }

    pub(crate) fn forget_expired(&self, now: i64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, until| *until > now);
    }
}

/// Who sent a delivery: the node whose key signed it, and the user it vouches for.
pub(crate) async fn authenticate(
    m: &Messaging,
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
    // The URL the sender signed is ours, never what the Host header says.
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let target = m.node().url(path);
    let request = IncomingRequest { method: method.as_str(), target_uri: &target, headers, body };
    let now = now_ms() / 1000;
    let peer = verify_request(&request, m.resolver(), now).await.map_err(|e| {
        ::metrics::counter!("sichat_federation_refused_total").increment(1);
        MessagingError::BadSignature(e.to_string())
    })?;
    if !m.nonces.first_time(format!("{} {}", peer.node_did, peer.nonce), peer.expires, now) {
        return Err(MessagingError::BadSignature("this signed request was already received (a replay)".into()));
    }
    Ok(Vouched { node: peer.node_did, sender: peer.sender })
}

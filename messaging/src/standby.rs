//! A standby node (1→many): an account of another node names this one, by a grant its root
//! key signs, as where its messages wait while its own node is down. Its DID documents list
//! this node's DIDComm endpoint second, so senders fall back to it (`federation`).
//!
//! - `POST /api/v1/standbys` takes the grant and an invite of this node (its quota pays for
//!   the standby); `POST /api/v1/standbys/end`, signed by the root key too, ends it (many→1).
//! - A delivery for such an account is checked as any (the sending node's signature, no
//!   replay) and kept whole: the body and the signature headers, with the URL they signed.
//! - Every `standby_handover` the held deliveries go to the account's node,
//!   `POST <its endpoint>/handover`, each under a JWS by this node's key naming the account,
//!   the URL and the body's hash. That node checks this node is the account's standby, then
//!   the sender's node's own signature as of when this node took it, and stores it as if it
//!   had been delivered there: this node can delay a message, never forge one. Held
//!   deliveries go when that node took them, or refused them for good.
//! - It mirrors the account's DID log and status lists as a did:webvh watcher ([`mirror`]).

pub mod mirror;
mod store;

use crate::federation_auth::{verify_request, IncomingRequest};
use crate::service::{Received, Vouched};
use crate::{Messaging, MessagingError};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sichat_core::did::Did;
use sichat_core::ids::{b64url, new_id, now_ms};
use sichat_core::jws;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const TYP_STANDBY_GRANT: &str = "sichat-standby-grant+jwt";
pub const TYP_STANDBY_END: &str = "sichat-standby-end+jwt";
pub const TYP_HANDOVER: &str = "sichat-standby-handover+jwt";
/// Appended to an account's DIDComm endpoint: where its standby hands over.
pub const HANDOVER_SUFFIX: &str = "/handover";
/// The header carrying a handover's JWS.
pub const HANDOVER_HEADER: &str = "sichat-handover";
/// How far a grant's or a handover's `iat` may be from now.
const FRESH_SECS: i64 = 600;
/// The signature headers of a delivery, kept to hand it over.
const KEPT_HEADERS: [&str; 5] = ["signature", "signature-input", "content-digest", "content-type", "sichat-sender"];
/// Held deliveries tried per round.
const BATCH: i64 = 50;

/// Signed by the account's root key (`kid` = `<iss>#root`): the node `aud` may keep the
/// account's messages and hand them to `primary`, the account's DIDComm endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyGrant {
    pub iss: String,
    pub aud: String,
    pub primary: String,
    pub iat: i64,
}

/// Signed by the account's root key: the standby at `aud` ends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyEnd {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
}

/// `POST /api/v1/standbys`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStandby {
    pub grant: String,
    pub invite: String,
}

/// The answer: this node's DID and DIDComm endpoint, for `set_standby` on the account's node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StandbyCreated {
    pub dids: Vec<String>,
    pub node_did: String,
    pub endpoint: String,
    /// Its did:webvh watcher, for the log's `watchers` parameter.
    pub watcher: String,
}

/// `POST /api/v1/standbys/end`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndStandby {
    pub request: String,
}

/// What a handover's JWS says, signed by the standby node's key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// The standby node's DID.
    pub iss: String,
    /// The account's DID the delivery was for (the forward's `next`).
    pub to: String,
    pub iat: i64,
    /// The URL the sender's node signed (the standby's endpoint).
    pub target_uri: String,
    /// When the standby took it (ms): the sender's signature is checked as of then.
    pub received_at: i64,
    pub headers: BTreeMap<String, String>,
    /// SHA-256 of the body (the request's body is the delivery's, unchanged), base64url.
    pub body_sha256: String,
}

fn invalid(why: impl Into<String>) -> MessagingError {
    MessagingError::Invalid(why.into())
}

impl Messaging {
    /// Verify a JWS signed by the root key of the account `iss` names (`kid` = `<iss>#root`,
    /// the key its DID document lists there). Returns the claims and the DIDs the account
    /// is known by (its DID and `alsoKnownAs`).
    async fn by_root_key<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
    ) -> Result<(T, Value, Vec<String>), MessagingError> {
        let unverified: Value = jws::unverified_payload(token).map_err(|e| invalid(format!("not a JWS: {e}")))?;
        let iss = unverified["iss"].as_str().ok_or_else(|| invalid("the request names no iss"))?.to_owned();
        Did::parse(&iss).map_err(|e| invalid(format!("iss: {e}")))?;
        let kid = jws::header_of(token).ok().and_then(|h| h["kid"].as_str().map(str::to_owned));
        if kid.as_deref() != Some(format!("{iss}#root").as_str()) {
            return Err(invalid("it must be signed by the account's root key (kid <DID>#root)"));
        }
        let keys = self.resolver().resolve(&iss).await.map_err(|e| invalid(format!("cannot resolve {iss}: {e}")))?;
        let key = keys
            .methods
            .iter()
            .find(|m| m.id == format!("{iss}#root"))
            .map(|m| m.key)
            .ok_or_else(|| invalid(format!("{iss} lists no root key")))?;
        let claims: T = jws::verify_with(token, &key, typ)
            .map_err(|e| invalid(format!("not signed by the root key of {iss}: {e}")))?;
        let mut dids = vec![iss];
        dids.extend(keys.also_known_as.iter().filter(|d| Did::parse(d).is_ok()).cloned());
        dids.dedup();
        Ok((claims, unverified, dids))
    }

    fn fresh(&self, iat: i64) -> Result<(), MessagingError> {
        match (iat - now_ms() / 1000).abs() <= FRESH_SECS {
            true => Ok(()),
            false => Err(invalid("the request is stale or from the future: check the clock")),
        }
    }

    /// `POST /api/v1/standbys`: stand by for the account whose root key signed the grant.
    pub async fn add_standby(&self, req: NewStandby) -> Result<StandbyCreated, MessagingError> {
        let (grant, _, dids): (StandbyGrant, _, _) = self.by_root_key(&req.grant, TYP_STANDBY_GRANT).await?;
        if grant.aud != self.node().did().as_str() {
            return Err(invalid(format!("the grant is for {}, not for this node", grant.aud)));
        }
        self.fresh(grant.iat)?;
        let primary = url::Url::parse(&grant.primary)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
            .ok_or_else(|| invalid("primary must be the account's DIDComm endpoint, an http(s) URL"))?;
        if dids.iter().filter_map(|d| Did::parse(d).ok()).any(|d| self.local_user_name(&d).is_some()) {
            return Err(invalid("the account lives on this node: a standby is another node"));
        }
        if store::active(&mut *self.db.pool().acquire().await?, &grant.iss).await? {
            return Err(MessagingError::DuplicateId(format!("this node stands by for {} already", grant.iss)));
        }
        // The invite is what lets a stranger's account in: spent only once all else holds.
        let invite_id = self.accounts().spend_invite(&req.invite).await.map_err(|e| invalid(e.to_string()))?;
        let new = store::NewStandby {
            dids: &dids,
            account: &grant.iss,
            primary_endpoint: primary.as_str(),
            grant: &req.grant,
            invite_id: &invite_id,
            now: now_ms(),
        };
        let mut tx = self.db.pool().begin().await?;
        store::insert(&mut tx, new).await?;
        tx.commit().await?;
        tracing::info!(account = %grant.iss, primary = %primary, "standing by for an account of another node");
        Ok(StandbyCreated {
            dids,
            node_did: self.node().did().to_string(),
            endpoint: self.node().url(sichat_accounts::DIDCOMM_PATH),
            watcher: self.watcher_url(),
        })
    }

    /// `POST /api/v1/standbys/end`: nothing more is kept for the account; what is kept is
    /// still handed over.
    pub async fn end_standby(&self, request: &str) -> Result<(), MessagingError> {
        let (end, _, _): (StandbyEnd, _, _) = self.by_root_key(request, TYP_STANDBY_END).await?;
        if end.aud != self.node().did().as_str() {
            return Err(invalid(format!("the request is for {}, not for this node", end.aud)));
        }
        self.fresh(end.iat)?;
        let ended = store::end(&mut *self.db.pool().acquire().await?, &end.iss, now_ms()).await?;
        if ended == 0 {
            return Err(MessagingError::NotFound(format!("this node does not stand by for {}", end.iss)));
        }
        tracing::info!(account = %end.iss, "standby ended");
        Ok(())
    }

    /// Keep a delivery for an account this node stands by for. `None`: it stands by for no
    /// such account (the caller answers as for an unknown recipient).
    pub(crate) async fn hold(
        &self,
        target_uri: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<Received>, MessagingError> {
        let forward = self.read_forward(body)?;
        let mut c = self.db.pool().acquire().await?;
        let Some(standby) = store::standby_for(&mut c, forward.next.as_str()).await? else { return Ok(None) };
        if standby.ended {
            return Ok(None);
        }
        if store::held_bytes(&mut c, &standby.account).await? + body.len() as i64 > self.settings.quota_bytes {
            return Err(MessagingError::RateLimited("this standby holds all it may for the recipient".into()));
        }
        let kept: BTreeMap<&str, &str> =
            KEPT_HEADERS.iter().filter_map(|n| Some((*n, headers.get(*n)?.to_str().ok()?))).collect();
        let now = now_ms();
        let held = store::Held {
            id: new_id(),
            account: standby.account.clone(),
            forward_id: forward.id.clone(),
            target_uri: target_uri.to_owned(),
            headers: serde_json::to_string(&kept).map_err(MessagingError::internal)?,
            body: body.to_vec(),
            received_at: now,
            attempts: 0,
        };
        let fresh = store::hold(&mut c, &held, now).await?;
        ::metrics::counter!("sichat_standby_held_total").increment(u64::from(fresh));
        tracing::info!(account = %standby.account, forward = %forward.id, "held a message for a node that is down");
        Ok(Some(if fresh { Received::Stored } else { Received::Duplicate }))
    }

    /// `POST <endpoint>/handover` on the account's node: a delivery the account's standby
    /// kept. See the module's documentation for what is checked.
    pub(crate) async fn take_handover(&self, headers: &HeaderMap, body: &[u8]) -> Result<Received, MessagingError> {
        let token = headers
            .get(HANDOVER_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|t| t.len() <= 16 * 1024)
            .ok_or_else(|| invalid(format!("a handover carries its JWS in {HANDOVER_HEADER}")))?;
        let unverified: Handover =
            jws::unverified_payload(token).map_err(|e| invalid(format!("not a handover: {e}")))?;
        let standby = Did::parse(&unverified.iss).map_err(|e| invalid(format!("iss: {e}")))?;
        let keys = self.resolver().resolve(standby.as_str()).await.map_err(|e| invalid(format!("{standby}: {e}")))?;
        let kid = jws::header_of(token).ok().and_then(|h| h["kid"].as_str().map(str::to_owned)).unwrap_or_default();
        let key = keys
            .key_for(&kid, sichat_core::resolver::Relationship::Authentication)
            .map_err(|e| MessagingError::BadSignature(e.to_string()))?;
        let now = now_ms();
        let (h, original) = read_handover(token, &key, body, now, self.settings.max_age_ms)?;
        let to = Did::parse(&h.to).map_err(|e| invalid(format!("to: {e}")))?;
        let name = self.recipient_name(&to).await?;
        match self.accounts().standby_of(&name).await? {
            Some((node, endpoint)) if node == h.iss && endpoint == h.target_uri => {}
            _ => return Err(MessagingError::NotAccepted),
        }
        let request = IncomingRequest { method: "POST", target_uri: &h.target_uri, headers: &original, body };
        let peer = verify_request(&request, self.resolver(), h.received_at / 1000).await.map_err(|e| {
            ::metrics::counter!("sichat_federation_refused_total").increment(1);
            MessagingError::BadSignature(format!("the sender's signature: {e}"))
        })?;
        if !crate::federation::first_time(self, &peer.node_did, &peer.nonce, peer.expires, now / 1000).await? {
            return Ok(Received::Duplicate);
        }
        let got = self.receive(&Vouched { node: peer.node_did, sender: peer.sender }, body).await?;
        tracing::info!(%to, standby = %h.iss, "took a message the standby kept");
        Ok(got)
    }

    /// Every `standby_handover`, hand over what is held to the accounts' nodes.
    pub(crate) async fn run_handovers(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.settings.standby_handover).await;
            if let Err(e) = self.hand_over_due().await {
                tracing::warn!(error = %e, "standby handover round failed");
            }
            if let Err(e) = self.refresh_mirrors().await {
                tracing::warn!(error = %e, "standby mirror round failed");
            }
        }
    }

    async fn hand_over_due(&self) -> Result<(), MessagingError> {
        let now = now_ms();
        let mut c = self.db.pool().acquire().await?;
        store::drop_expired(&mut c, now - self.settings.max_age_ms).await?;
        store::forget_ended(&mut c).await?;
        let due = store::due(&mut c, now, BATCH).await?;
        drop(c);
        for (held, primary) in due {
            let outcome = self.hand_over(&held, &primary).await;
            let mut c = self.db.pool().acquire().await?;
            match outcome {
                Ok(()) => store::handed_over(&mut c, &held.id).await?,
                Err(Some(why)) => {
                    let backoff = 1000 * (1i64 << held.attempts.clamp(0, 9)).min(600);
                    store::retry_later(&mut c, &held.id, now_ms() + backoff, &why).await?;
                }
                Err(None) => store::handed_over(&mut c, &held.id).await?,
            }
        }
        Ok(())
    }

    /// One handover. `Err(Some(why))`: try again later; `Err(None)`: refused for good.
    async fn hand_over(&self, held: &store::Held, primary: &str) -> Result<(), Option<String>> {
        let headers: BTreeMap<String, String> = serde_json::from_str(&held.headers).map_err(|e| Some(e.to_string()))?;
        let claims = Handover {
            iss: self.node().did().to_string(),
            to: held.account.clone(),
            iat: now_ms() / 1000,
            target_uri: held.target_uri.clone(),
            received_at: held.received_at,
            body_sha256: b64url(&Sha256::digest(&held.body)),
            headers: headers.clone(),
        };
        let token = self.node().sign_jws(TYP_HANDOVER, &claims).map_err(|e| Some(e.to_string()))?;
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        let request_headers = [(HANDOVER_HEADER, token), ("content-type", content_type)];
        let url = format!("{}{HANDOVER_SUFFIX}", primary.trim_end_matches('/'));
        let (status, answer) = self
            .resolver()
            .fetcher()
            .post(&url, &request_headers, held.body.clone())
            .await
            .map_err(|e| Some(e.to_string()))?;
        match status {
            200..=299 => {
                tracing::info!(account = %held.account, forward = %held.forward_id, "handed over a message kept");
                Ok(())
            }
            408 | 425 | 429 | 500..=599 => Err(Some(format!("HTTP {status}"))),
            _ => {
                let why = String::from_utf8_lossy(&answer).chars().take(300).collect::<String>();
                tracing::warn!(account = %held.account, forward = %held.forward_id, status, %why,
                    "the account's node refused a message kept for it: dropped");
                ::metrics::counter!("sichat_standby_refused_total").increment(1);
                Err(None)
            }
        }
    }
}

/// A handover as far as it can be checked with no network: its JWS signed by `key` (the
/// standby node's, whose DID is its `iss` and `kid`), fresh, the body the one it names,
/// `received_at` within the messages' lifetime, and the sender's headers (only those a
/// delivery is signed with), rebuilt for the sender's signature check.
pub fn read_handover(
    token: &str,
    key: &sichat_core::p256key::PublicKey,
    body: &[u8],
    now_ms: i64,
    max_age_ms: i64,
) -> Result<(Handover, HeaderMap), MessagingError> {
    let h: Handover = jws::verify_with(token, key, TYP_HANDOVER)
        .map_err(|e| MessagingError::BadSignature(format!("the handover: {e}")))?;
    let kid = jws::header_of(token).ok().and_then(|h| h["kid"].as_str().map(str::to_owned)).unwrap_or_default();
    if kid.split('#').next() != Some(h.iss.as_str()) {
        return Err(MessagingError::BadSignature("the handover is not signed by its iss".into()));
    }
    if (h.iat - now_ms / 1000).abs() > FRESH_SECS {
        return Err(invalid("the handover is stale or from the future: check the clock"));
    }
    if b64url(&Sha256::digest(body)) != h.body_sha256 {
        return Err(invalid("the body is not the one the handover names"));
    }
    if h.received_at > now_ms + FRESH_SECS * 1000 || h.received_at < now_ms - max_age_ms {
        return Err(invalid("the handover's received_at is out of range"));
    }
    let mut original = HeaderMap::new();
    for (name, value) in &h.headers {
        if !KEPT_HEADERS.contains(&name.as_str()) {
            return Err(invalid(format!("a handover keeps no {name} header")));
        }
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(format!("bad header {name}")))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid(format!("the {name} header is not text")))?;
        original.insert(header, value);
    }
    Ok((h, original))
}

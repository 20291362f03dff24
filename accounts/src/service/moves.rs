//! Moving an account to another node (the protocol: [`crate::protocol::moves`]): the
//! ticket, the draft and the import on the new node; the sealed export and the end of the
//! move on the old one, which then keeps answering for the old DIDs.
//!
//! The root key authorises every step that changes something, and the DID log proves the
//! identity: the new node takes no one's word for who the account is, only the log (its
//! SCID, its hash chain and the root key's signatures) and the root key's requests. The
//! bundle is sealed to a key only the new node holds, so the wallet that carries it never
//! sees the issuing keys in clear.

use super::did_log::{bad_entry, entry_did, webvh_at, webvh_state};
use super::*;
use crate::hooks::{Arrival, ImportError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_core::ids::b64url_decode;
use sichat_core::jwe;
use sichat_core::keys::{X25519KeyPair, X25519Public};
use sichat_core::webvh::{self, WebvhDid};
use std::collections::BTreeMap;

/// An account that moved away from this node.
#[derive(Debug, Clone)]
pub struct MovedAway {
    /// The URL of the node it moved to.
    pub origin: String,
    /// Its name there.
    pub name: String,
    /// Whether this node still answers for it (redirects, `recipient_moved`): for
    /// `Settings::moved_account_ms` after the move; then its old URLs are gone (`410`).
    pub answering: bool,
}

/// How long a ticket, and an export, stay usable.
const MOVE_TTL_MS: i64 = 60 * 60 * 1000;
/// The largest sealed bundle a node makes or opens.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// Tickets one invite may have open at once.
const OPEN_TICKETS_PER_INVITE: i64 = 3;
const BUNDLE_VERSION: u32 = 1;
/// Nesting allowed in a bundle (credential claims included).
pub(super) const BUNDLE_DEPTH: usize = 64;

/// Everything an account owns, as the old node hands it to the new one (sealed).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    v: u32,
    /// The hash of the ticket it was sealed for.
    ticket_hash: String,
    /// The old node's URL.
    from: String,
    user: BundleUser,
    /// The account's `did:web` DID on the old node.
    web_did: String,
    /// DIDs the account had before the old node: the did:key it started as, and those of
    /// nodes before the old one.
    earlier_dids: Vec<String>,
    did_log: Vec<String>,
    issuing_keys: Vec<BundleKey>,
    devices: Vec<BundleDevice>,
    /// Each crate's part ([`AccountHooks::export_account`]), by crate name.
    parts: BTreeMap<String, Value>,
    /// Crates whose rest follows in pages, with how many items: the import needs all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    more: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleUser {
    id: String,
    name: String,
    root_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_key: Option<String>,
    /// The friends holding shares of the recovery key: they move with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_guardians: Option<Guardians>,
    /// The history key (the sealed history itself is written again by the wallets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history_key: Option<String>,
    created_at: i64,
}

impl BundleUser {
    /// Whether `keys` are exactly the account's root key and recovery key (if any).
    fn controls_log(&self, keys: &[String]) -> bool {
        let mut want: Vec<&String> = std::iter::once(&self.root_key).chain(&self.recovery_key).collect();
        let mut got: Vec<&String> = keys.iter().collect();
        want.sort();
        got.sort();
        want == got
    }
}

/// An issuing key in a bundle: as `sichat export` gets it (the same fields), zeroized on drop.
type BundleKey = ExportedIssuingKey;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleDevice {
    id: String,
    name: String,
    sign_key: String,
    agree_key: String,
    created_at: i64,
}

/// `https://host[:port]` of a URL given for the other node, or why not.
fn origin_of(url: &str) -> Result<String, AccountError> {
    let bad = || AccountError::InvalidRequest(format!("{url} is not the URL of a node (https://host)"));
    let u = url::Url::parse(url).map_err(|_| bad())?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(bad());
    }
    Ok(u.origin().ascii_serialization())
}

pub(super) fn bad_bundle(why: impl std::fmt::Display) -> AccountError {
    AccountError::InvalidRequest(format!("the move bundle: {why}"))
}

impl Accounts {
    // ---- on the new node ----

    /// A ticket for a move to this node, taken with an invite (used when the move is done).
    pub async fn move_ticket(&self, req: &MoveTicketRequest) -> Result<MoveTicket, AccountError> {
        let now = now_ms();
        let mut c = self.conn().await?;
        let invite = self.usable_invite(&mut c, &req.invite, now).await?;
        if store::open_tickets(&mut c, &invite.id, now).await? >= OPEN_TICKETS_PER_INVITE {
            return Err(AccountError::Conflict(format!(
                "this invite already has {OPEN_TICKETS_PER_INVITE} moves in flight: finish one, or wait an hour"
            )));
        }
        let key = X25519KeyPair::generate();
        let ticket = random_token();
        let id = new_id();
        let expires_at = now + MOVE_TTL_MS;
        let new = store::NewMove {
            id: &id,
            direction: "in",
            status: "open",
            ticket_hash: &token_hash(&ticket),
            user_id: None,
            user_name: None,
            peer_origin: None,
            invite_id: Some(&invite.id),
            ticket_key: Some(self.master.seal(&key.secret(), &format!("acct_moves:{id}"))),
            now,
            expires_at,
        };
        store::insert_move(&mut c, new).await?;
        Ok(MoveTicket {
            ticket,
            recipient_key: key.public().to_jwk(),
            node_did: self.node.did().to_string(),
            expires_at,
        })
    }

    /// The live move a ticket names on this node.
    pub(super) async fn ticket(
        &self,
        c: &mut store::Conn,
        ticket: &str,
        now: i64,
    ) -> Result<store::MoveRow, AccountError> {
        let m = store::move_by_ticket(c, "in", &token_hash(ticket))
            .await?
            .filter(|m| m.status == "done" || m.expires_at > now)
            .ok_or_else(|| AccountError::NotFound("no such move ticket, or it expired: start the move again".into()))?;
        if m.status == "done" {
            return Err(AccountError::Conflict("this move is done already: the ticket is used".into()));
        }
        Ok(m)
    }

    /// Open a bundle sealed to a ticket's key, and check it is whole and for this ticket.
    fn open_bundle(&self, m: &store::MoveRow, ticket: &str, sealed: &str) -> Result<Bundle, AccountError> {
        let key =
            m.ticket_key.as_deref().ok_or_else(|| AccountError::Internal("a move ticket without its key".into()))?;
        let key = X25519KeyPair::from_secret(&self.master.open(key, &format!("acct_moves:{}", m.id))?)?;
        let plain = jwe::open(&key, TYP_MOVE_BUNDLE, sealed, MAX_BUNDLE_BYTES).map_err(bad_bundle)?;
        let text = std::str::from_utf8(&plain).map_err(|_| bad_bundle("not UTF-8"))?;
        let bundle: Bundle = sichat_core::json::from_str_bounded(text, BUNDLE_DEPTH).map_err(bad_bundle)?;
        if bundle.v != BUNDLE_VERSION {
            return Err(bad_bundle(format!("version {} (this node reads {BUNDLE_VERSION})", bundle.v)));
        }
        if bundle.ticket_hash != token_hash(ticket) {
            return Err(bad_bundle("it was sealed for another move"));
        }
        if bundle.did_log.is_empty() || bundle.devices.is_empty() {
            return Err(bad_bundle("it has no DID log, or no device"));
        }
        origin_of(&bundle.from)?;
        Ed25519Public::from_multibase(&bundle.user.root_key).map_err(bad_bundle)?;
        Ok(bundle)
    }

    /// The account's DID log as the bundle carries it, verified: the DID it names last,
    /// and that the root key alone controls it and it may move.
    async fn bundle_log(bundle: &Bundle) -> Result<(String, webvh::VerifiedLog), AccountError> {
        let did = entry_did(bundle.did_log.last().map(String::as_str).unwrap_or_default())?;
        let raw: String = bundle.did_log.iter().map(|l| format!("{l}\n")).collect();
        let log = webvh::verify_log(&did, &raw).await.map_err(|e| bad_bundle(format!("its DID log: {e}")))?;
        if !bundle.user.controls_log(&log.update_keys) {
            return Err(bad_bundle("its DID log is not controlled by the account's root and recovery keys alone"));
        }
        if !log.portable {
            return Err(bad_bundle("its DID was not made portable: it cannot move"));
        }
        if log.deactivated {
            return Err(bad_bundle("its DID is deactivated"));
        }
        Ok((did, log))
    }

    /// The account's document on this node as `name`: every key of the bundle, the devices,
    /// this node's messaging endpoint, and its earlier DIDs.
    fn arriving_state(
        &self,
        bundle: &Bundle,
        name: &UserName,
        did: &str,
        earlier: &[String],
    ) -> Result<Value, AccountError> {
        let issuing: Vec<(String, String)> =
            bundle.issuing_keys.iter().map(|k| (k.id.clone(), k.public_key.clone())).collect();
        let devices: Vec<(String, String, String)> =
            bundle.devices.iter().map(|d| (d.id.clone(), d.sign_key.clone(), d.agree_key.clone())).collect();
        let doc = build_document(
            self.node.user_did(name.as_str())?,
            &bundle.user.root_key,
            &issuing,
            &devices,
            self.node.url(DIDCOMM_PATH),
        );
        webvh_state(&doc, did, earlier)
    }

    /// Every DID the account had before, newest first: its `did:webvh` and `did:web` on the
    /// old node, then those it had before that.
    fn earlier_of(bundle: &Bundle, old_did: &str) -> Vec<String> {
        let mut earlier = vec![old_did.to_owned(), bundle.web_did.clone()];
        earlier.extend(bundle.earlier_dids.iter().filter(|d| !earlier.contains(d)).cloned().collect::<Vec<_>>());
        earlier
    }

    /// The document the root key signs to move the account here, and the log entry it
    /// follows. The bundle is kept with the ticket for the import.
    pub async fn move_draft(&self, req: &MoveDraftRequest) -> Result<MoveDraft, AccountError> {
        let now = now_ms();
        let mut c = self.conn().await?;
        let m = self.ticket(&mut c, &req.ticket, now).await?;
        let bundle = self.open_bundle(&m, &req.ticket, &req.bundle)?;
        let name = UserName::parse(req.name.as_deref().unwrap_or(&bundle.user.name))?;
        if store::user_by_name(&mut c, name.as_str()).await?.is_some() {
            return Err(AccountError::NameTaken(name.to_string()));
        }
        if store::user_by_id(&mut c, &bundle.user.id).await?.is_some() {
            return Err(AccountError::Conflict("this account is on this node already".into()));
        }
        let (old_did, log) = Self::bundle_log(&bundle).await?;
        let web = self.node.user_did(name.as_str())?;
        let did = webvh_at(&web, &log.scid);
        WebvhDid::parse(&did).map_err(|e| {
            AccountError::InvalidRequest(format!("this node cannot hold did:webvh DIDs ({e}): it needs a domain name"))
        })?;
        if did == old_did {
            return Err(AccountError::InvalidRequest("the account is at this address already".into()));
        }
        let state = self.arriving_state(&bundle, &name, &did, &Self::earlier_of(&bundle, &old_did))?;
        store::set_move_drafted(&mut c, &m.id, &req.bundle, name.as_str()).await?;
        let devices = bundle
            .devices
            .iter()
            .map(|d| Device {
                id: d.id.clone(),
                name: d.name.clone(),
                sign_key: d.sign_key.clone(),
                agree_key: d.agree_key.clone(),
                created_at: d.created_at,
                cert_expires_at: 0,
                revoked_at: None,
                revoked_by: None,
            })
            .collect();
        let last_entry = bundle.did_log.last().cloned().unwrap_or_default();
        Ok(MoveDraft { did, web_did: web.to_string(), state, last_entry, devices })
    }

    /// Create the moved account here, on a request signed by its root key that carries the
    /// log entry moving the DID here and a new certificate for each device. Everything the
    /// bundle holds is stored in one transaction, or nothing is.
    pub async fn move_import(&self, request: &str) -> Result<Account, AccountError> {
        let unverified: MoveInClaims = jws::unverified_payload(request)?;
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let m = self.ticket(&mut tx, &unverified.ticket, now).await?;
        let (Some(sealed), Some(name)) = (m.bundle.as_deref(), m.user_name.as_deref()) else {
            return Err(AccountError::InvalidRequest("ask for the draft first (POST /api/v1/moves/draft)".into()));
        };
        let mut bundle = self.open_bundle(&m, &unverified.ticket, sealed)?;
        let root = Ed25519Public::from_multibase(&bundle.user.root_key)?;
        let claims: MoveInClaims = jws::verify(request, &root, TYP_MOVE_IN)?;
        self.check_audience(&claims.aud)?;
        Self::check_fresh(claims.iat)?;
        if !store::take_challenge(&mut tx, &claims.challenge, CHALLENGE_PURPOSE_REQUEST, None, now).await? {
            return Err(AccountError::ChallengeInvalid);
        }
        let name = UserName::parse(name)?;
        let web = self.node.user_did(name.as_str())?;
        let (old_did, old_log) = Self::bundle_log(&bundle).await?;
        let did = webvh_at(&web, &old_log.scid);
        if claims.iss != did || entry_did(&claims.entry)? != did {
            return Err(bad_entry(format!("it must move the DID to {did}")));
        }
        let raw: String =
            bundle.did_log.iter().chain(std::iter::once(&claims.entry)).map(|l| format!("{l}\n")).collect();
        let log = webvh::verify_log(&did, &raw).await.map_err(bad_entry)?;
        if log.entries != bundle.did_log.len() + 1 {
            return Err(bad_entry("it is not the next version of the log"));
        }
        if !bundle.user.controls_log(&log.update_keys) || !log.portable {
            return Err(bad_entry(format!("after it, {}, and the DID must stay portable", super::did_log::CONTROL)));
        }
        let earlier = Self::earlier_of(&bundle, &old_did);
        let expected = self.arriving_state(&bundle, &name, &did, &earlier)?;
        if !webvh::same_document(&log.document, &expected) {
            return Err(bad_entry("its document is not the account's document here (ask for a new draft)"));
        }

        let invite_id =
            m.invite_id.as_deref().ok_or_else(|| AccountError::Internal("a ticket without invite".into()))?;
        let invite = store::invite_by_id(&mut tx, invite_id).await?.ok_or(AccountError::InviteNotFound)?;
        Self::check_invite(&invite, now)?;
        if store::user_by_name(&mut tx, name.as_str()).await?.is_some() {
            return Err(AccountError::NameTaken(name.to_string()));
        }
        let user_id = bundle.user.id.clone();
        let new_user = NewUser {
            id: &user_id,
            name: name.as_str(),
            root_key: &bundle.user.root_key,
            quota: invite.quota - 1,
            invite_id: &invite.id,
            now: bundle.user.created_at,
        };
        store::insert_user(&mut tx, new_user).await.map_err(|e| match is_unique_violation(&e) {
            true => AccountError::Conflict("this account is on this node already".into()),
            false => e.into(),
        })?;
        if let Some(key) = &bundle.user.recovery_key {
            Ed25519Public::from_multibase(key).map_err(bad_bundle)?;
            store::set_recovery_key(&mut tx, &user_id, Some(key)).await?;
        }
        if let Some(g) = &bundle.user.recovery_guardians {
            if bundle.user.recovery_key.is_none() {
                return Err(bad_bundle("recovery friends without a recovery key"));
            }
            g.check(&bundle.web_did)?;
            let raw = serde_json::to_string(g).map_err(|e| AccountError::Internal(e.to_string()))?;
            store::set_guardians(&mut tx, &user_id, Some(&raw)).await?;
        }
        if let Some(key) = &bundle.user.history_key {
            sichat_core::keys::X25519Public::from_multibase(key).map_err(bad_bundle)?;
            store::set_history_key(&mut tx, &user_id, Some(key)).await?;
        }
        if !store::use_invite(&mut tx, &invite.id, &user_id, now).await? {
            return Err(AccountError::InviteUsed);
        }
        self.import_issuing_keys(&mut tx, &user_id, &bundle.issuing_keys).await?;
        self.import_devices(&mut tx, &user_id, &web, &root, &bundle.devices, &claims.certificates, now).await?;
        for (version, line) in bundle.did_log.iter().chain(std::iter::once(&claims.entry)).enumerate() {
            store::append_did_log(&mut tx, &user_id, version as i64 + 1, line, now).await?;
        }
        let arrival = Arrival {
            user_id: &user_id,
            user_name: name.as_str(),
            from_origin: &bundle.from,
            old_web_did: &bundle.web_did,
            new_did: &did,
        };
        for hook in self.hooks() {
            let Some(part) = bundle.parts.remove(hook.name()) else { continue };
            hook.import_account(&mut tx, arrival, part).await.map_err(|e| match e {
                ImportError::Invalid(why) => bad_bundle(format!("{}: {why}", hook.name())),
                ImportError::Database(e) => AccountError::Internal(format!("{} could not import: {e}", hook.name())),
            })?;
        }
        if let Some(unknown) = bundle.parts.keys().next() {
            return Err(bad_bundle(format!("it holds a part ({unknown}) this node cannot store: update this node")));
        }
        self.import_pages(&mut tx, &m, &unverified.ticket, &bundle.more, arrival).await?;
        for old in &earlier {
            store::insert_did_alias(&mut tx, old, &user_id).await.map_err(|e| match is_unique_violation(&e) {
                true => AccountError::Conflict(format!("{old} already names an account of this node")),
                false => e.into(),
            })?;
        }
        let old_dids = serde_json::to_string(&earlier).map_err(|e| AccountError::Internal(e.to_string()))?;
        if !store::finish_move(&mut tx, &m.id, &user_id, &did, &old_dids, now).await? {
            return Err(AccountError::Conflict("this move is done already: the ticket is used".into()));
        }
        let peer = origin_of(&bundle.from)?;
        sqlx::query("UPDATE acct_moves SET peer_origin = $1 WHERE id = $2")
            .bind(&peer)
            .bind(&m.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics::counter!("sichat_moves_in_total").increment(1);
        tracing::info!(user = %name, %did, from = %peer, "account moved in");
        self.account(&user_id).await
    }

    /// The issuing keys, each checked against its public key and sealed under this node's
    /// master key.
    async fn import_issuing_keys(
        &self,
        c: &mut store::Conn,
        user_id: &str,
        keys: &[BundleKey],
    ) -> Result<(), AccountError> {
        for k in keys {
            let secret = zeroize::Zeroizing::new(
                b64url_decode(&k.secret).ok_or_else(|| bad_bundle(format!("issuing key {} is not base64url", k.id)))?,
            );
            let public = match k.algorithm.as_str() {
                "Ed25519" => Ed25519KeyPair::from_secret(&secret).map(|p| p.public().to_multibase()),
                "P-256" => P256KeyPair::from_secret(&secret).map(|p| p.public().to_multibase()),
                other => return Err(bad_bundle(format!("issuing key {} is of an unknown algorithm {other}", k.id))),
            }
            .map_err(|e| bad_bundle(format!("issuing key {}: {e}", k.id)))?;
            if public != k.public_key {
                return Err(bad_bundle(format!("issuing key {} does not match its public key", k.id)));
            }
            let sealed = self.master.seal(&secret, &format!("acct_issuing_keys:{}", k.id));
            store::insert_issuing_key(c, &k.id, user_id, &k.algorithm, &k.public_key, sealed, k.created_at)
                .await
                .map_err(|e| match is_unique_violation(&e) {
                    true => AccountError::Conflict(format!("issuing key {} is on this node already", k.id)),
                    false => e.into(),
                })?;
        }
        Ok(())
    }

    /// Each device of the bundle, with its new certificate (signed by the root key for the
    /// account's `did:web` here, for exactly that device's keys).
    #[allow(clippy::too_many_arguments)]
    async fn import_devices(
        &self,
        c: &mut store::Conn,
        user_id: &str,
        web: &Did,
        root: &Ed25519Public,
        devices: &[BundleDevice],
        certificates: &[String],
        now: i64,
    ) -> Result<(), AccountError> {
        if certificates.len() != devices.len() {
            return Err(AccountError::InvalidCertificate(format!(
                "{} certificates for {} devices: certify each device of the draft",
                certificates.len(),
                devices.len()
            )));
        }
        for token in certificates {
            let cert = DeviceCertificate::verify(token, root)?;
            let known = devices.iter().any(|d| {
                d.id == cert.sub && d.sign_key == cert.sign_key && d.agree_key == cert.agree_key && d.name == cert.name
            });
            if cert.iss != web.as_str() || !known {
                return Err(AccountError::InvalidCertificate(format!(
                    "{} is not a device of the draft for {web}",
                    cert.sub
                )));
            }
            self.insert_device(c, user_id, &cert, token, now).await?;
        }
        Ok(())
    }

    // ---- on the old node ----

    /// Root operation `move_out`: everything the account owns, sealed to the new node's
    /// ticket key. The account keeps working here; no second move starts until this one is
    /// done or expired.
    pub async fn move_export(&self, request: &str) -> Result<MoveExport, AccountError> {
        let RootOp { mut tx, user, claims, now, .. } = self.begin_root_op(request).await?;
        let RootOperation::MoveOut { to, ticket, recipient_key } = &claims.op else {
            return Err(AccountError::InvalidRequest("this endpoint takes only a move_out".into()));
        };
        let to = origin_of(to)?;
        if to == origin_of(self.node.public_url().as_str())? {
            return Err(AccountError::InvalidRequest("the account is on this node already".into()));
        }
        if user.standby.is_some() {
            return Err(AccountError::Conflict(
                "the account has a standby node, which hands what it keeps to this node: end it first \
                 (sichat standby remove), then move"
                    .into(),
            ));
        }
        let recipient = X25519Public::from_jwk(recipient_key)
            .ok_or_else(|| AccountError::InvalidRequest("recipient_key must be a public X25519 JWK".into()))?;
        if let Some(m) = store::move_in_flight(&mut tx, &user.id, now).await? {
            return Err(AccountError::Conflict(format!(
                "a move to {} is in flight: finish it, or wait until it expires",
                m.peer_origin.unwrap_or_default()
            )));
        }
        let did_log = store::did_log(&mut tx, &user.id).await?;
        let Some(did) = Self::webvh_did(&mut tx, &user.id).await? else {
            return Err(AccountError::InvalidRequest(
                "this account's DID is bound to this node: run `sichat did upgrade` first".into(),
            ));
        };
        let issuing_keys = self.opened_issuing_keys(&mut tx, &user.id).await?;
        let devices = store::active_devices(&mut tx, &user.id)
            .await?
            .into_iter()
            .map(|d| BundleDevice {
                id: d.id,
                name: d.name,
                sign_key: d.sign_key,
                agree_key: d.agree_key,
                created_at: d.created_at,
            })
            .collect();
        let mut parts = BTreeMap::new();
        let mut more = Vec::new();
        for hook in self.hooks() {
            let exported = hook
                .export_with_more(&mut tx, &user.id)
                .await
                .map_err(|e| AccountError::Internal(format!("{} could not export: {e}", hook.name())))?;
            if !exported.part.is_null() {
                parts.insert(hook.name().to_owned(), exported.part);
            }
            if let Some(m) = exported.more {
                more.push(MoreToMove { part: hook.name().to_owned(), cursor: m.cursor, items: m.items });
            }
        }
        let bundle = Bundle {
            v: BUNDLE_VERSION,
            ticket_hash: token_hash(ticket),
            from: origin_of(self.node.public_url().as_str())?,
            user: BundleUser {
                id: user.id.clone(),
                name: user.name.clone(),
                root_key: user.root_key.clone(),
                recovery_key: user.recovery_key.clone(),
                recovery_guardians: super::social::stored_guardians(&mut tx, &user.id).await?,
                history_key: store::history_key(&mut tx, &user.id).await?,
                created_at: user.created_at,
            },
            web_did: self.node.user_did(&user.name)?.to_string(),
            earlier_dids: Self::earlier_dids(&mut tx, &user.id).await?,
            did_log,
            issuing_keys,
            devices,
            parts,
            more: more.iter().map(|m| (m.part.clone(), m.items)).collect(),
        };
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(&bundle).map_err(|e| AccountError::Internal(e.to_string()))?);
        let sealed = jwe::seal(&recipient, TYP_MOVE_BUNDLE, &plain)?;
        if sealed.len() > MAX_BUNDLE_BYTES {
            return Err(AccountError::InvalidRequest(format!(
                "the account is too large to move in one bundle ({} bytes, at most {MAX_BUNDLE_BYTES})",
                sealed.len()
            )));
        }
        let new = store::NewMove {
            id: &new_id(),
            direction: "out",
            status: "exported",
            ticket_hash: &token_hash(ticket),
            user_id: Some(&user.id),
            user_name: Some(&user.name),
            peer_origin: Some(&to),
            invite_id: None,
            // The new node's public key: the pages that follow are sealed to it too.
            ticket_key: Some(recipient.as_bytes().to_vec()),
            now,
            expires_at: now + MOVE_TTL_MS,
        };
        store::insert_move(&mut tx, new).await?;
        tx.commit().await?;
        tracing::info!(user = %user.name, %to, bytes = sealed.len(), pages_for = more.len(), "account exported for a move");
        Ok(MoveExport { bundle: sealed, did, more })
    }

    /// Root operation `move_done`: the entry that moved the DID to the node at `to` joins
    /// the log here too; from now on this node only answers for the old DIDs and URLs.
    pub(super) async fn move_done(
        &self,
        tx: &mut store::Conn,
        user: &store::UserRow,
        to: &str,
        did: &str,
        entry: Option<&str>,
        now: i64,
    ) -> Result<(), AccountError> {
        let to = origin_of(to)?;
        let m = store::move_in_flight(tx, &user.id, now)
            .await?
            .filter(|m| m.peer_origin.as_deref() == Some(to.as_str()))
            .ok_or_else(|| {
                AccountError::Conflict(format!("no move to {to} is in flight: start it with sichat move"))
            })?;
        let entry = entry.ok_or_else(|| bad_entry("a move_done carries the entry that moved the DID"))?;
        if entry_did(entry)? != did {
            return Err(bad_entry(format!("it does not move the DID to {did}")));
        }
        let moved = WebvhDid::parse(did).map_err(bad_entry)?;
        let to_host = url::Url::parse(&to).ok().and_then(|u| {
            let host = u.host_str()?.to_ascii_lowercase();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        });
        if to_host.as_deref() != Some(moved.host()) {
            return Err(bad_entry(format!("{did} is not at {to}")));
        }
        let lines = store::did_log(tx, &user.id).await?;
        let raw: String = lines.iter().chain(std::iter::once(&entry.to_owned())).map(|l| format!("{l}\n")).collect();
        let log = webvh::verify_log(did, &raw).await.map_err(bad_entry)?;
        if log.entries != lines.len() + 1 {
            return Err(bad_entry("it is not the next version of the log"));
        }
        if !user.controls_log(&log.update_keys) {
            return Err(bad_entry(format!("after it, {}", super::did_log::CONTROL)));
        }
        store::append_did_log(tx, &user.id, log.entries as i64, entry, now).await?;
        if !store::finish_move(tx, &m.id, &user.id, did, "[]", now).await? {
            return Err(AccountError::Conflict("this move is done already".into()));
        }
        store::set_user_status(tx, &user.id, "moved").await?;
        store::delete_user_sessions(tx, &user.id).await?;
        store::erase_issuing_secrets(tx, &user.id).await?;
        for hook in self.hooks() {
            hook.account_moved(tx, &user.id)
                .await
                .map_err(|e| AccountError::Internal(format!("{} could not end the account here: {e}", hook.name())))?;
        }
        metrics::counter!("sichat_moves_out_total").increment(1);
        Ok(())
    }

    /// For a change another crate makes to what an account owns (an issuance, a status
    /// change): hold the account in the caller's transaction `c`, and refuse while a move is
    /// in flight, so that nothing changes between the export and the end of the move (an
    /// export holds the account the same way).
    pub async fn hold_unless_moving(&self, c: &mut sqlx::AnyConnection, user_id: &str) -> Result<(), AccountError> {
        store::lock_user(c, user_id, self.db.backend() == Backend::Postgres).await?;
        match store::move_in_flight(c, user_id, now_ms()).await? {
            Some(m) => Err(AccountError::Conflict(format!(
                "your account is moving to {}: finish the move (sichat move), or cancel it \
                 (sichat move --cancel), first",
                m.peer_origin.unwrap_or_default()
            ))),
            None => Ok(()),
        }
    }

    /// Root operation `move_cancel`: the export in flight to `to` ends unfinished; the
    /// account works here as before (root operations, deliveries).
    pub(super) async fn move_cancel(
        &self,
        tx: &mut store::Conn,
        user: &store::UserRow,
        to: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        let to = origin_of(to)?;
        let m = store::move_in_flight(tx, &user.id, now)
            .await?
            .filter(|m| m.peer_origin.as_deref() == Some(to.as_str()))
            .ok_or_else(|| AccountError::Conflict(format!("no move to {to} is in flight: nothing to cancel")))?;
        store::cancel_move(tx, &m.id).await?;
        tracing::info!(user = %user.name, %to, "move cancelled");
        Ok(())
    }

    /// DIDs the account had before: the did:key it started as (`sichat join`), then those it
    /// had on the nodes it came from.
    pub(super) async fn earlier_dids(c: &mut store::Conn, user_id: &str) -> Result<Vec<String>, AccountError> {
        let mut dids: Vec<String> = store::key_did(c, user_id).await?.into_iter().collect();
        if let Some(m) = store::finished_move(c, user_id, "in").await? {
            let text = m.old_dids.unwrap_or_default();
            let moved: Vec<String> =
                serde_json::from_str(&text).map_err(|e| AccountError::Internal(format!("acct_moves.old_dids: {e}")))?;
            dids.extend(moved.into_iter().filter(|d| !dids.contains(d)).collect::<Vec<_>>());
        }
        Ok(dids)
    }

    /// The account that had `did` on the node it came from, by its name here.
    pub async fn name_by_alias(&self, did: &str) -> Result<Option<String>, AccountError> {
        Ok(store::name_by_alias(&mut *self.read_conn().await?, did).await?)
    }

    /// Whether `user` moved away recently enough that this node still answers for it
    /// (`Settings::moved_account_ms` after the move).
    pub(super) async fn still_answering_for(
        &self,
        c: &mut store::Conn,
        user: &store::UserRow,
    ) -> Result<bool, AccountError> {
        if user.status != "moved" {
            return Ok(false);
        }
        let m = store::finished_move(c, &user.id, "out").await?;
        Ok(m.and_then(|m| m.finished_at).is_some_and(|at| at + self.settings.moved_account_ms > now_ms()))
    }

    /// Where the account once called `name` here went, if it moved away.
    pub async fn moved_away(&self, name: &str) -> Result<Option<MovedAway>, AccountError> {
        let mut c = self.read_conn().await?;
        let Some(m) = store::moved_away(&mut c, name).await? else { return Ok(None) };
        let (Some(origin), Some(did)) = (m.peer_origin, m.new_did) else { return Ok(None) };
        let name = WebvhDid::parse(&did).ok().and_then(|d| d.path().last().cloned()).unwrap_or_else(|| name.into());
        let answering = m.finished_at.is_some_and(|at| at + self.settings.moved_account_ms > now_ms());
        Ok(Some(MovedAway { origin, name, answering }))
    }
}

//! The rules: registration by invite, the invite tree and its quotas, device certificates,
//! the mutual login handshake, sessions, and root-key operations. No HTTP here.

use crate::hooks::{AccountHooks, Removal, Revocation, SignOut};
use crate::protocol::*;
use crate::store::{self, NewDevice, NewInvite, NewUser};
use crate::AccountError;
use sichat_core::db::{is_unique_violation, Backend, Db};
use sichat_core::did::{Did, DidDocument, Relationships, Service};
use sichat_core::ids::{new_id, now_ms, random_bytes, random_token, token_hash};
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, Ed25519Public};
use sichat_core::node::NodeIdentity;
use sichat_core::p256key::{KeyPair, P256KeyPair, PublicKey};
use sichat_core::seal::MasterKey;
use std::sync::{Arc, RwLock};

mod devices;
mod documents;
use documents::build_document;
mod did_log;
mod export;
mod history;
mod move_pages;
mod moves;
mod rehost;
mod root_ops;
mod social;
pub use moves::MovedAway;
use root_ops::RootOp;

const CHALLENGE_PURPOSE_REQUEST: &str = "signed-request";
const CHALLENGE_PURPOSE_LOGIN: &str = "login";
/// Label of the invite `sichatd` prints at start while the node has no accounts.
pub const OWNER_INVITE_LABEL: &str = "owner";

/// Tunables, with the defaults a small node wants.
#[derive(Debug, Clone)]
pub struct Settings {
    pub session_ttl_ms: i64,
    pub challenge_ttl_ms: i64,
    pub invite_ttl_ms: i64,
    /// How long this node answers for an account that moved away (then: `410`).
    pub moved_account_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            session_ttl_ms: 15 * 60 * 1000,
            challenge_ttl_ms: 5 * 60 * 1000,
            invite_ttl_ms: 7 * 24 * 3600 * 1000,
            moved_account_ms: 180 * 24 * 3600 * 1000,
        }
    }
}

/// Who a request comes from, once its session checks out.
#[derive(Debug, Clone)]
pub struct AuthDevice {
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    pub token_hash: String,
}

/// Whether a device may still open sessions, and if not, why: to tell a connection whose
/// session stopped authenticating what ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    DeviceRevoked,
    AccountRemoved,
}

/// Where a node receives DIDComm messages from other nodes; every user's DID document
/// names it as its `DIDCommMessaging` service.
pub const DIDCOMM_PATH: &str = "/didcomm";

/// The accounts service of one node.
pub struct Accounts {
    db: Db,
    node: Arc<NodeIdentity>,
    master: Arc<MasterKey>,
    settings: Settings,
    /// What other crates do when an account is removed, a device revoked, or the user signs
    /// out everywhere (see [`crate::hooks`]). Registered once at startup.
    hooks: RwLock<Vec<Arc<dyn AccountHooks>>>,
}

impl Accounts {
    pub fn new(db: Db, node: Arc<NodeIdentity>, master: Arc<MasterKey>, settings: Settings) -> Self {
        Self { db, node, master, settings, hooks: RwLock::new(Vec::new()) }
    }

    /// Register a crate's [`AccountHooks`]; the server does it for every crate at startup.
    pub fn register_hooks(&self, hooks: Arc<dyn AccountHooks>) {
        let mut all = self.hooks.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        all.push(hooks);
    }

    fn hooks(&self) -> Vec<Arc<dyn AccountHooks>> {
        self.hooks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Every crate's hook for a revoked device, in the revoking transaction.
    async fn run_device_revoked(
        &self,
        c: &mut store::Conn,
        user_id: &str,
        device_id: &str,
    ) -> Result<(), AccountError> {
        for hook in self.hooks() {
            hook.device_revoked(c, Revocation { user_id, device_id }).await.map_err(|e| {
                AccountError::Internal(format!("{} could not end device {device_id}: {e}", hook.name()))
            })?;
        }
        Ok(())
    }

    /// "Sign out everywhere": every crate ends the browser sessions and site tokens it holds
    /// for the user (the OpenID Provider's sessions, refresh and access tokens), except the
    /// browser session `keep_browser_session` that asked, in one transaction. The wallet's
    /// own device sessions are not touched: they are signed by device keys, not opened with
    /// a password (revoke a device to end those).
    pub async fn sign_out_everywhere(
        &self,
        user_id: &str,
        keep_browser_session: Option<&str>,
    ) -> Result<(), AccountError> {
        let mut tx = self.db.pool().begin().await?;
        self.sign_out_everywhere_on(&mut tx, user_id, keep_browser_session).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Accounts::sign_out_everywhere`] inside the caller's transaction, for a change that
    /// must not commit without it (a new password).
    pub async fn sign_out_everywhere_on(
        &self,
        c: &mut store::Conn,
        user_id: &str,
        keep_browser_session: Option<&str>,
    ) -> Result<(), AccountError> {
        for hook in self.hooks() {
            hook.signed_out_everywhere(c, SignOut { user_id, keep_browser_session })
                .await
                .map_err(|e| AccountError::Internal(format!("{} could not sign out: {e}", hook.name())))?;
        }
        tracing::info!(user_id, kept_current = keep_browser_session.is_some(), "signed out everywhere");
        Ok(())
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, AccountError> {
        Ok(self.db.pool().acquire().await?)
    }

    /// For the hot read-only paths: on SQLite, not the one writer connection.
    async fn read_conn(&self) -> Result<sichat_core::db::ReadConn, AccountError> {
        Ok(self.db.read().await?)
    }

    /// The user name in a DID of this node (`<node did>:users:<name>`), or of a URL the
    /// node had before: wallets that have not followed it yet still name those.
    fn name_in_did(&self, did: &str) -> Result<UserName, AccountError> {
        let node_dids = std::iter::once(self.node.did()).chain(self.node.former().iter().map(|f| &f.did));
        let name = node_dids
            .filter_map(|node| did.strip_prefix(&format!("{node}:users:")).map(str::to_owned))
            .next()
            .ok_or_else(|| AccountError::Forbidden(format!("{did} is not an account of this node")))?;
        UserName::parse(&name)
    }

    /// Requests must name this node, by its DID now or at a URL it had before.
    fn check_audience(&self, aud: &str) -> Result<(), AccountError> {
        if !self.node.is_own_did(aud) {
            return Err(AccountError::WrongAudience { expected: self.node.did().to_string(), got: aud.into() });
        }
        Ok(())
    }

    fn check_fresh(iat: i64) -> Result<(), AccountError> {
        if (iat - now_secs()).abs() > MAX_SKEW_SECS {
            return Err(AccountError::InvalidRequest("iat is more than 5 minutes off the node's clock".into()));
        }
        Ok(())
    }

    /// A single-use challenge for a signed request (registration, root operations).
    pub async fn challenge(&self) -> Result<Challenge, AccountError> {
        let challenge = random_token();
        let expires_at = now_ms() + self.settings.challenge_ttl_ms;
        store::insert_challenge(&mut *self.conn().await?, &challenge, CHALLENGE_PURPOSE_REQUEST, None, expires_at)
            .await?;
        Ok(Challenge { challenge, audience: self.node.did().to_string(), expires_at })
    }

    // ---- invites ----

    /// Mint an invite. `inviter` None: from the node itself (`sichatd admin invite`).
    pub async fn create_invite(
        &self,
        inviter: Option<&AuthDevice>,
        req: CreateInvite,
    ) -> Result<InviteCreated, AccountError> {
        if req.quota < 1 {
            return Err(AccountError::InvalidRequest("quota must be at least 1 (the invitee's own account)".into()));
        }
        if let Some(label) = &req.label {
            if label.len() > 100 {
                return Err(AccountError::InvalidRequest("label must be at most 100 characters".into()));
            }
        }
        let ttl = match req.expires_in_hours {
            Some(h) if !(1..=24 * 90).contains(&h) => {
                return Err(AccountError::InvalidRequest("expires_in_hours must be between 1 and 2160".into()))
            }
            Some(h) => h * 3600 * 1000,
            None => self.settings.invite_ttl_ms,
        };
        let now = now_ms();
        let code = bs58_code();
        let id = new_id();
        let mut tx = self.db.pool().begin().await?;
        if let Some(me) = inviter {
            store::lock_user(&mut tx, &me.user_id, self.db.backend() == Backend::Postgres).await?;
            let user = store::user_by_id(&mut tx, &me.user_id).await?.ok_or(AccountError::Unauthorized)?;
            let available = user.quota - store::quota_given(&mut tx, &me.user_id, now).await?;
            if req.quota > available {
                return Err(AccountError::QuotaExceeded { available, requested: req.quota });
            }
        } else if req.label.as_deref() == Some(OWNER_INVITE_LABEL) {
            store::revoke_open_invites_labelled(&mut tx, OWNER_INVITE_LABEL).await?;
        }
        store::insert_invite(
            &mut tx,
            NewInvite {
                id: &id,
                code_hash: &token_hash(&code),
                inviter_id: inviter.map(|d| d.user_id.as_str()),
                quota: req.quota,
                label: req.label.as_deref(),
                now,
                expires_at: now + ttl,
            },
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("sichat_invites_created_total").increment(1);
        Ok(InviteCreated { id, code, quota: req.quota, expires_at: now + ttl })
    }

    pub async fn list_invites(&self, inviter: Option<&AuthDevice>) -> Result<Vec<Invite>, AccountError> {
        let now = now_ms();
        let rows = store::invites_by(&mut *self.conn().await?, inviter.map(|d| d.user_id.as_str())).await?;
        Ok(rows
            .into_iter()
            .map(|r| Invite {
                status: if r.status == "open" && r.expires_at <= now { "expired".into() } else { r.status },
                id: r.id,
                quota: r.quota,
                label: r.label,
                used_by: r.used_by,
                created_at: r.created_at,
                expires_at: r.expires_at,
            })
            .collect())
    }

    pub async fn revoke_invite(&self, inviter: Option<&AuthDevice>, id: &str) -> Result<(), AccountError> {
        let mut conn = self.conn().await?;
        if !store::revoke_invite(&mut conn, id, inviter.map(|d| d.user_id.as_str())).await? {
            return Err(AccountError::NotFound(format!("no open invite {id} of yours")));
        }
        Ok(())
    }

    /// At start: while the node has no accounts, mint a fresh owner invite (replacing any
    /// earlier unused one) for the operator to see.
    pub async fn owner_invite_if_needed(&self, quota: i64) -> Result<Option<InviteCreated>, AccountError> {
        if store::count_active_users(&mut *self.conn().await?).await? > 0 {
            return Ok(None);
        }
        let req = CreateInvite { quota, label: Some(OWNER_INVITE_LABEL.into()), expires_in_hours: None };
        self.create_invite(None, req).await.map(Some)
    }

    // ---- registration ----

    /// Create an account from a registration request signed by the new root key.
    pub async fn register(&self, request: &str) -> Result<Account, AccountError> {
        let unverified: RegistrationClaims = jws::unverified_payload(request)?;
        let root = Ed25519Public::from_multibase(&unverified.root_key)?;
        let claims: RegistrationClaims = jws::verify(request, &root, TYP_REGISTER)?;
        self.check_audience(&claims.aud)?;
        Self::check_fresh(claims.iat)?;
        let name = UserName::parse(&claims.name)?;
        let did = self.node.user_did(name.as_str())?;
        let cert = DeviceCertificate::verify(&claims.device_certificate, &root)?;
        if cert.iss != did.as_str() {
            return Err(AccountError::InvalidCertificate(format!("issued for {}, not for {did}", cert.iss)));
        }
        if let Some(key_did) = &claims.key_did {
            if *key_did != Did::key(&root).to_string() {
                return Err(AccountError::InvalidRequest(format!(
                    "{key_did} is not the did:key of the root key that signed this registration: an account is \
                     also known as a did:key only when it holds that key"
                )));
            }
        }

        let now = now_ms();
        let user_id = new_id();
        let issuing = Ed25519KeyPair::generate();
        let issuing_id = new_id();
        let mut tx = self.db.pool().begin().await?;
        if !store::take_challenge(&mut tx, &claims.challenge, CHALLENGE_PURPOSE_REQUEST, None, now).await? {
            return Err(AccountError::ChallengeInvalid);
        }
        let invite = self.usable_invite(&mut tx, &claims.invite, now).await?;
        if store::user_by_name(&mut tx, name.as_str()).await?.is_some() {
            return Err(AccountError::NameTaken(name.to_string()));
        }
        let new_user = NewUser {
            id: &user_id,
            name: name.as_str(),
            root_key: &claims.root_key,
            quota: invite.quota - 1,
            invite_id: &invite.id,
            now,
        };
        store::insert_user(&mut tx, new_user).await.map_err(|e| {
            if is_unique_violation(&e) {
                AccountError::NameTaken(name.to_string())
            } else {
                e.into()
            }
        })?;
        if !store::use_invite(&mut tx, &invite.id, &user_id, now).await? {
            return Err(AccountError::InviteUsed);
        }
        let sealed = self.master.seal(&issuing.secret(), &format!("acct_issuing_keys:{issuing_id}"));
        store::insert_issuing_key(
            &mut tx,
            &issuing_id,
            &user_id,
            "Ed25519",
            &issuing.public().to_multibase(),
            sealed,
            now,
        )
        .await?;
        self.insert_device(&mut tx, &user_id, &cert, &claims.device_certificate, now).await?;
        if let Some(key_did) = &claims.key_did {
            store::set_key_did(&mut tx, &user_id, key_did).await?;
            store::insert_did_alias(&mut tx, key_did, &user_id).await.map_err(|e| match is_unique_violation(&e) {
                true => AccountError::Conflict(format!("{key_did} already names an account of this node")),
                false => e.into(),
            })?;
        }
        tx.commit().await?;
        metrics::counter!("sichat_registrations_total").increment(1);
        tracing::info!(user = %name, did = %did, "account registered");
        self.account(&user_id).await
    }

    /// Spend an invite on something other than an account (a standby this node keeps for an
    /// account of another node): used, by no one, its quota gone with it. Returns its id.
    pub async fn spend_invite(&self, code: &str) -> Result<String, AccountError> {
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let invite = self.usable_invite(&mut tx, code, now).await?;
        if !store::spend_invite(&mut tx, &invite.id, now).await? {
            return Err(AccountError::InviteUsed);
        }
        tx.commit().await?;
        Ok(invite.id)
    }

    /// The standby node (DID, DIDComm endpoint) the account `name` named, if any.
    pub async fn standby_of(&self, name: &str) -> Result<Option<(String, String)>, AccountError> {
        let user = store::user_by_name(&mut *self.read_conn().await?, name).await?;
        Ok(user.filter(|u| u.status == "active").and_then(|u| u.standby))
    }

    /// The open, unexpired invite with this code.
    async fn usable_invite(&self, c: &mut store::Conn, code: &str, now: i64) -> Result<store::InviteRow, AccountError> {
        let invite = store::invite_by_code_hash(c, &token_hash(code)).await?.ok_or(AccountError::InviteNotFound)?;
        Self::check_invite(&invite, now)?;
        Ok(invite)
    }

    fn check_invite(invite: &store::InviteRow, now: i64) -> Result<(), AccountError> {
        match invite.status.as_str() {
            "used" => Err(AccountError::InviteUsed),
            "open" if invite.expires_at > now => Ok(()),
            _ => Err(AccountError::InviteExpired),
        }
    }

    async fn insert_device(
        &self,
        c: &mut store::Conn,
        user_id: &str,
        cert: &DeviceCertificate,
        token: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        let d = NewDevice {
            id: &cert.sub,
            user_id,
            name: &cert.name,
            sign_key: &cert.sign_key,
            agree_key: &cert.agree_key,
            certificate: token,
            cert_expires_at: cert.exp * 1000,
            now,
        };
        store::insert_device(c, d).await.map_err(|e| {
            if is_unique_violation(&e) {
                AccountError::Conflict("a device with this id or key is already registered".into())
            } else {
                e.into()
            }
        })
    }

    /// The id of the active account `name`, if there is one.
    pub async fn active_user_id(&self, name: &str) -> Result<Option<String>, AccountError> {
        let mut conn = self.read_conn().await?;
        let user = store::user_by_name(&mut conn, name).await?;
        Ok(user.filter(|u| u.status == "active").map(|u| u.id))
    }

    /// An account's public summary.
    pub async fn account(&self, user_id: &str) -> Result<Account, AccountError> {
        let mut conn = self.conn().await?;
        let user = store::user_by_id(&mut conn, user_id)
            .await?
            .ok_or_else(|| AccountError::NotFound("no such account".into()))?;
        if user.status != "active" {
            return Err(AccountError::AccountRemoved(user.name));
        }
        let given = store::quota_given(&mut conn, user_id, now_ms()).await?;
        let did = self.node.user_did(&user.name)?;
        Ok(Account {
            did_document_url: self.node.url(&format!("users/{}/did.json", user.name)),
            did: did.to_string(),
            node_did: self.node.did().to_string(),
            quota_available: user.quota - given,
            quota: user.quota,
            name: user.name,
            invited_by: user.invited_by,
            created_at: user.created_at,
        })
    }

    pub async fn users(&self) -> Result<Vec<UserSummary>, AccountError> {
        let rows = store::all_users(&mut *self.conn().await?).await?;
        rows.into_iter()
            .map(|(u, devices)| {
                Ok(UserSummary {
                    did: self.node.user_did(&u.name)?.to_string(),
                    name: u.name,
                    status: u.status,
                    quota: u.quota,
                    invited_by: u.invited_by,
                    devices,
                    created_at: u.created_at,
                })
            })
            .collect()
    }

    /// Remove `name`. `actor` None: the node operator. Otherwise the actor must be above
    /// the account in the invite tree. The accounts it invited move up to its inviter.
    pub async fn remove_user(&self, actor: Option<&AuthDevice>, name: &str) -> Result<(), AccountError> {
        let name = UserName::parse(name)?;
        let mut tx = self.db.pool().begin().await?;
        let target = store::user_by_name(&mut tx, name.as_str())
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("no account named {name}")))?;
        if target.status != "active" {
            return Err(AccountError::AccountRemoved(name.to_string()));
        }
        if let Some(me) = actor {
            if !store::is_ancestor(&mut tx, &me.user_id, &target.id).await? {
                return Err(AccountError::Forbidden(format!(
                    "only accounts above {name} in the invite tree may remove it"
                )));
            }
        }
        let device_ids = store::device_ids(&mut tx, &target.id).await?;
        store::remove_user(&mut tx, &target.id, now_ms()).await?;
        for hook in self.hooks() {
            hook.account_removed(&mut tx, Removal { user_id: &target.id, device_ids: &device_ids })
                .await
                .map_err(|e| AccountError::Internal(format!("{} could not remove {name}: {e}", hook.name())))?;
        }
        tx.commit().await?;
        for hook in self.hooks() {
            hook.account_removed_committed(Removal { user_id: &target.id, device_ids: &device_ids });
        }
        tracing::info!(user = %name, by = actor.map(|a| a.user_name.as_str()).unwrap_or("operator"), "account removed");
        Ok(())
    }

    // ---- devices and sessions ----

    /// Step 1 of login: check the device certificate and answer with a node-signed nonce.
    ///
    /// The presented certificate names the device; what is checked is the certificate the
    /// node holds for it, against the account's current root key. After a root rotation
    /// those differ, and the fresh one is handed back.
    pub async fn login_challenge(&self, certificate: &str) -> Result<LoginChallenge, AccountError> {
        let presented: DeviceCertificate = jws::unverified_payload(certificate)?;
        let mut conn = self.conn().await?;
        // A device whose account moved here still presents its certificate for the old
        // node's DID: it gets the one this node holds for it, for the DID here.
        let name = match self.name_in_did(&presented.iss) {
            Ok(name) => name,
            Err(e) => match store::name_by_alias(&mut conn, &presented.iss).await? {
                Some(name) => UserName::parse(&name)?,
                None => return Err(e),
            },
        };
        let user = store::user_by_name(&mut conn, name.as_str()).await?.ok_or(AccountError::Unauthorized)?;
        self.check_active(&mut conn, &user).await?;
        let device = match store::device(&mut conn, &presented.sub).await? {
            Some(d) if d.user_id == user.id && d.revoked_at.is_none() && d.sign_key == presented.sign_key => d,
            _ => return Err(AccountError::InvalidCertificate("this device is not registered, or was revoked".into())),
        };
        let root = Ed25519Public::from_multibase(&user.root_key)?;
        let cert = DeviceCertificate::verify(&device.certificate, &root)?;
        let nonce = random_token();
        let exp = now_ms() + self.settings.challenge_ttl_ms;
        store::insert_challenge(&mut conn, &nonce, CHALLENGE_PURPOSE_LOGIN, Some(&cert.sub), exp).await?;
        let claims = LoginChallengeClaims { iss: self.node.did().to_string(), aud: cert.sub, nonce, exp: exp / 1000 };
        let refreshed = (device.certificate != certificate).then_some(device.certificate);
        Ok(LoginChallenge { challenge: self.node.sign_jws(TYP_LOGIN_CHALLENGE, &claims)?, certificate: refreshed })
    }

    /// Step 2 of login: the device's signature over the nonce and the node's DID.
    pub async fn login(&self, response: &str) -> Result<Session, AccountError> {
        let unverified: LoginClaims = jws::unverified_payload(response)?;
        let mut conn = self.conn().await?;
        let device = store::device(&mut conn, &unverified.sub).await?.ok_or(AccountError::Unauthorized)?;
        let key = Ed25519Public::from_multibase(&device.sign_key)?;
        let claims: LoginClaims = jws::verify(response, &key, TYP_LOGIN)?;
        self.check_audience(&claims.aud)?;
        Self::check_fresh(claims.iat)?;
        let user = store::user_by_id(&mut conn, &device.user_id).await?.ok_or(AccountError::Unauthorized)?;
        let now = now_ms();
        if user.status != "active" || device.revoked_at.is_some() {
            return Err(AccountError::Unauthorized);
        }
        if device.cert_expires_at <= now {
            return Err(AccountError::CertificateExpired);
        }
        let alias = store::name_by_alias(&mut conn, &claims.iss).await?;
        if !self.is_user_did(&user.name, &claims.iss)? && alias.as_deref() != Some(user.name.as_str()) {
            return Err(AccountError::InvalidRequest("iss is not the device's account".into()));
        }
        if !store::take_challenge(&mut conn, &claims.nonce, CHALLENGE_PURPOSE_LOGIN, Some(&device.id), now).await? {
            return Err(AccountError::ChallengeInvalid);
        }
        let token = random_token();
        let expires_at = now + self.settings.session_ttl_ms;
        store::insert_session(&mut conn, &token_hash(&token), &user.id, &device.id, now, expires_at).await?;
        metrics::counter!("sichat_logins_total").increment(1);
        // The account's DID now: a wallet that still names the one from a URL the node left
        // learns where it is.
        let did = self.node.user_did(&user.name)?;
        let did_log_behind = !self.node.former().is_empty()
            && Self::webvh_did(&mut conn, &user.id)
                .await?
                .and_then(|d| sichat_core::webvh::WebvhDid::parse(&d).ok())
                .is_some_and(|d| d.web_did() != did);
        let did_log_stale = store::did_log_stale(&mut conn, &user.id).await?;
        let copy_suspected = match claims.seq {
            Some(seq) => store::note_login_seq(&mut conn, &device.id, seq).await?,
            None => false,
        };
        if copy_suspected {
            tracing::warn!(user = %user.name, device = %device.id, "two copies of one wallet sign in as this device");
        }
        let renew_before = now + RENEW_WITHIN_SECS * 1000;
        let renewal_due = store::certificate_ends_before(&mut conn, &user.id, renew_before).await?;
        let recovery_open = store::recovery_open(&mut conn, &user.id, now).await?;
        Ok(Session {
            token,
            expires_at,
            did: did.to_string(),
            device_id: device.id,
            public_url: Some(self.node.public_url().to_string()),
            did_log_behind,
            renewal_due,
            did_log_stale,
            copy_suspected,
            recovery_open,
        })
    }

    /// The device behind a bearer token, if its session, device and account are all live.
    pub async fn authenticate(&self, token: &str) -> Result<AuthDevice, AccountError> {
        let hash = token_hash(token);
        let found = store::session(&mut *self.read_conn().await?, &hash, now_ms()).await?;
        let (user_id, user_name, device_id) = found.ok_or(AccountError::Unauthorized)?;
        Ok(AuthDevice { user_id, user_name, device_id, token_hash: hash })
    }

    /// Where `device_id` of `user_id` stands: active, revoked, or gone with its account.
    pub async fn device_standing(&self, user_id: &str, device_id: &str) -> Result<Standing, AccountError> {
        let found = store::device_standing(&mut *self.read_conn().await?, user_id, device_id).await?;
        match found {
            None => Err(AccountError::NotFound(format!("no device {device_id} on this account"))),
            Some((status, _)) if status != "active" => Ok(Standing::AccountRemoved),
            Some((_, Some(_))) => Ok(Standing::DeviceRevoked),
            Some((_, None)) => Ok(Standing::Active),
        }
    }

    pub async fn logout(&self, me: &AuthDevice) -> Result<(), AccountError> {
        store::delete_session(&mut *self.conn().await?, &me.token_hash).await?;
        Ok(())
    }

    /// The user's Ed25519 issuing key, unsealed, with its verification method id
    /// (`<user did>#issuing-<id>`). For the issuer; never leaves the node.
    pub async fn issuing_key(&self, user_id: &str) -> Result<(String, Ed25519KeyPair), AccountError> {
        match self.issuing_key_for(user_id, "EdDSA").await? {
            (kid, KeyPair::Ed25519(key)) => Ok((kid, key)),
            _ => Err(AccountError::Internal("an EdDSA issuing key that is not Ed25519".into())),
        }
    }

    /// The public key of `kid` (`<one of the account's DIDs>#issuing-<id>`) when it names one
    /// of the account's issuing keys: to check that a credential is the account's own.
    pub async fn issuing_public_key(&self, user_id: &str, kid: &str) -> Result<Option<PublicKey>, AccountError> {
        let Some((did, fragment)) = kid.split_once('#') else { return Ok(None) };
        let Some(key_id) = fragment.strip_prefix("issuing-") else { return Ok(None) };
        let mut conn = self.conn().await?;
        let user = store::user_by_id(&mut conn, user_id).await?.ok_or(AccountError::Unauthorized)?;
        let ours = self.node.user_did(&user.name)?.to_string() == did
            || Self::webvh_did(&mut conn, user_id).await?.as_deref() == Some(did)
            || store::name_by_alias(&mut conn, did).await?.as_deref() == Some(user.name.as_str());
        if !ours {
            return Ok(None);
        }
        let keys = store::issuing_keys(&mut conn, user_id).await?;
        let Some((_, public)) = keys.iter().find(|(id, _)| id == key_id) else { return Ok(None) };
        Ok(Some(PublicKey::from_multibase(public)?))
    }

    /// The user's issuing key for a JWS `alg` (`EdDSA` or `ES256`). A P-256 key is made,
    /// sealed and listed in the DID document the first time it is needed.
    pub async fn issuing_key_for(&self, user_id: &str, alg: &str) -> Result<(String, KeyPair), AccountError> {
        let algorithm = match alg {
            "EdDSA" => "Ed25519",
            "ES256" => "P-256",
            other => return Err(AccountError::InvalidRequest(format!("unsupported signing algorithm {other}"))),
        };
        let mut conn = self.conn().await?;
        let user = store::user_by_id(&mut conn, user_id).await?.ok_or(AccountError::Unauthorized)?;
        // Credentials are issued under the portable did:webvh DID once the account has one.
        let issuer = match Self::webvh_did(&mut conn, user_id).await? {
            Some(did) => did,
            None => self.node.user_did(&user.name)?.to_string(),
        };
        let kid_for = |id: &str| -> Result<String, AccountError> { Ok(format!("{issuer}#issuing-{id}")) };
        if let Some((id, sealed)) = store::current_issuing_key(&mut conn, user_id, algorithm).await? {
            let secret = self.master.open(&sealed, &format!("acct_issuing_keys:{id}"))?;
            let key = match algorithm {
                "Ed25519" => KeyPair::Ed25519(Ed25519KeyPair::from_secret(&secret)?),
                _ => KeyPair::P256(P256KeyPair::from_secret(&secret)?),
            };
            return Ok((kid_for(&id)?, key));
        }
        if algorithm == "Ed25519" {
            return Err(AccountError::NotFound("this account has no issuing key".into()));
        }
        let key = P256KeyPair::generate();
        let id = new_id();
        let sealed = self.master.seal(&key.secret(), &format!("acct_issuing_keys:{id}"));
        store::insert_issuing_key(&mut conn, &id, user_id, algorithm, &key.public().to_multibase(), sealed, now_ms())
            .await?;
        tracing::info!(user = %user.name, "made a P-256 issuing key");
        Ok((kid_for(&id)?, KeyPair::P256(key)))
    }

    /// The signing key behind a verification method `kid` (`<user did>#device-<id>`) listed
    /// under `authentication` in an active user's DID document: the user id, the device id
    /// and the key. Revoked devices, removed users and expired certificates are refused.
    pub async fn authentication_key(&self, kid: &str) -> Result<(String, String, Ed25519Public), AccountError> {
        let (did, fragment) =
            kid.split_once('#').ok_or_else(|| AccountError::InvalidRequest("kid must be a DID URL with #".into()))?;
        let name = self.name_in_did(did)?;
        let device_id = fragment
            .strip_prefix("device-")
            .ok_or_else(|| AccountError::Forbidden(format!("{kid} is not a device key of {did}")))?;
        let doc = self.did_document(name.as_str()).await?;
        let key = doc
            .authentication_key(kid)
            .ok_or_else(|| AccountError::Forbidden(format!("{kid} is not listed under authentication in {did}")))?;
        let mut conn = self.conn().await?;
        let device = store::device(&mut conn, device_id).await?.ok_or(AccountError::Unauthorized)?;
        let user = store::user_by_name(&mut conn, name.as_str()).await?.ok_or(AccountError::Unauthorized)?;
        if device.user_id != user.id || device.revoked_at.is_some() || user.status != "active" {
            return Err(AccountError::Unauthorized);
        }
        if device.cert_expires_at <= now_ms() {
            return Err(AccountError::CertificateExpired);
        }
        Ok((user.id, device.id, key))
    }

    /// Housekeeping: drop expired challenges and sessions.
    pub async fn purge_expired(&self) -> Result<u64, AccountError> {
        Ok(store::purge_expired(&mut *self.conn().await?, now_ms()).await?)
    }

    pub fn user_did(&self, name: &str) -> Result<Did, AccountError> {
        Ok(self.node.user_did(name)?)
    }

    /// Whether `did` is the `did:web` DID of user `name`, now or at a URL the node left.
    fn is_user_did(&self, name: &str, did: &str) -> Result<bool, AccountError> {
        if self.node.user_did(name)?.as_str() == did {
            return Ok(true);
        }
        for f in self.node.former() {
            if f.user_did(name)?.as_str() == did {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// An invite code: 128 random bits in base58, easy to read out and paste.
fn bs58_code() -> String {
    sichat_core::keys::base58(&random_bytes::<16>())
}

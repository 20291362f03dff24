//! The wire protocol between a wallet and its node: signed requests, device certificates,
//! the login handshake, and the JSON bodies of the HTTP API.
//!
//! Both `sichatd` and the `sichat` wallet use these types, so the two cannot drift apart.
//! Times inside JWS payloads are unix seconds (`iat`, `exp`); times in API bodies are unix
//! milliseconds.

use crate::AccountError;
use serde::{Deserialize, Serialize};
use sichat_core::did::Did;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, Ed25519Public, X25519Public};
use std::fmt;

mod history;
mod moves;
mod recovery;
pub use history::*;
pub use moves::*;
pub use recovery::*;

/// `typ` of each JWS, so none can be replayed as another.
pub const TYP_DEVICE_CERT: &str = "sichat-device-cert+jwt";
pub const TYP_REGISTER: &str = "sichat-register+jwt";
pub const TYP_ROOT_OP: &str = "sichat-root-op+jwt";
pub const TYP_LOGIN_CHALLENGE: &str = "sichat-login-challenge+jwt";
pub const TYP_LOGIN: &str = "sichat-login+jwt";
pub const TYP_ROOT_ROTATION: &str = "sichat-root-rotation+jwt";
/// The account's issuing keys, sealed to the root-key wallet (`sichat export`).
pub const TYP_ISSUING_KEYS: &str = "sichat-issuing-keys+jwe";
/// Most rotations one `catch_up` carries.
pub const MAX_ROTATIONS: usize = 64;

/// Clock skew tolerated on `iat`.
pub const MAX_SKEW_SECS: i64 = 300;
/// Longest a device certificate may run.
pub const MAX_CERT_LIFETIME_SECS: i64 = 3 * 366 * 24 * 3600;

pub fn now_secs() -> i64 {
    sichat_core::ids::now_ms() / 1000
}

/// A user name: 2–32 of `a-z 0-9 -`, starting with a letter, not ending with `-`.
/// It becomes a `did:web` path segment, so nothing needs escaping.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

const RESERVED_NAMES: &[&str] = &["admin", "api", "node", "root", "users", "well-known", "did"];

impl UserName {
    pub fn parse(s: &str) -> Result<Self, AccountError> {
        let bad = |why: &str| AccountError::InvalidName(format!("{s:?} {why}"));
        if !(2..=32).contains(&s.len()) {
            return Err(bad("must be 2 to 32 characters long"));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("must start with a lowercase letter"));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') || s.ends_with('-') {
            return Err(bad("may only hold a-z, 0-9 and '-', and may not end with '-'"));
        }
        if RESERVED_NAMES.contains(&s) {
            return Err(bad("is reserved"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = AccountError;
    fn try_from(s: String) -> Result<Self, AccountError> {
        Self::parse(&s)
    }
}

impl From<UserName> for String {
    fn from(n: UserName) -> String {
        n.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

/// A device certificate: the root key's JWS over a device's keys and an expiry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCertificate {
    /// The user's DID.
    pub iss: String,
    /// The device id.
    pub sub: String,
    /// A name for people ("laptop").
    pub name: String,
    /// Ed25519 signing key, multibase.
    pub sign_key: String,
    /// X25519 key agreement key, multibase.
    pub agree_key: String,
    pub iat: i64,
    pub exp: i64,
}

impl DeviceCertificate {
    /// Bless a device with the root key.
    pub fn issue(
        root: &Ed25519KeyPair,
        user_did: &Did,
        device_id: &str,
        name: &str,
        sign_key: &Ed25519Public,
        agree_key: &X25519Public,
        lifetime_secs: i64,
    ) -> Result<String, AccountError> {
        let now = now_secs();
        let cert = Self {
            iss: user_did.to_string(),
            sub: device_id.to_owned(),
            name: name.to_owned(),
            sign_key: sign_key.to_multibase(),
            agree_key: agree_key.to_multibase(),
            iat: now,
            exp: now + lifetime_secs,
        };
        Ok(jws::sign(root, TYP_DEVICE_CERT, None, &cert)?)
    }

    /// Check a certificate's signature by `root`, its expiry and its keys.
    pub fn verify(token: &str, root: &Ed25519Public) -> Result<Self, AccountError> {
        let cert: Self = jws::verify(token, root, TYP_DEVICE_CERT).map_err(|e| match e {
            sichat_core::CoreError::BadSignature => {
                AccountError::InvalidCertificate("not signed by the account's root key".into())
            }
            other => AccountError::InvalidCertificate(other.to_string()),
        })?;
        let now = now_secs();
        if cert.exp <= now {
            return Err(AccountError::CertificateExpired);
        }
        if cert.iat > now + MAX_SKEW_SECS || cert.exp - cert.iat > MAX_CERT_LIFETIME_SECS {
            return Err(AccountError::InvalidCertificate(
                "iat is in the future or the lifetime exceeds 3 years".into(),
            ));
        }
        if cert.sub.is_empty()
            || cert.sub.len() > 64
            || !cert.sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(AccountError::InvalidCertificate("sub must be 1-64 of [A-Za-z0-9-]".into()));
        }
        if cert.name.is_empty() || cert.name.len() > 64 {
            return Err(AccountError::InvalidCertificate("name must be 1-64 characters".into()));
        }
        Ed25519Public::from_multibase(&cert.sign_key).map_err(|e| AccountError::InvalidCertificate(e.to_string()))?;
        X25519Public::from_multibase(&cert.agree_key).map_err(|e| AccountError::InvalidCertificate(e.to_string()))?;
        Ok(cert)
    }
}

/// Payload of a registration request, signed by the new root key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationClaims {
    /// The node's DID.
    pub aud: String,
    pub challenge: String,
    pub invite: String,
    pub name: String,
    pub root_key: String,
    pub device_certificate: String,
    pub iat: i64,
    /// The did:key this account started as, for a wallet that worked alone and now joins
    /// (`sichat join`): its key must be `root_key`, whose signature on this request is the
    /// proof. The account's documents name it in `alsoKnownAs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_did: Option<String>,
}

/// What a root-key-signed request asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RootOperation {
    AddDevice {
        certificate: String,
    },
    /// Revoke a device. Revoking the account's last active device leaves no device to sign
    /// in with, receive messages or approve sign-ins (only the root key can add one back), so
    /// the node refuses it unless `last_device` says the wallet means it.
    RevokeDevice {
        device_id: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        last_device: bool,
    },
    /// Renew device certificates: each one a fresh certificate, signed by the root key, for
    /// an active device of the account with the keys the node holds for it. The node hands
    /// each device its new certificate at its next sign-in, even when the old one expired.
    RenewDevices {
        certificates: Vec<String>,
    },
    /// Name a recovery key (multibase Ed25519), kept apart from every device: it can sign
    /// one operation, [`RootOperation::Recover`]. Replaces the one named before; in a
    /// did:webvh log it becomes an update key beside the root key. With `guardians`, the
    /// key's secret was split among those friends (social recovery, see [`recovery`]);
    /// without, no friend can approve a recovery any more.
    SetRecoveryKey {
        recovery_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guardians: Option<Guardians>,
        /// The X25519 key (multibase) the account's history is also sealed to, derived from
        /// the recovery key's secret (see [`history`]): a recovered wallet reads it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_key: Option<String>,
    },
    /// Signed by the recovery key (JWS `kid` `<did>#recovery`), not the root: the root key
    /// was lost. A new root key, and the devices to keep re-blessed by it (usually the one
    /// device making the request); every other device is revoked.
    Recover {
        new_root_key: String,
        certificates: Vec<String>,
    },
    /// Whether the account's devices may revoke each other (a phone cutting off a lost
    /// laptop at once, `POST /api/v1/devices/{id}/revoke`). Off by default.
    SetDevicePolicy {
        devices_may_revoke: bool,
    },
    /// Make a device another device revoked active again, with a new certificate for the
    /// keys it had: the root key undoes what a device did.
    ReinstateDevice {
        certificate: String,
    },
    /// Only the log entry: it brings the did:webvh log up to the account's document after a
    /// change no root key signed (a device revoked by another device).
    SyncDidLog,
    /// The new root key, and every device to keep, re-blessed by the new key.
    RotateRoot {
        new_root_key: String,
        certificates: Vec<String>,
    },
    /// Bring a node restored from an older backup up to the wallet's root key: the chain of
    /// [`RootRotation`]s the wallet kept (each signed by the key before), from the key the node
    /// holds to the one signing this request, and every device to keep, re-blessed by it.
    /// Devices the node knows and the request does not name are revoked, as by `rotate_root`.
    /// For a `did:webvh` account, `did_log` carries the log entries the node lacks (the
    /// wallet kept the log), and the request the log's next entry, as for any root operation.
    CatchUp {
        rotations: Vec<String>,
        certificates: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        did_log: Vec<String>,
    },
    /// Give the account a portable `did:webvh` DID: `entry` is the first line of its log,
    /// signed by the root key, whose document is the draft the node handed out
    /// (`POST /api/v1/did/draft`).
    UpgradeDid {
        entry: String,
    },
    /// Name a standby node (`Some`) or end it (`None`): its DIDComm endpoint follows this
    /// node's in the account's DID documents, and this node takes what it hands over.
    SetStandby {
        standby: Option<StandbyNode>,
    },
    /// Hand the account's issuing keys to the root-key wallet, sealed to `recipient_key` (an
    /// X25519 JWK the wallet just made), so that it can keep re-signing the status lists of
    /// what it issued with no node (`sichat export`). Sent to `POST /api/v1/account/issuing-keys`.
    ExportIssuingKeys {
        recipient_key: serde_json::Value,
    },
    /// Export the account, sealed to the new node's `recipient_key` (an X25519 JWK), for the
    /// move named by `ticket` to the node at `to` (see [`moves`]).
    MoveOut {
        to: String,
        ticket: String,
        recipient_key: serde_json::Value,
    },
    /// The move is done: the account now lives at `did` on the node at `to`.
    /// `did_log_entry` is the log entry that moved it.
    MoveDone {
        to: String,
        did: String,
    },
    /// Cancel the move to the node at `to` while it is in flight (before `move_done`): the
    /// account stays here, and works as before at once.
    MoveCancel {
        to: String,
    },
    /// The node changed its public URL: the account's `did:webvh` follows it to `did` (same
    /// SCID, the node's new host). `did_log_entry` is the entry that moves it, over the
    /// node's draft (`POST /api/v1/did/rehost-draft`).
    FollowHost {
        did: String,
    },
}

/// A root key's signed word that `next` took its place (`rotate_root`): the wallet keeps
/// each one, so a node restored from a backup older than the rotation can follow it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRotation {
    /// The user's DID.
    pub iss: String,
    /// The key that signs this (multibase).
    pub prev: String,
    pub next: String,
    pub iat: i64,
}

/// Payload of a root-key-signed request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootOpClaims {
    /// The user's DID.
    pub iss: String,
    pub aud: String,
    pub challenge: String,
    pub iat: i64,
    #[serde(flatten)]
    pub op: RootOperation,
    /// For an account with a `did:webvh` log, every operation that changes its document
    /// carries the log's next entry, signed by the root key, whose document is the
    /// account's document after the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did_log_entry: Option<String>,
}

/// The node's signed login challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginChallengeClaims {
    /// The node's DID.
    pub iss: String,
    /// The device id.
    pub aud: String,
    pub nonce: String,
    pub exp: i64,
}

/// The device's answer, bound to the nonce and to the node's DID.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginClaims {
    /// The user's DID.
    pub iss: String,
    /// The device id.
    pub sub: String,
    /// The node's DID.
    pub aud: String,
    pub nonce: String,
    pub iat: i64,
    /// The wallet's sign-in number for this device: each copy of a wallet counts on its own,
    /// so a number the node saw already means two copies sign in as one device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

// ---- HTTP bodies ----

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenge {
    pub challenge: String,
    /// The node's DID: the `aud` of the signed request.
    pub audience: String,
    pub expires_at: i64,
}

/// A body carrying one compact JWS.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    pub request: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub did: String,
    pub node_did: String,
    pub did_document_url: String,
    /// How many accounts this user's invites may hold in all.
    pub quota: i64,
    /// What is left of it.
    pub quota_available: i64,
    /// The user who invited this one; `None` when the node did.
    pub invited_by: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginChallengeRequest {
    pub certificate: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginChallenge {
    /// A JWS by the node key over [`LoginChallengeClaims`].
    pub challenge: String,
    /// The device's current certificate, when it differs from the one presented (the
    /// root key was rotated and the device re-blessed). The wallet should keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// A JWS by the device key over [`LoginClaims`].
    pub response: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub token: String,
    pub expires_at: i64,
    /// The account's `did:web` DID now (it changes when the node changes its public URL).
    pub did: String,
    pub device_id: String,
    /// The node's public URL now: a wallet that reached it at an older one follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The account's `did:webvh` is still at a host the node left: the root key should sign
    /// `follow_host` (`POST /api/v1/did/rehost-draft`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub did_log_behind: bool,
    /// An active device's certificate ends within [`RENEW_WITHIN_SECS`]: the wallet that holds
    /// the root key should renew them (`renew_devices`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renewal_due: bool,
    /// The account's did:webvh log lags its document (a device revoked another): the wallet
    /// that holds the root key should sign `sync_did_log`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub did_log_stale: bool,
    /// This sign-in's `seq` was seen before: two copies of one wallet are in use as this
    /// device, splitting its messages between them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy_suspected: bool,
    /// A social recovery of this account is open (`GET /api/v1/recovery/requests`): if the
    /// user did not ask for it, a device should cancel it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovery_open: bool,
}

/// Device certificates are renewed when they have this long left (30 days).
pub const RENEW_WITHIN_SECS: i64 = 30 * 24 * 3600;

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("did", &self.did).field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    pub quota: i64,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub expires_in_hours: Option<i64>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct InviteCreated {
    pub id: String,
    /// Shown once; the node keeps only its hash.
    pub code: String,
    pub quota: i64,
    pub expires_at: i64,
}

impl fmt::Debug for InviteCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteCreated").field("id", &self.id).field("quota", &self.quota).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Invite {
    pub id: String,
    pub quota: i64,
    pub label: Option<String>,
    /// `open`, `used`, `expired` or `revoked`.
    pub status: String,
    pub used_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub sign_key: String,
    pub agree_key: String,
    pub created_at: i64,
    pub cert_expires_at: i64,
    /// For a device another device revoked (`GET /api/v1/devices?revoked=true`): when, and
    /// by which device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserSummary {
    pub name: String,
    pub did: String,
    pub status: String,
    pub quota: i64,
    pub invited_by: Option<String>,
    pub devices: i64,
    pub created_at: i64,
}

// ---- signing in to sites with the wallet ----

/// `typ` of a wallet's approval of a sign-in on its node's login page.
pub const TYP_LOGIN_APPROVAL: &str = "sichat-login-approval+jwt";

/// A device's approval of one sign-in: signed by a device key listed under
/// `authentication` in the user's DID document (the JWS `kid`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginApprovalClaims {
    /// The user's DID.
    pub iss: String,
    /// The OpenID Provider's issuer: the node's public URL.
    pub aud: String,
    /// The short code the sign-in page shows.
    pub code: String,
    /// The node's challenge for that code.
    pub challenge: String,
    pub iat: i64,
    pub exp: i64,
}

/// A sign-in waiting for a wallet's approval, as the wallet shows it before signing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingApproval {
    pub code: String,
    pub challenge: String,
    /// The issuer (the node's public URL): the approval's `aud`.
    pub node: String,
    /// The site asking, by its registered name; `None` for the node's own account page.
    pub site: Option<String>,
    /// Where the site will get the answer: the host of its redirect URI.
    pub redirect_host: Option<String>,
    pub scope: Option<String>,
    pub expires_at: i64,
}

/// One issuing key, as `POST /api/v1/account/issuing-keys` hands it to the root-key wallet.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedIssuingKey {
    /// The key's id: its verification method is `#issuing-<id>`.
    pub id: String,
    /// `Ed25519` or `P-256`.
    pub algorithm: String,
    pub public_key: String,
    /// The secret key, base64url.
    pub secret: String,
    pub created_at: i64,
}

impl std::fmt::Debug for ExportedIssuingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedIssuingKey").field("id", &self.id).field("public_key", &self.public_key).finish()
    }
}

impl Drop for ExportedIssuingKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// The answer to `POST /api/v1/account/issuing-keys`: a JWE (`TYP_ISSUING_KEYS`) of the
/// JSON array of [`ExportedIssuingKey`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedIssuingKeys {
    pub sealed: String,
}

/// A standby node, as `set_standby` names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyNode {
    /// The standby node's DID (`did:web`): its node key signs the handovers.
    pub node_did: String,
    /// Its DIDComm endpoint, listed after this node's.
    pub endpoint: String,
    /// Its did:webvh watcher, which the log's `watchers` parameter names (same origin as
    /// `endpoint`): it mirrors the log and the status lists for verifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher: Option<String>,
}

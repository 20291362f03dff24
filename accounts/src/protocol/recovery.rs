//! Social recovery: the recovery key's secret split among friends (k of n, Shamir's scheme),
//! each share sent to a friend's wallet end to end encrypted. A user who lost the root key
//! opens a request on their node with a fresh X25519 key; each friend who approves seals
//! their share to that key and signs the approval with a key of their DID. With k shares the
//! new wallet rebuilds the recovery key and signs `recover`. The node never sees a share in
//! the clear; it checks and keeps every approval, and tells the user's devices.

use crate::AccountError;
use serde::{Deserialize, Serialize};
use sichat_core::did::Did;
use sichat_core::jws;

/// `typ` of a friend's approval of a recovery request.
pub const TYP_RECOVERY_APPROVAL: &str = "sichat-recovery-approval+jwt";
/// `typ` of the JWE that carries a share to the recovering wallet.
pub const TYP_RECOVERY_SHARE: &str = "sichat-recovery-share+jwe";
/// The DIDComm message type that hands a friend their share; its body is [`ShareMessage`].
pub const SHARE_MESSAGE_TYPE: &str = "https://sichat.dev/recovery/1.0/share";
/// Most friends one account names.
pub const MAX_GUARDIANS: usize = 16;
/// How long a recovery request stays open.
pub const RECOVERY_REQUEST_TTL_SECS: i64 = 7 * 24 * 3600;
/// Most requests open at once per account: when full, the oldest without approvals goes.
pub const MAX_OPEN_REQUESTS: usize = 5;
/// The longest an approval JWS may live (`exp - iat`).
pub const MAX_APPROVAL_LIFETIME_SECS: i64 = 600;
/// Largest approval the node takes (a share JWE and a signature).
pub const MAX_APPROVAL_BYTES: usize = 8 * 1024;

/// The friends who can rebuild the recovery key together, and how many must.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardians {
    pub threshold: u8,
    /// Their DIDs.
    pub dids: Vec<String>,
}

impl Guardians {
    /// 2 ≤ k ≤ n ≤ [`MAX_GUARDIANS`], each a distinct DID other than `own_did`. A threshold
    /// of one would let any single friend take the account.
    pub fn check(&self, own_did: &str) -> Result<(), AccountError> {
        let bad = |why: String| AccountError::InvalidRequest(format!("recovery friends: {why}"));
        let n = self.dids.len();
        if !(2..=MAX_GUARDIANS).contains(&n) {
            return Err(bad(format!("name 2 to {MAX_GUARDIANS} friends, not {n}")));
        }
        if self.threshold < 2 || usize::from(self.threshold) > n {
            return Err(bad(format!(
                "the threshold must be at least 2 (one friend alone could take your account) and at most {n}, not {}",
                self.threshold
            )));
        }
        for (i, did) in self.dids.iter().enumerate() {
            Did::parse(did).map_err(|e| bad(format!("{did:?} is not a DID: {e}")))?;
            if did == own_did {
                return Err(bad("you cannot be your own recovery friend".into()));
            }
            if self.dids[..i].contains(did) {
                return Err(bad(format!("{did} is named twice")));
            }
        }
        Ok(())
    }
}

/// The body of the DIDComm message that gives a friend their share.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareMessage {
    /// Whose recovery key this is a share of.
    pub did: String,
    /// The recovery key (multibase) the shares rebuild: a newer one makes this share void.
    pub recovery_key: String,
    pub threshold: u8,
    pub total: u8,
    /// The share (Shamir over GF(256): its x coordinate, then the secret's length of y
    /// bytes), base64url.
    pub share: String,
}

/// `POST /api/v1/recovery/requests`: open a recovery of `did`, with the key the friends
/// seal their shares to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRecovery {
    pub did: String,
    /// X25519, multibase.
    pub key: String,
}

/// A recovery request as the node shows it (to anyone holding its id: the shares in it are
/// sealed to the request's key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecoveryRequest {
    pub id: String,
    /// The account's DID now.
    pub did: String,
    pub name: String,
    /// The X25519 key (multibase) shares are sealed to.
    pub key: String,
    /// The recovery key (multibase) k shares rebuild.
    pub recovery_key: String,
    pub threshold: u8,
    pub guardians: Vec<String>,
    /// `open`, `cancelled` (by a device of the account), `done` (recovered), `expired` or
    /// `void` (the recovery key changed).
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approvals: Vec<RecoveryApproval>,
}

/// One friend's approval, as signed and kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecoveryApproval {
    pub guardian: String,
    /// The friend's JWS over [`RecoveryApprovalClaims`].
    pub approval: String,
    pub approved_at: i64,
}

/// `POST /api/v1/recovery/requests/{id}/approvals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostApproval {
    pub approval: String,
}

/// What a friend signs, with a key under `authentication` in their DID document (the JWS
/// `kid`): they approve this request, for this account, on this node, with this key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryApprovalClaims {
    /// The friend's DID.
    pub iss: String,
    /// The account being recovered.
    pub sub: String,
    /// The node's DID.
    pub aud: String,
    /// The request's id.
    pub request: String,
    /// The request's key, which `share` is sealed to.
    pub key: String,
    /// The friend's share, a compact JWE ([`TYP_RECOVERY_SHARE`]) to `key`.
    pub share: String,
    pub iat: i64,
    pub exp: i64,
}

impl RecoveryApprovalClaims {
    /// An approval's claims and `kid`, before its signature is checked: at most
    /// [`MAX_APPROVAL_BYTES`], a compact JWS whose `iss` is a DID and that names its key.
    pub fn unverified(token: &str) -> Result<(Self, String), AccountError> {
        if token.len() > MAX_APPROVAL_BYTES {
            return Err(AccountError::InvalidRequest(format!("an approval is at most {MAX_APPROVAL_BYTES} bytes")));
        }
        let claims: Self = jws::unverified_payload(token)?;
        let kid = jws::header_of(token)?
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AccountError::MalformedJws("the approval names no key (kid)".into()))?;
        Did::parse(&claims.iss).map_err(|e| AccountError::InvalidRequest(format!("iss: {e}")))?;
        Ok((claims, kid))
    }

    /// Not expired at `now` (unix seconds), not from the future, and short-lived.
    pub fn check_times(&self, now: i64) -> Result<(), AccountError> {
        let skew = crate::protocol::MAX_SKEW_SECS;
        if self.exp <= now || self.iat > now + skew || self.exp - self.iat > MAX_APPROVAL_LIFETIME_SECS {
            return Err(AccountError::InvalidRequest(
                "the approval has expired, is from the future, or lives longer than 10 minutes".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guardians(k: u8, dids: &[&str]) -> Guardians {
        Guardians { threshold: k, dids: dids.iter().map(|d| d.to_string()).collect() }
    }

    #[test]
    fn guardians_are_checked() {
        let me = "did:web:node.example:users:alice";
        let (b, c) = ("did:web:node.example:users:bob", "did:web:node.example:users:carol");
        assert!(guardians(2, &[b, c]).check(me).is_ok());
        assert!(guardians(1, &[b, c]).check(me).is_err(), "one friend alone");
        assert!(guardians(3, &[b, c]).check(me).is_err(), "more than there are");
        assert!(guardians(2, &[b]).check(me).is_err(), "one friend");
        assert!(guardians(2, &[b, b]).check(me).is_err(), "twice");
        assert!(guardians(2, &[b, me]).check(me).is_err(), "oneself");
        assert!(guardians(2, &[b, "not a did"]).check(me).is_err());
        let many: Vec<String> = (0..17).map(|i| format!("did:web:n.example:users:u{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(guardians(2, &many).check(me).is_err(), "at most 16");
    }

    #[test]
    fn approvals_must_be_short_lived_and_fresh() {
        let claims = |iat, exp| RecoveryApprovalClaims {
            iss: "did:web:x".into(),
            sub: "did:web:y".into(),
            aud: "did:web:n".into(),
            request: "r".into(),
            key: "k".into(),
            share: "s".into(),
            iat,
            exp,
        };
        assert!(claims(1000, 1300).check_times(1000).is_ok());
        assert!(claims(1000, 1300).check_times(1300).is_err(), "expired");
        assert!(claims(2000, 2300).check_times(1000).is_err(), "from the future");
        assert!(claims(1000, 1000 + 3600).check_times(1000).is_err(), "too long");
        assert!(RecoveryApprovalClaims::unverified("a.b.c").is_err());
        assert!(RecoveryApprovalClaims::unverified(&"a".repeat(MAX_APPROVAL_BYTES + 1)).is_err());
    }
}

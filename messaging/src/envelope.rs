//! Packing and unpacking DIDComm messages.
//!
//! We send `authcrypt(sign(plaintext))`: signed by the sender's device key (EdDSA) so the
//! recipient's server and devices can prove who wrote it, and encrypted to every
//! `keyAgreement` key of the recipient. Anoncrypt is for senders who stay anonymous to
//! everyone but the recipient (usually over a signature) and for `forward` wrappers.
//!
//! [`unpack`] accepts the layerings DIDComm Messaging v2.1 §2.3 allows, outermost first:
//! at most one anoncrypt, then at most one authcrypt, then at most one signature, then the
//! plaintext. It checks:
//! - the input's size, before parsing anything;
//! - that one of the JWE's recipients is a key we hold, and that it decrypts (tag first);
//! - for authcrypt, that `skid` is listed under `keyAgreement` in its DID's document and
//!   that this DID is the message's `from`;
//! - for a signature, that `kid` is listed under `authentication` in its DID's document,
//!   that this DID is the message's `from` (checked before resolving anything), and that
//!   the signature verifies;
//! - that the DID of every key that opened a layer is in the message's `to` (so a signed
//!   message for someone else cannot be re-encrypted to us and pass as ours);
//! - that an unprotected plaintext is refused unless allowed.

use serde::Deserialize;
use serde_json::Value;
use sichat_core::did::Did;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::resolver::{Keys, Relationship, ResolveError, Resolver};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::jwe::{self, Encrypted, KeyAlg};
use crate::jws::{self, Signed};
use crate::message::{did_of, Message};
use crate::EnvelopeError;

pub use crate::jwe::{AgreementKey, RecipientKey};

/// The largest envelope [`unpack`] reads unless told otherwise: 1 MiB.
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;

/// Our Ed25519 signing key, with its DID URL (listed under `authentication`).
#[derive(Clone, Copy, Debug)]
pub struct SigningKey<'a> {
    pub kid: &'a str,
    pub key: &'a Ed25519KeyPair,
}

impl RecipientKey {
    /// Every `keyAgreement` key of a resolved DID: DIDComm encrypts to all of them, so
    /// every device of the recipient can read the message.
    pub fn all_of(keys: &Keys) -> Vec<RecipientKey> {
        keys.agreement.iter().map(|m| RecipientKey { kid: m.id.clone(), key: m.key }).collect()
    }
}

/// Finds the keys of a DID: the sender's, while unpacking. The server passes core's
/// [`Resolver`]; tests and tools can pass a `HashMap` of DID → [`Keys`].
pub trait KeyResolver: Sync {
    fn resolve(&self, did: &str) -> impl Future<Output = Result<Arc<Keys>, ResolveError>> + Send;
}

impl KeyResolver for Resolver {
    fn resolve(&self, did: &str) -> impl Future<Output = Result<Arc<Keys>, ResolveError>> + Send {
        Resolver::resolve(self, did)
    }
}

impl KeyResolver for HashMap<String, Arc<Keys>> {
    fn resolve(&self, did: &str) -> impl Future<Output = Result<Arc<Keys>, ResolveError>> + Send {
        std::future::ready(
            self.get(did)
                .cloned()
                .ok_or_else(|| ResolveError::Unresolvable { did: did.into(), why: "not among the known DIDs".into() }),
        )
    }
}

/// A signed message (`application/didcomm-signed+json`), not encrypted: readable by
/// anyone who sees it. `from` must be the signer's DID.
pub fn pack_signed(msg: &Message, signer: &SigningKey<'_>) -> Result<String, EnvelopeError> {
    check_sender(msg, signer.kid, "signing")?;
    Ok(jws::sign(&msg.to_json_bytes()?, signer.kid, signer.key))
}

/// Authcrypt `msg` from `sender` to every key in `to`, signed first by `signer` if given
/// (as Sichat sends). `from` must be the DID of both keys, and each recipient key's DID
/// must be in `to`.
pub fn pack_authcrypt(
    msg: &Message,
    sender: &AgreementKey,
    signer: Option<&SigningKey<'_>>,
    to: &[RecipientKey],
) -> Result<String, EnvelopeError> {
    check_sender(msg, sender.kid(), "key agreement")?;
    check_recipients(msg, to)?;
    let payload = inner_payload(msg, signer)?;
    jwe::encrypt(&payload, Some(sender), to)
}

/// Anoncrypt `msg` to every key in `to`, signed first by `signer` if given. Without a
/// signature the recipient cannot tell who sent it, whatever `from` says.
pub fn pack_anoncrypt(
    msg: &Message,
    signer: Option<&SigningKey<'_>>,
    to: &[RecipientKey],
) -> Result<String, EnvelopeError> {
    check_recipients(msg, to)?;
    let payload = inner_payload(msg, signer)?;
    jwe::encrypt(&payload, None, to)
}

fn inner_payload(msg: &Message, signer: Option<&SigningKey<'_>>) -> Result<Vec<u8>, EnvelopeError> {
    match signer {
        Some(s) => pack_signed(msg, s).map(String::into_bytes),
        None => msg.to_json_bytes(),
    }
}

fn check_sender(msg: &Message, kid: &str, what: &str) -> Result<(), EnvelopeError> {
    let did = did_of(kid).ok_or_else(|| EnvelopeError::InvalidPack(format!("{kid} is not a DID URL")))?;
    match &msg.from {
        Some(from) if *from == did => Ok(()),
        Some(from) => Err(EnvelopeError::SenderMismatch(format!("the {what} key {kid} is not of `from` {from}"))),
        None => Err(EnvelopeError::SenderMismatch(format!("the message has no `from` for the {what} key {kid}"))),
    }
}

fn check_recipients(msg: &Message, to: &[RecipientKey]) -> Result<(), EnvelopeError> {
    for r in to {
        let did = did_of(&r.kid).ok_or_else(|| EnvelopeError::InvalidPack(format!("{} is not a DID URL", r.kid)))?;
        if !msg.to.contains(&did) {
            return Err(EnvelopeError::RecipientNotInTo { recipient: did.to_string() });
        }
    }
    Ok(())
}

/// Limits and policy for [`unpack`].
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Larger input is refused before it is parsed.
    pub max_size: usize,
    /// Accept a message with no encryption and no signature (only over a channel that
    /// already authenticates both ends).
    pub allow_plaintext: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self { max_size: DEFAULT_MAX_SIZE, allow_plaintext: false }
    }
}

/// An unpacked message and what its envelope proved.
#[derive(Clone, Debug)]
pub struct Unpacked {
    pub message: Message,
    /// Our key that opened the outermost encryption layer.
    pub recipient_kid: Option<String>,
    /// The sender's key agreement key (`skid`) when authcrypted, checked against `from`.
    pub sender_kid: Option<String>,
    /// The signer's key when signed, checked against `from`.
    pub signer_kid: Option<String>,
    pub anoncrypted: bool,
}

impl Unpacked {
    pub fn authcrypted(&self) -> bool {
        self.sender_kid.is_some()
    }

    pub fn signed(&self) -> bool {
        self.signer_kid.is_some()
    }

    /// `from`, when the envelope proved it (authcrypt or signature); `None` otherwise, even
    /// if the message names a sender.
    pub fn authenticated_sender(&self) -> Option<&Did> {
        if self.authcrypted() || self.signed() {
            self.message.from.as_ref()
        } else {
            None
        }
    }
}

enum Layer {
    Encrypted,
    Signed,
    Plain,
}

impl Layer {
    fn of(value: &Value) -> Layer {
        if value.get("ciphertext").is_some() {
            Layer::Encrypted
        } else if value.get("signatures").is_some() || value.get("signature").is_some() {
            Layer::Signed
        } else {
            Layer::Plain
        }
    }
}

pub(crate) fn parse_object(bytes: &[u8]) -> Result<Value, EnvelopeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(EnvelopeError::NotJson("expected a JSON object".into()));
    }
    Ok(value)
}

pub(crate) fn check_size(input: &[u8], opts: &UnpackOptions) -> Result<(), EnvelopeError> {
    if input.len() > opts.max_size {
        return Err(EnvelopeError::TooLarge { size: input.len(), limit: opts.max_size });
    }
    Ok(())
}

#[derive(Deserialize)]
struct FromOnly {
    from: Option<String>,
}

/// Open a packed message addressed to one of `ours`, resolving the sender's keys with
/// `resolver`. See the module documentation for every check.
pub async fn unpack<R: KeyResolver + ?Sized>(
    input: &[u8],
    ours: &[AgreementKey],
    resolver: &R,
    opts: &UnpackOptions,
) -> Result<Unpacked, EnvelopeError> {
    check_size(input, opts)?;
    let mut value = parse_object(input)?;
    let mut anoncrypted = false;
    let mut sender_kid: Option<String> = None;
    let mut signer_kid: Option<String> = None;
    let mut recipient_kids: Vec<String> = Vec::new();
    let message = loop {
        match Layer::of(&value) {
            Layer::Encrypted => {
                let jwe = Encrypted::parse(value)?;
                let (kid, plaintext) = match jwe.alg() {
                    KeyAlg::Anoncrypt => {
                        if anoncrypted || sender_kid.is_some() || signer_kid.is_some() {
                            return Err(EnvelopeError::BadLayering("anoncrypt inside another layer".into()));
                        }
                        anoncrypted = true;
                        jwe.decrypt_anon(ours)?
                    }
                    KeyAlg::Authcrypt => {
                        if sender_kid.is_some() || signer_kid.is_some() {
                            return Err(EnvelopeError::BadLayering("authcrypt inside authcrypt or a signature".into()));
                        }
                        let skid = jwe.sender_kid().unwrap_or_default().to_owned();
                        let did = did_of(&skid)
                            .ok_or_else(|| EnvelopeError::MalformedJwe(format!("`skid` {skid:?} is not a DID URL")))?;
                        // Only our keys can open it: spare the resolver a message that is not ours.
                        if !jwe.recipient_kids().any(|k| ours.iter().any(|o| o.kid() == k)) {
                            return Err(EnvelopeError::NotForUs {
                                kids: jwe.recipient_kids().map(String::from).collect(),
                            });
                        }
                        let key = resolver.resolve(did.as_str()).await?.agreement_key(&skid)?;
                        let opened = jwe.decrypt_auth(ours, &key)?;
                        sender_kid = Some(skid);
                        opened
                    }
                };
                recipient_kids.push(kid);
                value = parse_object(&plaintext)?;
            }
            Layer::Signed => {
                if signer_kid.is_some() {
                    return Err(EnvelopeError::BadLayering("a signature inside a signature".into()));
                }
                let signed = Signed::parse(value)?;
                let kid = signed.kid().to_owned();
                let did = did_of(&kid)
                    .ok_or_else(|| EnvelopeError::MalformedJws(format!("`kid` {kid:?} is not a DID URL")))?;
                // Whom does it claim to be from? Read before verifying, so that a signature
                // by anyone but `from` is refused without resolving the signer.
                let claimed = serde_json::from_slice::<FromOnly>(signed.unverified_payload())
                    .map_err(|e| EnvelopeError::MalformedMessage(e.to_string()))?
                    .from;
                if claimed.as_deref() != Some(did.as_str()) {
                    return Err(EnvelopeError::SenderMismatch(format!(
                        "signed by {kid}, but `from` is {}",
                        claimed.as_deref().unwrap_or("absent")
                    )));
                }
                let key = resolver.resolve(did.as_str()).await?.key_for(&kid, Relationship::Authentication)?;
                let payload = signed.verify(&key)?;
                signer_kid = Some(kid);
                value = parse_object(&payload)?;
            }
            Layer::Plain => break Message::from_json(value)?,
        }
    };
    if recipient_kids.is_empty() && signer_kid.is_none() && !opts.allow_plaintext {
        return Err(EnvelopeError::Unprotected);
    }
    for kid in sender_kid.iter().chain(signer_kid.iter()) {
        let did = did_of(kid);
        if did.is_none() || message.from != did {
            return Err(EnvelopeError::SenderMismatch(format!(
                "{kid} is not a key of `from` {}",
                message.from.as_ref().map_or("(absent)", Did::as_str)
            )));
        }
    }
    check_addressed_to_us(&message, &recipient_kids, message.kind != crate::forward::FORWARD_TYPE)?;
    Ok(Unpacked { message, recipient_kid: recipient_kids.into_iter().next(), sender_kid, signer_kid, anoncrypted })
}

/// The DID of every key in `kids` must be in `to`. `to` may be absent only where
/// `to_required` is false (forwards: other implementations leave it out there).
pub(crate) fn check_addressed_to_us(
    message: &Message,
    kids: &[String],
    to_required: bool,
) -> Result<(), EnvelopeError> {
    if message.to.is_empty() && !to_required {
        return Ok(());
    }
    for kid in kids {
        let did = did_of(kid).ok_or_else(|| EnvelopeError::RecipientNotInTo { recipient: kid.clone() })?;
        if !message.to.contains(&did) {
            return Err(EnvelopeError::RecipientNotInTo { recipient: did.to_string() });
        }
    }
    Ok(())
}

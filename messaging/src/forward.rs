//! Routing 2.0 `forward` (DIDComm Messaging v2.1 §9.5): an encrypted message for `next`,
//! attached to a forward message anoncrypted to a mediator (here: the recipient's node).
//! The mediator unwraps one layer, learns only `next`, and passes the attachment on.

use serde_json::{json, Map, Value};
use sichat_core::did::Did;

use crate::envelope::{check_addressed_to_us, check_size, pack_anoncrypt, parse_object, UnpackOptions};
use crate::jwe::{AgreementKey, Encrypted, KeyAlg, RecipientKey, ENCRYPTED_TYP};
use crate::message::{did_of, Attachment, AttachmentData, Message, MessageId};
use crate::EnvelopeError;

/// The forward message type.
pub const FORWARD_TYPE: &str = "https://didcomm.org/routing/2.0/forward";

/// An unwrapped forward: where the attached message goes next, and the message itself.
#[derive(Clone, Debug)]
pub struct Forward {
    pub id: MessageId,
    /// The DID (or DID URL) to deliver to.
    pub next: String,
    /// The attached encrypted message, as the JWE's JSON.
    pub message: Value,
    /// Our key that opened the forward.
    pub recipient_kid: String,
}

impl Forward {
    /// The attached message as JSON text, ready to deliver.
    pub fn message_json(&self) -> String {
        self.message.to_string()
    }
}

/// Wrap the encrypted message `inner` (JSON text) for `next`, anoncrypted to the mediator
/// keys `via`. The forward's `to` is the DIDs of those keys.
pub fn wrap_forward(inner: &str, next: &Did, via: &[RecipientKey]) -> Result<String, EnvelopeError> {
    let inner = parse_object(inner.as_bytes())?;
    if inner.get("ciphertext").is_none() {
        return Err(EnvelopeError::InvalidPack("only an encrypted message can be forwarded".into()));
    }
    let mut to: Vec<Did> = Vec::new();
    for r in via {
        let did = did_of(&r.kid).ok_or_else(|| EnvelopeError::InvalidPack(format!("{} is not a DID URL", r.kid)))?;
        if !to.contains(&did) {
            to.push(did);
        }
    }
    let mut msg = Message::new(FORWARD_TYPE, json!({ "next": next })).with_to(to);
    msg.attachments.push(Attachment {
        id: Some(MessageId::new().to_string()),
        media_type: Some(ENCRYPTED_TYP.into()),
        data: AttachmentData { json: Some(inner), base64: None, extra: Map::new() },
        extra: Map::new(),
    });
    pack_anoncrypt(&msg, None, via)
}

/// Open a forward anoncrypted to one of `ours` and return what to deliver where. Only
/// anoncrypt is accepted: a forward names no sender.
pub fn unwrap_forward(input: &[u8], ours: &[AgreementKey], opts: &UnpackOptions) -> Result<Forward, EnvelopeError> {
    check_size(input, opts)?;
    let value = parse_object(input)?;
    if value.get("ciphertext").is_none() {
        return Err(EnvelopeError::MalformedForward("a forward must be anoncrypted".into()));
    }
    let jwe = Encrypted::parse(value)?;
    if jwe.alg() != KeyAlg::Anoncrypt {
        return Err(EnvelopeError::MalformedForward("a forward must be anoncrypted, not authcrypted".into()));
    }
    let (kid, plaintext) = jwe.decrypt_anon(ours)?;
    let message = Message::from_json(parse_object(&plaintext)?)?;
    // A forward's `to` is optional (the Python implementation leaves it out); if present,
    // it must name us.
    check_addressed_to_us(&message, std::slice::from_ref(&kid), false)?;
    let (next, inner) = forwarded(&message)?;
    Ok(Forward { id: message.id, next, message: inner, recipient_kid: kid })
}

/// The id of the attachment in which a sender's `vp+jwt` travels to the recipient's node.
pub const PRESENTATION_ATTACHMENT: &str = "presentation";

/// The `next` and the attached message of a forward message.
pub fn forwarded(message: &Message) -> Result<(String, Value), EnvelopeError> {
    let bad = |why: &str| EnvelopeError::MalformedForward(why.into());
    if message.kind != FORWARD_TYPE {
        return Err(bad("not a forward message"));
    }
    let next = message.body.get("next").and_then(Value::as_str).ok_or_else(|| bad("`body.next` is missing"))?;
    did_of(next).ok_or_else(|| bad("`body.next` is not a DID"))?;
    // Besides the message, a Sichat forward may carry the sender's presentation for the
    // recipient's node (attachment id `presentation`).
    let mut carried = message.attachments.iter().filter(|a| a.id.as_deref() != Some(PRESENTATION_ATTACHMENT));
    let (Some(attachment), None) = (carried.next(), carried.next()) else {
        return Err(bad("a forward carries exactly one message attachment"));
    };
    let inner = match (&attachment.data.json, &attachment.data.base64) {
        (Some(json), None) => json.clone(),
        (None, Some(b64)) => sichat_core::ids::b64url_decode(b64)
            .or_else(|| base64_standard(b64))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("the attachment's base64 is not a JSON message"))?,
        _ => return Err(bad("the attachment must hold `json` or `base64` data")),
    };
    if inner.get("ciphertext").is_none() {
        return Err(bad("the attached message is not encrypted"));
    }
    Ok((next.to_owned(), inner))
}

/// Attachments' `base64` is RFC 4648 §4 (with padding); we read either alphabet.
fn base64_standard(s: &str) -> Option<Vec<u8>> {
    let s: String = s
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    sichat_core::ids::b64url_decode(&s)
}

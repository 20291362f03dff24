//! The DIDComm plaintext message (DIDComm Messaging v2.1 §2.4, "Plaintext Message Structure").

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sichat_core::did::Did;
use std::fmt;

use crate::EnvelopeError;

/// `typ` of a plaintext message.
pub const PLAIN_TYP: &str = "application/didcomm-plain+json";

/// A message id: unique per sender. Ours are time-ordered (UUIDv7), so ids sort by creation;
/// other implementations' ids are accepted when they are 1–256 characters with no control
/// characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

impl MessageId {
    pub const MAX_LEN: usize = 256;

    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(sichat_core::ids::new_id())
    }

    pub fn parse(s: &str) -> Result<Self, EnvelopeError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(EnvelopeError::MalformedMessage(format!(
                "`id` must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(EnvelopeError::MalformedMessage("`id` holds a control character".into()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for MessageId {
    type Error = EnvelopeError;
    fn try_from(s: String) -> Result<Self, EnvelopeError> {
        Self::parse(&s)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

/// The `typ` header of a plaintext message: always [`PLAIN_TYP`] when written; when read,
/// absent or [`PLAIN_TYP`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PlainTyp;

impl Serialize for PlainTyp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(PLAIN_TYP)
    }
}

impl<'de> Deserialize<'de> for PlainTyp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let typ = String::deserialize(d)?;
        if typ == PLAIN_TYP {
            Ok(PlainTyp)
        } else {
            Err(serde::de::Error::custom(format!("`typ` must be {PLAIN_TYP}, not {typ:?}")))
        }
    }
}

/// A DIDComm plaintext message. Build one with [`Message::new`], then set what you need.
///
/// Headers this type does not name (`ack`, `lang`, `from_prior`…) are kept in `headers`,
/// so a message read and written again loses nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    #[serde(default)]
    typ: PlainTyp,
    /// The message type URI, e.g. `https://didcomm.org/basicmessage/2.0/message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The sender. Unpack proves it only when the message was authcrypted or signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Did>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Did>,
    /// Seconds since the Unix epoch (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_time: Option<u64>,
    /// The thread: the `id` of the message that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pthid: Option<String>,
    /// A JSON object, whose shape the message type defines.
    pub body: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(flatten)]
    pub headers: Map<String, Value>,
}

impl Message {
    /// A new message with a time-ordered id, created now, from no one to no one yet.
    pub fn new(kind: impl Into<String>, body: Value) -> Self {
        let now = sichat_core::ids::now_ms().max(0) as u64 / 1000;
        Self {
            id: MessageId::new(),
            typ: PlainTyp,
            kind: kind.into(),
            from: None,
            to: Vec::new(),
            created_time: Some(now),
            expires_time: None,
            thid: None,
            pthid: None,
            body,
            attachments: Vec::new(),
            headers: Map::new(),
        }
    }

    pub fn with_from(mut self, from: Did) -> Self {
        self.from = Some(from);
        self
    }

    pub fn with_to(mut self, to: Vec<Did>) -> Self {
        self.to = to;
        self
    }

    pub fn with_thid(mut self, thid: impl Into<String>) -> Self {
        self.thid = Some(thid.into());
        self
    }

    /// Read a plaintext message, checking what DIDComm requires of it.
    pub fn from_json(value: Value) -> Result<Self, EnvelopeError> {
        let msg: Message = serde_json::from_value(value).map_err(|e| EnvelopeError::MalformedMessage(e.to_string()))?;
        msg.check()?;
        Ok(msg)
    }

    pub(crate) fn check(&self) -> Result<(), EnvelopeError> {
        if !self.body.is_object() {
            return Err(EnvelopeError::MalformedMessage("`body` must be a JSON object".into()));
        }
        if self.kind.is_empty() {
            return Err(EnvelopeError::MalformedMessage("`type` is empty".into()));
        }
        Ok(())
    }

    pub(crate) fn to_json_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|e| EnvelopeError::InvalidPack(e.to_string()))
    }
}

/// An attachment (DIDComm Messaging v2.1 §5). `data` holds one of `json`, `base64`, `links`
/// or `jws`; what this crate reads itself is `json` and `base64`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub data: AttachmentData,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The DID of a DID URL (`did:…#key-1` → `did:…`).
pub(crate) fn did_of(did_url: &str) -> Option<Did> {
    let end = did_url.find(['#', '?', '/']).unwrap_or(did_url.len());
    Did::parse(&did_url[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_time_ordered_and_validated() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b, "{a} then {b}");
        assert!(MessageId::parse("").is_err());
        assert!(MessageId::parse("a\nb").is_err());
        assert!(MessageId::parse(&"x".repeat(257)).is_err());
        assert!(MessageId::parse("1234567890").is_ok());
    }

    #[test]
    fn a_message_round_trips_with_unknown_headers() {
        let did = Did::parse("did:example:alice").unwrap();
        let msg = Message::new("https://didcomm.org/basicmessage/2.0/message", json!({"content": "hi"}))
            .with_from(did.clone())
            .with_to(vec![did])
            .with_thid("t1");
        let mut v = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["typ"], PLAIN_TYP);
        v["lang"] = json!("en");
        let back = Message::from_json(v.clone()).unwrap();
        assert_eq!(back.headers["lang"], "en");
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
    }

    #[test]
    fn bad_plaintext_is_refused() {
        let ok = json!({"id": "1", "type": "t", "body": {}});
        assert!(Message::from_json(ok.clone()).is_ok());
        for (field, bad) in [
            ("typ", json!("application/didcomm-signed+json")),
            ("body", json!("text")),
            ("from", json!("not a did")),
            ("to", json!("did:example:a")),
            ("id", json!(3)),
        ] {
            let mut v = ok.clone();
            v[field] = bad;
            assert!(
                matches!(Message::from_json(v), Err(EnvelopeError::MalformedMessage(_))),
                "{field} should be refused"
            );
        }
    }

    #[test]
    fn did_of_strips_fragments() {
        assert_eq!(did_of("did:example:a#k1").unwrap().as_str(), "did:example:a");
        assert_eq!(did_of("did:web:h%3A1:users:a#k").unwrap().as_str(), "did:web:h%3A1:users:a");
        assert!(did_of("#k1").is_none());
    }
}

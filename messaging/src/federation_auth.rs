//! Node-to-node authentication (federation): which node sent a delivery, and for whom.
//!
//! The sending node signs each `POST` to another node's DIDComm endpoint with HTTP Message
//! Signatures (RFC 9421) by its Ed25519 node key, over a `Content-Digest` (RFC 9530) of the
//! body. The receiving node checks the digest, resolves the key from the sending node's
//! `did:web` document, checks the signature, and checks that the user the node speaks for
//! (`Sichat-Sender`) is one it hosts:
//!
//! ```text
//! Content-Type: application/didcomm-plain+json
//! Content-Digest: sha-256=:<base64 SHA-256 of the body>:
//! Sichat-Sender: did:web:a.example:users:alice
//! Signature-Input: sig1=("@method" "@target-uri" "content-digest" "content-type" "sichat-sender")
//!     ;created=1700000000;expires=1700000300;nonce="<random>";keyid="did:web:a.example#node-key-1"
//!     ;alg="ed25519"
//! Signature: sig1=:<base64 of the 64-byte Ed25519 signature>:
//! ```
//!
//! [`sign_request`] makes those headers; [`verify_request`] checks them and returns the
//! [`VerifiedPeer`]. Every refusal is one [`FederationAuthError`] variant. This module has
//! no HTTP handler and no storage: refusing replays (the same `node_did` and `nonce` again
//! before `expires`) is the caller's job.

use crate::envelope::KeyResolver;
use http::{HeaderMap, HeaderName, HeaderValue};
use sfv::{
    key_ref, BareItem, DictSerializer, Dictionary, InnerList, Integer, Item, KeyRef, ListEntry, ListSerializer,
    Parameters, Parser, StringRef, Version,
};
use sha2::{Digest, Sha256};
use sichat_core::did::Did;
use sichat_core::ids::{b64url, random_bytes};
use sichat_core::node::NodeIdentity;
use sichat_core::p256key::PublicKey;
use sichat_core::resolver::{Relationship, ResolveError};
use thiserror::Error;

/// The signature's label in `Signature-Input` and `Signature`.
pub const LABEL: &str = "sig1";
/// The components every federation signature covers, in the order Sichat signs them.
pub const COVERED_COMPONENTS: [&str; 5] = ["@method", "@target-uri", "content-digest", "content-type", "sichat-sender"];
/// The media type of a federation delivery: the forward, as plaintext DIDComm.
pub const CONTENT_TYPE: &str = "application/didcomm-plain+json";
/// The `alg` signature parameter.
pub const ALG: &str = "ed25519";
/// `expires - created` of the signatures we make.
pub const LIFETIME_SECS: i64 = 300;
/// The longest `expires - created` accepted.
pub const MAX_LIFETIME_SECS: i64 = 600;
/// How far in the future `created` may be (the sender's clock running ahead).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Header names, as `http` spells them (lower case).
pub mod header {
    pub const CONTENT_TYPE: &str = "content-type";
    pub const CONTENT_DIGEST: &str = "content-digest";
    pub const SICHAT_SENDER: &str = "sichat-sender";
    pub const SIGNATURE_INPUT: &str = "signature-input";
    pub const SIGNATURE: &str = "signature";
}

/// Longest header field accepted (all instances together), before any parsing.
const MAX_FIELD_LEN: usize = 8 * 1024;
/// Longest `nonce` accepted: the receiver stores it.
const MAX_NONCE_LEN: usize = 128;

const CREATED: &KeyRef = key_ref("created");
const EXPIRES: &KeyRef = key_ref("expires");
const NONCE: &KeyRef = key_ref("nonce");
const KEYID: &KeyRef = key_ref("keyid");
const ALG_PARAM: &KeyRef = key_ref("alg");
const SIG_LABEL: &KeyRef = key_ref(LABEL);
const SHA_256: &KeyRef = key_ref("sha-256");

/// Why a federation request was refused (or could not be signed).
///
/// Every variant is an authentication failure of the request as a whole; the contract
/// answers all of them with `401 bad_signature` and this message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FederationAuthError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {header} header is malformed: {why}")]
    MalformedHeader { header: &'static str, why: String },
    #[error("no signature labelled {LABEL:?} (labels present: {found})")]
    WrongLabel { found: String },
    #[error(
        "the signature must cover exactly \"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \
         \"sichat-sender\", each once and without parameters; it covers {covered}"
    )]
    CoveredComponents { covered: String },
    #[error("the signature parameter {name:?} is missing or malformed: {why}")]
    BadParameter { name: &'static str, why: String },
    #[error("the signature algorithm must be \"ed25519\", not {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("the signature was created at {created}, more than {MAX_CLOCK_SKEW_SECS} s in the future (now {now})")]
    CreatedInFuture { created: i64, now: i64 },
    #[error("the signature expired at {expires} (now {now})")]
    Expired { expires: i64, now: i64 },
    #[error("the signature is valid for {0} s (expires - created); it must be between 1 and {MAX_LIFETIME_SECS} s")]
    BadLifetime(i64),
    #[error("the body does not match its Content-Digest")]
    DigestMismatch,
    #[error("keyid {0:?} is not a did:web DID URL with a fragment")]
    KeyIdNotDidWeb(String),
    #[error("keyid {0:?} names a user's DID (it has a \"users\" segment), not a node's")]
    KeyIdNotNode(String),
    #[error("cannot resolve the sending node's DID: {0}")]
    Resolution(ResolveError),
    #[error("the signing key cannot authenticate the node: {0}")]
    KeyNotForAuthentication(ResolveError),
    #[error("{0} is not an Ed25519 key")]
    NotEd25519(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("Sichat-Sender {0:?} is not a DID")]
    InvalidSender(String),
    #[error("{node} vouches only for its own users (did:web DIDs {node}:users:<name>), not for {sender}")]
    SenderNotVouchable { node: String, sender: String },
    #[error("invalid request to sign or verify: {0}")]
    InvalidRequest(String),
}

type Result<T, E = FederationAuthError> = std::result::Result<T, E>;

fn malformed(header: &'static str, why: impl Into<String>) -> FederationAuthError {
    FederationAuthError::MalformedHeader { header, why: why.into() }
}

fn bad_param(name: &'static str, why: impl Into<String>) -> FederationAuthError {
    FederationAuthError::BadParameter { name, why: why.into() }
}

/// A node key that signs federation requests.
pub trait NodeSigner {
    /// The DID URL of the verification method (`keyid`), e.g. `did:web:a.example#node-key-1`.
    fn key_id(&self) -> String;
    /// An Ed25519 signature (RFC 8032) of `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

impl NodeSigner for NodeIdentity {
    fn key_id(&self) -> String {
        NodeIdentity::key_id(self)
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.sign_bytes(message)
    }
}

/// A request to another node, before signing.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRequest<'a> {
    /// The HTTP method, upper case as sent (`POST`).
    pub method: &'a str,
    /// The full URL the request goes to: the recipient's `serviceEndpoint.uri`.
    pub target_uri: &'a str,
    /// [`CONTENT_TYPE`] for a delivery.
    pub content_type: &'a str,
    /// The user this node vouches for: one of its own.
    pub sender: &'a Did,
    /// The body, exactly as it will be sent.
    pub body: &'a [u8],
}

impl<'a> OutgoingRequest<'a> {
    /// A delivery: `POST` of a forward (`application/didcomm-plain+json`) to `target_uri`.
    pub fn delivery(target_uri: &'a str, sender: &'a Did, body: &'a [u8]) -> Self {
        Self { method: "POST", target_uri, content_type: CONTENT_TYPE, sender, body }
    }
}

/// The headers a signed request carries, each value ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub content_type: String,
    pub content_digest: String,
    pub sichat_sender: String,
    pub signature_input: String,
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` of every header to set.
    pub fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            (header::CONTENT_TYPE, &self.content_type),
            (header::CONTENT_DIGEST, &self.content_digest),
            (header::SICHAT_SENDER, &self.sichat_sender),
            (header::SIGNATURE_INPUT, &self.signature_input),
            (header::SIGNATURE, &self.signature),
        ]
    }

    /// The headers as a map (for `reqwest` or a test request).
    pub fn to_header_map(&self) -> Result<HeaderMap> {
        let mut map = HeaderMap::new();
        for (name, value) in self.pairs() {
            let value = HeaderValue::from_str(value)
                .map_err(|_| FederationAuthError::InvalidRequest(format!("{name} is not a valid header value")))?;
            map.insert(HeaderName::from_static(name), value);
        }
        Ok(map)
    }
}

/// Sign a request to another node as `signer`, at `now_secs` (unix seconds), valid for
/// [`LIFETIME_SECS`], with a fresh 128-bit nonce.
pub fn sign_request<S: NodeSigner + ?Sized>(
    signer: &S,
    request: &OutgoingRequest<'_>,
    now_secs: i64,
) -> Result<SignedHeaders> {
    sign_with_nonce(signer, request, now_secs, &b64url(&random_bytes::<16>()))
}

fn sign_with_nonce<S: NodeSigner + ?Sized>(
    signer: &S,
    request: &OutgoingRequest<'_>,
    now_secs: i64,
    nonce: &str,
) -> Result<SignedHeaders> {
    let invalid = FederationAuthError::InvalidRequest;
    let content_type = request.content_type.trim_matches([' ', '\t']);
    let content_digest = content_digest(request.body)?;
    let expires = now_secs.checked_add(LIFETIME_SECS).ok_or_else(|| invalid("time out of range".into()))?;
    let params = signature_params(now_secs, expires, nonce, &signer.key_id())?;
    let values = [request.method, request.target_uri, &content_digest, content_type, request.sender.as_str()];
    let base = signature_base(COVERED_COMPONENTS.into_iter().zip(values), &params)?;
    let signature = signer.sign(base.as_bytes());
    let mut ser = DictSerializer::new();
    _ = ser.bare_item(SIG_LABEL, &signature[..]);
    let signature = ser.finish().ok_or_else(|| invalid("empty Signature".into()))?;
    Ok(SignedHeaders {
        content_type: content_type.to_owned(),
        content_digest,
        sichat_sender: request.sender.to_string(),
        signature_input: format!("{LABEL}={params}"),
        signature,
    })
}

/// `sha-256=:<base64>:` of `body` (RFC 9530).
pub fn content_digest(body: &[u8]) -> Result<String> {
    let digest = Sha256::digest(body);
    let mut ser = DictSerializer::new();
    _ = ser.bare_item(SHA_256, digest.as_slice());
    ser.finish().ok_or_else(|| FederationAuthError::InvalidRequest("empty Content-Digest".into()))
}

/// The serialized signature parameters (RFC 9421 §2.3): the inner list of covered
/// components with `created`, `expires`, `nonce`, `keyid` and `alg`.
fn signature_params(created: i64, expires: i64, nonce: &str, keyid: &str) -> Result<String> {
    let invalid = |what: &str| FederationAuthError::InvalidRequest(format!("{what} cannot be a structured field"));
    let string =
        |s: &str, what: &str| StringRef::from_str(s).map(|s| BareItem::String(s.to_owned())).map_err(|_| invalid(what));
    let integer = |i: i64, what: &str| Integer::try_from(i).map(BareItem::Integer).map_err(|_| invalid(what));
    let items =
        COVERED_COMPONENTS.iter().map(|c| string(c, "a component").map(Item::new)).collect::<Result<Vec<_>>>()?;
    let mut params = Parameters::new();
    params.insert(CREATED.to_owned(), integer(created, "created")?);
    params.insert(EXPIRES.to_owned(), integer(expires, "expires")?);
    params.insert(NONCE.to_owned(), string(nonce, "the nonce")?);
    params.insert(KEYID.to_owned(), string(keyid, "the keyid")?);
    params.insert(ALG_PARAM.to_owned(), string(ALG, "alg")?);
    Ok(serialize_inner_list(&InnerList::with_params(items, params)))
}

/// RFC 8941 §4.1.1.1: an inner list with its parameters, as a List member serializes it.
fn serialize_inner_list(inner: &InnerList) -> String {
    let mut out = String::new();
    let mut list = ListSerializer::with_buffer(&mut out);
    {
        let mut ser = list.inner_list();
        ser.items(&inner.items);
        _ = ser.finish().parameters(&inner.params);
    }
    _ = list.finish();
    out
}

/// The signature base (RFC 9421 §2.5): one line `"<component>": <value>` per covered
/// component, in order, then `"@signature-params": <params>` with no newline after it.
/// Component names are serialized as sf-strings; a value must not hold a line break or any
/// character outside visible ASCII, space and tab.
fn signature_base<'a>(components: impl IntoIterator<Item = (&'a str, &'a str)>, params: &str) -> Result<String> {
    let mut base = String::new();
    for (name, value) in components {
        let name = StringRef::from_str(name)
            .map_err(|_| FederationAuthError::InvalidRequest(format!("component name {name:?}")))?;
        if !value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(FederationAuthError::InvalidRequest(format!("the value of {name} holds a control character")));
        }
        base.push_str(&sfv::ItemSerializer::new().bare_item(name).finish());
        base.push_str(": ");
        base.push_str(value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params);
    Ok(base)
}

/// A request another node sent us, as received.
#[derive(Debug, Clone, Copy)]
pub struct IncomingRequest<'a> {
    /// The HTTP method as received (`POST`).
    pub method: &'a str,
    /// The full URL the sender must have signed: made from **our** public URL and the
    /// request's path and query (never from the `Host` header), so a request signed for
    /// another node does not verify here.
    pub target_uri: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Who sent a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    /// The sending node's DID (the `keyid` without its fragment).
    pub node_did: Did,
    /// The verification method that signed.
    pub key_id: String,
    /// The user the node vouches for (`Sichat-Sender`), hosted by that node.
    pub sender: Did,
    /// Remember `(node_did, nonce)` until `expires` and refuse it again: that is what
    /// stops a replay.
    pub nonce: String,
    pub created: i64,
    pub expires: i64,
}

/// Check a request another node sent: its digest, its signature by a key listed under
/// `authentication` in the sending node's `did:web` document (resolved through `resolver`),
/// its times against `now_secs`, and that `Sichat-Sender` is a user of that node.
///
/// Everything that needs no network is checked first, so a malformed or misaddressed
/// request never makes us fetch a document.
pub async fn verify_request<R: KeyResolver + ?Sized>(
    request: &IncomingRequest<'_>,
    resolver: &R,
    now_secs: i64,
) -> Result<VerifiedPeer> {
    let checked = check_request(request, now_secs)?;
    let peer = checked.peer;
    let keys = resolver.resolve(peer.node_did.as_str()).await.map_err(FederationAuthError::Resolution)?;
    let key = keys
        .key_for(&peer.key_id, Relationship::Authentication)
        .map_err(FederationAuthError::KeyNotForAuthentication)?;
    let PublicKey::Ed25519(key) = key else {
        return Err(FederationAuthError::NotEd25519(peer.key_id));
    };
    if !key.verify(checked.base.as_bytes(), &checked.signature) {
        return Err(FederationAuthError::BadSignature);
    }
    Ok(peer)
}

/// A request whose headers passed every check but the signature itself.
struct Checked {
    peer: VerifiedPeer,
    base: String,
    signature: Vec<u8>,
}

/// Every check that needs no key, in the order a reader would make them.
fn check_request(request: &IncomingRequest<'_>, now: i64) -> Result<Checked> {
    let headers = request.headers;

    let input =
        field(headers, header::SIGNATURE_INPUT)?.ok_or(FederationAuthError::MissingHeader(header::SIGNATURE_INPUT))?;
    let inputs = parse_dictionary(&input, header::SIGNATURE_INPUT)?;
    let inner = match inputs.get(LABEL) {
        Some(ListEntry::InnerList(inner)) => inner,
        Some(ListEntry::Item(_)) => {
            return Err(malformed(header::SIGNATURE_INPUT, format!("{LABEL} is not an inner list")))
        }
        None => {
            let found: Vec<&str> = inputs.keys().map(|k| k.as_str()).collect();
            let found = if found.is_empty() { "none".to_owned() } else { found.join(", ") };
            return Err(FederationAuthError::WrongLabel { found });
        }
    };
    check_components(inner)?;
    let params = SignatureParams::read(&inner.params)?;
    if params.created > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(FederationAuthError::CreatedInFuture { created: params.created, now });
    }
    if now > params.expires {
        return Err(FederationAuthError::Expired { expires: params.expires, now });
    }
    let lifetime = params.expires - params.created;
    if !(1..=MAX_LIFETIME_SECS).contains(&lifetime) {
        return Err(FederationAuthError::BadLifetime(lifetime));
    }

    let signatures = field(headers, header::SIGNATURE)?.ok_or(FederationAuthError::MissingHeader(header::SIGNATURE))?;
    let signatures = parse_dictionary(&signatures, header::SIGNATURE)?;
    let signature = match signatures.get(LABEL) {
        Some(ListEntry::Item(item)) if item.params.is_empty() => item.bare_item.as_byte_sequence(),
        Some(_) => None,
        None => return Err(malformed(header::SIGNATURE, format!("no {LABEL} member"))),
    }
    .ok_or_else(|| malformed(header::SIGNATURE, format!("{LABEL} is not a byte sequence")))?;
    if signature.len() != 64 {
        return Err(malformed(header::SIGNATURE, format!("an Ed25519 signature is 64 bytes, not {}", signature.len())));
    }

    let digest_field =
        field(headers, header::CONTENT_DIGEST)?.ok_or(FederationAuthError::MissingHeader(header::CONTENT_DIGEST))?;
    let digests = parse_dictionary(&digest_field, header::CONTENT_DIGEST)?;
    let digest = match digests.get("sha-256") {
        Some(ListEntry::Item(item)) => item.bare_item.as_byte_sequence(),
        _ => None,
    }
    .ok_or_else(|| malformed(header::CONTENT_DIGEST, "no sha-256 byte sequence"))?;
    if digest != Sha256::digest(request.body).as_slice() {
        return Err(FederationAuthError::DigestMismatch);
    }

    let node_did = node_of_key_id(&params.keyid)?;
    let sender_field =
        field(headers, header::SICHAT_SENDER)?.ok_or(FederationAuthError::MissingHeader(header::SICHAT_SENDER))?;
    let sender = Did::parse(&sender_field).map_err(|_| FederationAuthError::InvalidSender(sender_field.clone()))?;
    check_vouch(&node_did, &sender)?;

    let content_type =
        field(headers, header::CONTENT_TYPE)?.ok_or(FederationAuthError::MissingHeader(header::CONTENT_TYPE))?;
    let value_of = |name: &str| -> &str {
        match name {
            "@method" => request.method,
            "@target-uri" => request.target_uri,
            "content-digest" => &digest_field,
            "content-type" => &content_type,
            _ => &sender_field,
        }
    };
    let components: Vec<&str> =
        inner.items.iter().filter_map(|i| i.bare_item.as_string()).map(|s| s.as_str()).collect();
    let base = signature_base(components.iter().map(|&c| (c, value_of(c))), &serialize_inner_list(inner))?;

    let peer = VerifiedPeer {
        node_did,
        key_id: params.keyid,
        sender,
        nonce: params.nonce,
        created: params.created,
        expires: params.expires,
    };
    Ok(Checked { peer, base, signature: signature.to_vec() })
}

/// A header field as RFC 9421 §2.1 covers it: every instance, trimmed of spaces and tabs,
/// joined by `, `. `None` when absent.
fn field(headers: &HeaderMap, name: &'static str) -> Result<Option<String>> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let value = value.to_str().map_err(|_| malformed(name, "not visible ASCII"))?.trim_matches([' ', '\t']);
        match &mut out {
            None => out = Some(value.to_owned()),
            Some(o) => {
                o.push_str(", ");
                o.push_str(value);
            }
        }
        if out.as_ref().is_some_and(|o| o.len() > MAX_FIELD_LEN) {
            return Err(malformed(name, format!("longer than {MAX_FIELD_LEN} bytes")));
        }
    }
    Ok(out)
}

fn parse_dictionary(value: &str, header: &'static str) -> Result<Dictionary> {
    Parser::new(value)
        .with_version(Version::Rfc8941)
        .parse::<Dictionary>()
        .map_err(|e| malformed(header, format!("not a structured-field dictionary ({e})")))
}

/// The covered components must be exactly [`COVERED_COMPONENTS`] (in any order), each an
/// sf-string without parameters.
fn check_components(inner: &InnerList) -> Result<()> {
    let mut seen = [false; COVERED_COMPONENTS.len()];
    let mut ok = inner.items.len() == COVERED_COMPONENTS.len();
    for item in &inner.items {
        let position = item
            .bare_item
            .as_string()
            .filter(|_| item.params.is_empty())
            .and_then(|name| COVERED_COMPONENTS.iter().position(|c| *c == name.as_str()));
        match position {
            Some(i) if !seen[i] => seen[i] = true,
            _ => ok = false,
        }
    }
    if ok {
        return Ok(());
    }
    let mut list = InnerList::new(inner.items.clone());
    list.params.clear();
    Err(FederationAuthError::CoveredComponents { covered: serialize_inner_list(&list) })
}

/// The signature parameters a federation signature must carry. Others are ignored (they
/// are signed all the same, as part of `@signature-params`).
struct SignatureParams {
    created: i64,
    expires: i64,
    nonce: String,
    keyid: String,
}

impl SignatureParams {
    fn read(params: &Parameters) -> Result<Self> {
        let string = |name: &'static str| -> Result<&str> {
            match params.get(name) {
                None => Err(bad_param(name, "missing")),
                Some(v) => v.as_string().map(|s| s.as_str()).ok_or_else(|| bad_param(name, "not a string")),
            }
        };
        let integer = |name: &'static str| -> Result<i64> {
            match params.get(name) {
                None => Err(bad_param(name, "missing")),
                Some(v) => v.as_integer().map(i64::from).ok_or_else(|| bad_param(name, "not an integer")),
            }
        };
        let alg = string("alg")?;
        if alg != ALG {
            return Err(FederationAuthError::UnsupportedAlgorithm(alg.to_owned()));
        }
        let nonce = string("nonce")?;
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
            return Err(bad_param("nonce", format!("must be 1 to {MAX_NONCE_LEN} characters")));
        }
        Ok(Self {
            created: integer("created")?,
            expires: integer("expires")?,
            nonce: nonce.to_owned(),
            keyid: string("keyid")?.to_owned(),
        })
    }
}

/// The node DID of a `keyid`: a `did:web` DID URL `<did>#<fragment>`, whose DID is not a
/// user's (no `users` path segment: `<node>:users:<name>` is where a node's users live).
fn node_of_key_id(keyid: &str) -> Result<Did> {
    let not_web = || FederationAuthError::KeyIdNotDidWeb(keyid.to_owned());
    let (did, fragment) = keyid.split_once('#').ok_or_else(not_web)?;
    if fragment.is_empty()
        || !fragment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(not_web());
    }
    let did = Did::parse(did).map_err(|_| not_web())?;
    let Some(id) = did.as_str().strip_prefix("did:web:") else {
        return Err(not_web());
    };
    if id.split(':').skip(1).any(|segment| segment == "users") {
        return Err(FederationAuthError::KeyIdNotNode(keyid.to_owned()));
    }
    Ok(did)
}

/// A node vouches only for `<node DID>:users:<name>`, compared as written: the node's DID
/// exactly (host, `%3A` port and path), then one `users` segment, then one non-empty name.
fn check_vouch(node: &Did, sender: &Did) -> Result<()> {
    let name = sender.as_str().strip_prefix(node.as_str()).and_then(|rest| rest.strip_prefix(":users:"));
    match name {
        Some(name) if !name.is_empty() && !name.contains(':') => Ok(()),
        _ => Err(FederationAuthError::SenderNotVouchable { node: node.to_string(), sender: sender.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sichat_core::keys::Ed25519KeyPair;
    use sichat_core::resolver::Keys;
    use std::collections::HashMap;
    use std::sync::Arc;

    const NOW: i64 = 1_700_000_000;

    struct TestNode {
        did: Did,
        key: Ed25519KeyPair,
    }

    impl NodeSigner for TestNode {
        fn key_id(&self) -> String {
            self.did.url("node-key-1")
        }
        fn sign(&self, message: &[u8]) -> [u8; 64] {
            self.key.sign(message)
        }
    }

    fn node(did: &str) -> TestNode {
        TestNode { did: Did::parse(did).unwrap(), key: Ed25519KeyPair::generate() }
    }

    fn keys_of(node: &TestNode) -> HashMap<String, Arc<Keys>> {
        let doc = serde_json::json!({
            "id": node.did,
            "verificationMethod": [{"id": node.key_id(), "type": "Multikey", "controller": node.did,
                                    "publicKeyMultibase": node.key.public().to_multibase()}],
            "authentication": [node.key_id()],
        });
        HashMap::from([(node.did.to_string(), Arc::new(Keys::from_document(node.did.as_str(), &doc).unwrap()))])
    }

    fn b64(s: &str) -> Vec<u8> {
        let mut ser = String::from("a=:");
        ser.push_str(s);
        ser.push(':');
        let dict: Dictionary = Parser::new(&ser).parse().unwrap();
        match dict.get("a") {
            Some(ListEntry::Item(i)) => i.bare_item.as_byte_sequence().unwrap().to_vec(),
            _ => unreachable!(),
        }
    }

    /// RFC 9421 Appendix B.2.6 (Ed25519 over test-request with the key of B.1.4): the
    /// parameters serialize, the base is built, and the deterministic signature matches.
    #[test]
    fn rfc9421_b_2_6_known_answer() {
        // B.1.4's PKCS#8 private key: the 32-byte seed is its last 32 bytes.
        let pkcs8 = b64("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF");
        let key = Ed25519KeyPair::from_secret(&pkcs8[16..]).unwrap();
        let spki = b64("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=");
        assert_eq!(key.public().as_bytes()[..], spki[12..]);

        let input = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
        let dict = parse_dictionary(input, "signature-input").unwrap();
        let Some(ListEntry::InnerList(inner)) = dict.get("sig-b26") else { panic!("no inner list") };
        let params = serialize_inner_list(inner);
        assert_eq!(format!("sig-b26={params}"), input);

        let components = [
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("@method", "POST"),
            ("@path", "/foo"),
            ("@authority", "example.com"),
            ("content-type", "application/json"),
            ("content-length", "18"),
        ];
        let base = signature_base(components, &params).unwrap();
        let expected = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
                        \"@method\": POST\n\
                        \"@path\": /foo\n\
                        \"@authority\": example.com\n\
                        \"content-type\": application/json\n\
                        \"content-length\": 18\n\
                        \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \
                        \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
        assert_eq!(base, expected);

        let signature = key.sign(base.as_bytes());
        let rfc = b64("wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==");
        assert_eq!(signature[..], rfc[..]);
        assert!(key.public().verify(base.as_bytes(), &rfc));
    }

    /// RFC 9530 §2: the digest of the 18-byte body `{"hello": "world"}`.
    #[test]
    fn content_digest_is_rfc9530() {
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}").unwrap(),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
    }

    #[test]
    fn signed_headers_have_the_contract_shape() {
        let a = node("did:web:a.example");
        let sender = Did::parse("did:web:a.example:users:alice").unwrap();
        let req = OutgoingRequest::delivery("https://b.example/didcomm", &sender, b"{}");
        let h = sign_with_nonce(&a, &req, NOW, "abc").unwrap();
        assert_eq!(h.content_type, "application/didcomm-plain+json");
        assert_eq!(h.sichat_sender, "did:web:a.example:users:alice");
        assert_eq!(
            h.signature_input,
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \"sichat-sender\")\
             ;created=1700000000;expires=1700000300;nonce=\"abc\";keyid=\"did:web:a.example#node-key-1\";alg=\"ed25519\""
        );
        assert!(h.signature.starts_with("sig1=:") && h.signature.ends_with(':'));
        assert_eq!(b64(&h.signature[6..h.signature.len() - 1]).len(), 64);

        // The base the receiver rebuilds is the one that was signed.
        let headers = h.to_header_map().unwrap();
        let incoming =
            IncomingRequest { method: "POST", target_uri: "https://b.example/didcomm", headers: &headers, body: b"{}" };
        let checked = check_request(&incoming, NOW).unwrap();
        assert_eq!(
            checked.base,
            format!(
                "\"@method\": POST\n\"@target-uri\": https://b.example/didcomm\n\"content-digest\": {}\n\
                 \"content-type\": application/didcomm-plain+json\n\"sichat-sender\": did:web:a.example:users:alice\n\
                 \"@signature-params\": {}",
                h.content_digest,
                &h.signature_input[5..]
            )
        );
        assert!(a.key.public().verify(checked.base.as_bytes(), &checked.signature));
    }

    #[tokio::test]
    async fn round_trip_with_fixed_keys() {
        let a = node("did:web:a.example");
        let sender = Did::parse("did:web:a.example:users:alice").unwrap();
        let req = OutgoingRequest::delivery("https://b.example/didcomm", &sender, b"{\"id\":1}");
        let headers = sign_request(&a, &req, NOW).unwrap().to_header_map().unwrap();
        let incoming = IncomingRequest {
            method: "POST",
            target_uri: "https://b.example/didcomm",
            headers: &headers,
            body: b"{\"id\":1}",
        };
        let peer = verify_request(&incoming, &keys_of(&a), NOW + 10).await.unwrap();
        assert_eq!(peer.node_did, a.did);
        assert_eq!(peer.sender, sender);
        assert_eq!(peer.key_id, "did:web:a.example#node-key-1");
        assert_eq!((peer.created, peer.expires), (NOW, NOW + 300));
        assert_eq!(peer.nonce.len(), 22);

        // Signed for another node: the receiver's own target URI does not verify.
        let elsewhere = IncomingRequest { target_uri: "https://c.example/didcomm", ..incoming };
        assert_eq!(verify_request(&elsewhere, &keys_of(&a), NOW).await, Err(FederationAuthError::BadSignature));
        let other_method = IncomingRequest { method: "PUT", ..incoming };
        assert_eq!(verify_request(&other_method, &keys_of(&a), NOW).await, Err(FederationAuthError::BadSignature));
    }

    #[test]
    fn vouching() {
        let ok =
            |node: &str, sender: &str| check_vouch(&Did::parse(node).unwrap(), &Did::parse(sender).unwrap()).is_ok();
        assert!(ok("did:web:a.example", "did:web:a.example:users:bob"));
        assert!(ok("did:web:localhost%3A8080", "did:web:localhost%3A8080:users:bob"));
        assert!(ok("did:web:a.example:sichat", "did:web:a.example:sichat:users:bob"));
        assert!(!ok("did:web:a.example", "did:web:b.example:users:bob"));
        assert!(!ok("did:web:a.example", "did:web:a.example.evil.com:users:x"));
        assert!(!ok("did:web:a.example", "did:web:a.example%3A8080:users:x"));
        assert!(!ok("did:web:localhost%3A8080", "did:web:localhost:users:bob"));
        assert!(!ok("did:web:localhost%3A8080", "did:web:localhost%3A80800:users:bob"));
        assert!(!ok("did:web:localhost%3A8080", "did:web:localhost%3a8080:users:bob"));
        assert!(!ok("did:web:a.example", "did:web:a.example"));
        assert!(!ok("did:web:a.example", "did:web:a.example:users:bob:users:eve"));
        assert!(!ok("did:web:a.example", "did:web:a.example:people:bob"));
        assert!(!ok("did:web:a.example:sichat", "did:web:a.example:users:bob"));
        assert!(!ok("did:web:a.example", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"));
    }

    #[test]
    fn key_ids() {
        assert_eq!(node_of_key_id("did:web:a.example#node-key-1").unwrap().as_str(), "did:web:a.example");
        assert_eq!(node_of_key_id("did:web:localhost%3A8080#k").unwrap().as_str(), "did:web:localhost%3A8080");
        for bad in [
            "did:web:a.example",
            "did:web:a.example#",
            "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK#z6Mk",
            "https://a.example#k",
            "did:web:a.example/path#k",
            "did:web:a.example?x=1#k",
            "did:web:a.example#k#k",
            "did:web:a.example#k y",
            "",
            "#",
        ] {
            assert!(matches!(node_of_key_id(bad), Err(FederationAuthError::KeyIdNotDidWeb(_))), "{bad}");
        }
        assert!(matches!(
            node_of_key_id("did:web:a.example:users:bob#device-1"),
            Err(FederationAuthError::KeyIdNotNode(_))
        ));
    }

    #[test]
    fn signature_base_refuses_line_breaks() {
        assert!(signature_base([("@target-uri", "https://a.example/\nx")], "()").is_err());
        assert!(signature_base([("@method", "PO\rST")], "()").is_err());
        assert!(signature_base([("@method", "POST\u{e9}")], "()").is_err());
    }

    #[test]
    fn repeated_fields_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("sichat-sender", HeaderValue::from_static(" a "));
        headers.append("sichat-sender", HeaderValue::from_static("b\t"));
        assert_eq!(field(&headers, "sichat-sender").unwrap().as_deref(), Some("a, b"));
        assert_eq!(field(&headers, "signature").unwrap(), None);
    }
}

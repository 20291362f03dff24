//! DID resolution to verification keys: `did:key` (Ed25519, P-256, X25519), `did:jwk`, and
//! `did:web` through the safe [`Fetcher`], with a cache. Signature keys come with their
//! relationships; X25519 `keyAgreement` keys (for DIDComm encryption) are listed apart.
//!
//! Documents from other implementations are read leniently: keys as `publicKeyMultibase`
//! or `publicKeyJwk`, relationships as absolute or relative references or embedded methods.
//!
//! A `did:webvh` log names its watchers (did:webvh §3.7.9): nodes that mirror it. When the
//! DID's host cannot be reached, the log is taken from a watcher the last verified version
//! named, verified the same way, and only if it is not older than that version. Its
//! DID-relative resources (status lists) are found there too ([`Resolver::mirrors`]).

use crate::did::Did;
use crate::ids::b64url_decode;
use crate::keys::X25519Public;
use crate::net::{FetchError, Fetcher};
use crate::p256key::PublicKey;
use crate::webvh::{self, WebvhDid};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a resolved document is trusted before it is fetched again.
pub const DOC_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    Authentication,
    AssertionMethod,
}

impl Relationship {
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Authentication => "authentication",
            Relationship::AssertionMethod => "assertionMethod",
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum ResolveError {
    #[error("{0} is not a valid DID")]
    Invalid(String),
    #[error("did:{0} is not supported (did:key, did:jwk, did:web and did:webvh are)")]
    Unsupported(String),
    #[error("cannot resolve {did}: {why}")]
    Unresolvable { did: String, why: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{did}'s DID log does not verify: {why}")]
    InvalidLog { did: String, why: String },
    #[error("{method} is not in {did}'s DID document")]
    UnknownKey { did: String, method: String },
    #[error("{method} is in {did}'s DID document but not listed under {relationship}")]
    NotForRelationship { did: String, method: String, relationship: &'static str },
}

/// One verification method of a resolved document.
#[derive(Debug, Clone)]
pub struct Method {
    pub id: String,
    pub key: PublicKey,
    pub authentication: bool,
    pub assertion: bool,
}

/// One X25519 method listed under `keyAgreement`.
#[derive(Debug, Clone)]
pub struct AgreementMethod {
    pub id: String,
    pub key: X25519Public,
}

/// The verification methods of a DID.
#[derive(Debug, Clone)]
pub struct Keys {
    pub did: String,
    /// Signature keys (Ed25519, P-256), with the relationships they are listed under.
    pub methods: Vec<Method>,
    /// X25519 keys listed under `keyAgreement`, in document order.
    pub agreement: Vec<AgreementMethod>,
    /// The URIs of its `DIDCommMessaging` services, in document order.
    pub didcomm_endpoints: Vec<String>,
    /// Its `alsoKnownAs` identifiers.
    pub also_known_as: Vec<String>,
    /// Earlier DIDs of the same identity that resolved to this document (a moved
    /// `did:webvh`): their method ids `old#frag` name this document's `did#frag`.
    pub aliases: Vec<String>,
}

impl Keys {
    /// `method_id` with an alias DID replaced by the document's own.
    fn own_id<'a>(&self, method_id: &'a str) -> std::borrow::Cow<'a, str> {
        for alias in &self.aliases {
            if let Some(frag) = method_id.strip_prefix(alias.as_str()).and_then(|r| r.strip_prefix('#')) {
                return std::borrow::Cow::Owned(format!("{}#{frag}", self.did));
            }
        }
        std::borrow::Cow::Borrowed(method_id)
    }

    /// The key `method_id` names, if the document lists it for `rel`.
    pub fn key_for(&self, method_id: &str, rel: Relationship) -> Result<PublicKey, ResolveError> {
        let method_id = &*self.own_id(method_id);
        let m = self
            .methods
            .iter()
            .find(|m| m.id == method_id)
            .ok_or_else(|| ResolveError::UnknownKey { did: self.did.clone(), method: method_id.into() })?;
        let listed = match rel {
            Relationship::Authentication => m.authentication,
            Relationship::AssertionMethod => m.assertion,
        };
        if !listed {
            return Err(ResolveError::NotForRelationship {
                did: self.did.clone(),
                method: method_id.into(),
                relationship: rel.as_str(),
            });
        }
        Ok(m.key)
    }

    /// The X25519 key `method_id` names, if the document lists it under `keyAgreement`.
    pub fn agreement_key(&self, method_id: &str) -> Result<X25519Public, ResolveError> {
        let method_id = &*self.own_id(method_id);
        if let Some(m) = self.agreement.iter().find(|m| m.id == method_id) {
            return Ok(m.key);
        }
        if self.methods.iter().any(|m| m.id == method_id) {
            return Err(ResolveError::NotForRelationship {
                did: self.did.clone(),
                method: method_id.into(),
                relationship: "keyAgreement",
            });
        }
        Err(ResolveError::UnknownKey { did: self.did.clone(), method: method_id.into() })
    }

    /// Parse a DID document (JSON) for `did`.
    pub fn from_document(did: &str, doc: &Value) -> Result<Self, ResolveError> {
        let bad = |why: String| ResolveError::Unresolvable { did: did.into(), why };
        if doc.get("id").and_then(Value::as_str) != Some(did) {
            return Err(bad(format!("the document describes {}, not {did}", doc.get("id").unwrap_or(&Value::Null))));
        }
        let absolute = |id: &str| if id.starts_with('#') { format!("{did}{id}") } else { id.to_owned() };
        let mut methods: Vec<Method> = Vec::new();
        let mut x25519: Vec<AgreementMethod> = Vec::new();
        let mut add = |vm: &Value| -> Result<String, ResolveError> {
            let id = absolute(vm.get("id").and_then(Value::as_str).ok_or_else(|| bad("a method has no id".into()))?);
            if let Some(key) = method_x25519(vm) {
                if !x25519.iter().any(|m| m.id == id) {
                    x25519.push(AgreementMethod { id: id.clone(), key });
                }
            } else if !methods.iter().any(|m| m.id == id) {
                if let Some(key) = method_key(vm) {
                    methods.push(Method { id: id.clone(), key, authentication: false, assertion: false });
                }
            }
            Ok(id)
        };
        for vm in doc.get("verificationMethod").and_then(Value::as_array).into_iter().flatten() {
            add(vm)?;
        }
        let mut listed = |rel: &str| -> Result<Vec<String>, ResolveError> {
            let mut ids = Vec::new();
            for r in doc.get(rel).and_then(Value::as_array).into_iter().flatten() {
                match r {
                    Value::String(s) => ids.push(absolute(s)),
                    Value::Object(_) => ids.push(add(r)?),
                    _ => return Err(bad(format!("{rel} holds something that is neither a reference nor a method"))),
                }
            }
            Ok(ids)
        };
        let auth = listed("authentication")?;
        let assertion = listed("assertionMethod")?;
        let agreement_ids = listed("keyAgreement")?;
        for m in &mut methods {
            m.authentication = auth.contains(&m.id);
            m.assertion = assertion.contains(&m.id);
        }
        let agreement = agreement_ids.iter().filter_map(|id| x25519.iter().find(|m| &m.id == id)).cloned().collect();
        let didcomm_endpoints = didcomm_endpoints(doc);
        let also_known_as = doc
            .get("alsoKnownAs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Ok(Keys { did: did.into(), methods, agreement, didcomm_endpoints, also_known_as, aliases: Vec::new() })
    }

    fn single(did: &str, id: String, key: PublicKey) -> Self {
        let mut agreement = Vec::new();
        if let PublicKey::Ed25519(ed) = key {
            // did:key derives its keyAgreement key from the Ed25519 key (did:key §3.1.2).
            let x = ed.to_x25519();
            agreement.push(AgreementMethod { id: format!("{did}#{}", x.to_multibase()), key: x });
        }
        let methods = vec![Method { id, key, authentication: true, assertion: true }];
        Keys::bare(did, methods, agreement)
    }

    fn bare(did: &str, methods: Vec<Method>, agreement: Vec<AgreementMethod>) -> Self {
        Keys {
            did: did.into(),
            methods,
            agreement,
            didcomm_endpoints: Vec::new(),
            also_known_as: Vec::new(),
            aliases: Vec::new(),
        }
    }
}

/// The endpoint URIs of `DIDCommMessaging` services: `serviceEndpoint` as a string, an
/// object with `uri` (DIDComm v2.1), or a list of either.
fn didcomm_endpoints(doc: &Value) -> Vec<String> {
    fn uris(endpoint: &Value, out: &mut Vec<String>) {
        match endpoint {
            Value::String(s) => out.push(s.clone()),
            Value::Object(o) => out.extend(o.get("uri").and_then(Value::as_str).map(str::to_owned)),
            Value::Array(items) => items.iter().for_each(|i| uris(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for service in doc.get("service").and_then(Value::as_array).into_iter().flatten() {
        if service.get("type").and_then(Value::as_str) == Some("DIDCommMessaging") {
            if let Some(endpoint) = service.get("serviceEndpoint") {
                uris(endpoint, &mut out);
            }
        }
    }
    out
}

fn method_key(vm: &Value) -> Option<PublicKey> {
    if let Some(mb) = vm.get("publicKeyMultibase").and_then(Value::as_str) {
        return PublicKey::from_multibase(mb).ok();
    }
    vm.get("publicKeyJwk").and_then(PublicKey::from_jwk)
}

fn method_x25519(vm: &Value) -> Option<X25519Public> {
    if let Some(mb) = vm.get("publicKeyMultibase").and_then(Value::as_str) {
        return X25519Public::from_multibase(mb).ok();
    }
    vm.get("publicKeyJwk").and_then(X25519Public::from_jwk)
}

/// What the last verified log of a `did:webvh` said of its mirrors.
#[derive(Clone, Debug)]
struct Watched {
    watchers: Vec<String>,
    entries: usize,
}

/// Resolves DIDs, caching documents for [`DOC_TTL`] (or [`Resolver::with_ttl`]).
pub struct Resolver {
    fetcher: Arc<Fetcher>,
    origins: Vec<url::Url>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Arc<Keys>)>>,
    watched: Mutex<HashMap<String, Watched>>,
}

/// Most `did:webvh` DIDs whose watchers are remembered.
const MAX_WATCHED: usize = 4096;

impl Resolver {
    pub fn new(fetcher: Arc<Fetcher>) -> Self {
        Self {
            fetcher,
            origins: Vec::new(),
            ttl: DOC_TTL,
            cache: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// How long a resolved document is used before it is fetched again.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Origins whose scheme is known (a node's own public URL, a wallet's node): their
    /// `did:web` DIDs are fetched with that scheme, even on a loopback host. See
    /// [`did_web_url_for`].
    pub fn with_origins(mut self, origins: impl IntoIterator<Item = url::Url>) -> Self {
        self.origins.extend(origins);
        self
    }

    /// Drop what the cache holds for `did`: the next resolution fetches it again (its
    /// holder moved, say).
    pub fn forget(&self, did: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(did);
        }
    }

    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    pub async fn resolve(&self, did: &str) -> Result<Arc<Keys>, ResolveError> {
        if let Some((at, keys)) = self.cache.lock().ok().and_then(|c| c.get(did).cloned()) {
            if at.elapsed() < self.ttl {
                return Ok(keys);
            }
        }
        let parsed = Did::parse(did).map_err(|_| ResolveError::Invalid(did.into()))?;
        let keys = Arc::new(match parsed.method() {
            "key" => did_key(did)?,
            "jwk" => did_jwk(did)?,
            "web" => {
                let url = did_web_url_for(&parsed, self.fetcher.policy().allow_local, &self.origins)?;
                let doc = self.fetcher.get_json(&url).await?;
                Keys::from_document(did, &doc)?
            }
            "webvh" => self.webvh(did).await?,
            other => return Err(ResolveError::Unsupported(other.into())),
        });
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 4096 {
                c.clear();
            }
            c.insert(did.to_owned(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }
}

impl Resolver {
    /// Fetch a `did:webvh` log, verify all of it, and read the keys of its last version.
    /// A moved DID resolves to its new document; its own method ids still name the keys.
    async fn webvh(&self, did: &str) -> Result<Keys, ResolveError> {
        let url = self.webvh_log_url(did)?;
        let log = match self.verified_log(did, &url).await {
            Ok((log, _)) => log,
            Err(ResolveError::Fetch(e)) if e.no_answer() => match self.log_from_watchers(did).await {
                Some(log) => log,
                None => return Err(ResolveError::Fetch(e)),
            },
            Err(e) => return Err(e),
        };
        if let Ok(mut w) = self.watched.lock() {
            if w.len() >= MAX_WATCHED && !w.contains_key(did) {
                w.clear();
            }
            w.insert(did.to_owned(), Watched { watchers: log.watchers.clone(), entries: log.entries });
        }
        if log.deactivated {
            return Err(ResolveError::Unresolvable { did: did.into(), why: "the DID is deactivated".into() });
        }
        let current = log.document.get("id").and_then(Value::as_str).unwrap_or(did).to_owned();
        let mut keys = Keys::from_document(&current, &log.document)?;
        if current != did {
            keys.aliases.push(did.to_owned());
        }
        Ok(keys)
    }

    /// Fetch the log at `url` and verify all of it for `did`; with its text.
    pub async fn verified_log(&self, did: &str, url: &str) -> Result<(webvh::VerifiedLog, String), ResolveError> {
        let body = self.fetcher.get_limited(url, "text/jsonl, application/jsonl", webvh::MAX_LOG_BYTES).await?;
        let raw = String::from_utf8(body.to_vec())
            .map_err(|_| ResolveError::InvalidLog { did: did.into(), why: "the log is not UTF-8".into() })?;
        let log = webvh::verify_log(did, &raw)
            .await
            .map_err(|e| ResolveError::InvalidLog { did: did.into(), why: e.to_string() })?;
        Ok((log, raw))
    }

    /// The DID's host gave no answer: its log from a watcher the last verified version
    /// named, if one holds a copy that verifies and is not older.
    async fn log_from_watchers(&self, did: &str) -> Option<webvh::VerifiedLog> {
        let known = self.watched.lock().ok()?.get(did).cloned()?;
        let scid = WebvhDid::parse(did).ok()?.scid().to_owned();
        for watcher in &known.watchers {
            let url = format!("{}/log?scid={scid}", watcher.trim_end_matches('/'));
            match self.verified_log(did, &url).await {
                Ok((log, _)) if log.entries >= known.entries => {
                    tracing::info!(%did, %watcher, "the DID's host is down: its log came from a watcher");
                    return Some(log);
                }
                Ok(_) => tracing::warn!(%did, %watcher, "a watcher holds an older log than was seen: not used"),
                Err(e) => tracing::warn!(%did, %watcher, error = %e, "a watcher's copy of the log was not used"),
            }
        }
        None
    }

    /// Where else `url`, a resource under `did`'s host and path (a status list), may be
    /// fetched: at the watchers the DID's last verified log named (`<watcher>/resource`).
    pub fn mirrors(&self, did: &str, url: &str) -> Vec<String> {
        let Some(known) = self.watched.lock().ok().and_then(|w| w.get(did).cloned()) else { return Vec::new() };
        let (Ok(base), Ok(parsed)) = (self.webvh_base_url(did), WebvhDid::parse(did)) else { return Vec::new() };
        let Some(path) = url.strip_prefix(&base).filter(|p| !p.is_empty()) else { return Vec::new() };
        let path: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        known
            .watchers
            .iter()
            .map(|w| format!("{}/resource?scid={}&path={path}", w.trim_end_matches('/'), parsed.scid()))
            .collect()
    }

    /// Where a `did:webvh` log is: the `did:web` URL of the same host and path, with
    /// `did.jsonl` for `did.json`.
    pub fn webvh_log_url(&self, did: &str) -> Result<String, ResolveError> {
        let parsed = WebvhDid::parse(did).map_err(|_| ResolveError::Invalid(did.into()))?;
        let web = did_web_url_for(&parsed.web_did(), self.fetcher.policy().allow_local, &self.origins)?;
        Ok(format!("{}l", web))
    }

    /// The URL a `did:webvh` DID's relative resources are under (`https://host/path/`).
    pub fn webvh_base_url(&self, did: &str) -> Result<String, ResolveError> {
        let log = self.webvh_log_url(did)?;
        let base = log.trim_end_matches("did.jsonl");
        Ok(base.strip_suffix(".well-known/").unwrap_or(base).to_owned())
    }
}

fn did_key(did: &str) -> Result<Keys, ResolveError> {
    let mb = did.strip_prefix("did:key:").unwrap_or_default();
    if let Ok(x) = X25519Public::from_multibase(mb) {
        // An X25519 did:key can only be encrypted to: it has no signature method.
        let agreement = vec![AgreementMethod { id: format!("{did}#{mb}"), key: x }];
        return Ok(Keys::bare(did, Vec::new(), agreement));
    }
    let key = PublicKey::from_multibase(mb)
        .map_err(|_| ResolveError::Unresolvable { did: did.into(), why: "not an Ed25519 or P-256 did:key".into() })?;
    Ok(Keys::single(did, format!("{did}#{mb}"), key))
}

fn did_jwk(did: &str) -> Result<Keys, ResolveError> {
    let bad = |why: &str| ResolveError::Unresolvable { did: did.into(), why: why.into() };
    let jwk: Value = b64url_decode(did.strip_prefix("did:jwk:").unwrap_or_default())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("not a base64url JWK"))?;
    if let Some(x) = X25519Public::from_jwk(&jwk) {
        let agreement = vec![AgreementMethod { id: format!("{did}#0"), key: x }];
        return Ok(Keys::bare(did, Vec::new(), agreement));
    }
    let key = PublicKey::from_jwk(&jwk).ok_or_else(|| bad("not an Ed25519 or P-256 public JWK"))?;
    Ok(Keys::single(did, format!("{did}#0"), key))
}

/// The URL of a `did:web` document: HTTPS, or HTTP for a local host when the local
/// network is allowed (development and tests).
pub fn did_web_url(did: &Did, allow_local: bool) -> Result<String, ResolveError> {
    did_web_url_for(did, allow_local, &[])
}

/// The URL of a `did:web` document. The did:web method says HTTPS. A host among `known`
/// (with its port) is fetched with that origin's scheme: a node whose public URL is
/// `https://localhost:8443` serves its users' documents over HTTPS. Other loopback or
/// private hosts are fetched over plain HTTP only when the local network is allowed
/// (development and tests, where nodes run without TLS).
pub fn did_web_url_for(did: &Did, allow_local: bool, known: &[url::Url]) -> Result<String, ResolveError> {
    let id = did.as_str().strip_prefix("did:web:").ok_or_else(|| ResolveError::Invalid(did.to_string()))?;
    let mut parts = id.split(':');
    let host = percent_encoding::percent_decode_str(parts.next().unwrap_or_default())
        .decode_utf8()
        .map_err(|_| ResolveError::Invalid(did.to_string()))?
        .into_owned();
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return Err(ResolveError::Invalid(did.to_string()));
    }
    let path: Vec<&str> = parts.collect();
    let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let local = bare == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| !crate::net::is_public(ip));
    let origin = |u: &url::Url| {
        let h = u.host_str()?;
        Some(match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_owned(),
        })
    };
    let scheme = match known.iter().find(|u| origin(u).is_some_and(|o| o.eq_ignore_ascii_case(&host))) {
        Some(u) if u.scheme() == "http" && !(allow_local && local) => "https",
        Some(u) => u.scheme(),
        None if allow_local && local => "http",
        None => "https",
    };
    let path = if path.is_empty() { ".well-known".to_owned() } else { path.join("/") };
    Ok(format!("{scheme}://{host}/{path}/did.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::did::DidDocument;
    use serde_json::json;

    #[test]
    fn web_urls() {
        let d = |s: &str| Did::parse(s).unwrap();
        assert_eq!(did_web_url(&d("did:web:example.org"), false).unwrap(), "https://example.org/.well-known/did.json");
        assert_eq!(
            did_web_url(&d("did:web:example.org:users:alice"), false).unwrap(),
            "https://example.org/users/alice/did.json"
        );
        assert_eq!(
            did_web_url(&d("did:web:localhost%3A8080:users:bob"), true).unwrap(),
            "http://localhost:8080/users/bob/did.json"
        );
        assert_eq!(
            did_web_url(&d("did:web:localhost%3A8080:users:bob"), false).unwrap(),
            "https://localhost:8080/users/bob/did.json"
        );
    }

    /// A node (or a wallet's node) on loopback behind TLS: its own DIDs are fetched over
    /// HTTPS, as its public URL says, not over a guessed plain HTTP.
    #[test]
    fn known_origins_keep_their_scheme() {
        let d = |s: &str| Did::parse(s).unwrap();
        let known =
            [url::Url::parse("https://localhost:8443").unwrap(), url::Url::parse("http://127.0.0.1:9000").unwrap()];
        let bob = d("did:web:localhost%3A8443:users:bob");
        assert_eq!(did_web_url_for(&bob, true, &known).unwrap(), "https://localhost:8443/users/bob/did.json");
        assert_eq!(did_web_url_for(&bob, false, &known).unwrap(), "https://localhost:8443/users/bob/did.json");
        // Another port of the same host is another origin.
        let other = d("did:web:localhost%3A8080:users:bob");
        assert_eq!(did_web_url_for(&other, true, &known).unwrap(), "http://localhost:8080/users/bob/did.json");
        // A plain-HTTP origin is used only where the local network is allowed.
        let dev = d("did:web:127.0.0.1%3A9000");
        assert_eq!(did_web_url_for(&dev, true, &known).unwrap(), "http://127.0.0.1:9000/.well-known/did.json");
        assert_eq!(did_web_url_for(&dev, false, &known).unwrap(), "https://127.0.0.1:9000/.well-known/did.json");
    }

    #[test]
    fn documents_from_other_implementations() {
        let key = crate::keys::Ed25519KeyPair::generate().public();
        let did = "did:web:example.org";
        let doc = json!({
            "id": did,
            "verificationMethod": [{"id": "#a", "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": key.to_jwk()}],
            "authentication": ["#a"],
            "assertionMethod": [{"id": format!("{did}#b"), "type": "Multikey", "controller": did, "publicKeyMultibase": key.to_multibase()}],
        });
        let keys = Keys::from_document(did, &doc).unwrap();
        assert!(keys.key_for("did:web:example.org#a", Relationship::Authentication).is_ok());
        assert!(keys.key_for("did:web:example.org#b", Relationship::AssertionMethod).is_ok());
        assert!(matches!(
            keys.key_for("did:web:example.org#a", Relationship::AssertionMethod),
            Err(ResolveError::NotForRelationship { .. })
        ));
        assert!(matches!(
            keys.key_for("did:web:example.org#c", Relationship::AssertionMethod),
            Err(ResolveError::UnknownKey { .. })
        ));
        assert!(Keys::from_document("did:web:other.org", &doc).is_err());
    }

    #[test]
    fn key_agreement_keys_are_listed_apart() {
        let x = crate::keys::X25519KeyPair::generate().public();
        let y = crate::keys::X25519KeyPair::generate().public();
        let ed = crate::keys::Ed25519KeyPair::generate().public();
        let did = "did:web:example.org";
        let doc = json!({
            "id": did,
            "verificationMethod": [
                {"id": "#x", "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": x.to_jwk()},
                {"id": "#unlisted", "type": "Multikey", "controller": did, "publicKeyMultibase": y.to_multibase()},
                {"id": "#ed", "type": "Multikey", "controller": did, "publicKeyMultibase": ed.to_multibase()},
            ],
            "authentication": ["#ed"],
            "keyAgreement": ["#x", {"id": "#y", "type": "Multikey", "controller": did, "publicKeyMultibase": y.to_multibase()}],
        });
        let keys = Keys::from_document(did, &doc).unwrap();
        let ids: Vec<&str> = keys.agreement.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["did:web:example.org#x", "did:web:example.org#y"]);
        assert_eq!(keys.agreement_key("did:web:example.org#x").unwrap(), x);
        assert!(matches!(keys.agreement_key("did:web:example.org#unlisted"), Err(ResolveError::UnknownKey { .. })));
        assert!(matches!(keys.agreement_key("did:web:example.org#ed"), Err(ResolveError::NotForRelationship { .. })));

        let did = Did::key(&ed);
        let keys = did_key(did.as_str()).unwrap();
        let derived = DidDocument::for_did_key(&ed);
        assert_eq!(keys.agreement[0].id, derived.key_agreement[0]);
        assert_eq!(keys.agreement[0].key, ed.to_x25519());
        let xdid = format!("did:key:{}", x.to_multibase());
        let keys = did_key(&xdid).unwrap();
        assert!(keys.methods.is_empty());
        assert_eq!(keys.agreement_key(&format!("{xdid}#{}", x.to_multibase())).unwrap(), x);
    }

    /// Resources under a did:webvh's URL are found at the watchers its last verified log
    /// named; nothing else is.
    #[test]
    fn mirrors_of_a_webvh_resource() {
        let resolver = Resolver::new(Arc::new(Fetcher::new(crate::net::NetPolicy { allow_local: false }).unwrap()));
        let did = "did:webvh:QmQWnpdiyt8toEjCmmnb3hGQgxTob6ymny5eZHCsmZB78p:example.org:users:alice";
        assert_eq!(resolver.webvh_base_url(did).unwrap(), "https://example.org/users/alice/");
        assert_eq!(
            resolver.webvh_base_url("did:webvh:QmQWnpdiyt8toEjCmmnb3hGQgxTob6ymny5eZHCsmZB78p:example.org").unwrap(),
            "https://example.org/"
        );
        let list = "https://example.org/users/alice/status/l1";
        assert!(resolver.mirrors(did, list).is_empty(), "no log seen: no watcher known");
        resolver.watched.lock().unwrap().insert(
            did.into(),
            Watched { watchers: vec!["https://standby.example/webvh-watcher/".into()], entries: 2 },
        );
        assert_eq!(
            resolver.mirrors(did, list),
            ["https://standby.example/webvh-watcher/resource?scid=QmQWnpdiyt8toEjCmmnb3hGQgxTob6ymny5eZHCsmZB78p&path=status%2Fl1"]
        );
        assert!(resolver.mirrors(did, "https://example.org/users/bob/status/l1").is_empty(), "another DID's");
        assert!(resolver.mirrors(did, "https://evil.example/users/alice/status/l1").is_empty(), "another host");
        assert!(resolver
            .mirrors("did:webvh:QmQWnpdiyt8toEjCmmnb3hGQgxTob6ymny5eZHCsmZB78q:example.org:users:alice", list)
            .is_empty());
    }

    #[test]
    fn did_key_and_did_jwk() {
        let key = crate::p256key::P256KeyPair::generate().public();
        let did = format!("did:key:{}", key.to_multibase());
        let keys = did_key(&did).unwrap();
        assert!(keys.key_for(&format!("{did}#{}", key.to_multibase()), Relationship::AssertionMethod).is_ok());
        let jwk = format!("did:jwk:{}", crate::ids::b64url(key.to_jwk().to_string().as_bytes()));
        assert!(did_jwk(&jwk).unwrap().key_for(&format!("{jwk}#0"), Relationship::Authentication).is_ok());
        assert!(did_jwk("did:jwk:bm90LWpzb24").is_err());
    }
}

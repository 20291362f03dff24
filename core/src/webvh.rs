//! `did:webvh` v1.0 (DIF): DIDs with a verifiable history that can change host.
//!
//! A `did:webvh` DID is `did:webvh:<SCID>:<host>[:path…]`. Its log, `did.jsonl`, lives where
//! the `did:web` document of the same host and path would (`…/did.jsonl` beside
//! `…/did.json`). Each line is an entry `{versionId, versionTime, parameters, state, proof}`:
//! `state` is the DID document of that version, `proof` an `eddsa-jcs-2022` Data Integrity
//! proof by one of the active `updateKeys`. The SCID is the hash of the first entry, and
//! each entry's hash chains it to the one before, so the whole history is self-certifying:
//! whoever serves the log cannot change it without the update key.
//!
//! - Writing ([`create`], [`append`]) is ours: the wallet signs with its root key.
//! - Verifying ([`verify_log`]) is the DIF's own implementation, `didwebvh-rs`, behind our
//!   bounds on size, entry count and nesting. Every log we write is thus checked by an
//!   independent implementation each time it is resolved.
//! - [`parallel_did_web`] makes the `did:web` document the method defines beside it, so
//!   `did:web` verifiers keep working.

use crate::did::Did;
use crate::keys::{Ed25519KeyPair, Ed25519Public};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// The `method` parameter this module writes and accepts.
pub const METHOD: &str = "did:webvh:1.0";
/// The largest log accepted, in bytes.
pub const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;
/// The most entries accepted in one log.
pub const MAX_ENTRIES: usize = 5000;
/// How deep an entry may nest (a DID document is shallow).
const MAX_DEPTH: usize = 16;
const CRYPTOSUITE: &str = "eddsa-jcs-2022";
const PLACEHOLDER: &str = "{SCID}";

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WebvhError {
    #[error("{0} is not a did:webvh DID: {1}")]
    InvalidDid(String, String),
    #[error("the DID log is invalid: {0}")]
    InvalidLog(String),
    #[error("cannot write the log entry: {0}")]
    Write(String),
}

/// A parsed `did:webvh` DID: its SCID, host (with `:port`) and path segments.
#[derive(Clone, PartialEq, Eq)]
pub struct WebvhDid {
    scid: String,
    host: String,
    path: Vec<String>,
}

impl WebvhDid {
    pub fn parse(did: &str) -> Result<Self, WebvhError> {
        let bad = |why: &str| WebvhError::InvalidDid(did.chars().take(200).collect(), why.into());
        Did::parse(did).map_err(|_| bad("not a DID"))?;
        let rest = did.strip_prefix("did:webvh:").ok_or_else(|| bad("it does not start with did:webvh:"))?;
        let mut parts = rest.split(':');
        let scid = parts.next().unwrap_or_default();
        if scid.len() != 46 || !scid.starts_with("Qm") || bs58::decode(scid).into_vec().is_err() {
            return Err(bad("the SCID must be a base58btc SHA-256 multihash (46 characters, Qm…)"));
        }
        let host = percent_encoding::percent_decode_str(parts.next().unwrap_or_default())
            .decode_utf8()
            .map_err(|_| bad("the host is not UTF-8"))?
            .into_owned();
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host.as_str(), None),
        };
        if let Some(port) = port {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("the port must be 1 to 65535"));
            }
            if !(1..=65535).contains(&port.parse::<u32>().unwrap_or(0)) {
                return Err(bad("the port must be 1 to 65535"));
            }
        }
        if name.is_empty()
            || name.len() > 253
            || name.parse::<std::net::IpAddr>().is_ok()
            || name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::Ipv6Addr>().is_ok()
            || !name
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            || name.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("the host must be a domain name (not an IP address)"));
        }
        let mut path = Vec::new();
        for seg in parts {
            let decoded = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| bad("a path segment is not UTF-8"))?;
            if decoded.is_empty()
                || decoded == "."
                || decoded == ".."
                || decoded.contains(['/', '\\', '\0'])
                || decoded.trim() != decoded
            {
                return Err(bad("a path segment is empty, '.', '..' or holds '/', '\\' or spaces"));
            }
            path.push(seg.to_owned());
        }
        Ok(Self { scid: scid.to_owned(), host: host.to_ascii_lowercase(), path })
    }

    /// The DID of a log that will live at `host` (with `:port`) and `path`, before its SCID
    /// is known: `did:webvh:{SCID}:…`.
    pub fn template(host: &str, path: &[&str]) -> String {
        let mut did = format!("did:webvh:{PLACEHOLDER}:{}", host.replace(':', "%3A"));
        for seg in path {
            did.push(':');
            did.push_str(seg);
        }
        did
    }

    pub fn scid(&self) -> &str {
        &self.scid
    }

    /// The host with its port, as in a URL (`example.com:8443`).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The `did:web` DID at the same host and path: the parallel DID the method defines.
    pub fn web_did(&self) -> Did {
        let mut did = format!("did:web:{}", self.host.replace(':', "%3A"));
        for seg in &self.path {
            did.push(':');
            did.push_str(seg);
        }
        Did::parse(&did).unwrap_or_else(|_| unreachable!("made from checked parts"))
    }

    /// The same DID (same SCID) at another host and path: where a move takes it.
    pub fn moved_to(&self, host: &str, path: &[&str]) -> Result<Self, WebvhError> {
        Self::parse(&Self::template(host, path).replace(PLACEHOLDER, &self.scid))
    }

    /// The path of the log under the host: `users/alice/did.jsonl`, or
    /// `.well-known/did.jsonl` for a DID without a path.
    pub fn log_path(&self) -> String {
        if self.path.is_empty() {
            ".well-known/did.jsonl".into()
        } else {
            format!("{}/did.jsonl", self.path.join("/"))
        }
    }
}

impl fmt::Display for WebvhDid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "did:webvh:{}:{}", self.scid, self.host.replace(':', "%3A"))?;
        for seg in &self.path {
            write!(f, ":{seg}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WebvhDid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebvhDid({self})")
    }
}

/// `base58btc(multihash(sha256(bytes)))`, as the method hashes everything.
pub fn multihash(bytes: &[u8]) -> String {
    let mut mh = vec![0x12, 0x20];
    mh.extend_from_slice(&Sha256::digest(bytes));
    bs58::encode(mh).into_string()
}

/// The pre-rotation commitment to a future update key (`nextKeyHashes`).
pub fn key_hash(key: &Ed25519Public) -> String {
    multihash(key.to_multibase().as_bytes())
}

fn jcs(value: &Value) -> Result<Vec<u8>, WebvhError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| WebvhError::Write(format!("JCS: {e}")))
}

/// The current time as the method writes it (UTC, whole seconds), later than `after`:
/// each entry's `versionTime` must be later than the one before, and resolvers refuse
/// times in the future, so a second update within the same second waits for the next one.
/// (Whole seconds: `didwebvh-rs` re-serializes `versionTime` without fractions before
/// hashing, so a fractional time would not verify there.)
fn version_time(after: Option<&str>) -> String {
    use time::format_description::well_known::Rfc3339;
    let prev = after.and_then(|p| time::OffsetDateTime::parse(p, &Rfc3339).ok());
    loop {
        let now = time::OffsetDateTime::now_utc();
        let secs = now.replace_nanosecond(0).unwrap_or(now);
        match prev {
            Some(p) if secs <= p => {
                let wait = (p + time::Duration::seconds(1)) - now;
                std::thread::sleep(std::time::Duration::from_millis(wait.whole_milliseconds().clamp(1, 1100) as u64));
            }
            _ => return created_now_at(secs),
        }
    }
}

/// A proof's `created`: UTC, whole seconds.
fn created_now() -> String {
    created_now_at(time::OffsetDateTime::now_utc())
}

fn created_now_at(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// Sign `entry` (without proof) with an `eddsa-jcs-2022` proof by `key`, and add it.
fn sign(entry: &mut Map<String, Value>, key: &Ed25519KeyPair) -> Result<(), WebvhError> {
    let mb = key.public().to_multibase();
    let config = json!({
        "type": "DataIntegrityProof",
        "cryptosuite": CRYPTOSUITE,
        "verificationMethod": format!("did:key:{mb}#{mb}"),
        "created": created_now(),
        "proofPurpose": "assertionMethod",
    });
    let mut hash = Sha256::digest(jcs(&config)?).to_vec();
    hash.extend_from_slice(&Sha256::digest(jcs(&Value::Object(entry.clone()))?));
    let mut proof = config;
    proof["proofValue"] = Value::String(format!("z{}", bs58::encode(key.sign(&hash)).into_string()));
    entry.insert("proof".into(), Value::Array(vec![proof]));
    Ok(())
}

/// One line of a log, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry as one JSON line, without the trailing newline.
    pub line: String,
    pub version_id: String,
}

/// What the first entry sets beside the update keys.
#[derive(Clone, Debug, Default)]
pub struct Genesis {
    /// When the DID is made; now if `None` (for histories built ahead of time).
    pub at: Option<time::OffsetDateTime>,
    /// Commitments to the next update keys ([`key_hash`]); empty for none.
    pub next_key_hashes: Vec<String>,
    pub portable: bool,
    /// Seconds resolvers may cache the DID (the method's default is 3600).
    pub ttl: Option<u32>,
}

/// Create a DID: `state` is the first document, written with the DID template
/// ([`WebvhDid::template`]) wherever the DID appears. Signed by `signer`, which must be
/// among `update_keys`. Returns the DID and its first entry.
pub fn create(
    state: Value,
    update_keys: &[Ed25519Public],
    genesis: &Genesis,
    signer: &Ed25519KeyPair,
) -> Result<(WebvhDid, Entry), WebvhError> {
    if !update_keys.contains(&signer.public()) {
        return Err(WebvhError::Write("the signing key is not among the update keys".into()));
    }
    let id = state.get("id").and_then(Value::as_str).unwrap_or_default();
    if !id.starts_with(&format!("did:webvh:{PLACEHOLDER}:")) {
        return Err(WebvhError::Write("the document's id must be the DID template (did:webvh:{SCID}:…)".into()));
    }
    let mut parameters = json!({
        "method": METHOD,
        "scid": PLACEHOLDER,
        "updateKeys": update_keys.iter().map(Ed25519Public::to_multibase).collect::<Vec<_>>(),
        "portable": genesis.portable,
    });
    if !genesis.next_key_hashes.is_empty() {
        parameters["nextKeyHashes"] = json!(genesis.next_key_hashes);
    }
    if let Some(ttl) = genesis.ttl {
        parameters["ttl"] = json!(ttl);
    }
    let preliminary = json!({
        "versionId": PLACEHOLDER,
        "versionTime": genesis.at.map(created_now_at).unwrap_or_else(|| version_time(None)),
        "parameters": parameters,
        "state": state,
    });
    let scid = multihash(&jcs(&preliminary)?);
    let text = serde_json::to_string(&preliminary).map_err(|e| WebvhError::Write(e.to_string()))?;
    let mut entry: Map<String, Value> = serde_json::from_str(&text.replace(PLACEHOLDER, &scid))
        .map_err(|e| WebvhError::Write(format!("after putting in the SCID: {e}")))?;
    let version_id = format!("1-{}", multihash(&jcs(&Value::Object(entry.clone()))?));
    entry.insert("versionId".into(), Value::String(version_id.clone()));
    sign(&mut entry, signer)?;
    let did_text = entry["state"]["id"].as_str().unwrap_or_default().to_owned();
    let did = WebvhDid::parse(&did_text)?;
    let line = serde_json::to_string(&entry).map_err(|e| WebvhError::Write(e.to_string()))?;
    Ok((did, Entry { line, version_id }))
}

/// Append a version after `last` (the log's last line): the new document `state`, the
/// changed `parameters` (an empty object for none), signed by an authorised update key.
pub fn append(last: &str, state: Value, parameters: Value, signer: &Ed25519KeyPair) -> Result<Entry, WebvhError> {
    append_at(last, state, parameters, signer, None)
}

/// [`append`], dated `at` (whole seconds, later than the last entry) instead of now: for
/// logs built ahead of time (benchmarks, imports of a history).
pub fn append_at(
    last: &str,
    state: Value,
    parameters: Value,
    signer: &Ed25519KeyPair,
    at: Option<time::OffsetDateTime>,
) -> Result<Entry, WebvhError> {
    let last: Value = serde_json::from_str(last).map_err(|e| WebvhError::Write(format!("the last entry: {e}")))?;
    let prev_id = last.get("versionId").and_then(Value::as_str).unwrap_or_default();
    let number: u64 = prev_id
        .split_once('-')
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(|| WebvhError::Write("the last entry has no versionId".into()))?;
    if !parameters.is_object() {
        return Err(WebvhError::Write("parameters must be an object".into()));
    }
    let prev_time = last.get("versionTime").and_then(Value::as_str);
    let mut entry = Map::new();
    entry.insert("versionId".into(), Value::String(prev_id.to_owned()));
    let stamp = match at {
        None => version_time(prev_time),
        Some(t) => {
            let t = t.replace_nanosecond(0).unwrap_or(t);
            let after = prev_time
                .and_then(|p| time::OffsetDateTime::parse(p, &time::format_description::well_known::Rfc3339).ok());
            if after.is_some_and(|p| t <= p) {
                return Err(WebvhError::Write("the entry must be dated after the last one".into()));
            }
            created_now_at(t)
        }
    };
    entry.insert("versionTime".into(), Value::String(stamp));
    entry.insert("parameters".into(), parameters);
    entry.insert("state".into(), state);
    let version_id = format!("{}-{}", number + 1, multihash(&jcs(&Value::Object(entry.clone()))?));
    entry.insert("versionId".into(), Value::String(version_id.clone()));
    sign(&mut entry, signer)?;
    let line = serde_json::to_string(&entry).map_err(|e| WebvhError::Write(e.to_string()))?;
    Ok(Entry { line, version_id })
}

/// A log that verified: the document of its last version and what resolvers report.
#[derive(Clone, Debug)]
pub struct VerifiedLog {
    /// The DID document of the last version (`state`, as signed).
    pub document: Value,
    pub version_id: String,
    pub version_number: u32,
    pub scid: String,
    pub portable: bool,
    pub deactivated: bool,
    /// The update keys in force after the last entry.
    pub update_keys: Vec<String>,
    /// Commitments in force after the last entry (pre-rotation).
    pub next_key_hashes: Vec<String>,
    /// The `ttl` parameter in force, in seconds.
    pub ttl: Option<u64>,
    /// The `watchers` in force: URLs of did:webvh watchers that mirror the log.
    pub watchers: Vec<String>,
    /// Number of entries.
    pub entries: usize,
}

/// Check a log's shape before the verifier reads it: size, entry count, and nesting.
fn bound(raw: &str) -> Result<(), WebvhError> {
    if raw.len() > MAX_LOG_BYTES {
        return Err(WebvhError::InvalidLog(format!("larger than {MAX_LOG_BYTES} bytes")));
    }
    let lines = raw.lines().filter(|l| !l.trim().is_empty()).count();
    if lines == 0 {
        return Err(WebvhError::InvalidLog("it has no entries".into()));
    }
    if lines > MAX_ENTRIES {
        return Err(WebvhError::InvalidLog(format!("more than {MAX_ENTRIES} entries")));
    }
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if crate::json::nesting_depth(line.as_bytes()) > MAX_DEPTH {
            return Err(WebvhError::InvalidLog(format!("entry {} nests deeper than {MAX_DEPTH} levels", i + 1)));
        }
    }
    Ok(())
}

/// Verify the whole log `raw` (JSON Lines) for `did`: SCID, every entry's hash and proof,
/// version order and times, update-key authorisation (with pre-rotation), the `portable`
/// rules, and that one of its versions is `did`. The verifier is `didwebvh-rs`; a panic
/// inside it is a refusal, not a crash.
pub async fn verify_log(did: &str, raw: &str) -> Result<VerifiedLog, WebvhError> {
    use didwebvh_rs::log_entry::LogEntryMethods;
    use futures_util::FutureExt;
    WebvhDid::parse(did)?;
    bound(raw)?;
    let raw: String = raw.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n");
    let work = async {
        let mut state = didwebvh_rs::DIDWebVHState::default();
        let (entry, meta) = state
            .resolve_log_owned(did, &raw, None)
            .await
            .map_err(|e| WebvhError::InvalidLog(plain(&e.to_string())))?;
        let entries = state.log_entries().len();
        let watchers = state
            .log_entries()
            .last()
            .and_then(|e| e.validated_parameters.watchers.as_deref().cloned())
            .unwrap_or_default();
        // Parameters not repeated in an entry keep their earlier value: the latest of each.
        let (mut update_keys, mut next_key_hashes, mut ttl) = (Vec::new(), Vec::new(), None);
        for e in state.log_entries() {
            let p = e.log_entry.get_parameters();
            if let Some(keys) = p.update_keys {
                update_keys = keys.iter().map(ToString::to_string).collect();
            }
            if let Some(hashes) = p.next_key_hashes {
                next_key_hashes = hashes.iter().map(ToString::to_string).collect();
            }
            if let Some(t) = p.ttl {
                ttl = Some(u64::from(t));
            }
        }
        Ok::<_, WebvhError>(VerifiedLog {
            document: entry.get_state().clone(),
            version_id: meta.version_id,
            version_number: meta.version_number,
            scid: meta.scid,
            portable: meta.portable,
            deactivated: meta.deactivated,
            update_keys,
            next_key_hashes,
            ttl,
            watchers,
            entries,
        })
    };
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(%did, "the did:webvh verifier panicked on a log; refused");
            Err(WebvhError::InvalidLog("the verifier could not process it".into()))
        }
    }
}

/// One line of an error from the verifier.
fn plain(s: &str) -> String {
    s.lines().next().unwrap_or_default().chars().take(300).collect()
}

/// Whether two DID documents say the same: equal once methods, relationship lists,
/// services and `alsoKnownAs` are put in order. A node checks with it that the document a
/// wallet signed is the one the node serves.
pub fn same_document(a: &Value, b: &Value) -> bool {
    fn normal(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(obj) = v.as_object_mut() {
            obj.retain(|_, x| !x.as_array().is_some_and(Vec::is_empty));
            for (key, x) in obj.iter_mut() {
                if key == "@context" {
                    continue;
                }
                if let Some(list) = x.as_array_mut() {
                    list.sort_by_key(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other
                            .get("id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| other.to_string()),
                    });
                }
            }
        }
        v
    }
    normal(a) == normal(b)
}

/// The parallel `did:web` document of a `did:webvh` document (the method's §"Publishing a
/// Parallel did:web DID"): the implicit `#files` and `#whois` services added, every
/// `did:webvh:<SCID>:` made `did:web:`, and the `did:webvh` DID in `alsoKnownAs`.
pub fn parallel_did_web(document: &Value, did: &WebvhDid, base_url: &str) -> Value {
    let mut doc = document.clone();
    let webvh = did.to_string();
    let base = base_url.trim_end_matches('/');
    if let Some(obj) = doc.as_object_mut() {
        let services = obj.entry("service").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = services.as_array_mut() {
            let has = |list: &Vec<Value>, frag: &str| {
                list.iter().any(|s| {
                    s.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id == format!("#{frag}") || id == format!("{webvh}#{frag}"))
                })
            };
            if !has(list, "files") {
                list.push(json!({"id": format!("{webvh}#files"), "type": "relativeRef", "serviceEndpoint": format!("{base}/")}));
            }
            if !has(list, "whois") {
                list.push(json!({"@context": "https://identity.foundation/linked-vp/contexts/v1", "id": format!("{webvh}#whois"), "type": "LinkedVerifiablePresentation", "serviceEndpoint": format!("{base}/whois.vp")}));
            }
        }
    }
    let text =
        serde_json::to_string(&doc).unwrap_or_default().replace(&format!("did:webvh:{}:", did.scid()), "did:web:");
    let mut doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let web = did.web_did().to_string();
    if let Some(obj) = doc.as_object_mut() {
        let aka = obj.entry("alsoKnownAs").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = aka.as_array_mut() {
            list.push(Value::String(webvh));
            let mut seen = std::collections::HashSet::new();
            list.retain(|v| v.as_str().is_some_and(|s| s != web && seen.insert(s.to_owned())));
        }
    }
    doc
}

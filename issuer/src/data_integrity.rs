//! Securing a credential with a Data Integrity proof, through `ssi`: `eddsa-rdfc-2022` for
//! Ed25519 keys and `ecdsa-rdfc-2019` for P-256. The suite is named, never picked by
//! `ssi`, whose automatic choice for Ed25519 is the legacy 2018 suite.
//!
//! JSON-LD processing never fetches: the caller passes every context the document names
//! beyond those `ssi` carries (the VC Data Model 2.0 context among them), e.g. the node's
//! own context (`credential::context_document`), fetched beforehand under its own limits.

use serde_json::{json, Value};
use sichat_core::p256key::{KeyPair, PublicKey};
use ssi_claims_core::{SignatureEnvironment, VerificationParameters};
use ssi_data_integrity::suites::{EcdsaRdfc2019, EdDsaRdfc2022};
use ssi_data_integrity::{CryptographicSuite, DataIntegrity, ProofOptions};
use ssi_json_ld::ContextLoader;
use ssi_verification_methods::{Multikey, ProofPurpose as SsiPurpose, ReferenceOrOwned, SingleSecretSigner};
use std::collections::HashMap;

/// Extra JSON-LD contexts by URL (the document's text).
pub type Contexts = HashMap<String, String>;

fn loader(contexts: &Contexts) -> Result<ContextLoader, String> {
    ContextLoader::default().with_context_map_from(contexts.clone()).map_err(|e| format!("JSON-LD context: {e}"))
}

/// The context URLs a document names (at any depth) that `ssi` does not carry.
pub fn remote_contexts(document: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                let mut push = |c: &Value| {
                    if let Some(u) = c.as_str() {
                        if u != crate::credential::VCDM2_CONTEXT && !out.iter().any(|x| x == u) {
                            out.push(u.to_owned());
                        }
                    }
                };
                match o.get("@context") {
                    Some(Value::Array(a)) => a.iter().for_each(&mut push),
                    Some(c) => push(c),
                    None => {}
                }
                o.iter().filter(|(k, _)| *k != "@context").for_each(|(_, v)| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(document, &mut out);
    out
}

/// The deepest nesting (objects and arrays) of a document given to JSON-LD processing,
/// whose expansion recurses per level: a credential or a presentation carrying one needs
/// far fewer, and a hostile one 114 levels deep overflowed a 2 MiB stack.
pub const MAX_DEPTH: usize = 32;
/// The most JSON values (objects, arrays, scalars) a document may have.
pub const MAX_VALUES: usize = 20_000;
/// The most bytes of keys and strings a document may carry (a status list's bitstring fits).
pub const MAX_BYTES: usize = 1 << 20;
/// The stack of the thread that runs JSON-LD work: far more than [`MAX_DEPTH`] needs, so
/// that the bound, not the stack, is what stops a deep document.
const JSON_LD_STACK: usize = 16 << 20;

/// Refuse a document too deep or too large for JSON-LD processing, counted iteratively.
/// Also refuses what the JSON-LD and RDF libraries are known to mishandle: a number
/// beyond the range of an exact double (they panic formatting it as `xsd:double`), and a
/// proof's `created` or `expires` that is not a plain date and time (see [`proof_time`]).
pub fn check_bounds(document: &Value) -> Result<(), String> {
    let (mut deepest, mut values, mut bytes) = (0usize, 0usize, 0usize);
    let mut stack = vec![(document, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        values += 1;
        match v {
            Value::Object(o) => {
                deepest = deepest.max(depth + 1);
                bytes += o.keys().map(String::len).sum::<usize>();
                let proofs = match o.get("proof") {
                    Some(Value::Array(a)) => a.iter().collect(),
                    Some(one) => vec![one],
                    None => Vec::new(),
                };
                for (key, time) in proofs.iter().flat_map(|p| ["created", "expires"].map(|k| (k, p.get(k)))) {
                    if let Some(Value::String(time)) = time {
                        proof_time(time).map_err(|why| format!("proof.{key} {why}"))?;
                    }
                }
                // Keys and `type`/`id` values become IRIs, whose percent-encoding the IRI
                // library decodes with an unwrap: "%ed" alone made it panic.
                let iris = o.keys().map(String::as_str).chain(
                    ["type", "@type", "id", "@id"]
                        .iter()
                        .filter_map(|k| o.get(*k))
                        .flat_map(|v| v.as_array().map(|a| a.iter().collect()).unwrap_or_else(|| vec![v]))
                        .filter_map(Value::as_str),
                );
                for iri in iris {
                    if !percent_encoding_is_utf8(iri) {
                        return Err(format!("{iri:?} is not a valid IRI: its percent-encoding is not UTF-8"));
                    }
                }
                stack.extend(o.values().map(|c| (c, depth + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(depth + 1);
                stack.extend(a.iter().map(|c| (c, depth + 1)));
            }
            Value::String(t) => {
                bytes += t.len();
                // Any string may become an IRI (a context URL, a value of an `@id`-typed
                // term, resolved against a base): "%de" in an `@context` URL made it panic
                // too (found by cargo-fuzz). Text with such a sequence is refused with it.
                // A string with a `:` may be an absolute or compact IRI: it is held to the IRI
                // rule; other text only may not hold an escape that decodes to non-UTF-8.
                if !percent_escapes_decode_to_utf8(t, t.contains(':')) {
                    return Err(format!("{t:?} holds a percent-encoding that is not UTF-8"));
                }
            }
            Value::Number(n)
                if !n.as_f64().is_some_and(|f| f.is_finite() && f.abs() < 1e21) && !n.is_i64() && !n.is_u64() =>
            {
                return Err(format!("the number {n} is out of the range a JSON-LD document may use"));
            }
            _ => {}
        }
        if deepest > MAX_DEPTH {
            return Err(format!("the document nests deeper than {MAX_DEPTH} levels"));
        }
        if values > MAX_VALUES || bytes > MAX_BYTES {
            return Err("the document is too large for JSON-LD processing".into());
        }
    }
    Ok(())
}

/// A proof's date and time as this verifier takes it: an XSD `dateTimeStamp` with a
/// four-digit year, `2026-01-01T00:00:00Z` (fractional seconds and a `±hh:mm` offset
/// allowed). The XSD library's grammar also admits years of one to three or of ten and more
/// digits, and then panics reading them (`999-01-01T00:00:00Z`), so they are refused here.
pub fn proof_time(time: &str) -> Result<(), String> {
    let b = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let mut ok = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    let mut i = 19;
    if ok && at(i, b'.') {
        let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        ok = fraction > 0;
        i += 1 + fraction;
    }
    ok = ok
        && match b.get(i) {
            Some(b'Z') => i + 1 == b.len(),
            Some(b'+' | b'-') => i + 6 == b.len() && digits(i + 1..i + 3) && at(i + 3, b':') && digits(i + 4..i + 6),
            _ => false,
        };
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{time:?} is not a date and time such as 2026-01-01T00:00:00Z (a four-digit year, and Z or an offset)"
        )),
    }
}

/// Every `%` starts two hex digits, and what they decode to is UTF-8.
fn percent_encoding_is_utf8(s: &str) -> bool {
    percent_escapes_decode_to_utf8(s, true)
}

/// What the `%XX` escapes of `s` decode to is UTF-8; when `strict`, every `%` must also
/// start one (a lone `%`, as in "50% off", is otherwise left as it is).
fn percent_escapes_decode_to_utf8(s: &str, strict: bool) -> bool {
    if !s.contains('%') {
        return true;
    }
    let b = s.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => decoded.push((h * 16 + l) as u8),
                _ if strict => return false,
                _ => {
                    decoded.push(b'%');
                    i += 1;
                    continue;
                }
            }
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).is_ok()
}

/// Run JSON-LD work on a thread of its own, with a large stack and inside `catch_unwind`:
/// a panic in `ssi` or `json-ld` becomes an error for this one document, and the work
/// never blocks an async worker. (A stack overflow aborts whatever the thread, which is
/// why [`check_bounds`] comes first.)
const JSON_LD_THREAD: &str = "json-ld";

/// The refusal a caught JSON-LD panic becomes. The fuzz harness treats it as the panic it
/// was: an input [`check_bounds`] should have refused first.
pub const JSON_LD_PANICKED: &str = "the document could not be processed as JSON-LD";

/// A panic on the JSON-LD thread is caught and answered as a refusal (and logged as a
/// warning there), so the default hook's "thread panicked" and backtrace on stderr would
/// only alarm: keep it for every other thread.
fn quiet_json_ld_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(JSON_LD_THREAD) {
                previous(info);
            }
        }));
    });
}

async fn isolated<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    quiet_json_ld_panics();
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name(JSON_LD_THREAD.into())
        .stack_size(JSON_LD_STACK)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::warn!(panic = %what, "JSON-LD processing panicked on a document");
                Err(JSON_LD_PANICKED.into())
            });
            let _ = tx.send(outcome);
        })
        .map_err(|e| format!("JSON-LD processing could not start: {e}"))?;
    rx.await.map_err(|_| "JSON-LD processing stopped".to_string())?
}

pub const EDDSA_RDFC_2022: &str = "eddsa-rdfc-2022";
pub const ECDSA_RDFC_2019: &str = "ecdsa-rdfc-2019";

/// Any JSON-LD document, kept as it is: a credential, or a presentation with credentials.
type Document = ssi_data_integrity::DataIntegrityDocument;

/// The cryptosuite this project uses for a key type.
pub fn cryptosuite_for(key: &PublicKey) -> &'static str {
    match key {
        PublicKey::Ed25519(_) => EDDSA_RDFC_2022,
        PublicKey::P256(_) => ECDSA_RDFC_2019,
    }
}

/// What a proof is for: `assertionMethod` (credentials) or `authentication` (presentations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofPurpose {
    Assertion,
    Authentication,
}

impl ProofPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            ProofPurpose::Assertion => "assertionMethod",
            ProofPurpose::Authentication => "authentication",
        }
    }
}

/// A verification method, as a DID document lists it.
#[derive(Debug, Clone)]
pub struct Method {
    /// The DID URL, e.g. `did:web:host:users:alice#issuing-1`.
    pub id: String,
    pub key: PublicKey,
}

impl Method {
    fn controller(&self) -> &str {
        self.id.split('#').next().unwrap_or_default()
    }

    fn resolver(&self) -> Result<HashMap<iref::IriBuf, Multikey>, String> {
        let multikey: Multikey = serde_json::from_value(json!({
            "id": self.id,
            "type": "Multikey",
            "controller": self.controller(),
            "publicKeyMultibase": self.key.to_multibase(),
        }))
        .map_err(|e| format!("verification method {}: {e}", self.id))?;
        Ok(HashMap::from([(multikey.id.clone(), multikey)]))
    }

    fn iri(&self) -> Result<iref::IriBuf, String> {
        iref::IriBuf::new(self.id.clone()).map_err(|_| format!("{} is not an IRI", self.id))
    }
}

fn private_jwk(key: &KeyPair) -> Result<ssi_jwk::JWK, String> {
    let mut jwk = key.public().to_jwk();
    jwk["d"] = json!(sichat_core::ids::b64url(&key.secret()));
    serde_json::from_value(jwk).map_err(|e| format!("key: {e}"))
}

fn parse_document(document: &Value) -> Result<Document, String> {
    serde_json::from_value(document.clone()).map_err(|e| format!("not a JSON-LD document: {e}"))
}

/// Add an `assertionMethod` proof by `method_id` (whose public key is `key`'s).
pub async fn sign(key: &KeyPair, method_id: &str, credential: &Value, contexts: &Contexts) -> Result<Value, String> {
    sign_for(key, method_id, credential, contexts, ProofPurpose::Assertion, None).await
}

/// Add a proof for `purpose`; a presentation's proof also carries the verifier's
/// `challenge` (its nonce) and `domain` (its identifier).
pub async fn sign_for(
    key: &KeyPair,
    method_id: &str,
    document: &Value,
    contexts: &Contexts,
    purpose: ProofPurpose,
    challenge_and_domain: Option<(&str, &str)>,
) -> Result<Value, String> {
    check_bounds(document)?;
    let method = Method { id: method_id.into(), key: key.public() };
    let resolver = method.resolver()?;
    let signer = SingleSecretSigner::new(private_jwk(key)?);
    let mut options = ProofOptions::from_method(ReferenceOrOwned::Reference(method.iri()?));
    options.proof_purpose = match purpose {
        ProofPurpose::Assertion => SsiPurpose::Assertion,
        ProofPurpose::Authentication => SsiPurpose::Authentication,
    };
    if let Some((challenge, domain)) = challenge_and_domain {
        options.challenge = Some(challenge.to_owned());
        options.domains = vec![domain.to_owned()];
    }
    let unsecured = parse_document(document)?;
    let env = SignatureEnvironment { json_ld_loader: loader(contexts)?, eip712_loader: () };
    let ed25519 = matches!(key, KeyPair::Ed25519(_));
    isolated(move || {
        futures_executor::block_on(async move {
            match ed25519 {
                true => to_json(EdDsaRdfc2022.sign_with(env, unsecured, &resolver, signer, options, ()).await),
                false => to_json(EcdsaRdfc2019.sign_with(env, unsecured, &resolver, signer, options, ()).await),
            }
        })
    })
    .await
}

fn to_json<S: serde::Serialize>(r: Result<S, ssi_claims_core::SignatureError>) -> Result<Value, String> {
    let signed = r.map_err(|e| format!("signing: {e}"))?;
    serde_json::to_value(signed).map_err(|e| format!("signing: {e}"))
}

/// The single proof of a secured document: its cryptosuite and verification method.
pub fn proof_of(document: &Value) -> Result<(String, String), String> {
    let proof = match document.get("proof") {
        Some(Value::Object(_)) => &document["proof"],
        Some(Value::Array(_)) => return Err("more than one proof: this verifier takes exactly one".into()),
        _ => return Err("no Data Integrity proof".into()),
    };
    if proof.get("type").and_then(Value::as_str) != Some("DataIntegrityProof") {
        return Err("the proof type must be DataIntegrityProof".into());
    }
    let field = |k: &str| {
        proof.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("the proof has no {k}"))
    };
    Ok((field("cryptosuite")?, field("verificationMethod")?))
}

/// Check a document's proof against `method` for `purpose`, with the suite that fits
/// the key. Only the proof is checked here: dates and status are the caller's.
pub async fn verify(
    document: &Value,
    method: &Method,
    purpose: ProofPurpose,
    contexts: &Contexts,
) -> Result<(), String> {
    let (suite, vm) = proof_of(document)?;
    if vm != method.id {
        return Err(format!("the proof names {vm}, not {}", method.id));
    }
    if suite != cryptosuite_for(&method.key) {
        return Err(format!("cryptosuite {suite} does not fit the {} key {vm}", method.key.alg()));
    }
    if document.pointer("/proof/proofPurpose").and_then(Value::as_str) != Some(purpose.as_str()) {
        return Err(format!("the proof purpose must be {}", purpose.as_str()));
    }
    check_bounds(document)?;
    let params = VerificationParameters::from_resolver(method.resolver()?).with_json_ld_loader(loader(contexts)?);
    let document = document.clone();
    let ed25519 = matches!(method.key, PublicKey::Ed25519(_));
    isolated(move || {
        futures_executor::block_on(async move {
            let outcome = match ed25519 {
                true => {
                    let vc: DataIntegrity<Document, EdDsaRdfc2022> = parse_secured(&document)?;
                    vc.verify(params).await
                }
                false => {
                    let vc: DataIntegrity<Document, EcdsaRdfc2019> = parse_secured(&document)?;
                    vc.verify(params).await
                }
            };
            match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(invalid)) => Err(invalid.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    })
    .await
}

fn parse_secured<T: serde::de::DeserializeOwned>(document: &Value) -> Result<T, String> {
    serde_json::from_value(document.clone()).map_err(|e| format!("malformed Data Integrity document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sichat_core::keys::Ed25519KeyPair;
    use sichat_core::p256key::P256KeyPair;

    const CONTEXT: &str = "https://example.org/contexts/v1";

    fn contexts() -> Contexts {
        Contexts::from([(CONTEXT.into(), crate::credential::context_document("https://example.org").to_string())])
    }

    fn credential(issuer: &str) -> Value {
        json!({
            "@context": [crate::credential::VCDM2_CONTEXT, CONTEXT],
            "id": "urn:uuid:0190a1b2-0000-7000-8000-000000000001",
            "type": ["VerifiableCredential", "FriendCredential"],
            "issuer": issuer,
            "validFrom": "2026-01-01T00:00:00Z",
            "credentialSubject": {"id": "did:key:z6MkhTNL7i2etLerDK8Acz5t528giE5KA4p75T6ka1E1D74r", "name": "Bob"},
        })
    }

    #[test]
    fn proof_times_the_xsd_library_would_panic_on_are_refused_first() {
        for good in ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123456789012Z", "2026-01-01T23:59:59+14:00"] {
            assert_eq!(proof_time(good), Ok(()), "{good}");
        }
        // Each of these passes the XSD library's grammar, or nearly, and panicked it.
        for bad in [
            "999-01-01T00:00:00Z",
            "-99-01-01T00:00:00Z",
            "99999999999-01-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+1:00",
            "2026-01-01",
            "",
        ] {
            assert!(proof_time(bad).is_err(), "{bad}");
        }
        let mut doc = credential("did:key:z6MkhTNL7i2etLerDK8Acz5t528giE5KA4p75T6ka1E1D74r");
        doc["proof"] = json!({"type": "DataIntegrityProof", "created": "999-01-01T00:00:00Z"});
        assert!(check_bounds(&doc).unwrap_err().starts_with("proof.created"));
        doc["proof"] = json!([{"expires": "99999999999-01-01T00:00:00Z"}]);
        assert!(check_bounds(&doc).unwrap_err().starts_with("proof.expires"));
        // Nested, as a presentation carries a credential.
        let mut inner = credential("did:key:z6MkhTNL7i2etLerDK8Acz5t528giE5KA4p75T6ka1E1D74r");
        inner["proof"] = json!({"created": "-99-01-01T00:00:00Z"});
        assert!(check_bounds(&json!({"verifiableCredential": [inner]})).is_err());
    }

    /// Any string may become an IRI: a context URL with "%de" panicked the IRI library
    /// (found by cargo-fuzz). IRI-like strings are held to the IRI rule; text keeps a lone `%`.
    #[test]
    fn strings_whose_escapes_are_not_utf8_are_refused() {
        let mut doc = credential("did:key:z6MkhTNL7i2etLerDK8Acz5t528giE5KA4p75T6ka1E1D74r");
        doc["@context"] = json!(["https://www.w3.org/ns/cr%dentials/v2"]);
        assert!(check_bounds(&doc).unwrap_err().contains("percent-encoding"));
        let mut doc = credential("did:key:z6MkhTNL7i2etLerDK8Acz5t528giE5KA4p75T6ka1E1D74r");
        doc["credentialSubject"]["note"] = json!("caf%e9");
        assert!(check_bounds(&doc).is_err(), "an escape of a Latin-1 byte");
        doc["credentialSubject"]["note"] = json!("50% off, 100%");
        assert_eq!(check_bounds(&doc), Ok(()));
        doc["credentialSubject"]["homepage"] = json!("https://example.org/a%zz");
        assert!(check_bounds(&doc).is_err(), "an IRI with a broken escape");
        doc["credentialSubject"]["homepage"] = json!("https://example.org/caf%C3%A9");
        assert_eq!(check_bounds(&doc), Ok(()));
    }

    #[tokio::test]
    async fn signs_and_verifies_with_the_named_suites() {
        for key in [KeyPair::Ed25519(Ed25519KeyPair::generate()), KeyPair::P256(P256KeyPair::generate())] {
            let issuer = "did:web:example.org:users:alice";
            let method = Method { id: format!("{issuer}#issuing-1"), key: key.public() };
            let signed = sign(&key, &method.id, &credential(issuer), &contexts()).await.unwrap();
            assert_eq!(signed["proof"]["type"], "DataIntegrityProof");
            assert_eq!(signed["proof"]["cryptosuite"], cryptosuite_for(&key.public()));
            assert_eq!(signed["proof"]["proofPurpose"], "assertionMethod");
            verify(&signed, &method, ProofPurpose::Assertion, &contexts()).await.unwrap();

            let mut tampered = signed.clone();
            tampered["credentialSubject"]["name"] = json!("Mallory");
            assert!(verify(&tampered, &method, ProofPurpose::Assertion, &contexts()).await.is_err());

            let other = match key {
                KeyPair::Ed25519(_) => KeyPair::Ed25519(Ed25519KeyPair::generate()),
                KeyPair::P256(_) => KeyPair::P256(P256KeyPair::generate()),
            };
            let wrong = Method { id: method.id.clone(), key: other.public() };
            assert!(verify(&signed, &wrong, ProofPurpose::Assertion, &contexts()).await.is_err());
            assert!(verify(&signed, &method, ProofPurpose::Authentication, &contexts()).await.is_err());
            assert_eq!(remote_contexts(&signed), vec![CONTEXT.to_string()]);

            // A presentation carrying it, with the verifier's challenge and domain.
            let vp = json!({
                "@context": [crate::credential::VCDM2_CONTEXT],
                "type": ["VerifiablePresentation"],
                "holder": "did:key:z6MkhTNL7i2etLerDK8Acz5t528giE5KA4p75T6ka1E1D74r",
                "verifiableCredential": [signed.clone()],
            });
            let auth = Method { id: format!("{issuer}#device-1"), key: key.public() };
            let svp = sign_for(&key, &auth.id, &vp, &contexts(), ProofPurpose::Authentication, Some(("n-1", "aud")))
                .await
                .unwrap();
            assert_eq!(
                (svp["proof"]["challenge"].as_str(), svp["proof"]["domain"].as_str()),
                (Some("n-1"), Some("aud"))
            );
            verify(&svp, &auth, ProofPurpose::Authentication, &contexts()).await.unwrap();
            let mut replayed = svp.clone();
            replayed["proof"]["challenge"] = json!("n-2");
            assert!(verify(&replayed, &auth, ProofPurpose::Authentication, &contexts()).await.is_err());
            let unknown = verify(&signed, &method, ProofPurpose::Assertion, &Contexts::new()).await.unwrap_err();
            assert!(unknown.contains("context") || unknown.contains("Context"), "{unknown}");
        }
    }
}

//! Verifying credentials and presentations: every check a careful verifier makes, each
//! with its outcome and a reason a person can read.

use crate::policy::TrustPolicy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_core::ids::b64url_decode;
use sichat_core::json;
use sichat_core::jws;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::resolver::{Relationship, ResolveError, Resolver};
use sichat_issuer::credential::VCDM2_CONTEXT;
use sichat_issuer::data_integrity::{self, Contexts, ProofPurpose};
use sichat_issuer::status::{Bitstring, LIST_SIZE};
use std::sync::Arc;

pub const VC_JWT: &str = "vc+jwt";
pub const VP_JWT: &str = "vp+jwt";
pub const LDP_VC: &str = "ldp_vc";
pub const LDP_VP: &str = "ldp_vp";
const ENVELOPED_PREFIX: &str = "data:application/vc+jwt,";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub check: String,
    pub outcome: Outcome,
    pub reason: String,
}

/// The result of verifying one credential or presentation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub valid: bool,
    /// `credential` or `presentation`.
    pub kind: String,
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Value>,
    pub checks: Vec<Check>,
    /// For a presentation: a report per credential it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Report>,
}

impl Report {
    fn new(kind: &str, format: &str) -> Self {
        Report {
            valid: false,
            kind: kind.into(),
            format: format.into(),
            issuer: None,
            holder: None,
            types: Vec::new(),
            subject: None,
            checks: Vec::new(),
            credentials: Vec::new(),
        }
    }

    fn record(&mut self, check: &str, result: Result<String, String>) -> bool {
        let (outcome, reason, ok) = match result {
            Ok(reason) => (Outcome::Passed, reason, true),
            Err(reason) => (Outcome::Failed, reason, false),
        };
        self.checks.push(Check { check: check.into(), outcome, reason });
        ok
    }

    fn skip(&mut self, check: &str, reason: &str) {
        self.checks.push(Check { check: check.into(), outcome: Outcome::Skipped, reason: reason.into() });
    }

    fn finish(mut self) -> Self {
        self.valid =
            self.checks.iter().all(|c| c.outcome != Outcome::Failed) && self.credentials.iter().all(|c| c.valid);
        self
    }

    /// The first failed check (here or in a carried credential), for one-line answers.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| c.outcome == Outcome::Failed)
            .or_else(|| self.credentials.iter().find_map(Report::first_failure))
    }
}

/// What a presentation must answer: the request's nonce and the verifier's identifier.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub nonce: String,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub now_ms: i64,
    /// Tolerance for clocks that disagree, on validity dates and JWT times.
    pub clock_skew_ms: i64,
    pub expect: Option<Expectation>,
    pub policy: Option<TrustPolicy>,
}

impl Default for Options {
    fn default() -> Self {
        Options { now_ms: sichat_core::ids::now_ms(), clock_skew_ms: 60_000, expect: None, policy: None }
    }
}

/// What a document turned out to be.
pub enum Input {
    Credential { format: &'static str, text: String },
    Presentation { format: &'static str, text: String },
}

impl Input {
    /// Recognise a compact JWS (`vc+jwt`/`vp+jwt` by its `typ`) or a JSON document with a
    /// Data Integrity proof.
    pub fn detect(text: &str) -> Result<Input, String> {
        let text = text.trim();
        let text = text.strip_prefix(ENVELOPED_PREFIX).unwrap_or(text);
        if text.starts_with('{') {
            let doc: Value =
                json::from_str_bounded(text, json::MAX_DEPTH).map_err(|e| format!("malformed JSON: {e}"))?;
            let presentation = types_of(&doc).iter().any(|t| t == "VerifiablePresentation");
            let text = text.to_owned();
            return Ok(match presentation {
                true => Input::Presentation { format: LDP_VP, text },
                false => Input::Credential { format: LDP_VC, text },
            });
        }
        let header = jwt_header(text)?;
        match header.get("typ").and_then(Value::as_str) {
            Some(t) if jws::typ_matches(t, VC_JWT) => Ok(Input::Credential { format: VC_JWT, text: text.into() }),
            Some(t) if jws::typ_matches(t, VP_JWT) => Ok(Input::Presentation { format: VP_JWT, text: text.into() }),
            Some(t) => Err(format!("a JWT of typ {t}: expected vc+jwt or vp+jwt")),
            None => Err("a JWT with no typ: expected vc+jwt or vp+jwt".into()),
        }
    }
}

fn jwt_header(text: &str) -> Result<Value, String> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 {
        return Err("malformed JWT: not three base64url parts".into());
    }
    b64url_decode(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or_else(|| "malformed JWT: the header is not base64url JSON".into())
}

fn types_of(doc: &Value) -> Vec<String> {
    match doc.get("type") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn id_of(v: Option<&Value>) -> Option<String> {
    v.and_then(|i| i.as_str().or_else(|| i.get("id").and_then(Value::as_str))).map(str::to_owned)
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Checks VC Data Model 2.0's required shape of a credential.
fn credential_syntax(vc: &Value) -> Result<String, String> {
    if !vc.is_object() {
        return Err("the credential is not a JSON object".into());
    }
    let first = match vc.get("@context") {
        Some(Value::Array(a)) => a.first().and_then(Value::as_str),
        _ => None,
    };
    if first != Some(VCDM2_CONTEXT) {
        return Err(format!("@context must be an array starting with {VCDM2_CONTEXT}"));
    }
    if !types_of(vc).iter().any(|t| t == "VerifiableCredential") {
        return Err("type must include VerifiableCredential".into());
    }
    let issuer = id_of(vc.get("issuer")).ok_or("issuer must be a URL or an object with an id")?;
    if url::Url::parse(&issuer).is_err() {
        return Err(format!("issuer {issuer:?} is not a URL"));
    }
    match vc.get("credentialSubject") {
        Some(Value::Object(_)) => {}
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_object) => {}
        _ => return Err("credentialSubject must be an object".into()),
    }
    for k in ["validFrom", "validUntil"] {
        if let Some(v) = vc.get(k) {
            v.as_str().and_then(rfc3339_ms).ok_or_else(|| format!("{k} is not an XML Schema dateTimeStamp"))?;
        }
    }
    Ok("a VC Data Model 2.0 credential".into())
}

pub struct Verifier {
    resolver: Arc<Resolver>,
    /// JSON-LD contexts known without a fetch (this node's own).
    contexts: Contexts,
}

impl Verifier {
    pub fn new(policy: NetPolicy, contexts: Contexts) -> Result<Self, String> {
        let fetcher = Arc::new(Fetcher::new(policy).map_err(|e| e.to_string())?);
        Ok(Self::with_resolver(Arc::new(Resolver::new(fetcher)), contexts))
    }

    /// A verifier sharing a resolver (and its caches) with the rest of the node.
    pub fn with_resolver(resolver: Arc<Resolver>, contexts: Contexts) -> Self {
        Verifier { resolver, contexts }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    fn fetcher(&self) -> &Fetcher {
        self.resolver.fetcher()
    }

    /// Verify whatever `text` is: a credential or a presentation, in either format.
    pub async fn verify(&self, text: &str, opts: &Options) -> Report {
        match Input::detect(text) {
            Ok(Input::Credential { format, text }) => self.verify_credential(format, &text, opts).await,
            Ok(Input::Presentation { format, text }) => self.verify_presentation(format, &text, opts).await,
            Err(why) => {
                let mut r = Report::new("unknown", "unknown");
                r.record("syntax", Err(why));
                r.finish()
            }
        }
    }

    pub async fn verify_credential(&self, format: &str, text: &str, opts: &Options) -> Report {
        let mut r = Report::new("credential", format);
        let (vc, header) = match decode(format, text) {
            Ok(decoded) => decoded,
            Err(why) => {
                r.record("syntax", Err(why));
                return r.finish();
            }
        };
        r.issuer = id_of(vc.get("issuer"));
        r.types = types_of(&vc);
        r.subject = vc.get("credentialSubject").cloned();
        if !r.record("syntax", credential_syntax(&vc)) {
            return r.finish();
        }
        let issuer = r.issuer.clone().unwrap_or_default();
        let signed = self
            .check_signature(
                Signed { format, text, doc: &vc, header: header.as_ref() },
                &issuer,
                Relationship::AssertionMethod,
                None,
            )
            .await;
        r.record("signature", signed);
        r.record("validity", validity(&vc, opts));
        match vc.get("credentialStatus") {
            None => r.skip("status", "the credential has no credentialStatus"),
            Some(entries) => {
                let s = self.check_status(entries, &issuer, opts).await;
                r.record("status", s);
            }
        }
        match vc.get("credentialSchema") {
            None => r.skip("schema", "the credential names no credentialSchema"),
            Some(schemas) => {
                let s = self.check_schema(schemas, &vc, &issuer).await;
                r.record("schema", s);
            }
        }
        match &opts.policy {
            None => r.skip("trust", "no trust policy given: the issuer was not judged"),
            Some(p) => {
                r.record("trust", p.judge(&r.types, &issuer));
            }
        }
        r.finish()
    }

    pub async fn verify_presentation(&self, format: &str, text: &str, opts: &Options) -> Report {
        let mut r = Report::new("presentation", format);
        let (vp, header) = match decode(format, text) {
            Ok(decoded) => decoded,
            Err(why) => {
                r.record("syntax", Err(why));
                return r.finish();
            }
        };
        r.holder = id_of(vp.get("holder"));
        r.types = types_of(&vp);
        if !r.record("syntax", presentation_syntax(&vp)) {
            return r.finish();
        }
        let holder = r.holder.clone().unwrap_or_default();
        let signed = self
            .check_signature(
                Signed { format, text, doc: &vp, header: header.as_ref() },
                &holder,
                Relationship::Authentication,
                Some(opts),
            )
            .await;
        // Nothing the presentation carries is looked at before its own signature holds:
        // an unsigned presentation must not make this verifier do any work for it.
        if !r.record("signature", signed) {
            return r.finish();
        }
        match &opts.expect {
            None => r.skip("audience_and_nonce", "no request to answer: audience and nonce were not checked"),
            Some(e) => {
                r.record("audience_and_nonce", answers(format, &vp, e));
            }
        }
        for item in vp.get("verifiableCredential").and_then(Value::as_array).into_iter().flatten() {
            let report = match item {
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("EnvelopedVerifiableCredential") => {
                    match id_of(Some(item)).as_deref().and_then(|id| id.strip_prefix(ENVELOPED_PREFIX)) {
                        Some(jwt) => self.verify_credential(VC_JWT, jwt, &credential_opts(opts)).await,
                        None => unreadable("an EnvelopedVerifiableCredential must carry a data:application/vc+jwt URL"),
                    }
                }
                Value::Object(_) if format == VP_JWT => {
                    unreadable("a vp+jwt carries its credentials as EnvelopedVerifiableCredential entries only")
                }
                Value::Object(_) => self.verify_credential(LDP_VC, &item.to_string(), &credential_opts(opts)).await,
                _ => unreadable(
                    "a credential in a VC Data Model 2.0 presentation is an object (enveloped or with a proof)",
                ),
            };
            r.credentials.push(report);
        }
        let strangers: Vec<String> = r
            .credentials
            .iter()
            .filter_map(|c| c.subject.as_ref())
            .filter_map(|s| s.get("id").and_then(Value::as_str))
            .filter(|s| *s != holder)
            .map(str::to_owned)
            .collect();
        let binding = match (strangers.is_empty(), r.credentials.iter().all(|c| c.subject.is_some())) {
            (true, true) => Ok(format!("every credential is about the presenter {holder}")),
            (true, false) => Err("a credential could not be read, so its subject is unknown".into()),
            (false, _) => Err(format!(
                "the presenter {holder} is not the subject of every credential (also about {})",
                strangers.join(", ")
            )),
        };
        r.record("holder_binding", binding);
        r.finish()
    }

    /// The signature, by a key that `signer`'s DID document lists for `rel`.
    async fn check_signature(
        &self,
        signed: Signed<'_>,
        signer: &str,
        rel: Relationship,
        jwt_times: Option<&Options>,
    ) -> Result<String, String> {
        let Signed { format, text, doc, header } = signed;
        let method = match format {
            VC_JWT | VP_JWT => {
                let kid =
                    header.and_then(|h| h.get("kid")).and_then(Value::as_str).ok_or("the JWT header names no kid")?;
                if kid.starts_with('#') {
                    format!("{signer}{kid}")
                } else {
                    kid.to_owned()
                }
            }
            _ => data_integrity::proof_of(doc)?.1,
        };
        if method.split('#').next() != Some(signer) {
            return Err(format!("signed with {method}, a key of another DID than {signer}"));
        }
        let keys = self.resolver.resolve(signer).await.map_err(|e| e.to_string())?;
        let key = keys.key_for(&method, rel).map_err(|e: ResolveError| e.to_string())?;
        match format {
            VC_JWT | VP_JWT => {
                // `doc` is this very payload, read before the key was known.
                jws::verify_signature(text, &key, format)
                    .map_err(|e| format!("the signature does not verify with {method}: {e}"))?;
                if let (Some(opts), Some(exp)) = (jwt_times, doc.get("exp").and_then(Value::as_i64)) {
                    if exp.saturating_mul(1000) + opts.clock_skew_ms < opts.now_ms {
                        return Err("the presentation has expired (exp)".into());
                    }
                }
            }
            _ => {
                let contexts = self.contexts_for(doc).await?;
                let purpose = match rel {
                    Relationship::Authentication => ProofPurpose::Authentication,
                    Relationship::AssertionMethod => ProofPurpose::Assertion,
                };
                data_integrity::verify(doc, &data_integrity::Method { id: method.clone(), key }, purpose, &contexts)
                    .await
                    .map_err(|e| format!("the proof does not verify with {method}: {e}"))?;
            }
        }
        Ok(format!("signed by {method}, listed under {}", rel.as_str()))
    }

    /// The JSON-LD contexts a document needs beyond those `ssi` carries: ours, or fetched.
    async fn contexts_for(&self, doc: &Value) -> Result<Contexts, String> {
        let mut out = Contexts::new();
        for url in data_integrity::remote_contexts(doc) {
            let text = match self.contexts.get(&url) {
                Some(t) => t.clone(),
                None => {
                    let body = self.fetcher().get(&url, "application/ld+json").await.map_err(|e| e.to_string())?;
                    String::from_utf8(body.to_vec()).map_err(|_| format!("context {url} is not UTF-8"))?
                }
            };
            out.insert(url, text);
        }
        Ok(out)
    }

    /// Every Bitstring Status List entry: the list fetched (cached by HTTP rules), its own
    /// signature checked against the same issuer, and the bit read.
    async fn check_status(&self, entries: &Value, issuer: &str, opts: &Options) -> Result<String, String> {
        let entries: Vec<&Value> = match entries {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut seen = Vec::new();
        for e in entries {
            if e.get("type").and_then(Value::as_str) != Some("BitstringStatusListEntry") {
                return Err(format!("unsupported status entry type {}", e.get("type").unwrap_or(&Value::Null)));
            }
            let purpose =
                e.get("statusPurpose").and_then(Value::as_str).ok_or("a status entry has no statusPurpose")?;
            let url = e.get("statusListCredential").and_then(Value::as_str).ok_or("a status entry has no list")?;
            let index: usize = e
                .get("statusListIndex")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or("a status entry has no valid statusListIndex")?;
            let list = self
                .status_list(url, issuer, purpose, opts)
                .await
                .map_err(|why| format!("the status list {url} fails its own check: {why}"))?;
            let set = list.get(index).ok_or_else(|| format!("status index {index} is beyond the list"))?;
            if set {
                return Err(match purpose {
                    "revocation" => "revoked".to_string(),
                    "suspension" => "suspended".to_string(),
                    other => format!("status {other} is set"),
                });
            }
            seen.push(purpose.to_owned());
        }
        Ok(format!("no status set ({}), checked live", seen.join(", ")))
    }

    async fn status_list(&self, url: &str, issuer: &str, purpose: &str, opts: &Options) -> Result<Bitstring, String> {
        let body = self.issuer_resource(url, issuer, "application/vc+jwt").await?;
        let text = std::str::from_utf8(&body).map_err(|_| "not text".to_string())?;
        let format = if text.trim_start().starts_with('{') { LDP_VC } else { VC_JWT };
        let (list, header) = decode(format, text)?;
        if id_of(list.get("issuer")).as_deref() != Some(issuer) {
            return Err(format!(
                "it is issued by {}, not by the credential's issuer",
                id_of(list.get("issuer")).unwrap_or_default()
            ));
        }
        if !types_of(&list).iter().any(|t| t == "BitstringStatusListCredential") {
            return Err("it is not a BitstringStatusListCredential".into());
        }
        self.check_signature(
            Signed { format, text, doc: &list, header: header.as_ref() },
            issuer,
            Relationship::AssertionMethod,
            None,
        )
        .await?;
        validity(&list, opts)?;
        let subject = &list["credentialSubject"];
        if subject.get("statusPurpose").and_then(Value::as_str) != Some(purpose) {
            return Err(format!("its purpose is not {purpose}"));
        }
        let encoded = subject.get("encodedList").and_then(Value::as_str).ok_or("it has no encodedList")?;
        Bitstring::decode(encoded, 16 * LIST_SIZE / 8).map_err(|e| e.to_string())
    }

    /// A resource the issuer publishes under its DID (a status list, a schema) at `url`, or,
    /// when its host gives no answer, from a watcher of the issuer's `did:webvh`. What it
    /// holds is checked the same way wherever it came from.
    async fn issuer_resource(&self, url: &str, issuer: &str, accept: &str) -> Result<Arc<Vec<u8>>, String> {
        let first = match self.fetcher().get(url, accept).await {
            Ok(body) => return Ok(body),
            Err(e) if e.no_answer() => e,
            Err(e) => return Err(e.to_string()),
        };
        for mirror in self.resolver.mirrors(issuer, url) {
            match self.fetcher().get(&mirror, accept).await {
                Ok(body) => {
                    tracing::info!(%url, %mirror, "the issuer's host is down: read from a watcher");
                    return Ok(body);
                }
                Err(e) => tracing::warn!(%mirror, error = %e, "a watcher's copy was not used"),
            }
        }
        Err(first.to_string())
    }

    /// Each `JsonSchema` the credential names, fetched and applied to the whole credential.
    async fn check_schema(&self, schemas: &Value, vc: &Value, issuer: &str) -> Result<String, String> {
        let schemas: Vec<&Value> = match schemas {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut ids = Vec::new();
        for s in schemas {
            let id = s.get("id").and_then(Value::as_str).ok_or("a credentialSchema has no id")?;
            if s.get("type").and_then(Value::as_str) != Some("JsonSchema") {
                return Err(format!("credentialSchema {id} is of an unsupported type"));
            }
            let body = self.issuer_resource(id, issuer, "application/schema+json, application/json").await?;
            let schema: Value = serde_json::from_slice(&body).map_err(|e| format!("{id} is not JSON: {e}"))?;
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| format!("{id} is not a valid JSON Schema: {e}"))?;
            if let Some(err) = validator.iter_errors(vc).next() {
                let path = err.instance_path().to_string();
                return Err(format!("does not match {id} at {}: {err}", if path.is_empty() { "/" } else { &path }));
            }
            ids.push(id.to_owned());
        }
        Ok(format!("matches {}", ids.join(", ")))
    }
}

fn unreadable(why: &str) -> Report {
    let mut r = Report::new("credential", "unknown");
    r.record("syntax", Err(why.into()));
    r.finish()
}

/// Credentials inside a presentation answer no request themselves.
fn credential_opts(opts: &Options) -> Options {
    Options { expect: None, ..opts.clone() }
}

/// A signed document: its format, its text, the document it carries and (for a JWT) the
/// header, both read before the signature is checked.
struct Signed<'a> {
    format: &'a str,
    text: &'a str,
    doc: &'a Value,
    header: Option<&'a Value>,
}

/// The document a credential or presentation carries and, for a JWT, its header; both
/// unverified.
fn decode(format: &str, text: &str) -> Result<(Value, Option<Value>), String> {
    match format {
        VC_JWT | VP_JWT => {
            let (header, payload) = jws::unverified_parts(text).map_err(|e| format!("malformed JWT: {e}"))?;
            Ok((payload, Some(header)))
        }
        _ => json::from_str_bounded(text, json::MAX_DEPTH)
            .map(|doc| (doc, None))
            .map_err(|e| format!("malformed JSON: {e}")),
    }
}

fn presentation_syntax(vp: &Value) -> Result<String, String> {
    let first = match vp.get("@context") {
        Some(Value::Array(a)) => a.first().and_then(Value::as_str),
        _ => None,
    };
    if first != Some(VCDM2_CONTEXT) {
        return Err(format!("@context must be an array starting with {VCDM2_CONTEXT}"));
    }
    if !types_of(vp).iter().any(|t| t == "VerifiablePresentation") {
        return Err("type must include VerifiablePresentation".into());
    }
    let holder = id_of(vp.get("holder")).ok_or("the presentation names no holder")?;
    sichat_core::did::Did::parse(&holder).map_err(|_| format!("holder {holder:?} is not a DID"))?;
    match vp.get("verifiableCredential") {
        Some(Value::Array(a)) if !a.is_empty() => Ok("a VC Data Model 2.0 presentation".into()),
        _ => Err("verifiableCredential must be a non-empty array".into()),
    }
}

fn validity(vc: &Value, opts: &Options) -> Result<String, String> {
    let date = |k: &str| vc.get(k).and_then(Value::as_str);
    if let Some(from) = date("validFrom") {
        if rfc3339_ms(from).is_some_and(|t| t > opts.now_ms + opts.clock_skew_ms) {
            return Err(format!("not yet valid: valid from {from}"));
        }
    }
    if let Some(until) = date("validUntil") {
        if rfc3339_ms(until).is_some_and(|t| t + opts.clock_skew_ms <= opts.now_ms) {
            return Err(format!("expired: valid until {until}"));
        }
    }
    Ok(match date("validUntil") {
        Some(until) => format!("valid now, until {until}"),
        None => "valid now, with no expiry".into(),
    })
}

/// The presentation answers this request: `nonce`/`aud` claims (JWT) or the proof's
/// `challenge`/`domain` (Data Integrity), as OpenID4VP requires.
fn answers(format: &str, vp: &Value, e: &Expectation) -> Result<String, String> {
    let (nonce, audience) = match format {
        VP_JWT => (vp.get("nonce"), vp.get("aud")),
        _ => (vp.pointer("/proof/challenge"), vp.pointer("/proof/domain")),
    };
    let audience_ok = match audience {
        Some(Value::String(a)) => a == &e.audience,
        Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(&e.audience),
        _ => false,
    };
    if !audience_ok {
        return Err(format!(
            "the presentation is for another audience ({}), not {}",
            audience.unwrap_or(&Value::Null),
            e.audience
        ));
    }
    if nonce.and_then(Value::as_str) != Some(e.nonce.as_str()) {
        return Err("the presentation answers another request: its nonce does not match".into());
    }
    Ok(format!("made for {} and this request's nonce", e.audience))
}

//! Entry points into every parser of outside input, for fuzzing. Each takes arbitrary
//! bytes and must return, whatever they are: a panic, an abort or a hang is a bug.
//!
//! The cargo-fuzz targets in `fuzz/targets/` call these, and `tests/seeds.rs` runs
//! every file of `fuzz/corpus/<target>/` through them under plain `cargo test`, so the
//! seed corpora (small real inputs and the hostile ones an outside review found) are
//! checked in CI without a nightly toolchain. Nothing here touches the network: DIDs are
//! `did:key`/`did:jwk` or resolved from a fixed map, and the verifier's fetcher is offline.
//! Key proofs and presentations are checked as the node checks them (signature, audience,
//! nonce, times) against the fixed issuer, verifier, nonce and time their seeds were made
//! for: [`PROOF_AUDIENCE`], [`VP_AUDIENCE`], [`VP_NONCE`], [`NOW`].

use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::net::Fetcher;
use sichat_core::p256key::{KeyPair, PublicKey};
use sichat_core::resolver::{Keys, Relationship, Resolver};
use sichat_core::{json as bounded, jws};
use sichat_issuer::data_integrity::{self, Contexts, Method, ProofPurpose};
use sichat_issuer::oid4vci::{self, ProofKey};
use sichat_messaging::federation_auth::{verify_request, IncomingRequest};
use sichat_messaging::{unpack, unwrap_forward, AgreementKey, UnpackOptions};
use sichat_verifier::oid4vp;
use sichat_verifier::policy::{Issuers, TrustPolicy, TrustRule};
use sichat_verifier::verify::{Expectation, Input, Options, Report, Verifier, LDP_VP};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The fixed keys inputs are checked against.
pub struct Fixture {
    /// An Ed25519 `did:key` method, for Data Integrity proofs and JWS.
    pub method: Method,
    pub signer: KeyPair,
    /// A node (`did:web:node.example`) whose document lists `#node-key` for authentication.
    pub node_keys: HashMap<String, Arc<Keys>>,
    pub node_key: Ed25519KeyPair,
    /// A DIDComm recipient's agreement key.
    pub recipient: [AgreementKey; 1],
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = Ed25519KeyPair::from_secret(&[7; 32]).expect("a fixed key");
        let mb = key.public().to_multibase();
        let method = Method { id: format!("did:key:{mb}#{mb}"), key: PublicKey::Ed25519(key.public()) };
        let node_key = Ed25519KeyPair::from_secret(&[9; 32]).expect("a fixed key");
        let node = "did:web:node.example";
        let doc = json!({
            "id": node,
            "verificationMethod": [{"id": format!("{node}#node-key"), "type": "Multikey", "controller": node,
                "publicKeyMultibase": node_key.public().to_multibase()}],
            "authentication": [format!("{node}#node-key")],
        });
        let keys = Keys::from_document(node, &doc).expect("a DID document");
        let agree = X25519KeyPair::from_secret(&[11; 32]).expect("a fixed key");
        Fixture {
            method,
            signer: KeyPair::Ed25519(key),
            node_keys: HashMap::from([(node.to_owned(), Arc::new(keys))]),
            node_key,
            recipient: [AgreementKey::new("did:web:node.example:users:bob#x", agree)],
        }
    })
}

/// The credential issuer the `oid4vci_proof` seeds were made for.
pub const PROOF_AUDIENCE: &str = "https://node.example/users/alice";
/// The verifier and the request nonce the `oid4vp_response` seeds answer.
pub const VP_AUDIENCE: &str = "decentralized_identifier:did:web:node.example:users:carol";
pub const VP_NONCE: &str = "n";
/// "Now" for every time check (unix seconds): when the seeds were made.
pub const NOW: i64 = 1_790_000_000;

/// A verifier that resolves `did:key` and `did:jwk` and fetches nothing.
fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let fetcher = Fetcher::offline().expect("an offline fetcher");
        Verifier::with_resolver(Arc::new(Resolver::new(Arc::new(fetcher))), Contexts::new())
    })
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// JWS/JWT: header and payload decoding, and signature checks against a fixed key.
pub fn jws(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = jws::header_of(t);
    let _ = jws::unverified_parts(t);
    let _ = jws::unverified_payload::<Value>(t);
    let key = PublicKey::Ed25519(fixture().node_key.public());
    for typ in ["vc+jwt", "vp+jwt", "JWT"] {
        let _ = jws::verify_signature(t, &key, typ);
    }
}

/// DIDs and DID documents: parsing, keys by relationship, Multikey and JWK keys.
pub fn did(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = Did::parse(t.trim());
    let _ = PublicKey::from_multibase(t.trim());
    let Ok(doc) = bounded::from_str_bounded::<Value>(t, bounded::MAX_DEPTH) else { return };
    let _ = PublicKey::from_jwk(&doc);
    let id = doc.get("id").and_then(Value::as_str).unwrap_or("did:web:example.org");
    if let Ok(keys) = Keys::from_document(id, &doc) {
        for m in doc.get("verificationMethod").and_then(Value::as_array).into_iter().flatten() {
            let mid = m.get("id").and_then(Value::as_str).unwrap_or_default();
            let _ = keys.key_for(mid, Relationship::Authentication);
            let _ = keys.key_for(mid, Relationship::AssertionMethod);
            let _ = keys.agreement_key(mid);
        }
    }
}

/// Verifiable Credentials as JSON and JSON-LD: format detection, the holder's reading,
/// and a Data Integrity proof check (bounds, JSON-LD expansion, canonicalization).
pub fn vc(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = Input::detect(t);
    let _ = sichat_holder::check::unverified("vc+jwt", t);
    let Ok(doc) = sichat_holder::check::unverified("ldp_vc", t) else { return };
    data_integrity_checks(&doc, ProofPurpose::Assertion);
}

fn data_integrity_checks(doc: &Value, purpose: ProofPurpose) {
    let _ = data_integrity::remote_contexts(doc);
    let _ = data_integrity::proof_of(doc);
    let f = fixture();
    let verified = futures_executor::block_on(data_integrity::verify(doc, &f.method, purpose, &Contexts::new()));
    no_caught_panic(verified.err());
    if purpose == ProofPurpose::Authentication {
        // The wallet signs what it is asked to present.
        let signed = futures_executor::block_on(data_integrity::sign_for(
            &f.signer,
            &f.method.id,
            doc,
            &Contexts::new(),
            purpose,
            Some(("nonce", "aud")),
        ));
        no_caught_panic(signed.err());
    }
}

/// The node catches a panic of the JSON-LD libraries and refuses the document; to the
/// fuzzer it is still a panic, of an input the bounds let through.
fn no_caught_panic(error: Option<String>) {
    if error.as_deref() == Some(data_integrity::JSON_LD_PANICKED) {
        panic!("JSON-LD processing panicked (caught by the node): check_bounds should refuse this input");
    }
}

/// OpenID4VCI key proofs, checked as the Credential Endpoint checks them: the header
/// (type, algorithm, the key it names), the holder's key (`jwk`, or a `did:key`/`did:jwk`
/// `kid`), then the signature, the audience, the age and `exp`.
pub fn oid4vci_proof(data: &[u8]) {
    let _ = oid4vci_proof_nonce(data);
}

/// [`oid4vci_proof`]'s outcome: the proof's nonce, or why it was refused.
pub fn oid4vci_proof_nonce(data: &[u8]) -> Result<String, String> {
    let t = text(data).ok_or("not UTF-8")?;
    let (alg, named) = oid4vci::proof_key(t).map_err(|e| e.description)?;
    let key = match named {
        ProofKey::Jwk(key) => key,
        ProofKey::Kid(kid) => match oid4vci::offline_key(&kid) {
            Some(found) => found.map_err(|e| e.to_string())?.1,
            None => return Err(format!("{kid} needs resolving over the network")),
        },
    };
    oid4vci::check_signed_proof(t, &alg, &key, PROOF_AUDIENCE, NOW).map_err(|e| e.description)
}

/// OpenID4VP `direct_post` bodies, as the verifier endpoint reads them: the form, the
/// `vp_token`, then the presentation verified as for a request (signature by the holder's
/// key, audience and nonce, each credential's signature, dates, status, schema and trust)
/// and judged an answer or not. An `ldp_vp` is also signed as the wallet would sign it.
pub fn oid4vp_response(data: &[u8]) {
    let _ = oid4vp_response_report(data);
}

/// [`oid4vp_response`]'s outcome: the verifier's report, and whether it answers the request.
pub fn oid4vp_response_report(data: &[u8]) -> Option<(Report, Result<(), String>)> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(data).into_owned().collect();
    let (format, text) = oid4vp::read_vp_token(form.get("vp_token").map(String::as_str)).ok()?;
    if format == LDP_VP {
        if let Ok(doc) = bounded::from_str_bounded::<Value>(&text, bounded::MAX_DEPTH) {
            data_integrity_checks(&doc, ProofPurpose::Authentication);
        }
    }
    let opts = Options {
        now_ms: NOW * 1000,
        clock_skew_ms: 60_000,
        expect: Some(Expectation { nonce: VP_NONCE.into(), audience: VP_AUDIENCE.into() }),
        policy: Some(TrustPolicy {
            rules: vec![TrustRule { type_name: "FriendCredential".into(), issuers: Issuers::Any }],
        }),
    };
    let report = futures_executor::block_on(verifier().verify_presentation(format, &text, &opts));
    no_caught_panic_in(&report);
    let answers = oid4vp::answers_request(&report);
    Some((report, answers))
}

fn no_caught_panic_in(report: &Report) {
    for check in &report.checks {
        if check.reason.contains(data_integrity::JSON_LD_PANICKED) {
            no_caught_panic(Some(data_integrity::JSON_LD_PANICKED.into()));
        }
    }
    report.credentials.iter().for_each(no_caught_panic_in);
}

/// RFC 9421 signatures on node-to-node requests: lines of `name: value` headers, a blank
/// line, then the body; verified as a `POST` to `https://node.example/didcomm`.
pub fn http_signature(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = axum::http::HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(&line[..colon]),
            axum::http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let request =
        IncomingRequest { method: "POST", target_uri: "https://node.example/didcomm", headers: &headers, body };
    let now = sichat_core::ids::now_ms() / 1000;
    let _ = futures_executor::block_on(verify_request(&request, &fixture().node_keys, now));
}

/// DIDComm envelopes: unpacking (JWE, JWS, plaintext) and unwrapping a forward.
pub fn didcomm(data: &[u8]) {
    let f = fixture();
    let opts = UnpackOptions { max_size: 64 * 1024, ..Default::default() };
    let _ = futures_executor::block_on(unpack(data, &f.recipient, &HashMap::<String, Arc<Keys>>::new(), &opts));
    let _ = unwrap_forward(data, &f.recipient, &opts);
}

/// A fuzz target: any input must end without a panic.
pub type Target = fn(&[u8]);

/// did:webvh logs (`did.jsonl` from another host): the DID's syntax, then the whole log
/// verified (our bounds, then `didwebvh-rs`). A first line naming a `did:webvh` DID is the
/// DID resolved; otherwise the last entry's `id`.
pub fn webvh(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let (did, log) = match t.split_once('\n') {
        Some((first, rest)) if first.starts_with("did:webvh:") => (first.trim().to_owned(), rest),
        _ => {
            let last = t.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
            let id = bounded::from_str_bounded::<Value>(last, bounded::MAX_DEPTH)
                .ok()
                .and_then(|e| e.get("state")?.get("id")?.as_str().map(str::to_owned));
            (id.unwrap_or_default(), t)
        }
    };
    let _ = sichat_core::webvh::WebvhDid::parse(&did);
    let _ = futures_executor::block_on(sichat_core::webvh::verify_log(&did, log));
}

/// A moving account's messages as the new node reads them from the old node's bundle or
/// pages (after opening the JWE): a part, or else a page, checked for the devices
/// `phone` and `laptop` as the import checks them.
pub fn move_messages(data: &[u8]) {
    use sichat_messaging::moves::{Limits, MessagingPage, MessagingPart};
    let Some(t) = text(data) else { return };
    let Ok(value) = bounded::from_str_bounded::<Value>(t, bounded::MAX_DEPTH) else { return };
    let devices = ["phone".to_owned(), "laptop".to_owned()].into_iter().collect();
    if let Ok(part) = serde_json::from_value::<MessagingPart>(value.clone()) {
        let _ = part.check(&devices, Limits::default());
    } else if let Ok(page) = serde_json::from_value::<MessagingPage>(value) {
        let part = MessagingPart { messages: page.messages, ..Default::default() };
        let _ = part.check(&devices, Limits::page());
    }
}

/// What a recovery friend posts to `/api/v1/recovery/requests/{id}/approvals`, read as the
/// node reads it before resolving the friend's DID (then its signature checked against the
/// fixed node key), or else the friends an account names (`set_recovery_key`).
pub fn recovery_approval(data: &[u8]) {
    use sichat_accounts::protocol::{Guardians, RecoveryApprovalClaims, TYP_RECOVERY_APPROVAL};
    let Some(t) = text(data) else { return };
    if let Ok((claims, _kid)) = RecoveryApprovalClaims::unverified(t.trim()) {
        let _ = claims.check_times(NOW);
        let key = PublicKey::Ed25519(fixture().node_key.public());
        let _ = jws::verify_with::<RecoveryApprovalClaims>(t.trim(), &key, TYP_RECOVERY_APPROVAL);
    } else if let Ok(value) = bounded::from_str_bounded::<Value>(t, bounded::MAX_DEPTH) {
        if let Ok(g) = serde_json::from_value::<Guardians>(value) {
            let _ = g.check("did:web:node.example:users:alice");
        }
    }
}

/// A credential a wallet hands back after a restore (`/api/v1/issuer/credentials/reinstate`),
/// its document read as the node reads it once the signature checked out.
pub fn reinstate(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let Ok(vc) = bounded::from_str_bounded::<Value>(t, bounded::MAX_DEPTH) else { return };
    let kid = "did:web:node.example:users:alice#issuing-1";
    let _ = sichat_issuer::reinstate::read_kept(&vc, kid, "https://node.example/users/alice/status/");
}

/// A standby's handover (`POST /didcomm/handover`): the `sichat-handover` JWS on the first
/// line, the delivery's body after it. Read as the account's node reads it (signed by the
/// fixture node's key, at [`NOW`]), then the sender's signature it carries; and the first
/// line as a standby grant or end, as the standby reads them before resolving their DID.
pub fn standby(data: &[u8]) {
    use sichat_messaging::standby::{read_handover, StandbyEnd, StandbyGrant};
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(token) = std::str::from_utf8(head) else { return };
    let token = token.trim();
    let _ = jws::unverified_payload::<StandbyGrant>(token);
    let _ = jws::unverified_payload::<StandbyEnd>(token);
    let key = PublicKey::Ed25519(fixture().node_key.public());
    let Ok((h, headers)) = read_handover(token, &key, body, NOW * 1000, 30 * 24 * 3_600_000) else { return };
    let request = IncomingRequest { method: "POST", target_uri: &h.target_uri, headers: &headers, body };
    let _ = futures_executor::block_on(verify_request(&request, &fixture().node_keys, h.received_at / 1000));
}

/// The URL DPoP proof seeds were made for (`htu`), with `htm` POST and `iat` [`NOW`].
pub const DPOP_HTU: &str = "https://node.example/oidc/token";

/// A DPoP proof (the `DPoP` header of the token endpoint and UserInfo), read as the node
/// reads it before it records the `jti`.
pub fn dpop(data: &[u8]) {
    let _ = dpop_jkt(data);
}

/// [`dpop`]'s verdict: the key's thumbprint, or why the proof is refused.
pub fn dpop_jkt(data: &[u8]) -> Result<String, String> {
    use sichat_oidc::provider::{read_proof, ProofFor};
    let t = text(data).ok_or("not text")?.trim();
    let f = ProofFor { method: "POST", url: DPOP_HTU, access_token: None };
    read_proof(t, &f, NOW).map(|p| p.jkt).map_err(|e| e.description)
}

/// A form posted to an endpoint a client calls (`/oidc/token`, `/oidc/revoke`,
/// `/oidc/introspect`, `/oidc/par`, `/oidc/device_authorization`), read as each reads it.
pub fn client_form(data: &[u8]) {
    use sichat_oidc::wire::{AuthorizationParams, ClientForm, DeviceAuthorizationRequest, TokenParam, TokenRequest};
    let _ = ClientForm::<TokenRequest>::parse(data);
    let _ = ClientForm::<TokenParam>::parse(data);
    let _ = ClientForm::<AuthorizationParams>::parse(data);
    let _ = ClientForm::<DeviceAuthorizationRequest>::parse(data);
}

/// Every target by name, as the corpus directories are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("jws", jws),
    ("did", did),
    ("vc", vc),
    ("oid4vci_proof", oid4vci_proof),
    ("oid4vp_response", oid4vp_response),
    ("http_signature", http_signature),
    ("didcomm", didcomm),
    ("webvh", webvh),
    ("move_messages", move_messages),
    ("recovery_approval", recovery_approval),
    ("reinstate", reinstate),
    ("standby", standby),
    ("dpop", dpop),
    ("client_form", client_form),
];

//! Hostile credentials and presentations: each one is a clear refusal in the report, never
//! a panic, a stack overflow, or work done for a presentation whose signature fails.
//! Everything here is `did:key`: no network.

use serde_json::{json, Value};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::NetPolicy;
use sichat_issuer::credential::VCDM2_CONTEXT;
use sichat_verifier::verify::{Outcome, Report};
use sichat_verifier::{Options, Verifier};

struct Party {
    key: Ed25519KeyPair,
    did: String,
    method: String,
}

fn party() -> Party {
    let key = Ed25519KeyPair::generate();
    let mb = key.public().to_multibase();
    Party { did: format!("did:key:{mb}"), method: format!("did:key:{mb}#{mb}"), key }
}

fn proof(p: &Party, purpose: &str) -> Value {
    json!({
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-rdfc-2022",
        "verificationMethod": p.method,
        "proofPurpose": purpose,
        "created": "2026-01-01T00:00:00Z",
        "proofValue": "z3FXQjecWufY46yg5abdVZsXqLhxhueuSoZgNSARiKBk9czhSePTFehP8c3PGfb6a22gkfUKKsQG5iaPuhbB2DHd",
    })
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!("deep"), |inner, _| json!({ "x:n": inner }))
}

fn credential(issuer: &Party, subject: Value) -> Value {
    json!({
        "@context": [VCDM2_CONTEXT],
        "type": ["VerifiableCredential"],
        "issuer": issuer.did,
        "credentialSubject": subject,
        "proof": proof(issuer, "assertionMethod"),
    })
}

/// The inputs seen to overflow a stack or panic inside `ssi`/`json-ld`.
fn hostile(issuer: &Party) -> Vec<(&'static str, Value)> {
    let subject = |extra: Value| {
        let mut s = json!({"id": issuer.did});
        s.as_object_mut().expect("o").extend(extra.as_object().cloned().unwrap_or_default());
        s
    };
    let mut out = vec![
        ("nested 114 levels", credential(issuer, subject(json!({"x:n": nested(114)})))),
        ("1e308", credential(issuer, subject(json!({"x:n": 1e308})))),
        ("-1e308", credential(issuer, subject(json!({"x:n": -1e308})))),
    ];
    let mut year = credential(issuer, subject(json!({"name": "x"})));
    year["proof"]["created"] = json!("999-01-01T00:00:00Z");
    out.push(("three-digit year", year));
    let mut iri = credential(issuer, subject(json!({"name": "x"})));
    iri["type"] = json!(["VerifiableCredential", "Friend%edCredential"]);
    out.push(("%ed in a type", iri));
    let mut key = credential(issuer, subject(json!({"name": "x"})));
    key["credentialSubject"]["a%ed"] = json!("x");
    out.push(("%ed in a property", key));
    out
}

fn verifier() -> Verifier {
    Verifier::new(NetPolicy::default(), Default::default()).expect("verifier")
}

fn failed<'a>(r: &'a Report, check: &str) -> Option<&'a str> {
    r.checks.iter().find(|c| c.check == check && c.outcome == Outcome::Failed).map(|c| c.reason.as_str())
}

#[tokio::test]
async fn hostile_credentials_are_refused_with_a_reason() {
    let issuer = party();
    for (what, vc) in hostile(&issuer) {
        let report = verifier().verify(&vc.to_string(), &Options::default()).await;
        assert!(!report.valid, "{what}");
        let why = failed(&report, "signature").or(failed(&report, "syntax"));
        assert!(why.is_some_and(|w| !w.is_empty()), "{what}: {report:?}");
    }
}

#[tokio::test]
async fn hostile_presentations_are_refused_with_a_reason() {
    let holder = party();
    for (what, vc) in hostile(&holder) {
        let vp = json!({
            "@context": [VCDM2_CONTEXT],
            "type": ["VerifiablePresentation"],
            "holder": holder.did,
            "verifiableCredential": [vc],
            "proof": proof(&holder, "authentication"),
        });
        let report = verifier().verify(&vp.to_string(), &Options::default()).await;
        // Refused before JSON-LD (deeper than any JSON input may nest), or by the signature.
        let why = failed(&report, "signature").or(failed(&report, "syntax"));
        assert!(why.is_some_and(|w| !w.is_empty()), "{what}: {report:?}");
        assert!(!report.valid && report.credentials.is_empty(), "{what}: nothing carried is looked at");
    }
}

fn vp_jwt(holder: &Party, credential: Value) -> String {
    let vp = json!({
        "@context": [VCDM2_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": holder.did,
        "verifiableCredential": [credential],
    });
    jws::sign(&holder.key, "vp+jwt", Some(&holder.method), &vp).expect("sign")
}

/// A `vp+jwt` whose signature fails: nothing it carries is verified (the 2 KB
/// request carried a 114-level credential as a plain object and overflowed the stack).
#[tokio::test]
async fn a_presentation_whose_signature_fails_is_not_looked_into() {
    let holder = party();
    // Deep enough for JSON-LD to refuse (past 32 levels), shallow enough to parse (64).
    let jwt = vp_jwt(&holder, credential(&holder, json!({"id": holder.did, "x:n": nested(50)})));
    let (signed, _) = jwt.rsplit_once('.').expect("jws");
    let forged = format!("{signed}.{}", "A".repeat(86));
    let report = verifier().verify_presentation("vp+jwt", &forged, &Options::default()).await;
    assert!(!report.valid);
    assert!(failed(&report, "signature").is_some_and(|w| w.contains("does not verify")), "{report:?}");
    assert!(report.credentials.is_empty(), "{report:?}");
}

/// In a `vp+jwt`, only `EnvelopedVerifiableCredential` entries: a plain object is refused
/// as such, not verified as Data Integrity.
#[tokio::test]
async fn a_vp_jwt_carries_only_enveloped_credentials() {
    let holder = party();
    for vc in [
        credential(&holder, json!({"id": holder.did, "x:n": nested(50)})),
        credential(&holder, json!({"id": holder.did, "name": "x"})),
    ] {
        let report = verifier().verify_presentation("vp+jwt", &vp_jwt(&holder, vc), &Options::default()).await;
        assert!(failed(&report, "signature").is_none(), "{report:?}");
        assert_eq!(report.credentials.len(), 1);
        let why = failed(&report.credentials[0], "syntax").expect("refused");
        assert!(why.contains("EnvelopedVerifiableCredential"), "{why}");
        assert!(!report.valid);
    }
}

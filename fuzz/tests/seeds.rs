//! Every seed of every fuzz target, run through the same entry point under plain
//! `cargo test`: none may panic or overflow a stack (either would fail this test binary).

use sichat_fuzz_harness::{oid4vci_proof_nonce, oid4vp_response_report, NOW, TARGETS};
use sichat_messaging::standby::read_handover;
use std::path::Path;

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A compact JWS with the first character of its signature changed.
fn broken(jws: &str) -> String {
    let (signed, signature) = jws.rsplit_once('.').expect("a compact JWS");
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed}.{first}{}", &signature[1..])
}

#[test]
fn every_seed_of_every_target_runs_to_completion() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, run) in TARGETS {
        let dir = corpus.join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 2, "{target}: a seed corpus of a few real inputs");
        for seed in seeds {
            let data = std::fs::read(&seed).expect("seed");
            run(&data);
        }
    }
}

/// The key proof and presentation targets reach the checks the node makes, not only the
/// parsing before them: their signed seeds pass every one (so a mutation that keeps them
/// valid explores past the signature), and one wrong signature fails there.
#[test]
fn signed_seeds_pass_the_checks_the_node_makes() {
    for name in ["did-jwk-kid", "did-key-kid", "jwk-header"] {
        let proof = String::from_utf8(seed("oid4vci_proof", name)).expect("UTF-8");
        assert_eq!(oid4vci_proof_nonce(proof.trim().as_bytes()), Ok("n".to_owned()), "{name}");
        let refused = oid4vci_proof_nonce(broken(proof.trim()).as_bytes()).expect_err("a broken signature");
        assert!(refused.contains("signature"), "{name}: {refused}");
    }

    let form = seed("oid4vp_response", "vp-jwt");
    let (report, answers) = oid4vp_response_report(&form).expect("a vp_token");
    assert!(report.valid, "{:?}", report.first_failure());
    assert_eq!(report.credentials.len(), 1);
    assert_eq!(answers, Ok(()));
    let mut fields: Vec<(String, String)> = url::form_urlencoded::parse(&form).into_owned().collect();
    for (k, v) in &mut fields {
        if k == "vp_token" {
            let mut token: serde_json::Value = serde_json::from_str(v).expect("JSON");
            let jwt = token["jwt"][0].as_str().expect("a vp+jwt").to_owned();
            token["jwt"][0] = serde_json::Value::String(broken(&jwt));
            *v = token.to_string();
        }
    }
    let handover = seed("standby", "handover");
    let split = handover.iter().position(|&b| b == b'\n').expect("a token line");
    let (token, body) = (std::str::from_utf8(&handover[..split]).expect("UTF-8"), &handover[split + 1..]);
    let key = sichat_core::p256key::PublicKey::Ed25519(sichat_fuzz_harness::fixture().node_key.public());
    let read = |t: &str| read_handover(t, &key, body, NOW * 1000, 30 * 24 * 3_600_000);
    let (h, headers) = read(token).expect("the handover seed reads as the node reads it");
    assert_eq!(headers.len(), 5, "{h:?}");
    assert!(read(&broken(token)).is_err(), "a broken signature");
    let extra = seed("standby", "extra-header");
    let line = std::str::from_utf8(&extra[..extra.iter().position(|&b| b == b'\n').expect("line")]).expect("UTF-8");
    let refused = read_handover(line, &key, body, NOW * 1000, 30 * 24 * 3_600_000).expect_err("a header not signed");
    assert!(refused.to_string().contains("host"), "{refused}");

    let tampered = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let (report, answers) = oid4vp_response_report(tampered.as_bytes()).expect("a vp_token");
    assert!(!report.valid);
    assert!(answers.is_err(), "a presentation whose signature fails answers nothing");
}

/// The DPoP target reaches every check: its signed seed passes them all, and a broken
/// signature, a private key in the header, `alg` none or a forged RSA key fail.
#[test]
fn dpop_seeds_reach_the_checks() {
    use sichat_fuzz_harness::dpop_jkt;
    let proof = String::from_utf8(seed("dpop", "proof")).expect("text");
    assert!(dpop_jkt(proof.as_bytes()).is_ok(), "{:?}", dpop_jkt(proof.as_bytes()));
    let refused = |data: &[u8]| dpop_jkt(data).expect_err("refused");
    assert!(refused(broken(proof.trim()).as_bytes()).contains("signature"));
    assert!(refused(&seed("dpop", "private-jwk")).contains("public key"));
    assert!(dpop_jkt(&seed("dpop", "alg-none")).is_err());
    assert!(dpop_jkt(&seed("dpop", "rsa-huge-jwk")).is_err());
}

/// The form seeds reach the typed requests: a whole code grant reads, a repeated
/// parameter is refused.
#[test]
fn client_form_seeds_reach_the_typed_requests() {
    use sichat_oidc::wire::{ClientForm, TokenRequest};
    let grant = ClientForm::<TokenRequest>::parse(&seed("client_form", "code-grant")).expect("a code grant");
    assert_eq!(grant.params.redirect_uri.as_deref(), Some("https://rp.example/cb"));
    assert_eq!(grant.auth.client_id.as_deref(), Some("c1"));
    let repeated = ClientForm::<TokenRequest>::parse(&seed("client_form", "repeated")).err().expect("refused");
    assert!(repeated.description.contains("repeated"), "{}", repeated.description);
}

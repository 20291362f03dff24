//! Arbitrary bytes, raw or spliced into a valid envelope, must never make unpack panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sichat_core::did::Did;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair, X25519Public};
use sichat_core::resolver::Keys;
use sichat_messaging::{
    pack_authcrypt, unpack, unwrap_forward, wrap_forward, AgreementKey, Message, RecipientKey, SigningKey,
    UnpackOptions,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

struct Fixture {
    bob: [AgreementKey; 1],
    directory: HashMap<String, Arc<Keys>>,
    envelopes: Vec<Vec<u8>>,
}

fn keys(did: &Did, sign_kid: &str, sign: &Ed25519KeyPair, agree_kid: &str, agree: &X25519Public) -> Keys {
    let doc = json!({
        "id": did,
        "verificationMethod": [
            {"id": sign_kid, "type": "Multikey", "controller": did, "publicKeyMultibase": sign.public().to_multibase()},
            {"id": agree_kid, "type": "Multikey", "controller": did, "publicKeyMultibase": agree.to_multibase()},
        ],
        "authentication": [sign_kid],
        "keyAgreement": [agree_kid],
    });
    Keys::from_document(did.as_str(), &doc).expect("a DID document")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let alice = Did::parse("did:web:example.org:users:alice").expect("did");
        let bob = Did::parse("did:web:example.org:users:bob").expect("did");
        let (a_sign, a_agree) = (Ed25519KeyPair::from_secret(&[1; 32]).expect("key"), X25519KeyPair::from_secret(&[2; 32]).expect("key"));
        let (b_sign, b_agree) = (Ed25519KeyPair::from_secret(&[3; 32]).expect("key"), X25519KeyPair::from_secret(&[4; 32]).expect("key"));
        let (a_sk, a_ak, b_sk, b_ak) = (alice.url("s"), alice.url("x"), bob.url("s"), bob.url("x"));
        let a_keys = keys(&alice, &a_sk, &a_sign, &a_ak, &a_agree.public());
        let b_keys = keys(&bob, &b_sk, &b_sign, &b_ak, &b_agree.public());
        let msg = Message::new("https://didcomm.org/basicmessage/2.0/message", json!({"content": "hi"}))
            .with_from(alice.clone())
            .with_to(vec![bob.clone()]);
        let to = RecipientKey::all_of(&b_keys);
        let signer = SigningKey { kid: &a_sk, key: &a_sign };
        let sender = AgreementKey::new(a_ak.clone(), a_agree);
        let auth = pack_authcrypt(&msg, &sender, Some(&signer), &to).expect("pack");
        let fwd = wrap_forward(&auth, &bob, &to).expect("wrap");
        let directory = HashMap::from([(alice.to_string(), Arc::new(a_keys)), (bob.to_string(), Arc::new(b_keys))]);
        Fixture { bob: [AgreementKey::new(b_ak, b_agree)], directory, envelopes: vec![auth.into_bytes(), fwd.into_bytes()] }
    })
}

/// The map resolver is ready at once, so one poll finishes unpack.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("unpack waited on a ready resolver"),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let input = match data.split_first() {
        // Splice: overwrite the valid envelope at an offset with the rest of the input.
        Some((&sel, rest)) if sel & 1 == 1 && rest.len() >= 2 => {
            let mut env = f.envelopes[(sel as usize >> 1) % f.envelopes.len()].clone();
            let at = u16::from_le_bytes([rest[0], rest[1]]) as usize % env.len();
            let patch = &rest[2..];
            let end = (at + patch.len()).min(env.len());
            env[at..end].copy_from_slice(&patch[..end - at]);
            env
        }
        _ => data.to_vec(),
    };
    let opts = UnpackOptions { max_size: 64 * 1024, ..Default::default() };
    let _ = now(unpack(&input, &f.bob, &f.directory, &opts));
    let _ = unwrap_forward(&input, &f.bob, &opts);
});

//! The public API of the envelope layer: packing, unpacking, and every refusal.

mod common;

use common::{directory, Party};
use serde_json::{json, Value};
use sichat_core::ids::{b64url, b64url_decode};
use sichat_core::keys::X25519KeyPair;
use sichat_core::resolver::ResolveError;
use sichat_messaging::forward::FORWARD_TYPE;
use sichat_messaging::jwe;
use sichat_messaging::{
    jws, pack_anoncrypt, pack_authcrypt, pack_signed, unpack, unwrap_forward, wrap_forward, AgreementKey,
    EnvelopeError, Message, RecipientKey, UnpackOptions, Unpacked,
};

const BASIC: &str = "https://didcomm.org/basicmessage/2.0/message";

fn hello(from: &Party, to: &Party) -> Message {
    Message::new(BASIC, json!({"content": "hello"}))
        .with_from(from.did.clone())
        .with_to(vec![to.did.clone()])
        .with_thid("thread-1")
}

async fn open(packed: &str, me: &Party, parties: &[&Party]) -> Result<Unpacked, EnvelopeError> {
    unpack(packed.as_bytes(), me.all_agreement(), &directory(parties), &UnpackOptions::default()).await
}

fn edit(packed: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(packed).unwrap();
    f(&mut v);
    v.to_string()
}

fn edit_protected(packed: &str, f: impl FnOnce(&mut Value)) -> String {
    edit(packed, |v| {
        let mut h: Value = serde_json::from_slice(&b64url_decode(v["protected"].as_str().unwrap()).unwrap()).unwrap();
        f(&mut h);
        v["protected"] = json!(b64url(h.to_string().as_bytes()));
    })
}

#[tokio::test]
async fn signed_and_authcrypted_to_every_device_of_the_recipient() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 3));
    let msg = hello(&alice, &bob);
    let packed = pack_authcrypt(&msg, alice.agreement(0), Some(&alice.signer()), &bob.recipients()).unwrap();
    let v: Value = serde_json::from_str(&packed).unwrap();
    assert_eq!(v["recipients"].as_array().unwrap().len(), 3, "one JWE, a wrapped key per device");
    let header: Value = serde_json::from_slice(&b64url_decode(v["protected"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(header["typ"], "application/didcomm-encrypted+json");
    assert_eq!(header["alg"], "ECDH-1PU+A256KW");
    assert_eq!(header["enc"], "A256CBC-HS512");
    assert_eq!(header["skid"], alice.kid(0));
    assert_eq!(header["apu"], b64url(alice.kid(0).as_bytes()));
    assert_eq!(header["apv"], jwe::apv_of(bob.agree.iter().map(|k| k.kid())));

    for device in 0..3 {
        let ours = &bob.all_agreement()[device..=device];
        let got = unpack(packed.as_bytes(), ours, &directory(&[&alice]), &UnpackOptions::default()).await.unwrap();
        assert_eq!(got.message, msg);
        assert_eq!(got.recipient_kid.as_deref(), Some(bob.kid(device)));
        assert_eq!(got.sender_kid.as_deref(), Some(alice.kid(0)));
        assert_eq!(got.signer_kid.as_deref(), Some(alice.sign_kid.as_str()));
        assert!(got.authcrypted() && got.signed() && !got.anoncrypted);
        assert_eq!(got.authenticated_sender(), Some(&alice.did));
    }
}

#[tokio::test]
async fn authcrypt_without_signature_in_a_conversation() {
    let (alice, bob) = (Party::new("alice", 2), Party::new("bob", 1));
    // Both sides remember their static agreements after the first message; later messages
    // and replies must open just the same.
    for round in 0..3 {
        let msg = hello(&alice, &bob);
        let packed = pack_authcrypt(&msg, alice.agreement(1), None, &bob.recipients()).unwrap();
        let got = open(&packed, &bob, &[&alice]).await.unwrap();
        assert!(got.authcrypted() && !got.signed(), "round {round}");
        assert_eq!(got.sender_kid.as_deref(), Some(alice.kid(1)));
        assert_eq!(got.authenticated_sender(), Some(&alice.did));
        let reply = hello(&bob, &alice);
        let packed = pack_authcrypt(&reply, bob.agreement(0), None, &alice.recipients()).unwrap();
        let got = open(&packed, &alice, &[&bob]).await.unwrap();
        assert_eq!(got.recipient_kid.as_deref(), Some(alice.kid(0)), "round {round}");
    }
}

#[tokio::test]
async fn anoncrypt_with_and_without_signature() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 3));
    let msg = hello(&alice, &bob);
    let signed = pack_anoncrypt(&msg, Some(&alice.signer()), &bob.recipients()).unwrap();
    let got = open(&signed, &bob, &[&alice]).await.unwrap();
    assert!(got.anoncrypted && got.signed() && !got.authcrypted());
    assert_eq!(got.authenticated_sender(), Some(&alice.did));
    assert_eq!(got.message, msg);

    let bare = pack_anoncrypt(&msg, None, &bob.recipients()).unwrap();
    let got = open(&bare, &bob, &[]).await.unwrap();
    assert!(got.anoncrypted && !got.signed());
    assert_eq!(got.authenticated_sender(), None, "an anoncrypted `from` proves nothing");
    let header: Value = serde_json::from_str::<Value>(&bare).unwrap()["protected"]
        .as_str()
        .and_then(b64url_decode)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(header["alg"], "ECDH-ES+A256KW");
    assert!(header.get("skid").is_none() && header.get("apu").is_none());
}

#[tokio::test]
async fn signed_only_and_plaintext_policy() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let msg = hello(&alice, &bob);
    let signed = pack_signed(&msg, &alice.signer()).unwrap();
    let got = open(&signed, &bob, &[&alice]).await.unwrap();
    assert!(got.signed() && got.recipient_kid.is_none());

    let plain = serde_json::to_string(&msg).unwrap();
    assert!(matches!(open(&plain, &bob, &[]).await, Err(EnvelopeError::Unprotected)));
    let allow = UnpackOptions { allow_plaintext: true, ..Default::default() };
    let got = unpack(plain.as_bytes(), &[], &directory(&[]), &allow).await.unwrap();
    assert!(got.recipient_kid.is_none() && !got.signed());
    assert_eq!(got.authenticated_sender(), None);
}

#[tokio::test]
async fn protected_sender_anoncrypt_over_authcrypt() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let msg = hello(&alice, &bob);
    let inner = pack_authcrypt(&msg, alice.agreement(0), None, &bob.recipients()).unwrap();
    let outer = jwe::encrypt(inner.as_bytes(), None, &bob.recipients()).unwrap();
    let got = open(&outer, &bob, &[&alice]).await.unwrap();
    assert!(got.anoncrypted && got.authcrypted());
    assert_eq!(got.authenticated_sender(), Some(&alice.did));
}

#[tokio::test]
async fn tampering_is_detected() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 2));
    let packed =
        pack_authcrypt(&hello(&alice, &bob), alice.agreement(0), Some(&alice.signer()), &bob.recipients()).unwrap();
    let flip = |field: &str| {
        edit(&packed, |v| {
            let mut bytes = b64url_decode(v[field].as_str().unwrap()).unwrap();
            bytes[0] ^= 1;
            v[field] = json!(b64url(&bytes));
        })
    };
    for field in ["ciphertext", "tag", "iv"] {
        assert!(matches!(open(&flip(field), &bob, &[&alice]).await, Err(EnvelopeError::DecryptionFailed)), "{field}");
    }
    let wrapped = edit(&packed, |v| {
        for r in v["recipients"].as_array_mut().unwrap() {
            let mut ek = b64url_decode(r["encrypted_key"].as_str().unwrap()).unwrap();
            ek[5] ^= 0x80;
            r["encrypted_key"] = json!(b64url(&ek));
        }
    });
    assert!(matches!(open(&wrapped, &bob, &[&alice]).await, Err(EnvelopeError::DecryptionFailed)));
    // The protected header is authenticated: any change breaks decryption.
    let header = edit_protected(&packed, |h| h["extra"] = json!(1));
    assert!(matches!(open(&header, &bob, &[&alice]).await, Err(EnvelopeError::DecryptionFailed)));
    // Another ephemeral key derives other wrapping keys.
    let epk = edit_protected(&packed, |h| h["epk"] = X25519KeyPair::generate().public().to_jwk());
    assert!(matches!(open(&epk, &bob, &[&alice]).await, Err(EnvelopeError::DecryptionFailed)));
    // Dropping a recipient changes the recipients' kids, which `apv` covers.
    let dropped = edit(&packed, |v| {
        v["recipients"].as_array_mut().unwrap().pop();
    });
    assert!(matches!(open(&dropped, &bob, &[&alice]).await, Err(EnvelopeError::MalformedJwe(m)) if m.contains("apv")));
}

#[tokio::test]
async fn wrong_recipient_is_refused() {
    let (alice, bob, carol) = (Party::new("alice", 1), Party::new("bob", 1), Party::new("carol", 2));
    let packed = pack_authcrypt(&hello(&alice, &bob), alice.agreement(0), None, &bob.recipients()).unwrap();
    match open(&packed, &carol, &[&alice]).await {
        Err(EnvelopeError::NotForUs { kids }) => assert_eq!(kids, [bob.kid(0)]),
        other => panic!("{other:?}"),
    }
    // Carol's key under Bob's kid: named, but it does not open.
    let impostor = [AgreementKey::new(bob.kid(0), X25519KeyPair::from_secret(&carol.agree_secrets[0]).unwrap())];
    let got = unpack(packed.as_bytes(), &impostor, &directory(&[&alice]), &UnpackOptions::default()).await;
    assert!(matches!(got, Err(EnvelopeError::DecryptionFailed)), "{got:?}");
}

#[tokio::test]
async fn a_recipient_missing_from_to_is_refused() {
    let (alice, bob, carol) = (Party::new("alice", 1), Party::new("bob", 1), Party::new("carol", 1));
    let msg = hello(&alice, &bob);
    // pack refuses to encrypt to someone the message is not addressed to…
    assert!(matches!(
        pack_authcrypt(&msg, alice.agreement(0), None, &carol.recipients()),
        Err(EnvelopeError::RecipientNotInTo { .. })
    ));
    // …and unpack refuses what another implementation encrypted that way.
    let payload = jws::sign(&serde_json::to_vec(&msg).unwrap(), &alice.sign_kid, &alice.sign);
    let packed = jwe::encrypt(payload.as_bytes(), Some(alice.agreement(0)), &carol.recipients()).unwrap();
    match open(&packed, &carol, &[&alice]).await {
        Err(EnvelopeError::RecipientNotInTo { recipient }) => assert_eq!(recipient, carol.did.as_str()),
        other => panic!("{other:?}"),
    }
    // A message with no `to` at all could have been meant for anyone.
    let mut untargeted = serde_json::to_value(&msg).unwrap();
    untargeted.as_object_mut().unwrap().remove("to");
    let packed = jwe::encrypt(untargeted.to_string().as_bytes(), Some(alice.agreement(0)), &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[&alice]).await, Err(EnvelopeError::RecipientNotInTo { .. })));
}

#[tokio::test]
async fn a_signer_or_sender_other_than_from_is_refused() {
    let (alice, bob, mallory) = (Party::new("alice", 1), Party::new("bob", 1), Party::new("mallory", 1));
    let forged = hello(&alice, &bob); // from: alice
                                      // pack refuses keys that are not `from`'s…
    assert!(matches!(pack_signed(&forged, &mallory.signer()), Err(EnvelopeError::SenderMismatch(_))));
    assert!(matches!(
        pack_authcrypt(&forged, mallory.agreement(0), None, &bob.recipients()),
        Err(EnvelopeError::SenderMismatch(_))
    ));
    let body = serde_json::to_vec(&forged).unwrap();
    // …and unpack refuses Mallory's valid signature over a message "from" Alice,
    let signed = jws::sign(&body, &mallory.sign_kid, &mallory.sign);
    let packed = jwe::encrypt(signed.as_bytes(), None, &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[&alice, &mallory]).await, Err(EnvelopeError::SenderMismatch(_))));
    // Mallory's authcrypt of it,
    let packed = jwe::encrypt(&body, Some(mallory.agreement(0)), &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[&alice, &mallory]).await, Err(EnvelopeError::SenderMismatch(_))));
    // and Mallory's authcrypt over Alice's genuine signature.
    let signed = jws::sign(&body, &alice.sign_kid, &alice.sign);
    let packed = jwe::encrypt(signed.as_bytes(), Some(mallory.agreement(0)), &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[&alice, &mallory]).await, Err(EnvelopeError::SenderMismatch(_))));
    // A signature with a key of Alice's that is not for authentication.
    let signed = jws::sign(&body, alice.kid(0), &alice.sign);
    let packed = jwe::encrypt(signed.as_bytes(), None, &bob.recipients()).unwrap();
    assert!(matches!(
        open(&packed, &bob, &[&alice]).await,
        Err(EnvelopeError::SenderKeys(ResolveError::UnknownKey { .. } | ResolveError::NotForRelationship { .. }))
    ));
    // Alice's kid, Mallory's key: the signature does not verify.
    let signed = jws::sign(&body, &alice.sign_kid, &mallory.sign);
    let packed = jwe::encrypt(signed.as_bytes(), None, &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[&alice]).await, Err(EnvelopeError::BadSignature)));
    // An authcrypt whose skid names Alice's key, made with Mallory's: does not decrypt.
    let fake = AgreementKey::new(alice.kid(0), X25519KeyPair::from_secret(&mallory.agree_secrets[0]).unwrap());
    let packed = jwe::encrypt(&body, Some(&fake), &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[&alice]).await, Err(EnvelopeError::DecryptionFailed)));
    // A sender we cannot resolve.
    let packed = pack_authcrypt(&forged, alice.agreement(0), None, &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[]).await, Err(EnvelopeError::SenderKeys(_))));
}

#[tokio::test]
async fn malformed_input_gets_a_clear_error() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let packed = pack_authcrypt(&hello(&alice, &bob), alice.agreement(0), None, &bob.recipients()).unwrap();
    let not_json = ["", "{", "[]", "null", "\"x\"", "{\"ciphertext\": 1,}"];
    for input in not_json {
        assert!(matches!(open(input, &bob, &[&alice]).await, Err(EnvelopeError::NotJson(_))), "{input:?}");
    }
    let jwe_cases = [
        edit(&packed, |v| v["recipients"] = json!([])),
        edit(&packed, |v| v["iv"] = json!("***")),
        edit(&packed, |v| v["protected"] = json!("bm90IGpzb24")),
        edit(&packed, |v| {
            v.as_object_mut().unwrap().remove("tag");
        }),
        edit(&packed, |v| v["recipients"][0]["header"] = json!({})),
        edit(&packed, |v| v["unprotected"] = json!({"x": 1})),
        edit_protected(&packed, |h| h["typ"] = json!("application/json")),
        edit_protected(&packed, |h| h["apu"] = json!(b64url(b"did:web:example.org:users:mallory#k"))),
        edit_protected(&packed, |h| {
            h.as_object_mut().unwrap().remove("epk");
        }),
        edit_protected(&packed, |h| h["skid"] = json!("not a did url")),
    ];
    for (i, input) in jwe_cases.iter().enumerate() {
        let got = open(input, &bob, &[&alice]).await;
        assert!(matches!(got, Err(EnvelopeError::MalformedJwe(_))), "case {i}: {got:?}");
    }
    let signed = pack_signed(&hello(&alice, &bob), &alice.signer()).unwrap();
    let jws_cases = [
        edit(&signed, |v| v["payload"] = json!("***")),
        edit(&signed, |v| v["signatures"] = json!([])),
        edit(&signed, |v| v["signatures"][0]["header"]["kid"] = json!("nope")),
    ];
    for (i, input) in jws_cases.iter().enumerate() {
        let got = open(input, &bob, &[&alice]).await;
        assert!(matches!(got, Err(EnvelopeError::MalformedJws(_))), "case {i}: {got:?}");
    }
    // A well-encrypted message whose plaintext is not a DIDComm message.
    for bad in [json!({"id": "1", "type": BASIC, "to": [bob.did], "body": []}), json!({"hello": 1})] {
        let packed = jwe::encrypt(bad.to_string().as_bytes(), None, &bob.recipients()).unwrap();
        assert!(matches!(open(&packed, &bob, &[]).await, Err(EnvelopeError::MalformedMessage(_))));
    }
    let packed = jwe::encrypt(b"not json", None, &bob.recipients()).unwrap();
    assert!(matches!(open(&packed, &bob, &[]).await, Err(EnvelopeError::NotJson(_))));
}

#[tokio::test]
async fn layers_in_a_forbidden_order_are_refused() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let msg = hello(&alice, &bob);
    let anon = pack_anoncrypt(&msg, None, &bob.recipients()).unwrap();
    let auth_over_anon = jwe::encrypt(anon.as_bytes(), Some(alice.agreement(0)), &bob.recipients()).unwrap();
    assert!(matches!(open(&auth_over_anon, &bob, &[&alice]).await, Err(EnvelopeError::BadLayering(_))));
    let anon_anon = jwe::encrypt(anon.as_bytes(), None, &bob.recipients()).unwrap();
    assert!(matches!(open(&anon_anon, &bob, &[&alice]).await, Err(EnvelopeError::BadLayering(_))));
}

#[tokio::test]
async fn oversized_input_is_refused_before_parsing() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let msg = Message::new(BASIC, json!({"content": "x".repeat(5000)}))
        .with_from(alice.did.clone())
        .with_to(vec![bob.did.clone()]);
    let packed = pack_authcrypt(&msg, alice.agreement(0), Some(&alice.signer()), &bob.recipients()).unwrap();
    let small = UnpackOptions { max_size: 4096, ..Default::default() };
    let got = unpack(packed.as_bytes(), bob.all_agreement(), &directory(&[&alice]), &small).await;
    assert!(matches!(got, Err(EnvelopeError::TooLarge { limit: 4096, .. })), "{got:?}");
    let junk = vec![b'['; 10_000];
    let got = unpack(&junk, bob.all_agreement(), &directory(&[]), &small).await;
    assert!(matches!(got, Err(EnvelopeError::TooLarge { .. })));
    // Deep nesting within the limit is a parse error, not a stack overflow.
    let deep = "[".repeat(4000);
    assert!(matches!(open(&deep, &bob, &[]).await, Err(EnvelopeError::NotJson(_))));
}

#[tokio::test]
async fn unsupported_algorithms_are_named() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let packed = pack_anoncrypt(&hello(&alice, &bob), None, &bob.recipients()).unwrap();
    let cases = [
        edit_protected(&packed, |h| h["alg"] = json!("ECDH-ES+A128KW")),
        edit_protected(&packed, |h| h["alg"] = json!("RSA-OAEP-256")),
        edit_protected(&packed, |h| h["enc"] = json!("A128GCM")),
        edit_protected(&packed, |h| h["epk"] = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
        edit_protected(&packed, |h| h["zip"] = json!("DEF")),
    ];
    for (i, input) in cases.iter().enumerate() {
        let got = open(input, &bob, &[&alice]).await;
        assert!(matches!(got, Err(EnvelopeError::UnsupportedAlgorithm(_))), "case {i}: {got:?}");
    }
    let auth = pack_authcrypt(&hello(&alice, &bob), alice.agreement(0), None, &bob.recipients()).unwrap();
    let gcm = edit_protected(&auth, |h| h["enc"] = json!("A256GCM"));
    assert!(matches!(open(&gcm, &bob, &[&alice]).await, Err(EnvelopeError::UnsupportedAlgorithm(_))));
    let signed = pack_signed(&hello(&alice, &bob), &alice.signer()).unwrap();
    let es = edit(&signed, |v| v["signatures"][0]["protected"] = json!(b64url(br#"{"alg":"ES256K"}"#)));
    assert!(matches!(open(&es, &bob, &[&alice]).await, Err(EnvelopeError::UnsupportedAlgorithm(_))));
}

#[tokio::test]
async fn forward_wraps_for_the_node_and_the_recipient_opens_the_inside() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 2));
    let node = Party::new("node", 1);
    let inner =
        pack_authcrypt(&hello(&alice, &bob), alice.agreement(0), Some(&alice.signer()), &bob.recipients()).unwrap();
    let wrapped = wrap_forward(&inner, &bob.did, &node.recipients()).unwrap();

    let fwd = unwrap_forward(wrapped.as_bytes(), node.all_agreement(), &UnpackOptions::default()).unwrap();
    assert_eq!(fwd.next, bob.did.as_str());
    assert_eq!(fwd.recipient_kid, node.kid(0));
    assert_eq!(fwd.message, serde_json::from_str::<Value>(&inner).unwrap());
    let got = open(&fwd.message_json(), &bob, &[&alice]).await.unwrap();
    assert_eq!(got.message.body["content"], "hello");

    // The node's generic unpack sees an anoncrypted forward message too.
    let seen = open(&wrapped, &node, &[]).await.unwrap();
    assert_eq!(seen.message.kind, FORWARD_TYPE);
    assert!(seen.anoncrypted && seen.authenticated_sender().is_none());

    // Bob cannot open the forward; the node cannot open what is inside.
    let got = unwrap_forward(wrapped.as_bytes(), bob.all_agreement(), &UnpackOptions::default());
    assert!(matches!(got, Err(EnvelopeError::NotForUs { .. })), "{got:?}");
    assert!(matches!(open(&fwd.message_json(), &node, &[&alice]).await, Err(EnvelopeError::NotForUs { .. })));
    // Only encrypted messages are forwarded, and only anoncrypted forwards are read.
    assert!(wrap_forward(&serde_json::to_string(&hello(&alice, &bob)).unwrap(), &bob.did, &node.recipients()).is_err());
    let mut not_fwd = hello(&alice, &node);
    not_fwd.kind = BASIC.into();
    let anon = pack_anoncrypt(&not_fwd, None, &node.recipients()).unwrap();
    assert!(matches!(
        unwrap_forward(anon.as_bytes(), node.all_agreement(), &UnpackOptions::default()),
        Err(EnvelopeError::MalformedForward(_))
    ));
    let auth = pack_authcrypt(&hello(&alice, &node), alice.agreement(0), None, &node.recipients()).unwrap();
    assert!(matches!(
        unwrap_forward(auth.as_bytes(), node.all_agreement(), &UnpackOptions::default()),
        Err(EnvelopeError::MalformedForward(_))
    ));
}

/// Every single-byte change of a valid envelope is refused with an error, never a panic
/// (the fuzz target explores much further).
#[tokio::test]
async fn byte_flips_never_panic_and_never_pass() {
    let (alice, bob) = (Party::new("alice", 1), Party::new("bob", 1));
    let packed =
        pack_authcrypt(&hello(&alice, &bob), alice.agreement(0), Some(&alice.signer()), &bob.recipients()).unwrap();
    let dir = directory(&[&alice]);
    let ours = bob.all_agreement();
    let bytes = packed.as_bytes();
    let mut accepted = 0;
    for i in (0..bytes.len()).step_by(7) {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[i] ^= flip;
            if unpack(&b, ours, &dir, &UnpackOptions::default()).await.is_ok() {
                accepted += 1;
            }
        }
    }
    assert_eq!(accepted, 0, "a changed envelope was accepted");
}

#[test]
fn recipient_keys_come_from_key_agreement() {
    let bob = Party::new("bob", 3);
    let keys = RecipientKey::all_of(&bob.keys());
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[2].kid, bob.kid(2));
}

/// The server calls unpack from async handlers on a multi-threaded runtime: this fails to
/// compile if the future stops being `Send`.
#[allow(dead_code)]
fn unpack_with_the_core_resolver_is_send(resolver: &sichat_core::resolver::Resolver, ours: &[AgreementKey]) {
    fn assert_send<T: Send>(_: T) {}
    assert_send(unpack(b"{}", ours, resolver, &UnpackOptions::default()));
}

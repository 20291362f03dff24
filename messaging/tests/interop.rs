//! Interoperability with an implementation we did not write: SICPA's `didcomm` package
//! from PyPI (pure Python; JOSE by Authlib), driven through `tests/interop.py`.
//!
//! (a) we pack, Python unpacks; (b) Python packs, we unpack: authcrypt (signed and not),
//! anoncrypt (signed and not; A256CBC-HS512, XC20P and A256GCM), and forwards both ways.
//!
//! The interpreter is `$SICHAT_DIDCOMM_PYTHON`, else `~/.cache/sichat-py/bin/python`
//! (`.ci/run` creates it). Under `CI=true` a missing interpreter or package fails the test;
//! elsewhere the test says so loudly and passes.

mod common;

use common::{directory, Party};
use serde_json::{json, Value};
use sichat_messaging::{
    pack_anoncrypt, pack_authcrypt, unpack, unwrap_forward, wrap_forward, EnvelopeError, Message, UnpackOptions,
    Unpacked,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BASIC: &str = "https://didcomm.org/basicmessage/2.0/message";

fn python() -> Option<PathBuf> {
    let py = std::env::var_os("SICHAT_DIDCOMM_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/sichat-py/bin/python")
    });
    let usable = Command::new(&py)
        .args(["-c", "import didcomm"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(py);
    }
    let why = format!(
        "{} cannot import the `didcomm` package; run .ci/run, or create a venv with `pip install didcomm==0.3.2` \
         and set SICHAT_DIDCOMM_PYTHON to its python",
        py.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("interop test cannot run under CI: {why}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPING the DIDComm interop test: {why} !!!!!!!!!!\n");
    None
}

/// Run the requests through `interop.py`; one answer per request, `Err` with its message.
fn run_python(py: &PathBuf, requests: &[Value]) -> Vec<Result<Value, String>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().unwrap().write_all(Value::from(requests.to_vec()).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "interop.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("interop.py answers JSON");
    assert_eq!(answers.len(), requests.len());
    answers
        .into_iter()
        .map(|a| match a.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => Err(a["error"].as_str().unwrap_or("?").to_owned()),
        })
        .collect()
}

fn hello(from: &Party, to: &Party, text: &str) -> Message {
    Message::new(BASIC, json!({"content": text})).with_from(from.did.clone()).with_to(vec![to.did.clone()])
}

#[tokio::test]
async fn python_didcomm_reads_ours_and_we_read_its() {
    let Some(py) = python() else { return };
    let alice = Party::new("alice", 1);
    let bob = Party::new("bob", 3);
    let node = Party::new("node", 1);
    let docs: Vec<Value> = [&alice, &bob, &node].iter().map(|p| p.document()).collect();

    // (a) We pack; Python unpacks with the secrets of one of Bob's devices (the last one,
    // so Python must find its key among the three recipients).
    let bob_device = json!([bob.secrets()[0], bob.secrets()[3]]);
    let ours = [
        (
            "authcrypt+sign",
            pack_authcrypt(&hello(&alice, &bob, "a1"), alice.agreement(0), Some(&alice.signer()), &bob.recipients()),
        ),
        ("authcrypt", pack_authcrypt(&hello(&alice, &bob, "a2"), alice.agreement(0), None, &bob.recipients())),
        ("anoncrypt+sign", pack_anoncrypt(&hello(&alice, &bob, "a3"), Some(&alice.signer()), &bob.recipients())),
        ("anoncrypt", pack_anoncrypt(&hello(&alice, &bob, "a4"), None, &bob.recipients())),
    ]
    .map(|(name, packed)| (name, packed.unwrap()));
    let mut requests: Vec<Value> = ours
        .iter()
        .map(|(_, packed)| json!({"op": "unpack", "docs": docs, "secrets": bob_device, "packed": packed}))
        .collect();
    let forward = wrap_forward(&ours[0].1, &bob.did, &node.recipients()).unwrap();
    requests.push(json!({"op": "unpack", "docs": docs, "secrets": node.secrets(), "packed": forward}));

    // (b) Python packs; we unpack.
    let msg = |text: &str| {
        json!({"id": format!("py-{text}"), "type": BASIC, "from": alice.did, "to": [bob.did],
               "created_time": 1_700_000_000, "body": {"content": text}})
    };
    let theirs = [
        ("py authcrypt+sign", json!({"from": alice.did, "sign_from": alice.sign_kid})),
        ("py authcrypt", json!({"from": alice.did})),
        ("py anoncrypt+sign A256CBC-HS512", json!({"sign_from": alice.sign_kid, "enc_anon": "A256CBC-HS512"})),
        ("py anoncrypt XC20P", json!({"enc_anon": "XC20P"})),
        ("py anoncrypt A256GCM", json!({"enc_anon": "A256GCM"})),
        (
            "py authcrypt+sign in a forward",
            json!({"from": alice.did, "sign_from": alice.sign_kid, "forward_via": [node.kid(0)]}),
        ),
    ];
    for (i, (_, opts)) in theirs.iter().enumerate() {
        let mut req = json!({"op": "pack", "docs": docs, "secrets": alice.secrets(), "message": msg(&i.to_string()),
                             "to": bob.did});
        for (k, v) in opts.as_object().unwrap() {
            req[k] = v.clone();
        }
        requests.push(req);
    }

    let answers = run_python(&py, &requests);

    // (a) What Python read of ours.
    for (i, (name, _)) in ours.iter().enumerate() {
        let got = answers[i].as_ref().unwrap_or_else(|e| panic!("Python could not unpack our {name}: {e}"));
        let meta = &got["metadata"];
        assert_eq!(got["message"]["body"]["content"], format!("a{}", i + 1), "{name}");
        assert_eq!(got["message"]["from"], alice.did.as_str(), "{name}");
        assert_eq!(meta["encrypted"], true, "{name}");
        assert_eq!(meta["encrypted_to"], json!(bob.agree.iter().map(|k| k.kid()).collect::<Vec<_>>()), "{name}");
        let authcrypt = name.starts_with("authcrypt");
        let signed = name.ends_with("+sign");
        // Python's `authenticated` means "sender proven": by authcrypt or by a signature.
        assert_eq!(meta["authenticated"], authcrypt || signed, "{name}: {meta}");
        assert_eq!(meta["anonymous_sender"], !authcrypt, "{name}: {meta}");
        assert_eq!(meta["non_repudiation"], signed, "{name}: {meta}");
        assert_eq!(meta["encrypted_from"], if authcrypt { json!(alice.kid(0)) } else { Value::Null }, "{name}");
        assert_eq!(meta["sign_from"], if signed { json!(alice.sign_kid) } else { Value::Null }, "{name}");
        let alg = if authcrypt { &meta["enc_alg_auth"] } else { &meta["enc_alg_anon"] };
        let want = if authcrypt { "A256CBC_HS512_ECDH_1PU_A256KW" } else { "A256CBC_HS512_ECDH_ES_A256KW" };
        assert_eq!(alg, want, "{name}");
    }
    let fwd = answers[ours.len()].as_ref().unwrap_or_else(|e| panic!("Python could not unpack our forward: {e}"));
    assert_eq!(fwd["message"]["type"], "https://didcomm.org/routing/2.0/forward");
    assert_eq!(fwd["message"]["body"]["next"], bob.did.as_str());
    assert_eq!(
        fwd["message"]["attachments"][0]["data"]["json"],
        serde_json::from_str::<Value>(&ours[0].1).unwrap(),
        "the forward carries our message unchanged"
    );

    // (b) What we read of Python's.
    let dir = directory(&[&alice]);
    for (i, (name, _)) in theirs.iter().enumerate() {
        let packed =
            answers[ours.len() + 1 + i].as_ref().unwrap_or_else(|e| panic!("Python could not pack {name}: {e}"));
        let mut packed = packed["packed"].as_str().unwrap().to_owned();
        if name.contains("forward") {
            // The node unwraps the forward; the attachment is Python's message to Bob.
            let fwd = unwrap_forward(packed.as_bytes(), node.all_agreement(), &UnpackOptions::default())
                .unwrap_or_else(|e| panic!("we could not unwrap {name}: {e}\n{packed}"));
            assert_eq!(fwd.next, bob.did.as_str(), "{name}");
            packed = fwd.message_json();
        }
        // Only the last device's key, again.
        let mine = &bob.all_agreement()[2..];
        let got: Unpacked = unpack(packed.as_bytes(), mine, &dir, &UnpackOptions::default())
            .await
            .unwrap_or_else(|e| panic!("we could not unpack {name}: {e}\n{packed}"));
        assert_eq!(got.message.id.as_str(), format!("py-{i}"), "{name}");
        assert_eq!(got.message.body["content"], i.to_string(), "{name}");
        assert_eq!(got.recipient_kid.as_deref(), Some(bob.kid(2)), "{name}");
        let authcrypt = name.contains("authcrypt");
        let signed = name.contains("+sign");
        assert_eq!(got.authcrypted(), authcrypt, "{name}");
        assert_eq!(got.anoncrypted, !authcrypt, "{name}");
        assert_eq!(got.signed(), signed, "{name}");
        if authcrypt || signed {
            assert_eq!(got.authenticated_sender(), Some(&alice.did), "{name}");
        }
        // And Python's envelopes are refused like ours when they are not for us.
        let carol = Party::new("carol", 1);
        let theirs_not_ours = unpack(packed.as_bytes(), carol.all_agreement(), &dir, &UnpackOptions::default()).await;
        assert!(matches!(theirs_not_ours, Err(EnvelopeError::NotForUs { .. })), "{name}");
    }
}

/// Other DIDComm implementations name the signer's `kid` in both JWS headers. Python signs
/// such a message (its own key handling, Authlib's JWS): the same `kid` twice is read as one
/// signer; two different `kid`s are refused, as is a signature that does not verify.
#[tokio::test]
async fn a_kid_in_both_jws_headers_is_one_signer() {
    let Some(py) = python() else { return };
    let alice = Party::new("alice", 1);
    let bob = Party::new("bob", 1);
    let mallory = Party::new("mallory", 1);
    let docs: Vec<Value> = [&alice, &bob, &mallory].iter().map(|p| p.document()).collect();
    let msg = json!({"id": "py-signed", "type": BASIC, "from": alice.did, "to": [bob.did],
                     "created_time": 1_700_000_000, "body": {"content": "signed twice"}});
    let sign = |protected_kid: Option<&str>| {
        json!({"op": "sign", "docs": docs, "secrets": alice.secrets(), "message": msg,
               "sign_from": alice.sign_kid, "protected_kid": protected_kid})
    };
    let answers = run_python(&py, &[sign(Some(&alice.sign_kid)), sign(Some(&mallory.sign_kid)), sign(None)]);
    let packed: Vec<String> = answers
        .iter()
        .map(|a| a.as_ref().expect("Python signs")["packed"].as_str().expect("text").to_owned())
        .collect();
    let protected = |p: &str| -> Value {
        let v: Value = serde_json::from_str(p).unwrap();
        let b = sichat_core::ids::b64url_decode(v["signatures"][0]["protected"].as_str().unwrap()).unwrap();
        serde_json::from_slice(&b).unwrap()
    };
    assert_eq!(protected(&packed[0])["kid"], alice.sign_kid.as_str(), "the kid is in the protected header");
    let dir = directory(&[&alice, &mallory]);
    let mine = bob.all_agreement();

    let both = unpack(packed[0].as_bytes(), mine, &dir, &UnpackOptions::default())
        .await
        .unwrap_or_else(|e| panic!("we could not read a kid named twice: {e}\n{}", packed[0]));
    assert_eq!(both.message.body["content"], "signed twice");
    assert_eq!(both.authenticated_sender(), Some(&alice.did));
    assert!(both.signed());

    let conflicting = unpack(packed[1].as_bytes(), mine, &dir, &UnpackOptions::default()).await;
    assert!(matches!(conflicting, Err(EnvelopeError::MalformedJws(_))), "two signers named: {:?}", conflicting.err());

    // The usual form (kid unprotected only) still reads; and Python reads what it signed with
    // the kid twice (so the message is well-formed to it too).
    let plain = unpack(packed[2].as_bytes(), mine, &dir, &UnpackOptions::default()).await.expect("unprotected kid");
    assert_eq!(plain.message.body["content"], "signed twice");
    let read_back =
        run_python(&py, &[json!({"op": "unpack", "docs": docs, "secrets": bob.secrets(), "packed": packed[0]})]);
    assert_eq!(read_back[0].as_ref().expect("Python reads it")["message"]["body"]["content"], "signed twice");
}

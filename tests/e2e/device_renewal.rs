//! Device certificates renew, with the clock moved (libfaketime under the real `sichatd`
//! and `sichat` processes), never slept: before they end (any command of the root-key
//! wallet renews what ends within 30 days; the other devices take theirs at their next
//! command), and after they ended (`sichat device renew`, on the root-key wallet and then
//! on the device). Renewals signed by the wrong key, for keys the device does not have, or
//! ending earlier are refused and change nothing.
//!
//! libfaketime comes from Debian (`apt-get install faketime`; `.ci/run` installs it).
//! Without it the clock test skips loudly; under `CI=true` it fails.

use crate::portable_did::Raw;
use crate::process::{field, free_port, sigterm, start_env};
use serde_json::Value;
use sichat_accounts::protocol::{DeviceCertificate, RootOperation};
use sichat_core::did::Did;
use sichat_core::keys::Ed25519KeyPair;
use sichat_e2e::{
    json, session_token, sichat, sichat_env, stderr, storage_tests, unseal, Backend, TempDir, TestApp, TestDb,
    PASSPHRASE,
};
use std::path::{Path, PathBuf};

storage_tests!(devices_renew_before_and_after_their_certificates_end, bad_renewals_change_nothing);

const DAY_MS: i64 = 24 * 3600 * 1000;

fn libfaketime() -> Option<PathBuf> {
    let found =
        ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
    if found.is_none() {
        let msg = "the device renewal test moves the clock with libfaketime: apt-get install faketime";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("!!!! SKIPPED: {msg}");
    }
    found
}

/// The environment of a process whose clock is `days` ahead (timers keep the real
/// monotonic clock).
fn clock(lib: &Path, days: i64) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME", format!("+{days}d")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("SICHAT_PASSPHRASE", PASSPHRASE.into()),
    ]
}

async fn at(lib: &Path, days: i64, wallet: &Path, args: &[&str]) -> std::process::Output {
    let env = clock(lib, days);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sichat_env(wallet, args, &env).await
}

/// `device list` from `wallet`: each device's end of certificate, by name.
fn ends(out: &std::process::Output) -> std::collections::HashMap<String, i64> {
    json(out)
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| (d["name"].as_str().expect("name").to_owned(), d["cert_expires_at"].as_i64().expect("end")))
        .collect()
}

fn own_end(wallet: &Path) -> i64 {
    let cert: DeviceCertificate =
        sichat_core::jws::unverified_payload(&unseal(wallet).certificate).expect("certificate");
    cert.exp * 1000
}

async fn devices_renew_before_and_after_their_certificates_end(backend: Backend) {
    let Some(lib) = libfaketime() else { return };
    let dir = TempDir::new("renew");
    let Some(db) = TestDb::create(backend, dir.path()).await else { return };
    let data = dir.path().join("data");
    let port = free_port();
    let node_at = |days: i64, fresh: bool| {
        let (data, url, env) = (data.clone(), db.url.clone(), clock(&lib, days));
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            start_env(&data, &url, port, fresh, &env).await
        }
    };
    let (mut node, banner) = node_at(0, true).await;
    let url = field(&banner, "URL:");
    let idx = banner.iter().position(|l| l.contains("owner invite")).expect("owner invite printed");
    let invite = banner[idx + 1].trim().to_owned();
    let (alice, phone) = (dir.path().join("alice"), dir.path().join("phone"));
    let out = at(&lib, 0, &alice, &["init", "--server", &url, "--invite", &invite, "--name", "alice"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = at(&lib, 0, &alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let first_end = own_end(&phone);
    let start = first_end - 365 * DAY_MS;

    // Day 340: the phone still signs in, and is told nothing (it holds no root key).
    sigterm(&mut node).await;
    let (mut node, _) = node_at(340, false).await;
    let out = at(&lib, 340, &phone, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ends(&out)["phone"], first_end, "nothing renewed yet");
    // Any command of the root-key wallet renews what ends within 30 days: itself first,
    // then the phone.
    let out = at(&lib, 340, &alice, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "--json prints no notices: {}", stderr(&out));
    let renewed = ends(&out);
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    for (name, end) in &renewed {
        assert!(*end > start + 700 * DAY_MS, "{name} renewed for a year from day 340: {renewed:?}");
    }
    let out = at(&lib, 340, &alice, &["invite", "list"]).await;
    assert!(out.status.success() && !stderr(&out).contains("Renewed"), "nothing due any more: {}", stderr(&out));
    // The phone takes its renewed certificate at its next command.
    let out = at(&lib, 340, &phone, &["--json", "device", "renew"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["renewed"], true, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(own_end(&phone), renewed["phone"]);

    // Day 400, past the first certificates' end: both sign in.
    sigterm(&mut node).await;
    let (mut node, _) = node_at(400, false).await;
    for w in [&alice, &phone] {
        let out = at(&lib, 400, w, &["--json", "device", "list"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // Day 800: every certificate ended and nobody renewed. The phone is told what to do.
    sigterm(&mut node).await;
    let (mut node, _) = node_at(800, false).await;
    let out = at(&lib, 800, &phone, &["device", "list"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sichat device renew"), "{}", stderr(&out));
    let out = at(&lib, 800, &phone, &["device", "renew"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("on the wallet that holds your root key"), "{}", stderr(&out));
    // The root-key wallet renews itself (a root operation needs no session), then the rest.
    let out = at(&lib, 800, &alice, &["--json", "device", "renew"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.len(), 2, "{listed:?}");
    for d in &listed {
        assert!(d["cert_expires_at"].as_i64().expect("end") > start + 1160 * DAY_MS, "{d}");
    }
    let out = at(&lib, 800, &phone, &["--json", "device", "renew"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["renewed"], true);
    let out = at(&lib, 800, &phone, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "the phone works again: {}", stderr(&out));
    // The root key rotates again after all this (it needs a sign-in).
    let out = at(&lib, 800, &alice, &["--json", "key", "rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    sigterm(&mut node).await;
}

/// Renewals the node must refuse: the root operation or the certificate signed by another
/// key, a certificate for other keys than the device's, for a revoked device, one that ends
/// no later than the current one, none at all. Nothing changes.
async fn bad_renewals_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let phone = app.wallet("phone");
    let out = sichat(&alice, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let old = app.wallet("old");
    let out = sichat(&alice, &["device", "add", "--name", "old", "--out", old.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let old_id = unseal(&old).profile["device_id"].as_str().expect("id").to_owned();
    let out = sichat(&alice, &["device", "revoke", &old_id]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let did_text = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let did = Did::parse(&did_text).expect("did");
    let root = unseal(&alice).root.expect("root");
    let p = unseal(&phone);
    let phone_id = p.profile["device_id"].as_str().expect("id").to_owned();
    let year = 365 * 24 * 3600;
    let cert = |key: &Ed25519KeyPair, id: &str, sign: &Ed25519KeyPair, lifetime: i64| {
        DeviceCertificate::issue(key, &did, id, "phone", &sign.public(), &p.device_agree.public(), lifetime)
            .expect("certificate")
    };
    let stranger = Ed25519KeyPair::generate();
    let renew = |certificates: Vec<String>| RootOperation::RenewDevices { certificates };
    let before = devices(&app, &alice).await;
    let raw = Raw { root: Ed25519KeyPair::from_secret(&root.secret()).expect("key"), did: did.clone() };
    let o = unseal(&old);
    let cases = [
        (renew(vec![cert(&stranger, &phone_id, &p.device_sign, year)]), "not signed by the account's root key"),
        (renew(vec![cert(&root, &phone_id, &Ed25519KeyPair::generate(), year)]), "not an active device"),
        (
            renew(vec![DeviceCertificate::issue(
                &root,
                &did,
                &old_id,
                "old",
                &o.device_sign.public(),
                &o.device_agree.public(),
                year,
            )
            .expect("cert")]),
            "not an active device",
        ),
        (renew(vec![cert(&root, &phone_id, &p.device_sign, 3600)]), "earlier than"),
        (
            renew(vec![cert(&root, &phone_id, &p.device_sign, year), cert(&root, &phone_id, &p.device_sign, year)]),
            "renewed twice",
        ),
        (renew(vec![]), "renew 1 to 100"),
    ];
    for (op, says) in cases {
        let (status, body) = raw.root_op(&app, op, None).await;
        assert!(matches!(status, 400 | 401), "{says}: {status} {body}");
        assert!(body.to_string().contains(says), "{says}: {body}");
        assert_eq!(devices(&app, &alice).await, before, "{says}: nothing changed");
    }
    // Signed by another key than the root: refused.
    let forger = Raw { root: stranger, did: did.clone() };
    let (status, body) = forger.root_op(&app, renew(vec![cert(&root, &phone_id, &p.device_sign, year)]), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(devices(&app, &alice).await, before);
    // The same renewal, well made, is taken.
    let (status, body) = raw.root_op(&app, renew(vec![cert(&root, &phone_id, &p.device_sign, year + 60)]), None).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(devices(&app, &alice).await, before);
    app.stop().await;
}

/// The account's devices, as the node lists them.
async fn devices(app: &TestApp, wallet: &Path) -> Value {
    let token = session_token(app, wallet).await;
    let r = app.http.get(format!("{}/api/v1/devices", app.url)).bearer_auth(token).send().await.expect("GET");
    r.json().await.expect("json")
}

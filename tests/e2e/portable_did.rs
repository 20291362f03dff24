//! Portable DIDs (did:webvh): `sichat did upgrade` gives an existing account a DID whose
//! history its root key signs; every later root operation appends the entry that keeps the
//! did:webvh and did:web documents the same; and no forged, stale or misplaced entry is
//! ever stored.

use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::{Did, DidDocument, Relationships};
use sichat_core::ids::new_id;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::resolver::{Keys, Resolver};
use sichat_core::webvh::{self, Genesis};
use sichat_e2e::{json, sichat, sichat_env, stderr, storage_tests, Backend, TestApp};

const LOCAL: &[(&str, &str)] = &[("SICHAT_ALLOW_LOCAL_NETWORK", "true"), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;

storage_tests!(
    upgrade_then_every_root_operation_keeps_both_documents_in_step,
    forged_log_entries_change_nothing,
    credentials_from_before_and_after_the_upgrade_verify_and_revoke,
    the_node_has_a_did_webvh_that_follows_its_url
);

pub(crate) async fn text(app: &TestApp, path: &str) -> (u16, String, String) {
    let r = app.http.get(format!("{}{path}", app.url)).send().await.expect("GET");
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned()).unwrap_or_default();
    (status, ct, r.text().await.expect("body"))
}

async fn log_rows(app: &TestApp) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM acct_did_log").fetch_one(app.node.db.pool()).await.expect("count");
    row.try_get::<i64, _>("n").expect("n")
}

/// Fragment → public key of every signature method, for comparing two documents.
fn key_map(keys: &Keys) -> BTreeMap<String, String> {
    keys.methods
        .iter()
        .map(|m| (m.id.rsplit_once('#').expect("fragment").1.to_owned(), format!("{:?}", m.key)))
        .chain(
            keys.agreement
                .iter()
                .map(|m| (m.id.rsplit_once('#').expect("fragment").1.to_owned(), format!("{:?}", m.key))),
        )
        .collect()
}

/// The log verifies (the DIF's verifier), and its document says what the did:web one says.
async fn check_in_step(app: &TestApp, resolver: &Resolver, webvh_did: &str, web_did: &str, entries: usize) -> Value {
    let (status, ct, raw) = text(app, "/users/alice/did.jsonl").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/jsonl"), "{ct}");
    let log = webvh::verify_log(webvh_did, &raw).await.expect("the served log verifies");
    assert_eq!(log.entries, entries);
    assert_eq!(log.document["alsoKnownAs"], json!([web_did]));
    let web: Value = app
        .http
        .get(format!("{}/users/alice/did.json", app.url))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(web["alsoKnownAs"], json!([webvh_did]));
    let (a, b) = (
        resolver.resolve(webvh_did).await.expect("webvh resolves"),
        resolver.resolve(web_did).await.expect("web resolves"),
    );
    assert_eq!(key_map(&a), key_map(&b), "both documents list the same keys");
    log.document
}

async fn upgrade_then_every_root_operation_keeps_both_documents_in_step(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let web_did = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    assert_eq!(text(&app, "/users/alice/did.jsonl").await.0, 404, "no log before the upgrade");

    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "did upgrade: {}", stderr(&out));
    let webvh_did = json(&out)["did"].as_str().expect("did").to_owned();
    assert!(webvh_did.starts_with("did:webvh:Qm"), "{webvh_did}");
    assert!(webvh_did.ends_with(web_did.trim_start_matches("did:web:")), "{webvh_did} is at {web_did}'s address");

    // Fresh resolvers each time: the cache would hide a stale document.
    let resolver = || Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true }).expect("fetcher")));
    let doc = check_in_step(&app, &resolver(), &webvh_did, &web_did, 1).await;
    assert!(doc["assertionMethod"].as_array().expect("issuing keys").len() >= 2, "both issuing keys are in the log");

    // Once is enough; the second time says so.
    let out = sichat(&alice, &["did", "upgrade"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already has a did:webvh DID"), "{}", stderr(&out));
    assert_eq!(log_rows(&app).await, 1);

    // A device added, then revoked, then the root key rotated: one entry each.
    let phone = app.wallet("alice-phone");
    let out =
        sichat(&alice, &["--json", "device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "device add: {}", stderr(&out));
    let phone_id = json(&out)["device_id"].as_str().expect("id").to_owned();
    let doc = check_in_step(&app, &resolver(), &webvh_did, &web_did, 2).await;
    assert!(doc["authentication"].to_string().contains(&format!("#device-{phone_id}")));

    let out = sichat(&alice, &["device", "revoke", &phone_id]).await;
    assert!(out.status.success(), "device revoke: {}", stderr(&out));
    let doc = check_in_step(&app, &resolver(), &webvh_did, &web_did, 3).await;
    assert!(!doc.to_string().contains(&format!("#device-{phone_id}")));

    let out = sichat(&alice, &["--json", "key", "rotate"]).await;
    assert!(out.status.success(), "key rotate: {}", stderr(&out));
    let new_root = json(&out)["root_key"].as_str().expect("root key").to_owned();
    check_in_step(&app, &resolver(), &webvh_did, &web_did, 4).await;
    let (_, _, raw) = text(&app, "/users/alice/did.jsonl").await;
    let log = webvh::verify_log(&webvh_did, &raw).await.expect("verifies");
    assert_eq!(log.update_keys, [new_root], "the new root key controls the DID from now on");

    // The account still works with the rotated key.
    let out = sichat(&alice, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A user registered by hand, so the test holds the root key and can forge.
pub(crate) struct Raw {
    pub(crate) root: Ed25519KeyPair,
    pub(crate) did: Did,
}

impl Raw {
    pub(crate) async fn register(app: &TestApp) -> Self {
        let root = Ed25519KeyPair::generate();
        let did = app.node.identity.user_did("alice").expect("did");
        let claims = RegistrationClaims {
            aud: app.node.identity.did().to_string(),
            challenge: challenge(app).await,
            invite: app.owner_invite.clone(),
            name: "alice".into(),
            root_key: root.public().to_multibase(),
            device_certificate: device_cert(&root, &did, &new_id()),
            iat: now_secs(),
            key_did: None,
        };
        let request = jws::sign(&root, TYP_REGISTER, None, &claims).expect("sign");
        let (status, body) = app.post_json("/api/v1/accounts", &json!({ "request": request })).await;
        assert_eq!(status, 201, "{body}");
        Self { root, did }
    }

    pub(crate) async fn root_op(&self, app: &TestApp, op: RootOperation, entry: Option<String>) -> (u16, Value) {
        let claims = RootOpClaims {
            iss: self.did.to_string(),
            aud: app.node.identity.did().to_string(),
            challenge: challenge(app).await,
            iat: now_secs(),
            op,
            did_log_entry: entry,
        };
        let request = jws::sign(&self.root, TYP_ROOT_OP, Some(&self.did.url("root")), &claims).expect("sign");
        app.post_json("/api/v1/root-operations", &json!({ "request": request })).await
    }
}

pub(crate) fn device_cert(root: &Ed25519KeyPair, did: &Did, id: &str) -> String {
    let (sign, agree) = (Ed25519KeyPair::generate(), X25519KeyPair::generate());
    DeviceCertificate::issue(root, did, id, "test", &sign.public(), &agree.public(), 3600).expect("cert")
}

pub(crate) async fn challenge(app: &TestApp) -> String {
    let (status, body) = app.post_json("/api/v1/challenges", &json!({})).await;
    assert_eq!(status, 200);
    body["challenge"].as_str().expect("challenge").to_owned()
}

/// The account's document in did:webvh form, `id` the template or a DID.
pub(crate) async fn webvh_state(app: &TestApp, web: &Did, id: &str) -> Value {
    let doc: Value = app
        .http
        .get(format!("{}/users/alice/did.json", app.url))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let text =
        doc.to_string().replace(&format!("{web}\""), &format!("{id}\"")).replace(&format!("{web}#"), &format!("{id}#"));
    let mut state: Value = serde_json::from_str(&text).expect("json");
    state.as_object_mut().expect("object").remove("alsoKnownAs");
    state["alsoKnownAs"] = json!([web.to_string()]);
    state
}

pub(crate) fn first(
    state: Value,
    keys: &[&Ed25519KeyPair],
    signer: &Ed25519KeyPair,
    portable: bool,
) -> (String, String) {
    let publics: Vec<_> = keys.iter().map(|k| k.public()).collect();
    let (did, entry) =
        webvh::create(state, &publics, &Genesis { portable, ..Default::default() }, signer).expect("create");
    (did.to_string(), entry.line)
}

async fn forged_log_entries_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = Raw::register(&app).await;
    let web = alice.did.clone();
    let template = format!("did:webvh:{{SCID}}:{}", web.as_str().trim_start_matches("did:web:"));
    let stranger = Ed25519KeyPair::generate();
    let refused = |(status, body): (u16, Value), want: &str| {
        assert!((400..500).contains(&status), "{status} {body}");
        assert!(body.to_string().contains(want), "expected {want:?} in {body}");
    };

    // Upgrades that must not take: each refused with its reason, no log stored.
    let state = webvh_state(&app, &web, &template).await;
    let (_, by_stranger) = first(state.clone(), &[&stranger], &stranger, true);
    refused(alice.root_op(&app, RootOperation::UpgradeDid { entry: by_stranger }, None).await, "root key");
    let (_, both) = first(state.clone(), &[&alice.root, &stranger], &alice.root, true);
    refused(
        alice.root_op(&app, RootOperation::UpgradeDid { entry: both }, None).await,
        "update keys must be the account's root key",
    );
    let (_, fixed) = first(state.clone(), &[&alice.root], &alice.root, false);
    refused(alice.root_op(&app, RootOperation::UpgradeDid { entry: fixed }, None).await, "portable");
    let mut extra = state.clone();
    extra["verificationMethod"].as_array_mut().expect("methods").push(json!({
        "id": format!("{template}#evil"), "type": "Multikey", "controller": template,
        "publicKeyMultibase": stranger.public().to_multibase(),
    }));
    let (_, extra) = first(extra, &[&alice.root], &alice.root, true);
    refused(alice.root_op(&app, RootOperation::UpgradeDid { entry: extra }, None).await, "not the account's document");
    let elsewhere = webvh_state(&app, &web, &template)
        .await
        .to_string()
        .replace(&template, "did:webvh:{SCID}:evil.example:users:alice");
    let (_, elsewhere) = first(serde_json::from_str(&elsewhere).expect("json"), &[&alice.root], &alice.root, true);
    refused(
        alice.root_op(&app, RootOperation::UpgradeDid { entry: elsewhere }, None).await,
        "not at this account's address",
    );
    refused(
        alice.root_op(&app, RootOperation::UpgradeDid { entry: "{\"not\":\"an entry\"".into() }, None).await,
        "DID log entry",
    );
    assert_eq!(log_rows(&app).await, 0);

    // The real upgrade, then its replay.
    let (webvh_did, genesis) = first(state, &[&alice.root], &alice.root, true);
    let (status, body) = alice.root_op(&app, RootOperation::UpgradeDid { entry: genesis.clone() }, None).await;
    assert_eq!(status, 200, "{body}");
    refused(alice.root_op(&app, RootOperation::UpgradeDid { entry: genesis.clone() }, None).await, "already");
    assert_eq!(log_rows(&app).await, 1);

    // Root operations on an upgraded account: without the entry, with a stale or forged one.
    let devices = || async {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM acct_devices WHERE revoked_at IS NULL")
            .fetch_one(app.node.db.pool())
            .await
            .expect("count");
        row.try_get::<i64, _>("n").expect("n")
    };
    let before = devices().await;
    let id = new_id();
    let cert = device_cert(&alice.root, &web, &id);
    let add = || RootOperation::AddDevice { certificate: cert.clone() };
    refused(alice.root_op(&app, add(), None).await, "must carry the log's next entry");
    let current = webvh::verify_log(&webvh_did, &format!("{genesis}\n")).await.expect("verifies").document;
    // The document without the new device: not what the node will serve.
    let same = webvh::append(&genesis, current.clone(), json!({}), &alice.root).expect("append").line;
    refused(alice.root_op(&app, add(), Some(same)).await, "after this operation");
    // The right document, signed by another key.
    let payload: DeviceCertificate = jws::unverified_payload(&cert).expect("cert");
    let mut with_device: DidDocument = serde_json::from_value(current.clone()).expect("doc");
    with_device.add_key(
        &format!("device-{id}"),
        payload.sign_key.clone(),
        Relationships { authentication: true, ..Default::default() },
    );
    with_device.add_key(
        &format!("device-{id}-x25519"),
        payload.agree_key.clone(),
        Relationships { key_agreement: true, ..Default::default() },
    );
    let with_device = serde_json::to_value(&with_device).expect("json");
    let forged = webvh::append(&genesis, with_device.clone(), json!({}), &stranger).expect("append").line;
    refused(alice.root_op(&app, add(), Some(forged)).await, "not authorized");
    // A move smuggled into a root operation.
    let moved = with_device.to_string().replace(&webvh_did, &webvh_did.replace("localhost", "evil.localhost"));
    let moved = webvh::append(&genesis, serde_json::from_str(&moved).expect("json"), json!({}), &alice.root)
        .expect("append")
        .line;
    refused(alice.root_op(&app, add(), Some(moved)).await, "must keep the DID");
    assert_eq!(devices().await, before, "no refused operation added the device");
    assert_eq!(log_rows(&app).await, 1, "no refused entry was stored");

    // The right entry: stored, and the device added with it.
    let good = webvh::append(&genesis, with_device, json!({}), &alice.root).expect("append").line;
    let (status, body) = alice.root_op(&app, add(), Some(good.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(devices().await, before + 1);
    assert_eq!(log_rows(&app).await, 2);
    // Replaying it with the next operation is refused: it is not the next version.
    let other = device_cert(&alice.root, &web, &new_id());
    refused(
        alice.root_op(&app, RootOperation::AddDevice { certificate: other }, Some(good.clone())).await,
        "DID log entry",
    );
    assert_eq!(log_rows(&app).await, 2);

    // Catching up (as after a restore) to a key k2 the root key rotated to: the entries the
    // node lacks must continue its log, signed by keys it authorised, and leave k2 in control.
    let k2 = Ed25519KeyPair::generate();
    let rotation = RootRotation {
        iss: web.to_string(),
        prev: alice.root.public().to_multibase(),
        next: k2.public().to_multibase(),
        iat: now_secs(),
    };
    let rotations = vec![jws::sign(&alice.root, TYP_ROOT_ROTATION, None, &rotation).expect("sign")];
    let rotated = Raw { root: k2, did: web.clone() };
    let catch_up = |did_log: Vec<String>| RootOperation::CatchUp {
        rotations: rotations.clone(),
        certificates: vec![device_cert(&rotated.root, &web, &new_id())],
        did_log,
    };
    let to_k2 = json!({"updateKeys": [rotated.root.public().to_multibase()]});
    let current = webvh::verify_log(&webvh_did, &format!("{genesis}\n{good}\n")).await.expect("verifies").document;
    refused(rotated.root_op(&app, catch_up(Vec::new()), None).await, "carries none of the entries");
    let by_stranger = webvh::append(&good, current.clone(), to_k2.clone(), &stranger).expect("append").line;
    refused(rotated.root_op(&app, catch_up(vec![by_stranger]), None).await, "not authorized");
    refused(rotated.root_op(&app, catch_up(vec![good.clone()]), None).await, "DID log entry");
    let stays_k1 = webvh::append(&good, current, json!({}), &alice.root).expect("append").line;
    refused(rotated.root_op(&app, catch_up(vec![stays_k1]), None).await, "not controlled by the key signing");
    assert_eq!(log_rows(&app).await, 2, "no refused catch-up stored an entry");
    let root: String = sqlx::query_scalar("SELECT root_key FROM acct_users WHERE name = 'alice'")
        .fetch_one(app.node.db.pool())
        .await
        .expect("root");
    assert_eq!(root, alice.root.public().to_multibase(), "nor changed the root key");
}

pub(crate) async fn issue(app: &TestApp, wallet: &std::path::Path, to: &str, format: &str) -> (String, String) {
    let _ = app;
    let out = sichat(
        wallet,
        &[
            "--json",
            "credential",
            "issue",
            "--type",
            "FriendCredential",
            "--to",
            to,
            "--claim",
            "name=Bob",
            "--format",
            format,
        ],
    )
    .await;
    assert!(out.status.success(), "issue: {}", stderr(&out));
    let issued = json(&out);
    let credential = match &issued["credential"] {
        Value::String(jwt) => jwt.clone(),
        other => other.to_string(),
    };
    (issued["id"].as_str().expect("id").to_owned(), credential)
}

async fn verdict(app: &TestApp, credential: &str) -> (bool, String) {
    let report = app.node.verifier.verify(credential, &sichat_verifier::Options::default()).await;
    (report.valid, serde_json::to_string(&report).unwrap_or_default())
}

pub(crate) fn issuer_of(credential: &str) -> String {
    let vc: Value = if credential.starts_with('{') {
        serde_json::from_str(credential).expect("json")
    } else {
        let payload = credential.split('.').nth(1).expect("payload");
        serde_json::from_slice(&sichat_core::ids::b64url_decode(payload).expect("b64")).expect("json")
    };
    vc["issuer"].as_str().expect("issuer").to_owned()
}

/// Credentials issued under did:web before the upgrade keep verifying (their status lists
/// stay signed under did:web); those issued after name the portable DID, verify with our
/// verifier and with Digital Bazaar's, and revoking either is seen.
async fn credentials_from_before_and_after_the_upgrade_verify_and_revoke(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let web_did = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let bob = app.wallet("bob");
    let out = sichat(&bob, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob_did = json(&out)["did"].as_str().expect("did").to_owned();

    let (before_id, before) = issue(&app, &alice, &bob_did, "vc+jwt").await;
    assert_eq!(issuer_of(&before), web_did);
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let webvh_did = json(&out)["did"].as_str().expect("did").to_owned();
    let (after_id, after) = issue(&app, &alice, &bob_did, "vc+jwt").await;
    assert_eq!(issuer_of(&after), webvh_did, "new credentials name the portable DID");
    let (_, ldp) = issue(&app, &alice, &bob_did, "ldp_vc").await;
    assert_eq!(issuer_of(&ldp), webvh_did);

    for c in [&before, &after, &ldp] {
        let (valid, report) = verdict(&app, c).await;
        assert!(valid, "{report}");
    }
    // A stranger's wallet (no node of its own) resolves the did:webvh log and verifies.
    let file = app.dir.path().join("after.jwt");
    std::fs::write(&file, &after).expect("write");
    let nobody = app.wallet("nobody");
    let out = sichat_env(&nobody, &["--json", "verify", file.to_str().expect("path")], LOCAL).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["valid"], true);
    if let Some(modules) = crate::di_interop::node_modules() {
        let doc: Value = serde_json::from_str(&ldp).expect("json");
        let resolver = Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true }).expect("fetcher")));
        resolver.resolve(&webvh_did).await.expect("resolves");
        let (_, _, raw) = text(&app, "/users/alice/did.jsonl").await;
        let state = webvh::verify_log(&webvh_did, &raw).await.expect("verifies").document;
        crate::di_interop::js_verify(&modules, app.dir.path(), &doc, json!({ webvh_did.clone(): state }))
            .expect("Digital Bazaar's verifier accepts a credential issued under did:webvh");
    }

    for id in [&before_id, &after_id] {
        let out = sichat(&alice, &["credential", "revoke", id]).await;
        assert!(out.status.success(), "revoke: {}", stderr(&out));
    }
    for c in [&before, &after] {
        let (valid, report) = verdict(&app, c).await;
        assert!(!valid && report.contains("revoked"), "{report}");
    }
}

/// The node's own did:webvh, controlled by the node key: made at first start, verified,
/// linked both ways with its did:web; when the node's public URL changes, a new entry moves
/// it to the new host (same SCID), naming the DID it had.
async fn the_node_has_a_did_webvh_that_follows_its_url(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let web = app.node.identity.did().to_string();
    let (status, ct, raw) = text(&app, "/.well-known/did.jsonl").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/jsonl"), "{ct}");
    let webvh_did = app.node.identity.webvh_did().expect("a did:webvh on localhost").to_owned();
    let log = webvh::verify_log(&webvh_did, &raw).await.expect("verifies");
    assert_eq!(log.document["alsoKnownAs"], json!([web]));
    assert_eq!(log.update_keys, [app.node.identity.public_key().to_multibase()]);
    let (_, doc) = app.get_json("/.well-known/did.json").await;
    assert_eq!(doc["alsoKnownAs"], json!([webvh_did]));

    // A second process on the same database, configured with a new URL (PostgreSQL: SQLite
    // has one writer): the DID moves with it.
    if backend != Backend::Postgres {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let moved = app
        .replica(|c| {
            c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
            c.public_url = Some(format!("http://moved.localhost:{port}").parse().expect("url"));
        })
        .await;
    let new_did = moved.node.identity.webvh_did().expect("moved").to_owned();
    assert!(new_did.ends_with(&format!("moved.localhost%3A{port}")), "{new_did}");
    let scid = |d: &str| d.split(':').nth(2).expect("scid").to_owned();
    assert_eq!(scid(&new_did), scid(&webvh_did), "same SCID, same history");
    let (_, _, raw) = text(&moved, "/.well-known/did.jsonl").await;
    let log = webvh::verify_log(&new_did, &raw).await.expect("the moved log verifies");
    assert_eq!(log.entries, 2);
    assert!(log.document["alsoKnownAs"].to_string().contains(&webvh_did), "names the DID it had");
    // The old DID, resolved against the same log, leads to the new document.
    let at_old = webvh::verify_log(&webvh_did, &raw).await.expect("verifies for the old DID too");
    assert_eq!(at_old.document["id"], new_did.as_str());
}

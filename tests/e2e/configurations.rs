//! The design's hardware configurations (seeds/001, "Model evaluation"), one test per row
//! as they are built: 0 servers (wallets alone issue, hold, ask for and verify
//! credentials), 0→1 (a did:key wallet joins a node, keeping its key and what it holds), and
//! 1→0 (a wallet whose node is gone keeps everything that needs no node; what it issued keeps
//! verifying from a static site, where it can still revoke).

use crate::holder::{did, give};
use crate::messaging::{delivered, send, texts};
use sichat_e2e::{json, sichat, stderr, storage_tests, unseal, Backend, TempDir, TestApp, Watch};
use std::path::{Path, PathBuf};

storage_tests!(
    a_wallet_whose_node_is_gone_keeps_what_needs_no_node,
    a_did_key_wallet_joins_a_node_keeping_what_it_holds,
    what_you_issued_outlives_your_node_on_a_static_site
);

/// `from`, a wallet with no node, issues `to` a FriendCredential as a file in `dir`.
async fn issued_alone(from: &Path, to: &str, dir: &Path) -> PathBuf {
    let out =
        sichat(from, &["--json", "credential", "issue", "--type", "FriendCredential", "--to", to, "--claim", "name=A"])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.join(format!("to-{}.jwt", sichat_core::ids::new_id()));
    std::fs::write(&file, json(&out)["credential"].as_str().expect("credential")).expect("write");
    file
}

/// 0→1: Alice's wallet worked alone (a did:key holding a credential issued to it and a
/// contact); she joins Dave's node. Her root key stays, her new DID names the did:key in
/// `alsoKnownAs` beside that same key as its root, the credential bound to the did:key is
/// still presented from her wallet and accepted, and messages reach her new DID. A join the
/// node refuses leaves the wallet as it was; a second join is refused.
async fn a_did_key_wallet_joins_a_node_keeping_what_it_holds(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dave = app.join("dave", &app.owner_invite).await;
    let (alice, bob) = (app.wallet("alice"), app.wallet("bob"));
    for w in [&alice, &bob] {
        assert!(sichat(w, &["init"]).await.status.success());
    }
    let (key_did, bob_did) = (did(&alice).await, did(&bob).await);
    let file = issued_alone(&bob, &key_did, app.dir.path()).await;
    let out = sichat(&alice, &["--json", "credential", "import", file.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let held = json(&out)["id"].as_str().map(str::to_owned);
    let out = sichat(&alice, &["contacts", "add", "bob", &bob_did]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let root_before = unseal(&alice).root.expect("root").public();

    let join = |invite: String| {
        let (alice, url) = (alice.clone(), app.url.clone());
        async move { sichat(&alice, &["--json", "join", "--server", &url, "--invite", &invite, "--name", "alice"]).await }
    };
    let out = join("NoSuchInviteCode".into()).await;
    assert!(!out.status.success(), "an unknown invite is refused");
    assert_eq!(did(&alice).await, key_did, "a refused join leaves the wallet as it was");

    let out = join(app.invite(&dave, 1).await).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let alice_did = did(&alice).await;
    assert_eq!(alice_did, app.node.identity.user_did("alice").expect("did").to_string());
    assert_eq!(json(&out)["also_known_as"], key_did.as_str());
    assert_eq!(unseal(&alice).root.expect("root").public(), root_before, "the root key stays");
    let (status, doc) = app.get_json("/users/alice/did.json").await;
    assert_eq!(status, 200);
    assert!(doc["alsoKnownAs"].as_array().is_some_and(|a| a.iter().any(|d| d == key_did.as_str())), "{doc}");
    let root =
        doc["verificationMethod"].as_array().into_iter().flatten().find(|m| m["id"] == format!("{alice_did}#root"));
    assert_eq!(
        root.and_then(|m| m["publicKeyMultibase"].as_str()),
        key_did.strip_prefix("did:key:"),
        "the did:key is the new DID's root key: {doc}"
    );
    let listed = json(&sichat(&alice, &["--json", "credential", "list"]).await);
    assert!(
        listed.as_array().is_some_and(|l| l.iter().any(|c| Some(c["id"].as_str()) == Some(held.as_deref()))),
        "{listed}"
    );
    let contacts = json(&sichat(&alice, &["--json", "contacts", "list"]).await);
    assert!(contacts.to_string().contains(&bob_did), "{contacts}");

    // The credential bound to the did:key is presented from the joined wallet.
    let out = sichat(&dave, &["--json", "verifier", "request", "--type", "FriendCredential"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (uri, id) =
        (json(&out)["request_uri"].as_str().map(str::to_owned), json(&out)["id"].as_str().map(str::to_owned));
    let out = sichat(&alice, &["present", uri.as_deref().expect("uri"), "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&dave, &["--json", "verifier", "result", id.as_deref().expect("id"), "--wait", "10"]).await;
    assert_eq!(json(&out)["status"], "verified", "{}", json(&out));

    let sent = send(&dave, &alice_did, "welcome to the node", &[]).await;
    delivered(&dave, &sent).await;
    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert_eq!(texts(&json(&out)), ["welcome to the node"]);

    let out = join(app.invite(&dave, 1).await).await;
    assert!(!out.status.success() && stderr(&out).contains("already has an account"), "{}", stderr(&out));
    // Someone else cannot claim the did:key: the node checks it is the registering root key
    // (see `bad_input::registration_rejects_bad_input_without_side_effects`).
}

/// 0 servers: two did:key wallets and no node anywhere. Alice issues Bob a credential in
/// both formats as files; they cannot be revoked, so their validity is bounded. Bob imports
/// them (and refuses what is altered or about someone else), `sichat verify` accepts them,
/// and Alice's wallet, as a short-lived OpenID4VP verifier on a loopback port, asks Bob for
/// one and verifies his presentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallets_with_no_server_issue_hold_and_verify() {
    let dir = TempDir::new("zero-servers");
    let (alice, bob, carol) = (dir.path().join("alice"), dir.path().join("bob"), dir.path().join("carol"));
    for w in [&alice, &bob, &carol] {
        let out = sichat(w, &["init"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (alice_did, bob_did) = (did(&alice).await, did(&bob).await);
    let issue = |format: &'static str, extra: &'static [&'static str]| {
        let (alice, bob_did) = (alice.clone(), bob_did.clone());
        async move {
            let mut args = vec!["--json", "credential", "issue", "--type", "FriendCredential", "--to", &bob_did];
            args.extend(["--claim", "name=Bob", "--format", format]);
            args.extend_from_slice(extra);
            sichat(&alice, &args).await
        }
    };
    // Nothing can revoke them: no suspension, no validity past a year.
    for extra in [&["--suspendable"][..], &["--valid-days", "400"][..]] {
        let out = issue("vc+jwt", extra).await;
        assert!(!out.status.success(), "{extra:?} must be refused");
        assert!(stderr(&out).contains("cannot be"), "{}", stderr(&out));
    }
    let mut files = Vec::new();
    for format in ["vc+jwt", "ldp_vc"] {
        let out = issue(format, &[]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let issued = json(&out);
        assert_eq!(issued["revocable"], false);
        let days = (issued["valid_until"].as_i64().expect("until") - sichat_core::ids::now_ms()) / 86_400_000;
        assert!((29..=30).contains(&days), "30 days by default, got {days}");
        let file = dir.path().join(format!("friend-{}.txt", issued["format"].as_str().expect("format")));
        std::fs::write(&file, issued["credential"].as_str().expect("credential")).expect("write");
        files.push(file);
    }
    let out = sichat(&alice, &["credential", "revoke", "anything"]).await;
    assert!(!out.status.success() && stderr(&out).contains("cannot be revoked"), "{}", stderr(&out));
    let listed = json(&sichat(&alice, &["--json", "credential", "issued"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // What is altered, or about someone else, is not taken.
    let jwt = std::fs::read_to_string(&files[0]).expect("read");
    let altered = dir.path().join("altered.txt");
    std::fs::write(&altered, jwt.replacen("eyJ", "eyK", 2)).expect("write");
    let out = sichat(&bob, &["credential", "import", altered.to_str().expect("path")]).await;
    assert!(!out.status.success(), "an altered credential must be refused");
    let di = std::fs::read_to_string(&files[1]).expect("read");
    std::fs::write(&altered, di.replace("\"Bob\"", "\"Mallory\"")).expect("write");
    let out = sichat(&bob, &["credential", "import", altered.to_str().expect("path")]).await;
    assert!(!out.status.success() && stderr(&out).contains("does not verify"), "{}", stderr(&out));
    let out = sichat(&carol, &["credential", "import", files[0].to_str().expect("path")]).await;
    assert!(!out.status.success() && stderr(&out).contains("not this wallet"), "{}", stderr(&out));
    assert_eq!(json(&sichat(&carol, &["--json", "credential", "list"]).await), serde_json::json!([]));

    for file in &files {
        let out = sichat(&bob, &["--json", "credential", "import", file.to_str().expect("path")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(json(&out)["issuer"], alice_did.as_str());
        let out = sichat(&bob, &["--json", "verify", file.to_str().expect("path")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(json(&out)["valid"], true);
    }
    let held = json(&sichat(&bob, &["--json", "credential", "list"]).await);
    assert_eq!(held.as_array().map(Vec::len), Some(2), "{held}");

    // Alice asks for a FriendCredential she issued; her wallet is the verifier.
    let mut asking = Watch::run(
        &alice,
        &["verifier", "request", "--type", "FriendCredential", "--issuer", &alice_did, "--wait", "120"],
    );
    let uri = asking.expect("stderr", "openid4vp://").await.trim().to_owned();
    let out = sichat(&bob, &["--allow-local-network", "present", &uri, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    asking.expect("stdout", "VALID: FriendCredential").await;
    assert!(asking.exited().await.success());
    // The request is closed: the same answer again finds no one.
    let out = sichat(&bob, &["--allow-local-network", "present", &uri, "--yes"]).await;
    assert!(!out.status.success());
}

/// Alice holds a credential and a message; then her node goes away. Listing and reading
/// her messages and listing her credentials still work, each saying the node is out of
/// reach; `--offline` does not ask it at all.
async fn a_wallet_whose_node_is_gone_keeps_what_needs_no_node(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let credential = give(&bob, &alice, "FriendCredential", &[]).await;
    let alice_did = crate::holder::did(&alice).await;
    let id = send(&bob, &alice_did, "kept in the wallet", &[]).await;
    delivered(&bob, &id).await;
    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let message = json(&out)["messages"][0]["id"].as_str().expect("id").to_owned();
    // The node goes away (its directory, and the wallets in it, stay).
    let _gone = app.stop_keeping().await;

    let out = sichat(&alice, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "inbox with the node gone: {}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach the server"), "{}", stderr(&out));
    assert_eq!(texts(&json(&out)), ["kept in the wallet"]);
    let out = sichat(&alice, &["--json", "message", "inbox", "--offline"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("cannot reach"), "--offline does not ask: {}", stderr(&out));
    assert_eq!(texts(&json(&out)), ["kept in the wallet"]);
    let out = sichat(&alice, &["--json", "message", "read", &message]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["text"], "kept in the wallet");
    let out = sichat(&alice, &["--json", "credential", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json(&out);
    assert!(listed.as_array().is_some_and(|l| l.iter().any(|c| c["id"] == credential.as_str())), "{listed}");
}

/// A static web host (Python's `http.server`) serving `dir` at `addr`, until dropped.
struct StaticHost(#[allow(dead_code)] tokio::process::Child);

impl StaticHost {
    async fn serve(dir: &Path, addr: std::net::SocketAddr) -> Self {
        let child = tokio::process::Command::new("python3")
            .args(["-m", "http.server", &addr.port().to_string(), "--bind", &addr.ip().to_string(), "--directory"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m http.server");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Self(child);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the static host did not listen on {addr}");
    }
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 1→0: Alice issued Bob two credentials and has a message waiting on her node; she exports
/// (the message comes into her wallet) and her node goes away. A plain
/// static web host serves the site the export wrote, at the node's address: Bob's
/// credentials verify with their status read from it; Alice revokes one by re-signing its
/// status list with no node, and only that one stops verifying. A site altered behind the
/// wallet's back is found by `site check`, and `site revoke` will not sign over it.
async fn what_you_issued_outlives_your_node_on_a_static_site(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let kept = give(&alice, &bob, "FriendCredential", &[]).await;
    let revoked = give(&alice, &bob, "FriendCredential", &[]).await;
    let files: Vec<PathBuf> = [&kept, &revoked].iter().map(|id| app.dir.path().join(format!("{id}.jwt"))).collect();
    for (id, file) in [&kept, &revoked].iter().zip(&files) {
        let out = sichat(&bob, &["credential", "export", id, "--out", file.to_str().expect("path")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let alice_did = did(&alice).await;
    let waiting = send(&bob, &alice_did, "waiting on the node at the export", &[]).await;
    delivered(&bob, &waiting).await;
    let out = sichat(&alice, &["--json", "export"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = json(&out);
    assert_eq!(exported["issued"], 2, "{exported}");
    assert_eq!(exported["holds"]["messages_fetched"], 1, "{exported}");
    let site = PathBuf::from(exported["site"].as_str().expect("site"));
    assert!(site.join("users/alice/did.json").is_file());
    let port = app.url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let _gone = app.stop_keeping().await;
    let _host = StaticHost::serve(&site, addr).await;

    let verify = |file: PathBuf| {
        let bob = bob.clone();
        async move { sichat(&bob, &["--json", "verify", file.to_str().expect("path")]).await }
    };
    for file in &files {
        let out = verify(file.clone()).await;
        assert_eq!(json(&out)["valid"], true, "{}", stdout_of(&out));
    }
    let out = sichat(&alice, &["site", "check"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&alice, &["--json", "message", "inbox", "--offline"]).await;
    assert_eq!(texts(&json(&out)), ["waiting on the node at the export"], "what waited is in the wallet");
    let listed = json(&sichat(&alice, &["--json", "site", "issued"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let out = sichat(&alice, &["site", "revoke", &revoked]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = verify(files[1].clone()).await;
    assert_eq!(out.status.code(), Some(2), "the revoked one: {}", stdout_of(&out));
    assert!(stdout_of(&out).contains("revoked"), "{}", stdout_of(&out));
    assert_eq!(json(&verify(files[0].clone()).await)["valid"], true, "the other one still verifies");
    let out = sichat(&alice, &["site", "check"]).await;
    assert!(out.status.success(), "a revocation by the wallet is no alteration: {}", stderr(&out));

    // Altered behind the wallet's back: found, and not signed over.
    let list =
        std::fs::read_dir(site.join("users/alice/status")).expect("lists").flatten().next().expect("a list").path();
    let before = std::fs::read_to_string(&list).expect("read");
    std::fs::write(&list, format!("{before}\n")).expect("write");
    let out = sichat(&alice, &["--json", "site", "check"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout_of(&out).contains("altered"), "{}", stdout_of(&out));
    let out = sichat(&alice, &["site", "revoke", &kept]).await;
    assert!(!out.status.success() && stderr(&out).contains("altered"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&list).expect("read"), format!("{before}\n"), "nothing signed over it");
}

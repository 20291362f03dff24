//! The wallet on its own: no server needed. Runs the real `sichat` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSPHRASE: &str = "test passphrase, not a secret";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!("sichat-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sichat_env(wallet: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sichat"));
    cmd.arg("--wallet").arg(wallet).args(args).env_remove("SICHAT_PASSPHRASE").stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sichat")
}

fn sichat(wallet: &Path, args: &[&str]) -> Output {
    sichat_env(wallet, args, &[("SICHAT_PASSPHRASE", PASSPHRASE)])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn init_without_a_server_makes_a_did_key_identity() {
    let dir = TempDir::new("wallet");
    let w = dir.path().join("w");
    let out = sichat(&w, &["--json", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = json(&out);
    let did = profile["did"].as_str().expect("did").to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    assert!(profile["server"].is_null());

    // whoami needs no passphrase; did show derives the did:key document offline.
    let who = json(&sichat_env(&w, &["--json", "whoami"], &[]));
    assert_eq!(who["did"], did.as_str());
    let doc = json(&sichat(&w, &["did", "show"]));
    assert_eq!(doc["id"], did.as_str());
    assert_eq!(doc["keyAgreement"].as_array().map(Vec::len), Some(1));

    // The wallet file is private and holds no key in the clear.
    let file = w.join("wallet.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("argon2id"));
    assert!(!text.contains("\"d\""), "no JWK private parts");

    // A second init refuses to overwrite; server commands say there is no server.
    let again = sichat(&w, &["init"]);
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    let no_server = sichat(&w, &["invite", "list"]);
    assert!(stderr(&no_server).contains("no server"), "{}", stderr(&no_server));
}

#[test]
fn passphrase_mistakes_are_explained() {
    let dir = TempDir::new("wallet");
    let w = dir.path().join("w");
    assert!(sichat(&w, &["init"]).status.success());
    let wrong = sichat_env(&w, &["device", "list"], &[("SICHAT_PASSPHRASE", "wrong")]);
    assert!(stderr(&wrong).contains("wrong passphrase"), "{}", stderr(&wrong));
    let none = sichat_env(&w, &["did", "show"], &[]);
    assert!(none.status.success(), "did show needs no passphrase");
    let none = sichat_env(&w, &["key", "rotate"], &[]);
    assert!(stderr(&none).contains("SICHAT_PASSPHRASE"), "{}", stderr(&none));
    // --passphrase-file works, and --json errors are JSON.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "wrong\n").expect("write");
    let out = sichat_env(&w, &["--json", "--passphrase-file", pass.to_str().expect("p"), "device", "list"], &[]);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON error");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("wrong passphrase")));
    let missing = sichat(&dir.path().join("nowhere"), &["whoami"]);
    assert!(stderr(&missing).contains("sichat init"), "{}", stderr(&missing));
}

#[test]
fn every_command_has_help() {
    let cmds: &[&[&str]] = &[
        &[],
        &["init"],
        &["whoami"],
        &["did"],
        &["did", "show"],
        &["device"],
        &["device", "list"],
        &["device", "add"],
        &["device", "revoke"],
        &["invite"],
        &["invite", "create"],
        &["invite", "list"],
        &["invite", "revoke"],
        &["user", "remove"],
        &["key", "rotate"],
        &["credential"],
        &["credential", "type", "list"],
        &["credential", "type", "add"],
        &["credential", "issue"],
        &["credential", "issued"],
        &["credential", "revoke"],
        &["credential", "suspend"],
        &["credential", "resume"],
        &["login"],
        &["login", "approve"],
        &["passkey"],
        &["passkey", "add"],
        &["passkey", "list"],
        &["passkey", "remove"],
        &["message"],
        &["message", "send"],
        &["message", "inbox"],
        &["message", "read"],
        &["message", "watch"],
        &["message", "status"],
        &["contacts"],
        &["contacts", "add"],
        &["contacts", "list"],
        &["contacts", "remove"],
        &["policy"],
        &["policy", "show"],
        &["policy", "set"],
    ];
    for cmd in cmds {
        let out = Command::new(env!("CARGO_BIN_EXE_sichat")).args(*cmd).arg("--help").output().expect("run");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "sichat {cmd:?} --help"
        );
    }
}

#[test]
fn messaging_without_a_node_says_how_to_get_one_and_contacts_stay_local() {
    let dir = TempDir::new("wallet");
    let w = dir.path().join("w");
    assert!(sichat(&w, &["init"]).status.success());
    for args in [
        &["message", "send", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "hi"][..],
        &["message", "inbox"],
        &["message", "watch"],
        &["message", "status", "0190"],
        &["policy", "show"],
        &["policy", "set", "--requests", "off"],
    ] {
        let out = sichat(&w, args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("messaging needs a node") && err.contains("sichat --wallet DIR init --server"),
            "{args:?}: {err}"
        );
    }

    // Contacts live in the wallet, so a did:key wallet keeps them too (did:key resolves offline).
    let bob = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let out = sichat(&w, &["contacts", "add", "bob", bob]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = sichat(&w, &["contacts", "add", "Bob", bob]);
    assert!(stderr(&again).contains("already a contact"), "{}", stderr(&again));
    for (name, who, says) in [
        ("bo b", bob, "no spaces"),
        ("carol", "did:key:zNotAKey", "cannot resolve"),
        ("carol", "carol@", "not a name@host"),
        ("carol", "not-a-did", "give a DID"),
    ] {
        let out = sichat(&w, &["contacts", "add", name, who]);
        assert!(stderr(&out).contains(says), "{name} {who}: {}", stderr(&out));
    }
    let list = json(&sichat(&w, &["--json", "contacts", "list"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!((list[0]["name"].as_str(), list[0]["did"].as_str()), (Some("bob"), Some(bob)));
    // The wallet file shows nothing of them: contacts are sealed.
    let text = std::fs::read_to_string(w.join("wallet.json")).expect("read");
    assert!(!text.contains("z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"));
    let out = sichat(&w, &["contacts", "remove", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&sichat(&w, &["--json", "contacts", "list"])), serde_json::json!([]));
    let out = sichat(&w, &["contacts", "remove", "bob"]);
    assert!(stderr(&out).contains("no contact named bob"), "{}", stderr(&out));
}

/// The inputs that once overflowed the stack or panicked inside `ssi`/`json-ld` (exit 101
/// or an abort): each is a refusal with exit code 2, and no panic message.
#[test]
fn hostile_credentials_are_refused_with_exit_code_2() {
    let dir = TempDir::new("hostile");
    let issuer = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let nested = (0..114).fold(serde_json::json!("deep"), |inner, _| serde_json::json!({ "x:n": inner }));
    let cases = [
        ("nested 114 levels", serde_json::json!({"x:n": nested}), "2026-01-01T00:00:00Z", "VerifiableCredential"),
        ("1e308", serde_json::json!({"x:n": 1e308}), "2026-01-01T00:00:00Z", "VerifiableCredential"),
        ("three-digit year", serde_json::json!({}), "999-01-01T00:00:00Z", "VerifiableCredential"),
        ("%ed in a type IRI", serde_json::json!({}), "2026-01-01T00:00:00Z", "https://example.org/%ed"),
    ];
    for (what, claims, created, ty) in cases {
        let mut subject = serde_json::json!({"id": issuer});
        subject.as_object_mut().expect("object").extend(claims.as_object().cloned().unwrap_or_default());
        let vc = serde_json::json!({
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "type": ["VerifiableCredential", ty],
            "issuer": issuer,
            "credentialSubject": subject,
            "proof": {
                "type": "DataIntegrityProof",
                "cryptosuite": "eddsa-rdfc-2022",
                "verificationMethod": format!("{issuer}#{}", issuer.trim_start_matches("did:key:")),
                "proofPurpose": "assertionMethod",
                "created": created,
                "proofValue": "z3FXQjecWufY46yg5abdVZsXqLhxhueuSoZgNSARiKBk9czhSePTFehP8c3PGfb6a22gkfUKKsQG5iaPuhbB2DHd",
            },
        });
        let file = dir.path().join("vc.json");
        std::fs::write(&file, vc.to_string()).expect("write");
        let out = sichat(&dir.path().join("no-wallet"), &["verify", file.to_str().expect("utf-8")]);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert_eq!(out.status.code(), Some(2), "{what}: {all}");
        assert!(!all.contains("panicked") && !all.contains("overflow"), "{what}: {all}");
    }
}

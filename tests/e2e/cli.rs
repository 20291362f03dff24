//! The wallet on its own: no server needed.

use sichat_e2e::{binary, json, sichat, sichat_env, stderr, stdout, TempDir};

#[tokio::test]
async fn init_without_a_server_makes_a_did_key_identity() {
    let dir = TempDir::new("wallet");
    let w = dir.path().join("w");
    let out = sichat(&w, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = json(&out);
    let did = profile["did"].as_str().expect("did").to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    assert!(profile["server"].is_null());

    // whoami needs no passphrase; did show derives the did:key document offline.
    let who = json(&sichat_env(&w, &["--json", "whoami"], &[]).await);
    assert_eq!(who["did"], did.as_str());
    let doc = json(&sichat(&w, &["did", "show"]).await);
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
    let again = sichat(&w, &["init"]).await;
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    let no_server = sichat(&w, &["invite", "list"]).await;
    assert!(stderr(&no_server).contains("no server"), "{}", stderr(&no_server));
}

#[tokio::test]
async fn passphrase_mistakes_are_explained() {
    let dir = TempDir::new("wallet");
    let w = dir.path().join("w");
    assert!(sichat(&w, &["init"]).await.status.success());
    let wrong = sichat_env(&w, &["device", "list"], &[("SICHAT_PASSPHRASE", "wrong")]).await;
    assert!(stderr(&wrong).contains("wrong passphrase"), "{}", stderr(&wrong));
    let none = sichat_env(&w, &["did", "show"], &[]).await;
    assert!(none.status.success(), "did show needs no passphrase");
    let none = sichat_env(&w, &["key", "rotate"], &[]).await;
    assert!(stderr(&none).contains("SICHAT_PASSPHRASE"), "{}", stderr(&none));
    // --passphrase-file works, and --json errors are JSON.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "wrong\n").expect("write");
    let out = sichat_env(&w, &["--json", "--passphrase-file", pass.to_str().expect("p"), "device", "list"], &[]).await;
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON error");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("wrong passphrase")));
    let missing = sichat(&dir.path().join("nowhere"), &["whoami"]).await;
    assert!(stderr(&missing).contains("sichat init"), "{}", stderr(&missing));
}

#[tokio::test]
async fn every_command_has_help() {
    let sichat_cmds: &[&[&str]] = &[
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
    ];
    let sichatd_cmds: &[&[&str]] = &[
        &[],
        &["serve"],
        &["admin"],
        &["admin", "invite"],
        &["admin", "users"],
        &["admin", "remove"],
        &["admin", "backup"],
    ];
    for (bin, cmds) in [("sichat", sichat_cmds), ("sichatd", sichatd_cmds)] {
        for cmd in cmds {
            let out = std::process::Command::new(binary(bin)).args(*cmd).arg("--help").output().expect("run");
            assert!(out.status.success() && stdout(&out).contains("Usage"), "{bin} {cmd:?} --help");
        }
    }
}

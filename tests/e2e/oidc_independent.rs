//! The provider driven by a client that is not ours and is strict about the specs: panva's
//! `oauth4webapi`, run by Node.js through `tests/interop/oauth4webapi-client.mjs`, using
//! only the library's own API. It accepts both metadata documents (RFC 8414 and OpenID
//! Connect Discovery), gets a DPoP-bound client_credentials token, runs the device grant
//! (RFC 8628) with DPoP, polling at the given interval: once told `authorization_pending`,
//! Alice approves the code with the real `sichat login approve`; the client validates the
//! ID token (claims and signature) and calls UserInfo with the bound token;
//! then pushes an authorization request (PAR) with a DPoP proof, and, after Alice signs in,
//! redeems the code with PKCE and a nonce, refreshes, and calls UserInfo again.
//!
//! The packages are `$SICHAT_DI_NODE_MODULES`, else `~/.cache/sichat-node/node_modules`
//! (`.ci/run` installs them from `tests/interop/package-lock.json`). Under `CI=true` a
//! missing installation fails the test; elsewhere the test says so loudly and passes.

use crate::oidc::{alice_with_password, REDIRECT};
use crate::oidc_clients::{register_raw, sign_in};
use futures_util::FutureExt;
use serde_json::{json, Value};
use sichat_e2e::{sichat, stderr, storage_tests, Backend, TestApp};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};
use url::Url;

storage_tests!(oauth4webapi_device_dpop_and_discovery);

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CLIENT_NAME: &str = "Independent Client";
/// Long enough for the device grant's first poll (5 s) and a slowed-down one, short enough
/// that a hang fails here rather than at the storage tests' limit.
const TIMEOUT: Duration = Duration::from_secs(60);

fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("SICHAT_DI_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/sichat-node/node_modules")
    });
    let usable = dir.join("oauth4webapi/package.json").is_file()
        && std::process::Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if usable {
        return Some(dir);
    }
    let why = format!(
        "no Node.js, or no oauth4webapi in {}; run .ci/run, or `npm ci` in tests/interop and set \
         SICHAT_DI_NODE_MODULES to its node_modules",
        dir.display()
    );
    if sichat_e2e::in_ci() {
        panic!("the oauth4webapi interop test cannot run under CI: {why}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPING the oauth4webapi interop test: {why} !!!!!!!!!!\n");
    None
}

/// The script's next line on stdout, which must be its `step`; lines saying the device's
/// polls are pending are passed over unless that is the step asked for.
async fn expect_step(lines: &mut Lines<BufReader<ChildStdout>>, step: &str) -> Value {
    loop {
        let line = lines.next_line().await.expect("read the script's output");
        let Some(line) = line else { panic!("the script ended before step {step}") };
        eprintln!("oauth4webapi-client.mjs: {line}");
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if value["step"] == "pending" && step != "pending" {
            continue;
        }
        assert_eq!(value["step"], step, "{value}");
        return value;
    }
}

async fn oauth4webapi_device_dpop_and_discovery(backend: Backend) {
    let Some(modules) = node_modules() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let body = json!({
        "client_name": CLIENT_NAME,
        "grant_types": [DEVICE_GRANT, "client_credentials", "refresh_token", "authorization_code"],
        "redirect_uris": [REDIRECT],
        "scope": "inventory",
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    let id = reg["client_id"].as_str().expect("client_id");
    let secret = reg["client_secret"].as_str().expect("client_secret");

    let dir = app.dir.path().join("oauth4webapi");
    std::fs::create_dir_all(&dir).expect("dir");
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).expect("link node_modules");
    let script = dir.join("oauth4webapi-client.mjs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/interop/oauth4webapi-client.mjs"), &script)
        .expect("copy the script");
    let mut child = Command::new("node")
        .arg(&script)
        .args([app.url.as_str(), id, secret, REDIRECT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut err = child.stderr.take().expect("stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text).await;
        text
    });

    let run = async {
        let found = expect_step(&mut lines, "discovery").await;
        assert_eq!(found["oauth2"].as_str(), Some(app.url.as_str()), "{found}");
        assert_eq!(found["oidc"].as_str(), Some(app.url.as_str()), "{found}");
        let own = expect_step(&mut lines, "client_credentials").await;
        assert_eq!(own["token_type"], "dpop", "{own}");

        // The device shows its code; Alice approves it from her wallet, as a user would.
        let device = expect_step(&mut lines, "device").await;
        let code = device["user_code"].as_str().expect("user_code");
        let complete = device["verification_uri_complete"].as_str().expect("verification_uri_complete");
        assert!(complete.ends_with(code), "{device}");
        // The library first hears the provider say the code waits for its user.
        let pending = expect_step(&mut lines, "pending").await;
        assert_eq!((pending["error"].as_str(), pending["status"].as_u64()), (Some("authorization_pending"), Some(400)));
        let out = sichat(&alice, &["--json", "login", "approve", complete, "--yes"]).await;
        assert!(out.status.success(), "sichat login approve: {}", stderr(&out));
        let tokens = expect_step(&mut lines, "device_tokens").await;

        // A pushed request with a DPoP proof; Alice signs in at its authorization URL, and
        // the script gets the redirect back.
        let par = expect_step(&mut lines, "par").await;
        assert!(
            par["request_uri"].as_str().is_some_and(|u| u.starts_with("urn:ietf:params:oauth:request_uri:")),
            "{par}"
        );
        let url = Url::parse(par["authorization_url"].as_str().expect("authorization_url")).expect("url");
        let (back, _) = sign_in(&app, &url, "alice", CLIENT_NAME).await;
        stdin.write_all(format!("{back}\n").as_bytes()).await.expect("hand back the redirect");
        stdin.flush().await.expect("flush");
        let code = expect_step(&mut lines, "code").await;
        expect_step(&mut lines, "done").await;
        (tokens, code)
    };
    // A failed assertion above is shown with the script's stderr, which says why.
    let outcome = tokio::time::timeout(TIMEOUT, AssertUnwindSafe(run).catch_unwind()).await;
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = child.start_kill();
    let errors = tokio::time::timeout(Duration::from_secs(5), errors).await.ok().and_then(Result::ok);
    let errors = errors.unwrap_or_default();
    let (tokens, code) = match outcome {
        Err(_) => panic!("oauth4webapi: still running after {} s; its stderr: {errors}", TIMEOUT.as_secs()),
        Ok(Err(panic)) => {
            eprintln!("oauth4webapi-client.mjs stderr:\n{errors}");
            std::panic::resume_unwind(panic)
        }
        Ok(Ok(found)) => found,
    };
    match status {
        Ok(Ok(s)) => assert!(s.success(), "oauth4webapi-client.mjs: {s}; {errors}"),
        other => panic!("oauth4webapi-client.mjs did not end: {other:?}; {errors}"),
    }

    let sub = tokens["sub"].as_str().expect("sub");
    assert!(!sub.is_empty(), "{tokens}");
    assert_eq!(tokens["token_type"], "dpop", "{tokens}");
    assert_eq!(tokens["userinfo_sub"].as_str(), Some(sub), "{tokens}");
    assert_eq!(tokens["preferred_username"], "alice", "{tokens}");
    assert_eq!(tokens["amr"], json!(["swk", "mca"]), "approved from the wallet: {tokens}");
    assert_eq!(tokens["polls"]["slow_down"], 0, "the library keeps to the interval: {tokens}");

    assert_eq!(code["sub"].as_str(), Some(sub), "the same user by both grants: {code}");
    assert_eq!(code["token_type"], "dpop", "{code}");
    assert_eq!(code["preferred_username"], "alice", "{code}");
    assert_eq!(code["refresh_token"], true, "{code}");
    assert_eq!(code["refreshed_token_type"], "dpop", "{code}");
    assert_eq!(code["refreshed_sub"].as_str(), Some(sub), "{code}");
    app.stop().await;
}

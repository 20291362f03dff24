//! Issuing credentials from a user's node, and revoking them through status lists.

use serde_json::{json, Value};
use sichat_core::ids::b64url_decode;
use sichat_core::jws;
use sichat_core::keys::Ed25519Public;
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};
use sichat_issuer::status::{Bitstring, LIST_SIZE};
use sqlx::Row;
use std::path::Path;

storage_tests!(
    issued_vc_jwt_verifies_and_revocation_shows_in_the_list,
    issuing_rejects_bad_input_and_keeps_state,
    membership_follows_the_account
);

fn decode_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).expect("part");
    serde_json::from_slice(&b64url_decode(part).expect("base64url")).expect("JSON")
}

/// The key a DID document lists for `kid` under `assertionMethod`.
async fn assertion_key(app: &TestApp, name: &str, kid: &str) -> Ed25519Public {
    let (_, doc) = app.get_json(&format!("/users/{name}/did.json")).await;
    assert!(
        doc["assertionMethod"].as_array().expect("list").iter().any(|m| m == kid),
        "{kid} not in assertionMethod: {doc}"
    );
    let vm =
        doc["verificationMethod"].as_array().expect("vms").iter().find(|m| m["id"] == kid).expect("method").clone();
    Ed25519Public::from_multibase(vm["publicKeyMultibase"].as_str().expect("mb")).expect("key")
}

/// Fetch a status list: (status, etag, bits if 200).
async fn fetch_list(
    app: &TestApp,
    url: &str,
    etag: Option<&str>,
    key: &Ed25519Public,
) -> (u16, String, Option<Bitstring>) {
    let mut req = app.http.get(url);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let r = req.send().await.expect("GET list");
    let status = r.status().as_u16();
    let etag = r.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-cache"));
    if status != 200 {
        return (status, etag, None);
    }
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/vc+jwt"));
    let jwt = r.text().await.expect("body");
    let vc: Value = jws::verify(&jwt, key, "vc+jwt").expect("the list is signed by the issuing key");
    assert_eq!(vc["type"], json!(["VerifiableCredential", "BitstringStatusListCredential"]));
    assert_eq!(vc["id"], url);
    let bits = Bitstring::decode(vc["credentialSubject"]["encodedList"].as_str().expect("list"), LIST_SIZE / 8)
        .expect("decodes");
    assert_eq!(bits.len(), LIST_SIZE);
    (status, etag, Some(bits))
}

async fn holder_did(wallet: &Path) -> String {
    let out = sichat(wallet, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)["did"].as_str().expect("did").to_owned()
}

async fn issued_vc_jwt_verifies_and_revocation_shows_in_the_list(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = holder_did(&app.wallet("bob")).await;
    let alice_did = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();

    let out = sichat(
        &alice,
        &[
            "--json",
            "credential",
            "issue",
            "--type",
            "FriendCredential",
            "--to",
            &bob,
            "--claim",
            "name=Bob",
            "--claim",
            "since=2024-05-01",
            "--suspendable",
            "--valid-days",
            "30",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let issued = json(&out);
    let jwt = issued["credential"].as_str().expect("jwt").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();

    // VC-JOSE-COSE: typ vc+jwt, the credential is the payload, signed by the issuing key
    // that the issuer's DID document lists under assertionMethod.
    let header = decode_part(&jwt, 0);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("EdDSA"), Some("vc+jwt")));
    let kid = header["kid"].as_str().expect("kid").to_owned();
    assert!(kid.starts_with(&format!("{alice_did}#issuing-")), "{kid}");
    let key = assertion_key(&app, "alice", &kid).await;
    let vc: Value = jws::verify(&jwt, &key, "vc+jwt").expect("verifies with the DID document's key");
    assert_eq!(vc["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(vc["type"], json!(["VerifiableCredential", "FriendCredential"]));
    assert_eq!(vc["issuer"], alice_did.as_str());
    assert_eq!(vc["id"], format!("urn:uuid:{id}"));
    assert_eq!(vc["credentialSubject"], json!({"id": bob, "name": "Bob", "since": "2024-05-01"}));
    assert!(vc["validFrom"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(vc["validUntil"].as_str().is_some());

    // credentialSchema resolves to a JSON Schema that the credential satisfies.
    let schema_url = vc["credentialSchema"]["id"].as_str().expect("schema id");
    assert_eq!(vc["credentialSchema"]["type"], "JsonSchema");
    let schema: Value = app.http.get(schema_url).send().await.expect("schema").json().await.expect("json");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    assert!(validator.is_valid(&vc), "the credential satisfies its own schema");
    let mut forged = vc.clone();
    forged["credentialSubject"]["name"] = json!(42);
    assert!(!validator.is_valid(&forged));

    // Two status entries: revocation and suspension, on lists the node serves signed.
    let statuses = vc["credentialStatus"].as_array().expect("statuses").clone();
    assert_eq!(statuses.len(), 2);
    let entry = |purpose: &str| statuses.iter().find(|s| s["statusPurpose"] == purpose).expect("entry").clone();
    let (rev, sus) = (entry("revocation"), entry("suspension"));
    assert_eq!(rev["type"], "BitstringStatusListEntry");
    let rev_url = rev["statusListCredential"].as_str().expect("url").to_owned();
    let rev_index: usize = rev["statusListIndex"].as_str().expect("index").parse().expect("number");
    let sus_url = sus["statusListCredential"].as_str().expect("url").to_owned();
    let sus_index: usize = sus["statusListIndex"].as_str().expect("index").parse().expect("number");
    assert_ne!(rev_url, sus_url);

    let (status, etag, bits) = fetch_list(&app, &rev_url, None, &key).await;
    assert_eq!(status, 200);
    assert_eq!(bits.expect("bits").get(rev_index), Some(false));
    let (status, _, _) = fetch_list(&app, &rev_url, Some(&etag), &key).await;
    assert_eq!(status, 304, "unchanged list revalidates cheaply");

    // Suspend and resume flip the suspension bit; the revocation list does not move.
    let out = sichat(&alice, &["--json", "credential", "suspend", &id]).await;
    assert_eq!(json(&out)["status"], "suspended");
    let (_, sus_etag, bits) = fetch_list(&app, &sus_url, None, &key).await;
    assert_eq!(bits.expect("bits").get(sus_index), Some(true));
    assert_eq!(fetch_list(&app, &rev_url, Some(&etag), &key).await.0, 304);
    let out = sichat(&alice, &["--json", "credential", "resume", &id]).await;
    assert_eq!(json(&out)["status"], "active");
    let (status, _, bits) = fetch_list(&app, &sus_url, Some(&sus_etag), &key).await;
    assert_eq!(status, 200);
    assert_eq!(bits.expect("bits").get(sus_index), Some(false));

    // Revocation shows at once, and is final.
    let out = sichat(&alice, &["credential", "revoke", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, new_etag, bits) = fetch_list(&app, &rev_url, Some(&etag), &key).await;
    assert_eq!(status, 200, "the old ETag no longer matches");
    assert_ne!(new_etag, etag);
    let bits = bits.expect("bits");
    assert_eq!(bits.get(rev_index), Some(true));
    assert_eq!((0..LIST_SIZE).filter(|i| bits.get(*i) == Some(true)).count(), 1, "only this credential");
    let again = sichat(&alice, &["credential", "resume", &id]).await;
    assert!(stderr(&again).contains("final"), "{}", stderr(&again));

    // The issuance log: what, to whom, when, status. Never a key.
    let log = json(&sichat(&alice, &["--json", "credential", "issued"]).await);
    assert_eq!(log[0]["id"], id.as_str());
    assert_eq!((log[0]["status"].as_str(), log[0]["subject"].as_str()), (Some("revoked"), Some(bob.as_str())));
    assert_eq!(log[0]["claims"]["name"], "Bob");
    let columns = sqlx::query("SELECT * FROM issuer_credentials").fetch_all(app.node.db.pool()).await.expect("rows");
    assert!(columns[0].columns().iter().all(|c| !sqlx::Column::name(c).contains("key")));
    app.stop().await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(app.node.db.pool()).await.expect("count").try_get("n").expect("n")
}

async fn issuing_rejects_bad_input_and_keeps_state(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = holder_did(&app.wallet("bob")).await;
    let issue = |args: Vec<String>| {
        let alice = alice.clone();
        async move {
            let mut full = vec!["--json".to_string(), "credential".into(), "issue".into()];
            full.extend(args);
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            sichat(&alice, &refs).await
        }
    };
    let a = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (a(&["--type", "NoSuchCredential", "--to", &bob, "--claim", "name=Bob"]), "unknown_credential_type", ""),
        (a(&["--type", "FriendCredential", "--to", &bob, "--claim", "name:=7"]), "schema_violation", "/name"),
        (
            a(&["--type", "FriendCredential", "--to", &bob, "--claim", "name=B", "--claim", "age:=3"]),
            "schema_violation",
            "age",
        ),
        (a(&["--type", "FriendCredential", "--to", &bob]), "schema_violation", "name"),
        (
            a(&["--type", "FriendCredential", "--to", &bob, "--claim", "name=B", "--claim", "since=soon"]),
            "schema_violation",
            "/since",
        ),
        (
            a(&["--type", "ProfileCredential", "--to", &bob, "--claim", "email=not-an-email"]),
            "schema_violation",
            "/email",
        ),
        (a(&["--type", "FriendCredential", "--to", "not a did", "--claim", "name=B"]), "invalid_request", "DID"),
        (
            a(&["--type", "FriendCredential", "--to", &bob, "--claim", "name=B", "--claim", "id=did:key:zX"]),
            "invalid_request",
            "id",
        ),
    ];
    for (args, code, mention) in cases {
        let out = issue(args.clone()).await;
        assert!(!out.status.success(), "{args:?} should fail");
        let err: Value = serde_json::from_slice(&out.stderr).expect("JSON error");
        assert_eq!(err["error"], code, "{args:?}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| m.contains(mention)), "{args:?}: {err}");
    }
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM issuer_credentials").await, 0, "nothing was logged");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM issuer_status_lists").await, 0, "no list was made");

    // A type of one's own, from a schema file; bad schemas are refused.
    let dir = app.dir.path();
    std::fs::write(dir.join("club.json"), r#"{"type":"object","properties":{"club":{"type":"string"},"level":{"type":"integer","minimum":1}},"required":["club"],"additionalProperties":false}"#).expect("write");
    std::fs::write(dir.join("bad.json"), r#"{"type":"object","properties":{"id":{"type":"string"}}}"#).expect("write");
    let add = |name: &str, file: &str| {
        let schema = dir.join(file);
        let alice = alice.clone();
        let name = name.to_owned();
        async move {
            sichat(
                &alice,
                &["--json", "credential", "type", "add", "--name", &name, "--schema", schema.to_str().expect("p")],
            )
            .await
        }
    };
    assert!(add("BookClubCredential", "club.json").await.status.success());
    let dup = add("BookClubCredential", "club.json").await;
    assert!(stderr(&dup).contains("conflict"), "{}", stderr(&dup));
    assert!(stderr(&add("FriendCredential", "club.json").await).contains("built-in"));
    assert!(stderr(&add("lowercase", "club.json").await).contains("invalid_type"));
    assert!(stderr(&add("DefinesIdCredential", "bad.json").await).contains("holder's DID"));
    let types = json(&sichat(&alice, &["--json", "credential", "type", "list"]).await);
    assert_eq!(types.as_array().map(Vec::len), Some(4), "Friend, Profile, Membership and BookClub: {types}");
    let out = issue(a(&["--type", "MembershipCredential", "--to", &bob, "--claim", "name=B"])).await;
    assert!(stderr(&out).contains("issued by the node"), "{}", stderr(&out));
    let out =
        issue(a(&["--type", "BookClubCredential", "--to", &bob, "--claim", "club=Readers", "--claim", "level:=0"]))
            .await;
    assert!(stderr(&out).contains("/level"), "{}", stderr(&out));
    let out =
        issue(a(&["--type", "BookClubCredential", "--to", &bob, "--claim", "club=Readers", "--claim", "level:=2"]))
            .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().expect("id").to_owned();

    // Someone else cannot touch alice's credentials; unknown actions and ids are clear.
    let code = app.invite(&alice, 1).await;
    let carol = app.join("carol", &code).await;
    let out = sichat(&carol, &["credential", "revoke", &id]).await;
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));
    let out = sichat(&alice, &["credential", "suspend", &id]).await;
    assert!(stderr(&out).contains("not issued as suspendable"), "{}", stderr(&out));
    let (status, body) = app.post_json(&format!("/api/v1/issuer/credentials/{id}/revoke"), &json!({})).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM issuer_credentials WHERE status = 'active'").await, 1);
    let (status, _) = app.get_json("/users/alice/status/no-such-list").await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json("/users/alice/credential-types/NoSuch/schema.json").await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn membership_follows_the_account(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let code = app.invite(&alice, 1).await;
    let bob = app.join("bob", &code).await;
    let bob_did = json(&sichat(&bob, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let node_did = app.node.identity.did().to_string();

    // `init` fetched bob's membership: issued by the node, about bob, active.
    let listed = json(&sichat(&bob, &["--json", "credential", "list"]).await);
    let m = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["type"] == "MembershipCredential")
        .expect("membership")
        .clone();
    assert_eq!((m["issuer"].as_str(), m["subject"].as_str()), (Some(node_did.as_str()), Some(bob_did.as_str())));
    assert_eq!(m["claims"], json!({"memberOf": node_did, "name": "bob"}));
    assert_eq!(m["status"]["state"], "active");

    // It verifies against the node's DID document and satisfies its schema.
    let shown = json(&sichat(&bob, &["--json", "credential", "show", m["id"].as_str().expect("id")]).await);
    let jwt = shown["credential"].as_str().expect("jwt");
    let vc: Value = jws::verify(jwt, &app.node.identity.public_key(), "vc+jwt").expect("node-signed");
    let schema: Value = app
        .http
        .get(vc["credentialSchema"]["id"].as_str().expect("schema"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(jsonschema::validator_for(&schema).expect("schema").is_valid(&vc));
    // Asking again returns the same credential.
    assert!(sichat(&bob, &["credential", "membership"]).await.status.success());
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM issuer_memberships").await, 2);

    // Removing bob revokes his membership, on the node's list, at once.
    assert!(sichat(&alice, &["user", "remove", "bob"]).await.status.success());
    let out = sichat(&bob, &["--json", "credential", "list"]).await;
    assert!(stderr(&out).contains("not synced"), "{}", stderr(&out));
    let listed = json(&out);
    let m = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["type"] == "MembershipCredential")
        .expect("membership")
        .clone();
    assert_eq!((m["status"]["state"].as_str(), m["status"]["revoked"].as_bool()), (Some("revoked"), Some(true)));
    let alice_list = json(&sichat(&alice, &["--json", "credential", "list"]).await);
    assert_eq!(alice_list[0]["status"]["state"], "active", "alice's membership is untouched");
    app.stop().await;
}

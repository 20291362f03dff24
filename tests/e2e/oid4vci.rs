//! OpenID4VCI: offers redeemed by real wallets, and every bad request refused cleanly.

use serde_json::{json, Value};
use sichat_core::ids::{b64url, now_ms};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_e2e::{json, sichat, sichat_env, stderr, stdout, storage_tests, Backend, TestApp};
use sichat_holder::oid4vci;
use sqlx::Row;

/// A did:key wallet belongs to no node: reaching an issuer on this machine is a choice its
/// user makes (`--allow-local-network`), not something an offer decides.
const LOCAL: &[(&str, &str)] = &[("SICHAT_ALLOW_LOCAL_NETWORK", "true"), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];

storage_tests!(
    offer_receive_list_revoke_with_two_wallets,
    bad_token_and_credential_requests_change_nothing,
    es256_types_and_proofs,
    data_integrity_offers,
    holder_on_another_node,
    pin_guesses_sent_at_once_are_counted_one_by_one
);

async fn did(app: &TestApp, wallet: &std::path::Path) -> String {
    let _ = app;
    json(&sichat(wallet, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned()
}

async fn offer_receive_list_revoke_with_two_wallets(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let code = app.invite(&alice, 1).await;
    let bob = app.join("bob", &code).await;
    let bob_did = did(&app, &bob).await;

    // Alice offers; the QR code and the PIN go to the terminal.
    let out = sichat(
        &alice,
        &["credential", "offer", "--type", "FriendCredential", "--to", &bob_did, "--claim", "name=Bob", "--pin"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let uri = text.lines().next().expect("uri").to_owned();
    assert!(uri.starts_with("openid-credential-offer://?credential_offer_uri="), "{uri}");
    assert!(text.contains('█') || text.contains('▀'), "a QR code is printed");
    let pin = text
        .lines()
        .find_map(|l| l.strip_prefix("PIN: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("pin")
        .to_owned();
    assert_eq!(pin.len(), 6);

    // Bob: no PIN (non-interactive), a wrong PIN, then the right one.
    let out = sichat(&bob, &["credential", "receive", &uri]).await;
    assert!(stderr(&out).contains("--pin"), "{}", stderr(&out));
    let out = sichat(&bob, &["credential", "receive", &uri, "--pin", "000000"]).await;
    assert!(stderr(&out).contains("invalid_grant") && stderr(&out).contains("4 attempts left"), "{}", stderr(&out));
    let out = sichat(&bob, &["--json", "credential", "receive", &uri, "--pin", &pin]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json(&out);
    assert_eq!((got["type"].as_str(), got["status"]["state"].as_str()), (Some("FriendCredential"), Some("active")));
    assert_eq!(got["subject"], bob_did.as_str());
    let id = got["id"].as_str().expect("id").to_owned();

    // Bob's node kept a copy: a device blessed later sees the credential too.
    let phone = app.wallet("bob-phone");
    let out = sichat(&bob, &["device", "add", "--name", "phone", "--out", phone.to_str().expect("p")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let on_phone = json(&sichat(&phone, &["--json", "credential", "list"]).await);
    let friend =
        |list: &Value| list.as_array().into_iter().flatten().find(|c| c["type"] == "FriendCredential").cloned();
    assert_eq!(friend(&on_phone).map(|c| c["id"].clone()), Some(json!(id)), "synced from the node: {on_phone}");

    // The offer is single-use.
    let out = sichat_env(&bob, &["credential", "receive", &uri, "--pin", &pin], LOCAL).await;
    assert!(stderr(&out).contains("already redeemed or has expired"), "{}", stderr(&out));

    // list and show, status fetched live; then Alice revokes and Bob sees it.
    let listed = json(&sichat(&bob, &["--json", "credential", "list"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "the friend credential and bob's membership");
    let held = friend(&listed).expect("friend credential");
    assert_eq!(held["claims"], json!({"name": "Bob"}));
    assert_eq!(held["status"]["state"], "active");
    let shown = json(&sichat(&bob, &["--json", "credential", "show", &id]).await);
    assert_eq!(shown["document"]["credentialSubject"]["id"], bob_did.as_str());
    assert!(sichat(&alice, &["credential", "revoke", &id]).await.status.success());
    let listed = json(&sichat(&bob, &["--json", "credential", "list"]).await);
    let held = friend(&listed).expect("friend credential");
    assert_eq!((held["status"]["state"].as_str(), held["status"]["revoked"].as_bool()), (Some("revoked"), Some(true)));

    // An offer to "anyone", by value, redeemed by a did:key wallet with no server.
    let carol = app.wallet("carol");
    assert!(sichat_env(&carol, &["init"], LOCAL).await.status.success());
    let carol_did = did(&app, &carol).await;
    let out = sichat(
        &alice,
        &[
            "--json",
            "credential",
            "offer",
            "--type",
            "ProfileCredential",
            "--to",
            "anyone",
            "--claim",
            "name=Carol",
            "--by-value",
        ],
    )
    .await;
    let by_value = json(&out)["offer_by_value"].as_str().expect("uri").to_owned();
    assert!(by_value.contains("credential_offer=%7B"), "{by_value}");
    let out = sichat_env(&carol, &["--json", "credential", "receive", &by_value], LOCAL).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["subject"], carol_did.as_str());

    // Nobody can park someone else's credential on their node.
    let carols = json(&sichat(&carol, &["--json", "credential", "show", json(&out)["id"].as_str().expect("id")]).await);
    let mut c = sichat_e2e::login(&app, &bob).await;
    let body = json!({"id": "x", "format": "vc+jwt", "credential": carols["credential"], "received_at": 0});
    let r = c.post(format!("{}/api/v1/holder/credentials", app.url)).json(&body).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "invalid_credential");
    c = reqwest::Client::new();
    let r = c.post(format!("{}/api/v1/holder/credentials", app.url)).json(&body).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 401);

    // An offer made for Bob cannot be redeemed by Carol.
    let out = sichat(
        &alice,
        &["--json", "credential", "offer", "--type", "FriendCredential", "--to", &bob_did, "--claim", "name=Bob"],
    )
    .await;
    let for_bob = json(&out)["offer_uri"].as_str().expect("uri").to_owned();
    let out = sichat_env(&carol, &["credential", "receive", &for_bob], LOCAL).await;
    assert!(stderr(&out).contains("credential_request_denied"), "{}", stderr(&out));

    // Claims that fail the schema are refused when the offer is made.
    let out = sichat(
        &alice,
        &["credential", "offer", "--type", "FriendCredential", "--to", "anyone", "--claim", "nickname=B"],
    )
    .await;
    assert!(stderr(&out).contains("schema_violation"), "{}", stderr(&out));
    app.stop().await;
}

/// Create an offer through the API as alice; returns the offer object.
async fn offer(app: &TestApp, alice: &std::path::Path, pin: bool) -> (oid4vci::Offer, Option<String>) {
    let mut args =
        vec!["--json", "credential", "offer", "--type", "FriendCredential", "--to", "anyone", "--claim", "name=X"];
    if pin {
        args.push("--pin");
    }
    let created = json(&sichat(alice, &args).await);
    let _ = app;
    let offer =
        oid4vci::resolve_offer(&local_fetcher(), created["offer_uri"].as_str().expect("uri")).await.expect("offer");
    (offer, created["tx_code"].as_str().map(String::from))
}

fn local_fetcher() -> sichat_core::net::Fetcher {
    sichat_core::net::Fetcher::new(sichat_core::net::NetPolicy { allow_local: true }).expect("fetcher")
}

async fn token(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let r = app.http.post(format!("{}/users/alice/oid4vci/token", app.url)).form(form).send().await.expect("token");
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn bad_token_and_credential_requests_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let grant = oid4vci::PRE_AUTH_GRANT;
    let issuer = format!("{}/users/alice", app.url);

    // Token endpoint.
    let (o, pin) = offer(&app, &alice, true).await;
    let pin = pin.expect("pin");
    let code = o.pre_authorized_code.as_str();
    for (form, status, error) in [
        (vec![("grant_type", "authorization_code"), ("code", "x")], 400, "unsupported_grant_type"),
        (vec![("pre-authorized_code", code)], 400, "invalid_request"),
        (vec![("grant_type", grant), ("pre-authorized_code", "nope"), ("tx_code", "1")], 400, "invalid_grant"),
        (vec![("grant_type", grant), ("pre-authorized_code", code)], 400, "invalid_request"),
    ] {
        let (s, body) = token(&app, &form).await;
        assert_eq!((s, body["error"].as_str()), (status, Some(error)), "{form:?}: {body}");
        assert!(body["error_description"].as_str().is_some());
    }
    // Five wrong PINs burn the offer; even the right PIN is then refused.
    for left in (0..5).rev() {
        let (s, body) =
            token(&app, &[("grant_type", grant), ("pre-authorized_code", code), ("tx_code", "999999x")]).await;
        assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
        assert!(
            body["error_description"].as_str().is_some_and(|d| d.contains(&format!("{left} attempts left"))),
            "{body}"
        );
    }
    let (_, body) = token(&app, &[("grant_type", grant), ("pre-authorized_code", code), ("tx_code", &pin)]).await;
    assert_eq!(body["error"], "invalid_grant");

    // An expired offer.
    let (o, _) = offer(&app, &alice, false).await;
    sqlx::query("UPDATE issuer_offers SET expires_at = 0 WHERE status = 'offered'")
        .execute(app.node.db.pool())
        .await
        .expect("expire");
    let (_, body) = token(&app, &[("grant_type", grant), ("pre-authorized_code", &o.pre_authorized_code)]).await;
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].as_str().is_some_and(|d| d.contains("expired")));

    // A good token, then bad credential requests: each refused, none uses it up.
    let (o, _) = offer(&app, &alice, false).await;
    let (s, body) = token(&app, &[("grant_type", grant), ("pre-authorized_code", &o.pre_authorized_code)]).await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().expect("token").to_owned();
    let (s, _) = token(&app, &[("grant_type", grant), ("pre-authorized_code", &o.pre_authorized_code)]).await;
    assert_eq!(s, 400, "a pre-authorized code works once");

    let holder = Ed25519KeyPair::generate();
    let holder_kid = format!("did:key:{}#{}", holder.public().to_multibase(), holder.public().to_multibase());
    let nonce = || async {
        let r: Value =
            app.http.post(format!("{issuer}/oid4vci/nonce")).send().await.expect("nonce").json().await.expect("json");
        r["c_nonce"].as_str().expect("c_nonce").to_owned()
    };
    let c_nonce = nonce().await;
    let proof = |key: &Ed25519KeyPair, kid: &str, claims: Value, typ: &str| {
        jws::sign(key, typ, Some(kid), &claims).expect("sign")
    };
    let good_claims = json!({"aud": issuer, "iat": now_ms() / 1000, "nonce": c_nonce});
    let request =
        |proof: String| json!({"credential_configuration_id": "FriendCredential", "proofs": {"jwt": [proof]}});
    let send = |body: Value, bearer: Option<String>| {
        let mut r = app.http.post(format!("{issuer}/oid4vci/credential")).json(&body);
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        async move {
            let resp = r.send().await.expect("credential");
            let auth = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(String::from);
            (resp.status().as_u16(), auth, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let other = Ed25519KeyPair::generate();
    let bad_cases: Vec<(Value, Option<String>, u16, &str)> = vec![
        (request(proof(&holder, &holder_kid, good_claims.clone(), "openid4vci-proof+jwt")), None, 401, "invalid_token"),
        (
            request(proof(&holder, &holder_kid, good_claims.clone(), "openid4vci-proof+jwt")),
            Some("forged".into()),
            401,
            "invalid_token",
        ),
        (
            json!({"credential_configuration_id": "ProfileCredential", "proofs": {"jwt": [proof(&holder, &holder_kid, good_claims.clone(), "openid4vci-proof+jwt")]}}),
            Some(access.clone()),
            400,
            "unknown_credential_configuration",
        ),
        (json!({"credential_configuration_id": "FriendCredential"}), Some(access.clone()), 400, "invalid_proof"),
        (request("not.a.jwt".into()), Some(access.clone()), 400, "invalid_proof"),
        (
            request(proof(&other, &holder_kid, good_claims.clone(), "openid4vci-proof+jwt")),
            Some(access.clone()),
            400,
            "invalid_proof",
        ),
        (request(proof(&holder, &holder_kid, good_claims.clone(), "JWT")), Some(access.clone()), 400, "invalid_proof"),
        (
            request(proof(
                &holder,
                &holder_kid,
                json!({"aud": "https://elsewhere.example", "iat": now_ms() / 1000, "nonce": c_nonce}),
                "openid4vci-proof+jwt",
            )),
            Some(access.clone()),
            400,
            "invalid_proof",
        ),
        (
            request(proof(
                &holder,
                &holder_kid,
                json!({"aud": issuer, "iat": now_ms() / 1000 - 3600, "nonce": c_nonce}),
                "openid4vci-proof+jwt",
            )),
            Some(access.clone()),
            400,
            "invalid_proof",
        ),
        (
            request(proof(
                &holder,
                &holder_kid,
                json!({"aud": issuer, "iat": now_ms() / 1000 - 200, "exp": now_ms() / 1000 - 100, "nonce": c_nonce}),
                "openid4vci-proof+jwt",
            )),
            Some(access.clone()),
            400,
            "invalid_proof",
        ),
        (
            request(proof(
                &holder,
                &holder_kid,
                json!({"aud": issuer, "iat": now_ms() / 1000, "exp": "tomorrow", "nonce": c_nonce}),
                "openid4vci-proof+jwt",
            )),
            Some(access.clone()),
            400,
            "invalid_proof",
        ),
        (
            request(proof(
                &holder,
                &holder_kid,
                json!({"aud": issuer, "iat": now_ms() / 1000}),
                "openid4vci-proof+jwt",
            )),
            Some(access.clone()),
            400,
            "invalid_proof",
        ),
        (
            request(proof(
                &holder,
                &holder_kid,
                json!({"aud": issuer, "iat": now_ms() / 1000, "nonce": "made-up"}),
                "openid4vci-proof+jwt",
            )),
            Some(access.clone()),
            400,
            "invalid_nonce",
        ),
        (json!({"proofs": 5}), Some(access.clone()), 400, "invalid_credential_request"),
    ];
    for (body, bearer, status, error) in bad_cases {
        let (s, auth, got) = send(body.clone(), bearer.clone()).await;
        assert_eq!((s, got["error"].as_str()), (status, Some(error)), "{body}: {got}");
        if status == 401 {
            assert!(auth.is_some_and(|a| a.contains("invalid_token")), "WWW-Authenticate on 401");
        }
    }
    let issued: i64 = sqlx::query("SELECT COUNT(*) AS n FROM issuer_credentials")
        .fetch_one(app.node.db.pool())
        .await
        .expect("q")
        .try_get("n")
        .expect("n");
    assert_eq!(issued, 0, "nothing was issued");

    // After all that, the same token and c_nonce still work, once: a proof whose `exp` is
    // still ahead, and whose typ is the full media type (RFC 7515 §4.1.9).
    let mut unexpired = good_claims.clone();
    unexpired["exp"] = json!(now_ms() / 1000 + 60);
    let (s, _, got) =
        send(request(proof(&holder, &holder_kid, unexpired, "application/openid4vci-proof+jwt")), Some(access.clone()))
            .await;
    assert_eq!(s, 200, "{got}");
    let vc: Value =
        jws::unverified_payload(got["credentials"][0]["credential"].as_str().expect("credential")).expect("vc");
    assert_eq!(vc["credentialSubject"]["id"], format!("did:key:{}", holder.public().to_multibase()));
    let (s, _, got) = send(
        request(proof(
            &holder,
            &holder_kid,
            json!({"aud": issuer, "iat": now_ms() / 1000, "nonce": nonce().await}),
            "openid4vci-proof+jwt",
        )),
        Some(access),
    )
    .await;
    assert_eq!((s, got["error"].as_str()), (401, Some("invalid_token")), "the token was used up");

    // A jwk-bound proof gives a did:jwk subject.
    let (o, _) = offer(&app, &alice, false).await;
    let (_, body) = token(&app, &[("grant_type", grant), ("pre-authorized_code", &o.pre_authorized_code)]).await;
    let mut header_jwk = serde_json::Map::new();
    header_jwk.insert("jwk".into(), holder.public().to_jwk());
    let claims = json!({"aud": issuer, "iat": now_ms() / 1000, "nonce": nonce().await});
    let proof_jwk = jws_with_jwk(&holder, &claims);
    let (s, _, got) = send(request(proof_jwk), Some(body["access_token"].as_str().expect("t").to_owned())).await;
    assert_eq!(s, 200, "{got}");
    let vc: Value = jws::unverified_payload(got["credentials"][0]["credential"].as_str().expect("c")).expect("vc");
    // The did:jwk of the key is the one the holder makes: its JWK's members in RFC 7638 order.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64url(holder.public().as_bytes()));
    assert_eq!(vc["credentialSubject"]["id"], format!("did:jwk:{}", b64url(canonical.as_bytes())));

    // Metadata is where OpenID4VCI says it is.
    let (s, meta) = app.get_json("/.well-known/openid-credential-issuer/users/alice").await;
    assert_eq!(s, 200);
    assert_eq!(meta["credential_issuer"], issuer.as_str());
    assert_eq!(meta["credential_configurations_supported"]["FriendCredential"]["format"], "vc+jwt");
    let (s, asm) = app.get_json("/.well-known/oauth-authorization-server/users/alice").await;
    assert_eq!((s, asm["token_endpoint"].as_str()), (200, Some(format!("{issuer}/oid4vci/token").as_str())));
    app.stop().await;
}

/// A proof JWT whose header carries the public JWK instead of a kid.
fn jws_with_jwk(key: &Ed25519KeyPair, claims: &Value) -> String {
    let header = json!({"alg": "EdDSA", "typ": "openid4vci-proof+jwt", "jwk": key.public().to_jwk()});
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig))
}

/// A type signed with ES256: a P-256 issuing key appears in the issuer's DID document,
/// wallets verify it, and ES256 key proofs are accepted too.
async fn es256_types_and_proofs(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let schema = app.dir.path().join("club.json");
    std::fs::write(&schema, r#"{"type":"object","properties":{"club":{"type":"string"}},"required":["club"]}"#)
        .expect("write");
    let out = sichat(
        &alice,
        &[
            "credential",
            "type",
            "add",
            "--name",
            "ClubCredential",
            "--schema",
            schema.to_str().expect("p"),
            "--alg",
            "ES256",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, meta) = app.get_json("/.well-known/openid-credential-issuer/users/alice").await;
    let config = &meta["credential_configurations_supported"]["ClubCredential"];
    assert_eq!(config["credential_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(config["proof_types_supported"]["jwt"]["proof_signing_alg_values_supported"], json!(["EdDSA", "ES256"]));

    // A did:key wallet redeems it; the credential is ES256, by a key in alice's document.
    let carol = app.wallet("carol");
    assert!(sichat_env(&carol, &["init"], LOCAL).await.status.success());
    let out = sichat(
        &alice,
        &["--json", "credential", "offer", "--type", "ClubCredential", "--to", "anyone", "--claim", "club=Chess"],
    )
    .await;
    let uri = json(&out)["offer_uri"].as_str().expect("uri").to_owned();
    let out = sichat_env(&carol, &["--json", "credential", "receive", &uri], LOCAL).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().expect("id").to_owned();
    let shown = json(&sichat_env(&carol, &["--json", "credential", "show", &id], LOCAL).await);
    let jwt = shown["credential"].as_str().expect("jwt");
    let header: Value =
        serde_json::from_slice(&sichat_core::ids::b64url_decode(jwt.split('.').next().expect("h")).expect("b64"))
            .expect("json");
    assert_eq!(header["alg"], "ES256");
    let kid = header["kid"].as_str().expect("kid");
    let (_, doc) = app.get_json("/users/alice/did.json").await;
    assert_eq!(doc["assertionMethod"].as_array().map(Vec::len), Some(2), "Ed25519 and P-256 issuing keys: {doc}");
    let vm =
        doc["verificationMethod"].as_array().expect("vms").iter().find(|m| m["id"] == kid).expect("kid listed").clone();
    assert!(vm["publicKeyMultibase"].as_str().is_some_and(|k| k.starts_with("zDn")), "a P-256 Multikey: {vm}");
    let key =
        sichat_core::p256key::PublicKey::from_multibase(vm["publicKeyMultibase"].as_str().expect("mb")).expect("key");
    let vc: Value = jws::verify_with(jwt, &key, "vc+jwt").expect("verifies with the P-256 key");
    assert_eq!(vc["credentialSubject"]["club"], "Chess");
    // Its status list (signed EdDSA by the same issuer) still checks out, and revocation shows.
    assert_eq!(shown["status"]["state"], "active");
    assert!(sichat(&alice, &["credential", "revoke", &id]).await.status.success());
    let listed = json(&sichat_env(&carol, &["--json", "credential", "list"], LOCAL).await);
    assert_eq!(listed[0]["status"]["state"], "revoked");

    // An ES256 key proof with a P-256 jwk: the subject is its did:jwk.
    let (o, _) = offer(&app, &alice, false).await;
    let (_, body) =
        token(&app, &[("grant_type", oid4vci::PRE_AUTH_GRANT), ("pre-authorized_code", &o.pre_authorized_code)]).await;
    let access = body["access_token"].as_str().expect("token").to_owned();
    let issuer = format!("{}/users/alice", app.url);
    let nonce: Value =
        app.http.post(format!("{issuer}/oid4vci/nonce")).send().await.expect("nonce").json().await.expect("json");
    let holder = sichat_core::p256key::P256KeyPair::generate();
    let header = json!({"alg": "ES256", "typ": "openid4vci-proof+jwt", "jwk": holder.public().to_jwk()});
    let claims = json!({"aud": issuer, "iat": now_ms() / 1000, "nonce": nonce["c_nonce"]});
    use sichat_core::ids::b64url;
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let proof = format!("{input}.{}", b64url(&holder.sign(input.as_bytes())));
    let body = json!({"credential_configuration_id": "FriendCredential", "proofs": {"jwt": [proof.clone()]}});
    let r = app
        .http
        .post(format!("{issuer}/oid4vci/credential"))
        .bearer_auth(&access)
        .json(&body)
        .send()
        .await
        .expect("credential");
    assert_eq!(r.status().as_u16(), 200);
    let got: Value = r.json().await.expect("json");
    let vc: Value = jws::unverified_payload(got["credentials"][0]["credential"].as_str().expect("c")).expect("vc");
    let subject = vc["credentialSubject"]["id"].as_str().expect("subject");
    let jwk: Value =
        serde_json::from_slice(&sichat_core::ids::b64url_decode(subject.trim_start_matches("did:jwk:")).expect("b64"))
            .expect("jwk");
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("EC"), Some("P-256")));
    app.stop().await;
}

/// Data Integrity on request: `eddsa-rdfc-2022` for an EdDSA type and `ecdsa-rdfc-2019` for
/// an ES256 one, offered as `ldp_vc`, received by a real wallet, verified through the
/// node's served context, and revoked.
async fn data_integrity_offers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let schema = app.dir.path().join("club.json");
    std::fs::write(&schema, r#"{"type":"object","properties":{"club":{"type":"string"}},"required":["club"]}"#)
        .expect("write");
    let s = schema.to_str().expect("p");
    let out =
        sichat(&alice, &["credential", "type", "add", "--name", "ClubCredential", "--schema", s, "--alg", "ES256"])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let (_, meta) = app.get_json("/.well-known/openid-credential-issuer/users/alice").await;
    let configs = &meta["credential_configurations_supported"];
    assert_eq!(configs["FriendCredential_ldp_vc"]["format"], "ldp_vc");
    assert_eq!(
        configs["FriendCredential_ldp_vc"]["credential_signing_alg_values_supported"],
        json!(["eddsa-rdfc-2022"])
    );
    assert_eq!(configs["ClubCredential_ldp_vc"]["credential_signing_alg_values_supported"], json!(["ecdsa-rdfc-2019"]));
    // The node's vocabulary is embedded: no context to fetch beyond the standard one.
    let context = json!(["https://www.w3.org/ns/credentials/v2", {"@vocab": format!("{}/vocab#", app.url)}]);
    assert_eq!(configs["FriendCredential_ldp_vc"]["credential_definition"]["@context"], context);
    // The context that credentials issued before named is still served, with the same vocabulary.
    let (status, served) = app.get_json("/contexts/v1").await;
    assert_eq!(status, 200);
    assert_eq!(served["@context"]["@vocab"], format!("{}/vocab#", app.url));

    let carol = app.wallet("carol");
    assert!(sichat_env(&carol, &["init"], LOCAL).await.status.success());
    for (type_name, claim, suite) in
        [("FriendCredential", "name=Carol", "eddsa-rdfc-2022"), ("ClubCredential", "club=Chess", "ecdsa-rdfc-2019")]
    {
        let out = sichat(
            &alice,
            &[
                "--json",
                "credential",
                "offer",
                "--type",
                type_name,
                "--to",
                "anyone",
                "--claim",
                claim,
                "--format",
                "ldp_vc",
            ],
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let uri = json(&out)["offer_uri"].as_str().expect("uri").to_owned();
        let offer = oid4vci::resolve_offer(&local_fetcher(), &uri).await.expect("offer");
        assert_eq!(offer.configuration_ids, vec![format!("{type_name}_ldp_vc")]);

        let out = sichat_env(&carol, &["--json", "credential", "receive", &uri], LOCAL).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let id = json(&out)["id"].as_str().expect("id").to_owned();
        let shown = json(&sichat_env(&carol, &["--json", "credential", "show", &id], LOCAL).await);
        assert_eq!(shown["format"], "ldp_vc");
        assert_eq!(shown["status"]["state"], "active");
        let doc = &shown["document"];
        assert_eq!(doc["proof"]["type"], "DataIntegrityProof");
        assert_eq!(doc["proof"]["cryptosuite"], suite);
        assert_eq!(doc["proof"]["proofPurpose"], "assertionMethod");
        assert_eq!(doc["@context"], context);
        let text = shown["credential"].as_str().expect("text");
        let fetcher =
            sichat_core::net::Fetcher::new(sichat_core::net::NetPolicy { allow_local: true }).expect("fetcher");
        let resolver = sichat_core::resolver::Resolver::new(std::sync::Arc::new(fetcher));
        sichat_holder::check::verify_credential(&resolver, "ldp_vc", text).await.expect("verifies");

        // A changed claim breaks the proof.
        let mut forged = doc.clone();
        forged["credentialSubject"][claim.split('=').next().expect("k")] = json!("Mallory");
        let e = sichat_holder::check::verify_credential(&resolver, "ldp_vc", &forged.to_string()).await.unwrap_err();
        assert!(e.to_string().contains("proof"), "{e}");

        assert!(sichat(&alice, &["credential", "revoke", &id]).await.status.success());
        let shown = json(&sichat_env(&carol, &["--json", "credential", "show", &id], LOCAL).await);
        assert_eq!(shown["status"]["state"], "revoked");
    }
    let log = json(&sichat(&alice, &["--json", "credential", "issued"]).await);
    assert!(log.as_array().expect("log").iter().all(|r| r["format"] == "ldp_vc"), "{log}");
}

/// Bob's did:web lives on another node: the issuer resolves it over the network, under the
/// node's network policy, and refuses it when that policy keeps the node off local addresses.
async fn holder_on_another_node(backend: Backend) {
    let Some(home) = TestApp::spawn(backend).await else { return };
    let Some(bobs) = TestApp::spawn(backend).await else { return };
    let Some(strict) = TestApp::spawn_with(backend, |c| c.allow_local_network = Some(false)).await else { return };
    let alice = home.join("alice", &home.owner_invite).await;
    let bob = bobs.join("bob", &bobs.owner_invite).await;
    let bob_did = did(&bobs, &bob).await;
    assert_ne!(home.url, bobs.url);

    let out =
        sichat(&alice, &["credential", "offer", "--type", "FriendCredential", "--to", &bob_did, "--claim", "name=Bob"])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let uri = stdout(&out).lines().next().expect("uri").to_owned();
    let out = sichat(&bob, &["--json", "credential", "receive", &uri]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json(&out);
    assert_eq!(
        (got["subject"].as_str(), got["issuer"].as_str()),
        (Some(bob_did.as_str()), Some(did(&home, &alice).await.as_str()))
    );

    // A node that may not reach local addresses cannot resolve Bob's loopback did:web.
    let carol = strict.join("carol", &strict.owner_invite).await;
    let out =
        sichat(&carol, &["credential", "offer", "--type", "FriendCredential", "--to", "anyone", "--claim", "name=Bob"])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let uri = stdout(&out).lines().next().expect("uri").to_owned();
    let out = sichat(&bob, &["credential", "receive", &uri]).await;
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("invalid_proof") && err.contains("private address"), "{err}");
    let row = sqlx::query("SELECT status FROM issuer_offers").fetch_one(strict.node.db.pool()).await.expect("offer");
    assert_eq!(row.get::<String, _>("status"), "redeemed", "the refused proof leaves the token usable");

    strict.stop().await;
    bobs.stop().await;
    home.stop().await;
}

/// Wrong PINs sent all at once: each is checked and counted in one statement, so no more
/// than five are ever evaluated; the offer is then burned, and says so, to the token
/// endpoint and to a real wallet.
async fn pin_guesses_sent_at_once_are_counted_one_by_one(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let created = json(
        &sichat(
            &alice,
            &[
                "--json",
                "credential",
                "offer",
                "--type",
                "FriendCredential",
                "--to",
                "anyone",
                "--claim",
                "name=X",
                "--pin",
            ],
        )
        .await,
    );
    let uri = created["offer_uri"].as_str().expect("uri").to_owned();
    let pin = created["tx_code"].as_str().expect("pin").to_owned();
    let code = oid4vci::resolve_offer(&local_fetcher(), &uri).await.expect("offer").pre_authorized_code;

    let url = format!("{}/users/alice/oid4vci/token", app.url);
    let guesses: Vec<_> = (0..12)
        .map(|i| {
            let (http, url, code) = (app.http.clone(), url.clone(), code.clone());
            let guess = format!("{:06}", (pin.parse::<u32>().expect("digits") + 1 + i) % 1_000_000);
            tokio::spawn(async move {
                let form = [
                    ("grant_type", oid4vci::PRE_AUTH_GRANT),
                    ("pre-authorized_code", code.as_str()),
                    ("tx_code", &guess),
                ];
                let r = http.post(&url).form(&form).send().await.expect("token");
                (r.status().as_u16(), r.json::<Value>().await.expect("json"))
            })
        })
        .collect();
    let mut evaluated = 0;
    for g in guesses {
        let (status, body) = g.await.expect("task");
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        let text = body["error_description"].as_str().unwrap_or_default();
        if text.contains("wrong tx_code") {
            evaluated += 1;
        } else {
            assert!(text.contains("too many wrong PINs"), "{body}");
        }
    }
    assert_eq!(evaluated, 5, "exactly five PINs were evaluated");
    let attempts: i64 = sqlx::query("SELECT tx_attempts FROM issuer_offers")
        .fetch_one(app.node.db.pool())
        .await
        .expect("offer")
        .try_get("tx_attempts")
        .expect("n");
    assert_eq!(attempts, 5);

    // Even the right PIN is refused now, with the reason and what to do.
    let (_, body) =
        token(&app, &[("grant_type", oid4vci::PRE_AUTH_GRANT), ("pre-authorized_code", &code), ("tx_code", &pin)])
            .await;
    let text = body["error_description"].as_str().unwrap_or_default();
    assert!(text.contains("too many wrong PINs") && text.contains("new offer"), "{body}");
    let bob = app.wallet("bob");
    assert!(sichat(&bob, &["init"]).await.status.success());
    let out = sichat_env(&bob, &["credential", "receive", &uri, "--pin", &pin], LOCAL).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("too many wrong PINs"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("already"), "{}", stderr(&out));
    app.stop().await;
}

//! The OpenID Provider's clients beyond the basics: ID tokens signed with each client's
//! algorithm, key rotation through the real `sichatd admin rotate-keys`, `private_key_jwt`
//! client assertions, claims backed by the user's credentials (the email scope among them).
//! Registration policies and metadata-document clients: `oidc_registration.rs`.
//!
//! The relying party is the `openidconnect` crate where it models the feature; raw HTTP
//! where the status code or an unmodelled claim is the point. Client assertions are signed
//! with `josekit`, and ID token signatures are also checked with it against the JWKS.

use crate::oidc::{
    self, alice_with_password, code_from, did, discover, hidden, rp_http, Browser, Http, Rp, PASSWORD, REDIRECT,
};
use josekit::jwk::alg::ed::EdCurve;
use josekit::jwk::{Jwk, KeyPair as _};
use josekit::jws::{EdDSA, JwsHeader, JwsSigner, JwsVerifier, ES256, RS256};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClientRegistrationRequest, CoreClientRegistrationResponse, CoreJwsSigningAlgorithm,
    CoreTokenResponse,
};
use openidconnect::registration::EmptyAdditionalClientMetadata;
use openidconnect::url::Url;
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientName, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{json, Value};
use sichat_core::ids::now_ms;
use sichat_e2e::{binary, json, sichat, sichat_env, stderr, storage_tests, Backend, TestApp};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

storage_tests!(
    id_tokens_signed_with_each_clients_algorithm,
    key_rotation_with_sichatd_admin,
    private_key_jwt_client_assertions,
    claims_backed_by_credentials,
    email_from_a_profile_credential,
);

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---- 1. ID token algorithms per client ----

async fn id_tokens_signed_with_each_clients_algorithm(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    assert_eq!(raw["id_token_signing_alg_values_supported"], json!(["RS256", "EdDSA", "ES256"]));
    let jwks = jwks(&app).await;
    assert_eq!(algs_of(&jwks), vec!["ES256", "EdDSA", "RS256"], "one active key per algorithm: {jwks}");

    for (alg, core) in [
        ("EdDSA", CoreJwsSigningAlgorithm::EdDsa),
        ("ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        ("RS256", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
    ] {
        let name = format!("{alg} RP");
        let reg = CoreClientRegistrationRequest::new(
            vec![RedirectUrl::new(REDIRECT.into()).expect("url")],
            EmptyAdditionalClientMetadata {},
        )
        .set_client_name(Some(ClientName::new(name.clone()).into()))
        .set_id_token_signed_response_alg(Some(core.clone()))
        .register_async(meta.registration_endpoint().expect("registration_endpoint"), &http)
        .await
        .unwrap_or_else(|e| panic!("registering a client for {alg}: {e}"));
        assert_eq!(reg.id_token_signed_response_alg(), Some(&core), "the registration echoes the algorithm");
        let client = oidc::rp(&meta, &raw, &reg);

        let (url, csrf, nonce, pkce) = begin(&client, &[], &[]);
        let (back, consent) = sign_in(&app, &url, "alice", &name).await;
        assert!(consent.is_some(), "a new client gets the consent page");
        let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
        let id_token = tokens.id_token().expect("an ID token");

        // openidconnect: the signature against the discovered JWKS (key by kid), issuer,
        // audience and nonce, accepting only the registered algorithm.
        let verifier = client.id_token_verifier().set_allowed_algs(vec![core.clone()]);
        let claims = id_token.claims(&verifier, &nonce).unwrap_or_else(|e| panic!("a valid {alg} ID token: {e}"));
        assert_eq!(claims.audiences().first().map(|a| a.as_str()), Some(reg.client_id().as_str()));
        assert_eq!(id_token.signing_alg().expect("alg"), &core);
        // at_hash: openidconnect hashes with the algorithm's own hash (SHA-512 for Ed25519,
        // SHA-256 for RS256 and ES256) and must find the claim's value.
        let expected = claims.access_token_hash().unwrap_or_else(|| panic!("{alg}: an at_hash"));
        let key = id_token.signing_key(&verifier).expect("the signing key");
        let actual = AccessTokenHash::from_token(tokens.access_token(), &core, key).expect("at_hash");
        assert_eq!(&actual, expected, "{alg}: at_hash is the left half of the algorithm's hash of the access token");
        assert_eq!(expected.as_str().len(), if alg == "EdDSA" { 43 } else { 22 }, "{alg}: half of the hash");

        // josekit, independently: the header names this algorithm and a published key of it.
        let (header, payload) = verify_jws(&jwks, &id_token.to_string());
        assert_eq!(header["alg"], alg, "{header}");
        let kid = header["kid"].as_str().expect("kid");
        let key = key_by_kid(&jwks, kid).unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
        assert_eq!(key["alg"], alg, "the JWK of {kid}");
        assert_eq!(payload["nonce"], nonce.secret().as_str());

        // A relying party that expects RS256 only refuses the others.
        if alg != "RS256" {
            let rs256_only =
                client.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
            assert!(id_token.claims(&rs256_only, &nonce).is_err(), "an RS256-only RP refuses {alg}");
        }
    }

    // Unknown algorithms (and "none") are refused at registration.
    for bad in ["HS256", "none", "PS512", "rs256"] {
        let body = json!({"redirect_uris": [REDIRECT], "id_token_signed_response_alg": bad});
        let (status, body) = register_raw(&app, &body, None).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_metadata")), "{bad}: {body}");
    }
    app.stop().await;
}

// ---- 2. Key rotation ----

async fn key_rotation_with_sichatd_admin(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    let reg = oidc::register(&http, &meta).await;
    let client = oidc::rp(&meta, &raw, &reg);
    let before = jwks(&app).await;
    let old_kids = kids(&before);
    assert_eq!(old_kids.len(), 3, "{before}");

    // An ID token from before the rotation.
    let (url, csrf, old_nonce, pkce) = begin(&client, &[], &[]);
    let (back, _) = sign_in(&app, &url, "alice", "Test RP").await;
    let old = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let old_token = old.id_token().expect("an ID token").clone();
    let (old_header, _) = verify_jws(&before, &old_token.to_string());
    let old_kid = old_header["kid"].as_str().expect("kid").to_owned();
    assert!(old_kids.contains(&old_kid));

    // The operator rotates with the real binary, on the running node's data directory and
    // database.
    let out = sichatd_admin(&app, &["rotate-keys", "--json"]).await;
    assert!(out.status.success(), "sichatd admin rotate-keys: {}", stderr(&out));
    let new_kids: BTreeSet<String> = json(&out)["new_kids"]
        .as_array()
        .expect("new_kids")
        .iter()
        .map(|k| k.as_str().expect("a kid").to_owned())
        .collect();
    assert_eq!(new_kids.len(), 3, "a new key per algorithm: {new_kids:?}");
    assert!(new_kids.is_disjoint(&old_kids), "new kids {new_kids:?} vs old {old_kids:?}");

    // The node's housekeeping picks them up; run that step now.
    app.node.oidc.maintain_keys().await.expect("maintain_keys");
    let after = jwks(&app).await;
    let all = kids(&after);
    assert_eq!(all.len(), 6, "old and new keys are published: {after}");
    assert!(old_kids.is_subset(&all) && new_kids.is_subset(&all), "{after}");
    assert_eq!(algs_of(&after), vec!["ES256", "ES256", "EdDSA", "EdDSA", "RS256", "RS256"], "{after}");

    // Relying parties that fetched the JWKS before the rotation may cache it for its
    // max-age: the old key goes on signing until the new one has been published that long
    // (consent is remembered: no consent page).
    let max_age = jwks_max_age(&app).await;
    let (meta, raw) = discover(&app, &http).await;
    let client = oidc::rp(&meta, &raw, &reg);
    let (url, csrf, nonce, pkce) = begin(&client, &[], &[]);
    let (back, consent) = sign_in(&app, &url, "alice", "Test RP").await;
    assert!(consent.is_none(), "consent was given before");
    let soon = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let soon_token = soon.id_token().expect("an ID token");
    soon_token.claims(&client.id_token_verifier(), &nonce).expect("verifies against the JWKS");
    let (soon_header, _) = verify_jws(&before, &soon_token.to_string());
    assert_eq!(soon_header["kid"], old_kid.as_str(), "right after the rotation the old key signs: {soon_header}");

    // Time passes (the keys' clocks are set back by two cache lifetimes and a minute).
    let by = (2 * max_age + 60) * 1000;
    for sql in [
        "UPDATE oidc_keys SET created_at = created_at - $1",
        "UPDATE oidc_keys SET retired_at = retired_at - $1 WHERE retired_at IS NOT NULL",
    ] {
        sqlx::query(sql).bind(by).execute(app.node.oidc.db().pool()).await.expect("backdate the keys");
    }
    app.node.oidc.maintain_keys().await.expect("maintain_keys");
    let (url, csrf, nonce, pkce) = begin(&client, &[], &[]);
    let (back, _) = sign_in(&app, &url, "alice", "Test RP").await;
    let new = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let new_token = new.id_token().expect("an ID token");
    new_token.claims(&client.id_token_verifier(), &nonce).expect("the new ID token verifies against the JWKS");
    let (new_header, _) = verify_jws(&after, &new_token.to_string());
    let new_kid = new_header["kid"].as_str().expect("kid");
    assert!(new_kids.contains(new_kid), "signed with a new key: {new_header}, new kids {new_kids:?}");
    assert_eq!(new_header["alg"], "RS256");

    // The ID token from before the rotation still verifies against the published JWKS.
    old_token.claims(&client.id_token_verifier(), &old_nonce).expect("the old ID token still verifies");
    verify_jws(&after, &old_token.to_string());

    // Rotating in process again: three more keys, the first generation still published.
    let third: BTreeSet<String> = app.node.oidc.rotate_keys().await.expect("rotate_keys").into_iter().collect();
    assert_eq!(third.len(), 3);
    let latest = kids(&jwks(&app).await);
    assert!(third.is_subset(&latest) && old_kids.is_subset(&latest) && new_kids.is_subset(&latest));
    app.stop().await;
}

// ---- 3. private_key_jwt ----

async fn private_key_jwt_client_assertions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let es = ClientKey::es256("es-1");
    let ed = ClientKey::ed25519("ed-1");

    // A JWKS with a private part is refused.
    let leaked = ES256.generate_key_pair().expect("key").to_jwk_key_pair();
    let leaked = Value::Object(leaked.as_ref().clone());
    assert!(leaked.get("d").is_some());
    let body = backend_client_metadata(json!({"keys": [leaked]}));
    let (status, body) = register_raw(&app, &body, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_metadata")), "{body}");

    // A backend job: private_key_jwt, client_credentials, no redirect URIs.
    let body = backend_client_metadata(json!({"keys": [es.public.clone(), ed.public.clone()]}));
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "a client_credentials client needs no redirect_uris (RFC 7591 §2): {reg}");
    assert!(reg.get("client_secret").is_none(), "no shared secret for private_key_jwt: {reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "private_key_jwt");
    let id = reg["client_id"].as_str().expect("client_id").to_owned();
    let token_endpoint = format!("{}/oidc/token", app.url);

    // A good assertion, ES256, for the token endpoint.
    let good = es.sign(&assertion_claims(&id, &token_endpoint, 300));
    let (status, body) = client_credentials(&app, &good).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(body["token_type"], "Bearer");

    // The same assertion again: its jti was used.
    let (status, body) = client_credentials(&app, &good).await;
    // RFC 6749 §5.2: 401 is required only when the client used the Authorization header;
    // a client assertion in the body is refused with 400.
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")), "jti replay: {body}");

    // Each bad assertion is refused.
    let impostor = ClientKey::es256("es-1"); // another key under the registered kid
    let cases = [
        ("signed by another key", impostor.sign(&assertion_claims(&id, &token_endpoint, 300))),
        ("expired", es.sign(&assertion_claims(&id, &token_endpoint, -60))),
        ("for another audience", es.sign(&assertion_claims(&id, "https://elsewhere.example/oidc/token", 300))),
        ("sub is not iss", {
            let mut c = assertion_claims(&id, &token_endpoint, 300);
            c["sub"] = json!("someone-else");
            es.sign(&c)
        }),
        ("exp an hour ahead", es.sign(&assertion_claims(&id, &token_endpoint, 3600))),
        ("alg none", {
            let part = |v: &Value| sichat_core::ids::b64url(v.to_string().as_bytes());
            let c = assertion_claims(&id, &token_endpoint, 300);
            format!("{}.{}.", part(&json!({"alg": "none", "kid": "es-1"})), part(&c))
        }),
        ("HS256 with the public key as the secret", {
            let secret = serde_json::to_vec(&es.public).expect("jwk");
            let signer = josekit::jws::HS256.signer_from_bytes(&secret).expect("hmac");
            ClientKey { kid: "es-1".into(), signer: Box::new(signer), public: Value::Null }.sign(&assertion_claims(
                &id,
                &token_endpoint,
                300,
            ))
        }),
        ("no jti", {
            let mut c = assertion_claims(&id, &token_endpoint, 300);
            c.as_object_mut().expect("claims").remove("jti");
            es.sign(&c)
        }),
    ];
    for (why, jwt) in cases {
        let (status, body) = client_credentials(&app, &jwt).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")), "{why}: {body}");
    }

    // The client's other key (EdDSA) works, with the issuer as audience.
    let (status, body) = client_credentials(&app, &ed.sign(&assertion_claims(&id, &app.url, 300))).await;
    assert_eq!(status, 200, "EdDSA assertion for the issuer: {body}");

    // A shared secret is not how this client authenticates.
    let r = app
        .http
        .post(&token_endpoint)
        .basic_auth(&id, Some("a guess"))
        .form(&[("grant_type", "client_credentials"), ("scope", "openid")])
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "client_secret_basic: {body}");

    // Introspection, authenticated with a fresh assertion.
    let jwt = es.sign(&assertion_claims(&id, &format!("{}/oidc/introspect", app.url), 300));
    let form = [("token", access.as_str()), ("client_assertion_type", JWT_BEARER), ("client_assertion", jwt.as_str())];
    let r = app.http.post(format!("{}/oidc/introspect", app.url)).form(&form).send().await.expect("introspect");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["active"].as_bool(), body["client_id"].as_str()), (Some(true), Some(id.as_str())), "{body}");
    assert_eq!(body["scope"], "openid");
    app.stop().await;
}

// ---- 6. Claims backed by credentials ----

async fn claims_backed_by_credentials(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let invite = app.invite(&alice, 1).await;
    let bob = app.join("bob", &invite).await;
    set_password(&bob).await;
    let (alice_did, bob_did) = (did(&alice).await, did(&bob).await);
    let node_did = app.node.identity.did().to_string();

    // Alice vouches for Bob; Bob's wallet receives it and his node keeps a copy.
    let out = sichat(
        &alice,
        &["--json", "credential", "offer", "--type", "FriendCredential", "--to", &bob_did, "--claim", "name=Bob"],
    )
    .await;
    assert!(out.status.success(), "offer: {}", stderr(&out));
    let offer = json(&out)["offer_uri"].as_str().expect("offer_uri").to_owned();
    let out = sichat(&bob, &["--json", "credential", "receive", &offer]).await;
    assert!(out.status.success(), "receive: {}", stderr(&out));
    let friend_id = json(&out)["id"].as_str().expect("id").to_owned();
    let held: Value = sichat_e2e::login(&app, &bob)
        .await
        .get(format!("{}/api/v1/holder/credentials", app.url))
        .send()
        .await
        .expect("holder credentials")
        .json()
        .await
        .expect("json");
    assert!(held.as_array().is_some_and(|l| l.iter().any(|c| c["id"] == friend_id.as_str())), "node copy: {held}");

    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    assert!(raw["scopes_supported"].as_array().is_some_and(|s| s.contains(&json!("friends"))), "{raw}");
    let reg = oidc::register(&http, &meta).await;
    let client = oidc::rp(&meta, &raw, &reg);

    // Scopes: the consent page shows each claim, its value and the credential behind it.
    let (url, csrf, nonce, pkce) = begin(&client, &["friends", "membership"], &[]);
    let (back, consent) = sign_in(&app, &url, "bob", "Test RP").await;
    let page = consent.expect("a consent page");
    for want in [
        "sichat_friend_of",
        alice_did.as_str(),
        "FriendCredential",
        friend_id.as_str(),
        "sichat_membership",
        node_did.as_str(),
        "MembershipCredential",
    ] {
        assert!(page.contains(want), "the consent page shows {want}: {page}");
    }
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let id_token = tokens.id_token().expect("an ID token");
    id_token.claims(&client.id_token_verifier(), &nonce).expect("a valid ID token");
    let (_, claims) = verify_jws(&jwks(&app).await, &id_token.to_string());
    assert_eq!(claims["sichat_friend_of"], json!([alice_did]), "ID token: {claims}");
    assert_eq!(claims["sichat_membership"], json!([node_did]), "ID token: {claims}");
    let access = tokens.access_token().secret().clone();
    let (status, info) = userinfo_raw(&app, &access).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sichat_friend_of"], json!([alice_did]), "UserInfo: {info}");
    assert_eq!(info["sichat_membership"], json!([node_did]), "UserInfo: {info}");

    // The claims parameter asks for one backed claim by name, and needs consent for it.
    let (status, reg2) =
        register_raw(&app, &json!({"redirect_uris": [REDIRECT], "client_name": "Claims RP"}), None).await;
    assert_eq!(status, 201, "{reg2}");
    let claims_rp = raw_rp(&app, &reg2).await;
    let asked = json!({"userinfo": {"sichat_friend_of": null}}).to_string();
    let (url, csrf, _, pkce) = begin(&claims_rp, &[], &[("claims", &asked)]);
    let (back, consent) = sign_in(&app, &url, "bob", "Claims RP").await;
    let page = consent.expect("a consent page");
    assert!(page.contains("FriendCredential") && page.contains(&alice_did), "{page}");
    assert!(!page.contains("MembershipCredential"), "membership was not asked for: {page}");
    let by_name = exchange(&claims_rp, &http, code_from(&app, &back, &csrf), pkce).await;
    let (status, info) = userinfo_raw(&app, by_name.access_token().secret()).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sichat_friend_of"], json!([alice_did]), "UserInfo: {info}");
    assert!(info.get("sichat_membership").is_none(), "not asked for: {info}");

    // Alice revokes: the claim is checked live, so it empties at once; membership stays.
    let out = sichat(&alice, &["credential", "revoke", &friend_id]).await;
    assert!(out.status.success(), "revoke: {}", stderr(&out));
    let (status, info) = userinfo_raw(&app, &access).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sichat_friend_of"], json!([]), "after revocation: {info}");
    assert_eq!(info["sichat_membership"], json!([node_did]), "after revocation: {info}");

    // Asked again, the consent page says there is nothing to share.
    let (url, _, _, _) = begin(&client, &["friends"], &[("prompt", "consent")]);
    let (_, consent) = sign_in(&app, &url, "bob", "Test RP").await;
    let page = consent.expect("prompt=consent shows the consent page");
    assert!(page.contains("You hold no valid FriendCredential"), "{page}");
    assert!(!page.contains(&friend_id), "the revoked credential is not offered: {page}");
    app.stop().await;
}

// ---- 7. The email scope, backed by a ProfileCredential ----

async fn email_from_a_profile_credential(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let invite = app.invite(&alice, 1).await;
    let bob = app.join("bob", &invite).await;
    set_password(&bob).await;
    let (alice_did, bob_did) = (did(&alice).await, did(&bob).await);
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    for claim in ["email", "email_verified"] {
        assert!(raw["claims_supported"].as_array().is_some_and(|c| c.contains(&json!(claim))), "{claim}: {raw}");
    }
    let reg = oidc::register(&http, &meta).await;
    let client = oidc::rp(&meta, &raw, &reg);

    // Bob holds no ProfileCredential: the consent page says so, and nothing is released.
    let (url, csrf, nonce, pkce) = begin(&client, &["email"], &[]);
    let (back, consent) = sign_in(&app, &url, "bob", "Test RP").await;
    let page = consent.expect("a consent page");
    assert!(page.contains("You hold no valid ProfileCredential with an email"), "{page}");
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let claims = tokens.id_token().expect("an ID token").claims(&client.id_token_verifier(), &nonce).expect("valid");
    assert_eq!((claims.email(), claims.email_verified()), (None, None), "no email in the ID token");
    let (status, info) = userinfo_raw(&app, tokens.access_token().secret()).await;
    assert_eq!(status, 200, "{info}");
    assert!(info.get("email").is_none() && info.get("email_verified").is_none(), "UserInfo: {info}");

    // Alice vouches for Bob's address; Bob's wallet receives it and his node keeps a copy.
    let out = sichat(
        &alice,
        &[
            "--json",
            "credential",
            "offer",
            "--type",
            "ProfileCredential",
            "--to",
            &bob_did,
            "--claim",
            "email=bob@example.org",
        ],
    )
    .await;
    assert!(out.status.success(), "offer: {}", stderr(&out));
    let offer = json(&out)["offer_uri"].as_str().expect("offer_uri").to_owned();
    let out = sichat(&bob, &["--json", "credential", "receive", &offer]).await;
    assert!(out.status.success(), "receive: {}", stderr(&out));
    let profile_id = json(&out)["id"].as_str().expect("id").to_owned();

    // Asked again: the page names the address, the credential and who issued it; the site
    // gets the address, not verified.
    let (url, csrf, nonce, pkce) = begin(&client, &["email"], &[("prompt", "consent")]);
    let (back, consent) = sign_in(&app, &url, "bob", "Test RP").await;
    let page = consent.expect("prompt=consent shows the consent page");
    for want in ["bob@example.org", "ProfileCredential", profile_id.as_str(), alice_did.as_str()] {
        assert!(page.contains(want), "the consent page shows {want}: {page}");
    }
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let claims = tokens.id_token().expect("an ID token").claims(&client.id_token_verifier(), &nonce).expect("valid");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("bob@example.org"));
    assert_eq!(claims.email_verified(), Some(false), "a credential vouches for it; nobody proved it");
    let access = tokens.access_token().secret().clone();
    let (status, info) = userinfo_raw(&app, &access).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!((&info["email"], &info["email_verified"]), (&json!("bob@example.org"), &json!(false)), "{info}");

    // Alice revokes it: checked live, the address is no longer released.
    let out = sichat(&alice, &["credential", "revoke", &profile_id]).await;
    assert!(out.status.success(), "revoke: {}", stderr(&out));
    let (status, info) = userinfo_raw(&app, &access).await;
    assert_eq!(status, 200, "{info}");
    assert!(info.get("email").is_none() && info.get("email_verified").is_none(), "after revocation: {info}");
    app.stop().await;
}

// ---- helpers ----

/// `sichatd admin ARGS` on the test node's data directory and database.
pub(crate) fn urlencode(s: &str) -> String {
    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) async fn sichatd_admin(app: &TestApp, args: &[&str]) -> Output {
    tokio::process::Command::new(binary("sichatd"))
        .arg("--data-dir")
        .arg(&app.node.config.data_dir)
        .arg("--database-url")
        .arg(app.node.config.database_url())
        .arg("admin")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run sichatd")
}

pub(crate) async fn set_password(wallet: &Path) {
    let env = [("SICHAT_NEW_PASSWORD", PASSWORD), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];
    let out = sichat_env(wallet, &["password", "set"], &env).await;
    assert!(out.status.success(), "password set: {}", stderr(&out));
}

/// RFC 7591 registration by hand, optionally with an initial access token.
pub(crate) async fn register_raw(app: &TestApp, body: &Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = app.http.post(format!("{}/oidc/register", app.url)).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("registration request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An openidconnect client for a registration made by hand.
pub(crate) async fn raw_rp(app: &TestApp, reg: &Value) -> Rp {
    let (meta, raw) = discover(app, &rp_http()).await;
    let reg: CoreClientRegistrationResponse = serde_json::from_value(reg.clone()).expect("a registration response");
    oidc::rp(&meta, &raw, &reg)
}

/// A code-flow request with PKCE for `openid` plus `scopes`, and `extra` parameters.
pub(crate) fn begin(client: &Rp, scopes: &[&str], extra: &[(&str, &str)]) -> (Url, CsrfToken, Nonce, PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for s in scopes {
        request = request.add_scope(Scope::new((*s).into()));
    }
    for (k, v) in extra {
        request = request.add_extra_param(*k, *v);
    }
    let (url, csrf, nonce) = request.url();
    (url, csrf, nonce, verifier)
}

/// A fresh browser signs `user` in and allows the consent page if one is shown (it must
/// name `site`). Returns the redirect back to the client and the consent page, if shown.
pub(crate) async fn sign_in(app: &TestApp, auth_url: &Url, user: &str, site: &str) -> (Url, Option<String>) {
    sign_in_with(&mut Browser::new(), app, auth_url, user, site).await
}

/// `sign_in` in a given browser, which keeps its session afterwards.
pub(crate) async fn sign_in_with(
    browser: &mut Browser,
    app: &TestApp,
    auth_url: &Url,
    user: &str,
    site: &str,
) -> (Url, Option<String>) {
    let login = browser.get(auth_url.as_str()).await;
    assert_eq!(login.status, 200, "login page: {}", login.body);
    assert!(login.body.contains(site), "the sign-in page names {site}: {}", login.body);
    let form = [
        ("request", hidden(&login.body, "request")),
        ("csrf", hidden(&login.body, "csrf")),
        ("username", user.to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let after_login = browser.post(&format!("{}/oidc/login", app.url), &form).await;
    assert_eq!(after_login.status, 303, "login: {}", after_login.body);
    let next = after_login.location(app).expect("a redirect after login");
    if !next.as_str().starts_with(&app.url) {
        return (next, None);
    }
    assert_eq!(next.path(), "/oidc/consent", "{next}");
    let consent = browser.get(next.as_str()).await;
    assert_eq!(consent.status, 200, "consent page: {}", consent.body);
    assert!(consent.body.contains(site), "the consent page names {site}: {}", consent.body);
    let form = [
        ("request", hidden(&consent.body, "request")),
        ("csrf", hidden(&consent.body, "csrf")),
        ("decision", "allow".to_owned()),
    ];
    let done = browser.post(&format!("{}/oidc/consent", app.url), &form).await;
    assert_eq!(done.status, 303, "consent: {}", done.body);
    let back = done.location(app).expect("a redirect after consent");
    (back, Some(consent.body))
}

pub(crate) async fn exchange(
    client: &Rp,
    http: &Http,
    code: AuthorizationCode,
    pkce: PkceCodeVerifier,
) -> CoreTokenResponse {
    client
        .exchange_code(code)
        .expect("token endpoint")
        .set_pkce_verifier(pkce)
        .request_async(http)
        .await
        .unwrap_or_else(|e| panic!("code exchange: {e:?}"))
}

pub(crate) async fn userinfo_raw(app: &TestApp, access: &str) -> (u16, Value) {
    let r = app.http.get(format!("{}/oidc/userinfo", app.url)).bearer_auth(access).send().await.expect("userinfo");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The JWKS's cache lifetime in seconds, from its `Cache-Control`.
async fn jwks_max_age(app: &TestApp) -> i64 {
    let r = app.http.get(format!("{}/oidc/jwks", app.url)).send().await.expect("jwks");
    let cache = r.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    cache
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age=").and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("a max-age in {cache:?}"))
}

pub(crate) async fn jwks(app: &TestApp) -> Value {
    let (status, jwks) = app.get_json("/oidc/jwks").await;
    assert_eq!(status, 200, "{jwks}");
    jwks
}

fn keys_of(jwks: &Value) -> &Vec<Value> {
    jwks["keys"].as_array().unwrap_or_else(|| panic!("a JWKS: {jwks}"))
}

fn kids(jwks: &Value) -> BTreeSet<String> {
    keys_of(jwks).iter().map(|k| k["kid"].as_str().expect("every key has a kid").to_owned()).collect()
}

fn algs_of(jwks: &Value) -> Vec<String> {
    let mut algs: Vec<String> = keys_of(jwks).iter().map(|k| k["alg"].as_str().unwrap_or("?").to_owned()).collect();
    algs.sort();
    algs
}

fn key_by_kid<'a>(jwks: &'a Value, kid: &str) -> Option<&'a Value> {
    keys_of(jwks).iter().find(|k| k["kid"] == kid)
}

/// The header and claims of a compact JWS, after josekit checked its signature with the
/// JWKS key its `kid` names.
pub(crate) fn verify_jws(jwks: &Value, token: &str) -> (Value, Value) {
    let (header, _) = sichat_core::jws::unverified_parts(token).expect("a compact JWS");
    let kid = header["kid"].as_str().unwrap_or_else(|| panic!("no kid in {header}"));
    let key = key_by_kid(jwks, kid).unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
    let jwk = Jwk::from_map(key.as_object().expect("a JWK").clone()).expect("a valid JWK");
    let verifier: Box<dyn JwsVerifier> = match header["alg"].as_str() {
        Some("RS256") => Box::new(RS256.verifier_from_jwk(&jwk).expect("RS256 key")),
        Some("ES256") => Box::new(ES256.verifier_from_jwk(&jwk).expect("ES256 key")),
        Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(&jwk).expect("EdDSA key")),
        other => panic!("unexpected alg {other:?}"),
    };
    let (payload, _) = josekit::jws::deserialize_compact(token, &*verifier)
        .unwrap_or_else(|e| panic!("the signature checks out with key {kid}: {e}"));
    (header, serde_json::from_slice(&payload).expect("JSON claims"))
}

/// A client's signing key for `private_key_jwt`.
struct ClientKey {
    kid: String,
    signer: Box<dyn JwsSigner>,
    public: Value,
}

impl ClientKey {
    fn es256(kid: &str) -> Self {
        let pair = ES256.generate_key_pair().expect("P-256 key");
        Self::new(
            kid,
            Box::new(ES256.signer_from_jwk(&pair.to_jwk_key_pair()).expect("signer")),
            pair.to_jwk_public_key(),
        )
    }

    fn ed25519(kid: &str) -> Self {
        let pair = EdDSA.generate_key_pair(EdCurve::Ed25519).expect("Ed25519 key");
        Self::new(
            kid,
            Box::new(EdDSA.signer_from_jwk(&pair.to_jwk_key_pair()).expect("signer")),
            pair.to_jwk_public_key(),
        )
    }

    fn new(kid: &str, signer: Box<dyn JwsSigner>, mut public: Jwk) -> Self {
        public.set_key_id(kid);
        public.set_key_use("sig");
        Self { kid: kid.to_owned(), signer, public: Value::Object(public.as_ref().clone()) }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type("JWT");
        header.set_key_id(&self.kid);
        let body = serde_json::to_vec(claims).expect("claims");
        josekit::jws::serialize_compact(&body, &header, &*self.signer).expect("sign")
    }
}

/// RFC 7523 claims: iss = sub = the client, `aud`, exp `ttl_secs` from now, a fresh jti.
fn assertion_claims(client_id: &str, aud: &str, ttl_secs: i64) -> Value {
    let now = now_ms() / 1000;
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + ttl_secs,
        "jti": uuid::Uuid::now_v7().to_string(),
    })
}

fn backend_client_metadata(jwks: Value) -> Value {
    json!({
        "client_name": "Backend job",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks,
        "grant_types": ["client_credentials"],
        "scope": "openid",
    })
}

/// A client_credentials grant authenticated by `assertion`.
async fn client_credentials(app: &TestApp, assertion: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "openid"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    let r = app.http.post(format!("{}/oidc/token", app.url)).form(&form).send().await.expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Whether `browser` has a session: `prompt=none` gets a code rather than `login_required`.
pub(crate) async fn signed_in(browser: &mut Browser, client: &Rp) -> bool {
    let (url, _, _, _) = begin(client, &[], &[("prompt", "none")]);
    let page = browser.get(url.as_str()).await;
    let back = page.location.unwrap_or_default();
    assert!(back.starts_with(REDIRECT), "prompt=none answers the client: {back}");
    back.contains("code=")
}

//! Where the OpenID Provider sends a browser without asking, and who can sign it out:
//! RP-Initiated Logout with and without an `id_token_hint`, and the open-redirect and logout
//! CSRF paths of an openly registered client (RFC 9700 §4.11.2).

use crate::oidc::{
    alice_with_password, assert_error_page, code_from, hidden, rp_http, Browser, Http, Page, Rp, REDIRECT,
};
use crate::oidc_clients::{begin, exchange, raw_rp, register_raw, set_password, sign_in_with, signed_in, urlencode};
use openidconnect::TokenResponse;
use serde_json::json;
use sichat_e2e::{storage_tests, Backend, TestApp};

storage_tests!(rp_initiated_logout, no_open_redirect_through_a_registered_client);

const BYE: &str = "http://127.0.0.1:9/bye";

/// Nothing happened to the browser but a page of the node: no redirect anywhere.
fn assert_stays(page: &Page) {
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.location.is_none(), "no redirect: {:?}", page.location);
}

/// `user` signs in to `client` in `browser` (which keeps the session); the ID token.
async fn id_token_of(app: &TestApp, client: &Rp, http: &Http, browser: &mut Browser, user: &str) -> String {
    let (url, csrf, _, pkce) = begin(client, &[], &[]);
    let (back, _) = sign_in_with(browser, app, &url, user, "Logout RP").await;
    let tokens = exchange(client, http, code_from(app, &back, &csrf), pkce).await;
    tokens.id_token().expect("an ID token").to_string()
}

async fn rp_initiated_logout(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    set_password(&bob).await;
    let http = rp_http();
    let body = json!({"redirect_uris": [REDIRECT], "post_logout_redirect_uris": [BYE], "client_name": "Logout RP"});
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    let client = raw_rp(&app, &reg).await;
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();

    // Alice and Bob sign in to the site, each in a browser of their own.
    let mut browser = Browser::new();
    let alices = id_token_of(&app, &client, &http, &mut browser, "alice").await;
    let mut bobs_browser = Browser::new();
    let bobs = id_token_of(&app, &client, &http, &mut bobs_browser, "bob").await;
    assert!(signed_in(&mut browser, &client).await, "alice's browser has a session");

    // Logout CSRF: Bob's ID token (signed by the node, for this very site) in a URL that
    // Alice's browser loads. It is not hers: the node asks, naming the site, and keeps her
    // session.
    let forged =
        format!("{}/oidc/logout?id_token_hint={bobs}&post_logout_redirect_uri={}&state=s0", app.url, urlencode(BYE));
    let ask = browser.get(&forged).await;
    assert_stays(&ask);
    assert!(
        ask.body.contains("Logout RP") && ask.body.contains("Cancel"),
        "names the site, offers Cancel: {}",
        ask.body
    );
    assert!(signed_in(&mut browser, &client).await, "asking did not end the session");

    // Cancel keeps the session and goes nowhere.
    let answer = |page: &Page, decision: &str| {
        let mut form: Vec<(&str, String)> = vec![("csrf", hidden(&page.body, "csrf")), ("decision", decision.into())];
        for k in ["id_token_hint", "client_id", "post_logout_redirect_uri", "state"] {
            if page.body.contains(&format!(r#"name="{k}""#)) {
                form.push((k, hidden(&page.body, k)));
            }
        }
        form
    };
    let cancelled = browser.post(&format!("{}/oidc/logout", app.url), &answer(&ask, "cancel")).await;
    assert_stays(&cancelled);
    assert!(cancelled.body.contains("still signed in"), "{}", cancelled.body);
    assert!(signed_in(&mut browser, &client).await, "Cancel changed nothing");

    // A forged confirmation (a CSRF token not from our page) does not sign out either.
    let forged_form = [("csrf", "forged".to_owned()), ("decision", "logout".to_owned())];
    let page = browser.post(&format!("{}/oidc/logout", app.url), &forged_form).await;
    assert_stays(&page);
    assert!(signed_in(&mut browser, &client).await, "a forged confirmation did not end the session");

    // A logout naming the site by client_id alone also asks; confirmed, it signs out but
    // sends the browser nowhere: only an ID token of that site vouches for its address.
    let by_id = format!(
        "{}/oidc/logout?client_id={}&post_logout_redirect_uri={}&state=s1",
        app.url,
        urlencode(&client_id),
        urlencode(BYE)
    );
    let ask = browser.get(&by_id).await;
    assert_stays(&ask);
    assert!(ask.body.contains("Logout RP"), "{}", ask.body);
    let done = browser.post(&format!("{}/oidc/logout", app.url), &answer(&ask, "logout")).await;
    assert_stays(&done);
    assert!(done.body.contains("signed out"), "{}", done.body);
    assert!(!signed_in(&mut browser, &client).await, "signed out");

    // Alice's own ID token: no question, back to the registered address with the state; an
    // unregistered address is refused and changes nothing.
    let alices_again = id_token_of(&app, &client, &http, &mut browser, "alice").await;
    let elsewhere = format!(
        "{}/oidc/logout?id_token_hint={alices}&post_logout_redirect_uri={}",
        app.url,
        urlencode("http://127.0.0.1:9/elsewhere")
    );
    assert_error_page(&browser.get(&elsewhere).await);
    assert!(signed_in(&mut browser, &client).await, "a refused logout changed nothing");
    let other_client = format!("{}/oidc/logout?id_token_hint={alices}&client_id=someone-else", app.url);
    assert_error_page(&browser.get(&other_client).await);
    let hinted = format!(
        "{}/oidc/logout?id_token_hint={alices_again}&post_logout_redirect_uri={}&state=s2",
        app.url,
        urlencode(BYE)
    );
    let done = browser.get(&hinted).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some(format!("{BYE}?state=s2").as_str()));
    assert!(!signed_in(&mut browser, &client).await, "signed out");

    // Bob's ID token, confirmed in Alice's browser, does send it back to the site: the hint
    // is the site's own.
    let _ = id_token_of(&app, &client, &http, &mut browser, "alice").await;
    let ask = browser.get(&forged).await;
    assert_stays(&ask);
    let done = browser.post(&format!("{}/oidc/logout", app.url), &answer(&ask, "logout")).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some(format!("{BYE}?state=s0").as_str()));
    assert!(!signed_in(&mut browser, &client).await, "signed out");
    assert!(signed_in(&mut bobs_browser, &client).await, "Bob's own session never moved");
    app.stop().await;
}

async fn no_open_redirect_through_a_registered_client(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    // Anyone may register a client, with any address.
    let evil = "https://evil.example/landing";
    let body = json!({"redirect_uris": [evil], "post_logout_redirect_uris": [evil], "client_name": "Evil"});
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    let id = urlencode(reg["client_id"].as_str().expect("client_id"));

    // A malformed authorization request for it: an error page here, not a trip to evil.
    for bad in [
        "response_type=token&scope=openid",
        "response_type=code&scope=profile",
        "response_type=code&scope=openid",
        "response_type=code&scope=openid&code_challenge=x&code_challenge_method=plain",
        "response_type=code&scope=openid&request_uri=https%3A%2F%2Fevil.example%2Fr",
    ] {
        let url = format!("{}/oidc/authorize?client_id={id}&redirect_uri={}&state=x&{bad}", app.url, urlencode(evil));
        let page = Browser::new().get(&url).await;
        assert_error_page(&page);
    }

    // A logout naming it, with no session and no ID token of it: the browser stays.
    let url = format!("{}/oidc/logout?client_id={id}&post_logout_redirect_uri={}&state=x", app.url, urlencode(evil));
    let page = Browser::new().get(&url).await;
    assert_stays(&page);
    assert!(page.body.contains("signed out"), "{}", page.body);
    // Nor with an ID token the node did not sign.
    let forged = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.";
    let url = format!("{url}&id_token_hint={forged}");
    assert_stays(&Browser::new().get(&url).await);
    app.stop().await;
}

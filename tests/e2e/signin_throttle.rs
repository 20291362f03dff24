//! The password sign-in throttle, from several client addresses (127.0.0.0/8): a stranger's
//! wrong passwords slow down only the stranger, repeated failures from one address back off,
//! and the count holds across two nodes on one PostgreSQL database.

use crate::oidc::{alice_with_password, hidden, Browser};
use sichat_e2e::{storage_tests, Backend, TestApp};
use std::net::IpAddr;

storage_tests!(a_stranger_cannot_lock_a_user_out);

const STRANGER: [u8; 4] = [127, 0, 0, 2];
const ALICE_ELSEWHERE: [u8; 4] = [127, 0, 0, 3];

/// The node's URL by address: a browser bound to a 127.0.0.x source address must reach it
/// over IPv4 (`localhost` may resolve to ::1 first).
fn by_address(app: &TestApp) -> String {
    app.url.replace("localhost", "127.0.0.1")
}

/// One password attempt on the account page from `from`; the HTTP status (303 signed in,
/// 401 wrong password, 429 throttled) and the page.
async fn attempt(base: &str, from: [u8; 4], password: &str) -> (u16, String) {
    let mut browser = Browser::from_address(IpAddr::from(from));
    let page = browser.get(&format!("{base}/account")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let form = [("csrf", hidden(&page.body, "csrf")), ("username", "alice".into()), ("password", password.into())];
    let r = browser.post(&format!("{base}/account/login"), &form).await;
    (r.status, r.body)
}

async fn a_stranger_cannot_lock_a_user_out(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let base = by_address(&app);

    // Five wrong guesses from the stranger's address are answered "wrong password".
    for i in 0..5 {
        let (status, body) = attempt(&base, STRANGER, "not the password at all").await;
        assert_eq!(status, 401, "guess {i}: {body}");
    }
    // Then that address backs off: refused before any password is checked, even the right one.
    let (status, body) = attempt(&base, STRANGER, crate::oidc::PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too many failed sign-ins from this address"), "{body}");
    assert!(body.contains("wait 1 minute"), "the first wait is a minute: {body}");
    let (status, _) = attempt(&base, STRANGER, "still guessing").await;
    assert_eq!(status, 429, "still backing off");

    // Alice, from anywhere else, signs in as usual.
    let (status, body) = attempt(&base, ALICE_ELSEWHERE, crate::oidc::PASSWORD).await;
    assert_eq!(status, 303, "the user is not locked out by a stranger: {body}");
    // And her own mistakes elsewhere are counted apart from the stranger's.
    let (status, body) = attempt(&base, ALICE_ELSEWHERE, "a typo in it").await;
    assert_eq!(status, 401, "{body}");

    if backend == Backend::Postgres {
        // Two nodes on one database (replicas behind a load balancer): twelve concurrent
        // guesses from a third address, alternating between them, get five checked at most.
        let replica = app.replica(|_| {}).await;
        let bases = [base.clone(), by_address(&replica)];
        let guesses = (0..12).map(|i| {
            let b = bases[i % 2].clone();
            async move { attempt(&b, [127, 0, 0, 4], "a guess from afar").await.0 }
        });
        let statuses = futures_util::future::join_all(guesses).await;
        let checked = statuses.iter().filter(|s| **s == 401).count();
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!((checked, refused), (5, 7), "five guesses across both nodes, then backoff: {statuses:?}");
        replica.stop().await;
    }
    app.stop().await;
}

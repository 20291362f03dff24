//! Behind a trusted reverse proxy every client arrives from the proxy's address: the
//! per-address limits key on the client the proxy names, and only a trusted proxy may
//! name one.

use reqwest::header::{COOKIE, SET_COOKIE};
use sichat_e2e::{Backend, TestApp};
use std::net::{IpAddr, SocketAddr};

fn server_addr(app: &TestApp) -> SocketAddr {
    let port = app.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// HTTP from the local address `from`, forwarding for `client` when given.
async fn get_from(from: [u8; 4], server: SocketAddr, path: &str, client: Option<&str>) -> u16 {
    let http = reqwest::Client::builder().local_address(IpAddr::from(from)).build().expect("client");
    let mut req = http.get(format!("http://{server}{path}"));
    if let Some(client) = client {
        req = req.header("x-forwarded-for", client);
    }
    req.send().await.expect("request").status().as_u16()
}

/// The rate limiter: one forwarded client is limited, another forwarded client is not;
/// from a peer that is not a trusted proxy, the header changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_keys_on_the_forwarded_client_of_a_trusted_proxy() {
    sichat_e2e::or_hung(async {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
            c.rate_limit_per_second = 1;
            c.rate_limit_burst = 3;
        })
        .await
        else {
            return;
        };
        let server = server_addr(&app);
        let path = "/.well-known/did.json";
        let proxy = [127, 0, 0, 1];
        let mut a = Vec::new();
        for _ in 0..8 {
            a.push(get_from(proxy, server, path, Some("198.51.100.1")).await);
        }
        assert!(a.contains(&429), "client A is limited: {a:?}");
        assert_eq!(get_from(proxy, server, path, Some("198.51.100.2")).await, 200, "client B is not");
        // The client's own lie on the left of the chain is skipped.
        let lie = get_from(proxy, server, path, Some("198.51.100.2, 198.51.100.3")).await;
        assert_eq!(lie, 200, "the proxy-appended address counts, not the left-most");

        // Not a trusted proxy: its header is ignored, so a new address per request helps not.
        let stranger = [127, 0, 0, 2];
        let mut s = Vec::new();
        for i in 0..8 {
            s.push(get_from(stranger, server, path, Some(&format!("203.0.113.{i}"))).await);
        }
        assert!(s.contains(&429), "an untrusted peer cannot pick its address: {s:?}");
        app.stop().await;
    })
    .await
}

/// Failed password sign-ins from one client behind the proxy do not throttle another
/// client behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_behind_a_proxy_throttle_only_their_client() {
    sichat_e2e::or_hung(async {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        })
        .await
        else {
            return;
        };
        let attempt = |client: &'static str, user: String| {
            let url = app.url.clone();
            async move {
                let http =
                    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
                let page =
                    http.get(format!("{url}/account")).header("x-forwarded-for", client).send().await.expect("GET");
                let cookie = page
                    .headers()
                    .get_all(SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find(|v| v.starts_with("sichat_csrf="))
                    .and_then(|v| v.split(';').next())
                    .expect("csrf cookie")
                    .to_owned();
                let csrf = cookie.trim_start_matches("sichat_csrf=").to_owned();
                let form = [("csrf", csrf), ("username", user), ("password", "not the password".to_owned())];
                http.post(format!("{url}/account/login"))
                    .header("x-forwarded-for", client)
                    .header(COOKIE, cookie)
                    .form(&form)
                    .send()
                    .await
                    .expect("POST")
                    .status()
                    .as_u16()
            }
        };
        // Client A guesses at many names, well past the per-address allowance (20), until it
        // is throttled. (Whether and when A is throttled is the sign-in throttle's business.)
        for i in 0..30 {
            if attempt("198.51.100.1", format!("guess{i}")).await == 429 {
                break;
            }
        }
        // Client B, behind the same proxy, is told its password is wrong, not to wait.
        assert_eq!(attempt("198.51.100.2", "bob".into()).await, 401);
        app.stop().await;
    })
    .await
}

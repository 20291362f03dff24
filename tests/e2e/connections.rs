//! Connections that never finish a request: header-read timeout, a cap per address, and
//! bodies refused by their declared size before they are sent. Real sockets, real node.

use sichat_e2e::{Backend, TestApp};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A generous bound on "at once" and "after the timeout": far above what either takes, so
/// the test does not measure speed, yet far below the minutes a held connection lasted.
const SOON: Duration = Duration::from_secs(10);

fn server_addr(app: &TestApp) -> SocketAddr {
    let port = app.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A connection from `local` (any 127.0.0.0/8 address: a different client to the node).
async fn connect_from(local: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((local, 0))).expect("bind");
    socket.connect(server).await.expect("connect")
}

/// Half a request: a request line and one header, never the blank line that ends the head.
async fn half_sent(local: [u8; 4], server: SocketAddr) -> TcpStream {
    let mut s = connect_from(local, server).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.expect("write");
    s
}

/// Whether the node closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine; keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn healthz_from(local: [u8; 4], server: SocketAddr) -> Result<u16, reqwest::Error> {
    let client = reqwest::Client::builder().local_address(IpAddr::from(local)).timeout(SOON).build().expect("client");
    Ok(client.get(format!("http://{server}/healthz")).send().await?.status().as_u16())
}

/// Connections that send half a request head are closed after the header-read timeout,
/// and keep-alive connections that go quiet too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_after_the_header_timeout() {
    sichat_e2e::or_hung(async {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.header_read_timeout_secs = 1).await else {
            return;
        };
        let server = server_addr(&app);
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(half_sent([127, 0, 0, 1], server).await);
        }
        // Meanwhile another client is served.
        assert_eq!(healthz_from([127, 0, 0, 2], server).await.expect("healthz"), 200);
        for (i, s) in held.iter_mut().enumerate() {
            assert!(closed_within(s, SOON).await, "half-sent request {i} still open");
        }
        // A keep-alive connection that had its answer and then says nothing is closed too.
        let mut idle = connect_from([127, 0, 0, 3], server).await;
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        assert!(closed_within(&mut idle, SOON).await, "an idle keep-alive connection stays open");
        app.stop().await;
    })
    .await
}

/// A request whose body stalls half-way is answered `408` with the JSON error body and its
/// connection closed, once the request timeout (and at the latest the no-progress timeout)
/// has passed, so slow bodies cannot hold connections either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_are_cut() {
    sichat_e2e::or_hung(async {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.request_timeout_secs = 1;
            c.idle_timeout_secs = 2;
        })
        .await
        else {
            return;
        };
        let server = server_addr(&app);
        let mut stalled = Vec::new();
        for path in ["/api/v1/accounts", "/didcomm"] {
            let mut s = connect_from([127, 0, 0, 1], server).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":"
            );
            s.write_all(head.as_bytes()).await.expect("write");
            stalled.push((path, s));
        }
        for (path, s) in &mut stalled {
            let (status, body) = read_response(s).await;
            assert_eq!(status, 408, "{path}: {body}");
            assert_eq!(body["error"], "request_timeout", "{path}: {body}");
            assert!(closed_within(s, SOON).await, "{path}: the stalled connection stays open");
        }
        assert_eq!(healthz_from([127, 0, 0, 1], server).await.expect("healthz"), 200);
        app.stop().await;
    })
    .await
}

/// One address holds at most `max_connections_per_address` connections; the rest are
/// closed at once, other addresses are served, and closing some gives the places back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    sichat_e2e::or_hung(async {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.max_connections_per_address = 10;
            c.header_read_timeout_secs = 120;
            c.idle_timeout_secs = 180;
        })
        .await
        else {
            return;
        };
        let server = server_addr(&app);
        let mut conns = Vec::new();
        for _ in 0..40 {
            conns.push(half_sent([127, 0, 0, 1], server).await);
        }
        let mut open = Vec::new();
        let mut closed = 0;
        // The refused ones are closed as soon as they are accepted; the others wait for a
        // head that never comes (header timeout: two minutes here).
        for mut s in conns {
            if closed_within(&mut s, Duration::from_millis(1500)).await {
                closed += 1;
            } else {
                open.push(s);
            }
        }
        assert_eq!((open.len(), closed), (10, 30), "ten held, thirty refused");
        assert_eq!(healthz_from([127, 0, 0, 2], server).await.expect("another address is served"), 200);
        assert!(healthz_from([127, 0, 0, 1], server).await.is_err(), "the capped address gets nothing more");
        drop(open);
        let mut served = false;
        for _ in 0..50 {
            if healthz_from([127, 0, 0, 1], server).await.is_ok_and(|s| s == 200) {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served, "closing its connections gives the address its places back");
        app.stop().await;
    })
    .await
}

/// Send a request head declaring a body of `length` bytes, and read the answer without
/// ever sending the body.
async fn declare(server: SocketAddr, path: &str, length: usize) -> (u16, serde_json::Value) {
    let mut s = connect_from([127, 0, 0, 1], server).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    read_response(&mut s).await
}

/// The status and JSON body of one response (the node closes after it, or says how long it is).
async fn read_response(s: &mut TcpStream) -> (u16, serde_json::Value) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok());
                if n == 0 || len.is_some_and(|len| body.len() >= len) {
                    return text;
                }
            } else if n == 0 {
                return text;
            }
        }
    };
    let text = tokio::time::timeout(SOON, read).await.expect("an answer before the body was sent");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or_else(|_| serde_json::Value::String(body.to_owned()));
    (status, json)
}

/// A declared `Content-Length` over the limit is refused before the body is sent, with
/// the JSON error body; so is a body that only turns out too large while it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_at_once_with_json() {
    sichat_e2e::or_hung(async {
        let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
        let server = server_addr(&app);
        for path in ["/api/v1/accounts", "/didcomm", "/api/v1/messages"] {
            let (status, body) = declare(server, path, 10 * 1024 * 1024).await;
            assert_eq!(status, 413, "{path}: {body}");
            assert_eq!(body["error"], "body_too_large", "{path}: {body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
        }
        // Under the limit, the node takes the body as usual.
        let mut s = connect_from([127, 0, 0, 1], server).await;
        let request = "POST /api/v1/accounts HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                       Content-Length: 2\r\n\r\n{}";
        s.write_all(request.as_bytes()).await.expect("write");
        let (status, body) = read_response(&mut s).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("invalid_json")), "{body}");

        // A chunked body declares no length: it is refused when it passes the limit, and the
        // refusal is the JSON error body too, not axum's plain text.
        let mut s = connect_from([127, 0, 0, 1], server).await;
        // Over the 256 KiB (and some) a delivery may have, small enough for socket buffers.
        let chunk = vec![b'x'; 320 * 1024];
        let head = "POST /didcomm HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/didcomm-encrypted+json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.expect("write");
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n0\r\n\r\n").await;
        let (status, body) = read_response(&mut s).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"], "body_too_large", "{body}");
        app.stop().await;
    })
    .await
}

//! Accepting and serving HTTP/1.1 connections, with the limits a public server needs
//! before any request exists: how long a request head may take, how long a connection may
//! sit without moving a byte, and how many connections one address may hold. Without them
//! a client that opens connections and never finishes a request ("slowloris") holds a
//! file descriptor each until the node has none left.
//!
//! Connections from a trusted reverse proxy are not capped per address: the proxy carries
//! everyone's requests.

use crate::proxy::TrustedProxies;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

/// The limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From the moment a connection is ready for a request (just opened, or done with the
    /// last response) until that request's head has arrived.
    pub header_read_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed (a body sent a
    /// byte a minute, a response never read).
    pub idle_timeout: Duration,
    /// Open connections per client address; more are closed at once.
    pub per_address: usize,
}

impl ConnLimits {
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            per_address: config.max_connections_per_address,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, let requests
/// in flight finish and close idle connections, and return once every connection is done.
/// Handlers see the TCP peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    proxies: TrustedProxies,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    let counts = PerAddress::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        let ip = peer.ip().to_canonical();
        let slot = if proxies.is_trusted(ip) {
            None
        } else {
            match counts.take(ip, limits.per_address) {
                Some(slot) => Some(slot),
                None => {
                    ::metrics::counter!("sichat_connections_refused_total").increment(1);
                    tracing::debug!(%ip, "connection refused: too many open from this address");
                    continue;
                }
            }
        };
        // Without TCP_NODELAY, a small write that follows another before the peer has
        // acknowledged it waits for that acknowledgement: up to 40 ms of delayed ACK on
        // Linux. The pickup WebSocket does exactly that (a `status`, then a `delivery`).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let service = app.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(Body::new)
        });
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            serve_one(tcp, TowerToHyperService::new(service), limits, signal_tx).await;
            drop(slot);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

async fn serve_one<S>(tcp: TcpStream, service: S, limits: ConnLimits, signal: watch::Sender<()>)
where
    S: hyper::service::Service<axum::http::Request<Incoming>, Response = axum::response::Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked { inner: tcp, started, last: last.clone() });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let mut stopping = pin!(signal.closed());
    let mut asked_to_stop = false;
    let mut check = Box::pin(tokio::time::sleep(limits.idle_timeout));
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = &mut stopping, if !asked_to_stop => {
                asked_to_stop = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut check => {
                let quiet_since = started + Duration::from_millis(last.load(Ordering::Relaxed));
                if quiet_since.elapsed() >= limits.idle_timeout {
                    ::metrics::counter!("sichat_connections_idle_closed_total").increment(1);
                    tracing::debug!("closing a connection idle for {} s", limits.idle_timeout.as_secs());
                    break;
                }
                check.as_mut().reset(quiet_since + limits.idle_timeout);
            }
        }
    }
}

/// An accept error: a connection that failed before we got it is nothing; anything else
/// (no file descriptors left) is logged and waited out, as axum does.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Open connections per address.
#[derive(Clone, Default)]
struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerAddress {
    fn take(&self, ip: IpAddr, cap: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot { counts: self.clone(), ip })
    }
}

/// One open connection of an address; dropping it gives the place back.
struct Slot {
    counts: PerAddress,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that records when a byte last moved, for the idle timeout.
struct Tracked {
    inner: TcpStream,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_places_back() {
        let counts = PerAddress::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| counts.take(a, 3).expect("under the cap")).collect();
        assert!(counts.take(a, 3).is_none(), "a fourth is refused");
        let other = counts.take(b, 3);
        assert!(other.is_some(), "another address is not affected");
        drop(held);
        assert!(counts.take(a, 3).is_some(), "closed connections give their places back");
        drop(other);
        assert!(!counts.0.lock().unwrap().contains_key(&b), "an address with no connection is forgotten");
    }
}

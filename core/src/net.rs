//! Fetching what a credential points at (DID documents, status lists, schemas, JSON-LD
//! contexts) without letting a credential probe the verifier's network.
//!
//! - HTTPS only; plain HTTP and loopback or private addresses only when the policy allows
//!   the local network (development and tests).
//! - Every name is resolved by [`SafeDns`], which drops private addresses, so a host that
//!   re-resolves to one between check and connect (DNS rebinding) still cannot be reached.
//! - At most [`MAX_REDIRECTS`] redirects, each target checked as the first URL was (an
//!   account that moved to another node redirects its old status-list and schema URLs),
//!   a timeout, and a size limit.
//! - A cache that follows `Cache-Control` (`max-age`, `no-cache`, `no-store`) and
//!   revalidates with `ETag`.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use url::{Host, Url};

/// What a refusal of a loopback or private address says (for callers that add a hint).
pub const LOCAL_REFUSED: &str = "is a loopback or private address: refused";

/// Redirects followed for one fetch.
pub const MAX_REDIRECTS: usize = 3;

/// Largest document fetched.
pub const MAX_BYTES: usize = 256 * 1024;
/// Entries kept in the HTTP cache before the oldest are dropped.
const CACHE_ENTRIES: usize = 1024;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum FetchError {
    #[error("{0} is not an https URL")]
    NotHttps(String),
    #[error("{host} {} (a DID or link cannot make this verifier probe its own network)", LOCAL_REFUSED)]
    PrivateAddress { host: String },
    /// No answer: the connection, TLS or transfer failed. The message names only the URL:
    /// how it failed (refused, timed out, reset, no such name) would turn every endpoint
    /// that fetches a URL given by a stranger into a port scanner. The detail is logged,
    /// and is this error's `source()`, so the wallet can show its own user the full chain.
    #[error("could not fetch {url}")]
    Unreachable {
        url: String,
        #[source]
        detail: Detail,
    },
    /// The server answered with a status other than 2xx (and this reason, if its body gave
    /// one as `error_description` or `message`).
    #[error("{url}: HTTP {status}{}", why.as_deref().map(|w| format!(": {w}")).unwrap_or_default())]
    Status { url: String, status: u16, why: Option<String> },
    #[error("{url}: {why}")]
    Failed { url: String, why: String },
    #[error("{url} is larger than {MAX_BYTES} bytes")]
    TooLarge { url: String },
}

/// How a fetch failed on the network (the error chain of the HTTP client).
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{0}")]
pub struct Detail(pub String);

impl FetchError {
    /// The server could not be reached, or answered that it cannot serve now (5xx, 429):
    /// where a copy elsewhere may stand in.
    pub fn no_answer(&self) -> bool {
        match self {
            FetchError::Unreachable { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    fn unreachable(url: &str, e: &dyn std::error::Error) -> Self {
        let detail = error_chain(e);
        tracing::info!(url, detail, "fetch failed");
        FetchError::Unreachable { url: url.to_owned(), detail: Detail(detail) }
    }
}

/// Whether loopback and private networks may be reached (and plain HTTP used there).
#[derive(Debug, Clone, Copy, Default)]
pub struct NetPolicy {
    pub allow_local: bool,
}

/// A global-unicast address: not loopback, private, link-local, shared, multicast,
/// documentation or unspecified. An IPv6 address that carries an IPv4 address (mapped,
/// compatible, NAT64, 6to4, Teredo) is judged by that IPv4 address, since that is where
/// a connection to it ends up.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() {
                return false;
            }
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_multicast()
                // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): the network's own translator.
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                // ::/96 and ::ffff:0:0/96 not caught above, 100::/64 (discard-only).
                || s[..4] == [0, 0, 0, 0]
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // 2001:db8::/32 and 3fff::/20 documentation.
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x3fff && s[1] < 0x1000))
        }
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that reach an IPv4 host:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` (deprecated), NAT64 `64:ff9b::a.b.c.d` (RFC 6052), 6to4 `2002:AABB:CCDD::/48`
/// (RFC 3056) and Teredo `2001:0::/32`, whose client address is stored inverted (RFC 4380).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(last),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        [0x2002, ..] => Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        [0x2001, 0, ..] => Some(std::net::Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15])),
        _ => None,
    }
}

/// A DNS resolver that refuses names resolving only to non-public addresses.
struct SafeDns {
    policy: NetPolicy,
}

impl Resolve for SafeDns {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.policy.allow_local;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = found.into_iter().filter(|a| allow_local || is_public(a.ip())).collect();
            if usable.is_empty() {
                let e = FetchError::PrivateAddress { host };
                return Err(Box::new(std::io::Error::other(e.to_string())) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
struct Cached {
    body: Arc<Vec<u8>>,
    etag: Option<String>,
    fresh_until: Instant,
}

/// The fetcher shared by the verifier's resolver, status and schema checks.
pub struct Fetcher {
    http: reqwest::Client,
    policy: NetPolicy,
    cache: Mutex<HashMap<String, Cached>>,
    /// Never connect: see [`Fetcher::offline`].
    offline: bool,
}

impl Fetcher {
    pub fn new(policy: NetPolicy) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match check_url(policy, attempt.url().as_str()) {
                    Ok(_) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
            .dns_resolver(Arc::new(SafeDns { policy }))
            .user_agent(concat!("sichat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Failed { url: String::new(), why: e.to_string() })?;
        Ok(Self { http, policy, cache: Mutex::new(HashMap::new()), offline: false })
    }

    /// A fetcher that never touches the network: every fetch is checked as usual, then
    /// fails at once. For work on the documents given alone (the fuzz harness, whose
    /// verifier resolves `did:key` and `did:jwk` and fetches nothing).
    pub fn offline() -> Result<Self, FetchError> {
        Ok(Self { offline: true, ..Self::new(NetPolicy::default())? })
    }

    fn refuse_offline(&self, url: &str) -> Result<(), FetchError> {
        match self.offline {
            true => Err(FetchError::Failed { url: url.to_owned(), why: "not fetched: this fetcher is offline".into() }),
            false => Ok(()),
        }
    }

    pub fn policy(&self) -> NetPolicy {
        self.policy
    }

    /// Refuse a URL before any connection: scheme, and IP literals or `localhost`.
    pub fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        check_url(self.policy, url)
    }

    /// GET `url`, from the cache when it is fresh, revalidating with `ETag` otherwise.
    pub async fn get(&self, url: &str, accept: &str) -> Result<Arc<Vec<u8>>, FetchError> {
        self.get_limited(url, accept, MAX_BYTES).await
    }

    /// [`Fetcher::get`] with another size limit (a DID log may be larger than a document).
    pub async fn get_limited(&self, url: &str, accept: &str, max: usize) -> Result<Arc<Vec<u8>>, FetchError> {
        let checked = self.check_url(url)?;
        let cached = self.cache.lock().ok().and_then(|c| c.get(url).cloned());
        if let Some(c) = &cached {
            if Instant::now() < c.fresh_until {
                return Ok(c.body.clone());
            }
        }
        self.refuse_offline(url)?;
        let mut req = self.http.get(checked).header("accept", accept);
        if let Some(tag) = cached.as_ref().and_then(|c| c.etag.as_deref()) {
            req = req.header("if-none-match", tag);
        }
        let mut resp = req.send().await.map_err(|e| FetchError::unreachable(url, &e))?;
        let lifetime = freshness(resp.headers());
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(c) = cached {
                self.remember(url, Cached { fresh_until: Instant::now() + lifetime.unwrap_or_default(), ..c.clone() });
                return Ok(c.body);
            }
        }
        if !resp.status().is_success() {
            let status = resp.status();
            // Say why, when the server does (an OAuth or API error body).
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let why = ["error_description", "message"].iter().find_map(|k| body.get(k).and_then(|v| v.as_str()));
            let why = why.map(|w| w.chars().take(300).collect::<String>());
            return Err(FetchError::Status { url: url.to_owned(), status: status.as_u16(), why });
        }
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge { url: url.into() });
        }
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::unreachable(url, &e))? {
            body.extend_from_slice(&chunk);
            if body.len() > max {
                return Err(FetchError::TooLarge { url: url.into() });
            }
        }
        let body = Arc::new(body);
        if let Some(lifetime) = lifetime {
            self.remember(url, Cached { body: body.clone(), etag, fresh_until: Instant::now() + lifetime });
        }
        Ok(body)
    }

    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        let body = self.get(url, "application/json").await?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Failed { url: url.into(), why: format!("not JSON: {e}") })
    }

    /// POST `body` to `url` under the same address policy, and return the status with the
    /// first [`MAX_BYTES`] of the answer. For node-to-node delivery: the URL comes from a
    /// DID document, so it is checked like every fetched URL.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let checked = self.check_url(url)?;
        self.refuse_offline(url)?;
        let mut req = self.http.post(checked).body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let mut resp = req.send().await.map_err(|e| FetchError::unreachable(url, &e))?;
        let status = resp.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::unreachable(url, &e))? {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_BYTES {
                return Err(FetchError::TooLarge { url: url.into() });
            }
        }
        Ok((status, answer))
    }

    fn remember(&self, url: &str, entry: Cached) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_ENTRIES {
                let now = Instant::now();
                c.retain(|_, v| v.fresh_until > now || v.etag.is_some());
                if c.len() >= CACHE_ENTRIES {
                    c.clear();
                }
            }
            c.insert(url.to_owned(), entry);
        }
    }
}

/// How long a response may be reused without asking: `None` means do not store it
/// (`no-store`); zero means store it but revalidate every time (`no-cache`, or no
/// `max-age` given).
fn freshness(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let cc = headers.get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let directives: Vec<&str> = cc.split(',').map(str::trim).collect();
    if directives.contains(&"no-store") {
        return None;
    }
    if directives.contains(&"no-cache") {
        return Some(Duration::ZERO);
    }
    let max_age = directives.iter().find_map(|d| d.strip_prefix("max-age=")).and_then(|s| s.parse::<u64>().ok());
    Some(Duration::from_secs(max_age.unwrap_or(0).min(24 * 3600)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        source = s.source();
    }
    out
}

/// [`Fetcher::check_url`] under `policy`: also every redirect's target.
fn check_url(policy: NetPolicy, url: &str) -> Result<Url, FetchError> {
    let u = Url::parse(url).map_err(|_| FetchError::Failed { url: url.into(), why: "not a URL".into() })?;
    let host = u.host().ok_or_else(|| FetchError::Failed { url: url.into(), why: "no host".into() })?;
    let local = match &host {
        Host::Ipv4(ip) => !is_public(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => !is_public(IpAddr::V6(*ip)),
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost"),
    };
    if local && !policy.allow_local {
        return Err(FetchError::PrivateAddress { host: host.to_string() });
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if local && policy.allow_local => Ok(u),
        _ => Err(FetchError::NotHttps(url.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap_or_else(|_| panic!("{s} is not an address")))
    }

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "0.0.0.0",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
        ] {
            assert!(!public(private), "{private}");
        }
        for ok in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e", "2001:4860::8888"] {
            assert!(public(ok), "{ok}");
        }
    }

    /// Every IPv6 form of an IPv4 address is judged by the IPv4 address it carries.
    #[test]
    fn ipv6_forms_of_ipv4_addresses() {
        let cases = [
            // IPv4-mapped ::ffff:0:0/96
            ("::ffff:10.0.0.1", "::ffff:93.184.216.34"),
            ("::ffff:127.0.0.1", "::ffff:1.1.1.1"),
            // IPv4-translated ::ffff:0:0:0/96
            ("::ffff:0:127.0.0.1", "::ffff:0:1.1.1.1"),
            // IPv4-compatible ::/96 (deprecated)
            ("::127.0.0.1", "::93.184.216.34"),
            ("::169.254.169.254", "::1.1.1.1"),
            ("::0.0.0.2", "::8.8.8.8"),
            // NAT64 64:ff9b::/96 (RFC 6052)
            ("64:ff9b::127.0.0.1", "64:ff9b::93.184.216.34"),
            ("64:ff9b::a9fe:a9fe", "64:ff9b::101:101"),
            ("64:ff9b::192.168.0.1", "64:ff9b::8.8.4.4"),
            // 6to4 2002::/16 (RFC 3056): the IPv4 address is bits 16..48
            ("2002:7f00:1::1", "2002:5db8:d822::1"),
            ("2002:a00:1::", "2002:101:101::"),
            ("2002:c0a8:101::1", "2002:808:808::1"),
            // Teredo 2001::/32 (RFC 4380): the client's address is stored inverted
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:0:4136:e378:8000:63bf:a247:26dd"),
        ];
        for (private, public_one) in cases {
            assert!(!public(private), "{private} carries a private IPv4 address");
            assert!(public(public_one), "{public_one} carries a public IPv4 address");
        }
    }

    /// Ranges that are never globally reachable, whatever follows the prefix.
    #[test]
    fn old_and_local_ipv6_ranges() {
        for private in [
            // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
            "64:ff9b:1::1",
            "64:ff9b:1:ffff::5db8:d822",
            // site-local fec0::/10 (deprecated, RFC 3879)
            "fec0::1",
            "feff:ffff::1",
            // what is left of ::/96 and ::ffff:0:0/96 outside the IPv4 forms
            "::1:0:0:1",
        ] {
            assert!(!public(private), "{private}");
        }
        // Just outside the ranges.
        for ok in ["64:ff9b:2::1", "2003::1", "2400:cb00::1"] {
            assert!(public(ok), "{ok}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let strict = Fetcher::new(NetPolicy::default()).unwrap();
        assert!(matches!(strict.check_url("http://example.org/x"), Err(FetchError::NotHttps(_))));
        assert!(matches!(strict.check_url("https://127.0.0.1/x"), Err(FetchError::PrivateAddress { .. })));
        assert!(matches!(strict.check_url("https://[::1]/x"), Err(FetchError::PrivateAddress { .. })));
        assert!(matches!(strict.check_url("https://localhost:8080/x"), Err(FetchError::PrivateAddress { .. })));
        assert!(strict.check_url("https://example.org/x").is_ok());
        let dev = Fetcher::new(NetPolicy { allow_local: true }).unwrap();
        assert!(dev.check_url("http://localhost:8080/x").is_ok());
        assert!(matches!(dev.check_url("http://example.org/x"), Err(FetchError::NotHttps(_))));
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        // What the connection resolves: a name with only loopback addresses gives none.
        let name = || "localhost".parse::<Name>().unwrap();
        let refused = SafeDns { policy: NetPolicy::default() }.resolve(name()).await;
        assert!(refused.err().is_some_and(|e| e.to_string().contains("loopback or private")));
        let allowed = SafeDns { policy: NetPolicy { allow_local: true } }.resolve(name()).await.unwrap();
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }

    /// Redirects are followed a few times, each target checked like the first URL: to plain
    /// HTTP elsewhere, or round in circles, the fetch fails.
    #[tokio::test]
    async fn redirects_are_checked_like_the_first_url() {
        use axum::response::Redirect;
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/moved", get(|| async { Redirect::permanent("/here") }))
            .route("/here", get(|| async { "the list" }))
            .route("/away", get(|| async { Redirect::permanent("http://example.org/list") }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let f = Fetcher::new(NetPolicy { allow_local: true }).unwrap();
        let body = f.get(&format!("{base}/moved"), "text/plain").await.unwrap();
        assert_eq!(body.as_slice(), b"the list");
        for path in ["/away", "/loop"] {
            let e = f.get(&format!("{base}{path}"), "text/plain").await.unwrap_err();
            assert!(matches!(e, FetchError::Unreachable { .. } | FetchError::Failed { .. }), "{path}: {e:?}");
        }
    }

    #[test]
    fn cache_control() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(freshness(&h), Some(Duration::ZERO));
        h.insert("cache-control", "public, max-age=60".parse().unwrap());
        assert_eq!(freshness(&h), Some(Duration::from_secs(60)));
        h.insert("cache-control", "no-cache".parse().unwrap());
        assert_eq!(freshness(&h), Some(Duration::ZERO));
        h.insert("cache-control", "no-store".parse().unwrap());
        assert_eq!(freshness(&h), None);
    }
}

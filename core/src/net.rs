//! Fetching what a credential points at (DID documents, status lists, schemas, JSON-LD
//! contexts) without letting a credential probe the verifier's network.
//!
//! - HTTPS only; plain HTTP and loopback or private addresses only when the policy allows
//!   the local network (development and tests).
//! - Every name is resolved by [`SafeDns`], which drops private addresses, so a host that
//!   re-resolves to one between check and connect (DNS rebinding) still cannot be reached.
//! - No redirects, a timeout, and a size limit.
//! - A cache that follows `Cache-Control` (`max-age`, `no-cache`, `no-store`) and
//!   revalidates with `ETag`.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use url::{Host, Url};

/// Largest document fetched.
pub const MAX_BYTES: usize = 256 * 1024;
/// Entries kept in the HTTP cache before the oldest are dropped.
const CACHE_ENTRIES: usize = 1024;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum FetchError {
    #[error("{0} is not an https URL")]
    NotHttps(String),
    #[error("{host} is a loopback or private address: refused (a DID or link cannot make this verifier probe its own network)")]
    PrivateAddress { host: String },
    #[error("{url}: {why}")]
    Failed { url: String, why: String },
    #[error("{url} is larger than {MAX_BYTES} bytes")]
    TooLarge { url: String },
}

/// Whether loopback and private networks may be reached (and plain HTTP used there).
#[derive(Debug, Clone, Copy, Default)]
pub struct NetPolicy {
    pub allow_local: bool,
}

/// A global-unicast address: not loopback, private, link-local, shared, multicast,
/// documentation or unspecified.
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
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
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
}

impl Fetcher {
    pub fn new(policy: NetPolicy) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(SafeDns { policy }))
            .user_agent(concat!("sichat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Failed { url: String::new(), why: e.to_string() })?;
        Ok(Self { http, policy, cache: Mutex::new(HashMap::new()) })
    }

    pub fn policy(&self) -> NetPolicy {
        self.policy
    }

    /// Refuse a URL before any connection: scheme, and IP literals or `localhost`.
    pub fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        let u = Url::parse(url).map_err(|_| FetchError::Failed { url: url.into(), why: "not a URL".into() })?;
        let host = u.host().ok_or_else(|| FetchError::Failed { url: url.into(), why: "no host".into() })?;
        let local = match &host {
            Host::Ipv4(ip) => !is_public(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => !is_public(IpAddr::V6(*ip)),
            Host::Domain(d) => d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost"),
        };
        if local && !self.policy.allow_local {
            return Err(FetchError::PrivateAddress { host: host.to_string() });
        }
        match u.scheme() {
            "https" => Ok(u),
            "http" if local && self.policy.allow_local => Ok(u),
            _ => Err(FetchError::NotHttps(url.into())),
        }
    }

    /// GET `url`, from the cache when it is fresh, revalidating with `ETag` otherwise.
    pub async fn get(&self, url: &str, accept: &str) -> Result<Arc<Vec<u8>>, FetchError> {
        let checked = self.check_url(url)?;
        let cached = self.cache.lock().ok().and_then(|c| c.get(url).cloned());
        if let Some(c) = &cached {
            if Instant::now() < c.fresh_until {
                return Ok(c.body.clone());
            }
        }
        let fail = |why: String| FetchError::Failed { url: url.to_owned(), why };
        let mut req = self.http.get(checked).header("accept", accept);
        if let Some(tag) = cached.as_ref().and_then(|c| c.etag.as_deref()) {
            req = req.header("if-none-match", tag);
        }
        let mut resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
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
            return Err(fail(match why {
                Some(w) => format!("HTTP {status}: {}", w.chars().take(300).collect::<String>()),
                None => format!("HTTP {status}"),
            }));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
            return Err(FetchError::TooLarge { url: url.into() });
        }
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
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
        let fail = |why: String| FetchError::Failed { url: url.to_owned(), why };
        let mut req = self.http.post(checked).body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let mut resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
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

//! Which address a request came from, behind reverse proxies we trust.
//!
//! Every per-address limit (the rate limiters, the connection cap, the sign-in and
//! approval throttles) keys on the client's address. Behind a reverse proxy the TCP peer is
//! the proxy for everyone, so the proxy's header names the client instead: but only a
//! peer listed in `trusted_proxies` may say so, or any client could pick its own address.
//! The header is read from the right (each proxy appends the address it saw), skipping
//! trusted proxies; the first address that is not one is the client.
//!
//! The host the client asked for comes the same way: a trusted proxy's `X-Forwarded-Host`
//! (or RFC 7239 `host=`), else the request's own `Host`. It decides which of the node's
//! names (its URL, or one it left) a request was for.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sichat_core::http::ClientAddr;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// An address or a network (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or network (like 10.0.0.0/8 or 2001:db8::/32)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The header a trusted proxy writes the client's address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, Caddy, Traefik, Envoy, most load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`.
    Forwarded,
}

/// The reverse proxies whose forwarding header is believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Arc<[Cidr]>,
    header: ProxyHeader,
}

impl TrustedProxies {
    pub fn new(nets: &[Cidr], header: ProxyHeader) -> Self {
        Self { nets: nets.into(), header }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return client;
        }
        let hops = match self.header {
            ProxyHeader::XForwardedFor => x_forwarded_for(headers),
            ProxyHeader::Forwarded => forwarded_for(headers),
        };
        for hop in hops.iter().rev() {
            // An entry that names no address ("unknown", an obfuscated name) ends the
            // walk: the nearest proxy that could say who it talked to is the client.
            let Some(ip) = hop else { break };
            client = ip.to_canonical();
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }
}

/// Every `X-Forwarded-For` entry, left to right, over all such headers.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter(|s| !s.trim().is_empty())
        .map(parse_node)
        .collect()
}

impl TrustedProxies {
    /// The host the client asked for: a trusted peer's forwarding header (the value its
    /// nearest proxy wrote, the rightmost), else `Host`, else the HTTP/2 authority.
    pub fn host(&self, peer: Option<IpAddr>, req: &Request) -> Option<String> {
        let headers = req.headers();
        let forwarded = peer.filter(|p| self.is_trusted(p.to_canonical())).and_then(|_| match self.header {
            ProxyHeader::XForwardedFor => last_value(headers, "x-forwarded-host", None),
            ProxyHeader::Forwarded => last_value(headers, "forwarded", Some("host")),
        });
        forwarded
            .or_else(|| headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
    }
}

/// The last comma-separated value of header `name` (or of its `param=` pairs), if any.
fn last_value(headers: &HeaderMap, name: &str, param: Option<&str>) -> Option<String> {
    let mut last = None;
    for value in headers.get_all(name) {
        for element in value.to_str().unwrap_or("").split(',') {
            let found = match param {
                None => Some(element.trim()),
                Some(param) => element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case(param).then(|| v.trim().trim_matches('"'))
                }),
            };
            if let Some(v) = found.filter(|v| !v.is_empty()) {
                last = Some(v.to_owned());
            }
        }
    }
    last
}

/// The host a request was for, as [`TrustedProxies::host`] found it.
#[derive(Debug, Clone)]
pub struct RequestHost(pub String);

/// Every `for=` of RFC 7239 `Forwarded` headers, left to right.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        for element in value.to_str().unwrap_or("").split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
            });
            if let Some(node) = node {
                hops.push(parse_node(node));
            }
        }
    }
    hops
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.split_once(']')).and_then(|(ip, _)| ip.parse().ok())
}

/// Middleware: record the request's [`ClientAddr`] and [`RequestHost`] for every handler
/// and limit after it.
pub async fn record_client(State(proxies): State<TrustedProxies>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = proxies.client(peer, req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    if let Some(host) = proxies.host(peer, &req) {
        req.extensions_mut().insert(RequestHost(host));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn request(headers: &[(&'static str, &str)]) -> Request {
        let mut req = Request::new(axum::body::Body::empty());
        for (k, v) in headers {
            req.headers_mut().append(*k, HeaderValue::from_str(v).unwrap());
        }
        req
    }

    #[test]
    fn the_host_comes_from_a_trusted_proxy_only() {
        let xff = TrustedProxies::new(&["10.0.0.0/8".parse().unwrap()], ProxyHeader::XForwardedFor);
        let req = request(&[("host", "inner:8080"), ("x-forwarded-host", "evil.example, old.example")]);
        assert_eq!(xff.host(Some(ip("10.0.0.2")), &req).as_deref(), Some("old.example"));
        assert_eq!(xff.host(Some(ip("198.51.100.4")), &req).as_deref(), Some("inner:8080"), "not a proxy");
        assert_eq!(xff.host(None, &req).as_deref(), Some("inner:8080"));
        let rfc = TrustedProxies::new(&["10.0.0.0/8".parse().unwrap()], ProxyHeader::Forwarded);
        let req = request(&[("host", "inner"), ("forwarded", "for=1.2.3.4;host=\"old.example:8443\";proto=https")]);
        assert_eq!(rfc.host(Some(ip("10.1.1.1")), &req).as_deref(), Some("old.example:8443"));
        let req = request(&[("host", "inner"), ("forwarded", "for=1.2.3.4")]);
        assert_eq!(rfc.host(Some(ip("10.1.1.1")), &req).as_deref(), Some("inner"), "no host= in it");
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")), "an IPv4-mapped peer is its IPv4 address");
        let n: Cidr = "2001:db8::/33".parse().unwrap();
        assert!(n.contains(ip("2001:db8:7fff::1")));
        assert!(!n.contains(ip("2001:db8:8000::1")));
        assert!(!n.contains(ip("10.1.0.1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "example.org", "10.0.0.0/", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = TrustedProxies::new(&["10.0.0.0/8".parse().unwrap()], ProxyHeader::XForwardedFor);
        // The client put a lie first; its own address was appended by the proxies.
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.4", "10.0.0.3"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.4"));
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(p.client(ip("203.0.113.5"), &h), ip("203.0.113.5"));
        // Only proxies in the chain, or no header: the farthest proxy, or the peer.
        assert_eq!(p.client(ip("10.0.0.2"), &headers("x-forwarded-for", &["10.0.0.9"])), ip("10.0.0.9"));
        assert_eq!(p.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        // Garbage stops the walk at the proxy that passed it on.
        let h = headers("x-forwarded-for", &["198.51.100.4, unknown"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        // Ports and brackets are allowed.
        let h = headers("x-forwarded-for", &["[2001:db8::5]:443"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("2001:db8::5"));
        // The other header is not read.
        let h = headers("forwarded", &["for=198.51.100.4"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_for_is_read_like_x_forwarded_for() {
        let p = TrustedProxies::new(&["10.0.0.0/8".parse().unwrap()], ProxyHeader::Forwarded);
        let h = headers(
            "forwarded",
            &["for=6.6.6.6, For=\"[2001:db8:cafe::17]:4711\";proto=https", "for=10.0.0.3;by=10.0.0.2"],
        );
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("2001:db8:cafe::17"));
        let h = headers("x-forwarded-for", &["198.51.100.4"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"), "X-Forwarded-For is not read");
    }

    #[test]
    fn no_trusted_proxies_means_the_peer() {
        let p = TrustedProxies::new(&[], ProxyHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["198.51.100.4"]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &h), ip("127.0.0.1"));
    }
}

//! Redirect URIs: which a client may register (https, loopback http, a native app's
//! private-use scheme) and which a request may name (exactly one registered, or a
//! loopback IP one on any port, RFC 8252 §7.3).

use crate::OidcError;
use url::{Host, Url};

/// A redirect URI we accept: absolute, no fragment, no wildcard; `https`, or `http` on
/// loopback; and for native apps (RFC 8252 §7.1) a private-use scheme, which must be a
/// reverse domain name (`com.example.app:/callback`).
pub fn check_redirect_uri(uri: &str, native: bool) -> Result<(), OidcError> {
    let bad = |why: &str| OidcError::bad("invalid_redirect_uri", format!("{uri}: {why}"));
    let u = Url::parse(uri).map_err(|_| bad("not an absolute URL"))?;
    if u.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    // Redirect URIs match exactly: a pattern would never match, and a client that registers
    // one must learn that now, not at its first sign-in.
    if uri.contains('*') || u.as_str().contains('*') || u.as_str().contains("%2A") {
        return Err(bad("wildcards are not supported: register each exact URI"));
    }
    match u.scheme() {
        "https" | "http" if u.host().is_none() => Err(bad("has no host")),
        "https" => Ok(()),
        "http" if is_loopback(&u) => Ok(()),
        "http" => Err(bad("must be https (http only on loopback)")),
        scheme if native && is_private_use_scheme(scheme) => Ok(()),
        _ if native => Err(bad(
            "a native app's own scheme must be a reverse domain name it controls, like com.example.app (RFC 8252 §7.1)",
        )),
        _ => Err(bad("must be https (http only on loopback; private-use schemes for application_type native)")),
    }
}

/// A private-use URI scheme as RFC 8252 §7.1 asks: a reverse domain name, never a scheme
/// browsers give a meaning of their own.
fn is_private_use_scheme(scheme: &str) -> bool {
    const RESERVED: &[&str] = &["javascript", "data", "file", "blob", "about", "vbscript", "ws", "wss", "ftp"];
    scheme.contains('.')
        && !scheme.starts_with('.')
        && !scheme.ends_with('.')
        && !scheme.split('.').any(str::is_empty)
        && !RESERVED.contains(&scheme)
}

pub(super) fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Whether a redirect URI `asked` in a request is the registered `registered`: the same
/// string, or, for a loopback IP redirect (`http://127.0.0.1/…`, `http://[::1]/…`), the same
/// but for the port, which RFC 8252 §7.3 says must be free (the app listens where it can).
pub fn redirect_matches(registered: &str, asked: &str) -> bool {
    if registered == asked {
        return true;
    }
    let (Ok(r), Ok(a)) = (Url::parse(registered), Url::parse(asked)) else { return false };
    let loopback_ip = match r.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    loopback_ip
        && r.scheme() == "http"
        && a.scheme() == "http"
        && r.host() == a.host()
        && r.path() == a.path()
        && r.query() == a.query()
        && a.fragment().is_none()
        && a.username().is_empty()
        && a.password().is_none()
}

/// What a redirect URI says of who receives it: its host, or a private-use scheme.
pub(super) fn receiver(uri: &str) -> Option<(String, bool)> {
    let u = Url::parse(uri).ok()?;
    match u.host_str() {
        Some(h) => Some((h.to_owned(), is_loopback(&u))),
        None => Some((u.scheme().to_owned(), false)),
    }
}

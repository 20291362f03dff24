//! Fetching JSON documents and `did:web` DID documents: bounded size and time.

use crate::HolderError;
use serde_json::Value;
use sichat_core::did::{Did, DidDocument};

/// Largest document we read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

pub fn client() -> Result<reqwest::Client, HolderError> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sichat-holder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HolderError::Other(e.to_string()))
}

/// GET `url` and return its body, refusing non-2xx answers and oversized bodies.
pub async fn get_bytes(http: &reqwest::Client, url: &str, accept: &str) -> Result<Vec<u8>, HolderError> {
    let fail = |why: String| HolderError::Fetch { url: url.to_owned(), why };
    let mut resp = http.get(url).header("accept", accept).send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(fail(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
    }
    Ok(body)
}

pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, HolderError> {
    let body = get_bytes(http, url, "application/json").await?;
    serde_json::from_slice(&body).map_err(|e| HolderError::Fetch { url: url.to_owned(), why: format!("not JSON: {e}") })
}

/// The URL of a `did:web` document. HTTPS, except for `localhost` (as did:web resolvers,
/// `ssi`'s among them, allow for development).
pub fn did_web_url(did: &Did) -> Result<String, HolderError> {
    let id = did
        .as_str()
        .strip_prefix("did:web:")
        .ok_or_else(|| HolderError::BadCredential(format!("{did} is not a did:web")))?;
    let mut parts = id.split(':');
    let host = parts.next().unwrap_or_default().replacen("%3A", ":", 1).replacen("%3a", ":", 1);
    let path: Vec<&str> = parts.collect();
    let scheme = if host.starts_with("localhost") { "http" } else { "https" };
    let path = if path.is_empty() { ".well-known".to_owned() } else { path.join("/") };
    Ok(format!("{scheme}://{host}/{path}/did.json"))
}

pub async fn did_web(http: &reqwest::Client, did: &Did) -> Result<DidDocument, HolderError> {
    let url = did_web_url(did)?;
    let doc: DidDocument = serde_json::from_value(get_json(http, &url).await?)
        .map_err(|e| HolderError::BadCredential(format!("{url} is not a DID document: {e}")))?;
    if doc.id != *did {
        return Err(HolderError::BadCredential(format!("{url} describes {}, not {did}", doc.id)));
    }
    Ok(doc)
}

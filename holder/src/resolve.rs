//! The OpenID4VCI client's HTTP: bounded size and time. DIDs, contexts and status lists
//! go through `sichat_core::resolver` instead, under the wallet's network policy.

use crate::HolderError;
use serde_json::Value;

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

//! The wallet side of OpenID4VCI 1.0: offer → metadata → token → nonce → proof → credential.

use crate::HolderError;
use serde_json::{json, Value};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::{FetchError, Fetcher};
use url::Url;

pub const PRE_AUTH_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";

/// A credential offer with a pre-authorized code.
#[derive(Debug, Clone)]
pub struct Offer {
    pub credential_issuer: String,
    pub configuration_ids: Vec<String>,
    pub pre_authorized_code: String,
    /// Present when a transaction code (PIN) is required.
    pub tx_code: Option<Value>,
}

/// Parse `openid-credential-offer://?credential_offer=…` or `…?credential_offer_uri=…`
/// (fetching the latter). Every URL an offer names is fetched through `fetcher`, under the
/// wallet's network policy: an offer is a stranger's input.
pub async fn resolve_offer(fetcher: &Fetcher, uri: &str) -> Result<Offer, HolderError> {
    let bad = |why: &str| HolderError::BadOffer(format!("not a credential offer: {why}"));
    let url = Url::parse(uri.trim()).map_err(|_| bad("not a URI"))?;
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let object: Value = match (get("credential_offer"), get("credential_offer_uri")) {
        (Some(v), None) => serde_json::from_str(&v).map_err(|_| bad("credential_offer is not JSON"))?,
        (None, Some(r)) => fetcher.get_json(&r).await.map_err(|e| match e {
            FetchError::Status { status: 404, .. } => HolderError::BadOffer(
                "this offer was already redeemed or has expired: ask the issuer for a new one".into(),
            ),
            other => other.into(),
        })?,
        _ => return Err(bad("it needs exactly one of credential_offer or credential_offer_uri")),
    };
    let issuer =
        object.get("credential_issuer").and_then(Value::as_str).ok_or_else(|| bad("credential_issuer is missing"))?;
    let ids: Vec<String> = object
        .get("credential_configuration_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .filter(|v: &Vec<String>| !v.is_empty())
        .ok_or_else(|| bad("credential_configuration_ids is missing or empty"))?;
    let grant = object
        .pointer(&format!("/grants/{}", PRE_AUTH_GRANT.replace('~', "~0").replace('/', "~1")))
        .ok_or_else(|| bad("only the pre-authorized code flow is supported, and this offer has none"))?;
    let code = grant
        .get("pre-authorized_code")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("pre-authorized_code is missing"))?;
    Ok(Offer {
        credential_issuer: issuer.to_owned(),
        configuration_ids: ids,
        pre_authorized_code: code.to_owned(),
        tx_code: grant.get("tx_code").cloned(),
    })
}

/// `https://host/path` → `https://host/.well-known/<suffix>/path`.
pub fn well_known(identifier: &str, suffix: &str) -> Result<String, HolderError> {
    let u = Url::parse(identifier).map_err(|_| HolderError::BadOffer(format!("{identifier} is not a URL")))?;
    let host = u.host_str().ok_or_else(|| HolderError::BadOffer(format!("{identifier} has no host")))?;
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = u.path().trim_end_matches('/');
    Ok(format!("{}://{host}{port}/.well-known/{suffix}{path}", u.scheme()))
}

/// Who signs the proof of possession: a key and the DID URL naming it.
pub struct ProofKey<'a> {
    pub kid: String,
    pub key: &'a Ed25519KeyPair,
}

fn oauth_error(body: &[u8], status: u16) -> HolderError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
    let text = v.get("error_description").and_then(Value::as_str).unwrap_or("");
    HolderError::Issuer(format!("{code} ({status}): {text}"))
}

/// POST through the wallet's fetcher (same address policy as every other fetch) and read
/// a JSON answer, or the OAuth error it gives.
async fn post(fetcher: &Fetcher, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Result<Value, HolderError> {
    let (status, body) = fetcher.post(url, headers, body).await?;
    if !(200..300).contains(&status) {
        return Err(oauth_error(&body, status));
    }
    serde_json::from_slice(&body).map_err(|_| HolderError::Issuer(format!("unexpected answer ({status})")))
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A credential as issued: its format (`vc+jwt` or `ldp_vc`) and its text.
#[derive(Debug, Clone)]
pub struct Received {
    pub format: String,
    pub credential: String,
}

/// Redeem `offer` (the first configuration) and return the credential as issued.
pub async fn receive(
    fetcher: &Fetcher,
    offer: &Offer,
    proof: ProofKey<'_>,
    tx_code: Option<&str>,
) -> Result<Received, HolderError> {
    let issuer = &offer.credential_issuer;
    let meta = fetcher.get_json(&well_known(issuer, "openid-credential-issuer")?).await?;
    if meta.get("credential_issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
        return Err(HolderError::BadOffer("the issuer's metadata names another issuer".into()));
    }
    let config_id = &offer.configuration_ids[0];
    let format = meta
        .get("credential_configurations_supported")
        .and_then(|c| c.get(config_id))
        .ok_or_else(|| HolderError::BadOffer(format!("the issuer does not list {config_id}")))?
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !matches!(format.as_str(), "vc+jwt" | "ldp_vc") {
        return Err(HolderError::BadOffer(format!(
            "{config_id} is in format {format:?}; this wallet takes vc+jwt and ldp_vc"
        )));
    }
    let field = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_owned);
    let credential_endpoint =
        field("credential_endpoint").ok_or_else(|| HolderError::BadOffer("no credential_endpoint".into()))?;
    let nonce_endpoint = field("nonce_endpoint");
    let auth_server = meta
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| issuer.clone());
    let as_meta = fetcher.get_json(&well_known(&auth_server, "oauth-authorization-server")?).await?;
    let token_endpoint = as_meta
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| HolderError::BadOffer("the authorization server has no token_endpoint".into()))?;

    let mut fields = vec![("grant_type", PRE_AUTH_GRANT), ("pre-authorized_code", offer.pre_authorized_code.as_str())];
    match (&offer.tx_code, tx_code) {
        (Some(_), Some(pin)) => fields.push(("tx_code", pin)),
        (Some(_), None) => {
            return Err(HolderError::BadOffer("this offer needs the PIN the issuer gave you: pass --pin".into()))
        }
        (None, _) => {}
    }
    let form_header = [(FORM.0, FORM.1.to_owned())];
    let token = post(fetcher, token_endpoint, &form_header, form(&fields)).await?;
    let access = token
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| HolderError::Issuer("no access_token".into()))?;

    let nonce = match nonce_endpoint {
        Some(url) => {
            post(fetcher, &url, &[], Vec::new()).await?.get("c_nonce").and_then(Value::as_str).map(str::to_owned)
        }
        None => None,
    };
    let mut claims = json!({"aud": issuer, "iat": sichat_core::ids::now_ms() / 1000});
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let jwt = jws::sign(proof.key, "openid4vci-proof+jwt", Some(&proof.kid), &claims)?;
    let body = json!({"credential_configuration_id": config_id, "proofs": {"jwt": [jwt]}});
    let headers = [("content-type", "application/json".to_owned()), ("authorization", format!("Bearer {access}"))];
    let resp = post(fetcher, &credential_endpoint, &headers, body.to_string().into_bytes()).await?;
    let credential = match (format.as_str(), resp.pointer("/credentials/0/credential")) {
        ("vc+jwt", Some(Value::String(jwt))) => jwt.clone(),
        ("ldp_vc", Some(doc @ Value::Object(_))) => doc.to_string(),
        _ => return Err(HolderError::Issuer(format!("the credential response holds no {format} credential"))),
    };
    Ok(Received { format, credential })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_goes_between_host_and_path() {
        assert_eq!(
            well_known("https://issuer.example.com/tenant", "openid-credential-issuer").unwrap(),
            "https://issuer.example.com/.well-known/openid-credential-issuer/tenant"
        );
        assert_eq!(
            well_known("http://localhost:8080/users/alice", "oauth-authorization-server").unwrap(),
            "http://localhost:8080/.well-known/oauth-authorization-server/users/alice"
        );
        assert_eq!(well_known("https://a.example", "x").unwrap(), "https://a.example/.well-known/x");
    }
}

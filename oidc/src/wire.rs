//! What clients send to and get back from the endpoints they call with their own
//! credentials (token, revocation, introspection, PAR, device authorization): typed forms
//! and answers.
//!
//! A form is read once, by [`ClientForm`]: `application/x-www-form-urlencoded`, each
//! parameter at most once (RFC 6749 §3.1, §3.2), unknown ones ignored.

use crate::OidcError;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// How a client authenticates in the body (RFC 6749 §2.3.1, RFC 7523 §2.2); the
/// `Authorization: Basic` header is read beside it.
#[derive(Debug, Default, Deserialize)]
pub struct ClientAuth {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// `POST /oidc/token` (RFC 6749 §4.1.3, §4.4.2, §6; RFC 8628 §3.4).
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub device_code: Option<String>,
}

/// `POST /oidc/revoke` (RFC 7009 §2.1) and `POST /oidc/introspect` (RFC 7662 §2.1).
#[derive(Debug, Default, Deserialize)]
pub struct TokenParam {
    pub token: Option<String>,
    /// A hint only; the token is looked up whatever its kind.
    pub token_type_hint: Option<String>,
}

/// `POST /oidc/device_authorization` (RFC 8628 §3.1).
#[derive(Debug, Default, Deserialize)]
pub struct DeviceAuthorizationRequest {
    pub scope: Option<String>,
}

/// A client's form, parsed: its credentials and the endpoint's parameters `T`.
pub struct ClientForm<T> {
    pub auth: ClientAuth,
    pub params: T,
}

impl<T: DeserializeOwned> ClientForm<T> {
    /// Parse a form body. A repeated parameter is refused rather than one of its values
    /// picked.
    pub fn parse(body: &[u8]) -> Result<Self, OidcError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let mut seen = HashSet::with_capacity(pairs.len());
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !seen.insert(k.as_str())) {
            return Err(OidcError::bad("invalid_request", format!("the parameter {k} is repeated")));
        }
        let read = |e: serde_urlencoded::de::Error| OidcError::bad("invalid_request", format!("the form: {e}"));
        let auth = serde_urlencoded::from_bytes(body).map_err(read)?;
        let params = serde_urlencoded::from_bytes(body).map_err(read)?;
        Ok(Self { auth, params })
    }
}

/// The body's content type must be a form (RFC 6749 §4.1.3).
pub fn check_form_type(content_type: Option<&str>) -> Result<(), OidcError> {
    let essence = content_type.and_then(|c| c.split(';').next()).map(str::trim);
    match essence.is_some_and(|e| e.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        true => Ok(()),
        false => Err(OidcError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a form (application/x-www-form-urlencoded)",
        )),
    }
}

/// The `token_type` of an access token (RFC 6749 §7.1, RFC 9449 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TokenType {
    Bearer,
    #[serde(rename = "DPoP")]
    Dpop,
}

impl TokenType {
    pub fn bound(jkt: bool) -> Self {
        if jkt {
            Self::Dpop
        } else {
            Self::Bearer
        }
    }
}

/// A successful token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: TokenType,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// RFC 7662 §2.2. An inactive token is `{"active": false}` and nothing else.
#[derive(Debug, Default, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The DPoP key a bound token is confirmed by (RFC 9449 §6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

#[derive(Debug, Serialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// RFC 8628 §3.2.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// RFC 9126 §2.2.
#[derive(Debug, Serialize)]
pub struct PushedRequest {
    pub request_uri: String,
    pub expires_in: i64,
}

/// The parameters of a pushed authorization request: the authorization request's own, an
/// open set read later as an authorization request is.
pub type AuthorizationParams = HashMap<String, String>;

/// A UserInfo answer (OpenID Connect Core §5.3.2): `sub` and the released claims.
pub type UserInfo = serde_json::Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_is_read_once_per_parameter() {
        let f = ClientForm::<TokenRequest>::parse(b"grant_type=authorization_code&code=a%20b&client_id=c&x=y")
            .expect("a form");
        assert_eq!(f.params.code.as_deref(), Some("a b"));
        assert_eq!(f.auth.client_id.as_deref(), Some("c"));
        let repeated = ClientForm::<TokenRequest>::parse(b"code=a&code=b").err().expect("refused");
        assert_eq!(repeated.code, "invalid_request");
        assert!(ClientForm::<AuthorizationParams>::parse(b"scope=openid&client_id=c").is_ok());
    }

    #[test]
    fn only_forms_are_accepted() {
        assert!(check_form_type(Some("application/x-www-form-urlencoded; charset=UTF-8")).is_ok());
        assert!(check_form_type(Some("application/json")).is_err());
        assert!(check_form_type(None).is_err());
    }

    #[test]
    fn token_types_are_named_as_the_rfcs_do() {
        assert_eq!(serde_json::to_value(TokenType::bound(true)).ok(), Some(Value::from("DPoP")));
        assert_eq!(serde_json::to_value(TokenType::bound(false)).ok(), Some(Value::from("Bearer")));
    }
}

//! The endpoints a client calls with its own credentials: token, UserInfo, revocation,
//! introspection, pushed authorization requests and device authorization. Each answers
//! JSON; its errors are [`OAuthJson`].

use super::*;
use crate::wire::{
    check_form_type, AuthorizationParams, ClientAuth, ClientForm, DeviceAuthorizationRequest, TokenParam, TokenRequest,
};
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

fn basic_auth(headers: &HeaderMap) -> Result<Option<(String, String)>, OidcError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || OidcError::invalid_client("malformed Basic authorization");
    let v = v.to_str().map_err(|_| bad())?;
    let Some(b64) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) else { return Err(bad()) };
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Ok(Some((decode(id).ok_or_else(bad)?, decode(secret).ok_or_else(bad)?)))
}

/// A client's form as the extractor of its endpoint: a form body within the body limit.
pub(super) struct Posted<T>(ClientForm<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Posted<T> {
    type Rejection = OAuthJson;

    async fn from_request(req: Request, state: &S) -> Result<Self, OAuthJson> {
        check_form_type(req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()))?;
        let body = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                OidcError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the request body is too large")
            }
            _ => OidcError::bad("invalid_request", format!("the body could not be read: {e}")),
        })?;
        Ok(Self(ClientForm::parse(&body)?))
    }
}

/// The client a request authenticates as. A failed client authentication is a `401` with
/// a `WWW-Authenticate` challenge only when the client used the `Authorization` header
/// (RFC 6749 §5.2); otherwise a `400`, whose JSON body RP libraries show.
async fn client(s: &AppState, headers: &HeaderMap, auth: &ClientAuth) -> Result<Arc<clients::Client>, OAuthJson> {
    let found = async { s.op.authenticate_client(basic_auth(headers)?, auth).await };
    found.await.map_err(|mut e| {
        if e.code == "invalid_client" && !headers.contains_key(header::AUTHORIZATION) {
            e.status = StatusCode::BAD_REQUEST;
        }
        OAuthJson(e)
    })
}

/// The request's one `DPoP` header, if any (RFC 9449 §4.3: never more than one).
fn dpop_header(headers: &HeaderMap) -> Result<Option<String>, OidcError> {
    let mut all = headers.get_all("dpop").iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(OidcError::bad("invalid_dpop_proof", "send one DPoP header, not several"));
    }
    first
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| OidcError::bad("invalid_dpop_proof", "the proof is not text"))
        })
        .transpose()
}

pub(super) async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<TokenRequest>,
) -> Result<Response, OAuthJson> {
    let client = client(&s, &headers, &form.auth).await?;
    let dpop = dpop_header(&headers)?;
    Ok(no_store(s.op.token(&client, &form.params, dpop.as_deref()).await?))
}

/// RFC 9126: a client pushes its authorization request.
pub(super) async fn par(
    State(s): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<AuthorizationParams>,
) -> Result<Response, OAuthJson> {
    let client = client(&s, &headers, &form.auth).await?;
    let dpop = dpop_header(&headers)?;
    let pushed = s.op.push_request(&client, &form.params, dpop.as_deref()).await?;
    Ok((StatusCode::CREATED, no_store(pushed)).into_response())
}

/// RFC 8628 §3.1: a device asks for a user code.
pub(super) async fn device_authorization(
    State(s): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<DeviceAuthorizationRequest>,
) -> Result<Response, OAuthJson> {
    let client = client(&s, &headers, &form.auth).await?;
    Ok(no_store(s.op.device_authorization(&client, &form.params).await?))
}

pub(super) async fn userinfo(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, OAuthJson> {
    let unauthorized = |code, why: &str| OAuthJson(OidcError::new(StatusCode::UNAUTHORIZED, code, why));
    let missing = "send the access token in the Authorization header, as Bearer (or DPoP, with a proof)";
    let Some((scheme, token)) = authorization(&headers) else { return Err(unauthorized("invalid_token", missing)) };
    let proof = dpop_header(&headers).map_err(|e| unauthorized(e.code, &e.description))?;
    let presented = match (scheme.as_str(), proof.as_deref()) {
        ("bearer", _) => crate::provider::Presented::Bearer(&token),
        ("dpop", Some(p)) => crate::provider::Presented::Dpop(&token, p),
        ("dpop", None) => return Err(unauthorized("invalid_dpop_proof", "a DPoP token needs a DPoP proof header")),
        _ => return Err(unauthorized("invalid_token", missing)),
    };
    Ok(no_store(s.op.userinfo(presented, method.as_str()).await?))
}

fn required_token(p: &TokenParam) -> Result<&str, OidcError> {
    p.token.as_deref().ok_or_else(|| OidcError::bad("invalid_request", "token is required"))
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<TokenParam>,
) -> Result<Response, OAuthJson> {
    let client = client(&s, &headers, &form.auth).await?;
    s.op.revoke(&client, required_token(&form.params)?).await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<TokenParam>,
) -> Result<Response, OAuthJson> {
    let client = client(&s, &headers, &form.auth).await?;
    Ok(no_store(s.op.introspect(&client, required_token(&form.params)?).await?))
}

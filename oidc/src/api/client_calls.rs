//! The endpoints a client calls with its own credentials: token, UserInfo, revocation,
//! introspection, pushed authorization requests and device authorization.

use super::*;

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

pub(super) type FormMap = Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>;

/// An error of an endpoint that authenticates clients. A failed client authentication is a
/// `401` with a `WWW-Authenticate` challenge only when the client used the `Authorization`
/// header (RFC 6749 §5.2); otherwise a `400`, whose JSON body RP libraries show.
fn client_error(e: OidcError, headers: &HeaderMap) -> Response {
    let mut e = e;
    if e.code == "invalid_client" && !headers.contains_key(header::AUTHORIZATION) {
        e.status = StatusCode::BAD_REQUEST;
    }
    oauth_error(e)
}

async fn client_and_form(
    s: &AppState,
    headers: &HeaderMap,
    form: FormMap,
) -> Result<(Arc<clients::Client>, HashMap<String, String>), OidcError> {
    let Form(form) = form.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            OidcError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the request body is too large")
        }
        _ => OidcError::bad("invalid_request", format!("the body must be a form: {e}")),
    })?;
    let client = s.op.authenticate_client(basic_auth(headers)?, &form).await?;
    Ok((client, form))
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

pub(super) async fn token(State(s): State<AppState>, headers: HeaderMap, form: FormMap) -> Response {
    let (client, form) = match client_and_form(&s, &headers, form).await {
        Ok(x) => x,
        Err(e) => return client_error(e, &headers),
    };
    let dpop = match dpop_header(&headers) {
        Ok(d) => d,
        Err(e) => return oauth_error(e),
    };
    match s.op.token(&client, &form, dpop.as_deref()).await {
        Ok(v) => no_store(v),
        Err(e) => oauth_error(e),
    }
}

/// RFC 9126: a client pushes its authorization request.
pub(super) async fn par(State(s): State<AppState>, headers: HeaderMap, form: FormMap) -> Response {
    let (client, form) = match client_and_form(&s, &headers, form).await {
        Ok(x) => x,
        Err(e) => return client_error(e, &headers),
    };
    match s.op.push_request(&client, &form).await {
        Ok(v) => (StatusCode::CREATED, no_store(v)).into_response(),
        Err(e) => oauth_error(e),
    }
}

/// RFC 8628 §3.1: a device asks for a user code.
pub(super) async fn device_authorization(State(s): State<AppState>, headers: HeaderMap, form: FormMap) -> Response {
    let (client, form) = match client_and_form(&s, &headers, form).await {
        Ok(x) => x,
        Err(e) => return client_error(e, &headers),
    };
    match s.op.device_authorization(&client, &form).await {
        Ok(v) => no_store(v),
        Err(e) => oauth_error(e),
    }
}

pub(super) async fn userinfo(State(s): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let missing = || {
        oauth_error(OidcError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "send the access token in the Authorization header, as Bearer (or DPoP, with a proof)",
        ))
    };
    let Some((scheme, token)) = authorization(&headers) else { return missing() };
    let proof = match dpop_header(&headers) {
        Ok(p) => p,
        Err(e) => return oauth_error(OidcError::new(StatusCode::UNAUTHORIZED, e.code, e.description)),
    };
    let presented = match (scheme.as_str(), proof.as_deref()) {
        ("bearer", _) => crate::provider::Presented::Bearer(&token),
        ("dpop", Some(p)) => crate::provider::Presented::Dpop(&token, p),
        ("dpop", None) => {
            return oauth_error(OidcError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_dpop_proof",
                "a DPoP token needs a DPoP proof header",
            ))
        }
        _ => return missing(),
    };
    match s.op.userinfo(presented, method.as_str()).await {
        Ok(v) => no_store(v),
        Err(e) => oauth_error(e),
    }
}

pub(super) async fn revoke(State(s): State<AppState>, headers: HeaderMap, form: FormMap) -> Response {
    let (client, form) = match client_and_form(&s, &headers, form).await {
        Ok(x) => x,
        Err(e) => return client_error(e, &headers),
    };
    let Some(t) = form.get("token") else {
        return oauth_error(OidcError::bad("invalid_request", "token is required"));
    };
    match s.op.revoke(&client, t).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(e),
    }
}

pub(super) async fn introspect(State(s): State<AppState>, headers: HeaderMap, form: FormMap) -> Response {
    let (client, form) = match client_and_form(&s, &headers, form).await {
        Ok(x) => x,
        Err(e) => return client_error(e, &headers),
    };
    let Some(t) = form.get("token") else {
        return oauth_error(OidcError::bad("invalid_request", "token is required"));
    };
    match s.op.introspect(&client, t).await {
        Ok(v) => no_store(v),
        Err(e) => oauth_error(e),
    }
}

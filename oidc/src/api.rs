//! HTTP endpoints of the OpenID Provider. Handlers parse, call [`Provider`], and map.

use crate::amr::SignIn;
use crate::clients;
use crate::pages;
use crate::provider::{Next, Pending, Provider};
use crate::signin::{self, Signin};
use crate::OidcError;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, options, post, put};
use axum::{Form, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::http::{ApiError, ApiJson, ApiPath, ApiQuery, ClientAddr};
use sichat_core::ids::random_token;
use std::collections::HashMap;
use std::sync::Arc;
use tower_http::cors::{Any, CorsLayer};

mod client_calls;
mod errors;
use client_calls::{device_authorization, introspect, par, revoke, token, userinfo};
pub(crate) use errors::{ErrorPage, OAuthJson};

pub(crate) const SESSION_COOKIE: &str = "sichat_op";
pub(crate) const CSRF_COOKIE: &str = "sichat_csrf";

#[derive(Clone)]
struct AppState {
    op: Arc<Provider>,
    accounts: Arc<Accounts>,
    signin: Arc<Signin>,
    /// The discovery document, serialized once: it changes only with the node's config.
    discovery: Bytes,
}

impl FromRef<AppState> for Arc<Accounts> {
    fn from_ref(s: &AppState) -> Self {
        s.accounts.clone()
    }
}

pub fn router(op: Arc<Provider>, accounts: Arc<Accounts>) -> Router {
    let signin = Arc::new(Signin::new(op.clone(), accounts.clone()));
    let document = Bytes::from(op.discovery().to_string());
    // What a browser app (a public client with PKCE) calls from its own origin: CORS for
    // any origin, without credentials. Pages and cookie endpoints get none, so a browser
    // keeps other origins out of them.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("dpop")])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(std::time::Duration::from_secs(86_400));
    // The metadata documents and the JWKS are the same for every origin: they carry their
    // `Access-Control-Allow-Origin: *` themselves, and the layer only answers their
    // preflights (on every request it cost discovery a fifth of its CPU).
    let preflight = || options(|| async { StatusCode::NO_CONTENT }).layer(cors.clone());
    let public_documents = Router::new()
        .route("/.well-known/openid-configuration", get(discovery).merge(preflight()))
        .route("/.well-known/oauth-authorization-server", get(discovery).merge(preflight()))
        .route("/oidc/jwks", get(jwks).merge(preflight()));
    let cross_origin = Router::new()
        .route("/.well-known/webfinger", get(webfinger))
        .route("/oidc/token", post(token))
        .route("/oidc/userinfo", get(userinfo).post(userinfo))
        .route("/oidc/revoke", post(revoke))
        .route("/oidc/introspect", post(introspect))
        .route("/oidc/device_authorization", post(device_authorization))
        .route("/oidc/par", post(par))
        .layer(cors);
    Router::new()
        .merge(public_documents)
        .merge(cross_origin)
        .route("/oidc/register", post(register))
        .route("/oidc/register/{id}", get(read_client))
        .route("/oidc/authorize", get(authorize))
        .route("/oidc/static/form_post.js", get(form_post_script))
        .route("/oidc/login", post(login))
        .route("/oidc/consent", get(consent_page).post(consent))
        .route("/oidc/logout", get(logout).post(logout_form))
        .route("/api/v1/password", put(set_password))
        .route("/api/v1/oidc/consents", get(list_consents))
        .route("/api/v1/oidc/activity", get(activity))
        .route("/api/v1/oidc/consents/{client_id}", delete(revoke_consent))
        .with_state(AppState { op, accounts, signin: signin.clone(), discovery: document })
        .merge(crate::signin::router(signin.clone()))
        .merge(crate::device::router(signin))
}

// ---- responses ----

fn no_store(v: impl serde::Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(v)).into_response()
}

/// An HTML page with the security headers; forms may post to this origin and, as the
/// redirect after a post, to `client_origin`.
pub(crate) fn html(status: StatusCode, body: String, client_origin: Option<&str>) -> Response {
    html_framing(status, body, client_origin, &[])
}

/// [`html`], whose page may also load `frames` (front-channel logout URLs) in iframes.
pub(crate) fn html_framing(
    status: StatusCode,
    body: String,
    client_origin: Option<&str>,
    frames: &[String],
) -> Response {
    let form_action = match client_origin {
        Some(o) => format!("'self' {o}"),
        None => "'self'".into(),
    };
    let frame_src: Vec<String> = frames.iter().filter_map(|f| origin_of(f)).collect();
    let frame_src = match frame_src.is_empty() {
        true => String::new(),
        false => format!("frame-src {}; ", frame_src.join(" ")),
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; \
         {frame_src}form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn error_page(status: StatusCode, title: &'static str, message: &str) -> Response {
    ErrorPage::new(status, title, message).into_response()
}

pub(crate) fn internal_page(e: OidcError) -> Response {
    ErrorPage::from(e).into_response()
}

pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "Bad redirect", "the redirect URL is not valid"),
    }
}

/// The answer to the client: a redirect to `url` (the redirect URI with the answer in its
/// query), or for `response_mode=form_post` a page whose form the browser posts there.
pub(crate) fn to_client(p: &crate::provider::AuthParams, url: &str) -> Response {
    if p.response_mode.as_deref() != Some("form_post") {
        return see_other(url);
    }
    let Ok(full) = url::Url::parse(url) else { return see_other(url) };
    let own: Vec<(String, String)> =
        url::Url::parse(&p.redirect_uri).map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default();
    let mut fields: Vec<(String, String)> = full.query_pairs().into_owned().collect();
    for pair in &own {
        if let Some(i) = fields.iter().position(|f| f == pair) {
            fields.remove(i);
        }
    }
    html(StatusCode::OK, pages::form_post(&p.redirect_uri, &fields), origin_of(&p.redirect_uri).as_deref())
}

async fn form_post_script() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/javascript"), (header::CACHE_CONTROL, "public, max-age=86400")];
    (headers, "document.forms[0].submit();\n").into_response()
}

pub(crate) fn origin_of(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    Some(u.origin().ascii_serialization())
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn set_cookie(r: &mut Response, op: &Provider, name: &str, value: &str, max_age_secs: i64) {
    let secure = if op.secure_cookies() { "; Secure" } else { "" };
    let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(crate) async fn browser_session(
    op: &Provider,
    headers: &HeaderMap,
) -> Result<Option<crate::provider::BrowserSession>, OidcError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(t) => op.session(&t).await,
        None => Ok(None),
    }
}

// ---- discovery and keys ----

async fn discovery(State(s): State<AppState>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "public, max-age=300"),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    ];
    (headers, s.discovery).into_response()
}

async fn jwks(State(s): State<AppState>) -> Response {
    let cache = format!("public, max-age={}", crate::keys::JWKS_MAX_AGE_SECS);
    let headers = [(header::CACHE_CONTROL, cache), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_owned())];
    (headers, Json(s.op.jwks())).into_response()
}

#[derive(Deserialize)]
struct WebFingerQuery {
    resource: Option<String>,
}

async fn webfinger(State(s): State<AppState>, ApiQuery(q): ApiQuery<WebFingerQuery>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response();
    let Some(resource) = q.resource else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "resource is required"}))).into_response();
    };
    let public = s.accounts.node().public_url();
    let host = match public.port() {
        Some(p) => format!("{}:{p}", public.host_str().unwrap_or_default()),
        None => public.host_str().unwrap_or_default().to_owned(),
    };
    let Some((name, at)) = resource.strip_prefix("acct:").and_then(|a| a.rsplit_once('@')) else {
        return not_found();
    };
    if !at.eq_ignore_ascii_case(&host) {
        return not_found();
    }
    match s.accounts.active_user_id(name).await {
        Ok(Some(_)) => (
            [(header::CONTENT_TYPE, "application/jrd+json")],
            Json(json!({
                "subject": resource,
                "links": [{"rel": "http://openid.net/specs/connect/1.0/issuer", "href": s.op.issuer()}],
            })),
        )
            .into_response(),
        Ok(None) => not_found(),
        Err(e) => OAuthJson(OidcError::from(e)).into_response(),
    }
}

// ---- registration ----

async fn register(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthJson> {
    let body = sichat_core::json::from_slice_bounded::<Value>(&body, sichat_core::json::MAX_DEPTH)
        .map_err(|_| OidcError::bad("invalid_client_metadata", "the body is not JSON (or nests too deep)"))?;
    let registered = s.op.register(body, bearer(&headers).as_deref()).await?;
    Ok((StatusCode::CREATED, no_store(registered)).into_response())
}

/// The `Authorization` header's scheme (lower case) and credentials.
fn authorization(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    Some((scheme.to_ascii_lowercase(), token.trim().to_owned()))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

async fn read_client(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthJson> {
    let token = bearer(&headers).ok_or_else(|| {
        OidcError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the registration access token is required")
    })?;
    let metadata = clients::read(s.op.db(), &id, &token).await?;
    let mut v = serde_json::to_value(metadata).map_err(OidcError::internal)?;
    v["client_id"] = json!(id);
    v["registration_client_uri"] = json!(s.op.url(&format!("oidc/register/{id}")));
    Ok(no_store(v))
}

// ---- authorization ----

async fn authorize(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Response {
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    let client = match s.op.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown site",
                "The site that sent you here is not registered with this node (unknown client_id).",
            )
        }
        Err(e) => return internal_page(e),
    };
    // A pushed request (PAR) or a request object: only what it holds counts.
    let opened = match q.get("request_uri").filter(|u| !u.is_empty()) {
        Some(uri) => s.op.pushed(&client.id, uri).await,
        None if client.metadata.require_pushed_authorization_requests == Some(true) => Err(OidcError::bad(
            "invalid_request",
            "this site registered that it pushes its sign-in requests first (PAR), and sent one directly",
        )),
        None => s.op.request_params(&client, &q).await,
    };
    let q = match opened {
        Ok(q) => q,
        Err(e) if e.status.is_server_error() => return internal_page(e),
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The site sent a bad sign-in request",
                &format!("{}: {}. You were not sent back to the site.", e.code, e.description),
            )
        }
    };
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    if !client.allows_redirect(&redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Wrong return address",
            "The site asked to send you back to an address it did not register (redirect_uri mismatch). You were not redirected.",
        );
    }
    // A malformed request is answered here, not at the redirect URI: anyone may register a
    // client with any address, and sending the browser there unasked would make this node an
    // open redirector (RFC 9700 §4.11.2). Only a well-formed request goes back to the site.
    let params = match Provider::check_request(&client, &q) {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The site sent a bad sign-in request",
                &format!("{}: {}. You were not sent back to the site.", e.code, e.description),
            )
        }
    };
    start_request(&s.signin, &headers, params, client).await
}

/// A checked request's first step for this browser: back to the client at once, or saved
/// and on to the sign-in page or the consent page (`/oidc/authorize`, `/oidc/device`).
pub(crate) async fn start_request(
    signin: &Signin,
    headers: &HeaderMap,
    params: crate::provider::AuthParams,
    client: Arc<clients::Client>,
) -> Response {
    let op = &signin.op;
    let session = match browser_session(op, headers).await {
        Ok(x) => x,
        Err(e) => return internal_page(e),
    };
    let next = match op.next_step(&params, &client, session.as_ref(), false).await {
        Ok(n) => n,
        Err(e) => return internal_page(e),
    };
    match next {
        Next::Redirect(url) => to_client(&params, &url),
        step => {
            let (id, csrf) = match op.save_request(&params).await {
                Ok(x) => x,
                Err(e) => return internal_page(e),
            };
            match step {
                // The page sets the CSRF cookie itself; the request just saved needs no re-read.
                Next::Login => {
                    let hint = params.login_hint.clone().unwrap_or_default();
                    let pending = Pending { id, csrf, params, client };
                    signin::login_page(signin, &pending, &hint, None, StatusCode::OK).await
                }
                _ => {
                    let mut r = see_other(&format!("/oidc/consent?request={id}"));
                    set_cookie(&mut r, op, CSRF_COOKIE, &csrf, 600);
                    r
                }
            }
        }
    }
}

/// The pending request a form names, if its CSRF token matches the form and the cookie.
async fn pending_for(op: &Provider, headers: &HeaderMap, request: &str, csrf: &str) -> Result<Pending, Response> {
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "Go back to the site and start signing in again.",
        )
    };
    let pending = match op.pending(request).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(internal_page(e)),
    };
    let cookie_ok = cookie(headers, CSRF_COOKIE).as_deref() == Some(pending.csrf.as_str());
    if csrf != pending.csrf || !cookie_ok {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Form check failed",
            "This form was not sent from this node's page (CSRF check). Start again from the site.",
        ));
    }
    Ok(pending)
}

#[derive(Deserialize)]
struct LoginForm {
    request: String,
    csrf: String,
    username: String,
    password: String,
}

async fn login(
    State(s): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The sign-in form is incomplete: send username and password.",
        );
    };
    let pending = match pending_for(&s.op, &headers, &f.request, &f.csrf).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let retry = |status: StatusCode, why: String| {
        let (signin, pending, username) = (&s.signin, &pending, &f.username);
        async move { signin::login_page(signin, pending, username, Some(&why), status).await }
    };
    match s.op.check_password(f.username.trim(), &f.password, peer).await {
        Ok(Some(user_id)) => signin::signed_in(&s.op, Some(&pending), &user_id, SignIn::Password, peer).await,
        Ok(None) => retry(StatusCode::UNAUTHORIZED, "Wrong user name or password.".into()).await,
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => retry(e.status, e.description).await,
        Err(e) => internal_page(e),
    }
}

#[derive(Deserialize)]
struct ConsentQuery {
    request: String,
}

async fn consent_page(State(s): State<AppState>, headers: HeaderMap, ApiQuery(q): ApiQuery<ConsentQuery>) -> Response {
    let pending = match s.op.pending(&q.request).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired",
                "Go back to the site and start again.",
            )
        }
        Err(e) => return internal_page(e),
    };
    let session = match browser_session(&s.op, &headers).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return error_page(StatusCode::UNAUTHORIZED, "Not signed in", "Go back to the site and sign in again.")
        }
        Err(e) => return internal_page(e),
    };
    let host = match &pending.params.device {
        Some(d) => Some(format!("the device showing {}", d.user_code)),
        None => url::Url::parse(&pending.params.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)),
    };
    let evidence = match s.op.evidence(&session.user_id, &pending.params.scope).await {
        Ok(e) => e,
        Err(e) => return internal_page(e),
    };
    let body = pages::consent(
        pending.client.name(),
        host.as_deref().unwrap_or_default(),
        &session.user_name,
        &pending.params.scope,
        &pending.id,
        &pending.csrf,
        &evidence,
    );
    html(StatusCode::OK, body, origin_of(&pending.params.redirect_uri).as_deref())
}

#[derive(Deserialize)]
struct ConsentForm {
    request: String,
    csrf: String,
    decision: String,
}

async fn consent(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<ConsentForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "The consent form is incomplete.");
    };
    let pending = match pending_for(&s.op, &headers, &f.request, &f.csrf).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let session = match browser_session(&s.op, &headers).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return error_page(StatusCode::UNAUTHORIZED, "Not signed in", "Go back to the site and sign in again.")
        }
        Err(e) => return internal_page(e),
    };
    if pending.params.device.is_some() {
        return crate::device::decided(&s.op, &pending, &session, f.decision == "allow").await;
    }
    let p = &pending.params;
    let _ = s.op.finish_request(&pending.id).await;
    match f.decision.as_str() {
        "allow" => {
            if let Err(e) = s.op.consent(&session.user_id, &p.client_id, &p.scope).await {
                return internal_page(e);
            }
            match s.op.issue_code(p, &pending.client, &session).await {
                Ok(code) => to_client(p, &s.op.redirect_url(&p.redirect_uri, p.state.as_deref(), &[("code", &code)])),
                Err(e) => to_client(p, &s.op.error_redirect(p, &e)),
            }
        }
        _ => to_client(p, &s.op.error_redirect(p, &OidcError::bad("access_denied", "the user denied the request"))),
    }
}

// ---- logout ----

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Response {
    end_session(&s, &headers, q).await
}

async fn logout_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => end_session(&s, &headers, f).await,
        Err(_) => error_page(StatusCode::BAD_REQUEST, "Bad request", "The logout request is not a form."),
    }
}

async fn end_session(s: &AppState, headers: &HeaderMap, q: HashMap<String, String>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str);
    let plan = match s.op.plan_logout(get("id_token_hint"), get("client_id"), get("post_logout_redirect_uri")).await {
        Ok(p) => p,
        Err(e) if e.status.is_server_error() => return internal_page(e),
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Bad sign-out request", &e.description),
    };
    let session_token = cookie(headers, SESSION_COOKIE);
    let session = match &session_token {
        Some(t) => match s.op.session(t).await {
            Ok(x) => x,
            Err(e) => return internal_page(e),
        },
        None => None,
    };
    // The answer to our own confirmation page (its CSRF token, in the form and the cookie).
    let confirmed = get("csrf").is_some_and(|c| cookie(headers, CSRF_COOKIE).as_deref() == Some(c));
    if confirmed && get("decision") == Some("cancel") {
        let mut r = html(StatusCode::OK, pages::logout_cancelled(s.op.issuer()), None);
        set_cookie(&mut r, &s.op, CSRF_COOKIE, "", 0);
        return r;
    }
    if let Some(session) = &session {
        // Only an ID token of this very user, for the site it names, signs out unasked.
        let vouched = match &plan.hinted_for {
            Some(h) => match s.op.hint_is_for(h, session).await {
                Ok(b) => b,
                Err(e) => return internal_page(e),
            },
            None => false,
        };
        if !vouched && !confirmed {
            let csrf = random_token();
            let keep: Vec<(&str, &str)> = ["id_token_hint", "post_logout_redirect_uri", "client_id", "state"]
                .iter()
                .filter_map(|k| q.get(*k).map(|v| (*k, v.as_str())))
                .collect();
            let site = plan.client.as_ref().map(|c| (c.name(), c.sector()));
            let site = site.as_ref().map(|(name, host)| (*name, host.as_str()));
            let body = pages::confirm_logout(&csrf, &keep, site, &session.user_name, s.op.issuer());
            let mut r = html(StatusCode::OK, body, None);
            set_cookie(&mut r, &s.op, CSRF_COOKIE, &csrf, 600);
            return r;
        }
    }
    let frames = match &session_token {
        Some(t) => match s.op.end_session(t).await {
            Ok(f) => f,
            Err(e) => return internal_page(e),
        },
        None => Vec::new(),
    };
    let next = match plan.redirect {
        Some(uri) => {
            let mut u = match url::Url::parse(&uri) {
                Ok(u) => u,
                Err(_) => {
                    return error_page(StatusCode::BAD_REQUEST, "Bad address", "post_logout_redirect_uri is not a URL")
                }
            };
            if let Some(state) = q.get("state") {
                u.query_pairs_mut().append_pair("state", state);
            }
            Some(u.to_string())
        }
        None => None,
    };
    // Sites with a front channel are loaded on the signed-out page before going on.
    let mut r = match (next, frames.is_empty()) {
        (Some(next), true) => see_other(&next),
        (next, _) => html_framing(StatusCode::OK, pages::signed_out_of(&frames, next.as_deref()), None, &frames),
    };
    set_cookie(&mut r, &s.op, SESSION_COOKIE, "", 0);
    r
}

// ---- the account's own API ----

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

async fn set_password(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(b): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    s.op.set_password(&me.user_id, &b.password).await.map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's latest sign-ins (`sichat oidc activity`).
async fn activity(
    State(s): State<AppState>,
    me: AuthDevice,
) -> Result<Json<Vec<crate::provider::SignInEvent>>, ApiError> {
    Ok(Json(s.op.activity(&me.user_id, 100).await.map_err(api_error)?))
}

async fn list_consents(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(s.op.consents(&me.user_id).await.map_err(api_error)?))
}

async fn revoke_consent(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    match s.op.revoke_consent(&me.user_id, &client_id).await.map_err(api_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "you have not consented to that site")),
    }
}

pub(crate) fn api_error(e: OidcError) -> ApiError {
    ApiError::new(e.status, e.code, e.description)
}

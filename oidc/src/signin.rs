//! HTTP endpoints for signing in without a password (wallet approval, passkeys) and for the
//! account page. Handlers parse, call [`Approvals`] / [`Passkeys`] / [`Provider`], and map.
//!
//! Every form carries the `sichat_csrf` cookie's value (double submit); a pending request's
//! forms carry that request's token. A sign-in ends like a password sign-in: a browser
//! session cookie, then consent (or straight back to the site), or the account page.

use crate::amr::SignIn;
use crate::api::{
    api_error, browser_session, cookie, error_page, html, internal_page, origin_of, see_other, set_cookie, CSRF_COOKIE,
    SESSION_COOKIE,
};
use crate::approval::{Approvals, Status};
use crate::passkeys::Passkeys;
use crate::provider::{Next, Pending, Provider, SESSION_TTL_MS};
use crate::signin_pages::{self, AccountView, SignInForms};
use crate::OidcError;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use sichat_accounts::protocol::PendingApproval;
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::http::{ApiError, ApiJson, ApiPath, ApiQuery, ClientAddr};
use sichat_core::ids::{random_token, token_hash};
use std::sync::Arc;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

/// The password-less ways in, and what the account page needs.
pub struct Signin {
    pub op: Arc<Provider>,
    pub accounts: Arc<Accounts>,
    pub approvals: Approvals,
    pub passkeys: Passkeys,
}

impl Signin {
    pub fn new(op: Arc<Provider>, accounts: Arc<Accounts>) -> Self {
        let passkeys = Passkeys::new(op.db().clone(), accounts.clone(), op.issuer());
        let approvals = Approvals::new(op.clone(), accounts.clone());
        Self { op, accounts, approvals, passkeys }
    }
}

#[derive(Clone)]
struct St(Arc<Signin>);

impl FromRef<St> for Arc<Accounts> {
    fn from_ref(s: &St) -> Self {
        s.0.accounts.clone()
    }
}

pub fn router(signin: Arc<Signin>) -> Router {
    Router::new()
        .route("/oidc/login", get(login_form))
        .route("/oidc/static/signin.js", get(script))
        .route("/oidc/passkey/options", post(passkey_options))
        .route("/oidc/passkey/login", post(passkey_login))
        .route("/oidc/approval/status", get(approval_status))
        .route("/oidc/approval/continue", post(approval_continue))
        .route("/oidc/approve", get(approve_hint))
        .route("/api/v1/oidc/approvals", post(approve))
        .route("/api/v1/oidc/approvals/{code}", get(approval_info))
        .route("/api/v1/oidc/passkeys", get(list_passkeys))
        .route("/api/v1/oidc/passkeys/{id}", delete(remove_passkey))
        .route("/api/v1/oidc/passkey-links", post(passkey_link))
        .route("/account", get(account))
        .route("/account/login", post(account_login))
        .route("/account/signout", post(signout))
        .route("/account/signout-everywhere", post(signout_everywhere))
        .route("/account/consents/revoke", post(revoke_consent))
        .route("/account/passkeys/options", post(register_options))
        .route("/account/passkeys", post(register))
        .route("/account/passkeys/remove", post(remove_passkey_form))
        .route("/account/passkeys/new", get(link_page))
        .with_state(St(signin))
}

// ---- shared steps ----

fn csrf_failed() -> OidcError {
    OidcError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "This form was not sent from this node's page (CSRF check): reload the page and try again.",
    )
}

/// The pending request a form names (none: the account page), once the form's CSRF token
/// matches the cookie and, for a request, the request's own token.
async fn checked(op: &Provider, headers: &HeaderMap, request: &str, csrf: &str) -> Result<Option<Pending>, OidcError> {
    let cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    if csrf.is_empty() || cookie != csrf {
        return Err(csrf_failed());
    }
    if request.is_empty() {
        return Ok(None);
    }
    match op.pending(request).await? {
        Some(p) if p.csrf == csrf => Ok(Some(p)),
        Some(_) => Err(csrf_failed()),
        None => Err(OidcError::bad("expired", "This sign-in has expired: go back to the site and start again.")),
    }
}

/// What a WebAuthn sign-in ceremony is bound to.
fn bound_to(pending: Option<&Pending>, csrf: &str) -> String {
    match pending {
        Some(p) => format!("request:{}", p.id),
        None => format!("csrf:{}", token_hash(csrf)),
    }
}

fn failed_page(e: &OidcError) -> Response {
    if e.status.is_server_error() {
        return internal_page(OidcError::new(e.status, e.code, e.description.clone()));
    }
    error_page(e.status, "Sign-in failed", &e.description)
}

/// The sign-in page of a pending request: password, passkey and a fresh approval code.
pub(crate) async fn login_page(
    s: &Signin,
    pending: &Pending,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let approval = match s.approvals.start(Some(&pending.id), &pending.csrf).await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "no approval code for the sign-in page");
            None
        }
    };
    let forms = SignInForms {
        request: &pending.id,
        csrf: &pending.csrf,
        username,
        passkeys: s.passkeys.enabled(),
        approval: approval.as_ref(),
    };
    let body = signin_pages::login(s.op.issuer(), pending.client.name(), &forms, error);
    let mut r = html(status, body, origin_of(&pending.params.redirect_uri).as_deref());
    set_cookie(&mut r, &s.op, CSRF_COOKIE, &pending.csrf, 600);
    r
}

/// The account page of a browser that is not signed in, with `csrf` as its form token.
async fn account_sign_in_page(s: &Signin, csrf: &str, error: Option<&str>, status: StatusCode) -> Response {
    let approval = match s.approvals.start(None, csrf).await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "no approval code for the account page");
            None
        }
    };
    let forms =
        SignInForms { request: "", csrf, username: "", passkeys: s.passkeys.enabled(), approval: approval.as_ref() };
    let mut r = html(status, signin_pages::account_signed_out(s.op.issuer(), &forms, error), None);
    set_cookie(&mut r, &s.op, CSRF_COOKIE, csrf, SESSION_TTL_MS / 1000);
    r
}

/// A sign-in failed: the same page again, with why.
async fn retry(s: &Signin, pending: Option<&Pending>, csrf: &str, username: &str, e: &OidcError) -> Response {
    if e.status.is_server_error() {
        return failed_page(e);
    }
    match pending {
        Some(p) => login_page(s, p, username, Some(&e.description), e.status).await,
        None => account_sign_in_page(s, csrf, Some(&e.description), e.status).await,
    }
}

/// A user is signed in (`how` becomes the session's `amr`): a session cookie, then on to
/// consent, the site or the account page.
pub(crate) async fn signed_in(
    op: &Provider,
    pending: Option<&Pending>,
    user_id: &str,
    how: SignIn,
    address: std::net::IpAddr,
) -> Response {
    let token = match op.start_session(user_id, how, &address.to_string()).await {
        Ok(t) => t,
        Err(e) => return internal_page(e),
    };
    let mut r = match pending {
        None => see_other("/account"),
        Some(p) => {
            let session = match op.session(&token).await {
                Ok(Some(x)) => x,
                Ok(None) => return internal_page(OidcError::internal("the new session is missing")),
                Err(e) => return internal_page(e),
            };
            match op.next_step(&p.params, &p.client, Some(&session), true).await {
                Ok(Next::Redirect(url)) => {
                    let _ = op.finish_request(&p.id).await;
                    crate::api::to_client(&p.params, &url)
                }
                Ok(_) => see_other(&format!("/oidc/consent?request={}", p.id)),
                Err(e) if p.params.device.is_some() => internal_page(e),
                Err(e) => crate::api::to_client(&p.params, &op.error_redirect(&p.params, &e)),
            }
        }
    };
    set_cookie(&mut r, op, SESSION_COOKIE, &token, SESSION_TTL_MS / 1000);
    r
}

fn no_store(v: serde_json::Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response()
}

// ---- the sign-in page ----

#[derive(Deserialize)]
struct RequestQuery {
    request: String,
}

async fn login_form(State(St(s)): State<St>, ApiQuery(q): ApiQuery<RequestQuery>) -> Response {
    match s.op.pending(&q.request).await {
        Ok(Some(p)) => {
            let hint = p.params.login_hint.clone().unwrap_or_default();
            login_page(&s, &p, &hint, None, StatusCode::OK).await
        }
        Ok(None) => error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "Go back to the site and start signing in again.",
        ),
        Err(e) => internal_page(e),
    }
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("signin.js"),
    )
        .into_response()
}

// ---- passkey sign-in ----

#[derive(Deserialize)]
struct PasskeyOptionsBody {
    #[serde(default)]
    request: String,
    csrf: String,
    username: String,
}

async fn passkey_options(
    State(St(s)): State<St>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<PasskeyOptionsBody>,
) -> Result<Response, ApiError> {
    let pending = checked(&s.op, &headers, &b.request, &b.csrf).await.map_err(api_error)?;
    let bound = bound_to(pending.as_ref(), &b.csrf);
    // No user name: any passkey of this node the browser holds (discoverable credentials).
    let started = match b.username.trim() {
        "" => s.passkeys.start_discoverable(&bound).await,
        name => s.passkeys.start_authentication(name, &bound).await,
    };
    let (ceremony, options) = started.map_err(api_error)?;
    Ok(no_store(json!({"ceremony": ceremony, "options": options})))
}

#[derive(Deserialize)]
struct PasskeyLoginForm {
    #[serde(default)]
    request: String,
    csrf: String,
    ceremony: String,
    credential: String,
}

async fn passkey_login(
    State(St(s)): State<St>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<PasskeyLoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "The passkey form is incomplete.");
    };
    let pending = match checked(&s.op, &headers, &f.request, &f.csrf).await {
        Ok(p) => p,
        Err(e) => return failed_page(&e),
    };
    let result = match serde_json::from_str::<PublicKeyCredential>(&f.credential) {
        Ok(cred) => s.passkeys.finish_authentication(&f.ceremony, &bound_to(pending.as_ref(), &f.csrf), &cred).await,
        Err(e) => Err(OidcError::bad("invalid_request", format!("the browser's passkey answer is malformed: {e}"))),
    };
    match result {
        Ok((user_id, how)) => signed_in(&s.op, pending.as_ref(), &user_id, how, peer).await,
        Err(e) => {
            metrics::counter!("sichat_oidc_signin_failures_total", "method" => "passkey").increment(1);
            retry(&s, pending.as_ref(), &f.csrf, "", &e).await
        }
    }
}

// ---- wallet approval: the browser's side ----

#[derive(Deserialize)]
struct StatusQuery {
    approval: String,
}

async fn approval_status(State(St(s)): State<St>, ApiQuery(q): ApiQuery<StatusQuery>) -> Response {
    match s.approvals.status(&q.approval).await {
        Ok(st) => {
            let status = match st {
                Status::Pending => "pending",
                Status::Approved => "approved",
                Status::Gone => "gone",
            };
            no_store(json!({ "status": status }))
        }
        Err(e) => api_error(e).into_response(),
    }
}

#[derive(Deserialize)]
struct ContinueForm {
    #[serde(default)]
    request: String,
    csrf: String,
    approval: String,
}

async fn approval_continue(
    State(St(s)): State<St>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<ContinueForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "The approval form is incomplete.");
    };
    let pending = match checked(&s.op, &headers, &f.request, &f.csrf).await {
        Ok(p) => p,
        Err(e) => return failed_page(&e),
    };
    match s.approvals.take(&f.approval, pending.as_ref().map(|p| p.id.as_str()), &f.csrf).await {
        Ok(a) => signed_in(&s.op, pending.as_ref(), &a.user_id, SignIn::WalletApproval, peer).await,
        Err(e) => retry(&s, pending.as_ref(), &f.csrf, "", &e).await,
    }
}

#[derive(Deserialize)]
struct CodeQuery {
    #[serde(default)]
    code: String,
}

async fn approve_hint(ApiQuery(q): ApiQuery<CodeQuery>) -> Response {
    let code = crate::approval::normalize_code(&q.code).unwrap_or_else(|| "CODE".into());
    html(StatusCode::OK, signin_pages::approve_hint(&code), None)
}

// ---- wallet approval: the wallet's side ----

async fn approval_info(
    State(St(s)): State<St>,
    ClientAddr(peer): ClientAddr,
    ApiPath(code): ApiPath<String>,
) -> Result<Response, ApiError> {
    let p: PendingApproval = s.approvals.pending(&code, &peer.to_string()).await.map_err(api_error)?;
    Ok(no_store(json!(p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    approval: String,
}

async fn approve(
    State(St(s)): State<St>,
    ClientAddr(peer): ClientAddr,
    ApiJson(b): ApiJson<ApproveBody>,
) -> Result<Response, ApiError> {
    let p = s.approvals.approve(&b.approval, &peer.to_string()).await.map_err(api_error)?;
    Ok(no_store(json!({"approved": true, "sign_in": p})))
}

// ---- passkeys through the wallet's session ----

async fn list_passkeys(State(St(s)): State<St>, me: AuthDevice) -> Result<Response, ApiError> {
    let list = s.passkeys.list(&me.user_id).await.map_err(api_error)?;
    Ok(no_store(json!(list)))
}

async fn remove_passkey(
    State(St(s)): State<St>,
    me: AuthDevice,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    match s.passkeys.remove(&me.user_id, &id).await.map_err(api_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "you have no passkey with that id")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    #[serde(default)]
    name: Option<String>,
}

async fn passkey_link(
    State(St(s)): State<St>,
    me: AuthDevice,
    ApiJson(b): ApiJson<LinkBody>,
) -> Result<Response, ApiError> {
    let name = b.name.unwrap_or_else(|| "passkey".into());
    let link = s.passkeys.create_link(&me.user_id, &name).await.map_err(api_error)?;
    let mut r = no_store(json!(link));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

// ---- the account page ----

/// The browser's form token: its `sichat_csrf` cookie when it has a sound one, else new.
fn account_csrf(headers: &HeaderMap) -> String {
    match cookie(headers, CSRF_COOKIE) {
        Some(c) if c.len() >= 32 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => c,
        _ => random_token(),
    }
}

#[derive(Deserialize)]
struct AccountQuery {
    #[serde(default)]
    done: String,
}

async fn account(State(St(s)): State<St>, headers: HeaderMap, ApiQuery(q): ApiQuery<AccountQuery>) -> Response {
    let csrf = account_csrf(&headers);
    let session = match browser_session(&s.op, &headers).await {
        Ok(x) => x,
        Err(e) => return internal_page(e),
    };
    let Some(session) = session else {
        return account_sign_in_page(&s, &csrf, None, StatusCode::OK).await;
    };
    let consents = match s.op.consents(&session.user_id).await {
        Ok(c) => c,
        Err(e) => return internal_page(e),
    };
    let passkeys = match s.passkeys.enabled() {
        true => match s.passkeys.list(&session.user_id).await {
            Ok(l) => Some(l),
            Err(e) => return internal_page(e),
        },
        false => None,
    };
    let did = s.accounts.user_did(&session.user_name).map(|d| d.to_string()).unwrap_or_default();
    let activity = match s.op.activity(&session.user_id, 20).await {
        Ok(a) => a,
        Err(e) => return internal_page(e),
    };
    let notice = match q.done.as_str() {
        "revoked" => Some("Consent withdrawn: the site must ask again, and its tokens no longer work."),
        "added" => Some("Passkey added."),
        "removed" => Some("Passkey removed."),
        "signed-out" => Some("Signed out everywhere else: other browsers and every site must sign you in again."),
        _ => None,
    };
    let view = AccountView {
        node: s.op.issuer(),
        user: &session.user_name,
        did: &did,
        csrf: &csrf,
        consents: &consents,
        passkeys: passkeys.as_deref(),
        activity: &activity,
        notice,
    };
    let mut r = html(StatusCode::OK, signin_pages::account(&view), None);
    set_cookie(&mut r, &s.op, CSRF_COOKIE, &csrf, SESSION_TTL_MS / 1000);
    r
}

#[derive(Deserialize)]
struct AccountLoginForm {
    csrf: String,
    username: String,
    password: String,
}

async fn account_login(
    State(St(s)): State<St>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<AccountLoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "Send your user name and password.");
    };
    if let Err(e) = checked(&s.op, &headers, "", &f.csrf).await {
        return failed_page(&e);
    }
    match s.op.check_password(f.username.trim(), &f.password, peer).await {
        Ok(Some(user_id)) => signed_in(&s.op, None, &user_id, SignIn::Password, peer).await,
        Ok(None) => {
            let e = OidcError::new(StatusCode::UNAUTHORIZED, "access_denied", "Wrong user name or password.");
            retry(&s, None, &f.csrf, &f.username, &e).await
        }
        Err(e) => retry(&s, None, &f.csrf, &f.username, &e).await,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A signed-in browser's form, CSRF-checked: its session.
async fn session_form(
    s: &Signin,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<crate::provider::BrowserSession, Response> {
    if let Err(e) = checked(&s.op, headers, "", csrf).await {
        return Err(failed_page(&e));
    }
    match browser_session(&s.op, headers).await {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(see_other("/account")),
        Err(e) => Err(internal_page(e)),
    }
}

async fn signout(State(St(s)): State<St>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Err(e) = checked(&s.op, &headers, "", &f.csrf).await {
        return failed_page(&e);
    }
    let frames = match cookie(&headers, SESSION_COOKIE) {
        Some(t) => match s.op.end_session(&t).await {
            Ok(f) => f,
            Err(e) => return internal_page(e),
        },
        None => Vec::new(),
    };
    let mut r = match frames.is_empty() {
        true => see_other("/account"),
        false => crate::api::html_framing(
            StatusCode::OK,
            crate::pages::signed_out_of(&frames, Some("/account")),
            None,
            &frames,
        ),
    };
    set_cookie(&mut r, &s.op, SESSION_COOKIE, "", 0);
    r
}

/// End every other browser session and every token sites hold for the user; this browser
/// stays signed in.
async fn signout_everywhere(State(St(s)): State<St>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let session = match session_form(&s, &headers, &f.csrf).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let keep = cookie(&headers, SESSION_COOKIE).map(|t| token_hash(&t));
    match s.accounts.sign_out_everywhere(&session.user_id, keep.as_deref()).await {
        Ok(()) => {
            s.op.logouts_written();
            see_other("/account?done=signed-out")
        }
        Err(e) => internal_page(OidcError::from(e)),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    csrf: String,
    client_id: String,
}

async fn revoke_consent(State(St(s)): State<St>, headers: HeaderMap, Form(f): Form<RevokeForm>) -> Response {
    let session = match session_form(&s, &headers, &f.csrf).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.op.revoke_consent(&session.user_id, &f.client_id).await {
        Ok(true) => see_other("/account?done=revoked"),
        Ok(false) => error_page(StatusCode::NOT_FOUND, "Not found", "You have not allowed that site."),
        Err(e) => internal_page(e),
    }
}

#[derive(Deserialize)]
struct RemovePasskeyForm {
    csrf: String,
    id: String,
}

async fn remove_passkey_form(
    State(St(s)): State<St>,
    headers: HeaderMap,
    Form(f): Form<RemovePasskeyForm>,
) -> Response {
    let session = match session_form(&s, &headers, &f.csrf).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.passkeys.remove(&session.user_id, &f.id).await {
        Ok(true) => see_other("/account?done=removed"),
        Ok(false) => error_page(StatusCode::NOT_FOUND, "Not found", "You have no passkey with that id."),
        Err(e) => internal_page(e),
    }
}

/// Who a passkey is being registered for, and what the ceremony is bound to: a live link
/// from `sichat passkey add`, else the browser's session.
async fn registrant(
    s: &Signin,
    headers: &HeaderMap,
    csrf: &str,
    link: &str,
) -> Result<(String, String, String), OidcError> {
    checked(&s.op, headers, "", csrf).await?;
    if !link.is_empty() {
        let (user_id, user_name, _) = s.passkeys.link(link).await?.ok_or_else(|| {
            OidcError::bad("invalid_request", "this link has expired or was used: run `sichat passkey add` again")
        })?;
        return Ok((user_id, user_name, format!("link:{}", token_hash(link))));
    }
    let token = cookie(headers, SESSION_COOKIE).unwrap_or_default();
    match s.op.session(&token).await? {
        Some(x) => Ok((x.user_id, x.user_name, format!("session:{}", token_hash(&token)))),
        None => Err(OidcError::new(StatusCode::UNAUTHORIZED, "login_required", "Sign in on the account page first.")),
    }
}

#[derive(Deserialize)]
struct RegisterOptionsBody {
    csrf: String,
    #[serde(default)]
    link: String,
}

async fn register_options(
    State(St(s)): State<St>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<RegisterOptionsBody>,
) -> Result<Response, ApiError> {
    let (user_id, user_name, bound) = registrant(&s, &headers, &b.csrf, &b.link).await.map_err(api_error)?;
    let (ceremony, options) = s.passkeys.start_registration(&user_id, &user_name, &bound).await.map_err(api_error)?;
    Ok(no_store(json!({"ceremony": ceremony, "options": options})))
}

#[derive(Deserialize)]
struct RegisterForm {
    csrf: String,
    ceremony: String,
    credential: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    link: String,
}

async fn register(
    State(St(s)): State<St>,
    headers: HeaderMap,
    form: Result<Form<RegisterForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "The passkey form is incomplete.");
    };
    let fail = |e: OidcError| match e.status.is_server_error() {
        true => internal_page(e),
        false => error_page(e.status, "The passkey was not added", &e.description),
    };
    let (_, _, bound) = match registrant(&s, &headers, &f.csrf, &f.link).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let cred = match serde_json::from_str::<RegisterPublicKeyCredential>(&f.credential) {
        Ok(c) => c,
        Err(e) => return fail(OidcError::bad("invalid_request", format!("the browser's answer is malformed: {e}"))),
    };
    let link = (!f.link.is_empty()).then_some(f.link.as_str());
    let name = if f.name.trim().is_empty() { "passkey" } else { f.name.as_str() };
    match s.passkeys.finish_registration(&f.ceremony, &bound, &cred, name, link).await {
        Ok((_, info)) if link.is_some() => html(StatusCode::OK, signin_pages::passkey_added(&info.name), None),
        Ok(_) => see_other("/account?done=added"),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    link: String,
}

async fn link_page(State(St(s)): State<St>, headers: HeaderMap, ApiQuery(q): ApiQuery<LinkQuery>) -> Response {
    match s.passkeys.link(&q.link).await {
        Ok(Some((_, user_name, name))) => {
            let csrf = account_csrf(&headers);
            let mut r =
                html(StatusCode::OK, signin_pages::add_passkey_by_link(&user_name, &name, &csrf, &q.link), None);
            set_cookie(&mut r, &s.op, CSRF_COOKIE, &csrf, SESSION_TTL_MS / 1000);
            r
        }
        Ok(None) => error_page(
            StatusCode::BAD_REQUEST,
            "This link has expired",
            "A passkey link works once, for 10 minutes: run `sichat passkey add` again.",
        ),
        Err(e) => internal_page(e),
    }
}

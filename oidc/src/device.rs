//! `/oidc/device`: where a user types the code a device shows (RFC 8628 §3.3), or arrives
//! from its `verification_uri_complete`. A known code becomes an authorization request: the
//! sign-in page (password, passkey or wallet approval) if the browser is not signed in, then
//! a consent page naming the device's client and the code, whose answer approves or refuses
//! the device ([`crate::provider`]'s `device` submodule holds the grant itself).

use crate::api::{cookie, error_page, html, internal_page, set_cookie, CSRF_COOKIE};
use crate::pages::{esc, page};
use crate::provider::{Pending, Provider};
use crate::signin::Signin;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use sichat_core::http::{ApiQuery, ClientAddr};
use sichat_core::ids::random_token;
use std::sync::Arc;

#[derive(Clone)]
struct St(Arc<Signin>);

pub fn router(signin: Arc<Signin>) -> Router {
    Router::new().route("/oidc/device", get(code_page).post(code_entered)).with_state(St(signin))
}

#[derive(Deserialize)]
struct CodeQuery {
    user_code: Option<String>,
}

#[derive(Deserialize)]
struct CodeForm {
    user_code: String,
    csrf: String,
}

fn form(code: &str, csrf: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"err\">{}</p>", esc(e))).unwrap_or_default();
    page(
        "Sign in a device",
        &format!(
            "<h1>Sign in a device</h1><p>Type the code your TV, app or command line shows.</p>{error}\
             <form method=\"post\" action=\"/oidc/device\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"user_code\">Code</label>\
             <input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{code}\" autocomplete=\"off\" \
             autocapitalize=\"characters\" spellcheck=\"false\" placeholder=\"ABCD-1234\" required>\
             <button type=\"submit\">Continue</button></form>\
             <p class=\"muted\">Only type a code from a device in front of you.</p>",
            csrf = esc(csrf),
            code = esc(code),
        ),
    )
}

fn with_csrf(op: &Provider, status: StatusCode, code: &str, error: Option<&str>) -> Response {
    let csrf = random_token();
    let mut r = html(status, form(code, &csrf, error), None);
    set_cookie(&mut r, op, CSRF_COOKIE, &csrf, 600);
    r
}

async fn code_page(State(St(s)): State<St>, ApiQuery(q): ApiQuery<CodeQuery>) -> Response {
    with_csrf(&s.op, StatusCode::OK, q.user_code.as_deref().unwrap_or_default(), None)
}

async fn code_entered(
    State(St(s)): State<St>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "Send the code the device shows.");
    };
    if f.csrf.is_empty() || cookie(&headers, CSRF_COOKIE).as_deref() != Some(f.csrf.as_str()) {
        return with_csrf(&s.op, StatusCode::FORBIDDEN, &f.user_code, Some("The form expired: send the code again."));
    }
    let device = match s.approvals.device(&f.user_code, &peer.to_string()).await {
        Ok(d) => d,
        Err(e) if e.status.is_server_error() => return internal_page(e),
        Err(e) => return with_csrf(&s.op, e.status, &f.user_code, Some(&e.description)),
    };
    let client = match s.op.client(&device.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown device",
                "The device's app is no longer registered here.",
            )
        }
        Err(e) => return internal_page(e),
    };
    crate::api::start_request(&s, &headers, Provider::device_request(&device), client).await
}

/// The consent page's answer for a device: approve it for the signed-in user, or refuse it.
pub(crate) async fn decided(
    op: &Provider,
    pending: &Pending,
    session: &crate::provider::BrowserSession,
    allow: bool,
) -> Response {
    let Some(device) = &pending.params.device else {
        return internal_page(crate::OidcError::internal("not a device request"));
    };
    if !allow {
        let _ = op.finish_request(&pending.id).await;
        if let Err(e) = op.deny_device(&device.id).await {
            return internal_page(e);
        }
        return html(
            StatusCode::OK,
            page(
                "Device refused",
                "<h1>Device refused</h1><p>The device was not signed in. You can close this page.</p>",
            ),
            None,
        );
    }
    let approval = crate::provider::DeviceApproval {
        id: device.id.clone(),
        user_id: session.user_id.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        scope: pending.params.scope.clone(),
        request: Some(pending.id.clone()),
    };
    match op.approve_device(approval).await {
        Ok(true) => html(
            StatusCode::OK,
            page(
                "Device signed in",
                &format!(
                    "<h1>Device signed in</h1><p>{} on the device showing <strong>{}</strong> is signed in as \
                     <strong>{}</strong>. You can close this page.</p>",
                    esc(pending.client.name()),
                    esc(&device.user_code),
                    esc(&session.user_name)
                ),
            ),
            None,
        ),
        Ok(false) => error_page(
            StatusCode::GONE,
            "This code has expired",
            "The device's code expired or was already answered: start again on the device.",
        ),
        Err(e) => internal_page(e),
    }
}

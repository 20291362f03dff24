//! The two ways an [`OidcError`] reaches the outside, each mapped here once: an OAuth JSON
//! error (RFC 6749 §5.2) for what clients call, an HTML page for what a browser shows.

use super::{html, pages};
use crate::OidcError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error of an endpoint a client calls: JSON, never cached, and a `401` with its
/// `WWW-Authenticate` challenge.
pub(crate) struct OAuthJson(pub OidcError);

impl From<OidcError> for OAuthJson {
    fn from(e: OidcError) -> Self {
        Self(e)
    }
}

impl From<sqlx::Error> for OAuthJson {
    fn from(e: sqlx::Error) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for OAuthJson {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut r = (e.status, Json(json!({"error": e.code, "error_description": e.description}))).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if e.status == StatusCode::UNAUTHORIZED {
            let challenge = match e.code {
                "invalid_client" => "Basic realm=\"sichat\"".to_owned(),
                "invalid_dpop_proof" => {
                    format!("DPoP error=\"invalid_dpop_proof\", algs=\"{}\"", crate::provider::DPOP_ALGS.join(" "))
                }
                code => format!("Bearer error=\"{code}\""),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }
}

/// An error a browser shows: a page with a title and what to do.
pub(crate) struct ErrorPage {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl ErrorPage {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self { status, title, message: message.into() }
    }
}

impl From<OidcError> for ErrorPage {
    fn from(e: OidcError) -> Self {
        let title = if e.status.is_server_error() { "Something went wrong" } else { "Bad request" };
        Self::new(e.status, title, e.description)
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        html(self.status, pages::error(self.title, &self.message), None)
    }
}

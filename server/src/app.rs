//! The HTTP application: every crate's router under one axum app, with the limits that
//! apply to every request (body size, time, rate) and the node's own endpoints.

use crate::metrics;
use crate::startup::Node;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sichat_core::http::{ApiError, ClientAddr};
use sichat_core::node::{FormerUrl, NodeIdentity};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub type Limiter = Arc<DefaultKeyedRateLimiter<IpAddr>>;

pub fn rate_limiter(per_second: u32, burst: u32) -> Limiter {
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)))
}

/// The per-client-address limits: one for the general routes, one for messaging.
/// Housekeeping forgets idle addresses in both ([`Limiters::retain_recent`]).
#[derive(Clone)]
pub struct Limiters {
    pub general: Limiter,
    pub messaging: Limiter,
}

impl Limiters {
    pub fn new(config: &crate::Config) -> Self {
        Self {
            general: rate_limiter(config.rate_limit_per_second, config.rate_limit_burst),
            messaging: rate_limiter(config.msg_ip_per_second, config.msg_ip_per_second.saturating_mul(2)),
        }
    }

    pub fn retain_recent(&self) {
        self.general.retain_recent();
        self.messaging.retain_recent();
    }
}

/// The whole app of a node.
pub fn router(node: &Node, limiters: &Limiters) -> Router {
    let limited = Router::new()
        .route("/.well-known/did.json", get(node_did_document))
        // A public URL with a path (https://host/sichat) makes did:web:host:sichat, whose
        // document lives at /sichat/did.json: behind a proxy that strips the prefix, here.
        .route("/did.json", get(node_did_document))
        .route("/.well-known/did.jsonl", get(node_did_log))
        .route("/did.jsonl", get(node_did_log))
        .with_state(node.clone())
        .merge(sichat_accounts::api::router(node.accounts.clone()))
        .merge(sichat_accounts::api::history::router(node.accounts.clone()))
        .merge(sichat_accounts::api::recovery::router(node.accounts.clone(), node.resolver.clone()))
        .merge(sichat_issuer::api::router(node.issuer.clone(), node.accounts.clone()))
        .merge(sichat_holder::store::router(node.db.clone(), node.accounts.clone()))
        .merge(sichat_verifier::api::router(node.presentations.clone(), node.accounts.clone()))
        .merge(sichat_oidc::api::router(node.oidc.clone(), node.accounts.clone()))
        .fallback(not_found);
    // A moved account's bundle is large: its routes have a limit of their own.
    let moves = sichat_core::http::limit_body(
        sichat_accounts::api::moves_router(node.accounts.clone()),
        node.config.move_body_limit_bytes,
    );
    let limited = sichat_core::http::limit_body(limited, node.config.body_limit_bytes)
        .merge(moves)
        .layer(middleware::from_fn_with_state(node.accounts.clone(), sichat_accounts::api::redirect_moved))
        .layer(middleware::from_fn_with_state(limiters.general.clone(), rate_limit));
    // Messaging has limits of its own, per device, sending node and sender: a node
    // delivering for many users must not hit a per-address limit meant for browsers.
    let messaging = sichat_messaging::api::router(node.messaging.clone())
        .layer(middleware::from_fn_with_state(limiters.messaging.clone(), rate_limit));
    // Probes and scrapers are never rate limited.
    let operations =
        Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics_endpoint)).with_state(node.clone());
    limited
        .merge(messaging)
        .merge(operations)
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(node.config.request_timeout_secs),
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("handler panicked").into_response()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(middleware::from_fn_with_state(node.identity.clone(), mark_former_url))
        // First of all: who is asking, for every per-address limit after it.
        .layer(middleware::from_fn_with_state(node.config.trusted_proxies(), crate::proxy::record_client))
}

/// Request spans name the route template, never the path itself: some paths carry
/// secrets (an offer by reference holds its pre-authorized code).
fn request_span(req: &Request<Body>) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
    tracing::info_span!("request", method = %req.method(), route)
}

/// The node's `did:web` document, or, asked at a URL the node left, the document of the
/// DID made from that URL.
async fn node_did_document(State(node): State<Node>, former: Option<Extension<FormerUrl>>) -> impl IntoResponse {
    let doc = match former {
        Some(Extension(f)) => node.identity.former_did_document(&f),
        None => node.identity.did_document(),
    };
    ([(header::CONTENT_TYPE, "application/did+json"), (header::CACHE_CONTROL, "max-age=300")], Json(doc))
}

/// The node's `did:webvh` log, when its host is a domain name.
async fn node_did_log(State(node): State<Node>) -> Response {
    match node.identity.did_log() {
        Some(log) => (
            [(header::CONTENT_TYPE, "text/jsonl; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
            log.to_owned(),
        )
            .into_response(),
        None => not_found().await.into_response(),
    }
}

async fn healthz(State(node): State<Node>) -> Response {
    match node.db.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "database unreachable"})))
                .into_response()
        }
    }
}

async fn metrics_endpoint() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render())
}

/// Every error is the JSON error body: a rejection that some layer or extractor answered
/// in plain text or with no body (a body over the limit, a method not allowed, a timeout) is
/// rewritten by the one mapping in `sichat_core::http`. HTML pages and JSON bodies pass.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let plain = match response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(ct) => ct.starts_with("text/plain"),
    };
    if response.status().as_u16() < 400 || !plain {
        return response;
    }
    sichat_core::http::rejection(response).await.into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// A request for a host the node had before (`sichatd admin change-url`; the old name
/// still points here) carries that [`FormerUrl`]: the DID documents answered are then those
/// of the old DIDs. The host asked for decides ([`crate::proxy::RequestHost`]: a trusted
/// proxy's `X-Forwarded-Host`, else `Host`).
async fn mark_former_url(State(identity): State<Arc<NodeIdentity>>, mut req: Request, next: Next) -> Response {
    if !identity.former().is_empty() {
        let host = req.extensions().get::<crate::proxy::RequestHost>().map(|h| h.0.clone());
        if let Some(former) = host.and_then(|h| identity.former_at(&h).cloned()) {
            req.extensions_mut().insert(former);
        }
    }
    next.run(req).await
}

/// Per-client-address rate limit.
async fn rate_limit(State(limiter): State<Limiter>, req: Request, next: Next) -> Response {
    if let Some(ClientAddr(ip)) = ClientAddr::from_extensions(req.extensions()) {
        if limiter.check_key(&ip).is_err() {
            ::metrics::counter!("sichat_rate_limited_total").increment(1);
            let mut resp =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests: slow down and retry")
                    .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
    }
    next.run(req).await
}

async fn record_metrics(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    ::metrics::counter!("sichat_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    ::metrics::histogram!("sichat_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Housekeeping forgets idle client addresses in both limiters: a flood of addresses
    /// cannot grow either map for ever.
    #[test]
    fn both_limiters_forget_idle_addresses() {
        let limiters = Limiters::new(&crate::Config::default());
        for i in 0..100u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(limiters.general.check_key(&ip).is_ok());
            assert!(limiters.messaging.check_key(&ip).is_ok());
        }
        assert_eq!((limiters.general.len(), limiters.messaging.len()), (100, 100));
        // One request each is forgiven within a second at the default rates.
        std::thread::sleep(Duration::from_millis(1100));
        limiters.retain_recent();
        assert_eq!((limiters.general.len(), limiters.messaging.len()), (0, 0));
    }
}

//! `sichat verifier request` in a wallet with no node: the wallet is the OpenID4VP verifier
//! for one request. It serves the signed request object and takes the `direct_post` answer
//! on a port of its own (loopback, or the LAN with `--listen` and `--url`), verifies it,
//! prints the result and stops.

use crate::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{Form, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sichat_core::did::Did;
use sichat_core::ids::{new_id, now_ms, random_token};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::p256key::KeyPair;
use sichat_verifier::oid4vp::{
    answers_request, read_vp_token, NewRequest, RequestObject, DID_PREFIX, REQUEST_TTL_MS, REQUEST_TYP,
};
use sichat_verifier::policy::{Issuers, TrustPolicy, TrustRule};
use sichat_verifier::verify::{Expectation, Options, Report};
use sichat_verifier::Verifier;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// Largest `direct_post` body taken: a presentation with a few credentials.
const MAX_BODY: usize = 512 * 1024;

/// Where and how long the wallet listens.
pub struct Listen {
    pub addr: SocketAddr,
    /// The base URL the holder's wallet reaches this one at [default: http://<addr>].
    pub url: Option<String>,
    pub wait_secs: u64,
}

struct Pending {
    id: String,
    jwt: String,
    nonce: String,
    client_id: String,
    policy: TrustPolicy,
    verifier: Verifier,
    /// The verified answer, once: the first signed answer closes the request.
    done: Mutex<Option<mpsc::Sender<Report>>>,
}

/// Serve one request, wait for its answer, print the result. Exits 2 when the answer's
/// credentials are not accepted, as `sichat verify` does.
pub async fn request(ctx: &Ctx, want: NewRequest, listen: Listen) -> Result<()> {
    let (w, _) = ctx.open()?;
    let root = crate::need_root(&w)?;
    let did = Did::parse(&w.profile.did)?;
    for issuer in &want.issuers {
        Did::parse(issuer).map_err(|e| anyhow!("--issuer {issuer}: {e}"))?;
    }
    if want.holders_of.is_some() {
        bail!("--trust-holders-of needs your node's issuance log; a wallet with no node can name --issuer DIDs");
    }
    if listen.wait_secs == 0 || listen.wait_secs as i64 > REQUEST_TTL_MS / 1000 {
        bail!("--wait must be from 1 to {} seconds (how long a request may be answered)", REQUEST_TTL_MS / 1000);
    }
    let listener = tokio::net::TcpListener::bind(listen.addr)
        .await
        .with_context(|| format!("cannot listen on {}", listen.addr))?;
    let bound = listener.local_addr()?;
    let base = listen.url.unwrap_or_else(|| format!("http://{bound}"));
    let base = base.trim_end_matches('/');
    url::Url::parse(base).map_err(|_| anyhow!("--url {base:?} is not a URL"))?;

    let id = new_id();
    let nonce = random_token();
    let client_id = format!("{DID_PREFIX}{did}");
    let claims = RequestObject {
        client_id: &client_id,
        client_name: w.profile.name.as_deref().unwrap_or(&w.profile.device_name),
        response_uri: &format!("{base}/oid4vp/responses/{id}"),
        nonce: &nonce,
        state: &id,
        request: &want,
    }
    .claims(now_ms());
    let key = KeyPair::Ed25519(Ed25519KeyPair::from_secret(&root.secret())?);
    let kid = format!("{did}#{}", root.public().to_multibase());
    let jwt = jws::sign_with(&key, REQUEST_TYP, Some(&kid), &claims)?;
    let issuers = match want.issuers.is_empty() {
        true => Issuers::Any,
        false => Issuers::Dids(want.issuers.clone()),
    };
    let (tx, mut rx) = mpsc::channel(1);
    let pending = Arc::new(Pending {
        id: id.clone(),
        jwt,
        nonce,
        client_id: client_id.clone(),
        policy: TrustPolicy { rules: vec![TrustRule { type_name: want.type_name.clone(), issuers }] },
        verifier: Verifier::with_resolver(Arc::new(ctx.resolver(&[])?), Default::default()),
        done: Mutex::new(Some(tx)),
    });
    let app = Router::new()
        .route("/oid4vp/requests/{id}", get(request_object))
        .route("/oid4vp/responses/{id}", post(respond))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(pending);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let uri = RequestObject::uri(&client_id, &format!("{base}/oid4vp/requests/{id}"));
    if ctx.json {
        eprintln!("{}", json!({"request_uri": uri, "id": id}));
    } else {
        eprintln!("{uri}");
        if let Some(code) = crate::credential::qr(&uri) {
            eprintln!("{code}");
        }
        eprintln!(
            "The holder runs: sichat present '<the URI above>'. Waiting up to {} s for the answer …",
            listen.wait_secs
        );
    }
    let answer = tokio::time::timeout(std::time::Duration::from_secs(listen.wait_secs), rx.recv()).await;
    server.abort();
    let report = match answer {
        Ok(Some(report)) => report,
        Ok(None) | Err(_) => bail!("no answer came within {} s; the request is closed", listen.wait_secs),
    };
    ctx.print(&report, |r| crate::verify::print_report(r, 0))?;
    if !report.valid {
        std::process::exit(2);
    }
    Ok(())
}

async fn request_object(State(p): State<Arc<Pending>>, Path(id): Path<String>) -> Response {
    if id != p.id || p.done.lock().await.is_none() {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_request", "no such open presentation request");
    }
    let content_type = format!("application/{REQUEST_TYP}");
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store".into())], p.jwt.clone()).into_response()
}

#[derive(Deserialize)]
struct DirectPost {
    vp_token: Option<String>,
    state: Option<String>,
}

/// `direct_post`, as the node answers it: 200 `{}` when verified, 400 otherwise. What is
/// not the holder's signed answer to this request leaves it open.
async fn respond(State(p): State<Arc<Pending>>, Path(id): Path<String>, Form(post): Form<DirectPost>) -> Response {
    if id != p.id || post.state.as_deref().is_some_and(|s| s != id) {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_request", "no such open presentation request");
    }
    let (format, text) = match read_vp_token(post.vp_token.as_deref()) {
        Ok(t) => t,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let opts = Options {
        expect: Some(Expectation { nonce: p.nonce.clone(), audience: p.client_id.clone() }),
        policy: Some(p.policy.clone()),
        ..Options::default()
    };
    let report = p.verifier.verify_presentation(format, &text, &opts).await;
    if let Err(why) = answers_request(&report) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("not an answer to this request, which stays open: {why}"),
        );
    }
    let Some(done) = p.done.lock().await.take() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "this request was already answered");
    };
    let valid = report.valid;
    let why = report.first_failure().map(|c| format!("{}: {}", c.check, c.reason)).unwrap_or_default();
    let _ = done.send(report).await;
    match valid {
        true => ([(header::CACHE_CONTROL, "no-store")], Json(json!({}))).into_response(),
        false => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_presentation",
            &format!("the presentation was not accepted: {why}"),
        ),
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, Json(json!({"error": code, "error_description": description}))).into_response()
}

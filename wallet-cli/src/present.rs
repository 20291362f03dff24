//! OpenID4VP: asking for credentials (`sichat verifier …`) and presenting them
//! (`sichat present`).

use crate::wallet::{HeldCredential, Wallet};
use crate::{credential::qr, date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sichat_core::ids::now_ms;
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::Fetcher;
use sichat_core::p256key::KeyPair;
use sichat_core::resolver::{Relationship, Resolver};
use sichat_issuer::data_integrity::{self, ProofPurpose};
use sichat_verifier::oid4vp::{NewRequest, RequestCreated, RequestState, DID_PREFIX, REQUEST_TYP};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Subcommand)]
pub enum VerifierCmd {
    /// Ask someone for a credential: prints an openid4vp:// URI (and a QR code) for their
    /// wallet, and the id to read the result with.
    Request {
        /// The credential type wanted, e.g. FriendCredential.
        #[arg(long = "type")]
        type_name: String,
        /// Accept it only from this issuer (DID); repeat for more [default: any issuer].
        #[arg(long = "issuer", value_name = "DID")]
        issuers: Vec<String>,
        /// Also accept issuers who hold a credential of this type that you issued them
        /// (e.g. FriendCredential: "a friend of a friend").
        #[arg(long, value_name = "TYPE")]
        trust_holders_of: Option<String>,
    },
    /// The result of a request: pending, verified or rejected, with every check.
    Result {
        id: String,
        /// Wait (up to this many seconds) while it is pending.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
}

#[derive(Args)]
pub struct PresentArgs {
    /// The openid4vp:// URI from the verifier.
    uri: String,
    /// Present this credential (by id) instead of choosing.
    #[arg(long)]
    select: Option<String>,
    /// Do not ask for confirmation (for scripts).
    #[arg(long)]
    yes: bool,
}

pub async fn verifier(ctx: &Ctx, cmd: VerifierCmd) -> Result<()> {
    let (_, mut c) = ctx.session().await?;
    let result = match cmd {
        VerifierCmd::Request { type_name, issuers, trust_holders_of } => {
            let body = NewRequest { type_name, issuers, holders_of: trust_holders_of };
            let made: Result<RequestCreated> = c.post("/api/v1/verifier/requests", &body).await;
            made.and_then(|r| {
                ctx.print(&r, |r| {
                    println!("{}", r.request_uri);
                    if let Some(code) = qr(&r.request_uri) {
                        println!("{code}");
                    }
                    println!(
                        "Request {} expires {}. The holder runs: sichat present '<the URI above>'\nThen: sichat verifier result {}",
                        r.id,
                        date(r.expires_at),
                        r.id
                    );
                })
            })
        }
        VerifierCmd::Result { id, wait } => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
            let state = loop {
                let s: RequestState = match c.get(&format!("/api/v1/verifier/requests/{id}")).await {
                    Ok(s) => s,
                    Err(e) => break Err(e),
                };
                if s.status != "pending" || std::time::Instant::now() >= deadline {
                    break Ok(s);
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            };
            state.and_then(|s| {
                ctx.print(&s, |s| {
                    println!("{}: {} ({})", s.id, s.status, s.type_name);
                    if s.refused_answers > 0 {
                        println!(
                            "  {} response(s) refused as not signed answers to this request: someone else saw it",
                            s.refused_answers
                        );
                    }
                    if let Some(r) = &s.result {
                        crate::verify::print_report(r, 2);
                    }
                })
            })
        }
    };
    c.logout().await;
    result
}

/// The request, fetched by reference and checked: signed by a key of the DID its client
/// identifier names.
struct Request {
    client_id: String,
    verifier_did: String,
    name: String,
    claims: Value,
}

async fn fetch_request(uri: &str, resolver: &Resolver) -> Result<Request> {
    let u = url::Url::parse(uri.trim()).map_err(|_| anyhow!("not an openid4vp:// URI"))?;
    let param = |k: &str| u.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    let client_id = param("client_id").ok_or_else(|| anyhow!("the request has no client_id"))?;
    let request_uri =
        param("request_uri").ok_or_else(|| anyhow!("this wallet takes requests by reference (request_uri) only"))?;
    let verifier_did = client_id
        .strip_prefix(DID_PREFIX)
        .ok_or_else(|| {
            anyhow!("client_id {client_id:?}: this wallet accepts decentralized_identifier: verifiers only")
        })?
        .to_owned();
    let body = resolver.fetcher().get(&request_uri, &format!("application/{REQUEST_TYP}")).await?;
    let jwt = std::str::from_utf8(&body).map_err(|_| anyhow!("the request object is not text"))?.trim().to_owned();
    let header: Value = jwt
        .split('.')
        .next()
        .and_then(sichat_core::ids::b64url_decode)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| anyhow!("the request object is not a JWT"))?;
    let kid = header["kid"].as_str().ok_or_else(|| anyhow!("the request object names no kid"))?;
    if kid.split('#').next() != Some(verifier_did.as_str()) {
        bail!("the request is signed by {kid}, not by a key of {verifier_did}");
    }
    let keys = resolver.resolve(&verifier_did).await?;
    let key = keys
        .key_for(kid, Relationship::AssertionMethod)
        .or_else(|_| keys.key_for(kid, Relationship::Authentication))?;
    let claims: Value =
        jws::verify_with(&jwt, &key, REQUEST_TYP).map_err(|e| anyhow!("the request's signature is not valid: {e}"))?;
    if claims["client_id"].as_str() != Some(client_id.as_str()) {
        bail!("the signed request is for another client_id than the URI's");
    }
    if claims["response_type"] != "vp_token" || claims["response_mode"] != "direct_post" {
        bail!("only response_type vp_token with response_mode direct_post is supported");
    }
    if claims["exp"].as_i64().is_some_and(|e| e * 1000 < now_ms()) {
        bail!("this request has expired: ask the verifier for a new one");
    }
    for k in ["nonce", "response_uri"] {
        if !claims[k].is_string() {
            bail!("the request has no {k}");
        }
    }
    let name = claims.pointer("/client_metadata/client_name").and_then(Value::as_str).unwrap_or("").to_owned();
    Ok(Request { client_id, verifier_did, name, claims })
}

/// The DCQL credential queries a held credential satisfies: format, type and any
/// value constraints on its claims.
fn matches(query: &Value, held: &HeldCredential, vc: &Value) -> bool {
    let format_ok = matches!(
        (query["format"].as_str(), held.format.as_str()),
        (Some("jwt_vc_json" | "vc+jwt"), "vc+jwt") | (Some("ldp_vc"), "ldp_vc")
    );
    let types: Vec<&str> = vc["type"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let has = |t: &str| types.iter().any(|x| *x == t || t.rsplit(['#', '/']).next() == Some(x));
    let type_ok = query.pointer("/meta/type_values").and_then(Value::as_array).is_some_and(|alts| {
        alts.iter().any(|alt| alt.as_array().is_some_and(|a| a.iter().filter_map(Value::as_str).all(has)))
    });
    let claims_ok = query["claims"].as_array().into_iter().flatten().all(|c| {
        let path: Vec<&str> = c["path"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let value = path.iter().try_fold(vc, |v, k| v.get(k));
        match (value, c["values"].as_array()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(allowed)) => allowed.contains(v) || allowed.iter().any(|a| v.get("id") == Some(a)),
        }
    });
    format_ok && type_ok && claims_ok
}

pub async fn present(ctx: &Ctx, a: PresentArgs) -> Result<()> {
    let (w, _) = ctx.open()?;
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let fetcher = resolver.fetcher().clone();
    let req = fetch_request(&a.uri, &resolver).await?;
    let queries: Vec<Value> =
        req.claims.pointer("/dcql_query/credentials").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut candidates: Vec<(&HeldCredential, Value, String)> = Vec::new();
    for held in &w.credentials {
        let vc = sichat_holder::check::unverified(&held.format, &held.credential)?;
        if vc.pointer("/credentialSubject/id").and_then(Value::as_str) != Some(w.profile.did.as_str()) {
            continue;
        }
        if let Some(q) = queries.iter().find(|q| matches(q, held, &vc)) {
            candidates.push((held, vc, q["id"].as_str().unwrap_or_default().to_owned()));
        }
    }
    let wanted: Vec<String> = queries
        .iter()
        .filter_map(|q| q.pointer("/meta/type_values/0/0").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let who =
        if req.name.is_empty() { req.verifier_did.clone() } else { format!("{} ({})", req.name, req.verifier_did) };
    if !ctx.json {
        eprintln!("{who} asks for a {}.", wanted.first().map(String::as_str).unwrap_or("credential"));
    }
    let chosen = match &a.select {
        Some(id) => candidates
            .iter()
            .find(|(h, _, _)| &h.id == id)
            .ok_or_else(|| anyhow!("credential {id} does not answer this request (see `sichat credential list`)"))?,
        None => match candidates.len() {
            0 => bail!("this wallet holds no credential that answers the request ({})", wanted.join(", ")),
            1 => &candidates[0],
            _ if std::io::stdin().is_terminal() => {
                for (i, (h, vc, _)) in candidates.iter().enumerate() {
                    eprintln!("  [{}] {} from {} ({})", i + 1, h.id, vc["issuer"], h.format);
                }
                let n: usize = prompt("Which one? ")?.trim().parse().context("answer with a number")?;
                candidates.get(n.wrapping_sub(1)).ok_or_else(|| anyhow!("no choice {n}"))?
            }
            _ => bail!("{} credentials answer this request: pass --select ID", candidates.len()),
        },
    };
    let (held, vc, query_id) = chosen;
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("presenting needs your confirmation: run it in a terminal, or pass --yes");
        }
        let ok = prompt(&format!("Present {} from {} to {who}? [y/N] ", held.id, vc["issuer"]))?;
        if !matches!(ok.trim(), "y" | "Y" | "yes") {
            bail!("not presented");
        }
    }
    let vp = sign_presentation(&w, held, &req, &fetcher).await?;
    let response_uri = req.claims["response_uri"].as_str().unwrap_or_default();
    fetcher.check_url(response_uri)?;
    let token = json!({query_id.as_str(): [vp]}).to_string();
    let state = req.claims["state"].as_str().unwrap_or_default();
    let http = sichat_holder::resolve::client()?;
    let resp = http
        .post(response_uri)
        .form(&[("vp_token", token.as_str()), ("state", state)])
        .send()
        .await
        .with_context(|| format!("cannot reach the verifier at {response_uri}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = body["error_description"].as_str().unwrap_or("no reason given");
        bail!("the verifier refused the presentation: {why}");
    }
    let out = json!({"presented": held.id, "to": req.verifier_did, "accepted": true});
    ctx.print(&out, |_| println!("Presented {} to {who}: accepted.", held.id))
}

/// The key this wallet presents with, and its DID URL: a key its DID document lists under
/// `authentication` (the device key, or the did:key itself).
fn holder_key(w: &Wallet) -> Result<(String, &Ed25519KeyPair)> {
    match &w.profile.server {
        Some(_) => Ok((format!("{}#device-{}", w.profile.did, w.profile.device_id), &w.device_sign)),
        None => {
            let root = w.root.as_ref().ok_or_else(|| anyhow!("this wallet has no key for its DID"))?;
            Ok((format!("{}#{}", w.profile.did, root.public().to_multibase()), root))
        }
    }
}

/// A `vp+jwt` presentation of one held `vc+jwt` credential, for `aud` and bound to `nonce`,
/// valid five minutes.
pub(crate) fn vp_jwt(w: &Wallet, held: &HeldCredential, aud: &str, nonce: &str) -> Result<String> {
    if held.format != "vc+jwt" {
        bail!("credential {} is {}; only vc+jwt credentials can be presented this way", held.id, held.format);
    }
    let (kid, key) = holder_key(w)?;
    let now = now_ms() / 1000;
    let vp = json!({
        "@context": [sichat_issuer::credential::VCDM2_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": w.profile.did,
        "verifiableCredential": [{
            "@context": [sichat_issuer::credential::VCDM2_CONTEXT],
            "type": "EnvelopedVerifiableCredential",
            "id": format!("data:application/vc+jwt,{}", held.credential),
        }],
        "nonce": nonce,
        "aud": aud,
        "iat": now,
        "exp": now + 300,
    });
    Ok(jws::sign(key, "vp+jwt", Some(&kid), &vp)?)
}

/// A presentation by this wallet's DID, signed with a key its DID document lists under
/// `authentication`: the device key, or the did:key itself.
async fn sign_presentation(w: &Wallet, held: &HeldCredential, req: &Request, fetcher: &Fetcher) -> Result<Value> {
    let nonce = req.claims["nonce"].as_str().unwrap_or_default();
    if held.format == "vc+jwt" {
        return Ok(Value::String(vp_jwt(w, held, &req.client_id, nonce)?));
    }
    let (kid, key) = holder_key(w)?;
    let mut vp = json!({
        "@context": [sichat_issuer::credential::VCDM2_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": w.profile.did,
    });
    let credential: Value = serde_json::from_str(&held.credential)?;
    vp["verifiableCredential"] = json!([credential]);
    let mut contexts = data_integrity::Contexts::new();
    for url in data_integrity::remote_contexts(&vp) {
        let body = fetcher.get(&url, "application/ld+json").await?;
        contexts.insert(url, String::from_utf8_lossy(&body).into_owned());
    }
    let key = KeyPair::Ed25519(Ed25519KeyPair::from_secret(&key.secret())?);
    data_integrity::sign_for(&key, &kid, &vp, &contexts, ProofPurpose::Authentication, Some((nonce, &req.client_id)))
        .await
        .map_err(|e| anyhow!(e))
}

fn prompt(question: &str) -> Result<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line)
}

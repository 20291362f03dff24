//! OpenID4VP: asking for credentials (`sichat verifier …`) and presenting them
//! (`sichat present`).

mod listen;

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
use sichat_holder::{check, dcql};
use sichat_issuer::data_integrity::{self, ProofPurpose};
use sichat_verifier::oid4vp::{NewRequest, RequestCreated, RequestState, DID_PREFIX, REQUEST_TYP};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Subcommand)]
pub enum VerifierCmd {
    /// Ask someone for a credential: prints an openid4vp:// URI (and a QR code) for their
    /// wallet, and the id to read the result with. A wallet with no node is the verifier
    /// itself: it serves the request on --listen, waits for the answer and prints the result.
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
        /// With no node: the address to serve the request on (0.0.0.0:PORT for the LAN).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// With no node: the base URL the holder's wallet reaches --listen at
        /// [default: http://<the address listened on>].
        #[arg(long)]
        url: Option<String>,
        /// With no node: seconds to wait for the answer (at most 600).
        #[arg(long, default_value_t = 600)]
        wait: u64,
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
    /// Present this credential (by id) instead of choosing; repeat it when the request
    /// asks for several credentials.
    #[arg(long)]
    select: Vec<String>,
    /// Do not ask for confirmation (for scripts).
    #[arg(long)]
    yes: bool,
}

pub async fn verifier(ctx: &Ctx, cmd: VerifierCmd) -> Result<()> {
    if crate::wallet::read_profile(&ctx.dir)?.server.is_none() {
        return match cmd {
            VerifierCmd::Request { type_name, issuers, trust_holders_of, listen, url, wait } => {
                let want = NewRequest { type_name, issuers, holders_of: trust_holders_of };
                listen::request(ctx, want, listen::Listen { addr: listen, url, wait_secs: wait }).await
            }
            VerifierCmd::Result { .. } => {
                bail!("a wallet with no node prints the result when the answer comes (`sichat verifier request`)")
            }
        };
    }
    let (_, mut c) = ctx.session().await?;
    let result = match cmd {
        VerifierCmd::Request { type_name, issuers, trust_holders_of, .. } => {
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

/// Whether a credential's live status rules it out: a verifier would refuse it, and the
/// request would be used up.
fn unusable(status: &check::Status) -> bool {
    status.revoked || status.suspended || matches!(status.state.as_str(), "expired" | "not yet valid")
}

pub async fn present(ctx: &Ctx, a: PresentArgs) -> Result<()> {
    let (w, _) = ctx.open()?;
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let fetcher = resolver.fetcher().clone();
    let req = fetch_request(&a.uri, &resolver).await?;
    let query = dcql::Query::parse(req.claims.get("dcql_query").unwrap_or(&Value::Null))?;
    let who =
        if req.name.is_empty() { req.verifier_did.clone() } else { format!("{} ({})", req.name, req.verifier_did) };

    // This wallet's own credentials that answer some query, with their status checked live
    // first: a revoked, suspended or expired one is left out, and the reason said.
    let mut usable: Vec<(&HeldCredential, Value, check::Status)> = Vec::new();
    let mut left_out: Vec<(String, String)> = Vec::new();
    for held in &w.credentials {
        let vc = check::unverified(&held.format, &held.credential)?;
        if !vc.pointer("/credentialSubject/id").and_then(Value::as_str).is_some_and(|s| is_mine(&w, s)) {
            continue;
        }
        let c = dcql::Candidate { id: &held.id, format: &held.format, vc: &vc };
        if !query.credentials.iter().any(|q| q.mismatch(&c).is_none()) {
            // Answers nothing: kept only so that an error can say why it does not match.
            let unchecked = check::Status { state: "not checked".into(), revoked: false, suspended: false };
            usable.push((held, vc, unchecked));
            continue;
        }
        let status = check::status(&resolver, &vc, now_ms()).await;
        if unusable(&status) {
            left_out.push((held.id.clone(), status.state));
            continue;
        }
        usable.push((held, vc, status));
    }
    for id in &a.select {
        if let Some((_, state)) = left_out.iter().find(|(l, _)| l == id) {
            bail!(
                "credential {id} is {state}: the verifier would refuse it and the request would be used up, so it is not presented"
            );
        }
    }
    if !ctx.json {
        for (id, state) in &left_out {
            eprintln!("Left out {id}: it is {state}, and a verifier would refuse it.");
        }
    }
    let candidates: Vec<dcql::Candidate<'_>> =
        usable.iter().map(|(h, vc, _)| dcql::Candidate { id: &h.id, format: &h.format, vc }).collect();
    let plan = dcql::plan(&query, &candidates, &a.select).map_err(|e| {
        let why = if left_out.is_empty() {
            String::new()
        } else {
            let l: Vec<String> = left_out.iter().map(|(id, s)| format!("{id} is {s}")).collect();
            format!(" (left out: {})", l.join(", "))
        };
        anyhow!("{e}{why}")
    })?;

    let asks: Vec<String> = plan
        .answers
        .iter()
        .filter_map(|an| query.credentials.iter().find(|q| q.id == an.query))
        .map(dcql::CredentialQuery::wanted)
        .collect();
    if !ctx.json {
        eprintln!("{who} asks for: {}.", asks.join(", "));
        if !plan.optional_left_out.is_empty() {
            eprintln!("Not sent (optional for the verifier): {}.", plan.optional_left_out.join(", "));
        }
    }
    // One credential per credential query: the only one, the one chosen, or asked for.
    let mut chosen: Vec<(String, usize)> = Vec::new();
    for an in &plan.answers {
        let pick = match an.candidates.as_slice() {
            [one] => *one,
            many if std::io::stdin().is_terminal() => {
                eprintln!("For {:?}:", an.query);
                for (n, &i) in many.iter().enumerate() {
                    let (h, vc, status) = &usable[i];
                    eprintln!("  [{}] {} from {} ({}, {})", n + 1, h.id, vc["issuer"], h.format, status.state);
                }
                let n: usize = prompt("Which one? ")?.trim().parse().context("answer with a number")?;
                *many.get(n.wrapping_sub(1)).ok_or_else(|| anyhow!("no choice {n}"))?
            }
            many => {
                bail!("{} credentials answer {:?}: pass --select ID (repeat it for each part)", many.len(), an.query)
            }
        };
        chosen.push((an.query.clone(), pick));
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("presenting needs your confirmation: run it in a terminal, or pass --yes");
        }
        let list: Vec<String> = chosen
            .iter()
            .map(|(_, i)| {
                let (h, vc, status) = &usable[*i];
                let note = if status.state == "active" { String::new() } else { format!(", status {}", status.state) };
                format!("{} from {}{note}", h.id, vc["issuer"])
            })
            .collect();
        let ok = prompt(&format!("Present {} to {who}? [y/N] ", list.join(" and ")))?;
        if !matches!(ok.trim(), "y" | "Y" | "yes") {
            bail!("not presented");
        }
    }
    let mut token = serde_json::Map::new();
    for (query_id, i) in &chosen {
        let vp = sign_presentation(&w, usable[*i].0, &req, &fetcher).await?;
        token.insert(query_id.clone(), json!([vp]));
    }
    let token = Value::Object(token).to_string();
    let response_uri = req.claims["response_uri"].as_str().unwrap_or_default();
    let state = req.claims["state"].as_str().unwrap_or_default();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("vp_token", &token)
        .append_pair("state", state)
        .finish();
    let headers = [("content-type", "application/x-www-form-urlencoded".to_owned())];
    let (status, body) = fetcher
        .post(response_uri, &headers, form.into_bytes())
        .await
        .with_context(|| format!("cannot reach the verifier at {response_uri}"))?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let why = body["error_description"].as_str().unwrap_or("no reason given");
        bail!("the verifier refused the presentation: {why}");
    }
    let ids: Vec<&str> = chosen.iter().map(|(_, i)| usable[*i].0.id.as_str()).collect();
    let out = json!({"presented": ids, "to": req.verifier_did, "accepted": true});
    ctx.print(&out, |_| println!("Presented {} to {who}: accepted.", ids.join(" and ")))
}

/// Whether `did` is this account's: its DID now, or one it had (its `did:webvh`, the DIDs of
/// nodes it moved from or of its node's former URL), whose documents list the same keys.
pub(crate) fn is_mine(w: &Wallet, did: &str) -> bool {
    w.profile.did == did || w.profile.also_known_as.iter().any(|d| d == did)
}

/// The DID a held credential is about (this account's, now or before), which presents it.
fn holder_of(w: &Wallet, held: &HeldCredential) -> Result<String> {
    let vc = check::unverified(&held.format, &held.credential)?;
    match vc.pointer("/credentialSubject/id").and_then(Value::as_str) {
        Some(subject) if is_mine(w, subject) => Ok(subject.to_owned()),
        _ => bail!("credential {} is about someone else, not you: it cannot be presented", held.id),
    }
}

/// The key this wallet presents with as `holder`, and its DID URL: a key the holder's DID
/// document lists under `authentication` (the device key, or the did:key itself). A
/// credential issued to a DID the account had before is presented under that DID, so the
/// holder binding holds.
fn holder_key<'w>(w: &'w Wallet, holder: &str) -> Result<(String, &'w Ed25519KeyPair)> {
    if holder.starts_with("did:key:") {
        // A did:key is its key: the root key it started as, or kept since a rotation.
        let key = [w.root.as_ref(), w.key_did.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| sichat_core::did::Did::key(&k.public()).as_str() == holder)
            .ok_or_else(|| anyhow!("credentials issued to {holder} are presented with its key, which this wallet does not hold: present them from the wallet that joined as it"))?;
        return Ok((format!("{holder}#{}", key.public().to_multibase()), key));
    }
    match &w.profile.server {
        Some(_) => Ok((format!("{holder}#device-{}", w.profile.device_id), &w.device_sign)),
        None => {
            let root = w.root.as_ref().ok_or_else(|| anyhow!("this wallet has no key for its DID"))?;
            Ok((format!("{holder}#{}", root.public().to_multibase()), root))
        }
    }
}

/// A `vp+jwt` presentation of one held `vc+jwt` credential, for `aud` and bound to `nonce`,
/// valid five minutes.
pub(crate) fn vp_jwt(w: &Wallet, held: &HeldCredential, aud: &str, nonce: &str) -> Result<String> {
    if held.format != "vc+jwt" {
        bail!("credential {} is {}; only vc+jwt credentials can be presented this way", held.id, held.format);
    }
    let holder = holder_of(w, held)?;
    let (kid, key) = holder_key(w, &holder)?;
    let now = now_ms() / 1000;
    let vp = json!({
        "@context": [sichat_issuer::credential::VCDM2_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": holder,
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
    let holder = holder_of(w, held)?;
    let (kid, key) = holder_key(w, &holder)?;
    let mut vp = json!({
        "@context": [sichat_issuer::credential::VCDM2_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": holder,
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

//! `sichat-load`: measures a running node on this machine.
//!
//! It registers one account with `--devices` devices (using an invite from
//! `sichatd admin invite`), then runs `--concurrency` loops until `--seconds` pass:
//! - `--scenario logins`: a device login each (challenge, node-signature check, signed
//!   answer, session);
//! - `--scenario issuance`: a full OpenID4VCI issuance each (offer, offer fetched by
//!   reference, token, nonce, proof of possession, credential).
//! - `--scenario presentations`: a full OpenID4VP round each, for one credential issued
//!   at the start (request created, signed request object fetched, `vp+jwt` signed,
//!   `direct_post` response verified with DID, signature, status and holder checks, result
//!   read back as `verified`).
//! - `--scenario oidc-discovery | oidc-client-credentials | oidc-introspect | oidc-refresh |
//!   oidc-dpop-refresh | oidc-login | oidc-device`: the OpenID Provider (see [`oidc`]). On a
//!   Sichat node the tool gives its account a password and registers a client; against
//!   another provider (`--issuer` with `--client-id` and `--client-secret`, e.g. the npm
//!   `oidc-provider` of `load/peer/`) it needs no invite.
//! - `--scenario messaging | messaging-fill`: messages end to end between two nodes, from a
//!   sender's device on `--server` to a recipient's device on `--recipient-server` (see
//!   [`messaging`]).
//!
//! Bounded in time and aimed at loopback only.

mod messaging;
mod oidc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::new_id;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, Ed25519Public, X25519KeyPair};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "sichat-load",
    version,
    about = "Logins, issuances, presentations, OpenID Provider requests or messages per second against nodes on \
             this machine"
)]
pub(crate) struct Args {
    /// The node, on loopback.
    #[arg(long, default_value = "http://localhost:8080")]
    server: String,
    /// An invite with quota ≥ 1 (sichatd admin invite --quota 1); not needed against
    /// another OpenID Provider.
    #[arg(long, required_unless_present = "client_id")]
    invite: Option<String>,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Devices to register and log in round-robin.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// What each loop does.
    #[arg(long, value_parser = [
        "logins", "issuance", "presentations", "oidc-discovery", "oidc-client-credentials",
        "oidc-introspect", "oidc-refresh", "oidc-dpop-refresh", "oidc-login", "oidc-device", "messaging",
        "messaging-fill",
    ], default_value = "logins")]
    scenario: String,
    /// messaging*: the recipient's node (the sender's is --server), on loopback.
    #[arg(long, required_if_eq_any = [("scenario", "messaging"), ("scenario", "messaging-fill")])]
    recipient_server: Option<String>,
    /// messaging*: an invite of the recipient's node (the sender's is --invite).
    #[arg(long, required_if_eq_any = [("scenario", "messaging"), ("scenario", "messaging-fill")])]
    recipient_invite: Option<String>,
    /// messaging: messages per second, sent on a fixed schedule whatever the answers take;
    /// 0 sends as fast as --concurrency loops can.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// messaging-fill: how many messages to leave waiting for the (offline) recipient.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// messaging*: after sending, wait at most this long for the last messages to arrive.
    #[arg(long, default_value_t = 60)]
    drain_seconds: u64,
    /// messaging*: process ids of the recipient's and the sender's nodes, for their RSS.
    #[arg(long)]
    recipient_pid: Option<u32>,
    #[arg(long)]
    sender_pid: Option<u32>,
    /// oidc-*: another OpenID Provider on this machine (its issuer URL) instead of the
    /// node's own; needs --client-id and --client-secret.
    #[arg(long, requires_all = ["client_id", "client_secret"])]
    issuer: Option<String>,
    /// oidc-*: a confidential client (client_secret_basic) of --issuer that may use the
    /// code flow, refresh tokens and client_credentials (and the device grant, for
    /// oidc-device).
    #[arg(long, requires = "issuer")]
    client_id: Option<String>,
    #[arg(long, requires = "issuer")]
    client_secret: Option<String>,
    /// oidc-*: the client's registered redirect URI (never contacted).
    #[arg(long, default_value = "http://127.0.0.1:9/cb")]
    redirect_uri: String,
    #[arg(long)]
    json: bool,
}

pub(crate) struct Device {
    sign: Ed25519KeyPair,
    agree: X25519KeyPair,
    id: String,
    cert: String,
}

pub(crate) struct Target {
    http: reqwest::Client,
    base: String,
    node_did: String,
    node_key: Ed25519Public,
    user_did: String,
}

pub(crate) async fn post(t: &Target, path: &str, body: &Value) -> Result<Value> {
    let r = t.http.post(format!("{}{path}", t.base)).json(body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

/// One full OpenID4VCI issuance to `holder` (a did:key), as the issuer `session`; returns
/// the `vc+jwt` credential.
async fn issuance(t: &Target, session: &str, user: &str, holder: &Ed25519KeyPair) -> Result<String> {
    let offer: Value = t
        .http
        .post(format!("{}/api/v1/issuer/offers", t.base))
        .bearer_auth(session)
        .json(&json!({"type": "FriendCredential", "subject": "anyone", "claims": {"name": "Load"}}))
        .send()
        .await?
        .json()
        .await?;
    let uri = offer["offer_uri"].as_str().context("offer_uri")?;
    let reference = url::Url::parse(uri)?
        .query_pairs()
        .find(|(k, _)| k == "credential_offer_uri")
        .map(|(_, v)| v.into_owned())
        .context("credential_offer_uri")?;
    let object: Value = t.http.get(&reference).send().await?.json().await?;
    let code = object
        .pointer("/grants/urn:ietf:params:oauth:grant-type:pre-authorized_code/pre-authorized_code")
        .and_then(Value::as_str)
        .context("pre-authorized_code")?;
    let issuer = format!("{}/users/{user}", t.base);
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:pre-authorized_code"), ("pre-authorized_code", code)];
    let token: Value = t.http.post(format!("{issuer}/oid4vci/token")).form(&form).send().await?.json().await?;
    let access = token["access_token"].as_str().context("access_token")?;
    let nonce = post(t, &format!("/users/{user}/oid4vci/nonce"), &json!({})).await?;
    let mb = holder.public().to_multibase();
    let claims = json!({"aud": issuer, "iat": now_secs(), "nonce": nonce["c_nonce"]});
    let proof = jws::sign(holder, "openid4vci-proof+jwt", Some(&format!("did:key:{mb}#{mb}")), &claims)?;
    let r = t
        .http
        .post(format!("{issuer}/oid4vci/credential"))
        .bearer_auth(access)
        .json(&json!({"credential_configuration_id": "FriendCredential", "proofs": {"jwt": [proof]}}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("credential: {}", r.status());
    }
    let body: Value = r.json().await?;
    Ok(body.pointer("/credentials/0/credential").and_then(Value::as_str).context("credential")?.to_owned())
}

/// A holder and the credential it presents in every OpenID4VP round.
struct Holder {
    key: Ed25519KeyPair,
    credential: String,
}

/// One full OpenID4VP round, as the requester `session` and the wallet `holder`.
async fn presentation(t: &Target, session: &str, holder: &Holder) -> Result<()> {
    let created: Value = t
        .http
        .post(format!("{}/api/v1/verifier/requests", t.base))
        .bearer_auth(session)
        .json(&json!({"type": "FriendCredential"}))
        .send()
        .await?
        .json()
        .await?;
    let uri = url::Url::parse(created["request_uri"].as_str().context("request_uri")?)?;
    let reference = uri.query_pairs().find(|(k, _)| k == "request_uri").map(|(_, v)| v.into_owned());
    let object = t.http.get(reference.context("request_uri in the URI")?).send().await?.text().await?;
    let req: Value = jws::unverified_payload(&object)?;
    let query = req
        .pointer("/dcql_query/credentials")
        .and_then(Value::as_array)
        .and_then(|qs| qs.iter().find(|q| q["format"] != "ldp_vc"))
        .and_then(|q| q["id"].as_str())
        .context("a JWT credential query")?;
    let mb = holder.key.public().to_multibase();
    let did = format!("did:key:{mb}");
    let now = now_secs();
    let vp = json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": ["VerifiablePresentation"],
        "holder": did,
        "verifiableCredential": [{
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "type": "EnvelopedVerifiableCredential",
            "id": format!("data:application/vc+jwt,{}", holder.credential),
        }],
        "nonce": req["nonce"], "aud": req["client_id"], "iat": now, "exp": now + 300,
    });
    let signed = jws::sign(&holder.key, "vp+jwt", Some(&format!("{did}#{mb}")), &vp)?;
    let token = json!({ query: [signed] }).to_string();
    let state = req["state"].as_str().unwrap_or_default();
    let response_uri = req["response_uri"].as_str().context("response_uri")?;
    let r = t.http.post(response_uri).form(&[("vp_token", token.as_str()), ("state", state)]).send().await?;
    if !r.status().is_success() {
        bail!("response: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    let result: Value = t
        .http
        .get(created["result_url"].as_str().context("result_url")?)
        .bearer_auth(session)
        .send()
        .await?
        .json()
        .await?;
    if result["status"] != "verified" {
        bail!("presentation not verified: {result}");
    }
    Ok(())
}

/// Log `d` in and return the session token.
pub(crate) async fn session(t: &Target, d: &Device) -> Result<String> {
    let ch = post(t, "/api/v1/sessions/challenge", &json!({ "certificate": d.cert })).await?;
    let claims: LoginChallengeClaims =
        jws::verify(ch["challenge"].as_str().unwrap_or(""), &t.node_key, TYP_LOGIN_CHALLENGE)?;
    let answer = LoginClaims {
        iss: t.user_did.clone(),
        sub: d.id.clone(),
        aud: t.node_did.clone(),
        nonce: claims.nonce,
        iat: now_secs(),
        seq: None,
    };
    let response = jws::sign(&d.sign, TYP_LOGIN, None, &answer)?;
    let s = post(t, "/api/v1/sessions", &json!({ "response": response })).await?;
    Ok(s["token"].as_str().context("token")?.to_owned())
}

async fn login(t: &Target, d: &Device) -> Result<()> {
    session(t, d).await.map(|_| ())
}

/// What every loop repeats.
#[derive(Clone)]
enum Work {
    Logins(Arc<Target>, Arc<Vec<Device>>),
    Issuance { t: Arc<Target>, session: Arc<String>, name: Arc<String> },
    Presentations { t: Arc<Target>, session: Arc<String>, holder: Arc<Holder> },
    Oidc(Arc<oidc::Op>, oidc::Scenario),
}

impl Work {
    async fn once(&self, i: usize, state: &mut oidc::Loop) -> Result<()> {
        match self {
            Work::Logins(t, devices) => login(t, &devices[i % devices.len()]).await,
            Work::Issuance { t, session, name } => {
                issuance(t, session, name, &Ed25519KeyPair::generate()).await.map(|_| ())
            }
            Work::Presentations { t, session, holder } => presentation(t, session, holder).await,
            Work::Oidc(op, scenario) => op.step(*scenario, state).await,
        }
    }
}

/// Refuse anything but this machine.
pub(crate) fn on_loopback(url: &str, flag: &str) -> Result<()> {
    let url = url::Url::parse(url).with_context(|| format!("{flag} must be a URL"))?;
    if !matches!(url.host_str().unwrap_or(""), "localhost" | "127.0.0.1" | "[::1]") {
        bail!("sichat-load only targets this machine: {flag} must be on localhost, 127.0.0.1 or [::1]");
    }
    Ok(())
}

/// Register a new account (`<prefix>-<random>`) with `devices` devices on the node at
/// `base`, as the wallet does: a root key signs the registration with the first device's
/// certificate, then adds the others by root operations. Returns the node and account, the
/// account's name, and its devices.
pub(crate) async fn register(
    http: reqwest::Client,
    base: &str,
    invite: &str,
    prefix: &str,
    devices: usize,
) -> Result<(Arc<Target>, String, Vec<Device>)> {
    let base = base.trim_end_matches('/').to_owned();
    let doc: Value = http.get(format!("{base}/.well-known/did.json")).send().await?.json().await?;
    let node_did = doc["id"].as_str().context("node DID")?.to_owned();
    let node_key =
        Ed25519Public::from_multibase(doc["verificationMethod"][0]["publicKeyMultibase"].as_str().unwrap_or(""))?;
    let name = format!("{prefix}-{}", &new_id()[24..]);
    let user_did = format!("{node_did}:users:{name}");
    let t = Arc::new(Target { http, base, node_did: node_did.clone(), node_key, user_did: user_did.clone() });

    let root = Ed25519KeyPair::generate();
    let did = Did::parse(&user_did)?;
    let mut made = Vec::new();
    for i in 0..devices.max(1) {
        let (sign, agree) = (Ed25519KeyPair::generate(), X25519KeyPair::generate());
        let id = new_id();
        let cert =
            DeviceCertificate::issue(&root, &did, &id, &format!("load {i}"), &sign.public(), &agree.public(), 3600)?;
        made.push(Device { sign, agree, id, cert });
    }
    let challenge = |t: Arc<Target>| async move { post(&t, "/api/v1/challenges", &json!({})).await };
    let ch = challenge(t.clone()).await?;
    let claims = RegistrationClaims {
        aud: node_did.clone(),
        challenge: ch["challenge"].as_str().unwrap_or("").into(),
        invite: invite.to_owned(),
        name: name.clone(),
        root_key: root.public().to_multibase(),
        device_certificate: made[0].cert.clone(),
        iat: now_secs(),
        key_did: None,
    };
    post(&t, "/api/v1/accounts", &json!({ "request": jws::sign(&root, TYP_REGISTER, None, &claims)? })).await?;
    for d in &made[1..] {
        let ch = challenge(t.clone()).await?;
        let op = RootOpClaims {
            iss: user_did.clone(),
            aud: node_did.clone(),
            challenge: ch["challenge"].as_str().unwrap_or("").into(),
            iat: now_secs(),
            op: RootOperation::AddDevice { certificate: d.cert.clone() },
            // A fresh account has only its did:web DID: no log to continue.
            did_log_entry: None,
        };
        post(&t, "/api/v1/root-operations", &json!({ "request": jws::sign(&root, TYP_ROOT_OP, None, &op)? })).await?;
    }
    Ok((t, name, made))
}

/// Against a Sichat node: register an account with its devices, then what the scenario
/// needs (a session, a credential, an OpenID Provider client).
async fn on_node(args: &Args) -> Result<(Work, Vec<oidc::Loop>)> {
    let invite = args.invite.clone().context("--invite is required against a Sichat node")?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let (t, name, devices) = register(http, &args.server, &invite, "load", args.devices).await?;
    let fresh = || (0..args.concurrency).map(|_| oidc::Loop::default()).collect();
    if args.scenario == "logins" {
        return Ok((Work::Logins(t, Arc::new(devices)), fresh()));
    }
    let session = session(&t, &devices[0]).await?;
    if let Some(scenario) = oidc::Scenario::parse(&args.scenario) {
        let (client, user) = oidc::set_up_on_node(&t.http, &t.base, &session, &name).await?;
        let mut op = oidc::Op::connect(&t.base, client, Some(user), args.concurrency).await?;
        let loops = op.prepare(scenario, args.concurrency).await?;
        return Ok((Work::Oidc(Arc::new(op), scenario), loops));
    }
    let (session, name) = (Arc::new(session), Arc::new(name));
    if args.scenario == "presentations" {
        let key = Ed25519KeyPair::generate();
        let credential = issuance(&t, &session, &name, &key).await.context("issuing the presented credential")?;
        let holder = Arc::new(Holder { key, credential });
        return Ok((Work::Presentations { t, session, holder }, fresh()));
    }
    Ok((Work::Issuance { t, session, name }, fresh()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    on_loopback(&args.server, "--server")?;
    if args.scenario.starts_with("messaging") {
        return messaging::run(&args).await;
    }
    let scenario = oidc::Scenario::parse(&args.scenario);
    let (work, states) = match (&args.issuer, &args.client_id, &args.client_secret, scenario) {
        (Some(issuer), Some(id), Some(secret), Some(scenario)) => {
            on_loopback(issuer, "--issuer")?;
            let client = oidc::ClientCredentials {
                id: id.clone(),
                secret: secret.clone(),
                redirect_uri: args.redirect_uri.clone(),
            };
            let mut op = oidc::Op::connect(issuer, client, None, args.concurrency).await?;
            let loops = op.prepare(scenario, args.concurrency).await?;
            (Work::Oidc(Arc::new(op), scenario), loops)
        }
        (Some(_), ..) => bail!("--issuer is for the oidc-* scenarios, with --client-id and --client-secret"),
        _ => on_node(&args).await?,
    };
    let target = args.issuer.as_deref().unwrap_or(&args.server);

    if !args.json {
        eprintln!("{} loops × {} s of {} against {target} …", args.concurrency, args.seconds, args.scenario);
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut loops = Vec::new();
    for (w, mut state) in states.into_iter().enumerate() {
        let work = work.clone();
        loops.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, w);
            while Instant::now() < deadline {
                let began = Instant::now();
                match work.once(i, &mut state).await {
                    Ok(()) => lat.push(began.elapsed()),
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("first error: {e:#}");
                        }
                        errors += 1
                    }
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for l in loops {
        let (l, e) = l.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    let report = json!({
        "scenario": args.scenario,
        "operations": lat.len(),
        "errors": errors,
        "seconds": elapsed,
        "per_second": lat.len() as f64 / elapsed,
        "latency_ms": { "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99) },
        "concurrency": args.concurrency,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} {} in {:.1} s: {:.0}/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, {} errors",
            lat.len(),
            args.scenario,
            elapsed,
            lat.len() as f64 / elapsed,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            errors
        );
    }
    Ok(())
}

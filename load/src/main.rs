//! `sichat-load`: measures a running node on this machine.
//!
//! It registers one account with `--devices` devices (using an invite from
//! `sichatd admin invite`), then runs `--concurrency` loops until `--seconds` pass:
//! - `--scenario logins`: a device login each (challenge, node-signature check, signed
//!   answer, session);
//! - `--scenario issuance`: a full OpenID4VCI issuance each (offer, offer fetched by
//!   reference, token, nonce, proof of possession, credential).
//!
//! Bounded in time and aimed at loopback only.

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
#[command(name = "sichat-load", version, about = "Device logins per second against a Sichat node on this machine")]
struct Args {
    /// The node, on loopback.
    #[arg(long, default_value = "http://localhost:8080")]
    server: String,
    /// An invite with quota ≥ 1 (sichatd admin invite --quota 1).
    #[arg(long)]
    invite: String,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Devices to register and log in round-robin.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// What each loop does.
    #[arg(long, value_parser = ["logins", "issuance"], default_value = "logins")]
    scenario: String,
    #[arg(long)]
    json: bool,
}

struct Device {
    sign: Ed25519KeyPair,
    id: String,
    cert: String,
}

struct Target {
    http: reqwest::Client,
    base: String,
    node_did: String,
    node_key: Ed25519Public,
    user_did: String,
}

async fn post(t: &Target, path: &str, body: &Value) -> Result<Value> {
    let r = t.http.post(format!("{}{path}", t.base)).json(body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

/// One full OpenID4VCI issuance to a fresh did:key holder, as the issuer `session`.
async fn issuance(t: &Target, session: &str, user: &str) -> Result<()> {
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
    let holder = Ed25519KeyPair::generate();
    let mb = holder.public().to_multibase();
    let claims = json!({"aud": issuer, "iat": now_secs(), "nonce": nonce["c_nonce"]});
    let proof = jws::sign(&holder, "openid4vci-proof+jwt", Some(&format!("did:key:{mb}#{mb}")), &claims)?;
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
    Ok(())
}

/// Log `d` in and return the session token.
async fn session(t: &Target, d: &Device) -> Result<String> {
    let ch = post(t, "/api/v1/sessions/challenge", &json!({ "certificate": d.cert })).await?;
    let claims: LoginChallengeClaims =
        jws::verify(ch["challenge"].as_str().unwrap_or(""), &t.node_key, TYP_LOGIN_CHALLENGE)?;
    let answer = LoginClaims {
        iss: t.user_did.clone(),
        sub: d.id.clone(),
        aud: t.node_did.clone(),
        nonce: claims.nonce,
        iat: now_secs(),
    };
    let response = jws::sign(&d.sign, TYP_LOGIN, None, &answer)?;
    let s = post(t, "/api/v1/sessions", &json!({ "response": response })).await?;
    Ok(s["token"].as_str().context("token")?.to_owned())
}

async fn login(t: &Target, d: &Device) -> Result<()> {
    session(t, d).await.map(|_| ())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let url = url::Url::parse(&args.server).context("--server must be a URL")?;
    let host = url.host_str().unwrap_or("");
    if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        bail!("sichat-load only targets a node on this machine (localhost, 127.0.0.1 or [::1])");
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let base = args.server.trim_end_matches('/').to_owned();
    let doc: Value = http.get(format!("{base}/.well-known/did.json")).send().await?.json().await?;
    let node_did = doc["id"].as_str().context("node DID")?.to_owned();
    let node_key =
        Ed25519Public::from_multibase(doc["verificationMethod"][0]["publicKeyMultibase"].as_str().unwrap_or(""))?;
    let name = format!("load-{}", &new_id()[24..]);
    let user_did = format!("{node_did}:users:{name}");
    let t = Arc::new(Target { http, base, node_did: node_did.clone(), node_key, user_did: user_did.clone() });

    // Register the account and its devices.
    let root = Ed25519KeyPair::generate();
    let did = Did::parse(&user_did)?;
    let mut devices = Vec::new();
    for i in 0..args.devices.max(1) {
        let sign = Ed25519KeyPair::generate();
        let id = new_id();
        let cert = DeviceCertificate::issue(
            &root,
            &did,
            &id,
            &format!("load {i}"),
            &sign.public(),
            &X25519KeyPair::generate().public(),
            3600,
        )?;
        devices.push(Device { sign, id, cert });
    }
    let challenge = |t: Arc<Target>| async move { post(&t, "/api/v1/challenges", &json!({})).await };
    let ch = challenge(t.clone()).await?;
    let claims = RegistrationClaims {
        aud: node_did.clone(),
        challenge: ch["challenge"].as_str().unwrap_or("").into(),
        invite: args.invite.clone(),
        name: name.clone(),
        root_key: root.public().to_multibase(),
        device_certificate: devices[0].cert.clone(),
        iat: now_secs(),
    };
    post(&t, "/api/v1/accounts", &json!({ "request": jws::sign(&root, TYP_REGISTER, None, &claims)? })).await?;
    for d in &devices[1..] {
        let ch = challenge(t.clone()).await?;
        let op = RootOpClaims {
            iss: user_did.clone(),
            aud: node_did.clone(),
            challenge: ch["challenge"].as_str().unwrap_or("").into(),
            iat: now_secs(),
            op: RootOperation::AddDevice { certificate: d.cert.clone() },
        };
        post(&t, "/api/v1/root-operations", &json!({ "request": jws::sign(&root, TYP_ROOT_OP, None, &op)? })).await?;
    }
    let devices = Arc::new(devices);
    let issuing = args.scenario == "issuance";
    let token = if issuing { Some(Arc::new(session(&t, &devices[0]).await?)) } else { None };
    let name = Arc::new(name);

    if !args.json {
        eprintln!("{} loops × {} s of {} against {} …", args.concurrency, args.seconds, args.scenario, t.base);
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut loops = Vec::new();
    for w in 0..args.concurrency {
        let (t, devices, token, name) = (t.clone(), devices.clone(), token.clone(), name.clone());
        loops.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, w);
            while Instant::now() < deadline {
                let began = Instant::now();
                let done = match &token {
                    Some(session) => issuance(&t, session, &name).await,
                    None => login(&t, &devices[i % devices.len()]).await,
                };
                match done {
                    Ok(()) => lat.push(began.elapsed()),
                    Err(_) => errors += 1,
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

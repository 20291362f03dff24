//! `sichat verify`: check a credential or presentation offline, with no wallet needed.

use crate::Ctx;
use anyhow::{Context, Result};
use clap::Args;
use sichat_verifier::policy::{Issuers, TrustPolicy, TrustRule};
use sichat_verifier::verify::{Expectation, Options, Outcome, Report};
use sichat_verifier::Verifier;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct VerifyArgs {
    /// The file to check (a vc+jwt, a vp+jwt, or a JSON document with a Data Integrity
    /// proof), or - for standard input.
    file: PathBuf,
    /// For a presentation: the nonce it must answer.
    #[arg(long, requires = "audience")]
    nonce: Option<String>,
    /// For a presentation: the verifier identifier it must be made for.
    #[arg(long, requires = "nonce")]
    audience: Option<String>,
    /// Trust this issuer (DID) for --trust-type; repeat for more. Without any, the trust
    /// check is skipped.
    #[arg(long = "trust-issuer", value_name = "DID")]
    trust_issuers: Vec<String>,
    /// The credential type the trusted issuers vouch for [default: any type they issue].
    #[arg(long = "trust-type", requires = "trust_issuers")]
    trust_type: Option<String>,
    /// Seconds of clock difference tolerated on validity dates.
    #[arg(long, default_value_t = 60)]
    clock_skew: i64,
}

pub async fn run(ctx: &Ctx, a: VerifyArgs) -> Result<()> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read standard input")?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?
    };
    // The same network policy as every wallet command: the wallet's own node, when there is
    // a wallet here, is reachable even on a local address.
    let node = crate::wallet::read_profile(&ctx.dir).ok().and_then(|p| p.server);
    let verifier = Verifier::with_resolver(Arc::new(ctx.resolver(&[node.as_deref()])?), Default::default());
    let policy = (!a.trust_issuers.is_empty()).then(|| TrustPolicy {
        rules: vec![TrustRule {
            type_name: a.trust_type.clone().unwrap_or_else(|| "VerifiableCredential".into()),
            issuers: Issuers::Dids(a.trust_issuers.clone()),
        }],
    });
    let opts = Options {
        clock_skew_ms: a.clock_skew.saturating_mul(1000),
        expect: a.nonce.map(|nonce| Expectation { nonce, audience: a.audience.unwrap_or_default() }),
        policy,
        ..Options::default()
    };
    let report = verifier.verify(&text, &opts).await;
    ctx.print(&report, |r| print_report(r, 0))?;
    if refused_local(&report) {
        eprintln!("{}", crate::LOCAL_HINT);
    }
    if !report.valid {
        std::process::exit(2);
    }
    Ok(())
}

/// Whether a check failed because the network policy refused a local address.
fn refused_local(r: &Report) -> bool {
    r.checks.iter().any(|c| c.outcome == Outcome::Failed && c.reason.contains(sichat_core::net::LOCAL_REFUSED))
        || r.credentials.iter().any(refused_local)
}

pub fn print_report(r: &Report, indent: usize) {
    let pad = " ".repeat(indent);
    let what = r.types.iter().find(|t| !t.starts_with("Verifiable")).cloned().unwrap_or_else(|| r.kind.clone());
    let by = r.issuer.as_deref().or(r.holder.as_deref()).map(|d| format!(" by {d}")).unwrap_or_default();
    let verdict = if r.valid { "VALID" } else { "INVALID" };
    println!("{pad}{verdict}: {what} ({}){by}", r.format);
    for c in &r.checks {
        let mark = match c.outcome {
            Outcome::Passed => "ok  ",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
        };
        println!("{pad}  [{mark}] {:<18} {}", c.check, c.reason);
    }
    for c in &r.credentials {
        print_report(c, indent + 4);
    }
}

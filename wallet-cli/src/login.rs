//! Signing in without a password: approving a sign-in page with this device's key, and
//! passkeys for the browser.

use crate::client::Client;
use crate::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sichat_accounts::protocol::{now_secs, LoginApprovalClaims, PendingApproval, TYP_LOGIN_APPROVAL};
use sichat_core::jws;
use std::io::{BufRead, IsTerminal, Write};

/// How long an approval this wallet signs may be used.
const APPROVAL_LIFETIME_SECS: i64 = 120;

#[derive(Subcommand)]
pub enum LoginCmd {
    /// Approve a sign-in on your node's sign-in page (or account page) with this device's
    /// key. The page shows a code and a QR code of it; the page goes on by itself once you
    /// approve. Shows which site asks and where its answer goes, and asks before signing.
    /// Also approves a device (a TV, a command line) that shows a code to enter at your
    /// node's /oidc/device page (the OAuth device grant, RFC 8628).
    Approve(ApproveArgs),
}

#[derive(Args)]
pub struct ApproveArgs {
    /// The code the sign-in page or a device shows (ABCD-1234), or the URL in its QR code.
    code: String,
    /// Do not ask for confirmation (for scripts). Only use it for a sign-in you started.
    #[arg(long)]
    yes: bool,
}

#[derive(Subcommand)]
pub enum PasskeyCmd {
    /// Make a one-time link to register a passkey, and print it: open it in the browser
    /// (or on the phone) where you want the passkey. It works once, for 10 minutes. You can
    /// also add passkeys on your node's account page (/account) once signed in.
    Add {
        /// A name for the passkey, e.g. "phone" or "yubikey".
        #[arg(long, default_value = "passkey")]
        name: String,
    },
    /// List your passkeys.
    List,
    /// Remove a passkey: it no longer signs you in.
    Remove {
        /// The passkey's id (see `sichat passkey list`).
        id: String,
    },
}

/// A code from the page or the URL in its QR code, or a device's user code (RFC 8628) or
/// its `verification_uri_complete`. A URL must point at this wallet's node.
fn code_of(input: &str, server: &str) -> Result<String> {
    let input = input.trim();
    let Ok(u) = url::Url::parse(input) else { return Ok(input.to_owned()) };
    if !matches!(u.scheme(), "http" | "https") {
        return Ok(input.to_owned());
    }
    let ours = url::Url::parse(server).context("the wallet's server URL")?;
    if u.origin() != ours.origin() {
        bail!(
            "this code is for the node at {}, but your wallet's node is {}: approve it with a wallet of that node",
            u.origin().ascii_serialization(),
            ours.origin().ascii_serialization()
        );
    }
    // A sign-in page's QR code (`/oidc/approve?code=`) or a device's (`/oidc/device?user_code=`).
    u.query_pairs()
        .find(|(k, _)| k == "code" || k == "user_code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow!("this URL holds no sign-in code (?code=… or ?user_code=…)"))
}

pub(crate) fn confirm(question: &str) -> Result<bool> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub async fn login(ctx: &Ctx, cmd: LoginCmd) -> Result<()> {
    let LoginCmd::Approve(a) = cmd;
    let (w, _) = ctx.open()?;
    let server = w.profile.server.clone().ok_or_else(|| {
        anyhow!("this wallet has no node (a did:key identity): sign-in approval needs an account on a node")
    })?;
    let code = code_of(&a.code, &server)?;
    let client = Client::new(&server)?;
    let mut path = url::Url::parse("http://x/api/v1/oidc/approvals/").context("path")?;
    path.path_segments_mut().map_err(|_| anyhow!("path"))?.pop_if_empty().push(&code);
    let pending: PendingApproval = client.get(path.path()).await.context("looking up the code")?;
    let who = w.profile.name.clone().unwrap_or_else(|| w.profile.did.clone());
    let what = match (&pending.site, &pending.redirect_host) {
        (Some(site), Some(host)) => format!("{site} (answers go to {host})"),
        (Some(site), None) => site.clone(),
        _ => format!("your account page on {}", pending.node),
    };
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("approving needs your confirmation: run it in a terminal, or pass --yes for a sign-in you started");
        }
        eprintln!("Sign in to {what}");
        eprintln!("  through your node {}", pending.node);
        eprintln!("  as {who}");
        if let Some(scope) = &pending.scope {
            eprintln!("  sharing: {scope}");
        }
        if !confirm("Approve? Only if you started this sign-in yourself. [y/N] ")? {
            bail!("not approved: nothing was signed");
        }
    }
    let now = now_secs();
    let claims = LoginApprovalClaims {
        iss: w.profile.did.clone(),
        aud: pending.node.clone(),
        code: pending.code.clone(),
        challenge: pending.challenge.clone(),
        iat: now,
        exp: now + APPROVAL_LIFETIME_SECS,
    };
    let kid = format!("{}#device-{}", w.profile.did, w.profile.device_id);
    let approval = jws::sign(&w.device_sign, TYP_LOGIN_APPROVAL, Some(&kid), &claims)?;
    let _: Value = client.post("/api/v1/oidc/approvals", &json!({ "approval": approval })).await?;
    ctx.print(&json!({"approved": true, "code": pending.code, "site": pending.site, "node": pending.node}), |_| {
        println!("Approved: the sign-in page goes on by itself.")
    })
}

async fn session(ctx: &Ctx) -> Result<Client> {
    let (w, _) = ctx.open()?;
    let server =
        w.profile.server.clone().ok_or_else(|| {
            anyhow!("this wallet has no node (a did:key identity): passkeys need an account on a node")
        })?;
    let mut c = Client::new(&server)?;
    c.login(&w).await?;
    Ok(c)
}

pub async fn passkey(ctx: &Ctx, cmd: PasskeyCmd) -> Result<()> {
    let mut c = session(ctx).await?;
    let result = match cmd {
        PasskeyCmd::Add { name } => {
            c.post::<Value>("/api/v1/oidc/passkey-links", &json!({ "name": name })).await.and_then(|link| {
                ctx.print(&link, |l| {
                    println!("Open this link in the browser where you want the passkey (once, within 10 minutes):");
                    println!("{}", l["url"].as_str().unwrap_or_default());
                })
            })
        }
        PasskeyCmd::List => c.get::<Value>("/api/v1/oidc/passkeys").await.and_then(|list| {
            ctx.print(&list, |items| {
                let items = items.as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    println!("No passkeys yet: add one with `sichat passkey add`.");
                }
                for p in items {
                    let used = p["last_used_at"].as_i64().map(crate::date).unwrap_or_else(|| "never".into());
                    println!(
                        "{}  {}  added {}  last used {}",
                        p["id"].as_str().unwrap_or_default(),
                        p["name"].as_str().unwrap_or_default(),
                        crate::date(p["created_at"].as_i64().unwrap_or_default()),
                        used
                    );
                }
            })
        }),
        PasskeyCmd::Remove { id } => c.delete(&format!("/api/v1/oidc/passkeys/{id}")).await.and_then(|()| {
            ctx.print(&json!({"removed": id}), |_| println!("Removed the passkey; it no longer signs you in."))
        }),
    };
    c.logout().await;
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_and_their_urls() {
        let node = "http://localhost:8080";
        assert_eq!(super::code_of(" ABCD-1234 ", node).unwrap(), "ABCD-1234");
        assert_eq!(super::code_of("http://localhost:8080/oidc/approve?code=ABCD-1234", node).unwrap(), "ABCD-1234");
        let err = super::code_of("https://evil.example/oidc/approve?code=ABCD-1234", node).unwrap_err();
        assert!(err.to_string().contains("evil.example"), "{err}");
        assert!(super::code_of("http://localhost:8080/oidc/approve", node).is_err());
    }
}

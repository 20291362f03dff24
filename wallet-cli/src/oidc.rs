//! Signing in to other sites through your node: your password, and the sites you allowed.

use crate::client::Client;
use crate::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};

#[derive(Subcommand)]
pub enum PasswordCmd {
    /// Set (or change) the password you sign in to sites with, on your node's sign-in page.
    /// Read from --password-stdin, else SICHAT_NEW_PASSWORD, else asked twice.
    Set(SetArgs),
}

#[derive(Args)]
pub struct SetArgs {
    /// Read the new password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
pub enum OidcCmd {
    /// The sites you allowed to sign you in.
    #[command(subcommand)]
    Consents(ConsentsCmd),
    /// Sign out everywhere: end every browser session on your node's pages and every token
    /// sites hold for you (a new password does this too). Sites must sign you in again.
    SignOutEverywhere,
    /// Your latest sign-ins: to your node's pages and to each site (or device), when, how
    /// and from which address. Look here for a sign-in you did not make.
    Activity,
}

#[derive(Subcommand)]
pub enum ConsentsCmd {
    /// List the sites you consented to, with the scopes they got.
    List,
    /// Withdraw consent from a site: it must ask again, and its tokens stop working.
    Revoke {
        /// The site's client_id (see `sichat oidc consents list`).
        client_id: String,
    },
}

async fn session(ctx: &Ctx) -> Result<Client> {
    let (w, _) = ctx.open()?;
    let server = w.profile.server.clone().ok_or_else(|| {
        anyhow!("this wallet has no node (a did:key identity): signing in to sites needs an account on a node")
    })?;
    let mut c = Client::new(&server)?;
    c.login(&w).await?;
    Ok(c)
}

fn new_password(a: &SetArgs) -> Result<String> {
    if a.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("SICHAT_NEW_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password: use --password-stdin or SICHAT_NEW_PASSWORD");
    }
    let first = rpassword::prompt_password("New sign-in password (12 characters or more): ")?;
    if rpassword::prompt_password("Again: ")? != first {
        bail!("the two passwords differ: nothing changed");
    }
    Ok(first)
}

pub async fn password(ctx: &Ctx, cmd: PasswordCmd) -> Result<()> {
    let PasswordCmd::Set(a) = cmd;
    let password = new_password(&a)?;
    let mut c = session(ctx).await?;
    let done: Result<Value> = c.put("/api/v1/password", &json!({ "password": password })).await;
    c.logout().await;
    done?;
    ctx.print(&json!({"password": "set"}), |_| {
        eprintln!("Password set. Sign in to sites with your user name and this password on your node's page.");
        eprintln!("Every browser session and every site's tokens have ended: sites must sign you in again.")
    })
}

async fn sign_out_everywhere(ctx: &Ctx) -> Result<()> {
    let mut c = session(ctx).await?;
    let done: Result<Value> = c.post("/api/v1/sign-out-everywhere", &json!({})).await;
    c.logout().await;
    done?;
    ctx.print(&json!({"signed_out": "everywhere"}), |_| {
        eprintln!("Signed out everywhere: every browser session and every site's tokens have ended.")
    })
}

async fn activity(ctx: &Ctx) -> Result<()> {
    let mut c = session(ctx).await?;
    let list: Result<Value> = c.get("/api/v1/oidc/activity").await;
    c.logout().await;
    ctx.print(&list?, |items| {
        let items = items.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            println!("No sign-ins recorded yet.");
        }
        for i in items {
            let at = i["at"].as_i64().and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok());
            let at = at.map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())).unwrap_or_default();
            let how: Vec<&str> = i["method"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!(
                "{at}  {}  [{}]  from {}",
                i["site"].as_str().unwrap_or("your node's pages"),
                how.join(" "),
                i["address"].as_str().unwrap_or("-")
            );
        }
    })
}

pub async fn oidc(ctx: &Ctx, cmd: OidcCmd) -> Result<()> {
    let cmd = match cmd {
        OidcCmd::Consents(cmd) => cmd,
        OidcCmd::SignOutEverywhere => return sign_out_everywhere(ctx).await,
        OidcCmd::Activity => return activity(ctx).await,
    };
    let mut c = session(ctx).await?;
    let result = match cmd {
        ConsentsCmd::List => c.get::<Value>("/api/v1/oidc/consents").await.map(|list| {
            ctx.print(&list, |items| {
                let items = items.as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    println!("You have not allowed any site to sign you in.");
                }
                for i in items {
                    println!(
                        "{}  {}  [{}]",
                        i["client_id"].as_str().unwrap_or(""),
                        i["client_name"].as_str().unwrap_or("(unnamed site)"),
                        i["scope"].as_str().unwrap_or("")
                    );
                }
            })
        }),
        ConsentsCmd::Revoke { client_id } => c.delete(&format!("/api/v1/oidc/consents/{client_id}")).await.map(|()| {
            ctx.print(&json!({"revoked": client_id}), |_| {
                eprintln!("Consent withdrawn; the site's tokens no longer work.")
            })
        }),
    };
    c.logout().await;
    result?
}

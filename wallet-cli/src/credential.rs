//! `sichat credential …`: issuing from your node with your issuing key.

use crate::{date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use sichat_issuer::service::{IssueRequest, Issued, IssuedRecord};
use sichat_issuer::types::CredentialType;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CredentialCmd {
    /// Credential types you can issue.
    #[command(subcommand)]
    Type(TypeCmd),
    /// Sign a credential for a holder with your issuing key (held by your node).
    Issue {
        /// The credential type, e.g. FriendCredential.
        #[arg(long = "type")]
        type_name: String,
        /// The holder's DID.
        #[arg(long)]
        to: String,
        /// A claim: key=text, or key:=JSON (e.g. age:=42). Repeat for more.
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
        /// Days until it expires (default: no expiry).
        #[arg(long)]
        valid_days: Option<i64>,
        /// Also give it a suspension entry, so it can be suspended and resumed.
        #[arg(long)]
        suspendable: bool,
        /// Write the credential (vc+jwt) to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The credentials you have issued, with their status.
    Issued,
    /// Revoke a credential you issued. Final.
    Revoke { id: String },
    /// Suspend a credential you issued (it must have been issued --suspendable).
    Suspend { id: String },
    /// Lift a suspension.
    Resume { id: String },
}

#[derive(Subcommand)]
pub enum TypeCmd {
    /// List the built-in types and yours.
    List,
    /// Add a type from a JSON Schema file describing the subject's claims.
    Add {
        /// e.g. BookClubCredential
        #[arg(long)]
        name: String,
        #[arg(long)]
        schema: PathBuf,
        #[arg(long)]
        display_name: Option<String>,
    },
}

/// Parse `key=text` and `key:=json` claims.
pub fn parse_claims(items: &[String]) -> Result<Map<String, Value>> {
    let mut claims = Map::new();
    for item in items {
        let (key, value) = if let Some((k, v)) = item.split_once(":=") {
            (k, serde_json::from_str(v).with_context(|| format!("claim {k}: {v:?} is not JSON"))?)
        } else if let Some((k, v)) = item.split_once('=') {
            (k, Value::String(v.to_owned()))
        } else {
            bail!("claim {item:?} must look like key=value or key:=json");
        };
        if key.is_empty() {
            bail!("claim {item:?} has an empty key");
        }
        claims.insert(key.to_owned(), value);
    }
    Ok(claims)
}

pub async fn run(ctx: &Ctx, cmd: CredentialCmd) -> Result<()> {
    let (_, mut c) = ctx.session().await?;
    let result = match cmd {
        CredentialCmd::Type(TypeCmd::List) => {
            let types: Vec<CredentialType> = c.get("/api/v1/issuer/types").await?;
            ctx.print(&types, |ts| {
                for t in ts {
                    let props =
                        t.schema["properties"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "));
                    let origin = if t.builtin { "built-in" } else { "yours" };
                    println!("{:<24} {:<10} claims: {}", t.name, origin, props.unwrap_or_default());
                }
            })
        }
        CredentialCmd::Type(TypeCmd::Add { name, schema, display_name }) => {
            let text = std::fs::read_to_string(&schema).with_context(|| format!("cannot read {}", schema.display()))?;
            let schema: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", schema.display()))?;
            let body = json!({"name": name, "display_name": display_name, "schema": schema});
            let t: CredentialType = c.post("/api/v1/issuer/types", &body).await?;
            ctx.print(&t, |t| println!("Added {}; issue it with `sichat credential issue --type {}`", t.name, t.name))
        }
        CredentialCmd::Issue { type_name, to, claims, valid_days, suspendable, out } => {
            let valid_until = match valid_days {
                Some(d) if d < 1 => return Err(anyhow!("--valid-days must be at least 1")),
                Some(d) => Some(sichat_core::ids::now_ms() + d * 24 * 3600 * 1000),
                None => None,
            };
            let req = IssueRequest { type_name, subject: to, claims: parse_claims(&claims)?, valid_until, suspendable };
            let issued: Issued = c.post("/api/v1/issuer/credentials", &req).await?;
            if let Some(path) = &out {
                std::fs::write(path, &issued.credential).with_context(|| format!("cannot write {}", path.display()))?;
            }
            ctx.print(&issued, |i| match &out {
                Some(p) => println!("Issued {} ({}), written to {}", i.id, i.format, p.display()),
                None => println!("{}", i.credential),
            })
        }
        CredentialCmd::Issued => {
            let records: Vec<IssuedRecord> = c.get("/api/v1/issuer/credentials").await?;
            ctx.print(&records, |rs| {
                for r in rs {
                    println!("{}  {:<20} {:<9} to {}  {}", r.id, r.type_name, r.status, r.subject, date(r.issued_at));
                }
            })
        }
        CredentialCmd::Revoke { id } => status(ctx, &c, &id, "revoke").await,
        CredentialCmd::Suspend { id } => status(ctx, &c, &id, "suspend").await,
        CredentialCmd::Resume { id } => status(ctx, &c, &id, "resume").await,
    };
    c.logout().await;
    result
}

async fn status(ctx: &Ctx, c: &crate::client::Client, id: &str, action: &str) -> Result<()> {
    let r: IssuedRecord = c.post(&format!("/api/v1/issuer/credentials/{id}/{action}"), &json!({})).await?;
    ctx.print(&r, |r| println!("{} is now {}; the status list shows it at once.", r.id, r.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_parse_as_text_or_json() {
        let c = parse_claims(&["name=Bob".into(), "age:=42".into(), "note=a=b".into()]).unwrap();
        assert_eq!(c["name"], "Bob");
        assert_eq!(c["age"], 42);
        assert_eq!(c["note"], "a=b");
        assert!(parse_claims(&["novalue".into()]).is_err());
        assert!(parse_claims(&["=x".into()]).is_err());
        assert!(parse_claims(&["n:={bad".into()]).is_err());
    }
}

//! `sichat policy …`: who may message you, decided by your node while you are away
//! (`GET`/`PUT /api/v1/messages/policy`).

use crate::client::ServerError;
use crate::contacts::Address;
use crate::message::need_node;
use crate::{wallet, Ctx};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sichat_core::did::Did;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Show who may message you.
    Show,
    /// Change who may message you. Only what you name changes; see `sichat policy show`.
    Set(SetArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

#[derive(Args)]
pub struct SetArgs {
    /// Accounts on your own node go straight to your inbox.
    #[arg(long, value_enum)]
    members: Option<OnOff>,
    /// Anyone else lands in your requests folder (rate limited); off refuses them.
    #[arg(long, value_enum)]
    requests: Option<OnOff>,
    /// Holders of a valid credential of this type that you issued go to your inbox,
    /// e.g. FriendCredential. Repeat for more.
    #[arg(long = "accept-credential", value_name = "TYPE")]
    accept_credential: Vec<String>,
    /// Stop accepting holders of this credential type. Repeat for more.
    #[arg(long = "no-accept-credential", value_name = "TYPE")]
    no_accept_credential: Vec<String>,
    /// Refuse everything from this DID (or name@host), or from every account on this host.
    /// Repeat for more.
    #[arg(long, value_name = "DID|HOST")]
    block: Vec<String>,
    /// Lift a block. Repeat for more.
    #[arg(long, value_name = "DID|HOST")]
    unblock: Vec<String>,
}

/// The inbound policy, as the node keeps it. Fields this wallet does not know are kept as
/// they are, so a `set` never erases a newer node's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Policy {
    pub accept_members: bool,
    #[serde(default)]
    pub accept_credentials: Vec<String>,
    pub requests: bool,
    #[serde(default)]
    pub blocked: Vec<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

const PATH: &str = "/api/v1/messages/policy";

pub async fn run(ctx: &Ctx, cmd: PolicyCmd) -> Result<()> {
    need_node(&wallet::read_profile(&ctx.dir)?)?;
    let (_, mut c) = ctx.session().await?;
    let result = async {
        let current: Policy = c.get(PATH).await.map_err(explain)?;
        match cmd {
            PolicyCmd::Show => ctx.print(&current, print),
            PolicyCmd::Set(a) => {
                let (next, notes) = apply(current, &a)?;
                let saved: Policy = c.put(PATH, &next).await.map_err(explain)?;
                for n in notes {
                    eprintln!("note: {n}");
                }
                ctx.print(&saved, |p| {
                    println!("Saved.");
                    print(p);
                })
            }
        }
    }
    .await;
    c.logout().await;
    result
}

fn explain(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<ServerError>() {
        Ok(s) if s.code == "http_404" => {
            anyhow!("your node has no messaging policy endpoint: ask its operator to upgrade sichatd")
        }
        Ok(s) => anyhow!(s),
        Err(e) => e,
    }
}

/// A block entry: a DID (`name@host` becomes its DID), or a host with an optional port.
fn block_entry(s: &str) -> Result<String> {
    let s = s.trim();
    if s.starts_with("did:") {
        return Ok(Did::parse(s).map_err(|e| anyhow!("--block/--unblock {s}: {e}"))?.to_string());
    }
    if let Some(address) = Address::parse(s) {
        return Ok(address?.did()?.to_string());
    }
    if s.is_empty() || s.contains(['/', '?', '#', '@', '[', ']']) || s.chars().any(char::is_whitespace) {
        bail!("--block/--unblock {s:?}: give a DID, name@host, or a host such as evil.example");
    }
    let url = url::Url::parse(&format!("https://{s}/"))
        .map_err(|_| anyhow!("--block/--unblock {s:?}: give a DID, name@host, or a host such as evil.example"))?;
    let host = url.host_str().ok_or_else(|| anyhow!("--block/--unblock {s:?}: no host"))?;
    Ok(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

/// The policy after `a`, and notes on what did not change.
fn apply(mut p: Policy, a: &SetArgs) -> Result<(Policy, Vec<String>)> {
    let nothing = a.members.is_none()
        && a.requests.is_none()
        && a.accept_credential.is_empty()
        && a.no_accept_credential.is_empty()
        && a.block.is_empty()
        && a.unblock.is_empty();
    if nothing {
        bail!("nothing to change: give --members, --requests, --accept-credential, --block or --unblock (see --help)");
    }
    let mut notes = Vec::new();
    if let Some(m) = a.members {
        p.accept_members = m.on();
    }
    if let Some(r) = a.requests {
        p.requests = r.on();
    }
    for t in &a.accept_credential {
        let t = t.trim();
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            bail!("--accept-credential {t:?}: a credential type name, e.g. FriendCredential");
        }
        if !p.accept_credentials.iter().any(|x| x == t) {
            p.accept_credentials.push(t.to_owned());
        }
    }
    for t in &a.no_accept_credential {
        let before = p.accept_credentials.len();
        p.accept_credentials.retain(|x| x != t.trim());
        if before == p.accept_credentials.len() {
            notes.push(format!("{t} was not accepted anyway"));
        }
    }
    for b in &a.block {
        let entry = block_entry(b)?;
        if !p.blocked.iter().any(|x| x.eq_ignore_ascii_case(&entry)) {
            p.blocked.push(entry);
        }
    }
    for u in &a.unblock {
        let entry = block_entry(u)?;
        let before = p.blocked.len();
        p.blocked.retain(|x| !x.eq_ignore_ascii_case(&entry));
        if before == p.blocked.len() {
            notes.push(format!("{entry} was not blocked"));
        }
    }
    Ok((p, notes))
}

fn print(p: &Policy) {
    let inbox_or = |on: bool, off: &str| if on { "your inbox".to_owned() } else { off.to_owned() };
    println!("Who may message you (your node decides, even while you are offline):");
    println!("  accounts on your node:      {}", inbox_or(p.accept_members, "treated like anyone else"));
    if p.accept_credentials.is_empty() {
        println!("  holders of credentials you issued: treated like anyone else (--accept-credential TYPE)");
    } else {
        println!("  holders of a {} you issued: your inbox", p.accept_credentials.join(" or "));
    }
    println!(
        "  anyone else:                {}",
        if p.requests { "your requests folder (rate limited)" } else { "refused (\"not accepted\")" }
    );
    if p.blocked.is_empty() {
        println!("  blocked:                    nobody");
    } else {
        println!("  blocked (refused):          {}", p.blocked.join(", "));
    }
    println!("Change it with `sichat policy set` (see --help).");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        serde_json::from_value(serde_json::json!({
            "accept_members": true, "accept_credentials": ["FriendCredential"], "requests": true,
            "blocked": ["evil.example"], "future_field": 3
        }))
        .unwrap()
    }

    fn args() -> SetArgs {
        SetArgs {
            members: None,
            requests: None,
            accept_credential: vec![],
            no_accept_credential: vec![],
            block: vec![],
            unblock: vec![],
        }
    }

    #[test]
    fn set_changes_only_what_is_named_and_keeps_unknown_fields() {
        let a = SetArgs {
            requests: Some(OnOff::Off),
            accept_credential: vec!["ClubCredential".into(), "FriendCredential".into()],
            block: vec!["eve@Bad.example:8443".into(), "did:web:x.example:users:mallory".into(), "spam.example".into()],
            unblock: vec!["evil.example".into(), "nobody.example".into()],
            ..args()
        };
        let (p, notes) = apply(policy(), &a).unwrap();
        assert!(p.accept_members, "untouched");
        assert!(!p.requests);
        assert_eq!(p.accept_credentials, vec!["FriendCredential", "ClubCredential"]);
        assert_eq!(
            p.blocked,
            vec!["did:web:bad.example%3A8443:users:eve", "did:web:x.example:users:mallory", "spam.example"]
        );
        assert_eq!(notes, vec!["nobody.example was not blocked"]);
        assert_eq!(serde_json::to_value(&p).unwrap()["future_field"], 3);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(apply(policy(), &args()).is_err(), "nothing to change");
        for bad in ["did:nope", "a b", "http://x/y", ""] {
            let a = SetArgs { block: vec![bad.into()], ..args() };
            assert!(apply(policy(), &a).is_err(), "{bad:?} should be refused");
        }
        let a = SetArgs { accept_credential: vec!["Not A Type".into()], ..args() };
        assert!(apply(policy(), &a).is_err());
    }
}

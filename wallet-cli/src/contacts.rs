//! `sichat contacts …`: names for DIDs, kept sealed in this wallet and nowhere else; and
//! turning what a user types to name someone (a contact name, `name@host`, a DID) into a DID.

use crate::wallet::{self, Contact, Wallet};
use crate::{date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::ids::now_ms;
use sichat_core::net::FetchError;
use sichat_core::resolver::{did_web_url, ResolveError, Resolver};
use std::fmt;

#[derive(Subcommand)]
pub enum ContactsCmd {
    /// Give someone a name: `sichat contacts add bob bob@example.org` (checked with their
    /// node's WebFinger) or `sichat contacts add bob did:web:…`. Then `sichat message send bob …`.
    Add {
        /// The name you will use, e.g. bob (no spaces, no '@').
        name: String,
        /// Their DID, or name@host for an account on a Sichat node.
        who: String,
    },
    /// List your contacts.
    List,
    /// Forget a contact (only this wallet's name for them).
    Remove {
        /// The contact's name.
        name: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: ContactsCmd) -> Result<()> {
    match cmd {
        ContactsCmd::Add { name, who } => add(ctx, &name, &who).await,
        ContactsCmd::List => {
            let (w, _) = ctx.open()?;
            ctx.print(&w.contacts, |cs| {
                if cs.is_empty() {
                    println!("No contacts yet. Add one with `sichat contacts add NAME DID|name@host`.");
                }
                for c in cs {
                    let address = c.address.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
                    println!("{:<16} {}{address}", c.name, c.did);
                }
            })
        }
        ContactsCmd::Remove { name } => {
            let (_, pass) = ctx.open()?;
            let removed = wallet::update(&ctx.dir, &pass, |w| {
                let i = w
                    .contacts
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| anyhow!("no contact named {name}: see `sichat contacts list`"))?;
                Ok(w.contacts.remove(i))
            })?;
            ctx.print(&json!({"removed": removed.name, "did": removed.did}), |_| {
                println!("Forgot {} ({}).", removed.name, removed.did)
            })
        }
    }
}

async fn add(ctx: &Ctx, name: &str, who: &str) -> Result<()> {
    check_name(name)?;
    let (w, pass) = ctx.open()?;
    if let Some(c) = find(&w, name) {
        bail!("{} is already a contact ({}): remove it first with `sichat contacts remove {}`", c.name, c.did, c.name);
    }
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let address = Address::parse(who).transpose()?;
    let did = match &address {
        Some(a) => {
            progress(ctx, &format!("Checking {a} …"));
            a.check(&resolver).await?
        }
        None => {
            let did =
                Did::parse(who.trim()).map_err(|e| anyhow!("{e}: give a DID (did:web:…, did:key:…) or name@host"))?;
            progress(ctx, &format!("Resolving {did} …"));
            resolver.resolve(did.as_str()).await.map_err(|e| resolve_failed(&did, e))?;
            did
        }
    };
    let contact = Contact {
        name: name.to_owned(),
        did: did.to_string(),
        address: address.map(|a| a.to_string()),
        added_at: now_ms(),
    };
    let added = contact.clone();
    wallet::update(&ctx.dir, &pass, move |w| {
        if let Some(c) = find(w, &contact.name) {
            bail!("{} is already a contact ({})", c.name, c.did);
        }
        w.contacts.push(contact);
        Ok(())
    })?;
    ctx.print(&added, |c| {
        println!("Added {} = {} (added {}).", c.name, c.did, date(c.added_at));
        println!("Send with `sichat message send {} \"hello\"`.", c.name);
    })
}

/// A contact's name: 1 to 64 visible characters, no '@' or spaces, not a DID, so it can
/// never be mistaken for an address.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 64 {
        bail!("a contact name is 1 to 64 characters");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@') {
        bail!("a contact name has no spaces and no '@' (that would look like name@host): try e.g. bob");
    }
    if name.starts_with("did:") {
        bail!("a contact name cannot start with \"did:\": it would look like a DID");
    }
    Ok(())
}

fn find<'a>(w: &'a Wallet, name: &str) -> Option<&'a Contact> {
    w.contacts.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// What a contact is called in this wallet, if anything.
pub fn name_of<'a>(contacts: &'a [Contact], did: &str) -> Option<&'a str> {
    contacts.iter().find(|c| c.did == did).map(|c| c.name.as_str())
}

/// Someone named on the command line: who they are, and how the user named them.
pub struct Recipient {
    pub did: Did,
    /// As typed: the contact name or `name@host`, or the DID itself.
    pub label: String,
}

/// Turn a contact name, `name@host` (checked with WebFinger) or DID into a DID.
pub async fn recipient(ctx: &Ctx, w: &Wallet, resolver: &Resolver, who: &str) -> Result<Recipient> {
    let who = who.trim();
    if who.starts_with("did:") {
        let did = Did::parse(who).map_err(|e| anyhow!("{e}: check the DID"))?;
        return Ok(Recipient { label: did.to_string(), did });
    }
    if let Some(address) = Address::parse(who) {
        let address = address?;
        progress(ctx, &format!("Checking {address} …"));
        let did = match address.check(resolver).await {
            Ok(did) => did,
            // Its node is out of reach: an address this wallet has written to or saved
            // before maps to the same DID (its keys are cached too), as the DID form would.
            Err(Check::Unreachable(e)) => {
                let did = address.did()?;
                let known = w.known_keys.iter().any(|k| k.did == did.as_str())
                    || w.contacts.iter().any(|c| c.did == did.as_str());
                if !known {
                    return Err(e);
                }
                eprintln!("warning: {e}; using {did}, which this wallet already knows for {address}");
                did
            }
            Err(Check::Refused(e)) => return Err(e),
        };
        return Ok(Recipient { did, label: address.to_string() });
    }
    match find(w, who) {
        Some(c) => Ok(Recipient {
            did: Did::parse(&c.did).with_context(|| format!("contact {} holds a bad DID", c.name))?,
            label: c.name.clone(),
        }),
        None => bail!(
            "no contact named {who}: give a DID or name@host, or add one with `sichat contacts add {who} DID|name@host`"
        ),
    }
}

/// An account on a Sichat node, written `name@host` (the host may carry a port).
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub name: String,
    /// `host` or `host:port`, lowercase.
    pub host: String,
}

impl Address {
    /// `None` when `s` is not of the `name@host` form at all; an error when it is but is bad.
    pub fn parse(s: &str) -> Option<Result<Self>> {
        let s = s.trim();
        if s.starts_with("did:") {
            return None;
        }
        let (name, host) = s.split_once('@')?;
        Some(Self::checked(name, host, s))
    }

    fn checked(name: &str, host: &str, whole: &str) -> Result<Self> {
        let bad = |why: &str| anyhow!("{whole:?} is not a name@host address: {why}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(bad("the name is letters, digits, '-', '_' or '.'"));
        }
        if host.is_empty() || host.contains(['@', '/', '?', '#', '[', ']']) || host.chars().any(char::is_whitespace) {
            return Err(bad("the host is a domain name, with an optional :port"));
        }
        let url = url::Url::parse(&format!("https://{host}/")).map_err(|_| bad("the host is not a domain name"))?;
        let domain = url.host_str().ok_or_else(|| bad("no host"))?;
        let host = match url.port() {
            Some(p) => format!("{domain}:{p}"),
            None => domain.to_owned(),
        };
        Ok(Self { name: name.to_owned(), host })
    }

    /// `did:web:<host>:users:<name>`, the port percent-encoded.
    pub fn did(&self) -> Result<Did> {
        let host = self.host.replace(':', "%3A");
        Did::parse(&format!("did:web:{host}:users:{}", self.name)).map_err(|e| anyhow!("{self}: {e}"))
    }

    /// Ask the host's WebFinger whether it knows the account, so a typo is caught before
    /// anything is sent. Returns the account's DID.
    pub async fn check(&self, resolver: &Resolver) -> Result<Did, Check> {
        let did = self.did().map_err(Check::Refused)?;
        let fetcher = resolver.fetcher();
        let refused = |e: String| Check::Refused(anyhow!("{self}: {e}"));
        let doc = did_web_url(&did, fetcher.policy().allow_local).map_err(|e| refused(e.to_string()))?;
        let mut url = url::Url::parse(&doc).map_err(|e| refused(e.to_string()))?;
        url.set_path("/.well-known/webfinger");
        let resource = format!("acct:{}@{}", self.name, self.host);
        url.query_pairs_mut().append_pair("resource", &resource);
        match fetcher.get_json(url.as_str()).await {
            Ok(jrd) => {
                let subject = jrd.get("subject").and_then(Value::as_str).unwrap_or_default();
                if !subject.eq_ignore_ascii_case(&resource) {
                    return Err(Check::Refused(anyhow!(
                        "{} answered WebFinger for {resource} about {subject:?}: not a Sichat node?",
                        self.host
                    )));
                }
                Ok(did)
            }
            Err(FetchError::Status { status: 404 | 410, .. }) => {
                Err(Check::Refused(anyhow!("no account {self}: check the spelling of the name and the host")))
            }
            Err(e @ FetchError::PrivateAddress { .. }) => Err(Check::Refused(anyhow!(
                "cannot check {self}: {e}. For a node on your own network, pass --allow-local-network"
            ))),
            Err(e) => Err(Check::Unreachable(anyhow!("cannot check {self} with its node's WebFinger: {e}"))),
        }
    }
}

/// Why an address could not be checked: its node said no (or is not a Sichat node), or
/// its node could not be reached (maybe down for now).
#[derive(Debug)]
pub enum Check {
    Refused(anyhow::Error),
    Unreachable(anyhow::Error),
}

impl From<Check> for anyhow::Error {
    fn from(c: Check) -> Self {
        match c {
            Check::Refused(e) | Check::Unreachable(e) => e,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.host)
    }
}

/// A resolution failure said for a user: what went wrong and what to try.
pub fn resolve_failed(did: &Did, e: ResolveError) -> anyhow::Error {
    match e {
        ResolveError::Fetch(FetchError::PrivateAddress { .. }) => {
            anyhow!("cannot resolve {did}: {e}. For a node on your own network, pass --allow-local-network")
        }
        e => anyhow!("cannot resolve {did}: {e}. Check the DID, and that its node is up"),
    }
}

/// A progress line on standard error, for people (not with --json, not into a pipe).
pub fn progress(ctx: &Ctx, line: &str) {
    if !ctx.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_did_web_users() {
        let a = Address::parse("alice@Example.org").unwrap().unwrap();
        assert_eq!(a.host, "example.org");
        assert_eq!(a.did().unwrap().as_str(), "did:web:example.org:users:alice");
        let a = Address::parse("bob@localhost:8080").unwrap().unwrap();
        assert_eq!(a.to_string(), "bob@localhost:8080");
        assert_eq!(a.did().unwrap().as_str(), "did:web:localhost%3A8080:users:bob");
        // The default port of https is no port at all.
        assert_eq!(Address::parse("c@h.example:443").unwrap().unwrap().host, "h.example");
    }

    #[test]
    fn non_addresses_and_bad_addresses() {
        assert!(Address::parse("bob").is_none(), "a contact name");
        assert!(Address::parse("did:web:x").is_none(), "a DID");
        for bad in ["@host", "bob@", "b ob@host", "bob@ho st", "bob@host/path", "bob@a@b", "bob@[::1]"] {
            assert!(matches!(Address::parse(bad), Some(Err(_))), "{bad} should be refused");
        }
    }

    #[test]
    fn contact_names() {
        assert!(check_name("bob").is_ok());
        assert!(check_name("Bob-2").is_ok());
        for bad in ["", "bo b", "bob@x", "did:key:z", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

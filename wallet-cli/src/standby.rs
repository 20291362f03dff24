//! `sichat standby`: a second node (a friend's) keeps your messages while your node is down
//! and hands them over when it is back (1→many); `standby remove` ends it (many→1).

use crate::client::Client;
use crate::{need_root, Ctx};
use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use serde_json::json;
use sichat_accounts::protocol::{now_secs, RootOperation, StandbyNode};
use sichat_accounts::DIDCOMM_PATH;
use sichat_core::did::DidDocument;
use sichat_core::jws;
use sichat_messaging::standby::{
    EndStandby, NewStandby, StandbyCreated, StandbyEnd, StandbyGrant, TYP_STANDBY_END, TYP_STANDBY_GRANT,
};

#[derive(Subcommand)]
pub enum StandbyCmd {
    /// Name a standby node: senders fall back to it while your node is down, and it hands
    /// over what it kept when your node is back. Needs an invite of that node.
    Add {
        /// The standby node's URL.
        #[arg(long)]
        server: String,
        /// An invite code of that node (its quota pays for the standby).
        #[arg(long)]
        invite: String,
    },
    /// Your standby node, as your DID document lists it.
    Show,
    /// End the standby: your DID document lists only your node again, and the standby keeps
    /// nothing more (what it kept is still handed over).
    Remove,
}

pub async fn run(ctx: &Ctx, cmd: StandbyCmd) -> Result<()> {
    let (w, mut c) = ctx.session().await?;
    let result = match cmd {
        StandbyCmd::Add { server, invite } => add(ctx, &w, &c, &server, &invite).await,
        StandbyCmd::Show => show(ctx, &w, &c).await,
        StandbyCmd::Remove => remove(ctx, &w, &c).await,
    };
    c.logout().await;
    result
}

/// The standby endpoint the account's DID document on its node lists, if any.
pub(crate) async fn listed(w: &crate::wallet::Wallet, c: &Client) -> Result<Option<String>> {
    let name = w.profile.name.as_deref().ok_or_else(crate::no_server)?;
    let doc: DidDocument = c.get(&format!("/users/{name}/did.json")).await?;
    let id = doc.id.url("didcomm-standby");
    Ok(doc.service.iter().find(|s| s.id == id).and_then(|s| s.service_endpoint["uri"].as_str().map(str::to_owned)))
}

async fn add(ctx: &Ctx, w: &crate::wallet::Wallet, c: &Client, server: &str, invite: &str) -> Result<()> {
    let root = need_root(w)?;
    if let Some(endpoint) = listed(w, c).await? {
        anyhow::bail!("your standby is {endpoint} already: `sichat standby remove` it first");
    }
    let standby = Client::new(server)?;
    let (standby_doc, _) = standby.node().await.with_context(|| format!("{server} is not a Sichat node"))?;
    let own = w.profile.server.as_deref().ok_or_else(crate::no_server)?;
    let grant = StandbyGrant {
        iss: w.profile.did.clone(),
        aud: standby_doc.id.to_string(),
        primary: format!("{}{DIDCOMM_PATH}", own.trim_end_matches('/')),
        iat: now_secs(),
    };
    let token = jws::sign(root, TYP_STANDBY_GRANT, Some(&format!("{}#root", w.profile.did)), &grant)?;
    let created: StandbyCreated =
        standby.post("/api/v1/standbys", &NewStandby { grant: token, invite: invite.trim().to_owned() }).await?;
    if created.node_did != standby_doc.id.as_str() {
        end_at(w, root, &standby, &created.node_did).await.ok();
        anyhow::bail!("{server} answered for {}, not for its own DID {}", created.node_did, standby_doc.id);
    }
    let op = RootOperation::SetStandby {
        standby: Some(StandbyNode {
            node_did: created.node_did.clone(),
            endpoint: created.endpoint.clone(),
            watcher: Some(created.watcher.clone()),
        }),
    };
    if let Err(e) = c.root_operation(w, root, op).await {
        // Your node did not take it: the standby would wait for nothing.
        end_at(w, root, &standby, &created.node_did).await.ok();
        return Err(e.context("your node did not list the standby; it is ended again"));
    }
    ctx.print(&json!({"standby": created.endpoint, "node_did": created.node_did}), |_| {
        println!("{} now stands by for you ({}).", server, created.node_did);
        println!("Your DID document lists its endpoint after your node's: while your node is down,");
        println!("senders deliver there, and it hands everything over when your node is back.");
        println!("It mirrors your DID log and status lists ({}), so what you issued", created.watcher);
        println!("keeps verifying for verifiers that resolved your DID before.");
    })
}

async fn show(ctx: &Ctx, w: &crate::wallet::Wallet, c: &Client) -> Result<()> {
    let endpoint = listed(w, c).await?;
    ctx.print(&json!({"standby": endpoint}), |_| match &endpoint {
        Some(e) => println!("standby: {e}"),
        None => println!("no standby (add one with `sichat standby add --server URL --invite CODE`)"),
    })
}

async fn remove(ctx: &Ctx, w: &crate::wallet::Wallet, c: &Client) -> Result<()> {
    let root = need_root(w)?;
    let endpoint = listed(w, c).await?.ok_or_else(|| anyhow!("you have no standby"))?;
    c.root_operation(w, root, RootOperation::SetStandby { standby: None }).await?;
    let base = endpoint.strip_suffix(DIDCOMM_PATH).unwrap_or(&endpoint).to_owned();
    let told = async {
        let standby = Client::new(&base)?;
        let (doc, _) = standby.node().await?;
        end_at(w, root, &standby, doc.id.as_str()).await
    }
    .await;
    if let Err(e) = &told {
        eprintln!(
            "warning: your DID document no longer lists {base}, but it could not be told ({e:#}); \
             run `sichat standby remove` again later, or ask its operator"
        );
    }
    ctx.print(&json!({"removed": endpoint, "standby_told": told.is_ok()}), |_| {
        println!("Your DID document lists only your node again; {base} keeps nothing more for you.");
    })
}

/// Tell the standby node it ends, signed by the root key.
async fn end_at(
    w: &crate::wallet::Wallet,
    root: &sichat_core::keys::Ed25519KeyPair,
    standby: &Client,
    node_did: &str,
) -> Result<()> {
    let end = StandbyEnd { iss: w.profile.did.clone(), aud: node_did.to_owned(), iat: now_secs() };
    let request = jws::sign(root, TYP_STANDBY_END, Some(&format!("{}#root", w.profile.did)), &end)?;
    standby.post::<serde_json::Value>("/api/v1/standbys/end", &EndStandby { request }).await.map(|_| ())
}

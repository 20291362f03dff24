//! Opening a node: data directory, master key, database, node key, services.

use crate::config::Config;
use anyhow::{Context, Result};
use sichat_accounts::protocol::InviteCreated;
use sichat_accounts::{Accounts, Settings};
use sichat_core::db::Db;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::node::{rehost_done, rehost_pending, settle_public_url, NodeIdentity, PublicUrl};
use sichat_core::resolver::Resolver;
use sichat_core::seal::{MasterKey, MasterKeySource};
use sichat_issuer::Issuer;
use sichat_messaging::Messaging;
use sichat_oidc::Provider;
use sichat_verifier::oid4vp::Presentations;
use sichat_verifier::Verifier;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use url::Url;

/// An open node: everything handlers need. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub config: Arc<Config>,
    pub db: Db,
    pub identity: Arc<NodeIdentity>,
    pub accounts: Arc<Accounts>,
    pub issuer: Arc<Issuer>,
    pub verifier: Arc<Verifier>,
    pub presentations: Arc<Presentations>,
    pub oidc: Arc<Provider>,
    pub messaging: Arc<Messaging>,
    /// Resolves other parties' DIDs (a recovery friend's key, say).
    pub resolver: Arc<Resolver>,
    pub master_key_source: MasterKeySource,
}

impl Node {
    /// Open (or create) the node described by `config`. `derived_url` (from the address
    /// bound) is its public URL on first start unless `public_url` is configured; after
    /// that the remembered one is kept, so its DIDs do not move.
    pub async fn open(config: Config, derived_url: Url) -> Result<Self> {
        if !config.data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
        }
        warn_if_others_can_read(&config.data_dir);
        let url = config.database_url();
        let db = Db::open(&url).await.with_context(|| format!("cannot open the database at {}", redact(&url)))?;
        let (master, master_key_source) = master_key(&config.data_dir, &db).await?;
        let public_url = match settle_public_url(&db, config.public_url.as_ref(), &derived_url).await? {
            PublicUrl::Changed { from, to } => {
                tracing::warn!(
                    %from, %to,
                    "public_url changed: every DID of this node moves with it; the node keeps answering at {from} \
                     for the old DIDs (keep that name pointing here)"
                );
                to
            }
            PublicUrl::Kept(url) if url != derived_url && config.public_url.is_none() => {
                tracing::info!(%url, "keeping the public URL from the first start; set public_url to change it");
                url
            }
            other => other.url().clone(),
        };
        let (identity, _) = NodeIdentity::load_or_create(&db, &master, &public_url).await?;
        let settings = Settings {
            session_ttl_ms: config.session_ttl_secs * 1000,
            invite_ttl_ms: config.invite_ttl_hours * 3600 * 1000,
            moved_account_ms: config.moved_account_days * 24 * 3600 * 1000,
            ..Settings::default()
        };
        let identity = Arc::new(identity);
        let master = Arc::new(master);
        let accounts = Arc::new(Accounts::new(db.clone(), identity.clone(), master.clone(), settings));
        let allow_local = config.allow_local_network.unwrap_or_else(|| is_loopback(&public_url));
        if allow_local {
            tracing::info!("the verifier may reach loopback and private addresses (allow_local_network)");
        }
        // The node's own DIDs are fetched with its public URL's scheme: HTTPS for a node at
        // https://localhost:8443, not a plain HTTP guessed for loopback.
        let resolver = Arc::new(
            Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local })?))
                .with_origins(
                    std::iter::once(public_url.clone()).chain(identity.former().iter().map(|f| f.url.clone())),
                )
                .with_ttl(std::time::Duration::from_secs(config.did_cache_secs)),
        );
        let issuer = Arc::new(Issuer::new(db.clone(), accounts.clone(), resolver.clone()));
        let verifier = Arc::new(Verifier::with_resolver(resolver.clone(), issuer.own_contexts()));
        let messaging = Arc::new(
            Messaging::new(
                db.clone(),
                identity.clone(),
                accounts.clone(),
                issuer.clone(),
                verifier.clone(),
                resolver.clone(),
                config.messaging_settings(),
            )
            .with_mailbox_epoch(sichat_core::node::mailbox_epoch(&db).await?),
        );
        let presentations = Arc::new(Presentations::new(db.clone(), accounts.clone(), verifier.clone()));
        let oidc = Arc::new(
            Provider::open(db.clone(), accounts.clone(), master.clone(), verifier.clone(), config.oidc_settings())
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the OpenID Provider: {e}"))?,
        );
        register_account_hooks(&accounts, &identity, &messaging, &oidc);
        follow_new_url(&db, &accounts).await?;
        Ok(Self {
            config: Arc::new(config),
            db,
            identity,
            accounts,
            issuer,
            verifier,
            presentations,
            oidc,
            messaging,
            resolver,
            master_key_source,
        })
    }

    /// While the node has no accounts, a fresh one-time owner invite.
    pub async fn owner_invite(&self) -> Result<Option<InviteCreated>> {
        Ok(self.accounts.owner_invite_if_needed(self.config.owner_quota).await?)
    }
}

/// After a change of public URL (`sichatd admin change-url`, or a new `public_url`), every
/// account follows the node, with progress on stderr. Resumed at the next start if cut
/// short: each account follows once.
async fn follow_new_url(db: &Db, accounts: &Accounts) -> Result<()> {
    let Some(from) = rehost_pending(db).await? else { return Ok(()) };
    let mut progress = sichat_core::progress::Progress::new("accounts following the new URL");
    let followed =
        accounts.rehost_accounts(&from, |done, total| progress.update(done, total)).await.with_context(|| {
            format!("the accounts could not follow the node from {from}: start the node again to resume")
        })?;
    progress.finish();
    rehost_done(db).await?;
    tracing::info!(%from, followed, "every account follows the node's new URL");
    Ok(())
}

/// Every crate that keeps rows for a user ends them when the account is removed, a device
/// revoked, or the user signs out everywhere: each through its own hook, in the accounts
/// service's transaction. Messaging's also closes the pickup WebSockets of what ended.
/// The master key: `SICHAT_MASTER_KEY`, else `master.key` in the data directory, made on a
/// first start. A database that holds a node key was made with a master key already: a new
/// one could not open it, so none is made (a restore into a fresh directory without its
/// `master.key` stops here, leaving nothing behind).
async fn master_key(data_dir: &std::path::Path, db: &Db) -> Result<(MasterKey, MasterKeySource)> {
    let env_key = std::env::var("SICHAT_MASTER_KEY").ok().filter(|v| !v.is_empty());
    let keyed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM node_keys").fetch_one(db.pool()).await?;
    if keyed == 0 {
        return Ok(MasterKey::load_or_create(data_dir, env_key.as_deref())?);
    }
    MasterKey::load(data_dir, env_key.as_deref())?.ok_or_else(|| {
        anyhow::anyhow!(
            "this database was made with a master key, and there is none in {} (nor SICHAT_MASTER_KEY): put the \
             master.key this node was created with back there",
            data_dir.join("master.key").display()
        )
    })
}

fn register_account_hooks(accounts: &Accounts, node: &Arc<NodeIdentity>, messaging: &Messaging, oidc: &Provider) {
    accounts.register_hooks(Arc::new(oidc.account_hooks()));
    accounts.register_hooks(Arc::new(sichat_issuer::account_hooks::IssuerAccountHooks::new(node.clone())));
    accounts.register_hooks(Arc::new(sichat_verifier::account_hooks::VerifierAccountHooks));
    accounts.register_hooks(Arc::new(sichat_holder::account_hooks::HolderAccountHooks));
    accounts.register_hooks(Arc::new(sichat_messaging::account_hooks::MessagingAccountHooks::new(messaging.hub())));
}

/// The data directory holds the master key, the database and its WAL: other users of the
/// machine have no business listing or reading it. The files in it are private
/// themselves; say so when the directory is not.
fn warn_if_others_can_read(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(dir) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the data directory {} is open to other users (mode {mode:o}); run `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
    }
}

/// A database URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A development node (its public URL on loopback): its own DIDs live on the local
/// network, so its verifier must be able to reach it.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

//! `sichat`, the Sichat wallet: your keys, your DID, and your client for your own node.
//! It also works with no server at all (a `did:key` identity).

mod account_move;
mod client;
mod contacts;
mod credential;
mod device;
mod did_log;
mod export;
mod follow;
mod history;
mod init;
mod login;
mod message;
mod oidc;
mod pickup;
mod policy;
mod present;
mod recovery;
mod standby;
mod verify;
mod wallet;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use client::{Client, ServerError};
use serde::Serialize;
use serde_json::json;
use sichat_accounts::protocol::*;
use sichat_core::did::{Did, DidDocument};
use sichat_core::ids::now_ms;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::net::{FetchError, Fetcher, NetPolicy};
use sichat_core::resolver::Resolver;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use wallet::Wallet;

pub(crate) const CERT_LIFETIME_SECS: i64 = 365 * 24 * 3600;

/// sichat: your sovereign identity wallet.
///
/// Start with `sichat init` (alone, as a did:key) or
/// `sichat init --server URL --invite CODE --name NAME` (an account on your node).
#[derive(Parser)]
#[command(name = "sichat", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Wallet directory [default: your data directory, e.g. ~/.local/share/sichat].
    #[arg(long, global = true, env = "SICHAT_WALLET")]
    wallet: Option<PathBuf>,
    /// Read the passphrase from this file (else SICHAT_PASSPHRASE, else a prompt).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// Let DIDs and links reach loopback and private addresses, over plain HTTP too. On by
    /// itself when your own node is on such an address; otherwise for development only (a
    /// document could make the wallet probe your network).
    #[arg(long, global = true, env = "SICHAT_ALLOW_LOCAL_NETWORK")]
    allow_local_network: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new wallet: a root key, this device's keys, and a DID.
    Init {
        /// Your node's URL. Without it, the wallet is a did:key identity that works alone.
        #[arg(long, requires = "invite")]
        server: Option<String>,
        /// The invite code you were given.
        #[arg(long, requires = "server")]
        invite: Option<String>,
        /// Your user name on the node (a-z, 0-9, '-'); it becomes part of your DID.
        #[arg(long)]
        name: Option<String>,
        /// A name for this device.
        #[arg(long, default_value = "first device")]
        device_name: String,
    },
    /// Give a wallet that works alone (a did:key) an account on a node, keeping its root key,
    /// credentials, contacts and messages: the new DID names the did:key in `alsoKnownAs`,
    /// and credentials issued to the did:key still present from this wallet.
    Join {
        /// The node's URL.
        #[arg(long)]
        server: String,
        /// The invite code you were given.
        #[arg(long)]
        invite: String,
        /// Your user name on the node (a-z, 0-9, '-'); it becomes part of your DID.
        #[arg(long)]
        name: String,
    },
    /// Show who this wallet is.
    Whoami,
    /// Your DID.
    #[command(subcommand)]
    Did(DidCmd),
    /// Your devices.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Invite friends to your node.
    #[command(subcommand)]
    Invite(InviteCmd),
    /// Accounts below you in the invite tree.
    #[command(subcommand)]
    User(UserCmd),
    /// Your root key.
    #[command(subcommand)]
    Key(KeyCmd),
    /// For when the root key is lost: a recovery kit, or friends who hold shares of a
    /// recovery key (`setup`); then `restore`, or `ask` and `finish`, in a new wallet.
    #[command(subcommand)]
    Recovery(recovery::RecoveryCmd),
    /// Your messages and contacts on your node, sealed to your devices and your recovery
    /// key (the node cannot read them): every device and a recovered wallet get them.
    #[command(subcommand)]
    History(HistoryCmd),
    /// Move your account to another node, keeping your DID, what you issued and hold, and
    /// your devices: `sichat move --to https://new.example --invite CODE`.
    Move(account_move::MoveArgs),
    /// A second node (a friend's) that keeps your messages while your node is down, and
    /// hands them over when it is back: add, show, remove.
    #[command(subcommand)]
    Standby(standby::StandbyCmd),
    /// Before your node goes away: take into this wallet what it needs to go on without it
    /// (issuing keys, the status of what you issued, your history), and write a static site
    /// of your DID and status lists for any static web host.
    Export(export::ExportArgs),
    /// The static site `sichat export` wrote: check it, or revoke with no node.
    #[command(subcommand)]
    Site(export::SiteCmd),
    /// Issue credentials to friends, and revoke them.
    #[command(subcommand)]
    Credential(credential::CredentialCmd),
    /// Check a credential or presentation: signature, key relationship, dates, status,
    /// schema, holder binding and (optionally) trust. Exits 2 when it is invalid.
    Verify(verify::VerifyArgs),
    /// Answer an OpenID4VP request: show who asks for what, choose a credential, confirm,
    /// and send a presentation signed by this device.
    Present(present::PresentArgs),
    /// Ask others for credentials over OpenID4VP, and read the results.
    #[command(subcommand)]
    Verifier(present::VerifierCmd),
    /// Your password for signing in to other sites through your node.
    #[command(subcommand)]
    Password(oidc::PasswordCmd),
    /// Signing in to other sites with your node (OpenID Connect): the sites you allowed.
    #[command(subcommand)]
    Oidc(oidc::OidcCmd),
    /// Sign in on your node's sign-in page with this wallet: `sichat login approve CODE`.
    #[command(subcommand)]
    Login(login::LoginCmd),
    /// Passkeys for signing in from a browser: add (prints a one-time link to open in the
    /// browser), list, remove.
    #[command(subcommand)]
    Passkey(login::PasskeyCmd),
    /// End-to-end encrypted messages through your node: send, inbox, read, watch, status.
    #[command(subcommand)]
    Message(message::MessageCmd),
    /// Names for the DIDs you message, kept in this wallet only.
    #[command(subcommand)]
    Contacts(contacts::ContactsCmd),
    /// Who may message you: members of your node, holders of credentials you issued,
    /// everyone else into a requests folder, and blocks.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
}

#[derive(Subcommand)]
enum DidCmd {
    /// Print your DID document (fetched from your node, or derived for did:key).
    Show,
    /// Give your account a portable did:webvh DID, whose verifiable history your root key
    /// signs, so it can move to another server. Your did:web DID stays valid and names it.
    Upgrade,
}

#[derive(Subcommand)]
enum InviteCmd {
    /// Create an invite. Its quota is split off yours.
    Create {
        /// How many accounts the invite's subtree may hold, the invitee included.
        #[arg(long)]
        quota: i64,
        /// A note for yourself ("for Bob").
        #[arg(long)]
        label: Option<String>,
        /// Hours until the invite expires [default: the node's, 7 days].
        #[arg(long)]
        expires_in_hours: Option<i64>,
    },
    /// List the invites you made.
    List,
    /// Revoke an unused invite; its quota comes back to you.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Remove an account below you in the invite tree. Accounts it invited move up to its inviter.
    Remove { name: String },
}

#[derive(Subcommand)]
enum HistoryCmd {
    /// Take in what your other devices kept on the node, and keep what this wallet holds
    /// there (`message inbox` does this too).
    Sync,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Replace your root key. The old key signs the change; your devices are re-blessed.
    Rotate,
}

/// What to say when the network policy refused a local address.
pub(crate) const LOCAL_HINT: &str = "hint: this wallet reaches loopback and private addresses only for its own node; \
     for another node or issuer on your own network, pass --allow-local-network (or set SICHAT_ALLOW_LOCAL_NETWORK=true)";

/// Whether `e` is a fetch the network policy refused because it named a local address.
fn refused_local(e: &anyhow::Error) -> bool {
    use sichat_core::resolver::ResolveError;
    use sichat_holder::HolderError;
    let private = |f: &FetchError| matches!(f, FetchError::PrivateAddress { .. });
    e.chain().any(|c| {
        c.downcast_ref::<FetchError>().is_some_and(private)
            || matches!(c.downcast_ref::<ResolveError>(), Some(ResolveError::Fetch(f)) if private(f))
            || matches!(c.downcast_ref::<HolderError>(), Some(HolderError::Net(f)) if private(f))
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Like other Unix tools, end quietly when the reader goes away (`sichat … | head`)
    // instead of panicking on a broken pipe.
    // SAFETY: setting a signal disposition before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let json = cli.global.json;
    if let Err(e) = run(cli).await {
        if json {
            let code = e.downcast_ref::<ServerError>().map(|s| s.code.clone()).unwrap_or_else(|| "error".into());
            eprintln!("{}", json!({"error": code, "message": format!("{e:#}")}));
        } else {
            eprintln!("error: {e:#}");
            if refused_local(&e) {
                eprintln!("{LOCAL_HINT}");
            }
        }
        std::process::exit(1);
    }
}

pub(crate) struct Ctx {
    pub(crate) dir: PathBuf,
    passphrase_file: Option<PathBuf>,
    pub(crate) json: bool,
    allow_local_network: bool,
    /// The passphrase that unlocked the wallet, so one command asks for it once.
    unlocked_with: std::sync::OnceLock<String>,
}

impl Ctx {
    /// The DID resolver and its fetcher under the wallet's network policy, which every
    /// fetch of every wallet command goes through: local addresses only when asked
    /// (`--allow-local-network`), or when `chosen` (the wallet's own node, nothing a
    /// stranger sent) lives on one. The chosen URLs' schemes are kept for their own DIDs, so
    /// a node at `https://localhost:8443` is not asked over plain HTTP.
    pub(crate) fn resolver(&self, chosen: &[Option<&str>]) -> Result<Resolver> {
        let strict = Fetcher::new(NetPolicy { allow_local: false })?;
        let chosen_local =
            chosen.iter().flatten().any(|url| matches!(strict.check_url(url), Err(FetchError::PrivateAddress { .. })));
        let policy = NetPolicy { allow_local: self.allow_local_network || chosen_local };
        let origins = chosen.iter().flatten().filter_map(|u| url::Url::parse(u).ok());
        Ok(Resolver::new(Arc::new(Fetcher::new(policy)?)).with_origins(origins))
    }

    pub(crate) fn passphrase(&self, confirm: bool) -> Result<String> {
        if let (false, Some(p)) = (confirm, self.unlocked_with.get()) {
            return Ok(p.clone());
        }
        if let Some(path) = &self.passphrase_file {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            return non_empty(text.trim_end_matches(['\n', '\r']).to_owned());
        }
        if let Ok(p) = std::env::var("SICHAT_PASSPHRASE") {
            return non_empty(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!("no passphrase: set SICHAT_PASSPHRASE or pass --passphrase-file FILE");
        }
        let p = rpassword::prompt_password("Wallet passphrase: ")?;
        if confirm && rpassword::prompt_password("Repeat passphrase: ")? != p {
            bail!("the passphrases differ: run the command again");
        }
        non_empty(p)
    }

    pub(crate) fn open(&self) -> Result<(Wallet, String)> {
        wallet::read_profile(&self.dir)?;
        let pass = self.passphrase(false)?;
        if std::io::stderr().is_terminal() && !self.json {
            eprint!("Unlocking wallet…\r");
        }
        let w = Wallet::open(&self.dir, &pass)?;
        let _ = self.unlocked_with.set(pass.clone());
        Ok((w, pass))
    }

    /// Unlock the wallet and log in to its node.
    pub(crate) async fn session(&self) -> Result<(Wallet, Client)> {
        let (mut w, pass) = self.open()?;
        let server = w.profile.server.clone().ok_or_else(no_server)?;
        self.renew_own_certificate(&mut w, &pass).await?;
        let mut client = Client::new(&server)?;
        client.login_seq = Some(wallet::next_login_seq(&self.dir)?);
        let login = match client.login(&w).await {
            Err(e) if follow::moved_away(&e) => {
                let client = follow::follow_moved(self, &w, &pass).await?;
                return Ok((Wallet::open(&self.dir, &pass)?, client));
            }
            other => other?,
        };
        let followed = follow::follow_node(&mut w.profile, &login);
        let renewed = login.certificate.is_some();
        if let Some(fresh) = login.certificate.clone() {
            w.certificate = fresh;
        }
        if followed || renewed {
            w.save(&self.dir, &pass)?;
        }
        if followed {
            follow::tell_followed(self, &w.profile);
        }
        if login.session.did_log_behind {
            if let Some(root) = w.root.as_ref() {
                let did = did_log::follow_host(&client, &w, root).await?;
                wallet::update(&self.dir, &pass, |saved: &mut Wallet| {
                    saved.profile.remember_dids([did.clone()]);
                    Ok(())
                })?;
                w.profile.remember_dids([did.clone()]);
                if !self.json {
                    eprintln!("Your portable DID follows your node: {did}");
                }
            }
        }
        if login.session.recovery_open {
            eprintln!(
                "warning: someone opened a recovery of your account with your recovery friends. If it was not you, \
                 cancel it now: `sichat recovery cancel` (see who approved: `sichat recovery log`)."
            );
        }
        if login.session.copy_suspected {
            eprintln!(
                "warning: another copy of this wallet signs in as this device ({}): the two split its incoming \
                 messages between them. Keep one; for the other, bless a device of its own with `sichat device add` \
                 on the wallet that holds your root key, and use that wallet there.",
                w.profile.device_name
            );
        }
        if let (true, Some(root)) = (login.session.did_log_stale, w.root.as_ref()) {
            match client.root_operation(&w, root, RootOperation::SyncDidLog).await {
                Ok(_) if !self.json => eprintln!("Your DID log now drops the devices another device revoked."),
                Ok(_) => {}
                Err(e) => eprintln!("warning: could not bring your DID log up to date: {e:#}"),
            }
        }
        match did_log::keep(&self.dir, &pass, &client, &w).await {
            Ok(Some(kept)) => w.did_log = kept,
            Ok(None) => {}
            Err(e) => eprintln!("warning: could not keep a copy of your DID log: {e:#}"),
        }
        if login.session.renewal_due && w.root.is_some() {
            match device::renew_others(&client, &w, false).await {
                Ok(renewed) if !self.json => {
                    for d in renewed {
                        eprintln!("Renewed the certificate of {} ({}) until {}", d.name, d.id, date(d.cert_expires_at));
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: could not renew your devices' certificates: {e:#}"),
            }
        }
        Ok((w, client))
    }

    /// [`device::renew_own`] before signing in. A certificate that has not ended yet is
    /// still good if renewing fails (say, while the account moves): warn and go on.
    async fn renew_own_certificate(&self, w: &mut Wallet, pass: &str) -> Result<()> {
        let Err(e) = device::renew_own(self, w, pass, false).await else { return Ok(()) };
        let ended =
            jws::unverified_payload::<DeviceCertificate>(&w.certificate).map_or(true, |c| c.exp * 1000 <= now_ms());
        if ended {
            return Err(e.context("this device's certificate has ended and renewing it failed"));
        }
        eprintln!("warning: could not renew this device's certificate yet: {e:#}");
        Ok(())
    }

    pub(crate) fn print<T: Serialize>(&self, value: &T, human: impl FnOnce(&T)) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            human(value);
        }
        Ok(())
    }
}

fn non_empty(p: String) -> Result<String> {
    if p.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(p)
}

pub(crate) fn no_server() -> anyhow::Error {
    anyhow!("this wallet has no server (a did:key identity); make a wallet with `sichat init --server URL --invite CODE --name NAME`")
}

pub(crate) fn need_root(w: &Wallet) -> Result<&Ed25519KeyPair> {
    w.root.as_ref().ok_or_else(|| {
        anyhow!("this wallet holds only a device key; run this from the wallet that holds your root key (where you ran `sichat init`)")
    })
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        dir: cli.global.wallet.unwrap_or_else(wallet::default_dir),
        passphrase_file: cli.global.passphrase_file,
        json: cli.global.json,
        allow_local_network: cli.global.allow_local_network,
        unlocked_with: std::sync::OnceLock::new(),
    };
    match cli.command {
        Command::Init { server, invite, name, device_name } => {
            init::init(&ctx, server, invite, name, device_name).await
        }
        Command::Join { server, invite, name } => init::join(&ctx, &server, &invite, &name).await,
        Command::Whoami => whoami(&ctx),
        Command::Did(DidCmd::Show) => did_show(&ctx).await,
        Command::Did(DidCmd::Upgrade) => did_upgrade(&ctx).await,
        Command::Move(args) => account_move::run(&ctx, args).await,
        Command::Device(cmd) => device::run(&ctx, cmd).await,
        Command::Recovery(cmd) => recovery::run(&ctx, cmd).await,
        Command::History(HistoryCmd::Sync) => history::run(&ctx).await,
        Command::Invite(cmd) => invite(&ctx, cmd).await,
        Command::User(UserCmd::Remove { name }) => {
            let (_, mut c) = ctx.session().await?;
            let result = c.delete(&format!("/api/v1/users/{name}")).await;
            c.logout().await;
            result?;
            ctx.print(&json!({"removed": name}), |_| {
                println!("Removed {name}. Accounts it invited now hang under its inviter.")
            })
        }
        Command::Key(KeyCmd::Rotate) => rotate(&ctx).await,
        Command::Export(args) => export::run(&ctx, args).await,
        Command::Standby(cmd) => standby::run(&ctx, cmd).await,
        Command::Site(cmd) => export::site(&ctx, cmd).await,
        Command::Credential(cmd) => credential::run(&ctx, cmd).await,
        Command::Verify(args) => verify::run(&ctx, args).await,
        Command::Present(args) => present::present(&ctx, args).await,
        Command::Verifier(cmd) => present::verifier(&ctx, cmd).await,
        Command::Password(cmd) => oidc::password(&ctx, cmd).await,
        Command::Oidc(cmd) => oidc::oidc(&ctx, cmd).await,
        Command::Login(cmd) => login::login(&ctx, cmd).await,
        Command::Passkey(cmd) => login::passkey(&ctx, cmd).await,
        Command::Message(cmd) => message::run(&ctx, cmd).await,
        Command::Contacts(cmd) => contacts::run(&ctx, cmd).await,
        Command::Policy(cmd) => policy::run(&ctx, cmd).await,
    }
}

fn whoami(ctx: &Ctx) -> Result<()> {
    let p = wallet::read_profile(&ctx.dir)?;
    ctx.print(&p, |p| {
        println!("DID:     {}", p.did);
        if let Some(name) = &p.name {
            println!("name:    {name}");
        }
        match &p.server {
            Some(s) => println!("server:  {s} ({})", p.node_did.as_deref().unwrap_or("?")),
            None => println!("server:  none (did:key, works alone)"),
        }
        println!("device:  {} ({})", p.device_name, p.device_id);
        println!("wallet:  {}{}", ctx.dir.display(), if p.has_root_key { "" } else { " (device only, no root key)" });
    })
}

async fn did_show(ctx: &Ctx) -> Result<()> {
    let p = wallet::read_profile(&ctx.dir)?;
    let doc: DidDocument = match &p.server {
        None => DidDocument::for_did_key(&Did::parse(&p.did)?.key_ed25519()?),
        Some(server) => {
            let name = p.name.clone().unwrap_or_default();
            Client::new(server)?.get(&format!("/users/{name}/did.json")).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

async fn did_upgrade(ctx: &Ctx) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    let root = need_root(&w)?;
    let mut c = Client::new(w.profile.server.as_deref().ok_or_else(no_server)?)?;
    let Some(did) = did_log::upgrade(&mut c, &w, root).await? else {
        bail!("your account already has a did:webvh DID: `sichat did show` lists it under alsoKnownAs")
    };
    wallet::update(&ctx.dir, &pass, |w| {
        w.profile.also_known_as.push(did.to_string());
        Ok(())
    })?;
    w.profile.also_known_as.push(did.to_string());
    did_log::keep(&ctx.dir, &pass, &c, &w).await?;
    ctx.print(&json!({"did": did.to_string(), "also_known_as": w.profile.did}), |_| {
        println!("Your portable DID is {did}");
        println!("Its history is signed by your root key; {} stays valid and names it.", w.profile.did);
    })
}

async fn invite(ctx: &Ctx, cmd: InviteCmd) -> Result<()> {
    let (w, mut c) = ctx.session().await?;
    let result = match cmd {
        InviteCmd::Create { quota, label, expires_in_hours } => {
            let created: Result<InviteCreated> =
                c.post("/api/v1/invites", &CreateInvite { quota, label, expires_in_hours }).await;
            created.and_then(|i| {
                let server = w.profile.server.clone().unwrap_or_default();
                ctx.print(&i, |i| {
                    println!("Invite {} (quota {}, expires {}):", i.id, i.quota, date(i.expires_at));
                    println!("  {}", i.code);
                    println!("Your friend joins with:");
                    println!("  sichat init --server {server} --invite {} --name <their-name>", i.code);
                })
            })
        }
        InviteCmd::List => {
            let listed: Result<Vec<Invite>> = c.get("/api/v1/invites").await;
            let me: Result<Account> = c.get("/api/v1/me").await;
            listed.and_then(|invites| {
                let me = me?;
                ctx.print(
                    &json!({"quota": me.quota, "quota_available": me.quota_available, "invites": invites}),
                    |_| {
                        println!("Quota {} ({} left to give)", me.quota, me.quota_available);
                        for i in &invites {
                            let by = i.used_by.as_deref().map(|u| format!(" by {u}")).unwrap_or_default();
                            let label = i.label.as_deref().map(|l| format!(" \"{l}\"")).unwrap_or_default();
                            println!(
                                "{}  quota {}  {}{}{}  expires {}",
                                i.id,
                                i.quota,
                                i.status,
                                by,
                                label,
                                date(i.expires_at)
                            );
                        }
                    },
                )
            })
        }
        InviteCmd::Revoke { id } => c.delete(&format!("/api/v1/invites/{id}")).await.and_then(|_| {
            ctx.print(&json!({"revoked": id}), |_| println!("Revoked invite {id}; its quota is yours again."))
        }),
    };
    c.logout().await;
    result
}

async fn rotate(ctx: &Ctx) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    need_root(&w)?;
    let server =
        w.profile.server.clone().ok_or_else(|| anyhow!("a did:key identity is its key: it cannot be rotated"))?;
    ctx.renew_own_certificate(&mut w, &pass).await?;
    let old_root = need_root(&w)?;
    let mut c = Client::new(&server)?;
    c.login(&w).await?;
    let devices: Vec<Device> = c.get("/api/v1/devices").await?;
    c.logout().await;
    let new_root = Ed25519KeyPair::generate();
    let mut certificates = Vec::new();
    let mut own_certificate = None;
    for d in &devices {
        let cert = device::recertify(&w, &new_root, d)?;
        if d.id == w.profile.device_id {
            own_certificate = Some(cert.clone());
        }
        certificates.push(cert);
    }
    let own_certificate = own_certificate.ok_or_else(|| anyhow!("this device is not active on the node"))?;
    let op = RootOperation::RotateRoot { new_root_key: new_root.public().to_multibase(), certificates };
    // The old key's word that the new one replaces it: a node restored from an older
    // backup follows it (`catch_up`).
    let rotation = RootRotation {
        iss: w.profile.did.clone(),
        prev: old_root.public().to_multibase(),
        next: new_root.public().to_multibase(),
        iat: now_secs(),
    };
    let mut rotations = w.rotations.clone();
    rotations.push(jws::sign(old_root, TYP_ROOT_ROTATION, None, &rotation)?);
    // Save the new key first, as a pending file, so a crash cannot lose it.
    let updated = Wallet {
        profile: w.profile.clone(),
        root: Some(Ed25519KeyPair::from_secret(&new_root.secret())?),
        device_sign: Ed25519KeyPair::from_secret(&w.device_sign.secret())?,
        device_agree: X25519KeyPair::from_secret(&w.device_agree.secret())?,
        certificate: own_certificate,
        credentials: w.credentials.clone(),
        messages: w.messages.clone(),
        contacts: w.contacts.clone(),
        known_keys: w.known_keys.clone(),
        rotations,
        history: w.history.clone(),
        issued: w.issued.clone(),
        blessed: w.blessed.clone(),
        did_log: w.did_log.clone(),
        outbox_key: w.outbox_key.clone(),
        // The did:key the account started as is the old root key: credentials bound to it
        // are still presented with it.
        exported: w.exported.clone(),
        key_did: match &w.key_did {
            Some(k) => Some(Ed25519KeyPair::from_secret(&k.secret())?),
            None if w.profile.also_known_as.contains(&Did::key(&old_root.public()).to_string()) => {
                Some(Ed25519KeyPair::from_secret(&old_root.secret())?)
            }
            None => None,
        },
    };
    let pending = updated.write_pending(&ctx.dir, &pass)?;
    if let Err(e) = c.root_operation(&w, old_root, op).await {
        let _ = std::fs::remove_file(&pending);
        return Err(e);
    }
    wallet::commit_pending(&pending, &ctx.dir)?;
    if let Err(e) = did_log::keep(&ctx.dir, &pass, &c, &updated).await {
        eprintln!("warning: could not keep a copy of your DID log: {e:#}");
    }
    let key = new_root.public().to_multibase();
    ctx.print(&json!({"did": w.profile.did, "root_key": key, "devices_recertified": devices.len()}), |_| {
        println!("Rotated the root key of {}; {} device(s) re-blessed.", w.profile.did, devices.len());
    })
}

pub(crate) fn date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| ms.to_string())
}

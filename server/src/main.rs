use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sichat_accounts::protocol::CreateInvite;
use sichat_core::db::Backend;
use sichat_server::config::{LogFormat, Overrides};
use sichat_server::{serve, Config, Node};
use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

/// sichatd: your own identity server. Issues, holds and verifies credentials, logs you in
/// elsewhere, and keeps your messages while you are offline.
#[derive(Parser)]
#[command(name = "sichatd", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (unknown keys are errors).
    #[arg(long, global = true, env = "SICHAT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./sichat-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… for PostgreSQL [default: SQLite in the data directory].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// External base URL; its host and port make the node's did:web.
    #[arg(long, global = true)]
    public_url: Option<Url>,
    /// Log format.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (creates the data directory, keys and database on first start).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Operator commands that work on the data directory, with or without a running node.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Mint an invite from the node itself (a new top of the invite tree).
    Invite {
        /// How many accounts the invite's subtree may hold, the invitee included.
        #[arg(long)]
        quota: i64,
        /// A note for yourself ("for Bob").
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every account.
    Users {
        #[arg(long)]
        json: bool,
    },
    /// Remove an account. The accounts it invited move up to its inviter.
    Remove { name: String },
    /// Write a consistent copy of the database to PATH.
    Backup { path: PathBuf },
    /// Put a backup made by `admin backup` in place of the database, after checking that it
    /// is whole, of this node, sealed under this node's master key and not newer than this
    /// sichatd. The database it replaces is kept beside it. Stop the node first.
    Restore {
        /// The backup (a SQLite file, or a pg_dump archive for PostgreSQL).
        #[arg(long)]
        from: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// After restoring the database by other means (PostgreSQL point-in-time recovery, a
    /// copied SQLite file): record it, so that the nodes that delivered messages here since
    /// the state it went back to deliver them again. `restore` does this itself.
    Restored {
        #[arg(long)]
        json: bool,
    },
    /// Replace the OpenID Provider's signing keys now. The old ones stay published until the
    /// ID tokens they signed expire (about an hour); a running node picks the new ones up
    /// within a minute.
    RotateKeys {
        #[arg(long)]
        json: bool,
    },
    /// Move the node to a new public URL (a new domain) with every account. The DIDs made
    /// from the old URL keep working: keep the old name pointing at this node (for
    /// `moved_account_days`), and the node answers there for them. Stop the node first,
    /// then start it at the new URL (and set `public_url` to it in the configuration file,
    /// if it names one). Accounts with a did:webvh DID follow when their root-key wallet
    /// next signs in.
    ChangeUrl {
        /// The new public URL, e.g. https://id.new.example.
        #[arg(long)]
        to: Url,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Mint a single-use initial access token for OpenID client registration, for nodes with
    /// `oidc_registration = "invite-only"`. Give it to the site's operator; their client
    /// sends it as `Authorization: Bearer TOKEN` to the registration endpoint.
    ClientToken {
        /// How long the token stays valid.
        #[arg(long, default_value_t = 168)]
        ttl_hours: i64,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    keep_big_buffers_out_of_the_heap();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `sichatd admin change-url`: opening the node at the new URL records the change and makes
/// every account follow it (with progress), as a new `public_url` does at a start.
async fn change_url(mut config: Config, to: Url, yes: bool, json: bool) -> Result<()> {
    if !matches!(to.scheme(), "https" | "http") || to.host_str().is_none() {
        bail!("{to} is not a node URL: give https://host[:port]");
    }
    if !yes {
        confirm(
            "changing the node's URL",
            &[
                &format!("Every DID of this node and of its accounts moves to {to}."),
                "Keep the old host name pointing at this node: it answers there for the old DIDs.",
                "Stop the node first.",
            ],
        )?;
    }
    let derived = config.public_url_for(config.listen);
    config.public_url = Some(to.clone());
    let node = Node::open(config, derived).await?;
    let former: Vec<String> = node.identity.former().iter().map(|f| f.url.to_string()).collect();
    let users = node.accounts.users().await?.len();
    if json {
        println!(
            "{}",
            serde_json::json!({"public_url": to, "did": node.identity.did(), "former_urls": former, "accounts": users})
        );
    } else {
        println!("The node is now {to} ({}), with its {users} accounts.", node.identity.did());
        if let Some(old) = former.first() {
            println!("It keeps answering at {old} for the old DIDs: keep that name pointing here.");
        }
        println!("Start it again: it remembers the new URL (a public_url in the configuration file must name it).");
    }
    node.db.close().await;
    Ok(())
}

/// Large buffers (argon2id's 19 MiB per password check) get their own mapping, returned to
/// the system when freed. By default glibc raises its mmap threshold once such a buffer is
/// freed, so every later one is carved from some thread's heap and stays resident there: RSS
/// grew by about 40 MB with every burst of sign-ins (BENCHMARKS.md, OpenID Provider).
/// Ask the operator before `what` (which "needs your confirmation"), saying `lines` first:
/// refused without a terminal (scripts pass `--yes`), and unless the answer is yes.
fn confirm(what: &str, lines: &[&str]) -> Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("{what} needs your confirmation: run it in a terminal, or pass --yes");
    }
    for line in lines {
        eprintln!("{line}");
    }
    eprint!("Go on? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        bail!("nothing changed");
    }
    Ok(())
}

/// `sichatd admin restore` (`restore.rs`), after the operator confirmed.
async fn restore(config: Config, from: PathBuf, yes: bool, json: bool) -> Result<()> {
    if !yes {
        confirm(
            "restoring replaces the node's database and",
            &[
                &format!("The node's database is replaced by {} (the current one is kept beside it).", from.display()),
                "Everything since that backup is no longer in the node. Stop the node first.",
            ],
        )?;
    }
    let restored = sichat_server::restore::restore(&config, &from).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&restored)?);
    } else {
        println!("Restored {} (node key {}, schema {}).", from.display(), restored.node_key, restored.schema);
        if let Some(kept) = &restored.kept {
            println!("The database it replaced is kept as {kept}.");
        }
        println!(
            "Start the node: it brings an older schema up to date, and the nodes that delivered messages here \
             since the backup deliver them again (up to six days back)."
        );
    }
    Ok(())
}

/// After the database was restored by other means: a new mailbox epoch.
async fn restored(config: Config, json: bool) -> Result<()> {
    let epoch = sichat_server::restore::new_epoch(&config.database_url()).await?;
    if json {
        println!("{}", serde_json::json!({ "mailbox_epoch": epoch }));
    } else {
        println!(
            "Recorded the restore. Once the node runs, the nodes that delivered messages here since the state it \
             went back to deliver them again (up to six days back)."
        );
    }
    Ok(())
}

fn keep_big_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let log_format = match cli.log_format.as_deref() {
        Some("json") => Some(LogFormat::Json),
        Some(_) => Some(LogFormat::Text),
        None => None,
    };
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        Command::Admin(_) => None,
    };
    let flags = Overrides {
        data_dir: cli.data_dir,
        listen,
        public_url: cli.public_url,
        database_url: cli.database_url,
        log_format,
    };
    let config = Config::load(cli.config.as_deref(), &flags).map_err(anyhow::Error::msg)?;
    init_tracing(config.log_format, matches!(cli.command, Command::Serve { .. }));
    match cli.command {
        Command::Serve { .. } => serve_node(config).await,
        Command::Admin(cmd) => admin(config, cmd).await,
    }
}

fn init_tracing(format: LogFormat, serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},sqlx=warn")));
    // Colour only for a person at a terminal: escape codes in a log file or pipe are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve_node(config: Config) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}: is another process using it? Try --listen", config.listen))?;
    let public_url = config.public_url_for(listener.local_addr()?);
    let node = Node::open(config, public_url).await?;
    let invite = node.owner_invite().await?;
    let url = node.identity.public_url().as_str().trim_end_matches('/').to_owned();
    println!("sichatd {} is running", env!("CARGO_PKG_VERSION"));
    println!("  URL:  {url}");
    println!("  DID:  {}", node.identity.did());
    println!("  data: {} (master key: {})", node.config.data_dir.display(), node.master_key_source);
    if let Some(invite) = invite {
        println!();
        println!("No accounts yet. One-time owner invite (quota {}):", invite.quota);
        println!("  {}", invite.code);
        println!("Join with:");
        println!("  sichat init --server {url} --invite {} --name <your-name>", invite.code);
    }
    tracing::info!(url = %url, did = %node.identity.did(), backend = ?node.db.backend(), "listening");
    serve::serve(node, listener, serve::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn admin(config: Config, cmd: Admin) -> Result<()> {
    if let Admin::ChangeUrl { to, yes, json } = cmd {
        return change_url(config, to, yes, json).await;
    }
    if let Admin::Restore { from, yes, json } = cmd {
        return restore(config, from, yes, json).await;
    }
    if let Admin::Restored { json } = cmd {
        return restored(config, json).await;
    }
    let public_url = config.public_url_for(config.listen);
    let node = Node::open(config, public_url).await?;
    match cmd {
        Admin::ChangeUrl { .. } => bail!("change-url opens the node at its new URL itself"),
        Admin::Restore { .. } | Admin::Restored { .. } => bail!("this command runs without opening the node"),
        Admin::Invite { quota, label, json } => {
            let created =
                node.accounts.create_invite(None, CreateInvite { quota, label, expires_in_hours: None }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                let url = node.identity.public_url().as_str().trim_end_matches('/');
                println!("Invite (quota {}, id {}):", created.quota, created.id);
                println!("  {}", created.code);
                println!("Join with:");
                println!("  sichat init --server {url} --invite {} --name <name>", created.code);
            }
        }
        Admin::Users { json } => {
            let users = node.accounts.users().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else if users.is_empty() {
                println!("No accounts yet. Mint an invite with: sichatd admin invite --quota 10");
            } else {
                println!("{:<20} {:<8} {:>5} {:>7}  {:<16} DID", "NAME", "STATUS", "QUOTA", "DEVICES", "INVITED BY");
                for u in users {
                    let by = u.invited_by.unwrap_or_else(|| "(node)".into());
                    println!("{:<20} {:<8} {:>5} {:>7}  {:<16} {}", u.name, u.status, u.quota, u.devices, by, u.did);
                }
            }
        }
        Admin::RotateKeys { json } => {
            let kids = node.oidc.rotate_keys().await?;
            if json {
                println!("{}", serde_json::json!({"new_kids": kids}));
            } else {
                println!("New signing keys: {}", kids.join(", "));
                println!("The old keys stay in the JWKS until the ID tokens they signed expire.");
            }
        }
        Admin::ClientToken { ttl_hours, json } => {
            if !(1..=24 * 365).contains(&ttl_hours) {
                bail!("--ttl-hours must be between 1 and 8760");
            }
            let token = sichat_oidc::clients::create_registration_token(&node.db, ttl_hours * 3_600_000).await?;
            let endpoint = node.oidc.url("oidc/register");
            if json {
                println!("{}", serde_json::json!({"initial_access_token": token, "registration_endpoint": endpoint}));
            } else {
                println!("Initial access token (single use, {ttl_hours} h):");
                println!("  {token}");
                println!("The client registers at {endpoint} with `Authorization: Bearer <token>`.");
            }
        }
        Admin::Remove { name } => {
            node.accounts.remove_user(None, &name).await?;
            println!("Removed {name}. Accounts it invited now hang under its inviter.");
        }
        Admin::Backup { path } => {
            if path.exists() {
                bail!("{} already exists: choose a new path", path.display());
            }
            match node.db.backend() {
                Backend::Sqlite => {
                    node.db.backup_sqlite(&path).await?;
                    println!("Wrote a consistent copy of the SQLite database to {}", path.display());
                }
                Backend::Postgres => {
                    let url = node.config.database_url();
                    let status = tokio::process::Command::new("pg_dump")
                        .args(["--format=custom", "--file"])
                        .arg(&path)
                        .arg(&url)
                        .status()
                        .await
                        .context("PostgreSQL backups use pg_dump; install the postgresql-client package")?;
                    if !status.success() {
                        bail!("pg_dump failed ({status}); run `pg_dump --format=custom --file PATH DATABASE_URL` yourself");
                    }
                    println!("Wrote a pg_dump (custom format) to {}; restore with pg_restore", path.display());
                }
            }
        }
    }
    node.db.close().await;
    Ok(())
}

//! Test harness: a real node on port 0 with a fresh database per test, and the real
//! `sichat` / `sichatd` binaries.
//!
//! PostgreSQL tests use `SICHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a database per test and drop
//! it afterwards. When PostgreSQL cannot be reached they are skipped with a loud warning,
//! except under `CI=true`, where they fail.

pub mod fill;

use sichat_server::{Config, Node};
use sqlx::{Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Run a storage test once per backend: `storage_tests!(name);` expands to
/// `name::sqlite` and `name::postgres`, each calling `name(Backend::…)`.
#[macro_export]
macro_rules! storage_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                sichat_e2e::or_hung(super::$name(sichat_e2e::Backend::Sqlite)).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                sichat_e2e::or_hung(super::$name(sichat_e2e::Backend::Postgres)).await
            }
        }
    )*};
}

/// A storage test still running after this long is stuck, not slow (the slowest take about
/// a minute on CI): it fails, rather than holding the whole run until CI's time runs out.
const HUNG_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

pub async fn or_hung(test: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(HUNG_AFTER, test).await.is_err() {
        panic!("hung: still running after {} s (a deadlock or a wait that never ends)", HUNG_AFTER.as_secs());
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("SICHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sichat-{tag}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
}

impl TestDb {
    /// `None` only when PostgreSQL is unreachable outside CI (the test is then skipped).
    pub async fn create(backend: Backend, dir: &Path) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self { url: sichat_core::db::Db::sqlite_url(&dir.join("test.db")), pg_name: None }),
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) if in_ci() => {
                        panic!("PostgreSQL is unreachable at {admin} and CI=true, so this fails rather than skips: {e}")
                    }
                    Err(e) => {
                        // Straight to the terminal: the test harness hides eprintln! of passing tests.
                        use std::io::Write;
                        let _ = writeln!(
                            std::io::stderr(),
                            "\n!!!! SKIPPING a PostgreSQL test: cannot reach {admin}: {e}\n\
                             !!!! Start PostgreSQL or set SICHAT_TEST_POSTGRES_URL. Under CI=true this fails instead.\n"
                        );
                        return None;
                    }
                };
                let name = format!("sichat_test_{}", uuid::Uuid::now_v7().simple());
                conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
                let mut url = url_with_db(&admin, &name);
                if url.is_empty() {
                    url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                }
                Some(Self { url, pg_name: Some(name) })
            }
        }
    }
}

fn url_with_db(admin: &str, db: &str) -> String {
    match url::Url::parse(admin) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = postgres_admin_url();
            // Drop runs inside a runtime; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let _ = c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running node, in process, on 127.0.0.1 with an ephemeral port.
pub struct TestApp {
    pub url: String,
    pub owner_invite: String,
    pub node: Node,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Dropped last: the database and the data directory.
    _db: Option<TestDb>,
    pub dir: TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let dir = TempDir::new("node");
        let db = TestDb::create(backend, dir.path()).await?;
        let mut config = Config {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: Some(db.url.clone()),
            rate_limit_per_second: 10_000,
            rate_limit_burst: 10_000,
            ..Config::default()
        };
        tweak(&mut config);
        Some(Self::serve(config, Some(db), dir).await)
    }

    /// A second node process on this node's database and data directory (its master key),
    /// as a replica behind a load balancer would be. It keeps this node's public URL and
    /// DIDs. PostgreSQL only: SQLite has one writer.
    pub async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config { listen: "127.0.0.1:0".parse().expect("addr"), ..(*self.node.config).clone() };
        tweak(&mut config);
        Self::serve(config, None, TempDir::new("replica")).await
    }

    async fn serve(config: Config, db: Option<TestDb>, dir: TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
        let public_url = config.public_url_for(listener.local_addr().expect("addr"));
        let node = Node::open(config, public_url).await.expect("open node");
        let owner_invite = node.owner_invite().await.expect("owner invite").map(|i| i.code).unwrap_or_default();
        let url = format!("http://{}", listener.local_addr().expect("addr")).replace("127.0.0.1", "localhost");
        let (tx, rx) = oneshot::channel();
        let served = node.clone();
        let server = tokio::spawn(async move {
            sichat_server::serve::serve(served, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Self {
            url,
            owner_invite,
            node,
            // The node closes a connection idle for `header_read_timeout_secs` (15 s); a
            // client that keeps one longer may reuse it as it closes (IncompleteMessage).
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            shutdown: Some(tx),
            server: Some(server),
            _db: db,
            dir,
        }
    }

    /// Stop serving, keeping the database and data directory, to start again later (after
    /// an admin command, on another address).
    pub async fn stop_keeping(mut self) -> StoppedApp {
        let config = (*self.node.config).clone();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.node.db.close().await;
        StoppedApp { config, db: self._db.take(), dir: std::mem::replace(&mut self.dir, TempDir::new("gone")) }
    }

    /// Stop serving and wait for the server to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }

    /// A wallet directory for `who`, inside this test's scratch directory.
    pub fn wallet(&self, who: &str) -> PathBuf {
        self.dir.path().join("wallets").join(who)
    }

    /// `sichat init` a new account `name` with `invite`; panics if it fails.
    pub async fn join(&self, name: &str, invite: &str) -> PathBuf {
        let w = self.wallet(name);
        let out = sichat(&w, &["init", "--server", &self.url, "--invite", invite, "--name", name]).await;
        assert!(out.status.success(), "sichat init {name} failed: {}", stderr(&out));
        w
    }

    /// `sichat --json invite create --quota N` as the owner of `wallet`; returns the code.
    pub async fn invite(&self, wallet: &Path, quota: i64) -> String {
        let out = sichat(wallet, &["--json", "invite", "create", "--quota", &quota.to_string()]).await;
        assert!(out.status.success(), "invite create failed: {}", stderr(&out));
        json(&out)["code"].as_str().expect("code").to_owned()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.http.post(format!("{}{path}", self.url)).json(body).send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A node stopped by [`TestApp::stop_keeping`]: its configuration, database and data.
pub struct StoppedApp {
    pub config: Config,
    db: Option<TestDb>,
    dir: TempDir,
}

impl StoppedApp {
    /// Serve again, listening on `listen`.
    pub async fn serve_at(self, listen: std::net::SocketAddr) -> TestApp {
        let config = Config { listen, ..self.config };
        TestApp::serve(config, self.db, self.dir).await
    }
}

/// Path of a binary of this workspace, built by `cargo test --workspace`.
/// The real `sichatd` on `data` and `db`, with `env` and no master key from the environment
/// unless `env` gives one.
pub async fn sichatd(data: &Path, db: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(binary("sichatd"))
        .arg("--data-dir")
        .arg(data)
        .arg("--database-url")
        .arg(db)
        .args(args)
        .env_remove("SICHAT_MASTER_KEY")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run sichatd")
}

pub fn binary(name: &str) -> PathBuf {
    let env = format!("SICHAT_{}_BIN", name.to_uppercase());
    if let Ok(p) = std::env::var(&env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binaries), or set {env}",
        path.display()
    );
    path
}

/// The passphrase every test wallet uses.
pub const PASSPHRASE: &str = "test passphrase, not a secret";

/// Run the real `sichat` with `--wallet dir`.
pub async fn sichat(wallet: &Path, args: &[&str]) -> Output {
    sichat_env(wallet, args, &[("SICHAT_PASSPHRASE", PASSPHRASE)]).await
}

pub async fn sichat_env(wallet: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(binary("sichat"));
    cmd.arg("--wallet").arg(wallet).args(args).env_remove("SICHAT_PASSPHRASE").stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run sichat")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

/// What a test wallet holds, unsealed with [`PASSPHRASE`]: for tests that sign by hand
/// what the wallet would sign (or forge what it would not).
pub struct WalletSecrets {
    pub profile: serde_json::Value,
    pub device_sign: sichat_core::keys::Ed25519KeyPair,
    pub device_agree: sichat_core::keys::X25519KeyPair,
    pub certificate: String,
    /// The root key, in the wallet that holds it.
    pub root: Option<sichat_core::keys::Ed25519KeyPair>,
}

pub fn unseal(wallet: &Path) -> WalletSecrets {
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wallet.join("wallet.json")).expect("wallet")).expect("json");
    let profile = file["profile"].clone();
    let salt = sichat_core::ids::b64url_decode(file["kdf"]["salt"].as_str().expect("salt")).expect("salt");
    let params: sichat_core::seal::KdfParams = serde_json::from_value(file["kdf"].clone()).expect("params");
    let key = sichat_core::seal::MasterKey::from_passphrase(PASSPHRASE, &salt, params).expect("kdf");
    let aad = format!("sichat-wallet:v1:{}", serde_json::to_string(&profile).expect("profile"));
    let sealed = sichat_core::ids::b64url_decode(file["sealed"].as_str().expect("sealed")).expect("sealed");
    let secrets: serde_json::Value = serde_json::from_slice(&key.open(&sealed, &aad).expect("open")).expect("secrets");
    let secret = |name: &str| sichat_core::keys::decode_secret(secrets[name].as_str().expect("key")).expect("b64");
    WalletSecrets {
        device_sign: sichat_core::keys::Ed25519KeyPair::from_secret(&secret("device_sign")).expect("key"),
        device_agree: sichat_core::keys::X25519KeyPair::from_secret(&secret("device_agree")).expect("key"),
        certificate: secrets["certificate"].as_str().expect("certificate").to_owned(),
        root: secrets["root"].as_str().map(|r| {
            sichat_core::keys::Ed25519KeyPair::from_secret(&sichat_core::keys::decode_secret(r).expect("b64"))
                .expect("key")
        }),
        profile,
    }
}

/// A fresh session token of `wallet`'s device on the node at `url` (whose DID is
/// `node_did`), got the way the wallet does it: certificate, node-signed nonce, device
/// signature.
pub async fn session_token_at(url: &str, node_did: &str, wallet: &Path) -> String {
    use sichat_accounts::protocol::*;
    let w = unseal(wallet);
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let req = http.post(format!("{url}{path}")).json(&body);
        async move { req.send().await.expect("POST").json::<serde_json::Value>().await.expect("JSON answer") }
    };
    let ch = post("/api/v1/sessions/challenge", serde_json::json!({"certificate": w.certificate})).await;
    let claims: LoginChallengeClaims =
        sichat_core::jws::unverified_payload(ch["challenge"].as_str().expect("challenge")).expect("claims");
    let answer = LoginClaims {
        iss: w.profile["did"].as_str().expect("did").into(),
        sub: w.profile["device_id"].as_str().expect("device").into(),
        aud: node_did.into(),
        nonce: claims.nonce,
        iat: now_secs(),
        seq: None,
    };
    let response = sichat_core::jws::sign(&w.device_sign, TYP_LOGIN, None, &answer).expect("sign");
    let session = post("/api/v1/sessions", serde_json::json!({"response": response})).await;
    session["token"].as_str().expect("token").to_owned()
}

pub async fn session_token(app: &TestApp, wallet: &Path) -> String {
    session_token_at(&app.url, app.node.identity.did().as_str(), wallet).await
}

/// A client carrying a fresh session of `wallet`'s device.
pub async fn login(app: &TestApp, wallet: &Path) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", session_token(app, wallet).await);
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// The device signing key and public profile of `wallet`.
pub fn device_key(wallet: &Path) -> (sichat_core::keys::Ed25519KeyPair, serde_json::Value) {
    let w = unseal(wallet);
    (w.device_sign, w.profile)
}

/// How long [`Watch::expect`] waits for a line.
const WATCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A running `sichat message watch`, its output lines as they come.
pub struct Watch {
    child: tokio::process::Child,
    out: tokio::sync::mpsc::UnboundedReceiver<String>,
    err: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Watch {
    pub fn start(wallet: &Path) -> Self {
        Self::run(wallet, &["message", "watch"])
    }

    /// Any long-running `sichat` command (`verifier request` with no node, say).
    pub fn run(wallet: &Path, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(binary("sichat"))
            .arg("--wallet")
            .arg(wallet)
            .args(args)
            .env("SICHAT_PASSPHRASE", PASSPHRASE)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sichat");
        let lines = |pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().expect("stdout")));
        let err = lines(Box::new(child.stderr.take().expect("stderr")));
        Self { child, out, err }
    }

    /// Wait for a line containing `needle` on stdout (or stderr); panics with what came instead.
    pub async fn expect(&mut self, stream: &str, needle: &str) -> String {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WATCH_PATIENCE;
        loop {
            let rx = if stream == "stdout" { &mut self.out } else { &mut self.err };
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(line)) => seen.push(line),
                Ok(None) | Err(_) => {
                    while let Ok(line) = self.err.try_recv() {
                        seen.push(format!("stderr: {line}"));
                    }
                    panic!("no {needle:?} on {stream} of `sichat`; got: {seen:#?}")
                }
            }
        }
    }

    /// Wait for it to end by itself (the node ended the device, say).
    pub async fn exited(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WATCH_PATIENCE, self.child.wait()).await.expect("watch ends by itself").expect("wait")
    }

    /// Ctrl-C, then wait for it to end.
    pub async fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let killed = tokio::process::Command::new("kill").args(["-INT", &pid]).status().await.expect("kill");
        assert!(killed.success());
        tokio::time::timeout(WATCH_PATIENCE, self.child.wait()).await.expect("watch stops on Ctrl-C").expect("wait")
    }
}

//! Talking to the wallet's own node: plain JSON over HTTP, the login handshake, and
//! root-key-signed requests.

use crate::wallet::{Profile, Wallet};
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sichat_accounts::protocol::*;
use sichat_core::did::DidDocument;
use sichat_core::http::ErrorBody;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, Ed25519Public};
use std::time::Duration;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// This wallet copy's next sign-in number, sent with the login (see `LoginClaims::seq`).
    pub login_seq: Option<i64>,
}

impl Client {
    pub fn new(server: &str) -> Result<Self> {
        let url = url::Url::parse(server)
            .with_context(|| format!("{server:?} is not a URL (e.g. https://id.example.org)"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("the server URL must start with https:// (or http:// for a local node)");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("sichat/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base: url.as_str().trim_end_matches('/').to_owned(), token: None, login_seq: None })
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("the server's answer was cut short")?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => anyhow!(ServerError { status: status.as_u16(), code: e.error, message: e.message }),
                Err(_) => anyhow!(ServerError {
                    status: status.as_u16(),
                    code: format!("http_{}", status.as_u16()),
                    message: format!("the server answered {status}"),
                }),
            });
        }
        let body = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(body).with_context(|| format!("unexpected answer from the server ({status})"))
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow!(Unreachable { server: self.base.clone(), why: e.to_string() })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// GET a text resource; `None` when the node answers 404.
    pub async fn get_text_if_found(&self, path: &str) -> Result<Option<String>> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.map_err(|e| self.unreachable(e))?;
        match resp.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(resp.text().await.context("the server's answer was cut short")?)),
            s => bail!("the server answered {s} for {path}"),
        }
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send::<serde_json::Value>(self.http.delete(format!("{}{path}", self.base))).await.map(|_| ())
    }

    /// The node's base URL, with no trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The session's bearer token, once logged in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The node's DID document, and its node key.
    pub async fn node(&self) -> Result<(DidDocument, Ed25519Public)> {
        let doc: DidDocument = self.get("/.well-known/did.json").await.context("fetching the node's DID document")?;
        let key = doc
            .verification_method
            .iter()
            .find(|vm| vm.id == doc.id.url("node-key-1"))
            .map(|vm| Ed25519Public::from_multibase(&vm.public_key_multibase))
            .transpose()?
            .ok_or_else(|| anyhow!("the node's DID document has no node key: is this a Sichat node?"))?;
        Ok((doc, key))
    }

    /// Mutual login: the node proves its key by signing the challenge, the device proves
    /// its key by signing the nonce bound to the node's DID. Returns a fresher device
    /// certificate when the node has one (after a root rotation).
    pub async fn login(&mut self, wallet: &Wallet) -> Result<LoggedIn> {
        self.login_as(&wallet.profile, &wallet.certificate, &wallet.device_sign).await
    }

    /// [`Client::login`] with this profile (its pinned node) and certificate.
    pub async fn login_as(
        &mut self,
        profile: &Profile,
        certificate: &str,
        device_sign: &Ed25519KeyPair,
    ) -> Result<LoggedIn> {
        let (node_did, node_key) = pinned_node(profile)?;
        let req = LoginChallengeRequest { certificate: certificate.to_owned() };
        let LoginChallenge { challenge, certificate } = self.post("/api/v1/sessions/challenge", &req).await?;
        let claims: LoginChallengeClaims = jws::verify(&challenge, &node_key, TYP_LOGIN_CHALLENGE).map_err(|e| {
            anyhow!("the server failed to prove it holds the node key pinned at init ({e}): refusing to log in")
        })?;
        if claims.aud != profile.device_id || claims.exp < now_secs() {
            bail!("the server's login challenge is not for this device or has expired: refusing to log in");
        }
        // The pinned node key vouches for the node's DID: a node that changed its public URL
        // names its new DID, which the wallet then follows.
        let node_did_now = claims.iss.clone();
        if node_did_now != node_did && !node_did_now.starts_with("did:web:") {
            bail!("the server's login challenge names {node_did_now}, not a did:web DID: refusing to log in");
        }
        let answer = LoginClaims {
            iss: profile.did.clone(),
            sub: profile.device_id.clone(),
            aud: node_did_now.clone(),
            nonce: claims.nonce,
            iat: now_secs(),
            seq: self.login_seq,
        };
        let response = jws::sign(device_sign, TYP_LOGIN, Some(&device_kid(profile)), &answer)?;
        let session: Session = self.post("/api/v1/sessions", &LoginRequest { response }).await?;
        self.token = Some(session.token.clone());
        // Keep a newer certificate only if it really is this device's, by the current root.
        let certificate = certificate.filter(|c| {
            jws::unverified_payload::<DeviceCertificate>(c)
                .is_ok_and(|d| d.sub == profile.device_id && d.sign_key == device_sign.public().to_multibase())
        });
        Ok(LoggedIn { certificate, node_did: node_did_now, session })
    }

    /// End the session (best effort: it expires by itself anyway).
    pub async fn logout(&mut self) {
        if self.token.is_some() {
            let _ = self.delete("/api/v1/sessions/current").await;
            self.token = None;
        }
    }

    /// Send a request signed by the root key, over a fresh challenge.
    pub async fn root_operation(&self, wallet: &Wallet, root: &Ed25519KeyPair, op: RootOperation) -> Result<Account> {
        let send = |op: RootOperation| async move {
            let did_log_entry = crate::did_log::next_entry(self, wallet, root, &op).await?;
            let request = self.signed_root_op(wallet, root, op, did_log_entry).await?;
            self.post::<Account>("/api/v1/root-operations", &SignedRequest { request }).await
        };
        let first = send(op.clone()).await;
        let Err(e) = first else { return first };
        // Refused by the node as not signed by its root key, or (did:webvh) a log this key
        // does not control: a node restored from before a rotation, caught up if it is one.
        if !wallet.rotations.is_empty() && self.node_root_differs(wallet, root).await {
            self.catch_up(wallet, root).await?;
            return send(op).await;
        }
        match e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "invalid_signature") {
            true => Err(self.explain_root_mismatch(wallet, root).await.unwrap_or(e)),
            false => Err(e),
        }
    }

    /// Whether the node's DID document names another root key than this wallet's.
    async fn node_root_differs(&self, wallet: &Wallet, root: &Ed25519KeyPair) -> bool {
        self.node_root_key(wallet).await.is_some_and(|theirs| theirs != root.public().to_multibase())
    }

    async fn node_root_key(&self, wallet: &Wallet) -> Option<String> {
        let name = wallet.profile.name.as_deref()?;
        let doc: sichat_core::did::DidDocument = self.get(&format!("/users/{name}/did.json")).await.ok()?;
        let root_id = format!("{}#root", doc.id);
        Some(doc.verification_method.iter().find(|vm| vm.id == root_id)?.public_key_multibase.clone())
    }

    /// The node holds an older root key (its database was restored from a backup made before
    /// a rotation): show it the rotations this wallet signed since, and re-bless with the
    /// current key every device it knows (read with this device's session, which still
    /// works on the restored node) and this one. Devices added after the backup are added
    /// again with `sichat device add`.
    async fn catch_up(&self, wallet: &Wallet, root: &Ed25519KeyPair) -> Result<()> {
        let mut session = Client::new(&self.base)?;
        let known: Vec<Device> = match session.login(wallet).await {
            Ok(_) => {
                let devices = session.get("/api/v1/devices").await;
                session.logout().await;
                devices?
            }
            Err(_) => Vec::new(),
        };
        // This device's too (the restored node may have handed it its old certificate), and
        // those this wallet blessed after the backup, which the node never heard of.
        let this = crate::device::this_device(wallet);
        let blessed = wallet.blessed.iter().filter_map(|c| crate::device::blessed_device(c));
        let mut devices = vec![this];
        for d in known.into_iter().chain(blessed) {
            if !devices.iter().any(|k| k.id == d.id) {
                devices.push(d);
            }
        }
        let certificates =
            devices.iter().map(|d| crate::device::recertify(wallet, root, d)).collect::<Result<Vec<_>>>()?;
        // A did:webvh log: the entries the node lost, and the next one over them.
        let (did_log, entry) = crate::did_log::catch_up(self, wallet, root, &certificates).await?;
        let op = RootOperation::CatchUp { rotations: wallet.rotations.clone(), certificates, did_log };
        let request = self.signed_root_op(wallet, root, op, entry).await?;
        let _: Account = self
            .post("/api/v1/root-operations", &SignedRequest { request })
            .await
            .context("your node holds an older root key than this wallet, and did not take the rotations since")?;
        eprintln!(
            "Your node was restored from a backup made before you rotated your root key: it now holds your current \
             key again, and {} device(s) are re-blessed. Devices added after that backup: add them again with \
             `sichat device add`.",
            devices.len()
        );
        Ok(())
    }

    /// A root operation refused as not signed by the root key: when the node's document
    /// names another root key than this wallet's, say what happened and the way back in.
    async fn explain_root_mismatch(&self, wallet: &Wallet, root: &Ed25519KeyPair) -> Option<anyhow::Error> {
        let theirs = self.node_root_key(wallet).await?;
        let ours = root.public().to_multibase();
        (theirs != ours).then(|| {
            anyhow!(
                "your node holds another root key for you ({theirs}) than this wallet's ({ours}). If you rotated \
                 your root key, its database was probably restored from a backup made before that. A recovery kit \
                 made before that backup gets you back in (`sichat --wallet NEW-DIR recovery restore --kit FILE`); \
                 otherwise ask your node's operator"
            )
        })
    }

    /// A root operation signed over a fresh challenge, with the log entry it carries, for
    /// the endpoint that takes it.
    pub async fn signed_root_op(
        &self,
        wallet: &Wallet,
        root: &Ed25519KeyPair,
        op: RootOperation,
        did_log_entry: Option<String>,
    ) -> Result<String> {
        let (node_did, _) = pinned_node(&wallet.profile)?;
        let ch: Challenge = self.post("/api/v1/challenges", &serde_json::json!({})).await?;
        let kid = match op {
            RootOperation::Recover { .. } => "recovery",
            _ => "root",
        };
        let claims = RootOpClaims {
            iss: wallet.profile.did.clone(),
            aud: node_did,
            challenge: ch.challenge,
            iat: now_secs(),
            op,
            did_log_entry,
        };
        Ok(jws::sign(root, TYP_ROOT_OP, Some(&format!("{}#{kid}", wallet.profile.did)), &claims)?)
    }
}

/// What a login tells the wallet besides its session.
pub struct LoggedIn {
    /// This device's newer certificate, if the node holds one.
    pub certificate: Option<String>,
    /// The node's DID now (its public URL may have changed).
    pub node_did: String,
    pub session: Session,
}

fn pinned_node(profile: &Profile) -> Result<(String, Ed25519Public)> {
    let did = profile.node_did.clone();
    let key = profile.node_key.as_deref().map(Ed25519Public::from_multibase).transpose()?;
    match (did, key) {
        (Some(d), Some(k)) => Ok((d, k)),
        _ => bail!("this wallet has no server (a did:key identity): run `sichat init --server URL --invite CODE` in a new wallet"),
    }
}

fn device_kid(profile: &Profile) -> String {
    format!("{}#device-{}", profile.did, profile.device_id)
}

/// The node did not answer at all (down, gone, or no network).
#[derive(Debug)]
pub struct Unreachable {
    pub server: String,
    pub why: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot reach the server at {}: {}. Is sichatd running, and is the URL right?", self.server, self.why)
    }
}

impl std::error::Error for Unreachable {}

/// Whether `e` is, at heart, a node that did not answer.
pub fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Unreachable>())
}

/// An error the server reported, with its stable code.
#[derive(Debug)]
pub struct ServerError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server refused ({}, {}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

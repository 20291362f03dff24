//! Node-to-node authentication through the public API: a real node identity whose `did:web`
//! document is served over HTTP on 127.0.0.1, the real resolver, and every refusal.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use sichat_core::db::Db;
use sichat_core::did::Did;
use sichat_core::ids::now_ms;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::node::NodeIdentity;
use sichat_core::p256key::P256KeyPair;
use sichat_core::resolver::{Keys, Resolver};
use sichat_core::seal::MasterKey;
use sichat_messaging::federation_auth::{
    content_digest, sign_request, verify_request, FederationAuthError as E, IncomingRequest, NodeSigner,
    OutgoingRequest, SignedHeaders, CONTENT_TYPE,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;

const BODY: &[u8] = br#"{"id":"0192f0c2-0000-7000-8000-000000000001","type":"https://didcomm.org/routing/2.0/forward","body":{"next":"did:web:b.example:users:bob"}}"#;
const TARGET: &str = "https://b.example/didcomm";

fn now() -> i64 {
    now_ms() / 1000
}

/// A node on 127.0.0.1 with a real `NodeIdentity`, serving its DID document, any extra
/// documents a test adds (by path), and a `/didcomm` endpoint that verifies what it gets.
struct Net {
    node: Arc<NodeIdentity>,
    base: String,
    docs: Arc<Mutex<HashMap<String, Value>>>,
    resolver: Arc<Resolver>,
}

#[derive(Clone)]
struct AppState {
    node: Arc<NodeIdentity>,
    base: String,
    docs: Arc<Mutex<HashMap<String, Value>>>,
    resolver: Arc<Resolver>,
}

impl Net {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let db = Db::open("sqlite::memory:").await.unwrap();
        let (node, _) =
            NodeIdentity::load_or_create(&db, &MasterKey::generate(), &Url::parse(&base).unwrap()).await.unwrap();
        let node = Arc::new(node);
        let resolver = Arc::new(Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true }).unwrap())));
        let docs = Arc::new(Mutex::new(HashMap::new()));
        let state = AppState { node: node.clone(), base: base.clone(), docs: docs.clone(), resolver: resolver.clone() };
        let app = Router::new()
            .route("/.well-known/did.json", get(|State(s): State<AppState>| async move { Json(s.node.did_document()) }))
            .route("/didcomm", post(receive))
            .fallback(other_document)
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Net { node, base, docs, resolver }
    }

    /// A DID under this host (`did:web:127.0.0.1%3A<port>:<path…>`), its document served
    /// at `/<path>/did.json`.
    fn add_document(&self, path: &str, make: impl FnOnce(&Did) -> Value) -> Did {
        let did = self.node.did().web_child(&path.split('/').collect::<Vec<_>>()).unwrap();
        self.docs.lock().unwrap().insert(format!("/{path}/did.json"), make(&did));
        did
    }

    async fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Did, E> {
        let req = IncomingRequest { method: "POST", target_uri: TARGET, headers, body };
        verify_request(&req, self.resolver.as_ref(), now).await.map(|peer| peer.sender)
    }
}

async fn other_document(State(s): State<AppState>, uri: Uri) -> Result<Json<Value>, StatusCode> {
    s.docs.lock().unwrap().get(uri.path()).cloned().map(Json).ok_or(StatusCode::NOT_FOUND)
}

/// What a receiving node's handler does: the target URI from its own public URL.
async fn receive(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let target = format!("{}{}", s.base, uri.path());
    let req = IncomingRequest { method: method.as_str(), target_uri: &target, headers: &headers, body: &body };
    match verify_request(&req, s.resolver.as_ref(), now()).await {
        Ok(peer) => (StatusCode::ACCEPTED, Json(json!({"node": peer.node_did, "sender": peer.sender}))),
        Err(e) => (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad_signature", "message": e.to_string()}))),
    }
}

/// A signer with any key id and any Ed25519 key: an impostor, or a node of a test document.
struct Signer {
    kid: String,
    key: Ed25519KeyPair,
}

impl NodeSigner for Signer {
    fn key_id(&self) -> String {
        self.kid.clone()
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message)
    }
}

fn doc(did: &Did, methods: Value, authentication: Value, assertion: Value) -> Value {
    json!({"@context": ["https://www.w3.org/ns/did/v1"], "id": did, "verificationMethod": methods,
           "authentication": authentication, "assertionMethod": assertion})
}

fn multikey(did: &Did, fragment: &str, multibase: String) -> Value {
    json!({"id": did.url(fragment), "type": "Multikey", "controller": did, "publicKeyMultibase": multibase})
}

fn sign(signer: &(impl NodeSigner + ?Sized), sender: &Did, body: &[u8], at: i64) -> HeaderMap {
    sign_request(signer, &OutgoingRequest::delivery(TARGET, sender, body), at).unwrap().to_header_map().unwrap()
}

fn alice(net: &Net) -> Did {
    net.node.user_did("alice").unwrap()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).unwrap());
}

#[tokio::test]
async fn a_real_node_signs_and_another_verifies_over_http() {
    let net = Net::start().await;
    let sender = alice(&net);
    assert!(net.node.did().as_str().contains("%3A"), "a did:web with a port: {}", net.node.did());

    // Over HTTP, as a sending node would: the receiver rebuilds the target URI itself.
    let target = format!("{}/didcomm", net.base);
    let signed: SignedHeaders =
        sign_request(net.node.as_ref(), &OutgoingRequest::delivery(&target, &sender, BODY), now()).unwrap();
    let client = reqwest::Client::new();
    let send = |headers: HeaderMap, body: &'static [u8]| {
        let req = client.post(&target).headers(headers).body(body);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = send(signed.to_header_map().unwrap(), BODY).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"node": net.node.did(), "sender": sender}));

    let (status, answer) = send(signed.to_header_map().unwrap(), b"{\"tampered\":true}").await;
    assert_eq!(status, 401);
    assert_eq!(answer["message"], "the body does not match its Content-Digest");

    // In process, with every field of the result.
    let headers = sign(net.node.as_ref(), &sender, BODY, now());
    let req = IncomingRequest { method: "POST", target_uri: TARGET, headers: &headers, body: BODY };
    let peer = verify_request(&req, net.resolver.as_ref(), now()).await.unwrap();
    assert_eq!(&peer.node_did, net.node.did());
    assert_eq!(peer.key_id, net.node.key_id());
    assert_eq!(peer.sender, sender);
    assert_eq!(peer.expires - peer.created, 300);
    assert!(!peer.nonce.is_empty());
    let again = sign(net.node.as_ref(), &sender, BODY, now());
    assert_ne!(again.get("signature-input"), headers.get("signature-input"), "every request has a fresh nonce");
}

#[tokio::test]
async fn tampering_is_refused() {
    let net = Net::start().await;
    let headers = sign(net.node.as_ref(), &alice(&net), BODY, now());

    let mut body = BODY.to_vec();
    body[10] ^= 1;
    assert_eq!(net.verify(&headers, &body, now()).await, Err(E::DigestMismatch));
    assert_eq!(net.verify(&headers, b"", now()).await, Err(E::DigestMismatch));

    // A body and a digest changed together: the signature covers the digest.
    let mut h = headers.clone();
    set(&mut h, "content-digest", &content_digest(b"{}").unwrap());
    assert_eq!(net.verify(&h, b"{}", now()).await, Err(E::BadSignature));

    // Another user of the same node: vouchable, but not what the node signed.
    let mut h = headers.clone();
    set(&mut h, "sichat-sender", net.node.user_did("mallory").unwrap().as_str());
    assert_eq!(net.verify(&h, BODY, now()).await, Err(E::BadSignature));

    let mut h = headers.clone();
    set(&mut h, "content-type", "application/json");
    assert_eq!(net.verify(&h, BODY, now()).await, Err(E::BadSignature));

    // A forged signature of the right size.
    let mut h = headers.clone();
    set(&mut h, "signature", &format!("sig1=:{}:", STANDARD.encode([7u8; 64])));
    assert_eq!(net.verify(&h, BODY, now()).await, Err(E::BadSignature));

    // Signed for another node's endpoint, or another method.
    let req =
        IncomingRequest { method: "POST", target_uri: "https://c.example/didcomm", headers: &headers, body: BODY };
    assert_eq!(verify_request(&req, net.resolver.as_ref(), now()).await, Err(E::BadSignature));
    let req = IncomingRequest { method: "PUT", target_uri: TARGET, headers: &headers, body: BODY };
    assert_eq!(verify_request(&req, net.resolver.as_ref(), now()).await, Err(E::BadSignature));

    // The untouched request still verifies: each refusal above came from its tampering.
    assert!(net.verify(&headers, BODY, now()).await.is_ok());
}

#[tokio::test]
async fn keys_must_be_the_nodes_authentication_ed25519_key() {
    let net = Net::start().await;

    // Someone else's key under the node's key id.
    let impostor = Signer { kid: net.node.key_id(), key: Ed25519KeyPair::generate() };
    let headers = sign(&impostor, &alice(&net), BODY, now());
    assert_eq!(net.verify(&headers, BODY, now()).await, Err(E::BadSignature));

    // A key id the node's document does not have.
    let impostor = Signer { kid: net.node.did().url("node-key-2"), key: Ed25519KeyPair::generate() };
    let headers = sign(&impostor, &alice(&net), BODY, now());
    assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::KeyNotForAuthentication(_))));

    // A key listed under assertionMethod only.
    let key = Ed25519KeyPair::generate();
    let public = key.public().to_multibase();
    let did = net.add_document("nodes/assert-only", |did| {
        doc(did, json!([multikey(did, "k", public)]), json!([]), json!([did.url("k")]))
    });
    let signer = Signer { kid: did.url("k"), key };
    let headers = sign(&signer, &did.web_child(&["users", "carol"]).unwrap(), BODY, now());
    let err = net.verify(&headers, BODY, now()).await.unwrap_err();
    assert!(matches!(err, E::KeyNotForAuthentication(_)), "{err}");
    assert!(err.to_string().contains("not listed under authentication"), "{err}");

    // The same document with the key under authentication: accepted (a node at a path).
    let key = Ed25519KeyPair::generate();
    let public = key.public().to_multibase();
    let did = net.add_document("nodes/good", |did| {
        doc(did, json!([multikey(did, "k", public)]), json!([did.url("k")]), json!([]))
    });
    let carol = did.web_child(&["users", "carol"]).unwrap();
    let headers = sign(&Signer { kid: did.url("k"), key }, &carol, BODY, now());
    assert_eq!(net.verify(&headers, BODY, now()).await, Ok(carol));

    // A P-256 key under authentication: not what alg="ed25519" names.
    let p256 = P256KeyPair::generate().public().to_multibase();
    let did = net.add_document("nodes/p256", |did| {
        doc(did, json!([multikey(did, "k", p256)]), json!([did.url("k")]), json!([]))
    });
    let headers = sign(
        &Signer { kid: did.url("k"), key: Ed25519KeyPair::generate() },
        &did.web_child(&["users", "dan"]).unwrap(),
        BODY,
        now(),
    );
    assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::NotEd25519(_))));

    // A DID whose document does not exist.
    let missing = net.node.did().web_child(&["nodes", "nobody"]).unwrap();
    let headers = sign(
        &Signer { kid: missing.url("k"), key: Ed25519KeyPair::generate() },
        &missing.web_child(&["users", "eve"]).unwrap(),
        BODY,
        now(),
    );
    assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::Resolution(_))));

    // Key ids that are not a node's did:web DID URL never reach the network.
    for (kid, sender) in [
        (net.node.did().to_string(), alice(&net)),
        ("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK#k".into(), alice(&net)),
    ] {
        let headers = sign(&Signer { kid, key: Ed25519KeyPair::generate() }, &sender, BODY, now());
        assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::KeyIdNotDidWeb(_))));
    }
    // A user's own device key, posing as a node that "hosts" DIDs below the user.
    let bob = net.node.user_did("bob").unwrap();
    let headers = sign(
        &Signer { kid: bob.url("device-1"), key: Ed25519KeyPair::generate() },
        &bob.web_child(&["users", "x"]).unwrap(),
        BODY,
        now(),
    );
    assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::KeyIdNotNode(_))));
}

#[tokio::test]
async fn a_node_vouches_only_for_its_own_users() {
    let net = Net::start().await;
    let node = net.node.did().as_str();
    let port = node.rsplit_once("%3A").unwrap().1;
    for foreign in [
        "did:web:b.example:users:bob".to_owned(),
        "did:web:127.0.0.1:users:bob".to_owned(),
        format!("did:web:127.0.0.1%3A{port}0:users:bob"),
        format!("did:web:127.0.0.1%3A{port}.evil.com:users:x"),
        format!("{node}.evil.com:users:x"),
        format!("{node}:people:bob"),
        format!("{node}:users:bob:users:eve"),
        node.to_owned(),
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".to_owned(),
    ] {
        let sender = Did::parse(&foreign).unwrap();
        let headers = sign(net.node.as_ref(), &sender, BODY, now());
        let err = net.verify(&headers, BODY, now()).await.unwrap_err();
        assert!(matches!(err, E::SenderNotVouchable { .. }), "{foreign}: {err}");
    }

    // A correctly signed request whose sender header is not a DID at all.
    let mut headers = sign(net.node.as_ref(), &alice(&net), BODY, now());
    set(&mut headers, "sichat-sender", "alice@127.0.0.1");
    assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::InvalidSender(_))));
    // Two sender headers are joined (RFC 9421 §2.1) into something that is not a DID.
    let mut headers = sign(net.node.as_ref(), &alice(&net), BODY, now());
    headers.append("sichat-sender", HeaderValue::from_str(alice(&net).as_str()).unwrap());
    assert!(matches!(net.verify(&headers, BODY, now()).await, Err(E::InvalidSender(_))));
}

#[tokio::test]
async fn signatures_live_from_created_to_expires() {
    let net = Net::start().await;
    let t = now();
    let sender = alice(&net);
    let signed_at = |at: i64| sign(net.node.as_ref(), &sender, BODY, at);

    assert_eq!(net.verify(&signed_at(t - 400), BODY, t).await, Err(E::Expired { expires: t - 100, now: t }));
    assert!(net.verify(&signed_at(t - 300), BODY, t).await.is_ok(), "valid until expires itself");
    assert_eq!(net.verify(&signed_at(t - 301), BODY, t).await, Err(E::Expired { expires: t - 1, now: t }));
    assert!(net.verify(&signed_at(t + 300), BODY, t).await.is_ok(), "300 s of clock skew");
    assert_eq!(net.verify(&signed_at(t + 301), BODY, t).await, Err(E::CreatedInFuture { created: t + 301, now: t }));
    assert_eq!(
        net.verify(&signed_at(t + 100_000), BODY, t).await,
        Err(E::CreatedInFuture { created: t + 100_000, now: t })
    );
}

/// Signature-Input made by hand, and signed over a base built here independently of the
/// library: so a refusal is the rule's, not a broken signature's.
struct Craft<'a> {
    net: &'a Net,
    label: &'a str,
    components: &'a [&'a str],
    params: String,
}

impl<'a> Craft<'a> {
    fn new(net: &'a Net, components: &'a [&'a str], params: String) -> Self {
        Craft { net, label: "sig1", components, params }
    }

    fn contract(net: &'a Net, t: i64) -> String {
        format!(";created={t};expires={};nonce=\"n-1\";keyid=\"{}\";alg=\"ed25519\"", t + 300, net.node.key_id())
    }

    fn headers(&self) -> HeaderMap {
        let sender = alice(self.net);
        let digest = content_digest(BODY).unwrap();
        let value = |c: &str| match c {
            "@method" => "POST".to_owned(),
            "@target-uri" => TARGET.to_owned(),
            "content-digest" => digest.clone(),
            "content-type" => CONTENT_TYPE.to_owned(),
            "sichat-sender" => sender.to_string(),
            other => format!("a value for {other}"),
        };
        let mut inner = String::from("(");
        let mut base = String::new();
        for (i, c) in self.components.iter().enumerate() {
            // `name;param` for a component with a parameter (refused before any base is built).
            let (name, params) = c.split_once(';').map_or((*c, String::new()), |(n, p)| (n, format!(";{p}")));
            if i > 0 {
                inner.push(' ');
            }
            inner.push_str(&format!("\"{name}\"{params}"));
            base.push_str(&format!("\"{name}\"{params}: {}\n", value(name)));
        }
        inner.push(')');
        inner.push_str(&self.params);
        base.push_str(&format!("\"@signature-params\": {inner}"));
        let signature = self.net.node.sign_bytes(base.as_bytes());
        let mut h = HeaderMap::new();
        set(&mut h, "content-type", CONTENT_TYPE);
        set(&mut h, "content-digest", &digest);
        set(&mut h, "sichat-sender", sender.as_str());
        set(&mut h, "signature-input", &format!("{}={inner}", self.label));
        set(&mut h, "signature", &format!("{}=:{}:", self.label, STANDARD.encode(signature)));
        h
    }

    async fn verify(&self, t: i64) -> Result<Did, E> {
        self.net.verify(&self.headers(), BODY, t).await
    }
}

const ALL: [&str; 5] = ["@method", "@target-uri", "content-digest", "content-type", "sichat-sender"];

#[tokio::test]
async fn signature_input_must_be_the_contracts() {
    let net = Net::start().await;
    let t = now();
    let contract = Craft::contract(&net, t);

    // The controls: the contract's input, made by hand, verifies; so does another order.
    assert_eq!(Craft::new(&net, &ALL, contract.clone()).verify(t).await, Ok(alice(&net)));
    let reordered = ["sichat-sender", "@target-uri", "@method", "content-type", "content-digest"];
    assert_eq!(Craft::new(&net, &reordered, contract.clone()).verify(t).await, Ok(alice(&net)));
    // Parameters are read whatever their order, and unknown ones are signed but ignored.
    let shuffled = format!(
        ";alg=\"ed25519\";keyid=\"{}\";nonce=\"n\";tag=\"x\";expires={};created={t}",
        net.node.key_id(),
        t + 300
    );
    assert_eq!(Craft::new(&net, &ALL, shuffled).verify(t).await, Ok(alice(&net)));

    let mut wrong_label = Craft::new(&net, &ALL, contract.clone());
    wrong_label.label = "sig2";
    assert_eq!(wrong_label.verify(t).await, Err(E::WrongLabel { found: "sig2".into() }));

    for components in [
        &ALL[..4],
        &ALL[1..],
        &["@method", "@target-uri", "content-digest", "content-type", "sichat-sender", "date"][..],
        &["@method", "@target-uri", "content-digest", "content-type", "content-type"][..],
        &["@method", "@target-uri", "content-digest", "content-type", "sichat-sender;sf"][..],
        &["@method", "@path", "content-digest", "content-type", "sichat-sender"][..],
        &[][..],
    ] {
        let err = Craft::new(&net, components, contract.clone()).verify(t).await.unwrap_err();
        assert!(matches!(err, E::CoveredComponents { .. }), "{components:?}: {err}");
    }

    let kid = net.node.key_id();
    let params = |s: &str| s.replace("KID", &kid).replace("T0", &t.to_string()).replace("T3", &(t + 300).to_string());
    for (input, expected) in [
        (
            ";created=T0;expires=T3;nonce=\"n\";keyid=\"KID\";alg=\"rsa-pss-sha512\"",
            E::UnsupportedAlgorithm("rsa-pss-sha512".into()),
        ),
        (";created=T0;expires=T3;nonce=\"n\";keyid=\"KID\";alg=\"ED25519\"", E::UnsupportedAlgorithm("ED25519".into())),
        (";created=T0;expires=T3;nonce=\"n\";keyid=\"KID\"", bad("alg", "missing")),
        (";created=T0;expires=T3;nonce=\"n\";keyid=\"KID\";alg=ed25519", bad("alg", "not a string")),
        (";expires=T3;nonce=\"n\";keyid=\"KID\";alg=\"ed25519\"", bad("created", "missing")),
        (";created=T0;nonce=\"n\";keyid=\"KID\";alg=\"ed25519\"", bad("expires", "missing")),
        (";created=\"T0\";expires=T3;nonce=\"n\";keyid=\"KID\";alg=\"ed25519\"", bad("created", "not an integer")),
        (";created=T0.5;expires=T3;nonce=\"n\";keyid=\"KID\";alg=\"ed25519\"", bad("created", "not an integer")),
        (";created=T0;expires=T3;keyid=\"KID\";alg=\"ed25519\"", bad("nonce", "missing")),
        (
            ";created=T0;expires=T3;nonce=\"\";keyid=\"KID\";alg=\"ed25519\"",
            bad("nonce", "must be 1 to 128 characters"),
        ),
        (";created=T0;expires=T3;nonce=\"n\";alg=\"ed25519\"", bad("keyid", "missing")),
        (";created=T0;expires=T0;nonce=\"n\";keyid=\"KID\";alg=\"ed25519\"", E::BadLifetime(0)),
    ] {
        let input = params(input);
        assert_eq!(Craft::new(&net, &ALL, input.clone()).verify(t).await, Err(expected), "{input}");
    }
    let long_nonce =
        format!(";created={t};expires={};nonce=\"{}\";keyid=\"{kid}\";alg=\"ed25519\"", t + 300, "n".repeat(129));
    assert!(matches!(Craft::new(&net, &ALL, long_nonce).verify(t).await, Err(E::BadParameter { name: "nonce", .. })));

    // Lifetimes: at most 600 s, and positive.
    let lifetime = |created: i64, expires: i64| {
        format!(";created={created};expires={expires};nonce=\"n\";keyid=\"{kid}\";alg=\"ed25519\"")
    };
    assert!(Craft::new(&net, &ALL, lifetime(t - 100, t + 500)).verify(t).await.is_ok());
    assert_eq!(Craft::new(&net, &ALL, lifetime(t - 100, t + 501)).verify(t).await, Err(E::BadLifetime(601)));
    assert_eq!(Craft::new(&net, &ALL, lifetime(t, t + 86_400)).verify(t).await, Err(E::BadLifetime(86_400)));
    assert_eq!(Craft::new(&net, &ALL, lifetime(t + 10, t + 5)).verify(t).await, Err(E::BadLifetime(-5)));
}

fn bad(name: &'static str, why: &str) -> E {
    E::BadParameter { name, why: why.into() }
}

#[tokio::test]
async fn missing_and_malformed_headers() {
    let net = Net::start().await;
    let t = now();
    let good = sign(net.node.as_ref(), &alice(&net), BODY, t);

    for name in ["signature-input", "signature", "content-digest", "sichat-sender", "content-type"] {
        let mut h = good.clone();
        h.remove(name);
        assert_eq!(net.verify(&h, BODY, t).await, Err(E::MissingHeader(name)), "{name}");
    }

    let malformed = |header: &'static str, value: &str| {
        let mut h = good.clone();
        set(&mut h, header, value);
        h
    };
    for (header, value) in [
        ("signature-input", ""),
        ("signature-input", "sig1=("),
        ("signature-input", "sig1=(\"@method\""),
        ("signature-input", "sig1=\"@method\""),
        ("signature-input", "sig1=(\"@method\");created=@1700000000"),
        ("signature-input", "SIG1=()"),
        ("signature", "sig1=:AAAA:"),
        ("signature", "sig1=\"abc\""),
        ("signature", "sig1=:!!!:"),
        ("signature", "sig1=(:AAAA:)"),
        ("signature", "sig2=:AAAA:"),
        ("signature", ":AAAA:"),
        ("content-digest", "sha-256=abc"),
        ("content-digest", "md5=:AAAA:"),
        ("content-digest", "sha-256=:AAAA:;"),
        ("content-digest", "sha-256"),
    ] {
        let err = net.verify(&malformed(header, value), BODY, t).await.unwrap_err();
        let ok = matches!(&err, E::MalformedHeader { header: h, .. } if *h == header)
            || (header == "signature-input" && matches!(err, E::WrongLabel { .. }));
        assert!(ok, "{header}: {value}: {err}");
    }
    // A byte sequence of the wrong length is simply not the body's digest.
    assert_eq!(net.verify(&malformed("content-digest", "sha-256=:AAAA:"), BODY, t).await, Err(E::DigestMismatch));

    // Bytes outside visible ASCII.
    let mut h = good.clone();
    h.insert("signature", HeaderValue::from_bytes(b"sig1=:\xff\xfe:").unwrap());
    assert!(matches!(net.verify(&h, BODY, t).await, Err(E::MalformedHeader { header: "signature", .. })));
    // A huge field is refused before it is parsed.
    let mut h = good.clone();
    set(&mut h, "signature-input", &format!("sig1=(), x={}", "a".repeat(10_000)));
    assert!(matches!(net.verify(&h, BODY, t).await, Err(E::MalformedHeader { header: "signature-input", .. })));

    assert!(net.verify(&good, BODY, t).await.is_ok());
}

/// Tiny xorshift, so the garbage is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn garbage_is_refused_and_never_panics() {
    // No network: a fixed document, so thousands of requests stay fast.
    let key = Ed25519KeyPair::generate();
    let did = Did::parse("did:web:a.example").unwrap();
    let signer = Signer { kid: did.url("node-key-1"), key };
    let document = doc(
        &did,
        json!([multikey(&did, "node-key-1", signer.key.public().to_multibase())]),
        json!([did.url("node-key-1")]),
        json!([]),
    );
    let keys: HashMap<String, Arc<Keys>> =
        HashMap::from([(did.to_string(), Arc::new(Keys::from_document(did.as_str(), &document).unwrap()))]);
    let sender = did.web_child(&["users", "alice"]).unwrap();
    let t = now();
    let good = sign(&signer, &sender, BODY, t);
    let verify = |headers: HeaderMap, body: Vec<u8>| {
        let keys = &keys;
        async move {
            let req = IncomingRequest { method: "POST", target_uri: TARGET, headers: &headers, body: &body };
            verify_request(&req, keys, t).await
        }
    };
    assert!(verify(good.clone(), BODY.to_vec()).await.is_ok());

    let names = ["signature-input", "signature", "content-digest", "sichat-sender", "content-type"];
    let alphabet: &[u8] = b" \t\"'()*,-.:;=?@[]\\abcdefsig1@%#0123456789ABCXYZ+/";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut refused_mutations = 0;
    for round in 0..3000 {
        let mut h = good.clone();
        let name = names[rng.below(names.len())];
        let mut value = h.get(name).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        if round % 3 == 0 {
            // Pure garbage.
            value = (0..rng.below(200)).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            if value.trim_ascii() == h.get(name).map_or(&b""[..], |v| v.as_bytes()).trim_ascii() {
                continue;
            }
        } else {
            // A few edits of the real value: replace, insert, delete, truncate.
            for _ in 0..1 + rng.below(4) {
                let at = if value.is_empty() { 0 } else { rng.below(value.len()) };
                match rng.below(4) {
                    0 if !value.is_empty() => value[at] = alphabet[rng.below(alphabet.len())],
                    1 => value.insert(at, alphabet[rng.below(alphabet.len())]),
                    2 if !value.is_empty() => {
                        value.remove(at);
                    }
                    _ => value.truncate(at),
                }
            }
        }
        let Ok(v) = HeaderValue::from_bytes(&value) else { continue };
        let original = h.insert(name, v);
        let result = verify(h, BODY.to_vec()).await;
        if round % 3 == 0 {
            assert!(result.is_err(), "{name}: {:?} was accepted", String::from_utf8_lossy(&value));
        }
        if result.is_err() {
            refused_mutations += 1;
        } else {
            // Accepted only if the edit did not change what the field means (spaces
            // between structured-field members, say): the signature covers the rest.
            let original = original.map(|o| o.as_bytes().to_vec()).unwrap_or_default();
            assert!(
                name == "signature-input" || name == "signature" || value.trim_ascii() == original.trim_ascii(),
                "{name}: {:?} was accepted",
                String::from_utf8_lossy(&value)
            );
        }
    }
    assert!(refused_mutations > 2000, "only {refused_mutations} refused");

    // Garbage bodies with the real headers.
    for _ in 0..200 {
        let body: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        assert_eq!(verify(good.clone(), body).await, Err(E::DigestMismatch));
    }
}

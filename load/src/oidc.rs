//! OpenID Provider scenarios: against a Sichat node (which the tool sets up: a password for
//! the load account and a dynamically registered client) or against any other provider
//! given its issuer and a confidential client (the npm `oidc-provider` of `load/peer/`).
//!
//! Every answer is checked, not just counted: a 200 (or the redirect the flow expects) and
//! a body with the fields the specification requires, ID tokens verified against the JWKS.

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use josekit::jws::alg::rsassa::RsassaJwsVerifier;
use josekit::jws::RS256;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sichat_core::ids::{b64url, random_token};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use url::Url;

/// What one loop iteration does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `GET /.well-known/openid-configuration`, checked for the issuer and its endpoints.
    Discovery,
    /// A `client_credentials` grant.
    ClientCredentials,
    /// An introspection of a live access token, which must come back active.
    Introspect,
    /// A refresh-token grant, rotating: each loop carries its own chain.
    Refresh,
    /// The same with a DPoP proof (RFC 9449) by the loop's own P-256 key: the access token
    /// comes back bound to it (`token_type` DPoP).
    DpopRefresh,
    /// A full authorization-code login for a signed-in browser: authorize (the session
    /// cookie, consent remembered), the code redeemed with PKCE, the ID token checked.
    Login,
    /// A full device authorization grant (RFC 8628): the device asks for a user code, the
    /// loop's signed-in browser types it in and approves it (the provider's code form, then
    /// its confirmation: Sichat's consent page naming the code, oidc-provider's confirm
    /// page), and the device polls once for its tokens, the ID token checked.
    Device,
}

impl Scenario {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "oidc-discovery" => Self::Discovery,
            "oidc-client-credentials" => Self::ClientCredentials,
            "oidc-introspect" => Self::Introspect,
            "oidc-refresh" => Self::Refresh,
            "oidc-dpop-refresh" => Self::DpopRefresh,
            "oidc-login" => Self::Login,
            "oidc-device" => Self::Device,
            _ => return None,
        })
    }
}

/// A confidential client (`client_secret_basic`) with its redirect URI.
pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
    pub redirect_uri: String,
}

/// The signed-in user of the browser, for a login form (Sichat's; the peer signs in by
/// itself).
pub struct User {
    pub name: String,
    pub password: String,
}

/// The password the tool sets for its load account on a Sichat node.
const PASSWORD: &str = "load tool password, long enough";

/// The grant type a device polls the token endpoint with (RFC 8628 §3.4).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// On a Sichat node: give the account behind `session` a password and register a client
/// that may use every grant.
pub async fn set_up_on_node(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    user: &str,
) -> Result<(ClientCredentials, User)> {
    let r = http
        .put(format!("{base}/api/v1/password"))
        .bearer_auth(session)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "setting the password: {}", r.status());
    let redirect_uri = "http://127.0.0.1:9/cb".to_owned();
    let r = http
        .post(format!("{base}/oidc/register"))
        .json(&json!({
            "redirect_uris": [redirect_uri],
            "client_name": "sichat-load",
            "grant_types": ["authorization_code", "refresh_token", "client_credentials", DEVICE_CODE_GRANT],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await?;
    ensure!(r.status() == StatusCode::CREATED, "registering the client: {}", r.status());
    let reg: Value = r.json().await?;
    let id = reg["client_id"].as_str().context("client_id")?.to_owned();
    let secret = reg["client_secret"].as_str().context("client_secret")?.to_owned();
    Ok((ClientCredentials { id, secret, redirect_uri }, User { name: user.to_owned(), password: PASSWORD.into() }))
}

/// The provider under load, as a relying party sees it.
pub struct Op {
    http: reqwest::Client,
    issuer: String,
    discovery_url: String,
    authorization_endpoint: String,
    token_endpoint: String,
    introspection_endpoint: String,
    /// RFC 8628's endpoint, where the provider has one.
    device_authorization_endpoint: Option<String>,
    client: ClientCredentials,
    basic: String,
    user: Option<User>,
    keys: HashMap<String, RsassaJwsVerifier>,
    /// The browser's cookies (name → value), set while signing in.
    cookies: Mutex<Jar>,
    /// The `Cookie` header of the signed-in browser.
    cookie: String,
    /// A live access token of the client, for introspection.
    introspected: String,
}

/// What a loop carries from one iteration to the next.
#[derive(Default)]
pub struct Loop {
    refresh: Option<String>,
    /// The loop's DPoP key (private JWK, public JWK), for `oidc-dpop-refresh`.
    dpop: Option<(josekit::jwk::Jwk, josekit::jwk::Jwk)>,
    /// The loop's own signed-in browser (its cookies), for `oidc-device`.
    browser: Jar,
    /// That browser's connections, from a loopback address of its own.
    browser_http: Option<reqwest::Client>,
}

/// A browser's cookies, name → value (paths and expiry ignored: one provider, loopback).
type Jar = BTreeMap<String, String>;

/// The `Cookie` header for `jar`.
fn cookie_header(jar: &Jar) -> String {
    jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

/// Keep what `r` sets in `jar` (an empty value deletes).
fn absorb_cookies(jar: &mut Jar, r: &Response) {
    for c in r.headers().get_all(SET_COOKIE) {
        let Some((name, value)) = c.to_str().ok().and_then(|c| c.split(';').next()).and_then(|c| c.split_once('='))
        else {
            continue;
        };
        match value.is_empty() {
            true => jar.remove(name.trim()),
            false => jar.insert(name.trim().to_owned(), value.to_owned()),
        };
    }
}

/// Send `req` as the browser holding `jar`, keeping the cookies the answer sets.
async fn send_in(jar: &mut Jar, req: reqwest::RequestBuilder) -> Result<Response> {
    let req = if jar.is_empty() { req } else { req.header(COOKIE, cookie_header(jar)) };
    let r = req.send().await?;
    absorb_cookies(jar, &r);
    Ok(r)
}

/// A DPoP proof for a POST to `url` by `key` (private, public).
fn dpop_proof(key: &(josekit::jwk::Jwk, josekit::jwk::Jwk), url: &str) -> Result<String> {
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("dpop+jwt");
    header.set_jwk(key.1.clone());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = json!({"jti": random_token(), "htm": "POST", "htu": url, "iat": now});
    let signer = josekit::jws::ES256.signer_from_jwk(&key.0)?;
    Ok(josekit::jws::serialize_compact(claims.to_string().as_bytes(), &header, &signer)?)
}

fn check_status(what: &str, r: &Response, want: StatusCode) -> Result<()> {
    if r.status() != want {
        bail!("{what}: {} (expected {want})", r.status());
    }
    Ok(())
}

async fn json_ok<T: serde::de::DeserializeOwned>(what: &str, r: Response) -> Result<T> {
    let status = r.status();
    let body = r.bytes().await?;
    if status != StatusCode::OK {
        bail!("{what}: {status} {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("{what}: the body is not JSON"))
}

fn s256(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// The value of the form field `name` in `html`.
fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let v = tag.split("value=\"").nth(1)?;
    Some(v[..v.find('"')?].to_owned())
}

/// The `action` of the first form in `html`.
fn form_action(html: &str) -> Option<String> {
    let at = html.find("<form")?;
    let tag = &html[at..at + html[at..].find('>')?];
    let v = tag.split("action=\"").nth(1)?;
    Some(v[..v.find('"')?].replace("&amp;", "&"))
}

impl Op {
    /// Discover the provider, fetch its keys, and remember the client.
    pub async fn connect(issuer: &str, client: ClientCredentials, user: Option<User>, pool: usize) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(pool)
            .build()?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let discovery_url = format!("{issuer}/.well-known/openid-configuration");
        let meta: Value = json_ok("discovery", http.get(&discovery_url).send().await?).await?;
        ensure!(meta["issuer"] == issuer.as_str(), "discovery names issuer {} instead of {issuer}", meta["issuer"]);
        let endpoint = |k: &str| meta[k].as_str().map(str::to_owned).with_context(|| format!("{k} in discovery"));
        let jwks: Value = json_ok("jwks", http.get(endpoint("jwks_uri")?).send().await?).await?;
        let mut keys = HashMap::new();
        for k in jwks["keys"].as_array().context("keys in the JWKS")? {
            if k["kty"] != "RSA" {
                continue;
            }
            let jwk = josekit::jwk::Jwk::from_map(k.as_object().context("a JWK")?.clone())?;
            keys.insert(k["kid"].as_str().unwrap_or_default().to_owned(), RS256.verifier_from_jwk(&jwk)?);
        }
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.id, client.secret))
        );
        Ok(Self {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            introspection_endpoint: endpoint("introspection_endpoint")?,
            device_authorization_endpoint: endpoint("device_authorization_endpoint").ok(),
            http,
            issuer,
            discovery_url,
            client,
            basic,
            user,
            keys,
            cookies: Mutex::new(BTreeMap::new()),
            cookie: String::new(),
            introspected: String::new(),
        })
    }

    /// Everything a scenario needs before the clock starts: a signed-in browser, a token
    /// to introspect, a refresh token per loop.
    pub async fn prepare(&mut self, scenario: Scenario, loops: usize) -> Result<Vec<Loop>> {
        let mut state: Vec<Loop> = (0..loops).map(|_| Loop::default()).collect();
        match scenario {
            Scenario::Discovery | Scenario::ClientCredentials => {}
            Scenario::Introspect => {
                let t = self.client_credentials().await?;
                self.introspected = t["access_token"].as_str().context("access_token")?.to_owned();
            }
            Scenario::Login => {
                self.sign_in().await?;
            }
            Scenario::Device => {
                ensure!(self.device_authorization_endpoint.is_some(), "no device_authorization_endpoint in discovery");
                // A browser per loop: its own cookies, and its own address (127.1.0.1,
                // 127.1.0.2, …: Linux routes all of 127/8 to loopback), as the users of many
                // devices have: Sichat counts every code typed at `/oidc/device` against the
                // address's guesses, even right ones while they are looked up, and refuses an
                // address with more than 10 at once.
                // oidc-provider keeps a device form's `xsrf` in the browser's session, so
                // there each browser signs in by itself (its automatic interaction). On a
                // Sichat node, where the tool signs in with a password, they share the
                // session of one sign-in, as `oidc-login`'s loops do: one password hash in
                // the set-up, not one per loop; each still keeps its own CSRF cookies.
                let mut first: Option<Jar> = None;
                for (i, l) in state.iter_mut().enumerate() {
                    l.browser = match &first {
                        Some(jar) if self.user.is_some() => jar.clone(),
                        _ => {
                            let jar = self.cookies.get_mut().map_err(|_| anyhow::anyhow!("cookie jar poisoned"))?;
                            jar.clear();
                            self.login_with("openid", None).await.context("signing in a loop's browser")?;
                            std::mem::take(self.cookies.get_mut().map_err(|_| anyhow::anyhow!("cookie jar poisoned"))?)
                        }
                    };
                    first.get_or_insert_with(|| l.browser.clone());
                    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 1)) + u32::try_from(i)?);
                    let http = reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .local_address(IpAddr::V4(addr))
                        .build()?;
                    l.browser_http = Some(http);
                }
            }
            Scenario::Refresh | Scenario::DpopRefresh => {
                // Through the cookie jar: with prompt=consent every login meets a new form.
                for l in &mut state {
                    let tokens = self.login_with("openid offline_access", Some("consent")).await?;
                    l.refresh = Some(tokens["refresh_token"].as_str().context("a refresh token")?.to_owned());
                    if scenario == Scenario::DpopRefresh {
                        let pair = josekit::jws::ES256.generate_key_pair()?;
                        l.dpop = Some((pair.to_jwk_private_key(), pair.to_jwk_public_key()));
                    }
                }
            }
        }
        Ok(state)
    }

    /// Sign the browser in (the first authorization: login form and consent where the
    /// provider shows them), and keep its cookies for the logged-in loops.
    async fn sign_in(&mut self) -> Result<()> {
        self.login_with("openid", None).await?;
        let jar = self.cookies.lock().map_err(|_| anyhow::anyhow!("cookie jar poisoned"))?;
        self.cookie = cookie_header(&jar);
        Ok(())
    }

    pub async fn step(&self, scenario: Scenario, l: &mut Loop) -> Result<()> {
        match scenario {
            Scenario::Discovery => self.discovery().await,
            Scenario::ClientCredentials => self.client_credentials().await.map(|_| ()),
            Scenario::Introspect => self.introspect().await,
            Scenario::Refresh | Scenario::DpopRefresh => self.refresh(l).await,
            Scenario::Login => self.login_with("openid", None).await.map(|_| ()),
            Scenario::Device => self.device(l).await,
        }
    }

    /// The whole document is parsed as JSON; only the fields checked are kept.
    async fn discovery(&self) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Meta {
            issuer: String,
            token_endpoint: String,
            jwks_uri: String,
        }
        let meta: Meta = json_ok("discovery", self.http.get(&self.discovery_url).send().await?).await?;
        ensure!(meta.issuer == self.issuer, "discovery: wrong issuer {}", meta.issuer);
        ensure!(meta.token_endpoint == self.token_endpoint, "discovery: wrong token_endpoint");
        ensure!(!meta.jwks_uri.is_empty(), "discovery: no jwks_uri");
        Ok(())
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Value> {
        self.token_with(form, None).await
    }

    /// A token request, with a DPoP proof if given (then the token must be DPoP-bound).
    async fn token_with(&self, form: &[(&str, &str)], proof: Option<String>) -> Result<Value> {
        let mut req = self.http.post(&self.token_endpoint).header(AUTHORIZATION, &self.basic).form(form);
        let want = match proof {
            Some(p) => {
                req = req.header("DPoP", p);
                "dpop"
            }
            None => "bearer",
        };
        let v: Value = json_ok("token", req.send().await?).await?;
        ensure!(v["access_token"].as_str().is_some_and(|t| !t.is_empty()), "token: no access_token in {v}");
        ensure!(v["token_type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(want)), "token: token_type {v}");
        ensure!(v["expires_in"].as_i64().is_some_and(|e| e > 0), "token: expires_in {v}");
        Ok(v)
    }

    async fn client_credentials(&self) -> Result<Value> {
        self.token(&[("grant_type", "client_credentials")]).await
    }

    async fn introspect(&self) -> Result<()> {
        let r = self
            .http
            .post(&self.introspection_endpoint)
            .header(AUTHORIZATION, &self.basic)
            .form(&[("token", self.introspected.as_str())])
            .send()
            .await?;
        let v: Value = json_ok("introspection", r).await?;
        ensure!(v["active"] == true, "introspection: the token is not active: {v}");
        ensure!(v["client_id"] == self.client.id.as_str(), "introspection: wrong client_id in {v}");
        Ok(())
    }

    async fn refresh(&self, l: &mut Loop) -> Result<()> {
        let token = l.refresh.take().context("this loop's refresh chain broke")?;
        let proof = l.dpop.as_ref().map(|k| dpop_proof(k, &self.token_endpoint)).transpose()?;
        let v = self.token_with(&[("grant_type", "refresh_token"), ("refresh_token", &token)], proof).await?;
        let next = v["refresh_token"].as_str().context("refresh: no rotated refresh_token")?;
        ensure!(next != token, "refresh: the refresh token did not rotate");
        l.refresh = Some(next.to_owned());
        Ok(())
    }

    /// One authorization-code login: authorize (through whatever pages the browser meets),
    /// redeem the code with PKCE, check the ID token. Returns the token response.
    async fn login_with(&self, scope: &str, prompt: Option<&str>) -> Result<Value> {
        let (verifier, state, nonce) = (random_token() + &random_token(), random_token(), random_token());
        let mut url = Url::parse(&self.authorization_endpoint)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client.id)
            .append_pair("redirect_uri", &self.client.redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(p) = prompt {
            url.query_pairs_mut().append_pair("prompt", p);
        }
        let back = self.browse(url).await?;
        let param = |k: &str| back.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        if let Some(e) = param("error") {
            bail!("authorization: {e}: {}", param("error_description").unwrap_or_default());
        }
        ensure!(param("state").as_deref() == Some(state.as_str()), "authorization: state does not match");
        if let Some(iss) = param("iss") {
            ensure!(iss == self.issuer, "authorization: iss {iss}");
        }
        let code = param("code").context("authorization: no code")?;
        let tokens = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", &self.client.redirect_uri),
            ])
            .await?;
        self.check_id_token(&tokens, Some(&nonce))?;
        Ok(tokens)
    }

    /// One device authorization grant: the device's request, the user's approval in the
    /// loop's browser, then one token poll, which must bring the tokens (no `slow_down`: it is
    /// the code's first poll).
    async fn device(&self, l: &mut Loop) -> Result<()> {
        let endpoint = self.device_authorization_endpoint.as_deref().context("no device_authorization_endpoint")?;
        let r = self.http.post(endpoint).header(AUTHORIZATION, &self.basic).form(&[("scope", "openid")]).send().await?;
        let v: Value = json_ok("device authorization", r).await?;
        let text = |k: &str| {
            v[k].as_str().filter(|s| !s.is_empty()).with_context(|| format!("device authorization: no {k} in {v}"))
        };
        let (device_code, user_code) = (text("device_code")?, text("user_code")?);
        let verification_uri =
            Url::parse(text("verification_uri")?).context("device authorization: verification_uri")?;
        ensure!(v["expires_in"].as_i64().is_some_and(|e| e > 0), "device authorization: expires_in in {v}");
        // OPTIONAL (RFC 8628 §3.2; 5 s when absent): oidc-provider leaves it out.
        ensure!(
            v.get("interval").is_none_or(|i| i.as_i64().is_some_and(|i| i > 0)),
            "device authorization: interval in {v}"
        );
        let browser = l.browser_http.as_ref().unwrap_or(&self.http);
        self.approve_device(browser, verification_uri, user_code, &mut l.browser).await?;
        let tokens = self.token(&[("grant_type", DEVICE_CODE_GRANT), ("device_code", device_code)]).await?;
        self.check_id_token(&tokens, None)
    }

    /// The user at `verification_uri` in the browser holding `jar`: the code typed in the
    /// provider's form, then its confirmation (Sichat's consent page, which names the code;
    /// oidc-provider's confirm form, and its interactions if it has any to show), up to the
    /// provider's closing page.
    async fn approve_device(
        &self,
        http: &reqwest::Client,
        verification_uri: Url,
        user_code: &str,
        jar: &mut Jar,
    ) -> Result<()> {
        let mut at = verification_uri;
        let mut r = send_in(jar, http.get(at.clone())).await?;
        let mut entered = false;
        for _ in 0..12 {
            if r.status().is_redirection() {
                let loc = r.headers().get(LOCATION).and_then(|v| v.to_str().ok()).context("redirect: no Location")?;
                at = at.join(loc)?;
                r = send_in(jar, http.get(at.clone())).await?;
                continue;
            }
            let status = r.status();
            let html = r.text().await?;
            ensure!(status == StatusCode::OK, "device approval: {status} at {at}");
            let form: Vec<(&str, String)> = if html.contains("name=\"confirm\"") {
                // oidc-provider's confirmation: the code again, with its xsrf and confirm=yes.
                let shown = field(&html, "user_code").context("user_code field")?;
                ensure!(shown == user_code, "device approval: the confirm page shows {shown}, not {user_code}");
                vec![
                    ("xsrf", field(&html, "xsrf").context("xsrf field")?),
                    ("user_code", shown),
                    ("confirm", field(&html, "confirm").context("confirm field")?),
                ]
            } else if html.contains("name=\"user_code\"") {
                // The code form (Sichat's `csrf`, cookie-bound; oidc-provider's `xsrf`,
                // session-bound). Shown again after the code was sent: the code was refused.
                ensure!(!entered, "device approval: the code form came back at {at}");
                entered = true;
                let csrf = ["csrf", "xsrf"]
                    .into_iter()
                    .find_map(|k| field(&html, k).map(|v| (k, v)))
                    .context("device approval: no CSRF field in the code form")?;
                vec![csrf, ("user_code", user_code.to_owned())]
            } else if html.contains("action=\"/oidc/consent\"") {
                // Sichat asks every time, naming the code.
                ensure!(html.contains(user_code), "device approval: the consent page does not name the code");
                vec![
                    ("request", field(&html, "request").context("request field")?),
                    ("csrf", field(&html, "csrf").context("csrf field")?),
                    ("decision", "allow".into()),
                ]
            } else if entered && (html.contains("Device signed in") || html.contains("Sign-in Success")) {
                return Ok(());
            } else {
                bail!("device approval: a page the tool cannot fill in at {at}");
            };
            let post = at.join(&form_action(&html).context("device approval: a form without action")?)?;
            r = send_in(jar, http.post(post.clone()).form(&form)).await?;
            at = post;
        }
        bail!("device approval: too many steps")
    }

    /// The ID token: signed by a key of the JWKS, for this issuer, client and nonce (none
    /// for a device grant, which sends none), not expired, and bound to the access token by
    /// `at_hash` when it has one.
    fn check_id_token(&self, tokens: &Value, nonce: Option<&str>) -> Result<()> {
        let jwt = tokens["id_token"].as_str().context("no id_token")?;
        let header = jwt.split('.').next().and_then(sichat_core::ids::b64url_decode).context("id_token header")?;
        let header: Value = serde_json::from_slice(&header)?;
        ensure!(header["alg"] == "RS256", "id_token alg {}", header["alg"]);
        let kid = header["kid"].as_str().unwrap_or_default();
        let key = self.keys.get(kid).with_context(|| format!("id_token kid {kid} is not in the JWKS"))?;
        let (payload, _) = josekit::jws::deserialize_compact(jwt, key).context("id_token signature")?;
        let claims: Value = serde_json::from_slice(&payload)?;
        ensure!(claims["iss"] == self.issuer.as_str(), "id_token iss {}", claims["iss"]);
        let aud_ok = match &claims["aud"] {
            Value::String(a) => *a == self.client.id,
            Value::Array(a) => a.iter().any(|x| *x == self.client.id.as_str()),
            _ => false,
        };
        ensure!(aud_ok, "id_token aud {}", claims["aud"]);
        match nonce {
            Some(n) => ensure!(claims["nonce"] == n, "id_token nonce"),
            None => ensure!(claims.get("nonce").is_none(), "id_token nonce {} unasked", claims["nonce"]),
        }
        ensure!(claims["sub"].as_str().is_some_and(|s| !s.is_empty()), "id_token sub");
        let now = sichat_core::ids::now_ms() / 1000;
        ensure!(claims["exp"].as_i64().is_some_and(|e| e > now), "id_token expired");
        if let Some(at_hash) = claims["at_hash"].as_str() {
            let access = tokens["access_token"].as_str().unwrap_or_default();
            ensure!(at_hash == b64url(&Sha256::digest(access.as_bytes())[..16]), "id_token at_hash");
        }
        Ok(())
    }

    /// Follow the browser from `url` until the provider sends it back to the redirect URI:
    /// redirects within the provider, and Sichat's sign-in and consent forms.
    async fn browse(&self, url: Url) -> Result<Url> {
        let mut r = self.browser_get(url.clone()).await?;
        let mut at = url;
        for _ in 0..12 {
            if r.status().is_redirection() {
                let loc = r.headers().get(LOCATION).and_then(|v| v.to_str().ok()).context("redirect: no Location")?;
                let next = at.join(loc)?;
                if next.as_str().starts_with(&self.client.redirect_uri) {
                    return Ok(next);
                }
                r = self.browser_get(next.clone()).await?;
                at = next;
                continue;
            }
            check_status("authorization page", &r, StatusCode::OK)?;
            let html = r.text().await?;
            let (action, form): (&str, Vec<(&str, String)>) = if html.contains("action=\"/oidc/login\"") {
                let user = self.user.as_ref().context("a login form, but no user to sign in")?;
                let form = vec![
                    ("request", field(&html, "request").context("request field")?),
                    ("csrf", field(&html, "csrf").context("csrf field")?),
                    ("username", user.name.clone()),
                    ("password", user.password.clone()),
                ];
                ("/oidc/login", form)
            } else if html.contains("action=\"/oidc/consent\"") {
                let form = vec![
                    ("request", field(&html, "request").context("request field")?),
                    ("csrf", field(&html, "csrf").context("csrf field")?),
                    ("decision", "allow".into()),
                ];
                ("/oidc/consent", form)
            } else {
                bail!("authorization: a page the tool cannot fill in at {at}");
            };
            let post = at.join(action)?;
            r = self.browser_send(self.http.post(post.clone()).form(&form)).await?;
            at = post;
        }
        bail!("authorization: too many steps")
    }

    async fn browser_get(&self, url: Url) -> Result<Response> {
        self.browser_send(self.http.get(url)).await
    }

    /// Send with the browser's cookies: the signed-in session once set up, else the jar
    /// (which every answer's `Set-Cookie` updates).
    async fn browser_send(&self, req: reqwest::RequestBuilder) -> Result<Response> {
        if !self.cookie.is_empty() {
            return Ok(req.header(COOKIE, &self.cookie).send().await?);
        }
        let header = cookie_header(&*self.cookies.lock().map_err(|_| anyhow::anyhow!("cookie jar poisoned"))?);
        let req = if header.is_empty() { req } else { req.header(COOKIE, header) };
        let r = req.send().await?;
        absorb_cookies(&mut *self.cookies.lock().map_err(|_| anyhow::anyhow!("cookie jar poisoned"))?, &r);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_form_fields() {
        let html = r#"<form><input type="hidden" name="request" value="abc"><input name="csrf" type="hidden" value="x-y"></form>"#;
        assert_eq!(super::field(html, "request").as_deref(), Some("abc"));
        assert_eq!(super::field(html, "csrf").as_deref(), Some("x-y"));
        assert_eq!(super::field(html, "missing"), None);
    }

    #[test]
    fn reads_form_actions() {
        let html = r#"<p>x</p><form id="op.deviceInputForm" novalidate method="post" action="http://localhost:3000/device">
  <input type="hidden" name="xsrf" value="abc"/>
  <input
    type="text" name="user_code" placeholder="Enter code" autofocus></input></form>"#;
        assert_eq!(super::form_action(html).as_deref(), Some("http://localhost:3000/device"));
        assert_eq!(super::field(html, "xsrf").as_deref(), Some("abc"));
        assert_eq!(super::field(html, "user_code"), None);
        assert_eq!(
            super::form_action("<form method=\"post\" action=\"/a?b=1&amp;c=2\">").as_deref(),
            Some("/a?b=1&c=2")
        );
        assert_eq!(super::form_action("<p>no form</p>"), None);
    }
}

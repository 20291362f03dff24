// An independent OAuth 2.0 / OpenID Connect client for tests/e2e/oidc_independent.rs:
// panva's `oauth4webapi`, a spec-strict library, drives the node's provider through its own
// API only (no request made by hand here). Every response is checked as the library checks
// it; whatever it refuses ends this script with a non-zero status and the library's error.
//
// usage: node oauth4webapi-client.mjs <issuer> <client_id> <client_secret> [redirect_uri]
//   (or OAUTH_ISSUER, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REDIRECT_URI)
// The client is confidential (client_secret_basic) and registered for the device code,
// client_credentials and refresh_token grants, and, with a redirect URI, authorization_code.
//
// stdout, one JSON object a line, each naming its "step":
//   discovery          both metadata documents (RFC 8414 and OIDC Discovery) were accepted
//   client_credentials a DPoP-bound token for the client itself
//   device             {"user_code", "verification_uri_complete"}: someone must approve it now
//   pending            (once a poll) the token endpoint said authorization_pending or slow_down
//   device_tokens      the device grant's tokens, ID token and UserInfo: sub, token_type, ...
//   par                (with a redirect URI) {"request_uri", "authorization_url"}: sign in there,
//                      then write the URL the browser was sent back to as one line on stdin
//   code               the code's tokens, ID token, refresh and UserInfo
//   done
import * as oauth from 'oauth4webapi';
import {createInterface} from 'node:readline';

const [issuerArg, clientId, clientSecret, redirectUri] = [
  process.argv[2] ?? process.env.OAUTH_ISSUER,
  process.argv[3] ?? process.env.OAUTH_CLIENT_ID,
  process.argv[4] ?? process.env.OAUTH_CLIENT_SECRET,
  process.argv[5] ?? process.env.OAUTH_REDIRECT_URI,
];
if(!issuerArg || !clientId || !clientSecret) {
  console.error('usage: node oauth4webapi-client.mjs <issuer> <client_id> <client_secret> [redirect_uri]');
  process.exit(2);
}

// The node under test listens on plain http on loopback: the library's documented switch
// for that, on every request it makes.
const insecure = {[oauth.allowInsecureRequests]: true};

const lines = createInterface({input: process.stdin})[Symbol.asyncIterator]();

function emit(object) {
  return new Promise((resolve, reject) =>
    process.stdout.write(JSON.stringify(object) + '\n', e => e ? reject(e) : resolve()));
}

async function readLine(what) {
  const next = await lines.next();
  if(next.done) {
    throw new Error(`stdin closed while waiting for ${what}`);
  }
  return next.value.trim();
}

const sleep = seconds => new Promise(resolve => setTimeout(resolve, seconds * 1000));

// RFC 9449 §8: a server may ask for a nonce; the DPoP handle has learnt it, so try once more.
async function withDpopNonce(call) {
  try {
    return await call();
  } catch(e) {
    if(oauth.isDPoPNonceError(e)) {
      return call();
    }
    throw e;
  }
}

async function describe(e) {
  const out = {name: e?.name, code: e?.code, message: e?.message};
  for(const key of ['error', 'error_description', 'status']) {
    if(e?.[key] !== undefined) {
      out[key] = e[key];
    }
  }
  let cause = e?.cause;
  if(cause instanceof Response) {
    let body;
    try {
      body = await cause.clone().text();
    } catch {
      body = '(body already read)';
    }
    cause = {status: cause.status, headers: Object.fromEntries(cause.headers), body};
  } else if(cause instanceof Error) {
    cause = await describe(cause);
  }
  if(cause !== undefined) {
    out.cause = cause;
  }
  if(e?.response instanceof Response) {
    out.response = {status: e.response.status, headers: Object.fromEntries(e.response.headers)};
  }
  return out;
}

const step = {name: 'start'};

async function main() {
  const issuer = new URL(issuerArg);

  // 1. Discovery, both ways: RFC 8414 (.well-known/oauth-authorization-server, inserted
  // before the issuer's path) and OpenID Connect Discovery (.well-known/openid-configuration).
  step.name = 'discovery (oauth2)';
  const oauth2 = await oauth.discoveryRequest(issuer, {algorithm: 'oauth2', ...insecure})
    .then(response => oauth.processDiscoveryResponse(issuer, response));
  step.name = 'discovery (oidc)';
  const as = await oauth.discoveryRequest(issuer, {algorithm: 'oidc', ...insecure})
    .then(response => oauth.processDiscoveryResponse(issuer, response));
  for(const [name, meta] of [['oauth2', oauth2], ['oidc', as]]) {
    for(const field of ['token_endpoint', 'device_authorization_endpoint', 'userinfo_endpoint', 'jwks_uri']) {
      if(typeof meta[field] !== 'string') {
        throw new Error(`the ${name} metadata has no ${field}`);
      }
    }
  }
  await emit({step: 'discovery', oauth2: oauth2.issuer, oidc: as.issuer,
    dpop_signing_alg_values_supported: as.dpop_signing_alg_values_supported ?? null});

  const client = {client_id: clientId, token_endpoint_auth_method: 'client_secret_basic'};
  const auth = oauth.ClientSecretBasic(clientSecret);
  const keyPair = await oauth.generateKeyPair('ES256');
  const DPoP = oauth.DPoP(client, keyPair);
  const options = {DPoP, ...insecure};

  // 2. client_credentials with a DPoP proof: a token bound to the key.
  step.name = 'client_credentials';
  const own = await withDpopNonce(async () => {
    const response = await oauth.clientCredentialsGrantRequest(as, client, auth, {scope: 'inventory'}, options);
    return oauth.processClientCredentialsResponse(as, client, response);
  });
  if(own.token_type !== 'dpop') {
    throw new Error(`client_credentials: token_type ${own.token_type}, not dpop`);
  }
  await emit({step: 'client_credentials', token_type: own.token_type, scope: own.scope ?? null,
    expires_in: own.expires_in ?? null});

  // 3. The device authorization grant (RFC 8628), its token requests with DPoP.
  step.name = 'device authorization';
  const device = await oauth.deviceAuthorizationRequest(as, client, auth, {scope: 'openid profile'}, insecure)
    .then(response => oauth.processDeviceAuthorizationResponse(as, client, response));
  await emit({step: 'device', user_code: device.user_code,
    verification_uri_complete: device.verification_uri_complete ?? null,
    verification_uri: device.verification_uri, interval: device.interval ?? null,
    expires_in: device.expires_in});

  step.name = 'device token polling';
  let interval = device.interval ?? 5;
  const deadline = Date.now() + device.expires_in * 1000;
  const polls = {authorization_pending: 0, slow_down: 0};
  let tokens;
  let tokenResponse;
  while(tokens === undefined) {
    if(Date.now() > deadline) {
      throw new Error('the device code expired before it was approved');
    }
    await sleep(interval);
    try {
      tokens = await withDpopNonce(async () => {
        tokenResponse = await oauth.deviceCodeGrantRequest(as, client, auth, device.device_code, options);
        return oauth.processDeviceCodeResponse(as, client, tokenResponse);
      });
    } catch(e) {
      if(e instanceof oauth.ResponseBodyError && e.error === 'authorization_pending') {
        polls.authorization_pending++;
        await emit({step: 'pending', error: e.error, status: e.status});
        continue;
      }
      if(e instanceof oauth.ResponseBodyError && e.error === 'slow_down') {
        polls.slow_down++;
        interval += 5; // RFC 8628 §3.5
        await emit({step: 'pending', error: e.error, status: e.status});
        continue;
      }
      throw e;
    }
  }
  const deviceResult = await checkTokens(as, client, tokens, tokenResponse, options, 'device');
  await emit({step: 'device_tokens', ...deviceResult, polls});

  // 4. With a redirect URI: a pushed authorization request (RFC 9126) with a DPoP proof,
  // PKCE and a nonce; someone signs in at the authorization URL and hands back where the
  // browser went. Then the code, a refresh, and UserInfo, all bound to the same key.
  if(redirectUri) {
    step.name = 'pushed authorization request';
    const codeVerifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const parameters = {
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: 'openid profile offline_access',
      code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    const pushed = await withDpopNonce(async () => {
      const response = await oauth.pushedAuthorizationRequest(as, client, auth, parameters, options);
      return oauth.processPushedAuthorizationResponse(as, client, response);
    });
    const authorizationUrl = new URL(as.authorization_endpoint);
    authorizationUrl.searchParams.set('client_id', clientId);
    authorizationUrl.searchParams.set('request_uri', pushed.request_uri);
    await emit({step: 'par', request_uri: pushed.request_uri, expires_in: pushed.expires_in,
      authorization_url: authorizationUrl.href});

    step.name = 'authorization response';
    const back = new URL(await readLine('the authorization response'));
    const callback = oauth.validateAuthResponse(as, client, back, state);
    step.name = 'authorization code grant';
    let codeResponse;
    const codeTokens = await withDpopNonce(async () => {
      codeResponse = await oauth.authorizationCodeGrantRequest(
        as, client, auth, callback, redirectUri, codeVerifier, options);
      return oauth.processAuthorizationCodeResponse(as, client, codeResponse,
        {expectedNonce: nonce, requireIdToken: true});
    });
    const codeResult = await checkTokens(as, client, codeTokens, codeResponse, options, 'code');

    step.name = 'refresh token grant';
    if(typeof codeTokens.refresh_token !== 'string') {
      throw new Error('offline_access was granted but no refresh token came back');
    }
    const refreshed = await withDpopNonce(async () => {
      const response = await oauth.refreshTokenGrantRequest(as, client, auth, codeTokens.refresh_token, options);
      return oauth.processRefreshTokenResponse(as, client, response);
    });
    if(refreshed.token_type !== 'dpop') {
      throw new Error(`refresh: token_type ${refreshed.token_type}, not dpop`);
    }
    step.name = 'UserInfo with the refreshed token';
    const again = await withDpopNonce(async () => {
      const response = await oauth.userInfoRequest(as, client, refreshed.access_token, options);
      return oauth.processUserInfoResponse(as, client, codeResult.sub, response);
    });
    await emit({step: 'code', ...codeResult, refreshed_token_type: refreshed.token_type,
      refreshed_sub: again.sub});
  }
  await emit({step: 'done'});
}

// The ID token as the library validates it (iss, aud, exp, iat, sub, azp, auth_time, alg
// against the metadata), its signature against the provider's JWKS, then UserInfo with the
// DPoP-bound access token for the ID token's subject.
async function checkTokens(as, client, tokens, response, options, flow) {
  step.name = `${flow}: tokens`;
  if(tokens.token_type !== 'dpop') {
    throw new Error(`${flow}: token_type ${tokens.token_type}, not dpop`);
  }
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  if(claims === undefined) {
    throw new Error(`${flow}: no ID token`);
  }
  step.name = `${flow}: ID token signature`;
  await oauth.validateApplicationLevelSignature(as, response, insecure);
  step.name = `${flow}: UserInfo`;
  const info = await withDpopNonce(async () => {
    const r = await oauth.userInfoRequest(as, client, tokens.access_token, options);
    return oauth.processUserInfoResponse(as, client, claims.sub, r);
  });
  return {
    sub: claims.sub,
    token_type: tokens.token_type,
    preferred_username: info.preferred_username ?? null,
    userinfo_sub: info.sub,
    amr: claims.amr ?? null,
    refresh_token: typeof tokens.refresh_token === 'string',
  };
}

try {
  await main();
  process.exit(0);
} catch(e) {
  const detail = await describe(e);
  console.error(`oauth4webapi-client.mjs failed at step "${step.name}": ${JSON.stringify(detail, null, 2)}`);
  process.exit(1);
}

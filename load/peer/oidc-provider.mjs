// The peer of BENCHMARKS.md's OpenID Provider figures: the npm `oidc-provider`, in memory
// (its default adapter), with one confidential client that may use the code flow, refresh
// tokens, client_credentials and the device grant (RFC 8628), and with introspection,
// revocation, DPoP and the device flow on.
//
// A load test measures a signed-in browser, not password hashing, so the interaction is
// automatic: the first authorization signs in `load-user` and grants what the client asks;
// later ones ride on the session cookie and the remembered grant, like Sichat's. A device's
// user code is typed at /device and confirmed on the confirm page that shows it (the
// counterpart of Sichat's consent page for a device), in the browser of the tool's loop.
//
//   npm --prefix load/peer ci && node load/peer/oidc-provider.mjs   # PORT=3000 by default
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT ?? 3000);
const issuer = `http://localhost:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID ?? 'load',
      client_secret: process.env.CLIENT_SECRET ?? 'load-secret',
      grant_types: [
        'authorization_code',
        'refresh_token',
        'client_credentials',
        'urn:ietf:params:oauth:grant-type:device_code',
      ],
      response_types: ['code'],
      redirect_uris: [process.env.REDIRECT_URI ?? 'http://127.0.0.1:9/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'peer', alg: 'RS256', use: 'sig' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true },
    deviceFlow: { enabled: true },
  },
  pkce: { required: () => true },
  // Sichat rotates every refresh token; so does the peer here, to measure the same work.
  rotateRefreshToken: true,
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// The automatic interaction: sign in `load-user`, then grant every scope and claim asked.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!m || ctx.method !== 'GET') return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session, grantId } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: 'load-user' } };
  } else {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ${issuer} (pid ${process.pid}): client ${process.env.CLIENT_ID ?? 'load'}`);
});

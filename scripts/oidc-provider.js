// A real OpenID Connect provider for end-to-end tests: npm `oidc-provider` (a certified
// implementation) on loopback, issuing JWT access tokens in the Keycloak layout the engine reads
// (`sub`, `name`, `preferred_username`, `realm_access.roles`). Get a token with scripts/oidc-token.js.
//
//   node scripts/oidc-provider.js --port 0 --keys /tmp/t/jwks.json [--audience inbox-api]
//        [--issuer URL] [--resource URI] [--access-ttl 300] [--alg RS256|ES256]
//        [--tls-cert cert.pem --tls-key key.pem]
//
//   --port        0 (default) = any free port; the issuer printed tells which.
//   --issuer      default http(s)://127.0.0.1:<port>; must be a URL this server is reached at, without
//                 a path (endpoints are served at the root).
//   --keys        JWKS file with PRIVATE keys. Missing: an RS256 and an ES256 key are generated and
//                 written there, so the same file keeps the keys across restarts and a new file
//                 rotates them. All its keys are published; the first key of an alg signs.
//   --audience    the `aud` of access tokens (default inbox-api).
//   --resource    the RFC 8707 resource indicator of that API (must be an absolute URI; default the
//                 audience itself when it is one, else `urn:<audience>`). Token requests that name
//                 no resource get this one.
//   --access-ttl  access token lifetime in seconds (default 300); a token request may ask less/more.
//   --alg         access/ID token alg for client `inbox-tests` (default RS256). Client
//                 `inbox-tests-es256` always gets ES256: that is the per-request choice.
//   --tls-cert/--tls-key   serve HTTPS (PEM files).
//   --console-redirect     the web console's redirect URIs (comma-separated): registers the public
//                 client `inbox-console` (authorization code + PKCE, refresh tokens), whose login
//                 page is an HTML form (user id, roles, name) that answers login and consent at once.
// Every flag also reads env OIDC_<FLAG> (OIDC_PORT, OIDC_KEYS, OIDC_TLS_CERT, ...).
//
// The package is found in NODE_PATH (as scripts/telegram-emulator.js does) or else in
// $INBOX_NPM_PREFIX/node_modules (default $HOME/.cache/inbox-engine/npm, where `scripts/stack.sh
// install` puts it). It is ESM-only, so it is import()ed by path: ESM ignores NODE_PATH.
//
// Prints `oidc-provider ready <issuer>` on stdout once listening; everything else goes to stderr.
// Discovery: <issuer>/.well-known/openid-configuration; keys: <issuer>/jwks.
//
// Login is a real authorization code + PKCE flow. The provider's interaction pages are replaced by
// one machine endpoint: POST /interaction/<uid> with a form `login=<user>&roles=a,b&name=...&ttl=N`
// answers every prompt (login, then consent) for that user. The roles, name and ttl are kept per
// grant, so concurrent logins of the same user with different roles do not mix.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

function flags() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    out[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  const get = (name, dflt) => {
    const env = process.env[`OIDC_${name.toUpperCase().replace(/-/g, '_')}`];
    return out[name] ?? env ?? dflt;
  };
  return get;
}

function findPackage(name) {
  const prefix = process.env.INBOX_NPM_PREFIX
    || path.join(process.env.INBOX_CACHE || path.join(os.homedir(), '.cache', 'inbox-engine'), 'npm');
  const dirs = [...(process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean),
    path.join(prefix, 'node_modules')];
  for (const d of dirs) {
    const pkg = path.join(d, name, 'package.json');
    if (fs.existsSync(pkg)) return path.join(d, name, JSON.parse(fs.readFileSync(pkg, 'utf8')).main || 'index.js');
  }
  throw new Error(`${name} not found in ${dirs.join(', ')} (run: scripts/stack.sh install)`);
}

// RFC 7638 thumbprint as kid: stable for a key, so "same file, same kid" holds by construction.
function thumbprint(jwk) {
  const members = jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function loadOrCreateKeys(file) {
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const gen = (alg, type, opts) => {
    const jwk = crypto.generateKeyPairSync(type, opts).privateKey.export({ format: 'jwk' });
    return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
  };
  const jwks = { keys: [gen('RS256', 'rsa', { modulusLength: 2048 }), gen('ES256', 'ec', { namedCurve: 'P-256' })] };
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  return jwks;
}

async function main() {
  const get = flags();
  const tlsCert = get('tls-cert');
  const tlsKey = get('tls-key');
  const keysFile = get('keys');
  if (!keysFile) throw new Error('--keys <jwks file> is required');
  if (!!tlsCert !== !!tlsKey) throw new Error('--tls-cert and --tls-key go together');
  const audience = get('audience', 'inbox-api');
  const resource = get('resource', URL.canParse(audience) && !audience.startsWith('urn:') ? audience : `urn:${audience}`);
  const accessTtl = Number(get('access-ttl', 300));
  const defaultAlg = get('alg', 'RS256');
  const jwks = loadOrCreateKeys(keysFile);

  // The provider's notices use console.info (stdout): keep stdout for the ready marker only.
  console.info = console.error;
  const { default: Provider, errors } = await import(pathToFileURL(findPackage('oidc-provider')).href);

  // Listen first so that --port 0 works: the issuer must contain the real port.
  let handler = (req, res) => { res.statusCode = 503; res.end(); };
  const server = tlsCert
    ? https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) }, (q, s) => handler(q, s))
    : http.createServer((q, s) => handler(q, s));
  await new Promise((ok, fail) => server.once('error', fail).listen(Number(get('port', 0)), '127.0.0.1', ok));
  const issuer = get('issuer', `${tlsCert ? 'https' : 'http'}://127.0.0.1:${server.address().port}`);

  const profiles = new Map(); // grantId -> {user, name, roles, ttl}
  const profileOf = (token) => token && profiles.get(token.grantId);
  const algOf = (client) => (client?.clientId === 'inbox-tests-es256' ? 'ES256' : defaultAlg);
  // Public clients (no secret) must use PKCE: the provider enforces it for auth method `none`.
  // The redirect URI is never served: the token script reads the code from the Location header.
  const client = (id, alg) => ({
    client_id: id, token_endpoint_auth_method: 'none', application_type: 'web',
    grant_types: ['authorization_code'], response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'], id_token_signed_response_alg: alg,
  });

  const consoleRedirects = (get('console-redirect', '') || '').split(',').map((u) => u.trim()).filter(Boolean);
  const clients = [client('inbox-tests', defaultAlg), client('inbox-tests-es256', 'ES256')];
  if (consoleRedirects.length) {
    clients.push({
      ...client('inbox-console', defaultAlg),
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: consoleRedirects,
      post_logout_redirect_uris: consoleRedirects,
    });
  }
  const provider = new Provider(issuer, {
    jwks,
    clients,
    scopes: ['openid', 'profile', 'offline_access'],
    // A browser app on another origin calls the token endpoint: CORS for every client.
    clientBasedCORS: () => true,
    // The console renews its access token with the refresh token, whatever the prompt was.
    issueRefreshToken: async (ctx, cl) => cl.grantTypeAllowed('refresh_token'),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resource,
        // The code exchange needs no `resource` parameter: the one granted is used.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator, cl) => {
          if (indicator !== resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return { scope: 'inbox', audience, accessTokenFormat: 'jwt', accessTokenTTL: accessTtl, jwt: { sign: { alg: algOf(cl) } } };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const p = profileOf(token);
      return p && { name: p.name, preferred_username: p.user, realm_access: { roles: p.roles } };
    },
    findAccount: async (ctx, sub, token) => ({
      accountId: sub,
      claims: async () => {
        const p = profileOf(token) || profileOf(ctx.oidc.entities.Grant) || {};
        return { sub, name: p.name, preferred_username: p.user || sub };
      },
    }),
    ttl: {
      AccessToken: (ctx, token) => profileOf(token)?.ttl || token.resourceServer?.accessTokenTTL || accessTtl,
      AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600,
    },
    renderError: async (ctx, out) => { ctx.type = 'json'; ctx.body = out; },
  });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));

  const form = (req) => new Promise((ok, fail) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c) => { body += c; }).on('end', () => ok(new URLSearchParams(body))).on('error', fail);
  });
  const json = (res, code, obj) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };

  // What a browser's login form said, per user, until its consent round (one form does both).
  const pendingForms = new Map();
  const loginPage = (uid) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><main><h1>Sign in</h1><form method="post" action="/interaction/${uid}">
<label>User id <input name="login" autocomplete="username" required></label>
<label>Roles <input name="roles" value="manager"></label>
<label>Name <input name="name"></label>
<button type="submit">Sign in</button></form></main></body></html>`;

  // The machine replacement of the login and consent pages; a browser gets one HTML form.
  async function interaction(req, res) {
    const details = await provider.interactionDetails(req, res);
    const browser = /text\/html/.test(req.headers.accept || '');
    if (req.method === 'GET' && browser) {
      const pending = details.prompt.name === 'consent' && pendingForms.get(details.session?.accountId);
      if (!pending) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end(loginPage(details.uid));
      }
      pendingForms.delete(details.session.accountId);
      return consent(req, res, details, pending);
    }
    if (req.method === 'GET') return json(res, 200, { uid: details.uid, prompt: details.prompt, params: details.params });
    const f = await form(req);
    if (browser && f.get('login')) pendingForms.set(f.get('login'), f);
    const user = f.get('login');
    if (!user) return json(res, 400, { error: 'login (the user id) is required' });
    const { prompt, params, session } = details;
    if (prompt.name === 'login') {
      return provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
    }
    if (prompt.name !== 'consent') return json(res, 400, { error: `unsupported prompt ${prompt.name}` });
    if (session?.accountId !== user) return json(res, 400, { error: `session is ${session?.accountId}, not ${user}` });
    return consent(req, res, details, f);
  }

  // Grants what the client asked for, keeping the form's roles, name and ttl with the grant.
  async function consent(req, res, details, f) {
    const { prompt, params } = details;
    const user = f.get('login');
    const ttl = f.get('ttl') ? Number(f.get('ttl')) : undefined;
    if (ttl !== undefined && !(Number.isSafeInteger(ttl) && ttl > 0)) return json(res, 400, { error: 'ttl must be a positive integer' });
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: user, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    profiles.set(grantId, {
      user, name: f.get('name') || user, ttl,
      roles: (f.get('roles') || '').split(',').map((r) => r.trim()).filter(Boolean),
    });
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  const callback = provider.callback();
  handler = (req, res) => {
    if (/^\/interaction\/[^/?]+(\?|$)/.test(req.url)) {
      interaction(req, res).catch((err) => json(res, err.statusCode || 500, { error: err.error || 'server_error', error_description: err.error_description || err.message }));
    } else {
      callback(req, res);
    }
  };
  // Nothing to flush (state is in memory, tokens are self-contained): exit at once, so a test can
  // restart on the same port without waiting for keep-alive connections to drain.
  process.on('SIGTERM', () => process.exit(0)).on('SIGINT', () => process.exit(0));
  process.stdout.write(`oidc-provider ready ${issuer}\n`);
}

main().catch((err) => { console.error(`oidc-provider: ${err.message || err}`); process.exit(1); });

// Gets an access token from scripts/oidc-provider.js through a real authorization code + PKCE
// grant, without a browser, and prints it on stdout (the whole token response with --json).
//
//   node scripts/oidc-token.js --issuer URL --user ivan --roles client --name "Ivan Petrov"
//        [--ttl 60] [--alg ES256] [--resource URI] [--ca ca.pem] [--json]
//
//   --roles   comma-separated (client, manager, admin); none = a token with no roles.
//   --ttl     access token lifetime in seconds (default: the provider's --access-ttl).
//   --alg     ES256 uses client `inbox-tests-es256`; otherwise client `inbox-tests` (RS256 unless
//             the provider was started with --alg).
//   --ca      PEM CA for an https issuer (Node's fetch cannot take one, hence node:https).
// Exit status 1 with the provider's error on stderr when any step fails.
// Needs nothing from npm: plain Node 20.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');

const opts = {};
for (let i = 2; i < process.argv.length; i++) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(process.argv[i]);
  if (!m) throw new Error(`unexpected argument ${process.argv[i]}`);
  opts[m[1]] = m[2] !== undefined ? m[2] : (m[1] === 'json' ? 'true' : process.argv[++i]);
}
const ca = opts.ca && fs.readFileSync(opts.ca);
const REDIRECT = 'http://127.0.0.1/callback'; // registered for the test clients; never fetched
const jar = new Map(); // the provider ties the interaction steps together with cookies

function request(method, url, body) {
  const u = new URL(url);
  const headers = { accept: 'application/json' };
  if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((ok, fail) => {
    const req = lib.request(u, { method, headers, ca }, (res) => {
      for (const c of res.headers['set-cookie'] || []) {
        const [pair] = c.split(';');
        const eq = pair.indexOf('=');
        jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1));
      }
      let text = '';
      res.setEncoding('utf8').on('data', (d) => { text += d; }).on('end', () => ok({ status: res.statusCode, location: res.headers.location, text }));
    });
    req.on('error', fail);
    req.end(body ? new URLSearchParams(body).toString() : undefined);
  });
}

function fail(step, res) {
  throw new Error(`${step}: HTTP ${res.status} ${res.location || ''} ${res.text}`.trim());
}

async function main() {
  if (!opts.issuer || !opts.user) throw new Error('--issuer and --user are required');
  const issuer = opts.issuer.replace(/\/$/, '');
  const disco = await request('GET', `${issuer}/.well-known/openid-configuration`);
  if (disco.status !== 200) fail('discovery', disco);
  const { authorization_endpoint: authz, token_endpoint: tokenUrl } = JSON.parse(disco.text);

  const clientId = (opts.alg || '').toUpperCase() === 'ES256' ? 'inbox-tests-es256' : 'inbox-tests';
  const verifier = crypto.randomBytes(32).toString('base64url');
  const state = crypto.randomBytes(16).toString('base64url');
  const q = new URLSearchParams({
    client_id: clientId, response_type: 'code', redirect_uri: REDIRECT,
    scope: 'openid profile inbox', state, nonce: crypto.randomBytes(16).toString('base64url'),
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  });
  if (opts.resource) q.set('resource', opts.resource);
  const login = { login: opts.user, roles: opts.roles || '', name: opts.name || opts.user };
  if (opts.ttl) login.ttl = opts.ttl;

  // Follow the provider's redirects; each interaction page (login, then consent) gets the login
  // form, until it redirects to the client with a code.
  let res = await request('GET', `${authz}?${q}`);
  for (let hops = 0; ; hops++) {
    if (hops > 10 || ![302, 303].includes(res.status) || !res.location) fail('authorization', res);
    const next = new URL(res.location, issuer);
    if (next.href.startsWith(`${REDIRECT}?`)) {
      const p = next.searchParams;
      if (p.get('error')) throw new Error(`authorization: ${p.get('error')}: ${p.get('error_description')}`);
      if (p.get('state') !== state) throw new Error('authorization: state mismatch');
      const tok = await request('POST', tokenUrl, {
        grant_type: 'authorization_code', code: p.get('code'), redirect_uri: REDIRECT,
        client_id: clientId, code_verifier: verifier, ...(opts.resource ? { resource: opts.resource } : {}),
      });
      if (tok.status !== 200) fail('token', tok);
      const body = JSON.parse(tok.text);
      process.stdout.write(`${opts.json ? JSON.stringify(body) : body.access_token}\n`);
      return;
    }
    res = next.pathname.startsWith('/interaction/')
      ? await request('POST', next.href, login)
      : await request('GET', next.href);
  }
}

main().catch((err) => { console.error(`oidc-token: ${err.message}`); process.exit(1); });

#!/usr/bin/env node
// The production sign-in in a browser: the console (engine in production) signs a manager in
// through the OpenID Connect provider (authorization code + PKCE), works with the provider's
// access token, and goes on working after the token was renewed with the refresh token.
//
//   CONSOLE_URL  the console origin (gateway's web listener, production profile), required;
//                its /config.json must say {"login": "oidc", "issuer": IDP_URL, …}
//   IDP_URL      the provider's issuer (its login form at /interaction/<uid>), required
//   SCREENSHOTS  directory for console-oidc.png (default: ./test-results)
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//   TIMEOUT_MS   how long one wait may take (default 20000)
//
// The provider uses a test CA: the context ignores HTTPS errors. Exit code 0 when every step
// passed; 1 with the failing step and why; 2 on bad usage.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, StepError, check, passedSteps, run, step } from './harness.mjs';

const env = process.env;
const CONSOLE_URL = (env.CONSOLE_URL || '').replace(/\/+$/, '');
const IDP_URL = (env.IDP_URL || '').replace(/\/+$/, '');
const SCREENSHOTS = resolve(env.SCREENSHOTS || 'test-results');
const TIMEOUT = Number(env.TIMEOUT_MS || 20_000);
if (!CONSOLE_URL || !IDP_URL) {
  console.error('usage: CONSOLE_URL=https://console.example IDP_URL=https://idp.example [SCREENSHOTS=dir] node tests/oidc-flow.mjs');
  process.exit(2);
}


const manager = { user: `oidc-manager-${run}`, name: 'Olga' };

const cleanups = [];
const pageErrors = [];


/** The unverified claims of a JWT. */
function claims(token) {
  const part = (token || '').split('.')[1] || '';
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/** The gRPC status of a gRPC-Web answer: a header (trailers-only) or the body's trailer frame. */
async function grpcStatus(response) {
  const h = await response.allHeaders();
  if (h['grpc-status'] !== undefined) return { code: Number(h['grpc-status']), message: h['grpc-message'] || '' };
  const body = await response.body();
  for (let i = 0; i + 5 <= body.length; ) {
    const flag = body[i];
    const len = body.readUInt32BE(i + 1);
    const frame = body.subarray(i + 5, i + 5 + len);
    i += 5 + len;
    if (flag & 0x80) {
      const text = frame.toString('utf8');
      const code = /grpc-status:\s*(\d+)/i.exec(text);
      const message = /grpc-message:\s*([^\r\n]*)/i.exec(text);
      if (code) return { code: Number(code[1]), message: message ? decodeURIComponent(message[1]) : '' };
    }
  }
  return { code: -1, message: `no grpc-status (HTTP ${response.status()})` };
}

/** Clicks `button` and waits for the answer of `method`; returns its request's bearer token. */
async function callOk(page, method, button) {
  const answered = page.waitForResponse((r) => r.url().endsWith(`/inbox.v1.ManagerService/${method}`), { timeout: TIMEOUT });
  await button.click();
  const response = await answered;
  const status = await grpcStatus(response);
  check(status.code === 0, `${method} answered gRPC status ${status.code} ${status.message}`);
  const auth = (await response.request().allHeaders())['authorization'] || '';
  check(auth.startsWith('Bearer '), `${method} went without a bearer token`);
  return auth.slice('Bearer '.length);
}

async function main() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  console.log(`# run ${run}: console ${CONSOLE_URL}, issuer ${IDP_URL}, manager ${manager.user}`);

  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, '--ignore-certificate-errors'],
    timeout: 60_000,
  });
  cleanups.unshift(() => browser.close());
  const ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 860 }, ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => pageErrors.push(e.message));
  cleanups.unshift(() => page.screenshot({ path: join(SCREENSHOTS, 'console-oidc.png'), fullPage: true }).catch(() => {}));

  await step('the console origin serves /config.json for OpenID Connect with this issuer', async () => {
    const r = await ctx.request.get(`${CONSOLE_URL}/config.json`);
    check(r.ok(), `/config.json answered HTTP ${r.status()}`);
    const c = await r.json();
    check(c.login === 'oidc', `login is ${JSON.stringify(c.login)}, not "oidc"`);
    check(String(c.issuer).replace(/\/+$/, '') === IDP_URL, `issuer ${c.issuer} is not IDP_URL ${IDP_URL}`);
    check(typeof c.client_id === 'string' && c.client_id, 'no client_id');
    check(/\boffline_access\b/.test(c.scope || ''), `scope ${JSON.stringify(c.scope)} has no offline_access`);
    const d = await ctx.request.get(`${IDP_URL}/.well-known/openid-configuration`);
    check(d.ok(), `the issuer's discovery answered HTTP ${d.status()}`);
    const meta = await d.json();
    check((meta.code_challenge_methods_supported || ['S256']).includes('S256'), 'the provider offers no S256 PKCE');
  });

  await step('the console offers "Sign in" (no dev form) and it leads to the provider with PKCE', async () => {
    await page.goto(`${CONSOLE_URL}/`);
    const button = page.getByRole('button', { name: 'Sign in', exact: true });
    await button.waitFor();
    check((await page.getByLabel('User id').count()) === 0, 'the dev sign-in form is shown');
    const authorize = page.waitForRequest((r) => r.url().startsWith(IDP_URL) && new URL(r.url()).searchParams.has('code_challenge'));
    await button.click();
    const q = new URL((await authorize).url()).searchParams;
    check(q.get('response_type') === 'code', `response_type ${q.get('response_type')}`);
    check(q.get('code_challenge_method') === 'S256', `code_challenge_method ${q.get('code_challenge_method')}`);
    check(q.get('redirect_uri') === `${new URL(CONSOLE_URL).origin}/`, `redirect_uri ${q.get('redirect_uri')}`);
    await page.waitForURL((u) => u.href.startsWith(IDP_URL) && u.pathname.includes('/interaction/'));
  });

  await step("the manager signs in on the provider's form and lands on the console as Olga", async () => {
    await page.locator('input[name="login"]').fill(manager.user);
    await page.locator('input[name="roles"]').fill('manager');
    await page.locator('input[name="name"]').fill(manager.name);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.origin === new URL(CONSOLE_URL).origin);
    await page.getByText('Olga (Manager)').waitFor();
    const u = new URL(page.url());
    check(u.pathname === '/' && !u.search, `the address still carries the answer: ${page.url()}`);
    const token = await page.evaluate(() => window.__inboxAuth?.token() ?? '');
    const c = claims(token);
    check(c.sub === manager.user, `the access token's sub is ${c.sub}`);
    check((c.realm_access?.roles || []).includes('manager'), `the access token's roles: ${JSON.stringify(c.realm_access)}`);
  });

  let firstToken = '';
  await step('Ready succeeds with the access token and the stream is live', async () => {
    const ready = page.getByRole('button', { name: 'Ready', exact: true });
    await ready.waitFor();
    firstToken = await callOk(page, 'SetReady', ready);
    check(firstToken === (await page.evaluate(() => window.__inboxAuth.token())), 'SetReady carried another token than the signed-in one');
    await page.locator('[data-link="live"]').waitFor();
    check((await page.getByRole('alert').count()) === 0, `an alert is shown: ${await page.getByRole('alert').allTextContents()}`);
  });

  await step('a forced renewal (refresh token) gives a new token, and the next call uses it', async () => {
    const renewed = await page.evaluate(() => window.__inboxAuth.renew());
    check(renewed && renewed !== firstToken, 'signinSilent gave no new access token');
    check(claims(renewed).sub === manager.user, 'the renewed token names someone else');
    const used = await callOk(page, 'SetNotReady', page.getByRole('button', { name: 'Not ready', exact: true }));
    check(used === renewed, 'SetNotReady did not carry the renewed token');
    const again = await callOk(page, 'SetReady', page.getByRole('button', { name: 'Ready', exact: true }));
    check(again === renewed, 'SetReady did not carry the renewed token');
    await page.getByText('Olga (Manager)').waitFor();
    await page.locator('[data-link="live"]').waitFor();
    check(new URL(page.url()).origin === new URL(CONSOLE_URL).origin, 'the renewal left the console');
  });

  await step('the console shows no page error', async () => {
    check(pageErrors.length === 0, pageErrors.join('; '));
    await page.screenshot({ path: join(SCREENSHOTS, 'console-oidc.png'), fullPage: true });
  });
}

let failure = null;
try {
  await main();
} catch (e) {
  failure = e;
}
for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
if (failure) {
  console.error(`FAIL: ${failure instanceof StepError ? failure.message : failure.stack || failure}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join('; ')}`);
  console.error(`screenshots (as far as reached): ${SCREENSHOTS}`);
}
console.log(`flow: ${passedSteps()} passed, ${failure ? 1 : 0} failed`);
process.exit(failure ? 1 : 0);

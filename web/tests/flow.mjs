#!/usr/bin/env node
// The browser flow: a client on a page of another origin that embeds the widget, and a manager
// on the console, in two browser contexts of one Chromium.
//
//   CONSOLE_URL  the gateway's web listener (console + gRPC-Web + /dev/token), required
//   WIDGET_URL   communication's client HTTP listener (API, WebSocket, /widget/), required
//   EMBED_URL    a page of another origin embedding the widget; it gets ?token=&api=&lang=
//                (default: this script serves one on 127.0.0.1:EMBED_PORT, default any free port)
//   SCREENSHOTS  directory for console.png and widget.png (default: ./test-results)
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//   TIMEOUT_MS   how long one live wait may take (default 20000)
//
// Exit code 0 when every step passed; 1 with the failing step and why; 2 on bad usage.
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
const CONSOLE_URL = (env.CONSOLE_URL || '').replace(/\/+$/, '');
const WIDGET_URL = (env.WIDGET_URL || '').replace(/\/+$/, '');
const SCREENSHOTS = resolve(env.SCREENSHOTS || 'test-results');
const TIMEOUT = Number(env.TIMEOUT_MS || 20_000);
if (!CONSOLE_URL || !WIDGET_URL) {
  console.error('usage: CONSOLE_URL=http://127.0.0.1:18482 WIDGET_URL=http://127.0.0.1:18480 [EMBED_URL=…] [SCREENSHOTS=dir] node tests/flow.mjs');
  process.exit(2);
}

// Flags from shared/stack.md: without the networking ones Chromium floods the closed network.
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const client = { user: `flow-client-${run}`, name: `Ivan ${run}` };
const manager = { user: `flow-manager-${run}`, name: `Alice ${run}` };
const CARD = 'my card is 4111 1111 1111 1111';

let passed = 0;
const cleanups = [];
const pageErrors = [];

class StepError extends Error {}

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n').slice(0, 6).join('\n  ') : String(e);
    throw new StepError(`${name}: ${why}`);
  }
  passed++;
  console.log(`ok ${passed} - ${name} (${Date.now() - started} ms)`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function devToken(user, role, name) {
  let r;
  try {
    r = await fetch(`${CONSOLE_URL}/dev/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, role, name }),
    });
  } catch (e) {
    throw new Error(`POST ${CONSOLE_URL}/dev/token failed: ${e.cause?.message || e.message}`);
  }
  check(r.ok, `POST ${CONSOLE_URL}/dev/token answered HTTP ${r.status} (a dev deployment is needed)`);
  const { token } = await r.json();
  check(typeof token === 'string' && token, '/dev/token gave no token');
  return token;
}

/** A page of this script's own origin that embeds the widget from WIDGET_URL. */
function embedServer() {
  const page = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Embedding page</title></head>
<body style="margin:0;padding:1rem;background:#e9ecef;font:15px system-ui">
<p>A bank page of another origin embedding the widget.</p>
<div id="chat" style="width:26rem;height:34rem"></div>
<script src="${WIDGET_URL}/widget/widget.js"></script>
<script>
  const q = new URLSearchParams(location.search);
  InboxWidget.mount(document.getElementById('chat'), { apiUrl: q.get('api'), token: q.get('token'), lang: q.get('lang') || undefined });
</script></body></html>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(page);
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(Number(env.EMBED_PORT || 0), '127.0.0.1', () => {
      cleanups.push(() => new Promise((done) => server.close(done)));
      ok(`http://127.0.0.1:${server.address().port}/`);
    });
  });
}

async function main() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const embedBase = env.EMBED_URL || (await embedServer());
  check(
    new URL(embedBase).origin !== new URL(WIDGET_URL).origin,
    `EMBED_URL (${embedBase}) must be of another origin than WIDGET_URL`,
  );
  console.log(`# run ${run}: console ${CONSOLE_URL}, widget ${WIDGET_URL}, embedding page ${embedBase}`);

  // Playwright gives every launch a fresh temporary profile (its own --user-data-dir).
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  cleanups.unshift(() => browser.close());

  const clientCtx = await browser.newContext({ locale: 'en-US', viewport: { width: 720, height: 800 } });
  const managerCtx = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 860 } });
  const widget = await clientCtx.newPage();
  const consolePage = await managerCtx.newPage();
  for (const [who, p] of [['widget', widget], ['console', consolePage]]) {
    p.setDefaultTimeout(TIMEOUT);
    p.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  }
  let consoleNavigations = 0;
  consolePage.on('framenavigated', (f) => {
    if (f === consolePage.mainFrame()) consoleNavigations++;
  });
  const shots = async () => {
    await consolePage.screenshot({ path: join(SCREENSHOTS, 'console.png'), fullPage: true }).catch(() => {});
    await widget.screenshot({ path: join(SCREENSHOTS, 'widget.png'), fullPage: true }).catch(() => {});
  };
  cleanups.unshift(shots);

  // Locators (the widget lives in an open shadow root: Playwright's CSS locators pierce it).
  const bubble = (kind, text) => widget.locator(`li[data-kind="${kind}"]`, { hasText: text });
  const log = () => consolePage.getByRole('log');
  const inConsole = (text) => log().locator('li', { hasText: text });
  const noCard = async (where) => {
    const html = await consolePage.content();
    check(!html.includes('4111'), `the console shows card digits (${where})`);
  };
  const clientSend = async (text) => {
    await widget.getByLabel('Your message').fill(text);
    await widget.getByRole('button', { name: 'Send' }).click();
  };
  const managerReply = async (text, how = 'click') => {
    await consolePage.getByLabel('Reply to the client').fill(text);
    const send = consolePage.getByRole('button', { name: 'Send', exact: true });
    if (how === 'dblclick') await send.dblclick();
    else await send.click();
  };
  const sentStates = 'li[data-kind="client"]:is([data-state="sent"],[data-state="pending"],[data-state="delivered"])';

  const clientToken = await devToken(client.user, 'client', client.name);
  const embedUrl = new URL(embedBase);
  embedUrl.searchParams.set('token', clientToken);
  embedUrl.searchParams.set('api', WIDGET_URL);
  embedUrl.searchParams.set('lang', 'en');

  await step('the client opens the embedding page and the widget connects', async () => {
    await widget.goto(embedUrl.toString());
    await widget.locator('[data-link="live"]').waitFor({ timeout: TIMEOUT });
  });

  await step('the client writes "Hello, my transfer is stuck"', async () => {
    await clientSend('Hello, my transfer is stuck');
    await widget.locator(sentStates, { hasText: 'Hello, my transfer is stuck' }).waitFor();
  });

  await step('the manager signs in on the console (dev login)', async () => {
    await consolePage.goto(`${CONSOLE_URL}/`);
    await consolePage.getByLabel('User id').fill(manager.user);
    await consolePage.getByLabel('Display name').fill(manager.name);
    await consolePage.getByLabel('Role').selectOption('manager');
    await consolePage.getByRole('button', { name: 'Sign in' }).click();
    // The stream shows "live" once the gateway answers its headers (or its first event).
    await consolePage.getByRole('button', { name: 'Ready', exact: true }).waitFor();
  });

  const ticket = consolePage.getByRole('button', { name: `Open the conversation with ${client.name}` });
  await step('the manager presses Ready and gets the ticket live', async () => {
    // Tickets left waiting by other runs go first: take up to the capacity (3) until ours comes.
    for (let attempt = 1; ; attempt++) {
      await consolePage.getByRole('button', { name: 'Ready', exact: true }).click();
      await consolePage.getByText(/Free slots: \d+/).waitFor();
      try {
        await ticket.waitFor({ timeout: attempt < 3 ? TIMEOUT / 2 : TIMEOUT });
        return;
      } catch (e) {
        if (attempt >= 3) throw new Error(`no ticket of ${client.name} reached the manager after ${attempt} Ready presses`);
      }
    }
  });

  await step('the manager opens the ticket and sees the message', async () => {
    await consolePage.locator('[data-link="live"]').waitFor();
    await ticket.click();
    await inConsole('Hello, my transfer is stuck').waitFor();
    await noCard('conversation opened');
  });

  await step('the manager replies "Let me check"; the client sees it live', async () => {
    await managerReply('Let me check');
    await inConsole('Let me check').waitFor();
    await bubble('manager', 'Let me check').waitFor();
  });

  await step('a card number is blocked: the client sees the warning in its place', async () => {
    await clientSend(CARD);
    await widget.locator('li[data-kind="warning"]').first().waitFor();
    await widget.locator('li[data-kind="client"]', { hasText: '4111' }).waitFor({ state: 'detached' });
  });

  await step('the manager sees the next message ("thanks") and never the card', async () => {
    await clientSend('thanks');
    await inConsole('thanks').waitFor();
    await noCard('after "thanks"');
  });

  const twice = `One reply, double-clicked ${run}`;
  await step('a double-clicked reply is sent once', async () => {
    await managerReply(twice, 'dblclick');
    await bubble('manager', twice).waitFor();
    // Anything sent twice would come before the next reply: wait for that one, then count.
    await managerReply(`After the double click ${run}`);
    await bubble('manager', `After the double click ${run}`).waitFor();
    const onClient = await bubble('manager', twice).count();
    const onConsole = await inConsole(twice).count();
    check(onClient === 1 && onConsole === 1, `the reply shows ${onClient}× to the client and ${onConsole}× to the manager`);
  });

  await step('a message written offline is sent once when back online', async () => {
    await clientCtx.setOffline(true);
    await clientSend('sent while offline');
    await widget.locator('li[data-kind="client"][data-state="queued"]', { hasText: 'sent while offline' }).waitFor();
    await clientCtx.setOffline(false);
    await widget.locator(sentStates, { hasText: 'sent while offline' }).waitFor();
    await inConsole('sent while offline').waitFor();
    // A later message on both sides: a duplicate would have come before it.
    await clientSend(`back online ${run}`);
    await inConsole(`back online ${run}`).waitFor();
    await widget.locator(sentStates, { hasText: `back online ${run}` }).waitFor();
    const onClient = await widget.locator('li[data-kind="client"]', { hasText: 'sent while offline' }).count();
    const onConsole = await inConsole('sent while offline').count();
    check(onClient === 1 && onConsole === 1, `"sent while offline" shows ${onClient}× to the client and ${onConsole}× to the manager`);
  });

  await step('the console was never reloaded, never showed card digits, and no page threw', async () => {
    await noCard('at the end');
    check(consoleNavigations === 1, `the console navigated ${consoleNavigations} times`);
    check(pageErrors.length === 0, `uncaught errors: ${pageErrors.join('; ')}`);
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
console.log(`flow: ${passed} passed, ${failure ? 1 : 0} failed`);
process.exit(failure ? 1 : 0);

// Telegram Bot API emulator for tests and `make run`: npm telegram-test-api behind a front app
// that closes the gaps teloxide meets (see ../../shared/stack.md) and adds test controls.
//
//   NODE_PATH=$INBOX_NODE_MODULES node scripts/telegram-emulator.js [port]   (0 = any free port)
//
// Prints `telegram emulator listening on <port>` once ready. Users talk with
// POST /sendMessage {botToken, from, chat, date, text}; the bot's messages to a chat are read with
// POST /getUpdates {token, chatId}. Controls for tests:
//   POST /control/block {chatId}           sendMessage to that chat answers 403 (bot blocked)
//   POST /control/rate-limit {chatId, n}   the next n sendMessage to that chat answer 429 retry_after 1
//   POST /control/redeliver {token}        every user update is delivered again (lost offset)
//   POST /control/file {token, name, mime, base64}  a user's file: answers the file object to put
//                                          in a message's `document` (getFile and /file/ serve it)
//   POST /control/sent-files {token, chatId}  what the bot sent with sendDocument/sendPhoto
// Like Telegram (and unlike telegram-test-api alone), getUpdates honours `offset`: an update is
// returned again and again until a later call's offset confirms it, so a bot that crashes before
// it stored its offset gets the update again. setWebhook/getWebhookInfo keep the webhook URL;
// setMyCommands/getMyCommands keep the bot's command menu (checked as Telegram checks it).
'use strict';
const http = require('http');
const express = require('express');
const api = require('telegram-test-api');
const TelegramServer = api.TelegramServer || api.default || api;

const port = Number(process.argv[2] || 0);
const server = new TelegramServer({ port: port || 1, host: '127.0.0.1', storeTimeout: 3600 });
const blocked = new Set();
const rateLimited = new Map();

const front = express();
// Files, as Telegram keeps them: a test uploads a user's file (POST /control/file {token, name,
// mime, base64}) and gets the file object to put in a user message's `document` or `photo`; the
// bot fetches it with getFile and GET /file/bot<token>/<file_path>. What the bot sends with
// sendDocument/sendPhoto (multipart) is kept as a bot message with its file and caption, and its
// bytes are read back with POST /control/sent-files {token, chatId}.
const files = new Map();      // file_id -> {token, name, mime, data}
const sentFiles = [];         // {token, chatId, method, name, mime, caption, base64}
let fileSeq = 0;
const fileObject = (id, f) => ({ file_id: id, file_unique_id: `u${id}`, file_size: f.data.length });
front.post('/control/file', express.json({ limit: '64mb' }), (req, res) => {
  const b = req.body || {};
  const data = Buffer.from(String(b.base64 || ''), 'base64');
  const id = `f${++fileSeq}`;
  files.set(id, { token: String(b.token), name: b.name, mime: b.mime, data });
  res.json({ ok: true, result: fileObject(id, { data }) });
});
front.post('/control/sent-files', express.json(), (req, res) => res.json({ ok: true, result: sentFiles.filter(
  (f) => f.token === req.body.token && String(f.chatId) === String(req.body.chatId)) }));
front.all('/bot:token/getFile', express.json(), express.urlencoded({ extended: true }), (req, res) => {
  const id = String({ ...req.query, ...(req.body || {}) }.file_id || '');
  const f = files.get(id);
  if (!f || f.token !== req.params.token) return apiError(res, 400, 'Bad Request: invalid file_id');
  res.json({ ok: true, result: { ...fileObject(id, f), file_path: `documents/${id}` } });
});
// teloxide sends the file path as one segment (`documents%2Ff1`).
front.get(/^\/file\/bot([^/]+)\/(.+)$/, (req, res) => {
  const f = files.get(decodeURIComponent(req.params[1]).replace(/^documents\//, ''));
  if (!f || f.token !== req.params[0]) return res.status(404).end();
  res.type(f.mime || 'application/octet-stream').send(f.data);
});
// A multipart body's parts ({name, filename, type, data}), binary-safe: no multipart parser is
// installed beside telegram-test-api, and this is all a test bot's uploads need.
const multipart = (body, contentType) => {
  const m = /boundary="?([^";]+)"?/.exec(contentType || '');
  if (!m) return [];
  const sep = Buffer.from(`--${m[1]}`);
  const parts = [];
  let at = body.indexOf(sep);
  while (at >= 0) {
    const start = at + sep.length;
    const next = body.indexOf(sep, start);
    if (next < 0) break;
    const chunk = body.subarray(start + 2, next - 2); // after CRLF, before CRLF
    const split = chunk.indexOf('\r\n\r\n');
    if (split >= 0) {
      const head = chunk.subarray(0, split).toString('utf8');
      const name = (/name="([^"]*)"/.exec(head) || [])[1];
      // `filename="a.pdf"`, or RFC 5987's `filename*=utf-8''a.pdf`.
      const fn = /filename="([^"]*)"/.exec(head) || /filename\*=(?:[\w-]*'[\w-]*')?([^;\r\n]+)/i.exec(head);
      const filename = fn ? decodeURIComponent(fn[1]) : undefined;
      const type = (/content-type:\s*([^\r\n]+)/i.exec(head) || [])[1];
      parts.push({ name, filename, type, data: chunk.subarray(split + 4) });
    }
    at = next;
  }
  return parts;
};
for (const method of ['sendDocument', 'sendPhoto']) {
  front.post(`/bot:token/${method}`, express.raw({ type: 'multipart/form-data', limit: '64mb' }), (req, res) => {
    const parts = multipart(req.body, req.headers['content-type']);
    const field = (n) => { const p = parts.find((x) => x.name === n); return p ? p.data.toString('utf8') : undefined; };
    const chatId = field('chat_id');
    if (blocked.has(String(chatId))) return apiError(res, 403, 'Forbidden: bot was blocked by the user');
    // The file is its field's part, or (teloxide) the part that field names as `attach://<name>`.
    const key = method === 'sendPhoto' ? 'photo' : 'document';
    const ref = /^attach:\/\/(.+)$/.exec(field(key) || '');
    const filePart = parts.find((x) => x.name === (ref ? ref[1] : key));
    if (!chatId || !filePart) return apiError(res, 400, 'Bad Request: chat_id and a file are required');
    const id = `f${++fileSeq}`;
    files.set(id, { token: req.params.token, name: filePart.filename, mime: filePart.type, data: filePart.data });
    const caption = field('caption');
    sentFiles.push({ token: req.params.token, chatId, method, name: filePart.filename, mime: filePart.type,
      caption, base64: filePart.data.toString('base64') });
    const fileObj = fileObject(id, { data: filePart.data });
    const message = { chat_id: chatId, caption,
      ...(method === 'sendPhoto' ? { photo: [{ ...fileObj, width: 1, height: 1 }] }
        : { document: { ...fileObj, file_name: filePart.filename, mime_type: filePart.type } }) };
    const result = server.addBotMessage(message, req.params.token);
    res.json({ ok: true, result });
  });
}
front.use(express.json());
front.use(express.urlencoded({ extended: true }));

const apiError = (res, code, description, parameters) =>
  res.status(code).json({ ok: false, error_code: code, description, parameters });

front.post('/control/block', (req, res) => { blocked.add(String(req.body.chatId)); res.json({ ok: true }); });
front.post('/control/rate-limit', (req, res) => {
  rateLimited.set(String(req.body.chatId), Number(req.body.n || 1));
  res.json({ ok: true });
});
front.post('/control/redeliver', (req, res) => {
  let n = 0;
  for (const u of server.storage.userMessages) {
    if (u.botToken === req.body.token) { u.isRead = false; confirmed.delete(u.updateId); n++; }
  }
  res.json({ ok: true, result: n });
});

// Telegram's own error shape for the chats the test configured.
front.all('/bot:token/sendMessage', (req, res, next) => {
  const chat = String((req.body || {}).chat_id);
  if (blocked.has(chat)) return apiError(res, 403, 'Forbidden: bot was blocked by the user');
  const left = rateLimited.get(chat) || 0;
  if (left > 0) {
    rateLimited.set(chat, left - 1);
    return apiError(res, 429, 'Too Many Requests: retry after 1', { retry_after: 1 });
  }
  next();
});
// getMe without the fields teloxide requires; getWebhookInfo is missing.
front.all('/bot:token/getMe', (req, res) => res.json({ ok: true, result: {
  id: Number(req.params.token.split(':')[0]) || 1, is_bot: true, first_name: 'Bot', username: 'test_bot',
  can_join_groups: false, can_read_all_group_messages: false, supports_inline_queries: false,
  has_main_web_app: false,
} }));
const webhooks = new Map();   // token -> {url, secret_token}
const confirmed = new Set();  // updateIds a bot confirmed with a later offset
front.all('/bot:token/getUpdates', (req, res) => {
  const token = req.params.token;
  const offset = Number({ ...req.query, ...(req.body || {}) }.offset || 0);
  const mine = server.storage.userMessages.filter((u) => u.botToken === token);
  for (const u of mine) {
    if (offset > 0 && u.updateId < offset) { confirmed.add(u.updateId); u.isRead = true; }
  }
  const result = mine.filter((u) => !confirmed.has(u.updateId))
    .sort((a, b) => a.updateId - b.updateId)
    .map((u) => { u.isRead = true; return TelegramServer.formatUpdate(u); });
  res.json({ ok: true, result });
});
// teloxide sends setWebhook as multipart/form-data (it may carry a certificate): read the text
// fields by hand, as no multipart parser is installed.
const formFields = (raw) => {
  const fields = {};
  const re = /name="([^"]+)"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r]*)\r\n/g;
  for (let m = re.exec(raw); m; m = re.exec(raw)) fields[m[1]] = m[2];
  return fields;
};
front.all('/bot:token/setWebhook', (req, res) => {
  const save = (b) => {
    webhooks.set(req.params.token, { url: String(b.url || ''), secret_token: b.secret_token });
    res.json({ ok: true, result: true });
  };
  if (!String(req.headers['content-type'] || '').startsWith('multipart/')) {
    return save({ ...req.query, ...(req.body || {}) });
  }
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { raw += c; });
  req.on('end', () => save(formFields(raw)));
});
front.all('/bot:token/getWebhookInfo', (req, res) => res.json({ ok: true, result: {
  url: (webhooks.get(req.params.token) || {}).url || '', has_custom_certificate: false,
  pending_update_count: 0,
} }));
front.all('/bot:token/deleteWebhook', (req, res) => {
  webhooks.delete(req.params.token);
  res.json({ ok: true, result: true });
});
const menus = new Map();      // token -> [{command, description}]
front.all('/bot:token/setMyCommands', (req, res) => {
  let commands = { ...req.query, ...(req.body || {}) }.commands;
  if (typeof commands === 'string') {
    try { commands = JSON.parse(commands); } catch { commands = null; }
  }
  if (!Array.isArray(commands)) return apiError(res, 400, "Bad Request: can't parse commands JSON object");
  for (const c of commands) {
    if (!/^[a-z0-9_]{1,32}$/.test(String((c || {}).command))) return apiError(res, 400, 'Bad Request: BOT_COMMAND_INVALID');
    const d = String((c || {}).description || '');
    if (d.length < 1 || d.length > 256) return apiError(res, 400, 'Bad Request: command description is empty or too long');
  }
  menus.set(req.params.token, commands.map((c) => ({ command: c.command, description: c.description })));
  res.json({ ok: true, result: true });
});
front.all('/bot:token/getMyCommands', (req, res) => res.json({ ok: true, result: menus.get(req.params.token) || [] }));
front.use(server.webServer);

const listener = http.createServer(front).listen(port, '127.0.0.1', () => {
  server.started = true;
  console.log(`telegram emulator listening on ${listener.address().port}`);
});
const stop = () => listener.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

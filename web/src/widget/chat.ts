// The client's chat state: history pages, the live WebSocket, and the outbox that sends each
// message with one client_message_id however often it has to retry. Plain TypeScript (no UI).
import { Backoff, pause } from '../shared/backoff';
import { jwtClaims } from '../shared/jwt';
import { uuid } from '../shared/uuid';
import { BlobUrls, filesFromJson, isImage, sameFiles, type FileRef, type PendingFile } from '../shared/files';
import { ChatApi, HttpError, type BotCommand, type TokenSource, type WireAttachment, type WireMessage } from './api';

export type ItemKind = 'client' | 'manager' | 'system' | 'warning' | 'rating';
export type ItemState = 'queued' | 'sending' | 'sent' | 'pending' | 'delivered' | 'failed';

export interface Item {
  /** The server's message id, or `local:<client_message_id>` until the server names it. */
  key: string;
  kind: ItemKind;
  body: string;
  at: number;
  state?: ItemState;
  error?: string;
  managerName?: string;
  /** Of a `rating` item (a thank-you whose question this page never saw): the rating given. */
  rating?: number;
  /** The files it carries, in order. */
  files?: FileRef[];
}

/** The satisfaction question after a close (`satisfaction_requested`), kept in localStorage so
 * a reload still offers the buttons. The answer is an ordinary message, the digit. */
export interface Survey {
  /** The question's message id (its item's key). */
  mid: string;
  ticketId: string;
  at: number;
  /** From `satisfaction_recorded`: the rating the engine took. */
  rating?: number;
  /** The digit sent, and the client_message_id it went with. */
  chosen?: number;
  cmid?: string;
}

export type SurveyState = 'open' | 'sending' | 'done' | 'expired';

/** The engine takes an answer within 24 h of the close. */
export const RATING_WINDOW_MS = 24 * 3600_000;
const MAX_SURVEYS_KEPT = 20;

/** A message not yet answered 2xx by `POST /v1/messages`; kept in sessionStorage (this tab only,
 * gone when it closes: the text may be sensitive) so a reload still sends it, with the same id. */
interface Outgoing {
  cmid: string;
  body: string;
  at: number;
  failed?: string;
  /** Uploaded already (`POST /v1/attachments`): every retry sends the same ids. */
  files?: FileRef[];
}

export type Link = 'connecting' | 'live' | 'reconnecting';

const MAX_WARNINGS_KEPT = 20;

/** The ephemeral "is typing" frame: event_id 0, never stored, never resumed from. */
const TYPING = 'typing';
/** How long "… is typing" stays after the manager's last signal (they come every 2 s or so). */
export const TYPING_SHOWN_MS = 5_000;
/** The least time between two `POST /v1/typing`: the engine keeps one per 2 s per sender, so a
 * little more than that keeps every one counted. */
const TYPING_EVERY_MS = 2_100;
/** runSocket's answer when it gave the socket up because the browser went offline. */
const CLOSED_OFFLINE = -1;

export class ChatStore {
  items: Item[] = [];
  link: Link = 'connecting';
  online = navigator.onLine;
  olderCursor: string | null = null;
  hasOlder = true;
  loadingOlder = false;
  loaded = false;
  sessionExpired = false;
  /** Bumped when older messages were put on top (the view keeps its scroll position). */
  prepended = 0;
  /** Until when the manager counts as typing (their last `typing` frame plus TYPING_SHOWN_MS). */
  managerTypingUntil = 0;
  /** The manager of the chat as the last `manager_assigned` or reply named them (kept, so a
   * reload still names who types). */
  managerName = '';
  /** The files chosen for the next message (uploading, uploaded or refused). */
  attached: PendingFile[] = [];
  /** Object URLs of the chat's files (fetched with the token), revoked when the widget goes. */
  readonly urls: BlobUrls;
  /** The bank's bot commands, offered as the client types `/` (empty until read, or if none). */
  commands: BotCommand[] = [];

  private readonly byKey = new Map<string, Item>();
  /** Messages blocked or withdrawn: never shown again, whatever arrives late. */
  private readonly gone = new Set<string>();
  private outbox: Outgoing[];
  private cursor: number;
  private warnings: string[];
  private surveys: Survey[] = [];
  private readonly api: ChatApi;
  /** Per API origin and client (`sub` of the token); null until the token is known. */
  private storeKey: string | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly abort = new AbortController();
  private socket: WebSocket | null = null;
  private readonly sendWake = new EventTarget();
  private sendingCmid: string | null = null;
  private lastMarked: string | null = null;
  private markTimer: ReturnType<typeof setTimeout> | undefined;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  private lastTypingSent = 0;
  /** A keystroke inside the throttle window is sent when the window ends (trailing edge), so
   * typing that starts right after an earlier signal is still shown. */
  private typingLater: ReturnType<typeof setTimeout> | undefined;
  /** The uploads under way, by chip: removing a chip cancels its upload. */
  private readonly uploads = new Map<string, AbortController>();

  constructor(apiUrl: string, private readonly tokenSource: TokenSource) {
    this.api = new ChatApi(apiUrl, tokenSource);
    this.urls = new BlobUrls((id) => this.api.download(id));
    this.outbox = [];
    this.cursor = 0;
    this.warnings = [];
  }

  /** Once the token is known: what this client's earlier visits left (outbox, cursor, warnings). */
  private async restore(): Promise<void> {
    const sub = jwtClaims(await this.api.currentToken()).sub || 'anon';
    this.storeKey = `inbox.widget.${this.api.baseUrl}.${sub}`;
    const stored = this.read<Outgoing[]>(sessionStorage, 'outbox', []);
    const written = new Set(this.outbox.map((o) => o.cmid));
    this.outbox = [...stored.filter((o) => !written.has(o.cmid)), ...this.outbox];
    for (const o of stored) this.put(localItem(o));
    this.cursor = Math.max(this.cursor, this.read(localStorage, 'cursor', 0));
    this.warnings = [...new Set([...this.read<string[]>(localStorage, 'warnings', []), ...this.warnings])];
    const seen = new Set(this.surveys.map((x) => x.mid));
    this.surveys = [...this.read<Survey[]>(localStorage, 'surveys', []).filter((x) => !seen.has(x.mid)), ...this.surveys];
    this.managerName ||= this.read(localStorage, 'manager', '');
    this.write('outbox', this.outbox);
    this.sendWake.dispatchEvent(new Event('wake'));
  }

  private read<T>(where: Storage, name: string, fallback: T): T {
    try {
      const v = this.storeKey && where.getItem(`${this.storeKey}.${name}`);
      return v ? (JSON.parse(v) as T) : fallback;
    } catch {
      return fallback;
    }
  }

  private write(name: 'outbox' | 'cursor' | 'warnings' | 'surveys' | 'manager', v: unknown): void {
    if (!this.storeKey) return;
    try {
      (name === 'outbox' ? sessionStorage : localStorage).setItem(`${this.storeKey}.${name}`, JSON.stringify(v));
    } catch {
      // storage full or disabled: the chat still works, a reload just forgets
    }
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  start(): void {
    window.addEventListener('online', this.onNetwork);
    window.addEventListener('offline', this.onNetwork);
    document.addEventListener('visibilitychange', this.onVisible);
    void this.boot();
    void this.sendLoop();
  }

  stop(): void {
    this.abort.abort();
    this.socket?.close(1000);
    window.removeEventListener('online', this.onNetwork);
    window.removeEventListener('offline', this.onNetwork);
    document.removeEventListener('visibilitychange', this.onVisible);
    clearTimeout(this.markTimer);
    clearTimeout(this.typingTimer);
    for (const c of this.uploads.values()) c.abort();
    this.uploads.clear();
    this.urls.revokeAll();
  }

  private readonly onNetwork = () => {
    this.online = navigator.onLine;
    if (this.online) this.sendWake.dispatchEvent(new Event('wake'));
    this.emit();
  };

  private readonly onVisible = () => this.scheduleMarkRead();

  // ---- Items ----

  private put(item: Item): void {
    const old = this.byKey.get(item.key);
    const merged = old ? { ...old, ...item } : item;
    // Never step a message's state back (a replayed message_accepted after `delivered`).
    if (old?.state === 'delivered' && item.state && item.state !== 'delivered') merged.state = 'delivered';
    this.byKey.set(item.key, merged);
    this.resort();
  }

  private drop(key: string): Item | undefined {
    const old = this.byKey.get(key);
    if (old) {
      this.byKey.delete(key);
      this.resort();
    }
    return old;
  }

  /** A message gone for good (blocked, withdrawn): its files' bytes leave the page too. */
  private forget(item: Item | undefined): void {
    for (const f of item?.files ?? []) this.urls.revoke(f.id);
  }

  private resort(): void {
    this.items = [...this.byKey.values()].sort((a, b) => a.at - b.at || (a.key < b.key ? -1 : 1));
  }

  private fromWire(m: WireMessage): Item {
    const kind: ItemKind =
      m.author === 'client' ? 'client' : m.author === 'manager' ? 'manager' : this.warnings.includes(m.body) ? 'warning' : 'system';
    const state: ItemState | undefined = m.author === 'client' ? (m.status === 'delivered' ? 'delivered' : 'pending') : undefined;
    const files = filesFromJson(m.attachments);
    return { key: m.id, kind, body: m.body, at: Date.parse(m.created_at) || Date.now(), state, files };
  }

  // ---- History ----

  private async boot(): Promise<void> {
    const backoff = new Backoff();
    while (!this.abort.signal.aborted) {
      try {
        if (!this.storeKey) await this.restore();
        const page = await this.api.history(null);
        for (const m of page.messages) this.put(this.fromWire(m));
        this.olderCursor = page.next_before;
        this.hasOlder = !!page.next_before;
        this.loaded = true;
        this.emit();
        this.scheduleMarkRead();
        void this.socketLoop();
        void this.loadCommands();
        return;
      } catch (e) {
        if (this.expired(e)) return;
        this.link = 'reconnecting';
        this.emit();
        await pause(backoff.next(), this.abort.signal);
      }
    }
  }

  /** The bot's commands, once: hints only, so a failure leaves none offered and the chat as it is. */
  private async loadCommands(): Promise<void> {
    try {
      this.commands = (await this.api.commands()).commands;
      this.emit();
    } catch {
      // no hints this visit
    }
  }

  /** The commands `text` may be the start of: while it is `/` and a name (no space yet). */
  commandHints(text: string): BotCommand[] {
    const m = /^\/([a-z0-9_]*)$/i.exec(text);
    if (!m) return [];
    const q = m[1].toLowerCase();
    return this.commands.filter((c) => c.name.startsWith(q));
  }

  async loadOlder(): Promise<void> {
    if (this.loadingOlder || !this.hasOlder || !this.olderCursor) return;
    this.loadingOlder = true;
    this.emit();
    try {
      const page = await this.api.history(this.olderCursor);
      for (const m of page.messages) this.put(this.fromWire(m));
      this.olderCursor = page.next_before;
      this.hasOlder = !!page.next_before;
      this.prepended++;
    } catch (e) {
      this.expired(e);
    } finally {
      this.loadingOlder = false;
      this.emit();
    }
  }

  // ---- Live events ----

  private async socketLoop(): Promise<void> {
    const backoff = new Backoff(500, 15_000);
    const signal = this.abort.signal;
    while (!signal.aborted && !this.sessionExpired) {
      const code = await this.runSocket(() => backoff.reset());
      if (signal.aborted) return;
      if (code === 4001) {
        // The token expired: a token function gives a fresh one, a fixed token cannot.
        if (typeof this.tokenSource === 'function') {
          await this.api.currentToken(true).catch(() => undefined);
        } else {
          this.sessionExpired = true;
          this.emit();
          return;
        }
      } else if (code === 1006 || code === 1008) {
        // Refused before it opened, perhaps for the token: ask the API, which says why.
        try {
          await this.api.readState();
        } catch (e) {
          if (this.expired(e)) return;
        }
      }
      this.link = 'reconnecting';
      this.emit();
      await pause(backoff.next(), signal);
    }
  }

  /** One WebSocket session; resolves with its close code. */
  private async runSocket(opened: () => void): Promise<number> {
    let url: string;
    try {
      url = await this.api.socketUrl(this.cursor);
    } catch {
      return 1006;
    }
    return new Promise((resolve) => {
      const ws = new WebSocket(url);
      this.socket = ws;
      let done = false;
      const finish = (code: number) => {
        if (done) return;
        done = true;
        window.removeEventListener('offline', cut);
        if (this.socket === ws) this.socket = null;
        resolve(code);
      };
      // Offline, the socket is given up at once (one on a dead network may stall unnoticed) and
      // reopened with after=<cursor> once online: what it would have brought comes then.
      const cut = () => {
        ws.onmessage = null;
        ws.close();
        finish(CLOSED_OFFLINE);
      };
      window.addEventListener('offline', cut);
      ws.onopen = () => {
        opened();
        this.link = 'live';
        this.emit();
      };
      ws.onmessage = (m) => {
        if (typeof m.data !== 'string') return;
        try {
          this.apply(JSON.parse(m.data));
        } catch {
          return;
        }
        this.emit();
      };
      ws.onclose = (e) => finish(e.code);
    });
  }

  /** One event frame (`type`, `event_id`, `created_at` and the payload's fields); idempotent. */
  apply(ev: Record<string, unknown>): void {
    // Ephemeral frames (typing) carry event_id 0: they are not part of the feed, and resuming
    // from them would replay everything. Only a real (positive, larger) id moves the cursor.
    if (ev.type === TYPING) {
      if (ev.by === 'manager') {
        if (typeof ev.manager_name === 'string' && ev.manager_name) this.setManager(ev.manager_name);
        this.managerTyping();
      }
      return;
    }
    const id = typeof ev.event_id === 'number' ? ev.event_id : 0;
    if (id > 0 && id > this.cursor) {
      this.cursor = id;
      this.write('cursor', id);
    }
    const s = (k: string) => (typeof ev[k] === 'string' ? (ev[k] as string) : '');
    const at = Date.parse(s('created_at')) || Date.now();
    const mid = s('message_id');
    // A message event names its files only when it has some.
    const files = 'attachments' in ev ? { files: filesFromJson(ev.attachments) } : {};
    switch (ev.type) {
      case 'message_accepted': {
        if (!mid || this.gone.has(mid)) return;
        if (!this.byKey.has(mid)) this.adoptLocal(mid, s('body'), files.files ?? []);
        this.put({ key: mid, kind: 'client', body: s('body'), at: this.byKey.get(mid)?.at ?? at, state: 'pending', ...files });
        break;
      }
      case 'message_blocked': {
        // The warning takes the blocked message's place (its files go with it).
        const blocked = this.drop(mid);
        this.forget(blocked);
        this.gone.add(mid);
        const warning = s('warning');
        const wid = s('warning_message_id') || `warning:${mid}`;
        if (warning && !this.warnings.includes(warning)) {
          this.warnings = [...this.warnings, warning].slice(-MAX_WARNINGS_KEPT);
          this.write('warnings', this.warnings);
        }
        this.put({ key: wid, kind: 'warning', body: warning, at: blocked?.at ?? this.byKey.get(wid)?.at ?? at });
        break;
      }
      case 'message_withdrawn':
        this.forget(this.drop(mid));
        this.gone.add(mid);
        break;
      case 'manager_assigned':
      case 'ticket_closed':
        if (ev.type === 'manager_assigned') this.setManager(s('manager_name'));
        this.typingStopped();
        if (mid && s('body')) this.put({ key: mid, kind: 'system', body: s('body'), at: this.byKey.get(mid)?.at ?? at });
        break;
      case 'bot_replied':
      case 'bot_timed_out':
        // The bank's assistant answered a command (or did not in time): part of the chat.
        if (mid && s('body')) this.put({ key: mid, kind: 'system', body: s('body'), at: Date.parse(s('created_at')) || at });
        break;
      case 'satisfaction_requested': {
        const tid = s('ticket_id');
        if (!mid) break;
        if (s('body')) this.put({ key: mid, kind: 'system', body: s('body'), at: this.byKey.get(mid)?.at ?? at });
        if (tid && !this.surveys.some((x) => x.mid === mid)) {
          this.surveys = [...this.surveys, { mid, ticketId: tid, at }].slice(-MAX_SURVEYS_KEPT);
          this.write('surveys', this.surveys);
        }
        break;
      }
      case 'satisfaction_recorded': {
        const tid = s('ticket_id');
        const rating = typeof ev.rating === 'number' ? ev.rating : Number(ev.rating);
        if (!tid || !(rating >= 1 && rating <= 5)) break;
        const survey = this.surveys.find((x) => x.ticketId === tid);
        if (survey) {
          survey.rating = rating;
          this.write('surveys', this.surveys);
        } else {
          // The question came before this page's time (or storage forgot it): thank all the same.
          this.put({ key: `rated:${tid}`, kind: 'rating', body: '', at, rating });
        }
        break;
      }
      case 'manager_reply':
        // The manager sent what they were typing.
        if (mid && !this.byKey.has(mid)) this.typingStopped();
        this.setManager(s('manager_name'));
        if (mid) {
          this.put({
            key: mid,
            kind: 'manager',
            body: s('body'),
            at: Date.parse(s('created_at')) || at,
            managerName: s('manager_name'),
            ...files,
          });
        }
        break;
      default:
        break;
    }
    this.scheduleMarkRead();
  }

  // ---- Typing ----

  /** Whether the manager is typing now. */
  isManagerTyping(): boolean {
    return this.managerTypingUntil > Date.now();
  }

  private managerTyping(): void {
    this.managerTypingUntil = Date.now() + TYPING_SHOWN_MS;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.emit(), TYPING_SHOWN_MS + 50);
  }

  private typingStopped(): void {
    this.managerTypingUntil = 0;
    clearTimeout(this.typingTimer);
  }

  private setManager(name: string): void {
    if (!name || name === this.managerName) return;
    this.managerName = name;
    this.write('manager', name);
  }

  /** The client is typing: `POST /v1/typing`, at most once per TYPING_EVERY_MS. Best effort:
   * offline, or on any failure, nothing is retried (a typing signal is stale at once). */
  typing(): void {
    const now = Date.now();
    if (!this.online || this.sessionExpired || !this.loaded) return;
    const wait = this.lastTypingSent + TYPING_EVERY_MS - now;
    if (wait > 0) {
      this.typingLater ??= setTimeout(() => {
        this.typingLater = undefined;
        this.typing();
      }, wait);
      return;
    }
    this.lastTypingSent = now;
    this.api.typing().catch(() => undefined);
  }

  // ---- Files ----

  /** Uploads `files` for the next message, each shown as a chip while it goes. */
  attach(files: readonly File[]): void {
    if (this.sessionExpired) return;
    for (const file of files) {
      const p: PendingFile = { key: uuid(), name: file.name || 'file', size: file.size, state: 'uploading' };
      this.attached = [...this.attached, p];
      const ctl = new AbortController();
      this.uploads.set(p.key, ctl);
      void this.upload(p.key, file, ctl.signal).finally(() => this.uploads.delete(p.key));
    }
    this.emit();
  }

  /** Removes a chosen file (its upload, if under way, is cancelled; an uploaded file no
   * message takes is dropped by the engine after a day). */
  detach(key: string): void {
    this.uploads.get(key)?.abort();
    const p = this.attached.find((x) => x.key === key);
    if (p?.ref && !this.outbox.some((o) => o.files?.some((f) => f.id === p.ref!.id))) this.urls.revoke(p.ref.id);
    this.attached = this.attached.filter((x) => x.key !== key);
    this.emit();
  }

  /** The API address of a file (a link's target until its bytes are fetched with the token). */
  fileHref(id: string): string {
    return this.api.baseUrl + this.api.fileUrl(id);
  }

  /** Whether a chosen file is still uploading (the message waits for it). */
  uploading(): boolean {
    return this.attached.some((p) => p.state === 'uploading');
  }

  private patchAttached(key: string, patch: Partial<PendingFile>): void {
    this.attached = this.attached.map((p) => (p.key === key ? { ...p, ...patch } : p));
    this.emit();
  }

  /** One upload: network failures, 5xx and 429 are retried (a retry stores another copy at
   * worst, which no message takes); a refusal shows the engine's reason on the chip. */
  private async upload(key: string, file: File, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(500, 15_000);
    while (!signal.aborted && !this.abort.signal.aborted) {
      try {
        const ref = fileRef(await this.api.upload(file, signal));
        if (signal.aborted) return;
        // Its bytes are here already: an image shows without being fetched back.
        if (isImage(ref)) this.urls.seed(ref.id, file);
        this.patchAttached(key, { state: 'done', ref });
        return;
      } catch (e) {
        if (signal.aborted || this.abort.signal.aborted) return;
        if (e instanceof HttpError && !e.transient) {
          if (this.expired(e)) return;
          // A body past the server's limit is refused before the API sees it (no JSON reason).
          const tooLarge = e.status === 413 && /^HTTP \d+$/.test(e.message);
          this.patchAttached(key, { state: 'failed', error: tooLarge ? undefined : e.message, tooLarge });
          return;
        }
        await pause(e instanceof HttpError && e.retryAfterMs ? e.retryAfterMs : backoff.next(), signal);
      }
    }
  }

  /** Sends what the composer holds: the text with the uploaded files (refused ones are left
   * out and their chips cleared). Nothing while a file is still uploading. */
  submit(text: string): string | null {
    if (this.uploading()) return null;
    const files = this.attached.flatMap((p) => (p.state === 'done' && p.ref ? [p.ref] : []));
    const cmid = this.send(text, files);
    if (cmid) this.attached = [];
    return cmid;
  }

  // ---- Sending ----

  /** Queues a message: it gets its client_message_id now and keeps it through every retry, with
   * the same files. Returns that id. */
  send(body: string, files: FileRef[] = []): string | null {
    const text = body.trim();
    if (!text && !files.length) return null;
    const o: Outgoing = { cmid: uuid(), body: text, at: Date.now(), ...(files.length ? { files } : {}) };
    this.outbox.push(o);
    this.write('outbox', this.outbox);
    this.put(localItem(o));
    this.emit();
    this.sendWake.dispatchEvent(new Event('wake'));
    return o.cmid;
  }

  // ---- Satisfaction ----

  survey(mid: string): Survey | undefined {
    return this.surveys.find((x) => x.mid === mid);
  }

  surveyState(x: Survey): SurveyState {
    if (x.rating) return 'done';
    if (x.chosen && x.cmid) {
      const o = this.outbox.find((q) => q.cmid === x.cmid);
      // Still to send, or sent and waiting for `satisfaction_recorded`; a refused send: ask again.
      if (!o || !o.failed) return 'sending';
    }
    return Date.now() - x.at > RATING_WINDOW_MS ? 'expired' : 'open';
  }

  /** Answers the question `mid` with `rating` (1 to 5): the digit goes as a message, through the
   * outbox like any other (one client_message_id however often it is retried). */
  rate(mid: string, rating: number): void {
    const x = this.survey(mid);
    if (!x || this.sessionExpired || !(rating >= 1 && rating <= 5)) return;
    if (this.surveyState(x) !== 'open') return;
    const cmid = this.send(String(rating));
    if (!cmid) return;
    x.chosen = rating;
    x.cmid = cmid;
    this.write('surveys', this.surveys);
    this.emit();
  }

  discard(key: string): void {
    const cmid = key.startsWith('local:') ? key.slice(6) : null;
    if (!cmid || cmid === this.sendingCmid) return;
    this.outbox = this.outbox.filter((o) => o.cmid !== cmid);
    this.write('outbox', this.outbox);
    this.drop(key);
    // A rating removed unsent: the question is open again.
    for (const x of this.surveys) {
      if (x.cmid === cmid && !x.rating) {
        x.chosen = undefined;
        x.cmid = undefined;
        this.write('surveys', this.surveys);
      }
    }
    this.emit();
  }

  /** Sends the outbox in order, one at a time; a transient failure retries the same message
   * with the same id after a backoff (or when the browser is back online). */
  private async sendLoop(): Promise<void> {
    const backoff = new Backoff(500, 15_000);
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const next = this.outbox.find((o) => !o.failed);
      if (!next) {
        await new Promise<void>((resolve) => {
          const done = () => {
            this.sendWake.removeEventListener('wake', done);
            signal.removeEventListener('abort', done);
            resolve();
          };
          this.sendWake.addEventListener('wake', done);
          signal.addEventListener('abort', done);
        });
        continue;
      }
      this.sendingCmid = next.cmid;
      this.setLocal(next.cmid, { state: 'sending' });
      let retryIn: number | null = null;
      try {
        const r = await this.api.send(next.body, next.cmid, (next.files ?? []).map((f) => f.id));
        backoff.reset();
        this.settle(next.cmid, r.message_id);
      } catch (e) {
        if (e instanceof HttpError && !e.transient) {
          if (this.expired(e)) return;
          next.failed = e.message;
          this.write('outbox', this.outbox);
          this.setLocal(next.cmid, { state: 'failed', error: e.message });
        } else {
          retryIn = e instanceof HttpError && e.retryAfterMs ? e.retryAfterMs : backoff.next();
          this.setLocal(next.cmid, { state: 'queued' });
        }
      } finally {
        this.sendingCmid = null;
        this.emit();
      }
      if (retryIn !== null) await pause(retryIn, signal);
    }
  }

  private setLocal(cmid: string, patch: Partial<Item>): void {
    const item = this.byKey.get(`local:${cmid}`);
    if (item) Object.assign(item, patch);
    this.emit();
  }

  /** The server took the message as `messageId`: the local entry becomes that message. */
  private settle(cmid: string, messageId: string): void {
    this.outbox = this.outbox.filter((o) => o.cmid !== cmid);
    this.write('outbox', this.outbox);
    const local = this.drop(`local:${cmid}`);
    // Already shown under its id (message_accepted came first), or blocked / withdrawn meanwhile.
    if (this.byKey.has(messageId) || this.gone.has(messageId)) return;
    if (local) this.put({ ...local, key: messageId, state: 'sent', error: undefined });
  }

  /** A message_accepted for a message whose POST has not answered yet (same text and files):
   * the same one. */
  private adoptLocal(messageId: string, body: string, files: FileRef[]): void {
    const candidates = this.items.filter(
      (i) => i.key.startsWith('local:') && i.body === body && sameFiles(i.files, files) && i.state !== 'failed',
    );
    const local = candidates.find((i) => i.key === `local:${this.sendingCmid}`) ?? candidates[0];
    if (!local) return;
    this.drop(local.key);
    this.put({ ...local, key: messageId });
  }

  // ---- Read cursor ----

  private scheduleMarkRead(): void {
    clearTimeout(this.markTimer);
    this.markTimer = setTimeout(() => {
      if (document.visibilityState !== 'visible') return;
      const last = [...this.items].reverse().find((i) => i.kind !== 'client' && !i.key.startsWith('local:') && !i.key.startsWith('warning:'));
      if (!last || last.key === this.lastMarked) return;
      this.lastMarked = last.key;
      this.api.markRead(last.key).catch(() => {
        this.lastMarked = null;
      });
    }, 800);
  }

  private expired(e: unknown): boolean {
    if (e instanceof HttpError && e.status === 401) {
      this.sessionExpired = true;
      this.emit();
      return true;
    }
    return false;
  }
}

function localItem(o: Outgoing): Item {
  return {
    key: `local:${o.cmid}`,
    kind: 'client',
    body: o.body,
    at: o.at,
    state: o.failed ? 'failed' : 'queued',
    error: o.failed,
    files: o.files,
  };
}

function fileRef(a: WireAttachment): FileRef {
  return { id: a.id, name: a.name, contentType: a.content_type, size: a.size };
}

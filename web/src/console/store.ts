// The manager's live state: tickets, their conversations, drafts and the event stream. Plain
// TypeScript (no UI): components read it and re-render on `subscribe`.
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampFromMs, timestampMs } from '@bufbuild/protobuf/wkt';
import type { JsonObject } from '@bufbuild/protobuf';
import { Author, TicketStatus, type Attachment, type CannedResponse, type Message, type Ticket } from '../gen/inbox/v1/manager_pb';
import type { Event } from '../gen/inbox/v1/stream_pb';
import type { Api } from './api';
import { Backoff, pause } from '../shared/backoff';
import { uuid } from '../shared/uuid';
import { filesFromJson, type FileRef, type PendingFile } from '../shared/files';

export type MsgKind = 'client' | 'manager' | 'system' | 'note';

export interface Msg {
  id: string;
  kind: MsgKind;
  body: string;
  at: number;
  managerId?: string;
  managerName?: string;
  /** The files it carries, in order (absent: none known). */
  files?: FileRef[];
}

export interface DeliveryIssue {
  seq: bigint;
  failed: boolean;
  channel: string;
  state: 'open' | 'sending' | 'resent' | 'error';
}

export interface TicketView {
  id: string;
  ticket?: Ticket;
  clientId: string;
  messages: Msg[];
  loaded: boolean;
  loading: boolean;
  nextPageToken: string;
  /** Where the older pages go on (the conversation opens on its newest page). */
  olderToken: string;
  hasOlder: boolean;
  loadingOlder: boolean;
  /** The client's messages after this instant are unread. */
  seenAt: number;
  ended?: 'closed' | 'transferred';
  /** Who took it over (TransferTicket's answer), when this console handed it on. */
  transferredTo?: string;
  sla: boolean;
  issues: DeliveryIssue[];
  resolving: boolean;
  transferring: boolean;
  /** The client's rating after the close (the ticket's, or `satisfaction_recorded`); 0: none. */
  rating: number;
  /** Until when the client counts as typing (the last `typing` event plus TYPING_SHOWN_MS). */
  typingUntil: number;
}

export type Link = 'connecting' | 'live' | 'reconnecting';
export type DraftMode = 'reply' | 'note';

export interface Draft {
  text: string;
  /** The idempotency key of this draft: made once, reused by every retry, dropped on success. */
  key: string | null;
  sending: boolean;
  failed: boolean;
  /** A reply's files (UploadAttachment to its ticket): they go with the draft's key. */
  files: PendingFile[];
}

export interface Readiness {
  readySlots: number;
  openTickets: number;
  capacity: number;
}

export type AuthLoss = 'expired' | 'forbidden';
export type Notice =
  | { kind: 'assigned' }
  | { kind: 'transferred'; to: string }
  | { kind: 'error'; message: string };

/** What deserves the manager's attention now: a ticket that became theirs, a client who wrote. */
export interface Alert {
  kind: 'assigned' | 'message';
  ticketId: string;
  body: string;
}

export type Channel = 'web' | 'telegram' | 'email' | 'other';

/** The ticket's channel (`Ticket.channel`), else the prefix of the client id. */
export function channelOf(clientId: string, channel = ''): Channel {
  const c = channel || clientId.split(':', 1)[0];
  if (c === 'web' || c === 'email' || c === 'telegram') return c;
  return c === 'tg' ? 'telegram' : 'other';
}

/** Events older than this when they arrive are history (a replay), not news to alert about. */
const ALERT_MAX_AGE_MS = 60_000;

/** The ephemeral "is typing" event: cursor 0, never stored, never resumed from. */
export const TYPING_KIND = 'typing';
/** How long "typing…" stays after the client's last signal (they come every 2 s or so). */
export const TYPING_SHOWN_MS = 5_000;
/** The least time between two SendTyping calls: the engine drops more than one per 2 s per
 * sender, so a little more than that keeps every call counted. */
export const TYPING_EVERY_MS = 2_100;
/** Messages read at a time of a conversation (its newest page first, then older ones). */
const PAGE = 100;
/** Canned responses are read again (workflows.yaml changes apply at once) when older than this. */
const CANNED_MAX_AGE_MS = 60_000;

/** The canned responses a `/query` names: shortcuts starting with it first, then shortcuts or
 * titles containing it (case-insensitive); all of them for a bare `/`. */
export function matchCanned(all: readonly CannedResponse[], query: string): CannedResponse[] {
  const q = query.toLowerCase();
  if (!q) return [...all];
  const first = all.filter((r) => r.shortcut.toLowerCase().startsWith(q));
  const then = all.filter(
    (r) => !first.includes(r) && (r.shortcut.toLowerCase().includes(q) || r.title.toLowerCase().includes(q)),
  );
  return [...first, ...then];
}

function kindOf(a: Author): MsgKind {
  switch (a) {
    case Author.CLIENT:
      return 'client';
    case Author.MANAGER:
      return 'manager';
    case Author.NOTE:
      return 'note';
    default:
      return 'system';
  }
}

function parseAt(s: unknown, fallback: number): number {
  if (typeof s !== 'string') return fallback;
  const t = Date.parse(s);
  return Number.isNaN(t) ? fallback : t;
}

function str(p: JsonObject, k: string): string {
  const v = p[k];
  return typeof v === 'string' ? v : '';
}

export class ManagerStore {
  readonly tickets = new Map<string, TicketView>();
  openId: string | null = null;
  link: Link = 'connecting';
  retryAt = 0;
  readiness: Readiness | null = null;
  readyBusy = false;
  notice: Notice | null = null;
  listLoaded = false;
  /** `workflows.yaml` `canned_responses` (ListCannedResponses); empty until read. */
  canned: CannedResponse[] = [];
  private cannedAt = 0;
  private cannedLoading = false;
  private lastTypingSent = 0;
  /** A keystroke inside the throttle window is sent when the window ends (trailing edge). */
  private typingLater: ReturnType<typeof setTimeout> | undefined;
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly drafts = new Map<string, Draft>();
  private readonly fetching = new Set<string>();
  private cursor: bigint;
  private readonly seen: Record<string, number>;
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(ev: Event) => void>();
  private readonly alertListeners = new Set<(a: Alert) => void>();
  private readonly abort = new AbortController();
  private readonly startedAt = Date.now();
  private readonly held = new Map<string, { alert: Alert; timer: ReturnType<typeof setTimeout> }>();

  constructor(
    private readonly api: Api,
    readonly user: string,
    readonly userName: string,
    private readonly onAuthLost: (why: AuthLoss) => void,
  ) {
    this.cursor = BigInt(sessionStorage.getItem(this.cursorKey) || '0');
    try {
      this.seen = JSON.parse(sessionStorage.getItem(this.seenKey) || '{}');
    } catch {
      this.seen = {};
    }
  }

  private get cursorKey() {
    return `inbox.console.cursor.${this.user}`;
  }
  private get seenKey() {
    return `inbox.console.seen.${this.user}`;
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  /** Every event of the stream, after it was applied (the supervisor view refreshes on some). */
  onEvent(fn: (ev: Event) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  /** Live news only: not the replay of what happened before this console opened. */
  onAlert(fn: (a: Alert) => void): () => void {
    this.alertListeners.add(fn);
    return () => this.alertListeners.delete(fn);
  }

  private alert(a: Alert, at: number): void {
    if (at < this.startedAt - 5_000 || Date.now() - at > ALERT_MAX_AGE_MS) return;
    if (a.kind === 'assigned' && !this.tickets.get(a.ticketId)?.ticket) {
      // Name the client: wait for the ticket's record (a second at most).
      const timer = setTimeout(() => this.fireHeld(a.ticketId), 1500);
      this.held.set(a.ticketId, { alert: a, timer });
      return;
    }
    for (const fn of this.alertListeners) fn(a);
  }

  private fireHeld(tid: string): void {
    const h = this.held.get(tid);
    if (!h) return;
    clearTimeout(h.timer);
    this.held.delete(tid);
    for (const fn of this.alertListeners) fn(h.alert);
  }

  start(): void {
    void this.streamLoop();
    void this.loadTickets();
    void this.refreshCanned();
    window.addEventListener('online', this.emitBound);
  }

  stop(): void {
    this.abort.abort();
    for (const h of this.held.values()) clearTimeout(h.timer);
    this.held.clear();
    for (const t of this.typingTimers.values()) clearTimeout(t);
    this.typingTimers.clear();
    window.removeEventListener('online', this.emitBound);
  }

  private readonly emitBound = () => this.emit();

  /** Reads the caller's open tickets, page by page, and each one's conversation. */
  private async loadTickets(): Promise<void> {
    try {
      let pageToken = '';
      do {
        const page = await this.api.manager.listTickets(
          { pageSize: 100, pageToken },
          { signal: this.abort.signal },
        );
        for (const t of page.tickets) this.withTicket(t);
        pageToken = page.nextPageToken;
      } while (pageToken);
      this.listLoaded = true;
      this.emit();
    } catch (e) {
      this.failed(e);
    }
  }

  private withTicket(t: Ticket): TicketView {
    const v = this.view(t.id, t.clientId);
    v.ticket = t;
    v.clientId = t.clientId || v.clientId;
    if (t.rating) v.rating = t.rating;
    if (t.status === TicketStatus.CLOSED && !v.ended) v.ended = 'closed';
    if (!v.loaded && !v.loading) void this.loadMessages(v);
    if (this.held.has(t.id)) queueMicrotask(() => this.fireHeld(t.id));
    return v;
  }

  private view(id: string, clientId = ''): TicketView {
    let v = this.tickets.get(id);
    if (!v) {
      v = {
        id,
        clientId,
        messages: [],
        loaded: false,
        loading: false,
        nextPageToken: '',
        olderToken: '',
        hasOlder: false,
        loadingOlder: false,
        seenAt: this.seen[id] ?? -1,
        sla: false,
        issues: [],
        resolving: false,
        transferring: false,
        rating: 0,
        typingUntil: 0,
      };
      this.tickets.set(id, v);
    }
    return v;
  }

  /** Makes sure a ticket the stream names is known: its record and its messages. `fresh`: read
   * the record again even if known (it became this manager's once more, after a transfer). */
  private ensureTicket(id: string, clientId = '', fresh = false): TicketView {
    const known = this.tickets.get(id);
    const v = this.view(id, clientId);
    if (fresh && known?.ended === 'transferred') {
      // Handed back: read it anew, from the first message.
      v.ended = undefined;
      v.transferredTo = undefined;
      v.ticket = undefined;
      v.loaded = false;
      v.nextPageToken = '';
      v.olderToken = '';
      v.hasOlder = false;
    }
    if ((!v.ticket || fresh) && !this.fetching.has(id)) {
      this.fetching.add(id);
      this.api.manager
        .getTicket({ ticketId: id }, { signal: this.abort.signal })
        .finally(() => this.fetching.delete(id))
        .then((r) => {
          if (r.ticket) this.withTicket(r.ticket);
          this.emit();
        })
        .catch((e) => {
          if (ConnectError.from(e).code === Code.NotFound) {
            if (this.openId !== id) this.tickets.delete(id);
            this.emit();
          } else this.failed(e);
        });
    }
    return v;
  }

  private async loadMessages(v: TicketView): Promise<void> {
    v.loading = true;
    try {
      if (!v.nextPageToken) {
        // First read: the newest page; older ones as the manager scrolls up (loadOlder).
        const r = await this.api.manager.listMessages(
          { ticketId: v.id, pageSize: PAGE, latest: true },
          { signal: this.abort.signal },
        );
        for (const m of r.messages) this.upsert(v, fromProto(m));
        v.nextPageToken = r.nextPageToken;
        v.olderToken = r.olderPageToken;
        v.hasOlder = r.hasMore;
      }
      // Then whatever is newer than what was read (a reconnect catching up).
      for (let pages = 0; pages < 50 && v.nextPageToken; pages++) {
        const r = await this.api.manager.listMessages(
          { ticketId: v.id, pageSize: 200, pageToken: v.nextPageToken },
          { signal: this.abort.signal },
        );
        for (const m of r.messages) this.upsert(v, fromProto(m));
        if (r.nextPageToken) v.nextPageToken = r.nextPageToken;
        if (!r.hasMore) break;
      }
      v.loaded = true;
      if (v.seenAt < 0) v.seenAt = this.lastAnswerAt(v);
      if (this.openId === v.id) this.markSeen(v);
    } catch (e) {
      this.failed(e);
    } finally {
      v.loading = false;
      this.emit();
    }
  }

  /** The page before the oldest message read of ticket `tid`, when there is one. */
  async loadOlder(tid: string): Promise<void> {
    const v = this.tickets.get(tid);
    if (!v || !v.hasOlder || v.loadingOlder || !v.olderToken) return;
    v.loadingOlder = true;
    try {
      const r = await this.api.manager.listMessages(
        { ticketId: v.id, pageSize: PAGE, before: v.olderToken },
        { signal: this.abort.signal },
      );
      for (const m of r.messages) this.upsert(v, fromProto(m));
      v.olderToken = r.olderPageToken;
      v.hasOlder = r.hasMore;
    } catch (e) {
      this.failed(e);
    } finally {
      v.loadingOlder = false;
      this.emit();
    }
  }

  private upsert(v: TicketView, m: Msg): void {
    if (!m.id) return;
    const i = v.messages.findIndex((x) => x.id === m.id);
    if (i >= 0) v.messages[i] = { ...v.messages[i], ...m, managerId: m.managerId || v.messages[i].managerId };
    else v.messages.push(m);
    v.messages.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (this.openId === v.id) this.markSeen(v);
  }

  private async streamLoop(): Promise<void> {
    const backoff = new Backoff(500, 30_000);
    const signal = this.abort.signal;
    // Renewals since the stream was last live: the engine ends a stream whose token expired
    // (UNAUTHENTICATED, "token expired"); it resumes from the cursor at once with a fresh token.
    // A fresh token refused again before any answer means the session is over.
    let renewals = 0;
    while (!signal.aborted) {
      // One stream per attempt. When the browser goes offline it is dropped at once (a stream on
      // a dead network may stall unnoticed for minutes) and resumed from the cursor once online.
      const attempt = new AbortController();
      const began = Date.now();
      const sent = this.api.token();
      const cut = () => attempt.abort();
      signal.addEventListener('abort', cut);
      window.addEventListener('offline', cut);
      try {
        const stream = this.api.manager.streamEvents(
          { afterCursor: this.cursor },
          {
            signal: attempt.signal,
            onHeader: () => {
              this.link = 'live';
              this.emit();
            },
          },
        );
        for await (const ev of stream) {
          backoff.reset();
          renewals = 0;
          this.link = 'live';
          this.apply(ev);
          this.emit();
          for (const fn of this.eventListeners) fn(ev);
        }
      } catch (e) {
        if (signal.aborted) return;
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) {
          // A stream that stayed up a while (a quiet one gets no events) used its token fully.
          if (Date.now() - began > 10_000) renewals = 0;
          if (!this.api.renew || renewals > 0) return this.onAuthLost('expired');
          renewals++;
          // Renewed meanwhile (automatic renewal runs ahead of expiry): the new token is there.
          const renewed = this.api.token() !== sent || (await this.api.renew());
          if (signal.aborted) return;
          if (!renewed) return this.onAuthLost('expired');
          // The next attempt takes the new token (the transport reads it at every call).
          continue;
        }
        if (err.code === Code.PermissionDenied) return this.onAuthLost('forbidden');
      } finally {
        signal.removeEventListener('abort', cut);
        window.removeEventListener('offline', cut);
      }
      if (signal.aborted) return;
      // Back online, the wait ends at once (`pause` wakes on `online`).
      const delay = backoff.next();
      this.link = 'reconnecting';
      this.retryAt = Date.now() + delay;
      this.emit();
      await pause(delay, signal);
    }
  }

  /** One event of the stream; every kind is applied idempotently (a replay changes nothing). */
  apply(ev: Event): void {
    const p: JsonObject = ev.payload ?? {};
    const tid = ev.ticketId || str(p, 'ticket_id');
    // Ephemeral events (typing) carry cursor 0: they are not part of the feed, and resuming
    // from them would replay everything. Only a real (positive, larger) cursor moves the resume
    // point.
    if (ev.kind === TYPING_KIND) {
      if (tid && str(p, 'by') !== 'manager') this.clientTyping(tid);
      return;
    }
    if (ev.cursor > 0n && ev.cursor > this.cursor) {
      this.cursor = ev.cursor;
      sessionStorage.setItem(this.cursorKey, String(ev.cursor));
    }
    if (!tid) return;
    const at = ev.createdAt ? timestampMs(ev.createdAt) : Date.now();
    switch (ev.kind) {
      case 'ticket_assigned': {
        const known = this.tickets.has(tid) && !this.tickets.get(tid)?.ended;
        this.ensureTicket(tid, str(p, 'client_id'), true);
        if (!known) this.alert({ kind: 'assigned', ticketId: tid, body: '' }, at);
        break;
      }
      case 'message_visible': {
        const v = this.ensureTicket(tid);
        const mid = str(p, 'message_id');
        const isNew = !!mid && !v.messages.some((m) => m.id === mid);
        // The client sent what they were typing.
        if (isNew) this.typingDone(v);
        const files = filesOf(p);
        this.upsert(v, {
          id: mid,
          kind: 'client',
          body: str(p, 'body'),
          at: parseAt(p.created_at, at),
          ...files,
        });
        if (isNew) this.alert({ kind: 'message', ticketId: tid, body: previewText(str(p, 'body'), files.files) }, at);
        break;
      }
      case 'satisfaction_recorded': {
        const v = this.tickets.get(tid);
        const r = p.rating;
        if (v && typeof r === 'number' && r >= 1 && r <= 5) v.rating = r;
        break;
      }
      case 'message_withdrawn': {
        const v = this.tickets.get(tid);
        if (v) v.messages = v.messages.filter((m) => m.id !== str(p, 'message_id'));
        break;
      }
      case 'manager_reply':
        this.responded(tid, at);
        this.upsert(this.ensureTicket(tid), {
          id: str(p, 'message_id'),
          kind: 'manager',
          body: str(p, 'body'),
          at: parseAt(p.created_at, at),
          managerName: str(p, 'manager_name'),
          ...filesOf(p),
        });
        break;
      case 'note_added':
        this.upsert(this.ensureTicket(tid), {
          id: str(p, 'note_id'),
          kind: 'note',
          body: str(p, 'body'),
          at: parseAt(p.created_at, at),
        });
        break;
      case 'ticket_transferred_away':
        this.end(tid, 'transferred');
        break;
      case 'ticket_closed': {
        const v = this.end(tid, 'closed');
        if (v && str(p, 'message_id') && str(p, 'body')) {
          this.upsert(v, { id: str(p, 'message_id'), kind: 'system', body: str(p, 'body'), at });
        }
        break;
      }
      case 'sla_breached':
        this.ensureTicket(tid).sla = true;
        break;
      case 'delivery_failed':
      case 'delivery_unknown': {
        const v = this.ensureTicket(tid);
        const n = p.event_seq;
        const seq = typeof n === 'number' ? BigInt(n) : typeof n === 'string' && /^\d+$/.test(n) ? BigInt(n) : null;
        if (seq !== null && !v.issues.some((i) => i.seq === seq)) {
          v.issues.push({ seq, failed: ev.kind === 'delivery_failed', channel: str(p, 'channel'), state: 'open' });
        }
        break;
      }
      default:
        break;
    }
  }

  /** The client of `tid` is typing: shown for TYPING_SHOWN_MS after the last signal. A ticket
   * this console does not hold (any more) is ignored. */
  private clientTyping(tid: string): void {
    const v = this.tickets.get(tid);
    if (!v || v.ended) return;
    v.typingUntil = Date.now() + TYPING_SHOWN_MS;
    clearTimeout(this.typingTimers.get(tid));
    this.typingTimers.set(
      tid,
      setTimeout(() => {
        this.typingTimers.delete(tid);
        this.emit();
      }, TYPING_SHOWN_MS + 50),
    );
  }

  private typingDone(v: TicketView): void {
    v.typingUntil = 0;
    clearTimeout(this.typingTimers.get(v.id));
    this.typingTimers.delete(v.id);
  }

  /** Whether the client of `v` is typing now. */
  isTyping(v: TicketView): boolean {
    return !v.ended && v.typingUntil > Date.now();
  }

  private end(tid: string, how: 'closed' | 'transferred'): TicketView | undefined {
    const v = this.tickets.get(tid);
    if (!v) return undefined;
    this.typingDone(v);
    v.ended = how;
    if (this.openId !== tid && how === 'transferred') this.tickets.delete(tid);
    return v;
  }

  // ---- What the view shows ----

  /** Open tickets for the list: those not ended (the open one stays while shown). */
  list(): TicketView[] {
    return [...this.tickets.values()]
      .filter((v) => !v.ended && (v.ticket || v.messages.length))
      .sort((a, b) => createdMs(b) - createdMs(a));
  }

  open(): TicketView | null {
    return (this.openId && this.tickets.get(this.openId)) || null;
  }

  /** When the first response is due, while it has not come; null when no SLA runs. */
  firstResponseDue(v: TicketView): number | null {
    const t = v.ticket;
    if (!t?.firstResponseDueAt || t.firstResponseAt || v.ended) return null;
    if (v.messages.some((m) => m.kind === 'manager')) return null;
    return timestampMs(t.firstResponseDueAt);
  }

  /** A reply went out: the first response is there (the record says so on its next read). */
  private responded(tid: string, at: number): void {
    const t = this.tickets.get(tid)?.ticket;
    if (t && !t.firstResponseAt) t.firstResponseAt = timestampFromMs(at);
  }

  /** The ticket `delta` places after (1) or before (-1) the open one in the list. */
  neighbour(delta: number): string | null {
    const list = this.list();
    if (!list.length) return null;
    const i = list.findIndex((v) => v.id === this.openId);
    if (i < 0) return list[delta > 0 ? 0 : list.length - 1].id;
    return list[Math.min(list.length - 1, Math.max(0, i + delta))].id;
  }

  unread(v: TicketView): number {
    if (v.id === this.openId) return 0;
    return v.messages.filter((m) => m.kind === 'client' && m.at > v.seenAt).length;
  }

  /** Since when the client waits for an answer: their first message after the last reply. */
  waitingSince(v: TicketView): number | null {
    let since: number | null = null;
    for (let i = v.messages.length - 1; i >= 0; i--) {
      const m = v.messages[i];
      if (m.kind === 'manager') break;
      if (m.kind === 'client') since = m.at;
    }
    return since;
  }

  lastMessage(v: TicketView): Msg | undefined {
    for (let i = v.messages.length - 1; i >= 0; i--) {
      if (v.messages[i].kind !== 'note') return v.messages[i];
    }
    return undefined;
  }

  isMine(m: Msg): boolean {
    return m.managerId ? m.managerId === this.user : m.managerName === this.userName;
  }

  private lastAnswerAt(v: TicketView): number {
    for (let i = v.messages.length - 1; i >= 0; i--) {
      if (v.messages[i].kind === 'manager' || v.messages[i].kind === 'note') return v.messages[i].at;
    }
    return 0;
  }

  private markSeen(v: TicketView): void {
    const last = v.messages.length ? v.messages[v.messages.length - 1].at : 0;
    if (last > v.seenAt) {
      v.seenAt = last;
      this.seen[v.id] = last;
      sessionStorage.setItem(this.seenKey, JSON.stringify(this.seen));
    }
  }

  // ---- Actions ----

  select(id: string | null): void {
    const prev = this.openId && this.tickets.get(this.openId);
    if (prev && prev.ended) this.tickets.delete(prev.id);
    this.openId = id;
    const v = id ? this.tickets.get(id) : undefined;
    if (v) {
      this.markSeen(v);
      if (!v.loaded && !v.loading) void this.loadMessages(v);
    }
    this.emit();
  }

  /** Reads the canned responses (again, when the last read is older than a minute). A failure
   * (an engine without them) leaves the list as it was: the reply box works without it. */
  async refreshCanned(): Promise<void> {
    if (this.cannedLoading || Date.now() - this.cannedAt < CANNED_MAX_AGE_MS) return;
    this.cannedLoading = true;
    try {
      const r = await this.api.manager.listCannedResponses({}, { signal: this.abort.signal });
      this.canned = r.responses.filter((x) => x.shortcut && x.text);
      this.cannedAt = Date.now();
      this.emit();
    } catch (e) {
      const code = ConnectError.from(e).code;
      if (code === Code.Unauthenticated || code === Code.PermissionDenied) this.failed(e);
      // Try again at the next opening of the list, not before a few seconds.
      this.cannedAt = Date.now() - CANNED_MAX_AGE_MS + 5_000;
    } finally {
      this.cannedLoading = false;
    }
  }

  /** The manager is typing a reply in `tid`: SendTyping, at most once per TYPING_EVERY_MS (the
   * engine keeps one per 2 s per sender). Best effort: a failure is not shown. */
  typing(tid: string): void {
    const v = this.tickets.get(tid);
    const now = Date.now();
    if (!v || v.ended) return;
    const wait = this.lastTypingSent + TYPING_EVERY_MS - now;
    if (wait > 0) {
      this.typingLater ??= setTimeout(() => {
        this.typingLater = undefined;
        this.typing(tid);
      }, wait);
      return;
    }
    this.lastTypingSent = now;
    this.api.manager.sendTyping({ ticketId: tid }, { signal: this.abort.signal }).catch(() => undefined);
  }

  draft(tid: string, mode: DraftMode): Draft {
    const k = `${tid}:${mode}`;
    let d = this.drafts.get(k);
    if (!d) {
      d = { text: '', key: null, sending: false, failed: false, files: [] };
      this.drafts.set(k, d);
    }
    return d;
  }

  setDraft(tid: string, mode: DraftMode, text: string): void {
    const d = this.draft(tid, mode);
    if (d.sending) return;
    d.text = text;
    if (!d.key && text.trim()) d.key = uuid();
    this.emit();
  }

  /** Uploads `files` (UploadAttachment to the ticket) for the reply draft of `tid`, each shown
   * as a chip; the draft's idempotency key is made now if it has none (it covers the files). */
  attach(tid: string, files: readonly File[]): void {
    const d = this.draft(tid, 'reply');
    const v = this.tickets.get(tid);
    if (d.sending || !v || v.ended) return;
    for (const file of files) {
      const p: PendingFile = { key: uuid(), name: file.name || 'file', size: file.size, state: 'uploading' };
      d.files = [...d.files, p];
      void this.upload(tid, d, p.key, file);
    }
    d.key ??= uuid();
    this.emit();
  }

  /** Takes a file off the reply draft (an upload under way is forgotten when it ends; a file no
   * reply takes is dropped by the engine after a day). */
  detach(tid: string, key: string): void {
    const d = this.draft(tid, 'reply');
    if (d.sending) return;
    d.files = d.files.filter((p) => p.key !== key);
    this.emit();
  }

  /** Whether a file of the draft is still uploading (the reply waits for it). */
  uploading(d: Draft): boolean {
    return d.files.some((p) => p.state === 'uploading');
  }

  private async upload(tid: string, d: Draft, key: string, file: File): Promise<void> {
    const patch = (x: Partial<PendingFile>) => {
      d.files = d.files.map((p) => (p.key === key ? { ...p, ...x } : p));
      this.emit();
    };
    try {
      const data = new Uint8Array(await file.arrayBuffer());
      const r = await this.api.manager.uploadAttachment(
        { ticketId: tid, name: file.name, contentType: file.type, data },
        { signal: this.abort.signal },
      );
      if (!r.attachment) throw new ConnectError('no attachment in the answer', Code.Internal);
      patch({ state: 'done', ref: fileRef(r.attachment) });
    } catch (e) {
      const err = ConnectError.from(e);
      if (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied) return this.failed(e);
      // Past the gateway's message size (RESOURCE_EXHAUSTED): refused before the limits said why.
      const tooLarge = err.code === Code.ResourceExhausted;
      patch({ state: 'failed', error: tooLarge ? undefined : err.rawMessage || String(err.code), tooLarge });
    }
  }

  /** Sends the draft once: a second call while it is in flight does nothing, a retry after a
   * failure reuses the draft's key (the server answers it with the same message). A reply takes
   * the draft's uploaded files (refused ones are left out); it waits while one is uploading. */
  async send(tid: string, mode: DraftMode): Promise<void> {
    const d = this.draft(tid, mode);
    const body = d.text.trim();
    const files = mode === 'reply' ? d.files.flatMap((p) => (p.state === 'done' && p.ref ? [p.ref] : [])) : [];
    if (d.sending || (!body && !files.length) || this.uploading(d)) return;
    d.sending = true;
    d.failed = false;
    const key = (d.key ??= uuid());
    this.emit();
    try {
      const v = this.view(tid);
      if (mode === 'reply') {
        const r = await this.api.manager.sendReply({
          ticketId: tid,
          body,
          idempotencyKey: key,
          attachmentIds: files.map((f) => f.id),
        });
        this.responded(tid, Date.now());
        this.upsert(v, {
          id: r.messageId,
          kind: 'manager',
          body,
          at: Date.now(),
          managerId: this.user,
          managerName: this.userName,
          files,
        });
        d.files = [];
      } else {
        const r = await this.api.manager.addNote({ ticketId: tid, body, idempotencyKey: key });
        this.upsert(v, { id: r.noteId, kind: 'note', body, at: Date.now(), managerId: this.user });
      }
      d.text = '';
      d.key = null;
    } catch (e) {
      d.failed = true;
      this.failed(e);
    } finally {
      d.sending = false;
      this.emit();
    }
  }

  async resolve(tid: string): Promise<void> {
    const v = this.tickets.get(tid);
    if (!v || v.resolving || v.ended) return;
    v.resolving = true;
    this.emit();
    try {
      await this.api.manager.resolveTicket({ ticketId: tid });
      v.ended = 'closed';
    } catch (e) {
      this.failed(e);
    } finally {
      v.resolving = false;
      this.emit();
    }
  }

  /** Hands the ticket to `to` (a manager id), who must be ready; the caller loses it. */
  async transfer(tid: string, to: string): Promise<boolean> {
    const v = this.tickets.get(tid);
    const target = to.trim();
    if (!v || v.transferring || v.ended || !target) return false;
    v.transferring = true;
    this.emit();
    try {
      const r = await this.api.manager.transferTicket({ ticketId: tid, toManagerId: target });
      v.ended = 'transferred';
      v.transferredTo = r.managerName || r.managerId || target;
      this.notice = { kind: 'transferred', to: v.transferredTo };
      return true;
    } catch (e) {
      this.failed(e);
      return false;
    } finally {
      v.transferring = false;
      this.emit();
    }
  }

  async resend(tid: string, seq: bigint): Promise<void> {
    const issue = this.tickets.get(tid)?.issues.find((i) => i.seq === seq);
    if (!issue || issue.state === 'sending') return;
    issue.state = 'sending';
    this.emit();
    try {
      await this.api.manager.resendDelivery({ ticketId: tid, eventSeq: seq });
      issue.state = 'resent';
    } catch (e) {
      issue.state = 'error';
      this.failed(e);
    }
    this.emit();
  }

  async setReady(ready: boolean): Promise<void> {
    if (this.readyBusy) return;
    this.readyBusy = true;
    this.emit();
    try {
      if (ready) {
        const r = await this.api.manager.setReady({});
        this.readiness = { readySlots: r.readySlots, openTickets: r.openTickets, capacity: r.capacity };
        if (r.assignedTicketId) {
          this.ensureTicket(r.assignedTicketId);
          this.notice = { kind: 'assigned' };
        }
      } else {
        await this.api.manager.setNotReady({});
        this.readiness = this.readiness
          ? { ...this.readiness, readySlots: 0 }
          : { readySlots: 0, openTickets: this.list().length, capacity: 0 };
      }
    } catch (e) {
      this.failed(e);
    } finally {
      this.readyBusy = false;
      this.emit();
    }
  }

  dismissNotice(): void {
    this.notice = null;
    this.emit();
  }

  private failed(e: unknown): void {
    if (this.abort.signal.aborted) return;
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated) return this.onAuthLost('expired');
    if (err.code === Code.PermissionDenied) return this.onAuthLost('forbidden');
    this.notice = { kind: 'error', message: err.rawMessage || String(err.code) };
    this.emit();
  }
}

function fromProto(m: Message): Msg {
  return {
    id: m.id,
    kind: kindOf(m.author),
    body: m.body,
    at: m.createdAt ? timestampMs(m.createdAt) : Date.now(),
    managerId: m.managerId || undefined,
    files: m.attachments.map(fileRef),
  };
}

function fileRef(a: Attachment): FileRef {
  return { id: a.id, name: a.name, contentType: a.contentType, size: Number(a.size) };
}

/** An event's files, when its payload names some (an absent list leaves what is known). */
function filesOf(p: JsonObject): { files?: FileRef[] } {
  return 'attachments' in p ? { files: filesFromJson(p.attachments) } : {};
}

/** What a message says in a one-line preview: its text, else the names of its files. */
export function previewText(body: string, files: readonly FileRef[] | undefined): string {
  return body || (files ?? []).map((f) => f.name).join(', ');
}

function createdMs(v: TicketView): number {
  const t = v.ticket?.assignedAt ?? v.ticket?.createdAt;
  return t ? timestampMs(t) : Date.now();
}

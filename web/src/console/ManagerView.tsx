import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { JsonValue } from '@bufbuild/protobuf';
import type { ManagerState } from '../gen/inbox/v1/admin_pb';
import type { CannedResponse } from '../gen/inbox/v1/manager_pb';
import { duration, formatTime, type Strings } from '../i18n';
import type { Api } from './api';
import type { Alerts } from './alerts';
import { useI18n } from './i18n-context';
import { channelOf, matchCanned, previewText, type DraftMode, type ManagerStore, type Msg, type TicketView } from './store';
import { BlobUrls } from '../shared/files';
import { AttachInput, MessageFiles, PendingChips } from '../shared/FileViews';
import { clock, Dialog, typingIn, useRerender, useSecondClock } from './ui';
import { MessageSearch } from './Search';
import { moved, suggestionKey } from '../shared/suggest';

export function ManagerView({
  store,
  alerts,
  api,
  isAdmin,
  active,
}: {
  store: ManagerStore;
  alerts: Alerts;
  api: Api;
  isAdmin: boolean;
  active: boolean;
}) {
  const { t } = useI18n();
  const rerender = useRerender();
  const [help, setHelp] = useState(false);
  const [confirming, setConfirming] = useState<string | null>(null);
  useEffect(() => {
    const off = store.subscribe(rerender);
    const offAlerts = alerts.subscribe(rerender);
    // Waiting times move on without events.
    const tick = setInterval(rerender, 15_000);
    return () => {
      off();
      offAlerts();
      clearInterval(tick);
    };
  }, [store]);

  // The daily actions from the keyboard (not while typing, not with a modifier, not in a dialog).
  useEffect(() => {
    if (!active) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      if (typingIn(e.target) || document.querySelector('dialog[open]')) return;
      const open = store.open();
      switch (e.key) {
        case 'j':
        case 'k': {
          const next = store.neighbour(e.key === 'j' ? 1 : -1);
          if (!next) return;
          store.select(next);
          requestAnimationFrame(() => document.querySelector<HTMLElement>(`button[data-ticket="${next}"]`)?.focus());
          break;
        }
        case 'r':
        case 'n': {
          const field = open && document.getElementById(`composer-${e.key === 'r' ? 'reply' : 'note'}-${open.id}`);
          if (!field) return;
          field.focus();
          break;
        }
        case 'e':
          if (!open || open.ended) return;
          setConfirming(open.id);
          break;
        case '?':
          setHelp(true);
          break;
        default:
          return;
      }
      e.preventDefault();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [store, active]);

  const open = store.open();
  const toConfirm = confirming ? store.tickets.get(confirming) : undefined;
  return (
    <div class="manager">
      <MessageSearch
        id="manager-search"
        search={async (query, signal) => (await api.manager.searchMessages({ query, pageSize: 20 }, { signal })).hits}
        clientLabel={(h) => {
          const v = h.message && store.tickets.get(h.message.ticketId);
          return v ? clientName(v) : h.clientId;
        }}
        canOpen={(h) => !!h.message && store.tickets.has(h.message.ticketId)}
        onOpen={(h) => {
          const id = h.message!.ticketId;
          store.select(id);
          requestAnimationFrame(() => document.querySelector<HTMLElement>(`button[data-ticket="${id}"]`)?.focus());
        }}
      />
      <Toolbar store={store} alerts={alerts} onHelp={() => setHelp(true)} />
      <Notice store={store} />
      <div class="panes">
        <TicketList store={store} />
        {open ? (
          <Conversation key={open.id} store={store} view={open} api={api} isAdmin={isAdmin} onResolve={() => setConfirming(open.id)} />
        ) : (
          <EmptyConversation />
        )}
      </div>
      <Dialog open={help} onClose={() => setHelp(false)} labelledBy="shortcuts-title">
        <Shortcuts onClose={() => setHelp(false)} />
      </Dialog>
      <Dialog open={!!toConfirm} onClose={() => setConfirming(null)} labelledBy="resolve-title" describedBy="resolve-text">
        {toConfirm && (
          <>
            <h2 id="resolve-title">{t.confirmResolveTitle}</h2>
            <p id="resolve-text">{t.confirmResolveText(clientName(toConfirm))}</p>
            <div class="dialog-buttons">
              <button type="button" class="secondary" onClick={() => setConfirming(null)}>
                {t.cancel}
              </button>
              <button
                type="button"
                class="danger"
                autofocus
                onClick={() => {
                  setConfirming(null);
                  void store.resolve(toConfirm.id);
                }}
              >
                {t.resolve}
              </button>
            </div>
          </>
        )}
      </Dialog>
    </div>
  );
}

function Shortcuts({ onClose }: { onClose: () => void }) {
  const { t } = useI18n();
  const keys: [string, string][] = [
    ['j', t.keyNext],
    ['k', t.keyPrev],
    ['r', t.keyReply],
    ['n', t.keyNote],
    ['e', t.keyResolve],
    ['/', t.keyCanned],
    ['?', t.keyHelp],
    ['Esc', t.keyClose],
  ];
  return (
    <>
      <h2 id="shortcuts-title">{t.shortcutsTitle}</h2>
      <p class="hint">{t.shortcutsHint}</p>
      <dl class="shortcuts">
        {keys.map(([k, what]) => (
          <div key={k}>
            <dt>
              <kbd>{k}</kbd>
            </dt>
            <dd>{what}</dd>
          </div>
        ))}
      </dl>
      <div class="dialog-buttons">
        <button type="button" autofocus onClick={onClose}>
          {t.closeDialog}
        </button>
      </div>
    </>
  );
}

function LinkState({ store }: { store: ManagerStore }) {
  const { t } = useI18n();
  const now = useSecondClock(store.link === 'reconnecting');
  const secs = Math.max(0, Math.ceil((store.retryAt - now) / 1000));
  const text =
    store.link === 'live' ? t.live : store.link === 'connecting' ? t.connecting : secs > 0 ? t.reconnectingIn(secs) : t.reconnecting;
  return (
    <span class={`link link-${store.link}`} role="status" aria-live="polite" data-link={store.link}>
      {text}
    </span>
  );
}

function Toolbar({ store, alerts, onHelp }: { store: ManagerStore; alerts: Alerts; onHelp: () => void }) {
  const { t } = useI18n();
  const r = store.readiness;
  const permission = alerts.permission();
  return (
    <section class="toolbar" aria-label={t.availability}>
      <div class="buttons">
        <button type="button" title={t.readyHint} disabled={store.readyBusy} onClick={() => store.setReady(true)}>
          {t.ready}
        </button>
        <button type="button" class="secondary" title={t.notReadyHint} disabled={store.readyBusy} onClick={() => store.setReady(false)}>
          {t.notReady}
        </button>
      </div>
      <p class="readiness" aria-live="polite">
        {r ? (
          <>
            <span>{t.freeSlots(r.readySlots)}</span>
            <span>{t.openTickets(r.openTickets)}</span>
            {r.capacity > 0 && <span>{t.capacity(r.capacity)}</span>}
          </>
        ) : (
          t.readinessUnknown
        )}
      </p>
      <div class="buttons tools">
        <button
          type="button"
          class="secondary"
          aria-pressed={alerts.muted}
          title={alerts.muted ? t.alertsMutedHint : t.alertsOnHint}
          onClick={() => alerts.setMuted(!alerts.muted)}
        >
          {t.muteAlerts}
        </button>
        {permission === 'default' && !alerts.muted && (
          <button type="button" class="secondary" onClick={() => alerts.askPermission()}>
            {t.enableNotifications}
          </button>
        )}
        <button type="button" class="secondary" aria-keyshortcuts="?" onClick={onHelp}>
          {t.shortcutsButton}
        </button>
      </div>
      <LinkState store={store} />
    </section>
  );
}

function Notice({ store }: { store: ManagerStore }) {
  const { t } = useI18n();
  const n = store.notice;
  if (!n) return null;
  const text = n.kind === 'error' ? t.error(n.message) : n.kind === 'transferred' ? t.transferredNotice(n.to) : t.assignedNow;
  return (
    <div class={n.kind === 'error' ? 'alert' : 'info'} role={n.kind === 'error' ? 'alert' : 'status'}>
      <span>{text}</span>
      <button type="button" class="link-button" onClick={() => store.dismissNotice()}>
        {t.closeNotice}
      </button>
    </div>
  );
}

export function channelName(t: Strings, clientId: string, channel = ''): string {
  switch (channelOf(clientId, channel)) {
    case 'web':
      return t.channelWeb;
    case 'telegram':
      return t.channelTelegram;
    case 'email':
      return t.channelEmail;
    default:
      return t.channelOther;
  }
}

export function priorityName(t: Strings, p: number): string {
  return t.priorities[Math.min(t.priorities.length - 1, Math.max(0, p))];
}

export function clientName(v: TicketView): string {
  return v.ticket?.clientName || v.clientId || v.id;
}

function channelOfView(t: Strings, v: TicketView): string {
  return channelName(t, v.clientId || v.ticket?.clientId || '', v.ticket?.channel);
}

/** The first-response SLA: a countdown to `first_response_due_at`, red once it has passed. */
function Sla({ store, view, long }: { store: ManagerStore; view: TicketView; long?: boolean }) {
  const { t } = useI18n();
  const due = store.firstResponseDue(view);
  const now = useSecondClock(due !== null);
  if (due === null) return view.sla && !view.ended ? <span class="sla sla-breached">{t.slaBreached}</span> : null;
  const left = due - now;
  const breached = left <= 0 || view.sla;
  const text = left > 0 ? (long ? t.slaDueIn(clock(left)) : t.slaLeft(clock(left))) : long ? t.slaOverdueBy(clock(left)) : t.slaOver(clock(left));
  return (
    <span class={`sla${breached ? ' sla-breached' : ''}`} role="timer" data-sla={breached ? 'breached' : 'running'}>
      {text}
    </span>
  );
}

function TicketList({ store }: { store: ManagerStore }) {
  const { t } = useI18n();
  const list = store.list();
  return (
    <nav class="tickets" aria-labelledby="my-tickets">
      <h2 id="my-tickets">{t.myTickets}</h2>
      {list.length === 0 ? (
        <p class="empty">{store.listLoaded ? t.noTickets : t.loading}</p>
      ) : (
        <ul>
          {list.map((v) => (
            <TicketItem key={v.id} store={store} view={v} />
          ))}
        </ul>
      )}
    </nav>
  );
}

function TicketItem({ store, view }: { store: ManagerStore; view: TicketView }) {
  const { t } = useI18n();
  const name = clientName(view);
  const unread = store.unread(view);
  const since = store.waitingSince(view);
  const last = store.lastMessage(view);
  const selected = store.openId === view.id;
  const tk = view.ticket;
  const priority = tk?.priority ?? 1;
  // The button names the client (its accessible name starts with what it shows); it covers the
  // whole card (CSS), the rest of the card describes it.
  return (
    <li class={`ticket${selected ? ' selected' : ''}`}>
      <span class="ticket-head">
        <button
          type="button"
          class="ticket-open"
          aria-current={selected ? 'true' : undefined}
          aria-describedby={`tc-${view.id} tm-${view.id} tp-${view.id} tf-${view.id}`}
          data-ticket={view.id}
          onClick={() => store.select(view.id)}
        >
          <span class="visually-hidden">{t.openTicketPrefix}</span>
          <span class="client-name">{name}</span>
        </button>
        <span class="channel" id={`tc-${view.id}`}>{channelOfView(t, view)}</span>
      </span>
      <span class="ticket-meta" id={`tm-${view.id}`}>
        {tk?.queue && <span class="queue">{tk.queue}</span>}
        {tk && <span class={`priority priority-${priority}`}>{priorityName(t, priority)}</span>}
        <Sla store={store} view={view} />
      </span>
      <span class="preview" id={`tp-${view.id}`}>{last ? t.lastMessageFrom(authorName(t, store, last), last.body || (last.files?.length ? t.filesOnly(previewText('', last.files)) : '')) : t.noMessagesYet}</span>
      <span class="ticket-foot" id={`tf-${view.id}`}>
        {store.isTyping(view) && (
          <span class="typing" data-typing="client">
            {t.clientTyping}
          </span>
        )}
        {since !== null && <span class="waiting">{t.waiting(duration(t, Date.now() - since))}</span>}
        {unread > 0 && (
          <span class="badge" title={t.unread(unread)}>
            <span aria-hidden="true">{unread}</span>
            <span class="visually-hidden">{t.unread(unread)}</span>
          </span>
        )}
      </span>
    </li>
  );
}

function authorName(t: Strings, store: ManagerStore, m: Msg): string {
  switch (m.kind) {
    case 'client':
      return t.authorClient;
    case 'manager':
      return store.isMine(m) ? t.authorYou : t.authorManager(m.managerName || m.managerId || '');
    case 'note':
      return t.authorNote;
    default:
      return t.authorSystem;
  }
}

function EmptyConversation() {
  const { t } = useI18n();
  return (
    <section class="conversation empty-conversation" aria-label={t.conversation}>
      <p class="empty">{t.selectTicket}</p>
    </section>
  );
}

export function fieldValue(v: JsonValue): string {
  if (v === null) return '—';
  if (typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return String(v);
  return JSON.stringify(v);
}

function Details({ store, view }: { store: ManagerStore; view: TicketView }) {
  const { t } = useI18n();
  const tk = view.ticket;
  if (!tk) return null;
  const fields = Object.entries(tk.fields ?? {});
  return (
    <dl class="details" aria-label={t.ticketDetails}>
      <div>
        <dt>{t.colQueue}</dt>
        <dd data-field="queue">{tk.queue || '—'}</dd>
      </div>
      <div>
        <dt>{t.colCategory}</dt>
        <dd data-field="category">{tk.category || '—'}</dd>
      </div>
      <div>
        <dt>{t.colPriority}</dt>
        <dd data-field="priority" class={`priority priority-${tk.priority}`}>
          {priorityName(t, tk.priority)}
        </dd>
      </div>
      <div>
        <dt>{t.colChannel}</dt>
        <dd data-field="channel">{channelOfView(t, view)}</dd>
      </div>
      {fields.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd data-field={`fields.${k}`}>{fieldValue(v)}</dd>
        </div>
      ))}
      {(store.firstResponseDue(view) !== null || view.sla) && (
        <div>
          <dt>{t.slaTitle}</dt>
          <dd>
            <Sla store={store} view={view} long />
          </dd>
        </div>
      )}
    </dl>
  );
}

function Conversation({
  store,
  view,
  api,
  isAdmin,
  onResolve,
}: {
  store: ManagerStore;
  view: TicketView;
  api: Api;
  isAdmin: boolean;
  onResolve: () => void;
}) {
  const { t, lang } = useI18n();
  const name = clientName(view);
  const log = useRef<HTMLDivElement>(null);
  const [transferOpen, setTransferOpen] = useState(false);
  // The files' object URLs of this conversation (GetAttachment, once per file): revoked when
  // another ticket is opened (this component is keyed by the ticket).
  const urls = useMemo(
    () =>
      new BlobUrls(async (attachmentId) => {
        const r = await api.manager.getAttachment({ attachmentId });
        return new Blob([r.data as Uint8Array<ArrayBuffer>], { type: r.attachment?.contentType ?? '' });
      }),
    [],
  );
  useEffect(() => () => urls.revokeAll(), [urls]);
  const count = view.messages.length;
  const lastId = count ? view.messages[count - 1].id : '';
  const firstId = count ? view.messages[0].id : '';
  // Where the log was before an older page came in: it stays in place as the page is prepended.
  const anchor = useRef<{ height: number; top: number } | null>(null);
  useLayoutEffect(() => {
    const el = log.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lastId]);
  useLayoutEffect(() => {
    const el = log.current;
    if (el && anchor.current) {
      el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = null;
    }
  }, [firstId]);
  const older = () => {
    const el = log.current;
    if (!el || !view.hasOlder || view.loadingOlder) return;
    anchor.current = { height: el.scrollHeight, top: el.scrollTop };
    void store.loadOlder(view.id);
  };
  const onScroll = () => {
    if ((log.current?.scrollTop ?? 81) <= 80) older();
  };

  return (
    <section class="conversation" aria-labelledby="conv-title">
      <header class="conv-head">
        <h2 id="conv-title">{t.conversationWith(name)}</h2>
        <span class="channel">{channelOfView(t, view)}</span>
        {/* A live region that stays in place: it says so when the client starts typing. */}
        <span class="typing-slot" role="status">
          {store.isTyping(view) && (
            <span class="typing" data-typing="client" title={t.clientTypingLong(name)}>
              <span aria-hidden="true">{t.clientTyping}</span>
              <span class="visually-hidden">{t.clientTypingLong(name)}</span>
            </span>
          )}
        </span>
        <div class="conv-actions">
          <button
            type="button"
            class="secondary"
            aria-expanded={transferOpen}
            aria-controls={`transfer-${view.id}`}
            disabled={!!view.ended || view.transferring}
            onClick={() => setTransferOpen(!transferOpen)}
          >
            {t.transferToggle}
          </button>
          <button
            type="button"
            class="danger"
            aria-label={t.resolveLabel}
            aria-keyshortcuts="e"
            disabled={!!view.ended || view.resolving}
            onClick={onResolve}
          >
            {view.resolving ? t.resolving : t.resolve}
          </button>
        </div>
      </header>
      <Details store={store} view={view} />
      {transferOpen && !view.ended && (
        <Transfer store={store} view={view} api={api} isAdmin={isAdmin} onDone={() => setTransferOpen(false)} />
      )}
      {view.issues.map((i) => (
        <div class="alert" role="alert" key={String(i.seq)}>
          <span>{i.failed ? t.deliveryFailed(i.channel) : t.deliveryUnknown(i.channel)}</span>
          {i.state === 'resent' ? (
            <span>{t.resent}</span>
          ) : (
            <button type="button" disabled={i.state === 'sending'} onClick={() => store.resend(view.id, i.seq)}>
              {t.resend}
            </button>
          )}
        </div>
      ))}
      <div class="log" role="log" aria-label={t.messagesLog} ref={log} tabIndex={0} onScroll={onScroll}>
        {view.hasOlder && (
          <button type="button" class="older" onClick={older} disabled={view.loadingOlder}>
            {view.loadingOlder ? t.loadingOlder : t.loadOlder}
          </button>
        )}
        <ol class="msgs">
          {!view.loaded && count === 0 && <li class="empty">{t.loading}</li>}
          {view.messages.map((m) => (
            <li key={m.id} class={`msg msg-${m.kind}${m.kind === 'manager' && store.isMine(m) ? ' mine' : ''}`} data-id={m.id} data-kind={m.kind}>
              <span class="msg-meta">
                <span class="msg-author">{authorName(t, store, m)}</span>
                <time dateTime={new Date(m.at).toISOString()}>{formatTime(lang, m.at)}</time>
              </span>
              {(m.body || !m.files?.length) && <span class="msg-body">{m.body}</span>}
              {!!m.files?.length && (
                <MessageFiles files={m.files} urls={urls} t={t} lang={lang} cls="" placeholderHref={(f) => `#file-${f.id}`} />
              )}
            </li>
          ))}
        </ol>
      </div>
      {view.ended ? (
        <div class="info ended" role="status">
          <span>
            {view.ended === 'closed'
              ? t.ticketClosed
              : view.transferredTo
                ? t.ticketTransferredTo(view.transferredTo)
                : t.ticketTransferred}
          </span>
          {view.rating > 0 && <span data-rating={view.rating}>{t.ratedBy(view.rating)}</span>}
        </div>
      ) : (
        <>
          <Composer store={store} view={view} mode="reply" />
          <Composer store={store} view={view} mode="note" />
        </>
      )}
    </section>
  );
}

/** Hand the ticket to another manager: a list of managers for an admin (ListManagers), a
 * manager id otherwise (managers may not list each other). */
function Transfer({
  store,
  view,
  api,
  isAdmin,
  onDone,
}: {
  store: ManagerStore;
  view: TicketView;
  api: Api;
  isAdmin: boolean;
  onDone: () => void;
}) {
  const { t } = useI18n();
  const [to, setTo] = useState('');
  const [managers, setManagers] = useState<ManagerState[] | null>(null);
  const [listFailed, setListFailed] = useState(false);
  const id = `transfer-${view.id}`;
  const field = useRef<HTMLSelectElement & HTMLInputElement>(null);

  useEffect(() => {
    if (!isAdmin) return;
    const ctl = new AbortController();
    api.admin.listManagers({}, { signal: ctl.signal }).then(
      (r) => setManagers(r.managers.filter((m) => m.id !== store.user)),
      () => !ctl.signal.aborted && setListFailed(true),
    );
    return () => ctl.abort();
  }, [isAdmin]);
  useEffect(() => field.current?.focus(), [managers === null]);

  const pick = isAdmin && !listFailed;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await store.transfer(view.id, to)) onDone();
  };
  const sorted = managers ? [...managers].sort((a, b) => Number(b.readySlots > 0) - Number(a.readySlots > 0) || (a.displayName || a.id).localeCompare(b.displayName || b.id)) : [];
  return (
    <form class="transfer" id={id} onSubmit={submit} aria-label={t.transferTitle}>
      <label for={`${id}-to`}>{pick ? t.transferToManager : t.transferToId}</label>
      {pick ? (
        managers === null ? (
          <span class="hint">{t.loading}</span>
        ) : (
          <select id={`${id}-to`} ref={field} value={to} required onChange={(e) => setTo(e.currentTarget.value)}>
            <option value="">{sorted.length ? t.chooseManager : t.noOtherManagers}</option>
            {sorted.map((m) => (
              <option key={m.id} value={m.id}>
                {t.managerOption(m.displayName || m.id, m.readySlots, m.openTickets, m.capacity)}
              </option>
            ))}
          </select>
        )
      ) : (
        <input
          id={`${id}-to`}
          ref={field}
          value={to}
          required
          autocomplete="off"
          spellcheck={false}
          onInput={(e) => setTo(e.currentTarget.value)}
        />
      )}
      <button type="submit" aria-disabled={view.transferring || !to.trim()}>
        {view.transferring ? t.transferring : t.transferSubmit}
      </button>
      <button type="button" class="secondary" onClick={onDone}>
        {t.cancel}
      </button>
      <p class="hint">{t.transferHint}</p>
    </form>
  );
}

/** The `/query` the caret is in, when it begins a line of the reply (`/he` names `hello`):
 * from the slash to the end of the word. */
interface SlashToken {
  start: number;
  end: number;
  query: string;
}

function slashToken(text: string, caret: number): SlashToken | null {
  const lineStart = text.lastIndexOf('\n', caret - 1) + 1;
  const m = /^\/([a-z0-9_-]*)$/i.exec(text.slice(lineStart, caret));
  if (!m) return null;
  const rest = /^[a-z0-9_-]*/i.exec(text.slice(caret))?.[0] ?? '';
  return { start: lineStart, end: caret + rest.length, query: m[1] };
}

function Composer({ store, view, mode }: { store: ManagerStore; view: TicketView; mode: DraftMode }) {
  const { t, lang } = useI18n();
  const d = store.draft(view.id, mode);
  const id = `composer-${mode}-${view.id}`;
  const listId = `${id}-canned`;
  const label = mode === 'reply' ? t.replyLabel : t.noteLabel;
  const field = useRef<HTMLTextAreaElement>(null);
  // Where the caret is (the textarea's own state; kept to find the `/` token).
  const [caret, setCaret] = useState(0);
  const [active, setActive] = useState(0);
  // The token Esc closed the list on: it stays closed until the token changes.
  const [dismissed, setDismissed] = useState<string | null>(null);
  const caretAfter = useRef<number | null>(null);

  const canned = mode === 'reply';
  const uploading = store.uploading(d);
  const ready = !d.sending && !uploading && (!!d.text.trim() || d.files.some((p) => p.state === 'done'));
  const token = canned && !d.sending ? slashToken(d.text, Math.min(caret, d.text.length)) : null;
  const tokenKey = token ? `${token.start}:${token.query}` : null;
  const matches = token ? matchCanned(store.canned, token.query) : [];
  const open = !!token && matches.length > 0 && dismissed !== tokenKey;
  const current = open ? Math.min(active, matches.length - 1) : -1;
  const optionId = (r: CannedResponse) => `${listId}-${r.shortcut}`;

  // A new query starts at the first match.
  useEffect(() => setActive(0), [tokenKey]);
  // The list may have changed (workflows.yaml): read it again when it opens.
  useEffect(() => {
    if (token) void store.refreshCanned();
  }, [token !== null]);
  // After an insertion the caret goes after the inserted text.
  useLayoutEffect(() => {
    const el = field.current;
    if (el && caretAfter.current !== null && el.value === d.text) {
      el.setSelectionRange(caretAfter.current, caretAfter.current);
      setCaret(caretAfter.current);
      caretAfter.current = null;
    }
  });
  // The active option stays in sight.
  useEffect(() => {
    if (current >= 0) document.getElementById(optionId(matches[current]))?.scrollIntoView({ block: 'nearest' });
  }, [current, tokenKey]);

  const insert = (r: CannedResponse) => {
    if (!token) return;
    const text = d.text.slice(0, token.start) + r.text + d.text.slice(token.end);
    caretAfter.current = token.start + r.text.length;
    store.setDraft(view.id, mode, text);
    store.typing(view.id);
    field.current?.focus();
  };
  const submit = (e: Event) => {
    e.preventDefault();
    void store.send(view.id, mode);
  };
  const track = (el: HTMLTextAreaElement) => setCaret(el.selectionStart ?? el.value.length);
  return (
    <form class={`composer composer-${mode}`} onSubmit={submit}>
      <label for={id}>
        {label} <kbd aria-hidden="true">{mode === 'reply' ? 'r' : 'n'}</kbd>
      </label>
      <div class="composer-field">
        <textarea
          id={id}
          ref={field}
          rows={mode === 'reply' ? 3 : 2}
          value={d.text}
          readOnly={d.sending}
          placeholder={mode === 'reply' ? t.replyPlaceholder : t.notePlaceholder}
          aria-keyshortcuts={mode === 'reply' ? 'r' : 'n'}
          // The combobox pattern as far as a textarea may take it (it keeps its textbox role):
          // it controls the listbox of canned responses, whose active option it names while the
          // focus stays in the text.
          aria-autocomplete={canned ? 'list' : undefined}
          aria-haspopup={canned ? 'listbox' : undefined}
          aria-controls={open ? listId : undefined}
          aria-activedescendant={open && current >= 0 ? optionId(matches[current]) : undefined}
          onInput={(e) => {
            const el = e.currentTarget;
            store.setDraft(view.id, mode, el.value);
            track(el);
            // Only a reply shows: a note is for colleagues, the client never learns of it.
            if (mode === 'reply' && el.value.trim()) store.typing(view.id);
          }}
          onClick={(e) => track(e.currentTarget)}
          onKeyUp={(e) => {
            if (!open || !['ArrowUp', 'ArrowDown'].includes(e.key)) track(e.currentTarget);
          }}
          onBlur={() => setDismissed(tokenKey)}
          onFocus={(e) => {
            setDismissed(null);
            track(e.currentTarget);
          }}
          onKeyDown={(e) => {
            const key = open ? suggestionKey(e) : null;
            if (key) {
              e.preventDefault();
              if (key === 'take') insert(matches[current]);
              else if (key === 'close') {
                // Closes the list only; a second Esc leaves the field.
                e.stopPropagation();
                setDismissed(tokenKey);
              } else setActive(moved(key, current, matches.length));
              return;
            }
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submit(e);
            // Esc leaves the field, so the shortcuts work again.
            if (e.key === 'Escape') e.currentTarget.blur();
          }}
        />
        {open && (
          <ul class="canned" id={listId} role="listbox" aria-label={t.cannedList}>
            {matches.map((r, i) => (
              <li
                key={r.shortcut}
                id={optionId(r)}
                role="option"
                aria-selected={i === current}
                class={i === current ? 'active' : undefined}
                data-shortcut={r.shortcut}
                // The focus stays in the text: a click picks without leaving it.
                onMouseDown={(e) => e.preventDefault()}
                onClick={() => insert(r)}
              >
                <span class="canned-head">
                  <span class="canned-shortcut">/{r.shortcut}</span>
                  <span class="canned-title">{r.title}</span>
                </span>
                <span class="canned-text">{r.text}</span>
              </li>
            ))}
          </ul>
        )}
      </div>
      {canned && (
        <span class="visually-hidden" role="status">
          {open ? t.cannedOpen(matches.length) : ''}
        </span>
      )}
      {mode === 'reply' && (
        <PendingChips files={d.files} t={t} lang={lang} cls="" locked={d.sending} onRemove={(key) => store.detach(view.id, key)} />
      )}
      <div class="composer-foot">
        {mode === 'reply' && (
          <AttachInput
            id={`${id}-file`}
            label={t.attachToReply}
            cls=""
            disabled={d.sending}
            onFiles={(files) => store.attach(view.id, files)}
          />
        )}
        {mode === 'reply' && (
          <span class="composer-status" role="status">
            {uploading ? t.waitForUploads : ''}
          </span>
        )}
        {d.failed && (
          <span class="error" role="alert">
            {t.notSent}
          </span>
        )}
        <button type="submit" class={mode === 'note' ? 'secondary' : ''} aria-disabled={!ready}>
          {d.sending ? t.sending : mode === 'reply' ? t.send : t.addNote}
        </button>
      </div>
    </form>
  );
}

import { useCallback, useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import { duration, formatTime, type Strings } from '../i18n';
import { api, type Session } from './api';
import { useI18n } from './i18n-context';
import { channelOf, ManagerStore, type AuthLoss, type DraftMode, type Msg, type TicketView } from './store';

function useRerender(): () => void {
  const [, bump] = useReducer((n: number, _: null) => n + 1, 0);
  return useCallback(() => bump(null), []);
}

export function ManagerView({ session, onAuthLost }: { session: Session; onAuthLost: (why: AuthLoss) => void }) {
  const store = useMemo(
    () => new ManagerStore(api(session.token), session.user, session.name, onAuthLost),
    [session.token],
  );
  const rerender = useRerender();
  useEffect(() => {
    const off = store.subscribe(rerender);
    store.start();
    // Waiting times move on without events.
    const tick = setInterval(rerender, 15_000);
    return () => {
      off();
      clearInterval(tick);
      store.stop();
    };
  }, [store]);

  const open = store.open();
  return (
    <div class="manager">
      <Toolbar store={store} />
      <Notice store={store} />
      <div class="panes">
        <TicketList store={store} />
        {open ? <Conversation key={open.id} store={store} view={open} /> : <EmptyConversation />}
      </div>
    </div>
  );
}

function LinkState({ store }: { store: ManagerStore }) {
  const { t } = useI18n();
  const tick = useRerender();
  useEffect(() => {
    if (store.link !== 'reconnecting') return;
    const id = setInterval(tick, 1000);
    return () => clearInterval(id);
  }, [store.link]);
  const secs = Math.max(0, Math.ceil((store.retryAt - Date.now()) / 1000));
  const text =
    store.link === 'live' ? t.live : store.link === 'connecting' ? t.connecting : secs > 0 ? t.reconnectingIn(secs) : t.reconnecting;
  return (
    <span class={`link link-${store.link}`} role="status" aria-live="polite" data-link={store.link}>
      {text}
    </span>
  );
}

function Toolbar({ store }: { store: ManagerStore }) {
  const { t } = useI18n();
  const r = store.readiness;
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
      <LinkState store={store} />
    </section>
  );
}

function Notice({ store }: { store: ManagerStore }) {
  const { t } = useI18n();
  const n = store.notice;
  if (!n) return null;
  return (
    <div class={n.kind === 'error' ? 'alert' : 'info'} role={n.kind === 'error' ? 'alert' : 'status'}>
      <span>{n.kind === 'error' ? t.error(n.message) : t.assignedNow}</span>
      <button type="button" class="link-button" onClick={() => store.dismissNotice()}>
        {t.closeNotice}
      </button>
    </div>
  );
}

export function channelName(t: Strings, clientId: string): string {
  switch (channelOf(clientId)) {
    case 'web':
      return t.channelWeb;
    case 'tg':
      return t.channelTelegram;
    case 'email':
      return t.channelEmail;
    default:
      return t.channelOther;
  }
}

function clientName(v: TicketView): string {
  return v.ticket?.clientName || v.clientId || v.id;
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
  return (
    <li>
      <button
        type="button"
        class={`ticket${selected ? ' selected' : ''}`}
        aria-current={selected ? 'true' : undefined}
        aria-label={t.openTicketLabel(name)}
        aria-describedby={`tp-${view.id} tf-${view.id}`}
        data-ticket={view.id}
        onClick={() => store.select(view.id)}
      >
        <span class="ticket-head">
          <span class="client-name">{name}</span>
          <span class="channel">{channelName(t, view.clientId || view.ticket?.clientId || '')}</span>
        </span>
        <span class="preview" id={`tp-${view.id}`}>{last ? t.lastMessageFrom(authorName(t, store, last), last.body) : t.noMessagesYet}</span>
        <span class="ticket-foot" id={`tf-${view.id}`}>
          {since !== null && <span class="waiting">{t.waiting(duration(t, Date.now() - since))}</span>}
          {view.sla && <span class="sla">{t.slaBreached}</span>}
          {unread > 0 && (
            <span class="badge" title={t.unread(unread)}>
              <span aria-hidden="true">{unread}</span>
              <span class="visually-hidden">{t.unread(unread)}</span>
            </span>
          )}
        </span>
      </button>
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

function Conversation({ store, view }: { store: ManagerStore; view: TicketView }) {
  const { t, lang } = useI18n();
  const name = clientName(view);
  const log = useRef<HTMLDivElement>(null);
  const count = view.messages.length;
  const lastId = count ? view.messages[count - 1].id : '';
  useLayoutEffect(() => {
    const el = log.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lastId, count]);

  return (
    <section class="conversation" aria-labelledby="conv-title">
      <header class="conv-head">
        <h2 id="conv-title">{t.conversationWith(name)}</h2>
        <span class="channel">{channelName(t, view.clientId)}</span>
        <button
          type="button"
          class="danger"
          aria-label={t.resolveLabel}
          disabled={!!view.ended || view.resolving}
          onClick={() => store.resolve(view.id)}
        >
          {view.resolving ? t.resolving : t.resolve}
        </button>
      </header>
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
      <div class="log" role="log" aria-label={t.messagesLog} ref={log}>
        <ol class="msgs">
        {!view.loaded && count === 0 && <li class="empty">{t.loading}</li>}
        {view.messages.map((m) => (
          <li key={m.id} class={`msg msg-${m.kind}${m.kind === 'manager' && store.isMine(m) ? ' mine' : ''}`} data-id={m.id}>
            <span class="msg-meta">
              <span class="msg-author">{authorName(t, store, m)}</span>
              <time dateTime={new Date(m.at).toISOString()}>{formatTime(lang, m.at)}</time>
            </span>
            <span class="msg-body">{m.body}</span>
          </li>
        ))}
        </ol>
      </div>
      {view.ended ? (
        <p class="info" role="status">
          {view.ended === 'closed' ? t.ticketClosed : t.ticketTransferred}
        </p>
      ) : (
        <>
          <Composer store={store} view={view} mode="reply" />
          <Composer store={store} view={view} mode="note" />
        </>
      )}
    </section>
  );
}

function Composer({ store, view, mode }: { store: ManagerStore; view: TicketView; mode: DraftMode }) {
  const { t } = useI18n();
  const d = store.draft(view.id, mode);
  const [id] = useState(() => `composer-${mode}-${view.id}`);
  const label = mode === 'reply' ? t.replyLabel : t.noteLabel;
  const submit = (e: Event) => {
    e.preventDefault();
    void store.send(view.id, mode);
  };
  return (
    <form class={`composer composer-${mode}`} onSubmit={submit}>
      <label for={id}>{label}</label>
      <textarea
        id={id}
        rows={mode === 'reply' ? 3 : 2}
        value={d.text}
        readOnly={d.sending}
        placeholder={mode === 'reply' ? t.replyPlaceholder : t.notePlaceholder}
        onInput={(e) => store.setDraft(view.id, mode, e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submit(e);
        }}
      />
      <div class="composer-foot">
        {d.failed && (
          <span class="error" role="alert">
            {t.notSent}
          </span>
        )}
        <button type="submit" class={mode === 'note' ? 'secondary' : ''} aria-disabled={d.sending || !d.text.trim()}>
          {d.sending ? t.sending : mode === 'reply' ? t.send : t.addNote}
        </button>
      </div>
    </form>
  );
}

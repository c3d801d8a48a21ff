import { useCallback, useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import { formatTime, LANGS, widgetStrings, type Lang, type WidgetStrings as Strings } from '../i18n';
import { AttachInput, MessageFiles, PendingChips } from '../shared/FileViews';
import type { TokenSource } from './api';
import { ChatStore, type Item, type Survey } from './chat';
import { moved, suggestionKey } from '../shared/suggest';

function useRerender(): () => void {
  const [, bump] = useReducer((n: number, _: null) => n + 1, 0);
  return useCallback(() => bump(null), []);
}

/** What the file picker offers first: the engine's default types (INBOX_ATTACHMENT_TYPES). */
export const DEFAULT_ACCEPT = 'image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain';

export function Widget({
  apiUrl,
  token,
  lang: initialLang,
  accept = DEFAULT_ACCEPT,
}: {
  apiUrl: string;
  token: TokenSource;
  lang: Lang;
  accept?: string;
}) {
  const [lang, setLang] = useState<Lang>(initialLang);
  const t = widgetStrings(lang);
  const store = useMemo(() => new ChatStore(apiUrl, token), [apiUrl, token]);
  const rerender = useRerender();
  useEffect(() => {
    const off = store.subscribe(rerender);
    store.start();
    return () => {
      off();
      store.stop();
    };
  }, [store]);

  const [ids] = useState(() => {
    const n = Math.random().toString(36).slice(2, 8);
    return { title: `iw-title-${n}`, input: `iw-input-${n}` };
  });

  return (
    <section class="iw" lang={lang} aria-labelledby={ids.title}>
      <header class="iw-head">
        <h2 id={ids.title}>{t.widgetTitle}</h2>
        <LinkState t={t} store={store} />
        <select class="iw-lang" aria-label={t.language} value={lang} onChange={(e) => setLang(e.currentTarget.value as Lang)}>
          {LANGS.map((l) => (
            <option key={l} value={l}>
              {l.toUpperCase()}
            </option>
          ))}
        </select>
      </header>
      {!store.online && (
        <p class="iw-banner" role="status">
          {t.offline}
        </p>
      )}
      {store.sessionExpired && (
        <p class="iw-banner iw-banner-error" role="alert">
          {t.widgetSessionExpired}
        </p>
      )}
      <Log t={t} lang={lang} store={store} />
      <Typing t={t} store={store} />
      <Composer t={t} lang={lang} store={store} inputId={ids.input} accept={accept} />
    </section>
  );
}

function LinkState({ t, store }: { t: Strings; store: ChatStore }) {
  const text = store.link === 'live' ? t.live : store.link === 'connecting' ? t.connecting : t.reconnecting;
  return (
    <span class={`iw-link iw-link-${store.link}`} role="status" aria-live="polite" data-link={store.link}>
      {text}
    </span>
  );
}

function Log({ t, lang, store }: { t: Strings; lang: Lang; store: ChatStore }) {
  const box = useRef<HTMLDivElement>(null);
  const top = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const heightBefore = useRef(0);
  const prepended = useRef(store.prepended);

  // Older messages went on top: keep what the reader was looking at in place.
  // Otherwise follow new messages while the reader is at the bottom.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (prepended.current !== store.prepended) {
      prepended.current = store.prepended;
      el.scrollTop += el.scrollHeight - heightBefore.current;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    heightBefore.current = el.scrollHeight;
  });

  useEffect(() => {
    const el = top.current;
    if (!el || !box.current) return;
    const io = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting) && store.loaded) void store.loadOlder();
      },
      { root: box.current, rootMargin: '40px 0px 0px 0px' },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [store, store.loaded]);

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    heightBefore.current = el.scrollHeight;
  };

  return (
    // Focusable: a reader scrolls it from the keyboard too (it has no focusable content of its own).
    <div class="iw-log" role="log" aria-label={t.messagesLog} ref={box} onScroll={onScroll} tabIndex={0}>
      <div ref={top} class="iw-top">
        {store.loadingOlder ? t.loadingOlder : store.loaded && !store.hasOlder && store.items.length > 0 ? t.startOfChat : ''}
      </div>
      {store.loaded && store.items.length === 0 && <p class="iw-empty">{t.emptyChat}</p>}
      {!store.loaded && store.items.length === 0 && <p class="iw-empty">{t.loading}</p>}
      <ol class="iw-msgs">
        {store.items.map((m) => (
          <Bubble key={m.key} t={t} lang={lang} m={m} store={store} />
        ))}
      </ol>
    </div>
  );
}

function stateText(t: Strings, m: Item): string {
  switch (m.state) {
    case 'queued':
      return t.stateQueued;
    case 'sending':
      return t.stateSending;
    case 'sent':
    case 'pending':
      // Taken in; whether it passed the check is known only from the history.
      return t.stateSent;
    case 'delivered':
      return t.stateDelivered;
    case 'failed':
      return t.stateFailed(m.error || '');
    default:
      return '';
  }
}

function Bubble({ t, lang, m, store }: { t: Strings; lang: Lang; m: Item; store: ChatStore }) {
  if (m.kind === 'rating') {
    return (
      <li class="iw-msg iw-system" data-kind="rating" data-id={m.key}>
        <span class="iw-thanks">{t.rateThanks(m.rating ?? 0)}</span>
      </li>
    );
  }
  const who = m.kind === 'client' ? t.you : m.kind === 'manager' ? m.managerName || t.bank : m.kind === 'warning' ? t.blockedLabel : t.bank;
  const survey = m.kind === 'system' ? store.survey(m.key) : undefined;
  const bodyId = `iw-q-${m.key}`;
  return (
    <li class={`iw-msg iw-${m.kind}${survey ? ' iw-question' : ''}`} data-kind={m.kind} data-state={m.state} data-id={m.key}>
      {m.kind !== 'system' && <span class="iw-who">{who}</span>}
      {(m.body || !m.files?.length) && (
        <span class="iw-body" id={bodyId}>
          {m.body}
        </span>
      )}
      {!!m.files?.length && (
        <MessageFiles files={m.files} urls={store.urls} t={t} lang={lang} cls="iw-" placeholderHref={(f) => store.fileHref(f.id)} />
      )}
      {survey && <Rating t={t} store={store} survey={survey} questionId={bodyId} />}
      <span class="iw-meta">
        <time dateTime={new Date(m.at).toISOString()}>{formatTime(lang, m.at)}</time>
        {m.kind === 'client' && m.state && <span class="iw-state">{stateText(t, m)}</span>}
        {m.state === 'failed' && (
          <button type="button" class="iw-link-button" onClick={() => store.discard(m.key)}>
            {t.discard}
          </button>
        )}
      </span>
    </li>
  );
}

/** Five buttons answering the satisfaction question; a thank-you once the engine took it. */
function Rating({ t, store, survey, questionId }: { t: Strings; store: ChatStore; survey: Survey; questionId: string }) {
  const state = store.surveyState(survey);
  const thanks = useRef<HTMLParagraphElement>(null);
  const clicked = useRef(false);
  useEffect(() => {
    // The button that had the focus is gone: give it to the thank-you line.
    if (state === 'done' && clicked.current) thanks.current?.focus();
  }, [state]);
  if (state === 'expired') return null;
  if (state === 'done') {
    return (
      <p class="iw-thanks" role="status" tabIndex={-1} ref={thanks} data-rating={survey.rating}>
        {t.rateThanks(survey.rating ?? 0)}
      </p>
    );
  }
  const sending = state === 'sending';
  return (
    <div class="iw-rating" role="group" aria-labelledby={questionId} data-state={state}>
      <div class="iw-rate-buttons">
        {[1, 2, 3, 4, 5].map((n) => (
          <button
            key={n}
            type="button"
            class="iw-rate"
            aria-label={t.rateButton(n)}
            aria-pressed={survey.chosen === n}
            aria-disabled={sending}
            onClick={() => {
              if (sending) return;
              clicked.current = true;
              store.rate(survey.mid, n);
            }}
          >
            {n}
          </button>
        ))}
      </div>
      <div class="iw-rate-scale" aria-hidden="true">
        <span>{t.ratePoor}</span>
        <span>{t.rateExcellent}</span>
      </div>
      {sending && (
        <p class="iw-rate-note" role="status">
          {t.rateSending}
        </p>
      )}
    </div>
  );
}

/** "Alice is typing…" while the manager's signals come (a live region that stays in place). */
function Typing({ t, store }: { t: Strings; store: ChatStore }) {
  const on = store.isManagerTyping();
  return (
    <p class="iw-typing" role="status" data-typing={on ? 'manager' : undefined}>
      {on ? (store.managerName ? t.managerTyping(store.managerName) : t.managerTypingAnon) : ''}
    </p>
  );
}

function Composer({ t, lang, store, inputId, accept }: { t: Strings; lang: Lang; store: ChatStore; inputId: string; accept: string }) {
  const [text, setText] = useState('');
  const field = useRef<HTMLTextAreaElement>(null);
  // The bot's commands while the text is `/` and the start of a name: a listbox the textarea
  // controls (the console's canned responses work the same way). Esc closes it for this text.
  const hints = store.commandHints(text);
  const [active, setActive] = useState(0);
  const [dismissed, setDismissed] = useState<string | null>(null);
  const open = hints.length > 0 && dismissed !== text;
  const current = open ? Math.min(active, hints.length - 1) : -1;
  const listId = `${inputId}-commands`;
  const optionId = (name: string) => `${listId}-${name}`;
  useEffect(() => setActive(0), [text]);
  const take = (name: string) => {
    setText(`/${name} `);
    field.current?.focus();
  };
  // Send was pressed while a file was still uploading: say why nothing happened.
  const [waiting, setWaiting] = useState(false);
  const busy = store.uploading();
  const files = store.attached.some((p) => p.state === 'done');
  const ready = (!!text.trim() || files) && !busy && !store.sessionExpired;
  useEffect(() => {
    if (!busy) setWaiting(false);
  }, [busy]);
  const submit = (e: Event) => {
    e.preventDefault();
    if (busy && (text.trim() || store.attached.length)) setWaiting(true);
    if (!ready) return;
    if (store.submit(text)) setText('');
  };
  return (
    <form class="iw-composer" onSubmit={submit}>
      {open && (
        <ul class="iw-commands" id={listId} role="listbox" aria-label={t.commandList}>
          {hints.map((c, i) => (
            <li
              key={c.name}
              id={optionId(c.name)}
              role="option"
              aria-selected={i === current}
              class={i === current ? 'iw-active' : undefined}
              data-command={c.name}
              // The focus stays in the text: a click takes the command without leaving it.
              onMouseDown={(e) => e.preventDefault()}
              onClick={() => take(c.name)}
            >
              <span class="iw-command-name">/{c.name}</span>
              {c.description && <span class="iw-command-text">{c.description}</span>}
            </li>
          ))}
        </ul>
      )}
      <span class="iw-hidden" role="status">
        {open ? t.commandsOpen(hints.length) : ''}
      </span>
      <PendingChips files={store.attached} t={t} lang={lang} cls="iw-" onRemove={(key) => store.detach(key)} />
      <p class="iw-compose-note" role="status">
        {waiting && busy ? t.waitForUploads : ''}
      </p>
      <div class="iw-compose-row">
        <AttachInput
          id={`${inputId}-file`}
          label={t.attachFiles}
          cls="iw-"
          accept={accept}
          disabled={store.sessionExpired}
          onFiles={(f) => store.attach(f)}
        />
        <label for={inputId} class="iw-hidden">
          {t.messageLabel}
        </label>
        <textarea
          id={inputId}
          ref={field}
          rows={2}
          value={text}
          placeholder={t.messagePlaceholder}
          aria-autocomplete={store.commands.length ? 'list' : undefined}
          aria-haspopup={store.commands.length ? 'listbox' : undefined}
          aria-controls={open ? listId : undefined}
          aria-activedescendant={open ? optionId(hints[current].name) : undefined}
          onInput={(e) => {
            const value = e.currentTarget.value;
            setText(value);
            if (value.trim()) store.typing();
          }}
          onBlur={() => setDismissed(text)}
          onFocus={() => setDismissed(null)}
          onKeyDown={(e) => {
            const key = open ? suggestionKey(e) : null;
            // Enter on a command written out already sends it; Tab always takes the active one.
            const writtenOut = e.key === 'Enter' && open && text.slice(1).toLowerCase() === hints[current].name;
            if (key && !writtenOut) {
              e.preventDefault();
              if (key === 'take') take(hints[current].name);
              else if (key === 'close') {
                e.stopPropagation();
                setDismissed(text);
              } else setActive(moved(key, current, hints.length));
              return;
            }
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) submit(e);
          }}
        />
        <button type="submit" class="iw-send" aria-disabled={!ready}>
          {t.send}
        </button>
      </div>
    </form>
  );
}

// Full-text search over the messages the caller may read (ManagerService / AdminService
// SearchMessages): a labelled field, the hits with their client and snippet. The snippet's
// matches (between `[` and `]`) show as <mark>; everything is rendered as text, never as HTML.
import { useRef, useState } from 'preact/hooks';
import { Code, ConnectError } from '@connectrpc/connect';
import type { SearchHit } from '../gen/inbox/v1/manager_pb';
import { useI18n } from './i18n-context';

export type SnippetPart = { text: string; match: boolean };

/** The snippet cut into plain and matched parts (`a [b] c` → a, b (match), c). An unclosed `[`
 * stays text. */
export function snippetParts(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  const re = /\[([^\]]*)\]/g;
  let at = 0;
  for (let m = re.exec(snippet); m; m = re.exec(snippet)) {
    if (m.index > at) parts.push({ text: snippet.slice(at, m.index), match: false });
    if (m[1]) parts.push({ text: m[1], match: true });
    at = m.index + m[0].length;
  }
  if (at < snippet.length) parts.push({ text: snippet.slice(at), match: false });
  return parts;
}

export function Snippet({ snippet }: { snippet: string }) {
  return (
    <>
      {snippetParts(snippet).map((p, i) => (p.match ? <mark key={i}>{p.text}</mark> : <span key={i}>{p.text}</span>))}
    </>
  );
}

export function MessageSearch({
  id,
  search,
  clientLabel,
  canOpen,
  onOpen,
  onAuthLost,
}: {
  /** Prefix of the element ids (one search per view). */
  id: string;
  search: (query: string, signal: AbortSignal) => Promise<SearchHit[]>;
  clientLabel: (hit: SearchHit) => string;
  /** Whether a hit's ticket can be opened here (else it shows why not). */
  canOpen: (hit: SearchHit) => boolean;
  onOpen: (hit: SearchHit) => void;
  onAuthLost?: (why: 'expired' | 'forbidden') => void;
}) {
  const { t } = useI18n();
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [searched, setSearched] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const ctl = useRef<AbortController | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const q = query.trim();
    if (!q || q.length > 200) return;
    ctl.current?.abort();
    const c = new AbortController();
    ctl.current = c;
    setBusy(true);
    setError(null);
    try {
      const found = await search(q, c.signal);
      if (c.signal.aborted) return;
      setHits(found);
      setSearched(q);
    } catch (err) {
      if (c.signal.aborted) return;
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unauthenticated && onAuthLost) onAuthLost('expired');
      else if (ce.code === Code.PermissionDenied && onAuthLost) onAuthLost('forbidden');
      else setError(ce.rawMessage || String(ce.code));
    } finally {
      if (ctl.current === c) setBusy(false);
    }
  };
  const clear = () => {
    ctl.current?.abort();
    setHits(null);
    setSearched('');
    setError(null);
    setQuery('');
    setBusy(false);
  };

  const field = `${id}-q`;
  return (
    <section class="search" aria-labelledby={`${id}-title`} data-search={id}>
      <form class="search-form" role="search" onSubmit={submit}>
        <h2 id={`${id}-title`} class="visually-hidden">
          {t.searchTitle}
        </h2>
        <label for={field}>{t.searchLabel}</label>
        <input
          id={field}
          type="search"
          value={query}
          maxLength={200}
          autocomplete="off"
          placeholder={t.searchPlaceholder}
          onInput={(e) => setQuery(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Escape') {
              e.preventDefault();
              if (hits || query) clear();
              else e.currentTarget.blur();
            }
          }}
        />
        <button type="submit" aria-disabled={busy || !query.trim()}>
          {busy ? t.searching : t.searchSubmit}
        </button>
        {(hits || error) && (
          <button type="button" class="secondary" onClick={clear}>
            {t.searchClear}
          </button>
        )}
      </form>
      {error && (
        <p class="error" role="alert">
          {t.searchFailed(error)}
        </p>
      )}
      <p class="visually-hidden" role="status">
        {hits ? t.searchResults(hits.length, searched) : ''}
      </p>
      {hits &&
        (hits.length === 0 ? (
          <p class="empty">{t.searchNoResults(searched)}</p>
        ) : (
          <ul class="search-results" aria-label={t.searchResults(hits.length, searched)}>
            {hits.map((h) => {
              const m = h.message;
              const open = !!m && canOpen(h);
              const body = (
                <>
                  <span class="search-client">{clientLabel(h)}</span>
                  <span class="search-snippet">
                    <Snippet snippet={h.snippet || m?.body || ''} />
                  </span>
                </>
              );
              return (
                <li key={m?.id ?? h.snippet} class="search-hit" data-ticket={m?.ticketId} data-message={m?.id}>
                  {open ? (
                    <button type="button" class="link-button search-open" onClick={() => onOpen(h)}>
                      {body}
                    </button>
                  ) : (
                    <>
                      {body}
                      <span class="hint">{t.searchNotOpenable}</span>
                    </>
                  )}
                </li>
              );
            })}
          </ul>
        ))}
    </section>
  );
}

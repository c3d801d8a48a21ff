// The supervisor's view (role admin): queues now, managers, tickets by status / queue / age with
// their rating, one ticket's audit trail, the charts of GetStats, the reports (Reports.tsx) and the
// dry run of a changed spec (DryRun.tsx).
// Refreshes every 10 s while shown, and at once on live events that change what it shows (the
// reports load when their period or grouping changes).
import { MessageSearch } from './Search';
import { DryRun } from './DryRun';
import { Reports } from './Reports';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import type { JsonObject } from '@bufbuild/protobuf';
import { TicketStatus } from '../gen/inbox/v1/manager_pb';
import type { AdminTicket, GetAuditTrailResponse, GetStatsResponse, ManagerState } from '../gen/inbox/v1/admin_pb';
import { formatTime, type Lang, type Strings } from '../i18n';
import type { Api } from './api';
import { useI18n } from './i18n-context';
import { channelName, fieldValue, priorityName } from './ManagerView';
import type { AuthLoss, ManagerStore } from './store';
import { BarChart, LineChart, type Bar, type Series } from './charts';

const REFRESH_MS = 10_000;
const PAGE = 100;
const AGES = [0, 300, 900, 3600, 4 * 3600, 86_400, 7 * 86_400];
const PERIODS = [1, 6, 24, 72, 168];
/** Upper bounds of the first-response histogram's bins, in seconds (the last bin is open). */
const FR_BINS = [30, 60, 120, 300, 600, 1800, 3600, 7200];
const RATING_COLORS = ['#b3261e', '#c2540a', '#7a6a00', '#3b7d23', '#1d6b3a'];
/** Live events after which the numbers have moved. */
const REFRESH_ON = new Set([
  'ticket_assigned',
  'ticket_closed',
  'ticket_transferred_away',
  'satisfaction_recorded',
  'sla_breached',
  'message_visible',
]);

function statusName(t: Strings, s: TicketStatus): string {
  switch (s) {
    case TicketStatus.OPEN:
      return t.statusOpen;
    case TicketStatus.WAITING:
      return t.statusWaiting;
    case TicketStatus.ASSIGNED:
      return t.statusAssigned;
    case TicketStatus.CLOSED:
      return t.statusClosed;
    default:
      return '';
  }
}

/** "45 s", "12 min", "3 h 5 min", "2 d": a span of seconds. */
export function secs(t: Strings, s: number): string {
  const n = Math.max(0, Math.round(s));
  if (n < 60) return t.seconds(n);
  const min = Math.floor(n / 60);
  if (min < 60) return t.minutes(min);
  const h = Math.floor(min / 60);
  if (h < 48) return t.hoursMinutes(h, min % 60);
  return t.days(Math.floor(h / 24));
}

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

interface Filters {
  status: TicketStatus;
  queue: string;
  age: number;
}

interface Data {
  stats: GetStatsResponse | null;
  managers: ManagerState[] | null;
  tickets: AdminTicket[] | null;
  next: string;
  at: number;
  /** The filters `tickets` answer. */
  shown: Filters | null;
}

export function SupervisorView({
  api,
  store,
  active,
  onAuthLost,
}: {
  api: Api;
  store: ManagerStore;
  active: boolean;
  onAuthLost: (why: AuthLoss) => void;
}) {
  const { t, lang } = useI18n();
  const admin = api.admin;
  const [filters, setFilters] = useState<Filters>({ status: TicketStatus.UNSPECIFIED, queue: '', age: 0 });
  const [hours, setHours] = useState(24);
  const [data, setData] = useState<Data>({ stats: null, managers: null, tickets: null, next: '', at: 0, shown: null });
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [audit, setAudit] = useState<GetAuditTrailResponse | null>(null);
  /** Refresh presses, for the reports (read again only when asked). */
  const [reportsAsked, setReportsAsked] = useState(0);
  const [auditError, setAuditError] = useState<string | null>(null);
  const [moreBusy, setMoreBusy] = useState(false);
  const wanted = useRef(PAGE);
  const busy = useRef(false);
  const again = useRef(false);
  const generation = useRef(0);
  const latest = useRef({ filters, hours, selected });
  latest.current = { filters, hours, selected };

  const fail = (e: unknown, set: (m: string) => void) => {
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated) onAuthLost('expired');
    else if (err.code === Code.PermissionDenied) onAuthLost('forbidden');
    else set(err.rawMessage || String(err.code));
  };

  const request = (f: Filters, pageToken: string, pageSize: number) =>
    admin.listTickets({
      statuses: f.status ? [f.status] : [],
      queues: f.queue ? [f.queue] : [],
      olderThanSeconds: BigInt(f.age),
      pageSize,
      pageToken,
    });

  /** Reads everything again (as many tickets as are shown); one refresh at a time. */
  const refresh = async () => {
    if (busy.current) {
      again.current = true;
      return;
    }
    busy.current = true;
    const gen = generation.current;
    const { filters: f, hours: h, selected: sel } = latest.current;
    try {
      // Each part on its own: one failing (an older engine without GetStats) leaves the others.
      const [stats, managers, list] = await Promise.allSettled([
        admin.getStats({ hours: h }),
        admin.listManagers({}),
        (async () => {
          const page = await request(f, '', Math.min(500, wanted.current));
          const tickets = [...page.tickets];
          let next = page.nextPageToken;
          while (next && tickets.length < wanted.current) {
            const more = await request(f, next, PAGE);
            tickets.push(...more.tickets);
            next = more.nextPageToken;
          }
          return { tickets, next };
        })(),
      ]);
      const failed = [stats, managers, list].find((r) => r.status === 'rejected');
      if (gen === generation.current) {
        setData((d) => ({
          stats: stats.status === 'fulfilled' ? stats.value : d.stats,
          managers: managers.status === 'fulfilled' ? managers.value.managers : d.managers,
          tickets: list.status === 'fulfilled' ? list.value.tickets : d.tickets,
          next: list.status === 'fulfilled' ? list.value.next : d.next,
          shown: list.status === 'fulfilled' ? f : d.shown,
          at: Date.now(),
        }));
        if (failed) fail(failed.reason, setError);
        else setError(null);
      }
      if (sel) await loadAudit(sel);
    } finally {
      busy.current = false;
      if (again.current) {
        again.current = false;
        void refresh();
      }
    }
  };

  const loadAudit = async (id: string) => {
    try {
      const r = await admin.getAuditTrail({ ticketId: id });
      if (latest.current.selected === id) {
        setAudit(r);
        setAuditError(null);
      }
    } catch (e) {
      fail(e, setAuditError);
    }
  };

  const loadMore = async () => {
    if (moreBusy || !data.next) return;
    setMoreBusy(true);
    try {
      const more = await request(filters, data.next, PAGE);
      wanted.current = (data.tickets?.length ?? 0) + more.tickets.length;
      setData((d) => ({ ...d, tickets: [...(d.tickets ?? []), ...more.tickets], next: more.nextPageToken }));
    } catch (e) {
      fail(e, setError);
    } finally {
      setMoreBusy(false);
    }
  };

  // New filters or period: from the first page.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    generation.current++;
    wanted.current = PAGE;
    setData((d) => ({ ...d, tickets: null, next: '', shown: null }));
    if (active) void refresh();
  }, [filters, hours]);

  // Every 10 s while the view is shown and the page visible; at once when it comes back.
  useEffect(() => {
    if (!active) return;
    void refresh();
    const id = setInterval(() => {
      if (document.visibilityState === 'visible') void refresh();
    }, REFRESH_MS);
    const onVisible = () => document.visibilityState === 'visible' && void refresh();
    document.addEventListener('visibilitychange', onVisible);
    window.addEventListener('online', onVisible);
    let soon: ReturnType<typeof setTimeout> | undefined;
    const off = store.onEvent((ev) => {
      if (!REFRESH_ON.has(ev.kind)) return;
      clearTimeout(soon);
      soon = setTimeout(() => void refresh(), 300);
    });
    return () => {
      clearInterval(id);
      clearTimeout(soon);
      document.removeEventListener('visibilitychange', onVisible);
      window.removeEventListener('online', onVisible);
      off();
    };
  }, [active]);

  const select = (id: string) => {
    const sel = id === selected ? null : id;
    setSelected(sel);
    latest.current.selected = sel;
    setAudit(null);
    setAuditError(null);
    if (sel) void loadAudit(sel);
  };

  const queues = useMemo(() => {
    const s = new Set<string>();
    data.stats?.queues.forEach((q) => s.add(q.queue));
    data.stats?.waiting.forEach((w) => s.add(w.queue));
    data.tickets?.forEach((a) => a.queue && s.add(a.queue));
    if (filters.queue) s.add(filters.queue);
    return [...s].sort();
  }, [data, filters.queue]);

  const statuses = [TicketStatus.UNSPECIFIED, TicketStatus.OPEN, TicketStatus.WAITING, TicketStatus.ASSIGNED, TicketStatus.CLOSED];
  const when = (ts?: Timestamp) => (ts ? formatTime(lang, timestampMs(ts)) : '');
  const selectedTicket = data.tickets?.find((a) => a.ticket?.id === selected) ?? audit?.ticket;

  return (
    <div class="supervisor">
      <MessageSearch
        id="admin-search"
        search={async (query, signal) => (await admin.searchMessages({ query, pageSize: 20 }, { signal })).hits}
        clientLabel={(h) => {
          const a = data.tickets?.find((x) => x.ticket?.id === h.message?.ticketId);
          return a?.ticket?.clientName || h.clientId;
        }}
        canOpen={(h) => !!h.message}
        onOpen={(h) => {
          const id = h.message!.ticketId;
          if (id !== selected) select(id);
          requestAnimationFrame(() => document.getElementById('audit')?.scrollIntoView({ block: 'nearest' }));
        }}
        onAuthLost={onAuthLost}
      />
      <div class="toolbar">
        <h2>{t.supervisorTitle}</h2>
        <label>
          {t.periodLabel}{' '}
          <select value={String(hours)} onChange={(e) => setHours(Number(e.currentTarget.value))}>
            {PERIODS.map((h) => (
              <option key={h} value={String(h)}>
                {t.periodHours(h)}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          class="secondary"
          onClick={() => {
            // The reports too (they are read on demand only: a long period costs the database).
            setReportsAsked((n) => n + 1);
            void refresh();
          }}
        >
          {t.refresh}
        </button>
        <span class="hint" aria-live="off">
          {data.at ? t.updatedAt(formatTime(lang, data.at), REFRESH_MS / 1000) : t.loading}
        </span>
      </div>
      {error && (
        <p class="alert" role="alert">
          {t.error(error)}
        </p>
      )}
      <div class="sup-grid">
        <Queues stats={data.stats} />
        <Managers managers={data.managers} when={when} />
      </div>
      <Charts stats={data.stats} hours={hours} lang={lang} />
      <Reports api={api} active={active} asked={reportsAsked} onAuthLost={onAuthLost} />
      <DryRun api={api} onAuthLost={onAuthLost} />
      <div class="sup-lower">
        <section
          aria-labelledby="tickets-title"
          class="sup-tickets"
          aria-busy={data.tickets === null}
          data-status={data.shown ? String(data.shown.status) : undefined}
          data-queue={data.shown?.queue}
        >
          <h3 id="tickets-title">{t.tickets}</h3>
          <div class="filters">
            <label>
              {t.statusFilter}{' '}
              <select value={String(filters.status)} onChange={(e) => setFilters({ ...filters, status: Number(e.currentTarget.value) as TicketStatus })}>
                {statuses.map((s) => (
                  <option key={s} value={String(s)}>
                    {s === TicketStatus.UNSPECIFIED ? t.statusAll : statusName(t, s)}
                  </option>
                ))}
              </select>
            </label>
            <label>
              {t.queueFilter}{' '}
              <select value={filters.queue} onChange={(e) => setFilters({ ...filters, queue: e.currentTarget.value })}>
                <option value="">{t.queueAll}</option>
                {queues.map((q) => (
                  <option key={q} value={q}>
                    {q}
                  </option>
                ))}
              </select>
            </label>
            <label>
              {t.ageFilter}{' '}
              <select value={String(filters.age)} onChange={(e) => setFilters({ ...filters, age: Number(e.currentTarget.value) })}>
                {AGES.map((a) => (
                  <option key={a} value={String(a)}>
                    {a ? t.ageOver(secs(t, a)) : t.ageAny}
                  </option>
                ))}
              </select>
            </label>
          </div>
          {data.tickets === null ? (
            <p>{t.loading}</p>
          ) : data.tickets.length === 0 ? (
            <p>{t.nothingHere}</p>
          ) : (
            <div class="table-wrap" tabIndex={0} role="region" aria-label={t.ticketList}>
              <table class="ticket-table">
                <thead>
                  <tr>
                    <th scope="col">{t.colClient}</th>
                    <th scope="col">{t.colChannel}</th>
                    <th scope="col">{t.colStatus}</th>
                    <th scope="col">{t.colManager}</th>
                    <th scope="col">{t.colQueue}</th>
                    <th scope="col">{t.colCategory}</th>
                    <th scope="col">{t.colPriority}</th>
                    <th scope="col">{t.colCreated}</th>
                    <th scope="col">{t.colWaitingSince}</th>
                    <th scope="col">{t.colRating}</th>
                  </tr>
                </thead>
                <tbody>
                  {data.tickets.map((a) => {
                    const tk = a.ticket;
                    if (!tk) return null;
                    const name = tk.clientName || tk.clientId;
                    const rating = tk.rating;
                    return (
                      <tr key={tk.id} data-ticket={tk.id} class={tk.id === selected ? 'selected' : ''}>
                        <td>
                          <button
                            type="button"
                            class="link-button"
                            aria-pressed={tk.id === selected}
                            aria-controls="audit"
                            aria-label={t.showAudit(name)}
                            onClick={() => select(tk.id)}
                          >
                            {name}
                          </button>
                        </td>
                        <td>{channelName(t, tk.clientId, tk.channel)}</td>
                        <td>{statusName(t, tk.status)}</td>
                        <td>{tk.managerId}</td>
                        <td>{a.queue || tk.queue}</td>
                        <td>{a.category || tk.category}</td>
                        <td>{priorityName(t, a.priority || tk.priority)}</td>
                        <td>{when(tk.createdAt)}</td>
                        <td>{when(a.waitingSince ?? tk.waitingSince)}</td>
                        <td data-rating={rating || undefined}>
                          {rating ? (
                            <span class="rating" title={t.ratingOf(rating)}>
                              <span aria-hidden="true">{'★'.repeat(rating)}</span>
                              <span class="visually-hidden">{t.ratingOf(rating)}</span>
                              <span aria-hidden="true"> {rating}</span>
                            </span>
                          ) : (
                            <span class="muted">{t.noRating}</span>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          {data.next && (
            <button type="button" class="secondary" disabled={moreBusy} onClick={() => void loadMore()}>
              {moreBusy ? t.loading : t.loadMore(data.tickets?.length ?? 0)}
            </button>
          )}
        </section>
        <section id="audit" aria-labelledby="audit-title" class="audit">
          <h3 id="audit-title">
            {selected ? t.auditTitle(selectedTicket?.ticket?.clientName || selectedTicket?.ticket?.clientId || selected) : t.auditTrail}
          </h3>
          {!selected ? (
            <p class="hint">{t.auditHint}</p>
          ) : auditError ? (
            <p class="alert" role="alert">
              {t.error(auditError)}
            </p>
          ) : !audit ? (
            <p>{t.loading}</p>
          ) : (
            <Audit audit={audit} lang={lang} onClose={() => select(selected)} />
          )}
        </section>
      </div>
    </div>
  );
}

function Queues({ stats }: { stats: GetStatsResponse | null }) {
  const { t } = useI18n();
  return (
    <section aria-labelledby="queues-title">
      <h3 id="queues-title">{t.queuesTitle}</h3>
      {!stats ? (
        <p>{t.loading}</p>
      ) : stats.queues.length === 0 ? (
        <p>{t.nothingHere}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">{t.colQueue}</th>
              <th scope="col">{t.colWaiting}</th>
              <th scope="col">{t.colOldestWait}</th>
            </tr>
          </thead>
          <tbody>
            {stats.queues.map((q) => (
              <tr key={q.queue} data-queue={q.queue}>
                <th scope="row">{q.queue}</th>
                <td>{q.waiting}</td>
                <td class={Number(q.oldestWaitSeconds) > 600 ? 'warn' : ''}>{q.waiting ? secs(t, Number(q.oldestWaitSeconds)) : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Managers({ managers, when }: { managers: ManagerState[] | null; when: (ts?: Timestamp) => string }) {
  const { t } = useI18n();
  return (
    <section aria-labelledby="managers-title">
      <h3 id="managers-title">{t.managers}</h3>
      {managers === null ? (
        <p>{t.loading}</p>
      ) : managers.length === 0 ? (
        <p>{t.nothingHere}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">{t.colManager}</th>
              <th scope="col">{t.colState}</th>
              <th scope="col">{t.colLoad}</th>
              <th scope="col">{t.colReadySince}</th>
            </tr>
          </thead>
          <tbody>
            {[...managers]
              .sort((a, b) => b.readySlots - a.readySlots || b.openTickets - a.openTickets || (a.displayName || a.id).localeCompare(b.displayName || b.id))
              .map((m) => {
                const share = m.capacity ? Math.min(1, m.openTickets / m.capacity) : 0;
                return (
                  <tr key={m.id} data-manager={m.id}>
                    <th scope="row">
                      {m.displayName || m.id}
                      {m.displayName && m.displayName !== m.id && <span class="muted"> ({m.id})</span>}
                    </th>
                    <td>
                      <span class={m.readySlots > 0 ? 'state-ready' : 'state-away'}>{m.readySlots > 0 ? t.stateReady(m.readySlots) : t.stateNotReady}</span>
                    </td>
                    <td>
                      <span class="load">
                        <span class="load-bar" aria-hidden="true">
                          <span style={{ width: `${Math.round(share * 100)}%` }} />
                        </span>
                        {t.load(m.openTickets, m.capacity)}
                      </span>
                    </td>
                    <td>{when(m.readySince)}</td>
                  </tr>
                );
              })}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Charts({ stats, hours, lang }: { stats: GetStatsResponse | null; hours: number; lang: Lang }) {
  const { t } = useI18n();
  if (!stats) return null;
  const to = Date.now();
  const from = to - hours * 3_600_000;
  const byQueue = new Map<string, Series>();
  for (const w of stats.waiting) {
    if (!w.at) continue;
    let s = byQueue.get(w.queue);
    if (!s) byQueue.set(w.queue, (s = { name: w.queue, points: [] }));
    s.points.push({ at: timestampMs(w.at), value: w.waiting });
  }
  const series = [...byQueue.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const s of series) s.points.sort((a, b) => a.at - b.at);
  const start = Math.min(from, ...series.flatMap((s) => s.points.map((p) => p.at)));
  const hhmm = new Intl.DateTimeFormat(lang, hours > 24 ? { day: 'numeric', month: 'short', hour: '2-digit' } : { hour: '2-digit', minute: '2-digit' });
  const waitingDesc = series.length
    ? series.map((s) => t.seriesSummary(s.name, s.points[s.points.length - 1]?.value ?? 0, Math.max(...s.points.map((p) => p.value)))).join('; ')
    : t.noData;

  const fr = stats.firstResponseSeconds.map(Number).sort((a, b) => a - b);
  const counts = new Array(FR_BINS.length + 1).fill(0) as number[];
  for (const s of fr) {
    const i = FR_BINS.findIndex((b) => s <= b);
    counts[i < 0 ? FR_BINS.length : i]++;
  }
  const frBars: Bar[] = counts.map((n, i) => ({
    label: i < FR_BINS.length ? t.binUpTo(secs(t, FR_BINS[i])) : t.binOver(secs(t, FR_BINS[FR_BINS.length - 1])),
    value: n,
  }));
  const frSummary = fr.length ? t.frSummary(fr.length, secs(t, quantile(fr, 0.5)), secs(t, quantile(fr, 0.9))) : t.noData;

  const ratings = [0, 1, 2, 3, 4].map((i) => stats.ratings[i] ?? 0);
  const rated = ratings.reduce((a, b) => a + b, 0);
  const avg = rated ? ratings.reduce((a, n, i) => a + n * (i + 1), 0) / rated : 0;
  const ratingBars: Bar[] = ratings.map((n, i) => ({ label: String(i + 1), value: n, color: RATING_COLORS[i] }));
  const ratingSummary = rated ? t.ratingSummary(rated, avg.toLocaleString(lang, { maximumFractionDigits: 1 })) : t.noData;

  return (
    <section aria-labelledby="charts-title" class="charts">
      <h3 id="charts-title">{t.chartsTitle(hours)}</h3>
      <div class="chart-grid">
        <LineChart
          id="waiting-chart"
          title={t.chartWaitingTitle}
          desc={waitingDesc}
          series={series}
          from={start}
          to={to}
          timeLabel={(at) => hhmm.format(new Date(at))}
          empty={t.noData}
        />
        <BarChart
          id="fr-chart"
          title={t.chartFirstResponseTitle}
          desc={`${frSummary} ${frBars.map((b) => `${b.label}: ${b.value}`).join(', ')}`}
          bars={frBars}
          summary={frSummary}
          empty={t.noData}
        />
        <BarChart
          id="ratings-chart"
          title={t.chartRatingsTitle}
          desc={`${ratingSummary} ${ratingBars.map((b) => t.ratingCount(Number(b.label), b.value)).join(', ')}`}
          bars={ratingBars}
          summary={ratingSummary}
        />
      </div>
    </section>
  );
}

function payloadText(p: JsonObject | undefined): string {
  if (!p) return '';
  return Object.entries(p)
    .filter(([k]) => k !== 'ticket_id')
    .map(([k, v]) => `${k}: ${fieldValue(v)}`)
    .join(' · ');
}

function Audit({ audit, lang, onClose }: { audit: GetAuditTrailResponse; lang: Lang; onClose: () => void }) {
  const { t } = useI18n();
  const a = audit.ticket;
  const at = (ts?: Timestamp) => (ts ? formatTime(lang, timestampMs(ts)) : '');
  return (
    <div class="audit-body">
      <p class="audit-summary">
        {a?.ticket && <span>{statusName(t, a.ticket.status)}</span>}
        {a?.closeReason && <span>{t.closeReason(a.closeReason)}</span>}
        {!!a?.ticket?.rating && <span>{t.ratingOf(a.ticket.rating)}</span>}
        <button type="button" class="secondary" onClick={onClose}>
          {t.closeAudit}
        </button>
      </p>
      <h4>{t.auditEvents}</h4>
      <ol class="audit-events">
        {audit.events.map((e) => (
          <li key={String(e.seq)} data-kind={e.kind}>
            <span class="audit-line">
              <span class="muted">#{String(e.seq)}</span>
              <time dateTime={e.createdAt ? new Date(timestampMs(e.createdAt)).toISOString() : undefined}>{at(e.createdAt)}</time>
              <code>{e.kind}</code>
              <span class={e.clientVisible ? 'audience-client' : 'audience-staff'}>{e.clientVisible ? t.audienceClient : t.audienceInternal}</span>
              {e.managerId && <span>{t.byManager(e.managerId)}</span>}
            </span>
            {payloadText(e.payload) && <span class="payload">{payloadText(e.payload)}</span>}
          </li>
        ))}
      </ol>
      {audit.verdicts.length > 0 && (
        <>
          <h4>{t.verdictsTitle}</h4>
          <ol class="audit-events">
            {audit.verdicts.map((v) => (
              <li key={v.messageId} data-verdict={v.afcStatus}>
                <span class="audit-line">
                  <time>{at(v.createdAt)}</time>
                  <code>{v.messageId.slice(0, 8)}</code>
                  <span class={v.afcStatus === 'blocked' ? 'warn' : ''}>{v.afcStatus}</span>
                  {v.rule && <span>{v.rule}</span>}
                </span>
              </li>
            ))}
          </ol>
        </>
      )}
    </div>
  );
}

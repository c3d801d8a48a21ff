// The supervisor's reports (AdminService.GetReport): the last 7, 30 or 90 days in the browser's
// time zone, per day, queue, manager or channel, as a table with the whole period's total, and
// the same rows as a CSV download (ExportReport).
import { useEffect, useRef, useState } from 'preact/hooks';
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { ReportGroupBy, type DurationStats, type GetReportResponse, type ReportRow } from '../gen/inbox/v1/admin_pb';
import type { Strings } from '../i18n';
import type { Api } from './api';
import { useI18n } from './i18n-context';
import { channelName } from './ManagerView';
import { secs } from './SupervisorView';
import type { AuthLoss } from './store';

const DAYS = [7, 30, 90];
const GROUPS = [ReportGroupBy.DAY, ReportGroupBy.QUEUE, ReportGroupBy.MANAGER, ReportGroupBy.CHANNEL];

/** The browser's IANA time zone (the engine checks it), UTC when it has none. */
function timeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** The local midnight `days - 1` days before today: the period is `days` days, today included. */
function periodStart(days: number): number {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  d.setDate(d.getDate() - (days - 1));
  return d.getTime();
}

function groupName(t: Strings, g: ReportGroupBy): string {
  switch (g) {
    case ReportGroupBy.QUEUE:
      return t.colQueue;
    case ReportGroupBy.MANAGER:
      return t.colManager;
    case ReportGroupBy.CHANNEL:
      return t.colChannel;
    default:
      return t.colDay;
  }
}

function rowName(t: Strings, g: ReportGroupBy, r: ReportRow): string {
  if (g === ReportGroupBy.CHANNEL) return channelName(t, '', r.key);
  if (g === ReportGroupBy.MANAGER) return r.key ? (r.name && r.name !== r.key ? `${r.name} (${r.key})` : r.key) : t.reportNobody;
  return r.name || r.key;
}

/** "2 min / 5 min" (median / 90th percentile), or a dash without any. */
function span(t: Strings, d?: DurationStats): string {
  if (!d || d.count === 0n) return '—';
  return t.spanValue(secs(t, d.p50Seconds), secs(t, d.p90Seconds), Number(d.count));
}

/** `asked`: bumped by the view's Refresh button, which reads the report again (the table stays
 * until the new one is there). */
export function Reports({
  api,
  active,
  asked: refreshes,
  onAuthLost,
}: {
  api: Api;
  active: boolean;
  asked: number;
  onAuthLost: (why: AuthLoss) => void;
}) {
  const { t, lang } = useI18n();
  const [days, setDays] = useState(7);
  const [groupBy, setGroupBy] = useState(ReportGroupBy.DAY);
  const [report, setReport] = useState<GetReportResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [downloading, setDownloading] = useState(false);
  const [downloaded, setDownloaded] = useState('');
  const asked = useRef(0);

  const request = () => ({ startTime: timestampFromMs(periodStart(days)), groupBy, timeZone: timeZone() });
  const fail = (e: unknown) => {
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated) onAuthLost('expired');
    else if (err.code === Code.PermissionDenied) onAuthLost('forbidden');
    else setError(err.rawMessage || String(err.code));
  };

  const load = async () => {
    const n = ++asked.current;
    try {
      const r = await api.admin.getReport(request());
      if (n === asked.current) {
        setReport(r);
        setError(null);
      }
    } catch (e) {
      if (n === asked.current) fail(e);
    }
  };

  useEffect(() => {
    if (!active) return;
    setReport(null);
    void load();
  }, [active, days, groupBy]);
  const firstAsk = useRef(refreshes);
  useEffect(() => {
    if (active && refreshes !== firstAsk.current) void load();
  }, [refreshes]);

  const download = async () => {
    setDownloading(true);
    setDownloaded('');
    try {
      const r = await api.admin.exportReport(request());
      const url = URL.createObjectURL(new Blob([r.data as BlobPart], { type: r.contentType || 'text/csv' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = r.filename || 'report.csv';
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setDownloaded(t.csvDownloaded(a.download));
    } catch (e) {
      fail(e);
    } finally {
      setDownloading(false);
    }
  };

  const shownGroup = report?.groupBy ?? groupBy;
  const pct = (r: ReportRow) => r.satisfiedPercent.toLocaleString(lang, { maximumFractionDigits: 0 });
  const csat = (r: ReportRow) =>
    r.ratings === 0n ? '—' : t.csatValue(r.ratingAvg.toLocaleString(lang, { maximumFractionDigits: 2 }), pct(r), Number(r.ratings));
  const cells = (r: ReportRow) => (
    <>
      <td>{String(r.opened)}</td>
      <td>{String(r.closed)}</td>
      <td>{span(t, r.firstResponse)}</td>
      <td>{span(t, r.resolution)}</td>
      <td>{span(t, r.waiting)}</td>
      <td>{String(r.escalations)}</td>
      <td class={r.slaBreaches > 0n ? 'warn' : ''}>{String(r.slaBreaches)}</td>
      <td data-ratings={String(r.ratings)}>{csat(r)}</td>
    </>
  );

  return (
    <section aria-labelledby="reports-title" class="reports" aria-busy={report === null} data-group={report ? String(report.groupBy) : undefined}>
      <h3 id="reports-title">{t.reportsTitle}</h3>
      <div class="filters">
        <label>
          {t.periodLabel}{' '}
          <select value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            {DAYS.map((d) => (
              <option key={d} value={String(d)}>
                {t.reportDays(d)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t.reportGroupBy}{' '}
          <select value={String(groupBy)} onChange={(e) => setGroupBy(Number(e.currentTarget.value) as ReportGroupBy)}>
            {GROUPS.map((g) => (
              <option key={g} value={String(g)}>
                {groupName(t, g)}
              </option>
            ))}
          </select>
        </label>
        <button type="button" class="secondary" disabled={downloading} onClick={() => void download()}>
          {downloading ? t.loading : t.downloadCsv}
        </button>
        <span class="hint" role="status">
          {downloaded}
        </span>
      </div>
      {error && (
        <p class="alert" role="alert">
          {t.error(error)}
        </p>
      )}
      {report === null ? (
        <p>{t.loading}</p>
      ) : (
        <>
          <p class="hint">{t.reportHint(report.timeZone)}</p>
          {report.truncated && <p class="warn">{t.reportTruncated(report.rows.length)}</p>}
          <div class="table-wrap" tabIndex={0} role="region" aria-label={t.reportTable}>
            <table class="report-table">
              <thead>
                <tr>
                  <th scope="col">{groupName(t, shownGroup)}</th>
                  <th scope="col">{t.colOpened}</th>
                  <th scope="col">{t.colClosed}</th>
                  <th scope="col">{t.colFirstResponse}</th>
                  <th scope="col">{t.colResolution}</th>
                  <th scope="col">{t.colWaitingTime}</th>
                  <th scope="col">{t.colEscalations}</th>
                  <th scope="col">{t.colSlaBreaches}</th>
                  <th scope="col">{t.colCsat}</th>
                </tr>
              </thead>
              <tbody>
                {report.rows.length === 0 ? (
                  <tr>
                    <td colSpan={9}>{t.noData}</td>
                  </tr>
                ) : (
                  report.rows.map((r) => (
                    <tr key={r.key} data-key={r.key}>
                      <th scope="row">{rowName(t, shownGroup, r)}</th>
                      {cells(r)}
                    </tr>
                  ))
                )}
              </tbody>
              {report.total && (
                <tfoot>
                  <tr data-key="">
                    <th scope="row">{t.reportTotal}</th>
                    {cells(report.total)}
                  </tr>
                </tfoot>
              )}
            </table>
          </div>
        </>
      )}
    </section>
  );
}

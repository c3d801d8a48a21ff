// The supervisor's dry run of a changed lifecycle (AdminService.SimulateSpec): paste a
// workflows.yaml, pick the last 7 or 30 days, and see what it would have done to the tickets
// opened then, as recorded / new-spec totals and each kind of difference with example tickets.
// Nothing is changed by it.
import { useRef, useState } from 'preact/hooks';
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { SimulationDifferenceKind, type SimulateSpecResponse, type SimulationTotals } from '../gen/inbox/v1/admin_pb';
import type { Strings } from '../i18n';
import type { Api } from './api';
import { useI18n } from './i18n-context';
import type { AuthLoss } from './store';

const DAYS = [7, 30];
const DAY_MS = 86_400_000;

export function differenceName(t: Strings, k: SimulationDifferenceKind): string {
  switch (k) {
    case SimulationDifferenceKind.QUEUE_CHANGED:
      return t.diffQueueChanged;
    case SimulationDifferenceKind.PRIORITY_CHANGED:
      return t.diffPriorityChanged;
    case SimulationDifferenceKind.ESCALATIONS_ADDED:
      return t.diffEscalationsAdded;
    case SimulationDifferenceKind.ESCALATIONS_AVOIDED:
      return t.diffEscalationsAvoided;
    case SimulationDifferenceKind.SLA_BREACH_ADDED:
      return t.diffSlaBreachAdded;
    case SimulationDifferenceKind.SLA_BREACH_AVOIDED:
      return t.diffSlaBreachAvoided;
    case SimulationDifferenceKind.AUTO_CLOSE_ADDED:
      return t.diffAutoCloseAdded;
    case SimulationDifferenceKind.AUTO_CLOSE_AVOIDED:
      return t.diffAutoCloseAvoided;
    default:
      return String(k);
  }
}

const TOTALS: [keyof Omit<SimulationTotals, '$typeName' | '$unknown'>, (t: Strings) => string][] = [
  ['escalations', (t) => t.colEscalations],
  ['escalatedTickets', (t) => t.dryRunEscalatedTickets],
  ['slaBreaches', (t) => t.colSlaBreaches],
  ['autoCloses', (t) => t.dryRunAutoCloses],
];

export function DryRun({ api, onAuthLost }: { api: Api; onAuthLost: (why: AuthLoss) => void }) {
  const { t, lang } = useI18n();
  const [yaml, setYaml] = useState('');
  const [days, setDays] = useState(7);
  const [running, setRunning] = useState(false);
  const [result, setResult] = useState<SimulateSpecResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  const asked = useRef(0);

  const run = async (e: Event) => {
    e.preventDefault();
    const n = ++asked.current;
    setRunning(true);
    setError(null);
    try {
      const r = await api.admin.simulateSpec({ yaml, startTime: timestampFromMs(Date.now() - days * DAY_MS) });
      if (n === asked.current) setResult(r);
    } catch (err) {
      if (n !== asked.current) return;
      const c = ConnectError.from(err);
      if (c.code === Code.Unauthenticated) onAuthLost('expired');
      else if (c.code === Code.PermissionDenied) onAuthLost('forbidden');
      else {
        setResult(null);
        setError(c.rawMessage || String(c.code));
      }
    } finally {
      if (n === asked.current) setRunning(false);
    }
  };

  const when = (r: SimulateSpecResponse) => (r.asOf ? timestampDate(r.asOf).toLocaleString(lang) : '');

  return (
    <section aria-labelledby="dry-run-title" class="dry-run" aria-busy={running}>
      <h3 id="dry-run-title">{t.dryRunTitle}</h3>
      <p class="hint" id="dry-run-hint">
        {t.dryRunHint}
      </p>
      <form onSubmit={(e) => void run(e)}>
        <label for="dry-run-spec">{t.dryRunSpec}</label>
        <textarea
          id="dry-run-spec"
          name="spec"
          rows={8}
          spellcheck={false}
          value={yaml}
          aria-describedby={error ? 'dry-run-hint dry-run-error' : 'dry-run-hint'}
          aria-invalid={error ? true : undefined}
          onInput={(e) => setYaml(e.currentTarget.value)}
        />
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
          <button type="submit" disabled={running || yaml.trim() === ''}>
            {running ? t.dryRunRunning : t.dryRunRun}
          </button>
        </div>
      </form>
      {error && (
        <p class="alert" role="alert" id="dry-run-error">
          {t.error(error)}
        </p>
      )}
      {result && (
        <div class="dry-run-result" data-scanned={String(result.scanned)}>
          <p role="status">{t.dryRunSummary(Number(result.scanned), Number(result.simulated), when(result))}</p>
          {result.truncated && <p class="warn">{t.dryRunTruncated}</p>}
          <div class="table-wrap" tabIndex={0} role="region" aria-label={t.dryRunTotals}>
            <table class="dry-run-totals">
              <caption>{t.dryRunTotals}</caption>
              <thead>
                <tr>
                  <th scope="col">{t.dryRunFigure}</th>
                  <th scope="col">{t.dryRunBefore}</th>
                  <th scope="col">{t.dryRunAfter}</th>
                </tr>
              </thead>
              <tbody>
                {TOTALS.map(([key, name]) => (
                  <tr key={key} data-key={key}>
                    <th scope="row">{name(t)}</th>
                    <td>{String(result.before?.[key] ?? 0n)}</td>
                    <td>{String(result.after?.[key] ?? 0n)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div class="table-wrap" tabIndex={0} role="region" aria-label={t.dryRunDifferences}>
            <table class="dry-run-differences">
              <caption>{t.dryRunDifferences}</caption>
              <thead>
                <tr>
                  <th scope="col">{t.dryRunDifference}</th>
                  <th scope="col">{t.dryRunTickets}</th>
                  <th scope="col">{t.dryRunExamples}</th>
                </tr>
              </thead>
              <tbody>
                {result.differences.map((d) => (
                  <tr key={d.kind} data-kind={SimulationDifferenceKind[d.kind]} data-tickets={String(d.tickets)}>
                    <th scope="row">{differenceName(t, d.kind)}</th>
                    <td>{String(d.tickets)}</td>
                    <td>
                      {d.examples.length === 0 ? (
                        '—'
                      ) : (
                        <ul>
                          {d.examples.map((e) => (
                            <li key={e.ticketId} data-ticket={e.ticketId}>
                              <code>{e.ticketId}</code>: {t.dryRunChange(e.before, e.after)}
                            </li>
                          ))}
                        </ul>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </section>
  );
}

import { useEffect, useMemo, useState } from 'preact/hooks';
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { TicketStatus } from '../gen/inbox/v1/manager_pb';
import type { AdminTicket, ManagerState } from '../gen/inbox/v1/admin_pb';
import { formatTime, type Strings } from '../i18n';
import { api, type Session } from './api';
import { useI18n } from './i18n-context';
import { channelName } from './ManagerView';
import type { AuthLoss } from './store';

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

/** The back office: every manager's state and the tickets by status. */
export function AdminView({ session, onAuthLost }: { session: Session; onAuthLost: (why: AuthLoss) => void }) {
  const { t, lang } = useI18n();
  const client = useMemo(() => api(session.token).admin, [session.token]);
  const [managers, setManagers] = useState<ManagerState[] | null>(null);
  const [tickets, setTickets] = useState<AdminTicket[] | null>(null);
  const [status, setStatus] = useState<TicketStatus>(TicketStatus.UNSPECIFIED);
  const [error, setError] = useState<string | null>(null);
  const [round, setRound] = useState(0);

  useEffect(() => {
    const fail = (e: unknown) => {
      const err = ConnectError.from(e);
      if (err.code === Code.Unauthenticated) onAuthLost('expired');
      else if (err.code === Code.PermissionDenied) onAuthLost('forbidden');
      else setError(err.rawMessage);
    };
    setError(null);
    client.listManagers({}).then((r) => setManagers(r.managers), fail);
    client
      .listTickets({ statuses: status ? [status] : [], pageSize: 200 })
      .then((r) => setTickets(r.tickets), fail);
  }, [client, status, round]);

  const when = (ts?: Timestamp) => (ts ? formatTime(lang, timestampMs(ts)) : '');
  const statuses = [TicketStatus.UNSPECIFIED, TicketStatus.OPEN, TicketStatus.WAITING, TicketStatus.ASSIGNED, TicketStatus.CLOSED];

  return (
    <div class="admin">
      <div class="toolbar">
        <h2>{t.backOffice}</h2>
        <label>
          {t.statusFilter}{' '}
          <select value={String(status)} onChange={(e) => setStatus(Number(e.currentTarget.value) as TicketStatus)}>
            {statuses.map((s) => (
              <option key={s} value={String(s)}>
                {s === TicketStatus.UNSPECIFIED ? t.statusAll : statusName(t, s)}
              </option>
            ))}
          </select>
        </label>
        <button type="button" class="secondary" onClick={() => setRound(round + 1)}>
          {t.refresh}
        </button>
      </div>
      {error && (
        <p class="alert" role="alert">
          {t.error(error)}
        </p>
      )}
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
                <th scope="col">{t.colCapacity}</th>
                <th scope="col">{t.colReadySlots}</th>
                <th scope="col">{t.colOpenTickets}</th>
                <th scope="col">{t.colReadySince}</th>
              </tr>
            </thead>
            <tbody>
              {managers.map((m) => (
                <tr key={m.id}>
                  <td>{m.displayName || m.id}</td>
                  <td>{m.capacity}</td>
                  <td>{m.readySlots}</td>
                  <td>{m.openTickets}</td>
                  <td>{when(m.readySince)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="tickets-title">
        <h3 id="tickets-title">{t.tickets}</h3>
        {tickets === null ? (
          <p>{t.loading}</p>
        ) : tickets.length === 0 ? (
          <p>{t.nothingHere}</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">{t.colClient}</th>
                <th scope="col">{t.colStatus}</th>
                <th scope="col">{t.colManager}</th>
                <th scope="col">{t.colQueue}</th>
                <th scope="col">{t.colPriority}</th>
                <th scope="col">{t.colCreated}</th>
                <th scope="col">{t.colWaitingSince}</th>
              </tr>
            </thead>
            <tbody>
              {tickets.map((a) => (
                <tr key={a.ticket?.id}>
                  <td>
                    {a.ticket?.clientName || a.ticket?.clientId} <span class="channel">{channelName(t, a.ticket?.clientId || '')}</span>
                  </td>
                  <td>{statusName(t, a.ticket?.status ?? TicketStatus.UNSPECIFIED)}</td>
                  <td>{a.ticket?.managerId}</td>
                  <td>{a.queue}</td>
                  <td>{a.priority}</td>
                  <td>{when(a.ticket?.createdAt)}</td>
                  <td>{when(a.waitingSince)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}

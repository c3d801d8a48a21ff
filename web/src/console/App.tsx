import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { detectLang, strings, type Lang } from '../i18n';
import { api as makeApi, devLoginAvailable, loadSession, saveSession, type Session } from './api';
import { I18nContext, useI18n } from './i18n-context';
import { Login } from './Login';
import { clientName, ManagerView } from './ManagerView';
import type { SupervisorView as SupervisorViewType } from './SupervisorView';
import { LangSwitch } from './LangSwitch';
import { Alerts } from './alerts';
import { ManagerStore, type AuthLoss } from './store';

const LANG_KEY = 'inbox.console.lang';

export function App() {
  const [lang, setLangState] = useState<Lang>(() => detectLang(localStorage.getItem(LANG_KEY)));
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [devLogin, setDevLogin] = useState<boolean | null>(null);
  const [lost, setLost] = useState<AuthLoss | null>(null);
  const t = strings(lang);

  const i18n = useMemo(
    () => ({
      t,
      lang,
      setLang: (l: Lang) => {
        localStorage.setItem(LANG_KEY, l);
        setLangState(l);
      },
    }),
    [lang],
  );

  useEffect(() => {
    document.documentElement.lang = lang;
    document.title = t.consoleTitle;
  }, [lang]);

  useEffect(() => {
    if (!session && devLogin === null) devLoginAvailable().then(setDevLogin);
  }, [session, devLogin]);

  const signIn = (s: Session) => {
    saveSession(s);
    setLost(null);
    setSession(s);
  };
  const signOut = (why: AuthLoss | null = null) => {
    saveSession(null);
    setLost(why);
    setSession(null);
  };

  let body;
  if (!session) {
    body =
      devLogin === null ? (
        <p class="status">{t.loading}</p>
      ) : devLogin ? (
        <Login onSignIn={signIn} lost={lost} />
      ) : (
        <p class="status" role="status">{t.noDevLogin}</p>
      );
  } else {
    body = <Workspace key={session.token} session={session} onAuthLost={signOut} />;
  }

  return (
    <I18nContext.Provider value={i18n}>
      <header class="topbar">
        <h1>{t.consoleTitle}</h1>
        <div class="topbar-right">
          {session && (
            <span class="who">
              {t.signedInAs(session.name || session.user, session.role === 'admin' ? t.roleAdmin : t.roleManager)}
            </span>
          )}
          <LangSwitch />
          {session && (
            <button type="button" class="secondary" onClick={() => signOut()}>
              {t.signOut}
            </button>
          )}
        </div>
      </header>
      <main id="main">{body}</main>
    </I18nContext.Provider>
  );
}

type Tab = 'tickets' | 'supervisor';
const TAB_KEY = 'inbox.console.tab';

/** A signed-in session: one store (and event stream) for both views; an admin (whose token is a
 * manager's too) gets the supervisor view as a second tab. */
function Workspace({ session, onAuthLost }: { session: Session; onAuthLost: (why: AuthLoss) => void }) {
  const { t } = useI18n();
  const tRef = useRef(t);
  tRef.current = t;
  const api = useMemo(() => makeApi(session.token), [session.token]);
  const store = useMemo(() => new ManagerStore(api, session.user, session.name, onAuthLost), [api]);
  const alerts = useMemo(() => new Alerts(), []);
  const isAdmin = session.role === 'admin';
  const [tab, setTab] = useState<Tab>(() => (isAdmin && sessionStorage.getItem(TAB_KEY) === 'supervisor' ? 'supervisor' : 'tickets'));
  const tabRef = useRef(tab);
  tabRef.current = tab;
  const [announcement, setAnnouncement] = useState('');
  // The supervisor view (and its charts) is a chunk of its own: only admins load it.
  const [Supervisor, setSupervisor] = useState<typeof SupervisorViewType | null>(null);
  useEffect(() => {
    if (isAdmin) void import('./SupervisorView').then((m) => setSupervisor(() => m.SupervisorView));
  }, [isAdmin]);

  useEffect(() => {
    store.start();
    const off = store.onAlert((a) => {
      const v = store.tickets.get(a.ticketId);
      const name = v ? clientName(v) : a.ticketId;
      const tt = tRef.current;
      if (a.kind === 'assigned') {
        alerts.notify(tt.alertAssignedTitle, name, a.ticketId);
        setAnnouncement(tt.alertAssigned(name));
      } else {
        // The conversation in front of the manager shows it already.
        const watching = tabRef.current === 'tickets' && store.openId === a.ticketId && document.visibilityState === 'visible' && document.hasFocus();
        if (watching) return;
        alerts.notify(tt.alertMessageTitle(name), a.body, a.ticketId);
        setAnnouncement(tt.alertMessage(name, a.body));
      }
    });
    return () => {
      off();
      store.stop();
      alerts.dispose();
    };
  }, [store]);

  const choose = (next: Tab) => {
    sessionStorage.setItem(TAB_KEY, next);
    setTab(next);
  };
  const tabs: [Tab, string][] = [
    ['tickets', t.myTickets],
    ['supervisor', t.supervisorTab],
  ];
  const onTabKey = (e: KeyboardEvent) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft' && e.key !== 'Home' && e.key !== 'End') return;
    e.preventDefault();
    const i = tabs.findIndex(([k]) => k === tab);
    const n = e.key === 'Home' ? 0 : e.key === 'End' ? tabs.length - 1 : (i + (e.key === 'ArrowRight' ? 1 : -1) + tabs.length) % tabs.length;
    choose(tabs[n][0]);
    document.getElementById(`tab-${tabs[n][0]}`)?.focus();
  };

  const manager = <ManagerView store={store} alerts={alerts} api={api} isAdmin={isAdmin} active={tab === 'tickets'} />;
  return (
    <>
      <p class="visually-hidden" role="status" aria-live="polite" data-announce>
        {announcement}
      </p>
      {!isAdmin ? (
        manager
      ) : (
        <>
          <div class="tabs" role="tablist" aria-label={t.viewsLabel} onKeyDown={onTabKey}>
            {tabs.map(([k, label]) => (
              <button
                key={k}
                type="button"
                role="tab"
                id={`tab-${k}`}
                aria-selected={tab === k}
                aria-controls={`panel-${k}`}
                tabIndex={tab === k ? 0 : -1}
                onClick={() => choose(k)}
              >
                {label}
              </button>
            ))}
          </div>
          <div role="tabpanel" id="panel-tickets" aria-labelledby="tab-tickets" hidden={tab !== 'tickets'}>
            {manager}
          </div>
          <div role="tabpanel" id="panel-supervisor" aria-labelledby="tab-supervisor" hidden={tab !== 'supervisor'}>
            {Supervisor ? (
              <Supervisor api={api} store={store} active={tab === 'supervisor'} onAuthLost={onAuthLost} />
            ) : (
              <p class="status">{t.loading}</p>
            )}
          </div>
        </>
      )}
    </>
  );
}

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { detectLang, strings, type Lang } from '../i18n';
import { api as makeApi, loginConfig, loadSession, saveSession, type LoginConfig, type Session, type Tokens } from './api';
import { I18nContext, useI18n } from './i18n-context';
import { Login, OidcLogin } from './Login';
import type { OidcAuth } from './oidc';
import { clientName, ManagerView } from './ManagerView';
import type { SupervisorView as SupervisorViewType } from './SupervisorView';
import { LangSwitch } from './LangSwitch';
import { Alerts } from './alerts';
import { ManagerStore, type AuthLoss } from './store';

const LANG_KEY = 'inbox.console.lang';

export function App() {
  const [lang, setLangState] = useState<Lang>(() => detectLang(localStorage.getItem(LANG_KEY)));
  const [config, setConfig] = useState<LoginConfig | 'error' | null>(null);
  const [session, setSession] = useState<Session | null>(null);
  const [oidc, setOidc] = useState<OidcAuth | null>(null);
  const [completing, setCompleting] = useState(false);
  const [oidcError, setOidcError] = useState<string | null>(null);
  const [noRole, setNoRole] = useState(false);
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

  // How this origin signs in (`/config.json`): the dev form, OpenID Connect, or none.
  useEffect(() => {
    let off = () => {};
    loginConfig()
      .then(async (cfg) => {
        if (cfg.login === 'dev') setSession(loadSession());
        if (cfg.login === 'oidc') {
          const { OidcAuth } = await import('./oidc');
          const auth = new OidcAuth(cfg);
          off = auth.onChange((s) => {
            setNoRole(!s && !!auth.token());
            setSession(s);
          });
          setOidc(auth);
          setCompleting(OidcAuth.isCallback());
          try {
            const s = await auth.start();
            setNoRole(!s && !!auth.token());
            setSession(s);
          } catch (e) {
            setOidcError(e instanceof Error && e.message ? e.message : String(e));
          } finally {
            setCompleting(false);
          }
        }
        setConfig(cfg);
      })
      .catch(() => setConfig('error'));
    return () => off();
  }, []);

  // Where calls take their token: the dev session's, or the OIDC user's current one (renewed).
  const tokens = useMemo<Tokens | null>(() => (oidc ? oidc : session ? { token: () => session.token } : null), [oidc, oidc ? null : session?.token]);

  const signIn = (s: Session) => {
    saveSession(s);
    setLost(null);
    setSession(s);
  };
  const signOut = (why: AuthLoss | null = null) => {
    setLost(why);
    setSession(null);
    setOidcError(null);
    if (!oidc) saveSession(null);
    // The engine refused the session: forget it here; the manager's own sign-out also ends it at
    // the provider when it can.
    else void (why ? oidc.drop() : oidc.signOut());
  };

  let body;
  if (session && tokens) {
    body = <Workspace key={session.user} session={session} tokens={tokens} onAuthLost={signOut} />;
  } else if (config === null) {
    body = <p class="status">{t.loading}</p>;
  } else if (config === 'error') {
    body = <p class="status" role="alert">{t.configFailed}</p>;
  } else if (config.login === 'dev') {
    body = <Login onSignIn={signIn} lost={lost} />;
  } else if (config.login === 'oidc' && oidc) {
    body = (
      <OidcLogin
        issuer={config.issuer}
        onSignIn={() => {
          setLost(null);
          return oidc.signIn();
        }}
        lost={lost}
        error={noRole ? t.noRole : oidcError ? t.oidcFailed(oidcError) : null}
        completing={completing}
      />
    );
  } else {
    body = <p class="status" role="status">{t.loginNotConfigured}</p>;
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
function Workspace({ session, tokens, onAuthLost }: { session: Session; tokens: Tokens; onAuthLost: (why: AuthLoss) => void }) {
  const { t } = useI18n();
  const tRef = useRef(t);
  tRef.current = t;
  const api = useMemo(() => makeApi(tokens), [tokens]);
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

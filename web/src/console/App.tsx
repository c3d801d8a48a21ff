import { useEffect, useMemo, useState } from 'preact/hooks';
import { detectLang, strings, type Lang } from '../i18n';
import { devLoginAvailable, loadSession, saveSession, type Session } from './api';
import { I18nContext } from './i18n-context';
import { Login } from './Login';
import { ManagerView } from './ManagerView';
import { AdminView } from './AdminView';
import { LangSwitch } from './LangSwitch';
import type { AuthLoss } from './store';

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
  } else if (session.role === 'admin') {
    body = <AdminView session={session} onAuthLost={signOut} />;
  } else {
    body = <ManagerView key={session.token} session={session} onAuthLost={signOut} />;
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

import { useState } from 'preact/hooks';
import { devToken, HttpError, type Role, type Session } from './api';
import { useI18n } from './i18n-context';
import type { AuthLoss } from './store';

export function Login({ onSignIn, lost }: { onSignIn: (s: Session) => void; lost: AuthLoss | null }) {
  const { t } = useI18n();
  const [user, setUser] = useState('alice');
  const [name, setName] = useState('Alice');
  const [role, setRole] = useState<Role>('manager');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy || !user.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const token = await devToken(user.trim(), role, name.trim() || user.trim());
      onSignIn({ token, user: user.trim(), name: name.trim() || user.trim(), role });
    } catch (err) {
      setError(err instanceof HttpError ? t.signInFailed(err.status) : t.networkError);
      setBusy(false);
    }
  };

  return (
    <form class="card login" onSubmit={submit} aria-labelledby="login-title">
      <h2 id="login-title">{t.devLoginTitle}</h2>
      <p class="hint">{t.devLoginHint}</p>
      {lost && (
        <p class="alert" role="alert">
          {lost === 'expired' ? t.sessionExpired : t.forbidden}
        </p>
      )}
      <label>
        {t.userId}
        <input name="user" value={user} required autocomplete="username" onInput={(e) => setUser(e.currentTarget.value)} />
      </label>
      <label>
        {t.displayName}
        <input name="name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        {t.role}
        <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
          <option value="manager">{t.roleManager}</option>
          <option value="admin">{t.roleAdmin}</option>
        </select>
      </label>
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
      <button type="submit" disabled={busy}>
        {busy ? t.signingIn : t.signIn}
      </button>
    </form>
  );
}

/** Production sign-in: one button that leaves for the identity provider (OpenID Connect). */
export function OidcLogin({
  issuer,
  onSignIn,
  lost,
  error,
  completing,
}: {
  issuer: string;
  onSignIn: () => Promise<void>;
  lost: AuthLoss | null;
  error: string | null;
  completing: boolean;
}) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState(false);
  let host = issuer;
  try {
    host = new URL(issuer).host;
  } catch {
    // Shown as given.
  }
  const go = async () => {
    if (busy) return;
    setBusy(true);
    setFailed(false);
    try {
      await onSignIn();
    } catch {
      setFailed(true);
      setBusy(false);
    }
  };
  if (completing) {
    return (
      <p class="status" role="status">
        {t.oidcCompleting}
      </p>
    );
  }
  return (
    <section class="card login" aria-labelledby="login-title">
      <h2 id="login-title">{t.oidcLoginTitle}</h2>
      <p class="hint" id="login-hint">
        {t.oidcLoginHint(host)}
      </p>
      {lost && (
        <p class="alert" role="alert">
          {lost === 'expired' ? t.sessionExpired : t.forbidden}
        </p>
      )}
      {(error || failed) && (
        <p class="alert" role="alert">
          {failed ? t.oidcUnavailable : error}
        </p>
      )}
      <button type="button" aria-describedby="login-hint" disabled={busy} onClick={go}>
        {busy ? t.oidcRedirecting : t.oidcSignInButton}
      </button>
    </section>
  );
}

// Production sign-in: OpenID Connect, authorization code with PKCE (S256) against the issuer that
// `/config.json` names, as a public client. oidc-client-ts keeps the user (tokens) in
// sessionStorage and renews the access token with the refresh token (`offline_access`) before it
// lapses. Loaded on demand: a dev console never fetches this chunk.
import { UserManager, WebStorageStateStore, type User } from 'oidc-client-ts';
import { sessionFromToken, type Session, type Tokens } from './api';

export interface OidcSettings {
  issuer: string;
  client_id: string;
  scope: string;
}

/** The test hook (`window.__inboxAuth`): the browser flow forces a renewal through it. */
export interface InboxAuthHook {
  userManager: UserManager;
  /** signinSilent (the refresh token); resolves to the new access token. */
  renew: () => Promise<string>;
  token: () => string;
}

declare global {
  interface Window {
    __inboxAuth?: InboxAuthHook;
  }
}

/** What the console asks of the sign-in, whatever signs in. */
export class OidcAuth implements Tokens {
  readonly manager: UserManager;
  private user: User | null = null;
  private renewing: Promise<boolean> | null = null;
  private silent: Promise<User | null> | null = null;
  private readonly listeners = new Set<(s: Session | null) => void>();

  constructor(readonly settings: OidcSettings) {
    const origin = window.location.origin;
    this.manager = new UserManager({
      authority: settings.issuer,
      client_id: settings.client_id,
      redirect_uri: `${origin}/`,
      post_logout_redirect_uri: `${origin}/`,
      response_type: 'code',
      scope: settings.scope,
      // Renew ahead of expiry with the refresh token (no iframe: there is no silent_redirect_uri).
      automaticSilentRenew: true,
      userStore: new WebStorageStateStore({ store: window.sessionStorage }),
      stateStore: new WebStorageStateStore({ store: window.sessionStorage }),
      loadUserInfo: false,
      monitorSession: false,
    });
    // One refresh at a time, whoever asks (the automatic renewal, a refused call, the test hook):
    // the provider rotates a public client's refresh token, and sending a spent one twice may
    // revoke the whole grant.
    const signinSilent = this.manager.signinSilent.bind(this.manager);
    this.manager.signinSilent = (args) =>
      (this.silent ??= signinSilent(args).finally(() => {
        this.silent = null;
      }));
    this.manager.events.addUserLoaded((u) => this.set(u));
    this.manager.events.addUserUnloaded(() => this.set(null));
    this.manager.events.addUserSignedOut(() => this.set(null));
    window.__inboxAuth = {
      userManager: this.manager,
      renew: async () => {
        await this.renew();
        return this.token();
      },
      token: () => this.token(),
    };
  }

  private set(u: User | null): void {
    this.user = u;
    const s = this.session();
    for (const fn of this.listeners) fn(s);
  }

  /** Every change of the signed-in user: a renewal (new token), a sign-out (null). */
  onChange(fn: (s: Session | null) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  token(): string {
    return this.user?.access_token ?? '';
  }

  session(): Session | null {
    const t = this.token();
    return t ? sessionFromToken(t) : null;
  }

  /** Whether the URL is the provider's answer to a sign-in (`code`/`error` with `state`). */
  static isCallback(): boolean {
    const q = new URLSearchParams(window.location.search);
    return q.has('state') && (q.has('code') || q.has('error'));
  }

  /** On start: completes a sign-in the URL answers (then puts `/` back in the address bar), else
   * takes the user kept in this tab's sessionStorage (renewing it first if its token lapsed). */
  async start(): Promise<Session | null> {
    if (OidcAuth.isCallback()) {
      try {
        this.set(await this.manager.signinRedirectCallback());
      } finally {
        window.history.replaceState(null, '', '/');
      }
      return this.session();
    }
    const u = await this.manager.getUser();
    if (!u) return null;
    this.user = u;
    if (u.expired && !(await this.renew())) {
      await this.manager.removeUser();
      return null;
    }
    return this.session();
  }

  /** Leaves for the provider. With `offline_access` it asks for consent too: OpenID Connect
   * (and oidc-provider) grant no refresh token for it otherwise. */
  signIn(): Promise<void> {
    const offline = this.settings.scope.split(/\s+/).includes('offline_access');
    return this.manager.signinRedirect(offline ? { prompt: 'consent' } : undefined);
  }

  /** A fresh access token now (the refresh token); one renewal at a time, false when it failed
   * (no refresh token, or the provider refused it: the session is over). */
  renew(): Promise<boolean> {
    this.renewing ??= this.manager
      .signinSilent()
      .then((u) => {
        if (u) this.set(u);
        return !!u;
      })
      .catch(() => false)
      .finally(() => {
        this.renewing = null;
      });
    return this.renewing;
  }

  /** Clears the session in this tab; through the provider's end_session_endpoint too, when it
   * advertises one (the page then leaves for the provider and comes back to `/`). */
  async signOut(): Promise<void> {
    const idToken = this.user?.id_token;
    let endSession: string | undefined;
    try {
      endSession = await this.manager.metadataService.getEndSessionEndpoint();
    } catch {
      endSession = undefined;
    }
    await this.manager.removeUser();
    this.set(null);
    if (endSession) {
      await this.manager.signoutRedirect({ id_token_hint: idToken }).catch(() => undefined);
    }
  }

  /** After the engine ended the session (an expired or refused token): local only. */
  async drop(): Promise<void> {
    await this.manager.removeUser().catch(() => undefined);
    this.set(null);
  }
}

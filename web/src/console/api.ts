// The console's side of the engine: gRPC-Web (binary protobuf) to the gateway's web listener on
// this page's own origin, the sign-in settings (`/config.json`) and the dev-only `/dev/token`.
import { Code, ConnectError, createClient, type Interceptor, type Client } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { ManagerService } from '../gen/inbox/v1/manager_pb';
import { AdminService } from '../gen/inbox/v1/admin_pb';
import { jwtClaims } from '../shared/jwt';

export type Role = 'manager' | 'admin';

export interface Session {
  token: string;
  user: string;
  name: string;
  role: Role;
}

const SESSION_KEY = 'inbox.console.session';

export function loadSession(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return s && typeof s.token === 'string' ? (s as Session) : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** How this console signs in, as the origin's `/config.json` says. */
export type LoginConfig =
  | { login: 'dev' }
  | { login: 'oidc'; issuer: string; client_id: string; scope: string }
  | { login: 'none' };

/** Reads `/config.json`. An origin without it (an older engine, the Vite dev server) falls back to
 * probing `/dev/token`; one that answers but cannot be read throws. */
export async function loginConfig(): Promise<LoginConfig> {
  const r = await fetch('/config.json', { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (r.status === 404) return (await devLoginAvailable()) ? { login: 'dev' } : { login: 'none' };
  if (!r.ok) throw new HttpError(r.status);
  const c = (await r.json()) as Record<string, unknown>;
  if (c.login === 'dev') return { login: 'dev' };
  if (c.login === 'oidc' && typeof c.issuer === 'string' && /^https?:\/\//.test(c.issuer) && typeof c.client_id === 'string' && c.client_id) {
    return {
      login: 'oidc',
      issuer: c.issuer,
      client_id: c.client_id,
      scope: typeof c.scope === 'string' && c.scope ? c.scope : 'openid profile offline_access',
    };
  }
  return { login: 'none' };
}

/** The console's view of an access token (not verified: the engine does that): the user id
 * `sub`, the name `name` (else `preferred_username`), the role from `realm_access.roles`; null
 * when the token has neither the manager nor the admin role. */
export function sessionFromToken(token: string): Session | null {
  const c = jwtClaims(token) as {
    sub?: string;
    name?: string;
    preferred_username?: string;
    realm_access?: { roles?: unknown };
  };
  if (!c.sub) return null;
  const roles = Array.isArray(c.realm_access?.roles) ? (c.realm_access.roles as unknown[]) : [];
  const role: Role | null = roles.includes('admin') ? 'admin' : roles.includes('manager') ? 'manager' : null;
  if (!role) return null;
  const name = (c.name || '').trim() || (c.preferred_username || '').trim() || c.sub;
  return { token, user: c.sub, name, role };
}

/** Whether this origin offers `/dev/token` (404 where it is not a dev deployment; a static-only
 * server answers a POST with 404 or 405). */
export async function devLoginAvailable(): Promise<boolean> {
  try {
    const r = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    return r.status !== 404 && r.status !== 405;
  } catch {
    return false;
  }
}

export async function devToken(user: string, role: Role, name: string): Promise<string> {
  const r = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, role, name }),
  });
  if (!r.ok) throw new HttpError(r.status);
  const body = (await r.json()) as { token?: string };
  if (!body.token) throw new HttpError(r.status);
  return body.token;
}

export class HttpError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** Where the calls take their bearer token: read at every call, so a renewed token is used by the
 * next one. `renew` (OIDC only) gets a fresh token now and says whether it did. */
export interface Tokens {
  token(): string;
  renew?: () => Promise<boolean>;
}

export interface Api {
  manager: Client<typeof ManagerService>;
  admin: Client<typeof AdminService>;
  /** The token the next call carries. */
  token: () => string;
  /** Gets a fresh token (the refresh token); false when there is none to get. */
  renew?: () => Promise<boolean>;
}

export function api(tokens: Tokens): Api {
  const auth: Interceptor = (next) => async (req) => {
    const sent = tokens.token();
    req.header.set('authorization', `Bearer ${sent}`);
    try {
      return await next(req);
    } catch (e) {
      // A unary call refused for its token (it lapsed between renewals, say) is sent once more
      // with a fresh one: the engine did nothing with it. Streams resume in the store instead.
      if (req.stream || !tokens.renew || ConnectError.from(e).code !== Code.Unauthenticated) throw e;
      if (!(await tokens.renew()) || tokens.token() === sent) throw e;
      req.header.set('authorization', `Bearer ${tokens.token()}`);
      return await next(req);
    }
  };
  const transport = createGrpcWebTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: true,
    interceptors: [auth],
  });
  return {
    manager: createClient(ManagerService, transport),
    admin: createClient(AdminService, transport),
    token: () => tokens.token(),
    renew: tokens.renew ? () => tokens.renew!() : undefined,
  };
}

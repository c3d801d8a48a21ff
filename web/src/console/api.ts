// The console's side of the engine: gRPC-Web (binary protobuf) to the gateway's web listener on
// this page's own origin, and the dev-only `/dev/token`.
import { createClient, type Interceptor, type Client } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { ManagerService } from '../gen/inbox/v1/manager_pb';
import { AdminService } from '../gen/inbox/v1/admin_pb';

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

export interface Api {
  manager: Client<typeof ManagerService>;
  admin: Client<typeof AdminService>;
}

export function api(token: string): Api {
  const auth: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: true,
    interceptors: [auth],
  });
  return {
    manager: createClient(ManagerService, transport),
    admin: createClient(AdminService, transport),
  };
}

// The client HTTP API of `communication` (see communication/src/http.rs): JSON over fetch with a
// bearer token; the WebSocket URL of `/v1/ws`.

export type TokenSource = string | (() => string | Promise<string>);

/** A file reference of the API: `POST /v1/attachments`'s answer, a message's `attachments`. */
export interface WireAttachment {
  id: string;
  name: string;
  content_type: string;
  size: number;
}

/** One entry of `GET /v1/messages`: oldest first within a page. */
export interface WireMessage {
  id: string;
  ticket_id: string | null;
  author: 'client' | 'manager' | 'system';
  body: string;
  /** For the client's own messages: `pending` until checked, then `delivered`; else empty. */
  status: string;
  channel: string;
  created_at: string;
  /** The files it carries, in order (a blocked message is not listed at all). */
  attachments?: WireAttachment[];
}

/** A command of the bank's bot (`GET /v1/commands`): the client writes `/name args`. */
export interface BotCommand {
  name: string;
  description: string;
}

export interface HistoryPage {
  messages: WireMessage[];
  next_before: string | null;
}

/** An HTTP answer other than 2xx: `{"error": {"code", "message", "field"?}}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs: number | null,
  ) {
    super(message);
  }
  /** Worth retrying with the same request (the server or the network may recover). */
  get transient(): boolean {
    return this.status === 429 || this.status === 408 || this.status >= 500;
  }
}

export class ChatApi {
  private token: string | null = null;

  constructor(
    readonly baseUrl: string,
    private readonly source: TokenSource,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async currentToken(refresh = false): Promise<string> {
    if (typeof this.source === 'string') return this.source;
    if (!this.token || refresh) this.token = await this.source();
    return this.token;
  }

  /** A fetch of the API; a network failure throws a TypeError (the caller retries). A JSON
   * `body` is sent as JSON, a FormData as multipart/form-data (the browser sets the boundary). */
  private async request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${await this.currentToken()}` };
    const form = body instanceof FormData;
    if (body !== undefined && !form) headers['content-type'] = 'application/json';
    const r = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : form ? body : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
    if (!r.ok) {
      let message = `HTTP ${r.status}`;
      try {
        const e = (await r.json()) as { error?: { message?: string } };
        if (e.error?.message) message = e.error.message;
      } catch {
        // not JSON: keep the status
      }
      const ra = Number(r.headers.get('retry-after'));
      throw new HttpError(r.status, message, Number.isFinite(ra) && ra > 0 ? ra * 1000 : null);
    }
    return r;
  }

  private async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const r = await this.request(method, path, body, signal);
    if (r.status === 204) return undefined as T;
    return (await r.json()) as T;
  }

  history(before: string | null, limit = 30): Promise<HistoryPage> {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set('before', before);
    return this.call('GET', `/v1/messages?${q}`);
  }

  /** `attachments`: ids of this client's uploads, in order (the body may then be empty). */
  send(body: string, clientMessageId: string, attachments: string[] = []): Promise<{ message_id: string }> {
    return this.call('POST', '/v1/messages', { body, client_message_id: clientMessageId, attachments });
  }

  /** Stores a file for the next message (201 with its reference; 413 / 422 name a refusal). */
  upload(file: File, signal?: AbortSignal): Promise<WireAttachment> {
    const form = new FormData();
    form.append('file', file, file.name);
    return this.call('POST', '/v1/attachments', form, signal);
  }

  /** The bytes of a file of the chat (404 when it is not the client's to see). */
  async download(id: string): Promise<Blob> {
    return (await this.request('GET', this.fileUrl(id))).blob();
  }

  /** Where the file is, under the API (it needs the bearer token: not for `<img src>`). */
  fileUrl(id: string): string {
    return `/v1/attachments/${encodeURIComponent(id)}`;
  }

  markRead(messageId: string): Promise<{ read_up_to: string | null; unread: number }> {
    return this.call('POST', '/v1/read', { message_id: messageId });
  }

  readState(): Promise<{ read_up_to: string | null; unread: number }> {
    return this.call('GET', '/v1/read');
  }

  /** The bot's commands, in the bank's order. */
  commands(): Promise<{ commands: BotCommand[] }> {
    return this.call('GET', '/v1/commands');
  }

  /** "I am typing" (204): the manager of the client's assigned ticket gets a `typing` event. */
  typing(): Promise<void> {
    return this.call('POST', '/v1/typing');
  }

  /** Browsers cannot set headers on a WebSocket: the token goes as `?token=`. */
  async socketUrl(after: number): Promise<string> {
    const u = new URL(this.baseUrl + '/v1/ws');
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('token', await this.currentToken());
    if (after > 0) u.searchParams.set('after', String(after));
    return u.toString();
  }
}

// Attachments as both apps see them: a reference (id, name, type, size), a file being uploaded
// for the next message, and the object URLs that show a file's bytes (the API wants a bearer
// token, which an `<img src>` or a link cannot carry: the bytes are fetched, then shown as a blob).

/** A file a message carries (`{id, name, content_type, size}` of the engine). */
export interface FileRef {
  id: string;
  name: string;
  contentType: string;
  size: number;
}

/** A file chosen for the next message: uploading, uploaded (`ref`), or refused (`error`). */
export interface PendingFile {
  /** Local: names the chip until (and after) the engine names the file. */
  key: string;
  name: string;
  size: number;
  state: 'uploading' | 'done' | 'failed';
  ref?: FileRef;
  /** Why it was refused: the engine's message. */
  error?: string;
  /** Refused for its size before the engine could say why (a body over the server's limit). */
  tooLarge?: boolean;
}

/** The types a browser shows in an `<img>` (and the engine accepts by default). */
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

export function isImage(f: { contentType: string }): boolean {
  return IMAGE_TYPES.has(f.contentType.toLowerCase());
}

/** The engine's JSON reference (an event's or the history's `attachments` entry), if well-formed. */
export function fileFromJson(v: unknown): FileRef | null {
  if (!v || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'string' || !o.id) return null;
  const size = typeof o.size === 'number' ? o.size : Number(o.size);
  return {
    id: o.id,
    name: typeof o.name === 'string' && o.name ? o.name : 'file',
    contentType: typeof o.content_type === 'string' ? o.content_type : '',
    size: Number.isFinite(size) && size >= 0 ? size : 0,
  };
}

/** Every well-formed reference of a JSON `attachments` array (anything else: none). */
export function filesFromJson(v: unknown): FileRef[] {
  if (!Array.isArray(v)) return [];
  return v.map(fileFromJson).filter((f): f is FileRef => f !== null);
}

/** Whether two lists name the same files in the same order. */
export function sameFiles(a: readonly FileRef[] | undefined, b: readonly FileRef[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((f, i) => f.id === y[i].id);
}

/** Object URLs of files, one per attachment id: fetched once, kept until revoked. */
export class BlobUrls {
  private readonly urls = new Map<string, string>();
  private readonly loading = new Map<string, Promise<string>>();
  private closed = false;

  constructor(private readonly fetchBlob: (id: string) => Promise<Blob>) {}

  /** The URL of `id` if it is here already. */
  peek(id: string): string | undefined {
    return this.urls.get(id);
  }

  /** Puts bytes the page has already (a file it just uploaded) under `id`. */
  seed(id: string, blob: Blob): void {
    if (this.closed || this.urls.has(id)) return;
    this.urls.set(id, URL.createObjectURL(blob));
  }

  /** The URL of `id`, fetched the first time; a failure is not kept (the next call tries again). */
  get(id: string): Promise<string> {
    const known = this.urls.get(id);
    if (known) return Promise.resolve(known);
    let p = this.loading.get(id);
    if (!p) {
      p = this.fetchBlob(id)
        .then((blob) => {
          if (this.closed) throw new Error('closed');
          let url = this.urls.get(id);
          if (!url) {
            url = URL.createObjectURL(blob);
            this.urls.set(id, url);
          }
          return url;
        })
        .finally(() => this.loading.delete(id));
      this.loading.set(id, p);
    }
    return p;
  }

  revoke(id: string): void {
    const url = this.urls.get(id);
    if (url) URL.revokeObjectURL(url);
    this.urls.delete(id);
  }

  /** Revokes every URL; later fetches are dropped (the view they were for is gone). */
  revokeAll(): void {
    this.closed = true;
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
  }
}

/** Saves the file at `url` (an object URL) as `name`, as a click on a download link would. */
export function saveAs(url: string, name: string, near: Node): void {
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  a.style.display = 'none';
  // Inside the widget's shadow root when it is there (the page's own document otherwise).
  const root = near.getRootNode();
  (root instanceof ShadowRoot ? root : document.body).appendChild(a);
  a.click();
  a.remove();
}

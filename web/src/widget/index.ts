// The embeddable chat: `<script src=".../widget/widget.js"></script>` defines `InboxWidget`;
// `InboxWidget.mount(element, {apiUrl, token, lang?})` shows the client's chat in `element`.
import { h, render } from 'preact';
import { detectLang } from '../i18n';
import type { TokenSource } from './api';
import { Widget } from './Widget';
import { CSS } from './styles';

export interface MountOptions {
  /** The origin of `communication`'s client API, e.g. `https://chat.bank.example`. */
  apiUrl: string;
  /** The client's bearer token, or a function giving a fresh one (called again on expiry). */
  token: TokenSource;
  /** `en` or `ru`; default: the browser's language. */
  lang?: string;
  /** The file types the picker offers first (the `accept` of its input; comma-separated MIME
   * types): default the engine's default INBOX_ATTACHMENT_TYPES. The engine decides anyway. */
  attachmentTypes?: string;
}

export interface Mounted {
  unmount(): void;
}

export function mount(element: Element, options: MountOptions): Mounted {
  if (!element || !options || !options.apiUrl || !options.token) {
    throw new TypeError('InboxWidget.mount(element, {apiUrl, token, lang?})');
  }
  // A host of our own inside the element: the element may be anything, and the shadow root
  // keeps the page's styles and ours apart.
  const host = document.createElement('div');
  host.style.height = '100%';
  element.appendChild(host);
  const root = host.attachShadow({ mode: 'open' });
  const style = document.createElement('style');
  style.textContent = CSS;
  root.appendChild(style);
  const app = document.createElement('div');
  app.style.height = '100%';
  root.appendChild(app);
  render(
    h(Widget, {
      apiUrl: options.apiUrl,
      token: options.token,
      lang: detectLang(options.lang),
      accept: options.attachmentTypes || undefined,
    }),
    app,
  );
  return {
    unmount() {
      render(null, app);
      host.remove();
    },
  };
}

export const version = '0.1.0';

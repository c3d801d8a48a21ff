// How the console calls for attention: a desktop notification (Notification API) when the
// manager allowed it and is looking elsewhere, else a short beep (WebAudio). One mute switch,
// kept in localStorage, silences both.

const MUTE_KEY = 'inbox.console.muted';

export type Permission = NotificationPermission | 'unsupported';

export class Alerts {
  muted: boolean;
  private audio: AudioContext | null = null;
  private readonly listeners = new Set<() => void>();

  constructor() {
    this.muted = localStorage.getItem(MUTE_KEY) === '1';
    // Browsers start audio only after a user gesture: make (or wake) the context on the first one.
    window.addEventListener('pointerdown', this.unlock, true);
    window.addEventListener('keydown', this.unlock, true);
  }

  private readonly unlock = () => {
    if (this.context()?.state !== 'running') return;
    window.removeEventListener('pointerdown', this.unlock, true);
    window.removeEventListener('keydown', this.unlock, true);
  };

  dispose(): void {
    window.removeEventListener('pointerdown', this.unlock, true);
    window.removeEventListener('keydown', this.unlock, true);
    void this.audio?.close().catch(() => {});
    this.audio = null;
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  setMuted(muted: boolean): void {
    this.muted = muted;
    localStorage.setItem(MUTE_KEY, muted ? '1' : '0');
    this.emit();
  }

  permission(): Permission {
    return typeof Notification === 'undefined' ? 'unsupported' : Notification.permission;
  }

  /** Asks for desktop notifications (only from a click: browsers ignore it otherwise). */
  async askPermission(): Promise<void> {
    if (this.permission() !== 'default') return;
    try {
      await Notification.requestPermission();
    } catch {
      // an old callback-only API or a refusal: the beep stays
    }
    this.emit();
  }

  /** Calls for attention, unless muted. `tag` folds repeated alerts of one ticket together. */
  notify(title: string, body: string, tag: string): void {
    if (this.muted) return;
    const away = document.visibilityState !== 'visible' || !document.hasFocus();
    if (away && this.permission() === 'granted') {
      try {
        const n = new Notification(title, { body, tag, silent: false });
        n.onclick = () => {
          window.focus();
          n.close();
        };
        return;
      } catch {
        // some browsers allow notifications only from a service worker: beep instead
      }
    }
    this.beep();
  }

  private context(): AudioContext | null {
    const Ctor = window.AudioContext ?? (window as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext;
    if (!Ctor) return null;
    try {
      this.audio ??= new Ctor();
      if (this.audio.state === 'suspended') void this.audio.resume().catch(() => {});
    } catch {
      return null;
    }
    return this.audio;
  }

  /** Two short tones, quiet. */
  beep(): void {
    const ctx = this.context();
    if (!ctx || ctx.state !== 'running') return;
    const start = ctx.currentTime;
    for (const [offset, freq] of [
      [0, 880],
      [0.16, 1320],
    ] as const) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.15, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.14);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + offset);
      osc.stop(start + offset + 0.15);
    }
  }
}

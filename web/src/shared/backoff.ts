/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s … capped at `maxMs`, each ±20 %. */
export class Backoff {
  private attempt = 0;
  constructor(private readonly baseMs = 500, private readonly maxMs = 15_000) {}

  /** The delay before the next try; each call doubles the next one. */
  next(): number {
    const raw = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(raw * (0.8 + Math.random() * 0.4));
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (or the browser comes back online). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      window.removeEventListener('online', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
    window.addEventListener('online', done);
  });
}

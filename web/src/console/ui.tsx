// Small pieces the console's views share: a re-render hook, a once-a-second clock, a modal dialog.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useReducer, useRef } from 'preact/hooks';

export function useRerender(): () => void {
  const [, bump] = useReducer((n: number, _: null) => n + 1, 0);
  return useCallback(() => bump(null), []);
}

// One timer for every countdown on the page.
const ticking = new Set<() => void>();
let timer: ReturnType<typeof setInterval> | undefined;

/** Re-renders the caller every second (while `on`); returns the current time. */
export function useSecondClock(on = true): number {
  const rerender = useRerender();
  useEffect(() => {
    if (!on) return;
    ticking.add(rerender);
    timer ??= setInterval(() => ticking.forEach((f) => f()), 1000);
    return () => {
      ticking.delete(rerender);
      if (!ticking.size && timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
    };
  }, [on]);
  return Date.now();
}

/** `m:ss` or `h:mm:ss` of a span of milliseconds (its absolute value). */
export function clock(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60));
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** A modal `<dialog>`: the browser keeps the focus inside, Esc closes it, the focus goes back to
 * where it was. */
export function Dialog({
  open,
  onClose,
  labelledBy,
  describedBy,
  class: cls,
  children,
}: {
  open: boolean;
  onClose: () => void;
  labelledBy: string;
  describedBy?: string;
  class?: string;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const before = useRef<Element | null>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      before.current = document.activeElement;
      d.showModal();
    } else if (!open && d.open) {
      d.close();
    }
  }, [open]);
  const closed = () => {
    const el = before.current;
    before.current = null;
    if (el instanceof HTMLElement && el.isConnected) el.focus();
    onClose();
  };
  return (
    <dialog ref={ref} class={`dialog ${cls ?? ''}`} aria-labelledby={labelledBy} aria-describedby={describedBy} onClose={closed}>
      {open && children}
    </dialog>
  );
}

/** Whether a key press belongs to a text field (shortcuts stay out of the way there). */
export function typingIn(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
  if (tag !== 'INPUT') return false;
  const type = (target as HTMLInputElement).type;
  return !['button', 'checkbox', 'radio', 'submit', 'reset', 'range', 'color', 'file'].includes(type);
}

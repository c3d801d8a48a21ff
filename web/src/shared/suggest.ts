// The keys of a suggestion list a text field controls (the combobox pattern as far as a textarea
// may take it): the console's canned responses and the widget's bot commands.

export type SuggestionKey = 'next' | 'previous' | 'take' | 'close';

/** What `e` does to an open list, or null for a key the text field keeps. */
export function suggestionKey(e: KeyboardEvent): SuggestionKey | null {
  if (e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return null;
  if (e.key === 'ArrowDown') return 'next';
  if (e.key === 'ArrowUp') return 'previous';
  if (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey)) return 'take';
  if (e.key === 'Escape') return 'close';
  return null;
}

/** The active option of `n` after a 'next' or 'previous' (round the ends). */
export function moved(key: 'next' | 'previous', current: number, n: number): number {
  return (current + (key === 'next' ? 1 : n - 1)) % n;
}

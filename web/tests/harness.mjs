// What the browser flows share: Chromium's flags, a run id, numbered steps and checks.

// Flags from shared/stack.md: without the networking ones Chromium floods the closed network.
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** A short id of this run: user ids and texts of different runs never meet. */
export const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** A step that failed, with its name and why. */
export class StepError extends Error {}

let passed = 0;

/** How many steps passed so far. */
export function passedSteps() {
  return passed;
}

/** Runs one numbered step: `ok N - name (ms)`, or a StepError naming it. */
export async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n').slice(0, 6).join('\n  ') : String(e);
    throw new StepError(`${name}: ${why}`);
  }
  passed++;
  console.log(`ok ${passed} - ${name} (${Date.now() - started} ms)`);
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

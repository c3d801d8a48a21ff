// The widget's styles, inside its shadow root: the host page's CSS cannot reach in, and these
// cannot leak out.
export const CSS = `
:host { all: initial; display: block; }
.iw { --accent: #1454d6; --line: #d8dde3; --muted: #5b6470; --focus: #ff9f1a;
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
  display: flex; flex-direction: column; height: 100%; min-height: 22rem; max-height: 100%;
  border: 1px solid var(--line); border-radius: 12px; background: #fff; overflow: hidden; box-sizing: border-box; }
.iw *, .iw *::before, .iw *::after { box-sizing: border-box; }
.iw :focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.iw-head { display: flex; align-items: center; gap: .5rem; padding: .55rem .75rem; background: var(--accent); color: #fff; }
.iw-head h2 { font-size: 1rem; margin: 0; flex: 1; }
.iw-link { font-size: .75rem; padding: .05rem .5rem; border-radius: 999px; background: rgba(0,0,0,.22); }
.iw-link-reconnecting, .iw-link-connecting { background: #fff6d6; color: #8a5a00; }
.iw-lang { font: inherit; font-size: .8rem; border-radius: 6px; border: 1px solid rgba(255,255,255,.6); background: transparent; color: #fff; }
.iw-lang option { color: #1b1f24; }
.iw-banner { margin: 0; padding: .4rem .75rem; background: #fff6d6; color: #8a5a00; font-size: .85rem; }
.iw-banner-error { background: #fdecea; color: #b3261e; }
.iw-log { flex: 1; overflow-y: auto; padding: .5rem .75rem; background: #f5f6f8; }
.iw-top { min-height: 1px; text-align: center; color: var(--muted); font-size: .8rem; }
.iw-empty { color: var(--muted); text-align: center; }
.iw-msgs { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: .4rem; }
.iw-msg { max-width: 80%; display: grid; gap: .1rem; padding: .4rem .6rem; border-radius: 10px; white-space: pre-wrap; overflow-wrap: anywhere; }
.iw-client { align-self: flex-end; background: #dfeaff; }
.iw-client[data-state="queued"], .iw-client[data-state="sending"] { opacity: .75; }
.iw-client[data-state="failed"] { border: 1px solid #b3261e; }
.iw-manager { align-self: flex-start; background: #fff; border: 1px solid var(--line); }
.iw-system { align-self: center; max-width: 90%; color: var(--muted); font-style: italic; text-align: center; }
.iw-warning { align-self: flex-end; background: #fdecea; color: #b3261e; border: 1px solid #f3b7b2; }
.iw-who { font-size: .75rem; font-weight: 600; color: var(--muted); }
.iw-warning .iw-who { color: #b3261e; }
.iw-meta { display: flex; gap: .5rem; font-size: .72rem; color: var(--muted); justify-content: flex-end; }
.iw-link-button { font: inherit; background: none; border: none; padding: 0; color: #b3261e; text-decoration: underline; cursor: pointer; }
.iw-typing { margin: 0; padding: 0 .75rem; min-height: 1.35rem; line-height: 1.35rem; font-size: .8rem; font-style: italic;
  color: var(--muted); background: #f5f6f8; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.iw-composer { display: grid; gap: .35rem; padding: .5rem; border-top: 1px solid var(--line); }
.iw-compose-row { display: flex; gap: .5rem; }
.iw-compose-row textarea { flex: 1; font: inherit; resize: none; padding: .4rem .5rem; border: 1px solid var(--line); border-radius: 8px; }
.iw-send { font: inherit; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 8px; padding: 0 1rem; cursor: pointer; }
.iw-send[aria-disabled="true"] { opacity: .55; cursor: default; }
.iw-compose-note { margin: 0; font-size: .8rem; color: #8a5a00; }
/* Empty, it stays a live region but takes no room. */
.iw-compose-note:empty { position: absolute; }
.iw-attach { position: relative; display: flex; }
.iw-attach-input { position: absolute; width: 1px; height: 1px; opacity: 0; overflow: hidden; }
.iw-attach-label { display: flex; align-items: center; justify-content: center; width: 2.5rem; border: 1px solid var(--line);
  border-radius: 8px; color: var(--accent); background: #fff; cursor: pointer; }
.iw-attach-label:hover { background: #eef3ff; }
.iw-attach-input:focus-visible + .iw-attach-label { outline: 3px solid var(--focus); outline-offset: 2px; }
.iw-attach-input:disabled + .iw-attach-label { opacity: .55; cursor: default; }
.iw-attach-text { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.iw-chips { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: .3rem; }
.iw-chip { display: flex; flex-wrap: wrap; align-items: center; gap: .35rem; max-width: 100%; padding: .15rem .2rem .15rem .55rem;
  border: 1px solid var(--line); border-radius: 999px; background: #f5f6f8; font-size: .8rem; }
.iw-chip[data-state="failed"] { border-color: #f3b7b2; background: #fdecea; border-radius: 10px; }
.iw-chip-name { font-weight: 600; overflow-wrap: anywhere; }
.iw-chip-size, .iw-chip-state { color: var(--muted); }
.iw-chip-error { color: #b3261e; flex-basis: 100%; }
.iw-chip-remove { font: inherit; font-size: 1rem; line-height: 1; min-width: 1.6rem; min-height: 1.6rem; border: none; border-radius: 999px;
  background: none; color: var(--muted); cursor: pointer; }
.iw-chip-remove:hover { background: rgba(0,0,0,.08); }
.iw-chip-remove[aria-disabled="true"] { opacity: .55; cursor: default; }
.iw-files { list-style: none; margin: .2rem 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: .35rem; white-space: normal; }
.iw-thumb { display: inline-grid; gap: .15rem; color: inherit; text-decoration: none; font-size: .75rem; }
.iw-thumb img { display: block; min-width: 2.5rem; min-height: 2.5rem; max-width: 12rem; max-height: 9rem; object-fit: contain;
  border-radius: 6px; border: 1px solid var(--line); background: #fff; image-rendering: auto; }
.iw-thumb-loading { color: var(--muted); font-style: italic; }
.iw-file-caption, .iw-file-size { color: var(--muted); }
.iw-file-link { display: inline-flex; flex-wrap: wrap; gap: .35rem; align-items: baseline; padding: .25rem .5rem; border-radius: 6px;
  border: 1px solid var(--line); background: #fff; color: var(--accent); font-size: .85rem; }
.iw-file-link .iw-file-name { text-decoration: underline; overflow-wrap: anywhere; }
.iw-file-state { font-size: .75rem; color: var(--muted); }
.iw-question { max-width: 95%; }
.iw-rating { white-space: normal; display: grid; gap: .25rem; margin-top: .35rem; font-style: normal; }
.iw-rate-buttons { display: flex; gap: .35rem; justify-content: center; }
.iw-rate { font: inherit; font-weight: 600; min-width: 2.5rem; min-height: 2.5rem; border-radius: 8px; cursor: pointer;
  border: 1px solid var(--accent); background: #fff; color: var(--accent); }
.iw-rate:hover { background: #eef3ff; }
.iw-rate[aria-pressed="true"] { background: var(--accent); color: #fff; }
.iw-rate[aria-disabled="true"] { cursor: default; }
.iw-rate[aria-disabled="true"]:not([aria-pressed="true"]) { opacity: .6; }
.iw-rate-scale { display: flex; justify-content: space-between; font-size: .75rem; color: var(--muted); }
.iw-rate-note { margin: 0; font-size: .8rem; }
.iw-thanks { margin: .35rem 0 0; font-style: normal; font-weight: 600; color: #1d6b3a; }
.iw-commands { list-style: none; margin: 0; padding: .2rem; display: grid; gap: .1rem; max-height: 10rem; overflow-y: auto;
  border: 1px solid var(--line); border-radius: 8px; background: #fff; }
.iw-commands li { display: flex; flex-wrap: wrap; gap: .1rem .6rem; padding: .3rem .5rem; border-radius: 6px; cursor: pointer; }
.iw-commands li:hover { background: #f5f6f8; }
.iw-commands .iw-active { background: #eef3ff; outline: 2px solid var(--accent); outline-offset: -2px; }
.iw-command-name { font-weight: 600; color: var(--accent); }
.iw-command-text { color: var(--muted); font-size: .85rem; }
.iw-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

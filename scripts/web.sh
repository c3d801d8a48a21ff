#!/usr/bin/env bash
# Builds the web apps (web/: the console the gateway serves, the widget communication serves) into
# web/dist. `npm ci` runs only when web/package-lock.json changed since the last install (a stamp in
# node_modules); npm's download cache lives in $INBOX_CACHE, outside the clone.
#
#   scripts/web.sh          install if needed, then build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
WEB="$ROOT/web"
INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
say() { echo "[web] $*" >&2; }

command -v npm >/dev/null 2>&1 || "$ROOT/scripts/stack.sh" install
cd "$WEB"
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.inbox-lock-sha256"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_hash" ]]; then
  say "npm ci (cache $INBOX_CACHE/npm-cache)"
  npm ci --no-audit --no-fund --cache "$INBOX_CACHE/npm-cache" >&2
  echo "$lock_hash" > "$stamp"
fi
say "npm run build -> web/dist"
npm run --silent build >&2

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
# The console's gRPC-Web client is generated from proto/ and committed: it must be what the protos
# say now (a proto change without `npm run gen` would otherwise reach the browser unnoticed).
say "npm run gen (web/src/gen must match proto/)"
npm run --silent gen >&2
# `make test` (INBOX_WEB_CHECK_GEN=1) fails on a stale committed copy; `make run` just uses the fresh one.
if [[ "${INBOX_WEB_CHECK_GEN:-}" == 1 ]] && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  if ! git -C "$ROOT" diff --quiet -- web/src/gen; then
    git -C "$ROOT" diff --stat -- web/src/gen >&2
    say "web/src/gen is stale: run \`cd web && npm run gen\` and commit web/src/gen"
    exit 1
  fi
fi
say "npm run build -> web/dist"
npm run --silent build >&2

#!/usr/bin/env bash
# `make test` (and CI): stack up, fmt check, clippy, build, nextest against the dev stack.
# Stops only the stack services it started; exits with the status of the first failing step.
# shellcheck disable=SC2317  # cleanup runs from a trap
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
STACK="$ROOT/scripts/stack.sh"
export INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$INBOX_CACHE/target}"
T0=$SECONDS
STARTED_STACK=()
TIMINGS=()

say() { echo "[test] $*" >&2; }

step() {  # step NAME CMD...: run and time one step
  local name="$1" t=$SECONDS rc=0; shift
  say "==> $name: $*"
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-8s %4ss' "$name" $((SECONDS - t)))")
  ((rc == 0)) || TIMINGS[-1]+=" FAILED (status $rc)"
  return "$rc"
}

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM
  if ((${#STARTED_STACK[@]})); then
    say "stopping stack: ${STARTED_STACK[*]}"
    "$STACK" down "${STARTED_STACK[@]}" || true
  fi
  local t
  for t in "${TIMINGS[@]}"; do say "  $t"; done
  say "wall time $((SECONDS - T0))s, exit status $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step install "$STACK" install
for s in postgres temporal kafka; do
  # Only a service with no process at all is ours to stop later: one that is running but slow to
  # answer its health check (a busy machine) belongs to whoever started it.
  # `status` exits non-zero for a service that is down: under pipefail a pipe into grep would
  # then always be false, so the output is taken first.
  state="$("$STACK" status "$s" 2>/dev/null || true)"
  if grep -q '^[a-z]* *down$' <<<"$state"; then STARTED_STACK+=("$s"); fi
done
step up "$STACK" up
# dev.env + INBOX_TEMPORAL_BIN / INBOX_TANSU_BIN, so tests find the stack.
eval "$("$STACK" env)"

# The test-only hooks (communication's crash injection) are compiled into these builds only; every
# step takes the same features, so no step rebuilds what another built.
FEATURES=(--features communication/test-hooks)
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
step build cargo build --workspace --bins "${FEATURES[@]}"
# The web apps the services serve and the browser tests drive (e2e/tests/browser.rs).
step web env INBOX_WEB_CHECK_GEN=1 "$ROOT/scripts/web.sh"
step nextest cargo nextest run --workspace --no-fail-fast "${FEATURES[@]}"

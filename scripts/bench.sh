#!/usr/bin/env bash
# `make bench`: stack up (reused when running, left up afterwards), build, then the benchmark. It starts its own engine
# (workflow, communication, gateway as processes, with their own database, topics and task queue)
# on the dev stack, so it runs next to `make run` without touching its data.
# Arguments go to the benchmark: `make bench ARGS="--rates 50,100,200,500 --duration 30 --tickets 2000"`.
# `--release` (taken here, not passed on) builds and runs the engine and the benchmark optimised, as a
# deployment would; the default is the debug build `make run` uses. A cold release build takes
# ~15-25 min on 2 cores (same target dir, `release/` beside `debug/`).
set -euo pipefail

PROFILE=debug
ARGS=()
for a in "$@"; do
  if [ "$a" = "--release" ]; then PROFILE=release; else ARGS+=("$a"); fi
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$INBOX_CACHE/target}"

scripts/stack.sh install
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
if [ "$PROFILE" = release ]; then
  cargo build --release --bins
else
  cargo build --bins
fi
exec "$CARGO_TARGET_DIR/$PROFILE/inbox-bench" ${ARGS[@]+"${ARGS[@]}"}

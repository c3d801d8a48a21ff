#!/usr/bin/env bash
# `make bench`: stack up (reused when running, left up afterwards), build, then the benchmark. It starts its own engine
# (workflow, communication, gateway as processes, with their own database, topics and task queue)
# on the dev stack, so it runs next to `make run` without touching its data.
# Arguments go to the benchmark: `make bench ARGS="--rates 50,100,200,500 --duration 30 --tickets 2000"`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$INBOX_CACHE/target}"

scripts/stack.sh install
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
cargo build --bins
exec "$CARGO_TARGET_DIR/debug/inbox-bench" "$@"

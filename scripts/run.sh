#!/usr/bin/env bash
# `make run`: the dev stack + the three services in the foreground, logs prefixed with the service name.
# Ctrl-C (INT/TERM) stops the services and the stack services this script started; if a service exits
# on its own, everything is stopped and the script exits non-zero.
# shellcheck disable=SC2317  # functions below run from traps
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
STACK="$ROOT/scripts/stack.sh"
export INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$INBOX_CACHE/target}"
SERVICES=(afc-emulator communication workflow gateway)
STOP_TIMEOUT=15
READY_TIMEOUT=120

say() { echo "[run] $*" >&2; }

declare -A PIDS=()     # service name -> pid
STARTED_STACK=()       # stack services this script started (and therefore stops)
BANNER_PID=""

alive() {  # a live child (a zombie counts as dead)
  local st
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ -n "$st" && "$st" != Z ]]
}

stop_services() {
  local name pid deadline
  if [[ -n "$BANNER_PID" ]]; then kill "$BANNER_PID" 2>/dev/null || true; fi
  for name in "${!PIDS[@]}"; do
    pid="${PIDS[$name]}"
    # Each service leads its own process group (setsid): signal the group.
    if alive "$pid"; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for name in "${!PIDS[@]}"; do
    pid="${PIDS[$name]}"
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      say "$name (pid $pid) did not stop after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  local rc=$?
  trap '' INT TERM
  trap - EXIT
  stop_services
  if ((${#STARTED_STACK[@]})); then
    say "stopping stack: ${STARTED_STACK[*]}"
    "$STACK" down "${STARTED_STACK[@]}" || rc=1
  fi
  wait 2>/dev/null || true   # the log prefixers end when their service does
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted; stopping"; exit 130' INT
trap 'say "terminated; stopping"; exit 143' TERM

"$STACK" install
for s in postgres temporal kafka; do
  "$STACK" status "$s" >/dev/null 2>&1 || STARTED_STACK+=("$s")
done
"$STACK" up
eval "$("$STACK" env)"

say "cargo build --bins (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --bins

# The AFC emulator plays the bank's AFC system for specs with `afc: { provider: kafka }`; its dev
# keys are made on the first run under .dev/afc (never committed). With the builtin spec it idles.
"$CARGO_TARGET_DIR/debug/afc-emulator" --init-keys --key-dir "$ROOT/.dev/afc" >/dev/null
export INBOX_AFC_KEY_DIR="$ROOT/.dev/afc"
INBOX_AFC_KEY="$(cat "$ROOT/.dev/afc/afc-aes.hex")"
export INBOX_AFC_KEY
export INBOX_AFC_PUBLIC_KEY="$ROOT/.dev/afc/afc-signing.pub.pem"

for name in "${SERVICES[@]}"; do
  bin="$CARGO_TARGET_DIR/debug/$name"
  [[ -x "$bin" ]] || { say "missing binary $bin"; exit 1; }
  # Own session: a terminal Ctrl-C reaches only this script, which then stops the services in order.
  # The prefixer ignores INT/TERM so the last log lines of a stopping service are not lost.
  setsid "$bin" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
  PIDS[$name]=$!
  say "started $name (pid ${PIDS[$name]})"
done

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
banner() {
  local deadline=$((SECONDS + READY_TIMEOUT)) a state="listening"
  for a in "$INBOX_HTTP_ADDR" "$INBOX_GRPC_ADDR"; do
    until port_open "$a"; do
      if ((SECONDS >= deadline)); then state="NOT listening yet after ${READY_TIMEOUT}s"; break 2; fi
      sleep 0.3
    done
  done
  cat >&2 <<EOF

[run] ======== inbox-engine dev ($state) ========
[run]   client HTTP  http://$INBOX_HTTP_ADDR
[run]   WebSocket    ws://$INBOX_HTTP_ADDR/v1/ws
[run]   gRPC         $INBOX_GRPC_ADDR
[run]   Temporal     127.0.0.1:$INBOX_TEMPORAL_PORT  namespace $INBOX_TEMPORAL_NAMESPACE, task queue $INBOX_TASK_QUEUE
[run]                ($INBOX_TEMPORAL_BIN workflow list --address 127.0.0.1:$INBOX_TEMPORAL_PORT)
[run]   Postgres     $INBOX_DATABASE_URL
[run]   Kafka        $INBOX_KAFKA_BROKERS
[run]   dev token    make token ROLE=manager USER=alice    (ROLE defaults to client; NAME="..." optional)
[run]   stack logs   $ROOT/.dev/logs/
[run]   Ctrl-C stops the services${STARTED_STACK[*]:+ and the stack (${STARTED_STACK[*]})}
EOF
}
banner &
BANNER_PID=$!

# Run until a service exits (unexpected) or a signal arrives (handled by the traps above).
set +e
wait -n -p exited_pid "${PIDS[@]}"
rc=$?
set -e
exited="?"
for name in "${!PIDS[@]}"; do
  if [[ "${PIDS[$name]}" == "${exited_pid:-}" ]]; then exited="$name"; unset "PIDS[$name]"; break; fi
done
say "service $exited exited unexpectedly (status $rc); stopping everything"
((rc != 0)) || rc=1
exit "$rc"

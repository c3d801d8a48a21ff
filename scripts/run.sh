#!/usr/bin/env bash
# `make run`: the dev stack + the three services in the foreground, logs prefixed with the service name.
# `make run CHANNELS=local` (or CHANNELS=local scripts/run.sh) also starts the local channel peers on
# loopback (Telegram emulator :18481, Dovecot IMAP :18143, SMTP into Dovecot :18025, state under
# .dev/channels/) and points communication at them with config/channels.local.yaml. Every setting of
# config/dev.env can be overridden from the environment; the local peers move with
# INBOX_LOCAL_TELEGRAM_PORT, INBOX_LOCAL_IMAP_PORT, INBOX_LOCAL_SMTP_PORT, INBOX_LOCAL_CHANNELS_DIR.
# Ctrl-C (INT/TERM) stops the services and the stack services this script started; if a service exits
# on its own, everything is stopped and the script exits non-zero.
# shellcheck disable=SC2317  # functions below run from traps
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
STACK="$ROOT/scripts/stack.sh"
export INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$INBOX_CACHE/target}"
SERVICES=(afc-emulator bot-worker communication workflow gateway)
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
  # Only a service with no process at all is ours to stop later: one that is running but slow to
  # answer its health check (a busy machine) belongs to whoever started it.
  "$STACK" status "$s" 2>/dev/null | grep -q '^[a-z]* *down$' && STARTED_STACK+=("$s")
done
"$STACK" up
eval "$("$STACK" env)"

# INBOX_RUN_NO_BUILD=1 runs the binaries as they are (make test's own run of this script: the suite
# has just built them, and relinking them here would race the other tests starting them).
if [[ "${INBOX_RUN_NO_BUILD:-}" == 1 ]]; then
  say "using the binaries in $CARGO_TARGET_DIR/debug as built"
else
  say "cargo build --bins (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --bins
  "$ROOT/scripts/web.sh"
fi

# The AFC emulator plays the bank's AFC system for specs with `afc: { provider: kafka }`; its dev
# keys are made on the first run under .dev/afc (never committed). With the builtin spec it idles.
"$CARGO_TARGET_DIR/debug/afc-emulator" --init-keys --key-dir "$ROOT/.dev/afc" >/dev/null
export INBOX_AFC_KEY_DIR="$ROOT/.dev/afc"
INBOX_AFC_KEY="$(cat "$ROOT/.dev/afc/afc-aes.hex")"
export INBOX_AFC_KEY
export INBOX_AFC_PUBLIC_KEY="$ROOT/.dev/afc/afc-signing.pub.pem"

start_proc() {  # start_proc NAME CMD...: a supervised process, logs prefixed with NAME
  local name="$1"; shift
  # Own session: a terminal Ctrl-C reaches only this script, which then stops the services in order.
  # The prefixer ignores INT/TERM so the last log lines of a stopping service are not lost.
  setsid "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
  PIDS[$name]=$!
  say "started $name (pid ${PIDS[$name]})"
}

wait_port() {  # wait_port NAME HOST:PORT
  local deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/${2%:*}/${2##*:}") 2>/dev/null; do
    if ((SECONDS >= deadline)); then say "$1 did not listen on $2 within 30s"; exit 1; fi
    alive "${PIDS[$1]}" || { say "$1 exited before it listened on $2"; exit 1; }
    sleep 0.1
  done
}

# Local channel peers: everything on loopback, every piece of state under .dev/channels.
CHANNELS="${CHANNELS:-}"
case "$CHANNELS" in
  "") ;;
  local)
    CH="${INBOX_LOCAL_CHANNELS_DIR:-$ROOT/.dev/channels}"
    TG_PORT="${INBOX_LOCAL_TELEGRAM_PORT:-18481}"
    IMAP_PORT="${INBOX_LOCAL_IMAP_PORT:-18143}"
    SMTP_PORT="${INBOX_LOCAL_SMTP_PORT:-18025}"
    mkdir -p "$CH/mail" "$CH/run" "$CH/state"
    chmod 755 "$CH"; chmod 777 "$CH/mail"   # Dovecot writes mail as `nobody`
    # The bank's support mailbox and two client mailboxes (replies to them land there).
    # INBOX_LOCAL_MAIL_USERS (space-separated addresses) adds mailboxes, all with password `dev`.
    # shellcheck disable=SC2086  # word splitting of the list is intended
    printf '%s:{PLAIN}dev::::::\n' support@bank.test ivan@client.test maria@client.test \
      ${INBOX_LOCAL_MAIL_USERS:-} >"$CH/passwd"
    cat >"$CH/dovecot.conf" <<CONF
base_dir = $CH/run
state_dir = $CH/state
log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$CH/mail/%u
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $CH/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$CH/mail/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
CONF
    start_proc telegram-emulator env NODE_PATH="$INBOX_CACHE/npm/node_modules" \
      node "$ROOT/scripts/telegram-emulator.js" "$TG_PORT"
    start_proc dovecot /usr/sbin/dovecot -F -c "$CH/dovecot.conf"
    wait_port dovecot "127.0.0.1:$IMAP_PORT"
    start_proc smtp "$INBOX_CACHE/venv/bin/python" "$ROOT/scripts/smtp-to-dovecot.py" "$CH/dovecot.conf" "$SMTP_PORT"
    wait_port telegram-emulator "127.0.0.1:$TG_PORT"
    wait_port smtp "127.0.0.1:$SMTP_PORT"
    export INBOX_CHANNELS="$ROOT/config/channels.local.yaml"
    # The file names the default ports; the environment overrides it key by key.
    export INBOX_TELEGRAM_API_URL="http://127.0.0.1:$TG_PORT"
    export INBOX_IMAP_ADDR="127.0.0.1:$IMAP_PORT" INBOX_SMTP_ADDR="127.0.0.1:$SMTP_PORT"
    # Dev-only secrets of the local peers; real ones come from the operator's environment.
    export INBOX_TELEGRAM_TOKEN="${INBOX_TELEGRAM_TOKEN:-4242:dev}"
    export INBOX_IMAP_PASSWORD="${INBOX_IMAP_PASSWORD:-dev}"
    ;;
  *) say "CHANNELS=$CHANNELS: unknown (use CHANNELS=local, or set INBOX_CHANNELS to a channels file)"; exit 2 ;;
esac

for name in "${SERVICES[@]}"; do
  bin="$CARGO_TARGET_DIR/debug/$name"
  [[ -x "$bin" ]] || { say "missing binary $bin"; exit 1; }
  start_proc "$name" "$bin"
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
[run]   console      http://$INBOX_CONSOLE_ADDR/  (dev login: pick a user, role manager or admin)
[run]   supervisor   http://$INBOX_CONSOLE_ADDR/  (log in with role admin)
[run]   widget demo  http://$INBOX_HTTP_ADDR/widget/demo.html?console=http://$INBOX_CONSOLE_ADDR&user=ivan
[run]   bot worker   example answers /status /hours /rates /help /manager (bot.commands -> bot.replies)
[run]   ops          http://$INBOX_COMMUNICATION_OPS_ADDR http://$INBOX_GATEWAY_OPS_ADDR http://$INBOX_WORKFLOW_OPS_ADDR  (/livez /readyz /metrics)
[run]   profile      dev (INBOX_PROFILE=production refuses insecure settings; see README "Production")
[run]   Temporal     127.0.0.1:$INBOX_TEMPORAL_PORT  namespace $INBOX_TEMPORAL_NAMESPACE, task queue $INBOX_TASK_QUEUE
[run]                ($INBOX_TEMPORAL_BIN workflow list --address 127.0.0.1:$INBOX_TEMPORAL_PORT)
[run]   Postgres     $INBOX_DATABASE_URL
[run]   Kafka        $INBOX_KAFKA_BROKERS
[run]   dev token    make token ROLE=manager USER=alice    (ROLE defaults to client; NAME="..." optional)
[run]   stack logs   $ROOT/.dev/logs/
[run]   channels     ${INBOX_CHANNELS:-channels.yaml}${CHANNELS:+ (local peers: Telegram emulator $INBOX_TELEGRAM_API_URL token $INBOX_TELEGRAM_TOKEN, IMAP $INBOX_IMAP_ADDR, SMTP $INBOX_SMTP_ADDR, users support@bank.test ivan@client.test maria@client.test password dev)}
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

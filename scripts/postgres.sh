#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for agentfence's tests and benchmarks, under build/pg.
#
#   scripts/postgres.sh start    install (Debian packages) if missing, initdb, start; print URL
#   scripts/postgres.sh stop     stop the cluster (its files stay until `make clean`)
#   scripts/postgres.sh restart  restart it (the fault tests use this)
#   scripts/postgres.sh url      the database URL the tests use
#
# AGENTFENCE_PG_BASE and AGENTFENCE_PG_PORT put a second cluster elsewhere (the fault tests
# restart one of their own).
#
# The server listens on a Unix socket in build/pg/run only (no TCP), with trust
# authentication: it is for this checkout's tests, never for data anyone keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PORT="${AGENTFENCE_PG_PORT:-54329}"

# Where the cluster lives: build/pg. As root, the server runs as the postgres user, who must
# be able to reach that directory; a checkout under a private home (/root is 0700) cannot
# host it, so it goes under /tmp instead, named after the checkout.
paths() {
  BASE="${AGENTFENCE_PG_BASE:-$ROOT/build/pg}"
  if [ -z "${AGENTFENCE_PG_BASE:-}" ] && [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 \
      && ! runuser -u postgres -- test -x "$ROOT" 2>/dev/null; then
    BASE="${TMPDIR:-/tmp}/agentfence-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  fi
  DATA="$BASE/data"
  RUN="$BASE/run"
  URL="postgresql://postgres@/agentfence?host=$RUN&port=$PORT"
}

bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing Debian's postgresql for the PostgreSQL tests" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      dir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    else
      echo "PostgreSQL is missing and cannot be installed here (need root and apt-get);" \
        "install the postgresql package, or run 'make test AGENTFENCE_SKIP_POSTGRES=1'" >&2
      exit 1
    fi
  fi
  echo "$dir"
}

# initdb and postgres refuse to run as root: run them as the postgres user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  bin="$(bindir)"
  paths
  mkdir -p "$BASE"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$BASE"
    chmod 755 "$BASE"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
      >/dev/null
    as_owner mkdir -p "$RUN"
    cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$RUN'
port = $PORT
max_connections = 200
fsync = on
synchronous_commit = on
EOF
  fi
  if ! as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 start >/dev/null
  fi
  if ! "$bin/psql" -h "$RUN" -p "$PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'agentfence'" postgres | grep -q 1; then
    "$bin/psql" -h "$RUN" -p "$PORT" -U postgres -qc "CREATE DATABASE agentfence" postgres
  fi
  echo "$URL"
}

stop() {
  local bin
  paths
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$bin" ] && [ -f "$DATA/PG_VERSION" ]; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

restart() {
  local bin
  bin="$(bindir)"
  paths
  paths
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$BASE/server.log" -m fast -w -t 60 restart >/dev/null
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  url) paths; echo "$URL" ;;
  *) echo "usage: $0 start|stop|restart|url" >&2; exit 2 ;;
esac

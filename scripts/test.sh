#!/usr/bin/env bash
# Install what the tests need, start the services, run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
eval "$(bash scripts/services.sh)"
export CONDUITD_REQUIRE_SERVICES=1   # an unreachable service fails the tests instead of skipping them

python3 -m ruff check conduitd tests benchmarks
python3 -m mypy conduitd
python3 -m pytest -q -p no:cacheprovider --durations=25 "$@"

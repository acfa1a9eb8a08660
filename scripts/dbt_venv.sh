#!/usr/bin/env bash
# Make (once) and print the path of a cached virtualenv holding dbt-core and dbt-postgres, OUTSIDE
# the checkout and outside the main environment (dbt pins its own versions of shared libraries).
# The venv is named after a hash of its requirements: changing them makes a new one; an existing
# complete venv is reused at once. Prints the path of its `dbt` executable on stdout.
#   scripts/dbt_venv.sh            -> /root/.cache/conduitd/dbt-<hash>/bin/dbt
# Environment: CONDUITD_CACHE (default ~/.cache/conduitd), PYTHON (default python3).
set -euo pipefail

REQUIREMENTS="dbt-core==1.11.* dbt-postgres==1.11.*"
PYTHON="${PYTHON:-python3}"
CACHE="${CONDUITD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conduitd}"
HASH="$(printf '%s\n%s\n' "$REQUIREMENTS" "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')" | sha256sum | cut -c1-12)"
VENV="$CACHE/dbt-$HASH"

if [ ! -f "$VENV/.complete" ]; then
  mkdir -p "$CACHE"
  # One maker at a time (two test workers may ask together); the loser reuses the winner's venv.
  exec 9>"$CACHE/dbt-$HASH.lock"
  flock 9
  if [ ! -f "$VENV/.complete" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >&2
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $REQUIREMENTS >&2
    "$VENV/bin/dbt" --version >&2
    touch "$VENV/.complete"
  fi
fi
echo "$VENV/bin/dbt"

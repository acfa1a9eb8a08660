#!/usr/bin/env bash
# Make (once) and print the python of a cached virtualenv for one orchestrator (airflow, prefect
# or dagster), OUTSIDE the checkout and outside the main environment: these libraries are large
# and pin their own versions of shared libraries. Each venv holds conduitd (installed from this
# checkout, with its dependencies) and integrations/conduitd-orchestrators with the orchestrator's
# extra. It is named after a hash of its requirements (the pins below, the Python version and both
# pyproject.toml files): changing any of them makes a new venv; an existing complete one is reused
# at once. Tests put the checkout on PYTHONPATH, so the venv never needs the current code.
#   scripts/orchestrator_venvs.sh airflow   -> /root/.cache/conduitd/venv-airflow-<hash>/bin/python
#   scripts/orchestrator_venvs.sh all       -> the three pythons, one a line
# Installs use uv (itself installed once into $CACHE/uv-<version> with pip) for speed.
# Environment: CONDUITD_CACHE (default ~/.cache/conduitd), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
INTEGRATION="$ROOT/integrations/conduitd-orchestrators"
PYTHON="${PYTHON:-python3}"
CACHE="${CONDUITD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conduitd}"
UV_VERSION="0.13.9"

pins() {
  case "$1" in
    airflow) echo "apache-airflow==3.3.2" ;;
    prefect) echo "prefect==3.9.1" ;;
    dagster) echo "dagster==1.13.29" ;;
    *) echo "orchestrator_venvs.sh: unknown orchestrator '$1' (airflow, prefect, dagster, all)" >&2; exit 2 ;;
  esac
}

uv_bin() {
  local home="$CACHE/uv-$UV_VERSION"
  if [ ! -f "$home/.complete" ]; then
    mkdir -p "$CACHE"
    exec 8>"$CACHE/uv-$UV_VERSION.lock"
    flock 8
    if [ ! -f "$home/.complete" ]; then
      rm -rf "$home"
      "$PYTHON" -m venv "$home" >&2
      "$home/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
      touch "$home/.complete"
    fi
    exec 8>&-
  fi
  echo "$home/bin/uv"
}

ensure() {
  local name="$1" requirements hash venv uv
  requirements="$(pins "$name")"
  hash="$(cat <(printf '%s\n' "$requirements" "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')") \
                "$ROOT/pyproject.toml" "$INTEGRATION/pyproject.toml" | sha256sum | cut -c1-12)"
  venv="$CACHE/venv-$name-$hash"
  if [ ! -f "$venv/.complete" ]; then
    uv="$(uv_bin)"
    mkdir -p "$CACHE"
    # One maker at a time (two test workers may ask together); the loser reuses the winner's venv.
    exec 9>"$CACHE/venv-$name-$hash.lock"
    flock 9
    if [ ! -f "$venv/.complete" ]; then
      rm -rf "$venv"
      local started=$SECONDS
      "$uv" venv --quiet --python "$(command -v "$PYTHON")" "$venv" >&2
      # Non-editable copies of the checkout: they check that both packages and the extra install;
      # the current code comes from PYTHONPATH when the tests run.
      SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" UV_NATIVE_TLS=1 VIRTUAL_ENV="$venv" \
        "$uv" pip install --quiet "$requirements" "conduitd @ file://$ROOT" \
        "conduitd-orchestrators[$name] @ file://$INTEGRATION" >&2
      "$venv/bin/python" -c "import conduitd_orchestrators.$name" >&2
      echo "orchestrator_venvs.sh: made $venv in $((SECONDS - started)) s" >&2
      touch "$venv/.complete"
      # Venvs of earlier requirements are not used again: remove them (they take hundreds of MB).
      for stale in "$CACHE/venv-$name-"*; do
        case "$stale" in "$venv"|"$venv.lock") ;; *) rm -rf "$stale" ;; esac
      done
    fi
    exec 9>&-
  fi
  echo "$venv/bin/python"
}

if [ "${1:-}" = "all" ]; then
  for name in airflow prefect dagster; do ensure "$name"; done
else
  ensure "${1:?usage: orchestrator_venvs.sh airflow|prefect|dagster|all}"
fi

#!/usr/bin/env bash
# Installs what the tests drive besides exbind: the official SDKs (crates/exbind/tests/sdk.rs),
# the OpenAPI checker, and the browser tests' chromium and Playwright:
#   tests/sdk/python/.venv        lark-oapi (requirements.txt)
#   tests/sdk/node/node_modules   @larksuiteoapi/node-sdk (package-lock.json, npm ci)
#   tests/openapi/.venv           openapi-spec-validator, schemathesis
#   /usr/bin/chromium             Debian's chromium (apt-get, when missing and run as root)
#   tests/browser/node_modules    playwright-core, axe-core (package-lock.json, npm ci)
# Idempotent: each part is skipped while its lock file is unchanged since the last install.
# Needs python3 (3.11) with venv, node (20) and npm. PYTHON=... picks another interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py_dir="$here/python"
node_dir="$here/node"
python="${PYTHON:-python3}"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- Python -----------------------------------------------------------------------------
venv="$py_dir/.venv"
stamp="$venv/.exbind-requirements.sha256"
want="$(sha "$py_dir/requirements.txt")"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "sdk/python: up to date ($venv)"
else
  echo "sdk/python: installing into $venv"
  if ! "$python" -m venv --clear "$venv"; then
    # Debian's python3 ships venv/ensurepip separately.
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -q python3-venv
      "$python" -m venv --clear "$venv"
    else
      echo "sdk/python: '$python -m venv' failed; install python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py_dir/requirements.txt"
  "$venv/bin/python" -c 'import lark_oapi'
  echo "$want" > "$stamp"
fi

# --- Node -------------------------------------------------------------------------------
stamp="$node_dir/node_modules/.exbind-package-lock.sha256"
want="$(sha "$node_dir/package-lock.json")"
if [[ -d "$node_dir/node_modules/@larksuiteoapi/node-sdk" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "sdk/node: up to date ($node_dir/node_modules)"
else
  echo "sdk/node: npm ci in $node_dir"
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

# --- OpenAPI checker --------------------------------------------------------------------
# tests/openapi/.venv: openapi-spec-validator and schemathesis (tests/openapi/requirements.txt)
# for tests/openapi/check.py, which crates/exbind/tests/openapi.rs runs against the server.
oa_dir="$(cd "$here/../openapi" && pwd)"
oa_venv="$oa_dir/.venv"
oa_stamp="$oa_venv/.exbind-requirements.sha256"
oa_want="$(sha "$oa_dir/requirements.txt")"
if [[ -x "$oa_venv/bin/python" && -f "$oa_stamp" && "$(cat "$oa_stamp")" == "$oa_want" ]]; then
  echo "openapi: up to date ($oa_venv)"
else
  echo "openapi: installing into $oa_venv"
  if ! "$python" -m venv --clear "$oa_venv"; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -q python3-venv
      "$python" -m venv --clear "$oa_venv"
    else
      echo "openapi: '$python -m venv' failed; install python3-venv" >&2
      exit 1
    fi
  fi
  "$oa_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$oa_dir/requirements.txt"
  "$oa_venv/bin/python" -c 'import openapi_spec_validator, schemathesis'
  echo "$oa_want" > "$oa_stamp"
fi

# --- Browser tests ----------------------------------------------------------------------
# Debian's chromium (no browser download is possible here) and tests/browser/node_modules:
# playwright-core and axe-core, which the browser tests (tests/browser/*.mjs) use.
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$chromium_bin" ]]; then
  echo "browser: $chromium_bin present"
elif [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "browser: installing Debian's chromium"
  apt-get update -q || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
else
  echo "browser: $chromium_bin is missing; install Debian's chromium (apt-get install chromium)" >&2
  exit 1
fi
br_dir="$(cd "$here/../browser" && pwd)"
stamp="$br_dir/node_modules/.exbind-package-lock.sha256"
want="$(sha "$br_dir/package-lock.json")"
if [[ -d "$br_dir/node_modules/playwright-core" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "browser: up to date ($br_dir/node_modules)"
else
  echo "browser: npm ci in $br_dir"
  (cd "$br_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

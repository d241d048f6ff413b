#!/usr/bin/env bash
# Installs the official SDKs that crates/exbind/tests/sdk.rs drives:
#   tests/sdk/python/.venv        lark-oapi (requirements.txt)
#   tests/sdk/node/node_modules   @larksuiteoapi/node-sdk (package-lock.json, npm ci)
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

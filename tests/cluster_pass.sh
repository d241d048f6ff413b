#!/usr/bin/env bash
# The black-box tests that drive a server by URL, run again against three servers on one
# PostgreSQL schema and Redis prefix behind HAProxy (deploy/haproxy.cfg), one front per test
# server (EXBIND_TEST_STORE=cluster; see crates/exbind/tests/common/cluster.rs). Extra
# arguments reach cargo test, after the list.
#
# Left out, as they test one process rather than the contract:
#   cli           the binary's flags, banner, data dir and generated admin token
#   codec_ids     id encoding inside one process, no server
#   cluster       builds its own cluster, server by server
#   connections   one server's sockets, idle timeouts and connection limits
#   crash_loop    kills and restarts one server on its data dir
#   durability    one server's fsync and its data dir across kills
#   hostile       one server's socket under malformed and slow clients, and its memory
#   browser       the browser harness itself, not the contract
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tests=(
  authorize bindings bulk client_cli console console_http control_bindings control_plane
  events faults isolation journal login oauth_token oauth_v1 openapi pipeline quotas reset
  sdk store_apps sync_engine tokens wire
)
# --workspace, as the first pass builds: the same features, so the same binaries, no rebuild.
EXBIND_TEST_STORE=cluster exec cargo test --workspace --locked "${tests[@]/#/--test=}" "$@"

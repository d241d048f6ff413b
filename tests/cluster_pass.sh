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
# Left out until the event stream is cluster-wide (a stream sees only its own server):
#   events        /_exbind/v1/events
#   console       the console's overview follows the stream
# Left out until fixed: on PostgreSQL, schemathesis gets 500 (190003) from POST
# /_exbind/v1/seed with odd tenant keys and from a user_access_tokens call after it:
#   openapi
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tests=(
  authorize bindings bulk client_cli console_http control_bindings control_plane faults
  isolation journal login oauth_token oauth_v1 pipeline quotas reset sdk store_apps
  sync_engine tokens wire
)
EXBIND_TEST_STORE=cluster exec cargo test --locked -p exbind "${tests[@]/#/--test=}" "$@"

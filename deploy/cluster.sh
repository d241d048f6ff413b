#!/usr/bin/env bash
# Three exbind servers on one PostgreSQL and one Redis, behind HAProxy, on this machine.
#
#   deploy/cluster.sh            # front on 127.0.0.1:8787, servers on 8801-8803
#
# Environment: EXBIND_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# EXBIND_REDIS_URL (default redis://127.0.0.1:6379/), EXBIND_DATABASE_SCHEMA (default exbind),
# EXBIND_REDIS_PREFIX (default exbind:), EXBIND_ADMIN_TOKEN (default: generated, printed),
# EXBIND_FRONT (default 127.0.0.1:8787), EXBIND_BIN (default: a release build of this tree).
# Every other EXBIND_* variable reaches the servers as usual. Ctrl-C stops the lot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export EXBIND_DATABASE_URL="${EXBIND_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export EXBIND_REDIS_URL="${EXBIND_REDIS_URL:-redis://127.0.0.1:6379/}"
export EXBIND_FRONT="${EXBIND_FRONT:-127.0.0.1:8787}"
if [ -z "${EXBIND_BIN:-}" ]; then
  cargo build --release --locked -p exbind
  EXBIND_BIN=target/release/exbind
fi

pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

# The first server initialises an empty database (migrations, admin token, demo seed); the
# others start once it answers.
for i in 1 2 3; do
  "$EXBIND_BIN" serve --listen "127.0.0.1:880$i" &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:880$i/_exbind/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

haproxy -W -db -f deploy/haproxy.cfg &
pids+=($!)
echo "cluster: http://$EXBIND_FRONT (servers 127.0.0.1:8801-8803)"
wait -n

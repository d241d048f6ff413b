#!/usr/bin/env bash
# GET of a binding under wrk, exbind serve (default settings but quotas off, its store on disk)
# and the fixed-JSON ceiling side by side, interleaved, as ratios.
#
#   cargo build --release -p exbind -p exbind-bench
#   benches/wrk-side-by-side.sh [ROUNDS] [SECONDS]
#
# Needs wrk, curl and python3. WRK_THREADS (default 1) and CONNECTIONS (default 64) set the load.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=${1:-3}
seconds=${2:-5}
threads=${WRK_THREADS:-1}
conns=${CONNECTIONS:-64}
exbind=target/release/exbind
ceiling=target/release/exbind-bench
for bin in "$exbind" "$ceiling"; do
  [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p exbind -p exbind-bench" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
exbind_port=$(free_port)
ceiling_port=$(free_port)

"$exbind" serve --data-dir "$work/data" --listen "127.0.0.1:$exbind_port" --rate-limits off \
  >"$work/banner" 2>/dev/null &
pids+=($!)
"$ceiling" ceiling --listen "127.0.0.1:$ceiling_port" >/dev/null 2>&1 &
pids+=($!)
for port in "$exbind_port" "$ceiling_port"; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
done

# The banner's demo line creates a binding with the demo super administrator's token.
token=$(grep -o 'Bearer u-[0-9a-f]*' "$work/banner" | head -1 | cut -d' ' -f2)
id=$(sh -c "$(grep '^curl' "$work/banner")" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["exchange_binding_id"])')
path="/open-apis/calendar/v4/exchange_bindings/$id"
check=$(curl -s "http://127.0.0.1:$exbind_port$path" -H "Authorization: Bearer $token")
[[ $check == *'"code":0'* ]] || { echo "GET failed: $check" >&2; exit 1; }

rate() { wrk -t"$threads" -c"$conns" -d"${seconds}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
echo "wrk -t$threads -c$conns, ${seconds} s per run, GET $path"
for r in $(seq "$rounds"); do
  c=$(rate "http://127.0.0.1:$ceiling_port$path")
  e=$(rate -H "Authorization: Bearer $token" "http://127.0.0.1:$exbind_port$path")
  python3 -c "print(f'round $r: ceiling {$c:9.0f} req/s   exbind {$e:9.0f} req/s   ratio {$e/$c:.3f}')"
done

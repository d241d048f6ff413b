#!/usr/bin/env bash
# GET of a binding under wrk against two exbind builds at the same time, each on its own fresh
# data dir (so an older build never meets a newer schema), so that both see the same machine:
# on a shared machine, whose load moves from second to second, this is steadier than runs by
# turns. Prints, per round, each build's throughput and server CPU per request (summed over its
# threads from /proc), and the ratios. CPU per request is the figure to read: which of the two
# the scheduler favours moves their throughputs apart. Needs wrk, curl and python3.
#
#   benches/wrk-ab.sh NEW/exbind OLD/exbind [ROUNDS] [SECONDS]
#
set -euo pipefail
A=$1; B=$2; rounds=${3:-5}; seconds=${4:-8}
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # name bin
  local port; port=$(free_port)
  "$2" serve --data-dir "$work/$1" --listen "127.0.0.1:$port" --rate-limits off --journal-size 0 >"$work/$1.banner" 2>/dev/null &
  pids+=($!); echo "$! $port" > "$work/$1.pp"
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  local token id
  token=$(grep -o 'Bearer u-[0-9a-f]*' "$work/$1.banner" | head -1 | cut -d' ' -f2)
  id=$(sh -c "$(grep '^curl' "$work/$1.banner" | sed "s/127.0.0.1:[0-9]*/127.0.0.1:$port/")" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["exchange_binding_id"])')
  echo "$token" > "$work/$1.token"; echo "/open-apis/calendar/v4/exchange_bindings/$id" > "$work/$1.path"
  curl -s "http://127.0.0.1:$port$(cat $work/$1.path)" -H "Authorization: Bearer $token" | grep -q '"code":0' || { echo "GET failed on $1" >&2; exit 1; }
}
start a "$A"; start b "$B"
cpu() { cat /proc/$1/task/*/schedstat | awk '{s+=$1} END{printf "%d", s}'; }
for r in $(seq "$rounds"); do
  read pa porta < "$work/a.pp"; read pb portb < "$work/b.pp"
  ca=$(cpu $pa); cb=$(cpu $pb)
  wrk -t1 -c32 -d"${seconds}s" -H "Authorization: Bearer $(cat $work/a.token)" "http://127.0.0.1:$porta$(cat $work/a.path)" > "$work/wa" &
  w1=$!
  wrk -t1 -c32 -d"${seconds}s" -H "Authorization: Bearer $(cat $work/b.token)" "http://127.0.0.1:$portb$(cat $work/b.path)" > "$work/wb" &
  w2=$!
  wait $w1 $w2
  ca2=$(cpu $pa); cb2=$(cpu $pb)
  ra=$(awk '/Requests\/sec/ {print $2}' $work/wa); rb=$(awk '/Requests\/sec/ {print $2}' $work/wb)
  na=$(awk '/requests in/ {print $1}' $work/wa); nb=$(awk '/requests in/ {print $1}' $work/wb)
  python3 -c "
ra,rb,na,nb=$ra,$rb,$na,$nb; ua=($ca2-$ca)/1e3/na; ub=($cb2-$cb)/1e3/nb
print(f'round $r: new {ra:7.0f} req/s {ua:6.2f} us/req, old {rb:7.0f} req/s {ub:6.2f} us/req; new/old CPU per request {ua/ub:.3f}, throughput {ra/rb:.3f}')"
done

#!/usr/bin/env bash
# Fuzzes every target for RUNS executions each (default 1,000,000), one target at a time, at
# the lowest CPU priority, then minimizes each target's corpus (`cargo fuzz cmin` on coverage
# edges, then at most MAX_FILES files, default 500, that reach the most edges: select.py).
#
#   fuzz/run.sh                 # all targets
#   RUNS=100000 fuzz/run.sh http seed
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to
# fuzz/corpus/<target>/ (replayed by `cargo test -p exbind-server --test fuzz_corpus`); a
# crash stops the run and leaves its input in fuzz/artifacts/<target>/. Each target's
# libFuzzer output, with its closing statistics, is in fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

RUNS="${RUNS:-1000000}"
MAX_FILES="${MAX_FILES:-500}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(binding_id seed token query http)
fi
# The HTTP targets' store lives in a temporary data dir: on a tmpfs its fsyncs cost little.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ]; then
  export TMPDIR=/dev/shm
fi

# No sanitizer: the server is safe Rust, and a panic is what the checks report.
fuzz=(cargo +nightly fuzz)
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
nice -n 19 "${fuzz[@]}" build -s none
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: $RUNS runs"
  nice -n 19 "${fuzz[@]}" run -s none "$t" "corpus/$t" -- \
    -runs="$RUNS" -max_len=2048 -len_control=20 -timeout=10 -print_final_stats=1 2>&1 | tee "logs/$t.log" | grep -E '^#[0-9]+ +(INITED|DONE|pulse)|^stat::|^exbind |panicked|ERROR' || true
  if grep -q '^==[0-9]*== ERROR\|panicked at' "logs/$t.log"; then
    echo "$t: crashed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  # Edges only, without hit counts; then the MAX_FILES files that reach the most of them.
  nice -n 19 "${fuzz[@]}" cmin -s none "$t" "corpus/$t" -- -use_counters=0 >/dev/null 2>&1
  if [ "$(find "corpus/$t" -type f | wc -l)" -gt "$MAX_FILES" ]; then
    empty="$(mktemp -d)"
    control="$(mktemp)"
    nice -n 19 "target/$host/release/$t" -merge=1 -use_counters=0 \
      -merge_control_file="$control" "$empty" "corpus/$t" >/dev/null 2>&1
    python3 select.py "$control" "$MAX_FILES"
    rm -rf "$empty" "$control"
  fi
  echo "$t: corpus $(find "corpus/$t" -type f | wc -l) files, $(find "corpus/$t" -type f -exec cat {} + | wc -c) bytes"
done

#!/usr/bin/env bash
# bench/reload_cost.sh — CPU per reload of a large upstream: the main thread (parse, validate,
# build the snapshot) and the other threads (each worker adopting the snapshot, the checker).
#
# For each binary (TURNPIKE_BIN, and BASE_BIN when set, interleaved over ROUNDS): start it on a
# config whose one upstream has NODES nodes (one worker, no traffic, no health checks), then
# RELOADS reloads, GAP s apart, alternating between two files whose nodes all differ (a rolling
# update at its worst). CPU time comes from /proc/PID/task/*/schedstat (ns, not clock ticks),
# read before the first reload and 3 s after the last (after the trim that follows a burst).
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), BASE_BIN (unset: none), NODES=2000,
#      RELOADS=60, GAP=0.15, ROUNDS=3.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need python3 awk
NODES=${NODES:-2000}
RELOADS=${RELOADS:-60}
GAP=${GAP:-0.15}
ROUNDS=${ROUNDS:-3}
BASE_BIN=${BASE_BIN:-}

for k in 0 1; do
  python3 - "$BENCH_TMP/nodes-$k.yaml" "$NODES" "$k" <<'PY'
import sys
path, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "w") as f:
    f.write("workers: 1\nlog: {error_log: stderr, level: warn, access_log: off}\n")
    f.write("listeners: [{name: bench, address: 127.0.0.1, port: 0}]\n")
    f.write("upstreams:\n  - name: origin\n    nodes:\n")
    f.writelines(f'      - "127.0.0.{1 + k}:{20000 + i}"\n' for i in range(n))
    f.write("    keepalive: {max_idle: 4, idle_timeout: 55s, max_requests: 1000000}\n")
    f.write('routes:\n  - name: all\n    match: {paths: ["/*"]}\n    upstream: origin\n')
PY
done

# thread_ns PID: "main others", CPU ns of PID's main thread and of its other threads.
thread_ns() {
  local main=0 others=0 d v
  for d in /proc/"$1"/task/*; do
    v=$(awk '{print $1}' "$d/schedstat")
    if [[ ${d##*/} == "$1" ]]; then main=$v; else others=$((others + v)); fi
  done
  echo "$main $others"
}

# one BIN LABEL: sets R_MAIN and R_OTHERS, ms of CPU per reload.
one() {
  local bin=$1 cfg=$BENCH_TMP/turnpike.yaml m0 o0 m1 o1 i
  cp "$BENCH_TMP/nodes-0.yaml" "$cfg"
  TURNPIKE_BIN=$bin start_turnpike "tp-$2" "$cfg"
  local pid=$STARTED_PID
  sleep 1
  read -r m0 o0 <<<"$(thread_ns "$pid")"
  for ((i = 1; i <= RELOADS; i++)); do
    cp "$BENCH_TMP/nodes-$((i % 2)).yaml" "$cfg.new" && mv "$cfg.new" "$cfg"
    kill -HUP "$pid"
    sleep "$GAP"
  done
  sleep 3
  read -r m1 o1 <<<"$(thread_ns "$pid")"
  local done_reloads
  done_reloads=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"] - 1)' "$STARTED_READY")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  ((done_reloads == RELOADS)) || die "$2: $done_reloads of $RELOADS reloads completed"
  R_MAIN=$(awk -v a="$m0" -v b="$m1" -v n="$RELOADS" 'BEGIN{printf "%.2f", (b-a)/n/1e6}')
  R_OTHERS=$(awk -v a="$o0" -v b="$o1" -v n="$RELOADS" 'BEGIN{printf "%.2f", (b-a)/n/1e6}')
}

declare -A MAIN OTHERS
# round BIN LABEL ROUND
round() {
  one "$1" "$2-$3"
  MAIN[$2]+="$R_MAIN " OTHERS[$2]+="$R_OTHERS "
  log "round $3 $2: main thread $R_MAIN ms, other threads $R_OTHERS ms per reload"
}
interleaved round

echo "### CPU per reload of a $NODES-node upstream ($RELOADS reloads, every node changed each time)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- command: NODES=$NODES RELOADS=$RELOADS GAP=$GAP ROUNDS=$ROUNDS${BASE_BIN:+ BASE_BIN=$BASE_BIN} bench/reload_cost.sh"
echo "- turnpike: $TURNPIKE_BIN"
echo
echo "| binary | main thread ms per reload (median) | other threads ms per reload (median) | rounds (main / others) |"
echo "|---|---|---|---|"
for b in "${BINS[@]}"; do
  # shellcheck disable=SC2086
  echo "| $(bin_path "$b") | $(median ${MAIN[$b]}) | $(median ${OTHERS[$b]}) | ${MAIN[$b]% } / ${OTHERS[$b]% } |"
done

#!/usr/bin/env bash
# bench/checker_cost.sh — what active health checks and a rolling update of their nodes cost, by
# thread, without traffic (issue 14). The CPU a request costs on these machines swings by ±15%
# from run to run (bench/health.sh), more than the 2% targets; counting the checker's and the
# main thread's CPU directly, with no load generator running, resolves them.
#
# One nginx origin listens on 2 x NODES loopback addresses (127.0.0.1 and 127.0.0.2). For each
# binary (TURNPIKE_BIN, and BASE_BIN when set, interleaved over ROUNDS), Turnpike (1 worker)
# checks an upstream of NODES nodes over HTTP every second, and two phases of SECS seconds each
# are measured:
#   steady   — the checks alone;
#   rolling  — 20 updates spread over the phase, each moving NODES/20 more nodes to 127.0.0.2:
#              every node replaced (what bench/health.sh's "rolling" case does under load).
#              UPDATE=reload (default): each update is the whole config rewritten and a SIGHUP;
#              UPDATE=node_file: the nodes are in a node file (`nodes_file`), and each update
#              renames a new node file into place (no reload).
# CPU time comes from /proc/PID/task/*/schedstat (ns). Figures per phase: the checker thread
# ("tp-health") and the main thread (config loads and snapshot builds) as % of one core, and all
# of Turnpike's threads. The rolling update's cost is the rolling phase minus the steady one.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), BASE_BIN (unset: none), NODES=2000,
#      SECS=8, ROUNDS=3, INTERVAL=1s, UPDATE=reload.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx python3 awk
NODES=${NODES:-2000}
SECS=${SECS:-8}
ROUNDS=${ROUNDS:-3}
INTERVAL=${INTERVAL:-1s}
BASE_BIN=${BASE_BIN:-}
UPDATE=${UPDATE:-reload}
[[ $UPDATE == reload || $UPDATE == node_file ]] || die "UPDATE is reload or node_file, not $UPDATE"
RELOADS=20
raise_nofile >/dev/null
warn_if_busy

# ---- the origin: NODES ports on two addresses ----
start_nodes_origin "$NODES"

# write_config FILE MOVED: NODES nodes checked every $INTERVAL, the first MOVED on 127.0.0.2;
# with UPDATE=node_file, FILE.txt holds the nodes and FILE names it.
write_config() {
  python3 - "$1" "$2" "$INTERVAL" "$UPDATE" "${PORTS[@]}" <<'PY'
import os, sys
path, moved, interval, update, ports = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
nodes = [f"127.0.0.{2 if i < moved else 1}:{p}" for i, p in enumerate(ports)]
with open(path + ".tmp", "w") as f:
    f.write("workers: 1\nlog: {error_log: stderr, level: warn, access_log: off}\n")
    f.write("listeners: [{name: bench, address: 127.0.0.1, port: 0}]\n")
    if update == "node_file":
        f.write(f"upstreams:\n  - name: origin\n    nodes_file: {os.path.dirname(path)}/nodes.txt\n")
        with open(path + ".txt", "w") as n:
            n.writelines(f"{a}\n" for a in nodes)
    else:
        f.write("upstreams:\n  - name: origin\n    nodes:\n")
        f.writelines(f'      - "{a}"\n' for a in nodes)
    f.write(f"    health: {{active: {{type: http, path: /, interval: {interval}, timeout: 1s}}}}\n")
    f.write('routes:\n  - name: all\n    match: {paths: ["/*"]}\n    upstream: origin\n')
os.replace(path + ".tmp", path)
PY
}
cfg0=$BENCH_TMP/nodes-0.yaml
write_config "$cfg0" 0
for ((k = 1; k <= RELOADS; k++)); do write_config "$BENCH_TMP/nodes-$k.yaml" $((k * NODES / RELOADS)); done

# sample PID: "checker main all", CPU ns of the checker thread, the main thread and every thread.
sample() {
  local checker=0 main=0 total=0 d v
  for d in /proc/"$1"/task/*; do
    v=$(awk '{print $1}' "$d/schedstat")
    total=$((total + v))
    if [[ ${d##*/} == "$1" ]]; then main=$v; elif [[ $(cat "$d/comm") == tp-health ]]; then checker=$v; fi
  done
  echo "$checker $main $total"
}
pct() { awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN{printf "%.2f", (b-a)/1e9*100/s}'; }

# one BIN LABEL: sets S_CHK S_MAIN S_ALL (steady) and R_CHK R_MAIN R_ALL (rolling), % of a core.
one() {
  local bin=$1 cfg=$BENCH_TMP/turnpike.yaml c0 m0 a0 c1 m1 a1 k gap t0 t1 done_reloads
  cp "$cfg0" "$cfg"
  [[ $UPDATE == node_file ]] && cp "$cfg0.txt" "$BENCH_TMP/nodes.txt"
  TURNPIKE_BIN=$bin start_turnpike "tp-$2" "$cfg"
  local pid=$STARTED_PID
  sleep 3  # the first round of checks (spread over one interval) connects
  read -r c0 m0 a0 <<<"$(sample "$pid")"; t0=$(date +%s.%N)
  sleep "$SECS"
  read -r c1 m1 a1 <<<"$(sample "$pid")"; t1=$(date +%s.%N)
  local s; s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
  S_CHK=$(pct "$c0" "$c1" "$s") S_MAIN=$(pct "$m0" "$m1" "$s") S_ALL=$(pct "$a0" "$a1" "$s")
  gap=$(awk -v d="$SECS" -v n="$RELOADS" 'BEGIN{printf "%.3f", d/n}')
  read -r c0 m0 a0 <<<"$(sample "$pid")"; t0=$(date +%s.%N)
  for ((k = 1; k <= RELOADS; k++)); do
    if [[ $UPDATE == node_file ]]; then
      cp "$BENCH_TMP/nodes-$k.yaml.txt" "$BENCH_TMP/nodes.txt.new" && mv "$BENCH_TMP/nodes.txt.new" "$BENCH_TMP/nodes.txt"
    else
      cp "$BENCH_TMP/nodes-$k.yaml" "$cfg.new" && mv "$cfg.new" "$cfg"
      kill -HUP "$pid"
    fi
    sleep "$gap"
  done
  read -r c1 m1 a1 <<<"$(sample "$pid")"; t1=$(date +%s.%N)
  s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
  R_CHK=$(pct "$c0" "$c1" "$s") R_MAIN=$(pct "$m0" "$m1" "$s") R_ALL=$(pct "$a0" "$a1" "$s")
  if [[ $UPDATE == node_file ]]; then  # (each update removes nodes: a warning line)
    done_reloads=$(grep -c 'nodes changed by' "$BENCH_TMP/tp-$2.log" || true)
  else
    done_reloads=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"] - 1)' "$STARTED_READY")
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  ((done_reloads == RELOADS)) || die "$2: $done_reloads of $RELOADS updates ($UPDATE) completed"
}

declare -A SC SM SA RC RM RA
# round BIN LABEL ROUND
round() {
  one "$1" "$2-$3"
  SC[$2]+="$S_CHK " SM[$2]+="$S_MAIN " SA[$2]+="$S_ALL " RC[$2]+="$R_CHK " RM[$2]+="$R_MAIN " RA[$2]+="$R_ALL "
  log "round $3 $2: steady checker $S_CHK% all $S_ALL%; rolling checker $R_CHK% main $R_MAIN% all $R_ALL% (of a core)"
}
interleaved round

echo "### Active checks and a rolling update of $NODES nodes, CPU by thread without traffic"
env_header
echo "- command: NODES=$NODES SECS=$SECS ROUNDS=$ROUNDS INTERVAL=$INTERVAL UPDATE=$UPDATE${BASE_BIN:+ BASE_BIN=$BASE_BIN} bench/checker_cost.sh"
echo
echo "% of one core, medians of $ROUNDS rounds (rounds in brackets). Rolling: $RELOADS updates ($UPDATE) in $SECS s replacing every node."
echo
echo "| binary | steady: checker | steady: all threads | rolling: checker | rolling: main thread | rolling: all threads | update cost (rolling - steady, all threads) |"
echo "|---|---|---|---|---|---|---|"
for b in "${BINS[@]}"; do
  # shellcheck disable=SC2086
  sa=$(median ${SA[$b]}) ra=$(median ${RA[$b]})
  # shellcheck disable=SC2086
  echo "| $(bin_path "$b") | $(median ${SC[$b]}) (${SC[$b]% }) | $sa | $(median ${RC[$b]}) (${RC[$b]% }) | $(median ${RM[$b]}) (${RM[$b]% }) | $ra | $(awk -v a="$ra" -v b="$sa" 'BEGIN{printf "%.2f", a-b}') |"
done

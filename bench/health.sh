#!/usr/bin/env bash
# bench/health.sh — what health checking costs with 2,000 upstream nodes (issue 14).
#
# One nginx origin listens on 2 x NODES loopback addresses (127.0.0.1 and 127.0.0.2, the same NODES
# ports). Turnpike (1 worker) proxies wrk's keepalive GETs to an upstream of NODES nodes on
# 127.0.0.1, round-robin. Cases, in one table:
#   passive  — no active checks (passive checks only, the default)
#   active   — active HTTP checks of every node every second (GET /, 1 s timeout)
#   rolling  — the active case while 20 reloads, spread over the run, move all NODES nodes to
#              127.0.0.2 (NODES/20 more each time): every node replaced
#   reloads  — the active case with 20 reloads of the same nodes (each config differs by a
#              comment): what reloading costs without replacing nodes (not in the default CASES)
#   rolling_file — the rolling case with the nodes in a node file (`nodes_file`): 20 new node
#              files renamed into place, no reload (not in the default CASES)
# Figures: Turnpike's CPU per request (all threads: workers, main thread with its reloads, the
# checker), the checker thread's own CPU (thread "tp-health") as a share of one core, failed
# requests (non-2xx + socket errors; must be 0).
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), NODES=2000, DUR=10, WARM=2, CONNS=64,
#      ROUNDS=3, INTERVAL=1s, CASES="passive active rolling" (a subset, in that order),
#      IDLE=1 (0: skip the idle measurement), PERF_DIR (when set: `perf record -g` of Turnpike
#      during each measured run, into PERF_DIR/<case>-<round>.data, and of the checker thread
#      alone during the idle measurement, PERF_DIR/idle-checker.data).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
NODES=${NODES:-2000}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}; WARM=${WARM:-2}
INTERVAL=${INTERVAL:-1s}
RELOADS=20
raise_nofile >/dev/null
warn_if_busy

# ---- the origin: NODES ports on two addresses ----
start_nodes_origin "$NODES"
log "origin: pid $ORIGIN_PID, $NODES ports x 2 addresses"

# write_config FILE CHECKS MOVED [NODE_FILE]: NODES nodes, the first MOVED of them on 127.0.0.2;
# CHECKS 1: active HTTP checks every $INTERVAL. With NODE_FILE: the nodes are written there, and
# the config names it (nodes_file).
write_config() {
  python3 - "$1" "$2" "$3" "$INTERVAL" "${4:-}" "${PORTS[@]}" <<'PY'
import sys
path, checks, moved, interval, node_file, ports = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                                                   sys.argv[5], sys.argv[6:])
nodes = [f"127.0.0.{2 if i < moved else 1}:{p}" for i, p in enumerate(ports)]
with open(path + ".tmp", "w") as f:
    f.write(f"# {path}\n")  # the reloads case: every file differs, its nodes do not
    f.write("workers: 1\nlog: {error_log: stderr, level: warn, access_log: off}\n")
    f.write("listeners: [{name: bench, address: 127.0.0.1, port: 0}]\n")
    f.write("limits: {max_requests_per_connection: 1000000, max_connections_per_worker: 16384}\n")
    if node_file:
        f.write(f"upstreams:\n  - name: origin\n    nodes_file: {node_file}\n")
        with open(node_file + ".tmp", "w") as n:
            n.writelines(f"{a}\n" for a in nodes)
        import os
        os.replace(node_file + ".tmp", node_file)
    else:
        f.write("upstreams:\n  - name: origin\n    nodes:\n")
        f.writelines(f'      - "{n}"\n' for n in nodes)
    f.write("    keepalive: {max_idle: 4, idle_timeout: 55s, max_requests: 1000000}\n")
    if checks:
        f.write(f"    health: {{active: {{type: http, path: /, interval: {interval}, timeout: 1s}}}}\n")
    f.write('routes:\n  - name: all\n    match: {paths: ["/*"]}\n    upstream: origin\n')
import os
os.replace(path + ".tmp", path)
PY
}

TCK=$(getconf CLK_TCK)
ROLL_CFG= ROLL_PID= ROLLER= ROLL_NODES=
# The rolling update, run by measure's hook: RELOADS reloads over the measured DUR seconds.
rolling_hook() {
  [[ $1 == start ]] || { wait "$ROLLER" 2>/dev/null || true; return 0; }
  local gap; gap=$(awk -v d="$DUR" -v n="$RELOADS" 'BEGIN{printf "%.3f", d/(n+1)}')
  (
    for ((k = 1; k <= RELOADS; k++)); do
      sleep "$gap"
      if [[ -n $ROLL_NODES ]]; then  # a node file renamed into place: no reload
        cp "$ROLL_NODES.$k" "$ROLL_NODES.new" && mv "$ROLL_NODES.new" "$ROLL_NODES"
      else
        cp "$ROLL_CFG.$k" "$ROLL_CFG.new" && mv "$ROLL_CFG.new" "$ROLL_CFG"
        kill -HUP "$ROLL_PID"
      fi
    done
  ) &
  ROLLER=$!
}

declare -A CPU RPS BAD CHK MAIN LABEL=([passive]="passive checks only (default)" [active]="active HTTP checks, $NODES nodes every $INTERVAL"
  [rolling]="active checks + rolling update: 20 reloads replacing all $NODES nodes"
  [reloads]="active checks + 20 reloads of the same $NODES nodes"
  [rolling_file]="active checks + rolling update: 20 node files replacing all $NODES nodes (no reload)")
CASES=${CASES:-passive active rolling}
PERF_DIR=${PERF_DIR:-}
PERF_PID=
# perf_hook start|end: records Turnpike ($PERF_TARGET) into $PERF_OUT while the run is measured.
perf_hook() {
  if [[ $1 == start ]]; then
    perf record -q -g -o "$PERF_OUT" -p "$PERF_TARGET" >/dev/null 2>&1 &
    PERF_PID=$!
  elif [[ -n $PERF_PID ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
  fi
}
# case_hook start|end: the rolling update (when on) and perf (when PERF_DIR is set).
ROLLING=0
case_hook() {
  ((ROLLING)) && rolling_hook "$1"
  [[ -n $PERF_DIR ]] && perf_hook "$1"
  return 0
}
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    cfg=$BENCH_TMP/turnpike-$c-$r.yaml
    checks=1; [[ $c == passive ]] && checks=0
    nodes_file=; [[ $c == rolling_file ]] && nodes_file=$BENCH_TMP/nodes-$c-$r.txt
    write_config "$cfg" "$checks" 0 "$nodes_file"
    start_turnpike "tp-$c-$r" "$cfg"
    pid=$STARTED_PID port=$STARTED_PORT
    precheck "http://127.0.0.1:$port/" || die "precheck: $PRECHECK_MSG"
    # Let the first round of checks (spread over one interval) start before measuring.
    sleep 2
    MEASURE_HOOK=case_hook ROLLING=0 PERF_TARGET=$pid ROLL_NODES=
    [[ -n $PERF_DIR ]] && mkdir -p "$PERF_DIR" && PERF_OUT=$PERF_DIR/$c-$r.data
    if [[ $c == rolling ]]; then
      ROLL_CFG=$cfg ROLL_PID=$pid ROLLING=1
      # Every reload moves NODES/20 more nodes to 127.0.0.2: new addresses, so new nodes.
      for ((k = 1; k <= RELOADS; k++)); do write_config "$cfg.$k" 1 $((k * NODES / RELOADS)); done
    elif [[ $c == rolling_file ]]; then
      ROLL_CFG=$cfg ROLL_PID=$pid ROLLING=1 ROLL_NODES=$nodes_file
      for ((k = 1; k <= RELOADS; k++)); do write_config "$cfg.$k" 1 $((k * NODES / RELOADS)) "$nodes_file.$k"; done
    elif [[ $c == reloads ]]; then
      ROLL_CFG=$cfg ROLL_PID=$pid ROLLING=1
      for ((k = 1; k <= RELOADS; k++)); do write_config "$cfg.$k" 1 0; done
    fi
    h0=$(thread_ticks "$pid" tp-health); t0=$(date +%s.%N); m0=$(main_ticks "$pid")
    ORIGIN_PID_SAVED=$ORIGIN_PID; ORIGIN_PID=
    measure "$pid" "http://127.0.0.1:$port/"
    ORIGIN_PID=$ORIGIN_PID_SAVED
    h1=$(thread_ticks "$pid" tp-health); t1=$(date +%s.%N); m1=$(main_ticks "$pid")
    main=$(awk -v a="$m0" -v b="$m1" -v t="$TCK" -v n="$M_REQS" 'BEGIN{printf "%.2f", (b-a)/t*1e6/n}')
    chk=$(awk -v a="$h0" -v b="$h1" -v t="$TCK" -v s0="$t0" -v s1="$t1" 'BEGIN{printf "%.2f", (b-a)/t*100/(s1-s0)}')
    bad=$((M_NON2XX + M_SOCKERR))
    ((M_REQS > 0)) || die "$c round $r: no requests"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS " BAD[$c]+="$bad " CHK[$c]+="$chk " MAIN[$c]+="$main "
    log "round $r $c: $M_CPU µs/req, $M_RPS req/s, $bad failed, checker $chk% of a core"
    if [[ $c == rolling_file ]]; then  # (each update removes nodes: a warning line each)
      for ((k = 0; k < 100; k++)); do
        n=$(grep -c 'nodes changed by' "$BENCH_TMP/tp-$c-$r.log" || true)
        ((n == RELOADS)) && break
        sleep 0.1
      done
      log "round $r $c: $n node-file updates completed"
      ((n == RELOADS)) || die "$c round $r: $n of $RELOADS node-file updates completed"
    fi
    if [[ $c == rolling || $c == reloads ]]; then
      for ((k = 0; k < 100; k++)); do
        n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["generation"] - 1 if d["last_reload"] == "ok" else -1)' "$STARTED_READY")
        ((n == RELOADS)) && break
        sleep 0.1
      done
      log "round $r $c: $n reloads completed"
      ((n == RELOADS)) || die "$c round $r: $n of $RELOADS reloads completed: $(grep -m3 -iE 'error|refused' "$BENCH_TMP/tp-$c-$r.log")"
    fi
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
done

# Idle: the checker alone (no traffic) for 10 s.
IDLE_CHK=- IDLE_ALL=-
if ((${IDLE:-1})); then
cfg=$BENCH_TMP/turnpike-idle.yaml
write_config "$cfg" 1 0
start_turnpike tp-idle "$cfg"
sleep 2
h0=$(thread_ticks "$STARTED_PID" tp-health); c0=$(cpu_ticks "$STARTED_PID"); t0=$(date +%s.%N)
if [[ -n $PERF_DIR ]]; then
  # The checker thread alone: perf record -t of the thread called tp-health.
  tid=$(for d in /proc/"$STARTED_PID"/task/*; do if [[ $(cat "$d/comm") == tp-health ]]; then echo "${d##*/}"; fi; done | head -1)
  mkdir -p "$PERF_DIR"
  perf record -q -g -o "$PERF_DIR/idle-checker.data" -t "$tid" -- sleep 10 >/dev/null 2>&1 || sleep 10
else
  sleep 10
fi
h1=$(thread_ticks "$STARTED_PID" tp-health); c1=$(cpu_ticks "$STARTED_PID"); t1=$(date +%s.%N)
IDLE_CHK=$(awk -v a="$h0" -v b="$h1" -v t="$TCK" -v s0="$t0" -v s1="$t1" 'BEGIN{printf "%.2f", (b-a)/t*100/(s1-s0)}')
IDLE_ALL=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v s0="$t0" -v s1="$t1" 'BEGIN{printf "%.2f", (b-a)/t*100/(s1-s0)}')
fi

# shellcheck disable=SC2086
base=$(median ${CPU[passive]:-})
echo "### Health checks at $NODES nodes"
env_header
echo "- command: NODES=$NODES DUR=$DUR WARM=$WARM ROUNDS=$ROUNDS CASES=\"$CASES\" bench/health.sh"
echo
echo "| case | CPU µs/req (median of $ROUNDS) | vs passive | of which main thread (reloads) | req/s | failed requests | checker thread, % of a core | runs (µs/req) |"
echo "|---|---|---|---|---|---|---|---|"
for c in $CASES; do
  # shellcheck disable=SC2086
  m=$(median ${CPU[$c]})
  # shellcheck disable=SC2086
  echo "| ${LABEL[$c]} | $m | $(awk -v a="$m" -v b="$base" 'BEGIN{if (b+0 == 0) print "-"; else printf "%+.1f%%", (a-b)*100/b}') | $(median ${MAIN[$c]}) | $(median ${RPS[$c]}) | $(awk '{s=0; for(i=1;i<=NF;i++) s+=$i; print s}' <<<"${BAD[$c]}") | $(median ${CHK[$c]}) | ${CPU[$c]}|"
done
echo
echo "Idle (no traffic), $NODES nodes checked every $INTERVAL: checker thread $IDLE_CHK% of a core, whole process $IDLE_ALL%."

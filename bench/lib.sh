# bench/lib.sh — shared helpers for the bench/*.sh scripts. Source it; don't run it.
#
# Gives: a private temp dir ($BENCH_TMP), process start helpers that poll until the port answers,
# an EXIT trap that kills every process started here (by pid, children included), free-port
# picking, CPU/RSS readers for a process tree, and `measure`, the wrk-based CPU-per-request method
# of the peers kit (shared/bench-peers/cpu_per_req.sh) with warm-up, time bound and error checks.
#
# Debian packages used by bench/: nginx-light libnginx-mod-http-lua haproxy wrk curl python3
# (nghttp2-client is in the peers kit for h2/TLS; not used by these scripts).

# shellcheck shell=bash disable=SC2034  # globals set here are read by the scripts sourcing this
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
TURNPIKE_BIN=${TURNPIKE_BIN:-$REPO_DIR/build-release/src/app/turnpike}
DUR=${DUR:-8}; DUR=${DUR%s}            # wrk duration per measured run, seconds
WARM=${WARM:-1}; WARM=${WARM%s}        # warm-up run before each measurement, seconds (0: none)
CONNS=${CONNS:-64}                     # wrk connections (one thread)
ERR_PCT=${ERR_PCT:-1}                  # a run with more than this % failed requests is FAILED

BENCH_PIDS=()
BENCH_TMP=$(mktemp -d /tmp/turnpike-bench.XXXXXX)

# cpu_busy_pct SECONDS: how busy the whole machine's CPUs were over SECONDS, in % (from /proc/stat).
cpu_busy_pct() {
  local a b
  a=$(awk '$1=="cpu"{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
  sleep "$1"
  b=$(awk '$1=="cpu"{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," "); t=y[1]-x[1]; i=y[2]-x[2]; printf "%.0f", (t > 0 ? (t-i)*100/t : 0)}'
}
BENCH_BUSY0=$(cpu_busy_pct 1)

# warn_if_busy: loud warning when the machine was not idle when the benchmark started.
warn_if_busy() {
  if ((BENCH_BUSY0 > ${MAX_BUSY:-10})); then
    loud "the CPUs were ${BENCH_BUSY0}% busy before the run: something else is using them;" \
         "CPU µs/req will be inflated and noisy. Prefer a quiet machine (no build, no fuzzer)."
  fi
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
loud() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

need() { for c in "$@"; do command -v "$c" >/dev/null || die "missing command '$c' (see bench/README.md for packages)"; done; }

# pid and all its descendants, parent first.
tree_pids() {
  local p=$1 c
  [[ -d /proc/$p ]] || return 0
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null || true); do tree_pids "$c"; done
}

bench_cleanup() {
  local rc=$? p all=()
  trap - EXIT INT TERM
  for p in "${BENCH_PIDS[@]}"; do mapfile -t -O "${#all[@]}" all < <(tree_pids "$p"); done
  for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $BENCH_TMP"; else rm -rf "$BENCH_TMP"; fi
  exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports N: N distinct free TCP ports on 127.0.0.1 (held together while picked).
free_ports() {
  python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# render TEMPLATE OUT KEY=VALUE...: replaces @KEY@ with VALUE.
render() {
  local in=$1 out=$2 kv args=(); shift 2
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  args+=(-e "s|@TMP@|$BENCH_TMP|g")
  sed "${args[@]}" "$in" >"$out"
}

# start_bg NAME CMD...: starts CMD in the background (output to $BENCH_TMP/NAME.log); pid in LAST_PID.
start_bg() {
  local name=$1; shift
  "$@" >"$BENCH_TMP/$name.log" 2>&1 &
  LAST_PID=$!
  BENCH_PIDS+=("$LAST_PID")
}

# wait_port PORT PID [SECONDS]: polls until 127.0.0.1:PORT accepts; fails if PID dies or time runs out.
wait_port() {
  local port=$1 pid=$2 secs=${3:-10} i
  for ((i = 0; i < secs * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# start_nginx NAME TEMPLATE [KEY=VALUE...]: renders the template with a free @PORT@, starts nginx
# in the foreground (single process), waits for the port. Sets STARTED_PID, STARTED_PORT.
start_nginx() {
  local name=$1 tpl=$2; shift 2
  local port; port=$(free_ports 1)
  render "$tpl" "$BENCH_TMP/$name.conf" "PORT=$port" "$@"
  start_bg "$name" nginx -p "$BENCH_TMP" -e "$BENCH_TMP/$name.err" -c "$BENCH_TMP/$name.conf"
  wait_port "$port" "$LAST_PID" || { cat "$BENCH_TMP/$name.log" "$BENCH_TMP/$name.err" >&2 2>/dev/null; die "$name did not start"; }
  STARTED_PID=$LAST_PID STARTED_PORT=$port
  log "$name: pid $STARTED_PID, 127.0.0.1:$port"
}

start_haproxy() {
  local name=$1 tpl=$2; shift 2
  local port; port=$(free_ports 1)
  render "$tpl" "$BENCH_TMP/$name.cfg" "PORT=$port" "$@"
  start_bg "$name" haproxy -db -f "$BENCH_TMP/$name.cfg"
  wait_port "$port" "$LAST_PID" || { cat "$BENCH_TMP/$name.log" >&2; die "$name did not start"; }
  STARTED_PID=$LAST_PID STARTED_PORT=$port
  log "$name: pid $STARTED_PID, 127.0.0.1:$port"
}

# start_origin: the fixed origin (nginx, 1 worker, "hello world\n"). Sets ORIGIN_PID, ORIGIN_PORT.
start_origin() {
  start_nginx origin "$BENCH_DIR/peers/upstream-nginx.conf.in"
  ORIGIN_PID=$STARTED_PID ORIGIN_PORT=$STARTED_PORT
}

have_turnpike() { [[ -x $TURNPIKE_BIN ]]; }

# turnpike_basic_config ORIGIN_PORT [LISTENER_NAME]: the one-route config used by the benchmarks.
turnpike_basic_config() {
  cat <<EOF
workers: 1
log: {error_log: stderr, level: warn, access_log: off}
listeners: [{name: ${2:-bench}, address: 127.0.0.1, port: 0}]
upstreams:
  - name: origin
    nodes: ["127.0.0.1:$1"]
    keepalive: {max_idle: 256, idle_timeout: 55s, max_requests: 1000000}
limits: {max_requests_per_connection: 1000000, max_connections_per_worker: 16384}
routes:
  - name: all
    match: {paths: ["/*"]}
    upstream: origin
EOF
}

# start_turnpike NAME CONFIG_FILE [LISTENER]: starts Turnpike with --ready-file, waits for the
# ready file, takes pid and port from it. Sets STARTED_PID, STARTED_PORT, STARTED_SECS (time to ready).
start_turnpike() {
  local name=$1 cfg=$2 listener=${3:-bench} rf="$BENCH_TMP/$1.ready" i out=
  have_turnpike || die "Turnpike binary not found at $TURNPIKE_BIN (set TURNPIKE_BIN or build it)"
  local t0; t0=$(date +%s.%N)
  start_bg "$name" "$TURNPIKE_BIN" -c "$cfg" --ready-file "$rf"
  local launched=$LAST_PID
  for ((i = 0; i < 400; i++)); do
    kill -0 "$launched" 2>/dev/null || { cat "$BENCH_TMP/$name.log" >&2; die "$name exited during start-up (config $cfg)"; }
    if [[ -s $rf ]] && out=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); a=d["listeners"][sys.argv[2]]
print(d["pid"], a.rsplit(":",1)[1])' "$rf" "$listener" 2>/dev/null); then break; fi
    out=; sleep 0.05
  done
  [[ -n $out ]] || { cat "$BENCH_TMP/$name.log" >&2; die "$name wrote no usable ready file in 20 s"; }
  read -r STARTED_PID STARTED_PORT <<<"$out"
  STARTED_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
  [[ $STARTED_PID == "$launched" ]] || { log "$name: ready file pid $STARTED_PID != launched $launched; tracking both"; BENCH_PIDS+=("$STARTED_PID"); }
  wait_port "$STARTED_PORT" "$STARTED_PID" || die "$name: port $STARTED_PORT from the ready file does not accept"
  log "$name: pid $STARTED_PID, 127.0.0.1:$STARTED_PORT"
}

# cpu_ticks PID: user+sys clock ticks of PID and its live descendants (all threads) plus the
# reaped children's ticks (cutime+cstime) of PID.
cpu_ticks() {
  local p t=0 v
  for p in $(tree_pids "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk -v root=$(( p == $1 )) '{print $12+$13+(root?$14+$15:0)}') || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# rss_kib PID [FIELD]: VmRSS (or FIELD, e.g. VmHWM) summed over PID and its descendants, KiB.
rss_kib() {
  local p t=0 v
  for p in $(tree_pids "$1"); do
    v=$(awk -v f="${2:-VmRSS}:" '$1==f{print $2}' "/proc/$p/status" 2>/dev/null) || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# precheck URL [CURL ARGS...]: one request through curl; ok when 200 and body "hello world".
# Sets PRECHECK_MSG.
precheck() {
  local url=$1 out code body; shift
  rm -f "$BENCH_TMP/precheck.body"
  out=$(curl -sS -m 5 -o "$BENCH_TMP/precheck.body" -w '%{http_code}' "$@" "$url" 2>&1) || true
  code=${out: -3}
  body=$(head -c 200 "$BENCH_TMP/precheck.body" 2>/dev/null || true)
  if [[ $code == 200 && $body == "hello world" ]]; then PRECHECK_MSG=ok; return 0; fi
  out=${out//$'\n'/ } body=${body//$'\n'/ }
  PRECHECK_MSG="curl $url -> '${out:0:200}' body '$body'"
  return 1
}

# run_wrk SECONDS URL [WRK ARGS...]: wrk -t1 -c$CONNS, bounded by `timeout`; output on stdout.
run_wrk() {
  local secs=$1 url=$2; shift 2
  timeout -k 5 $((secs + 30)) wrk -t1 -c"$CONNS" -d"${secs}s" --latency "$@" "$url" 2>&1 || true
}

# measure PID URL [WRK ARGS...]: warm-up, then wrk for $DUR s while reading PID's CPU (and the
# origin's, when ORIGIN_PID is set). Sets M_CPU (µs/req), M_ORIGIN_CPU, M_RPS, M_P99 (wrk's text),
# M_P99_MS, M_REQS,
# M_NON2XX, M_SOCKERR, M_OK (1 when errors <= ERR_PCT % and the process lives), M_DIED, M_RAW.
measure() {
  local pid=$1 url=$2; shift 2
  local tck; tck=$(getconf CLK_TCK)
  if ((WARM > 0)); then run_wrk "$WARM" "$url" "$@" >/dev/null; fi
  local c0 o0=0 c1 o1=0
  c0=$(cpu_ticks "$pid"); [[ -n ${ORIGIN_PID:-} ]] && o0=$(cpu_ticks "$ORIGIN_PID")
  M_RAW=$(run_wrk "$DUR" "$url" "$@")
  c1=$(cpu_ticks "$pid"); [[ -n ${ORIGIN_PID:-} ]] && o1=$(cpu_ticks "$ORIGIN_PID")
  M_REQS=$(awk '/requests in/{print $1}' <<<"$M_RAW"); M_REQS=${M_REQS:-0}
  M_RPS=$(awk '/Requests\/sec/{printf "%.0f", $2}' <<<"$M_RAW"); M_RPS=${M_RPS:-0}
  M_P99=$(awk '$1=="99%"{print $2}' <<<"$M_RAW"); M_P99=${M_P99:-?}
  M_P99_MS=$(awk -v v="$M_P99" 'BEGIN{n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n+=0; else if (v ~ /m$/) n*=60000; else if (v ~ /s$/) n*=1000; else {print "?"; exit} printf "%.2f", n}')
  M_NON2XX=$(awk '/Non-2xx/{print $NF}' <<<"$M_RAW"); M_NON2XX=${M_NON2XX:-0}
  M_SOCKERR=$(awk -F'[ ,]+' '/Socket errors/{s=0; for(i=1;i<=NF;i++) if($i ~ /^[0-9]+$/) s+=$i; print s}' <<<"$M_RAW")
  M_SOCKERR=${M_SOCKERR:-0}
  if ((M_REQS > 0)); then
    M_CPU=$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v n="$M_REQS" 'BEGIN{printf "%.2f", (b-a)/t*1e6/n}')
    M_ORIGIN_CPU=$(awk -v a="$o0" -v b="$o1" -v t="$tck" -v n="$M_REQS" 'BEGIN{printf "%.2f", (b-a)/t*1e6/n}')
  else
    M_CPU=nan M_ORIGIN_CPU=nan
  fi
  local bad=$((M_NON2XX + M_SOCKERR))
  if ((M_REQS >= 100 && bad * 100 <= M_REQS * ERR_PCT)); then M_OK=1; else M_OK=0; fi
  M_DIED=0
  if ! kill -0 "$pid" 2>/dev/null; then
    M_DIED=1 M_OK=0 M_CPU=n/a M_ORIGIN_CPU=n/a
    loud "process $pid DIED during the run; last lines of its log:" "$(tail -n 20 "$BENCH_TMP"/*.log 2>/dev/null | tail -c 3000)"
  fi
  if ((M_REQS == 0)); then log "wrk output:"; echo "$M_RAW" >&2; fi
}

# raise_nofile: soft open-files limit to the hard limit; prints the new limit.
raise_nofile() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  ulimit -n
}

env_header() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- host: $(nproc) cores, $(lscpu 2>/dev/null | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}'), kernel $(uname -r)"
  echo "- turnpike: $TURNPIKE_BIN (binary built $(date -u -r "$TURNPIKE_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?'); repo HEAD $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO_DIR" diff --quiet 2>/dev/null || echo '+dirty'))"
  echo "- CPU busy before the benchmark (1 s sample, all cores): ${BENCH_BUSY0}% (above ~10%: other work was competing)"
  echo "- peers: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy " $3}'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
}

# bench/lib.sh — shared helpers for the bench/*.sh scripts. Source it; don't run it.
#
# Gives: a private temp dir ($BENCH_TMP), process start helpers that poll until the port answers,
# an EXIT trap that kills every process started here (by pid, children included), free-port
# picking, CPU/RSS readers for a process tree, and `measure`, the wrk-based CPU-per-request method
# of the peers kit (shared/bench-peers/cpu_per_req.sh) with warm-up, time bound and error checks.
#
# Debian packages used by bench/: nginx-light libnginx-mod-http-lua haproxy wrk curl python3, and for
# tls.sh / h2_upstream.sh also openssl and nghttp2-client (h2load).

# shellcheck shell=bash disable=SC2034  # globals set here are read by the scripts sourcing this
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
TURNPIKE_BIN=${TURNPIKE_BIN:-$REPO_DIR/build-release/src/app/turnpike}
DUR=${DUR:-8}; DUR=${DUR%s}            # wrk duration per measured run, seconds
WARM=${WARM:-1}; WARM=${WARM%s}        # warm-up run before each measurement, seconds (0: none)
CONNS=${CONNS:-64}                     # wrk connections (one thread)
ERR_PCT=${ERR_PCT:-1}                  # a run with more than this % failed requests is FAILED
H2_CONNS=${H2_CONNS:-16}               # h2load connections (one thread)
H2_STREAMS=${H2_STREAMS:-16}           # h2load concurrent streams per connection

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

# start_hello_origin LISTEN...: an nginx origin (one worker) answering 200 "hello world\n" on every
# "ADDRESS:PORT" given, keepalive without limit; waits until the last port accepts on 127.0.0.1
# (list a port on 127.0.0.1 before its other addresses); pid in ORIGIN_PID.
start_hello_origin() {
  local ocfg=$BENCH_TMP/origin.conf l
  {
    cat <<EOF
worker_processes 1;
daemon off;
master_process off;
worker_rlimit_nofile 40000;
pid $BENCH_TMP/upstream.pid;
error_log $BENCH_TMP/upstream.err warn;
events { worker_connections 30000; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $BENCH_TMP/upstream_body;
  proxy_temp_path $BENCH_TMP/upstream_proxy;
  server {
EOF
    for l in "$@"; do echo "    listen $l;"; done
    cat <<'EOF'
    location / { default_type text/plain; return 200 "hello world\n"; }
  }
}
EOF
  } >"$ocfg"
  start_bg origin nginx -p "$BENCH_TMP" -e "$BENCH_TMP/origin.err" -c "$ocfg"
  ORIGIN_PID=$LAST_PID
  local last=${!#}
  wait_port "${last##*:}" "$ORIGIN_PID" 20 || die "origin did not start: $(tail -3 "$BENCH_TMP/origin.err" 2>/dev/null)"
}

# start_nodes_origin N: the hello origin on N free ports, each on 127.0.0.1 and 127.0.0.2 (an
# upstream of N nodes, and N others to move them to); the ports in PORTS.
start_nodes_origin() {
  local p listen=()
  read -r -a PORTS <<<"$(free_ports "$1")"
  for p in "${PORTS[@]}"; do listen+=("127.0.0.1:$p" "127.0.0.2:$p"); done
  start_hello_origin "${listen[@]}"
}

# interleaved FN: ROUNDS rounds, each calling FN BIN LABEL ROUND for BASE_BIN (LABEL "base"), when
# set, then for TURNPIKE_BIN ("new"): two binaries measured alternately, so that a drift of the
# machine reaches both. Sets BINS to the labels in order; bin_path LABEL gives a label's binary.
interleaved() {
  local r b
  BINS=(new)
  [[ -n ${BASE_BIN:-} ]] && BINS=(base new)
  for ((r = 1; r <= ROUNDS; r++)); do
    for b in "${BINS[@]}"; do "$1" "$(bin_path "$b")" "$b" "$r"; done
  done
}
bin_path() { if [[ $1 == base ]]; then echo "$BASE_BIN"; else echo "$TURNPIKE_BIN"; fi; }

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

# turnpike_config ORIGIN_PORT LISTENERS [UPSTREAM_LINES]: a one-route config (1 worker, route `/*`
# to upstream "origin", keepalive pool of 256). LISTENERS is a YAML flow list of listeners;
# UPSTREAM_LINES, extra keys for the upstream (e.g. "protocol: h2c"), one per line, unindented.
turnpike_config() {
  local extra=${3:-}
  [[ -n $extra ]] && extra=$(sed 's/^/    /' <<<"$extra")$'\n'
  cat <<EOF
workers: 1
log: {error_log: stderr, level: warn, access_log: off}
listeners: $2
upstreams:
  - name: origin
    nodes: ["127.0.0.1:$1"]
${extra}    keepalive: {max_idle: 256, idle_timeout: 55s, max_requests: 1000000}
limits: {max_requests_per_connection: 1000000, max_connections_per_worker: 16384}
routes:
  - name: all
    match: {paths: ["/*"]}
    upstream: origin
EOF
}

# turnpike_basic_config ORIGIN_PORT [LISTENER_NAME]: the one-route config used by the benchmarks.
turnpike_basic_config() {
  turnpike_config "$1" "[{name: ${2:-bench}, address: 127.0.0.1, port: 0}]"
}

# turnpike_lua_config ORIGIN_PORT: the basic config with the nginx+lua case's chain as Turnpike
# plugins: bundled key-auth on the apikey header (consumer "bench", key secret-key-1) and the
# shared-dict counter of bench/plugins/fixed-window.lua (a user plugin) on every route.
turnpike_lua_config() {
  turnpike_basic_config "$1"
  cat <<YAML
plugin_paths: ["$BENCH_DIR/plugins"]
shared_dicts: {limits: 10m}
plugins:
  key-auth: {header: apikey}
  fixed-window: {}
consumers:
  - username: bench
    plugins:
      key-auth: {key: secret-key-1}
YAML
}

# tls_listener NAME CERT KEY: YAML flow mapping of a TLS listener on 127.0.0.1 (free port),
# ALPN h2 + http/1.1, HTTP/2 with 128 concurrent streams.
tls_listener() {
  echo "{name: $1, address: 127.0.0.1, port: 0, tls: {certificates: [{cert: $2, key: $3}], alpn: [h2, http/1.1]}, http2: {max_concurrent_streams: 128}}"
}

# make_cert DIR: self-signed EC P-256 certificate for localhost / 127.0.0.1: DIR/cert.pem,
# DIR/key.pem and DIR/both.pem (cert + key, for HAProxy's `crt`).
make_cert() {
  local d=$1
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$d/key.pem" -out "$d/cert.pem" >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "openssl could not make a certificate"; }
  cat "$d/cert.pem" "$d/key.pem" >"$d/both.pem"
}

# ready_port READY_FILE LISTENER: the port of LISTENER in Turnpike's ready file.
ready_port() {
  python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); print(d["listeners"][sys.argv[2]].rsplit(":",1)[1])' "$1" "$2"
}

# try_start_turnpike NAME CONFIG_FILE [LISTENER]: starts Turnpike with --ready-file, waits for the
# ready file, takes pid and port from it. Sets STARTED_PID, STARTED_PORT, STARTED_SECS (time to
# ready), STARTED_READY (the ready file). On failure returns 1 with the reason in START_ERR (and
# Turnpike's output on stderr) instead of exiting, so a script can go on with the peers.
try_start_turnpike() {
  local name=$1 cfg=$2 listener=${3:-bench} rf="$BENCH_TMP/$1.ready" i out=
  START_ERR=
  have_turnpike || { START_ERR="binary not found at $TURNPIKE_BIN (set TURNPIKE_BIN or build it)"; return 1; }
  local t0; t0=$(date +%s.%N)
  start_bg "$name" "$TURNPIKE_BIN" -c "$cfg" --ready-file "$rf"
  local launched=$LAST_PID
  for ((i = 0; i < 400; i++)); do
    if ! kill -0 "$launched" 2>/dev/null; then
      tail -n 30 "$BENCH_TMP/$name.log" >&2
      START_ERR="$name exited during start-up (config $cfg): $(grep -m1 -iE 'error|invalid|unknown|not ' "$BENCH_TMP/$name.log" | head -c 300 || true)"
      return 1
    fi
    if [[ -s $rf ]] && out=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); a=d["listeners"][sys.argv[2]]
print(d["pid"], a.rsplit(":",1)[1])' "$rf" "$listener" 2>/dev/null); then break; fi
    out=; sleep 0.05
  done
  [[ -n $out ]] || { tail -n 30 "$BENCH_TMP/$name.log" >&2; START_ERR="$name wrote no usable ready file in 20 s"; return 1; }
  read -r STARTED_PID STARTED_PORT <<<"$out"
  STARTED_READY=$rf
  STARTED_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
  [[ $STARTED_PID == "$launched" ]] || { log "$name: ready file pid $STARTED_PID != launched $launched; tracking both"; BENCH_PIDS+=("$STARTED_PID"); }
  wait_port "$STARTED_PORT" "$STARTED_PID" || { START_ERR="$name: port $STARTED_PORT from the ready file does not accept"; return 1; }
  log "$name: pid $STARTED_PID, 127.0.0.1:$STARTED_PORT"
}

# start_turnpike NAME CONFIG_FILE [LISTENER]: try_start_turnpike, exiting on failure.
start_turnpike() {
  try_start_turnpike "$@" || die "$START_ERR"
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

# thread_ticks PID NAME: user+sys ticks of PID's threads called NAME.
thread_ticks() {
  local t=0 d v
  for d in /proc/"$1"/task/*; do
    [[ $(cat "$d/comm" 2>/dev/null) == "$2" ]] || continue
    v=$(sed 's/^.*) //' "$d/stat" | awk '{print $12+$13}')
    t=$((t + v))
  done
  echo "$t"
}

# main_ticks PID: user+sys ticks of PID's main thread (config loads and snapshot builds on reload).
main_ticks() { sed 's/^.*) //' "/proc/$1/task/$1/stat" | awk '{print $12+$13}'; }

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
# Sets PRECHECK_MSG and PRECHECK_VERSION (the HTTP version curl used: 1.1, 2, ...).
precheck() {
  local url=$1 out code body; shift
  rm -f "$BENCH_TMP/precheck.body"
  out=$(curl -sS -m 5 -o "$BENCH_TMP/precheck.body" -w '%{http_version} %{http_code}' "$@" "$url" 2>&1) || true
  code=${out: -3}
  PRECHECK_VERSION=$(tail -n 1 <<<"$out" | awk '{print $(NF-1)}')
  body=$(head -c 200 "$BENCH_TMP/precheck.body" 2>/dev/null || true)
  if [[ $code == 200 && $body == "hello world" ]]; then PRECHECK_MSG=ok; return 0; fi
  out=${out//$'\n'/ } body=${body//$'\n'/ }
  PRECHECK_MSG="curl $url -> '${out:0:200}' body '$body'"
  return 1
}

# precheck_proto VERSION URL [CURL ARGS...]: precheck, and the response must have come over HTTP
# version VERSION ("2" or "1.1"): catches an ALPN that silently fell back to HTTP/1.1.
precheck_proto() {
  local want=$1; shift
  precheck "$@" || return 1
  [[ $PRECHECK_VERSION == "$want" ]] && return 0
  PRECHECK_MSG="curl $1 answered over HTTP/$PRECHECK_VERSION, expected HTTP/$want"
  return 1
}

# run_wrk SECONDS URL [WRK ARGS...]: wrk -t1 -c$CONNS, bounded by `timeout`; output on stdout.
run_wrk() {
  local secs=$1 url=$2; shift 2
  timeout -k 5 $((secs + 30)) wrk -t1 -c"$CONNS" -d"${secs}s" --latency "$@" "$url" 2>&1 || true
}

# run_h2load SECONDS URL [H2LOAD ARGS...]: h2load -t1 -c$H2_CONNS -m$H2_STREAMS for SECONDS,
# bounded by `timeout`. https URLs: TLS with ALPN h2; http URLs: h2c prior knowledge.
run_h2load() {
  local secs=$1 url=$2; shift 2
  timeout -k 5 $((secs + 30)) h2load -t 1 -c "$H2_CONNS" -m "$H2_STREAMS" -D "$secs" "$@" "$url" 2>&1 || true
}

# parse_wrk / parse_h2load: M_REQS, M_RPS, M_P99 (wrk's text), M_P99_MS, M_NON2XX, M_SOCKERR and
# M_PROTO from $M_RAW. h2load has no percentiles (M_P99=-); M_PROTO is its "Application
# protocol" (h2 / h2c / http/1.1); wrk's is "http/1.1".
parse_wrk() {
  M_PROTO=http/1.1
  M_REQS=$(awk '/requests in/{print $1}' <<<"$M_RAW"); M_REQS=${M_REQS:-0}
  M_RPS=$(awk '/Requests\/sec/{printf "%.0f", $2}' <<<"$M_RAW"); M_RPS=${M_RPS:-0}
  M_P99=$(awk '$1=="99%"{print $2}' <<<"$M_RAW"); M_P99=${M_P99:-?}
  M_P99_MS=$(awk -v v="$M_P99" 'BEGIN{n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n+=0; else if (v ~ /m$/) n*=60000; else if (v ~ /s$/) n*=1000; else {print "?"; exit} printf "%.2f", n}')
  M_NON2XX=$(awk '/Non-2xx/{print $NF}' <<<"$M_RAW"); M_NON2XX=${M_NON2XX:-0}
  M_SOCKERR=$(awk -F'[ ,]+' '/Socket errors/{s=0; for(i=1;i<=NF;i++) if($i ~ /^[0-9]+$/) s+=$i; print s}' <<<"$M_RAW")
  M_SOCKERR=${M_SOCKERR:-0}
}
parse_h2load() {
  # requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout
  # status codes: A 2xx, B 3xx, C 4xx, D 5xx
  M_PROTO=$(awk -F': *' '/^Application protocol:/{print $2}' <<<"$M_RAW"); M_PROTO=${M_PROTO:-none}
  M_REQS=$(awk '/^requests:/{print $6}' <<<"$M_RAW"); M_REQS=${M_REQS:-0}
  M_RPS=$(awk '/^finished in/{printf "%.0f", $4}' <<<"$M_RAW"); M_RPS=${M_RPS:-0}
  M_P99=- M_P99_MS=-
  local ok2xx; ok2xx=$(awk '/^status codes:/{print $3}' <<<"$M_RAW"); ok2xx=${ok2xx:-0}
  M_NON2XX=$((M_REQS > ok2xx ? M_REQS - ok2xx : 0))
  M_SOCKERR=$(awk '/^requests:/{print $10}' <<<"$M_RAW"); M_SOCKERR=${M_SOCKERR:-0}  # failed
}

# measure_with TOOL PID URL [ARGS...]: TOOL is wrk or h2load. Warm-up ($WARM s), then TOOL for
# $DUR s while reading PID's CPU (and the origin's, when ORIGIN_PID is set). Sets M_CPU (µs/req),
# M_ORIGIN_CPU, M_RPS, M_P99, M_P99_MS, M_REQS, M_NON2XX, M_SOCKERR, M_PROTO, M_OK (1 when errors
# <= ERR_PCT % and the process lives), M_DIED, M_RAW. Connections (and TLS handshakes) are made
# inside the measured window: $CONNS or $H2_CONNS of them, negligible against the request count.
# MEASURE_HOOK, when set, names a function called with "start" right before the measured run
# (after the warm-up) and with "end" right after it.
measure_with() {
  local tool=$1 pid=$2 url=$3; shift 3
  local tck; tck=$(getconf CLK_TCK)
  if ((WARM > 0)); then "run_$tool" "$WARM" "$url" "$@" >/dev/null; fi
  local c0 o0=0 c1 o1=0
  [[ -n ${MEASURE_HOOK:-} ]] && "$MEASURE_HOOK" start
  c0=$(cpu_ticks "$pid"); [[ -n ${ORIGIN_PID:-} ]] && o0=$(cpu_ticks "$ORIGIN_PID")
  M_RAW=$("run_$tool" "$DUR" "$url" "$@")
  c1=$(cpu_ticks "$pid"); [[ -n ${ORIGIN_PID:-} ]] && o1=$(cpu_ticks "$ORIGIN_PID")
  [[ -n ${MEASURE_HOOK:-} ]] && "$MEASURE_HOOK" end
  "parse_$tool"
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
  if ((M_REQS == 0)); then log "$tool output:"; echo "$M_RAW" >&2; fi
}

# measure PID URL [WRK ARGS...]: measure_with wrk (the method of run.sh and routes.sh).
measure() { measure_with wrk "$@"; }

# median V...: median of numbers ("-" when none).
median() { (($#)) || { echo -; return 0; }; printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{if (NR == 0) print "-"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# ---- Result bookkeeping for tls.sh and h2_upstream.sh (run.sh keeps its own table) ----
# A case has a KEY (e.g. h2/nginx) and a LABEL; every measured round appends its figures, tables
# show medians. FAILED=1 once any case failed or was skipped.
declare -A R_LABEL R_CPU R_OCPU R_RPS R_P99 R_NON R_SOCK R_OK R_NOTE R_XTRA R_HINT
R_ORDER=() FAILED=0

_rec_init() {
  [[ -n ${R_LABEL[$1]:-} ]] && return 0
  R_ORDER+=("$1"); R_LABEL[$1]=$2 R_OK[$1]=1 R_NON[$1]=0 R_SOCK[$1]=0
}

# rec_skip KEY LABEL REASON: the case can't run (e.g. the server did not start).
rec_skip() {
  _rec_init "$1" "$2"
  R_OK[$1]=0 R_NOTE[$1]="SKIPPED: $3" FAILED=1
}

# rec_extra KEY COLUMN VALUE: one round's value of an extra table column (see print_table).
rec_extra() { R_XTRA[$1/$2]+="$3 "; }

# rec_case KEY LABEL TOOL PID URL [ARGS...]: one measured round of a case. TOOL wrk: HTTP/1.1
# (over TLS for https URLs, no ALPN); TOOL h2load: https URLs must negotiate h2 by ALPN, http URLs
# are h2c with prior knowledge. A curl precheck (same protocol, certificate not verified) runs
# first; the protocol actually used is checked both by curl and in h2load's output, so a server
# that falls back to HTTP/1.1 fails instead of being measured on the wrong protocol.
# R_HINT[KEY], when set, is added to failure messages. Returns 1 when the case failed.
rec_case() {
  local key=$1 label=$2 tool=$3 pid=$4 url=$5; shift 5
  _rec_init "$key" "$label"
  if [[ -n ${R_NOTE[$key]:-} && ${R_OK[$key]} == 0 ]]; then return 1; fi  # failed in an earlier round
  local want_http want_proto curl_args=(-k)
  case $tool/${url%%:*} in
    wrk/http|wrk/https) want_http=1.1 want_proto=http/1.1 curl_args+=(--http1.1) ;;
    h2load/https) want_http=2 want_proto=h2 curl_args+=(--http2) ;;
    h2load/http) want_http=2 want_proto=h2c curl_args+=(--http2-prior-knowledge) ;;
    *) die "rec_case: unknown tool/scheme $tool $url" ;;
  esac
  local hint=; [[ -n ${R_HINT[$key]:-} ]] && hint=" (${R_HINT[$key]})"
  if ! precheck_proto "$want_http" "$url" "${curl_args[@]}"; then
    loud "$label: precheck failed: $PRECHECK_MSG$hint"
    R_OK[$key]=0 R_NOTE[$key]="FAILED precheck: $PRECHECK_MSG$hint" FAILED=1
    return 1
  fi
  log "measuring $label ($tool $url, ${DUR}s)"
  measure_with "$tool" "$pid" "$url" "$@"
  local ocpu=$M_ORIGIN_CPU; [[ -z ${ORIGIN_PID:-} ]] && ocpu=-
  log "$label: cpu_us_per_req=$M_CPU rps=$M_RPS p99=$M_P99 reqs=$M_REQS non2xx=$M_NON2XX errors=$M_SOCKERR origin_us=$ocpu proto=$M_PROTO"
  R_NON[$key]=$((R_NON[$key] + M_NON2XX)) R_SOCK[$key]=$((R_SOCK[$key] + M_SOCKERR))
  if [[ $M_PROTO != "$want_proto" ]]; then
    M_OK=0
    R_NOTE[$key]="FAILED: $tool used protocol '$M_PROTO', expected $want_proto$hint"
  elif ((!M_OK)); then
    R_NOTE[$key]="FAILED: $M_NON2XX non-2xx + $M_SOCKERR failed/socket errors of $M_REQS$hint"
    ((M_DIED)) && R_NOTE[$key]="${R_NOTE[$key]}, process DIED"
  fi
  if ((!M_OK)); then
    FAILED=1 R_OK[$key]=0
    loud "$label: ${R_NOTE[$key]} — its numbers are NOT valid" "$(head -c 2000 <<<"$M_RAW")"
    return 1
  fi
  R_CPU[$key]+="$M_CPU " R_OCPU[$key]+="$ocpu " R_RPS[$key]+="$M_RPS " R_P99[$key]+="$M_P99_MS "
}

# rec_median KEY ARRAY: median of a case's per-round list (ARRAY is R_CPU, R_RPS, ...).
rec_median() {
  local -n _arr=$2
  # shellcheck disable=SC2086  # space-separated list on purpose
  median ${_arr[$1]:-}
}

# print_table REFS KEYS...: Markdown table of the cases KEYS (medians over rounds) with one
# "ratio to" column per key in REFS (space-separated; a ratio is CPU µs/req / the ref's, same
# run). Extra columns: TABLE_XTRA=(COLUMN...) filled by rec_extra. p99 is wrk's (h2load: -).
print_table() {
  local refs=$1 key ref col; shift
  local head="| case | CPU µs/req |" sep="|---|---:|"
  for ref in $refs; do head+=" ratio to ${R_LABEL[$ref]:-$ref} |"; sep+="---:|"; done
  head+=" req/s | p99 ms | non-2xx / errors | origin CPU µs/req |"; sep+="---:|---:|---:|---:|"
  for col in "${TABLE_XTRA[@]}"; do head+=" $col |"; sep+="---:|"; done
  echo "$head status |"; echo "$sep---|"
  for key in "$@"; do
    [[ -n ${R_LABEL[$key]:-} ]] || continue
    local cpu rps p99 ocpu row
    cpu=$(rec_median "$key" R_CPU) ocpu=$(rec_median "$key" R_OCPU) p99=$(rec_median "$key" R_P99)
    rps=$(rec_median "$key" R_RPS | awk '{printf ($1 == "-") ? "-" : "%.0f", $1}')
    [[ -z ${R_P99[$key]:-} || ${R_P99[$key]} == -* ]] && p99=-
    row="| ${R_LABEL[$key]} | "
    if [[ ${R_OK[$key]} == 1 ]]; then row+="$cpu |"; else row+="~~${cpu}~~ |"; fi
    for ref in $refs; do
      if [[ ${R_OK[$key]} == 1 && ${R_OK[$ref]:-0} == 1 ]]; then
        row+=" $(awk -v a="$cpu" -v b="$(rec_median "$ref" R_CPU)" 'BEGIN{printf "%.2f", a/b}') |"
      else row+=" - |"; fi
    done
    local errs=${R_NON[$key]}; ((R_SOCK[$key] > 0)) && errs+=" (+${R_SOCK[$key]})"
    row+=" $rps | $p99 | $errs | $ocpu |"
    for col in "${TABLE_XTRA[@]}"; do
      local v=${R_XTRA[$key/$col]:-}
      # shellcheck disable=SC2086  # space-separated list on purpose
      if [[ -z $v ]]; then row+=" - |"
      elif [[ $v =~ ^[0-9.\ ]+$ ]]; then row+=" $(median $v) |"
      else row+=" ${v% } |"; fi
    done
    if [[ ${R_OK[$key]} == 1 ]]; then row+=" ok |"; else row+=" **${R_NOTE[$key]:-FAILED}** |"; fi
    echo "$row"
  done
  if ((${ROUNDS:-1} > 1)); then
    echo
    echo "CPU µs/req per round:"
    for key in "$@"; do [[ -n ${R_LABEL[$key]:-} ]] && echo "- ${R_LABEL[$key]}: $(v=${R_CPU[$key]:-none}; echo "${v% }")"; done
    local lines=""
    for key in "$@"; do
      for ref in $refs; do
        [[ $key != "$ref" && ${R_OK[$key]:-0} == 1 && ${R_OK[$ref]:-0} == 1 ]] || continue
        local pr; pr=$(paired_ratios "${R_CPU[$key]}" "${R_CPU[$ref]}") || continue
        lines+="- ${R_LABEL[$key]} / ${R_LABEL[$ref]}: $pr"$'\n'
      done
    done
    print_paired "$lines"
  fi
  return 0
}

# print_paired LINES: the paired-ratio lines (see paired_ratios) under their heading; nothing
# when there are none.
print_paired() {
  [[ -n $1 ]] || return 0
  echo
  echo "Paired ratios (each round's CPU µs/req over the reference's in the same round, then the median):"
  printf '%s' "$1"
}

# paired_ratios "A1 A2 ..." "B1 B2 ...": prints "A1/B1 A2/B2 ... (median M)"; fails when the lists
# differ in length. Rounds are measured in rotated order (see rotated), so a machine that drifts
# during a run moves both sides of a pair alike, which the medians of each side alone do not
# show.
paired_ratios() {
  local -a a b r=()
  read -r -a a <<<"$1"; read -r -a b <<<"$2"
  ((${#a[@]} > 0 && ${#a[@]} == ${#b[@]})) || return 1
  local i
  for ((i = 0; i < ${#a[@]}; i++)); do r+=("$(awk -v x="${a[i]}" -v y="${b[i]}" 'BEGIN{printf "%.2f", x/y}')"); done
  echo "${r[*]} (median $(median "${r[@]}"))"
}

# rotated ROUND WORD...: the words rotated left by ROUND-1. With several rounds no case is always
# measured first or last, so a drift of the machine during the run does not favour one of them.
rotated() {
  local round=$1; shift
  (($#)) || return 0
  local -a w=("$@")
  local k=$(((round - 1) % ${#w[@]}))
  echo "${w[*]:k} ${w[*]:0:k}"
}

# raise_nofile: soft open-files limit to the hard limit; prints the new limit.
raise_nofile() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  ulimit -n
}

env_header() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- host: $(nproc) cores, $(lscpu 2>/dev/null | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}'), kernel $(uname -r)"
  # the source tree the binary was built from: this repo, or the repo holding TURNPIKE_BIN
  local src=$REPO_DIR; [[ $TURNPIKE_BIN == "$REPO_DIR"/* ]] || src=$(dirname "$TURNPIKE_BIN")
  echo "- turnpike: $TURNPIKE_BIN (binary built $(date -u -r "$TURNPIKE_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?'); its repo's HEAD $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$src" diff --quiet 2>/dev/null || echo '+dirty'); bench scripts at $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "- CPU busy before the benchmark (1 s sample, all cores): ${BENCH_BUSY0}% (above ~10%: other work was competing)"
  echo "- peers: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy " $3}'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
}

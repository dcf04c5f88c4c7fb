#!/usr/bin/env bash
# bench/h2_upstream.sh — Turnpike proxying to an HTTP/2 cleartext (h2c) origin vs to an HTTP/1.1
# origin: CPU per request and how many requests each upstream connection carries.
#
# Two origins, both nginx with one worker answering "hello world\n" and logging one line per
# request (connection serial, requests so far on it, protocol):
#   h2c   — `listen ... http2` on cleartext: nginx 1.22 then speaks HTTP/2 with prior knowledge
#           (checked with curl --http2-prior-knowledge and h2load before measuring)
#   http1 — the same, plain HTTP/1.1 keepalive
# Two Turnpikes (1 worker each, same route): one with `protocol: h2c` (h2_max_streams_per_connection
# $H2_UP_STREAMS) to the h2c origin, one with `protocol: http1` to the HTTP/1.1 origin. Each is
# measured, back to back, with
#   wrk    — HTTP/1.1 clients: wrk -t1 -c$CONNS -d$DUR on the cleartext listener
#   h2load — HTTP/2 clients: h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D$DUR, h2c prior knowledge on
#            the cleartext listener (H2_CLIENT=h2c, default) or TLS + ALPN h2 (H2_CLIENT=tls)
# and one table per client is printed: Turnpike's CPU µs/req, ratio h2c/http1, req/s, p99 (wrk),
# the origin's CPU µs/req, and from the origin's log over the measured window: upstream
# connections used, how many of them were new, requests per upstream connection, the protocol
# the origin saw; plus the established connections to the origin seen by `ss` mid-run.
#
# Env: TURNPIKE_BIN, DUR=8 (s), WARM=1 (s), CONNS=64, H2_CONNS=16, H2_STREAMS=16,
#      H2_UP_STREAMS=100, H2_CLIENT=h2c|tls, UPSTREAMS="h2c http1", CLIENTS="wrk h2load",
#      ROUNDS=1 (interleaved, medians), ERR_PCT=1, MAX_BUSY=10, KEEP_TMP=0.
# Exit status: 0 when every case ran and succeeded; 1 otherwise (e.g. a Turnpike build without
# h2c upstreams: that row FAILS with the reason, the http1 row is still measured).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk h2load curl python3 awk timeout ss

UPSTREAMS=${UPSTREAMS:-h2c http1}
CLIENTS=${CLIENTS:-wrk h2load}
H2_UP_STREAMS=${H2_UP_STREAMS:-100}
H2_CLIENT=${H2_CLIENT:-h2c}
ROUNDS=${ROUNDS:-1}
raise_nofile >/dev/null
for u in $UPSTREAMS; do [[ $u == h2c || $u == http1 ]] || die "unknown upstream '$u' (UPSTREAMS: h2c http1)"; done
for c in $CLIENTS; do [[ $c == wrk || $c == h2load ]] || die "unknown client '$c' (CLIENTS: wrk h2load)"; done
[[ $H2_CLIENT == h2c || $H2_CLIENT == tls ]] || die "H2_CLIENT must be h2c or tls"
[[ $H2_CLIENT == tls ]] && need openssl
have_turnpike || die "Turnpike binary not found at $TURNPIKE_BIN (set TURNPIKE_BIN or build it); this script measures only Turnpike"

declare -A OPID OPORT TPID TPORT TPORT_TLS TSKIP
# Origins.
for u in $UPSTREAMS; do
  opts=; [[ $u == h2c ]] && opts=http2
  start_nginx "origin-$u" "$BENCH_DIR/peers/upstream-nginx-logged.conf.in" "NAME=origin-$u" "LISTEN_OPTS=$opts"
  OPID[$u]=$STARTED_PID OPORT[$u]=$STARTED_PORT
done
if [[ -n ${OPORT[h2c]:-} ]]; then
  # The h2c origin must really speak HTTP/2 with prior knowledge; check with curl and h2load.
  precheck_proto 2 "http://127.0.0.1:${OPORT[h2c]}/" --http2-prior-knowledge || die "h2c origin: $PRECHECK_MSG"
  out=$(timeout 20 h2load -n 200 -c 2 -m 10 "http://127.0.0.1:${OPORT[h2c]}/" 2>&1 || true)
  if ! grep -q '^Application protocol: h2c' <<<"$out" || ! grep -q '200 succeeded' <<<"$out"; then
    echo "$out" >&2; die "h2c origin: h2load did not get 200 h2c responses (nginx without http2 on cleartext?)"
  fi
  log "h2c origin verified: curl --http2-prior-knowledge and h2load (h2c, 200/200)"
fi

# Turnpikes.
listeners="[{name: plain, address: 127.0.0.1, port: 0}]"
if [[ $H2_CLIENT == tls ]]; then
  make_cert "$BENCH_TMP/cert"
  listeners="[{name: plain, address: 127.0.0.1, port: 0}, $(tls_listener tls "$BENCH_TMP/cert/cert.pem" "$BENCH_TMP/cert/key.pem")]"
fi
for u in $UPSTREAMS; do
  extra="protocol: $u"
  [[ $u == h2c ]] && extra+=$'\n'"h2_max_streams_per_connection: $H2_UP_STREAMS"
  turnpike_config "${OPORT[$u]}" "$listeners" "$extra" >"$BENCH_TMP/tp-$u.yaml"
  if try_start_turnpike "tp-$u" "$BENCH_TMP/tp-$u.yaml" plain; then
    TPID[$u]=$STARTED_PID TPORT[$u]=$STARTED_PORT
    [[ $H2_CLIENT == tls ]] && TPORT_TLS[$u]=$(ready_port "$STARTED_READY" tls)
  else
    TSKIP[$u]="Turnpike did not start with protocol: $u ($START_ERR)"
    loud "${TSKIP[$u]}"
  fi
done

# Measure hook: origin log lines and an `ss` sample of connections to the origin, per run.
CUR_UP='' CUR_KEY='' LOG_N0=0 SS_FILE=$BENCH_TMP/ss.sample
origin_window() {
  local logf="$BENCH_TMP/origin-$CUR_UP.access" port=${OPORT[$CUR_UP]}
  if [[ $1 == start ]]; then
    LOG_N0=$(wc -l <"$logf")
    rm -f "$SS_FILE"
    # mid-run sample of established connections to the origin port (Turnpike's side of them)
    ( sleep "$(awk -v d="$DUR" 'BEGIN{print d/2}')"; ss -Htn state established "( dport = :$port )" | wc -l >"$SS_FILE" ) &
    BENCH_PIDS+=("$!")
    return 0
  fi
  sleep 0.2  # let the origin finish logging the last responses
  local stats
  stats=$(tail -n +"$((LOG_N0 + 1))" "$logf" | awk '
    { n++; if (!($1 in seen)) { seen[$1]=1; conns++; if ($2 == 1) fresh++ } if ($2 > mx) mx=$2; proto[$3]++ }
    END { p=""; for (k in proto) p = p (p == "" ? "" : "+") k;
          printf "%d %d %d %s %s", conns, fresh, mx, (conns ? sprintf("%.0f", n/conns) : "-"), (p == "" ? "none" : p); print " " n }')
  local conns fresh mx per proto n
  read -r conns fresh mx per proto n <<<"$stats"
  rec_extra "$CUR_KEY" "upstream conns" "$conns"
  rec_extra "$CUR_KEY" "new upstream conns" "$fresh"
  rec_extra "$CUR_KEY" "req per upstream conn" "$per"
  rec_extra "$CUR_KEY" "origin saw" "$proto"
  rec_extra "$CUR_KEY" "ss mid-run" "$(cat "$SS_FILE" 2>/dev/null || echo '?')"
  log "origin-$CUR_UP window: $n requests on $conns connections ($fresh new), max $mx on one, protocol $proto"
  return 0
}
MEASURE_HOOK=origin_window

declare -A CLIENT_LABEL=([wrk]="HTTP/1.1 clients (wrk)" [h2load]="HTTP/2 clients (h2load, $H2_CLIENT)")
declare -A UP_LABEL=([h2c]="h2c upstream" [http1]="http1 upstream")
for c in $CLIENTS; do R_HINT["$c/h2c"]="h2c upstreams not in this Turnpike build?"; done
[[ " $CLIENTS " == *" h2load "* ]] && for u in $UPSTREAMS; do
  R_HINT["h2load/$u"]+="${R_HINT["h2load/$u"]:+; }HTTP/2 clients ($H2_CLIENT) not in this Turnpike build?"
done

warn_if_busy
for ((round = 1; round <= ROUNDS; round++)); do
  ((ROUNDS > 1)) && log "round $round of $ROUNDS"
  for c in $CLIENTS; do
    for u in $(rotated "$round" $UPSTREAMS); do
      key=$c/$u label="Turnpike, ${UP_LABEL[$u]}"
      if [[ -n ${TSKIP[$u]:-} ]]; then rec_skip "$key" "$label" "${TSKIP[$u]}"; continue; fi
      CUR_UP=$u CUR_KEY=$key ORIGIN_PID=${OPID[$u]}
      if [[ $c == wrk ]]; then
        rec_case "$key" "$label" wrk "${TPID[$u]}" "http://127.0.0.1:${TPORT[$u]}/" || true
      elif [[ $H2_CLIENT == tls ]]; then
        rec_case "$key" "$label" h2load "${TPID[$u]}" "https://127.0.0.1:${TPORT_TLS[$u]}/" || true
      else
        rec_case "$key" "$label" h2load "${TPID[$u]}" "http://127.0.0.1:${TPORT[$u]}/" || true
      fi
    done
  done
done

echo
echo "### Turnpike to an h2c upstream vs an HTTP/1.1 upstream, one worker$( ((ROUNDS > 1)) && echo ", median of $ROUNDS rounds")"
env_header
echo "- origins: nginx, 1 worker, access log on (one line per request, same on both); h2c = \`listen ... http2\` on cleartext"
echo "- Turnpike h2c upstream: h2_max_streams_per_connection $H2_UP_STREAMS; both: keepalive pool max_idle 256"
echo "- command: DUR=$DUR WARM=$WARM CONNS=$CONNS H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS H2_UP_STREAMS=$H2_UP_STREAMS H2_CLIENT=$H2_CLIENT ROUNDS=$ROUNDS bench/h2_upstream.sh"
echo "- upstream columns come from the origin's log over the measured window (warm-up excluded):"
echo "  conns = distinct connections that carried requests, new = those whose first request fell in the window,"
echo "  req per upstream conn = requests / conns; ss mid-run = established connections to the origin port"
TABLE_XTRA=("upstream conns" "new upstream conns" "req per upstream conn" "origin saw" "ss mid-run")
for c in $CLIENTS; do
  echo
  if [[ $c == wrk ]]; then echo "#### ${CLIENT_LABEL[$c]}: wrk -t1 -c$CONNS -d${DUR}s"
  else echo "#### ${CLIENT_LABEL[$c]}: h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D$DUR"; fi
  echo
  keys=(); for u in $UPSTREAMS; do keys+=("$c/$u"); done
  refs=; [[ " $UPSTREAMS " == *" http1 "* ]] && refs="$c/http1"
  print_table "$refs" "${keys[@]}"
done
if ((FAILED)); then
  loud "some cases FAILED or were SKIPPED (see status column); their numbers must not be quoted"
  exit 1
fi

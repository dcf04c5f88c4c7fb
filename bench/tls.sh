#!/usr/bin/env bash
# bench/tls.sh — TLS termination: Turnpike vs nginx vs HAProxy, HTTP/2 and HTTP/1.1 over TLS.
#
# Makes a self-signed EC P-256 certificate (temp dir), starts the fixed origin (nginx, 1 worker,
# "hello world\n", plain HTTP/1.1) and three TLS-terminating proxies, one worker/thread each, all
# on 127.0.0.1 with free ports: Turnpike (TLS listener, ALPN h2 + http/1.1), nginx (`ssl http2`,
# keepalive pool to the origin), HAProxy 2.6 (`ssl crt ... alpn h2,http/1.1`, http-reuse always).
# Then, back to back, for each proxy:
#   h2  — TLS HTTP/2: h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D$DUR (ALPN must pick h2)
#   h1  — HTTPS HTTP/1.1: wrk -t1 -c$CONNS -d$DUR --latency (no ALPN: HTTP/1.1)
# and prints per mode a Markdown table: the proxy's CPU µs per request (user+sys of the process
# tree / completed requests), ratio to nginx and to HAProxy (same run), req/s, p99 (wrk only),
# failed requests and the origin's CPU µs per request.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8 (s), WARM=1 (s), CONNS=64,
#      H2_CONNS=16, H2_STREAMS=16, MODES="h2 h1", CASES="turnpike nginx haproxy",
#      ROUNDS=1 (more: every case once per round, interleaved; tables show medians), ERR_PCT=1,
#      MAX_BUSY=10, KEEP_TMP=0.
# Exit status: 0 when every case ran and succeeded; 1 when one FAILED or was SKIPPED (e.g. a
# Turnpike build without TLS or HTTP/2: the peers are still measured and printed).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx haproxy wrk h2load curl openssl python3 awk timeout

MODES=${MODES:-h2 h1}
CASES=${CASES:-turnpike nginx haproxy}
ROUNDS=${ROUNDS:-1}
raise_nofile >/dev/null
for m in $MODES; do [[ $m == h2 || $m == h1 ]] || die "unknown mode '$m' (MODES: h2 h1)"; done
for c in $CASES; do [[ $c == turnpike || $c == nginx || $c == haproxy ]] || die "unknown case '$c'"; done
want() { [[ " $CASES " == *" $1 "* ]]; }

CERT_DIR=$BENCH_TMP/cert
make_cert "$CERT_DIR"
start_origin

declare -A PID PORT
declare -A LABEL=([turnpike]="Turnpike" [nginx]="nginx" [haproxy]="HAProxy")
declare -A MODE_LABEL=([h2]="TLS HTTP/2" [h1]="HTTPS HTTP/1.1")
TP_SKIP=
if want turnpike; then
  turnpike_config "$ORIGIN_PORT" "[$(tls_listener tls "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem")]" >"$BENCH_TMP/turnpike.yaml"
  if try_start_turnpike turnpike "$BENCH_TMP/turnpike.yaml" tls; then
    PID[turnpike]=$STARTED_PID PORT[turnpike]=$STARTED_PORT
  else
    TP_SKIP=$START_ERR
    have_turnpike && TP_SKIP="Turnpike did not start with a TLS listener — TLS termination not in this build? ($START_ERR)"
    loud "$TP_SKIP" "Turnpike rows are SKIPPED; the peers are measured anyway."
  fi
fi
if want nginx; then
  start_nginx pnginxtls "$BENCH_DIR/peers/proxy-nginx-tls.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT" \
    "CERT=$CERT_DIR/cert.pem" "KEY=$CERT_DIR/key.pem"
  PID[nginx]=$STARTED_PID PORT[nginx]=$STARTED_PORT
fi
if want haproxy; then
  start_haproxy phaproxytls "$BENCH_DIR/peers/proxy-haproxy-tls.cfg.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT" \
    "BOTH=$CERT_DIR/both.pem"
  PID[haproxy]=$STARTED_PID PORT[haproxy]=$STARTED_PORT
fi

# What each server negotiates with an h2 client (TLS version, cipher, ALPN): they should agree,
# or the comparison is not like for like.
declare -A NEGOTIATED
for c in $CASES; do
  [[ -n ${PORT[$c]:-} ]] || continue
  NEGOTIATED[$c]=$(timeout 5 openssl s_client -connect "127.0.0.1:${PORT[$c]}" -servername localhost -alpn h2,http/1.1 </dev/null 2>/dev/null |
    awk '/^New, /{v=$2; sub(",","",v); c=$NF} /^ALPN protocol:/{a=$3} END{if (v == "") print "handshake failed"; else printf "%s %s, ALPN %s", v, c, (a == "" ? "none" : a)}')
  log "${LABEL[$c]}: ${NEGOTIATED[$c]}"
done

for m in $MODES; do
  R_HINT["$m/turnpike"]=$([[ $m == h2 ]] && echo "HTTP/2 over TLS not in this Turnpike build?" || echo "TLS termination not in this Turnpike build?")
done

warn_if_busy
for ((round = 1; round <= ROUNDS; round++)); do
  ((ROUNDS > 1)) && log "round $round of $ROUNDS"
  for m in $MODES; do
    for c in $(rotated "$round" $CASES); do
      key=$m/$c label="${LABEL[$c]} (${MODE_LABEL[$m]})"
      if [[ $c == turnpike && -n $TP_SKIP ]]; then rec_skip "$key" "$label" "$TP_SKIP"; continue; fi
      url="https://127.0.0.1:${PORT[$c]}/"
      if [[ $m == h2 ]]; then rec_case "$key" "$label" h2load "${PID[$c]}" "$url" || true
      else rec_case "$key" "$label" wrk "${PID[$c]}" "$url" || true; fi
    done
  done
done

echo
echo "### TLS termination, one worker/thread per server$( ((ROUNDS > 1)) && echo ", median of $ROUNDS rounds")"
env_header
echo "- h2load: $(h2load --version 2>/dev/null | head -1); certificate: self-signed EC P-256; origin: plain HTTP/1.1 keepalive"
for c in $CASES; do [[ -n ${NEGOTIATED[$c]:-} ]] && echo "- ${LABEL[$c]} negotiates: ${NEGOTIATED[$c]}"; done
echo "- command: DUR=$DUR WARM=$WARM CONNS=$CONNS H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS ROUNDS=$ROUNDS MODES=\"$MODES\" bench/tls.sh"
refs=
want nginx && refs+="nginx "
want haproxy && refs+="haproxy "
for m in $MODES; do
  echo
  if [[ $m == h2 ]]; then echo "#### TLS HTTP/2: h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D$DUR"
  else echo "#### HTTPS HTTP/1.1: wrk -t1 -c$CONNS -d${DUR}s"; fi
  echo
  keys=() mrefs=
  for c in $CASES; do keys+=("$m/$c"); done
  for r in $refs; do mrefs+="$m/$r "; done
  print_table "$mrefs" "${keys[@]}"
done
if ((FAILED)); then
  loud "some cases FAILED or were SKIPPED (see status column); their numbers must not be quoted"
  exit 1
fi

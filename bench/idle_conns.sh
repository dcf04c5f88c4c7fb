#!/usr/bin/env bash
# bench/idle_conns.sh — RSS per idle keepalive connection: Turnpike vs nginx proxy (and HAProxy).
#
# For each proxy (one worker/thread, in front of the fixed nginx origin): warm it up with a short
# wrk run, then bench/idle_conns.py opens N connections, one request each, leaves them idle for
# SETTLE s and reads the proxy's RSS growth (VmRSS, process tree) / N.
#
# PROTO=http1 (default), h2c (HTTP/2 with prior knowledge on a cleartext port: nginx `listen ...
# http2`, HAProxy `proto h2`) or h2 (HTTP/2 over TLS with ALPN, the tls.sh peer configs).
#
# H2_CONN_WINDOW=n (HTTP/2 only): the client opens the connection window to n bytes first, as
# browsers do (0: it stays at 65,535, and the client never gives window back). H2_INDEX=1: one
# request field enters the server's HPACK decoder table, as browsers' fields do.
#
# Env: TURNPIKE_BIN, N=5000, SETTLE=6, PRE_SETTLE=5 (s after the warm-up before the first RSS read), IDLE_CASES="turnpike nginx haproxy", PROTO=http1,
# H2_CONN_WINDOW=0, H2_INDEX=0, KEEP_TMP=0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx haproxy wrk curl python3 awk
N=${N:-5000}
SETTLE=${SETTLE:-6}
PRE_SETTLE=${PRE_SETTLE:-5}
IDLE_CASES=${IDLE_CASES:-turnpike nginx haproxy}
PROTO=${PROTO:-http1}
H2_CONN_WINDOW=${H2_CONN_WINDOW:-0}
H2_INDEX=${H2_INDEX:-0}
H2_ARGS=(--h2-conn-window "$H2_CONN_WINDOW")
((H2_INDEX)) && H2_ARGS+=(--h2-index)
case $PROTO in http1 | h2c | h2) ;; *) die "PROTO must be http1, h2c or h2 (not '$PROTO')" ;; esac

nofile=$(raise_nofile)
# the client holds N fds; a proxy holds N client + up to N upstream fds
if ((nofile < 2 * N + 200)); then
  loud "open-files limit is $nofile (hard $(ulimit -Hn)); N=$N needs $((2 * N + 200))." \
       "Raise the hard limit (e.g. ulimit -Hn 65536 as root, or LimitNOFILE) or lower N."
  exit 1
fi
log "open-files limit $nofile, N=$N"

start_origin
# Peer templates for the HTTP/2 runs: the plain ones with HTTP/2 switched on, and the TLS ones
# (tls.sh's) with nginx's worker_connections raised to fit N.
NGINX_TPL=$BENCH_DIR/peers/proxy-nginx.conf.in HAPROXY_TPL=$BENCH_DIR/peers/proxy-haproxy.cfg.in TLS_ARGS=()
TP_LISTENERS="[{name: bench, address: 127.0.0.1, port: 0}]" TP_LISTENER=bench
if [[ $PROTO == h2c ]]; then
  sed 's/backlog=4096;/http2 backlog=4096;/' "$NGINX_TPL" >"$BENCH_TMP/nginx-h2c.conf.in"
  sed 's/^\(  bind .*\)$/\1 proto h2/' "$HAPROXY_TPL" >"$BENCH_TMP/haproxy-h2c.cfg.in"
  NGINX_TPL=$BENCH_TMP/nginx-h2c.conf.in HAPROXY_TPL=$BENCH_TMP/haproxy-h2c.cfg.in
elif [[ $PROTO == h2 ]]; then
  make_cert "$BENCH_TMP/cert"
  sed 's/worker_connections 4096;/worker_connections 16384;/' "$BENCH_DIR/peers/proxy-nginx-tls.conf.in" >"$BENCH_TMP/nginx-tls.conf.in"
  NGINX_TPL=$BENCH_TMP/nginx-tls.conf.in HAPROXY_TPL=$BENCH_DIR/peers/proxy-haproxy-tls.cfg.in
  TLS_ARGS=("CERT=$BENCH_TMP/cert/cert.pem" "KEY=$BENCH_TMP/cert/key.pem" "BOTH=$BENCH_TMP/cert/both.pem")
  TP_LISTENERS="[$(tls_listener tls "$BENCH_TMP/cert/cert.pem" "$BENCH_TMP/cert/key.pem")]" TP_LISTENER=tls
fi
ROWS=() FAILED=0
for c in $IDLE_CASES; do
  case $c in
    turnpike)
      if ! have_turnpike; then
        loud "Turnpike binary not found: $TURNPIKE_BIN — row SKIPPED"
        ROWS+=("| Turnpike | - | - | - | - | **SKIPPED: binary not found** |"); FAILED=1; continue
      fi
      turnpike_config "$ORIGIN_PORT" "$TP_LISTENERS" >"$BENCH_TMP/turnpike.yaml"
      start_turnpike turnpike "$BENCH_TMP/turnpike.yaml" "$TP_LISTENER"; label=Turnpike ;;
    nginx) start_nginx pnginx "$NGINX_TPL" "ORIGIN=127.0.0.1:$ORIGIN_PORT" "${TLS_ARGS[@]}"; label="nginx proxy" ;;
    haproxy) start_haproxy phaproxy "$HAPROXY_TPL" "ORIGIN=127.0.0.1:$ORIGIN_PORT" "${TLS_ARGS[@]}"; label=HAProxy ;;
    *) die "unknown case '$c'" ;;
  esac
  pid=$STARTED_PID port=$STARTED_PORT
  if [[ $PROTO == http1 ]]; then pre_ok() { precheck "http://127.0.0.1:$port/"; }
  else pre_ok() { python3 "$BENCH_DIR/idle_conns.py" "$pid" "$port" 1 --proto "$PROTO" --settle 0 >/dev/null 2>&1 || { PRECHECK_MSG="one $PROTO request failed"; return 1; }; }; fi
  pre_ok || { loud "$label: precheck failed: $PRECHECK_MSG"; ROWS+=("| $label | - | - | - | - | **FAILED precheck** |"); FAILED=1; continue; }
  # warm-up: first-use allocations, upstream pool
  if [[ $PROTO == http1 ]]; then run_wrk 1 "http://127.0.0.1:$port/" >/dev/null
  else python3 "$BENCH_DIR/idle_conns.py" "$pid" "$port" 200 --proto "$PROTO" --settle 0 >/dev/null || true; fi
  # The "before" RSS is read once the warm-up's freed memory has settled: read at once, it held
  # what the warm-up's connections had just freed (a proxy that gives memory back keeps it a few
  # seconds), which the N connections then reused, and their figure came out up to ~0.7 KiB low.
  sleep "$PRE_SETTLE"
  log "$label: opening $N idle connections"
  status=ok
  out=$(timeout -k 5 $((N / 20 + SETTLE + 120)) python3 "$BENCH_DIR/idle_conns.py" "$pid" "$port" "$N" --settle "$SETTLE" --proto "$PROTO" "${H2_ARGS[@]}") || status="**FAILED**"
  log "$label: $out"
  [[ $status == ok ]] || { FAILED=1; loud "$label: idle-connection run FAILED: ${out:-no output (timed out?)}"; }
  kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$out"; }
  ROWS+=("| $label | $(kv ok)/$N ok, $(kv closed_while_idle) closed idle, reuse $(kv reuse_sample_ok) | $(kv rss_before_kib) | $(kv rss_after_kib) | $(kv kib_per_conn) | $status |")
  # stop this proxy before the next one (frees its fds and ports)
  for p in $(tree_pids "$pid"); do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done

echo
win=""; [[ $PROTO == http1 ]] || ((H2_CONN_WINDOW <= 65535)) || win=", connection window opened to $H2_CONN_WINDOW"
[[ $PROTO == http1 ]] || ((!H2_INDEX)) || win+=", a field indexed"
echo "### RSS per idle keepalive connection, $PROTO, N=$N (one request each, then idle ${SETTLE}s$win)"
env_header
echo "- command: $([[ $PROTO == http1 ]] || echo "H2_CONN_WINDOW=$H2_CONN_WINDOW H2_INDEX=$H2_INDEX ")PROTO=$PROTO N=$N bench/idle_conns.sh"
echo
echo "| proxy | connections | RSS before KiB | RSS after KiB | KiB per idle conn | status |"
echo "|---|---|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
if ((FAILED)); then loud "some cases FAILED or were SKIPPED; their numbers must not be quoted"; exit 1; fi

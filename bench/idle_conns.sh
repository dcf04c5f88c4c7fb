#!/usr/bin/env bash
# bench/idle_conns.sh — RSS per idle keepalive connection: Turnpike vs nginx proxy (and HAProxy).
#
# For each proxy (one worker/thread, in front of the fixed nginx origin): warm it up with a short
# wrk run, then bench/idle_conns.py opens N connections, one request each, leaves them idle for
# SETTLE s and reads the proxy's RSS growth (VmRSS, process tree) / N.
#
# Env: TURNPIKE_BIN, N=5000, SETTLE=2, IDLE_CASES="turnpike nginx haproxy", KEEP_TMP=0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx haproxy wrk curl python3 awk
N=${N:-5000}
SETTLE=${SETTLE:-2}
IDLE_CASES=${IDLE_CASES:-turnpike nginx haproxy}

nofile=$(raise_nofile)
# the client holds N fds; a proxy holds N client + up to N upstream fds
if ((nofile < 2 * N + 200)); then
  loud "open-files limit is $nofile (hard $(ulimit -Hn)); N=$N needs $((2 * N + 200))." \
       "Raise the hard limit (e.g. ulimit -Hn 65536 as root, or LimitNOFILE) or lower N."
  exit 1
fi
log "open-files limit $nofile, N=$N"

start_origin
ROWS=() FAILED=0
for c in $IDLE_CASES; do
  case $c in
    turnpike)
      if ! have_turnpike; then
        loud "Turnpike binary not found: $TURNPIKE_BIN — row SKIPPED"
        ROWS+=("| Turnpike | - | - | - | - | **SKIPPED: binary not found** |"); FAILED=1; continue
      fi
      turnpike_basic_config "$ORIGIN_PORT" >"$BENCH_TMP/turnpike.yaml"
      start_turnpike turnpike "$BENCH_TMP/turnpike.yaml"; label=Turnpike ;;
    nginx) start_nginx pnginx "$BENCH_DIR/peers/proxy-nginx.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"; label="nginx proxy" ;;
    haproxy) start_haproxy phaproxy "$BENCH_DIR/peers/proxy-haproxy.cfg.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"; label=HAProxy ;;
    *) die "unknown case '$c'" ;;
  esac
  pid=$STARTED_PID port=$STARTED_PORT
  precheck "http://127.0.0.1:$port/" || { loud "$label: precheck failed: $PRECHECK_MSG"; ROWS+=("| $label | - | - | - | - | **FAILED precheck** |"); FAILED=1; continue; }
  run_wrk 1 "http://127.0.0.1:$port/" >/dev/null   # warm-up: first-use allocations, upstream pool
  log "$label: opening $N idle connections"
  status=ok
  out=$(timeout -k 5 $((N / 20 + SETTLE + 120)) python3 "$BENCH_DIR/idle_conns.py" "$pid" "$port" "$N" --settle "$SETTLE") || status="**FAILED**"
  log "$label: $out"
  [[ $status == ok ]] || { FAILED=1; loud "$label: idle-connection run FAILED: ${out:-no output (timed out?)}"; }
  kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$out"; }
  ROWS+=("| $label | $(kv ok)/$N ok, $(kv closed_while_idle) closed idle, reuse $(kv reuse_sample_ok) | $(kv rss_before_kib) | $(kv rss_after_kib) | $(kv kib_per_conn) | $status |")
  # stop this proxy before the next one (frees its fds and ports)
  for p in $(tree_pids "$pid"); do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done

echo
echo "### RSS per idle keepalive connection, N=$N (one request each, then idle ${SETTLE}s)"
env_header
echo "- command: N=$N bench/idle_conns.sh"
echo
echo "| proxy | connections | RSS before KiB | RSS after KiB | KiB per idle conn | status |"
echo "|---|---|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
if ((FAILED)); then loud "some cases FAILED or were SKIPPED; their numbers must not be quoted"; exit 1; fi

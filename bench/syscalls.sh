#!/usr/bin/env bash
# bench/syscalls.sh — system calls per proxied request: Turnpike vs nginx vs HAProxy, one run.
#
# The kernel's share is most of a proxied request's CPU on loopback (the TCP work of both
# directions), and the part a proxy controls is how many system calls it makes for it. This counts
# them with perf's syscall tracepoints on each proxy process while wrk -t1 -c$CONNS runs against
# it (one worker/thread each, the fixed nginx origin behind), and prints per request: epoll_ctl,
# epoll_wait, reads (read/readv/recvfrom/recvmsg), writes (write/writev/sendto/sendmsg),
# getsockopt/setsockopt, and their total.
#
# Needs perf (Debian: linux-perf) with access to tracepoints (root, or perf_event_paranoid <= -1).
# Env: TURNPIKE_BIN, DUR=8 (s), CONNS=64, SC_CASES="turnpike nginx haproxy", KEEP_TMP=0.
# shellcheck source-path=SCRIPTDIR source=lib.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx haproxy wrk curl perf awk
SC_CASES=${SC_CASES:-turnpike nginx haproxy}
raise_nofile >/dev/null

perf stat -e syscalls:sys_enter_epoll_ctl -- true >/dev/null 2>&1 ||
  die "perf cannot read syscall tracepoints here (run as root, or set kernel.perf_event_paranoid=-1)"

start_origin
declare -A PID PORT LABEL=([turnpike]="Turnpike" [nginx]="nginx proxy" [haproxy]="HAProxy")
for c in $SC_CASES; do
  case $c in
    turnpike)
      have_turnpike || die "Turnpike binary not found: $TURNPIKE_BIN"
      turnpike_basic_config "$ORIGIN_PORT" >"$BENCH_TMP/turnpike.yaml"
      start_turnpike turnpike "$BENCH_TMP/turnpike.yaml" ;;
    nginx) start_nginx pnginx "$BENCH_DIR/peers/proxy-nginx.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT" ;;
    haproxy) start_haproxy phaproxy "$BENCH_DIR/peers/proxy-haproxy.cfg.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT" ;;
    *) die "unknown case '$c'" ;;
  esac
  PID[$c]=$STARTED_PID PORT[$c]=$STARTED_PORT
done

EVENTS=""
for s in epoll_ctl epoll_wait epoll_pwait read readv recvfrom recvmsg write writev sendto sendmsg getsockopt setsockopt; do
  EVENTS+="${EVENTS:+,}syscalls:sys_enter_$s"
done

warn_if_busy
ROWS=()
for c in $SC_CASES; do
  url="http://127.0.0.1:${PORT[$c]}/"
  precheck "$url" || die "${LABEL[$c]}: precheck failed: $PRECHECK_MSG"
  run_wrk 1 "$url" >/dev/null  # warm: pooled upstream connections exist before counting
  log "counting ${LABEL[$c]} ($url, ${DUR}s)"
  perf stat -x, -e "$EVENTS" -p "${PID[$c]}" -o "$BENCH_TMP/perf.$c" -- sleep $((DUR + 2)) &
  perf_pid=$!
  sleep 0.5
  M_RAW=$(run_wrk "$DUR" "$url")
  wait "$perf_pid" || true
  parse_wrk
  ((M_REQS > 0)) || die "${LABEL[$c]}: wrk completed no requests"
  ROWS+=("$(awk -F, -v n="$M_REQS" -v label="${LABEL[$c]}" -v non="$M_NON2XX" '
    $1 ~ /^[0-9]+$/ {
      split($3, a, "sys_enter_"); s = a[2]; v = $1 / n
      if (s == "epoll_ctl") ctl += v
      else if (s == "epoll_wait" || s == "epoll_pwait") ew += v
      else if (s ~ /^(read|readv|recvfrom|recvmsg)$/) rd += v
      else if (s ~ /^(write|writev|sendto|sendmsg)$/) wr += v
      else so += v
      tot += v
    }
    END { printf "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %s |", label, n, ctl, ew, rd, wr, so, tot, non }' "$BENCH_TMP/perf.$c")")
done

echo "### System calls per proxied request, wrk -t1 -c$CONNS -d${DUR}s, one worker/thread per server"
env_header
echo "- counted with: perf stat -e syscalls:sys_enter_* -p PID (the proxy process only)"
echo "- command: DUR=$DUR CONNS=$CONNS bench/syscalls.sh"
echo
echo "| proxy | requests | epoll_ctl | epoll_wait | reads | writes | get/setsockopt | total per request | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"

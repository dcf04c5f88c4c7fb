#!/usr/bin/env bash
# bench/discovery.sh — what node discovery by DNS costs (issue 14, "Node discovery").
#
# A dnsmasq on 127.0.0.1 (free port) answers from a hosts file (TTL 0); one nginx origin listens
# on 127.0.0.1-3, one port. Two parts:
#   idle    — NAMES upstreams, each with its own name, looked up every second (resolve_interval
#             1s), no traffic, for IDLE_DUR s: the discovery thread's CPU ("tp-discovery") and the
#             whole process's as a share of one core, against the same config with
#             resolve_interval 0s (no re-resolution).
#   load    — wrk's keepalive GETs through Turnpike (1 worker) to an upstream of one name
#             (resolve_interval 200ms). steady: the name's addresses never change; changing: the
#             hosts file moves between {.1}, {.1,.2}, {.2,.3}, {.3,.1} every CHANGE_EVERY s during the
#             measured run (each a DNS-triggered snapshot swap). Figures: CPU per request (all
#             threads), failed requests (non-2xx + socket errors; must be 0), swaps done.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), NAMES=200, IDLE_DUR=20, DUR=10,
#      WARM=2, CONNS=64, ROUNDS=3, CHANGE_EVERY=0.5.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[[ -x $DNSMASQ ]] || die "missing dnsmasq (Debian dnsmasq-base)"
NAMES=${NAMES:-200}
ROUNDS=${ROUNDS:-3}
IDLE_DUR=${IDLE_DUR:-20}
DUR=${DUR:-10}; WARM=${WARM:-2}
CHANGE_EVERY=${CHANGE_EVERY:-0.5}
raise_nofile >/dev/null
warn_if_busy
TCK=$(getconf CLK_TCK)

# ---- the origin: one port on three loopback addresses ----
OPORT=$(free_ports 1)
start_hello_origin "127.0.0.1:$OPORT" "127.0.0.2:$OPORT" "127.0.0.3:$OPORT"

# ---- dnsmasq ----
HOSTS=$BENCH_TMP/dns-hosts
# set_hosts LINE...: rewrites the hosts file (atomically) and makes dnsmasq read it again.
set_hosts() {
  printf '%s\n' "$@" >"$HOSTS.tmp" && mv "$HOSTS.tmp" "$HOSTS"
  [[ -z ${DNS_PID:-} ]] || kill -HUP "$DNS_PID"
}
{ for ((i = 0; i < NAMES; i++)); do echo "127.0.0.1 n$i.bench.test"; done; echo "127.0.0.1 app.bench.test"; } >"$HOSTS"
DNS_PORT=$(free_ports 1)
start_bg dnsmasq "$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --user=root --pid-file="$BENCH_TMP/dnsmasq.pid" \
  --port="$DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --addn-hosts="$HOSTS" \
  --local-ttl=0 --log-facility="$BENCH_TMP/dnsmasq.log"
DNS_PID=$LAST_PID
wait_port "$DNS_PORT" "$DNS_PID" 10 || die "dnsmasq did not start"
log "origin pid $ORIGIN_PID port $OPORT; dnsmasq pid $DNS_PID port $DNS_PORT"

# write_config FILE NAMES INTERVAL: NAMES upstreams of one name each (0: one upstream "app" of
# app.bench.test), looked up every INTERVAL.
write_config() {
  python3 - "$1" "$2" "$3" "$OPORT" "$DNS_PORT" <<'PY'
import os, sys
path, names, interval, port, dns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ups = [(f"n{i}", f"n{i}.bench.test") for i in range(names)] or [("app", "app.bench.test")]
with open(path + ".tmp", "w") as f:
    f.write("workers: 1\nlog: {error_log: stderr, level: info, access_log: off}\n")
    f.write(f"resolver: {{servers: ['127.0.0.1:{dns}']}}\n")
    f.write("listeners: [{name: bench, address: 127.0.0.1, port: 0}]\n")
    f.write("limits: {max_requests_per_connection: 1000000}\n")
    f.write("upstreams:\n")
    for name, host in ups:
        f.write(f"  - name: {name}\n    resolve_interval: {interval}\n    nodes: ['{host}:{port}']\n")
        f.write("    keepalive: {max_idle: 64, idle_timeout: 55s, max_requests: 1000000}\n")
    f.write(f'routes:\n  - name: all\n    match: {{paths: ["/*"]}}\n    upstream: {ups[0][0]}\n')
os.replace(path + ".tmp", path)
PY
}

pct() { awk -v a="$1" -v b="$2" -v t="$TCK" -v s="$3" 'BEGIN{printf "%.2f", (b-a)/t*100/s}'; }

# ---- idle: NAMES names every second ----
declare -A IDLE_THR IDLE_ALL IDLE_DNS
for interval in 1s 0s; do
  cfg=$BENCH_TMP/idle-$interval.yaml
  write_config "$cfg" "$NAMES" "$interval"
  start_turnpike "tp-idle-$interval" "$cfg"
  pid=$STARTED_PID
  sleep 2
  d0=$(thread_ticks "$pid" tp-discovery); c0=$(cpu_ticks "$pid"); n0=$(cpu_ticks "$DNS_PID"); t0=$(date +%s.%N)
  sleep "$IDLE_DUR"
  d1=$(thread_ticks "$pid" tp-discovery); c1=$(cpu_ticks "$pid"); n1=$(cpu_ticks "$DNS_PID"); t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
  IDLE_THR[$interval]=$(pct "$d0" "$d1" "$secs") IDLE_ALL[$interval]=$(pct "$c0" "$c1" "$secs") IDLE_DNS[$interval]=$(pct "$n0" "$n1" "$secs")
  log "idle $NAMES names, interval $interval: discovery thread ${IDLE_THR[$interval]}%, process ${IDLE_ALL[$interval]}%, dnsmasq ${IDLE_DNS[$interval]}%"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
done

# ---- load: steady vs changing addresses ----
SETS=("127.0.0.1" "127.0.0.1 127.0.0.2" "127.0.0.2 127.0.0.3" "127.0.0.3 127.0.0.1")
# hosts_for SET: the hosts lines of app.bench.test for the addresses in SET.
hosts_for() { local a; for a in $1; do echo "$a app.bench.test"; done; }
CHANGER=
change_hook() {
  [[ $1 == start ]] || { kill "$CHANGER" 2>/dev/null || true; wait "$CHANGER" 2>/dev/null || true; return 0; }
  (
    k=1
    while :; do
      sleep "$CHANGE_EVERY"
      mapfile -t lines < <(hosts_for "${SETS[k % ${#SETS[@]}]}")
      set_hosts "${lines[@]}"
      k=$((k + 1))
    done
  ) &
  CHANGER=$!
}
declare -A CPU RPS BAD SWAPS LABEL=([steady]="steady: the name's addresses never change"
  [changing]="changing: a new address set every ${CHANGE_EVERY}s (a DNS-triggered swap each)")
CASES="steady changing"
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    mapfile -t lines < <(hosts_for "${SETS[0]}")
    set_hosts "${lines[@]}"
    cfg=$BENCH_TMP/load-$c-$r.yaml
    write_config "$cfg" 0 200ms
    start_turnpike "tp-$c-$r" "$cfg"
    pid=$STARTED_PID port=$STARTED_PORT
    precheck "http://127.0.0.1:$port/" || die "precheck: $PRECHECK_MSG"
    MEASURE_HOOK=
    [[ $c == changing ]] && MEASURE_HOOK=change_hook
    ORIGIN_PID_SAVED=$ORIGIN_PID; ORIGIN_PID=
    measure "$pid" "http://127.0.0.1:$port/"
    ORIGIN_PID=$ORIGIN_PID_SAVED
    swaps=$(grep -c "nodes changed by DNS" "$BENCH_TMP/tp-$c-$r.log" || true)
    bad=$((M_NON2XX + M_SOCKERR))
    ((M_REQS > 0)) || die "$c round $r: no requests"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS " BAD[$c]+="$bad " SWAPS[$c]+="$swaps "
    log "round $r $c: $M_CPU µs/req, $M_RPS req/s, $bad failed, $swaps swaps"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
done

echo "Idle, $NAMES names (one upstream each), no traffic, ${IDLE_DUR}s:"
echo
echo "| resolve_interval | discovery thread, % of a core | whole process, % of a core | dnsmasq, % of a core |"
echo "|---|---|---|---|"
for interval in 1s 0s; do
  echo "| $interval | ${IDLE_THR[$interval]} | ${IDLE_ALL[$interval]} | ${IDLE_DNS[$interval]} |"
done
echo
# shellcheck disable=SC2086
base=$(median ${CPU[steady]})
echo "| case | CPU µs/req (median of $ROUNDS) | vs steady | req/s | failed requests | DNS swaps per run | runs (µs/req) |"
echo "|---|---|---|---|---|---|---|"
for c in $CASES; do
  # shellcheck disable=SC2086
  m=$(median ${CPU[$c]})
  # shellcheck disable=SC2086
  echo "| ${LABEL[$c]} | $m | $(awk -v a="$m" -v b="$base" 'BEGIN{printf "%+.1f%%", (a-b)*100/b}') | $(median ${RPS[$c]}) | $(awk '{s=0; for(i=1;i<=NF;i++) s+=$i; print s}' <<<"${BAD[$c]}") | ${SWAPS[$c]}| ${CPU[$c]}|"
done

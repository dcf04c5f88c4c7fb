#!/usr/bin/env bash
# bench/proxy_protocol.sh — what the PROXY protocol costs Turnpike per connection. HAProxy in TCP
# mode stands in for the L4 balancer, in front of one Turnpike process (1 worker) with two
# listeners: "plain" (HAProxy forwards the bytes) and "pp" (HAProxy sends a PROXY v2 header first,
# `send-proxy-v2`; the listener has proxy_protocol: true). Every request is a new connection
# (wrk sends Connection: close), answered by a static route, so the difference between the two
# listeners' Turnpike CPU per request is the header's cost per connection: the peek, the parse,
# the read, the `trusted` check and the coroutine that does them. The listeners are measured in
# turn, ROUNDS times; the table shows medians. Also v1 (`send-proxy`).
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=3.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need haproxy wrk curl python3 awk
ROUNDS=${ROUNDS:-3}
raise_nofile >/dev/null
warn_if_busy

cfg=$BENCH_TMP/turnpike.yaml
cat >"$cfg" <<'YAML'
workers: 1
log: {error_log: stderr, level: warn, access_log: off}
limits: {max_connections_per_worker: 16384}
listeners:
  - {name: plain, address: 127.0.0.1, port: 0}
  - {name: pp, address: 127.0.0.1, port: 0, proxy_protocol: true, trusted: [127.0.0.1]}
routes:
  - name: hello
    match: {paths: ["/*"]}
    respond: {status: 200, headers: {content-type: text/plain}, body: "hello world\n"}
YAML
start_turnpike turnpike "$cfg" plain
TP_PID=$STARTED_PID
PLAIN=$(ready_port "$STARTED_READY" plain) PP=$(ready_port "$STARTED_READY" pp)

hap=$BENCH_TMP/haproxy.cfg.in
cat >"$hap" <<'CFG'
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend plain
    bind 127.0.0.1:@PORT@
    default_backend plain
frontend pp2
    bind 127.0.0.1:@PORT2@
    default_backend pp2
frontend pp1
    bind 127.0.0.1:@PORT1@
    default_backend pp1
backend plain
    server tp 127.0.0.1:@PLAIN@
backend pp2
    server tp 127.0.0.1:@PP@ send-proxy-v2
backend pp1
    server tp 127.0.0.1:@PP@ send-proxy
CFG
read -r PORT2 PORT1 < <(free_ports 2)
start_haproxy haproxy "$hap" "PORT2=$PORT2" "PORT1=$PORT1" "PLAIN=$PLAIN" "PP=$PP"
declare -A URL=([plain]="http://127.0.0.1:$STARTED_PORT/x" [v2]="http://127.0.0.1:$PORT2/x" [v1]="http://127.0.0.1:$PORT1/x")
for c in plain v2 v1; do
  body=$(curl -sS "${URL[$c]}") || die "precheck $c failed"
  [[ $body == "hello world" ]] || die "precheck $c: body $body"
done

CASES="plain v2 v1"
declare -A CPU RPS LABEL=([plain]="no PROXY header" [v2]="PROXY v2 (send-proxy-v2)" [v1]="PROXY v1 (send-proxy)")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    measure "$TP_PID" "${URL[$c]}" -H 'Connection: close'
    ((M_OK)) || die "$c round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS "
    log "round $r $c: $M_CPU µs/req, $M_RPS req/s"
  done
done
# shellcheck disable=SC2086
base_cpu=$(median ${CPU[plain]})
echo "| listener (new connection per request) | Turnpike CPU µs/conn (median of $ROUNDS) | over no header | req/s | runs (µs) |"
echo "|---|---|---|---|---|"
for c in $CASES; do
  # shellcheck disable=SC2086
  m=$(median ${CPU[$c]})
  # shellcheck disable=SC2086
  echo "| ${LABEL[$c]} | $m | $(awk -v a="$m" -v b="$base_cpu" 'BEGIN{printf "%+.2f", a-b}') | $(median ${RPS[$c]}) | ${CPU[$c]}|"
done

#!/usr/bin/env bash
# bench/plugins_resilience.sh — CPU per request added by circuit-breaker (closed: every request
# admitted and its outcome recorded) and traffic-split (a sticky split: Murmur3 of a header into
# 10,000 buckets), against the same route without plugins, in one Turnpike process (1 worker) in
# front of the fixed nginx origin. HTTP/1.1 keepalive, wrk -t1 -c$CONNS; the routes are measured
# in turn, ROUNDS times; the table shows medians.
#
# Cases: all (no plugins); breaker (circuit-breaker, route scope, defaults); breaker-up (scope
# upstream); split (traffic-split at 0%: the key is hashed, the request stays on the stable side);
# split-canary (at 100%: hashed, then the node tag and the x-gray header are set); both
# (traffic-split + circuit-breaker).
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=3,
#      CASES="all breaker breaker-up split split-canary both".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUNDS=${ROUNDS:-3}
raise_nofile >/dev/null
warn_if_busy

start_origin
cfg=$BENCH_TMP/turnpike.yaml
turnpike_basic_config "$ORIGIN_PORT" >"$cfg"
cat >>"$cfg" <<'YAML'
  - name: breaker
    match: {paths: ["/breaker/*"]}
    upstream: origin
    plugins:
      circuit-breaker: {}
  - name: breaker-up
    match: {paths: ["/breaker-up/*"]}
    upstream: origin
    plugins:
      circuit-breaker: {scope: upstream}
  - name: split
    match: {paths: ["/split/*"]}
    upstream: origin
    plugins:
      traffic-split: {rules: [{split: {key: {header: x-user-id}, percentage: 0}}]}
  - name: split-canary
    match: {paths: ["/split-canary/*"]}
    upstream: origin
    plugins:
      traffic-split: {rules: [{split: {key: {header: x-user-id}, percentage: 100}}]}
  - name: both
    match: {paths: ["/both/*"]}
    upstream: origin
    plugins:
      traffic-split: {rules: [{split: {key: {header: x-user-id}, percentage: 0}}]}
      circuit-breaker: {}
YAML
start_turnpike turnpike "$cfg"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT
base=http://127.0.0.1:$TP_PORT
for c in breaker split split-canary both; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'x-user-id: user-12345' "$base/$c/x")
  [[ $code == 200 ]] || die "precheck: /$c/x answered $code"
done

CASES=${CASES:-all breaker breaker-up split split-canary both}
declare -A CPU RPS LABEL=([all]="no plugins" [breaker]="circuit-breaker (closed, route scope)"
  [breaker-up]="circuit-breaker (closed, upstream scope)" [split]="traffic-split (hash, stays stable)"
  [split-canary]="traffic-split (hash, canary: tag + x-gray header)" [both]="traffic-split + circuit-breaker")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    measure "$TP_PID" "$base/$c/x" -H 'x-user-id: user-12345'
    ((M_OK)) || die "$c round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS "
    log "round $r $c: $M_CPU µs/req, $M_RPS req/s, p99 $M_P99"
  done
done
# shellcheck disable=SC2086
base_cpu=$(median ${CPU[all]})
echo "| route | CPU µs/req (median of $ROUNDS) | over no plugins | req/s | runs (µs/req) |"
echo "|---|---|---|---|---|"
for c in $CASES; do
  # shellcheck disable=SC2086
  m=$(median ${CPU[$c]})
  # shellcheck disable=SC2086
  echo "| ${LABEL[$c]} | $m | $(awk -v a="$m" -v b="$base_cpu" 'BEGIN{printf "%+.2f", a-b}') | $(median ${RPS[$c]}) | ${CPU[$c]}|"
done

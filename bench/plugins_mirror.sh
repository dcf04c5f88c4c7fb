#!/usr/bin/env bash
# bench/plugins_mirror.sh — added CPU per request (and p99) of proxy-mirror over a route without
# plugins, in one Turnpike process (1 worker) in front of the fixed nginx origin: mirroring 10%
# to a live target (a second nginx), 10% to a target that accepts and never answers (every
# copy waits out its 1 s timeout; the queue fills and drops), and 10% to a closed port. HTTP/1.1
# keepalive, wrk -t1 -c$CONNS; also the plugin with sample_ratio 0 (its phases, no copies), and
# comparison mode (compare: true, statuses and body CRC-32s) to the live target; the routes are
# measured in turn, ROUNDS times; medians.
# The CPU figure is the Turnpike process's, so it includes sending the copies.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=3,
#      CASES="all none live compare slow dead", RATIO=0.1.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUNDS=${ROUNDS:-3}
RATIO=${RATIO:-0.1}
raise_nofile >/dev/null
warn_if_busy

start_origin
# The live mirror target: the same nginx, with its own pid and error files.
sed 's/upstream\.\(pid\|err\)/mirror.\1/; s/upstream_\(body\|proxy\)/mirror_\1/' \
  "$BENCH_DIR/peers/upstream-nginx.conf.in" >"$BENCH_TMP/mirror-nginx.conf.in"
start_nginx mirror "$BENCH_TMP/mirror-nginx.conf.in"
LIVE_PORT=$STARTED_PORT
# The slow target: accepts, reads, never answers.
SLOW_PORT=$(free_ports 1)
start_bg slow python3 -c '
import asyncio, sys
async def hold(r, w):
    while await r.read(65536):
        pass
async def main():
    s = await asyncio.start_server(hold, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await s.serve_forever()
asyncio.run(main())' "$SLOW_PORT"
wait_port "$SLOW_PORT" "$LAST_PID" || die "the slow target did not start"
DEAD_PORT=$(free_ports 1)  # nothing listens there

cfg=$BENCH_TMP/turnpike.yaml
turnpike_basic_config "$ORIGIN_PORT" >"$cfg"
mirror_route() {
  printf '  - name: %s\n    match: {paths: ["/%s/*"]}\n    upstream: origin\n' "$1" "$1"
  printf '    plugins:\n      proxy-mirror: {uri: "http://127.0.0.1:%s", sample_ratio: %s, timeout: 1%s}\n' "$2" "${3:-$RATIO}" "${4:-}"
}
{
  mirror_route none "$LIVE_PORT" 0
  mirror_route live "$LIVE_PORT"
  mirror_route compare "$LIVE_PORT" "$RATIO" ", compare: true"
  mirror_route slow "$SLOW_PORT"
  mirror_route dead "$DEAD_PORT"
} >>"$cfg"
start_turnpike turnpike "$cfg"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT
base=http://127.0.0.1:$TP_PORT
code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/live/x")
[[ $code == 200 ]] || die "precheck: /live/x answered $code"

CASES=${CASES:-all none live compare slow dead}
declare -A CPU RPS P99 LABEL=([all]="no plugins" [none]="proxy-mirror, sample_ratio 0 (the plugin, no copies)"
  [live]="proxy-mirror $RATIO → live nginx" [compare]="proxy-mirror $RATIO → live nginx, compare (status + body CRC-32)"
  [slow]="proxy-mirror $RATIO → target that never answers" [dead]="proxy-mirror $RATIO → closed port")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    measure "$TP_PID" "$base/$c/x"
    ((M_OK)) || die "$c round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS " P99[$c]+="$M_P99 "
    log "round $r $c: $M_CPU µs/req, $M_RPS req/s, p99 $M_P99"
  done
done
# shellcheck disable=SC2086
base_cpu=$(median ${CPU[all]})
echo "| route | CPU µs/req (median of $ROUNDS) | over no plugins | req/s | p99 (runs) | runs (µs/req) |"
echo "|---|---|---|---|---|---|"
for c in $CASES; do
  # shellcheck disable=SC2086
  m=$(median ${CPU[$c]})
  # shellcheck disable=SC2086
  echo "| ${LABEL[$c]} | $m | $(awk -v a="$m" -v b="$base_cpu" 'BEGIN{printf "%+.2f", a-b}') | $(median ${RPS[$c]}) | ${P99[$c]}| ${CPU[$c]}|"
done
echo "Turnpike RSS after the runs: $(awk '/VmRSS/{print $2, $3}' /proc/"$TP_PID"/status)"

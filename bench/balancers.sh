#!/usr/bin/env bash
# bench/balancers.sh — CPU per request of each balancer (round_robin, least_request, ewma,
# consistent_hash, random) with 10 and with 2,000 nodes, against round-robin over the same nodes.
# One Turnpike process (1 worker) with one upstream and route per case; every node is a port of
# the one fixed nginx origin (it listens on as many ports as the largest upstream has nodes), so
# the nodes differ only in the balancer's choice. consistent_hash hashes an X-User header that
# wrk changes on every request (bench/balancers.lua), so its keys cover every node.
# HTTP/1.1 keepalive, wrk -t1 -c$CONNS; cases measured in turn, ROUNDS times; medians.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=3,
#      SIZES="10 2000", ALGOS="round_robin least_request ewma consistent_hash random".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-10 2000}
ALGOS=${ALGOS:-round_robin least_request ewma consistent_hash random}
raise_nofile >/dev/null
warn_if_busy

max_nodes=0
for n in $SIZES; do ((n > max_nodes)) && max_nodes=$n; done
start_origin
# The origin listens on max_nodes ports: its own and max_nodes - 1 more.
# shellcheck disable=SC2207
extra_ports=($(free_ports $((max_nodes - 1))))
ports=("$ORIGIN_PORT" "${extra_ports[@]}")
kill "$ORIGIN_PID"; wait "$ORIGIN_PID" 2>/dev/null || true
listen_lines=$(printf '    listen 127.0.0.1:%s;\\n' "${extra_ports[@]}")
render "$BENCH_DIR/peers/upstream-nginx.conf.in" "$BENCH_TMP/origin-many.conf" "PORT=$ORIGIN_PORT"
sed -i "s|^\(    listen 127.0.0.1:$ORIGIN_PORT .*\)$|\1\n${listen_lines%\\n}|" "$BENCH_TMP/origin-many.conf"
start_bg origin-many nginx -p "$BENCH_TMP" -e "$BENCH_TMP/origin-many.err" -c "$BENCH_TMP/origin-many.conf"
ORIGIN_PID=$LAST_PID
wait_port "${ports[-1]}" "$ORIGIN_PID" || die "the origin did not listen on its $max_nodes ports"
log "origin: pid $ORIGIN_PID on $max_nodes ports"

cfg=$BENCH_TMP/turnpike.yaml
python3 - "$cfg" "$SIZES" "$ALGOS" "${ports[@]}" <<'PY'
import sys
out, sizes, algos, ports = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4:]
lines = ["workers: 1", "log: {error_log: stderr, level: warn, access_log: off}",
         "listeners: [{name: bench, address: 127.0.0.1, port: 0}]",
         "limits: {max_requests_per_connection: 1000000, max_connections_per_worker: 16384}", "upstreams:"]
routes = ["routes:"]
for n in sizes:
    for a in algos:
        name = f"{a}-{n}"
        lines.append(f"  - name: {name}")
        lines.append(f"    balancer: {a}")
        if a == "consistent_hash":
            lines.append("    hash_key: header:X-User")
        # Short idle timeout: a case's parked connections are gone before the next case runs.
        lines.append("    keepalive: {max_idle: 256, idle_timeout: 3s, max_requests: 1000000}")
        lines.append("    nodes: [" + ", ".join(f'"127.0.0.1:{p}"' for p in ports[:int(n)]) + "]")
        routes.append(f"  - name: {name}\n    match: {{paths: [\"/{name}/*\"]}}\n    upstream: {name}")
open(out, "w").write("\n".join(lines + routes) + "\n")
PY
cat >"$BENCH_TMP/balancers.lua" <<'LUA'
-- A different X-User on every request, so consistent_hash spreads its keys over every node.
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, { ["X-User"] = "user-" .. n })
end
LUA
start_turnpike turnpike "$cfg"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT
base=http://127.0.0.1:$TP_PORT
for n in $SIZES; do
  for a in $ALGOS; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'X-User: u1' "$base/$a-$n/x")
    [[ $code == 200 ]] || die "precheck: /$a-$n/x answered $code"
  done
done

declare -A CPU RPS
for ((r = 1; r <= ROUNDS; r++)); do
  for n in $SIZES; do
    for a in $ALGOS; do
      sleep 4  # the previous case's parked connections time out (idle_timeout 3s)
      measure "$TP_PID" "$base/$a-$n/x" -s "$BENCH_TMP/balancers.lua"
      ((M_OK)) || die "$a-$n round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
      CPU[$a-$n]+="$M_CPU " RPS[$a-$n]+="$M_RPS "
      log "round $r $a-$n: $M_CPU µs/req, $M_RPS req/s, p99 $M_P99"
    done
  done
done
echo "| nodes | balancer | CPU µs/req (median of $ROUNDS) | over round_robin | req/s | runs (µs/req) |"
echo "|---|---|---|---|---|---|"
for n in $SIZES; do
  # shellcheck disable=SC2086
  rr=$(median ${CPU[round_robin-$n]:-})
  for a in $ALGOS; do
    # shellcheck disable=SC2086
    m=$(median ${CPU[$a-$n]})
    # shellcheck disable=SC2086
    echo "| $n | $a | $m | $(awk -v a="$m" -v b="$rr" 'BEGIN{if (b == "-") print "-"; else printf "%+.2f", a-b}') | $(median ${RPS[$a-$n]}) | ${CPU[$a-$n]}|"
  done
done

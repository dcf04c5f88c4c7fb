#!/usr/bin/env bash
# bench/plugins_traffic.sh — CPU per request of a route with key-auth + ip-restriction (a
# whitelist of 10,000 CIDRs) + request-id, against the same route without plugins, in one
# Turnpike process (1 worker) in front of the fixed nginx origin. HTTP/1.1 keepalive, wrk -t1
# -c$CONNS; the routes are measured in turn, ROUNDS times; the table shows medians. Also each
# plugin alone, and ip-restriction with 10 against 10,000 CIDRs (its lookup should not care).
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=3,
#      CASES="all plugins key rid ip10 ip10k".
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
python3 - "$cfg" <<'PY'
import sys
cidrs = []
for i in range(10_000):  # none of them holds 127.0.0.1; four prefix lengths, IPv4 and IPv6
    a, b = divmod(i, 250)
    cidrs.append([f"10.{a % 250}.{b}.0/24", f"172.{16 + a % 16}.{b}.{i % 200}",
                  f"2001:db8:{i:x}::/48", f"192.{a % 250}.{b}.128/25"][i % 4])
def ip(n):
    return "ip-restriction:\n        whitelist:\n" + "".join(
        f'          - "{c}"\n' for c in cidrs[:n] + ["127.0.0.0/8"])
routes = {
    "plugins": "key-auth: {}\n      request-id: {}\n      " + ip(10_000),
    "key": "key-auth: {}\n",
    "rid": "request-id: {}\n",
    "ip10": ip(10),
    "ip10k": ip(10_000),
}
with open(sys.argv[1], "a") as f:
    for name, plugins in routes.items():
        f.write(f"  - name: {name}\n    match: {{paths: [\"/{name}/*\"]}}\n    upstream: origin\n")
        f.write(f"    plugins:\n      {plugins}")
    f.write("consumers:\n  - username: alice\n    plugins:\n      key-auth: {key: k-alice}\n")
PY
start_turnpike turnpike "$cfg"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT
base=http://127.0.0.1:$TP_PORT
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'apikey: k-alice' "$base/plugins/x")
[[ $code == 200 ]] || die "precheck: /plugins/x answered $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/plugins/x")
[[ $code == 401 ]] || die "precheck: /plugins/x without a key answered $code, expected 401"

CASES=${CASES:-all plugins key rid ip10 ip10k}
declare -A CPU RPS LABEL=([all]="no plugins" [plugins]="key-auth + ip-restriction (10,000 CIDRs) + request-id"
  [key]="key-auth" [rid]="request-id" [ip10]="ip-restriction (10 CIDRs)" [ip10k]="ip-restriction (10,000 CIDRs)")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    measure "$TP_PID" "$base/$c/x" -H 'apikey: k-alice'
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

#!/usr/bin/env bash
# bench/routes.sh — Turnpike's per-request CPU with 1 route vs 10,000 routes.
#
# Generates two configs with bench/gen_routes.py (1 route; N routes with varied hosts/paths —
# exact, prefix, {param} patterns, wildcard hosts — where the benchmarked request matches a route
# deep in the list), starts both Turnpikes against the fixed nginx origin, checks that the request
# really hits the intended route (x-route: target), then measures each with the wrk method of
# run.sh in ABBA order (ROUNDS rounds) and prints CPU µs/req for both and the % difference.
#
# Env: TURNPIKE_BIN, DUR=8, WARM=1, CONNS=64, ROUTES=10000, ROUNDS=2, ERR_PCT=1, KEEP_TMP=0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUTES=${ROUTES:-10000}
ROUNDS=${ROUNDS:-2}
HOST=api.bench.example.com
REQ_PATH=/v2/accounts/12345/orders/67890
have_turnpike || die "Turnpike binary not found at $TURNPIKE_BIN (set TURNPIKE_BIN or build it)"

warn_if_busy
start_origin
python3 "$BENCH_DIR/gen_routes.py" "$ORIGIN_PORT" 1 >"$BENCH_TMP/routes-1.yaml"
python3 "$BENCH_DIR/gen_routes.py" "$ORIGIN_PORT" "$ROUTES" >"$BENCH_TMP/routes-n.yaml"
log "configs: 1 route ($(wc -c <"$BENCH_TMP/routes-1.yaml") B), $ROUTES routes ($(wc -c <"$BENCH_TMP/routes-n.yaml") B)"

declare -A PID PORT READY
for k in 1 n; do
  start_turnpike "turnpike-$k" "$BENCH_TMP/routes-$k.yaml"
  PID[$k]=$STARTED_PID PORT[$k]=$STARTED_PORT READY[$k]=$STARTED_SECS
done

for k in 1 n; do
  url="http://127.0.0.1:${PORT[$k]}$REQ_PATH"
  precheck "$url" -H "Host: $HOST" || die "routes-$k: precheck failed: $PRECHECK_MSG"
  hdr=$(curl -sS -m 5 -o /dev/null -D - -H "Host: $HOST" "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-route"{print $2}')
  [[ $hdr == target ]] || die "routes-$k: request did not hit the target route (x-route: '${hdr}')"
  # A request for another host must not match the target (proves routing is really consulted).
  code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Host: nomatch.example" "$url" || true)
  [[ $code == 404 ]] || log "routes-$k: warning: unmatched host gave HTTP $code (expected 404)"
done

declare -A SUM CNT
FAILED=0 DETAIL=()
one() {
  local k=$1 label; [[ $k == 1 ]] && label="1 route" || label="$ROUTES routes"
  log "measuring $label"
  ORIGIN_PID='' measure "${PID[$k]}" "http://127.0.0.1:${PORT[$k]}$REQ_PATH" -H "Host: $HOST"
  DETAIL+=("| $label | $M_CPU | $M_RPS | $M_P99 | $M_NON2XX (+$M_SOCKERR socket) | $([[ $M_OK == 1 ]] && echo ok || echo '**FAILED**') |")
  if ((!M_OK)); then
    FAILED=1; loud "$label: $M_NON2XX non-2xx + $M_SOCKERR socket errors of $M_REQS requests — NOT valid" "$(head -c 2000 <<<"$M_RAW")"
    return
  fi
  SUM[$k]=$(awk -v a="${SUM[$k]:-0}" -v b="$M_CPU" 'BEGIN{print a+b}'); CNT[$k]=$((${CNT[$k]:-0} + 1))
}
for ((r = 0; r < ROUNDS; r++)); do
  if ((r % 2 == 0)); then one 1; one n; else one n; one 1; fi
done

echo
echo "### Routes: 1 vs $ROUTES, wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS round(s) ABBA"
env_header
echo "- command: DUR=$DUR ROUTES=$ROUTES ROUNDS=$ROUNDS bench/routes.sh"
echo "- request: GET $REQ_PATH, Host: $HOST → route \"target\" at index $(( ROUTES * 94 / 100 )) of $ROUTES"
echo
echo "| config | CPU µs/req | req/s | p99 | non-2xx | status |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${DETAIL[@]}"
echo
for k in 1 n; do
  rss=$(rss_kib "${PID[$k]}")
  echo "- $([[ $k == 1 ]] && echo "1 route" || echo "$ROUTES routes"): time to ready ${READY[$k]} s, RSS after the runs $((rss / 1024)) MiB"
done
if ((FAILED)) || [[ -z ${CNT[1]:-} || -z ${CNT[n]:-} ]]; then
  loud "some runs FAILED; no comparison printed"
  exit 1
fi
m1=$(awk -v s="${SUM[1]}" -v c="${CNT[1]}" 'BEGIN{printf "%.2f", s/c}')
mn=$(awk -v s="${SUM[n]}" -v c="${CNT[n]}" 'BEGIN{printf "%.2f", s/c}')
echo
echo "**Mean CPU µs/req: 1 route $m1, $ROUTES routes $mn, difference $(awk -v a="$m1" -v b="$mn" 'BEGIN{printf "%+.1f%%", (b-a)/a*100}')**"

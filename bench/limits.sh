#!/usr/bin/env bash
# bench/limits.sh — what the rate-limit plugins cost. In one run, paired rounds:
#   * key-auth + limit-count in Turnpike (bundled plugins, 1 worker) against the same chain in
#     nginx + its Lua module (bench/peers/proxy-openresty-limit.conf.in: key-auth from a Lua
#     table, a fixed window per consumer in a shared dict, the X-RateLimit headers), with the
#     ratio of CPU per request (target <= 0.85);
#   * limit-count and limit-req alone on a Turnpike route, against the same route without plugins
#     (the added CPU per request).
# The limits are high enough that nothing is rejected or delayed: this is the cost of counting.
# HTTP/1.1 keepalive, wrk -t1 -c$CONNS; cases rotate from round to round (lib.sh rotated).
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=5,
#      CASES="none count count-nohdr count-sliding req auth auth-count lua".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUNDS=${ROUNDS:-5}
CASES=${CASES:-none count count-nohdr count-sliding req auth auth-count lua}
LUA_MOD=/usr/lib/nginx/modules/ngx_http_lua_module.so
raise_nofile >/dev/null
warn_if_busy
[[ -f $LUA_MOD ]] || die "nginx lua module missing ($LUA_MOD): apt-get install -y libnginx-mod-http-lua"

start_origin
cfg=$BENCH_TMP/turnpike.yaml
turnpike_config "$ORIGIN_PORT" "[{name: bench, address: 127.0.0.1, port: 0}]" | sed '/^routes:/,$d' >"$cfg"
cat >>"$cfg" <<'YAML'
routes:
  - name: none
    match: {paths: ["/none/*"]}
    upstream: origin
  - name: count
    match: {paths: ["/count/*"]}
    upstream: origin
    plugins:
      limit-count: {count: 100000000, time_window: 60}
  - name: count-nohdr
    match: {paths: ["/count-nohdr/*"]}
    upstream: origin
    plugins:
      limit-count: {count: 100000000, time_window: 60, show_headers: false}
  - name: count-sliding
    match: {paths: ["/count-sliding/*"]}
    upstream: origin
    plugins:
      limit-count: {count: 100000000, time_window: 60, window: sliding}
  - name: req
    match: {paths: ["/req/*"]}
    upstream: origin
    plugins:
      limit-req: {rate: 100000000, burst: 100000000}
  - name: auth
    match: {paths: ["/auth/*"]}
    upstream: origin
    plugins:
      key-auth: {header: apikey}
  - name: auth-count
    match: {paths: ["/auth-count/*"]}
    upstream: origin
    plugins:
      key-auth: {header: apikey}
      limit-count: {count: 100000000, time_window: 60, key: [consumer]}
consumers:
  - username: bench
    plugins:
      key-auth: {key: secret-key-1}
YAML
start_turnpike turnpike "$cfg"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT
start_nginx plimit "$BENCH_DIR/peers/proxy-openresty-limit.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"
LUA_PID=$STARTED_PID LUA_PORT=$STARTED_PORT

# Prechecks: both chains answer 200 with the key and the headers, 401 without.
for url in "http://127.0.0.1:$TP_PORT/auth-count/x" "http://127.0.0.1:$LUA_PORT/x"; do
  head=$(curl -sS -D - -o /dev/null -H 'apikey: secret-key-1' "$url")
  grep -q '^HTTP/1.1 200' <<<"$head" || die "precheck: $url answered: $head"
  grep -qi '^x-ratelimit-remaining:' <<<"$head" || die "precheck: $url has no X-RateLimit-Remaining: $head"
  code=$(curl -sS -o /dev/null -w '%{http_code}' "$url")
  [[ $code == 401 ]] || die "precheck: $url without a key answered $code, expected 401"
done

declare -A CPU RPS LABEL=([none]="Turnpike, no plugins" [count]="Turnpike limit-count (fixed)"
  [count-nohdr]="Turnpike limit-count (fixed, show_headers: false)"
  [count-sliding]="Turnpike limit-count (sliding)" [req]="Turnpike limit-req"
  [auth]="Turnpike key-auth" [auth-count]="Turnpike key-auth + limit-count" [lua]="nginx+lua key-auth + shared-dict window")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $(rotated "$r" $CASES); do
    if [[ $c == lua ]]; then
      measure "$LUA_PID" "http://127.0.0.1:$LUA_PORT/x" -H 'apikey: secret-key-1'
    else
      measure "$TP_PID" "http://127.0.0.1:$TP_PORT/$c/x" -H 'apikey: secret-key-1'
    fi
    ((M_OK)) || die "$c round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS "
    log "round $r $c: $M_CPU µs/req, $M_RPS req/s, p99 $M_P99"
  done
done

echo
echo "### Rate-limit plugins: wrk -t1 -c${CONNS} -d${DUR}s, one worker per server, median of $ROUNDS rounds"
env_header
echo "- command: DUR=$DUR WARM=$WARM CONNS=$CONNS ROUNDS=$ROUNDS CASES=\"$CASES\" bench/limits.sh"
echo
# shellcheck disable=SC2086
base_cpu=$(median ${CPU[none]:-})
echo "| case | CPU µs/req | over no plugins | req/s | runs (µs/req) |"
echo "|---|---:|---:|---:|---|"
for c in $CASES; do
  # shellcheck disable=SC2086
  m=$(median ${CPU[$c]})
  over=-
  [[ $c != lua && $base_cpu != - ]] && over=$(awk -v a="$m" -v b="$base_cpu" 'BEGIN{printf "%+.2f", a-b}')
  # shellcheck disable=SC2086
  echo "| ${LABEL[$c]} | $m | $over | $(median ${RPS[$c]} | awk '{printf "%.0f", $1}') | ${CPU[$c]}|"
done
if [[ -n ${CPU[auth-count]:-} && -n ${CPU[lua]:-} ]]; then
  pr=$(paired_ratios "${CPU[auth-count]}" "${CPU[lua]}")
  print_paired "- Turnpike key-auth + limit-count / nginx+lua key-auth + shared-dict window: $pr (target <= 0.85)"$'\n'
fi

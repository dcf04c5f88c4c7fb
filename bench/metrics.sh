#!/usr/bin/env bash
# bench/metrics.sh — what metrics cost (issue 15):
#   1. CPU per request with metrics recording on (an `admin:` section) vs off (none), one route,
#      two Turnpike processes (1 worker each) in front of the fixed nginx origin, measured in
#      turn, ROUNDS times; medians.
#   2. With 4,000 routes × 50 upstreams, every route having served traffic (so every series
#      exists): the time of a /metrics scrape (curl, SCRAPES of them; median and max) and its
#      size; then the request p99 of a wrk run without scrapes and of one with a scrape every
#      SCRAPE_EVERY seconds running beside it, paired, ROUNDS times.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8, WARM=1, CONNS=64, ROUNDS=3,
#      SCRAPES=20, SCRAPE_EVERY=0.25, PARTS="cpu scrape".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUNDS=${ROUNDS:-3}
SCRAPES=${SCRAPES:-20}
SCRAPE_EVERY=${SCRAPE_EVERY:-0.25}
raise_nofile >/dev/null
warn_if_busy

start_origin

# admin_port READY_FILE: the admin listener's port from the ready file.
admin_port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"].rsplit(":",1)[1])' "$1"; }

PARTS=${PARTS:-cpu scrape}
# ---- 1. CPU per request, metrics on vs off ----
if [[ " $PARTS " == *" cpu "* ]]; then
off=$BENCH_TMP/off.yaml on=$BENCH_TMP/on.yaml
turnpike_basic_config "$ORIGIN_PORT" >"$off"
{ cat "$off"; echo "admin: {listen: 127.0.0.1:0}"; } >"$on"
start_turnpike tp-off "$off"
OFF_PID=$STARTED_PID OFF_PORT=$STARTED_PORT
start_turnpike tp-on "$on"
ON_PID=$STARTED_PID ON_PORT=$STARTED_PORT ON_ADMIN=$(admin_port "$STARTED_READY")
declare -A CPU P99
for ((r = 1; r <= ROUNDS; r++)); do
  for c in off on; do
    if [[ $c == off ]]; then pid=$OFF_PID port=$OFF_PORT; else pid=$ON_PID port=$ON_PORT; fi
    measure "$pid" "http://127.0.0.1:$port/x"
    ((M_OK)) || die "$c round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
    CPU[$c]+="$M_CPU " P99[$c]+="$M_P99_MS "
    log "round $r metrics $c: $M_CPU µs/req, $M_RPS req/s, p99 $M_P99"
  done
done
count=$(curl -sS "http://127.0.0.1:$ON_ADMIN/metrics" | awk '/^turnpike_http_requests_total\{route="all"/{s+=$2} END{print s+0}')
log "metrics-on process counted $count requests on route all"
((count > 0)) || die "the metrics-on process counted no requests"
# shellcheck disable=SC2086
off_cpu=$(median ${CPU[off]}) on_cpu=$(median ${CPU[on]})
echo "### CPU per request, metrics off vs on (1 worker, wrk -c$CONNS, ${DUR}s × $ROUNDS rounds, medians)"
echo
echo "| case | CPU µs/req | p99 ms | runs (µs/req) |"
echo "|---|---|---|---|"
# shellcheck disable=SC2086
echo "| metrics off (no admin:) | $off_cpu | $(median ${P99[off]}) | ${CPU[off]}|"
# shellcheck disable=SC2086
echo "| metrics on | $on_cpu | $(median ${P99[on]}) | ${CPU[on]}|"
echo
echo "on/off: $(awk -v a="$on_cpu" -v b="$off_cpu" 'BEGIN{printf "%+.1f%%", (a/b-1)*100}')"
echo
bench_stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; }
bench_stop_pid "$OFF_PID"; bench_stop_pid "$ON_PID"
fi
[[ " $PARTS " == *" scrape "* ]] || exit 0

# ---- 2. 4,000 routes × 50 upstreams ----
big=$BENCH_TMP/big.yaml
python3 - "$big" "$ORIGIN_PORT" <<'PY'
import sys
path, port = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    f.write("workers: 1\nlog: {error_log: stderr, level: warn, access_log: off}\n")
    f.write("listeners: [{name: bench, address: 127.0.0.1, port: 0}]\n")
    f.write("limits: {max_requests_per_connection: 1000000, max_connections_per_worker: 16384}\n")
    f.write("admin: {listen: 127.0.0.1:0}\nupstreams:\n")
    for u in range(50):
        f.write(f"  - name: u{u}\n    nodes: [\"127.0.0.1:{port}\"]\n    keepalive: {{max_idle: 64}}\n")
    f.write("routes:\n")
    for r in range(4000):
        f.write(f"  - name: r{r}\n    match: {{paths: [\"/r{r}/*\"]}}\n    upstream: u{r % 50}\n")
PY
start_turnpike tp-big "$big"
BIG_PID=$STARTED_PID BIG_PORT=$STARTED_PORT BIG_ADMIN=$(admin_port "$STARTED_READY")
# Every route serves a few requests (GET and POST, so two method classes per route).
python3 - "$BIG_PORT" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for r in range(4000):
    for method in ("GET", "POST"):
        c.request(method, f"/r{r}/x", body=b"x" if method == "POST" else None)
        resp = c.getresponse(); resp.read()
        assert resp.status == 200, (r, resp.status)
PY
series=$(curl -sS "http://127.0.0.1:$BIG_ADMIN/metrics" | grep -vc '^#')
bytes=$(curl -sS -o /dev/null -w '%{size_download}' "http://127.0.0.1:$BIG_ADMIN/metrics")
times=()
tck=$(getconf CLK_TCK)
s0=$(cpu_ticks "$BIG_PID")
for ((i = 0; i < SCRAPES; i++)); do
  times+=("$(curl -sS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$BIG_ADMIN/metrics" | awk '{printf "%.1f", $1*1000}')")
done
s1=$(cpu_ticks "$BIG_PID")
scrape_cpu=$(awk -v a="$s0" -v b="$s1" -v t="$tck" -v n="$SCRAPES" 'BEGIN{printf "%.1f", (b-a)/t*1000/n}')
scrape_med=$(median "${times[@]}")
scrape_max=$(printf '%s\n' "${times[@]}" | sort -g | tail -1)
log "scrape: median $scrape_med ms, max $scrape_max ms, $series samples, $bytes bytes"

scraper() {  # scrapes every SCRAPE_EVERY s until killed
  while :; do curl -sS -o /dev/null "http://127.0.0.1:$BIG_ADMIN/metrics" || true; sleep "$SCRAPE_EVERY"; done
}
declare -A BP
for ((r = 1; r <= ROUNDS; r++)); do
  measure "$BIG_PID" "http://127.0.0.1:$BIG_PORT/r3999/x"
  ((M_OK)) || die "no-scrape round $r failed"
  BP[quiet]+="$M_P99_MS "
  log "round $r without scrapes: p99 $M_P99, $M_RPS req/s"
  scraper & SPID=$!
  BENCH_PIDS+=("$SPID")
  measure "$BIG_PID" "http://127.0.0.1:$BIG_PORT/r3999/x"
  kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true
  ((M_OK)) || die "scrape round $r failed"
  BP[scraping]+="$M_P99_MS "
  log "round $r with a scrape every ${SCRAPE_EVERY}s: p99 $M_P99, $M_RPS req/s"
done
echo "### /metrics with 4,000 routes × 50 upstreams (every route served GET and POST)"
echo
echo "| figure | value |"
echo "|---|---|"
echo "| scrape time, median of $SCRAPES (curl time_total) | $scrape_med ms |"
echo "| scrape time, max | $scrape_max ms |"
echo "| Turnpike CPU per scrape (user+sys, no traffic) | $scrape_cpu ms |"
echo "| samples / bytes per scrape | $series / $bytes |"
# shellcheck disable=SC2086
echo "| request p99 without scrapes (median of $ROUNDS) | $(median ${BP[quiet]}) ms (runs: ${BP[quiet]}) |"
# shellcheck disable=SC2086
echo "| request p99 with a scrape every ${SCRAPE_EVERY}s | $(median ${BP[scraping]}) ms (runs: ${BP[scraping]}) |"

#!/usr/bin/env bash
# bench/plugin_rss.sh — what the Lua plugin runtime costs in memory: Turnpike's RSS (one worker)
# at start and after N requests, with no plugin and with the turnpike-lua chain of bench/run.sh
# (bundled key-auth + a user plugin's shared-dict counter), in one run on the same origin.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), N=1000000 requests (h2load --h1,
#      64 connections), KEEP_TMP=0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need h2load curl python3
N=${N:-1000000}
raise_nofile >/dev/null
have_turnpike || die "Turnpike binary not found: $TURNPIKE_BIN"
start_origin

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

turnpike_basic_config "$ORIGIN_PORT" >"$BENCH_TMP/plain.yaml"
turnpike_lua_config "$ORIGIN_PORT" >"$BENCH_TMP/lua.yaml"

echo
echo "### RSS of one Turnpike worker with and without Lua plugins, $N requests (h2load --h1 -c64)"
env_header
echo "- command: N=$N bench/plugin_rss.sh"
echo
echo "| config | RSS at start KiB | RSS after $N requests KiB | requests ok |"
echo "|---|---:|---:|---|"
for name in plain lua; do
  start_turnpike "tp$name" "$BENCH_TMP/$name.yaml"
  pid=$STARTED_PID port=$STARTED_PORT
  sleep 1
  start_rss=$(rss_kib "$pid")
  out=$(h2load --h1 -n "$N" -c 64 -m 1 -H 'apikey: secret-key-1' "http://127.0.0.1:$port/" 2>&1 || true)
  ok=$(awk '/^status codes:/ {print $3}' <<<"$out")
  sleep 1
  echo "| $([[ $name == lua ]] && echo 'key-auth + fixed-window (Lua)' || echo 'no plugins') | $start_rss | $(rss_kib "$pid") | ${ok:-?} 2xx of $N |"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

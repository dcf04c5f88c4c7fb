#!/usr/bin/env bash
# bench/spike_rss.sh — Turnpike's RSS after connection spikes (is the memory given back?).
#
# Turnpike (one worker, in front of the fixed nginx origin); bench/spike_rss.py warms it up, reads
# the pre-spike RSS, then SPIKES times opens CONNS connections with one request in flight on each,
# closes them, and reads the RSS SETTLE s later. The upstream keepalive idle timeout of the bench
# config (55 s) is below SETTLE, so the pool's idle upstream connections are gone by then too.
#
# Env: TURNPIKE_BIN, CONNS=3000, SPIKES=3, SETTLE=60, KEEP_TMP=0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx curl python3
CONNS=${CONNS:-3000}
SPIKES=${SPIKES:-3}
SETTLE=${SETTLE:-60}

nofile=$(raise_nofile)
if ((nofile < 2 * CONNS + 200)); then
  loud "open-files limit is $nofile; CONNS=$CONNS needs $((2 * CONNS + 200))."
  exit 1
fi
have_turnpike || die "Turnpike binary not found: $TURNPIKE_BIN"
start_origin
turnpike_basic_config "$ORIGIN_PORT" >"$BENCH_TMP/turnpike.yaml"
start_turnpike turnpike "$BENCH_TMP/turnpike.yaml"
pid=$STARTED_PID port=$STARTED_PORT
precheck "http://127.0.0.1:$port/" || die "precheck failed: $PRECHECK_MSG"
log "spikes of $CONNS connections, RSS read ${SETTLE}s after each"
out=$(timeout -k 5 $((SPIKES * (SETTLE + 120) + 60)) python3 "$BENCH_DIR/spike_rss.py" "$pid" "$port" \
        --conns "$CONNS" --spikes "$SPIKES" --settle "$SETTLE") || { log "$out"; die "spike run FAILED"; }
log "$out"
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
base=$(kv pre_spike_rss_kib "$(head -1 <<<"$out")")

echo
echo "#### RSS after spikes of $CONNS connections (one request in flight on each), read ${SETTLE}s later"
env_header
echo "- command: CONNS=$CONNS SPIKES=$SPIKES SETTLE=$SETTLE bench/spike_rss.sh"
echo
echo "| spike | requests ok | RSS before KiB | RSS right after KiB | RSS ${SETTLE}s after KiB | above pre-spike KiB |"
echo "|---:|---|---:|---:|---:|---:|"
while read -r line; do
  [[ $line == spike=* ]] || continue
  echo "| $(kv spike "$line") | $(kv ok "$line")/$CONNS | $base | $(kv rss_after_spike_kib "$line") | $(kv "rss_${SETTLE}s_after_kib" "$line") | $(kv above_pre_spike_kib "$line") |"
done <<<"$out"

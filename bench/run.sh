#!/usr/bin/env bash
# bench/run.sh — Turnpike vs nginx vs HAProxy (vs nginx+lua), HTTP/1.1 keepalive, in one run.
#
# Starts the fixed origin (nginx, 1 worker, "hello world\n") and every proxy (one worker/thread
# each, free ports picked at run time, configs generated into a temp dir), then measures back to
# back with wrk -t1 -c$CONNS -d$DUR: direct origin, Turnpike, nginx proxy, HAProxy, nginx+lua
# key-auth, Turnpike again (drift). Prints a Markdown table of the proxy process's CPU µs per
# request (user+sys, all threads), ratio to nginx, req/s, p99 and failed requests.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8 (s), WARM=1 (s), CONNS=64,
#      CASES="origin turnpike nginx haproxy lua turnpike-again", ERR_PCT=1, KEEP_TMP=0.
# Exit status: 0 when every case ran and succeeded; 1 when a case FAILED or was skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx haproxy wrk curl python3 awk

CASES=${CASES:-origin turnpike nginx haproxy lua turnpike-again}
LUA_MOD=/usr/lib/nginx/modules/ngx_http_lua_module.so
raise_nofile >/dev/null

want() { [[ " $CASES " == *" $1 "* ]]; }
want_any() { local c; for c; do want "$c" && return 0; done; return 1; }

start_origin
declare -A PID PORT SKIP
if want_any turnpike turnpike-again; then
  if have_turnpike; then
    turnpike_basic_config "$ORIGIN_PORT" >"$BENCH_TMP/turnpike.yaml"
    start_turnpike turnpike "$BENCH_TMP/turnpike.yaml"
    PID[turnpike]=$STARTED_PID PORT[turnpike]=$STARTED_PORT
  else
    loud "Turnpike binary not found: $TURNPIKE_BIN" "Turnpike rows are SKIPPED; build it or set TURNPIKE_BIN."
    SKIP[turnpike]="binary not found"
  fi
fi
if want nginx; then
  start_nginx pnginx "$BENCH_DIR/peers/proxy-nginx.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"
  PID[nginx]=$STARTED_PID PORT[nginx]=$STARTED_PORT
fi
if want haproxy; then
  start_haproxy phaproxy "$BENCH_DIR/peers/proxy-haproxy.cfg.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"
  PID[haproxy]=$STARTED_PID PORT[haproxy]=$STARTED_PORT
fi
if want lua; then
  if [[ -f $LUA_MOD ]]; then
    start_nginx plua "$BENCH_DIR/peers/proxy-openresty.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"
    PID[lua]=$STARTED_PID PORT[lua]=$STARTED_PORT
  else
    loud "nginx lua module missing ($LUA_MOD): apt-get install -y libnginx-mod-http-lua"
    SKIP[lua]="lua module not installed"
  fi
fi

ROWS=() FAILED=0 NGINX_CPU='' TP_FIRST='' TP_LAST=''
# row CASE CPU RPS P99 NON2XX SOCKERR ORIGIN_CPU OK NOTE
add_row() { ROWS+=("$(printf '%s\t' "$@")"); }

run_case() {
  local key=$1 label=$2 pid port url args=()
  case $key in
    origin) pid=$ORIGIN_PID port=$ORIGIN_PORT ;;
    turnpike-again) pid=${PID[turnpike]:-} port=${PORT[turnpike]:-} ;;
    *) pid=${PID[$key]:-} port=${PORT[$key]:-} ;;
  esac
  [[ $key == lua ]] && args=(-H 'apikey: secret-key-1')
  local skip=${SKIP[$key]:-}; [[ $key == turnpike-again ]] && skip=${SKIP[turnpike]:-}
  if [[ -n $skip ]]; then add_row "$label" - - - - - - 0 "SKIPPED: $skip"; FAILED=1; return; fi
  url="http://127.0.0.1:$port/"
  if ! precheck "$url" "${args[@]}"; then
    loud "$label: precheck failed: $PRECHECK_MSG"
    add_row "$label" - - - - - - 0 "FAILED precheck: $PRECHECK_MSG"; FAILED=1; return
  fi
  log "measuring $label ($url, ${DUR}s)"
  local saved_origin=$ORIGIN_PID
  [[ $key == origin ]] && ORIGIN_PID=
  measure "$pid" "$url" "${args[@]}"
  ORIGIN_PID=$saved_origin
  local ocpu=$M_ORIGIN_CPU; [[ $key == origin ]] && ocpu=-
  local note=
  if ((!M_OK)); then
    FAILED=1; note="FAILED: $M_NON2XX non-2xx + $M_SOCKERR socket errors of $M_REQS"
    ((M_DIED)) && note="$note, process DIED"
    loud "$label: $note — its numbers are NOT valid" "$(head -c 2000 <<<"$M_RAW")"
  fi
  add_row "$label" "$M_CPU" "$M_RPS" "$M_P99" "$M_NON2XX" "$M_SOCKERR" "$ocpu" "$M_OK" "$note"
  log "$label: cpu_us_per_req=$M_CPU rps=$M_RPS p99=$M_P99 reqs=$M_REQS non2xx=$M_NON2XX sockerr=$M_SOCKERR origin_us=$ocpu"
  if ((M_OK)); then
    case $key in
      nginx) NGINX_CPU=$M_CPU ;;
      turnpike) TP_FIRST=$M_CPU ;;
      turnpike-again) TP_LAST=$M_CPU ;;
    esac
  fi
}

for c in $CASES; do
  case $c in
    origin) run_case origin "direct origin (nginx return 200)" ;;
    turnpike) run_case turnpike "Turnpike" ;;
    nginx) run_case nginx "nginx proxy" ;;
    haproxy) run_case haproxy "HAProxy" ;;
    lua) run_case lua "nginx+lua key-auth" ;;
    turnpike-again) run_case turnpike-again "Turnpike (again, drift)" ;;
    *) die "unknown case '$c'" ;;
  esac
done

echo
echo "### HTTP/1.1 keepalive, wrk -t1 -c$CONNS -d${DUR}s, one worker/thread per server"
env_header
echo "- command: DUR=$DUR WARM=$WARM CONNS=$CONNS bench/run.sh"
echo
echo "| case | CPU µs/req | ratio to nginx | req/s | p99 | non-2xx | origin CPU µs/req | status |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for r in "${ROWS[@]}"; do
  IFS=$'\t' read -r label cpu rps p99 non2xx sockerr ocpu ok note <<<"$r"
  ratio=-
  if [[ -n $NGINX_CPU && $ok == 1 ]]; then
    ratio=$(awk -v a="$cpu" -v b="$NGINX_CPU" 'BEGIN{printf "%.2f", a/b}')
  fi
  errs=$non2xx; [[ $sockerr != - && $sockerr != 0 ]] && errs="$non2xx (+$sockerr socket)"
  if [[ $ok == 1 ]]; then status=ok; else status="**${note:-FAILED}**"; cpu="~~$cpu~~"; fi
  echo "| $label | $cpu | $ratio | $rps | $p99 | $errs | $ocpu | $status |"
done
if [[ -n $TP_FIRST && -n $TP_LAST ]]; then
  echo
  echo "Turnpike drift (again vs first): $(awk -v a="$TP_FIRST" -v b="$TP_LAST" 'BEGIN{printf "%+.1f%%", (b-a)/a*100}')"
fi
if ((FAILED)); then
  loud "some cases FAILED or were SKIPPED (see status column); their numbers must not be quoted"
  exit 1
fi

#!/usr/bin/env bash
# bench/run.sh — Turnpike vs nginx vs HAProxy (vs nginx+lua), HTTP/1.1 keepalive, in one run.
#
# Starts the fixed origin (nginx, 1 worker, "hello world\n") and every proxy (one worker/thread
# each, free ports picked at run time, configs generated into a temp dir), then measures back to
# back with wrk -t1 -c$CONNS -d$DUR: direct origin, Turnpike, nginx proxy, HAProxy, nginx+lua
# key-auth, Turnpike with the same chain as Lua plugins (turnpike-lua: key-auth + a shared-dict
# counter), Turnpike again (drift). Prints a Markdown table of the proxy process's CPU µs per
# request (user+sys, all threads), ratio to nginx, req/s, p99 and failed requests.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=8 (s), WARM=1 (s), CONNS=64,
#      CASES="origin turnpike nginx haproxy lua turnpike-lua turnpike-again", ROUNDS=1 (with more, every case
#      runs once per round, interleaved, and the table shows medians), ERR_PCT=1, MAX_BUSY=10
#      (warn when the CPUs are more than this % busy at the start), KEEP_TMP=0.
# Exit status: 0 when every case ran and succeeded; 1 when a case FAILED or was skipped.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx haproxy wrk curl python3 awk

CASES=${CASES:-origin turnpike nginx haproxy lua turnpike-lua turnpike-again}
ROUNDS=${ROUNDS:-1}
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
if want turnpike-lua && have_turnpike; then
  # The same chain as the nginx+lua case: key-auth on the apikey header (bundled plugin) and a
  # shared-dict fixed-window counter (bench/plugins/fixed-window.lua, a user plugin).
  turnpike_lua_config "$ORIGIN_PORT" >"$BENCH_TMP/turnpike-lua.yaml"
  start_turnpike tplua "$BENCH_TMP/turnpike-lua.yaml"
  PID[turnpike-lua]=$STARTED_PID PORT[turnpike-lua]=$STARTED_PORT
elif want turnpike-lua; then
  SKIP[turnpike-lua]="binary not found"
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

FAILED=0 ORDER=()
declare -A LABEL CPU OCPU RPS P99 NON SOCK OK NOTE

# run_case KEY LABEL: one measured run of one case; results appended to the per-case lists.
run_case() {
  local key=$1 label=$2 pid port url args=()
  if [[ -z ${LABEL[$key]:-} ]]; then ORDER+=("$key"); LABEL[$key]=$label OK[$key]=1 NON[$key]=0 SOCK[$key]=0; fi
  case $key in
    origin) pid=$ORIGIN_PID port=$ORIGIN_PORT ;;
    turnpike-again) pid=${PID[turnpike]:-} port=${PORT[turnpike]:-} ;;
    *) pid=${PID[$key]:-} port=${PORT[$key]:-} ;;
  esac
  [[ $key == lua || $key == turnpike-lua ]] && args=(-H 'apikey: secret-key-1')
  local skip=${SKIP[$key]:-}; [[ $key == turnpike-again ]] && skip=${SKIP[turnpike]:-}
  if [[ -n $skip ]]; then OK[$key]=0 NOTE[$key]="SKIPPED: $skip"; FAILED=1; return; fi
  url="http://127.0.0.1:$port/"
  if ! precheck "$url" "${args[@]}"; then
    loud "$label: precheck failed: $PRECHECK_MSG"
    OK[$key]=0 NOTE[$key]="FAILED precheck: $PRECHECK_MSG"; FAILED=1; return
  fi
  log "measuring $label ($url, ${DUR}s)"
  local saved_origin=$ORIGIN_PID
  [[ $key == origin ]] && ORIGIN_PID=''
  measure "$pid" "$url" "${args[@]}"
  ORIGIN_PID=$saved_origin
  local ocpu=$M_ORIGIN_CPU; [[ $key == origin ]] && ocpu=-
  log "$label: cpu_us_per_req=$M_CPU rps=$M_RPS p99=$M_P99 reqs=$M_REQS non2xx=$M_NON2XX sockerr=$M_SOCKERR origin_us=$ocpu"
  NON[$key]=$((NON[$key] + M_NON2XX)) SOCK[$key]=$((SOCK[$key] + M_SOCKERR))
  if ((!M_OK)); then
    FAILED=1 OK[$key]=0
    NOTE[$key]="FAILED: $M_NON2XX non-2xx + $M_SOCKERR socket errors of $M_REQS"
    ((M_DIED)) && NOTE[$key]="${NOTE[$key]}, process DIED"
    loud "$label: ${NOTE[$key]} — its numbers are NOT valid" "$(head -c 2000 <<<"$M_RAW")"
    return
  fi
  CPU[$key]+="$M_CPU " OCPU[$key]+="$ocpu " RPS[$key]+="$M_RPS " P99[$key]+="$M_P99_MS "
}

warn_if_busy
for ((round = 1; round <= ROUNDS; round++)); do
  ((ROUNDS > 1)) && log "round $round of $ROUNDS"
  for c in $(rotated "$round" $CASES); do
    case $c in
      origin) run_case origin "direct origin (nginx return 200)" ;;
      turnpike) run_case turnpike "Turnpike" ;;
      nginx) run_case nginx "nginx proxy" ;;
      haproxy) run_case haproxy "HAProxy" ;;
      lua) run_case lua "nginx+lua key-auth" ;;
      turnpike-lua) run_case turnpike-lua "Turnpike key-auth (Lua plugins)" ;;
      turnpike-again) run_case turnpike-again "Turnpike (again, drift)" ;;
      *) die "unknown case '$c'" ;;
    esac
  done
done

# shellcheck disable=SC2086  # the lists are space-separated on purpose
med() { median ${1:-}; }
NGINX_CPU=''; [[ ${OK[nginx]:-0} == 1 ]] && NGINX_CPU=$(med "${CPU[nginx]}")
echo
echo "### HTTP/1.1 keepalive, wrk -t1 -c$CONNS -d${DUR}s, one worker/thread per server$( ((ROUNDS > 1)) && echo ", median of $ROUNDS rounds")"
env_header
echo "- command: DUR=$DUR WARM=$WARM CONNS=$CONNS ROUNDS=$ROUNDS bench/run.sh"
echo
echo "| case | CPU µs/req | ratio to nginx | req/s | p99 ms | non-2xx | origin CPU µs/req | status |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for key in "${ORDER[@]}"; do
  cpu=$(med "${CPU[$key]:-}") ocpu=$(med "${OCPU[$key]:-}") rps=$(med "${RPS[$key]:-}" | awk '{printf ($1 == "-") ? "-" : "%.0f", $1}') p99=$(med "${P99[$key]:-}")
  [[ $key == origin ]] && ocpu=-
  ratio=-
  if [[ -n $NGINX_CPU && ${OK[$key]} == 1 ]]; then
    ratio=$(awk -v a="$cpu" -v b="$NGINX_CPU" 'BEGIN{printf "%.2f", a/b}')
  fi
  errs=${NON[$key]}; ((SOCK[$key] > 0)) && errs="${NON[$key]} (+${SOCK[$key]} socket)"
  if [[ ${OK[$key]} == 1 ]]; then status=ok; else status="**${NOTE[$key]:-FAILED}**"; cpu="~~$cpu~~"; fi
  echo "| ${LABEL[$key]} | $cpu | $ratio | $rps | $p99 | $errs | $ocpu | $status |"
done
if ((ROUNDS > 1)); then
  echo
  echo "CPU µs/req per round:"
  for key in "${ORDER[@]}"; do v=${CPU[$key]:-none}; echo "- ${LABEL[$key]}: ${v% }"; done
  lines=""
  for key in turnpike turnpike-again turnpike-lua; do
    for ref in nginx haproxy lua turnpike; do
      [[ $key == "$ref" ]] && continue
      [[ ${OK[$key]:-0} == 1 && ${OK[$ref]:-0} == 1 ]] || continue
      pr=$(paired_ratios "${CPU[$key]}" "${CPU[$ref]}") || continue
      lines+="- ${LABEL[$key]} / ${LABEL[$ref]}: $pr"$'\n'
    done
  done
  print_paired "$lines"
fi
if [[ ${OK[turnpike]:-0} == 1 && ${OK[turnpike-again]:-0} == 1 ]]; then
  first=$(awk '{print $1}' <<<"${CPU[turnpike]}") last=$(awk '{print $NF}' <<<"${CPU[turnpike-again]}")
  drift=$(awk -v a="$first" -v b="$last" 'BEGIN{printf "%+.1f", (b-a)/a*100}')
  echo
  echo "Turnpike drift (last 'again' run vs first run): ${drift}%"
  if awk -v d="$drift" 'BEGIN{exit !(d > 10 || d < -10)}'; then
    loud "Turnpike drifted ${drift}% between its first and last run: the machine was not quiet;" \
         "rerun (ROUNDS=3 helps) before quoting these numbers."
  fi
fi
if ((FAILED)); then
  loud "some cases FAILED or were SKIPPED (see status column); their numbers must not be quoted"
  exit 1
fi

#!/usr/bin/env bash
# bench/compression.sh — the compression plugin's cost and ratio: CPU per MiB of origin body and
# compressed/original size, gzip level 5 and brotli level 4, on a JSON and an HTML document,
# Turnpike against nginx's gzip module at the same level (`gzip on; gzip_comp_level 5;`), both
# one worker in front of the same nginx origin serving the documents, same run, rounds rotated.
# Each proxy is also measured without compression, so the table shows the compression's own
# share (the "added" column: CPU per MiB over the same proxy's uncompressed run), and Turnpike
# with the plugin on a client that accepts no coding (the plugin's cost when it compresses
# nothing).
#
# The corpus is generated deterministically (seeded) into the bench's temp dir:
#   api.json  ~220 KiB: an API answer, 300 orders with customers, addresses, line items, ISO
#             dates, enums, free-text notes from a 2,000-word vocabulary (Zipf-distributed);
#   page.html ~128 KiB: an article page: head with meta/link/script tags, nav, sections with
#             paragraphs (same vocabulary), a table, a list of cards with classes and links.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=6, WARM=1, CONNS=8, ROUNDS=3,
#      DOCS="json html".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-8}
DUR=${DUR:-6}
DOCS=${DOCS:-json html}
raise_nofile >/dev/null
warn_if_busy

# ---- corpus ------------------------------------------------------------------------------------
www=$BENCH_TMP/www
mkdir -p "$www"
python3 - "$www" <<'PY'
import json, random, sys
out = sys.argv[1]
rng = random.Random(20261207)
letters = "abcdefghijklmnopqrstuvwxyz"
vocab = ["".join(rng.choice(letters) for _ in range(rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10])))
         for _ in range(2000)]
weights = [1.0 / (i + 1) for i in range(len(vocab))]  # Zipf, like natural text
def words(n):
    return " ".join(rng.choices(vocab, weights, k=n))
def sentence():
    s = words(rng.randint(6, 18))
    return s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"])
cities = ["Lyon", "Porto", "Gdansk", "Leeds", "Turin", "Ghent", "Bergen", "Graz", "Malmo", "Cork"]
statuses = ["pending", "paid", "shipped", "delivered", "refunded", "cancelled"]
orders = []
for i in range(300):
    items = [{"sku": f"SKU-{rng.randrange(10**5):05d}", "name": words(rng.randint(1, 4)).title(),
              "qty": rng.randint(1, 5), "unit_price": round(rng.uniform(1, 500), 2)}
             for _ in range(rng.randint(1, 4))]
    orders.append({
        "id": 100000 + i * 7 + rng.randrange(7),
        "created_at": f"2026-{rng.randint(1,12):02d}-{rng.randint(1,28):02d}T{rng.randint(0,23):02d}:{rng.randint(0,59):02d}:{rng.randint(0,59):02d}Z",
        "status": rng.choice(statuses),
        "customer": {"id": rng.randrange(10**6), "name": f"{rng.choice(vocab).title()} {rng.choice(vocab).title()}",
                     "email": f"{rng.choice(vocab)}.{rng.choice(vocab)}@example.{rng.choice(['com', 'org', 'net'])}",
                     "address": {"street": f"{rng.randint(1, 300)} {rng.choice(vocab).title()} Street",
                                 "city": rng.choice(cities), "postcode": f"{rng.randrange(10**5):05d}"}},
        "items": items,
        "total": round(sum(it["qty"] * it["unit_price"] for it in items), 2),
        "currency": "EUR",
        "note": sentence() if rng.random() < 0.6 else None,
        "tags": rng.sample(["gift", "express", "fragile", "b2b", "promo", "return"], rng.randint(0, 3)),
    })
with open(f"{out}/api.json", "w") as f:
    json.dump({"page": 1, "per_page": 300, "orders": orders}, f, indent=1)
html = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>' + words(6).title() + '</title>\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<link rel="stylesheet" href="/static/css/site.min.css?v=3f2a9c">\n<script defer src="/static/js/app.min.js?v=3f2a9c"></script>\n',
        '</head>\n<body class="page page--article">\n<header class="site-header"><nav class="nav"><ul class="nav__list">\n']
html += [f'<li class="nav__item"><a class="nav__link" href="/{w}/">{w.title()}</a></li>\n' for w in rng.sample(vocab[:200], 12)]
html.append('</ul></nav></header>\n<main class="content">\n')
size = sum(map(len, html))
section = 0
while size < 128 * 1024:
    section += 1
    part = [f'<section id="s{section}" class="section">\n<h2 class="section__title">{words(5).title()}</h2>\n']
    for _ in range(rng.randint(2, 5)):
        part.append('<p class="text">' + " ".join(sentence() for _ in range(rng.randint(3, 7))) + "</p>\n")
    if section % 3 == 0:
        part.append('<table class="table table--striped">\n<thead><tr><th>Name</th><th>Value</th><th>Change</th></tr></thead>\n<tbody>\n')
        for _ in range(rng.randint(5, 12)):
            part.append(f'<tr><td>{rng.choice(vocab).title()}</td><td>{rng.uniform(0, 1e4):.2f}</td><td class="delta delta--{rng.choice(["up", "down"])}">{rng.uniform(-9, 9):+.1f}%</td></tr>\n')
        part.append("</tbody>\n</table>\n")
    if section % 4 == 0:
        part.append('<div class="cards">\n')
        for _ in range(4):
            w = rng.choice(vocab)
            part.append(f'<article class="card"><a class="card__link" href="/articles/{w}-{rng.randrange(10**4)}"><img class="card__img" src="/img/{w}.webp" alt="{words(3)}" loading="lazy" width="320" height="180"><h3 class="card__title">{words(4).title()}</h3></a></article>\n')
        part.append("</div>\n")
    part.append("</section>\n")
    size += sum(map(len, part))
    html += part
html.append('</main>\n<footer class="site-footer"><p>&copy; 2026 Example</p></footer>\n</body>\n</html>\n')
with open(f"{out}/page.html", "w") as f:
    f.write("".join(html))
PY
declare -A FILE=([json]=api.json [html]=page.html) CTYPE=([json]=application/json [html]=text/html)

# ---- origin, proxies ---------------------------------------------------------------------------
cat >"$BENCH_TMP/origin-files.conf.in" <<'EOF'
worker_processes 1;
daemon off;
master_process off;
worker_rlimit_nofile 20000;
pid @TMP@/ofiles.pid;
error_log @TMP@/ofiles.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 1000000;
  sendfile on;
  open_file_cache max=16;
  types { application/json json; text/html html; }
  server {
    listen 127.0.0.1:@PORT@ reuseport backlog=4096;
    location ~ ^/(gz|br|plain)/(.*)$ { alias @TMP@/www/$2; etag on; }
  }
}
EOF
cat >"$BENCH_TMP/proxy-gzip.conf.in" <<'EOF'
worker_processes 1;
daemon off;
master_process off;
worker_rlimit_nofile 20000;
pid @TMP@/pgzip.pid;
error_log @TMP@/pgzip.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 1000000;
  proxy_temp_path @TMP@/pgzip_proxy;
  upstream origin { server @ORIGIN@; keepalive 256; }
  server {
    listen 127.0.0.1:@PORT@ backlog=4096;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /gz/ {
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      gzip on; gzip_comp_level 5; gzip_min_length 256; gzip_proxied any; gzip_vary on;
      gzip_types application/json text/html;
    }
  }
}
EOF
start_nginx origin "$BENCH_TMP/origin-files.conf.in"
ORIGIN_PORT=$STARTED_PORT   # not ORIGIN_PID: measure() would add the origin's CPU to a column
start_nginx nginx "$BENCH_TMP/proxy-gzip.conf.in" "ORIGIN=127.0.0.1:$ORIGIN_PORT"
NG_PID=$STARTED_PID NG_PORT=$STARTED_PORT

cfg=$BENCH_TMP/turnpike.yaml
turnpike_config "$ORIGIN_PORT" "[{name: bench, address: 127.0.0.1, port: 0}]" | sed '/^routes:/,$d' >"$cfg"
cat >>"$cfg" <<'EOF'
routes:
  - name: gz
    match: {paths: ["/gz/*"]}
    upstream: origin
    plugins:
      compression: {algorithms: [gzip], gzip_level: 5}
  - name: br
    match: {paths: ["/br/*"]}
    upstream: origin
    plugins:
      compression: {algorithms: [br], brotli_level: 4}
  - name: plain
    match: {paths: ["/*"]}
    upstream: origin
EOF
start_turnpike turnpike "$cfg"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT

# ---- ratio and correctness: each compressed answer decompresses to the file --------------------
declare -A BYTES RATIO
check() {  # check NAME URL CODING FILE
  local name=$1 url=$2 coding=$3 file=$4 out=$BENCH_TMP/check.$1
  curl -sS -m 10 -H "Accept-Encoding: $coding" -D "$out.head" -o "$out.body" "$url" || die "$name: curl failed"
  grep -qi "^content-encoding: $coding" "$out.head" || die "$name: not $coding-encoded: $(head -c 400 "$out.head")"
  /usr/bin/python3 - "$coding" "$out.body" "$file" <<'PY' || die "$name: does not decompress to $file"
import sys, zlib, brotli
coding, body, orig = sys.argv[1], open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
plain = zlib.decompress(body, wbits=31) if coding == "gzip" else brotli.decompress(body)
sys.exit(0 if plain == orig else 1)
PY
  BYTES[$name]=$(stat -c %s "$out.body")
  RATIO[$name]=$(awk -v c="${BYTES[$name]}" -v o="$(stat -c %s "$file")" 'BEGIN{printf "%.3f", c/o}')
}
for d in $DOCS; do
  f=$www/${FILE[$d]}
  check "tp-gz-$d" "http://127.0.0.1:$TP_PORT/gz/${FILE[$d]}" gzip "$f"
  check "tp-br-$d" "http://127.0.0.1:$TP_PORT/br/${FILE[$d]}" br "$f"
  check "ng-gz-$d" "http://127.0.0.1:$NG_PORT/gz/${FILE[$d]}" gzip "$f"
done

# ---- CPU: wrk with the Accept-Encoding of each case ---------------------------------------------
# case → proxy, path prefix, Accept-Encoding
declare -A PID_OF=([tp]=$TP_PID [ng]=$NG_PID) PORT_OF=([tp]=$TP_PORT [ng]=$NG_PORT)
CASES=()
for d in $DOCS; do CASES+=("tp-plain-$d" "tp-skip-$d" "tp-gz-$d" "tp-br-$d" "ng-plain-$d" "ng-gz-$d"); done
declare -A CPU RPS US
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $(rotated "$r" "${CASES[@]}"); do
    IFS=- read -r proxy kind d <<<"$c"
    enc=gzip path=$kind
    [[ $kind == br ]] && enc=br
    [[ $kind == skip ]] && enc=identity path=gz  # the plugin runs, the client accepts no coding
    url="http://127.0.0.1:${PORT_OF[$proxy]}/$path/${FILE[$d]}"
    measure "${PID_OF[$proxy]}" "$url" -H "Accept-Encoding: $enc"
    ((M_OK)) || die "$c round $r failed: $M_REQS requests, $M_NON2XX non-2xx, $M_SOCKERR socket errors"
    size=$(stat -c %s "$www/${FILE[$d]}")
    # ms of proxy CPU per MiB of origin body
    per_mib=$(awk -v us="$M_CPU" -v s="$size" 'BEGIN{printf "%.2f", us / 1000 / (s / 1048576)}')
    CPU[$c]+="$per_mib " RPS[$c]+="$M_RPS " US[$c]+="$M_CPU "
    log "round $r $c: $M_CPU µs/req = $per_mib ms/MiB, $M_RPS req/s"
  done
done

# ---- report --------------------------------------------------------------------------------------
{
  echo "## Compression: CPU per MiB and ratio (bench/compression.sh)"
  echo
  env_header
  echo "- command: \`ROUNDS=$ROUNDS DUR=$DUR CONNS=$CONNS bench/compression.sh\`; wrk -t1 -c$CONNS, ${DUR}s per case per round, medians of $ROUNDS rotated rounds"
  echo "- corpus (generated, seeded): api.json $(stat -c %s "$www/api.json") bytes, page.html $(stat -c %s "$www/page.html") bytes"
  echo
  echo "| document | proxy | coding | ratio (compressed / original) | proxy CPU µs/req | proxy CPU ms per MiB of body | added by compression, ms/MiB | req/s |"
  echo "|---|---|---|---|---|---|---|---|"
  for d in $DOCS; do
    for c in "tp-plain-$d" "tp-skip-$d" "tp-gz-$d" "tp-br-$d" "ng-plain-$d" "ng-gz-$d"; do
      IFS=- read -r proxy kind _ <<<"$c"
      # shellcheck disable=SC2086
      m=$(median ${CPU[$c]}); rps=$(median ${RPS[$c]}); us=$(median ${US[$c]})
      # shellcheck disable=SC2086
      base=$(median ${CPU[$proxy-plain-$d]})
      added=-; [[ $kind != plain ]] && added=$(awk -v a="$m" -v b="$base" 'BEGIN{printf "%.2f", a-b}')
      label=Turnpike; [[ $proxy == ng ]] && label=nginx
      coding=none; [[ $kind == gz ]] && coding="gzip 5"; [[ $kind == br ]] && coding="brotli 4"
      [[ $kind == skip ]] && coding="none (plugin on, client asks identity)"
      echo "| ${FILE[$d]} | $label | $coding | ${RATIO[$c]:--} | $us | $m | $added | $rps |"
    done
  done
  echo
  for d in $DOCS; do
    # shellcheck disable=SC2086
    echo "- ${FILE[$d]}: Turnpike gzip / nginx gzip CPU per MiB, paired rounds: $(paired_ratios "${CPU[tp-gz-$d]}" "${CPU[ng-gz-$d]}")"
  done
} | tee "$BENCH_TMP/report.md"

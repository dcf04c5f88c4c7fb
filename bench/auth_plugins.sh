#!/usr/bin/env bash
# bench/auth_plugins.sh — CPU per request of the authentication plugins, HTTP/1.1 keepalive.
#
# One Turnpike (one worker) in front of the fixed nginx origin, one route per case: no plugin,
# key-auth, basic-auth (salted HMAC), jwt-auth HS256 / RS256 (2048-bit) / ES256, hmac-auth. The
# credentials are made once here (python3-cryptography for the key pairs) and sent with wrk -H.
# jwt-auth remembers verified tokens, so jwt-* sends one token (the common case: a client reuses
# its token) and jwt-*-fresh 2000 tokens in turn (every request verified). Prints a
# Markdown table: Turnpike's CPU µs per request (user+sys, all threads), the cost over the
# no-plugin route, req/s and p99.
#
# Env: TURNPIKE_BIN (default build-release/src/app/turnpike), DUR=5 (s), WARM=1 (s), CONNS=64,
#      ROUNDS=3 (each case once per round, interleaved; the table shows medians),
#      CASES="none key-auth basic-auth jwt-hs256 jwt-hs256-fresh jwt-rs256 jwt-rs256-fresh
#      jwt-es256 jwt-es256-fresh hmac-auth".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
DUR=${DUR:-5}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need nginx wrk curl python3 awk
python3 -c 'import cryptography' 2>/dev/null || die "python3-cryptography is needed for the key pairs"
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-none key-auth basic-auth jwt-hs256 jwt-hs256-fresh jwt-rs256 jwt-rs256-fresh jwt-es256 jwt-es256-fresh hmac-auth}
raise_nofile >/dev/null
trap bench_cleanup EXIT INT TERM

# Credentials: the consumers' YAML into $BENCH_TMP/consumers.yaml, one request header per case
# into $BENCH_TMP/<case>.header.
python3 - "$BENCH_TMP" <<'EOF'
import base64, email.utils, hashlib, hmac, json, sys
from pathlib import Path
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

out = Path(sys.argv[1])
def b64url(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def pem(k): return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
def token(key_name, alg, sign):
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    token.n = getattr(token, "n", 0) + 1
    body = b64url(json.dumps({"key": key_name, "sub": "user-1", "exp": 4102444800, "jti": token.n}).encode())
    return f"{head}.{body}." + b64url(sign(f"{head}.{body}".encode()))

secret = b"0123456789abcdef0123456789abcdef"
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
def es256(data):
    r, s = utils.decode_dss_signature(ec_key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")

salt = "bench-salt-0123"
date = email.utils.formatdate(usegmt=True)
hmac_secret = "hmac-secret-0123456789"
signing = f"@request-target: get /hmac-auth\ndate: {date}"
hsig = base64.b64encode(hmac.new(hmac_secret.encode(), signing.encode(), hashlib.sha256).digest()).decode()
headers = {
    "key-auth": "apikey: bench-key",
    "basic-auth": "Authorization: Basic " + base64.b64encode(b"bench:bench-password").decode(),
    "jwt-hs256": "Authorization: Bearer " + token("hs", "HS256", lambda d: hmac.new(secret, d, hashlib.sha256).digest()),
    "jwt-rs256": "Authorization: Bearer " + token("rs", "RS256", lambda d: rsa_key.sign(d, padding.PKCS1v15(), hashes.SHA256())),
    "jwt-es256": "Authorization: Bearer " + token("es", "ES256", es256),
    "hmac-auth": f'Authorization: Signature keyId="bench",algorithm="hmac-sha256",headers="@request-target date",signature="{hsig}"',
}
for case, h in headers.items():
    (out / f"{case}.header").write_text(h)
# "-fresh" cases: 2000 distinct tokens sent in turn, more than jwt-auth remembers (1000, emptied
# when full), so every request is verified.
def fresh(case, key_name, alg, sign):
    tokens = [token(key_name, alg, sign) for _ in range(2000)]
    (out / f"{case}.header").write_text("Authorization: Bearer " + tokens[0])
    (out / f"{case}.lua").write_text("local tokens = {\n" + "".join(f'  "Bearer {t}",\n' for t in tokens) + "}\n"
        "local i = 0\nrequest = function()\n  i = i % #tokens + 1\n"
        "  return wrk.format(nil, nil, { Authorization = tokens[i] })\nend\n")
fresh("jwt-hs256-fresh", "hs", "HS256", lambda d: hmac.new(secret, d, hashlib.sha256).digest())
fresh("jwt-rs256-fresh", "rs", "RS256", lambda d: rsa_key.sign(d, padding.PKCS1v15(), hashes.SHA256()))
fresh("jwt-es256-fresh", "es", "ES256", es256)
(out / "hmac-auth.date").write_text("Date: " + date)
consumers = [
    {"username": "k", "plugins": {"key-auth": {"key": "bench-key"}}},
    {"username": "b", "plugins": {"basic-auth": {"username": "bench", "password_hash":
        f"hmac-sha256${salt}${hmac.new(salt.encode(), b'bench-password', hashlib.sha256).hexdigest()}"}}},
    {"username": "hs", "plugins": {"jwt-auth": {"key": "hs", "secret": secret.decode()}}},
    {"username": "rs", "plugins": {"jwt-auth": {"key": "rs", "algorithm": "RS256", "public_key": pem(rsa_key)}}},
    {"username": "es", "plugins": {"jwt-auth": {"key": "es", "algorithm": "ES256", "public_key": pem(ec_key)}}},
    {"username": "h", "plugins": {"hmac-auth": {"key_id": "bench", "secret_key": hmac_secret}}},
]
(out / "consumers.json").write_text(json.dumps(consumers))
EOF

start_origin
{
  turnpike_basic_config "$ORIGIN_PORT" | sed '/^routes:/,$d'
  echo "routes:"
  echo "  - {name: none, match: {paths: [/none]}, upstream: origin}"
  for p in key-auth basic-auth; do
    echo "  - {name: $p, match: {paths: [/$p]}, upstream: origin, plugins: {$p: {}}}"
  done
  # Signed once, at the start: the date must stay within the skew for the whole run.
  echo "  - {name: hmac-auth, match: {paths: [/hmac-auth]}, upstream: origin, plugins: {hmac-auth: {clock_skew: 3600}}}"
  for alg in hs256 rs256 es256; do
    echo "  - {name: jwt-$alg, match: {paths: [/jwt-$alg, /jwt-$alg-fresh]}, upstream: origin, plugins: {jwt-auth: {}}}"
  done
  echo "consumers: $(cat "$BENCH_TMP/consumers.json")"  # JSON is YAML
} >"$BENCH_TMP/turnpike.yaml"
start_turnpike turnpike "$BENCH_TMP/turnpike.yaml"
TP_PID=$STARTED_PID TP_PORT=$STARTED_PORT

env_header 2>/dev/null || true
# Every case once per round, interleaved, so drift and other load spread over all of them; the
# table shows medians.
declare -A CPU RPS P99
for ((round = 1; round <= ROUNDS; round++)); do
  for c in $CASES; do
    args=()
    [[ -f $BENCH_TMP/$c.header ]] && args+=(-H "$(cat "$BENCH_TMP/$c.header")")
    [[ -f $BENCH_TMP/$c.date ]] && args+=(-H "$(cat "$BENCH_TMP/$c.date")")
    url="http://127.0.0.1:$TP_PORT/$c"
    precheck "$url" "${args[@]}" || die "$c: precheck failed: $PRECHECK_MSG"
    [[ -f $BENCH_TMP/$c.lua ]] && args=(-s "$BENCH_TMP/$c.lua")
    log "round $round: measuring $c (${DUR}s)"
    measure "$TP_PID" "$url" "${args[@]}"
    ((M_OK)) || die "$c: FAILED (non-2xx $M_NON2XX, socket errors $M_SOCKERR of $M_REQS)"
    CPU[$c]+="$M_CPU " RPS[$c]+="$M_RPS " P99[$c]+="$M_P99_MS "
  done
done

printf '\n| case | CPU µs/req (median of %s) | over none | req/s | p99 ms | all CPU µs/req |\n' "$ROUNDS"
printf '|---|---|---|---|---|---|\n'
# shellcheck disable=SC2086  # the lists are space-separated numbers
base=$(median ${CPU[none]:-})
for c in $CASES; do
  cpu=$(median ${CPU[$c]})
  over=$(awk -v a="$cpu" -v b="$base" 'BEGIN{if (b == "-") print "-"; else printf "%+.2f", a-b}')
  printf '| %s | %s | %s | %s | %s | %s|\n' "$c" "$cpu" "$over" "$(median ${RPS[$c]})" "$(median ${P99[$c]})" "${CPU[$c]}"
done

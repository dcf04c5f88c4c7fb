"""The bundled credential plugins basic-auth, jwt-auth and hmac-auth in the real binary: the
allowed path (consumer attached, its own plugins merged in, its name in the access log, claims
or credentials passed on or hidden), every denial with its status and body, and conf errors
reported by `turnpike -t` with file:line.

Tokens and signatures are made here in Python (hmac; RS256/ES256 with python3-cryptography).
The consumer-level plugin that shows the merge is tests/integration/plugins/tracer.lua; whoami.lua
shows later plugins what ctx.consumer and ctx.jwt_claims hold."""
from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE

PLUGINS = Path(__file__).resolve().parent / "plugins"


def cfg_with(origin, route_plugins, consumers, **top):
    routes = [{"name": "api", "match": {"paths": ["/*"]}, "upstream": "origin", "plugins": route_plugins}]
    cfg = base_config(origin, routes=routes, consumers=consumers, **top)
    cfg["plugin_paths"] = [str(PLUGINS)]
    return cfg


def get(tp, target, headers=None, method="GET"):
    return rawhttp.request(tp.port(), method, target, headers=headers or [])


def upstream_headers(resp):
    assert resp.status == 200, resp
    return {n.lower(): v for n, v in resp.json()["headers"]}


def assert_denied(resp, message, status=401):
    assert resp.status == status, resp
    assert resp.header("content-type") == "application/json"
    assert resp.json() == {"error": "unauthorized", "message": message}


def wait_in_log(path: Path, text: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return True
        time.sleep(0.05)
    return False


def conf_errors(turnpike_bin, tmp_path, cfg):
    """The messages of `turnpike -t` for cfg, which must be refused, and the config's lines."""
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(cfg))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    lines = path.read_text().splitlines()
    return [(m["message"], lines[int(m["line"]) - 1]) for m in ERROR_LINE.finditer(out.stderr)]


def messages(errors):
    return [m for m, _ in errors]


# ---- basic-auth -------------------------------------------------------------------------------

def hmac_hash(password: str, salt: str = "pepper-and-salt") -> str:
    return f"hmac-sha256${salt}${hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()}"


def basic(user: str, password: str) -> tuple:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


BASIC_CONSUMERS = [
    {"username": "alice", "plugins": {"basic-auth": {"username": "alice", "password_hash": hmac_hash("s3cret:with colon")},
                                      "tracer": {"label": "alice"}}},
    {"username": "bob", "plugins": {"basic-auth": {"username": "bob", "password": "plain-pw"}}},
]


def test_basic_auth_lets_consumers_in_and_attaches_them(origin, turnpike, tmp_path):
    log = tmp_path / "access.log"
    cfg = cfg_with(origin, {"basic-auth": {"realm": "api"}, "tracer": {"label": "r"}, "whoami": {}}, BASIC_CONSUMERS)
    cfg["log"]["access_log"] = str(log)
    tp = turnpike(cfg)
    alice = get(tp, "/echo/alice", [basic("alice", "s3cret:with colon")])
    # Without hide_credentials the upstream sees the header; alice's tracer replaces the route's.
    assert upstream_headers(alice)["authorization"].startswith("Basic ")
    assert alice.header("x-trace") == "r:rewrite,alice:access,alice:header"
    assert upstream_headers(alice)["x-whoami"] == "alice"  # ctx.consumer, for later plugins
    bob = get(tp, "/echo/bob", [basic("bob", "plain-pw")])
    assert bob.status == 200 and bob.header("x-trace") == "r:rewrite,r:access,r:header"
    assert wait_in_log(log, "consumer=alice") and wait_in_log(log, "consumer=bob")


def test_basic_auth_hides_credentials(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"basic-auth": {"hide_credentials": True}}, BASIC_CONSUMERS))
    assert "authorization" not in upstream_headers(get(tp, "/echo", [basic("bob", "plain-pw")]))


@pytest.mark.parametrize("headers, message", [
    ([], "missing authorization"),
    ([("Authorization", "Bearer abc")], "malformed basic credentials"),
    ([("Authorization", "Basic !!!")], "malformed basic credentials"),
    ([("Authorization", "Basic " + base64.b64encode(b"no-colon").decode())], "malformed basic credentials"),
    ([basic("carol", "plain-pw")], "invalid user name or password"),
    ([basic("alice", "s3cret")], "invalid user name or password"),
    ([basic("bob", "plain-pw ")], "invalid user name or password"),
])
def test_basic_auth_denials(origin, turnpike, headers, message):
    tp = turnpike(cfg_with(origin, {"basic-auth": {"realm": "my api"}}, BASIC_CONSUMERS))
    resp = get(tp, "/echo/denied", headers)
    assert_denied(resp, message)
    assert resp.header("www-authenticate") == 'Basic realm="my api", charset="UTF-8"'


def test_basic_auth_conf_errors(origin, turnpike_bin, tmp_path):
    consumers = [
        {"username": "both", "plugins": {"basic-auth": {"username": "a", "password": "x", "password_hash": hmac_hash("x")}}},
        {"username": "none", "plugins": {"basic-auth": {"username": "b"}}},
        {"username": "format", "plugins": {"basic-auth": {"username": "c", "password_hash": "md5$salt1234$abcd"}}},
        {"username": "salt", "plugins": {"basic-auth": {"username": "d", "password_hash": hmac_hash("x", salt="short")}}},
        {"username": "hex", "plugins": {"basic-auth": {"username": "e", "password_hash": "hmac-sha256$saltsalt$abcd"}}},
    ]
    cfg = cfg_with(origin, {"basic-auth": {"realm": 'say "hi"', "hide": True}}, consumers)
    errors = conf_errors(turnpike_bin, tmp_path, cfg)
    got = messages(errors)
    assert 'route "api": plugin "basic-auth": conf.hide: unknown property' in got
    assert any('plugin "basic-auth": conf.realm: does not match the pattern' in m for m in got), got
    def consumer_error(name, text):
        return any(f'consumer "{name}"' in m and f'plugin "basic-auth": {text}' in m for m in got)
    assert consumer_error("both", "conf: set exactly one of password_hash and password"), got
    assert consumer_error("none", "conf: set exactly one of password_hash and password"), got
    assert consumer_error("format", 'conf.password_hash: expected "hmac-sha256$<salt>$<hex>"'), got
    assert consumer_error("salt", "conf.password_hash: the salt must have at least 8 characters"), got
    assert consumer_error("hex", "conf.password_hash: hmac-sha256 needs 64 hex digits, got 4"), got
    for message, line in errors:
        if "conf.hide" in message:
            assert "hide" in line


# ---- jwt-auth ---------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, key, alg: str = "HS256", kid: str | None = None, header: dict | None = None) -> str:
    head = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {}), **(header or {})}
    signing_input = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(claims).encode())
    data = signing_input.encode()
    if alg.startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        sig = hmac.new(key, data, digest).digest()
    elif alg == "none":
        sig = b""
    else:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
        if alg == "RS256":
            sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:  # ES256: JOSE wants r || s, 32 bytes each (RFC 7518 §3.4)
            r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input + "." + b64url(sig)


def bearer(token: str) -> tuple:
    return ("Authorization", "Bearer " + token)


SECRET = b"0123456789abcdef0123456789abcdef"  # 32 bytes: the least HS256 accepts


@pytest.fixture(scope="module")
def keys():
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    def pem(k):
        return k.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {"rsa": rsa_key, "rsa_pem": pem(rsa_key), "ec": ec_key, "ec_pem": pem(ec_key)}


def jwt_consumers(keys=None):
    consumers = [
        {"username": "alice", "plugins": {"jwt-auth": {"key": "alice-key", "secret": SECRET.decode()},
                                          "tracer": {"label": "alice"}}},
        {"username": "b64", "plugins": {"jwt-auth": {"key": "b64-key", "algorithm": "HS512", "base64_secret": True,
                                                     "secret": base64.b64encode(b"k" * 64).decode()}}},
    ]
    if keys:
        consumers += [
            {"username": "rsa", "plugins": {"jwt-auth": {"key": "rsa-key", "algorithm": "RS256", "public_key": keys["rsa_pem"]}}},
            {"username": "ec", "plugins": {"jwt-auth": {"key": "ec-key", "algorithm": "ES256", "public_key": keys["ec_pem"]}}},
        ]
    return consumers


def test_jwt_auth_hs_tokens_attach_the_consumer_and_pass_claims(origin, turnpike, tmp_path):
    log = tmp_path / "access.log"
    conf = {"claims_to_headers": {"sub": "X-User-Id", "roles": "X-Roles"}}
    cfg = cfg_with(origin, {"jwt-auth": conf, "tracer": {"label": "r"}, "whoami": {}}, jwt_consumers())
    cfg["log"]["access_log"] = str(log)
    tp = turnpike(cfg)
    now = int(time.time())
    token = jwt({"key": "alice-key", "sub": "u-1", "roles": ["a", "b"], "exp": now + 60, "nbf": now - 5}, SECRET)
    resp = get(tp, "/echo/jwt", [bearer(token), ("X-Roles", "spoofed")])
    seen = upstream_headers(resp)
    assert seen["x-user-id"] == "u-1"
    assert seen["x-whoami"] == "alice" and seen["x-whoami-sub"] == "u-1"
    assert seen["x-roles"] == '["a","b"]'
    assert seen["authorization"] == "Bearer " + token  # not hidden by default
    assert resp.header("x-trace") == "r:rewrite,alice:access,alice:header"
    # A claim the token lacks removes the header, so a client cannot set it itself.
    token = jwt({"key": "alice-key"}, SECRET)
    seen = upstream_headers(get(tp, "/echo/jwt", [bearer(token), ("X-User-Id", "admin")]))
    assert "x-user-id" not in seen
    # kid in the JWS header names the key too; base64 secrets; HS512.
    token = jwt({"sub": "x"}, b"k" * 64, alg="HS512", kid="b64-key")
    assert get(tp, "/echo/kid", [bearer(token)]).status == 200
    assert wait_in_log(log, "consumer=alice") and wait_in_log(log, "consumer=b64")


def test_jwt_auth_reads_query_and_cookie_and_hides_them(origin, turnpike):
    conf = {"query": "jwt", "cookie": "session", "hide_credentials": True, "key_claim": "iss"}
    tp = turnpike(cfg_with(origin, {"jwt-auth": conf}, jwt_consumers()))
    token = jwt({"iss": "alice-key"}, SECRET)
    body = get(tp, f"/echo/q?a=1&jwt={token}").json()
    assert body["query"] == "a=1"
    resp = get(tp, "/echo/c", [("Cookie", f"theme=dark; session={token}; lang=en")])
    assert upstream_headers(resp)["cookie"] == "theme=dark; lang=en"
    resp = get(tp, "/echo/h", [bearer(token)])
    assert "authorization" not in upstream_headers(resp)


def test_jwt_auth_reads_a_custom_header_with_or_without_bearer(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"jwt-auth": {"header": "X-Token", "hide_credentials": True}}, jwt_consumers()))
    token = jwt({"key": "alice-key"}, SECRET)
    assert "x-token" not in upstream_headers(get(tp, "/echo/bare", [("X-Token", token)]))
    assert get(tp, "/echo/bearer", [("X-Token", "Bearer " + token)]).status == 200
    # Only the configured header is read.
    assert_denied(get(tp, "/echo/auth", [bearer(token)]), "missing token")


def test_jwt_auth_rs256_and_es256(origin, turnpike, keys):
    tp = turnpike(cfg_with(origin, {"jwt-auth": {"required_claims": ["exp"]}}, jwt_consumers(keys)))
    exp = int(time.time()) + 60
    assert get(tp, "/echo/rs", [bearer(jwt({"key": "rsa-key", "exp": exp}, keys["rsa"], "RS256"))]).status == 200
    assert get(tp, "/echo/es", [bearer(jwt({"key": "ec-key", "exp": exp}, keys["ec"], "ES256"))]).status == 200
    # Signed by another key pair of the right kind.
    from cryptography.hazmat.primitives.asymmetric import ec
    other = ec.generate_private_key(ec.SECP256R1())
    assert_denied(get(tp, "/echo/es", [bearer(jwt({"key": "ec-key", "exp": exp}, other, "ES256"))]), "invalid signature")
    # Algorithm confusion: HS256 "signed" with the consumer's public key as the HMAC secret.
    forged = jwt({"key": "rsa-key", "exp": exp}, keys["rsa_pem"].encode(), "HS256")
    assert_denied(get(tp, "/echo/confused", [bearer(forged)]), "algorithm not allowed for this key")
    unsigned = jwt({"key": "rsa-key", "exp": exp}, None, "none")
    assert_denied(get(tp, "/echo/none", [bearer(unsigned)]), "algorithm not allowed for this key")


def tampered(token: str) -> str:
    head, claims, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    payload["sub"] = "admin"
    return ".".join([head, b64url(json.dumps(payload).encode()), sig])


def jwt_denials():
    now = int(time.time())
    return [
        ([], "missing token"),
        ([("Authorization", "Basic YTpi")], "missing token"),
        ([bearer("a.b")], "malformed token"),
        ([bearer("a.b.c.d")], "malformed token"),
        ([bearer("!!!.e30.")], "malformed token"),
        ([bearer(b64url(b"[1]") + "." + b64url(b"{}") + ".")], "malformed token"),
        ([bearer(jwt({"key": "alice-key"}, SECRET, header={"crit": ["exp"]}))],
         "unsupported critical header parameters (crit)"),
        ([bearer(jwt({"sub": "x"}, SECRET))], "the token names no key (kid header or key claim)"),
        ([bearer(jwt({"key": "mallory"}, SECRET))], "unknown key"),
        ([bearer(jwt({"key": "alice-key"}, SECRET, alg="HS512"))], "algorithm not allowed for this key"),
        ([bearer(jwt({"key": "alice-key"}, b"x" * 32))], "invalid signature"),
        ([bearer(tampered(jwt({"key": "alice-key", "sub": "u"}, SECRET)))], "invalid signature"),
        ([bearer(jwt({"key": "alice-key", "exp": now - 20}, SECRET))], "token expired"),
        ([bearer(jwt({"key": "alice-key", "nbf": now + 20}, SECRET))], "token not yet valid"),
        ([bearer(jwt({"key": "alice-key", "exp": "tomorrow"}, SECRET))], "malformed token: exp is not a number"),
        ([bearer(jwt({"key": "alice-key", "exp": now + 60}, SECRET))], "missing claim sub"),
    ]


def test_jwt_auth_denials(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"jwt-auth": {"clock_skew": 5, "required_claims": ["sub"]}}, jwt_consumers()))
    for headers, message in jwt_denials():
        resp = get(tp, "/echo/denied", headers)
        assert_denied(resp, message)
        assert resp.header("www-authenticate") == 'Bearer error="invalid_token"'


def test_jwt_auth_clock_skew_allows_slightly_expired_tokens(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"jwt-auth": {"clock_skew": 60}}, jwt_consumers()))
    now = int(time.time())
    assert get(tp, "/echo/skew", [bearer(jwt({"key": "alice-key", "exp": now - 20}, SECRET))]).status == 200
    assert get(tp, "/echo/skew", [bearer(jwt({"key": "alice-key", "nbf": now + 20}, SECRET))]).status == 200
    assert_denied(get(tp, "/echo/skew", [bearer(jwt({"key": "alice-key", "exp": now - 90}, SECRET))]), "token expired")


def test_jwt_auth_remembered_tokens_still_expire_and_do_not_outlive_a_reload(origin, turnpike):
    cfg = cfg_with(origin, {"jwt-auth": {}}, jwt_consumers(), workers=1)
    cfg["routes"].insert(0, {"name": "iss", "match": {"paths": ["/iss/*"]}, "upstream": "origin",
                             "plugins": {"jwt-auth": {"key_claim": "iss"}}})
    tp = turnpike(cfg)
    exp = int(time.time()) + 2
    token = jwt({"key": "alice-key", "exp": exp}, SECRET)
    for _ in range(3):  # verified once, then served from the worker's cache
        assert get(tp, "/echo/again", [bearer(token)]).status == 200
    while time.time() < exp + 0.2:
        time.sleep(0.1)
    assert_denied(get(tp, "/echo/again", [bearer(token)]), "token expired")

    # A token remembered on one route does not pass another route's own rules.
    forever = jwt({"key": "alice-key"}, SECRET)
    assert get(tp, "/echo/before", [bearer(forever)]).status == 200
    assert_denied(get(tp, "/iss/x", [bearer(forever)]), "the token names no key (kid header or iss claim)")
    cfg["consumers"][0]["plugins"]["jwt-auth"]["secret"] = "another secret of 32 bytes or so."
    tp.reload(cfg)
    assert_denied(get(tp, "/echo/after", [bearer(forever)]), "invalid signature")


def test_jwt_auth_conf_errors(origin, turnpike_bin, tmp_path, keys):
    consumers = [
        {"username": "short", "plugins": {"jwt-auth": {"key": "a", "secret": "too-short"}}},
        {"username": "nosecret", "plugins": {"jwt-auth": {"key": "b"}}},
        {"username": "badb64", "plugins": {"jwt-auth": {"key": "c", "secret": "%%%", "base64_secret": True}}},
        {"username": "nopem", "plugins": {"jwt-auth": {"key": "d", "algorithm": "RS256", "public_key": "hello"}}},
        {"username": "wrongkey", "plugins": {"jwt-auth": {"key": "e", "algorithm": "ES256", "public_key": keys["rsa_pem"]}}},
        {"username": "alg", "plugins": {"jwt-auth": {"key": "f", "algorithm": "none", "secret": SECRET.decode()}}},
    ]
    route = {"jwt-auth": {"clock_skew": 301, "claims_to_headers": {"sub": "bad header"}}}
    got = messages(conf_errors(turnpike_bin, tmp_path, cfg_with(origin, route, consumers)))
    assert 'route "api": plugin "jwt-auth": conf.clock_skew: expected at most 300, got 301' in got, got
    def consumer_error(name, text):
        return any(f'consumer "{name}"' in m and f'plugin "jwt-auth": {text}' in m for m in got)
    assert consumer_error("short", "conf.secret: HS256 needs a secret of at least 32 bytes, got 9"), got
    assert consumer_error("nosecret", "conf.secret: required for HS256"), got
    assert consumer_error("badb64", "conf.secret: not valid base64 (base64_secret is true)"), got
    assert consumer_error("nopem", "conf.public_key: invalid public key: not PEM"), got
    assert consumer_error("wrongkey", "conf.public_key: an RSA key cannot check ES256"), got
    assert consumer_error("alg", 'conf.algorithm: expected one of'), got


def test_jwt_auth_claims_to_headers_must_name_headers(origin, turnpike_bin, tmp_path):
    route = {"jwt-auth": {"claims_to_headers": {"sub": "bad header"}}}
    got = messages(conf_errors(turnpike_bin, tmp_path, cfg_with(origin, route, jwt_consumers())))
    assert 'route "api": plugin "jwt-auth": conf.claims_to_headers.sub: expected a header name' in got, got


# ---- hmac-auth --------------------------------------------------------------------------------

HMAC_SECRET = "alice-secret-0123456789"
HMAC_CONSUMERS = [{"username": "alice", "plugins": {"hmac-auth": {"key_id": "alice-key", "secret_key": HMAC_SECRET},
                                                    "tracer": {"label": "alice"}}}]


def signed(method, target, names, headers=None, key_id="alice-key", secret=HMAC_SECRET, alg="hmac-sha256",
           date=None, sign_target=None):
    """Request headers for `method target` signed over `names` (@request-target and header names)."""
    headers = dict(headers or {})
    headers.setdefault("date", date or email.utils.formatdate(usegmt=True))
    lines = []
    for name in names:
        if name == "@request-target":
            lines.append(f"@request-target: {method.lower()} {sign_target or target}")
        else:
            lines.append(f"{name}: {headers[name]}")
    digest = {"hmac-sha256": hashlib.sha256, "hmac-sha384": hashlib.sha384, "hmac-sha512": hashlib.sha512}[alg]
    sig = base64.b64encode(hmac.new(secret.encode(), "\n".join(lines).encode(), digest).digest()).decode()
    auth = f'Signature keyId="{key_id}",algorithm="{alg}",headers="{" ".join(names)}",signature="{sig}"'
    return list(headers.items()) + [("Authorization", auth)]


STANDARD = ["@request-target", "date", "x-custom"]


def test_hmac_auth_lets_signed_requests_in(origin, turnpike, tmp_path):
    log = tmp_path / "access.log"
    cfg = cfg_with(origin, {"hmac-auth": {"signed_headers": ["x-custom"], "hide_credentials": True},
                            "tracer": {"label": "r"}, "whoami": {}}, HMAC_CONSUMERS)
    cfg["log"]["access_log"] = str(log)
    tp = turnpike(cfg)
    resp = get(tp, "/echo/signed?b=2&a=1", signed("GET", "/echo/signed?b=2&a=1", STANDARD, {"x-custom": "v"}))
    assert "authorization" not in upstream_headers(resp)
    assert upstream_headers(resp)["x-whoami"] == "alice"
    assert resp.header("x-trace") == "r:rewrite,alice:access,alice:header"
    # X-Date instead of Date (for clients that cannot set Date), and SHA-512.
    date = email.utils.formatdate(usegmt=True)
    headers = signed("POST", "/echo/p", ["@request-target", "x-date", "x-custom"],
                     {"x-date": date, "x-custom": "w", "date": "Thu, 01 Jan 1970 00:00:00 GMT"}, alg="hmac-sha512")
    assert get(tp, "/echo/p", headers, method="POST").status == 200
    assert wait_in_log(log, "consumer=alice")


def test_hmac_auth_denials(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"hmac-auth": {"signed_headers": ["x-custom"], "clock_skew": 30}}, HMAC_CONSUMERS))
    target = "/echo/denied"
    old = email.utils.formatdate(time.time() - 120, usegmt=True)
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    cases = [
        ([], "missing signature"),
        ([("Authorization", "Basic YTpi")], "malformed signature: expected keyId, algorithm, headers and signature"),
        ([("Authorization", 'Signature keyId="alice-key",algorithm="hmac-sha256"')],
         "malformed signature: expected keyId, algorithm, headers and signature"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, alg="hmac-sha384"), "algorithm not allowed"),
        (signed("GET", target, ["date", "x-custom"], {"x-custom": "v"}), "header not signed: @request-target"),
        (signed("GET", target, ["@request-target", "x-custom"], {"x-custom": "v"}), "header not signed: date"),
        (signed("GET", target, ["@request-target", "date"]), "header not signed: x-custom"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, key_id="mallory"), "unknown key id"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, date="yesterday"), "missing or invalid date header"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, date=old), "date is outside the allowed clock skew"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, date=future), "date is outside the allowed clock skew"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, secret="another-secret-0123456"), "invalid signature"),
        (signed("GET", target, STANDARD, {"x-custom": "v"}, sign_target="/echo/other"), "invalid signature"),
        (signed("POST", target, STANDARD, {"x-custom": "v"}), "invalid signature"),  # sent as GET
    ]
    # A listed header the request does not carry.
    missing = [h for h in signed("GET", target, STANDARD, {"x-custom": "v"}) if h[0] != "x-custom"]
    cases.append((missing, "signed header missing: x-custom"))
    for headers, message in cases:
        resp = get(tp, target, headers)
        assert_denied(resp, message)
        assert resp.header("www-authenticate") == 'Signature headers="@request-target date"'


def test_hmac_auth_refuses_a_replayed_signature(origin, turnpike):
    cfg = cfg_with(origin, {"hmac-auth": {"replay_dict": "hmac-replay"}}, HMAC_CONSUMERS,
                   shared_dicts={"hmac-replay": "1m"})
    tp = turnpike(cfg)
    headers = signed("GET", "/echo/once", ["@request-target", "date"])
    assert get(tp, "/echo/once", headers).status == 200
    # Replays land on either worker: the dictionary is node-wide.
    for _ in range(4):
        assert_denied(get(tp, "/echo/once", headers), "replayed request")
    assert get(tp, "/echo/once", signed("GET", "/echo/once", ["@request-target", "date", "x-n"], {"x-n": "2"})).status == 200


def test_hmac_auth_without_the_replay_dictionary_fails_closed(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"hmac-auth": {"replay_dict": "nope"}}, HMAC_CONSUMERS))
    resp = get(tp, "/echo/x", signed("GET", "/echo/x", ["@request-target", "date"]))
    assert resp.status == 500 and resp.json()["message"] == "replay dictionary missing"


def test_hmac_auth_digest_header(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"hmac-auth": {"require_digest": True}}, HMAC_CONSUMERS))
    body = b'{"n":1}'
    good = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    names = ["@request-target", "date", "digest"]
    resp = rawhttp.request(tp.port(), "POST", "/echo/d", headers=signed("POST", "/echo/d", names, {"digest": good}), body=body)
    assert resp.status == 200, resp
    assert_denied(get(tp, "/echo/d", signed("GET", "/echo/d", ["@request-target", "date"])), "header not signed: digest")
    bad = signed("GET", "/echo/d", names, {"digest": "SHA-256=" + base64.b64encode(b"short").decode()})
    assert_denied(get(tp, "/echo/d", bad), "invalid digest header")
    md5 = signed("GET", "/echo/d", names, {"digest": "MD5=" + base64.b64encode(hashlib.md5(body).digest()).decode()})
    assert_denied(get(tp, "/echo/d", md5), "invalid digest header")
    # The body is hashed: a signed, well-formed digest of another body is refused.
    other = signed("POST", "/echo/d", names, {"digest": good})
    resp = rawhttp.request(tp.port(), "POST", "/echo/d", headers=other, body=b'{"n":2}')
    assert_denied(resp, "digest does not match the body")
    # Chunked bodies are read whole and hashed too (and forwarded whole).
    chunked_body = b"7\r\n" + body + b"\r\n0\r\n\r\n"
    headers = signed("POST", "/echo/d", names, {"digest": good}) + [("Transfer-Encoding", "chunked")]
    resp = rawhttp.request(tp.port(), "POST", "/echo/d", headers=headers, body=chunked_body)
    assert resp.status == 200, resp


def test_hmac_auth_digest_of_a_body_over_max_body_is_refused(origin, turnpike):
    tp = turnpike(cfg_with(origin, {"hmac-auth": {"require_digest": True, "max_body": 100}}, HMAC_CONSUMERS))
    body = b"b" * 5000
    good = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    headers = signed("POST", "/echo/big", ["@request-target", "date", "digest"], {"digest": good})
    resp = rawhttp.request(tp.port(), "POST", "/echo/big", headers=headers, body=body)
    assert_denied(resp, "request body too large to verify its digest")


def test_hmac_and_jwt_auth_over_http2(origin, turnpike):
    """The signed @request-target is :method and :path; denials are the same answers."""
    from h2client import H2Client
    consumers = jwt_consumers()
    consumers[0]["plugins"]["hmac-auth"] = HMAC_CONSUMERS[0]["plugins"]["hmac-auth"]  # alice has both
    cfg = cfg_with(origin, {"hmac-auth": {}}, consumers)
    cfg["routes"].insert(0, {"name": "jwt", "match": {"paths": ["/jwt/*"]}, "upstream": "origin",
                             "plugins": {"jwt-auth": {}}})
    tp = turnpike(cfg)
    c = H2Client(tp.port())
    try:
        target = "/echo/h2?x=1"
        headers = [(n.lower(), v) for n, v in signed("GET", target, ["@request-target", "date"])]
        assert c.get(target, headers=headers).status == 200
        forged = [(n.lower(), v) for n, v in signed("GET", "/echo/other", ["@request-target", "date"])]
        denied = c.get(target, headers=forged)
        assert denied.status == 401
        assert json.loads(bytes(denied.body)) == {"error": "unauthorized", "message": "invalid signature"}
        token = jwt({"key": "alice-key"}, SECRET)
        assert c.get("/jwt/x", headers=[("authorization", "Bearer " + token)]).status == 200
        assert c.get("/jwt/x").status == 401
    finally:
        c.close()


def test_hmac_auth_conf_errors(origin, turnpike_bin, tmp_path):
    consumers = [{"username": "weak", "plugins": {"hmac-auth": {"key_id": "w", "secret_key": "short"}}},
                 {"username": "nokey", "plugins": {"hmac-auth": {"secret_key": HMAC_SECRET}}}]
    route = {"hmac-auth": {"clock_skew": 0, "algorithms": ["hmac-md5"], "signed_headers": ["bad header"]}}
    got = messages(conf_errors(turnpike_bin, tmp_path, cfg_with(origin, route, consumers)))
    assert 'route "api": plugin "hmac-auth": conf.clock_skew: expected at least 1, got 0' in got, got
    assert any('plugin "hmac-auth": conf.algorithms[1]: expected one of' in m for m in got), got
    assert any('plugin "hmac-auth": conf.signed_headers[1]: does not match the pattern' in m for m in got), got
    assert any('consumer "weak"' in m and "conf.secret_key: expected at least 16 characters, got 5" in m for m in got), got
    assert any('consumer "nokey"' in m and "conf.key_id: required" in m for m in got), got

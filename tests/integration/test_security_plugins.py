"""The bundled security plugins in the real binary: ip-restriction (IPv4 and IPv6, 10,000 CIDRs),
ua-restriction, uri-blocker, request-size-limit and cors: the allowed path, each denial with its
status and body, and their schema errors from `turnpike -t`."""
from __future__ import annotations

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE


def route(name, paths, plugins, **extra):
    return {"name": name, "match": {"paths": paths}, "upstream": "origin", "plugins": plugins, **extra}


def port_of(tp, host):
    if host == "127.0.0.1":
        return tp.port()
    addr = tp.state()["listeners"]["public"]  # tp.port() expects 127.0.0.1
    assert addr.startswith(f"[{host}]:"), addr
    return int(addr.rpartition(":")[2])


def get(tp, target, headers=None, method="GET", body=None, host="127.0.0.1"):
    with rawhttp.HttpConn(port_of(tp, host), host=host) as conn:
        return conn.request(method, target, headers or [], body)


def assert_denied(resp, status, error, message):
    assert resp.status == status, resp
    assert resp.header("content-type") == "application/json"
    assert resp.json() == {"error": error, "message": message}


def upstream_saw(origin, path):
    return [r for r in origin.snapshot() if r.path == path]


def config_errors(turnpike_bin, tmp_path, origin, plugins):
    """`turnpike -t` of one route with `plugins`: the messages, and the config's lines."""
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(base_config(origin, routes=[route("r", ["/*"], plugins)])))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    errors = [m.groupdict() for m in ERROR_LINE.finditer(out.stderr)]
    assert errors, out.stderr
    return errors, path.read_text().splitlines()


def assert_config_error(turnpike_bin, tmp_path, origin, plugins, message, line_has=None):
    errors, lines = config_errors(turnpike_bin, tmp_path, origin, plugins)
    plugin = next(iter(plugins))
    expected = f'route "r": plugin "{plugin}": {message}'
    found = [e for e in errors if e["message"] == expected]
    assert found, [e["message"] for e in errors]
    if line_has:
        assert line_has in lines[int(found[0]["line"]) - 1]


# ---- ip-restriction ---------------------------------------------------------------------------

def many_cidrs(n=10_000):
    """n distinct networks of several prefix lengths, none containing 127.0.0.1."""
    out = []
    for i in range(n):
        a, b = divmod(i, 250)
        kind = i % 4
        if kind == 0:
            out.append(f"10.{a % 250}.{b}.0/24")
        elif kind == 1:
            out.append(f"172.{16 + a % 16}.{b}.{i % 200}")
        elif kind == 2:
            out.append(f"2001:db8:{i:x}::/48")
        else:
            out.append(f"192.{a % 250}.{b}.128/25")
    return out


@pytest.fixture(scope="module")
def security(origin_module, turnpike_module):
    cidrs = many_cidrs()
    routes = [
        route("ip-allowed", ["/ip/allowed/*"], {"ip-restriction": {"whitelist": cidrs + ["127.0.0.0/8"]}}),
        route("ip-not-listed", ["/ip/not-listed/*"], {"ip-restriction": {"whitelist": cidrs}}),
        route("ip-banned", ["/ip/banned/*"],
              {"ip-restriction": {"blacklist": cidrs + ["127.0.0.1"], "message": "go away"}}),
        route("ip-not-banned", ["/ip/not-banned/*"], {"ip-restriction": {"blacklist": cidrs}}),
        route("ua-deny", ["/ua/deny/*"], {"ua-restriction": {"denylist": ["(?i)bot", "^curl/"]}}),
        route("ua-allow", ["/ua/allow/*"],
              {"ua-restriction": {"allowlist": ["^Mozilla/"], "message": "browsers only"}}),
        route("ua-both", ["/ua/both/*"],
              {"ua-restriction": {"allowlist": ["GoodBot"], "denylist": ["(?i)bot"], "bypass_missing": True}}),
        route("uri", ["/uri/*"],
              {"uri-blocker": {"block_rules": ["^/uri/wp-admin", r"\.(git|env)(/|$)", "select.+from"],
                               "case_insensitive": True}}),
        route("uri-404", ["/hidden/*"],
              {"uri-blocker": {"block_rules": ["secret"], "rejected_code": 404, "rejected_msg": "no such page"}}),
        route("size", ["/size/*"], {"request-size-limit": {"max_body_size": 10}}),
        route("size-strict", ["/size-strict/*"],
              {"request-size-limit": {"max_body_size": 10, "reject_unknown_length": True}}),
        route("cors-any", ["/cors/any/*"], {"cors": {}}),
        route("cors-list", ["/cors/list/*"],
              {"cors": {"allow_origins": ["https://app.example", "http://localhost:8080"],
                        "allow_methods": ["GET", "POST"], "allow_headers": "*",
                        "expose_headers": ["X-Trace-Id"], "allow_credentials": True, "max_age": 600},
               "key-auth": {}}),
    ]
    consumers = [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}}]
    return turnpike_module(base_config(origin_module, routes=routes, consumers=consumers))


def test_ip_whitelist_of_ten_thousand_networks_lets_a_listed_client_through(security):
    assert get(security, "/ip/allowed/x").status == 200


def test_ip_whitelist_refuses_a_client_that_is_not_listed(security, origin_module):
    resp = get(security, "/ip/not-listed/x")
    assert_denied(resp, 403, "forbidden", "Your IP address is not allowed")
    assert not upstream_saw(origin_module, "/ip/not-listed/x")


def test_ip_blacklist_refuses_a_listed_client_with_its_message(security):
    assert_denied(get(security, "/ip/banned/x"), 403, "forbidden", "go away")
    assert get(security, "/ip/not-banned/x").status == 200


@pytest.fixture(scope="module")
def ipv6(origin_module, turnpike_module):
    """A listener on ::1, and routes whose lists do or do not hold ::1 at several prefix lengths."""
    listeners = [{"name": "public", "address": "::1", "port": 0}]
    routes = [
        route("v6-exact", ["/exact/*"], {"ip-restriction": {"whitelist": ["::1"]}}),
        # ::/127 holds ::0 and ::1; ::2/127 holds ::2 and ::3 (a prefix that splits a hex digit).
        route("v6-127", ["/in127/*"], {"ip-restriction": {"whitelist": ["::/127"]}}),
        route("v6-not-127", ["/out127/*"], {"ip-restriction": {"whitelist": ["::2/127", "10.0.0.0/8"]}}),
        route("v6-doc", ["/doc/*"], {"ip-restriction": {"whitelist": ["2001:db8::/32"]}}),
        route("v6-banned", ["/banned/*"], {"ip-restriction": {"blacklist": ["0:0:0:0:0:0:0:1/128"]}}),
        route("v6-wide", ["/wide/*"], {"ip-restriction": {"blacklist": ["::/0"]}}),
    ]
    return turnpike_module(base_config(origin_module, routes=routes, listeners=listeners))


@pytest.mark.parametrize("path,status", [("/exact/x", 200), ("/in127/x", 200), ("/out127/x", 403),
                                         ("/doc/x", 403), ("/banned/x", 403), ("/wide/x", 403)])
def test_ipv6_clients_are_matched_by_prefix(ipv6, path, status):
    resp = get(ipv6, path, host="::1")
    assert resp.status == status, resp
    if status == 403:
        assert resp.json()["error"] == "forbidden"


@pytest.mark.parametrize("conf,message,line_has", [
    ({"whitelist": ["10.0.0.1/33"]}, 'conf.whitelist[1]: "10.0.0.1/33": an IPv4 prefix length is at most 32', None),
    ({"blacklist": ["1.2.3.4", "1.2.3"]}, 'conf.blacklist[2]: "1.2.3": not an IP address or CIDR block', "1.2.3"),
    ({"blacklist": ["2001:db8::1::2"]}, 'conf.blacklist[1]: "2001:db8::1::2": not an IP address or CIDR block', None),
    ({"whitelist": ["::1/129"]}, 'conf.whitelist[1]: "::1/129": an IPv6 prefix length is at most 128', None),
    ({"whitelist": ["10.0.0.0/8"], "blacklist": ["10.1.0.0/16"]}, "conf: give exactly one of whitelist and blacklist", None),
    ({"whitelist": []}, "conf.whitelist: expected at least 1 items, got 0", "whitelist"),
    ({"whitelist": ["::1"], "mesage": "x"}, "conf.mesage: unknown property", "mesage"),
])
def test_ip_restriction_schema_errors(turnpike_bin, tmp_path, origin, conf, message, line_has):
    assert_config_error(turnpike_bin, tmp_path, origin, {"ip-restriction": conf}, message, line_has)


def test_ip_restriction_accepts_every_text_form_of_an_address(turnpike_bin, tmp_path, origin):
    forms = ["0.0.0.0/0", "255.255.255.255", "10.1.2.3/8", "::", "::/0", "::1", "1::", "1:2:3:4:5:6:7:8",
             "2001:DB8:0:0:8:800:200C:417A/127", "2001:db8::8:800:200c:417a", "fe80::/10",
             "::ffff:192.0.2.1", "::ffff:0:0/96", "64:ff9b::192.0.2.33/128", "1:2:3:4:5:6:1.2.3.4"]
    path = tmp_path / "good.yaml"
    path.write_text(dump_yaml(base_config(origin, routes=[route("r", ["/*"], {"ip-restriction": {"whitelist": forms}})])))
    out = check_config(turnpike_bin, path)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("entry", ["256.0.0.1", "1.2.3.4/", "1.2.3.4/-1", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
                                   "::1::", "12345::", "1.2.3.4::", "::1.2.3.4:5", "fe80::1%eth0", "g::1",
                                   "1.2.3.4/8/8", " 1.2.3.4"])
def test_ip_restriction_refuses_malformed_entries(turnpike_bin, tmp_path, origin, entry):
    errors, _ = config_errors(turnpike_bin, tmp_path, origin, {"ip-restriction": {"whitelist": [entry]}})
    assert [e for e in errors if 'conf.whitelist[1]: ' in e["message"]], errors


# ---- ua-restriction ---------------------------------------------------------------------------

def ua(value):
    return [("User-Agent", value)]


def test_ua_denylist(security):
    assert get(security, "/ua/deny/x", ua("Mozilla/5.0")).status == 200
    assert_denied(get(security, "/ua/deny/x", ua("Googlebot/2.1")), 403, "forbidden", "Not allowed")
    assert_denied(get(security, "/ua/deny/x", ua("curl/8.0")), 403, "forbidden", "Not allowed")
    assert_denied(get(security, "/ua/deny/x"), 403, "forbidden", "Not allowed")  # no User-Agent


def test_ua_allowlist(security):
    assert get(security, "/ua/allow/x", ua("Mozilla/5.0 (X11)")).status == 200
    assert_denied(get(security, "/ua/allow/x", ua("curl/8.0")), 403, "forbidden", "browsers only")


def test_ua_allowlist_exempts_from_the_denylist_and_bypass_missing(security):
    assert get(security, "/ua/both/x", ua("GoodBot/1")).status == 200
    assert_denied(get(security, "/ua/both/x", ua("EvilBot/1")), 403, "forbidden", "Not allowed")
    assert get(security, "/ua/both/x", ua("Mozilla/5.0")).status == 200
    assert get(security, "/ua/both/x").status == 200


@pytest.mark.parametrize("conf,message", [
    ({"denylist": ["ok", "(unclosed"]}, "conf.denylist[2]: invalid regular expression: "),
    ({"bypass_missing": True}, "conf: give allowlist, denylist or both"),
])
def test_ua_restriction_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    errors, _ = config_errors(turnpike_bin, tmp_path, origin, {"ua-restriction": conf})
    expected = f'route "r": plugin "ua-restriction": {message}'
    assert any(e["message"].startswith(expected) for e in errors), errors


# ---- uri-blocker ------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/uri/wp-admin/setup.php", "/uri/WP-Admin", "/uri/%77p-admin",
                                    "/uri/app/.git/config", "/uri/.env", "/uri/x?q=SELECT%20a%20FROM%20b"])
def test_uri_blocker_blocks_matching_uris(security, origin_module, target):
    assert_denied(get(security, target), 403, "forbidden", "access to this URI is blocked")
    assert not upstream_saw(origin_module, target.split("?")[0])


@pytest.mark.parametrize("target", ["/uri/admin", "/uri/app/.github", "/uri/x?q=selection"])
def test_uri_blocker_lets_other_uris_through(security, target):
    assert get(security, target).status == 200


def test_uri_blocker_rejected_code_and_message(security):
    assert_denied(get(security, "/hidden/secret.txt"), 404, "forbidden", "no such page")
    assert get(security, "/hidden/Secret.txt").status == 200  # case-sensitive by default


@pytest.mark.parametrize("conf,message", [
    ({"block_rules": ["fine", "a(b"]}, "conf.block_rules[2]: invalid regular expression: "),
    ({"block_rules": ["x"], "rejected_code": 100}, "conf.rejected_code: expected at least 200, got 100"),
    ({}, "conf.block_rules: required"),
])
def test_uri_blocker_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    errors, _ = config_errors(turnpike_bin, tmp_path, origin, {"uri-blocker": conf})
    expected = f'route "r": plugin "uri-blocker": {message}'
    assert any(e["message"].startswith(expected) for e in errors), errors


# ---- request-size-limit -----------------------------------------------------------------------

def test_request_size_limit_passes_small_bodies_and_refuses_large_ones(security, origin_module):
    assert get(security, "/size/ok", method="POST", body=b"0123456789").status == 200
    resp = get(security, "/size/big", method="POST", body=b"0123456789A")
    assert_denied(resp, 413, "payload_too_large", "the request body is larger than 10 bytes")
    assert not upstream_saw(origin_module, "/size/big")


def chunked_post(tp, path, data):
    head = f"POST {path} HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    resp, _ = rawhttp.send_raw(tp.port(), head + rawhttp.chunked([data]))
    return resp


def test_request_size_limit_and_bodies_of_unknown_length(security, origin_module):
    # Without a declared length the body is read ahead and measured: over the limit is a 413
    # before any byte went upstream; under it, it goes through whole.
    assert_denied(chunked_post(security, "/size/chunked-big", b"x" * 20), 413, "payload_too_large",
                  "the request body is larger than 10 bytes")
    assert all(r.path != "/size/chunked-big" for r in origin_module.snapshot())
    resp = chunked_post(security, "/size/echo", b"x" * 10)
    assert resp.status == 200 and resp.json()["body_len"] == 10
    # The route may ask for a Content-Length instead.
    assert_denied(chunked_post(security, "/size-strict/chunked", b"x" * 5), 411, "length_required",
                  "a request body needs a Content-Length on this route")
    assert get(security, "/size-strict/ok", method="POST", body=b"x" * 5).status == 200
    assert get(security, "/size-strict/ok").status == 200  # no body at all


@pytest.mark.parametrize("conf,message", [
    ({"max_body_size": -1}, "conf.max_body_size: expected at least 0, got -1"),
    ({}, "conf.max_body_size: required"),
    ({"max_body_size": "1m"}, "conf.max_body_size: expected integer, got string"),
])
def test_request_size_limit_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    assert_config_error(turnpike_bin, tmp_path, origin, {"request-size-limit": conf}, message)


# ---- cors -------------------------------------------------------------------------------------

def preflight(tp, path, origin, method="POST", headers="X-Custom, Content-Type"):
    h = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if headers:
        h.append(("Access-Control-Request-Headers", headers))
    return get(tp, path, h, method="OPTIONS")


def test_cors_any_origin(security, origin_module):
    resp = preflight(security, "/cors/any/x", "https://anywhere.example")
    assert resp.status == 204, resp
    assert resp.header("access-control-allow-origin") == "*"
    assert resp.header("access-control-allow-methods") == "*"
    assert resp.header("access-control-allow-headers") == "*"
    assert resp.header("access-control-max-age") == "5"
    assert resp.header("access-control-allow-credentials") is None
    assert not upstream_saw(origin_module, "/cors/any/x")  # answered here
    simple = get(security, "/cors/any/y", [("Origin", "https://anywhere.example")])
    assert simple.status == 200
    assert simple.header("access-control-allow-origin") == "*"
    assert simple.header("vary") is None


def test_cors_preflight_of_a_listed_origin_is_answered_before_authentication(security, origin_module):
    resp = preflight(security, "/cors/list/x", "https://app.example")
    assert resp.status == 204, resp
    assert resp.header("access-control-allow-origin") == "https://app.example"
    assert resp.header("access-control-allow-credentials") == "true"
    assert resp.header("access-control-allow-methods") == "GET, POST"
    # "*" is no wildcard with credentials (Fetch): the asked-for headers are echoed.
    assert resp.header("access-control-allow-headers") == "X-Custom, Content-Type"
    assert resp.header("access-control-max-age") == "600"
    assert "Origin" in resp.header("vary")
    assert not upstream_saw(origin_module, "/cors/list/x")


def test_cors_preflight_of_another_origin_is_refused(security):
    resp = preflight(security, "/cors/list/x", "https://evil.example")
    assert_denied(resp, 403, "forbidden", "this origin may not make cross-origin requests")
    assert resp.header("access-control-allow-origin") is None


def test_cors_headers_on_responses_to_listed_origins_only(security):
    key = [("apikey", "k-alice")]
    ok = get(security, "/cors/list/y", key + [("Origin", "http://localhost:8080")])
    assert ok.status == 200, ok
    assert ok.header("access-control-allow-origin") == "http://localhost:8080"
    assert ok.header("access-control-allow-credentials") == "true"
    assert ok.header("access-control-expose-headers") == "X-Trace-Id"
    assert ok.has_token("vary", "Origin")
    other = get(security, "/cors/list/y", key + [("Origin", "https://evil.example")])
    assert other.status == 200
    assert other.header("access-control-allow-origin") is None
    assert other.header("access-control-allow-credentials") is None
    assert other.has_token("vary", "Origin")
    # A denial of the route's authentication still carries the CORS headers, so the page can
    # read why it failed.
    denied = get(security, "/cors/list/y", [("Origin", "https://app.example")])
    assert denied.status == 401
    assert denied.header("access-control-allow-origin") == "https://app.example"


@pytest.mark.parametrize("conf,message", [
    ({"allow_credentials": True}, 'conf.allow_origins: "*" cannot be used with allow_credentials: list the origins'),
    ({"allow_origins": ["app.example"]},
     'conf.allow_origins[1]: expected an origin (scheme://host[:port]), got "app.example"'),
    ({"allow_origins": "any"}, 'conf.allow_origins: expected "*" or a non-empty list of an origin (scheme://host[:port])'),
    ({"allow_methods": ["GET", "BAD METHOD"]}, 'conf.allow_methods[2]: expected a method, got "BAD METHOD"'),
    ({"max_age": -1}, "conf.max_age: expected at least 0, got -1"),
    ({"expose_headers": ["X-Fine", "X Bad"]}, 'conf.expose_headers[2]: does not match the pattern "^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$"'),
])
def test_cors_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    assert_config_error(turnpike_bin, tmp_path, origin, {"cors": conf}, message)

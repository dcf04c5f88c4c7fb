"""Routing: path normalization before matching (and what the origin then receives), precedence
(priority, host, path kind, method, headers), listener restriction, and the 404 for no match."""
import urllib.parse

import pytest

import rawhttp
from harness import base_config, respond_route

# Less specific routes come first, so "listed first" never explains a win.
ROUTES = [
    respond_route("prefix", ["/r/*"], "prefix"),
    respond_route("long-prefix", ["/r/long/*"], "long-prefix"),
    respond_route("param", ["/r/{id}"], "param"),
    respond_route("exact", ["/r/exact"], "exact"),
    respond_route("q-exact", ["/q/x"], "q-exact"),
    respond_route("q-priority", ["/q/*"], "q-priority", priority=10),
    respond_route("host-any", ["/h"], "host-any"),
    respond_route("host-wildcard", ["/h"], "host-wildcard", hosts=["*.example.com"]),
    respond_route("host-exact", ["/h"], "host-exact", hosts=["api.example.com"]),
    respond_route("m-any", ["/m"], "m-any"),
    respond_route("m-post", ["/m"], "m-post", methods=["POST"]),
    respond_route("hd-stable", ["/hd"], "stable"),
    respond_route("hd-canary", ["/hd"], "canary", headers=[{"name": "x-canary", "value": "1"}]),
    respond_route("hp-none", ["/hp"], "p-none"),
    respond_route("hp-prefix", ["/hp"], "p-prefix", headers=[{"name": "x-p", "prefix": "v"}]),
    respond_route("hx-absent", ["/hx"], "x-absent"),
    respond_route("hx-present", ["/hx"], "x-present", headers=[{"name": "x-d", "present": True}]),
    respond_route("api", ["/api"], "api"),
    respond_route("xy", ["/x/y"], "xy"),
    respond_route("internal-only", ["/internal"], "internal", listeners=["internal"]),
    {"name": "b", "match": {"paths": ["/b"]}, "upstream": "origin"},
    {"name": "public-dir", "match": {"paths": ["/public/*"]}, "upstream": "origin"},
]
LISTENERS = [{"name": "public", "address": "127.0.0.1", "port": 0},
             {"name": "internal", "address": "127.0.0.1", "port": 0}]


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    return turnpike_module(base_config(origin_module, routes=ROUTES, listeners=LISTENERS))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def body_of(tp, target, method="GET", host="test.local", headers=None, listener="public"):
    resp = rawhttp.request(tp.port(listener), method, target, headers=headers, host=host,
                           body=b"" if method == "POST" else None)
    assert resp.status == 200, f"{method} {target} (Host {host}): {resp}"
    return resp.body.decode()


# --- precedence ------------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected", [
    ("/r/exact", "exact"),          # exact beats param and prefix
    ("/r/123", "param"),            # param beats prefix
    ("/r/a/b", "prefix"),           # {id} is one segment only
    ("/r/long/x", "long-prefix"),   # longer prefix wins
    ("/r/long/x/y", "long-prefix"),
    ("/r", "prefix"),               # "/r/*" matches "/r" itself
])
def test_path_precedence_exact_then_param_then_longest_prefix(tp, target, expected):
    assert body_of(tp, target) == expected


def test_prefix_route_does_not_match_sibling_with_same_start(tp):
    assert rawhttp.request(tp.port(), "GET", "/rx").status == 404


@pytest.mark.parametrize("target", ["/q/x", "/q/y"])
def test_explicit_priority_beats_specificity(tp, target):
    assert body_of(tp, target) == "q-priority"


@pytest.mark.parametrize("host, expected", [
    ("api.example.com", "host-exact"),
    ("API.Example.COM:8080", "host-exact"),   # case-insensitive, port ignored
    ("www.example.com", "host-wildcard"),
    ("other.test", "host-any"),
])
def test_host_exact_beats_wildcard_beats_any(tp, host, expected):
    assert body_of(tp, "/h", host=host) == expected


@pytest.mark.parametrize("method, expected", [("GET", "m-any"), ("POST", "m-post")])
def test_method_condition(tp, method, expected):
    assert body_of(tp, "/m", method=method) == expected


@pytest.mark.parametrize("path, headers, expected", [
    ("/hd", [("X-Canary", "1")], "canary"),
    ("/hd", [("X-Canary", "2")], "stable"),
    ("/hd", [], "stable"),
    ("/hp", [("X-P", "v2")], "p-prefix"),
    ("/hp", [("X-P", "w2")], "p-none"),
    ("/hx", [("X-D", "")], "x-present"),
    ("/hx", [("X-D", "anything")], "x-present"),
    ("/hx", [], "x-absent"),
])
def test_header_conditions(tp, path, headers, expected):
    assert body_of(tp, path, headers=headers) == expected


def test_route_restricted_to_a_listener(tp):
    assert body_of(tp, "/internal", listener="internal") == "internal"
    assert rawhttp.request(tp.port("public"), "GET", "/internal").status == 404


def test_no_matching_route_is_404_json(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/nothing/here")
    assert resp.status == 404
    assert "json" in (resp.header("content-type") or ""), resp
    assert isinstance(resp.json(), dict)
    assert not origin.snapshot()


# --- normalization ---------------------------------------------------------------------------

@pytest.mark.parametrize("target, origin_target", [
    ("/a/../b", "/b"),
    ("/a/./c/../../b", "/b"),
    ("/../b", "/b"),                    # cannot climb above the root
    ("/a/../b?q=1&r=%2F", "/b?q=1&r=%2F"),  # the query is kept as sent
    ("//b", "/b"),                      # merge_slashes (default on)
    ("/public/./x", "/public/x"),
])
def test_normalized_path_is_routed_and_sent_to_origin(tp, origin, target, origin_target):
    resp = rawhttp.request(tp.port(), "GET", target)
    assert resp.status == 200, resp
    assert resp.json()["target"] == origin_target


def test_percent_encoded_unreserved_characters_are_decoded_for_matching(tp):
    assert body_of(tp, "/%61pi") == "api"
    assert body_of(tp, "/%61%70%69") == "api"


def test_merge_slashes_inside_path(tp):
    assert body_of(tp, "/x//y") == "xy"
    assert body_of(tp, "///x///y") == "xy"


def test_dot_segments_cannot_escape_a_prefix_route(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/public/../secret")
    assert resp.status == 404, resp
    assert not origin.snapshot(), f"/public/../secret reached the origin: {origin.snapshot()}"


@pytest.mark.parametrize("target", ["/public/%2e%2e/secret", "/public/%2E%2E/secret", "/public/.%2e/secret"])
def test_encoded_dot_segments_cannot_escape_a_prefix_route(tp, origin, target):
    resp = rawhttp.request(tp.port(), "GET", target)
    if resp.status == 200:
        # Routed to /public/*: then the origin must not receive a path that climbs out of it.
        seen = resp.json()["path"]
        segments = [urllib.parse.unquote(s) for s in seen.split("/")]
        assert ".." not in segments, f"{target} reached the origin as {seen}"
        assert seen.startswith("/public/")
    else:
        assert resp.status in (400, 404), resp


def test_merge_slashes_off_keeps_empty_segments(origin, turnpike):
    cfg = base_config(origin, routes=ROUTES, listeners=LISTENERS, limits={"merge_slashes": False})
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/x//y").status == 404
    assert body_of(tp, "/x/y") == "xy"

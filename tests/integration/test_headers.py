"""Header handling: hop-by-hop fields are dropped both ways, X-Forwarded-* and X-Real-IP are set
for the origin, configured request/response header operations apply, static responses."""
import urllib.parse

import pytest

import rawhttp
from harness import base_config


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    routes = [
        {"name": "ops", "match": {"paths": ["/ops/*"]}, "upstream": "origin",
         "request_headers": {"set": {"x-a": "1"}, "add": {"x-b": "2"}, "remove": ["x-c"]},
         "response_headers": {"set": {"x-r": "new"}, "add": {"x-ra": "added"}, "remove": ["x-rm"]}},
        {"name": "static", "match": {"paths": ["/static"]},
         "respond": {"status": 418, "headers": {"content-type": "text/plain", "x-static": "yes"},
                     "body": "short and stout\n"}},
        {"name": "static-ops", "match": {"paths": ["/static-ops"]},
         "respond": {"status": 200, "headers": {"content-type": "text/plain"}, "body": "ok\n"},
         "response_headers": {"set": {"x-static-op": "set"}}},
        {"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"},
    ]
    return turnpike_module(base_config(origin_module, routes=routes))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def echo_headers(resp):
    assert resp.status == 200, resp
    return [(n.lower(), v) for n, v in resp.json()["headers"]]


def values(headers, name):
    return [v for n, v in headers if n == name]


def test_hop_by_hop_request_headers_are_not_forwarded(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/hop", headers=[
        ("Connection", "keep-alive, X-Custom-Hop"),
        ("X-Custom-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "foo/1"),
        ("Proxy-Connection", "keep-alive"),
        ("X-End-To-End", "kept"),
    ])
    headers = echo_headers(resp)
    names = {n for n, _ in headers}
    for name in ("keep-alive", "te", "upgrade", "proxy-connection", "x-custom-hop"):
        assert name not in names, f"hop-by-hop {name} forwarded: {headers}"
    for value in values(headers, "connection"):
        tokens = {t.strip().lower() for t in value.split(",")}
        assert tokens <= {"keep-alive", "close"}, f"client's Connection tokens forwarded: {value}"
    assert values(headers, "x-end-to-end") == ["kept"]


def test_hop_by_hop_response_headers_are_not_forwarded(tp, origin):
    query = urllib.parse.urlencode([("resp_header", "Connection:x-resp-hop"), ("resp_header", "X-Resp-Hop:1"),
                                    ("resp_header", "Keep-Alive:timeout=5"), ("resp_header", "Upgrade:foo/1"),
                                    ("resp_header", "X-End:kept")])
    resp = rawhttp.request(tp.port(), "GET", f"/echo/resp-hop?{query}")
    assert resp.status == 200
    assert resp.header("x-end") == "kept"
    for name in ("x-resp-hop", "keep-alive", "upgrade"):
        assert resp.header(name) is None, f"hop-by-hop {name} relayed to the client: {resp.headers}"
    assert not resp.has_token("connection", "x-resp-hop"), resp.headers


def test_forwarding_headers_are_set_for_origin(tp, origin):
    headers = echo_headers(rawhttp.request(tp.port(), "GET", "/echo/fwd", host="fwd.example"))
    assert values(headers, "x-forwarded-for") == ["127.0.0.1"]
    assert values(headers, "x-forwarded-proto") == ["http"]
    assert values(headers, "x-forwarded-host") == ["fwd.example"]
    assert values(headers, "x-real-ip") == ["127.0.0.1"]


def test_x_forwarded_for_is_appended_to_existing_value(tp, origin):
    headers = echo_headers(rawhttp.request(tp.port(), "GET", "/echo/xff",
                                           headers=[("X-Forwarded-For", "203.0.113.7")]))
    assert ", ".join(values(headers, "x-forwarded-for")) == "203.0.113.7, 127.0.0.1"


def test_x_forwarded_for_appends_after_several_existing_lines(tp, origin):
    headers = echo_headers(rawhttp.request(tp.port(), "GET", "/echo/xff2", headers=[
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.1, 192.0.2.9")]))
    assert ", ".join(values(headers, "x-forwarded-for")) == "203.0.113.7, 198.51.100.1, 192.0.2.9, 127.0.0.1"


def test_client_cannot_spoof_real_ip_or_forwarded_proto(tp, origin):
    headers = echo_headers(rawhttp.request(tp.port(), "GET", "/echo/spoof", headers=[
        ("X-Real-IP", "10.9.8.7"), ("X-Forwarded-Proto", "https")]))
    assert values(headers, "x-real-ip") == ["127.0.0.1"]
    assert values(headers, "x-forwarded-proto") == ["http"]


def test_end_to_end_headers_are_forwarded_with_all_values(tp, origin):
    headers = echo_headers(rawhttp.request(tp.port(), "GET", "/echo/e2e", headers=[
        ("X-Multi", "a"), ("X-Multi", "b"), ("Accept", "text/html"), ("User-Agent", "it/1")]))
    assert ", ".join(values(headers, "x-multi")) == "a, b"
    assert values(headers, "accept") == ["text/html"]
    assert values(headers, "user-agent") == ["it/1"]


def test_request_header_operations_are_applied(tp, origin):
    headers = echo_headers(rawhttp.request(tp.port(), "GET", "/ops/echo", headers=[
        ("X-A", "0"), ("X-B", "1"), ("X-C", "gone"), ("X-Keep", "yes")]))
    assert values(headers, "x-a") == ["1"], "set must replace the client's value"
    assert values(headers, "x-b") == ["1", "2"], "add must append a field line"
    assert values(headers, "x-c") == [], "remove must drop the field"
    assert values(headers, "x-keep") == ["yes"]


def test_response_header_operations_are_applied(tp, origin):
    query = urllib.parse.urlencode([("resp_header", "X-R:orig"), ("resp_header", "X-RA:orig"),
                                    ("resp_header", "X-RM:drop"), ("resp_header", "X-Other:kept")])
    resp = rawhttp.request(tp.port(), "GET", f"/ops/echo?{query}")
    assert resp.status == 200
    assert resp.header_all("x-r") == ["new"]
    assert resp.header_all("x-ra") == ["orig", "added"]
    assert resp.header_all("x-rm") == []
    assert resp.header_all("x-other") == ["kept"]


def test_static_response_route_returns_configured_response(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("GET", "/static")
        assert resp.status == 418
        assert resp.header("content-type") == "text/plain"
        assert resp.header("x-static") == "yes"
        assert resp.body == b"short and stout\n"
        head = conn.request("HEAD", "/static")
        assert head.status == 418
        assert head.body == b""
        assert conn.request("GET", "/static").body == b"short and stout\n"
    assert not origin.snapshot(), "a static route reached the origin"


def test_response_header_operations_apply_to_static_responses(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/static-ops")
    assert resp.status == 200
    assert resp.header("x-static-op") == "set"

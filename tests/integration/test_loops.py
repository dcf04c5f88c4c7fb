"""Via (RFC 9110 §7.6.3) and forwarding loops: every forwarded request carries this gateway's Via
entry after the client's, and a request that comes back to be forwarded again is answered
508 Loop Detected instead of circling until a header limit stops it."""
import json

import pytest

import rawhttp
from h2client import H2Client
from harness import base_config, respond_route, upstream

PSEUDONYM = "gw-test-1"


def echoed(resp) -> dict:
    assert resp.status == 200, resp
    return resp.json()


def via_values(recorded) -> list:
    return [v for n, v in recorded["headers"] if n.lower() == "via"]


@pytest.fixture
def tp(origin, turnpike):
    cfg = base_config(origin, via=PSEUDONYM)
    cfg["listeners"][0]["http2"] = {"enabled": True}
    return turnpike(cfg)


def test_forwarded_request_carries_via_after_the_clients_entries(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/via", headers=[("Via", "1.0 fred, 1.1 wilma")])
    assert via_values(echoed(resp)) == ["1.0 fred, 1.1 wilma", f"1.1 {PSEUDONYM}"]


def test_via_names_the_protocol_the_client_used(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/via10", version="HTTP/1.0")
    assert via_values(echoed(resp)) == [f"1.0 {PSEUDONYM}"]
    client = H2Client(tp.port())
    try:
        r = client.get("/echo/via2")
        assert r.status == 200, r
        assert via_values(json.loads(bytes(r.body))) == [f"2 {PSEUDONYM}"]
    finally:
        client.close()


def test_a_request_that_already_passed_here_is_not_forwarded_again(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/loop", headers=[("Via", f"1.1 other, 1.1 {PSEUDONYM}")])
    assert resp.status == 508, resp
    assert resp.json()["error"] == "loop_detected"
    assert origin.snapshot() == [], "the looping request reached the origin"
    # A pseudonym that merely contains ours, or sits in a comment, is someone else.
    for via in (f"1.1 {PSEUDONYM}-2", f"1.1 fred ({PSEUDONYM})"):
        assert rawhttp.request(tp.port(), "GET", "/echo/other", headers=[("Via", via)]).status == 200, via


def test_a_route_leading_back_to_our_own_listener_ends_in_508(origin, turnpike):
    # The defect: a route without `listeners:` also served the internal listener that is its own
    # upstream, and one request looped thousands of times until X-Forwarded-For grew too long.
    cfg = base_config(origin, via=PSEUDONYM,
                      listeners=[{"name": "public", "address": "127.0.0.1", "port": 0},
                                 {"name": "internal", "address": "127.0.0.1", "port": 0}])
    tp = turnpike(cfg)
    cfg["upstreams"] = [upstream("origin", [f"127.0.0.1:{tp.port('internal')}"])]
    tp.reload(cfg)
    resp = rawhttp.request(tp.port(), "GET", "/echo/circle")
    assert resp.status == 508, resp
    assert resp.json()["error"] == "loop_detected"
    assert origin.snapshot() == []


def test_an_internal_listener_may_still_answer_a_forwarded_request(origin, turnpike):
    # Forwarding to our own listener is not a loop when that listener answers locally.
    cfg = base_config(origin, via=PSEUDONYM,
                      listeners=[{"name": "public", "address": "127.0.0.1", "port": 0},
                                 {"name": "internal", "address": "127.0.0.1", "port": 0}],
                      routes=[dict(respond_route("internal", ["/*"], "from internal"), listeners=["internal"]),
                              {"name": "out", "match": {"paths": ["/*"]}, "upstream": "origin",
                               "listeners": ["public"]}])
    tp = turnpike(cfg)
    cfg["upstreams"] = [upstream("origin", [f"127.0.0.1:{tp.port('internal')}"])]
    tp.reload(cfg)
    resp = rawhttp.request(tp.port(), "GET", "/anything")
    assert resp.status == 200, resp
    assert resp.body == b"from internal"


def test_via_off_adds_nothing_and_detects_nothing(origin, turnpike):
    tp = turnpike(base_config(origin, via="off"))
    resp = rawhttp.request(tp.port(), "GET", "/echo/off", headers=[("Via", "1.1 turnpike")])
    assert via_values(echoed(resp)) == ["1.1 turnpike"]

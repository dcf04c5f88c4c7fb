"""Client connection semantics: keepalive, pipelining, Connection: close, HTTP/1.0, Expect."""
import hashlib
import os

import pytest

import rawhttp
from harness import base_config
from origin import pattern_sha256


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    return turnpike_module(base_config(origin_module))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def test_keepalive_serves_several_requests_on_one_connection(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(5):
            resp = conn.request("GET", f"/echo/ka?i={i}")
            assert resp.status == 200
            assert resp.json()["query"] == f"i={i}"
            assert not resp.has_token("connection", "close"), resp
        assert not conn.wait_closed(0.2)
    assert len(origin.snapshot()) == 5


def test_pipelined_requests_get_responses_in_order(tp, origin):
    body = b"pipelined body"
    data = (rawhttp.build_request("GET", "/sleep/300?n=0")  # slowest first: order must still hold
            + rawhttp.build_request("POST", "/echo/pipe?n=1", body=body)
            + rawhttp.build_request("GET", "/echo/pipe?n=2"))
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(data)
        responses = [conn.read_final_response() for _ in range(3)]
    assert [r.status for r in responses] == [200, 200, 200], responses
    assert [r.json()["query"] for r in responses] == ["n=0", "n=1", "n=2"]
    assert responses[1].json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_connection_close_is_honoured(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("GET", "/echo/close", headers=[("Connection", "close")])
        assert resp.status == 200
        assert resp.has_token("connection", "close"), resp
        assert conn.wait_closed(3.0), "connection still open after Connection: close"


def test_http10_response_closes_without_keepalive(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("GET", "/echo/http10", version="HTTP/1.0")
        assert resp.status == 200
        assert resp.json()["path"] == "/echo/http10"
        assert conn.wait_closed(3.0), "HTTP/1.0 connection without keep-alive left open"


def test_http10_keepalive_keeps_connection_open(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(2):
            resp = conn.request("GET", f"/echo/http10-ka?i={i}", headers=[("Connection", "keep-alive")],
                                version="HTTP/1.0")
            assert resp.status == 200
            assert resp.framing == "content-length", resp
            assert resp.has_token("connection", "keep-alive"), "HTTP/1.0 keep-alive response must say so"


def test_http10_client_never_gets_chunked_response(tp, origin):
    n = 200_000
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("GET", f"/chunked/{n}", version="HTTP/1.0")
        assert resp.status == 200
        assert resp.header("transfer-encoding") is None, "chunked is not HTTP/1.0 (RFC 9112 §6.1)"
        assert resp.body_len == n
        assert resp.body_sha256 == pattern_sha256(n)


def test_expect_100_continue_gets_interim_then_final_response(tp, origin):
    body = os.urandom(1000)
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(rawhttp.build_request("POST", "/echo/expect",
                                        [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        interim = conn.read_response(timeout=5.0)
        assert interim.status == 100, f"expected 100 Continue before sending the body, got {interim}"
        conn.send(body)
        final = conn.read_final_response()
        assert final.status == 200, final
        echo = final.json()
        assert echo["body_len"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_unknown_expectation_is_rejected_with_417(tp, origin):
    resp = rawhttp.request(tp.port(), "POST", "/echo/expect-odd",
                           headers=[("Expect", "something-else"), ("Content-Length", "3")], body=b"abc")
    assert resp.status == 417, resp
    assert not origin.snapshot(), "a request with an unknown expectation reached the origin"


def test_many_idle_keepalive_connections_are_parked_and_still_served(origin, turnpike):
    """Past 256 connections per worker, idle keepalive connections are parked without a
    coroutine; each must still serve its next request, pipelined bytes included."""
    inst = turnpike(base_config(origin, workers=1))
    conns = []
    try:
        for i in range(300):
            c = rawhttp.HttpConn(inst.port())
            c.__enter__()
            conns.append(c)
            resp = c.request("GET", f"/echo/first?i={i}")
            assert resp.status == 200
        import time
        time.sleep(0.5)  # the worker's sweep parks the ones still waiting in their coroutine
        for i, c in enumerate(conns):
            resp = c.request("GET", f"/echo/second?i={i}")
            assert resp.status == 200 and resp.json()["query"] == f"i={i}"
        # Two pipelined requests arriving at a parked connection are both answered, in order.
        conns[0].send(b"GET /echo/p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo/p2 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conns[0].read_response().json()["path"] == "/echo/p1"
        assert conns[0].read_response().json()["path"] == "/echo/p2"
    finally:
        for c in conns:
            c.__exit__(None, None, None)

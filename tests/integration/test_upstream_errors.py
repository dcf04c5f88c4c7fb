"""Upstream failures become short JSON errors (502, 504), broken origin responses never reach the
client as if valid, and connect failures are retried on another node."""
import time

import pytest

import rawhttp
from harness import base_config, json_access_log, upstream, wait_access_entry
from origin import closed_port


def assert_json_error(resp, status):
    assert resp.status == status, resp
    assert (resp.header("content-type") or "").startswith("application/json"), resp
    assert resp.body_len < 1024, "error bodies should be short"
    assert "error" in resp.json(), resp


def test_nothing_listening_on_node_is_502_json(origin, turnpike):
    dead = closed_port()
    tp = turnpike(base_config(upstreams=[upstream("origin", [f"127.0.0.1:{dead}"])],
                              routes=[{"match": {"paths": ["/*"]}, "upstream": "origin"}]))
    with rawhttp.HttpConn(tp.port()) as conn:
        first = conn.request("GET", "/echo")
        assert_json_error(first, 502)
        if first.has_token("connection", "close"):
            assert conn.wait_closed(3.0)
            return
        # Kept open: then it must really be usable.
        assert_json_error(conn.request("GET", "/echo"), 502)


def test_origin_slower_than_read_timeout_is_504_json(origin, turnpike):
    up = upstream("origin", [origin.address], timeouts={"connect": "2s", "send": "5s", "read": "1s"})
    tp = turnpike(base_config(origin, upstreams=[up]))
    start = time.monotonic()
    resp = rawhttp.request(tp.port(), "GET", "/sleep/3000")
    elapsed = time.monotonic() - start
    assert_json_error(resp, 504)
    assert 0.8 <= elapsed < 2.9, f"504 after {elapsed:.2f}s with read timeout 1s"
    # A fast request afterwards is fine.
    assert rawhttp.request(tp.port(), "GET", "/echo/fast").status == 200


@pytest.mark.parametrize("kind", ["status-line", "header", "content-length", "garbage", "empty"])
def test_malformed_origin_response_is_502(origin, turnpike, kind):
    tp = turnpike(base_config(origin))
    resp = rawhttp.request(tp.port(), "GET", f"/malformed/{kind}")
    assert_json_error(resp, 502)


def test_truncated_origin_body_is_not_passed_off_as_complete(origin, turnpike):
    tp = turnpike(base_config(origin))
    with rawhttp.HttpConn(tp.port(), timeout=10) as conn:
        conn.send_request("GET", "/malformed/truncated")
        try:
            resp = conn.read_final_response()
        except rawhttp.ConnectionClosed:
            return  # headers relayed, then the client connection closed: correct
        assert resp.status == 502, f"truncated origin body delivered as complete: {resp}"


def test_connect_failure_is_retried_on_another_node(origin, turnpike):
    dead = closed_port()
    up = upstream("origin", [f"127.0.0.1:{dead}", origin.address], retries=2)
    tp = turnpike(base_config(origin, upstreams=[up]))
    statuses = []
    for i in range(10):
        statuses.append(rawhttp.request(tp.port(), "GET", f"/echo/retry?i={i}").status)
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(10):
            statuses.append(conn.request("GET" if i % 2 else "HEAD", f"/echo/retry-ka?i={i}").status)
    assert statuses == [200] * 20, statuses
    assert len(origin.snapshot()) == 20


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_closing_while_the_upstream_works_is_logged_499_and_cut_short(origin, turnpike, tmp_path, how):
    """An HTTP/1.1 client that goes away while the origin is still working: noticed within a
    sweep tick or two (nothing reads the client meanwhile), the upstream request is abandoned and
    its connection closed, and the access log says 499 client_reset, as nginx does. A client with
    a pipelined request waiting is not mistaken for one that left."""
    import socket
    import struct
    log = tmp_path / "access.log"
    tp = turnpike(json_access_log(base_config(origin), log))
    conn = rawhttp.HttpConn(tp.port())
    conn.send_request("GET", "/sleep/4000")
    origin.wait_for_path("/sleep/4000", timeout=5)
    gone = time.monotonic()
    if how == "reset":
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    entry = wait_access_entry(log, "/sleep/4000", timeout=3.0 - (time.monotonic() - gone))
    assert entry is not None, "not logged within 3 s: the upstream request was not cut short"
    assert entry["status"] == 499 and entry["error"] == "client_reset", entry
    assert entry["duration_us"] < 3_000_000, entry

    # Pipelined: the second request waits in the socket while the first one's upstream works.
    with rawhttp.HttpConn(tp.port()) as c:
        c.send(rawhttp.build_request("GET", "/sleep/600?n=1") + rawhttp.build_request("GET", "/echo/pipelined?n=2"))
        first = c.read_final_response()
        second = c.read_final_response()
        assert first.status == 200 and second.status == 200
        assert second.json()["query"] == "n=2"
    assert rawhttp.request(tp.port(), "GET", "/echo/after").status == 200

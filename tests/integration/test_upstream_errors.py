"""Upstream failures become short JSON errors (502, 504), broken origin responses never reach the
client as if valid, and connect failures are retried on another node."""
import time

import pytest

import rawhttp
from harness import base_config, json_access_log, upstream, wait_access_entry
from origin import closed_port, pattern_sha256


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


def _warnings_about(tp, node: str) -> list:
    return [line for line in tp.logs().splitlines() if "[warning]" in line and f": {node}: " in line]


def test_refused_node_is_warned_rate_limited_and_every_try_is_in_the_access_log(origin, turnpike, tmp_path):
    """A node refusing connections is named in the error log at warning level, once per interval
    (10 s) on a worker however many requests it fails, and each request's access-log entry lists
    every node it tried with that try's status (nginx's $upstream_addr and $upstream_status)."""
    dead = closed_port()
    log = tmp_path / "access.log"
    up = upstream("origin", [f"127.0.0.1:{dead}", origin.address], retries=2)
    tp = turnpike(json_access_log(base_config(origin, upstreams=[up], workers=1), log))
    with rawhttp.HttpConn(tp.port()) as conn:
        statuses = [conn.request("GET", f"/echo/try?i={i}").status for i in range(8)]
    assert statuses == [200] * 8, statuses

    tp.wait_log(r"\[warning\].*connect_failed")  # the error log is asynchronous
    warnings = _warnings_about(tp, f"127.0.0.1:{dead}")
    assert len(warnings) == 1, tp.logs()
    assert f"upstream origin: 127.0.0.1:{dead}: connect_failed: Connection refused" in warnings[0], warnings

    entries = [wait_access_entry(log, f"/echo/try?i={i}", timeout=5.0) for i in range(8)]
    assert all(entries), entries
    retried = [e for e in entries if e["upstream_addr"] == f"127.0.0.1:{dead}, {origin.address}"]
    assert retried, entries  # the round-robin sends about every other request to the dead node first
    for e in retried:
        assert e["upstream_statuses"] == "502, 200" and e["upstream_status"] == 200, e
    for e in entries:
        assert e["upstream_addr"].endswith(origin.address) and e["status"] == 200, e


def test_timed_out_node_is_warned(origin, turnpike):
    up = upstream("origin", [origin.address], timeouts={"connect": "2s", "send": "5s", "read": "500ms"})
    tp = turnpike(base_config(origin, upstreams=[up], workers=1))
    assert rawhttp.request(tp.port(), "GET", "/sleep/1500").status == 504
    tp.wait_log(r"\[warning\].*: timeout")  # the error log is asynchronous: the line may come after the 504
    warnings = _warnings_about(tp, origin.address)
    assert len(warnings) == 1 and warnings[0].endswith(f"upstream origin: {origin.address}: timeout"), tp.logs()


@pytest.mark.parametrize("retries", [0, 2])
def test_stale_pooled_connections_never_reach_the_client(origin, turnpike, retries):
    """An origin that drops every reused keepalive connection unanswered (no `Connection: close`):
    a GET on such a connection goes again on a new connection, not on the next parked one (which
    is just as dead), and not counted against `retries`. Each round first parks a burst of
    connections, then sends requests one at a time that each find several dead ones parked."""
    import concurrent.futures
    up = upstream("origin", [origin.address], retries=retries)
    tp = turnpike(base_config(origin, upstreams=[up], workers=1))
    statuses = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        for rnd in range(25):
            burst = [pool.submit(rawhttp.request, tp.port(), "GET", f"/close-reused/30?r={rnd}&i={i}")
                     for i in range(10)]
            statuses += [f.result().status for f in burst]
            with rawhttp.HttpConn(tp.port()) as conn:
                statuses += [conn.request("GET", f"/close-reused?r={rnd}&s={i}").status for i in range(2)]
    assert len(statuses) == 300
    failed = [s for s in statuses if s != 200]
    assert not failed, f"{len(failed)} of 300 failed: {sorted(set(failed))}"
    assert not origin.errors, origin.errors


def test_close_delimited_body_whose_close_comes_with_its_last_bytes_ends_at_once(origin, turnpike):
    """On a reused upstream connection (its reads are edge waits, tls/edge_wait.h), the origin
    sends a close-delimited response and its close in one TCP segment: the read that takes the
    last bytes comes back short with the end of stream queued behind them, and no new readiness
    edge follows. The body must end there, complete, not when the read timeout strikes."""
    up = upstream("origin", [origin.address], timeouts={"connect": "2s", "send": "5s", "read": "3s"})
    tp = turnpike(base_config(origin, upstreams=[up], workers=1))
    for i in range(3):
        with rawhttp.HttpConn(tp.port()) as conn:
            assert conn.request("GET", f"/echo/warm?i={i}").status == 200  # parks a connection
            start = time.monotonic()
            resp = conn.request("GET", f"/close-corked/5000?i={i}")
            elapsed = time.monotonic() - start
            assert resp.status == 200 and resp.body_len == 5000, resp
            assert resp.body_sha256 == pattern_sha256(5000)
            assert elapsed < 2.0, f"the body ended {elapsed:.1f}s later, at the read timeout"

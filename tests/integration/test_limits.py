"""Client limits: request line (414), header section size and count (431), body size (413), and
the header, keepalive and requests-per-connection limits that close connections."""
import time

import pytest

import rawhttp
from harness import base_config

LIMITS = {
    "max_request_line": "1k",
    "max_header_bytes": "4k",
    "max_headers": 20,
    "max_body_size": "64k",
    "header_timeout": "1s",
    "keepalive_timeout": "1s",
    "max_requests_per_connection": 3,
}


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    return turnpike_module(base_config(origin_module, limits=LIMITS))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def assert_origin_untouched(origin):
    time.sleep(0.2)
    assert origin.snapshot() == [] and origin.total_bytes == 0, f"origin received {origin.snapshot()}"


def test_request_line_within_limit_is_served(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/" + "a" * 900)
    assert resp.status == 200


def test_request_line_over_limit_is_rejected_with_414(tp, origin):
    resp, _ = rawhttp.send_raw(tp.port(), rawhttp.build_request("GET", "/echo/" + "a" * 2000))
    assert resp is not None and resp.status == 414, resp
    assert_origin_untouched(origin)


def test_header_section_within_limits_is_served(tp, origin):
    headers = [(f"X-H{i}", "v" * 100) for i in range(15)]  # 16 fields with Host, ~1.7 KB
    assert rawhttp.request(tp.port(), "GET", "/echo/h", headers=headers).status == 200


def test_header_section_over_byte_limit_is_rejected_with_431(tp, origin):
    headers = [(f"X-H{i}", "v" * 600) for i in range(10)]  # 11 fields, ~6 KB
    resp, _ = rawhttp.send_raw(tp.port(), rawhttp.build_request("GET", "/echo/big", headers))
    assert resp is not None and resp.status == 431, resp
    assert_origin_untouched(origin)


def test_too_many_header_fields_is_rejected_with_431(tp, origin):
    headers = [(f"X-H{i}", "v") for i in range(25)]
    resp, _ = rawhttp.send_raw(tp.port(), rawhttp.build_request("GET", "/echo/many", headers))
    assert resp is not None and resp.status == 431, resp
    assert_origin_untouched(origin)


def test_body_over_max_body_size_is_rejected_with_413(tp, origin):
    resp, _ = rawhttp.send_raw(tp.port(), rawhttp.build_request("POST", "/echo/body", body=b"x" * 100_000))
    assert resp is not None and resp.status == 413, resp
    assert_origin_untouched(origin)


def test_body_within_max_body_size_is_served(tp, origin):
    resp = rawhttp.request(tp.port(), "POST", "/echo/body-ok", body=b"x" * 60_000)
    assert resp.status == 200
    assert resp.json()["body_len"] == 60_000


def test_slowloris_head_is_cut_off_after_header_timeout(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        start = time.monotonic()
        conn.send(b"GET /echo/slow HTTP/1.1\r\nHost: test.local\r\n")
        closed = False
        for i in range(20):  # one field every 0.25 s: 5 s at most
            try:
                conn.send(b"X-Slow-%d: 1\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if conn.wait_closed(0.25):
                closed = True
                break
        elapsed = time.monotonic() - start
    assert closed, "a head trickled in for 5 s was never cut off (header_timeout: 1s)"
    assert 0.8 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s with header_timeout 1s"
    if conn.buf:
        assert bytes(conn.buf).startswith((b"HTTP/1.1 408", b"HTTP/1.0 408")), bytes(conn.buf[:200])
    assert_origin_untouched(origin)


def test_silent_connection_is_closed_after_header_timeout(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        start = time.monotonic()
        assert conn.wait_closed(5.0), "a connection that never sent a byte was kept open"
        assert time.monotonic() - start <= 3.0


def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/echo/ka1").status == 200
        start = time.monotonic()
        assert conn.wait_closed(5.0), "idle keepalive connection never closed (keepalive_timeout: 1s)"
        elapsed = time.monotonic() - start
        assert 0.7 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s with keepalive_timeout 1s"


def test_keepalive_timer_restarts_with_each_request(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/echo/t1").status == 200
        time.sleep(0.6)
        assert conn.request("GET", "/echo/t2").status == 200
        time.sleep(0.6)  # 1.2 s after the first request: still open, the timer restarted
        assert conn.request("GET", "/echo/t3", headers=[("Connection", "close")]).status == 200


def test_max_requests_per_connection_closes_after_the_last_one(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(2):
            resp = conn.request("GET", f"/echo/n{i}")
            assert resp.status == 200
            assert not resp.has_token("connection", "close"), f"request {i + 1} of 3 closed the connection"
        last = conn.request("GET", "/echo/n2")
        assert last.status == 200
        assert last.has_token("connection", "close"), "third of max 3 requests must say Connection: close"
        assert conn.wait_closed(3.0)


def test_limit_hits_are_counted_and_reported_at_shutdown(origin, turnpike):
    """Every limit hit is counted; the counts are printed when the process stops."""
    inst = turnpike(base_config(origin, limits=LIMITS))
    # One slowloris head (header timeout), one oversized header section (431), one smuggling
    # attempt (400), and one connection that reaches max_requests_per_connection.
    with rawhttp.HttpConn(inst.port()) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        assert conn.wait_closed(5.0)
    rawhttp.send_raw(inst.port(), b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    rawhttp.send_raw(inst.port(), b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    with rawhttp.HttpConn(inst.port()) as conn:
        for _ in range(3):
            conn.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.read_response().status == 200
    assert inst.stop() == 0
    logs = inst.logs()
    summary = [line for line in logs.splitlines() if "turnpike stopped:" in line]
    assert summary, logs[-2000:]
    fields = dict(item.split("=", 1) for item in summary[-1].split("turnpike stopped:")[1].split())
    assert int(fields["header_timeouts"]) >= 1, summary
    assert int(fields["bad_requests"]) >= 2, summary
    assert int(fields["max_requests_reached"]) >= 1, summary
    assert int(fields["requests"]) >= 3, summary


def test_slowloris_heads_at_the_connection_limit_make_way_for_new_clients(origin, turnpike):
    """A one-worker gateway full of connections stuck in a partial head (and nothing idle): new
    clients are still served, because the oldest partial heads give way once past a short grace."""
    limit = 20
    inst = turnpike(base_config(origin, workers=1,
                                limits={"max_connections_per_worker": limit, "header_timeout": "30s"}))
    slow, late = [], []
    try:
        for i in range(limit):
            conn = rawhttp.HttpConn(inst.port())
            conn.send(b"GET /echo/slow%d HTTP/1.1\r\nHost: test.local\r\nX-Slow: " % i)
            slow.append(conn)
        time.sleep(1.5)  # past the grace after which a partial head may be closed for a new client
        for i in range(3):
            resp = rawhttp.request(inst.port(), "GET", f"/echo/new{i}", timeout=5)
            assert resp.status == 200, resp
            # Full again (the new client has gone): one more slowloris, younger than the others.
            conn = rawhttp.HttpConn(inst.port())
            conn.send(b"GET /echo/late%d HTTP/1.1\r\nHost: test.local\r\nX-Slow: " % i)
            late.append(conn)
            time.sleep(0.2)  # its head is being read (not idle), the new client's close is seen
        time.sleep(0.3)
        closed = [i for i, conn in enumerate(slow) if conn.wait_closed(0.01)]
        assert closed == [0, 1, 2], f"closed to admit 3 new clients: {closed} (the oldest first)"
        assert not any(conn.wait_closed(0.01) for conn in late), "a younger partial head was closed"
    finally:
        for conn in slow + late:
            conn.close()
    assert inst.stop() == 0
    summary = [line for line in inst.logs().splitlines() if "turnpike stopped:" in line]
    assert summary, inst.logs()[-2000:]
    fields = dict(item.split("=", 1) for item in summary[-1].split("turnpike stopped:")[1].split())
    assert int(fields["slow_closed_for_limit"]) == 3, summary


def test_body_trickled_steadily_is_cut_off_by_body_deadline_with_408(origin, turnpike):
    """body_timeout bounds each gap; body_deadline the whole body: one byte every 0.3 s never
    trips the first and must trip the second."""
    inst = turnpike(base_config(origin, limits={"body_timeout": "10s", "body_deadline": "1500ms"}))
    with rawhttp.HttpConn(inst.port()) as conn:
        conn.send(b"POST /echo/drip HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100\r\n\r\n")
        start = time.monotonic()
        answered = False
        for _ in range(40):  # 12 s at most
            try:
                conn.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            if conn.wait_closed(0.3) or conn.buf:
                answered = True
                break
        elapsed = time.monotonic() - start
        assert answered, "a body trickled for 12 s was never cut off (body_deadline: 1500ms)"
        resp = conn.read_final_response(timeout=5)
    assert resp.status == 408, resp
    assert 1.2 <= elapsed <= 4.0, f"cut off after {elapsed:.2f}s with body_deadline 1500ms"

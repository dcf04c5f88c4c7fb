"""Proxying: methods, request bodies (Content-Length and chunked, re-framed for the origin), large
bodies streamed both ways, every response framing from the origin, and responses without a body."""
import hashlib
import os
import threading
import time

import pytest

import rawhttp
from harness import base_config
from origin import pattern_chunks, pattern_sha256

BIG = int(os.environ.get("TURNPIKE_IT_BIG_MB", "64")) * 1024 * 1024
MEDIUM = 5 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    return turnpike_module(base_config(origin_module))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def only_request(origin, path):
    reqs = [r for r in origin.snapshot() if r.path == path]
    assert len(reqs) == 1, f"origin saw {len(reqs)} requests for {path}: {origin.snapshot()}"
    return reqs[0]


def assert_proper_framing(rec, length):
    """The origin got a correctly framed body of `length` bytes (RFC 9112 §6)."""
    assert rec.framing in ("content-length", "chunked"), rec.raw_head
    if rec.framing == "content-length":
        assert rec.header_all("content-length") == [str(length)], rec.raw_head
        assert rec.header("transfer-encoding") is None, rec.raw_head
    else:
        assert rec.header("content-length") is None, rec.raw_head
    assert rec.body_len == length


def test_get_is_proxied_with_method_and_target(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/get?x=1&y=%2F")
    assert resp.status == 200, resp
    echo = resp.json()
    assert echo["method"] == "GET"
    assert echo["target"] == "/echo/get?x=1&y=%2F"
    rec = only_request(origin, "/echo/get")
    assert rec.body_len == 0
    assert rec.header("transfer-encoding") is None


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_content_length_body_reaches_origin_intact(tp, origin, method):
    body = os.urandom(100_000)
    resp = rawhttp.request(tp.port(), method, f"/echo/{method}", body=body)
    assert resp.status == 200, resp
    rec = only_request(origin, f"/echo/{method}")
    assert rec.method == method
    assert_proper_framing(rec, len(body))
    assert rec.body == body


def test_chunked_request_body_is_reframed_for_origin(tp, origin):
    pieces = [b"abc", b"0123456789", b"x" * 300]
    # Client chunk-size lines with leading zeros and extensions: the proxy must decode and
    # re-frame, never pass these bytes through.
    client_lines = ["0003;ext=1", "000A;a=\"b\"", "012C"]
    body = b"".join(b"%s\r\n%s\r\n" % (line.encode(), piece) for line, piece in zip(client_lines, pieces))
    body += b"0\r\n\r\n"
    data = rawhttp.build_request("POST", "/echo/chunked", [("Transfer-Encoding", "chunked")]) + body
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(data)
        resp = conn.read_final_response()
    assert resp.status == 200, resp
    rec = only_request(origin, "/echo/chunked")
    expected = b"".join(pieces)
    assert_proper_framing(rec, len(expected))
    assert rec.body == expected
    seen = {line.decode("latin-1") for line in rec.chunk_lines}
    assert not seen & set(client_lines), f"client chunk-size lines reached the origin verbatim: {rec.chunk_lines}"
    assert b";ext=1" not in rec.raw_head


def test_empty_chunked_request_body(tp, origin):
    data = rawhttp.build_request("POST", "/echo/empty-chunked", [("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n"
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(data)
        resp = conn.read_final_response()
        assert resp.status == 200, resp
        # The connection is still in sync: a second request works.
        assert conn.request("GET", "/echo/after-empty").status == 200
    rec = only_request(origin, "/echo/empty-chunked")
    assert rec.body_len == 0
    assert rec.framing in ("content-length", "chunked", "none")


def test_chunked_request_with_trailer_fields_is_accepted(tp, origin):
    body = rawhttp.chunked([b"hello ", b"world"])[:-2] + b"X-Trailer: 1\r\n\r\n"
    data = rawhttp.build_request("POST", "/echo/trailers", [("Transfer-Encoding", "chunked")]) + body
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(data)
        resp = conn.read_final_response()
        assert resp.status == 200, resp
        assert conn.request("GET", "/echo/after-trailers").status == 200
    rec = only_request(origin, "/echo/trailers")
    assert rec.body == b"hello world"


def _upload(port, head: bytes, body_pieces, timeout=180.0):
    """Sends head + body from a thread while reading the response; returns it."""
    conn = rawhttp.HttpConn(port, timeout=timeout)
    errors = []

    def sender():
        try:
            conn.send(head)
            for piece in body_pieces:
                conn.send(piece)
        except OSError as e:
            errors.append(e)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        resp = conn.read_final_response(timeout=timeout)
    finally:
        thread.join(timeout)
        conn.close()
    assert not errors, errors
    return resp


def test_large_content_length_upload_is_streamed_intact(tp, origin):
    head = rawhttp.build_request("POST", "/sink", [("Content-Length", str(BIG))])
    resp = _upload(tp.port(), head, pattern_chunks(BIG))
    assert resp.status == 200, resp
    assert resp.json() == {"length": BIG, "sha256": pattern_sha256(BIG)}
    assert_proper_framing(only_request(origin, "/sink"), BIG)


def test_large_chunked_upload_is_streamed_intact(tp, origin):
    head = rawhttp.build_request("POST", "/sink", [("Transfer-Encoding", "chunked")])
    pieces = (b"%x\r\n" % len(p) + bytes(p) + b"\r\n" for p in pattern_chunks(BIG, 100_003))
    resp = _upload(tp.port(), head, list_then_last(pieces, b"0\r\n\r\n"))
    assert resp.status == 200, resp
    assert resp.json() == {"length": BIG, "sha256": pattern_sha256(BIG)}
    assert_proper_framing(only_request(origin, "/sink"), BIG)


def list_then_last(gen, last):
    yield from gen
    yield last


def test_large_content_length_download_is_streamed_intact(tp, origin):
    with rawhttp.HttpConn(tp.port(), timeout=180) as conn:
        resp = conn.request("GET", f"/bytes/{BIG}")
        assert resp.status == 200
        assert resp.body_len == BIG
        assert resp.body_sha256 == pattern_sha256(BIG)
        assert conn.request("GET", "/echo/after-download").status == 200


def test_chunked_response_from_origin_is_relayed(tp, origin):
    with rawhttp.HttpConn(tp.port(), timeout=60) as conn:
        resp = conn.request("GET", f"/chunked/{MEDIUM}")
        assert resp.status == 200
        assert resp.framing in ("chunked", "content-length", "close")
        assert resp.body_len == MEDIUM
        assert resp.body_sha256 == pattern_sha256(MEDIUM)
        if resp.framing != "close":
            assert conn.request("GET", "/echo/after-chunked").status == 200


def test_close_delimited_response_from_origin_is_relayed(tp, origin):
    with rawhttp.HttpConn(tp.port(), timeout=60) as conn:
        resp = conn.request("GET", f"/close-delimited/{MEDIUM}")
        assert resp.status == 200
        assert resp.body_len == MEDIUM
        assert resp.body_sha256 == pattern_sha256(MEDIUM)
        if resp.framing != "close":
            # Re-framed for the client (chunked): the connection stays usable.
            assert resp.framing == "chunked", resp
            assert conn.request("GET", "/echo/after-close-delimited").status == 200


def test_head_response_has_no_body_and_connection_stays_in_sync(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        # HEAD and GET pipelined: any body bytes after the HEAD response would break the GET's.
        conn.send(rawhttp.build_request("HEAD", "/bytes/1000") + rawhttp.build_request("GET", "/echo/after-head"))
        head = conn.read_final_response("HEAD")
        assert head.status == 200
        assert head.header("content-length") in (None, "1000")
        nxt = conn.read_final_response()
        assert nxt.status == 200, nxt
        assert nxt.json()["path"] == "/echo/after-head"
    assert only_request(origin, "/bytes/1000").method == "HEAD"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_status_has_no_body_and_connection_stays_in_sync(tp, origin, status):
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(rawhttp.build_request("GET", f"/status/{status}") + rawhttp.build_request("GET", "/echo/after"))
        resp = conn.read_final_response()
        assert resp.status == status
        assert resp.header("transfer-encoding") is None, resp
        if status == 204:
            assert resp.header("content-length") is None, "RFC 9110 §8.6: no Content-Length in a 204"
        nxt = conn.read_final_response()
        assert nxt.status == 200, nxt
        assert nxt.json()["path"] == "/echo/after"


@pytest.mark.parametrize("status", [404, 500, 503])
def test_origin_error_status_is_relayed_unchanged(tp, origin, status):
    resp = rawhttp.request(tp.port(), "GET", f"/status/{status}")
    assert resp.status == status
    assert resp.body == f"status {status}\n".encode()


def test_upstream_connections_are_reused_across_requests(tp, origin):
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(10):
            assert conn.request("GET", f"/echo/reuse?i={i}").status == 200
    conns = {r.conn_id for r in origin.snapshot()}
    assert len(conns) <= 2, f"10 sequential requests used {len(conns)} upstream connections"


@pytest.mark.parametrize("idle_s", [0.05, 0.5])
def test_parked_connection_the_upstream_dropped_is_not_reused(tp, origin, idle_s):
    # The origin answers keep-alive, then drops the connection. A POST that follows (not retried
    # on another connection: it is not idempotent) must go out on a new connection, not fail with
    # 502: noticed while parked (0.5 s, several sweep ticks) or when taken out again (0.05 s).
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/drop-after").status == 200
    time.sleep(idle_s)
    body = b"x" * 1000
    with rawhttp.HttpConn(tp.port()) as conn:
        r = conn.request("POST", "/sink", body=body)
        assert r.status == 200, r.body
    sink = only_request(origin, "/sink")
    first = only_request(origin, "/drop-after")
    assert sink.conn_id != first.conn_id
    assert sink.body_sha256 == hashlib.sha256(body).hexdigest()


def test_body_digest_helper_matches_hashlib():
    # Guards the tests themselves: the pattern digest must be what hashlib computes.
    assert pattern_sha256(3_000_001) == hashlib.sha256(b"".join(bytes(p) for p in pattern_chunks(3_000_001))).hexdigest()

"""Request framing attacks (smuggling, desync) and malformed heads: each is answered 400, the
connection is closed, nothing at all reaches the origin (RFC 9112 §2.2, §3, §5, §6), and the
attack leaves nothing behind: ordinary requests from other clients, on new connections, are
served right after it. The gateway runs one worker, so those requests reuse the attacker's
recycled request context."""
import time

import pytest

import rawhttp
from harness import base_config

HOST = b"Host: test.local\r\n"


def req(head_lines: bytes, body: bytes = b"", line: bytes = b"POST /echo HTTP/1.1") -> bytes:
    return line + b"\r\n" + head_lines + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"

ATTACKS = {
    # RFC 9112 §6.3: Content-Length with Transfer-Encoding is a smuggling vector.
    "cl-and-te": req(HOST + b"Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\n"),
    "te-and-cl": req(HOST + CHUNKED + b"Content-Length: 5\r\n", b"0\r\n\r\n"),
    # §6.3: differing Content-Length values are unrecoverable.
    "two-differing-content-lengths": req(HOST + b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
    "content-length-list-differing": req(HOST + b"Content-Length: 5, 6\r\n", b"hello!"),
    # §6.2: Content-Length = 1*DIGIT.
    "content-length-plus-sign": req(HOST + b"Content-Length: +5\r\n", b"hello"),
    "content-length-hex": req(HOST + b"Content-Length: 0x5\r\n", b"hello"),
    "content-length-trailing-letters": req(HOST + b"Content-Length: 5a\r\n", b"hello"),
    "content-length-negative": req(HOST + b"Content-Length: -5\r\n", b"hello"),
    "content-length-empty": req(HOST + b"Content-Length: \r\n", b"hello"),
    "content-length-inner-space": req(HOST + b"Content-Length: 5 5\r\n", b"hello"),
    "content-length-overflow": req(HOST + b"Content-Length: 99999999999999999999999\r\n", b"hello"),
    # §6.3: chunked must be the final transfer coding of a request.
    "te-chunked-then-gzip": req(HOST + b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
    "te-gzip-only": req(HOST + b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"),
    # §6.1: Transfer-Encoding in an HTTP/1.0 message means the framing cannot be trusted.
    "te-in-http10": req(HOST + CHUNKED, b"5\r\nhello\r\n0\r\n\r\n", line=b"POST /echo HTTP/1.0"),
    # §7.1: chunk-size = 1*HEXDIG.
    "chunk-size-not-hex": req(HOST + CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-negative": req(HOST + CHUNKED, b"-1\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-0x-prefix": req(HOST + CHUNKED, b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n"),
    "chunk-size-huge": req(HOST + CHUNKED, b"fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    # §5: field syntax.
    "bare-cr-in-header": req(HOST + b"X-A: a\rb\r\n"),
    "obs-fold": req(HOST + b"X-A: a\r\n b\r\n"),
    "obs-fold-tab": req(HOST + b"X-A: a\r\n\tb\r\n"),
    "space-before-colon": req(HOST + b"X-A : 1\r\n"),
    "nul-in-header-value": req(HOST + b"X-A: a\x00b\r\n"),
    "ctl-in-header-value": req(HOST + b"X-A: a\x01b\r\n"),
    "ctl-in-header-name": req(HOST + b"X\x01A: 1\r\n"),
    "nul-in-header-name": req(HOST + b"X\x00A: 1\r\n"),
    "empty-header-name": req(HOST + b": 1\r\n"),
    "header-without-colon": req(HOST + b"X-A 1\r\n"),
    # §3.2: exactly one Host in HTTP/1.1.
    "missing-host-http11": req(b"X-A: 1\r\n", line=b"GET /echo HTTP/1.1"),
    "duplicate-host": req(HOST + b"Host: other.test\r\n", line=b"GET /echo HTTP/1.1"),
    # §3: request-line and version syntax.
    "version-http12": req(HOST, line=b"GET /echo HTTP/1.2"),
    "version-garbage": req(HOST, line=b"GET /echo HTTX/1.1"),
    "version-without-minor": req(HOST, line=b"GET /echo HTTP/1"),
    "request-line-extra-space": req(HOST, line=b"GET /a b HTTP/1.1"),
}


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    return turnpike_module(base_config(origin_module, workers=1))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def test_valid_request_reaches_origin(tp, origin):
    # The control: without it, "nothing reached the origin" below would prove nothing.
    resp = rawhttp.request(tp.port(), "POST", "/echo", body=b"hello")
    assert resp.status == 200, resp
    assert origin.snapshot()[0].body == b"hello"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_framing_attack_is_rejected_with_400_and_close(tp, origin, name):
    resp, closed = rawhttp.send_raw(tp.port(), ATTACKS[name])
    time.sleep(0.2)  # anything forwarded asynchronously would have arrived by now
    problems = []
    if resp is None:
        problems.append("connection closed without a response")
    elif resp.status != 400:
        problems.append(f"answered {resp.status}, not 400: {resp}")
    if not closed:
        problems.append("connection left open after the response")
    if origin.snapshot() or origin.total_bytes:
        problems.append(f"origin received {origin.total_bytes} bytes, requests {origin.snapshot()}, "
                        f"errors {origin.errors}")
    problems += [f"afterwards, {p}" for p in rawhttp.clean_request_problems(tp.port())]
    assert not problems, f"{name}: " + "; ".join(problems)


def test_proxy_still_serves_after_attacks(tp, origin):
    resp = rawhttp.request(tp.port(), "GET", "/echo/after-attacks")
    assert resp.status == 200
    assert tp.alive()

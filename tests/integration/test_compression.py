"""The compression plugin in the real binary: gzip and brotli bodies that decompress to the
origin's bytes (HTTP/1.1 and HTTP/2 clients; Content-Length, chunked and close-delimited
origins), Accept-Encoding negotiation with q-values, every skip rule, the head rewrites (Vary,
ETag, Content-Length, Accept-Ranges), a large body streamed with bounded gateway RSS, streams
freed when the client leaves mid-body, and schema errors."""
from __future__ import annotations

import hashlib
import http.server
import os
import random
import socket
import threading
import time
import urllib.parse
import zlib

import brotli
import pytest

import rawhttp
from h2client import CANCEL, H2Client, vm_rss_kib
from h2origin import H2Origin
from harness import base_config, check_config, dump_yaml, ERROR_LINE, upstream
from origin import pattern_sha256

# ---- the origin: documents of any type, length, framing and header fields ---------------------


def _corpus_block() -> bytes:
    """1 MiB of JSON-like text (deterministic): compresses about 4-5x, like real API answers."""
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "order", "status", "shipped", "pending", "price", "user"]
    out = []
    size = 0
    while size < 1 << 20:
        line = '{"id":%d,"name":"%s %s","tags":["%s","%s"],"price":%d.%02d,"ok":%s},\n' % (
            rng.randrange(10**6), rng.choice(words), rng.choice(words), rng.choice(words), rng.choice(words),
            rng.randrange(1000), rng.randrange(100), rng.choice(["true", "false"]))
        out.append(line)
        size += len(line)
    return "".join(out).encode()[: 1 << 20]


BLOCK = _corpus_block()


def document(n: int) -> bytes:
    """The first n bytes of the endless corpus (BLOCK repeated)."""
    reps, rest = divmod(n, len(BLOCK))
    return BLOCK * reps + BLOCK[:rest]


def document_pieces(n: int, piece: int = 65536):
    sent = 0
    while sent < n:
        take = min(piece, n - sent)
        start = sent % len(BLOCK)
        chunk = BLOCK[start:start + take]
        if len(chunk) < take:
            chunk += BLOCK[: take - len(chunk)]
        yield chunk
        sent += take


class DocHandler(http.server.BaseHTTPRequestHandler):
    """GET /doc?len=N&type=T&framing=cl|chunked|close&status=S&h=Name:Value (repeatable)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query, keep_blank_values=True)
        n = int(q.get("len", ["20000"])[0])
        status = int(q.get("status", ["200"])[0])
        framing = q.get("framing", ["cl"])[0]
        self.send_response(status)
        ctype = q.get("type", ["text/html; charset=utf-8"])[0]
        if ctype:
            self.send_header("Content-Type", ctype)
        for h in q.get("h", []):
            name, _, value = h.partition(":")
            self.send_header(name, value)
        if status in (204, 304):
            self.end_headers()
            return
        if framing == "cl":
            self.send_header("Content-Length", str(n))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        try:
            for piece in document_pieces(n, 16411):  # odd sizes
                if framing == "chunked":
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
            if framing == "chunked":
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@pytest.fixture(scope="module")
def doc_origin():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DocHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LIVE_PLUGIN = """
local compress = require "turnpike.compress"
return {
  name = "compress-live", version = "1.0", priority = 100,
  schema = { type = "object" },
  access = function() turnpike.exit(200, tostring(compress.live())) end,
}
"""


def config(doc_origin, conf=None, tmp_path=None, **top):
    """Route /doc → the doc origin with compression (conf), /live → the live-stream count."""
    routes = [{"name": "doc", "match": {"paths": ["/*"]}, "upstream": "docs",
               "plugins": {"compression": conf or {}}}]
    cfg = base_config(None, routes=routes, upstreams=[upstream("docs", [doc_origin])], **top)
    if tmp_path is not None:
        (tmp_path / "compress-live.lua").write_text("local turnpike = require 'turnpike'\n" + LIVE_PLUGIN)
        cfg["plugin_paths"] = [str(tmp_path)]
        routes.insert(0, {"name": "live", "match": {"paths": ["/live"]}, "upstream": "docs",
                          "plugins": {"compress-live": {}}})
    return cfg


@pytest.fixture(scope="module")
def tp(turnpike_module, doc_origin, tmp_path_factory):
    return turnpike_module(config(doc_origin, tmp_path=tmp_path_factory.mktemp("plugins")))


def get(tp, target, accept=None, method="GET", headers=()):
    h = list(headers)
    if accept is not None:
        h.append(("Accept-Encoding", accept))
    return rawhttp.request(tp.port(), method, target, headers=h, timeout=30)


def decode(coding, body: bytes) -> bytes:
    if coding == "gzip":
        return zlib.decompress(body, wbits=31)
    if coding == "br":
        return brotli.decompress(body)
    assert coding is None, coding
    return body


def live_streams(tp) -> int:
    return int(get(tp, "/live").body)


# ---- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("coding", ["gzip", "br"])
@pytest.mark.parametrize("framing", ["cl", "chunked", "close"])
def test_body_decompresses_to_the_origins_bytes(tp, coding, framing):
    n = 300_000
    resp = get(tp, f"/doc?len={n}&framing={framing}", accept=coding)
    assert resp.status == 200
    assert resp.header("content-encoding") == coding
    assert resp.header("content-length") is None and resp.framing == "chunked"
    assert resp.has_token("vary", "accept-encoding")
    assert len(resp.body) < n / 3
    assert decode(coding, resp.body) == document(n)


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_http2_client_gets_a_compressed_body(tp, coding):
    c = H2Client(tp.port())
    try:
        r = c.get("/doc?len=200000", headers=[("accept-encoding", coding)])
        assert r.status == 200
        assert r.header("content-encoding") == coding
        assert r.header("content-length") is None
        assert decode(coding, bytes(r.body)) == document(200000)
        # One that is not compressed keeps its length over HTTP/2 too.
        r = c.get("/doc?len=5000&type=image/png")
        assert r.header("content-encoding") is None and r.header("content-length") == "5000"
        assert bytes(r.body) == document(5000)
    finally:
        c.close()


def test_http10_client_gets_a_close_delimited_compressed_body(tp):
    resp = rawhttp.request(tp.port(), "GET", "/doc?len=50000", headers=[("Accept-Encoding", "gzip")],
                           version="HTTP/1.0", timeout=30)
    assert resp.header("content-encoding") == "gzip" and resp.framing == "close"
    assert decode("gzip", resp.body) == document(50000)


def test_http2_upstream_body_and_trailers(turnpike):
    origin = H2Origin().start()
    try:
        routes = [{"name": "h2", "match": {"paths": ["/*"]}, "upstream": "h2",
                   "plugins": {"compression": {"min_length": 0, "types": ["application/octet-stream", "text/*"]}}}]
        tp = turnpike(base_config(None, routes=routes, upstreams=[upstream("h2", [origin.address], protocol="h2c")]))
        resp = get(tp, "/bytes/300000", accept="gzip")
        assert resp.header("content-encoding") == "gzip"
        assert hashlib.sha256(decode("gzip", resp.body)).hexdigest() == pattern_sha256(300000)
        # The upstream's trailers follow the compressed body.
        resp = get(tp, "/trailers", accept="br", headers=[("TE", "trailers")])
        assert resp.header("content-encoding") == "br"
        assert decode("br", resp.body) == b"hello trailers"
        assert {n.lower() for n, _ in resp.trailers} >= {"x-checksum", "x-origin"}
    finally:
        origin.stop()


def test_many_responses_on_one_connection(tp):
    with rawhttp.HttpConn(tp.port(), timeout=30) as conn:
        for i, coding in enumerate(["gzip", "br", None, "gzip", "br"] * 4):
            n = 1000 + i * 3001
            h = [("Accept-Encoding", coding)] if coding else []
            resp = conn.request("GET", f"/doc?len={n}", headers=h)
            assert resp.header("content-encoding") == coding
            assert decode(coding, resp.body) == document(n)


# ---- negotiation (RFC 9110 §12.5.3) -----------------------------------------------------------

@pytest.mark.parametrize("accept, chosen", [
    ("gzip", "gzip"),
    ("br", "br"),
    ("gzip, br", "br"),                         # equal weights: the server's order (br first)
    ("gzip, deflate, br, zstd", "br"),
    ("br;q=0.5, gzip", "gzip"),
    ("br;q=0.5, gzip;q=0.6", "gzip"),
    ("gzip; q=0.8, br;q=0.7", "gzip"),         # OWS before q
    ("br;q=1.0, gzip;q=1", "br"),
    ("gzip;q=0, br;q=0", None),                 # q=0: not acceptable
    ("br;q=0.000", None),
    ("*", "br"),
    ("*;q=0", None),
    ("gzip;q=0, *", "br"),
    ("br;q=0, *;q=0.5", "gzip"),
    ("identity", None),
    ("identity;q=0.5, gzip;q=0.4", None),      # the client prefers the uncompressed form
    ("identity;q=0.5, gzip;q=0.5", "gzip"),
    ("identity;q=0, gzip", "gzip"),
    ("x-gzip", "gzip"),
    ("GZIP", "gzip"),
    ("deflate", None),
    ("", None),
    ("gzip;q=2", None),                         # malformed weights are ignored
    ("gzip;q=abc, br;q=0.1", "br"),
    ("gzip;level=1", None),                     # unknown parameter: ignored
    (None, None),                               # no Accept-Encoding: identity
])
def test_accept_encoding_negotiation(tp, accept, chosen):
    resp = get(tp, "/doc?len=4000", accept=accept)
    assert resp.header("content-encoding") == chosen, accept
    assert decode(chosen, resp.body) == document(4000)
    # Compressible either way, so the answer depends on Accept-Encoding.
    assert resp.has_token("vary", "accept-encoding")
    if chosen is None:
        assert resp.header("content-length") == "4000"


def test_server_preference_order_is_configurable(turnpike, doc_origin):
    tp = turnpike(config(doc_origin, {"algorithms": ["gzip", "br"], "gzip_level": 9, "brotli_level": 11}))
    assert get(tp, "/doc?len=4000", accept="br, gzip").header("content-encoding") == "gzip"
    assert get(tp, "/doc?len=4000", accept="br;q=1, gzip;q=0.9").header("content-encoding") == "br"
    only_br = turnpike(config(doc_origin, {"algorithms": ["br"]}))
    assert get(only_br, "/doc?len=4000", accept="gzip").header("content-encoding") is None
    resp = get(only_br, "/doc?len=4000", accept="gzip, br")
    assert decode(resp.header("content-encoding"), resp.body) == document(4000)


# ---- head rewrites ----------------------------------------------------------------------------

def test_vary_is_appended_not_replaced(tp):
    resp = get(tp, "/doc?len=4000&h=Vary:Origin", accept="gzip")
    assert resp.has_token("vary", "origin") and resp.has_token("vary", "accept-encoding")
    resp = get(tp, "/doc?len=4000&h=Vary:accept-encoding,%20Origin", accept="gzip")
    assert resp.header_all("vary") == ["accept-encoding, Origin"]  # already there: not added twice
    resp = get(tp, "/doc?len=4000&h=Vary:*", accept="gzip")
    assert resp.header_all("vary") == ["*"]


def test_strong_etag_is_weakened_weak_kept(tp):
    assert get(tp, '/doc?len=4000&h=ETag:"v1"', accept="br").header("etag") == 'W/"v1"'
    assert get(tp, '/doc?len=4000&h=ETag:W/"v2"', accept="br").header("etag") == 'W/"v2"'
    # Uncompressed: the validator stays strong.
    assert get(tp, '/doc?len=4000&h=ETag:"v1"').header("etag") == '"v1"'


def test_accept_ranges_is_dropped_when_compressing(tp):
    assert get(tp, "/doc?len=4000&h=Accept-Ranges:bytes", accept="gzip").header("accept-ranges") is None
    assert get(tp, "/doc?len=4000&h=Accept-Ranges:bytes").header("accept-ranges") == "bytes"


# ---- skip rules -------------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "h=Content-Encoding:gzip",                  # already encoded
    "h=Content-Encoding:br",
    "h=Cache-Control:public,%20no-transform",
    "h=Cache-Control:No-Transform",
    "type=image/png",                           # not a listed type
    "type=application/octet-stream",
    "type=",                                    # no Content-Type
    "len=255",                                  # under min_length (256)
    "len=0",
    "status=206&h=Content-Range:bytes%200-3999/8000",
])
def test_skipped_responses_pass_unchanged_with_their_length(tp, query):
    n = 255 if "len=255" in query else 0 if "len=0" in query else 4000
    resp = get(tp, f"/doc?len={n}&{query}", accept="gzip, br")
    assert resp.header("content-encoding") in (None, "gzip", "br")
    if "Content-Encoding" not in query:
        assert resp.header("content-encoding") is None
    assert resp.header("content-length") == str(n)
    assert resp.body == document(n)


def test_types_match_exactly_by_suffix_and_by_prefix(tp):
    for ctype in ["text/plain", "TEXT/CSS; charset=utf-8", "application/json", "application/problem+json",
                  "application/atom+xml", "image/svg+xml", "application/javascript"]:
        resp = get(tp, f"/doc?len=4000&type={urllib.parse.quote(ctype)}", accept="gzip")
        assert resp.header("content-encoding") == "gzip", ctype
    for ctype in ["application/jsonx", "image/jpeg", "video/mp4", "application/zip"]:
        resp = get(tp, f"/doc?len=4000&type={urllib.parse.quote(ctype)}", accept="gzip")
        assert resp.header("content-encoding") is None, ctype


def test_head_request_is_not_compressed(tp):
    resp = get(tp, "/doc?len=4000", accept="gzip", method="HEAD")
    assert resp.status == 200 and resp.header("content-encoding") is None
    assert resp.header("content-length") == "4000"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_are_not_compressed(tp, status):
    resp = get(tp, f"/doc?status={status}&h=ETag:%22e%22", accept="gzip")
    assert resp.status == status
    assert resp.header("content-encoding") is None and resp.header("etag") == '"e"'
    assert not resp.has_token("vary", "accept-encoding")


def test_gateway_own_answers_are_not_compressed(turnpike, doc_origin):
    cfg = config(doc_origin, {"min_length": 0})
    cfg["upstreams"].append(upstream("dead", ["127.0.0.1:1"]))
    cfg["routes"].insert(0, {"name": "dead", "match": {"paths": ["/dead"]}, "upstream": "dead",
                             "plugins": {"compression": {"min_length": 0}}})
    tp = turnpike(cfg)
    resp = get(tp, "/dead", accept="gzip")
    assert resp.status == 502 and resp.header("content-encoding") is None
    assert resp.json()["error"]


def test_min_length_and_types_are_configurable(turnpike, doc_origin):
    tp = turnpike(config(doc_origin, {"min_length": 10, "types": ["image/png", "application/*+yaml"]}))
    resp = get(tp, "/doc?len=20&type=image/png", accept="gzip")
    assert resp.header("content-encoding") == "gzip" and decode("gzip", resp.body) == document(20)
    assert get(tp, "/doc?len=9&type=image/png", accept="gzip").header("content-encoding") is None
    assert get(tp, "/doc?len=4000&type=application/x%2Byaml", accept="gzip").header("content-encoding") == "gzip"
    assert get(tp, "/doc?len=4000", accept="gzip").header("content-encoding") is None  # text/html not listed
    # A chunked origin has no length to compare: compressed whatever its size.
    resp = get(tp, "/doc?len=5&type=image/png&framing=chunked", accept="gzip")
    assert resp.header("content-encoding") == "gzip" and decode("gzip", resp.body) == document(5)


# ---- streaming: bounded memory, streams freed -------------------------------------------------

@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_large_body_streams_through_with_bounded_rss(turnpike, doc_origin, monkeypatch, coding):
    # AddressSanitizer keeps freed blocks in a quarantine (256 MiB by default) before reusing
    # them: a sanitized build's RSS would grow by the garbage made per piece, whatever is held.
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "quarantine_size_mb=8")
    tp = turnpike(config(doc_origin))
    get(tp, "/doc?len=300000", accept=coding)  # warm: the worker's VM, buffers, one stream
    n = int(os.environ.get("TURNPIKE_COMPRESS_MIB", "256")) << 20  # 1024: the 1 GiB, by hand
    pid = tp.pid
    rss_before = vm_rss_kib(pid)
    rss_max = rss_before
    dec = zlib.decompressobj(wbits=31) if coding == "gzip" else brotli.Decompressor()
    digest = hashlib.sha256()
    plain = 0
    wire = 0
    deadline = time.monotonic() + 240 * max(1, n >> 28)
    with socket.create_connection(("127.0.0.1", tp.port()), timeout=30) as s:
        s.sendall(f"GET /doc?len={n}&framing=chunked HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        assert b"content-encoding: " + coding.encode() in head.lower(), head
        f = s.makefile("rb", buffering=1 << 20)
        pending = buf
        samples = 0
        while True:
            assert time.monotonic() < deadline, "transfer too slow"
            # chunk-size line
            while b"\r\n" not in pending:
                more = f.read1(65536)
                assert more, "connection closed mid-body"
                pending += more
            line, _, pending = pending.partition(b"\r\n")
            size = int(line, 16)
            while len(pending) < size + 2:
                more = f.read1(1 << 20)
                assert more, "connection closed mid-body"
                pending += more
            data, pending = pending[:size], pending[size + 2:]
            if size == 0:
                break
            wire += size
            out = dec.decompress(data) if coding == "gzip" else dec.process(data)
            digest.update(out)
            plain += len(out)
            samples += 1
            if samples % 64 == 0:
                rss_max = max(rss_max, vm_rss_kib(pid))
    if coding == "gzip":
        tail = dec.flush()
        digest.update(tail)
        plain += len(tail)
    assert plain == n
    expected = hashlib.sha256()
    for piece in document_pieces(n, 1 << 20):
        expected.update(piece)
    assert digest.hexdigest() == expected.hexdigest()
    assert wire < n / 3
    # The body is 256 MiB; the gateway holds one piece and the compressor's window at a time.
    assert rss_max - rss_before < 64 * 1024, (rss_before, rss_max)
    print(f"{coding}: {n >> 20} MiB through, gateway VmRSS {rss_before} KiB before, at most {rss_max} KiB during")


def wait_no_live_streams(tp, timeout=10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        live = live_streams(tp)
        if live == 0 or time.monotonic() > deadline:
            return live
        time.sleep(0.05)


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_client_leaving_mid_body_frees_the_stream(tp, coding):
    assert wait_no_live_streams(tp) == 0
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", tp.port()), timeout=10)
        s.sendall(f"GET /doc?len={64 << 20}&framing=chunked HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n".encode())
        got = 0
        while got < 100_000:
            data = s.recv(65536)
            assert data
            got += len(data)
        assert live_streams(tp) >= 1  # a response is being compressed now
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset, mid-body
    assert wait_no_live_streams(tp) == 0


def test_http2_stream_reset_mid_body_frees_the_stream(tp):
    assert wait_no_live_streams(tp) == 0
    c = H2Client(tp.port())
    try:
        sid = c.request("GET", f"/doc?len={64 << 20}&framing=chunked", headers=[("accept-encoding", "br")],
                        keep_body=False)
        c.wait(lambda: c.streams[sid].body_len > 100_000, timeout=10)
        c.reset(sid, CANCEL)
        assert wait_no_live_streams(tp) == 0
        # The connection goes on.
        r = c.get("/doc?len=3000", headers=[("accept-encoding", "gzip")])
        assert decode("gzip", bytes(r.body)) == document(3000)
    finally:
        c.close()


# ---- schema errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("conf, message", [
    ({"algorithms": ["zstd"]}, 'conf.algorithms[1]: expected one of "br", "gzip", got "zstd"'),
    ({"algorithms": []}, "conf.algorithms: expected at least 1 items, got 0"),
    ({"algorithms": ["gzip", "gzip"]}, "conf.algorithms[2]: gzip is listed twice"),
    ({"gzip_level": 10}, "conf.gzip_level: expected at most 9, got 10"),
    ({"gzip_level": 0}, "conf.gzip_level: expected at least 1, got 0"),
    ({"brotli_level": 12}, "conf.brotli_level: expected at most 11, got 12"),
    ({"min_length": -1}, "conf.min_length: expected at least 0, got -1"),
    ({"types": ["html"]}, None),
    ({"types": ["text/*/x"]}, None),
    ({"level": 5}, "conf.level: unknown property"),
])
def test_schema_errors(turnpike_bin, tmp_path, doc_origin, conf, message):
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(config(doc_origin, conf)))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    errors = [m.group("message") for m in ERROR_LINE.finditer(out.stderr)]
    if message is None:
        assert any(e.startswith('route "doc": plugin "compression": conf.types[1]: does not match the pattern')
                   for e in errors), errors
    else:
        assert f'route "doc": plugin "compression": {message}' in errors, errors

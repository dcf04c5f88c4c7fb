"""The request-body hook: a plugin reads the body ahead (turnpike.request.read_body, bounded by
lua.max_body_buffer), sees it, may replace it; the upstream still gets every byte, in order,
with the right framing; bodies over the bound stream on; failures of the client's body are
answered once (400/408/413), never forwarded. Test plugin: tests/integration/plugins/body-probe.lua."""
from __future__ import annotations

import hashlib
import json

import rawhttp
from h2client import H2Client
from harness import base_config
from origin import pattern_chunks, pattern_sha256
from test_plugins import PLUGINS, route


def cfg(origin, conf, **top):
    c = base_config(origin, routes=[route("r", ["/*"], {"body-probe": conf})], **top)
    c["plugin_paths"] = [str(PLUGINS)]
    return c


def chunked(body: bytes, size: int = 1000) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def seen(origin, path):
    return origin.wait_for_path(path)


def test_whole_body_is_read_and_still_forwarded(origin, turnpike):
    tp = turnpike(cfg(origin, {}))
    body = b"a=1&b=2" * 100
    resp = rawhttp.request(tp.port(), "POST", "/sink/whole", body=body)
    assert resp.status == 200, resp
    assert resp.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    up = seen(origin, "/sink/whole")
    assert up.header("x-body-len") == str(len(body))
    assert up.header("x-body-whole") == "true"
    assert up.header("x-body-sha256") == hashlib.sha256(body).hexdigest()
    assert up.header("x-get-body-same") == "true"
    assert up.header("content-length") == str(len(body))


def test_chunked_body_is_read_whole_and_reframed(origin, turnpike):
    tp = turnpike(cfg(origin, {}))
    body = bytes(range(256)) * 40
    resp = rawhttp.request(tp.port(), "POST", "/sink/chunked", body=chunked(body),
                           headers=[("Transfer-Encoding", "chunked")])
    assert resp.status == 200, resp
    assert resp.json()["sha256"] == hashlib.sha256(body).hexdigest()
    up = seen(origin, "/sink/chunked")
    assert up.header("x-body-len") == str(len(body))
    assert up.header("x-body-whole") == "true"
    assert up.framing == "content-length"  # read whole: forwarded with its length


def test_body_over_the_bound_streams_on_after_the_part_read(origin, turnpike):
    # 4 MiB through a plugin that reads at most 64 KiB ahead: the plugin sees a prefix, the
    # upstream gets all of it (and the gateway never held more than the bound plus one read).
    tp = turnpike(cfg(origin, {"max": 65536}))
    n = 4 << 20
    with rawhttp.HttpConn(tp.port(), timeout=30) as conn:
        conn.send(rawhttp.build_request("POST", "/sink/big", headers=[("Content-Length", str(n))]))
        for piece in pattern_chunks(n):
            conn.send(piece)
        resp = conn.read_final_response("POST", 30)
    assert resp.status == 200, resp
    assert resp.json() == {"length": n, "sha256": pattern_sha256(n)}
    up = seen(origin, "/sink/big")
    assert up.header("x-body-whole") == "false"
    assert 65536 <= int(up.header("x-body-len")) < 65536 + 256 * 1024


def test_lua_max_body_buffer_caps_what_a_plugin_reads(origin, turnpike):
    tp = turnpike(cfg(origin, {}, lua={"max_body_buffer": "16k"}))
    body = b"x" * 200_000
    resp = rawhttp.request(tp.port(), "POST", "/sink/cap", body=body)
    assert resp.json()["length"] == len(body)
    up = seen(origin, "/sink/cap")
    assert up.header("x-body-whole") == "false"
    assert int(up.header("x-body-len")) < len(body)


def test_replaced_body_goes_upstream_with_its_own_length(origin, turnpike):
    tp = turnpike(cfg(origin, {"replace": "replaced after <len> bytes"}))
    resp = rawhttp.request(tp.port(), "POST", "/sink/replace", body=chunked(b"y" * 5000),
                           headers=[("Transfer-Encoding", "chunked")])
    new = b"replaced after 5000 bytes"
    assert resp.json() == {"length": len(new), "sha256": hashlib.sha256(new).hexdigest()}
    up = seen(origin, "/sink/replace")
    assert up.header("x-replaced") == "true"
    assert up.header("content-length") == str(len(new))
    assert up.header("transfer-encoding") is None


def test_a_body_read_only_in_part_cannot_be_replaced(origin, turnpike):
    tp = turnpike(cfg(origin, {"max": 1000, "replace": "nope"}))
    body = b"z" * 300_000
    resp = rawhttp.request(tp.port(), "POST", "/sink/partial", body=body)
    assert resp.json()["length"] == len(body)
    assert seen(origin, "/sink/partial").header("x-replaced") == "false"


def test_a_get_without_body_reads_empty_and_can_get_one(origin, turnpike):
    tp = turnpike(cfg(origin, {"replace": "now with a body"}))
    resp = rawhttp.request(tp.port(), "GET", "/sink/get")
    assert resp.json()["length"] == len(b"now with a body")
    up = seen(origin, "/sink/get")
    assert up.header("x-body-len") == "0" and up.header("x-body-whole") == "true"


def test_the_plugin_may_deny_on_what_it_read(origin, turnpike):
    tp = turnpike(cfg(origin, {"deny_over": 100, "max": 101}))
    resp = rawhttp.request(tp.port(), "POST", "/sink/deny", body=b"q" * 5000)
    assert resp.status == 413
    assert all(r.path != "/sink/deny" for r in origin.snapshot())
    ok = rawhttp.request(tp.port(), "POST", "/sink/deny-small", body=b"q" * 50)
    assert ok.status == 200 and ok.json()["length"] == 50


def test_malformed_chunked_body_read_ahead_is_a_400_never_forwarded(origin, turnpike):
    tp = turnpike(cfg(origin, {}))
    raw = (b"POST /sink/bad HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\nZZ\r\n")
    resp, closed = rawhttp.send_raw(tp.port(), raw)
    assert resp is not None and resp.status == 400
    assert closed
    assert all(r.path != "/sink/bad" for r in origin.snapshot())
    # The next clients are unaffected (the decoder state is the request's own).
    assert rawhttp.request(tp.port(), "POST", "/sink/after", body=b"12345").json()["length"] == 5


def test_body_over_max_body_size_read_ahead_is_a_413(origin, turnpike):
    c = cfg(origin, {})
    c["limits"] = {"max_body_size": "10k"}
    tp = turnpike(c)
    resp, closed = rawhttp.send_raw(tp.port(), rawhttp.build_request("POST", "/sink/huge", body=b"h" * 20000))
    assert resp is not None and resp.status == 413
    assert all(r.path != "/sink/huge" for r in origin.snapshot())


def test_read_ahead_over_http2_without_content_length(origin, turnpike):
    tp = turnpike(cfg(origin, {}))
    body = b"h2 body " * 1000
    c = H2Client(tp.port())
    try:
        sid = c.request("POST", "/sink/h2", body=body, content_length=False)
        (res,) = c.wait_streams([sid], timeout=30)
    finally:
        c.close()
    assert res.status == 200
    assert json.loads(res.body) == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    up = seen(origin, "/sink/h2")
    assert up.header("x-body-len") == str(len(body)) and up.header("x-body-whole") == "true"
    assert up.framing == "content-length"  # read whole: forwarded with its length

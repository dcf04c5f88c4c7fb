"""RFC 9113 conformance of the HTTP/2 client side, with hand-built frames.

Each case asserts the exact answer: a connection error is a GOAWAY with the code (and the
connection closes); a stream error is an RST_STREAM on that stream with the code, the connection
keeps working, and a malformed request never reaches the origin (RFC 9113 §8.1.1).
"""
import struct

import pytest

import h2client
from h2client import (CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, PING, PRIORITY, RST_STREAM, SETTINGS,
                      WINDOW_UPDATE, RawH2, frame, settings_frame)
from harness import base_config


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module):
    return turnpike_module(base_config(origin_module))


@pytest.fixture
def origin(origin_module):
    origin_module.reset()
    return origin_module


def connection_error(tp, payload: bytes, code: int, *, setup: bytes = b""):
    c = RawH2(tp.port())
    try:
        if setup:
            c.send(setup)
        c.send(payload)
        g = c.goaway(timeout=5)
        assert g is not None, f"no GOAWAY; frames: {c.frames}"
        assert g.type == h2client.GOAWAY
        assert g.error_code == code, f"GOAWAY {h2client.ERROR_NAMES.get(g.error_code)}, expected {h2client.ERROR_NAMES[code]}"
        assert c.wait_closed(timeout=5), "connection still open after a connection error"
    finally:
        c.close()


def stream_error(tp, origin, build, code: int = h2client.PROTOCOL_ERROR):
    """Sends build(c) on stream 1; expects RST_STREAM(code) on it, nothing at the origin, and a
    working connection afterwards (stream 3)."""
    c = RawH2(tp.port())
    try:
        c.send(build(c))
        r = c.rst(1, timeout=5)
        assert r is not None, f"no RST_STREAM on stream 1; frames: {c.frames}"
        assert r.error_code == code, f"RST_STREAM {h2client.ERROR_NAMES.get(r.error_code)}, expected {h2client.ERROR_NAMES[code]}"
        assert c.goaway(timeout=0.2) is None, "stream error escalated to a connection error"
        c.send(c.request_headers(3, "/echo/after"))
        end = c.response_end(3, timeout=5)
        assert end is not None and end.type != RST_STREAM and c.status_of(3) == 200
        paths = [r.path for r in origin.snapshot()]
        assert paths == ["/echo/after"], f"malformed request reached the origin: {paths}"
    finally:
        c.close()


# ---- Frame-level errors (RFC 9113 §4, §6) ---------------------------------------------------

def test_data_on_stream_0_is_protocol_error(tp):
    connection_error(tp, frame(DATA, 0, 0, b"abc"), h2client.PROTOCOL_ERROR)


def test_settings_with_bad_length_is_frame_size_error(tp):
    connection_error(tp, frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"), h2client.FRAME_SIZE_ERROR)


def test_settings_ack_with_payload_is_frame_size_error(tp):
    connection_error(tp, frame(SETTINGS, 1, 0, b"\x00\x03\x00\x00\x00\x01"), h2client.FRAME_SIZE_ERROR)


def test_frame_above_max_frame_size_is_frame_size_error(tp):
    c = RawH2(tp.port())
    setup = c.request_headers(1, "/sink", method="POST", end=False)
    c.close()
    connection_error(tp, frame(DATA, 0, 1, b"x" * 16385), h2client.FRAME_SIZE_ERROR, setup=setup)


def test_ping_with_bad_length_is_frame_size_error(tp):
    connection_error(tp, frame(PING, 0, 0, b"1234567"), h2client.FRAME_SIZE_ERROR)


def test_window_update_with_bad_length_is_frame_size_error(tp):
    connection_error(tp, frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"), h2client.FRAME_SIZE_ERROR)


# ---- Stream states (RFC 9113 §5.1) -------------------------------------------------------

def test_data_on_idle_stream_is_protocol_error(tp):
    connection_error(tp, frame(DATA, END_STREAM, 5, b"abc"), h2client.PROTOCOL_ERROR)


def test_even_stream_id_from_client_is_protocol_error(tp):
    c = RawH2(tp.port())
    payload = c.request_headers(2, "/echo")
    c.close()
    connection_error(tp, payload, h2client.PROTOCOL_ERROR)


def test_headers_on_half_closed_remote_stream_is_stream_closed(tp, origin):
    c = RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/sleep/300"))
        c.send(c.request_headers(1, "/echo/again"))
        f = c.wait_for(lambda f: f.type in (RST_STREAM, h2client.GOAWAY), timeout=5)
        assert f is not None
        assert f.error_code == h2client.STREAM_CLOSED, h2client.ERROR_NAMES.get(f.error_code)
    finally:
        c.close()


def test_headers_on_lower_never_opened_stream_id_is_protocol_error(tp, origin):
    # RFC 9113 §5.1.1: stream ids only grow; 3 after 5 is an unexpected stream id.
    c = RawH2(tp.port())
    payload = c.request_headers(5, "/echo/five") + c.request_headers(3, "/echo/three")
    c.close()
    connection_error(tp, payload, h2client.PROTOCOL_ERROR)
    assert "/echo/three" not in [r.path for r in origin.snapshot()]


def finished_stream_1(c) -> None:
    c.send(c.request_headers(1, "/echo/one"))
    end = c.response_end(1, timeout=5)
    assert end is not None and end.type != RST_STREAM and c.status_of(1) == 200


@pytest.mark.parametrize("kind", ["headers", "data"])
def test_frame_on_stream_closed_by_end_stream_is_stream_closed(tp, origin, kind):
    # RFC 9113 §5.1 "closed": frames after both END_STREAMs are a connection error STREAM_CLOSED.
    c = RawH2(tp.port())
    try:
        finished_stream_1(c)
        c.send(c.request_headers(1, "/echo/again") if kind == "headers" else frame(DATA, END_STREAM, 1, b"late"))
        g = c.goaway(timeout=5)
        assert g is not None, f"no GOAWAY; frames: {c.frames}"
        assert g.error_code == h2client.STREAM_CLOSED, h2client.ERROR_NAMES.get(g.error_code)
        assert c.wait_closed(timeout=5)
        assert "/echo/again" not in [r.path for r in origin.snapshot()]
    finally:
        c.close()


def test_data_on_stream_the_client_reset_is_stream_error(tp, origin):
    # RFC 9113 §5.1 "closed": after receiving RST_STREAM, a frame on the stream is a stream error
    # STREAM_CLOSED; the connection goes on.
    c = RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/sink", method="POST", end=False) + frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))
        c.send(frame(DATA, 0, 1, b"after the reset"))
        r = c.rst(1, timeout=5)
        assert r is not None and r.error_code == h2client.STREAM_CLOSED, c.frames
        assert c.goaway(timeout=0.2) is None
        c.send(c.request_headers(3, "/echo/after"))
        end = c.response_end(3, timeout=5)
        assert end is not None and end.type != RST_STREAM and c.status_of(3) == 200
    finally:
        c.close()


def test_frames_on_stream_we_reset_are_ignored(tp, origin):
    # RFC 9113 §5.1 "closed": after sending RST_STREAM, frames the client sent before it saw it
    # are ignored, not an error.
    c = RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/echo", method="POST", extra=[("connection", "x")], end=False))
        r = c.rst(1, timeout=5)
        assert r is not None and r.error_code == h2client.PROTOCOL_ERROR
        c.send(frame(DATA, 0, 1, b"body") + c.request_headers(1, "/echo/trailers", end=True))
        c.send(c.request_headers(3, "/echo/after"))
        end = c.response_end(3, timeout=5)
        assert end is not None and end.type != RST_STREAM and c.status_of(3) == 200
        assert c.goaway(timeout=0.2) is None
        assert len([f for f in c.frames if f.sid == 1]) == 1, c.frames
    finally:
        c.close()


# ---- Flow control (RFC 9113 §6.9) --------------------------------------------------------

def test_window_update_0_on_connection_is_protocol_error(tp):
    connection_error(tp, frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), h2client.PROTOCOL_ERROR)


def test_window_update_0_on_stream_is_protocol_error(tp):
    # RFC 9113 §6.9 makes this a stream error; nghttp2 escalates it to a connection error, which
    # §5.4.2 allows ("an endpoint MAY choose to treat a stream error as a connection error").
    c = RawH2(tp.port())
    setup = c.request_headers(1, "/sleep/200")
    c.close()
    connection_error(tp, frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)), h2client.PROTOCOL_ERROR, setup=setup)


def test_connection_window_overflow_is_flow_control_error(tp):
    connection_error(tp, frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)), h2client.FLOW_CONTROL_ERROR)


def test_stream_window_overflow_is_stream_flow_control_error(tp, origin):
    c = RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/sleep/200") + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)))
        r = c.rst(1, timeout=5)
        assert r is not None and r.error_code == h2client.FLOW_CONTROL_ERROR
    finally:
        c.close()


# ---- SETTINGS values (RFC 9113 §6.5.2) ---------------------------------------------------

@pytest.mark.parametrize("setting, value, code", [
    (0x2, 2, h2client.PROTOCOL_ERROR),                 # ENABLE_PUSH must be 0 or 1
    (0x4, 0x80000000, h2client.FLOW_CONTROL_ERROR),    # INITIAL_WINDOW_SIZE above 2^31-1
    (0x5, 16383, h2client.PROTOCOL_ERROR),             # MAX_FRAME_SIZE below 2^14
    (0x5, 1 << 24, h2client.PROTOCOL_ERROR),           # MAX_FRAME_SIZE above 2^24-1
], ids=["enable_push_2", "initial_window_too_large", "max_frame_size_too_small", "max_frame_size_too_large"])
def test_bad_settings_values(tp, setting, value, code):
    connection_error(tp, settings_frame([(setting, value)]), code)


# ---- HPACK (RFC 7541) --------------------------------------------------------------------

def test_hpack_invalid_index_is_compression_error(tp):
    # Indexed field 200: neither in the static table nor in the (empty) dynamic table.
    block = bytes([0xFF, 200 - 127])
    connection_error(tp, frame(HEADERS, END_HEADERS | END_STREAM, 1, block), h2client.COMPRESSION_ERROR)


def test_continuation_on_other_stream_is_protocol_error(tp):
    c = RawH2(tp.port())
    block = c.block([(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "x")])
    c.close()
    payload = frame(HEADERS, END_STREAM, 1, block[:4]) + frame(CONTINUATION, END_HEADERS, 3, block[4:])
    connection_error(tp, payload, h2client.PROTOCOL_ERROR)


# ---- Pseudo-headers (RFC 9113 §8.3) -------------------------------------------------------

def headers_frame(c, hdrs, flags=END_HEADERS | END_STREAM, sid=1):
    return frame(HEADERS, flags, sid, c.block(hdrs))


BASE = [(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "localhost")]


@pytest.mark.parametrize("hdrs", [
    [(":method", "GET"), (":scheme", "http"), (":authority", "localhost")],
    BASE + [(":method", "POST")],
    BASE + [(":foo", "bar")],
    [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/echo"), (":authority", "localhost")],
    [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "localhost")],
    [(":status", "200")] + BASE,
], ids=["missing_path", "duplicate_method", "unknown_pseudo", "pseudo_after_regular", "empty_path", "response_pseudo"])
def test_pseudo_header_violations_reset_stream(tp, origin, hdrs):
    stream_error(tp, origin, lambda c: headers_frame(c, hdrs))


# ---- HTTP semantics translation (RFC 9113 §8.1.1, §8.2) ----------------------------------

@pytest.mark.parametrize("extra", [
    [("connection", "keep-alive")],
    [("keep-alive", "timeout=5")],
    [("proxy-connection", "keep-alive")],
    [("transfer-encoding", "chunked")],
    [("upgrade", "websocket")],
    [("te", "gzip")],
    [("X-Upper", "1")],
    [("x-a", "a\r\nb")],
    [("x-a", "a\nb")],
    [("x-a", "a\x00b")],
    [("x\r\ny", "1")],
    [("host", "other.example")],
], ids=["connection", "keep_alive", "proxy_connection", "transfer_encoding", "upgrade", "te_gzip",
        "uppercase_name", "crlf_in_value", "lf_in_value", "nul_in_value", "crlf_in_name", "authority_host_mismatch"])
def test_malformed_fields_reset_stream_and_never_reach_origin(tp, origin, extra):
    stream_error(tp, origin, lambda c: headers_frame(c, BASE + extra))


def test_te_trailers_is_allowed(tp, origin):
    c = RawH2(tp.port())
    try:
        c.send(headers_frame(c, BASE + [("te", "trailers")]))
        end = c.response_end(1, timeout=5)
        assert end is not None and end.type != RST_STREAM and c.status_of(1) == 200
    finally:
        c.close()


def test_host_matching_authority_is_allowed(tp, origin):
    c = RawH2(tp.port())
    try:
        c.send(headers_frame(c, BASE + [("host", "localhost")]))
        end = c.response_end(1, timeout=5)
        assert end is not None and end.type != RST_STREAM and c.status_of(1) == 200
    finally:
        c.close()


def test_content_length_larger_than_data_is_malformed(tp, origin):
    def build(c):
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", "/sink"), (":authority", "localhost"),
                ("content-length", "10")]
        return headers_frame(c, hdrs, flags=END_HEADERS) + frame(DATA, END_STREAM, 1, b"abc")
    stream_error(tp, origin, build)


def test_content_length_smaller_than_data_is_malformed(tp, origin):
    def build(c):
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", "/sink"), (":authority", "localhost"),
                ("content-length", "2")]
        return headers_frame(c, hdrs, flags=END_HEADERS) + frame(DATA, END_STREAM, 1, b"abc")
    stream_error(tp, origin, build)


def test_content_length_without_data_is_malformed(tp, origin):
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", "/sink"), (":authority", "localhost"),
            ("content-length", "5")]
    stream_error(tp, origin, lambda c: headers_frame(c, hdrs))


def test_split_cookies_joined_for_the_origin(tp, origin):
    c = RawH2(tp.port())
    try:
        c.send(headers_frame(c, BASE + [("cookie", "a=1"), ("x-b", "2"), ("cookie", "c=3")]))
        end = c.response_end(1, timeout=5)
        assert end is not None and c.status_of(1) == 200
        rec = origin.wait_for_path("/echo")
        assert rec.header_all("cookie") == ["a=1; c=3"]
    finally:
        c.close()


def test_priority_frame_is_ignored(tp, origin):
    c = RawH2(tp.port())
    try:
        c.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16)) + c.request_headers(1, "/echo"))
        end = c.response_end(1, timeout=5)
        assert end is not None and c.status_of(1) == 200
    finally:
        c.close()

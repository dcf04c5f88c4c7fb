"""A parked HTTP/2 connection without its nghttp2 session (src/downstream/h2/h2_park.cc).

An idle connection whose state a fresh session can be brought back to deletes its session while
parked and rebuilds it when it acts again. Most clients here send header fields that never enter
HPACK's dynamic table; those that do have their table read out of the old session and fed to the
fresh one (the indexing tests). Each test first sees the drop in the debug log, then checks that the connection answers everything as
a connection that kept its session does: the next request, the client's SETTINGS, both flow-control
windows, frames on the dropped session's streams, stream ids already used, GOAWAY's last stream id.
"""
import hashlib
import re
import signal
import struct
import time

import h2.settings

import h2client
from h2client import (DATA, END_HEADERS, GOAWAY, HEADERS, PRIORITY, RST_STREAM, SETTINGS, WINDOW_UPDATE, H2Client,
                      RawH2, frame, settings_frame)
from harness import base_config
from tlsutil import client_context, make_cert

MiB = 1024 * 1024


def park_config(origin, http2=None, **kw):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0}
    if http2 is not None:
        listener["http2"] = http2
    cfg = base_config(origin, listeners=[listener], workers=1, **kw)
    cfg["log"]["level"] = "debug"  # the drop and the rebuild are debug lines
    return cfg


def client_name(sock) -> str:
    host, port = sock.getsockname()[:2]
    return re.escape(f"{host}:{port}")


def wait_dropped(tp, sock, last_stream: int, timeout: float = 6.0) -> None:
    """Waits until the connection parked (1 s idle) and deleted its session."""
    tp.wait_log(rf"h2 client {client_name(sock)}: parked without its session \(last stream {last_stream},", timeout)


def rebuilds(tp, sock, expect: int = 0, timeout: float = 5.0) -> int:
    """How many times the connection's session was rebuilt, by its log lines. The log is written
    asynchronously, so a line for a response already received may still be on its way: waits up to
    `timeout` for at least `expect` lines (0: reads the log as it is now)."""
    deadline = time.monotonic() + timeout
    while True:
        n = len(re.findall(rf"h2 client {client_name(sock)}: session rebuilt", tp.logs()))
        if n >= expect or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


def served(c: RawH2, sid: int, path: str = None) -> None:
    c.send(c.request_headers(sid, path or f"/echo/{sid}"))
    end = c.response_end(sid, timeout=5)
    assert end is not None and end.type != RST_STREAM and c.status_of(sid) == 200, f"stream {sid}: {c.frames}"


def window_update(sid: int, n: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", n))


def browser_like(c: RawH2) -> None:
    """Opens the connection window to 65,535 + 1 MiB and acknowledges both our SETTINGS frames."""
    c.send(window_update(0, MiB))
    c.wait_for(lambda f: sum(1 for g in c.frames if g.type == SETTINGS and not g.flags & h2client.ACK) == 2, 5)
    c.send(settings_frame(ack=True) * 2)


def settings_acks(c: RawH2) -> int:
    return sum(1 for f in c.frames if f.type == SETTINGS and f.flags & h2client.ACK)


def wait_data(c: RawH2, sid: int, n: int, timeout: float = 5.0) -> int:
    """Reads until n DATA bytes arrived on sid, then a little longer: the bytes received (more
    than n would be a flow-control violation by the server)."""
    c.wait_for(lambda f: c.data_received(sid) >= n, timeout)
    c.wait_for(lambda f: False, 0.5)
    return c.data_received(sid)


# ---- The drop, and the connection after it -----------------------------------------------------

def test_parked_connection_drops_its_session_and_serves_again(origin, turnpike):
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        served(c, 1)
        wait_dropped(tp, c.sock, 1)
        assert rebuilds(tp, c.sock) == 0
        c.send(c.request_headers(3, "/sink", method="POST", end=False))
        c.send(frame(DATA, h2client.END_STREAM, 3, b"after the drop"))
        assert c.response_end(3, timeout=5) is not None and c.status_of(3) == 200
        assert rebuilds(tp, c.sock, 1) == 1
        assert c.goaway(timeout=0.2) is None
        # It drops again at the next park, and serves again.
        wait_dropped(tp, c.sock, 3)
        served(c, 5)
        assert [r.path for r in origin.snapshot()] == ["/echo/1", "/sink", "/echo/5"]
    finally:
        c.close()


# ---- A client whose fields enter HPACK's dynamic table (browsers, curl, nghttp2) ---------------

def indexed_request(c: RawH2, sid: int, fields, path: str = "/echo/indexed") -> None:
    """A GET whose fields (and :path, :authority) the client's encoder adds to its table, or
    refers to when an earlier request added them."""
    c.send(c.request_headers(sid, path, extra=fields))
    end = c.response_end(sid, timeout=5)
    assert end is not None and end.type != RST_STREAM and c.status_of(sid) == 200, f"stream {sid}: {c.frames}"


def fields_seen(origin, n: int) -> list:
    """The test's own (t-) fields of the origin's last n requests, in order."""
    return [[(k, v) for k, v in r.headers if k.lower().startswith("t-")] for r in origin.snapshot()[-n:]]


def test_indexing_client_drops_its_session_and_its_table_is_rebuilt(origin, turnpike):
    # Our decoder's table mirrors the client's encoder's: it is read out of the old session and
    # fed to the fresh one, so the references after the rebuild decode to the same fields.
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=True)
    a, b, g = ("t-alpha", "first value"), ("t-beta", "second"), ("t-gamma", "added after the rebuild")
    try:
        indexed_request(c, 1, [a, b])
        wait_dropped(tp, c.sock, 1)
        table = int(re.search(rf"h2 client {client_name(c.sock)}: parked without its session .*HPACK table (\d+) bytes",
                              tp.logs()).group(1))
        # :path, :authority and the two fields, each name + value + 32 (RFC 7541 §4.1).
        assert table == sum(len(n) + len(v) + 32 for n, v in
                            [(":path", "/echo/indexed"), (":authority", "localhost"), a, b])
        block = c.block([(":method", "GET"), (":scheme", "http"), (":path", "/echo/indexed"),
                         (":authority", "localhost"), b, a])
        assert len(block) <= 8  # table references only: a fresh decoder could not read them
        c.send(frame(HEADERS, END_HEADERS | h2client.END_STREAM, 3, block))
        end = c.response_end(3, timeout=5)
        assert end is not None and end.type != RST_STREAM and c.status_of(3) == 200
        assert rebuilds(tp, c.sock, 1) == 1
        # A field indexed after the rebuild sits in front of the rebuilt ones: the indexes of
        # both are the client's.
        indexed_request(c, 5, [g, a])
        wait_dropped(tp, c.sock, 5)  # parked again, now with three fields of ours in the table
        indexed_request(c, 7, [a, g, b])
        assert rebuilds(tp, c.sock, 2) == 2
        assert fields_seen(origin, 4) == [[a, b], [b, a], [g, a], [a, g, b]]
        assert [r.path for r in origin.snapshot()] == ["/echo/indexed"] * 4
        assert c.goaway(timeout=0.2) is None
    finally:
        c.close()


def test_table_after_client_shrinks_and_evicts_is_rebuilt(origin, turnpike):
    # The client lowers its table to 150 bytes (a size update, RFC 7541 §6.3), so each new field
    # evicts older ones. The rebuilt table keeps our SETTINGS maximum (4,096): it may hold entries
    # the client evicted, never fewer, and the client's indexes still name the same fields.
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=True)
    try:
        indexed_request(c, 1, [("t-one", "1" * 40)])
        c.encoder.header_table_size = 150
        indexed_request(c, 3, [("t-two", "2" * 40)])
        indexed_request(c, 5, [("t-three", "3" * 40)])  # x-two evicted on the client's side
        wait_dropped(tp, c.sock, 5)
        indexed_request(c, 7, [("t-three", "3" * 40)])
        indexed_request(c, 9, [("t-four", "4" * 40), ("t-three", "3" * 40)])
        wait_dropped(tp, c.sock, 9)
        indexed_request(c, 11, [("t-three", "3" * 40), ("t-four", "4" * 40)])
        assert rebuilds(tp, c.sock, 2) == 2
        assert [f[0][1][0] for f in fields_seen(origin, 6)] == ["1", "2", "3", "3", "4", "3"]
        assert fields_seen(origin, 1) == [[("t-three", "3" * 40), ("t-four", "4" * 40)]]
    finally:
        c.close()


def test_tls_indexing_client_drops_its_session_and_serves_again(origin, turnpike, tmp_path):
    cert, key = make_cert(tmp_path, "park", "park.test")
    listener = {"name": "public", "address": "127.0.0.1", "port": 0,
                "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}
    cfg = base_config(origin, listeners=[listener], workers=1)
    cfg["log"]["level"] = "debug"
    tp = turnpike(cfg)
    ctx = client_context(alpn=("h2",))
    c = RawH2(tp.port(), index=True, wrap=lambda s: ctx.wrap_socket(s, server_hostname="park.test"))
    ua = ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) like a browser")
    try:
        indexed_request(c, 1, [ua, ("accept", "*/*")])
        wait_dropped(tp, c.sock, 1)
        indexed_request(c, 3, [ua, ("accept", "*/*")])
        assert rebuilds(tp, c.sock, 1) == 1
        assert origin.snapshot()[-1].header("user-agent") == ua[1]
    finally:
        c.close()


def test_body_upload_after_rebuild_uses_the_whole_receive_window(origin, turnpike):
    # Our connection receive window is above 65,535 (initial_window_size x max_concurrent_streams):
    # the rebuilt session must allow what the client was told, on several streams at once.
    tp = turnpike(park_config(origin))
    c = H2Client(tp.port())
    c.conn.encoder.header_table_size = 0  # (RFC 7541 §6.3) no field enters the table
    try:
        assert c.get("/echo/first").status == 200
        wait_dropped(tp, c.sock, 1)
        bodies = [bytes([65 + i]) * 100_000 for i in range(3)]
        sids = [c.request("POST", "/sink", body=b) for b in bodies]
        results = c.wait_streams(sids, timeout=20)
        for res, body in zip(results, bodies):
            assert res.status == 200 and res.reset is None
            assert f'"{hashlib.sha256(body).hexdigest()}"' in res.body.decode()
        assert c.goaway is None
    finally:
        c.close()


def test_tls_connection_drops_its_session_and_serves_again(origin, turnpike, tmp_path):
    cert, key = make_cert(tmp_path, "park", "park.test")
    listener = {"name": "public", "address": "127.0.0.1", "port": 0,
                "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}
    cfg = base_config(origin, listeners=[listener], workers=1)
    cfg["log"]["level"] = "debug"
    tp = turnpike(cfg)
    ctx = client_context(alpn=("h2",))
    c = RawH2(tp.port(), index=False, wrap=lambda s: ctx.wrap_socket(s, server_hostname="park.test"),
              settings=[(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE, 4 * MiB)])
    try:
        assert c.sock.selected_alpn_protocol() == "h2"
        browser_like(c)
        served(c, 1)
        wait_dropped(tp, c.sock, 1)
        served(c, 3, "/bytes/300000")
        assert c.data_received(3) == 300000 and rebuilds(tp, c.sock, 1) == 1
        assert c.goaway(timeout=0.2) is None
    finally:
        c.close()


# ---- The client's SETTINGS and our send windows after the rebuild --------------------------------

def test_changed_client_settings_are_in_force_after_rebuild(origin, turnpike):
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        c.send(window_update(0, MiB))  # the connection window does not limit this test
        served(c, 1)
        acks = settings_acks(c)
        c.send(settings_frame([(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE, 30000),
                               (h2.settings.SettingCodes.MAX_FRAME_SIZE, 20000)]))
        c.wait_for(lambda f: settings_acks(c) > acks, timeout=5)
        assert settings_acks(c) == acks + 1
        wait_dropped(tp, c.sock, 1)
        c.send(c.request_headers(3, "/bytes/50000"))
        # INITIAL_WINDOW_SIZE: 30,000 bytes, then the stream waits for its window.
        assert wait_data(c, 3, 30000) == 30000
        # (MAX_FRAME_SIZE is restored too, but nghttp2 never sends a frame above 16,384 bytes.)
        c.send(window_update(3, 20000))
        end = c.response_end(3, timeout=5)
        assert end is not None and end.type == DATA and c.data_received(3) == 50000
        assert c.goaway(timeout=0) is None
    finally:
        c.close()


def test_client_window_below_65535_is_kept_across_rebuild(origin, turnpike):
    # A client that never opens the connection window: after 40,000 bytes it has 25,535 left for
    # us, and a fresh session (which starts at 65,535) must not send more than that.
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        served(c, 1, "/bytes/40000")
        assert c.data_received(1) == 40000
        wait_dropped(tp, c.sock, 1)
        c.send(c.request_headers(3, "/bytes/30000"))
        assert wait_data(c, 3, 25535) == 25535
        c.send(window_update(0, 10000))
        end = c.response_end(3, timeout=5)
        assert end is not None and end.type == DATA and c.data_received(3) == 30000
    finally:
        c.close()


def test_opened_connection_window_is_kept_across_rebuild(origin, turnpike):
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False, settings=[(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE, 4 * MiB)])
    try:
        c.send(window_update(0, MiB))  # as browsers do: 65,535 + 1 MiB
        served(c, 1, "/bytes/300000")
        wait_dropped(tp, c.sock, 1)
        served(c, 3, "/bytes/600000")  # flows whole: 814,111 left
        assert c.data_received(3) == 600000
        wait_dropped(tp, c.sock, 3)
        c.send(c.request_headers(5, "/bytes/300000"))
        assert wait_data(c, 5, 214111) == 214111  # and not a byte more
        c.send(window_update(0, 100000))
        end = c.response_end(5, timeout=5)
        assert end is not None and end.type == DATA and c.data_received(5) == 300000
    finally:
        c.close()


# ---- Streams of the dropped session (RFC 9113 §5.1, §5.1.1) ------------------------------------

def test_window_update_priority_and_reset_on_old_stream_are_ignored_after_rebuild(origin, turnpike):
    # The session that served stream 1 had forgotten it and ignored these; a fresh session that
    # did not know stream 1 was used would take them as frames on an idle stream (connection
    # error PROTOCOL_ERROR).
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        browser_like(c)
        served(c, 1)
        served(c, 3)
        wait_dropped(tp, c.sock, 3)
        c.send(window_update(1, 1000) + frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15)) +
               frame(RST_STREAM, 0, 1, struct.pack(">I", h2client.CANCEL)))
        served(c, 5)
        assert c.goaway(timeout=0.3) is None
        # Stream 1 is one the client reset now: DATA on it is a stream error, as before (§5.1).
        c.send(frame(DATA, h2client.END_STREAM, 1, b"late"))
        r = c.rst(1, timeout=5)
        assert r is not None and r.error_code == h2client.STREAM_CLOSED
        served(c, 7)
        assert c.goaway(timeout=0.3) is None
    finally:
        c.close()


def test_lower_unused_stream_id_after_rebuild_is_protocol_error(origin, turnpike):
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        browser_like(c)
        served(c, 1)
        served(c, 5)  # 3 skipped
        wait_dropped(tp, c.sock, 5)
        c.send(c.request_headers(3, "/echo/three"))
        g = c.goaway(timeout=5)
        assert g is not None and g.error_code == h2client.PROTOCOL_ERROR, c.frames
        assert g.last_stream_id == 5
        assert c.wait_closed(timeout=5)
        assert "/echo/three" not in [r.path for r in origin.snapshot()]
    finally:
        c.close()


def test_headers_on_ended_stream_after_rebuild_is_stream_closed(origin, turnpike):
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        browser_like(c)
        served(c, 1)
        served(c, 3)
        wait_dropped(tp, c.sock, 3)
        c.send(c.request_headers(1, "/echo/again"))
        g = c.goaway(timeout=5)
        assert g is not None and g.error_code == h2client.STREAM_CLOSED, c.frames
        assert "/echo/again" not in [r.path for r in origin.snapshot()]
    finally:
        c.close()


# ---- GOAWAY and timers ---------------------------------------------------------------------------

def test_drain_goaway_of_dropped_session_names_its_last_stream(origin, turnpike):
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=False)
    try:
        browser_like(c)
        for sid in (1, 3, 5):
            served(c, sid)
        wait_dropped(tp, c.sock, 5)
        tp.signal(signal.SIGTERM)
        g = c.goaway(timeout=5)
        assert g is not None and g.error_code == h2client.NO_ERROR
        assert g.last_stream_id == 5
        assert tp.wait_exit(5.0) == 0
    finally:
        c.close()


def test_idle_timeout_goaway_of_dropped_session_names_its_last_stream(origin, turnpike):
    tp = turnpike(park_config(origin, http2={"idle_timeout": "2500ms"}))
    c = RawH2(tp.port(), index=False)
    try:
        browser_like(c)
        served(c, 1)
        served(c, 3)
        wait_dropped(tp, c.sock, 3)
        g = c.goaway(timeout=6)
        assert g is not None and g.error_code == h2client.NO_ERROR and g.last_stream_id == 3
    finally:
        c.close()


def test_timers_do_not_rebuild_parked_sessions(origin, turnpike):
    # Above 256 connections a worker parks idle ones at once, while a sweep deadline of their
    # busy moment is still set: that sweep must not rebuild a session just to look at it.
    tp = turnpike(park_config(origin))
    conns = []
    try:
        for i in range(300):
            c = RawH2(tp.port(), index=False)
            c.send(c.request_headers(1, f"/echo/{i}"))
            conns.append(c)
        for c in conns:
            assert c.response_end(1, timeout=10) is not None and c.status_of(1) == 200
        for c in conns[:: 30]:
            wait_dropped(tp, c.sock, 1)
        time.sleep(1.5)  # past every sweep deadline the requests left
        logs = tp.logs()
        assert len(re.findall(r"parked without its session", logs)) >= 290
        assert "session rebuilt" not in logs
        for c in conns[:: 30]:
            served(c, 3)
            assert rebuilds(tp, c.sock, 1) == 1
    finally:
        for c in conns:
            c.close()


def test_reload_rebuilds_only_the_sessions_it_sends_goaway_on(origin, turnpike):
    # The same listener: the parked connection follows the new snapshot without a session. Its
    # listener changed: a GOAWAY naming the dropped session's last stream.
    cfg = park_config(origin)
    tp = turnpike(cfg)
    c = RawH2(tp.port(), index=False)
    try:
        browser_like(c)
        served(c, 1)
        served(c, 3)
        wait_dropped(tp, c.sock, 3)
        same_listener = park_config(origin)
        same_listener["routes"] = [{"name": "extra", "match": {"paths": ["/extra/*"]}, "upstream": "origin"}] + \
            same_listener["routes"]
        same_listener["listeners"] = cfg["listeners"]
        tp.reload(same_listener)
        time.sleep(0.5)
        assert rebuilds(tp, c.sock) == 0
        assert c.goaway(timeout=0) is None
        changed = park_config(origin, http2={"idle_timeout": "60s"})
        tp.reload(changed)
        g = c.goaway(timeout=5)
        assert g is not None and g.error_code == h2client.NO_ERROR and g.last_stream_id == 3
        assert rebuilds(tp, c.sock, 1) == 1
    finally:
        c.close()


def test_connection_limit_goaway_of_dropped_session_names_its_last_stream(origin, turnpike):
    # At the limit the oldest idle connection makes way (Worker::make_room_for_connection).
    tp = turnpike(park_config(origin, limits={"max_connections_per_worker": 2}))
    a = RawH2(tp.port(), index=False)
    b = c = None
    try:
        browser_like(a)
        served(a, 1)
        served(a, 3)
        wait_dropped(tp, a.sock, 3)
        b = RawH2(tp.port(), index=False)
        served(b, 1)
        c = RawH2(tp.port(), index=False)
        g = a.goaway(timeout=5)
        assert g is not None and g.error_code == h2client.NO_ERROR and g.last_stream_id == 3
        served(c, 1)
    finally:
        for x in (a, b, c):
            if x is not None:
                x.close()


def test_table_that_cannot_be_read_out_closes_the_idle_connection(origin, turnpike):
    # A field nghttp2's HTTP checks refuse outright is never delivered, so the read-out stops
    # short; the old session has had streams of ours opened in it by then and cannot be kept.
    # No working client indexes such a field (its request was malformed): it is closed, as an
    # idle connection may be.
    tp = turnpike(park_config(origin))
    c = RawH2(tp.port(), index=True)
    try:
        served(c, 1)
        c.send(c.request_headers(3, extra=[("connection", "keep-alive")]))
        assert c.rst(3, timeout=5) is not None
        assert c.wait_closed(timeout=6)
        tp.wait_log(rf"h2 client {client_name(c.sock)}: HPACK table could not be read out", 2)
        assert c.goaway(timeout=0.2) is None
    finally:
        c.close()

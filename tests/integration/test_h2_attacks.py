"""HTTP/2 attacks: each abusive connection is cut off with a GOAWAY carrying the expected error,
while a well-behaved client on another connection keeps getting 200s, and the process's memory
afterwards stays below twice what it was idle.

Covered: Rapid Reset (CVE-2023-44487), CONTINUATION flood (CVE-2024-28182), HPACK bomb, PING
flood, SETTINGS flood, empty-DATA flood, and a header block that never ends (header_timeout)."""
import struct
import threading
import time

import pytest

import h2client
from h2client import (CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, PING, RST_STREAM, SETTINGS, H2Client, RawH2,
                      frame, settings_frame)
from harness import base_config

ATTACK_HTTP2 = {"max_resets_per_second": 100, "max_control_frames_per_second": 500, "max_continuations": 8,
                "max_header_list_size": 16384, "header_table_size": 4096}


@pytest.fixture
def tp(origin, turnpike):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0, "http2": ATTACK_HTTP2}
    return turnpike(base_config(origin, listeners=[listener], limits={"header_timeout": "1s"}, workers=1))


class Bystander:
    """A well-behaved HTTP/2 client requesting in a loop on its own connection (bounded)."""

    def __init__(self, port: int):
        self.port = port
        self.ok = 0
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        c = H2Client(self.port)
        try:
            for i in range(5000):
                if self.stop.is_set():
                    break
                res = c.get(f"/echo/bystander/{i}", timeout=10)
                if res.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(res.status)
        except Exception as e:  # noqa: BLE001 - reported by finish()
            self.failures.append(repr(e))
        finally:
            c.close()

    def wait_some(self, n: int = 3, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while self.ok < n and time.monotonic() < deadline and not self.failures:
            time.sleep(0.02)
        assert self.ok >= n, f"bystander got only {self.ok} responses: {self.failures}"

    def finish(self, more: int = 3):
        start = self.ok
        self.wait_some(start + more)
        self.stop.set()
        self.thread.join(15)
        assert not self.failures, f"the bystander was disturbed: {self.failures}"


def attack(tp, send_attack, expected_code: int):
    """Runs one attack with a bystander; returns the GOAWAY frame."""
    idle_rss = h2client.vm_rss_kib(tp.pid)
    bystander = Bystander(tp.port())
    bystander.wait_some()
    c = RawH2(tp.port())
    try:
        send_attack(c)
        g = c.goaway(timeout=10)
        assert g is not None, "no GOAWAY for the attacking connection"
        assert g.error_code == expected_code, \
            f"GOAWAY {h2client.ERROR_NAMES.get(g.error_code)}, expected {h2client.ERROR_NAMES[expected_code]}"
        assert c.wait_closed(timeout=5), "attacking connection still open after GOAWAY"
    finally:
        c.close()
    bystander.finish()
    after_rss = h2client.vm_rss_kib(tp.pid)
    assert after_rss < 2 * idle_rss, f"RSS {after_rss} KiB after the attack, {idle_rss} KiB idle"
    assert tp.alive()
    return g


def send_until_closed(c, chunks, max_chunks: int):
    for i, chunk in enumerate(chunks):
        if i >= max_chunks or not c.send(chunk):
            return


def test_rapid_reset_cut_off_with_enhance_your_calm(tp):
    def rapid_reset(c):
        def chunks():
            sid = 1
            while True:
                batch = b""
                for _ in range(50):
                    batch += c.request_headers(sid, f"/sleep/50?{sid}") + frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
                    sid += 2
                yield batch
        send_until_closed(c, chunks(), max_chunks=200)  # up to 10,000 streams opened and reset
    attack(tp, rapid_reset, h2client.ENHANCE_YOUR_CALM)


def test_continuation_flood_cut_off(tp):
    def flood(c):
        block = c.block([(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "x")])
        c.send(frame(HEADERS, END_STREAM, 1, block))
        send_until_closed(c, (frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b") for _ in range(10_000)), 10_000)
    attack(tp, flood, h2client.ENHANCE_YOUR_CALM)


def test_hpack_bomb_cut_off(tp):
    def bomb(c):
        # One 4000-byte field enters the dynamic table (literal with incremental indexing), then
        # every request references it a few hundred times: ~1 byte on the wire per 4 KB decoded.
        name, value = b"x-bomb", b"a" * 4000
        # Value length 4000 as an HPACK integer with a 7-bit prefix: 127 + 3873.
        literal = bytes([0x40, len(name)]) + name + bytes([0x7F]) + hpack_int_rest(4000 - 127) + value
        pseudo = c.block([(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "x")])
        refs = bytes([0x80 | 62]) * 300
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, pseudo + literal + refs))
    attack(tp, bomb, h2client.ENHANCE_YOUR_CALM)


def hpack_int_rest(n: int) -> bytes:
    out = b""
    while n >= 128:
        out += bytes([n % 128 + 128])
        n //= 128
    return out + bytes([n])


def test_ping_flood_cut_off(tp):
    def flood(c):
        send_until_closed(c, (frame(PING, 0, 0, struct.pack(">Q", i)) * 100 for i in range(200)), 200)
    attack(tp, flood, h2client.ENHANCE_YOUR_CALM)


def test_settings_flood_cut_off(tp):
    def flood(c):
        send_until_closed(c, (settings_frame([(0x3, 100)]) * 100 for _ in range(200)), 200)
    attack(tp, flood, h2client.ENHANCE_YOUR_CALM)


def test_empty_data_flood_cut_off(tp):
    def flood(c):
        c.send(c.request_headers(1, "/sink", method="POST", end=False))
        send_until_closed(c, (frame(DATA, 0, 1, b"") * 100 for _ in range(200)), 200)
    attack(tp, flood, h2client.ENHANCE_YOUR_CALM)


def test_header_block_that_never_ends_times_out(tp):
    def slow(c):
        block = c.block([(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "x")])
        c.send(frame(HEADERS, END_STREAM, 1, block))  # no END_HEADERS, and no CONTINUATION ever
    attack(tp, slow, h2client.PROTOCOL_ERROR)


def ack_server_settings(c: RawH2) -> None:
    """Acknowledges every SETTINGS frame of the server's opening (RFC 9113 §6.5.3)."""
    assert c.wait_for(lambda f: f.type == SETTINGS and not f.flags & h2client.ACK, timeout=5) is not None
    c.wait_for(lambda f: False, timeout=0.3)  # the rest of the server's opening frames
    n = sum(1 for f in c.frames if f.type == SETTINGS and not f.flags & h2client.ACK)
    c.send(settings_frame(ack=True) * n)


def limited_turnpike(origin, turnpike, streams: int = 4):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0, "http2": {"max_concurrent_streams": streams}}
    return turnpike(base_config(origin, listeners=[listener], workers=1))


@pytest.mark.parametrize("acked", [False, True], ids=["before-settings-ack", "after-settings-ack"])
def test_streams_past_the_limit_are_refused_and_the_rest_complete(origin, turnpike, acked):
    # RFC 9113 §5.1.2: a stream error for the excess streams only. (Once the client had
    # acknowledged the limit, nghttp2 used to answer GOAWAY(PROTOCOL_ERROR), losing them all.)
    tp = limited_turnpike(origin, turnpike)
    c = RawH2(tp.port())
    try:
        if acked:
            ack_server_settings(c)
        sids = list(range(1, 21, 2))  # 10 slow streams at once, 4 allowed
        c.send(b"".join(c.request_headers(sid, f"/sleep/300?{sid}") for sid in sids))
        for sid in sids[4:]:
            r = c.rst(sid, timeout=5)
            assert r is not None, f"stream {sid} not refused; frames: {c.frames[:20]}"
            assert r.error_code == h2client.REFUSED_STREAM, h2client.ERROR_NAMES.get(r.error_code)
        for sid in sids[:4]:
            end = c.response_end(sid, timeout=10)
            assert end is not None and end.type != RST_STREAM and c.status_of(sid) == 200, f"stream {sid}: {end}"
        assert c.goaway(timeout=0.2) is None
        c.send(c.request_headers(21, "/echo/after"))
        assert c.response_end(21, timeout=5) is not None and c.status_of(21) == 200
    finally:
        c.close()


def test_client_that_keeps_exceeding_the_stream_limit_gets_goaway(origin, turnpike):
    tp = limited_turnpike(origin, turnpike)
    c = RawH2(tp.port())
    try:
        ack_server_settings(c)
        # 4 streams allowed and 50 more: within the tolerance (100 refusals a second), refused.
        c.send(b"".join(c.request_headers(sid, "/sleep/300") for sid in range(1, 2 * 54, 2)))
        r = c.rst(2 * 54 - 1, timeout=5)
        assert r is not None and r.error_code == h2client.REFUSED_STREAM, c.frames[:10]
        refused = [f for f in c.frames if f.type == RST_STREAM and f.error_code == h2client.REFUSED_STREAM]
        assert len(refused) == 50 and c.goaway(timeout=0.1) is None
        # Then 150 more at once: past any second's tolerance. (nghttp2 sends no more resets
        # once the GOAWAY is queued: the GOAWAY's last stream id tells what was not processed.)
        c.send(b"".join(c.request_headers(sid, "/sleep/300") for sid in range(2 * 54 + 1, 2 * 204, 2)))
        g = c.goaway(timeout=10)
        assert g is not None and g.error_code == h2client.PROTOCOL_ERROR, g
        assert c.wait_closed(timeout=5)
    finally:
        c.close()
    assert tp.alive()


def test_random_frames_never_crash_the_server(tp):
    """Seeded garbage: random frame types, flags, stream ids and payloads mixed with valid
    requests, resets and window updates, on many connections. The process must survive (and the
    sanitizers stay quiet: the fixture checks) and keep answering."""
    import random
    rng = random.Random(20240404)
    for conn in range(150):
        c = RawH2(tp.port())
        try:
            data = b""
            for _ in range(rng.randint(1, 25)):
                sid = rng.choice([0, 1, 3, 5, 7, 2, 0x7FFFFFFF])
                kind = rng.random()
                if kind < 0.3:
                    data += c.request_headers(sid or 1, rng.choice(["/echo", "/bytes/70000", "/sleep/20", "/sink"]),
                                              method=rng.choice(["GET", "POST"]), end=rng.random() < 0.5)
                elif kind < 0.4:
                    data += frame(RST_STREAM, 0, sid, struct.pack(">I", rng.randint(0, 13)))
                elif kind < 0.5:
                    data += frame(h2client.WINDOW_UPDATE, 0, sid, struct.pack(">I", rng.randint(0, 1 << 20)))
                elif kind < 0.6:
                    data += frame(DATA, rng.choice([0, END_STREAM]), sid, rng.randbytes(rng.randint(0, 300)))
                else:
                    data += frame(rng.randint(0, 12), rng.randint(0, 255), sid, rng.randbytes(rng.randint(0, 64)))
            c.send(data)
            c.wait_for(lambda f: f.type == h2client.GOAWAY, timeout=0.05 if conn % 10 else 0.5)
        finally:
            c.close()
    assert tp.alive()
    ok = H2Client(tp.port())
    try:
        assert ok.get("/echo/still-alive").status == 200
    finally:
        ok.close()

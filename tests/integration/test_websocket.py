"""WebSocket (HTTP/1.1 Upgrade) through the gateway: a tunnel only once the upstream answers 101."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

import rawhttp
from harness import base_config, upstream
from tlsutil import TlsConn, make_cert

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def read_frame(sock) -> tuple[int, bytes]:
    """(opcode, payload) of one frame; (-1, b"") at EOF."""
    def exact(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data
    try:
        b0, b1 = exact(2)
    except EOFError:
        return -1, b""
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    mask = exact(4) if b1 & 0x80 else None
    payload = exact(n) if n else b""
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return b0 & 0x0F, payload


def frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


class WsOrigin:
    """Echo server: answers the upgrade with 101 (or with `decline_status`), then echoes frames.
    Records every request head it got."""

    def __init__(self, decline_status: int | None = None, unsolicited_101: bool = False):
        self.decline_status = decline_status
        self.unsolicited_101 = unsolicited_101
        self.heads: list[bytes] = []
        self.closed_cleanly = threading.Event()
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(16)
        self.port = self.lst.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lst.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(20)
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = c.recv(4096)
                if not data:
                    return
                buf += data
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.heads.append(head)
            fields = {l.split(b":", 1)[0].strip().lower(): l.split(b":", 1)[1].strip()
                      for l in head.split(b"\r\n")[1:]}
            if self.unsolicited_101 or (self.decline_status is None and b"sec-websocket-key" in fields):
                key = fields.get(b"sec-websocket-key", b"x")
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
                          + frame(1, b"hello from origin", masked=False))  # right behind the 101
            else:
                body = b"not upgraded\n"
                c.sendall(b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s" % (self.decline_status or 200,
                                                                                  len(body), body))
                return
            reader = _Prefixed(c, rest)  # bytes that came behind the upgrade request come first
            while True:
                op, payload = read_frame(reader)
                if op == -1:
                    self.closed_cleanly.set()
                    return
                if op == 8:
                    c.sendall(frame(8, payload, masked=False))
                    c.shutdown(socket.SHUT_WR)
                    if read_frame(c)[0] == -1:
                        self.closed_cleanly.set()
                    return
                c.sendall(frame(op, payload, masked=False))
        except (OSError, EOFError):
            pass
        finally:
            c.close()

    def stop(self):
        self.lst.close()


class _Prefixed:
    """A socket whose first reads return `prefix` (bytes already received)."""

    def __init__(self, sock, prefix):
        self.sock, self.prefix = sock, prefix

    def recv(self, n):
        if self.prefix:
            out, self.prefix = self.prefix[:n], self.prefix[n:]
            return out
        return self.sock.recv(n)


def upgrade_request(key: bytes, path="/chat") -> bytes:
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def read_head(sock) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        assert data, f"closed before a response head: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


@pytest.fixture
def ws_origin():
    o = WsOrigin()
    yield o
    o.stop()


def ws_config(port, **up):
    return base_config(upstreams=[upstream("ws", [f"127.0.0.1:{port}"], **up)],
                       routes=[{"name": "ws", "match": {"paths": ["/*"]}, "upstream": "ws"}])


def echo_session(sock, rest=b""):
    key = base64.b64encode(os.urandom(16))
    sock.sendall(upgrade_request(key) + frame(1, b"sent with the request", masked=True))
    head, rest = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101"), head
    lines = head.lower().split(b"\r\n")
    assert b"upgrade: websocket" in lines and b"connection: upgrade" in lines
    assert b"sec-websocket-accept: " + accept_key(key).lower() in lines
    r = _Prefixed(sock, rest)
    assert read_frame(r) == (1, b"hello from origin")       # sent right behind the 101
    assert read_frame(r) == (1, b"sent with the request")   # sent right behind the upgrade request
    big = os.urandom(300_000)
    for payload in (b"ping-1", big, b"ping-3"):
        sock.sendall(frame(2, payload, masked=True))
        assert read_frame(r) == (2, payload)
    sock.sendall(frame(8, b"\x03\xe8bye", masked=True))
    assert read_frame(r) == (8, b"\x03\xe8bye")
    assert read_frame(r)[0] == -1  # the origin's half-close reached us


def test_websocket_echo_through_the_gateway(turnpike, ws_origin):
    tp = turnpike(ws_config(ws_origin.port))
    with socket.create_connection(("127.0.0.1", tp.port()), timeout=10) as s:
        echo_session(s)
    assert ws_origin.closed_cleanly.wait(5)
    head = ws_origin.heads[0].lower()
    assert b"\r\nupgrade: websocket" in head and b"\r\nconnection: upgrade" in head
    assert b"sec-websocket-key: " in head and b"x-forwarded-for: 127.0.0.1" in head


def test_websocket_over_tls(turnpike, ws_origin, tmp_path):
    cert, key = make_cert(tmp_path, "ws", "ws.test")
    cfg = ws_config(ws_origin.port)
    cfg["listeners"][0]["tls"] = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    tp = turnpike(cfg)
    c = TlsConn(tp.port())
    try:
        echo_session(c.sock)
    finally:
        c.close()


def test_declined_upgrade_is_an_ordinary_response(turnpike):
    o = WsOrigin(decline_status=403)
    try:
        tp = turnpike(ws_config(o.port))
        with socket.create_connection(("127.0.0.1", tp.port()), timeout=10) as s:
            s.sendall(upgrade_request(base64.b64encode(os.urandom(16))))
            head, rest = read_head(s)
            assert head.startswith(b"HTTP/1.1 403"), head
            assert b"upgrade:" not in head.lower()
    finally:
        o.stop()


def test_unrequested_101_is_a_bad_gateway(turnpike):
    o = WsOrigin(unsolicited_101=True)
    try:
        tp = turnpike(ws_config(o.port, retries=0))
        resp = rawhttp.request(tp.port(), "GET", "/plain")
        assert resp.status == 502 and resp.json()["error"] == "upstream_bad_response"
        assert b"upgrade" not in o.heads[0].lower()  # a plain request carries no upgrade
    finally:
        o.stop()


def test_h2c_upgrade_is_not_forwarded(turnpike, origin):
    tp = turnpike(base_config(origin))
    resp = rawhttp.request(tp.port(), "GET", "/echo", headers=[("Connection", "Upgrade, HTTP2-Settings"),
                                                                ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
    assert resp.status == 200
    assert not {"upgrade", "http2-settings"} & origin.requests[-1].header_names()


def test_idle_tunnel_is_closed_after_the_upstream_read_timeout(turnpike, ws_origin):
    cfg = ws_config(ws_origin.port)
    cfg["upstreams"][0]["timeouts"]["read"] = "700ms"
    tp = turnpike(cfg)
    with socket.create_connection(("127.0.0.1", tp.port()), timeout=10) as s:
        s.sendall(upgrade_request(base64.b64encode(os.urandom(16))))
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 101")
        r = _Prefixed(s, rest)
        assert read_frame(r)[0] == 1
        t0 = time.monotonic()
        s.settimeout(10)
        while True:  # nothing moves: the gateway closes the tunnel
            try:
                if not s.recv(4096):
                    break
            except ConnectionResetError:
                break
        assert 0.5 < time.monotonic() - t0 < 5
    tp.stop()
    line = [l for l in tp.logs().splitlines() if "turnpike stopped:" in l][-1]
    fields = dict(item.split("=", 1) for item in line.split("turnpike stopped:")[1].split())
    assert fields["tunnels"] == "1" and fields["tunnel_timeouts"] == "1"

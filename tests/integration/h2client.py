"""HTTP/2 clients for the integration tests (h2c with prior knowledge, RFC 9113 §3.3).

H2Client drives the `h2` library (python3-h2): requests, streamed bodies, flow control under the
test's control, resets, GOAWAY. RawH2 writes hand-built frames and reads the server's frames back,
for the conformance and attack tests where the client must break the rules on purpose.

Every socket operation has a timeout and every loop is bounded: a misbehaving proxy fails a test,
it never hangs it.
"""
from __future__ import annotations

import hashlib
import socket
import struct
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

DEFAULT_TIMEOUT = 10.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6) and error codes (§7).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, \
    REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
               4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
               8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM"}


def vm_rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (/proc/PID/status VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class StreamResult:
    status: int | None = None
    headers: list = field(default_factory=list)
    trailers: list = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None          # RST_STREAM error code from the server
    keep_body: bool = True
    body_len: int = 0
    digest: object = field(default_factory=hashlib.sha256)

    def header(self, name: str):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


class H2Client:
    """One HTTP/2 connection with the h2 library. auto_window: give flow-control window back as
    soon as DATA arrives (else the test calls grant())."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT, settings: dict | None = None,
                 auto_window: bool = True, validate: bool = True, prefix: bytes = b"", tls=None):
        """`prefix`: bytes sent first (a PROXY protocol header); `tls`: an ssl.SSLContext offering
        ALPN h2, the connection then speaks TLS (after the prefix)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if prefix:
            self.sock.sendall(prefix)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="example.test")
            assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate, normalize_outbound_headers=validate,
                                        validate_inbound_headers=validate)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.auto_window = auto_window
        self.streams: dict[int, StreamResult] = {}
        self.goaway = None          # ConnectionTerminated event
        self.closed = False
        self.remote_settings_seen = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def request(self, method: str, path: str, *, headers=(), body: bytes | None = None, end: bool = True,
                authority: str = "localhost", keep_body: bool = True, content_length: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]
        if body is not None and content_length:
            hdrs.append(("content-length", str(len(body))))
        hdrs += list(headers)
        self.streams[sid] = StreamResult(keep_body=keep_body)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end=end)
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True, deadline_s: float = 60.0) -> None:
        """Sends body bytes, waiting for flow-control window as needed (bounded by deadline_s)."""
        view = memoryview(body)
        deadline = time.monotonic() + deadline_s
        while len(view) > 0:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                assert time.monotonic() < deadline, "no flow-control window to send the request body"
                self.pump(timeout=1.0)
                if self.streams[sid].done:
                    return
                continue
            n = min(window, len(view))
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def reset(self, sid: int, code: int = CANCEL) -> None:
        self.conn.reset_stream(sid, code)
        self.flush()

    def grant(self, sid: int, n: int) -> None:
        """Gives the server n bytes of window on the stream and the connection."""
        self.conn.increment_flow_control_window(n, stream_id=sid)
        self.conn.increment_flow_control_window(n)
        self.flush()

    def pump(self, timeout: float = 1.0) -> bool:
        """Reads once (waiting up to timeout) and handles the events; False when the peer closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(256 * 1024)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        finally:
            self.sock.settimeout(DEFAULT_TIMEOUT)
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self._handle(ev)
        try:
            self.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
        return True

    def _handle(self, ev) -> None:
        if isinstance(ev, h2.events.ResponseReceived):
            s = self.streams[ev.stream_id]
            s.headers = list(ev.headers)
            s.status = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            pass
        elif isinstance(ev, h2.events.DataReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.body_len += len(ev.data)
                s.digest.update(ev.data)
                if s.keep_body:
                    s.body += ev.data
            if self.auto_window and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.streams[ev.stream_id].trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            self.streams[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.streams:
                self.streams[ev.stream_id].reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait(self, predicate, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting on the HTTP/2 connection"
            if not self.pump(timeout=min(1.0, remaining)) and not predicate():
                raise AssertionError("connection closed by the server before the condition held")

    def wait_streams(self, sids, timeout: float = DEFAULT_TIMEOUT) -> list:
        self.wait(lambda: all(self.streams[s].done for s in sids), timeout)
        return [self.streams[s] for s in sids]

    def get(self, path: str, timeout: float = DEFAULT_TIMEOUT, **kw) -> StreamResult:
        sid = self.request("GET", path, **kw)
        return self.wait_streams([sid], timeout)[0]


# ---------------------------------------------------------------------------------------------
# Raw frames
# ---------------------------------------------------------------------------------------------

def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid & 0x7FFFFFFF) + payload


def settings_frame(pairs=(), ack=False) -> bytes:
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


@dataclass
class Frame:
    type: int
    flags: int
    sid: int
    payload: bytes

    @property
    def error_code(self) -> int:
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        raise AssertionError(f"frame type {self.type} has no error code")

    @property
    def last_stream_id(self) -> int:
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF


class RawH2:
    """Hand-built frames over a socket; the server's frames are parsed back as Frame objects."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT, settings=(), preface: bool = True,
                 index: bool = True, wrap=None):
        """index=False: header fields are never added to HPACK's dynamic table (RFC 7541 §6.2.3).
        wrap(sock) -> sock: e.g. a TLS client context's wrap_socket (ALPN h2)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if wrap is not None:
            self.sock = wrap(self.sock)
        self.encoder = hpack.Encoder()
        self.index = index
        self.buf = b""
        self.frames: list[Frame] = []
        self.closed = False
        if preface:
            self.send(PREFACE + settings_frame(settings))

    def send(self, data: bytes) -> bool:
        """False when the server has already closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False

    def block(self, headers) -> bytes:
        if not self.index:
            headers = [hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers]
        return self.encoder.encode(headers)

    def request_headers(self, sid: int, path: str = "/echo", *, method: str = "GET", extra=(), end: bool = True,
                        authority: str = "localhost") -> bytes:
        hdrs = [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)] + list(extra)
        return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid, self.block(hdrs))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        while len(self.buf) >= 9:
            length = struct.unpack(">I", b"\0" + self.buf[:3])[0]
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
            self.frames.append(Frame(ftype, flags, sid, self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
        return True

    def wait_for(self, predicate, timeout: float = DEFAULT_TIMEOUT):
        """The first received frame matching predicate (or None at close / timeout)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for f in self.frames[seen:]:
                if predicate(f):
                    return f
            seen = len(self.frames)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            self._read(min(0.5, remaining))

    def goaway(self, timeout: float = DEFAULT_TIMEOUT) -> Frame | None:
        return self.wait_for(lambda f: f.type == GOAWAY, timeout)

    def rst(self, sid: int, timeout: float = DEFAULT_TIMEOUT) -> Frame | None:
        return self.wait_for(lambda f: f.type == RST_STREAM and f.sid == sid, timeout)

    def response_end(self, sid: int, timeout: float = DEFAULT_TIMEOUT) -> Frame | None:
        return self.wait_for(lambda f: f.sid == sid and (f.type in (DATA, HEADERS) and f.flags & END_STREAM
                                                         or f.type == RST_STREAM), timeout)

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._read(min(0.5, deadline - time.monotonic()))
        return self.closed

    def data_received(self, sid: int) -> int:
        """DATA payload bytes received on sid so far (padding included)."""
        return sum(len(f.payload) for f in self.frames if f.type == DATA and f.sid == sid)

    def status_of(self, sid: int) -> int | None:
        """:status of the response HEADERS received on sid so far. HPACK is stateful, so every
        HEADERS frame is decoded once, in order, with one decoder."""
        if not hasattr(self, "_decoder"):
            self._decoder = hpack.Decoder()
            self._decoded = 0
            self._statuses = {}
        for f in self.frames[self._decoded:]:
            if f.type == HEADERS:
                block = f.payload
                if f.flags & PADDED:
                    block = block[1:len(block) - block[0]]
                if f.flags & PRIORITY_FLAG:
                    block = block[5:]
                for n, v in self._decoder.decode(block):
                    if n in (":status", b":status") and f.sid not in self._statuses:
                        self._statuses[f.sid] = int(v)
            self._decoded += 1
        return self._statuses.get(sid)

"""An HTTP/2 test origin (h2c, prior knowledge) built on the `h2` library (python3-h2).

One thread per connection runs a select loop: it feeds bytes to h2, answers streams once their
request has ended, sends bodies as flow control allows, and runs delayed actions on time, so a
slow stream never holds up the others on its connection. Every loop is bounded by IO_TIMEOUT.

What a request gets depends on its path:
    /bad-header            a response carrying a connection-specific field (forbidden in HTTP/2)
    /drop                  the connection closes under the stream (no answer)
    /drop-corked           the same, after a WINDOW_UPDATE (which needs no answer) that leaves in
                           the same TCP segment as the close (TCP_CORK): the proxy's read of it
                           finds the end of stream queued behind it, with no readiness edge of its own
    /echo...               200 JSON: method, path, authority, scheme, headers, body length+sha256,
                           connection and stream ids
    /sleep/<ms>            the echo, after <ms>
    /bytes/<n>             n pattern bytes (origin.pattern_chunks), no content-length
    /trailers              "hello trailers" then trailers x-checksum and x-origin
    /status/<code>         that status, empty body
    (any path, with H2Origin(fixed_status=...)) that status, x-node: the origin's name
    /reset                 RST_STREAM (INTERNAL_ERROR) instead of an answer
    /reset-after-head      response head, then RST_STREAM
    /goaway-refuse/<key>   first time per key: GOAWAY whose last-stream-id excludes this stream,
                           no answer, connection closed soon after; later times: the echo
    /goaway-after          the echo, then GOAWAY (last-stream-id = this stream); closes when idle
    gRPC (content-type application/grpc...):
        /test.Echo/Unary   the request's length-prefixed messages echoed back, grpc-status 0
        /test.Echo/Slow    the same after the request's x-delay-ms
        /test.Echo/SlowBody  the head at once, the messages after x-delay-ms
        /test.Echo/Fail    trailers-only: grpc-status 5, grpc-message "not found"
        /grpc.health.v1.Health/Check  the gRPC health service: HealthCheckResponse{status} from
                           H2Origin.health (service name -> ServingStatus: 1 SERVING, 2 NOT_SERVING);
                           a service not in it: trailers-only grpc-status 5 (NOT_FOUND)
    /health                H2Origin.health_status (200 unless a test changes it), body "ok"

The origin records every request (H2Request) and counts connections and streams per connection,
so tests can assert what reached it and how it was multiplexed. A future gRPC-client test only
needs a client: the gRPC paths here already speak the framing.
"""
from __future__ import annotations

import hashlib
import json
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from origin import pattern_chunks

IO_TIMEOUT = 30.0


@dataclass
class H2Request:
    conn_id: int
    stream_id: int
    method: str = ""
    path: str = ""
    authority: str = ""
    scheme: str = ""
    headers: list = field(default_factory=list)   # [(name, value)] regular fields, in order
    body: bytearray = field(default_factory=bytearray)
    trailers: list = field(default_factory=list)
    ended: bool = False

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return values[0] if values else None

    def to_json(self) -> dict:
        return {"method": self.method, "path": self.path, "authority": self.authority, "scheme": self.scheme,
                "headers": self.headers, "body_len": len(self.body),
                "body_sha256": hashlib.sha256(self.body).hexdigest(), "conn_id": self.conn_id,
                "stream_id": self.stream_id}


def grpc_frames(messages: list) -> bytes:
    """gRPC length-prefixed messages: flag byte 0, 4-byte big-endian length, payload."""
    return b"".join(struct.pack(">BI", 0, len(m)) + m for m in messages)


def grpc_messages(data: bytes) -> list:
    out, i = [], 0
    while i + 5 <= len(data):
        _, n = struct.unpack(">BI", data[i:i + 5])
        out.append(bytes(data[i + 5:i + 5 + n]))
        i += 5 + n
    return out


def health_service(messages: list) -> str:
    """The service of a grpc.health.v1.HealthCheckRequest (field 1, a string; "" when absent)."""
    msg = messages[0] if messages else b""
    i = 0
    while i < len(msg):
        key, i = msg[i], i + 1
        if key == 0x0A:
            n, i = msg[i], i + 1  # (test service names are short: a one-byte length)
            return msg[i:i + n].decode()
        break
    return ""


class _Conn:
    """One origin connection, served by its own thread."""

    def __init__(self, origin: "H2Origin", sock: socket.socket, conn_id: int):
        self.origin = origin
        self.sock = sock
        self.conn_id = conn_id
        # Outbound validation off: /bad-header must be able to break the rules (every other answer
        # here is well-formed by construction). Inbound validation stays on: it checks the proxy.
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.streams: dict = {}
        self.pending: dict = {}       # stream id → [bytearray data, end_stream, trailers]
        self.timers: list = []        # [(when, fn)]
        self.close_at: float | None = None
        self.close_when_idle = False
        self.goaway_after: int | None = None   # send GOAWAY once this stream's answer is out
        self.open_streams = 0

    def run(self) -> None:
        o = self.origin
        if o.max_concurrent_streams is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: o.max_concurrent_streams})
        self.h2.initiate_connection()
        self.flush()
        last_io = time.monotonic()
        while not o.stopping:
            now = time.monotonic()
            if self.close_at is not None and now >= self.close_at:
                return
            if now - last_io > IO_TIMEOUT:
                return
            wait = 0.1
            if self.timers:
                wait = max(0.0, min(wait, min(t for t, _ in self.timers) - now))
            # TLS may hold decrypted bytes that select() cannot see.
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            readable = pending or select.select([self.sock], [], [], wait)[0]
            if readable:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                last_io = time.monotonic()
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    o.error(self.conn_id, f"protocol error from proxy: {e!r}")
                    self.flush()
                    return
                for ev in events:
                    self.on_event(ev)
            now = time.monotonic()   # one reading: a timer must be either due or kept
            due = [t for t in self.timers if t[0] <= now]
            self.timers = [t for t in self.timers if t[0] > now]
            for _, fn in due:
                fn()
            self.pump()
            if not self.flush():
                return
            if self.close_when_idle and not self.pending and not self.timers and self.open_streams == 0:
                return

    def flush(self) -> bool:
        out = self.h2.data_to_send()
        if out:
            try:
                self.sock.sendall(out)
            except OSError:
                return False
        return True

    # --- events ------------------------------------------------------------------------------

    def on_event(self, ev) -> None:
        o = self.origin
        if isinstance(ev, h2.events.RequestReceived):
            req = H2Request(self.conn_id, ev.stream_id)
            for name, value in ev.headers:
                if name == ":method":
                    req.method = value
                elif name == ":path":
                    req.path = value
                elif name == ":authority":
                    req.authority = value
                elif name == ":scheme":
                    req.scheme = value
                elif not name.startswith(":"):
                    req.headers.append((name, value))
            self.streams[ev.stream_id] = req
            self.open_streams += 1
            o.stream_opened(self)
        elif isinstance(ev, h2.events.DataReceived):
            req = self.streams.get(ev.stream_id)
            if req is not None:
                req.body += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            req = self.streams.get(ev.stream_id)
            if req is not None:
                req.trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            req = self.streams.get(ev.stream_id)
            if req is not None:
                req.ended = True
                o.record(req)
                self.dispatch(req)
        elif isinstance(ev, h2.events.StreamReset):
            self.stream_done(ev.stream_id)
            o.count_reset()

    def stream_done(self, sid: int) -> None:
        self.pending.pop(sid, None)
        if self.streams.pop(sid, None) is not None:
            self.open_streams -= 1
            self.origin.stream_closed(self)

    # --- answers -----------------------------------------------------------------------------

    def respond(self, sid: int, status: int, headers=(), body: bytes = b"", trailers=None, end: bool = True) -> None:
        if sid not in self.streams:
            return
        if self.streams[sid].method == "HEAD":
            body = b""  # RFC 9110 §9.3.2: the head only (content-length still describes the GET)
        self.h2.send_headers(sid, [(":status", str(status))] + list(headers),
                             end_stream=not body and not trailers and end)
        if body or trailers or not end:
            self.pending[sid] = [bytearray(body), end, trailers]
        else:
            self.stream_done(sid)

    def pump(self) -> None:
        for sid in list(self.pending):
            data, end, trailers = self.pending[sid]
            try:
                while data:
                    window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                    if window <= 0:
                        break
                    chunk = bytes(data[:window])
                    del data[:window]
                    self.h2.send_data(sid, chunk)
                    self.origin.count_sent(self.streams[sid].path, len(chunk))
                if data or not end:
                    continue
                if trailers:
                    self.h2.send_headers(sid, trailers, end_stream=True)
                else:
                    self.h2.send_data(sid, b"", end_stream=True)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
            self.stream_done(sid)
            if sid == self.goaway_after:
                # h2 sends nothing after a GOAWAY, so it goes once the answer is complete.
                self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid)
                self.close_when_idle = True

    def echo(self, req: H2Request) -> None:
        body = json.dumps(req.to_json()).encode()
        self.respond(req.stream_id, 200, [("content-type", "application/json"), ("content-length", str(len(body)))], body)

    def later(self, ms: float, fn) -> None:
        self.timers.append((time.monotonic() + ms / 1000.0, fn))

    def dispatch(self, req: H2Request) -> None:
        sid, path = req.stream_id, req.path.split("?", 1)[0]
        ctype = req.header("content-type") or ""
        if ctype.startswith("application/grpc"):
            return self.dispatch_grpc(req)
        if self.origin.fixed_status is not None:
            return self.respond(sid, self.origin.fixed_status, [("x-node", self.origin.name)], b"fixed")
        if path.startswith("/sleep/"):
            self.later(int(path.split("/")[2]), lambda: self.echo(req))
        elif path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            self.respond(sid, 200, [("content-type", "application/octet-stream")],
                         b"".join(bytes(c) for c in pattern_chunks(n)))
        elif path == "/trailers":
            self.respond(sid, 200, [("content-type", "text/plain")], b"hello trailers",
                         trailers=[("x-checksum", "abc123"), ("x-origin", "h2")])
        elif path == "/health":
            self.respond(sid, self.origin.health_status, [("content-type", "text/plain")], b"ok")
        elif path.startswith("/status/"):
            self.respond(sid, int(path.split("/")[2]))
        elif path == "/bad-header":
            self.respond(sid, 200, [("connection", "close"), ("content-type", "text/plain")], b"bad")
        elif path == "/drop":
            self.close_at = time.monotonic()
        elif path == "/drop-corked":
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            self.h2.increment_flow_control_window(1024)
            self.flush()
            self.sock.shutdown(socket.SHUT_WR)  # the FIN rides on the WINDOW_UPDATE's segment
            self.close_at = time.monotonic()
        elif path == "/reset":
            self.h2.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.stream_done(sid)
        elif path == "/reset-after-head":
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            self.h2.send_data(sid, b"partial")

            def reset():
                if sid in self.streams:
                    self.h2.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
                    self.stream_done(sid)
            self.later(300, reset)
        elif path.startswith("/goaway-refuse/"):
            if self.origin.first_time(path):
                # Everything up to the stream before this one is processed; this one is refused.
                self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=max(0, sid - 2))
                self.close_at = time.monotonic() + 0.3
            else:
                self.echo(req)
        elif path == "/goaway-after":
            self.goaway_after = sid
            self.echo(req)
        else:
            self.echo(req)

    def dispatch_grpc(self, req: H2Request) -> None:
        sid, path = req.stream_id, req.path
        head = [("content-type", "application/grpc")]
        ok = [("grpc-status", "0"), ("grpc-message", "")]
        body = grpc_frames(grpc_messages(bytes(req.body)))
        delay = int(req.header("x-delay-ms") or "0")
        if path == "/test.Echo/Unary":
            self.respond(sid, 200, head, body, trailers=ok)
        elif path == "/test.Echo/Slow":
            self.later(delay, lambda: self.respond(sid, 200, head, body, trailers=ok))
        elif path == "/test.Echo/SlowBody":
            self.h2.send_headers(sid, [(":status", "200")] + head)
            self.later(delay, lambda: self.pending.__setitem__(sid, [bytearray(body), True, ok]))
        elif path == "/grpc.health.v1.Health/Check":
            service = health_service(grpc_messages(bytes(req.body)))
            status = self.origin.health.get(service)
            if status is None:
                self.h2.send_headers(sid, [(":status", "200")] + head +
                                     [("grpc-status", "5"), ("grpc-message", "unknown service")], end_stream=True)
                self.stream_done(sid)
            else:
                # HealthCheckResponse{status}: field 1, varint (omitted when 0, proto3's default).
                self.respond(sid, 200, head, grpc_frames([bytes([0x08, status]) if status else b""]), trailers=ok)
        elif path == "/test.Echo/Fail":
            self.h2.send_headers(sid, [(":status", "200")] + head +
                                 [("grpc-status", "5"), ("grpc-message", "not found")], end_stream=True)
            self.stream_done(sid)
        else:
            self.respond(sid, 200, head, trailers=[("grpc-status", "12"), ("grpc-message", "unknown method")])


class H2Origin:
    """A threaded h2c origin on 127.0.0.1 and a free port. start(), then stop()."""

    def __init__(self, max_concurrent_streams: int | None = None, tls: tuple | None = None, alpn=("h2",),
                 fixed_status: int | None = None, name: str = "h2"):
        """tls = (cert, key): serve HTTP/2 over TLS, offering `alpn` (h2 when the client asks).
        fixed_status: every request that is not gRPC gets that status (with x-node: name)."""
        self.max_concurrent_streams = max_concurrent_streams
        self.fixed_status, self.name = fixed_status, name
        self.health = {"": 1}       # the gRPC health service's answers: service -> ServingStatus
        self.health_status = 200    # what /health answers
        self._tls = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls[0]), str(tls[1]))
            self._tls.set_alpn_protocols(list(alpn))
        self._lock = threading.Condition()
        self.requests: list = []
        self.errors: list = []
        self.connections = 0
        self.closed = 0               # connections that have ended
        self.resets = 0
        self.sent_bytes: dict = {}    # response body bytes handed to h2, by request path
        self.max_streams_seen = 0     # most streams open at once on one connection
        self._open_by_conn: dict = {}
        self._seen: set = set()
        self._socks: set = set()
        self._threads: list = []
        self.stopping = False
        self._listener: socket.socket | None = None
        self.port = 0

    def start(self) -> "H2Origin":
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", 0))
        lst.listen(512)
        lst.settimeout(0.2)
        self._listener = lst
        self.port = lst.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"h2origin-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self.stopping = True
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._listener:
            self._listener.close()
        for t in list(self._threads):
            t.join(timeout=2.0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- what the tests read -----------------------------------------------------------------

    def snapshot(self) -> list:
        with self._lock:
            return list(self.requests)

    def wait_for(self, predicate, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"h2origin: condition not met in {timeout}s; got {len(self.requests)} requests")
                self._lock.wait(left)
            return list(self.requests)

    def wait_closed(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.closed < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"h2origin: {self.closed} of {n} connections closed after {timeout}s")
                self._lock.wait(left)

    # --- bookkeeping (connection threads) ----------------------------------------------------

    def record(self, req: H2Request) -> None:
        with self._lock:
            self.requests.append(req)
            self._lock.notify_all()

    def error(self, conn_id: int, message: str) -> None:
        with self._lock:
            self.errors.append(f"conn {conn_id}: {message}")

    def count_reset(self) -> None:
        with self._lock:
            self.resets += 1

    def count_sent(self, path: str, n: int) -> None:
        with self._lock:
            self.sent_bytes[path] = self.sent_bytes.get(path, 0) + n

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def stream_opened(self, conn: _Conn) -> None:
        with self._lock:
            n = self._open_by_conn.get(conn.conn_id, 0) + 1
            self._open_by_conn[conn.conn_id] = n
            self.max_streams_seen = max(self.max_streams_seen, n)

    def stream_closed(self, conn: _Conn) -> None:
        with self._lock:
            self._open_by_conn[conn.conn_id] = self._open_by_conn.get(conn.conn_id, 1) - 1

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                conn_id = self.connections
                self._socks.add(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        try:
            if self._tls is not None:
                sock.settimeout(IO_TIMEOUT)
                try:
                    sock = self._tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.error(conn_id, f"TLS handshake failed: {e!r}")
                    return
                if sock.selected_alpn_protocol() != "h2":
                    return  # a client that did not ask for h2 gets nothing (the proxy must refuse first)
            _Conn(self, sock, conn_id).run()
        except Exception as e:  # a bug in the origin must show up in the test, not vanish
            self.error(conn_id, f"origin crashed: {e!r}")
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                self._socks.discard(sock)
                self.closed += 1
                self._lock.notify_all()

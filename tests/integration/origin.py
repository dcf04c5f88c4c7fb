"""The test origin: an HTTP/1.1 server on raw sockets that the integration tests fully control.

It runs in threads of the pytest process, so a test reads what it received straight from
`Origin.requests`: method, raw target, headers in order, the raw head bytes, how the body was
framed (and the raw chunk-size lines), the body's length and SHA-256. It parses requests itself,
strictly, because the framing Turnpike sends upstream is exactly what the tests check; anything it
cannot parse is recorded in `Origin.errors` (and counted in `total_bytes`) instead of being
guessed at.

Endpoints (any other path behaves like /echo, so routing tests can use any path):
  /echo                  200, JSON describing the request (see RecordedRequest.to_json)
                         query `resp_header=name:value` (repeatable) adds a response header
  /sink                  200, JSON {"length", "sha256"} of the request body
  /status/<n>            status n (no body for 204 and 304)
  /sleep/<ms>            waits, then answers like /echo
  /bytes/<n>             n pattern bytes, Content-Length, streamed
  /chunked/<n>           n pattern bytes, chunked
  /close-delimited/<n>   n pattern bytes, neither length nor chunked: ends at close
  /malformed[/<kind>]    a broken response, then close (kinds: MALFORMED_RESPONSES)
  /drop-after            answers like /echo without `Connection: close`, then drops the connection
                         anyway (an upstream restarting, or one with a shorter idle timeout)
  /close-corked/<n>      like /close-delimited/<n>, but the head, the bytes and the close leave in
                         one TCP segment (TCP_CORK): the proxy's read finds the end of stream
                         queued behind the bytes, with no readiness edge of its own
  /close-reused[/<ms>]   the first request on a connection is answered like /sleep/<ms> (kept
                         alive); a later one finds the connection closed unanswered (an upstream
                         that drops reused keepalive connections: a batch close, a restart)
Pattern bytes are `pattern_chunks(n)`; `pattern_sha256(n)` is their digest.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

IO_TIMEOUT = 30.0           # an origin connection idle this long is dropped
MAX_HEAD = 256 * 1024       # the origin refuses larger request heads
KEEP_BODY = 1024 * 1024     # bodies up to this size are kept in the record
_BLOCK = bytes(range(256)) * 4096  # 1 MiB of the test pattern
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

MALFORMED_RESPONSES = {
    "status-line": b"HTTP/1.1 two-hundred OK\r\nContent-Length: 2\r\n\r\nok",
    "header": b"HTTP/1.1 200 OK\r\nNoColonInThisLine\r\nContent-Length: 2\r\n\r\nok",
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "garbage": b"\x00\x01\x02 this is not HTTP\r\n\r\n",
    "empty": b"",  # close without answering
    "truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
}


def pattern_chunks(n: int, size: int = 256 * 1024):
    """Yields the first n bytes of the test pattern in slices of at most `size` bytes."""
    view = memoryview(_BLOCK)
    offset = 0
    while offset < n:
        take = min(size, n - offset)
        start = offset % len(_BLOCK)
        take = min(take, len(_BLOCK) - start)
        yield view[start:start + take]
        offset += take


@functools.lru_cache(maxsize=None)
def pattern_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_chunks(n, len(_BLOCK)):
        digest.update(piece)
    return digest.hexdigest()


class BadRequest(Exception):
    """The bytes Turnpike sent upstream are not a valid HTTP/1.1 request."""


class _PeerClosed(Exception):
    pass


@dataclass
class RecordedRequest:
    conn_id: int
    index_on_conn: int           # 0 for the first request on its connection
    method: str
    target: str                  # the raw request-target
    path: str                    # target without the query
    query: str
    version: str
    headers: list                # [(name, value)] in the order received, names as sent
    raw_head: bytes              # request line and header fields, up to and including CRLFCRLF
    framing: str = "none"        # "none", "content-length" or "chunked"
    chunk_lines: list = field(default_factory=list)  # raw chunk-size lines (bytes), last-chunk included
    trailers: list = field(default_factory=list)
    body_len: int = 0
    body_sha256: str = hashlib.sha256(b"").hexdigest()
    body: bytes | None = b""     # None when longer than KEEP_BODY
    sent_continue: bool = False
    received_at: float = 0.0

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header_names(self) -> set:
        return {n.lower() for n, _ in self.headers}

    def to_json(self) -> dict:
        return {
            "conn_id": self.conn_id,
            "index_on_conn": self.index_on_conn,
            "method": self.method,
            "target": self.target,
            "path": self.path,
            "query": self.query,
            "version": self.version,
            "headers": [[n, v] for n, v in self.headers],
            "framing": self.framing,
            "chunk_lines": [c.decode("latin-1") for c in self.chunk_lines],
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
            "sent_continue": self.sent_continue,
        }


class _Reader:
    """Buffered reads from one origin connection; every byte received is counted."""

    def __init__(self, sock: socket.socket, origin: "Origin"):
        self.sock = sock
        self.origin = origin
        self.buf = bytearray()

    def fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise _PeerClosed()
        self.origin._count_bytes(len(data))
        self.buf += data

    def read_until(self, delim: bytes, limit: int) -> bytes:
        start = 0
        while True:
            idx = self.buf.find(delim, start)
            if idx >= 0:
                end = idx + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise BadRequest(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            self.fill()

    def read_exact_into(self, n: int, sink) -> None:
        while n > 0:
            if not self.buf:
                self.fill()
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take


class Origin:
    """A threaded origin server on 127.0.0.1 and a free port. Start with start(), end with stop()."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []       # connections whose bytes could not be parsed
        self.total_bytes = 0              # every byte received on every connection
        self.connections = 0              # connections accepted
        self._conn_seq = 0
        self._socks: set = set()
        self._stopping = False
        self._listener: socket.socket | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "Origin":
        """Listens on `host` (a loopback address) and `port` (0: any; a given one lets a stopped
        origin come back where it was)."""
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, port))
        lst.listen(512)
        lst.settimeout(0.2)
        self._listener = lst
        self._stopping = False
        self.host = host
        self.port = lst.getsockname()[1]
        threading.Thread(target=self._accept_loop, name=f"origin-accept-{host}:{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._listener:
            self._listener.close()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # --- what the tests read -----------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.errors.clear()
            self.total_bytes = 0
            self.connections = 0

    def snapshot(self) -> list:
        with self._lock:
            return list(self.requests)

    def wait_for(self, predicate, timeout: float = 10.0) -> list:
        """Waits until predicate(list of requests) is true; returns the requests, or raises."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"origin: condition not met in {timeout}s; got {len(self.requests)} requests")
                self._cond.wait(left)
            return list(self.requests)

    def wait_for_path(self, path: str, timeout: float = 10.0) -> RecordedRequest:
        reqs = self.wait_for(lambda rs: any(r.path == path for r in rs), timeout)
        return next(r for r in reqs if r.path == path)

    def _count_bytes(self, n: int) -> None:
        with self._lock:
            self.total_bytes += n

    # --- serving -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                if self._stopping:
                    return
                continue
            except OSError:
                return
            with self._lock:
                if self._stopping:
                    sock.close()
                    return
                self._conn_seq += 1
                conn_id = self._conn_seq
                self.connections += 1
                self._socks.add(sock)
            threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True).start()

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        sock.settimeout(IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock, self)
        index = 0
        try:
            while True:
                try:
                    head = reader.read_until(b"\r\n\r\n", MAX_HEAD)
                except _PeerClosed:
                    if reader.buf:
                        self._error(conn_id, f"connection closed inside a request head: {bytes(reader.buf[:200])!r}")
                    return
                req = self._parse_head(head, conn_id, index)
                self._read_body(req, reader, sock)
                req.received_at = time.monotonic()
                with self._cond:
                    self.requests.append(req)
                    self._cond.notify_all()
                keep_alive = self._respond(req, sock)
                index += 1
                if not keep_alive:
                    return
        except BadRequest as e:
            self._error(conn_id, f"bad request from proxy: {e}")
            try:
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
        except _PeerClosed:
            self._error(conn_id, "connection closed inside a request body")
        except (OSError, socket.timeout):
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
            sock.close()

    def _error(self, conn_id: int, message: str) -> None:
        with self._lock:
            self.errors.append(f"conn {conn_id}: {message}")

    @staticmethod
    def _parse_head(head: bytes, conn_id: int, index: int) -> RecordedRequest:
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise BadRequest(f"request line {lines[0]!r}")
        method, target, version = (p.decode("latin-1") for p in parts)
        if version not in ("HTTP/1.1", "HTTP/1.0") or not _TOKEN.match(parts[0]) or not target:
            raise BadRequest(f"request line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.match(name):
                raise BadRequest(f"header line {line!r}")
            value = value.strip(b" \t")
            if any(b in value for b in (0, 10, 13)):
                raise BadRequest(f"header value {line!r}")
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        path, _, query = target.partition("?")
        return RecordedRequest(conn_id, index, method, target, path, query, version, headers, head)

    def _read_body(self, req: RecordedRequest, reader: _Reader, sock: socket.socket) -> None:
        te = [t.strip().lower() for v in req.header_all("transfer-encoding") for t in v.split(",")]
        cls = req.header_all("content-length")
        if te and cls:
            raise BadRequest("both Transfer-Encoding and Content-Length")
        if te and te != ["chunked"]:
            raise BadRequest(f"transfer-encoding {te}")
        if len(cls) > 1:
            raise BadRequest(f"several Content-Length fields {cls}")
        if cls and not cls[0].isdigit():
            raise BadRequest(f"content-length {cls[0]!r}")
        length = int(cls[0]) if cls else 0
        if not te and length == 0:
            req.framing = "content-length" if cls else "none"
            return
        expect = (req.header("expect") or "").lower()
        if expect == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req.sent_continue = True
        digest = hashlib.sha256()
        kept = bytearray()
        total = 0

        def sink(data: bytes) -> None:
            nonlocal total
            digest.update(data)
            total += len(data)
            if total <= KEEP_BODY:
                kept.extend(data)

        if te:
            req.framing = "chunked"
            while True:
                line = reader.read_until(b"\r\n", 4096)
                req.chunk_lines.append(line[:-2])
                size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
                if not size_text or not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
                    raise BadRequest(f"chunk size line {line!r}")
                size = int(size_text, 16)
                if size == 0:
                    break
                reader.read_exact_into(size, sink)
                if reader.read_until(b"\r\n", 2) != b"\r\n":
                    raise BadRequest("chunk data not followed by CRLF")
            while True:
                line = reader.read_until(b"\r\n", 8192)
                if line == b"\r\n":
                    break
                req.trailers.append(line[:-2])
        else:
            req.framing = "content-length"
            reader.read_exact_into(length, sink)
        req.body_len = total
        req.body_sha256 = digest.hexdigest()
        req.body = bytes(kept) if total <= KEEP_BODY else None

    # --- endpoints ---------------------------------------------------------------------------

    def _respond(self, req: RecordedRequest, sock: socket.socket) -> bool:
        """Writes the response; returns whether the connection stays open."""
        conn_tokens = {t.strip().lower() for v in req.header_all("connection") for t in v.split(",")}
        keep_alive = "close" not in conn_tokens
        if req.version == "HTTP/1.0":
            keep_alive = "keep-alive" in conn_tokens
        head_only = req.method == "HEAD"
        parts = req.path.strip("/").split("/")
        extra = []
        for name, value in urllib.parse.parse_qsl(req.query, keep_blank_values=True):
            if name == "resp_header":
                hname, _, hvalue = value.partition(":")
                extra.append((hname, hvalue))
        endpoint = parts[0]
        arg = parts[1] if len(parts) > 1 else ""

        if endpoint == "malformed":
            sock.sendall(MALFORMED_RESPONSES.get(arg, MALFORMED_RESPONSES["status-line"]))
            return False
        if endpoint == "drop-after":
            body = json.dumps(req.to_json()).encode()
            self._send_simple(sock, req, 200, "application/json", body, extra, True)
            sock.shutdown(socket.SHUT_RDWR)
            return False
        if endpoint == "close-corked":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
            for piece in pattern_chunks(int(arg)):
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)  # the FIN rides on the last corked segment
            return False
        if endpoint == "close-reused":
            if req.index_on_conn > 0:
                sock.shutdown(socket.SHUT_RDWR)
                return False
            time.sleep(int(arg or "0") / 1000.0)
            body = json.dumps(req.to_json()).encode()
            return self._send_simple(sock, req, 200, "application/json", body, extra, keep_alive)
        if endpoint == "close-delimited":
            n = int(arg)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
            if not head_only:
                for piece in pattern_chunks(n):
                    sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
            return False
        if endpoint == "bytes":
            n = int(arg)
            self._send_head(sock, 200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))] + extra, keep_alive)
            if not head_only:
                for piece in pattern_chunks(n):
                    sock.sendall(piece)
            return keep_alive
        if endpoint == "chunked":
            n = int(arg)
            self._send_head(sock, 200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")] + extra, keep_alive)
            if not head_only:
                # Odd chunk sizes, so a proxy cannot get away with assuming aligned chunks.
                for piece in pattern_chunks(n, 65521):
                    sock.sendall(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            return keep_alive
        if endpoint == "status":
            status = int(arg)
            if status in (204, 304):
                headers = [("ETag", '"v1"')] if status == 304 else []
                self._send_head(sock, status, headers + extra, keep_alive)
                return keep_alive
            body = f"status {status}\n".encode()
            return self._send_simple(sock, req, status, "text/plain", body, extra, keep_alive)
        if endpoint == "sleep":
            time.sleep(int(arg) / 1000.0)
        if endpoint == "sink":
            body = json.dumps({"length": req.body_len, "sha256": req.body_sha256}).encode()
        else:
            body = json.dumps(req.to_json()).encode()
        return self._send_simple(sock, req, 200, "application/json", body, extra, keep_alive)

    def _send_simple(self, sock, req, status, ctype, body, extra, keep_alive) -> bool:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))] + extra
        self._send_head(sock, status, headers, keep_alive)
        if req.method != "HEAD":
            sock.sendall(body)
        return keep_alive

    @staticmethod
    def _send_head(sock, status: int, headers: list, keep_alive: bool) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{n}: {v}" for n, v in headers]
        if not keep_alive:
            lines.append("Connection: close")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
            404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

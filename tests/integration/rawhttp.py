"""A raw HTTP/1.1 client for the integration tests: exact bytes out, exact framing back.

Every socket operation has a timeout and every loop is bounded, so a misbehaving proxy makes a
test fail, never hang. Responses are parsed by the rules of RFC 9112 §6.3 (HEAD, 1xx, 204 and 304
have no body; then Transfer-Encoding chunked; then Content-Length; else read until close).
"""
from __future__ import annotations

import hashlib
import json
import socket
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 10.0
MAX_HEAD = 1024 * 1024
KEEP_BODY = 4 * 1024 * 1024   # longer bodies are hashed, not kept


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a complete response arrived."""


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list                 # [(name, value)] as received
    raw_head: bytes
    framing: str = "none"         # "none", "content-length", "chunked" or "close"
    body: bytes | None = b""      # None when longer than KEEP_BODY (see body_len / body_sha256)
    body_len: int = 0
    body_sha256: str = ""
    chunk_lines: list = field(default_factory=list)
    trailers: list = field(default_factory=list)   # [(name, value)] after a chunked body

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has_token(self, name: str, token: str) -> bool:
        """Whether the comma-separated header `name` lists `token` (case-insensitive)."""
        return token.lower() in {t.strip().lower() for v in self.header_all(name) for t in v.split(",")}

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        body = self.body[:300] if self.body is not None else f"<{self.body_len} bytes>"
        return f"<Response {self.status} {self.headers!r} body={body!r}>"


class HttpConn:
    """One client connection to 127.0.0.1:port."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # --- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_request(self, method: str = "GET", target: str = "/", headers=None, body: bytes | None = None,
                     version: str = "HTTP/1.1", host: str | None = "test.local") -> None:
        self.send(build_request(method, target, headers, body, version, host))

    # --- receiving ---------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        if self.eof:
            raise ConnectionClosed("connection already closed by peer")
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("response deadline passed")
        self.sock.settimeout(min(left, self.timeout))
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError as e:
            self.eof = True
            raise ConnectionClosed(f"connection reset: {e}") from e
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by peer")
        self.buf += data

    def _read_until(self, delim: bytes, limit: int, deadline: float) -> bytes:
        start = 0
        while True:
            idx = self.buf.find(delim, start)
            if idx >= 0:
                end = idx + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ValueError(f"no {delim!r} within {limit} bytes: {bytes(self.buf[:200])!r}")
            start = max(0, len(self.buf) - len(delim) + 1)
            self._fill(deadline)

    def _read_exact(self, n: int, deadline: float, sink) -> None:
        while n > 0:
            if not self.buf:
                self._fill(deadline)
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_response(self, method: str = "GET", timeout: float | None = None) -> Response:
        """Reads the next response, interim (1xx) ones included."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        head = self._read_until(b"\r\n\r\n", MAX_HEAD, deadline)
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].decode("latin-1").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit() or len(code) != 3:
            raise ValueError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"bad response header line {line!r}")
            headers.append((name, value.strip(" \t")))
        resp = Response(version, int(code), reason, headers, head)

        digest = hashlib.sha256()
        kept = bytearray()
        total = 0

        def sink(data: bytes) -> None:
            nonlocal total
            digest.update(data)
            total += len(data)
            if total <= KEEP_BODY:
                kept.extend(data)

        status = resp.status
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            resp.framing = "none"
        elif resp.has_token("transfer-encoding", "chunked"):
            resp.framing = "chunked"
            while True:
                line = self._read_until(b"\r\n", 4096, deadline)
                resp.chunk_lines.append(line[:-2])
                size = int(line[:-2].split(b";", 1)[0].strip(), 16)
                if size == 0:
                    break
                self._read_exact(size, deadline, sink)
                if self._read_until(b"\r\n", 2, deadline) != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
            while (line := self._read_until(b"\r\n", 8192, deadline)) != b"\r\n":
                name, _, value = line[:-2].decode("latin-1").partition(":")
                resp.trailers.append((name, value.strip()))
        elif resp.header("content-length") is not None:
            resp.framing = "content-length"
            self._read_exact(int(resp.header("content-length")), deadline, sink)
        else:
            resp.framing = "close"
            while True:
                if self.buf:
                    sink(bytes(self.buf))
                    self.buf.clear()
                try:
                    self._fill(deadline)
                except ConnectionClosed:
                    break
        resp.body_len = total
        resp.body_sha256 = digest.hexdigest()
        resp.body = bytes(kept) if total <= KEEP_BODY else None
        return resp

    def read_final_response(self, method: str = "GET", timeout: float | None = None) -> Response:
        """Reads the next final response, skipping interim (1xx) ones (bounded)."""
        for _ in range(10):
            resp = self.read_response(method, timeout)
            if resp.status >= 200:
                return resp
        raise ValueError("more than 10 interim responses")

    def request(self, method: str = "GET", target: str = "/", headers=None, body: bytes | None = None,
                version: str = "HTTP/1.1", host: str | None = "test.local", timeout: float | None = None) -> Response:
        self.send_request(method, target, headers, body, version, host)
        return self.read_final_response(method, timeout)

    def wait_closed(self, timeout: float) -> bool:
        """Waits up to `timeout` s for the peer to close; bytes that arrive meanwhile stay in buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.buf += data
        return True


def build_request(method: str = "GET", target: str = "/", headers=None, body: bytes | None = None,
                  version: str = "HTTP/1.1", host: str | None = "test.local") -> bytes:
    """Request bytes. Adds Host (unless host is None or headers has one) and, for a body without
    Transfer-Encoding, Content-Length. headers: list of (name, value) or dict."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in items}
    if host is not None and "host" not in names:
        items.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in items) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def request(port: int, method: str = "GET", target: str = "/", headers=None, body: bytes | None = None,
            version: str = "HTTP/1.1", host: str | None = "test.local", timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One request on a new connection, which is then closed."""
    with HttpConn(port, timeout=timeout) as conn:
        return conn.request(method, target, headers, body, version, host, timeout)


def send_raw(port: int, data: bytes, timeout: float = DEFAULT_TIMEOUT) -> tuple:
    """Sends raw bytes on a new connection; returns (first response or None, closed-after?).

    `closed-after` tells whether the proxy closed the connection within 3 s of the response."""
    with HttpConn(port, timeout=timeout) as conn:
        try:
            conn.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            resp = conn.read_final_response(timeout=timeout)
        except ConnectionClosed:
            return None, True
        return resp, conn.wait_closed(3.0)


def chunked(pieces, extensions=None) -> bytes:
    """A chunked body from byte pieces, with canonical size lines (unless `extensions` given)."""
    out = bytearray()
    for i, piece in enumerate(pieces):
        ext = extensions[i] if extensions else ""
        out += b"%x%s\r\n" % (len(piece), ext.encode()) + piece + b"\r\n"
    return bytes(out) + b"0\r\n\r\n"


def connect_refused(port: int, timeout: float = 1.0) -> bool:
    """Whether a new connection to the port is refused (or reset before any response)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except socket.timeout:
        return False
    try:
        s.settimeout(timeout)
        s.sendall(build_request("GET", "/refused-probe"))
        data = s.recv(1)
        return data == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def clean_request_problems(port: int, timeout: float = DEFAULT_TIMEOUT) -> list:
    """Sends the ordinary requests that any client may send, each on a new connection: a POST
    with Content-Length, a chunked POST, a GET and a pipelined pair. Returns what went wrong (an
    empty list when all were answered 200 with the body echoed back by the test origin's /echo).
    Run after an attack, it proves the attack left no state behind for the next client."""
    problems = []
    body = b"hello"
    # Bodies first: a GET's response would reset a shared decoder and hide a leak from the POST.
    cases = {
        "POST Content-Length": [build_request("POST", "/echo/clean", body=body)],
        "POST chunked": [build_request("POST", "/echo/clean", headers=[("Transfer-Encoding", "chunked")],
                                       body=chunked([b"hel", b"lo"]))],
        "GET": [build_request("GET", "/echo/clean")],
        "pipelined pair": [build_request("POST", "/echo/clean", body=body), build_request("GET", "/echo/clean")],
    }
    for name, requests in cases.items():
        try:
            with HttpConn(port, timeout=timeout) as conn:
                conn.send(b"".join(requests))
                for i, raw in enumerate(requests):
                    method = raw.split(b" ", 1)[0].decode()
                    resp = conn.read_final_response(method, timeout)
                    if resp.status != 200:
                        problems.append(f"{name} #{i}: answered {resp.status}: {resp}")
        except (ConnectionClosed, OSError) as e:
            problems.append(f"{name}: {type(e).__name__}: {e}")
    return problems

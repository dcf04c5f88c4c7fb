#!/usr/bin/env python3
"""stream_origin.py PORT: a small HTTP/1.1 origin for the streaming benchmarks (bench/upload.sh).

  GET /                          -> 200 "hello world\\n" (health check)
  GET /download?bytes=N[&chunked=1]
                                 -> 200 with N bytes of body (Content-Length, or chunked in 1 MiB
                                    chunks), generated on the fly
  any other request with a body  -> reads and discards the body (Content-Length or chunked),
                                    then 200 with the byte count as body, e.g. "1073741824\\n"

Answers "100 Continue" to "Expect: 100-continue". Keepalive; one thread per connection; listens
on 127.0.0.1 only.
"""
import socket
import socketserver
import sys
from urllib.parse import parse_qs, urlsplit

BLOCK = bytes(range(256)) * 4096  # 1 MiB, not all zeros


class BadRequest(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.scratch = bytearray(1 << 20)

    def fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            if len(self.buf) > 65536:
                raise BadRequest("line too long")
            self.fill()

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise BadRequest("head too long")
            self.fill()
        i = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:i]).decode("latin-1")
        del self.buf[: i + 4]
        lines = raw.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        return method, target, headers

    def discard(self, n):
        """Reads and drops exactly n body bytes."""
        take = min(n, len(self.buf))
        del self.buf[:take]
        n -= take
        view = memoryview(self.scratch)
        while n > 0:
            got = self.sock.recv_into(view, min(n, len(self.scratch)))
            if not got:
                raise EOFError
            n -= got

    def discard_chunked(self):
        total = 0
        while True:
            size = int(self.line().split(b";")[0].strip(), 16)
            if size == 0:
                while self.line() != b"":  # trailers
                    pass
                return total
            self.discard(size)
            total += size
            if self.line() != b"":
                raise BadRequest("bad chunk end")


def reply(sock, status, body, extra=""):
    sock.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = Conn(sock)
        try:
            while True:
                method, target, h = c.head()
                if h.get("expect", "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                url = urlsplit(target)
                if "chunked" in h.get("transfer-encoding", "").lower():
                    n = c.discard_chunked()
                else:
                    n = int(h.get("content-length", "0"))
                    c.discard(n)
                if url.path == "/download":
                    q = parse_qs(url.query)
                    self.download(sock, int(q.get("bytes", ["0"])[0]), q.get("chunked", ["0"])[0] == "1")
                elif url.path == "/" and n == 0:
                    reply(sock, "200 OK", b"hello world\n")
                else:
                    reply(sock, "200 OK", f"{n}\n".encode())
                if h.get("connection", "").lower() == "close":
                    return
        except (EOFError, ConnectionError, BadRequest, ValueError):
            return

    @staticmethod
    def download(sock, n, chunked):
        if chunked:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            hdr = b"%x\r\n" % len(BLOCK)
            while n > 0:
                part = BLOCK if n >= len(BLOCK) else BLOCK[:n]
                sock.sendall((hdr if part is BLOCK else b"%x\r\n" % len(part)) + part + b"\r\n")
                n -= len(part)
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % n)
            view = memoryview(BLOCK)
            while n > 0:
                k = min(n, len(BLOCK))
                sock.sendall(view[:k])
                n -= k


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Handler) as srv:
        srv.serve_forever()

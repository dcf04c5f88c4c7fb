#!/usr/bin/env python3
"""idle_conns.py PID PORT N [--proto http1|h2c|h2] [--h2-conn-window BYTES] [--h2-index] [--batch B]
                  [--settle S] [--header 'Name: value']...

Opens N keepalive connections to 127.0.0.1:PORT, sends one GET / on each (B connections at a time,
each response read in full and checked to be 200), leaves them all open and idle, waits S seconds,
then reports the RSS growth of process PID (and its descendants) per connection. Afterwards
checks that the connections are still open and that a sample of them still serves a request.

--proto: http1 (HTTP/1.1, the default), h2c (HTTP/2 with prior knowledge, RFC 9113 §3.3) or h2
(HTTP/2 over TLS, ALPN h2; the certificate is not verified). The HTTP/2 client is a minimal one:
the preface, an empty SETTINGS (and, with --h2-conn-window, a connection WINDOW_UPDATE), an ACK
for each of the server's SETTINGS, one GET per stream (HPACK without a dynamic table: static-table
references and literals; with --h2-index, one field enters the server's table, as browsers' fields
do), the response read up to END_STREAM; :status is read from the static
table (the first field of every response here). It never gives window back.

Prints one line of key=value pairs; exit status 1 when fewer than 99% of the connections got a 200
or more than 1% were closed while idle. Adapted from the peers kit's idle_conns.py (which opens
all N before reading any response).
"""
import argparse
import os
import select
import socket
import ssl
import struct
import sys
import time


def tree(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def mem(pid, field):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def read_response(s):
    """Reads one HTTP/1.1 response with Content-Length; returns the status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before response head")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed in body")
        body += d
    return status


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_RST_STREAM, H2_SETTINGS, H2_GOAWAY, H2_WINDOW_UPDATE = 0, 1, 3, 4, 7, 8
H2_END_STREAM, H2_ACK, H2_END_HEADERS, H2_PADDED, H2_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
# RFC 7541 Appendix A: the static table's :status entries, as indexed fields.
H2_STATUS = {0x88: 200, 0x89: 204, 0x8A: 206, 0x8B: 304, 0x8C: 400, 0x8D: 404, 0x8E: 500}


def hpack_literal(name, value, index=False):
    """RFC 7541 §6.2.2, literal without indexing, new name (short strings, no Huffman); index:
    §6.2.1, with incremental indexing (the field enters the server's decoder table)."""
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return bytes([0x40 if index else 0, len(n)]) + n + bytes([len(v)]) + v


def h2_frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class H2Conn:
    """One HTTP/2 connection: requests one at a time, frames parsed as they come."""

    def __init__(self, sock, headers, conn_window=0, index=False):
        self.sock, self.buf, self.sid = sock, b"", 1
        # :method GET, :scheme http, :path / (static 2, 6, 4), :authority bench (static name 1)
        self.block = bytes([0x82, 0x86, 0x84, 0x01, 5]) + b"bench" + b"".join(hpack_literal(n, v) for n, v in headers)
        if index:  # as browsers do: a field that enters HPACK's dynamic table
            self.block += hpack_literal("user-agent", "idle_conns.py", index=True)
        # conn_window above 65,535: the connection window opened to it first, as browsers do
        # (RFC 9113 §6.9.2; Chrome 15 MiB, Firefox 12 MiB, curl 32 MiB).
        wu = h2_frame(H2_WINDOW_UPDATE, 0, 0, struct.pack(">I", conn_window - 65535)) if conn_window > 65535 else b""
        sock.sendall(H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0) + wu)

    def send_request(self):
        self.sock.sendall(h2_frame(H2_HEADERS, H2_END_HEADERS | H2_END_STREAM, self.sid, self.block))

    def _frame(self):
        while True:
            if len(self.buf) >= 9:
                length = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) >= 9 + length:
                    ftype, flags = self.buf[3], self.buf[4]
                    sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                    payload, self.buf = self.buf[9:9 + length], self.buf[9 + length:]
                    return ftype, flags, sid, payload
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d

    def read_response(self):
        """Reads frames up to the end of the current stream; returns its :status."""
        status = None
        for _ in range(1000):
            ftype, flags, sid, payload = self._frame()
            if ftype == H2_SETTINGS and not flags & H2_ACK:
                self.sock.sendall(h2_frame(H2_SETTINGS, H2_ACK, 0))
            elif ftype == H2_HEADERS:
                if flags & H2_PADDED:
                    payload = payload[1:len(payload) - payload[0]]
                if flags & H2_PRIORITY:
                    payload = payload[5:]
                # A block may open with dynamic table size updates (RFC 7541 §6.3, 001xxxxx);
                # sizes below 31 fit the first byte.
                while payload and payload[0] & 0xE0 == 0x20 and payload[0] != 0x3F:
                    payload = payload[1:]
                if sid == self.sid and payload and status is None:
                    status = H2_STATUS.get(payload[0], 0)
            elif ftype in (H2_RST_STREAM, H2_GOAWAY):
                raise ConnectionError(f"frame type {ftype} from the server")
            if sid == self.sid and ftype in (H2_DATA, H2_HEADERS) and flags & H2_END_STREAM:
                self.sid += 2
                return status
        raise ConnectionError("no end of stream")


def connect(a, tls_ctx):
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    if tls_ctx:
        s = tls_ctx.wrap_socket(s, server_hostname="localhost")
        if s.selected_alpn_protocol() != "h2":
            raise ConnectionError(f"ALPN {s.selected_alpn_protocol()!r}, not h2")
    return s


def still_open(s):
    """Whether the server has not closed the connection (without reading from it)."""
    p = select.poll()
    p.register(s.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return not p.poll(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--proto", choices=["http1", "h2c", "h2"], default="http1")
    ap.add_argument("--h2-conn-window", type=int, default=0,
                    help="HTTP/2: open the connection window to this many bytes first (0: leave it at 65,535)")
    ap.add_argument("--h2-index", action="store_true",
                    help="HTTP/2: send a user-agent field with incremental indexing (RFC 7541 §6.2.1)")
    a = ap.parse_args()
    h2 = a.proto != "http1"
    tls_ctx = None
    if a.proto == "h2":
        tls_ctx = ssl.create_default_context()
        tls_ctx.check_hostname = False
        tls_ctx.verify_mode = ssl.CERT_NONE
        tls_ctx.set_alpn_protocols(["h2"])
    h2_headers = [tuple(x.strip() for x in h.lower().split(":", 1)) for h in a.header]

    req = ("GET / HTTP/1.1\r\nHost: bench\r\n" + "".join(h + "\r\n" for h in a.header) + "\r\n").encode()
    rss0, hwm0 = mem(a.pid, "VmRSS"), mem(a.pid, "VmHWM")
    socks, ok, failed = [], 0, 0
    t0 = time.monotonic()
    conns = {}  # socket -> H2Conn
    for start in range(0, a.n, a.batch):
        batch = []
        for _ in range(min(a.batch, a.n - start)):
            try:
                s = connect(a, tls_ctx)
                if h2:
                    conns[s] = H2Conn(s, h2_headers, a.h2_conn_window, a.h2_index)
                    conns[s].send_request()
                else:
                    s.sendall(req)
                batch.append(s)
            except OSError as e:
                failed += 1
                if failed <= 3:
                    print(f"connect/send failed: {e}", file=sys.stderr)
        for s in batch:
            try:
                if (conns[s].read_response() if h2 else read_response(s)) == 200:
                    ok += 1
                else:
                    failed += 1
            except (OSError, ValueError) as e:
                failed += 1
                if failed <= 3:
                    print(f"response failed: {e}", file=sys.stderr)
        socks += batch
    open_secs = time.monotonic() - t0
    time.sleep(a.settle)
    rss1, hwm1 = mem(a.pid, "VmRSS"), mem(a.pid, "VmHWM")

    closed = sum(1 for s in socks if not still_open(s))
    sample_ok = 0
    sample = socks[:: max(1, len(socks) // 100)]
    for s in sample:
        try:
            s.setblocking(True)
            s.settimeout(10)
            if h2:
                conns[s].send_request()
                sample_ok += conns[s].read_response() == 200
            else:
                s.sendall(req)
                sample_ok += read_response(s) == 200
        except (OSError, ValueError):
            pass
    for s in socks:
        s.close()

    per_conn = (rss1 - rss0) / a.n if a.n else 0.0
    print(f"proto={a.proto} conns={a.n} ok={ok} failed={failed} closed_while_idle={closed} "
          f"reuse_sample_ok={sample_ok}/{len(sample)} open_secs={open_secs:.1f} "
          f"rss_before_kib={rss0} rss_after_kib={rss1} hwm_before_kib={hwm0} hwm_after_kib={hwm1} "
          f"kib_per_conn={per_conn:.2f}")
    bad = ok < a.n * 0.99 or closed > a.n * 0.01 or sample_ok < len(sample) * 0.99
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""stream_client.py MODE PORT BYTES --pid PID [--interval 0.1] [--timeout 600]

Streams BYTES through the proxy on 127.0.0.1:PORT (origin: bench/stream_origin.py) while sampling
the proxy's memory (VmRSS and VmHWM of PID and its descendants) every --interval seconds.

MODE: upload          PUT with Content-Length, body generated in 1 MiB blocks (no file on disk)
      upload-chunked  PUT with Transfer-Encoding: chunked, 1 MiB chunks
      download        GET /download?bytes=BYTES (origin sends Content-Length), body discarded
      download-chunked   same, origin sends chunked

Checks the byte count (the origin echoes what it received on uploads; downloads are counted here)
and prints one line of key=value pairs. Exit status 1 on any failure or short transfer.
"""
import argparse
import os
import socket
import sys
import threading
import time

BLOCK = bytes(range(256)) * 4096  # 1 MiB


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


def mem(pids):
    rss = hwm = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return rss, hwm


class Sampler(threading.Thread):
    def __init__(self, pid, interval):
        super().__init__(daemon=True)
        self.pids = tree(pid)
        self.interval = interval
        self.stop = threading.Event()
        self.peak_rss = 0
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            rss, _ = mem(self.pids)
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
            self.stop.wait(self.interval)


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()
        self.scratch = bytearray(1 << 20)

    def fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while (i := self.buf.find(b"\r\n")) < 0:
            self.fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def head(self):
        while True:
            while b"\r\n\r\n" not in self.buf:
                self.fill()
            i = self.buf.index(b"\r\n\r\n")
            lines = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
            del self.buf[: i + 4]
            status = int(lines[0].split()[1])
            if status != 100:
                break
        h = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            h[k.strip().lower()] = v.strip()
        return status, h

    def discard(self, n):
        take = min(n, len(self.buf))
        del self.buf[:take]
        n -= take
        view = memoryview(self.scratch)
        got_total = take
        while n > 0:
            got = self.sock.recv_into(view, min(n, len(self.scratch)))
            if not got:
                raise EOFError(f"closed after {got_total} body bytes")
            n -= got
            got_total += got

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def body(self, h):
        """Discards a response body; returns its length."""
        if "chunked" in h.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size = int(self.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.line() != b"":
                        pass
                    return total
                self.discard(size)
                total += size
                self.line()
        n = int(h.get("content-length", "0"))
        self.discard(n)
        return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["upload", "upload-chunked", "download", "download-chunked"])
    ap.add_argument("port", type=int)
    ap.add_argument("bytes", type=int)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=60, help="socket inactivity timeout, s")
    a = ap.parse_args()

    sock = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
    rd = Reader(sock)
    # warm-up request on the same connection, then the baseline
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    st, h = rd.head()
    rd.body(h)
    if st != 200:
        print(f"ok=0 error=warm-up status {st}")
        sys.exit(1)
    time.sleep(0.3)
    pids = tree(a.pid)
    rss0, hwm0 = mem(pids)
    sampler = Sampler(a.pid, a.interval)
    sampler.start()

    t0 = time.monotonic()
    err, moved = "", 0
    try:
        if a.mode.startswith("upload"):
            chunked = a.mode == "upload-chunked"
            te = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {a.bytes}"
            sock.sendall(f"PUT /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n{te}\r\n\r\n".encode())
            left, view = a.bytes, memoryview(BLOCK)
            while left > 0:
                k = min(left, len(BLOCK))
                if chunked:
                    sock.sendall(b"%x\r\n" % k)
                sock.sendall(view[:k])
                if chunked:
                    sock.sendall(b"\r\n")
                left -= k
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            st, h = rd.head()
            body = rd.read_exact(int(h.get("content-length", "0"))) if "content-length" in h else b""
            if st != 200:
                err = f"status {st}"
            else:
                moved = int(body.strip() or b"0")
        else:
            q = "&chunked=1" if a.mode == "download-chunked" else ""
            sock.sendall(f"GET /download?bytes={a.bytes}{q} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            st, h = rd.head()
            if st != 200:
                err = f"status {st}"
            moved = rd.body(h)
    except (OSError, EOFError, ValueError) as e:
        err = f"{type(e).__name__}: {e}".replace(" ", "_")
    secs = time.monotonic() - t0
    time.sleep(2 * a.interval)
    sampler.stop.set()
    sampler.join()
    rss1, hwm1 = mem(pids)
    peak = max(sampler.peak_rss, rss1)
    ok = not err and moved == a.bytes
    if not err and moved != a.bytes:
        err = f"short_transfer_{moved}_of_{a.bytes}"
    print(f"mode={a.mode} ok={int(ok)} bytes={moved} secs={secs:.2f} mib_s={moved / 1048576 / max(secs, 1e-9):.0f} "
          f"samples={sampler.samples} rss_base_kib={rss0} rss_peak_kib={peak} rss_end_kib={rss1} "
          f"peak_growth_kib={peak - rss0} hwm_before_kib={hwm0} hwm_after_kib={hwm1} hwm_growth_kib={hwm1 - hwm0}"
          + (f" error={err}" if err else ""))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

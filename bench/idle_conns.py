#!/usr/bin/env python3
"""idle_conns.py PID PORT N [--batch B] [--settle S] [--header 'Name: value']...

Opens N keepalive connections to 127.0.0.1:PORT, sends one GET / on each (B connections at a time,
each response read in full and checked to be 200), leaves them all open and idle, waits S seconds,
then reports the RSS growth of process PID (and its descendants) per connection. Afterwards
checks that the connections are still open and that a sample of them still serves a request.

Prints one line of key=value pairs; exit status 1 when fewer than 99% of the connections got a 200
or more than 1% were closed while idle. Adapted from the peers kit's idle_conns.py (which opens
all N before reading any response).
"""
import argparse
import os
import socket
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--header", action="append", default=[])
    a = ap.parse_args()

    req = ("GET / HTTP/1.1\r\nHost: bench\r\n" + "".join(h + "\r\n" for h in a.header) + "\r\n").encode()
    rss0, hwm0 = mem(a.pid, "VmRSS"), mem(a.pid, "VmHWM")
    socks, ok, failed = [], 0, 0
    t0 = time.monotonic()
    for start in range(0, a.n, a.batch):
        batch = []
        for _ in range(min(a.batch, a.n - start)):
            try:
                s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
                s.sendall(req)
                batch.append(s)
            except OSError as e:
                failed += 1
                if failed <= 3:
                    print(f"connect/send failed: {e}", file=sys.stderr)
        for s in batch:
            try:
                if read_response(s) == 200:
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

    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    sample_ok = 0
    sample = socks[:: max(1, len(socks) // 100)]
    for s in sample:
        try:
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(req)
            sample_ok += read_response(s) == 200
        except (OSError, ValueError):
            pass
    for s in socks:
        s.close()

    per_conn = (rss1 - rss0) / a.n if a.n else 0.0
    print(f"conns={a.n} ok={ok} failed={failed} closed_while_idle={closed} "
          f"reuse_sample_ok={sample_ok}/{len(sample)} open_secs={open_secs:.1f} "
          f"rss_before_kib={rss0} rss_after_kib={rss1} hwm_before_kib={hwm0} hwm_after_kib={hwm1} "
          f"kib_per_conn={per_conn:.2f}")
    bad = ok < a.n * 0.99 or closed > a.n * 0.01 or sample_ok < len(sample) * 0.99
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

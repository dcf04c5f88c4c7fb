#!/usr/bin/env python3
"""spike_rss.py PID PORT [--conns N] [--spikes K] [--settle S] [--base-settle B]

Memory after a connection spike. Warms the proxy up (a few hundred requests on 16 connections),
waits B seconds and reads its RSS (the pre-spike figure). Then K times: opens N connections,
sends one GET / on every one of them before reading any response (so all N requests are in
flight at once), reads the N responses (each checked to be 200), closes all N, and reads the RSS
every 5 s for S seconds. Reports per spike the peak and the RSS S seconds after it, against the
pre-spike figure.

Prints one key=value line per spike and a final summary line; exit status 1 when fewer than
99% of a spike's requests got a 200.
"""
import argparse
import socket
import sys
import time

from idle_conns import mem, read_response  # the same /proc and response readers


def rss_kib(pid):
    return mem(pid, "VmRSS")


REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def warm_up(port, conns=16, requests=20):
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(conns)]
    for _ in range(requests):
        for s in socks:
            s.sendall(REQ)
        for s in socks:
            read_response(s)
    for s in socks:
        s.close()


def spike(port, n):
    """N connections, all N requests in flight at once, then all closed. Returns (ok, failed)."""
    socks, ok, failed = [], 0, 0
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=20))
        except OSError as e:
            failed += 1
            if failed <= 3:
                print(f"connect failed: {e}", file=sys.stderr)
    sent = []
    for s in socks:
        try:
            s.sendall(REQ)
            sent.append(s)
        except OSError:
            failed += 1
    for s in sent:
        try:
            ok += read_response(s) == 200
        except (OSError, ValueError) as e:
            failed += 1
            if failed <= 3:
                print(f"response failed: {e}", file=sys.stderr)
    for s in socks:
        s.close()
    return ok, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("port", type=int)
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--spikes", type=int, default=3)
    ap.add_argument("--settle", type=float, default=60.0)
    ap.add_argument("--base-settle", type=float, default=10.0)
    a = ap.parse_args()

    warm_up(a.port)
    time.sleep(a.base_settle)
    base = rss_kib(a.pid)
    print(f"pre_spike_rss_kib={base}", flush=True)
    bad = False
    after = base
    for k in range(1, a.spikes + 1):
        t0 = time.monotonic()
        ok, failed = spike(a.port, a.conns)
        peak = rss_kib(a.pid)
        curve = []
        end = time.monotonic() + a.settle
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(5.0, left))
            curve.append(rss_kib(a.pid))
        after = curve[-1] if curve else rss_kib(a.pid)
        bad |= ok < a.conns * 0.99
        print(f"spike={k} conns={a.conns} ok={ok} failed={failed} spike_secs={time.monotonic() - t0 - a.settle:.1f} "
              f"rss_after_spike_kib={peak} rss_{a.settle:.0f}s_after_kib={after} "
              f"above_pre_spike_kib={after - base} curve_kib={','.join(map(str, curve))}", flush=True)
    print(f"summary pre_spike_rss_kib={base} final_rss_kib={after} final_above_pre_spike_kib={after - base}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""Graceful shutdown (SIGTERM, SIGINT): stop accepting, let in-flight requests finish within
drain_timeout, close idle connections, exit 0."""
import select
import signal
import socket
import threading
import time

import pytest

import rawhttp
from harness import base_config, respond_route


class SlowRequest:
    """A GET in a thread of its own; .result is the Response or the exception it ended with."""

    def __init__(self, port: int, target: str, timeout: float = 20.0):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(port, target, timeout), daemon=True)
        self.thread.start()

    def _run(self, port, target, timeout):
        try:
            self.result = rawhttp.request(port, "GET", target, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.result = e

    def join(self, timeout: float):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "slow request still running"
        return self.result


def refused_within(port: int, seconds: float) -> float | None:
    """Seconds until a new connection is refused, or None if it never was within `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if rawhttp.connect_refused(port, timeout=0.5):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_finishes_in_flight_request_refuses_new_connections_and_exits_0(origin, turnpike, sig):
    tp = turnpike(base_config(origin, drain_timeout="10s"))
    port = tp.port()
    slow = SlowRequest(port, "/sleep/2000")
    origin.wait_for_path("/sleep/2000", timeout=5)
    sent_at = time.monotonic()
    tp.signal(sig)
    refused_after = refused_within(port, 1.5)
    assert refused_after is not None, "new connections still accepted 1.5 s after the signal"
    resp = slow.join(15)
    assert isinstance(resp, rawhttp.Response), f"in-flight request failed during drain: {resp!r}"
    assert resp.status == 200, resp
    assert resp.json()["path"] == "/sleep/2000"
    rc = tp.wait_exit(10 + 3)
    assert rc is not None, "turnpike did not exit within drain_timeout"
    assert rc == 0, f"exit code {rc}\n{tp.logs()}"
    assert time.monotonic() - sent_at < 10, "exit took longer than drain_timeout"


def test_drain_closes_idle_keepalive_connections_and_exits_promptly(origin, turnpike):
    tp = turnpike(base_config(origin, drain_timeout="30s"))
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/echo/idle").status == 200
        start = time.monotonic()
        tp.signal(signal.SIGTERM)
        assert conn.wait_closed(5.0), "idle keepalive connection kept open during drain"
    rc = tp.wait_exit(5.0)
    assert rc == 0, f"with only idle connections, exit should be prompt and clean: rc {rc}\n{tp.logs()}"
    assert time.monotonic() - start < 5.0


def test_keepalive_request_during_drain_gets_connection_close(origin, turnpike):
    tp = turnpike(base_config(origin, drain_timeout="10s"))
    with rawhttp.HttpConn(tp.port()) as conn:
        # The request is in flight when the signal arrives; its response must end the connection.
        conn.send_request("GET", "/sleep/1000")
        origin.wait_for_path("/sleep/1000", timeout=5)
        tp.signal(signal.SIGTERM)
        resp = conn.read_final_response(timeout=10)
        assert resp.status == 200
        assert resp.has_token("connection", "close"), "response finished during drain should close"
        assert conn.wait_closed(3.0)
    assert tp.wait_exit(10) == 0


def test_drain_timeout_bounds_shutdown_with_stuck_request(origin, turnpike):
    tp = turnpike(base_config(origin, drain_timeout="1s"))
    slow = SlowRequest(tp.port(), "/sleep/8000")
    origin.wait_for_path("/sleep/8000", timeout=5)
    start = time.monotonic()
    tp.signal(signal.SIGTERM)
    rc = tp.wait_exit(5.0)
    assert rc is not None, "turnpike still running 5 s after SIGTERM with drain_timeout 1s"
    elapsed = time.monotonic() - start
    assert elapsed >= 0.8, f"exited after {elapsed:.2f}s: did not wait for the in-flight request"
    result = slow.join(10)
    assert not (isinstance(result, rawhttp.Response) and result.status == 200), \
        "request outliving drain_timeout cannot have completed"


def peer_closed(conn: rawhttp.HttpConn) -> bool:
    """Whether the gateway's close (FIN or reset) has reached this client connection already."""
    readable, _, _ = select.select([conn.sock], [], [], 0)
    if not readable:
        return False
    try:
        return conn.sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BlockingIOError):
        return True


class KeepaliveSender:
    """A client thread sending GETs back-to-back on a keepalive connection, the way a busy
    client does, and on a new one after a `Connection: close`, until `no_new_connections` is set.
    A request counts as failed when it was sent in full before the client saw a close and then got
    no complete response."""

    def __init__(self, port: int, no_new_connections: threading.Event, seconds: float = 20.0):
        self.port = port
        self.no_new = no_new_connections
        self.seconds = seconds
        self.answered = 0
        self.answered_with_close = 0
        self.failures: list = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn = None
        deadline = time.monotonic() + self.seconds
        try:
            while time.monotonic() < deadline:
                if conn is None:
                    if self.no_new.is_set():
                        return
                    try:
                        conn = rawhttp.HttpConn(self.port, timeout=5.0)
                    except OSError:
                        return  # refused: the listener has closed
                elif peer_closed(conn):
                    conn.close()  # closed before we sent: a client retries this elsewhere
                    conn = None
                    continue
                try:
                    conn.send_request("GET", f"/ka/{self.answered}")
                except OSError:
                    conn.close()  # the close arrived while sending: the request was not sent
                    conn = None
                    continue
                try:
                    resp = conn.read_final_response(timeout=5.0)
                except (rawhttp.ConnectionClosed, OSError, ValueError) as e:
                    self.failures.append(repr(e))
                    conn.close()
                    conn = None
                    continue
                if resp.status != 200:
                    self.failures.append(f"status {resp.status}")
                self.answered += 1
                if resp.has_token("connection", "close"):
                    self.answered_with_close += 1
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def join(self, timeout: float):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "client thread still running"


def test_drain_answers_requests_that_race_it_on_keepalive_connections(turnpike):
    """SIGTERM while 20 clients send back-to-back on keepalive connections: a request that had
    arrived, or arrives while the drain starts, is answered with `Connection: close`; no request
    sent before its client saw the close goes unanswered. Several rounds, each a new process."""
    cfg = base_config(routes=[respond_route("all", ["/*"], "ok")], drain_timeout="10s")
    for round_no in range(4):
        tp = turnpike(cfg)
        no_new = threading.Event()
        senders = [KeepaliveSender(tp.port(), no_new) for _ in range(20)]
        deadline = time.monotonic() + 10
        while sum(s.answered for s in senders) < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        no_new.set()
        tp.signal(signal.SIGTERM)
        for s in senders:
            s.join(15)
        failures = [f for s in senders for f in s.failures]
        assert failures == [], f"round {round_no}: {len(failures)} requests unanswered: {failures[:5]}"
        assert sum(s.answered_with_close for s in senders) > 0, f"round {round_no}: no answer during the drain"
        assert tp.wait_exit(10) == 0, tp.logs()[-2000:]

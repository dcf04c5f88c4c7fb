"""Graceful shutdown (SIGTERM, SIGINT): stop accepting, let in-flight requests finish within
drain_timeout, close idle connections, exit 0."""
import signal
import threading
import time

import pytest

import rawhttp
from harness import base_config


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

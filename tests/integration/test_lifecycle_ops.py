"""Operations around the process's life: `--version`, the controlled stop for L4 balancers
(shutdown_delay: not ready but still accepting, then the drain) under a load generator that keeps
opening new connections, and the systemd notification protocol (READY, RELOADING/READY around
reloads with MONOTONIC_USEC, STATUS, STOPPING, WATCHDOG) read from a test Unix datagram socket."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time

import rawhttp
from harness import Turnpike, base_config, respond_route


def test_version_prints_version_and_commit(turnpike_bin):
    out = subprocess.run([turnpike_bin, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    m = re.fullmatch(r"turnpike (\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,40}(-dirty)?|unknown)\)\n", out.stdout)
    assert m, out.stdout
    assert m.group(2) != "unknown", "built from a git checkout: the commit should be known"


def test_startup_log_names_the_version(turnpike):
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "ok")]))
    version = subprocess.run([tp.binary, "--version"], capture_output=True, text=True, timeout=10).stdout.split()[1]
    tp.wait_log(rf"turnpike {re.escape(version)} \(commit ")


class Load:
    """New connection per request, one request each, until stopped (bounded by `limit` requests
    and `seconds`). Records failures with the time they happened."""

    def __init__(self, port: int, limit: int = 20000, seconds: float = 30.0):
        self.port = port
        self.ok = 0
        self.failures = []
        self.stop_at = None
        self.limit = limit
        self.seconds = seconds
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        started = time.monotonic()
        for _ in range(self.limit):
            now = time.monotonic()
            if now - started > self.seconds or (self.stop_at is not None and now >= self.stop_at):
                return
            try:
                resp = rawhttp.request(self.port, "GET", "/x", timeout=5)
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append((now, f"status {resp.status}"))
            except Exception as e:  # noqa: BLE001 - counted
                self.failures.append((now, repr(e)))

    def join(self):
        self.thread.join(self.seconds + 10)
        assert not self.thread.is_alive()


def test_shutdown_delay_reports_not_ready_but_keeps_accepting_then_drains(turnpike):
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "ok")], shutdown_delay="1500ms"))
    assert tp.state()["readiness"] == "ready"
    port = tp.port()
    load = Load(port)
    deadline = time.monotonic() + 5
    while load.ok < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert load.ok >= 20, load.failures[:3]
    before = load.ok
    signalled = time.monotonic()
    tp.signal(signal.SIGTERM)
    # The balancer's check sees "not ready" at once...
    while tp.state()["readiness"] != "draining" and time.monotonic() - signalled < 2:
        time.sleep(0.01)
    assert tp.state()["readiness"] == "draining"
    # ...and takes the node out some time later; new connections keep working until then.
    load.stop_at = signalled + 1.0
    load.join()
    assert load.failures == [], load.failures[:5]
    assert load.ok - before >= 10, "new connections during shutdown_delay were served"
    # After the delay the listeners close and the process exits 0.
    assert tp.wait_exit(10) == 0, tp.logs()
    log = tp.logs()
    assert "still accepting for shutdown_delay (1500 ms)" in log
    stopped = [l for l in log.splitlines() if "turnpike stopped" in l]
    assert stopped, log


def test_second_sigterm_cuts_shutdown_delay_short(turnpike):
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "ok")], shutdown_delay="60s"))
    port = tp.port()
    tp.signal(signal.SIGTERM)
    tp.wait_log("still accepting for shutdown_delay")
    assert rawhttp.request(port, "GET", "/x", timeout=5).status == 200  # still accepting
    tp.signal(signal.SIGTERM)
    assert tp.wait_exit(10) == 0, "a second SIGTERM ends the delay"
    assert "cut short by a second signal" in tp.logs()


# ---- systemd notify protocol ----

class NotifySocket:
    """A Unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def wait_for(self, key: str, timeout: float = 10.0, after: int = 0) -> dict:
        """The first message (from index `after`) with `key` set, as a dict; waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if key in self.messages[i]:
                    return self.messages[i] | {"_index": i}
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key} within {timeout}s; got {self.messages}")
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def close(self):
        self.sock.close()


def start_with_notify(turnpike_bin, tmp_path, monkeypatch, cfg, env_extra=None):
    """Turnpike started as systemd would start a Type=notify service (the child inherits the
    environment set here)."""
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    for k, v in (env_extra or {}).items():
        monkeypatch.setenv(k, v)
    tp = Turnpike(turnpike_bin, tmp_path / "tp", cfg)
    tp.start()
    return tp, notify


def test_notify_ready_reload_refused_reload_and_stopping(turnpike_bin, tmp_path, monkeypatch):
    cfg = base_config(routes=[respond_route("r", ["/*"], "ok")])
    tp, notify = start_with_notify(turnpike_bin, tmp_path, monkeypatch, cfg)
    try:
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1"
        assert "generation 1" in ready["STATUS"], ready
        # A good reload: RELOADING=1 with a monotonic timestamp, then READY=1 with the new generation.
        cfg2 = base_config(routes=[respond_route("r", ["/*"], "ok2")])
        before = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        tp.reload(cfg2)
        reloading = notify.wait_for("RELOADING", after=ready["_index"] + 1)
        assert reloading["RELOADING"] == "1"
        usec = int(reloading["MONOTONIC_USEC"])
        assert before - 1e6 < usec < time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6 + 1e6
        ready2 = notify.wait_for("READY", after=reloading["_index"] + 1)
        assert "generation 2" in ready2["STATUS"], ready2
        # A refused reload: READY=1 (the old config serves on) and a STATUS saying why.
        tp.reload({"listeners": "not a list"}, expect_ok=False)
        reloading = notify.wait_for("RELOADING", after=ready2["_index"] + 1)
        refused = notify.wait_for("READY", after=reloading["_index"] + 1)
        assert refused["STATUS"].startswith("reload refused ("), refused
        assert "generation 2" in refused["STATUS"], refused
        # Stop: STOPPING=1.
        tp.signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING", after=refused["_index"] + 1)
        assert stopping["STOPPING"] == "1"
        assert tp.wait_exit(10) == 0
    finally:
        tp.cleanup()
        notify.close()


def test_notify_watchdog_pings_at_half_the_interval(turnpike_bin, tmp_path, monkeypatch):
    cfg = base_config(routes=[respond_route("r", ["/*"], "ok")])
    tp, notify = start_with_notify(turnpike_bin, tmp_path, monkeypatch, cfg, {"WATCHDOG_USEC": "400000"})
    try:
        first = notify.wait_for("WATCHDOG")
        t0 = time.monotonic()
        second = notify.wait_for("WATCHDOG", after=first["_index"] + 1, timeout=5)
        third = notify.wait_for("WATCHDOG", after=second["_index"] + 1, timeout=5)
        assert third["WATCHDOG"] == "1"
        assert time.monotonic() - t0 < 3, "two pings at 200 ms intervals"
    finally:
        tp.cleanup()
        notify.close()


def test_watchdog_for_another_pid_is_not_ours(turnpike_bin, tmp_path, monkeypatch):
    cfg = base_config(routes=[respond_route("r", ["/*"], "ok")])
    tp, notify = start_with_notify(turnpike_bin, tmp_path, monkeypatch, cfg, {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    try:
        notify.wait_for("READY")
        tp.reload(base_config(routes=[respond_route("r", ["/*"], "ok2")]))
        notify.wait_for("RELOADING")
        time.sleep(0.6)  # three intervals of 200 ms: pings would have come
        tp.signal(signal.SIGTERM)
        notify.wait_for("STOPPING")
        assert not any("WATCHDOG" in m for m in notify.messages), notify.messages
    finally:
        tp.cleanup()
        notify.close()

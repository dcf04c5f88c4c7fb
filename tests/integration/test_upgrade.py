"""Hitless binary upgrade (SIGUSR2, POST /upgrade, `turnpike --upgrade`) and `turnpike --reload`.

The running process fork+execs the binary at its path on disk with the listening sockets; the new
one takes them over, reports ready, and the old one drains and exits. The new process is the old
one's child: this module makes pytest a child subreaper (prctl), so once the old process exits the
new one becomes our child, and its exit code can be waited for like any other.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import rawhttp
from harness import Turnpike, base_config, check_config, respond_route
from test_drain import peer_closed
from test_lifecycle_ops import NotifySocket

PR_SET_CHILD_SUBREAPER = 36
UPGRADE_TIMEOUT = 20.0


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


class Successor:
    """A turnpike process started by an upgrade (our child once its parent has exited)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not (yet) ours: its parent still runs
                return None
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait_exit(self, timeout: float):
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.returncode

    def stop(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            if self.wait_exit(15) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.wait_exit(5)


@pytest.fixture
def successors(turnpike):
    """Every process started by an upgrade in a test, stopped at teardown (before the first
    turnpike's own teardown, which then checks the shared stderr for sanitizer reports)."""
    procs: list[Successor] = []
    yield procs
    for p in reversed(procs):
        p.stop()


def upgrade_config(**top) -> dict:
    cfg = base_config(routes=[respond_route("all", ["/*"], "ok")], admin={"listen": "127.0.0.1:0"}, **top)
    cfg["drain_timeout"] = "10s"
    return cfg


def admin_port(tp: Turnpike) -> int:
    return int(tp.state()["admin"].rpartition(":")[2])


def status(port: int, token: str | None = None) -> dict:
    headers = [("Authorization", f"Bearer {token}")] if token else None
    resp = rawhttp.request(port, "GET", "/status", headers=headers, timeout=5)
    assert resp.status == 200, resp
    return resp.json()


def wait_new_pid(tp: Turnpike, old_pid: int, successors: list, timeout: float = UPGRADE_TIMEOUT) -> Successor:
    """Waits until the ready-file names another pid (the new process writes it once it serves)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = tp.state()
        if state and state["pid"] != old_pid:
            s = Successor(state["pid"])
            successors.append(s)
            return s
        time.sleep(0.02)
    raise AssertionError(f"no new process within {timeout}s\n{tp.logs()[-4000:]}")


def wait_exit(pid_or_proc, timeout: float):
    """The exit code of the old process (`Turnpike` or `Successor`)."""
    return pid_or_proc.wait_exit(timeout)


class NewConnectionClient:
    """A request per new connection, until stopped (bounded in count and time)."""

    def __init__(self, port: int, limit: int = 50000, seconds: float = 60.0):
        self.port, self.limit, self.seconds = port, limit, seconds
        self.ok = 0
        self.failures: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                resp = rawhttp.request(self.port, "GET", "/new", timeout=5)
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {resp.status}")
            except Exception as e:  # noqa: BLE001 - counted
                self.failures.append(repr(e))

    def join(self):
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


class KeepaliveClient:
    """Back-to-back GETs on a keepalive connection; a new connection after a close. A request
    fails when it was sent before the client saw a close and got no complete response, or when a
    connection cannot be opened at all."""

    def __init__(self, port: int, limit: int = 50000, seconds: float = 60.0):
        self.port, self.limit, self.seconds = port, limit, seconds
        self.ok = 0
        self.connections = 0
        self.failures: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn = None
        deadline = time.monotonic() + self.seconds
        try:
            for _ in range(self.limit):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                if conn is None:
                    try:
                        conn = rawhttp.HttpConn(self.port, timeout=5.0)
                        self.connections += 1
                    except OSError as e:
                        self.failures.append(f"connect: {e!r}")
                        time.sleep(0.01)
                        continue
                elif peer_closed(conn):
                    conn.close()  # closed before we sent: a client opens a new one
                    conn = None
                    continue
                try:
                    conn.send_request("GET", "/ka")
                except OSError:
                    conn.close()  # the close arrived while sending: not sent
                    conn = None
                    continue
                try:
                    resp = conn.read_final_response(timeout=5.0)
                except (rawhttp.ConnectionClosed, OSError, ValueError) as e:
                    self.failures.append(repr(e))
                    conn.close()
                    conn = None
                    continue
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {resp.status}")
                if resp.has_token("connection", "close"):
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def join(self):
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


def start_load(port: int, keepalive: int = 3, new_connections: int = 3) -> list:
    clients = [KeepaliveClient(port) for _ in range(keepalive)] + \
              [NewConnectionClient(port) for _ in range(new_connections)]
    wait_served(clients, 50)
    return clients


def wait_served(clients: list, more: int, timeout: float = 15.0) -> None:
    target = sum(c.ok for c in clients) + more
    deadline = time.monotonic() + timeout
    while sum(c.ok for c in clients) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(c.ok for c in clients) >= target, [c.failures[:3] for c in clients]


def stop_load(clients: list) -> list:
    for c in clients:
        c.join()
    return [f for c in clients for f in c.failures]


# ---- the upgrade ----

def test_upgrade_under_load_fails_no_request_and_the_old_process_drains_and_exits(turnpike, successors):
    tp = turnpike(upgrade_config())
    port, aport = tp.port(), admin_port(tp)
    before = status(aport)
    assert before["pid"] == tp.pid and before["last_upgrade"]["result"] == "none"
    clients = start_load(port)
    tp.signal(signal.SIGUSR2)
    new = wait_new_pid(tp, tp.pid, successors)
    assert wait_exit(tp, 15) == 0, tp.logs()[-4000:]
    wait_served(clients, 200)  # the new process alone now, on the same port
    failures = stop_load(clients)
    assert failures == [], f"{len(failures)} failed requests across the upgrade: {failures[:5]}"
    # The admin socket was handed over too: same port, the new process answers.
    after = status(aport)
    assert after["pid"] == new.pid and after["start_time"] > before["start_time"], after
    assert tp.port() == port and new.poll() is None
    log = tp.logs()
    assert f"upgrade: pid {new.pid} serves now; this process stops accepting and drains" in log, log[-4000:]
    assert "turnpike stopped" in log


def test_upgrade_by_admin_api_and_by_the_command_line(turnpike, successors):
    tp = turnpike(upgrade_config())
    aport = admin_port(tp)
    resp = rawhttp.request(aport, "POST", "/upgrade", timeout=5)
    assert resp.status == 202 and resp.json()["result"] == "started", resp
    first = wait_new_pid(tp, tp.pid, successors)
    assert wait_exit(tp, 15) == 0
    # `turnpike --upgrade` waits for the outcome: exit 0 once a new pid serves.
    out = subprocess.run([tp.binary, "--upgrade", "-c", str(tp.config_path), "--admin", f"127.0.0.1:{aport}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    second = wait_new_pid(tp, first.pid, successors)
    assert out.stdout == f"upgrade complete: pid {second.pid} serves (was pid {first.pid})\n"
    assert first.wait_exit(15) == 0
    assert rawhttp.request(tp.port(), "GET", "/x", timeout=5).status == 200


def test_three_upgrades_in_a_row_under_load_with_fewer_then_more_workers(turnpike, successors):
    """2 workers, then 1 (one worker accepts on both passed sockets), then 3 (one more socket
    bound beside the passed ones), then 2 again: no request fails."""
    cfg = upgrade_config()
    tp = turnpike(cfg)
    port = tp.port()
    clients = start_load(port)
    old = tp
    pids = [tp.pid]
    for workers in (1, 3, 2):
        cfg["workers"] = workers
        tp._write_config(cfg)  # read by the new process only
        os.kill(pids[-1], signal.SIGUSR2)
        new = wait_new_pid(tp, pids[-1], successors)
        assert tp.state()["workers"] == workers
        assert wait_exit(old, 15) == 0, tp.logs()[-4000:]
        wait_served(clients, 100)
        pids.append(new.pid)
        old = new
    failures = stop_load(clients)
    assert failures == [], f"{len(failures)} failed requests across 3 upgrades: {failures[:5]}"
    assert len(set(pids)) == 4 and tp.port() == port


def test_listeners_kept_added_and_dropped_across_an_upgrade(turnpike, successors):
    cfg = upgrade_config(listeners=[{"name": "public", "address": "127.0.0.1", "port": 0},
                                    {"name": "old", "address": "127.0.0.1", "port": 0}])
    tp = turnpike(cfg)
    public, dropped = tp.port("public"), tp.port("old")
    cfg["listeners"] = [{"name": "public", "address": "127.0.0.1", "port": 0},
                        {"name": "added", "address": "127.0.0.1", "port": 0}]
    tp._write_config(cfg)
    tp.signal(signal.SIGUSR2)
    wait_new_pid(tp, tp.pid, successors)
    assert wait_exit(tp, 15) == 0
    assert tp.port("public") == public, "a kept listener keeps its socket (and port 0's port)"
    assert "old" not in tp.state()["listeners"]
    assert rawhttp.request(tp.port("added"), "GET", "/x", timeout=5).status == 200
    assert rawhttp.request(public, "GET", "/x", timeout=5).status == 200
    assert rawhttp.connect_refused(dropped), "the dropped listener's socket is closed once the old process is gone"
    assert '"old" on 127.0.0.1:' in tp.logs() and "is no longer configured: closed" in tp.logs()


def test_failed_upgrades_leave_the_old_process_serving(turnpike, tmp_path, successors):
    fails = tmp_path / "fails.sh"
    fails.write_text("#!/bin/sh\necho 'new binary: refusing to start' >&2\nexit 1\n")
    fails.chmod(0o755)
    hangs = tmp_path / "hangs.sh"
    hangs.write_text("#!/bin/sh\nexec sleep 60\n")
    hangs.chmod(0o755)
    cfg = upgrade_config(upgrade_binary=str(fails))
    tp = turnpike(cfg)
    port, aport = tp.port(), admin_port(tp)
    clients = start_load(port, keepalive=2, new_connections=2)

    # 1. The new binary exits 1.
    tp.signal(signal.SIGUSR2)
    tp.wait_log(r"upgrade failed, this process serves on: pid \d+ exited with status 1 before it was ready", 15)
    assert status(aport)["last_upgrade"]["result"] == "exited"
    assert "new binary: refusing to start" in tp.logs()

    # 2. The new process is not ready within upgrade_timeout: killed.
    cfg["upgrade_binary"] = str(hangs)
    cfg["upgrade_timeout"] = "500ms"
    tp.reload(cfg)
    tp.signal(signal.SIGUSR2)
    tp.wait_log(r"pid \d+ was not ready within upgrade_timeout \(500 ms\): killed", 15)
    assert status(aport)["last_upgrade"]["result"] == "timed_out"

    # 3. The real binary, but the config was made invalid since: it says why and exits 1.
    cfg.pop("upgrade_binary")
    cfg.pop("upgrade_timeout")
    tp.reload(cfg)
    tp._write_config(tp.config_path.read_text() + "bogus_key: 1\n")
    tp.signal(signal.SIGUSR2)
    tp.wait_log(r"bogus_key", 30)  # the new process's own message, in the shared log
    tp.wait_log(r"(?s)(exited with status 1 before it was ready.*){2}", 30)

    wait_served(clients, 50)
    failures = stop_load(clients)
    assert failures == [], failures[:5]
    assert tp.alive() and tp.state()["pid"] == tp.pid and status(aport)["pid"] == tp.pid
    assert tp.state()["readiness"] == "ready"


def test_upgrade_command_reports_a_failed_upgrade(turnpike, tmp_path, successors):
    fails = tmp_path / "fails.sh"
    fails.write_text("#!/bin/sh\nexit 3\n")
    fails.chmod(0o755)
    tp = turnpike(upgrade_config(upgrade_binary=str(fails)))
    aport = admin_port(tp)
    out = subprocess.run([tp.binary, "--upgrade", "-c", str(tp.config_path), "--admin", f"127.0.0.1:{aport}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"upgrade failed, pid {tp.pid} serves on: pid " in out.stderr and "exited with status 3" in out.stderr
    assert tp.alive() and rawhttp.request(tp.port(), "GET", "/x", timeout=5).status == 200


def test_the_binary_on_disk_is_what_runs(turnpike_bin, tmp_path, successors):
    """Started from a copy; the copy is then replaced (as a package upgrade does) by a wrapper that
    marks its pid and execs the real binary: the upgrade runs the file now at that path."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    copy = bindir / "turnpike"
    shutil.copy2(turnpike_bin, copy)
    tp = Turnpike(str(copy), tmp_path / "tp", upgrade_config())
    try:
        tp.start()
        marker = tmp_path / "wrapper.pid"
        wrapper = bindir / "turnpike.new"
        wrapper.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec {turnpike_bin} \"$@\"\n")
        wrapper.chmod(0o755)
        os.replace(wrapper, copy)
        tp.signal(signal.SIGUSR2)
        new = wait_new_pid(tp, tp.pid, successors)
        assert wait_exit(tp, 15) == 0
        assert int(marker.read_text()) == new.pid, "the new process is what the path on disk holds now"
        assert os.readlink(f"/proc/{new.pid}/exe") == os.path.realpath(turnpike_bin)
        assert rawhttp.request(tp.port(), "GET", "/x", timeout=5).status == 200
    finally:
        for s in successors:
            s.stop()
        tp.cleanup()
    assert tp.sanitizer_report() is None, tp.logs()[-4000:]


def test_pid_file_follows_the_new_process(turnpike, tmp_path, successors):
    pid_file = tmp_path / "turnpike.pid"
    tp = turnpike(upgrade_config(pid_file=str(pid_file)))
    assert int(pid_file.read_text()) == tp.pid
    tp.signal(signal.SIGUSR2)
    new = wait_new_pid(tp, tp.pid, successors)
    assert int(pid_file.read_text()) == new.pid
    assert wait_exit(tp, 15) == 0
    assert int(pid_file.read_text()) == new.pid, "the old process leaves the new one's pid file alone"


def test_notify_main_pid_moves_to_the_new_process(turnpike_bin, tmp_path, monkeypatch, successors):
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    tp = Turnpike(turnpike_bin, tmp_path / "tp", upgrade_config())
    try:
        tp.start()
        ready = notify.wait_for("READY")
        assert "MAINPID" not in ready
        tp.signal(signal.SIGUSR2)
        took_over = notify.wait_for("MAINPID", after=ready["_index"] + 1, timeout=UPGRADE_TIMEOUT)
        new = wait_new_pid(tp, tp.pid, successors)
        assert took_over["MAINPID"] == str(new.pid) and took_over["READY"] == "1", took_over
        assert wait_exit(tp, 15) == 0
        # The old process says nothing once it handed over (STOPPING=1 would stop the service).
        time.sleep(0.3)
        with pytest.raises(AssertionError):
            notify.wait_for("STOPPING", after=took_over["_index"] + 1, timeout=0.5)
        # The new one speaks for the service from now on.
        os.kill(new.pid, signal.SIGTERM)
        assert notify.wait_for("STOPPING", after=took_over["_index"] + 1)
        assert new.wait_exit(15) == 0
    finally:
        for s in successors:
            s.stop()
        tp.cleanup()
        notify.close()
    assert tp.sanitizer_report() is None, tp.logs()[-4000:]


def test_a_plain_second_start_on_a_served_port_still_refuses(turnpike, tmp_path):
    tp = turnpike(upgrade_config())
    cfg = upgrade_config(listeners=[{"name": "public", "address": "127.0.0.1", "port": tp.port()}])
    second = Turnpike(tp.binary, tmp_path / "second", cfg)
    second.start(wait=False)
    assert second.wait_exit(20) == 1
    assert "another process, perhaps another turnpike" in second.logs()


# ---- turnpike --reload ----

def reload_command(tp: Turnpike, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([tp.binary, "--reload", "-c", str(tp.config_path), *extra],
                          capture_output=True, text=True, timeout=60)


def test_reload_command_reports_success_and_every_error_of_a_refused_reload(turnpike, tmp_path):
    cfg = upgrade_config()
    cfg["admin"]["token"] = "s3cret"
    tp = turnpike(cfg)
    aport = admin_port(tp)
    out = reload_command(tp, "--admin", f"127.0.0.1:{aport}")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "reload complete: generation 2\n"
    # A listener whose port is taken: `-t` cannot know (it binds nothing), the reload refuses it.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        busy = held.getsockname()[1]
        cfg["listeners"].append({"name": "extra", "address": "127.0.0.1", "port": busy})
        tp._write_config(cfg)
        assert check_config(tp.binary, tp.config_path).returncode == 0
        out = reload_command(tp, "--admin", f"127.0.0.1:{aport}")
        assert out.returncode == 1
        assert f'listener "extra": cannot listen on 127.0.0.1:{busy}' in out.stderr, out.stderr
        assert "reload refused; the running configuration stays in place" in out.stderr
        assert status(aport, "s3cret")["config_generation"] == 2
    finally:
        held.close()
    # A config that does not load: its errors, exit 1, nothing asked of the process.
    tp._write_config("listeners: 5\n")
    out = reload_command(tp, "--admin", f"127.0.0.1:{aport}")
    assert out.returncode == 1 and "listeners" in out.stderr and "does not load" in out.stderr
    # A wrong token is a failure too.
    cfg["listeners"].pop()
    cfg["admin"]["token"] = "other"
    tp._write_config(cfg)
    out = reload_command(tp, "--admin", f"127.0.0.1:{aport}")
    assert out.returncode == 1 and "HTTP 401" in out.stderr


def test_reload_command_without_admin_listener_signals_the_pid(turnpike, tmp_path):
    cfg = base_config(routes=[respond_route("all", ["/*"], "ok")], pid_file=str(tmp_path / "tp.pid"))
    tp = turnpike(cfg)
    out = reload_command(tp)
    assert out.returncode == 0 and f"SIGHUP sent to pid {tp.pid}" in out.stderr
    deadline = time.monotonic() + 10
    while tp.state()["generation"] != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tp.state()["generation"] == 2
    cfg.pop("pid_file")
    tp._write_config(cfg)
    out = reload_command(tp)
    assert out.returncode == 1 and "cannot reach the running process" in out.stderr


def test_sigterm_during_an_upgrade_stops_the_starting_process_too(turnpike, tmp_path):
    hangs = tmp_path / "hangs.sh"
    hangs.write_text("#!/bin/sh\nexec sleep 60\n")
    hangs.chmod(0o755)
    tp = turnpike(upgrade_config(upgrade_binary=str(hangs), upgrade_timeout="30s"))
    tp.signal(signal.SIGUSR2)
    tp.wait_log(r"upgrade: started .*hangs\.sh as pid \d+", 10)
    # Meanwhile: no second upgrade, no reload (the starting process has the sockets as they were).
    aport = admin_port(tp)
    assert rawhttp.request(aport, "POST", "/upgrade", timeout=5).status == 409
    out = reload_command(tp, "--admin", f"127.0.0.1:{aport}")
    assert out.returncode == 1 and "reload refused: a binary upgrade is in progress" in out.stderr, out.stderr
    tp.signal(signal.SIGTERM)
    assert tp.wait_exit(15) == 0, tp.logs()[-3000:]
    assert "was killed by signal" in tp.logs(), "the starting process is killed, not left serving"


def test_upgrade_keys_are_checked(turnpike_bin, tmp_path):
    path = tmp_path / "turnpike.yaml"
    path.write_text("listeners:\n  - {name: p, address: 127.0.0.1, port: 0}\n"
                    "upgrade_timeout: 0s\nupgrade_binary: [1]\nupgrade_timout: 1s\n")
    out = check_config(turnpike_bin, path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"{path}:3: upgrade_timeout: must be greater than 0",
        f"{path}:4: upgrade_binary: expected a string, got a list",
        f'{path}:5: unknown key "upgrade_timout" (did you mean "upgrade_timeout"?)',
    ]


def socket_inodes(pid: int) -> set:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def test_the_new_process_inherits_the_listening_sockets_only(turnpike, successors):
    """A client connection the old process holds is not copied into the new one (where it would
    stay open for good): of the old process's sockets the new one has the listening ones only."""
    tp = turnpike(upgrade_config())
    conn = rawhttp.HttpConn(tp.port())
    try:
        assert conn.request("GET", "/x").status == 200
        old_sockets = socket_inodes(tp.pid)
        tp.signal(signal.SIGUSR2)
        new = wait_new_pid(tp, tp.pid, successors)
        shared = old_sockets & socket_inodes(new.pid)
        assert len(old_sockets) == 4, old_sockets  # 2 workers' listening sockets, admin, the client
        assert len(shared) == 3, (old_sockets, shared)
    finally:
        conn.close()
    assert wait_exit(tp, 15) == 0

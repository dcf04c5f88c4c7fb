"""Runs the real turnpike binary for a test: config in, ready-file out, signals, logs.

A Turnpike object owns one process started with `-c <tmp>/turnpike.yaml --ready-file <tmp>/ready.json`.
The ready-file (written atomically by turnpike after binding and after every reload attempt) is
the only way the tests learn ports, generation and reload outcomes; nothing here sleeps and hopes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

import rawhttp

READY_TIMEOUT = 10.0
RELOAD_TIMEOUT = 10.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "build-dev" / "src" / "app" / "turnpike"


def find_binary() -> tuple[str | None, str]:
    """(path, why): the binary from $TURNPIKE_BIN, else the dev build; path None if unusable."""
    env = os.environ.get("TURNPIKE_BIN")
    path = Path(env) if env else DEFAULT_BINARY
    if not path.is_file() or not os.access(path, os.X_OK):
        return None, f"turnpike binary not found at {path} (set TURNPIKE_BIN)"
    return str(path), ""


def base_config(origin=None, *, routes=None, upstreams=None, limits=None, listeners=None, **top) -> dict:
    """A complete config: listener "public" on 127.0.0.1:0, upstream "origin" → the test origin,
    and (unless `routes` is given) one route sending everything there. Keyword arguments replace
    top-level keys; `limits` is merged over the defaults."""
    cfg = {
        "workers": 2,
        "drain_timeout": "10s",
        "log": {"error_log": "stderr", "level": "info", "access_log": "off", "access_format": "text"},
        "limits": {"header_timeout": "10s", "keepalive_timeout": "60s"},
        "listeners": listeners or [{"name": "public", "address": "127.0.0.1", "port": 0}],
        "upstreams": upstreams if upstreams is not None else [],
        "routes": routes if routes is not None else [],
    }
    cfg["limits"].update(limits or {})
    if origin is not None and upstreams is None:
        cfg["upstreams"] = [upstream("origin", [origin.address])]
    if routes is None:
        cfg["routes"] = [{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]
    cfg.update(top)
    return cfg


def json_access_log(cfg: dict, path: Path) -> dict:
    """Makes `cfg` write its access log to `path`, one JSON object per line."""
    cfg["log"]["access_log"] = str(path)
    cfg["log"]["access_format"] = "json"
    return cfg


def wait_access_entry(path: Path, target: str, timeout: float) -> dict | None:
    """The access-log entry (JSON format) whose request-target is `target`, waiting up to
    `timeout` seconds for it to be written; None if it is not there by then."""
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if entry["target"] == target:
                    return entry
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def upstream(name: str, nodes: list, **extra) -> dict:
    u = {"name": name, "nodes": list(nodes),
         "timeouts": {"connect": "2s", "send": "10s", "read": "10s"}, "retries": 2}
    u.update(extra)
    return u


def respond_route(name: str, paths: list, body: str, status: int = 200, **extra) -> dict:
    """A route answering with a static text body (handy to see which route matched)."""
    r = {"name": name, "match": {"paths": paths},
         "respond": {"status": status, "headers": {"content-type": "text/plain"}, "body": body}}
    for key, value in extra.items():
        if key in ("hosts", "methods", "headers"):
            r["match"][key] = value
        else:
            r[key] = value
    return r


def dump_yaml(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)


class TurnpikeError(AssertionError):
    pass


class Turnpike:
    """One turnpike process. Use the `turnpike` fixture, which always cleans up."""

    def __init__(self, binary: str, workdir: Path, config: dict, extra_args=()):
        self.binary = binary
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "turnpike.yaml"
        self.ready_path = self.dir / "ready.json"
        self.stderr_path = self.dir / "turnpike.stderr"
        self.stdout_path = self.dir / "turnpike.stdout"
        self.config = config
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, wait: bool = True) -> "Turnpike":
        self._write_config(self.config)
        if self.ready_path.exists():
            self.ready_path.unlink()
        args = [self.binary, "-c", str(self.config_path), "--ready-file", str(self.ready_path)] + self.extra_args
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None:
                return state
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise TurnpikeError(f"turnpike exited with {self.returncode} before it was ready\n{self.logs()}")
            time.sleep(0.02)
        raise TurnpikeError(f"turnpike not ready within {timeout}s (no {self.ready_path})\n{self.logs()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` s."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it did not exit in time)."""
        if not self.alive():
            self.returncode = self.proc.poll()
            return self.returncode
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Teardown: graceful stop (so sanitizer reports are written), then kill."""
        if self.proc is None:
            return
        if self.alive():
            if self.stop(timeout=10.0) is None:
                self.kill()

    # --- state -------------------------------------------------------------------------------

    def state(self) -> dict | None:
        """The ready-file's content, or None while it does not exist yet."""
        try:
            text = self.ready_path.read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            # Written with tmp + rename, so a partial file is a bug worth failing on.
            raise TurnpikeError(f"ready-file is not valid JSON ({e}): {text!r}")

    def port(self, listener: str = "public") -> int:
        state = self.state()
        addr = state["listeners"][listener]
        host, _, port = addr.rpartition(":")
        assert host in ("127.0.0.1", "[127.0.0.1]"), f"listener {listener} bound to {addr}"
        assert int(port) != 0, f"ready-file reports port 0 for {listener}"
        return int(port)

    def logs(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 5.0) -> str:
        """The error log once `pattern` (a regular expression) appears in it; the log is written
        asynchronously, so a line logged before the ready-file may still be on its way. Fails
        after `timeout` seconds with the log as it is."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.logs()
            if re.search(pattern, text) or time.monotonic() > deadline:
                assert re.search(pattern, text), f"no {pattern!r} in the log within {timeout}s:\n{text}"
                return text
            time.sleep(0.02)

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sanitizer_report(self) -> str | None:
        text = self.logs()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        return None

    # --- reload ------------------------------------------------------------------------------

    def _write_config(self, cfg) -> None:
        text = cfg if isinstance(cfg, str) else dump_yaml(cfg)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def reload(self, new_config, expect_ok: bool = True, timeout: float = RELOAD_TIMEOUT) -> dict:
        """Writes the new config, sends SIGHUP, waits until the ready-file shows the attempt
        processed and checks its outcome. Returns the new ready-file state."""
        before = self.state()
        self._write_config(new_config)
        if expect_ok:
            self.config = new_config
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        state = before
        while time.monotonic() < deadline:
            state = self.state()
            if state["reload_attempts"] > before["reload_attempts"]:
                break
            if not self.alive():
                raise TurnpikeError(f"turnpike died during reload\n{self.logs()}")
            time.sleep(0.01)
        else:
            raise TurnpikeError(f"reload not processed within {timeout}s; state {state}\n{self.logs()}")
        if expect_ok:
            if state["last_reload"] != "ok" or state["generation"] != before["generation"] + 1:
                raise TurnpikeError(f"reload should have succeeded: before {before}, after {state}\n{self.logs()}")
        else:
            if state["last_reload"] != "failed" or state["generation"] != before["generation"]:
                raise TurnpikeError(f"reload should have been refused: before {before}, after {state}\n{self.logs()}")
        return state


def check_config(binary: str, path: Path, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """`turnpike -t -c path`."""
    return subprocess.run([binary, "-t", "-c", str(path)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


ERROR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<message>.+)$", re.M)


# --- the admin listener's view of the upstreams (config with admin: {listen: 127.0.0.1:0}) -----

def admin_get(tp: Turnpike, path: str):
    """GET `path` on tp's admin listener (its address from the ready-file)."""
    _, _, port = tp.state()["admin"].rpartition(":")
    return rawhttp.request(int(port), "GET", path, timeout=10)


def upstream_nodes(tp: Turnpike, name: str = "app") -> dict:
    """Upstream `name`'s nodes on /upstreams, by address."""
    body = json.loads(admin_get(tp, "/upstreams").body)
    (up,) = [u for u in body["upstreams"] if u["name"] == name]
    return {n["address"]: n for n in up["nodes"]}


def wait_nodes(tp: Turnpike, want, timeout: float = 10.0, name: str = "app") -> dict:
    """Waits until /upstreams lists exactly the addresses `want` for upstream `name`; returns
    the nodes."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = upstream_nodes(tp, name)
        if set(nodes) == set(want):
            return nodes
        if time.monotonic() >= deadline:
            raise AssertionError(f"nodes {sorted(nodes)}, wanted {sorted(want)}\n{tp.logs()[-3000:]}")
        time.sleep(0.02)


class KeepaliveLoad:
    """Client threads doing keepalive GETs of /echo/load (the test origin) until stopped, at most
    100,000 each; counts the 200s in `ok` and lists every other outcome in `failures`."""

    def __init__(self, port, clients=3):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "load thread did not finish"

    def _client(self, tid):
        conn = None
        i = 0
        while not self.stop.is_set() and i < 100_000:
            i += 1
            try:
                if conn is None:
                    conn = rawhttp.HttpConn(self.port, timeout=5)
                resp = conn.request("GET", f"/echo/load?t={tid}&i={i}")
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append((time.monotonic(), f"{tid}/{i}: status {resp.status} {resp.body[:200]!r}"))
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failures.append((time.monotonic(), f"{tid}/{i}: {type(e).__name__}: {e}"))
                conn = None
            time.sleep(0.002)
        if conn:
            conn.close()

"""Reload (SIGHUP) under load without losing a request, refusal of a bad config, `turnpike -t`,
and log reopening (SIGUSR1)."""
import os
import signal
import time
from pathlib import Path

import rawhttp
from harness import REPO_ROOT, ERROR_LINE, KeepaliveLoad, base_config, check_config, dump_yaml

RELOADS = 20
CLIENTS = 4


def tagged_config(origin, tag: str) -> dict:
    """A config whose proxied responses carry `x-config: <tag>`."""
    routes = [{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin",
               "response_headers": {"set": {"x-config": tag}}}]
    return base_config(origin, routes=routes)


class Load(KeepaliveLoad):
    """CLIENTS threads doing keepalive GETs until stopped; every failure is recorded, and a
    response must come from one of the configs ("x-config" a or b)."""

    def __init__(self, port: int):
        super().__init__(port, clients=CLIENTS)

    def _client(self, tid: int) -> None:
        conn = None
        i = on_conn = 0
        while not self.stop.is_set():
            i += 1
            try:
                if conn is None:
                    conn = rawhttp.HttpConn(self.port, timeout=5)
                    on_conn = 0
                resp = conn.request("GET", f"/echo/load?t={tid}&i={i}")
                on_conn += 1
            except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
                with self.lock:
                    self.failures.append(f"thread {tid} request {i} (#{on_conn + 1} on its connection): "
                                         f"{type(e).__name__}: {e}")
                if conn:
                    conn.close()
                conn = None
                continue
            problem = None
            if resp.status != 200:
                problem = f"status {resp.status}: {resp.body[:200]!r}"
            elif resp.header("x-config") not in ("a", "b"):
                problem = f"x-config {resp.header_all('x-config')}"
            with self.lock:
                if problem:
                    self.failures.append(f"thread {tid} request {i}: {problem}")
                else:
                    self.ok += 1
            if resp.has_token("connection", "close"):
                conn.close()
                conn = None
        if conn:
            conn.close()


def config_tag(port: int) -> str:
    resp = rawhttp.request(port, "GET", "/echo/probe")
    assert resp.status == 200, resp
    return resp.header("x-config")


def test_reloads_under_load_lose_no_request_and_apply_new_config(origin, turnpike):
    tp = turnpike(tagged_config(origin, "a"))
    assert tp.state()["generation"] == 1
    assert tp.state()["reload_attempts"] == 0
    assert tp.state()["last_reload"] == "none"
    port = tp.port()
    assert config_tag(port) == "a"
    with Load(port) as load:
        time.sleep(0.5)
        for n in range(1, RELOADS + 1):
            tag = "b" if n % 2 else "a"
            state = tp.reload(tagged_config(origin, tag))
            assert state["generation"] == 1 + n
            assert state["reload_attempts"] == n
            assert tp.port() == port, "a reload with the same listeners must keep the port"
            assert config_tag(port) == tag, f"reload {n}: new connections still see the old config"
            time.sleep(0.5)
    assert not load.failures, f"{len(load.failures)} failed requests during reloads (ok {load.ok}):\n" + \
        "\n".join(load.failures[:20])
    assert load.ok > 100, f"only {load.ok} requests: the load did not run"
    assert tp.alive()


def test_bad_config_reload_is_refused_and_old_config_keeps_serving(origin, turnpike):
    tp = turnpike(tagged_config(origin, "a"))
    bad = tagged_config(origin, "b")
    bad["routes"][0]["upstream"] = "no-such-upstream"
    state = tp.reload(bad, expect_ok=False)
    assert state["last_reload"] == "failed"
    assert state["generation"] == 1
    assert state["reload_attempts"] == 1
    assert config_tag(tp.port()) == "a"
    # A good config after the bad one still applies.
    state = tp.reload(tagged_config(origin, "b"))
    assert state["generation"] == 2
    assert state["last_reload"] == "ok"
    assert config_tag(tp.port()) == "b"


def test_unparsable_config_reload_is_refused(origin, turnpike):
    tp = turnpike(tagged_config(origin, "a"))
    state = tp.reload("routes: [unclosed\n  - :\n", expect_ok=False)
    assert state["generation"] == 1
    assert config_tag(tp.port()) == "a"


BAD_CONFIG = """\
workers: 2
listeners:
  - name: public
    address: 127.0.0.1
    port: 0
upstreams:
  - name: app
    nodes: ["127.0.0.1:9"]
routes:
  - name: broken
    match:
      paths: ["/*"]
    upstream: nope
"""


def test_check_mode_reports_file_and_line_for_bad_config(turnpike_bin, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG)
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result
    errors = [m for m in ERROR_LINE.finditer(result.stderr) if Path(m["file"]).name == "bad.yaml"]
    assert errors, f"no 'file:line: message' in stderr: {result.stderr!r}"
    lines = BAD_CONFIG.splitlines()
    route_line = lines.index("  - name: broken") + 1
    upstream_line = lines.index("    upstream: nope") + 1
    assert any(route_line <= int(m["line"]) <= upstream_line for m in errors), \
        f"error should point at lines {route_line}-{upstream_line}: {result.stderr!r}"


def test_check_mode_reports_line_of_yaml_syntax_error(turnpike_bin, tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("workers: 2\nlisteners:\n  - name: public\n    port: [0\n")
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result
    assert any(Path(m["file"]).name == "syntax.yaml" for m in ERROR_LINE.finditer(result.stderr)), result.stderr


def test_check_mode_accepts_valid_config(turnpike_bin, tmp_path, origin):
    path = tmp_path / "good.yaml"
    path.write_text(dump_yaml(tagged_config(origin, "a")))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 0, result.stderr


def test_check_mode_accepts_shipped_example_config(turnpike_bin):
    result = check_config(turnpike_bin, REPO_ROOT / "conf" / "turnpike.yaml")
    assert result.returncode == 0, result.stderr


def test_sigusr1_reopens_access_log(origin, turnpike, tmp_path):
    log = tmp_path / "access.log"
    cfg = base_config(origin)
    cfg["log"]["access_log"] = str(log)
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/echo/before-rotate").status == 200
    wait_for(lambda: log.exists() and b"before-rotate" in log.read_bytes(), "first request logged")
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)
    tp.signal(signal.SIGUSR1)
    # The signal is handled asynchronously: keep sending until a request lands in the new file.
    deadline = time.monotonic() + 5.0
    n = 0
    while not (log.exists() and b"after-rotate" in log.read_bytes()):
        assert time.monotonic() < deadline, "no request logged to a new access.log after SIGUSR1"
        n += 1
        assert rawhttp.request(tp.port(), "GET", f"/echo/after-rotate-{n}").status == 200
        time.sleep(0.1)
    assert tp.alive()


def wait_for(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")

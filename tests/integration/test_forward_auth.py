"""forward-auth in the real binary against a real checker (a Python HTTP/1.1 server in a thread
of the test): allow with upstream_headers copied, deny with the checker's status, body and
client_headers, checker timeouts and refused connections in both failure modes (fail-opens
counted in a shared dictionary and logged), sample_ratio 0, schema errors, and the worker
serving other requests while the checker is slow."""
from __future__ import annotations

import concurrent.futures
import http.server
import json
import threading
import time
from pathlib import Path

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE
from origin import closed_port

PLUGINS = Path(__file__).resolve().parent / "plugins"
HOLD_SECONDS = 10  # the longest the checker holds a /slow check before answering anyway


class Checker:
    """The authorization service. It judges by X-Forwarded-Uri: a path with "deny" gets 403,
    one with "slow" is held until release() (or HOLD_SECONDS), anything else 200 with
    X-User-Id: alice."""

    def __init__(self):
        self.requests: list[dict] = []
        self.released = threading.Event()
        self.lock = threading.Lock()
        checker = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so the gateway's pool is used

            def do_GET(self):
                headers = {k.lower(): v for k, v in self.headers.items()}
                with checker.lock:
                    checker.requests.append({"path": self.path, "headers": headers,
                                             "peer": self.client_address[1]})
                uri = headers.get("x-forwarded-uri", "")
                if "slow" in uri:
                    checker.released.wait(HOLD_SECONDS)
                if "deny" in uri:
                    self.answer(403, b'{"denied":true}', [("Content-Type", "application/json"),
                                                           ("WWW-Authenticate", 'Bearer realm="api"'),
                                                           ("X-Not-Copied", "1")])
                else:
                    self.answer(200, b"", [("X-User-Id", "alice"), ("X-Not-Copied", "1")])

            def do_POST(self):
                # A check that carries the first bytes of the request body (body_bytes).
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with checker.lock:
                    checker.requests.append({"path": self.path, "headers": headers, "body": body,
                                             "peer": self.client_address[1]})
                if b"attack" in body:
                    self.answer(403, b'{"waf":"blocked"}', [("Content-Type", "application/json")])
                else:
                    self.answer(200, b"", [("X-User-Id", "alice")])

            def answer(self, status, body, headers):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/check"

    def seen(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def release(self):
        self.released.set()

    def stop(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def checker():
    c = Checker()
    yield c
    c.stop()


def config(origin, conf, **top):
    routes = [{"name": "guarded", "match": {"paths": ["/g/*"]}, "upstream": "origin",
               "plugins": {"forward-auth": conf}},
              {"name": "count", "match": {"paths": ["/count"]}, "upstream": "origin",
               "plugins": {"dict-reader": {"dict": "auth", "key": "forward-auth:fail_open:guarded"}}},
              {"name": "open", "match": {"paths": ["/*"]}, "upstream": "origin"}]
    cfg = base_config(origin, routes=routes, **top)
    cfg["plugin_paths"] = [str(PLUGINS)]
    cfg["shared_dicts"] = {"auth": "1m"}
    return cfg


def get(tp, target, headers=None):
    return rawhttp.request(tp.port(), "GET", target, headers=headers or [])


def upstream_saw(resp):
    assert resp.status == 200, resp
    return {n.lower(): v for n, v in resp.json()["headers"]}


# ---- the checker's answer ---------------------------------------------------------------------

def test_allowed_request_reaches_the_upstream_with_the_checkers_headers(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url, "upstream_headers": ["X-User-Id", "X-Missing"],
                                  "request_headers": ["Authorization"]}))
    resp = get(tp, "/g/echo/ok?x=1", headers=[("Authorization", "Bearer t"), ("Cookie", "c=1"),
                                               ("X-User-Id", "mallory"), ("X-Missing", "spoofed")])
    seen = upstream_saw(resp)
    assert seen["x-user-id"] == "alice"    # the checker's value, not the client's
    assert "x-missing" not in seen         # the checker sent none: the client's is removed
    assert "x-not-copied" not in seen
    [call] = checker.seen()
    h = call["headers"]
    assert call["path"] == "/check"
    assert h["authorization"] == "Bearer t"
    assert "cookie" not in h               # not in request_headers
    assert h["x-forwarded-method"] == "GET"
    assert h["x-forwarded-uri"] == "/g/echo/ok?x=1"
    assert h["x-forwarded-host"] == "test.local"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-for"] == "127.0.0.1"


def test_body_bytes_sends_the_first_bytes_of_the_body_to_the_checker(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url, "body_bytes": 1000}))
    body = b"clean data " * 50_000  # 550 KB: longer than body_bytes
    resp = rawhttp.request(tp.port(), "POST", "/g/sink/up", body=body)
    assert resp.status == 200, resp
    assert resp.json()["body_len"] == len(body)  # the upstream still gets all of it
    [call] = checker.seen()
    assert call["body"] == body[:1000]
    assert call["headers"]["x-forwarded-body-truncated"] == "true"
    assert call["headers"]["x-forwarded-method"] == "POST"
    # A short body goes whole (not truncated); what the checker judges by is in it.
    resp = rawhttp.request(tp.port(), "POST", "/g/sink/attack", body=b"an attack payload")
    assert resp.status == 403 and resp.json() == {"waf": "blocked"}
    assert all(r.path != "/g/sink/attack" for r in origin.snapshot())
    last = checker.seen()[-1]
    assert last["body"] == b"an attack payload"
    assert "x-forwarded-body-truncated" not in last["headers"]
    # A request without a body is still checked with a GET.
    assert get(tp, "/g/echo/nobody").status == 200
    assert "body" not in checker.seen()[-1]


def test_denial_answers_with_the_checkers_status_body_and_client_headers(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url, "client_headers": ["WWW-Authenticate"]}))
    origin.reset()
    resp = get(tp, "/g/deny")
    assert resp.status == 403
    assert resp.json() == {"denied": True}
    assert resp.header("content-type") == "application/json"
    assert resp.header("www-authenticate") == 'Bearer realm="api"'
    assert resp.header("x-not-copied") is None
    assert not [r for r in origin.snapshot() if r.path == "/g/deny"]


def test_checker_connections_are_kept_alive(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url}, workers=1))
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(5):
            assert conn.request("GET", "/g/echo/again").status == 200
    seen = checker.seen()
    assert len(seen) == 5
    assert len({c["peer"] for c in seen}) == 1  # one connection carried every check


# ---- checker failures ---------------------------------------------------------------------------

def assert_unavailable(resp, status=503):
    assert resp.status == status, resp
    assert resp.json()["error"] == "auth_unavailable"


def test_timeout_fail_closed_denies(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url, "timeout": 0.2}))
    assert_unavailable(get(tp, "/g/slow"))
    tp.wait_log("forward-auth: checker .* failed \\(timeout\\); request denied \\(fail_closed\\)")


def test_timeout_fail_open_passes_counts_and_logs(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url, "timeout": 0.2, "failure_mode": "fail_open",
                                  "counter_dict": "auth"}))
    assert get(tp, "/g/echo/slow-1").status == 200
    assert get(tp, "/g/echo/slow-2").status == 200
    assert get(tp, "/count").body == b"2"
    tp.wait_log("forward-auth: checker .* failed \\(timeout\\); request let through \\(fail_open\\)")


def test_checker_down_fail_closed_uses_failure_status(origin, turnpike):
    tp = turnpike(config(origin, {"uri": f"http://127.0.0.1:{closed_port()}/check", "failure_status": 500}))
    assert_unavailable(get(tp, "/g/echo/x"), 500)
    tp.wait_log("failed \\(connect failed: .*request denied")


def test_checker_down_fail_open_passes_and_counts(origin, turnpike):
    tp = turnpike(config(origin, {"uri": f"http://127.0.0.1:{closed_port()}/check", "failure_mode": "fail_open",
                                  "counter_dict": "auth"}))
    assert get(tp, "/g/echo/x").status == 200
    assert get(tp, "/count").body == b"1"
    tp.wait_log("failed \\(connect failed: .*request let through")


def test_sample_ratio_zero_never_calls_the_checker(origin, checker, turnpike):
    tp = turnpike(config(origin, {"uri": checker.url, "sample_ratio": 0}))
    for _ in range(5):
        assert get(tp, "/g/deny").status == 200
    assert checker.seen() == []


# ---- the worker is not blocked -------------------------------------------------------------------

def test_other_requests_are_served_while_the_checker_is_slow(origin, checker, turnpike):
    # One worker: the slow check and the other requests share its event loop.
    tp = turnpike(config(origin, {"uri": checker.url, "timeout": 10}, workers=1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(get, tp, "/g/echo/slow")
        deadline = time.monotonic() + 5
        while not checker.seen() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checker.seen(), "the checker never got the slow request"
        # The check is held; the worker keeps answering.
        statuses = [get(tp, f"/echo/other-{i}").status for i in range(5)]
        assert statuses == [200] * 5
        assert not slow.done()
        checker.release()
        assert slow.result(timeout=10).status == 200


# ---- configuration ---------------------------------------------------------------------------------

def test_schema_errors(origin, turnpike_bin, tmp_path):
    cfg = config(origin, {"uri": "ftp://auth/check", "failure_mode": "open", "sample_ratio": 2, "bogus": 1})
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(cfg))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    msgs = [m.group("message") for m in ERROR_LINE.finditer(out.stderr)]
    prefix = 'route "guarded": plugin "forward-auth": '
    assert prefix + 'conf.uri: does not match the pattern "^https?://[^/?#]+"' in msgs, msgs
    assert prefix + 'conf.failure_mode: expected one of "fail_open", "fail_closed", got "open"' in msgs, msgs
    assert any(m.startswith(prefix + "conf.sample_ratio: ") for m in msgs), msgs
    assert prefix + "conf.bogus: unknown property" in msgs, msgs
    missing = config(origin, {})
    path.write_text(dump_yaml(missing))
    out = check_config(turnpike_bin, path)
    assert prefix + "conf.uri: required" in [m.group("message") for m in ERROR_LINE.finditer(out.stderr)], out.stderr

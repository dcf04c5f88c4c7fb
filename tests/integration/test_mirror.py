"""proxy-mirror and turnpike.mirror in the real binary against a real mirror target (a Python
HTTP/1.1 server in a thread of the test): what the copy carries (method, target, headers,
marker, body), sampling, a slow and a dead target leaving the client's requests untouched, a
full queue dropping and counting, bodies over max_body skipped or truncated, comparison mode
(statuses, and bodies by CRC-32 with the primary's Content-Length kept), and schema errors. Counters are read through the mirror-stats test plugin (one worker, so one
queue per route)."""
from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE, upstream
from origin import closed_port, pattern_chunks
from test_metrics import scrape, value

import pytest

PLUGINS = Path(__file__).resolve().parent / "plugins"
HOLD_SECONDS = 5  # a /slow copy is held this long (or until release) before the target answers


class MirrorTarget:
    """Records every copy it gets. A path with "slow" is held HOLD_SECONDS (or until release());
    one with "differ" is answered 500, anything else 200. /bytes/<n> and /chunked/<n> answer the
    origin's pattern bytes as the origin does (Content-Length, chunked), with the last byte
    changed when the query has "flip"; anything else answers "ok"."""

    def __init__(self):
        self.requests: list[dict] = []
        self.released = threading.Event()
        self.lock = threading.Lock()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else None
                with target.lock:
                    target.requests.append({"method": self.command, "path": self.path, "body": body,
                                            "headers": {k.lower(): v for k, v in self.headers.items()}})
                if "slow" in self.path:
                    target.released.wait(HOLD_SECONDS)
                status = 500 if "differ" in self.path else 200
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                if parts[0] in ("bytes", "chunked") and len(parts) == 2:
                    body = bytearray(b"".join(bytes(p) for p in pattern_chunks(int(parts[1]))))
                    if "flip" in query and body:
                        body[-1] ^= 0xFF
                    self.send_response(status)
                    if parts[0] == "chunked":
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for i in range(0, len(body), 30000):
                            piece = bytes(body[i:i + 30000])
                            self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(bytes(body))
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def seen(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.seen()) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.seen()

    def release(self):
        self.released.set()

    def stop(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target():
    t = MirrorTarget()
    yield t
    t.stop()


def config(origin, conf, other=None):
    """Route "m" (/m/*) mirrors with `conf`; "other" (/o/*) with `other` when given; /stats/<r>
    reads route r's queue counters."""
    routes = [{"name": "m", "match": {"paths": ["/m/*"]}, "upstream": "origin",
               "plugins": {"proxy-mirror": conf}}]
    if other is not None:
        routes.append({"name": "other", "match": {"paths": ["/o/*"]}, "upstream": "origin",
                       "plugins": {"proxy-mirror": other}})
    for r in ("m", "other"):
        routes.append({"name": f"stats-{r}", "match": {"paths": [f"/stats/{r}"]}, "upstream": "origin",
                       "plugins": {"mirror-stats": {"queue": f"proxy-mirror:{r}"}}})
    cfg = base_config(origin, routes=routes, workers=1)
    cfg["plugin_paths"] = [str(PLUGINS)]
    return cfg


def stats(tp, route="m"):
    resp = rawhttp.request(tp.port(), "GET", f"/stats/{route}")
    assert resp.status == 200, resp
    return resp.json()


def wait_stats(tp, done, route="m", timeout=10.0):
    """Polls the counters until done(stats) or the timeout; returns the last ones."""
    deadline = time.monotonic() + timeout
    s = stats(tp, route)
    while not done(s) and time.monotonic() < deadline:
        time.sleep(0.02)
        s = stats(tp, route)
    return s


# ---- what the copy carries -------------------------------------------------------------------

def test_copy_has_method_target_headers_marker_and_body(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri}))
    resp = rawhttp.request(tp.port(), "POST", "/m/sink/a?x=1&y=2", headers=[("X-Custom", "v1")], body=b"hello body")
    assert resp.status == 200, resp
    assert resp.json()["body_len"] == 10  # the primary still gets the body
    [copy] = target.wait_for(1)
    assert copy["method"] == "POST"
    assert copy["path"] == "/m/sink/a?x=1&y=2"
    assert copy["headers"]["x-custom"] == "v1"
    assert copy["headers"]["host"] == "test.local"
    assert copy["headers"]["x-mirrored-by"] == "turnpike"
    assert copy["body"] == b"hello body"
    assert "x-mirror-body-truncated" not in copy["headers"]
    # A request without a body is copied without one; the marker is configurable.
    s = wait_stats(tp, lambda s: s["sent"] == 1)
    assert s["queued"] == 1 and s["sent"] == 1 and s["failed"] == 0 and s["dropped"] == 0


def test_marker_header_is_configurable_and_bodiless_requests_copy_without_body(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri, "marker_header": "X-Shadow", "marker_value": "yes"}))
    assert rawhttp.request(tp.port(), "GET", "/m/echo/plain").status == 200
    [copy] = target.wait_for(1)
    assert copy["method"] == "GET" and copy["body"] is None
    assert copy["headers"]["x-shadow"] == "yes"
    assert "x-mirrored-by" not in copy["headers"]


# ---- sampling ------------------------------------------------------------------------------------

def test_sample_ratio_zero_one_and_half(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri, "sample_ratio": 0},
                         other={"uri": target.uri, "sample_ratio": 0.5, "timeout": 10}))
    n = 400
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(20):
            assert conn.request("GET", f"/m/echo/zero-{i}").status == 200
        for i in range(n):
            assert conn.request("GET", f"/o/echo/half-{i}").status == 200
    assert stats(tp, "m") is None  # ratio 0: no copy was ever offered (no queue was made)
    s = wait_stats(tp, lambda s: s["sent"] + s["failed"] == s["queued"], route="other")
    # Binomial(400, 0.5): sd 10; 140..260 is six sd either side.
    assert 140 <= s["queued"] <= 260, s
    assert s["dropped"] == 0
    got = target.wait_for(s["queued"], timeout=20)
    assert len(got) == s["queued"]
    assert not [c for c in got if "zero" in c["path"]]
    tp2 = turnpike(config(origin, {"uri": target.uri, "sample_ratio": 1, "timeout": 10}))
    with rawhttp.HttpConn(tp2.port()) as conn:
        for i in range(30):
            assert conn.request("GET", f"/m/echo/all-{i}").status == 200
    assert wait_stats(tp2, lambda s: s["sent"] == 30)["queued"] == 30


# ---- a slow or dead target does not touch the client's requests -------------------------------

def test_slow_mirror_does_not_slow_the_primary(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri, "timeout": 10, "concurrency": 4}))
    times = []
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(20):
            start = time.monotonic()
            assert conn.request("GET", f"/m/echo/slow-{i}").status == 200
            times.append(time.monotonic() - start)
    # The target holds every copy it got (4 at a time) for HOLD_SECONDS; none answered yet.
    assert len(target.wait_for(4)) == 4
    s = stats(tp)
    assert s["sent"] == 0 and s["in_flight"] == 4 and s["waiting"] == 16, s
    assert max(times) < 0.5, times
    assert sum(times) < 2.0, times
    target.release()
    s = wait_stats(tp, lambda s: s["sent"] == 20)
    assert s["sent"] == 20 and s["waiting"] == 0 and s["in_flight"] == 0, s


def test_dead_mirror_causes_no_client_errors(origin, turnpike):
    tp = turnpike(config(origin, {"uri": f"http://127.0.0.1:{closed_port()}", "timeout": 1}))
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(20):
            resp = conn.request("POST", f"/m/sink/dead-{i}", body=b"x" * 100)
            assert resp.status == 200, resp
    s = wait_stats(tp, lambda s: s["failed"] == 20)
    assert s["failed"] == 20 and s["sent"] == 0 and s["in_flight"] == 0, s


def test_full_queue_drops_and_counts(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri, "queue_size": 2, "concurrency": 1, "timeout": 10}))
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(10):
            start = time.monotonic()
            assert conn.request("GET", f"/m/echo/slow-{i}").status == 200
            assert time.monotonic() - start < 0.5
    assert len(target.wait_for(1)) == 1
    s = stats(tp)
    # One copy in flight, two waiting, the other seven dropped at once.
    assert s["in_flight"] == 1 and s["waiting"] == 2, s
    assert s["queued"] == 3 and s["dropped"] == 7, s
    target.release()
    s = wait_stats(tp, lambda s: s["sent"] == 3)
    assert s["sent"] == 3 and s["waiting"] == 0, s
    assert len(target.seen()) == 3


def test_waiting_copies_do_not_hold_the_shutdown(origin, target, turnpike):
    # One copy held by the target (ended by its 1 s timeout), nineteen waiting: a stop drops
    # them instead of sending them one by one (about 19 s with concurrency 1).
    tp = turnpike(config(origin, {"uri": target.uri, "queue_size": 100, "concurrency": 1, "timeout": 1}))
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(20):
            assert conn.request("GET", f"/m/echo/slow-{i}").status == 200
    assert len(target.wait_for(1)) == 1
    assert stats(tp)["waiting"] == 19
    start = time.monotonic()
    assert tp.stop(timeout=10) == 0
    assert time.monotonic() - start < 4
    assert len(target.seen()) == 1


# ---- bodies over max_body ---------------------------------------------------------------------------

def test_body_over_max_body_is_skipped_and_counted(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri, "max_body": 10}))
    resp = rawhttp.request(tp.port(), "POST", "/m/sink/big", body=b"b" * 100)
    assert resp.status == 200 and resp.json()["body_len"] == 100
    resp = rawhttp.request(tp.port(), "POST", "/m/sink/small", body=b"s" * 10)
    assert resp.status == 200
    [copy] = target.wait_for(1)
    assert copy["path"] == "/m/sink/small" and copy["body"] == b"s" * 10
    s = wait_stats(tp, lambda s: s["sent"] == 1)
    assert s["skipped"] == 1 and s["queued"] == 1, s
    time.sleep(0.2)
    assert len(target.seen()) == 1  # the big one never went


def test_body_over_max_body_is_truncated_and_marked(origin, target, turnpike):
    tp = turnpike(config(origin, {"uri": target.uri, "max_body": 10, "body_overflow": "truncate"}))
    body = bytes(range(256)) * 400  # 100 KiB
    resp = rawhttp.request(tp.port(), "PUT", "/m/sink/big", body=body)
    assert resp.status == 200 and resp.json()["body_len"] == len(body)  # the primary gets all of it
    [copy] = target.wait_for(1)
    assert copy["method"] == "PUT"
    assert copy["body"] == body[:10]
    assert copy["headers"]["x-mirror-body-truncated"] == "true"
    assert copy["headers"]["content-length"] == "10"


# ---- comparison mode --------------------------------------------------------------------------------

def test_compare_counts_status_differences(origin, target, turnpike):
    # (A generous timeout: a copy that times out on a loaded CI machine is not compared.)
    tp = turnpike(config(origin, {"uri": target.uri, "compare": True, "timeout": 10},
                         other={"uri": target.uri, "timeout": 10}))
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(6):
            assert conn.request("GET", f"/m/echo/same-{i}").status == 200
        for i in range(4):
            assert conn.request("GET", f"/m/echo/differ-{i}").status == 200
        assert conn.request("GET", "/o/echo/differ-x").status == 200
    s = wait_stats(tp, lambda s: s["sent"] == 10)
    assert s["compared"] == 10 and s["differed"] == 4, s
    o = wait_stats(tp, lambda s: s["sent"] == 1, route="other")
    assert o["compared"] == 0 and o["differed"] == 0, o  # compare is off there


def test_compare_counts_body_differences_and_keeps_the_primarys_framing(origin, target, turnpike):
    # Route "b" mirrors the origin's pattern endpoints, which the target answers with the same
    # bytes (or the last one flipped); "other" compares statuses only.
    conf = {"uri": target.uri, "compare": True, "timeout": 10}
    cfg = config(origin, {"uri": target.uri}, other={"uri": target.uri, "compare": True, "compare_body": False,
                                                     "timeout": 10})
    cfg["routes"].insert(0, {"name": "b", "match": {"paths": ["/bytes/*", "/chunked/*"]}, "upstream": "origin",
                             "plugins": {"proxy-mirror": conf}})
    cfg["routes"].append({"name": "stats-b", "match": {"paths": ["/stats/b"]}, "upstream": "origin",
                          "plugins": {"mirror-stats": {"queue": "proxy-mirror:b"}}})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    tp = turnpike(cfg)
    expected = {"/bytes/100000": False, "/chunked/70000": False, "/bytes/0": False,
                "/bytes/5000?flip=1": True, "/chunked/3000?flip=1": True}
    with rawhttp.HttpConn(tp.port()) as conn:
        for target_path in expected:
            resp = conn.request("GET", target_path)
            n = int(target_path.split("?")[0].rsplit("/", 1)[1])
            assert resp.status == 200 and resp.body == b"".join(bytes(p) for p in pattern_chunks(n)), target_path
            if target_path.startswith("/bytes/"):
                # The observing body filter leaves the primary's length alone: no chunking.
                assert resp.header("content-length") == str(n), resp.headers
                assert resp.header("transfer-encoding") is None, resp.headers
        assert conn.request("GET", "/o/echo/x").status == 200
    s = wait_stats(tp, lambda s: s["sent"] == len(expected), route="b")
    assert s["compared"] == len(expected) and s["differed"] == 0, s
    assert s["body_compared"] == len(expected), s
    assert s["body_differed"] == sum(expected.values()), s
    o = wait_stats(tp, lambda s: s["sent"] == 1, route="other")
    assert o["compared"] == 1 and o["body_compared"] == 0, o  # compare_body is off there
    # The queues' outcomes on /metrics.
    samples = scrape(tp)
    name = "turnpike_plugin_mirror_queue_copies_total"
    for result, n in {"sent": 5, "status_same": 5, "body_same": 3, "body_differed": 2}.items():
        assert value(samples, name, queue="proxy-mirror:b", result=result) == n, (result, samples)
    assert value(samples, name, queue="proxy-mirror:other", result="status_same") == 1
    assert value(samples, name, queue="proxy-mirror:other", result="body_same") == 0


# ---- configuration ----------------------------------------------------------------------------------

def test_schema_errors(origin, turnpike_bin, tmp_path):
    cfg = config(origin, {"uri": "https://m:1/x", "sample_ratio": 1.5, "body_overflow": "cut",
                          "queue_size": 0, "concurrency": 0, "timeout": 0, "bogus": 1})
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(cfg))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    msgs = [m.group("message") for m in ERROR_LINE.finditer(out.stderr)]
    prefix = 'route "m": plugin "proxy-mirror": '
    assert prefix + 'conf.uri: does not match the pattern "^http://[^/?#]+/?$"' in msgs, msgs
    assert prefix + 'conf.body_overflow: expected one of "skip", "truncate", got "cut"' in msgs, msgs
    for key in ("sample_ratio", "queue_size", "concurrency", "timeout"):
        assert any(m.startswith(prefix + f"conf.{key}: ") for m in msgs), (key, msgs)
    assert prefix + "conf.bogus: unknown property" in msgs, msgs
    for conf in ({}, {"uri": "http://127.0.0.1:1", "upstream": "origin"}):
        path.write_text(dump_yaml(config(origin, conf)))
        out = check_config(turnpike_bin, path)
        assert out.returncode != 0, out
        assert "exactly one of uri and upstream is required" in out.stderr, out.stderr


def test_mirror_to_a_configured_upstream_goes_round_robin_to_its_nodes(origin, target, turnpike):
    second = MirrorTarget()
    try:
        cfg = config(origin, {"upstream": "recorder", "timeout": 10})
        cfg["upstreams"].append(upstream("recorder", [target.uri[len("http://"):],
                                                      second.uri[len("http://"):]]))
        tp = turnpike(cfg)
        with rawhttp.HttpConn(tp.port()) as conn:
            for i in range(6):
                assert conn.request("GET", f"/m/echo/up-{i}").status == 200
        first_got = target.wait_for(3, timeout=10)
        second_got = second.wait_for(3, timeout=10)
        assert len(first_got) == 3 and len(second_got) == 3
        paths = sorted(c["path"] for c in first_got + second_got)
        assert paths == sorted(f"/m/echo/up-{i}" for i in range(6))
        assert all(c["headers"]["x-mirrored-by"] == "turnpike" for c in first_got + second_got)
    finally:
        second.stop()


def test_mirror_to_an_upstream_that_is_not_plain_http1_mirrors_nothing(origin, target, turnpike):
    cfg = config(origin, {"upstream": "h2only", "timeout": 10})
    cfg["upstreams"].append(upstream("h2only", [target.uri[len("http://"):]], protocol="h2c"))
    tp = turnpike(cfg)
    for i in range(3):
        assert rawhttp.request(tp.port(), "GET", f"/m/echo/no-{i}").status == 200  # the client is served
    assert target.wait_for(1, timeout=1) == []
    assert "is not a plain HTTP/1.1 upstream" in tp.logs()

"""The admin listener in the real binary: /metrics (request, upstream, plugin and limit series,
the series cap), the bearer token, /healthz and /ready with maintenance, /status, /upstreams,
/config (redacted), POST /reload with its errors as JSON; and a real Prometheus server scraping
Turnpike, queried over its HTTP API."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import rawhttp
from harness import ERROR_LINE, base_config, check_config, dump_yaml, upstream

PLUGINS = Path(__file__).resolve().parent / "plugins"
TOKEN = "s3cret-admin-token"


def admin_cfg(origin, routes=None, **admin):
    cfg = base_config(origin, routes=routes)
    cfg["admin"] = {"listen": "127.0.0.1:0", **admin}
    return cfg


def admin_port(tp) -> int:
    addr = tp.state()["admin"]
    host, _, port = addr.rpartition(":")
    assert host == "127.0.0.1" and int(port) != 0, addr
    return int(port)


def admin(tp, method, path, token=None, timeout=10.0):
    headers = [("Authorization", f"Bearer {token}")] if token else []
    return rawhttp.request(admin_port(tp), method, path, headers=headers, timeout=timeout)


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(tp, token=None) -> dict:
    """{(name, frozenset(labels)): value} of one /metrics answer."""
    resp = admin(tp, "GET", "/metrics", token)
    assert resp.status == 200, resp
    assert resp.header("content-type").startswith("text/plain; version=0.0.4")
    out = {}
    for line in resp.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group("labels") or ""))
        out[(m.group("name"), labels)] = float(m.group("value"))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_settled(tp, settled, timeout=5.0) -> dict:
    """A scrape once settled(samples) holds, or the last one after timeout. What a request
    counts after its last byte has gone out (its log phase, the end of its in-flight count)
    can trail the client's read of that byte by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(tp)
        if settled(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.02)


def route(name, paths, upstream_name="origin", **extra):
    return {"name": name, "match": {"paths": paths}, "upstream": upstream_name, **extra}


# ---- /metrics -----------------------------------------------------------------------------------

def test_requests_are_counted_by_route_method_and_status(origin, turnpike):
    tp = turnpike(admin_cfg(origin, [route("api", ["/api/*"]), route("web", ["/web/*"])]))
    for _ in range(7):
        assert rawhttp.request(tp.port(), "GET", "/api/x").status == 200
    for _ in range(3):
        assert rawhttp.request(tp.port(), "POST", "/web/y", body=b"hello").status == 200
    assert rawhttp.request(tp.port(), "GET", "/nowhere").status == 404
    m = scrape_settled(tp, lambda m: value(m, "turnpike_http_requests_total", route="api", method="read", code="200")
                       + value(m, "turnpike_http_requests_total", route="web", method="write", code="200")
                       + value(m, "turnpike_http_requests_total", route="(unmatched)", method="read", code="404") == 11
                       and value(m, "turnpike_upstream_requests_in_flight", upstream="origin") == 0)
    assert value(m, "turnpike_http_requests_total", route="api", method="read", code="200") == 7
    assert value(m, "turnpike_http_requests_total", route="web", method="write", code="200") == 3
    assert value(m, "turnpike_http_requests_total", route="(unmatched)", method="read", code="404") == 1
    assert value(m, "turnpike_http_request_duration_seconds_count", route="api") == 7
    assert value(m, "turnpike_http_request_duration_seconds_bucket", route="api", le="+Inf") == 7
    assert value(m, "turnpike_http_request_body_bytes_total", route="web") == 15
    assert value(m, "turnpike_upstream_response_duration_seconds_count", upstream="origin") == 10
    assert value(m, "turnpike_upstream_requests_in_flight", upstream="origin") == 0
    assert value(m, "turnpike_connections_accepted_total", listener="public") == 11
    assert value(m, "turnpike_gateway_responses_total", outcome="no_route") == 1
    assert value(m, "turnpike_config_generation") == 1
    build = [labels for (name, labels) in m if name == "turnpike_build_info"]
    assert len(build) == 1 and dict(build[0])["version"] and dict(build[0])["commit"]


def test_upstream_failures_by_kind(origin, turnpike):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now: connections are refused
    ups = [upstream("origin", [origin.address]), upstream("dead", [f"127.0.0.1:{dead_port}"], retries=0)]
    cfg = admin_cfg(origin, [route("down", ["/down/*"], "dead"), route("all", ["/*"])])
    cfg["upstreams"] = ups
    tp = turnpike(cfg)
    for _ in range(2):
        assert rawhttp.request(tp.port(), "GET", "/down/x").status == 502
    m = scrape(tp)
    assert value(m, "turnpike_upstream_failures_total", upstream="dead", kind="upstream_connect_failed") == 2
    assert value(m, "turnpike_http_requests_total", route="down", method="read", code="502") == 2
    assert value(m, "turnpike_upstream_connect_duration_seconds_count", upstream="dead") == 2


def test_plugin_errors_and_budget_cutoffs_by_plugin(origin, turnpike):
    routes = [route("raise", ["/raise/*"], plugins={"raiser": {}}), route("loop", ["/loop/*"], plugins={"looper": {}})]
    cfg = admin_cfg(origin, routes)
    cfg["plugin_paths"] = [str(PLUGINS)]
    cfg["lua"] = {"instruction_budget": 100000}
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/raise/x", headers=[("X-Raise", "1")]).status == 500
    assert rawhttp.request(tp.port(), "GET", "/loop/x").status == 500
    m = scrape(tp)
    assert value(m, "turnpike_plugin_errors_total", plugin="raiser") == 1
    assert value(m, "turnpike_plugin_budget_cutoffs_total", plugin="raiser") == 0
    assert value(m, "turnpike_plugin_errors_total", plugin="looper") == 1
    assert value(m, "turnpike_plugin_budget_cutoffs_total", plugin="looper") == 1


def test_series_cap_folds_extra_routes_into_overflow(origin, turnpike):
    # Cap 16: "(unmatched)" and r0..r14 get series; r15..r19 share "(overflow)".
    routes = [route(f"r{i}", [f"/r{i}/*"]) for i in range(20)]
    tp = turnpike(admin_cfg(origin, routes, series_cap=16))
    for i in (0, 14, 15, 19):
        assert rawhttp.request(tp.port(), "GET", f"/r{i}/x").status == 200
    m = scrape(tp)
    assert value(m, "turnpike_http_requests_total", route="r0", method="read", code="200") == 1
    assert value(m, "turnpike_http_requests_total", route="r14", method="read", code="200") == 1
    assert value(m, "turnpike_http_requests_total", route="(overflow)", method="read", code="200") == 2
    assert not [k for k in m if dict(k[1]).get("route") in ("r15", "r19")]
    assert value(m, "turnpike_metrics_folded_names", label="route") == 5


def test_counters_survive_a_reload_and_reloads_are_counted(origin, turnpike):
    cfg = admin_cfg(origin, [route("api", ["/api/*"])])
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/api/x").status == 200
    cfg["routes"] = [route("new", ["/new/*"]), route("api", ["/api/*"])]  # api moves to index 1
    tp.reload(cfg)
    assert rawhttp.request(tp.port(), "GET", "/api/x").status == 200
    m = scrape(tp)
    assert value(m, "turnpike_http_requests_total", route="api", method="read", code="200") == 2
    assert value(m, "turnpike_config_reloads_total", result="ok") == 1
    assert value(m, "turnpike_config_generation") == 2


def test_no_admin_section_no_admin_listener(origin, turnpike):
    tp = turnpike(base_config(origin))
    assert "admin" not in tp.state()


# ---- token and address -----------------------------------------------------------------------

def test_token_guards_everything_but_the_probes(origin, turnpike):
    tp = turnpike(admin_cfg(origin, token=TOKEN))
    assert admin(tp, "GET", "/metrics").status == 401
    assert admin(tp, "GET", "/metrics", "wrong-token-of-the-same-size").status == 401
    assert admin(tp, "GET", "/status").status == 401
    assert admin(tp, "POST", "/reload").status == 401
    assert admin(tp, "GET", "/metrics", TOKEN).status == 200
    assert admin(tp, "GET", "/healthz").status == 200
    assert admin(tp, "GET", "/ready").status == 200
    cfg_doc = admin(tp, "GET", "/config", TOKEN).json()
    assert cfg_doc["admin"]["token"] == "<redacted>"
    assert TOKEN not in json.dumps(cfg_doc)


def test_non_loopback_without_token_is_refused_at_its_line(turnpike_bin, tmp_path, origin):
    cfg = admin_cfg(origin)
    cfg["admin"] = {"listen": "0.0.0.0:0"}
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(cfg))
    res = check_config(turnpike_bin, path)
    assert res.returncode != 0
    m = ERROR_LINE.search(res.stderr + res.stdout)
    assert m and m.group("file") == str(path), res.stderr
    assert "admin.listen:" in m.group("message") and "admin.token" in m.group("message")
    line = int(m.group("line"))
    assert "listen" in path.read_text().splitlines()[line - 1]
    cfg["admin"] = {"listen": "0.0.0.0:0", "token": TOKEN}
    path.write_text(dump_yaml(cfg))
    assert check_config(turnpike_bin, path).returncode == 0


def test_malformed_listen_is_an_error(turnpike_bin, tmp_path, origin):
    cfg = admin_cfg(origin)
    cfg["admin"] = {"listen": "localhost:99999", "colour": "blue"}
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(cfg))
    res = check_config(turnpike_bin, path)
    assert res.returncode != 0
    assert "admin.listen: \"localhost:99999\": expected an IP address and a port" in res.stderr
    assert "admin: unknown key \"colour\"" in res.stderr


# ---- health, maintenance, status, reload -----------------------------------------------------

def test_ready_follows_maintenance(origin, turnpike):
    tp = turnpike(admin_cfg(origin))
    assert admin(tp, "GET", "/healthz").status == 200
    assert admin(tp, "GET", "/ready").json() == {"status": "ready"}
    assert admin(tp, "GET", "/maintenance/on").status == 405
    assert admin(tp, "POST", "/maintenance/on").json() == {"readiness": "maintenance"}
    r = admin(tp, "GET", "/ready")
    assert r.status == 503 and r.json() == {"status": "maintenance"}
    assert rawhttp.request(tp.port(), "GET", "/x").status == 200  # still serving
    assert admin(tp, "POST", "/maintenance/off").json() == {"readiness": "ready"}
    assert admin(tp, "GET", "/ready").status == 200


def test_status_and_reload_errors_as_json(origin, turnpike):
    cfg = admin_cfg(origin)
    tp = turnpike(cfg)
    st = admin(tp, "GET", "/status").json()
    assert st["config_generation"] == 1 and st["last_reload"]["result"] == "none"
    assert st["version"] and st["readiness"] == "ready" and st["uptime_seconds"] >= 0
    assert st["listeners"]["public"] == f"127.0.0.1:{tp.port()}"
    # A config with two errors: both come back, each with its file and line.
    bad = dict(cfg)
    bad["routes"] = [route("a", ["/a/*"], "missing"), {"name": "b", "match": {"paths": ["/b"]}, "upstream": 7}]
    tp.config_path.write_text(dump_yaml(bad))
    r = admin(tp, "POST", "/reload")
    assert r.status == 409, r
    doc = r.json()
    assert doc["result"] == "failed" and doc["config_generation"] == 1
    assert len(doc["errors"]) >= 2
    assert all(e["file"] == str(tp.config_path) and e["line"] > 0 for e in doc["errors"])
    assert any("missing" in e["message"] for e in doc["errors"])
    st = admin(tp, "GET", "/status").json()
    assert st["last_reload"]["result"] == "failed" and st["last_reload"]["errors"] == doc["errors"]
    assert rawhttp.request(tp.port(), "GET", "/x").status == 200  # the old config still serves
    tp.config_path.write_text(dump_yaml(cfg))
    r = admin(tp, "POST", "/reload")
    assert r.status == 200 and r.json() == {"result": "ok", "config_generation": 2, "errors": []}
    m = scrape(tp)
    assert value(m, "turnpike_config_reloads_total", result="failed") == 1
    assert value(m, "turnpike_config_reloads_total", result="ok") == 1


def test_upstreams_lists_nodes(origin, turnpike):
    tp = turnpike(admin_cfg(origin))
    doc = admin(tp, "GET", "/upstreams").json()
    [up] = doc["upstreams"]
    assert up["name"] == "origin" and up["in_flight"] == 0
    assert [n["address"] for n in up["nodes"]] == [origin.address]
    assert admin(tp, "GET", "/nope").status == 404


def test_upstreams_shows_node_health(origin, turnpike):
    # Passive checks (on by default) eject the refusing node of two; /upstreams says so.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()  # nothing listens there now: connections are refused
    cfg = admin_cfg(origin)
    cfg["upstreams"] = [upstream("origin", [origin.address, dead_addr], retries=0)]
    tp = turnpike(cfg)
    nodes = {n["address"]: n for n in admin(tp, "GET", "/upstreams").json()["upstreams"][0]["nodes"]}
    assert nodes[dead_addr]["health"] == "healthy" and not nodes[dead_addr]["ejected"]
    statuses = [rawhttp.request(tp.port(), "GET", "/echo/h").status for _ in range(4)]
    assert statuses.count(502) == 1, statuses  # one request met the dead node, then it was out
    nodes = {n["address"]: n for n in admin(tp, "GET", "/upstreams").json()["upstreams"][0]["nodes"]}
    assert nodes[dead_addr]["health"] == "ejected" and nodes[dead_addr]["ejected"], nodes
    assert nodes[origin.address]["health"] == "healthy" and not nodes[origin.address]["ejected"]


# ---- a real Prometheus ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prom_query(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (deploy/install-deps.sh)")
def test_real_prometheus_scrapes_turnpike(origin, turnpike, tmp_path):
    tp = turnpike(admin_cfg(origin, [route("api", ["/api/*"])], token=TOKEN))
    for _ in range(12):
        assert rawhttp.request(tp.port(), "GET", "/api/x").status == 200
    prom_cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": "turnpike",
            "authorization": {"type": "Bearer", "credentials": TOKEN},
            "static_configs": [{"targets": [f"127.0.0.1:{admin_port(tp)}"]}],
        }],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg))
    web = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        query = 'sum(turnpike_http_requests_total{job="turnpike",route="api",code="200"})'
        deadline = time.monotonic() + 60
        result = None
        while time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                doc = prom_query(web, query)
                if doc["status"] == "success" and doc["data"]["result"]:
                    result = float(doc["data"]["result"][0]["value"][1])
                    if result == 12:
                        break
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        assert result == 12, f"PromQL {query} gave {result}\n" + (tmp_path / "prometheus.log").read_text()[-3000:]
        up = prom_query(web, 'up{job="turnpike"}')["data"]["result"]
        assert up and up[0]["value"][1] == "1"
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(timeout=5)
        log.close()


# ---- turnpike.metrics: plugins' own metrics --------------------------------------------------

def plugin_cfg(origin, routes, **top):
    cfg = admin_cfg(origin, routes)
    cfg["plugin_paths"] = [str(PLUGINS)]
    cfg.update(top)
    return cfg


def test_plugin_defined_counter_gauge_histogram(origin, turnpike):
    tp = turnpike(plugin_cfg(origin, [route("m", ["/m/*"], plugins={"metered": {}})]))
    for kind, n in (("a", 3), ("b", 2)):
        for _ in range(n):
            assert rawhttp.request(tp.port(), "GET", "/m/x", headers=[("X-Kind", kind)]).status == 200
    for size in (0.5, 5, 50, 500):
        assert rawhttp.request(tp.port(), "GET", "/m/x", headers=[("X-Size", str(size))]).status == 200
    assert rawhttp.request(tp.port(), "GET", "/m/x", headers=[("X-Level", "7")]).status == 200
    m = scrape(tp)
    assert value(m, "turnpike_plugin_metered_hits_total", route="m", kind="a") == 3
    assert value(m, "turnpike_plugin_metered_hits_total", route="m", kind="b") == 2
    assert value(m, "turnpike_plugin_metered_hits_total", route="m", kind="none") == 5
    assert value(m, "turnpike_plugin_metered_size_bucket", route="m", le="1") == 1
    assert value(m, "turnpike_plugin_metered_size_bucket", route="m", le="10") == 2
    assert value(m, "turnpike_plugin_metered_size_bucket", route="m", le="100") == 3
    assert value(m, "turnpike_plugin_metered_size_bucket", route="m", le="+Inf") == 4
    assert value(m, "turnpike_plugin_metered_size_count", route="m") == 4
    assert value(m, "turnpike_plugin_metered_size_sum", route="m") == 555.5
    # Each worker's gauge is its share; the one that served X-Level set 7, the other none.
    assert value(m, "turnpike_plugin_metered_level") == 7


def test_plugin_metric_series_cap_folds_into_overflow(origin, turnpike):
    tp = turnpike(plugin_cfg(origin, [route("m", ["/m/*"], plugins={"metered": {}})]))
    for key in ("k1", "k2", "k3", "k4", "k1", "k3"):
        assert rawhttp.request(tp.port(), "GET", "/m/x", headers=[("X-Key", key)]).status == 200
    m = scrape(tp)
    assert value(m, "turnpike_plugin_metered_capped_total", key="k1") == 2
    assert value(m, "turnpike_plugin_metered_capped_total", key="k2") == 1
    assert value(m, "turnpike_plugin_metered_capped_total", key="(overflow)") == 3
    assert not [k for k in m if dict(k[1]).get("key") in ("k3", "k4")]
    assert value(m, "turnpike_metrics_plugin_folded_total", metric="turnpike_plugin_metered_capped_total") == 3


def test_plugin_metric_redefinition_refuses_the_plugin(turnpike_bin, tmp_path, origin):
    cfg = plugin_cfg(origin, [route("m", ["/m/*"], plugins={"bad-metric": {}})])
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(cfg))
    res = check_config(turnpike_bin, path)
    assert res.returncode != 0
    assert "bad_metric_total" in res.stderr and "already defined with another kind" in res.stderr


def test_limit_count_rejections_are_exported(origin, turnpike):
    plugins = {"limit-count": {"count": 2, "time_window": 60, "key": ["route"]}}
    tp = turnpike(plugin_cfg(origin, [route("lim", ["/lim/*"], plugins=plugins)]))
    statuses = [rawhttp.request(tp.port(), "GET", "/lim/x").status for _ in range(5)]
    assert statuses.count(200) == 2 and statuses.count(429) == 3, statuses
    m = scrape(tp)
    assert value(m, "turnpike_plugin_limit_count_rejected_total", route="lim") == 3
    assert value(m, "turnpike_http_requests_total", route="lim", method="read", code="429") == 3


def test_ready_reports_draining_after_sigterm_and_upstream_in_flight(origin, turnpike):
    import signal
    import threading
    tp = turnpike(admin_cfg(origin))
    results = []
    slow = threading.Thread(target=lambda: results.append(rawhttp.request(tp.port(), "GET", "/sleep/3000").status))
    slow.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the slow request is being forwarded
        if admin(tp, "GET", "/upstreams").json()["upstreams"][0]["in_flight"] == 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the slow request never showed in /upstreams in_flight")
    assert value(scrape(tp), "turnpike_upstream_requests_in_flight", upstream="origin") == 1
    tp.signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    state = None
    while time.monotonic() < deadline:
        r = admin(tp, "GET", "/ready")
        state = (r.status, r.json()["status"])
        if state == (503, "draining"):
            break
        time.sleep(0.05)
    assert state == (503, "draining")
    slow.join(timeout=10)
    assert results == [200]
    assert tp.wait_exit(15) == 0


# ---- nodes, connections by protocol (issue 15) ----------------------------------------------

def node_state(samples, upstream_name, node):
    """The node's state per turnpike_upstream_node_health: the one state whose series is 1."""
    states = [s for s in ("healthy", "ejected", "down")
              if value(samples, "turnpike_upstream_node_health", upstream=upstream_name, node=node, state=s) == 1]
    assert len(states) == 1, (node, states)
    return states[0]


def test_node_in_flight_rises_during_a_slow_request(origin, turnpike):
    tp = turnpike(admin_cfg(origin))
    node = origin.address
    assert value(scrape(tp), "turnpike_upstream_node_requests_in_flight", upstream="origin", node=node) == 0
    import threading
    results = []
    slow = threading.Thread(target=lambda: results.append(rawhttp.request(tp.port(), "GET", "/sleep/2000").status))
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = scrape(tp)
            if value(m, "turnpike_upstream_node_requests_in_flight", upstream="origin", node=node) == 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the slow request never showed in turnpike_upstream_node_requests_in_flight")
        [n] = admin(tp, "GET", "/upstreams").json()["upstreams"][0]["nodes"]
        assert n["in_flight"] == 1
    finally:
        slow.join(timeout=10)
    assert results == [200]
    m = scrape_settled(tp, lambda m: value(m, "turnpike_upstream_node_requests_in_flight",
                                           upstream="origin", node=node) == 0)
    assert value(m, "turnpike_upstream_node_requests_in_flight", upstream="origin", node=node) == 0
    assert node_state(m, "origin", node) == "healthy"


def test_node_health_gauge_flips_when_a_node_is_killed(origin, turnpike):
    from origin import Origin
    second = Origin().start()
    try:
        cfg = admin_cfg(origin)
        cfg["workers"] = 1
        cfg["upstreams"] = [upstream("origin", [origin.address, second.address], retries=1)]
        tp = turnpike(cfg)
        for _ in range(4):
            assert rawhttp.request(tp.port(), "GET", "/echo").status == 200
        m = scrape(tp)
        assert node_state(m, "origin", second.address) == "healthy"
        assert node_state(m, "origin", origin.address) == "healthy"
        killed = second.address
    finally:
        second.stop()
    # Passive checks take the dead node out at its first failure (a request on a connection the
    # stop cut may still fail with it).
    statuses = [rawhttp.request(tp.port(), "GET", "/echo").status for _ in range(6)]
    assert set(statuses) <= {200, 502} and statuses[-1] == 200, statuses
    m = scrape(tp)
    assert node_state(m, "origin", killed) == "ejected", [k for k in m if k[0] == "turnpike_upstream_node_health"]
    assert node_state(m, "origin", origin.address) == "healthy"


def test_node_series_past_the_cap_share_the_overflow_series(origin, turnpike):
    # Cap 16 (the smallest): the first 16 nodes have series; the 17th is counted in "(overflow)".
    cfg = admin_cfg(origin, series_cap=16)
    nodes = [origin.address] + [f"127.0.0.1:{port}" for port in range(1, 17)]  # (never sent to)
    cfg["upstreams"] = [upstream("origin", nodes)]
    tp = turnpike(cfg)
    m = scrape(tp)
    assert all(node_state(m, "origin", n) == "healthy" for n in nodes[:16])
    assert ("turnpike_upstream_node_health", frozenset({("upstream", "origin"), ("node", nodes[16]),
                                                       ("state", "healthy")})) not in m
    assert value(m, "turnpike_upstream_node_health", upstream="(overflow)", node="(overflow)", state="healthy") == 1
    assert value(m, "turnpike_metrics_folded_names", label="node") == 1


def test_connections_by_listener_and_protocol(origin, turnpike):
    from h2client import H2Client
    tp = turnpike(admin_cfg(origin))
    port = tp.port()
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # sends nothing: protocol pending
    h1 = rawhttp.HttpConn(port)
    assert h1.request("GET", "/echo").status == 200
    h2 = H2Client(port)
    assert h2.get("/echo").status == 200
    assert h2.get("/echo").status == 200
    try:
        expect = {"pending": 1, "http1": 1, "h2c": 1}
        deadline = time.monotonic() + 5
        while True:  # the idle connection is accepted asynchronously
            m = scrape(tp)
            got = {p: value(m, "turnpike_connections_open", listener="public", protocol=p) for p in expect}
            if got == expect or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == expect
        assert value(m, "turnpike_connections_established_total", listener="public", protocol="http1") == 1
        assert value(m, "turnpike_connections_established_total", listener="public", protocol="h2c") == 1
        assert value(m, "turnpike_http2_streams_total") == 2
    finally:
        idle.close()
        h1.close()
        h2.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = scrape(tp)
        if all(value(m, "turnpike_connections_open", listener="public", protocol=p) == 0
               for p in ("pending", "http1", "h2c")):
            break
        time.sleep(0.05)
    else:
        pytest.fail("closed connections still counted open")
    assert value(m, "turnpike_connections_established_total", listener="public", protocol="http1") == 1


def test_tls_connections_by_protocol(origin, turnpike, tmp_path):
    from tlsutil import TlsConn, client_context, make_cert
    cert, key = make_cert(tmp_path / "certs", "default", "default.test")
    cfg = admin_cfg(origin)
    cfg["listeners"] = [{"name": "public", "address": "127.0.0.1", "port": 0,
                         "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}]
    tp = turnpike(cfg)
    with TlsConn(tp.port(), ctx=client_context(alpn=("http/1.1",))) as c:
        assert c.request("GET", "/echo").status == 200
        m = scrape(tp)
        assert value(m, "turnpike_connections_open", listener="public", protocol="http1_tls") == 1
    s = socket.create_connection(("127.0.0.1", tp.port()), timeout=5)
    with client_context(alpn=("h2",)).wrap_socket(s, server_hostname="default.test") as t:
        assert t.selected_alpn_protocol() == "h2"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = scrape(tp)
            if value(m, "turnpike_connections_open", listener="public", protocol="h2_tls") == 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the h2 connection is not counted open")
    m = scrape(tp)
    assert value(m, "turnpike_connections_established_total", listener="public", protocol="http1_tls") == 1
    assert value(m, "turnpike_connections_established_total", listener="public", protocol="h2_tls") == 1
    assert value(m, "turnpike_tls_handshakes_total", result="ok") == 2


def test_gap_counters_are_exported(origin, turnpike):
    tp = turnpike(admin_cfg(origin))
    m = scrape(tp)
    for reason in ("untrusted", "invalid", "timeout"):
        assert ("turnpike_proxy_protocol_refused_total", frozenset({("reason", reason)})) in m
    for name in ("turnpike_upstream_retry_budget_exhausted_total", "turnpike_http2_upstream_connections_lost_total",
                 "turnpike_http2_streams_total"):
        assert (name, frozenset()) in m, name

"""The bundled rate-limit plugins in the real binary: limit-count (fixed and sliding windows,
exact across 4 workers, headers, expiry, keys and groups, cluster share), limit-req (delay up to
the burst, then 429; nodelay), limit-conn (in flight, given back when a request fails or its
client leaves), the rate-limit table under a flood of keys, reloads that keep or reset counters,
and schema errors from `turnpike -t`."""
from __future__ import annotations

import concurrent.futures
import copy
import json
import socket
import time

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, upstream, ERROR_LINE
from origin import closed_port

STATS_PLUGIN = """
-- limit-stats: answers the node's rate-limit table statistics (turnpike.limit.stats()).
local turnpike = require "turnpike"
local limit = require "turnpike.limit"
local json = require "turnpike.json"
return {
  name = "limit-stats", priority = 1, schema = { type = "object" },
  access = function()
    local s = limit.stats()
    s.nodes = limit.cluster_nodes()
    return turnpike.exit(200, json.encode(s), { ["content-type"] = "application/json" })
  end,
}
"""


def route(name, paths, plugins, **extra):
    extra.setdefault("upstream", "origin")
    return {"name": name, "match": {"paths": paths}, "plugins": plugins, **extra}


def get(port, target, headers=None):
    with rawhttp.HttpConn(port) as conn:
        return conn.request("GET", target, headers or [], None)


def statuses(resps):
    return [r.status for r in resps]


def stats_plugin_dir(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir(exist_ok=True)
    (d / "limit-stats.lua").write_text(STATS_PLUGIN)
    return str(d)


def limits_config(origin, routes, tmp_path, **top):
    cfg = base_config(origin, routes=routes + [route("stats", ["/stats"], {"limit-stats": {}})],
                      plugin_paths=[stats_plugin_dir(tmp_path)], **top)
    cfg["workers"] = 4
    return cfg


def table_stats(port):
    resp = get(port, "/stats")
    assert resp.status == 200, resp
    return resp.json()


# ---- one gateway for most tests (4 workers) ---------------------------------------------------

ROUTES = [
    route("count", ["/count/*"], {"limit-count": {"count": 3, "time_window": 60, "key": ["header:x-user"]}}),
    route("custom", ["/custom/*"], {"limit-count": {
        "count": 1, "time_window": 60, "key": ["header:x-user"], "rejected_code": 503,
        "rejected_msg": "slow down", "show_headers": False}}),
    route("exact", ["/exact/*"], {"limit-count": {"count": 500, "time_window": 60, "key": ["header:x-run"]}}),
    route("short", ["/short/*"], {"limit-count": {"count": 2, "time_window": 2, "key": ["header:x-user"]}}),
    route("sliding", ["/sliding/*"], {"limit-count": {
        "count": 4, "time_window": 60, "window": "sliding", "key": ["header:x-user"]}}),
    route("apart-a", ["/apart-a/*"], {"limit-count": {"count": 1, "time_window": 60, "key": ["header:x-user"]}}),
    route("apart-b", ["/apart-b/*"], {"limit-count": {"count": 1, "time_window": 60, "key": ["header:x-user"]}}),
    route("group-a", ["/group-a/*"], {"limit-count": {
        "count": 1, "time_window": 60, "key": ["header:x-user"], "group": "shared"}}),
    route("group-b", ["/group-b/*"], {"limit-count": {
        "count": 1, "time_window": 60, "key": ["header:x-user"], "group": "shared"}}),
    route("combo", ["/combo/*"], {"key-auth": {}, "limit-count": {
        "count": 1, "time_window": 60, "key": ["consumer", "header:x-tenant"]}}),
    route("param", ["/param/{id}"], {"limit-count": {"count": 1, "time_window": 60, "key": ["param:id"]}}),
    route("missing-allow", ["/missing-allow/*"], {"limit-count": {
        "count": 1, "time_window": 60, "key": ["header:x-absent"], "key_missing": "allow"}}),
    route("missing-ip", ["/missing-ip/*"], {"limit-count": {
        "count": 1, "time_window": 60, "key": ["header:x-absent"]}}),
    route("cluster", ["/cluster/*"], {"limit-count": {
        "count": 10, "time_window": 60, "key": ["header:x-user"], "cluster": True}}),
    route("req", ["/req/*"], {"limit-req": {"rate": 2, "burst": 3, "key": ["header:x-user"]}}),
    route("req-nodelay", ["/req-nodelay/*"], {"limit-req": {
        "rate": 1, "burst": 3, "nodelay": True, "key": ["header:x-user"]}}),
    route("conn", ["/sleep/*"], {"limit-conn": {"conn": 2, "key": ["header:x-user"]}}),
    route("conn-dead", ["/conn-dead/*"], {"limit-conn": {"conn": 1, "key": ["header:x-user"]}},
          upstream="dead"),
]
CONSUMERS = [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}},
             {"username": "bob", "plugins": {"key-auth": {"key": "k-bob"}}}]


@pytest.fixture(scope="module")
def gw(origin_module, turnpike_module, tmp_path_factory):
    cfg = limits_config(origin_module, ROUTES, tmp_path_factory.mktemp("limits"), consumers=CONSUMERS,
                        cluster={"nodes": 2})
    cfg["upstreams"].append(upstream("dead", [f"127.0.0.1:{closed_port()}"]))
    return turnpike_module(cfg)


_unique = iter(range(1, 1 << 30))


def user():
    """A key no other test uses."""
    return f"u{next(_unique)}-{time.monotonic_ns()}"


def test_limit_count_admits_count_then_429_with_rate_limit_headers(gw, origin_module):
    u = user()
    resps = [get(gw.port(), "/count/x", [("x-user", u)]) for _ in range(4)]
    assert statuses(resps) == [200, 200, 200, 429]
    for i, r in enumerate(resps[:3]):
        assert r.header("x-ratelimit-limit") == "3"
        assert r.header("x-ratelimit-remaining") == str(2 - i)
        assert 1 <= int(r.header("x-ratelimit-reset")) <= 60
        assert r.header("retry-after") is None
    denied = resps[3]
    assert denied.json() == {"error": "too_many_requests", "message": "rate limit exceeded"}
    assert denied.header("content-type") == "application/json"
    assert denied.header("x-ratelimit-limit") == "3"
    assert denied.header("x-ratelimit-remaining") == "0"
    assert 1 <= int(denied.header("retry-after")) <= 60
    assert denied.header("retry-after") == denied.header("x-ratelimit-reset")
    # Another key has its own count.
    assert get(gw.port(), "/count/x", [("x-user", user())]).status == 200


def test_limit_count_rejection_status_and_message_are_configurable(gw):
    u = user()
    assert get(gw.port(), "/custom/x", [("x-user", u)]).status == 200
    denied = get(gw.port(), "/custom/x", [("x-user", u)])
    assert denied.status == 503
    assert denied.json() == {"error": "too_many_requests", "message": "slow down"}
    assert denied.header("x-ratelimit-limit") is None  # show_headers: false
    assert denied.header("retry-after") is not None


def concurrent_statuses(port, target, headers, total, clients=32):
    """`total` requests from `clients` concurrent keep-alive connections: their statuses."""
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    def run(n):
        out = []
        with rawhttp.HttpConn(port, timeout=30) as conn:
            for _ in range(n):
                out.append(conn.request("GET", target, headers, None).status)
        return out

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(run, per_client))
    return [s for r in results for s in r]


def test_limit_count_is_exact_across_four_workers(gw):
    got = concurrent_statuses(gw.port(), "/exact/x", [("x-run", user())], 2000)
    assert len(got) == 2000
    assert got.count(200) == 500, {s: got.count(s) for s in set(got)}
    assert got.count(429) == 1500


def test_limit_count_keys_expire_with_their_window(gw):
    u = user()
    assert statuses([get(gw.port(), "/short/x", [("x-user", u)]) for _ in range(3)]) == [200, 200, 429]
    time.sleep(2.1)
    assert get(gw.port(), "/short/x", [("x-user", u)]).status == 200


def test_limit_count_sliding_window_counts_the_last_period(gw):
    u = user()
    resps = [get(gw.port(), "/sliding/x", [("x-user", u)]) for _ in range(5)]
    assert statuses(resps) == [200, 200, 200, 200, 429]
    assert [r.header("x-ratelimit-remaining") for r in resps[:4]] == ["3", "2", "1", "0"]
    assert int(resps[4].header("retry-after")) >= 1


def test_routes_count_apart_unless_they_share_a_group(gw):
    u = user()
    assert get(gw.port(), "/apart-a/x", [("x-user", u)]).status == 200
    assert get(gw.port(), "/apart-b/x", [("x-user", u)]).status == 200
    assert get(gw.port(), "/group-a/x", [("x-user", u)]).status == 200
    assert get(gw.port(), "/group-b/x", [("x-user", u)]).status == 429


def test_combined_key_counts_each_tenant_of_each_consumer(gw):
    t = user()
    assert get(gw.port(), "/combo/x", [("apikey", "k-alice"), ("x-tenant", t)]).status == 200
    assert get(gw.port(), "/combo/x", [("apikey", "k-alice"), ("x-tenant", t)]).status == 429
    assert get(gw.port(), "/combo/x", [("apikey", "k-bob"), ("x-tenant", t)]).status == 200
    assert get(gw.port(), "/combo/x", [("apikey", "k-alice"), ("x-tenant", t + "-2")]).status == 200


def test_route_param_key(gw):
    p = user()
    assert get(gw.port(), f"/param/{p}").status == 200
    assert get(gw.port(), f"/param/{p}").status == 429
    assert get(gw.port(), f"/param/{p}-other").status == 200


def test_missing_key_source_passes_or_falls_back_to_the_client_address(gw):
    assert statuses([get(gw.port(), "/missing-allow/x") for _ in range(3)]) == [200, 200, 200]
    # Counted under 127.0.0.1: one request, then 429 (this route is used by this test only).
    assert statuses([get(gw.port(), "/missing-ip/x") for _ in range(2)]) == [200, 429]


def test_cluster_mode_divides_the_limit_by_the_node_count(gw):
    u = user()
    resps = [get(gw.port(), "/cluster/x", [("x-user", u)]) for _ in range(6)]
    assert statuses(resps) == [200] * 5 + [429]  # 10 over cluster.nodes 2
    assert resps[0].header("x-ratelimit-limit") == "5"
    assert table_stats(gw.port())["nodes"] == 2


def timed_statuses(port, target, headers, n):
    """n requests sent at once (one connection each): [(status, seconds, headers)] in send order."""
    def one(_):
        start = time.monotonic()
        r = get(port, target, headers)
        return r.status, time.monotonic() - start, r

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_limit_req_delays_up_to_the_burst_then_rejects(gw):
    # 2 per second, burst 3: of 6 at once, one passes at once, three wait 0.5, 1 and 1.5 s, two
    # are refused (the requests may arrive up to half a second apart and still count as a burst).
    got = timed_statuses(gw.port(), "/req/x", [("x-user", user())], 6)
    codes = sorted(s for s, _, _ in got)
    assert codes == [200, 200, 200, 200, 429, 429], got
    passed = sorted(t for s, t, _ in got if s == 200)
    assert passed[-1] >= 1.0, passed   # the last admitted waited its turn
    assert passed[1] >= 0.2, passed
    denied = [r for s, _, r in got if s == 429]
    assert all(int(r.header("retry-after")) >= 1 for r in denied)
    assert denied[0].json()["error"] == "too_many_requests"


def test_limit_req_nodelay_lets_the_burst_through_at_once(gw):
    # 1 per second, burst 3: delayed, the fourth would wait 3 s.
    got = timed_statuses(gw.port(), "/req-nodelay/x", [("x-user", user())], 5)
    assert sorted(s for s, _, _ in got) == [200, 200, 200, 200, 429]
    assert max(t for s, t, _ in got if s == 200) < 2.0


def send_without_reading(port, target, headers):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(rawhttp.build_request("GET", target, headers, None, "HTTP/1.1", "test.local"))
    return sock


def wait_status(port, target, headers, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = get(port, target, headers).status
        if last == want:
            return last
        time.sleep(0.05)
    return last


def test_limit_conn_counts_requests_in_flight(gw, origin_module):
    u = [("x-user", user())]
    # The conn route's origin endpoint sleeps for the milliseconds in the path.
    held = [send_without_reading(gw.port(), "/sleep/3000", u) for _ in range(2)]
    try:
        origin_module.wait_for(lambda reqs: sum(r.path == "/sleep/3000" and r.header("x-user") == u[0][1]
                                                for r in reqs) >= 2)
        denied = get(gw.port(), "/sleep/0", u)
        assert denied.status == 429
        assert denied.header("retry-after") == "1"
        assert denied.json()["error"] == "too_many_requests"
        assert get(gw.port(), "/sleep/0", [("x-user", user())]).status == 200  # another key
    finally:
        for s in held:
            s.close()
    # Their clients left: once the gateway notices, the count is given back (log phase).
    assert wait_status(gw.port(), "/sleep/0", u, 200) == 200
    assert statuses([get(gw.port(), "/sleep/0", u) for _ in range(3)]) == [200, 200, 200]


def test_limit_conn_gives_the_count_back_when_the_upstream_fails(gw):
    # The count is given back in the log phase, which runs just after the 502 has been sent, so
    # the next request (on a new connection, maybe another worker) can arrive a moment before it.
    # A count that is never given back answers 429 for good: each request gets 2 s to see 502.
    u = [("x-user", user())]
    for _ in range(3):
        deadline = time.monotonic() + 2
        status = get(gw.port(), "/conn-dead/x", u).status
        while status == 429 and time.monotonic() < deadline:
            time.sleep(0.02)
            status = get(gw.port(), "/conn-dead/x", u).status
        assert status == 502


# ---- a gateway of its own: flood, reload -------------------------------------------------------

def test_limit_conn_gives_the_count_back_when_the_client_leaves_while_delayed(origin, turnpike, tmp_path):
    # conn 1, burst 1, delay 2: A holds the slot, B waits in limit-conn's delay and its client
    # leaves meanwhile, C finds both counted. Once A's client has left too, the key is free:
    # its slot in the table is released only when the count is back at 0.
    routes = [route("held", ["/sleep/*"], {"limit-conn": {"conn": 1, "burst": 1, "delay": 2,
                                                          "key": ["header:x-user"]}})]
    tp = turnpike(limits_config(origin, routes, tmp_path))
    u = [("x-user", "leaver")]
    a = send_without_reading(tp.port(), "/sleep/2500", u)
    try:
        origin.wait_for(lambda reqs: any(r.path == "/sleep/2500" for r in reqs))
        b = send_without_reading(tp.port(), "/sleep/0", u)
        time.sleep(0.3)
        b.close()
        denied = get(tp.port(), "/sleep/0", u)
        assert denied.status == 429
        assert denied.header("retry-after") == "2"
        assert table_stats(tp.port())["keys"] == 1
    finally:
        a.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and table_stats(tp.port())["keys"] != 0:
        time.sleep(0.05)
    assert table_stats(tp.port())["keys"] == 0
    # And the key works as new: one passes at once.
    start = time.monotonic()
    assert get(tp.port(), "/sleep/0", u).status == 200
    assert time.monotonic() - start < 1.5


def test_a_flood_of_distinct_keys_stays_within_the_table(origin, turnpike, tmp_path):
    routes = [route("flood", ["/flood/*"], {"limit-count": {"count": 5, "time_window": 60, "key": ["header:x-k"]}})]
    tp = turnpike(limits_config(origin, routes, tmp_path, rate_limits={"table_size": "64k"}))
    before = table_stats(tp.port())
    assert before["slot_bytes"] == 48
    capacity = before["capacity"]
    assert capacity == (64 * 1024) // (48 * 8) * 8
    total = 4 * capacity

    def run(worker):
        with rawhttp.HttpConn(tp.port(), timeout=30) as conn:
            return [conn.request("GET", "/flood/x", [("x-k", f"k{worker}-{i}")], None).status
                    for i in range(total // 8)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = [s for r in pool.map(run, range(8)) for s in r]
    assert got.count(200) == total
    after = table_stats(tp.port())
    assert after["bytes"] == before["bytes"]
    assert capacity * 0.8 <= after["keys"] <= capacity
    assert after["evictions"] >= total - capacity


def test_reload_keeps_counts_and_a_changed_conf_resets_them(origin, turnpike, tmp_path):
    def cfg(count, msg="over"):
        plugin = {"limit-count": {"count": count, "time_window": 60, "key": ["header:x-user"], "rejected_msg": msg}}
        return limits_config(origin, [route("r", ["/r/*"], plugin)], tmp_path, cluster={"nodes": 1})

    tp = turnpike(cfg(5))
    u = [("x-user", "reloaded")]
    assert statuses([get(tp.port(), "/r/x", u) for _ in range(3)]) == [200, 200, 200]
    # A reload with the counting conf unchanged (only the message) keeps the count.
    tp.reload(cfg(5, msg="still over"))
    resps = [get(tp.port(), "/r/x", u) for _ in range(3)]
    assert statuses(resps) == [200, 200, 429]
    assert resps[2].json()["message"] == "still over"
    # A new count is a new counter.
    tp.reload(cfg(6))
    assert statuses([get(tp.port(), "/r/x", u) for _ in range(7)]) == [200] * 6 + [429]


def test_reload_changes_the_cluster_node_count(origin, turnpike, tmp_path):
    plugin = {"limit-count": {"count": 10, "time_window": 60, "key": ["header:x-user"], "cluster": True}}
    cfg = limits_config(origin, [route("r", ["/r/*"], plugin)], tmp_path, cluster={"nodes": 5})
    tp = turnpike(cfg)
    u = [("x-user", "scaled")]
    assert statuses([get(tp.port(), "/r/x", u) for _ in range(3)]) == [200, 200, 429]
    scaled = copy.deepcopy(cfg)
    scaled["cluster"] = {"nodes": 2}
    tp.reload(scaled)
    resps = [get(tp.port(), "/r/x", u) for _ in range(4)]
    assert statuses(resps) == [200, 200, 200, 429]  # 5 per node now; 2 were used
    assert resps[0].header("x-ratelimit-limit") == "5"


# ---- schema errors ------------------------------------------------------------------------------

def config_errors(turnpike_bin, tmp_path, origin, cfg):
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(cfg))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    return [m.group("message") for m in ERROR_LINE.finditer(out.stderr)], out.stderr


@pytest.mark.parametrize("plugin,conf,message", [
    ("limit-count", {"time_window": 60}, "conf.count: required"),
    ("limit-count", {"count": 0, "time_window": 60}, "conf.count: expected at least 1, got 0"),
    ("limit-count", {"count": 5, "time_window": 60, "window": "rolling"},
     'conf.window: expected one of "fixed", "sliding", got "rolling"'),
    ("limit-count", {"count": 5, "time_window": 60, "key": ["cookie:sid"]}, None),
    ("limit-count", {"count": 5, "time_window": 60, "key": []}, None),
    ("limit-count", {"count": 5, "time_window": 60, "rejected_code": 99}, None),
    ("limit-count", {"count": 5, "time_window": 60, "cuont": 5}, "conf.cuont: unknown property"),
    ("limit-req", {"burst": 1}, "conf.rate: required"),
    ("limit-req", {"rate": 0}, None),
    ("limit-req", {"rate": 1, "burst": -1}, None),
    ("limit-conn", {"burst": 1}, "conf.conn: required"),
    ("limit-conn", {"conn": 1, "delay": 61}, None),
    ("limit-conn", {"conn": 1, "key_missing": "deny"}, None),
])
def test_schema_errors(turnpike_bin, tmp_path, origin, plugin, conf, message):
    cfg = base_config(origin, routes=[route("r", ["/*"], {plugin: conf})])
    messages, stderr = config_errors(turnpike_bin, tmp_path, origin, cfg)
    prefix = f'route "r": plugin "{plugin}": '
    ours = [m for m in messages if m.startswith(prefix)]
    assert ours, stderr
    if message:
        assert prefix + message in ours, ours
    else:
        field = next(k for k in conf if k not in ("count", "time_window", "rate", "conn") or conf[k] in (0, []))
        assert any(m.startswith(prefix + "conf." + field) for m in ours), ours


@pytest.mark.parametrize("top,message", [
    ({"cluster": {"nodes": 0}}, "cluster.nodes"),
    ({"cluster": {"node": 2}}, "cluster"),
    ({"rate_limits": {"table_size": "1k"}}, "rate_limits.table_size"),
])
def test_top_level_errors(turnpike_bin, tmp_path, origin, top, message):
    messages, stderr = config_errors(turnpike_bin, tmp_path, origin, base_config(origin, **top))
    assert any(message in m for m in messages), stderr

"""The Lua plugin chain in the real binary: order and merge of global/listener/route/consumer
plugins, one shared ctx per request, no double run when a plugin waits, denials, the PDK's view
of the request, plugin errors isolated to their request (raise, endless loop, endless
allocation, a wait that never ends), schema errors at load with file:line, reload of plugin code.

Test plugins live in tests/integration/plugins (plugin_paths)."""
from __future__ import annotations

import concurrent.futures
import shutil
import time
from pathlib import Path

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE

PLUGINS = Path(__file__).resolve().parent / "plugins"


def cfg_with(origin, routes, **top):
    cfg = base_config(origin, routes=routes, **top)
    cfg.setdefault("plugin_paths", [str(PLUGINS)])
    return cfg


def route(name, paths, plugins=None, **extra):
    r = {"name": name, "match": {"paths": paths}, "upstream": "origin", **extra}
    if plugins is not None:
        r["plugins"] = plugins
    return r


def get(tp, target, headers=None):
    return rawhttp.request(tp.port(), "GET", target, headers=headers or [])


def origin_headers(resp):
    assert resp.status == 200, resp
    return {n.lower(): v for n, v in resp.json()["headers"]}


# ---- order, merge, ctx ------------------------------------------------------------------------

def test_phases_run_in_priority_order_and_share_one_ctx(origin, turnpike):
    tp = turnpike(cfg_with(origin, [route("r", ["/*"], {"tracer": {"label": "r"}, "early": {}})]))
    resp = get(tp, "/echo/order")
    # rewrite of every plugin before access of any; in access, early (5000) before tracer (500).
    assert origin_headers(resp)["x-trace"] == "r:rewrite,early,r:access,"
    assert resp.header("x-trace") == "r:rewrite,early,r:access,r:header"
    assert resp.header("x-access-runs") == "1"


def test_route_conf_overrides_listener_and_global(origin, turnpike):
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 0, "plugins": {"tracer": {"label": "l"}}}]
    routes = [route("mine", ["/mine/*"], {"tracer": {"label": "r"}}), route("other", ["/*"])]
    tp = turnpike(cfg_with(origin, routes, listeners=listeners, plugins={"tracer": {"label": "g"}, "early": {}}))
    assert get(tp, "/mine/x").header("x-trace") == "r:rewrite,early,r:access,r:header"
    # No route conf: the listener's wins over the global one.
    assert get(tp, "/other").header("x-trace") == "l:rewrite,early,l:access,l:header"


def test_a_plugin_that_waits_does_not_make_earlier_ones_run_again(origin, turnpike):
    tp = turnpike(cfg_with(origin, [route("r", ["/*"], {"tracer": {"label": "r", "pause": 0.05}, "early": {}})]))
    resp = get(tp, "/echo/pause")
    assert resp.header("x-trace") == "r:rewrite,early,r:access,r:header"
    assert resp.header("x-access-runs") == "1"


def test_ctx_is_fresh_for_every_request(origin, turnpike):
    tp = turnpike(cfg_with(origin, [route("r", ["/*"], {"tracer": {"label": "r"}})], workers=1))
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(5):
            resp = conn.request("GET", "/echo/again")
            assert resp.header("x-access-runs") == "1"
            assert resp.header("x-trace") == "r:rewrite,r:access,r:header"


def test_access_denial_answers_without_the_upstream(origin, turnpike):
    tp = turnpike(cfg_with(origin, [route("r", ["/*"], {"tracer": {"label": "d", "deny": True}})]))
    origin.reset()
    resp = get(tp, "/echo/denied")
    assert resp.status == 403
    assert resp.json() == {"denied": "d"}
    assert resp.header("content-type") == "application/json"
    # header_filter runs for the plugin's own answer too.
    assert resp.header("x-trace") == "d:rewrite,d:access,d:header"
    assert not [r for r in origin.snapshot() if r.path == "/echo/denied"]


# ---- the PDK's view of a request --------------------------------------------------------------

def test_pdk_reads_the_request(origin, turnpike):
    tp = turnpike(cfg_with(origin, [route("users", ["/users/{id}"], {"pdk-probe": {}})]))
    resp = get(tp, "/users/42?a=x%20y&b=2", headers=[("User-Agent", "probe/1")])
    assert resp.status == 200, resp
    seen = dict(line.split("=", 1) for line in resp.body.decode().splitlines())
    assert seen["method"] == "GET"
    assert seen["path"] == "/users/42"
    assert seen["host"] == "test.local"
    assert seen["scheme"] == "http"
    assert seen["query"] == "a=x%20y&b=2"
    assert seen["arg_a"] == "x y"
    assert seen["route"] == "users"
    assert seen["param_id"] == "42"
    assert seen["client"] == "127.0.0.1"
    assert seen["ua"] == "probe/1"


def test_pdk_rewrites_path_query_and_headers(origin, turnpike):
    tp = turnpike(cfg_with(origin, [route("r", ["/*"], {"pdk-probe": {}})]))
    resp = get(tp, "/orig?rewrite=1")
    body = resp.json()
    assert body["path"] == "/echo/rewritten"
    assert body["query"] == "added=1"
    assert {n.lower(): v for n, v in body["headers"]}["x-probe"] == "yes"


# ---- failures stay with their request ---------------------------------------------------------

def hostile_config(origin, **lua):
    routes = [route("raise", ["/raise/*"], {"raiser": {}}),
              route("loop", ["/loop/*"], {"looper": {}}),
              route("hog", ["/hog/*"], {"hog": {}}),
              route("sleep", ["/sleep-forever/*"], {"sleeper": {}}),
              route("fine", ["/*"])]
    return cfg_with(origin, routes, lua={"memory_limit": "32m", "instruction_budget": 2000000,
                                         "phase_timeout": "1s", **lua})


def assert_plugin_failed(resp):
    assert resp.status == 500, resp
    assert resp.json()["error"] == "plugin_failed"


def test_a_raising_plugin_fails_only_its_request(origin, turnpike):
    tp = turnpike(hostile_config(origin))
    assert get(tp, "/raise/no").status == 200  # raises only with X-Raise
    assert_plugin_failed(get(tp, "/raise/yes", headers=[("X-Raise", "1")]))
    log = tp.wait_log(r'plugin "raiser" failed on route "raise"')
    assert "raised on purpose" in log and "stack traceback" in log
    assert get(tp, "/echo/fine").status == 200


@pytest.mark.parametrize("path", ["/loop/x", "/hog/x", "/sleep-forever/x"])
def test_hostile_plugins_fail_their_requests_while_others_are_served(origin, turnpike, path):
    tp = turnpike(hostile_config(origin))
    stop = time.monotonic() + 60
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        hostile = [pool.submit(get, tp, path) for _ in range(4)]
        fine = []
        while not all(f.done() for f in hostile) and time.monotonic() < stop:
            fine.append(get(tp, "/echo/fine").status)
        for f in hostile:
            assert_plugin_failed(f.result(timeout=30))
    assert fine and set(fine) == {200}, fine
    assert tp.alive()


def test_memory_comes_back_after_plugins_hit_the_cap(origin, turnpike):
    cfg = hostile_config(origin, memory_limit="16m")
    cfg["workers"] = 1  # one VM: the first runs reach its cap, later ones cannot add a second
    tp = turnpike(cfg)
    def rss_kib():
        for line in Path(f"/proc/{tp.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    for _ in range(3):
        assert_plugin_failed(get(tp, "/hog/x"))
    after_first = rss_kib()
    for _ in range(20):
        assert_plugin_failed(get(tp, "/hog/x"))
    # Bounded: the VM is capped at 16 MiB; twenty more runs do not add to what three took.
    assert rss_kib() < after_first + 8 * 1024, (after_first, rss_kib())
    assert get(tp, "/echo/fine").status == 200


# ---- config errors, reload --------------------------------------------------------------------

def errors_of(turnpike_bin, tmp_path, cfg):
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(cfg))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    return [m.groupdict() for m in ERROR_LINE.finditer(out.stderr)], path


def test_schema_errors_point_at_the_line(origin, turnpike_bin, tmp_path):
    cfg = cfg_with(origin, [route("r", ["/*"], {"tracer": {"label": 5, "bogus": 1}, "tracr": {}})])
    errors, path = errors_of(turnpike_bin, tmp_path, cfg)
    text = path.read_text().splitlines()
    msgs = [e["message"] for e in errors]
    assert 'route "r": plugin "tracer": conf.label: expected string, got integer' in msgs
    assert 'route "r": plugin "tracer": conf.bogus: unknown property' in msgs
    assert 'route "r": unknown plugin "tracr" (did you mean "tracer"?)' in msgs
    for e in errors:
        if "conf.label" in e["message"]:
            assert "label" in text[int(e["line"]) - 1]


def test_a_plugin_that_does_not_load_refuses_the_config(origin, turnpike_bin, tmp_path):
    own = tmp_path / "plugins"
    own.mkdir()
    shutil.copy(PLUGINS / "broken_syntax.lua.txt", own / "broken.lua")
    cfg = cfg_with(origin, [route("r", ["/*"], {"broken": {}})], plugin_paths=[str(own)])
    errors, _ = errors_of(turnpike_bin, tmp_path, cfg)
    assert any('plugin "broken"' in e["message"] and "broken.lua" in e["message"] for e in errors), errors


def test_reload_loads_new_plugin_code_and_refuses_broken_code(origin, turnpike, tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    plugin = own / "stamp.lua"
    source = '''local turnpike = require "turnpike"
return { name = "stamp", priority = 1, schema = { type = "object", properties = {} },
  header_filter = function(conf, ctx) turnpike.response.set_header("x-stamp", "%s") end }'''
    plugin.write_text(source % "v1")
    cfg = cfg_with(origin, [route("r", ["/*"], {"stamp": {}})], plugin_paths=[str(own)])
    tp = turnpike(cfg)
    assert get(tp, "/echo").header("x-stamp") == "v1"
    plugin.write_text(source % "v2")
    tp.reload(cfg)
    assert get(tp, "/echo").header("x-stamp") == "v2"
    plugin.write_text("return {")
    tp.reload(cfg, expect_ok=False)
    assert 'plugin "stamp"' in tp.wait_log("reload refused")
    assert get(tp, "/echo").header("x-stamp") == "v2"


# ---- consumers --------------------------------------------------------------------------------

def test_key_auth_attaches_the_consumer_and_its_plugins(origin, turnpike, tmp_path):
    log_path = tmp_path / "access.log"
    consumers = [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}, "tracer": {"label": "alice"}}},
                 {"username": "bob", "plugins": {"key-auth": {"key": "k-bob"}}}]
    cfg = cfg_with(origin, [route("r", ["/*"], {"key-auth": {"hide_credentials": True}, "tracer": {"label": "r"}})],
                   consumers=consumers)
    cfg["log"]["access_log"] = str(log_path)
    tp = turnpike(cfg)
    missing = get(tp, "/echo")
    assert missing.status == 401 and missing.json()["message"] == "missing API key"
    wrong = get(tp, "/echo", headers=[("apikey", "nope")])
    assert wrong.status == 401 and wrong.json()["message"] == "invalid API key"
    bob = get(tp, "/echo/bob", headers=[("apikey", "k-bob")])
    assert "apikey" not in origin_headers(bob)  # hide_credentials
    assert bob.header("x-trace") == "r:rewrite,r:access,r:header"
    alice = get(tp, "/echo/alice?apikey=k-alice")
    # alice's tracer conf replaces the route's for the rest of the request.
    assert alice.header("x-trace") == "r:rewrite,alice:access,alice:header"
    assert "apikey" not in (alice.json()["query"] or "")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "consumer=alice" not in log_path.read_text():
        time.sleep(0.05)
    assert "consumer=alice" in log_path.read_text()
    assert "consumer=bob" in log_path.read_text()


# ---- body filters -----------------------------------------------------------------------------

def body_config(origin, mode):
    routes = [route("proxied", ["/echo/*"], {"shout": {"mode": mode}}),
              {"name": "static", "match": {"paths": ["/static"]}, "plugins": {"shout": {"mode": mode}},
               "respond": {"status": 200, "headers": {"content-type": "text/plain"}, "body": "quiet words\n"}}]
    return cfg_with(origin, routes)


@pytest.mark.parametrize("mode", ["stream", "whole"])
def test_a_body_filter_changes_proxied_and_local_bodies(origin, turnpike, mode):
    tp = turnpike(body_config(origin, mode))
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(2):  # the connection stays usable: the framing matches the new body
            proxied = conn.request("GET", "/echo/quiet")
            assert proxied.status == 200
            text = proxied.body.decode()
            if mode == "whole":  # one body at the end, with the plugin's trailer line
                assert text.endswith("\n-- shouted\n")
                text = text[: -len("\n-- shouted\n")]
            assert "/ECHO/QUIET" in text and text == text.upper()
            assert proxied.header("content-length") is None  # the length changed: streamed
            local = conn.request("GET", "/static")
            expected = "QUIET WORDS\n" + ("\n-- shouted\n" if mode == "whole" else "")
            assert local.body.decode() == expected
            assert local.header("content-length") == str(len(expected))


def test_an_observing_body_filter_sees_every_byte_and_changes_nothing(origin, turnpike, turnpike_bin, tmp_path):
    # watcher declares body_filter_mode = "observe": the response keeps its Content-Length, its
    # attempt to replace a piece is refused, and it still sees the whole body.
    tp = turnpike(cfg_with(origin, [route("r", ["/*"], {"watcher": {}})]))
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("GET", "/bytes/300000")
        assert resp.status == 200 and len(resp.body) == 300000 and b"replaced!" not in resp.body
        assert resp.header("content-length") == "300000" and resp.header("transfer-encoding") is None
        assert conn.request("GET", "/bytes/10").body == bytes(range(10))  # the connection is fine
    assert "watcher: 300000 bytes, replaced=false" in tp.wait_log(r"watcher: 300000 bytes")
    # A mode other than transform / observe does not load.
    own = tmp_path / "own"
    own.mkdir()
    (own / "odd.lua").write_text('return { name = "odd", priority = 1, body_filter_mode = "peek",'
                                 ' schema = { type = "object" }, body_filter = function() end }')
    cfg = cfg_with(origin, [route("r", ["/*"], {"odd": {}})], plugin_paths=[str(own)])
    errors, _ = errors_of(turnpike_bin, tmp_path, cfg)
    assert any("field 'body_filter_mode': expected \"transform\" or \"observe\"" in e["message"] for e in errors), errors


def test_a_failing_body_filter_leaves_the_body_and_closes_the_connection(origin, turnpike):
    tp = turnpike(body_config(origin, "raise"))
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("GET", "/echo/raise")
        assert resp.status == 200
        assert b"/echo/raise" in resp.body  # unchanged
        with pytest.raises((rawhttp.ConnectionClosed, ConnectionError)):  # closed after the response
            conn.request("GET", "/echo/again")
    assert "body filter broke" in tp.wait_log(r'plugin "shout" failed in body_filter')


def test_a_body_filter_may_wait(origin, turnpike):
    # slow-shout sleeps in body_filter on every piece; shout (priority 400) runs before it and
    # slow-shout's output is what the client gets. Proxied (HTTP/1.1 and HTTP/2 clients) and local.
    routes = [route("proxied", ["/echo/*"], {"slow-shout": {}}),
              route("both", ["/both/*"], {"shout": {"mode": "stream"}, "slow-shout": {}}),
              {"name": "static", "match": {"paths": ["/static"]}, "plugins": {"slow-shout": {}},
               "respond": {"status": 200, "headers": {"content-type": "text/plain"}, "body": "quiet words\n"}}]
    tp = turnpike(cfg_with(origin, routes, workers=1))
    with rawhttp.HttpConn(tp.port()) as conn:
        for target in ["/echo/slow", "/both/slow"]:
            resp = conn.request("GET", target)
            assert resp.status == 200, resp
            text = resp.body.decode()
            assert text.endswith(" pieces\n") and "/SLOW" in text.upper() and text.split("-- ")[0].isupper()
        local = conn.request("GET", "/static")
        assert local.body.decode() == "QUIET WORDS\n-- 1 pieces\n"
        assert local.header("content-length") == str(len(local.body))
    # Other requests are served while a body filter waits.
    slow_routes = [route("slow", ["/slow/*"], {"slow-shout": {"pause": 0.5}}), route("fast", ["/*"])]
    tp.reload(cfg_with(origin, slow_routes, workers=1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(get, tp, "/slow/x")
        time.sleep(0.1)
        started = time.monotonic()
        assert get(tp, "/echo/fast").status == 200
        assert time.monotonic() - started < 0.4
        assert slow.result(timeout=10).body.decode().endswith(" pieces\n")


# ---- timers -----------------------------------------------------------------------------------

def ticks(tp):
    resp = get(tp, "/echo/ticks")
    assert resp.status == 200, resp
    return int(resp.header("x-ticks")), int(resp.header("x-premature")), resp.header("x-timers")


def test_timers_run_on_the_worker_and_end_with_their_generation(origin, turnpike, tmp_path):
    cfg = cfg_with(origin, [route("r", ["/*"], {"ticker": {}})], workers=1, shared_dicts={"ticks": "1m"})
    tp = turnpike(cfg)
    deadline = time.monotonic() + 5
    count, premature, timers = ticks(tp)
    while count < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        count, premature, timers = ticks(tp)
    assert count >= 3 and premature == 0
    assert timers == "1/0"  # the periodic one; the one-shot has run (and raised)
    assert "ticker: a timer that raises" in tp.wait_log('plugin "ticker" timer')
    # The process and the requests are unaffected by the timer's error.
    assert get(tp, "/echo/after").status == 200

    # A reload that loads the plugin code afresh retires the old generation: its periodic timer
    # runs once more, premature, and stops; the new generation's init_worker starts its own.
    tp.reload(cfg)
    deadline = time.monotonic() + 5
    count, premature, timers = ticks(tp)
    while premature < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        count, premature, timers = ticks(tp)
    assert premature == 1
    time.sleep(0.3)
    before, _, timers = ticks(tp)
    assert timers == "1/0"  # one periodic timer: the new generation's, not two
    time.sleep(0.3)
    after, premature, _ = ticks(tp)
    assert 3 <= after - before <= 9  # one timer ticking every 50 ms, not two
    assert premature == 1

    # Without the plugin, no timer is left running.
    tp.reload(cfg_with(origin, [route("r", ["/*"])], workers=1, shared_dicts={"ticks": "1m"}))
    time.sleep(0.3)
    assert tp.stop() == 0

"""The circuit-breaker plugin in the real binary (2 workers): it opens only past the silent count
and the failure ratio; open, it answers at once without touching the origin (or sends to a
fallback upstream); half-open admits exactly N probes across workers, then closes or reopens; the
state is one per node, shared by the workers and by the routes of an upstream; connection
failures count; a probe whose client leaves does not wedge it; and its schema errors."""
from __future__ import annotations

import socket
import threading
import time

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, upstream, ERROR_LINE
from origin import Origin, closed_port

OPEN_BODY = {"error": "circuit_open", "message": "the upstream is failing; try again later"}


def route(name, plugins, up="origin"):
    """Route `name` answers Host `name`.test, so the origin's own paths (/status/500, /sleep/1000)
    stay as they are; the tests write targets as /<route>/<origin path>."""
    return {"name": name, "match": {"hosts": [f"{name}.test"], "paths": ["/*"]}, "upstream": up,
            "plugins": plugins}


def breaker(**conf):
    return {"circuit-breaker": conf}


def split_target(target):
    """"/silent/status/500" -> ("silent.test", "/status/500")."""
    name, _, rest = target[1:].partition("/")
    return f"{name}.test", "/" + rest


def sent_to(origin, prefix, path=None):
    """The requests `origin` received for the route of `prefix` ("/silent/"), on `path` if given."""
    host, _ = split_target(prefix)
    return [r for r in origin.snapshot() if r.header("host") == host and (path is None or r.path == path)]


def hits(origin, prefix):
    return len(sent_to(origin, prefix))


def get(tp, target, conn=None):
    host, path = split_target(target)
    if conn is not None:
        return conn.request("GET", path, host=host)
    with rawhttp.HttpConn(tp.port()) as c:
        return c.request("GET", path, host=host)


def assert_open(resp):
    assert resp.status == 503, resp
    assert resp.header("content-type") == "application/json"
    assert resp.json() == OPEN_BODY


def wait_until(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@pytest.fixture(scope="module")
def fallback_origin():
    o = Origin().start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def tp(origin_module, fallback_origin, turnpike_module):
    routes = [
        route("silent", breaker(min_requests=10, failure_ratio=0.5, window=60, open_duration=60)),
        route("ratio", breaker(min_requests=10, failure_ratio=0.5, window=60, open_duration=60)),
        route("fastfail", breaker(min_requests=3, failure_ratio=1, window=60, open_duration=60,
                                  fallback={"status": 429, "body": "busy", "headers": {"content-type": "text/plain",
                                                                                        "retry-after": "60"}})),
        route("probes", breaker(min_requests=3, failure_ratio=0.5, window=60, open_duration=1, half_open_requests=3)),
        route("reopen", breaker(min_requests=3, failure_ratio=0.5, window=60, open_duration=1,
                                max_open_duration=60, half_open_requests=1)),
        route("shared", breaker(min_requests=10, failure_ratio=1, window=60, open_duration=60)),
        route("fallback", breaker(min_requests=3, failure_ratio=1, window=60, open_duration=60,
                                  fallback={"upstream": "fallback"})),
        route("refused", breaker(min_requests=3, failure_ratio=1, window=60, open_duration=60), up="dead"),
        route("statuses", breaker(min_requests=3, failure_ratio=0.3, window=60, open_duration=60,
                                  failure_statuses=[429])),
        route("leaver", breaker(min_requests=3, failure_ratio=1, window=60, open_duration=1,
                                half_open_requests=1)),
        # Two routes on one upstream with the same conf share its breaker.
        route("up-a", breaker(scope="upstream", min_requests=3, failure_ratio=1, window=60, open_duration=60),
              up="scoped"),
        route("up-b", breaker(scope="upstream", min_requests=3, failure_ratio=1, window=60, open_duration=60),
              up="scoped"),
    ]
    upstreams = [upstream("origin", [origin_module.address]),
                 upstream("fallback", [fallback_origin.address]),
                 upstream("scoped", [origin_module.address]),
                 upstream("dead", [f"127.0.0.1:{closed_port()}"], retries=0)]
    return turnpike_module(base_config(routes=routes, upstreams=upstreams))


def test_opens_only_past_the_silent_count(tp, origin_module):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(9):  # every one fails, but 9 outcomes are under min_requests (10)
            assert get(tp, "/silent/status/500", conn).status == 500
        assert hits(origin_module, "/silent/") == 9
        assert get(tp, "/silent/status/500", conn).status == 500  # the 10th reaches it: 10 of 10
        assert_open(get(tp, "/silent/status/500", conn))
    assert hits(origin_module, "/silent/") == 10
    tp.wait_log('circuit breaker "route:silent": closed -> open, failure ratio reached: 10 failures of 10 requests')


def test_opens_only_when_the_failure_ratio_is_reached(tp, origin_module):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(6):
            assert get(tp, "/ratio/ok", conn).status == 200
        for _ in range(5):  # 5 of 11 = 0.45
            assert get(tp, "/ratio/status/502", conn).status == 502
        assert get(tp, "/ratio/ok", conn).status == 200  # 5 of 12 = 0.42: still closed
        assert get(tp, "/ratio/status/503", conn).status == 503  # 6 of 13 = 0.46
        assert get(tp, "/ratio/status/503", conn).status == 503  # 7 of 14 = 0.5: opens
        before = hits(origin_module, "/ratio/")
        assert_open(get(tp, "/ratio/ok", conn))
    assert hits(origin_module, "/ratio/") == before == 14


def test_open_answers_at_once_with_the_fallback_without_touching_the_origin(tp, origin_module):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(3):
            assert get(tp, "/fastfail/status/500", conn).status == 500
        for _ in range(50):
            resp = get(tp, "/fastfail/ok", conn)
            assert resp.status == 429, resp
            assert resp.body == b"busy"
            assert resp.header("content-type") == "text/plain"
            assert resp.header("retry-after") == "60"
    assert hits(origin_module, "/fastfail/") == 3


def trip(tp, prefix, n=3, check=True):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(n):
            assert get(tp, f"{prefix}/status/500", conn).status == 500
        if check:
            assert_open(get(tp, f"{prefix}/ok", conn))


def concurrent_gets(tp, target, n):
    """n requests at once, each on its own connection (spread over the workers): their responses."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        with rawhttp.HttpConn(tp.port(), timeout=15) as conn:
            barrier.wait(timeout=10)
            results[i] = get(tp, target, conn)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(r is not None for r in results)
    return results


def test_half_open_admits_exactly_n_probes_across_workers_then_closes(tp, origin_module):
    trip(tp, "/probes")
    time.sleep(1.2)  # open_duration 1 s
    before = hits(origin_module, "/probes/")
    # 24 clients at once; the probes take 1 s at the origin, so all are in flight together.
    results = concurrent_gets(tp, "/probes/sleep/1000", 24)
    passed = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 503]
    assert len(passed) == 3, results
    assert len(refused) == 21
    assert all(r.json() == OPEN_BODY for r in refused)
    assert hits(origin_module, "/probes/") - before == 3
    # Three successful probes closed it: everything passes again.
    tp.wait_log('circuit breaker "route:probes": half-open -> closed, the probes succeeded: 0 failures of 3 probes')
    assert all(r.status == 200 for r in concurrent_gets(tp, "/probes/ok", 8))


def test_a_failed_probe_reopens_it_for_longer(tp, origin_module):
    trip(tp, "/reopen")
    time.sleep(1.2)
    assert get(tp, "/reopen/status/500").status == 500  # the probe fails
    tp.wait_log('circuit breaker "route:reopen": half-open -> open, the probes failed: 1 failures of 1 probes')
    tp.wait_log(r'refusing requests for 2s \(trip 2\)')
    time.sleep(1.2)  # the first open time (1 s) is not enough now
    assert_open(get(tp, "/reopen/ok"))
    time.sleep(1.0)
    assert get(tp, "/reopen/ok").status == 200  # the probe succeeds: closed
    assert get(tp, "/reopen/ok").status == 200


def test_the_state_is_shared_by_the_workers(tp, origin_module):
    # Ten failures on ten connections (the kernel spreads connections over the 2 workers): with a
    # breaker per worker neither would have seen min_requests (10).
    for _ in range(10):
        with rawhttp.HttpConn(tp.port()) as conn:
            assert get(tp, "/shared/status/500", conn).status == 500
    results = concurrent_gets(tp, "/shared/ok", 16)
    assert all(r.status == 503 for r in results), [r.status for r in results]
    assert hits(origin_module, "/shared/") == 10


def test_open_sends_to_the_fallback_upstream(tp, origin_module, fallback_origin):
    trip(tp, "/fallback", check=False)
    tp.wait_log('circuit breaker "route:fallback": closed -> open')
    for _ in range(5):
        assert get(tp, "/fallback/ok").status == 200
    assert len(sent_to(fallback_origin, "/fallback/", "/ok")) == 5
    assert not sent_to(origin_module, "/fallback/", "/ok")


def test_connection_failures_count_as_failures(tp):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(3):
            resp = get(tp, "/refused/x", conn)
            assert resp.status == 502 and resp.json()["error"] == "upstream_connect_failed", resp
        assert_open(get(tp, "/refused/x", conn))


def test_failure_statuses_choose_what_counts(tp, origin_module):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(5):  # a 500 is not a failure here (or the 3rd would have opened it)
            assert get(tp, "/statuses/status/500", conn).status == 500
        for _ in range(3):  # 3 of 8 = 0.375 >= 0.3
            assert get(tp, "/statuses/status/429", conn).status == 429
        assert_open(get(tp, "/statuses/ok", conn))


def test_routes_of_an_upstream_share_its_breaker(tp):
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(3):
            assert get(tp, "/up-a/status/500", conn).status == 500
        assert_open(get(tp, "/up-b/ok", conn))  # tripped by up-a's requests
    tp.wait_log('circuit breaker "upstream:scoped": closed -> open')


def test_a_probe_whose_client_leaves_does_not_wedge_half_open(tp):
    trip(tp, "/leaver")
    time.sleep(1.2)
    # The only probe: its client sends the request and leaves while the origin sleeps.
    s = socket.create_connection(("127.0.0.1", tp.port()), timeout=5)
    s.sendall(b"GET /sleep/1500 HTTP/1.1\r\nHost: leaver.test\r\n\r\n")
    time.sleep(0.3)
    s.close()
    # The slot is given back (or the probe finishes): a later request is admitted and closes it.
    assert wait_until(lambda: get(tp, "/leaver/ok").status == 200, timeout=10, step=0.2)


def test_a_reload_with_the_same_conf_keeps_the_state(origin, turnpike):
    cfg = base_config(origin, routes=[route("r", breaker(min_requests=3, failure_ratio=1, window=60,
                                                         open_duration=60))])
    tp = turnpike(cfg)
    trip(tp, "/r")
    cfg["routes"].append({"name": "other", "match": {"paths": ["/other/*"]}, "upstream": "origin"})
    tp.reload(cfg)
    assert_open(get(tp, "/r/ok"))
    # A changed conf is a new breaker.
    cfg["routes"][0]["plugins"]["circuit-breaker"]["open_duration"] = 30
    tp.reload(cfg)
    assert get(tp, "/r/ok").status == 200


# ---- schema errors ------------------------------------------------------------------------------

def config_error(turnpike_bin, tmp_path, origin, conf):
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(base_config(origin, routes=[route("r", {"circuit-breaker": conf})])))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    return [m.group("message") for m in ERROR_LINE.finditer(out.stderr)]


@pytest.mark.parametrize("conf,message", [
    ({"failure_ratio": 0}, "conf.failure_ratio: expected at least 0.0001, got 0"),
    ({"failure_ratio": 1.5}, "conf.failure_ratio: expected at most 1, got 1.5"),
    ({"min_requests": 0}, "conf.min_requests: expected at least 1, got 0"),
    ({"scope": "node"}, 'conf.scope: expected one of "route", "upstream", got "node"'),
    ({"open_duration": 10, "max_open_duration": 5}, "conf.max_open_duration: must be at least open_duration (10)"),
    ({"failure_statuses": [99]}, "conf.failure_statuses[1]: expected at least 100, got 99"),
    ({"fallback": {"status": 503, "headers": {"x-a": {"b": 1}}}}, "conf.fallback.headers.x-a: expected string, got table"),
    ({"fallback": {"stauts": 503}}, "conf.fallback.stauts: unknown property"),
    ({"half_open": 3}, "conf.half_open: unknown property"),
])
def test_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    errors = config_error(turnpike_bin, tmp_path, origin, conf)
    assert f'route "r": plugin "circuit-breaker": {message}' in errors, errors

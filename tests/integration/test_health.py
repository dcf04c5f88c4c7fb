"""Upstream health checks (docs/health-checks.md): passive ejection on by default, active HTTP and
TCP checks from one checker per process, the max-ejection share, the all-down policy, health
state across reloads, slow start, and every node of a request in the access log."""
import re
import socket
import subprocess
import threading
import time

import rawhttp
from harness import KeepaliveLoad, base_config, check_config, dump_yaml, json_access_log, upstream, wait_access_entry
from origin import Origin, closed_port


def health_upstream(nodes, health=None, retries=2, name="origin", **extra):
    u = upstream(name, nodes, retries=retries, **extra)
    u["timeouts"]["connect"] = "500ms"
    if health is not None:
        u["health"] = health
    return u


def get_many(port, n, target="/echo/h"):
    """n GETs on one keepalive connection (a new one after a failure): the statuses."""
    statuses = []
    conn = None
    for i in range(n):
        try:
            if conn is None:
                conn = rawhttp.HttpConn(port, timeout=5)
            resp = conn.request("GET", f"{target}?i={i}")
            statuses.append(resp.status)
            if resp.status >= 500 or resp.has_token("connection", "close"):
                conn.close()
                conn = None
        except (OSError, rawhttp.ConnectionClosed):
            statuses.append(0)
            conn = None
    if conn:
        conn.close()
    return statuses


def count(pattern, text):
    return len(re.findall(pattern, text))


# ---- passive checks (on by default) ----

def test_refusing_node_is_ejected_without_any_health_config(origin, turnpike):
    # The case: two nodes, one refusing, retries 0. Before, a quarter to a half of the
    # requests failed; now the first failure ejects the node for every worker.
    dead = closed_port()
    tp = turnpike(base_config(origin, upstreams=[health_upstream([origin.address, f"127.0.0.1:{dead}"], retries=0)]))
    statuses = get_many(tp.port(), 40)
    assert statuses.count(200) >= 39, statuses
    assert statuses.count(502) <= 1, statuses
    log = tp.wait_log(rf"upstream origin: node 127\.0\.0\.1:{dead} ejected for 10\.0 s \(1 failure\(s\) in a row, "
                      r"the last: connect_failed, ejection 1 in a row; 1 of 2 nodes out\)")
    assert count(rf"127\.0\.0\.1:{dead} ejected", log) == 1, log


def test_passive_checks_can_be_switched_off(origin, turnpike):
    dead = closed_port()
    u = health_upstream([origin.address, f"127.0.0.1:{dead}"], retries=0, health={"passive": {"enabled": False}})
    tp = turnpike(base_config(origin, upstreams=[u], workers=1))
    statuses = get_many(tp.port(), 20)
    # Round-robin over two nodes, one refusing: every other request fails.
    assert statuses.count(502) == 10, statuses
    assert "ejected" not in tp.logs()


def test_ejected_node_comes_back_after_the_ejection_time(turnpike):
    a = Origin().start()
    b_port = closed_port()
    b = None
    try:
        u = health_upstream([a.address, f"127.0.0.1:{b_port}"],
                            health={"passive": {"ejection_time": "1s", "max_ejection_time": "8s"}})
        tp = turnpike(base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]))
        statuses = get_many(tp.port(), 10)
        assert statuses == [200] * 10, statuses  # the failure was retried on the other node
        tp.wait_log(rf"node 127\.0\.0\.1:{b_port} ejected for 1\.0 s")
        b = Origin().start(port=b_port)
        tp.wait_log(rf"node 127\.0\.0\.1:{b_port} back in rotation: ejection over", timeout=5)
        deadline = time.monotonic() + 5
        while not b.snapshot() and time.monotonic() < deadline:
            get_many(tp.port(), 4)
        assert b.snapshot(), "the node did not get requests after its ejection ended"
    finally:
        a.stop()
        if b:
            b.stop()


def test_repeated_ejections_grow_up_to_the_cap(origin, turnpike):
    dead = closed_port()
    u = health_upstream([origin.address, f"127.0.0.1:{dead}"],
                        health={"passive": {"ejection_time": "200ms", "max_ejection_time": "500ms"}})
    tp = turnpike(base_config(origin, upstreams=[u]))
    deadline = time.monotonic() + 10
    while count(rf"{dead} ejected", tp.logs()) < 3 and time.monotonic() < deadline:
        assert get_many(tp.port(), 5) == [200] * 5
        time.sleep(0.05)
    log = tp.logs()
    times = re.findall(rf"127\.0\.0\.1:{dead} ejected for ([0-9.]+) s", log)
    assert times[:3] == ["0.2", "0.4", "0.5"], log


def test_configured_statuses_eject(turnpike):
    a, b = Origin().start(), Origin().start()
    try:
        u = health_upstream([a.address, b.address], retries=0,
                            health={"passive": {"failures": 2, "statuses": [500]}})
        tp = turnpike(base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}],
                                  workers=1))
        # Both nodes answer 500, alternately: each has two failures in a row after four requests.
        statuses = get_many(tp.port(), 4, target="/status/500")
        assert statuses == [500] * 4
        log = tp.wait_log(r"ejected for 10\.0 s \(2 failure\(s\) in a row, the last: status")
        # The share (50% of 2 nodes) allows one ejection; the other node is kept, and told so.
        log = tp.wait_log(r"kept in rotation: 1 of 2 nodes are out already")
        assert count(r" ejected for ", log) == 1, log
    finally:
        a.stop()
        b.stop()


def test_a_success_ends_the_failures_in_a_row(origin, turnpike):
    u = health_upstream([origin.address], retries=0,
                        health={"max_ejected_percent": 100, "passive": {"failures": 2, "statuses": [503]}})
    tp = turnpike(base_config(origin, upstreams=[u], workers=1))
    for _ in range(5):  # 503, 200, 503, 200, ...: never two failures in a row
        assert get_many(tp.port(), 1, target="/status/503") == [503]
        assert get_many(tp.port(), 1, target="/echo/ok") == [200]
    assert "ejected" not in tp.logs()
    assert get_many(tp.port(), 2, target="/status/503") == [503, 503]
    tp.wait_log(r"ejected for 10\.0 s \(2 failure\(s\) in a row, the last: status")
    assert rawhttp.request(tp.port(), "GET", "/echo/after").status == 503


def test_max_ejected_share_holds(origin, turnpike):
    dead = [closed_port() for _ in range(3)]
    u = health_upstream([origin.address] + [f"127.0.0.1:{p}" for p in dead], retries=3)
    tp = turnpike(base_config(origin, upstreams=[u]))
    statuses = get_many(tp.port(), 30)
    assert statuses == [200] * 30, statuses
    log = tp.wait_log(r"kept in rotation: 2 of 4 nodes are out already \(max_ejected_percent 50\)")
    assert count(r" ejected for ", log) == 2, log


def test_all_down_fails_fast_with_503(turnpike):
    dead = closed_port()
    u = health_upstream([f"127.0.0.1:{dead}"], retries=0,
                        health={"max_ejected_percent": 100, "passive": {"ejection_time": "60s"}})
    tp = turnpike(base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]))
    first = rawhttp.request(tp.port(), "GET", "/x")
    assert first.status == 502
    tp.wait_log(r"ejected for 60\.0 s")
    resp = rawhttp.request(tp.port(), "GET", "/y")
    assert resp.status == 503
    assert resp.json() == {"error": "no_healthy_upstream", "message": "no node of the upstream is healthy"}


def test_all_down_try_tries_anyway(origin, turnpike):
    # A node that answers but is marked down by its check: with `all_down: try` it still serves.
    u = health_upstream([origin.address], retries=0,
                        health={"max_ejected_percent": 100, "all_down": "try",
                                "active": {"path": "/status/503", "interval": "100ms", "unhealthy": 1}})
    tp = turnpike(base_config(origin, upstreams=[u]))
    tp.wait_log(rf"node {re.escape(origin.address)} taken out: 1 check\(s\) failed in a row, the last: status 503")
    resp = rawhttp.request(tp.port(), "GET", "/echo/anyway")
    assert resp.status == 200


# ---- active checks ----

def test_killed_node_is_taken_out_and_comes_back_with_no_failed_request(turnpike):
    a, b = Origin().start(), Origin().start()
    b_port = b.port
    try:
        u = health_upstream([a.address, b.address],
                            health={"active": {"path": "/echo/health", "interval": "200ms", "healthy": 2, "unhealthy": 2,
                                               "timeout": "300ms"}})
        tp = turnpike(base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]))
        b.wait_for_path("/echo/health", timeout=5)
        with KeepaliveLoad(tp.port()) as load:
            time.sleep(0.5)
            killed = time.monotonic()
            b.stop()
            # Within the thresholds: 2 failed checks 200 ms apart (or a failed request first).
            tp.wait_log(rf"node 127\.0\.0\.1:{b_port} (taken out|ejected)", timeout=3)
            time.sleep(0.5)
            b = Origin().start(port=b_port)
            tp.wait_log(rf"node 127\.0\.0\.1:{b_port} back in rotation", timeout=5)
            b.wait_for(lambda rs: any(r.path == "/echo/load" for r in rs), timeout=5)
        # Requests the node had already received when it was killed fail (the retry policy does
        # not send a request again once a node took it); every request after that succeeds:
        # refused connects are retried on the other node and the node is out.
        late = [what for t, what in load.failures if t > killed + 0.2]
        assert late == [], late[:5]
        assert len(load.failures) <= len(load.threads), load.failures
        assert load.ok > 50
        checks = [r for r in b.snapshot() if r.path == "/echo/health"]
        assert checks and checks[0].header("user-agent") == "turnpike-health-check"
    finally:
        a.stop()
        b.stop()


def test_one_checker_per_process_not_per_worker(origin, turnpike):
    u = health_upstream([origin.address], health={"active": {"path": "/echo/health", "interval": "200ms"}})
    tp = turnpike(base_config(origin, upstreams=[u], workers=4))
    origin.wait_for(lambda rs: sum(r.path == "/echo/health" for r in rs) >= 6, timeout=5)
    start = sum(r.path == "/echo/health" for r in origin.snapshot())
    time.sleep(1.0)
    checks = sum(r.path == "/echo/health" for r in origin.snapshot()) - start
    # One checker at 200 ms: about 5 a second (4 workers each checking would be about 20).
    assert 3 <= checks <= 7, checks
    # ... on one kept connection, not a connect per check.
    conns = {r.conn_id for r in origin.snapshot() if r.path == "/echo/health"}
    assert len(conns) == 1, conns


def test_http_check_status_and_body(turnpike):
    ok, wrong_status, wrong_body = Origin().start(), Origin().start(), Origin().start()
    try:
        ups = [
            health_upstream([ok.address], name="ok",
                            health={"max_ejected_percent": 100,
                                    "active": {"path": "/echo/ready", "body": "/echo/ready", "interval": "100ms",
                                               "unhealthy": 1, "host": "health.local"}}),
            health_upstream([wrong_status.address], name="s",
                            health={"max_ejected_percent": 100,
                                    "active": {"path": "/status/404", "interval": "100ms", "unhealthy": 1}}),
            health_upstream([wrong_body.address], name="b",
                            health={"max_ejected_percent": 100,
                                    "active": {"path": "/echo/x", "body": "no such text", "statuses": [200],
                                               "interval": "100ms", "unhealthy": 1}}),
        ]
        routes = [{"name": n, "match": {"paths": [f"/{n}/*"]}, "upstream": n} for n in ("ok", "s", "b")]
        tp = turnpike(base_config(upstreams=ups, routes=routes))
        log = tp.wait_log(rf"upstream s: node {re.escape(wrong_status.address)} taken out: .* status 404")
        log = tp.wait_log(rf"upstream b: node {re.escape(wrong_body.address)} taken out: .* body does not match")
        assert f"upstream ok: node {ok.address} taken out" not in log
        assert ok.wait_for_path("/echo/ready").header("host") == "health.local"
        assert rawhttp.request(tp.port(), "GET", "/ok/x").status == 200
        assert rawhttp.request(tp.port(), "GET", "/s/x").status == 503
    finally:
        for o in (ok, wrong_status, wrong_body):
            o.stop()


def test_the_checker_says_how_it_makes_its_system_calls(origin, turnpike):
    # With io_uring (where the kernel allows it) a tick's sends and receives go in one system
    # call; without it, or with TURNPIKE_IO_URING=off (integration_health_one_by_one runs this
    # file's HTTP check tests that way), one call each. Either way the log says which, once.
    import os
    tp = turnpike(base_config(upstreams=[health_upstream([origin.address], health={
        "active": {"path": "/echo/ready", "interval": "100ms"}})]))
    log = tp.wait_log(r"health checks: (the sends and receives of each tick go in one io_uring_enter"
                      r"|one system call per send and receive)")
    if os.environ.get("TURNPIKE_IO_URING") == "off":
        assert "one system call per send and receive (TURNPIKE_IO_URING=off)" in log
    # Checks keep coming on the kept connection (so through the batch), and the line is not repeated.
    origin.wait_for(lambda rs: len([r for r in rs if r.path == "/echo/ready"]) >= 5)
    assert count(r"health checks: (the sends and receives|io_uring is not available|one system call per)", tp.logs()) == 1


def test_tcp_check_takes_a_dead_node_out(origin, turnpike):
    dead = closed_port()
    u = health_upstream([origin.address, f"127.0.0.1:{dead}"], retries=0,
                        health={"passive": {"enabled": False},
                                "active": {"type": "tcp", "interval": "100ms", "unhealthy": 2}})
    tp = turnpike(base_config(origin, upstreams=[u], workers=1))
    tp.wait_log(rf"node 127\.0\.0\.1:{dead} taken out: 2 check\(s\) failed in a row, the last: connect: Connection refused")
    assert get_many(tp.port(), 10) == [200] * 10


# ---- reload ----

def test_health_state_survives_a_reload_and_new_nodes_start_as_configured(turnpike):
    a, c = Origin().start(), Origin().start()
    dead = closed_port()
    try:
        health = {"passive": {"ejection_time": "60s"}}
        u = health_upstream([a.address, f"127.0.0.1:{dead}"], retries=0, health=health)
        cfg = base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}])
        tp = turnpike(cfg)
        get_many(tp.port(), 6)
        tp.wait_log(rf"{dead} ejected for 60\.0 s")
        # The reload changes the upstream (a node more, longer timeouts): the dead node stays out.
        u2 = health_upstream([a.address, f"127.0.0.1:{dead}", c.address], retries=0, health=health)
        u2["timeouts"]["read"] = "20s"
        cfg2 = dict(cfg, upstreams=[u2])
        tp.reload(cfg2)
        statuses = get_many(tp.port(), 30)
        assert statuses == [200] * 30, statuses
        assert c.snapshot(), "the new node gets traffic"
        assert count(rf"{dead} ejected", tp.logs()) == 1
        # A node added with `initial: unhealthy` waits for its checks.
        d = Origin().start()
        try:
            health3 = dict(health, initial="unhealthy",
                           active={"path": "/echo/health", "interval": "300ms", "healthy": 2})
            u3 = health_upstream([a.address, f"127.0.0.1:{dead}", c.address, d.address], retries=0, health=health3)
            tp.reload(dict(cfg, upstreams=[u3]))
            get_many(tp.port(), 8)
            assert not [r for r in d.snapshot() if r.path == "/echo/h"], "an unhealthy new node got traffic"
            tp.wait_log(rf"node {re.escape(d.address)} back in rotation: 2 check\(s\) passed", timeout=5)
            assert a.address not in re.findall(r"node (\S+) back in rotation", tp.logs())  # a was never out
        finally:
            d.stop()
    finally:
        a.stop()
        c.stop()


def test_slow_start_ramps_a_new_node(turnpike):
    a, b = Origin().start(), Origin().start()
    try:
        health = {"slow_start": "3s"}
        u = health_upstream([a.address], health=health)
        cfg = base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}],
                          workers=1)
        tp = turnpike(cfg)
        tp.reload(dict(cfg, upstreams=[health_upstream([a.address, b.address], health=health)]))
        t0 = time.monotonic()
        early_b = early = 0
        while time.monotonic() - t0 < 0.6:
            b_before = len(b.snapshot())
            get_many(tp.port(), 10)
            early += 10
            early_b += len(b.snapshot()) - b_before
        while time.monotonic() - t0 < 3.5:
            time.sleep(0.1)
        b_before = len(b.snapshot())
        get_many(tp.port(), 100)
        late_b = len(b.snapshot()) - b_before
        assert early_b / early < 0.3, (early_b, early)
        assert 40 <= late_b <= 60, late_b
    finally:
        a.stop()
        b.stop()


# ---- access log ----

def test_access_log_lists_every_node_tried(origin, turnpike, tmp_path):
    dead = closed_port()
    log_path = tmp_path / "access.log"
    cfg = json_access_log(base_config(origin, upstreams=[health_upstream([f"127.0.0.1:{dead}", origin.address])],
                                      workers=1), log_path)
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/echo/first").status == 200
    entry = wait_access_entry(log_path, "/echo/first", 5)
    assert entry is not None
    assert entry["upstream_addr"] == f"127.0.0.1:{dead}, {origin.address}"


# ---- configuration ----

def test_config_errors_point_at_the_key(turnpike_bin, tmp_path, origin):
    u = health_upstream([origin.address], health={"initial": "unhealthy", "all_down": "maybe",
                                                  "passive": {"failures": 0, "bogus": 1},
                                                  "active": {"type": "udp", "path": "health"}})
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(base_config(origin, upstreams=[u])))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result
    err = result.stderr
    assert 'upstream "origin": health.all_down: "maybe" is not a policy: use "fail" or "try"' in err
    assert 'health.passive.failures:' in err
    assert 'health.passive: unknown key "bogus"' in err or 'health.passive.bogus' in err, err
    assert 'health.active.type: "udp" is not a check type' in err
    assert 'health.active.path: must start with "/"' in err


def test_a_rolling_update_keeps_the_connections_of_nodes_that_stay(turnpike):
    a, b, c = Origin().start(), Origin().start(), Origin().start()
    try:
        cfg = base_config(upstreams=[health_upstream([a.address, b.address])],
                          routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}], workers=1)
        tp = turnpike(cfg)
        assert get_many(tp.port(), 4) == [200] * 4
        before = {r.conn_id for r in a.snapshot()}
        assert len(before) == 1
        # b is replaced by c: a's parked connection moves to the new pool and is used again.
        tp.reload(dict(cfg, upstreams=[health_upstream([a.address, c.address])]))
        assert get_many(tp.port(), 4) == [200] * 4
        assert {r.conn_id for r in a.snapshot()} == before
        assert len(c.snapshot()) == 2
    finally:
        for o in (a, b, c):
            o.stop()


# ---- kept check connections (HTTP/1.1) ----

class StallAfterFirst:
    """A node that answers the first request on each connection (200, kept alive) and never
    answers a later one: a kept check connection whose node hangs."""

    def __init__(self):
        self.stop_event = threading.Event()
        self.connections = 0
        self.requests = 0
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop_event.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock):
        sock.settimeout(0.2)
        buf, answered = b"", False
        deadline = time.monotonic() + 30
        with sock:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                try:
                    data = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    with self.lock:
                        self.requests += 1
                    if not answered:
                        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        answered = True

    def close(self):
        self.stop_event.set()
        self.listener.close()
        for t in self.threads:
            t.join(2)


def test_a_kept_check_connection_that_hangs_times_out(turnpike):
    node = StallAfterFirst()
    try:
        u = health_upstream([node.address], health={"max_ejected_percent": 100,
                                                    "active": {"interval": "100ms", "timeout": "300ms", "unhealthy": 1}})
        tp = turnpike(base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]))
        # The first check passes on a new connection, the second (on the kept one) gets no answer.
        log = tp.wait_log(rf"upstream origin: node {re.escape(node.address)} taken out: 1 check\(s\) failed in a row, "
                          r"the last: timeout", timeout=5)
        assert node.requests >= 2 and node.connections >= 1, (node.requests, node.connections)
        assert "back in rotation" not in log
    finally:
        node.close()


def test_the_check_connection_of_a_removed_node_is_reset_not_left_in_time_wait(turnpike):
    # A normal close by the checker would leave its side in TIME_WAIT for a minute per connection,
    # for every node a rolling update removes. (Removed between checks: a check's response still
    # unread when the connection closes makes a reset anyway.)
    a, b = Origin().start(), Origin().start()
    try:
        health = {"active": {"path": "/echo/health", "interval": "500ms"}}
        routes = [{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]
        cfg = base_config(upstreams=[health_upstream([a.address, b.address], health=health)], routes=routes, workers=1)
        tp = turnpike(cfg)
        b.wait_for(lambda rs: sum(r.path == "/echo/health" for r in rs) >= 2, timeout=5)
        assert len({r.conn_id for r in b.snapshot()}) == 1  # one kept check connection
        time.sleep(0.1)  # the check's response read: the connection idle until the next check
        port = b.address.rsplit(":", 1)[1]

        def sockets():  # the lines of `ss` for the checker's side of connections to b
            out = subprocess.run(["ss", "-tanH", f"( dport = :{port} )"], capture_output=True, text=True,
                                 check=True).stdout
            return [line.split() for line in out.splitlines() if line.strip()]
        # The kept check connection's own port: other tests running at the same time may have left
        # TIME-WAIT sockets towards an earlier listener on b's port, which say nothing of this one.
        [checker_port] = [cols[3].rsplit(":", 1)[1] for cols in sockets() if cols[0] == "ESTAB"]
        tp.reload(dict(cfg, upstreams=[health_upstream([a.address], health=health)]))
        tp.wait_log(r"health checks: 1 node\(s\) checked \(0 new, 1 no longer\)")
        time.sleep(0.5)
        left = [cols for cols in sockets() if cols[3].rsplit(":", 1)[1] == checker_port]
        assert left == [], left  # reset: neither TIME-WAIT nor anything else
        count = len(b.snapshot())
        time.sleep(0.6)
        assert len(b.snapshot()) == count, "the removed node is still checked"
    finally:
        a.stop()
        b.stop()


def test_a_check_whose_connect_never_completes_times_out(turnpike):
    # A listener whose accept queue is full drops further SYNs: the check's connect (made outside
    # the event loop) stays unfinished, and the check fails as a timeout, not as an error.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    fillers = []
    try:
        for _ in range(3):  # (a backlog of 0 queues one connection; the kernel may allow one more)
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(listener.getsockname())
            fillers.append(f)
        time.sleep(0.2)
        u = health_upstream([address], health={"max_ejected_percent": 100,
                                               "active": {"interval": "100ms", "timeout": "300ms", "unhealthy": 2}})
        tp = turnpike(base_config(upstreams=[u], routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]))
        tp.wait_log(rf"upstream origin: node {re.escape(address)} taken out: 2 check\(s\) failed in a row, "
                    r"the last: timeout", timeout=5)
    finally:
        for f in fillers:
            f.close()
        listener.close()


def test_a_kept_check_connection_the_node_drops_is_replaced_without_a_failure(origin, turnpike):
    # /drop-after answers (kept alive) and then drops the connection: every check finds the
    # last one closed, connects again and passes; with unhealthy: 1 one miscounted failure would show.
    u = health_upstream([origin.address], health={"max_ejected_percent": 100,
                                                  "active": {"path": "/drop-after", "interval": "100ms", "unhealthy": 1}})
    tp = turnpike(base_config(origin, upstreams=[u], workers=1))
    origin.wait_for(lambda rs: sum(r.path == "/drop-after" for r in rs) >= 8, timeout=5)
    assert "taken out" not in tp.logs()
    conns = {r.conn_id for r in origin.snapshot() if r.path == "/drop-after"}
    assert len(conns) >= 8, conns


# ---- HTTP/2 and gRPC checks ----

def h2_health_upstream(origins, health, protocol="h2c", **extra):
    u = health_upstream([o.address for o in origins], health=health, protocol=protocol, **extra)
    return u


def h2_routes():
    return [{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}]


GRPC_CHECK = "/grpc.health.v1.Health/Check"


def grpc_checks(origin):
    return [r for r in origin.snapshot() if r.path == GRPC_CHECK]


def test_grpc_check_takes_a_not_serving_node_out_and_brings_it_back(turnpike):
    from h2origin import H2Origin
    a, b = H2Origin(name="a").start(), H2Origin(name="b").start()
    a.health, b.health = {"orders": 1}, {"orders": 1}
    try:
        u = h2_health_upstream([a, b], {"max_ejected_percent": 100,
                                        "active": {"type": "grpc", "grpc_service": "orders", "interval": "100ms",
                                                   "healthy": 2, "unhealthy": 2}})
        tp = turnpike(base_config(upstreams=[u], routes=h2_routes(), workers=2))
        b.wait_for(lambda rs: sum(r.path == GRPC_CHECK for r in rs) >= 3, timeout=5)
        check = grpc_checks(b)[0]
        assert check.method == "POST" and check.header("content-type") == "application/grpc"
        assert check.header("te") == "trailers" and check.header("user-agent") == "turnpike-health-check"
        assert check.body == b"\x00\x00\x00\x00\x08\x0a\x06orders"  # HealthCheckRequest{service: "orders"}
        # One session per node, a stream per check (not a connection per check, not one per worker).
        assert len({r.conn_id for r in grpc_checks(b)}) == 1

        b.health["orders"] = 2  # NOT_SERVING
        tp.wait_log(rf"upstream origin: node {re.escape(b.address)} taken out: 2 check\(s\) failed in a row, "
                    r"the last: grpc: NOT_SERVING", timeout=5)
        before = sum(r.path.startswith("/echo") for r in b.snapshot())
        assert get_many(tp.port(), 10) == [200] * 10
        assert sum(r.path.startswith("/echo") for r in b.snapshot()) == before  # all went to a

        b.health["orders"] = 1
        tp.wait_log(rf"upstream origin: node {re.escape(b.address)} back in rotation: 2 check\(s\) passed", timeout=5)
        assert f"node {a.address} taken out" not in tp.logs()
    finally:
        a.stop()
        b.stop()
        assert not a.errors and not b.errors, (a.errors, b.errors)


def test_grpc_check_of_an_unknown_service_fails(turnpike):
    from h2origin import H2Origin
    origin = H2Origin().start()
    try:
        u = h2_health_upstream([origin], {"max_ejected_percent": 100,
                                          "active": {"type": "grpc", "grpc_service": "no.such.Service",
                                                     "interval": "100ms", "unhealthy": 1}})
        tp = turnpike(base_config(upstreams=[u], routes=h2_routes()))
        tp.wait_log(rf"node {re.escape(origin.address)} taken out: 1 check\(s\) failed in a row, "
                    r"the last: grpc-status 5 \(unknown service\)", timeout=5)
        assert get_many(tp.port(), 2) == [503, 503]
    finally:
        origin.stop()


def test_h2_check_status_over_h2c(turnpike):
    from h2origin import H2Origin
    origin = H2Origin().start()
    try:
        u = h2_health_upstream([origin], {"max_ejected_percent": 100,
                                          "active": {"type": "h2", "path": "/health", "body": "ok", "host": "health.local",
                                                     "interval": "100ms", "healthy": 1, "unhealthy": 2}})
        tp = turnpike(base_config(upstreams=[u], routes=h2_routes()))
        first = origin.wait_for(lambda rs: any(r.path == "/health" for r in rs), timeout=5)
        check = next(r for r in first if r.path == "/health")
        assert (check.method, check.scheme, check.authority) == ("GET", "http", "health.local")
        origin.health_status = 503
        tp.wait_log(rf"node {re.escape(origin.address)} taken out: 2 check\(s\) failed in a row, the last: status 503",
                    timeout=5)
        origin.health_status = 200
        tp.wait_log(rf"node {re.escape(origin.address)} back in rotation: 1 check\(s\) passed", timeout=5)
        assert get_many(tp.port(), 3) == [200] * 3
    finally:
        origin.stop()


def test_h2_check_over_tls_needs_alpn_h2(turnpike, tmp_path):
    import tlsutil
    from h2origin import H2Origin
    cert, key = tlsutil.make_cert(tmp_path / "pki", "origin", "origin.test")
    good = H2Origin(tls=(cert, key)).start()
    h1_only = H2Origin(tls=(cert, key), alpn=("http/1.1",)).start()
    try:
        tls = {"ca_file": str(cert), "sni": "origin.test"}
        health = {"max_ejected_percent": 100, "active": {"type": "grpc", "interval": "100ms", "unhealthy": 1}}
        ups = [h2_health_upstream([good], health, protocol="h2", name="good", tls=tls),
               h2_health_upstream([h1_only], health, protocol="h2", name="h1", tls=tls)]
        routes = [{"name": n, "match": {"paths": [f"/{n}/*"]}, "upstream": n} for n in ("good", "h1")]
        tp = turnpike(base_config(upstreams=ups, routes=routes))
        log = tp.wait_log(rf"upstream h1: node {re.escape(h1_only.address)} taken out: .* the last: "
                          r"tls: the node did not choose h2 \(ALPN\)", timeout=5)
        good.wait_for(lambda rs: sum(r.path == GRPC_CHECK for r in rs) >= 3, timeout=5)
        assert grpc_checks(good)[0].scheme == "https"
        assert "upstream good: node" not in log
    finally:
        good.stop()
        h1_only.stop()


def test_h2_and_grpc_check_config_errors(turnpike_bin, tmp_path, origin):
    ups = [health_upstream([origin.address], name="g", health={"active": {"type": "grpc", "path": "/x", "body": "y"}},
                           protocol="h2c"),
           health_upstream([origin.address], name="s", health={"active": {"type": "http", "grpc_service": "x"}}),
           health_upstream([origin.address], name="p", health={"active": {"type": "http"}}, protocol="h2c")]
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(base_config(origin, upstreams=ups)))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result
    err = result.stderr
    assert 'upstream "g": health.active.path: does not apply to "grpc" checks' in err, err
    assert 'upstream "g": health.active.body: does not apply to "grpc" checks' in err, err
    assert 'upstream "s": health.active.grpc_service: applies to "grpc" checks only' in err, err
    assert 'upstream "p": health.active.type: HTTP/2 upstreams support "h2", "grpc" and "tcp" checks' in err, err

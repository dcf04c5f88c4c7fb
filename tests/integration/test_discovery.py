"""Node discovery by DNS (docs/load-balancing.md, "Node discovery"): a real dnsmasq on 127.0.0.1
and a free port answers for names that resolve to test origins on 127.0.0.x. Every address of a
name is a node; re-resolution adds and removes nodes without a reload, keeps the health state of
the addresses that stay, keeps the last addresses when DNS fails; SRV names give targets, ports
and weights."""
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import rawhttp
from harness import KeepaliveLoad, admin_get, base_config, check_config, dump_yaml, upstream, upstream_nodes, wait_nodes
from origin import Origin

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
pytestmark = pytest.mark.skipif(not shutil.which("dnsmasq") and not shutil.which("/usr/sbin/dnsmasq"),
                                reason="dnsmasq is not installed (deploy/install-deps.sh)")

ROUTES = [{"name": "all", "match": {"paths": ["/*"]}, "upstream": "app"}]


def common_port(hosts, tries=20) -> int:
    """A TCP port free on every one of `hosts` (a name's addresses share the node's port)."""
    for _ in range(tries):
        first = socket.socket()
        first.bind((hosts[0], 0))
        port = first.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            s = socket.socket()
            try:
                s.bind((h, port))
            except OSError:
                ok = False
            finally:
                s.close()
        first.close()
        if ok:
            return port
    raise AssertionError("no common free port")


def dns_port(tries=20) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq serves both)."""
    for _ in range(tries):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise AssertionError("no free DNS port")


class Dnsmasq:
    """A dnsmasq answering from a hosts file (re-read on SIGHUP) and --srv-host records, with
    TTL 0 for everything (so nothing is cached by the resolver side)."""

    def __init__(self, workdir, srv=()):
        self.workdir = workdir
        self.hosts_file = workdir / "dns-hosts"
        self.log_file = workdir / "dnsmasq.log"
        self.srv = list(srv)
        self.port = 0
        self.proc = None

    def set_hosts(self, entries, reload=True):
        """entries: [(address, name), ...]."""
        tmp = self.hosts_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{a} {n}\n" for a, n in entries))
        tmp.replace(self.hosts_file)
        if reload and self.proc:
            self.proc.send_signal(signal.SIGHUP)

    def start(self):
        if not self.hosts_file.exists():
            self.set_hosts([], reload=False)
        self.port = dns_port()
        args = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--user=root",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts_file}", "--local-ttl=0", "--log-queries",
                f"--log-facility={self.log_file}"]
        args += [f"--srv-host={s}" for s in self.srv]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited: {self.proc.stdout.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("dnsmasq did not start listening")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def dns(tmp_path):
    servers = []

    def make(srv=()):
        d = Dnsmasq(tmp_path, srv)
        servers.append(d)
        return d

    yield make
    for d in servers:
        d.stop()


@pytest.fixture
def origins():
    started = []

    def make(hosts, port):
        os = [Origin().start(h, port) for h in hosts]
        started.extend(os)
        return os

    yield make
    for o in started:
        o.stop()


def discovery_config(dns_server, nodes, interval="200ms", **up_extra):
    u = upstream("app", nodes, **up_extra)
    u["resolve_interval"] = interval
    u["timeouts"]["connect"] = "500ms"
    cfg = base_config(upstreams=[u], routes=ROUTES, resolver={"servers": [dns_server]})
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return cfg


def get_many(port, n):
    statuses = []
    with rawhttp.HttpConn(port, timeout=5) as conn:
        for i in range(n):
            resp = conn.request("GET", f"/echo/d?i={i}")
            statuses.append(resp.status)
    return statuses


def served(o):
    return len([r for r in o.snapshot() if r.path.startswith("/echo/d")])


def test_every_address_of_a_name_is_a_node(turnpike, dns, origins):
    port = common_port(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    a, b, c = origins(["127.0.0.2", "127.0.0.3", "127.0.0.4"], port)
    d = dns()
    d.set_hosts([("127.0.0.2", "app.test"), ("127.0.0.3", "app.test"), ("127.0.0.4", "app.test")], reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, [{"host": "app.test", "port": port, "weight": 3}], interval="0s"))
    nodes = wait_nodes(tp, [a.address, b.address, c.address], timeout=1)
    assert all(n["host"] == "app.test" and n["weight"] == 3 for n in nodes.values()), nodes
    assert get_many(tp.port(), 30) == [200] * 30
    assert (served(a), served(b), served(c)) == (10, 10, 10)


def test_added_address_gets_traffic_and_removed_one_stops_without_a_reload(turnpike, dns, origins):
    port = common_port(["127.0.0.2", "127.0.0.3"])
    a, b = origins(["127.0.0.2", "127.0.0.3"], port)
    d = dns()
    d.set_hosts([("127.0.0.2", "app.test")], reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, [f"app.test:{port}"]))
    before = tp.state()
    assert get_many(tp.port(), 6) == [200] * 6
    assert served(a) == 6 and served(b) == 0

    d.set_hosts([("127.0.0.2", "app.test"), ("127.0.0.3", "app.test")])
    wait_nodes(tp, [a.address, b.address])
    tp.wait_log(rf'upstream "app": nodes changed by DNS: 2 nodes, added {re.escape(b.address)}, removed none')
    assert get_many(tp.port(), 10) == [200] * 10
    assert served(b) >= 4, "the added address gets its share"
    # Each node of the new list has its own series on /metrics, named by its address.
    metrics = admin_get(tp, "/metrics").body.decode()
    for o in (a, b):
        assert f'turnpike_upstream_node_health{{upstream="app",node="{o.address}",state="healthy"}} 1' in metrics, metrics

    d.set_hosts([("127.0.0.3", "app.test")])
    wait_nodes(tp, [b.address])
    tp.wait_log(rf'nodes changed by DNS: 1 nodes, added none, removed {re.escape(a.address)}')
    a.reset()
    assert get_many(tp.port(), 10) == [200] * 10
    assert served(a) == 0, "the removed address still gets requests"
    after = tp.state()
    # No reload: the same generation, no reload attempt.
    assert after["generation"] == before["generation"] and after["reload_attempts"] == before["reload_attempts"]


def test_a_name_whose_many_addresses_change_logs_the_first_sixteen_and_a_count(turnpike, dns):
    # 40 addresses (nothing listens on them: the change is what is logged) replaced by 40 others.
    first = [f"127.0.1.{i}" for i in range(1, 41)]
    second = [f"127.0.2.{i}" for i in range(1, 41)]
    d = dns()
    d.set_hosts([(ip, "many.test") for ip in first], reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, ["many.test:8080"]))
    d.set_hosts([(ip, "many.test") for ip in second])
    line = tp.wait_log(r'upstream "app": nodes changed by DNS: 40 nodes, added .* removed .*')
    line = next(ln for ln in line.splitlines() if "nodes changed by DNS: 40 nodes" in ln)
    added = line.split("added ", 1)[1].split(", removed ", 1)[0]
    removed = line.split(", removed ", 1)[1]
    assert added.endswith(" ... and 24 more") and removed.endswith(" ... and 24 more"), line
    assert len(added.split(" ... ")[0].split()) == 16 and len(removed.split(" ... ")[0].split()) == 16, line
    assert all(a.startswith("127.0.2.") for a in added.split(" ... ")[0].split()), line
    assert all(a.startswith("127.0.1.") for a in removed.split(" ... ")[0].split()), line


def test_respect_ttl_looks_a_name_up_again_when_its_ttl_runs_out(turnpike, dns, origins):
    # dnsmasq answers with TTL 0: min_ttl (200ms) applies, not the hour-long interval.
    port = common_port(["127.0.0.2", "127.0.0.3"])
    a, b = origins(["127.0.0.2", "127.0.0.3"], port)
    d = dns()
    d.set_hosts([("127.0.0.2", "app.test")], reload=False)
    d.start()
    cfg = discovery_config(d.server, [f"app.test:{port}"])
    del cfg["upstreams"][0]["resolve_interval"]
    cfg["resolver"].update(interval="1h", respect_ttl=True, min_ttl="200ms", max_ttl="1h")
    tp = turnpike(cfg)
    wait_nodes(tp, [a.address], timeout=1)
    d.set_hosts([("127.0.0.3", "app.test")])
    wait_nodes(tp, [b.address], timeout=5)


def test_changes_under_load_fail_no_request(turnpike, dns, origins):
    port = common_port(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    origins(["127.0.0.2", "127.0.0.3", "127.0.0.4"], port)
    d = dns()
    sets = [["127.0.0.2"], ["127.0.0.2", "127.0.0.3"], ["127.0.0.3", "127.0.0.4"], ["127.0.0.4", "127.0.0.2"]]
    d.set_hosts([(h, "app.test") for h in sets[0]], reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, [f"app.test:{port}"], interval="100ms"))
    with KeepaliveLoad(tp.port()) as load:
        for round_ in range(8):
            hosts = sets[(round_ + 1) % len(sets)]
            d.set_hosts([(h, "app.test") for h in hosts])
            wait_nodes(tp, [f"{h}:{port}" for h in hosts])
    assert not load.failures, load.failures[:10]
    assert load.ok > 50
    assert len(re.findall(r"nodes changed by DNS", tp.logs())) >= 8


def test_health_of_an_unchanged_address_survives_a_change(turnpike, dns, origins):
    port = common_port(["127.0.0.2", "127.0.0.3", "127.0.0.5"])
    a, c = origins(["127.0.0.2", "127.0.0.3"], port)  # 127.0.0.5 refuses
    d = dns()
    d.set_hosts([("127.0.0.2", "app.test"), ("127.0.0.5", "app.test")], reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, [f"app.test:{port}"], retries=1,
                                   health={"passive": {"ejection_time": "60s"}}))
    assert get_many(tp.port(), 6) == [200] * 6
    tp.wait_log(rf"node 127\.0\.0\.5:{port} ejected for 60\.0 s")
    d.set_hosts([("127.0.0.2", "app.test"), ("127.0.0.5", "app.test"), ("127.0.0.3", "app.test")])
    nodes = wait_nodes(tp, [a.address, c.address, f"127.0.0.5:{port}"])
    assert nodes[f"127.0.0.5:{port}"]["health"] == "ejected", nodes
    assert get_many(tp.port(), 12) == [200] * 12
    assert served(c) > 0, "the added node gets traffic"
    assert len(re.findall(rf"127\.0\.0\.5:{port} ejected", tp.logs())) == 1, "the ejected node was put back"


def test_dns_failure_keeps_the_last_addresses(turnpike, dns, origins):
    port = common_port(["127.0.0.2", "127.0.0.3"])
    a, b = origins(["127.0.0.2", "127.0.0.3"], port)
    d = dns()
    d.set_hosts([("127.0.0.2", "app.test"), ("127.0.0.3", "app.test")], reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, [f"app.test:{port}"]))
    d.stop()  # refused from now on
    tp.wait_log(r"DNS lookup of app\.test failed \(.*\): keeping its last addresses \(127\.0\.0\.2 127\.0\.0\.3\)")
    # An empty answer (the name gone) is a failure too: the nodes stay.
    d.set_hosts([], reload=False)
    asked = d.log_file.read_text().count(" app.test from ")
    d.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and d.log_file.read_text().count(" app.test from ") <= asked:
        time.sleep(0.05)
    time.sleep(0.1)  # the answer's processing
    assert set(upstream_nodes(tp)) == {a.address, b.address}
    assert get_many(tp.port(), 10) == [200] * 10
    assert served(a) == 5 and served(b) == 5
    metrics = admin_get(tp, "/metrics").body.decode()
    failed = re.search(r'^turnpike_dns_lookups_total\{result="failed"\} (\d+)', metrics, re.M)
    assert failed and int(failed.group(1)) >= 2, metrics
    assert len(re.findall(r"DNS lookup of app\.test failed", tp.logs())) == 1, "one line per failing streak"


def test_srv_records_give_targets_ports_and_weights(turnpike, dns, origins):
    port_a = common_port(["127.0.0.2"])
    port_b = common_port(["127.0.0.3"])
    a = origins(["127.0.0.2"], port_a)[0]
    b = origins(["127.0.0.3"], port_b)[0]
    d = dns(srv=[f"_http._tcp.svc.test,a.svc.test,{port_a},0,3", f"_http._tcp.svc.test,b.svc.test,{port_b},0,1",
                 f"_http._tcp.svc.test,backup.svc.test,{port_b},1,1"])
    d.set_hosts([("127.0.0.2", "a.svc.test"), ("127.0.0.3", "b.svc.test"), ("127.0.0.4", "backup.svc.test")],
                reload=False)
    d.start()
    tp = turnpike(discovery_config(d.server, [{"service": "_http._tcp.svc.test"}]))
    # The backup target (priority 1) is not a node while priority 0 has targets.
    nodes = wait_nodes(tp, [a.address, b.address], timeout=1)
    assert nodes[a.address]["weight"] == 3 and nodes[a.address]["host"] == "a.svc.test", nodes
    assert nodes[b.address]["weight"] == 1 and nodes[b.address]["host"] == "b.svc.test", nodes
    assert get_many(tp.port(), 8) == [200] * 8
    assert (served(a), served(b)) == (6, 2)


def test_a_name_that_never_resolved_stops_the_start(turnpike_bin, dns, tmp_path):
    d = dns()
    d.start()
    cfg = discovery_config(d.server, ["nowhere.test:8080"])
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(cfg))
    res = check_config(turnpike_bin, path)
    assert res.returncode != 0
    assert re.search(r't\.yaml:\d+: upstream "app": cannot resolve host "nowhere\.test": ', res.stderr), res.stderr


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(resolver={"servers": ["dns.example"]}),
     r'resolver\.servers: "dns\.example" is not a DNS server'),
    (lambda c: c.update(resolver={"servers": ["127.0.0.1:53"], "family": "ipv5"}),
     r'resolver\.family: "ipv5" is not an address family'),
    (lambda c: c.update(resolver={"servers": ["127.0.0.1:53"], "min_ttl": "10s", "max_ttl": "1s"}),
     r"resolver\.max_ttl: must not be below min_ttl"),
    (lambda c: c.update(resolver={"bogus": 1}), r'resolver.*"bogus"'),
    (lambda c: c["upstreams"][0].update(resolve_interval="soon"), r"upstream \"app\"\.resolve_interval|resolve_interval"),
    (lambda c: c["upstreams"][0].update(nodes=[{"service": "_http._tcp.x.test", "port": 80}]),
     r'"service" \(an SRV name\) gives the nodes\' hosts, ports and weights'),
    (lambda c: c["upstreams"][0].update(nodes=["srv://10.0.0.1"]), r'service "10\.0\.0\.1" is not a DNS name'),
])
def test_config_errors_point_at_the_key(turnpike_bin, tmp_path, change, message):
    cfg = base_config(upstreams=[upstream("app", ["127.0.0.1:8080"])], routes=ROUTES)
    change(cfg)
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(cfg))
    res = check_config(turnpike_bin, path)
    assert res.returncode != 0
    assert re.search(rf"t\.yaml:\d+: .*{message}", res.stderr), res.stderr

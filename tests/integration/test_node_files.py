"""Node files (docs/configuration.md, "Node files"): an upstream's nodes read from a file of one
node per line, and read again when the file changes, without a reload: renamed into place,
written in place (read once closed), swapped as a Kubernetes ConfigMap volume swaps its `..data`
symlink. A file that is wrong, empty or gone is refused and the upstream keeps its nodes; the
health of the nodes that stay is kept; requests under a stream of changes all succeed."""
import json
import os
import re
import time

import pytest

import rawhttp
from harness import KeepaliveLoad, admin_get, base_config, check_config, dump_yaml, upstream, upstream_nodes, wait_nodes
from origin import Origin

ROUTES = [{"name": "all", "match": {"paths": ["/*"]}, "upstream": "app"}]


@pytest.fixture
def origins():
    started = []

    def make(n):
        os_ = [Origin().start() for _ in range(n)]
        started.extend(os_)
        return os_

    yield make
    for o in started:
        o.stop()


def node_file_config(path, **up_extra):
    u = upstream("app", [], **up_extra)
    del u["nodes"]
    u["nodes_file"] = str(path)
    u["timeouts"]["connect"] = "500ms"
    cfg = base_config(upstreams=[u], routes=ROUTES)
    cfg["admin"] = {"listen": "127.0.0.1:0"}
    return cfg


def replace(path, text):
    """How a deploy tool should write the file: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def metric(tp, result):
    text = admin_get(tp, "/metrics").body.decode()
    m = re.search(rf'^turnpike_node_file_updates_total\{{result="{result}"\}} (\d+)', text, re.M)
    assert m, text
    return int(m.group(1))


def get_many(port, n):
    with rawhttp.HttpConn(port, timeout=5) as conn:
        return [conn.request("GET", f"/echo/n?i={i}").status for i in range(n)]


def served(o):
    return len([r for r in o.snapshot() if r.path.startswith("/echo/n")])


def test_the_nodes_follow_the_file_without_a_reload(turnpike, origins, tmp_path):
    a, b = origins(2)
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"# app\n{a.address}\n")
    tp = turnpike(node_file_config(nodes))
    before = tp.state()
    assert get_many(tp.port(), 4) == [200] * 4
    assert (served(a), served(b)) == (4, 0)

    replace(nodes, f"{a.address} weight=1\n{b.address} weight=3\n")
    got = wait_nodes(tp, [a.address, b.address])
    assert got[b.address]["weight"] == 3
    tp.wait_log(rf'upstream "app": nodes changed by {re.escape(str(nodes))}: 2 nodes, added {re.escape(b.address)}, '
                r'removed none')
    a.reset()
    assert get_many(tp.port(), 8) == [200] * 8
    assert (served(a), served(b)) == (2, 6), "weights from the file apply"

    replace(nodes, f"{b.address}\n")
    wait_nodes(tp, [b.address])
    tp.wait_log(rf'nodes changed by {re.escape(str(nodes))}: 1 nodes, added none, removed {re.escape(a.address)}')
    a.reset()
    b.reset()
    assert get_many(tp.port(), 5) == [200] * 5
    assert (served(a), served(b)) == (0, 5)
    after = tp.state()
    assert after["generation"] == before["generation"] and after["reload_attempts"] == before["reload_attempts"]
    assert metric(tp, "ok") == 2 and metric(tp, "failed") == 0
    # /config shows where the nodes come from and the nodes in use.
    cfg = json.loads(admin_get(tp, "/config").body)
    (app,) = cfg["upstreams"]
    assert app["nodes_file"] == str(nodes)
    assert [(n["host"], n["port"]) for n in app["nodes"]] == [("127.0.0.1", b.port)]
    # The watcher's timer and inotify read do not hold the stop up.
    assert tp.stop(timeout=10) == 0, tp.logs()[-2000:]


def test_a_file_written_in_place_is_read_once_closed(turnpike, origins, tmp_path):
    a, b = origins(2)
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n")
    tp = turnpike(node_file_config(nodes))
    with open(nodes, "w") as f:  # truncated, then written in two parts
        f.write(f"{b.address}\n")
        f.flush()
        time.sleep(0.3)
        assert set(upstream_nodes(tp)) == {a.address}, "a file still being written was read"
        f.write(f"{a.address}\n")
    wait_nodes(tp, [a.address, b.address])


def test_a_name_in_the_file_is_looked_up(turnpike, origins, tmp_path):
    a, b = origins(2)
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n")
    tp = turnpike(node_file_config(nodes))
    replace(nodes, f"localhost:{b.port}\n")
    got = wait_nodes(tp, [b.address])
    assert got[b.address]["host"] == "localhost"
    assert get_many(tp.port(), 3) == [200] * 3
    assert served(b) == 3


def test_a_configmap_style_symlink_swap_is_seen(turnpike, origins, tmp_path):
    # A ConfigMap volume: nodes.txt -> ..data/nodes.txt, ..data -> a timestamped folder that is
    # replaced by renaming a new symlink over ..data.
    a, b = origins(2)
    vol = tmp_path / "vol"
    (vol / "..v1").mkdir(parents=True)
    (vol / "..v1" / "nodes.txt").write_text(f"{a.address}\n")
    os.symlink("..v1", vol / "..data")
    os.symlink("..data/nodes.txt", vol / "nodes.txt")
    tp = turnpike(node_file_config(vol / "nodes.txt"))
    wait_nodes(tp, [a.address])
    (vol / "..v2").mkdir()
    (vol / "..v2" / "nodes.txt").write_text(f"{b.address}\n")
    os.symlink("..v2", vol / "..data_tmp")
    os.replace(vol / "..data_tmp", vol / "..data")
    wait_nodes(tp, [b.address])


@pytest.mark.parametrize("text, message", [
    ("{a}\n{a2} weight=0\n", r'nodes\.txt:2: weight "0" is not an integer 1\.\.10000'),
    ("# nothing yet\n", r"nodes\.txt:0: no nodes: at least one is required"),
    ("{a} colour=red\n", r'nodes\.txt:1: unknown option "colour"'),
])
def test_a_bad_file_is_refused_and_the_upstream_keeps_its_nodes(turnpike, origins, tmp_path, text, message):
    a, b = origins(2)
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n")
    tp = turnpike(node_file_config(nodes))
    replace(nodes, text.format(a=b.address, a2=a.address))
    tp.wait_log(rf'node file {re.escape(str(nodes))} refused: upstream "app" keeps its 1 nodes')
    tp.wait_log(message)
    assert metric(tp, "failed") == 1 and metric(tp, "ok") == 0
    assert set(upstream_nodes(tp)) == {a.address}
    assert get_many(tp.port(), 3) == [200] * 3
    assert (served(a), served(b)) == (3, 0)
    # Fixed: taken at once.
    replace(nodes, f"{b.address}\n")
    wait_nodes(tp, [b.address])
    assert metric(tp, "ok") == 1


def test_a_removed_file_is_refused_and_its_return_is_seen(turnpike, origins, tmp_path):
    a, b = origins(2)
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n")
    tp = turnpike(node_file_config(nodes))
    nodes.unlink()
    # No event for a removal: the poll finds it (within two polls of 2 s).
    tp.wait_log(r"nodes\.txt:0: cannot read: No such file or directory", timeout=8)
    assert set(upstream_nodes(tp)) == {a.address}
    replace(nodes, f"{b.address}\n")
    wait_nodes(tp, [b.address])


def test_health_of_the_nodes_that_stay_survives_an_update(turnpike, origins, tmp_path):
    a, b = origins(2)
    dead = Origin().start()
    dead_address = dead.address
    dead.stop()  # nothing listens there any more: its checks fail
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n{dead_address}\n")
    cfg = node_file_config(nodes, health={"active": {"type": "tcp", "interval": "100ms", "timeout": "200ms",
                                                      "unhealthy": 1, "healthy": 1}})
    tp = turnpike(cfg)
    deadline = time.monotonic() + 5
    while upstream_nodes(tp)[dead_address]["health"] != "down":
        assert time.monotonic() < deadline, upstream_nodes(tp)
        time.sleep(0.05)
    replace(nodes, f"{a.address}\n{dead_address}\n{b.address}\n")
    got = wait_nodes(tp, [a.address, dead_address, b.address])
    assert got[dead_address]["health"] == "down", "the update reset a down node's health"
    assert got[a.address]["health"] == "healthy"
    assert get_many(tp.port(), 20) == [200] * 20


def test_a_reload_reads_the_file_again_and_may_name_another(turnpike, origins, tmp_path):
    a, b = origins(2)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(f"{a.address}\n")
    second.write_text(f"{b.address}\n")
    cfg = node_file_config(first)
    tp = turnpike(cfg)
    cfg2 = node_file_config(second)
    tp.reload(cfg2)
    wait_nodes(tp, [b.address], timeout=1)
    # The old file is no longer watched.
    replace(first, f"{a.address}\n{b.address}\n")
    time.sleep(0.5)
    assert set(upstream_nodes(tp)) == {b.address}
    replace(second, f"{a.address}\n")
    wait_nodes(tp, [a.address])


def test_updates_do_not_postpone_another_upstreams_lookups(turnpike, origins, tmp_path):
    # A node file updated more often than another upstream's resolve_interval: that upstream's
    # name is still looked up at its interval.
    a, b = origins(2)
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n")
    cfg = node_file_config(nodes)
    named = upstream("named", [f"localhost:{b.port}"])
    named["resolve_interval"] = "500ms"
    cfg["upstreams"].append(named)
    tp = turnpike(cfg)

    def lookups():
        text = admin_get(tp, "/metrics").body.decode()
        m = re.search(r'^turnpike_dns_lookups_total\{result="ok"\} (\d+)', text, re.M)
        return int(m.group(1)) if m else 0

    before = lookups()
    for i in range(15):  # 3 s, an update every 200 ms
        replace(nodes, f"{a.address}\n" if i % 2 else f"{a.address}\n{b.address}\n")
        time.sleep(0.2)
    assert lookups() - before >= 3, "the named upstream's lookups were postponed by the node-file updates"


def test_check_config_reads_the_node_file(turnpike_bin, tmp_path):
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("127.0.0.1:9000\n127.0.0.1:9001 weight=x\n")
    path = tmp_path / "turnpike.yaml"
    path.write_text(dump_yaml(node_file_config(nodes)))
    r = check_config(turnpike_bin, path)
    assert r.returncode != 0
    assert f'{nodes}:2: upstream "app": weight "x" is not an integer 1..10000' in r.stderr + r.stdout
    nodes.write_text("127.0.0.1:9000\n")
    r = check_config(turnpike_bin, path)
    assert r.returncode == 0, r.stderr + r.stdout


def test_changes_under_load_fail_no_request(turnpike, origins, tmp_path):
    a, b, c = origins(3)
    sets = [[a], [a, b], [b, c], [c, a], [b]]
    nodes = tmp_path / "nodes.txt"
    nodes.write_text(f"{a.address}\n")
    tp = turnpike(node_file_config(nodes))
    with KeepaliveLoad(tp.port(), clients=4) as load:
        for i in range(20):
            replace(nodes, "".join(f"{o.address}\n" for o in sets[i % len(sets)]))
            time.sleep(0.1)
    assert load.failures == [], load.failures[:10]
    assert load.ok > 100
    assert metric(tp, "ok") >= 10

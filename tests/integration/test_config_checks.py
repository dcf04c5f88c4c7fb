"""Configs that pass a check must start, and mistakes are caught where they are made: `turnpike -t`
refuses empty lists and `:param` paths, warns about routes that can never match and proxy loops,
opens every log file; a start explains a listener it cannot bind and refuses a port that another
process serves; the pid file comes and goes with the process; the start log says which readiness
wait is compiled in; a reload rebinds exactly the listeners whose sockets changed.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import rawhttp
from harness import ERROR_LINE, base_config, check_config, dump_yaml, respond_route, upstream


def write(tmp_path: Path, cfg: dict, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(dump_yaml(cfg))
    return path


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line of `path` containing `text`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def two_listeners(**top) -> dict:
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 0},
                 {"name": "internal", "address": "127.0.0.1", "port": 0}]
    return base_config(listeners=listeners, **top)


# --- turnpike -t: errors ---------------------------------------------------------------------


@pytest.mark.parametrize("where, key, value", [
    ("route", "listeners", []),
    ("match", "methods", []),
    ("match", "hosts", []),
    ("match", "paths", []),
    ("match", "headers", []),
])
def test_check_refuses_an_empty_list(turnpike_bin, tmp_path, where, key, value):
    route = respond_route("r", ["/*"], "x")
    (route if where == "route" else route["match"])[key] = value
    path = write(tmp_path, base_config(routes=[route]))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result
    errors = [m.groupdict() for m in ERROR_LINE.finditer(result.stderr)]
    assert len(errors) == 1, result.stderr
    assert errors[0]["file"] == str(path)
    assert int(errors[0]["line"]) == line_of(path, f"{key}: []")
    assert f"{key}: an empty list is not allowed; leave the key out" in errors[0]["message"]


def test_check_refuses_a_colon_parameter_with_a_hint(turnpike_bin, tmp_path):
    path = write(tmp_path, base_config(routes=[respond_route("r", ["/users/:id"], "x")]))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1
    assert f"{path}:{line_of(path, '/users/:id')}: " in result.stderr
    assert 'write "{id}" for a parameter' in result.stderr


def test_check_opens_every_log_file(turnpike_bin, tmp_path):
    cfg = base_config(routes=[respond_route("r", ["/*"], "x")])
    cfg["log"]["error_log"] = str(tmp_path / "no-such-dir" / "error.log")
    cfg["log"]["access_log"] = str(tmp_path / "access.log")
    path = write(tmp_path, cfg)
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result
    line = line_of(path, "error_log:")
    assert (f"{path}:{line}: log.error_log: cannot open {tmp_path}/no-such-dir/error.log for appending: "
            "No such file or directory") in result.stderr
    assert (tmp_path / "access.log").exists(), "the access log is opened (and created) as a start would"


def test_check_reports_an_unusable_pid_file_directory(turnpike_bin, tmp_path):
    path = write(tmp_path, base_config(routes=[respond_route("r", ["/*"], "x")],
                                       pid_file=str(tmp_path / "no-such-dir" / "tp.pid")))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1
    assert f"{path}:{line_of(path, 'pid_file:')}: pid_file: cannot create" in result.stderr


# --- turnpike -t: warnings -------------------------------------------------------------------


def test_check_warns_about_a_route_that_can_never_match(turnpike_bin, tmp_path):
    routes = [respond_route("first", ["/a", "/b"], "1", methods=["GET"]),
              respond_route("second", ["/b", "/a"], "2", methods=["GET"])]
    path = write(tmp_path, base_config(routes=routes))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 0, result
    first, second = line_of(path, "name: first"), line_of(path, "name: second")
    assert (f'{path}:{second}: warning: route "second" can never match: route "first" at line {first}'
            in result.stderr)
    assert "is valid (with warnings)" in result.stdout


def test_check_is_quiet_about_routes_that_differ(turnpike_bin, tmp_path):
    routes = [respond_route("first", ["/a"], "1", methods=["GET"]),
              respond_route("second", ["/a"], "2", methods=["POST"])]
    result = check_config(turnpike_bin, write(tmp_path, base_config(routes=routes)))
    assert result.returncode == 0
    assert "warning" not in result.stderr
    assert result.stdout.strip().endswith("is valid")


def loop_config(internal_port: int, route_listeners=None) -> dict:
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 0},
                 {"name": "internal", "address": "0.0.0.0", "port": internal_port}]
    route = {"name": "all", "upstream": "inner"}
    if route_listeners is not None:
        route["listeners"] = route_listeners
    return base_config(listeners=listeners, upstreams=[upstream("inner", [f"127.0.0.1:{internal_port}"])],
                       routes=[route])


def test_check_warns_about_a_proxy_loop(turnpike_bin, tmp_path):
    path = write(tmp_path, loop_config(18123))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 0, result
    route_line = line_of(path, "name: all")
    assert (f'{path}:{route_line}: warning: route "all" forwards requests arriving on listener "internal"'
            in result.stderr)
    assert "whose node 127.0.0.1:18123" in result.stderr
    path = write(tmp_path, loop_config(18123, route_listeners=["public"]), "bound.yaml")
    result = check_config(turnpike_bin, path)
    assert result.returncode == 0
    assert "warning" not in result.stderr


# --- start -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_and_reload_log_warnings(turnpike, tmp_path):
    cfg = loop_config(free_port())
    tp = turnpike(cfg)
    tp.wait_log(re.escape('warning: route "all" forwards requests arriving on listener "internal"'))
    routes = [respond_route("first", ["/a"], "1"), respond_route("second", ["/a"], "2")]
    tp.reload(base_config(routes=routes))
    tp.wait_log(re.escape('warning: route "second" can never match'))


def test_start_logs_which_readiness_wait_is_compiled(turnpike):
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "x")]))
    match = re.search(r"readiness wait: (.*) \(Boost (\d+)\.(\d+)\.\d+",
                      tp.wait_log(r"readiness wait: .* \(Boost \d+\.\d+\.\d+"))
    assert match
    path, major, minor = match.group(1), int(match.group(2)), int(match.group(3))
    version = Path("/usr/include/boost/version.hpp")
    installed = re.search(r'#define BOOST_LIB_VERSION "(\d+)_(\d+)"', version.read_text()) if version.exists() else None
    if installed:
        assert (major, minor) == (int(installed.group(1)), int(installed.group(2))), "built against another Boost?"
    if (major, minor) == (1, 81) and sys.platform == "linux":
        assert path == "edge fast path", f"Boost 1.81 on Linux must use the edge wait: {match.group(0)}"


def test_second_turnpike_on_a_served_port_refuses_to_start(turnpike):
    routes = [respond_route("r", ["/*"], "first")]
    first = turnpike(base_config(routes=routes))
    port = first.port()
    listeners = [{"name": "public", "address": "127.0.0.1", "port": port}]
    second = turnpike(base_config(routes=[respond_route("r", ["/*"], "second")], listeners=listeners), wait=False)
    assert second.wait_exit(20) not in (None, 0), second.logs()
    line = line_of(second.config_path, f"port: {port}") - 2  # the listener item starts at "- name:"
    assert re.search(rf'turnpike\.yaml:{line}: listener "public": cannot listen on 127\.0\.0\.1:{port}: '
                     r"Address already in use \(another process, perhaps another turnpike", second.logs()), \
        second.logs()
    for _ in range(10):  # every connection still reaches the first one
        assert rawhttp.request(port, "GET", "/").body == b"first"


def test_listener_on_an_address_this_host_lacks_says_so(turnpike):
    listeners = [{"name": "public", "address": "192.0.2.1", "port": free_port()}]
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "x")], listeners=listeners), wait=False)
    assert tp.wait_exit(20) not in (None, 0)
    assert "Cannot assign requested address (no interface of this host has the address 192.0.2.1)" in tp.logs()


def test_privileged_port_hints_at_the_capability(turnpike_bin, tmp_path):
    # As root, run without CAP_NET_BIND_SERVICE (dropped from the bounding set), as an
    # unprivileged service would.
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv cannot run without CAP_NET_BIND_SERVICE")
        prefix = ["setpriv", "--bounding-set=-net_bind_service"]
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 81}]
    path = write(tmp_path, base_config(routes=[respond_route("r", ["/*"], "x")], listeners=listeners))
    result = subprocess.run(prefix + [turnpike_bin, "-c", str(path)], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert (f'{path}:{line_of(path, "- name: public")}: listener "public": cannot listen on 127.0.0.1:81: '
            "Permission denied (ports below 1024 need the CAP_NET_BIND_SERVICE capability") in result.stderr
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in result.stderr


def test_pid_file_is_written_at_start_and_removed_at_exit(turnpike, tmp_path):
    pid_file = tmp_path / "run" / "turnpike.pid"
    pid_file.parent.mkdir()
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "x")], pid_file=str(pid_file)))
    assert pid_file.read_text() == f"{tp.pid}\n"
    os.kill(int(pid_file.read_text()), signal.SIGUSR1)  # what the logrotate example does
    assert tp.stop() == 0
    assert not pid_file.exists()


def test_unwritable_pid_file_fails_the_start(turnpike, tmp_path):
    cfg = base_config(routes=[respond_route("r", ["/*"], "x")], pid_file=str(tmp_path / "missing" / "tp.pid"))
    tp = turnpike(cfg, wait=False)
    assert tp.wait_exit(20) not in (None, 0)
    assert "pid_file: cannot create" in tp.logs()


# --- reload and listener sockets --------------------------------------------------------------


def test_reload_rebinds_exactly_the_listeners_whose_sockets_changed(turnpike):
    tp = turnpike(two_listeners(routes=[respond_route("r", ["/*"], "x")]))
    before = tp.state()["listeners"]
    cfg = two_listeners(routes=[respond_route("r", ["/*"], "x")])
    cfg["listeners"][0]["http2"] = {"max_concurrent_streams": 7}  # per connection: same sockets
    cfg["listeners"][1]["backlog"] = 64                            # a socket setting: new sockets
    after = tp.reload(cfg)["listeners"]
    assert after["public"] == before["public"]
    assert after["internal"] != before["internal"], "a port-0 listener rebound gets a new port"
    assert rawhttp.request(int(after["internal"].rpartition(":")[2]), "GET", "/").status == 200


def test_reload_may_rebind_a_port_this_process_serves(turnpike):
    tp = turnpike(base_config(routes=[respond_route("r", ["/*"], "x")]))
    port = tp.port()
    cfg = base_config(routes=[respond_route("r", ["/*"], "y")],
                      listeners=[{"name": "public", "address": "127.0.0.1", "port": port, "backlog": 64}])
    tp.reload(cfg)  # the port is ours: the second-process check must not refuse it
    assert tp.port() == port
    assert rawhttp.request(port, "GET", "/").body == b"y"

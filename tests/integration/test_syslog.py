"""Logs to syslog: `access_log` / `error_log` set to `syslog:udp:HOST:PORT` send RFC 5424
messages, checked against a real rsyslogd (run unprivileged with a temporary config: imudp on a
free port, omfile writing each message's parsed header fields and text to a file). Also the
access log's separate client address and port fields, and a malformed target refusing the start."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

import rawhttp
from harness import Turnpike, base_config, respond_route

pytestmark = pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd not installed")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rsyslog(tmp_path):
    """(port, output file): rsyslogd receiving on UDP 127.0.0.1:port, writing
    PRI|APP-NAME|PROCID|MSGID|TIMESTAMP|MSG lines."""
    work = tmp_path / "rsyslog"
    work.mkdir()
    out = work / "out.log"
    port = free_udp_port()
    conf = work / "rsyslog.conf"
    conf.write_text(f"""global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port}")
template(name="fields" type="string"
         string="%PRI%|%APP-NAME%|%PROCID%|%MSGID%|%TIMESTAMP:::date-rfc3339%|%msg%\\n")
action(type="omfile" file="{out}" template="fields")
""")
    proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # Ready once a probe sent over UDP comes out in the file (bounded).
        probe = b"<134>1 2026-01-01T00:00:00Z host probe 1 probe - ready"
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not (out.exists() and "ready" in out.read_text()):
                assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
                assert time.monotonic() < deadline, "rsyslogd did not come up"
                s.sendto(probe, ("127.0.0.1", port))
                time.sleep(0.1)
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def messages(out, msgid, want, timeout=10.0):
    """The received lines with MSGID `msgid` once there are at least `want` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [l.split("|", 5) for l in out.read_text().splitlines()]
        found = [l for l in lines if len(l) == 6 and l[3] == msgid]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_access_and_error_log_to_rsyslog_over_udp(turnpike, rsyslog):
    port, out = rsyslog
    cfg = base_config(routes=[respond_route("hello", ["/*"], "hi")])
    cfg["log"].update(access_log=f"syslog:udp:127.0.0.1:{port}", access_format="json",
                      error_log=f"syslog:udp:127.0.0.1:{port}")
    tp = turnpike(cfg)
    for i in range(3):
        assert rawhttp.request(tp.port(), "GET", f"/hello/{i}").status == 200
    access = messages(out, "access", 3)
    assert len(access) == 3, out.read_text()
    for pri, app, procid, msgid, stamp, msg in access:
        assert pri == "134"                  # local0 (16) * 8 + info (6)
        assert app == "turnpike"
        assert procid == str(tp.pid)
        assert stamp.endswith("Z") and "T" in stamp, stamp
        entry = json.loads(msg)
        assert entry["client_ip"] == "127.0.0.1"
        assert isinstance(entry["client_port"], int) and entry["client_port"] > 0
        assert entry["remote_addr"] == f"127.0.0.1:{entry['client_port']}"
    assert sorted(json.loads(m[5])["target"] for m in access) == ["/hello/0", "/hello/1", "/hello/2"]
    # The error log's start lines, info severity; a warning keeps its own severity.
    errors = messages(out, "error", 1)
    assert any(m[5].startswith("turnpike ") and "(commit " in m[5] and m[0] == "134" for m in errors), errors


def test_malformed_syslog_target_refuses_to_start(turnpike_bin, tmp_path):
    for target, why in (("syslog:udp:not-an-ip:514", "is not an IP address"),
                        ("syslog:udp:127.0.0.1", "needs HOST:PORT"),
                        ("syslog:tcp:127.0.0.1:514", "syslog:udp:HOST:PORT or syslog:unix:PATH"),
                        (f"syslog:unix:{tmp_path}/nothing.sock", "cannot connect to syslog socket")):
        cfg = base_config(routes=[respond_route("hello", ["/*"], "hi")])
        cfg["log"]["access_log"] = target
        tp = Turnpike(turnpike_bin, tmp_path / target.replace("/", "_").replace(":", "_"), cfg)
        tp.start(wait=False)
        try:
            assert tp.wait_exit(20) == 1, target
            assert why in tp.logs(), (target, tp.logs())
        finally:
            tp.cleanup()

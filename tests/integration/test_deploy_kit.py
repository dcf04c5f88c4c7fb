"""The deployment kit: deploy/lvs/keepalived.conf passes keepalived's own configuration check
(and a broken copy does not, so the check can fail); the real-server script refuses bad usage;
deploy/turnpike.service is a notify unit for the turnpike user with the one capability it needs."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived not installed")
def test_keepalived_accepts_the_lvs_dr_example(tmp_path):
    out = subprocess.run(["keepalived", "--config-test", "-f", str(DEPLOY / "lvs" / "keepalived.conf")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout + out.stderr == "", out.stdout + out.stderr  # not even a warning
    text = (DEPLOY / "lvs" / "keepalived.conf").read_text()
    assert "lb_kind DR" in text and "path /ready" in text
    broken = tmp_path / "broken.conf"
    broken.write_text(text.replace("lb_kind DR", "lb_kind XX"))
    out = subprocess.run(["keepalived", "--config-test", "-f", str(broken)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "routing method" in out.stdout + out.stderr


def test_realserver_script_needs_an_action_and_a_vip():
    script = DEPLOY / "lvs" / "realserver-vip.sh"
    assert subprocess.run(["sh", "-n", str(script)], timeout=10).returncode == 0
    for args in ([], ["up"], ["sideways", "192.0.2.10"]):
        out = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=10)
        assert out.returncode == 2, (args, out)
        assert "usage:" in out.stderr


def test_unit_is_notify_for_the_turnpike_user_with_bind_capability_only():
    unit = (DEPLOY / "turnpike.service").read_text()
    settings = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["Type"] == ["notify"]
    assert settings["User"] == ["turnpike"]
    assert settings["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    # `turnpike --reload` fails the reload when the running process refuses it (test_upgrade.py).
    assert settings["ExecReload"] == ["/usr/bin/turnpike --reload -c /etc/turnpike/turnpike.yaml --pid $MAINPID"]
    assert settings["NotifyAccess"] == ["all"], "the new process of a binary upgrade sends MAINPID="
    assert "WatchdogSec" in settings

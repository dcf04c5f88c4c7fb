"""The Debian package (CPack DEB) of the build under test: built into a temporary directory,
then checked with dpkg-deb only — its control fields, its contents, its conffile and maintainer
scripts — and unpacked into a throwaway root (dpkg-deb -x), never installed on this machine.
The unpacked binary runs and the packaged default configuration passes `turnpike -t`; the
postinst creates the system user exactly when it is missing (run with stand-in commands).

Builds a package of the whole binary (tens of seconds for a sanitizer build): run on its own."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from harness import find_binary


def build_dir() -> Path | None:
    binary, _ = find_binary()
    if binary is None:
        return None
    d = Path(binary).resolve().parents[2]
    return d if (d / "CPackConfig.cmake").exists() else None


pytestmark = pytest.mark.skipif(shutil.which("cpack") is None or shutil.which("dpkg-deb") is None
                                or build_dir() is None, reason="cpack, dpkg-deb or a configured build tree missing")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg")
    run = subprocess.run(["cpack", "--config", str(build_dir() / "CPackConfig.cmake"), "-G", "DEB", "-B", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    debs = list(out.glob("turnpike_*.deb"))
    assert len(debs) == 1, (list(out.iterdir()), run.stdout)
    return debs[0]


def dpkg_deb(*args) -> str:
    run = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_control_fields(package):
    fields = dpkg_deb("--field", str(package))
    assert "Package: turnpike\n" in fields
    depends = [l for l in fields.splitlines() if l.startswith("Depends:")][0]
    assert "adduser" in depends
    assert "libssl3" in depends, depends  # from dpkg-shlibdeps
    assert "liburing2" in depends, depends  # the health checker's batched system calls


def test_contents(package):
    listing = dpkg_deb("--contents", str(package))
    paths = {line.split()[-1] for line in listing.splitlines()}
    for expected in ("./usr/bin/turnpike", "./usr/lib/systemd/system/turnpike.service", "./etc/turnpike/turnpike.yaml",
                     "./usr/share/turnpike/plugins/key-auth.lua", "./usr/share/turnpike/plugins/lib/turnpike.lua",
                     "./usr/share/doc/turnpike/deploy.md", "./usr/share/doc/turnpike/lvs/keepalived.conf",
                     "./usr/share/doc/turnpike/lvs/realserver-vip.sh"):
        assert expected in paths, f"{expected} missing from the package:\n{listing}"
    modes = {line.split()[-1]: line.split()[0] for line in listing.splitlines()}
    assert modes["./usr/bin/turnpike"] == "-rwxr-xr-x"
    assert modes["./usr/share/doc/turnpike/lvs/realserver-vip.sh"] == "-rwxr-xr-x"


def test_conffile_and_maintainer_scripts(package, tmp_path):
    control = tmp_path / "control"
    dpkg_deb("--control", str(package), str(control))
    assert (control / "conffiles").read_text().split() == ["/etc/turnpike/turnpike.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert path.stat().st_mode & stat.S_IXUSR, f"{script} not executable"
        assert subprocess.run(["sh", "-n", str(path)], timeout=10).returncode == 0, script
    assert "adduser --system --group" in (control / "postinst").read_text()


def stand_ins(directory: Path, user_exists: bool) -> Path:
    """Commands postinst calls, recording their arguments instead of changing this machine."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    log = directory / "calls"
    for name in ("adduser", "chgrp", "chmod", "systemctl"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        (bin_dir / name).chmod(0o755)
    (bin_dir / "getent").write_text(f'#!/bin/sh\necho "getent $*" >> {log}\nexit {0 if user_exists else 2}\n')
    (bin_dir / "getent").chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("user_exists", [False, True], ids=["new-user", "user-exists"])
def test_postinst_creates_the_system_user_when_missing(package, tmp_path, user_exists):
    control = tmp_path / "control"
    dpkg_deb("--control", str(package), str(control))
    bin_dir = stand_ins(tmp_path, user_exists)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    run = subprocess.run(["sh", str(control / "postinst"), "configure"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    adds = [c for c in calls if c.startswith("adduser ")]
    if user_exists:
        assert adds == []
    else:
        assert adds == ["adduser --system --group --no-create-home --home /nonexistent --quiet turnpike"]
    assert "chgrp turnpike /etc/turnpike/turnpike.yaml" in calls


def test_unpacked_binary_runs_and_default_config_is_valid(package, tmp_path):
    root = tmp_path / "root"
    dpkg_deb("-x", str(package), str(root))
    binary = root / "usr" / "bin" / "turnpike"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("turnpike "), version
    # The packaged config, with its absolute paths moved into the throwaway root.
    text = (root / "etc" / "turnpike" / "turnpike.yaml").read_text()
    for path in ("/usr/share/turnpike/plugins", "/var/log/turnpike", "/run/turnpike"):
        text = text.replace(path, str(root) + path)
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "turnpike.yaml"
    cfg.write_text(text)
    check = subprocess.run([str(binary), "-t", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

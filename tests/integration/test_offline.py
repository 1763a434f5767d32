"""--root DIR against `systemctl --root DIR`: the same tree, link for link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.integration.conftest import Host

UNIT = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"


def _tree(base: Path) -> None:
    vendor = base / "usr/lib/systemd/system"
    vendor.mkdir(parents=True)
    for n in ("a", "b", "c", "d", "e"):
        (vendor / f"off-{n}.service").write_text(UNIT)
    (vendor / "off-tpl@.service").write_text(UNIT)
    etc = base / "etc/systemd/system"
    etc.mkdir(parents=True)
    os.symlink("/dev/null", etc / "off-c.service")  # masked, the policy unmasks it
    os.symlink("/dev/null", etc / "off-d.service")
    run = base / "run/systemd/system"
    run.mkdir(parents=True)
    os.symlink("/dev/null", run / "off-d.service")  # masked in both scopes
    (base / "etc/masktool").mkdir(parents=True)
    # Every system has /var/lib; masktool keeps its ledger in /var/lib/masktool.
    (base / "var/lib").mkdir(parents=True)


def _snapshot(base: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(base.rglob("*")):
        rel = str(p.relative_to(base))
        if rel.startswith(("etc/masktool", "var/lib/masktool")):
            continue
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = "link:" + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = f"dir:{stat.S_IMODE(st.st_mode):o}"
        else:
            out[rel] = "file:" + p.read_text()
    return out


POLICY = """version: 1
mask:
  - off-a.service
  - off-not-installed.service
  - off-tpl@.service
  - unit: off-e.service
    runtime: true
unmask:
  - off-c.service
  - off-d.service
"""


def test_offline_apply_equals_systemctl_root(host: Host) -> None:
    mine, theirs = host.sb.path("/srv/off-mine"), host.sb.path("/srv/off-theirs")
    _tree(mine)
    _tree(theirs)
    (mine / "etc/masktool/policy.yaml").write_text(POLICY)
    (mine / "etc/masktool/policy.yaml").chmod(0o644)

    res = host.masktool_run("apply", "--root", "/srv/off-mine")
    assert res.returncode == 0, res.stdout + res.stderr
    r = "--root=/srv/off-theirs"
    host.systemctl(r, "mask", "off-a.service", "off-not-installed.service", "off-tpl@.service")
    host.systemctl(r, "--runtime", "mask", "off-e.service")
    host.systemctl(r, "unmask", "off-c.service", "off-d.service")
    host.systemctl(r, "--runtime", "unmask", "off-d.service")

    assert _snapshot(mine) == _snapshot(theirs)
    assert (mine / "var/lib/masktool/ledger.json").is_file()
    # And masktool agrees the tree is now compliant, offline.
    check = host.masktool_run("check", "--root", "/srv/off-mine")
    assert check.returncode == 0, check.stdout


def test_offline_unmask_of_systemctl_masks_and_check(host: Host) -> None:
    base = host.sb.path("/srv/off-rescue")
    _tree(base)
    (base / "etc/masktool/policy.yaml").write_text("version: 1\nunmask:\n  - off-c.service\n")
    (base / "etc/masktool/policy.yaml").chmod(0o644)
    res = host.masktool_run("check", "--root", "/srv/off-rescue")
    assert res.returncode == 1
    assert "masked" in res.stdout
    assert host.masktool_run("apply", "--root", "/srv/off-rescue").returncode == 0
    assert not (base / "etc/systemd/system/off-c.service").exists()
    # The vendor file is untouched.
    assert (base / "usr/lib/systemd/system/off-c.service").read_text() == UNIT


def test_offline_conflict_left_alone(host: Host) -> None:
    base = host.sb.path("/srv/off-conflict")
    _tree(base)
    (base / "etc/systemd/system/off-b.service").write_text(UNIT)
    (base / "etc/masktool/policy.yaml").write_text("version: 1\nmask:\n  - off-b.service\n")
    (base / "etc/masktool/policy.yaml").chmod(0o644)
    res = host.masktool_run("apply", "--root", "/srv/off-conflict")
    assert res.returncode == 1
    assert "conflict" in res.stdout
    assert (base / "etc/systemd/system/off-b.service").read_text() == UNIT

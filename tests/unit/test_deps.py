"""Reverse dependencies read from unit files in a temporary tree."""

from __future__ import annotations

import os
from pathlib import Path

from masktool.deps import DependencyIndex


def _w(root: Path, rel: str, text: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_unit_file_settings_dirs_dropins_and_activators(tmp_path: Path) -> None:
    usr = "/usr/lib/systemd/system"
    _w(tmp_path, f"{usr}/lib.service", "[Service]\nExecStart=/bin/true\n")
    _w(
        tmp_path,
        f"{usr}/app.service",
        "[Unit]\nRequires=lib.service other.service\nWants=\\\n  lib.service\n"
        "# Requires=commented.service\n[Service]\nExecStart=/bin/true\n",
    )
    _w(tmp_path, f"{usr}/part.service", "[Unit]\nPartOf=lib.service\n")
    _w(tmp_path, f"{usr}/lib.socket", "[Socket]\nListenStream=/run/x\n")
    _w(tmp_path, f"{usr}/acc.socket", "[Socket]\nListenStream=/run/y\nAccept=yes\n")
    _w(tmp_path, f"{usr}/t.timer", "[Timer]\nOnCalendar=daily\nUnit=lib.service\n")
    _w(tmp_path, "/etc/systemd/system/app.service.d/x.conf", "[Unit]\nBindsTo=lib.service\n")
    _w(tmp_path, f"{usr}/tpl@.service", "[Unit]\nRequires=lib-%i.service\n")
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    os.symlink(f"{usr}/app.service", wants / "app.service")
    req = tmp_path / "usr/lib/systemd/system/boot.target.requires"
    req.mkdir()
    os.symlink("../lib.service", req / "lib.service")
    # A masked unit depends on nothing.
    os.symlink("/dev/null", tmp_path / "etc/systemd/system/part.service")

    idx = DependencyIndex(str(tmp_path))
    got = {(d.dependent, d.kind) for d in idx.dependents("lib.service")}
    assert got == {
        ("app.service", "Requires"),
        ("app.service", "Wants"),
        ("app.service", "BindsTo"),
        ("lib.socket", "Triggers"),
        ("t.timer", "Triggers"),
        ("boot.target", "Requires"),
    }
    assert {d.dependent for d in idx.dependents("acc@.service")} == {"acc.socket"}
    assert idx.dependents("commented.service") == []
    assert idx.enabled("app.service")
    assert not idx.enabled("lib.service")  # its link is in /usr: static, not enabled
    hard = [d for d in idx.dependents("lib.service") if d.hard]
    assert {d.kind for d in hard} == {"Requires", "BindsTo"}


def test_a_masked_activator_still_names_the_unit_it_starts(tmp_path: Path) -> None:
    """Read from the file beneath the mask (drop-ins included): only Triggers, nothing else."""
    usr = "/usr/lib/systemd/system"
    _w(tmp_path, f"{usr}/a.socket", "[Unit]\nRequires=lib.service\n[Socket]\nListenStream=/x\n")
    _w(tmp_path, f"{usr}/b.timer", "[Timer]\nOnCalendar=daily\n")
    _w(tmp_path, "/etc/systemd/system/b.timer.d/u.conf", "[Timer]\nUnit=other.service\n")
    _w(tmp_path, f"{usr}/c.service", "[Unit]\nRequires=lib.service\n")
    etc = tmp_path / "etc/systemd/system"
    for name in ("a.socket", "b.timer", "c.service"):
        os.symlink("/dev/null", etc / name)
    # A runtime mask above a mask in /etc: the file is still found further down.
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    os.symlink("/dev/null", tmp_path / "run/systemd/system/a.socket")

    idx = DependencyIndex(str(tmp_path))
    assert [(d.dependent, d.kind) for d in idx.dependents("a.service")] == [
        ("a.socket", "Triggers")
    ]
    assert [(d.dependent, d.kind) for d in idx.dependents("other.service")] == [
        ("b.timer", "Triggers")
    ]
    assert idx.dependents("lib.service") == []
    assert idx.dependents("b.service") == []

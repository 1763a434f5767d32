"""Reverse dependencies read from unit files in a temporary tree."""

from __future__ import annotations

import os
from pathlib import Path

from masktool.deps import DependencyIndex

ETC = "etc/systemd/system"


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
    # Each credited to the file that states it (found by a hostile review: a drop-in's
    # BindsTo= was shown as the vendor file's).
    sources = {(d.dependent, d.kind): d.source for d in hard}
    assert sources[("app.service", "BindsTo")] == f"{tmp_path}/{ETC}/app.service.d/x.conf"
    assert sources[("app.service", "Requires")] == f"{tmp_path}{usr}/app.service"


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


def _edges(idx: DependencyIndex, unit: str) -> list[tuple[str, str, str]]:
    return [(d.dependent, d.kind, d.source) for d in idx.dependents(unit)]


def test_parsed_only_for_names_asked_about_same_answers_in_search_path_order(
    tmp_path: Path,
) -> None:
    """want() parses only the files that could name a unit asked about; the answers, and their
    order (the search path's, each directory as listed), are those of a full parse, however the
    names are asked for."""
    usr, etc = "/usr/lib/systemd/system", "/etc/systemd/system"
    _w(tmp_path, f"{usr}/a.service", "[Unit]\nWants=x.service\nRequires=y.service\n")
    _w(tmp_path, f"{usr}/b.service", "[Unit]\nRequires = y.service\tx.service\n")
    # A name after a continuation (the backslash right behind it), in a drop-in, after a
    # separator that str.split() takes as whitespace (U+2028) rather than a space.
    _w(tmp_path, f"{usr}/c.service", "[Unit]\nWants=z.service x.service\\\n  w.service\n")
    _w(tmp_path, f"{etc}/d.service.d/o.conf", "[Unit]\nBindsTo=y.service\n")
    _w(tmp_path, f"{usr}/d.service", "[Service]\nExecStart=/bin/true\n")
    _w(tmp_path, f"{usr}/e.service", "[Unit]\nPartOf=v.service\u2028Requires=x.service\n")
    _w(tmp_path, f"{usr}/f.service", "[Unit]\nDescription=mentions x.service only here\n")
    _w(tmp_path, f"{usr}/x.socket", "[Socket]\nListenStream=/run/x\n")
    names = ["x.service", "y.service", "z.service", "w.service", "v.service", "none.service"]
    full = DependencyIndex(str(tmp_path))
    expected = {n: _edges(full, n) for n in names}
    # (In the order of the directory listings: not sorted.)
    assert sorted(e[0] for e in expected["x.service"]) == [
        "a.service",
        "b.service",
        "c.service",
        "e.service",
        "x.socket",
    ]
    assert [e[0] for e in expected["w.service"]] == ["c.service"]
    assert sorted(e[0] for e in expected["y.service"]) == ["a.service", "b.service", "d.service"]
    assert expected["none.service"] == []
    for groups in (
        [names],
        [["y.service"], ["x.service", "v.service"], ["w.service", "z.service", "none.service"]],
        [[n] for n in reversed(names)],
    ):
        idx = DependencyIndex(str(tmp_path))
        for group in groups:
            idx.want(group)
            for n in group:
                assert _edges(idx, n) == expected[n], (groups, n)
    # Asked without want(): everything left is parsed, with the same answers.
    idx = DependencyIndex(str(tmp_path))
    idx.want(["v.service"])
    assert _edges(idx, "x.service") == expected["x.service"]


def test_unit_files_read_whole_and_masks_told_apart(tmp_path: Path) -> None:
    """A unit file is read to its end whatever its size; an empty file or a link to /dev/null
    is a mask (nothing read from it), and a unit beneath it in a lower directory is not used."""
    usr = "/usr/lib/systemd/system"
    body = "[Unit]\n" + "Description=" + "x" * 70000 + "\nRequires=big.service\n"
    _w(tmp_path, f"{usr}/long.service", body)
    _w(tmp_path, "/etc/systemd/system/empty.service", "")
    _w(tmp_path, f"{usr}/empty.service", "[Unit]\nRequires=big.service\n")
    os.symlink("/dev/null", tmp_path / "etc/systemd/system/nulled.service")
    _w(tmp_path, f"{usr}/nulled.service", "[Unit]\nRequires=big.service\n")
    idx = DependencyIndex(str(tmp_path))
    idx.want(["big.service"])
    assert [d.dependent for d in idx.dependents("big.service")] == ["long.service"]


def test_nothing_is_read_when_no_name_is_asked_about(tmp_path: Path) -> None:
    """An apply with every unit masked already asks about no dependents: no unit file is read."""
    _w(tmp_path, "/usr/lib/systemd/system/a.service", "[Unit]\nRequires=b.service\n")
    idx = DependencyIndex(str(tmp_path))
    idx.want([])
    assert not idx._built
    idx.want(["b.service"])
    assert idx._built and [d.dependent for d in idx.dependents("b.service")] == ["a.service"]

"""Each deliberate difference between `masktool apply --root` and `systemctl --root` that the
README lists ("masktool and systemctl --root"), shown on the smallest tree: what masktool
does, what systemctl does, and where the two trees then differ. The differential test
(test_differential.py) recognises the same differences on generated trees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.loader_shapes import E, File, R, U, build

MASKTOOL = str(Path(sys.executable).parent / "masktool")
T = "/run/systemd/transient"


@dataclass(frozen=True)
class Case:
    id: str
    files: tuple[File, ...]
    policy: str
    systemctl: tuple[tuple[str, ...], ...]
    masktool_rc: int
    systemctl_ok: bool
    path: str  # where the trees differ afterwards ("" if they do not)
    mine: str | None  # what masktool left there: "-> TARGET", "file", or None
    theirs: str | None
    says: str = ""  # in masktool's output


CASES = (
    Case(
        "mask-of-another-shape-is-kept",
        ((f"{E}/x.service", "link", "/dev/zero"),),
        "mask: [x.service]",
        (("mask", "--force", "x.service"),),
        0,
        True,
        f"{E}/x.service",
        "-> /dev/zero",
        "-> /dev/null",
    ),
    Case(
        "runtime-rule-met-by-a-persistent-mask",
        ((f"{E}/x.service", "link", "/dev/null"),),
        "mask:\n  - unit: x.service\n    runtime: true",
        (("mask", "--runtime", "x.service"),),
        0,
        True,
        f"{R}/x.service",
        None,
        "-> /dev/null",
    ),
    Case(
        "runtime-mask-behind-an-etc-unit-file-is-a-conflict",
        ((f"{E}/x.service", "unit", ""),),
        "mask:\n  - unit: x.service\n    runtime: true",
        (("mask", "--runtime", "x.service"),),
        1,
        True,
        f"{R}/x.service",
        None,
        "-> /dev/null",
        "which beats a mask in /run/systemd/system",
    ),
    Case(
        "a-unit-file-that-outranks-etc-is-a-conflict",
        ((f"{T}/x.service", "unit", ""),),
        "mask: [x.service]",
        (("mask", "x.service"),),
        1,
        True,
        f"{E}/x.service",
        None,
        "-> /dev/null",
        "which outranks a mask in /etc/systemd/system",
    ),
    Case(
        "a-vendor-mask-cannot-be-unmasked",
        ((f"{U}/x.service", "link", "/dev/null"),),
        "unmask: [x.service]",
        (("unmask", "x.service"),),
        1,
        True,
        "",
        None,
        None,
        "outside /etc and /run",
    ),
    Case(
        "an-instance-masked-by-its-template-is-not-unmasked",
        ((f"{U}/t@.service", "unit", ""), (f"{E}/t@.service", "link", "/dev/null")),
        "unmask: [t@1.service]",
        (("unmask", "t@1.service"),),
        1,
        True,
        "",
        None,
        None,
        "masked by its template's mask",
    ),
    Case(
        "an-alias-of-a-masked-unit-is-not-unmasked",
        (
            (f"{U}/c.socket", "unit", ""),
            (f"{U}/al.socket", "link", "c.socket"),
            (f"{E}/c.socket", "link", "/dev/null"),
        ),
        "unmask: [al.socket]",
        (("unmask", "al.socket"),),
        1,
        True,
        "",
        None,
        None,
        "resolves by name through c.socket",
    ),
    Case(
        "an-alias-in-etc-is-followed-to-the-unit-it-names",
        ((f"{U}/real.service", "unit", ""), (f"{E}/nick.service", "link", f"{U}/real.service")),
        "mask: [nick.service]",
        (("mask", "nick.service"),),
        0,
        False,
        f"{E}/real.service",
        "-> /dev/null",
        None,
    ),
    Case(
        "unmasking-an-etc-alias-unmasks-the-unit-it-names",
        (
            (f"{U}/real.service", "unit", ""),
            (f"{E}/nick.service", "link", f"{U}/real.service"),
            (f"{R}/real.service", "link", "/dev/null"),
        ),
        "unmask: [nick.service]",
        (("unmask", "nick.service"), ("unmask", "--runtime", "nick.service")),
        0,
        True,
        f"{R}/real.service",
        None,
        "-> /dev/null",
    ),
    Case(
        "a-relative-mask-is-removed",
        ((f"{E}/x.service", "link", "../../../dev/null"),),
        "unmask: [x.service]",
        (("unmask", "x.service"),),
        0,
        True,
        f"{E}/x.service",
        None,
        "-> ../../../dev/null",
    ),
    Case(
        "unmask-is-not-stopped-by-another-units-link",
        (
            (f"{E}/c.socket", "link", "/dev/null"),
            (f"{E}/b.service", "link", f"{U}/t@.service"),
            (f"{U}/c.socket", "link", "t@.service"),
            (f"{U}/t@.service", "link", "c.socket"),
        ),
        "unmask: [c.socket]",
        (("unmask", "c.socket"),),
        0,
        False,
        f"{E}/c.socket",
        None,
        None,
    ),
    Case(
        "rules-that-disagree-through-an-alias-are-both-refused",
        ((f"{U}/real.service", "unit", ""), (f"{E}/nick.service", "link", f"{U}/real.service")),
        "mask: [real.service]\nunmask: [nick.service]",
        (("mask", "real.service"), ("unmask", "nick.service")),
        1,
        True,
        f"{E}/real.service",
        None,
        "-> /dev/null",
        "but disagree; keep one",
    ),
    Case(
        "a-unit-that-an-enabled-unit-requires-is-not-masked-without-force",
        (
            (f"{U}/x.service", "unit", ""),
            (f"{U}/dep.service", "requires", "x.service"),
            (f"{E}/multi-user.target.wants/dep.service", "link", f"{U}/dep.service"),
        ),
        "mask: [x.service]",
        (("mask", "x.service"),),
        1,
        True,
        f"{E}/x.service",
        None,
        "-> /dev/null",
        "would fail without it",
    ),
    Case(
        "force-moves-a-file-aside",
        ((f"{E}/x.service", "unit", ""),),
        "mask:\n  - unit: x.service\n    force: true",
        (("mask", "--force", "x.service"),),
        0,
        False,
        f"{E}/x.service",
        "-> /dev/null",
        "file",
    ),
)


def _state(p: Path) -> str | None:
    if p.is_symlink():
        return "-> " + os.readlink(p)
    return "file" if p.exists() else None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_deliberate_difference(tmp_path: Path, case: Case) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for d in (E, R):
        (mine / d.lstrip("/")).mkdir(parents=True)
    build(mine, case.files)
    shutil.copytree(mine, theirs, symlinks=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\n{case.policy}\n")
    policy.chmod(0o644)
    res = subprocess.run(
        [MASKTOOL, "apply", "--root", str(mine), "--policy", str(policy), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == case.masktool_rc, res.stdout + res.stderr
    if case.says:
        assert case.says in json.dumps(json.loads(res.stdout))
    ok = all(
        subprocess.run(
            ["systemctl", f"--root={theirs}", *args], capture_output=True, check=False
        ).returncode
        == 0
        for args in case.systemctl
    )
    assert ok == case.systemctl_ok
    if case.path:
        inside = case.path.lstrip("/")
        assert (_state(mine / inside), _state(theirs / inside)) == (case.mine, case.theirs)

"""An unmask takes every mask of the unit in /etc and /run, whatever else sits in the other
directory (issue 10, pattern 1), and the rules of one run see each other (pattern 4): on real
trees, through `masktool apply --root` as an admin runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.loader_shapes import E, File, R, U, build

MASKTOOL = str(Path(sys.executable).parent / "masktool")


def _run(
    command: str, tmp_path: Path, files: tuple[File, ...], policy: str
) -> tuple[int, dict[str, Any]]:
    """`masktool COMMAND --root` over a tree of `files` with `policy` (without `version: 1`)."""
    root = tmp_path / "root"
    for d in (E, R):
        (root / d.lstrip("/")).mkdir(parents=True)
    build(root, files)
    f = tmp_path / "policy.yaml"
    f.write_text(f"version: 1\n{policy}\n")
    f.chmod(0o644)
    res = subprocess.run(
        [MASKTOOL, command, "--root", str(root), "--policy", str(f), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout)


def _apply(tmp_path: Path, files: tuple[File, ...], policy: str) -> tuple[int, dict[str, Any]]:
    return _run("apply", tmp_path, files, policy)


def _units(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["policy_name"]: u for u in doc["after"]["units"]}


@pytest.mark.parametrize(
    "etc",
    [("unit", ""), ("link", f"{U}/x.service"), ("link", "/nowhere/x.service")],
    ids=["unit-file", "link", "dangling-link"],
)
def test_unmask_removes_the_run_mask_behind_an_etc_entry(
    tmp_path: Path, etc: tuple[str, str]
) -> None:
    files = (
        (f"{U}/x.service", "unit", ""),
        (f"{E}/x.service", *etc),
        (f"{R}/x.service", "link", "/dev/null"),
    )
    rc, doc = _apply(tmp_path, files, "unmask: [x.service]")
    assert rc == 0, doc
    assert not (tmp_path / "root/run/systemd/system/x.service").is_symlink()
    assert _units(doc)["x.service"]["compliant"]


def test_unmask_removes_the_etc_mask_over_a_run_unit_file(tmp_path: Path) -> None:
    files = ((f"{E}/x.service", "link", "/dev/null"), (f"{R}/x.service", "unit", ""))
    rc, doc = _apply(tmp_path, files, "unmask: [x.service]")
    assert rc == 0, doc
    assert not doc["errors"]
    assert not os.path.lexists(tmp_path / "root/etc/systemd/system/x.service")
    assert (tmp_path / "root/run/systemd/system/x.service").is_file()


def test_runtime_mask_of_an_instance_with_an_unmask_of_its_template(tmp_path: Path) -> None:
    # Pattern 4: the template's mask goes, the instance keeps a mask of its own.
    files = ((f"{U}/t@.service", "unit", ""), (f"{E}/t@.service", "link", "/dev/null"))
    policy = "mask:\n  - unit: t@1.service\n    runtime: true\nunmask: [t@.service]"
    rc, doc = _apply(tmp_path, files, policy)
    assert rc == 0, doc
    units = _units(doc)
    assert units["t@1.service"]["state"] == "masked-runtime"
    assert units["t@.service"]["state"] == "unmasked"
    assert os.readlink(tmp_path / "root/run/systemd/system/t@1.service") == "/dev/null"


def test_unmask_of_an_instance_waits_for_the_unmask_of_its_template(tmp_path: Path) -> None:
    files = ((f"{U}/t@.service", "unit", ""), (f"{E}/t@.service", "link", "/dev/null"))
    rc, doc = _apply(tmp_path, files, "unmask: [t@1.service, t@.service]")
    assert rc == 0, doc
    units = _units(doc)
    assert units["t@1.service"]["state"] == "unmasked"
    assert units["t@1.service"]["compliant"]
    assert not units["t@1.service"]["refusal"]


def test_check_reports_the_waiting_instance_as_drift_not_as_refused(tmp_path: Path) -> None:
    files = ((f"{U}/t@.service", "unit", ""), (f"{E}/t@.service", "link", "/dev/null"))
    rc, doc = _run("check", tmp_path, files, "unmask: [t@1.service, t@.service]")
    assert rc == 1, doc
    u = {x["policy_name"]: x for x in doc["units"]}["t@1.service"]
    assert not u["compliant"]
    assert not u["refusal"]
    assert any("which the rule to unmask t@.service removes" in n for n in u["notes"])


def test_two_rules_that_agree_on_one_unit_change_it_once(tmp_path: Path) -> None:
    # t@.service directly and through its alias link in /etc: one displace, one mask.
    files = ((f"{E}/t@.service", "unit", ""), (f"{E}/al@.service", "link", f"{U}/t@.service"))
    policy = "mask:\n  - unit: t@.service\n    force: true\n  - unit: al@.service\n    force: true"
    rc, doc = _apply(tmp_path, files, policy)
    assert rc == 0, doc
    assert [c["what"] for c in doc["changes"]] == ["displace", "mask"]
    assert all(u["compliant"] for u in _units(doc).values())


def test_an_instance_does_not_wait_for_an_unmask_that_is_refused(tmp_path: Path) -> None:
    # The template's unmask disagrees with a mask of it through an /etc alias: refused, so
    # the instance's unmask cannot wait for it (it would wait, and reload, forever).
    files = (
        (f"{U}/t@.service", "unit", ""),
        (f"{E}/t@.service", "link", "/dev/null"),
        (f"{E}/tal@.service", "link", f"{U}/t@.service"),
    )
    policy = (
        "mask: [tal@.service]\nunmask:\n  - unit: t@1.service\n    enable: true\n  - t@.service"
    )
    rc, doc = _apply(tmp_path, files, policy)
    assert rc == 1
    u = _units(doc)["t@1.service"]
    assert "masked by its template's mask" in u["refusal"] or "disagree" in u["refusal"]
    assert not any(c["what"] == "enable" for c in doc["changes"])


def test_unmask_of_an_alias_whose_unit_this_run_masks_is_refused_up_front(tmp_path: Path) -> None:
    files = ((f"{U}/b.service", "unit", ""), (f"{U}/vb.service", "link", "b.service"))
    _, doc = _run("check", tmp_path, files, "mask: [b.service]\nunmask: [vb.service]")
    u = {x["policy_name"]: x for x in doc["units"]}["vb.service"]
    assert "disagree; keep one" in u["refusal"]


def test_rules_on_one_unit_that_differ_in_options_disagree(tmp_path: Path) -> None:
    files = ((f"{U}/a.service", "unit", ""), (f"{E}/al.service", "link", f"{U}/a.service"))
    policy = (
        "mask:\n  - unit: a.service\n    runtime: true\n    stop: false\n"
        "  - unit: al.service\n    stop: true"
    )
    rc, doc = _apply(tmp_path, files, policy)
    assert rc == 1
    assert not doc["changes"]
    assert all("disagree; keep one" in u["refusal"] for u in _units(doc).values())


def test_enable_follows_the_unmask_it_waited_for(tmp_path: Path) -> None:
    files = ((f"{U}/t@.service", "install", ""), (f"{E}/t@.service", "link", "/dev/null"))
    rc, doc = _apply(
        tmp_path, files, "unmask:\n  - unit: t@1.service\n    enable: true\n  - t@.service"
    )
    assert rc == 0, doc
    wants = tmp_path / "root/etc/systemd/system/multi-user.target.wants/t@1.service"
    assert wants.is_symlink()

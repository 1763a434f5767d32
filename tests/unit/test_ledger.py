"""The ledger on an unbooted tree (--root): apply records inside the tree only, release undoes
exactly that, and a damaged ledger is said, never trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from masktool.cli import main

ETC = "etc/systemd/system"


def _tree(top: Path) -> Path:
    (top / "usr/lib/systemd/system").mkdir(parents=True)
    (top / ETC).mkdir(parents=True)
    for u in ("lg-a.service", "lg-b.service"):
        (top / "usr/lib/systemd/system" / u).write_text("[Service]\nExecStart=/bin/true\n")
    pol = top / "etc/masktool/policy.yaml"
    pol.parent.mkdir(parents=True)
    pol.write_text("version: 1\nmask:\n  - lg-a.service\n  - lg-b.service\n")
    pol.chmod(0o644)
    return top


def test_release_on_a_tree_removes_what_apply_wrote(tmp_path: Path) -> None:
    top = _tree(tmp_path / "t")
    assert main(["apply", "--root", str(top)]) == 0
    doc = json.loads((top / "var/lib/masktool/ledger.json").read_text())
    assert sorted(m["unit"] for m in doc["masks"]) == ["lg-a.service", "lg-b.service"]
    assert all(m["path"].startswith("/etc/systemd/system/") for m in doc["masks"])
    assert main(["release", "--root", str(top), "lg-a.service"]) == 0
    assert not (top / ETC / "lg-a.service").exists()
    assert os.readlink(top / ETC / "lg-b.service") == "/dev/null"
    assert main(["release", "--root", str(top)]) == 0
    assert not (top / ETC / "lg-b.service").exists()


def test_the_ledger_stays_inside_the_tree(tmp_path: Path) -> None:
    top = _tree(tmp_path / "t")
    outside = tmp_path / "outside"
    outside.mkdir()
    (top / "var/lib").mkdir(parents=True)
    # An absolute link: resolved inside the tree, as systemctl --root does.
    (top / "var/lib/masktool").symlink_to(str(outside))
    assert main(["apply", "--root", str(top)]) == 0
    assert list(outside.iterdir()) == []
    assert (top / str(outside).lstrip("/") / "ledger.json").is_file()


def test_a_damaged_ledger_is_said_and_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = _tree(tmp_path / "t")
    (top / "var/lib/masktool").mkdir(parents=True)
    (top / "var/lib/masktool/ledger.json").write_text('{"format": 1, "masks": [{"unit": 3')
    assert main(["apply", "--root", str(top)]) == 0  # the masks are written all the same
    assert "cannot record in" in capsys.readouterr().err
    assert main(["release", "--root", str(top)]) == 2
    assert "ledger.json: damaged" in capsys.readouterr().err
    assert os.readlink(top / ETC / "lg-a.service") == "/dev/null"


@pytest.mark.parametrize(
    "record",
    [
        '"masks": [{"unit": "x.service", "path": "/etc/systemd/system/../../etc/passwd", '
        '"dev": 1, "ino": 2, "at": "", "rule": ""}], "displaced": []',
        '"masks": [{"unit": "passwd", "path": "/etc/passwd", "dev": 1, "ino": 2, "at": "", '
        '"rule": ""}], "displaced": []',
        '"masks": [], "displaced": [{"unit": "x.service", "path": "/etc/systemd/system/x.service",'
        ' "copy": "/etc/shadow", "at": ""}]',
        '"masks": [{"unit": "x\\ud800.service", "path": "/etc/systemd/system/x\\ud800.service", '
        '"dev": 1, "ino": 2, "at": "", "rule": ""}], "displaced": []',
        '"masks": ' + "[" * 5000 + "]" * 5000 + ', "displaced": []',
    ],
    ids=["dotdot", "outside", "copy-outside", "surrogate", "nested"],
)
def test_a_ledger_edited_by_hand_is_refused_whole(
    tmp_path: Path, record: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a hostile review: records naming other files made release remove or move
    them; a deeply nested ledger raised RecursionError past every handler."""
    top = _tree(tmp_path / "t")
    (top / "var/lib/masktool").mkdir(parents=True)
    (top / "var/lib/masktool/ledger.json").write_text('{"format": 1, ' + record + "}")
    assert main(["release", "--root", str(top)]) == 2
    assert "nothing was released" in capsys.readouterr().err
    assert main(["apply", "--root", str(top)]) == 0  # the masks are written all the same
    assert "cannot record in" in capsys.readouterr().err

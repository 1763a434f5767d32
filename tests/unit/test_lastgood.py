"""The last good policy kept on disk: written whole, read back equal, never half used."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from masktool import lastgood
from masktool.policy import load_policy


def _policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(
        "version: 1\nmode: enforce\ninclude: [stig-rhel9]\nmask:\n  - unit: a.service\n"
        "    reason: why\n    ref: xccdf_org.ssgproject.content_rule_service_a_disabled\n"
        "    with_triggers: true\n  - b@.service\n  - unit: c.service\n"
        "    runtime: true\nunmask:\n  - unit: d.service\n    enable: true\nexempt:\n"
        "  - unit: kdump.service\n    reason: needed\n"
    )
    return p


def test_a_saved_policy_reads_back_equal(tmp_path: Path) -> None:
    pol = load_policy([str(_policy(tmp_path))])
    path = str(tmp_path / "state.json")
    when = lastgood.save(pol, path)
    saved = lastgood.load(path)
    assert saved is not None
    assert saved.policy == pol
    refs = {r.unit: r.ref for r in saved.policy.rules}
    assert refs["a.service"] == "xccdf_org.ssgproject.content_rule_service_a_disabled"
    assert saved.saved_at == when
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not Path(path + ".new").exists()


def test_a_copy_saved_before_refs_reads_with_none(tmp_path: Path) -> None:
    pol = load_policy([str(_policy(tmp_path))])
    path = tmp_path / "state.json"
    lastgood.save(pol, str(path))
    doc = json.loads(path.read_text())
    for r in doc["rules"] + doc["all_rules"]:
        del r["ref"]
    path.write_text(json.dumps(doc))
    saved = lastgood.load(str(path))
    assert saved is not None
    assert {r.ref for r in saved.policy.rules} == {""}


def test_no_copy_is_none(tmp_path: Path) -> None:
    assert lastgood.load(str(tmp_path / "none.json")) is None


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "not-json",
        "wrong-type",
        "bad-unit",
        "bad-format",
        "fifo",
        "link",
        "latin1",
        "deep",
    ],
)
def test_a_damaged_copy_is_reported_never_used(tmp_path: Path, damage: str) -> None:
    pol = load_policy([str(_policy(tmp_path))])
    path = tmp_path / "state.json"
    lastgood.save(pol, str(path))
    text = path.read_text()
    data = json.loads(text)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "deep":
        path.write_text("[" * 200_000)
    elif damage == "not-json":
        path.write_text("nonsense")
    elif damage == "wrong-type":
        data["rules"][0]["line"] = "3"
        path.write_text(json.dumps(data))
    elif damage == "bad-unit":
        data["rules"][0]["unit"] = "../../etc/passwd"
        path.write_text(json.dumps(data))
    elif damage == "bad-format":
        data["format"] = 99
        path.write_text(json.dumps(data))
    elif damage == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif damage == "link":
        path.rename(tmp_path / "elsewhere.json")
        path.symlink_to(tmp_path / "elsewhere.json")
    else:
        path.write_bytes(b'{"format": 1, "saved_at": "\xe9"}')
    with pytest.raises(lastgood.LastGoodError, match=str(path)):
        lastgood.load(str(path))


def test_the_state_directory_systemd_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/masktool:/var/lib/other")
    assert lastgood.state_path() == "/var/lib/masktool/last-good-policy.json"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert lastgood.state_path() == "/var/lib/masktool/last-good-policy.json"

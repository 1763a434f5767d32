from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from masktool.policy import PolicyError, load_policy, parse_text

CORPUS = Path(__file__).parent / "bad_policies"
BAD = sorted(p for p in CORPUS.glob("[0-9]*.yaml"))


def _copy_corpus(tmp_path: Path) -> Path:
    dest = tmp_path / "corpus"
    shutil.copytree(CORPUS, dest)
    for p in dest.iterdir():
        p.chmod(0o644)  # a checkout made under umask 002 would be refused for the wrong reason
    return dest


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 15


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_bad_policy_names_file_line_and_problem(bad: Path, tmp_path: Path) -> None:
    header = bad.read_text().splitlines()[0]
    assert header.startswith("# expect: "), f"{bad.name} has no '# expect:' header"
    where, what = (s.strip() for s in header[len("# expect: ") :].split("|", 1))
    path = _copy_corpus(tmp_path) / bad.name
    with pytest.raises(PolicyError) as err:
        load_policy([str(path)])
    problems = err.value.problems
    assert any(w.endswith(where) and what in m for w, m in problems), problems


def test_short_and_long_forms(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "p.yaml",
        """version: 1
mask:
  - debug-shell.service
  - unit: kdump.service
    reason: "STIG RHEL-09-213115"
    stop: false
    runtime: true
    force: true
unmask:
  - unit: chronyd.service
    enable: true
""",
    )
    pol = load_policy([str(p)])
    assert pol.mode == "enforce"
    by = {r.unit: r for r in pol.rules}
    assert by["debug-shell.service"].stop is True
    assert by["debug-shell.service"].source.line == 3
    k = by["kdump.service"]
    assert (k.reason, k.stop, k.runtime, k.force, k.source.line) == (
        "STIG RHEL-09-213115",
        False,
        True,
        True,
        4,
    )
    assert by["chronyd.service"].action == "unmask"
    assert by["chronyd.service"].enable is True
    assert str(by["chronyd.service"].source) == f"{p}:10"


def test_include_by_name_site_before_vendor_and_exempt(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _write(
        root / "etc/masktool/policies/hard.yaml",
        "version: 1\nmask:\n  - cups.service\n  - kdump.service\n",
    )
    _write(root / "usr/share/masktool/policies/hard.yaml", "version: 1\nmask: [other.service]\n")
    _write(
        root / "etc/masktool/policy.yaml",
        "version: 1\ninclude: [hard]\nexempt:\n  - unit: cups.service\n    reason: print server\n",
    )
    pol = load_policy([], str(root))
    assert [r.unit for r in pol.rules] == ["kdump.service"]
    assert pol.rules[0].via == ("hard",)
    assert pol.rules[0].source.file.endswith("etc/masktool/policies/hard.yaml")
    assert pol.exemptions[0].unit == "cups.service"
    assert any(r.unit == "cups.service" for r in pol.all_rules)


def test_include_by_relative_path_and_site_rule_overrides_bundle(tmp_path: Path) -> None:
    _write(
        tmp_path / "b/base.yaml", "version: 1\nmask:\n  - unit: kdump.service\n    stop: false\n"
    )
    top = _write(
        tmp_path / "top.yaml",
        "version: 1\ninclude: [b/base.yaml]\nmask:\n  - unit: kdump.service\n",
    )
    pol = load_policy([str(top)])
    (rule,) = pol.rules
    assert rule.stop is True
    assert rule.source.file == str(top)


def test_default_locations_in_lexical_order(tmp_path: Path) -> None:
    _write(tmp_path / "etc/masktool/policy.yaml", "version: 1\nmask: [a.service]\n")
    _write(tmp_path / "etc/masktool/policy.d/20-b.yaml", "version: 1\nmask: [b.service]\n")
    _write(tmp_path / "etc/masktool/policy.d/10-c.yaml", "version: 1\nmask: [c.service]\n")
    _write(tmp_path / "etc/masktool/policy.d/ignored.txt", "not yaml")
    pol = load_policy([], str(tmp_path))
    assert [r.unit for r in pol.rules] == ["a.service", "c.service", "b.service"]


def test_policy_directory_argument(tmp_path: Path) -> None:
    _write(tmp_path / "d/2.yaml", "version: 1\nmask: [two.service]\n")
    _write(tmp_path / "d/1.yaml", "version: 1\nmask: [one.service]\n")
    pol = load_policy([str(tmp_path / "d")])
    assert [r.unit for r in pol.rules] == ["one.service", "two.service"]


def test_no_policy_at_all_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no policy file found"):
        load_policy([], str(tmp_path))


def test_group_writable_policy_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", "version: 1\nmask: [a.service]\n")
    p.chmod(0o664)
    with pytest.raises(PolicyError, match="writable by group or others"):
        load_policy([str(p)])


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_policy_owned_by_another_user_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", "version: 1\nmask: [a.service]\n")
    os.chown(p, 65534, 65534)
    with pytest.raises(PolicyError, match="not owned by root"):
        load_policy([str(p)])


def test_mode_conflict_between_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "version: 1\nmode: audit\n")
    b = _write(tmp_path / "b.yaml", "version: 1\nmode: enforce\n")
    with pytest.raises(PolicyError, match="contradicts"):
        load_policy([str(a), str(b)])


def test_several_problems_reported_at_once() -> None:
    problems: list[tuple[str, str]] = []
    parse_text("version: 1\nmask:\n  - bad\n  - unit: x.service\n    what: 1\n", "f", problems)
    assert [w for w, _ in problems] == ["f:3", "f:5"]


def test_yaml_booleans_and_empty_lists(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", "version: 1\nmask:\nunmask: []\nexempt:\n")
    pol = load_policy([str(p)])
    assert pol.rules == ()

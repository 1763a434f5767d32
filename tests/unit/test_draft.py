"""`--as INSTALLED_PATH --draft FILE`: a policy file not installed yet is read where it will be
installed, with everything else that is, so that it is validated as it will merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from masktool.cli import main
from masktool.policy import Draft, PolicyError, load_policy


def _write(p: Path, text: str) -> str:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(0o644)
    return str(p)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "root"
    _write(top / "etc/masktool/policy.yaml", "version: 1\nmode: enforce\nmask:\n  - a.service\n")
    return top


def _problems(root: Path, draft: Draft) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as e:
        load_policy([], str(root), draft)
    return e.value.problems


def test_a_draft_that_contradicts_the_installed_mode_is_rejected(
    root: Path, tmp_path: Path
) -> None:
    # The finding: validated alone, `mode: audit` passed; merged, the daemon rejected it.
    d = _write(tmp_path / "draft.yaml", "version: 1\nmode: audit\nmask:\n  - b.service\n")
    assert load_policy([d]).mode == "audit"  # alone it is fine
    problems = _problems(root, Draft("/etc/masktool/policy.d/50-site.yaml", d))
    assert problems == [
        (
            f"{d}:2",
            f"mode 'audit' contradicts mode 'enforce' set at {root}/etc/masktool/policy.yaml:2",
        )
    ]


def test_a_draft_is_added_in_its_place_among_the_others(root: Path, tmp_path: Path) -> None:
    _write(root / "etc/masktool/policy.d/10-a.yaml", "version: 1\nmask:\n  - c.service\n")
    _write(root / "etc/masktool/policy.d/90-z.yaml", "version: 1\nmask:\n  - e.service\n")
    d = _write(tmp_path / "draft.yaml", "version: 1\nmask:\n  - d.service\n")
    p = load_policy([], str(root), Draft("/etc/masktool/policy.d/50-site.yaml", d))
    assert [r.unit for r in p.rules] == ["a.service", "c.service", "d.service", "e.service"]
    assert d in p.files
    # A draft that unmasks what an installed file masks is the conflict it will be.
    bad = _write(tmp_path / "bad.yaml", "version: 1\nunmask:\n  - c.service\n")
    problems = _problems(root, Draft("/etc/masktool/policy.d/50-site.yaml", bad))
    assert problems[0][0] == f"{bad}:3"
    assert "both unmasked here and masked at" in problems[0][1]


def test_a_draft_replaces_the_installed_file_of_its_path(root: Path, tmp_path: Path) -> None:
    _write(root / "etc/masktool/policy.d/50-site.yaml", "version: 1\nmask:\n  - unit: x\n")
    d = _write(tmp_path / "draft.yaml", "version: 1\nmask:\n  - f.service\n")
    p = load_policy([], str(root), Draft("/etc/masktool/policy.d/50-site.yaml", d))
    assert [r.unit for r in p.rules] == ["a.service", "f.service"]
    # And the top-level file too, even when policy.d does not exist.
    (root / "etc/masktool/policy.d/50-site.yaml").unlink()
    (root / "etc/masktool/policy.d").rmdir()
    d2 = _write(tmp_path / "top.yaml", "version: 1\nmode: audit\nmask:\n  - g.service\n")
    p = load_policy([], str(root), Draft("/etc/masktool/policy.yaml", d2))
    assert (p.mode, [r.unit for r in p.rules]) == ("audit", ["g.service"])


def test_a_draft_of_a_site_bundle_is_read_where_it_is_included(root: Path, tmp_path: Path) -> None:
    _write(
        root / "etc/masktool/policy.yaml",
        "version: 1\ninclude: [site]\nexempt:\n  - unit: h.service\n    reason: kept\n",
    )
    d = _write(tmp_path / "site.yaml", "version: 1\nmask:\n  - h.service\n  - i.service\n")
    p = load_policy([], str(root), Draft("/etc/masktool/policies/site.yaml", d))
    assert [r.unit for r in p.rules] == ["i.service"]
    assert p.rules[0].via == ("site",)


def test_a_draft_nothing_reads_is_an_error(root: Path, tmp_path: Path) -> None:
    d = _write(tmp_path / "draft.yaml", "version: 1\nmask:\n  - b.service\n")
    for path in ("/etc/masktool/other.yaml", "/etc/masktool/policy.d/.hidden.yaml"):
        problems = _problems(root, Draft(path, d))
        assert problems[0][0] == d
        assert "no policy masktool reads is at that path" in problems[0][1]


def test_as_and_draft_go_together(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", "--as", "/etc/masktool/policy.yaml"]) == 2
    assert "--as INSTALLED_PATH and --draft FILE go together" in capsys.readouterr().err
    assert main(["validate", "--as", "policy.yaml", "--draft", str(tmp_path)]) == 2
    assert "absolute path" in capsys.readouterr().err


def test_a_drafts_includes_are_found_where_it_will_be_installed(root: Path, tmp_path: Path) -> None:
    """Found by a hostile review: a relative include was looked up beside the draft (and a
    file of that name there silently planned instead); with --root an absolute one on the
    host."""
    _write(root / "etc/masktool/common/extra.yaml", "version: 1\nmask:\n  - b.service\n")
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "common/extra.yaml", "version: 1\nmask:\n  - d.service\n")
    for ref in ("common/extra.yaml", "/etc/masktool/common/extra.yaml"):
        d = _write(elsewhere / "draft.yaml", f"version: 1\ninclude: [{ref}]\n")
        p = load_policy([], str(root), Draft("/etc/masktool/policy.yaml", d))
        assert sorted(r.unit for r in p.rules) == ["b.service"], ref
        assert f"{root}/etc/masktool/common/extra.yaml" in p.files


def test_a_draft_for_a_file_reached_through_a_link_is_read_there(
    root: Path, tmp_path: Path
) -> None:
    # policy.yaml -> policy.d/10.yaml: the draft of policy.d/10.yaml is what both names read.
    _write(root / "etc/masktool/policy.d/10.yaml", "version: 1\nmask:\n  - old.service\n")
    (root / "etc/masktool/policy.yaml").unlink()
    (root / "etc/masktool/policy.yaml").symlink_to("policy.d/10.yaml")
    d = _write(tmp_path / "draft.yaml", "version: 1\nunmask:\n  - old.service\n")
    p = load_policy([], str(root), Draft("/etc/masktool/policy.d/10.yaml", d))
    assert [(r.unit, r.action) for r in p.rules] == [("old.service", "unmask")]

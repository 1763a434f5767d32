"""systemd's loader resolves a unit by name (issue 10, pattern 5): masktool predicts LoadState
from the files alone for every shape of tests/loader_shapes.py, each tried booted."""

from __future__ import annotations

from pathlib import Path

import pytest

from masktool.engine import observe_and_plan
from masktool.observe import State, UnitTree
from masktool.plan import UnitPlan
from masktool.policy import load_policy
from tests.loader_shapes import SHAPES, build


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> UnitTree:
    top = tmp_path_factory.mktemp("loader")
    for _, _, files in SHAPES:
        build(top, files)
    return UnitTree(str(top))


@pytest.mark.parametrize(("said", "name"), [(s, n) for s, n, _ in SHAPES], ids=lambda x: x)
def test_load_state_predicted_as_systemd_252_gives_it(tree: UnitTree, said: str, name: str) -> None:
    o = tree.observe_files(name)
    assert o.load_state_on_disk == said, [e.describe() for e in o.entries]


def _plan(top: Path, text: str) -> dict[str, UnitPlan]:
    f = top / "policy.yaml"
    f.write_text(text)
    f.chmod(0o644)
    p = observe_and_plan(load_policy([str(f)]), str(top), None)
    return {u.rule.unit: u for u in p.units}


def test_vendor_alias_of_a_masked_unit_is_masked_and_its_unmask_is_refused(tmp_path: Path) -> None:
    # Pattern 5: al.socket -> c.socket in /usr/lib, c.socket masked in /etc.
    build(tmp_path, SHAPES[0][2])
    u = _plan(tmp_path, "version: 1\nunmask: [ld-al1.socket]\n")["ld-al1.socket"]
    assert u.state == State.MASKED
    assert not u.compliant
    assert not u.actions
    assert "resolves by name through ld-c1.socket" in u.refusal
    # The rule covers the alias name: masking it adds a mask of its own, as systemctl does.
    m = _plan(tmp_path, "version: 1\nmask: [ld-al1.socket]\n")["ld-al1.socket"]
    assert [(a.step.value, a.unit) for a in m.actions] == [("mask", "ld-al1.socket")]


def test_a_link_to_the_units_own_file_lower_down_is_no_mask_to_remove(tmp_path: Path) -> None:
    # /etc/x -> /usr/lib/x -> /dev/null: the loader skips the /etc link and the vendor mask
    # counts. The link is not a mask of masktool's scope: unmask leaves it and says why.
    build(tmp_path, SHAPES[3][2])
    u = _plan(tmp_path, "version: 1\nunmask: [ld-x4.service]\n")["ld-x4.service"]
    assert u.state == State.MASKED_VENDOR
    assert not u.actions
    assert "outside /etc and /run" in u.refusal
    assert (tmp_path / "etc/systemd/system/ld-x4.service").is_symlink()


def test_runtime_mask_behind_a_skipped_etc_link_takes_effect(tmp_path: Path) -> None:
    # A runtime rule with only a skipped link in /etc: the /run mask wins (shape ld-y5).
    build(tmp_path, SHAPES[4][2][:2])
    u = _plan(tmp_path, "version: 1\nmask:\n  - unit: ld-y5.service\n    runtime: true\n")
    steps = [(a.step.value, a.detail) for a in u["ld-y5.service"].actions]
    assert steps == [("mask-runtime", "/run/systemd/system")]


def test_a_rule_never_lands_on_a_unit_its_name_does_not_load(tmp_path: Path) -> None:
    # An alias chain too long for systemd in /etc: the name is not-found, so a mask rule must
    # not mask the unit at the chain's end (it reports the alias link it cannot replace).
    e, u = tmp_path / "etc/systemd/system", tmp_path / "usr/lib/systemd/system"
    e.mkdir(parents=True)
    u.mkdir(parents=True)
    for i in range(8):
        (e / f"c-{i}.service").symlink_to(f"/usr/lib/systemd/system/c-{i + 1}.service")
    (u / "c-8.service").write_text("[Service]\nExecStart=/bin/true\n")
    m = _plan(tmp_path, "version: 1\nmask: [c-0.service]\n")["c-0.service"]
    assert m.obs.unit == "c-0.service"
    assert not m.actions
    assert m.refusal.startswith("conflict: /etc/systemd/system/c-0.service is an alias")
    # A link systemd cannot resolve (.. after a missing directory) is skipped, not followed:
    # unmasking its name never removes the mask of the unit it seems to name.
    (u / "p.service").write_text("[Service]\nExecStart=/bin/true\n")
    (e / "p.service").symlink_to("/usr/lib/systemd/system/missing/../pt.service")
    (e / "pt.service").symlink_to("/dev/null")
    p = _plan(tmp_path, "version: 1\nunmask: [p.service]\n")["p.service"]
    assert p.obs.unit == "p.service"
    assert not p.actions
    assert p.compliant


def test_a_dependent_that_names_the_unit_by_an_alias_blocks_its_mask(tmp_path: Path) -> None:
    build(
        tmp_path,
        (
            ("/usr/lib/systemd/system/b.service", "unit", ""),
            ("/usr/lib/systemd/system/vb.service", "link", "b.service"),
            ("/usr/lib/systemd/system/d.service", "requires", "vb.service"),
            (
                "/etc/systemd/system/multi-user.target.wants/d.service",
                "link",
                "/usr/lib/systemd/system/d.service",
            ),
        ),
    )
    u = _plan(tmp_path, "version: 1\nmask: [b.service]\n")["b.service"]
    assert not u.actions
    assert "would fail without it: d.service" in u.refusal

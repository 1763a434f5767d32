"""A rule about one instance never changes its template (issue 10, patterns 3 and 6), on real
unit trees: observe and plan as `apply --root` runs them."""

from __future__ import annotations

import os
from pathlib import Path

from masktool.engine import observe_and_plan
from masktool.plan import Step, UnitPlan
from masktool.policy import load_policy

UNIT = "[Service]\nExecStart=/bin/true\n"


def _tree(tmp_path: Path, *, template_masked: bool, instance_link: bool) -> Path:
    vendor = tmp_path / "usr/lib/systemd/system"
    etc = tmp_path / "etc/systemd/system"
    vendor.mkdir(parents=True)
    etc.mkdir(parents=True)
    (vendor / "t@.service").write_text(UNIT)
    if template_masked:
        os.symlink("/dev/null", etc / "t@.service")
    if instance_link:  # what `systemctl enable t@1.service` makes
        os.symlink("/usr/lib/systemd/system/t@.service", etc / "t@1.service")
    return tmp_path


def _plan(root: Path, text: str) -> dict[str, UnitPlan]:
    policy_file = root / "policy.yaml"
    policy_file.write_text(text)
    policy_file.chmod(0o644)
    p = observe_and_plan(load_policy([str(policy_file)]), str(root), None)
    return {u.rule.unit: u for u in p.units}


def test_unmask_of_an_instance_never_removes_the_templates_mask(tmp_path: Path) -> None:
    root = _tree(tmp_path, template_masked=True, instance_link=True)
    u = _plan(root, "version: 1\nunmask: [t@1.service]\n")["t@1.service"]
    assert u.obs.unit == "t@1.service"  # not followed to the template as an alias
    assert not u.actions
    assert not u.compliant
    assert "masked by its template's mask at /etc/systemd/system/t@.service" in u.refusal


def test_unmask_of_an_instance_without_a_file_is_not_compliant_while_the_template_is_masked(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path, template_masked=True, instance_link=False)
    u = _plan(root, "version: 1\nunmask: [t@2.service]\n")["t@2.service"]
    assert u.state.value == "masked"
    assert not u.compliant
    assert not u.actions
    assert "masked by its template's mask" in u.refusal


def test_mask_of_an_instance_reports_its_link_and_leaves_the_template(tmp_path: Path) -> None:
    root = _tree(tmp_path, template_masked=False, instance_link=True)
    u = _plan(root, "version: 1\nmask: [t@1.service]\n")["t@1.service"]
    assert u.obs.unit == "t@1.service"
    assert all(a.unit == "t@1.service" for a in u.actions)
    assert "link to the unit file /usr/lib/systemd/system/t@.service" in u.refusal


def test_an_instance_linked_to_its_template_is_covered_by_the_template_mask(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path, template_masked=True, instance_link=True)
    u = _plan(root, "version: 1\nmask: [t@.service]\n")["t@.service"]
    assert u.compliant
    assert not u.obs.owned_instances  # a link to the template's file is not a file of its own
    assert not any(a.step == Step.MASK for a in u.actions)

"""The bundled policies validate, apply in a booted systemd (pre-masking what is not installed),
and honour exemptions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Host

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BUNDLES = sorted(p.stem for p in POLICIES.glob("*.yaml"))


def test_the_bundles_are_shipped() -> None:
    assert {
        "stig-rhel9",
        "cis-rhel9-l1",
        "cis-fedora",
        "ospp",
        "cis-debian12-l1",
        "cis-ubuntu2204-l1",
        "stig-ubuntu2204",
    } <= set(BUNDLES)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_applies_by_name(host: Host, bundle: str) -> None:
    p = host.policy(f"b-{bundle}", f"version: 1\ninclude: [{bundle}]\n")
    assert host.masktool_run("validate", "--policy", p).returncode == 0
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, [u for u in doc["after"]["units"] if not u["compliant"]]
    units = doc["after"]["units"]
    text = yaml.safe_load((POLICIES / f"{bundle}.yaml").read_text())
    assert len(units) == len(text["mask"])
    refs = {r["unit"]: r.get("ref", "") for r in text["mask"]}
    for u in units:
        assert u["rule"]["via"] == [bundle]
        assert u["rule"]["reason"], u["unit"]
        assert u["rule"]["ref"] == refs[u["unit"]]
        assert u["load_state"] == "masked", u
        assert os.readlink(host.etc(u["unit"])) == "/dev/null"
    assert any(not u["installed"] for u in units)  # pre-masked before any package ships it


def test_exemption_is_honoured_and_shown_by_why(host: Host) -> None:
    host.systemctl("unmask", "kdump.service", check=False)
    p = host.policy(
        "b-exempt",
        "version: 1\ninclude: [ospp]\nexempt:\n  - unit: kdump.service\n"
        "    reason: crash dumps needed for the kernel team\n",
    )
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert "kdump.service" not in {u["unit"] for u in doc["after"]["units"]}
    assert not host.etc("kdump.service").exists()
    why = host.masktool_run("why", "kdump.service", "--policy", p).stdout
    assert "rule (exempted): mask kdump.service at " in why
    assert "via include ospp" in why
    assert f"exempted at {p}:4: crash dumps needed for the kernel team" in why


def test_a_rules_ref_is_shown_by_why_check_and_the_journal(host: Host) -> None:
    """Issue 13: a rule names the ComplianceAsCode check that proves it."""
    ref = "xccdf_org.ssgproject.content_rule_service_b_ref_disabled"
    host.vendor_unit("b-ref.service")
    host.systemctl("daemon-reload")
    p = host.policy("b-ref", f"version: 1\nmask:\n  - unit: b-ref.service\n    ref: {ref}\n")
    try:
        assert host.masktool_run("apply", "--policy", p).returncode == 0
        why = host.masktool_run("why", "b-ref.service", "--policy", p).stdout
        assert f"    checked by: {ref}\n" in why, why
        rc, doc = host.json("check", "--policy", p)
        assert rc == 0 and doc["units"][0]["rule"]["ref"] == ref, doc
        entries = host.journal("MASKTOOL_UNIT=b-ref.service", "MASKTOOL_ACTION=mask")
        assert entries and entries[-1]["MASKTOOL_REF"] == ref, entries
    finally:
        host.systemctl("unmask", "b-ref.service")

"""Safe masking in a booted systemd: reverse dependencies, protected units, activators."""

from __future__ import annotations

import os
from typing import Any

from tests.integration.conftest import Host, wait_until

SLEEPER = "[Service]\nExecStart=/bin/sleep infinity\n"


def unit(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(u for u in doc.get("after", doc)["units"] if u["unit"] == name)


def test_active_hard_dependent_blocks_masking_until_force(host: Host) -> None:
    host.vendor_unit("s1-lib.service")
    host.vendor_unit(
        "s1-app.service", "[Unit]\nRequires=s1-lib.service\nAfter=s1-lib.service\n" + SLEEPER
    )
    host.systemctl("daemon-reload")
    host.systemctl("start", "s1-app.service")
    p = host.policy("s1", "version: 1\nmask:\n  - s1-lib.service\n  - s1-other.service\n")

    rc, doc = host.json("plan", "--policy", p)
    lib = unit(doc, "s1-lib.service")
    assert "s1-app.service (Requires=s1-lib.service, active)" in lib["refusal"]
    deps = {(d["unit"], d["kind"]): d for d in lib["dependents"]}
    assert deps[("s1-app.service", "Requires")]["active"] is True
    text = host.masktool_run("plan", "--policy", p).stdout
    assert "depended on by s1-app.service (Requires, active)" in text

    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    assert not host.etc("s1-lib.service").exists()
    assert unit(doc, "s1-other.service")["compliant"]  # the rest is still applied
    assert host.show("s1-app.service")["ActiveState"] == "active"

    forced = host.policy("s1f", "version: 1\nmask:\n  - unit: s1-lib.service\n    force: true\n")
    rc, doc = host.json("apply", "--policy", forced)
    assert rc == 0, doc
    assert host.show("s1-lib.service")["LoadState"] == "masked"


def test_a_forced_mask_says_which_units_systemd_stops_with_it(host: Host) -> None:
    """Issue 12, item 8: plan did not show the dependents systemd stops with a forced mask's
    stop. Checked against what systemd 252 does: Requires=, Requisite=, BindsTo=, PartOf= and
    StopPropagatedFrom= dependents stop with it; Wants= ones do not."""
    host.vendor_unit("s9-lib.service")
    kinds = {
        "req": "Requires",
        "bind": "BindsTo",
        "part": "PartOf",
        "rqs": "Requisite",
        "spf": "StopPropagatedFrom",
    }
    for name, kind in kinds.items():
        host.vendor_unit(
            f"s9-{name}.service", f"[Unit]\n{kind}=s9-lib.service\nAfter=s9-lib.service\n" + SLEEPER
        )
    host.vendor_unit("s9-want.service", "[Unit]\nWants=s9-lib.service\n" + SLEEPER)
    host.systemctl("daemon-reload")
    units = [f"s9-{n}.service" for n in (*kinds, "want")]
    host.systemctl("start", "s9-lib.service", *units)
    p = host.policy("s9", "version: 1\nmask:\n  - unit: s9-lib.service\n    force: true\n")
    _, doc = host.json("plan", "--policy", p)
    stop = next(a for a in unit(doc, "s9-lib.service")["actions"] if a["step"] == "stop")
    said = stop["detail"]
    assert said.startswith("systemd stops with it: "), said
    text = host.masktool_run("plan", "--policy", p).stdout
    assert f"stop          s9-lib.service ({said})" in text, text
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    stopped = {u for u in units if host.show(u)["ActiveState"] != "active"}
    named = {u for u in units if f"{u} (" in said}
    assert stopped == named == {f"s9-{n}.service" for n in kinds}, (
        stopped,
        said,
    )
    host.systemctl("stop", *units)
    host.systemctl("unmask", "s9-lib.service")


def test_unloaded_dependent_is_found_in_unit_files(host: Host) -> None:
    host.vendor_unit("s2-lib.service")
    host.vendor_unit("s2-idle.service", "[Unit]\nRequires=s2-lib.service\n" + SLEEPER)
    host.systemctl("daemon-reload")
    # Neither loaded nor enabled: systemd's RequiredBy= would not list it.
    assert (
        "s2-idle.service" not in host.systemctl("show", "-p", "RequiredBy", "s2-lib.service").stdout
    )
    p = host.policy("s2", "version: 1\nmask:\n  - s2-lib.service\n")
    _, doc = host.json("plan", "--policy", p)
    lib = unit(doc, "s2-lib.service")
    dep = next(d for d in lib["dependents"] if d["unit"] == "s2-idle.service")
    assert dep["kind"] == "Requires"
    assert dep["source"].endswith("/s2-idle.service")
    assert dep["active"] is False and dep["enabled"] is False
    assert lib["refusal"] == ""  # not in use: masking it is allowed


def test_enabled_hard_dependent_blocks(host: Host) -> None:
    host.vendor_unit("s3-lib.service")
    host.vendor_unit(
        "s3-app.service",
        "[Unit]\nBindsTo=s3-lib.service\n" + SLEEPER + "[Install]\nWantedBy=multi-user.target\n",
    )
    host.systemctl("daemon-reload")
    host.systemctl("enable", "s3-app.service")
    p = host.policy("s3", "version: 1\nmask:\n  - s3-lib.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    assert (
        "s3-app.service (BindsTo=s3-lib.service, enabled)" in unit(doc, "s3-lib.service")["refusal"]
    )
    # Masking the dependent too makes it safe.
    both = host.policy("s3b", "version: 1\nmask:\n  - s3-lib.service\n  - s3-app.service\n")
    rc, doc = host.json("apply", "--policy", both)
    assert rc == 0, doc


def test_protected_units_need_force(host: Host) -> None:
    p = host.policy("s4", "version: 1\nmask:\n  - rescue.service\n  - sshd.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    assert (
        "rescue.service is protected (the way to recover" in unit(doc, "rescue.service")["refusal"]
    )
    assert not host.etc("rescue.service").exists()
    forced = host.policy("s4f", "version: 1\nmask:\n  - unit: rescue.service\n    force: true\n")
    try:
        rc, doc = host.json("apply", "--policy", forced)
        assert rc == 0, doc
        assert host.show("rescue.service")["LoadState"] == "masked"
    finally:
        host.systemctl("unmask", "rescue.service")


def test_masktool_never_masks_itself_or_what_it_needs(host: Host) -> None:
    p = host.policy(
        "s5",
        "version: 1\nmask:\n  - unit: masktool.service\n    force: true\n"
        "  - unit: dbus.socket\n    force: true\n"
        "  - unit: systemd-journald.service\n    force: true\n",
    )
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    for name in ("masktool.service", "dbus.socket", "systemd-journald.service"):
        assert "never masks" in unit(doc, name)["refusal"], name
        assert not host.etc(name).exists()


def test_activator_warning_and_with_triggers(host: Host) -> None:
    host.vendor_unit("s6-d.service", SLEEPER)
    host.vendor_unit(
        "s6-d.socket",
        "[Socket]\nListenStream=/run/s6-d.sock\n[Install]\nWantedBy=sockets.target\n",
    )
    host.systemctl("daemon-reload")
    host.systemctl("enable", "--now", "s6-d.socket")
    p = host.policy("s6", "version: 1\nmask:\n  - s6-d.service\n")
    rc, doc = host.json("plan", "--policy", p)
    svc = unit(doc, "s6-d.service")
    assert svc["activators"] == ["s6-d.socket"]
    assert any("with_triggers" in n for n in svc["notes"])
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    matches = ("-u", "s6-d.service", "MASKTOOL_ACTION=activator")
    wait_until("the activator warning", lambda: bool(host.journal(*matches)))
    assert host.journal(*matches)[0]["MASKTOOL_ACTIVATORS"] == "s6-d.socket"
    assert host.show("s6-d.socket")["LoadState"] == "loaded"

    both = host.policy(
        "s6b", "version: 1\nmask:\n  - unit: s6-d.service\n    with_triggers: true\n"
    )
    rc, doc = host.json("apply", "--policy", both)
    assert rc == 0, doc
    sock = unit(doc, "s6-d.socket")
    assert sock["rule"]["file"] == both
    assert os.readlink(host.etc("s6-d.socket")) == "/dev/null"
    st = host.show("s6-d.socket")
    assert (st["LoadState"], st["ActiveState"]) == ("masked", "inactive")
    # Issue 12, item 5: once masked, the activator is a policy unit everywhere, named with
    # the rule that masked it: check counts it, why and plan say which rule, JSON and the
    # metrics carry it.
    rc, doc = host.json("check", "--policy", both)
    assert rc == 0, doc
    sock = unit(doc, "s6-d.socket")
    assert (sock["compliant"], sock["rule"]["trigger_of"]) == (True, "s6-d.service"), sock
    out = host.masktool_run("check", "--policy", both).stdout
    assert "2 of 2 unit(s) as the policy wants" in out, out
    why = host.masktool_run("why", "s6-d.socket", "--policy", both).stdout
    assert f"rule: mask s6-d.socket at {both}:3 (with_triggers of s6-d.service" in why, why
    assert "no rule in the policy names" not in why, why
    assert "state: masked, want masked: compliant" in why, why
    prom = host.sb.path("/root/s6.prom")
    host.masktool_run("check", "--policy", both, "--metrics", "/root/s6.prom")
    text = prom.read_text()
    assert 'masktool_unit_compliant{unit="s6-d.socket",want="masked",state="masked"} 1' in text
    host.systemctl("unmask", "s6-d.socket", "s6-d.service")

"""The engine against a real systemd 252 booted in namespaces (see tests/sandbox.py)."""

from __future__ import annotations

import json
import os

from tests.integration.conftest import VENDOR_DIR, Host, wait_until


def test_mask_running_unit_ends_masked_inactive_and_start_refused(host: Host) -> None:
    host.vendor_unit("t1-web.service")
    host.systemctl("daemon-reload")
    host.systemctl("start", "t1-web.service")
    assert host.show("t1-web.service")["ActiveState"] == "active"
    p = host.policy("t1", "version: 1\nmask:\n  - t1-web.service\n")

    rc, doc = host.json("check", "--policy", p)
    assert rc == 1
    assert doc["units"][0]["state"] == "unmasked"
    assert doc["units"][0]["active_state"] == "active"

    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert doc["reloads"] == 1
    st = host.show("t1-web.service")
    assert st["LoadState"] == "masked"
    assert st["ActiveState"] == "inactive"
    assert os.readlink(host.etc("t1-web.service")) == "/dev/null"
    res = host.systemctl("start", "t1-web.service", check=False)
    assert res.returncode != 0
    assert "Unit t1-web.service is masked" in res.stderr
    assert host.masktool_run("check", "--policy", p).returncode == 0


def test_unmask_restores_loaded_does_not_enable_and_removes_runtime_mask(host: Host) -> None:
    host.vendor_unit(
        "t2-svc.service",
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    )
    host.systemctl("mask", "t2-svc.service")
    host.systemctl("mask", "--runtime", "t2-svc.service")
    assert host.show("t2-svc.service")["LoadState"] == "masked"
    p = host.policy("t2", "version: 1\nunmask:\n  - t2-svc.service\n")

    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert not host.etc("t2-svc.service").is_symlink()
    assert not host.run_dir("t2-svc.service").is_symlink()
    st = host.show("t2-svc.service")
    assert st["LoadState"] == "loaded"
    assert st["UnitFileState"] == "disabled"  # unmask never enables by itself
    assert st["ActiveState"] == "inactive"


def test_unmask_with_enable_enables(host: Host) -> None:
    host.vendor_unit(
        "t2e-svc.service",
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    )
    host.systemctl("mask", "t2e-svc.service")
    p = host.policy("t2e", "version: 1\nunmask:\n  - unit: t2e-svc.service\n    enable: true\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert host.show("t2e-svc.service")["UnitFileState"] == "enabled"


def test_unit_not_installed_is_premasked_then_stays_masked_when_installed(host: Host) -> None:
    p = host.policy("t3", "version: 1\nmask:\n  - t3-later.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert os.readlink(host.etc("t3-later.service")) == "/dev/null"
    assert host.show("t3-later.service")["LoadState"] == "masked"
    host.vendor_unit("t3-later.service")
    host.systemctl("daemon-reload")
    assert host.show("t3-later.service")["LoadState"] == "masked"
    assert host.systemctl("start", "t3-later.service", check=False).returncode != 0


def test_template_mask_stops_running_instances(host: Host) -> None:
    host.vendor_unit("t4-tpl@.service")
    host.systemctl("daemon-reload")
    host.systemctl("start", "t4-tpl@a.service", "t4-tpl@b.service")
    p = host.policy("t4", "version: 1\nmask:\n  - t4-tpl@.service\n")

    rc, doc = host.json("plan", "--policy", p)
    assert rc == 1
    steps = sorted((a["step"], a["unit"]) for a in doc["units"][0]["actions"])
    assert ("stop", "t4-tpl@a.service") in steps
    assert ("stop", "t4-tpl@b.service") in steps

    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    for inst in ("t4-tpl@a.service", "t4-tpl@b.service", "t4-tpl@new.service"):
        st = host.show(inst)
        assert st["LoadState"] == "masked", inst
        assert st["ActiveState"] == "inactive", inst
    assert host.systemctl("start", "t4-tpl@c.service", check=False).returncode != 0


def test_alias_resolves_to_the_unit_it_names(host: Host) -> None:
    host.vendor_unit("t5-real.service")
    host.sb.run(
        [
            "ln",
            "-s",
            "/usr/local/lib/systemd/system/t5-real.service",
            "/etc/systemd/system/t5-alias.service",
        ]
    )
    host.systemctl("daemon-reload")
    p = host.policy("t5", "version: 1\nmask:\n  - t5-alias.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    unit = doc["after"]["units"][0]
    assert unit["unit"] == "t5-real.service"
    assert unit["policy_name"] == "t5-alias.service"
    assert host.show("t5-real.service")["LoadState"] == "masked"
    # The alias link itself is the admin's: left alone.
    assert os.readlink(host.etc("t5-alias.service")).endswith("t5-real.service")
    why = host.masktool_run("why", "t5-alias.service", "--policy", p).stdout
    assert "alias of t5-real.service" in why


def test_unit_file_in_etc_is_a_conflict_left_untouched(host: Host) -> None:
    body = "[Service]\nExecStart=/bin/sleep infinity\n"
    host.sb.write("/etc/systemd/system/t6-local.service", body)
    host.systemctl("daemon-reload")
    p = host.policy("t6", "version: 1\nmask:\n  - t6-local.service\n  - t6-other.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    units = {u["unit"]: u for u in doc["after"]["units"]}
    assert units["t6-local.service"]["state"] == "conflict"
    assert "unit file" in units["t6-local.service"]["refusal"]
    assert host.etc("t6-local.service").read_text() == body
    # The rest of the policy is still applied.
    assert units["t6-other.service"]["compliant"]


def test_conflict_with_force_is_displaced_then_masked(host: Host) -> None:
    body = "[Service]\nExecStart=/bin/true\n"
    host.sb.write("/etc/systemd/system/t7-local.service", body, 0o640)
    original = host.etc("t7-local.service")
    os.chown(original, 12345, 23456)
    os.utime(original, ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    host.systemctl("daemon-reload")
    p = host.policy("t7", "version: 1\nmask:\n  - unit: t7-local.service\n    force: true\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert os.readlink(host.etc("t7-local.service")) == "/dev/null"
    # One directory per apply, the file under its own name (any unit name fits).
    moved = list(host.sb.path("/var/lib/masktool/displaced").glob("*/t7-local.service"))
    assert len(moved) == 1
    assert moved[0].read_text() == body
    st = moved[0].stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 12345, 23456)
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
    assert not list(moved[0].parent.glob(".masktool-*")), "a temporary copy was left"
    change = next(c for c in doc["changes"] if c["what"] == "displace")
    assert change["detail"].endswith(
        f"/var/lib/masktool/displaced/{moved[0].parent.name}/t7-local.service"
    )
    entry = host.journal("MASKTOOL_UNIT=t7-local.service", "MASKTOOL_ACTION=mask")[-1]
    assert (
        entry["MASKTOOL_DISPLACED"]
        == f"/var/lib/masktool/displaced/{moved[0].parent.name}/t7-local.service"
    )
    assert host.show("t7-local.service")["LoadState"] == "masked"


def test_a_hard_linked_file_displaced_is_said_so_in_the_journal(host: Host) -> None:
    """Found by a hostile review: the note reached apply's output only."""
    host.sb.write("/etc/systemd/system/t7h-local.service", "[Service]\nExecStart=/bin/true\n")
    os.link(host.etc("t7h-local.service"), host.sb.path("/etc/t7h-kept.service"))
    host.systemctl("daemon-reload")
    p = host.policy("t7h", "version: 1\nmask:\n  - unit: t7h-local.service\n    force: true\n")
    try:
        rc, doc = host.json("apply", "--policy", p)
        assert rc == 0, doc
        entry = host.journal("MASKTOOL_UNIT=t7h-local.service", "MASKTOOL_ACTION=mask")[-1]
        assert "it had 1 other hard link" in entry["MASKTOOL_DISPLACED_NOTE"], entry
    finally:
        host.systemctl("unmask", "t7h-local.service")
        host.sb.path("/etc/t7h-kept.service").unlink()


def test_noop_apply_touches_nothing(host: Host) -> None:
    host.vendor_unit("t8-a.service")
    p = host.policy("t8", "version: 1\nmask:\n  - t8-a.service\n  - t8-b.service\n")
    assert host.masktool_run("apply", "--policy", p).returncode == 0
    link = host.etc("t8-a.service")
    before = (link.lstat().st_mtime_ns, link.lstat().st_ino, host.reload_stamp())
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0
    assert doc["changes"] == []
    assert doc["reloads"] == 0
    after = (link.lstat().st_mtime_ns, link.lstat().st_ino, host.reload_stamp())
    assert before == after


def test_mask_of_unloaded_unit_needs_no_reload(host: Host) -> None:
    host.vendor_unit("t9-idle.service")
    p = host.policy("t9", "version: 1\nmask:\n  - unit: t9-idle.service\n")
    before = host.reload_stamp()
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert doc["reloads"] == 0
    assert host.reload_stamp() == before
    assert host.show("t9-idle.service")["LoadState"] == "masked"


def test_link_written_behind_systemds_back_is_drift_until_reload(host: Host) -> None:
    host.vendor_unit("t10.service")
    host.systemctl("daemon-reload")
    host.systemctl("start", "t10.service")
    host.sb.run(["ln", "-s", "/dev/null", "/etc/systemd/system/t10.service"])
    p = host.policy("t10", "version: 1\nmask:\n  - t10.service\n")
    rc, doc = host.json("check", "--policy", p)
    # On disk it is masked; systemd still has it loaded and running: not compliant.
    assert rc == 1
    assert doc["units"][0]["state"] == "masked"
    assert doc["units"][0]["load_state"] == "loaded"
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert doc["reloads"] == 1
    assert host.show("t10.service")["ActiveState"] == "inactive"


def test_runtime_rule_masks_in_run(host: Host) -> None:
    host.vendor_unit("t11.service")
    p = host.policy("t11", "version: 1\nmask:\n  - unit: t11.service\n    runtime: true\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert os.readlink(host.run_dir("t11.service")) == "/dev/null"
    assert not host.etc("t11.service").is_symlink()
    assert doc["after"]["units"][0]["state"] == "masked-runtime"
    assert host.show("t11.service")["LoadState"] == "masked"


def test_vendor_mask_cannot_be_unmasked(host: Host) -> None:
    host.sb.run(["ln", "-s", "/dev/null", "/usr/local/lib/systemd/system/t12.service"])
    p = host.policy("t12", "version: 1\nunmask:\n  - t12.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    u = doc["after"]["units"][0]
    assert u["state"] == "masked-vendor"
    assert "cannot remove" in u["refusal"]
    assert host.sb.path("/usr/local/lib/systemd/system/t12.service").is_symlink()


def test_bad_policy_exits_2_and_changes_nothing(host: Host) -> None:
    host.vendor_unit("t13.service")
    p = host.policy(
        "t13", "version: 1\nmask:\n  - t13.service\n  - unit: x.service\n    stop: maybe\n"
    )
    res = host.masktool_run("apply", "--policy", p)
    assert res.returncode == 2
    assert f"{p}:5" in res.stderr
    assert "Traceback" not in res.stderr
    assert not host.etc("t13.service").exists()


def test_audit_mode_reports_and_changes_nothing(host: Host) -> None:
    host.vendor_unit("t14.service")
    p = host.policy("t14", "version: 1\nmode: audit\nmask:\n  - t14.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1
    assert doc["applied"] is False
    assert not host.etc("t14.service").exists()


def test_default_policy_location_is_used(host: Host) -> None:
    host.sb.write("/etc/masktool/policy.d/50-t15.yaml", "version: 1\nmask:\n  - t15.service\n")
    try:
        res = host.masktool_run("apply")
        assert os.readlink(host.etc("t15.service")) == "/dev/null", res.stdout + res.stderr
    finally:
        host.sb.path("/etc/masktool/policy.d/50-t15.yaml").unlink()


def test_vendor_alias_mask_covers_the_name_only(host: Host) -> None:
    # Like ctrl-alt-del.target -> reboot.target: STIG masks the alias, reboot must keep working.
    host.vendor_unit("t16-real.target", "[Unit]\nDescription=real\n")
    host.sb.run(["ln", "-s", "t16-real.target", "/usr/local/lib/systemd/system/t16-alias.target"])
    host.systemctl("daemon-reload")
    p = host.policy("t16", "version: 1\nmask:\n  - t16-alias.target\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert os.readlink(host.etc("t16-alias.target")) == "/dev/null"
    assert host.show("t16-alias.target")["LoadState"] == "masked"
    assert host.show("t16-real.target")["LoadState"] == "loaded"
    assert not host.etc("t16-real.target").exists()


def _vendor_alias(host: Host, real: str, alias: str) -> None:
    """A vendor unit and an alias of it beside it, loaded."""
    host.vendor_unit(real)
    host.sb.run(["ln", "-s", real, f"{VENDOR_DIR}/{alias}"])
    host.systemctl("daemon-reload")


def test_vendor_alias_of_a_running_service_is_masked_without_stopping_it(host: Host) -> None:
    # systemd reports the alias name under the unit it names (its Id): masktool reads that
    # state, and masking the alias name must not stop the unit the rule does not cover.
    _vendor_alias(host, "t16b-real.service", "t16b-alias.service")
    host.systemctl("start", "t16b-real.service")
    p = host.policy("t16b", "version: 1\nmask:\n  - t16b-alias.service\n")
    rc, doc = host.json("check", "--policy", p)
    assert rc == 1, doc
    assert doc["units"][0]["load_state"] == "loaded"
    assert doc["units"][0]["active_state"] == "active"
    assert "t16b-alias.service is an alias of t16b-real.service" in doc["units"][0]["notes"][0]
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert not [c for c in doc["changes"] if c["what"] == "stop"], doc["changes"]
    # A reload parts the name from the running unit: masked, and the unit runs on.
    assert host.show("t16b-alias.service")["LoadState"] == "masked"
    assert host.show("t16b-real.service")["ActiveState"] == "active"
    host.systemctl("stop", "t16b-real.service")


def test_template_alias_with_running_instances_masks_without_stopping_them(host: Host) -> None:
    # Every instance of t16c-real@ also has the name t16c-alias@INSTANCE while it runs.
    _vendor_alias(host, "t16c-real@.service", "t16c-alias@.service")
    host.systemctl("start", "t16c-alias@1.service")
    p = host.policy("t16c", "version: 1\nmask:\n  - t16c-alias@.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    assert not [c for c in doc["changes"] if c["what"] == "stop"], doc["changes"]
    assert host.show("t16c-real@1.service")["ActiveState"] == "active"
    assert host.show("t16c-alias@1.service")["LoadState"] == "masked"
    assert host.show("t16c-alias@2.service")["LoadState"] == "masked"
    host.systemctl("stop", "t16c-real@1.service")


def test_generator_mask_is_vendor_and_cannot_be_unmasked(host: Host) -> None:
    # What systemd.mask= on the kernel command line does: a generator links the unit to
    # /dev/null in /run/systemd/generator.early.
    host.vendor_unit("t17.service")
    host.sb.write(
        "/etc/systemd/system-generators/t17-mask",
        '#!/bin/sh\nln -sf /dev/null "$2/t17.service"\n',
        0o755,
    )
    try:
        host.systemctl("daemon-reload")
        assert host.show("t17.service")["LoadState"] == "masked"
        p = host.policy("t17", "version: 1\nunmask:\n  - t17.service\n")
        rc, doc = host.json("apply", "--policy", p)
        assert rc == 1
        u = doc["after"]["units"][0]
        assert u["state"] == "masked-vendor"
        assert "generator.early" in u["refusal"]
        assert host.show("t17.service")["LoadState"] == "masked"
    finally:
        host.sb.path("/etc/systemd/system-generators/t17-mask").unlink()
        host.systemctl("daemon-reload")


def test_concurrent_applies_are_serialised(host: Host) -> None:
    host.vendor_unit("t18.service")
    p = host.policy("t18", "version: 1\nmask:\n  - t18.service\n")
    script = (
        f"{host.masktool} apply --json --policy {p} > /tmp/t18-a & "
        f"{host.masktool} apply --json --policy {p} > /tmp/t18-b & "
        "wait %1 && wait %2"
    )
    assert host.sb.run(["sh", "-c", script], check=False).returncode == 0

    docs = [json.loads(host.sb.path(f"/tmp/t18-{x}").read_text()) for x in "ab"]
    masks = [c for d in docs for c in d["changes"] if c["what"] == "mask"]
    assert len(masks) == 1, docs
    assert all(d["after"]["compliant"] for d in docs)


def test_plan_exit_codes_and_why_without_rule(host: Host) -> None:
    p = host.policy("t19", "version: 1\nmask:\n  - t19.service\n")
    assert host.masktool_run("plan", "--policy", p).returncode == 1
    assert host.masktool_run("apply", "--policy", p).returncode == 0
    res = host.masktool_run("plan", "--policy", p)
    assert res.returncode == 0
    assert "nothing to do" in res.stdout
    why = host.masktool_run("why", "cron.service", "--policy", p)
    assert why.returncode == 0
    assert "no rule in the policy names cron.service" in why.stdout
    bad = host.masktool_run("why", "not a unit", "--policy", p)
    assert bad.returncode == 2
    assert "invalid unit name" in bad.stderr


def test_journal_entry_for_a_mask(host: Host) -> None:
    host.vendor_unit("t20.service")
    p = host.policy("t20", "version: 1\nmask:\n  - unit: t20.service\n    reason: audit-me\n")
    assert host.masktool_run("apply", "--policy", p).returncode == 0
    # journald takes the datagram asynchronously: give it a moment.
    matches = ("-u", "t20.service", "MASKTOOL_ACTION=mask")
    wait_until("the journal entry", lambda: bool(host.journal(*matches)))
    entries = host.journal(*matches)
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["MASKTOOL_UNIT"] == "t20.service"
    assert e["MASKTOOL_POLICY"] == f"{p}:3"
    assert e["MASKTOOL_REASON"] == "audit-me"
    assert e["MASKTOOL_WANT"] == "masked"
    assert e["MASKTOOL_HAVE"].startswith("masked (LoadState=masked")
    assert e["MESSAGE_ID"] == "b63ff736da4248fdad21b9bd4cca21f6"
    assert int(e["MASKTOOL_LATENCY_USEC"]) > 0


def test_check_writes_a_metrics_textfile(host: Host) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    host.vendor_unit("t21.service")
    p = host.policy("t21", "version: 1\nmask:\n  - t21.service\n  - t21-gone.service\n")
    host.masktool_run("apply", "--policy", p)
    host.systemctl("unmask", "t21.service")
    res = host.masktool_run("check", "--policy", p, "--metrics", "/var/tmp/t21.prom")
    assert res.returncode == 1
    fams = {
        f.name: f
        for f in text_string_to_metric_families(host.sb.path("/var/tmp/t21.prom").read_text())
    }
    compliant = {s.labels["unit"]: s.value for s in fams["masktool_unit_compliant"].samples}
    assert compliant == {"t21.service": 0.0, "t21-gone.service": 1.0}
    assert "masktool_drift_fixed" not in fams  # a check has no counters


def test_a_rule_about_one_instance_never_changes_the_template(host: Host) -> None:
    """Booted: with the template masked, an instance linked to the template's file is
    LoadState=masked; unmasking that instance must not remove the template's mask (it would
    unmask every instance), and masktool says why it cannot."""
    host.vendor_unit("ti@.service")
    os.symlink("/dev/null", host.etc("ti@.service"))
    os.symlink(f"{VENDOR_DIR}/ti@.service", host.etc("ti@1.service"))
    host.systemctl("daemon-reload")
    assert host.show("ti@1.service")["LoadState"] == "masked"
    p = host.policy("ti", "version: 1\nunmask:\n  - ti@1.service\n  - ti@2.service\n")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 1, doc
    assert os.readlink(host.etc("ti@.service")) == "/dev/null"
    for name in ("ti@1.service", "ti@2.service"):
        u = next(x for x in doc["after"]["units"] if x["unit"] == name)
        assert "masked by its template's mask" in u["refusal"], u
        assert not u["compliant"]
        assert host.show(name)["LoadState"] == "masked"


def test_one_enable_that_fails_does_not_keep_the_others_from_being_enabled(host: Host) -> None:
    # EnableUnitFiles stops at the first unit that fails; the others must still be enabled,
    # and the error must name the unit that failed.
    install = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
    host.vendor_unit("t40-bad.service", install + "Alias=t40-clash.service\n")
    host.vendor_unit("t40-good.service", install)
    host.sb.write("/etc/systemd/system/t40-clash.service", "[Service]\nExecStart=/bin/true\n")
    for u in ("t40-bad.service", "t40-good.service"):
        os.symlink("/dev/null", host.etc(u))
    host.systemctl("daemon-reload")
    p = host.policy(
        "t40",
        "version: 1\nunmask:\n  - unit: t40-bad.service\n    enable: true\n"
        "  - unit: t40-good.service\n    enable: true\n",
    )
    rc, doc = host.json("apply", "--policy", p)
    assert host.show("t40-good.service")["UnitFileState"] == "enabled", doc["errors"]
    assert rc == 1
    assert [e["unit"] for e in doc["errors"]] == ["t40-bad.service"], doc["errors"]

"""`masktool release` in a booted systemd: it undoes exactly what masktool did (issue 12, item
7: rolling back was by hand), never an admin's mask, and refuses what the daemon enforces."""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from tests.integration.conftest import Host, require_boot, wait_until
from tests.sandbox import Sandbox, install_masktool_service, service_binds


def _ledger(host: Host) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(host.sb.path("/var/lib/masktool/ledger.json").read_text())
    return doc


def test_release_undoes_exactly_what_apply_did(host: Host) -> None:
    for u in ("rl-a.service", "rl-b.service", "rl-admin.service", "rl-conf.service"):
        host.vendor_unit(u)
    host.systemctl("daemon-reload")
    # An admin's own mask before masktool came: compliant, so masktool writes nothing for it.
    host.systemctl("mask", "rl-admin.service")
    # An admin's unit file in /etc: moved aside by force, put back by release.
    conf = "[Unit]\nDescription=the admin's own\n[Service]\nExecStart=/bin/sleep 1\n"
    host.sb.write("/etc/systemd/system/rl-conf.service", conf, 0o640)
    os.utime(host.etc("rl-conf.service"), (1_000_000, 1_000_000))
    host.systemctl("daemon-reload")
    p = host.policy(
        "rl",
        "version: 1\nmask:\n  - rl-a.service\n  - rl-b.service\n  - rl-admin.service\n"
        "  - unit: rl-conf.service\n    force: true\n",
    )
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    masks = {m["unit"]: m for m in _ledger(host)["masks"]}
    assert {"rl-a.service", "rl-b.service", "rl-conf.service"} <= set(masks)
    assert "rl-admin.service" not in masks
    assert masks["rl-a.service"]["rule"] == f"{p}:3"
    moved = [d for d in _ledger(host)["displaced"] if d["unit"] == "rl-conf.service"]
    assert len(moved) == 1, moved

    # Drift put back by apply is a restore (the ledger knows masktool made that mask).
    host.etc("rl-b.service").unlink()
    host.systemctl("daemon-reload")
    rc, doc = host.json("apply", "--policy", p)
    assert rc == 0, doc
    restored = ("-u", "rl-b.service", "MASKTOOL_ACTION=restore")
    wait_until("restore journaled", lambda: bool(host.journal(*restored)))

    # rl-b's mask replaced by the admin's own (same target, another link): not masktool's.
    host.etc("rl-b.service").unlink()
    host.etc("rl-b.service").symlink_to("/dev/null")
    res = host.masktool_run(
        "release", "rl-a.service", "rl-b.service", "rl-admin.service", "rl-conf.service"
    )
    assert res.returncode == 1, res.stdout + res.stderr  # rl-b kept, rl-admin unknown
    out = res.stdout
    assert "released rl-a.service: removed /etc/systemd/system/rl-a.service" in out, out
    assert (
        "kept rl-b.service: /etc/systemd/system/rl-b.service is not the mask masktool wrote" in out
    )
    assert "unknown rl-admin.service" in out, out
    assert "put back /etc/systemd/system/rl-conf.service" in out, out
    assert not host.etc("rl-a.service").exists()
    assert os.readlink(host.etc("rl-b.service")) == "/dev/null"
    assert os.readlink(host.etc("rl-admin.service")) == "/dev/null"
    back = host.etc("rl-conf.service")
    assert back.read_text() == conf
    st = back.stat()
    assert (oct(st.st_mode & 0o777), int(st.st_mtime)) == ("0o640", 1_000_000)
    assert host.show("rl-a.service")["LoadState"] == "loaded"
    assert host.show("rl-conf.service")["LoadState"] == "loaded"
    assert host.show("rl-admin.service")["LoadState"] == "masked"
    journaled = host.journal("-u", "rl-a.service", "MASKTOOL_ACTION=release")
    assert journaled and journaled[-1]["MASKTOOL_POLICY"] == f"{p}:3", journaled
    left = {m["unit"] for m in _ledger(host)["masks"]}
    assert not left & {"rl-a.service", "rl-b.service", "rl-conf.service"}, left
    # Again: nothing of masktool's is left for them.
    res = host.masktool_run("release", "rl-a.service")
    assert res.returncode == 1 and "unknown rl-a.service" in res.stdout, res.stdout
    host.systemctl("unmask", "rl-b.service", "rl-admin.service")


def test_release_refuses_what_the_running_daemon_enforces() -> None:
    require_boot()
    with Sandbox(binds=service_binds(Path(sys.executable).parent.parent)) as sb:
        host = Host(sb)
        install_masktool_service(sb)
        for u in ("rl-d.service", "rl-e.service"):
            host.vendor_unit(u)
        sb.write(
            "/etc/masktool/policy.yaml",
            "version: 1\nmask:\n  - rl-d.service\n  - rl-e.service\n",
            0o644,
        )
        sb.run(["systemctl", "daemon-reload"])
        sb.run(["systemctl", "start", "masktool.service"])
        # The daemon wrote both masks: recorded.
        units = {m["unit"] for m in _ledger(host)["masks"]}
        assert units == {"rl-d.service", "rl-e.service"}, units
        # rl-e's rule removed and reloaded: the daemon leaves its mask (no unmask rule).
        sb.write("/etc/masktool/policy.yaml", "version: 1\nmask:\n  - rl-d.service\n", 0o644)
        sb.run(["systemctl", "reload", "masktool.service"])
        res = host.masktool_run("release")
        assert res.returncode == 1, res.stdout + res.stderr
        refused = "refused rl-d.service: the running daemon enforces it: edit or remove the "
        assert refused + "rule at /etc/masktool/policy.yaml:3" in res.stdout, res.stdout
        assert "released rl-e.service" in res.stdout, res.stdout
        assert os.readlink(host.etc("rl-d.service")) == "/dev/null"
        assert not host.etc("rl-e.service").exists()
        assert host.show("rl-e.service")["LoadState"] == "loaded"
        # Stopped, the daemon enforces nothing: release takes the rest.
        sb.run(["systemctl", "stop", "masktool.service"])
        res = host.masktool_run("release")
        assert res.returncode == 0, res.stdout + res.stderr
        assert not host.etc("rl-d.service").exists()
        assert _ledger(host)["masks"] == []


def _journaled(host: Host, action: str) -> bool:
    return bool(host.journal("-u", "rl-u.service", f"MASKTOOL_ACTION={action}"))


def test_a_mask_put_back_again_on_an_unmask_rule_is_a_restore(host: Host) -> None:
    """Issue 12, item 6, for unmask rules too: the first removal is an unmask, one after
    someone masked it again is a put-back of drift, also for a later run of apply."""
    host.vendor_unit("rl-u.service")
    host.systemctl("daemon-reload")
    host.systemctl("mask", "rl-u.service")
    p = host.policy("rlu", "version: 1\nunmask:\n  - rl-u.service\n")
    for expected in ("unmask", "restore"):
        rc, doc = host.json("apply", "--policy", p)
        assert rc == 0, doc
        wait_until(f"{expected} journaled", partial(_journaled, host, expected))
        host.systemctl("mask", "rl-u.service")
    host.systemctl("unmask", "rl-u.service")


def test_release_keeps_an_admins_mask_that_got_the_same_inode_number() -> None:
    """Found by a hostile review: on ext4 the admin's new link (systemctl unmask; systemctl
    mask) got the inode number of masktool's, and release removed it."""
    require_boot()
    with Sandbox(binds=service_binds(Path(sys.executable).parent.parent)) as sb:
        host = Host(sb)
        host.vendor_unit("rl-x.service")
        etc = "/etc/systemd/system"
        sb.run(
            [
                "sh",
                "-c",
                f"truncate -s 64M /var/tmp/etc.img && mkfs.ext4 -q /var/tmp/etc.img && "
                f"cp -a {etc} /var/tmp/ess && mount -o loop /var/tmp/etc.img {etc} && "
                f"cp -a /var/tmp/ess/. {etc}/",
            ]
        )
        sb.run(["systemctl", "daemon-reload"])
        p = host.policy("rlx", "version: 1\nmask:\n  - rl-x.service\n")
        assert host.masktool_run("apply", "--policy", p).returncode == 0
        before = host.etc("rl-x.service").lstat().st_ino
        host.systemctl("unmask", "rl-x.service")
        host.systemctl("mask", "rl-x.service")
        assert host.etc("rl-x.service").lstat().st_ino == before  # the number, reused
        res = host.masktool_run("release")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "kept rl-x.service" in res.stdout, res.stdout
        assert host.show("rl-x.service")["LoadState"] == "masked"


def test_release_of_templates_aliases_and_with_a_hazard(host: Host) -> None:
    """Found by a hostile review: a template's release ended in an error after the change
    (and journaled nothing); an alias rule's unit was released under the running daemon; a
    FIFO among the unit files made release's daemon-reload hang PID 1."""
    host.vendor_unit("rlt@.service")
    host.vendor_unit("rlt-x.service")
    host.systemctl("daemon-reload")
    p = host.policy("rlt", "version: 1\nmask:\n  - rlt@.service\n  - rlt-x.service\n")
    assert host.masktool_run("apply", "--policy", p).returncode == 0
    res = host.masktool_run("release", "rlt@.service")
    assert res.returncode == 0, res.stdout + res.stderr
    assert host.journal("MASKTOOL_UNIT=rlt@.service", "MASKTOOL_ACTION=release")
    # A FIFO drop-in of a loaded unit: no daemon-reload, and release says so.
    host.vendor_unit("rlt-y.service")
    host.systemctl("daemon-reload")
    host.systemctl("start", "rlt-y.service")
    dropins = host.sb.path("/etc/systemd/system/rlt-y.service.d")
    dropins.mkdir()
    os.mkfifo(dropins / "f.conf")
    try:
        res = host.masktool_run("release", "rlt-x.service")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "systemd was not reloaded: it would block on" in res.stdout, res.stdout
        assert not host.etc("rlt-x.service").exists()
        state = host.systemctl("is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), state
    finally:
        (dropins / "f.conf").unlink()
        dropins.rmdir()
        host.systemctl("stop", "rlt-y.service")
        host.systemctl("daemon-reload")

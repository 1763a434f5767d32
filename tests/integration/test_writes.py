"""An admin writing real unit files into /etc/systemd/system, in every way admins do, while
masktool.service enforces a policy that keeps those units unmasked: not one file may be lost.

`cp`, `>` and editors create the file empty and write it a moment later; an empty file is also
a mask, so a daemon that keeps units unmasked must never take a file being written for one. It
must still remove a real mask, settled, at once: the positive controls prove the daemon is
enforcing while the writes run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Host, wait_until

BODY = "[Unit]\nDescription=written by an admin\n[Service]\nExecStart=/bin/true\n"
# Each way of writing, and how many times it is tried (every try a unit of its own).
METHODS = {
    "cp": 80,
    "redirect": 80,
    "install": 40,
    "editor-rename": 40,
    "tee": 40,
    "open-then-write": 20,  # opened, written 0.2 s later (a slow script, an admin at `cat >`)
    "systemctl-edit-full": 20,
}
ETC = "/etc/systemd/system"
VENDOR = "/usr/local/lib/systemd/system"

# One shell run inside the sandbox writes every file, then checks each one at once.
SCRIPT = r"""
set -u
body="$1"; shift
printf '%s' "$body" > /root/wr-src.service
lost=0
for spec in "$@"; do
    method=${spec%%:*}; unit=${spec#*:}; f=/etc/systemd/system/$unit
    case $method in
        cp) cp /root/wr-src.service "$f" ;;
        redirect) printf '%s' "$body" > "$f" ;;
        install) install -m 0644 /root/wr-src.service "$f" ;;
        editor-rename) printf '%s' "$body" > "/etc/systemd/system/.$unit.swp" &&
            mv "/etc/systemd/system/.$unit.swp" "$f" ;;
        tee) printf '%s' "$body" | tee "$f" > /dev/null ;;
        open-then-write) ( exec 3> "$f"; sleep 0.2; printf '%s' "$body" >&3 ) ;;
        # systemctl edit wants a terminal: script(1) gives it one.
        systemctl-edit-full) export SYSTEMD_EDITOR=/root/wr-editor
            script -qec "systemctl edit --full $unit" /dev/null > /dev/null ;;
    esac
    rc=$?
    if [ $rc -ne 0 ] || [ "$(cat "$f" 2>/dev/null)" != "$(printf '%s' "$body")" ]; then
        echo "LOST $method $unit rc=$rc"; lost=$((lost + 1))
    fi
done
echo "written $#, lost $lost"
"""
# What `systemctl edit --full` runs as the editor: the admin's new text over the copy it made.
EDITOR = '#!/bin/sh\ncat /root/wr-src.service > "$1"\n'


def units() -> list[tuple[str, str]]:
    return [(m, f"wr-{m}-{i:03d}.service") for m, n in METHODS.items() for i in range(n)]


CONTROLS = ["wr-ctl-link.service", "wr-ctl-empty.service", "wr-ctl-held.service"]


@pytest.fixture(scope="module")
def daemon(host: Host) -> Iterator[Host]:
    names = [u for _, u in units()] + CONTROLS
    for _, u in units():
        if u.startswith("wr-systemctl-edit-full"):
            host.vendor_unit(u)  # systemctl edit --full starts from the unit's own file
    host.systemctl("daemon-reload")
    host.sb.write("/root/wr-editor", EDITOR, 0o755)
    host.install_service()
    rules = "".join(f"  - {u}\n" for u in names)
    host.sb.write("/etc/masktool/policy.yaml", f"version: 1\nunmask:\n{rules}", 0o644)
    host.systemctl("start", "masktool.service")
    yield host
    host.systemctl("stop", "masktool.service")
    host.sb.path("/etc/masktool/policy.yaml").unlink()
    for u in names:
        host.sb.path(f"{ETC}/{u}").unlink(missing_ok=True)
    host.systemctl("daemon-reload")


def test_no_unit_file_written_by_an_admin_is_ever_lost(daemon: Host) -> None:
    specs = [f"{m}:{u}" for m, u in units()]
    res = daemon.sb.run(["bash", "-c", SCRIPT, "writes", BODY, *specs], timeout=600)
    print(res.stdout.strip().splitlines()[-1])
    assert "LOST" not in res.stdout, res.stdout
    assert f"written {len(specs)}, lost 0" in res.stdout
    # And none disappears later, once the daemon has seen every event.
    wait_until("daemon idle", lambda: "last event" in status(daemon), 10)
    lost = [u for _, u in units() if not _has_body(daemon, u)]
    assert not lost, f"{len(lost)} of {len(specs)} lost: {lost[:10]}"
    assert daemon.systemctl("is-active", "masktool.service").stdout.strip() == "active"


def test_real_masks_are_still_removed(daemon: Host) -> None:
    """Positive controls: the daemon was not simply idle during the writes."""
    link = daemon.sb.path(f"{ETC}/wr-ctl-link.service")
    link.symlink_to("/dev/null")
    wait_until("a mask link is removed", lambda: not os.path.lexists(link), 5)
    empty = daemon.sb.path(f"{ETC}/wr-ctl-empty.service")
    empty.touch()
    wait_until("a settled empty file (a mask) is removed", lambda: not empty.exists(), 5)


def test_an_empty_file_is_removed_only_once_closed(daemon: Host) -> None:
    held = daemon.sb.path(f"{ETC}/wr-ctl-held.service")
    with held.open("w"):
        # Open for writing and still empty: masktool must leave it, however long.
        wait_until("the daemon saw it", lambda: "wr-ctl-held.service" in status(daemon), 5)
        import time

        time.sleep(1.0)
        assert held.exists(), "an empty file still open for writing was removed"
        # `check` says why it is not compliant yet.
        out = daemon.masktool_run("check").stdout
        assert "being written" in out or "open for writing" in out, out
    # Closed and still empty: now it is a mask, and the policy wants the unit unmasked.
    wait_until("removed once closed", lambda: not held.exists(), 5)


def _has_body(host: Host, unit: str) -> bool:
    # `systemctl edit` drops the final newline, as the shell's $(cat) does.
    try:
        return host.sb.path(f"{ETC}/{unit}").read_text().rstrip("\n") == BODY.rstrip("\n")
    except FileNotFoundError:
        return False


def status(host: Host) -> str:
    return host.systemctl("show", "-p", "StatusText", "--value", "masktool.service").stdout.strip()

"""The Debian package: built from the tree, installed with dpkg into a booted systemd of its own
(Debian's python3-pystemd, python3-systemd, python3-watchdog and python3-yaml underneath), and
used as an admin would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from masktool import __version__
from tests.integration.conftest import require_boot
from tests.integration.conftest import wait_until as shared_wait_until
from tests.integration.test_daemon import REPLACE_COMMANDS, REPLACED, overflow_then_drift
from tests.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
DEB = REPO / f"build/deb/masktool_{__version__}_all.deb"


def _more_than(count: Callable[[], int], n: int) -> bool:
    return count() > n


def wait_until(what: str, fn: Callable[[], bool]) -> None:
    # The packaged daemon starts from a cold interpreter: give it longer than the dev tree.
    shared_wait_until(what, fn, timeout=15.0)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    require_boot()
    subprocess.run(["make", "-s", "deb"], cwd=REPO, check=True, capture_output=True)
    with Sandbox(binds=[str(REPO)]) as box:
        yield box


def test_install_runs_hardened_daemon_and_enforces_a_dropped_in_policy(sb: Sandbox) -> None:
    res = sb.run(["dpkg", "-i", str(DEB)], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sb.run(["systemctl", "is-enabled", "masktool.service"]).stdout.strip() == "enabled"
    wait_until(
        "masktool active",
        lambda: (
            sb.run(["systemctl", "is-active", "masktool.service"], check=False).stdout.strip()
            == "active"
        ),
    )
    exe = sb.run(["systemctl", "show", "-p", "ExecStart", "masktool.service"]).stdout
    assert "/usr/bin/masktool" in exe
    # The shipped policy enforces nothing; bundles are where the docs say.
    assert sb.run(["masktool", "validate"]).returncode == 0
    assert sb.path("/usr/share/masktool/policies/stig-rhel9.yaml").is_file()
    # Where the shipped policy.yaml's first line points editors.
    assert sb.path("/usr/share/masktool/policies/policy.schema.json").is_file()
    assert sb.path("/usr/share/man/man8/masktool.8.gz").is_file()
    assert sb.path("/usr/share/man/man5/masktool-policy.5.gz").is_file()
    assert sb.path("/usr/share/masktool/prometheus/masktool.rules.yml").is_file()
    # The report's template is in the package, and python3-jinja2 is what renders it.
    rep = sb.run(["masktool", "report", "-o", "/root/report.html"], check=False)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "<title>masktool report: " in sb.path("/root/report.html").read_text()
    assert (
        "policy.yaml"
        in sb.run(["dpkg-query", "--showformat=${Conffiles}", "-W", "masktool"]).stdout
    )
    # An upgrade (here: the same version again) restarts the daemon.
    before = sb.show("masktool.service", "MainPID")["MainPID"]
    sb.run(["dpkg", "-i", str(DEB)])
    wait_until(
        "restarted after upgrade",
        lambda: sb.show("masktool.service", "MainPID")["MainPID"] not in (before, "0"),
    )

    sb.write(
        "/usr/local/lib/systemd/system/pkg-telnetd.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    )
    sb.run(["systemctl", "daemon-reload"])
    sb.write(
        "/etc/masktool/policy.d/50-site.yaml",
        "version: 1\nmask:\n  - unit: pkg-telnetd.service\n    reason: no telnet\n",
    )
    sb.run(["systemctl", "reload", "masktool.service"])
    wait_until(
        "masked by the packaged daemon",
        lambda: sb.show("pkg-telnetd.service", "LoadState")["LoadState"] == "masked",
    )

    def explained() -> bool:
        out = sb.run(["journalctl", "--no-pager", "-x", "-u", "pkg-telnetd.service"]).stdout
        return "masktool masked pkg-telnetd.service because the rule at" in out

    wait_until("catalog text in journalctl -xu", explained)

    # Debian's watchdog (2.2.1) drops inotify's overflow record without a word: the daemon
    # must notice lost events all the same, and find the drift among them.
    overflow_then_drift(sb, "pkg-telnetd.service")
    link = sb.path("/etc/systemd/system/pkg-telnetd.service")
    took = shared_wait_until("put back after the overflow", link.is_symlink, 5)
    assert took < 1.0, took

    # With Debian's watchdog too, a replaced /etc/systemd/system is watched anew at once.
    def replaced() -> int:
        out = sb.run(["journalctl", "--no-pager", "-o", "cat", f"MASKTOOL_REASON={REPLACED}"])
        return len(out.stdout.splitlines())

    for command in REPLACE_COMMANDS:
        seen = replaced()
        sb.run(["sh", "-c", command])
        wait_until("replacement noticed", partial(_more_than, replaced, seen))
        link.unlink()
        took = shared_wait_until("put back in the new directory", link.is_symlink, 2)
        assert took < 1.0, (command, took)


def test_packaged_daemon_applies_on_reload_only_and_release_undoes_it(sb: Sandbox) -> None:
    """Issue 12's workflow with the .deb (Debian's python3-* underneath): saved is not applied,
    a rejected reload fails and a restart keeps enforcing, release undoes exactly that."""

    def status() -> str:
        return sb.show("masktool.service", "StatusText")["StatusText"]

    def load_state(unit: str) -> str:
        return sb.show(unit, "LoadState")["LoadState"]

    sb.write("/usr/local/lib/systemd/system/pkg-more.service", "[Service]\nExecStart=/bin/true\n")
    sb.run(["systemctl", "daemon-reload"])
    more = sb.path("/etc/masktool/policy.d/60-more.yaml")
    sb.write(
        "/etc/masktool/policy.d/60-more.yaml", "version: 1\nmask:\n  - pkg-more.service\n", 0o644
    )
    wait_until("the saved change noticed", lambda: "not applied" in status())
    assert load_state("pkg-more.service") == "loaded"
    sb.run(["systemctl", "reload", "masktool.service"])
    assert load_state("pkg-more.service") == "masked"

    sb.write(
        "/etc/masktool/policy.d/70-bad.yaml",
        "version: 1\nmask:\n  - unit: x.service\n    stpo: 1\n",
        0o644,
    )
    assert sb.run(["systemctl", "reload", "masktool.service"], check=False).returncode != 0
    r = sb.run(["masktool", "reload"], check=False)
    assert r.returncode == 2 and "/etc/masktool/policy.d/70-bad.yaml:4" in r.stderr, r
    sb.run(["systemctl", "restart", "masktool.service"])
    assert "the last good policy saved on disk" in status(), status()
    sb.run(["systemctl", "unmask", "pkg-more.service"])
    wait_until("put back by the saved policy", lambda: load_state("pkg-more.service") == "masked")

    sb.path("/etc/masktool/policy.d/70-bad.yaml").unlink()
    more.unlink()
    sb.run(["systemctl", "reload", "masktool.service"])
    # The daemon no longer wants it masked, and leaves the mask: release takes it back.
    assert load_state("pkg-more.service") == "masked"
    r = sb.run(["masktool", "release", "pkg-more.service"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert load_state("pkg-more.service") == "loaded"
    # One the running daemon enforces is refused.
    r = sb.run(["masktool", "release", "pkg-telnetd.service"], check=False)
    assert r.returncode == 1 and "refused pkg-telnetd.service" in r.stdout, r.stdout


def test_remove_keeps_masks_and_purge_removes_config(sb: Sandbox) -> None:
    sb.run(["dpkg", "-r", "masktool"])
    state = sb.run(["systemctl", "is-active", "masktool.service"], check=False).stdout.strip()
    assert state in ("inactive", "unknown")
    assert sb.show("pkg-telnetd.service", "LoadState")["LoadState"] == "masked"
    assert sb.path("/etc/masktool/policy.d/50-site.yaml").exists()
    # A file a force rule moved aside is the admin's only copy: purging keeps it.
    kept = sb.path("/var/lib/masktool/displaced/20261126T000000.000000Z/pkg-old.service")
    kept.parent.mkdir(parents=True)
    kept.write_text("[Service]\nExecStart=/bin/true\n")
    sb.path("/var/lib/masktool/displaced/20261125T000000.000000Z").mkdir()
    sb.path("/var/lib/masktool/other").write_text("x")
    ledger = sb.path("/var/lib/masktool/ledger.json")
    assert ledger.is_file()  # masktool's record of what it did
    res = sb.run(["dpkg", "--purge", "masktool"])
    assert not sb.path("/etc/masktool").exists()
    assert kept.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert ledger.is_file()  # it says where the kept file came from
    assert not sb.path("/var/lib/masktool/other").exists()
    assert not sb.path("/var/lib/masktool/displaced/20261125T000000.000000Z").exists()
    assert "kept /var/lib/masktool/displaced" in res.stderr
    assert sb.show("pkg-telnetd.service", "LoadState")["LoadState"] == "masked"
    # With nothing displaced, purge leaves nothing behind, the ledger included.
    sb.run(["rm", "-r", "/var/lib/masktool/displaced/20261126T000000.000000Z"])
    sb.run(["sh", "-c", f"dpkg -i {DEB} && dpkg --purge masktool"])
    assert not sb.path("/var/lib/masktool").exists()


def test_ansible_rollout_installs_and_distributes_policy(sb: Sandbox) -> None:
    """The example playbook, run on this host (connection local) as on any host of a fleet."""
    playbook = REPO / "packaging/ansible/masktool.yml"
    ansible = Path(sys.executable).parent / "ansible-playbook"
    site = sb.path("/srv/50-site.yaml")
    site.parent.mkdir(parents=True, exist_ok=True)
    site.write_text("version: 1\nmask:\n  - unit: pkg-fleet.service\n    reason: fleet rule\n")
    sb.write("/usr/local/lib/systemd/system/pkg-fleet.service", "[Service]\nExecStart=/bin/true\n")
    cmd = [
        str(ansible),
        "-i",
        "localhost,",
        "-c",
        "local",
        str(playbook),
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        f"masktool_package={DEB}",
        "-e",
        "masktool_policy=/srv/50-site.yaml",
    ]
    res = sb.run(cmd, check=False, env={"HOME": "/root", "ANSIBLE_NOCOLOR": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert sb.run(["systemctl", "is-active", "masktool.service"]).stdout.strip() == "active"
    wait_until(
        "fleet rule enforced",
        lambda: sb.show("pkg-fleet.service", "LoadState")["LoadState"] == "masked",
    )

    installed = sb.path("/etc/masktool/policy.d/50-site.yaml")
    good = installed.read_text()

    def loads() -> int:
        return len(
            sb.run(
                ["journalctl", "--no-pager", "-o", "cat", "MASKTOOL_ACTION=policy-loaded"]
            ).stdout.splitlines()
        )

    # Run again unchanged: no reload at all (the finding: two reloads each run).
    before = loads()
    res = sb.run(cmd, check=False, env={"HOME": "/root", "ANSIBLE_NOCOLOR": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert loads() == before

    # A policy masktool rejects never reaches the host.
    site.write_text("version: 1\nmask:\n  - not-a-unit\n")
    res = sb.run(cmd, check=False, env={"HOME": "/root", "ANSIBLE_NOCOLOR": "1"})
    assert res.returncode != 0
    assert installed.read_text() == good

    # Nor one that is fine alone but not merged with the host's: the shipped policy.yaml says
    # `mode: enforce` (the finding: validated alone, the play was green and the daemon
    # rejected the merged policy).
    site.write_text("version: 1\nmode: audit\nmask:\n  - pkg-fleet.service\n")
    res = sb.run(cmd, check=False, env={"HOME": "/root", "ANSIBLE_NOCOLOR": "1"})
    assert res.returncode != 0
    assert "contradicts mode 'enforce'" in res.stdout + res.stderr
    assert installed.read_text() == good

    # A mask masktool refuses (a running unit requires it) fails the play, saying why.
    sb.write(
        "/usr/local/lib/systemd/system/pkg-needed.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    )
    sb.write(
        "/usr/local/lib/systemd/system/pkg-user.service",
        "[Unit]\nRequires=pkg-needed.service\nAfter=pkg-needed.service\n"
        "[Service]\nExecStart=/bin/sleep infinity\n",
    )
    sb.run(["systemctl", "daemon-reload"])
    sb.run(["systemctl", "start", "pkg-user.service"])
    site.write_text(
        "version: 1\nmask:\n  - unit: pkg-fleet.service\n    reason: fleet rule\n"
        "  - pkg-needed.service\n"
    )
    try:
        res = sb.run(cmd, check=False, env={"HOME": "/root", "ANSIBLE_NOCOLOR": "1"})
        assert res.returncode != 0, res.stdout
        assert "REFUSED" in res.stdout, res.stdout
        assert "pkg-user.service" in res.stdout, res.stdout
        assert sb.show("pkg-needed.service", "ActiveState")["ActiveState"] == "active"
    finally:
        sb.run(["systemctl", "stop", "pkg-user.service", "pkg-needed.service"])
        site.write_text(good)
    res = sb.run(cmd, check=False, env={"HOME": "/root", "ANSIBLE_NOCOLOR": "1"})
    assert res.returncode == 0, res.stdout + res.stderr

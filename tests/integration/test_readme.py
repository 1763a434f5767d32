"""The README's examples stay true: every policy it shows is valid, and the `why` it shows is
what masktool prints for that policy in a booted systemd, line numbers included."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from masktool.policy import load_policy
from tests.integration.conftest import Host, require_boot
from tests.sandbox import Sandbox, install_masktool_service, service_binds

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


@pytest.mark.parametrize("n", range(len(YAML_BLOCKS)))
def test_every_policy_in_the_readme_is_valid(n: int, tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(YAML_BLOCKS[n])
    p.chmod(0o644)
    load_policy([str(p)])  # raises PolicyError naming file:line


def _why_example() -> tuple[str, str, list[str]]:
    """The walk-through's policy, the command, and the output the README shows for it."""
    policy = next(b for b in YAML_BLOCKS if b.startswith("# /etc/masktool/policy.yaml"))
    m = re.search(r"```\n(# masktool \S+, \S+, [^\n]+)\n(kdump\.service\n.*?)```", README, re.S)
    assert m, "the why example is gone from the README"
    return policy, m.group(1), m.group(2).rstrip("\n").split("\n")


def test_the_readme_why_example_is_what_masktool_prints() -> None:
    require_boot()
    policy, header, shown = _why_example()
    assert re.fullmatch(
        r"# masktool \d+\.\d+\.\d+, \S+, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", header
    )
    with Sandbox(binds=service_binds(Path(sys.executable).parent.parent)) as sb:
        host = Host(sb)
        install_masktool_service(sb)
        sb.write("/etc/masktool/policy.yaml", policy, 0o644)
        bundles = sb.path("/usr/share/masktool/policies")
        bundles.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "policies/stig-rhel9.yaml", bundles / "stig-rhel9.yaml")
        sb.write(
            "/usr/lib/systemd/system/kdump.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
        )
        sb.run(["systemctl", "daemon-reload"])
        sb.run(["systemctl", "start", "kdump.service"])
        out = host.masktool_run("why", "kdump.service")
        assert out.returncode == 0, out.stderr
        # Debian's merged /usr puts /lib first on the search path; the walk-through is a RHEL
        # host, where the unit file is found as /usr/lib/...
        text = out.stdout.replace(" /lib/systemd/system/", " /usr/lib/systemd/system/")
        lines = text.rstrip("\n").split("\n")
        assert re.fullmatch(r"# masktool \S+, \S+, [^\n]+ UTC", lines[0]), lines[0]
        assert lines[1:] == shown, "\n".join(lines[1:])

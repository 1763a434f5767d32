"""One real systemd, booted in namespaces once per session, shared by the integration tests.
Tests use unit names of their own so they need no reboot between them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SYSTEMD
from tests.sandbox import Sandbox, can_boot

REPO = Path(__file__).resolve().parents[2]
VENDOR_DIR = "/usr/local/lib/systemd/system"
SERVICE_SRC = "/opt/masktool-src"
SERVICE_VENV = "/opt/masktool-venv"
WRAPPER = f"""#!{SERVICE_VENV}/bin/python
import sys
sys.path.insert(0, "{SERVICE_SRC}/daemon")
from masktool.cli import main
sys.exit(main())
"""


class Host:
    """The sandboxed system as a test sees it."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.masktool = str(Path(sys.executable).parent / "masktool")

    def masktool_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.sb.run([self.masktool, *args], check=False)

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        res = self.masktool_run(*args, "--json")
        assert res.stdout, res.stderr
        return res.returncode, json.loads(res.stdout)

    def policy(self, name: str, text: str) -> str:
        path = f"/etc/masktool/test/{name}.yaml"
        self.sb.write(path, text, 0o644)
        return path

    def vendor_unit(self, name: str, body: str = "") -> None:
        text = body or "[Service]\nExecStart=/bin/sleep infinity\n"
        self.sb.write(f"{VENDOR_DIR}/{name}", text)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sb.run(["systemctl", *args], check=check)

    def show(self, unit: str) -> dict[str, str]:
        return self.sb.show(unit, "LoadState", "ActiveState", "UnitFileState")

    def reload_stamp(self) -> str:
        """Changes on every daemon-reload: to count reloads masktool causes."""
        out = self.systemctl("show", "-p", "UnitsLoadStartTimestampMonotonic").stdout
        return out.strip()

    def install_service(self) -> None:
        """Install masktool as a package would: /usr/bin/masktool, the unit, the catalog."""
        self.sb.write("/usr/bin/masktool", WRAPPER, 0o755)
        self.sb.write(f"{VENDOR_DIR}/masktool.service", (REPO / "masktool.service").read_text())
        catalog = (REPO / "packaging/masktool.catalog").read_text()
        self.sb.write("/usr/lib/systemd/catalog/masktool.catalog", catalog)
        self.sb.run(["journalctl", "--update-catalog"])
        self.systemctl("daemon-reload")

    def etc(self, unit: str) -> Path:
        return self.sb.path(f"/etc/systemd/system/{unit}")

    def run_dir(self, unit: str) -> Path:
        return self.sb.path(f"/run/systemd/system/{unit}")


@pytest.fixture(scope="session")
def host() -> Iterator[Host]:
    ok, why = can_boot()
    if not ok:
        if REQUIRE_SYSTEMD:
            pytest.fail(f"integration tests required but systemd cannot be booted: {why}")
        pytest.skip(why)
    venv = Path(sys.executable).parent.parent
    # The checkout and venv appear at their own paths (for the CLI) and under /opt, where
    # masktool.service can see them despite ProtectHome= and PrivateTmp=.
    binds = [str(REPO), str(venv), f"{REPO}:{SERVICE_SRC}", f"{venv}:{SERVICE_VENV}"]
    with Sandbox(binds=binds) as sb:
        yield Host(sb)

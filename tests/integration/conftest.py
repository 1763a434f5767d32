"""One real systemd, booted in namespaces once per session, shared by the integration tests.
Tests use unit names of their own so they need no reboot between them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SYSTEMD
from tests.sandbox import Sandbox, can_boot, install_masktool_service, service_binds

VENDOR_DIR = "/usr/local/lib/systemd/system"


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

    def journal(self, *matches: str) -> list[dict[str, str]]:
        out = self.sb.run(["journalctl", "--no-pager", "-o", "json", *matches]).stdout
        return [json.loads(line) for line in out.splitlines()]

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sb.run(["systemctl", *args], check=check)

    def show(self, unit: str) -> dict[str, str]:
        return self.sb.show(unit, "LoadState", "ActiveState", "UnitFileState")

    def reload_stamp(self) -> str:
        """Changes on every daemon-reload: to count reloads masktool causes."""
        out = self.systemctl("show", "-p", "UnitsLoadStartTimestampMonotonic").stdout
        return out.strip()

    def install_service(self) -> None:
        install_masktool_service(self.sb)

    def etc(self, unit: str) -> Path:
        return self.sb.path(f"/etc/systemd/system/{unit}")

    def run_dir(self, unit: str) -> Path:
        return self.sb.path(f"/run/systemd/system/{unit}")


def require_boot() -> None:
    """Skip when this machine cannot boot a sandbox, except where CI requires it: then fail."""
    ok, why = can_boot()
    if not ok:
        if REQUIRE_SYSTEMD:
            pytest.fail(f"integration tests required but systemd cannot be booted: {why}")
        pytest.skip(why)


def wait_until(what: str, fn: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll fn until it holds; the seconds it took. Fails the test after `timeout`."""
    start = time.monotonic()
    while not fn():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.005)
    return time.monotonic() - start


@pytest.fixture(scope="session")
def host() -> Iterator[Host]:
    require_boot()
    venv = Path(sys.executable).parent.parent
    with Sandbox(binds=service_binds(venv)) as sb:
        yield Host(sb)

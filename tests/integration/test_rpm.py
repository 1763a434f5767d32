"""The Fedora spec parses and makes a source package (the Fedora macros themselves are not on
this Debian machine, so a binary build happens on Fedora)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from masktool import __version__
from tests.conftest import REQUIRE_SYSTEMD

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "packaging/fedora/masktool.spec"


@pytest.fixture(autouse=True)
def _rpm_tools() -> None:
    if shutil.which("rpmspec") is None or shutil.which("rpmbuild") is None:
        if REQUIRE_SYSTEMD:
            pytest.fail("rpmspec/rpmbuild missing: `make system-deps` installs package rpm")
        pytest.skip("rpm tools not installed")


def test_spec_parses() -> None:
    res = subprocess.run(["rpmspec", "-P", str(SPEC)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "%config(noreplace) /etc/masktool/policy.yaml" in out
    assert "/usr/lib/systemd/system/masktool.service" in out
    assert "/usr/lib/systemd/catalog/masktool.catalog" in out
    assert "Requires:       python3-pystemd" in out


def test_source_package_builds() -> None:
    res = subprocess.run(
        ["make", "-s", "srpm"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    srpm = REPO / f"build/rpm/SRPMS/masktool-{__version__}-1.src.rpm"
    listing = subprocess.run(
        ["rpm", "-qpl", str(srpm)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(listing) == [f"masktool-{__version__}.tar.gz", "masktool.spec"]

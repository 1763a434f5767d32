"""Shared test settings. With CI or MASKTOOL_REQUIRE_SYSTEMD set, a skipped test fails the run:
a skip must never hide a missing dependency in CI."""

from __future__ import annotations

import os

import pytest

REQUIRE_SYSTEMD = bool(os.environ.get("CI")) or os.environ.get("MASKTOOL_REQUIRE_SYSTEMD") == "1"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if REQUIRE_SYSTEMD and skipped:
        print(f"\n{len(skipped)} test(s) skipped while CI/MASKTOOL_REQUIRE_SYSTEMD is set: failing")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

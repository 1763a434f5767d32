"""What the daemon loads, it carries for as long as it runs: the report's libraries stay out.

Found by the daemon benchmark: hashing policy files at load time imported hashlib, which loads
OpenSSL, and the daemon's resident memory grew by 4 MiB."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("hashlib", "jinja2", "masktool.evidence")


def test_the_daemon_does_not_import_what_only_the_report_needs() -> None:
    code = (
        "import sys\n"
        "import masktool.daemon, masktool.sentry, masktool.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"loaded by the daemon: {out}"

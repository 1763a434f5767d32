"""What check and plan print about where a rule is and what systemd says (issue 12, item 8):
offline, systemd was never asked; a bundled rule is named by its bundle, not by a path deep in
a Python installation."""

from __future__ import annotations

from pathlib import Path

import pytest

from masktool.cli import main

BUNDLE = Path(__file__).resolve().parents[2] / "policies" / "stig-rhel9.yaml"
KDUMP_LINE = BUNDLE.read_text().splitlines().index("  - unit: kdump.service") + 1


def test_offline_check_names_the_bundle_and_asks_no_systemd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    pol = tmp_path / "etc/masktool/policy.yaml"
    pol.parent.mkdir(parents=True)
    pol.write_text("version: 1\ninclude: [stig-rhel9]\nmask:\n  - own.service\n")
    pol.chmod(0o644)
    assert main(["check", "--root", str(tmp_path)]) == 1
    rows = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert rows["kdump.service"][-2:] == ["-", f"stig-rhel9:{KDUMP_LINE}"]
    assert rows["own.service"][-2:] == ["-", f"{pol}:4"]
    assert "not loaded" not in str(rows)
    assert main(["plan", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"mask          kdump.service (/etc/systemd/system)  [stig-rhel9:{KDUMP_LINE}]" in out

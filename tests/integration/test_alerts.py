"""The fleet alerts in packaging/prometheus: promtool checks them and runs their own tests, and
they are run on the textfile a real daemon wrote in a booted systemd, so that a metric renamed
or a label changed in the daemon breaks them here, not in a fleet's silent dashboards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Host, wait_until

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus" / "masktool.rules.yml"
RULE_TESTS = REPO / "packaging" / "prometheus" / "masktool.rules.test.yml"
TEXTFILE = "/var/lib/prometheus/node-exporter/masktool.prom"
INSTANCE = {"instance": "web01:9100", "job": "node"}


def _promtool() -> str:
    """promtool from Debian's prometheus package, unpacked by `make` (installing the package
    would start a Prometheus server on the machine)."""
    found = os.environ.get("MASKTOOL_PROMTOOL") or shutil.which("promtool")
    built = REPO / "build" / "tools" / "usr" / "bin" / "promtool"
    if found is None and built.exists():
        found = str(built)
    if found is None:
        pytest.skip("promtool not found: `make test` unpacks it into build/tools")
    return found


def _promtool_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def test_the_rules_pass_promtool_check_and_their_own_tests() -> None:
    res = _promtool_run("check", "rules", str(RULES), cwd=RULES.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _promtool_run("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def _rule_names() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_every_alert_has_a_test_that_fires_it() -> None:
    """A rule whose test only ever expects silence cannot fail."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired = {
        t["alertname"]
        for group in doc["tests"]
        for t in group["alert_rule_test"]
        if t.get("exp_alerts")
    }
    assert fired == set(_rule_names())


@pytest.fixture(scope="module")
def textfile(host: Host) -> Iterator[str]:
    """What a daemon enforcing a policy writes: one unit masked, one refused (an admin's file
    sits at its name)."""
    host.vendor_unit("al-a.service")
    host.sb.write("/etc/systemd/system/al-c.service", "[Service]\nExecStart=/bin/true\n")
    host.systemctl("daemon-reload")
    host.install_service()
    host.sb.path(TEXTFILE).parent.mkdir(parents=True, exist_ok=True)
    host.sb.write(
        "/etc/masktool/policy.yaml",
        "version: 1\nmask:\n  - al-a.service\n  - al-c.service\n",
        0o644,
    )
    host.systemctl("start", "masktool.service")
    try:
        wait_until("the textfile written", lambda: host.sb.path(TEXTFILE).exists())
        yield host.sb.path(TEXTFILE).read_text()
    finally:
        host.systemctl("stop", "masktool.service")
        host.sb.path("/etc/masktool/policy.yaml").unlink()
        host.sb.path("/etc/systemd/system/al-c.service").unlink()
        host.systemctl("unmask", "al-a.service")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def _samples(text: str) -> list[tuple[str, str, float]]:
    """(name, labels inside the braces, value) of every sample in a textfile."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out.append((m[1], (m[2] or "{}")[1:-1], float(m[3])))
    return out


def _series(text: str, reconciling: bool) -> list[dict[str, str]]:
    """The textfile as node_exporter would serve it for an hour: with instance and job, and
    the reconcile timestamp moving each minute (or stopped, as when the daemon is down)."""
    extra = ",".join(f'{k}="{v}"' for k, v in INSTANCE.items())
    series = [{"series": f"up{{{extra}}}", "values": "1x60"}]
    for name, labels, value in _samples(text):
        values = f"{value:g}x60"
        if name == "masktool_last_reconcile_timestamp_seconds":
            values = "0+60x60" if reconciling else "0x60"
        joined = f"{labels},{extra}" if labels else extra
        series.append({"series": f"{name}{{{joined}}}", "values": values})
    return series


def _run_alert_test(tmp_path: Path, series: list[dict[str, str]], cases: list[Any]) -> None:
    shutil.copy(RULES, tmp_path / RULES.name)
    doc = {
        "rule_files": [RULES.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(doc, width=1000))
    res = _promtool_run("test", "rules", "t.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_real_textfile_uses_every_metric_the_rules_name(textfile: str) -> None:
    written = {name for name, _, _ in _samples(textfile)} | {"up"}
    for alert, expr in _rule_names().items():
        names = set(re.findall(r"\b(masktool_[a-z_]+|up)\b", expr))
        assert names, alert
        assert names <= written, f"{alert} names {names - written}, which the daemon never writes"


def test_on_the_real_textfile_the_refusal_fires_and_nothing_else(
    textfile: str, tmp_path: Path
) -> None:
    quiet = set(_rule_names()) - {"MasktoolRefused", "MasktoolUnitNotCompliant"}
    cases: list[Any] = [{"eval_time": "30m", "alertname": a} for a in sorted(quiet)]
    cases += [
        {
            "eval_time": "30m",
            "alertname": "MasktoolRefused",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "warning", "result": "refused", **INSTANCE},
                    "exp_annotations": {
                        "summary": "web01:9100: masktool refuses 1 unit(s)",
                        "description": "`masktool plan` on the host says why each is refused "
                        "and what `force: true` would do.",
                    },
                }
            ],
        },
        {
            "eval_time": "30m",
            "alertname": "MasktoolUnitNotCompliant",
            "exp_alerts": [
                {
                    "exp_labels": {
                        "severity": "warning",
                        "unit": "al-c.service",
                        "want": "masked",
                        "state": "conflict",
                        **INSTANCE,
                    },
                    "exp_annotations": {
                        "summary": "web01:9100: al-c.service is in state conflict; the policy "
                        "wants it masked",
                        "description": "`masktool why al-c.service` on the host names the rule "
                        "and what systemd reports.",
                    },
                }
            ],
        },
    ]
    _run_alert_test(tmp_path, _series(textfile, reconciling=True), cases)


def test_on_the_real_textfile_a_stopped_daemon_is_seen(textfile: str, tmp_path: Path) -> None:
    cases: list[Any] = [
        {
            "eval_time": "40m",
            "alertname": "MasktoolMetricsStale",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "critical", **INSTANCE},
                    "exp_annotations": {
                        "summary": "web01:9100: masktool last reconciled 40m 0s ago",
                        "description": "`systemctl status masktool` on the host; enforcement "
                        "may have stopped.",
                    },
                }
            ],
        }
    ]
    _run_alert_test(tmp_path, _series(textfile, reconciling=False), cases)

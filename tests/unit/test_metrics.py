"""The textfile is valid Prometheus exposition format, read back with prometheus_client."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from masktool.metrics import Totals, UnitSample, render, write_atomic


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_render_parses_and_counts() -> None:
    units = [
        UnitSample("a.service", "masked", "masked", True, False),
        UnitSample('we"ird\\.service', "masked", "unmasked", False, False),
        UnitSample("c.service", "masked", "conflict", False, True),
    ]
    text = render(
        units,
        policy_ok=True,
        last_reconcile=1764097200.5,
        totals=Totals(drift_fixed=7, refusals=1, reloads=2, errors=0),
    )
    fam = _families(text)
    compliant = {labels["unit"]: value for labels, value in fam["masktool_unit_compliant"]}
    assert compliant == {"a.service": 1.0, 'we"ird\\.service': 0.0, "c.service": 0.0}
    results = {labels["result"]: value for labels, value in fam["masktool_units"]}
    assert results == {"compliant": 1.0, "drift": 1.0, "refused": 1.0}
    assert fam["masktool_conflicts"] == [({}, 1.0)]
    assert fam["masktool_policy_load_success"] == [({}, 1.0)]
    assert fam["masktool_last_reconcile_timestamp_seconds"] == [({}, 1764097200.5)]
    # Counters are exposed with the _total suffix.
    assert fam["masktool_drift_fixed"] == [({}, 7.0)]


def test_the_mode_is_exported_so_alerts_tell_audit_from_failure() -> None:
    fam = _families(render([], policy_ok=True, last_reconcile=0.0, mode="audit"))
    assert sorted(fam["masktool_mode"], key=lambda s: s[0]["mode"]) == [
        ({"mode": "audit"}, 1.0),
        ({"mode": "enforce"}, 0.0),
    ]


def test_without_totals_no_counters() -> None:
    text = render([], policy_ok=False, last_reconcile=0.0)
    fam = _families(text)
    assert "masktool_drift_fixed" not in fam
    assert fam["masktool_policy_load_success"] == [({}, 0.0)]


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "masktool.prom"
    target.write_text("old")
    write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["masktool.prom"]

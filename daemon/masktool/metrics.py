"""Compliance as a Prometheus textfile (node_exporter's textfile collector reads it).

`render` is pure; `write_atomic` replaces the file in one rename, so a scrape never reads half
of it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from masktool.plan import UnitPlan
from masktool.tree import shown

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
TEXTFILE_NAME = "masktool.prom"


def default_path() -> str | None:
    """node_exporter's textfile directory, when this host has one."""
    return f"{TEXTFILE_DIR}/{TEXTFILE_NAME}" if Path(TEXTFILE_DIR).is_dir() else None


@dataclass(frozen=True)
class UnitSample:
    """One unit's compliance, as exported."""

    unit: str
    want: str
    state: str
    compliant: bool
    refused: bool


@dataclass(frozen=True)
class Totals:
    """The daemon's counters since it started (None: not a daemon, no counters)."""

    drift_fixed: int
    refusals: int
    reloads: int
    errors: int


def samples(units: Iterable[UnitPlan]) -> list[UnitSample]:
    return [
        UnitSample(u.obs.unit, u.want, u.state.value, u.compliant, bool(u.refusal)) for u in units
    ]


def _number(value: float) -> str:
    # Full precision: a Unix timestamp in %g form would lose its last digits.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    units: Iterable[UnitSample],
    *,
    policy_ok: bool,
    last_reconcile: float,
    totals: Totals | None = None,
    policy_source: str | None = None,
    policy_pending: bool | None = None,
    mode: str | None = None,
) -> str:
    """`policy_source` (the daemon's): "files" when the policy in force is the one read from
    the files, "saved" when it is the last good copy kept on disk because they were rejected
    at start, "none" when there is no policy in force at all. `policy_pending` (the
    daemon's): whether the policy files were changed since the last reload."""
    units = sorted(units, key=lambda u: u.unit)
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    metric(
        "masktool_unit_compliant",
        "gauge",
        "1 when systemd reports the unit as the policy wants it, else 0",
        [
            (f'{{unit="{_label(u.unit)}",want="{u.want}",state="{u.state}"}}', int(u.compliant))
            for u in units
        ],
    )
    counts = {"compliant": 0, "drift": 0, "refused": 0}
    for u in units:
        counts["compliant" if u.compliant else "refused" if u.refused else "drift"] += 1
    metric(
        "masktool_units",
        "gauge",
        "Policy units by result",
        [(f'{{result="{k}"}}', v) for k, v in counts.items()],
    )
    metric(
        "masktool_conflicts",
        "gauge",
        "Units masktool will not mask because something else sits at /etc/systemd/system/UNIT",
        [("", sum(u.state == "conflict" for u in units))],
    )
    metric(
        "masktool_policy_load_success",
        "gauge",
        "1 when the last policy load succeeded, 0 when it was rejected",
        [("", int(policy_ok))],
    )
    if policy_source is not None:
        metric(
            "masktool_policy_in_force",
            "gauge",
            "1 for where the policy being enforced comes from: the policy files, or the last "
            "good copy saved on disk (the files were rejected at start), or none",
            [(f'{{source="{k}"}}', int(k == policy_source)) for k in ("files", "saved", "none")],
        )
    if policy_pending is not None:
        metric(
            "masktool_policy_pending",
            "gauge",
            "1 when the policy files differ from the policy in force (saved, not yet applied "
            "by `systemctl reload masktool`)",
            [("", int(policy_pending))],
        )
    if mode is not None:
        metric(
            "masktool_mode",
            "gauge",
            "1 for the policy's mode: enforce (drift is put back) or audit (reported only)",
            [(f'{{mode="{k}"}}', int(k == mode)) for k in ("enforce", "audit")],
        )
    metric(
        "masktool_last_reconcile_timestamp_seconds",
        "gauge",
        "When masktool last compared the host with the policy (Unix time)",
        [("", round(last_reconcile, 3))],
    )
    if totals is not None:
        metric(
            "masktool_drift_fixed_total",
            "counter",
            "Units put back as the policy wants",
            [("", totals.drift_fixed)],
        )
        metric(
            "masktool_refusals_total",
            "counter",
            "Refusals journaled (each once)",
            [("", totals.refusals)],
        )
        metric(
            "masktool_reloads_total",
            "counter",
            "daemon-reloads masktool asked systemd for",
            [("", totals.reloads)],
        )
        metric(
            "masktool_errors_total",
            "counter",
            "Reconciles that failed and were retried",
            [("", totals.errors)],
        )
    return "\n".join(out) + "\n"


def write_atomic(path: str, text: str) -> None:
    """Write aside in the same directory, fsync, rename over: readers see old or new, whole.

    Only a regular file (or a new name) is replaced: renaming over /dev/null, a FIFO or a link
    would replace what the name is, not write the metrics.
    """
    if not path:
        raise OSError(errno.EINVAL, "the metrics file name is empty")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise OSError(
                errno.EEXIST,
                f"{shown(path)} exists and is not a regular file; give a file name for the metrics",
            )
    directory = str(Path(path).parent)
    # Imported here: every command imports this module for its paths, few write metrics, and
    # tempfile (with shutil and random) costs ~2 ms a run.
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".masktool.", suffix=".prom.tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # node_exporter runs as another user
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Benchmark: `masktool apply` against bare `systemctl mask` and one `systemctl daemon-reload`,
in the same booted systemd (tests/sandbox.py), in the same run.

    .venv/bin/python bench/apply_bench.py [--repeat 5] [--sizes 1,100,1000]

For each size N it times, as whole processes started inside the sandbox:
  masktool   `masktool apply` of a policy masking N vendor units (incl. its verification)
  again      the same `masktool apply` right after, with the N units masked: nothing to do
  systemctl  `systemctl mask` of the same N units in one command (which reloads)
  reload     one `systemctl daemon-reload`
in two states of the units: idle (systemd has not loaded them) and loaded (active oneshot units
with RemainAfterExit, policy `stop: false` so both tools do the same work). Each figure is the
median of --repeat runs; the links are removed between runs (untimed). Results are printed and
written to bench/results/apply.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sandbox import Sandbox  # noqa: E402

VENDOR = Path("/usr/local/lib/systemd/system")
ETC = Path("/etc/systemd/system")
UNIT = (
    "[Unit]\nDescription=bench\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
)


def _names(n: int) -> list[str]:
    return [f"bench-{i:04d}.service" for i in range(n)]


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _reset(names: list[str]) -> None:
    for n in names:
        (ETC / n).unlink(missing_ok=True)
    subprocess.run(["systemctl", "daemon-reload"], check=True)


def inside(sizes: list[int], repeat: int, masktool: str) -> dict[str, Any]:
    """Runs in the sandbox."""
    biggest = max(sizes)
    VENDOR.mkdir(parents=True, exist_ok=True)
    for n in _names(biggest):
        (VENDOR / n).write_text(UNIT)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    policy_dir = Path("/etc/masktool/bench")
    policy_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"repeat": repeat, "runs": []}
    for state in ("idle", "loaded"):
        if state == "loaded":
            subprocess.run(["systemctl", "start", *_names(biggest)], check=True)
        for size in sizes:
            names = _names(size)
            policy = policy_dir / f"p{size}.yaml"
            body = "".join(f"  - unit: {n}\n    stop: false\n" for n in names)
            policy.write_text(f"version: 1\nmask:\n{body}")
            policy.chmod(0o644)
            t: dict[str, list[float]] = {"masktool": [], "again": [], "systemctl": [], "reload": []}
            for _ in range(repeat):
                t["masktool"].append(_timed([masktool, "apply", "--policy", str(policy)]))
                t["again"].append(_timed([masktool, "apply", "--policy", str(policy)]))
                _reset(names)
                t["systemctl"].append(_timed(["systemctl", "mask", *names]))
                _reset(names)
                t["reload"].append(_timed(["systemctl", "daemon-reload"]))
            med = {k: statistics.median(v) for k, v in t.items()}
            results["runs"].append({"state": state, "units": size, "median_s": med, "samples_s": t})
    return results


# The goal: `masktool apply` masking 1,000 idle units, verification included, within this many
# times one `systemctl daemon-reload`.
GOAL_UNITS, GOAL_RATIO = 1000, 3.0


def table(results: dict[str, Any]) -> str:
    lines = [
        f"median of {results['repeat']} runs, whole processes, same booted systemd 252",
        "| units | state | masktool apply | apply again (nothing to do) | systemctl mask | "
        "daemon-reload | masktool / systemctl mask | masktool / daemon-reload |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    goal = None
    for r in results["runs"]:
        m = r["median_s"]
        again = f"{m['again'] * 1000:.0f} ms" if "again" in m else "-"
        lines.append(
            f"| {r['units']} | {r['state']} | {m['masktool'] * 1000:.0f} ms | {again} | "
            f"{m['systemctl'] * 1000:.0f} ms | {m['reload'] * 1000:.0f} ms | "
            f"{m['masktool'] / m['systemctl']:.2f}x | {m['masktool'] / m['reload']:.2f}x |"
        )
        if r["units"] == GOAL_UNITS and r["state"] == "idle":
            goal = m["masktool"] / m["reload"]
    if goal is not None:
        met = "met" if goal <= GOAL_RATIO else "NOT met"
        lines.append(
            f"\ngoal: apply of {GOAL_UNITS:,} idle units <= {GOAL_RATIO:g}x daemon-reload: "
            f"{goal:.2f}x, {met}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="1,100,1000")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    sizes = [int(s) for s in ns.sizes.split(",")]
    masktool = str(Path(sys.executable).parent / "masktool")
    if ns.inside:
        print(json.dumps(inside(sizes, ns.repeat, masktool)))
        return 0
    venv = Path(sys.executable).parent.parent
    with Sandbox(binds=[str(REPO), str(venv)]) as sb:
        res = sb.run(
            [sys.executable, __file__, "--inside", "--repeat", str(ns.repeat), "--sizes", ns.sizes],
            timeout=3600,
        )
    results = json.loads(res.stdout)
    out = REPO / "bench/results"
    out.mkdir(exist_ok=True)
    (out / "apply.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

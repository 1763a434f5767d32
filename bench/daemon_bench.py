"""Benchmark: how fast masktool.service puts drift back, and what it costs while idle.

    .venv/bin/python bench/daemon_bench.py [--repeat 15] [--idle 60]

Runs masktool.service (the unit from the tree) in a booted systemd (tests/sandbox.py) and
measures in-process inside it: links are read with readlink and systemd is asked over one held
D-Bus connection, polling every half millisecond (spawning `systemctl show` would cost ~20 ms a
poll and swamp the figures). Medians of --repeat runs:

  unmask   from the link disappearing under `systemctl unmask X` to the link being back and
           systemd reporting LoadState=masked (X is loaded: a target holds a Wants= on it)
  rm       from `rm` of the link to the same
  baseline bare `systemctl mask Y` of a loaded unit Y, whole command, same sandbox, same run
  storm    `systemctl unmask` of 200 units in one command: from the first link disappearing to
           all 200 back and masked, and the daemon-reloads masktool caused meanwhile
  idle     CPU ticks (utime+stime) of the daemon over --idle seconds with nothing happening,
           and its resident memory
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "daemon"))

from tests.sandbox import Sandbox, install_masktool_service, service_binds  # noqa: E402

VENDOR = Path("/usr/local/lib/systemd/system")
ETC = Path("/etc/systemd/system")
POLL = 0.0005
STORM = [f"bd-storm-{i:03d}.service" for i in range(200)]
UNIT = "[Service]\nExecStart=/bin/sleep infinity\n"


def _masked_link(unit: str) -> bool:
    try:
        return os.readlink(ETC / unit) == "/dev/null"
    except OSError:
        return False


def _inode(unit: str) -> int:
    try:
        return os.lstat(ETC / unit).st_ino
    except FileNotFoundError:
        return 0


def _replaced(unit: str, old_inode: int) -> bool:
    """The link is gone, or already a new one: masktool can put it back faster than one poll,
    so a link seen missing is not the only sign that it was removed."""
    return _inode(unit) != old_inode


class Probe:
    """One held connection to systemd, for load states."""

    def __init__(self) -> None:
        from masktool.systemd_bus import Systemd

        self.sd = Systemd().open()

    def all_masked(self, units: list[str]) -> bool:
        return all(s.load_state == "masked" for s in self.sd.list_units_by_names(units))


def _wait(pred: Any, timeout: float = 30.0) -> float:
    deadline = time.perf_counter() + timeout
    while not pred():
        if time.perf_counter() > deadline:
            raise RuntimeError("timed out")
        time.sleep(POLL)
    return time.perf_counter()


def _service_property(name: str) -> str:
    return subprocess.run(
        ["systemctl", "show", "-p", name, "--value", "masktool.service"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _status_reloads() -> int:
    m = re.search(r"reloads (\d+)", _service_property("StatusText"))
    return int(m.group(1)) if m else -1


def _main_pid() -> int:
    return int(_service_property("MainPID"))


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def _service_pids(pid: int) -> list[int]:
    """`pid` and its descendants."""
    out = [pid]
    for p in out:
        kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        out.extend(int(k) for k in kids)
    return out


def _rss_kib(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) if m else -1


def _pss_kib(pid: int) -> int:
    """Proportional: a page shared by n processes counts 1/n in each. Summed over the two
    processes, the memory they cost the host (RSS counts libpython's pages in both)."""
    m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    return int(m.group(1)) if m else -1


def inside(repeat: int, idle: float) -> dict[str, Any]:
    # A unit of its own for every run: the same unit put back many times in a minute would
    # rightly trip masktool's flap guard.
    bases = [f"bd-base-{i:02d}.service" for i in range(repeat)]
    unmasked = [f"bd-u-{i:02d}.service" for i in range(repeat)]
    removed = [f"bd-r-{i:02d}.service" for i in range(repeat)]
    for u in [*unmasked, *removed, *bases, *STORM]:
        (VENDOR / u).write_text(UNIT)
    wants = " ".join([*unmasked, *removed, *bases])
    (VENDOR / "bd-holder.target").write_text(f"[Unit]\nWants={wants}\n")
    Path("/etc/masktool").mkdir(exist_ok=True)
    policy = "version: 1\nmask:\n" + "".join(
        f"  - unit: {u}\n    stop: false\n" for u in [*unmasked, *removed, *STORM]
    )
    Path("/etc/masktool/policy.yaml").write_text(policy)
    Path("/etc/masktool/policy.yaml").chmod(0o644)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "start", "bd-holder.target"], check=True)
    subprocess.run(["systemctl", "start", "masktool.service"], check=True)
    probe = Probe()

    unmask: list[float] = []
    rm: list[float] = []
    base: list[float] = []
    for i in range(repeat):
        u, r = unmasked[i], removed[i]
        _wait(lambda u=u: _masked_link(u) and probe.all_masked([u]))
        ino = _inode(u)
        proc = subprocess.Popen(
            ["systemctl", "unmask", u], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        gone = _wait(lambda u=u, ino=ino: _replaced(u, ino))
        done = _wait(lambda u=u: _masked_link(u) and probe.all_masked([u]))
        proc.wait()
        # systemctl's own reload comes after the link is removed: it must leave the unit masked.
        if not (_masked_link(u) and probe.all_masked([u])):
            raise RuntimeError(f"{u} did not stay masked after systemctl's reload")
        unmask.append(done - gone)

        _wait(lambda r=r: _masked_link(r) and probe.all_masked([r]))
        t0 = time.perf_counter()
        (ETC / r).unlink()
        done = _wait(lambda r=r: _masked_link(r) and probe.all_masked([r]))
        rm.append(done - t0)

        t0 = time.perf_counter()
        subprocess.run(["systemctl", "mask", bases[i]], check=True, capture_output=True)
        base.append(time.perf_counter() - t0)
        time.sleep(0.05)

    inodes = {u: _inode(u) for u in STORM}
    reloads_before = _status_reloads()
    t_cmd = time.perf_counter()
    proc = subprocess.Popen(
        ["systemctl", "unmask", *STORM], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first_gone = _wait(lambda: any(_replaced(u, inodes[u]) for u in STORM))
    storm_done = _wait(lambda: all(_masked_link(u) for u in STORM) and probe.all_masked(STORM))
    proc.wait()
    _wait(lambda: all(_masked_link(u) for u in STORM) and probe.all_masked(STORM))
    storm_reloads = _status_reloads() - reloads_before

    time.sleep(2)  # let the journal and everything else settle
    # The daemon and its watching process (masktool.sentry): the service's cost is both.
    pids = _service_pids(_main_pid())
    ticks0 = sum(_ticks(p) for p in pids)
    time.sleep(idle)
    idle_ticks = sum(_ticks(p) for p in pids) - ticks0
    rss = sum(_rss_kib(p) for p in pids)
    pss = sum(_pss_kib(p) for p in pids)
    med = statistics.median
    return {
        "repeat": repeat,
        "unmask_s": unmask,
        "rm_s": rm,
        "baseline_mask_s": base,
        "median": {"unmask": med(unmask), "rm": med(rm), "baseline": med(base)},
        "ratio": {"unmask": med(unmask) / med(base), "rm": med(rm) / med(base)},
        "storm": {
            "units": len(STORM),
            "restored_s": storm_done - first_gone,
            "restored_from_command_start_s": storm_done - t_cmd,
            "reloads_by_masktool": storm_reloads,
        },
        "idle": {
            "seconds": idle,
            "cpu_ticks": idle_ticks,
            "rss_mib": rss / 1024,
            "pss_mib": pss / 1024,
        },
    }


def report(r: dict[str, Any]) -> str:
    m, ra, s, i = r["median"], r["ratio"], r["storm"], r["idle"]
    rows = [
        ("bare `systemctl mask` of a loaded unit", f"{m['baseline'] * 1000:.1f} ms", ""),
        (
            "restored after `systemctl unmask`",
            f"{m['unmask'] * 1000:.1f} ms = {ra['unmask']:.3f}x",
            "<= 0.04x",
        ),
        (
            "restored after `rm` of the link",
            f"{m['rm'] * 1000:.1f} ms = {ra['rm']:.3f}x",
            "<= 0.05x",
        ),
        (
            "storm: 200 unmasked in one command, all restored",
            f"{s['restored_s'] * 1000:.0f} ms (from the command's start: "
            f"{s['restored_from_command_start_s'] * 1000:.0f} ms)",
            "<= 150 ms",
        ),
        ("daemon-reloads masktool caused in the storm", str(s["reloads_by_masktool"]), "0"),
        (f"idle CPU over {i['seconds']:.0f} s", f"{i['cpu_ticks']} ticks", "0"),
        ("resident memory (daemon and watching process)", f"{i['rss_mib']:.1f} MiB", "<= 30 MiB"),
        ("proportional memory (PSS, the same two)", f"{i['pss_mib']:.1f} MiB", ""),
    ]
    head = f"medians of {r['repeat']} runs, masktool.service in a booted systemd 252, in-process"
    lines = [head, "| measure | figure | goal |", "|---|---:|---:|"]
    lines.extend(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.inside:
        print(json.dumps(inside(ns.repeat, ns.idle)))
        return 0
    venv = Path(sys.executable).parent.parent
    with Sandbox(binds=service_binds(venv)) as sb:
        install_masktool_service(sb)
        res = sb.run(
            [
                sys.executable,
                __file__,
                "--inside",
                "--repeat",
                str(ns.repeat),
                "--idle",
                str(ns.idle),
            ],
            timeout=1800,
        )
    results = json.loads(res.stdout)
    out = REPO / "bench/results"
    out.mkdir(exist_ok=True)
    (out / "daemon.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Carry out a plan on an unbooted tree (--root DIR): write and remove the links as
`systemctl --root DIR mask/unmask` would, with no systemd to ask. Nothing runs there, so there is
nothing to reload or stop."""

from __future__ import annotations

import subprocess
from pathlib import Path

from masktool.backend import ApplyResult, Change
from masktool.files import NotAMaskError, displace, remove_mask, write_mask
from masktool.plan import Plan, Step
from masktool.units import ETC_DIR, ETC_SEARCH_DIR, RUN_SEARCH_DIR


def apply_offline(plan: Plan, root: Path, stamp: str) -> ApplyResult:
    res = ApplyResult()
    enable: list[str] = []
    for u in plan.units:
        unit = u.obs.unit
        for a in u.actions:
            try:
                if a.step == Step.DISPLACE:
                    dest = displace(root, ETC_SEARCH_DIR, unit, stamp)
                    res.changes.append(Change(unit, "displace", f"{ETC_DIR}/{unit} -> {dest}"))
                elif a.step in (Step.MASK, Step.MASK_RUNTIME):
                    d = ETC_SEARCH_DIR if a.step == Step.MASK else RUN_SEARCH_DIR
                    if write_mask(root, d, unit):
                        res.changes.append(
                            Change(unit, a.step.value, f"{d.path}/{unit} -> /dev/null")
                        )
                elif a.step == Step.UNMASK:
                    for d in (ETC_SEARCH_DIR, RUN_SEARCH_DIR):
                        if remove_mask(root, d, unit):
                            res.changes.append(Change(unit, "unmask", f"removed {d.path}/{unit}"))
                elif a.step == Step.ENABLE:
                    enable.append(unit)
                # RELOAD and STOP concern a running manager; plan() makes none offline.
            except (OSError, NotAMaskError) as e:
                res.error(unit, f"{a.step.value}: {e}")
                break  # the unit's later steps depend on this one
    if enable:
        # Enabling means reading [Install] sections and following Also=/Alias=: systemctl's own
        # offline implementation does exactly that.
        proc = subprocess.run(
            ["systemctl", f"--root={root}", "enable", *enable],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            res.error("", f"systemctl --root enable failed: {proc.stderr.strip()}")
        else:
            res.changes.extend(Change(u, "enable") for u in enable)
    return res

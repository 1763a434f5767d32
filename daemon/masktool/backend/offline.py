"""Carry out a plan on an unbooted tree (--root DIR): write and remove the links as
`systemctl --root DIR mask/unmask` would, with no systemd to ask. Nothing runs there, so there is
nothing to reload or stop. Every path is resolved inside DIR (masktool.tree)."""

from __future__ import annotations

import subprocess

from masktool.backend import (
    ApplyResult,
    Change,
    ChangeKind,
    displace_change,
    displace_entry,
    hazard_error,
    remove_masks,
)
from masktool.files import NotAMaskError, write_mask
from masktool.observe import UnitTree
from masktool.plan import Plan, Step
from masktool.tree import Tree
from masktool.units import ETC_SEARCH_DIR, RUN_SEARCH_DIR


def apply_offline(plan: Plan, tree: Tree, stamp: str) -> ApplyResult:
    res = ApplyResult()
    enable: list[str] = []
    for u in plan.units:
        unit = u.obs.unit
        for a in u.actions:
            try:
                if a.step == Step.DISPLACE:
                    src = a.detail
                    moved = displace_entry(tree, src, unit, stamp)
                    res.changes.append(displace_change(unit, src, moved.copy, moved.note))
                elif a.step in (Step.MASK, Step.MASK_RUNTIME):
                    d = ETC_SEARCH_DIR if a.step == Step.MASK else RUN_SEARCH_DIR
                    kind: ChangeKind = "mask" if a.step == Step.MASK else "mask-runtime"
                    if write_mask(tree, d, unit):
                        at = f"{d.path}/{unit}"
                        res.changes.append(
                            Change(unit, kind, f"{at} -> /dev/null", at, effect="created")
                        )
                elif a.step == Step.UNMASK:
                    remove_masks(tree, u, res)
                elif a.step == Step.ENABLE:
                    enable.append(unit)
                # RELOAD and STOP concern a running manager; plan() makes none offline.
            except (OSError, NotAMaskError) as e:
                res.error(unit, f"{a.step.value}: {e}")
                break  # the unit's later steps depend on this one
    # systemctl --root would block reading a FIFO among them just as PID 1 does.
    hazards = UnitTree(tree.top).hazards() if enable else ()
    if hazards:
        for unit in enable:
            res.error(unit, hazard_error("enable", hazards))
        enable = []
    if enable:
        # Enabling means reading [Install] sections and following Also=/Alias=: systemctl's own
        # offline implementation does exactly that.
        try:
            proc = subprocess.run(
                ["systemctl", f"--root={tree.top}", "enable", *enable],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            res.error("", "systemctl --root enable did not finish within 120 s")
            return res
        if proc.returncode != 0:
            res.error("", f"systemctl --root enable failed: {proc.stderr.strip()}")
        else:
            res.changes.extend(Change(u, "enable") for u in enable)
    return res

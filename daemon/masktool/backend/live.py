"""Carry out a plan on the running system: systemd writes the links (MaskUnitFiles and friends,
one batched call per scope), reloads once if a loaded unit must change its load state, and stops
what must not run. Success over D-Bus proves little: the caller re-observes and verifies."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial

from masktool.backend import (
    ApplyResult,
    Change,
    ChangeKind,
    Effect,
    displace_change,
    displace_entry,
    hazard_error,
    remove_masks,
)
from masktool.files import NotAMaskError
from masktool.observe import UnitTree
from masktool.plan import Plan, Step, UnitPlan
from masktool.systemd_bus import Systemd, SystemdError
from masktool.tree import Tree
from masktool.units import ETC_DIR, RUN_DIR, is_template, template_of


def apply_live(
    plan: Plan, systemd: Systemd, stamp: str, stop_timeout: float = 120.0, *, wait: bool = True
) -> ApplyResult:
    """`wait=False` returns once stop jobs are queued: the daemon keeps serving events while
    they run and looks at them on a timer (masktool.loopstate.StopJobs)."""
    res = ApplyResult()
    by_step: dict[Step, list[UnitPlan]] = {s: [] for s in Step}
    for u in plan.units:
        for a in u.actions:
            by_step[a.step].append(u)

    tree = Tree("/")
    failed_displace: set[str] = set()
    moves = [(u, a.detail) for u in plan.units for a in u.actions if a.step == Step.DISPLACE]
    for u, src in moves:
        if u.obs.unit in failed_displace:
            continue
        try:
            moved = displace_entry(tree, src, u.obs.unit, stamp)
            res.changes.append(displace_change(u.obs.unit, src, moved.copy, moved.note))
        except (OSError, NotAMaskError) as e:
            failed_displace.add(u.obs.unit)
            res.error(u.obs.unit, f"could not displace {src}: {e}")

    # Masks are removed by masktool itself, not with UnmaskUnitFiles: PID 1 removes whatever
    # mask is at the name when the call arrives, which may by then be a file an admin has
    # just created and is still writing. masktool removes only a settled mask, checked on
    # the inode it removes (masktool.files).
    for u in by_step[Step.UNMASK]:
        remove_masks(tree, u, res)
    masks: tuple[tuple[Step, ChangeKind, bool], ...] = (
        (Step.MASK, "mask", False),
        (Step.MASK_RUNTIME, "mask-runtime", True),
    )
    for step, kind, runtime in masks:
        names = [n for n in _units(by_step[step]) if n not in failed_displace]
        if names:
            _batch(res, kind, names, partial(systemd.mask, runtime=runtime))
    enable = _units(by_step[Step.ENABLE])
    # Enabling reads the units' [Install] sections, their drop-ins and their Also= units.
    hazards = UnitTree("/").hazards() if enable else ()
    if hazards:
        for unit in enable:
            res.error(unit, hazard_error("enable", hazards))
        enable = []
    if enable:
        _batch(res, "enable", enable, systemd.enable)

    written = [u for s in (Step.UNMASK, Step.MASK, Step.MASK_RUNTIME) for u in by_step[s]]
    if (by_step[Step.RELOAD] or enable or _stale(systemd, written, res)) and _safe_to_reload(res):
        try:
            systemd.reload()
            res.reloads += 1
            res.changes.append(Change("", "reload"))
        except SystemdError as e:
            res.error("", f"daemon-reload failed: {e}")

    stopping: list[str] = []
    for u in plan.units:
        for a in u.actions:
            if a.step == Step.STOP:
                try:
                    job = systemd.stop(a.unit)
                    stopping.append(a.unit)
                    res.changes.append(Change(a.unit, "stop", job))
                except SystemdError as e:
                    res.error(a.unit, f"stop failed: {e}")
    if stopping and wait:
        _wait_stopped(systemd, stopping, stop_timeout, res)
    return res


def _safe_to_reload(res: ApplyResult) -> bool:
    """Whether a daemon-reload would not hang PID 1: it reads every loaded unit again, what
    they now pull in, and its own configuration (systemd 252 blocks on a FIFO there)."""
    hazards = UnitTree("/").hazards(manager_config=True)
    if hazards:
        res.error("", hazard_error("daemon-reload", hazards))
        return False
    return True


def _units(ups: Sequence[UnitPlan]) -> list[str]:
    return list(dict.fromkeys(u.obs.unit for u in ups))


def _batch(
    res: ApplyResult,
    what: ChangeKind,
    names: list[str],
    call: Callable[[list[str]], list[tuple[str, str, str]]],
) -> None:
    try:
        changes = call(names)
    except SystemdError as e:
        if len(names) == 1:
            res.error(names[0], f"{what} failed: {e}")
            return
        # One unit that fails makes the whole call raise, and the list of changes is lost;
        # the rest may be done (MaskUnitFiles) or not (EnableUnitFiles stops at the first).
        # Each again on its own: the failure is then the failing unit's, and the others are
        # done. Verification re-reads every unit anyway.
        for name in names:
            before = len(res.changes) + len(res.errors)
            _batch(res, what, [name], call)
            if len(res.changes) + len(res.errors) == before and what != "enable":
                # Nothing to do on its own: the call that failed had written it already.
                # Still this run's change, to be journaled (and verified) as such.
                where = RUN_DIR if what == "mask-runtime" else ETC_DIR
                path = f"{where}/{name}"
                detail = f"symlink {path} -> /dev/null (by the batch call that failed)"
                res.changes.append(Change(name, what, detail, path, effect="created"))
        return
    for kind, path, dest in changes:
        unit = path.rsplit("/", 1)[-1]
        if kind in ("symlink", "unlink"):
            detail = f"{kind} {path}" + (f" -> {dest}" if dest else "")
            effect: Effect = "created" if kind == "symlink" else "deleted"
            res.changes.append(Change(unit, what, detail, path, effect=effect))
        else:
            # e.g. "masked by generator": reported as success, changed nothing.
            res.error(unit, f"{what}: systemd says '{kind}' for {path}")


def _stale(systemd: Systemd, written: Sequence[UnitPlan], res: ApplyResult) -> bool:
    """Whether a unit just (un)masked on disk still has its old load state in systemd.

    Only a unit systemd holds in memory can be stale: one it has not loaded reads the new state
    when it is loaded. ListUnits loads nothing, so asking costs nothing.
    """
    plain = {u.obs.unit: u for u in written if not is_template(u.obs.unit)}
    templates = {u.obs.unit: u for u in written if is_template(u.obs.unit)}
    # An alias name systemd holds for the unit it names is listed under that unit's Id (for a
    # template alias: every instance of the template it names): the name's state changes
    # only with a reload.
    for u in plain.values():
        held = u.obs.live
        if held is not None and held.name != u.obs.unit:
            return True
    for u in templates.values():
        if any(template_of(i.name) != u.obs.unit for i in u.obs.instances):
            return True
    try:
        in_memory = systemd.list_units()
    except SystemdError as e:
        res.error("", f"reading load states failed, reloading to be safe: {e}")
        return True
    for s in in_memory:
        up = plain.get(s.name)
        if up is None:
            up = templates.get(template_of(s.name))
            if up is None or s.name in up.obs.owned_instances or s.name == up.obs.unit:
                continue
        if (s.load_state == "masked") != (up.rule.action == "mask"):
            return True
    return False


def _wait_stopped(systemd: Systemd, names: list[str], timeout: float, res: ApplyResult) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            running = [s.name for s in systemd.list_units_by_names(names) if s.running]
        except SystemdError as e:
            res.error("", f"waiting for stop jobs: {e}")
            return
        if not running:
            return
        if time.monotonic() > deadline:
            res.error("", f"still running after {timeout:.0f}s: {', '.join(running)}")
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.1)

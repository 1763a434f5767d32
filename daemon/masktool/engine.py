"""One pass of the engine, shared by `masktool apply` and the daemon: observe the policy's units
(with their reverse dependencies and the activators of with_triggers rules) and plan; then carry
the plan out, observe again what was acted on, and hand back the outcome to journal and report.

The daemon adds only what a long-running process needs around the pass (the put-backs its
watching process already made, stop jobs it does not wait for, retries); the CLI adds output.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from masktool.backend import ApplyResult, Change
from masktool.deps import DependencyIndex
from masktool.journal import apply_entries
from masktool.observe import SystemdReader, observe
from masktool.plan import Plan, Step, expand_triggers, plan
from masktool.policy import Policy

if TYPE_CHECKING:
    from masktool.systemd_bus import Systemd


def observe_and_plan(
    policy: Policy,
    root: str,
    systemd: SystemdReader | None,
    query: Sequence[str] = (),
    *,
    index: DependencyIndex | None = None,
    also_masked: frozenset[str] = frozenset(),
    deps_of_masked: bool = True,
    stopping: frozenset[str] = frozenset(),
) -> Plan:
    """`deps_of_masked=False` skips the dependents of units already masked: apply and the
    daemon need them only to decide whether a mask may be written. Units in `stopping` have
    a stop job running already: none is asked for again."""
    index = index if index is not None else DependencyIndex(root)
    # with_triggers needs the activators even of a unit already masked.
    always = {r.unit for r in policy.rules if r.with_triggers}
    observed = observe(
        [r.unit for r in policy.rules],
        root,
        systemd,
        query,
        index,
        deps_of_masked=deps_of_masked,
        deps_for=always,
    )
    expanded = expand_triggers(policy, observed)
    new = [r.unit for r in expanded.rules if r.unit not in observed]
    if new:
        observed.update(observe(new, root, systemd, query, index, deps_of_masked=deps_of_masked))
    p = plan(expanded, observed, live=systemd is not None, also_masked=also_masked)
    if not stopping:
        return p
    units = tuple(
        replace(u, actions=tuple(a for a in u.actions if a.step != Step.STOP))
        if u.obs.unit in stopping
        else u
        for u in p.units
    )
    return replace(p, units=units)


@dataclass
class Outcome:
    """What one pass did and what systemd (or the tree) says now."""

    before: Plan
    result: ApplyResult
    after: Plan
    latency_usec: int

    def entries(
        self,
        *,
        root: str | None = None,
        was: dict[str, str] | None = None,
        restored: Collection[str] = (),
    ) -> list[dict[str, str]]:
        return apply_entries(
            self.before,
            self.result,
            self.after,
            self.latency_usec,
            root=root,
            was=was,
            restored=restored,
        )

    @property
    def failed(self) -> set[str]:
        return {unit for unit, _ in self.result.errors if unit}


def carry_out(
    before: Plan,
    policy: Policy,
    root: str | None,
    systemd: Systemd | None,
    *,
    started: float,
    index: DependencyIndex | None = None,
    also_masked: frozenset[str] = frozenset(),
    stopping: frozenset[str] = frozenset(),
    done_already: Sequence[Change] = (),
    wait_for_stops: bool = True,
) -> Outcome:
    """Carry out `before` (live through systemd, or offline on the tree at `root`), then observe
    again every unit acted on: verification asks systemd itself. `done_already` are changes
    made before the pass (the daemon's put-backs), reported and verified with the rest."""
    if before.actions:
        from datetime import UTC, datetime  # only when something is to be done

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        if systemd is not None:
            from masktool.backend.live import apply_live

            res = apply_live(before, systemd, stamp, wait=wait_for_stops)
        else:
            assert root is not None
            # Only for --root: the offline backend (and subprocess, which it uses) is not
            # loaded for the running system.
            from masktool.backend.offline import apply_offline
            from masktool.tree import Tree

            res = apply_offline(before, Tree(root), stamp)
    else:
        res = ApplyResult()
    res.changes[:0] = done_already
    fast = {c.unit for c in done_already}
    acted = [u.obs.unit for u in before.units if u.actions or u.obs.unit in fast]
    if acted:
        after = observe_and_plan(
            policy,
            root or "/",
            systemd,
            acted,
            index=index,
            also_masked=also_masked,
            deps_of_masked=False,
            stopping=stopping | {c.unit for c in res.changes if c.what == "stop"},
        )
    else:
        # Nothing was done: observing again would ask the very questions just answered (the
        # same units, no more of them asked about), and find what `before` found.
        after = before
    return Outcome(before, res, after, int((time.monotonic() - started) * 1e6))

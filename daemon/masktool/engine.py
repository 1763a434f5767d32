"""The read side of one pass, shared by the CLI and the daemon: observe the policy's units
(with their reverse dependencies), add the activators of with_triggers rules, and plan."""

from __future__ import annotations

from collections.abc import Sequence

from masktool.deps import DependencyIndex
from masktool.observe import SystemdReader, observe
from masktool.plan import Plan, expand_triggers, plan
from masktool.policy import Policy


def observe_and_plan(
    policy: Policy,
    root: str,
    systemd: SystemdReader | None,
    query: Sequence[str] = (),
    *,
    index: DependencyIndex | None = None,
    also_masked: frozenset[str] = frozenset(),
    deps_of_masked: bool = True,
) -> Plan:
    """`deps_of_masked=False` skips the dependents of units already masked: apply and the
    daemon need them only to decide whether a mask may be written."""
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
    return plan(expanded, observed, live=systemd is not None, also_masked=also_masked)

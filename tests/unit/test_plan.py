"""plan() is pure: observations are built by hand here."""

from __future__ import annotations

from dataclasses import replace

from masktool.deps import Dependency
from masktool.observe import DependentState, Entry, EntryKind, LiveState, State, UnitObservation
from masktool.plan import Step, UnitPlan, expand_triggers, plan
from masktool.policy import Action, Location, Policy, Rule
from masktool.units import SEARCH_PATH, SearchDir

DIRS = {d.path: d for d in SEARCH_PATH}
ETC, RUN, USR = (
    DIRS[p] for p in ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system")
)
AT = Location("p.yaml", 1)


def rule(
    unit: str,
    action: str = "mask",
    *,
    stop: bool = True,
    runtime: bool = False,
    force: bool = False,
    enable: bool = False,
) -> Rule:
    act: Action = "mask" if action == "mask" else "unmask"
    return Rule(unit, act, AT, stop=stop, runtime=runtime, force=force, enable=enable)


def obs(
    unit: str,
    *entries: tuple[SearchDir, EntryKind],
    live: LiveState | None = None,
    instances: tuple[LiveState, ...] = (),
) -> UnitObservation:
    es = tuple(Entry(d, unit, k) for d, k in entries)
    return UnitObservation(unit, unit, es, live=live, instances=instances)


def steps(r: Rule, o: UnitObservation, live: bool = True) -> list[tuple[Step, str]]:
    p = plan(Policy("enforce", (r,)), {r.unit: o}, live)
    return [(a.step, a.unit) for a in p.units[0].actions]


def one(r: Rule, o: UnitObservation, live: bool = True) -> UnitPlan:
    return plan(Policy("enforce", (r,)), {r.unit: o}, live).units[0]


def L(load: str, active: str = "inactive", name: str = "a.service") -> LiveState:
    return LiveState(name, load, active)


def test_mask_unmasked_running_unit_masks_then_stops() -> None:
    o = obs("a.service", (USR, EntryKind.UNIT_FILE), live=L("loaded", "active"))
    assert steps(rule("a.service"), o) == [(Step.MASK, "a.service"), (Step.STOP, "a.service")]


def test_stop_false_does_not_stop() -> None:
    o = obs("a.service", (USR, EntryKind.UNIT_FILE), live=L("loaded", "active"))
    assert steps(rule("a.service", stop=False), o) == [(Step.MASK, "a.service")]


def test_already_masked_and_inactive_is_compliant() -> None:
    o = obs("a.service", (ETC, EntryKind.MASK), (USR, EntryKind.UNIT_FILE), live=L("masked"))
    u = one(rule("a.service"), o)
    assert u.compliant
    assert u.actions == ()
    assert u.state == State.MASKED


def test_link_present_but_systemd_still_loaded_needs_reload() -> None:
    o = obs("a.service", (ETC, EntryKind.MASK), live=L("loaded", "active"))
    assert steps(rule("a.service"), o) == [(Step.RELOAD, "a.service"), (Step.STOP, "a.service")]


def test_offline_plan_has_no_reload_or_stop() -> None:
    o = obs("a.service", (USR, EntryKind.UNIT_FILE))
    assert steps(rule("a.service"), o, live=False) == [(Step.MASK, "a.service")]


def test_runtime_only_mask_is_not_durable_for_a_persistent_rule() -> None:
    o = obs("a.service", (RUN, EntryKind.MASK), live=L("masked"))
    u = one(rule("a.service"), o)
    assert u.state == State.MASKED_RUNTIME
    assert [a.step for a in u.actions] == [Step.MASK]


def test_runtime_rule_masks_in_run() -> None:
    o = obs("a.service", (USR, EntryKind.UNIT_FILE), live=L("loaded"))
    assert steps(rule("a.service", runtime=True), o) == [(Step.MASK_RUNTIME, "a.service")]


def test_conflict_refused_without_force() -> None:
    o = obs("a.service", (ETC, EntryKind.UNIT_FILE), live=L("loaded"))
    u = one(rule("a.service"), o)
    assert u.state == State.CONFLICT
    assert not u.compliant
    assert u.actions == ()
    assert "force: true" in u.refusal


def test_conflict_with_force_displaces_first() -> None:
    o = obs("a.service", (ETC, EntryKind.DANGLING), live=L("not-found"))
    assert steps(rule("a.service", force=True), o)[:2] == [
        (Step.DISPLACE, "a.service"),
        (Step.MASK, "a.service"),
    ]


def test_template_stops_running_instances_without_files_of_their_own() -> None:
    inst = (
        L("loaded", "active", "t@a.service"),
        L("loaded", "active", "t@own.service"),
        L("masked", "inactive", "t@c.service"),
    )
    o = UnitObservation(
        "t@.service",
        "t@.service",
        (Entry(USR, "t@.service", EntryKind.UNIT_FILE),),
        instances=inst,
        owned_instances=("t@own.service",),
    )
    assert steps(rule("t@.service"), o) == [(Step.MASK, "t@.service"), (Step.STOP, "t@a.service")]


def test_unmask_removes_masks_and_enables_when_asked() -> None:
    o = obs(
        "a.service",
        (ETC, EntryKind.MASK),
        (RUN, EntryKind.MASK),
        (USR, EntryKind.UNIT_FILE),
        live=L("masked"),
    )
    assert steps(rule("a.service", "unmask", enable=True), o) == [
        (Step.UNMASK, "a.service"),
        (Step.ENABLE, "a.service"),
    ]


def test_unmask_of_vendor_mask_is_refused() -> None:
    o = obs("a.service", (USR, EntryKind.MASK), live=L("masked"))
    u = one(rule("a.service", "unmask"), o)
    assert u.state == State.MASKED_VENDOR
    assert "cannot remove" in u.refusal
    assert not u.compliant


def test_unmask_compliant_when_systemd_agrees() -> None:
    o = obs("a.service", (USR, EntryKind.UNIT_FILE), live=L("loaded"))
    assert one(rule("a.service", "unmask"), o).compliant
    stale = obs("a.service", (USR, EntryKind.UNIT_FILE), live=L("masked"))
    assert steps(rule("a.service", "unmask"), stale) == [(Step.RELOAD, "a.service")]


def test_not_installed_unit_is_premasked() -> None:
    o = obs("gone.service", live=L("not-found", name="gone.service"))
    assert steps(rule("gone.service"), o) == [(Step.MASK, "gone.service")]


def test_alias_and_real_name_with_opposite_rules_are_both_refused() -> None:
    real = obs("real.service", (USR, EntryKind.UNIT_FILE))
    alias = UnitObservation(
        "nick.service", "real.service", real.entries, alias_chain=("nick.service",)
    )
    rules = (rule("nick.service"), rule("real.service", "unmask"))
    p = plan(Policy("enforce", rules), {"nick.service": alias, "real.service": real}, live=False)
    assert all(u.refusal and not u.actions for u in p.units)
    assert "name the same unit real.service" in p.units[0].refusal


def _dep(unit: str, kind: str, active: bool | None, enabled: bool) -> DependentState:
    return DependentState(Dependency(unit, kind, "/x"), active, enabled)


def test_protected_unit_needs_force_and_never_units_are_always_refused() -> None:
    o = obs("rescue.service", (USR, EntryKind.UNIT_FILE), live=L("loaded", name="rescue.service"))
    assert "protected" in one(rule("rescue.service"), o).refusal
    assert one(rule("rescue.service", force=True), o).refusal == ""
    me = obs("masktool.service", (USR, EntryKind.UNIT_FILE), live=L("loaded", "active"))
    u = one(rule("masktool.service", force=True), me)
    assert "never masks" in u.refusal
    assert u.actions == ()


def test_in_use_hard_dependents_block_unless_masked_too_or_forced() -> None:
    deps = (
        _dep("app.service", "Requires", True, False),
        _dep("w.service", "Wants", True, True),
        _dep("idle.service", "BindsTo", False, False),
    )
    o = replace(obs("lib.service", (USR, EntryKind.UNIT_FILE), live=L("loaded")), dependents=deps)
    u = one(rule("lib.service"), o)
    assert "app.service (Requires=lib.service, active)" in u.refusal
    assert "w.service" not in u.refusal and "idle.service" not in u.refusal
    assert one(rule("lib.service", force=True), o).refusal == ""
    p = plan(
        Policy("enforce", (rule("lib.service"),)),
        {"lib.service": o},
        True,
        also_masked=frozenset({"app.service"}),
    )
    assert p.units[0].refusal == ""


def test_already_masked_unit_is_not_refused_for_dependents() -> None:
    deps = (_dep("app.service", "Requires", True, True),)
    o = replace(obs("lib.service", (ETC, EntryKind.MASK), live=L("masked")), dependents=deps)
    assert one(rule("lib.service"), o).compliant


def test_with_triggers_adds_rules_for_activators() -> None:
    deps = (_dep("d.socket", "Triggers", True, True),)
    o = replace(obs("d.service", (USR, EntryKind.UNIT_FILE)), dependents=deps)
    r = replace(rule("d.service"), with_triggers=True)
    pol = expand_triggers(Policy("enforce", (r,)), {"d.service": o})
    assert [(x.unit, x.trigger_of) for x in pol.rules] == [
        ("d.service", ""),
        ("d.socket", "d.service"),
    ]
    plain = one(rule("d.service"), o, live=False)
    assert plain.activators == ("d.socket",)

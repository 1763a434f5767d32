"""(policy, observed) → what to do. A pure function: no I/O, no clock, no systemd."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from masktool.observe import EntryKind, State, UnitObservation
from masktool.policy import Policy, Rule
from masktool.units import ETC_DIR, RUN_DIR, is_template


class Step(Enum):
    DISPLACE = "displace"  # move a conflicting file to /var/lib/masktool/displaced (force)
    MASK = "mask"  # link to /dev/null in /etc/systemd/system
    MASK_RUNTIME = "mask-runtime"  # link to /dev/null in /run/systemd/system
    UNMASK = "unmask"  # remove masks in /etc and /run
    ENABLE = "enable"  # after an unmask, when the rule asks for it
    RELOAD = "reload"  # systemd still holds the old load state: daemon-reload
    STOP = "stop"  # still running though it must be masked and inactive


@dataclass(frozen=True)
class Action:
    step: Step
    unit: str
    detail: str = ""


@dataclass(frozen=True)
class UnitPlan:
    rule: Rule
    obs: UnitObservation
    state: State
    compliant: bool
    actions: tuple[Action, ...] = ()
    refusal: str = ""  # why masktool will not do what the rule asks
    notes: tuple[str, ...] = ()

    @property
    def want(self) -> str:
        if self.rule.action == "unmask":
            return "unmasked"
        return "masked-runtime" if self.rule.runtime else "masked"


@dataclass(frozen=True)
class Plan:
    mode: str
    live: bool
    units: tuple[UnitPlan, ...]

    @property
    def compliant(self) -> bool:
        return all(u.compliant for u in self.units)

    @property
    def actions(self) -> list[Action]:
        return [a for u in self.units for a in u.actions]

    @property
    def refusals(self) -> list[UnitPlan]:
        return [u for u in self.units if u.refusal]

    @property
    def needs_reload(self) -> bool:
        return any(a.step == Step.RELOAD for a in self.actions)

    @property
    def pending(self) -> bool:
        return bool(self.actions) or bool(self.refusals)


def plan(policy: Policy, observed: Mapping[str, UnitObservation], live: bool) -> Plan:
    # Two rules can name one unit through an alias; if they disagree, neither is carried out.
    actions_by_unit: dict[str, set[str]] = {}
    for r in policy.rules:
        actions_by_unit.setdefault(observed[r.unit].unit, set()).add(r.action)
    units = []
    for r in policy.rules:
        o = observed[r.unit]
        if len(actions_by_unit[o.unit]) > 1:
            others = [x for x in policy.rules if x is not r and observed[x.unit].unit == o.unit]
            where = ", ".join(f"{x.action} {x.unit} at {x.source}" for x in others)
            units.append(
                UnitPlan(
                    r,
                    o,
                    o.mask_state(),
                    False,
                    refusal=(
                        f"{r.unit} and the rule(s) {where} name the same unit {o.unit} "
                        "but disagree; keep one"
                    ),
                )
            )
        elif r.action == "mask":
            units.append(_plan_mask(r, o, live))
        else:
            units.append(_plan_unmask(r, o, live))
    return Plan(mode=policy.mode, live=live, units=tuple(units))


def _alias_note(o: UnitObservation) -> tuple[str, ...]:
    if o.alias_chain:
        return (
            f"{o.name} is an alias of {o.unit} (link in {ETC_DIR}); the rule applies to {o.unit}",
        )
    w = o.winner
    if w is not None and w.kind == EntryKind.ALIAS:
        real = w.target.rsplit("/", 1)[-1]
        return (
            f"{o.name} is a vendor alias of {real} ({w.path}); the rule covers the name "
            f"{o.name} only, {real} itself is not masked",
        )
    return ()


def _plan_mask(rule: Rule, o: UnitObservation, live: bool) -> UnitPlan:
    notes = list(_alias_note(o))
    state = o.state_for("mask", rule.runtime)
    actions: list[Action] = []
    conflict = o.conflict(rule.runtime)
    if conflict:
        etc = o.etc
        displaceable = etc is not None and etc.kind != EntryKind.MASK
        if not rule.force or not displaceable:
            why = f"conflict: {conflict}"
            if displaceable:
                why += "; set 'force: true' on the rule to move it to /var/lib/masktool/displaced"
            return UnitPlan(rule, o, state, False, refusal=why, notes=tuple(notes))
        actions.append(Action(Step.DISPLACE, o.unit, f"{ETC_DIR}/{o.unit}"))
        actions.append(Action(Step.MASK_RUNTIME if rule.runtime else Step.MASK, o.unit))
    elif rule.runtime:
        if state not in (State.MASKED, State.MASKED_RUNTIME, State.MASKED_VENDOR):
            actions.append(Action(Step.MASK_RUNTIME, o.unit, RUN_DIR))
    else:
        etc = o.etc
        if etc is None or etc.kind != EntryKind.MASK:
            # A mask only in /run or in /usr or a generator is not durable: add masktool's own.
            actions.append(Action(Step.MASK, o.unit, ETC_DIR))
    if state == State.MASKED_VENDOR:
        w = o.winner
        notes.append(f"also masked at {w.path if w else '?'}, which masktool cannot change")
    if is_template(o.unit) and o.owned_instances:
        notes.append(
            "instances with files of their own are not covered by the template mask: "
            + ", ".join(o.owned_instances)
        )

    if live:
        actions.extend(_live_mask_actions(rule, o, bool(actions)))
    return UnitPlan(rule, o, state, not actions, tuple(actions), notes=tuple(notes))


def _live_mask_actions(rule: Rule, o: UnitObservation, writing: bool) -> list[Action]:
    """What systemd still needs once the files are right: a reload for a stale load state, and
    stop jobs for what still runs."""
    actions: list[Action] = []
    if is_template(o.unit):
        covered = [i for i in o.instances if i.name not in o.owned_instances]
        stale = any(i.load_state != "masked" for i in covered)
        running = [i.name for i in covered if i.running]
    else:
        live = o.live
        stale = live is not None and live.load_state != "masked"
        running = [o.unit] if live is not None and live.running else []
    if stale and not writing:
        # The link is right but systemd has not re-read it.
        actions.append(Action(Step.RELOAD, o.unit, "systemd still reports it loaded"))
    if rule.stop:
        actions.extend(Action(Step.STOP, name) for name in running)
    return actions


def _plan_unmask(rule: Rule, o: UnitObservation, live: bool) -> UnitPlan:
    notes = list(_alias_note(o))
    state = o.mask_state()
    actions: list[Action] = []
    refusal = ""
    if state == State.MASKED_VENDOR:
        w = o.winner
        where = w.path if w else "?"
        refusal = (
            f"masked at {where}, outside /etc and /run: masktool cannot remove it "
            "(a mask in /usr belongs to a package; a generator mask comes from the kernel "
            "command line, e.g. systemd.mask=)"
        )
        # Masks of masktool's own scopes are still removed, so the vendor mask is the last one.
    ours = [e for e in (o.etc, o.run) if e is not None and e.kind == EntryKind.MASK]
    if ours:
        if state == State.UNMASKED:
            notes.append(
                f"{ours[0].path} is a mask that something else outranks; removed so it "
                "cannot take effect later"
            )
        actions.append(Action(Step.UNMASK, o.unit, ", ".join(e.path for e in ours)))
        if rule.enable:
            actions.append(Action(Step.ENABLE, o.unit))
    elif live and o.live is not None and o.live.load_state == "masked" and not refusal:
        actions.append(Action(Step.RELOAD, o.unit, "systemd still reports it masked"))
    compliant = not actions and not refusal
    return UnitPlan(rule, o, state, compliant, tuple(actions), refusal, tuple(notes))

"""(policy, observed) → what to do. A pure function: no I/O, no clock, no systemd."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum

from masktool.observe import DependentState, EntryKind, State, UnitObservation
from masktool.policy import Policy, Rule
from masktool.protected import protection
from masktool.units import ETC_DIR, RUN_DIR, is_template, template_of


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
    """One change to make for a unit."""

    step: Step
    unit: str
    detail: str = ""


@dataclass(frozen=True)
class UnitPlan:
    """What a rule asks of its unit, what the unit is like, and what to do about it."""

    rule: Rule
    obs: UnitObservation
    state: State
    compliant: bool
    actions: tuple[Action, ...] = ()
    refusal: str = ""  # why masktool will not do what the rule asks
    notes: tuple[str, ...] = ()
    activators: tuple[str, ...] = ()  # in-use sockets/timers/paths left able to start it

    @property
    def want(self) -> str:
        if self.rule.action == "unmask":
            return "unmasked"
        return "masked-runtime" if self.rule.runtime else "masked"


# Dependencies along which systemd stops the dependent when the unit stops.
STOPPED_WITH = frozenset({"Requires", "Requisite", "BindsTo", "PartOf", "StopPropagatedFrom"})


@dataclass(frozen=True)
class Plan:
    """A UnitPlan for every rule, in policy order."""

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
    def pending(self) -> bool:
        return bool(self.actions) or bool(self.refusals)


def plan(
    policy: Policy,
    observed: Mapping[str, UnitObservation],
    live: bool,
    also_masked: frozenset[str] = frozenset(),
) -> Plan:
    """`also_masked`: units that rules outside `policy` mask (the daemon plans a few units at
    a time), so a dependent masked by another rule does not block masking."""
    masked = also_masked | {observed[r.unit].unit for r in policy.rules if r.action == "mask"}
    # Two rules can name one unit through an alias; if they disagree (in what they ask, or
    # in how: runtime, stop, force, enable), neither is carried out.
    actions_by_unit: dict[str, set[tuple[str, bool, bool, bool, bool]]] = {}
    for r in policy.rules:
        actions_by_unit.setdefault(observed[r.unit].unit, set()).add(_wish(r))
    # Units this run unmasks (rules that are carried out): a rule about an instance or an
    # alias whose mask is theirs waits for that rule instead of being refused.
    unmasking = {
        observed[r.unit].unit: observed[r.unit]
        for r in policy.rules
        if r.action == "unmask" and len(actions_by_unit[observed[r.unit].unit]) == 1
    }
    # Units this run masks, by the rule that does: an unmask of an alias or an instance that
    # systemd resolves through one of them would be undone by it.
    masking = {observed[r.unit].unit: r for r in policy.rules if r.action == "mask"}
    units = []
    for r in policy.rules:
        o = observed[r.unit]
        if len(actions_by_unit[o.unit]) > 1:
            others = [x for x in policy.rules if x is not r and observed[x.unit].unit == o.unit]
            where = ", ".join(f"{_said(x)} {x.unit} at {x.source}" for x in others)
            units.append(
                UnitPlan(
                    r,
                    o,
                    o.mask_state(),
                    False,
                    refusal=(
                        f"{_said(r)} {r.unit} and the rule(s) {where} name the same unit "
                        f"{o.unit} but disagree; keep one"
                    ),
                )
            )
        else:
            up = (
                _plan_mask(r, o, live, masked)
                if r.action == "mask"
                else _plan_unmask(r, o, live, unmasking, masking)
            )
            units.append(_unverifiable(up) if o.hazards else up)
    return Plan(mode=policy.mode, live=live, units=tuple(_once(units)))


def _wish(r: Rule) -> tuple[str, bool, bool, bool, bool]:
    """What a rule asks of its unit, options included."""
    if r.action == "mask":
        return (r.action, r.runtime, r.stop, r.force, False)
    return (r.action, False, False, False, r.enable)


def _said(r: Rule) -> str:
    opts = [k for k, on in (("runtime", r.runtime), ("force", r.force)) if on]
    if r.action == "mask" and not r.stop:
        opts.append("stop: false")
    if r.action == "unmask" and r.enable:
        opts.append("enable")
    return r.action + (f" ({', '.join(opts)})" if opts else "")


def _once(units: list[UnitPlan]) -> list[UnitPlan]:
    """Two rules that name one unit (one through an alias link in /etc) and agree would plan
    the same change twice: a second displace of the same file fails, a second stop waits
    again. The first rule carries each change out; the other says so, still not compliant."""
    by: dict[tuple[Step, str, str], UnitPlan] = {}
    out = []
    for u in units:
        keep = []
        for a in u.actions:
            first = by.setdefault((a.step, a.unit, a.detail), u)
            if first is u:
                keep.append(a)
        if len(keep) < len(u.actions):
            first = next(by[(a.step, a.unit, a.detail)] for a in u.actions if a not in keep)
            note = f"carried out by the rule for {first.rule.unit} at {first.rule.source}"
            u = replace(u, actions=tuple(keep), notes=(*u.notes, note))
        out.append(u)
    return out


def _unverifiable(up: UnitPlan) -> UnitPlan:
    """A unit systemd was not asked about (UnitTree.hazards): the files are still made right,
    but only systemd could say the unit is, so it does not count as compliant."""
    found = up.obs.hazards
    note = (
        f"systemd was not asked about {up.obs.unit}: systemd would block reading "
        f"{', '.join(found)} when it loads the unit it belongs to (loading one unit loads "
        "others, so PID 1 could stop answering). Remove or fix "
        f"{'it' if len(found) == 1 else 'them'}; until then the files are kept right, "
        "unverified"
    )
    return replace(up, compliant=False, notes=(*up.notes, note))


def _alias_note(o: UnitObservation) -> tuple[str, ...]:
    if o.alias_chain:
        return (
            f"{o.name} is an alias of {o.unit} (link in {ETC_DIR}); the rule applies to {o.unit}",
        )
    own = o.own
    if own is not None and own.kind == EntryKind.ALIAS:
        real = own.alias_of
        return (
            f"{o.name} is an alias of {real} ({own.path}); the rule covers the name "
            f"{o.name} only, {real} itself is not masked",
        )
    return ()


def _plan_mask(rule: Rule, o: UnitObservation, live: bool, masked: frozenset[str]) -> UnitPlan:
    notes = list(_alias_note(o))
    hit = protection(o.name, o.unit)
    # o.state_for("mask", rule.runtime), with the conflict worked out once: plan runs twice a
    # pass over a thousand units.
    conflict = o.conflict(rule.runtime)
    state = State.CONFLICT if conflict else o.mask_state()
    if hit is not None and hit[2]:
        name, why, _ = hit
        return UnitPlan(
            rule,
            o,
            state,
            False,
            notes=tuple(notes),
            refusal=f"masktool never masks {name}, not even with force: {why}",
        )
    actions: list[Action] = []
    if conflict:
        # What stands where the mask must go, or in front of it, in a directory masktool
        # writes: /etc, or for a runtime rule /run (an /etc entry the loader skips does not
        # stand in front of a /run mask).
        etc, run = o.etc, o.run
        in_the_way = []
        if etc is not None and etc.kind != EntryKind.MASK and not (rule.runtime and etc.skipped):
            in_the_way.append(etc)
        if rule.runtime and run is not None and run.kind != EntryKind.MASK:
            in_the_way.append(run)
        if not rule.force or not in_the_way:
            why = f"conflict: {conflict}"
            if in_the_way:
                why += "; set 'force: true' on the rule to move it to /var/lib/masktool/displaced"
            return UnitPlan(rule, o, state, False, refusal=why, notes=tuple(notes))
        actions.extend(Action(Step.DISPLACE, o.unit, e.path) for e in in_the_way)
        actions.append(Action(Step.MASK_RUNTIME if rule.runtime else Step.MASK, o.unit))
    elif rule.runtime:
        # Met by a mask at the unit's own name that outlives a reboot (in /etc, or a vendor
        # one); not by the mask of another unit (the template, or the unit an alias names),
        # which a rule about that unit may remove.
        if not o.masked_here:
            actions.append(Action(Step.MASK_RUNTIME, o.unit, RUN_DIR))
    else:
        etc = o.etc
        if etc is None or etc.kind != EntryKind.MASK:
            # A mask only in /run or in /usr or a generator is not durable: add masktool's own.
            actions.append(Action(Step.MASK, o.unit, ETC_DIR))
    w = o.winner
    if o.masked_elsewhere and w is not None:
        notes.append(
            f"masked now through {w.path} (systemd resolves {o.unit} by name through "
            f"{' > '.join(o.via)}), a mask a rule about {w.name} could remove: "
            f"{o.unit} gets a mask of its own"
        )
    elif state == State.MASKED_VENDOR:
        notes.append(f"also masked at {w.path if w else '?'}, which masktool cannot change")
    if is_template(o.unit) and o.owned_instances:
        notes.append(
            "instances with files of their own are not covered by the template mask: "
            + ", ".join(o.owned_instances)
        )

    activators = _idle_activators(o, masked)
    if activators:
        notes.append(
            "activated by " + ", ".join(activators) + ", still enabled or running: each "
            "activation will fail; set 'with_triggers: true' to mask them too"
        )
    if any(a.step in (Step.DISPLACE, Step.MASK, Step.MASK_RUNTIME) for a in actions):
        refusal = _unsafe_to_mask(rule, o, masked, hit)
        if refusal:
            return UnitPlan(
                rule, o, state, False, refusal=refusal, notes=tuple(notes), activators=activators
            )
    if live:
        actions.extend(_live_mask_actions(rule, o, bool(actions)))
    compliant = not actions
    return UnitPlan(
        rule, o, state, compliant, tuple(actions), notes=tuple(notes), activators=activators
    )


def _in_use(d: DependentState) -> str:
    return ", ".join(w for w, on in (("active", d.active), ("enabled", d.enabled)) if on)


def _unsafe_to_mask(
    rule: Rule, o: UnitObservation, masked: frozenset[str], hit: tuple[str, str, bool] | None
) -> str:
    """Why masking this unit would break the host, unless the rule says force. `hit`: what
    protection() says of it."""
    if hit is not None and not rule.force:
        name, why, _ = hit
        return (
            f"{name} is protected ({why}); set 'force: true' on the rule only if you "
            "mean to lose that"
        )
    if rule.force:
        return ""
    blocking = [
        d
        for d in o.dependents
        if d.dep.hard and (d.active or d.enabled) and not _covered(d.dep.dependent, masked)
    ]
    if not blocking:
        return ""
    listed = "; ".join(f"{d.dep.dependent} ({d.dep.kind}={o.unit}, {_in_use(d)})" for d in blocking)
    return (
        f"{len(blocking)} unit(s) in use would fail without it: {listed}. Mask them too, or "
        "set 'force: true' on the rule"
    )


def _covered(unit: str, masked: frozenset[str]) -> bool:
    return unit in masked or template_of(unit) in masked


def _idle_activators(o: UnitObservation, masked: frozenset[str]) -> tuple[str, ...]:
    """Sockets, timers and paths that start this unit, are in use, and stay unmasked."""
    return tuple(
        d.dep.dependent
        for d in o.dependents
        if d.dep.kind == "Triggers"
        and (d.active or d.enabled)
        and not _covered(d.dep.dependent, masked)
    )


def expand_triggers(policy: Policy, observed: Mapping[str, UnitObservation]) -> Policy:
    """Rules for the activators of every unit whose rule says with_triggers: true."""
    have = {r.unit for r in policy.rules}
    extra: list[Rule] = []
    for r in policy.rules:
        if r.action != "mask" or not r.with_triggers or r.unit not in observed:
            continue
        o = observed[r.unit]
        for d in o.dependents:
            t = d.dep.dependent
            if d.dep.kind != "Triggers" or t in have:
                continue
            have.add(t)
            extra.append(
                replace(
                    r,
                    unit=t,
                    with_triggers=False,
                    trigger_of=o.unit,
                    reason=f"starts {o.unit}" + (f"; {r.reason}" if r.reason else ""),
                )
            )
    return replace(policy, rules=(*policy.rules, *extra)) if extra else policy


def _live_mask_actions(rule: Rule, o: UnitObservation, writing: bool) -> list[Action]:
    """What systemd still needs once the files are right: a reload for a stale load state, and
    stop jobs for what still runs."""
    actions: list[Action] = []
    if is_template(o.unit):
        # Instances of the template an alias names are not the rule's (see _held_by).
        covered = [
            i
            for i in o.instances
            if i.name not in o.owned_instances and template_of(i.name) == o.unit
        ]
        # Instances of the template an alias names carry the alias's instance names until a
        # reload (then they keep running, under their own names only).
        stale = any(i.load_state != "masked" for i in covered) or len(covered) < len(
            [i for i in o.instances if i.name not in o.owned_instances]
        )
        running = [i.name for i in covered if i.running]
    else:
        live = o.live
        stale = live is not None and live.load_state != "masked"
        # For an alias not yet masked, systemd reports the unit it names: stopping the alias
        # name would stop that unit, which the rule does not cover. A reload parts them (tried:
        # the alias name is then masked, the unit runs on).
        running = [o.unit] if live is not None and live.running and live.name == o.unit else []
    if stale and not writing:
        # The link is right but systemd has not re-read it.
        actions.append(Action(Step.RELOAD, o.unit, "systemd still reports it loaded"))
    if rule.stop:
        # systemd 252 stops with it what Requires=, Requisite=, BindsTo=, is PartOf= it or has
        # StopPropagatedFrom= it (not what Wants= it): said here, as it will happen (tried in
        # tests/integration/test_safety).
        taken = ", ".join(
            f"{d.dep.dependent} ({d.dep.kind}=)"
            for d in o.dependents
            if d.active and d.dep.kind in STOPPED_WITH
        )
        actions.extend(
            Action(
                Step.STOP,
                name,
                f"systemd stops with it: {taken}" if taken and name == o.unit else "",
            )
            for name in running
        )
    return actions


def _plan_unmask(
    rule: Rule,
    o: UnitObservation,
    live: bool,
    unmasking: Mapping[str, UnitObservation] = {},
    masking: Mapping[str, Rule] = {},
) -> UnitPlan:
    notes = list(_alias_note(o))
    state = o.mask_state()
    actions: list[Action] = []
    refusal = ""
    waits = False
    # Refusals are about what stays once masktool has removed the unit's masks in /etc and
    # /run: a template's mask, the mask of the unit an alias names, a vendor mask.
    left = o.after_unmask()
    w = left.winner
    other = unmasking.get(w.name) if left.masked_elsewhere and w is not None else None
    undone = next((masking[n] for n in left.via if n in masking), None)
    if undone is not None:
        refusal = (
            f"systemd resolves {o.unit} by name through {' > '.join(left.via)}, and the rule "
            f"at {undone.source} masks {undone.unit}: the two rules name one unit but "
            "disagree; keep one"
        )
    elif (
        other is not None and w is not None and other.after_unmask().mask_state() == State.UNMASKED
    ):
        # Another rule of this run removes that mask (the template's, or the unit's an
        # alias names): the unit is unmasked once it has; until then it is not compliant.
        waits = True
        notes.append(
            f"masked now by {w.path}, which the rule to unmask {w.name} removes in this run"
        )
    elif left.masked_by_template and w is not None:
        template = template_of(o.unit)
        refusal = (
            f"{o.unit} is masked by its template's mask at {w.path}: masktool does not change "
            f"{template} for a rule about one instance (that would unmask every instance). "
            f"Unmask {template} in the policy, or give {o.unit} a unit file of its own"
        )
    elif left.masked_elsewhere and w is not None:
        own = left.own
        link = f" ({own.path})" if own is not None else ""
        refusal = (
            f"{o.unit} is an alias{link} that systemd resolves by name through "
            f"{' > '.join(left.via)} to the mask at {w.path}: masktool does not change {w.name} "
            f"for a rule about {o.unit}. Unmask {w.name} in the policy"
        )
    if left.mask_state() == State.MASKED_VENDOR and not refusal:
        where = w.path if w else "?"
        refusal = (
            f"masked at {where}, outside /etc and /run: masktool cannot remove it "
            "(a mask in /usr belongs to a package; a generator mask comes from the kernel "
            "command line, e.g. systemd.mask=)"
        )
        # Masks of masktool's own scopes are still removed, so the vendor mask is the last one.
    ours = [e for e in (o.etc, o.run, *o.chain_masks) if e is not None and e.kind == EntryKind.MASK]
    writing = [e for e in ours if e.writing]
    ours = [e for e in ours if not e.writing]
    for e in writing:
        notes.append(
            f"{e.path} is an empty file that a process still has open for writing (a unit "
            "file being written, or a mask being made; or it is not root's, and masktool "
            "cannot tell); masktool looks again once it is closed"
        )
    if ours:
        if state == State.UNMASKED:
            notes.append(
                f"{ours[0].path} is a mask that something else outranks; removed so it "
                "cannot take effect later"
            )
        actions.append(Action(Step.UNMASK, o.unit, ", ".join(e.path for e in ours)))
    # Enabling a unit that stays masked (refused above) fails: only once it is unmasked, by
    # this rule or by the one it waits for (enables run after every unmask of the run).
    if rule.enable and not refusal and (ours or waits):
        actions.append(Action(Step.ENABLE, o.unit))
    if (
        not ours
        and live
        and o.live is not None
        and o.live.load_state == "masked"
        and not refusal
        and not waits
    ):
        actions.append(Action(Step.RELOAD, o.unit, "systemd still reports it masked"))
    compliant = not actions and not refusal and not writing and not waits
    return UnitPlan(rule, o, state, compliant, tuple(actions), refusal, tuple(notes))

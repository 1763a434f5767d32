"""Plans, results and explanations → text for people and JSON for scripts.

The JSON shapes are a contract (README, "JSON output"): fields are only ever added.
"""

from __future__ import annotations

from typing import Any

from masktool.backend import ApplyResult
from masktool.observe import DependentState, UnitObservation
from masktool.plan import Plan, UnitPlan
from masktool.policy import Exemption, Policy, Rule
from masktool.tree import shown
from masktool.units import is_template

JSON_VERSION = 1


def rule_json(r: Rule) -> dict[str, Any]:
    return {
        "action": r.action,
        "file": r.source.file,
        "line": r.source.line,
        "reason": r.reason,
        "via": list(r.via),
        "stop": r.stop,
        "runtime": r.runtime,
        "force": r.force,
        "enable": r.enable,
        "with_triggers": r.with_triggers,
        "trigger_of": r.trigger_of,
        "included_at": r.included_at,
        "ref": r.ref,
    }


def unit_json(u: UnitPlan) -> dict[str, Any]:
    o = u.obs
    return {
        "unit": o.unit,
        "policy_name": o.name,
        "want": u.want,
        "state": u.state.value,
        "compliant": u.compliant,
        "installed": o.installed,
        "load_state": o.live.load_state if o.live else None,
        "active_state": o.live.active_state if o.live else None,
        "instances": [
            {"unit": i.name, "load_state": i.load_state, "active_state": i.active_state}
            for i in o.instances
        ],
        "entries": [
            {
                "path": e.path,
                "kind": e.kind.value,
                "target": shown(e.target),
                "alias_of": e.alias_of,
                "skipped": e.skipped,
            }
            for e in o.entries
        ],
        # Where systemd's loader goes on by name (an alias's unit, an instance's template) and
        # the entry it takes the unit from there.
        "via": list(o.via),
        "via_entry": (
            {"path": o.via_entry.path, "kind": o.via_entry.kind.value}
            if o.via and o.via_entry
            else None
        ),
        "rule": rule_json(u.rule),
        "actions": [{"step": a.step.value, "unit": a.unit, "detail": a.detail} for a in u.actions],
        "refusal": u.refusal,
        "notes": list(u.notes),
        "dependents": [
            {
                "unit": d.dep.dependent,
                "kind": d.dep.kind,
                "hard": d.dep.hard,
                "source": shown(d.dep.source),
                "active": d.active,
                "enabled": d.enabled,
            }
            for d in o.dependents
        ],
        "activators": list(u.activators),
    }


def plan_json(command: str, p: Plan, root: str | None) -> dict[str, Any]:
    units = [unit_json(u) for u in p.units]
    return {
        "format": JSON_VERSION,
        "command": command,
        "mode": p.mode,
        "root": root,
        "live": p.live,
        "compliant": p.compliant,
        "summary": {
            "units": len(p.units),
            "compliant": sum(u.compliant for u in p.units),
            "drift": sum(not u.compliant and not u.refusal for u in p.units),
            "refused": len(p.refusals),
            "actions": len(p.actions),
        },
        "units": units,
    }


def result_json(res: ApplyResult) -> dict[str, Any]:
    return {
        "changes": [{"unit": c.unit, "what": c.what, "detail": c.detail} for c in res.changes],
        "errors": [{"unit": u, "message": m} for u, m in res.errors],
        "reloads": res.reloads,
    }


# -- text ---------------------------------------------------------------------------------------


def systemd_col(u: UnitPlan, live: bool) -> str:
    o = u.obs
    if not live:
        return "-"  # offline (--root): no systemd was asked
    if o.live is not None:
        return f"{o.live.load_state}/{o.live.active_state}"
    if is_template(o.unit):
        running = sum(i.running for i in o.instances)
        return f"{len(o.instances)} instance(s) loaded, {running} running"
    return "not loaded"


def rule_col(r: Rule) -> str:
    """Where a rule is, short: a bundle's rule by the bundle's name (its file may be deep in
    a Python installation); any other by its file. `why` and JSON give the full path."""
    ref = r.via[-1] if r.via else ""
    if ref and "/" not in ref and not ref.endswith((".yaml", ".yml")):
        return f"{ref}:{r.source.line}"
    return str(r.source)


def check_text(p: Plan) -> str:
    rows = [("", "UNIT", "WANT", "STATE", "SYSTEMD", "RULE")]
    for u in p.units:
        mark = "ok" if u.compliant else ("REFUSED" if u.refusal else "DRIFT")
        rows.append(
            (mark, u.obs.name, u.want, u.state.value, systemd_col(u, p.live), rule_col(u.rule))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for u in p.units:
        hard = [d for d in u.obs.dependents if d.dep.hard]
        if hard and u.rule.action == "mask":
            names = ", ".join(f"{d.dep.dependent} ({d.dep.kind})" for d in hard)
            lines.append(f"dependents: {u.obs.unit} is required by {names}")
        for n in u.notes:
            lines.append(f"note: {u.obs.name}: {n}")
        if u.refusal:
            lines.append(f"refused: {u.obs.name}: {u.refusal}")
    ok = sum(u.compliant for u in p.units)
    where = "systemd" if p.live else "the tree"
    lines.append(
        f"{ok} of {len(p.units)} unit(s) as the policy wants, according to {where} (mode {p.mode})"
    )
    return "\n".join(lines)


def dependents_text(u: UnitPlan, indent: str, soft_shown: int = 5) -> list[str]:
    """Who depends on the unit: hard dependents and activators all, softer ones a few."""

    def fmt(d: DependentState) -> str:
        state = [w for w, on in (("active", d.active), ("enabled", d.enabled)) if on]
        flags = f", {' and '.join(state)}" if state else ""
        return f"{d.dep.dependent} ({d.dep.kind}{flags}) from {shown(d.dep.source)}"

    strong = [d for d in u.obs.dependents if d.dep.hard or d.dep.kind == "Triggers"]
    soft = [d for d in u.obs.dependents if d not in strong]
    lines = [f"{indent}depended on by {fmt(d)}" for d in strong]
    lines.extend(f"{indent}depended on by {fmt(d)}" for d in soft[:soft_shown])
    if len(soft) > soft_shown:
        lines.append(f"{indent}... and {len(soft) - soft_shown} more (Wants/PartOf/Upholds)")
    return lines


def plan_text(p: Plan) -> str:
    lines: list[str] = []
    for u in p.units:
        for a in u.actions:
            detail = f" ({a.detail})" if a.detail else ""
            lines.append(f"{a.step.value:<13} {a.unit}{detail}  [{rule_col(u.rule)}]")
        if u.refusal:
            lines.append(f"{'refuse':<13} {u.obs.unit}: {u.refusal}  [{rule_col(u.rule)}]")
        lines.extend(f"{'note':<13} {u.obs.name}: {n}" for n in u.notes if not u.compliant)
        if u.actions or u.refusal:
            lines.extend(dependents_text(u, " " * 14))
    if not lines:
        return f"nothing to do: all {len(p.units)} unit(s) as the policy wants"
    n = len(p.actions)
    lines.append(
        f"{n} action(s), {len(p.refusals)} refusal(s) for {len(p.units)} unit(s)"
        + ("; a daemon-reload only if a loaded unit must change" if p.live else "")
    )
    return "\n".join(lines)


def result_text(res: ApplyResult) -> str:
    lines = [f"{c.what:<13} {c.unit} {c.detail}".rstrip() for c in res.changes]
    lines.extend(f"error: {u + ': ' if u else ''}{m}" for u, m in res.errors)
    return "\n".join(lines)


def why_text(
    *,
    name: str,
    obs: UnitObservation,
    rules: list[Rule],
    effective: Rule | None,
    exemptions: list[Exemption],
    unit_plan: UnitPlan | None,
    policy: Policy,
) -> str:
    lines = [f"{name}" + (f" (alias of {obs.unit})" if obs.alias_chain else "")]
    if not rules and not exemptions:
        lines.append(f"  no rule in the policy names {name} ({len(policy.files)} file(s) read)")
    for r in rules:
        tag = "rule" if r is effective else "rule (overridden)"
        if any(e.unit == r.unit for e in exemptions) and r.via:
            tag = "rule (exempted)"
        via = f" via include {' > '.join(r.via)}" if r.via else ""
        of = f" (with_triggers of {r.trigger_of}: it starts that unit)" if r.trigger_of else ""
        lines.append(f"  {tag}: {r.action} {r.unit} at {r.source}{via}{of}")
        if r.reason:
            lines.append(f"    reason: {r.reason}")
        if r.ref:
            lines.append(f"    checked by: {r.ref}")
        opts = [k for k, v in (("runtime", r.runtime), ("force", r.force)) if v]
        if r.action == "mask" and not r.stop:
            opts.append("stop: false")
        if r.action == "unmask" and r.enable:
            opts.append("enable")
        if opts:
            lines.append(f"    options: {', '.join(opts)}")
    for e in exemptions:
        lines.append(f"  exempted at {e.source}: {e.reason}")
    lines.append(f"  mode: {policy.mode}")
    if not obs.entries:
        lines.append(f"  on disk: no file for {obs.unit} on the unit search path")
    for entry in obs.entries:
        lines.append(f"  on disk: {entry.describe()}")
    if obs.via:
        found = obs.via_entry.describe() if obs.via_entry else "nothing (not found)"
        lines.append(f"  systemd resolves it by name through {' > '.join(obs.via)}: {found}")
    if obs.live is not None:
        lines.append(
            f"  systemd: LoadState={obs.live.load_state} "
            f"ActiveState={obs.live.active_state} SubState={obs.live.sub_state}"
        )
    for i in obs.instances:
        lines.append(f"  instance: {i.name} LoadState={i.load_state} ActiveState={i.active_state}")
    if unit_plan is not None:
        lines.extend(dependents_text(unit_plan, "  ", soft_shown=50))
        verdict = (
            "compliant" if unit_plan.compliant else ("refused" if unit_plan.refusal else "drift")
        )
        lines.append(f"  state: {unit_plan.state.value}, want {unit_plan.want}: {verdict}")
        lines.extend(f"  would: {a.step.value} {a.unit}" for a in unit_plan.actions)
        if unit_plan.refusal:
            lines.append(f"  refused: {unit_plan.refusal}")
        lines.extend(f"  note: {n}" for n in unit_plan.notes)
    return "\n".join(lines)

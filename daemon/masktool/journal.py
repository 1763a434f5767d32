"""Verified outcomes → structured journal entries (one per unit changed, refused or failed).

Entries are built by a pure function and handed to a sender (systemd.journal.send in
production), so tests can read back exactly what would be sent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

from masktool.backend import ApplyResult
from masktool.plan import Plan, UnitPlan
from masktool.policy import Rule

# Fixed 128-bit ids, one per kind of event; packaging/masktool.catalog explains each.
MESSAGE_IDS: Mapping[str, str] = {
    "mask": "b63ff736da4248fdad21b9bd4cca21f6",
    "unmask": "839fed861d2e40acb7c35a3a768fa279",
    "stop": "1ebe0f6236eb4affa18e1860aa8578b7",
    "refuse": "dc2b5df8a7634239a962b1d3bee65062",
    "drift": "3eea3c0eaf3a4da6a2153be1ff7b76f1",
    "error": "1131e7cabb6b4f458e64484cc4b33454",
    "policy-loaded": "f166355755a340cabf06d35778da6955",
    "policy-rejected": "c0621c3064ba41a893ce5051af73ba80",
    "flap": "66113930f9334ef18924cc95e9e486c8",
    "activator": "58f5202b62294166a31010054d537275",
    "restore": "c41a7f7a4f724f2dbb102863c6bba270",
    "release": "dd33699be4a748c9b1e799d0bbcb0378",
}

PRIORITY = {
    "mask": 5,
    "unmask": 5,
    "stop": 5,
    "refuse": 4,
    "drift": 4,
    "error": 3,
    "policy-loaded": 6,
    "policy-rejected": 3,
    "flap": 4,
    "activator": 4,
    # Something undid the policy: worth a look, unlike a first mask.
    "restore": 4,
    "release": 5,
}

Sender = Callable[..., None]
_STOPPED = ("inactive", "failed")


def _fields(kind: str, u: UnitPlan, message: str, **extra: str) -> dict[str, str]:
    f = {
        "MESSAGE": message,
        "MESSAGE_ID": MESSAGE_IDS[kind],
        "PRIORITY": str(PRIORITY[kind]),
        "SYSLOG_IDENTIFIER": "masktool",
        # With this field (sent by root) `journalctl -u UNIT` shows masktool's entries.
        "OBJECT_SYSTEMD_UNIT": u.obs.unit,
        "MASKTOOL_ACTION": kind,
        "MASKTOOL_UNIT": u.obs.unit,
        "MASKTOOL_WANT": u.want,
        "MASKTOOL_POLICY": str(u.rule.source),
        "MASKTOOL_REASON": u.rule.reason,
    }
    if u.rule.via:
        f["MASKTOOL_BUNDLE"] = " > ".join(u.rule.via)
    if u.rule.ref:
        f["MASKTOOL_REF"] = u.rule.ref
    f["MASKTOOL_EDIT"] = edit_advice(u.rule, u.obs.unit)
    f.update(extra)
    return f


def edit_advice(rule: Rule, unit: str) -> str:
    """Where to change what the rule does: the rule's own file, or, for a rule a bundle holds
    (a file the package may own), an exempt in the site file that includes the bundle."""
    if rule.trigger_of:
        return (
            f"it is masked as an activator of {rule.trigger_of} (with_triggers at "
            f"{rule.source}): change that rule"
        )
    if not rule.via:
        return f"edit or remove the rule at {rule.source}"
    where = rule.included_at.rpartition(":")[0] if rule.included_at else "the /etc/masktool file"
    at = f" (its include at {rule.included_at})" if rule.included_at else ""
    return (
        f"exempt it in {where}{at}: add '- unit: {unit}' with a 'reason:' under 'exempt:'. "
        f"Do not edit {rule.source.file}: the rule comes from bundle {rule.via[-1]}"
    )


def apply_entries(
    before: Plan,
    result: ApplyResult,
    after: Plan,
    latency_usec: int | None = None,
    *,
    root: str | None = None,
    was: Mapping[str, str] | None = None,
    restored: Collection[str] = (),
) -> list[dict[str, str]]:
    """One entry per unit masktool acted on (with the state systemd reports after it), one per
    refusal, one per error. `was` overrides the state before, for units put back before
    `before` was observed (the daemon's fast path). Units in `restored` were as the policy
    wants before something undid it: their change is a put-back ("restore"), not a first
    mask or unmask."""
    after_by_unit = {u.obs.unit: u for u in after.units}
    done: dict[str, list[str]] = {}
    displaced: dict[str, dict[str, str]] = {}
    for c in result.changes:
        done.setdefault(c.unit, []).append(c.what)
        if c.displaced:
            displaced[c.unit] = {"MASKTOOL_DISPLACED": c.displaced}
            if c.note:
                # What the copy could not keep: the journal is where an admin looks for it.
                displaced[c.unit]["MASKTOOL_DISPLACED_NOTE"] = c.note
    failed = {unit for unit, _ in result.errors if unit}
    entries: list[dict[str, str]] = []
    extra: dict[str, str] = {}
    if latency_usec is not None:
        extra["MASKTOOL_LATENCY_USEC"] = str(latency_usec)
    if root is not None:
        extra["MASKTOOL_ROOT"] = root
    for u in before.units:
        unit = u.obs.unit
        now = after_by_unit.get(unit, u)
        have = now.state.value
        if now.obs.live is not None:
            have += (
                f" (LoadState={now.obs.live.load_state} ActiveState={now.obs.live.active_state})"
            )
        steps = done.get(unit, [])
        if steps and unit not in failed:
            if "unmask" in steps:
                kind = "unmask"
            elif any(s in ("mask", "mask-runtime", "displace") for s in steps):
                kind = "mask"
            else:
                kind = "stop"
            verb = {"mask": "masked", "unmask": "unmasked", "stop": "stopped"}[kind]
            live = now.obs.live
            if kind == "stop" and live is not None and live.active_state not in _STOPPED:
                verb = "asked systemd to stop"  # the daemon does not wait for the job
            why = f": {u.rule.reason}" if u.rule.reason else ""
            message = f"masktool {verb} {unit} ({u.rule.source}){why}"
            if kind != "stop" and unit in restored:
                kind = "restore"
                before_text = (was or {}).get(unit, u.state.value)
                message = (
                    f"masktool put {unit} back: it was {before_text}, the rule at "
                    f"{u.rule.source} wants it {u.want}{why}"
                )
            entries.append(
                _fields(
                    kind,
                    now,
                    message,
                    MASKTOOL_HAVE=have,
                    MASKTOOL_WAS=(was or {}).get(unit, u.state.value),
                    MASKTOOL_STEPS=",".join(steps),
                    **displaced.get(unit, {}),
                    **extra,
                )
            )
            if kind in ("mask", "restore") and u.activators:
                entries.append(activator_entry(u) | extra)
        if u.refusal:
            entries.append(refusal_entry(u) | extra)
    for unit, message in result.errors:
        target = next((u for u in before.units if u.obs.unit == unit), None)
        if target is not None:
            entries.append(
                _fields(
                    "error",
                    target,
                    f"masktool failed on {unit}: {message}",
                    MASKTOOL_HAVE=after_by_unit.get(unit, target).state.value,
                    **extra,
                )
            )
        else:
            entries.append(error_entry(message) | extra)
    return entries


def _plain(kind: str, message: str, **extra: str) -> dict[str, str]:
    return {
        "MESSAGE": message,
        "MESSAGE_ID": MESSAGE_IDS[kind],
        "PRIORITY": str(PRIORITY[kind]),
        "SYSLOG_IDENTIFIER": "masktool",
        "MASKTOOL_ACTION": kind,
        **extra,
    }


def activator_entry(u: UnitPlan) -> dict[str, str]:
    names = ", ".join(u.activators)
    message = (
        f"masktool: {u.obs.unit} is masked but {names} can still try to start it; every "
        "activation will fail. Set 'with_triggers: true' on the rule to mask them too"
    )
    return _fields("activator", u, message, MASKTOOL_ACTIVATORS=names)


def refusal_entry(u: UnitPlan) -> dict[str, str]:
    message = f"masktool refused to {u.rule.action} {u.obs.unit}: {u.refusal}"
    return _fields("refuse", u, message, MASKTOOL_HAVE=u.state.value)


def unit_error_entry(u: UnitPlan, message: str) -> dict[str, str]:
    """An error that is one unit's: shown by `journalctl -u UNIT`."""
    return _fields("error", u, f"masktool failed on {u.obs.unit}: {message}")


def rule_error_entry(r: Rule, message: str) -> dict[str, str]:
    """An error met before the rule's unit could even be observed."""
    f = _plain(
        "error",
        f"masktool failed on {r.unit}: {message}",
        OBJECT_SYSTEMD_UNIT=r.unit,
        MASKTOOL_UNIT=r.unit,
        MASKTOOL_WANT="unmasked" if r.action == "unmask" else "masked",
        MASKTOOL_POLICY=str(r.source),
        MASKTOOL_REASON=r.reason,
    )
    if r.via:
        f["MASKTOOL_BUNDLE"] = " > ".join(r.via)
    if r.ref:
        f["MASKTOOL_REF"] = r.ref
    return f


def release_entry(unit: str, message: str, **fields: str) -> dict[str, str]:
    """`masktool release` undid something masktool did to `unit`."""
    return _plain(
        "release",
        f"masktool {message}",
        OBJECT_SYSTEMD_UNIT=unit,
        MASKTOOL_UNIT=unit,
        **fields,
    )


def error_entry(message: str) -> dict[str, str]:
    return _plain("error", f"masktool: {message}", MASKTOOL_REASON=message)


def drift_entries(p: Plan) -> list[dict[str, str]]:
    """Audit mode: what is not as the policy wants, and what apply would do about it."""
    out = []
    for u in p.units:
        if u.compliant:
            continue
        would = ", ".join(f"{a.step.value} {a.unit}" for a in u.actions) or u.refusal
        message = (
            f"masktool (audit): {u.obs.unit} is {u.state.value}, the policy wants {u.want} "
            f"({u.rule.source}); would: {would}"
        )
        out.append(_fields("drift", u, message, MASKTOOL_HAVE=u.state.value))
    return out


def policy_loaded_entry(files: tuple[str, ...], rules: int, mode: str) -> dict[str, str]:
    return _plain(
        "policy-loaded",
        f"masktool: policy loaded: {rules} rule(s) from {len(files)} file(s), mode {mode}",
        MASKTOOL_POLICY=" ".join(files),
        MASKTOOL_RULES=str(rules),
        MASKTOOL_MODE=mode,
    )


def policy_rejected_entry(
    problems: list[tuple[str, str]], kept: bool, saved: tuple[str, str] | None = None
) -> dict[str, str]:
    """`saved`: (path, when) of the copy on disk now in force, when the daemon started with
    policy files it rejects."""
    first = f"{problems[0][0]}: {problems[0][1]}" if problems else "unknown problem"
    if saved is not None:
        kept_text = f"enforcing the last good policy, accepted {saved[1]} and kept in {saved[0]}"
    elif kept:
        kept_text = "the last good policy stays in force"
    else:
        kept_text = "no policy is in force"
    extra = {"MASKTOOL_SAVED_POLICY": saved[0]} if saved is not None else {}
    return _plain(
        "policy-rejected",
        f"masktool: new policy rejected, {kept_text}: {first}",
        MASKTOOL_POLICY=problems[0][0] if problems else "",
        MASKTOOL_REASON="\n".join(f"{w}: {m}" for w, m in problems),
        **extra,
    )


def flap_entry(u: UnitPlan, changes: int, window: float) -> dict[str, str]:
    message = (
        f"masktool: {u.obs.unit} was put back {changes} times in {window:.0f}s; something "
        "keeps undoing the policy. masktool keeps putting it back every time; for the next "
        f"{window:.0f}s its put-backs are counted and summed up in one entry"
    )
    return _fields(
        "flap", u, message, MASKTOOL_HAVE=u.state.value, MASKTOOL_WINDOW_SEC=f"{window:.0f}"
    )


def flap_summary_entry(u: UnitPlan, count: int, window: float) -> dict[str, str]:
    message = (
        f"masktool: {u.obs.unit} was put back {count} more times in the last {window:.0f}s; "
        "something keeps undoing the policy"
    )
    return _fields(
        "flap",
        u,
        message,
        MASKTOOL_HAVE=u.state.value,
        MASKTOOL_WINDOW_SEC=f"{window:.0f}",
        MASKTOOL_COUNT=str(count),
    )


def _safe(value: str) -> str:
    """Bytes of a file name that are not UTF-8 (kept by Python as surrogates) as \\xNN: the
    journal takes UTF-8 only, and a name must not be able to stop an entry being written."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def send_all(entries: list[dict[str, str]], send: Sender) -> None:
    for e in entries:
        # ASCII (almost every value) holds no surrogate: _safe only where it can change a thing.
        fields: dict[str, Any] = {k: v if v.isascii() else _safe(v) for k, v in e.items()}
        message = fields.pop("MESSAGE")
        send(message, **fields)


def journal_sender() -> Sender:
    """systemd.journal.send: the same lines handed to the same sendv, without importing
    systemd.journal, which brings logging and the journal reader along (~3 ms a run, and
    memory in the daemon), and without its per-field helper (a thousand entries in an apply)."""
    try:
        from systemd._journal import sendv
    except ImportError:  # a python-systemd laid out otherwise: its public send, as it is
        from systemd import journal

        public: Sender = journal.send
        return public

    # The arguments are named as systemd.journal.send names them: callers pass CODE_FILE etc.
    def send(
        MESSAGE: str,
        MESSAGE_ID: str | None = None,
        CODE_FILE: str | None = None,
        CODE_LINE: int | None = None,
        CODE_FUNC: str | None = None,
        **fields: str,
    ) -> None:
        lines = ["MESSAGE=" + MESSAGE]
        if MESSAGE_ID is not None:
            lines.append("MESSAGE_ID=" + MESSAGE_ID)
        if CODE_FILE is None and CODE_LINE is None and CODE_FUNC is None:
            # Where send was called from, as systemd.journal.send works it out.
            caller = sys._getframe(1)
            CODE_FILE, CODE_LINE = caller.f_code.co_filename, caller.f_lineno
            CODE_FUNC = caller.f_code.co_name
        if CODE_FILE is not None:
            lines.append("CODE_FILE=" + CODE_FILE)
        if CODE_LINE is not None:
            lines.append(f"CODE_LINE={CODE_LINE:d}")
        if CODE_FUNC is not None:
            lines.append("CODE_FUNC=" + CODE_FUNC)
        lines.extend(f"{k}={v}" for k, v in fields.items())
        sendv(*lines)

    return send

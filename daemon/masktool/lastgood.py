"""The last policy the daemon accepted, kept on disk (the unit's StateDirectory).

A daemon restarted while the policy files are broken (a typo saved, a link loop, a file that is
not UTF-8) still enforces what it enforced before, and says so. The copy is the merged, validated
policy as JSON, rules with their file:line, so a journal entry made from it names the rule as
the original did. It is written atomically; a copy that cannot be read back whole and valid is
reported and ignored, never half used.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masktool.policy import Action, Exemption, Location, Mode, Policy, Rule
from masktool.report import rule_json
from masktool.units import unit_name_error

FORMAT = 1
DEFAULT_STATE_DIR = "/var/lib/masktool"
FILE_NAME = "last-good-policy.json"


class LastGoodError(Exception):
    """The saved copy exists but cannot be used: the message says why and where."""


@dataclass(frozen=True)
class Saved:
    policy: Policy
    saved_at: str  # when it was accepted, UTC, ISO 8601


def state_path() -> str:
    """Where the copy lives: systemd hands the StateDirectory= in $STATE_DIRECTORY."""
    dirs = os.environ.get("STATE_DIRECTORY", "")
    base = dirs.split(":")[0] if dirs else DEFAULT_STATE_DIR
    return str(Path(base) / FILE_NAME)


def _rule(r: Rule) -> dict[str, Any]:
    # The fields `--json` shows a rule by (and reads back here), with its unit.
    return {"unit": r.unit, **rule_json(r)}


def dumps(policy: Policy, saved_at: str) -> str:
    return json.dumps(
        {
            "format": FORMAT,
            "saved_at": saved_at,
            "mode": policy.mode,
            "files": list(policy.files),
            "rules": [_rule(r) for r in policy.rules],
            "all_rules": [_rule(r) for r in policy.all_rules],
            "exemptions": [
                {"unit": e.unit, "reason": e.reason, "file": e.source.file, "line": e.source.line}
                for e in policy.exemptions
            ],
        },
        indent=1,
    )


def save(policy: Policy, path: str) -> str:
    """Write the copy atomically (aside, fsync, rename); returns when it was accepted."""
    saved_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = f"{path}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, dumps(policy, saved_at).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    Path(tmp).rename(path)
    return saved_at


def _get(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LastGoodError(f"{where}: '{key}' is missing or not a {kind.__name__}")
    return value


def _file_names(obj: dict[str, Any], key: str, where: str) -> list[str]:
    names: list[Any] = _get(obj, key, list, where)
    if not all(isinstance(n, str) for n in names):
        raise LastGoodError(f"{where}: '{key}' holds something other than file names")
    return [str(n) for n in names]


def _read_rule(obj: Any, where: str) -> Rule:
    if not isinstance(obj, dict):
        raise LastGoodError(f"{where}: not an object")
    unit = _get(obj, "unit", str, where)
    problem = unit_name_error(unit)
    if problem is not None:
        raise LastGoodError(f"{where}: {problem}")
    action_text = _get(obj, "action", str, where)
    if action_text not in ("mask", "unmask"):
        raise LastGoodError(f"{where}: action '{action_text}' is neither mask nor unmask")
    action: Action = "mask" if action_text == "mask" else "unmask"
    via = _file_names(obj, "via", where)
    return Rule(
        unit=unit,
        action=action,
        source=Location(_get(obj, "file", str, where), _get(obj, "line", int, where)),
        reason=_get(obj, "reason", str, where),
        stop=_get(obj, "stop", bool, where),
        runtime=_get(obj, "runtime", bool, where),
        force=_get(obj, "force", bool, where),
        enable=_get(obj, "enable", bool, where),
        with_triggers=_get(obj, "with_triggers", bool, where),
        trigger_of=_get(obj, "trigger_of", str, where),
        via=tuple(via),
        # Not in copies saved before it was: a rule read from such a copy names no include.
        included_at=_get(obj, "included_at", str, where) if "included_at" in obj else "",
        ref=_get(obj, "ref", str, where) if "ref" in obj else "",
    )


def loads(text: str, where: str) -> Saved:
    try:
        top = json.loads(text)
    except (ValueError, RecursionError) as e:
        # RecursionError: nested deeper than the parser goes; no copy masktool wrote is.
        raise LastGoodError(f"{where}: not JSON masktool wrote ({type(e).__name__})") from None
    if not isinstance(top, dict):
        raise LastGoodError(f"{where}: not a JSON object")
    if top.get("format") != FORMAT:
        raise LastGoodError(f"{where}: format {top.get('format')!r} is not {FORMAT}")
    mode_text = _get(top, "mode", str, where)
    if mode_text not in ("enforce", "audit"):
        raise LastGoodError(f"{where}: mode '{mode_text}' is neither enforce nor audit")
    mode: Mode = "audit" if mode_text == "audit" else "enforce"
    files = _file_names(top, "files", where)
    rules = tuple(
        _read_rule(r, f"{where}: rules[{i}]") for i, r in enumerate(_get(top, "rules", list, where))
    )
    all_rules = tuple(
        _read_rule(r, f"{where}: all_rules[{i}]")
        for i, r in enumerate(_get(top, "all_rules", list, where))
    )
    exemptions = []
    for i, x in enumerate(_get(top, "exemptions", list, where)):
        at = f"{where}: exemptions[{i}]"
        if not isinstance(x, dict):
            raise LastGoodError(f"{at}: not an object")
        exemptions.append(
            Exemption(
                _get(x, "unit", str, at),
                _get(x, "reason", str, at),
                Location(_get(x, "file", str, at), _get(x, "line", int, at)),
            )
        )
    policy = Policy(mode, rules, all_rules, tuple(exemptions), tuple(files))
    return Saved(policy, _get(top, "saved_at", str, where))


def load(path: str) -> Saved | None:
    """The saved copy; None when there is none. Raises LastGoodError when it is unusable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LastGoodError(f"{path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise LastGoodError(f"{path}: not a regular file")
            data = f.read(16 << 20)
    except OSError as e:
        raise LastGoodError(f"{path}: {e.strerror}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise LastGoodError(f"{path}: not UTF-8") from None
    return loads(text, path)

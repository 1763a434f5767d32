"""Who depends on a unit: reverse dependencies read from the unit files themselves.

systemd's own RequiredBy=/WantedBy=/TriggeredBy= list only dependents loaded right now; an
inactive, unloaded unit with Requires=X is invisible there. So the unit search path is read once:
each unit's fragment (the first file of that name in precedence order) and its drop-ins, the
.wants/.requires/.upholds directories, and the activators (.socket, .timer, .path) with the unit
each one starts. Read-only, like the rest of observe.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from masktool.units import ETC_DIR, RUN_DIR, SEARCH_PATH, under_root, unit_name_error, unit_type

HARD = ("Requires", "Requisite", "BindsTo")
SOFT = ("Wants", "PartOf", "Upholds")
_SECTIONS = {"Unit", "Socket", "Timer", "Path"}
_DIR_KINDS = {".wants": "Wants", ".requires": "Requires", ".upholds": "Upholds"}
_ACTIVATORS = {"socket": "Service", "timer": "Unit", "path": "Unit"}


@dataclass(frozen=True)
class Dependency:
    dependent: str  # the unit that depends
    kind: str  # Requires, Requisite, BindsTo, PartOf, Wants, Upholds, or Triggers
    source: str  # the file or directory it was read from ("systemd" when systemd said so)

    @property
    def hard(self) -> bool:
        return self.kind in HARD


def _parse(path: str) -> dict[str, list[str]]:
    """The dependency settings of one unit file or drop-in: 'Section.Key' -> values."""
    out: dict[str, list[str]] = {}
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return out
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section not in _SECTIONS or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        out.setdefault(f"{section}.{key}", []).extend(value.split())
    return out


class DependencyIndex:
    """Every dependency edge on the search path under `root`, indexed by the unit depended on."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self._by_target: dict[str, list[Dependency]] = {}
        self._enabled: set[str] = set()  # units with install links in /etc or /run
        self._built = False  # read on first use: an apply with nothing to mask never needs it

    def _add(self, dependent: str, kind: str, target: str, source: str) -> None:
        if "%" in target or unit_name_error(target) is not None:
            return  # a specifier only an instance can resolve, or not a unit name
        self._by_target.setdefault(target, []).append(Dependency(dependent, kind, source))

    def _build(self) -> None:
        self._built = True
        fragments: dict[str, str] = {}
        dropins: dict[str, list[str]] = {}
        seen_dirs: set[tuple[int, int]] = set()
        for d in SEARCH_PATH:
            base = under_root(self.root, d.path)
            try:
                st = os.stat(base)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue  # /lib and /usr/lib on merged /usr
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(base) as it:
                entries = list(it)
            for e in entries:
                name = e.name
                suffix = next((s for s in _DIR_KINDS if name.endswith(s)), None)
                if suffix is not None and e.is_dir():
                    owner = name[: -len(suffix)]
                    for y in os.listdir(e.path):
                        self._add(owner, _DIR_KINDS[suffix], y, e.path)
                        if d.path in (ETC_DIR, RUN_DIR):
                            self._enabled.add(y)
                    continue
                if name.endswith(".d") and e.is_dir():
                    unit = name[:-2]
                    dropins.setdefault(unit, []).extend(
                        f"{e.path}/{c}" for c in sorted(os.listdir(e.path)) if c.endswith(".conf")
                    )
                    continue
                if name in fragments or unit_name_error(name) is not None:
                    continue
                try:
                    fst = os.stat(e.path)  # through links; a mask or a dangling link is no unit
                except OSError:
                    continue
                if stat.S_ISREG(fst.st_mode) and fst.st_size > 0:
                    fragments[name] = e.path
                else:
                    fragments[name] = ""
        for unit, path in fragments.items():
            if not path:
                continue
            settings = _parse(path)
            for extra in dropins.get(unit, []):
                for k, v in _parse(extra).items():
                    settings.setdefault(k, []).extend(v)
            for kind in (*HARD, *SOFT):
                for target in settings.get(f"Unit.{kind}", []):
                    self._add(unit, kind, target, path)
            t = unit_type(unit)
            if t in _ACTIVATORS:
                section = t.capitalize()
                named = settings.get(f"{section}.{_ACTIVATORS[t]}", [])
                stem = unit[: unit.rfind(".")]
                accept = settings.get("Socket.Accept", ["no"])[-1].lower() in ("yes", "true", "1")
                default = f"{stem}@.service" if accept else f"{stem}.service"
                for target in named[-1:] or [default]:
                    self._add(unit, "Triggers", target, path)

    def dependents(self, unit: str) -> list[Dependency]:
        if not self._built:
            self._build()
        return list(self._by_target.get(unit, []))

    def enabled(self, unit: str) -> bool:
        """Has install links (a .wants/.requires/.upholds entry) in /etc or /run."""
        if not self._built:
            self._build()
        return unit in self._enabled


def merge(file_deps: Iterable[Dependency], systemd_deps: Iterable[Dependency]) -> list[Dependency]:
    """File-scan results first; systemd's add what only it knows (generated dependencies)."""
    out = list(dict.fromkeys(file_deps))
    known = {(d.dependent, d.kind) for d in out}
    out.extend(d for d in systemd_deps if (d.dependent, d.kind) not in known)
    return out

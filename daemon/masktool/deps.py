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

from masktool.tree import Tree, shown
from masktool.units import ETC_DIR, RUN_DIR, SEARCH_PATH, unit_name_error, unit_type

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


# systemd reads unit files of any size, but a unit file is a few kilobytes: anything larger is
# not one, and reading it whole would only cost memory.
_MAX_UNIT_FILE = 4 << 20


def _read_unit_file(path: str) -> str | None:
    """The text of a regular file, or None for anything else: a FIFO, socket or device among
    the drop-ins is skipped (as systemd skips it) without blocking on it."""
    try:
        # Not even opened unless a regular file: opening a device can have effects of its own.
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_UNIT_FILE:
            return None
        data = os.read(fd, _MAX_UNIT_FILE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def _parse(path: str) -> dict[str, list[str]]:
    """The dependency settings of one unit file or drop-in: 'Section.Key' -> values."""
    out: dict[str, list[str]] = {}
    text = _read_unit_file(path)
    if text is None:
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
        self.tree = Tree(root)
        self.problems: list[str] = []  # directories that could not be read: "path: why"
        self._by_target: dict[str, list[Dependency]] = {}
        self._enabled: set[str] = set()  # units with install links in /etc or /run
        self._built = False  # read on first use: an apply with nothing to mask never needs it

    def _add(self, dependent: str, kind: str, target: str, source: str) -> None:
        if "%" in target or unit_name_error(target) is not None:
            return  # a specifier only an instance can resolve, or not a unit name
        self._by_target.setdefault(target, []).append(Dependency(dependent, kind, source))

    def _resolve(self, inside: str, entry: os.DirEntry[str]) -> str | None:
        """The host path an entry leads to, links resolved inside the tree; None if dangling."""
        if not entry.is_symlink():
            return entry.path
        final, exists = self.tree.chase(inside)
        return self.tree.host(final) if exists else None

    def _listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except OSError as e:
            self.problems.append(f"{shown(path)}: {e.strerror}")
            return []

    def _build(self) -> None:
        self._built = True
        fragments: dict[str, str] = {}
        beneath: dict[str, str] = {}  # activators masked: their first file below the mask
        dropins: dict[str, list[str]] = {}
        seen_dirs: set[tuple[int, int]] = set()
        for d in SEARCH_PATH:
            base = self.tree.real_dir(d.path)
            if base is None:
                continue
            try:
                st = os.stat(base)
                if (st.st_dev, st.st_ino) in seen_dirs:
                    continue  # /lib and /usr/lib on merged /usr
                seen_dirs.add((st.st_dev, st.st_ino))
                with os.scandir(base) as it:
                    entries = list(it)
            except OSError as err:
                self.problems.append(f"{self.tree.shown(d.path)}: {err.strerror}")
                continue
            for e in entries:
                name = e.name
                inside = f"{d.path}/{name}"
                suffix = next((s for s in _DIR_KINDS if name.endswith(s)), None)
                if suffix is not None or name.endswith(".d"):
                    sub = self.tree.real_dir(inside)
                    if sub is None:
                        continue
                    if suffix is not None:
                        owner = name[: -len(suffix)]
                        if unit_name_error(owner) is not None:
                            continue  # systemd ignores such a directory too
                        for y in self._listdir(sub):
                            self._add(owner, _DIR_KINDS[suffix], y, e.path)
                            if d.path in (ETC_DIR, RUN_DIR):
                                self._enabled.add(y)
                    else:
                        unit = name[:-2]
                        dropins.setdefault(unit, []).extend(
                            f"{sub}/{c}" for c in sorted(self._listdir(sub)) if c.endswith(".conf")
                        )
                    continue
                masked_above = name in fragments and not fragments[name]
                if (name in fragments and not masked_above) or unit_name_error(name) is not None:
                    continue
                if masked_above and (name in beneath or unit_type(name) not in _ACTIVATORS):
                    continue
                path = self._resolve(inside, e)
                try:
                    fst = os.stat(path) if path is not None else None
                except OSError:
                    fst = None
                # A mask, a dangling link or anything but a non-empty file is no unit file.
                real = fst is not None and stat.S_ISREG(fst.st_mode) and fst.st_size > 0
                if masked_above:
                    if real:
                        beneath[name] = path or ""
                else:
                    fragments[name] = (path or "") if real else ""
        # An activator masked (by with_triggers, say) still starts its unit once unmasked: the
        # file beneath its mask says which one, so that the mask is known to be the unit's
        # activator's, after a restart too. Only Triggers is read from it: a masked unit pulls
        # nothing in.
        for unit, path in beneath.items():
            settings = _parse(path)
            for extra in dropins.get(unit, []):
                for k, v in _parse(extra).items():
                    settings.setdefault(k, []).extend(v)
            self._triggers(unit, settings, path)
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
            self._triggers(unit, settings, path)

    def _triggers(self, unit: str, settings: dict[str, list[str]], path: str) -> None:
        t = unit_type(unit)
        if t not in _ACTIVATORS:
            return
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

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
from masktool.units import (
    ETC_DIR,
    RUN_DIR,
    SEARCH_PATH,
    UNIT_TYPES,
    unit_name_error,
    unit_type,
)

HARD = ("Requires", "Requisite", "BindsTo")
# StopPropagatedFrom=: no need, but stopped with the unit it names (like PartOf=).
SOFT = ("Wants", "PartOf", "Upholds", "StopPropagatedFrom")
_SECTIONS = {"Unit", "Socket", "Timer", "Path"}
_DIR_KINDS = {".wants": "Wants", ".requires": "Requires", ".upholds": "Upholds"}
_ACTIVATORS = {"socket": "Service", "timer": "Unit", "path": "Unit"}
_DIR_SUFFIXES = (*_DIR_KINDS, ".d")


@dataclass(frozen=True)
class Dependency:
    """One edge: `dependent` depends on the unit it is indexed under."""

    dependent: str  # the unit that depends
    kind: str  # Requires, Requisite, BindsTo, PartOf, Wants, Upholds, or Triggers
    source: str  # the file or directory it was read from ("systemd" when systemd said so)

    @property
    def hard(self) -> bool:
        return self.kind in HARD


# systemd reads unit files of any size, but a unit file is a few kilobytes: anything larger is
# not one, and reading it whole would only cost memory.
_MAX_UNIT_FILE = 4 << 20
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_open(fd: int, st: os.stat_result) -> str | None:
    """The text of the regular file open at `fd` (`st` its fstat), or None for anything else."""
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_UNIT_FILE:
        return None
    # As much as fstat says is there, and a byte more to see a file that grew since: a read of
    # _MAX_UNIT_FILE bytes would allocate that much for each of a thousand small files.
    data = os.read(fd, st.st_size + 1)
    if len(data) > st.st_size:
        chunks = [data]
        total = len(data)
        while total <= _MAX_UNIT_FILE:
            more = os.read(fd, _MAX_UNIT_FILE + 1 - total)
            if not more:
                break
            chunks.append(more)
            total += len(more)
        data = b"".join(chunks)
    return data.decode("utf-8", errors="replace")


def _read_unit_file(path: str) -> str | None:
    """The text of a regular file, or None for anything else: a FIFO, socket or device among
    the drop-ins is skipped (as systemd skips it) without blocking on it."""
    try:
        # Not even opened unless a regular file: opening a device can have effects of its own.
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, _FILE_FLAGS)
    except OSError:
        return None
    try:
        return _read_open(fd, os.fstat(fd))
    except OSError:
        return None
    finally:
        os.close(fd)


def _unit_file(path: str, plain_file: bool) -> tuple[bool, str | None]:
    """Whether `path` (links resolved) is a unit file (a non-empty regular file, not a mask),
    and its text when it is and can be read. `plain_file`: the directory listing says the
    entry is a regular file, no link: opened at once, and fstat answers both questions (two
    system calls fewer a file than a stat and an lstat first, for the thousand files read)."""
    if plain_file:
        try:
            fd = os.open(path, _FILE_FLAGS)
        except OSError:
            fd = -1  # gone, or no longer a plain file: asked again the long way below
        if fd >= 0:
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                    return False, None
                try:
                    return True, _read_open(fd, st)
                except OSError:
                    return True, None  # a unit file all the same, which cannot be read
            finally:
                os.close(fd)
    try:
        st = os.stat(path)
    except OSError:
        return False, None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return False, None
    return True, _read_unit_file(path)


def _settings(texts: Iterable[str | None]) -> dict[str, list[str]]:
    """The dependency settings of a unit file and its drop-ins: 'Section.Key' -> values."""
    out: dict[str, list[str]] = {}
    for text in texts:
        if text is not None:
            _parse_into(out, text)
    return out


def _parse_into(out: dict[str, list[str]], text: str) -> None:
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


def _words(texts: Iterable[str | None]) -> frozenset[str]:
    """Every unit name _parse_into could read from these texts, and a few more: the words
    between whitespace and '=' (which no unit name contains) that end in a unit type. A value's
    last word before a line continuation is followed by the backslash, so that word is there
    without it too. Only a unit whose words include a name asked about needs parsing for it.
    (Only names are kept: the index holds these sets for every unit file while the daemon
    runs, and all the words of 500 files took a megabyte.)"""
    words: set[str] = set()
    for text in texts:
        if text is None:
            continue
        found = text.replace("=", " ").split()
        words.update(w for w in found if w.rpartition(".")[2] in UNIT_TYPES)
        if "\\" in text:
            cut = (w[:-1] for w in found if w.endswith("\\"))
            words.update(w for w in cut if w.rpartition(".")[2] in UNIT_TYPES)
    return frozenset(words)


class _Unread:
    """A unit file (and its drop-ins) not parsed yet: parsed once a name in `words` is asked
    about. `order` is its place in the search path, which dependents come in. (A plain class:
    a dataclass costs a third of a millisecond to define, in every run.)"""

    __slots__ = ("order", "sources", "texts", "unit", "words")

    def __init__(
        self,
        order: int,
        unit: str,
        texts: tuple[str | None, ...],
        words: frozenset[str],
        sources: tuple[str, ...],
    ) -> None:
        self.order = order
        self.unit = unit
        self.texts = texts
        self.words = words
        self.sources = sources  # the file of each text: the unit file, then its drop-ins


class DependencyIndex:
    """Every dependency edge on the search path under `root`, indexed by the unit depended on.

    Every unit file is read, but one is parsed only once a name it could depend on is asked
    about (`want`): a large policy asks about a thousand units that hardly any file names.
    Activators are parsed at once: they start a unit of their own name without naming it."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.tree = Tree(root)
        self.problems: list[str] = []  # directories that could not be read: "path: why"
        # target -> (order of the dependent's file on the search path, edge), in the order read
        self._by_target: dict[str, list[tuple[int, Dependency]]] = {}
        self._enabled: set[str] = set()  # units with install links in /etc or /run
        self._built = False  # read on first use: an apply with nothing to mask never needs it
        self._unread: list[_Unread] = []
        self._wanted: set[str] = set()  # names every file that could name them is parsed for

    def _add(self, order: int, dependent: str, kind: str, target: str, source: str) -> None:
        if "%" in target or unit_name_error(target) is not None:
            return  # a specifier only an instance can resolve, or not a unit name
        self._by_target.setdefault(target, []).append((order, Dependency(dependent, kind, source)))

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
        # name -> (its unit file's host path and text); ("", None) when masked
        fragments: dict[str, tuple[str, str | None]] = {}
        # activators masked: their first file below the mask
        beneath: dict[str, tuple[str, str | None]] = {}
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
                # One endswith for the thousand unit files; which suffix only for directories.
                if name.endswith(_DIR_SUFFIXES):
                    suffix = next((s for s in _DIR_KINDS if name.endswith(s)), None)
                    sub = self.tree.real_dir(inside)
                    if sub is None:
                        continue
                    if suffix is not None:
                        owner = name[: -len(suffix)]
                        if unit_name_error(owner) is not None:
                            continue  # systemd ignores such a directory too
                        for y in self._listdir(sub):
                            self._add(-1, owner, _DIR_KINDS[suffix], y, e.path)
                            if d.path in (ETC_DIR, RUN_DIR):
                                self._enabled.add(y)
                    else:
                        unit = name[:-2]
                        dropins.setdefault(unit, []).extend(
                            f"{sub}/{c}" for c in sorted(self._listdir(sub)) if c.endswith(".conf")
                        )
                    continue
                found = fragments.get(name)
                masked_above = found is not None and not found[0]
                if (found is not None and not masked_above) or unit_name_error(name) is not None:
                    continue
                if masked_above and (name in beneath or unit_type(name) not in _ACTIVATORS):
                    continue
                path = self._resolve(inside, e)
                plain = not e.is_symlink() and e.is_file(follow_symlinks=False)
                # A mask, a dangling link or anything but a non-empty file is no unit file.
                real, text = _unit_file(path, plain) if path is not None else (False, None)
                if masked_above:
                    if real:
                        beneath[name] = (path or "", text)
                else:
                    fragments[name] = (path or "", text) if real else ("", None)
        # An activator masked (by with_triggers, say) still starts its unit once unmasked: the
        # file beneath its mask says which one, so that the mask is known to be the unit's
        # activator's, after a restart too. Only Triggers is read from it: a masked unit pulls
        # nothing in.
        order = 0
        for unit, (path, text) in beneath.items():
            texts = (text, *(_read_unit_file(p) for p in dropins.get(unit, [])))
            self._triggers(order, unit, _settings(texts), path)
            order += 1
        for unit, (path, text) in fragments.items():
            if not path:
                continue
            sources = (path, *dropins.get(unit, []))
            texts = (text, *(_read_unit_file(p) for p in sources[1:]))
            if unit_type(unit) in _ACTIVATORS:
                self._parsed(order, unit, texts, sources)
            else:
                self._unread.append(_Unread(order, unit, texts, _words(texts), sources))
            order += 1

    def _parsed(
        self, order: int, unit: str, texts: tuple[str | None, ...], sources: tuple[str, ...]
    ) -> None:
        # Each dependency is credited to the file that states it (a drop-in's, to the
        # drop-in): dependency lists only add up, so the files can be read one by one.
        for source, text in zip(sources, texts, strict=True):
            one = _settings((text,))
            for kind in (*HARD, *SOFT):
                for target in one.get(f"Unit.{kind}", []):
                    self._add(order, unit, kind, target, source)
        self._triggers(order, unit, _settings(texts), sources[0])

    def _triggers(self, order: int, unit: str, settings: dict[str, list[str]], path: str) -> None:
        t = unit_type(unit)
        if t not in _ACTIVATORS:
            return
        section = t.capitalize()
        named = settings.get(f"{section}.{_ACTIVATORS[t]}", [])
        stem = unit[: unit.rfind(".")]
        accept = settings.get("Socket.Accept", ["no"])[-1].lower() in ("yes", "true", "1")
        default = f"{stem}@.service" if accept else f"{stem}.service"
        for target in named[-1:] or [default]:
            self._add(order, unit, "Triggers", target, path)

    def want(self, names: Iterable[str]) -> None:
        """Say which units' dependents will be asked for: the files that could name one of
        them are parsed, in one pass over the files however many names."""
        new = set(names) - self._wanted
        if not new:
            return  # not even built: an apply with nothing to mask never reads a unit file
        if not self._built:
            self._build()
        self._wanted |= new
        unread = []
        for u in self._unread:
            if u.words.isdisjoint(new):
                unread.append(u)
            else:
                self._parsed(u.order, u.unit, u.texts, u.sources)
        self._unread = unread

    def dependents(self, unit: str) -> list[Dependency]:
        if not self._built:
            self._build()
        if unit not in self._wanted and self._unread:
            # Not announced with want(): parse all that is left rather than pass over every
            # file again for each name asked alone.
            for u in self._unread:
                self._parsed(u.order, u.unit, u.texts, u.sources)
            self._unread = []
        found = self._by_target.get(unit, [])
        # Files parsed later for another name may have come before: the search path's order.
        return [d for _, d in sorted(found, key=_first)]

    def enabled(self, unit: str) -> bool:
        """Has install links (a .wants/.requires/.upholds entry) in /etc or /run."""
        if not self._built:
            self._build()
        return unit in self._enabled


def _first(item: tuple[int, Dependency]) -> int:
    return item[0]


def merge(file_deps: Iterable[Dependency], systemd_deps: Iterable[Dependency]) -> list[Dependency]:
    """File-scan results first; systemd's add what only it knows (generated dependencies)."""
    out = list(dict.fromkeys(file_deps))
    known = {(d.dependent, d.kind) for d in out}
    out.extend(d for d in systemd_deps if (d.dependent, d.kind) not in known)
    return out

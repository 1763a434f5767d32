"""Host → what each policy unit looks like, read-only.

On disk: every entry for the unit along systemd's search path, classified the way systemd 252
classifies it (docs/systemd-facts.md). Live: also what systemd itself reports, which is the truth
a link on disk only predicts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

from masktool.deps import Dependency, DependencyIndex, merge
from masktool.units import (
    ETC_DIR,
    RUN_DIR,
    SEARCH_PATH,
    Scope,
    SearchDir,
    is_instance,
    is_template,
    template_of,
    under_root,
    unit_name_error,
    unit_type,
)


class EntryKind(Enum):
    MASK = "mask"  # link resolving to a character device (/dev/null), or a 0-byte file
    UNIT_FILE = "unit-file"  # a non-empty regular file
    LINK = "link"  # link to a unit file of the same name (systemctl link)
    ALIAS = "alias"  # link to a unit file of another name
    DANGLING = "dangling-link"  # systemd: not-found, and it hides the files below it
    BAD_LINK = "bad-link"  # link to a block device, a directory, ...: bad-setting
    DEVICE_NODE = "device-node"  # a device node itself: not a mask
    OTHER = "other"  # a directory or socket where a unit file would be


class State(Enum):
    MASKED = "masked"
    MASKED_RUNTIME = "masked-runtime"
    MASKED_VENDOR = "masked-vendor"
    UNMASKED = "unmasked"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Entry:
    dir: SearchDir
    name: str
    kind: EntryKind
    target: str = ""  # where a link ends, inside the root ("" for files)

    @property
    def path(self) -> str:
        return f"{self.dir.path}/{self.name}"

    def describe(self) -> str:
        what = {
            EntryKind.MASK: "a mask",
            EntryKind.UNIT_FILE: "a unit file",
            EntryKind.LINK: f"a link to the unit file {self.target}",
            EntryKind.ALIAS: f"an alias of {Path(self.target).name}",
            EntryKind.DANGLING: f"a dangling link to {self.target}",
            EntryKind.BAD_LINK: f"a link to {self.target}, which is not a unit file or a mask",
            EntryKind.DEVICE_NODE: "a device node",
            EntryKind.OTHER: "neither a unit file nor a mask",
        }[self.kind]
        return f"{self.path} is {what}"


@dataclass(frozen=True)
class LiveState:
    """What systemd reports for a unit."""

    name: str
    load_state: str
    active_state: str
    sub_state: str = ""

    @property
    def running(self) -> bool:
        return self.active_state in (
            "active",
            "activating",
            "deactivating",
            "reloading",
            "refreshing",
        )


@dataclass(frozen=True)
class DependentState:
    """A unit that depends on the observed one, and whether that dependent is in use."""

    dep: Dependency
    active: bool | None  # None: not known (offline)
    enabled: bool  # has install links in /etc or /run


@dataclass(frozen=True)
class UnitObservation:
    name: str  # as the policy names it
    unit: str  # the unit it resolves to (differs for an alias)
    entries: tuple[Entry, ...]  # the unit's own entries, highest precedence first
    template_entries: tuple[Entry, ...] = ()  # for an instance: its template's entries
    alias_chain: tuple[str, ...] = ()  # names followed to reach `unit`
    live: LiveState | None = None
    instances: tuple[LiveState, ...] = ()  # for a template: instances systemd has loaded
    owned_instances: tuple[str, ...] = ()  # for a template: instances with files of their own
    dependents: tuple[DependentState, ...] = ()  # filled when observe() is asked for them

    def entry_in(self, dir_path: str) -> Entry | None:
        return next((e for e in self.entries if e.dir.path == dir_path), None)

    @property
    def etc(self) -> Entry | None:
        return self.entry_in(ETC_DIR)

    @property
    def run(self) -> Entry | None:
        return self.entry_in(RUN_DIR)

    @property
    def winner(self) -> Entry | None:
        """The entry systemd loads: the unit's own first, else (for an instance) the template's."""
        if self.entries:
            return self.entries[0]
        if self.template_entries:
            return self.template_entries[0]
        return None

    @property
    def installed(self) -> bool:
        w = self.winner
        return w is not None and w.kind != EntryKind.MASK

    def mask_state(self) -> State:
        """How the unit is masked, if it is, judged by the winning entry."""
        w = self.winner
        if w is None or w.kind != EntryKind.MASK:
            return State.UNMASKED
        return {
            Scope.PERSISTENT: State.MASKED,
            Scope.RUNTIME: State.MASKED_RUNTIME,
            Scope.VENDOR: State.MASKED_VENDOR,
        }[w.dir.scope]

    def conflict(self, runtime: bool) -> str | None:
        """What prevents masktool from masking this unit, or None."""
        etc = self.etc
        if etc is not None and etc.kind != EntryKind.MASK:
            if runtime and etc.kind in (EntryKind.UNIT_FILE, EntryKind.LINK):
                return f"{etc.describe()}, which beats a mask in {RUN_DIR}"
            return f"{etc.describe()}; masktool does not delete or overwrite it"
        run = self.run
        if runtime and etc is None and run is not None and run.kind != EntryKind.MASK:
            return f"{run.describe()}; masktool does not delete or overwrite it"
        w = self.winner
        if w is not None and w.kind != EntryKind.MASK and _outranks_etc(w.dir):
            return f"{w.describe()}, which outranks a mask in {ETC_DIR}"
        return None

    def state_for(self, action: str, runtime: bool = False) -> State:
        if action == "mask" and self.conflict(runtime):
            return State.CONFLICT
        return self.mask_state()


def _outranks_etc(d: SearchDir) -> bool:
    order = [s.path for s in SEARCH_PATH]
    return order.index(d.path) < order.index(ETC_DIR)


# -- the files --------------------------------------------------------------------------------


def _chase(root: str, inside: str, max_hops: int = 40) -> tuple[str, bool]:
    """Follow symlinks from `inside` with `root` as /. Returns (final path inside root, exists)."""
    parts = [p for p in inside.split("/") if p]
    parts.reverse()  # a stack: the next component is at the end
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = under_root(root, "/" + "/".join([*resolved, part]))
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            return "/" + "/".join([*resolved, part, *reversed(parts)]), False
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > max_hops:
                return "/" + "/".join([*resolved, part, *reversed(parts)]), False
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts.extend(reversed([p for p in target.split("/") if p]))
            continue
        resolved.append(part)
    return "/" + "/".join(resolved), True


def classify(root: str, d: SearchDir, name: str) -> Entry | None:
    """The entry for `name` in directory `d` under `root`, classified; None if there is none."""
    p = under_root(root, f"{d.path}/{name}")
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISLNK(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            return Entry(d, name, EntryKind.MASK if st.st_size == 0 else EntryKind.UNIT_FILE)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            return Entry(d, name, EntryKind.DEVICE_NODE)
        return Entry(d, name, EntryKind.OTHER)
    # systemd compares the resolved path itself with /dev/null, so under --root a mask is a mask
    # even when DIR/dev/null does not exist. The direct link is by far the most common mask.
    if os.readlink(p) == "/dev/null":
        final, exists = "/dev/null", True
    else:
        final, exists = _chase(root, f"{d.path}/{name}")
    if final == "/dev/null":
        return Entry(d, name, EntryKind.MASK, final)
    if not exists:
        return Entry(d, name, EntryKind.DANGLING, final)
    tst = os.stat(under_root(root, final))
    if stat.S_ISCHR(tst.st_mode) or (stat.S_ISREG(tst.st_mode) and tst.st_size == 0):
        return Entry(d, name, EntryKind.MASK, final)
    if not stat.S_ISREG(tst.st_mode):
        return Entry(d, name, EntryKind.BAD_LINK, final)
    base = final.rsplit("/", 1)[-1]
    if base == name:
        return Entry(d, name, EntryKind.LINK, final)
    if unit_name_error(base) is None and unit_type(base) == unit_type(name):
        return Entry(d, name, EntryKind.ALIAS, final)
    return Entry(d, name, EntryKind.BAD_LINK, final)


class UnitTree:
    """The unit search path under a root, listed once (a directory read per search dir)."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.dirs: list[tuple[SearchDir, frozenset[str]]] = []
        seen: set[Path] = set()
        for d in SEARCH_PATH:
            p = Path(under_root(root, d.path))
            try:
                real = p.resolve(strict=True)
                names = frozenset(os.listdir(p))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if real in seen:
                continue  # /lib/systemd/system and /usr/lib/systemd/system on merged /usr
            seen.add(real)
            self.dirs.append((d, names))

    def entries(self, name: str) -> tuple[Entry, ...]:
        found = []
        for d, names in self.dirs:
            if name in names:
                e = classify(self.root, d, name)
                if e is not None:
                    found.append(e)
        return tuple(found)

    def names_matching(self, prefix: str, suffix: str) -> set[str]:
        return {
            n
            for _, names in self.dirs
            for n in names
            if n.startswith(prefix) and n.endswith(suffix)
        }

    def observe_files(self, policy_name: str) -> UnitObservation:
        name = policy_name
        chain: list[str] = []
        entries = self.entries(name)
        # Follow an alias (a winning link to a unit file of another name) to the unit it names
        # only when the alias link sits in /etc/systemd/system, where the mask would have to
        # go: systemd refuses to mask that name (UnitExists). An alias shipped in /usr or /lib
        # is not followed: a mask in /etc outranks it and masks just that name, which is what
        # `systemctl mask ctrl-alt-del.target` does (reboot.target stays loaded).
        while (
            entries
            and entries[0].kind == EntryKind.ALIAS
            and entries[0].dir.path == ETC_DIR
            and len(chain) < 8
        ):
            chain.append(name)
            name = Path(entries[0].target).name
            entries = self.entries(name)
        template_entries: tuple[Entry, ...] = ()
        if not entries and is_instance(name):
            template_entries = self.entries(template_of(name))
        owned: tuple[str, ...] = ()
        if is_template(name):
            prefix, suffix = name.split("@", 1)
            owned = tuple(
                sorted(
                    n
                    for n in self.names_matching(prefix + "@", suffix)
                    if n != name and any(e.kind != EntryKind.MASK for e in self.entries(n))
                )
            )
        return UnitObservation(
            name=policy_name,
            unit=name,
            entries=entries,
            template_entries=template_entries,
            alias_chain=tuple(chain),
            owned_instances=owned,
        )


# -- systemd ----------------------------------------------------------------------------------


class SystemdReader(Protocol):
    """What observe needs from systemd (masktool.systemd_bus.Systemd provides it)."""

    def list_units(self) -> list[LiveState]: ...

    def list_units_by_names(self, names: Sequence[str]) -> list[LiveState]: ...

    def reverse_dependencies(self, name: str) -> list[Dependency]: ...


def observe(
    names: Iterable[str],
    root: str = "/",
    systemd: SystemdReader | None = None,
    query: Iterable[str] = (),
    deps: DependencyIndex | None = None,
    *,
    deps_of_masked: bool = True,
    deps_for: Collection[str] = (),
) -> dict[str, UnitObservation]:
    """Observe every unit on disk; with `systemd`, also what systemd reports for it.

    systemd is asked about every unit it holds in memory (ListUnits, which loads nothing) and
    about every unit masked on disk or named in `query` (ListUnitsByNames, which loads them so
    their state is systemd's own answer). A unit that is neither in memory nor masked on disk is
    not loaded on purpose: loading costs systemd about 0.3 ms a unit, it is inactive by
    definition, and systemd would read the very files classified here. Its `live` stays None.
    """
    tree = UnitTree(root)
    obs = {n: tree.observe_files(n) for n in names}
    if systemd is None:
        if deps is not None:
            obs = {
                n: _with_dependents(o, deps, None, {})
                if deps_of_masked or n in deps_for or _may_mask(o)
                else o
                for n, o in obs.items()
            }
        return obs
    in_memory = {s.name: s for s in systemd.list_units()}
    wanted = set(query)
    ask = sorted(
        {
            o.unit
            for o in obs.values()
            if not is_template(o.unit)
            and o.unit not in in_memory
            and (o.mask_state() != State.UNMASKED or o.unit in wanted or o.name in wanted)
        }
    )
    live = dict(in_memory)
    if ask:
        live.update((s.name, s) for s in systemd.list_units_by_names(ask))
    out: dict[str, UnitObservation] = {}
    for n, o in obs.items():
        if is_template(o.unit):
            mine = tuple(
                s for s in in_memory.values() if template_of(s.name) == o.unit and s.name != o.unit
            )
            out[n] = replace(o, instances=mine)
        else:
            out[n] = replace(o, live=live.get(o.unit))
        if deps is not None and (deps_of_masked or n in deps_for or _may_mask(o)):
            out[n] = _with_dependents(out[n], deps, systemd, in_memory)
    return out


def _may_mask(o: UnitObservation) -> bool:
    """Whether a mask rule could still have to write a mask (and so must weigh dependents)."""
    etc = o.etc
    return etc is None or etc.kind != EntryKind.MASK


def _with_dependents(
    o: UnitObservation,
    index: DependencyIndex,
    systemd: SystemdReader | None,
    in_memory: dict[str, LiveState],
) -> UnitObservation:
    found = [d for n in (o.unit, *o.alias_chain) for d in index.dependents(n)]
    live = in_memory.get(o.unit)
    if systemd is not None and live is not None and live.running and _may_mask(o):
        # Only systemd knows implicit dependencies, but asking costs ~1.5 ms a unit: ask about
        # running units a mask may still be written for. A running hard dependent of an
        # inactive unit cannot exist (Requires=, BindsTo= and Requisite= hold it to it), and
        # enabled ones are found in the files.
        found = merge(found, systemd.reverse_dependencies(o.unit))
    states = []
    for d in found:
        if d.dependent in (o.unit, *o.alias_chain):
            continue
        live = in_memory.get(d.dependent)
        active = None if systemd is None else (live is not None and live.running)
        states.append(DependentState(d, active, index.enabled(d.dependent)))
    return replace(o, dependents=tuple(states))

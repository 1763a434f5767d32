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
from masktool.files import being_written, resolve_link
from masktool.tree import Tree, shown
from masktool.units import (
    ETC_DIR,
    RUN_DIR,
    SEARCH_PATH,
    Scope,
    SearchDir,
    is_instance,
    is_template,
    template_of,
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
    # A 0-byte file that some process still has open for writing: `cp` or an editor creating
    # a unit file. systemd would read it as a mask now, but it is not one masktool may remove.
    writing: bool = False

    @property
    def path(self) -> str:
        return f"{self.dir.path}/{self.name}"

    def describe(self) -> str:
        what = {
            EntryKind.MASK: "an empty file being written" if self.writing else "a mask",
            EntryKind.UNIT_FILE: "a unit file",
            EntryKind.LINK: f"a link to the unit file {shown(self.target)}",
            EntryKind.ALIAS: f"an alias of {shown(Path(self.target).name)}",
            EntryKind.DANGLING: f"a dangling link to {shown(self.target)}",
            EntryKind.BAD_LINK: (
                f"a link to {shown(self.target)}, which is not a unit file or a mask"
            ),
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
    # Files on the unit search path that PID 1 would block on (UnitTree.hazards), when the unit
    # would have to be loaded to ask systemd about it: masktool does not ask.
    hazards: tuple[str, ...] = ()
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
        """The entry systemd loads: the unit's own first, else (for an instance) the template's.

        An instance whose own entry only links to its template's file uses the template's
        fragment, and the template's mask wins over it (tried: with t@.service masked in /etc
        and /etc/.../t@1.service -> /usr/lib/.../t@.service, t@1 is LoadState=masked, though
        `systemctl is-enabled t@1.service` says enabled: masktool goes by LoadState)."""
        if self.entries:
            first = self.entries[0]
            if (
                _links_to_template(first, self.unit)
                and self.template_entries
                and self.template_entries[0].kind == EntryKind.MASK
            ):
                return self.template_entries[0]
            return first
        if self.template_entries:
            return self.template_entries[0]
        return None

    @property
    def masked_by_template(self) -> bool:
        """The mask that wins is the template's: only changing the template would change it."""
        w = self.winner
        return w is not None and w.kind == EntryKind.MASK and w in self.template_entries

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


def _links_to_template(e: Entry, unit: str) -> bool:
    """An instance's entry that is a link to its own template's file (`t@1.service ->
    .../t@.service`): the instance's, not an alias, but it brings no fragment of its own."""
    return (
        e.kind == EntryKind.LINK
        and is_instance(unit)
        and e.target.rsplit("/", 1)[-1] == template_of(unit)
    )


def _outranks_etc(d: SearchDir) -> bool:
    order = [s.path for s in SEARCH_PATH]
    return order.index(d.path) < order.index(ETC_DIR)


# -- the files --------------------------------------------------------------------------------


def classify(tree: Tree, d: SearchDir, name: str, real_dir: str | None = None) -> Entry | None:
    """The entry for `name` in directory `d` of the tree, classified; None if there is none.

    `real_dir` is the directory's host path with links resolved inside the tree (UnitTree
    resolves each search directory once)."""
    if real_dir is None:
        real_dir = tree.real_dir(d.path)
        if real_dir is None:
            return None
    p = f"{real_dir}/{name}"
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISLNK(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            if st.st_size != 0:
                return Entry(d, name, EntryKind.UNIT_FILE)
            # Only a mask in masktool's own scopes may ever be removed: only there does it
            # matter whether it is still being written.
            writing = d.scope != Scope.VENDOR and being_written(p)
            return Entry(d, name, EntryKind.MASK, writing=writing)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            return Entry(d, name, EntryKind.DEVICE_NODE)
        return Entry(d, name, EntryKind.OTHER)
    final, exists, mask = resolve_link(tree, f"{d.path}/{name}", os.readlink(p))
    if mask:
        # A link to an empty file (`systemctl link` of a file still being copied) is a mask
        # only once that file has settled.
        writing = (
            d.scope != Scope.VENDOR and final != "/dev/null" and being_written(tree.host(final))
        )
        return Entry(d, name, EntryKind.MASK, final, writing=writing)
    if not exists:
        return Entry(d, name, EntryKind.DANGLING, final)
    try:
        tst = os.stat(tree.host(final))
    except OSError:
        return Entry(d, name, EntryKind.DANGLING, final)
    if not stat.S_ISREG(tst.st_mode):
        return Entry(d, name, EntryKind.BAD_LINK, final)
    base = final.rsplit("/", 1)[-1]
    if base == name or (is_instance(name) and base == template_of(name)):
        # An instance linked to its own template's file is the instance's link, not an
        # alias: systemd resolves instances by name (systemctl enable makes such links).
        return Entry(d, name, EntryKind.LINK, final)
    if unit_name_error(base) is None and unit_type(base) == unit_type(name):
        return Entry(d, name, EntryKind.ALIAS, final)
    return Entry(d, name, EntryKind.BAD_LINK, final)


# Where the manager reads its own configuration on daemon-reload (systemd-system.conf(5)).
MANAGER_CONF_DIRS = (
    "/etc/systemd/system.conf.d",
    "/run/systemd/system.conf.d",
    "/usr/local/lib/systemd/system.conf.d",
    "/usr/lib/systemd/system.conf.d",
    "/lib/systemd/system.conf.d",
)


def _may_be_fifo(path: str) -> bool:
    """A cheap first look (lstat): a FIFO, or a link that may lead to one."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISLNK(mode)


class UnitTree:
    """The unit search path under a root, listed once (a directory read per search dir)."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.tree = Tree(root)
        # (search dir, its host path with links resolved inside the tree, its entries)
        self.dirs: list[tuple[SearchDir, str, frozenset[str]]] = []
        # Search directories that exist but cannot be listed: "path: why". systemd skips them
        # too (with a warning); masktool reports them.
        self.problems: list[str] = []
        seen: set[tuple[int, int]] = set()
        for d in SEARCH_PATH:
            real = self.tree.real_dir(d.path)
            if real is None:
                continue
            try:
                st = os.stat(real)
                names = frozenset(os.listdir(real))
            except OSError as e:
                self.problems.append(f"{self.tree.shown(d.path)}: {e.strerror}")
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue  # /lib/systemd/system and /usr/lib/systemd/system on merged /usr
            seen.add((st.st_dev, st.st_ino))
            self.dirs.append((d, real, names))

    def entries(self, name: str) -> tuple[Entry, ...]:
        found = []
        for d, real, names in self.dirs:
            if name in names:
                e = classify(self.tree, d, name, real)
                if e is not None:
                    found.append(e)
        return tuple(found)

    def names_matching(self, prefix: str, suffix: str) -> set[str]:
        return {
            n
            for _, _, names in self.dirs
            for n in names
            if n.startswith(prefix) and n.endswith(suffix)
        }

    def hazards(self, manager_config: bool = False) -> tuple[str, ...]:
        """Files systemd would block on, or read without end, when it reads unit files: a FIFO
        among the unit files, and among the drop-ins (`*.d/*.conf`) anything that is not a
        regular file or /dev/null (a masked drop-in): a FIFO, /dev/zero, /dev/kmsg. Links are
        followed inside the tree. Each is "PATH (why)", escaped for printing.

        systemd 252 opens such a file when it loads the unit it belongs to and PID 1 stops
        answering (tried). Loading one unit loads its dependencies and reads its aliases'
        drop-ins, enabling reads [Install] of the unit, its drop-ins and Also= units, and a
        daemon-reload reads every loaded unit again and, with `manager_config`, the manager's
        own system.conf and system.conf.d: which of them would reach such a file cannot be told
        from a unit's name, so while there is one, masktool asks systemd for none of these."""
        found: list[str] = []
        for d, real, listed in self.dirs:
            for n in sorted(listed):
                inside = f"{d.path}/{n}"
                if n.endswith(".d"):
                    found.extend(self._dropin_hazards(inside, f"{real}/{n}"))
                elif _may_be_fifo(f"{real}/{n}"):
                    why = self._hazard(inside, dropin=False)
                    if why:
                        found.append(f"{shown(inside)} ({why})")
        if manager_config:
            why = self._hazard("/etc/systemd/system.conf", dropin=True)
            if why:
                found.append(f"/etc/systemd/system.conf ({why})")
            for base in MANAGER_CONF_DIRS:
                conf_dir = self.tree.real_dir(base)
                if conf_dir is not None:
                    found.extend(self._dropin_hazards(base, conf_dir))
        return tuple(found)

    def _dropin_hazards(self, inside: str, real: str) -> list[str]:
        try:
            confs = sorted(c for c in os.listdir(real) if c.endswith(".conf"))
        except OSError:
            return []
        out = []
        for c in confs:
            why = self._hazard(f"{inside}/{c}", dropin=True)
            if why:
                out.append(f"{shown(f'{inside}/{c}')} ({why})")
        return out

    def _hazard(self, inside: str, *, dropin: bool) -> str:
        """Why systemd would hang reading `inside`, or ""."""
        final, exists = self.tree.chase(inside)
        if not exists or final == "/dev/null":
            return ""  # missing: skipped; /dev/null: a masked drop-in
        try:
            mode = os.lstat(self.tree.host(final)).st_mode
        except OSError:
            return ""
        led = f"leads to {shown(final)}, " if final != inside else ""
        if stat.S_ISFIFO(mode):
            return f"{led}a FIFO"
        # A unit file that is a character device is a mask, never read; a drop-in is read.
        if dropin and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            return f"{led}a {'character' if stat.S_ISCHR(mode) else 'block'} device"
        return ""

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
        if is_instance(name) and all(_links_to_template(e, name) for e in entries):
            template_entries = self.entries(template_of(name))
        owned: tuple[str, ...] = ()
        if is_template(name):
            prefix, suffix = name.split("@", 1)
            owned = tuple(
                sorted(
                    n
                    for n in self.names_matching(prefix + "@", suffix)
                    if n != name
                    and any(
                        e.kind != EntryKind.MASK and not _links_to_template(e, n)
                        for e in self.entries(n)
                    )
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
    hazards = tree.hazards() if ask else ()
    if hazards:
        obs = {n: replace(o, hazards=hazards) if o.unit in ask else o for n, o in obs.items()}
    elif ask:
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

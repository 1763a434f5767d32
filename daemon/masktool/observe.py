"""Host → what each policy unit looks like, read-only.

On disk: every entry for the unit along systemd's search path, classified the way systemd 252
classifies it (each shape tried on a booted systemd: tests/loader_shapes.py). Live: also what
systemd itself reports, which is the truth a link on disk only predicts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from masktool.deps import Dependency, DependencyIndex, merge
from masktool.files import alias_target, being_written, link_hop, resolve_link, search_prefixes
from masktool.tree import Tree, shown
from masktool.units import (
    ETC_DIR,
    FOLLOW_MAX,
    RUN_DIR,
    SEARCH_PATH,
    Scope,
    SearchDir,
    alias_allowed,
    is_instance,
    is_template,
    template_of,
    unit_type,
)


class EntryKind(Enum):
    MASK = "mask"  # link out of the search path to a character device or empty file; 0-byte file
    UNIT_FILE = "unit-file"  # a non-empty regular file
    # A link to a unit file out of the search path (systemctl link), or to the unit's own name
    # further down the search path (which the loader skips), or an instance's link to its own
    # template's file (resolved by the template's name).
    LINK = "link"
    ALIAS = "alias"  # link into the search path to another unit's name: resolved by that name
    DANGLING = "dangling-link"  # out of the search path to nothing: not-found, hides what is below
    BAD_LINK = "bad-link"  # link to a block device, a directory, ...: bad-setting
    DEVICE_NODE = "device-node"  # a device node itself: the loader skips it; not a mask
    OTHER = "other"  # a directory, socket or FIFO where a unit file would be: skipped too


# Entries the unit loader passes over (see Entry.skipped): compared by identity there, since
# hashing an Enum member runs Python code and `skipped` runs for every entry looked at.
_NOT_READ = (EntryKind.DEVICE_NODE, EntryKind.OTHER)


class State(Enum):
    MASKED = "masked"
    MASKED_RUNTIME = "masked-runtime"
    MASKED_VENDOR = "masked-vendor"
    UNMASKED = "unmasked"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Entry:
    """One entry for a unit name in one directory of the search path, classified."""

    dir: SearchDir
    name: str
    kind: EntryKind
    target: str = ""  # where a link ends, inside the root ("" for files)
    # A 0-byte file that some process still has open for writing: `cp` or an editor creating
    # a unit file. systemd would read it as a mask now, but it is not one masktool may remove.
    writing: bool = False
    # For a link into the unit search path: the unit name systemd resolves it by (an alias,
    # or an instance's link to its template). Empty for files and links out of the path.
    alias_of: str = ""
    # A link systemd's loader skips, so that what lies below it counts: one to the unit's own
    # name (a "self-alias"), or one it does not accept as an alias (another type, say).
    ignored: bool = False

    @property
    def skipped(self) -> bool:
        """The unit loader passes over this entry (it reads only files and links, tried on
        systemd 252: a directory, device node or socket at a unit's name hides nothing)."""
        kind = self.kind
        return self.ignored or kind is _NOT_READ[0] or kind is _NOT_READ[1]

    @property
    def path(self) -> str:
        return f"{self.dir.path}/{self.name}"

    def describe(self) -> str:
        what = {
            EntryKind.MASK: "an empty file being written" if self.writing else "a mask",
            EntryKind.UNIT_FILE: "a unit file",
            EntryKind.LINK: (
                f"a link to {shown(self.target)}, the same unit further down the search path "
                "(systemd skips such a link)"
                if self.ignored
                else f"a link to the unit file {shown(self.target)}"
            ),
            EntryKind.ALIAS: f"an alias of {shown(self.alias_of)}",
            EntryKind.DANGLING: (
                f"a link to {shown(self.target)}, which systemd cannot resolve and skips"
                if self.ignored
                else f"a link to {shown(self.target)}, which leads to nothing systemd can "
                "open (not-found)"
            ),
            EntryKind.BAD_LINK: (
                f"a link to {shown(self.target)}, which systemd does not take as an alias of "
                f"{shown(self.name)} and skips"
                if self.ignored
                else f"a link to {shown(self.target)}, which is not a unit file or a mask"
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
    """A policy unit as observed: its entries on disk, how systemd resolves it, and (live)
    what systemd reports."""

    name: str  # as the policy names it
    unit: str  # the unit it resolves to (differs for an alias link in /etc)
    entries: tuple[Entry, ...]  # the unit's own entries, highest precedence first
    alias_chain: tuple[str, ...] = ()  # names followed to reach `unit` (alias links in /etc)
    # Masks in /run at the names of alias_chain, which their /etc alias outranks: an unmask
    # removes them too (as `systemctl unmask` of that name would), so they cannot take effect
    # once the alias is gone.
    chain_masks: tuple[Entry, ...] = ()
    # Where systemd's loader goes on from `unit` by name: through an alias on the search path,
    # or (an instance with no file of its own, or only a link to its template) to the template,
    # and which entry it takes the unit from there (None: not found, or a loop).
    via: tuple[str, ...] = ()
    via_entry: Entry | None = None
    # The same once the unit's masks in /etc and /run are gone (what an unmask leaves): where
    # the loader goes on from the first entry left, and what it takes.
    beneath_via: tuple[str, ...] = ()
    beneath_entry: Entry | None = None
    live: LiveState | None = None
    instances: tuple[LiveState, ...] = ()  # for a template: instances systemd has loaded
    owned_instances: tuple[str, ...] = ()  # for a template: instances with files of their own
    # Files on the unit search path that PID 1 would block on (UnitTree.hazards), when the unit
    # would have to be loaded to ask systemd about it: masktool does not ask.
    hazards: tuple[str, ...] = ()
    dependents: tuple[DependentState, ...] = ()  # filled when observe() is asked for them

    # These run thousands of times in a pass over a large policy (plan, report): plain loops,
    # which cost a third of what next() over a generator does.
    def entry_in(self, dir_path: str) -> Entry | None:
        for e in self.entries:
            if e.dir.path == dir_path:
                return e
        return None

    @property
    def etc(self) -> Entry | None:
        return self.entry_in(ETC_DIR)

    @property
    def run(self) -> Entry | None:
        return self.entry_in(RUN_DIR)

    @property
    def own(self) -> Entry | None:
        """The unit's own entry the loader takes: the first one it does not skip."""
        for e in self.entries:
            if not e.skipped:
                return e
        return None

    @property
    def winner(self) -> Entry | None:
        """The entry systemd loads the unit from, found the way its loader finds it
        (unit_file_build_name_map and unit_ids_map_get in systemd 252): the first of the unit's
        own entries it does not skip; a link into the search path is resolved by the name it
        names, not by the file it reaches; an instance with no entry of its own goes to its
        template. Tried booted: with al.socket -> c.socket in /usr/lib and c.socket masked in
        /etc, al.socket is LoadState=masked; with t@.service masked and
        /etc/.../t@1.service -> /usr/lib/.../t@.service, t@1 is masked too (though
        `systemctl is-enabled` says enabled: masktool goes by LoadState)."""
        return self.via_entry if self.via else self.own

    @property
    def masked_elsewhere(self) -> bool:
        """The mask that wins belongs to another name (the template, or the unit an alias
        names): only changing that unit's files would change it."""
        w = self.winner
        return bool(self.via) and w is not None and w.kind == EntryKind.MASK

    @property
    def masked_by_template(self) -> bool:
        return self.masked_elsewhere and self.via[0] == template_of(self.unit) != self.unit

    @property
    def live_name(self) -> str:
        """The name systemd reports the unit under (its Id): the unit an alias on the search
        path resolves to; an instance keeps its own name."""
        w = self.winner
        if self.via and w is not None and not is_template(w.name):
            return w.name
        return self.unit

    @property
    def load_state_on_disk(self) -> str:
        """The LoadState systemd would give the unit from these files: "masked", "loaded",
        "not-found", or "bad" (LoadState=error or bad-setting: a link to a directory or a block
        device). "loaded" says only that a unit file is found, not that it parses."""
        w = self.winner
        if w is None and unit_type(self.unit) in ("slice", "device"):
            return "loaded"  # systemd loads these without a unit file (tried)
        if w is None or w.kind == EntryKind.DANGLING:
            return "not-found"
        if w.kind == EntryKind.MASK:
            return "masked"
        if w.kind == EntryKind.BAD_LINK:
            return "bad"
        return "loaded"

    @property
    def installed(self) -> bool:
        w = self.winner
        return w is not None and w.kind != EntryKind.MASK

    def mask_state(self) -> State:
        """How the unit is masked, if it is, judged by the winning entry."""
        w = self.winner
        if w is None or w.kind is not EntryKind.MASK:
            return State.UNMASKED
        scope = w.dir.scope
        if scope is Scope.PERSISTENT:
            return State.MASKED
        return State.MASKED_RUNTIME if scope is Scope.RUNTIME else State.MASKED_VENDOR

    def after_unmask(self) -> UnitObservation:
        """The unit as the loader would see it once its masks in /etc and /run are removed."""
        return replace(
            self,
            entries=tuple(e for e in self.entries if not _own_mask(e)),
            via=self.beneath_via,
            via_entry=self.beneath_entry,
            chain_masks=(),
        )

    @property
    def masked_here(self) -> bool:
        """Masked by a mask at the unit's own name (in any directory)."""
        return self.mask_state() != State.UNMASKED and not self.masked_elsewhere

    def conflict(self, runtime: bool) -> str | None:
        """What prevents masktool from masking this unit, or None."""
        etc = self.etc
        etc_mask = etc is not None and etc.kind == EntryKind.MASK
        if etc is not None and not etc_mask:
            if not runtime:
                return f"{etc.describe()}; masktool does not delete or overwrite it"
            if not etc.skipped:
                return f"{etc.describe()}, which beats a mask in {RUN_DIR}"
        where = ETC_DIR
        if runtime and not etc_mask:
            where = RUN_DIR
            run = self.run
            if run is not None and run.kind != EntryKind.MASK:
                return f"{run.describe()}; masktool does not delete or overwrite it"
        own = self.own
        if own is not None and own.kind != EntryKind.MASK and _outranks(own.dir, where):
            return f"{own.describe()}, which outranks a mask in {where}"
        return None

    def state_for(self, action: str, runtime: bool = False) -> State:
        if action == "mask" and self.conflict(runtime):
            return State.CONFLICT
        return self.mask_state()


def _own_mask(e: Entry) -> bool:
    return e.kind == EntryKind.MASK and e.dir.scope != Scope.VENDOR


# Each search directory's place in the search path (0 first).
_RANK = {s.path: i for i, s in enumerate(SEARCH_PATH)}


def _outranks(d: SearchDir, than: str) -> bool:
    return _RANK[d.path] < _RANK[than]


# -- the files --------------------------------------------------------------------------------


def _link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def classify(
    tree: Tree,
    d: SearchDir,
    name: str,
    real_dir: str | None = None,
    prefixes: tuple[str, ...] | None = None,
    *,
    hops: dict[str, tuple[str | None, str | None]] | None = None,
    listed_as_link: bool = False,
) -> Entry | None:
    """The entry for `name` in directory `d` of the tree, classified; None if there is none.

    `real_dir` is the directory's host path with links resolved inside the tree, `prefixes`
    the search path as the loader matches links against it (UnitTree works both out once).
    `hops` keeps, by absolute link target, its first hop and the unit name that hop names:
    neither depends on where the link is, and a thousand masks share the target /dev/null.
    `listed_as_link`: the directory listing says it is a link, so it is read as one at once
    (one system call, not two); what is no longer a link is looked at afresh."""
    if real_dir is None:
        real_dir = tree.real_dir(d.path)
        if real_dir is None:
            return None
    p = f"{real_dir}/{name}"
    # Replaced or gone since the listing: lstat says what it is now.
    target = _link_target(p) if listed_as_link else None
    if target is None:
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
        target = os.readlink(p)
    if prefixes is None:
        prefixes = search_prefixes(tree)
    inside = f"{d.path}/{name}"
    known = hops.get(target) if hops is not None else None
    if known is not None:
        hop, named = known
    else:
        hop = link_hop(tree, inside, target)
        named = alias_target(hop, prefixes) if hop is not None else None
        if hops is not None and target.startswith("/"):
            hops[target] = (hop, named)
    if hop is None:
        # systemd cannot resolve where it points and skips it.
        return Entry(d, name, EntryKind.DANGLING, target, ignored=True)
    if named is not None:
        # Into the search path: systemd resolves the link by the name it names (tried: with
        # /run/.../b.service -> /usr/lib/.../a.service and a.service masked in /etc, b.service
        # is masked, whatever /usr/lib/.../a.service holds).
        if named == name:
            return Entry(d, name, EntryKind.LINK, hop, ignored=True)
        if not alias_allowed(name, named):
            return Entry(d, name, EntryKind.BAD_LINK, hop, ignored=True)
        if is_instance(name) and named == template_of(name):
            # An instance linked to its own template's file (systemctl enable makes these):
            # the instance's own link, loaded from the template, never an alias to follow.
            return Entry(d, name, EntryKind.LINK, hop, alias_of=named)
        return Entry(d, name, EntryKind.ALIAS, hop, alias_of=named)
    final, exists, mask = resolve_link(tree, inside, target, prefixes)
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
    # What PID 1 cannot open is not-found, like a dangling link (tried): a socket, /dev/tty
    # (it has no controlling terminal), a file named with a trailing slash.
    if (
        stat.S_ISSOCK(tst.st_mode)
        or stat.S_ISCHR(tst.st_mode)
        or (target.endswith("/") and not stat.S_ISDIR(tst.st_mode))
    ):
        return Entry(d, name, EntryKind.DANGLING, final)
    if not stat.S_ISREG(tst.st_mode):
        return Entry(d, name, EntryKind.BAD_LINK, final)
    # Out of the search path to a unit file, whatever its name: a linked unit file, loaded
    # under the link's own name.
    return Entry(d, name, EntryKind.LINK, final)


# Where the manager reads its own configuration on daemon-reload (systemd-system.conf(5)).
MANAGER_CONF_DIRS = (
    "/etc/systemd/system.conf.d",
    "/run/systemd/system.conf.d",
    "/usr/local/lib/systemd/system.conf.d",
    "/usr/lib/systemd/system.conf.d",
    "/lib/systemd/system.conf.d",
)


def _maybe_fifo_entry(e: os.DirEntry[str]) -> bool:
    """From the directory listing's file type (no system call where the file system gives it):
    a link, or something that is neither a regular file nor a directory."""
    return e.is_symlink() or not (
        e.is_file(follow_symlinks=False) or e.is_dir(follow_symlinks=False)
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
        self.prefixes = search_prefixes(self.tree)
        self._entries: dict[str, tuple[Entry, ...]] = {}
        self._own: dict[str, Entry | None] = {}
        self._hops: dict[str, tuple[str | None, str | None]] = {}  # see classify()
        self._walks: dict[tuple[str, bool], tuple[tuple[str, ...], Entry | None, bool]] = {}
        self._aliases: dict[str, tuple[str, ...]] | None = None
        # Names with a link among their entries: only a link is an alias (classify), so only
        # these are classified to find aliases, not every unit on the search path.
        self._linked: set[str] = set()
        self._link_paths: set[str] = set()  # host paths of the links listed (see classify)
        # Host paths of entries that may be FIFOs or lead to one (links, and what the directory
        # listing does not say is a regular file or a directory): all that hazards() must look
        # at. The listing's file types come free; an lstat of every unit file does not.
        self._maybe_fifo: set[str] = set()
        self._plain_dev_null: bool | None = None
        seen: dict[tuple[int, int], str] = {}
        for d in SEARCH_PATH:
            real = self.tree.real_dir(d.path)
            if real is None:
                continue
            try:
                st = os.stat(real)
                with os.scandir(real) as listing:
                    found = list(listing)
            except OSError as e:
                self.problems.append(f"{self.tree.shown(d.path)}: {e.strerror}")
                continue
            names = frozenset(e.name for e in found)
            self._maybe_fifo.update(e.path for e in found if _maybe_fifo_entry(e))
            links = [e for e in found if e.is_symlink()]
            self._linked.update(e.name for e in links)
            self._link_paths.update(e.path for e in links)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                # /lib/systemd/system and /usr/lib/systemd/system on merged /usr: listed once.
                # Where masktool's own directory is a link to one listed before it (a
                # system.control linked to system), its entries are masktool's to change.
                if d.scope != Scope.VENDOR:
                    self.dirs = [(d if seen[key] == x[1] else x[0], x[1], x[2]) for x in self.dirs]
                continue
            seen[key] = real
            self.dirs.append((d, real, names))

    def entries(self, name: str) -> tuple[Entry, ...]:
        cached = self._entries.get(name)
        if cached is not None:
            return cached
        found = []
        for d, real, names in self.dirs:
            if name in names:
                e = classify(
                    self.tree,
                    d,
                    name,
                    real,
                    self.prefixes,
                    hops=self._hops,
                    listed_as_link=f"{real}/{name}" in self._link_paths,
                )
                if e is not None:
                    found.append(e)
        self._entries[name] = tuple(found)
        return self._entries[name]

    def own_entry(self, name: str) -> Entry | None:
        """The first of `name`'s entries the loader does not skip."""
        # Asked several times a unit while resolving it (observe_files): kept.
        try:
            return self._own[name]
        except KeyError:
            pass
        own = None
        for e in self.entries(name):
            if not e.skipped:
                own = e
                break
        self._own[name] = own
        return own

    def _first(self, name: str, without_own_masks: bool) -> Entry | None:
        if not without_own_masks:
            return self.own_entry(name)
        return next((e for e in self.entries(name) if not e.skipped and not _own_mask(e)), None)

    def _ids_map_get(
        self, name: str, without_own_masks: bool
    ) -> tuple[tuple[str, ...], Entry | None, bool]:
        """systemd's unit_ids_map_get(): follow `name` through alias names, at most FOLLOW_MAX
        look-ups; a name followed to that is missing goes to its template. Returns the names
        gone through, the entry found, and whether the walk ended at a loop (or too long a
        chain), rather than at a missing name. Kept: observe_files asks it thrice a unit."""
        key = (name, without_own_masks)
        found = self._walks.get(key)
        if found is None:
            found = self._walks[key] = self._walk(name, without_own_masks)
        return found

    def _walk(
        self, name: str, without_own_masks: bool
    ) -> tuple[tuple[str, ...], Entry | None, bool]:
        via: list[str] = []
        followed: str | None = None
        for _ in range(FOLLOW_MAX):
            key = followed or name
            e = self._first(key, without_own_masks and key == name)
            if e is None:
                if followed is None or not is_instance(followed):
                    return tuple(via), None, False
                key = template_of(followed)
                e = self.own_entry(key)
                if e is None:
                    return tuple(via), None, False
                via.append(key)
            if not e.alias_of:
                return tuple(via), e, False
            followed = e.alias_of
            via.append(followed)
        return tuple(via), None, True

    def resolve(
        self, name: str, without_own_masks: bool = False
    ) -> tuple[tuple[str, ...], Entry | None]:
        """How systemd's loader goes on from `name`'s own entries (unit_file_find_fragment()):
        the names it goes through (an alias, an instance's template) and the entry it takes
        the unit from; None when that is nothing, or a loop (LoadState=not-found, tried). An
        instance that leads nowhere by its own name is looked for as its template, afresh.
        `without_own_masks`: as if `name`'s masks in /etc and /run were gone."""
        via, e, loop = self._ids_map_get(name, without_own_masks)
        if e is None and not loop and is_instance(name):
            template = template_of(name)
            tvia, e, _ = self._ids_map_get(template, False)
            via = (template, *tvia)
        return via, e

    def aliases_of(self, unit: str) -> tuple[str, ...]:
        """Names that systemd resolves to `unit` through alias links on the search path (a
        dependent may name the unit by any of them)."""
        if self._aliases is None:
            found: dict[str, set[str]] = {}
            listed = {n for _, _, names in self.dirs for n in names}
            for n in sorted(listed & self._linked):
                own = self.own_entry(n)
                if own is None or own.kind != EntryKind.ALIAS:
                    continue
                via, e = self.resolve(n)
                if via and e is not None:
                    found.setdefault(via[-1], set()).add(n)
            self._aliases = {k: tuple(sorted(v)) for k, v in found.items()}
        return self._aliases.get(unit, ())

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
                path = f"{real}/{n}"
                if n.endswith(".d"):
                    found.extend(self._dropin_hazards(inside, path))
                elif (
                    path in self._maybe_fifo
                    and not self._dev_null_mask(d, n)
                    and _may_be_fifo(path)
                    and not self._mask_link(path)
                ):
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

    def _dev_null_mask(self, d: SearchDir, name: str) -> bool:
        """The entry at `name` in `d` is already classified (observe_files) as a mask that
        leads to /dev/null, and /dev/null is itself: nothing for _hazard to find there (it
        finds "" for /dev/null), and after an apply a thousand of them need not be read again."""
        for e in self._entries.get(name, ()):
            if e.dir is d:
                return e.kind is EntryKind.MASK and e.target == "/dev/null" and self._dev_null()
        return False

    def _dev_null(self) -> bool:
        """/dev/null in the tree is /dev/null itself, no link on the way."""
        if self._plain_dev_null is None:
            self._plain_dev_null = self.tree.chase("/dev/null") == ("/dev/null", True)
        return self._plain_dev_null

    def _mask_link(self, path: str) -> bool:
        """A link to /dev/null where /dev/null is itself (no link on the way): the common mask,
        which _hazard would find harmless by following it component by component."""
        try:
            if os.readlink(path) != "/dev/null":
                return False
        except OSError:
            return False
        return self._dev_null()

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
        # Follow an alias (a link into the search path to another name) to the unit it names
        # only when the alias link sits in /etc/systemd/system and wins, where the mask would
        # have to go: systemd refuses to mask that name (UnitExists). An alias shipped in /usr
        # or /lib is not followed: a mask in /etc outranks it and masks just that name, which is
        # what `systemctl mask ctrl-alt-del.target` does (reboot.target stays loaded). A rule
        # about an instance is never carried to a template.
        # Only when systemd gets to a unit through the alias: not at a loop, too long a chain,
        # or a name that leads nowhere (an instance then falls back to its own template): the
        # rule would land on a unit the name does not load.
        resolvable = self._ids_map_get(name, False)[1] is not None
        while resolvable and len(chain) < FOLLOW_MAX:
            own = self.own_entry(name)
            if (
                own is None
                or own.kind != EntryKind.ALIAS
                or own.dir.path != ETC_DIR
                or (is_instance(name) and is_template(own.alias_of))
            ):
                break
            chain.append(name)
            name = own.alias_of
        chain_masks = tuple(
            e
            for n in chain
            for e in self.entries(n)
            if e.dir.path == RUN_DIR and e.kind == EntryKind.MASK
        )
        via, via_entry = self.resolve(name)
        beneath_via, beneath_entry = self.resolve(name, without_own_masks=True)
        owned: tuple[str, ...] = ()
        if is_template(name):
            prefix, suffix = name.split("@", 1)
            owned = tuple(
                sorted(
                    n
                    for n in self.names_matching(prefix + "@", suffix)
                    if n != name and self._owns_file(n, name)
                )
            )
        return UnitObservation(
            name=policy_name,
            unit=name,
            entries=self.entries(name),
            alias_chain=tuple(chain),
            chain_masks=chain_masks,
            via=via,
            via_entry=via_entry,
            beneath_via=beneath_via,
            beneath_entry=beneath_entry,
            owned_instances=owned,
        )

    def _owns_file(self, instance: str, template: str) -> bool:
        """Whether an instance has a file of its own, which its template's mask does not
        cover (a mask of its own masks it anyway)."""
        e = self.own_entry(instance)
        return e is not None and e.kind != EntryKind.MASK and e.alias_of != template


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
    if deps is not None:
        # Every name a dependent may use for a unit asked about, announced at once: the unit
        # files that could name one are parsed in one pass (DependencyIndex.want).
        deps.want(
            x
            for n, o in obs.items()
            if deps_of_masked or n in deps_for or _may_mask(o)
            for x in (o.unit, *o.alias_chain, *tree.aliases_of(o.unit))
        )
    if systemd is None:
        if deps is not None:
            obs = {
                n: replace(o, dependents=_dependents(o, deps, None, {}, tree.aliases_of(o.unit)))
                if deps_of_masked or n in deps_for or _may_mask(o)
                else o
                for n, o in obs.items()
            }
        return obs
    in_memory = {s.name: s for s in systemd.list_units()}
    wanted = set(query)
    live_names = {n: o.live_name for n, o in obs.items()}  # each worked out once, not thrice
    ask = sorted(
        {
            live_names[n]
            for n, o in obs.items()
            if not is_template(o.unit)
            and live_names[n] not in in_memory
            and (o.mask_state() != State.UNMASKED or o.unit in wanted or o.name in wanted)
        }
    )
    live = dict(in_memory)
    hazards = tree.hazards() if ask else ()
    if hazards:
        obs = {
            n: replace(o, hazards=hazards) if live_names[n] in ask else o for n, o in obs.items()
        }
    elif ask:
        # One row per name asked, in order, each under the unit's Id: an alias name that
        # systemd still holds for the unit it names comes back as that unit.
        rows = systemd.list_units_by_names(ask)
        live.update((s.name, s) for s in rows)
        if len(rows) == len(ask):
            live.update(zip(ask, rows, strict=True))
    out: dict[str, UnitObservation] = {}
    # One copy a unit, with all it learnt: a thousand units in a pass.
    for n, o in obs.items():
        dependents = o.dependents
        if deps is not None and (deps_of_masked or n in deps_for or _may_mask(o)):
            dependents = _dependents(o, deps, systemd, in_memory, tree.aliases_of(o.unit))
        if is_template(o.unit):
            # A template alias (al@.service -> t@.service) not masked yet: systemd gives every
            # instance of t@ the name al@INSTANCE too; they are reported with it.
            w = o.winner
            also = w.name if o.via and w is not None and is_template(w.name) else o.unit
            mine = tuple(
                s
                for s in in_memory.values()
                if template_of(s.name) in (o.unit, also) and not is_template(s.name)
            )
            out[n] = _learnt(o, o.live, mine, dependents)
        else:
            # systemd reports a unit under its Id: an alias's state is the unit it names.
            out[n] = _learnt(o, live.get(live_names[n]), o.instances, dependents)
    return out


def _learnt(
    o: UnitObservation,
    live: LiveState | None,
    instances: tuple[LiveState, ...],
    dependents: tuple[DependentState, ...],
) -> UnitObservation:
    """replace(o, live=live, instances=instances, dependents=dependents), at a fifth of the cost
    (it runs for every unit of a pass, twice in an apply): UnitObservation is a frozen
    dataclass whose __init__ only sets its fields (no __post_init__, every field in __init__),
    so a copy of its fields with these three set is what replace() would build."""
    new = object.__new__(UnitObservation)
    fields = new.__dict__
    fields.update(o.__dict__)
    fields["live"] = live
    fields["instances"] = instances
    fields["dependents"] = dependents
    return new


def _may_mask(o: UnitObservation) -> bool:
    """Whether a mask rule could still have to write a mask (and so must weigh dependents)."""
    etc = o.etc
    return etc is None or etc.kind != EntryKind.MASK


def _dependents(
    o: UnitObservation,
    index: DependencyIndex,
    systemd: SystemdReader | None,
    in_memory: dict[str, LiveState],
    aliases: tuple[str, ...] = (),
) -> tuple[DependentState, ...]:
    # A dependent may name the unit by any alias: `Requires=vb.service` fails as surely as
    # `Requires=b.service` once b.service is masked.
    names = dict.fromkeys((o.unit, *o.alias_chain, *aliases))
    found = [d for n in names for d in index.dependents(n)]
    live = in_memory.get(o.unit)
    if systemd is not None and live is not None and live.running and _may_mask(o):
        # Only systemd knows implicit dependencies, but asking costs ~1.5 ms a unit: ask about
        # running units a mask may still be written for. A running hard dependent of an
        # inactive unit cannot exist (Requires=, BindsTo= and Requisite= hold it to it), and
        # enabled ones are found in the files.
        found = merge(found, systemd.reverse_dependencies(o.unit))
    states = []
    for d in found:
        if d.dependent in names:
            continue
        live = in_memory.get(d.dependent)
        active = None if systemd is None else (live is not None and live.running)
        states.append(DependentState(d, active, index.enabled(d.dependent)))
    return tuple(states)

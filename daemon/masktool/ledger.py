"""What masktool did to a host, kept so that it can be undone (`masktool release`).

Every mask masktool writes (by its own hand or through PID 1) is recorded with the inode the
link has once written: a mask is masktool's to remove only while that very link is there, so
one an admin made, before or since, is never taken. Every file moved aside by `force: true` is
recorded with where its copy went. A mask masktool removes itself (an unmask rule, a release)
leaves the ledger.

The ledger lives in /var/lib/masktool/ledger.json (inside the tree with --root), written
whole, atomically. It is written under the apply lock, by
apply and by the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masktool.backend import Change
from masktool.files import DISPLACED_DIR
from masktool.lock import tree_lock as _tree_lock
from masktool.tree import Tree
from masktool.units import ETC_DIR, RUN_DIR, unit_name_error

LEDGER = "/var/lib/masktool/ledger.json"
FORMAT = 1
MAX_SIZE = 64 << 20


class LedgerError(Exception):
    """The ledger cannot be read (damaged, not a file masktool wrote)."""


@dataclass(frozen=True)
class MaskRecord:
    """The very link masktool wrote. An inode number alone is no identity: a file system may
    give the next file the number just freed (ext4 does), and /run counts afresh each boot.
    The inode's change time, to the nanosecond, is set when the link is made; with the number
    it tells masktool's link from an admin's made in its place. (The device number is kept
    for the record only: it changes when the same file system is mounted another way.)"""

    unit: str
    path: str  # inside the tree: /etc/systemd/system/UNIT or /run/systemd/system/UNIT
    dev: int
    ino: int
    at: str  # when written, UTC
    rule: str  # file:line of the rule it was written for
    trigger_of: str = ""  # written for an activator of this unit (with_triggers)
    ctime_ns: int = -1  # the link's change time when written (-1: unknown, never matches)
    boot: str = ""  # for a mask in the running system's /run: the boot it was written in


@dataclass(frozen=True)
class DisplacedRecord:
    unit: str
    path: str  # where the file was, inside the tree
    copy: str  # where its copy is, inside the tree
    at: str


@dataclass
class Ledger:
    masks: dict[str, MaskRecord]  # by path
    displaced: list[DisplacedRecord]
    # Units whose masks masktool removed for an unmask rule (unit -> when): masked again,
    # they are drift it puts back. Nothing to release.
    unmasked: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def empty() -> Ledger:
        return Ledger({}, [])

    def dumps(self) -> str:
        # One record a line (grep and diff read it), each by the C encoder: a thousand masks
        # in a millisecond or two (asdict() and indent= took 25 ms, in every apply).
        masks = [
            {
                "unit": m.unit,
                "path": m.path,
                "dev": m.dev,
                "ino": m.ino,
                "at": m.at,
                "rule": m.rule,
                "trigger_of": m.trigger_of,
                "ctime_ns": m.ctime_ns,
                "boot": m.boot,
            }
            for m in sorted(self.masks.values(), key=lambda m: m.path)
        ]
        moved = [
            {"unit": d.unit, "path": d.path, "copy": d.copy, "at": d.at} for d in self.displaced
        ]
        unmasked = [{"unit": u, "at": at} for u, at in sorted(self.unmasked.items())]
        return (
            f'{{"format": {FORMAT},\n"masks": [\n'
            + ",\n".join(json.dumps(m) for m in masks)
            + '\n],\n"displaced": [\n'
            + ",\n".join(json.dumps(d) for d in moved)
            + '\n],\n"unmasked": [\n'
            + ",\n".join(json.dumps(u) for u in unmasked)
            + "\n]}\n"
        )

    def note(
        self,
        changes: Iterable[Change],
        tree: Tree,
        rules: Mapping[str, tuple[str, str]],
    ) -> bool:
        """Record what `changes` did; `rules`: unit -> (its rule's file:line, trigger_of).
        Returns whether anything changed."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = False
        for c in changes:
            if c.what in ("mask", "mask-runtime") and c.effect == "created" and c.path:
                st = mask_stat(tree, c.path)
                if st is None:
                    continue  # gone, or not a mask, already: nothing of masktool's is there
                rule, trigger_of = rules.get(c.unit, ("", ""))
                self.masks[c.path] = MaskRecord(
                    c.unit,
                    c.path,
                    st.st_dev,
                    st.st_ino,
                    stamp,
                    rule,
                    trigger_of,
                    st.st_ctime_ns,
                    boot_of(tree, c.path),
                )
                self.unmasked.pop(c.unit, None)
                changed = True
            elif c.what == "unmask" and c.path:
                self.masks.pop(c.path, None)
                self.unmasked[c.unit] = stamp
                changed = True
            elif c.what == "displace" and c.path and c.displaced:
                self.displaced.append(DisplacedRecord(c.unit, c.path, c.displaced, stamp))
                changed = True
        return changed


def mask_stat(tree: Tree, inside: str) -> os.stat_result | None:
    """The link or empty file at `inside` (its directory resolved inside the tree), if it is
    one."""
    directory, name = os.path.split(inside)
    real = tree.real_dir(directory)
    if real is None:
        return None
    try:
        st = os.lstat(f"{real}/{name}")
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size == 0):
        return st
    return None


def boot_of(tree: Tree, inside: str) -> str:
    """The boot a mask in the running system's /run belongs to ("" for any other)."""
    if not (tree.is_host and inside.startswith(RUN_DIR + "/")):
        return ""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def is_masktools(rec: MaskRecord, st: os.stat_result, tree: Tree) -> bool:
    """Whether the link `st` is the one `rec` records."""
    if rec.boot and rec.boot != boot_of(tree, rec.path):
        return False  # /run of another boot: that link is long gone
    return (st.st_ino, st.st_ctime_ns) == (rec.ino, rec.ctime_ns)


def load(tree: Tree) -> Ledger:
    """The tree's ledger; empty when there is none. LedgerError when it cannot be used.
    Read through the tree (with --root nothing outside it), never following a link at the
    ledger's own name."""
    directory, name = os.path.split(LEDGER)
    try:
        dfd = tree.open_dir(directory)
    except FileNotFoundError:
        return Ledger.empty()
    except OSError as e:
        raise LedgerError(f"{tree.shown(directory)}: {e.strerror}") from None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return Ledger.empty()
    except OSError as e:
        raise LedgerError(f"{tree.shown(LEDGER)}: {e.strerror}") from None
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise LedgerError(f"{tree.shown(LEDGER)}: not a file masktool wrote (type or owner)")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise LedgerError(f"{tree.shown(LEDGER)}: larger than any ledger masktool writes")
    try:
        return _parse(json.loads(data))
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise LedgerError(f"{tree.shown(LEDGER)}: damaged ({type(e).__name__}: {e})") from None


def _parse(doc: Any) -> Ledger:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not format {FORMAT}")
    masks: dict[str, MaskRecord] = {}
    for m in doc["masks"]:
        rec = MaskRecord(
            unit=_str(m["unit"]),
            path=_str(m["path"]),
            dev=_int(m["dev"]),
            ino=_int(m["ino"]),
            at=_str(m["at"]),
            rule=_str(m["rule"]),
            trigger_of=_str(m.get("trigger_of", "")),
            ctime_ns=_int(m.get("ctime_ns", -1)),
            boot=_str(m.get("boot", "")),
        )
        _unit_path(rec.path, rec.unit)
        masks[rec.path] = rec
    displaced = []
    for d in doc["displaced"]:
        rec2 = DisplacedRecord(_str(d["unit"]), _str(d["path"]), _str(d["copy"]), _str(d["at"]))
        _unit_path(rec2.path, rec2.unit)
        # Only a copy in masktool's own directory is put back (and then removed).
        if not rec2.copy.startswith(DISPLACED_DIR + "/") or _odd_path(rec2.copy):
            raise ValueError(f"{rec2.copy!r} is not a copy in {DISPLACED_DIR}")
        displaced.append(rec2)
    unmasked = {_str(u["unit"]): _str(u["at"]) for u in doc.get("unmasked", [])}
    return Ledger(masks, displaced, unmasked)


def _odd_path(p: str) -> bool:
    return "\0" in p or os.path.normpath(p) != p or not p.startswith("/")


def _unit_path(p: str, unit: str) -> None:
    """A record's path must be the unit's name in /etc/systemd/system or /run/systemd/system:
    a ledger edited by hand makes release remove or write nothing else."""
    directory, name = os.path.split(p)
    if _odd_path(p) or directory not in (ETC_DIR, RUN_DIR) or name != unit:
        raise ValueError(f"{p!r} is not the unit {unit!r} in {ETC_DIR} or {RUN_DIR}")
    if unit_name_error(unit) is not None:
        raise ValueError(f"{unit!r} is not a unit name")
    unit.encode()  # a lone surrogate (JSON \ud800) names no file: UnicodeEncodeError, a ValueError


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{v!r} is not a string")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{v!r} is not an integer")
    return v


def save(ledger: Ledger, tree: Tree) -> None:
    """Write aside, fsync, rename over: the ledger is whole, old or new, after a crash."""
    directory, name = os.path.split(LEDGER)
    tmp = f".{name}.{os.getpid()}.tmp"
    with tree.dir(directory, create=True) as dfd:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(ledger.dumps())
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)


def record(
    changes: Iterable[Change],
    tree: Tree,
    rules: Mapping[str, tuple[str, str]],
    loaded: Ledger | None = None,
) -> str | None:
    """Note `changes` in the tree's ledger (`loaded`: as read just before the changes, under
    the same apply lock). Returns why it could not be written, if it could not (the changes
    are made: the caller says so, and goes on)."""
    changes = list(changes)
    if not any(c.what in ("mask", "mask-runtime", "unmask", "displace") for c in changes):
        return None
    try:
        ledger = loaded if loaded is not None else load(tree)
        if ledger.note(changes, tree, rules):
            save(ledger, tree)
    except (OSError, LedgerError) as e:
        text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return (
            f"cannot record in {tree.shown(LEDGER)} what masktool changed ({text}); "
            "`masktool release` will not know of it"
        )
    return None


def load_quietly(tree: Tree) -> Ledger | None:
    """The ledger, or None when it cannot be read (record() then says why)."""
    try:
        return load(tree)
    except (OSError, LedgerError):
        return None


def acted_before(tree: Tree, loaded: Ledger | None = None) -> set[str]:
    """Units masktool masked or unmasked before, on record: changing one again puts back
    drift (a journal "restore"). Empty when the ledger cannot be read (entries then say
    "mask" or "unmask")."""
    led = loaded if loaded is not None else load_quietly(tree)
    if led is None:
        return set()
    return {m.unit for m in led.masks.values()} | set(led.unmasked)


def tree_lock(tree: Tree) -> contextlib.AbstractContextManager[None]:
    """One apply or release at a time on a tree given with --root (the running system has
    /run/masktool/apply.lock): the lock file is beside the ledger, inside the tree."""
    return _tree_lock(tree, os.path.split(LEDGER)[0])

"""Backends carry out a plan: `live` through systemd over D-Bus, `offline` on a --root tree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from masktool.files import Displaced, NotAMaskError, displace, remove_mask
from masktool.observe import EntryKind
from masktool.tree import Tree
from masktool.units import ETC_SEARCH_DIR, RUN_DIR, RUN_SEARCH_DIR

if TYPE_CHECKING:
    from masktool.plan import UnitPlan


ChangeKind = Literal["mask", "mask-runtime", "unmask", "enable", "displace", "reload", "stop"]
# What happened to the entry at Change.path: the daemon awaits the inotify event it causes.
Effect = Literal["created", "deleted", ""]


@dataclass(frozen=True)
class Change:
    unit: str
    what: ChangeKind
    detail: str = ""
    path: str = ""  # the file written or removed, when there is one
    displaced: str = ""  # where a displaced file's copy is
    effect: Effect = ""
    note: str = ""  # what the move could not keep (an owner, extended attributes, hard links)


@dataclass
class ApplyResult:
    changes: list[Change] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (unit or "", message)
    reloads: int = 0

    def error(self, unit: str, message: str) -> None:
        self.errors.append((unit, message))


def displace_change(unit: str, src: str, copy: str, note: str) -> Change:
    detail = f"{src} -> {copy}" + (f" ({note})" if note else "")
    return Change(unit, "displace", detail, src, displaced=copy, effect="deleted", note=note)


def remove_masks(tree: Tree, u: UnitPlan, res: ApplyResult) -> None:
    """Remove the unit's masks in /etc and /run that observe found, as `systemctl unmask`
    does, each only if it is still a settled mask (masktool.files). What else sits in one of
    the two directories is not masktool's to remove, and does not keep the other's mask."""
    for entry in (u.obs.etc, u.obs.run, *u.obs.chain_masks):
        if entry is None or entry.kind != EntryKind.MASK or entry.writing:
            continue
        d, path, name = entry.dir, entry.path, entry.name
        try:
            if remove_mask(tree, d, name):
                res.changes.append(
                    Change(name, "unmask", f"removed {path}", path, effect="deleted")
                )
        except (OSError, NotAMaskError) as e:
            res.error(name, f"unmask: {e}")


def displace_entry(tree: Tree, path: str, unit: str, stamp: str) -> Displaced:
    """Carry out a DISPLACE action: `path` is the unit's entry in /etc or (for a runtime rule)
    in /run. What comes from /run is kept apart (STAMP-run/UNIT): one rule may move both."""
    if path.startswith(RUN_DIR + "/"):
        return displace(tree, RUN_SEARCH_DIR, unit, f"{stamp}-run")
    return displace(tree, ETC_SEARCH_DIR, unit, stamp)


def hazard_error(what: str, hazards: Sequence[str]) -> str:
    """Why `what` was not asked of systemd: files it would block on (UnitTree.hazards)."""
    one = len(hazards) == 1
    return (
        f"{what} not done: systemd would read {', '.join(hazards)} and stop answering; "
        f"remove or fix {'it' if one else 'them'}"
    )

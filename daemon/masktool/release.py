"""`masktool release`: undo what masktool did, as its ledger records it.

Only masks masktool wrote are removed, each only while it is the very link masktool wrote (an
admin's mask, made before or since, is never taken); files masktool moved aside go back where
their place is free. Units the running daemon still enforces are refused, by name: it would
mask them again at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from masktool.files import NotAMaskError, PlaceTakenError, put_back, remove_recorded_mask
from masktool.ledger import DisplacedRecord, Ledger, MaskRecord, is_masktools
from masktool.tree import Tree


@dataclass
class Released:
    masks: list[MaskRecord] = field(default_factory=list)  # removed
    put_back: list[DisplacedRecord] = field(default_factory=list)  # files moved back
    gone: list[MaskRecord] = field(default_factory=list)  # removed by someone else already
    kept: list[tuple[str, str]] = field(default_factory=list)  # (unit, why): not masktool's
    refused: list[tuple[str, str]] = field(default_factory=list)  # (unit, why): enforced
    unknown: list[str] = field(default_factory=list)  # named, but nothing of masktool's

    changed: bool = False  # the ledger was changed: save it

    @property
    def complete(self) -> bool:
        return not (self.kept or self.refused or self.unknown)


def release(
    tree: Tree,
    ledger: Ledger,
    units: Sequence[str] = (),
    enforced: Mapping[str, str] | None = None,
    triggering: Mapping[str, str] | None = None,
) -> Released:
    """Undo the ledger's records for `units` (all when empty), updating `ledger` to match.
    `enforced`: unit -> what to change so that the running daemon no longer masks it;
    `triggering`: the same for rules that mask the unit's activators too (with_triggers)."""
    enforced = enforced or {}
    triggering = triggering or {}
    wanted = set(units)
    out = Released()
    masks = [m for m in ledger.masks.values() if not wanted or m.unit in wanted]
    moved = [d for d in ledger.displaced if not wanted or d.unit in wanted]
    out.unknown = sorted(wanted - {m.unit for m in masks} - {d.unit for d in moved})
    refused: set[str] = set()
    for m in masks:
        advice = enforced.get(m.unit) or triggering.get(m.trigger_of)
        if advice is not None:
            refused.add(m.unit)
            by = f" (an activator of {m.trigger_of})" if m.unit not in enforced else ""
            out.refused.append(
                (
                    m.unit,
                    f"the running daemon enforces it{by}: {advice}, then `systemctl reload "
                    "masktool` (or stop masktool.service) first",
                )
            )
            continue
        try:
            removed = remove_recorded_mask(tree, m.path, partial(is_masktools, m, tree=tree))
        except NotAMaskError as e:
            out.kept.append((m.unit, str(e)))
            # Not masktool's any more: the ledger forgets it rather than take it later.
            del ledger.masks[m.path]
            out.changed = True
            continue
        except OSError as e:
            # A read-only mount, say: still masktool's, released when it can be.
            out.kept.append((m.unit, f"cannot remove {tree.shown(m.path)}: {e}; try again"))
            continue
        (out.masks if removed else out.gone).append(m)
        del ledger.masks[m.path]
        out.changed = True
    for d in moved:
        if d.unit in refused:
            continue  # its mask stays, and so does the place
        try:
            put_back(tree, d.copy, d.path)
        except PlaceTakenError as e:
            out.kept.append((d.unit, str(e)))
            continue
        except FileNotFoundError:
            out.kept.append((d.unit, f"{tree.shown(d.copy)} is gone; nothing to put back"))
            ledger.displaced.remove(d)
            out.changed = True
            continue
        except (OSError, NotAMaskError) as e:
            out.kept.append((d.unit, f"cannot put {tree.shown(d.copy)} back: {e}"))
            continue
        out.put_back.append(d)
        ledger.displaced.remove(d)
        out.changed = True
    return out


def text(r: Released, tree: Tree) -> str:
    lines = []
    for m in r.masks:
        lines.append(
            f"released {m.unit}: removed {tree.shown(m.path)} (masktool wrote it at {m.at} for "
            f"the rule at {m.rule or 'unknown'})"
        )
    for d in r.put_back:
        lines.append(f"put back {tree.shown(d.path)} (moved aside at {d.at})")
    for m in r.gone:
        lines.append(f"released {m.unit}: {tree.shown(m.path)} was removed already")
    for unit, why in r.refused:
        lines.append(f"refused {unit}: {why}")
    for unit, why in r.kept:
        lines.append(f"kept {unit}: {why}")
    for unit in r.unknown:
        lines.append(f"unknown {unit}: masktool made no mask of it and moved no file of it")
    if not lines:
        lines.append("nothing to release: masktool's ledger records no mask and no moved file")
    return "\n".join(lines)

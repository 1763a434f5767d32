"""Generated unit trees (Hypothesis), for the differential test against `systemctl --root`
(tests/unit/test_differential.py, fuzz/) and its booted sample
(tests/integration/test_differential_booted.py).

A tree holds a few unit names, each with something or nothing in each directory of the search
path: unit files, masks of several shapes, empty files, links to the unit's own name further
down, links to a template, aliases (valid and not), dangling links; a unit that Requires= one
of them and is enabled; and a policy of a few rules over the names (mask with runtime and force,
unmask with enable).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

VENDOR = "usr/lib/systemd/system"
LOCAL = "usr/local/lib/systemd/system"
ETC, RUN = "etc/systemd/system", "run/systemd/system"
# Directories systemd itself fills: generators write into these on every daemon-reload, and
# PID 1 owns the transient one, so a booted tree leaves them empty.
TRANSIENT, EARLY, GENERATOR = (
    "run/systemd/transient",
    "run/systemd/generator.early",
    "run/systemd/generator",
)
DIRS = (TRANSIENT, EARLY, ETC, RUN, GENERATOR, LOCAL, VENDOR)
OWN_DIRS = (ETC, RUN)

UNIT = (
    "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)
SOCKET = "[Socket]\nListenStream=/run/masktool-test-{}.sock\n[Install]\nWantedBy=sockets.target\n"
NAMES = (
    "a.service",
    "b.service",
    "c.socket",
    "al.socket",
    "t@.service",
    "t@1.service",
    "al@.service",
)
DEPENDENT = "dep.service"

Layout = dict[str, dict[str, tuple[str, str]]]

# What may sit at a name in a directory: (kind, argument). "none" is weighted so that trees
# stay small enough to read in a failure report.
_VENDOR_KINDS = [
    ("none", ""),
    ("none", ""),
    ("file", ""),
    ("mask", "/dev/null"),
    ("alias", "a.service"),
    ("alias", "c.socket"),
    ("alias", "t@.service"),
]
_SYSTEMD_KINDS = [("none", "")] * 6 + [("file", ""), ("mask", "/dev/null")]
_LOCAL_KINDS = [
    ("none", ""),
    ("none", ""),
    ("none", ""),
    ("mask", "/dev/null"),
    ("mask", "/dev/zero"),
    ("mask", "../../../dev/null"),
    ("empty", ""),
    ("file", ""),
    ("link", "/usr/lib/systemd/system/{name}"),
    ("link", "/usr/lib/systemd/system/{t}"),
    ("alias", "a.service"),
    ("alias", "c.socket"),
    ("alias", "t@.service"),
    ("dangling", "/nowhere/{name}"),
]


@dataclass(frozen=True)
class Rule:
    unit: str
    action: str
    runtime: bool = False
    force: bool = False
    enable: bool = False


@dataclass(frozen=True)
class Example:
    layout: Layout
    requires: str  # the name dep.service Requires= (enabled), or ""
    rules: tuple[Rule, ...]


@st.composite
def examples(draw: st.DrawFn, booted: bool = False) -> Example:
    layout: Layout = {}
    for d in DIRS:
        if d in (TRANSIENT, EARLY, GENERATOR):
            kinds = [("none", "")] if booted else _SYSTEMD_KINDS
        elif d in OWN_DIRS:
            kinds = _LOCAL_KINDS
        else:
            kinds = _VENDOR_KINDS
        layout[d] = {n: draw(st.sampled_from(kinds)) for n in NAMES}
    requires = draw(st.sampled_from(["", "", "a.service", "c.socket", "t@1.service"]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    rules = []
    for n in names:
        if draw(st.booleans()):
            rules.append(Rule(n, "mask", runtime=draw(st.booleans()), force=draw(st.booleans())))
        else:
            rules.append(Rule(n, "unmask", enable=draw(st.booleans())))
    return Example(layout, requires, tuple(rules))


def build(top: Path, ex: Example, prefix: str = "") -> None:
    """Make the example's tree under `top`, every unit name given `prefix` (so that several
    examples can share one booted systemd)."""

    def named(n: str) -> str:
        return prefix + n

    for d, entries in ex.layout.items():
        base = top / d
        base.mkdir(parents=True, exist_ok=True)
        for name, (kind, arg) in entries.items():
            p = base / named(name)
            arg = arg.format(name=named(name), t=named("t@.service"))
            if kind == "file":
                p.write_text(SOCKET.format(p.name) if name.endswith(".socket") else UNIT)
            elif kind == "empty":
                p.write_text("")
            elif kind in ("mask", "link", "dangling"):
                p.symlink_to(arg)
            elif kind == "alias" and arg != name:
                # Into the search path by name: relative in a vendor directory (as packages
                # ship them), absolute into /usr/lib elsewhere. systemd rejects some (another
                # type, a template to a plain name, ...): the tree holds them anyway.
                to = named(arg)
                p.symlink_to(to if d in (VENDOR, LOCAL) else f"/{VENDOR}/{to}")
    if ex.requires:
        (top / VENDOR / named(DEPENDENT)).write_text(
            f"[Unit]\nRequires={named(ex.requires)}\nAfter={named(ex.requires)}\n"
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
        )
        wants = top / ETC / "multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / named(DEPENDENT)).symlink_to(f"/{VENDOR}/{named(DEPENDENT)}")


def policy_text(rules: tuple[Rule, ...], prefix: str = "") -> str:
    lines = ["version: 1"]
    for action in ("mask", "unmask"):
        chosen = [r for r in rules if r.action == action]
        if chosen:
            lines.append(f"{action}:")
            for r in chosen:
                lines.append(f"  - unit: {prefix}{r.unit}")
                if action == "mask":
                    lines.append(f"    runtime: {'true' if r.runtime else 'false'}")
                    lines.append(f"    force: {'true' if r.force else 'false'}")
                else:
                    lines.append(f"    enable: {'true' if r.enable else 'false'}")
    return "\n".join(lines) + "\n"


def snapshot(top: Path) -> dict[str, str]:
    """What /etc/systemd/system and /run/systemd/system hold, one level of .wants deep."""
    out = {}
    for d in OWN_DIRS:
        base = top / d
        if not base.is_dir():
            continue
        for p in sorted(base.iterdir()):
            s = p.lstat()
            key = f"{d}/{p.name}"
            if stat.S_ISLNK(s.st_mode):
                out[key] = "-> " + os.readlink(p)
            elif stat.S_ISREG(s.st_mode):
                out[key] = f"file {s.st_size}"
            elif stat.S_ISDIR(s.st_mode) and p.name.endswith(".wants"):
                for q in sorted(p.iterdir()):
                    out[f"{key}/{q.name}"] = "-> " + os.readlink(q) if q.is_symlink() else "?"
            else:
                out[key] = "other"
    return out


def shown(ex: Example) -> str:
    """The example without its empty places, for a failure report."""
    placed = {
        f"{d}/{n}": f"{k} {a}".strip()
        for d, entries in ex.layout.items()
        for n, (k, a) in entries.items()
        if k != "none"
    }
    return f"tree {placed}, dep.service Requires={ex.requires or '-'}, rules {list(ex.rules)}"

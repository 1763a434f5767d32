"""masktool apply --root against systemctl --root, on generated unit trees (tests/trees.py).

Each example builds one small unit tree and one policy, then:

1. applies the policy with `masktool apply --root` to one copy of the tree, and with
   `systemctl --root mask|unmask [--runtime] [--force]` (and `enable`) one rule at a time to
   another;
2. compares what each left in /etc/systemd/system and /run/systemd/system;
3. asks `systemctl --root is-enabled` about every unit masktool called compliant.

Every difference must be one the README lists under "masktool and systemctl --root", each
explained below where it is recognised. `make test` runs a fixed number of examples; `make fuzz`
runs thousands (HYPOTHESIS_PROFILE=long). tests/integration/test_differential_booted.py boots a
sample of the same trees and holds masktool's states against systemd's LoadState.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from masktool.units import alias_allowed
from tests.trees import ETC, RUN, Example, Rule, build, examples, policy_text, shown, snapshot

MASKTOOL = str(Path(sys.executable).parent / "masktool")
# Masks of other shapes than a link to /dev/null that the generator makes.
OTHER_MASKS = ("-> /dev/zero", "-> ../../../dev/null", "file 0")

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("MASKTOOL_DIFF_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is not a lottery; make fuzz explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long", parent=settings.get_profile("default"), max_examples=3000, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _systemctl(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemctl", f"--root={top}", *args], capture_output=True, text=True, check=False
    )


def _deliberate(rule: Rule, stderr: str, unit: dict[str, Any] | None) -> bool:
    """A systemctl failure that masktool answers differently on purpose (README: "masktool and
    systemctl --root")."""
    if unit is None:
        return False
    # systemctl unmask removes the mask, then scans the unit directories for links to clean
    # up and fails on another unit's link it will not touch ("refusing to operate on linked
    # unit file" of another name). masktool touches only the rule's unit's files.
    if (
        rule.action == "unmask"
        and "Removed" in stderr
        and "refusing to operate on linked unit file" in stderr
        and f"/{rule.unit}." not in stderr.split("refusing to operate", 1)[1]
    ):
        return True
    # The name's own entry is a mask of another shape (an alias name's, when the rule follows
    # the alias to its unit): a mask all the same.
    if (
        rule.action == "mask"
        and any(f'is a symlink to "{t}"' in stderr for t in ("/dev/zero", "../../../dev/null"))
        and bool(unit["compliant"])
    ):
        return True
    # A mask of another shape (a link to /dev/zero, a relative or chained link, an empty file)
    # is a mask: systemctl mask refuses to replace it ("already exists"), masktool accepts it.
    return (
        rule.action == "mask"
        and "already exists" in stderr
        and any(
            e["kind"] == "mask" and e["path"].startswith(("/etc/", "/run/"))
            for e in unit["entries"]
        )
        and bool(unit["compliant"])
    )


def _refused_on_purpose(rule: Rule, unit: dict[str, Any] | None) -> bool:
    """Refusals masktool makes where systemctl --root goes ahead (or does nothing, silently)."""
    if unit is None:
        return False
    refusal = str(unit["refusal"])
    # A runtime mask behind an /etc entry that is not a mask (a unit file, a link, a dangling
    # link) would not take effect: the /etc entry wins. systemctl --runtime mask writes it
    # anyway; masktool refuses it as a conflict.
    runtime_behind_etc = (
        rule.action == "mask"
        and rule.runtime
        and refusal.startswith("conflict: /etc/systemd/system/")
    )
    # A vendor mask (/usr/lib, a generator) cannot be removed: systemctl unmask says nothing
    # and leaves it; masktool says so (exit 1).
    vendor_mask = rule.action == "unmask" and "outside /etc and /run" in refusal
    # Two rules name one unit (one of them through an alias link in /etc) and disagree:
    # masktool carries out neither; systemctl does both, the last one winning.
    disagree = "but disagree; keep one" in refusal
    # The mask that wins belongs to another unit: the template of an instance, or the unit an
    # alias on the search path names (systemd resolves it by name). systemctl unmask of the
    # name removes nothing and says nothing; the unit stays masked. masktool says so.
    masked_elsewhere = rule.action == "unmask" and (
        "resolves by name through" in refusal or "masked by its template's mask" in refusal
    )
    # A unit file in a directory that outranks the one the mask would go to (transient units,
    # generator.early, system.control): the mask would not take effect. systemctl writes it
    # anyway and says nothing; masktool refuses it as a conflict.
    outranked = rule.action == "mask" and "which outranks a mask in" in refusal
    # A unit that enabled or running units Require= is not masked without `force: true`:
    # they would fail. systemctl masks it.
    in_use = rule.action == "mask" and "would fail without it" in refusal
    return runtime_behind_etc or vendor_mask or masked_elsewhere or disagree or outranked or in_use


def _deliberate_tree(
    path: str,
    mine: dict[str, str],
    theirs: dict[str, str],
    rules: list[Rule],
    after: dict[str, dict[str, Any]],
    *,
    example: Example,
) -> bool:
    d, name = path.rsplit("/", 1)
    # Unmasking an alias name whose link in /etc names this unit unmasks this unit (below);
    # once its mask is gone the alias may lead nowhere, and the rule is back on the alias name.
    if path not in mine and any(
        r.action == "unmask"
        and example.layout[ETC].get(r.unit) == ("alias", name)
        and alias_allowed(r.unit, name)
        for r in rules
    ):
        return True
    if theirs.get(path) == "-> /dev/null" and mine.get(path) in OTHER_MASKS:
        return True  # a mask of another shape, kept (see below); --force replaced it
    # An alias link in /etc is followed: the rule applies to the unit it names (systemctl mask
    # of the alias name fails, "already exists"; masktool masks the unit the alias names;
    # systemctl --runtime mask writes a /run mask the /etc alias outranks, masktool masks the
    # unit the alias names in /run).
    for r in rules:
        u = after.get(r.unit)
        if (
            u is not None
            and name in (u["unit"], r.unit)
            and "but disagree; keep one" in str(u["refusal"])
        ):
            return True
        if u is None or u["unit"] == r.unit:
            continue
        if r.action == "unmask":
            # Unmasking the alias name unmasks the unit it names; systemctl unmask of the
            # alias name leaves that unit masked (and so the alias).
            if name == u["unit"] and path not in mine and path in theirs:
                return True
            continue
        if r.force and path == f"{ETC}/{r.unit}" and theirs.get(path) == "-> /dev/null":
            return True  # systemctl mask --force replaces the alias link; masktool follows it
        ours = f"{RUN if r.runtime else ETC}/{u['unit']}"
        if path == ours and mine.get(path) == "-> /dev/null" and (path not in theirs or r.force):
            return True
        if r.force and r.runtime and path == f"{ETC}/{u['unit']}" and path not in mine:
            return True  # force moved the named unit's /etc file, in front of its /run mask
        if (
            r.runtime
            and path == f"{RUN}/{r.unit}"
            and mine.get(path) != "-> /dev/null"
            and theirs.get(path) == "-> /dev/null"
        ):
            return True
    rule = next((r for r in rules if r.unit == name), None)
    unit = after.get(name)
    if rule is None or unit is None:
        return False
    # A mask of another shape already there (a link to /dev/zero, a relative link, an empty
    # file) is a mask: masktool keeps it; systemctl mask --force replaces it with /dev/null.
    if (
        rule.action == "mask"
        and theirs.get(path) == "-> /dev/null"
        and any(e["path"] == f"/{path}" and e["kind"] == "mask" for e in unit["entries"])
    ):
        return True
    # `force: true` moves what stands in the way (for a runtime rule, an /etc file in front
    # of /run) to /var/lib/masktool/displaced and masks; systemctl mask --force replaces only
    # links, and refuses a file ("already exists").
    if (
        rule.action == "mask"
        and rule.force
        and path in theirs
        and (
            (mine.get(path) == "-> /dev/null" and not theirs[path].startswith("-> "))
            or (rule.runtime and d == ETC and path not in mine)
        )
    ):
        return True
    if _refused_on_purpose(rule, unit) and path not in mine:
        return True
    # systemctl --root unmask judges a link by the host's file system, not the tree's: a
    # relative or chained mask inside DIR is left behind (tried on a booted systemd).
    # masktool, which resolves inside DIR, removes it.
    if (
        rule.action == "unmask"
        and path not in mine
        and theirs.get(path, "").startswith("-> ")
        and theirs.get(path) != "-> /dev/null"
    ):
        return True
    # A runtime rule is met by a mask that outlives a reboot (in /etc, or a vendor mask):
    # masktool adds no /run link beside it, nor replaces what is there; systemctl --runtime
    # mask [--force] does.
    return (
        d == RUN
        and rule.action == "mask"
        and rule.runtime
        and theirs.get(path) == "-> /dev/null"
        and unit["state"] in ("masked", "masked-vendor")
    )


@given(examples())
def test_masktool_apply_root_equals_systemctl_root(
    tmp_path_factory: pytest.TempPathFactory, example: Example
) -> None:
    rules = list(example.rules)
    base = tmp_path_factory.mktemp("diff")
    mine, theirs = base / "mine", base / "theirs"
    build(mine, example)
    shutil.copytree(mine, theirs, symlinks=True)
    policy = base / "policy.yaml"
    policy.write_text(policy_text(example.rules))
    policy.chmod(0o644)

    res = subprocess.run(
        [MASKTOOL, "apply", "--root", str(mine), "--policy", str(policy), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in (0, 1, 2), res.stderr
    doc = json.loads(res.stdout) if res.returncode in (0, 1) and res.stdout else {}
    after = {u["policy_name"]: u for u in doc.get("after", {}).get("units", [])}
    failed = []
    for r in rules:
        if r.action == "unmask":
            # masktool's unmask removes the masks of /etc and of /run: `systemctl unmask` and
            # `systemctl unmask --runtime` together.
            calls = [["unmask", r.unit], ["unmask", "--runtime", r.unit]]
        else:
            flags = [*(["--runtime"] if r.runtime else []), *(["--force"] if r.force else [])]
            calls = [["mask", *flags, r.unit]]
        # `enable: true` enables after an unmask, and only then (masktool-policy(5)): after either
        # side removed a mask (masktool removes some systemctl --root leaves, see below).
        # (The unit masktool unmasked for the rule: its own, or the one its /etc alias names.)
        ours = {r.unit, after.get(r.unit, {}).get("unit")}
        kind, named = example.layout[ETC].get(r.unit, ("", ""))
        if kind == "alias" and alias_allowed(r.unit, named):
            ours.add(named)
        removed = any(c["what"] == "unmask" and c["unit"] in ours for c in doc.get("changes", []))
        for args in calls:
            out = _systemctl(theirs, *args)
            removed = removed or "Removed" in out.stderr
            if args[0] == "unmask" and args[1] == "--runtime":
                # A relative or chained mask systemctl --root leaves (see _deliberate_tree)
                # would keep the unit masked on its side and fail what follows (enable): take
                # it away there too, so the rest compares like with like.
                for c in doc.get("changes", []):
                    gone = theirs / str(c["detail"]).removeprefix("removed /")
                    if c["what"] == "unmask" and c["unit"] == r.unit and gone.is_symlink():
                        gone.unlink()
            if r.enable and removed and args[0] == "unmask" and args[1] == "--runtime":
                calls.append(["enable", r.unit])
            if (
                out.returncode != 0
                and not _deliberate(r, out.stderr, after.get(r.unit))
                # Both refuse: they agree.
                and not _refused_on_purpose(r, after.get(r.unit))
            ):
                failed.append(f"systemctl {' '.join(args)}: {out.stderr.strip()}")

    differences = []
    a, b = snapshot(mine), snapshot(theirs)
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path) and not _deliberate_tree(
            path, a, b, rules, after, example=example
        ):
            differences.append(f"{path}: masktool {a.get(path)}, systemctl {b.get(path)}")
    # masktool's refusals that are deliberate: they do not count against its exit code.
    on_purpose = {r.unit for r in rules if _refused_on_purpose(r, after.get(r.unit))}
    refused = [u for u in after.values() if u["refusal"] and u["policy_name"] not in on_purpose]
    masktool_ok = res.returncode == 0 or (
        res.returncode == 1 and not refused and not doc.get("errors")
    )
    if masktool_ok != (not failed):
        differences.append(f"exit: masktool {res.returncode}, systemctl failures {failed}")
    if doc:
        for u in doc["after"]["units"]:
            if not u["compliant"]:
                continue
            asked = _systemctl(mine, "is-enabled", u["policy_name"])
            said = asked.stdout.strip()
            if u["via"] or any(e["skipped"] or e["alias_of"] for e in u["entries"]):
                # Resolved by name: systemd's loader (LoadState, which masktool goes by)
                # resolves a link into the search path by the name it names and skips links
                # to the unit's own name and links it rejects as aliases; install.c's
                # is-enabled follows links by path, calls a link to the unit's own name a
                # loop, and fails on rejected aliases. The two disagree on these shapes
                # (tests/loader_shapes.py), so the booted sample
                # (tests/integration/test_differential_booted.py) checks them against
                # LoadState instead.
                continue
            if not said and any(
                a.get(f"{d}/{u['unit']}", "").startswith("-> /dev/") for d in (ETC, RUN)
            ):
                # `systemctl --root is-enabled` looks for the device inside DIR, whose /dev is
                # empty until boot, and answers nothing; booted, systemd says masked.
                continue
            masked = said.startswith("masked")
            if masked != (u["want"] != "unmasked"):
                differences.append(
                    f"{u['policy_name']}: masktool compliant ({u['want']}, {u['state']}), "
                    f"systemctl is-enabled says {said}"
                )
    assert not differences, "\n".join(
        [f"example: {shown(example)}", f"masktool: {res.stdout[-3000:]}", *differences]
    )

"""Classification of what sits on the unit search path, on real files in a temporary tree."""

from __future__ import annotations

import os
import stat
from dataclasses import fields, replace
from pathlib import Path

import pytest

from masktool.deps import Dependency
from masktool.observe import (
    DependentState,
    EntryKind,
    LiveState,
    State,
    UnitObservation,
    UnitTree,
    _learnt,
)

UNIT = "[Service]\nExecStart=/bin/true\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for d in (
        "etc/systemd/system",
        "run/systemd/system",
        "usr/lib/systemd/system",
        "run/systemd/generator.early",
        "dev",
    ):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path


def etc(root: Path) -> Path:
    return root / "etc/systemd/system"


def kind(root: Path, unit: str) -> EntryKind:
    o = UnitTree(str(root)).observe_files(unit)
    assert o.entries, unit
    return o.entries[0].kind


def test_link_to_dev_null_is_a_mask_even_without_dev_null_under_root(root: Path) -> None:
    os.symlink("/dev/null", etc(root) / "a.service")
    assert kind(root, "a.service") == EntryKind.MASK


def test_relative_and_chained_links_ending_at_dev_null(root: Path) -> None:
    os.symlink("/dev/null", root / "dev/n2")  # chain: unit -> ../../../dev/n2 -> /dev/null
    os.symlink("../../../dev/n2", etc(root) / "b.service")
    assert kind(root, "b.service") == EntryKind.MASK


def test_chain_that_leaves_root_does_not_escape(root: Path) -> None:
    # ../ above the root stays at the root, as chroot-style resolution does.
    os.symlink("../../../../../../../../nowhere/x", etc(root) / "esc.service")
    assert kind(root, "esc.service") == EntryKind.DANGLING


def test_zero_byte_file_is_a_mask_one_byte_is_not(root: Path) -> None:
    (etc(root) / "z.service").write_text("")
    (etc(root) / "one.service").write_text("x")
    assert kind(root, "z.service") == EntryKind.MASK
    assert kind(root, "one.service") == EntryKind.UNIT_FILE


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_device_links_char_is_a_mask_block_is_not(root: Path) -> None:
    os.mknod(root / "dev/chr", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/blk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.symlink("/dev/chr", etc(root) / "c.service")
    os.symlink("/dev/blk", etc(root) / "blk.service")
    os.mknod(etc(root) / "node.service", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    assert kind(root, "c.service") == EntryKind.MASK
    assert kind(root, "blk.service") == EntryKind.BAD_LINK
    # A device node itself is not a mask (systemd loads it: `loaded`).
    assert kind(root, "node.service") == EntryKind.DEVICE_NODE
    assert UnitTree(str(root)).observe_files("blk.service").state_for("mask") == State.CONFLICT


def test_dangling_link_and_link_to_directory(root: Path) -> None:
    os.symlink("/nowhere/x.service", etc(root) / "d.service")
    os.symlink("/usr", etc(root) / "dir.service")
    assert kind(root, "d.service") == EntryKind.DANGLING
    assert kind(root, "dir.service") == EntryKind.BAD_LINK


def test_alias_in_etc_is_followed_to_the_unit_it_names(root: Path) -> None:
    (root / "usr/lib/systemd/system/real.service").write_text(UNIT)
    os.symlink("/usr/lib/systemd/system/real.service", etc(root) / "nick.service")
    o = UnitTree(str(root)).observe_files("nick.service")
    assert o.unit == "real.service"
    assert o.alias_chain == ("nick.service",)


def test_vendor_alias_is_a_name_of_its_own(root: Path) -> None:
    # ctrl-alt-del.target -> reboot.target in /lib: masking the name must not mask reboot.target.
    (root / "usr/lib/systemd/system/reboot.target").write_text("[Unit]\n")
    os.symlink("reboot.target", root / "usr/lib/systemd/system/ctrl-alt-del.target")
    o = UnitTree(str(root)).observe_files("ctrl-alt-del.target")
    assert o.unit == "ctrl-alt-del.target"
    assert o.entries[0].kind == EntryKind.ALIAS
    assert o.state_for("mask") == State.UNMASKED


def test_link_to_same_named_unit_file_is_a_link_and_a_conflict(root: Path) -> None:
    (root / "srv").mkdir()
    (root / "srv/l.service").write_text(UNIT)
    os.symlink("/srv/l.service", etc(root) / "l.service")
    o = UnitTree(str(root)).observe_files("l.service")
    assert o.entries[0].kind == EntryKind.LINK
    assert o.state_for("mask") == State.CONFLICT


def test_states_by_scope(root: Path) -> None:
    os.symlink("/dev/null", root / "run/systemd/system/r.service")
    os.symlink("/dev/null", root / "usr/lib/systemd/system/v.service")
    os.symlink("/dev/null", root / "run/systemd/generator.early/g.service")
    (root / "usr/lib/systemd/system/g.service").write_text(UNIT)
    t = UnitTree(str(root))
    assert t.observe_files("r.service").mask_state() == State.MASKED_RUNTIME
    assert t.observe_files("v.service").mask_state() == State.MASKED_VENDOR
    assert t.observe_files("g.service").mask_state() == State.MASKED_VENDOR
    assert t.observe_files("none.service").mask_state() == State.UNMASKED
    assert not t.observe_files("none.service").installed


def test_real_file_in_etc_beats_run_mask(root: Path) -> None:
    (etc(root) / "e.service").write_text(UNIT)
    os.symlink("/dev/null", root / "run/systemd/system/e.service")
    o = UnitTree(str(root)).observe_files("e.service")
    assert o.mask_state() == State.UNMASKED
    assert o.state_for("mask", runtime=True) == State.CONFLICT
    reason = o.conflict(runtime=True)
    assert reason is not None
    assert "beats a mask in /run" in reason


def test_instance_uses_template_unless_it_has_its_own_file(root: Path) -> None:
    os.symlink("/dev/null", etc(root) / "t@.service")
    (root / "usr/lib/systemd/system/t@.service").write_text(UNIT)
    (root / "usr/lib/systemd/system/t@own.service").write_text(UNIT)
    t = UnitTree(str(root))
    assert t.observe_files("t@x.service").mask_state() == State.MASKED
    assert t.observe_files("t@own.service").mask_state() == State.UNMASKED
    assert t.observe_files("t@.service").owned_instances == ("t@own.service",)


def test_masks_to_dev_null_are_no_hazard_unless_dev_null_leads_to_one(root: Path) -> None:
    """hazards() takes the masks observe_files found as harmless only while /dev/null in the
    tree is itself: one that leads to a FIFO is reported wherever it is reached from."""
    for n in ("a.service", "b.service"):
        os.symlink("/dev/null", etc(root) / n)
    tree = UnitTree(str(root))
    for n in ("a.service", "b.service"):
        tree.observe_files(n)
    assert tree.hazards() == ()
    os.mkfifo(root / "fifo")
    os.symlink("/fifo", root / "dev/null")
    tree = UnitTree(str(root))
    tree.observe_files("a.service")  # a.service classified, b.service not
    found = tree.hazards()
    assert found == (
        "/etc/systemd/system/a.service (leads to /fifo, a FIFO)",
        "/etc/systemd/system/b.service (leads to /fifo, a FIFO)",
    )


def test_an_entry_replaced_after_the_listing_is_classified_as_it_is_now(root: Path) -> None:
    os.symlink("/dev/null", etc(root) / "l.service")
    (etc(root) / "f.service").write_text(UNIT)
    tree = UnitTree(str(root))  # lists both
    (etc(root) / "l.service").unlink()
    (etc(root) / "l.service").write_text(UNIT)
    (etc(root) / "f.service").unlink()
    os.symlink("/dev/null", etc(root) / "f.service")
    assert tree.observe_files("l.service").entries[0].kind == EntryKind.UNIT_FILE
    assert tree.observe_files("f.service").entries[0].kind == EntryKind.MASK


def test_what_observe_adds_is_what_replace_would_give(root: Path) -> None:
    """observe() copies each observation with what it learnt (observe._learnt) rather than
    through dataclasses.replace: the same object, field for field."""
    os.symlink("/dev/null", etc(root) / "a.service")
    o = UnitTree(str(root)).observe_files("a.service")
    live = LiveState("a.service", "masked", "inactive", "dead")
    dep = DependentState(Dependency("b.service", "Requires", "/x"), True, False)
    got = _learnt(o, live, (live,), (dep,))
    assert got == replace(o, live=live, instances=(live,), dependents=(dep,))
    assert got.live is live and o.live is None
    assert {f.name for f in fields(UnitObservation)} == set(vars(got))

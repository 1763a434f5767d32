"""masktool's own file operations on real directories: what is removed, what never is, and
that nothing reached through --root leaves the tree."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from masktool.files import (
    BeingWrittenError,
    NotAMaskError,
    ReplacedError,
    _unlink_same,
    displace,
    put_back,
    remove_mask,
    write_mask,
)
from masktool.tree import Tree
from masktool.units import ETC_SEARCH_DIR, RUN_SEARCH_DIR


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    return Tree(str(tmp_path))


def etc(tree: Tree, name: str) -> Path:
    return Path(tree.host(f"/etc/systemd/system/{name}"))


def test_write_mask_never_replaces(tree: Tree) -> None:
    assert write_mask(tree, ETC_SEARCH_DIR, "a.service")
    assert os.readlink(etc(tree, "a.service")) == "/dev/null"
    assert not write_mask(tree, ETC_SEARCH_DIR, "a.service")  # already masked
    etc(tree, "b.service").write_text("[Service]\n")
    with pytest.raises(NotAMaskError):
        write_mask(tree, ETC_SEARCH_DIR, "b.service")
    assert etc(tree, "b.service").read_text() == "[Service]\n"


def test_write_mask_makes_the_directory(tmp_path: Path) -> None:
    tree = Tree(str(tmp_path))
    assert write_mask(tree, RUN_SEARCH_DIR, "a.service")
    assert os.readlink(tmp_path / "run/systemd/system/a.service") == "/dev/null"


def test_remove_mask_removes_links_and_settled_empty_files(tree: Tree) -> None:
    etc(tree, "a.service").symlink_to("/dev/null")
    etc(tree, "b.service").write_bytes(b"")
    etc(tree, "c.service").symlink_to("../../../dev/null")  # resolved inside the tree
    Path(tree.host("/empty")).write_bytes(b"")
    etc(tree, "d.service").symlink_to("/empty")  # a link to an empty file masks too
    for name in ("a.service", "b.service", "c.service", "d.service"):
        assert remove_mask(tree, ETC_SEARCH_DIR, name)
        assert not os.path.lexists(etc(tree, name))
    assert not remove_mask(tree, ETC_SEARCH_DIR, "a.service")
    assert os.listdir(tree.host("/etc/systemd/system")) == []  # nothing left aside
    assert Path(tree.host("/empty")).exists()  # a link is removed, never what it points to


def test_remove_mask_leaves_what_is_not_a_mask(tree: Tree) -> None:
    etc(tree, "a.service").write_text("[Service]\n")
    etc(tree, "b.service").symlink_to("/usr/lib/systemd/system/b.service")
    os.mkfifo(etc(tree, "c.service"))
    for name in ("a.service", "b.service", "c.service"):
        with pytest.raises(NotAMaskError):
            remove_mask(tree, ETC_SEARCH_DIR, name)
        assert os.path.lexists(etc(tree, name))


def test_an_empty_file_open_for_writing_is_never_removed(tree: Tree) -> None:
    path = etc(tree, "a.service")
    with path.open("w") as writer:  # what cp and > do: create empty, write a moment later
        with pytest.raises(BeingWrittenError):
            remove_mask(tree, ETC_SEARCH_DIR, "a.service")
        writer.write("[Service]\nExecStart=/bin/true\n")
    assert path.read_text() == "[Service]\nExecStart=/bin/true\n"


def test_an_empty_file_open_for_writing_in_another_process_is_never_removed(
    tree: Tree,
) -> None:
    path = etc(tree, "a.service")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "f = open(sys.argv[1], 'w'); print('open', flush=True)\n"
            "sys.stdin.readline(); f.write('[Service]\\n'); f.close()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline() == "open\n"
    with pytest.raises(BeingWrittenError):
        remove_mask(tree, ETC_SEARCH_DIR, "a.service")
    writer.stdin.write("go\n")
    writer.stdin.close()
    assert writer.wait(10) == 0
    assert path.read_text() == "[Service]\n"


def test_a_name_replaced_between_check_and_unlink_is_put_back(tree: Tree) -> None:
    path = etc(tree, "a.service")
    path.symlink_to("/dev/null")
    checked = path.lstat()
    # An editor saves a unit file over the name after the check.
    new = etc(tree, ".a.service.tmp")
    new.write_text("[Service]\n")
    new.replace(path)
    dfd = os.open(tree.host("/etc/systemd/system"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(ReplacedError):
            _unlink_same(dfd, "a.service", checked, str(path))
    finally:
        os.close(dfd)
    assert path.read_text() == "[Service]\n"
    assert os.listdir(tree.host("/etc/systemd/system")) == ["a.service"]


def test_displace_keeps_content_mode_owner_times(tree: Tree) -> None:
    path = etc(tree, "a.service")
    path.write_text("[Service]\nExecStart=/bin/true\n")
    path.chmod(0o640)
    os.chown(path, 1234, 5678)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_100_000_000_123_456_789))
    moved = displace(tree, ETC_SEARCH_DIR, "a.service", "STAMP")
    assert moved.copy == "/var/lib/masktool/displaced/STAMP/a.service"
    copy = Path(tree.host(moved.copy))
    st = copy.stat()
    assert copy.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert st.st_mtime_ns == 1_100_000_000_123_456_789
    assert not os.path.lexists(path)
    assert os.listdir(copy.parent) == ["a.service"]


def test_displace_and_put_back_keep_extended_attributes(tree: Tree) -> None:
    """ACLs and security labels are extended attributes: an admin's file keeps them both
    ways (user.* stands for them here: the only kind a test may set without privileges on
    every file system)."""
    path = etc(tree, "x.service")
    path.write_text("[Service]\nExecStart=/bin/true\n")
    os.setxattr(path, "user.masktool-test", b"kept")
    moved = displace(tree, ETC_SEARCH_DIR, "x.service", "STAMP")
    assert os.getxattr(tree.host(moved.copy), "user.masktool-test") == b"kept"
    put_back(tree, moved.copy, "/etc/systemd/system/x.service")
    assert os.getxattr(path, "user.masktool-test") == b"kept"


def test_displace_says_a_hard_linked_file_is_copied_apart(tree: Tree) -> None:
    """A copy cannot stay one file with the unit's other names: the move's note says so, and
    the other name keeps the admin's file untouched."""
    path = etc(tree, "h.service")
    path.write_text("[Service]\nExecStart=/bin/true\n")
    other = Path(tree.host("/etc/h-kept.service"))
    os.link(path, other)
    ino = path.stat().st_ino
    moved = displace(tree, ETC_SEARCH_DIR, "h.service", "STAMP")
    assert moved.note == (
        f"it had 1 other hard link (inode {ino}), which keep the old file; the copy is a new one"
    )
    assert other.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert other.stat().st_nlink == 1
    assert Path(tree.host(moved.copy)).read_text() == other.read_text()


def test_displace_keeps_links_as_links(tree: Tree) -> None:
    path = etc(tree, "a.service")
    path.symlink_to("/nowhere/a.service")
    moved = displace(tree, ETC_SEARCH_DIR, "a.service", "S")
    assert os.readlink(tree.host(moved.copy)) == "/nowhere/a.service"
    assert not os.path.lexists(path)


def test_displace_works_for_the_longest_unit_names(tree: Tree) -> None:
    name = "x" * (255 - len(".service")) + ".service"
    etc(tree, name).write_text("[Service]\n")
    moved = displace(tree, ETC_SEARCH_DIR, name, "20261126T000000.000000Z")
    assert Path(tree.host(moved.copy)).read_text() == "[Service]\n"


def test_displace_refuses_a_file_being_written(tree: Tree) -> None:
    path = etc(tree, "a.service")
    with path.open("w") as writer:
        writer.write("[Service]\n")
        writer.flush()
        with pytest.raises(BeingWrittenError):
            displace(tree, ETC_SEARCH_DIR, "a.service", "S")
        writer.write("ExecStart=/bin/true\n")
    assert path.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert os.listdir(tree.host("/var/lib/masktool/displaced")) == []  # no copy, no empty dir


def test_displace_refuses_what_is_neither_file_nor_link(tree: Tree) -> None:
    os.mkfifo(etc(tree, "a.service"))
    with pytest.raises(NotAMaskError):
        displace(tree, ETC_SEARCH_DIR, "a.service", "S")
    assert os.path.lexists(etc(tree, "a.service"))


@pytest.mark.parametrize("how", ["absolute", "relative", "dotdot"])
def test_directories_linked_out_of_the_tree_stay_inside(tmp_path: Path, how: str) -> None:
    """DIR/etc/systemd/system and DIR/var/lib/masktool linked to a host directory: resolved
    inside DIR, as chroot and systemctl --root resolve them; the host directory is untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.service").write_text("[Service]\n")
    (outside / "gone.service").symlink_to("/dev/null")
    top = tmp_path / "tree"
    (top / "etc/systemd").mkdir(parents=True)
    (top / "var/lib").mkdir(parents=True)
    target = {
        "absolute": str(outside),
        "relative": "../../../outside",  # climbs above DIR: stops at DIR's top
        "dotdot": "/../../../../" + str(outside),
    }[how]
    (top / "etc/systemd/system").symlink_to(target)
    (top / "var/lib/masktool").symlink_to(target)
    before = sorted((p.name, p.lstat().st_ino) for p in outside.iterdir())
    tree = Tree(str(top))
    assert write_mask(tree, ETC_SEARCH_DIR, "victim.service")
    assert not remove_mask(tree, ETC_SEARCH_DIR, "gone.service")
    (Path(tree.host(tree.chase("/etc/systemd/system")[0])) / "x.service").write_text("x")
    displace(tree, ETC_SEARCH_DIR, "x.service", "S")
    assert sorted((p.name, p.lstat().st_ino) for p in outside.iterdir()) == before
    assert (outside / "victim.service").read_text() == "[Service]\n"


def test_a_loop_of_links_is_an_error_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd").mkdir(parents=True)
    (tmp_path / "etc/systemd/system").symlink_to("system")
    with pytest.raises(OSError) as err:
        write_mask(Tree(str(tmp_path)), ETC_SEARCH_DIR, "a.service")
    assert err.value.errno == errno.ELOOP


def test_displace_keeps_set_id_bits(tree: Tree) -> None:
    path = etc(tree, "a.service")
    path.write_text("[Service]\n")
    os.chown(path, 1000, 1000)
    path.chmod(0o6755)  # after chown, which clears them
    moved = displace(tree, ETC_SEARCH_DIR, "a.service", "S")
    assert Path(tree.host(moved.copy)).stat().st_mode & 0o7777 == 0o6755


def test_shown_escapes_what_a_terminal_or_the_journal_must_not_get() -> None:
    from masktool.tree import shown

    assert shown(os.fsdecode(b"/a/\xff\x1b[31m.service\n")) == "/a/\\xff\\x1b[31m.service\\x0a"
    assert shown("\ud800") == "\\ud800"


@pytest.mark.parametrize("what", ["fifo", "file", "link"])
def test_displace_into_a_displaced_that_is_no_directory_is_a_clear_error(
    tree: Tree, what: str
) -> None:
    etc(tree, "a.service").write_text("[Service]\n")
    displaced = Path(tree.host("/var/lib/masktool/displaced"))
    displaced.parent.mkdir(parents=True)
    if what == "fifo":
        os.mkfifo(displaced)
    elif what == "file":
        displaced.write_text("x")
    else:
        displaced.symlink_to("/elsewhere")
    with pytest.raises(NotAMaskError) as err:
        displace(tree, ETC_SEARCH_DIR, "a.service", "S")
    assert f"{displaced} is not a directory" in str(err.value)
    assert etc(tree, "a.service").read_text() == "[Service]\n"


def test_a_link_to_an_empty_file_being_written_is_not_removed(tree: Tree) -> None:
    """`systemctl link` of a file still being copied: the admin's link, not a mask yet."""
    target = Path(tree.host("/opt/app.service"))
    target.parent.mkdir()
    etc(tree, "app.service").symlink_to("/opt/app.service")
    with target.open("w") as writer:
        with pytest.raises(BeingWrittenError):
            remove_mask(tree, ETC_SEARCH_DIR, "app.service")
        writer.write("[Service]\n")
    assert os.readlink(etc(tree, "app.service")) == "/opt/app.service"


def test_a_link_to_dev_zero_is_a_mask_in_an_unbooted_tree(tree: Tree) -> None:
    """An unbooted tree's /dev is empty: a link into /dev is judged by the device the kernel
    has there, as booted systemd will (a link to any character device masks)."""
    etc(tree, "a.service").symlink_to("/dev/zero")
    assert not write_mask(tree, ETC_SEARCH_DIR, "a.service")  # already masked
    assert remove_mask(tree, ETC_SEARCH_DIR, "a.service")
    etc(tree, "b.service").symlink_to("/dev/no-such-device")
    with pytest.raises(NotAMaskError):
        remove_mask(tree, ETC_SEARCH_DIR, "b.service")

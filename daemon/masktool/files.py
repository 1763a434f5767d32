"""The file operations masktool does itself: writing and removing masks, and moving a
conflicting file aside (force). Every one of them works inside a Tree (the running system's /,
or --root DIR) through directory file descriptors, and re-checks on the very inode it acts on
that what it removes is a settled mask:

- a link is removed only when it leaves the unit search path and resolves to a character
  device (/dev/null) or an empty file;
- a 0-byte regular file only when no process has it open for writing: `cp`, `>` and editors
  create the file empty and write it a moment later, and that moment must not cost the admin the
  file. A read lease (fcntl F_SETLEASE) can be taken only while nobody has the file open for
  writing, and while it is held the kernel makes a new writer wait;
- the name is renamed aside first and compared, inode for inode, with what was checked, so a
  file renamed over the mask in the meantime (an editor saving) is put back, never deleted.

symlink() never replaces an existing name, so writing a mask cannot overwrite anything.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from masktool.tree import MAX_HOPS, Tree, shown
from masktool.units import SEARCH_PATH, SearchDir

DISPLACED_DIR = "/var/lib/masktool/displaced"
# masktool's own temporary names in unit directories: hidden (systemd ignores them), short (a
# unit name may use all of NAME_MAX).
TEMP_PREFIX = ".masktool-"
# How long a file renamed aside is watched for a writer that found it just before (seconds).
_SETTLE = 0.05


class NotAMaskError(Exception):
    """Something that is not a mask sits where masktool would write or remove one."""


class BeingWrittenError(NotAMaskError):
    """A 0-byte file some process still has open for writing: not a mask yet."""


class ReplacedError(NotAMaskError):
    """The entry changed between the check and the removal; it was put back untouched."""


@contextmanager
def _naming(where: str) -> Iterator[None]:
    """An error of the kernel's names a file relative to a directory fd ('x.service', or a
    temporary name): say instead which file masktool was working on, and what a daemon without
    capabilities cannot do."""
    try:
        yield
    except OSError as e:
        if e.filename is None or isinstance(e, NotAMaskError):
            raise
        hint = ""
        if e.errno in (errno.EACCES, errno.EPERM):
            hint = (
                " (masktool.service runs with no capabilities: run `masktool apply` as root, "
                "or fix the file's owner and mode)"
            )
        raise OSError(e.errno, f"{where}: {e.strerror}{hint}") from e


def search_prefixes(tree: Tree) -> tuple[str, ...]:
    """The unit search path as systemd's loader matches link targets against it: each
    directory as named and as its links resolve inside the tree (unit_file_build_name_map()'s
    expanded search path, so a linked /lib or /etc/systemd/system still counts)."""
    out: list[str] = []
    for d in SEARCH_PATH:
        final, exists = tree.chase(d.path)
        for p in (d.path, final) if exists else (d.path,):
            if p not in out:
                out.append(p)
    return tuple(out)


def _chase_strict(tree: Tree, parts: list[str], *, more: bool = False) -> str | None:
    """`parts` resolved inside the tree as systemd's chase() with CHASE_NONEXISTENT does: links
    followed, a missing component ends the walk (what follows is appended as it is), and None
    where chase() fails: `..` after a missing component, a file used as a directory, a loop.
    `more`: a component follows `parts`, so what they lead to must be a directory."""
    stack = list(reversed(parts))
    resolved: list[str] = []
    hops = 0
    while stack:
        part = stack.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        try:
            st = os.lstat(tree.host("/" + "/".join([*resolved, part])))
        except FileNotFoundError:
            rest = [part, *reversed(stack)]
            if ".." in rest:
                return None
            return "/" + "/".join([*resolved, *(p for p in rest if p != ".")])
        except OSError:
            return None  # ENOTDIR (a file on the way), EACCES
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_HOPS:
                return None
            link = os.readlink(tree.host("/" + "/".join([*resolved, part])))
            if link.startswith("/"):
                resolved = []
            stack.extend(reversed([p for p in link.split("/") if p]))
            continue
        if (stack or more) and not stat.S_ISDIR(st.st_mode):
            return None
        resolved.append(part)
    return "/" + "/".join(resolved)


def link_hop(tree: Tree, inside: str, target: str) -> str | None:
    """Where systemd's unit loader takes the link at `inside` to point: its target made
    absolute (relative to the link's directory, inside the tree), with links among the
    directories on the way followed and `.` and `..` resolved, the last component not followed
    (chase() with CHASE_NOFOLLOW | CHASE_NONEXISTENT). None when that fails, and the loader
    skips the link (tried: `-> /usr/lib/systemd/system/missing/../b.service`, a link through
    /etc/hostname/, a directory loop)."""
    if not target.startswith("/"):
        target = inside.rsplit("/", 1)[0] + "/" + target
    parts = [p for p in target.split("/") if p and p != "."]
    if not parts or parts[-1] == "..":
        return _chase_strict(tree, parts)
    parent = _chase_strict(tree, parts[:-1], more=True)
    if parent is None:
        return None
    return parent.rstrip("/") + "/" + parts[-1]


def alias_target(hop: str, prefixes: tuple[str, ...]) -> str | None:
    """The unit name a link whose first hop is `hop` names, when that hop lies inside the unit
    search path: systemd then resolves the link by that name, not by the file it reaches
    (an alias; a link to a search directory itself names "system", which is no unit name).
    None for a link out of the search path (a linked unit file, or a mask)."""
    for p in prefixes:
        if hop == p or hop.startswith(p + "/"):
            return hop.rsplit("/", 1)[1]
    return None


# /dev/tty: PID 1 has no controlling terminal, so opening it fails (ENXIO) and a unit linked to
# it is not-found, not masked (tried).
_TTY = os.makedev(5, 0)


def resolve_link(
    tree: Tree, inside: str, target: str, prefixes: tuple[str, ...] | None = None
) -> tuple[str, bool, bool]:
    """Where the link at `inside` (whose own target is `target`) ends inside the tree: (the
    final path, whether it exists, whether the link is a mask).

    A link is a mask when its first hop leaves the unit search path and it resolves to
    /dev/null, to any other character device, or to a 0-byte regular file: systemd's
    null_or_empty_path() on a linked unit file. A link whose first hop stays on the search path
    is resolved by unit name (an alias, or a link to the same unit's file lower down, which the
    loader skips): it is no mask of its own, whatever it reaches. systemd compares the
    resolved path with /dev/null first, so under --root a mask is a mask even when
    DIR/dev/null does not exist."""
    if target == "/dev/null":
        return "/dev/null", True, True  # by far the most common mask
    if prefixes is None:
        prefixes = search_prefixes(tree)
    final, exists = tree.chase(inside)
    hop = link_hop(tree, inside, target)
    if hop is None or alias_target(hop, prefixes) is not None:
        return final, exists, False
    if target.endswith("/"):
        return final, exists, False  # opened as a directory: ENOTDIR, or not a mask
    if final == "/dev/null":
        return final, True, True
    if final.startswith("/dev/") and not exists and not tree.is_host:
        # An unbooted tree's /dev is usually empty until devtmpfs is mounted there at boot:
        # judge a link into /dev that finds nothing in the tree by the device the running
        # kernel has at that path, as systemctl --root unmask does (a link to /dev/zero masks).
        try:
            dev = os.stat(final)
        except OSError:
            return final, False, False
        return final, True, stat.S_ISCHR(dev.st_mode) and dev.st_rdev != _TTY
    if not exists:
        return final, False, False
    try:
        st = os.stat(tree.host(final))
    except OSError:
        return final, False, False
    empty = stat.S_ISREG(st.st_mode) and st.st_size == 0
    return final, True, (stat.S_ISCHR(st.st_mode) and st.st_rdev != _TTY) or empty


def _link_is_mask(tree: Tree, inside: str, dfd: int, name: str) -> bool:
    return resolve_link(tree, inside, os.readlink(name, dir_fd=dfd))[2]


def write_mask(tree: Tree, d: SearchDir, unit: str) -> bool:
    """Link `unit` to /dev/null in `d`, as `systemctl mask` does. False if it already was a
    mask; NotAMaskError if something else is there."""
    with tree.dir(d.path, create=True) as dfd:
        try:
            os.symlink("/dev/null", unit, dir_fd=dfd)
        except FileExistsError:
            st = os.stat(unit, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) and _link_is_mask(tree, f"{d.path}/{unit}", dfd, unit):
                return False
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                return False  # an empty file masks too; masktool does not replace it
            raise NotAMaskError(
                f"{tree.shown(f'{d.path}/{unit}')} is not a mask; masktool does not overwrite it"
            ) from None
    return True


def _take_read_lease(fd: int, where: str, owner: int) -> None:
    """A read lease on `fd`: proof that no process has the file open for writing. While it is
    held, a process opening the file for writing waits for masktool to let go."""
    # A writer opening the file breaks the lease, and the kernel signals the holder: SIGURG is
    # ignored by default, SIGIO (the default signal) would end the process. (signal is
    # imported here: a lease is rare, and the module costs half a millisecond a run.)
    import signal

    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise BeingWrittenError(
                f"{where} is open for writing by another process (being written); "
                "it is not a mask until it is closed"
            ) from None
        if e.errno == errno.EACCES:
            # Only the owner (or CAP_LEASE) may take a lease: no proof either way.
            raise NotAMaskError(
                f"{where} is owned by uid {owner}: without a lease masktool cannot "
                "tell whether it is still being written, so it leaves it"
            ) from None
        raise


@contextmanager
def _read_lease(dfd: int, name: str, expect: os.stat_result, where: str) -> Iterator[int]:
    """Open the regular file `name` (the inode `expect`) and hold a read lease on it."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (expect.st_dev, expect.st_ino):
            raise ReplacedError(f"{where} changed while masktool looked at it; left as it is")
        _take_read_lease(fd, where, st.st_uid)
        try:
            yield fd
        finally:
            with suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    finally:
        os.close(fd)


def being_written(path: str) -> bool:
    """Whether the 0-byte regular file at `path` (a host path, links resolved) may still be
    written: some process has it open for writing, or masktool cannot tell (another owner)."""
    try:
        # Only a regular file can be written into and then read by systemd as a unit; a
        # device is not even opened.
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone, or not a file any more: the caller's next look decides
    try:
        _take_read_lease(fd, path, os.fstat(fd).st_uid)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except NotAMaskError:
        return True
    finally:
        os.close(fd)
    return False


def _lease_broken(fd: int | None) -> bool:
    return fd is not None and fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK


def _unlink_same(
    dfd: int, name: str, expect: os.stat_result, where: str, lease_fd: int | None = None
) -> None:
    """Remove `name` only if it is still the inode `expect`: rename it aside, compare, then
    unlink; anything else found is put back under its name."""
    tmp = f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    os.rename(name, tmp, src_dir_fd=dfd, dst_dir_fd=dfd)
    moved = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
    same = (moved.st_dev, moved.st_ino) == (expect.st_dev, expect.st_ino)
    if same and lease_fd is not None:
        # A process that looked the name up before the rename may be on its way to opening the
        # file for writing; the lease makes it wait, and shows it, once it gets there. Give it
        # time to get there: after the unlink it would write into a file nobody can see.
        time.sleep(_SETTLE)
    if same and not _lease_broken(lease_fd):
        os.unlink(tmp, dir_fd=dfd)
        return
    # Put it back without replacing anything that took the name since: link(), unlike rename(),
    # never overwrites.
    try:
        os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except FileExistsError:
        raise ReplacedError(
            f"{where} changed while masktool removed it, and the name was taken again; "
            f"what was there is kept as {shown(tmp)} in the same directory"
        ) from None
    os.unlink(tmp, dir_fd=dfd)
    if not same:
        raise ReplacedError(f"{where} was replaced while masktool removed it; left as it is")
    raise BeingWrittenError(f"{where} was opened for writing while masktool removed it; left")


def remove_mask(tree: Tree, d: SearchDir, unit: str) -> bool:
    """Remove the mask of `unit` in `d`. False if there was none; NotAMaskError (or one of its
    kinds) if what is there is not a settled mask."""
    inside = f"{d.path}/{unit}"
    where = tree.shown(inside)
    try:
        dfd = tree.open_dir(d.path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        with _naming(where):
            return _remove_at(tree, dfd, unit, inside, where)
    finally:
        os.close(dfd)


def _remove_at(tree: Tree, dfd: int, unit: str, inside: str, where: str) -> bool:
    try:
        st = os.stat(unit, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        final, _, mask = resolve_link(tree, inside, os.readlink(unit, dir_fd=dfd))
        if not mask:
            raise NotAMaskError(f"{where} is a link that is not a mask; left as it is")
        if final != "/dev/null" and being_written(tree.host(final)):
            # A link to an empty file that is still being written (`systemctl link` of a file
            # being copied): the admin's link, not a mask yet.
            raise BeingWrittenError(
                f"{where} leads to {tree.shown(final)}, an empty file open for writing; "
                "it is not a mask until that is closed"
            )
        _unlink_same(dfd, unit, st, where)
        return True
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        with _read_lease(dfd, unit, st, where) as fd:
            if os.fstat(fd).st_size != 0:
                raise NotAMaskError(f"{where} is no longer empty; left as it is")
            _unlink_same(dfd, unit, st, where, lease_fd=fd)
        return True
    raise NotAMaskError(f"{where} is not a mask; masktool does not delete it")


# -- moving a conflicting file aside (force) ---------------------------------------------------


@dataclass(frozen=True)
class Displaced:
    """Where a displaced file was moved."""

    copy: str  # where the copy is, inside the tree
    note: str = ""  # what could not be kept (the owner without CAP_CHOWN, hard links)


def _fsync_dir(dfd: int) -> None:
    os.fsync(dfd)


def _make_private_dir(parent: int, name: str, shown_path: str) -> int:
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
        _fsync_dir(parent)
    except FileExistsError:
        pass
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        # O_NOFOLLOW: a link here would be followed out of masktool's own directory.
        raise NotAMaskError(
            f"{shown_path} is not a directory; masktool keeps displaced files there: move "
            "what is there away"
        ) from None


def _keep_owner_and_times(name: str, dfd: int, st: os.stat_result, fd: int | None) -> str:
    """Give the copy the original's owner and times. Returns what could not be kept."""
    note = ""
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            if fd is not None:
                os.fchown(fd, st.st_uid, st.st_gid)
            else:
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        except PermissionError:
            # The hardened daemon has no CAP_CHOWN: the owner is recorded instead.
            note = f"owner uid {st.st_uid} gid {st.st_gid} not kept (no permission to chown)"
    times = (st.st_atime_ns, st.st_mtime_ns)
    if fd is not None:
        os.utime(fd, ns=times)
    else:
        os.utime(name, ns=times, dir_fd=dfd, follow_symlinks=False)
    return note


def displace(tree: Tree, d: SearchDir, unit: str, stamp: str) -> Displaced:
    """Move what sits at d/unit to /var/lib/masktool/displaced/STAMP/unit, inside the tree.

    /etc and /var/lib may be different file systems (and under ProtectSystem= they are
    different mounts), so the file is copied: to a temporary name, fsynced, renamed to its
    name, the directory fsynced, and only then is the original removed (if it is still the
    file that was copied). A failure on the way (ENOSPC) leaves the original where it was and
    no partial copy. The copy keeps the mode, owner and times.
    """
    inside = f"{d.path}/{unit}"
    where = tree.shown(inside)
    with tree.dir(d.path) as sfd, _naming(where):
        st = os.stat(unit, dir_fd=sfd, follow_symlinks=False)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise NotAMaskError(f"{where} is neither a file nor a link; move it yourself")
        with tree.dir(DISPLACED_DIR.rsplit("/", 1)[0], create=True) as parent:
            base = _make_private_dir(
                parent, DISPLACED_DIR.rsplit("/", 1)[1], tree.shown(DISPLACED_DIR)
            )
        try:
            ddir = _make_private_dir(base, stamp, tree.shown(f"{DISPLACED_DIR}/{stamp}"))
            try:
                copy_inside = f"{DISPLACED_DIR}/{stamp}/{unit}"
                move = _Move(where, sfd, unit, st, ddir, copy_inside)
                if stat.S_ISLNK(st.st_mode):
                    note = _copy_and_remove(tree, move, None)
                else:
                    with _read_lease(sfd, unit, st, where) as src:
                        note = _copy_and_remove(tree, move, src)
                    if st.st_nlink > 1:
                        # A copy cannot stay one file with the other names (they may be on
                        # another file system): say so, rather than break the link unseen.
                        n = st.st_nlink - 1
                        linked = (
                            f"it had {n} other hard link{'s' if n > 1 else ''} (inode "
                            f"{st.st_ino}), which keep the old file; the copy is a new one"
                        )
                        note = f"{note}; {linked}" if note else linked
            except BaseException:
                # A directory per apply, left empty by a failure, only clutters.
                with suppress(OSError):
                    os.rmdir(stamp, dir_fd=base)
                raise
            finally:
                os.close(ddir)
        finally:
            os.close(base)
        _fsync_dir(sfd)
    return Displaced(copy_inside, note)


@dataclass(frozen=True)
class _Move:
    """One displace: the original (in directory sfd, as stat'ed) and where its copy goes."""

    where: str  # the original, for messages
    sfd: int
    unit: str
    st: os.stat_result
    ddir: int
    copy_inside: str


def _copy_and_remove(tree: Tree, m: _Move, src: int | None) -> str:
    sfd, unit, st, ddir = m.sfd, m.unit, m.st, m.ddir
    tmp = f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    try:
        if src is None:
            os.symlink(os.readlink(unit, dir_fd=sfd), tmp, dir_fd=ddir)
            note = _keep_owner_and_times(tmp, ddir, st, None)
        else:
            note = _copy_regular(src, ddir, tmp, st)
        _publish(ddir, tmp, unit, m.copy_inside, tree)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=ddir)
        raise
    try:
        _unlink_same(sfd, unit, st, m.where, lease_fd=src)
    except BaseException:
        # Where the original is still in its place, a copy would only pile up, one for every
        # attempt: remove it. Where it is not, the copy is what there is: keep it.
        with suppress(OSError):
            now = os.stat(unit, dir_fd=sfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(unit, dir_fd=ddir)
        raise
    return note


def _copy_xattrs(src: int, dst: int) -> str:
    """Copy every extended attribute of `src` to `dst`; says which the kernel would not set
    (security.* and trusted.* need capabilities the hardened daemon lacks)."""
    try:
        names = os.listxattr(src)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ""
        raise
    lost = []
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            lost.append(name)
    return f"extended attributes not kept: {', '.join(lost)}" if lost else ""


def _copy_regular(src: int, ddir: int, tmp: str, st: os.stat_result) -> str:
    out = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=ddir,
    )
    try:
        os.lseek(src, 0, os.SEEK_SET)
        while True:
            chunk = os.read(src, 1 << 16)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
        # Extended attributes (ACLs, a security label, user.*) before the owner: setting an
        # ACL on a file root no longer owns needs CAP_FOWNER, which the daemon has not.
        lost = _copy_xattrs(src, out)
        # The owner first: chown() clears set-user-ID and set-group-ID bits.
        note = "; ".join(n for n in (_keep_owner_and_times(tmp, ddir, st, out), lost) if n)
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        os.fsync(out)
    finally:
        os.close(out)
    return note


def _publish(ddir: int, tmp: str, name: str, copy_inside: str, tree: Tree) -> None:
    """Give the finished copy its name (never over another) and make that durable."""
    try:
        os.link(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir, follow_symlinks=False)
    except FileExistsError:
        raise NotAMaskError(
            f"{tree.shown(copy_inside)} exists already; nothing was moved"
        ) from None
    os.unlink(tmp, dir_fd=ddir)
    _fsync_dir(ddir)


# -- undoing (masktool release) ------------------------------------------------------------


class PlaceTakenError(NotAMaskError):
    """Something sits where a displaced file would go back."""


def remove_recorded_mask(tree: Tree, inside: str, ours: Callable[[os.stat_result], bool]) -> bool:
    """Remove the mask at `inside` if `ours` says it is the very link (or empty file) masktool
    wrote, and it is still a settled mask. False when nothing is there; NotAMaskError
    (ReplacedError when another file took the name since) when it is not masktool's."""
    directory, name = os.path.split(inside)
    where = tree.shown(inside)
    try:
        dfd = tree.open_dir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        with _naming(where):
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not ours(st):
                raise ReplacedError(
                    f"{where} is not the mask masktool wrote (it was replaced since): it may "
                    "be an admin's; left in place"
                )
            return _remove_at(tree, dfd, name, inside, where)
    finally:
        os.close(dfd)


def put_back(tree: Tree, copy_inside: str, dest_inside: str) -> None:
    """Move a displaced file's copy back to where it was: copied beside its place (mode, owner
    and times kept), linked to its name, which never replaces anything (PlaceTakenError if
    something took the place), then the copy removed."""
    cdir, cname = os.path.split(copy_inside)
    ddir, dname = os.path.split(dest_inside)
    where = tree.shown(dest_inside)
    if tree.real_dir(ddir) is None:
        # /run/systemd/system of another boot, say: the copy waits for its place.
        raise PlaceTakenError(
            f"{tree.shown(ddir)} does not exist; the file masktool moved aside stays at "
            f"{tree.shown(copy_inside)}"
        )
    with tree.dir(cdir) as cfd, tree.dir(ddir) as dfd, _naming(where):
        st = os.stat(cname, dir_fd=cfd, follow_symlinks=False)
        try:
            os.stat(dname, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            raise PlaceTakenError(
                f"{where} is taken; the file masktool moved aside stays at "
                f"{tree.shown(copy_inside)}"
            )
        tmp = f"{TEMP_PREFIX}{os.urandom(8).hex()}"
        try:
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(cname, dir_fd=cfd), tmp, dir_fd=dfd)
                _keep_owner_and_times(tmp, dfd, st, None)
            elif stat.S_ISREG(st.st_mode):
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                src = os.open(cname, flags, dir_fd=cfd)
                try:
                    _copy_regular(src, dfd, tmp, st)
                finally:
                    os.close(src)
            else:
                raise NotAMaskError(
                    f"{tree.shown(copy_inside)} is neither a file nor a link; move it yourself"
                )
            try:
                os.link(tmp, dname, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                raise PlaceTakenError(
                    f"{where} was taken meanwhile; the file masktool moved aside stays at "
                    f"{tree.shown(copy_inside)}"
                ) from None
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
        _fsync_dir(dfd)
        os.unlink(cname, dir_fd=cfd)
        _fsync_dir(cfd)
    # The directory of that apply's copies, once empty, only clutters.
    parent, stamp = os.path.split(cdir)
    with suppress(OSError), tree.dir(parent) as pfd:
        os.rmdir(stamp, dir_fd=pfd)

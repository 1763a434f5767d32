"""Paths inside a tree treated as / — the running system's own /, or an unbooted tree given with
--root DIR — resolved the way `chroot` and `systemctl --root` resolve them: a symlink's absolute
target is taken relative to the tree's top, and `..` never climbs above it. Nothing reached
through a path of this module is outside the tree.

Writes go through directory file descriptors opened one component at a time with O_NOFOLLOW
(as systemd's chase_symlinks() does), so a directory swapped for a link between a check and a
write cannot redirect the write. Only regular files are read where a file is expected: they are
opened with O_NONBLOCK (a FIFO must not hang the caller) and checked with fstat().
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

# Linux's MAXSYMLINKS and systemd's CHASE_MAX: this many links followed in one path is a loop.
MAX_HOPS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


# Control characters (a newline or an escape sequence in a file name) written as \xNN: a
# message is one line, and printing it must not drive the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def shown(path: str) -> str:
    """A path for messages, output and the journal: bytes that are not UTF-8 and control
    characters written as \\xNN.

    File names are bytes; Python keeps undecodable ones as surrogates, which neither a UTF-8
    terminal nor the journal accepts, and a name may hold an escape sequence.
    """
    try:
        text = os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate no file name decodes to (from a YAML \u escape)
        text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROL)


class UntrustedPathError(PermissionError):
    """A directory or file on the way to a policy file that someone other than root could
    change."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "of an unknown kind"


class NotRegularFileError(OSError):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(errno.EINVAL, f"{shown(path)} is {_kind(mode)}, not a regular file")


def _trusted_owner(uid: int) -> bool:
    # A user checking a draft of their own may read it; the daemon runs as root, so for it
    # this means "owned by root".
    return uid in (0, os.geteuid())


def check_trusted(path: str, st: os.stat_result, *, directory: bool = False) -> None:
    """Refuse a policy file, or a directory on the way to one, that someone other than root
    could have changed. A sticky directory others can write to (/tmp) is passed through: there
    only an entry's owner can rename or remove it, and _check_entry checks the entry."""
    label = f"directory {shown(path)}" if directory else shown(path)
    if not _trusted_owner(st.st_uid):
        raise UntrustedPathError(
            errno.EPERM,
            f"{label} is owned by uid {st.st_uid}, not root; anyone owning it could "
            f"change masktool's policy: chown root {shown(path)}",
        )
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (directory and st.st_mode & stat.S_ISVTX):
        raise UntrustedPathError(
            errno.EPERM,
            f"{label} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); anyone in it could change masktool's policy: "
            f"chmod go-w {shown(path)}",
        )


@dataclass(frozen=True)
class Tree:
    """A directory tree seen as /. `Tree("/")` is the running system."""

    top: str = "/"

    @property
    def is_host(self) -> bool:
        return self.top == "/"

    def host(self, inside: str) -> str:
        """Where `inside` is, as a host path, without resolving anything (for messages and for
        reads whose directories were resolved already)."""
        return inside if self.is_host else self.top.rstrip("/") + "/" + inside.lstrip("/")

    def shown(self, inside: str) -> str:
        return shown(self.host(inside))

    # -- resolving without opening (read-only callers) -------------------------------------

    def chase(self, inside: str, max_hops: int = MAX_HOPS) -> tuple[str, bool]:
        """Follow links from `inside` with the tree's top as /. Returns the final path inside
        the tree and whether it exists."""
        parts = [p for p in inside.split("/") if p]
        parts.reverse()  # a stack: the next component is at the end
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop()
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.host("/" + "/".join([*resolved, part]))
            try:
                st = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return "/" + "/".join([*resolved, part, *reversed(parts)]), False
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > max_hops:
                    return "/" + "/".join([*resolved, part, *reversed(parts)]), False
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                parts.extend(reversed([p for p in target.split("/") if p]))
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                return "/" + "/".join([*resolved, part, *reversed(parts)]), False
            resolved.append(part)
        return "/" + "/".join(resolved), True

    def real_dir(self, inside: str) -> str | None:
        """The host path of directory `inside` once every link on the way is resolved inside
        the tree; None when it is missing or not a directory."""
        final, exists = self.chase(inside)
        if not exists:
            return None
        p = self.host(final)
        try:
            st = os.lstat(p)
        except OSError:
            return None
        return p if stat.S_ISDIR(st.st_mode) else None

    # -- opening, one component at a time ---------------------------------------------------

    def _walk(
        self,
        inside: str,
        *,
        want_file: bool,
        create: bool = False,
        trust: bool = False,
    ) -> tuple[int, str]:
        """Open `inside` (a directory, or with want_file a regular file) through fds.

        Returns the open fd and the final path inside the tree. With `create`, missing
        directories are made (0755), as `systemctl mask` makes /etc/systemd/system. With
        `trust`, every directory and the file must be root's (check_trusted).
        """
        top_fd = os.open(self.top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        top_st = os.fstat(top_fd) if trust else None
        if top_st is not None:
            check_trusted(self.top, top_st, directory=True)
        stack: list[tuple[int, str, os.stat_result | None]] = [(top_fd, "", top_st)]
        parts = [p for p in inside.split("/") if p]
        parts.reverse()
        hops = 0
        try:
            while parts:
                part = parts.pop()
                if part == ".":
                    continue
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                fd, path, parent_st = stack[-1]
                here = f"{path}/{part}"
                last = not parts
                try:
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not create or (last and want_file):
                        raise FileNotFoundError(
                            errno.ENOENT, f"{self.shown(here)} does not exist"
                        ) from None
                    # Made by someone else in the meantime: look again.
                    with suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    parts.append(part)
                    continue
                if trust and parent_st is not None:
                    _check_entry(self.host(here), st, parent_st)
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_HOPS:
                        raise OSError(
                            errno.ELOOP,
                            f"{self.shown(here)}: too many levels of symbolic links",
                        )
                    target = os.readlink(part, dir_fd=fd)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    parts.extend(reversed([p for p in target.split("/") if p]))
                    continue
                if last and want_file:
                    if not stat.S_ISREG(st.st_mode):
                        # Not even opened: a socket would fail with ENXIO, a device might block.
                        raise NotRegularFileError(self.host(here), st.st_mode)
                    ffd = os.open(part, _FILE_FLAGS, dir_fd=fd)
                    fst = os.fstat(ffd)
                    if not stat.S_ISREG(fst.st_mode):
                        os.close(ffd)
                        raise NotRegularFileError(self.host(here), fst.st_mode)
                    if trust:
                        check_trusted(self.host(here), fst)
                    return ffd, here
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(
                        errno.ENOTDIR, f"{self.shown(here)} is {_kind(st.st_mode)}, not a directory"
                    )
                # O_NOFOLLOW: a directory swapped for a link since the stat above fails here.
                dfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                dst = os.fstat(dfd) if trust else None
                if dst is not None:
                    check_trusted(self.host(here), dst, directory=True)
                stack.append((dfd, here, dst))
            if want_file:
                raise IsADirectoryError(errno.EISDIR, f"{self.shown(inside)} is a directory")
            fd, final, _ = stack.pop()
            return fd, final or "/"
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def open_dir(self, inside: str, *, create: bool = False, trust: bool = False) -> int:
        fd, _ = self._walk(inside, want_file=False, create=create, trust=trust)
        return fd

    @contextmanager
    def dir(self, inside: str, *, create: bool = False, trust: bool = False) -> Iterator[int]:
        fd = self.open_dir(inside, create=create, trust=trust)
        try:
            yield fd
        finally:
            os.close(fd)

    def read_file(
        self, inside: str, *, trust: bool = False, limit: int = 16 << 20
    ) -> tuple[bytes, str]:
        """The contents of regular file `inside` and its final path inside the tree."""
        fd, final = self._walk(inside, want_file=True, trust=trust)
        try:
            chunks = []
            size = 0
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise OSError(
                        errno.EFBIG, f"{self.shown(final)} is larger than {limit >> 20} MiB"
                    )
                chunks.append(chunk)
            return b"".join(chunks), final
        finally:
            os.close(fd)


def _check_entry(path: str, st: os.stat_result, parent: os.stat_result) -> None:
    """An entry of a sticky, world-writable directory (/tmp) must be root's own: only its
    owner can rename or remove it there."""
    if parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not _trusted_owner(st.st_uid):
        raise UntrustedPathError(
            errno.EPERM,
            f"{shown(path)} is owned by uid {st.st_uid} in a directory others can write to; "
            "move the policy to a directory only root can write",
        )

"""One apply at a time on a host: the daemon and an admin's `masktool apply` take the same lock,
so the second plans from the state the first one left."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from masktool.tree import Tree

RUN_DIR = Path("/run/masktool")  # RuntimeDirectory=masktool in masktool.service


class LockError(Exception):
    pass


@contextmanager
def apply_lock(timeout: float = 120.0, run_dir: Path = RUN_DIR) -> Iterator[None]:
    path = run_dir / "apply.lock"
    try:
        run_dir.mkdir(mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise LockError(f"cannot take {path} ({e.strerror}); apply needs root") from e
    try:
        _take(fd, timeout, f"another masktool apply holds {path}", waiting=True)
        yield
    finally:
        os.close(fd)


@contextmanager
def tree_lock(tree: Tree, directory: str, timeout: float = 120.0) -> Iterator[None]:
    """The same for a tree given with --root: the lock file is masktool's own, in `directory`
    inside the tree (made if missing, links resolved inside the tree)."""
    with tree.dir(directory, create=True) as dfd:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(".lock", flags, 0o600, dir_fd=dfd)
    try:
        _take(fd, timeout, f"another masktool holds {tree.shown(directory)}/.lock")
        yield
    finally:
        os.close(fd)


def _take(fd: int, timeout: float, holder: str, *, waiting: bool = False) -> None:
    """flock `fd`, waiting up to `timeout` seconds; `waiting`: say once that it waits."""
    deadline = time.monotonic() + timeout
    told = not waiting
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LockError(f"{holder} for over {timeout:.0f}s; try again later") from None
            if not told:
                print("masktool: waiting for another masktool apply to finish", file=sys.stderr)
                told = True
            time.sleep(0.01)

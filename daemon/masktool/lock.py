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
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockError(
                        f"another masktool apply holds {path} for over {timeout:.0f}s; "
                        "try again later"
                    ) from None
                if not told:
                    print("masktool: waiting for another masktool apply to finish", file=sys.stderr)
                    told = True
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)

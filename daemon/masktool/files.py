"""The few file operations masktool does itself: mask links under --root, and displacing a
conflicting file (with force). Each re-checks what is on disk right before touching it: a file
that is not a mask is never deleted or overwritten."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from masktool.observe import EntryKind, classify
from masktool.units import SearchDir

DISPLACED_DIR = "/var/lib/masktool/displaced"


class NotAMaskError(Exception):
    """Something that is not a mask sits where masktool would write or remove one."""


def _dir(root: Path, d: SearchDir) -> Path:
    return root / d.path.lstrip("/")


def write_mask(root: Path, d: SearchDir, unit: str) -> bool:
    """Link `unit` to /dev/null in `d`, as `systemctl mask` does. False if it already was masked.

    symlink() never replaces an existing name, so a file appearing in the meantime is not lost.
    """
    target = _dir(root, d)
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        os.symlink("/dev/null", target / unit)
    except FileExistsError:
        e = classify(str(root), d, unit)
        if e is not None and e.kind == EntryKind.MASK:
            return False
        raise NotAMaskError(e.describe() if e else f"{target / unit} appeared") from None
    return True


def remove_mask(root: Path, d: SearchDir, unit: str) -> bool:
    """Remove the mask of `unit` in `d`. False if there was none; NotAMaskError if it is not one."""
    e = classify(str(root), d, unit)
    if e is None:
        return False
    if e.kind != EntryKind.MASK:
        raise NotAMaskError(e.describe())
    (_dir(root, d) / unit).unlink()
    return True


def displace(root: Path, d: SearchDir, unit: str, stamp: str) -> Path:
    """Move what sits at d/unit to /var/lib/masktool/displaced/unit.STAMP.

    Copy, fsync, then unlink: /etc and /var/lib may be different file systems (and under
    ProtectSystem= they are different mounts), so rename() cannot be relied on.
    """
    src = _dir(root, d) / unit
    dest_dir = root / DISPLACED_DIR.lstrip("/")
    dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest = dest_dir / f"{unit}.{stamp}"
    st = src.lstat()
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dest)
    elif stat.S_ISREG(st.st_mode):
        with src.open("rb") as fin, dest.open("xb") as fout:
            shutil.copyfileobj(fin, fout)
            fout.flush()
            os.fchmod(fout.fileno(), stat.S_IMODE(st.st_mode))
            os.fsync(fout.fileno())
    else:
        raise NotAMaskError(f"{src} is neither a file nor a link; move it yourself")
    dfd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    src.unlink()
    return dest

"""`masktool reload` and the daemon: ask it to read the policy files, wait for its verdict.

The policy in force changes only when the admin asks (`systemctl reload masktool`, whose
ExecReload= is `masktool reload --pid $MAINPID`; SIGHUP; `masktool reload`). Each asker leaves
an empty request file in /run/masktool/reload.d, then sends SIGHUP. When the daemon starts a
reload it takes the requests present at that moment: the files it reads next were saved
before each of those askers asked. Once the policy is read and, if accepted, enforced, it
writes its answer into each request file (atomically, by rename), and the asker reads its own.
An asker whose request came after a reload had begun is answered by the next one, which its
own SIGHUP causes: an answer is never one to someone else's reload.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_DIR = "/run/masktool"  # RuntimeDirectory=masktool
REQUEST_DIR = f"{RUN_DIR}/reload.d"
MAX_SIZE = 1 << 20
_TOKEN = re.compile(r"[0-9]+-[0-9a-f]{16}")
STALE = 600.0  # requests and answers nobody collected are removed after this (seconds)


class ControlError(Exception):
    """The daemon could not be asked, or did not answer."""


@dataclass(frozen=True)
class ReloadResult:
    pid: int  # the daemon's
    accepted: bool  # the policy files were read and are the policy in force
    enforced: bool  # and the reconcile that followed succeeded
    problems: tuple[tuple[str, str], ...]  # (file:line, what), the first one first
    error: str  # why the reconcile failed, when it did
    in_force: str  # "files", "saved" (the copy kept on disk) or "none"
    rules: int
    mode: str
    at: str  # wall clock, UTC

    def as_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "accepted": self.accepted,
                "enforced": self.enforced,
                "problems": [list(p) for p in self.problems],
                "error": self.error,
                "in_force": self.in_force,
                "rules": self.rules,
                "mode": self.mode,
                "at": self.at,
            },
            indent=1,
        )


def _result(d: Any) -> ReloadResult:
    if not isinstance(d, dict):
        raise TypeError("not an object")
    problems = tuple((str(w), str(m)) for w, m in d["problems"])
    if not all(isinstance(d[k], int) and not isinstance(d[k], bool) for k in ("pid", "rules")):
        raise TypeError("pid and rules must be integers")
    if not all(isinstance(d[k], bool) for k in ("accepted", "enforced")):
        raise TypeError("accepted and enforced must be true or false")
    return ReloadResult(
        pid=d["pid"],
        accepted=d["accepted"],
        enforced=d["enforced"],
        problems=problems,
        error=str(d["error"]),
        in_force=str(d["in_force"]),
        rules=d["rules"],
        mode=str(d["mode"]),
        at=str(d["at"]),
    )


# -- the daemon's side --------------------------------------------------------------------


def _dir_fd(directory: str) -> int | None:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # no asker yet (or the directory is gone, or not one: askers say so)


def take_requests(directory: str = REQUEST_DIR, now: float | None = None) -> list[str]:
    """The requests waiting now (empty files with a token's name); what nobody collected for
    STALE seconds is removed."""
    dfd = _dir_fd(directory)
    if dfd is None:
        return []
    now = time.time() if now is None else now
    out = []
    try:
        for name in os.listdir(dfd):
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                continue
            if now - st.st_mtime > STALE:
                if not stat.S_ISDIR(st.st_mode):
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=dfd)
                continue
            if _TOKEN.fullmatch(name) and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                out.append(name)
    finally:
        os.close(dfd)
    return out


def answer(token: str, result: ReloadResult, directory: str = REQUEST_DIR) -> None:
    """Write the answer beside the request, then rename it over: the asker reads it whole."""
    dfd = _dir_fd(directory)
    if dfd is None:
        raise OSError(f"{directory} is gone or not a directory")
    tmp = f".{token}.tmp"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(result.as_json() + "\n")
            os.rename(tmp, token, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)


# -- the asker's side ---------------------------------------------------------------------


def _open_dir(directory: str) -> int:
    """The request directory, made if missing: root's own, 0700, never through a link."""
    try:
        Path(directory).mkdir(mode=0o700)
    except FileExistsError:
        pass
    except PermissionError as e:
        raise ControlError("asking the daemon to reload needs root") from e
    except OSError as e:
        raise ControlError(f"cannot make {directory}: {e.strerror}") from e
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ControlError(
            f"{directory} is not a directory masktool made ({e.strerror}); remove it"
        ) from e
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise ControlError(f"{directory} is not root's own (owner or mode); remove it")
    return fd


def _read_answer(dfd: int, token: str) -> ReloadResult | None:
    try:
        fd = os.open(token, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError as e:
        raise ControlError("the request was removed before the daemon answered it") from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ControlError("the request was replaced by something that is not a file")
        data = f.read(MAX_SIZE + 1)
    if not data:
        return None
    try:
        return _result(json.loads(data))
    except (ValueError, TypeError, KeyError) as e:
        raise ControlError(f"the daemon's answer is not one masktool writes ({e})") from e


def request_reload(
    pid: int,
    timeout: float = 80.0,
    *,
    directory: str = REQUEST_DIR,
    kill: Callable[[int, int], None] = os.kill,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ReloadResult:
    """Ask the daemon `pid` to reload, and return its answer to this request."""
    dfd = _open_dir(directory)
    token = f"{os.getpid()}-{os.urandom(8).hex()}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(token, flags, 0o600, dir_fd=dfd))
        try:
            kill(pid, signal.SIGHUP)
        except ProcessLookupError as e:
            raise ControlError(f"the daemon (PID {pid}) is not running") from e
        except PermissionError as e:
            raise ControlError("asking the daemon to reload needs root") from e
        deadline = clock() + timeout
        delay = 0.005
        while True:
            result = _read_answer(dfd, token)
            if result is not None:
                return result
            try:
                kill(pid, 0)
            except ProcessLookupError as e:
                raise ControlError(f"the daemon (PID {pid}) ended before it answered") from e
            if clock() >= deadline:
                raise ControlError(
                    f"the daemon (PID {pid}) did not answer within {timeout:g}s; see "
                    "`systemctl status masktool` and `journalctl -u masktool`"
                )
            sleep(delay)
            delay = min(delay * 2, 0.1)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(token, dir_fd=dfd)
        os.close(dfd)

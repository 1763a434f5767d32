"""`masktool reload` and the daemon: ask it to read the policy files, wait for its verdict.

The policy in force changes only when the admin asks (`systemctl reload masktool`, whose
ExecReload= is `masktool reload --pid $MAINPID`; SIGHUP; `masktool reload`). The daemon answers
each request in RUNTIME_DIRECTORY/reload.json once the files are read and, if accepted,
enforced: its PID, a generation that grows with each reload it answers (0: the read at start),
whether the files were accepted, and their problems. The asker sends SIGHUP and waits for a
generation after the one it saw, so a rejected policy fails the reload with its file:line.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RUNTIME_DIR = "/run/masktool"
FILE_NAME = "reload.json"
MAX_SIZE = 1 << 20


class ControlError(Exception):
    """The daemon could not be asked, or did not answer."""


@dataclass(frozen=True)
class ReloadResult:
    pid: int
    generation: int
    accepted: bool
    problems: tuple[tuple[str, str], ...]  # (file:line, what), the first one first
    in_force: str  # "files", "saved" (the copy kept on disk) or "none"
    rules: int
    mode: str
    at: str  # wall clock, UTC

    def as_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "generation": self.generation,
                "accepted": self.accepted,
                "problems": [list(p) for p in self.problems],
                "in_force": self.in_force,
                "rules": self.rules,
                "mode": self.mode,
                "at": self.at,
            },
            indent=1,
        )


def result_path() -> str:
    """systemd hands the RuntimeDirectory= to the daemon in $RUNTIME_DIRECTORY; the asker
    (ExecReload=, or an admin's shell) knows it by its fixed name."""
    dirs = os.environ.get("RUNTIME_DIRECTORY", "")
    base = dirs.split(":")[0] if dirs else DEFAULT_RUNTIME_DIR
    return str(Path(base) / FILE_NAME)


def write_result(result: ReloadResult, path: str) -> None:
    # Imported here: only the daemon writes it (metrics imports tempfile lazily).
    from masktool.metrics import write_atomic

    write_atomic(path, result.as_json() + "\n")


def read_result(path: str) -> ReloadResult | None:
    """The daemon's last answer; None when there is none. Only a regular file owned by root
    (or by the asker) is believed: anything else at that name is an error, never an answer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ControlError(f"{path} is a symbolic link, not the daemon's answer") from e
        raise ControlError(f"cannot read {path}: {e.strerror}") from e
    st = os.fstat(fd)
    # The daemon runs as root, and so does whoever may signal it.
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise ControlError(f"{path} is not a file the daemon wrote (owner or type)")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise ControlError(f"{path} is larger than any answer of the daemon")
    try:
        d = json.loads(data)
        return _result(d)
    except (ValueError, TypeError, KeyError) as e:
        # Written whole by a rename, so never half: this is not the daemon's.
        raise ControlError(f"{path} is not an answer of the daemon ({e})") from e


def _result(d: Any) -> ReloadResult:
    if not isinstance(d, dict):
        raise TypeError("not an object")
    problems = tuple((str(w), str(m)) for w, m in d["problems"])
    values = (d["pid"], d["generation"], d["rules"])
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError("pid, generation and rules must be integers")
    if not isinstance(d["accepted"], bool):
        raise TypeError("accepted must be true or false")
    return ReloadResult(
        pid=d["pid"],
        generation=d["generation"],
        accepted=d["accepted"],
        problems=problems,
        in_force=str(d["in_force"]),
        rules=d["rules"],
        mode=str(d["mode"]),
        at=str(d["at"]),
    )


def request_reload(
    pid: int,
    path: str,
    timeout: float = 60.0,
    *,
    kill: Callable[[int, int], None] = os.kill,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ReloadResult:
    """Send SIGHUP to the daemon `pid` and return its answer to it."""
    before = read_result(path)
    # An answer counts when it is this daemon's and comes after the last one seen. A daemon
    # answers its start before it reports ready, so there is always one to compare with; if
    # not (an older daemon), any answer of this PID after the start's does.
    seen = before.generation if before is not None and before.pid == pid else 0
    try:
        kill(pid, signal.SIGHUP)
    except ProcessLookupError as e:
        raise ControlError(f"the daemon (PID {pid}) is not running") from e
    deadline = clock() + timeout
    delay = 0.005
    while True:
        now = read_result(path)
        if now is not None and now.pid == pid and now.generation > seen:
            return now
        try:
            kill(pid, 0)
        except ProcessLookupError as e:
            raise ControlError(f"the daemon (PID {pid}) ended before it answered") from e
        if clock() >= deadline:
            raise ControlError(
                f"the daemon (PID {pid}) did not answer within {timeout:.0f}s; see "
                "`systemctl status masktool` and `journalctl -u masktool`"
            )
        sleep(delay)
        delay = min(delay * 2, 0.1)

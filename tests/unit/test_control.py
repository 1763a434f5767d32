"""The reload handshake (masktool.control): an answer counts only when it is the daemon's
own and newer than the last one seen; anything else at the answer's name is an error."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from masktool.control import ControlError, ReloadResult, read_result, request_reload, write_result


def _result(pid: int, generation: int, accepted: bool = True) -> ReloadResult:
    problems = () if accepted else (("/etc/masktool/policy.yaml:4", "unknown key 'stpo'"),)
    return ReloadResult(pid, generation, accepted, problems, "files", 3, "enforce", "now")


class FakeDaemon:
    """Answers a SIGHUP after `lag` polls; time moves 1 s a sleep."""

    def __init__(self, path: Path, pid: int, lag: int = 2, alive: bool = True) -> None:
        self.path, self.pid, self.lag, self.alive = path, pid, lag, alive
        self.generation = 0
        self.hups = 0
        self.polls = 0
        self.now = 0.0
        write_result(_result(pid, 0), str(path))

    def kill(self, pid: int, sig: int) -> None:
        if not self.alive or pid != self.pid:
            raise ProcessLookupError
        if sig == signal.SIGHUP:
            self.hups += 1
        elif self.hups and self.polls >= self.lag:
            self.generation += 1
            write_result(_result(pid, self.generation, accepted=False), str(self.path))
            self.hups = 0
        self.polls += sig == 0

    def sleep(self, s: float) -> None:
        self.now += 1.0

    def clock(self) -> float:
        return self.now


def test_the_answer_to_this_reload_is_returned(tmp_path: Path) -> None:
    d = FakeDaemon(tmp_path / "reload.json", 4242)
    r = request_reload(4242, str(d.path), kill=d.kill, sleep=d.sleep, clock=d.clock)
    assert (r.generation, r.accepted) == (1, False)
    assert r.problems == (("/etc/masktool/policy.yaml:4", "unknown key 'stpo'"),)


def test_an_older_answer_or_another_daemons_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "reload.json"
    d = FakeDaemon(path, 4242, lag=10**9)
    write_result(_result(999, 7), str(path))  # a former daemon's, with a larger generation
    with pytest.raises(ControlError, match="did not answer within 5s"):
        request_reload(4242, str(path), 5.0, kill=d.kill, sleep=d.sleep, clock=d.clock)


def test_a_daemon_that_ends_before_answering_is_said(tmp_path: Path) -> None:
    d = FakeDaemon(tmp_path / "reload.json", 4242, alive=False)
    with pytest.raises(ControlError, match="not running"):
        request_reload(4242, str(d.path), kill=d.kill, sleep=d.sleep, clock=d.clock)


def test_no_answer_yet_is_none(tmp_path: Path) -> None:
    assert read_result(str(tmp_path / "reload.json")) is None


@pytest.mark.parametrize("kind", ["link", "fifo", "garbage", "types", "directory"])
def test_only_a_regular_file_of_the_daemons_is_an_answer(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "reload.json"
    if kind == "link":
        real = tmp_path / "elsewhere.json"
        write_result(_result(1, 1), str(real))
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)  # opened without blocking, then refused
    elif kind == "garbage":
        path.write_text('{"pid": 1, "generat')
    elif kind == "types":
        path.write_text(_result(1, 1).as_json().replace('"generation": 1', '"generation": "1"'))
    else:
        path.mkdir()
    with pytest.raises(ControlError):
        read_result(str(path))
